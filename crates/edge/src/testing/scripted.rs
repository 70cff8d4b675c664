//! Scripted models: a detector that finds one plate wherever a frame says so,
//! a reader that reads what the crop's colour says, the frames that say so,
//! and a signed hit list of those plates.

use std::path::Path;
use std::time::Duration;

use image::{Rgb, RgbImage};

use crate::detect::{DetectError, PlateDetector};
use crate::message::{BoxF, Detection};
use crate::read::{Look, PlateReader, PlateText, ReadError};
use anpr_wire::bundle::{self, BundleMeta, Entries, HitEntry};
use anpr_wire::hash::{self, HmacKey};

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

/// The keys of a test backend's lists, as files under a folder.
#[derive(Clone, Debug)]
pub struct ListKeys {
    /// HMAC key `k1`, base64: for `policy.hmac_keys`.
    pub hmac_key: std::path::PathBuf,
    /// The bundle signing key's public half, base64: `policy.public_key`.
    pub public_key_base64: String,
    /// The signing key itself, for tests that sign further bundles.
    pub signing_key: ed25519_dalek::SigningKey,
}

/// Writes `dir/hits.bundle`: a hit list of `plates` (banned since 2025, entry
/// ids `h1`, `h2`, ...) as the backend would ship it, keyed hashes in a
/// bundle signed with fixed test keys written under `dir/keys` (`hmac.key`,
/// id `k1`, and `signing.key`). Returns those keys, for the config's `policy` section.
pub fn write_hit_list(dir: &Path, zone: &str, version: u64, plates: &[&str]) -> ListKeys {
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).expect("keys folder");
    let secret = [42u8; 32];
    let hmac_key = keys_dir.join("hmac.key");
    std::fs::write(&hmac_key, format!("{}\n", hash::to_base64(&secret))).expect("hmac key");
    let hmac = HmacKey::new("k1", &secret).expect("hmac key");
    let seed = [9u8; 32];
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    // As `anpr-lab lists keygen` writes it, for tests that sign more bundles.
    std::fs::write(
        keys_dir.join("signing.key"),
        format!("{}\n", hash::to_base64(&seed)),
    )
    .expect("signing key");
    let meta = BundleMeta {
        zone: zone.into(),
        version,
        created_at: chrono::Utc::now(),
        key_id: "k1".into(),
    };
    let ids: Vec<String> = (1..=plates.len()).map(|i| format!("h{i}")).collect();
    let rows: Vec<HitRow<'_>> = plates
        .iter()
        .zip(&ids)
        .map(|(plate, id)| HitRow {
            plate,
            entry_id: id,
            vehicle_class: None,
        })
        .collect();
    let hits = hit_bundle(&meta, &rows, &hmac, &signing);
    std::fs::write(dir.join("hits.bundle"), hits).expect("write");
    ListKeys {
        hmac_key,
        public_key_base64: hash::to_base64(signing.verifying_key().as_bytes()),
        signing_key: signing,
    }
}

/// One hit-list row in plain text, as a test writes it; banned since 2025-01-01.
#[derive(Clone, Copy, Debug)]
pub struct HitRow<'a> {
    pub plate: &'a str,
    pub entry_id: &'a str,
    pub vehicle_class: Option<&'a str>,
}

/// A signed hit-list bundle of `rows`, their plates hashed with `hmac`.
pub fn hit_bundle(
    meta: &BundleMeta,
    rows: &[HitRow<'_>],
    hmac: &HmacKey,
    signing: &ed25519_dalek::SigningKey,
) -> Vec<u8> {
    let entries = rows
        .iter()
        .map(|r| HitEntry {
            hash: hmac.hash_plate(r.plate),
            entry_id: r.entry_id.to_string(),
            banned_from: chrono::NaiveDate::from_ymd_opt(2025, 1, 1).expect("date"),
            vehicle_class: r.vehicle_class.map(str::to_string),
        })
        .collect();
    bundle::encode(meta, Entries::Hit(entries), signing).expect("bundle")
}

/// Reads, sure at 0.95, the text its function gives for the red value at the
/// centre of each crop: a test paints a plate's colour to say which plate it is.
pub struct ScriptedReader(pub fn(u8) -> String);

impl PlateReader for ScriptedReader {
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
        Ok(crops
            .iter()
            .map(|c| {
                let text = (self.0)(c.get_pixel(c.width() / 2, c.height() / 2)[0]);
                Look::unlocated(PlateText {
                    char_confidences: vec![0.95; text.chars().count()],
                    text,
                    confidence: 0.95,
                    country: None,
                })
            })
            .collect())
    }
}
