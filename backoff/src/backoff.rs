//! The schedule itself: exponential steps up to a cap, with full jitter
//! applied after the cap, as pure functions of the failure count and a
//! random unit, so it can be tested without a clock or a network.

use std::time::Duration;

use crate::jitter::jitter_unit;
use crate::schedule::Schedule;

/// How long a connection must stay up before [`Backoff::resets`] says so.
const DEFAULT_RESET_AFTER: Duration = Duration::from_secs(10);

/// Exponential backoff with full jitter applied after the cap.
///
/// The delay after `n` failures (counting failures from 0) is uniform in
/// `[floor, min(max, base · factorⁿ)]`; the floor is 0 unless set
/// ([`Backoff::floor`]), which is full jitter. For a connection that is kept
/// open, the failure count goes back to 0 only once it has stayed up for
/// `reset_after` ([`Backoff::resets`]).
///
/// ```
/// use std::time::Duration;
/// use sessionkit_backoff::Backoff;
///
/// let backoff = Backoff::new(Duration::from_millis(250), 2.0, Duration::from_secs(30));
/// assert_eq!(backoff.ceiling(0), Duration::from_millis(250));
/// assert_eq!(backoff.ceiling(3), Duration::from_secs(2));
/// assert_eq!(backoff.ceiling(20), Duration::from_secs(30));
/// // Full jitter: the random unit picks a point between 0 and the ceiling.
/// assert_eq!(backoff.delay(3, 0.5), Duration::from_secs(1));
/// assert!(backoff.delay_jittered(3) <= Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Backoff {
    /// The first step (default 250 ms).
    pub base: Duration,
    /// The growth factor (default 2; below 1 counts as 1).
    pub factor: f64,
    /// The cap (default 30 s).
    pub max: Duration,
    /// The shortest delay (default 0): delays are drawn from the floor up to
    /// the ceiling, and are the ceiling when the ceiling is lower.
    pub floor: Duration,
    /// How long a connection must stay up before the schedule resets (default 10 s).
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_millis(250), 2.0, Duration::from_secs(30))
    }
}

impl Backoff {
    /// A schedule with these steps, no floor and the default reset rule.
    #[must_use]
    pub const fn new(base: Duration, factor: f64, max: Duration) -> Self {
        Self {
            base,
            factor,
            max,
            floor: Duration::ZERO,
            reset_after: DEFAULT_RESET_AFTER,
        }
    }

    /// With another reset rule.
    #[must_use]
    pub const fn reset_after(mut self, up_for: Duration) -> Self {
        self.reset_after = up_for;
        self
    }

    /// With a shortest delay: delays are uniform in `[floor, ceiling]`
    /// instead of `[0, ceiling]` (a retry that comes at once after a failure
    /// is rarely worth making).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sessionkit_backoff::Backoff;
    ///
    /// let s = Duration::from_secs(1);
    /// let backoff = Backoff::new(s, 2.0, 8 * s).floor(s);
    /// assert_eq!(backoff.delay(0, 0.7), s, "the first ceiling is the floor");
    /// assert_eq!(backoff.delay(2, 0.0), s);
    /// assert_eq!(backoff.delay(2, 0.5), 2500 * Duration::from_millis(1));
    /// assert_eq!(backoff.delay(2, 1.0), 4 * s);
    /// ```
    #[must_use]
    pub const fn floor(mut self, floor: Duration) -> Self {
        self.floor = floor;
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
    /// `floor + (ceiling(failures) − floor) · unit` (full jitter, applied
    /// after the cap). A `unit` out of range is clamped, NaN counts as 0.
    #[must_use]
    pub fn delay(&self, failures: u32, unit: f64) -> Duration {
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let ceiling = self.ceiling(failures);
        let floor = self.floor.min(ceiling);
        floor + (ceiling - floor).mul_f64(unit)
    }

    /// The delay after `failures` failures, with a fresh [`jitter_unit`].
    #[must_use]
    pub fn delay_jittered(&self, failures: u32) -> Duration {
        self.delay(failures, jitter_unit())
    }

    /// Whether a connection that stayed up for `up_for` resets the schedule.
    #[must_use]
    pub fn resets(&self, up_for: Duration) -> bool {
        up_for >= self.reset_after
    }

    /// The retries of one operation on this schedule, from no failures,
    /// without a limit ([`Schedule::limit`] sets one).
    pub fn schedule(self) -> Schedule {
        Schedule::new(self)
    }
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
    fn defaults_are_the_reconnect_schedule() {
        let b = Backoff::default();
        assert_eq!(b.base, 250 * MS);
        assert_eq!(b.factor, 2.0);
        assert_eq!(b.max, Duration::from_secs(30));
        assert_eq!(b.floor, Duration::ZERO);
        assert_eq!(b.reset_after, Duration::from_secs(10));
    }

    #[test]
    fn a_factor_below_one_does_not_shrink_the_steps() {
        let b = Backoff::new(100 * MS, 0.5, Duration::from_secs(1));
        assert_eq!(b.ceiling(0), 100 * MS);
        assert_eq!(b.ceiling(5), 100 * MS);
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
        assert_eq!(b.delay(3, -1.0), Duration::ZERO);
    }

    #[test]
    fn a_floor_raises_the_low_end_only() {
        let b = Backoff::new(100 * MS, 2.0, 1000 * MS).floor(200 * MS);
        // The ceiling below the floor: the ceiling, whatever the unit.
        assert_eq!(b.delay(0, 0.0), 100 * MS);
        assert_eq!(b.delay(0, 1.0), 100 * MS);
        // At the floor, then uniform between the floor and the ceiling.
        assert_eq!(b.delay(1, 0.3), 200 * MS);
        assert_eq!(b.delay(3, 0.0), 200 * MS);
        assert_eq!(b.delay(3, 0.5), 500 * MS);
        assert_eq!(b.delay(3, 1.0), 800 * MS);
        assert_eq!(b.delay(9, 1.0), 1000 * MS);
        assert_eq!(b.delay(9, f64::NAN), 200 * MS);
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
    fn jittered_delays_respect_the_floor() {
        let b = Backoff::new(100 * MS, 2.0, 1000 * MS).floor(50 * MS);
        for failures in 0..8 {
            for _ in 0..200 {
                let d = b.delay_jittered(failures);
                assert!(d >= 50 * MS && d <= b.ceiling(failures), "{d:?}");
            }
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
