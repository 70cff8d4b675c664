//! Read: turns detected plates into text.
//!
//! Rectifies each plate from its four corners, runs a [`PlateReader`] on the
//! crops and passes the frame on with its reads. Text stays in memory; this
//! stage writes nothing to disk or to logs. The reader is chosen by
//! `read.model` ([`build_reader`]): PP-OCR ([`ppocr`]), the project's own CRNN
//! ([`crnn`]) or the two in a cascade; all decode through [`dutch`].

pub mod rectify;
pub mod stage;

use image::RgbImage;

pub use crate::message::PlateText;
/// The stage's view of a reader model.
pub use crate::models::{build_reader, model_ids, Extent, Look, PlateReader, ReadError};

use crate::config::ReadConfig;
use crate::message::Detection;
use crate::models::{dutch, format, layout};

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

/// One detected plate, rectified and read.
#[derive(Clone, Debug)]
pub struct Rectified {
    pub detection: Detection,
    /// The crop the final read came from.
    pub crop: RgbImage,
    pub plate: PlateText,
}

/// Rectifies every detection in `image` and reads it. A plate whose corners
/// leave its layout in doubt ([`rectify::is_squat`]) is read twice, as one
/// line widened to a single-line plate's aspect and as two lines split at
/// the gap between them, and the read that weighs more once format knowledge
/// has judged both is kept: the detector's corners cannot tell a two-line
/// plate from a single-line one seen at a steep angle. A read of one row of a
/// square plate only (digits or letters alone) is read again with the row
/// above and below (`read_other_rows`). A single-line read whose characters reach the crop's edge
/// ([`EDGE_TOUCH`]) is read again from corners lengthened on that side
/// ([`WIDEN_BY`]), and the longer read replaces it when it only adds
/// characters ([`prefer_widened`]). A plate's final read that format
/// knowledge finds off ([`dutch::off_format`]) keeps its text at a lower
/// confidence. Detections whose corners make no plate shape are dropped.
pub fn rectify_and_read(
    reader: &mut dyn PlateReader,
    image: &RgbImage,
    detections: Vec<Detection>,
) -> Result<Vec<Rectified>, ReadError> {
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
    let mut texts = read_each(reader, &batch)?;
    let mut out = Vec::with_capacity(plans.len());
    // Per entry of `out`: whether its read is of two rows joined.
    let mut two_rows = Vec::with_capacity(plans.len());
    let mut widen: Vec<Widen> = Vec::new();
    for plan in plans {
        let i = plan.first;
        if !plan.squat {
            let Look { text, extent } =
                std::mem::replace(&mut texts[i], Look::unlocated(PlateText::default()));
            // A yellow crop that spells no Dutch plate is likely a Dutch plate
            // cut short (`H803` of `H803SF`): look on both sides.
            let off_format =
                !crate::plate::is_dutch(&text.text) && dutch::looks_dutch_yellow(&plan.crop);
            let check_only = !off_format && checks_sure_foreign(&text);
            // Both sides for a check: where a character was dropped unseen,
            // the extent says nothing of which end lost it.
            let (left, right) = if off_format || check_only {
                (true, true)
            } else {
                touches(extent)
            };
            if left || right {
                widen.push(Widen {
                    entry: out.len(),
                    left,
                    right,
                    check_only,
                });
            }
            out.push(Rectified {
                detection: plan.detection,
                crop: plan.crop,
                plate: text,
            });
            two_rows.push(false);
            continue;
        }
        let one_line = std::mem::take(&mut texts[i].text);
        let two_lines = join_lines(&texts[i + 1].text, &texts[i + 2].text);
        // Weighed as format knowledge will judge them below: a sure one-line
        // read of digits only is most often the top row alone (`10922` of
        // `10922BX`) and must not beat the two rows that make a plate.
        let (crop, text, rows) = match two_lines {
            Some(t)
                if format_weighed(&t, &plan.crop, true)
                    > format_weighed(&one_line, &batch[i], false) =>
            {
                (plan.crop, t, true)
            }
            _ => (std::mem::take(&mut batch[i]), one_line, false),
        };
        out.push(Rectified {
            detection: plan.detection,
            crop,
            plate: text,
        });
        two_rows.push(rows);
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
        for w in widen {
            let corners =
                rectify::extend_corners(&out[w.entry].detection.corners, w.left, w.right, by);
            if let Some(crop) = rectify::rectify(image, &corners) {
                crops.push(crop);
                asked.push(w);
            }
        }
        if crops.is_empty() {
            break;
        }
        let wide_reads = read_each(reader, &crops)?;
        let mut again = Vec::new();
        for (w, (crop, Look { text: wide, extent })) in
            asked.into_iter().zip(crops.into_iter().zip(wide_reads))
        {
            let entry = &mut out[w.entry];
            // A sure read looked at again only to check it keeps its place
            // unless the longer read follows a layout and is about as sure:
            // a plate's frame or a bumper edge read as one more character
            // (`DP989CCH`) is both less sure and, often, off every layout.
            let checked_holds = || {
                (crate::plate::is_dutch(&wide.text) || layout::fits_european_layout(&wide.text))
                    && wide.confidence + WIDER_GAIN >= entry.plate.confidence
            };
            if prefer_widened(&entry.plate, &wide) && (!w.check_only || checked_holds()) {
                entry.crop = crop;
                entry.plate = wide;
                let (l, r) = touches(extent);
                if !(l || r) {
                    continue;
                }
                if round == WIDEN_ROUNDS {
                    // Still cut after the widest look: characters may be
                    // missing that no crop showed.
                    dutch::discount(&mut entry.plate, dutch::OFF_FORMAT_FACTOR);
                } else {
                    again.push(Widen {
                        left: w.left || l,
                        right: w.right || r,
                        ..w
                    });
                }
            }
        }
        widen = again;
    }
    read_other_rows(reader, image, &mut out, &mut two_rows)?;
    for (r, two_rows) in out.iter_mut().zip(two_rows) {
        if off_format(&r.plate, &r.crop, two_rows) {
            dutch::discount(&mut r.plate, dutch::OFF_FORMAT_FACTOR);
        }
    }
    Ok(out)
}

