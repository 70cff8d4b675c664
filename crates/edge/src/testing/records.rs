//! Small, deterministic violations for tests (unit and integration) and the demo.
//!
//! Nothing here reads files, cameras or models; the images are a few dozen
//! pixels of synthetic colour, so no real vehicle ever appears in a test record.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use image::{Rgb, RgbImage};

use crate::clock::SyncState;
use crate::clock::Timestamp;
use crate::message::{BestFrame, BoxF, Decision, Direction, Passage, PlateText, Violation};

use crate::keys::EvidenceSigner;
use crate::store::RecordContext;

/// The fixed evidence key of test devices; tests give the receiver its public half.
pub fn sample_signer() -> EvidenceSigner {
    EvidenceSigner::from_seed([7; 32])
}

fn at(ms: i64) -> Timestamp {
    let base: DateTime<Utc> = Utc
        .with_ymd_and_hms(2027, 1, 4, 7, 0, 0)
        .single()
        .unwrap_or_default();
    Timestamp {
        mono: Duration::from_millis(ms.max(0) as u64),
        wall: base + chrono::Duration::milliseconds(ms),
        sync: SyncState {
            synchronised: true,
            max_error_us: 1500,
        },
    }
}

/// A candidate violation whose overview is `width`x`height` pixels of noise
/// (seeded by `seed`), so that its JPEG has about the size of a real one.
pub fn sized_violation(text: &str, width: u32, height: u32, seed: u64) -> Violation {
    let mut v = sample_violation(text);
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let image = RgbImage::from_fn(width, height, |_, _| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let b = (x >> 33).to_le_bytes();
        Rgb([b[0], b[1], b[2]])
    });
    v.passage.best.image = Arc::new(image);
    v
}

/// A candidate violation for plate `text`, with tiny synthetic images whose
/// pixels depend on the text (so different plates have different hashes).
pub fn sample_violation(text: &str) -> Violation {
    let seed = text
        .bytes()
        .fold(17u8, |a, b| a.wrapping_mul(31).wrapping_add(b));
    let image = RgbImage::from_fn(64, 48, |x, y| {
        Rgb([seed, (x * 4) as u8, (y * 5) as u8 ^ seed])
    });
    let crop = RgbImage::from_fn(32, 8, |x, _| Rgb([255, 200 - x as u8, seed]));
    let n = text.chars().count();
    Violation {
        passage: Passage {
            camera: Arc::from("north"),
            first_seen: at(0),
            last_seen: at(900),
            frames: 9,
            reads: 7,
            plate: PlateText {
                text: text.to_string(),
                char_confidences: vec![0.97; n],
                confidence: 0.95,
                country: Some("NL"),
            },
            alternatives: vec![],
            direction: Direction::Towards,
            lane: None,
            best: BestFrame {
                captured: at(400),
                frame_seq: 1234,
                image: Arc::new(image),
                plate_box: BoxF {
                    x1: 10.0,
                    y1: 30.0,
                    x2: 42.0,
                    y2: 38.0,
                },
                crop: Arc::new(crop),
            },
        },
        decision: Decision {
            rule: "hit_list_no_exemption".into(),
            hit_list_version: "hits-2027-01-03".into(),
            exemption_list_version: "exempt-2027-01-03".into(),
            entry_id: "entry-42".into(),
            zone_id: "ams-ze".into(),
            key_id: "k2027".into(),
            banned_from: "2027-01-01".into(),
        },
    }
}

/// A record context for device `cam-post-17`.
pub fn sample_context() -> RecordContext {
    RecordContext {
        device_id: "cam-post-17".into(),
        location: "Stationsplein, entry 2".into(),
        latitude: Some(52.0907),
        longitude: Some(5.1214),
        camera_facing: "north, into the zone".into(),
        model_versions: "detector=test;reader=test".into(),
        jpeg_quality: 85,
        signer: sample_signer(),
    }
}
