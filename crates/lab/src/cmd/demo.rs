//! `anpr-lab demo`: the whole pipeline on this machine, no hardware.
//!
//! Renders a street scene with Dutch plates, runs it through the real pipeline
//! with the real models and uploads the violations over TLS to the reference
//! receiver (see `anpr_lab::demo`), then prints what happened.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use anpr_lab::demo::{self, DemoOptions};
use anpr_lab::synth::Scenario;

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
    let models_dir = std::fs::canonicalize(&args.models_dir).with_context(|| {
        format!(
            "models folder {} is missing: run `make models`",
            args.models_dir.display()
        )
    })?;
    let scenario = if args.small {
        Scenario::small_test()
    } else {
        Scenario::demo()
    };
    println!(
        "anpr-edge demo: {} frames of {}x{}, {} vehicles, working in {}",
        scenario.frames,
        scenario.width,
        scenario.height,
        scenario.vehicles.len(),
        dir.display()
    );
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    let outcome = runtime.block_on(demo::run(DemoOptions {
        dir: dir.clone(),
        models_dir,
        scenario,
        upload_port_override: None,
        upload_grace: Duration::from_secs(60),
        progress: Some(Box::new(|s, total| {
            let done: u64 = s.cameras.iter().map(|c| c.frames_processed).sum();
            println!(
                "  frames {done}/{total}  plates read {}  passages {}  violations {}  uploaded {}",
                s.plates_read, s.passages, s.violations_recorded, s.uploads_acked
            );
        })),
    }))?;

    let s = &outcome.counters;
    let done: u64 = s.cameras.iter().map(|c| c.frames_processed).sum();
    println!();
    println!("summary ({:.1} s)", outcome.elapsed.as_secs_f32());
    println!("  frames processed     {done} of {}", outcome.frames);
    println!("  plates detected      {}", s.plates_detected);
    println!(
        "  plates read          {} ({} rejected as unsure)",
        s.plates_read, s.reads_rejected
    );
    println!(
        "  passages             {} ({} non-hits counted and dropped, {} too unsure to act on)",
        s.passages, s.non_hits, s.low_confidence_passages
    );
    println!(
        "  not acted on         {} exempt, {} not yet banned, {} foreign, {} not entering, {} outside hours, {} lists unavailable",
        s.exempt, s.not_yet_banned, s.foreign_plates, s.not_entering, s.outside_hours, s.lists_unavailable
    );
    println!("  violations recorded  {}", s.violations_recorded);
    println!(
        "  violations uploaded  {} (the receiver holds {})",
        s.uploads_acked,
        outcome.received.len()
    );
    for r in &outcome.received {
        println!(
            "    #{} {} camera {} at {} confidence {:.2}, {} reads",
            r.metadata.seq,
            r.metadata.plate.text,
            r.metadata.camera,
            r.metadata.captured_at,
            r.metadata.plate.confidence,
            r.metadata.reads
        );
    }
    println!(
        "  scene plates: {}; banned without exemption: {}; exempted: {}",
        outcome.scene_plates.join(" "),
        outcome.expected_violations.join(" "),
        outcome.exempted.join(" ")
    );
    let got: std::collections::BTreeSet<&str> = outcome
        .received
        .iter()
        .map(|r| r.metadata.plate.text.as_str())
        .collect();
    let want: std::collections::BTreeSet<&str> = outcome
        .expected_violations
        .iter()
        .map(String::as_str)
        .collect();
    runtime.block_on(outcome.receiver.shutdown());
    if got != want {
        bail!("the receiver holds plates {got:?}, but the banned, unexempted plates of the scene are {want:?}");
    }
    println!("OK: every banned, unexempted vehicle was recorded and uploaded exactly once; nothing else left memory.");
    Ok(ExitCode::SUCCESS)
}
