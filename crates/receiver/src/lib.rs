//! The reference receiver: a minimal backend endpoint for the demo and the
//! integration tests, and the executable description of the upload protocol
//! for backend developers.
//!
//! Protocol, as implemented here:
//!
//! * `POST /api/v1/violations`, over TLS (optionally requiring a client
//!   certificate from its CA), `multipart/form-data` with the parts `metadata`
//!   (`application/json`, a [`RecordMetadata`]), `signature` (base64 Ed25519),
//!   and either `overview` and `crop` (`image/jpeg`) or `evidence_dropped` (the
//!   reason the device deleted them), and an `Idempotency-Key` header equal to
//!   `metadata.id`.
//! * It checks, in this order: the JSON parses; a record it already holds is
//!   answered `200 {"id"}` again if byte-identical (409 if not); the device is
//!   known (403); the signature verifies with that device's public key over the
//!   exact `metadata` bytes (422); each image's SHA-256 equals the metadata's
//!   (422); the record continues its chain: the first of a chain names the
//!   genesis hash, every later one has the next `seq` (409 if one is missing or
//!   out of order) and names the hash of the one before (422 if not: altered).
//! * A new record is stored and answered `201 {"id": "<metadata.id>"}`.
//! * A record the device deleted undelivered (past its maximum retention)
//!   comes as a tombstone: parts `tombstone` (`application/json`, a
//!   [`Tombstone`]) and `signature` only. It is checked like a record (known
//!   device, signature over the exact `tombstone` bytes, next `seq`, its
//!   `prev_record_sha256` names the chain head) and then moves the chain head
//!   to its `record_sha256`, the hash of the deleted record, so the next
//!   record chains on. A repeat is answered `200` again; a tombstone for a
//!   record already held whole (its ack was lost) is answered `200` too.
//! * `POST /api/v1/violations/batch` takes several records (parts suffixed
//!   `.0`, `.1`, ...), checks them in order as above and answers
//!   `200 {"acked": [ids accepted], "error": first refusal or null}`.
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

