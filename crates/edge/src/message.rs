//! The messages that pass between pipeline stages.
//!
//! These are plain data. A stage owns its own state and sees the others only
//! through these types. Images travel behind `Arc` so that handing a frame on
//! never copies pixels.

use std::sync::Arc;

use image::RgbImage;

use crate::clock::Timestamp;

/// One captured, decoded frame.
#[derive(Clone, Debug)]
pub struct Frame {
    pub camera: Arc<str>,
    /// Per-camera sequence number, starting at 0; gaps mean frames dropped at capture.
    pub seq: u64,
    pub captured: Timestamp,
    pub image: Arc<RgbImage>,
}

/// An axis-aligned box in frame pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxF {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
}

impl BoxF {
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
    pub fn area(&self) -> f32 {
        self.width() * self.height()
    }
    pub fn center(&self) -> (f32, f32) {
        ((self.x1 + self.x2) / 2.0, (self.y1 + self.y2) / 2.0)
    }
    pub fn iou(&self, other: &BoxF) -> f32 {
        let ix = (self.x2.min(other.x2) - self.x1.max(other.x1)).max(0.0);
        let iy = (self.y2.min(other.y2) - self.y1.max(other.y1)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// A plate found in a frame: its box, its four corners (top-left, top-right,
/// bottom-right, bottom-left, in frame pixels) and the detector's score.
#[derive(Clone, Debug, PartialEq)]
pub struct Detection {
    pub bbox: BoxF,
    pub corners: [(f32, f32); 4],
    pub score: f32,
}

/// A frame with the plates the detector found in it.
#[derive(Clone, Debug)]
pub struct DetectedFrame {
    pub frame: Frame,
    pub detections: Vec<Detection>,
}

/// A plate as read: the text with its confidences and country. One type from
/// the reader through the tracker's vote to the stored record.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PlateText {
    /// Upper-case A-Z and 0-9 only, separators stripped.
    pub text: String,
    /// One confidence per character of `text`, in 0..=1.
    pub char_confidences: Vec<f32>,
    /// Confidence of the whole plate, in 0..=1.
    pub confidence: f32,
    /// The country the plate was recognised as (ISO 3166 alpha-2; `Some("NL")`
    /// where the Dutch format prior applied), `None` if unknown.
    pub country: Option<&'static str>,
}

/// The text read from one detected plate.
#[derive(Clone, Debug)]
pub struct PlateRead {
    pub detection: Detection,
    pub plate: PlateText,
    /// The rectified plate crop that was read.
    pub crop: Arc<RgbImage>,
}

/// A frame with the plates read in it. Frames with no plates are still sent on,
/// so that the tracker sees time pass.
#[derive(Clone, Debug)]
pub struct ReadFrame {
    pub frame: Frame,
    pub reads: Vec<PlateRead>,
}

/// Direction of travel relative to the camera.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Towards,
    Away,
    Unknown,
}

impl Direction {
    pub fn as_str(&self) -> &'static str {
        match self {
            Direction::Towards => "towards",
            Direction::Away => "away",
            Direction::Unknown => "unknown",
        }
    }
}

/// The evidence for a passage: the frame in which the plate was read best.
#[derive(Clone, Debug)]
pub struct BestFrame {
    pub captured: Timestamp,
    pub frame_seq: u64,
    pub image: Arc<RgbImage>,
    pub plate_box: BoxF,
    pub crop: Arc<RgbImage>,
}

/// One vehicle's pass in front of one camera: the reads of several frames grouped.
#[derive(Clone, Debug)]
pub struct Passage {
    pub camera: Arc<str>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub frames: u32,
    pub reads: u32,
    /// The voted plate: the chosen text, its per-character and whole
    /// confidences, and the country most reads of that text were recognised
    /// as (`None` if none was).
    pub plate: PlateText,
    /// Other texts read in this passage, with their summed confidence.
    pub alternatives: Vec<(String, f32)>,
    pub direction: Direction,
    /// The camera lane holding the plate in the best frame, where lanes are configured.
    pub lane: Option<u32>,
    pub best: BestFrame,
}

/// Why a passage was judged a candidate violation.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Decision {
    /// The rule that applied, e.g. `"hit_list_no_exemption"`.
    pub rule: String,
    /// Version number of the hit-list bundle in force.
    pub hit_list_version: String,
    /// Version number of the exemption-list bundle in force (empty: none configured).
    pub exemption_list_version: String,
    /// The hit-list entry the plate matched.
    pub entry_id: String,
    /// The zone the decision was made for.
    #[serde(default)]
    pub zone_id: String,
    /// The HMAC key id the plate was looked up with.
    #[serde(default)]
    pub key_id: String,
    /// The entry's first banned date (`YYYY-MM-DD`, local to the zone).
    #[serde(default)]
    pub banned_from: String,
}

/// A candidate violation: a passage plus the policy's decision. Only these ever
/// leave memory.
#[derive(Clone, Debug)]
pub struct Violation {
    pub passage: Passage,
    pub decision: Decision,
}
