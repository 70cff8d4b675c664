//! One passage per vehicle on video, end to end with the real models:
//! MJPG AVI clips played through detection, reading and the tracker
//! (`eval::clips`), on a clip this test renders and writes itself, and (where
//! this machine has it) on the 45 labelled TU Delft clips.
//!
//! Needs the runtime and models in `models/cache` (`make models`).

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anpr_edge::config::RuntimeConfig;
use anpr_edge::message::Direction;
use anpr_edge::pipeline;
use anpr_lab::eval::clips::{evaluate_clips, ClipReport};
use anpr_lab::eval::EvalSettings;
use anpr_lab::synth::{render_frame, Direction as Travel, Scenario};

fn run(dir: &Path) -> Option<ClipReport> {
    let models = anpr_edge::testing::fetched_models()?;
    let settings = EvalSettings {
        runtime: RuntimeConfig {
            models_dir: models,
            ..RuntimeConfig::default()
        },
        ..EvalSettings::default()
    };
    let (mut det, mut reader) =
        pipeline::detector_and_reader(&settings.runtime, &settings.detect, &settings.read)
            .expect("models load");
    evaluate_clips(
        dir,
        det.as_mut(),
        reader.as_mut(),
        &settings,
        &mut |_, _, _| {},
    )
    .map(Some)
    .expect("clips play")
}

fn chunk(id: &[u8; 4], data: &[u8]) -> Vec<u8> {
    let mut out = id.to_vec();
    out.extend((data.len() as u32).to_le_bytes());
    out.extend(data);
    if !data.len().is_multiple_of(2) {
        out.push(0);
    }
    out
}

fn list(kind: &[u8; 4], children: Vec<Vec<u8>>) -> Vec<u8> {
    let mut data = kind.to_vec();
    data.extend(children.concat());
    chunk(b"LIST", &data)
}

/// A minimal MJPG AVI as camera recorders write it: main header, one video
/// stream, the JPEG frames as `00dc` chunks.
fn write_avi(path: &Path, frames: &[Vec<u8>], fps: f32, width: u32, height: u32) {
    let mut avih = vec![0u8; 56];
    avih[0..4].copy_from_slice(&((1e6 / fps) as u32).to_le_bytes());
    avih[16..20].copy_from_slice(&(frames.len() as u32).to_le_bytes());
    avih[32..36].copy_from_slice(&width.to_le_bytes());
    avih[36..40].copy_from_slice(&height.to_le_bytes());
    let mut strh = vec![0u8; 56];
    strh[0..4].copy_from_slice(b"vids");
    strh[4..8].copy_from_slice(b"MJPG");
    let hdrl = list(
        b"hdrl",
        vec![
            chunk(b"avih", &avih),
            list(b"strl", vec![chunk(b"strh", &strh)]),
        ],
    );
    let movi = list(b"movi", frames.iter().map(|f| chunk(b"00dc", f)).collect());
    let mut body = b"AVI ".to_vec();
    body.extend(hdrl);
    body.extend(movi);
    std::fs::write(path, chunk(b"RIFF", &body)).expect("write avi");
}

#[test]
fn a_rendered_street_clip_gives_one_passage_per_vehicle() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Scenario::small_test();
    let frames: Vec<Vec<u8>> = (0..s.frames)
        .map(|i| {
            let mut jpeg = Cursor::new(Vec::new());
            render_frame(&s, i)
                .write_to(&mut jpeg, image::ImageFormat::Jpeg)
                .expect("encode");
            jpeg.into_inner()
        })
        .collect();
    std::fs::create_dir(dir.path().join("clips")).expect("mkdir");
    write_avi(
        &dir.path().join("clips/street.avi"),
        &frames,
        s.fps,
        s.width,
        s.height,
    );
    let plates: Vec<&str> = s.vehicles.iter().map(|v| v.plate.as_str()).collect();
    std::fs::write(
        dir.path().join("clips.csv"),
        format!(
            "file,category,plate_texts\nclips/street.avi,1,{}\n",
            plates.join(";")
        ),
    )
    .expect("csv");

    let Some(report) = run(dir.path()) else {
        return;
    };
    println!("{report}");
    let clip = &report.clips[0];
    assert_eq!(clip.frames, s.frames as usize);
    assert!(clip.count_right(), "{:?}", clip.passages);
    // The reader gets small distant plates wrong now and then (see
    // tests/eval.rs); the tracker must not lose more than that one.
    assert!(clip.plates_read_right() + 1 >= plates.len(), "{clip:?}");
    for v in &s.vehicles {
        if let Some(p) = clip.passages.iter().find(|p| p.0 == v.plate) {
            let want = match v.direction {
                Travel::Towards => Direction::Towards,
                Travel::Away => Direction::Away,
            };
            assert_eq!(p.2, want, "{}", v.plate);
        }
    }
}

/// Measured on 2026-11-30 with the default settings (`anpr-edge eval --clips`,
/// see docs/measurements/accuracy.md): all 45 clips give exactly as many passages as they
/// have plates, and 42 of 45 also read every plate exactly (47 of 50 plates;
/// 39 of 45 before the fourth session's reader changes).
/// The floors leave a margin of three clips for changes to the reader (issue
/// 3 and later), which decide which frames give reads at all; a tracker that
/// splits or merges vehicles on these hand-held pans fails the first, a
/// reader that regresses the second.
const CLIPS_WITH_RIGHT_COUNT: usize = 42;
const CLIPS_ALL_RIGHT: usize = 39;

#[test]
fn tudelft_clips_give_as_many_passages_as_plates() {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .join("../shared/data/plates/tudelft-cse2225-video-clips");
    if !dir.join("clips.csv").exists() {
        eprintln!(
            "SKIPPED: no TU Delft clips at {} (shared data, not part of the repo)",
            dir.display()
        );
        return;
    }
    let Some(report) = run(&dir) else {
        return;
    };
    println!("{report}");
    assert_eq!(report.clips.len(), 45, "labelled clips");
    assert!(
        report.count_right() >= CLIPS_WITH_RIGHT_COUNT,
        "passages == plates on {} of 45 clips, floor {CLIPS_WITH_RIGHT_COUNT}",
        report.count_right()
    );
    assert!(
        report.right() >= CLIPS_ALL_RIGHT,
        "all plates right on {} of 45 clips, floor {CLIPS_ALL_RIGHT}",
        report.right()
    );
}