/// A read to look at again in a crop lengthened on the sides named.
#[derive(Clone, Copy)]
struct Widen {
    /// Its index in `rectify_and_read`'s reads.
    entry: usize,
    left: bool,
    right: bool,
    /// Looked at only because it is a sure foreign read
    /// ([`checks_sure_foreign`]), not because it reaches an edge: a longer
    /// read replaces it only where that follows a layout and is about as sure.
    check_only: bool,
}

/// Least confidence of a read the Dutch prior did not decide for it to be
/// looked at again from a longer crop though its characters do not reach the
/// crop's edge: the acceptance threshold's default, where a wrong read
/// becomes a wrong fine.
pub const SURE_FOREIGN: f32 = 0.8;

/// Whether a read is a sure one the Dutch prior did not decide, shaped like
/// a European plate (any other is discounted as off-format and not accepted
/// anyway), of a length that leaves room for a character the detector's box
/// cut off. The box can end inside a plate's last character, which the
/// reader then drops without a trace at the crop's edge (`1CMV33` of Belgian
/// `1CMV331`, read at 0.99): only a longer look tells.
fn checks_sure_foreign(read: &PlateText) -> bool {
    read.country.is_none()
        && read.confidence >= SURE_FOREIGN
        && read.text.chars().count() < MAX_PLATE_CHARS
        && layout::fits_european_layout(&read.text)
}

/// How far a plate's corners are stretched to take in the other row of a
/// two-row plate, as a fraction of the plate's measured height: the rows of
/// the square plates of trailers, tractors and motorcycles are about equally
/// tall.
pub const OTHER_ROW_BY: f32 = 1.0;

