//! Crash safety of the whole daemon: a child process runs the pipeline
//! (`pipeline::start`, as `anpr-edge run` does) on a looping replay of camera
//! frames in which every vehicle is on the hit list, uploading to the
//! reference receiver over mutual TLS as it goes, and is killed with SIGKILL
//! at a random (seeded) moment, 200 times in a row on the same state
//! directory. Kills land while frames are detected, passages tracked, records
//! committed and batches half-delivered. Afterwards the store is consistent,
//! and once the backlog is delivered the receiver holds every violation the
//! store committed, exactly once, numbered without gaps, in one valid chain.
//!
//! The child is this test binary again (`CRASH_CHILD_CONFIG` set). Its
//! detector and reader are scripted (each plate's number is painted into the
//! frame): the ONNX models take seconds to load in a debug build, which 200
//! starts cannot afford; every other stage is the daemon's own.
//! `scripts/soak.sh` runs the same for longer.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use image::RgbImage;
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

use anpr_edge::testing::{ScriptedDetector, ScriptedReader};

use anpr_edge::clock::TimeSource;
use anpr_edge::config::Config;
use anpr_edge::keys::EvidenceSigner;
use anpr_edge::metrics::Metrics;
use anpr_edge::pipeline::{self, Parts};
use anpr_edge::status::DeviceFacts;
use anpr_edge::store::Store;
use anpr_edge::upload::{run_uploader, Backend, HttpsBackend, UploaderParams};
use anpr_receiver as receiver;

/// Vehicles in the replay; each is on the hit list.
const PLATES: usize = 40;
/// Frames a vehicle is in view, then empty frames until the next one.
const FRAMES_PER_PLATE: usize = 3;
const GAP_FRAMES: usize = 5;
const DEVICE: &str = "crash-1";

fn plate_text(k: usize) -> String {
    format!("V{k:03}BX")
}

/// The crop's grey level that stands for plate `k` (a flat fill, so that
/// rectification's interpolation keeps it exact at the centre).
fn grey_of(k: usize) -> u8 {
    (40 + k * 5) as u8
}

/// The plate whose number a crop's grey level encodes ([`grey_of`]).
fn plate_of_grey(grey: u8) -> String {
    plate_text((usize::from(grey).saturating_sub(40) + 2) / 5)
}

fn write_frames(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut i = 0;
    let mut put = |plate: Option<usize>| {
        let mut img = RgbImage::new(80, 40);
        if let Some(k) = plate {
            anpr_edge::testing::paint_plate(&mut img, grey_of(k));
        }
        img.save(dir.join(format!("f{i:04}.png")))
            .expect("write frame");
        i += 1;
    };
    for k in 0..PLATES {
        (0..FRAMES_PER_PLATE).for_each(|_| put(Some(k)));
        (0..GAP_FRAMES).for_each(|_| put(None));
    }
}

/// Writes what the children share (frames, lists, the config) and returns
/// the config's path.
fn prepare(dir: &std::path::Path, pki: &receiver::TestPki, url: &str) -> std::path::PathBuf {
    write_frames(&dir.join("frames"));
    let plates: Vec<String> = (0..PLATES).map(plate_text).collect();
    let plates: Vec<&str> = plates.iter().map(String::as_str).collect();
    let keys = anpr_edge::testing::write_hit_list(dir, "crash-ze", 1, &plates);
    // merge_window_s = 0: the replay loops, and a vehicle seen again is a new
    // passage rather than a parked one re-read.
    let text = format!(
        r#"
[device]
id = "{DEVICE}"
[[camera]]
id = "replay"
source = "replay"
path = "{frames}"
fps = 100
looped = true
[track]
close_after_ms = 25
min_reads = 2
merge_window_s = 0
[policy]
hit_list = "{dir}/hits.bundle"
public_key = "{public_key}"
[policy.hmac_keys]
k1 = "{dir}/keys/hmac.key"
[zone]
id = "crash-ze"
[store]
path = "{dir}/state/violations.sqlite"
[upload]
url = "{url}"
ca_cert = "{ca}"
client_cert = "{client_cert}"
client_key = "{client_key}"
backoff_initial_ms = 20
backoff_max_ms = 200
batch_size = 8
[status]
listen = "127.0.0.1:0"
"#,
        frames = dir.join("frames").display(),
        dir = dir.display(),
        public_key = keys.public_key_base64,
        ca = pki.ca_cert.display(),
        client_cert = pki.client_cert.display(),
        client_key = pki.client_key.display(),
    );
    std::fs::create_dir_all(dir.join("state")).expect("mkdir");
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("write");
    path
}

