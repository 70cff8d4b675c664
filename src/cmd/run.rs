//! `anpr-edge run --config FILE`: the daemon.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use anpr_edge::clock::TimeSource;
use anpr_edge::config::Config;
use anpr_edge::pipeline;
use anpr_edge::upload::HttpsBackend;

pub fn run(config: &Path) -> anyhow::Result<ExitCode> {
    let cfg = Config::load(config)?;
    super::init_logging(&cfg.log.level, cfg.log.json);
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let inference = pipeline::inference_from_config(&cfg).context("cannot load the models")?;
        let backend = Arc::new(HttpsBackend::new(&cfg.upload).context("cannot set up the upload link")?);
        let policy = pipeline::policy_from_config(&cfg).context("cannot load the zone lists")?;
        let parts = pipeline::Parts {
            detector: inference.detector,
            reader: inference.reader,
            backend,
            cameras: pipeline::cameras_from_config(&cfg.cameras, true),
            policy,
            time: TimeSource::real(),
            facts: inference.facts,
        };
        let running = pipeline::start(&cfg, parts).await?;
        tracing::info!(status = %running.status_addr, cameras = cfg.cameras.len(), "anpr-edge running");
        wait_for_signal().await;
        tracing::info!("stopping: finishing in-flight passages and committing");
        let graceful = running.shutdown();
        tokio::select! {
            _ = graceful => {}
            _ = wait_for_signal() => tracing::warn!("second signal: exiting at once"),
            _ = tokio::time::sleep(std::time::Duration::from_secs(20)) => tracing::warn!("shutdown timed out: exiting"),
        }
        Ok(ExitCode::SUCCESS)
    })
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
