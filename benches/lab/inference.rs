//! Detection and reading with the real models on generated frames.
//!
//! `cargo bench --bench inference`. Needs `make models`; without the models the
//! bench says so and measures nothing. The `read_*_1_thread` cases give each
//! reader one intra-op thread: the per-plate cost on one core.

use criterion::{criterion_group, criterion_main, Criterion};

use anpr_edge::config::{DetectConfig, RuntimeConfig};
use anpr_edge::detect::PlateDetector;
use anpr_edge::models::crnn::CrnnReader;
use anpr_edge::models::ppocr::PpOcrReader;
use anpr_edge::models::retina::RetinaPlateDetector;
use anpr_edge::models::ModelSet;
use anpr_edge::read::{rectify, PlateReader};
use anpr_lab::synth::{frame_truth, render_frame, Scenario};

fn model_set(threads: usize) -> Option<ModelSet> {
    let cfg = RuntimeConfig {
        models_dir: concat!(
            concat!(env!("CARGO_MANIFEST_DIR"), "/../.."),
            "/models/cache"
        )
        .into(),
        threads,
        ..RuntimeConfig::default()
    };
    match ModelSet::new(&cfg) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("skipping inference benches: {e} (run `make models`)");
            None
        }
    }
}

/// A 1920x1080 frame of the demo scene with the most plates in view.
fn busy_frame(s: &Scenario) -> (image::RgbImage, u32) {
    let index = (0..s.frames)
        .max_by_key(|&i| frame_truth(s, i).len())
        .unwrap_or(0);
    (render_frame(s, index), index)
}

fn inference(c: &mut Criterion) {
    let Some(models) = model_set(RuntimeConfig::default().threads) else {
        return;
    };
    let Some(one_thread) = model_set(1) else {
        return;
    };
    let mut own = CrnnReader::new(&one_thread).expect("own reader loads");
    let mut ppocr_1 = PpOcrReader::new(&one_thread).expect("reader loads");
    let mut detector =
        RetinaPlateDetector::new(&models, &DetectConfig::default()).expect("detector loads");
    let native_cfg = DetectConfig {
        coarse_side: 0,
        ..DetectConfig::default()
    };
    let mut native = RetinaPlateDetector::new(&models, &native_cfg).expect("detector loads");
    let mut reader = PpOcrReader::new(&models).expect("reader loads");
    let scenario = Scenario::demo();
    let (frame, index) = busy_frame(&scenario);
    let truth = frame_truth(&scenario, index);
    let crop = rectify::rectify(&frame, &truth[0].corners).expect("plate rectifies");

    let mut g = c.benchmark_group("inference");
    g.sample_size(10);
    // The default: a coarse pass at 960 px and native-size windows on small
    // or unsure finds (docs/measurements/detector.md); against one pass at native size.
    g.bench_function("detect_1920x1080", |b| {
        b.iter(|| detector.detect(&frame).expect("detects"))
    });
    g.bench_function("detect_1920x1080_native", |b| {
        b.iter(|| native.detect(&frame).expect("detects"))
    });
    g.bench_function("read_one_crop", |b| {
        b.iter(|| reader.read(std::slice::from_ref(&crop)).expect("reads"))
    });
    g.bench_function("read_one_crop_own_1_thread", |b| {
        b.iter(|| own.read(std::slice::from_ref(&crop)).expect("reads"))
    });
    g.bench_function("read_one_crop_ppocr_1_thread", |b| {
        b.iter(|| ppocr_1.read(std::slice::from_ref(&crop)).expect("reads"))
    });
    g.bench_function("detect_and_read_1920x1080", |b| {
        b.iter(|| {
            let dets = detector.detect(&frame).expect("detects");
            let crops: Vec<_> = dets
                .iter()
                .filter_map(|d| rectify::rectify(&frame, &d.corners))
                .collect();
            if !crops.is_empty() {
                reader.read(&crops).expect("reads");
            }
        })
    });
    g.finish();
}

criterion_group!(benches, inference);
criterion_main!(benches);
