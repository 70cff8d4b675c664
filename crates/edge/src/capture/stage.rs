//! A camera's loop: opens its source (again after a failure, for a camera
//! plugged in later), stamps each frame on both clocks and queues it for
//! detection. Meant for its own thread: sources block. Never writes a frame
//! anywhere but the queue.

use crate::sync::LockUnpoisoned;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{CaptureError, FrameQueue, FrameSource};
use crate::clock::TimeSource;
use crate::clock::Timestamp;
use crate::message::Frame;
use crate::metrics::{inc, CameraState, Metrics};

/// Runs one camera until its source ends or `stop` is cancelled: opens the
/// source (retrying a missing device every few seconds, so that a camera
/// plugged in later starts streaming), timestamps each frame and queues it.
/// Meant to run on its own thread: sources block.
pub fn run(
    camera: Arc<str>,
    mut open: impl FnMut() -> Result<Box<dyn FrameSource>, CaptureError>,
    retry_open: bool,
    queue: FrameQueue,
    time: TimeSource,
    metrics: Arc<Metrics>,
    stop: CancellationToken,
) {
    let counters = metrics.camera(&camera);
    let set_state = |s: CameraState| *counters.state.lock_unpoisoned() = s;
    let mut seq: u64 = 0;
    let mut warned_absent = false;
    'reopen: while !stop.is_cancelled() {
        let mut source = match open() {
            Ok(s) => s,
            Err(e) => {
                if !warned_absent {
                    tracing::error!(camera = %camera, error = %e, "camera unavailable; other cameras go on");
                    warned_absent = true;
                }
                set_state(CameraState::Absent(e.to_string()));
                if !retry_open {
                    break;
                }
                sleep_unless_stopped(&stop, Duration::from_secs(5));
                continue;
            }
        };
        if warned_absent {
            tracing::info!(camera = %camera, "camera available again");
            warned_absent = false;
        }
        set_state(CameraState::Streaming);
        let origin = time.now();
        let interval = source.frame_interval();
        let mut played: u32 = 0;
        while !stop.is_cancelled() {
            match source.next_frame() {
                Ok(Some(image)) => {
                    let captured = if source.realtime() {
                        time.now()
                    } else {
                        // Unpaced replay: frames are as far apart as the recording
                        // says, however fast this machine decodes them.
                        let offset = interval * played;
                        Timestamp {
                            mono: origin.mono + offset,
                            wall: origin.wall
                                + chrono::Duration::from_std(offset).unwrap_or_default(),
                            sync: origin.sync,
                        }
                    };
                    played = played.saturating_add(1);
                    counters.last_frame_unix_ms.store(
                        captured.wall.timestamp_millis(),
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    inc(&counters.frames_captured);
                    let frame = Frame {
                        camera: camera.clone(),
                        seq,
                        captured,
                        image: Arc::new(image),
                    };
                    seq += 1;
                    if source.realtime() {
                        queue.push(frame);
                    } else if !queue.push_wait(frame, &|| stop.is_cancelled()) {
                        break 'reopen;
                    }
                }
                Ok(None) => {
                    set_state(CameraState::Finished);
                    break 'reopen;
                }
                Err(e @ CaptureError::Decode { .. }) => {
                    // One bad frame is not a broken camera.
                    inc(&counters.capture_errors);
                    tracing::warn!(camera = %camera, error = %e, "frame skipped");
                }
                Err(e) => {
                    inc(&counters.capture_errors);
                    tracing::error!(camera = %camera, error = %e, "camera failed; reopening");
                    set_state(CameraState::Absent(e.to_string()));
                    if !retry_open {
                        break 'reopen;
                    }
                    sleep_unless_stopped(&stop, Duration::from_secs(1));
                    continue 'reopen;
                }
            }
        }
    }
    queue.source_done();
}

fn sleep_unless_stopped(stop: &CancellationToken, d: Duration) {
    let deadline = std::time::Instant::now() + d;
    while !stop.is_cancelled() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}
