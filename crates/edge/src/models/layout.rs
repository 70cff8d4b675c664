//! European plate layouts: whether a read is shaped like a plate at all.
//!
//! A layout is the sequence of letter and digit runs a country's plates
//! follow, e.g. Italy's `AB 123 CD` is two letters, three digits, two letters.
//! [`fits_european_layout`] says whether a read's text follows one of the
//! common layouts of European countries. It is a plausibility check, not a
//! country guess: the layouts overlap, and the list is coarse on purpose (a
//! run's length is a range), so that a plate of a listed country always fits.
//! A read that fits none is most often a plate read with a look-alike
//! (`17859AM` for Austrian `I7859AM`), an extra mark (`AXT83147` for Greek
//! `AXT3147`) or a cut end (`1CMV33` for Belgian `1CMV331`); the decoder
//! lowers its confidence ([`crate::models::dutch::decode`]). Where the read
//! holds letters and digits, [`layout_read`] first looks for the most
//! probable read of the same model output that does fit a layout (`AXT3147`
//! with the seal as a gap) and reports that instead, no more confident.
//!
//! Pure functions over text and slot probabilities; nothing here is written
//! anywhere.

use crate::message::PlateText;
use crate::models::ctc::{PLATE_CHARS, SLOTS};
use crate::models::dutch::{self, ClassPath};

/// One run of a layout: letters (`L`), digits (`D`) or either (`A`), between
/// `min` and `max` long.
#[derive(Clone, Copy, Debug)]
struct Run {
    class: u8,
    min: u8,
    max: u8,
}

const fn run(class: u8, min: u8, max: u8) -> Run {
    Run { class, min, max }
}

/// The layouts, by country. Sources: the countries' registration rules as
/// summarised in public references on European vehicle registration plates;
/// separators, the EU band, seals and stickers are not characters.
const LAYOUTS: &[&[Run]] = &[
    // AT: district (1-2 letters), then digits and letters (`W 12345 A`,
    // `I 7859 AM`); its letters-then-digits series fit DE's layout below.
    &[run(b'L', 1, 2), run(b'D', 1, 5), run(b'L', 1, 3)],
    // BE: `1-ABC-123`, older `ABC-123`.
    &[run(b'D', 1, 1), run(b'L', 3, 3), run(b'D', 3, 3)],
    &[run(b'L', 3, 3), run(b'D', 3, 3)],
    // DE (and HU's `ABC-123`, `AA AA-123`, the Baltic and Nordic letters-then
    // digits plates, SE, FI, LV, LT, GR `ABC-1234`): letters then digits; DE
    // adds an E or H for electric and historic vehicles.
    &[run(b'L', 1, 5), run(b'D', 1, 4), run(b'L', 0, 1)],
    // CH `ZH 123456`, DK and NO `AB 12345`: two letters, up to six digits.
    &[run(b'L', 2, 2), run(b'D', 1, 6)],
    // FR, IT, SK, HR, UA, BG, RO and the like: letters, digits, letters
    // (`AB-123-CD`, `ZG 1234-AB`, `AA 1234 BB`, `B 123 ABC`).
    &[run(b'L', 1, 3), run(b'D', 2, 4), run(b'L', 1, 3)],
    // Digits first: ES `1234 ABC` and EE `123 ABC` (three letters), FR
    // before 2009 `123 ABC 75` (ending in the department), IE `12-D-12345`.
    &[run(b'D', 3, 4), run(b'L', 3, 3)],
    &[run(b'D', 1, 4), run(b'L', 1, 3), run(b'D', 2, 2)],
    &[run(b'D', 2, 3), run(b'L', 1, 2), run(b'D', 1, 6)],
    // CZ `1AB 2345`, `1A2 3456`.
    &[
        run(b'D', 1, 1),
        run(b'L', 1, 2),
        run(b'A', 0, 1),
        run(b'D', 4, 4),
    ],
    // PL: a two-letter county and five characters, or a three-letter one and
    // four, the first of them a digit in most series (`WA 12345`, `KR 1234A`,
    // `PO 5GH21`, `WGM 1234`).
    &[run(b'L', 2, 2), run(b'D', 1, 1), run(b'A', 4, 4)],
    &[run(b'L', 3, 3), run(b'D', 1, 1), run(b'A', 3, 3)],
    // GB `AB12 CDE`; PT `AA-12-AA`, `12-AB-34`.
    &[run(b'L', 2, 2), run(b'D', 2, 2), run(b'L', 2, 3)],
    &[run(b'D', 2, 2), run(b'L', 2, 2), run(b'D', 2, 2)],
    // SI `LJ AB-123`, `KP 12-ABC`: region, then letters and digits mixed.
    &[run(b'L', 2, 2), run(b'A', 4, 5)],
];

