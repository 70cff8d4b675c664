//! Track: groups the reads of one vehicle over consecutive frames into one passage.
//!
//! One set of tracks per camera. A read joins the track whose predicted plate
//! box (last box moved on by the track's own motion) it overlaps or lies next
//! to, the text breaking ties; a track not seen for the camera's close timeout
//! closes and, with enough reads, goes out as a [`Passage`] at once. Time is the
//! frames' own capture time, so replays give the same passages on any machine.
//! Tracks hold only the one best frame, never a history of frames, and nothing
//! here is written anywhere.
//!
//! A parked or queued vehicle is read in bursts with gaps longer than the close
//! timeout. So that it makes one passage, not one per burst, each camera keeps
//! a keyed digest (never the text) of the plates it gave out, with when each
//! was last seen; a closed track whose plate is among them, seen again within
//! `merge_window_s` of a passage sure enough to be acted on, is counted as a
//! suppressed duplicate and only renews the digest. Digests live in memory
//! only and are forgotten when the window ends.
//!
//! Per camera, an optional region of interest drops plates centred outside
//! it, and optional lanes give each passage the lane holding its best plate.

pub mod stage;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Timestamp;
use crate::config::{CameraConfig, TrackConfig};
use crate::message::{BestFrame, BoxF, Direction, Passage, PlateRead, PlateText, ReadFrame};

struct TrackRead {
    plate: PlateText,
    /// The plate box's width and centre height, for the direction of travel.
    width: f32,
    y: f32,
}

struct Track {
    camera: Arc<str>,
    first_seen: Timestamp,
    last_seen: Timestamp,
    last_frame_seq: u64,
    frames: u32,
    reads: Vec<TrackRead>,
    last_box: BoxF,
    /// Smoothed motion of the box centre, pixels per millisecond.
    velocity: (f32, f32),
    best: BestFrame,
    best_score: f32,
    /// The text of the most confident read so far, and its confidence.
    lead_text: String,
    lead_confidence: f32,
    /// The distinct texts read so far (few: one plate, a misread or two).
    texts: Vec<String>,
}

impl Track {
    /// Where the plate should be at `now` if it kept its motion. The gap is
    /// capped so that a track unseen for a while is not predicted off-screen.
    fn predicted_box(&self, now: Duration) -> BoxF {
        let dt = now.saturating_sub(self.last_seen.mono).as_secs_f32() * 1000.0;
        let dt = dt.min(MAX_PREDICT_MS);
        let (dx, dy) = (self.velocity.0 * dt, self.velocity.1 * dt);
        let b = self.last_box;
        BoxF {
            x1: b.x1 + dx,
            y1: b.y1 + dy,
            x2: b.x2 + dx,
            y2: b.y2 + dy,
        }
    }
}

/// A camera's own settings: region of interest, lanes (polygons in frame
/// pixels), reads a passage needs and the close timeout.
struct CameraSettings {
    roi: Option<Vec<[f32; 2]>>,
    lanes: Vec<(u32, Vec<[f32; 2]>)>,
    min_reads: u32,
    close_after: Duration,
}

impl CameraSettings {
    fn admits(&self, b: &BoxF) -> bool {
        let (x, y) = b.center();
        self.roi.as_ref().is_none_or(|roi| contains(roi, x, y))
    }

    fn lane_of(&self, b: &BoxF) -> Option<u32> {
        let (x, y) = b.center();
        self.lanes
            .iter()
            .find(|(_, poly)| contains(poly, x, y))
            .map(|(id, _)| *id)
    }
}

/// Whether point `(x, y)` lies inside the polygon (even-odd rule).
fn contains(poly: &[[f32; 2]], x: f32, y: f32) -> bool {
    let mut inside = false;
    let mut j = poly.len().wrapping_sub(1);
    for (i, &[xi, yi]) in poly.iter().enumerate() {
        let [xj, yj] = poly[j];
        if (yi > y) != (yj > y) && x < (xj - xi) * (y - yi) / (yj - yi) + xi {
            inside = !inside;
        }
        j = i;
    }
    inside
}

/// The trackers of all cameras.
pub struct Tracker {
    /// Settings of cameras without their own.
    default: CameraSettings,
    cameras: HashMap<String, CameraSettings>,
    merge_window: Duration,
    tracks: HashMap<Arc<str>, Vec<Track>>,
    /// Per camera: keyed digest of each plate given out within the merge
    /// window, and when it was last seen.
    recent: HashMap<Arc<str>, HashMap<u64, Recent>>,
    /// A track shorter than its camera's `min_reads` still makes a passage
    /// when the passage is at least this confident.
    short_track_min_confidence: f32,
    /// A passage at least this confident is acted on downstream (the
    /// policy's `min_confidence`); only such a passage suppresses re-reads.
    sure_confidence: f32,
    /// SipHash with a key drawn at random when the tracker starts: a digest
    /// can not be matched to a plate without that key, which never leaves
    /// this process's memory.
    digest_key: RandomState,
    suppressed: u64,
}

/// A plate given out recently on one camera.
struct Recent {
    /// Monotonic time it was last seen.
    seen: Duration,
    /// Whether a passage of it was sure enough to be acted on.
    sure: bool,
}

/// Most plates remembered per camera for the merge window; past this the one
/// seen longest ago is forgotten early. At one vehicle a second, a 300 s
/// window needs 300.
pub const MAX_RECENT: usize = 4096;

/// A read this sure of its text may veto joining a track of another plate.
const CONFIDENT_READ: f32 = 0.8;
/// Reads of one plate differ by a misread or two, not more.
const MAX_TEXT_DISTANCE: usize = 2;
/// Motion is extrapolated over at most this gap (a few frames of occlusion).
const MAX_PREDICT_MS: f32 = 500.0;