/// In the child: the daemon's pipeline until killed, printing the count of
/// committed violations each time it grows.
#[test]
fn crash_child() {
    let Ok(config) = std::env::var("CRASH_CHILD_CONFIG") else {
        return;
    };
    let cfg = Config::load(std::path::Path::new(&config)).expect("config");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let parts = Parts {
            detector: Box::new(ScriptedDetector::default()),
            reader: Box::new(ScriptedReader(plate_of_grey)),
            backend: Arc::new(HttpsBackend::new(&cfg.upload).expect("backend")),
            cameras: pipeline::cameras_from_config(&cfg.cameras, true),
            policy: pipeline::policy_from_config(&cfg, TimeSource::real().clocks).expect("lists"),
            time: TimeSource::real(),
            facts: DeviceFacts {
                device_id: DEVICE.into(),
                software_version: "crash-test".into(),
                model_versions: "scripted".into(),
                runtime_version: "none".into(),
            },
        };
        let running = pipeline::start(&cfg, parts).await.expect("starts");
        let mut shown = 0;
        let mut out = std::io::stdout();
        loop {
            let now = running.metrics.snapshot().violations_recorded;
            if now != shown {
                shown = now;
                // Flushed at once: the kill may come any moment now.
                let _ = writeln!(out, "recorded {now}");
                let _ = out.flush();
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_daemon_at_random_moments_loses_and_duplicates_nothing() {
    let runs: usize = std::env::var("CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = receiver::start("127.0.0.1:0".parse().expect("addr"), &pki)
        .await
        .expect("receiver");
    let config_path = prepare(dir.path(), &pki, &rx.url());
    let cfg = Config::load(&config_path).expect("valid config");
    // Provisioned before the first start, as an installer would.
    let (signer, _) =
        EvidenceSigner::load_or_create(&cfg.store.signing_key_path()).expect("evidence key");
    rx.trust_device(DEVICE, signer.verifying_key());

    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0006);
    let me = std::env::current_exe().expect("exe");
    let mut reported_total: u64 = 0;
    let mut runs_that_recorded = 0;
    for _ in 0..runs {
        let mut child = Command::new(&me)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("CRASH_CHILD_CONFIG", &config_path)
            .env("RUST_LOG", "off")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("recorded ")?.trim().parse::<u64>().ok())
                .last()
                .unwrap_or(0)
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(200..700)));
        // SIGKILL: no destructor, no flush, no chance to finish a transaction
        // or to hear the backend's acknowledgement.
        child.kill().expect("kill");
        let _ = child.wait();
        let seen = reader.join().expect("reader");
        reported_total += seen;
        runs_that_recorded += usize::from(seen > 0);
    }
    assert!(
        runs_that_recorded > runs / 2,
        "too few runs got as far as a committed violation: {runs_that_recorded} of {runs}"
    );

    let store = Store::open(&cfg.store.path).expect("store survives");
    store.quick_check().expect("consistent");
    let total: i64 = rusqlite::Connection::open(&cfg.store.path)
        .and_then(|c| c.query_row("SELECT COUNT(*) FROM violation", [], |r| r.get(0)))
        .expect("count");
    let total = total as u64;
    // Every commit a child reported is in the store; at most one per run
    // may have committed between its last report and the kill.
    assert!(
        reported_total <= total && total <= reported_total + runs as u64,
        "store holds {total}, children reported {reported_total} commits"
    );

    // What the children left undelivered goes now.
    let backend: Arc<dyn Backend> = Arc::new(HttpsBackend::new(&cfg.upload).expect("backend"));
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_uploader(
        cfg.store.path.clone(),
        backend,
        Arc::new(tokio::sync::Notify::new()),
        metrics.clone(),
        UploaderParams {
            batch: 32,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            idle_poll: Duration::from_secs(60),
            clocks: Arc::new(anpr_edge::clock::RealClocks::new()),
        },
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while store.pending_count().expect("count") > 0 {
        assert!(tokio::time::Instant::now() < deadline, "not all delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.expect("join").expect("uploader");

    let received = rx.received();
    let seqs: Vec<i64> = received.iter().map(|r| r.metadata.seq).collect();
    // The receiver verified each signature and the chain as it took them.
    assert_eq!(
        seqs,
        (1..=total as i64).collect::<Vec<i64>>(),
        "every committed violation once, without gaps, in order"
    );
    let plates: std::collections::HashSet<String> = (0..PLATES).map(plate_text).collect();
    assert!(received
        .iter()
        .all(|r| plates.contains(&r.metadata.plate.text)));
    let chains: std::collections::HashSet<_> = received
        .iter()
        .map(|r| r.metadata.chain_id.clone())
        .collect();
    assert_eq!(chains.len(), 1, "one chain: the store was never replaced");
    assert!(rx.refusals().is_empty(), "{:?}", rx.refusals());
    eprintln!(
        "{runs} kills: {total} violations committed, {} delivered again after a lost acknowledgement, {} uploads cut off mid-body",
        received.iter().filter(|r| r.deliveries > 1).count(),
        rx.cut_short().len()
    );
    rx.shutdown().await;
}
