//! Why a plate in a photo is not found or not read: the detector's best finds
//! at several scales, then what the default two passes find and read.
//!
//! `cargo run --release --example detect_probe -- PHOTO [X1 Y1 X2 Y2]`, the
//! optional box being the plate's (frame pixels); without it every find of
//! each scale is listed. Needs `make models`. Prints, per scale, the input
//! size, then each find near the box: its score, its box in frame pixels and
//! its width in the input (the detector's sweet spot is 70-110 px,
//! docs/measurements/detector.md).

use anpr_edge::config::{DetectConfig, ReadConfig, RuntimeConfig};
use anpr_edge::detect::PlateDetector;
use anpr_edge::message::{BoxF, Detection};
use anpr_edge::models::retina::RetinaPlateDetector;
use anpr_edge::models::ModelSet;
use anpr_edge::read::{build_reader, rectify_and_read};

/// Scales tried, as factors of the frame's size.
const SCALES: [f32; 8] = [0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0, 2.8];
/// Lowest score listed: the detector's own pre-filter is 0.02.
const LIST_FROM: f32 = 0.03;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(path) = args.first() else {
        anyhow::bail!("usage: detect_probe PHOTO [X1 Y1 X2 Y2]");
    };
    let roi = match &args[1..] {
        [a, b, c, d] => Some(BoxF {
            x1: a.parse()?,
            y1: b.parse()?,
            x2: c.parse()?,
            y2: d.parse()?,
        }),
        [] => None,
        _ => anyhow::bail!("the plate's box takes four numbers"),
    };
    let image = image::open(path)?.to_rgb8();
    let (w, h) = image.dimensions();
    let runtime = RuntimeConfig {
        models_dir: concat!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            "/models/cache"
        )
        .into(),
        ..RuntimeConfig::default()
    };
    let models = ModelSet::new(&runtime)?;
    let near = |d: &Detection| {
        roi.is_none_or(|r| {
            let (cx, cy) = d.bbox.center();
            d.bbox.iou(&r) > 0.1 || (cx > r.x1 && cx < r.x2 && cy > r.y1 && cy < r.y2)
        })
    };
    println!("{path}: {w}x{h}");
    let one_pass = DetectConfig {
        min_score: LIST_FROM,
        max_side: 0,
        coarse_side: 0,
        ..DetectConfig::default()
    };
    let mut single = RetinaPlateDetector::new(&models, &one_pass)?;
    for s in SCALES {
        let (sw, sh) = ((w as f32 * s).round() as u32, (h as f32 * s).round() as u32);
        if sw.max(sh) > 4000 || sw.min(sh) < 64 {
            continue;
        }
        let scaled = image::imageops::resize(&image, sw, sh, image::imageops::FilterType::Triangle);
        let dets = single.detect(&scaled)?;
        let shown: Vec<_> = dets.iter().filter(|d| near(d)).take(4).collect();
        println!(
            "scale {s:.2} ({sw}x{sh}): {} finds, {} near",
            dets.len(),
            shown.len()
        );
        for d in shown {
            let b = &d.bbox;
            println!(
                "  score {:.3}  box {:.0},{:.0},{:.0},{:.0}  width in input {:.0} px",
                d.score,
                b.x1 / s,
                b.y1 / s,
                b.x2 / s,
                b.y2 / s,
                b.x2 - b.x1
            );
        }
    }
    let mut default = RetinaPlateDetector::new(&models, &DetectConfig::default())?;
    let dets = default.detect(&image)?;
    println!("default two passes: {} finds", dets.len());
    let mut reader = build_reader(&models, &ReadConfig::default())?;
    for r in rectify_and_read(reader.as_mut(), &image, dets)? {
        let (d, crop, read) = (r.detection, r.crop, r.plate);
        let b = &d.bbox;
        let c: Vec<String> = d
            .corners
            .iter()
            .map(|(x, y)| format!("{x:.0},{y:.0}"))
            .collect();
        println!(
            "  score {:.3}  box {:.0},{:.0},{:.0},{:.0}  corners {}  crop {}x{}  read {:?} {:.2}",
            d.score,
            b.x1,
            b.y1,
            b.x2,
            b.y2,
            c.join(" "),
            crop.width(),
            crop.height(),
            read.text,
            read.confidence
        );
    }
    Ok(())
}
