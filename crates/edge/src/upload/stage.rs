//! The uploader's loop: pending records from the store, oldest first, to the
//! backend; acknowledgements marked; failures counted, noted on the record and
//! backed off. What a request looks like is the [`super::Backend`]'s.

use crate::sync::LockUnpoisoned;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{Backend, Backoff, UploadError, UploaderParams};
use crate::clock::Clocks;
use crate::metrics::{inc, Metrics};
use crate::store::{Store, StoreError};

/// A failed delivery: counted, shown on the status page, and its attempt
/// written to the record (the backoff is the caller's).
async fn note_failure(
    store: &Arc<Mutex<Store>>,
    metrics: &Metrics,
    at: chrono::DateTime<chrono::Utc>,
    id: uuid::Uuid,
    msg: String,
) {
    inc(&metrics.upload_failures);
    metrics.set_upload_error(Some(msg.clone()), at);
    if let Err(se) = blocking(store, move |s| s.record_attempt(id, &msg)).await {
        inc(&metrics.store_errors);
        tracing::error!(error = %se, "cannot count upload attempt");
    }
}

/// Runs a store call on the blocking pool: SQLite calls (fsync, large blobs)
/// must not stall the async workers.
async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, UploadError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = store.lock_unpoisoned();
        f(&mut guard)
    })
    .await
    .map_err(|e| UploadError::Task(e.to_string()))?
    .map_err(UploadError::Store)
}

/// Sleeps for `d`; false if shutdown came first.
async fn pause(clocks: &dyn Clocks, d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = clocks.sleep(d) => true,
    }
}

