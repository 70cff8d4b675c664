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

use crate::sync::LockUnpoisoned;
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
use crate::detect::{self, PlateDetector};
use crate::keys::EvidenceSigner;
use crate::message::{Passage, ReadFrame, Violation};
use crate::metrics::Metrics;
use crate::models::retina::RetinaPlateDetector;
use crate::models::ModelSet;
use crate::policy::Policy;
use crate::read::{self, PlateReader};
use crate::status::{self, DeviceFacts};
use crate::store::{RecordContext, Store, StoreLimits, StoreOptions};
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
pub fn policy_from_config(
    cfg: &Config,
    clocks: Arc<dyn crate::clock::Clocks>,
) -> Result<Policy, PipelineError> {
    let policy = Policy::from_config(cfg, clocks)?;
    let st = policy.lists().status_now();
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

/// What the status page may know of the lists: their status, nothing more.
fn lists_probe(lists: &Arc<crate::policy::Lists>) -> status::ListsProbe {
    let lists = lists.clone();
    Arc::new(move || lists.status_now())
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
    let opts = StoreOptions {
        limits: StoreLimits {
            max_bytes: cfg.store.max_bytes,
            policy: cfg.store.on_budget_full,
        },
        clocks: parts.time.clocks.clone(),
    };
    let (mut store, moved) = Store::open_checked(&cfg.store.path, opts)?;
    if let Some(m) = moved {
        tracing::error!(moved_to = %m.to.display(), reason = %m.reason, "violation store was damaged: moved aside, recording into a fresh one");
        *metrics.store_moved_aside.lock_unpoisoned() =
            Some(format!("{}: {}", m.to.display(), m.reason));
    }
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
            capture::stage::run(id, open, retry, q, t, m, s)
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
            detect::stage::run(detector, queue, detected_tx, l, m, s)
        })?;
    }
    {
        let (m, rc) = (metrics.clone(), cfg.read.clone());
        let reader = Box::new(BeatingReader {
            inner: parts.reader,
            beat: progress.beat("read"),
        });
        spawn_thread("read", move || {
            read::stage::run(reader, rc, detected_rx, read_tx, m)
        })?;
    }
    let in_flight: crate::track::stage::FramesInFlight = {
        let m = metrics.clone();
        Box::new(move |cam: &str| {
            let c = m.camera(cam);
            let load =
                |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
            load(&c.frames_captured).saturating_sub(load(&c.frames_dropped))
        })
    };
    tokio::spawn(crate::track::stage::run(
        Tracker::with_cameras(&cfg.track, &cfg.cameras)
            .with_sure_confidence(cfg.policy.min_confidence),
        read_rx,
        passage_tx,
        parts.time.clone(),
        progress.beat("track"),
        metrics.clone(),
        in_flight,
    ));
    let lists = parts.policy.lists().clone();
    tokio::spawn(crate::policy::stage::run_list_reload(
        lists.clone(),
        Duration::from_secs(cfg.policy.reload_check_s),
        parts.time.clocks.clone(),
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
            crate::policy::fetch::MAX_BUNDLE_BYTES,
            lists.clone(),
        )
        .map_err(|e| PipelineError::ListFetch(e.to_string()))?;
        tokio::spawn(crate::policy::fetch::run_list_fetch(
            fetcher,
            Duration::from_secs(cfg.policy.fetch_interval_s.max(1)),
            stop_services.clone(),
        ));
    }
    tokio::spawn(crate::policy::stage::run(
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
            crate::store::stage::run(&mut store, &contexts, violation_rx, &m, &w, &beat);
            let _ = done_tx.send(());
        })?;
        tokio::spawn(async move {
            let _ = done_rx.await;
        })
    };
    tokio::spawn(crate::store::stage::run_retention(
        cfg.store.path.clone(),
        crate::store::stage::RetentionParams {
            acked_evidence: chrono::Duration::hours(
                cfg.store.acked_evidence_retention_h.min(1_000_000) as i64,
            ),
            max_age: chrono::Duration::days(cfg.store.max_retention_days.min(100_000) as i64),
            every: crate::store::stage::RETENTION_EVERY,
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
        upload::UploaderParams {
            clocks: parts.time.clocks.clone(),
            ..upload::UploaderParams::from_config(&cfg.upload)
        },
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
    ) -> Result<Vec<crate::read::Look>, crate::read::ReadError> {
        let inner = &mut self.inner;
        self.beat.handle(|| inner.read(crops))
    }
}

async fn log_uploader_end(
    run: impl std::future::Future<Output = Result<(), crate::upload::UploadError>>,
) {
    if let Err(e) = run.await {
        tracing::error!(error = %e, "uploader stopped; violations stay in the store until restart");
    }
}
