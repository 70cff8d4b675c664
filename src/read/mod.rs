//! Read: turns detected plates into text.
//!
//! Rectifies each plate from its four corners, runs a [`PlateReader`] on the
//! crops and passes the frame on with its reads. Text stays in memory; this
//! stage writes nothing to disk or to logs. The reader is chosen by
//! `read.model` ([`build_reader`]): PP-OCR ([`ppocr`]), the project's own CRNN
//! ([`crnn`]) or the two in a cascade; all decode through [`dutch`].

pub mod crnn;
pub mod dutch;
pub mod layout;
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

/// Where a read's characters lie across its crop: the centres of the time
/// steps that emitted its first and its last character, as fractions of the
/// crop's width (0 = left edge, 1 = right edge).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Extent {
    pub first: f32,
    pub last: f32,
}

/// Anything that reads plate text from rectified crops.
pub trait PlateReader: Send {
    /// One result per crop, in order.
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<TextRead>, ReadError>;

    /// As [`PlateReader::read`], with each read's [`Extent`] where the reader
    /// can tell it (a CTC reader knows which time steps emitted characters).
    /// Without one, [`rectify_and_read`] never widens that crop.
    fn read_located(
        &mut self,
        crops: &[RgbImage],
    ) -> Result<Vec<(TextRead, Option<Extent>)>, ReadError> {
        Ok(self.read(crops)?.into_iter().map(|t| (t, None)).collect())
    }
}

