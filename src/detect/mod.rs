//! Detect: finds plates in frames.
//!
//! Takes frames from the capture queue, runs a [`PlateDetector`] on each and
//! passes the frame on with its detections. It never reads text and never
//! writes anything to disk; frames leave it only through its output channel.

pub mod retina;

use image::RgbImage;

use crate::message::Detection;

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("detector inference failed: {0}")]
    Inference(String),
    #[error("detector output has an unexpected shape: {0}")]
    Output(String),
}

/// Anything that finds plates in an image. Implementations may keep scratch
/// buffers, hence `&mut self`.
pub trait PlateDetector: Send {
    /// Plates in `image`, best first, with boxes and corners in its pixels.
    fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, DetectError>;
}
