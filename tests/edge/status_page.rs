//! The technician's status page against a running pipeline on replayed frames
//! (scripted models, so it runs in seconds): login, lock-out and session
//! expiry on a simulated clock; every endpoint's content; HTTPS with the
//! device certificate; and no plate text of a non-hit in any answer.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use image::{Rgb, RgbImage};
use reqwest::header;

use anpr_edge::testing::{ScriptedDetector, ScriptedReader};

use anpr_edge::clock::{FixedClockSync, SimulatedClocks, SyncState, TimeSource};
use anpr_edge::config::Config;
use anpr_edge::pipeline::{self, Parts, Running};
use anpr_edge::status::DeviceFacts;
use anpr_edge::store::PendingRecord;
use anpr_edge::upload::{Ack, Backend, UploadError};
use anpr_wire::hash::HmacKey;

const PASSWORD: &str = "fieldtech-1234";
const HIT: &str = "VBX12P";
const NON_HIT: &str = "GH066X";

/// A bright plate reads as the hit, a dark one as the non-hit.
fn plate_of_red(red: u8) -> String {
    if red > 128 { HIT } else { NON_HIT }.into()
}

struct AckingBackend;

impl Backend for AckingBackend {
    fn deliver<'a>(
        &'a self,
        rec: &'a PendingRecord,
    ) -> Pin<Box<dyn Future<Output = Result<Ack, UploadError>> + Send + 'a>> {
        Box::pin(async move { Ok(Ack { id: rec.id }) })
    }
}

/// 5 frames with the hit's plate, 30 empty, 5 with the non-hit's.
fn write_frames(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut i = 0;
    let mut put = |plate: Option<u8>| {
        let mut img = RgbImage::from_fn(80, 40, |x, y| {
            let v = ((x * 7 + y * 13) % 200) as u8 + 20;
            Rgb([0, v, v])
        });
        img.put_pixel(0, 0, Rgb([0, 0, 0]));
        if let Some(v) = plate {
            anpr_edge::testing::paint_plate(&mut img, v);
        }
        img.save(dir.join(format!("f{i:04}.png"))).expect("frame");
        i += 1;
    };
    (0..5).for_each(|_| put(Some(250)));
    (0..30).for_each(|_| put(None));
    (0..5).for_each(|_| put(Some(60)));
}

struct Rig {
    _dir: tempfile::TempDir,
    cfg: Config,
    running: Running,
    clocks: Arc<SimulatedClocks>,
    base: String,
    client: reqwest::Client,
}

async fn start(extra_camera: &str, status_extra: &str, https: bool) -> Rig {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write_frames(&dir.join("frames"));
    let pki = anpr_receiver::generate_test_pki(&dir.join("pki")).expect("pki");
    let keys = anpr_edge::testing::write_hit_list(dir, "test-ze", 3, &[HIT]);
    let tls = if https {
        format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            pki.server_cert.display(),
            pki.server_key.display()
        )
    } else {
        String::new()
    };
    let text = format!(
        r#"
[device]
id = "pole-17"
[[camera]]
id = "replay"
source = "replay"
path = "{frames}"
fps = 10
facing = "north, into the zone"
roi = [[0, 0], [79, 0], [79, 39], [0, 39]]
lanes = [{{ id = 1, polygon = [[0, 0], [40, 0], [40, 39], [0, 39]] }}]
{extra_camera}
[track]
close_after_ms = 500
[policy]
hit_list = "{dir}/hits.bundle"
public_key = "{public_key}"
[policy.hmac_keys]
k1 = "{dir}/keys/hmac.key"
[zone]
id = "test-ze"
[store]
path = "{dir}/v.sqlite"
[upload]
url = "https://localhost:1"
ca_cert = "{ca}"
[status]
listen = "127.0.0.1:0"
password_hash = "{hash}"
lockout_after = 3
lockout_s = 60
session_s = 600
{tls}{status_extra}
"#,
        frames = dir.join("frames").display(),
        dir = dir.display(),
        ca = pki.ca_cert.display(),
        public_key = keys.public_key_base64,
        hash = anpr_edge::status::auth::hash_password(PASSWORD).expect("hash"),
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, text).expect("write");
    let cfg = Config::load(&path).expect("valid config");
    let clocks = Arc::new(SimulatedClocks::new(chrono::Utc::now()));
    let time = TimeSource {
        clocks: clocks.clone(),
        sync: Arc::new(FixedClockSync(SyncState {
            synchronised: true,
            max_error_us: 2_000,
        })),
    };
    let parts = Parts {
        detector: Box::new(ScriptedDetector::default()),
        reader: Box::new(ScriptedReader(plate_of_red)),
        backend: Arc::new(AckingBackend),
        cameras: pipeline::cameras_from_config(&cfg.cameras, false),
        policy: pipeline::policy_from_config(&cfg, time.clocks.clone()).expect("lists"),
        time,
        facts: DeviceFacts {
            device_id: "pole-17".into(),
            software_version: "9.9.9-test".into(),
            model_versions: "scripted-models".into(),
            runtime_version: "no-runtime".into(),
        },
    };
    let running = pipeline::start(&cfg, parts).await.expect("starts");
    let mut client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    let scheme = if https {
        let ca = std::fs::read(&pki.ca_cert).expect("ca");
        client = client
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"));
        "https"
    } else {
        "http"
    };
    let base = format!("{scheme}://localhost:{}", running.status_addr.port());
    Rig {
        _dir: tmp,
        cfg,
        running,
        clocks,
        base,
        client: client.build().expect("client"),
    }
}