/// The [`Extent`] of the characters in one crop's CTC slot matrix, of which the
/// first `content_steps` steps cover the crop (the rest is batch padding):
/// the first and last step whose best slot is a plate character. `None` when
/// no step is.
pub(crate) fn ink_extent(slots: &[[f32; ppocr::SLOTS]], content_steps: usize) -> Option<Extent> {
    let is_char = |s: &[f32; ppocr::SLOTS]| {
        let best = s
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        (1..=36).contains(&best)
    };
    let n = content_steps.min(slots.len());
    let first = slots[..n].iter().position(is_char)?;
    let last = slots[..n].iter().rposition(is_char)?;
    let at = |step: usize| (step as f32 + 0.5) / n as f32;
    Some(Extent {
        first: at(first),
        last: at(last),
    })
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

/// A read whose first or last character lies this close to its crop's edge
/// (a fraction of the crop's width; the crop's own margin is
/// [`rectify::MARGIN_X`]) may have lost characters beyond it: the detector's
/// corners fell short of the plate's end.
pub const EDGE_TOUCH: f32 = 0.09;
/// How far such a crop is lengthened on the side it touches, as a fraction of
/// the plate's measured width: room for two characters of a six-character
/// plate whose box ends mid-plate.
pub const WIDEN_BY: f32 = 0.25;
/// Rounds of lengthening, each by a further [`WIDEN_BY`].
pub const WIDEN_ROUNDS: usize = 2;
/// Most characters a European plate carries.
pub const MAX_PLATE_CHARS: usize = 8;
/// How much more confident a lengthened Dutch read must be to replace a
/// Dutch read: clearly, not by the noise between two looks at one plate.
pub const WIDER_GAIN: f32 = 0.1;
/// Least confidence of a widened read for it to replace the read it extends.
pub const WIDENED_MIN_CONFIDENCE: f32 = 0.5;

/// Rectifies every detection in `image` and reads it. A plate whose corners
/// leave its layout in doubt ([`rectify::is_squat`]) is read twice, as one
/// line widened to a single-line plate's aspect and as two lines split at
/// the gap between them, and the more confident read is kept: the detector's
/// corners cannot tell a two-line plate from a single-line one seen at a
/// steep angle. A single-line read whose characters reach the crop's edge
/// ([`EDGE_TOUCH`]) is read again from corners lengthened on that side
/// ([`WIDEN_BY`]), and the longer read replaces it when it only adds
/// characters ([`prefer_widened`]). A plate's final read that format
/// knowledge finds off ([`dutch::off_format`]) keeps its text at a lower
/// confidence. Detections whose corners make no plate shape are dropped.
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
    let mut texts = reader.read_located(&batch)?;
    if texts.len() != batch.len() {
        return Err(ReadError::Output(format!(
            "{} reads for {} crops",
            texts.len(),
            batch.len()
        )));
    }
    let mut out = Vec::with_capacity(plans.len());
    // (index into `out`, left, right): reads that reach an edge on that side.
    let mut widen: Vec<(usize, bool, bool)> = Vec::new();
    for plan in plans {
        let i = plan.first;
        if !plan.squat {
            let (text, extent) = std::mem::take(&mut texts[i]);
            // A yellow crop that spells no Dutch plate is likely a Dutch plate
            // cut short (`H803` of `H803SF`): look on both sides.
            let off_format =
                !dutch::is_dutch_plate(&text.text) && dutch::looks_dutch_yellow(&plan.crop);
            let (left, right) = if off_format {
                (true, true)
            } else {
                touches(extent)
            };
            if left || right {
                widen.push((out.len(), left, right));
            }
            out.push((plan.detection, plan.crop, text));
            continue;
        }
        let one_line = std::mem::take(&mut texts[i].0);
        let two_lines = join_lines(&texts[i + 1].0, &texts[i + 2].0);
        let (crop, text) = match two_lines {
            Some(t) if t.confidence > one_line.confidence => (plan.crop, t),
            _ => (std::mem::take(&mut batch[i]), one_line),
        };
        out.push((plan.detection, crop, text));
    }
    // A second round lengthens further where the lengthened read still
    // reaches the edge: a box that ended mid-plate may have cut off more.
    for round in 1..=WIDEN_ROUNDS {
        if widen.is_empty() {
            break;
        }
        let by = WIDEN_BY * round as f32;
        let mut crops = Vec::with_capacity(widen.len());
        let mut asked = Vec::with_capacity(widen.len());
        for (k, left, right) in widen {
            let corners = rectify::extend_corners(&out[k].0.corners, left, right, by);
            if let Some(crop) = rectify::rectify(image, &corners) {
                crops.push(crop);
                asked.push((k, left, right));
            }
        }
        if crops.is_empty() {
            break;
        }
        let wide_reads = reader.read_located(&crops)?;
        if wide_reads.len() != crops.len() {
            return Err(ReadError::Output(format!(
                "{} reads for {} crops",
                wide_reads.len(),
                crops.len()
            )));
        }
        let mut again = Vec::new();
        for ((k, left, right), (crop, (wide, extent))) in
            asked.into_iter().zip(crops.into_iter().zip(wide_reads))
        {
            let entry = &mut out[k];
            if prefer_widened(&entry.2, &wide) {
                entry.1 = crop;
                entry.2 = wide;
                let (l, r) = touches(extent);
                if !(l || r) {
                    continue;
                }
                if round == WIDEN_ROUNDS {
                    // Still cut after the widest look: characters may be
                    // missing that no crop showed.
                    dutch::discount(&mut entry.2, dutch::OFF_FORMAT_FACTOR);
                } else {
                    again.push((k, left || l, right || r));
                }
            }
        }
        widen = again;
    }
    for (_, crop, text) in &mut out {
        if dutch::off_format(text, dutch::looks_dutch_yellow(crop)) {
            dutch::discount(text, dutch::OFF_FORMAT_FACTOR);
        }
    }
    Ok(out)
}

/// Whether a read's characters reach the left and the right edge of its crop.
fn touches(extent: Option<Extent>) -> (bool, bool) {
    extent.map_or((false, false), |e| {
        (e.first < EDGE_TOUCH, e.last > 1.0 - EDGE_TOUCH)
    })
}

