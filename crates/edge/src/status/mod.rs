//! Status: the field technician's page, served by the daemon itself.
//!
//! An overview (device, clock, disk, upload queue, lists, alarms with what to
//! do), a page per camera with a live snapshot for aiming and focusing, the
//! same data as JSON under `/api/v1/`, and Prometheus `/metrics`; behind a
//! password with sessions and a lock-out, `/healthz` alone open. It reads
//! counters ([`Metrics`]), fixed facts, the lists' status and the newest frame
//! per camera ([`LatestFramesView`]); it never sees plate text, writes nothing
//! to disk, and a snapshot lives in memory for one answer and a short cache.
//! See `docs/ref/status-api.md`.

pub mod auth;
pub mod html;
pub mod prom;
pub mod snapshot;
pub mod view;

use crate::sync::LockUnpoisoned;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form, Json, Router};
use base64::Engine;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::{SyncState, TimeSource};
use crate::config::{CameraConfig, StatusConfig};
use crate::detect::LatestFramesView;
use crate::metrics::{CameraState, Metrics, MetricsSnapshot};
use crate::policy::lists::ListsStatus;
use auth::{Auth, Login};
use snapshot::{Analysis, Layout};
use view::{Alarm, CameraView, History, Storage, Uploads};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot listen on {addr} for the status page: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("status page TLS: {path}: {reason}")]
    Tls { path: PathBuf, reason: String },
}

/// Facts about the device that do not change while it runs.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceFacts {
    pub device_id: String,
    pub software_version: String,
    pub model_versions: String,
    pub runtime_version: String,
}

/// Gives the lists' versions, ages and alarm (never an entry) when asked.
pub type ListsProbe = Arc<dyn Fn() -> ListsStatus + Send + Sync>;

/// Everything the status page reads.
pub struct StatusContext {
    pub facts: DeviceFacts,
    pub metrics: Arc<Metrics>,
    pub time: TimeSource,
    pub lists: Option<ListsProbe>,
    pub frames: LatestFramesView,
    /// The cameras' configs, for their facing, ROI and lanes.
    pub cameras: Vec<CameraConfig>,
    /// The store's database file, for its size and its disk's free space.
    pub store_path: PathBuf,
}

/// How long a rendered snapshot is served again before a newer frame is
/// drawn: caps the CPU a page (or many) can take from the pipeline.
const SNAPSHOT_MIN_INTERVAL: Duration = Duration::from_millis(500);

/// Fewest time between two snapshots one session (or, without a session, one
/// address) gets of one camera. The page asks once a second; a client asking
/// faster is answered 429 at the cost of a header, not of a JPEG copied out.
const SNAPSHOT_PER_CLIENT_INTERVAL: Duration = Duration::from_millis(250);

struct CachedSnapshot {
    seq: u64,
    analysis: Arc<Analysis>,
    jpeg: Option<(Duration, bytes::Bytes)>,
}

struct Inner {
    ctx: StatusContext,
    auth: Auth,
    secure_cookie: bool,
    needed_px: u32,
    started: Duration,
    history: Mutex<History>,
    layouts: HashMap<String, (Layout, String)>,
    snapshots: Mutex<HashMap<String, CachedSnapshot>>,
    /// When each (client, camera) last got a snapshot.
    snapshot_served: Mutex<HashMap<(String, String), Duration>>,
}

#[derive(Clone)]
struct App(Arc<Inner>);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock_unpoisoned()
}

fn healthy(s: &MetricsSnapshot) -> bool {
    // Healthy while at least one camera delivers (or has finished a replay);
    // a controller with every camera absent needs a technician.
    s.cameras
        .iter()
        .any(|c| matches!(c.state, CameraState::Streaming | CameraState::Finished))
}

/// One consistent reading of everything the pages show.
struct Collected {
    counters: MetricsSnapshot,
    uptime_s: u64,
    clock: SyncState,
    storage: Storage,
    uploads: Uploads,
    lists: Option<ListsStatus>,
    cameras: Vec<CameraView>,
    alarms: Vec<Alarm>,
}