use anpr_wire::chain::{record_sha256, verify_record, GENESIS_PREV};
use anpr_wire::record::{RecordMetadata, Tombstone};
use ed25519_dalek::VerifyingKey;

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
    /// A client certificate signed by the CA (for mutual TLS), and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn write(path: PathBuf, contents: &str) -> Result<PathBuf, ReceiverError> {
    std::fs::write(&path, contents).map_err(|source| ReceiverError::Write {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Makes a CA and a server certificate for `localhost` and `127.0.0.1` signed
/// by it, and a client certificate for a fresh key; writes `ca.pem`,
/// `server.pem`, `server.key`, `client.pem` and `client.key` into `dir`
/// (created if missing).
pub fn generate_test_pki(dir: &Path) -> Result<TestPki, ReceiverError> {
    generate_test_pki_for_client(dir, None)
}

/// As [`generate_test_pki`], but the client certificate is issued for the key
/// in `client_key` (PEM; e.g. the one `anpr-edge provision` made), as the
/// backend's CA would for the device's certificate signing request.
pub fn generate_test_pki_for_client(
    dir: &Path,
    client_key: Option<&Path>,
) -> Result<TestPki, ReceiverError> {
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

    let (cli_key, cli_key_path) = match client_key {
        Some(path) => {
            let pem = std::fs::read_to_string(path).map_err(|e| ReceiverError::Read {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            (rcgen::KeyPair::from_pem(&pem)?, path.to_path_buf())
        }
        None => {
            let k = rcgen::KeyPair::generate()?;
            let p = write(dir.join("client.key"), &k.serialize_pem())?;
            (k, p)
        }
    };
    let mut cli_params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    cli_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test-device");
    cli_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let cli = cli_params.signed_by(&cli_key, &ca, &ca_key)?;

    Ok(TestPki {
        ca_cert: write(dir.join("ca.pem"), &ca.pem())?,
        server_cert: write(dir.join("server.pem"), &srv.pem())?,
        server_key: write(dir.join("server.key"), &srv_key.serialize_pem())?,
        client_cert: write(dir.join("client.pem"), &cli.pem())?,
        client_key: cli_key_path,
    })
}

/// One record as the receiver stored it.
#[derive(Clone, Debug)]
pub struct ReceivedRecord {
    pub metadata: RecordMetadata,
    /// The `metadata` part exactly as received.
    pub metadata_json: String,
    /// Empty when the device deleted the evidence (see `evidence_dropped`).
    pub overview_jpeg: Vec<u8>,
    pub crop_jpeg: Vec<u8>,
    /// The verified signature (base64).
    pub signature: String,
    /// Why the device sent no images, if it did not.
    pub evidence_dropped: Option<String>,
    /// How many times it was delivered (1 + repeats answered from the dedup table).
    pub deliveries: u32,
}

/// A tombstone as the receiver stored it: a record the device deleted
/// undelivered. It carries no plate and no images.
#[derive(Clone, Debug)]
pub struct ReceivedTombstone {
    pub tombstone: Tombstone,
    /// The `tombstone` part exactly as received.
    pub json: String,
    /// The verified signature (base64).
    pub signature: String,
    /// How many times it was delivered.
    pub deliveries: u32,
}

/// Where a chain stands at the receiver.
#[derive(Clone, Debug)]
struct ChainHead {
    seq: i64,
    record_sha256: String,
}

/// Options of [`start_with`].
#[derive(Clone, Debug, Default)]
pub struct ReceiverOptions {
    /// Refuse TLS clients without a certificate from the PKI's CA.
    pub require_client_cert: bool,
}

#[derive(Default)]
struct Inner {
    records: Vec<ReceivedRecord>,
    index: HashMap<Uuid, usize>,
    tombstones: Vec<ReceivedTombstone>,
    tombstone_index: HashMap<Uuid, usize>,
    requests: u64,
    fail_next: u32,
    retry_after_s: u64,
    wrong_id_next: u32,
    garbage_next: u32,
    devices: HashMap<String, VerifyingKey>,
    chains: HashMap<(String, String), ChainHead>,
    /// (device, seq) of every record and tombstone accepted, in order.
    accepted: Vec<(String, i64)>,
    /// Refusals, as `(status, reason)`, for tests and the demo.
    refusals: Vec<(u16, String)>,
    /// Requests whose body ended before its multipart did: the sender went
    /// away mid-request (power cut, kill), so nobody hears the answer and
    /// the record comes again. Not a refusal of anything the sender said.
    cut_short: Vec<String>,
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

    /// Tombstones stored (records the device deleted undelivered), in order
    /// of first arrival.
    pub fn tombstones(&self) -> Vec<ReceivedTombstone> {
        lock(&self.state).tombstones.clone()
    }

    /// The seqs accepted from `device_id`, records and tombstones together,
    /// in order of acceptance.
    pub fn accepted_seqs(&self, device_id: &str) -> Vec<i64> {
        lock(&self.state)
            .accepted
            .iter()
            .filter(|(d, _)| d == device_id)
            .map(|(_, seq)| *seq)
            .collect()
    }

    /// The hash a chain's next record must name, if the chain has begun.
    pub fn chain_head(&self, device_id: &str, chain_id: &str) -> Option<(i64, String)> {
        lock(&self.state)
            .chains
            .get(&(device_id.to_string(), chain_id.to_string()))
            .map(|h| (h.seq, h.record_sha256.clone()))
    }

    /// Accepts records from `device_id` signed with `key`.
    pub fn trust_device(&self, device_id: &str, key: VerifyingKey) {
        lock(&self.state).devices.insert(device_id.to_string(), key);
    }

    /// Records refused so far: HTTP status and reason, in order.
    pub fn refusals(&self) -> Vec<(u16, String)> {
        lock(&self.state).refusals.clone()
    }

    /// Requests whose body was cut off before the multipart closed, with
    /// what the parser saw; not counted among [`Self::refusals`].
    pub fn cut_short(&self) -> Vec<String> {
        lock(&self.state).cut_short.clone()
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
    pub fn set_list(&self, kind: anpr_wire::bundle::ListKind, zone: &str, bytes: Vec<u8>) {
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

fn load_server_config(
    pki: &TestPki,
    opts: &ReceiverOptions,
) -> Result<rustls::ServerConfig, ReceiverError> {
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
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if opts.require_client_cert {
        let ca_pem = read(&pki.ca_cert)?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut ca_pem.as_slice()) {
            let cert = cert.map_err(|e| ReceiverError::Read {
                path: pki.ca_cert.clone(),
                reason: e.to_string(),
            })?;
            roots.add(cert)?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| ReceiverError::Read {
                    path: pki.ca_cert.clone(),
                    reason: e.to_string(),
                })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut cfg = builder.with_single_cert(certs, key)?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves the endpoint over TLS at `bind` (port 0 picks a free port), without
/// asking for client certificates.
pub async fn start(bind: SocketAddr, pki: &TestPki) -> Result<ReceiverHandle, ReceiverError> {
    start_with(bind, pki, ReceiverOptions::default()).await
}

/// Serves the endpoint over TLS at `bind` with `opts`.
pub async fn start_with(
    bind: SocketAddr,
    pki: &TestPki,
    opts: ReceiverOptions,
) -> Result<ReceiverHandle, ReceiverError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(load_server_config(pki, &opts)?));
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| ReceiverError::Bind { addr: bind, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| ReceiverError::Bind { addr: bind, source })?;
    let state: Shared = Arc::default();
    let app = Router::new()
        .route("/api/v1/violations", post(receive))
        .route("/api/v1/violations/batch", post(receive_batch))
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

/// One record as it came off the wire, before any check.
#[derive(Default)]
struct Incoming {
    metadata: Option<String>,
    signature: Option<String>,
    overview: Option<Vec<u8>>,
    crop: Option<Vec<u8>>,
    evidence_dropped: Option<String>,
    tombstone: Option<String>,
}

type Refusal = (StatusCode, String);

/// Why a multipart body could not be read.
enum PartsError {
    /// What the sender sent is wrong.
    Refused(Refusal),
    /// The body stopped before the multipart closed: the sender is gone.
    CutShort(String),
}

impl From<Refusal> for PartsError {
    fn from(r: Refusal) -> Self {
        PartsError::Refused(r)
    }
}

/// Tells a body that broke off (connection closed mid-request, which is how
/// a device dying mid-upload looks from here) from one that is malformed.
fn multipart_error(context: String, e: axum::extract::multipart::MultipartError) -> PartsError {
    use std::error::Error as _;
    // Only the HTTP body itself failing counts: a body that arrived whole
    // but leaves the multipart unclosed came from a sender that is alive
    // and wrong, and is refused like any other malformed request.
    let broke_off = matches!(
        e.source().and_then(|s| s.downcast_ref::<multer::Error>()),
        Some(multer::Error::StreamReadFailed(_))
    ) && e.status() != StatusCode::PAYLOAD_TOO_LARGE;
    let what = format!("{context}: {}", e.body_text());
    if broke_off {
        PartsError::CutShort(what)
    } else {
        PartsError::Refused((e.status(), what))
    }
}

/// Reads the parts of a multipart body into records; `batch` parts carry a
/// `.N` suffix naming their record.
async fn read_parts(form: &mut Multipart, batch: bool) -> Result<Vec<Incoming>, PartsError> {
    let mut recs: Vec<Incoming> = Vec::new();
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    loop {
        let field = match form.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => return Err(multipart_error("bad multipart".into(), e)),
        };
        let full = field.name().unwrap_or("").to_string();
        let (name, index) = if batch {
            match full
                .rsplit_once('.')
                .and_then(|(n, i)| Some((n, i.parse::<usize>().ok()?)))
            {
                Some((n, i)) if i < 1024 => (n.to_string(), i),
                _ => return Err(bad(format!("part `{full}` has no record index")).into()),
            }
        } else {
            (full.clone(), 0)
        };
        let bytes = field
            .bytes()
            .await
            .map_err(|e| multipart_error(format!("bad part `{full}`"), e))?
            .to_vec();
        while recs.len() <= index {
            recs.push(Incoming::default());
        }
        let rec = &mut recs[index];
        let text =
            |b: Vec<u8>| String::from_utf8(b).map_err(|_| bad(format!("`{full}` is not UTF-8")));
        match name.as_str() {
            "metadata" => rec.metadata = Some(text(bytes)?),
            "signature" => rec.signature = Some(text(bytes)?),
            "evidence_dropped" => rec.evidence_dropped = Some(text(bytes)?),
            "tombstone" => rec.tombstone = Some(text(bytes)?),
            "overview" => rec.overview = Some(bytes),
            "crop" => rec.crop = Some(bytes),
            other => return Err(bad(format!("unexpected part `{other}`")).into()),
        }
    }
    Ok(recs)
}

/// Checks one record (or tombstone) and stores it; `Ok(true)` when new,
/// `Ok(false)` when already held (identical).
fn accept(g: &mut Inner, rec: Incoming, key: Option<Uuid>) -> Result<(Uuid, bool), Refusal> {
    if rec.tombstone.is_some() {
        return accept_tombstone(g, rec, key);
    }
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    let unprocessable = |m: String| (StatusCode::UNPROCESSABLE_ENTITY, m);
    let metadata_json = rec.metadata.ok_or_else(|| bad("need a `metadata` part"))?;
    let metadata: RecordMetadata = serde_json::from_str(&metadata_json)
        .map_err(|e| unprocessable(format!("metadata does not parse: {e}")))?;
    if let Some(k) = key {
        if k != metadata.id {
            return Err(bad("Idempotency-Key header must equal metadata.id"));
        }
    }
    let id = metadata.id;
    if let Some(&i) = g.index.get(&id) {
        if g.records[i].metadata_json != metadata_json {
            return Err((
                StatusCode::CONFLICT,
                format!("record {id} is already held with other content"),
            ));
        }
        g.records[i].deliveries += 1;
        return Ok((id, false));
    }
    if g.tombstone_index.contains_key(&id) {
        return Err((
            StatusCode::CONFLICT,
            format!("record {id} is already held as a tombstone"),
        ));
    }
    let device_key = device_key(g, &metadata.device_id)?;
    let signature = rec
        .signature
        .ok_or_else(|| unprocessable("unsigned record: no `signature` part".into()))?;
    verify_record(&device_key, metadata_json.as_bytes(), &signature)
        .map_err(|e| unprocessable(format!("record seq {}: {e}", metadata.seq)))?;
    let (overview_jpeg, crop_jpeg) = match (&rec.evidence_dropped, rec.overview, rec.crop) {
        (None, Some(o), Some(c)) => {
            for (what, bytes, claimed) in [
                ("overview", &o, &metadata.overview_sha256),
                ("crop", &c, &metadata.crop_sha256),
            ] {
                let actual = sha256_hex(bytes);
                if !actual.eq_ignore_ascii_case(claimed) {
                    return Err(unprocessable(format!(
                        "{what} sha256 mismatch: metadata says {claimed}, image is {actual}"
                    )));
                }
            }
            (o, c)
        }
        (Some(_), None, None) => (Vec::new(), Vec::new()),
        _ => {
            return Err(bad(
                "need parts `overview` and `crop`, or `evidence_dropped` and no images",
            ))
        }
    };
    let chain_key = check_chain(
        g,
        &metadata.device_id,
        metadata.seq,
        metadata.chain_id.as_deref(),
        metadata.prev_record_sha256.as_deref(),
    )?;
    g.chains.insert(
        chain_key,
        ChainHead {
            seq: metadata.seq,
            record_sha256: record_sha256(metadata_json.as_bytes()),
        },
    );
    g.accepted.push((metadata.device_id.clone(), metadata.seq));
    let i = g.records.len();
    g.records.push(ReceivedRecord {
        metadata,
        metadata_json,
        overview_jpeg,
        crop_jpeg,
        signature,
        evidence_dropped: rec.evidence_dropped,
        deliveries: 1,
    });
    g.index.insert(id, i);
    Ok((id, true))
}

fn device_key(g: &Inner, device_id: &str) -> Result<VerifyingKey, Refusal> {
    g.devices.get(device_id).copied().ok_or_else(|| {
        (
            StatusCode::FORBIDDEN,
            format!("unknown device `{device_id}`"),
        )
    })
}

/// Checks that `seq` with `prev` continues its chain; returns the chain's key.
fn check_chain(
    g: &Inner,
    device_id: &str,
    seq: i64,
    chain_id: Option<&str>,
    prev: Option<&str>,
) -> Result<(String, String), Refusal> {
    let (Some(chain_id), Some(prev)) = (chain_id, prev) else {
        return Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("seq {seq} has no chain_id / prev_record_sha256"),
        ));
    };
    let chain_key = (device_id.to_string(), chain_id.to_string());
    match g.chains.get(&chain_key) {
        None if prev != GENESIS_PREV => Err((
            StatusCode::CONFLICT,
            format!(
                "record seq {seq} continues chain {chain_id}, whose earlier records have not arrived"
            ),
        )),
        Some(head) if seq != head.seq + 1 => Err((
            StatusCode::CONFLICT,
            format!(
                "expected seq {} next in chain {chain_id}, got {seq}: missing or reordered",
                head.seq + 1
            ),
        )),
        Some(head) if prev != head.record_sha256 => Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "chain broken at seq {seq}: prev_record_sha256 does not match record seq {} as received",
                head.seq
            ),
        )),
        _ => Ok(chain_key),
    }
}

/// Checks a tombstone (the parts `tombstone` and `signature`, nothing else)
/// and stores it, moving its chain's head to the deleted record's hash.
fn accept_tombstone(
    g: &mut Inner,
    rec: Incoming,
    key: Option<Uuid>,
) -> Result<(Uuid, bool), Refusal> {
    let bad = |m: &str| (StatusCode::BAD_REQUEST, m.to_string());
    let unprocessable = |m: String| (StatusCode::UNPROCESSABLE_ENTITY, m);
    if rec.metadata.is_some()
        || rec.overview.is_some()
        || rec.crop.is_some()
        || rec.evidence_dropped.is_some()
    {
        return Err(bad("a tombstone comes with a `signature` part only"));
    }
    let json = rec.tombstone.unwrap_or_default();
    let tombstone: Tombstone = serde_json::from_str(&json)
        .map_err(|e| unprocessable(format!("tombstone does not parse: {e}")))?;
    if let Some(k) = key {
        if k != tombstone.id {
            return Err(bad("Idempotency-Key header must equal tombstone.id"));
        }
    }
    let id = tombstone.id;
    if let Some(&i) = g.tombstone_index.get(&id) {
        if g.tombstones[i].json != json {
            return Err((
                StatusCode::CONFLICT,
                format!("tombstone {id} is already held with other content"),
            ));
        }
        g.tombstones[i].deliveries += 1;
        return Ok((id, false));
    }
    let device_key = device_key(g, &tombstone.device_id)?;
    let signature = rec
        .signature
        .ok_or_else(|| unprocessable("unsigned tombstone: no `signature` part".into()))?;
    verify_record(&device_key, json.as_bytes(), &signature)
        .map_err(|e| unprocessable(format!("tombstone seq {}: {e}", tombstone.seq)))?;
    if let Some(&i) = g.index.get(&id) {
        // The record arrived whole before, but its ack did not reach the
        // device before the record expired there: nothing new to store.
        let held = &g.records[i];
        if held.metadata.seq != tombstone.seq
            || record_sha256(held.metadata_json.as_bytes()) != tombstone.record_sha256
        {
            return Err((
                StatusCode::CONFLICT,
                format!("tombstone {id} does not match the record held under that id"),
            ));
        }
        g.records[i].deliveries += 1;
        return Ok((id, false));
    }
    let is_hash = tombstone.record_sha256.len() == 64
        && tombstone
            .record_sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !is_hash {
        return Err(unprocessable(format!(
            "tombstone seq {}: record_sha256 is not 64 lower-case hex digits",
            tombstone.seq
        )));
    }
    let chain_key = check_chain(
        g,
        &tombstone.device_id,
        tombstone.seq,
        tombstone.chain_id.as_deref(),
        tombstone.prev_record_sha256.as_deref(),
    )?;
    g.chains.insert(
        chain_key,
        ChainHead {
            seq: tombstone.seq,
            record_sha256: tombstone.record_sha256.clone(),
        },
    );
    g.accepted
        .push((tombstone.device_id.clone(), tombstone.seq));
    let i = g.tombstones.len();
    g.tombstones.push(ReceivedTombstone {
        tombstone,
        json,
        signature,
        deliveries: 1,
    });
    g.tombstone_index.insert(id, i);
    Ok((id, true))
}

fn refuse(g: &mut Inner, (status, reason): Refusal) -> Response {
    g.refusals.push((status.as_u16(), reason.clone()));
    error(status, reason)
}

fn refuse_parts(g: &mut Inner, e: PartsError) -> Response {
    match e {
        PartsError::Refused(r) => refuse(g, r),
        PartsError::CutShort(what) => {
            g.cut_short.push(what.clone());
            error(StatusCode::BAD_REQUEST, what)
        }
    }
}

/// Answers the injected faults (503, garbage) when any are armed.
fn injected_fault(g: &mut Inner) -> Option<Response> {
    if g.fail_next > 0 {
        g.fail_next -= 1;
        let secs = g.retry_after_s.to_string();
        return Some(
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(axum::http::header::RETRY_AFTER, secs)],
                "busy, come back later",
            )
                .into_response(),
        );
    }
    None
}

