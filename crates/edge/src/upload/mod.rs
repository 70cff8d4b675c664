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
pub mod stage;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use crate::clock::{Clocks, RealClocks};
use crate::config::UploadConfig;
use crate::store::{PendingRecord, StoreError};

pub use backoff::Backoff;
pub use https::{HttpsBackend, MAX_ACK_BODY};
pub use stage::run_uploader;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    #[error("backend refused the record: {reason}")]
    Refused { reason: String },
    #[error("upload URL `{url}` is plain http; set upload.allow_plain_http to allow it (debugging only)")]
    PlainHttp { url: String },
    #[error("upload URL `{url}` is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot build the request: {reason}")]
    Request { reason: String },
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
#[derive(Clone, Debug)]
pub struct UploaderParams {
    /// Records taken from the store per query, and the most sent in one batch
    /// request (batches are used whenever more than one record is pending).
    pub batch: usize,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// When idle, look at the store this often even without a wake-up, in case
    /// a record was written by a process that cannot notify us.
    pub idle_poll: Duration,
    /// Whose time stamps acknowledgements and measures the waits.
    pub clocks: Arc<dyn Clocks>,
}

impl UploaderParams {
    /// The config's tuning, on the operating system's clocks.
    pub fn from_config(cfg: &UploadConfig) -> Self {
        UploaderParams {
            batch: cfg.batch_size.max(1),
            backoff_initial: Duration::from_millis(cfg.backoff_initial_ms.max(1)),
            backoff_max: Duration::from_millis(cfg.backoff_max_ms.max(cfg.backoff_initial_ms)),
            idle_poll: Duration::from_secs(60),
            clocks: Arc::new(RealClocks::new()),
        }
    }
}

#[cfg(test)]
mod tests;
