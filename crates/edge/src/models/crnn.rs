//! The project's own plate reader: a small CRNN trained on rendered plates
//! (`models/plate_crnn.onnx`, recipe in `models/training/`).
//!
//! Input: the rectified crop in grey (ITU-R 601 luma, as PIL's `L` mode
//! computes it in training), resized to 32x128 with a triangle filter
//! whatever its aspect, scaled to -1..1; a batch is `[N, 1, 32, 128]`. Output
//! `[N, 32, 37]`: per time step a softmax over the CTC blank (class 0) and the
//! 36 plate characters in the order of `PLATE_CHARS`, i.e. exactly the
//! decoding slots 0..=36 of [`crate::models::ppocr`] (the model has no
//! separator class; slot `SLOT_SEP` stays 0). Decoding is the same as for
//! PP-OCR: [`dutch::decode`] with the crop's yellow hint, so Dutch plates get
//! the sidecode prior and per-character confidences, foreign ones the greedy
//! read. It never sees frames, only crops, and writes nothing anywhere.
//!
//! [`CascadeReader`] puts this reader in front of PP-OCR: the own read is
//! kept when it is sure of every crop of a frame and each has a plausible
//! plate length; otherwise PP-OCR reads the frame's crops.

use image::imageops::FilterType;
use image::{GrayImage, RgbImage};
use ort::session::Session;

use crate::message::PlateText;
use crate::models::ctc::{ink_extent, run_ctc, PLATE_CHARS, SLOTS, SLOT_SEP};
use crate::models::dutch::looks_dutch_yellow;
use crate::models::ppocr::PpOcrReader;
use crate::models::{Look, PlateReader, ReadError};
use crate::models::{ModelError, ModelSet, OWN_READER_ID};

/// The model's input height and width.
pub const INPUT_HEIGHT: u32 = 32;
pub const INPUT_WIDTH: u32 = 128;
/// Output classes: the blank and the 36 plate characters.
pub const CLASSES: usize = 1 + PLATE_CHARS.len();
/// Crops per inference call; more are split into several calls.
pub const MAX_BATCH: usize = 16;

const _: () = assert!(SLOT_SEP == CLASSES && SLOTS == CLASSES + 1);

/// Grey value of one pixel as PIL's `convert("L")` computes it (ITU-R 601,
/// fixed point, rounded): the model was trained on exactly this.
fn luma(px: &image::Rgb<u8>) -> u8 {
    let [r, g, b] = px.0.map(u32::from);
    ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16) as u8
}

/// The model input for one crop: 32x128 grey values, -1..1, row-major.
pub fn input_of(crop: &RgbImage, out: &mut [f32]) {
    let grey = GrayImage::from_fn(crop.width(), crop.height(), |x, y| {
        image::Luma([luma(crop.get_pixel(x, y))])
    });
    let small = image::imageops::resize(&grey, INPUT_WIDTH, INPUT_HEIGHT, FilterType::Triangle);
    for (o, p) in out.iter_mut().zip(small.pixels()) {
        *o = f32::from(p.0[0]) / 127.5 - 1.0;
    }
}

/// Softmax temperature applied to the model's output before decoding.
/// Trained on clean synthetic labels to a low loss, the model is far too sure
/// of itself on real photos: at temperature 1 it reads 3.7 % of the Dutch
/// plates wrong at confidence 0.8 or more, and the Dutch prior cannot
/// override an `O` it is certain of where a `0` must stand. Raising each
/// step's probabilities to 1/T and renormalising (post-hoc temperature
/// scaling) keeps the ranking per step and spreads the mass: measured on
/// `../shared/data/plates` (docs/measurements/accuracy.md), T = 1.5 gave 1.8 % and
/// T = 2.5 0.0 % confident-wrong Dutch reads at 0.8.
pub const TEMPERATURE: f32 = 2.5;

/// Per-step probabilities of one crop as decoding slots (separator 0), at
/// [`TEMPERATURE`].
fn slots_of(probs: &[f32]) -> Vec<[f32; SLOTS]> {
    let t = TEMPERATURE;
    probs
        .chunks_exact(CLASSES)
        .map(|step| {
            let mut acc = [0f32; SLOTS];
            let mut sum = 0.0;
            for (a, p) in acc.iter_mut().zip(step) {
                *a = p.max(1e-12).powf(1.0 / t);
                sum += *a;
            }
            for a in acc.iter_mut() {
                *a /= sum;
            }
            acc
        })
        .collect()
}

/// Reader on the project's own CRNN.
pub struct CrnnReader {
    session: Session,
    input: Vec<f32>,
}