impl App {
    fn collect(&self) -> Collected {
        let ctx = &self.0.ctx;
        let counters = ctx.metrics.snapshot();
        let now = ctx.time.clocks.monotonic();
        let now_ms = ctx.time.clocks.wall().timestamp_millis();
        let cameras: Vec<CameraView> = {
            let h = lock(&self.0.history);
            counters
                .cameras
                .iter()
                .map(|c| {
                    let facing = self.0.layouts.get(&c.id).map_or("", |l| l.1.as_str());
                    view::camera_view(c, facing, &h, now, now_ms)
                })
                .collect()
        };
        let clock = ctx.time.sync.state();
        let storage = view::Storage {
            budget_used_bytes: counters.store_used_bytes,
            budget_bytes: counters.store_max_bytes,
            ..view::storage(&ctx.store_path)
        };
        let uploads = view::uploads(&counters, now_ms);
        let lists = ctx.lists.as_ref().map(|p| p());
        let alarms = view::alarms(&view::AlarmInput {
            counters: &counters,
            cameras: &cameras,
            clock,
            lists: lists.as_ref(),
            storage: &storage,
            uploads: &uploads,
        });
        Collected {
            uptime_s: now.saturating_sub(self.0.started).as_secs(),
            counters,
            clock,
            storage,
            uploads,
            lists,
            cameras,
            alarms,
        }
    }

    fn camera(&self, id: &str) -> Option<CameraView> {
        self.collect()
            .cameras
            .into_iter()
            .find(|c| c.counters.id == id)
    }

    /// Whether this client may have another snapshot of `camera` now; if so,
    /// notes the time.
    fn snapshot_due(&self, headers: &HeaderMap, peer: SocketAddr, camera: &str) -> bool {
        let now = self.0.ctx.time.clocks.monotonic();
        let client = session_token(headers).unwrap_or_else(|| peer.ip().to_string());
        let mut served = lock(&self.0.snapshot_served);
        let key = (client, camera.to_string());
        if served
            .get(&key)
            .is_some_and(|last| now.saturating_sub(*last) < SNAPSHOT_PER_CLIENT_INTERVAL)
        {
            return false;
        }
        // Ended sessions must not pile up.
        served.retain(|_, last| now.saturating_sub(*last) < Duration::from_secs(60));
        served.insert(key, now);
        true
    }

    /// The analysis of the camera's newest frame (cached per frame).
    fn analysis(&self, camera: &str) -> Option<Arc<Analysis>> {
        let frame = self.0.ctx.frames.latest(camera)?;
        {
            let cache = lock(&self.0.snapshots);
            if let Some(c) = cache.get(camera).filter(|c| c.seq == frame.frame.seq) {
                return Some(c.analysis.clone());
            }
        }
        let layout = self
            .0
            .layouts
            .get(camera)
            .map(|l| l.0.clone())
            .unwrap_or_default();
        let a = Arc::new(snapshot::analyse(&frame, self.0.needed_px, &layout));
        lock(&self.0.snapshots).insert(
            camera.to_string(),
            CachedSnapshot {
                seq: frame.frame.seq,
                analysis: a.clone(),
                jpeg: None,
            },
        );
        Some(a)
    }
}

// ---- authentication -------------------------------------------------------

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == auth::COOKIE)
        .map(|(_, v)| v.to_string())
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ")?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    Some(text.split_once(':')?.1.to_string())
}

async fn check_blocking(auth: &Auth, password: String, session: bool) -> Login {
    let auth = auth.clone();
    tokio::task::spawn_blocking(move || {
        if session {
            auth.login(&password)
        } else {
            auth.check(&password)
        }
    })
    .await
    .unwrap_or(Login::Wrong)
}

fn peer(req_ext: Option<&ConnectInfo<SocketAddr>>) -> String {
    req_ext.map(|c| c.0.to_string()).unwrap_or_default()
}

