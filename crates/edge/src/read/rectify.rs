//! Perspective rectification of a plate from its four corners.
//!
//! Maps the quadrilateral a detector found (top-left, top-right, bottom-right,
//! bottom-left, in frame pixels) onto an upright RGB crop of fixed height, with
//! a margin around the plate so that characters at its edges survive corner
//! errors. Pure pixel maths: it never runs a model and keeps no state.

use image::{Rgb, RgbImage};
use imageproc::geometric_transformations::{warp_into, Interpolation, Projection};

/// Height of every crop, the reader's input height.
pub const CROP_HEIGHT: u32 = 48;
/// Narrowest and widest crop. Dutch plates are about 4.7:1 (520x110 mm), the
/// square two-line ones about 1.8:1; anything outside this range is a corner
/// error, and clamping keeps the reader's input bounded.
pub const MIN_CROP_WIDTH: u32 = 64;
pub const MAX_CROP_WIDTH: u32 = 480;
/// Margin added on each side, as a fraction of the plate's own width and
/// height. The detector's corners sit on or just inside the plate edge, and an
/// edge character cut off is a misread; but a wide horizontal margin pulls in
/// the plate frame and bumper, which the reader turns into extra characters
/// (`0OPDR6`, `ENDSX46`). Swept on the 115 Dutch photos (exact reads):
/// x 0.02: 111, 0.03: 113, 0.04: 112, 0.06: 111, 0.10: 111 (y 0.12);
/// y 0.05: 110 (x 0.06), 0.09: 112, 0.12: 113, 0.15: 113 (x 0.03).
pub const MARGIN_X: f32 = 0.03;
pub const MARGIN_Y: f32 = 0.12;
/// Single-line European plates are 4.3:1 to 4.7:1. Detector corners that make
/// a plate look narrower than this (but not as square as a two-line plate)
/// squeeze its characters together, and the reader then drops thin ones
/// (`ZG5131AB` read `ZG513AB`); such crops are widened to this aspect.
pub const MIN_SINGLE_LINE_ASPECT: f32 = 4.3;
/// Below this aspect a plate is taken for a two-line plate and left as it is.
pub const MAX_TWO_LINE_ASPECT: f32 = 2.0;

fn dist(a: (f32, f32), b: (f32, f32)) -> f32 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// The crop of the plate with corners `corners` (TL, TR, BR, BL) in `image`,
/// or `None` when the corners are degenerate (not finite, or collapsed to a
/// line) and no sensible crop exists.
pub fn rectify(image: &RgbImage, corners: &[(f32, f32); 4]) -> Option<RgbImage> {
    rectify_with(image, corners, false)
}

/// Whether corners this squat leave the plate's layout in doubt: a two-line
/// plate, or a single-line one seen at a steep angle or with corners that
/// fell short. [`rectify`] keeps such a crop as measured; [`rectify_one_line`]
/// widens it.
pub fn is_squat(corners: &[(f32, f32); 4]) -> bool {
    let [tl, tr, br, bl] = *corners;
    let plate_w = (dist(tl, tr) + dist(bl, br)) / 2.0;
    let plate_h = (dist(tl, bl) + dist(tr, br)) / 2.0;
    plate_h > 0.0 && plate_w / plate_h <= MAX_TWO_LINE_ASPECT
}

/// As [`rectify`], but always to at least a single-line plate's aspect.
pub fn rectify_one_line(image: &RgbImage, corners: &[(f32, f32); 4]) -> Option<RgbImage> {
    rectify_with(image, corners, true)
}

/// The corners `corners` (TL, TR, BR, BL) lengthened along the plate's top
/// and bottom edges by `by` times its width: on the left when `left`, on the
/// right when `right`. For a plate whose detected corners fell short of an
/// end, so that the characters there were cut off.
pub fn extend_corners(
    corners: &[(f32, f32); 4],
    left: bool,
    right: bool,
    by: f32,
) -> [(f32, f32); 4] {
    let [mut tl, mut tr, mut br, mut bl] = *corners;
    let (top, bottom) = ((tr.0 - tl.0, tr.1 - tl.1), (br.0 - bl.0, br.1 - bl.1));
    if left {
        tl = (tl.0 - top.0 * by, tl.1 - top.1 * by);
        bl = (bl.0 - bottom.0 * by, bl.1 - bottom.1 * by);
    }
    if right {
        tr = (tr.0 + top.0 * by, tr.1 + top.1 * by);
        br = (br.0 + bottom.0 * by, br.1 + bottom.1 * by);
    }
    [tl, tr, br, bl]
}