impl CrnnReader {
    /// Loads the model named in the manifest (checksum checked first).
    pub fn new(models: &ModelSet) -> Result<Self, ModelError> {
        Ok(CrnnReader::from_session(models.session(OWN_READER_ID)?))
    }

    /// Wraps a session on a model with this module's input and output layout.
    pub fn from_session(session: Session) -> Self {
        CrnnReader {
            session,
            input: Vec::new(),
        }
    }

    /// The model's raw output per crop (`steps` x [`CLASSES`] each).
    pub fn probabilities(&mut self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, ReadError> {
        let mut out = Vec::with_capacity(crops.len());
        for batch in crops.chunks(MAX_BATCH) {
            self.infer_batch(batch, |_, p| out.push(p.to_vec()))?;
        }
        Ok(out)
    }

    fn infer_batch(
        &mut self,
        crops: &[RgbImage],
        each: impl FnMut(usize, &[f32]),
    ) -> Result<(), ReadError> {
        let plane = (INPUT_HEIGHT * INPUT_WIDTH) as usize;
        let n = crops.len();
        self.input.clear();
        // -1 is black: an empty crop reads as nothing.
        self.input.resize(n * plane, -1.0);
        for (k, crop) in crops.iter().enumerate() {
            if crop.width() > 0 && crop.height() > 0 {
                input_of(crop, &mut self.input[k * plane..(k + 1) * plane]);
            }
        }
        let shape = [n, 1, INPUT_HEIGHT as usize, INPUT_WIDTH as usize];
        run_ctc(&mut self.session, shape, &self.input, CLASSES, each)
    }
}

impl PlateReader for CrnnReader {
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
        let mut out = Vec::with_capacity(crops.len());
        for batch in crops.chunks(MAX_BATCH) {
            self.infer_batch(batch, |k, p| {
                let slots = slots_of(p);
                // A yellow crop hints Dutch: the prior may then override more.
                let read = crate::models::format::decode(&slots, looks_dutch_yellow(&batch[k]));
                // The crop is stretched over the whole input: every step is content.
                let extent = ink_extent(&slots, slots.len());
                out.push(Look { text: read, extent });
            })?;
        }
        Ok(out)
    }
}

/// Fewest and most characters of a European plate read on one line; a read
/// outside this range is not trusted to the own reader alone.
pub const PLAUSIBLE_CHARS: std::ops::RangeInclusive<usize> = 4..=8;

/// The own reader first, PP-OCR only for the crops it is unsure of.
pub struct CascadeReader {
    own: CrnnReader,
    ppocr: PpOcrReader,
    /// Own reads at or above this confidence (and of a plausible length) are
    /// final; a frame with any other read is read again by PP-OCR.
    below: f32,
}

impl CascadeReader {
    pub fn new(own: CrnnReader, ppocr: PpOcrReader, below: f32) -> Self {
        CascadeReader { own, ppocr, below }
    }

    fn settled(&self, r: &PlateText) -> bool {
        r.confidence >= self.below && PLAUSIBLE_CHARS.contains(&r.text.chars().count())
    }
}

impl PlateReader for CascadeReader {
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
        let reads = self.own.read(crops)?;
        if reads.iter().all(|r| self.settled(&r.text)) {
            return Ok(reads);
        }
        // One unsure crop sends the whole frame to PP-OCR, not that crop
        // alone: the pipeline reports a frame's most confident read, and the
        // two readers' confidences are not on one scale. Mixed, a PP-OCR read
        // of dealer text (`MVCAR` at 0.98) outranked the own reader's correct
        // plate at 0.88 beside it.
        self.ppocr.read(crops)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_matches_pil_l_mode() {
        // PIL: Image.new("RGB", (1, 1), c).convert("L").getpixel((0, 0)).
        for (c, want) in [
            ([255, 255, 255], 255),
            ([0, 0, 0], 0),
            ([245, 200, 30], 194),
            ([30, 60, 140], 60),
            ([255, 0, 0], 76),
        ] {
            assert_eq!(luma(&image::Rgb(c)), want, "{c:?}");
        }
    }