impl Rig {
    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut r = self.client.get(format!("{}{path}", self.base));
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        r.send().await.expect("answers")
    }

    async fn login(&self, password: &str) -> reqwest::Response {
        self.client
            .post(format!("{}/login", self.base))
            .form(&[("password", password)])
            .send()
            .await
            .expect("answers")
    }

    async fn text(&self, path: &str, cookie: &str) -> (String, String) {
        let r = self.get(path, Some(cookie)).await;
        assert_eq!(r.status(), 200, "{path}");
        (path.to_string(), r.text().await.expect("text"))
    }

    /// Logs in and returns the `name=value` of the session cookie.
    async fn session(&self) -> String {
        let r = self.login(PASSWORD).await;
        assert_eq!(r.status(), 303, "login succeeds");
        let set = r
            .headers()
            .get(header::SET_COOKIE)
            .expect("a cookie")
            .to_str()
            .expect("ascii")
            .to_string();
        set.split(';').next().expect("name=value").to_string()
    }

    async fn wait_until_recorded(&self) {
        let m = self.running.metrics.clone();
        for _ in 0..400 {
            if m.snapshot()
                .cameras
                .iter()
                .any(|c| c.frames_processed == 40)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // The replay has ended but another camera may still be retrying: 31 s
        // on, the tracker takes the replay for stalled and gives out its
        // passages (the simulated clock moves, not the test).
        self.clocks.advance(Duration::from_secs(31));
        for _ in 0..400 {
            let s = m.snapshot();
            if s.passages >= 2 && s.uploads_acked >= 1 && s.pending_uploads == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!(
            "the replay's two passages were not judged: {:?}",
            m.snapshot()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_healthz_is_open_and_wrong_passwords_lock_out_and_sessions_expire() {
    let rig = start("", "", false).await;
    rig.wait_until_recorded().await;

    let health = rig.get("/healthz", None).await;
    assert_eq!(health.status(), 200);
    for path in ["/", "/cameras/replay"] {
        let r = rig.get(path, None).await;
        assert_eq!(r.status(), 303, "{path} sends to the login form");
        assert_eq!(r.headers()[header::LOCATION], "/login");
    }
    for path in [
        "/api/v1/status",
        "/api/v1/cameras/replay",
        "/cameras/replay/snapshot.jpg",
        "/metrics",
    ] {
        let r = rig.get(path, None).await;
        assert_eq!(r.status(), 401, "{path} refuses without login");
        assert!(r.headers().contains_key(header::WWW_AUTHENTICATE));
    }

    let wrong = rig.login("not-the-password").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.expect("body").contains("Wrong password"));
    let forged = rig
        .get("/api/v1/status", Some("anpr_session=00112233"))
        .await;
    assert_eq!(forged.status(), 401, "a made-up token is no session");

    // A right password resets the failure count.
    let cookie = rig.session().await;
    let r = rig.login(PASSWORD).await;
    let set = r.headers()[header::SET_COOKIE].to_str().expect("ascii");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=600"] {
        assert!(set.contains(attr), "cookie has {attr}: {set}");
    }
    assert!(!set.contains("Secure"), "plain HTTP: no Secure flag");
    assert_eq!(rig.get("/api/v1/status", Some(&cookie)).await.status(), 200);

    // Ten minutes on, the session has expired.
    rig.clocks.advance(Duration::from_secs(601));
    assert_eq!(rig.get("/api/v1/status", Some(&cookie)).await.status(), 401);
    assert_eq!(rig.get("/", Some(&cookie)).await.status(), 303);

    // Three wrong passwords lock logins out, the right one included.
    assert_eq!(rig.login("guess-1").await.status(), 401);
    assert_eq!(rig.login("guess-2").await.status(), 401);
    let third = rig.login("guess-3").await;
    assert_eq!(third.status(), 429);
    assert_eq!(third.headers()[header::RETRY_AFTER], "60");
    let locked = rig.login(PASSWORD).await;
    assert_eq!(
        locked.status(),
        429,
        "locked out even with the right password"
    );
    assert!(locked
        .text()
        .await
        .expect("body")
        .contains("try again in 60 s"));
    // HTTP Basic is locked out too.
    let basic = rig
        .client
        .get(format!("{}/metrics", rig.base))
        .basic_auth("t", Some(PASSWORD))
        .send()
        .await
        .expect("answers");
    assert_eq!(basic.status(), 429);

    rig.clocks.advance(Duration::from_secs(61));
    let cookie = rig.session().await;
    assert_eq!(rig.get("/api/v1/status", Some(&cookie)).await.status(), 200);

    // Logging out ends the session.
    let out = rig
        .client
        .post(format!("{}/logout", rig.base))
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("answers");
    assert_eq!(out.status(), 303);
    assert_eq!(rig.get("/api/v1/status", Some(&cookie)).await.status(), 401);
    rig.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_shows_its_data_and_no_plate_text() {
    let rig = start(
        "[[camera]]\nid = \"pole-2\"\nsource = \"v4l2\"\ndevice = \"/dev/video-not-here\"\n",
        "also_listen = [\"127.0.0.1:0\"]\n",
        false,
    )
    .await;
    rig.wait_until_recorded().await;
    let cookie = rig.session().await;
    let mut answers: Vec<(String, String)> = Vec::new();

    let (p, status) = rig.text("/api/v1/status", &cookie).await;
    let v: serde_json::Value = serde_json::from_str(&status).expect("json");
    assert_eq!(v["device_id"], "pole-17");
    assert_eq!(v["software_version"], "9.9.9-test");
    assert_eq!(v["model_versions"], "scripted-models");
    assert_eq!(v["clock"]["synchronised"], true);
    assert_eq!(v["clock"]["max_error_us"], 2000);
    assert_eq!(v["passages"], 2);
    assert_eq!(v["violations_recorded"], 1);
    assert_eq!(v["uploads"]["pending"], 0);
    assert!(v["uploads"]["last_success_age_s"].is_u64(), "{status}");
    assert!(v["uploads"]["oldest_pending_age_s"].is_null());
    assert!(v["storage"]["store_bytes"].as_u64().expect("size") > 0);
    assert!(v["storage"]["fs_total_bytes"].as_u64().expect("size") > 0);
    assert_eq!(v["lists"]["hit_list"]["version"], 3);
    let replay = &v["cameras"][1];
    assert_eq!(replay["id"], "replay");
    assert_eq!(replay["condition"], "finished");
    assert_eq!(replay["facing"], "north, into the zone");
    assert_eq!(replay["frames_processed"], 40);
    assert_eq!(replay["reads_last_hour"], 10);
    assert_eq!(replay["passages_last_hour"], 2);
    assert_eq!(v["cameras"][0]["condition"], "absent");
    // The absent camera is the one alarm this rig makes (the build machine's
    // own disk may add `disk_nearly_full`, which this test does not control).
    let alarms: Vec<&serde_json::Value> = v["alarms"]
        .as_array()
        .expect("alarms")
        .iter()
        .filter(|a| a["id"] != "disk_nearly_full")
        .collect();
    assert_eq!(alarms.len(), 1, "{status}");
    assert_eq!(alarms[0]["id"], "camera_absent");
    assert!(alarms[0]["what"]
        .as_str()
        .expect("text")
        .contains("/dev/video-not-here"));
    let alarm_count = v["alarms"].as_array().map_or(0, Vec::len);
    answers.push((p, status));

    let (p, cam) = rig.text("/api/v1/cameras/replay", &cookie).await;
    let c: serde_json::Value = serde_json::from_str(&cam).expect("json");
    let snap = &c["snapshot"];
    assert_eq!(snap["seq"], 39, "the newest frame");
    assert_eq!(
        (snap["width"].as_u64(), snap["height"].as_u64()),
        (Some(80), Some(40))
    );
    let hist: u64 = snap["histogram"]
        .as_array()
        .expect("histogram")
        .iter()
        .filter_map(|b| b.as_u64())
        .sum();
    assert_eq!(hist, 80 * 40);
    assert!(snap["focus"].as_f64().expect("focus") > 0.0);
    let plate = &snap["plates"][0];
    assert_eq!(plate["height_px"], 12.0);
    assert_eq!(plate["needed_px"], 20);
    assert_eq!(plate["tall_enough"], false);
    assert_eq!(plate["in_roi"], true);
    answers.push((p, cam));

    let (p, cams) = rig.text("/api/v1/cameras", &cookie).await;
    let list: serde_json::Value = serde_json::from_str(&cams).expect("json");
    assert_eq!(list.as_array().map(Vec::len), Some(2));
    answers.push((p, cams));

    let (p, alarms) = rig.text("/api/v1/alarms", &cookie).await;
    assert!(alarms.contains("camera_absent") && alarms.contains("todo"));
    answers.push((p, alarms));

    let (p, page) = rig.text("/", &cookie).await;
    for want in [
        "pole-17",
        "9.9.9-test",
        "scripted-models",
        "no-runtime",
        "href=\"/cameras/replay\"",
        "synchronised",
        "What to do:",
        "/dev/video-not-here",
        "version 3",
        "waiting for upload</th><td>0 violation(s)",
        "name=viewport",
    ] {
        assert!(page.contains(want), "overview shows {want}: {page}");
    }
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "no outside assets"
    );
    answers.push((p, page));

    let (p, page) = rig.text("/cameras/replay", &cookie).await;
    for want in [
        "Camera replay",
        "finished",
        "north, into the zone",
        "src=\"/cameras/replay/snapshot.jpg\"",
        "12 / 20 px too small",
        "data-k=reads>10<",
        "data-k=passages>2<",
    ] {
        assert!(page.contains(want), "camera page shows {want}: {page}");
    }
    answers.push((p, page));

    let (p, metrics) = rig.text("/metrics", &cookie).await;
    for want in [
        "# TYPE anpr_frames_processed_total counter",
        "anpr_frames_processed_total{camera=\"replay\"} 40",
        "anpr_camera_passages_total{camera=\"replay\"} 2",
        "anpr_passages_total 2",
        "anpr_violations_recorded_total 1",
        "anpr_list_version{list=\"hit\"} 3",
        "anpr_clock_synchronised 1",
    ] {
        assert!(metrics.contains(want), "metrics have {want}: {metrics}");
    }
    assert!(
        metrics.contains(&format!("anpr_alarms {alarm_count}\n")),
        "{metrics}"
    );
    answers.push((p, metrics));

    let jpeg = rig.get("/cameras/replay/snapshot.jpg", Some(&cookie)).await;
    assert_eq!(jpeg.status(), 200);
    assert_eq!(jpeg.headers()[header::CONTENT_TYPE], "image/jpeg");
    assert_eq!(jpeg.headers()[header::CACHE_CONTROL], "no-store");
    let img = image::load_from_memory(&jpeg.bytes().await.expect("bytes")).expect("a JPEG");
    assert_eq!((img.width(), img.height()), (80, 40));
    assert_eq!(
        rig.get("/cameras/pole-2/snapshot.jpg", Some(&cookie))
            .await
            .status(),
        503,
        "an absent camera has no frame"
    );
    assert_eq!(rig.get("/cameras/nope", Some(&cookie)).await.status(), 404);

    // The same page on the second address.
    assert_eq!(rig.running.status_addrs.len(), 2);
    let second = format!("http://{}/api/v1/alarms", rig.running.status_addrs[1]);
    let r = rig
        .client
        .get(&second)
        .header(header::COOKIE, &cookie)
        .send()
        .await
        .expect("answers");
    assert_eq!(r.status(), 200, "{second}");

    // Neither plate's text, nor its keyed hash, is in any answer: the page
    // never sees text at all.
    let key = HmacKey::load("k1", &rig.cfg.policy.hmac_keys["k1"]).expect("key");
    for (path, body) in &answers {
        for plate in [NON_HIT, HIT] {
            assert!(!body.contains(plate), "{plate} in the answer to {path}");
            let hash = hex::encode(key.hash_plate(plate));
            assert!(
                !body.contains(&hash),
                "{plate}'s hash in the answer to {path}"
            );
        }
    }
    rig.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_is_served_over_https_with_a_secure_cookie() {
    let rig = start("", "", true).await;
    rig.wait_until_recorded().await;
    assert_eq!(
        rig.get("/healthz", None).await.status(),
        200,
        "answers over TLS"
    );
    let r = rig.login(PASSWORD).await;
    assert_eq!(r.status(), 303);
    let set = r.headers()[header::SET_COOKIE].to_str().expect("ascii");
    assert!(set.contains("; Secure"), "{set}");
    let plain = reqwest::Client::new()
        .get(format!(
            "http://127.0.0.1:{}/healthz",
            rig.running.status_addr.port()
        ))
        .send()
        .await;
    assert!(
        !plain.is_ok_and(|r| r.status().is_success()),
        "no plain HTTP on the TLS port"
    );
    rig.running.shutdown().await;
}
