//! Where each connection's bearer token (and, for DPoP-bound tokens, each
//! handshake's proof) comes from. The client depends on the SDK only
//! through [`TokenSource`]; the SDK's `Session` implements it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::dpop::ProofRequest;
use crate::error::TokenError;

/// A boxed `Send` future, so that `Arc<dyn TokenSource>` works.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A token with what the source knows of its timing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TimedToken {
    /// The bearer token.
    pub token: BearerToken,
    /// When it stops being valid (`None`: unknown).
    pub expires_at: Option<SystemTime>,
    /// When the source will have a newer token. A connected client moves
    /// to the newer token then (or as soon as [`TokenSource::changed`]
    /// fires), in-band or make-before-break. `None`: the connection keeps
    /// this token until the server closes it.
    pub refresh_at: Option<SystemTime>,
}

impl TimedToken {
    /// A token whose expiry is unknown and that the client never replaces
    /// while connected.
    #[must_use]
    pub fn new(token: BearerToken) -> Self {
        Self {
            token,
            expires_at: None,
            refresh_at: None,
        }
    }

    /// With its expiry.
    #[must_use]
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// With the time the source will have a newer token.
    #[must_use]
    pub fn refresh_at(mut self, at: SystemTime) -> Self {
        self.refresh_at = Some(at);
        self
    }
}

/// A bearer token: cheap to clone, zeroized when the last clone is
/// dropped. `Debug` prints `[redacted]`.
#[derive(Clone)]
pub struct BearerToken(Arc<Zeroizing<String>>);

impl BearerToken {
    /// Wraps a token.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self(Arc::new(Zeroizing::new(token.into())))
    }

    /// The token itself.
    ///
    /// Security: this is a credential; do not log it or put it in a URL.
    #[must_use]
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl PartialEq for BearerToken {
    fn eq(&self, other: &Self) -> bool {
        // Not secret-dependent in a way an attacker can time: both sides are ours.
        self.secret() == other.secret()
    }
}

impl Eq for BearerToken {}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BearerToken([redacted])")
    }
}

