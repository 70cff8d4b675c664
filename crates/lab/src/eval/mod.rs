//! Measuring accuracy on labelled images: `anpr-edge eval`.
//!
//! Reads every `DIR/<source>/manifest.csv` (columns
//! `file,plate_text,x1,y1,x2,y2,country`, one row per plate, `file` relative to
//! the source folder), runs a [`PlateDetector`] and a [`PlateReader`] on each
//! image and scores what the pipeline would emit:
//!
//! * a single image is scored by its *reported* read: the acceptable read (as
//!   [`anpr_edge::read::acceptable`] decides) with the highest confidence; with
//!   several labelled plates, reads are matched to labelled boxes by IoU, and
//!   to box-less plates by the closest text;
//! * frames of one video clip (`<clip>_f<n>.<ext>`) go in frame order, `n`/12 s
//!   apart, through the real [`Tracker`], and each labelled plate of the clip
//!   is one sample, scored by the passage matched to it by text.
//!
//! Detection recall is counted per labelled box (also per clip frame): a
//! detection with IoU >= [`DETECT_IOU`] finds it. Everything is kept per
//! source and per country; [`Report`] prints the tables and [`Report::write_csv`]
//! the per-image rows. Nothing here loads models; the caller hands them in.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use image::RgbImage;

use anpr_edge::clock::Timestamp;
use anpr_edge::config::{Config, DetectConfig, ReadConfig, RuntimeConfig, TrackConfig};
use anpr_edge::detect::{DetectError, PlateDetector};
use anpr_edge::message::{BoxF, Detection, Frame, PlateRead, ReadFrame};
use anpr_edge::read::{self, PlateReader, PlateText, ReadError};
use anpr_edge::track::Tracker;

pub mod clips;

/// A detection finds a labelled box when their IoU is at least this.
pub const DETECT_IOU: f32 = 0.5;
/// A read is matched to a labelled box (in images with several plates) only
/// when their IoU is at least this.
pub const MATCH_IOU: f32 = 0.3;
/// Frame rate assumed for clip frames (the TU Delft clips are 12 fps).
pub const CLIP_FPS: f64 = 12.0;
/// Acceptance threshold when no config is given.
pub const DEFAULT_THRESHOLD: f32 = 0.8;
/// Thresholds of the printed curve.
pub const CURVE_THRESHOLDS: [f32; 11] =
    [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99];

const MANIFEST_HEADER: &str = "file,plate_text,x1,y1,x2,y2,country";

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Manifest {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("no source folder with a manifest.csv under {0}")]
    NoSources(PathBuf),
    #[error("no source named {name} under {dir}")]
    UnknownSource { name: String, dir: PathBuf },
    #[error("cannot decode image {path}: {source}")]
    Image {
        path: PathBuf,
        source: image::ImageError,
    },
    #[error("{path}: detection failed: {source}")]
    Detect { path: PathBuf, source: DetectError },
    #[error("{path}: reading failed: {source}")]
    Read { path: PathBuf, source: ReadError },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write crop {path}: {source}")]
    Crop {
        path: PathBuf,
        source: image::ImageError,
    },
}

/// One manifest row: one labelled plate.
#[derive(Clone, Debug, PartialEq)]
pub struct ManifestRow {
    /// 1-based line in the manifest.
    pub line: usize,
    /// Relative to the source folder.
    pub file: String,
    /// `None` when unknown or masked.
    pub text: Option<String>,
    /// `None` when the source gives no box.
    pub bbox: Option<BoxF>,
    /// ISO-3166 alpha-2, `XX` for novelty plates, empty when unknown.
    pub country: String,
}

/// Parses a manifest's text; `path` only names it in errors.
pub fn parse_manifest(path: &Path, text: &str) -> Result<Vec<ManifestRow>, EvalError> {
    let bad = |line: usize, message: String| EvalError::Manifest {
        path: path.to_owned(),
        line,
        message,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, h)) if h.trim_start_matches('\u{feff}').trim() == MANIFEST_HEADER => {}
        Some((_, h)) => {
            return Err(bad(
                1,
                format!("header is {h:?}, expected {MANIFEST_HEADER:?}"),
            ))
        }
        None => return Err(bad(1, "empty manifest, expected a header".into())),
    }
    let mut rows = Vec::new();
    for (i, raw) in lines {
        let line = i + 1;
        let raw = raw.trim_end_matches('\r');
        if raw.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = raw.split(',').map(str::trim).collect();
        if f.len() != 7 {
            return Err(bad(line, format!("{} fields, expected 7", f.len())));
        }
        if f[0].is_empty() {
            return Err(bad(line, "empty file name".into()));
        }
        let text = match f[1] {
            "" => None,
            t if t
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) =>
            {
                Some(t.to_string())
            }
            t => {
                return Err(bad(
                    line,
                    format!("plate_text {t:?} is not upper-case A-Z and 0-9 only"),
                ))
            }
        };
        let coords = &f[2..6];
        let bbox = if coords.iter().all(|c| c.is_empty()) {
            None
        } else {
            let mut v = [0f32; 4];
            for (k, c) in coords.iter().enumerate() {
                v[k] = c
                    .parse::<f32>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| {
                        bad(
                            line,
                            format!(
                                "{} is {c:?}, expected a number (or all four box fields empty)",
                                ["x1", "y1", "x2", "y2"][k]
                            ),
                        )
                    })?;
            }
            if v[2] <= v[0] || v[3] <= v[1] {
                return Err(bad(line, format!("box {v:?} has no area")));
            }
            Some(BoxF {
                x1: v[0],
                y1: v[1],
                x2: v[2],
                y2: v[3],
            })
        };
        rows.push(ManifestRow {
            line,
            file: f[0].to_string(),
            text,
            bbox,
            country: f[6].to_string(),
        });
    }
    Ok(rows)
}

