//! Read: turns detected plates into text.
//!
//! Rectifies each plate from its four corners, runs a [`PlateReader`] on the
//! crops and passes the frame on with its reads. Text stays in memory; this
//! stage writes nothing to disk or to logs.

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
}

/// Anything that reads plate text from rectified crops.
pub trait PlateReader: Send {
    /// One result per crop, in order.
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<TextRead>, ReadError>;
}