async fn receive(State(state): State<Shared>, headers: HeaderMap, mut form: Multipart) -> Response {
    {
        let mut g = lock(&state);
        g.requests += 1;
        if let Some(r) = injected_fault(&mut g) {
            return r;
        }
    }
    let parts = read_parts(&mut form, false).await;
    let mut g = lock(&state);
    let mut recs = match parts {
        Ok(r) if r.len() == 1 => r,
        Ok(_) => return refuse(&mut g, (StatusCode::BAD_REQUEST, "no parts".into())),
        Err(e) => return refuse_parts(&mut g, e),
    };
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v.trim()).ok())
        .unwrap_or_else(Uuid::nil);
    let (id, new) = match accept(&mut g, recs.remove(0), Some(key)) {
        Ok(x) => x,
        Err(e) => return refuse(&mut g, e),
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
    let status = if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (
        status,
        axum::Json(serde_json::json!({ "id": answer_id.to_string() })),
    )
        .into_response()
}

async fn receive_batch(State(state): State<Shared>, mut form: Multipart) -> Response {
    {
        let mut g = lock(&state);
        g.requests += 1;
        if let Some(r) = injected_fault(&mut g) {
            return r;
        }
    }
    let parts = read_parts(&mut form, true).await;
    let mut g = lock(&state);
    let recs = match parts {
        Ok(r) if !r.is_empty() => r,
        Ok(_) => return refuse(&mut g, (StatusCode::BAD_REQUEST, "empty batch".into())),
        Err(e) => return refuse_parts(&mut g, e),
    };
    let mut acked = Vec::new();
    let mut first_error = None;
    for rec in recs {
        match accept(&mut g, rec, None) {
            Ok((id, _)) => acked.push(id.to_string()),
            Err(e) => {
                g.refusals.push((e.0.as_u16(), e.1.clone()));
                first_error = Some(e.1);
                // Later records would only break the chain: leave them for the retry.
                break;
            }
        }
    }
    if g.garbage_next > 0 {
        g.garbage_next -= 1;
        return (StatusCode::OK, "<html><body>It works!</body></html>").into_response();
    }
    if g.wrong_id_next > 0 {
        g.wrong_id_next -= 1;
        acked.push(Uuid::new_v4().to_string());
    }
    (
        StatusCode::OK,
        axum::Json(serde_json::json!({ "acked": acked, "error": first_error })),
    )
        .into_response()
}
