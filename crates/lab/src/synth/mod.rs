//! Sample data the project makes itself: rendered Dutch number plates on vehicles
//! driving through a synthetic street scene, with per-frame ground truth, for the demo
//! and the integration tests (the project ships no photos it did not make).
//!
//! [`plate`] formats and renders plates; [`scene`] renders frames of a [`Scenario`].
//! Only [`write_frames`] touches the file system (the directory it is given); nothing
//! here reads the clock, the network or the daemon's state.

pub mod plate;
pub mod scene;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;

pub use plate::{
    dutch_sidecode, format_dutch, random_dutch_plate, render_plate, Sidecode, PLATE_ASPECT,
    PLATE_LETTERS,
};
pub use scene::{
    frame_truth, render_frame, Camera, Direction, PlateTruth, Scenario, Vehicle, VehicleKind,
};

/// Why a scenario cannot be rendered as asked.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SynthError {
    #[error("frame size {0}x{1} is outside 64..=8192")]
    FrameSize(u32, u32),
    #[error("vehicle {vehicle}: plate {plate:?} does not fit sidecode {sidecode}")]
    Plate {
        vehicle: usize,
        plate: String,
        sidecode: u8,
    },
    #[error("vehicle {vehicle}: lane {lane} but the road has {lanes} lanes")]
    Lane { vehicle: usize, lane: u8, lanes: u8 },
    #[error("scenario geometry: {0}")]
    Geometry(&'static str),
}

/// JPEG quality of written frames: high enough that plate edges survive, like a camera
/// stream at a generous bitrate.
pub const JPEG_QUALITY: u8 = 90;

