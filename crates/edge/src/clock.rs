//! Time and the clock-sync source, behind small traits.
//!
//! Every stage takes its time from a [`Clocks`] so that tests can simulate an
//! hour of traffic or a week offline in milliseconds, as moonfire-nvr's
//! `Clocks` does. The wall clock is only ever *stated* in evidence together
//! with its [`SyncState`]; durations and ordering use the monotonic clock.

use crate::sync::LockUnpoisoned;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// Whether the system clock was disciplined (e.g. by NTP or chrony) and how far
/// off it may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncState {
    pub synchronised: bool,
    /// The kernel's maximum error estimate, in microseconds.
    pub max_error_us: i64,
}

/// When something was seen, on both clocks.
///
/// `mono` orders events and measures durations (it never jumps); `wall` is what
/// evidence states, together with the clock's sync state at that moment.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timestamp {
    /// Monotonic time since an arbitrary origin fixed at process start.
    pub mono: std::time::Duration,
    /// UTC wall-clock time.
    pub wall: DateTime<Utc>,
    /// Whether the wall clock was synchronised when this was taken.
    pub sync: SyncState,
}

/// Where the sync state comes from.
pub trait ClockSync: Send + Sync {
    fn state(&self) -> SyncState;
}

/// A wait on a [`Clocks`], to be awaited.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The wall and monotonic clocks, and waiting on them.
pub trait Clocks: Send + Sync {
    /// UTC wall-clock time.
    fn wall(&self) -> DateTime<Utc>;
    /// Monotonic time since an origin fixed when the clocks were made.
    fn monotonic(&self) -> Duration;
    /// Waits `d` of this clock's monotonic time: real time for the real
    /// clocks; for simulated ones, until the test has advanced them that far,
    /// so a week of retention, reload and backoff waits passes in milliseconds.
    fn sleep(&self, d: Duration) -> Sleep;
}

impl std::fmt::Debug for dyn Clocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Clocks(wall {})", self.wall())
    }
}

/// Both clocks and the sync source, as one handle that stages share.
#[derive(Clone)]
pub struct TimeSource {
    pub clocks: Arc<dyn Clocks>,
    pub sync: Arc<dyn ClockSync>,
}

impl TimeSource {
    pub fn real() -> Self {
        TimeSource {
            clocks: Arc::new(RealClocks::new()),
            sync: Arc::new(KernelClockSync),
        }
    }

    /// A stamp of now on both clocks, with the sync state.
    pub fn now(&self) -> Timestamp {
        Timestamp {
            mono: self.clocks.monotonic(),
            wall: self.clocks.wall(),
            sync: self.sync.state(),
        }
    }
}

/// The operating system's clocks.
pub struct RealClocks {
    origin: std::time::Instant,
}

impl RealClocks {
    pub fn new() -> Self {
        RealClocks {
            origin: std::time::Instant::now(),
        }
    }
}

impl Default for RealClocks {
    fn default() -> Self {
        Self::new()
    }
}

impl Clocks for RealClocks {
    fn wall(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }
    fn sleep(&self, d: Duration) -> Sleep {
        Box::pin(tokio::time::sleep(d))
    }
}

/// Clocks that move only when told to. Wall and monotonic advance together;
/// [`SimulatedClocks::step_wall`] moves the wall clock alone, as an NTP step
/// would. A [`Clocks::sleep`] on them ends once [`SimulatedClocks::advance`]
/// has moved the monotonic clock past its deadline.
pub struct SimulatedClocks {
    inner: Mutex<(DateTime<Utc>, Duration)>,
    mono: tokio::sync::watch::Sender<Duration>,
}

impl SimulatedClocks {
    pub fn new(start: DateTime<Utc>) -> Self {
        SimulatedClocks {
            inner: Mutex::new((start, Duration::ZERO)),
            mono: tokio::sync::watch::Sender::new(Duration::ZERO),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut g = self.inner.lock_unpoisoned();
        g.0 += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
        g.1 += by;
        self.mono.send_replace(g.1);
    }

    pub fn step_wall(&self, by: chrono::Duration) {
        let mut g = self.inner.lock_unpoisoned();
        g.0 += by;
    }
}

impl Clocks for SimulatedClocks {
    fn wall(&self) -> DateTime<Utc> {
        self.inner.lock_unpoisoned().0
    }
    fn monotonic(&self) -> Duration {
        self.inner.lock_unpoisoned().1
    }
    fn sleep(&self, d: Duration) -> Sleep {
        let deadline = self.monotonic() + d;
        let mut rx = self.mono.subscribe();
        Box::pin(async move {
            while *rx.borrow_and_update() < deadline {
                if rx.changed().await.is_err() {
                    // The clocks are gone: no time will ever pass again.
                    std::future::pending::<()>().await;
                }
            }
        })
    }
}

/// The kernel's view, from `adjtimex(2)`: synchronised unless `STA_UNSYNC` is set.
pub struct KernelClockSync;

impl ClockSync for KernelClockSync {
    fn state(&self) -> SyncState {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: adjtimex with modes = 0 only reads; the struct is plain data
            // that the kernel fills in.
            let mut tx: libc::timex = unsafe { std::mem::zeroed() };
            let rc = unsafe { libc::adjtimex(&mut tx) };
            if rc < 0 {
                return SyncState {
                    synchronised: false,
                    max_error_us: i64::MAX,
                };
            }
            SyncState {
                synchronised: rc != libc::TIME_ERROR && (tx.status & libc::STA_UNSYNC) == 0,
                max_error_us: tx.maxerror,
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            SyncState {
                synchronised: false,
                max_error_us: i64::MAX,
            }
        }
    }
}

/// A sync state fixed by the caller, for tests and the demo.
pub struct FixedClockSync(pub SyncState);

impl ClockSync for FixedClockSync {
    fn state(&self) -> SyncState {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_clocks_advance_both_and_step_only_wall() {
        let start = DateTime::parse_from_rfc3339("2027-01-04T07:00:00Z")
            .expect("valid literal")
            .with_timezone(&Utc);
        let c = SimulatedClocks::new(start);
        c.advance(Duration::from_secs(3600));
        assert_eq!(c.monotonic(), Duration::from_secs(3600));
        assert_eq!(c.wall(), start + chrono::Duration::hours(1));
        c.step_wall(chrono::Duration::seconds(-5));
        assert_eq!(c.monotonic(), Duration::from_secs(3600));
        assert_eq!(c.wall(), start + chrono::Duration::seconds(3595));
    }

    #[tokio::test]
    async fn a_sleep_on_simulated_clocks_ends_when_the_test_moves_time_past_it() {
        let start = DateTime::parse_from_rfc3339("2027-01-04T07:00:00Z")
            .expect("valid literal")
            .with_timezone(&Utc);
        let c = Arc::new(SimulatedClocks::new(start));
        let week = Duration::from_secs(7 * 24 * 3600);
        let sleeper = tokio::spawn({
            let c = c.clone();
            async move { c.sleep(week).await }
        });
        tokio::task::yield_now().await;
        c.advance(week - Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !sleeper.is_finished(),
            "a second of the week is still to come"
        );
        c.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(10), sleeper)
            .await
            .expect("woken by the last second")
            .expect("sleeper ran");
        assert_eq!(c.wall(), start + chrono::Duration::days(7));
    }
}
