//! Capture: turns cameras into timestamped RGB frames.
//!
//! Each camera runs in its own thread and pushes into one shared
//! [`FrameQueue`]. Capture never waits for a slow stage: when the queue is full
//! the oldest frame is dropped and counted against its camera. This stage never
//! sees plates, and writes nothing to disk.

pub mod avi;
pub mod replay;
pub mod stage;
pub mod v4l2;

use crate::sync::LockUnpoisoned;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use image::RgbImage;

use crate::message::Frame;
use crate::metrics::{inc, Metrics};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("camera device {path}: {reason}")]
    Device { path: String, reason: String },
    #[error("frame folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("frame folder {path} holds no JPEG or PNG frames")]
    EmptyFolder { path: String },
    #[error("cannot decode frame {path}: {reason}")]
    Decode { path: String, reason: String },
}

/// A source of decoded frames. `next_frame` blocks until a frame is there;
/// `Ok(None)` means the source has ended (a replay at its last frame).
pub trait FrameSource: Send {
    fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError>;
    /// Whether the source paces itself in real time (a camera, a paced replay).
    /// A source that does not is pushed losslessly: it waits for room in the
    /// queue instead of dropping, which the demo and tests use to get
    /// repeatable results at any machine speed.
    fn realtime(&self) -> bool;
    /// The nominal interval between frames, used to timestamp frames of a
    /// non-realtime source so that tracking sees the same times on any machine.
    fn frame_interval(&self) -> Duration;
}

struct QueueState {
    frames: VecDeque<Frame>,
    closed_sources: usize,
    sources: usize,
}

/// What [`FrameQueue::pop`] found.
#[derive(Debug)]
pub enum Popped {
    Frame(Frame),
    /// Nothing arrived in time; sources are still running.
    Empty,
    /// Every source has finished and the queue is drained.
    Closed,
}

impl Popped {
    /// The frame, if one was taken (for tests).
    pub fn frame(self) -> Option<Frame> {
        match self {
            Popped::Frame(f) => Some(f),
            _ => None,
        }
    }
}

/// The bounded queue between capture and detection. Pushing never blocks
/// (except the lossless push); when full, the oldest frame goes.
#[derive(Clone)]
pub struct FrameQueue {
    inner: Arc<(Mutex<QueueState>, Condvar)>,
    capacity: usize,
    metrics: Arc<Metrics>,
}

