use anpr_edge::config::*;
use anpr_edge::detect::{retina::RetinaPlateDetector, PlateDetector};
use anpr_edge::models::ModelSet;
use anpr_edge::read::{ppocr::PpOcrReader, rectify, PlateReader};
use anpr_edge::synth::*;
fn main() {
    let small = std::env::args().nth(1).as_deref() != Some("demo");
    let max_side: u32 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let s = if small {
        Scenario::small_test()
    } else {
        Scenario::demo()
    };
    let m = ModelSet::new(&RuntimeConfig::default()).unwrap();
    let mut d = RetinaPlateDetector::new(
        &m,
        &DetectConfig {
            max_side,
            ..Default::default()
        },
    )
    .unwrap();
    let mut r = PpOcrReader::new(&m).unwrap();
    for i in 0..s.frames {
        let t0 = std::time::Instant::now();
        let f = render_frame(&s, i);
        let t1 = t0.elapsed();
        let truth: Vec<String> = frame_truth(&s, i)
            .iter()
            .map(|t| {
                format!(
                    "{}@{:.0},{:.0} w{:.0}",
                    t.text,
                    t.bbox.0,
                    t.bbox.1,
                    t.bbox.2 - t.bbox.0
                )
            })
            .collect();
        let dets = d.detect(&f).unwrap();
        let t2 = t0.elapsed();
        let crops: Vec<_> = dets
            .iter()
            .filter_map(|x| rectify::rectify(&f, &x.corners))
            .collect();
        let reads = if crops.is_empty() {
            vec![]
        } else {
            r.read(&crops).unwrap()
        };
        let t3 = t0.elapsed();
        let out: Vec<String> = dets
            .iter()
            .zip(&reads)
            .map(|(x, t)| {
                format!(
                    "{}({:.2}) s{:.2} @{:.0},{:.0} w{:.0}",
                    t.text,
                    t.confidence,
                    x.score,
                    x.bbox.x1,
                    x.bbox.y1,
                    x.bbox.width()
                )
            })
            .collect();
        println!(
            "{i:3} [{:?} {:?} {:?}] truth {truth:?} -> {out:?}",
            t1,
            t2 - t1,
            t3 - t2
        );
    }
}
