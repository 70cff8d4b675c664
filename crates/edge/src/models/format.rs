//! Format knowledge over a reader's CTC output: the Dutch sidecode prior
//! first ([`super::dutch`]), the common European layouts after it
//! ([`super::layout`]), and the judgement that a final read is off every
//! format and must lose confidence. Pure functions over slot matrices.

use super::ctc::{greedy, SLOTS};
use super::dutch::{best_dutch, greedy_log_prob, DUTCH_MARGIN, DUTCH_MARGIN_HINTED, NL};
use super::layout;
use crate::message::PlateText;
use crate::plate::is_dutch;

/// Decodes one crop's slot matrix: the best Dutch path when it is close enough
/// to the unconstrained one ([`DUTCH_MARGIN`], or [`DUTCH_MARGIN_HINTED`] when
/// `dutch_hint`), else the greedy read, or where that fits no European layout
/// and the crop is not yellow, the layout read ([`layout::layout_read`]) when
/// there is one.
pub fn decode(slots: &[[f32; SLOTS]], dutch_hint: bool) -> PlateText {
    decode_with_margins(slots, dutch_hint, DUTCH_MARGIN, DUTCH_MARGIN_HINTED)
}

/// [`decode`] with explicit margins (for measuring other settings).
pub fn decode_with_margins(
    slots: &[[f32; SLOTS]],
    dutch_hint: bool,
    margin: f32,
    margin_hinted: f32,
) -> PlateText {
    let margin = if dutch_hint {
        margin.max(margin_hinted)
    } else {
        margin
    };
    if let Some(d) = best_dutch(slots) {
        if greedy_log_prob(slots) - d.log_prob <= margin {
            // The weakest character bounds the plate, as in the greedy read.
            let confidence = d.char_confidences.iter().copied().fold(1.0, f32::min);
            return PlateText {
                text: d.text,
                char_confidences: d.char_confidences,
                confidence,
                country: Some(NL),
            };
        }
    }
    let g = greedy(slots);
    if dutch_hint {
        // A yellow crop's read that no sidecode fits is most likely a Dutch
        // plate read short or wrong: it stays off-format, never reshaped
        // into a foreign layout.
        return g;
    }
    layout::layout_read(slots, &g).unwrap_or(g)
}

/// Whether format knowledge says `read` is unlikely to be a whole, right
/// plate, so that `discount` by [`super::dutch::OFF_FORMAT_FACTOR`] is due: a read the
/// Dutch prior did not decide that spells no Dutch plate and either comes
/// from a yellow crop (`yellow`, [`super::dutch::looks_dutch_yellow`]) or follows no common
/// European layout ([`layout::fits_european_layout`]; a read of a plate's
/// two rows joined, `two_rows`, may also follow a layout found only on
/// two-row plates, [`layout::fits_two_row_layout`]). Judged on a plate's
/// whole read, never on one line of a two-line plate.
pub fn off_format(read: &PlateText, yellow: bool, two_rows: bool) -> bool {
    if read.country.is_some() || read.text.is_empty() || is_dutch(&read.text) {
        return false;
    }
    let fits = if two_rows {
        layout::fits_two_row_layout(&read.text)
    } else {
        layout::fits_european_layout(&read.text)
    };
    yellow || !fits
}
