//! The live snapshot: what the technician needs to aim and focus a camera.
//!
//! Measures the newest frame (focus as the variance of the Laplacian, an
//! exposure histogram, each plate's pixel height against what the reader
//! needs) and draws it over a copy of the frame: region of interest, lanes,
//! plate boxes (their pixels made unreadable) and the histogram. Works on memory only: the JPEG is made for
//! one answer (and a short cache) and never written anywhere. It never sees
//! plate text.

use image::{Rgb, RgbImage};
use imageproc::drawing::{draw_filled_rect_mut, draw_hollow_polygon_mut};
use imageproc::point::Point;
use imageproc::rect::Rect;
use serde::Serialize;

use crate::config::CameraConfig;
use crate::message::DetectedFrame;

/// Bins of the exposure histogram.
pub const HISTOGRAM_BINS: usize = 32;

/// Where a camera's region of interest and lanes lie (from the config).
#[derive(Clone, Debug, Default)]
pub struct Layout {
    pub roi: Option<Vec<[f32; 2]>>,
    pub lanes: Vec<(u32, Vec<[f32; 2]>)>,
}

impl Layout {
    pub fn of(cam: &CameraConfig) -> Self {
        Layout {
            roi: cam.roi.clone(),
            lanes: cam
                .lanes
                .iter()
                .map(|l| (l.id, l.polygon.clone()))
                .collect(),
        }
    }
}

/// One detected plate as the snapshot shows it: geometry only.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PlateBox {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    /// Height of the plate in pixels (mean of its left and right edges).
    pub height_px: f32,
    pub needed_px: u32,
    pub tall_enough: bool,
    /// Whether its centre lies in the region of interest (true without one).
    pub in_roi: bool,
    pub score: f32,
}

/// What the snapshot measured in one frame.
#[derive(Clone, Debug, Serialize)]
pub struct Analysis {
    pub seq: u64,
    pub captured_unix_ms: i64,
    pub width: u32,
    pub height: u32,
    /// Variance of the Laplacian of the luminance: higher is sharper. Compare
    /// values of one camera while turning its focus ring; a blurred view
    /// scores a fraction of a sharp one.
    pub focus: f64,
    /// Luminance histogram, `HISTOGRAM_BINS` bins over 0..=255.
    pub histogram: Vec<u32>,
    pub mean_luma: f64,
    /// Shares of pixels at the ends of the range (under- and over-exposed).
    pub dark_share: f64,
    pub bright_share: f64,
    pub plates: Vec<PlateBox>,
}

fn luma(p: &Rgb<u8>) -> u8 {
    // ITU-R BT.601 weights in integers.
    ((u32::from(p[0]) * 299 + u32::from(p[1]) * 587 + u32::from(p[2]) * 114) / 1000) as u8
}

fn inside(poly: &[[f32; 2]], x: f32, y: f32) -> bool {
    let mut inside = false;
    let n = poly.len();
    for i in 0..n {
        let [xi, yi] = poly[i];
        let [xj, yj] = poly[(i + n - 1) % n];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
    }
    inside
}

fn dist(a: (f32, f32), b: (f32, f32)) -> f32 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

/// Variance of the 4-neighbour Laplacian over the whole frame.
fn focus_score(gray: &[u8], w: usize, h: usize) -> f64 {
    if w < 3 || h < 3 {
        return 0.0;
    }
    let (mut sum, mut sum2, mut n) = (0f64, 0f64, 0f64);
    for y in 1..h - 1 {
        let row = y * w;
        for x in 1..w - 1 {
            let c = i32::from(gray[row + x]);
            let l = i32::from(gray[row + x - 1])
                + i32::from(gray[row + x + 1])
                + i32::from(gray[row + x - w])
                + i32::from(gray[row + x + w])
                - 4 * c;
            let l = f64::from(l);
            sum += l;
            sum2 += l * l;
            n += 1.0;
        }
    }
    let mean = sum / n;
    sum2 / n - mean * mean
}

