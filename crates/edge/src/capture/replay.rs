//! Replay: a folder of JPEG/PNG frames played in file-name order.
//!
//! Used by the demo, the tests and by technicians who want to re-run recorded
//! frames. A paced replay behaves like a camera (frames at the configured rate,
//! dropped when detection falls behind); an unpaced one hands over every frame
//! as fast as the pipeline takes them, so results do not depend on machine speed.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use image::RgbImage;

use super::{CaptureError, FrameSource};

pub struct ReplaySource {
    files: Vec<PathBuf>,
    next: usize,
    looped: bool,
    paced: bool,
    interval: Duration,
    next_due: Option<Instant>,
}

impl ReplaySource {
    /// Lists the folder's frames. Fails if the folder cannot be read or holds no frames.
    pub fn open(dir: &Path, fps: f32, looped: bool, paced: bool) -> Result<Self, CaptureError> {
        let entries = std::fs::read_dir(dir).map_err(|source| CaptureError::Folder {
            path: dir.display().to_string(),
            source,
        })?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
                    .unwrap_or(false)
            })
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(CaptureError::EmptyFolder {
                path: dir.display().to_string(),
            });
        }
        let fps = if fps > 0.0 { fps } else { 10.0 };
        Ok(ReplaySource {
            files,
            next: 0,
            looped,
            paced,
            interval: Duration::from_secs_f32(1.0 / fps),
            next_due: None,
        })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }
}

/// Decodes one frame file, naming the file in any error.
pub fn decode_frame(path: &Path) -> Result<RgbImage, CaptureError> {
    let bytes = std::fs::read(path).map_err(|e| CaptureError::Decode {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    image::load_from_memory(&bytes)
        .map(|img| img.to_rgb8())
        .map_err(|e| CaptureError::Decode {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

impl FrameSource for ReplaySource {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
        if self.next >= self.files.len() {
            if !self.looped {
                return Ok(None);
            }
            self.next = 0;
        }
        if self.paced {
            let now = Instant::now();
            let due = self.next_due.unwrap_or(now);
            if due > now {
                std::thread::sleep(due - now);
            }
            self.next_due = Some(due.max(now) + self.interval);
        }
        let path = self.files[self.next].clone();
        self.next += 1;
        decode_frame(&path).map(Some)
    }

    fn realtime(&self) -> bool {
        self.paced
    }

    fn frame_interval(&self) -> Duration {
        self.interval
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(dir: &Path, name: &str, shade: u8) {
        RgbImage::from_pixel(4, 3, image::Rgb([shade, 0, 0]))
            .save(dir.join(name))
            .expect("write png");
    }

    #[test]
    fn plays_frames_in_name_order_then_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_png(dir.path(), "b.png", 2);
        write_png(dir.path(), "a.png", 1);
        std::fs::write(dir.path().join("notes.txt"), "not a frame").expect("write");
        let mut src = ReplaySource::open(dir.path(), 100.0, false, false).expect("open");
        assert_eq!(src.len(), 2);
        let first = src.next_frame().expect("ok").expect("frame");
        assert_eq!(first.get_pixel(0, 0)[0], 1);
        let second = src.next_frame().expect("ok").expect("frame");
        assert_eq!(second.get_pixel(0, 0)[0], 2);
        assert!(src.next_frame().expect("ok").is_none());
    }

    #[test]
    fn looped_replay_starts_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_png(dir.path(), "a.png", 1);
        let mut src = ReplaySource::open(dir.path(), 100.0, true, false).expect("open");
        for _ in 0..3 {
            assert!(src.next_frame().expect("ok").is_some());
        }
    }

    #[test]
    fn missing_folder_names_the_path() {
        let err = ReplaySource::open(Path::new("/nonexistent/frames"), 10.0, false, false)
            .err()
            .expect("must fail");
        assert!(err.to_string().contains("/nonexistent/frames"), "{err}");
    }

    #[test]
    fn folder_without_frames_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = ReplaySource::open(dir.path(), 10.0, false, false)
            .err()
            .expect("must fail");
        assert!(matches!(err, CaptureError::EmptyFolder { .. }));
    }

    #[test]
    fn truncated_jpeg_is_a_decode_error_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut bytes = Vec::new();
        RgbImage::from_pixel(64, 64, image::Rgb([9, 9, 9]))
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Jpeg,
            )
            .expect("encode");
        bytes.truncate(bytes.len() / 3);
        std::fs::write(dir.path().join("cut.jpg"), &bytes).expect("write");
        let mut src = ReplaySource::open(dir.path(), 10.0, false, false).expect("open");
        let err = src.next_frame().expect_err("decode must fail");
        assert!(matches!(err, CaptureError::Decode { .. }));
        assert!(err.to_string().contains("cut.jpg"), "{err}");
    }
}
