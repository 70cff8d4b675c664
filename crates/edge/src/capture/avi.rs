//! MJPG AVI files: the JPEG frames of a recorded clip, in order.
//!
//! An AVI is a RIFF file: a tree of chunks (four-byte id, little-endian size,
//! data padded to an even length). The header list `hdrl` holds the frame
//! interval (`avih`) and one `strl` per stream; the frames are the chunks
//! `NNdc` of the video stream NN inside the `movi` list (OpenDML files go on
//! in further `RIFF AVIX` chunks). Motion-JPEG stores each frame as a whole
//! JPEG, so no codec is needed beyond the `image` crate's. `eval --clips`
//! replays recorded clips through this; live cameras never do. It only reads.

use std::ops::Range;
use std::path::Path;
use std::time::Duration;

use image::RgbImage;

#[derive(Debug, thiserror::Error)]
pub enum AviError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not an AVI file (no RIFF AVI header)")]
    NotAvi,
    #[error("chunk {id:?} at byte {at} runs past the end of the file")]
    Truncated { id: String, at: usize },
    #[error("the file has no video stream")]
    NoVideo,
    #[error("the video stream is {0:?}, not MJPG")]
    NotMjpeg(String),
    #[error("frame {index}: {source}")]
    Decode {
        index: usize,
        source: image::ImageError,
    },
}

/// A parsed AVI: where each frame's JPEG lies in the file.
pub struct Avi {
    data: Vec<u8>,
    /// Byte ranges of the frames, in order. A dropped frame (an empty chunk,
    /// meaning "show the previous one again") repeats the previous range so
    /// that frame numbers keep matching time.
    frames: Vec<Range<usize>>,
    /// From the main header; `None` where it states 0.
    pub frame_interval: Option<Duration>,
    pub width: u32,
    pub height: u32,
}

/// One chunk: its id, its data's range in the file, and for `RIFF`/`LIST`
/// chunks the four-byte list type.
struct Chunk {
    id: [u8; 4],
    data: Range<usize>,
}

impl Chunk {
    fn list_type(&self, file: &[u8]) -> Option<[u8; 4]> {
        let t = file.get(self.data.start..self.data.start + 4)?;
        Some([t[0], t[1], t[2], t[3]])
    }