pub fn analyse(f: &DetectedFrame, needed_px: u32, layout: &Layout) -> Analysis {
    let img = &f.frame.image;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let gray: Vec<u8> = img.pixels().map(luma).collect();
    let mut histogram = vec![0u32; HISTOGRAM_BINS];
    let (mut dark, mut bright, mut total) = (0u64, 0u64, 0u64);
    for &g in &gray {
        histogram[usize::from(g) * HISTOGRAM_BINS / 256] += 1;
        dark += u64::from(g <= 5);
        bright += u64::from(g >= 250);
        total += u64::from(g);
    }
    let n = gray.len().max(1) as f64;
    let plates = f
        .detections
        .iter()
        .map(|d| {
            let [tl, tr, br, bl] = d.corners;
            let height_px = (dist(tl, bl) + dist(tr, br)) / 2.0;
            let (cx, cy) = d.bbox.center();
            PlateBox {
                x1: d.bbox.x1,
                y1: d.bbox.y1,
                x2: d.bbox.x2,
                y2: d.bbox.y2,
                height_px,
                needed_px,
                tall_enough: height_px >= needed_px as f32,
                in_roi: layout.roi.as_ref().is_none_or(|r| inside(r, cx, cy)),
                score: d.score,
            }
        })
        .collect();
    Analysis {
        seq: f.frame.seq,
        captured_unix_ms: f.frame.captured.wall.timestamp_millis(),
        width: w as u32,
        height: h as u32,
        focus: focus_score(&gray, w, h),
        histogram,
        mean_luma: total as f64 / n,
        dark_share: dark as f64 / n,
        bright_share: bright as f64 / n,
        plates,
    }
}

const YELLOW: Rgb<u8> = Rgb([255, 220, 0]);
const CYAN: Rgb<u8> = Rgb([0, 220, 255]);
const GREEN: Rgb<u8> = Rgb([0, 230, 60]);
const RED: Rgb<u8> = Rgb([255, 40, 40]);
const WHITE: Rgb<u8> = Rgb([255, 255, 255]);
const BLACK: Rgb<u8> = Rgb([0, 0, 0]);

fn polygon(img: &mut RgbImage, poly: &[[f32; 2]], color: Rgb<u8>, thick: i32) {
    if poly.len() < 3 {
        return;
    }
    for d in 0..thick {
        let pts: Vec<Point<f32>> = poly
            .iter()
            .map(|p| Point::new(p[0] + d as f32, p[1] + d as f32))
            .collect();
        // imageproc refuses a polygon whose first and last points coincide.
        let pts = if pts.first() == pts.last() {
            pts[..pts.len() - 1].to_vec()
        } else {
            pts
        };
        if pts.len() >= 3 {
            draw_hollow_polygon_mut(img, &pts, color);
        }
    }
}

/// Draws `text` at about `size` pixels high on a black box, in the 8x8 bitmap
/// font of `font8x8` scaled by whole pixels: legible at a glance, and no font
/// file on the controller. Characters the font lacks are drawn as blanks.
fn label(img: &mut RgbImage, x: i32, y: i32, size: f32, text: &str, color: Rgb<u8>) {
    let scale = ((size / 8.0).round() as i32).max(1);
    let (tw, th) = (text.chars().count() as i32 * 8 * scale, 8 * scale);
    let y = y.max(0);
    let (w, h) = (img.width() as i32, img.height() as i32);
    if tw > 0 {
        draw_filled_rect_mut(
            img,
            Rect::at(x - 2, y - 1).of_size((tw + 4) as u32, (th + 4) as u32),
            BLACK,
        );
    }
    for (i, c) in text.chars().enumerate() {
        let Some(glyph) = u32::from(c)
            .try_into()
            .ok()
            .and_then(|i: usize| font8x8::legacy::BASIC_LEGACY.get(i))
        else {
            continue;
        };
        let left = x + i as i32 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let (px, py) = (left + col * scale + dx, y + row as i32 * scale + dy + 1);
                        if px >= 0 && py >= 0 && px < w && py < h {
                            img.put_pixel(px as u32, py as u32, color);
                        }
                    }
                }
            }
        }
    }
}

/// The frame with the overlays drawn, as JPEG. The copy lives for this call only.
pub fn render_jpeg(
    f: &DetectedFrame,
    a: &Analysis,
    layout: &Layout,
    camera: &str,
) -> Result<Vec<u8>, image::ImageError> {
    let mut img: RgbImage = (*f.frame.image).clone();
    draw_overlays(&mut img, a, layout, camera);
    let mut out = std::io::Cursor::new(Vec::new());
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80).encode_image(&img)?;
    Ok(out.into_inner())
}

