//! Wiring: which stage gets which channel. The whole data flow, top to bottom:
//!
//! ```text
//! cameras ──(FrameQueue, drop-oldest)──▶ detect ──▶ read ──▶ track ──▶ policy ──▶ store ──(wake)──▶ upload
//!   threads                               thread    thread   task      task       thread            task
//! ```
//!
//! Every arrow after the frame queue is a bounded channel: when a later stage
//! is slow, the ones before it wait, and only the frame queue drops (oldest
//! first, counted per camera). Non-hits end at `policy`; only violations reach
//! `store`. `status` reads the shared counters beside all of this, and the
//! watchdog supervisor (`crate::watchdog`) the heartbeats of detect, read,
//! track, policy and store.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::capture::{self, CaptureError, FrameQueue, FrameSource};
use crate::clock::TimeSource;
use crate::config::{CameraConfig, CameraSource, Config, DetectConfig, ReadConfig, RuntimeConfig};
use crate::detect::retina::RetinaPlateDetector;
use crate::detect::{self, PlateDetector};
use crate::keys::EvidenceSigner;
use crate::message::{Passage, ReadFrame, Violation};
use crate::metrics::{inc, Metrics};
use crate::models::ModelSet;
use crate::policy::{Outcome, Policy};
use crate::read::{self, PlateReader};
use crate::status::{self, DeviceFacts};
use crate::store::{RecordContext, Store, StoreLimits};
use crate::track::Tracker;
use crate::upload::{self, Backend};
use crate::watchdog::{Beat, Progress};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Model(#[from] crate::models::ModelError),
    #[error(transparent)]
    Lists(#[from] crate::policy::PolicyError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeyError),
    #[error(transparent)]
    Status(#[from] crate::status::StatusError),
    #[error("cannot set up list downloads: {0}")]
    ListFetch(String),
    #[error("cannot start the {stage} thread: {source}")]
    Thread {
        stage: &'static str,
        source: std::io::Error,
    },
}

/// Opens a camera's frame source; called again to reopen after a failure.
pub type SourceOpener = Box<dyn FnMut() -> Result<Box<dyn FrameSource>, CaptureError> + Send>;

/// A camera to run, with how to open it.
pub struct CameraSpec {
    pub id: String,
    pub open: SourceOpener,
    /// Keep trying to open a device that is absent (real cameras); a replay
    /// folder that cannot be read stays absent.
    pub retry_open: bool,
}

/// Builds the camera specs of a config: V4L2 devices and replay folders.
pub fn cameras_from_config(cameras: &[CameraConfig], paced_replay: bool) -> Vec<CameraSpec> {
    cameras
        .iter()
        .map(|c| {
            let cam = c.clone();
            let open: SourceOpener = match cam.source {
                CameraSource::Replay => Box::new(move || {
                    let path = cam.path.clone().unwrap_or_default();
                    capture::replay::ReplaySource::open(&path, cam.fps, cam.looped, paced_replay)
                        .map(|s| Box::new(s) as Box<dyn FrameSource>)
                }),
                CameraSource::V4l2 => Box::new(move || {
                    let path = cam.device.clone().unwrap_or_default();
                    capture::v4l2::V4l2Source::open(
                        &path, cam.format, cam.width, cam.height, cam.fps,
                    )
                    .map(|s| Box::new(s) as Box<dyn FrameSource>)
                }),
            };
            CameraSpec {
                id: c.id.clone(),
                open,
                retry_open: c.source == CameraSource::V4l2,
            }
        })
        .collect()
}

/// A plate detector and a plate reader, boxed.
pub type DetectorAndReader = (Box<dyn PlateDetector>, Box<dyn PlateReader>);

/// The models, loaded, and what to say about them.
pub struct Inference {
    pub detector: Box<dyn PlateDetector>,
    pub reader: Box<dyn PlateReader>,
    pub facts: DeviceFacts,
}

/// Loads ONNX Runtime and the configured models (each checked against the
/// manifest's sha256 first) and describes them for records and the status page.
pub fn inference_from_config(cfg: &Config) -> Result<Inference, PipelineError> {
    let (detector, reader) = detector_and_reader(&cfg.runtime, &cfg.detect, &cfg.read)?;
    let manifest = crate::models::Manifest::embedded()?;
    let describe = |id: &str| {
        manifest
            .artifact(id)
            .map(|a| format!("{id}={} {}", a.package, a.version))
            .unwrap_or_else(|_| id.to_string())
    };
    let facts = DeviceFacts {
        device_id: cfg.device.id.clone(),
        software_version: env!("CARGO_PKG_VERSION").to_string(),
        model_versions: std::iter::once(crate::models::DETECTOR_ID)
            .chain(crate::read::model_ids(cfg.read.model).iter().copied())
            .map(describe)
            .collect::<Vec<_>>()
            .join("; "),
        runtime_version: describe(crate::models::RUNTIME_ID),
    };
    Ok(Inference {
        detector,
        reader,
        facts,
    })
}

/// Loads ONNX Runtime and the detector and reader alone (each model checked
/// against the manifest's sha256 first), for tools that need no full config.
pub fn detector_and_reader(
    runtime: &RuntimeConfig,
    detect: &DetectConfig,
    read: &ReadConfig,
) -> Result<DetectorAndReader, PipelineError> {
    let models = ModelSet::new(runtime)?;
    let detector = RetinaPlateDetector::new(&models, detect)?;
    let reader = crate::read::build_reader(&models, read)?;
    Ok((Box::new(detector), reader))
}

/// The zone rules and the signed lists of a config. No hit list means no
/// violations: every passage is a non-hit (a controller that only counts). A
/// bundle that fails its checks is logged and left out of force; the reload
/// task (see [`start`]) tries again when its file changes.
pub fn policy_from_config(cfg: &Config) -> Result<Policy, PipelineError> {
    let policy = Policy::from_config(cfg)?;
    let st = policy.lists().status(chrono::Utc::now());
    tracing::info!(
        zone = %st.zone,
        hit_list_version = st.hit_list.as_ref().map(|l| l.version),
        hit_list_entries = st.hit_list.as_ref().map(|l| l.entries),
        exemption_list_version = st.exemptions.as_ref().map(|l| l.version),
        exemptions = st.exemptions.as_ref().map(|l| l.entries),
        alarm = st.alarm,
        "zone lists loaded"
    );
    Ok(policy)
}

/// Looks every `every` whether a bundle file changed, and swaps the new list
/// in; an age alarm that starts or ends is logged once.
async fn run_list_reload(
    lists: std::sync::Arc<crate::policy::Lists>,
    every: Duration,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut alarmed = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let l = lists.clone();
        // Verifying a large bundle takes a while: keep it off the async threads.
        let status = tokio::task::spawn_blocking(move || {
            l.reload_if_changed();
            l.status(chrono::Utc::now())
        })
        .await;
        if let Ok(st) = status {
            if st.alarm != alarmed {
                alarmed = st.alarm;
                if alarmed {
                    tracing::warn!(reasons = ?st.alarm_reasons, "zone list alarm");
                } else {
                    tracing::info!("zone list alarm cleared");
                }
            }
        }
    }
}

/// What the status page may know of the lists: their status, nothing more.
fn lists_probe(lists: &Arc<crate::policy::Lists>) -> status::ListsProbe {
    let lists = lists.clone();
    Arc::new(move || lists.status(chrono::Utc::now()))
}

/// What the pipeline is made of; tests swap any part.
pub struct Parts {
    pub detector: Box<dyn PlateDetector>,
    pub reader: Box<dyn PlateReader>,
    pub backend: Arc<dyn Backend>,
    pub cameras: Vec<CameraSpec>,
    pub policy: Policy,
    pub time: TimeSource,
    pub facts: DeviceFacts,
}

/// A running pipeline.
pub struct Running {
    pub metrics: Arc<Metrics>,
    /// Cancelling stops capture; the stages then drain and end in order.
    pub stop: CancellationToken,
    /// Stops the uploader and the status endpoint (after `recorded` has ended,
    /// so that nothing waits on them).
    pub stop_services: CancellationToken,
    pub status_addr: std::net::SocketAddr,
    /// Every address the status page listens on (`status_addr` first).
    pub status_addrs: Vec<std::net::SocketAddr>,
    /// The zone lists in force: `lists.status(now)` gives versions, ages and
    /// the alarm (for the status page).
    pub lists: Arc<crate::policy::Lists>,
    /// Ends when every violation that capture led to has been committed.
    pub recorded: JoinHandle<()>,
    pub uploader: JoinHandle<()>,
    pub status_task: JoinHandle<()>,
    pub store_path: PathBuf,
    /// The stages' heartbeats, for the watchdog supervisor.
    pub progress: Progress,
}

impl Running {
    /// Stops capture, lets in-flight frames and passages finish, commits, then
    /// stops upload and status. Every committed violation stays in the store.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.recorded.await;
        self.stop_services.cancel();
        let _ = self.uploader.await;
        let _ = self.status_task.await;
    }
}