/// A labelled image: its rows, in manifest order.
#[derive(Clone, Debug)]
pub struct LabelledImage {
    pub file: String,
    pub plates: Vec<ManifestRow>,
}

/// One source folder.
#[derive(Clone, Debug)]
pub struct Source {
    pub name: String,
    pub dir: PathBuf,
    pub images: Vec<LabelledImage>,
}

/// Groups rows by file, in order of first appearance.
pub fn group_images(rows: Vec<ManifestRow>) -> Vec<LabelledImage> {
    let mut out: Vec<LabelledImage> = Vec::new();
    let mut index: BTreeMap<String, usize> = BTreeMap::new();
    for r in rows {
        match index.get(&r.file) {
            Some(&i) => out[i].plates.push(r),
            None => {
                index.insert(r.file.clone(), out.len());
                out.push(LabelledImage {
                    file: r.file.clone(),
                    plates: vec![r],
                });
            }
        }
    }
    out
}

/// Loads `dir/*/manifest.csv`, sorted by source name; `only` keeps just the
/// named sources (all when empty).
pub fn load_sources(dir: &Path, only: &[String]) -> Result<Vec<Source>, EvalError> {
    let io = |source| EvalError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let manifest = entry.path().join("manifest.csv");
        if !manifest.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let text = std::fs::read_to_string(&manifest).map_err(|source| EvalError::Io {
            path: manifest.clone(),
            source,
        })?;
        let rows = parse_manifest(&manifest, &text)?;
        out.push(Source {
            name,
            dir: entry.path(),
            images: group_images(rows),
        });
    }
    for name in only {
        if !out.iter().any(|s| &s.name == name) {
            return Err(EvalError::UnknownSource {
                name: name.clone(),
                dir: dir.to_owned(),
            });
        }
    }
    if out.is_empty() {
        return Err(EvalError::NoSources(dir.to_owned()));
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The clip and frame number of a clip frame's file name `<clip>_f<n>.<ext>`
/// (folders kept in the clip name), or `None` for a still image.
pub fn clip_frame(file: &str) -> Option<(String, u32)> {
    let stem = match file.rfind('.') {
        Some(dot) if !file[dot..].contains('/') => &file[..dot],
        _ => file,
    };
    let at = stem.rfind("_f")?;
    let (clip, n) = (&stem[..at], &stem[at + 2..]);
    if clip.is_empty() || clip.ends_with('/') || n.is_empty() {
        return None;
    }
    if !n.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((clip.to_string(), n.parse().ok()?))
}

/// Edit distance between two strings, in characters.
pub fn levenshtein(a: &str, b: &str) -> usize {
    strsim::levenshtein(a, b)
}

/// Character error rate of one read: edit distance over the truth's length
/// (no read counts as the empty string, so 1.0).
pub fn cer(truth: &str, read: &str) -> f64 {
    let n = truth.chars().count().max(1);
    levenshtein(truth, read) as f64 / n as f64
}

/// Greedy one-to-one matching: pairs `(score, a, b)` are taken best first
/// (higher is better); returns for each `a` the `b` it got.
fn greedy(mut pairs: Vec<(f32, usize, usize)>, n_a: usize, n_b: usize) -> Vec<Option<usize>> {
    pairs.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
    let mut out = vec![None; n_a];
    let mut taken = vec![false; n_b];
    for (_, a, b) in pairs {
        if out[a].is_none() && !taken[b] {
            out[a] = Some(b);
            taken[b] = true;
        }
    }
    out
}

/// What one read candidate is, for matching: its box, text and confidence.
#[derive(Clone, Debug, PartialEq)]
pub struct Candidate {
    pub bbox: BoxF,
    pub text: String,
    pub confidence: f32,
}

/// The truth a read is matched against.
#[derive(Clone, Debug, PartialEq)]
pub struct TruthPlate {
    pub text: Option<String>,
    pub bbox: Option<BoxF>,
}

/// Which acceptable read the pipeline reports for each labelled plate of an
/// image. One plate: the most confident read. Several: reads go to labelled
/// boxes by IoU (>= [`MATCH_IOU`]), then the rest to box-less plates by the
/// closest text.
pub fn assign_reads(truths: &[TruthPlate], reads: &[Candidate]) -> Vec<Option<usize>> {
    if truths.len() == 1 {
        let best = reads.iter().enumerate().max_by(|a, b| {
            a.1.confidence
                .total_cmp(&b.1.confidence)
                .then(b.0.cmp(&a.0))
        });
        return vec![best.map(|(i, _)| i)];
    }
    let mut pairs = Vec::new();
    for (ti, t) in truths.iter().enumerate() {
        if let Some(tb) = &t.bbox {
            for (ri, r) in reads.iter().enumerate() {
                let iou = tb.iou(&r.bbox);
                if iou >= MATCH_IOU {
                    pairs.push((iou, ti, ri));
                }
            }
        }
    }
    let mut out = greedy(pairs, truths.len(), reads.len());
    let used: BTreeSet<usize> = out.iter().flatten().copied().collect();
    let mut pairs = Vec::new();
    for (ti, t) in truths.iter().enumerate() {
        let (None, Some(text)) = (&t.bbox, &t.text) else {
            continue;
        };
        for (ri, r) in reads.iter().enumerate() {
            if !used.contains(&ri) {
                pairs.push((-(levenshtein(text, &r.text) as f32), ti, ri));
            }
        }
    }
    let by_text = greedy(pairs, truths.len(), reads.len());
    for (o, t) in out.iter_mut().zip(by_text) {
        if o.is_none() {
            *o = t;
        }
    }
    out
}

/// Matches a clip's passages to its labelled texts by the closest text;
/// returns for each text the passage index it got.
pub fn assign_passages(truths: &[String], passages: &[String]) -> Vec<Option<usize>> {
    let mut pairs = Vec::new();
    for (ti, t) in truths.iter().enumerate() {
        for (pi, p) in passages.iter().enumerate() {
            pairs.push((-(levenshtein(t, p) as f32), ti, pi));
        }
    }
    greedy(pairs, truths.len(), passages.len())
}

/// One scored plate sample (one labelled plate of a still image, or one
/// labelled plate of a clip).
#[derive(Clone, Debug, PartialEq)]
pub struct PlateOutcome {
    pub source: String,
    pub country: String,
    pub truth: String,
    /// What the pipeline reports for this plate, if anything.
    pub read: Option<String>,
    /// The reported read's (or passage's) confidence; 0 without one.
    pub confidence: f32,
    /// The plate was found (detected, or read), whether or not accepted.
    pub found: bool,
    /// Counted from a clip's passage rather than a single image.
    pub clip: bool,
}

impl PlateOutcome {
    pub fn correct(&self) -> bool {
        self.read.as_deref() == Some(self.truth.as_str())
    }
    pub fn accepted(&self, threshold: f32) -> bool {
        self.read.is_some() && self.confidence >= threshold
    }
}

/// Whether one labelled box was detected.
#[derive(Clone, Debug, PartialEq)]
pub struct DetectionOutcome {
    pub source: String,
    pub country: String,
    pub detected: bool,
}

/// One image: a CSV row, and its time.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageOutcome {
    pub source: String,
    pub file: String,
    /// Countries of its plates, distinct, in row order.
    pub countries: Vec<String>,
    /// Labelled texts, `|`-joined for several plates (`?` for unknown).
    pub truth: String,
    /// Reported reads in the same order (`-` for none).
    pub read: String,
    /// Lowest confidence of the reported reads (0 without any).
    pub confidence: f32,
    /// Every text-known plate of the image was read right (per frame for clips).
    pub correct: bool,
    pub detections: usize,
    pub detect_ms: f64,
    /// Detection, rectification and reading together.
    pub total_ms: f64,
}

