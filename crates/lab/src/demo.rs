//! The demo harness: a generated street scene through the real pipeline, to
//! the reference receiver over real TLS.
//!
//! Used by `anpr-edge demo` and by the integration tests, so that what the
//! demo shows is exactly what the tests check. It writes only into the folder
//! it is given.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::synth::Scenario;
use anpr_edge::clock::TimeSource;
use anpr_edge::config::Config;
use anpr_edge::metrics::{Metrics, MetricsSnapshot};
use anpr_edge::pipeline;
use anpr_edge::upload::HttpsBackend;
use anpr_receiver::{self as receiver, ReceivedRecord, ReceiverHandle};
use anpr_wire::build as bundle;
use anpr_wire::bundle::{BundleMeta, ListKind};
use anpr_wire::hash::HmacKey;

const DEMO_ZONE: &str = "demo-ze";
/// The demo controller's device id.
const DEMO_DEVICE: &str = "demo-0001";
/// The key id of the demo lists' HMAC key.
pub const DEMO_KEY_ID: &str = "demo-k1";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] anpr_edge::config::ConfigError),
    #[error(transparent)]
    Receiver(#[from] anpr_receiver::ReceiverError),
    #[error(transparent)]
    Upload(#[from] anpr_edge::upload::UploadError),
    #[error(transparent)]
    Pipeline(#[from] anpr_edge::pipeline::PipelineError),
    #[error(transparent)]
    Keys(anpr_wire::hash::KeyError),
    #[error(transparent)]
    Bundle(#[from] anpr_wire::build::BuildError),
    #[error(transparent)]
    DeviceKeys(#[from] anpr_edge::keys::KeyError),
    #[error("the store stage ended abnormally: {0}")]
    Store(String),
    #[error("cannot hash the status page password: {0}")]
    Password(String),
}

/// Called with the counters and the number of frames in the scene.
pub type ProgressFn = Box<dyn Fn(&MetricsSnapshot, usize) + Send + Sync>;

/// How to run the scene.
pub struct DemoOptions {
    pub dir: PathBuf,
    pub models_dir: PathBuf,
    pub scenario: Scenario,
    /// Upload somewhere else than the harness's own receiver (e.g. a closed
    /// port, to simulate a backend that is down). The receiver still starts.
    pub upload_port_override: Option<u16>,
    /// How long to wait for uploads after the last violation is committed.
    pub upload_grace: Duration,
    /// Called every two seconds with the counters, for progress output.
    pub progress: Option<ProgressFn>,
}

/// What came of it.
pub struct DemoOutcome {
    pub counters: MetricsSnapshot,
    pub frames: usize,
    /// Plates of the scene's vehicles, in vehicle order.
    pub scene_plates: Vec<String>,
    /// Plates on the hit list without an exemption: the violations to expect.
    pub expected_violations: Vec<String>,
    pub exempted: Vec<String>,
    pub received: Vec<ReceivedRecord>,
    pub receiver: ReceiverHandle,
    pub receiver_addr: SocketAddr,
    pub store_path: PathBuf,
    pub config_path: PathBuf,
    pub elapsed: Duration,
    /// The status endpoint's `/api/v1/status` answer just before shutdown.
    pub status_json: String,
    /// Every text answer of the status page just before shutdown (pages,
    /// JSON API, metrics), by path, for the privacy checks.
    pub status_answers: Vec<(String, String)>,
    /// The HMAC key the scene's lists were hashed with (key id [`DEMO_KEY_ID`]).
    pub hmac_key_path: PathBuf,
}

fn write(path: &Path, text: &str) -> Result<(), DemoError> {
    std::fs::write(path, text).map_err(|source| DemoError::Write {
        path: path.to_owned(),
        source,
    })
}

/// Renders the scene, starts the receiver and the pipeline, and waits until
/// every frame is processed, every violation committed and (within the grace
/// time) uploaded. The receiver is left running in the outcome.
pub async fn run(opts: DemoOptions) -> Result<DemoOutcome, DemoError> {
    let started = Instant::now();
    let dir = &opts.dir;
    let frames_dir = dir.join("frames");
    let frames = crate::synth::write_frames(&opts.scenario, &frames_dir).map_err(|source| {
        DemoError::Write {
            path: frames_dir.clone(),
            source,
        }
    })?;

    // Every other vehicle is banned, and the first banned one holds an
    // exemption, so each run shows all three outcomes.
    let scene_plates: Vec<String> = opts
        .scenario
        .vehicles
        .iter()
        .map(|v| v.plate.clone())
        .collect();
    let banned: Vec<String> = scene_plates.iter().step_by(2).cloned().collect();
    let exempted: Vec<String> = banned.iter().take(1).cloned().collect();
    let expected_violations: Vec<String> = banned.iter().skip(1).cloned().collect();
    let mut hits = String::from("plate,entry_id,banned_from\n");
    for (i, p) in banned.iter().enumerate() {
        hits.push_str(&format!("{p},hit-{i},2025-01-01\n"));
    }
    let now = chrono::Utc::now();
    let (from, until) = (
        now - chrono::Duration::days(1),
        now + chrono::Duration::days(1),
    );
    let ex: String = exempted
        .iter()
        .map(|p| {
            format!(
                "{p},exemption-0,{},{}\n",
                from.to_rfc3339(),
                until.to_rfc3339()
            )
        })
        .collect();
    // A fresh signing key and HMAC key, as a backend would hold them; the
    // device side gets the public key and the HMAC key only.
    let keys_dir = dir.join("list-keys");
    let keys = bundle::generate_keys(&keys_dir).map_err(|source| DemoError::Write {
        path: keys_dir.clone(),
        source,
    })?;
    let signing = bundle::load_signing_key(&keys.signing_key).map_err(DemoError::Keys)?;
    let hmac = HmacKey::load(DEMO_KEY_ID, &keys.hmac_key).map_err(DemoError::Keys)?;
    let meta = BundleMeta {
        zone: DEMO_ZONE.into(),
        version: 1,
        created_at: now,
        key_id: DEMO_KEY_ID.into(),
    };
    for (kind, csv, file) in [
        (ListKind::Hit, &hits, "hit-list.bundle"),
        (ListKind::Exemption, &ex, "exemptions.bundle"),
    ] {
        let bytes = bundle::build_from_csv(kind, &meta, csv, &hmac, &signing)?;
        let path = dir.join(file);
        std::fs::write(&path, bytes).map_err(|source| DemoError::Write { path, source })?;
    }

    // The device provisioned as in the field; the receiver's CA issues its
    // client certificate and the receiver is given its evidence public key.
    let device = anpr_edge::keys::provision(&anpr_edge::keys::ProvisionOptions {
        state_dir: dir.join("device"),
        config: None,
        device_id: DEMO_DEVICE.into(),
        force: false,
    })?;
    let pki = receiver::generate_test_pki_for_client(&dir.join("pki"), Some(&device.tls_key))?;
    let receiver = receiver::start_with(
        "127.0.0.1:0".parse().expect("literal address"),
        &pki,
        receiver::ReceiverOptions {
            require_client_cert: true,
        },
    )
    .await?;
    let device_key = anpr_wire::chain::verifying_key_from_base64(&device.evidence_public_base64)
        .map_err(|e| DemoError::Store(e.to_string()))?;
    receiver.trust_device(DEMO_DEVICE, device_key);
    let receiver_addr = receiver.addr;
    let port = opts.upload_port_override.unwrap_or(receiver_addr.port());

    // A fresh technician password for this run only: the harness reads the
    // status page with it at the end.
    let status_password = {
        use rand::RngCore;
        let mut raw = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        hex::encode(raw)
    };
    let password_hash = anpr_edge::status::auth::hash_password(&status_password)
        .map_err(|e| DemoError::Password(e.to_string()))?;
    let config_path = dir.join("config.toml");
    write(
        &config_path,
        &demo_config(
            dir,
            &opts.models_dir,
            &pki,
            port,
            opts.scenario.fps,
            &keys.public_key_base64,
            &password_hash,
        ),
    )?;
    let cfg = Config::load(&config_path)?;

    let inference = pipeline::inference_from_config(&cfg)?;
    let parts = pipeline::Parts {
        detector: inference.detector,
        reader: inference.reader,
        backend: Arc::new(HttpsBackend::new(&cfg.upload)?),
        cameras: pipeline::cameras_from_config(&cfg.cameras, false),
        policy: pipeline::policy_from_config(&cfg, TimeSource::real().clocks)?,
        time: TimeSource::real(),
        facts: inference.facts,
    };
    let running = pipeline::start(&cfg, parts).await?;
    let metrics: Arc<Metrics> = running.metrics.clone();
    let progress = opts.progress.map(|report| {
        let metrics = metrics.clone();
        let total = frames.len();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            every.tick().await;
            loop {
                every.tick().await;
                report(&metrics.snapshot(), total);
            }
        })
    });

    running
        .recorded
        .await
        .map_err(|e| DemoError::Store(e.to_string()))?;
    let deadline = Instant::now() + opts.upload_grace;
    while metrics.uploads_acked.load(Ordering::Relaxed)
        < metrics.violations_recorded.load(Ordering::Relaxed)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What a technician would see at the end, for the privacy checks.
    let client = reqwest::Client::new();
    let mut status_answers = Vec::new();
    for path in [
        "/api/v1/status",
        "/",
        "/cameras/demo-cam",
        "/api/v1/cameras",
        "/api/v1/cameras/demo-cam",
        "/api/v1/alarms",
        "/metrics",
    ] {
        let answer = match client
            .get(format!("http://{}{path}", running.status_addr))
            .basic_auth("technician", Some(&status_password))
            .send()
            .await
        {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(e) => format!("status endpoint unreachable: {e}"),
        };
        status_answers.push((path.to_string(), answer));
    }
    let status_json = status_answers[0].1.clone();
    running.stop.cancel();
    running.stop_services.cancel();
    let _ = running.uploader.await;
    let _ = running.status_task.await;
    if let Some(p) = progress {
        p.abort();
    }

    Ok(DemoOutcome {
        counters: metrics.snapshot(),
        frames: frames.len(),
        scene_plates,
        expected_violations,
        exempted,
        received: receiver.received(),
        receiver,
        receiver_addr,
        store_path: cfg.store.path.clone(),
        config_path,
        elapsed: started.elapsed(),
        status_json,
        status_answers,
        hmac_key_path: keys.hmac_key.clone(),
    })
}

fn demo_config(
    dir: &Path,
    models: &Path,
    pki: &receiver::TestPki,
    port: u16,
    fps: f32,
    public_key: &str,
    password_hash: &str,
) -> String {
    format!(
        r#"# Written by the anpr-edge demo harness.
[device]
id = "{device_id}"
location = "demo street, generated scene"

[runtime]
models_dir = "{models}"

[[camera]]
id = "demo-cam"
source = "replay"
path = "{frames}"
fps = {fps}
facing = "into the zone"

[policy]
hit_list = "{dir}/hit-list.bundle"
exemptions = "{dir}/exemptions.bundle"
public_key = "{public_key}"

[policy.hmac_keys]
{key_id} = "{dir}/list-keys/hmac.key"

[zone]
id = "{zone}"

[store]
path = "{dir}/violations.sqlite"
signing_key = "{dir}/device/evidence.key"

[upload]
url = "https://localhost:{port}"
ca_cert = "{ca}"
client_cert = "{client_cert}"
client_key = "{dir}/device/tls-client.key"
backoff_initial_ms = 200
backoff_max_ms = 2000

[status]
listen = "127.0.0.1:0"
password_hash = "{password_hash}"

[log]
level = "warn"
"#,
        models = models.display(),
        frames = dir.join("frames").display(),
        dir = dir.display(),
        ca = pki.ca_cert.display(),
        client_cert = pki.client_cert.display(),
        device_id = DEMO_DEVICE,
        key_id = DEMO_KEY_ID,
        zone = DEMO_ZONE,
    )
}
