//! The pipeline's wiring with scripted models and an in-process backend: runs
//! in milliseconds, needs no model files, and checks what the stages do
//! together (drops, absent cameras, non-hits, shutdown).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use image::RgbImage;

use anpr_edge::testing::{ScriptedDetector, ScriptedReader};

use anpr_edge::clock::TimeSource;
use anpr_edge::config::Config;
use anpr_edge::metrics::CameraState;
use anpr_edge::pipeline::{self, Parts};
use anpr_edge::status::DeviceFacts;
use anpr_edge::store::{PendingRecord, Store};
use anpr_edge::upload::{Ack, Backend, UploadError};
use anpr_wire::bundle::{BundleMeta, ListKind};
use anpr_wire::hash::HmacKey;

/// A bright plate reads as `VBX12P`, a dark one as `GH066X`.
fn plate_of_red(red: u8) -> String {
    if red > 128 { "VBX12P" } else { "GH066X" }.into()
}

#[derive(Default)]
struct RecordingBackend {
    delivered: Mutex<Vec<String>>,
}

impl Backend for RecordingBackend {
    fn deliver<'a>(
        &'a self,
        rec: &'a PendingRecord,
    ) -> Pin<Box<dyn Future<Output = Result<Ack, UploadError>> + Send + 'a>> {
        Box::pin(async move {
            let plate = rec
                .metadata()
                .map_or("(tombstone)", |m| m.plate.text.as_str());
            self.delivered.lock().expect("lock").push(plate.to_string());
            Ok(Ack { id: rec.id })
        })
    }
}

/// Frames: `n` with a bright plate (VBX12P), `gap` empty frames, then `n`
/// with a dark one (GH066X).
fn write_frames(dir: &std::path::Path, n: usize) {
    write_frames_with_gap(dir, n, 30)
}

fn write_frames_with_gap(dir: &std::path::Path, n: usize, gap: usize) {
    let mut i = 0;
    let mut put = |plate: Option<u8>| {
        let mut img = RgbImage::new(80, 40);
        if let Some(v) = plate {
            anpr_edge::testing::paint_plate(&mut img, v);
        }
        img.save(dir.join(format!("f{i:04}.png")))
            .expect("write frame");
        i += 1;
    };
    (0..n).for_each(|_| put(Some(250)));
    (0..gap).for_each(|_| put(None));
    (0..n).for_each(|_| put(Some(60)));
}

/// The technician password of every config here ("t:fieldtech-1234" in Basic).
const STATUS_PASSWORD: &str = "fieldtech-1234";

fn config(dir: &std::path::Path, extra_camera: &str) -> Config {
    config_with(dir, extra_camera, 500)
}

fn config_with(dir: &std::path::Path, extra_camera: &str, close_after_ms: u64) -> Config {
    std::fs::write(dir.join("ca.pem"), "unused by the in-process backend").expect("write");
    let keys = anpr_edge::testing::write_hit_list(dir, "test-ze", 1, &["VBX12P"]);
    let text = format!(
        r#"
[device]
id = "t-1"
[[camera]]
id = "replay"
source = "replay"
path = "{frames}"
fps = 10
{extra_camera}
[track]
close_after_ms = {close_after_ms}
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
ca_cert = "{dir}/ca.pem"
[status]
listen = "127.0.0.1:0"
password_hash = "{password_hash}"
"#,
        frames = dir.join("frames").display(),
        dir = dir.display(),
        public_key = keys.public_key_base64,
        password_hash = anpr_edge::status::auth::hash_password(STATUS_PASSWORD).expect("hash"),
    );
    let path = dir.join("c.toml");
    std::fs::write(&path, text).expect("write");
    Config::load(&path).expect("valid config")
}

fn parts(cfg: &Config, backend: Arc<RecordingBackend>) -> Parts {
    parts_with(cfg, backend, Duration::ZERO)
}

