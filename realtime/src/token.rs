//! Where each connection's bearer token comes from. The client depends on
//! the SDK only through [`TokenSource`]; the SDK's `Session` implements it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::error::TokenError;

/// A boxed `Send` future, so that `Arc<dyn TokenSource>` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A token and, when the source knows it, when it expires. The client
/// re-authenticates while connected shortly before `expires_at` (see
/// [`Builder::refresh_margin`](crate::Builder::refresh_margin)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedToken {
    /// The bearer token.
    pub token: BearerToken,
    /// When it stops being valid; `None` when unknown (then the client does
    /// not re-authenticate while connected).
    pub expires_at: Option<SystemTime>,
}

impl TimedToken {
    /// A token whose expiry is unknown.
    #[must_use]
    pub fn unknown_expiry(token: BearerToken) -> Self {
        Self {
            token,
            expires_at: None,
        }
    }
}

/// A bearer token. `Debug` prints `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(String);

impl BearerToken {
    /// Wraps a token.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself.
    ///
    /// Security: this is a credential; do not log it or put it in a URL.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// Gives the client a token for each connection attempt.
///
/// Implemented for `Arc<sessionkit::Session>` (feature `sessionkit`) and by
/// [`StaticToken`]; implement it for any other provider.
pub trait TokenSource: Send + Sync + 'static {
    /// A token still valid for at least `min_valid`.
    fn token(&self, min_valid: Duration) -> BoxFuture<'_, Result<BearerToken, TokenError>>;

    /// A new token even if the current one looks valid (the server refused it).
    fn refresh(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>>;

    /// Like [`TokenSource::token`], with the token's expiry. The default
    /// says "unknown"; override it so the client can re-authenticate before
    /// the token expires.
    fn timed_token(&self, min_valid: Duration) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
        Box::pin(async move { self.token(min_valid).await.map(TimedToken::unknown_expiry) })
    }

    /// Like [`TokenSource::refresh`], with the new token's expiry (default:
    /// unknown).
    fn timed_refresh(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
        Box::pin(async move { self.refresh().await.map(TimedToken::unknown_expiry) })
    }

    /// Fires when the account's session ends (logout): every client using
    /// this source closes.
    fn cancellation(&self) -> CancellationToken;
}

/// A fixed token that the owner can replace, for tests and for providers
/// that hand out long-lived tokens. `refresh` returns the current token and
/// counts the calls; [`StaticToken::sign_out`] ends it.
#[derive(Debug)]
pub struct StaticToken {
    token: Mutex<TimedToken>,
    refreshes: AtomicUsize,
    cancel: CancellationToken,
}

impl StaticToken {
    /// A source that always gives `token`.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: Mutex::new(TimedToken::unknown_expiry(BearerToken::new(token))),
            refreshes: AtomicUsize::new(0),
            cancel: CancellationToken::new(),
        }
    }

    /// Replaces the token given from now on.
    pub fn set(&self, token: impl Into<String>) {
        *self.lock() = TimedToken::unknown_expiry(BearerToken::new(token));
    }

    /// Replaces the token given from now on, with its expiry.
    pub fn set_expiring(&self, token: impl Into<String>, expires_at: SystemTime) {
        *self.lock() = TimedToken {
            token: BearerToken::new(token),
            expires_at: Some(expires_at),
        };
    }

    /// Sets (or clears) the current token's expiry.
    pub fn set_expiry(&self, expires_at: Option<SystemTime>) {
        self.lock().expires_at = expires_at;
    }

    /// How many times `refresh` was called.
    #[must_use]
    pub fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }

    /// Ends the session: the cancellation fires and every later call fails
    /// with [`TokenError::SignedOut`].
    pub fn sign_out(&self) {
        self.cancel.cancel();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TimedToken> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Result<TimedToken, TokenError> {
        if self.cancel.is_cancelled() {
            Err(TokenError::SignedOut)
        } else {
            Ok(self.lock().clone())
        }
    }
}

