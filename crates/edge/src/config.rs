//! The daemon's one TOML configuration file: its schema, its defaults and its
//! validation.
//!
//! Every key has a default documented in `config.example.toml`; unknown keys are
//! errors, so a typo never silently falls back to a default. Errors name the
//! file, the line and the key.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}", format_problems(.path, .problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// 1-based line, where known.
    pub line: Option<usize>,
    /// Dotted key path, e.g. `camera[1].fps`.
    pub key: String,
    pub message: String,
}

fn format_problems(path: &Path, problems: &[Problem]) -> String {
    let mut out = String::new();
    for (i, p) in problems.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match p.line {
            Some(line) => out.push_str(&format!(
                "{}:{}: key `{}`: {}",
                path.display(),
                line,
                p.key,
                p.message
            )),
            None => out.push_str(&format!(
                "{}: key `{}`: {}",
                path.display(),
                p.key,
                p.message
            )),
        }
    }
    out
}

/// The problems found while validating a config, each under its dotted key.
/// Every section checks itself ([`Validate`]), beside its definition, so that
/// `check-config` and `run` judge a file by the same rules.
#[derive(Debug, Default)]
struct Problems(Vec<(String, String)>);

impl Problems {
    fn push(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.0.push((key.into(), message.into()));
    }

    /// A problem at `key` unless `ok`.
    fn check(&mut self, ok: bool, key: impl Into<String>, message: impl Into<String>) {
        if !ok {
            self.push(key, message);
        }
    }

    /// `value` must lie in 0..=1.
    fn unit_interval(&mut self, key: &str, value: f32) {
        self.check(
            (0.0..=1.0).contains(&value),
            key,
            format!("must be between 0 and 1, not {value}"),
        );
    }

    /// `value` must lie in `range`: a number outside it is a typo or a unit
    /// mistake that would otherwise overflow a duration or starve a stage.
    pub fn within<T>(&mut self, key: &str, value: T, range: std::ops::RangeInclusive<T>)
    where
        T: PartialOrd + std::fmt::Display + Copy,
    {
        self.check(
            range.contains(&value),
            key,
            format!(
                "must be between {} and {}, not {value}",
                range.start(),
                range.end()
            ),
        );
    }

    fn into_vec(self) -> Vec<(String, String)> {
        self.0
    }
}

/// A config section that checks what serde cannot: ranges, cross-field rules,
/// duplicates.
trait Validate {
    fn validate(&self, p: &mut Problems);
}

/// Seconds in a day, a week and ten years: the upper bounds of intervals.
const DAY_S: u64 = 86_400;
const WEEK_S: u64 = 7 * DAY_S;
const TEN_YEARS_H: u64 = 10 * 366 * 24;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub device: DeviceConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub detect: DetectConfig,
    #[serde(default)]
    pub read: ReadConfig,
    #[serde(default, rename = "camera")]
    pub cameras: Vec<CameraConfig>,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub track: TrackConfig,
    #[serde(default)]
    pub policy: PolicyConfig,
    #[serde(default)]
    pub zone: ZoneConfig,
    pub store: StoreConfig,
    pub upload: UploadConfig,
    #[serde(default)]
    pub status: StatusConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    /// Identifies this controller to the backend.
    pub id: String,
    /// Free text: where the controller stands, stated in every record.
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub latitude: Option<f64>,
    #[serde(default)]
    pub longitude: Option<f64>,
}

impl Validate for DeviceConfig {
    fn validate(&self, p: &mut Problems) {
        p.check(!self.id.trim().is_empty(), "device.id", "must not be empty");
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Path to libonnxruntime.so; when absent, `ORT_DYLIB_PATH`, then the copy
    /// that `make models` fetched into `models/cache/`.
    #[serde(default)]
    pub onnxruntime: Option<PathBuf>,
    /// Folder holding the model files named in `models/manifest.toml`.
    #[serde(default = "default_models_dir")]
    pub models_dir: PathBuf,
    /// Threads each model may use for one inference.
    #[serde(default = "default_threads")]
    pub threads: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            onnxruntime: None,
            models_dir: default_models_dir(),
            threads: default_threads(),
        }
    }
}

impl Validate for RuntimeConfig {
    fn validate(&self, p: &mut Problems) {
        p.within("runtime.threads", self.threads, 1..=64);
    }
}

fn default_models_dir() -> PathBuf {
    PathBuf::from("models/cache")
}
fn default_threads() -> usize {
    2
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectConfig {
    /// Detector score a box needs to be read at all.
    #[serde(default = "default_detect_threshold")]
    pub min_score: f32,
    /// Overlap above which two boxes are one plate.
    #[serde(default = "default_nms")]
    pub nms_iou: f32,
    /// Frames are scaled down so that their longer side is at most this many
    /// pixels before detection (0 = native size).
    #[serde(default)]
    pub max_side: u32,
    /// Two-pass detection: the whole frame is searched scaled down to this
    /// long side, then native-size windows around the plates that pass found
    /// small or unsure are searched again (0 = one pass, see `max_side`).
    #[serde(default = "default_coarse_side")]
    pub coarse_side: u32,
    /// At most this many native-size windows per frame in the second pass.
    #[serde(default = "default_fine_windows")]
    pub fine_windows: u32,
    /// After the two passes, search the frame once more at half the coarse
    /// scale, for plates too large for the coarse pass (a camera that frames
    /// plates wider than about 250 px at full HD). Off by default: it added
    /// 10-40% to detection time per full-HD frame in the runs of
    /// docs/measurements/detector.md, past the 40 ms budget.
    #[serde(default)]
    pub overview: bool,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            min_score: default_detect_threshold(),
            nms_iou: default_nms(),
            max_side: 0,
            coarse_side: default_coarse_side(),
            fine_windows: default_fine_windows(),
            overview: false,
        }
    }
}

impl Validate for DetectConfig {
    fn validate(&self, p: &mut Problems) {
        p.unit_interval("detect.min_score", self.min_score);
        p.unit_interval("detect.nms_iou", self.nms_iou);
        p.check(
            self.max_side == 0 || (64..=8192).contains(&self.max_side),
            "detect.max_side",
            "must be 0 (native size) or 64 to 8192 pixels",
        );
        p.check(
            self.coarse_side == 0 || (160..=8192).contains(&self.coarse_side),
            "detect.coarse_side",
            "must be 0 (one pass) or 160 to 8192 pixels",
        );
        p.within("detect.fine_windows", self.fine_windows, 0..=64);
    }
}