/// Lets a request through with a live session cookie or a right HTTP Basic
/// password; otherwise pages go to the login form and API calls get 401.
async fn require_login(State(app): State<App>, req: Request, next: Next) -> Response {
    if session_token(req.headers()).is_some_and(|t| app.0.auth.session_valid(&t)) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let machine = path.starts_with("/api/") || path == "/metrics" || path.ends_with(".jpg");
    if let Some(pw) = basic_password(req.headers()) {
        let who = peer(req.extensions().get::<ConnectInfo<SocketAddr>>());
        match check_blocking(&app.0.auth, pw, false).await {
            Login::Ok(_) => {
                // Debug only: a Prometheus scraper logs in every few seconds.
                tracing::debug!(peer = %who, %path, "status request with HTTP Basic");
                return next.run(req).await;
            }
            outcome => {
                tracing::warn!(peer = %who, %path, outcome = ?outcome_word(&outcome), "status login (basic) failed");
                if let Login::LockedOut(d) = outcome {
                    return locked_out(d, true);
                }
            }
        }
    }
    if machine {
        let mut r = (
            StatusCode::UNAUTHORIZED,
            Json(serde_json::json!({"error": "log in first (POST /login) or use HTTP Basic"})),
        )
            .into_response();
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"anpr-edge\""),
        );
        r
    } else {
        Redirect::to("/login").into_response()
    }
}

fn outcome_word(l: &Login) -> &'static str {
    match l {
        Login::Ok(_) => "ok",
        Login::Wrong => "wrong password",
        Login::LockedOut(_) => "locked out",
        Login::NoPassword => "no password configured",
    }
}

fn locked_out(d: Duration, machine: bool) -> Response {
    let secs = d.as_secs().max(1);
    let msg = format!("Too many failed logins: try again in {secs} s.");
    let mut r = if machine {
        (
            StatusCode::TOO_MANY_REQUESTS,
            Json(serde_json::json!({ "error": msg })),
        )
            .into_response()
    } else {
        (StatusCode::TOO_MANY_REQUESTS, Html(html::login(Some(&msg)))).into_response()
    };
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

#[derive(serde::Deserialize)]
struct LoginForm {
    password: String,
}

async fn login_page(State(app): State<App>, headers: HeaderMap) -> Response {
    if session_token(&headers).is_some_and(|t| app.0.auth.session_valid(&t)) {
        return Redirect::to("/").into_response();
    }
    Html(html::login(None)).into_response()
}

async fn login_post(
    State(app): State<App>,
    Extension(ConnectInfo(who)): Extension<ConnectInfo<SocketAddr>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let outcome = check_blocking(&app.0.auth, form.password, true).await;
    match outcome {
        Login::Ok(token) => {
            tracing::info!(peer = %who, "status login");
            let cookie = format!(
                "{}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
                auth::COOKIE,
                app.0.auth.session_for().as_secs(),
                if app.0.secure_cookie { "; Secure" } else { "" }
            );
            let mut r = Redirect::to("/").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Login::Wrong => {
            tracing::warn!(peer = %who, "status login failed: wrong password");
            (
                StatusCode::UNAUTHORIZED,
                Html(html::login(Some("Wrong password."))),
            )
                .into_response()
        }
        Login::LockedOut(d) => {
            tracing::warn!(peer = %who, lock_s = d.as_secs(), "status login refused: locked out");
            locked_out(d, false)
        }
        Login::NoPassword => {
            tracing::warn!(peer = %who, "status login refused: no password configured");
            (
                StatusCode::FORBIDDEN,
                Html(html::login(Some(
                    "No technician password is set on this device: set status.password_hash (anpr-edge passwd).",
                ))),
            )
                .into_response()
        }
    }
}

async fn logout(State(app): State<App>, headers: HeaderMap) -> Response {
    if let Some(t) = session_token(&headers) {
        app.0.auth.logout(&t);
    }
    let mut r = Redirect::to("/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("anpr_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    r
}

// ---- pages and API --------------------------------------------------------

async fn healthz(State(app): State<App>) -> impl IntoResponse {
    if healthy(&app.0.ctx.metrics.snapshot()) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no camera is delivering frames\n",
        )
    }
}

async fn overview_page(State(app): State<App>) -> Html<String> {
    let c = app.collect();
    Html(html::overview(&html::OverviewPage {
        facts: &app.0.ctx.facts,
        uptime_s: c.uptime_s,
        clock: c.clock,
        storage: &c.storage,
        uploads: &c.uploads,
        lists: c.lists.as_ref(),
        cameras: &c.cameras,
        alarms: &c.alarms,
    }))
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(serde_json::json!({ "error": format!("no such {what}") })),
    )
        .into_response()
}

