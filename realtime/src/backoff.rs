//! The reconnect schedule: exponential backoff with full jitter, as pure
//! functions so it can be tested without a clock or a network.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Exponential backoff with full jitter applied after the cap.
///
/// The delay before retry `n` (counting failures from 0) is uniform in
/// `[0, min(max, base · factorⁿ)]`. The failure count goes back to 0 only once
/// a connection has stayed up for `reset_after`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first step (default 250 ms).
    pub base: Duration,
    /// The growth factor (default 2).
    pub factor: f64,
    /// The cap (default 30 s).
    pub max: Duration,
    /// How long a connection must stay up before the schedule resets (default 10 s).
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(250),
            factor: 2.0,
            max: Duration::from_secs(30),
            reset_after: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// A schedule with these steps and the default reset rule.
    #[must_use]
    pub fn new(base: Duration, factor: f64, max: Duration) -> Self {
        Self {
            base,
            factor,
            max,
            ..Self::default()
        }
    }

    /// With another reset rule.
    #[must_use]
    pub fn reset_after(mut self, up_for: Duration) -> Self {
        self.reset_after = up_for;
        self
    }

    /// The upper bound of the delay after `failures` failures:
    /// `min(max, base · factor^failures)`.
    #[must_use]
    pub fn ceiling(&self, failures: u32) -> Duration {
        let exp = i32::try_from(failures).unwrap_or(i32::MAX);
        let secs = self.base.as_secs_f64() * self.factor.max(1.0).powi(exp);
        if !secs.is_finite() || secs >= self.max.as_secs_f64() {
            self.max
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// The delay after `failures` failures for a random `unit` in `[0, 1]`:
    /// `ceiling(failures) · unit` (full jitter, applied after the cap).
    #[must_use]
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        self.ceiling(failures).mul_f64(unit)
    }

    /// Whether a connection that stayed up for `up_for` resets the schedule.
    #[must_use]
    pub fn resets(&self, up_for: Duration) -> bool {
        up_for >= self.reset_after
    }
}

/// A uniform number in `[0, 1)`, from std's randomly keyed hasher (good
/// enough to spread reconnects; not for cryptography).
pub(crate) fn jitter_unit() -> f64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    // 53 random bits fill an f64's mantissa exactly.
    #[allow(clippy::cast_precision_loss)]
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::default();
        assert_eq!(b.ceiling(0), 250 * MS);
        assert_eq!(b.ceiling(1), 500 * MS);
        assert_eq!(b.ceiling(2), 1000 * MS);
        assert_eq!(b.ceiling(6), 16_000 * MS);
        assert_eq!(b.ceiling(7), Duration::from_secs(30));
        assert_eq!(b.ceiling(1000), Duration::from_secs(30));
        assert_eq!(b.ceiling(u32::MAX), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        let b = Backoff::default();
        assert_eq!(b.delay(3, 0.0), Duration::ZERO);
        assert_eq!(b.delay(3, 1.0), b.ceiling(3));
        assert_eq!(b.delay(3, 0.5), b.ceiling(3) / 2);
        // Jitter after the cap: capped delays still spread over [0, max].
        assert_eq!(b.delay(50, 0.25), Duration::from_millis(7_500));
        assert_eq!(b.delay(3, f64::NAN), Duration::ZERO);
        assert_eq!(b.delay(3, 7.0), b.ceiling(3));
    }

    #[test]
    fn random_delays_stay_in_bounds_and_spread() {
        let b = Backoff::default();
        for failures in 0..12 {
            let mut low = false;
            let mut high = false;
            for _ in 0..200 {
                let unit = jitter_unit();
                assert!((0.0..1.0).contains(&unit));
                let d = b.delay(failures, unit);
                assert!(d <= b.ceiling(failures));
                low |= d < b.ceiling(failures) / 4;
                high |= d > b.ceiling(failures) * 3 / 4;
            }
            assert!(low && high, "200 draws should cover both ends");
        }
    }

    #[test]
    fn jitter_spreads_a_thousand_reconnects() {
        // 1,000 clients dropped at once, on their first retry (what a server
        // restart causes: ceiling 250 ms) up to their 6th (ceiling 8 s),
        // counted in ten windows per ceiling (25 ms for the first retry):
        // no window holds more than 3x the uniform 100. Without jitter all
        // 1,000 would share one window.
        let b = Backoff::default();
        for failures in 0..=5 {
            let ceiling_us = b.ceiling(failures).as_micros();
            let mut counts = [0u32; 10];
            for _ in 0..1000 {
                let d = b.delay(failures, jitter_unit());
                let w = usize::try_from(d.as_micros() * 10 / ceiling_us).expect("small");
                counts[w.min(9)] += 1;
            }
            let busiest = counts.iter().copied().max().unwrap_or_default();
            assert!(
                busiest <= 300,
                "failures {failures}: {busiest} in one window: {counts:?}"
            );
        }
    }

    #[test]
    fn resets_only_after_staying_up() {
        let b = Backoff::default();
        assert!(!b.resets(Duration::ZERO));
        assert!(!b.resets(Duration::from_millis(9_999)));
        assert!(b.resets(Duration::from_secs(10)));
        assert!(b.reset_after(MS).resets(MS));
    }
}