    /// The chunk's contents after the list type.
    fn children(&self) -> Range<usize> {
        (self.data.start + 4).min(self.data.end)..self.data.end
    }
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

/// The chunks directly inside `range`. A chunk whose data runs past the end of
/// the file ends the walk with an error: a recording cut off mid-write is
/// reported, not silently shortened.
fn chunks(file: &[u8], range: Range<usize>) -> Result<Vec<Chunk>, AviError> {
    let mut out = Vec::new();
    let mut at = range.start;
    while at + 8 <= range.end {
        let id = [file[at], file[at + 1], file[at + 2], file[at + 3]];
        let size = u32_at(file, at + 4).unwrap_or(0) as usize;
        let start = at + 8;
        let end = start
            .checked_add(size)
            .filter(|&e| e <= range.end)
            .ok_or_else(|| AviError::Truncated {
                id: String::from_utf8_lossy(&id).into_owned(),
                at,
            })?;
        out.push(Chunk {
            id,
            data: start..end,
        });
        at = end + (size & 1);
    }
    Ok(out)
}

/// Appends the frames of video stream `tag` (`b"00"`, ...) found in `range`,
/// in file order; `rec ` lists group chunks and are walked into.
fn frames_in(
    file: &[u8],
    range: Range<usize>,
    tag: &[u8],
    out: &mut Vec<Range<usize>>,
) -> Result<(), AviError> {
    for c in chunks(file, range)? {
        if &c.id == b"LIST" && c.list_type(file) == Some(*b"rec ") {
            frames_in(file, c.children(), tag, out)?;
        } else if &c.id[..2] == tag && matches!(&c.id[2..], b"dc" | b"db") {
            out.push(c.data);
        }
    }
    Ok(())
}

impl Avi {
    pub fn open(path: &Path) -> Result<Avi, AviError> {
        let data = std::fs::read(path).map_err(|source| AviError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Avi::parse(data)
    }

    pub fn parse(data: Vec<u8>) -> Result<Avi, AviError> {
        if data.get(0..4) != Some(b"RIFF") || data.get(8..12) != Some(b"AVI ") {
            return Err(AviError::NotAvi);
        }
        let top = chunks(&data, 0..data.len())?;
        let mut frame_interval = None;
        let (mut width, mut height) = (0, 0);
        let mut video: Option<(usize, [u8; 4])> = None;
        let mut movis = Vec::new();
        for riff in top.iter().filter(|c| &c.id == b"RIFF") {
            for c in chunks(&data, riff.children())? {
                if &c.id != b"LIST" {
                    continue;
                }
                match &c.list_type(&data).unwrap_or_default() {
                    b"hdrl" => {
                        for h in chunks(&data, c.children())? {
                            if &h.id == b"avih" {
                                let us = u32_at(&data, h.data.start).unwrap_or(0);
                                frame_interval = (us > 0).then(|| Duration::from_micros(us.into()));
                                width = u32_at(&data, h.data.start + 32).unwrap_or(0);
                                height = u32_at(&data, h.data.start + 36).unwrap_or(0);
                            }
                        }
                        let strls = chunks(&data, c.children())?
                            .into_iter()
                            .filter(|s| &s.id == b"LIST" && s.list_type(&data) == Some(*b"strl"));
                        for (n, strl) in strls.enumerate() {
                            let strh = chunks(&data, strl.children())?
                                .into_iter()
                                .find(|s| &s.id == b"strh");
                            let Some(strh) = strh else { continue };
                            let kind = data.get(strh.data.start..strh.data.start + 4);
                            let handler = data.get(strh.data.start + 4..strh.data.start + 8);
                            if video.is_none() && kind == Some(b"vids") {
                                let mut h = [0u8; 4];
                                if let Some(x) = handler {
                                    h.copy_from_slice(x);
                                }
                                video = Some((n, h));
                            }
                        }
                    }
                    b"movi" => movis.push(c.children()),
                    _ => {}
                }
            }
        }
        let (stream, handler) = video.ok_or(AviError::NoVideo)?;
        // The stream header's handler is "MJPG" in most writers; some leave it
        // as the generic "DIB " and name the codec only in the format, so the
        // frames themselves are checked when decoded.
        let upper = handler.to_ascii_uppercase();
        if &upper != b"MJPG" && &upper != b"DIB " && handler != [0; 4] {
            return Err(AviError::NotMjpeg(String::from_utf8_lossy(&handler).into()));
        }
        let tag = format!("{stream:02}");
        let mut frames: Vec<Range<usize>> = Vec::new();
        for movi in movis {
            frames_in(&data, movi, tag.as_bytes(), &mut frames)?;
        }
        // Dropped frames: an empty chunk repeats the previous frame.
        let mut last: Option<Range<usize>> = None;
        let frames = frames
            .into_iter()
            .filter_map(|r| {
                if r.is_empty() {
                    last.clone()
                } else {
                    last = Some(r.clone());
                    Some(r)
                }
            })
            .collect();
        Ok(Avi {
            data,
            frames,
            frame_interval,
            width,
            height,
        })
    }

    /// Number of frames.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The JPEG bytes of frame `index`.
    pub fn jpeg(&self, index: usize) -> Option<&[u8]> {
        self.frames.get(index).map(|r| &self.data[r.clone()])
    }

    /// Frame `index` decoded.
    pub fn decode(&self, index: usize) -> Result<RgbImage, AviError> {
        let bytes = self.jpeg(index).unwrap_or_default();
        image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
            .map(|i| i.to_rgb8())
            .map_err(|source| AviError::Decode { index, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn chunk(id: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut out = id.to_vec();
        out.extend((data.len() as u32).to_le_bytes());
        out.extend(data);
        if !data.len().is_multiple_of(2) {
            out.push(0);
        }
        out
    }

    fn list(id: &[u8; 4], kind: &[u8; 4], children: &[Vec<u8>]) -> Vec<u8> {
        let mut data = kind.to_vec();
        for c in children {
            data.extend(c);
        }
        chunk(id, &data)
    }

    fn jpeg(shade: u8) -> Vec<u8> {
        let img = RgbImage::from_pixel(32, 24, image::Rgb([shade, 255 - shade, 40]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("encodes");
        out.into_inner()
    }

    /// An AVI as common writers lay it out: an audio stream before the video
    /// one, JUNK padding, audio chunks between the frames, an odd-sized frame
    /// (padded), a dropped frame, a `rec ` list, an index at the end.
    fn synthetic_avi() -> Vec<u8> {
        let mut avih = vec![0u8; 56];
        avih[0..4].copy_from_slice(&83_333u32.to_le_bytes());
        avih[32..36].copy_from_slice(&32u32.to_le_bytes());
        avih[36..40].copy_from_slice(&24u32.to_le_bytes());
        let strh = |kind: &[u8; 4], handler: &[u8; 4]| {
            let mut h = vec![0u8; 56];
            h[0..4].copy_from_slice(kind);
            h[4..8].copy_from_slice(handler);
            chunk(b"strh", &h)
        };
        let hdrl = list(
            b"LIST",
            b"hdrl",
            &[
                chunk(b"avih", &avih),
                list(b"LIST", b"strl", &[strh(b"auds", &[0; 4])]),
                list(b"LIST", b"strl", &[strh(b"vids", b"MJPG")]),
            ],
        );
        let mut odd = jpeg(200);
        if odd.len().is_multiple_of(2) {
            odd.push(0);
        }
        let movi = list(
            b"LIST",
            b"movi",
            &[
                chunk(b"00wb", &[1, 2, 3]),
                chunk(b"01dc", &jpeg(10)),
                chunk(b"00wb", &[4, 5]),
                chunk(b"01dc", &odd),
                chunk(b"01dc", &[]),
                list(b"LIST", b"rec ", &[chunk(b"01dc", &jpeg(120))]),
                chunk(b"JUNK", &[0; 7]),
            ],
        );
        let mut body = b"AVI ".to_vec();
        body.extend(hdrl);
        body.extend(chunk(b"JUNK", &[0; 10]));
        body.extend(movi);
        body.extend(chunk(b"idx1", &[0; 16]));
        chunk(b"RIFF", &body)
    }

    #[test]
    fn frames_of_the_video_stream_come_out_in_order() {
        let avi = Avi::parse(synthetic_avi()).expect("parses");
        assert_eq!(avi.frame_interval, Some(Duration::from_micros(83_333)));
        assert_eq!((avi.width, avi.height), (32, 24));
        assert_eq!(avi.len(), 4, "three frames and one repeated");
        let shades: Vec<u8> = (0..avi.len())
            .map(|i| avi.decode(i).expect("decodes").get_pixel(16, 12)[0])
            .collect();
        let near = |got: u8, want: u8| got.abs_diff(want) <= 8;
        assert!(near(shades[0], 10), "{shades:?}");
        assert!(near(shades[1], 200), "{shades:?}");
        assert_eq!(shades[2], shades[1], "a dropped frame repeats the last one");
        assert!(near(shades[3], 120), "{shades:?}");
        assert!(avi.jpeg(4).is_none());
    }

    #[test]
    fn a_cut_off_or_foreign_file_is_refused_with_the_reason() {
        let mut cut = synthetic_avi();
        cut.truncate(cut.len() - 40);
        // The RIFF chunk itself now overruns the file.
        assert!(matches!(
            Avi::parse(cut),
            Err(AviError::Truncated { ref id, at: 0 }) if id == "RIFF"
        ));
        assert!(matches!(
            Avi::parse(b"RIFF\x04\x00\x00\x00WAVE".to_vec()),
            Err(AviError::NotAvi)
        ));
        let mut body = b"AVI ".to_vec();
        body.extend(list(b"LIST", b"movi", &[]));
        assert!(matches!(
            Avi::parse(chunk(b"RIFF", &body)),
            Err(AviError::NoVideo)
        ));
    }
}
