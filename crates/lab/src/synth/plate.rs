//! Dutch number plates: sidecode patterns, dash formatting, seeded random plates and
//! rendering of a flat yellow plate (EU band, border, characters in an embedded font).
//!
//! Pure functions over strings and pixels. Never touches files, the network or the
//! clock; the only shared state is the embedded font, parsed once.

use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, PxScale, ScaleFont};
use image::{Rgba, RgbaImage};
use rand::Rng;

pub use anpr_edge::plate::{dutch_sidecode, format_dutch, Sidecode, PLATE_LETTERS};

/// DejaVu Sans Condensed Bold: the closest free relative of the Dutch "Kenteken" font.
/// Licence beside it in `assets/fonts/LICENSE-DejaVu.txt`.
static FONT_BYTES: &[u8] = include_bytes!("../../../../assets/fonts/DejaVuSansCondensed-Bold.ttf");

/// The embedded DejaVu font.
pub(crate) fn font() -> &'static FontRef<'static> {
    static FONT: OnceLock<FontRef<'static>> = OnceLock::new();
    FONT.get_or_init(|| {
        // The bytes are compiled in and parsed by every plate test: a failure here is a
        // build defect, never something input can cause.
        FontRef::try_from_slice(FONT_BYTES).expect("embedded DejaVu font parses")
    })
}

/// Width / height of a Dutch plate (520 x 110 mm).
pub const PLATE_ASPECT: f32 = 520.0 / 110.0;

/// Six random characters (no dashes) valid for `sidecode`; letters from
/// [`PLATE_LETTERS`]. Seed the RNG to make scenes reproducible.
pub fn random_dutch_plate<R: Rng + ?Sized>(rng: &mut R, sidecode: Sidecode) -> String {
    let letters = PLATE_LETTERS.as_bytes();
    sidecode
        .pattern()
        .bytes()
        .filter(|&b| b != b'-')
        .map(|class| match class {
            b'X' => char::from(letters[rng.gen_range(0..letters.len())]),
            _ => char::from(b'0' + rng.gen_range(0..10u8)),
        })
        .collect()
}

const YELLOW: [f32; 3] = [250.0, 196.0, 0.0];
const INK: [f32; 3] = [18.0, 18.0, 20.0];
const EU_BLUE: [f32; 3] = [0.0, 51.0, 153.0];
const STAR_YELLOW: [f32; 3] = [255.0, 204.0, 0.0];
const WHITE: [f32; 3] = [245.0, 245.0, 245.0];

/// Renders a flat plate `width_px` wide (at least 40) with the 520:110 aspect: yellow
/// field, thin black border, rounded corners (transparent outside), blue EU band with 12
/// star dots and "NL", and `text_with_dashes` in black. Dashes are drawn as bars at
/// mid-height like on real plates; other characters the font lacks are skipped.
pub fn render_plate(text_with_dashes: &str, width_px: u32) -> RgbaImage {
    let w = width_px.max(40);
    let wf = w as f32;
    let hf = (wf / PLATE_ASPECT).round().max(9.0);
    let h = hf as u32;
    let mm = wf / 520.0; // pixels per millimetre
    let radius = (5.0 * mm).max(1.0);
    let border = (2.0 * mm).max(1.0);
    let band_w = 44.0 * mm;

    let mut rgb = vec![YELLOW; (w * h) as usize];
    let mut alpha = vec![0f32; (w * h) as usize];

    // Field, border and EU band from a signed distance to the rounded outline, so edges
    // are antialiased at every size.
    let (cx, cy) = (wf / 2.0, hf / 2.0);
    let (bx, by) = (wf / 2.0 - radius, hf / 2.0 - radius);
    let star_c = (band_w / 2.0 + border * 0.5, hf * 0.33);
    let star_r = band_w * 0.27;
    let dot_r = (band_w * 0.06).max(0.6);
    for y in 0..h {
        for x in 0..w {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let qx = (px - cx).abs() - bx;
            let qy = (py - cy).abs() - by;
            let outside = (qx.max(0.0).powi(2) + qy.max(0.0).powi(2)).sqrt();
            let d = outside + qx.max(qy).min(0.0) - radius;
            let i = (y * w + x) as usize;
            alpha[i] = (0.5 - d).clamp(0.0, 1.0);
            let mut c = if px < band_w { EU_BLUE } else { YELLOW };
            if px < band_w {
                // 12 stars in a ring, drawn as dots.
                for k in 0..12 {
                    let a = k as f32 * std::f32::consts::TAU / 12.0;
                    let (sx, sy) = (star_c.0 + star_r * a.cos(), star_c.1 + star_r * a.sin());
                    let dd = ((px - sx).powi(2) + (py - sy).powi(2)).sqrt() - dot_r;
                    c = mix(c, STAR_YELLOW, (0.5 - dd).clamp(0.0, 1.0));
                }
            }
            let ink = (d + border + 0.5).clamp(0.0, 1.0);
            rgb[i] = mix(c, INK, ink);
        }
    }

    let f = font();
    // "NL" in white in the lower part of the band.
    let nl_cap = hf * 0.27;
    draw_text_fitted(
        &mut rgb,
        w,
        h,
        f,
        &TextBox {
            text: "NL",
            x0: border,
            x1: band_w,
            baseline: hf * 0.86,
            cap: nl_cap,
            max_stretch: 1.0,
            color: WHITE,
        },
    );
    // Registration characters: about 70 of the 110 mm, filling the yellow field.
    let cap = hf * 0.64;
    draw_text_fitted(
        &mut rgb,
        w,
        h,
        f,
        &TextBox {
            text: text_with_dashes,
            x0: band_w + 7.0 * mm,
            x1: wf - 7.0 * mm,
            baseline: hf / 2.0 + cap / 2.0,
            cap,
            max_stretch: 1.05,
            color: INK,
        },
    );

    let mut img = RgbaImage::new(w, h);
    for (i, p) in img.pixels_mut().enumerate() {
        let c = rgb[i];
        *p = Rgba([
            c[0].round() as u8,
            c[1].round() as u8,
            c[2].round() as u8,
            (alpha[i] * 255.0).round() as u8,
        ]);
    }
    img
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

struct TextBox<'a> {
    text: &'a str,
    x0: f32,
    x1: f32,
    baseline: f32,
    /// Wanted capital height in pixels.
    cap: f32,
    /// Upper bound on horizontal / vertical scale, so short texts are not stretched wide.
    max_stretch: f32,
    color: [f32; 3],
}

