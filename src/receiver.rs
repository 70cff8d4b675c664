//! The reference receiver: a minimal backend endpoint for the demo and the
//! integration tests, and the executable description of the upload protocol
//! for backend developers.
//!
//! Protocol, as implemented here:
//!
//! * `POST /api/v1/violations`, over TLS, `multipart/form-data` with three parts:
//!   `metadata` (`application/json`, a [`RecordMetadata`]), `overview` and `crop`
//!   (`image/jpeg`), and an `Idempotency-Key` header equal to `metadata.id`.
//! * The receiver checks that the JSON parses and that the SHA-256 of each image
//!   equals `metadata.overview_sha256` / `metadata.crop_sha256`; if not it answers
//!   422 with `{"error": "<reason>"}` and stores nothing. A missing or different
//!   `Idempotency-Key` is 400.
//! * A new record is stored and answered `201 {"id": "<metadata.id>"}`; a record
//!   already stored is not stored again and is answered `200` with the same body.
//!   The device counts a record delivered only on a 2xx whose `id` is its own.
//! * `503` with `Retry-After: <seconds>` asks the device to wait.
//!
//! Everything is kept in memory. It never writes outside the PKI folder it is
//! given and never listens anywhere but the address it is given.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path as UrlPath;
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::UploadConfig;
use crate::store::RecordMetadata;

#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    #[error("cannot generate the test PKI: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Files of a throw-away PKI: a CA and a server certificate it signed, valid for
/// `localhost` and `127.0.0.1`.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA certificate (PEM): what the device's `upload.ca_cert` points to.
    pub ca_cert: PathBuf,
    /// The server certificate (PEM).
    pub server_cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub server_key: PathBuf,
}

impl TestPki {
    /// An upload configuration that trusts this PKI's CA and posts to `url`.
    pub fn upload_config(&self, url: &str) -> UploadConfig {
        UploadConfig {
            url: url.to_string(),
            ca_cert: self.ca_cert.clone(),
            timeout_s: 10,
            backoff_initial_ms: 100,
            backoff_max_ms: 2000,
            allow_plain_http: false,
        }
    }
}

