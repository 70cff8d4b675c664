//! The uploader against an in-process fake backend, on paused time so that a
//! week of backoff costs milliseconds.

use std::sync::Mutex as StdMutex;

use tokio::time::Instant;

use super::*;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{PendingRecord, Store};
use crate::testing::{sample_context, sample_violation};

/// What the fake does with a delivery.
enum Mode {
    /// Fail every delivery until this (paused-clock) instant.
    OfflineUntil(Instant),
    /// Answer an ack naming another record, this many times.
    WrongIdTimes(u32),
    /// Answer 503 with this Retry-After, this many times.
    RetryAfterTimes(u32, Duration),
}

struct Fake {
    mode: StdMutex<Mode>,
    /// Seqs acknowledged, in order.
    delivered: StdMutex<Vec<i64>>,
    /// When each delivery attempt happened.
    attempts: StdMutex<Vec<Instant>>,
}

impl Fake {
    fn new(mode: Mode) -> Arc<Self> {
        Arc::new(Fake {
            mode: StdMutex::new(mode),
            delivered: StdMutex::new(Vec::new()),
            attempts: StdMutex::new(Vec::new()),
        })
    }
    fn delivered(&self) -> Vec<i64> {
        self.delivered.lock().expect("lock").clone()
    }
}

impl Backend for Fake {
    fn deliver<'a>(
        &'a self,
        rec: &'a PendingRecord,
    ) -> Pin<Box<dyn Future<Output = Result<Ack, UploadError>> + Send + 'a>> {
        Box::pin(async move {
            let now = Instant::now();
            self.attempts.lock().expect("lock").push(now);
            let mut mode = self.mode.lock().expect("lock");
            match &mut *mode {
                Mode::OfflineUntil(t) if now < *t => {
                    return Err(UploadError::Transport {
                        url: "fake".into(),
                        detail: "connection refused".into(),
                    })
                }
                Mode::WrongIdTimes(n) if *n > 0 => {
                    *n -= 1;
                    return Ok(Ack { id: Uuid::new_v4() });
                }
                Mode::RetryAfterTimes(n, d) if *n > 0 => {
                    *n -= 1;
                    return Err(UploadError::Status {
                        status: 503,
                        snippet: "busy".into(),
                        retry_after: Some(*d),
                    });
                }
                _ => {}
            }
            self.delivered.lock().expect("lock").push(rec.seq);
            Ok(Ack { id: rec.id })
        })
    }
}

fn params() -> UploaderParams {
    UploaderParams {
        batch: 4,
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(300),
        idle_poll: Duration::from_secs(60),
        clocks: Arc::new(crate::clock::RealClocks::new()),
    }
}

fn filled_store(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anpr.sqlite");
    let mut s = Store::open(&path).expect("open");
    for i in 0..n {
        s.record(&sample_violation(&format!("AB{i:03}")), &sample_context())
            .expect("record");
    }
    (dir, path)
}

struct Running {
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), UploadError>>,
}

fn spawn(path: &std::path::Path, backend: Arc<dyn Backend>) -> Running {
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run_uploader(
        path.to_path_buf(),
        backend,
        Arc::new(Notify::new()),
        metrics.clone(),
        params(),
        shutdown.clone(),
    ));
    Running {
        metrics,
        shutdown,
        task,
    }
}

/// Waits (in paused time, which auto-advances) until `cond` holds.
async fn wait_for(mut cond: impl FnMut() -> bool, limit: Duration) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "condition not met within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(start_paused = true)]
async fn week_offline_then_recovery_delivers_everything_once_in_order() {
    let (_dir, path) = filled_store(10);
    let week = Duration::from_secs(7 * 24 * 3600);
    let fake = Fake::new(Mode::OfflineUntil(Instant::now() + week));
    let run = spawn(&path, fake.clone());
    let f = fake.clone();
    wait_for(move || f.delivered().len() == 10, week * 2).await;
    assert_eq!(fake.delivered(), (1..=10).collect::<Vec<i64>>());
    // Backoff capped at 300 s: a week offline is thousands of attempts, not millions,
    // and recovery is noticed within one maximum backoff.
    let attempts = fake.attempts.lock().expect("lock").clone();
    assert!(
        attempts.len() > 1000 && attempts.len() < 10_000,
        "{}",
        attempts.len()
    );
    let failed_before = attempts.iter().filter(|t| **t < attempts[0] + week).count();
    let first_ok = attempts[failed_before];
    assert!(first_ok - (attempts[0] + week) <= Duration::from_secs(300));

    let m = run.metrics.snapshot();
    assert_eq!(m.uploads_acked, 10);
    assert_eq!(m.pending_uploads, 0);
    assert_eq!(m.upload_failures as usize, failed_before);
    assert_eq!(m.last_upload_error, None);
    run.shutdown.cancel();
    run.task.await.expect("join").expect("uploader");
    let s = Store::open(&path).expect("open");
    assert_eq!(s.pending_count().expect("count"), 0);
}

