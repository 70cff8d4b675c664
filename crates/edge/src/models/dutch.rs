//! Dutch-aware CTC decoding: the sidecodes 1 to 14 as a format prior.
//!
//! The reader's output is a matrix of per-time-step probabilities over the
//! decoding slots of [`crate::models::ppocr`] (blank, A-Z, 0-9, separator). The
//! greedy decode takes the best slot per step; it reads an `I` where a Dutch
//! plate can only hold a consonant, an `O` where it can only hold a digit.
//!
//! Here, for each sidecode, a Viterbi search over time steps x pattern states
//! finds the most probable CTC path that emits exactly that sidecode's six
//! characters: letter positions may only emit [`PLATE_LETTERS`] (consonants
//! without C and Q, the same set for every sidecode), digit positions only
//! 0-9. Before, between and after the characters the path rests in gap states
//! that emit the blank or the separator slot (a dash, a dot, a screw, a
//! sticker; separators are dropped from the text, so where they stand does not
//! change the plate). The standard
//! CTC rules hold: a character state may last several steps (repeats collapse),
//! and the same character twice in a row needs a gap step between them. So a
//! look-alike is resolved by where it stands and by the model's own second
//! choice at that step, never by replacing characters in a finished string.
//!
//! The best sidecode path is scored by its log-probability and compared with
//! the unconstrained (greedy) path's. Every path passes through every step
//! once, so the difference is a log-likelihood ratio: how much the model
//! prefers what it saw to the best Dutch plate. When that ratio is within
//! [`DUTCH_MARGIN`] (or within [`DUTCH_MARGIN_HINTED`] when the caller says the
//! plate looks Dutch, e.g. its crop is yellow, [`looks_dutch_yellow`]), the
//! Dutch read is returned with `country = Some("NL")` and its sidecode;
//! otherwise the greedy read: a foreign plate is not forced into a Dutch
//! pattern. A greedy read that fits no European layout either is decoded
//! once more under the layouts ([`layout::layout_read`], the same search over
//! their letter and digit runs; not for yellow crops), and that read is
//! reported instead when it is close enough, at the confidence of an
//! off-format read. [`off_format`] says where format knowledge finds a read unlikely
//! to be a whole, right plate (a yellow crop that spells no Dutch plate, or a
//! read that follows no common European layout, [`crate::models::layout`]); the
//! read stage then lowers its confidence ([`OFF_FORMAT_FACTOR`]).
//!
//! Pure functions over numbers and pixels; nothing here is written anywhere.

use image::RgbImage;

use super::ctc::{PLATE_CHARS, SLOTS, SLOT_SEP};
use crate::message::PlateText;
use crate::plate::{Sidecode, PLATE_LETTERS};

/// Largest log-probability gap (natural log) between the unconstrained path
/// and the best Dutch path at which the Dutch read is taken without a hint.
/// 2.0 nats: the model may prefer what it saw up to e^2 = 7.4 times over the
/// Dutch plate, enough for a few look-alikes (each costing log(p_I / p_J)) or
/// one small extra mark, while a seven-character foreign plate, whose seventh
/// character must then be read as a gap at a step where the blank is unlikely,
/// costs far more.
pub const DUTCH_MARGIN: f32 = 2.0;

/// The same gap when the caller's hint says the plate is Dutch (a yellow
/// crop). Wider, but finite: yellow plates are also British, and a path that
/// has to throw away a clearly read character is not a Dutch plate.
pub const DUTCH_MARGIN_HINTED: f32 = 6.0;

/// Floor under probabilities before taking logs, so that an impossible step
/// costs a lot instead of making the path infinitely improbable.
const P_FLOOR: f32 = 1e-9;

/// Country code put in [`PlateText::country`] when the Dutch prior applied.
pub const NL: &str = "NL";