/// Whether `text` (upper-case letters and digits, no separators) follows one
/// of `LAYOUTS`. Dutch plates are checked by their sidecodes
/// ([`crate::plate::is_dutch`]), which the layouts above also
/// mostly cover.
pub fn fits_european_layout(text: &str) -> bool {
    fits_any(text, LAYOUTS)
}

/// Whether `text` is a plate's length, letters and digits only, and follows
/// one of `layouts`.
fn fits_any(text: &str, layouts: &[&[Run]]) -> bool {
    let bytes = text.as_bytes();
    (4..=8).contains(&bytes.len())
        && bytes.iter().all(u8::is_ascii_alphanumeric)
        && layouts.iter().any(|layout| matches(bytes, layout))
}

/// Layouts found only on two-row plates (trailers, tractors, motorcycles),
/// where one row holds the digits and the other the letters. Kept apart from
/// `LAYOUTS` because a single-line read of this shape is most often a
/// misread (`17859AM` for Austrian `I7859AM`).
const TWO_ROW_LAYOUTS: &[&[Run]] = &[
    // UA (and RU, BY) tractors, trailers and motorcycles: four or five
    // digits over a two-letter region (`10922 / BX`, `6808 / XO`).
    &[run(b'D', 4, 5), run(b'L', 2, 2)],
];

/// Whether `text`, read from a plate's two rows joined top to bottom,
/// follows one of the layouts of `LAYOUTS` or `TWO_ROW_LAYOUTS`.
pub fn fits_two_row_layout(text: &str) -> bool {
    fits_european_layout(text) || fits_any(text, TWO_ROW_LAYOUTS)
}

fn class_ok(class: u8, c: u8) -> bool {
    match class {
        b'L' => c.is_ascii_alphabetic(),
        b'D' => c.is_ascii_digit(),
        _ => true,
    }
}

/// Whether `text` is exactly the runs of `layout`, by backtracking over
/// run lengths (layouts are short, texts at most eight characters).
fn matches(text: &[u8], layout: &[Run]) -> bool {
    let Some((first, rest)) = layout.split_first() else {
        return text.is_empty();
    };
    let longest = text
        .iter()
        .take(usize::from(first.max))
        .take_while(|&&c| class_ok(first.class, c))
        .count();
    (usize::from(first.min)..=longest)
        .rev()
        .any(|n| matches(&text[n..], rest))
}

/// Largest log-probability gap (natural log) between the greedy path and the
/// best layout path at which [`layout_read`] takes the layout path. One edit
/// of a character the model was sure of costs about this much: relabelling a
/// `1` it gave 0.997 as the `I` it gave 0.0025 costs ln(0.997 / 0.0025) = 6;
/// dropping a seal read as `8` at 0.98 with the blank second at 0.01 costs
/// 4.6. Two such edits cost more, so at most one sure character is
/// overruled; a read the layouts would need rewritten more is left as it is.
/// Measured on `../shared/data/plates` (docs/measurements/accuracy.md): the reads the
/// decode reshaped lay between 0.8 and 6.5 nats from their greedy path; 3.0
/// lost the Greek plate, 4.5 and 6.0 gave the same exact rates.
pub const LAYOUT_MARGIN: f32 = 6.0;

