//! Detect: finds plates in frames.
//!
//! Takes frames from the capture queue, runs a [`PlateDetector`] on each and
//! passes the frame on with its detections. It never reads text and never
//! writes anything to disk; frames leave it only through its output channel
//! and, for the status page's live snapshot, one in-memory slot per camera
//! ([`LatestFrames`]) that holds the newest frame and is overwritten by the next.

pub mod stage;

/// The stage's view of a detector model.
pub use crate::models::{DetectError, PlateDetector};

use std::collections::HashMap;
use std::sync::Arc;

use crate::message::DetectedFrame;

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
