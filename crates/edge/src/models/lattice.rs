//! Hand-made CTC output for the decoders' tests: per-step probabilities over
//! the decoding slots of [`crate::models::ppocr`], written as text.

use crate::models::ctc::{PLATE_CHARS, SLOTS, SLOT_SEP};

/// The slot of `c`: `_` the blank, `-` the separator, else a plate character.
pub fn slot_of(c: char) -> usize {
    match c {
        '_' => 0,
        '-' => SLOT_SEP,
        c => {
            1 + PLATE_CHARS
                .iter()
                .position(|&p| p as char == c)
                .expect("plate char")
        }
    }
}

/// One step: the listed slots with their probabilities, the rest on the blank.
pub fn step(parts: &[(char, f32)]) -> [f32; SLOTS] {
    let mut s = [0f32; SLOTS];
    let mut left = 1.0;
    for &(c, p) in parts {
        s[slot_of(c)] += p;
        left -= p;
    }
    s[0] += left.max(0.0);
    s
}

/// A clean lattice for `text`, one step per character: `_` a blank step, a
/// character (the separator `-` too) at probability `p`.
pub fn clean(text: &str, p: f32) -> Vec<[f32; SLOTS]> {
    text.chars()
        .map(|c| if c == '_' { step(&[]) } else { step(&[(c, p)]) })
        .collect()
}
