//! Track: groups the reads of one vehicle over consecutive frames into one passage.
//!
//! One set of tracks per camera. A read joins the track whose last plate box it
//! overlaps or lies next to (or, failing that, whose text it repeats); a track
//! not seen for `close_after_ms` closes, and becomes a [`Passage`] if it has
//! enough reads. Time is the frames' own capture time, so replays give the same
//! passages on any machine. Tracks hold only the one best frame, never a
//! history of frames, and nothing here is written anywhere.
//!
//! A closed passage is held back for `merge_window_s`: if the same camera
//! reads the same plate again meanwhile (a parked or queued vehicle, seen in
//! bursts with gaps longer than `close_after_ms`), the new reads join it
//! instead of making another passage. Held passages are few and small (no
//! reads, one best frame), and at most [`MAX_HELD`] per camera.
//!
//! Per camera, an optional region of interest drops plates centred outside
//! it, and optional lanes give each passage the lane holding its best plate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{CameraConfig, TrackConfig};
use crate::message::{BestFrame, BoxF, Direction, Instant2, Passage, PlateRead, ReadFrame};

struct TrackRead {
    text: String,
    char_confidences: Vec<f32>,
    confidence: f32,
}

struct Track {
    camera: Arc<str>,
    first_seen: Instant2,
    last_seen: Instant2,
    last_frame_seq: u64,
    frames: u32,
    reads: Vec<TrackRead>,
    first_box: BoxF,
    last_box: BoxF,
    best: BestFrame,
    best_score: f32,
    /// The text of the most confident read so far, and its confidence.
    lead_text: String,
    lead_confidence: f32,
}

/// A closed passage waiting out the merge window, with what a merge needs.
struct Held {
    passage: Passage,
    best_score: f32,
}

/// A camera's region of interest and lanes, as polygons in frame pixels.
#[derive(Default)]
struct CameraZones {
    roi: Option<Vec<[f32; 2]>>,
    lanes: Vec<(u32, Vec<[f32; 2]>)>,
}

impl CameraZones {
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
    close_after: Duration,
    min_reads: u32,
    merge_window: Duration,
    tracks: HashMap<Arc<str>, Vec<Track>>,
    /// Closed passages per camera, keyed by text, waiting out the merge window.
    held: HashMap<Arc<str>, HashMap<String, Held>>,
    zones: HashMap<String, CameraZones>,
}

/// Most passages held back per camera; past this the oldest goes out early.
pub const MAX_HELD: usize = 256;
/// Most alternative texts a merged passage keeps.
const MAX_ALTERNATIVES: usize = 16;

/// A read this sure of its text may veto joining a track of another plate.
const CONFIDENT_READ: f32 = 0.8;
/// Reads of one plate differ by a misread or two, not more.
const MAX_TEXT_DISTANCE: usize = 2;

/// How well a read fits a track: higher is better, `None` is no fit.
fn affinity(track: &Track, read: &PlateRead) -> Option<f32> {
    let b = &read.detection.bbox;
    let iou = track.last_box.iou(b);
    let (cx, cy) = track.last_box.center();
    let (rx, ry) = b.center();
    let scale = track.last_box.width().max(b.width()).max(1.0);
    let dist = ((cx - rx).powi(2) + (cy - ry).powi(2)).sqrt() / scale;
    let same_text = track.reads.iter().any(|r| r.text == read.text);
    // Where one vehicle leaves the view and the next enters at the same spot
    // moments later, position alone would join them: two confident reads of
    // clearly different plates never belong to one vehicle.
    if read.confidence >= CONFIDENT_READ
        && track.lead_confidence >= CONFIDENT_READ
        && strsim::levenshtein(&track.lead_text, &read.text) > MAX_TEXT_DISTANCE
    {
        return None;
    }
    // A vehicle moves at most about two plate widths between frames at the
    // frame rates cameras run at; the text breaks ties between neighbours.
    if iou > 0.0 || dist < 2.0 {
        Some(iou + (2.0 - dist).max(0.0) + if same_text { 1.0 } else { 0.0 })
    } else {
        None
    }
}

fn evidence_score(read: &PlateRead) -> f32 {
    // Prefer a confident read of a large plate: the officer must read it too.
    read.confidence * read.detection.bbox.width().max(1.0).sqrt()
}

