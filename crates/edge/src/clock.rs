//! Time and the clock-sync source, behind small traits.
//!
//! Every stage takes its time from a [`Clocks`] so that tests can simulate an
//! hour of traffic or a week offline in milliseconds, as moonfire-nvr's
//! `Clocks` does. The wall clock is only ever *stated* in evidence together
//! with its [`SyncState`]; durations and ordering use the monotonic clock.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::message::Instant2;

/// Whether the system clock was disciplined (e.g. by NTP or chrony) and how far
/// off it may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SyncState {
    pub synchronised: bool,
    /// The kernel's maximum error estimate, in microseconds.
    pub max_error_us: i64,
}

/// Where the sync state comes from.
pub trait ClockSync: Send + Sync {
    fn state(&self) -> SyncState;
}

/// The wall and monotonic clocks.
pub trait Clocks: Send + Sync {
    /// UTC wall-clock time.
    fn wall(&self) -> DateTime<Utc>;
    /// Monotonic time since an origin fixed when the clocks were made.
    fn monotonic(&self) -> Duration;
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
    pub fn now(&self) -> Instant2 {
        Instant2 {
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
}

/// Clocks that move only when told to. Wall and monotonic advance together;
/// [`SimulatedClocks::step_wall`] moves the wall clock alone, as an NTP step would.
pub struct SimulatedClocks {
    inner: Mutex<(DateTime<Utc>, Duration)>,
}

impl SimulatedClocks {
    pub fn new(start: DateTime<Utc>) -> Self {
        SimulatedClocks {
            inner: Mutex::new((start, Duration::ZERO)),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::zero());
        g.1 += by;
    }

    pub fn step_wall(&self, by: chrono::Duration) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.0 += by;
    }
}

impl Clocks for SimulatedClocks {
    fn wall(&self) -> DateTime<Utc> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).0
    }
    fn monotonic(&self) -> Duration {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).1
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
}