/// How well a read fits a track whose plate box is `predicted` now: higher is
/// better, `None` is no fit.
fn affinity(track: &Track, predicted: &BoxF, read: &PlateRead) -> Option<f32> {
    let b = &read.detection.bbox;
    let iou = predicted.iou(b);
    let (cx, cy) = predicted.center();
    let (rx, ry) = b.center();
    let scale = predicted.width().max(b.width()).max(1.0);
    let dist = ((cx - rx).powi(2) + (cy - ry).powi(2)).sqrt() / scale;
    // A vehicle strays at most about two plate widths from where its motion
    // predicts it between frames. Checked first: it rules out most pairs
    // cheaply when many plates are in view.
    if iou <= 0.0 && dist >= 2.0 {
        return None;
    }
    // Where one vehicle leaves the view and the next enters at the same spot
    // moments later, position alone would join them: two confident reads of
    // clearly different plates never belong to one vehicle.
    if read.plate.confidence >= CONFIDENT_READ
        && track.lead_confidence >= CONFIDENT_READ
        && strsim::levenshtein(&track.lead_text, &read.plate.text) > MAX_TEXT_DISTANCE
    {
        return None;
    }
    // The text breaks ties between neighbours.
    let same_text = track.texts.contains(&read.plate.text);
    Some(iou + (2.0 - dist).max(0.0) + if same_text { 1.0 } else { 0.0 })
}

fn evidence_score(read: &PlateRead) -> f32 {
    // Prefer a confident read of a large, sharp plate: the officer must read
    // it too. Crops all have the reader's height, so their sharpness compares
    // across frames; a blurred frame of a larger plate may still win.
    read.plate.confidence
        * read.detection.bbox.width().max(1.0).sqrt()
        * (1.0 + sharpness(&read.crop)).sqrt()
}

/// Mean absolute second difference along x of the crop's green channel (a
/// stand-in for luma), on every fourth row: near 0 for a blurred or flat crop,
/// tens for crisp characters, whose strokes are mostly upright. Sampling
/// keeps it to a few thousand operations a read.
fn sharpness(crop: &image::RgbImage) -> f32 {
    let (w, h) = crop.dimensions();
    let (w, h) = (w as usize, h as usize);
    if w < 3 || h == 0 {
        return 0.0;
    }
    let raw = crop.as_raw();
    let (mut sum, mut n) = (0u64, 0u64);
    for row in raw.chunks_exact(w * 3).skip(h / 8).step_by(4) {
        // Three neighbouring pixels at a time; their greens are at 1, 4, 7.
        for p in row.windows(9).step_by(3) {
            let (a, b, c) = (i32::from(p[1]), i32::from(p[4]), i32::from(p[7]));
            sum += u64::from((2 * b - a - c).unsigned_abs());
        }
        n += (w - 2) as u64;
    }
    if n == 0 {
        0.0
    } else {
        sum as f32 / n as f32
    }
}

impl Tracker {
    /// A tracker without per-camera settings.
    pub fn new(cfg: &TrackConfig) -> Self {
        Self::with_cameras(cfg, &[])
    }

    /// A tracker using each camera's region of interest, lanes, reads a
    /// passage needs and close timeout (the last two falling back to `cfg`).
    pub fn with_cameras(cfg: &TrackConfig, cameras: &[CameraConfig]) -> Self {
        let cameras = cameras
            .iter()
            .map(|c| {
                let s = CameraSettings {
                    roi: c.roi.clone(),
                    lanes: c.lanes.iter().map(|l| (l.id, l.polygon.clone())).collect(),
                    min_reads: c.min_reads.unwrap_or(cfg.min_reads).max(1),
                    close_after: Duration::from_millis(
                        c.close_after_ms.unwrap_or(cfg.close_after_ms),
                    ),
                };
                (c.id.clone(), s)
            })
            .collect();
        Tracker {
            default: CameraSettings {
                roi: None,
                lanes: Vec::new(),
                min_reads: cfg.min_reads.max(1),
                close_after: Duration::from_millis(cfg.close_after_ms),
            },
            cameras,
            merge_window: Duration::from_secs(cfg.merge_window_s),
            tracks: HashMap::new(),
            recent: HashMap::new(),
            short_track_min_confidence: cfg.short_track_min_confidence,
            sure_confidence: 0.0,
            digest_key: RandomState::new(),
            suppressed: 0,
        }
    }

    /// Only passages at least this confident suppress later re-reads of
    /// their plate; pass the policy's `min_confidence`. A parked vehicle
    /// first read too unsurely to be acted on thus still gets a passage from
    /// a better later read, and at most one sure one per window. Default 0:
    /// every passage suppresses.
    pub fn with_sure_confidence(mut self, min_confidence: f32) -> Self {
        self.sure_confidence = min_confidence;
        self
    }

    fn settings(&self, camera: &str) -> &CameraSettings {
        self.cameras.get(camera).unwrap_or(&self.default)
    }

