//! Detector recall and time on the project's rendered demo scene, one pass
//! against two passes (`detect.coarse_side`), by plate width.
//!
//! `cargo run --release --example detector_recall [-- STEP]`: every STEP-th
//! frame of `Scenario::demo()` and of a wide-lens variant (default 2). Needs `make models`. Prints, per
//! configuration, the plates found (a detection with IoU >= 0.5 to the
//! rendered plate's box) per width bin and the median time per frame.

use std::time::Instant;

use anpr_edge::config::{DetectConfig, RuntimeConfig};
use anpr_edge::detect::PlateDetector;
use anpr_edge::message::BoxF;
use anpr_edge::models::ppocr::PpOcrReader;
use anpr_edge::models::retina::RetinaPlateDetector;
use anpr_edge::models::ModelSet;
use anpr_edge::read::{rectify, PlateReader};
use anpr_lab::synth::{frame_truth, render_frame, Camera, Scenario};

const BINS: [(f32, f32); 5] = [
    (0.0, 60.0),
    (60.0, 100.0),
    (100.0, 150.0),
    (150.0, 200.0),
    (200.0, 10_000.0),
];

fn main() -> anyhow::Result<()> {
    let step: u32 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2)
        .max(1);
    let models = ModelSet::new(&RuntimeConfig {
        models_dir: concat!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            "/models/cache"
        )
        .into(),
        ..RuntimeConfig::default()
    })?;
    // The demo scene, and the same street through a wider lens, which makes
    // plates smaller than an enforcement camera would (down to ~40 px).
    let demo = Scenario::demo();
    let wide = Scenario {
        camera: Camera {
            focal_px: demo.camera.focal_px * 0.6,
            ..demo.camera
        },
        ..Scenario::demo()
    };
    let frames: Vec<_> = [&demo, &wide]
        .into_iter()
        .flat_map(|s| {
            (0..s.frames)
                .step_by(step as usize)
                .map(move |i| (render_frame(s, i), frame_truth(s, i)))
        })
        .filter(|(_, truth)| !truth.is_empty())
        .collect();
    let scenario = demo;
    let configs = [
        ("one pass, native", 0, 0, 0),
        ("one pass, max_side 960", 960, 0, 0),
        ("two pass, coarse 960, 4 windows", 0, 960, 4),
        ("two pass, coarse 960, 2 windows", 0, 960, 2),
        ("two pass, coarse 960, 1 window", 0, 960, 1),
        ("two pass, coarse 768, 4 windows", 0, 768, 4),
    ];
    println!(
        "{} frames of {}x{}; plates found / plates by width (px)",
        frames.len(),
        scenario.width,
        scenario.height
    );
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "config", "<60", "60-100", "100-150", "150-200", ">=200", "all", "median ms"
    );
    for (name, max_side, coarse_side, fine_windows) in configs {
        let cfg = DetectConfig {
            max_side,
            coarse_side,
            fine_windows,
            ..DetectConfig::default()
        };
        let mut detector = RetinaPlateDetector::new(&models, &cfg)?;
        detector.detect(&frames[0].0)?;
        let mut found = [0usize; 5];
        let mut total = [0usize; 5];
        let mut times = Vec::new();
        for (image, truth) in &frames {
            let t = Instant::now();
            let dets = detector.detect(image)?;
            times.push(t.elapsed().as_secs_f64() * 1000.0);
            for plate in truth {
                let b = BoxF {
                    x1: plate.bbox.0,
                    y1: plate.bbox.1,
                    x2: plate.bbox.2,
                    y2: plate.bbox.3,
                };
                let width = b.x2 - b.x1;
                let Some(bin) = BINS.iter().position(|&(lo, hi)| width >= lo && width < hi) else {
                    continue;
                };
                total[bin] += 1;
                if dets.iter().any(|d| d.bbox.iou(&b) >= 0.5) {
                    found[bin] += 1;
                }
            }
        }
        times.sort_by(f64::total_cmp);
        let cell = |i: usize| format!("{}/{}", found[i], total[i]);
        println!(
            "{:<34} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>10.1}",
            name,
            cell(0),
            cell(1),
            cell(2),
            cell(3),
            cell(4),
            format!(
                "{}/{}",
                found.iter().sum::<usize>(),
                total.iter().sum::<usize>()
            ),
            times[times.len() / 2]
        );
    }

    // Whether the plates a pass misses could be read at all: each rendered
    // plate rectified from its true corners and read by the registry reader.
    let mut reader = PpOcrReader::new(&models)?;
    let mut read_ok = [0usize; 5];
    let mut total = [0usize; 5];
    for (image, truth) in &frames {
        for plate in truth {
            let width = plate.bbox.2 - plate.bbox.0;
            let Some(bin) = BINS.iter().position(|&(lo, hi)| width >= lo && width < hi) else {
                continue;
            };
            total[bin] += 1;
            let Some(crop) = rectify::rectify(image, &plate.corners) else {
                continue;
            };
            let reads = reader.read(std::slice::from_ref(&crop))?;
            if reads.first().is_some_and(|r| r.text.text == plate.text) {
                read_ok[bin] += 1;
            }
        }
    }
    let cell = |i: usize| format!("{}/{}", read_ok[i], total[i]);
    println!(
        "{:<34} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "read exactly from true corners",
        cell(0),
        cell(1),
        cell(2),
        cell(3),
        cell(4)
    );
    Ok(())
}