/// Whether the read of a lengthened crop, `wide`, should replace `orig`, the
/// read of the crop as detected, which reached the crop's edge. Never when
/// `wide` is too unsure to vote ([`WIDENED_MIN_CONFIDENCE`]). A read the
/// Dutch prior decided (a whole Dutch plate) is replaced only by a clearly
/// more confident Dutch read ([`WIDER_GAIN`]): lengthening is what pulls the plate frame or the
/// bumper in as a character, and a Dutch plate needs nothing added. A read it
/// did not decide is replaced by a Dutch read (the lengthened crop shows the
/// whole plate: `17TRSH` becomes `77TRSH`), or by a read that only adds
/// characters to it (holds its text whole) within a plate's length
/// ([`MAX_PLATE_CHARS`]): `1CMV33` becomes `1CMV331`.
pub fn prefer_widened(orig: &TextRead, wide: &TextRead) -> bool {
    if wide.confidence < WIDENED_MIN_CONFIDENCE {
        return false;
    }
    match (orig.country.is_some(), wide.country.is_some()) {
        (true, true) => wide.confidence >= orig.confidence + WIDER_GAIN,
        (true, false) => false,
        (false, true) => true,
        (false, false) => {
            let n = wide.text.chars().count();
            n > orig.text.chars().count()
                && n <= MAX_PLATE_CHARS
                && wide.text.contains(orig.text.as_str())
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::BoxF;
    use ppocr::SLOTS;

    fn read(text: &str, confidence: f32, dutch: bool) -> TextRead {
        TextRead {
            text: text.into(),
            char_confidences: vec![confidence; text.len()],
            confidence,
            country: dutch.then_some(dutch::NL),
            sidecode: None,
        }
    }

    #[test]
    fn ink_extent_spans_the_character_steps_of_the_crop_only() {
        // 10 steps of content, then 10 of padding with a stray character.
        let mut slots = vec![[0f32; SLOTS]; 20];
        for s in &mut slots {
            s[0] = 1.0;
        }
        for (t, slot) in [(2, 5), (3, 5), (7, 30), (15, 12)] {
            slots[t][0] = 0.0;
            slots[t][slot] = 0.9;
        }
        let e = ink_extent(&slots, 10).expect("characters");
        assert_eq!((e.first, e.last), (0.25, 0.75));
        let blank = vec![slots[0]; 4];
        assert_eq!(ink_extent(&blank, 4), None);
    }

    #[test]
    fn a_widened_read_replaces_only_what_it_completes() {
        // Adds characters to a foreign read: taken; junk or too long: not.
        assert!(prefer_widened(
            &read("1CMV33", 0.99, false),
            &read("1CMV331", 0.97, false)
        ));
        assert!(!prefer_widened(
            &read("1CMV33", 0.99, false),
            &read("ICMV33", 0.99, false)
        ));
        assert!(!prefer_widened(
            &read("1CMV33", 0.99, false),
            &read("1CMV331", 0.4, false)
        ));
        assert!(!prefer_widened(
            &read("AB12CDE", 0.9, false),
            &read("AB12CDE11", 0.9, false)
        ));
        // A Dutch read where there was none: taken (`17TRSH` to `77TRSH`).
        assert!(prefer_widened(
            &read("17TRSH", 0.5, false),
            &read("77TRSH", 0.99, true)
        ));
        // A Dutch read stays against a foreign one, and against a Dutch one
        // only a little surer (`62PBVT` 0.90 against `62PBV1` 0.96).
        assert!(!prefer_widened(
            &read("62PBVT", 0.9, true),
            &read("L62PBVT", 0.99, false)
        ));
        assert!(!prefer_widened(
            &read("62PBVT", 0.9, true),
            &read("62PBV1", 0.96, true)
        ));
        assert!(prefer_widened(
            &read("35GJ45", 0.8, true),
            &read("85GJ45", 0.99, true)
        ));
    }

    /// A reader that sees a plate `PLATE` whose right part lies beyond the
    /// detected box: the wider the crop, the more of it it reads, the last
    /// character at the crop's right edge until the crop shows it all.
    struct CutReader {
        /// Crop width (px) at which the whole plate shows.
        whole_at: u32,
        calls: usize,
    }

    const PLATE: &str = "1CMV331";

    impl PlateReader for CutReader {
        fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<TextRead>, ReadError> {
            Ok(self.read_located(crops)?.into_iter().map(|r| r.0).collect())
        }

        fn read_located(
            &mut self,
            crops: &[RgbImage],
        ) -> Result<Vec<(TextRead, Option<Extent>)>, ReadError> {
            self.calls += 1;
            Ok(crops
                .iter()
                .map(|c| {
                    let shown = ((c.width() * 7) / self.whole_at).clamp(1, 7) as usize;
                    let last = if shown == 7 { 0.85 } else { 0.97 };
                    let r = read(&PLATE[..shown], 0.95, false);
                    (r, Some(Extent { first: 0.12, last }))
                })
                .collect())
        }
    }

    fn detection() -> Detection {
        // A 4.5:1 box, 90 x 20 px, on a 400 x 200 frame.
        let (x1, y1, x2, y2) = (100.0, 80.0, 190.0, 100.0);
        Detection {
            bbox: BoxF { x1, y1, x2, y2 },
            corners: [(x1, y1), (x2, y1), (x2, y2), (x1, y2)],
            score: 0.9,
        }
    }

    #[test]
    fn a_read_cut_at_the_crop_edge_is_read_again_from_a_longer_crop() {
        let image = RgbImage::from_pixel(400, 200, image::Rgb([200, 200, 200]));
        let plain = rectify::rectify(&image, &detection().corners).expect("crop");
        // The first lengthening (by WIDEN_BY) shows the whole plate.
        let mut reader = CutReader {
            whole_at: plain.width() + plain.width() / 5,
            calls: 0,
        };
        let out = rectify_and_read(&mut reader, &image, vec![detection()]).expect("read");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].2.text, PLATE);
        assert_eq!(out[0].2.confidence, 0.95);
        assert!(out[0].1.width() > plain.width(), "the longer crop is kept");
        assert_eq!(reader.calls, 2);
    }

    #[test]
    fn a_read_still_cut_after_the_longest_crop_is_not_confident() {
        let image = RgbImage::from_pixel(400, 200, image::Rgb([200, 200, 200]));
        let plain = rectify::rectify(&image, &detection().corners).expect("crop");
        // Each lengthening shows one more character, the last never.
        let mut reader = CutReader {
            whole_at: plain.width() * 8 / 5,
            calls: 0,
        };
        let out = rectify_and_read(&mut reader, &image, vec![detection()]).expect("read");
        assert_eq!(reader.calls, 1 + WIDEN_ROUNDS);
        let r = &out[0].2;
        assert!(
            PLATE.starts_with(&r.text) && r.text.len() < PLATE.len(),
            "{r:?}"
        );
        assert!(r.confidence < 0.8, "{r:?}");
    }

    #[test]
    fn a_read_clear_of_the_edges_is_read_once() {
        struct Clear(usize);
        impl PlateReader for Clear {
            fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<TextRead>, ReadError> {
                self.0 += 1;
                Ok(crops.iter().map(|_| read("ZG1234AB", 0.9, false)).collect())
            }
        }
        let image = RgbImage::from_pixel(400, 200, image::Rgb([200, 200, 200]));
        let mut reader = Clear(0);
        let out = rectify_and_read(&mut reader, &image, vec![detection()]).expect("read");
        assert_eq!(out[0].2.text, "ZG1234AB");
        assert_eq!(out[0].2.confidence, 0.9);
        assert_eq!(reader.0, 1, "no extent known: never lengthened");
    }

    #[test]
    fn a_plate_read_that_fits_no_layout_keeps_its_text_at_a_lower_confidence() {
        struct Fixed;
        impl PlateReader for Fixed {
            fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<TextRead>, ReadError> {
                Ok(crops.iter().map(|_| read("17859AM", 0.95, false)).collect())
            }
        }
        let image = RgbImage::from_pixel(400, 200, image::Rgb([200, 200, 200]));
        let out = rectify_and_read(&mut Fixed, &image, vec![detection()]).expect("read");
        let r = &out[0].2;
        assert_eq!(r.text, "17859AM");
        assert!(
            (r.confidence - 0.95 * dutch::OFF_FORMAT_FACTOR).abs() < 1e-6,
            "{r:?}"
        );
    }
}
