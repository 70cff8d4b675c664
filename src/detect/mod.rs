//! Detect: finds plates in frames.
//!
//! Takes frames from the capture queue, runs a [`PlateDetector`] on each and
//! passes the frame on with its detections. It never reads text and never
//! writes anything to disk; frames leave it only through its output channel.

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

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::capture::{FrameQueue, Popped};
use crate::message::DetectedFrame;
use crate::metrics::{inc, Metrics};

/// The detect stage: runs until every camera has finished and the queue is
/// drained, or until `stop`. Blocking: run it on its own thread.
pub fn run_stage(
    mut detector: Box<dyn PlateDetector>,
    queue: FrameQueue,
    out: mpsc::Sender<DetectedFrame>,
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
        if out
            .blocking_send(DetectedFrame { frame, detections })
            .is_err()
        {
            break;
        }
    }
}