/// The best path through one sidecode's lattice.
#[derive(Clone, Debug, PartialEq)]
pub struct DutchPath {
    pub sidecode: Sidecode,
    /// The six characters, no dashes.
    pub text: String,
    /// Per character: its best step's probability renormalised over what its
    /// position allows at that step (see `char_confidence`).
    pub char_confidences: Vec<f32>,
    /// Natural-log probability of the whole path.
    pub log_prob: f32,
}

/// Slot indices a pattern class allows: `X` = Dutch plate letters, `9` = digits.
fn allowed_slots(class: u8) -> Vec<usize> {
    let chars: &[u8] = if class == b'X' {
        PLATE_LETTERS.as_bytes()
    } else {
        b"0123456789"
    };
    chars
        .iter()
        .map(|c| 1 + PLATE_CHARS.iter().position(|p| p == c).unwrap_or(0))
        .collect()
}

fn ln(p: f32) -> f32 {
    p.max(P_FLOOR).ln()
}

/// A character's confidence at one step: the chosen slot's probability over
/// the sum of everything the constrained path could have emitted there: the
/// classes its position allows, the blank and the separator. An impossible
/// look-alike (an `I` in a letter group, an `O` in a digit group) then no
/// longer dilutes it, since the plate cannot carry it; but the blank still
/// does, so that a character the search had to put where the model saw
/// nothing scores low instead of looking certain.
fn char_confidence(step: &[f32; SLOTS], slot: usize, allowed: &[usize]) -> f32 {
    let total: f32 = allowed.iter().map(|&s| step[s]).sum::<f32>() + step[0] + step[SLOT_SEP];
    if total <= 0.0 {
        0.0
    } else {
        (step[slot] / total).clamp(0.0, 1.0)
    }
}

/// Log-probability of the unconstrained best path: the best slot at each step.
pub fn greedy_log_prob(slots: &[[f32; SLOTS]]) -> f32 {
    slots
        .iter()
        .map(|s| ln(s.iter().copied().fold(0.0, f32::max)))
        .sum()
}

/// The most probable CTC path emitting exactly `sidecode`'s six characters;
/// `None` when there are fewer steps than characters.
pub fn best_path(slots: &[[f32; SLOTS]], sidecode: Sidecode) -> Option<DutchPath> {
    // Dashes need no state of their own: any gap may hold a separator.
    let classes: Vec<Vec<usize>> = sidecode
        .pattern()
        .bytes()
        .filter(|&b| b != b'-')
        .map(allowed_slots)
        .collect();
    if classes.len() != 6 {
        return None;
    }
    let p = best_class_path(slots, &classes, false)?;
    Some(DutchPath {
        sidecode,
        text: p.text,
        char_confidences: p.char_confidences,
        log_prob: p.log_prob,
    })
}

/// The best path through one pattern of character classes
/// ([`best_class_path`]).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ClassPath {
    pub text: String,
    /// Per character, as [`DutchPath::char_confidences`].
    pub char_confidences: Vec<f32>,
    pub log_prob: f32,
}

