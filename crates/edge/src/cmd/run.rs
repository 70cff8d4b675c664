//! `anpr-edge run --config FILE`: the daemon.
//!
//! Under systemd (`Type=notify`) it says READY only once the models, the
//! store, the uploader and every camera are up, then pings the watchdog while
//! the pipeline makes progress (see `anpr_edge::watchdog`).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use anpr_edge::clock::TimeSource;
use anpr_edge::config::Config;
use anpr_edge::metrics::{CameraState, Metrics};
use anpr_edge::pipeline;
use anpr_edge::upload::HttpsBackend;
use anpr_edge::watchdog::{self, Event, Notifier, SystemdNotifier};

/// How often the supervisor looks when systemd asked for no watchdog: stuck
/// stages are still logged.
const SUPERVISE_WITHOUT_WATCHDOG: Duration = Duration::from_secs(10);

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    super::init_logging(&cfg.log.level, cfg.log.json);
    let notifier: Arc<dyn Notifier> = Arc::new(SystemdNotifier);
    // systemd pings are due every WATCHDOG_USEC; ping twice as often.
    let ping_every = sd_notify::watchdog_enabled()
        .map(|d| d / 2)
        .unwrap_or(SUPERVISE_WITHOUT_WATCHDOG)
        .max(Duration::from_millis(10));
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        notifier.notify(Event::Status("loading models".into()));
        let inference = pipeline::inference_from_config(&cfg).context("cannot load the models")?;
        let backend = Arc::new(HttpsBackend::new(&cfg.upload).context("cannot set up the upload link")?);
        let time = TimeSource::real();
        let policy = pipeline::policy_from_config(&cfg, time.clocks.clone())
            .context("cannot load the zone lists")?;
        let parts = pipeline::Parts {
            detector: fault::wrap_detector(inference.detector),
            reader: inference.reader,
            backend,
            cameras: pipeline::cameras_from_config(&cfg.cameras, true),
            policy,
            time,
            facts: inference.facts,
        };
        // Opens the store and starts the uploader and the status endpoint.
        let running = pipeline::start(&cfg, parts).await?;
        let camera_ids: Vec<&str> = cfg.cameras.iter().map(|c| c.id.as_str()).collect();
        tokio::select! {
            _ = wait_for_cameras(&running.metrics, &camera_ids, notifier.as_ref()) => {}
            _ = wait_for_signal() => {
                tracing::info!("stopped while waiting for the cameras");
                notifier.notify(Event::Stopping);
                running.shutdown().await;
                return Ok(ExitCode::SUCCESS);
            }
        }
        notifier.notify(Event::Ready);
        notifier.notify(Event::Status("running".into()));
        let supervisor = tokio::spawn(watchdog::run_supervisor(
            running.progress.clone(),
            Duration::from_secs(cfg.pipeline.stuck_after_s),
            ping_every,
            notifier.clone(),
            running.stop_services.clone(),
        ));
        tracing::info!(status = %running.status_addr, cameras = cfg.cameras.len(), "anpr-edge running");
        wait_for_signal().await;
        tracing::info!("stopping: finishing in-flight passages and committing");
        notifier.notify(Event::Stopping);
        let graceful = running.shutdown();
        tokio::select! {
            _ = graceful => {}
            _ = wait_for_signal() => tracing::warn!("second signal: exiting at once"),
            _ = tokio::time::sleep(std::time::Duration::from_secs(20)) => tracing::warn!("shutdown timed out: exiting"),
        }
        supervisor.abort();
        Ok(ExitCode::SUCCESS)
    })
}

/// Returns once every configured camera has been opened (a replay that has
/// already played out counts). Until then the service status names the
/// cameras still missing and why; systemd's start timeout decides how long
/// that may take.
async fn wait_for_cameras(metrics: &Metrics, ids: &[&str], notifier: &dyn Notifier) {
    let mut said = String::new();
    loop {
        let snap = metrics.snapshot();
        let missing: Vec<String> = ids
            .iter()
            .filter_map(|id| {
                let state = snap.cameras.iter().find(|c| c.id == *id).map(|c| &c.state);
                match state {
                    Some(CameraState::Streaming) | Some(CameraState::Finished) => None,
                    Some(CameraState::Absent(why)) => Some(format!("{id} ({why})")),
                    Some(CameraState::Starting) | None => Some(format!("{id} (opening)")),
                }
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        let text = format!("waiting for cameras: {}", missing.join(", "));
        if text != said {
            notifier.notify(Event::Status(text.clone()));
            said = text;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_for_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Test-only fault switch for `tests/watchdog.rs`. Compiled into debug builds
/// only: release builds (and so every package) ignore the variable.
/// `ANPR_EDGE_FAULT=hang-detect` makes the detector hang on its first frame.
mod fault {
    use anpr_edge::detect::PlateDetector;

    #[cfg(debug_assertions)]
    pub fn wrap_detector(inner: Box<dyn PlateDetector>) -> Box<dyn PlateDetector> {
        if std::env::var("ANPR_EDGE_FAULT").as_deref() == Ok("hang-detect") {
            tracing::warn!("test fault ANPR_EDGE_FAULT=hang-detect: detect will hang");
            Box::new(Hang)
        } else {
            inner
        }
    }

    #[cfg(not(debug_assertions))]
    pub fn wrap_detector(inner: Box<dyn PlateDetector>) -> Box<dyn PlateDetector> {
        inner
    }

    #[cfg(debug_assertions)]
    struct Hang;

    #[cfg(debug_assertions)]
    impl PlateDetector for Hang {
        fn detect(
            &mut self,
            _: &image::RgbImage,
        ) -> Result<Vec<anpr_edge::message::Detection>, anpr_edge::detect::DetectError> {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        }
    }
}