/// Everything measured; [`Report::from_outcomes`] summarises it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcomes {
    pub plates: Vec<PlateOutcome>,
    pub detections: Vec<DetectionOutcome>,
    pub images: Vec<ImageOutcome>,
    /// Passages of clips that matched no labelled plate.
    pub extra_passages: usize,
}

/// The figures of one group (a source, a country, or everything).
#[derive(Clone, Debug, PartialEq)]
pub struct GroupStats {
    pub name: String,
    pub images: usize,
    /// Labelled boxes, and how many were detected.
    pub boxes: usize,
    pub boxes_detected: usize,
    /// Text-known plate samples (a clip's plate counts once).
    pub samples: usize,
    pub correct: usize,
    /// Sum of edit distances and of truth lengths (CER = their ratio).
    pub edit_distance: usize,
    pub truth_chars: usize,
    /// Reads at or above the threshold, and of those the wrong ones.
    pub accepted: usize,
    pub confident_wrong: usize,
    /// Found but below the threshold (or not readable at all).
    pub rejected: usize,
    pub median_ms: f64,
    pub p95_ms: f64,
}

fn ratio(a: usize, b: usize) -> Option<f64> {
    (b > 0).then(|| a as f64 / b as f64)
}

impl GroupStats {
    pub fn recall(&self) -> Option<f64> {
        ratio(self.boxes_detected, self.boxes)
    }
    pub fn accuracy(&self) -> Option<f64> {
        ratio(self.correct, self.samples)
    }
    pub fn cer(&self) -> Option<f64> {
        ratio(self.edit_distance, self.truth_chars)
    }
    pub fn accepted_rate(&self) -> Option<f64> {
        ratio(self.accepted, self.samples)
    }
    pub fn confident_wrong_rate(&self) -> Option<f64> {
        ratio(self.confident_wrong, self.samples)
    }
    pub fn rejected_rate(&self) -> Option<f64> {
        ratio(self.rejected, self.samples)
    }
}

/// The nearest-rank percentile `p` (0..=100) of `v`; 0 for none.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Summarises the outcomes that `pick` selects.
fn group(
    name: &str,
    o: &Outcomes,
    threshold: f32,
    pick_plate: impl Fn(&str, &str) -> bool,
    pick_image: impl Fn(&ImageOutcome) -> bool,
) -> GroupStats {
    let plates: Vec<&PlateOutcome> = o
        .plates
        .iter()
        .filter(|p| pick_plate(&p.source, &p.country))
        .collect();
    let dets: Vec<&DetectionOutcome> = o
        .detections
        .iter()
        .filter(|d| pick_plate(&d.source, &d.country))
        .collect();
    let times: Vec<f64> = o
        .images
        .iter()
        .filter(|i| pick_image(i))
        .map(|i| i.total_ms)
        .collect();
    GroupStats {
        name: name.to_string(),
        images: times.len(),
        boxes: dets.len(),
        boxes_detected: dets.iter().filter(|d| d.detected).count(),
        samples: plates.len(),
        correct: plates.iter().filter(|p| p.correct()).count(),
        edit_distance: plates
            .iter()
            .map(|p| levenshtein(&p.truth, p.read.as_deref().unwrap_or("")))
            .sum(),
        truth_chars: plates.iter().map(|p| p.truth.chars().count()).sum(),
        accepted: plates.iter().filter(|p| p.accepted(threshold)).count(),
        confident_wrong: plates
            .iter()
            .filter(|p| p.accepted(threshold) && !p.correct())
            .count(),
        rejected: plates
            .iter()
            .filter(|p| p.found && !p.accepted(threshold))
            .count(),
        median_ms: percentile(&times, 50.0),
        p95_ms: percentile(&times, 95.0),
    }
}

/// One point of the threshold curve (over all text-known samples).
#[derive(Clone, Debug, PartialEq)]
pub struct CurvePoint {
    pub threshold: f32,
    pub accepted_rate: f64,
    pub confident_wrong_rate: f64,
}