fn default_coarse_side() -> u32 {
    960
}
fn default_fine_windows() -> u32 {
    4
}

fn default_detect_threshold() -> f32 {
    0.1
}
fn default_nms() -> f32 {
    0.4
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadConfig {
    /// Plate confidence a read needs to count towards a passage.
    #[serde(default = "default_read_min_conf")]
    pub min_confidence: f32,
    /// Fewest characters a plate may have.
    #[serde(default = "default_min_chars")]
    pub min_chars: usize,
    /// Which reader reads the crops.
    #[serde(default)]
    pub model: ReaderModel,
    /// Cascade only: a frame with an own read below this confidence (or of an
    /// implausible length) is read again by PP-OCR.
    #[serde(default = "default_cascade_below")]
    pub cascade_below: f32,
}

/// The plate reader to use (`read.model`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ReaderModel {
    /// The project's own CRNN (`models/plate_crnn.onnx`).
    Own,
    /// PP-OCRv4's text recogniser from the rapidocr wheel.
    #[default]
    Ppocr,
    /// The own reader, and PP-OCR for the crops it is unsure of.
    Cascade,
}

impl std::str::FromStr for ReaderModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "own" => Ok(ReaderModel::Own),
            "ppocr" => Ok(ReaderModel::Ppocr),
            "cascade" => Ok(ReaderModel::Cascade),
            other => Err(format!(
                "unknown reader `{other}`, expected own, ppocr or cascade"
            )),
        }
    }
}

impl Default for ReadConfig {
    fn default() -> Self {
        ReadConfig {
            min_confidence: default_read_min_conf(),
            min_chars: default_min_chars(),
            model: ReaderModel::default(),
            cascade_below: default_cascade_below(),
        }
    }
}

impl Validate for ReadConfig {
    fn validate(&self, p: &mut Problems) {
        p.unit_interval("read.min_confidence", self.min_confidence);
        p.within("read.min_chars", self.min_chars, 1..=10);
        p.unit_interval("read.cascade_below", self.cascade_below);
    }
}

fn default_cascade_below() -> f32 {
    0.8
}

fn default_read_min_conf() -> f32 {
    0.5
}
fn default_min_chars() -> usize {
    4
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum CameraSource {
    V4l2,
    Replay,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum PixelFormat {
    Mjpeg,
    Yuyv,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub id: String,
    pub source: CameraSource,
    /// V4L2: the device node, e.g. `/dev/video0`.
    #[serde(default)]
    pub device: Option<PathBuf>,
    /// Replay: the folder of JPEG/PNG frames, played in file-name order.
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_format")]
    pub format: PixelFormat,
    #[serde(default = "default_width")]
    pub width: u32,
    #[serde(default = "default_height")]
    pub height: u32,
    #[serde(default = "default_fps")]
    pub fps: f32,
    /// Replay: start again at the first frame after the last.
    #[serde(default)]
    pub looped: bool,
    /// Which way the camera looks, stated in records (free text, e.g. "north, into the zone").
    #[serde(default)]
    pub facing: String,
    /// Which direction of travel enters the zone: `towards` the camera, `away`
    /// from it, or `any` (a camera inside the zone, where every passage counts).
    #[serde(default)]
    pub entering: Entering,
    /// Region of interest: a polygon in frame pixels; plates whose box centre
    /// lies outside it are ignored. None: the whole frame.
    #[serde(default)]
    pub roi: Option<Vec<[f32; 2]>>,
    /// Lanes in view; a passage is given the lane containing its plate.
    #[serde(default)]
    pub lanes: Vec<LaneConfig>,
    /// Fewest reads for a passage on this camera (default: `track.min_reads`).
    #[serde(default)]
    pub min_reads: Option<u32>,
    /// A plate not seen this long on this camera ends its passage (default:
    /// `track.close_after_ms`).
    #[serde(default)]
    pub close_after_ms: Option<u64>,
}

impl CameraConfig {
    fn validate(&self, i: usize, p: &mut Problems) {
        let k = |f: &str| format!("camera[{i}].{f}");
        p.check(
            self.fps > 0.0 && self.fps <= 120.0,
            k("fps"),
            format!("must be above 0 and at most 120, not {}", self.fps),
        );
        p.check(
            (1..=8192).contains(&self.width) && (1..=8192).contains(&self.height),
            k("width"),
            "width and height must be 1 to 8192 pixels",
        );
        match self.source {
            CameraSource::V4l2 if self.device.is_none() => p.push(
                k("device"),
                "a v4l2 camera needs `device`, e.g. \"/dev/video0\"",
            ),
            CameraSource::Replay if self.path.is_none() => p.push(
                k("path"),
                "a replay camera needs `path`, a folder of frames",
            ),
            _ => {}
        }
        if let Some(n) = self.min_reads {
            p.within(&k("min_reads"), n, 1..=1000);
        }
        if let Some(ms) = self.close_after_ms {
            p.within(&k("close_after_ms"), ms, 1..=600_000);
        }
        p.check(
            self.roi.as_ref().is_none_or(|r| r.len() >= 3),
            k("roi"),
            "a polygon needs at least 3 points",
        );
        let mut lane_ids = std::collections::HashSet::new();
        for (j, lane) in self.lanes.iter().enumerate() {
            p.check(
                lane.polygon.len() >= 3,
                k("lanes"),
                format!("lane {j}: a polygon needs at least 3 points"),
            );
            p.check(
                lane_ids.insert(lane.id),
                k("lanes"),
                format!("lane id {} is used twice", lane.id),
            );
        }
    }
}

/// One lane of a camera's view.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaneConfig {
    pub id: u32,
    /// The lane's polygon in frame pixels.
    pub polygon: Vec<[f32; 2]>,
}

/// Which passages of a camera enter the zone.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Entering {
    Towards,
    Away,
    #[default]
    Any,
}

impl Entering {
    /// Whether a passage in `d` enters the zone. An unknown direction never
    /// counts at a cordon camera.
    pub fn admits(self, d: crate::message::Direction) -> bool {
        use crate::message::Direction;
        match self {
            Entering::Any => true,
            Entering::Towards => d == Direction::Towards,
            Entering::Away => d == Direction::Away,
        }
    }
}