/// Renders every frame of `s` into `dir` (created if missing) as `frame_00000.jpg`,
/// `frame_00001.jpg`, ... and returns the paths in frame order, so a replay camera can
/// play them. An invalid scenario is an `InvalidInput` error before anything is written.
pub fn write_frames(s: &Scenario, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    s.validate()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    std::fs::create_dir_all(dir)?;
    let mut paths = Vec::with_capacity(s.frames as usize);
    for i in 0..s.frames {
        let img = render_frame(s, i);
        let path = dir.join(format!("frame_{i:05}.jpg"));
        let mut out = BufWriter::new(File::create(&path)?);
        JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
            .encode_image(&img)
            .map_err(std::io::Error::other)?;
        std::io::Write::flush(&mut out)?;
        paths.push(path);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plate_width(t: &PlateTruth) -> f32 {
        let (a, b) = (t.corners[0], t.corners[1]);
        ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
    }

    #[test]
    fn frames_are_deterministic_for_a_seed() {
        let s = Scenario::small_test();
        let a = render_frame(&s, 5);
        let b = render_frame(&s, 5);
        assert_eq!((a.width(), a.height()), (1280, 720));
        assert!(a.as_raw() == b.as_raw(), "same seed, same frame");
        let other = Scenario {
            seed: 43,
            ..s.clone()
        };
        assert!(
            render_frame(&other, 5).as_raw() != a.as_raw(),
            "seed changes the frame"
        );
        assert!(render_frame(&s, 6).as_raw() != a.as_raw(), "vehicles move");
    }

    #[test]
    fn truth_boxes_lie_inside_and_towards_plates_grow() {
        for s in [Scenario::small_test(), Scenario::demo()] {
            s.validate().expect("built-in scenario is valid");
            let (w, h) = (s.width as f32, s.height as f32);
            let mut widths: Vec<Vec<f32>> = vec![Vec::new(); s.vehicles.len()];
            let mut two_at_once = false;
            for i in 0..s.frames {
                let truth = frame_truth(&s, i);
                two_at_once |= truth.len() >= 2;
                for t in &truth {
                    let (x1, y1, x2, y2) = t.bbox;
                    assert!(x1 >= 0.0 && y1 >= 0.0 && x2 < w && y2 < h, "{t:?}");
                    assert!(x2 - x1 > 20.0 && y2 - y1 > 4.0);
                    assert_eq!(t.text, s.vehicles[t.vehicle].plate);
                    // Corners are ordered clockwise from top-left.
                    assert!(t.corners[0].0 < t.corners[1].0 && t.corners[3].1 > t.corners[0].1);
                    widths[t.vehicle].push(plate_width(t));
                }
            }
            assert!(two_at_once, "two plates in view at once somewhere");
            for (v, ws) in s.vehicles.iter().zip(&widths) {
                assert!(
                    (6..=16).contains(&ws.len()),
                    "{} visible {} frames",
                    v.plate,
                    ws.len()
                );
                let grows = ws.windows(2).all(|p| p[1] > p[0]);
                let shrinks = ws.windows(2).all(|p| p[1] < p[0]);
                match v.direction {
                    Direction::Towards => assert!(grows, "{}: {ws:?}", v.plate),
                    Direction::Away => assert!(shrinks, "{}: {ws:?}", v.plate),
                }
                let max = ws.iter().copied().fold(0.0, f32::max);
                assert!((100.0..=260.0).contains(&max), "{}: widest {max}", v.plate);
            }
        }
    }

    #[test]
    fn plate_pixels_are_yellow_where_truth_says() {
        let s = Scenario::small_test();
        let (frame, t) = (0..s.frames)
            .find_map(|i| frame_truth(&s, i).into_iter().next().map(|t| (i, t)))
            .expect("some plate in view");
        let img = render_frame(&s, frame);
        let (x1, y1, x2, y2) = t.bbox;
        let mut yellow = 0;
        let mut total = 0;
        for y in y1.ceil() as u32..y2.floor() as u32 {
            for x in x1.ceil() as u32..x2.floor() as u32 {
                let [r, g, b] = img.get_pixel(x, y).0;
                total += 1;
                if r > 150 && g > 100 && (b as i32) < i32::from(g) / 2 {
                    yellow += 1;
                }
            }
        }
        assert!(yellow * 3 > total, "yellow {yellow} of {total} in {t:?}");
    }

    #[test]
    fn invalid_scenarios_are_rejected() {
        let mut s = Scenario::small_test();
        s.vehicles[0].sidecode = 4;
        assert!(matches!(
            s.validate(),
            Err(SynthError::Plate { vehicle: 0, .. })
        ));
        let mut s = Scenario::small_test();
        s.vehicles[1].lane = 5;
        assert!(matches!(
            s.validate(),
            Err(SynthError::Lane { vehicle: 1, .. })
        ));
        let s = Scenario {
            width: 10,
            ..Scenario::small_test()
        };
        assert_eq!(s.validate(), Err(SynthError::FrameSize(10, 720)));
        let dir = tempfile::tempdir().expect("tempdir");
        let err = write_frames(&s, dir.path()).expect_err("invalid");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(
            std::fs::read_dir(dir.path())
                .map(|d| d.count())
                .unwrap_or(99),
            0
        );
    }

    #[test]
    fn write_frames_writes_decodable_jpegs_in_order() {
        let s = Scenario {
            frames: 3,
            width: 320,
            height: 180,
            ..Scenario::small_test()
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("frames");
        let paths = write_frames(&s, &out).expect("written");
        assert_eq!(paths.len(), 3);
        for (i, p) in paths.iter().enumerate() {
            assert_eq!(
                p.file_name().and_then(|n| n.to_str()),
                Some(format!("frame_{i:05}.jpg").as_str())
            );
            let img = image::open(p).expect("decodes").to_rgb8();
            assert_eq!((img.width(), img.height()), (320, 180));
            // JPEG is lossy but close to the rendered frame.
            let want = render_frame(&s, i as u32);
            let diff: f64 = img
                .as_raw()
                .iter()
                .zip(want.as_raw())
                .map(|(a, b)| f64::from((i16::from(*a) - i16::from(*b)).abs()))
                .sum::<f64>()
                / want.as_raw().len() as f64;
            assert!(diff < 8.0, "frame {i} mean abs diff {diff}");
        }
    }
}