/// Whether `text` could be one row of a two-row plate and not a whole plate:
/// digits only or letters only, as the rows of square plates are
/// (`10922` over `BX`). A Dutch read is a whole plate.
fn one_row_only(read: &PlateText) -> bool {
    read.country.is_none()
        && !read.text.is_empty()
        && (read.text.bytes().all(|c| c.is_ascii_digit())
            || read.text.bytes().all(|c| c.is_ascii_alphabetic()))
}

/// Reads the row below and the row above a read that holds one row only
/// ([`one_row_only`]): the detector, trained on single-line plates, often
/// boxes the larger row of a square plate alone. The corners are stretched
/// by [`OTHER_ROW_BY`] each way, the taller crop is split into its two rows,
/// and the joined read replaces the one row when it follows a layout and
/// weighs more once format knowledge has judged both ([`format_weighed`]).
/// Costs four crops for each such read, none for any other.
fn read_other_rows(
    reader: &mut dyn PlateReader,
    image: &RgbImage,
    out: &mut [Rectified],
    two_rows: &mut [bool],
) -> Result<(), ReadError> {
    let mut batch = Vec::new();
    let mut asked = Vec::new();
    for (k, r) in out.iter().enumerate() {
        if two_rows[k] || !one_row_only(&r.plate) {
            continue;
        }
        for down in [true, false] {
            let corners = rectify::extend_rows(&r.detection.corners, down, OTHER_ROW_BY);
            let Some(crop) = rectify::rectify(image, &corners) else {
                continue;
            };
            if let Some((top, bottom)) = rectify::split_lines(&crop) {
                batch.extend([top, bottom]);
                asked.push((k, crop));
            }
        }
    }
    if batch.is_empty() {
        return Ok(());
    }
    let reads = read_each(reader, &batch)?;
    for ((k, crop), rows) in asked.into_iter().zip(reads.chunks_exact(2)) {
        let Some(joined) = join_lines(&rows[0].text, &rows[1].text) else {
            continue;
        };
        let entry = &mut out[k];
        if !layout::fits_two_row_layout(&joined.text) {
            continue;
        }
        if format_weighed(&joined, &crop, true)
            > format_weighed(&entry.plate, &entry.crop, two_rows[k])
        {
            entry.crop = crop;
            entry.plate = joined;
            two_rows[k] = true;
        }
    }
    Ok(())
}

/// Whether format knowledge finds `read`, of `crop`, unlikely to be a whole
/// plate ([`dutch::off_format`]).
fn off_format(read: &PlateText, crop: &RgbImage, two_rows: bool) -> bool {
    format::off_format(read, dutch::looks_dutch_yellow(crop), two_rows)
}

/// A read's confidence after the discount [`off_format`] would give it.
fn format_weighed(read: &PlateText, crop: &RgbImage, two_rows: bool) -> f32 {
    if off_format(read, crop, two_rows) {
        read.confidence * dutch::OFF_FORMAT_FACTOR
    } else {
        read.confidence
    }
}

