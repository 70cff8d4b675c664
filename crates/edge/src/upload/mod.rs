//! Delivery of stored violations to the backend, retried until acknowledged.
//! The tombstones of records that expired undelivered go the same way, in
//! their place in the sequence.
//!
//! [`HttpsBackend`] posts records as multipart over mutual TLS, trusting only
//! the configured CA; [`run_uploader`] takes pending records from the store
//! oldest first, delivers them (several per request while a backlog is
//! cleared), marks them acknowledged, and backs off (with jitter, honouring
//! `Retry-After`) while the backend is unreachable.
//!
//! A record is acknowledged only by a 2xx answer whose JSON body names the
//! record's own id; everything else is an error and the record stays pending.
//! This module never deletes records, never changes their content and never
//! sends anything but stored records to the configured URL.

mod backoff;
mod https;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::UploadConfig;
use crate::metrics::{inc, Metrics};
use crate::store::{PendingRecord, Store, StoreError};

pub use backoff::Backoff;
pub use https::{pinned_client, pinned_client_with_identity, HttpsBackend, MAX_ACK_BODY};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("cannot use CA certificate {path}: {reason}")]
    CaCert { path: PathBuf, reason: String },
    #[error("cannot use client certificate or key {path}: {reason}")]
    ClientCert { path: PathBuf, reason: String },
    #[error("backend refused the record: {reason}")]
    Refused { reason: String },
    #[error("upload URL `{url}` is plain http; set upload.allow_plain_http to allow it (debugging only)")]
    PlainHttp { url: String },
    #[error("upload URL `{url}` is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot build the HTTPS client: {reason}")]
    Client { reason: String },
    #[error("cannot reach {url}: {detail}")]
    Transport { url: String, detail: String },
    #[error("no answer from {url} within {timeout:?}")]
    Timeout { url: String, timeout: Duration },
    #[error("backend answered {status}{}: {snippet}", retry_after.map(|d| format!(" (retry after {}s)", d.as_secs())).unwrap_or_default())]
    Status {
        status: u16,
        snippet: String,
        retry_after: Option<Duration>,
    },
    #[error(
        "backend answered {status} but not with an acknowledgement: {reason}; body: {snippet}"
    )]
    BadAck {
        status: u16,
        reason: String,
        snippet: String,
    },
    #[error("backend acknowledged id `{got}` for record {expected}; not an acknowledgement")]
    WrongId { expected: Uuid, got: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("store task failed: {0}")]
    Task(String),
}

impl UploadError {
    /// The wait the backend asked for (`Retry-After` on 429/503), if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            UploadError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The backend's acknowledgement of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The record id the backend says it stored.
    pub id: Uuid,
}

/// Where records go. Object-safe so tests can use an in-process fake.
pub trait Backend: Send + Sync {
    /// Delivers one record. `Ok` only when the backend has acknowledged it.
    fn deliver<'a>(
        &'a self,
        rec: &'a PendingRecord,
    ) -> Pin<Box<dyn Future<Output = Result<Ack, UploadError>> + Send + 'a>>;

    /// Delivers several records, oldest first; returns the ids acknowledged
    /// (never empty: nothing acknowledged is an error). By default one
    /// [`Backend::deliver`] after another, stopping at the first failure.
    fn deliver_batch<'a>(
        &'a self,
        recs: &'a [PendingRecord],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Uuid>, UploadError>> + Send + 'a>> {
        Box::pin(async move {
            let mut acked = Vec::new();
            for rec in recs {
                match self.deliver(rec).await {
                    Ok(ack) if ack.id == rec.id => acked.push(rec.id),
                    Ok(ack) if acked.is_empty() => {
                        return Err(UploadError::WrongId {
                            expected: rec.id,
                            got: ack.id.to_string(),
                        })
                    }
                    Err(e) if acked.is_empty() => return Err(e),
                    _ => break,
                }
            }
            Ok(acked)
        })
    }
}

