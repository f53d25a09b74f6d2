//! When to refresh: the app's [`RefreshPolicy`] and the proactive timer's
//! arithmetic, kept pure so it can be checked without a clock.

use std::time::{Duration, SystemTime};

/// How a session keeps its access token fresh. The default is [`RefreshPolicy::Proactive`].
/// Set it with [`crate::SessionManager::with_policy`].
///
/// ```
/// use sessionkit::RefreshPolicy;
///
/// // A command-line tool that makes a few calls: refresh only when a call needs it.
/// let cli = RefreshPolicy::OnDemand;
/// // A desktop app making frequent API calls: refresh ahead of expiry (the default).
/// let desktop = RefreshPolicy::Proactive;
/// // A chat or TV app with a WebSocket: refresh ahead of expiry, and its realtime
/// // connections re-authenticate on the session's `Refreshed` events.
/// let realtime = RefreshPolicy::Background;
/// // A field app on flaky networks: never give up a session over the network.
/// let field = RefreshPolicy::OfflineFirst;
/// // A banking app: short tokens, and the refresh token never leaves memory.
/// let bank = RefreshPolicy::HighSecurity;
///
/// assert_eq!(RefreshPolicy::default(), desktop);
/// assert!(!cli.has_timer() && realtime.has_timer());
/// assert!(field.retries_until_online());
/// assert!(bank.refresh_token_in_memory_only());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RefreshPolicy {
    /// Refresh only when a caller asks for an expired token (or one inside
    /// the skew), or after a 401.
    OnDemand,
    /// A background timer refreshes at `expires_at − margin`, margin =
    /// min(5 min, 20 % of the token's lifetime), at least the clock skew, at
    /// most half the lifetime.
    #[default]
    Proactive,
    /// `Proactive`, and realtime connections re-authenticate on the
    /// session's `Refreshed` events without a gap.
    Background,
    /// Network failures never end the session: a failed background refresh
    /// is retried with capped backoff until the network returns.
    OfflineFirst,
    /// Short tokens refreshed often; the refresh token is kept in memory
    /// only, never in the store (a restart means a new login).
    HighSecurity,
}

impl RefreshPolicy {
    /// Does the policy run a background refresh timer?
    pub fn has_timer(self) -> bool {
        !matches!(self, RefreshPolicy::OnDemand)
    }

    /// Does the policy keep the refresh token out of the store?
    pub fn refresh_token_in_memory_only(self) -> bool {
        matches!(self, RefreshPolicy::HighSecurity)
    }

    /// Does the policy retry failed background refreshes until the network returns?
    pub fn retries_until_online(self) -> bool {
        matches!(self, RefreshPolicy::OfflineFirst)
    }
}

/// The shortest wait between two proactive refreshes, whatever the token says.
pub(crate) const MIN_TIMER_WAIT: Duration = Duration::from_secs(5);

/// How long the proactive timer waits from `now` before refreshing a token
/// that expires at `expires_at` and arrived at `obtained_at` (unknown for a
/// token read from the store). Never zero in a row: the wait is at least
/// half the token's lifetime from when it arrived, and at least
/// [`MIN_TIMER_WAIT`], so no token — however short — makes the timer loop.
pub(crate) fn timer_wait(
    expires_at: SystemTime,
    obtained_at: Option<SystemTime>,
    now: SystemTime,
    skew: Duration,
) -> Duration {
    let Some(obtained) = obtained_at else {
        // A stored token of unknown age: refresh once it is inside the skew.
        let fire = expires_at.checked_sub(skew).unwrap_or(expires_at);
        return fire.duration_since(now).unwrap_or_default();
    };
    let lifetime = expires_at.duration_since(obtained).unwrap_or_default();
    let margin = Duration::from_secs(300)
        .min(lifetime.mul_f64(0.2))
        .max(skew)
        .min(lifetime / 2);
    let fire = expires_at.checked_sub(margin).unwrap_or(expires_at);
    let earliest = obtained + (lifetime / 2).max(MIN_TIMER_WAIT);
    fire.max(earliest).duration_since(now).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(60);

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    #[test]
    fn an_hour_token_refreshes_five_minutes_early() {
        assert_eq!(
            timer_wait(at(3600), Some(at(0)), at(0), SKEW),
            Duration::from_secs(3300)
        );
    }

    #[test]
    fn a_ten_minute_token_refreshes_at_twenty_percent() {
        // 20 % of 600 s = 120 s > skew.
        assert_eq!(
            timer_wait(at(600), Some(at(0)), at(0), SKEW),
            Duration::from_secs(480)
        );
    }

    #[test]
    fn a_five_minute_token_keeps_the_skew_as_margin() {
        // 20 % of 300 s = 60 s = skew.
        assert_eq!(
            timer_wait(at(300), Some(at(0)), at(0), SKEW),
            Duration::from_secs(240)
        );
    }

    #[test]
    fn a_token_shorter_than_the_margin_is_used_for_half_its_life() {
        // 30 s lifetime: the skew (60 s) would fire at once; half the life instead.
        assert_eq!(
            timer_wait(at(30), Some(at(0)), at(0), SKEW),
            Duration::from_secs(15)
        );
    }

    #[test]
    fn a_zero_lifetime_token_cannot_make_the_timer_loop() {
        assert_eq!(timer_wait(at(0), Some(at(0)), at(0), SKEW), MIN_TIMER_WAIT);
        assert_eq!(timer_wait(at(2), Some(at(0)), at(0), SKEW), MIN_TIMER_WAIT);
    }

    #[test]
    fn a_stored_token_of_unknown_age_refreshes_inside_the_skew() {
        assert_eq!(
            timer_wait(at(600), None, at(0), SKEW),
            Duration::from_secs(540)
        );
        assert_eq!(timer_wait(at(30), None, at(0), SKEW), Duration::ZERO);
    }

    #[test]
    fn waits_count_from_now() {
        assert_eq!(
            timer_wait(at(3600), Some(at(0)), at(1000), SKEW),
            Duration::from_secs(2300)
        );
        assert_eq!(
            timer_wait(at(3600), Some(at(0)), at(4000), SKEW),
            Duration::ZERO
        );
    }
}
