//! The detect stage's loop: frames from the capture queue in, frames with
//! their detections out, the newest of each camera published for the status
//! page's snapshot. Detection itself is the [`super::PlateDetector`]'s.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{LatestFrames, PlateDetector};
use crate::capture::{FrameQueue, Popped};
use crate::message::DetectedFrame;
use crate::metrics::{inc, Metrics};

/// The detect stage: runs until every camera has finished and the queue is
/// drained, or until `stop`. Blocking: run it on its own thread.
pub fn run(
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
