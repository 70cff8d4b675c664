//! Crash safety of the commit point: a child process records violations as
//! fast as it can and is killed with SIGKILL at a random (seeded) moment, 200
//! times in a row on the same database; then the uploader delivers everything
//! to the reference receiver. Every violation the child saw committed must
//! arrive exactly once, numbered without gaps, in one valid chain.
//!
//! The child is this test binary again (`CRASH_CHILD_DB` set), running the
//! store as the daemon's store thread does; it is not the whole daemon on
//! camera frames (that needs the models, too slow to load 200 times here).
//! `scripts/soak.sh` runs the same for longer.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use anpr_edge::metrics::Metrics;
use anpr_edge::receiver;
use anpr_edge::store::testing::{sample_context, sample_signer, sample_violation};
use anpr_edge::store::Store;
use anpr_edge::upload::{run_uploader, Backend, HttpsBackend, UploaderParams};
use rand::{Rng, SeedableRng};
use tokio_util::sync::CancellationToken;

/// In the child: record until killed, printing each committed seq.
#[test]
fn crash_child() {
    let Ok(db) = std::env::var("CRASH_CHILD_DB") else {
        return;
    };
    let mut s = Store::open(std::path::Path::new(&db)).expect("store");
    let ctx = sample_context();
    for i in 0.. {
        let id = s
            .record(&sample_violation(&format!("K{i:05}")), &ctx)
            .expect("record");
        println!("committed {}", id.seq);
    }
}

#[tokio::test]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let runs: usize = std::env::var("CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("anpr.sqlite");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_0006);
    let me = std::env::current_exe().expect("exe");
    let mut committed: Vec<i64> = Vec::new();
    for _ in 0..runs {
        let mut child = Command::new(&me)
            .args([
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env("CRASH_CHILD_DB", &db)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("child");
        let stdout = child.stdout.take().expect("stdout");
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("committed ")?.trim().parse::<i64>().ok())
                .collect::<Vec<i64>>()
        });
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..60)));
        // SIGKILL: no destructor, no flush, no chance to finish a transaction.
        child.kill().expect("kill");
        let _ = child.wait();
        committed.extend(reader.join().expect("reader"));
    }
    assert!(
        committed.len() > runs / 2,
        "too few commits: {}",
        committed.len()
    );

    let s = Store::open(&db).expect("store survives");
    s.quick_check().expect("consistent");
    let total = s.pending_count().expect("count") as i64;
    let pki = receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
    let rx = receiver::start("127.0.0.1:0".parse().expect("addr"), &pki)
        .await
        .expect("receiver");
    rx.trust_device("cam-post-17", sample_signer().verifying_key());
    let backend: Arc<dyn Backend> =
        Arc::new(HttpsBackend::new(&pki.upload_config(&rx.url())).expect("backend"));
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_uploader(
        db.clone(),
        backend,
        Arc::new(tokio::sync::Notify::new()),
        metrics.clone(),
        UploaderParams {
            batch: 32,
            backoff_initial: Duration::from_millis(20),
            backoff_max: Duration::from_millis(200),
            idle_poll: Duration::from_secs(60),
        },
        shutdown.clone(),
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while (metrics.snapshot().uploads_acked as i64) < total {
        assert!(tokio::time::Instant::now() < deadline, "not all delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    shutdown.cancel();
    task.await.expect("join").expect("uploader");
    let got: Vec<i64> = rx.received().iter().map(|r| r.metadata.seq).collect();
    // The receiver took each in one chain (it verifies signature and chain).
    assert_eq!(got, (1..=total).collect::<Vec<i64>>(), "gapless, once each");
    assert!(rx.received().iter().all(|r| r.deliveries == 1));
    for seq in &committed {
        assert!(got.contains(seq), "committed seq {seq} did not arrive");
    }
    assert!(rx.refusals().is_empty(), "{:?}", rx.refusals());
    rx.shutdown().await;
}
