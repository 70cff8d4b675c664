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
//! lowers its confidence ([`crate::read::dutch::decode`]) but keeps its text.
//!
//! Pure functions over text; nothing here is written anywhere.

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
    // ES `1234 ABC`, FR before 2009 `123 ABC 75`, EE `123 ABC`, IE
    // `12-D-12345`: digits first.
    &[run(b'D', 1, 4), run(b'L', 1, 3), run(b'D', 0, 2)],
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
/// of [`LAYOUTS`]. Dutch plates are checked by their sidecodes
/// ([`crate::read::dutch::is_dutch_plate`]), which the layouts above also
/// mostly cover.
pub fn fits_european_layout(text: &str) -> bool {
    let bytes = text.as_bytes();
    if !(4..=8).contains(&bytes.len()) || !bytes.iter().all(u8::is_ascii_alphanumeric) {
        return false;
    }
    LAYOUTS.iter().any(|layout| matches(bytes, layout))
}

/// Layouts found only on two-row plates (trailers, tractors, motorcycles),
/// where one row holds the digits and the other the letters. Kept apart from
/// [`LAYOUTS`] because a single-line read of this shape is most often a
/// misread (`17859AM` for Austrian `I7859AM`).
const TWO_ROW_LAYOUTS: &[&[Run]] = &[
    // UA (and RU, BY) tractors, trailers and motorcycles: four or five
    // digits over a two-letter region (`10922 / BX`, `6808 / XO`).
    &[run(b'D', 4, 5), run(b'L', 2, 2)],
];

/// Whether `text`, read from a plate's two rows joined top to bottom,
/// follows one of the layouts of [`LAYOUTS`] or [`TWO_ROW_LAYOUTS`].
pub fn fits_two_row_layout(text: &str) -> bool {
    fits_european_layout(text)
        || (4..=8).contains(&text.len())
            && text.bytes().all(|c| c.is_ascii_alphanumeric())
            && TWO_ROW_LAYOUTS
                .iter()
                .any(|layout| matches(text.as_bytes(), layout))
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

#[cfg(test)]
mod tests {
    use super::*;

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