async fn camera_page(State(app): State<App>, UrlPath(id): UrlPath<String>) -> Response {
    let Some(cam) = app.camera(&id) else {
        return not_found("camera");
    };
    let a = app.analysis(&id);
    Html(html::camera(&app.0.ctx.facts.device_id, &cam, a.as_deref())).into_response()
}

async fn snapshot_jpeg(
    State(app): State<App>,
    Extension(ConnectInfo(who)): Extension<ConnectInfo<SocketAddr>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    if !app.0.layouts.contains_key(&id) {
        return not_found("camera");
    }
    if !app.snapshot_due(&headers, who, &id) {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
            "snapshots come at most four times a second\n",
        )
            .into_response();
    }
    let Some(frame) = app.0.ctx.frames.latest(&id) else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "no frame from this camera yet\n",
        )
            .into_response();
    };
    let now = app.0.ctx.time.clocks.monotonic();
    let cached = lock(&app.0.snapshots).get(&id).and_then(|c| {
        let (made, jpeg) = c.jpeg.as_ref()?;
        let fresh = c.seq == frame.frame.seq || now.saturating_sub(*made) < SNAPSHOT_MIN_INTERVAL;
        fresh.then(|| (c.seq, jpeg.clone()))
    });
    let (seq, jpeg) = match cached {
        Some(c) => c,
        None => {
            let Some(analysis) = app.analysis(&id) else {
                return (StatusCode::SERVICE_UNAVAILABLE, "no frame yet\n").into_response();
            };
            let layout = app
                .0
                .layouts
                .get(&id)
                .map(|l| l.0.clone())
                .unwrap_or_default();
            let cam = id.clone();
            let a = analysis.clone();
            let rendered = tokio::task::spawn_blocking(move || {
                snapshot::render_jpeg(&frame, &a, &layout, &cam)
            })
            .await;
            let jpeg = match rendered {
                Ok(Ok(j)) => bytes::Bytes::from(j),
                Ok(Err(e)) => {
                    tracing::error!(camera = %id, error = %e, "snapshot encoding failed");
                    return StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
            };
            if let Some(c) = lock(&app.0.snapshots).get_mut(&id) {
                if c.seq == analysis.seq {
                    c.jpeg = Some((now, jpeg.clone()));
                }
            }
            (analysis.seq, jpeg)
        }
    };
    tracing::info!(peer = %who, camera = %id, seq, "snapshot viewed");
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        jpeg,
    )
        .into_response()
}

#[derive(Serialize)]
struct StatusBody<'a> {
    #[serde(flatten)]
    facts: &'a DeviceFacts,
    uptime_s: u64,
    clock: SyncState,
    healthy: bool,
    /// Zone, each list's version, entries and age, the alarm and the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    lists: Option<&'a ListsStatus>,
    storage: &'a Storage,
    uploads: &'a Uploads,
    alarms: &'a [Alarm],
    cameras: &'a [CameraView],
    /// The daemon's counters, at the top level as before.
    #[serde(flatten)]
    counters: serde_json::Map<String, serde_json::Value>,
}