/// The corners `corners` (TL, TR, BR, BL) stretched across the plate's
/// height by `by` times that height: downwards when `down`, else upwards. For
/// a two-row plate whose detected corners hold one of its rows only.
pub fn extend_rows(corners: &[(f32, f32); 4], down: bool, by: f32) -> [(f32, f32); 4] {
    let [mut tl, mut tr, mut br, mut bl] = *corners;
    let (left, right) = ((bl.0 - tl.0, bl.1 - tl.1), (br.0 - tr.0, br.1 - tr.1));
    if down {
        bl = (bl.0 + left.0 * by, bl.1 + left.1 * by);
        br = (br.0 + right.0 * by, br.1 + right.1 * by);
    } else {
        tl = (tl.0 - left.0 * by, tl.1 - left.1 * by);
        tr = (tr.0 - right.0 * by, tr.1 - right.1 * by);
    }
    [tl, tr, br, bl]
}

/// The two text lines of a two-line crop, top then bottom: split at the row
/// of its middle third with the fewest light-dark changes, each line keeping a few rows of
/// the other's margin so that descenders and ascenders are not cut. `None`
/// when the crop is too small to hold two lines.
pub fn split_lines(crop: &RgbImage) -> Option<(RgbImage, RgbImage)> {
    let (w, h) = crop.dimensions();
    if h < 16 || w < 8 {
        return None;
    }
    let luma = |x: u32, y: u32| {
        let [r, g, b] = crop.get_pixel(x, y).0;
        (r as u32 * 3 + g as u32 * 6 + b as u32) / 10
    };
    // Characters make many light-dark changes along a row; the gap between
    // two lines, plain plate background, makes few, whatever the colours.
    let contrast = |y: u32| {
        (1..w)
            .map(|x| luma(x, y).abs_diff(luma(x - 1, y)))
            .sum::<u32>()
    };
    let split = (h / 3..=2 * h / 3).min_by_key(|&y| contrast(y))?;
    let overlap = h / 16;
    let top_end = (split + overlap).min(h);
    let bottom_start = split.saturating_sub(overlap);
    Some((
        image::imageops::crop_imm(crop, 0, 0, w, top_end).to_image(),
        image::imageops::crop_imm(crop, 0, bottom_start, w, h - bottom_start).to_image(),
    ))
}

fn rectify_with(
    image: &RgbImage,
    corners: &[(f32, f32); 4],
    force_one_line: bool,
) -> Option<RgbImage> {
    if corners
        .iter()
        .any(|(x, y)| !x.is_finite() || !y.is_finite())
    {
        return None;
    }
    let [tl, tr, br, bl] = *corners;
    let plate_w = (dist(tl, tr) + dist(bl, br)) / 2.0;
    let plate_h = (dist(tl, bl) + dist(tr, br)) / 2.0;
    if plate_w < 2.0 || plate_h < 2.0 {
        return None;
    }
    // Output geometry: the plate itself plus margins fills CROP_HEIGHT, and the
    // width follows the plate's aspect ratio.
    let out_h = CROP_HEIGHT as f32;
    let inner_h = out_h / (1.0 + 2.0 * MARGIN_Y);
    let my = (out_h - inner_h) / 2.0;
    let measured_aspect = plate_w / plate_h;
    let aspect = if force_one_line || measured_aspect > MAX_TWO_LINE_ASPECT {
        measured_aspect.max(MIN_SINGLE_LINE_ASPECT)
    } else {
        measured_aspect
    };
    let inner_w_ideal = inner_h * aspect;
    let out_w_ideal = inner_w_ideal * (1.0 + 2.0 * MARGIN_X);
    let out_w = (out_w_ideal.round() as u32).clamp(MIN_CROP_WIDTH, MAX_CROP_WIDTH);
    let inner_w = out_w as f32 / (1.0 + 2.0 * MARGIN_X);
    let mx = (out_w as f32 - inner_w) / 2.0;

    let to = [
        (mx, my),
        (mx + inner_w, my),
        (mx + inner_w, my + inner_h),
        (mx, my + inner_h),
    ];
    let projection = Projection::from_control_points(*corners, to)?;
    let mut out = RgbImage::new(out_w, CROP_HEIGHT);
    // Outside the frame the margin is filled mid-grey rather than black, so that
    // a plate at the frame edge does not get a hard dark border that reads as a
    // character stroke.
    warp_into(
        image,
        &projection,
        Interpolation::Bilinear,
        Rgb([128, 128, 128]),
        &mut out,
    );
    Some(strip_eu_band(out))
}

