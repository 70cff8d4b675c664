//! Passages on recorded video: `anpr-edge eval --clips DIR`.
//!
//! Reads `DIR/clips.csv` (columns `file,category,plate_texts,...`, plates
//! separated by `;`), plays each labelled MJPG AVI clip frame by frame, at the
//! file's own frame interval, through detection, reading and the real
//! [`Tracker`], and compares the passages that come out with the clip's
//! plates: a clip is right when it gives exactly as many passages as it has
//! plates and each plate is read exactly by one of them. Clips without plate
//! texts are skipped. Nothing is written.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anpr_edge::capture::avi::{Avi, AviError};
use anpr_edge::clock::SyncState;
use anpr_edge::clock::Timestamp;
use anpr_edge::detect::PlateDetector;
use anpr_edge::message::Direction;
use anpr_edge::read::PlateReader;
use anpr_edge::track::Tracker;

use super::{assign_passages, run_rgb, EvalError, EvalSettings, CLIP_FPS};

/// A labelled clip of `clips.csv`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClipRow {
    /// 1-based line in the CSV.
    pub line: usize,
    /// Relative to the CSV's folder.
    pub file: String,
    /// The plates in view, in the CSV's order.
    pub plates: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("{path}:{line}: {message}")]
    Csv {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Avi { path: PathBuf, source: AviError },
    #[error(transparent)]
    Eval(#[from] EvalError),
}

/// The labelled clips of a `clips.csv`; rows without plate texts are left out.
pub fn parse_clips_csv(path: &Path, text: &str) -> Result<Vec<ClipRow>, ClipError> {
    let err = |line: usize, message: String| ClipError::Csv {
        path: path.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    let header: Vec<&str> = lines
        .next()
        .map(|(_, h)| h.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| err(1, format!("header has no `{name}` column")))
    };
    let (file_col, plates_col) = (col("file")?, col("plate_texts")?);
    let mut rows = Vec::new();
    for (i, line) in lines {
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            return Err(err(
                i + 1,
                format!("{} fields, the header has {}", fields.len(), header.len()),
            ));
        }
        let plates: Vec<String> = fields[plates_col]
            .split(';')
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = plates.iter().find(|p| {
            !p.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        }) {
            return Err(err(i + 1, format!("plate_texts: {bad:?} is not A-Z0-9")));
        }
        if plates.is_empty() {
            continue;
        }
        rows.push(ClipRow {
            line: i + 1,
            file: fields[file_col].to_string(),
            plates,
        });
    }
    Ok(rows)
}

/// What the tracker made of one clip.
#[derive(Clone, Debug)]
pub struct ClipOutcome {
    pub file: String,
    pub plates: Vec<String>,
    /// Text, confidence and direction of each passage, in the order they
    /// came out.
    pub passages: Vec<(String, f32, Direction)>,
    pub frames: usize,
}

impl ClipOutcome {
    /// As many passages as plates.
    pub fn count_right(&self) -> bool {
        self.passages.len() == self.plates.len()
    }

    /// Plates read exactly by the passage matched to them.
    pub fn plates_read_right(&self) -> usize {
        let texts: Vec<String> = self.passages.iter().map(|p| p.0.clone()).collect();
        assign_passages(&self.plates, &texts)
            .iter()
            .zip(&self.plates)
            .filter(|(a, truth)| a.is_some_and(|i| &texts[i] == *truth))
            .count()
    }

    /// As many passages as plates, each plate read exactly.
    pub fn right(&self) -> bool {
        self.count_right() && self.plates_read_right() == self.plates.len()
    }
}

/// The outcome of every labelled clip.
#[derive(Clone, Debug, Default)]
pub struct ClipReport {
    pub clips: Vec<ClipOutcome>,
}

impl ClipReport {
    pub fn count_right(&self) -> usize {
        self.clips.iter().filter(|c| c.count_right()).count()
    }
    pub fn right(&self) -> usize {
        self.clips.iter().filter(|c| c.right()).count()
    }
    pub fn plates(&self) -> usize {
        self.clips.iter().map(|c| c.plates.len()).sum()
    }
    pub fn plates_read_right(&self) -> usize {
        self.clips.iter().map(ClipOutcome::plates_read_right).sum()
    }
    pub fn passages(&self) -> usize {
        self.clips.iter().map(|c| c.passages.len()).sum()
    }
}

impl fmt::Display for ClipReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<22} {:<16} {:<34} {:>6} {:>6}",
            "clip", "plates", "passages (confidence)", "count", "text"
        )?;
        for c in &self.clips {
            let name = c.file.rsplit('/').next().unwrap_or(&c.file);
            let passages: Vec<String> = c
                .passages
                .iter()
                .map(|(t, conf, _)| format!("{t} ({conf:.2})"))
                .collect();
            let mark = |ok: bool| if ok { "ok" } else { "WRONG" };
            writeln!(
                f,
                "{:<22} {:<16} {:<34} {:>6} {:>6}",
                name,
                c.plates.join(";"),
                if passages.is_empty() {
                    "-".to_string()
                } else {
                    passages.join(" ")
                },
                mark(c.count_right()),
                mark(c.right()),
            )?;
        }
        let n = self.clips.len();
        writeln!(
            f,
            "\nclips: {n}; passages == plates: {} of {n}; right (count and every text): {} of {n}",
            self.count_right(),
            self.right()
        )?;
        writeln!(
            f,
            "plates: {}, read exactly by a passage: {}; passages: {}",
            self.plates(),
            self.plates_read_right(),
            self.passages()
        )
    }
}