/// Lays `tb.text` out centred in `[x0, x1]`, squeezing horizontally (the font is
/// scaled independently in x) so it fits, like the narrow plate lettering.
fn draw_text_fitted(rgb: &mut [[f32; 3]], w: u32, h: u32, f: &FontRef<'_>, tb: &TextBox<'_>) {
    // Capital height as a fraction of the em, measured from 'H' so any font works.
    let probe = PxScale::from(100.0);
    let cap_frac = f
        .outline_glyph(f.glyph_id('H').with_scale(probe))
        .map(|g| g.px_bounds().height() / 100.0)
        .filter(|v| *v > 0.1)
        .unwrap_or(0.73);
    let sy = tb.cap / cap_frac;
    let dash_w = 0.5 * tb.cap;
    let natural: f32 = tb
        .text
        .chars()
        .map(|c| {
            if c == '-' {
                dash_w
            } else {
                f.as_scaled(PxScale::from(sy)).h_advance(f.glyph_id(c))
            }
        })
        .sum();
    if natural <= 0.0 {
        return;
    }
    let avail = (tb.x1 - tb.x0).max(1.0);
    let k = (avail / natural).clamp(0.3, tb.max_stretch);
    let scale = PxScale { x: sy * k, y: sy };
    let scaled = f.as_scaled(scale);
    let mut pen = tb.x0 + (avail - natural * k) / 2.0;
    for c in tb.text.chars() {
        if c == '-' {
            // A bar at mid-capital height, as on Dutch plates (the font's hyphen sits too low).
            let bw = dash_w * k * 0.55;
            let bx0 = pen + (dash_w * k - bw) / 2.0;
            let thick = (tb.cap * 0.11).max(1.0);
            let by0 = tb.baseline - tb.cap / 2.0 - thick / 2.0;
            fill_rect_aa(rgb, w, h, (bx0, by0, bx0 + bw, by0 + thick), tb.color);
            pen += dash_w * k;
            continue;
        }
        let id = f.glyph_id(c);
        let glyph = id.with_scale_and_position(scale, point(pen, tb.baseline));
        pen += scaled.h_advance(id);
        let Some(outline) = f.outline_glyph(glyph) else {
            continue;
        };
        let bounds = outline.px_bounds();
        outline.draw(|gx, gy, cov| {
            let x = bounds.min.x as i64 + i64::from(gx);
            let y = bounds.min.y as i64 + i64::from(gy);
            if x >= 0 && y >= 0 && (x as u32) < w && (y as u32) < h {
                let i = (y as u32 * w + x as u32) as usize;
                rgb[i] = mix(rgb[i], tb.color, cov.clamp(0.0, 1.0));
            }
        });
    }
}

