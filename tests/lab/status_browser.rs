//! The status page in a real browser: headless Chromium, driven through
//! chromedriver (WebDriver) by fantoccini. Logs in, opens the overview and a
//! camera page, sees the live snapshot update, and saves screenshots under
//! `test-artifacts/`. The pipeline runs the real models on a rendered scene.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/browser-test.sh`
//! installs them and runs this test; so does `make test`) and the models
//! (`make models`). Without chromedriver it fails when
//! `ANPR_EDGE_REQUIRE_BROWSER` is set (`make test` sets it), and otherwise
//! says so and passes without testing anything (a bare `cargo test`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};

use anpr_edge::clock::TimeSource;
use anpr_edge::config::Config;
use anpr_edge::pipeline::{self, Parts};
use anpr_edge::store::PendingRecord;
use anpr_edge::upload::{Ack, Backend, UploadError};

const PASSWORD: &str = "fieldtech-1234";

struct AckingBackend;

impl Backend for AckingBackend {
    fn deliver<'a>(
        &'a self,
        rec: &'a PendingRecord,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ack, UploadError>> + Send + 'a>>
    {
        Box::pin(async move { Ok(Ack { id: rec.id }) })
    }
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver, killed when the test ends however it ends.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn config(dir: &Path, models: &Path) -> Config {
    let keys = anpr_wire::build::generate_keys(&dir.join("keys")).expect("keys");
    std::fs::write(dir.join("ca.pem"), "unused").expect("write");
    // The small test scene is 1280x720: the road's lower part is the ROI, one
    // polygon per lane.
    let text = format!(
        r#"
[device]
id = "pole-17 (browser test)"
[runtime]
models_dir = "{models}"
[[camera]]
id = "north"
source = "replay"
path = "{frames}"
fps = 4
looped = true
facing = "north, into the zone"
roi = [[80, 300], [1200, 300], [1270, 715], [10, 715]]
lanes = [{{ id = 1, polygon = [[100, 330], [640, 330], [640, 700], [30, 700]] }}, {{ id = 2, polygon = [[640, 330], [1180, 330], [1250, 700], [640, 700]] }}]
[policy]
public_key = "{public_key}"
[zone]
id = "test-ze"
[store]
path = "{dir}/v.sqlite"
[upload]
url = "https://localhost:1"
ca_cert = "{dir}/ca.pem"
[status]
listen = "127.0.0.1:0"
password_hash = "{hash}"
"#,
        models = models.display(),
        frames = dir.join("frames").display(),
        dir = dir.display(),
        public_key = keys.public_key_base64,
        hash = anpr_edge::status::auth::hash_password(PASSWORD).expect("hash"),
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, text).expect("write");
    Config::load(&path).expect("valid config")
}

/// Types `password` into the login form and sends it.
async fn submit_password(c: &fantoccini::Client, password: &str) {
    c.find(Locator::Id("password"))
        .await
        .expect("password field")
        .send_keys(password)
        .await
        .expect("type");
    c.find(Locator::Id("login"))
        .await
        .expect("button")
        .click()
        .await
        .expect("click");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_logs_in_and_watches_the_live_snapshot_update() {
    let Some(chromedriver) = find_on_path("chromedriver") else {
        // `make test` (and so CI) installs the browser and sets this: there
        // a missing chromedriver is a failure, not a skip.
        assert!(
            std::env::var_os("ANPR_EDGE_REQUIRE_BROWSER").is_none(),
            "chromedriver not found, and ANPR_EDGE_REQUIRE_BROWSER is set: install Debian's chromium and chromium-driver (make browser-deps)"
        );
        eprintln!(
            "SKIPPED: chromedriver not found; run scripts/browser-test.sh (installs Debian's chromium and chromium-driver)"
        );
        return;
    };
    let root = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let Some(models) = anpr_edge::testing::fetched_models() else {
        return;
    };
    let artifacts = root.join("test-artifacts");
    std::fs::create_dir_all(&artifacts).expect("mkdir test-artifacts");

    let tmp = tempfile::tempdir().expect("tempdir");
    let scene = anpr_lab::synth::Scenario::small_test();
    anpr_lab::synth::write_frames(&scene, &tmp.path().join("frames")).expect("frames");
    let cfg = config(tmp.path(), &models);
    let inference = pipeline::inference_from_config(&cfg).expect("models load");
    let parts = Parts {
        detector: inference.detector,
        reader: inference.reader,
        backend: Arc::new(AckingBackend),
        cameras: pipeline::cameras_from_config(&cfg.cameras, true),
        policy: pipeline::policy_from_config(&cfg, TimeSource::real().clocks).expect("policy"),
        time: TimeSource::real(),
        facts: inference.facts,
    };
    let running = pipeline::start(&cfg, parts).await.expect("starts");
    let base = format!("http://127.0.0.1:{}", running.status_addr.port());

    let port = free_port();
    let _driver = Driver(
        Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=900,1400"]
        }),
    );
    let mut client = None;
    for _ in 0..50 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    let c = client.expect("a WebDriver session with headless Chromium");

