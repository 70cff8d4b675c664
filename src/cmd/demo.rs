//! `anpr-edge demo`: the whole pipeline on this machine, no hardware.
//!
//! Renders a street scene with Dutch plates into frames, starts the reference
//! receiver over TLS with a CA made on the spot, puts some of the scene's
//! plates on the hit list (one of them exempted), runs the real pipeline with
//! the real models on a replay camera, and prints what was uploaded.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use anpr_edge::clock::TimeSource;
use anpr_edge::config::Config;
use anpr_edge::pipeline;
use anpr_edge::receiver;
use anpr_edge::synth::Scenario;
use anpr_edge::upload::HttpsBackend;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Keep frames, config, lists, database and PKI here (default: a temporary folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// A smaller, quicker scene (the one the tests use).
    #[arg(long)]
    pub small: bool,
    /// Folder with the models and runtime that `make models` fetched.
    #[arg(long, default_value = "models/cache")]
    pub models_dir: PathBuf,
}

pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("warn", false);
    let tmp;
    let dir = match &args.out {
        Some(d) => {
            std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().context("cannot create a temporary folder")?;
            tmp.path().to_owned()
        }
    };
    let models_dir = std::fs::canonicalize(&args.models_dir)
        .with_context(|| format!("models folder {} is missing: run `make models`", args.models_dir.display()))?;
    let scenario = if args.small { Scenario::small_test() } else { Scenario::demo() };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(demo(dir, models_dir, scenario))
}

async fn demo(dir: PathBuf, models_dir: PathBuf, scenario: Scenario) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let frames_dir = dir.join("frames");
    println!("rendering {} frames of a street scene into {} ...", scenario.frames, frames_dir.display());
    let frames = anpr_edge::synth::write_frames(&scenario, &frames_dir)
        .with_context(|| format!("cannot write frames into {}", frames_dir.display()))?;

    // The zone's lists: every other vehicle is banned, and the first banned one
    // holds an exemption, so the demo shows all three outcomes.
    let plates: Vec<String> = scenario.vehicles.iter().map(|v| v.plate.clone()).collect();
    let banned: Vec<&String> = plates.iter().step_by(2).collect();
    let exempt: Vec<&String> = banned.iter().take(1).copied().collect();
    let expected: Vec<&String> = banned.iter().skip(1).copied().collect();
    let hit_csv: String = std::iter::once("plate,entry_id".to_string())
        .chain(banned.iter().enumerate().map(|(i, p)| format!("{p},hit-{i}")))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(dir.join("hit-list.csv"), hit_csv + "\n").context("cannot write the hit list")?;
    let ex_csv: String = exempt.iter().map(|p| format!("{p},exemption-0\n")).collect();
    std::fs::write(dir.join("exemptions.csv"), ex_csv).context("cannot write the exemptions")?;

    let pki = receiver::generate_test_pki(&dir.join("pki")).context("cannot make the demo PKI")?;
    let receiver = receiver::start("127.0.0.1:0".parse()?, &pki).await.context("cannot start the receiver")?;
    println!("reference receiver listening on https://{} (CA {})", receiver.addr, pki.ca_cert.display());

    let config_path = dir.join("config.toml");
    std::fs::write(&config_path, demo_config(&dir, &models_dir, &pki.ca_cert, receiver.addr, scenario.fps))
        .context("cannot write the demo config")?;
    let cfg = Config::load(&config_path)?;

    let (detector, reader, facts) = pipeline::inference_from_config(&cfg).context("cannot load the models")?;
    println!("models: {}", facts.model_versions);
    let parts = pipeline::Parts {
        detector,
        reader,
        backend: Arc::new(HttpsBackend::new(&cfg.upload)?),
        cameras: pipeline::cameras_from_config(&cfg.cameras, false),
        policy: pipeline::policy_from_config(&cfg)?,
        time: TimeSource::real(),
        facts,
    };
    let running = pipeline::start(&cfg, parts).await?;
    println!("status endpoint on http://{}/api/v1/status", running.status_addr);

    let metrics = running.metrics.clone();
    let progress = tokio::spawn({
        let metrics = metrics.clone();
        let total = frames.len() as u64;
        async move {
            let mut every = tokio::time::interval(Duration::from_secs(2));
            every.tick().await;
            loop {
                every.tick().await;
                let s = metrics.snapshot();
                let done: u64 = s.cameras.iter().map(|c| c.frames_processed).sum();
                println!(
                    "  frames {done}/{total}  plates read {}  passages {}  violations {}  uploaded {}",
                    s.plates_read, s.passages, s.violations_recorded, s.uploads_acked
                );
            }
        }
    });

    let mut recorded = running.recorded;
    (&mut recorded).await.context("store stage failed")?;
    // Every violation is committed; give the uploader time to deliver them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.uploads_acked.load(Ordering::Relaxed) < metrics.violations_recorded.load(Ordering::Relaxed)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    running.stop.cancel();
    running.stop_services.cancel();
    let _ = running.uploader.await;
    let _ = running.status_task.await;
    progress.abort();

    let s = metrics.snapshot();
    let received = receiver.received();
    let frames_done: u64 = s.cameras.iter().map(|c| c.frames_processed).sum();
    println!();
    println!("summary ({:.1} s)", started.elapsed().as_secs_f32());
    println!("  frames processed     {frames_done} of {}", frames.len());
    println!("  plates detected      {}", s.plates_detected);
    println!("  plates read          {} ({} rejected as unsure)", s.plates_read, s.reads_rejected);
    println!("  passages             {} ({} non-hits counted and dropped, {} too unsure)", s.passages, s.non_hits, s.low_confidence_passages);
    println!("  violations recorded  {}", s.violations_recorded);
    println!("  violations uploaded  {} (receiver holds {})", s.uploads_acked, received.len());
    for r in &received {
        println!(
            "    #{} {} camera {} at {} confidence {:.2} ({} reads)",
            r.metadata.seq, r.metadata.plate, r.metadata.camera, r.metadata.captured_at, r.metadata.plate_confidence, r.metadata.reads
        );
    }
    receiver.shutdown().await;

    let got: std::collections::BTreeSet<&str> = received.iter().map(|r| r.metadata.plate.as_str()).collect();
    let want: std::collections::BTreeSet<&str> = expected.iter().map(|p| p.as_str()).collect();
    if got != want {
        bail!("the receiver holds plates {got:?}, the scene's banned, unexempted plates are {want:?}");
    }
    println!("OK: every banned, unexempted vehicle was recorded and uploaded once; nothing else left memory.");
    Ok(ExitCode::SUCCESS)
}

fn demo_config(dir: &std::path::Path, models: &std::path::Path, ca: &std::path::Path, receiver: std::net::SocketAddr, fps: f32) -> String {
    format!(
        r#"# Written by `anpr-edge demo`.
[device]
id = "demo-0001"
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
hit_list = "{dir}/hit-list.csv"
exemptions = "{dir}/exemptions.csv"

[store]
path = "{dir}/violations.sqlite"

[upload]
url = "https://localhost:{port}"
ca_cert = "{ca}"
backoff_initial_ms = 200
backoff_max_ms = 2000

[status]
listen = "127.0.0.1:0"

[log]
level = "warn"
"#,
        models = models.display(),
        frames = dir.join("frames").display(),
        dir = dir.display(),
        ca = ca.display(),
        port = receiver.port(),
    )
}
