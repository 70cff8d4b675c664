//! What the pipeline knows of a reader model: crops in, [`Look`]s out. The
//! readers themselves ([`super::crnn`], [`super::ppocr`]) implement
//! [`PlateReader`]; [`super::build_reader`] makes the one the config names.

use image::RgbImage;

use crate::message::PlateText;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("reader inference failed: {0}")]
    Inference(String),
    #[error("reader output has an unexpected shape: {0}")]
    Output(String),
}

/// Where a read's characters lie across its crop: the centres of the time
/// steps that emitted its first and its last character, as fractions of the
/// crop's width (0 = left edge, 1 = right edge).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extent {
    pub first: f32,
    pub last: f32,
}

/// What a reader made of one crop: the text, and where its characters lie
/// when the reader can tell (a CTC reader knows which time steps emitted
/// characters). Without an extent, [`rectify_and_read`] never widens that crop.
#[derive(Clone, Debug, PartialEq)]
pub struct Look {
    pub text: PlateText,
    pub extent: Option<Extent>,
}

impl Look {
    /// A look with no extent: the reader cannot tell where its characters lie.
    pub fn unlocated(text: PlateText) -> Self {
        Look { text, extent: None }
    }
}

/// Anything that reads plate text from rectified crops.
pub trait PlateReader: Send {
    /// One look per crop, in order.
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError>;
}
