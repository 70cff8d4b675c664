//! The store stage's loops: the recording thread (violations in, committed
//! rows out, a refused write held and retried, the uploader woken), and the
//! retention task on its own connection. What a record holds and how it is
//! written is [`super::Store`]'s.

use crate::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::{RecordContext, Store};
use crate::clock::TimeSource;
use crate::keys::EvidenceSigner;
use crate::message::Violation;
use crate::metrics::{inc, Metrics};
use crate::watchdog::Beat;

/// How often retention runs (and once at start).
pub const RETENTION_EVERY: Duration = Duration::from_secs(600);

/// What [`run_retention`] keeps, how often it looks, and the key that signs
/// the tombstones of expired undelivered records.
#[derive(Clone, Debug)]
pub struct RetentionParams {
    /// How long a delivered record keeps its images.
    pub acked_evidence: chrono::Duration,
    /// The maximum retention of any record (`store.max_retention_days`).
    pub max_age: chrono::Duration,
    pub every: Duration,
    pub signer: EvidenceSigner,
}

/// Applies retention every `params.every` on its own connection to the
/// store, with the wall clock of `time`, and publishes the drop counters.
pub async fn run_retention(
    path: PathBuf,
    params: RetentionParams,
    time: TimeSource,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let store = match tokio::task::spawn_blocking(move || Store::open(&path)).await {
        Ok(Ok(s)) => Arc::new(std::sync::Mutex::new(s)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "retention cannot open the store; nothing will be deleted");
            return;
        }
        Err(_) => return,
    };
    let mut first = true;
    loop {
        // Once at start, then every `params.every` of the daemon's clocks.
        if !std::mem::take(&mut first) {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = time.clocks.sleep(params.every) => {}
            }
        }
        let now = time.clocks.wall();
        let s = store.clone();
        let p = params.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut g = s.lock_unpoisoned();
            let report = g.apply_retention(now, p.acked_evidence, p.max_age, &p.signer)?;
            Ok::<_, super::StoreError>((report, g.budget_status()?))
        })
        .await;
        match done {
            Ok(Ok((report, budget))) => {
                // Expired undelivered records are logged by seq in the store.
                if report.acked_evidence_deleted + report.acked_rows_deleted > 0 {
                    tracing::info!(
                        acked_evidence_deleted = report.acked_evidence_deleted,
                        acked_rows_deleted = report.acked_rows_deleted,
                        "retention"
                    );
                }
                // Only the counters: the alarm belongs to the recording thread.
                *metrics.store_drops.lock_unpoisoned() = budget.drops;
                metrics
                    .store_used_bytes
                    .store(budget.used_bytes, std::sync::atomic::Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                inc(&metrics.store_errors);
                tracing::error!(error = %e, "retention failed; trying again later");
            }
            Err(_) => return,
        }
    }
}

/// The store stage: commits each violation, retrying (and holding it in
/// memory) while the database refuses, so that a full disk loses nothing
/// that is still in this process.
pub fn run(
    store: &mut Store,
    contexts: &HashMap<String, RecordContext>,
    mut input: mpsc::Receiver<Violation>,
    metrics: &Metrics,
    wake: &Notify,
    beat: &Beat,
) {
    while let Some(v) = input.blocking_recv() {
        let Some(ctx) = contexts.get(&*v.passage.camera) else {
            // Cannot happen: passages come only from configured cameras.
            tracing::error!(camera = %v.passage.camera, "violation from an unconfigured camera; not recorded");
            inc(&metrics.store_errors);
            continue;
        };
        let mut delay = Duration::from_millis(200);
        loop {
            // Busy only inside the write: a store that refuses and is
            // retried with backoff is working as designed, not stuck.
            match beat.handle(|| store.record(&v, ctx)) {
                Err(e @ super::StoreError::BudgetFull { .. }) => {
                    // The configured policy: not recorded, counted, alarmed.
                    inc(&metrics.violations_refused);
                    tracing::error!(error = %e, camera = %v.passage.camera, "violation not recorded");
                    if let Ok(b) = store.budget_status() {
                        metrics.set_store_budget(&b);
                    }
                    break;
                }
                Ok(id) => {
                    if !v.passage.best.captured.sync.synchronised {
                        inc(&metrics.violations_clock_unsynchronised);
                        tracing::warn!(
                            seq = id.seq,
                            "violation recorded with an unsynchronised clock; its record says so"
                        );
                    }
                    if let Some(reason) = id.evidence_dropped {
                        tracing::warn!(
                            seq = id.seq,
                            reason,
                            "disk budget reached: violation recorded without its images"
                        );
                    }
                    if let Ok(b) = store.budget_status() {
                        metrics.set_store_budget(&b);
                    }
                    // Even a violation's plate is masked in logs: the log is
                    // not evidence, and may travel further than the store.
                    tracing::info!(
                        camera = %v.passage.camera,
                        plate = %crate::policy::mask_plate(&v.passage.plate.text),
                        seq = id.seq,
                        "violation recorded"
                    );
                    inc(&metrics.violations_recorded);
                    if let Ok(n) = store.pending_count() {
                        metrics
                            .pending_uploads
                            .store(n, std::sync::atomic::Ordering::Relaxed);
                    }
                    wake.notify_one();
                    break;
                }
                Err(e) => {
                    inc(&metrics.store_errors);
                    tracing::error!(error = %e, retry_in_ms = delay.as_millis() as u64, "cannot record violation; holding it and retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    }
}
