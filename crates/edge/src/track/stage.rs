//! The track stage's loop: frames in from read, passages out to policy as soon
//! as their tracks close, stalled cameras' tracks closed, suppressed re-reads
//! counted. The tracking itself is [`super::Tracker`]'s; this loop holds no
//! plate text beyond what it hands on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Tracker;
use crate::clock::TimeSource;
use crate::message::{Passage, ReadFrame};
use crate::metrics::Metrics;
use crate::watchdog::Beat;

/// How many of a camera's frames have been captured and not dropped: told by
/// the pipeline, which owns the capture counters, so that this stage can tell
/// a stalled camera from a slow machine without reading another stage's state.
pub type FramesInFlight = Box<dyn Fn(&str) -> u64 + Send + Sync>;

/// A camera none of whose frames has reached the tracker for this long, and
/// none of whose frames is still on its way there, has stalled (a live camera
/// sends frames continuously, even empty ones); its open tracks are closed so
/// that the last vehicle's passage is not held back. Frames still in detection
/// or reading keep the camera alive however slow the machine (an emulated
/// controller takes a minute a frame), so a slow machine never splits a
/// passage this way.
const CAMERA_STALL: Duration = Duration::from_secs(30);

/// However many frames the counters say are still on their way, a camera
/// silent at the tracker this long has stalled: a frame lost without being
/// counted must not hold a track open forever.
const CAMERA_STALL_REGARDLESS: Duration = Duration::from_secs(300);

/// Whether a camera has stalled, given how long ago its last frame reached the
/// tracker and how many of its captured frames have neither been dropped nor
/// reached the tracker yet.
fn camera_stalled(since_last_arrival: Duration, frames_in_flight: u64) -> bool {
    since_last_arrival > CAMERA_STALL_REGARDLESS
        || (since_last_arrival > CAMERA_STALL && frames_in_flight == 0)
}

/// The track stage: passes frames to the tracker (which closes tracks on the
/// frames' own clock and gives each passage out as soon as its track closes),
/// closes the tracks of a camera that has stalled, and counts the re-reads of
/// parked vehicles that it suppressed.
pub async fn run(
    mut tracker: Tracker,
    mut input: mpsc::Receiver<ReadFrame>,
    out: mpsc::Sender<Passage>,
    time: TimeSource,
    beat: Arc<Beat>,
    metrics: Arc<Metrics>,
    in_flight: FramesInFlight,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_arrival: HashMap<Arc<str>, Duration> = HashMap::new();
    let mut arrived: HashMap<Arc<str>, u64> = HashMap::new();
    loop {
        let passages = tokio::select! {
            msg = input.recv() => match msg {
                Some(frame) => {
                    last_arrival.insert(frame.frame.camera.clone(), time.clocks.monotonic());
                    *arrived.entry(frame.frame.camera.clone()).or_default() += 1;
                    beat.handle(|| tracker.push(&frame))
                }
                None => break,
            },
            _ = tick.tick() => {
                let now = time.clocks.monotonic();
                let in_flight = |cam: &str| {
                    in_flight(cam).saturating_sub(arrived.get(cam).copied().unwrap_or(0))
                };
                let stalled: Vec<Arc<str>> = last_arrival
                    .iter()
                    .filter(|(cam, &at)| camera_stalled(now.saturating_sub(at), in_flight(cam)))
                    .map(|(cam, _)| cam.clone())
                    .collect();
                stalled.iter().flat_map(|cam| {
                    last_arrival.remove(cam);
                    tracker.close_camera(cam)
                }).collect()
            },
        };
        metrics.duplicates_suppressed.fetch_add(
            tracker.take_suppressed(),
            std::sync::atomic::Ordering::Relaxed,
        );
        for p in passages {
            if out.send(p).await.is_err() {
                return;
            }
        }
    }
    let last = tracker.flush();
    metrics.duplicates_suppressed.fetch_add(
        tracker.take_suppressed(),
        std::sync::atomic::Ordering::Relaxed,
    );
    for p in last {
        if out.send(p).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_camera_with_frames_still_on_their_way_has_not_stalled() {
        let s = Duration::from_secs;
        assert!(!camera_stalled(s(29), 0), "recently heard from");
        assert!(camera_stalled(s(31), 0), "silent and drained");
        // An emulated controller: a minute a frame, the next one in detection.
        assert!(!camera_stalled(s(60), 1));
        assert!(!camera_stalled(s(299), 3));
        assert!(
            camera_stalled(s(301), 3),
            "a lost frame holds nothing forever"
        );
    }
}