fn spawn_thread(
    stage: &'static str,
    f: impl FnOnce() + Send + 'static,
) -> Result<std::thread::JoinHandle<()>, PipelineError> {
    std::thread::Builder::new()
        .name(format!("anpr-{stage}"))
        .spawn(f)
        .map_err(|source| PipelineError::Thread { stage, source })
}

/// Starts every stage. Must be called inside a tokio runtime.
pub async fn start(cfg: &Config, parts: Parts) -> Result<Running, PipelineError> {
    let metrics = Metrics::new();
    let progress = Progress::new(parts.time.clocks.clone());
    let stop = CancellationToken::new();
    let stop_services = CancellationToken::new();
    let cap = cfg.pipeline.channel_capacity;

    // Open the store first: a daemon that cannot record must not start capturing.
    // A damaged one is moved aside so that recording goes on in a fresh one.
    let (mut store, moved) = Store::open_checked(&cfg.store.path)?;
    if let Some(m) = moved {
        tracing::error!(moved_to = %m.to.display(), reason = %m.reason, "violation store was damaged: moved aside, recording into a fresh one");
        *metrics
            .store_moved_aside
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(format!("{}: {}", m.to.display(), m.reason));
    }
    store.set_limits(StoreLimits {
        max_bytes: cfg.store.max_bytes,
        policy: cfg.store.on_budget_full,
    });
    store.set_clocks(parts.time.clocks.clone());
    metrics.pending_uploads.store(
        store.pending_count().unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    if let Ok(b) = store.budget_status() {
        metrics.set_store_budget(&b);
    }
    let key_path = cfg.store.signing_key_path();
    let (signer, made) = EvidenceSigner::load_or_create(&key_path)?;
    if made {
        tracing::warn!(path = %key_path.display(), public_key = %signer.public_base64(), "no evidence signing key: made one; give its public key to the backend (normally `anpr-edge provision` does this)");
    }

    let queue = FrameQueue::new(
        cfg.pipeline.frame_queue,
        parts.cameras.len(),
        metrics.clone(),
    );
    let (detected_tx, detected_rx) = mpsc::channel(cap);
    let (read_tx, read_rx) = mpsc::channel::<ReadFrame>(cap);
    let (passage_tx, passage_rx) = mpsc::channel::<Passage>(cap);
    let (violation_tx, violation_rx) = mpsc::channel::<Violation>(cap);
    let wake_uploader = Arc::new(Notify::new());

    for cam in parts.cameras {
        let (q, t, m, s) = (
            queue.clone(),
            parts.time.clone(),
            metrics.clone(),
            stop.clone(),
        );
        let id: Arc<str> = cam.id.into();
        let (open, retry) = (cam.open, cam.retry_open);
        spawn_thread("capture", move || {
            capture::run_camera(id, open, retry, q, t, m, s)
        })?;
    }
    // The newest frame per camera, for the status page's live snapshot.
    let latest = detect::LatestFrames::new(cfg.cameras.iter().map(|c| c.id.as_str()));
    {
        let (m, s, l) = (metrics.clone(), stop.clone(), latest.clone());
        let detector = Box::new(BeatingDetector {
            inner: parts.detector,
            beat: progress.beat("detect"),
        });
        spawn_thread("detect", move || {
            detect::run_stage(detector, queue, detected_tx, l, m, s)
        })?;
    }
    {
        let (m, rc) = (metrics.clone(), cfg.read.clone());
        let reader = Box::new(BeatingReader {
            inner: parts.reader,
            beat: progress.beat("read"),
        });
        spawn_thread("read", move || {
            read::run_stage(reader, rc, detected_rx, read_tx, m)
        })?;
    }
    tokio::spawn(run_track(
        Tracker::with_cameras(&cfg.track, &cfg.cameras)
            .with_sure_confidence(cfg.policy.min_confidence),
        read_rx,
        passage_tx,
        parts.time.clone(),
        progress.beat("track"),
        metrics.clone(),
    ));
    let lists = parts.policy.lists().clone();
    tokio::spawn(run_list_reload(
        lists.clone(),
        Duration::from_secs(cfg.policy.reload_check_s),
        stop_services.clone(),
    ));
    if let Some(url) = &cfg.policy.lists_url {
        let ca = cfg
            .policy
            .lists_ca_cert
            .as_ref()
            .unwrap_or(&cfg.upload.ca_cert);
        let fetcher = crate::policy::fetch::ListFetcher::new(
            url,
            ca,
            Duration::from_secs(cfg.upload.timeout_s.max(1)),
            lists.clone(),
        )
        .map_err(|e| PipelineError::ListFetch(e.to_string()))?;
        tokio::spawn(crate::policy::fetch::run_list_fetch(
            fetcher,
            Duration::from_secs(cfg.policy.fetch_interval_s.max(1)),
            stop_services.clone(),
        ));
    }
    tokio::spawn(run_policy(
        parts.policy,
        passage_rx,
        violation_tx,
        metrics.clone(),
        progress.beat("policy"),
    ));

    // Each camera states its own facing in its records.
    let contexts: HashMap<String, RecordContext> = cfg
        .cameras
        .iter()
        .map(|c| {
            let ctx = RecordContext {
                device_id: cfg.device.id.clone(),
                location: cfg.device.location.clone(),
                latitude: cfg.device.latitude,
                longitude: cfg.device.longitude,
                camera_facing: c.facing.clone(),
                model_versions: parts.facts.model_versions.clone(),
                jpeg_quality: cfg.store.jpeg_quality,
                signer: signer.clone(),
            };
            (c.id.clone(), ctx)
        })
        .collect();
    let recorded = {
        let (m, w) = (metrics.clone(), wake_uploader.clone());
        let beat = progress.beat("store");
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        spawn_thread("store", move || {
            run_store(&mut store, &contexts, violation_rx, &m, &w, &beat);
            let _ = done_tx.send(());
        })?;
        tokio::spawn(async move {
            let _ = done_rx.await;
        })
    };
    tokio::spawn(run_retention(
        cfg.store.path.clone(),
        RetentionParams {
            acked_evidence: chrono::Duration::hours(
                cfg.store.acked_evidence_retention_h.min(1_000_000) as i64,
            ),
            max_age: chrono::Duration::days(cfg.store.max_retention_days.min(100_000) as i64),
            every: RETENTION_EVERY,
            signer: signer.clone(),
        },
        parts.time.clone(),
        metrics.clone(),
        stop_services.clone(),
    ));
    let uploader = tokio::spawn(log_uploader_end(upload::run_uploader(
        cfg.store.path.clone(),
        parts.backend,
        wake_uploader,
        metrics.clone(),
        upload::UploaderParams::from_config(&cfg.upload),
        stop_services.clone(),
    )));
    let served = status::serve(
        &cfg.status,
        status::StatusContext {
            facts: parts.facts,
            metrics: metrics.clone(),
            time: parts.time,
            lists: Some(lists_probe(&lists)),
            frames: latest.view(),
            cameras: cfg.cameras.clone(),
            store_path: cfg.store.path.clone(),
        },
        stop_services.clone(),
    )
    .await?;
    let status_addr = served.addrs[0];
    let status_task = served.task;

    Ok(Running {
        metrics,
        stop,
        stop_services,
        status_addr,
        status_addrs: served.addrs,
        lists,
        recorded,
        uploader,
        status_task,
        store_path: cfg.store.path.clone(),
        progress,
    })
}

/// Marks the detect stage busy while the detector runs on a frame.
struct BeatingDetector {
    inner: Box<dyn PlateDetector>,
    beat: Arc<Beat>,
}

impl PlateDetector for BeatingDetector {
    fn detect(
        &mut self,
        image: &image::RgbImage,
    ) -> Result<Vec<crate::message::Detection>, crate::detect::DetectError> {
        let inner = &mut self.inner;
        self.beat.handle(|| inner.detect(image))
    }
}

/// Marks the read stage busy while the reader runs on a frame's crops.
struct BeatingReader {
    inner: Box<dyn PlateReader>,
    beat: Arc<Beat>,
}

impl PlateReader for BeatingReader {
    fn read(
        &mut self,
        crops: &[image::RgbImage],
    ) -> Result<Vec<crate::read::TextRead>, crate::read::ReadError> {
        let inner = &mut self.inner;
        self.beat.handle(|| inner.read(crops))
    }

    // Forwarded, not left to the default: the read stage widens crops cut at
    // their edge only where the reader says where its characters lie.
    fn read_located(
        &mut self,
        crops: &[image::RgbImage],
    ) -> Result<Vec<(crate::read::TextRead, Option<crate::read::Extent>)>, crate::read::ReadError>
    {
        let inner = &mut self.inner;
        self.beat.handle(|| inner.read_located(crops))
    }
}

async fn log_uploader_end(
    run: impl std::future::Future<Output = Result<(), crate::upload::UploadError>>,
) {
    if let Err(e) = run.await {
        tracing::error!(error = %e, "uploader stopped; violations stay in the store until restart");
    }
}

/// How often retention runs (and once at start).
const RETENTION_EVERY: Duration = Duration::from_secs(600);

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
    let mut tick = tokio::time::interval(params.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = time.clocks.wall();
        let s = store.clone();
        let p = params.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut g = s.lock().unwrap_or_else(|p| p.into_inner());
            let report = g.apply_retention(now, p.acked_evidence, p.max_age, &p.signer)?;
            Ok::<_, crate::store::StoreError>((report, g.budget_status()?))
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
                *metrics
                    .store_drops
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = budget.drops;
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

/// A camera none of whose frames has reached the tracker for this long, and
/// none of whose frames is still on its way there, has stalled (a live camera
/// sends frames continuously, even empty ones); its open tracks are closed so
/// that the last vehicle's passage is not held back. Frames still in detection
/// or reading keep the camera alive however slow the machine (an emulated
/// controller takes a minute a frame), so a slow machine never splits a
/// passage this way.
const CAMERA_STALL: Duration = Duration::from_secs(30);

/// However many frames the counters say are still on their way, a camera
/// silent at the tracker this long has stalled: a frame lost without being
/// counted must not hold a track open forever.
const CAMERA_STALL_REGARDLESS: Duration = Duration::from_secs(300);

/// Whether a camera has stalled, given how long ago its last frame reached the
/// tracker and how many of its captured frames have neither been dropped nor
/// reached the tracker yet.
fn camera_stalled(since_last_arrival: Duration, frames_in_flight: u64) -> bool {
    since_last_arrival > CAMERA_STALL_REGARDLESS
        || (since_last_arrival > CAMERA_STALL && frames_in_flight == 0)
}

/// The track stage: passes frames to the tracker (which closes tracks on the
/// frames' own clock and gives each passage out as soon as its track closes),
/// closes the tracks of a camera that has stalled, and counts the re-reads of
/// parked vehicles that it suppressed.
async fn run_track(
    mut tracker: Tracker,
    mut input: mpsc::Receiver<ReadFrame>,
    out: mpsc::Sender<Passage>,
    time: TimeSource,
    beat: Arc<Beat>,
    metrics: Arc<Metrics>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_arrival: HashMap<Arc<str>, Duration> = HashMap::new();
    let mut arrived: HashMap<Arc<str>, u64> = HashMap::new();
    loop {
        let passages = tokio::select! {
            msg = input.recv() => match msg {
                Some(frame) => {
                    last_arrival.insert(frame.frame.camera.clone(), time.clocks.monotonic());
                    *arrived.entry(frame.frame.camera.clone()).or_default() += 1;
                    beat.handle(|| tracker.push(&frame))
                }
                None => break,
            },
            _ = tick.tick() => {
                let now = time.clocks.monotonic();
                let in_flight = |cam: &str| {
                    let c = metrics.camera(cam);
                    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
                    load(&c.frames_captured)
                        .saturating_sub(load(&c.frames_dropped))
                        .saturating_sub(arrived.get(cam).copied().unwrap_or(0))
                };
                let stalled: Vec<Arc<str>> = last_arrival
                    .iter()
                    .filter(|(cam, &at)| camera_stalled(now.saturating_sub(at), in_flight(cam)))
                    .map(|(cam, _)| cam.clone())
                    .collect();
                stalled.iter().flat_map(|cam| {
                    last_arrival.remove(cam);
                    tracker.close_camera(cam)
                }).collect()
            },
        };
        metrics.duplicates_suppressed.fetch_add(
            tracker.take_suppressed(),
            std::sync::atomic::Ordering::Relaxed,
        );
        for p in passages {
            if out.send(p).await.is_err() {
                return;
            }
        }
    }
    let last = tracker.flush();
    metrics.duplicates_suppressed.fetch_add(
        tracker.take_suppressed(),
        std::sync::atomic::Ordering::Relaxed,
    );
    for p in last {
        if out.send(p).await.is_err() {
            return;
        }
    }
}

/// The policy stage: counts and drops non-hits; passes violations on.
async fn run_policy(
    policy: Policy,
    mut input: mpsc::Receiver<Passage>,
    out: mpsc::Sender<Violation>,
    metrics: Arc<Metrics>,
    beat: Arc<Beat>,
) {
    while let Some(passage) = input.recv().await {
        inc(&metrics.passages);
        inc(&metrics.camera(&passage.camera).passages);
        let outcome = beat.handle(|| policy.decide(&passage));
        // The reason only: never the plate of a passage that is not acted on.
        tracing::debug!(camera = %passage.camera, direction = passage.direction.as_str(), confidence = passage.confidence, outcome = outcome.reason(), "passage judged");
        match outcome {
            Outcome::Violation(decision) => {
                if out.send(Violation { passage, decision }).await.is_err() {
                    return;
                }
            }
            Outcome::LowConfidence => inc(&metrics.low_confidence_passages),
            other => {
                inc(&metrics.non_hits);
                match other {
                    Outcome::OutsideHours => inc(&metrics.outside_hours),
                    Outcome::NotEntering => inc(&metrics.not_entering),
                    Outcome::Foreign => inc(&metrics.foreign_plates),
                    Outcome::Exempt => inc(&metrics.exempt),
                    Outcome::NotYetBanned => inc(&metrics.not_yet_banned),
                    Outcome::ListsUnavailable => inc(&metrics.lists_unavailable),
                    _ => {}
                }
            }
        }
        // `passage` (text, crop and frame) is dropped here for every non-hit.
    }
}

/// The store stage: commits each violation, retrying (and holding it in
/// memory) while the database refuses, so that a full disk loses nothing
/// that is still in this process.
fn run_store(
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
                Err(e @ crate::store::StoreError::BudgetFull { .. }) => {
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
                        plate = %crate::policy::mask_plate(&v.passage.text),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_with_frames_still_on_their_way_has_not_stalled() {
        let s = Duration::from_secs;
        assert!(!camera_stalled(s(29), 0), "recently heard from");
        assert!(camera_stalled(s(31), 0), "silent and drained");
        // An emulated controller: a minute a frame, the next one in detection.
        assert!(!camera_stalled(s(60), 1));
        assert!(!camera_stalled(s(299), 3));
        assert!(
            camera_stalled(s(301), 3),
            "a lost frame holds nothing forever"
        );
    }
}
