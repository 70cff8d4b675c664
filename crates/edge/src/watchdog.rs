//! Watchdog: tells the service manager the truth about the daemon's health.
//!
//! Each stage that can hang (inference, tracking, policy, the store) owns a
//! [`Beat`] that it marks busy while it handles one message and idle when done;
//! waiting for input is idle, not stuck. A supervisor task pings `WATCHDOG=1`
//! only while no stage has been busy on one message longer than a limit, so a
//! hung stage (or a wedged runtime, which stops the supervisor itself) makes
//! systemd restart the service. It reads only the beats: never a frame, a
//! plate or the store. Messages go out through [`Notifier`], so tests check the
//! decision without systemd or processes.

use crate::sync::LockUnpoisoned;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::Clocks;

/// A message for the service manager.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Startup finished: cameras, models, store and uploader are up.
    Ready,
    /// The pipeline makes progress.
    Watchdog,
    /// Free text for `systemctl status`.
    Status(String),
    /// Shutting down.
    Stopping,
}

/// Where [`Event`]s go: systemd's notify socket, or a recorder in tests.
pub trait Notifier: Send + Sync {
    fn notify(&self, event: Event);
}

/// The `sd_notify` protocol on `$NOTIFY_SOCKET`; does nothing when the daemon
/// does not run under a service manager that asked for it.
pub struct SystemdNotifier;

impl Notifier for SystemdNotifier {
    fn notify(&self, event: Event) {
        use sd_notify::NotifyState;
        let state = match &event {
            Event::Ready => NotifyState::Ready,
            Event::Watchdog => NotifyState::Watchdog,
            Event::Status(s) => NotifyState::Status(s),
            Event::Stopping => NotifyState::Stopping,
        };
        if let Err(e) = sd_notify::notify(&[state]) {
            tracing::warn!(error = %e, ?event, "cannot notify the service manager");
        }
    }
}

/// Keeps every event, for tests.
#[derive(Default)]
pub struct RecordingNotifier {
    events: Mutex<Vec<Event>>,
}

impl RecordingNotifier {
    pub fn events(&self) -> Vec<Event> {
        self.events.lock_unpoisoned().clone()
    }
}

impl Notifier for RecordingNotifier {
    fn notify(&self, event: Event) {
        self.events.lock_unpoisoned().push(event);
    }
}

/// One stage's heartbeat: since when (monotonic) it has been busy on its
/// current message, or idle.
pub struct Beat {
    stage: &'static str,
    clocks: Arc<dyn Clocks>,
    /// Monotonic milliseconds + 1 when the current message was taken; 0 = idle.
    busy_since: AtomicU64,
    /// Messages handled, for the log line of a stuck stage.
    handled: AtomicU64,
}

impl Beat {
    /// The stage takes a message.
    pub fn busy(&self) {
        let ms = self.clocks.monotonic().as_millis() as u64;
        self.busy_since
            .store(ms.saturating_add(1), Ordering::Relaxed);
    }

    /// The stage is done with its message and waits for the next one. A stage
    /// that panics never calls this, so it counts as stuck.
    pub fn idle(&self) {
        self.busy_since.store(0, Ordering::Relaxed);
        self.handled.fetch_add(1, Ordering::Relaxed);
    }

    /// Runs `f` as the handling of one message.
    pub fn handle<T>(&self, f: impl FnOnce() -> T) -> T {
        self.busy();
        let out = f();
        self.idle();
        out
    }

    pub fn stage(&self) -> &'static str {
        self.stage
    }
}

/// The beats of all stages.
#[derive(Clone)]
pub struct Progress {
    clocks: Arc<dyn Clocks>,
    beats: Arc<Mutex<Vec<Arc<Beat>>>>,
}

/// The supervisor's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// No stage has been busy on one message longer than the limit.
    Progressing,
    /// `stage` has been busy on one message for `busy`.
    Stuck {
        stage: &'static str,
        busy: Duration,
        handled: u64,
    },
}

impl Progress {
    pub fn new(clocks: Arc<dyn Clocks>) -> Self {
        Progress {
            clocks,
            beats: Arc::default(),
        }
    }

    /// A new beat for `stage`, watched from now on.
    pub fn beat(&self, stage: &'static str) -> Arc<Beat> {
        let beat = Arc::new(Beat {
            stage,
            clocks: self.clocks.clone(),
            busy_since: AtomicU64::new(0),
            handled: AtomicU64::new(0),
        });
        self.beats.lock_unpoisoned().push(beat.clone());
        beat
    }

    /// The stage busy longest on one message, if that is longer than `limit`.
    pub fn health(&self, limit: Duration) -> Health {
        let now = self.clocks.monotonic().as_millis() as u64;
        let beats = self.beats.lock_unpoisoned();
        beats
            .iter()
            .filter_map(|b| {
                let since = b.busy_since.load(Ordering::Relaxed);
                (since != 0).then(|| (b, Duration::from_millis(now.saturating_sub(since - 1))))
            })
            .filter(|(_, busy)| *busy > limit)
            .max_by_key(|(_, busy)| *busy)
            .map_or(Health::Progressing, |(b, busy)| Health::Stuck {
                stage: b.stage,
                busy,
                handled: b.handled.load(Ordering::Relaxed),
            })
    }
}

