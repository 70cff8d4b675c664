//! `anpr-lab eval`: accuracy, error rates and speed on a labelled data set.
//!
//! Loads the detector and reader (from `--config`, or the defaults), hands
//! them to [`anpr_lab::eval::evaluate`] and prints its report; optionally
//! writes the per-image CSV and the crops that were read wrong. With `--clips`
//! it plays labelled MJPG AVI clips through the tracker instead (passages per clip).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use anpr_edge::config::Config;
use anpr_edge::pipeline;
use anpr_lab::eval::{self, EvalOptions, EvalSettings};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// Folder with one sub-folder per source, each holding a manifest.csv
    /// (`file,plate_text,x1,y1,x2,y2,country`).
    #[arg(long, required_unless_present = "clips")]
    pub data: Option<PathBuf>,
    /// Instead of `--data`: a folder with `clips.csv` (`file,...,plate_texts,...`)
    /// and MJPG AVI clips; counts per clip the passages against its plates.
    #[arg(long, conflicts_with = "data")]
    pub clips: Option<PathBuf>,
    /// Daemon config to take runtime, detect, read, track and policy settings
    /// from (default: the built-in defaults, models in models/cache).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Write one row per image here.
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the rectified crops that were read wrong here, as PNG named
    /// `TRUTH__READ__SOURCE__FILE.png`.
    #[arg(long)]
    pub failures: Option<PathBuf>,
    /// Acceptance threshold (default: the config's policy.min_confidence, else 0.8).
    #[arg(long)]
    pub threshold: Option<f32>,
    /// Reader to use: own, ppocr or cascade (default: the config's read.model).
    #[arg(long)]
    pub reader: Option<anpr_edge::config::ReaderModel>,
    /// Only this source (repeatable; default: all).
    #[arg(long)]
    pub source: Vec<String>,
}

pub fn run(args: EvalArgs) -> anyhow::Result<ExitCode> {
    super::init_logging("warn", false);
    let mut settings = match &args.config {
        Some(path) => EvalSettings::from_config(&Config::load(path)?),
        None => EvalSettings::default(),
    };
    if let Some(t) = args.threshold {
        anyhow::ensure!((0.0..=1.0).contains(&t), "--threshold {t} is outside 0..=1");
        settings.threshold = t;
    }
    if let Some(r) = args.reader {
        settings.read.model = r;
    }
    let (mut detector, mut reader) =
        pipeline::detector_and_reader(&settings.runtime, &settings.detect, &settings.read)
            .with_context(|| {
                format!(
                    "cannot load the models from {} (run `make models`)",
                    settings.runtime.models_dir.display()
                )
            })?;
    if let Some(dir) = &args.clips {
        let mut progress = |clip: &str, done: usize, total: usize| {
            eprint!("\r{done}/{total} clips {clip:<40}");
            let _ = std::io::stderr().flush();
        };
        let report = eval::clips::evaluate_clips(
            dir,
            detector.as_mut(),
            reader.as_mut(),
            &settings,
            &mut progress,
        )
        .with_context(|| format!("evaluating clips in {}", dir.display()))?;
        eprintln!();
        println!(
            "anpr-edge eval of the clips in {} (read.min_confidence {:.2}, track.close_after_ms {}, track.min_reads {})",
            dir.display(),
            settings.read.min_confidence,
            settings.track.close_after_ms,
            settings.track.min_reads,
        );
        println!();
        print!("{report}");
        return Ok(ExitCode::SUCCESS);
    }
    let Some(data) = &args.data else {
        anyhow::bail!("give --data or --clips");
    };
    let options = EvalOptions {
        sources: args.source.clone(),
        failures: args.failures.clone(),
    };
    let mut last_source = String::new();
    let mut progress = |source: &str, done: usize, total: usize| {
        if source != last_source {
            if !last_source.is_empty() {
                eprintln!();
            }
            last_source = source.to_string();
        }
        eprint!("\r{source}: {done}/{total} images");
        let _ = std::io::stderr().flush();
    };
    let report = eval::evaluate(
        data,
        detector.as_mut(),
        reader.as_mut(),
        &settings,
        &options,
        &mut progress,
    )
    .with_context(|| format!("evaluating {}", data.display()))?;
    eprintln!();
    println!(
        "anpr-edge eval of {} (reader {:?}, threshold {:.2}, read.min_confidence {:.2}, read.min_chars {})",
        data.display(),
        settings.read.model,
        settings.threshold,
        settings.read.min_confidence,
        settings.read.min_chars
    );
    println!();
    print!("{report}");
    if let Some(csv) = &args.csv {
        report.write_csv(csv)?;
        println!("\nper-image rows: {}", csv.display());
    }
    if let Some(dir) = &args.failures {
        println!("crops read wrong: {}", dir.display());
    }
    Ok(ExitCode::SUCCESS)
}