fn default_format() -> PixelFormat {
    PixelFormat::Mjpeg
}
fn default_width() -> u32 {
    1920
}
fn default_height() -> u32 {
    1080
}
fn default_fps() -> f32 {
    10.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Frames waiting for detection, over all cameras; past this the oldest is dropped.
    #[serde(default = "default_frame_queue")]
    pub frame_queue: usize,
    /// Capacity of each channel between later stages.
    #[serde(default = "default_channel")]
    pub channel_capacity: usize,
    /// A stage busy on one message longer than this is stuck: the watchdog
    /// stops pinging systemd, which restarts the daemon.
    #[serde(default = "default_stuck_after_s")]
    pub stuck_after_s: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            frame_queue: default_frame_queue(),
            channel_capacity: default_channel(),
            stuck_after_s: default_stuck_after_s(),
        }
    }
}

impl Validate for PipelineConfig {
    fn validate(&self, p: &mut Problems) {
        p.within("pipeline.frame_queue", self.frame_queue, 1..=1000);
        p.within(
            "pipeline.channel_capacity",
            self.channel_capacity,
            1..=10_000,
        );
        p.within("pipeline.stuck_after_s", self.stuck_after_s, 1..=DAY_S);
    }
}

fn default_frame_queue() -> usize {
    4
}
fn default_channel() -> usize {
    16
}
fn default_stuck_after_s() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackConfig {
    /// A track not seen for this long closes into a passage.
    #[serde(default = "default_close_after_ms")]
    pub close_after_ms: u64,
    /// Fewest reads a track needs to become a passage.
    #[serde(default = "default_min_reads")]
    pub min_reads: u32,
    /// A track with fewer reads than `min_reads` still becomes a passage when
    /// its voted confidence reaches this: a vehicle seen in one frame only (a
    /// fast vehicle, a low frame rate, a passing occlusion) is not let off,
    /// while one faint or doubtful read still makes no passage.
    #[serde(default = "default_short_track_min_confidence")]
    pub short_track_min_confidence: f32,
    /// A plate read again on the same camera within this many seconds after
    /// it was last seen there (a parked or queued vehicle) makes no new
    /// passage. Passages are never held back for it. 0: every closed track
    /// is a passage.
    #[serde(default = "default_merge_window_s")]
    pub merge_window_s: u64,
}

impl Default for TrackConfig {
    fn default() -> Self {
        TrackConfig {
            close_after_ms: default_close_after_ms(),
            min_reads: default_min_reads(),
            short_track_min_confidence: default_short_track_min_confidence(),
            merge_window_s: default_merge_window_s(),
        }
    }
}

impl Validate for TrackConfig {
    fn validate(&self, p: &mut Problems) {
        p.within("track.close_after_ms", self.close_after_ms, 1..=600_000);
        p.within("track.min_reads", self.min_reads, 1..=1000);
        p.check(
            (0.5..=1.0).contains(&self.short_track_min_confidence),
            "track.short_track_min_confidence",
            "must be between 0.5 and 1.0 (1.0: only certain reads)",
        );
        p.within("track.merge_window_s", self.merge_window_s, 0..=DAY_S);
    }
}

fn default_close_after_ms() -> u64 {
    1500
}
fn default_min_reads() -> u32 {
    2
}
fn default_short_track_min_confidence() -> f32 {
    0.95
}
fn default_merge_window_s() -> u64 {
    300
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Signed hit-list bundle (see docs/ref/lists.md); none = no violations.
    #[serde(default)]
    pub hit_list: Option<PathBuf>,
    /// Signed exemption-list bundle.
    #[serde(default)]
    pub exemptions: Option<PathBuf>,
    /// The backend's Ed25519 public key that signs bundles, 32 bytes in base64.
    /// Required when a list is configured.
    #[serde(default)]
    pub public_key: Option<String>,
    /// HMAC keys by key id: files of base64 (as `anpr-edge lists keygen` writes).
    /// Every key id a bundle names must be here; hold two during a rotation.
    #[serde(default)]
    pub hmac_keys: std::collections::BTreeMap<String, PathBuf>,
    /// Passages below this plate confidence are counted, never recorded.
    #[serde(default = "default_policy_min_conf")]
    pub min_confidence: f32,
    /// Plates that fit no Dutch sidecode: `count` (counted, never recorded) or
    /// `check` (looked up like any other).
    #[serde(default)]
    pub foreign_plates: ForeignPlates,
    /// A list whose bundle is older than this raises the alarm (0 = never).
    #[serde(default = "default_max_list_age_h")]
    pub max_list_age_h: u64,
    /// How often to look whether a bundle file changed (mtime and size).
    #[serde(default = "default_reload_check_s")]
    pub reload_check_s: u64,
    /// Base URL to download the bundles from (`https://` only): the device
    /// GETs `{lists_url}/api/v1/lists/{zone}/hit` and `.../exemption` and
    /// saves them to `hit_list` / `exemptions`. None = files only.
    #[serde(default)]
    pub lists_url: Option<String>,
    /// CA that signed the list server's certificate; defaults to `upload.ca_cert`.
    #[serde(default)]
    pub lists_ca_cert: Option<PathBuf>,
    /// How often to ask the list server for new bundles.
    #[serde(default = "default_fetch_interval_s")]
    pub fetch_interval_s: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            hit_list: None,
            exemptions: None,
            public_key: None,
            hmac_keys: Default::default(),
            min_confidence: default_policy_min_conf(),
            foreign_plates: ForeignPlates::default(),
            max_list_age_h: default_max_list_age_h(),
            reload_check_s: default_reload_check_s(),
            lists_url: None,
            lists_ca_cert: None,
            fetch_interval_s: default_fetch_interval_s(),
        }
    }
}

/// What to do with plates that fit no Dutch sidecode.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ForeignPlates {
    #[default]
    Count,
    Check,
}

fn default_policy_min_conf() -> f32 {
    0.8
}
fn default_max_list_age_h() -> u64 {
    48
}
fn default_reload_check_s() -> u64 {
    60
}
fn default_fetch_interval_s() -> u64 {
    300
}

