//! Detect: finds plates in frames.
//!
//! Takes frames from the capture queue, runs a [`PlateDetector`] on each and
//! passes the frame on with its detections. It never reads text and never
//! writes anything to disk; frames leave it only through its output channel
//! and, for the status page's live snapshot, one in-memory slot per camera
//! ([`LatestFrames`]) that holds the newest frame and is overwritten by the next.

pub mod retina;

use image::RgbImage;

use crate::message::Detection;

#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("detector inference failed: {0}")]
    Inference(String),
    #[error("detector output has an unexpected shape: {0}")]
    Output(String),
}

/// Anything that finds plates in an image. Implementations may keep scratch
/// buffers, hence `&mut self`.
pub trait PlateDetector: Send {
    /// Plates in `image`, best first, with boxes and corners in its pixels.
    fn detect(&mut self, image: &RgbImage) -> Result<Vec<Detection>, DetectError>;
}

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::capture::{FrameQueue, Popped};
use crate::message::DetectedFrame;
use crate::metrics::{inc, Metrics};

type Slot = Option<Arc<DetectedFrame>>;

/// The newest frame of each camera with its detections: written by the detect
/// stage, one `watch` slot per camera, so that the status page can show a live
/// snapshot without reaching into the pipeline or slowing it (publishing is a
/// pointer swap; pixels are shared, never copied).
#[derive(Clone, Default)]
pub struct LatestFrames {
    slots: Arc<HashMap<Arc<str>, tokio::sync::watch::Sender<Slot>>>,
}

/// The status page's read-only side of [`LatestFrames`].
#[derive(Clone, Default)]
pub struct LatestFramesView {
    slots: Arc<HashMap<Arc<str>, tokio::sync::watch::Receiver<Slot>>>,
}

impl LatestFrames {
    pub fn new<'a>(cameras: impl IntoIterator<Item = &'a str>) -> Self {
        let slots = cameras
            .into_iter()
            .map(|c| (Arc::from(c), tokio::sync::watch::Sender::new(None)))
            .collect();
        LatestFrames {
            slots: Arc::new(slots),
        }
    }

    /// Replaces the camera's slot; a frame of an unknown camera is ignored.
    pub fn publish(&self, frame: &DetectedFrame) {
        if let Some(slot) = self.slots.get(&frame.frame.camera) {
            slot.send_replace(Some(Arc::new(frame.clone())));
        }
    }

    pub fn view(&self) -> LatestFramesView {
        LatestFramesView {
            slots: Arc::new(
                self.slots
                    .iter()
                    .map(|(k, v)| (k.clone(), v.subscribe()))
                    .collect(),
            ),
        }
    }
}

impl LatestFramesView {
    /// The newest detected frame of `camera`, if it has delivered one.
    pub fn latest(&self, camera: &str) -> Option<Arc<DetectedFrame>> {
        self.slots.get(camera).and_then(|rx| rx.borrow().clone())
    }
}

/// The detect stage: runs until every camera has finished and the queue is
/// drained, or until `stop`. Blocking: run it on its own thread.
pub fn run_stage(
    mut detector: Box<dyn PlateDetector>,
    queue: FrameQueue,
    out: mpsc::Sender<DetectedFrame>,
    latest: LatestFrames,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    while !stop.is_cancelled() {
        let frame = match queue.pop(Duration::from_millis(100)) {
            Popped::Frame(f) => f,
            Popped::Empty => continue,
            Popped::Closed => break,
        };
        let started = std::time::Instant::now();
        let detections = match detector.detect(&frame.image) {
            Ok(d) => d,
            Err(e) => {
                inc(&metrics.detect_errors);
                tracing::error!(camera = %frame.camera, error = %e, "detection failed; frame skipped");
                Vec::new()
            }
        };
        metrics
            .last_detect_us
            .store(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        metrics
            .plates_detected
            .fetch_add(detections.len() as u64, Ordering::Relaxed);
        let detected = DetectedFrame { frame, detections };
        latest.publish(&detected);
        if out.blocking_send(detected).is_err() {
            break;
        }
    }
}