/// One supervisor step: ping while progressing, say once (in the log and the
/// service status) when a stage gets stuck, and once when it is free again.
/// Returns whether the pipeline is stuck now.
pub fn supervise_once(
    progress: &Progress,
    limit: Duration,
    notifier: &dyn Notifier,
    was_stuck: bool,
) -> bool {
    match progress.health(limit) {
        Health::Progressing => {
            if was_stuck {
                tracing::info!("pipeline progressing again");
                notifier.notify(Event::Status("running".into()));
            }
            notifier.notify(Event::Watchdog);
            false
        }
        Health::Stuck {
            stage,
            busy,
            handled,
        } => {
            if !was_stuck {
                tracing::error!(
                    stage,
                    busy_s = busy.as_secs(),
                    handled,
                    "stage stuck on one message; watchdog pings stopped, the service manager will restart the daemon"
                );
                notifier.notify(Event::Status(format!(
                    "{stage} stuck on one message for {} s",
                    busy.as_secs()
                )));
            }
            true
        }
    }
}

/// Runs [`supervise_once`] every `every` until `stop`.
pub async fn run_supervisor(
    progress: Progress,
    limit: Duration,
    every: Duration,
    notifier: Arc<dyn Notifier>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut stuck = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        stuck = supervise_once(&progress, limit, notifier.as_ref(), stuck);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    /// A monotonic clock the test moves by hand.
    #[derive(Default)]
    struct ManualClock(AtomicU64);
    impl ManualClock {
        fn advance(&self, d: Duration) {
            self.0.fetch_add(d.as_millis() as u64, Ordering::Relaxed);
        }
    }
    impl Clocks for ManualClock {
        fn wall(&self) -> DateTime<Utc> {
            DateTime::UNIX_EPOCH
        }
        fn monotonic(&self) -> Duration {
            Duration::from_millis(self.0.load(Ordering::Relaxed))
        }
        fn sleep(&self, d: Duration) -> crate::clock::Sleep {
            self.advance(d);
            Box::pin(std::future::ready(()))
        }
    }

    fn setup() -> (Arc<ManualClock>, Progress, Arc<Beat>, Arc<Beat>) {
        let clock = Arc::new(ManualClock::default());
        let progress = Progress::new(clock.clone());
        let detect = progress.beat("detect");
        let read = progress.beat("read");
        (clock, progress, detect, read)
    }

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn idle_stages_waiting_for_input_are_progressing() {
        let (clock, progress, _, _) = setup();
        clock.advance(Duration::from_secs(3600));
        assert_eq!(progress.health(LIMIT), Health::Progressing);
    }

    #[test]
    fn a_stage_busy_on_one_message_past_the_limit_is_stuck() {
        let (clock, progress, detect, read) = setup();
        read.busy();
        read.idle();
        detect.busy();
        clock.advance(Duration::from_secs(9));
        assert_eq!(progress.health(LIMIT), Health::Progressing);
        clock.advance(Duration::from_secs(2));
        assert_eq!(
            progress.health(LIMIT),
            Health::Stuck {
                stage: "detect",
                busy: Duration::from_secs(11),
                handled: 0
            }
        );
        detect.idle();
        assert_eq!(progress.health(LIMIT), Health::Progressing);
    }

    #[test]
    fn many_quick_messages_never_add_up_to_stuck() {
        let (clock, progress, detect, _) = setup();
        for _ in 0..100 {
            detect.handle(|| clock.advance(Duration::from_secs(1)));
            assert_eq!(progress.health(LIMIT), Health::Progressing);
        }
    }

    #[test]
    fn the_supervisor_pings_only_while_progressing_and_says_why_once() {
        let (clock, progress, _, read) = setup();
        let rec = RecordingNotifier::default();
        let mut stuck = supervise_once(&progress, LIMIT, &rec, false);
        assert!(!stuck);
        read.busy();
        clock.advance(Duration::from_secs(30));
        for _ in 0..3 {
            stuck = supervise_once(&progress, LIMIT, &rec, stuck);
            assert!(stuck);
        }
        read.idle();
        stuck = supervise_once(&progress, LIMIT, &rec, stuck);
        assert!(!stuck);
        assert_eq!(
            rec.events(),
            vec![
                Event::Watchdog,
                Event::Status("read stuck on one message for 30 s".into()),
                Event::Status("running".into()),
                Event::Watchdog,
            ]
        );
    }

    #[test]
    fn the_longest_stuck_stage_is_named() {
        let (clock, progress, detect, read) = setup();
        detect.busy();
        clock.advance(Duration::from_secs(5));
        read.busy();
        clock.advance(Duration::from_secs(20));
        match progress.health(LIMIT) {
            Health::Stuck { stage, busy, .. } => {
                assert_eq!((stage, busy), ("detect", Duration::from_secs(25)))
            }
            h => panic!("expected stuck, got {h:?}"),
        }
    }
}
