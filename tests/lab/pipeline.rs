//! The whole pipeline on generated frames with the real models, uploading over
//! real TLS to the reference receiver.
//!
//! Needs the runtime and models in `models/cache` (`make models`, which
//! `make test` runs first); without them these tests fail and say so.

use std::path::PathBuf;
use std::time::Duration;

use anpr_lab::demo::{self, DemoOptions, DemoOutcome};
use anpr_lab::synth::Scenario;

fn run_scene(
    dir: &std::path::Path,
    upload_port_override: Option<u16>,
    grace: Duration,
) -> Option<DemoOutcome> {
    let models_dir = anpr_edge::testing::fetched_models()?;
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(demo::run(DemoOptions {
        dir: dir.to_owned(),
        models_dir,
        scenario: Scenario::small_test(),
        upload_port_override,
        upload_grace: grace,
        progress: None,
    }))
    .map(Some)
    .expect("the scene runs")
}

/// Every byte of the database and its WAL, as text, for privacy checks.
fn store_bytes(store: &std::path::Path) -> Vec<u8> {
    let mut all = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let p = PathBuf::from(format!("{}{suffix}", store.display()));
        if let Ok(b) = std::fs::read(&p) {
            all.extend(b);
        }
    }
    all
}

fn contains(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn banned_plates_arrive_once_over_tls_and_nothing_else_is_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(out) = run_scene(dir.path(), None, Duration::from_secs(60)) else {
        return;
    };
    let s = &out.counters;

    let processed: u64 = s.cameras.iter().map(|c| c.frames_processed).sum();
    assert_eq!(
        processed as usize, out.frames,
        "lossless replay processes every frame"
    );
    assert_eq!(s.cameras[0].frames_dropped, 0);
    assert!(
        s.passages as usize >= out.scene_plates.len(),
        "one passage per vehicle at least: {s:?}"
    );

    let mut got: Vec<&str> = out
        .received
        .iter()
        .map(|r| r.metadata.plate.text.as_str())
        .collect();
    got.sort();
    let mut want: Vec<&str> = out.expected_violations.iter().map(String::as_str).collect();
    want.sort();
    assert_eq!(got, want, "exactly the banned, unexempted plates arrive");
    assert_eq!(s.violations_recorded as usize, want.len());
    assert_eq!(s.uploads_acked as usize, want.len());

    for r in &out.received {
        assert_eq!(r.metadata.device_id, "demo-0001");
        assert_eq!(r.metadata.camera, "demo-cam");
        assert!(r.metadata.reads >= 2);
        assert!(r.metadata.plate.confidence >= 0.8);
        assert!(!r.overview_jpeg.is_empty() && !r.crop_jpeg.is_empty());
        let overview = image::load_from_memory(&r.overview_jpeg).expect("overview is a JPEG");
        assert!(overview.width() >= 640, "overview is the whole frame");
    }
    let mut seqs: Vec<i64> = out.received.iter().map(|r| r.metadata.seq).collect();
    seqs.sort();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "sequence numbers without gaps"
    );

    // Privacy: no plate but a violation's is anywhere in the database files.
    let bytes = store_bytes(&out.store_path);
    assert!(!bytes.is_empty());
    for plate in &out.scene_plates {
        let is_violation = out.expected_violations.contains(plate);
        assert_eq!(
            contains(&bytes, plate),
            is_violation,
            "plate {plate} stored: {}",
            !is_violation
        );
    }
}

#[test]
fn a_backend_that_is_down_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A port that nothing listens on: bind one, then free it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port();
    let Some(out) = run_scene(dir.path(), Some(closed), Duration::from_millis(500)) else {
        return;
    };
    let s = &out.counters;
    assert!(!out.expected_violations.is_empty());
    assert_eq!(
        s.violations_recorded as usize,
        out.expected_violations.len()
    );
    assert_eq!(s.uploads_acked, 0);
    assert!(s.upload_failures >= 1);
    assert!(s.last_upload_error.is_some());
    assert!(out.received.is_empty());

    // Everything is still in the store, waiting.
    let store = anpr_edge::store::Store::open(&out.store_path).expect("reopen");
    assert_eq!(
        store.pending_count().expect("count") as usize,
        out.expected_violations.len()
    );
}