/// Gives the client its tokens. The source owns refresh timing: the client
/// never decides by itself that a token needs refreshing; it takes the
/// source's current token for every connection attempt, moves a live
/// connection to a newer one when the source has it, and reports a token
/// the server refused.
///
/// Implemented for `Arc<sessionkit::Session>` (feature `sessionkit`) and by
/// [`StaticToken`]; implement it for any other provider.
///
/// ## DPoP
/// A source whose tokens are DPoP-bound (RFC 9449: the token's `cnf.jkt`
/// names a key the source holds) implements [`TokenSource::dpop_proof`]:
/// for every connection attempt the client asks it for a proof, signed by
/// that key, for the handshake ([`ProofRequest`]: `htm` `GET`, `htu` the
/// WebSocket URL without query and fragment, `ath` the hash of the token,
/// and the server's `nonce` once it sent one). The handshake then carries
/// `Authorization: DPoP TOKEN` and `DPoP: PROOF` (both marked sensitive,
/// in no log). Sources that answer `None`, the default, send
/// `Authorization: Bearer TOKEN` as before.
///
/// ```
/// use std::sync::Arc;
/// use sessionkit_realtime::{
///     BearerToken, BoxFuture, ProofRequest, StaticToken, TimedToken, TokenError, TokenSource,
/// };
/// use tokio_util::sync::CancellationToken;
///
/// /// Signs a DPoP proof (a JWS with `typ: dpop+jwt` and the public `jwk`
/// /// in its header) with the key the tokens are bound to.
/// trait ProofSigner: Send + Sync + 'static {
///     fn sign(&self, htm: &str, htu: &str, token: &str, nonce: Option<&str>) -> String;
/// }
///
/// /// Bound tokens from `tokens`, proofs from `signer`.
/// struct Bound<S> {
///     tokens: StaticToken,
///     signer: S,
/// }
///
/// impl<S: ProofSigner> TokenSource for Bound<S> {
///     fn token(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
///         self.tokens.token()
///     }
///     fn rejected<'a>(&'a self, t: &'a BearerToken) -> BoxFuture<'a, Result<TimedToken, TokenError>> {
///         self.tokens.rejected(t)
///     }
///     fn cancellation(&self) -> CancellationToken {
///         self.tokens.cancellation()
///     }
///     // A new proof (a new `jti`, `iat` now) on every call.
///     fn dpop_proof<'a>(
///         &'a self,
///         request: ProofRequest<'a>,
///     ) -> BoxFuture<'a, Option<Result<String, TokenError>>> {
///         let proof = self.signer.sign(
///             request.method,
///             request.url,
///             request.token.secret(),
///             request.nonce,
///         );
///         Box::pin(std::future::ready(Some(Ok(proof))))
///     }
/// }
/// # struct Fake;
/// # impl ProofSigner for Fake {
/// #     fn sign(&self, htm: &str, htu: &str, _: &str, _: Option<&str>) -> String {
/// #         format!("{htm}.{htu}")
/// #     }
/// # }
/// # let _ = Arc::new(Bound { tokens: StaticToken::new("t"), signer: Fake });
/// ```
pub trait TokenSource: Send + Sync + 'static {
    /// The token to use now (the source refreshes first if it is due).
    fn token(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>>;

    /// The server refused `rejected` (a 401 at the handshake, close 4001 or
    /// 4003): a newer token — the one the source already has if it moved
    /// on, else after one refresh. [`TokenError::SignedOut`] ends the client.
    fn rejected<'a>(
        &'a self,
        rejected: &'a BearerToken,
    ) -> BoxFuture<'a, Result<TimedToken, TokenError>>;

    /// Resolves when the source's current token changes (after a refresh
    /// of its own); a connected client whose token has a `refresh_at` then
    /// moves to [`TokenSource::token`]. The default never resolves: the
    /// client asks at `refresh_at`.
    fn changed(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::pending())
    }

    /// Fires when the account's session ends (logout): every client using
    /// this source closes.
    fn cancellation(&self) -> CancellationToken;

    /// A DPoP proof (RFC 9449 §4) for one connection attempt with
    /// `request.token`, or `None` for a bearer token (the default).
    ///
    /// Called once per handshake, and again (with the server's nonce) when
    /// the server answers `use_dpop_nonce`: return a new proof every time,
    /// with a new `jti` and `iat` now (servers refuse a replayed proof).
    /// The proof is sent as `Authorization: DPoP TOKEN` plus `DPoP: PROOF`,
    /// so it needs [`crate::TokenTransport::Header`] (the default): with
    /// another transport the client stops with
    /// [`crate::CloseReason::DpopNeedsHeader`]. An error is handled like
    /// one from [`TokenSource::token`] ([`TokenError::SignedOut`] ends the
    /// client; others are retried with backoff). See the trait's docs for
    /// an example.
    fn dpop_proof<'a>(
        &'a self,
        request: ProofRequest<'a>,
    ) -> BoxFuture<'a, Option<Result<String, TokenError>>> {
        let _ = request;
        Box::pin(std::future::ready(None))
    }
}

/// What [`crate::Builder::build`] takes: an `Arc` of any [`TokenSource`]
/// (the SDK's session as it comes, `session.clone()`;
/// `Arc::new(StaticToken::new(…))`), or an `Arc<dyn TokenSource>`.
pub trait IntoTokenSource {
    /// The source, shared.
    fn into_token_source(self) -> Arc<dyn TokenSource>;
}

impl<S: TokenSource> IntoTokenSource for Arc<S> {
    fn into_token_source(self) -> Arc<dyn TokenSource> {
        self
    }
}

impl IntoTokenSource for Arc<dyn TokenSource> {
    fn into_token_source(self) -> Arc<dyn TokenSource> {
        self
    }
}

/// A fixed token that the owner can replace, for tests and for providers
/// that hand out long-lived tokens. `rejected` returns the current token and
/// counts the calls; [`StaticToken::sign_out`] ends it.
#[derive(Debug)]
pub struct StaticToken {
    token: Mutex<TimedToken>,
    rejections: AtomicUsize,
    changed: tokio::sync::watch::Sender<u64>,
    cancel: CancellationToken,
}

impl StaticToken {
    /// A source that always gives `token`.
    #[must_use]
    pub fn new(token: impl Into<String>) -> Self {
        Self {
            token: Mutex::new(TimedToken::new(BearerToken::new(token))),
            rejections: AtomicUsize::new(0),
            changed: tokio::sync::watch::channel(0).0,
            cancel: CancellationToken::new(),
        }
    }

    /// Replaces the token given from now on (connected clients whose token
    /// has a `refresh_at` move to it).
    pub fn set(&self, token: impl Into<String>) {
        self.replace(TimedToken::new(BearerToken::new(token)));
    }

