//! V4L2 cameras through the `v4l` crate.
//!
//! Opens a device, negotiates MJPEG or YUYV at the configured size and rate,
//! and decodes each buffer to RGB. A device that is missing or stops answering
//! is an error for this camera only; the capture loop reports it and retries,
//! while other cameras go on.

use std::path::{Path, PathBuf};
use std::time::Duration;

use image::RgbImage;
use v4l::buffer::Type;
use v4l::io::traits::CaptureStream;
use v4l::prelude::MmapStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{CaptureError, FrameSource};
use crate::config::PixelFormat;

pub struct V4l2Source {
    path: PathBuf,
    format: PixelFormat,
    width: u32,
    height: u32,
    interval: Duration,
    // The stream owns an Arc of the device handle; the device is kept so that
    // it closes after the stream.
    stream: MmapStream<'static>,
    _device: Device,
}

fn device_error(path: &Path, what: &str, e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Device {
        path: path.display().to_string(),
        reason: format!("{what}: {e}"),
    }
}

impl V4l2Source {
    pub fn open(
        path: &Path,
        format: PixelFormat,
        width: u32,
        height: u32,
        fps: f32,
    ) -> Result<Self, CaptureError> {
        if !path.exists() {
            return Err(device_error(
                path,
                "no such device",
                "is the camera connected?",
            ));
        }
        let device = Device::with_path(path).map_err(|e| device_error(path, "cannot open", e))?;
        let fourcc = match format {
            PixelFormat::Mjpeg => FourCC::new(b"MJPG"),
            PixelFormat::Yuyv => FourCC::new(b"YUYV"),
        };
        let mut fmt = device
            .format()
            .map_err(|e| device_error(path, "cannot read format", e))?;
        fmt.width = width;
        fmt.height = height;
        fmt.fourcc = fourcc;
        let got = device
            .set_format(&fmt)
            .map_err(|e| device_error(path, "cannot set format", e))?;
        if got.fourcc != fourcc {
            return Err(device_error(
                path,
                "format refused",
                format!("asked for {fourcc}, the driver offers {}", got.fourcc),
            ));
        }
        let fps_int = fps.round().max(1.0) as u32;
        // Not every driver supports frame-rate control; the frames' own
        // timestamps stay right either way.
        if let Err(e) = device.set_params(&v4l::video::capture::Parameters::with_fps(fps_int)) {
            tracing::warn!(device = %path.display(), error = %e, "camera refused the frame rate; using its default");
        }
        let mut stream = MmapStream::with_buffers(&device, Type::VideoCapture, 4)
            .map_err(|e| device_error(path, "cannot start streaming", e))?;
        // A camera that stops delivering must surface as an error, not a hang.
        stream.set_timeout(Duration::from_secs(5));
        Ok(V4l2Source {
            path: path.to_owned(),
            format,
            width: got.width,
            height: got.height,
            interval: Duration::from_secs_f32(1.0 / fps.max(1.0)),
            stream,
            _device: device,
        })
    }
}

impl FrameSource for V4l2Source {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
        let (buf, _meta) = self
            .stream
            .next()
            .map_err(|e| device_error(&self.path, "capture failed", e))?;
        let image = match self.format {
            PixelFormat::Mjpeg => {
                image::load_from_memory_with_format(buf, image::ImageFormat::Jpeg)
                    .map(|i| i.to_rgb8())
                    .map_err(|e| CaptureError::Decode {
                        path: self.path.display().to_string(),
                        reason: e.to_string(),
                    })?
            }
            PixelFormat::Yuyv => {
                yuyv_to_rgb(buf, self.width, self.height).ok_or_else(|| CaptureError::Decode {
                    path: self.path.display().to_string(),
                    reason: format!(
                        "YUYV buffer of {} bytes is too short for {}x{}",
                        buf.len(),
                        self.width,
                        self.height
                    ),
                })?
            }
        };
        Ok(Some(image))
    }

    fn realtime(&self) -> bool {
        true
    }

    fn frame_interval(&self) -> Duration {
        self.interval
    }
}

/// Converts packed YUYV 4:2:2 (BT.601, limited range) to RGB.
pub fn yuyv_to_rgb(buf: &[u8], width: u32, height: u32) -> Option<RgbImage> {
    let (w, h) = (width as usize, height as usize);
    if w % 2 != 0 || buf.len() < w * h * 2 {
        return None;
    }
    let mut out = vec![0u8; w * h * 3];
    let convert = |y: u8, u: u8, v: u8, px: &mut [u8]| {
        let c = (y as f32 - 16.0) * 1.164;
        let d = u as f32 - 128.0;
        let e = v as f32 - 128.0;
        px[0] = (c + 1.596 * e).clamp(0.0, 255.0) as u8;
        px[1] = (c - 0.392 * d - 0.813 * e).clamp(0.0, 255.0) as u8;
        px[2] = (c + 2.017 * d).clamp(0.0, 255.0) as u8;
    };
    for (quad, px) in buf[..w * h * 2]
        .chunks_exact(4)
        .zip(out.chunks_exact_mut(6))
    {
        let (y0, u, y1, v) = (quad[0], quad[1], quad[2], quad[3]);
        let (a, b) = px.split_at_mut(3);
        convert(y0, u, v, a);
        convert(y1, u, v, b);
    }
    RgbImage::from_raw(width, height, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_grey_and_colour_convert() {
        // Two pixels of mid grey, then two of saturated red.
        let buf = [126u8, 128, 126, 128, 81, 90, 81, 240];
        let img = yuyv_to_rgb(&buf, 4, 1).expect("size fits");
        let grey = img.get_pixel(0, 0);
        assert!(
            grey.0.iter().all(|&c| (c as i32 - 128).abs() <= 3),
            "{grey:?}"
        );
        let red = img.get_pixel(2, 0);
        assert!(red[0] > 230 && red[1] < 20 && red[2] < 20, "{red:?}");
    }

    #[test]
    fn short_yuyv_buffer_is_refused() {
        assert!(yuyv_to_rgb(&[0u8; 6], 4, 1).is_none());
    }

    #[test]
    fn missing_device_is_a_clear_error() {
        let err = V4l2Source::open(
            Path::new("/dev/video-nonexistent"),
            PixelFormat::Mjpeg,
            640,
            480,
            10.0,
        )
        .err()
        .expect("must fail");
        let msg = err.to_string();
        assert!(
            msg.contains("/dev/video-nonexistent") && msg.contains("no such device"),
            "{msg}"
        );
    }
}
