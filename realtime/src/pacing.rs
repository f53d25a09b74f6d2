//! How long the client waits before its next attempt, as pure functions of
//! what went wrong, the time and a random unit (the one owner of the
//! reconnect waits; the schedule itself is [`Backoff`]'s).
//!
//! - One schedule for the whole endpoint list: the ceiling grows once per
//!   full round of failures (`Backoff::ceiling(failures / endpoints)`), so a
//!   client with three nodes tries each of them before it waits longer.
//!   Every wait is drawn with full jitter under that ceiling.
//! - A server going away (close 1001 or 1012) is followed at once: the
//!   wait is drawn under the base delay only and counts as no failure
//!   (the jitter spreads a node's clients over the other nodes instead of
//!   landing them all in the same millisecond).
//! - A refused connection (the host answered the SYN with a reset: nothing
//!   listens there, the process is down or restarting) costs the server
//!   nothing, so for the first `probe_window` (default 30 s) of an outage
//!   the client probes every `[base/2, base]` instead of backing off, and
//!   is back within one base delay of the server's return. Past the
//!   window, refusals count like any failure. Timeouts, lost connections
//!   and error statuses always back off (the server, or what is in front of
//!   it, may be overloaded: backing off is what helps it).
//! - A server's advice (`{"retry_after_ms": N}`) sets the wait (floored at
//!   the base, capped at ten minutes, spread by up to half again).

use std::time::Duration;

use sessionkit_backoff::Backoff;
use tokio::time::Instant;

/// The longest wait a server's `retry_after_ms` can ask for.
pub(crate) const MAX_ADVISED_DELAY: Duration = Duration::from_secs(10 * 60);

/// What happened, as far as the wait goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Setback {
    /// The TCP connection was refused (a reset in answer to the SYN).
    Refused,
    /// Anything else that failed: a timeout, a lost or unresponsive
    /// connection, an error status, a refused token, no token.
    Failed,
    /// The server said it is going away (1001, 1012).
    GoingAway,
    /// The server advised this wait in its close reason.
    Advised(Duration),
}

/// The waits of one client: its backoff, its number of endpoints, the
/// failures counted toward the growth and when the current outage began.
#[derive(Debug, Clone)]
pub(crate) struct Pacing {
    backoff: Backoff,
    endpoints: u32,
    probe_window: Duration,
    failures: u32,
    offline_since: Option<Instant>,
}

impl Pacing {
    pub(crate) fn new(backoff: Backoff, endpoints: usize, probe_window: Duration) -> Self {
        Self {
            backoff,
            endpoints: u32::try_from(endpoints.max(1)).unwrap_or(u32::MAX),
            probe_window,
            failures: 0,
            offline_since: None,
        }
    }

    /// The wait before the next attempt after `setback` at `now`, for a
    /// random `unit` in `[0, 1]`.
    pub(crate) fn wait(&mut self, setback: Setback, now: Instant, unit: f64) -> Duration {
        let since = *self.offline_since.get_or_insert(now);
        let base = self.backoff.base;
        match setback {
            Setback::GoingAway => self.backoff.delay(0, unit),
            Setback::Refused if now.saturating_duration_since(since) < self.probe_window => {
                let low = (base / 2).max(self.backoff.floor.min(base));
                low + (base - low).mul_f64(clamp_unit(unit))
            }
            Setback::Advised(advised) => {
                self.failures = self.failures.saturating_add(1);
                advised_delay(advised, base, unit)
            }
            Setback::Refused | Setback::Failed => {
                let wait = self.backoff.delay(self.failures / self.endpoints, unit);
                self.failures = self.failures.saturating_add(1);
                wait
            }
        }
    }

    /// A connection is up: the outage is over (the failure count stays
    /// until the connection has stayed up, see [`Pacing::ended`]).
    pub(crate) fn connected(&mut self) {
        self.offline_since = None;
    }

    /// A connection that was up for `up_for` ended; returns whether that
    /// was long enough to start the schedule over.
    pub(crate) fn ended(&mut self, up_for: Duration) -> bool {
        let resets = self.backoff.resets(up_for);
        if resets {
            self.failures = 0;
        }
        resets
    }

