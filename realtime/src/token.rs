//! Where each connection's bearer token comes from. The client depends on
//! the SDK only through [`TokenSource`]; the SDK's `Session` implements it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::error::TokenError;

/// A boxed `Send` future, so that `Arc<dyn TokenSource>` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

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

    /// Fires when the account's session ends (logout): every client using
    /// this source closes.
    fn cancellation(&self) -> CancellationToken;
}

/// A fixed token that the owner can replace, for tests and for providers
/// that hand out long-lived tokens. `refresh` returns the current token and
/// counts the calls; [`StaticToken::sign_out`] ends it.
#[derive(Debug)]
pub struct StaticToken {
    token: Mutex<BearerToken>,
    refreshes: AtomicUsize,
    cancel: CancellationToken,
}

impl StaticToken {
    /// A source that always gives `token`.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: Mutex::new(BearerToken::new(token)),
            refreshes: AtomicUsize::new(0),
            cancel: CancellationToken::new(),
        }
    }

    /// Replaces the token given from now on.
    pub fn set(&self, token: impl Into<String>) {
        *self.lock() = BearerToken::new(token);
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

    fn lock(&self) -> std::sync::MutexGuard<'_, BearerToken> {
        self.token
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Result<BearerToken, TokenError> {
        if self.cancel.is_cancelled() {
            Err(TokenError::SignedOut)
        } else {
            Ok(self.lock().clone())
        }
    }
}

impl TokenSource for StaticToken {
    fn token(&self, _min_valid: Duration) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
        Box::pin(async move { self.current() })
    }

    fn refresh(&self) -> BoxFuture<'_, Result<BearerToken, TokenError>> {
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

    use super::{BearerToken, BoxFuture, TokenSource};
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

        fn cancellation(&self) -> CancellationToken {
            Session::cancellation(self).clone()
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
