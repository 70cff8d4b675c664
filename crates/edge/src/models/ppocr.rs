//! The PP-OCRv4 text recogniser (`ch_PP-OCRv4_rec_infer.onnx`), restricted to plate characters.
//!
//! Input preparation follows rapidocr 1.4.4 (`ch_ppocr_rec`): height 48, width
//! from the aspect ratio (at least 320, the batch padded on the right with
//! zeros to its widest crop), BGR, x/255, -0.5, /0.5. The class list is the
//! model's `character` metadata with the CTC blank prepended and a space
//! appended, as rapidocr's `CTCLabelDecode` builds it.
//!
//! Decoding differs on purpose: the model knows 6 600 Chinese and other
//! characters, a plate only A-Z and 0-9. At each time step only the blank, the
//! 36 plate characters (lower-case and full-width forms summed into their
//! upper-case one) and the separators (space, dash, dots: one class together)
//! compete, so that a dash or an inspection sticker is read as a separator
//! rather than forced into a letter. Then [`super::format`] decodes: the
//! most probable path that spells a Dutch plate (sidecodes 1 to 14) when it is
//! nearly as probable as the unconstrained one (or the crop is yellow and it is
//! not far off), else the greedy CTC collapse; separators are dropped from the
//! text. It never sees frames, only crops, and writes nothing anywhere.

use image::imageops::FilterType;
use image::RgbImage;
use ort::session::Session;

use super::ctc::{greedy, ink_extent, run_ctc, PLATE_CHARS, SLOTS, SLOT_SEP};
use super::dutch::looks_dutch_yellow;
use super::format;
use super::reader::{Look, PlateReader, ReadError};
use super::{ModelError, ModelSet, READER_ID};
use crate::message::PlateText;

/// The model's input height.
pub const INPUT_HEIGHT: u32 = 48;
/// rapidocr's rec_img_shape width: the narrowest input a batch is padded to.
pub const MIN_INPUT_WIDTH: u32 = 320;
/// Crops per inference call; more are split into several calls.
pub const MAX_BATCH: usize = 8;

/// Characters that may sit between plate characters: dashes, dots, bullets,
/// spaces, in their ASCII, typographic and full-width forms.
const SEPARATORS: &[char] = &[
    ' ', '-', '.', '_', '·', '•', '‧', '・', '⋅', '∙', '–', '—', '﹣', '－', '．', '＿', '\u{3000}',
];

/// What one model class counts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Symbol {
    Blank,
    /// Index into `PLATE_CHARS`.
    Char(u8),
    Separator,
    /// Anything else; never chosen.
    Other,
}

fn symbol_of(label: &str) -> Symbol {
    let mut it = label.chars();
    let (Some(c), None) = (it.next(), it.next()) else {
        return Symbol::Other;
    };
    if SEPARATORS.contains(&c) {
        return Symbol::Separator;
    }
    // Full-width ASCII (U+FF01..U+FF5E) is ASCII shifted by 0xFEE0.
    let c = match c as u32 {
        0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    };
    let c = c.to_ascii_uppercase();
    match PLATE_CHARS.iter().position(|&p| p as char == c) {
        Some(i) => Symbol::Char(i as u8),
        None => Symbol::Other,
    }
}

/// Maps the model's classes onto decoding slots.
#[derive(Clone, Debug)]
pub struct CtcAlphabet {
    /// Per model class: its slot, or `None` for classes that never compete.
    slot: Vec<Option<u8>>,
}

impl CtcAlphabet {
    /// From the model's `character` metadata: one label per line; the blank is
    /// put first and a space last, as rapidocr does.
    pub fn from_metadata(character: &str) -> CtcAlphabet {
        let mut labels: Vec<&str> = vec!["blank"];
        labels.extend(character.split('\n').map(|l| l.trim_end_matches('\r')));
        labels.push(" ");
        let slot = labels
            .iter()
            .enumerate()
            .map(
                |(i, l)| match if i == 0 { Symbol::Blank } else { symbol_of(l) } {
                    Symbol::Blank => Some(0),
                    Symbol::Char(c) => Some(c + 1),
                    Symbol::Separator => Some(SLOT_SEP as u8),
                    Symbol::Other => None,
                },
            )
            .collect();
        CtcAlphabet { slot }
    }

