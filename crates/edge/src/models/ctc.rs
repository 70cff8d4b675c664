//! CTC over plate characters, shared by every reader: the 38 decoding slots
//! (blank, A-Z, 0-9, separator), running a CTC model on a batch, the greedy
//! collapse, and where in a crop the characters lie. Knows no plate format.

use super::reader::{Extent, ReadError};
use crate::message::PlateText;

/// Plate characters; slot `i + 1` is `PLATE_CHARS[i]`.
pub(crate) const PLATE_CHARS: &[u8; 36] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Decoding slots: 0 = blank, 1..=36 = plate chars, 37 = separator.
pub(crate) const SLOTS: usize = 38;
pub(crate) const SLOT_SEP: usize = 37;

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

/// Greedy CTC over slot probabilities: the best slot per step, repeats
/// collapsed, separators dropped.
pub(crate) fn greedy(slots: &[[f32; SLOTS]]) -> PlateText {
    let mut text = String::new();
    let mut confs: Vec<f32> = Vec::new();
    let mut prev_slot = 0usize;
    for acc in slots {
        let mut best = 0usize;
        for (i, v) in acc.iter().enumerate() {
            if *v > acc[best] {
                best = i;
            }
        }
        let p = acc[best].clamp(0.0, 1.0);
        if best == prev_slot {
            // Same symbol continued: one character, keep its best step.
            if (1..=36).contains(&best) {
                if let Some(last) = confs.last_mut() {
                    *last = last.max(p);
                }
            }
        } else if (1..=36).contains(&best) {
            text.push(PLATE_CHARS[best - 1] as char);
            confs.push(p);
        }
        prev_slot = best;
    }
    // The weakest character bounds the plate: one wrong character makes
    // the whole plate wrong, whatever the others score.
    let confidence = confs
        .iter()
        .copied()
        .fold(None, |m: Option<f32>, c| Some(m.map_or(c, |m| m.min(c))));
    PlateText {
        text,
        char_confidences: confs,
        confidence: confidence.unwrap_or(0.0),
        country: None,
    }
}

/// The [`Extent`] of the characters in one crop's CTC slot matrix, of which the
/// first `content_steps` steps cover the crop (the rest is batch padding):
/// the first and last step whose best slot is a plate character. `None` when
/// no step is.
pub(crate) fn ink_extent(slots: &[[f32; SLOTS]], content_steps: usize) -> Option<Extent> {
    let is_char = |s: &[f32; SLOTS]| {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