    /// Replaces the token given from now on, with its timing.
    pub fn replace(&self, token: TimedToken) {
        *self.lock() = token;
        self.changed.send_modify(|v| *v += 1);
    }

    /// How many times a server refused a token (`rejected` was called).
    #[must_use]
    pub fn rejections(&self) -> usize {
        self.rejections.load(Ordering::SeqCst)
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
    fn token(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
        Box::pin(async move { self.current() })
    }

    fn rejected<'a>(
        &'a self,
        _rejected: &'a BearerToken,
    ) -> BoxFuture<'a, Result<TimedToken, TokenError>> {
        self.rejections.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { self.current() })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        let mut rx = self.changed.subscribe();
        Box::pin(async move {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }

    fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

#[cfg(feature = "sessionkit")]
mod session {
    use sessionkit::{AccessToken, CurrentToken, Session};
    use tokio_util::sync::CancellationToken;

    use super::{BearerToken, BoxFuture, TimedToken, TokenSource};
    use crate::dpop::ProofRequest;
    use crate::error::TokenError;

    /// The session owns refresh timing: a connection takes its current
    /// token, moves to each refreshed one when the session's policy keeps
    /// connections continuous (`RefreshPolicy::Background`), and reports a
    /// refused token so that a newer one is reused rather than refreshed
    /// again. Pass the session as it comes from the SDK: `session.clone()`.
    impl TokenSource for Session {
        fn token(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
            Box::pin(async move {
                self.current()
                    .await
                    .map(|t| timed(self, t))
                    .map_err(|e| classify(self, &e))
            })
        }

        fn rejected<'a>(
            &'a self,
            rejected: &'a BearerToken,
        ) -> BoxFuture<'a, Result<TimedToken, TokenError>> {
            Box::pin(async move {
                let refused = AccessToken::new(rejected.secret().to_owned());
                self.after_rejection(&refused)
                    .await
                    .map(|t| timed(self, t))
                    .map_err(|e| classify(self, &e))
            })
        }

        fn changed(&self) -> BoxFuture<'_, ()> {
            let mut changes = self.token_changes();
            Box::pin(async move {
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
        }

        fn cancellation(&self) -> CancellationToken {
            Session::cancellation(self).clone()
        }

        /// A fresh proof by the account's DPoP key when its tokens are
        /// bound to one (`Session::dpop_proof`), else `None`: a bearer token.
        fn dpop_proof<'a>(
            &'a self,
            request: ProofRequest<'a>,
        ) -> BoxFuture<'a, Option<Result<String, TokenError>>> {
            let token = AccessToken::new(request.token.secret().to_owned());
            let proof =
                Session::dpop_proof(self, request.method, request.url, &token, request.nonce)
                    .map_err(|e| TokenError::Unavailable(format!("DPoP proof: {e}")))
                    .transpose();
            Box::pin(std::future::ready(proof))
        }
    }

    fn timed(session: &Session, current: CurrentToken) -> TimedToken {
        let mut timed = TimedToken::new(BearerToken::new(current.access_token.secret()));
        timed.expires_at = current.expires_at;
        if session.policy().keeps_connections_continuous() {
            timed.refresh_at = current.refresh_at;
        }
        timed
    }

    /// Terminal when the SDK says the account is signed out, or the session
    /// has ended (by the provider, or by the app's policy after failures).
    fn classify(session: &Session, error: &sessionkit::Error) -> TokenError {
        if error.is_signed_out() || Session::cancellation(session).is_cancelled() {
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
    async fn static_token_counts_rejections_tells_changes_and_signs_out() {
        let source = StaticToken::new("a");
        let dyn_source: &dyn TokenSource = &source;
        let a = dyn_source.token().await.expect("token");
        assert_eq!(a.token, BearerToken::new("a"));
        let changed = dyn_source.changed();
        source.set("b");
        changed.await;
        let b = dyn_source.rejected(&a.token).await.expect("newer");
        assert_eq!(b.token, BearerToken::new("b"));
        assert_eq!(source.rejections(), 1);
        source.sign_out();
        assert!(dyn_source.cancellation().is_cancelled());
        assert_eq!(dyn_source.token().await, Err(TokenError::SignedOut));
    }

    #[test]
    fn clones_share_one_zeroizing_buffer() {
        let token = BearerToken::new("t0k");
        let copy = token.clone();
        assert!(std::ptr::eq(token.secret(), copy.secret()));
    }
}
