//! What a logout reports, and its two calls to the provider: revoking the
//! refresh token (RFC 7009, best effort, short timeout — our own request,
//! since oauth2 refuses a loopback `http` URL) and the RP-initiated logout URL.

use std::time::Duration;

use sessionkit_backoff::Backoff;

use crate::dpop::DpopKey;
use crate::error::{Error, Result};
use crate::login::OidcClient;
use crate::secret::{IdToken, RefreshToken};
use crate::store::AccountKey;

/// A step of a logout. Every step runs, whatever happened to the ones before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogoutStep {
    /// Cancelling the account's background work (timer, refresh, realtime).
    CancelWork,
    /// Deleting its store entries and forgetting it in memory and in the registry.
    DeleteTokens,
    /// Clearing what HTTP clients hold for it (cookies, cached responses).
    ClearHttp,
    /// The app's cleanup hooks.
    CleanupHooks,
    /// Revoking the refresh token at the provider.
    RevokeRefreshToken,
}

/// What a logout did.
#[derive(Clone)]
#[non_exhaustive]
pub struct LogoutReport {
    /// The account.
    pub account: AccountKey,
    /// The provider's RP-initiated logout URL (with `id_token_hint` and
    /// `client_id`, and with [`OidcClient::post_logout_redirect_uri`] a
    /// `post_logout_redirect_uri` and a fresh `state`), for the app to open.
    pub end_session_url: Option<url::Url>,
    /// The `state` in that URL: the provider's redirect back to the
    /// post-logout URI must carry exactly this (see
    /// [`LogoutReport::is_logout_redirect`]).
    pub end_session_state: Option<String>,
    /// Whether the refresh token was revoked at the provider.
    pub revoked: bool,
    /// The steps that failed, with why. Empty means a complete logout.
    pub failures: Vec<(LogoutStep, String)>,
}

impl std::fmt::Debug for LogoutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL carries the ID token as `id_token_hint`: show it redacted.
        let url = self.end_session_url.as_ref().map(|u| {
            let mut shown = u.clone();
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k == "id_token_hint" {
                        "[redacted]".to_owned()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            shown.query_pairs_mut().clear().extend_pairs(pairs);
            shown.to_string()
        });
        f.debug_struct("LogoutReport")
            .field("account", &self.account)
            .field("end_session_url", &url)
            .field("end_session_state", &self.end_session_state)
            .field("revoked", &self.revoked)
            .field("failures", &self.failures)
            .finish()
    }
}

impl LogoutReport {
    /// Did every step succeed?
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }

    /// Is `url` the provider's redirect back after this logout: the
    /// post-logout URI with this logout's `state`? An app that registered a
    /// post-logout redirect checks what reaches it with this (a forged
    /// "you are signed out" page is otherwise easy to make).
    pub fn is_logout_redirect(&self, url: &str) -> bool {
        let (Some(state), Ok(url)) = (&self.end_session_state, url::Url::parse(url)) else {
            return false;
        };
        let states: Vec<_> = url.query_pairs().filter(|(k, _)| k == "state").collect();
        states.len() == 1
            && crate::secret::sha256(states[0].1.as_bytes())
                == crate::secret::sha256(state.as_bytes())
    }
}

/// Between revocation attempts: a random pause (full jitter, at least
/// 50 ms) under 100 ms, then under 200 ms, 400 ms, … up to 2 s; the caller's
/// budget ends the attempts, not a count.
const REVOKE_RETRY: Backoff = Backoff::new(Duration::from_millis(100), 2.0, Duration::from_secs(2))
    .floor(Duration::from_millis(50));

/// RFC 7009 revocation of a refresh token: a few quick attempts within
/// `budget`, the next one only if its pause still ends before the budget does.
pub(crate) async fn revoke(
    client: &OidcClient,
    token: &RefreshToken,
    dpop: Option<&DpopKey>,
    budget: Duration,
) -> Result<()> {
    let deadline = tokio::time::Instant::now() + budget;
    let mut pauses = REVOKE_RETRY.schedule();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let result = revoke_once(client, token, dpop, left.max(Duration::from_millis(50))).await;
        let transient = result.as_ref().err().is_some_and(Error::is_transient);
        if !transient {
            return result;
        }
        let pause = pauses.next_delay();
        if tokio::time::Instant::now() + pause >= deadline {
            return result;
        }
        tokio::time::sleep(pause).await;
    }
}

async fn revoke_once(
    client: &OidcClient,
    token: &RefreshToken,
    dpop: Option<&DpopKey>,
    timeout: Duration,
) -> Result<()> {
    let endpoint = client
        .provider()
        .extra()
        .revocation_endpoint
        .clone()
        .ok_or_else(|| Error::Config("the provider has no revocation endpoint".to_owned()))?;
    // A DPoP-bound refresh token is revoked with a proof of its key
    // (RFC 9449 §5 binds it; a provider may ask for the proof at revocation).
    let answer = crate::token::post_form(
        client.provider(),
        &endpoint,
        client.client_id(),
        client.credential(),
        &[
            ("token", token.secret()),
            ("token_type_hint", "refresh_token"),
        ],
        client.prover(dpop),
        Some(timeout),
    )
    .await?;
    if (200..300).contains(&answer.status) {
        return Ok(());
    }
    Err(crate::token::parse_error_response(
        answer.status,
        &answer.body,
    ))
}

/// The RP-initiated logout URL, if the provider has an end-session
/// endpoint, and the `state` it carries (with a post-logout redirect only).
pub(crate) fn end_session_url(
    client: &OidcClient,
    id_token: Option<&IdToken>,
) -> (Option<url::Url>, Option<String>) {
    let Some(endpoint) = client.provider().extra().end_session_endpoint.as_deref() else {
        return (None, None);
    };
    let Ok(mut url) = url::Url::parse(endpoint) else {
        return (None, None);
    };
    let state = client
        .post_logout_redirect()
        .map(|_| crate::login::random_secret());
    {
        let mut q = url.query_pairs_mut();
        if let Some(id) = id_token {
            q.append_pair("id_token_hint", id.secret());
        }
        q.append_pair("client_id", client.client_id());
        if let (Some(redirect), Some(state)) = (client.post_logout_redirect(), &state) {
            q.append_pair("post_logout_redirect_uri", redirect);
            q.append_pair("state", state);
        }
    }
    (Some(url), state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_pauses_double_from_a_tenth_of_a_second_to_two() {
        let ms = Duration::from_millis(1);
        let highest: Vec<Duration> = REVOKE_RETRY.schedule().jitter(|| 1.0).take(7).collect();
        assert_eq!(
            highest,
            [100, 200, 400, 800, 1600, 2000, 2000].map(|n| n * ms)
        );
        let lowest: Vec<Duration> = REVOKE_RETRY.schedule().jitter(|| 0.0).take(3).collect();
        assert_eq!(lowest, [50 * ms; 3]);
    }
}