/// The summary that `eval` prints.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub threshold: f32,
    pub by_source: Vec<GroupStats>,
    /// NL first, then alphabetical; `??` for unknown.
    pub by_country: Vec<GroupStats>,
    pub overall: GroupStats,
    pub curve: Vec<CurvePoint>,
    /// The same curve on NL samples only, and how many there are.
    pub curve_nl: Vec<CurvePoint>,
    pub curve_nl_samples: usize,
    pub outcomes: Outcomes,
}

fn country_key(c: &str) -> String {
    if c.is_empty() {
        "??".into()
    } else {
        c.to_string()
    }
}

fn curve(plates: &[&PlateOutcome]) -> Vec<CurvePoint> {
    let n = plates.len();
    CURVE_THRESHOLDS
        .iter()
        .map(|&t| CurvePoint {
            threshold: t,
            accepted_rate: ratio(plates.iter().filter(|p| p.accepted(t)).count(), n).unwrap_or(0.0),
            confident_wrong_rate: ratio(
                plates
                    .iter()
                    .filter(|p| p.accepted(t) && !p.correct())
                    .count(),
                n,
            )
            .unwrap_or(0.0),
        })
        .collect()
}

impl Report {
    pub fn from_outcomes(outcomes: Outcomes, threshold: f32) -> Report {
        let o = &outcomes;
        let sources: BTreeSet<&str> = o.images.iter().map(|i| i.source.as_str()).collect();
        let by_source = sources
            .iter()
            .map(|s| group(s, o, threshold, |ps, _| ps == *s, |i| i.source == *s))
            .collect();
        let mut countries: Vec<String> = o
            .images
            .iter()
            .flat_map(|i| i.countries.iter().map(|c| country_key(c)))
            .chain(o.plates.iter().map(|p| country_key(&p.country)))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        countries.sort_by_key(|c| (c != "NL", c.clone()));
        let by_country = countries
            .iter()
            .map(|c| {
                group(
                    c,
                    o,
                    threshold,
                    |_, pc| country_key(pc) == *c,
                    |i| i.countries.iter().any(|ic| country_key(ic) == *c),
                )
            })
            .collect();
        let overall = group("all", o, threshold, |_, _| true, |_| true);
        let all: Vec<&PlateOutcome> = o.plates.iter().collect();
        let nl: Vec<&PlateOutcome> = o.plates.iter().filter(|p| p.country == "NL").collect();
        Report {
            threshold,
            by_source,
            by_country,
            overall,
            curve: curve(&all),
            curve_nl: curve(&nl),
            curve_nl_samples: nl.len(),
            outcomes,
        }
    }