/// The most probable CTC path emitting one character of each of `classes`
/// (each the slots its position allows), in order, with gap states before,
/// between and after them that emit the blank or the separator; `None` when
/// there are fewer steps than characters. The search of [`best_path`], for
/// any pattern ([`crate::models::layout`] uses it too). With `ink_only`, a
/// character may only stand on a step whose best slot is a character: the
/// path may relabel or drop what the model read, never put a character
/// where it saw none.
pub(crate) fn best_class_path(
    slots: &[[f32; SLOTS]],
    classes: &[Vec<usize>],
    ink_only: bool,
) -> Option<ClassPath> {
    let n_pos = classes.len();
    let t_len = slots.len();
    if n_pos == 0 || t_len < n_pos {
        return None;
    }
    // State layout: gaps 0..=n_pos (gap k lies before position k), then each
    // position's classes in turn.
    let mut offset = vec![0usize; n_pos];
    let mut next = n_pos + 1;
    for (k, c) in classes.iter().enumerate() {
        offset[k] = next;
        next += c.len();
    }
    let n_states = next;
    if n_states >= usize::from(u16::MAX) {
        return None;
    }
    let neg = f32::NEG_INFINITY;
    let gap_emit = |t: usize| -> f32 { ln(slots[t][0].max(slots[t][SLOT_SEP])) };
    let char_emit = |t: usize, slot: usize| -> f32 {
        if ink_only && !(1..=PLATE_CHARS.len()).contains(&best_slot(&slots[t])) {
            neg
        } else {
            ln(slots[t][slot])
        }
    };

    let mut prev = vec![neg; n_states];
    let mut cur = vec![neg; n_states];
    let mut back = vec![u16::MAX; t_len * n_states];
    prev[0] = gap_emit(0);
    for (j, &slot) in classes[0].iter().enumerate() {
        prev[offset[0] + j] = char_emit(0, slot);
    }
    let mut top: Vec<[(f32, usize); 2]> = Vec::with_capacity(n_pos);
    for t in 1..t_len {
        cur.fill(neg);
        let bt = &mut back[t * n_states..(t + 1) * n_states];
        // Best and second-best predecessor among each position's classes, so a
        // character can follow a different one directly but the same one only
        // across a gap.
        top.clear();
        for k in 0..n_pos {
            let mut b = [(neg, usize::MAX); 2];
            for j in 0..classes[k].len() {
                let v = prev[offset[k] + j];
                if v > b[0].0 {
                    b[1] = b[0];
                    b[0] = (v, offset[k] + j);
                } else if v > b[1].0 {
                    b[1] = (v, offset[k] + j);
                }
            }
            top.push(b);
        }
        for k in 0..=n_pos {
            // Gap k: stay, or arrive from position k-1's character.
            let mut best = (prev[k], k);
            if k >= 1 && top[k - 1][0].0 > best.0 {
                best = top[k - 1][0];
            }
            if best.0 > neg {
                cur[k] = best.0 + gap_emit(t);
                bt[k] = best.1 as u16;
            }
        }
        for k in 0..n_pos {
            for (j, &slot) in classes[k].iter().enumerate() {
                let me = offset[k] + j;
                // Stay (repeat collapses), or come from the gap before.
                let mut best = (prev[me], me);
                if prev[k] > best.0 {
                    best = (prev[k], k);
                }
                if k >= 1 {
                    // Directly from the previous character, if it is another one.
                    let same = classes[k - 1].iter().position(|&s| s == slot);
                    let from = top[k - 1]
                        .iter()
                        .find(|(_, st)| same.is_none_or(|i| *st != offset[k - 1] + i))
                        .copied()
                        .unwrap_or((neg, usize::MAX));
                    if from.0 > best.0 {
                        best = from;
                    }
                }
                if best.0 > neg {
                    cur[me] = best.0 + char_emit(t, slot);
                    bt[me] = best.1 as u16;
                }
            }
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    // End in the last gap or on the last character.
    let mut end = (prev[n_pos], n_pos);
    for j in 0..classes[n_pos - 1].len() {
        let st = offset[n_pos - 1] + j;
        if prev[st] > end.0 {
            end = (prev[st], st);
        }
    }
    if end.0 == neg {
        return None;
    }
    // Walk back, keeping each character's best step.
    let mut path = vec![0usize; t_len];
    let mut st = end.1;
    for t in (0..t_len).rev() {
        path[t] = st;
        if t > 0 {
            st = usize::from(back[t * n_states + st]);
        }
    }
    let mut text = String::with_capacity(n_pos);
    let mut confs: Vec<f32> = Vec::with_capacity(n_pos);
    let mut last = usize::MAX;
    for (t, &st) in path.iter().enumerate() {
        if st > n_pos {
            let k = offset.iter().rposition(|&o| o <= st).unwrap_or(0);
            let slot = classes[k][st - offset[k]];
            let c = char_confidence(&slots[t], slot, &classes[k]);
            if st == last {
                if let Some(l) = confs.last_mut() {
                    *l = l.max(c);
                }
            } else {
                text.push(PLATE_CHARS[slot - 1] as char);
                confs.push(c);
            }
        }
        last = st;
    }
    Some(ClassPath {
        text,
        char_confidences: confs,
        log_prob: end.0,
    })
}

/// The model's best slot at one step.
fn best_slot(step: &[f32; SLOTS]) -> usize {
    step.iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(i, _)| i)
}

/// The best path over all fourteen sidecodes.
pub fn best_dutch(slots: &[[f32; SLOTS]]) -> Option<DutchPath> {
    Sidecode::ALL
        .into_iter()
        .filter_map(|code| best_path(slots, code))
        .max_by(|a, b| a.log_prob.total_cmp(&b.log_prob))
}

/// What an off-format read's confidences are multiplied by: a yellow crop
/// whose text is no Dutch plate, or a read that follows neither a Dutch
/// sidecode nor a common European layout ([`layout::fits_european_layout`];
/// digits only, letters only, `17859AM`). 0.6 keeps a sure
/// read (0.99 becomes 0.59) above `read.min_confidence`'s default 0.5, so it is
/// still reported and still votes in a track, but below the acceptance
/// threshold's default 0.8, so it is never acted on alone.
///
/// Why each case is rarely a whole, right plate: a yellow plate that is not
/// Dutch is rare on Dutch roads (British rear plates), while a Dutch plate read
/// short or with a look-alike the prior could not undo (`H803` for `H803SF`,
/// `BBXPFS` for `88XPFS`) is not. A read of digits only is most often one line
/// of a two-line plate (`10922` of `10922BX`) or a cut one; European plates
/// carry letters, Luxembourg's all-digit plates excepted, which thus wait for
/// a second read in their track.
pub const OFF_FORMAT_FACTOR: f32 = 0.6;

/// Scales the plate's and every character's confidence by `factor`.
pub(crate) fn discount(read: &mut PlateText, factor: f32) {
    read.confidence *= factor;
    for c in &mut read.char_confidences {
        *c *= factor;
    }
}

/// Smallest share of plate-yellow pixels for [`looks_dutch_yellow`].
pub const YELLOW_SHARE: f32 = 0.25;

/// Whether a plate crop's field is yellow, as Dutch plates are: at least
/// [`YELLOW_SHARE`] of its pixels have a yellow hue (35 to 65 degrees), are
/// saturated (at least 0.35) and bright (value at least 0.3). Cheap: one pass,
/// no allocation. White, red-on-white and blue plates fail; so does a crop
/// too dark to tell, which then gets no hint (the margin test still applies).
pub fn looks_dutch_yellow(img: &RgbImage) -> bool {
    let n = img.width() as usize * img.height() as usize;
    if n == 0 {
        return false;
    }
    let yellow = img
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0.map(f32::from);
            let max = r.max(g).max(b);
            let min = r.min(g).min(b);
            let chroma = max - min;
            if max < 0.3 * 255.0 || chroma < 0.35 * max || max == b {
                return false;
            }
            // Hue in degrees; yellow is 60, orange-yellow plates sit nearer 45.
            let hue = if max == r {
                60.0 * ((g - b) / chroma)
            } else {
                60.0 * (2.0 + (b - r) / chroma)
            };
            (35.0..=65.0).contains(&hue)
        })
        .count();
    yellow as f32 >= YELLOW_SHARE * n as f32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ctc::greedy;
    use crate::models::format::{decode, off_format};
    use crate::models::lattice::{self, step};
    use crate::plate::dutch_sidecode;

    /// A clean lattice for `text`: `_` blank, `-` separator, characters at 0.95.
    fn clean(text: &str) -> Vec<[f32; SLOTS]> {
        lattice::clean(text, 0.95)
    }

    #[test]
    fn i_where_only_a_consonant_fits_is_read_as_j() {
        // "61TJB4" is 99-XXX-9, sidecode 7; dashes as in "61-TJ-B4" are fine
        // too. The model leans to I.
        let code = dutch_sidecode("61TJB4").expect("fits a sidecode");
        assert_eq!((code.number(), code.pattern()), (7, "99-XXX-9"));
        let mut slots = clean("_6_1_-_T_");
        slots.push(step(&[('I', 0.55), ('J', 0.4)]));
        slots.extend(clean("_-_B_4_"));
        let g = greedy(&slots);
        assert_eq!(g.text, "61TIB4");
        let r = decode(&slots, false);
        assert_eq!(r.text, "61TJB4");
        assert_eq!(r.country, Some("NL"));
        assert_eq!(
            crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number),
            Some(code.number())
        );
        // J's confidence: 0.4 over J + blank (0.05) + separator, I not counted.
        assert!((r.char_confidences[3] - 0.4 / 0.45).abs() < 1e-4, "{r:?}");
        assert!(r.confidence > 0.85, "{r:?}");
    }

    #[test]
    fn o_and_zero_are_resolved_by_position() {
        // "GH-066-X" (sidecode 9) with the model preferring O on the first digit.
        let mut slots = clean("_G_H_-_");
        slots.push(step(&[('O', 0.6), ('0', 0.35)]));
        slots.extend(clean("_6_6_-_X_"));
        assert_eq!(greedy(&slots).text, "GHO66X");
        let r = decode(&slots, false);
        assert_eq!(
            (
                r.text.as_str(),
                crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number)
            ),
            ("GH066X", Some(9))
        );
        // "12-DX-34" (sidecode 3) with the model preferring 0 on the D; 120X34
        // fits no sidecode, 12DX34 does.
        let mut slots = clean("_1_2_-_");
        slots.push(step(&[('0', 0.5), ('D', 0.45)]));
        slots.extend(clean("_X_-_3_4_"));
        assert_eq!(greedy(&slots).text, "120X34");
        let r = decode(&slots, false);
        assert_eq!(
            (
                r.text.as_str(),
                crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number)
            ),
            ("12DX34", Some(3))
        );
    }

    #[test]
    fn foreign_seven_character_plates_stay_greedy() {
        for text in ["NEBV043", "DS346WG"] {
            let lattice: String = text.chars().flat_map(|c| ['_', c]).chain(['_']).collect();
            let slots = clean(&lattice);
            let r = decode(&slots, false);
            assert_eq!(r.text, text);
            assert_eq!(r.country, None, "{text}");
            assert_eq!(
                crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number),
                None
            );
            assert_eq!(r, greedy(&slots));
        }
    }

    #[test]
    fn a_yellow_hint_still_does_not_drop_a_clear_seventh_character() {
        let slots = clean("_A_B_1_2_C_D_E_");
        let r = decode(&slots, true);
        assert_eq!(r.text, "AB12CDE");
        assert_eq!(r.country, None);
        // Kept, but a yellow plate that is not Dutch is off-format; the same
        // seven characters on a white plate follow a European layout.
        assert!(off_format(&r, true, false));
        assert!(!off_format(&r, false, false));
    }

    #[test]
    fn short_or_letterless_reads_are_off_format_whole_plates_are_not() {
        // `H803` for `H803SF`: the crop was cut short. Too few characters for
        // any sidecode, so the greedy read comes back, off-format when yellow.
        let r = decode(&clean("_H_-_8_0_3_-_"), true);
        assert_eq!((r.text.as_str(), r.country), ("H803", None));
        assert!(off_format(&r, true, false));
        // A whole Dutch plate on the same yellow crop is not.
        let r = decode(&clean("_H_-_8_0_3_-_S_F_"), true);
        assert_eq!(
            (
                r.text.as_str(),
                crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number)
            ),
            ("H803SF", Some(10))
        );
        assert!(!off_format(&r, true, false));
        // The top line of a two-line plate (`10922` of `10922BX`) on a white
        // plate: digits only fits no layout.
        let r = decode(&clean("_1_0_9_2_2_"), false);
        assert!(off_format(&r, false, false));
        assert!(!off_format(
            &decode(&clean("_A_B_1_2_3_"), false),
            false,
            false
        ));
        let mut r = decode(&clean("_1_0_9_2_2_"), false);
        discount(&mut r, OFF_FORMAT_FACTOR);
        assert!(
            (r.confidence - 0.95 * OFF_FORMAT_FACTOR).abs() < 1e-5,
            "{r:?}"
        );
        assert!(r.char_confidences.iter().all(|&c| c < 0.8), "{r:?}");
    }

    #[test]
    fn dutch_plates_are_sidecodes_with_dutch_letters() {
        assert!(crate::plate::is_dutch("88XPFS"));
        assert!(crate::plate::is_dutch("H803SF"));
        assert!(
            !crate::plate::is_dutch("BBXPFS"),
            "no sidecode is all letters"
        );
        assert!(
            !crate::plate::is_dutch("1CMV33"),
            "C is no Dutch plate letter"
        );
        assert!(!crate::plate::is_dutch("H803"));
    }

    #[test]
    fn repeated_letters_need_a_blank_between_and_are_kept() {
        // "GG-12-BB"? Not a sidecode 4 plate with vowels; use sidecode 5:
        // "XX-XX-99" = "GG-NN-12".
        let slots = clean("_G_G_-_N__N_-_1_2_");
        let r = decode(&slots, false);
        assert_eq!(r.text, "GGNN12");
        assert_eq!(
            crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number),
            Some(5)
        );
        // Without the blank, G G is one G: no six characters, so the best Dutch
        // path must find a sixth character elsewhere and costs too much.
        let slots = clean("_GG_-_N__N_-_1_2_");
        assert_eq!(greedy(&slots).text, "GNN12");
        let r = decode(&slots, false);
        assert_eq!(r.country, None, "{r:?}");
    }

    #[test]
    fn separators_between_groups_are_allowed_and_stripped() {
        let slots = clean("-_9_9_--_X_Z_-_1_2_-");
        let r = decode(&slots, false);
        assert_eq!(r.text, "99XZ12");
        assert_eq!(
            crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number),
            Some(3)
        );
        assert!(r.confidence > 0.9);
    }

    #[test]
    fn too_few_steps_give_no_dutch_path() {
        assert!(best_dutch(&clean("AB12")).is_none());
        let r = decode(&clean("_B_1_"), false);
        assert_eq!(r.text, "B1");
        assert_eq!(r.country, None);
    }

    #[test]
    fn an_extra_mark_before_the_plate_is_dropped_when_it_is_weak() {
        // The EU band read as M at 0.6: the Dutch path takes the blank there.
        let mut slots = vec![step(&[('M', 0.6)])];
        slots.extend(clean("_1_T_L_X_-_0_3_"));
        assert_eq!(greedy(&slots).text, "M1TLX03");
        let r = decode(&slots, false);
        assert_eq!(r.text, "1TLX03");
        assert_eq!(
            crate::plate::dutch_sidecode(&r.text).map(crate::plate::Sidecode::number),
            Some(8)
        );
    }

    #[test]
    fn rendered_plates_look_yellow_and_grey_does_not() {
        // A Dutch plate's field (RAL 1023 traffic yellow) with dark characters.
        let mut img = RgbImage::from_pixel(200, 42, image::Rgb([250, 196, 0]));
        for x in (30..190).step_by(14) {
            for y in 8..34 {
                for dx in 0..6 {
                    img.put_pixel(x + dx, y, image::Rgb([18, 18, 20]));
                }
            }
        }
        assert!(looks_dutch_yellow(&img));
        let white = RgbImage::from_pixel(100, 20, image::Rgb([235, 235, 230]));
        assert!(!looks_dutch_yellow(&white));
        let blue = RgbImage::from_pixel(100, 20, image::Rgb([20, 40, 160]));
        assert!(!looks_dutch_yellow(&blue));
        assert!(!looks_dutch_yellow(&RgbImage::new(0, 0)));
    }
}
