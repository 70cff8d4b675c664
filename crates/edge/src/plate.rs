//! The Dutch number plate rule: the 14 sidecodes (which positions hold letters
//! or digits, where the dashes go) and the letters the RDW issues.
//!
//! The one owner of "is this a Dutch plate": the reader's format prior, the
//! policy's foreign-plate rule and the lab's renderer all ask [`dutch_sidecode`].
//! Pure functions over strings; never touches files, the clock or the network.

/// The letters issued today: consonants without C and Q (the RDW has left
/// vowels out of new series since sidecode 4 to avoid words, Y since 5; C and Q
/// look too much like 0). The reader's format prior emits these only.
pub const PLATE_LETTERS: &str = "BDFGHJKLMNPRSTVWXZ";

/// `X` = letter, `9` = digit, `-` = dash; index 0 is sidecode 1.
const PATTERNS: [&str; 14] = [
    "XX-99-99", "99-99-XX", "99-XX-99", "XX-99-XX", "XX-XX-99", "99-XX-XX", "99-XXX-9", "9-XXX-99",
    "XX-999-X", "X-999-XX", "XXX-99-X", "X-99-XXX", "9-XX-999", "999-XX-9",
];

/// A Dutch sidecode (1 to 14): which positions hold letters or digits and where the
/// dashes go. Construct with [`Sidecode::new`]; it cannot hold an invalid number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sidecode(u8);

impl Sidecode {
    /// All sidecodes, 1 to 14.
    pub const ALL: [Sidecode; 14] = {
        let mut all = [Sidecode(1); 14];
        let mut i = 0;
        while i < 14 {
            all[i] = Sidecode(i as u8 + 1);
            i += 1;
        }
        all
    };

    /// `None` unless `number` is 1 to 14.
    pub fn new(number: u8) -> Option<Self> {
        (1..=14).contains(&number).then_some(Sidecode(number))
    }

    pub fn number(self) -> u8 {
        self.0
    }

    /// The pattern, e.g. `"XX-99-XX"` for sidecode 4 (`X` letter, `9` digit).
    pub fn pattern(self) -> &'static str {
        PATTERNS[usize::from(self.0 - 1)]
    }

    /// The letters issued in this sidecode: [`PLATE_LETTERS`], and before
    /// that rule the vowels A, E and U in sidecodes 1 to 3 (1951-1978) and Y
    /// in sidecode 4. C, I, O and Q were never issued on ordinary plates.
    /// Vehicles of those years are still on the road: a plate of theirs must
    /// never be taken for a foreign one.
    pub fn letters(self) -> &'static str {
        match self.0 {
            1..=3 => "ABDEFGHJKLMNPRSTUVWXZ",
            4 => "BDFGHJKLMNPRSTVWXYZ",
            _ => PLATE_LETTERS,
        }
    }

    /// Whether six undashed characters fit this sidecode's letter/digit positions.
    pub fn matches(self, chars: &str) -> bool {
        let classes = self.pattern().bytes().filter(|&b| b != b'-');
        chars.len() == 6
            && chars.bytes().zip(classes).all(|(c, class)| match class {
                b'X' => c.is_ascii_alphabetic(),
                _ => c.is_ascii_digit(),
            })
    }
}

/// Inserts the dashes of `sidecode` into six characters: `format_dutch("GB123K", 9)` is
/// `Some("GB-123-K")`. Input of the wrong length, a sidecode outside 1..=14, or letters
/// where the sidecode wants digits (or the reverse) give `None`. Lowercase is uppercased.
pub fn format_dutch(chars: &str, sidecode: u8) -> Option<String> {
    let code = Sidecode::new(sidecode)?;
    let upper = chars.to_ascii_uppercase();
    if !code.matches(&upper) {
        return None;
    }
    let mut src = upper.chars();
    let mut out = String::with_capacity(8);
    for class in code.pattern().chars() {
        if class == '-' {
            out.push('-');
        } else {
            out.push(src.next()?);
        }
    }
    Some(out)
}

/// The sidecode of a Dutch plate: `text` (undashed; case does not matter) has
/// six characters in one sidecode's letter and digit positions, and every
/// letter is one the RDW issued in that sidecode ([`Sidecode::letters`]).
/// `None` for anything else: this is the one rule by which the reader, the
/// policy and the renderer call a plate Dutch. The 14 layouts are all
/// distinct, so the answer is unique.
pub fn dutch_sidecode(text: &str) -> Option<Sidecode> {
    let upper = text.to_ascii_uppercase();
    let code = Sidecode::ALL
        .into_iter()
        .find(|code| code.matches(&upper))?;
    let letters = code.letters();
    upper
        .chars()
        .filter(char::is_ascii_alphabetic)
        .all(|c| letters.contains(c))
        .then_some(code)
}

/// Whether `text` is a Dutch plate ([`dutch_sidecode`]).
pub fn is_dutch(text: &str) -> bool {
    dutch_sidecode(text).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dutch_plate_has_a_sidecode_shape_and_dutch_letters() {
        assert_eq!(dutch_sidecode("88XPFS").map(Sidecode::number), Some(6));
        assert_eq!(dutch_sidecode("h803sf").map(Sidecode::number), Some(10));
        assert_eq!(dutch_sidecode("BBXPFS"), None, "no sidecode is all letters");
        assert_eq!(dutch_sidecode("1CMV33"), None, "C is no Dutch plate letter");
        assert_eq!(
            dutch_sidecode("NA1234").map(Sidecode::number),
            Some(1),
            "vowels were issued until 1978"
        );
        assert_eq!(dutch_sidecode("12UE34").map(Sidecode::number), Some(3));
        assert_eq!(
            dutch_sidecode("AB12BD"),
            None,
            "no vowels from sidecode 4 on"
        );
        assert_eq!(dutch_sidecode("YB12BD").map(Sidecode::number), Some(4));
        assert_eq!(dutch_sidecode("12YBD3"), None, "Y only in sidecode 4");
        assert_eq!(
            dutch_sidecode("CD1234"),
            None,
            "C never on an ordinary plate"
        );
        assert_eq!(dutch_sidecode("H803"), None);
    }

    #[test]
    fn dashes_follow_the_sidecode() {
        assert_eq!(format_dutch("GB123K", 9).as_deref(), Some("GB-123-K"));
        assert_eq!(format_dutch("GB123K", 1), None);
        assert_eq!(format_dutch("GB123K", 15), None);
        for code in Sidecode::ALL {
            assert_eq!(Sidecode::new(code.number()), Some(code));
        }
    }
}