    /// Number of model classes (the output's last dimension).
    pub fn classes(&self) -> usize {
        self.slot.len()
    }

    /// Sums one crop's output, `steps` x `classes()` probabilities, into
    /// decoding slots per step.
    pub fn slots(&self, probs: &[f32]) -> Vec<[f32; SLOTS]> {
        probs
            .chunks_exact(self.classes())
            .map(|step| {
                let mut acc = [0f32; SLOTS];
                for (p, s) in step.iter().zip(&self.slot) {
                    if let Some(s) = s {
                        acc[*s as usize] += p;
                    }
                }
                acc
            })
            .collect()
    }

    /// Decodes one crop's output with the Dutch prior ([`dutch::decode`]);
    /// `dutch_hint` says the crop looks Dutch (e.g. [`looks_dutch_yellow`]).
    pub fn decode_hinted(&self, probs: &[f32], dutch_hint: bool) -> PlateText {
        format::decode(&self.slots(probs), dutch_hint)
    }

    /// Decodes one crop's output with the Dutch prior and no hint.
    pub fn decode(&self, probs: &[f32]) -> PlateText {
        self.decode_hinted(probs, false)
    }

    /// The unconstrained greedy decode, knowing nothing of plate formats.
    pub fn decode_greedy(&self, probs: &[f32]) -> PlateText {
        greedy(&self.slots(probs))
    }
}

/// Reader on PP-OCRv4's recogniser.
pub struct PpOcrReader {
    session: Session,
    alphabet: CtcAlphabet,
    input: Vec<f32>,
}

impl PpOcrReader {
    /// Loads the reader named in the manifest (checksum checked first).
    pub fn new(models: &ModelSet) -> Result<Self, ModelError> {
        let session = models.session(READER_ID)?;
        let path = models.path_of(READER_ID)?;
        Self::from_session(session).map_err(|reason| ModelError::Session { path, reason })
    }

    /// Wraps a session on a PP-OCR recogniser that carries `character` metadata.
    pub fn from_session(session: Session) -> Result<Self, String> {
        let character = session
            .metadata()
            .map_err(|e| format!("cannot read model metadata: {e}"))?
            .custom("character")
            .ok_or("model metadata has no `character` list")?;
        Ok(PpOcrReader {
            alphabet: CtcAlphabet::from_metadata(&character),
            session,
            input: Vec::new(),
        })
    }

    /// The decoding alphabet, to decode [`PpOcrReader::probabilities`] output.
    pub fn alphabet(&self) -> &CtcAlphabet {
        &self.alphabet
    }

    /// The model's raw output per crop (`steps` x `classes()` each), before
    /// any decoding; for measuring decoders side by side.
    pub fn probabilities(&mut self, crops: &[RgbImage]) -> Result<Vec<Vec<f32>>, ReadError> {
        let mut out = Vec::with_capacity(crops.len());
        for batch in crops.chunks(MAX_BATCH) {
            self.infer_batch(batch, |p| out.push(p.to_vec()))?;
        }
        Ok(out)
    }

    fn read_batch(&mut self, crops: &[RgbImage], out: &mut Vec<Look>) -> Result<(), ReadError> {
        let alphabet = self.alphabet.clone();
        let width = batch_width(crops);
        let mut k = 0;
        self.infer_batch(crops, |p| {
            let slots = alphabet.slots(p);
            // The crop fills the first `rw` of the batch's `width` columns.
            let rw = resized_width(&crops[k]).min(width);
            let content = (slots.len() as f32 * rw as f32 / width.max(1) as f32).ceil() as usize;
            // A yellow crop hints Dutch: the prior may then override more.
            let read = format::decode(&slots, looks_dutch_yellow(&crops[k]));
            out.push(Look {
                text: read,
                extent: ink_extent(&slots, content),
            });
            k += 1;
        })
    }