async fn status_json(State(app): State<App>) -> Response {
    let c = app.collect();
    let mut counters = match serde_json::to_value(&c.counters) {
        Ok(serde_json::Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    // The camera views below carry these counters and more.
    counters.remove("cameras");
    Json(StatusBody {
        facts: &app.0.ctx.facts,
        uptime_s: c.uptime_s,
        clock: c.clock,
        healthy: healthy(&c.counters),
        lists: c.lists.as_ref(),
        storage: &c.storage,
        uploads: &c.uploads,
        alarms: &c.alarms,
        cameras: &c.cameras,
        counters,
    })
    .into_response()
}

async fn cameras_json(State(app): State<App>) -> Json<Vec<CameraView>> {
    Json(app.collect().cameras)
}

async fn alarms_json(State(app): State<App>) -> Json<Vec<Alarm>> {
    Json(app.collect().alarms)
}

#[derive(Serialize)]
struct CameraBody {
    #[serde(flatten)]
    camera: CameraView,
    /// The newest frame's measurements (no pixels); absent before the first frame.
    snapshot: Option<Analysis>,
}

async fn camera_json(State(app): State<App>, UrlPath(id): UrlPath<String>) -> Response {
    let Some(camera) = app.camera(&id) else {
        return not_found("camera");
    };
    let snapshot = app.analysis(&id).map(|a| (*a).clone());
    Json(CameraBody { camera, snapshot }).into_response()
}

async fn metrics_text(State(app): State<App>) -> Response {
    let c = app.collect();
    let body = prom::render(&prom::Input {
        counters: &c.counters,
        cameras: &c.cameras,
        uptime_s: c.uptime_s,
        clock: c.clock,
        storage: &c.storage,
        uploads: &c.uploads,
        lists: c.lists.as_ref(),
        alarms: c.alarms.len(),
    });
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        body,
    )
        .into_response()
}

fn build(cfg: &StatusConfig, ctx: StatusContext, secure_cookie: bool) -> App {
    let auth = Auth::new(
        cfg.password_hash.clone(),
        ctx.time.clocks.clone(),
        Duration::from_secs(cfg.session_s),
        cfg.lockout_after,
        Duration::from_secs(cfg.lockout_s),
    );
    let layouts = ctx
        .cameras
        .iter()
        .map(|c| (c.id.clone(), (Layout::of(c), c.facing.clone())))
        .collect();
    App(Arc::new(Inner {
        started: ctx.time.clocks.monotonic(),
        auth,
        secure_cookie,
        needed_px: cfg.plate_height_needed_px,
        history: Mutex::default(),
        layouts,
        snapshots: Mutex::default(),
        snapshot_served: Mutex::default(),
        ctx,
    }))
}

fn routes(app: App) -> Router {
    let private = Router::new()
        .route("/", get(overview_page))
        .route("/cameras/{id}", get(camera_page))
        .route("/cameras/{id}/snapshot.jpg", get(snapshot_jpeg))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/alarms", get(alarms_json))
        .route("/api/v1/cameras", get(cameras_json))
        .route("/api/v1/cameras/{id}", get(camera_json))
        .route("/api/v1/cameras/{id}/snapshot.jpg", get(snapshot_jpeg))
        .route("/metrics", get(metrics_text))
        .route_layer(axum::middleware::from_fn_with_state(
            app.clone(),
            require_login,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/login", get(login_page).post(login_post))
        .route("/logout", post(logout))
        .merge(private)
        .layer(axum::middleware::map_response(security_headers))
        .with_state(app)
}

async fn security_headers(mut r: Response) -> Response {
    let h = r.headers_mut();
    // Pages hold nothing from elsewhere; the inline script and style are ours.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline'; img-src 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    r
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<tokio_rustls::TlsAcceptor, StatusError> {
    let read = |p: &Path| {
        std::fs::read(p).map_err(|e| StatusError::Tls {
            path: p.to_path_buf(),
            reason: e.to_string(),
        })
    };
    let bad = |p: &Path, reason: String| StatusError::Tls {
        path: p.to_path_buf(),
        reason,
    };
    let cert_pem = read(cert)?;
    let certs = rustls_pemfile::certs(&mut cert_pem.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, e.to_string()))?;
    if certs.is_empty() {
        return Err(bad(cert, "no certificate in the file".into()));
    }
    let key_pem = read(key)?;
    let key_der = rustls_pemfile::private_key(&mut key_pem.as_slice())
        .map_err(|e| bad(key, e.to_string()))?
        .ok_or_else(|| bad(key, "no private key in the file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(cert, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| bad(key, e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

/// The running page: the addresses it listens on and its task.
pub struct Served {
    pub addrs: Vec<SocketAddr>,
    pub tls: bool,
    pub task: tokio::task::JoinHandle<()>,
}

async fn serve_connection<S>(io: S, app: Router, peer: SocketAddr)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let app = app.layer(Extension(ConnectInfo(peer)));
    let svc = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(hyper_util::rt::TokioIo::new(io), svc)
        .await;
}

/// Binds every configured address and serves the page until `stop`; also
/// samples the counters once a second for rates and hourly counts.
///
/// The page runs on its own thread and runtime at the lowest CPU priority
/// (`SCHED_IDLE`, inherited by its blocking pool): however hard it is asked, the
/// detector and reader threads come first, so the page costs the pipeline
/// only idle CPU. Must be called inside a tokio runtime (for the returned task).
pub async fn serve(
    cfg: &StatusConfig,
    ctx: StatusContext,
    stop: CancellationToken,
) -> Result<Served, StatusError> {
    let acceptor = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(c), Some(k)) => Some(tls_acceptor(c, k)?),
        _ => None,
    };
    if cfg.password_hash.is_none() {
        tracing::warn!("no status.password_hash set: the status page answers /healthz only (set one with `anpr-edge passwd`)");
    }
    let mut listeners = Vec::new();
    let mut addrs = Vec::new();
    for a in std::iter::once(&cfg.listen).chain(&cfg.also_listen) {
        let bind_err = |source| StatusError::Bind {
            addr: a.clone(),
            source,
        };
        // Bound here so that a busy port fails the start; served on the page's thread.
        let l = std::net::TcpListener::bind(a).map_err(bind_err)?;
        l.set_nonblocking(true).map_err(bind_err)?;
        addrs.push(l.local_addr().map_err(bind_err)?);
        listeners.push(l);
    }
    let tls = acceptor.is_some();
    let app = build(cfg, ctx, tls);
    let router = routes(app.clone());
    let thread_err = |source| StatusError::Bind {
        addr: cfg.listen.clone(),
        source,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("anpr-status-blocking")
        .max_blocking_threads(2)
        .build()
        .map_err(thread_err)?;
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    std::thread::Builder::new()
        .name("anpr-status".into())
        .spawn(move || {
            lower_priority();
            rt.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                tasks.spawn(sample(app, stop.clone()));
                for l in listeners {
                    match tokio::net::TcpListener::from_std(l) {
                        Ok(l) => {
                            tasks.spawn(accept_loop(
                                l,
                                router.clone(),
                                acceptor.clone(),
                                stop.clone(),
                            ));
                        }
                        Err(e) => tracing::error!(error = %e, "status page cannot listen"),
                    }
                }
                while tasks.join_next().await.is_some() {}
            });
            let _ = done_tx.send(());
        })
        .map_err(thread_err)?;
    let task = tokio::spawn(async move {
        let _ = done_rx.await;
    });
    Ok(Served { addrs, tls, task })
}

/// The lowest CPU class for the calling thread: `SCHED_IDLE`, which Linux
/// gives a weight of 3 against a normal thread's 1024 and which never preempts
/// a normal thread on wake-up, so the page mostly runs on what the pipeline
/// leaves idle (nice 19, the fallback, still takes a few per cent of a busy
/// machine). Policy and niceness are per thread on Linux, and threads this one
/// starts (the page's blocking pool) inherit them.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid, sched_setscheduler and setpriority only read and set
        // this thread's scheduling attributes; `param` outlives the call.
        let (idle, nice) = unsafe {
            let param = libc::sched_param { sched_priority: 0 };
            let idle = libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            (idle, libc::setpriority(libc::PRIO_PROCESS, tid, 19))
        };
        if idle != 0 && nice != 0 {
            tracing::debug!("cannot lower the status page's CPU priority");
        }
    }
}