/// Delivers pending records from the store at `store_path` through `backend`
/// until `shutdown` is cancelled.
///
/// Opens its own connection to the store. Records go oldest (lowest seq) first;
/// after any failure it waits (exponential backoff with jitter, at least as long
/// as a `Retry-After`) and starts again from the oldest pending record, so
/// records are delivered in seq order. When nothing is pending it waits for
/// `wake` (the recorder calls `wake.notify_one()` after each commit, which is
/// never lost even if no one is waiting yet) or `params.idle_poll`.
///
/// Returns `Err` only if the store cannot be opened; later store errors are
/// counted in `metrics.store_errors` and retried with backoff.
pub async fn run_uploader(
    store_path: PathBuf,
    backend: Arc<dyn Backend>,
    wake: Arc<Notify>,
    metrics: Arc<Metrics>,
    params: UploaderParams,
    shutdown: CancellationToken,
) -> Result<(), UploadError> {
    let path = store_path.clone();
    let store = tokio::task::spawn_blocking(move || Store::open(&path))
        .await
        .map_err(|e| UploadError::Task(e.to_string()))??;
    let store = Arc::new(Mutex::new(store));
    let mut backoff = Backoff::new(params.backoff_initial, params.backoff_max);
    let batch_size = params.batch.max(1);

    'outer: while !shutdown.is_cancelled() {
        let batch = match blocking(&store, move |s| {
            let count = s.pending_count()?;
            let oldest = s.oldest_pending_created_at()?;
            Ok((count, oldest, s.pending(batch_size)?))
        })
        .await
        {
            Ok((count, oldest, batch)) => {
                metrics.pending_uploads.store(count, Ordering::Relaxed);
                metrics.oldest_pending_unix_ms.store(
                    oldest.map_or(0, |t| t.timestamp_millis()),
                    Ordering::Relaxed,
                );
                batch
            }
            Err(e) => {
                inc(&metrics.store_errors);
                tracing::error!(error = %e, "cannot read pending violations");
                metrics.set_upload_error(Some(e.to_string()), params.clocks.wall());
                if !pause(params.clocks.as_ref(), backoff.next_delay(), &shutdown).await {
                    break;
                }
                continue;
            }
        };

        if batch.is_empty() {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = wake.notified() => {}
                _ = tokio::time::sleep(params.idle_poll) => {}
            }
            continue;
        }

        if batch.len() > 1 {
            let result = tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                r = backend.deliver_batch(&batch) => r,
            };
            // Defence in depth, as below: only ids of this batch count.
            let result = result.and_then(|ids| {
                match ids.iter().find(|id| !batch.iter().any(|r| r.id == **id)) {
                    Some(stranger) => Err(UploadError::WrongId {
                        expected: batch[0].id,
                        got: stranger.to_string(),
                    }),
                    None if ids.is_empty() => Err(UploadError::Refused {
                        reason: "nothing acknowledged".into(),
                    }),
                    None => Ok(ids),
                }
            });
            match result {
                Ok(ids) => {
                    let n = ids.len() as u64;
                    let now = params.clocks.wall();
                    if let Err(e) = blocking(&store, move |s| s.mark_acked_many(&ids, now)).await {
                        inc(&metrics.store_errors);
                        tracing::error!(error = %e, "cannot mark violations acknowledged");
                        metrics.set_upload_error(Some(e.to_string()), params.clocks.wall());
                        if !pause(params.clocks.as_ref(), backoff.next_delay(), &shutdown).await {
                            break 'outer;
                        }
                        continue 'outer;
                    }
                    metrics.uploads_acked.fetch_add(n, Ordering::Relaxed);
                    let _ = metrics.pending_uploads.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |p| Some(p.saturating_sub(n)),
                    );
                    metrics.set_upload_error(None, params.clocks.wall());
                    backoff.reset();
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, seq = batch[0].seq, records = batch.len(), "violation batch upload failed");
                    note_failure(&store, &metrics, params.clocks.wall(), batch[0].id, msg).await;
                    let delay = backoff
                        .next_delay()
                        .max(e.retry_after().unwrap_or_default());
                    if !pause(params.clocks.as_ref(), delay, &shutdown).await {
                        break 'outer;
                    }
                }
            }
            continue 'outer;
        }

        for rec in batch {
            let result = tokio::select! {
                _ = shutdown.cancelled() => break 'outer,
                r = backend.deliver(&rec) => r,
            };
            // Defence in depth: a Backend must check the id, but an ack for
            // another record is never taken as one for this record.
            let result = result.and_then(|ack| {
                if ack.id == rec.id {
                    Ok(ack)
                } else {
                    Err(UploadError::WrongId {
                        expected: rec.id,
                        got: ack.id.to_string(),
                    })
                }
            });
            match result {
                Ok(_) => {
                    let id = rec.id;
                    let now = params.clocks.wall();
                    if let Err(e) = blocking(&store, move |s| s.mark_acked(id, now)).await {
                        // The backend has it; the next attempt repeats the
                        // delivery with the same Idempotency-Key, which the
                        // backend answers without storing it twice.
                        inc(&metrics.store_errors);
                        tracing::error!(error = %e, %id, "cannot mark violation acknowledged");
                        metrics.set_upload_error(Some(e.to_string()), params.clocks.wall());
                        if !pause(params.clocks.as_ref(), backoff.next_delay(), &shutdown).await {
                            break 'outer;
                        }
                        continue 'outer;
                    }
                    inc(&metrics.uploads_acked);
                    let _ = metrics.pending_uploads.fetch_update(
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                        |n| Some(n.saturating_sub(1)),
                    );
                    metrics.set_upload_error(None, params.clocks.wall());
                    backoff.reset();
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, seq = rec.seq, "violation upload failed");
                    note_failure(&store, &metrics, params.clocks.wall(), rec.id, msg).await;
                    let delay = backoff
                        .next_delay()
                        .max(e.retry_after().unwrap_or_default());
                    if !pause(params.clocks.as_ref(), delay, &shutdown).await {
                        break 'outer;
                    }
                    // Start again from the oldest pending record.
                    continue 'outer;
                }
            }
        }
    }
    Ok(())
}