/// Cuts the blue EU band (with its country letters) off the left of a crop:
/// the reader otherwise reads the band's `NL` or `HR` as an extra leading
/// letter. Only a band that starts at the left edge and is clearly blue is
/// cut, and never more than a fifth of the crop.
pub fn strip_eu_band(crop: RgbImage) -> RgbImage {
    let (w, h) = crop.dimensions();
    let is_blue_column = |x: u32| {
        let blue = (0..h)
            .filter(|&y| {
                let [r, g, b] = crop.get_pixel(x, y).0;
                b as i32 > r as i32 + 40 && b as i32 > g as i32 + 10
            })
            .count();
        blue * 3 >= h as usize
    };
    let limit = w / 5;
    let Some(first_blue) = (0..limit).find(|&x| is_blue_column(x)) else {
        return crop;
    };
    let mut end = first_blue;
    while end < limit && is_blue_column(end) {
        end += 1;
    }
    // A thin blue line is not a band; a band is at least ~4% of the width.
    if end - first_blue < (w / 25).max(2) {
        return crop;
    }
    image::imageops::crop_imm(&crop, end, 0, w - end, h).to_image()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corners_are_lengthened_along_the_plate_on_the_asked_sides() {
        // A plate tilted by a rise of 10 px over its 100 px width.
        let c = [(100.0, 50.0), (200.0, 60.0), (200.0, 80.0), (100.0, 70.0)];
        let both = extend_corners(&c, true, true, 0.2);
        assert_eq!(
            both,
            [(80.0, 48.0), (220.0, 62.0), (220.0, 82.0), (80.0, 68.0)]
        );
        let right = extend_corners(&c, false, true, 0.2);
        assert_eq!(right[0], c[0]);
        assert_eq!(right[3], c[3]);
        assert_eq!(right[1], (220.0, 62.0));
        assert_eq!(extend_corners(&c, false, false, 0.2), c);
    }

    #[test]
    fn the_blue_eu_band_is_cut_off_the_left() {
        // 200x48: a 16 px blue band, then yellow.
        let crop = RgbImage::from_fn(200, 48, |x, _| {
            if x < 16 {
                Rgb([20, 40, 160])
            } else {
                Rgb([240, 190, 20])
            }
        });
        let out = strip_eu_band(crop);
        assert_eq!(out.width(), 184);
        assert!(out.pixels().all(|p| p.0 == [240, 190, 20]));
        // No band: untouched. A blue plate field is not a band either (it is
        // wider than a fifth, so the cut stops at the limit and keeps the rest).
        let plain = RgbImage::from_pixel(200, 48, Rgb([240, 190, 20]));
        assert_eq!(strip_eu_band(plain).width(), 200);
    }

    #[test]
    fn squeezed_single_line_plates_are_widened_and_two_line_ones_kept() {
        let frame = RgbImage::from_pixel(640, 480, Rgb([200, 200, 200]));
        // Corners 2.5:1, a single-line plate seen with loose corners.
        let squeezed = rectify(
            &frame,
            &[
                (100.0, 100.0),
                (200.0, 100.0),
                (200.0, 140.0),
                (100.0, 140.0),
            ],
        )
        .expect("crop");
        let inner = squeezed.width() as f32 / (1.0 + 2.0 * MARGIN_X);
        let inner_h = CROP_HEIGHT as f32 / (1.0 + 2.0 * MARGIN_Y);
        assert!(
            (inner / inner_h - MIN_SINGLE_LINE_ASPECT).abs() < 0.05,
            "{}",
            squeezed.width()
        );
        // Corners 1.6:1, a two-line plate.
        let square = rectify(
            &frame,
            &[
                (100.0, 100.0),
                (180.0, 100.0),
                (180.0, 150.0),
                (100.0, 150.0),
            ],
        )
        .expect("crop");
        let inner = square.width() as f32 / (1.0 + 2.0 * MARGIN_X);
        assert!((inner / inner_h - 1.6).abs() < 0.05, "{}", square.width());
    }

    #[test]
    fn squat_corners_can_be_read_as_one_line_and_two_lines_split_at_the_gap() {
        let corners = [
            (100.0, 100.0),
            (180.0, 100.0),
            (180.0, 150.0),
            (100.0, 150.0),
        ];
        assert!(is_squat(&corners));
        let wide = [
            (100.0, 100.0),
            (300.0, 100.0),
            (300.0, 140.0),
            (100.0, 140.0),
        ];
        assert!(!is_squat(&wide));
        let frame = RgbImage::from_pixel(640, 480, Rgb([200, 200, 200]));
        let one_line = rectify_one_line(&frame, &corners).expect("crop");
        let inner = one_line.width() as f32 / (1.0 + 2.0 * MARGIN_X);
        let inner_h = CROP_HEIGHT as f32 / (1.0 + 2.0 * MARGIN_Y);
        assert!((inner / inner_h - MIN_SINGLE_LINE_ASPECT).abs() < 0.05);

        // Two lines of dark strokes on white, with the gap below the middle.
        let two = RgbImage::from_fn(90, 48, |x, y| {
            if ((6..22).contains(&y) || (30..44).contains(&y)) && x % 6 < 2 {
                Rgb([20, 20, 20])
            } else {
                Rgb([250, 250, 250])
            }
        });
        let (top, bottom) = split_lines(&two).expect("split");
        assert_eq!(top.width(), 90);
        // The split lies in the gap (rows 22-29), with a 3-row overlap.
        assert!((24..=32).contains(&top.height()), "{}", top.height());
        assert_eq!(top.height() + bottom.height(), 48 + 2 * 3);
        assert!(split_lines(&RgbImage::new(90, 10)).is_none());
    }

    /// A white frame with a dark axis-aligned plate-like rectangle whose left
    /// and right quarter are marked red and blue.
    fn frame_with_plate(x0: u32, y0: u32, w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(640, 480, |x, y| {
            if x >= x0 && x < x0 + w && y >= y0 && y < y0 + h {
                if x < x0 + w / 4 {
                    Rgb([255, 0, 0])
                } else if x >= x0 + 3 * w / 4 {
                    Rgb([0, 0, 255])
                } else {
                    Rgb([0, 0, 0])
                }
            } else {
                Rgb([255, 255, 255])
            }
        })
    }

    #[test]
    fn axis_aligned_plate_keeps_orientation_aspect_and_margin() {
        let img = frame_with_plate(100, 200, 235, 50);
        let corners = [
            (100.0, 200.0),
            (335.0, 200.0),
            (335.0, 250.0),
            (100.0, 250.0),
        ];
        let crop = rectify(&img, &corners).expect("crop");
        assert_eq!(crop.height(), CROP_HEIGHT);
        // 4.7:1 plate plus margins.
        let expect_w = (CROP_HEIGHT as f32 / (1.0 + 2.0 * MARGIN_Y) * 4.7 * (1.0 + 2.0 * MARGIN_X))
            .round() as u32;
        assert!(crop.width().abs_diff(expect_w) <= 1, "{}", crop.width());
        let mid = CROP_HEIGHT / 2;
        // Left part red, right part blue: not mirrored.
        let l = crop.get_pixel(crop.width() / 5, mid);
        let r = crop.get_pixel(crop.width() * 4 / 5, mid);
        assert!(l[0] > 200 && l[2] < 60, "{l:?}");
        assert!(r[2] > 200 && r[0] < 60, "{r:?}");
        // Margin: the outermost columns and rows show the white surroundings.
        assert!(crop.get_pixel(1, mid)[1] > 200);
        assert!(crop.get_pixel(crop.width() - 2, mid)[1] > 200);
        assert!(crop.get_pixel(crop.width() / 2, 1)[1] > 200);
    }

    #[test]
    fn degenerate_corners_give_none_and_extreme_aspect_is_clamped() {
        let img = frame_with_plate(100, 200, 235, 50);
        assert!(rectify(&img, &[(5.0, 5.0); 4]).is_none());
        assert!(rectify(&img, &[(f32::NAN, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)]).is_none());
        let long = [(0.0, 100.0), (639.0, 100.0), (639.0, 104.0), (0.0, 104.0)];
        assert_eq!(rectify(&img, &long).expect("crop").width(), MAX_CROP_WIDTH);
    }

    #[test]
    fn corners_outside_the_frame_do_not_panic() {
        let img = frame_with_plate(0, 0, 100, 20);
        let c = [(-50.0, -10.0), (120.0, -10.0), (120.0, 30.0), (-50.0, 30.0)];
        assert!(rectify(&img, &c).is_some());
    }
}