/// This thread's scheduling policy (for the test of [`lower_priority`]).
#[cfg(all(test, target_os = "linux"))]
fn scheduling_policy() -> i32 {
    // SAFETY: reads this thread's policy.
    unsafe { libc::sched_getscheduler(0) }
}

async fn sample(app: App, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let s = app.0.ctx.metrics.snapshot();
        let now = app.0.ctx.time.clocks.monotonic();
        lock(&app.0.history).record(now, &s);
    }
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    router: Router,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    stop: CancellationToken,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // E.g. out of file descriptors: do not spin.
                        tracing::warn!(error = %e, "status page accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let router = router.clone();
                let acceptor = acceptor.clone();
                conns.spawn(async move {
                    match acceptor {
                        None => serve_connection(tcp, router, peer).await,
                        Some(acc) => {
                            match tokio::time::timeout(Duration::from_secs(10), acc.accept(tcp)).await {
                                Ok(Ok(tls)) => serve_connection(tls, router, peer).await,
                                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "status TLS handshake failed"),
                                Err(_) => {}
                            }
                        }
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    // Open pages reconnect to the next daemon; nothing here needs draining.
    conns.abort_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_cookie_and_basic_password_are_found_in_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; anpr_session=abc; b=2"),
        );
        assert_eq!(session_token(&h).as_deref(), Some("abc"));
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode("tech:s3cret:x");
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {v}")).expect("header"),
        );
        assert_eq!(basic_password(&h).as_deref(), Some("s3cret:x"));
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn the_page_thread_and_the_threads_it_starts_run_in_the_idle_class() {
        let (policy, inherited) = std::thread::spawn(|| {
            lower_priority();
            let child = std::thread::spawn(scheduling_policy)
                .join()
                .expect("child thread");
            (scheduling_policy(), child)
        })
        .join()
        .expect("thread");
        assert_eq!(policy, libc::SCHED_IDLE);
        assert_eq!(inherited, libc::SCHED_IDLE);
        assert_ne!(scheduling_policy(), libc::SCHED_IDLE, "only that thread");
    }

    #[test]
    fn a_client_gets_at_most_four_snapshots_a_second_per_camera() {
        let clocks = Arc::new(crate::clock::SimulatedClocks::new(chrono::Utc::now()));
        let status: StatusConfig = toml::from_str("").expect("defaults");
        let ctx = StatusContext {
            facts: DeviceFacts {
                device_id: "d".into(),
                software_version: "t".into(),
                model_versions: "m".into(),
                runtime_version: "r".into(),
            },
            metrics: Metrics::new(),
            time: TimeSource {
                clocks: clocks.clone(),
                sync: Arc::new(crate::clock::FixedClockSync(SyncState {
                    synchronised: true,
                    max_error_us: 1000,
                })),
            },
            lists: None,
            frames: crate::detect::LatestFrames::new(["a", "b"]).view(),
            cameras: Vec::new(),
            store_path: PathBuf::from("unused.sqlite"),
        };
        let app = build(&status, ctx, false);
        let mut one = HeaderMap::new();
        one.insert(header::COOKIE, HeaderValue::from_static("anpr_session=one"));
        let mut two = HeaderMap::new();
        two.insert(header::COOKIE, HeaderValue::from_static("anpr_session=two"));
        let peer: SocketAddr = "127.0.0.1:5000".parse().expect("addr");

        assert!(app.snapshot_due(&one, peer, "a"));
        assert!(!app.snapshot_due(&one, peer, "a"), "too soon, same session");
        assert!(app.snapshot_due(&one, peer, "b"), "another camera");
        assert!(app.snapshot_due(&two, peer, "a"), "another session");
        clocks.advance(SNAPSHOT_PER_CLIENT_INTERVAL - Duration::from_millis(1));
        assert!(!app.snapshot_due(&one, peer, "a"));
        clocks.advance(Duration::from_millis(1));
        assert!(app.snapshot_due(&one, peer, "a"), "due again");
        // Without a session the address stands for the client.
        let none = HeaderMap::new();
        assert!(app.snapshot_due(&none, peer, "a"));
        assert!(!app.snapshot_due(&none, "127.0.0.1:6000".parse().expect("addr"), "a"));
        assert!(app.snapshot_due(&none, "10.0.0.9:5000".parse().expect("addr"), "a"));
    }
}