    /// Failures counted toward the growth.
    #[cfg(test)]
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

fn clamp_unit(unit: f64) -> f64 {
    if unit.is_nan() {
        0.0
    } else {
        unit.clamp(0.0, 1.0)
    }
}

/// The wait after a server advised `advised`: at least `floor` (the
/// backoff's base: 0 must not become a hot loop), at most
/// [`MAX_ADVISED_DELAY`], plus up to half again at random (`unit` in
/// [0, 1]) so that every client told the same does not return at once.
pub(crate) fn advised_delay(advised: Duration, floor: Duration, unit: f64) -> Duration {
    let base = advised.clamp(floor, MAX_ADVISED_DELAY.max(floor));
    base + base.mul_f64(clamp_unit(unit) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionkit_backoff::jitter_unit;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    fn pacing(endpoints: usize) -> Pacing {
        Pacing::new(Backoff::default(), endpoints, 30 * S)
    }

    #[test]
    fn one_schedule_for_the_list_grows_once_per_round() {
        let backoff = Backoff::default();
        let mut p = pacing(3);
        let now = Instant::now();
        // At the top of the jitter every wait is its ceiling.
        let waits: Vec<Duration> = (0..9).map(|_| p.wait(Setback::Failed, now, 1.0)).collect();
        let ceilings: Vec<Duration> = (0..9u32).map(|f| backoff.ceiling(f / 3)).collect();
        assert_eq!(waits, ceilings);
        assert_eq!(waits[..3], [250 * MS; 3]);
        assert_eq!(waits[3..6], [500 * MS; 3]);
        assert_eq!(waits[6..], [S; 3]);
        // Full jitter: the bottom is zero, whatever the round.
        assert_eq!(p.wait(Setback::Failed, now, 0.0), Duration::ZERO);
        // One endpoint: the plain schedule.
        let mut one = pacing(1);
        let waits: Vec<Duration> = (0..4)
            .map(|_| one.wait(Setback::Failed, now, 1.0))
            .collect();
        assert_eq!(waits, [250 * MS, 500 * MS, S, 2 * S]);
    }

    #[test]
    fn going_away_is_within_the_base_and_no_failure() {
        let mut p = pacing(3);
        let now = Instant::now();
        for _ in 0..6 {
            p.wait(Setback::Failed, now, 1.0);
        }
        for unit in [0.0, 0.5, 1.0] {
            assert_eq!(
                p.wait(Setback::GoingAway, now, unit),
                (250 * MS).mul_f64(unit)
            );
        }
        assert_eq!(p.failures(), 6, "not counted");
    }

    #[test]
    fn refusals_probe_at_the_base_during_the_window_then_back_off() {
        let mut p = pacing(1);
        let start = Instant::now();
        for secs in 0..30 {
            let at = start + Duration::from_secs(secs);
            for unit in [0.0, 1.0] {
                let wait = p.wait(Setback::Refused, at, unit);
                assert!(wait >= 125 * MS && wait <= 250 * MS, "{secs} s: {wait:?}");
            }
        }
        assert_eq!(p.failures(), 0);
        // Past the window: the ordinary schedule, from its start.
        let late = start + 30 * S;
        assert_eq!(p.wait(Setback::Refused, late, 1.0), 250 * MS);
        assert_eq!(p.wait(Setback::Refused, late, 1.0), 500 * MS);
        // A connection ends the outage: a new one probes again.
        p.connected();
        assert!(p.wait(Setback::Refused, late + 60 * S, 1.0) <= 250 * MS);
        // A window of zero: refusals back off like any failure.
        let mut strict = Pacing::new(Backoff::default(), 1, Duration::ZERO);
        let waits: Vec<Duration> = (0..3)
            .map(|_| strict.wait(Setback::Refused, start, 1.0))
            .collect();
        assert_eq!(waits, [250 * MS, 500 * MS, S]);
    }

    #[test]
    fn the_outage_of_the_issue_is_outlasted_by_less_than_the_base() {
        // Ten seconds of refusals (the server is back at t = 10 s), then the
        // next attempt connects: how long after the return is that?
        for _ in 0..200 {
            let mut p = pacing(1);
            let start = Instant::now();
            let mut at = start;
            while at < start + 10 * S {
                at += p.wait(Setback::Refused, at, jitter_unit());
            }
            let late = at - (start + 10 * S);
            assert!(late <= 250 * MS, "{late:?}");
        }
        // The schedule without probing: seven quick refusals reach a
        // ceiling of 16 s (what the issue measured, 11.4 s late).
        let backoff = Backoff::default();
        assert_eq!(backoff.ceiling(6), 16 * S);
    }

    #[test]
    fn a_connection_that_stayed_up_starts_the_schedule_over() {
        let mut p = pacing(1);
        let now = Instant::now();
        for _ in 0..5 {
            p.wait(Setback::Failed, now, 1.0);
        }
        assert!(!p.ended(9 * S));
        assert_eq!(p.failures(), 5);
        assert!(p.ended(10 * S));
        assert_eq!(p.wait(Setback::Failed, now, 1.0), 250 * MS);
    }

    #[test]
    fn advice_is_floored_capped_spread_and_counted() {
        let floor = 250 * MS;
        assert_eq!(
            advised_delay(Duration::ZERO, floor, 0.0),
            floor,
            "0 is no hot loop"
        );
        assert_eq!(advised_delay(S, floor, 1.0), 1500 * MS);
        assert_eq!(
            advised_delay(Duration::from_secs(86_400), floor, 0.0),
            MAX_ADVISED_DELAY
        );
        let spread: std::collections::HashSet<Duration> = (0..50)
            .map(|_| advised_delay(2 * S, floor, jitter_unit()))
            .collect();
        assert!(spread.len() > 40, "clients told the same spread out");
        let mut p = pacing(1);
        assert_eq!(p.wait(Setback::Advised(S), Instant::now(), 0.0), S);
        assert_eq!(p.failures(), 1);
    }
}
