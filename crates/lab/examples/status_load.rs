//! Load on the status page versus the pipeline's frame rate.
//!
//! Runs the pipeline on a looped, unpaced replay of the small test scene (the
//! detector and reader flat out, so every CPU cycle the page takes would show)
//! and alternates phases without and with clients hammering `/api/v1/status`
//! and the live snapshot. Prints the processed frames per second of each
//! phase and the median drop, and, per phase, the CPU time of the pipeline's
//! threads, the page's and the clients' (from /proc/self/task): the page's
//! share of the daemon's CPU bounds what it can take from the pipeline,
//! whatever else runs on the machine.
//!
//! ```text
//! cargo run --release --example status_load -- [--phase-s 10] [--rounds 3] [--clients 8] [--scripted] [--models DIR]
//! ```
//!
//! Real models by default (`make models`); `--scripted` uses a detector that
//! costs a fixed amount of CPU per frame instead, for machines without them.
//! The clients run in this process in the idle scheduling class, as the page
//! does, to stand for a laptop on the maintenance port.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anpr_edge::clock::TimeSource;
use anpr_edge::config::Config;
use anpr_edge::detect::{DetectError, PlateDetector};
use anpr_edge::message::Detection;
use anpr_edge::pipeline::{self, Parts};
use anpr_edge::read::{Look, PlateReader, PlateText, ReadError};
use anpr_edge::status::DeviceFacts;
use anpr_edge::store::PendingRecord;
use anpr_edge::upload::{Ack, Backend, UploadError};
use image::RgbImage;

const PASSWORD: &str = "load-test-password";

struct AckingBackend;

impl Backend for AckingBackend {
    fn deliver<'a>(
        &'a self,
        rec: &'a PendingRecord,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Ack, UploadError>> + Send + 'a>>
    {
        Box::pin(async move { Ok(Ack { id: rec.id }) })
    }
}

/// Costs CPU like a small detector: a few passes over the frame.
struct BusyDetector;

impl PlateDetector for BusyDetector {
    fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, DetectError> {
        let mut acc = 0u64;
        for _ in 0..20 {
            for p in image.pixels() {
                acc = acc
                    .wrapping_mul(31)
                    .wrapping_add(u64::from(p[0] ^ p[1] ^ p[2]));
            }
        }
        std::hint::black_box(acc);
        Ok(Vec::new())
    }
}

struct NoReader;

impl PlateReader for NoReader {
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
        Ok(crops
            .iter()
            .map(|_| Look::unlocated(PlateText::default()))
            .collect())
    }
}

struct Args {
    phase_s: u64,
    rounds: usize,
    clients: usize,
    scripted: bool,
    models: Option<std::path::PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        phase_s: 10,
        rounds: 3,
        clients: 8,
        scripted: false,
        models: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<u64>().ok());
        match k.as_str() {
            "--phase-s" => a.phase_s = num().unwrap_or(a.phase_s),
            "--rounds" => a.rounds = num().unwrap_or(3) as usize,
            "--clients" => a.clients = num().unwrap_or(8) as usize,
            "--scripted" => a.scripted = true,
            "--models" => a.models = it.next().map(Into::into),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// CPU seconds used so far by this process's threads, split into the
/// status page's threads, the load clients' threads and the rest (the
/// pipeline): unlike frame rates, these do not depend on what else the
/// machine is doing.
#[derive(Clone, Copy, Default)]
struct CpuSplit {
    page: f64,
    clients: f64,
    pipeline: f64,
}

fn cpu_split() -> CpuSplit {
    let mut split = CpuSplit::default();
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return split;
    };
    for task in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(task.path().join("stat")) else {
            continue;
        };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        let cpu = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        // utime and stime: fields 14 and 15 of stat(5), 12th and 13th after the name.
        let secs = (cpu(11) + cpu(12)) / ticks;
        if name.starts_with("anpr-status") {
            split.page += secs;
        } else if name.starts_with("load-client") {
            split.clients += secs;
        } else {
            split.pipeline += secs;
        }
    }
    split
}