fn write(path: PathBuf, contents: &str) -> Result<PathBuf, ReceiverError> {
    std::fs::write(&path, contents).map_err(|source| ReceiverError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Makes a CA and a server certificate for `localhost` and `127.0.0.1` signed
/// by it, and writes `ca.pem`, `server.pem` and `server.key` into `dir`
/// (created if missing).
pub fn generate_test_pki(dir: &Path) -> Result<TestPki, ReceiverError> {
    std::fs::create_dir_all(dir).map_err(|source| ReceiverError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "anpr-edge test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate()?;
    let ca = ca_params.self_signed(&ca_key)?;

    let mut srv_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
    srv_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "localhost");
    srv_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let srv_key = rcgen::KeyPair::generate()?;
    let srv = srv_params.signed_by(&srv_key, &ca, &ca_key)?;

    Ok(TestPki {
        ca_cert: write(dir.join("ca.pem"), &ca.pem())?,
        server_cert: write(dir.join("server.pem"), &srv.pem())?,
        server_key: write(dir.join("server.key"), &srv_key.serialize_pem())?,
    })
}

/// One record as the receiver stored it.
#[derive(Clone, Debug)]
pub struct ReceivedRecord {
    pub metadata: RecordMetadata,
    /// The `metadata` part exactly as received.
    pub metadata_json: String,
    pub overview_jpeg: Vec<u8>,
    pub crop_jpeg: Vec<u8>,
    /// How many times it was delivered (1 + repeats answered from the dedup table).
    pub deliveries: u32,
}

#[derive(Default)]
struct Inner {
    records: Vec<ReceivedRecord>,
    index: HashMap<Uuid, usize>,
    requests: u64,
    fail_next: u32,
    retry_after_s: u64,
    wrong_id_next: u32,
    garbage_next: u32,
    /// Bundles served at `GET /api/v1/lists/{zone}/{kind}`, with their ETag.
    lists: HashMap<(String, String), (Vec<u8>, String)>,
    list_requests: u64,
    list_not_modified: u64,
}

type Shared = Arc<Mutex<Inner>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, Inner> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running receiver.
pub struct ReceiverHandle {
    /// Where it listens (the real port when bound to port 0).
    pub addr: SocketAddr,
    state: Shared,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ReceiverHandle {
    /// Base URL for `upload.url`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// Records stored, in order of first arrival.
    pub fn received(&self) -> Vec<ReceivedRecord> {
        lock(&self.state).records.clone()
    }

    /// Requests seen on the endpoint, including refused ones.
    pub fn requests(&self) -> u64 {
        lock(&self.state).requests
    }

    /// Answers the next `n` requests with 503 and `Retry-After: <retry_after>` (whole seconds).
    pub fn fail_next(&self, n: u32, retry_after: Duration) {
        let mut g = lock(&self.state);
        g.fail_next = n;
        g.retry_after_s = retry_after.as_secs();
    }

    /// Stores the next `n` records but acknowledges them with a random other id.
    pub fn answer_wrong_id_next(&self, n: u32) {
        lock(&self.state).wrong_id_next = n;
    }

    /// Stores the next `n` records but answers 200 with a body that is not JSON.
    pub fn answer_garbage_next(&self, n: u32) {
        lock(&self.state).garbage_next = n;
    }

    /// Serves `bytes` at `GET /api/v1/lists/{zone}/{kind}` with a strong ETag
    /// (the SHA-256 of the bytes), answering 304 to a matching `If-None-Match`.
    pub fn set_list(&self, kind: crate::policy::bundle::ListKind, zone: &str, bytes: Vec<u8>) {
        let etag = format!("\"{}\"", &sha256_hex(&bytes)[..32]);
        lock(&self.state)
            .lists
            .insert((zone.to_string(), kind.as_str().to_string()), (bytes, etag));
    }

    /// List requests seen, and how many of them were answered 304.
    pub fn list_requests(&self) -> (u64, u64) {
        let g = lock(&self.state);
        (g.list_requests, g.list_not_modified)
    }

    /// Stops accepting, drops open connections and waits for the server task.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let _ = self.task.await;
    }
}

fn load_server_config(pki: &TestPki) -> Result<rustls::ServerConfig, ReceiverError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|e| ReceiverError::Read {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let cert_pem = read(&pki.server_cert)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ReceiverError::Read {
            path: pki.server_cert.clone(),
            reason: e.to_string(),
        })?;
    let key_pem = read(&pki.server_key)?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| e.to_string())
        .and_then(|k| k.ok_or_else(|| "no private key found".to_string()))
        .map_err(|reason| ReceiverError::Read {
            path: pki.server_key.clone(),
            reason,
        })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves the endpoint over TLS at `bind` (port 0 picks a free port).
pub async fn start(bind: SocketAddr, pki: &TestPki) -> Result<ReceiverHandle, ReceiverError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(load_server_config(pki)?));
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| ReceiverError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ReceiverError::Bind { addr: bind, source })?;
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/api/v1/violations", post(receive))
        .route("/api/v1/lists/{zone}/{kind}", get(serve_list))
        .layer(DefaultBodyLimit::max(32 * 1024 * 1024))
        .with_state(state.clone());
    let cancel = CancellationToken::new();
    let stop = cancel.clone();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => {
                    let tcp = match accepted {
                        Ok((tcp, _)) => tcp,
                        Err(e) => {
                            // E.g. out of file descriptors: do not spin.
                            tracing::warn!(error = %e, "receiver accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    conns.spawn(async move {
                        let tls = match tokio::time::timeout(
                            Duration::from_secs(10),
                            acceptor.accept(tcp),
                        )
                        .await
                        {
                            Ok(Ok(tls)) => tls,
                            Ok(Err(e)) => {
                                tracing::debug!(error = %e, "receiver TLS handshake failed");
                                return;
                            }
                            Err(_) => return,
                        };
                        let svc = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper_util::server::conn::auto::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                        .await;
                    });
                }
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        conns.abort_all();
    });
    Ok(ReceiverHandle {
        addr,
        state,
        cancel,
        task,
    })
}

