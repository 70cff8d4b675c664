//! Status: the technician's HTTP endpoint, on 127.0.0.1 by default.
//!
//! Serves `/healthz` and `/api/v1/status` (counters as JSON). It reads only the
//! counters in [`Metrics`] and fixed device facts: it never sees plates, frames
//! or the store, so no answer can name a vehicle.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::clock::TimeSource;
use crate::metrics::{CameraState, Metrics, MetricsSnapshot};

#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot listen on {addr} for the status endpoint: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
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
pub type ListsProbe = Arc<dyn Fn() -> crate::policy::lists::ListsStatus + Send + Sync>;

#[derive(Clone)]
struct AppState {
    lists: Option<ListsProbe>,
    facts: DeviceFacts,
    metrics: Arc<Metrics>,
    time: TimeSource,
    started: std::time::Duration,
}

#[derive(Serialize)]
struct StatusBody {
    #[serde(flatten)]
    facts: DeviceFacts,
    uptime_s: u64,
    clock: crate::clock::SyncState,
    healthy: bool,
    /// Zone, each list's version, entries and age, the alarm and the last error.
    #[serde(skip_serializing_if = "Option::is_none")]
    lists: Option<crate::policy::lists::ListsStatus>,
    #[serde(flatten)]
    counters: MetricsSnapshot,
}

fn healthy(s: &MetricsSnapshot) -> bool {
    // Healthy while at least one camera delivers (or has finished a replay);
    // a controller with every camera absent needs a technician.
    s.cameras
        .iter()
        .any(|c| matches!(c.state, CameraState::Streaming | CameraState::Finished))
}

async fn healthz(State(st): State<AppState>) -> impl IntoResponse {
    if healthy(&st.metrics.snapshot()) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "no camera is delivering frames\n",
        )
    }
}

async fn status(State(st): State<AppState>) -> impl IntoResponse {
    let counters = st.metrics.snapshot();
    Json(StatusBody {
        facts: st.facts.clone(),
        uptime_s: st
            .time
            .clocks
            .monotonic()
            .saturating_sub(st.started)
            .as_secs(),
        clock: st.time.sync.state(),
        healthy: healthy(&counters),
        lists: st.lists.as_ref().map(|probe| probe()),
        counters,
    })
}

pub fn router(
    facts: DeviceFacts,
    metrics: Arc<Metrics>,
    time: TimeSource,
    lists: Option<ListsProbe>,
) -> Router {
    let started = time.clocks.monotonic();
    Router::new()
        .route("/healthz", get(healthz))
        .route("/api/v1/status", get(status))
        .with_state(AppState {
            lists,
            facts,
            metrics,
            time,
            started,
        })
}

/// Binds the endpoint and serves it until `stop`; returns the bound address
/// (useful with port 0) and the serving task.
pub async fn serve(
    listen: &str,
    facts: DeviceFacts,
    metrics: Arc<Metrics>,
    time: TimeSource,
    lists: Option<ListsProbe>,
    stop: CancellationToken,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), StatusError> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|source| StatusError::Bind {
            addr: listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| StatusError::Bind {
        addr: listen.to_string(),
        source,
    })?;
    let app = router(facts, metrics, time, lists);
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "status endpoint stopped");
        }
    });
    Ok((addr, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::inc;

    fn facts() -> DeviceFacts {
        DeviceFacts {
            device_id: "dev-1".into(),
            software_version: "0.1.0".into(),
            model_versions: "m".into(),
            runtime_version: "r".into(),
        }
    }

    async fn get_text(addr: SocketAddr, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("write");
        let mut buf = String::new();
        s.read_to_string(&mut buf).await.expect("read");
        let code = buf
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = buf
            .split_once("\r\n\r\n")
            .map(|x| x.1.to_string())
            .unwrap_or_default();
        (code, body)
    }

    #[tokio::test]
    async fn health_follows_camera_state_and_status_shows_counters() {
        let m = Metrics::new();
        let stop = CancellationToken::new();
        let (addr, task) = serve(
            "127.0.0.1:0",
            facts(),
            m.clone(),
            TimeSource::real(),
            None,
            stop.clone(),
        )
        .await
        .expect("bind");
        *m.camera("north").state.lock().expect("lock") =
            CameraState::Absent("/dev/video0: gone".into());
        assert_eq!(get_text(addr, "/healthz").await.0, 503);
        *m.camera("north").state.lock().expect("lock") = CameraState::Streaming;
        inc(&m.passages);
        assert_eq!(get_text(addr, "/healthz").await.0, 200);
        let (code, body) = get_text(addr, "/api/v1/status").await;
        assert_eq!(code, 200);
        let v: serde_json::Value = serde_json::from_str(body.trim()).expect("json");
        assert_eq!(v["device_id"], "dev-1");
        assert_eq!(v["passages"], 1);
        assert_eq!(v["cameras"][0]["id"], "north");
        assert_eq!(v["healthy"], true);
        stop.cancel();
        task.await.expect("stops");
    }

    #[tokio::test]
    async fn busy_port_is_a_clear_error() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr").to_string();
        let err = serve(
            &addr,
            facts(),
            Metrics::new(),
            TimeSource::real(),
            None,
            CancellationToken::new(),
        )
        .await
        .expect_err("port taken");
        assert!(err.to_string().contains(&addr));
    }
}