/// The clients stand for a technician's laptop, which takes no CPU from the
/// controller: they run in the idle class, like the page itself.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: only sets this thread's scheduling policy.
    unsafe {
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(0, libc::SCHED_IDLE, &param);
    }
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let root = std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."));
    let models = a
        .models
        .clone()
        .unwrap_or_else(|| root.join("models/cache"));
    let scripted = a.scripted || !models.join("clp_det.onnx").exists();
    let tmp = tempfile::tempdir()?;
    let scene = anpr_lab::synth::Scenario::small_test();
    anpr_lab::synth::write_frames(&scene, &tmp.path().join("frames"))?;
    let keys = anpr_wire::build::generate_keys(&tmp.path().join("keys"))?;
    std::fs::write(tmp.path().join("ca.pem"), "unused")?;
    let text = format!(
        "[device]\nid = \"load\"\n[runtime]\nmodels_dir = \"{models}\"\n\
         [[camera]]\nid = \"north\"\nsource = \"replay\"\npath = \"{dir}/frames\"\nfps = 12\nlooped = true\n\
         roi = [[80, 300], [1200, 300], [1270, 715], [10, 715]]\n\
         [policy]\npublic_key = \"{pk}\"\n[zone]\nid = \"z\"\n[store]\npath = \"{dir}/v.sqlite\"\n\
         [upload]\nurl = \"https://localhost:1\"\nca_cert = \"{dir}/ca.pem\"\n\
         [status]\nlisten = \"127.0.0.1:0\"\npassword_hash = \"{hash}\"\n",
        models = models.display(),
        dir = tmp.path().display(),
        pk = keys.public_key_base64,
        hash = anpr_edge::status::auth::hash_password(PASSWORD)
            .map_err(|e| anyhow::anyhow!("{e}"))?,
    );
    let cfg_path = tmp.path().join("c.toml");
    std::fs::write(&cfg_path, text)?;
    let cfg = Config::load(&cfg_path)?;

    let rt = tokio::runtime::Runtime::new()?;
    // The clients: their own runtime, at the lowest priority.
    let clients_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("load-client")
        .on_thread_start(lower_priority)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let (detector, reader, facts): (Box<dyn PlateDetector>, Box<dyn PlateReader>, _) =
            if scripted {
                (
                    Box::new(BusyDetector),
                    Box::new(NoReader),
                    DeviceFacts {
                        device_id: "load".into(),
                        software_version: env!("CARGO_PKG_VERSION").into(),
                        model_versions: "scripted".into(),
                        runtime_version: "none".into(),
                    },
                )
            } else {
                let i = pipeline::inference_from_config(&cfg)?;
                (i.detector, i.reader, i.facts)
            };
        let parts = Parts {
            detector,
            reader,
            backend: Arc::new(AckingBackend),
            cameras: pipeline::cameras_from_config(&cfg.cameras, false),
            policy: pipeline::policy_from_config(&cfg, TimeSource::real().clocks)?,
            time: TimeSource::real(),
            facts,
        };
        let running = pipeline::start(&cfg, parts).await?;
        let base = format!("http://{}", running.status_addr);
        let metrics = running.metrics.clone();
        let processed = move || {
            metrics
                .snapshot()
                .cameras
                .iter()
                .map(|c| c.frames_processed)
                .sum::<u64>()
        };
        println!(
            "detector: {}; {} s per phase, {} rounds, {} clients on /api/v1/status and the snapshot",
            if scripted { "scripted (CPU loop)" } else { "real models" },
            a.phase_s,
            a.rounds,
            a.clients
        );
        // Warm up: models loaded, caches filled.
        tokio::time::sleep(Duration::from_secs(3)).await;

        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let login = client
            .post(format!("{base}/login"))
            .form(&[("password", PASSWORD)])
            .send()
            .await?;
        let cookie = login
            .headers()
            .get(reqwest::header::SET_COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .ok_or_else(|| anyhow::anyhow!("login failed: {}", login.status()))?
            .to_string();

        // Quiet and loaded phases alternate, starting and ending quiet; each
        // loaded phase is compared with the mean of the quiet ones around it,
        // so that a slow drift of the machine's speed cancels out.
        let (mut quiet, mut loaded) = (Vec::new(), Vec::new());
        // The page's share of the CPU the daemon got, per loaded phase: the
        // most the page can have taken from the pipeline.
        let mut page_shares = Vec::new();
        let mut total_requests = 0u64;
        for phase in 0..2 * a.rounds + 1 {
            let with_load = phase % 2 == 1;
            let stop = tokio_util::sync::CancellationToken::new();
            let requests = Arc::new(AtomicU64::new(0));
            if with_load {
                for i in 0..a.clients {
                    let (client, cookie, base, stop, requests) = (
                        client.clone(),
                        cookie.clone(),
                        base.clone(),
                        stop.clone(),
                        requests.clone(),
                    );
                    clients_rt.spawn(async move {
                        let path = if i % 2 == 0 {
                            "/api/v1/status"
                        } else {
                            "/cameras/north/snapshot.jpg"
                        };
                        while !stop.is_cancelled() {
                            let ok = client
                                .get(format!("{base}{path}"))
                                .header(reqwest::header::COOKIE, &cookie)
                                .send()
                                .await;
                            if let Ok(r) = ok {
                                if r.bytes().await.is_ok() {
                                    requests.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                    });
                }
            }
            let (t0, f0, c0) = (Instant::now(), processed(), cpu_split());
            tokio::time::sleep(Duration::from_secs(a.phase_s)).await;
            let fps = (processed() - f0) as f64 / t0.elapsed().as_secs_f64();
            let c1 = cpu_split();
            let (page_cpu, pipeline_cpu) = (c1.page - c0.page, c1.pipeline - c0.pipeline);
            stop.cancel();
            let n = requests.load(Ordering::Relaxed);
            total_requests += n;
            println!(
                "phase {phase:2} {:<10} {fps:7.2} frames/s processed; CPU s: pipeline {pipeline_cpu:.2}, page {page_cpu:.2}, clients {:.2}{}",
                if with_load { "with load" } else { "quiet" },
                c1.clients - c0.clients,
                if with_load {
                    format!("; {:.0} requests/s answered", n as f64 / a.phase_s as f64)
                } else {
                    String::new()
                }
            );
            if with_load {
                page_shares.push(100.0 * page_cpu / (page_cpu + pipeline_cpu).max(1e-9));
                loaded.push(fps);
            } else {
                quiet.push(fps);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let mut drops: Vec<f64> = loaded
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let q = (quiet[i] + quiet[i + 1]) / 2.0;
                100.0 * (q - l) / q
            })
            .collect();
        let (q, l) = (median(&mut quiet), median(&mut loaded));
        println!(
            "median: quiet {q:.2} frames/s, with load {l:.2} frames/s; median paired drop {:.1}% ({total_requests} requests)",
            median(&mut drops)
        );
        println!(
            "the page's share of the daemon's CPU time under load: median {:.2}% (the most it can have taken from the pipeline)",
            median(&mut page_shares)
        );
        running.shutdown().await;
        anyhow::Ok(())
    })?;
    clients_rt.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}