#[tokio::test(start_paused = true)]
async fn wrong_id_ack_is_not_an_ack() {
    let (_dir, path) = filled_store(1);
    let fake = Fake::new(Mode::WrongIdTimes(3));
    let run = spawn(&path, fake.clone());
    let f = fake.clone();
    wait_for(move || f.delivered().len() == 1, Duration::from_secs(600)).await;
    run.shutdown.cancel();
    run.task.await.expect("join").expect("uploader");
    let m = run.metrics.snapshot();
    assert_eq!(m.upload_failures, 3);
    assert_eq!(m.uploads_acked, 1);
    let s = Store::open(&path).expect("open");
    let id = {
        // Every record is acked now; find it through its status.
        let mut st = s
            .conn_for_tests()
            .prepare("SELECT id FROM violation")
            .expect("prepare");
        let id: String = st.query_row([], |r| r.get(0)).expect("row");
        Uuid::parse_str(&id).expect("uuid")
    };
    let status = s.status(id).expect("status").expect("present");
    assert_eq!(status.attempts, 3);
    assert!(status.acked_at.is_some());
}

#[tokio::test(start_paused = true)]
async fn retry_after_is_honoured() {
    let (_dir, path) = filled_store(1);
    let fake = Fake::new(Mode::RetryAfterTimes(1, Duration::from_secs(120)));
    let run = spawn(&path, fake.clone());
    let f = fake.clone();
    wait_for(move || f.delivered().len() == 1, Duration::from_secs(600)).await;
    let attempts = fake.attempts.lock().expect("lock").clone();
    assert_eq!(attempts.len(), 2);
    let gap = attempts[1] - attempts[0];
    assert!(
        gap >= Duration::from_secs(120) && gap < Duration::from_secs(122),
        "{gap:?}"
    );
    run.shutdown.cancel();
    run.task.await.expect("join").expect("uploader");
}

#[tokio::test(start_paused = true)]
async fn new_record_is_sent_after_wake_and_shutdown_is_prompt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anpr.sqlite");
    let mut writer = Store::open(&path).expect("open");
    let fake = Fake::new(Mode::WrongIdTimes(0));
    let metrics = Metrics::new();
    let shutdown = CancellationToken::new();
    let wake = Arc::new(Notify::new());
    let task = tokio::spawn(run_uploader(
        path.clone(),
        fake.clone(),
        wake.clone(),
        metrics.clone(),
        params(),
        shutdown.clone(),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    writer
        .record(&sample_violation("WAKE1"), &sample_context())
        .expect("record");
    wake.notify_one();
    let f = fake.clone();
    // Well under the 60 s idle poll: the wake-up, not the poll, sent it.
    wait_for(move || f.delivered().len() == 1, Duration::from_secs(5)).await;
    let t = Instant::now();
    shutdown.cancel();
    task.await.expect("join").expect("uploader");
    assert!(t.elapsed() < Duration::from_secs(1));
}

#[tokio::test(start_paused = true)]
async fn a_week_offline_while_violations_keep_coming_stays_in_budget_then_delivers_in_order() {
    use crate::config::BudgetPolicy;
    use crate::store::{reason, StoreLimits, StoreOptions};
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("anpr.sqlite");
    let budget = 3_000_000;
    let mut writer = Store::open_with(
        &path,
        StoreOptions {
            limits: StoreLimits {
                max_bytes: budget,
                policy: BudgetPolicy::DropNewEvidence,
            },
            ..StoreOptions::default()
        },
    )
    .expect("open");
    let week = Duration::from_secs(7 * 24 * 3600);
    let fake = Fake::new(Mode::OfflineUntil(Instant::now() + week));
    let run = spawn(&path, fake.clone());
    // One violation an hour for the whole week, each with a ~50 KB overview.
    let hours = 7 * 24;
    for h in 0..hours {
        let v = crate::testing::sized_violation(&format!("WK{h:03}"), 160, 120, h);
        writer.record(&v, &sample_context()).expect("recorded");
        let used = writer.used_bytes().expect("used");
        assert!(used <= budget, "hour {h}: {used} bytes over the budget");
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    assert!(fake.delivered().is_empty(), "the backend was down all week");
    let st = writer.budget_status().expect("status");
    assert!(
        st.drops
            .get(reason::NEW_EVIDENCE_BUDGET)
            .copied()
            .unwrap_or(0)
            > 0
    );
    let f = fake.clone();
    wait_for(move || f.delivered().len() == hours as usize, week).await;
    assert_eq!(
        fake.delivered(),
        (1..=hours as i64).collect::<Vec<i64>>(),
        "all of them, once each, oldest first"
    );
    run.shutdown.cancel();
    run.task.await.expect("join").expect("uploader");
    assert_eq!(writer.pending_count().expect("n"), 0);
}
