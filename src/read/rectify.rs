//! Perspective rectification of a plate from its four corners.

use image::RgbImage;

/// Placeholder until the projective warp lands: crops the corners' bounding box.
pub fn rectify(image: &RgbImage, corners: &[(f32, f32); 4]) -> RgbImage {
    let xs = corners.iter().map(|c| c.0);
    let ys = corners.iter().map(|c| c.1);
    let x1 = xs.clone().fold(f32::MAX, f32::min).max(0.0) as u32;
    let x2 = (xs.fold(0.0f32, f32::max) as u32).min(image.width());
    let y1 = ys.clone().fold(f32::MAX, f32::min).max(0.0) as u32;
    let y2 = (ys.fold(0.0f32, f32::max) as u32).min(image.height());
    image::imageops::crop_imm(image, x1, y1, x2.saturating_sub(x1).max(1), y2.saturating_sub(y1).max(1)).to_image()
}
