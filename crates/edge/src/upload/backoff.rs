//! Exponential backoff with jitter between failed deliveries.
//!
//! Pure arithmetic plus a random draw; never sleeps itself.

use std::time::Duration;

use rand::Rng;

/// Doubles a base delay after each failure up to a maximum, and draws each wait
/// uniformly from the upper half of the base ("equal jitter"), so that many
/// controllers coming back after a backend outage do not retry in lockstep.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    base: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            base: initial,
        }
    }

    /// The wait after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = (self.base * 2).min(self.max);
        let half = base / 2;
        let jitter_ms =
            rand::thread_rng().gen_range(0..=half.as_millis().min(u64::MAX as u128) as u64);
        half + Duration::from_millis(jitter_ms)
    }

    /// Back to the initial delay, after a success.
    pub fn reset(&mut self) {
        self.base = self.initial;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_to_the_maximum_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(250) && first <= Duration::from_millis(500));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= Duration::from_secs(10));
        }
        let late = b.next_delay();
        assert!(late >= Duration::from_secs(5), "{late:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }
}