/// `GET /api/v1/lists/{zone}/{kind}`: the bundle set with
/// [`ReceiverHandle::set_list`], 304 when `If-None-Match` names its ETag, 404
/// when none is set.
async fn serve_list(
    State(state): State<Shared>,
    UrlPath((zone, kind)): UrlPath<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let mut g = lock(&state);
    g.list_requests += 1;
    let Some((bytes, etag)) = g.lists.get(&(zone, kind)).cloned() else {
        return error(StatusCode::NOT_FOUND, "no such list");
    };
    let matches = headers
        .get(axum::http::header::IF_NONE_MATCH)
        .and_then(|h| h.to_str().ok())
        .is_some_and(|h| h.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        g.list_not_modified += 1;
        return (StatusCode::NOT_MODIFIED, [(axum::http::header::ETAG, etag)]).into_response();
    }
    (
        StatusCode::OK,
        [
            (axum::http::header::ETAG, etag),
            (
                axum::http::header::CONTENT_TYPE,
                "application/octet-stream".to_string(),
            ),
        ],
        bytes,
    )
        .into_response()
}

fn error(status: StatusCode, reason: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": reason.into() })),
    )
        .into_response()
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

async fn receive(State(state): State<Shared>, headers: HeaderMap, mut form: Multipart) -> Response {
    {
        let mut g = lock(&state);
        g.requests += 1;
        if g.fail_next > 0 {
            g.fail_next -= 1;
            let secs = g.retry_after_s.to_string();
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, secs)],
                "busy, come back later",
            )
                .into_response();
        }
    }

    let mut metadata_json = None;
    let mut overview = None;
    let mut crop = None;
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad multipart: {e}")),
        };
        let name = field.name().unwrap_or("").to_string();
        let bytes = match field.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("bad part `{name}`: {e}")),
        };
        match name.as_str() {
            "metadata" => match String::from_utf8(bytes) {
                Ok(s) => metadata_json = Some(s),
                Err(_) => return error(StatusCode::BAD_REQUEST, "metadata is not UTF-8"),
            },
            "overview" => overview = Some(bytes),
            "crop" => crop = Some(bytes),
            other => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("unexpected part `{other}`"),
                )
            }
        }
    }
    let (Some(metadata_json), Some(overview_jpeg), Some(crop_jpeg)) =
        (metadata_json, overview, crop)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "need parts `metadata`, `overview` and `crop`",
        );
    };
    let metadata: RecordMetadata = match serde_json::from_str(&metadata_json) {
        Ok(m) => m,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("metadata does not parse: {e}"),
            )
        }
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok());
    if key != Some(metadata.id) {
        return error(
            StatusCode::BAD_REQUEST,
            "Idempotency-Key header must equal metadata.id",
        );
    }
    for (what, bytes, claimed) in [
        ("overview", &overview_jpeg, &metadata.overview_sha256),
        ("crop", &crop_jpeg, &metadata.crop_sha256),
    ] {
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(claimed) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("{what} sha256 mismatch: metadata says {claimed}, image is {actual}"),
            );
        }
    }

    let id = metadata.id;
    let mut g = lock(&state);
    let status = match g.index.get(&id).copied() {
        Some(i) => {
            g.records[i].deliveries += 1;
            StatusCode::OK
        }
        None => {
            let i = g.records.len();
            g.records.push(ReceivedRecord {
                metadata,
                metadata_json,
                overview_jpeg,
                crop_jpeg,
                deliveries: 1,
            });
            g.index.insert(id, i);
            StatusCode::CREATED
        }
    };
    if g.garbage_next > 0 {
        g.garbage_next -= 1;
        return (StatusCode::OK, "<html><body>It works!</body></html>").into_response();
    }
    let answer_id = if g.wrong_id_next > 0 {
        g.wrong_id_next -= 1;
        Uuid::new_v4()
    } else {
        id
    };
    (
        status,
        axum::Json(serde_json::json!({ "id": answer_id.to_string() })),
    )
        .into_response()
}