fn draw_overlays(img: &mut RgbImage, a: &Analysis, layout: &Layout, camera: &str) {
    let (w, h) = (img.width(), img.height());
    let thick = (w / 640).max(1) as i32 + 1;
    let text = (h as f32 / 36.0).max(11.0);
    if let Some(roi) = &layout.roi {
        polygon(img, roi, YELLOW, thick);
        if let Some(p) = roi.first() {
            label(img, p[0] as i32 + 4, p[1] as i32 + 4, text, "ROI", YELLOW);
        }
    }
    for (id, lane) in &layout.lanes {
        polygon(img, lane, CYAN, thick);
        if let Some(p) = lane.first() {
            let t = format!("lane {id}");
            label(img, p[0] as i32 + 4, p[1] as i32 + 4, text, &t, CYAN);
        }
    }
    for p in &a.plates {
        pixelate(img, p);
    }
    for p in &a.plates {
        let color = if p.tall_enough && p.in_roi {
            GREEN
        } else {
            RED
        };
        let corners = [[p.x1, p.y1], [p.x2, p.y1], [p.x2, p.y2], [p.x1, p.y2]];
        polygon(img, &corners, color, thick);
        let mut t = format!("{:.0} px (needs {})", p.height_px, p.needed_px);
        if !p.in_roi {
            t.push_str(" outside ROI");
        }
        let y = p.y1 as i32 - text as i32 - 4;
        label(img, p.x1 as i32, y, text * 0.9, &t, color);
    }
    let head = format!(
        "{camera}  #{}  focus {:.0}  mean {:.0}",
        a.seq, a.focus, a.mean_luma
    );
    label(img, 4, 3, text, &head, WHITE);
    draw_histogram(img, &a.histogram);
}

/// Makes a plate unreadable in the snapshot (its text is masked
/// everywhere on the page); its size and sharpness are measured beforehand.
fn pixelate(img: &mut RgbImage, p: &PlateBox) {
    let (w, h) = (img.width() as f32, img.height() as f32);
    let x1 = p.x1.clamp(0.0, w) as u32;
    let x2 = p.x2.clamp(0.0, w).ceil() as u32;
    let y1 = p.y1.clamp(0.0, h) as u32;
    let y2 = p.y2.clamp(0.0, h).ceil() as u32;
    // Blocks of a third of the plate's height: no character survives.
    let block = ((y2.saturating_sub(y1)) / 3).max(4);
    let mut by = y1;
    while by < y2 {
        let mut bx = x1;
        let bh = block.min(y2 - by);
        while bx < x2 {
            let bw = block.min(x2 - bx);
            let mut sum = [0u32; 3];
            for y in by..by + bh {
                for x in bx..bx + bw {
                    let px = img.get_pixel(x, y);
                    for c in 0..3 {
                        sum[c] += u32::from(px[c]);
                    }
                }
            }
            let n = (bw * bh).max(1);
            let avg = Rgb(sum.map(|v| (v / n) as u8));
            for y in by..by + bh {
                for x in bx..bx + bw {
                    img.put_pixel(x, y, avg);
                }
            }
            bx += bw;
        }
        by += bh;
    }
}

