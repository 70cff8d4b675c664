//! Read: turns detected plates into text.
//!
//! Rectifies each plate from its four corners, runs a [`PlateReader`] on the
//! crops and passes the frame on with its reads. Text stays in memory; this
//! stage writes nothing to disk or to logs. The reader is chosen by
//! `read.model` ([`build_reader`]): PP-OCR ([`ppocr`]), the project's own CRNN
//! ([`crnn`]) or the two in a cascade; all decode through [`dutch`].

pub mod crnn;
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
#[derive(Clone, Debug, Default, PartialEq)]
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

/// Runs a CTC text model on a batch of `shape[0]` crops laid out in `input`
/// and hands each crop's [steps x `classes`] probabilities to `each`, in
/// order. Shared by the readers, which differ only in how they fill `input`.
pub(crate) fn run_ctc(
    session: &mut ort::session::Session,
    shape: [usize; 4],
    input: &[f32],
    classes: usize,
    mut each: impl FnMut(usize, &[f32]),
) -> Result<(), ReadError> {
    let n = shape[0];
    let tensor = ort::value::TensorRef::from_array_view((shape, input))
        .map_err(|e| ReadError::Inference(e.to_string()))?;
    let outputs = session
        .run(ort::inputs![tensor])
        .map_err(|e| ReadError::Inference(e.to_string()))?;
    let (out_shape, data) = outputs[0]
        .try_extract_tensor::<f32>()
        .map_err(|e| ReadError::Output(e.to_string()))?;
    if out_shape.len() != 3 || out_shape[0] as usize != n || out_shape[2] as usize != classes {
        return Err(ReadError::Output(format!(
            "got {out_shape:?}, expected [{n}, steps, {classes}]"
        )));
    }
    let per_crop = data.len() / n.max(1);
    for (k, p) in data.chunks_exact(per_crop.max(1)).enumerate() {
        each(k, p);
    }
    Ok(())
}

/// Anything that reads plate text from rectified crops.
pub trait PlateReader: Send {
    /// One result per crop, in order.
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<TextRead>, ReadError>;
}

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::config::{ReadConfig, ReaderModel};
use crate::message::{DetectedFrame, Detection, PlateRead, ReadFrame};
use crate::metrics::{inc, Metrics};
use crate::models::{ModelError, ModelSet, OWN_READER_ID, READER_ID};

/// The reader `cfg.model` names, its model files checked and loaded.
pub fn build_reader(
    models: &ModelSet,
    cfg: &ReadConfig,
) -> Result<Box<dyn PlateReader>, ModelError> {
    Ok(match cfg.model {
        ReaderModel::Own => Box::new(crnn::CrnnReader::new(models)?),
        ReaderModel::Ppocr => Box::new(ppocr::PpOcrReader::new(models)?),
        ReaderModel::Cascade => Box::new(crnn::CascadeReader::new(
            crnn::CrnnReader::new(models)?,
            ppocr::PpOcrReader::new(models)?,
            cfg.cascade_below,
        )),
    })
}

/// Manifest ids of the models `model` reads with.
pub fn model_ids(model: ReaderModel) -> &'static [&'static str] {
    match model {
        ReaderModel::Own => &[OWN_READER_ID],
        ReaderModel::Ppocr => &[READER_ID],
        ReaderModel::Cascade => &[OWN_READER_ID, READER_ID],
    }
}

/// Rectifies every detection in `image` and reads it. A plate whose corners
/// leave its layout in doubt ([`rectify::is_squat`]) is read twice, as one
/// line widened to a single-line plate's aspect and as two lines split at
/// the gap between them, and the more confident read is kept: the detector's
/// corners cannot tell a two-line plate from a single-line one seen at a
/// steep angle. Detections whose corners make no plate shape are dropped.
pub fn rectify_and_read(
    reader: &mut dyn PlateReader,
    image: &RgbImage,
    detections: Vec<Detection>,
) -> Result<Vec<(Detection, RgbImage, TextRead)>, ReadError> {
    struct Plan {
        detection: Detection,
        crop: RgbImage,
        /// Index of the first of this plate's crops in the batch.
        first: usize,
        /// Besides the crop as measured: a one-line crop, then the two lines.
        squat: bool,
    }
    let mut batch: Vec<RgbImage> = Vec::new();
    let mut plans = Vec::new();
    for detection in detections {
        let Some(crop) = rectify::rectify(image, &detection.corners) else {
            continue;
        };
        let first = batch.len();
        let split = if rectify::is_squat(&detection.corners) {
            rectify::rectify_one_line(image, &detection.corners).zip(rectify::split_lines(&crop))
        } else {
            None
        };
        let squat = split.is_some();
        match split {
            Some((one_line, (top, bottom))) => batch.extend([one_line, top, bottom]),
            None => batch.push(crop.clone()),
        }
        plans.push(Plan {
            detection,
            crop,
            first,
            squat,
        });
    }
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let mut texts = reader.read(&batch)?;
    if texts.len() != batch.len() {
        return Err(ReadError::Output(format!(
            "{} reads for {} crops",
            texts.len(),
            batch.len()
        )));
    }
    let mut out = Vec::with_capacity(plans.len());
    for plan in plans {
        let i = plan.first;
        if !plan.squat {
            out.push((plan.detection, plan.crop, std::mem::take(&mut texts[i])));
            continue;
        }
        let one_line = std::mem::take(&mut texts[i]);
        let two_lines = join_lines(&texts[i + 1], &texts[i + 2]);
        let (crop, text) = match two_lines {
            Some(t) if t.confidence > one_line.confidence => (plan.crop, t),
            _ => (std::mem::take(&mut batch[i]), one_line),
        };
        out.push((plan.detection, crop, text));
    }
    Ok(out)
}

/// The read of a two-line plate from the reads of its lines, or `None` when
/// a line holds too little to be part of a plate (two characters at least:
/// the short rows of motorcycle plates have two or three).
fn join_lines(top: &TextRead, bottom: &TextRead) -> Option<TextRead> {
    if top.text.chars().count() < 2 || bottom.text.chars().count() < 2 {
        return None;
    }
    Some(TextRead {
        text: format!("{}{}", top.text, bottom.text),
        char_confidences: top
            .char_confidences
            .iter()
            .chain(&bottom.char_confidences)
            .copied()
            .collect(),
        // Both lines must be right for the plate to be.
        confidence: top.confidence * bottom.confidence,
        // The Dutch prior knows single-line sidecodes only.
        country: None,
        sidecode: None,
    })
}

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
        let plates = match rectify_and_read(reader.as_mut(), &frame.image, detections) {
            Ok(p) => p,
            Err(e) => {
                inc(&metrics.read_errors);
                tracing::error!(camera = %frame.camera, error = %e, "reading failed; frame's plates skipped");
                Vec::new()
            }
        };
        let mut reads = Vec::new();
        let camera = metrics.camera(&frame.camera);
        for (detection, crop, text) in plates {
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
                country: text.country,
                crop: Arc::new(crop),
            });
        }
        inc(&camera.frames_processed);
        if out.blocking_send(ReadFrame { frame, reads }).is_err() {
            break;
        }
    }
}
