//! The app's choice of [`RefreshPolicy`]; what each policy does is spread
//! over the places it touches, the margin rule in `timing`.

/// How a session keeps its access token fresh. The default is [`RefreshPolicy::Proactive`].
/// Set it with [`crate::SessionManagerBuilder::policy`].
///
/// ```
/// use sessionkit::RefreshPolicy;
///
/// // A command-line tool that makes a few calls: refresh only when a call needs it.
/// let cli = RefreshPolicy::OnDemand;
/// // A desktop app making frequent API calls: refresh ahead of expiry (the default).
/// let desktop = RefreshPolicy::Proactive;
/// // A chat or TV app with a WebSocket: refresh ahead of expiry; its realtime
/// // connections move to each refreshed token without a gap.
/// let realtime = RefreshPolicy::Background;
/// // A field app on flaky networks: never give up a session over the network.
/// let field = RefreshPolicy::OfflineFirst;
/// // A banking app: short tokens, and the refresh token never leaves memory.
/// let bank = RefreshPolicy::HighSecurity;
///
/// assert_eq!(RefreshPolicy::default(), desktop);
/// assert!(!cli.has_timer() && realtime.has_timer());
/// assert!(field.retries_until_online() && field.survives_outages());
/// assert!(realtime.keeps_connections_continuous());
/// assert!(bank.refresh_token_in_memory_only() && !bank.stores_tokens());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum RefreshPolicy {
    /// Refresh only when a caller asks for a token that has expired (or is
    /// within the clock skew), or after a 401. No timer.
    OnDemand,
    /// A background timer refreshes at `expires_at − margin`, margin =
    /// min(5 min, 20 % of the token's lifetime), at least the clock skew, at
    /// most half the lifetime. Every consumer (realtime connections,
    /// [`crate::AuthedClient`], the app) takes the refreshed token: one
    /// refresh per interval, however many consumers.
    #[default]
    Proactive,
    /// `Proactive`, and realtime connections stay continuous through
    /// refreshes (they move to the session's new token in-band or
    /// make-before-break and never refresh on their own); after the machine
    /// sleeps past a refresh, the timer refreshes at once on waking.
    Background,
    /// Network failures never end the session: a failed background refresh
    /// is retried with capped backoff until the network returns; only the
    /// provider's word (`invalid_grant`) signs out. Requests the app marks
    /// repeatable ([`crate::AuthedClient::send_repeatable`]) wait out an
    /// outage in a bounded queue and are replayed in order.
    OfflineFirst,
    /// The refresh token never touches the store (an earlier stored one is
    /// deleted at sign-in and never read), nor does the access token: a
    /// restart means a new login. Tokens are refreshed at half their life,
    /// and the first refused refresh signs out.
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

    /// Does the policy write tokens to the store? (`HighSecurity` keeps
    /// them in memory only.)
    pub fn stores_tokens(self) -> bool {
        !matches!(self, RefreshPolicy::HighSecurity)
    }

    /// Does the policy sign out on the first refresh the provider refuses?
    pub fn signs_out_on_refusal(self) -> bool {
        matches!(self, RefreshPolicy::HighSecurity)
    }

    /// Does the policy retry failed background refreshes until the network returns?
    pub fn retries_until_online(self) -> bool {
        matches!(
            self,
            RefreshPolicy::OfflineFirst | RefreshPolicy::Background
        )
    }

    /// Do realtime connections move to each refreshed token while
    /// connected, without a gap? (Under the other policies a connection
    /// keeps its token until the server closes it, then reconnects with the
    /// session's current one.)
    pub fn keeps_connections_continuous(self) -> bool {
        matches!(self, RefreshPolicy::Background)
    }

    /// Does the timer check the wall clock while it waits, so that it
    /// refreshes on waking after the machine slept past a refresh?
    pub fn wakes_after_sleep(self) -> bool {
        matches!(self, RefreshPolicy::Background)
    }

    /// Does the session survive every failure but the provider's word
    /// (`invalid_grant`), whatever [`crate::SessionManagerBuilder::sign_out_after_failures`] says?
    pub fn survives_outages(self) -> bool {
        matches!(self, RefreshPolicy::OfflineFirst)
    }
}