impl TokenSource for StaticToken {
    fn token(&self, _min_valid: Duration) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
        Box::pin(async move { self.current().map(|t| t.token) })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { self.current().map(|t| t.token) })
    }

    fn timed_token(&self, _min_valid: Duration) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
        Box::pin(async move { self.current() })
    }

    fn timed_refresh(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { self.current() })
    }

    fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

#[cfg(feature = "sessionkit")]
mod session {
    use std::sync::Arc;
    use std::time::Duration;

    use sessionkit::{Session, SessionState};
    use tokio_util::sync::CancellationToken;

    use super::{BearerToken, BoxFuture, TimedToken, TokenSource};
    use crate::error::TokenError;

    /// The session keeps its token fresh by its own refresh policy, so
    /// `min_valid` is covered by the session's margin.
    impl TokenSource for Arc<Session> {
        fn token(&self, _min_valid: Duration) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
            Box::pin(async move {
                match self.access_token().await {
                    Ok(token) => Ok(BearerToken::new(token.secret())),
                    Err(e) => Err(classify(self, &e)),
                }
            })
        }

        fn refresh(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
            Box::pin(async move {
                match self.force_refresh().await {
                    Ok(token) => Ok(BearerToken::new(token.secret())),
                    Err(e) => Err(classify(self, &e)),
                }
            })
        }

        /// The expiry is the cached one right after `access_token()`.
        fn timed_token(
            &self,
            _min_valid: Duration,
        ) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
            Box::pin(async move {
                match self.access_token().await {
                    Ok(token) => Ok(timed(self, token.secret())),
                    Err(e) => Err(classify(self, &e)),
                }
            })
        }

        fn timed_refresh(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
            Box::pin(async move {
                match self.force_refresh().await {
                    Ok(token) => Ok(timed(self, token.secret())),
                    Err(e) => Err(classify(self, &e)),
                }
            })
        }

        fn cancellation(&self) -> CancellationToken {
            Session::cancellation(self).clone()
        }
    }

    /// The token with the session's cached expiry when the cache still
    /// holds that token (another refresh may have replaced it meanwhile).
    fn timed(session: &Arc<Session>, secret: &str) -> TimedToken {
        let (cached, expires_at) = session.cached_access_token();
        TimedToken {
            token: BearerToken::new(secret),
            expires_at: if cached.secret() == secret {
                expires_at
            } else {
                None
            },
        }
    }

    /// Terminal when the SDK says signed out, or when the session has ended
    /// (a refused refresh ends it with the provider's error).
    fn classify(session: &Arc<Session>, error: &sessionkit::Error) -> TokenError {
        let ended = Session::cancellation(session).is_cancelled()
            || matches!(
                *session.state().borrow(),
                SessionState::SignedOut | SessionState::SignedOutByServer
            );
        if ended || matches!(error, sessionkit::Error::SignedOut) {
            TokenError::SignedOut
        } else {
            TokenError::Unavailable(error.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_token() {
        let token = BearerToken::new("very-secret");
        assert_eq!(format!("{token:?}"), "BearerToken([redacted])");
        assert!(!format!("{:?}", StaticToken::new("very-secret")).contains("very-secret"));
        assert_eq!(token.secret(), "very-secret");
    }

    #[tokio::test]
    async fn static_token_counts_refreshes_and_signs_out() {
        let source = StaticToken::new("a");
        let dyn_source: &dyn TokenSource = &source;
        assert_eq!(
            dyn_source.token(Duration::ZERO).await,
            Ok(BearerToken::new("a"))
        );
        source.set("b");
        assert_eq!(dyn_source.refresh().await, Ok(BearerToken::new("b")));
        assert_eq!(source.refreshes(), 1);
        source.sign_out();
        assert!(dyn_source.cancellation().is_cancelled());
        assert_eq!(dyn_source.refresh().await, Err(TokenError::SignedOut));
    }
}