/// Tuning of [`run_uploader`].
#[derive(Clone, Debug, PartialEq)]
pub struct UploaderParams {
    /// Records taken from the store per query, and the most sent in one batch
    /// request (batches are used whenever more than one record is pending).
    pub batch: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// When idle, look at the store this often even without a wake-up, in case
    /// a record was written by a process that cannot notify us.
    pub idle_poll: Duration,
}

impl UploaderParams {
    pub fn from_config(cfg: &UploadConfig) -> Self {
        UploaderParams {
            batch: cfg.batch_size.max(1),
            backoff_initial: Duration::from_millis(cfg.backoff_initial_ms.max(1)),
            backoff_max: Duration::from_millis(cfg.backoff_max_ms.max(cfg.backoff_initial_ms)),
            idle_poll: Duration::from_secs(60),
        }
    }
}

/// Runs a store call on the blocking pool: SQLite calls (fsync, large blobs)
/// must not stall the async workers.
/// A failed delivery: counted, shown on the status page, and its attempt
/// written to the record (the backoff is the caller's).
async fn note_failure(store: &Arc<Mutex<Store>>, metrics: &Metrics, id: uuid::Uuid, msg: String) {
    inc(&metrics.upload_failures);
    metrics.set_upload_error(Some(msg.clone()));
    if let Err(se) = blocking(store, move |s| s.record_attempt(id, &msg)).await {
        inc(&metrics.store_errors);
        tracing::error!(error = %se, "cannot count upload attempt");
    }
}

async fn blocking<T: Send + 'static>(
    store: &Arc<Mutex<Store>>,
    f: impl FnOnce(&mut Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, UploadError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = store.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    })
    .await
    .map_err(|e| UploadError::Task(e.to_string()))?
    .map_err(UploadError::Store)
}

/// Sleeps for `d`; false if shutdown came first.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
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
                metrics.set_upload_error(Some(e.to_string()));
                if !pause(backoff.next_delay(), &shutdown).await {
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
                    let now = chrono::Utc::now();
                    if let Err(e) = blocking(&store, move |s| s.mark_acked_many(&ids, now)).await {
                        inc(&metrics.store_errors);
                        tracing::error!(error = %e, "cannot mark violations acknowledged");
                        metrics.set_upload_error(Some(e.to_string()));
                        if !pause(backoff.next_delay(), &shutdown).await {
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
                    metrics.set_upload_error(None);
                    backoff.reset();
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, seq = batch[0].seq, records = batch.len(), "violation batch upload failed");
                    note_failure(&store, &metrics, batch[0].id, msg).await;
                    let delay = backoff
                        .next_delay()
                        .max(e.retry_after().unwrap_or_default());
                    if !pause(delay, &shutdown).await {
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
                    let now = chrono::Utc::now();
                    if let Err(e) = blocking(&store, move |s| s.mark_acked(id, now)).await {
                        // The backend has it; the next attempt repeats the
                        // delivery with the same Idempotency-Key, which the
                        // backend answers without storing it twice.
                        inc(&metrics.store_errors);
                        tracing::error!(error = %e, %id, "cannot mark violation acknowledged");
                        metrics.set_upload_error(Some(e.to_string()));
                        if !pause(backoff.next_delay(), &shutdown).await {
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
                    metrics.set_upload_error(None);
                    backoff.reset();
                }
                Err(e) => {
                    let msg = e.to_string();
                    tracing::warn!(error = %msg, seq = rec.seq, "violation upload failed");
                    note_failure(&store, &metrics, rec.id, msg).await;
                    let delay = backoff
                        .next_delay()
                        .max(e.retry_after().unwrap_or_default());
                    if !pause(delay, &shutdown).await {
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

#[cfg(test)]
mod tests;

/// An error with its sources, for log lines.
pub(crate) fn https_error_chain(e: &dyn std::error::Error) -> String {
    https::error_chain(e)
}