/// Decodes an off-format read again under the layouts: where the greedy read
/// `greedy` of `slots` holds letters and digits but is neither a Dutch plate
/// nor fits `LAYOUTS`, the most probable CTC path that does
/// (`best_layout_path`; it may relabel a character within the class its
/// run allows, or drop one as a gap, never add one where the model saw
/// none), when it lies within [`LAYOUT_MARGIN`] of the greedy path and is
/// not itself a Dutch plate (the Dutch prior, with its own margin, already
/// turned that down). `None` otherwise: the caller keeps the greedy read.
///
/// The read it returns overruled the model, on a coarse prior, so it changes
/// which text an off-format read reports, never how sure it is: its
/// per-character confidences (as in [`dutch::best_path`]: the chosen slot
/// over what its position allows, blank and separator included, so that a
/// relabelled character the model gave little scores low) are scaled by
/// [`dutch::OFF_FORMAT_FACTOR`], as the off-format read it replaces would
/// have been. It is reported and votes in its track, but neither it nor a
/// track of such reads reaches the acceptance threshold. `country` stays
/// `None`: the layouts overlap and name no country, and
/// `country.is_some()` means that the Dutch prior decided.
pub fn layout_read(slots: &[[f32; SLOTS]], greedy: &PlateText) -> Option<PlateText> {
    layout_read_with_margin(slots, greedy, LAYOUT_MARGIN)
}

/// [`layout_read`] with an explicit margin (for measuring other settings).
pub fn layout_read_with_margin(
    slots: &[[f32; SLOTS]],
    greedy: &PlateText,
    margin: f32,
) -> Option<PlateText> {
    let text = greedy.text.as_str();
    // A read of one class only (`10922`, `HDAD`, `FABIA`) is most often one
    // line of a two-line plate, a plate cut short or a word on the car, not a
    // plate with one character misread: reshaping it would mean reading a
    // clear character as the other class.
    let mixed =
        text.bytes().any(|c| c.is_ascii_alphabetic()) && text.bytes().any(|c| c.is_ascii_digit());
    if !mixed || fits_european_layout(text) || crate::plate::is_dutch(text) {
        return None;
    }
    let path = best_layout_path(slots, text.chars().count())?;
    if dutch::greedy_log_prob(slots) - path.log_prob > margin || crate::plate::is_dutch(&path.text)
    {
        return None;
    }
    let mut read = PlateText {
        confidence: path.char_confidences.iter().copied().fold(1.0, f32::min),
        text: path.text,
        char_confidences: path.char_confidences,
        country: None,
    };
    dutch::discount(&mut read, dutch::OFF_FORMAT_FACTOR);
    Some(read)
}

/// Every concrete class pattern of `LAYOUTS` (one class byte per
/// character, each run at each of its lengths) whose length lies in `lens`
/// and within a plate's 4 to 8 characters, without repeats.
fn patterns(lens: std::ops::RangeInclusive<usize>) -> Vec<Vec<u8>> {
    fn expand(rest: &[Run], prefix: &mut Vec<u8>, out: &mut Vec<Vec<u8>>) {
        let Some((first, rest)) = rest.split_first() else {
            if !out.contains(prefix) {
                out.push(prefix.clone());
            }
            return;
        };
        for n in first.min..=first.max {
            let len = prefix.len();
            prefix.extend(std::iter::repeat_n(first.class, usize::from(n)));
            if prefix.len() <= 8 {
                expand(rest, prefix, out);
            }
            prefix.truncate(len);
        }
    }
    let mut all = Vec::new();
    for layout in LAYOUTS {
        expand(layout, &mut Vec::new(), &mut all);
    }
    all.retain(|p| (4..=8).contains(&p.len()) && lens.contains(&p.len()));
    all
}

/// Slot indices (as in [`crate::models::ppocr`]: 1 + index into the plate
/// characters) a run class allows.
fn class_slots(class: u8) -> Vec<usize> {
    PLATE_CHARS
        .iter()
        .enumerate()
        .filter(|(_, &c)| class_ok(class, c))
        .map(|(i, _)| i + 1)
        .collect()
}