/// The zone this device enforces, and when.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    /// Must match the zone id of every bundle. Required when a list is configured.
    #[serde(default)]
    pub id: String,
    /// IANA time zone of the zone's hours and of ban dates.
    #[serde(default = "default_time_zone")]
    pub time_zone: String,
    /// Days the zone is in force: `mon` .. `sun`.
    #[serde(default = "default_days")]
    pub days: Vec<String>,
    /// Local time the zone comes into force each day, `HH:MM`.
    #[serde(default = "default_from")]
    pub from: String,
    /// Local time it ends, `HH:MM` (`24:00` = midnight). Earlier than `from`
    /// means overnight; `days` then names the day the window starts.
    #[serde(default = "default_until")]
    pub until: String,
}

impl Default for ZoneConfig {
    fn default() -> Self {
        ZoneConfig {
            id: String::new(),
            time_zone: default_time_zone(),
            days: default_days(),
            from: default_from(),
            until: default_until(),
        }
    }
}

fn default_time_zone() -> String {
    "Europe/Amsterdam".into()
}
fn default_days() -> Vec<String> {
    ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
        .map(String::from)
        .to_vec()
}
fn default_from() -> String {
    "00:00".into()
}
fn default_until() -> String {
    "24:00".into()
}

/// `HH:MM` as minutes after midnight; `24:00` is 1440.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// `mon` .. `sun` as chrono weekdays.
pub fn parse_weekday(s: &str) -> Option<chrono::Weekday> {
    use chrono::Weekday::*;
    Some(match s {
        "mon" => Mon,
        "tue" => Tue,
        "wed" => Wed,
        "thu" => Thu,
        "fri" => Fri,
        "sat" => Sat,
        "sun" => Sun,
        _ => return None,
    })
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// The SQLite database of candidate violations.
    pub path: PathBuf,
    /// JPEG quality of the overview image.
    #[serde(default = "default_jpeg_quality")]
    pub jpeg_quality: u8,
    /// The Ed25519 key that signs every record (`anpr-edge provision` makes it);
    /// default `evidence.key` beside the database. Made at start if missing.
    #[serde(default)]
    pub signing_key: Option<PathBuf>,
    /// Disk budget of the database in bytes (its pages in use plus the WAL).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// What happens to a new violation when the budget is reached, after the
    /// evidence of acknowledged records has been deleted to make room.
    #[serde(default)]
    pub on_budget_full: BudgetPolicy,
    /// Hours the evidence (images) of an acknowledged record is kept.
    #[serde(default = "default_acked_evidence_h")]
    pub acked_evidence_retention_h: u64,
    /// Days any record is kept: an unacknowledged record older than this is
    /// replaced by a signed tombstone (metadata, plate and images deleted;
    /// counted and logged), and acknowledged rows go.
    #[serde(default = "default_max_retention_days")]
    pub max_retention_days: u64,
}

impl Validate for StoreConfig {
    fn validate(&self, p: &mut Problems) {
        p.within("store.jpeg_quality", self.jpeg_quality, 1..=100);
        p.check(
            self.max_bytes == 0 || self.max_bytes >= 16 * 1024 * 1024,
            "store.max_bytes",
            "must be 0 (no budget) or at least 16 MiB (16777216)",
        );
        p.within(
            "store.acked_evidence_retention_h",
            self.acked_evidence_retention_h,
            0..=TEN_YEARS_H,
        );
        p.within(
            "store.max_retention_days",
            self.max_retention_days,
            1..=3660,
        );
    }
}

/// What the store does with a new violation once its disk budget is reached.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPolicy {
    /// Record it, signed and with its evidence hashes, but without the images.
    #[default]
    DropNewEvidence,
    /// Delete the images of the oldest unacknowledged records to make room.
    DropOldestEvidence,
    /// Do not record it.
    RefuseNew,
}

impl BudgetPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPolicy::DropNewEvidence => "drop_new_evidence",
            BudgetPolicy::DropOldestEvidence => "drop_oldest_evidence",
            BudgetPolicy::RefuseNew => "refuse_new",
        }
    }
}

fn default_jpeg_quality() -> u8 {
    85
}
fn default_max_bytes() -> u64 {
    4_000_000_000
}
fn default_acked_evidence_h() -> u64 {
    72
}
fn default_max_retention_days() -> u64 {
    28
}