    /// Runs the model on one batch and hands each crop's output to `each`.
    fn infer_batch(
        &mut self,
        crops: &[RgbImage],
        mut each: impl FnMut(&[f32]),
    ) -> Result<(), ReadError> {
        let h = INPUT_HEIGHT;
        let width = batch_width(crops);
        let (n, plane) = (crops.len(), (h * width) as usize);
        self.input.clear();
        self.input.resize(n * 3 * plane, 0.0);
        for (k, crop) in crops.iter().enumerate() {
            if crop.width() == 0 || crop.height() == 0 {
                // Nothing to read: the zero padding decodes to an empty text.
                continue;
            }
            let rw = resized_width(crop).clamp(1, width);
            let resized;
            let img = if crop.dimensions() == (rw, h) {
                crop
            } else {
                resized = image::imageops::resize(crop, rw, h, FilterType::Triangle);
                &resized
            };
            let base = k * 3 * plane;
            for (x, y, px) in img.enumerate_pixels() {
                let i = (y * width + x) as usize;
                // BGR, as cv2 delivers it to rapidocr.
                for (c, v) in [px[2], px[1], px[0]].into_iter().enumerate() {
                    self.input[base + c * plane + i] = (v as f32 / 255.0 - 0.5) / 0.5;
                }
            }
        }
        let shape = [n, 3, h as usize, width as usize];
        let classes = self.alphabet.classes();
        run_ctc(&mut self.session, shape, &self.input, classes, |_, p| {
            each(p)
        })
    }
}

/// The input width of a batch: rapidocr's 48 x max(320/48, widest aspect).
fn batch_width(crops: &[RgbImage]) -> u32 {
    let h = INPUT_HEIGHT;
    let max_ratio = crops
        .iter()
        .map(|c| c.width() as f32 / c.height().max(1) as f32)
        .fold(MIN_INPUT_WIDTH as f32 / h as f32, f32::max);
    (h as f32 * max_ratio) as u32
}

/// A crop's width once resized to the input height.
fn resized_width(crop: &RgbImage) -> u32 {
    let ratio = crop.width() as f32 / crop.height().max(1) as f32;
    (INPUT_HEIGHT as f32 * ratio).ceil() as u32
}

