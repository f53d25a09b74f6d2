//! The provider's clock: wall time plus an offset that tests can move, and a
//! freeze switch. Every time the provider writes into a token or compares
//! against an expiry comes from here.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const NOT_FROZEN: i64 = i64::MIN;

#[derive(Debug)]
pub(crate) struct Clock {
    offset_ms: AtomicI64,
    frozen_at_ms: AtomicI64,
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            frozen_at_ms: AtomicI64::new(NOT_FROZEN),
        }
    }

    /// Milliseconds since the Unix epoch, as the provider sees it.
    pub(crate) fn now_ms(&self) -> i64 {
        let frozen = self.frozen_at_ms.load(Ordering::Relaxed);
        if frozen != NOT_FROZEN {
            return frozen;
        }
        wall_ms() + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Seconds since the Unix epoch, as the provider sees it.
    pub(crate) fn now(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    /// Moves the clock forward (or back, with a negative value).
    pub(crate) fn advance_ms(&self, ms: i64) {
        let frozen = self.frozen_at_ms.load(Ordering::Relaxed);
        if frozen != NOT_FROZEN {
            self.frozen_at_ms.store(frozen + ms, Ordering::Relaxed);
        } else {
            self.offset_ms.fetch_add(ms, Ordering::Relaxed);
        }
    }

    /// Stops the clock at the current time.
    pub(crate) fn freeze(&self) {
        let now = self.now_ms();
        self.frozen_at_ms.store(now, Ordering::Relaxed);
    }

    /// Lets the clock run again from where it was frozen.
    pub(crate) fn unfreeze(&self) {
        let frozen = self.frozen_at_ms.swap(NOT_FROZEN, Ordering::Relaxed);
        if frozen != NOT_FROZEN {
            self.offset_ms.store(frozen - wall_ms(), Ordering::Relaxed);
        }
    }

    pub(crate) fn is_frozen(&self) -> bool {
        self.frozen_at_ms.load(Ordering::Relaxed) != NOT_FROZEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_and_freeze() {
        let clock = Clock::new();
        let start = clock.now_ms();
        clock.advance_ms(3_600_000);
        assert!(clock.now_ms() >= start + 3_600_000);
        clock.freeze();
        let frozen = clock.now_ms();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(clock.now_ms(), frozen);
        clock.advance_ms(1_000);
        assert_eq!(clock.now_ms(), frozen + 1_000);
        clock.unfreeze();
        assert!(clock.now_ms() >= frozen + 1_000);
        assert!(!clock.is_frozen());
    }
}