fn parts_with(cfg: &Config, backend: Arc<RecordingBackend>, detect_delay: Duration) -> Parts {
    Parts {
        detector: Box::new(ScriptedDetector {
            delay: detect_delay,
        }),
        reader: Box::new(ScriptedReader(plate_of_red)),
        backend,
        cameras: pipeline::cameras_from_config(&cfg.cameras, false),
        policy: pipeline::policy_from_config(cfg, Arc::new(anpr_edge::clock::RealClocks::new()))
            .expect("lists"),
        time: TimeSource::real(),
        facts: DeviceFacts {
            device_id: "t-1".into(),
            software_version: "test".into(),
            model_versions: "scripted".into(),
            runtime_version: "none".into(),
        },
    }
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..400 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_recorded_and_delivered_and_a_non_hit_only_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("frames")).expect("mkdir");
    write_frames(&dir.path().join("frames"), 5);
    let cfg = config(dir.path(), "");
    let backend = Arc::new(RecordingBackend::default());
    let running = pipeline::start(&cfg, parts(&cfg, backend.clone()))
        .await
        .expect("starts");
    let metrics = running.metrics.clone();
    wait_for("the upload", || {
        backend.delivered.lock().expect("lock").len() == 1
    })
    .await;
    let mut recorded = running.recorded;
    (&mut recorded)
        .await
        .expect("store stage ends when the replay has ended");

    let s = metrics.snapshot();
    assert_eq!(s.cameras[0].frames_processed, 40);
    assert_eq!(s.passages, 2);
    assert_eq!(s.non_hits, 1);
    assert_eq!(s.violations_recorded, 1);
    assert_eq!(*backend.delivered.lock().expect("lock"), ["VBX12P"]);
    running.stop_services.cancel();
    running.uploader.await.expect("uploader ends");

    let store = Store::open(&cfg.store.path).expect("reopen");
    assert_eq!(store.pending_count().expect("count"), 0);
    let db = std::fs::read(&cfg.store.path).expect("db");
    assert!(
        !db.windows(6).any(|w| w == b"GH066X"),
        "the non-hit is nowhere in the database"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_camera_is_reported_while_the_others_go_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("frames")).expect("mkdir");
    write_frames(&dir.path().join("frames"), 3);
    let cfg = config(
        dir.path(),
        "[[camera]]\nid = \"pole-2\"\nsource = \"v4l2\"\ndevice = \"/dev/video-not-here\"\n",
    );
    let backend = Arc::new(RecordingBackend::default());
    let running = pipeline::start(&cfg, parts(&cfg, backend.clone()))
        .await
        .expect("starts");
    let metrics = running.metrics.clone();
    wait_for("the replay to finish", || {
        metrics
            .snapshot()
            .cameras
            .iter()
            .any(|c| c.id == "replay" && c.state == CameraState::Finished)
    })
    .await;
    let absent = metrics
        .snapshot()
        .cameras
        .into_iter()
        .find(|c| c.id == "pole-2")
        .expect("listed");
    match absent.state {
        CameraState::Absent(why) => assert!(why.contains("/dev/video-not-here"), "{why}"),
        other => panic!("expected absent, got {other:?}"),
    }
    // The absent camera keeps retrying; shutdown must still end every stage,
    // closing the replay's last track on the way.
    tokio::time::timeout(Duration::from_secs(10), running.shutdown())
        .await
        .expect("shutdown completes");
    assert_eq!(metrics.snapshot().passages, 2);
    assert_eq!(metrics.snapshot().violations_recorded, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_machine_does_not_split_passages() {
    // Frames are 100 ms apart on the replay's clock and tracks close after
    // 150 ms without a read, but each frame takes 250 ms to detect: only the
    // frames' own times may decide when a vehicle has gone.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("frames")).expect("mkdir");
    write_frames_with_gap(&dir.path().join("frames"), 3, 5);
    let cfg = config_with(dir.path(), "", 150);
    let backend = Arc::new(RecordingBackend::default());
    let running = pipeline::start(
        &cfg,
        parts_with(&cfg, backend.clone(), Duration::from_millis(250)),
    )
    .await
    .expect("starts");
    let metrics = running.metrics.clone();
    let mut recorded = running.recorded;
    (&mut recorded)
        .await
        .expect("store stage ends when the replay has ended");
    assert_eq!(metrics.snapshot().passages, 2, "one passage per vehicle");
    running.stop_services.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_downloaded_saved_and_shown_on_the_status_page() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("frames")).expect("mkdir");
    write_frames(&dir.path().join("frames"), 1);
    let mut cfg = config(dir.path(), "");
    let pki = anpr_receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let receiver = anpr_receiver::start("127.0.0.1:0".parse().expect("addr"), &pki)
        .await
        .expect("receiver");
    let keys = dir.path().join("keys");
    let hmac = HmacKey::load("k1", &keys.join("hmac.key")).expect("hmac key");
    let signing =
        anpr_wire::build::load_signing_key(&keys.join("signing.key")).expect("signing key");
    let meta = BundleMeta {
        zone: "test-ze".into(),
        version: 2,
        created_at: chrono::Utc::now(),
        key_id: "k1".into(),
    };
    let v2 = anpr_wire::build::build_from_csv(
        ListKind::Hit,
        &meta,
        "plate,entry_id,banned_from\nVBX12P,h1,2025-01-01\nGH066X,h2,2025-01-01\n",
        &hmac,
        &signing,
    )
    .expect("bundle");
    receiver.set_list(ListKind::Hit, "test-ze", v2.clone());
    cfg.policy.lists_url = Some(receiver.url());
    cfg.policy.lists_ca_cert = Some(pki.ca_cert.clone());
    let backend = Arc::new(RecordingBackend::default());
    let running = pipeline::start(&cfg, parts(&cfg, backend))
        .await
        .expect("starts");
    let lists = running.lists.clone();
    wait_for("the downloaded list", || {
        lists.hit_list().is_some_and(|l| l.header.version == 2)
    })
    .await;
    assert_eq!(
        std::fs::read(cfg.policy.hit_list.as_ref().expect("path")).expect("saved"),
        v2
    );
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(running.status_addr)
        .await
        .expect("connect");
    s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dDpmaWVsZHRlY2gtMTIzNA==\r\nConnection: close\r\n\r\n")
        .await
        .expect("write");
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.expect("read");
    let body = buf.split_once("\r\n\r\n").expect("body").1;
    let v: serde_json::Value = serde_json::from_str(body.trim()).expect("json");
    assert_eq!(v["lists"]["hit_list"]["version"], 2);
    assert_eq!(v["lists"]["hit_list"]["entries"], 2);
    assert_eq!(v["lists"]["alarm"], false);
    running.shutdown().await;
    receiver.shutdown().await;
}