    /// Takes one frame's reads; returns passages of tracks that this frame's
    /// time shows to have ended.
    pub fn push(&mut self, frame: &ReadFrame) -> Vec<Passage> {
        let now = frame.frame.captured;
        let camera = &frame.frame.camera;
        let mut done = self.close_idle(camera, now.mono);
        let settings = self.cameras.get(&**camera).unwrap_or(&self.default);
        let reads: Vec<&PlateRead> = frame
            .reads
            .iter()
            .filter(|r| settings.admits(&r.detection.bbox))
            .collect();
        let tracks = self.tracks.entry(camera.clone()).or_default();
        let mut taken = vec![false; tracks.len()];
        // Greedy assignment, strongest pairs first, so two plates in view at once
        // never share a track.
        let predicted: Vec<BoxF> = tracks.iter().map(|t| t.predicted_box(now.mono)).collect();
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ri, read) in reads.iter().enumerate() {
            for (ti, (t, p)) in tracks.iter().zip(&predicted).enumerate() {
                if let Some(a) = affinity(t, p, read) {
                    pairs.push((a, ri, ti));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut assigned: Vec<Option<usize>> = vec![None; reads.len()];
        for (_, ri, ti) in pairs {
            if assigned[ri].is_none() && !taken[ti] {
                assigned[ri] = Some(ti);
                taken[ti] = true;
            }
        }
        for (read, slot) in reads.into_iter().zip(assigned) {
            let b = read.detection.bbox;
            let best_here = BestFrame {
                captured: now,
                frame_seq: frame.frame.seq,
                image: frame.frame.image.clone(),
                plate_box: b,
                crop: read.crop.clone(),
            };
            let tr = TrackRead {
                plate: read.plate.clone(),
                width: b.width(),
                y: b.center().1,
            };
            match slot {
                Some(ti) => {
                    let t = &mut tracks[ti];
                    let dt = now.mono.saturating_sub(t.last_seen.mono).as_secs_f32() * 1000.0;
                    if dt > 0.0 {
                        let (ox, oy) = t.last_box.center();
                        let (nx, ny) = b.center();
                        let v = ((nx - ox) / dt, (ny - oy) / dt);
                        // The first step sets the motion; later ones smooth it,
                        // so one jittery box does not throw the prediction off.
                        t.velocity = if t.reads.len() == 1 {
                            v
                        } else {
                            ((t.velocity.0 + v.0) / 2.0, (t.velocity.1 + v.1) / 2.0)
                        };
                    }
                    t.last_seen = now;
                    if t.last_frame_seq != frame.frame.seq {
                        t.frames += 1;
                        t.last_frame_seq = frame.frame.seq;
                    }
                    t.last_box = b;
                    if read.plate.confidence > t.lead_confidence {
                        t.lead_confidence = read.plate.confidence;
                        t.lead_text = read.plate.text.clone();
                    }
                    if !t.texts.contains(&read.plate.text) {
                        t.texts.push(read.plate.text.clone());
                    }
                    t.reads.push(tr);
                    let score = evidence_score(read);
                    if score > t.best_score {
                        t.best_score = score;
                        t.best = best_here;
                    }
                }
                None => tracks.push(Track {
                    camera: camera.clone(),
                    first_seen: now,
                    last_seen: now,
                    last_frame_seq: frame.frame.seq,
                    frames: 1,
                    reads: vec![tr],
                    last_box: b,
                    velocity: (0.0, 0.0),
                    best: best_here,
                    best_score: evidence_score(read),
                    lead_text: read.plate.text.clone(),
                    lead_confidence: read.plate.confidence,
                    texts: vec![read.plate.text.clone()],
                }),
            }
        }
        done.extend(self.close_idle(camera, now.mono));
        done
    }

    /// Closes tracks of every camera that have not been seen for their
    /// camera's close timeout at monotonic time `now` (for when frames stop
    /// coming), and forgets plates whose merge window has ended.
    pub fn tick(&mut self, now: Duration) -> Vec<Passage> {
        let mut cams: Vec<Arc<str>> = self.tracks.keys().cloned().collect();
        cams.extend(
            self.recent
                .keys()
                .filter(|c| !self.tracks.contains_key(*c))
                .cloned(),
        );
        cams.iter().flat_map(|c| self.close_idle(c, now)).collect()
    }

    /// Closes every open track of one camera (it stopped delivering frames)
    /// and forgets its recent plates.
    pub fn close_camera(&mut self, camera: &str) -> Vec<Passage> {
        let gone = self.tracks.remove(camera).unwrap_or_default();
        let out = gone.into_iter().filter_map(|t| self.finish(t)).collect();
        self.recent.remove(camera);
        out
    }

    /// Closes every open track (end of stream or shutdown) and forgets every
    /// recent plate.
    pub fn flush(&mut self) -> Vec<Passage> {
        let mut gone: Vec<Track> = self.tracks.drain().flat_map(|(_, ts)| ts).collect();
        gone.sort_by_key(|t| t.last_seen.mono);
        let out = gone.into_iter().filter_map(|t| self.finish(t)).collect();
        self.recent.clear();
        out
    }

    /// Open tracks over all cameras.
    pub fn open_tracks(&self) -> usize {
        self.tracks.values().map(Vec::len).sum()
    }

    /// Plate digests remembered for the merge window, over all cameras.
    pub fn remembered_plates(&self) -> usize {
        self.recent.values().map(HashMap::len).sum()
    }

    /// Closed tracks suppressed as re-reads of a recent passage since the
    /// last call (for the `duplicates_suppressed` counter).
    pub fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }

    fn close_idle(&mut self, camera: &Arc<str>, now: Duration) -> Vec<Passage> {
        let mut out = Vec::new();
        let close_after = self.settings(camera).close_after;
        if let Some(tracks) = self.tracks.get_mut(camera) {
            let (mut gone, kept): (Vec<Track>, Vec<Track>) = tracks
                .drain(..)
                .partition(|t| now.saturating_sub(t.last_seen.mono) > close_after);
            *tracks = kept;
            gone.sort_by_key(|t| t.last_seen.mono);
            out.extend(gone.into_iter().filter_map(|t| self.finish(t)));
        }
        let window = self.merge_window;
        let expired = |r: &Recent| now.saturating_sub(r.seen) > window;
        if let Some(recent) = self
            .recent
            .get_mut(camera)
            .filter(|r| r.values().any(expired))
        {
            // A plate still in view (a vehicle read without a break for longer
            // than the window) keeps its digest until its track closes.
            let in_view: Vec<u64> = self
                .tracks
                .get(camera)
                .into_iter()
                .flatten()
                .map(|t| self.digest_key.hash_one(t.lead_text.as_str()))
                .collect();
            recent.retain(|d, r| !expired(r) || in_view.contains(d));
            if recent.is_empty() {
                self.recent.remove(camera);
            }
        }
        out
    }

    /// Turns a closed track into a passage, unless it is too short or a sure
    /// passage of its plate was given out on this camera within the merge
    /// window (a parked or queued vehicle read again): then it only renews
    /// that plate's digest.
    fn finish(&mut self, t: Track) -> Option<Passage> {
        let settings = self.settings(&t.camera);
        let reads = t.reads.len() as u32;
        let mut passage = into_passage(t)?;
        let enough = reads >= settings.min_reads
            || passage.plate.confidence >= self.short_track_min_confidence;
        passage.lane = settings.lane_of(&passage.best.plate_box);
        if self.merge_window.is_zero() {
            return enough.then_some(passage);
        }
        let digest = self.digest_key.hash_one(passage.plate.text.as_str());
        let window = self.merge_window;
        let sure = passage.plate.confidence >= self.sure_confidence;
        let recent = self.recent.entry(passage.camera.clone()).or_default();
        if let Some(r) = recent.get_mut(&digest) {
            if passage.first_seen.mono.saturating_sub(r.seen) <= window {
                r.seen = r.seen.max(passage.last_seen.mono);
                if r.sure || !enough {
                    self.suppressed += u64::from(enough);
                    return None;
                }
                r.sure = sure;
                return Some(passage);
            }
        }
        if !enough {
            return None;
        }
        if recent.len() >= MAX_RECENT {
            let oldest = recent.iter().min_by_key(|(_, r)| r.seen).map(|(k, _)| *k);
            if let Some(k) = oldest {
                recent.remove(&k);
            }
        }
        recent.insert(
            digest,
            Recent {
                seen: passage.last_seen.mono,
                sure,
            },
        );
        Some(passage)
    }
}

/// Votes the track's reads into one text, per character position: first the
/// length that carries most confidence, then at each position the character
/// whose reads' confidences sum highest. A plate misread differently in
/// different frames thus still comes out right. A character's confidence is
/// the mean of the reads' confidences in it, each read weighted by its own
/// confidence and a read of another character counting as 0: disagreement
/// lowers it, while a faint early read of a distant plate that agrees drags
/// it down less than the sure reads hold it up. The plate's is the lowest
/// character's, scaled by the share of reads that agreed on the length.
fn into_passage(t: Track) -> Option<Passage> {
    let mut by_length: Vec<(usize, f32)> = Vec::new();
    for r in &t.reads {
        let n = r.plate.text.chars().count();
        match by_length.iter_mut().find(|l| l.0 == n) {
            Some(l) => l.1 += r.plate.confidence,
            None => by_length.push((n, r.plate.confidence)),
        }
    }
    by_length.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    let total: f32 = by_length.iter().map(|l| l.1).sum();
    let &(length, length_weight) = by_length.first()?;
    let same_length: Vec<&TrackRead> = t
        .reads
        .iter()
        .filter(|r| r.plate.text.chars().count() == length)
        .collect();
    let mut text = String::with_capacity(length);
    let mut char_confidences = Vec::with_capacity(length);
    for pos in 0..length {
        // (character, summed confidence, summed squared confidence)
        let mut tally: Vec<(char, f32, f32)> = Vec::new();
        for r in &same_length {
            let c = r.plate.text.chars().nth(pos)?;
            let conf = r
                .plate
                .char_confidences
                .get(pos)
                .copied()
                .unwrap_or(r.plate.confidence);
            match tally.iter_mut().find(|x| x.0 == c) {
                Some(x) => {
                    x.1 += conf;
                    x.2 += conf * conf;
                }
                None => tally.push((c, conf, conf * conf)),
            }
        }
        let weight: f32 = tally.iter().map(|x| x.1).sum();
        tally.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let &(c, _, squares) = tally.first()?;
        text.push(c);
        char_confidences.push(if weight > 0.0 { squares / weight } else { 0.0 });
    }
    let min_char = char_confidences.iter().copied().fold(1.0f32, f32::min);
    let confidence = if total > 0.0 {
        min_char * (length_weight / total)
    } else {
        0.0
    };
    let mut alternatives: Vec<(String, f32)> = Vec::new();
    for r in t.reads.iter().filter(|r| r.plate.text != text) {
        match alternatives.iter_mut().find(|a| a.0 == r.plate.text) {
            Some(a) => a.1 += r.plate.confidence,
            None => alternatives.push((r.plate.text.clone(), r.plate.confidence)),
        }
    }
    alternatives.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let country = country_of(&t.reads, &text);
    let direction = direction(&t.reads);
    Some(Passage {
        camera: t.camera,
        first_seen: t.first_seen,
        last_seen: t.last_seen,
        frames: t.frames,
        reads: t.reads.len() as u32,
        plate: PlateText {
            text,
            char_confidences,
            confidence,
            country,
        },
        alternatives,
        direction,
        lane: None,
        best: t.best,
    })
}

/// The country most of the reads of the chosen text were recognised as; a
/// read of another text says nothing about this plate's country.
fn country_of(reads: &[TrackRead], text: &str) -> Option<&'static str> {
    let mut votes: Vec<(&'static str, usize)> = Vec::new();
    for c in reads
        .iter()
        .filter(|r| r.plate.text == text)
        .filter_map(|r| r.plate.country)
    {
        match votes.iter_mut().find(|v| v.0 == c) {
            Some(v) => v.1 += 1,
            None => votes.push((c, 1)),
        }
    }
    votes.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    votes.first().map(|v| v.0)
}

/// The way a plate travelled, from its reads in time order: a plate that
/// grows comes towards the camera, one that shrinks goes away. The first and
/// last few reads are averaged so that one badly cut box does not decide.
/// Where the size barely changes (a plate seen across the view rather than
/// along it), a plate moving down the frame by more than half its width is
/// taken to come nearer, as on a camera mounted above the road looking along
/// it; otherwise the direction is unknown.
fn direction(reads: &[TrackRead]) -> Direction {
    let n = (reads.len() / 3).clamp(1, 3);
    let (Some(head), Some(tail)) = (reads.get(..n), reads.get(reads.len().saturating_sub(n)..))
    else {
        return Direction::Unknown;
    };
    let mean = |rs: &[TrackRead], f: fn(&TrackRead) -> f32| {
        rs.iter().map(f).sum::<f32>() / rs.len().max(1) as f32
    };
    let (w0, w1) = (mean(head, |r| r.width), mean(tail, |r| r.width));
    let growth = w1 / w0.max(1.0);
    if growth > 1.1 {
        return Direction::Towards;
    }
    if growth < 0.9 {
        return Direction::Away;
    }
    let drop = mean(tail, |r| r.y) - mean(head, |r| r.y);
    if drop > w0 / 2.0 {
        Direction::Towards
    } else if -drop > w0 / 2.0 {
        Direction::Away
    } else {
        Direction::Unknown
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SyncState;
    use crate::message::{Detection, Frame};
    use image::RgbImage;

    fn at(ms: u64) -> Timestamp {
        Timestamp {
            mono: Duration::from_millis(ms),
            wall: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("valid")
                + chrono::Duration::milliseconds(ms as i64),
            sync: SyncState {
                synchronised: true,
                max_error_us: 1000,
            },
        }
    }

    fn read(text: &str, x: f32, w: f32, conf: f32) -> PlateRead {
        let bbox = BoxF {
            x1: x,
            y1: 500.0,
            x2: x + w,
            y2: 500.0 + w / 4.5,
        };
        PlateRead {
            detection: Detection {
                bbox,
                corners: [
                    (bbox.x1, bbox.y1),
                    (bbox.x2, bbox.y1),
                    (bbox.x2, bbox.y2),
                    (bbox.x1, bbox.y2),
                ],
                score: 0.5,
            },
            plate: PlateText {
                text: text.into(),
                char_confidences: vec![conf; text.len()],
                confidence: conf,
                country: None,
            },
            crop: Arc::new(RgbImage::new(1, 1)),
        }
    }

    fn frame(cam: &str, seq: u64, ms: u64, reads: Vec<PlateRead>) -> ReadFrame {
        ReadFrame {
            frame: Frame {
                camera: cam.into(),
                seq,
                captured: at(ms),
                image: Arc::new(RgbImage::new(1, 1)),
            },
            reads,
        }
    }

    fn cfg() -> TrackConfig {
        TrackConfig {
            close_after_ms: 1000,
            min_reads: 2,
            short_track_min_confidence: 0.95,
            merge_window_s: 0,
        }
    }

    #[test]
    fn a_passing_vehicle_yields_one_passage_with_the_voted_text() {
        let mut t = Tracker::new(&cfg());
        let mut out = Vec::new();
        for i in 0..8u64 {
            // One frame in four misreads a character.
            let text = if i % 4 == 1 { "VBX12D" } else { "VBX12P" };
            out.extend(t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read(
                    text,
                    100.0 + i as f32 * 40.0,
                    120.0 + i as f32 * 8.0,
                    0.9,
                )],
            )));
        }
        assert!(out.is_empty(), "still in view");
        out.extend(t.tick(Duration::from_millis(700 + 1001)));
        assert_eq!(out.len(), 1);
        let p = &out[0];
        assert_eq!(p.plate.text, "VBX12P");
        assert_eq!((p.reads, p.frames), (8, 8));
        assert_eq!(p.alternatives.len(), 1);
        assert_eq!(p.direction, Direction::Towards);
        assert!(
            p.plate.confidence < 0.9 && p.plate.confidence > 0.6,
            "{}",
            p.plate.confidence
        );
        assert_eq!(p.first_seen.mono, Duration::ZERO);
        assert_eq!(p.last_seen.mono, Duration::from_millis(700));
        assert_eq!(p.best.frame_seq, 7, "largest plate at equal confidence");
    }

    #[test]
    fn the_passage_takes_the_country_of_the_reads_of_its_text() {
        let mut t = Tracker::new(&cfg());
        let with = |text: &str, country| {
            let mut r = read(text, 100.0, 150.0, 0.9);
            r.plate.country = country;
            r
        };
        let reads = [
            with("VBX12P", Some("NL")),
            with("VBX12P", None),
            // A misread that happens to fit another country says nothing.
            with("VBX12F", Some("DE")),
            with("VBX12F", Some("DE")),
            with("VBX12P", Some("NL")),
            with("VBX12P", Some("NL")),
        ];
        for (i, r) in reads.into_iter().enumerate() {
            t.push(&frame("a", i as u64, i as u64 * 100, vec![r]));
        }
        let p = t.flush().pop().expect("one passage");
        assert_eq!(p.plate.text, "VBX12P");
        assert_eq!(p.plate.country, Some("NL"));

        let mut t = Tracker::new(&cfg());
        for i in 0..3u64 {
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read("B123CD", 100.0, 150.0, 0.9)],
            ));
        }
        let p = t.flush().pop().expect("one passage");
        assert_eq!(p.plate.country, None, "no read named a country");
    }

    #[test]
    fn per_position_voting_recovers_a_plate_no_single_frame_read_right() {
        let mut t = Tracker::new(&cfg());
        for (i, text) in ["WBX12P", "VBX1ZP", "VBX12F", "VBX12P7"].iter().enumerate() {
            t.push(&frame(
                "a",
                i as u64,
                i as u64 * 100,
                vec![read(text, 100.0, 150.0, 0.9)],
            ));
        }
        let p = t.flush().pop().expect("one passage");
        assert_eq!(p.plate.text, "VBX12P");
        assert_eq!(
            p.alternatives.len(),
            4,
            "every differing read is an alternative"
        );
        // Two of three six-character reads agree at the weakest position, and
        // one read in four had another length.
        let expected = (2.0 * 0.9 / 3.0) * (2.7 / 3.6);
        assert!(
            (p.plate.confidence - expected).abs() < 1e-4,
            "{} vs {expected}",
            p.plate.confidence
        );
    }

    #[test]
    fn two_vehicles_side_by_side_stay_separate() {
        let mut t = Tracker::new(&cfg());
        for i in 0..5u64 {
            let x = i as f32 * 10.0;
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![
                    read("AAA11B", 100.0 + x, 150.0, 0.9),
                    read("ZZ999X", 900.0 + x, 150.0, 0.9),
                ],
            ));
        }
        let mut out = t.flush();
        out.sort_by(|a, b| a.plate.text.cmp(&b.plate.text));
        let texts: Vec<&str> = out.iter().map(|p| p.plate.text.as_str()).collect();
        assert_eq!(texts, ["AAA11B", "ZZ999X"]);
        assert!(out
            .iter()
            .all(|p| p.reads == 5 && p.alternatives.is_empty()));
    }

    #[test]
    fn a_vehicle_entering_where_another_just_left_is_a_new_passage() {
        let mut t = Tracker::new(&cfg());
        // One van leaves the view at the far end, shrinking...
        for i in 0..4u64 {
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read("52RNX7", 1200.0, 90.0 - i as f32 * 4.0, 0.95)],
            ));
        }
        // ...and moments later another enters at the same spot, growing.
        for i in 4..8u64 {
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read("3TKF88", 1200.0, 70.0 + i as f32 * 4.0, 0.95)],
            ));
        }
        let mut out = t.flush();
        out.sort_by(|a, b| a.plate.text.cmp(&b.plate.text));
        let texts: Vec<&str> = out.iter().map(|p| p.plate.text.as_str()).collect();
        assert_eq!(texts, ["3TKF88", "52RNX7"]);
        assert!(out
            .iter()
            .all(|p| p.alternatives.is_empty() && p.reads == 4));
    }

    #[test]
    fn a_single_read_is_a_passage_only_when_it_is_sure() {
        let mut t = Tracker::new(&cfg());
        t.push(&frame("a", 0, 0, vec![read("AAA11B", 100.0, 150.0, 0.9)]));
        assert!(t.tick(Duration::from_secs(5)).is_empty());
        assert_eq!(t.open_tracks(), 0);
        // A vehicle seen in one frame only, read surely, is not let off.
        t.push(&frame(
            "a",
            1,
            6000,
            vec![read("BBB22C", 100.0, 150.0, 0.97)],
        ));
        let out = t.tick(Duration::from_secs(10));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].plate.text, "BBB22C");
        assert_eq!(out[0].reads, 1);
        // Set to 1.0, a track short of `min_reads` needs certain reads.
        let mut strict = cfg();
        strict.min_reads = 4;
        strict.short_track_min_confidence = 1.0;
        let mut t = Tracker::new(&strict);
        for i in 0..3u64 {
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read("BBB22C", 100.0, 150.0, 0.97)],
            ));
        }
        assert!(t.tick(Duration::from_secs(5)).is_empty(), "below 1.0");
    }

    #[test]
    fn tracks_close_only_after_the_gap_and_per_camera() {
        let mut t = Tracker::new(&cfg());
        t.push(&frame("a", 0, 0, vec![read("AAA11B", 100.0, 150.0, 0.9)]));
        t.push(&frame("a", 1, 100, vec![read("AAA11B", 110.0, 150.0, 0.9)]));
        t.push(&frame("b", 0, 100, vec![read("BBB22C", 110.0, 150.0, 0.9)]));
        t.push(&frame("b", 1, 200, vec![read("BBB22C", 110.0, 150.0, 0.9)]));
        // A frame of camera b far later closes b's track only.
        let out = t.push(&frame("b", 2, 5000, vec![]));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].plate.text, "BBB22C");
        assert_eq!(t.open_tracks(), 1);
        let out = t.tick(Duration::from_millis(1101));
        assert_eq!(out.len(), 1);
        assert_eq!(&*out[0].camera, "a");
        t.push(&frame("c", 0, 0, vec![read("CCC33D", 110.0, 150.0, 0.9)]));
        t.push(&frame("c", 1, 100, vec![read("CCC33D", 110.0, 150.0, 0.9)]));
        let out = t.close_camera("c");
        assert_eq!(out.len(), 1, "a stalled camera's track closes at once");
        assert_eq!(t.open_tracks(), 0);
    }

    #[test]
    fn a_vehicle_moving_away_is_marked_away() {
        let mut t = Tracker::new(&cfg());
        for i in 0..6u64 {
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read(
                    "GH066X",
                    800.0 - i as f32 * 20.0,
                    200.0 - i as f32 * 15.0,
                    0.8,
                )],
            ));
        }
        let out = t.flush();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].direction, Direction::Away);
    }

    fn merging_cfg() -> TrackConfig {
        TrackConfig {
            merge_window_s: 300,
            ..cfg()
        }
    }

    fn camera(extra: &str) -> CameraConfig {
        toml::from_str(&format!(
            "id = \"a\"\nsource = \"replay\"\npath = \"f\"\n{extra}"
        ))
        .expect("camera config")
    }

    #[test]
    fn a_parked_van_yields_one_passage() {
        let mut t = Tracker::new(&merging_cfg());
        // (passage, monotonic ms of the frame that gave it out)
        let mut out: Vec<(Passage, u64)> = Vec::new();
        let mut most_remembered = 0;
        // An hour of frames at 10 per second: a car passes every 30 s on the
        // near lane; a van drives in at 10 min, stands at the far side for
        // five minutes, read only now and then (gaps far above
        // close_after_ms), drives off, and passes again at 50 min.
        let van_at = |ms: u64| -> Option<PlateRead> {
            let visit = |start: u64| -> Option<PlateRead> {
                let rel = ms.checked_sub(start)?;
                match rel {
                    // Driving in, growing.
                    0..=900 => Some(read("VAN01X", 1500.0, 100.0 + rel as f32 / 20.0, 0.9)),
                    // Parked: one read every 7 s, three in a row every 70 s.
                    901..=300_000 if rel % 7_000 == 0 || rel % 70_000 <= 200 => {
                        Some(read("VAN01X", 1500.0, 150.0, 0.85))
                    }
                    // Driving off.
                    300_001..=300_900 => Some(read(
                        "VAN01X",
                        1500.0,
                        150.0 - (rel - 300_000) as f32 / 20.0,
                        0.9,
                    )),
                    _ => None,
                }
            };
            visit(600_000).or_else(|| visit(3_000_000).filter(|_| ms < 3_000_901))
        };
        let mut suppressed = 0;
        for seq in 0..36_000u64 {
            let ms = seq * 100;
            let mut reads = Vec::new();
            let car = ms / 30_000;
            let rel = ms % 30_000;
            if rel < 800 {
                let text = format!("{:02}CAR{}", car % 100, car / 100);
                reads.push(read(
                    &text,
                    100.0 + rel as f32 / 10.0,
                    120.0 + rel as f32 / 20.0,
                    0.9,
                ));
            }
            reads.extend(van_at(ms));
            out.extend(
                t.push(&frame("a", seq, ms, reads))
                    .into_iter()
                    .map(|p| (p, ms)),
            );
            suppressed += t.take_suppressed();
            most_remembered = most_remembered.max(t.remembered_plates());
        }
        // Every passage went out within one frame of its track's close
        // timeout, none waited for the merge window.
        for (p, at) in &out {
            let waited = Duration::from_millis(*at).saturating_sub(p.last_seen.mono);
            assert!(
                waited <= Duration::from_millis(1100),
                "{} held {waited:?}",
                p.plate.text
            );
        }
        let vans: Vec<&Passage> = out
            .iter()
            .map(|(p, _)| p)
            .filter(|p| p.plate.text == "VAN01X")
            .collect();
        assert_eq!(vans.len(), 2, "one passage per visit");
        assert_eq!(vans[0].first_seen.mono, Duration::from_secs(600));
        assert_eq!(vans[0].last_seen.mono, Duration::from_millis(600_900));
        assert_eq!((vans[0].reads, vans[0].frames), (10, 10));
        assert_eq!(vans[0].direction, Direction::Towards);
        assert_eq!(vans[1].first_seen.mono, Duration::from_secs(3000));
        // The bursts of three reads while parked, and driving off.
        assert_eq!(suppressed, 4 + 1);
        assert_eq!(out.len() - vans.len(), 120, "every car once");
        assert!(out.iter().all(|(p, _)| p.alternatives.is_empty()));
        assert!(most_remembered <= 12, "digests stay few: {most_remembered}");
        assert!(t.flush().is_empty());
        assert_eq!((t.remembered_plates(), t.open_tracks()), (0, 0));
    }

    #[test]
    fn a_van_in_view_past_the_window_is_still_one_passage() {
        let mut t = Tracker::new(&merging_cfg());
        let mut out = Vec::new();
        for i in 0..3u64 {
            out.extend(t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read("VAN01X", 1500.0, 150.0, 0.9)],
            )));
        }
        // Out of sight for two seconds, then read every frame for six minutes.
        for i in 0..3_600u64 {
            let ms = 2_200 + i * 100;
            out.extend(t.push(&frame(
                "a",
                3 + i,
                ms,
                vec![read("VAN01X", 1500.0, 150.0, 0.9)],
            )));
        }
        assert_eq!(out.len(), 1, "the first sighting went out when it closed");
        assert_eq!(out[0].reads, 3);
        assert!(t.flush().is_empty(), "the long stay is a re-read");
        assert_eq!(t.take_suppressed(), 1);
    }

    #[test]
    fn a_passage_goes_out_when_its_track_closes_and_its_digest_is_forgotten_after_the_window() {
        let mut t = Tracker::new(&merging_cfg());
        let push3 = |t: &mut Tracker, cam: &str, text: &str, from_ms: u64| {
            (0..3u64)
                .flat_map(|i| {
                    t.push(&frame(
                        cam,
                        from_ms / 100 + i,
                        from_ms + i * 100,
                        vec![read(text, 100.0, 150.0, 0.9)],
                    ))
                })
                .collect::<Vec<_>>()
        };
        assert!(push3(&mut t, "a", "AAA11B", 0).is_empty());
        let out = t.tick(Duration::from_millis(1_201));
        assert_eq!(out.len(), 1, "out once closed, not after the window");
        assert_eq!(t.remembered_plates(), 1);
        // Read again 200 s later: a duplicate, which renews the window.
        push3(&mut t, "a", "AAA11B", 200_000);
        assert!(t.tick(Duration::from_millis(201_201)).is_empty());
        assert_eq!(t.take_suppressed(), 1);
        // The same plate on another camera is another passage.
        push3(&mut t, "b", "AAA11B", 250_000);
        assert_eq!(t.tick(Duration::from_millis(251_201)).len(), 1);
        assert_eq!(t.remembered_plates(), 2);
        // 300 s after it was last seen the digest is gone; a later read is a
        // new passage.
        assert!(t.tick(Duration::from_millis(500_201)).is_empty());
        assert_eq!(
            t.remembered_plates(),
            1,
            "camera b's is still in its window"
        );
        t.tick(Duration::from_millis(550_201));
        assert_eq!(t.remembered_plates(), 0);
        push3(&mut t, "a", "AAA11B", 600_000);
        assert_eq!(t.tick(Duration::from_millis(601_201)).len(), 1);
        // A stalled camera forgets its digests at once.
        assert_eq!(t.remembered_plates(), 1);
        assert!(t.close_camera("a").is_empty());
        assert_eq!(t.remembered_plates(), 0);
    }

    #[test]
    fn an_unsure_first_passage_does_not_suppress_a_better_later_one() {
        let mut t = Tracker::new(&merging_cfg()).with_sure_confidence(0.8);
        let mut out = Vec::new();
        let mut burst = |t: &mut Tracker, from_ms: u64, conf: f32| {
            for i in 0..3u64 {
                out.extend(t.push(&frame(
                    "a",
                    from_ms / 100 + i,
                    from_ms + i * 100,
                    vec![read("VAN01X", 1500.0, 150.0, conf)],
                )));
            }
        };
        // Read unsurely as it parks, surely 20 s later, then surely again.
        burst(&mut t, 0, 0.6);
        burst(&mut t, 20_000, 0.9);
        burst(&mut t, 40_000, 0.95);
        out.extend(t.flush());
        let confs: Vec<f32> = out.iter().map(|p| p.plate.confidence).collect();
        assert_eq!(confs.len(), 2, "the third is a duplicate of a sure one");
        assert!(
            (confs[0] - 0.6).abs() < 1e-5 && (confs[1] - 0.9).abs() < 1e-5,
            "{confs:?}"
        );
        assert_eq!(t.take_suppressed(), 1);
    }

    #[test]
    fn per_camera_min_reads_and_close_timeout_override_the_track_section() {
        let cam = camera("min_reads = 4\nclose_after_ms = 3000");
        let mut t = Tracker::with_cameras(&cfg(), &[cam]);
        let mut out = Vec::new();
        // Three reads, a 2 s gap, three more: one track on camera a (closes
        // after 3 s), two tracks of three reads on camera b (1 s, 2 reads).
        for (i, ms) in [0u64, 100, 200, 2200, 2300, 2400].into_iter().enumerate() {
            for cam in ["a", "b"] {
                out.extend(t.push(&frame(
                    cam,
                    i as u64,
                    ms,
                    vec![read("AAA11B", 100.0, 150.0, 0.9)],
                )));
            }
        }
        out.extend(t.tick(Duration::from_millis(5_401)));
        let mut got: Vec<(&str, u32)> = out.iter().map(|p| (&*p.camera, p.reads)).collect();
        got.sort();
        assert_eq!(got, [("a", 6), ("b", 3), ("b", 3)]);
        // On a, three reads are too few.
        for i in 0..3u64 {
            t.push(&frame(
                "a",
                10 + i,
                10_000 + i * 100,
                vec![read("BBB22C", 100.0, 150.0, 0.9)],
            ));
        }
        assert!(t.flush().is_empty());
    }

    #[test]
    fn two_vehicles_crossing_stay_separate() {
        let mut t = Tracker::new(&cfg());
        for k in 0..30u64 {
            // One drives right, one left, on the same row; their plate boxes
            // overlap around frame 15, where both are misread, so only their
            // motion tells them apart.
            let blur = (14..=16).contains(&k);
            let (ta, tb) = if blur {
                ("AB12C0", "XY34Z2")
            } else {
                ("AB12CD", "XY34ZZ")
            };
            let kf = k as f32;
            t.push(&frame(
                "a",
                k,
                k * 100,
                vec![
                    read(ta, 100.0 + 40.0 * kf, 120.0, 0.7),
                    read(tb, 1300.0 - 40.0 * kf, 100.0, 0.7),
                ],
            ));
        }
        let mut out = t.flush();
        out.sort_by(|a, b| a.plate.text.cmp(&b.plate.text));
        let got: Vec<(&str, u32, usize)> = out
            .iter()
            .map(|p| (p.plate.text.as_str(), p.reads, p.alternatives.len()))
            .collect();
        assert_eq!(got, [("AB12CD", 30, 1), ("XY34ZZ", 30, 1)]);
        assert_eq!(out[0].alternatives[0].0, "AB12C0");
        assert_eq!(out[1].alternatives[0].0, "XY34Z2");
    }

    #[test]
    fn the_best_frame_is_the_sharpest_at_equal_size_and_confidence() {
        // Dark bars on white, as characters are; the blurred copy is each
        // pixel averaged with its neighbours.
        let sharp = RgbImage::from_fn(120, 48, |x, _| {
            if x % 8 < 3 {
                image::Rgb([20, 20, 20])
            } else {
                image::Rgb([235, 235, 235])
            }
        });
        let blurred = image::imageops::blur(&sharp, 2.0);
        assert!(sharpness(&sharp) > 4.0 * sharpness(&blurred));
        let mut t = Tracker::new(&cfg());
        for i in 0..5u64 {
            let mut r = read("AAA11B", 100.0, 150.0, 0.9);
            r.crop = Arc::new(if i == 3 {
                sharp.clone()
            } else {
                blurred.clone()
            });
            t.push(&frame("a", i, i * 100, vec![r]));
        }
        let p = t.flush().pop().expect("one passage");
        assert_eq!(p.best.frame_seq, 3);
        assert_eq!(
            p.best.plate_box,
            read("AAA11B", 100.0, 150.0, 0.9).detection.bbox
        );
    }

    #[test]
    fn a_read_that_flips_one_character_in_some_frames_is_outvoted() {
        let mut t = Tracker::new(&cfg());
        for i in 0..10u64 {
            // Frames 2, 5 and 8 read the last character as 8 instead of B.
            let (text, conf) = if i % 3 == 2 {
                ("52RNX8", 0.6)
            } else {
                ("52RNXB", 0.9)
            };
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read(text, 300.0 + i as f32 * 5.0, 140.0, conf)],
            ));
        }
        let p = t.flush().pop().expect("one passage");
        assert_eq!(p.plate.text, "52RNXB");
        assert_eq!((p.reads, p.frames), (10, 10));
        // Each read gives every character its plate confidence, and weighs
        // as much: agreeing positions are the weighted mean of all ten
        // reads, the flipped one counts only the seven that read B.
        let weight = 7.0 * 0.9 + 3.0 * 0.6;
        let agree = (7.0 * 0.81 + 3.0 * 0.36) / weight;
        let last = 7.0 * 0.81 / weight;
        let want = [agree, agree, agree, agree, agree, last];
        for (got, want) in p.plate.char_confidences.iter().zip(want) {
            assert!((got - want).abs() < 1e-5, "{:?}", p.plate.char_confidences);
        }
        assert!((p.plate.confidence - last).abs() < 1e-5);
        assert_eq!(p.alternatives.len(), 1);
        assert_eq!(p.alternatives[0].0, "52RNX8");
        assert!((p.alternatives[0].1 - 1.8).abs() < 1e-5);
        assert_eq!(p.direction, Direction::Unknown, "same size, same height");
    }

    #[test]
    fn detections_outside_the_roi_are_ignored() {
        let cam = camera("roi = [[0, 0], [960, 0], [960, 1080], [0, 1080]]");
        let mut t = Tracker::with_cameras(&cfg(), &[cam]);
        for i in 0..5u64 {
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![
                    read("AAA11B", 100.0, 150.0, 0.9),
                    read("ZZ999X", 1200.0, 150.0, 0.9),
                ],
            ));
        }
        // Another camera has no region of interest.
        for i in 0..5u64 {
            t.push(&frame(
                "b",
                i,
                i * 100,
                vec![read("ZZ999X", 1200.0, 150.0, 0.9)],
            ));
        }
        let mut out = t.flush();
        out.sort_by(|a, b| a.camera.cmp(&b.camera));
        let got: Vec<(&str, &str)> = out
            .iter()
            .map(|p| (&*p.camera, p.plate.text.as_str()))
            .collect();
        assert_eq!(got, [("a", "AAA11B"), ("b", "ZZ999X")]);
    }

    #[test]
    fn a_passage_reports_its_lane() {
        let cam = camera(
            "lanes = [{ id = 1, polygon = [[0, 0], [800, 0], [800, 1080], [0, 1080]] },\n\
             { id = 2, polygon = [[800, 0], [1920, 0], [1920, 1080], [800, 1080]] }]",
        );
        let mut t = Tracker::with_cameras(&cfg(), &[cam]);
        for i in 0..6u64 {
            // Crosses into lane 2 where the plate is largest (the best frame).
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read(
                    "AAA11B",
                    600.0 + i as f32 * 60.0,
                    120.0 + i as f32 * 10.0,
                    0.9,
                )],
            ));
            t.push(&frame(
                "b",
                i,
                i * 100,
                vec![read("BBB22C", 100.0, 150.0, 0.9)],
            ));
        }
        let mut out = t.flush();
        out.sort_by(|a, b| a.camera.cmp(&b.camera));
        assert_eq!(out[0].lane, Some(2));
        assert_eq!(out[1].lane, None, "camera b has no lanes");
    }

    #[test]
    fn a_plate_occluded_for_a_few_frames_stays_one_passage() {
        let mut t = Tracker::new(&cfg());
        let mut out = Vec::new();
        for i in 0..14u64 {
            // A lorry hides the plate for frames 5 to 9 (half a second).
            let reads = if (5..10).contains(&i) {
                vec![]
            } else {
                vec![read(
                    "VBX12P",
                    100.0 + i as f32 * 20.0,
                    120.0 + i as f32 * 5.0,
                    0.9,
                )]
            };
            out.extend(t.push(&frame("a", i, i * 100, reads)));
        }
        out.extend(t.flush());
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].reads, out[0].frames), (9, 9));
        assert_eq!(out[0].direction, Direction::Towards);
    }

    #[test]
    fn a_reversing_vehicle_is_one_passage_with_direction_away() {
        let mut t = Tracker::new(&merging_cfg());
        let mut out = Vec::new();
        for i in 0..30u64 {
            // Backs slowly out of view, pausing mid-way: the plate shrinks.
            let step = if i < 10 {
                i
            } else if i < 15 {
                10
            } else {
                i - 5
            };
            let w = 220.0 - step as f32 * 6.0;
            let reads = vec![read("GH066X", 700.0 + step as f32 * 3.0, w, 0.85)];
            out.extend(t.push(&frame("a", i, i * 150, reads)));
        }
        out.extend(t.flush());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reads, 30);
        assert_eq!(out[0].direction, Direction::Away);
    }
}