impl PlateReader for PpOcrReader {
    fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
        let mut out = Vec::with_capacity(crops.len());
        for batch in crops.chunks(MAX_BATCH) {
            self.read_batch(batch, &mut out)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny alphabet shaped like the real one: labels in metadata order.
    fn alphabet() -> (CtcAlphabet, Vec<&'static str>) {
        let meta = "京\nA\na\nB\n-\n1\n·\nＺ";
        let mut labels = vec!["blank"];
        labels.extend(meta.split('\n'));
        labels.push(" ");
        (CtcAlphabet::from_metadata(meta), labels)
    }

    /// One time step putting `p` on `label` and the rest on the blank.
    fn step(labels: &[&str], label: &str, p: f32) -> Vec<f32> {
        let mut v = vec![0.0; labels.len()];
        let i = labels.iter().position(|l| *l == label).expect(label);
        v[i] = p;
        v[0] += 1.0 - p;
        v
    }

    #[test]
    fn alphabet_has_blank_first_and_space_last() {
        let (a, labels) = alphabet();
        assert_eq!(a.classes(), labels.len());
        assert_eq!(a.slot[0], Some(0));
        assert_eq!(a.slot[labels.len() - 1], Some(SLOT_SEP as u8));
        assert_eq!(a.slot[1], None, "Chinese character never competes");
    }

    #[test]
    fn decode_folds_collapses_and_strips_separators() {
        let (a, l) = alphabet();
        let mut probs = Vec::new();
        for (label, p) in [
            ("A", 0.9),
            ("A", 0.95), // repeat: one A, confidence 0.95
            ("blank", 1.0),
            ("A", 0.8), // blank between: a second A
            ("-", 0.9), // separator: dropped
            ("B", 0.7),
            ("·", 0.9),
            (" ", 0.9),
            ("1", 0.99),
            ("Ｚ", 0.9), // full-width folds to Z
        ] {
            probs.extend(step(&l, label, p));
        }
        let r = a.decode_greedy(&probs);
        assert_eq!(r.text, "AAB1Z");
        assert_eq!(r.char_confidences, vec![0.95, 0.8, 0.7, 0.99, 0.9]);
        assert_eq!(r.confidence, 0.7);
    }

    #[test]
    fn lower_case_mass_adds_to_its_letter_and_separator_splits_repeats() {
        let (a, l) = alphabet();
        // 0.3 'A' + 0.3 'a' beats 0.4 'B'.
        let mut s = vec![0.0; l.len()];
        s[1 + 1] = 0.3; // A
        s[1 + 2] = 0.3; // a
        s[1 + 3] = 0.4; // B
        let mut probs = s.clone();
        probs.extend(step(&l, "-", 0.9));
        probs.extend(step(&l, "A", 0.9));
        let r = a.decode_greedy(&probs);
        assert_eq!(r.text, "AA");
        assert!((r.char_confidences[0] - 0.6).abs() < 1e-6);
    }

    #[test]
    fn a_chinese_character_is_not_forced_into_a_plate_character() {
        let (a, l) = alphabet();
        // 0.7 on 京 and 0.3 blank: blank wins among the allowed symbols.
        let mut s = vec![0.0; l.len()];
        s[1] = 0.7;
        s[0] = 0.3;
        let r = a.decode_greedy(&s);
        assert_eq!(r.text, "");
        assert_eq!(r.confidence, 0.0);
    }
}

/// End to end on real photos: detect, rectify, read.
#[cfg(test)]
mod photo_tests {
    use std::path::PathBuf;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::config::DetectConfig;
    use crate::detect::PlateDetector;
    use crate::models::retina::RetinaPlateDetector;
    use crate::read::rectify::rectify;
    use crate::testing;

    fn pipeline(max_side: u32) -> Option<(RetinaPlateDetector, PpOcrReader)> {
        let models = testing::model_set()?;
        let cfg = DetectConfig {
            max_side,
            coarse_side: 0,
            ..DetectConfig::default()
        };
        let det = RetinaPlateDetector::new(&models, &cfg);
        let rd = PpOcrReader::new(&models);
        match (det, rd) {
            (Ok(d), Ok(r)) => Some((d, r)),
            (Err(e), _) | (_, Err(e)) => panic!("{e}"),
        }
    }

    struct Outcome {
        exact: usize,
        total: usize,
        misses: Vec<String>,
        detect: Duration,
        read: Duration,
        crops: usize,
    }

    fn run(photos: &[PathBuf], max_side: u32) -> Option<Outcome> {
        let (mut det, mut rd) = pipeline(max_side)?;
        let mut o = Outcome {
            exact: 0,
            total: 0,
            misses: Vec::new(),
            detect: Duration::ZERO,
            read: Duration::ZERO,
            crops: 0,
        };
        for p in photos {
            let truth = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_uppercase())
                .unwrap_or_default();
            let img = image::open(p).expect("photo").to_rgb8();
            o.total += 1;
            let t = Instant::now();
            let dets = det.detect(&img).expect("detect");
            o.detect += t.elapsed();
            let crops: Vec<RgbImage> = dets
                .iter()
                .filter_map(|d| rectify(&img, &d.corners))
                .collect();
            if crops.is_empty() {
                o.misses.push(format!("{truth}: no plate"));
                continue;
            }
            let t = Instant::now();
            let reads = rd.read(&crops).expect("read");
            o.read += t.elapsed();
            o.crops += crops.len();
            // As the pipeline will: reads shorter than `read.min_chars` (4) are
            // dropped (a grille, a sticker), and the best-scoring remaining
            // detection is taken as the photo's plate.
            match reads.iter().map(|r| &r.text).find(|r| r.text.len() >= 4) {
                Some(r) if r.text == truth => o.exact += 1,
                Some(r) => o
                    .misses
                    .push(format!("{truth}: read {} ({:.2})", r.text, r.confidence)),
                None => o.misses.push(format!("{truth}: no read of 4+ chars")),
            }
        }
        Some(o)
    }