    /// Writes one row per image.
    pub fn write_csv(&self, path: &Path) -> Result<(), EvalError> {
        let mut s = String::from(
            "source,file,country,truth,read,confidence,correct,detections,detect_ms,total_ms\n",
        );
        for i in &self.outcomes.images {
            let row = [
                csv_field(&i.source),
                csv_field(&i.file),
                csv_field(&i.countries.join("|")),
                csv_field(&i.truth),
                csv_field(&i.read),
                format!("{:.3}", i.confidence),
                i.correct.to_string(),
                i.detections.to_string(),
                format!("{:.1}", i.detect_ms),
                format!("{:.1}", i.total_ms),
            ];
            s.push_str(&row.join(","));
            s.push('\n');
        }
        std::fs::write(path, s).map_err(|source| EvalError::Write {
            path: path.to_owned(),
            source,
        })
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{:.1}%", x * 100.0))
        .unwrap_or_else(|| "-".into())
}

fn write_table(f: &mut fmt::Formatter<'_>, title: &str, rows: &[&GroupStats]) -> fmt::Result {
    let w = rows
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(4)
        .max(title.len());
    writeln!(
        f,
        "{title:<w$}  {:>6}  {:>9} {:>7}  {:>7} {:>7} {:>6}  {:>8} {:>10} {:>8}  {:>7} {:>7}",
        "images",
        "boxes",
        "recall",
        "plates",
        "exact",
        "CER",
        "accepted",
        "conf-wrong",
        "rejected",
        "med ms",
        "p95 ms",
    )?;
    for r in rows {
        writeln!(
            f,
            "{:<w$}  {:>6}  {:>9} {:>7}  {:>7} {:>7} {:>6}  {:>8} {:>10} {:>8}  {:>7.0} {:>7.0}",
            r.name,
            r.images,
            format!("{}/{}", r.boxes_detected, r.boxes),
            pct(r.recall()),
            r.samples,
            pct(r.accuracy()),
            r.cer()
                .map(|c| format!("{c:.3}"))
                .unwrap_or_else(|| "-".into()),
            pct(r.accepted_rate()),
            pct(r.confident_wrong_rate()),
            pct(r.rejected_rate()),
            r.median_ms,
            r.p95_ms,
        )?;
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.threshold;
        writeln!(
            f,
            "boxes: labelled boxes detected (IoU >= {DETECT_IOU}); plates: text-known samples \
             (a clip's plate counts once, scored by its passage); exact, CER, accepted, \
             conf-wrong (accepted and wrong) and rejected (found, below {t:.2}) are per sample; \
             times per image."
        )?;
        writeln!(f)?;
        let mut rows: Vec<&GroupStats> = self.by_source.iter().collect();
        rows.push(&self.overall);
        write_table(f, "source", &rows)?;
        writeln!(f)?;
        let mut rows: Vec<&GroupStats> = self.by_country.iter().collect();
        rows.push(&self.overall);
        write_table(f, "country", &rows)?;
        if self.outcomes.extra_passages > 0 {
            writeln!(
                f,
                "\n{} clip passage(s) matched no labelled plate.",
                self.outcomes.extra_passages
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "threshold curve: accepted rate / confident-wrong rate (all {} samples; NL {})",
            self.overall.samples, self.curve_nl_samples
        )?;
        writeln!(f, "{:>9}  {:>17}  {:>17}", "threshold", "all", "NL")?;
        for (a, n) in self.curve.iter().zip(&self.curve_nl) {
            writeln!(
                f,
                "{:>9.2}  {:>8} {:>8}  {:>8} {:>8}",
                a.threshold,
                pct(Some(a.accepted_rate)),
                pct(Some(a.confident_wrong_rate)),
                pct(Some(n.accepted_rate)),
                pct(Some(n.confident_wrong_rate)),
            )?;
        }
        Ok(())
    }
}

/// What `eval` runs with.
#[derive(Clone, Debug)]
pub struct EvalSettings {
    pub runtime: RuntimeConfig,
    pub detect: DetectConfig,
    pub read: ReadConfig,
    pub track: TrackConfig,
    /// Acceptance threshold (the policy's `min_confidence`).
    pub threshold: f32,
}

impl Default for EvalSettings {
    fn default() -> Self {
        EvalSettings {
            runtime: RuntimeConfig::default(),
            detect: DetectConfig::default(),
            read: ReadConfig::default(),
            track: TrackConfig::default(),
            threshold: DEFAULT_THRESHOLD,
        }
    }
}

impl EvalSettings {
    pub fn from_config(cfg: &Config) -> Self {
        EvalSettings {
            runtime: cfg.runtime.clone(),
            detect: cfg.detect.clone(),
            read: cfg.read.clone(),
            track: cfg.track.clone(),
            threshold: cfg.policy.min_confidence,
        }
    }
}

/// What to evaluate and where to put the crops that went wrong.
#[derive(Clone, Debug, Default)]
pub struct EvalOptions {
    /// Only these sources (all when empty).
    pub sources: Vec<String>,
    /// Write wrongly read crops here as PNG.
    pub failures: Option<PathBuf>,
}

/// What the pipeline made of one image.
pub(crate) struct ImageRun {
    image: Arc<RgbImage>,
    detections: Vec<Detection>,
    /// Acceptable reads, with their crops.
    reads: Vec<(Detection, PlateText, RgbImage)>,
    /// Crops of detections whose reads were not acceptable, by detection.
    rejected: Vec<(Detection, PlateText, RgbImage)>,
    detect_ms: f64,
    total_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl ImageRun {
    /// The frame the read stage would have passed to the tracker: the
    /// acceptable reads only, as the pipeline gives them on.
    pub(crate) fn into_read_frame(
        self,
        camera: Arc<str>,
        seq: u64,
        captured: Timestamp,
    ) -> ReadFrame {
        ReadFrame {
            frame: Frame {
                camera,
                seq,
                captured,
                image: self.image,
            },
            reads: self
                .reads
                .into_iter()
                .map(|(detection, plate, crop)| PlateRead {
                    detection,
                    plate,
                    crop: Arc::new(crop),
                })
                .collect(),
        }
    }
}

fn run_image(
    path: &Path,
    detector: &mut dyn PlateDetector,
    reader: &mut dyn PlateReader,
    cfg: &ReadConfig,
) -> Result<ImageRun, EvalError> {
    let image = image::open(path)
        .map_err(|source| EvalError::Image {
            path: path.to_owned(),
            source,
        })?
        .to_rgb8();
    run_rgb(image, path, detector, reader, cfg)
}

/// Detects and reads one decoded image; `path` names it in errors.
fn run_rgb(
    image: RgbImage,
    path: &Path,
    detector: &mut dyn PlateDetector,
    reader: &mut dyn PlateReader,
    cfg: &ReadConfig,
) -> Result<ImageRun, EvalError> {
    let started = Instant::now();
    let detections = detector
        .detect(&image)
        .map_err(|source| EvalError::Detect {
            path: path.to_owned(),
            source,
        })?;
    let detect_ms = ms(started.elapsed());
    let plates = read::rectify_and_read(reader, &image, detections.clone()).map_err(|source| {
        EvalError::Read {
            path: path.to_owned(),
            source,
        }
    })?;
    let total_ms = ms(started.elapsed());
    let (reads, rejected) = plates
        .into_iter()
        .map(|r| (r.detection, r.plate, r.crop))
        .partition(|(_, t, _)| read::acceptable(t, cfg));
    Ok(ImageRun {
        image: Arc::new(image),
        detections,
        reads,
        rejected,
        detect_ms,
        total_ms,
    })
}

fn candidates(reads: &[(Detection, PlateText, RgbImage)]) -> Vec<Candidate> {
    reads
        .iter()
        .map(|(d, t, _)| Candidate {
            bbox: d.bbox,
            text: t.text.clone(),
            confidence: t.confidence,
        })
        .collect()
}

fn truths(img: &LabelledImage) -> Vec<TruthPlate> {
    img.plates
        .iter()
        .map(|p| TruthPlate {
            text: p.text.clone(),
            bbox: p.bbox,
        })
        .collect()
}

fn safe_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn write_failure(
    dir: &Path,
    truth: &str,
    read: Option<&str>,
    source: &str,
    file: &str,
    crop: &RgbImage,
) -> Result<(), EvalError> {
    let stem = file.rsplit('/').next().unwrap_or(file);
    let stem = stem.rsplit_once('.').map(|(s, _)| s).unwrap_or(stem);
    let name = format!(
        "{}__{}__{}__{}.png",
        safe_name(truth),
        safe_name(read.unwrap_or("NONE")),
        safe_name(source),
        safe_name(stem)
    );
    let path = dir.join(name);
    crop.save_with_format(&path, image::ImageFormat::Png)
        .map_err(|source| EvalError::Crop { path, source })
}

/// Scores one still image (or one clip frame, for its CSV row and detection
/// recall) against its labels.
struct Scored {
    image: ImageOutcome,
    detections: Vec<DetectionOutcome>,
    plates: Vec<PlateOutcome>,
    /// Per plate outcome: the crop that was reported, or the best unaccepted
    /// crop of a found plate.
    crops: Vec<Option<RgbImage>>,
}

fn score_image(source: &str, img: &LabelledImage, run: &ImageRun) -> Scored {
    let tr = truths(img);
    let cands = candidates(&run.reads);
    let assigned = assign_reads(&tr, &cands);
    let mut detections = Vec::new();
    let mut plates = Vec::new();
    let mut crops = Vec::new();
    let (mut truth_s, mut read_s) = (Vec::new(), Vec::new());
    let mut min_conf: Option<f32> = None;
    let mut all_correct = true;
    for ((row, t), a) in img.plates.iter().zip(&tr).zip(&assigned) {
        let detected = t
            .bbox
            .map(|b| run.detections.iter().any(|d| d.bbox.iou(&b) >= DETECT_IOU));
        if let Some(detected) = detected {
            detections.push(DetectionOutcome {
                source: source.to_string(),
                country: row.country.clone(),
                detected,
            });
        }
        let read = a.map(|i| &cands[i]);
        truth_s.push(t.text.clone().unwrap_or_else(|| "?".into()));
        read_s.push(read.map(|r| r.text.clone()).unwrap_or_else(|| "-".into()));
        if let Some(r) = read {
            min_conf = Some(min_conf.map_or(r.confidence, |m: f32| m.min(r.confidence)));
        }
        let Some(text) = &t.text else {
            continue;
        };
        let correct = read.is_some_and(|r| &r.text == text);
        all_correct &= correct;
        let found = read.is_some() || detected.unwrap_or(!run.detections.is_empty());
        plates.push(PlateOutcome {
            source: source.to_string(),
            country: row.country.clone(),
            truth: text.clone(),
            read: read.map(|r| r.text.clone()),
            confidence: read.map_or(0.0, |r| r.confidence),
            found,
            clip: false,
        });
        // The crop to look at when it went wrong: the reported one, else the
        // unaccepted read on this plate's box (or the best one of the image).
        let crop = match a {
            Some(i) => Some(run.reads[*i].2.clone()),
            None => run
                .rejected
                .iter()
                .filter(|(d, _, _)| t.bbox.is_none_or(|b| d.bbox.iou(&b) >= MATCH_IOU))
                .max_by(|x, y| x.1.confidence.total_cmp(&y.1.confidence))
                .map(|(_, _, c)| c.clone()),
        };
        crops.push(crop);
    }
    let mut countries: Vec<String> = Vec::new();
    for p in &img.plates {
        if !countries.contains(&p.country) {
            countries.push(p.country.clone());
        }
    }
    Scored {
        image: ImageOutcome {
            source: source.to_string(),
            file: img.file.clone(),
            countries,
            truth: truth_s.join("|"),
            read: read_s.join("|"),
            confidence: min_conf.unwrap_or(0.0),
            correct: all_correct,
            detections: run.detections.len(),
            detect_ms: run.detect_ms,
            total_ms: run.total_ms,
        },
        detections,
        plates,
        crops,
    }
}

/// Frame `n` of a clip at `n`/[`CLIP_FPS`] seconds.
fn clip_instant(n: u32) -> Timestamp {
    clips::frame_instant(n as usize, Duration::from_secs_f64(1.0 / CLIP_FPS))
}

/// Runs detection and reading on every labelled image of `data` and scores it.
/// `progress` is told (source, images done, images of that source).
pub fn evaluate(
    data: &Path,
    detector: &mut dyn PlateDetector,
    reader: &mut dyn PlateReader,
    settings: &EvalSettings,
    options: &EvalOptions,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Report, EvalError> {
    let sources = load_sources(data, &options.sources)?;
    if let Some(dir) = &options.failures {
        std::fs::create_dir_all(dir).map_err(|source| EvalError::Write {
            path: dir.clone(),
            source,
        })?;
    }
    let mut out = Outcomes::default();
    for src in &sources {
        let total = src.images.len();
        let mut done = 0;
        progress(&src.name, done, total);
        // Still images first, then clips in name order, each in frame order.
        let mut clips: BTreeMap<String, Vec<(u32, &LabelledImage)>> = BTreeMap::new();
        for img in &src.images {
            if let Some((clip, n)) = clip_frame(&img.file) {
                clips.entry(clip).or_default().push((n, img));
                continue;
            }
            let path = src.dir.join(&img.file);
            let run = run_image(&path, detector, reader, &settings.read)?;
            let scored = score_image(&src.name, img, &run);
            if let Some(dir) = &options.failures {
                for (p, crop) in scored.plates.iter().zip(&scored.crops) {
                    if let (false, Some(crop)) = (p.correct(), crop) {
                        write_failure(
                            dir,
                            &p.truth,
                            p.read.as_deref(),
                            &src.name,
                            &img.file,
                            crop,
                        )?;
                    }
                }
            }
            out.images.push(scored.image);
            out.detections.extend(scored.detections);
            out.plates.extend(scored.plates);
            done += 1;
            progress(&src.name, done, total);
        }
        for (clip, mut frames) in clips {
            frames.sort_by_key(|(n, _)| *n);
            let mut tracker = Tracker::new(&settings.track);
            let camera: Arc<str> = clip.as_str().into();
            let mut passages = Vec::new();
            // The clip's labelled plates: distinct known texts, with country.
            let mut labels: Vec<(String, String)> = Vec::new();
            for (n, img) in &frames {
                let path = src.dir.join(&img.file);
                let run = run_image(&path, detector, reader, &settings.read)?;
                let scored = score_image(&src.name, img, &run);
                out.images.push(scored.image);
                out.detections.extend(scored.detections);
                for p in &img.plates {
                    if let Some(t) = &p.text {
                        if !labels.iter().any(|(lt, _)| lt == t) {
                            labels.push((t.clone(), p.country.clone()));
                        }
                    }
                }
                let frame = run.into_read_frame(camera.clone(), u64::from(*n), clip_instant(*n));
                passages.extend(tracker.push(&frame));
                done += 1;
                progress(&src.name, done, total);
            }
            passages.extend(tracker.flush());
            let texts: Vec<String> = labels.iter().map(|(t, _)| t.clone()).collect();
            let ptexts: Vec<String> = passages.iter().map(|p| p.plate.text.clone()).collect();
            let assigned = assign_passages(&texts, &ptexts);
            out.extra_passages += passages
                .len()
                .saturating_sub(assigned.iter().flatten().count());
            for ((truth, country), a) in labels.iter().zip(assigned) {
                let p = a.map(|i| &passages[i]);
                let outcome = PlateOutcome {
                    source: src.name.clone(),
                    country: country.clone(),
                    truth: truth.clone(),
                    read: p.map(|p| p.plate.text.clone()),
                    confidence: p.map_or(0.0, |p| p.plate.confidence),
                    found: p.is_some(),
                    clip: true,
                };
                if let (Some(dir), Some(p), false) = (&options.failures, p, outcome.correct()) {
                    write_failure(
                        dir,
                        truth,
                        Some(&p.plate.text),
                        &src.name,
                        &clip,
                        &p.best.crop,
                    )?;
                }
                out.plates.push(outcome);
            }
        }
    }
    Ok(Report::from_outcomes(out, settings.threshold))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(x1: f32, y1: f32, x2: f32, y2: f32) -> BoxF {
        BoxF { x1, y1, x2, y2 }
    }

    #[test]
    fn manifest_parses_text_boxes_and_blanks() {
        let text = "file,plate_text,x1,y1,x2,y2,country\n\
                    images/a.jpg,AB12CD,10,20,110,45,NL\n\
                    images/a.jpg,,200,20,300,45,\n\
                    images/b.jpg,XY99ZZ,,,,,DE\n";
        let rows = parse_manifest(Path::new("m.csv"), text).expect("parses");
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].text.as_deref(), Some("AB12CD"));
        assert_eq!(rows[0].bbox, Some(b(10.0, 20.0, 110.0, 45.0)));
        assert_eq!((rows[1].text.clone(), rows[1].country.as_str()), (None, ""));
        assert_eq!(rows[2].bbox, None);
        let imgs = group_images(rows);
        assert_eq!(imgs.len(), 2);
        assert_eq!(imgs[0].plates.len(), 2);
    }

    #[test]
    fn bad_manifest_rows_name_file_and_line() {
        let cases = [
            ("file,plate_text,x1,y1,x2,y2,country\nimg.jpg,AB12CD,1,2,3,NL\n", ":2:", "6 fields"),
            ("file,plate_text,x1,y1,x2,y2,country\nimg.jpg,AB12CD,,,,,NL\nimg.jpg,ab-12,,,,,NL\n", ":3:", "plate_text"),
            ("file,plate_text,x1,y1,x2,y2,country\n\nimg.jpg,AB12CD,1,x,3,4,NL\n", ":3:", "y1"),
            ("file,plate_text,x1,y1,x2,y2,country\nimg.jpg,AB12CD,1,2,,4,NL\n", ":2:", "x2"),
            ("file,plate_text,x1,y1,x2,y2,country\nimg.jpg,AB12CD,5,2,3,4,NL\n", ":2:", "no area"),
            ("file,text\nimg.jpg,AB\n", ":1:", "header"),
        ];
        for (text, line, what) in cases {
            let e = parse_manifest(Path::new("/d/src/manifest.csv"), text)
                .expect_err(text)
                .to_string();
            assert!(e.starts_with("/d/src/manifest.csv"), "{e}");
            assert!(e.contains(line) && e.contains(what), "{e}");
        }
    }

    #[test]
    fn clip_frames_are_grouped_by_name() {
        assert_eq!(
            clip_frame("images/Video10_2_f04.jpg"),
            Some(("images/Video10_2".into(), 4))
        );
        assert_eq!(
            clip_frame("images/Video10_2_f35.jpg").map(|c| c.1),
            Some(35)
        );
        assert_eq!(clip_frame("images/00PDR6.jpg"), None);
        assert_eq!(clip_frame("images/cat1_test_01-XJ-ND.png"), None);
        assert_eq!(clip_frame("images/a_fx.jpg"), None);
        assert_eq!(clip_frame("images/_f3.jpg"), None);
        assert_eq!(clip_frame("clip_f12"), Some(("clip".into(), 12)));
    }

    #[test]
    fn levenshtein_and_cer() {
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("ABC", ""), 3);
        assert_eq!(levenshtein("GH066X", "GH066X"), 0);
        assert_eq!(levenshtein("GH066X", "GH06X"), 1);
        assert_eq!(levenshtein("GH066X", "6H066XX"), 2);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert!((cer("AB12CD", "AB12C0") - 1.0 / 6.0).abs() < 1e-9);
        assert_eq!(cer("AB12CD", ""), 1.0);
    }

    fn cand(bbox: BoxF, text: &str, confidence: f32) -> Candidate {
        Candidate {
            bbox,
            text: text.into(),
            confidence,
        }
    }

    #[test]
    fn one_plate_gets_the_most_confident_read_anywhere() {
        let t = [TruthPlate {
            text: Some("AB12CD".into()),
            bbox: Some(b(0.0, 0.0, 100.0, 20.0)),
        }];
        let reads = [
            cand(b(0.0, 0.0, 100.0, 20.0), "AB12CD", 0.7),
            cand(b(500.0, 0.0, 600.0, 20.0), "ZZ99ZZ", 0.9),
        ];
        assert_eq!(assign_reads(&t, &reads), vec![Some(1)]);
        assert_eq!(assign_reads(&t, &[]), vec![None]);
    }

    #[test]
    fn several_plates_match_by_iou_then_by_text() {
        let t = [
            TruthPlate {
                text: Some("LEFT11".into()),
                bbox: Some(b(0.0, 0.0, 100.0, 20.0)),
            },
            TruthPlate {
                text: Some("RIGHT2".into()),
                bbox: Some(b(300.0, 0.0, 400.0, 20.0)),
            },
            TruthPlate {
                text: Some("NOBOX3".into()),
                bbox: None,
            },
            TruthPlate {
                text: None,
                bbox: Some(b(900.0, 0.0, 950.0, 10.0)),
            },
        ];
        let reads = [
            cand(b(305.0, 2.0, 398.0, 21.0), "RIGHT2", 0.9),
            cand(b(600.0, 0.0, 700.0, 20.0), "N0BOX3", 0.6),
            cand(b(10.0, 0.0, 100.0, 20.0), "LEFTI1", 0.8),
            // Overlaps the left box only a little: not that plate's read.
            cand(b(90.0, 0.0, 190.0, 20.0), "XXXXXX", 0.99),
        ];
        assert_eq!(
            assign_reads(&t, &reads),
            vec![Some(2), Some(0), Some(1), None]
        );
    }

    #[test]
    fn passages_match_clip_texts_by_closest_text() {
        let truths = ["AB12CD".to_string(), "XY34ZZ".to_string()];
        let passages = ["XY34Z2".to_string(), "AB12CD".to_string(), "QQ".to_string()];
        assert_eq!(assign_passages(&truths, &passages), vec![Some(1), Some(0)]);
        assert_eq!(assign_passages(&truths, &[]), vec![None, None]);
    }

    fn plate(
        source: &str,
        country: &str,
        truth: &str,
        read: Option<&str>,
        conf: f32,
    ) -> PlateOutcome {
        PlateOutcome {
            source: source.into(),
            country: country.into(),
            truth: truth.into(),
            read: read.map(Into::into),
            confidence: conf,
            found: read.is_some() || conf < 0.0,
            clip: false,
        }
    }

    fn image(source: &str, country: &str, ms: f64) -> ImageOutcome {
        ImageOutcome {
            source: source.into(),
            file: "f".into(),
            countries: vec![country.into()],
            truth: String::new(),
            read: String::new(),
            confidence: 0.0,
            correct: false,
            detections: 0,
            detect_ms: ms / 2.0,
            total_ms: ms,
        }
    }

    #[test]
    fn aggregation_on_hand_made_outcomes() {
        let mut missed = plate("a", "NL", "GH066X", None, 0.0);
        missed.found = true; // detected, but no acceptable read: rejected
        let o = Outcomes {
            plates: vec![
                plate("a", "NL", "AB12CD", Some("AB12CD"), 0.95), // right, accepted
                plate("a", "NL", "XY34ZZ", Some("XY34Z2"), 0.90), // wrong, accepted
                plate("a", "NL", "KL56MN", Some("KL56MN"), 0.60), // right, rejected
                missed,                                           // found, no read
                plate("b", "DE", "ES1234", None, 0.0),            // not found
            ],
            detections: vec![
                DetectionOutcome {
                    source: "a".into(),
                    country: "NL".into(),
                    detected: true,
                },
                DetectionOutcome {
                    source: "a".into(),
                    country: "NL".into(),
                    detected: false,
                },
                DetectionOutcome {
                    source: "b".into(),
                    country: "DE".into(),
                    detected: true,
                },
            ],
            images: (1..=20)
                .map(|i| {
                    image(
                        if i <= 10 { "a" } else { "b" },
                        if i <= 10 { "NL" } else { "DE" },
                        i as f64,
                    )
                })
                .collect(),
            extra_passages: 0,
        };
        let r = Report::from_outcomes(o, 0.8);
        let a = &r.by_source[0];
        assert_eq!(a.name, "a");
        assert_eq!((a.boxes, a.boxes_detected), (2, 1));
        assert_eq!(a.recall(), Some(0.5));
        assert_eq!((a.samples, a.correct), (4, 2));
        assert_eq!(a.accuracy(), Some(0.5));
        // Distances 0 + 1 + 0 + 6 over 24 characters.
        assert_eq!((a.edit_distance, a.truth_chars), (7, 24));
        assert_eq!(a.accepted_rate(), Some(0.5));
        assert_eq!(a.confident_wrong_rate(), Some(0.25));
        assert_eq!(a.rejected_rate(), Some(0.5));
        assert_eq!(a.images, 10);
        assert_eq!((a.median_ms, a.p95_ms), (5.0, 10.0));
        // Countries: NL first even though DE sorts before it.
        let names: Vec<&str> = r.by_country.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, ["NL", "DE"]);
        let de = &r.by_country[1];
        assert_eq!(
            (de.samples, de.correct, de.rejected, de.accepted),
            (1, 0, 0, 0)
        );
        assert_eq!(de.recall(), Some(1.0));
        assert_eq!((r.overall.samples, r.overall.images), (5, 20));
        assert_eq!(r.overall.p95_ms, 19.0);
        // The curve: at 0.5 three of five accepted, one wrong; at 0.99 none.
        let at = |t: f32| {
            r.curve
                .iter()
                .find(|p| (p.threshold - t).abs() < 1e-6)
                .expect("point")
        };
        assert_eq!(
            (at(0.5).accepted_rate, at(0.5).confident_wrong_rate),
            (0.6, 0.2)
        );
        assert_eq!(
            (at(0.95).accepted_rate, at(0.95).confident_wrong_rate),
            (0.2, 0.0)
        );
        assert_eq!(at(0.99).accepted_rate, 0.0);
        assert_eq!(r.curve_nl[0].accepted_rate, 0.75);
        let text = r.to_string();
        assert!(text.contains("NL") && text.contains("50.0%"), "{text}");
    }

    #[test]
    fn percentile_is_nearest_rank() {
        assert_eq!(percentile(&[], 50.0), 0.0);
        assert_eq!(percentile(&[3.0], 95.0), 3.0);
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 50.0), 2.0);
        assert_eq!(percentile(&[4.0, 1.0, 3.0, 2.0], 95.0), 4.0);
    }
}
