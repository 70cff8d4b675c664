//! What the integration tests with scripted models share: a detector that
//! finds one plate wherever a frame says so, and the frames that say so.
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::time::Duration;

use image::{Rgb, RgbImage};

use anpr_edge::detect::{DetectError, PlateDetector};
use anpr_edge::message::{BoxF, Detection};

/// Where a scripted frame's plate is painted and found: 50x12 px at (10, 10).
pub const PLATE: BoxF = BoxF {
    x1: 10.0,
    y1: 10.0,
    x2: 60.0,
    y2: 22.0,
};

/// Finds one plate at [`PLATE`] in every frame whose top-left pixel is not
/// black in red.
#[derive(Default)]
pub struct ScriptedDetector {
    /// Time each frame takes, to play a slow machine.
    pub delay: Duration,
}

impl PlateDetector for ScriptedDetector {
    fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, DetectError> {
        std::thread::sleep(self.delay);
        if image.get_pixel(0, 0)[0] == 0 {
            return Ok(Vec::new());
        }
        let b = PLATE;
        Ok(vec![Detection {
            bbox: b,
            corners: [(b.x1, b.y1), (b.x2, b.y1), (b.x2, b.y2), (b.x1, b.y2)],
            score: 0.9,
        }])
    }
}

/// Marks `img` as holding a plate (its top-left pixel red) and paints the
/// plate at [`PLATE`] in flat grey `grey`: a scripted reader tells plates
/// apart by it, and a flat fill keeps it exact through rectification.
pub fn paint_plate(img: &mut RgbImage, grey: u8) {
    img.put_pixel(0, 0, Rgb([255, 0, 0]));
    for y in PLATE.y1 as u32..PLATE.y2 as u32 {
        for x in PLATE.x1 as u32..PLATE.x2 as u32 {
            img.put_pixel(x, y, Rgb([grey, grey, grey]));
        }
    }
}