/// Fills a rectangle with fractional coverage at its edges.
fn fill_rect_aa(rgb: &mut [[f32; 3]], w: u32, h: u32, r: (f32, f32, f32, f32), color: [f32; 3]) {
    let (x0, y0, x1, y1) = r;
    let xs = x0.floor().max(0.0) as u32;
    let ys = y0.floor().max(0.0) as u32;
    let xe = (x1.ceil().max(0.0) as u32).min(w);
    let ye = (y1.ceil().max(0.0) as u32).min(h);
    for y in ys..ye {
        let cy = ((y as f32 + 1.0).min(y1) - (y as f32).max(y0)).clamp(0.0, 1.0);
        for x in xs..xe {
            let cx = ((x as f32 + 1.0).min(x1) - (x as f32).max(x0)).clamp(0.0, 1.0);
            let i = (y * w + x) as usize;
            rgb[i] = mix(rgb[i], color, cx * cy);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn formats_all_fourteen_sidecodes() {
        let cases = [
            ("AB1234", 1, "AB-12-34"),
            ("1234AB", 2, "12-34-AB"),
            ("12AB34", 3, "12-AB-34"),
            ("AB12CD", 4, "AB-12-CD"),
            ("ABCD12", 5, "AB-CD-12"),
            ("12ABCD", 6, "12-AB-CD"),
            ("12ABC3", 7, "12-ABC-3"),
            ("1ABC23", 8, "1-ABC-23"),
            ("AB123C", 9, "AB-123-C"),
            ("A123BC", 10, "A-123-BC"),
            ("ABC12D", 11, "ABC-12-D"),
            ("A12BCD", 12, "A-12-BCD"),
            ("1AB234", 13, "1-AB-234"),
            ("123AB4", 14, "123-AB-4"),
        ];
        for (chars, code, want) in cases {
            assert_eq!(
                format_dutch(chars, code).as_deref(),
                Some(want),
                "sidecode {code}"
            );
            assert!(Sidecode::new(code).is_some_and(|c| c.matches(chars)));
        }
    }

    #[test]
    fn format_rejects_bad_input() {
        assert_eq!(format_dutch("AB12CD", 0), None);
        assert_eq!(format_dutch("AB12CD", 15), None);
        assert_eq!(format_dutch("AB12C", 4), None);
        assert_eq!(format_dutch("AB12CDE", 4), None);
        assert_eq!(
            format_dutch("AB1CDE", 4),
            None,
            "letter where a digit belongs"
        );
        assert_eq!(format_dutch("AB-2CD", 4), None);
        assert_eq!(format_dutch("ab12cd", 4).as_deref(), Some("AB-12-CD"));
        assert_eq!(dutch_sidecode("ÄB12CD"), None);
    }

    #[test]
    fn random_plates_match_their_sidecode() {
        let mut rng = StdRng::seed_from_u64(7);
        for code in Sidecode::ALL {
            for _ in 0..50 {
                let p = random_dutch_plate(&mut rng, code);
                assert_eq!(p.len(), 6);
                assert!(code.matches(&p), "{p} vs {}", code.pattern());
                assert_eq!(dutch_sidecode(&p), Some(code));
                assert!(!p.contains(['C', 'Q', 'A', 'E', 'I', 'O', 'U']), "{p}");
                assert!(format_dutch(&p, code.number()).is_some());
            }
        }
        let a = random_dutch_plate(&mut StdRng::seed_from_u64(3), Sidecode::ALL[3]);
        let b = random_dutch_plate(&mut StdRng::seed_from_u64(3), Sidecode::ALL[3]);
        assert_eq!(a, b, "seeded generation is reproducible");
    }

    #[test]
    fn rendered_plate_is_yellow_with_dark_characters() {
        let img = render_plate("GB-123-K", 300);
        assert_eq!(img.width(), 300);
        assert_eq!(img.height(), 63);
        let (mut yellow, mut dark, mut blue, mut opaque) = (0u32, 0u32, 0u32, 0u32);
        for p in img.pixels() {
            let [r, g, b, a] = p.0;
            if a < 255 {
                continue;
            }
            opaque += 1;
            if r > 200 && g > 150 && b < 60 {
                yellow += 1;
            } else if r < 60 && g < 60 && b < 60 {
                dark += 1;
            } else if b > 120 && r < 40 {
                blue += 1;
            }
        }
        assert!(yellow * 2 > opaque, "yellow {yellow} of {opaque}");
        assert!(
            dark * 10 > opaque,
            "characters and border dark: {dark} of {opaque}"
        );
        assert!(blue * 20 > opaque, "EU band: {blue} of {opaque}");
        // Corners are rounded away; the middle of the text row holds ink.
        assert!(img.get_pixel(0, 0).0[3] < 64, "corner mostly transparent");
        let mid_row_dark = (60..290)
            .filter(|&x| img.get_pixel(x, 31).0[0] < 60)
            .count();
        assert!(
            mid_row_dark > 20,
            "ink across the middle row: {mid_row_dark}"
        );
        // Blue band sits on the left only.
        assert!(img.get_pixel(12, 5).0[2] > 100 && img.get_pixel(12, 5).0[0] < 60);
        assert!(img.get_pixel(295, 50).0[2] < 60);
    }

    #[test]
    fn different_texts_render_differently() {
        let a = render_plate("GB-123-K", 200);
        let b = render_plate("ZZ-999-X", 200);
        assert_ne!(a.as_raw(), b.as_raw());
        assert_eq!(render_plate("", 10).width(), 40, "tiny widths are clamped");
    }
}
