//! Fetches the signed lists from the backend over TLS with conditional
//! requests: `GET {lists_url}/api/v1/lists/{zone}/{hit|exemption}` with
//! `If-None-Match` (the last ETag) and `If-Modified-Since`. A 304 changes
//! nothing; a 200 is verified exactly as a bundle file is (see
//! [`Lists::install_fetched`]), saved atomically to the configured file and
//! put in force. Network errors are logged and tried again next interval.

use crate::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::lists::Lists;
use crate::net::NetError;
use anpr_wire::bundle::ListKind;

/// Largest bundle body read; a longer answer is an error.
pub const MAX_BUNDLE_BYTES: u64 = 256 * 1024 * 1024;

/// What one fetch of one list came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// 304: the list in force is current.
    NotModified,
    /// A new bundle was verified, saved and put in force.
    Installed { version: u64 },
    /// The bundle failed verification (or could not be saved); logged.
    Rejected,
    /// The download failed (network, HTTP status, size); logged.
    Failed,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchSetupError {
    #[error("policy.lists_url `{url}` is not usable: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(transparent)]
    Client(#[from] NetError),
}

#[derive(Default, Clone)]
struct Validators {
    etag: Option<String>,
    last_modified: Option<String>,
}

/// Downloads the configured lists of one zone.
pub struct ListFetcher {
    client: reqwest::Client,
    lists: Arc<Lists>,
    urls: Vec<(ListKind, String)>,
    validators: Mutex<HashMap<ListKind, Validators>>,
    max_bytes: u64,
}

fn list_url(base: &str, zone: &str, kind: ListKind) -> Result<String, String> {
    let mut url = reqwest::Url::parse(base).map_err(|e| e.to_string())?;
    if url.scheme() != "https" {
        return Err("not an https:// URL".into());
    }
    {
        let mut segs = url
            .path_segments_mut()
            .map_err(|_| "cannot be a base URL".to_string())?;
        segs.pop_if_empty()
            .extend(["api", "v1", "lists", zone, kind.as_str()]);
    }
    Ok(url.to_string())
}

impl ListFetcher {
    /// A fetcher for each list `lists` has a file for, trusting only the CA
    /// in `ca_cert`.
    pub fn new(
        base: &str,
        ca_cert: &Path,
        timeout: Duration,
        max_bytes: u64,
        lists: Arc<Lists>,
    ) -> Result<Self, FetchSetupError> {
        let mut urls = Vec::new();
        for kind in [ListKind::Hit, ListKind::Exemption] {
            if lists.path_of(kind).is_some() {
                let url = list_url(base, lists.zone(), kind).map_err(|reason| {
                    FetchSetupError::BadUrl {
                        url: base.to_string(),
                        reason,
                    }
                })?;
                urls.push((kind, url));
            }
        }
        let client = crate::net::pinned_client(ca_cert, timeout, false)?;
        Ok(ListFetcher {
            client,
            lists,
            urls,
            validators: Mutex::new(HashMap::new()),
            max_bytes,
        })
    }

    /// The URLs fetched, by list.
    pub fn urls(&self) -> &[(ListKind, String)] {
        &self.urls
    }

    /// Fetches every configured list once.
    pub async fn fetch_all(&self) -> Vec<(ListKind, FetchOutcome)> {
        let mut out = Vec::new();
        for (kind, url) in &self.urls {
            out.push((*kind, self.fetch(*kind, url).await));
        }
        out
    }

    async fn fetch(&self, kind: ListKind, url: &str) -> FetchOutcome {
        match self.download(kind, url).await {
            Ok(None) => FetchOutcome::NotModified,
            Ok(Some((bytes, v))) => {
                let lists = self.lists.clone();
                let u = url.to_string();
                // Verifying a large bundle takes a while: off the async threads.
                let res =
                    tokio::task::spawn_blocking(move || lists.install_fetched(&bytes, kind, &u))
                        .await;
                // Remember the validators unless saving failed: a rejected
                // bundle is not downloaded again until the backend changes it.
                if !matches!(res, Ok(Err(crate::policy::lists::ListError::Write { .. }))) {
                    self.validators.lock_unpoisoned().insert(kind, v);
                }
                match res {
                    Ok(Ok(h)) => FetchOutcome::Installed { version: h.version },
                    _ => FetchOutcome::Rejected,
                }
            }
            Err(reason) => {
                let line = format!("{kind} list download from {url} failed: {reason}");
                tracing::warn!("{line}");
                self.lists.note_fetch_error(line);
                FetchOutcome::Failed
            }
        }
    }

    /// `None` on 304; the body and its validators on 200.
    async fn download(
        &self,
        kind: ListKind,
        url: &str,
    ) -> Result<Option<(Vec<u8>, Validators)>, String> {
        let v = self
            .validators
            .lock_unpoisoned()
            .get(&kind)
            .cloned()
            .unwrap_or_default();
        let mut req = self.client.get(url);
        if let Some(e) = &v.etag {
            req = req.header(IF_NONE_MATCH, e);
        }
        if let Some(m) = &v.last_modified {
            req = req.header(IF_MODIFIED_SINCE, m);
        }
        let chain = |e: reqwest::Error| crate::net::error_chain(&e);
        let mut resp = req.send().await.map_err(chain)?;
        match resp.status() {
            StatusCode::NOT_MODIFIED => return Ok(None),
            StatusCode::OK => {}
            s => return Err(format!("backend answered {s}")),
        }
        let header = |name| {
            resp.headers()
                .get(name)
                .and_then(|h: &reqwest::header::HeaderValue| h.to_str().ok())
                .map(str::to_string)
        };
        let got = Validators {
            etag: header(ETAG),
            last_modified: header(LAST_MODIFIED),
        };
        if resp.content_length().is_some_and(|n| n > self.max_bytes) {
            return Err(format!("body over {} bytes", self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(chain)? {
            if (body.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(format!("body over {} bytes", self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Some((body, got)))
    }
}

/// Fetches every `every` (first at once) until `stop`.
pub async fn run_list_fetch(fetcher: ListFetcher, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = fetcher.fetch_all() => {}
        }
    }
}