    #[test]
    fn slots_soften_by_the_temperature_and_leave_the_separator_empty() {
        let mut step = vec![0.0; CLASSES];
        step[0] = 0.25;
        step[CLASSES - 1] = 0.75; // '9'
        let s = slots_of(&step);
        assert_eq!(s.len(), 1);
        let (b, nine) = (
            0.25f32.powf(1.0 / TEMPERATURE),
            0.75f32.powf(1.0 / TEMPERATURE),
        );
        // The classes at zero keep a floor far below anything that matters.
        assert!((s[0][0] - b / (b + nine)).abs() < 1e-3, "{:?}", s[0]);
        assert!((s[0][CLASSES - 1] - nine / (b + nine)).abs() < 1e-3);
        assert!(s[0][CLASSES - 1] < 0.75 && s[0][0] > 0.25, "softened");
        assert_eq!(s[0][SLOT_SEP], 0.0);
        assert!((s[0].iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn input_spans_minus_one_to_one() {
        let crop = RgbImage::from_fn(200, 48, |x, _| {
            if x < 100 {
                image::Rgb([0, 0, 0])
            } else {
                image::Rgb([255, 255, 255])
            }
        });
        let mut v = vec![0.0; (INPUT_HEIGHT * INPUT_WIDTH) as usize];
        input_of(&crop, &mut v);
        assert_eq!(v[0], -1.0);
        assert_eq!(v[INPUT_WIDTH as usize - 1], 1.0);
    }
}

/// The reader with the real model on plates the project renders itself.
#[cfg(test)]
mod model_tests {
    use image::{Rgb, RgbImage};

    use super::*;
    use crate::config::{ReadConfig, ReaderModel, RuntimeConfig};
    use crate::models::{Manifest, ModelSet};
    use crate::testing;

    fn own_reader() -> Option<Box<dyn PlateReader>> {
        let models = testing::model_set()?;
        let cfg = ReadConfig {
            model: ReaderModel::Own,
            ..ReadConfig::default()
        };
        match crate::read::build_reader(&models, &cfg) {
            Ok(r) => Some(r),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn a_blank_crop_reads_as_nothing_sure() {
        let Some(mut reader) = own_reader() else {
            return;
        };
        let reads = reader
            .read(&[
                RgbImage::from_pixel(180, 48, Rgb([128, 128, 128])),
                RgbImage::new(0, 0),
            ])
            .expect("reads");
        assert_eq!(reads.len(), 2);
        for r in reads {
            assert!(r.text.confidence < 0.5 || r.text.text.is_empty(), "{r:?}");
        }
    }

    /// A models folder holding `bytes` as the own reader, with a manifest
    /// pinning `sha` for it.
    /// `None` (skipped) without the fetched runtime, which loads the set.
    fn models_with(bytes: &[u8], sha: &str) -> Option<(tempfile::TempDir, ModelSet)> {
        let fetched = testing::fetched_models()?;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("plate_crnn.onnx"), bytes).expect("write");
        let text = crate::models::MANIFEST_TOML.replace(
            &Manifest::embedded()
                .expect("manifest")
                .artifact(crate::models::OWN_READER_ID)
                .expect("own reader")
                .file_sha256()
                .expect("sha")
                .to_string(),
            sha,
        );
        let manifest = Manifest::parse(&text, "test").expect("manifest");
        let cfg = RuntimeConfig {
            onnxruntime: Some(fetched.join("libonnxruntime.so.1.31.1")),
            models_dir: dir.path().to_owned(),
            threads: 1,
        };
        let models = ModelSet::with_manifest(&cfg, manifest).expect("runtime loads");
        Some((dir, models))
    }

    #[test]
    fn a_truncated_model_file_is_refused_naming_it() {
        let Some(fetched) = testing::fetched_models() else {
            return;
        };
        let real = std::fs::read(fetched.join("plate_crnn.onnx")).expect("model");
        let sha = crate::models::sha256_file(&fetched.join("plate_crnn.onnx")).expect("sha");
        let Some((_dir, models)) = models_with(&real[..real.len() / 2], &sha) else {
            return;
        };
        let e = CrnnReader::new(&models).err().expect("refused");
        let msg = e.to_string();
        assert!(matches!(e, ModelError::Checksum { .. }), "{msg}");
        assert!(
            msg.contains("plate_crnn.onnx") && msg.contains("make models"),
            "{msg}"
        );
    }

    #[test]
    fn a_corrupt_model_with_a_matching_checksum_is_a_clear_session_error() {
        let junk = b"this is not an ONNX model".repeat(40);
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("junk");
        std::fs::write(&p, &junk).expect("write");
        let sha = crate::models::sha256_file(&p).expect("sha");
        let Some((_dir, models)) = models_with(&junk, &sha) else {
            return;
        };
        let e = CrnnReader::new(&models).err().expect("refused");
        let msg = e.to_string();
        assert!(matches!(e, ModelError::Session { .. }), "{msg}");
        assert!(msg.contains("plate_crnn.onnx"), "{msg}");
    }
}
