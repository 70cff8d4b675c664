//! Fetches the signed lists from the backend over TLS with conditional
//! requests: `GET {lists_url}/api/v1/lists/{zone}/{hit|exemption}` with
//! `If-None-Match` (the last ETag) and `If-Modified-Since`. A 304 changes
//! nothing; a 200 is verified exactly as a bundle file is (see
//! [`Lists::install_fetched`]), saved atomically to the configured file and
//! put in force. Network errors are logged and tried again next interval.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use super::bundle::ListKind;
use super::lists::Lists;
use crate::upload::UploadError;

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
    Client(#[from] UploadError),
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
        let client = crate::upload::pinned_client(ca_cert, timeout, false)?;
        Ok(ListFetcher {
            client,
            lists,
            urls,
            validators: Mutex::new(HashMap::new()),
            max_bytes: MAX_BUNDLE_BYTES,
        })
    }

    /// Caps the body size (tests).
    pub fn with_max_bytes(mut self, max: u64) -> Self {
        self.max_bytes = max;
        self
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
                    self.validators
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(kind, v);
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
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
        let chain = |e: reqwest::Error| crate::upload::https_error_chain(&e);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::bundle::{self, BundleMeta};
    use crate::policy::hash::{HmacKey, KeyRing};
    use crate::policy::lists::ListsSetup;
    use ed25519_dalek::SigningKey;

    const ZONE: &str = "ams-ze";
    const HITS: &str = "plate,entry_id,banned_from,vehicle_class\nVB-123-X,h1,2025-01-01,N1\n";
    const HITS2: &str =
        "plate,entry_id,banned_from,vehicle_class\nVB-123-X,h1,2025-01-01,N1\n12-ABC-3,h2,2025-01-01\n";

    fn signer() -> SigningKey {
        SigningKey::from_bytes(&[7u8; 32])
    }

    fn key() -> HmacKey {
        HmacKey::new("k1", &[9u8; 32]).expect("key")
    }

    fn hit_bundle(version: u64, created_at: &str, csv: &str) -> Vec<u8> {
        let meta = BundleMeta {
            zone: ZONE.into(),
            version,
            created_at: chrono::DateTime::parse_from_rfc3339(created_at)
                .expect("time")
                .to_utc(),
            key_id: "k1".into(),
        };
        bundle::build_from_csv(ListKind::Hit, &meta, csv, &key(), &signer()).expect("builds")
    }

    fn lists(path: &Path) -> Arc<Lists> {
        Arc::new(Lists::new(ListsSetup {
            zone: ZONE.into(),
            public_key: Some(signer().verifying_key()),
            keys: KeyRing::new([key()]),
            hit_list: Some(path.to_owned()),
            exemptions: None,
            max_age: Some(chrono::Duration::hours(48)),
        }))
    }

    struct Rig {
        _dir: tempfile::TempDir,
        path: std::path::PathBuf,
        receiver: crate::receiver::ReceiverHandle,
        lists: Arc<Lists>,
        fetcher: ListFetcher,
    }

    async fn rig() -> Rig {
        let dir = tempfile::tempdir().expect("dir");
        let pki = crate::receiver::generate_test_pki(&dir.path().join("pki")).expect("pki");
        let receiver = crate::receiver::start("127.0.0.1:0".parse().expect("addr"), &pki)
            .await
            .expect("receiver");
        let path = dir.path().join("hits.bundle");
        let lists = lists(&path);
        let fetcher = ListFetcher::new(
            &receiver.url(),
            &pki.ca_cert,
            Duration::from_secs(10),
            lists.clone(),
        )
        .expect("fetcher");
        Rig {
            _dir: dir,
            path,
            receiver,
            lists,
            fetcher,
        }
    }

    fn now_rfc3339() -> String {
        chrono::Utc::now().to_rfc3339()
    }

    #[tokio::test]
    async fn fetch_installs_and_persists_then_304_changes_nothing() {
        let r = rig().await;
        assert!(r.fetcher.urls()[0].1.ends_with("/api/v1/lists/ams-ze/hit"));
        let v1 = hit_bundle(1, &now_rfc3339(), HITS);
        r.receiver.set_list(ListKind::Hit, ZONE, v1.clone());
        let out = r.fetcher.fetch_all().await;
        assert_eq!(
            out,
            [(ListKind::Hit, FetchOutcome::Installed { version: 1 })]
        );
        assert_eq!(std::fs::read(&r.path).expect("saved"), v1);

        // Unchanged on the server: 304, nothing counted.
        let out = r.fetcher.fetch_all().await;
        assert_eq!(out, [(ListKind::Hit, FetchOutcome::NotModified)]);
        assert_eq!(r.receiver.list_requests(), (2, 1));
        let st = r.lists.status(chrono::Utc::now());
        assert_eq!(st.hit_list.as_ref().map(|l| l.version), Some(1));
        assert_eq!((st.rejected, st.fetch_errors), (0, 0));
        assert_eq!(st.last_error, None);

        // A new version is installed and saved; a restart loads it from disk.
        let v2 = hit_bundle(2, &now_rfc3339(), HITS2);
        r.receiver.set_list(ListKind::Hit, ZONE, v2.clone());
        let out = r.fetcher.fetch_all().await;
        assert_eq!(
            out,
            [(ListKind::Hit, FetchOutcome::Installed { version: 2 })]
        );
        assert_eq!(r.lists.hit_list().expect("in force").list.len(), 2);
        assert_eq!(std::fs::read(&r.path).expect("saved"), v2);
        // The reload task does not load what the fetch already put in force.
        assert_eq!(r.lists.reload_if_changed(), 0);
        let restarted = lists(&r.path);
        assert_eq!(restarted.reload_if_changed(), 1);
        assert_eq!(restarted.hit_list().expect("loaded").header.version, 2);
        r.receiver.shutdown().await;
    }

    #[tokio::test]
    async fn a_bad_signature_is_rejected_and_the_last_good_list_stays() {
        let r = rig().await;
        let v1 = hit_bundle(1, &now_rfc3339(), HITS);
        r.receiver.set_list(ListKind::Hit, ZONE, v1.clone());
        r.fetcher.fetch_all().await;
        let mut bad = hit_bundle(2, &now_rfc3339(), HITS2);
        let n = bad.len();
        bad[n - 1] ^= 0x55;
        r.receiver.set_list(ListKind::Hit, ZONE, bad);
        let out = r.fetcher.fetch_all().await;
        assert_eq!(out, [(ListKind::Hit, FetchOutcome::Rejected)]);
        assert_eq!(r.lists.hit_list().expect("kept").header.version, 1);
        assert_eq!(std::fs::read(&r.path).expect("kept"), v1);
        let st = r.lists.status(chrono::Utc::now());
        assert_eq!(st.rejected, 1);
        let err = st.last_error.expect("error shown");
        assert!(err.contains(&r.fetcher.urls()[0].1), "{err}");
        assert!(
            err.contains("keeping the last good list (version 1)"),
            "{err}"
        );
        // The same bad bundle is not downloaded again (its ETag is sent).
        let out = r.fetcher.fetch_all().await;
        assert_eq!(out, [(ListKind::Hit, FetchOutcome::NotModified)]);
        r.receiver.shutdown().await;
    }

    #[tokio::test]
    async fn network_errors_and_oversized_bodies_are_counted_not_fatal() {
        let r = rig().await;
        // Nothing served yet: 404.
        let out = r.fetcher.fetch_all().await;
        assert_eq!(out, [(ListKind::Hit, FetchOutcome::Failed)]);
        r.receiver
            .set_list(ListKind::Hit, ZONE, hit_bundle(1, &now_rfc3339(), HITS));
        let small = ListFetcher {
            max_bytes: 10,
            ..r.fetcher
        };
        let out = small.fetch_all().await;
        assert_eq!(out, [(ListKind::Hit, FetchOutcome::Failed)]);
        let st = r.lists.status(chrono::Utc::now());
        assert_eq!(st.fetch_errors, 2);
        assert!(st.last_error.expect("shown").contains("over 10 bytes"));
        assert!(r.lists.hit_list().is_none());
        r.receiver.shutdown().await;
    }

    #[tokio::test]
    async fn status_json_shows_versions_and_the_age_alarm() {
        let r = rig().await;
        // Made long before the 48 h maximum age.
        r.receiver.set_list(
            ListKind::Hit,
            ZONE,
            hit_bundle(7, "2020-01-01T00:00:00Z", HITS),
        );
        r.fetcher.fetch_all().await;
        let lists = r.lists.clone();
        let probe: crate::status::ListsProbe = Arc::new(move || lists.status(chrono::Utc::now()));
        let stop = CancellationToken::new();
        let cfg = crate::config::StatusConfig {
            listen: "127.0.0.1:0".into(),
            password_hash: Some(crate::status::auth::hash_password("pw-123456").expect("hash")),
            ..Default::default()
        };
        let served = crate::status::serve(
            &cfg,
            crate::status::StatusContext {
                facts: crate::status::DeviceFacts {
                    device_id: "dev-1".into(),
                    software_version: "0".into(),
                    model_versions: "m".into(),
                    runtime_version: "r".into(),
                },
                metrics: crate::metrics::Metrics::new(),
                time: crate::clock::TimeSource::real(),
                lists: Some(probe),
                frames: Default::default(),
                cameras: Vec::new(),
                store_path: std::env::temp_dir().join("none.sqlite"),
            },
            stop.clone(),
        )
        .await
        .expect("bind");
        let (addr, task) = (served.addrs[0], served.task);
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        // HTTP Basic with "t:pw-123456".
        s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nAuthorization: Basic dDpwdy0xMjM0NTY=\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        let body = buf.split_once("\r\n\r\n").expect("body").1;
        let v: serde_json::Value = serde_json::from_str(body.trim()).expect("json");
        let alarms = v["alarms"].as_array().expect("alarms");
        assert!(
            alarms.iter().any(|a| a["id"] == "lists"),
            "the age alarm is on the page: {alarms:?}"
        );
        let l = &v["lists"];
        assert_eq!(l["zone"], ZONE);
        assert_eq!(l["hit_list"]["version"], 7);
        assert_eq!(l["hit_list"]["entries"], 1);
        assert!(l["hit_list"]["age_s"].as_i64().expect("age") > 48 * 3600);
        assert_eq!(l["alarm"], true);
        assert!(l["alarm_reasons"][0]
            .as_str()
            .expect("reason")
            .contains("version 7"));
        assert!(l["last_error"].is_null());
        stop.cancel();
        task.await.expect("stops");
        r.receiver.shutdown().await;
    }
}