    // Not logged in: the page sends the browser to the login form.
    c.goto(&format!("{base}/cameras/north"))
        .await
        .expect("goto");
    assert!(c
        .current_url()
        .await
        .expect("url")
        .path()
        .ends_with("/login"));
    submit_password(&c, "wrong-password").await;
    let msg = c
        .find(Locator::Id("message"))
        .await
        .expect("an error message");
    assert_eq!(msg.text().await.expect("text"), "Wrong password.");
    submit_password(&c, PASSWORD).await;
    c.wait()
        .for_element(Locator::Id("alarms"))
        .await
        .expect("the overview after login");
    let overview = c
        .find(Locator::Css("main"))
        .await
        .expect("main")
        .text()
        .await
        .expect("text");
    assert!(
        overview.contains("pole-17 (browser test)") || overview.contains("north"),
        "{overview}"
    );
    std::fs::write(
        artifacts.join("status-overview.png"),
        c.screenshot().await.expect("screenshot"),
    )
    .expect("save");

    c.find(Locator::LinkText("north"))
        .await
        .expect("camera link")
        .click()
        .await
        .expect("click");
    let seq_of = |c: fantoccini::Client| async move {
        let img = c
            .find(Locator::Id("snapshot"))
            .await
            .expect("snapshot image");
        let seq = img.attr("data-seq").await.expect("attr");
        let shown: serde_json::Value = c
            .execute(
                "var i=document.getElementById('snapshot');return i.complete&&i.naturalWidth;",
                vec![],
            )
            .await
            .expect("script");
        (seq, shown.as_u64().unwrap_or(0))
    };
    // The script sets data-seq to the frame it shows; wait for two different ones.
    let mut seen = Vec::new();
    for _ in 0..120 {
        let (seq, width) = seq_of(c.clone()).await;
        if let (Some(seq), 1280) = (seq, width) {
            if seen.last() != Some(&seq) {
                seen.push(seq);
            }
        }
        if seen.len() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        seen.len() >= 2,
        "the snapshot updated: frames shown {seen:?}"
    );
    let focus = c
        .find(Locator::Css("[data-k=focus]"))
        .await
        .expect("focus")
        .text()
        .await
        .expect("text");
    assert!(
        focus.parse::<f64>().is_ok_and(|f| f > 0.0),
        "focus score shown: {focus}"
    );
    // For the screenshot, wait a little for a frame with a plate in view.
    for _ in 0..40 {
        let plates = c
            .find(Locator::Css("[data-k=plates]"))
            .await
            .expect("plates")
            .text()
            .await
            .expect("text");
        if plates.contains("px") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    std::fs::write(
        artifacts.join("status-camera.png"),
        c.screenshot().await.expect("screenshot"),
    )
    .expect("save");
    c.close().await.expect("close the browser");
    running.shutdown().await;
}
