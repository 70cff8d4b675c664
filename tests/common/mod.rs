//! What the integration tests with scripted models share: a detector that
//! finds one plate wherever a frame says so, a reader that reads what the
//! crop's colour says, the frames that say so, and a signed hit list.
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use image::{Rgb, RgbImage};

use anpr_edge::detect::{DetectError, PlateDetector};
use anpr_edge::message::{BoxF, Detection};
use anpr_edge::policy::bundle::{self, BundleMeta, KeyFiles, ListKind};
use anpr_edge::policy::hash::HmacKey;
use anpr_edge::read::{PlateReader, ReadError, TextRead};

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

/// Writes `dir/hits.bundle`: a hit list of `plates` (banned since 2025, entry
/// ids `h1`, `h2`, ...) as the backend would ship it, keyed hashes in a
/// bundle signed with fresh keys made under `dir/keys` (HMAC key id `k1`).
/// Returns those keys, for the config's `policy` section.
pub fn write_hit_list(dir: &Path, zone: &str, version: u64, plates: &[&str]) -> KeyFiles {
    let keys = bundle::generate_keys(&dir.join("keys")).expect("keys");
    let hmac = HmacKey::load("k1", &keys.hmac_key).expect("hmac key");
    let signing = bundle::load_signing_key(&keys.signing_key).expect("signing key");
    let meta = BundleMeta {
        zone: zone.into(),
        version,
        created_at: chrono::Utc::now(),
        key_id: "k1".into(),
    };
    let mut csv = String::from("plate,entry_id,banned_from\n");
    for (i, plate) in plates.iter().enumerate() {
        csv.push_str(&format!("{plate},h{},2025-01-01\n", i + 1));
    }
    let hits = bundle::build_from_csv(ListKind::Hit, &meta, &csv, &hmac, &signing).expect("bundle");
    std::fs::write(dir.join("hits.bundle"), hits).expect("write");
    keys
}

/// Reads, sure at 0.95, the text its function gives for the red value at the
/// centre of each crop: a test paints a plate's colour to say which plate it is.
pub struct ScriptedReader(pub fn(u8) -> String);

impl PlateReader for ScriptedReader {
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<TextRead>, ReadError> {
        Ok(crops
            .iter()
            .map(|c| {
                let text = (self.0)(c.get_pixel(c.width() / 2, c.height() / 2)[0]);
                TextRead {
                    char_confidences: vec![0.95; text.chars().count()],
                    text,
                    confidence: 0.95,
                    country: None,
                    sidecode: None,
                }
            })
            .collect())
    }
}
