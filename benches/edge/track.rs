//! Tracker cost per frame with 1, 10 and 50 plates in view. One iteration is
//! 100 frames (10 s of a camera at 10 fps): divide by 100 for the cost per frame.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use image::RgbImage;

use anpr_edge::clock::SyncState;
use anpr_edge::clock::Timestamp;
use anpr_edge::config::TrackConfig;
use anpr_edge::message::{BoxF, Detection, Frame, PlateRead, PlateText, ReadFrame};
use anpr_edge::track::Tracker;

fn frame(seq: u64, plates: usize, crop: &Arc<RgbImage>, image: &Arc<RgbImage>) -> ReadFrame {
    let reads = (0..plates)
        .map(|i| {
            // Plates on a grid, each moving right a little every frame.
            let x = (i % 10) as f32 * 180.0 + seq as f32 * 3.0;
            let y = (i / 10) as f32 * 200.0;
            let bbox = BoxF {
                x1: x,
                y1: y,
                x2: x + 120.0,
                y2: y + 26.0,
            };
            PlateRead {
                detection: Detection {
                    bbox,
                    corners: [
                        (bbox.x1, bbox.y1),
                        (bbox.x2, bbox.y1),
                        (bbox.x2, bbox.y2),
                        (bbox.x1, bbox.y2),
                    ],
                    score: 0.5,
                },
                plate: PlateText {
                    text: format!("AB{i:03}C"),
                    char_confidences: vec![0.9; 6],
                    confidence: 0.9,
                    country: None,
                },
                crop: crop.clone(),
            }
        })
        .collect();
    ReadFrame {
        frame: Frame {
            camera: "a".into(),
            seq,
            captured: Timestamp {
                mono: Duration::from_millis(seq * 100),
                wall: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
                    + chrono::Duration::milliseconds(seq as i64 * 100),
                sync: SyncState {
                    synchronised: true,
                    max_error_us: 0,
                },
            },
            image: image.clone(),
        },
        reads,
    }
}

fn tracker(c: &mut Criterion) {
    // A plate crop as the reader gets it (48 px high): the tracker measures
    // each read's sharpness on it.
    let crop = Arc::new(RgbImage::from_fn(220, 48, |x, y| {
        image::Rgb([((x * 7 + y * 3) % 256) as u8; 3])
    }));
    let image = Arc::new(RgbImage::new(1, 1));
    let mut g = c.benchmark_group("track_per_frame");
    for plates in [1usize, 10, 50] {
        let frames: Vec<ReadFrame> = (0..100).map(|s| frame(s, plates, &crop, &image)).collect();
        g.bench_with_input(BenchmarkId::from_parameter(plates), &frames, |b, frames| {
            b.iter(|| {
                let mut t = Tracker::new(&TrackConfig::default());
                for f in frames {
                    criterion::black_box(t.push(f));
                }
                t.flush()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, tracker);
criterion_main!(benches);