/// The most probable CTC path over `slots` that spells a plate of one of
/// `LAYOUTS` ([`dutch::best_class_path`] per concrete pattern), among
/// patterns at most one character longer or shorter than `near_len` (the
/// greedy read's length): inserting or dropping a character the model saw
/// clearly costs several nats each, so two of them never come within
/// [`LAYOUT_MARGIN`] and are not searched. `None` when no pattern fits in
/// the steps.
pub(crate) fn best_layout_path(slots: &[[f32; SLOTS]], near_len: usize) -> Option<ClassPath> {
    let lens = near_len.saturating_sub(1)..=near_len + 1;
    let letters = class_slots(b'L');
    let digits = class_slots(b'D');
    let either = class_slots(b'A');
    patterns(lens)
        .iter()
        .filter_map(|p| {
            let classes: Vec<Vec<usize>> = p
                .iter()
                .map(|&c| match c {
                    b'L' => letters.clone(),
                    b'D' => digits.clone(),
                    _ => either.clone(),
                })
                .collect();
            dutch::best_class_path(slots, &classes, true)
        })
        .max_by(|a, b| a.log_prob.total_cmp(&b.log_prob))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::lattice::{self, step};

    use crate::models::ctc::greedy;
    use crate::models::dutch::OFF_FORMAT_FACTOR;
    use crate::models::format::decode;

    /// A clean lattice: `_` blank, `-` separator, characters at 0.999 (the
    /// reader's usual peak: dropping one costs ln(999) = 6.9 nats).
    fn clean(text: &str) -> Vec<[f32; SLOTS]> {
        lattice::clean(text, 0.999)
    }

    #[test]
    fn an_i_read_as_one_is_resolved_by_the_layout_and_stays_unsure() {
        // Austrian `I 7859 AM`: the model sees a 1 where the district letter
        // stands, I its second choice. `17859AM` fits no layout (`7859AM`,
        // the 1 dropped, neither), `I7859AM` does.
        let mut slots = clean("_");
        slots.push(step(&[('1', 0.7), ('I', 0.25)]));
        slots.extend(clean("_-_7_8_5_9_-_A_M_"));
        let g = greedy(&slots);
        assert_eq!(g.text, "17859AM");
        let r = decode(&slots, false);
        assert_eq!(r.text, "I7859AM");
        assert_eq!(
            (
                r.country,
                crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number)
            ),
            (None, None)
        );
        // The I: 0.25 over letters, blank (0.05) and separator, then scaled
        // as the off-format read it replaces; the plate is no surer.
        let i = 0.25 / 0.30 * OFF_FORMAT_FACTOR;
        assert!((r.char_confidences[0] - i).abs() < 1e-4, "{r:?}");
        assert!((r.confidence - i).abs() < 1e-4, "{r:?}");
        assert!(r.confidence < 0.8);
        // The rest keep the model's own confidence, scaled alike.
        assert!((r.char_confidences[1] - 0.999 * OFF_FORMAT_FACTOR).abs() < 1e-4);
    }

    #[test]
    fn an_overruled_character_the_model_barely_saw_scores_low() {
        // The I at 0.04 beside a 1 at 0.9: within the margin (ln(0.9 / 0.04)
        // = 3.1), but the I's own confidence says how little the model saw it.
        let mut slots = clean("_");
        slots.push(step(&[('1', 0.9), ('I', 0.04)]));
        slots.extend(clean("_7_8_5_9_A_M_"));
        let r = decode(&slots, false);
        assert_eq!(r.text, "I7859AM");
        assert!(r.char_confidences[0] < 0.5, "{r:?}");
        assert!(r.char_confidences[0] < r.char_confidences[1]);
        assert_eq!(r.confidence, r.char_confidences[0]);
    }

    #[test]
    fn a_seal_read_as_a_digit_is_dropped_when_the_blank_is_its_second_choice() {
        // Greek `AXT 3147` with the seal between the groups read as 8.
        let mut slots = clean("_A_X_T_");
        slots.push(step(&[('8', 0.9), ('B', 0.01)]));
        slots.extend(clean("_3_1_4_7_"));
        assert_eq!(greedy(&slots).text, "AXT83147");
        let r = decode(&slots, false);
        assert_eq!(r.text, "AXT3147");
        assert_eq!(r.country, None);
        // Nothing relabelled: every character at the model's confidence,
        // scaled as an off-format read.
        assert!(
            (r.confidence - 0.999 * OFF_FORMAT_FACTOR).abs() < 1e-4,
            "{r:?}"
        );
        assert!(
            !crate::models::format::off_format(&r, false, false),
            "it fits a layout now"
        );
    }

    #[test]
    fn a_clear_read_that_fits_no_layout_is_left_as_it_is() {
        // The 8 read at 0.9985 with the blank at 0.0015: dropping it costs
        // ln(666) = 6.5 nats, beyond the margin; dropping or relabelling any
        // other character costs more.
        let mut slots = clean("_A_X_T_");
        slots.push(step(&[('8', 0.9985)]));
        slots.extend(clean("_3_1_4_7_"));
        let g = greedy(&slots);
        assert_eq!(g.text, "AXT83147");
        assert_eq!(layout_read(&slots, &g), None);
        assert_eq!(decode(&slots, false), g);
        // The same output is reshaped under a wider margin: it is the margin
        // that keeps it.
        let wide = layout_read_with_margin(&slots, &g, 8.0).expect("within 8");
        assert_eq!(wide.text, "AXT3147");
    }

    #[test]
    fn reads_of_one_class_and_yellow_crops_are_not_reshaped() {
        // `10922` (the top line of `10922BX`) with a Z second on a 2.
        let mut slots = clean("_1_0_9_2_");
        slots.push(step(&[('2', 0.7), ('Z', 0.29)]));
        slots.push(step(&[]));
        let g = greedy(&slots);
        assert_eq!(g.text, "10922");
        assert_eq!(layout_read(&slots, &g), None);
        // A yellow crop's off-format read stays for the Dutch checks.
        let mut slots = clean("_");
        slots.push(step(&[('1', 0.7), ('I', 0.25)]));
        slots.extend(clean("_7_8_5_9_A_M_"));
        assert_eq!(decode(&slots, true).text, "17859AM");
    }

    #[test]
    fn patterns_cover_each_layout_at_each_run_length() {
        let p = patterns(7..=7);
        for want in [&b"LDDDDLL"[..], b"LLLDDDD", b"DLLLDDD"] {
            assert!(p.iter().any(|x| x == want), "{:?}", want);
        }
        assert!(p.iter().all(|x| x.len() == 7));
        let all = patterns(0..=20);
        assert!(all.iter().all(|x| (4..=8).contains(&x.len())));
        let mut dedup = all.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), all.len(), "no pattern twice");
    }

    #[test]
    fn plates_of_listed_countries_fit() {
        for text in [
            "I7859AM", "W12345A", "GUAB123", // AT
            "1CMV331", "ABC123", // BE
            "HDAD89", "ESEL2399", "MX1", // DE (MX1 too short: below)
            "AB123CD", "DS346WG", "ZG1712RM", "AA1234BB", "B123ABC", // FR IT HR UA RO
            "1234ABC", "12D12345", // ES IE
            "1AB2345", "1A23456", // CZ
            "WA12345", "KR1234A", "PO5GH21", // PL
            "AB12CDE", "12AB34", // GB PT
            "AXT3147", "NEBV043", "LMF462", "WGM1234", // GR PL HU PL
            "ZH123456", "AB12345", // CH DK
        ] {
            if text == "MX1" {
                assert!(!fits_european_layout(text), "{text}: too short");
                continue;
            }
            assert!(fits_european_layout(text), "{text}");
        }
    }

    #[test]
    fn two_row_plates_fit_their_own_layouts_which_single_lines_do_not() {
        for text in ["10922BX", "41353AE"] {
            assert!(fits_two_row_layout(text), "{text}");
            assert!(!fits_european_layout(text), "{text}: as one line");
        }
        // Four digits and two letters is also Spain's single-line layout.
        assert!(fits_two_row_layout("6808XO"));
        assert!(fits_two_row_layout("HDAD89"), "single-line layouts too");
        for text in ["10922", "10922B", "A1B2C3D"] {
            assert!(!fits_two_row_layout(text), "{text}");
        }
    }

    #[test]
    fn misreads_that_break_the_layout_do_not_fit() {
        // A Belgian plate cut short (`1CMV33`) still fits France's old
        // `123 ABC 75`: the check cannot catch every cut plate.
        assert!(fits_european_layout("1CMV33"));
        for text in [
            "17859AM",   // I read as 1: five digits, then letters
            "7859AM",    // its 1 dropped: four digits take three letters
            "AXT83147",  // a seal read as 8: three letters, five digits
            "10922",     // digits only
            "HDAD",      // letters only
            "ABCDEFGH",  // letters only
            "ZG1712RMX", // nine characters
            "A1B2C3",    // alternating
            "",
        ] {
            assert!(!fits_european_layout(text), "{text}");
        }
    }
}