/// One read per crop, with where its characters lie, or an error naming a
/// reader that answered a batch with the wrong number of reads.
fn read_each(reader: &mut dyn PlateReader, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
    let reads = reader.read(crops)?;
    if reads.len() != crops.len() {
        return Err(ReadError::Output(format!(
            "{} reads for {} crops",
            reads.len(),
            crops.len()
        )));
    }
    Ok(reads)
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
pub fn prefer_widened(orig: &PlateText, wide: &PlateText) -> bool {
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

/// Most confidence a character at either end of a row of a two-row plate
/// may have and still be dropped as a mark: the short rows of square plates
/// sit between screws and the plate's frame, which the reader, shown the
/// whole row's width, reads as a faint `I` or `1` (`BXI` of `BX`).
pub const ROW_MARK_MAX: f32 = 0.3;

/// A row's characters with their confidences, without the faint marks at
/// its ends ([`ROW_MARK_MAX`]).
fn trim_row_marks(row: &PlateText) -> Vec<(char, f32)> {
    let mut chars: Vec<(char, f32)> = row
        .text
        .chars()
        .zip(row.char_confidences.iter().copied())
        .collect();
    while chars.last().is_some_and(|c| c.1 < ROW_MARK_MAX) {
        chars.pop();
    }
    let lead = chars.iter().take_while(|c| c.1 < ROW_MARK_MAX).count();
    chars.drain(..lead);
    chars
}

/// The read of a two-line plate from the reads of its lines, or `None` when
/// a line holds too little to be part of a plate (two characters at least:
/// the short rows of motorcycle plates have two or three).
fn join_lines(top: &PlateText, bottom: &PlateText) -> Option<PlateText> {
    let (top, bottom) = (trim_row_marks(top), trim_row_marks(bottom));
    if top.len() < 2 || bottom.len() < 2 {
        return None;
    }
    let row_confidence = |row: &[(char, f32)]| row.iter().map(|c| c.1).fold(1.0, f32::min);
    Some(PlateText {
        text: top.iter().chain(&bottom).map(|c| c.0).collect(),
        char_confidences: top.iter().chain(&bottom).map(|c| c.1).collect(),
        // Both lines must be right for the plate to be.
        confidence: row_confidence(&top) * row_confidence(&bottom),
        // The Dutch prior knows single-line sidecodes only.
        country: None,
    })
}

/// Keeps a read only if it looks like a plate and is confident enough to vote.
pub fn acceptable(read: &PlateText, cfg: &ReadConfig) -> bool {
    read.text.chars().count() >= cfg.min_chars && read.confidence >= cfg.min_confidence
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::BoxF;

    fn read(text: &str, confidence: f32, dutch: bool) -> PlateText {
        PlateText {
            text: text.into(),
            char_confidences: vec![confidence; text.len()],
            confidence,
            country: dutch.then_some(dutch::NL),
        }
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

    /// A reader whose read of a crop, and where its characters lie, depend
    /// only on the crop's width, as with a plate its box cuts short: `look`
    /// answers for each width. Counts its calls.
    struct ByWidth<F> {
        look: F,
        calls: usize,
    }

    impl<F: FnMut(u32) -> (PlateText, Option<Extent>) + Send> PlateReader for ByWidth<F> {
        fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
            self.calls += 1;
            Ok(crops
                .iter()
                .map(|c| {
                    let (text, extent) = (self.look)(c.width());
                    Look { text, extent }
                })
                .collect())
        }
    }

    const PLATE: &str = "1CMV331";

    /// Sees `PLATE` with its right part beyond the detected box: the wider
    /// the crop, the more of it it reads, the last character at the crop's
    /// right edge until the crop (`whole_at` px wide) shows it all.
    fn cut_reader(whole_at: u32) -> ByWidth<impl FnMut(u32) -> (PlateText, Option<Extent>)> {
        ByWidth {
            look: move |width: u32| {
                let shown = ((width * 7) / whole_at).clamp(1, 7) as usize;
                let last = if shown == 7 { 0.85 } else { 0.97 };
                let r = read(&PLATE[..shown], 0.95, false);
                (r, Some(Extent { first: 0.12, last }))
            },
            calls: 0,
        }
    }

    /// Reads `narrow` from the crop as detected and `wide` from any longer
    /// one, its characters short of both edges either way.
    fn two_looks(
        narrow: PlateText,
        wide: PlateText,
    ) -> ByWidth<impl FnMut(u32) -> (PlateText, Option<Extent>)> {
        let plain_width = plain_crop().width();
        ByWidth {
            look: move |width: u32| {
                let r = if width > plain_width {
                    wide.clone()
                } else {
                    narrow.clone()
                };
                let extent = Extent {
                    first: 0.12,
                    last: 0.87,
                };
                (r, Some(extent))
            },
            calls: 0,
        }
    }

    fn gray_frame() -> RgbImage {
        RgbImage::from_pixel(400, 200, image::Rgb([200, 200, 200]))
    }

    fn plain_crop() -> RgbImage {
        rectify::rectify(&gray_frame(), &detection().corners).expect("crop")
    }

    /// The one read of [`detection`] on [`gray_frame`].
    fn final_read(reader: &mut dyn PlateReader) -> PlateText {
        let mut out = rectify_and_read(reader, &gray_frame(), vec![detection()]).expect("read");
        assert_eq!(out.len(), 1);
        out.remove(0).plate
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
    fn a_sure_foreign_read_is_checked_in_a_longer_crop_though_it_reaches_no_edge() {
        // The box ended inside the last `1`, which the reader dropped unseen.
        let mut reader = two_looks(read("1CMV33", 0.99, false), read("1CMV331", 0.98, false));
        assert_eq!(final_read(&mut reader).text, "1CMV331");
        assert_eq!(reader.calls, 2);
    }

    #[test]
    fn a_longer_look_that_reads_the_plates_frame_leaves_a_sure_read_as_it_was() {
        // The frame as an `H`: it fits a layout but is clearly less sure.
        let mut reader = two_looks(read("DP989CC", 0.99, false), read("DP989CCH", 0.84, false));
        assert_eq!(final_read(&mut reader).text, "DP989CC");
        // As sure, but no European plate has that shape.
        let mut reader = two_looks(read("DP989CC", 0.99, false), read("DP989CC1", 0.99, false));
        assert_eq!(final_read(&mut reader).text, "DP989CC");
    }

    #[test]
    fn only_sure_reads_the_dutch_prior_did_not_decide_are_looked_at_again() {
        let wide = read("XXXXXXX", 0.99, false);
        // Decided by the Dutch prior: its sidecode fixes the length.
        let mut dutch = two_looks(read("85GJ45", 0.99, true), wide.clone());
        assert_eq!(final_read(&mut dutch).text, "85GJ45");
        assert_eq!(dutch.calls, 1);
        // Unsure: it is not accepted anyway.
        let mut unsure = two_looks(read("AB123CD", SURE_FOREIGN - 0.1, false), wide);
        assert_eq!(final_read(&mut unsure).text, "AB123CD");
        assert_eq!(unsure.calls, 1);
    }

    #[test]
    fn a_read_cut_at_the_crop_edge_is_read_again_from_a_longer_crop() {
        let image = gray_frame();
        let plain = plain_crop();
        // The first lengthening (by WIDEN_BY) shows the whole plate.
        let mut reader = cut_reader(plain.width() + plain.width() / 5);
        let out = rectify_and_read(&mut reader, &image, vec![detection()]).expect("read");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].plate.text, PLATE);
        assert_eq!(out[0].plate.confidence, 0.95);
        assert!(
            out[0].crop.width() > plain.width(),
            "the longer crop is kept"
        );
        assert_eq!(reader.calls, 2);
    }

    #[test]
    fn a_read_still_cut_after_the_longest_crop_is_not_confident() {
        let image = gray_frame();
        // Each lengthening shows one more character, the last never.
        let mut reader = cut_reader(plain_crop().width() * 8 / 5);
        let out = rectify_and_read(&mut reader, &image, vec![detection()]).expect("read");
        assert_eq!(reader.calls, 1 + WIDEN_ROUNDS);
        let r = &out[0].plate;
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
            fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
                self.0 += 1;
                Ok(crops
                    .iter()
                    .map(|_| Look::unlocated(read("ZG1234AB", 0.9, false)))
                    .collect())
            }
        }
        let mut reader = Clear(0);
        let r = final_read(&mut reader);
        assert_eq!(r.text, "ZG1234AB");
        assert_eq!(r.confidence, 0.9);
        assert_eq!(reader.0, 1, "no extent known: never lengthened");
    }

    #[test]
    fn a_square_plate_is_read_as_two_rows_when_the_one_line_read_is_only_its_top_row() {
        // The batch of a squat plate: the crop as one line, then the top and
        // the bottom row. The one-line read sees only the big top row, surer
        // than both rows' product, but digits alone are no plate.
        struct Rows;
        impl PlateReader for Rows {
            fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
                assert_eq!(crops.len(), 3, "one line, top row, bottom row");
                Ok(vec![
                    read("10922", 0.98, false),
                    read("10922", 0.97, false),
                    read("BX", 0.93, false),
                ]
                .into_iter()
                .map(Look::unlocated)
                .collect())
            }
        }
        // A 1.3:1 box, a square plate.
        let (x1, y1, x2, y2) = (100.0, 60.0, 165.0, 110.0);
        let square = Detection {
            bbox: BoxF { x1, y1, x2, y2 },
            corners: [(x1, y1), (x2, y1), (x2, y2), (x1, y2)],
            score: 0.9,
        };
        assert!(rectify::is_squat(&square.corners));
        let out = rectify_and_read(&mut Rows, &gray_frame(), vec![square]).expect("read");
        let r = &out[0].plate;
        assert_eq!(r.text, "10922BX");
        assert!((r.confidence - 0.97 * 0.93).abs() < 1e-6, "{r:?}");
    }

    /// A reader that answers each call with the next of its scripted reads.
    struct Script(Vec<Vec<PlateText>>);
    impl PlateReader for Script {
        fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
            let reads = self.0.remove(0);
            assert_eq!(reads.len(), crops.len());
            Ok(reads.into_iter().map(Look::unlocated).collect())
        }
    }

    fn row(text: &str, confidences: &[f32]) -> PlateText {
        PlateText {
            text: text.into(),
            char_confidences: confidences.to_vec(),
            confidence: confidences.iter().copied().fold(1.0, f32::min),
            country: None,
        }
    }

    /// The detected box holds the top row, `10922`, of a square plate.
    /// Stretched down, the crop reads that row over `bottom`; stretched up,
    /// nothing over the row itself.
    fn top_row_over(bottom: PlateText) -> Script {
        Script(vec![
            vec![read("10922", 0.98, false)],
            vec![
                row("10922", &[0.99; 5]),
                bottom,
                row("", &[]),
                row("10922", &[0.98; 5]),
            ],
        ])
    }

    #[test]
    fn a_box_around_one_row_of_a_square_plate_is_stretched_to_read_the_other() {
        // The bottom row with a screw read as a faint `I`.
        let mut reader = top_row_over(row("BXI", &[0.94, 0.92, 0.15]));
        let r = final_read(&mut reader);
        assert_eq!(r.text, "10922BX");
        assert!((r.confidence - 0.99 * 0.92).abs() < 1e-6, "{r:?}");
        assert!(reader.0.is_empty(), "both looks were read");
    }

    #[test]
    fn a_stretched_read_that_follows_no_layout_leaves_the_row_as_it_was() {
        let r = final_read(&mut top_row_over(row("B7", &[0.9, 0.9])));
        assert_eq!(r.text, "10922");
        assert!(r.confidence < 0.8, "digits alone stay unsure: {r:?}");
    }

    #[test]
    fn a_whole_plate_read_is_never_stretched() {
        let mut reader = Script(vec![vec![read("ZG1234AB", 0.9, false)]]);
        assert_eq!(final_read(&mut reader).text, "ZG1234AB");
    }

    #[test]
    fn a_plate_read_that_fits_no_layout_keeps_its_text_at_a_lower_confidence() {
        struct Fixed;
        impl PlateReader for Fixed {
            fn read(&mut self, crops: &[RgbImage]) -> Result<Vec<Look>, ReadError> {
                Ok(crops
                    .iter()
                    .map(|_| Look::unlocated(read("17859AM", 0.95, false)))
                    .collect())
            }
        }
        let r = final_read(&mut Fixed);
        assert_eq!(r.text, "17859AM");
        assert!(
            (r.confidence - 0.95 * dutch::OFF_FORMAT_FACTOR).abs() < 1e-6,
            "{r:?}"
        );
    }
}