impl FrameQueue {
    /// A queue that `sources` producers will push to; it ends once each has
    /// called [`FrameQueue::source_done`].
    pub fn new(capacity: usize, sources: usize, metrics: Arc<Metrics>) -> Self {
        FrameQueue {
            inner: Arc::new((
                Mutex::new(QueueState {
                    frames: VecDeque::with_capacity(capacity),
                    closed_sources: 0,
                    sources,
                }),
                Condvar::new(),
            )),
            capacity: capacity.max(1),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.inner.0.lock_unpoisoned()
    }

    /// Adds a frame, dropping the oldest queued frame if the queue is full.
    pub fn push(&self, frame: Frame) {
        let mut st = self.lock();
        if st.frames.len() >= self.capacity {
            if let Some(old) = st.frames.pop_front() {
                inc(&self.metrics.camera(&old.camera).frames_dropped);
            }
        }
        st.frames.push_back(frame);
        drop(st);
        self.inner.1.notify_all();
    }

    /// Adds a frame, waiting for room instead of dropping. Returns false if the
    /// wait was given up because `stop` says so.
    pub fn push_wait(&self, frame: Frame, stop: &dyn Fn() -> bool) -> bool {
        let mut st = self.lock();
        while st.frames.len() >= self.capacity {
            if stop() {
                return false;
            }
            st = match self.inner.1.wait_timeout(st, Duration::from_millis(50)) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        st.frames.push_back(frame);
        drop(st);
        self.inner.1.notify_all();
        true
    }

    /// Marks one producer finished.
    pub fn source_done(&self) {
        self.lock().closed_sources += 1;
        self.inner.1.notify_all();
    }

    /// Takes the oldest frame, waiting up to `timeout`.
    pub fn pop(&self, timeout: Duration) -> Popped {
        let mut st = self.lock();
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(f) = st.frames.pop_front() {
                drop(st);
                self.inner.1.notify_all();
                return Popped::Frame(f);
            }
            if st.closed_sources >= st.sources {
                return Popped::Closed;
            }
            let now = std::time::Instant::now();
            if now >= deadline {
                return Popped::Empty;
            }
            st = match self.inner.1.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }

    pub fn len(&self) -> usize {
        self.lock().frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::{FixedClockSync, SimulatedClocks, SyncState, TimeSource};
    use crate::metrics::CameraState;
    use tokio_util::sync::CancellationToken;

    fn frame(cam: &str, seq: u64) -> Frame {
        let t = TimeSource {
            clocks: Arc::new(SimulatedClocks::new(chrono::Utc::now())),
            sync: Arc::new(FixedClockSync(SyncState {
                synchronised: true,
                max_error_us: 0,
            })),
        };
        Frame {
            camera: cam.into(),
            seq,
            captured: t.now(),
            image: Arc::new(RgbImage::new(1, 1)),
        }
    }

    #[test]
    fn full_queue_drops_oldest_and_counts_it_per_camera() {
        let m = Metrics::new();
        let q = FrameQueue::new(2, 1, m.clone());
        q.push(frame("a", 0));
        q.push(frame("b", 1));
        q.push(frame("a", 2));
        let first = q.pop(Duration::ZERO).frame().expect("frame");
        assert_eq!((first.camera.as_ref(), first.seq), ("b", 1));
        assert_eq!(
            m.camera("a")
                .frames_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(
            m.camera("b")
                .frames_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            0
        );
    }

    #[test]
    fn queue_ends_when_all_sources_are_done_and_drained() {
        let q = FrameQueue::new(2, 2, Metrics::new());
        q.push(frame("a", 0));
        q.source_done();
        assert!(q.pop(Duration::ZERO).frame().is_some());
        assert!(matches!(q.pop(Duration::ZERO), Popped::Empty));
        q.source_done();
        assert!(matches!(q.pop(Duration::ZERO), Popped::Closed));
    }

    struct Scripted(Vec<Result<Option<RgbImage>, CaptureError>>);
    impl FrameSource for Scripted {
        fn next_frame(&mut self) -> Result<Option<RgbImage>, CaptureError> {
            if self.0.is_empty() {
                Ok(None)
            } else {
                self.0.remove(0)
            }
        }
        fn realtime(&self) -> bool {
            false
        }
        fn frame_interval(&self) -> Duration {
            Duration::from_millis(100)
        }
    }

    #[test]
    fn camera_loop_skips_bad_frames_and_spaces_replay_by_its_interval() {
        let m = Metrics::new();
        let q = FrameQueue::new(8, 1, m.clone());
        let img = || Ok(Some(RgbImage::new(2, 2)));
        let bad = Err(CaptureError::Decode {
            path: "x.jpg".into(),
            reason: "truncated".into(),
        });
        let mut script = Some(Scripted(vec![img(), bad, img()]));
        let time = TimeSource {
            clocks: Arc::new(SimulatedClocks::new(chrono::Utc::now())),
            sync: Arc::new(FixedClockSync(SyncState {
                synchronised: true,
                max_error_us: 0,
            })),
        };
        stage::run(
            "a".into(),
            move || Ok(Box::new(script.take().expect("opened once")) as Box<dyn FrameSource>),
            false,
            q.clone(),
            time,
            m.clone(),
            CancellationToken::new(),
        );
        let f0 = q.pop(Duration::ZERO).frame().expect("frame");
        let f1 = q.pop(Duration::ZERO).frame().expect("frame");
        assert!(
            matches!(q.pop(Duration::ZERO), Popped::Closed),
            "source done, queue drained"
        );
        assert_eq!((f0.seq, f1.seq), (0, 1));
        assert_eq!(
            f1.captured.mono - f0.captured.mono,
            Duration::from_millis(100)
        );
        let c = m.camera("a");
        assert_eq!(
            c.capture_errors.load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(*c.state.lock().expect("lock"), CameraState::Finished);
    }

    #[test]
    fn absent_camera_is_reported_and_ends_its_source() {
        let m = Metrics::new();
        let q = FrameQueue::new(8, 1, m.clone());
        stage::run(
            "gone".into(),
            || {
                Err(CaptureError::Device {
                    path: "/dev/video9".into(),
                    reason: "no such device".into(),
                })
            },
            false,
            q.clone(),
            TimeSource::real(),
            m.clone(),
            CancellationToken::new(),
        );
        assert!(matches!(q.pop(Duration::ZERO), Popped::Closed));
        let state = m.camera("gone").state.lock().expect("lock").clone();
        assert!(matches!(state, CameraState::Absent(ref why) if why.contains("/dev/video9")));
    }

    #[test]
    fn lossless_push_waits_for_room() {
        let q = FrameQueue::new(1, 1, Metrics::new());
        q.push(frame("a", 0));
        let q2 = q.clone();
        let t = std::thread::spawn(move || q2.push_wait(frame("a", 1), &|| false));
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(q.len(), 1);
        assert_eq!(q.pop(Duration::ZERO).frame().expect("frame").seq, 0);
        assert!(t.join().expect("thread"));
        assert_eq!(q.pop(Duration::from_secs(1)).frame().expect("frame").seq, 1);
    }
}
