//! When a token is due for refresh: the one margin rule of the SDK.
//!
//! Every consumer of an account — [`crate::Session::access_token`], the
//! proactive timer, [`crate::AuthedClient`], realtime connections through
//! [`crate::Session::current_token`] — asks the same question, "is the
//! token due?", and this module is the only place that answers it. A token
//! is due at `expires_at − margin`:
//!
//! | policy | margin |
//! | --- | --- |
//! | `OnDemand` | the clock skew |
//! | `Proactive`, `Background`, `OfflineFirst` | min(5 min, 20 % of the lifetime), at least the skew |
//! | `HighSecurity` | half the lifetime |
//!
//! and never more than half the lifetime, so a token that came back shorter
//! than the margin is used for half its life, not refreshed again at once.
//! A token whose arrival time is unknown (stored by an older version) is due
//! one skew before it expires. Pure functions with the time passed in.

use std::time::{Duration, SystemTime};

use crate::policy::RefreshPolicy;

/// The largest proactive margin.
pub(crate) const MAX_MARGIN: Duration = Duration::from_secs(5 * 60);

/// The proactive margin's share of the token's lifetime.
pub(crate) const MARGIN_SHARE: f64 = 0.2;

/// The shortest wait between two attempts of the timer, whatever the tokens
/// say: a token that comes back with no lifetime at all (due the moment it
/// arrives) cannot make the timer loop. Every other token is due no earlier
/// than half its lifetime after it arrived, which spaces refreshes already.
pub(crate) const MIN_TIMER_WAIT: Duration = Duration::from_secs(1);

/// How long before `expires_at` a token is due, under `policy`.
pub(crate) fn margin(
    policy: RefreshPolicy,
    lifetime: Option<Duration>,
    skew: Duration,
) -> Duration {
    let Some(lifetime) = lifetime else {
        return skew;
    };
    let margin = match policy {
        RefreshPolicy::OnDemand => skew,
        RefreshPolicy::HighSecurity => lifetime / 2,
        RefreshPolicy::Proactive | RefreshPolicy::Background | RefreshPolicy::OfflineFirst => {
            MAX_MARGIN.min(lifetime.mul_f64(MARGIN_SHARE)).max(skew)
        }
    };
    margin.min(lifetime / 2)
}

/// When a token that expires at `expires_at` and arrived at `obtained_at`
/// is due for refresh under `policy`; `None` when it never expires.
pub(crate) fn due_at(
    policy: RefreshPolicy,
    expires_at: Option<SystemTime>,
    obtained_at: Option<SystemTime>,
    skew: Duration,
) -> Option<SystemTime> {
    let expires_at = expires_at?;
    let lifetime = obtained_at.map(|o| expires_at.duration_since(o).unwrap_or_default());
    let margin = margin(policy, lifetime, skew);
    Some(
        expires_at
            .checked_sub(margin)
            .unwrap_or(SystemTime::UNIX_EPOCH),
    )
}

/// How long the proactive timer sleeps from `now` before a token due at
/// `due`, when its last refresh attempt started at `last` (if any): until
/// the token is due, and at least [`MIN_TIMER_WAIT`] after the last attempt.
pub(crate) fn timer_wait(due: SystemTime, last: Option<SystemTime>, now: SystemTime) -> Duration {
    let earliest = last.map_or(due, |l| due.max(l + MIN_TIMER_WAIT));
    earliest.duration_since(now).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKEW: Duration = Duration::from_secs(60);
    const ALL: [RefreshPolicy; 5] = [
        RefreshPolicy::OnDemand,
        RefreshPolicy::Proactive,
        RefreshPolicy::Background,
        RefreshPolicy::OfflineFirst,
        RefreshPolicy::HighSecurity,
    ];

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
    }

    fn due(policy: RefreshPolicy, lifetime: u64) -> u64 {
        due_at(policy, Some(at(lifetime)), Some(at(0)), SKEW)
            .expect("expires")
            .duration_since(at(0))
            .expect("after arrival")
            .as_secs()
    }

    #[test]
    fn an_hour_token_is_due_five_minutes_early_proactively() {
        assert_eq!(due(RefreshPolicy::Proactive, 3600), 3300);
        assert_eq!(due(RefreshPolicy::Background, 3600), 3300);
        assert_eq!(due(RefreshPolicy::OfflineFirst, 3600), 3300);
    }

    #[test]
    fn a_ten_minute_token_is_due_at_eighty_percent_proactively() {
        assert_eq!(due(RefreshPolicy::Proactive, 600), 480);
    }

    #[test]
    fn on_demand_waits_until_the_skew() {
        assert_eq!(due(RefreshPolicy::OnDemand, 3600), 3540);
        assert_eq!(due(RefreshPolicy::OnDemand, 600), 540);
    }

    #[test]
    fn high_security_refreshes_at_half_life() {
        assert_eq!(due(RefreshPolicy::HighSecurity, 3600), 1800);
        assert_eq!(due(RefreshPolicy::HighSecurity, 600), 300);
    }

    #[test]
    fn every_policy_uses_a_short_token_for_half_its_life() {
        // 30 s lifetime: the skew (60 s) would make it due at once.
        for policy in ALL {
            assert_eq!(due(policy, 30), 15, "{policy:?}");
        }
    }

    #[test]
    fn a_token_of_unknown_age_is_due_one_skew_before_expiry() {
        for policy in ALL {
            assert_eq!(
                due_at(policy, Some(at(600)), None, SKEW),
                Some(at(540)),
                "{policy:?}"
            );
        }
        assert_eq!(due_at(RefreshPolicy::Proactive, None, None, SKEW), None);
    }

    #[test]
    fn the_timer_waits_until_due_and_never_loops() {
        assert_eq!(timer_wait(at(100), None, at(40)), Duration::from_secs(60));
        assert_eq!(timer_wait(at(100), None, at(140)), Duration::ZERO);
        // Due already (a token with no lifetime), and the last attempt was
        // just now: wait out the minimum.
        assert_eq!(timer_wait(at(100), Some(at(140)), at(140)), MIN_TIMER_WAIT);
        assert_eq!(
            due_at(RefreshPolicy::Proactive, Some(at(0)), Some(at(0)), SKEW),
            Some(at(0))
        );
    }
}