impl StoreConfig {
    /// The signing key's path: configured, or `evidence.key` beside the database.
    pub fn signing_key_path(&self) -> PathBuf {
        self.signing_key.clone().unwrap_or_else(|| {
            self.path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(crate::keys::EVIDENCE_KEY_FILE)
        })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadConfig {
    /// Base URL of the backend, e.g. `https://backend.example/`; records go to
    /// `{url}/api/v1/violations`.
    pub url: String,
    /// PEM file with the CA that signed the backend's certificate; only this CA is trusted.
    pub ca_cert: PathBuf,
    #[serde(default = "default_upload_timeout")]
    pub timeout_s: u64,
    #[serde(default = "default_backoff_initial")]
    pub backoff_initial_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Allow `http://` (for debugging only: evidence then travels in clear text).
    #[serde(default)]
    pub allow_plain_http: bool,
    /// PEM certificate of this device for mutual TLS (issued for the CSR that
    /// `anpr-edge provision` printed); needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// PEM private key for `client_cert`.
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// Records per batch request once this many or more are pending; 1 posts
    /// each record on its own.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

impl Validate for UploadConfig {
    fn validate(&self, p: &mut Problems) {
        p.check(
            self.client_cert.is_some() == self.client_key.is_some(),
            "upload.client_cert",
            "client_cert and client_key go together",
        );
        p.within("upload.batch_size", self.batch_size, 1..=1000);
        p.within("upload.timeout_s", self.timeout_s, 1..=3600);
        match self.url.split_once("://") {
            Some(("https", rest)) if !rest.is_empty() => {}
            Some(("http", rest)) if !rest.is_empty() && self.allow_plain_http => {}
            Some(("http", _)) => p.push(
                "upload.url",
                "plain http is refused: use https, or set upload.allow_plain_http for debugging",
            ),
            _ => p.push("upload.url", format!("`{}` is not an https URL", self.url)),
        }
        p.within(
            "upload.backoff_initial_ms",
            self.backoff_initial_ms,
            1..=3_600_000,
        );
        p.check(
            self.backoff_max_ms >= self.backoff_initial_ms && self.backoff_max_ms <= DAY_S * 1000,
            "upload.backoff_max_ms",
            "must be at least backoff_initial_ms and at most a day (86400000)",
        );
    }
}

fn default_batch_size() -> usize {
    32
}

fn default_upload_timeout() -> u64 {
    30
}
fn default_backoff_initial() -> u64 {
    500
}
fn default_backoff_max() -> u64 {
    300_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Address of the technician's status page.
    #[serde(default = "default_status_listen")]
    pub listen: String,
    /// More addresses to serve the same page on (e.g. the maintenance port's).
    #[serde(default)]
    pub also_listen: Vec<String>,
    /// The technician password's Argon2 hash (PHC string), as `anpr-edge
    /// passwd` prints it. None: every page but `/healthz` is refused.
    #[serde(default)]
    pub password_hash: Option<String>,
    /// Serve HTTPS with this certificate chain (PEM) and key; both or neither.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// How long a login lasts.
    #[serde(default = "default_session_s")]
    pub session_s: u64,
    /// Failed logins in a row that lock logins out, and for how long.
    #[serde(default = "default_lockout_after")]
    pub lockout_after: u32,
    #[serde(default = "default_lockout_s")]
    pub lockout_s: u64,
    /// Plate height (pixels) the reader needs; the snapshot marks smaller plates.
    #[serde(default = "default_plate_height_needed")]
    pub plate_height_needed_px: u32,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            listen: default_status_listen(),
            also_listen: Vec::new(),
            password_hash: None,
            tls_cert: None,
            tls_key: None,
            session_s: default_session_s(),
            lockout_after: default_lockout_after(),
            lockout_s: default_lockout_s(),
            plate_height_needed_px: default_plate_height_needed(),
        }
    }
}

impl Validate for StatusConfig {
    fn validate(&self, p: &mut Problems) {
        p.check(
            self.listen.parse::<std::net::SocketAddr>().is_ok(),
            "status.listen",
            format!("`{}` is not an address:port", self.listen),
        );
        for a in &self.also_listen {
            p.check(
                a.parse::<std::net::SocketAddr>().is_ok(),
                "status.also_listen",
                format!("`{a}` is not an address:port"),
            );
        }
        if let Some(h) = &self.password_hash {
            p.check(
                argon2::password_hash::PasswordHash::new(h).is_ok(),
                "status.password_hash",
                "not an Argon2 PHC string; make one with `anpr-edge passwd`",
            );
        }
        p.check(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "status.tls_cert",
            "tls_cert and tls_key go together: give both or neither",
        );
        p.within("status.session_s", self.session_s, 1..=WEEK_S);
        p.within("status.lockout_after", self.lockout_after, 1..=1000);
        p.within("status.lockout_s", self.lockout_s, 1..=DAY_S);
        p.within(
            "status.plate_height_needed_px",
            self.plate_height_needed_px,
            1..=1000,
        );
    }
}

fn default_status_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_session_s() -> u64 {
    8 * 3600
}
fn default_lockout_after() -> u32 {
    5
}
fn default_lockout_s() -> u64 {
    300
}
fn default_plate_height_needed() -> u32 {
    20
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace` (or a tracing filter).
    #[serde(default = "default_log_level")]
    pub level: String,
    /// Write JSON lines (for journald and log shippers) instead of text.
    #[serde(default)]
    pub json: bool,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: default_log_level(),
            json: false,
        }
    }
}

impl Validate for LogConfig {
    fn validate(&self, p: &mut Problems) {
        p.check(
            tracing_subscriber::EnvFilter::try_new(&self.level).is_ok(),
            "log.level",
            format!("`{}` is not a log level", self.level),
        );
    }
}

fn default_log_level() -> String {
    "info".into()
}

impl Config {
    /// Reads, parses and validates a config file. Relative paths in it are
    /// taken relative to the file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut cfg = Config::parse(&text).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })?;
        if let Some(dir) = path.parent() {
            cfg.resolve_relative_to(dir);
        }
        Ok(cfg)
    }

    /// Parses and validates config text, returning every problem found.
    pub fn parse(text: &str) -> Result<Config, Vec<Problem>> {
        let cfg: Config = match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => return Err(vec![problem_from_toml(text, &e)]),
        };
        let problems = cfg.validate();
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(problems
                .into_iter()
                .map(|(key, message)| Problem {
                    line: line_of_key(text, &key),
                    key,
                    message,
                })
                .collect())
        }
    }

    fn resolve_relative_to(&mut self, dir: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = dir.join(&*p);
            }
        };
        if let Some(p) = self.runtime.onnxruntime.as_mut() {
            fix(p);
        }
        fix(&mut self.runtime.models_dir);
        for cam in &mut self.cameras {
            if let Some(p) = cam.path.as_mut() {
                fix(p);
            }
        }
        if let Some(p) = self.policy.hit_list.as_mut() {
            fix(p);
        }
        if let Some(p) = self.policy.exemptions.as_mut() {
            fix(p);
        }
        for p in self.policy.hmac_keys.values_mut() {
            fix(p);
        }
        if let Some(p) = self.policy.lists_ca_cert.as_mut() {
            fix(p);
        }
        fix(&mut self.store.path);
        if let Some(p) = self.store.signing_key.as_mut() {
            fix(p);
        }
        fix(&mut self.upload.ca_cert);
        for p in [
            &mut self.status.tls_cert,
            &mut self.status.tls_key,
            &mut self.upload.client_cert,
            &mut self.upload.client_key,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
    }

    /// Files the config names that do not exist, by key. Devices are left out:
    /// an absent camera is reported at run time and does not stop the others.
    pub fn missing_files(&self) -> Vec<(String, PathBuf)> {
        let mut out = Vec::new();
        let mut check = |key: String, p: &Path| {
            if !p.exists() {
                out.push((key, p.to_owned()));
            }
        };
        for (i, cam) in self.cameras.iter().enumerate() {
            if let Some(p) = &cam.path {
                check(format!("camera[{i}].path"), p);
            }
        }
        // A list that is downloaded need not exist before the first download.
        let fetched = self.policy.lists_url.is_some();
        if let Some(p) = self.policy.hit_list.as_ref().filter(|_| !fetched) {
            check("policy.hit_list".into(), p);
        }
        if let Some(p) = self.policy.exemptions.as_ref().filter(|_| !fetched) {
            check("policy.exemptions".into(), p);
        }
        if let Some(p) = &self.policy.lists_ca_cert {
            check("policy.lists_ca_cert".into(), p);
        }
        for (id, p) in &self.policy.hmac_keys {
            check(format!("policy.hmac_keys.{id}"), p);
        }
        if let Some(p) = &self.runtime.onnxruntime {
            check("runtime.onnxruntime".into(), p);
        }
        check("upload.ca_cert".into(), &self.upload.ca_cert);
        if let Some(p) = &self.status.tls_cert {
            check("status.tls_cert".into(), p);
        }
        if let Some(p) = &self.status.tls_key {
            check("status.tls_key".into(), p);
        }
        if let Some(p) = &self.upload.client_cert {
            check("upload.client_cert".into(), p);
        }
        if let Some(p) = &self.upload.client_key {
            check("upload.client_key".into(), p);
        }
        out
    }

    /// Checks what serde cannot, section by section ([`Validate`]), and what
    /// spans sections. Returns (key path, message) pairs.
    fn validate(&self) -> Vec<(String, String)> {
        let mut p = Problems::default();
        self.device.validate(&mut p);
        self.runtime.validate(&mut p);
        self.detect.validate(&mut p);
        self.read.validate(&mut p);
        self.pipeline.validate(&mut p);
        self.track.validate(&mut p);
        self.store.validate(&mut p);
        self.upload.validate(&mut p);
        self.status.validate(&mut p);
        self.log.validate(&mut p);
        p.unit_interval("policy.min_confidence", self.policy.min_confidence);
        self.validate_lists_and_zone(&mut p);
        p.check(
            !self.cameras.is_empty(),
            "camera",
            "at least one [[camera]] is needed",
        );
        let mut seen = std::collections::HashSet::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            if cam.id.trim().is_empty() {
                p.push(format!("camera[{i}].id"), "must not be empty");
            } else if !seen.insert(cam.id.clone()) {
                p.push(
                    format!("camera[{i}].id"),
                    format!("camera id `{}` is used twice", cam.id),
                );
            }
            cam.validate(i, &mut p);
        }
        p.into_vec()
    }
}

impl Config {
    fn validate_lists_and_zone(&self, p: &mut Problems) {
        let pol = &self.policy;
        let lists = pol.hit_list.is_some() || pol.exemptions.is_some();
        match &pol.public_key {
            Some(k) => {
                if let Err(e) = anpr_wire::bundle::verifying_key_from_base64(k) {
                    p.push("policy.public_key", e);
                }
            }
            None if lists => p.push(
                "policy.public_key",
                "lists are configured: pin the backend's Ed25519 public key (base64)",
            ),
            None => {}
        }
        if lists && pol.hmac_keys.is_empty() {
            p.push(
                "policy.hmac_keys",
                "lists are configured: name at least one HMAC key file by key id",
            );
        }
        for id in pol.hmac_keys.keys() {
            if id.is_empty() || id.len() > anpr_wire::bundle::MAX_KEY_ID_LEN {
                p.push(
                    format!("policy.hmac_keys.{id}"),
                    "a key id is 1 to 32 bytes",
                );
            }
        }
        if let Some(url) = &pol.lists_url {
            match reqwest::Url::parse(url) {
                Ok(u) if u.scheme() == "https" && u.host().is_some() => {}
                Ok(_) => p.push("policy.lists_url", "must be an https:// URL with a host"),
                Err(e) => p.push("policy.lists_url", format!("not a URL: {e}")),
            }
            if !lists {
                p.push("policy.lists_url", "set policy.hit_list and/or policy.exemptions: the files downloads are saved to");
            }
        }
        p.within("policy.fetch_interval_s", pol.fetch_interval_s, 1..=WEEK_S);
        p.within("policy.reload_check_s", pol.reload_check_s, 1..=DAY_S);
        p.within("policy.max_list_age_h", pol.max_list_age_h, 0..=TEN_YEARS_H);
        let z = &self.zone;
        if lists && z.id.trim().is_empty() {
            p.push(
                "zone.id",
                "lists are configured: name the zone they are for",
            );
        }
        if z.id.len() > anpr_wire::bundle::MAX_ZONE_LEN {
            p.push("zone.id", "at most 64 bytes");
        }
        if z.time_zone.parse::<chrono_tz::Tz>().is_err() {
            p.push(
                "zone.time_zone",
                format!(
                    "`{}` is not an IANA time zone such as \"Europe/Amsterdam\"",
                    z.time_zone
                ),
            );
        }
        if z.days.is_empty() {
            p.push("zone.days", "name at least one day");
        }
        let mut seen = std::collections::HashSet::new();
        for d in &z.days {
            if parse_weekday(d).is_none() {
                p.push(
                    "zone.days",
                    format!("`{d}` is not one of mon, tue, wed, thu, fri, sat, sun"),
                );
            } else if !seen.insert(d) {
                p.push("zone.days", format!("`{d}` is named twice"));
            }
        }
        let from = parse_hhmm(&z.from);
        let until = parse_hhmm(&z.until);
        if from.is_none() || from == Some(1440) {
            p.push(
                "zone.from",
                format!("`{}` is not a time HH:MM from 00:00 to 23:59", z.from),
            );
        }
        if until.is_none() {
            p.push(
                "zone.until",
                format!("`{}` is not a time HH:MM from 00:00 to 24:00", z.until),
            );
        }
        if from.is_some() && from == until {
            p.push(
                "zone.until",
                "must differ from zone.from (use 00:00 and 24:00 for all day)",
            );
        }
    }
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// Turns a toml/serde error into a problem with line and key.
fn problem_from_toml(text: &str, e: &toml::de::Error) -> Problem {
    let line = e.span().map(|s| line_at(text, s.start));
    let message = e.message().trim().to_string();
    // serde names the offending key in unknown-field and missing-field messages;
    // otherwise the span's line holds it.
    let key = extract_backticked(&message)
        .or_else(|| {
            let s = e.span()?;
            let line_start = text[..s.start.min(text.len())]
                .rfind('\n')
                .map_or(0, |i| i + 1);
            let line_text = text[line_start..].lines().next()?;
            let k = line_text.split('=').next()?.trim();
            (!k.is_empty()).then(|| k.trim_matches(|c| c == '[' || c == ']').to_string())
        })
        .unwrap_or_else(|| "?".into());
    Problem { line, key, message }
}

fn extract_backticked(msg: &str) -> Option<String> {
    let start = msg.find('`')? + 1;
    let len = msg[start..].find('`')?;
    Some(msg[start..start + len].to_string())
}

/// Finds the line of a dotted key path like `camera[1].fps` in the document.
fn line_of_key(text: &str, key: &str) -> Option<usize> {
    let doc = text.parse::<toml_edit::ImDocument<String>>().ok()?;
    let mut item: &toml_edit::Item = doc.as_item();
    let mut last_span = None;
    for part in key.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, rest)) => (n, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let next = match item.get(name) {
            Some(n) => n,
            None => break,
        };
        item = next;
        if let Some(span) = item.span() {
            last_span = Some(span);
        }
        if let Some(i) = index {
            match item.as_array_of_tables().and_then(|a| a.get(i)) {
                Some(t) => {
                    if let Some(span) = t.span() {
                        last_span = Some(span);
                    }
                    // Re-borrow the table as an item for the next step.
                    match doc
                        .as_table()
                        .get(name)
                        .and_then(|it| it.as_array_of_tables())
                        .and_then(|a| a.get(i))
                    {
                        Some(table) => {
                            return find_in_table(
                                text,
                                table,
                                key.split('.').skip(1).collect(),
                                last_span,
                            );
                        }
                        None => break,
                    }
                }
                None => break,
            }
        }
    }
    last_span.map(|s| line_at(text, s.start))
}

