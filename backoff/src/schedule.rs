//! The retries of one operation: a [`Backoff`] plus the failure count, an
//! optional limit and the jitter source (injectable, so tests can pin the
//! waits). Callers own the sleeping; this only says how long.

use std::time::Duration;

use crate::backoff::Backoff;
use crate::jitter::jitter_unit;

/// The waits between the attempts of one operation.
///
/// Each failure asks for the wait before the next attempt: the first is
/// drawn under [`Backoff::ceiling`]`(0)`, the next under `ceiling(1)`, and so
/// on; [`Schedule::reset`] starts over after a success. As an [`Iterator`]
/// it yields one wait per failure and ends after [`Schedule::limit`] waits
/// (never, without a limit); [`Schedule::next_delay`] ignores the limit, for
/// loops that something else bounds (a deadline, a cancellation).
///
/// ```
/// use std::time::Duration;
/// use sessionkit_backoff::Backoff;
///
/// let ms = Duration::from_millis(1);
/// // Three retries after the first attempt; the waits pinned for the example.
/// let mut retries = Backoff::new(100 * ms, 2.0, 250 * ms)
///     .schedule()
///     .limit(3)
///     .jitter(|| 1.0);
/// assert_eq!(retries.next(), Some(100 * ms));
/// assert_eq!(retries.next(), Some(200 * ms));
/// assert_eq!(retries.next(), Some(250 * ms));
/// assert_eq!(retries.next(), None, "give up");
/// retries.reset();
/// assert_eq!(retries.next(), Some(100 * ms));
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Schedule {
    backoff: Backoff,
    failures: u32,
    limit: Option<u32>,
    jitter: fn() -> f64,
}

impl Schedule {
    /// No failures yet, no limit, jitter from [`jitter_unit`].
    pub fn new(backoff: Backoff) -> Self {
        Self {
            backoff,
            failures: 0,
            limit: None,
            jitter: jitter_unit,
        }
    }

    /// At most `retries` waits (retries after the first attempt) from
    /// [`Iterator::next`].
    pub fn limit(mut self, retries: u32) -> Self {
        self.limit = Some(retries);
        self
    }

    /// Another source of units in `[0, 1]` (tests pin the waits with a constant).
    pub fn jitter(mut self, unit: fn() -> f64) -> Self {
        self.jitter = unit;
        self
    }

    /// The backoff the waits come from.
    #[must_use]
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Failures counted since the start or the last [`Schedule::reset`].
    #[must_use]
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Starts over (after a success): the next wait is the shortest again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure and returns the wait before the next attempt,
    /// whatever the limit.
    pub fn next_delay(&mut self) -> Duration {
        let wait = self.backoff.delay(self.failures, (self.jitter)());
        self.failures = self.failures.saturating_add(1);
        wait
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    /// Counts a failure and returns the wait before the next attempt, or
    /// `None` once the limit's waits have all been handed out.
    fn next(&mut self) -> Option<Duration> {
        if self.limit.is_some_and(|limit| self.failures >= limit) {
            return None;
        }
        Some(self.next_delay())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn top() -> f64 {
        1.0
    }

    #[test]
    fn waits_follow_the_ceilings_and_the_limit() {
        let backoff = Backoff::new(250 * MS, 2.0, 10_000 * MS);
        let waits: Vec<Duration> = backoff.schedule().limit(3).jitter(top).collect();
        assert_eq!(waits, [250 * MS, 500 * MS, 1000 * MS]);
        let none: Vec<Duration> = backoff.schedule().limit(0).collect();
        assert!(none.is_empty(), "no retries: give up at the first failure");
    }

    #[test]
    fn a_spent_schedule_stays_spent_until_reset() {
        let mut s = Backoff::default().schedule().limit(1);
        assert!(s.next().is_some());
        assert_eq!(s.next(), None);
        assert_eq!(s.next(), None);
        assert_eq!(s.failures(), 1, "a refused wait is not a failure counted");
        s.reset();
        assert_eq!(s.failures(), 0);
        assert!(s.next().is_some());
    }

    #[test]
    fn without_a_limit_it_goes_on_at_the_cap() {
        let mut s = Backoff::new(MS, 2.0, 8 * MS).schedule().jitter(top);
        let waits: Vec<Duration> = s.by_ref().take(6).collect();
        assert_eq!(waits, [MS, 2 * MS, 4 * MS, 8 * MS, 8 * MS, 8 * MS]);
        assert_eq!(s.failures(), 6);
    }

    #[test]
    fn next_delay_ignores_the_limit() {
        let mut s = Backoff::new(MS, 2.0, 8 * MS)
            .schedule()
            .limit(1)
            .jitter(top);
        assert_eq!(s.next_delay(), MS);
        assert_eq!(s.next_delay(), 2 * MS);
        assert_eq!(s.next(), None);
    }

    #[test]
    fn the_jitter_source_scales_each_wait() {
        let backoff = Backoff::new(100 * MS, 2.0, 1000 * MS).floor(20 * MS);
        let low: Vec<Duration> = backoff.schedule().jitter(|| 0.0).take(3).collect();
        assert_eq!(low, [20 * MS, 20 * MS, 20 * MS]);
        let mid: Vec<Duration> = backoff.schedule().jitter(|| 0.5).take(3).collect();
        assert_eq!(mid, [60 * MS, 110 * MS, 210 * MS]);
        // The default source: every wait between the floor and its ceiling.
        let mut s = backoff.schedule();
        for failures in 0..10 {
            let wait = s.next_delay();
            assert!(
                wait >= 20 * MS && wait <= backoff.ceiling(failures),
                "{wait:?}"
            );
        }
    }

    #[test]
    fn the_count_saturates() {
        let mut s = Backoff::default().schedule().jitter(top);
        s.failures = u32::MAX - 1;
        assert_eq!(s.next_delay(), Backoff::default().max);
        assert_eq!(s.next_delay(), Backoff::default().max);
        assert_eq!(s.failures(), u32::MAX);
    }
}
