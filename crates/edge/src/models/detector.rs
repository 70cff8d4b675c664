//! What the pipeline knows of a detector model: an image in, plates with
//! boxes and corners out. The registry detector ([`super::retina`])
//! implements [`PlateDetector`].

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