impl Tracker {
    /// A tracker without per-camera regions of interest or lanes.
    pub fn new(cfg: &TrackConfig) -> Self {
        Self::with_cameras(cfg, &[])
    }

    /// A tracker using each camera's region of interest and lanes.
    pub fn with_cameras(cfg: &TrackConfig, cameras: &[CameraConfig]) -> Self {
        let zones = cameras
            .iter()
            .map(|c| {
                let z = CameraZones {
                    roi: c.roi.clone(),
                    lanes: c.lanes.iter().map(|l| (l.id, l.polygon.clone())).collect(),
                };
                (c.id.clone(), z)
            })
            .collect();
        Tracker {
            close_after: Duration::from_millis(cfg.close_after_ms),
            min_reads: cfg.min_reads.max(1),
            merge_window: Duration::from_secs(cfg.merge_window_s),
            tracks: HashMap::new(),
            held: HashMap::new(),
            zones,
        }
    }

    /// Takes one frame's reads; returns passages of tracks that this frame's
    /// time shows to have ended.
    pub fn push(&mut self, frame: &ReadFrame) -> Vec<Passage> {
        let now = frame.frame.captured;
        let mut done = self.close_idle(&frame.frame.camera, now.mono);
        let zones = self.zones.get(&*frame.frame.camera);
        let reads: Vec<&PlateRead> = frame
            .reads
            .iter()
            .filter(|r| zones.is_none_or(|z| z.admits(&r.detection.bbox)))
            .collect();
        let tracks = self.tracks.entry(frame.frame.camera.clone()).or_default();
        let mut taken = vec![false; tracks.len()];
        // Greedy assignment, strongest pairs first, so two plates in view at once
        // never share a track.
        let mut pairs: Vec<(f32, usize, usize)> = Vec::new();
        for (ri, read) in reads.iter().enumerate() {
            for (ti, t) in tracks.iter().enumerate() {
                if let Some(a) = affinity(t, read) {
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
            let best_here = BestFrame {
                captured: now,
                frame_seq: frame.frame.seq,
                image: frame.frame.image.clone(),
                plate_box: read.detection.bbox,
                crop: read.crop.clone(),
            };
            let tr = TrackRead {
                text: read.text.clone(),
                char_confidences: read.char_confidences.clone(),
                confidence: read.confidence,
            };
            match slot {
                Some(ti) => {
                    let t = &mut tracks[ti];
                    t.last_seen = now;
                    if t.last_frame_seq != frame.frame.seq {
                        t.frames += 1;
                        t.last_frame_seq = frame.frame.seq;
                    }
                    t.last_box = read.detection.bbox;
                    if read.confidence > t.lead_confidence {
                        t.lead_confidence = read.confidence;
                        t.lead_text = read.text.clone();
                    }
                    t.reads.push(tr);
                    let score = evidence_score(read);
                    if score > t.best_score {
                        t.best_score = score;
                        t.best = best_here;
                    }
                }
                None => tracks.push(Track {
                    camera: frame.frame.camera.clone(),
                    first_seen: now,
                    last_seen: now,
                    last_frame_seq: frame.frame.seq,
                    frames: 1,
                    reads: vec![tr],
                    first_box: read.detection.bbox,
                    last_box: read.detection.bbox,
                    best: best_here,
                    best_score: evidence_score(read),
                    lead_text: read.text.clone(),
                    lead_confidence: read.confidence,
                }),
            }
        }
        done.extend(self.close_idle(&frame.frame.camera, now.mono));
        done
    }

    /// Closes tracks of every camera that have not been seen for
    /// `close_after` at monotonic time `now` (for when frames stop coming).
    pub fn tick(&mut self, now: Duration) -> Vec<Passage> {
        let cams: Vec<Arc<str>> = self.tracks.keys().cloned().collect();
        cams.iter().flat_map(|c| self.close_idle(c, now)).collect()
    }

    /// Closes every open track of one camera (it stopped delivering frames),
    /// and gives out its held passages.
    pub fn close_camera(&mut self, camera: &str) -> Vec<Passage> {
        let gone = self.tracks.remove(camera).unwrap_or_default();
        let mut out: Vec<Passage> = gone.into_iter().filter_map(|t| self.finish(t)).collect();
        out.extend(
            self.held
                .remove(camera)
                .into_iter()
                .flat_map(|h| h.into_values())
                .map(|h| h.passage),
        );
        out
    }

    /// Closes every open track and gives out every held passage (end of
    /// stream or shutdown).
    pub fn flush(&mut self) -> Vec<Passage> {
        let gone: Vec<Track> = self.tracks.drain().flat_map(|(_, ts)| ts).collect();
        let mut out: Vec<Passage> = gone.into_iter().filter_map(|t| self.finish(t)).collect();
        out.extend(
            self.held
                .drain()
                .flat_map(|(_, h)| h.into_values())
                .map(|h| h.passage),
        );
        out
    }

    /// Open tracks over all cameras.
    pub fn open_tracks(&self) -> usize {
        self.tracks.values().map(Vec::len).sum()
    }

    /// Closed passages held back for the merge window, over all cameras.
    pub fn held_passages(&self) -> usize {
        self.held.values().map(HashMap::len).sum()
    }

    fn close_idle(&mut self, camera: &Arc<str>, now: Duration) -> Vec<Passage> {
        let mut out = Vec::new();
        if let Some(tracks) = self.tracks.get_mut(camera) {
            let close_after = self.close_after;
            let (gone, kept): (Vec<Track>, Vec<Track>) = tracks
                .drain(..)
                .partition(|t| now.saturating_sub(t.last_seen.mono) > close_after);
            *tracks = kept;
            out.extend(gone.into_iter().filter_map(|t| self.finish(t)));
        }
        if let Some(held) = self.held.get_mut(camera) {
            let window = self.merge_window;
            // A held passage whose plate is in view again waits for that track.
            let open = self.tracks.get(camera);
            let in_view =
                |text: &str| open.is_some_and(|ts| ts.iter().any(|t| t.lead_text == text));
            let expired: Vec<String> = held
                .iter()
                .filter(|(k, h)| {
                    now.saturating_sub(h.passage.last_seen.mono) > window && !in_view(k)
                })
                .map(|(k, _)| k.clone())
                .collect();
            let mut gone: Vec<Passage> = expired
                .iter()
                .filter_map(|k| held.remove(k))
                .map(|h| h.passage)
                .collect();
            gone.sort_by_key(|p| p.last_seen.mono);
            out.extend(gone);
        }
        out
    }

    /// Turns a closed track into a passage: merged into a held passage of
    /// the same text, held back for the merge window, or (without a window)
    /// given out at once. A track too short to be a passage of its own may
    /// still join a held one.
    fn finish(&mut self, t: Track) -> Option<Passage> {
        let enough = t.reads.len() as u32 >= self.min_reads;
        let best_score = t.best_score;
        let mut passage = into_passage(t, 1)?;
        passage.lane = self
            .zones
            .get(&*passage.camera)
            .and_then(|z| z.lane_of(&passage.best.plate_box));
        if self.merge_window.is_zero() {
            return enough.then_some(passage);
        }
        let held = self.held.entry(passage.camera.clone()).or_default();
        if let Some(old) = held.get_mut(&passage.text) {
            merge(
                old,
                Held {
                    passage,
                    best_score,
                },
            );
            return None;
        }
        if !enough {
            return None;
        }
        let mut evicted = None;
        if held.len() >= MAX_HELD {
            let oldest = held
                .iter()
                .min_by_key(|(_, h)| h.passage.last_seen.mono)
                .map(|(k, _)| k.clone());
            evicted = oldest.and_then(|k| held.remove(&k)).map(|h| h.passage);
        }
        held.insert(
            passage.text.clone(),
            Held {
                passage,
                best_score,
            },
        );
        evicted
    }
}

/// Joins a later passage of the same plate on the same camera into a held one.
fn merge(old: &mut Held, new: Held) {
    let (a, b) = (&mut old.passage, new.passage);
    let (wa, wb) = (a.reads as f32, b.reads as f32);
    let w = (wa + wb).max(1.0);
    for (ca, cb) in a.char_confidences.iter_mut().zip(&b.char_confidences) {
        *ca = (*ca * wa + cb * wb) / w;
    }
    a.confidence = (a.confidence * wa + b.confidence * wb) / w;
    if b.first_seen.mono < a.first_seen.mono {
        a.first_seen = b.first_seen;
    }
    if b.last_seen.mono > a.last_seen.mono {
        a.last_seen = b.last_seen;
    }
    a.frames += b.frames;
    a.reads += b.reads;
    for (text, c) in b.alternatives {
        match a.alternatives.iter_mut().find(|x| x.0 == text) {
            Some(x) => x.1 += c,
            None => a.alternatives.push((text, c)),
        }
    }
    a.alternatives
        .sort_by(|x, y| y.1.total_cmp(&x.1).then_with(|| x.0.cmp(&y.0)));
    a.alternatives.truncate(MAX_ALTERNATIVES);
    // The way it first moved is the way it travelled; a parked vehicle's
    // later reads rarely tell it.
    if a.direction == Direction::Unknown {
        a.direction = b.direction;
    }
    if new.best_score > old.best_score {
        old.best_score = new.best_score;
        a.best = b.best;
        a.lane = b.lane;
    }
}

/// Votes the track's reads into one text, per character position: first the
/// length that carries most confidence, then at each position the character
/// whose reads' confidences sum highest. A plate misread differently in
/// different frames thus still comes out right. A character's confidence is
/// its summed confidence over all reads of that length, so disagreement lowers
/// it; the plate's is the lowest character's, scaled by the share of reads
/// that agreed on the length.
fn into_passage(t: Track, min_reads: u32) -> Option<Passage> {
    if (t.reads.len() as u32) < min_reads {
        return None;
    }
    let mut by_length: Vec<(usize, f32)> = Vec::new();
    for r in &t.reads {
        let n = r.text.chars().count();
        match by_length.iter_mut().find(|l| l.0 == n) {
            Some(l) => l.1 += r.confidence,
            None => by_length.push((n, r.confidence)),
        }
    }
    by_length.sort_by(|a, b| b.1.total_cmp(&a.1).then(b.0.cmp(&a.0)));
    let total: f32 = by_length.iter().map(|l| l.1).sum();
    let &(length, length_weight) = by_length.first()?;
    let same_length: Vec<&TrackRead> = t
        .reads
        .iter()
        .filter(|r| r.text.chars().count() == length)
        .collect();
    let mut text = String::with_capacity(length);
    let mut char_confidences = Vec::with_capacity(length);
    for pos in 0..length {
        let mut tally: Vec<(char, f32)> = Vec::new();
        for r in &same_length {
            let c = r.text.chars().nth(pos)?;
            let conf = r.char_confidences.get(pos).copied().unwrap_or(r.confidence);
            match tally.iter_mut().find(|x| x.0 == c) {
                Some(x) => x.1 += conf,
                None => tally.push((c, conf)),
            }
        }
        tally.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let (c, sum) = *tally.first()?;
        text.push(c);
        char_confidences.push(sum / same_length.len() as f32);
    }
    let min_char = char_confidences.iter().copied().fold(1.0f32, f32::min);
    let confidence = if total > 0.0 {
        min_char * (length_weight / total)
    } else {
        0.0
    };
    let mut alternatives: Vec<(String, f32)> = Vec::new();
    for r in t.reads.iter().filter(|r| r.text != text) {
        match alternatives.iter_mut().find(|a| a.0 == r.text) {
            Some(a) => a.1 += r.confidence,
            None => alternatives.push((r.text.clone(), r.confidence)),
        }
    }
    alternatives.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let growth = t.last_box.width() / t.first_box.width().max(1.0);
    let direction = if growth > 1.1 {
        Direction::Towards
    } else if growth < 0.9 {
        Direction::Away
    } else {
        Direction::Unknown
    };
    Some(Passage {
        camera: t.camera,
        first_seen: t.first_seen,
        last_seen: t.last_seen,
        frames: t.frames,
        reads: t.reads.len() as u32,
        text,
        char_confidences,
        confidence,
        alternatives,
        direction,
        lane: None,
        best: t.best,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SyncState;
    use crate::message::{Detection, Frame};
    use image::RgbImage;

    fn at(ms: u64) -> Instant2 {
        Instant2 {
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
            text: text.into(),
            char_confidences: vec![conf; text.len()],
            confidence: conf,
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
        assert_eq!(p.text, "VBX12P");
        assert_eq!((p.reads, p.frames), (8, 8));
        assert_eq!(p.alternatives.len(), 1);
        assert_eq!(p.direction, Direction::Towards);
        assert!(p.confidence < 0.9 && p.confidence > 0.6, "{}", p.confidence);
        assert_eq!(p.first_seen.mono, Duration::ZERO);
        assert_eq!(p.last_seen.mono, Duration::from_millis(700));
        assert_eq!(p.best.frame_seq, 7, "largest plate at equal confidence");
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
        assert_eq!(p.text, "VBX12P");
        assert_eq!(
            p.alternatives.len(),
            4,
            "every differing read is an alternative"
        );
        // Two of three six-character reads agree at the weakest position, and
        // one read in four had another length.
        let expected = (2.0 * 0.9 / 3.0) * (2.7 / 3.6);
        assert!(
            (p.confidence - expected).abs() < 1e-4,
            "{} vs {expected}",
            p.confidence
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
        out.sort_by(|a, b| a.text.cmp(&b.text));
        let texts: Vec<&str> = out.iter().map(|p| p.text.as_str()).collect();
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
        out.sort_by(|a, b| a.text.cmp(&b.text));
        let texts: Vec<&str> = out.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, ["3TKF88", "52RNX7"]);
        assert!(out
            .iter()
            .all(|p| p.alternatives.is_empty() && p.reads == 4));
    }

    #[test]
    fn a_single_read_is_not_a_passage() {
        let mut t = Tracker::new(&cfg());
        t.push(&frame("a", 0, 0, vec![read("AAA11B", 100.0, 150.0, 0.9)]));
        assert!(t.tick(Duration::from_secs(5)).is_empty());
        assert_eq!(t.open_tracks(), 0);
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
        assert_eq!(out[0].text, "BBB22C");
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
        let mut out = Vec::new();
        let mut most_held = 0;
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
                    // Parked: one read every 7 s.
                    901..=300_000 if rel % 7_000 == 0 => Some(read("VAN01X", 1500.0, 150.0, 0.85)),
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
            out.extend(t.push(&frame("a", seq, ms, reads)));
            most_held = most_held.max(t.held_passages());
        }
        out.extend(t.flush());
        let vans: Vec<&Passage> = out.iter().filter(|p| p.text == "VAN01X").collect();
        assert_eq!(vans.len(), 2, "one passage per visit");
        let stay = vans
            .iter()
            .find(|p| p.first_seen.mono == Duration::from_secs(600))
            .expect("first visit");
        assert_eq!(stay.last_seen.mono, Duration::from_millis(900_900));
        assert!(stay.reads > 40, "{}", stay.reads);
        assert_eq!(stay.direction, Direction::Towards);
        assert_eq!(out.len() - vans.len(), 120, "every car once");
        assert!(out.iter().all(|p| p.alternatives.is_empty()));
        assert!(most_held <= 12, "held passages stay few: {most_held}");
        assert_eq!((t.held_passages(), t.open_tracks()), (0, 0));
    }

    #[test]
    fn a_van_read_without_a_break_past_the_window_is_still_one_passage() {
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
        out.extend(t.flush());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].reads, 3_603);
    }

    #[test]
    fn a_held_passage_goes_out_when_its_window_ends() {
        let mut t = Tracker::new(&merging_cfg());
        for i in 0..3u64 {
            t.push(&frame(
                "a",
                i,
                i * 100,
                vec![read("AAA11B", 100.0, 150.0, 0.9)],
            ));
        }
        assert!(t.tick(Duration::from_secs(300)).is_empty(), "held");
        assert_eq!(t.held_passages(), 1);
        let out = t.tick(Duration::from_millis(300_201));
        assert_eq!(out.len(), 1);
        assert_eq!(t.held_passages(), 0);
        // A stalled camera gives out its held passages at once.
        for i in 0..3u64 {
            t.push(&frame(
                "b",
                i,
                i * 100,
                vec![read("BBB22C", 100.0, 150.0, 0.9)],
            ));
        }
        assert!(t.tick(Duration::from_secs(10)).is_empty());
        assert_eq!(t.close_camera("b").len(), 1);
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
        let got: Vec<(&str, &str)> = out.iter().map(|p| (&*p.camera, p.text.as_str())).collect();
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