fn draw_histogram(img: &mut RgbImage, hist: &[u32]) {
    let (w, h) = (img.width(), img.height());
    let bar = (w / 160).max(1);
    let (bw, bh) = (bar * hist.len() as u32, (h / 6).max(8));
    if bw + 8 > w || bh + 8 > h {
        return;
    }
    let (x0, y0) = ((w - bw - 4) as i32, (h - bh - 4) as i32);
    draw_filled_rect_mut(img, Rect::at(x0 - 2, y0 - 2).of_size(bw + 4, bh + 4), BLACK);
    let max = hist.iter().copied().max().unwrap_or(0).max(1);
    for (i, &v) in hist.iter().enumerate() {
        let bar_h = ((u64::from(v) * u64::from(bh)) / u64::from(max)) as u32;
        if bar_h == 0 {
            continue;
        }
        // The ends of the range are drawn red: clipping there loses detail.
        let color = if i == 0 || i + 1 == hist.len() {
            RED
        } else {
            WHITE
        };
        draw_filled_rect_mut(
            img,
            Rect::at(x0 + (i as u32 * bar) as i32, y0 + (bh - bar_h) as i32).of_size(bar, bar_h),
            color,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::TimeSource;
    use crate::message::{BoxF, Detection, Frame};
    use std::sync::Arc;

    fn frame(img: RgbImage, detections: Vec<Detection>) -> DetectedFrame {
        DetectedFrame {
            frame: Frame {
                camera: "c".into(),
                seq: 7,
                captured: TimeSource::real().now(),
                image: Arc::new(img),
            },
            detections,
        }
    }

    fn checkerboard(cell: u32) -> RgbImage {
        RgbImage::from_fn(160, 120, |x, y| {
            if (x / cell + y / cell).is_multiple_of(2) {
                Rgb([230, 230, 230])
            } else {
                Rgb([20, 20, 20])
            }
        })
    }

    #[test]
    fn a_blurred_view_scores_far_lower_focus_than_a_sharp_one() {
        let sharp = checkerboard(4);
        let blurred = image::imageops::blur(&sharp, 3.0);
        let l = Layout::default();
        let s = analyse(&frame(sharp, vec![]), 20, &l).focus;
        let b = analyse(&frame(blurred, vec![]), 20, &l).focus;
        assert!(s > 10.0 * b, "sharp {s}, blurred {b}");
    }

    #[test]
    fn histogram_counts_every_pixel_and_flags_clipping() {
        let white = RgbImage::from_pixel(10, 10, Rgb([255, 255, 255]));
        let a = analyse(&frame(white, vec![]), 20, &Layout::default());
        assert_eq!(a.histogram.iter().sum::<u32>(), 100);
        assert_eq!(a.histogram[HISTOGRAM_BINS - 1], 100);
        assert_eq!((a.bright_share, a.dark_share), (1.0, 0.0));
    }

    #[test]
    fn plate_height_is_judged_against_the_need_and_the_roi() {
        let det = |y1: f32, y2: f32, x: f32| Detection {
            bbox: BoxF {
                x1: x,
                y1,
                x2: x + 60.0,
                y2,
            },
            corners: [(x, y1), (x + 60.0, y1), (x + 60.0, y2), (x, y2)],
            score: 0.8,
        };
        let layout = Layout {
            roi: Some(vec![[0.0, 0.0], [100.0, 0.0], [100.0, 120.0], [0.0, 120.0]]),
            lanes: vec![],
        };
        let f = frame(
            checkerboard(8),
            vec![
                det(10.0, 34.0, 10.0),
                det(50.0, 62.0, 10.0),
                det(10.0, 40.0, 95.0),
            ],
        );
        let a = analyse(&f, 20, &layout);
        let got: Vec<(f32, bool, bool)> = a
            .plates
            .iter()
            .map(|p| (p.height_px, p.tall_enough, p.in_roi))
            .collect();
        assert_eq!(
            got,
            [(24.0, true, true), (12.0, false, true), (30.0, true, false)]
        );
        let jpeg = render_jpeg(&f, &a, &layout, "c").expect("encodes");
        let back = image::load_from_memory(&jpeg).expect("decodes").to_rgb8();
        assert_eq!(back.dimensions(), (160, 120));
        // The short plate's box is drawn red, the good one green (their left
        // and right edges; labels cover the top and bottom ones).
        let mut img = (*f.frame.image).clone();
        draw_overlays(&mut img, &a, &layout, "c");
        assert_eq!(*img.get_pixel(10, 56), RED);
        // Inside a plate (its first 8 px block, off the drawn edges), the
        // checkerboard of 8 px cells is averaged away.
        let inside: Vec<Rgb<u8>> = (12..18).map(|x| *img.get_pixel(x, 16)).collect();
        assert!(inside.windows(2).all(|w| w[0] == w[1]), "{inside:?}");
        assert_ne!(
            f.frame.image.get_pixel(12, 16),
            f.frame.image.get_pixel(17, 16)
        );
        assert_eq!(*img.get_pixel(70, 24), GREEN);
        assert_eq!(*img.get_pixel(95, 30), RED);
    }
}