    #[test]
    fn empty_and_zero_sized_crops_read_as_nothing() {
        let Some((_, mut rd)) = pipeline(0) else {
            return;
        };
        assert!(rd.read(&[]).expect("read").is_empty());
        let r = rd.read(&[RgbImage::new(0, 0)]).expect("read");
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].text.text, "");
    }

    #[test]
    fn reads_dutch_plates_from_real_photos() {
        let Some(photos) = testing::plate_photos() else {
            return;
        };
        let sample: Vec<PathBuf> = photos.iter().step_by(7).take(15).cloned().collect();
        let Some(o) = run(&sample, 0) else {
            return;
        };
        eprintln!("exact {}/{}; misses: {:?}", o.exact, o.total, o.misses);
        assert!(
            o.exact * 10 >= o.total * 8,
            "exact {}/{}: {:?}",
            o.exact,
            o.total,
            o.misses
        );
    }

    /// Greedy against Dutch-aware decoding of the same model outputs over all
    /// photos, at several margins:
    /// `cargo test --lib measure_dutch_decoding -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement over the whole photo set; prints figures"]
    fn measure_dutch_decoding() {
        let Some(photos) = testing::plate_photos() else {
            return;
        };
        let Some((mut det, mut rd)) = pipeline(0) else {
            return;
        };
        // Per photo: truth and, per crop, (slots, yellow).
        let mut data = Vec::new();
        for p in &photos {
            let truth = p
                .file_stem()
                .map(|s| s.to_string_lossy().to_uppercase())
                .unwrap_or_default();
            let img = image::open(p).expect("photo").to_rgb8();
            let crops: Vec<RgbImage> = det
                .detect(&img)
                .expect("detect")
                .iter()
                .filter_map(|d| rectify(&img, &d.corners))
                .collect();
            let probs = rd.probabilities(&crops).expect("read");
            let per: Vec<_> = probs
                .iter()
                .zip(&crops)
                .map(|(pr, c)| (rd.alphabet().slots(pr), looks_dutch_yellow(c)))
                .collect();
            data.push((truth, per));
        }
        let total = data.len();
        let yellow = data
            .iter()
            .filter(|(_, per)| per.first().is_some_and(|c| c.1))
            .count();
        println!("{total} photos; first crop yellow in {yellow}");
        // (exact, confident-wrong >= 0.8) with the pipeline's choice: the
        // first read of 4+ characters.
        let score = |f: &dyn Fn(&[[f32; SLOTS]], bool) -> PlateText, show: bool| {
            let (mut exact, mut cw, mut cr) = (0, 0, 0);
            for (truth, per) in &data {
                let r = per
                    .iter()
                    .map(|(s, y)| f(s, *y))
                    .find(|r| r.text.len() >= 4);
                match r {
                    Some(r) if &r.text == truth => {
                        exact += 1;
                        if r.confidence >= 0.8 {
                            cr += 1;
                        }
                    }
                    Some(r) => {
                        if r.confidence >= 0.8 {
                            cw += 1;
                        }
                        if show {
                            println!(
                                "  {truth}: read {} ({:.2}) {:?}",
                                r.text,
                                r.confidence,
                                crate::plate::dutch_sidecode(&r.text)
                                    .map(crate::plate::Sidecode::number)
                            );
                        }
                    }
                    None if show => println!("  {truth}: no read"),
                    None => {}
                }
            }
            (exact, cw, cr)
        };
        let (e, cw, cr) = score(&|s, _| greedy(s), true);
        println!("greedy: exact {e}/{total} ({cr} of them >= 0.8), confident-wrong {cw}");
        for m in [0.5f32, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0] {
            let (e, cw, _) = score(&|s, _| format::decode_with_margins(s, false, m, m), false);
            let (eh, cwh, _) = score(&|s, y| format::decode_with_margins(s, y, m, 6.0), false);
            println!(
                "margin {m}: exact {e}/{total}, confident-wrong {cw}; with yellow hint (6.0): exact {eh}, cw {cwh}"
            );
        }
        let (e, cw, cr) = score(&|s, y| format::decode(s, y), true);
        println!(
            "dutch (margin {}, hinted {}): exact {e}/{total} ({cr} of them >= 0.8), confident-wrong {cw}",
            crate::models::dutch::DUTCH_MARGIN,
            crate::models::dutch::DUTCH_MARGIN_HINTED
        );
    }

    /// `cargo test --lib measure_all_photos -- --ignored --nocapture`
    #[test]
    #[ignore = "measurement over the whole photo set; prints figures"]
    fn measure_all_photos() {
        let Some(photos) = testing::plate_photos() else {
            return;
        };
        // ANPR_MEASURE_MAX_SIDE sets detect.max_side for the read-rate run.
        let max_side = std::env::var("ANPR_MEASURE_MAX_SIDE")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let Some(o) = run(&photos, max_side) else {
            return;
        };
        println!(
            "max_side {max_side}: exact reads: {}/{} = {:.1}%",
            o.exact,
            o.total,
            100.0 * o.exact as f64 / o.total as f64
        );
        println!("misses: {:#?}", o.misses);
        println!(
            "detect mean {:.1} ms/photo; read mean {:.2} ms/crop",
            o.detect.as_secs_f64() * 1000.0 / o.total as f64,
            o.read.as_secs_f64() * 1000.0 / o.crops.max(1) as f64
        );
        let Some((mut det, mut rd)) = pipeline(0) else {
            return;
        };
        let img = image::open(&photos[0]).expect("photo").to_rgb8();
        for (w, h) in [(640, 480), (1920, 1080)] {
            let big = image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
            det.detect(&big).expect("warm-up");
            let t = Instant::now();
            for _ in 0..5 {
                det.detect(&big).expect("detect");
            }
            println!(
                "detect {w}x{h}: {:.1} ms",
                t.elapsed().as_secs_f64() * 200.0
            );
        }
        let cfg = DetectConfig {
            max_side: 960,
            coarse_side: 0,
            ..DetectConfig::default()
        };
        let Some(models) = testing::model_set() else {
            return;
        };
        let mut det960 = RetinaPlateDetector::new(&models, &cfg).expect("detector");
        let big = image::imageops::resize(&img, 1920, 1080, image::imageops::FilterType::Triangle);
        det960.detect(&big).expect("warm-up");
        let t = Instant::now();
        for _ in 0..5 {
            det960.detect(&big).expect("detect");
        }
        println!(
            "detect 1920x1080, max_side 960: {:.1} ms",
            t.elapsed().as_secs_f64() * 200.0
        );
        let crop = det
            .detect(&img)
            .expect("detect")
            .first()
            .and_then(|d| rectify(&img, &d.corners))
            .expect("crop");
        rd.read(std::slice::from_ref(&crop)).expect("warm-up");
        let t = Instant::now();
        for _ in 0..10 {
            rd.read(std::slice::from_ref(&crop)).expect("read");
        }
        println!("read 1 crop: {:.2} ms", t.elapsed().as_secs_f64() * 100.0);
        let batch = vec![crop; 4];
        let t = Instant::now();
        for _ in 0..5 {
            rd.read(&batch).expect("read");
        }
        println!(
            "read 4 crops batched: {:.2} ms/crop",
            t.elapsed().as_secs_f64() * 50.0
        );
    }
}
