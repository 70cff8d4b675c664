//! `eval` end to end with the real models: on a tiny data set of generated
//! frames written in the shared data's manifest format, and (where this
//! machine has it) on one small real source from `../shared/data/plates`.
//!
//! Needs the runtime and models in `models/cache` (`make models`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anpr_edge::config::RuntimeConfig;
use anpr_edge::pipeline;
use anpr_lab::eval::{self, EvalOptions, EvalSettings, Report};
use anpr_lab::synth::{frame_truth, render_frame, Scenario};

fn settings() -> Option<EvalSettings> {
    let dir = anpr_edge::testing::fetched_models()?;
    Some(EvalSettings {
        runtime: RuntimeConfig {
            models_dir: dir,
            ..RuntimeConfig::default()
        },
        ..EvalSettings::default()
    })
}

fn run_eval(data: &Path, options: &EvalOptions) -> Option<Report> {
    let s = settings()?;
    let (mut det, mut reader) =
        pipeline::detector_and_reader(&s.runtime, &s.detect, &s.read).expect("models load");
    eval::evaluate(
        data,
        det.as_mut(),
        reader.as_mut(),
        &s,
        options,
        &mut |_, _, _| {},
    )
    .map(Some)
    .expect("eval runs")
}

/// Writes frames of the small test scene into `dir/<source>/images/` with a
/// manifest; `name` gives each frame's file name.
fn write_source(
    dir: &Path,
    source: &str,
    s: &Scenario,
    frames: impl Iterator<Item = u32>,
    name: impl Fn(u32) -> String,
) -> usize {
    let images = dir.join(source).join("images");
    std::fs::create_dir_all(&images).expect("mkdir");
    let mut manifest = String::from("file,plate_text,x1,y1,x2,y2,country\n");
    let mut n = 0;
    for i in frames {
        let truth = frame_truth(s, i);
        if truth.is_empty() {
            continue;
        }
        let file = format!("images/{}", name(i));
        render_frame(s, i)
            .save(dir.join(source).join(&file))
            .expect("write jpeg");
        for t in truth {
            let (x1, y1, x2, y2) = t.bbox;
            writeln!(manifest, "{file},{},{x1},{y1},{x2},{y2},NL", t.text).expect("fmt");
        }
        n += 1;
    }
    std::fs::write(dir.join(source).join("manifest.csv"), manifest).expect("manifest");
    n
}

#[test]
fn generated_frames_give_sensible_figures_and_one_csv_row_per_image() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Scenario::small_test();
    // Stills: every third frame, named so that they are not a clip.
    let stills = write_source(
        dir.path(),
        "synth-stills",
        &s,
        (1..s.frames).step_by(3),
        |i| format!("still{i:03}.jpg"),
    );
    // A clip: every other frame, `<clip>_f<n>`, scored by its passages.
    let clip = write_source(
        dir.path(),
        "synth-clip",
        &s,
        (0..s.frames).step_by(2),
        |i| format!("street_f{i:02}.jpg"),
    );
    assert!(
        stills >= 4 && clip >= 6,
        "{stills} stills, {clip} clip frames"
    );

    let failures = dir.path().join("failures");
    let Some(report) = run_eval(
        dir.path(),
        &EvalOptions {
            sources: Vec::new(),
            failures: Some(failures.clone()),
        },
    ) else {
        return;
    };
    println!("{report}");
    let names: Vec<&str> = report.by_source.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["synth-clip", "synth-stills"]);
    let (clip_g, stills_g) = (&report.by_source[0], &report.by_source[1]);
    assert_eq!(stills_g.images, stills);
    assert_eq!(clip_g.images, clip);
    let recall = report.overall.recall().expect("boxes");
    assert!(recall >= 0.8, "recall {recall}");
    // Every vehicle of the scene is one clip sample.
    assert_eq!(clip_g.samples, s.vehicles.len());
    assert!(clip_g.correct + 1 >= clip_g.samples, "{clip_g:?}");
    // Single frames include distant plates of 60-90 px that the reader often
    // gets one character wrong (5 of 9 right when written); the clip's
    // passages, not single frames, are what the daemon acts on.
    let acc = stills_g.accuracy().expect("samples");
    assert!(acc >= 0.4, "stills accuracy {acc}: {stills_g:?}");
    assert_eq!(report.overall.confident_wrong, 0, "{:?}", report.overall);
    assert!(report.overall.cer().expect("cer") < 0.5);
    assert!(stills_g.median_ms > 0.0 && stills_g.p95_ms >= stills_g.median_ms);
    assert_eq!(report.by_country[0].name, "NL");

    let csv = dir.path().join("out.csv");
    report.write_csv(&csv).expect("csv");
    let text = std::fs::read_to_string(&csv).expect("read csv");
    assert_eq!(text.lines().count(), 1 + stills + clip, "{text}");
    assert!(text.starts_with("source,file,"), "{text}");
    // Every failure crop, if any, is a PNG named by truth and read.
    for e in std::fs::read_dir(&failures).expect("failures dir") {
        let name = e.expect("entry").file_name().to_string_lossy().into_owned();
        assert!(
            name.ends_with(".png") && name.matches("__").count() == 3,
            "{name}"
        );
    }
}

#[test]
fn a_small_real_source_reports_recall() {
    let data =
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../..")).join("../shared/data/plates");
    let source = "fer-zagreb-msc-thesis-hr";
    if !data.join(source).join("manifest.csv").exists() {
        eprintln!(
            "SKIPPED: no shared plate data at {} (not part of the repo)",
            data.display()
        );
        return;
    }
    let Some(report) = run_eval(
        &data,
        &EvalOptions {
            sources: vec![source.into()],
            failures: None,
        },
    ) else {
        return;
    };
    println!("{report}");
    assert_eq!(report.by_source.len(), 1);
    let g = &report.by_source[0];
    assert_eq!(g.name, source);
    assert_eq!(g.images, 10);
    let recall = g.recall().expect("this source has boxes");
    assert!((0.0..=1.0).contains(&recall));
    assert_eq!(report.by_country[0].name, "HR");
}