fn find_in_table(
    text: &str,
    table: &toml_edit::Table,
    rest: Vec<&str>,
    fallback: Option<std::ops::Range<usize>>,
) -> Option<usize> {
    let mut span = fallback;
    if let Some(first) = rest.first() {
        if let Some((k, v)) = table.get_key_value(first) {
            span = k.span().or_else(|| v.span()).or(span);
        }
    }
    span.map(|s| line_at(text, s.start))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[device]
id = "cam-post-17"

[[camera]]
id = "north"
source = "replay"
path = "frames"

[store]
path = "state/anpr.sqlite"

[upload]
url = "https://backend.example"
ca_cert = "ca.pem"
"#;

    #[test]
    fn minimal_config_parses_with_defaults() {
        let cfg = Config::parse(MINIMAL).expect("valid");
        assert_eq!(cfg.cameras.len(), 1);
        assert_eq!(cfg.detect.min_score, 0.1);
        assert_eq!(cfg.status.listen, "127.0.0.1:8080");
    }

    #[test]
    fn per_camera_track_settings_parse_and_zero_reads_names_its_camera() {
        let good = MINIMAL.replace(
            "path = \"frames\"",
            "path = \"frames\"\nmin_reads = 4\nclose_after_ms = 3000",
        );
        let cfg = Config::parse(&good).expect("valid");
        assert_eq!(cfg.cameras[0].min_reads, Some(4));
        assert_eq!(cfg.cameras[0].close_after_ms, Some(3000));
        let cfg = Config::parse(MINIMAL).expect("valid");
        assert_eq!(
            (cfg.cameras[0].min_reads, cfg.cameras[0].close_after_ms),
            (None, None)
        );
        let bad = MINIMAL.replace("path = \"frames\"", "path = \"frames\"\nmin_reads = 0");
        let problems = Config::parse(&bad).expect_err("zero reads");
        assert_eq!(problems[0].key, "camera[0].min_reads");
    }

    #[test]
    fn status_keys_are_checked_by_name() {
        let text = format!(
            "{MINIMAL}\n[status]\npassword_hash = \"plain-text\"\ntls_cert = \"c.pem\"\nalso_listen = [\"nowhere\"]\n"
        );
        let problems = Config::parse(&text).expect_err("three problems");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "status.also_listen",
                "status.password_hash",
                "status.tls_cert"
            ]
        );
        let hash = crate::status::auth::hash_password("a-good-password").expect("hash");
        let cfg = Config::parse(&format!(
            "{MINIMAL}\n[status]\npassword_hash = \"{hash}\"\n"
        ))
        .expect("a PHC string is accepted");
        assert_eq!(cfg.status.lockout_after, 5);
        assert_eq!(cfg.status.plate_height_needed_px, 20);
    }

    #[test]
    fn roi_and_lanes_parse_and_a_short_polygon_names_its_camera() {
        let good = MINIMAL.replace(
            "path = \"frames\"",
            "path = \"frames\"\nroi = [[0, 0], [100, 0], [100, 100]]\nlanes = [{ id = 2, polygon = [[0, 0], [50, 0], [50, 50]] }]",
        );
        let cfg = Config::parse(&good).expect("valid");
        assert_eq!(cfg.cameras[0].roi.as_ref().map(Vec::len), Some(3));
        assert_eq!(cfg.cameras[0].lanes[0].id, 2);
        assert_eq!(cfg.track.merge_window_s, 300);
        let text = format!(
            "{MINIMAL}\n[[camera]]\nid = \"south\"\nsource = \"replay\"\npath = \"f2\"\nroi = [[0, 0], [1, 1]]\n"
        );
        let problems = Config::parse(&text).expect_err("two points");
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "camera[1].roi");
        let roi_line = text.lines().position(|l| l.starts_with("roi")).unwrap() + 1;
        assert_eq!(problems[0].line, Some(roi_line));
        let lanes = MINIMAL.replace(
            "path = \"frames\"",
            "path = \"frames\"\nlanes = [{ id = 1, polygon = [[0, 0], [5, 5]] }]",
        );
        let problems = Config::parse(&lanes).expect_err("short lane");
        assert_eq!(problems[0].key, "camera[0].lanes");
    }

    #[test]
    fn the_reader_is_chosen_by_read_model() {
        let cfg = Config::parse(MINIMAL).expect("valid");
        assert_eq!(cfg.read.model, ReaderModel::Ppocr);
        for (name, want) in [
            ("own", ReaderModel::Own),
            ("ppocr", ReaderModel::Ppocr),
            ("cascade", ReaderModel::Cascade),
        ] {
            let text = format!("{MINIMAL}\n[read]\nmodel = \"{name}\"\ncascade_below = 0.7\n");
            let cfg = Config::parse(&text).expect("valid");
            assert_eq!(cfg.read.model, want);
            assert_eq!(cfg.read.cascade_below, 0.7);
            assert_eq!(name.parse::<ReaderModel>(), Ok(want));
        }
        let text = format!("{MINIMAL}\n[read]\nmodel = \"tesseract\"\n");
        let problems = Config::parse(&text).expect_err("unknown reader");
        let line = text
            .lines()
            .position(|l| l.starts_with("model"))
            .expect("present")
            + 1;
        assert_eq!(problems[0].line, Some(line), "{problems:?}");
        assert!(
            problems[0].message.contains("`own`, `ppocr`, `cascade`"),
            "{problems:?}"
        );
        assert!("tesseract".parse::<ReaderModel>().is_err());
        let text = format!("{MINIMAL}\n[read]\ncascade_below = 1.5\n");
        let problems = Config::parse(&text).expect_err("out of range");
        assert_eq!(problems[0].key, "read.cascade_below");
    }

    #[test]
    fn unknown_key_names_line_and_key() {
        let text = MINIMAL.replace("path = \"frames\"", "path = \"frames\"\nfsp = 10");
        let problems = Config::parse(&text).expect_err("unknown key");
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].key, "fsp");
        assert_eq!(problems[0].line, Some(9));
    }

    #[test]
    fn wrong_type_names_line() {
        let text = MINIMAL.replace("path = \"frames\"", "path = \"frames\"\nfps = \"fast\"");
        let problems = Config::parse(&text).expect_err("wrong type");
        assert_eq!(problems[0].line, Some(9));
        assert!(
            problems[0].message.contains("invalid type"),
            "{:?}",
            problems[0]
        );
    }

    #[test]
    fn out_of_range_value_names_its_line_in_the_right_camera() {
        let text = format!(
            "{MINIMAL}\n[[camera]]\nid = \"south\"\nsource = \"replay\"\npath = \"f2\"\nfps = 0\n"
        );
        let problems = Config::parse(&text).expect_err("fps 0");
        assert_eq!(problems[0].key, "camera[1].fps");
        let fps_line = text
            .lines()
            .position(|l| l.starts_with("fps = 0"))
            .expect("present")
            + 1;
        assert_eq!(problems[0].line, Some(fps_line));
    }

    #[test]
    fn plain_http_is_refused_unless_allowed() {
        let text = MINIMAL.replace("https://backend.example", "http://backend.example");
        let problems = Config::parse(&text).expect_err("http");
        assert_eq!(problems[0].key, "upload.url");
        let allowed = text.replace(
            "ca_cert = \"ca.pem\"",
            "ca_cert = \"ca.pem\"\nallow_plain_http = true",
        );
        assert!(Config::parse(&allowed).is_ok());
    }

    #[test]
    fn duplicate_camera_ids_are_reported() {
        let text =
            format!("{MINIMAL}\n[[camera]]\nid = \"north\"\nsource = \"replay\"\npath = \"x\"\n");
        let problems = Config::parse(&text).expect_err("dup");
        assert_eq!(problems[0].key, "camera[1].id");
        assert!(problems[0].line.is_some());
    }

    #[test]
    fn zone_defaults_are_all_day_every_day_in_amsterdam() {
        let cfg = Config::parse(MINIMAL).expect("valid");
        assert_eq!(cfg.zone.time_zone, "Europe/Amsterdam");
        assert_eq!(cfg.zone.days.len(), 7);
        assert_eq!(
            (cfg.zone.from.as_str(), cfg.zone.until.as_str()),
            ("00:00", "24:00")
        );
        assert_eq!(cfg.cameras[0].entering, Entering::Any);
        assert_eq!(cfg.policy.foreign_plates, ForeignPlates::Count);
        assert_eq!(cfg.policy.max_list_age_h, 48);
    }

    #[test]
    fn lists_url_must_be_https_and_have_a_file_to_save_to() {
        let cfg = Config::parse(MINIMAL).expect("valid");
        assert_eq!(cfg.policy.fetch_interval_s, 300);
        assert_eq!(cfg.policy.lists_url, None);
        let text = MINIMAL.replace(
            "[store]",
            "[policy]\nlists_url = \"http://backend.example\"\nfetch_interval_s = 0\n\n[store]",
        );
        let problems = Config::parse(&text).expect_err("bad");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "policy.lists_url",
                "policy.lists_url",
                "policy.fetch_interval_s"
            ]
        );
        assert!(problems.iter().all(|p| p.line.is_some()));
    }

    #[test]
    fn a_list_without_key_or_zone_names_the_missing_keys() {
        let text = MINIMAL.replace("[store]", "[policy]\nhit_list = \"hits.bundle\"\n\n[store]");
        let problems = Config::parse(&text).expect_err("incomplete");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["policy.public_key", "policy.hmac_keys", "zone.id"]);
    }

    #[test]
    fn bad_zone_values_name_key_and_line() {
        let text = format!(
            "{MINIMAL}\n[zone]\nid = \"ams-ze\"\ntime_zone = \"Europe/Amsterdan\"\ndays = [\"mon\", \"mo\"]\nuntil = \"25:00\"\n"
        );
        let problems = Config::parse(&text).expect_err("bad zone");
        let keys: Vec<&str> = problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["zone.time_zone", "zone.days", "zone.until"]);
        let tz_line = text
            .lines()
            .position(|l| l.starts_with("time_zone"))
            .expect("present")
            + 1;
        assert_eq!(problems[0].line, Some(tz_line));
        assert!(problems[1].message.contains("`mo`"), "{:?}", problems[1]);
        let text = MINIMAL.replace("path = \"frames\"", "path = \"frames\"\nentering = \"in\"");
        let problems = Config::parse(&text).expect_err("bad direction");
        assert_eq!(problems[0].line, Some(9));
        assert!(problems[0].message.contains("towards"), "{:?}", problems[0]);
    }

    #[test]
    fn a_bad_public_key_is_reported() {
        let text = MINIMAL.replace("[store]", "[policy]\npublic_key = \"c2hvcnQ=\"\n\n[store]");
        let problems = Config::parse(&text).expect_err("bad key");
        assert_eq!(problems[0].key, "policy.public_key");
        assert!(
            problems[0].message.contains("32 bytes"),
            "{:?}",
            problems[0]
        );
    }
}
