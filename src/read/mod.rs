//! Read: turns detected plates into text.
//!
//! Rectifies each plate from its four corners, runs a [`PlateReader`] on the
//! crops and passes the frame on with its reads. Text stays in memory; this
//! stage writes nothing to disk or to logs.

pub mod dutch;
pub mod ppocr;
pub mod rectify;

use image::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reader inference failed: {0}")]
    Inference(String),
    #[error("reader output has an unexpected shape: {0}")]
    Output(String),
}

/// What a reader made of one plate crop.
#[derive(Clone, Debug, PartialEq)]
pub struct TextRead {
    /// Upper-case A-Z and 0-9 only, separators stripped.
    pub text: String,
    /// One per character of `text`.
    pub char_confidences: Vec<f32>,
    /// The whole plate's confidence, 0..=1.
    pub confidence: f32,
    /// `Some("NL")` when a Dutch format prior decided the read
    /// ([`dutch::decode`]); `None` for an unconstrained read.
    pub country: Option<&'static str>,
    /// The Dutch sidecode (1 to 14) the read was constrained to, if any.
    pub sidecode: Option<u8>,
}

/// Anything that reads plate text from rectified crops.
pub trait PlateReader: Send {
    /// One result per crop, in order.
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<TextRead>, ReadError>;
}

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::ReadConfig;
use crate::message::{DetectedFrame, PlateRead, ReadFrame};
use crate::metrics::{inc, Metrics};

/// Keeps a read only if it looks like a plate and is confident enough to vote.
pub fn acceptable(read: &TextRead, cfg: &ReadConfig) -> bool {
    read.text.chars().count() >= cfg.min_chars && read.confidence >= cfg.min_confidence
}

/// The read stage: rectifies and reads every detection of each frame, and
/// passes the frame on (also when nothing was read, so the tracker sees time
/// pass). Blocking: run it on its own thread. Ends when its input closes.
pub fn run_stage(
    mut reader: Box<dyn PlateReader>,
    cfg: ReadConfig,
    mut input: mpsc::Receiver<DetectedFrame>,
    out: mpsc::Sender<ReadFrame>,
    metrics: Arc<Metrics>,
) {
    while let Some(DetectedFrame { frame, detections }) = input.blocking_recv() {
        // A detection whose corners make no plate shape is dropped here.
        let (detections, crops): (Vec<_>, Vec<image::RgbImage>) = detections
            .into_iter()
            .filter_map(|d| rectify::rectify(&frame.image, &d.corners).map(|c| (d, c)))
            .unzip();
        let texts = if crops.is_empty() {
            Vec::new()
        } else {
            match reader.read(&crops) {
                Ok(t) => t,
                Err(e) => {
                    inc(&metrics.read_errors);
                    tracing::error!(camera = %frame.camera, error = %e, "reading failed; frame's plates skipped");
                    Vec::new()
                }
            }
        };
        let mut reads = Vec::new();
        let camera = metrics.camera(&frame.camera);
        for ((detection, crop), text) in detections.into_iter().zip(crops).zip(texts) {
            if !acceptable(&text, &cfg) {
                inc(&metrics.reads_rejected);
                continue;
            }
            inc(&metrics.plates_read);
            inc(&camera.reads);
            reads.push(PlateRead {
                detection,
                text: text.text,
                char_confidences: text.char_confidences,
                confidence: text.confidence,
                crop: Arc::new(crop),
            });
        }
        inc(&camera.frames_processed);
        if out.blocking_send(ReadFrame { frame, reads }).is_err() {
            break;
        }
    }
}