/// Frame `n` at `n` times the clip's frame interval, on a fixed, synchronised
/// wall clock (the tracker needs times, not the real ones).
pub(crate) fn frame_instant(n: usize, interval: Duration) -> Timestamp {
    let mono = interval * n as u32;
    Timestamp {
        mono,
        wall: chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
            + chrono::Duration::from_std(mono).unwrap_or_default(),
        sync: SyncState {
            synchronised: true,
            max_error_us: 0,
        },
    }
}

/// Plays every labelled clip of `dir/clips.csv` through detection, reading
/// and a fresh [`Tracker`] per clip. `progress` is told (clip, clips done,
/// clips).
pub fn evaluate_clips(
    dir: &Path,
    detector: &mut dyn PlateDetector,
    reader: &mut dyn PlateReader,
    settings: &EvalSettings,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<ClipReport, ClipError> {
    let csv = dir.join("clips.csv");
    let text = std::fs::read_to_string(&csv).map_err(|source| EvalError::Io {
        path: csv.clone(),
        source,
    })?;
    let rows = parse_clips_csv(&csv, &text)?;
    let mut report = ClipReport::default();
    for (done, row) in rows.iter().enumerate() {
        progress(&row.file, done, rows.len());
        let path = dir.join(&row.file);
        let avi = Avi::open(&path).map_err(|source| ClipError::Avi {
            path: path.clone(),
            source,
        })?;
        let interval = avi
            .frame_interval
            .unwrap_or(Duration::from_secs_f64(1.0 / CLIP_FPS));
        let camera: Arc<str> = row.file.as_str().into();
        let mut tracker = Tracker::new(&settings.track).with_sure_confidence(settings.threshold);
        let mut passages = Vec::new();
        for n in 0..avi.len() {
            let image = avi.decode(n).map_err(|source| ClipError::Avi {
                path: path.clone(),
                source,
            })?;
            let run = run_rgb(image, &path, detector, reader, &settings.read)?;
            let frame = run.into_read_frame(camera.clone(), n as u64, frame_instant(n, interval));
            passages.extend(tracker.push(&frame));
        }
        passages.extend(tracker.flush());
        report.clips.push(ClipOutcome {
            file: row.file.clone(),
            plates: row.plates.clone(),
            passages: passages
                .iter()
                .map(|p| (p.plate.text.clone(), p.plate.confidence, p.direction))
                .collect(),
            frames: avi.len(),
        });
    }
    progress("", rows.len(), rows.len());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_csv_gives_labelled_clips_and_names_bad_lines() {
        let text = "file,category,plate_texts,countries,frames\n\
                    clips/a.avi,1,XSNB23,NL,36\n\
                    clips/z.mp4,1,,,37\n\
                    \n\
                    clips/b.avi,3,62PBVT;28RBN4,NL;NL,36\n";
        let rows = parse_clips_csv(Path::new("c.csv"), text).expect("parses");
        assert_eq!(
            rows,
            [
                ClipRow {
                    line: 2,
                    file: "clips/a.avi".into(),
                    plates: vec!["XSNB23".into()]
                },
                ClipRow {
                    line: 5,
                    file: "clips/b.avi".into(),
                    plates: vec!["62PBVT".into(), "28RBN4".into()]
                },
            ]
        );
        let e = parse_clips_csv(Path::new("c.csv"), "file,plate_texts\na.avi,xs-nb\n")
            .expect_err("lower case");
        assert!(e.to_string().starts_with("c.csv:2: plate_texts"), "{e}");
        let e = parse_clips_csv(Path::new("c.csv"), "file,plates\n").expect_err("header");
        assert!(e.to_string().contains("plate_texts"), "{e}");
        let e = parse_clips_csv(Path::new("c.csv"), "file,plate_texts\na.avi\n")
            .expect_err("short row");
        assert!(e.to_string().starts_with("c.csv:2:"), "{e}");
    }

    #[test]
    fn a_clip_is_right_only_with_one_exact_passage_per_plate() {
        let clip = |plates: &[&str], passages: &[&str]| ClipOutcome {
            file: "a.avi".into(),
            plates: plates.iter().map(|p| p.to_string()).collect(),
            passages: passages
                .iter()
                .map(|p| (p.to_string(), 0.9, Direction::Unknown))
                .collect(),
            frames: 36,
        };
        let ok = clip(&["62PBVT", "28RBN4"], &["28RBN4", "62PBVT"]);
        assert!(ok.right());
        let split = clip(&["XSNB23"], &["XSNB23", "XSNB23"]);
        assert!(!split.count_right() && !split.right());
        assert_eq!(split.plates_read_right(), 1);
        let misread = clip(&["62PBVT", "28RBN4"], &["62PBV", "28RBN4"]);
        assert!(misread.count_right() && !misread.right());
        assert_eq!(misread.plates_read_right(), 1);
        let none = clip(&["XSNB23"], &[]);
        assert_eq!((none.count_right(), none.plates_read_right()), (false, 0));
        let report = ClipReport {
            clips: vec![ok, split, misread, none],
        };
        assert_eq!((report.count_right(), report.right()), (2, 1));
        assert_eq!(
            (
                report.plates(),
                report.plates_read_right(),
                report.passages()
            ),
            (6, 4, 6)
        );
        let shown = report.to_string();
        assert!(shown.contains("passages == plates: 2 of 4; right (count and every text): 1 of 4"));
    }
}
