//! Authenticated HTTP for the app's own API calls on behalf of one account.
//!
//! [`AuthedClient`] puts `Authorization: Bearer` (marked sensitive) on every
//! request — or `Authorization: DPoP` and a fresh `DPoP` proof with `ath`
//! when the account's token is DPoP-bound — with a token from [`Session::access_token`] — which refreshes
//! first only when the token is expired or within the clock skew, never on
//! every request. A `401` from the request's own origin costs one refresh
//! (the session's single flight, shared with every other caller) and one
//! retry; a second `401` goes back to the caller. No loops.
//!
//! The default client keeps the account's cookies in a jar of its own, which
//! [`AuthedClient::clear`] empties — and the session's end (logout, or the
//! provider ending it) through [`Session::on_end`] — and follows redirects the way
//! reqwest does: on a hop to another origin (scheme, host or port) reqwest
//! drops `Authorization` and `Cookie`; an `https` → `http` downgrade is not
//! followed at all.
//!
//! Requests the app marks repeatable ([`AuthedClient::send_repeatable`])
//! wait out an outage under [`RefreshPolicy::OfflineFirst`]: `offline`
//! holds them and replays them in order, `queue` keeps the bounds (count,
//! bytes, age). Under every other policy they are sent as any other.
//!
//! Why one file of ~640 lines: the request path (token, retry after a 401,
//! redirects, cookies) is one flow read top to bottom; the offline queue
//! lives in `offline.rs` and `queue.rs`.

mod offline;
mod queue;

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{IntoUrl, Method, Request, RequestBuilder, Response, StatusCode};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::http::network;
use crate::policy::RefreshPolicy;
use crate::secret::AccessToken;
use crate::session::Session;

use offline::{Admission, Attempt, Offline, classify};
pub use queue::{
    DEFAULT_MAX_QUEUE_AGE, DEFAULT_MAX_QUEUED_BYTES, DEFAULT_MAX_QUEUED_REQUESTS,
    DEFAULT_REPLAY_BACKOFF_BASE, DEFAULT_REPLAY_BACKOFF_CAP, DropReason, QueueOptions,
};

/// At most this many redirects are followed.
const MAX_REDIRECTS: usize = 10;

/// An HTTP client that calls the app's API as one signed-in account: adds a
/// fresh bearer token, refreshes once and retries once on a `401`, and keeps
/// the account's cookies apart from every other account's.
///
/// Cloning is cheap and shares the client, the session and the cookie jar.
///
/// ```no_run
/// # async fn demo(sessions: sessionkit::SessionManager) -> sessionkit::Result<()> {
/// use sessionkit::AuthedClient;
///
/// let session = sessions.active_session()?.expect("signed in");
/// let api = AuthedClient::new(session)?;
/// let me = api.get("https://api.example.com/me").await?;
/// println!("{}", me.status());
/// let posted = api
///     .post_json("https://api.example.com/rooms/lobby/messages", &serde_json::json!({"text": "hi"}))
///     .await?;
/// # let _ = posted;
/// // Any other request: build it on the account's client, then send it.
/// let deleted = api.send(api.request(reqwest::Method::DELETE, "https://api.example.com/rooms/7")).await?;
/// # let _ = deleted;
/// // The session's end (logout) empties the cookie jar by itself; clear() does it now.
/// api.clear();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AuthedClient {
    session: Arc<Session>,
    http: reqwest::Client,
    /// The account's cookies, when the client is ours (not the app's).
    jar: Option<Arc<AccountJar>>,
    /// Repeatable requests waiting out an outage (`OfflineFirst`).
    offline: Arc<Offline>,
}

impl fmt::Debug for AuthedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthedClient")
            .field("account", &self.session.key().sub)
            .field("own_cookie_jar", &self.jar.is_some())
            .field("queued", &self.offline.len())
            .finish_non_exhaustive()
    }
}

impl AuthedClient {
    /// A client for `session` with a 30 s timeout per request and a cookie
    /// jar of the account's own, emptied when the session ends.
    pub fn new(session: Arc<Session>) -> Result<Self> {
        Self::with_timeout(session, Duration::from_secs(30))
    }

    /// A client for `session` with the given timeout per request (each
    /// attempt: the retry after a `401` gets its own) and a cookie jar of the
    /// account's own, emptied when the session ends.
    pub fn with_timeout(session: Arc<Session>, timeout: Duration) -> Result<Self> {
        let jar = Arc::new(AccountJar::default());
        // The session's end (logout, or the provider ending it) empties the jar.
        let ending = Arc::downgrade(&jar);
        session.on_end(move || {
            if let Some(jar) = ending.upgrade() {
                jar.clear();
            }
        });
        let http = reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .redirect(redirect_policy())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .user_agent(concat!("sessionkit/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Self {
            offline: Offline::new(&session),
            session,
            http,
            jar: Some(jar),
        })
    }

    /// A client for `session` that sends through a `reqwest::Client` the app
    /// configured (proxies, extra root certificates, …).
    ///
    /// That client's cookies and connections are the app's: [`AuthedClient::clear`]
    /// cannot reach them, so give each account its own client (or none with
    /// a cookie store). reqwest drops `Authorization` when a redirect leaves
    /// the origin; a client that must not follow redirects at all is built
    /// with `redirect::Policy::none()`.
    pub fn from_reqwest(session: Arc<Session>, http: reqwest::Client) -> Self {
        Self {
            offline: Offline::new(&session),
            session,
            http,
            jar: None,
        }
    }

    /// The session whose tokens the client sends.
    pub fn session(&self) -> &Arc<Session> {
        &self.session
    }

    /// Starts a request on the account's client; send it with
    /// [`AuthedClient::send`] (the bearer token is added then).
    pub fn request(&self, method: Method, url: impl IntoUrl) -> RequestBuilder {
        self.http.request(method, url)
    }

    /// `GET url` with the account's token.
    pub async fn get(&self, url: impl IntoUrl) -> Result<Response> {
        self.send(self.request(Method::GET, url)).await
    }

    /// The signed-in user's claims from the provider's userinfo endpoint,
    /// fetched with the account's token as [`AuthedClient::get`] does.
    ///
    /// The answer must be a JSON object about the account signed in: its
    /// `sub` is compared with the ID token's (OpenID Connect Core §5.3.2), so
    /// an answer about anyone else is refused, never returned.
    ///
    /// ```no_run
    /// # async fn demo(session: std::sync::Arc<sessionkit::Session>) -> sessionkit::Result<()> {
    /// let client = sessionkit::AuthedClient::new(session)?;
    /// let claims = client.userinfo().await?;
    /// println!("signed in as {}", claims["sub"]);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when the provider has no userinfo endpoint;
    /// [`Error::Provider`] for an error status; [`Error::UserInfo`] for an
    /// answer that is not a JSON object or is about another subject; the
    /// errors of [`AuthedClient::get`].
    pub async fn userinfo(&self) -> Result<serde_json::Map<String, serde_json::Value>> {
        let endpoint = self
            .session
            .client()
            .provider()
            .metadata()
            .userinfo_endpoint()
            .ok_or_else(|| Error::Config("the provider has no userinfo endpoint".into()))?
            .url()
            .clone();
        let response = self.get(endpoint).await?;
        let status = response.status();
        if !status.is_success() {
            return Err(Error::Provider {
                error: format!("userinfo answered {status}"),
                description: None,
                status: Some(status.as_u16()),
            });
        }
        let body = response.bytes().await.map_err(network)?;
        let claims: serde_json::Map<String, serde_json::Value> = serde_json::from_slice(&body)
            .map_err(|_| Error::UserInfo("the answer is not a JSON object".into()))?;
        match claims.get("sub").and_then(serde_json::Value::as_str) {
            Some(sub) if sub == self.session.key().sub => Ok(claims),
            Some(_) => Err(Error::UserInfo(
                "the answer is about another subject".into(),
            )),
            None => Err(Error::UserInfo("the answer has no subject".into())),
        }
    }

    /// `POST url` with `body` as JSON and the account's token.
    pub async fn post_json<T: serde::Serialize + ?Sized>(
        &self,
        url: impl IntoUrl,
        body: &T,
    ) -> Result<Response> {
        self.send(self.request(Method::POST, url).json(body)).await
    }

    /// Builds the request and sends it as [`AuthedClient::execute`] does.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let request = request
            .build()
            .map_err(|e| Error::Config(format!("request: {}", e.without_url())))?;
        self.execute(request).await
    }

    /// Sends `request` with the account's token in `Authorization`
    /// (replacing any it had): `Bearer`, or `DPoP` with a fresh `DPoP` proof
    /// for this method and URL when the token is DPoP-bound (a resource
    /// server's `use_dpop_nonce` answer is retried once with its nonce,
    /// without a refresh).
    ///
    /// The token comes from [`Session::access_token`]: cached while fresh,
    /// refreshed first when expired or within the clock skew. When the
    /// request's own origin answers `401`, the session is refreshed once
    /// (unless another caller already did since this token was taken) and the
    /// request is sent once more with the new token; that answer is returned,
    /// whatever it is — unless the request carried a DPoP proof and the
    /// `401`'s `DPoP` challenge lists `algs` without ES256: then nothing is
    /// refreshed or sent again and the answer is [`Error::DpopAlgorithm`].
    /// A request whose body is a stream cannot be sent twice:
    /// its `401` is returned as is. A `401` from another origin (after a
    /// redirect) is returned without a refresh, since the token was not sent
    /// there.
    ///
    /// # Errors
    /// [`Error::Network`] when the request fails in transport; the session's
    /// error when a token cannot be had (for example `invalid_grant` when the
    /// provider ended the session — the session is then signed out);
    /// [`Error::SignedOut`] once the account is signed out;
    /// [`Error::DpopAlgorithm`] as said above.
    pub async fn execute(&self, request: Request) -> Result<Response> {
        self.send_once(request).await.map_err(Error::from)
    }

    /// [`AuthedClient::execute`], with its failures kept apart: the token,
    /// the transport, anything else.
    async fn send_once(&self, mut request: Request) -> std::result::Result<Response, SendError> {
        let origin = request.url().origin();
        let method = request.method().clone();
        let token = self
            .session
            .access_token()
            .await
            .map_err(SendError::Token)?;
        let retry = request.try_clone();
        let nonce_retry = retry.as_ref().and_then(Request::try_clone);
        let url = request.url().to_string();
        authorize(&mut request, &token, &self.session, None).map_err(SendError::Other)?;
        let proved = request.headers().contains_key(crate::dpop::DPOP);
        let mut response = self
            .http
            .execute(request)
            .await
            .map_err(SendError::Transport)?;
        let nonce = self.session.keep_dpop_nonce(&url, response.headers());
        // RFC 9449 §9: a resource server that wants a nonce answers 401
        // `use_dpop_nonce` with one; the same token is sent once more with it.
        if response.status() == StatusCode::UNAUTHORIZED
            && response.url().origin() == origin
            && crate::dpop::is_nonce_challenge(response.headers())
            && let (Some(nonce), Some(mut again)) = (nonce, nonce_retry)
        {
            tracing::debug!(%method, "the server asked for a DPoP nonce; sending once more with it");
            authorize(&mut again, &token, &self.session, Some(&nonce)).map_err(SendError::Other)?;
            response = self
                .http
                .execute(again)
                .await
                .map_err(SendError::Transport)?;
            self.session.keep_dpop_nonce(&url, response.headers());
        }
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        if response.url().origin() != origin {
            tracing::debug!(%method, "401 from another origin after a redirect; not refreshing");
            return Ok(response);
        }
        // RFC 9449 §7.1: a server that lists the algorithms it takes, without
        // ours, refuses every proof of this key; a new token would not help.
        if proved && let Some(algs) = crate::dpop::challenge_algs(response.headers()) {
            crate::dpop::check_algs(&origin.ascii_serialization(), Some(&algs))
                .map_err(SendError::Other)?;
        }
        let Some(mut retry) = retry else {
            tracing::debug!(%method, "401 on a request with a streaming body; not retried");
            return Ok(response);
        };
        drop(response);
        let fresh = self
            .token_after_401(&token)
            .await
            .map_err(SendError::Token)?;
        tracing::debug!(%method, token = %fresh.fingerprint(), "401; retrying once with a refreshed token");
        authorize(&mut retry, &fresh, &self.session, None).map_err(SendError::Other)?;
        self.http.execute(retry).await.map_err(SendError::Transport)
    }

    /// Builds the request and sends it as [`AuthedClient::execute_repeatable`] does.
    pub async fn send_repeatable(&self, request: RequestBuilder) -> Result<Response> {
        let request = request
            .build()
            .map_err(|e| Error::Config(format!("request: {}", e.without_url())))?;
        self.execute_repeatable(request).await
    }

    /// Sends `request`, which the app declares safe to send more than once
    /// (idempotent: a `PUT` of a whole resource, a `DELETE`, a `POST` the API
    /// deduplicates by an id in the body, …). Nothing is repeated unless the
    /// app says so: [`AuthedClient::execute`] never queues.
    ///
    /// Under [`RefreshPolicy::OfflineFirst`], a request that cannot be sent
    /// now waits in the client's offline queue, and the returned future
    /// resolves once it has been replayed — with the API's answer, whatever
    /// it is — or dropped. It cannot be sent now when:
    /// - no token can be had for a reason that passes (the provider is
    ///   unreachable, answers `5xx` or `429`; the store is locked), or
    /// - the API is unreachable: the connection fails, times out or breaks
    ///   before an answer, or the answer is `502`, `503` or `504` (whose
    ///   `Retry-After`, in seconds, is honoured).
    ///
    /// While requests wait, a new repeatable request queues behind them
    /// without being tried, so none overtakes another. Waiting requests are
    /// replayed oldest first when the session's token changes (the provider
    /// is back) or after a backoff with full jitter
    /// ([`QueueOptions::replay_backoff`]); a round stops at the first
    /// request that still cannot be sent. The queue is bounded
    /// ([`QueueOptions`]); the session's end empties it.
    ///
    /// Under every other policy, and for a request whose body is a stream
    /// (it cannot be copied, so it cannot be repeated), this is
    /// [`AuthedClient::execute`].
    ///
    /// A caller that stops waiting (drops the future) gives up its request:
    /// it is taken out of the queue without being sent.
    ///
    /// # Errors
    /// What [`AuthedClient::execute`] returns for an attempt that was not
    /// queued, or a replayed one; and [`Error::Dropped`] when the request
    /// left the queue without being sent:
    /// [`DropReason::Full`] (the count or byte bound was reached; nothing
    /// older is evicted), [`DropReason::TooLarge`] (its body alone exceeds
    /// the byte bound), [`DropReason::Expired`] (it waited the maximum age),
    /// [`DropReason::SignedOut`] (the session ended; this one also answers
    /// [`Error::is_signed_out`]).
    ///
    /// ```no_run
    /// # async fn demo(session: std::sync::Arc<sessionkit::Session>) -> sessionkit::Result<()> {
    /// use std::time::Duration;
    /// use sessionkit::{AuthedClient, DropReason, Error, QueueOptions};
    ///
    /// // With the session's manager built `.policy(RefreshPolicy::OfflineFirst)`.
    /// let api = AuthedClient::new(session)?
    ///     .with_queue_options(QueueOptions::default().max_age(Duration::from_secs(600)));
    /// // A PUT of the whole note is safe to repeat: mark it so.
    /// let note = api
    ///     .request(reqwest::Method::PUT, "https://api.example.com/notes/42")
    ///     .json(&serde_json::json!({"text": "written on the train"}));
    /// match api.send_repeatable(note).await {
    ///     Ok(response) => println!("saved: {}", response.status()),
    ///     Err(Error::Dropped(DropReason::Expired)) => println!("still offline after 10 minutes"),
    ///     Err(Error::Dropped(reason)) => println!("not sent: {reason}"),
    ///     Err(other) => return Err(other),
    /// }
    /// println!("{} requests still waiting", api.queued());
    /// # Ok(()) }
    /// ```
    pub async fn execute_repeatable(&self, request: Request) -> Result<Response> {
        if self.session.policy() != RefreshPolicy::OfflineFirst {
            return self.execute(request).await;
        }
        let Some(copy) = request.try_clone() else {
            tracing::debug!("a repeatable request with a streaming body cannot be queued");
            return self.execute(request).await;
        };
        let bytes = body_len(&copy);
        // Behind requests that already wait, without trying: order is kept.
        let request = match self.offline.queue_behind_others(self, request, bytes) {
            Admission::SendNow(request) => *request,
            Admission::Waiting(answer) => return wait_for(answer).await,
            Admission::Dropped(reason) => return Err(Error::Dropped(reason)),
        };
        let retry_after = match classify(self.send_once(request).await) {
            Attempt::Done(result) => return result,
            Attempt::Unreachable { retry_after } => retry_after,
        };
        tracing::debug!(bytes, "unreachable; queueing a repeatable request");
        match self.offline.queue(self, copy, bytes, retry_after) {
            Ok(answer) => wait_for(answer).await,
            Err(reason) => Err(Error::Dropped(reason)),
        }
    }

    /// Sets the bounds and replay timing of the offline queue, which the
    /// client's clones share (so the setting holds for them too). Requests
    /// already waiting keep their place; the new age bound applies to them.
    #[must_use]
    pub fn with_queue_options(self, options: QueueOptions) -> Self {
        self.offline.set_options(options);
        self
    }

    /// The offline queue's bounds and replay timing.
    pub fn queue_options(&self) -> QueueOptions {
        self.offline.options()
    }

    /// How many repeatable requests wait in the offline queue now.
    pub fn queued(&self) -> usize {
        self.offline.len()
    }

    /// A receiver of [`AuthedClient::queued`] that sees every change (to
    /// show "3 changes waiting to sync", or to wait for the queue to drain).
    pub fn queued_changes(&self) -> tokio::sync::watch::Receiver<usize> {
        self.offline.changes()
    }

    /// How many background tasks of the client run: the replay task while
    /// requests wait, none otherwise — and none once the session has ended.
    pub fn running_tasks(&self) -> usize {
        self.offline.running_tasks()
    }

    /// Does the client's own jar hold cookies for `url`? (For diagnostics
    /// and tests: a logout must leave none.)
    pub fn holds_cookies_for(&self, url: &url::Url) -> bool {
        use reqwest::cookie::CookieStore as _;
        self.jar
            .as_ref()
            .is_some_and(|jar| jar.cookies(url).is_some())
    }

    /// Forgets what the client holds for the account: its cookies (a fresh,
    /// empty jar). There is no response cache. The session's end (logout,
    /// or the provider ending it) calls this for clients made with
    /// [`AuthedClient::new`] or [`AuthedClient::with_timeout`]; a client
    /// from [`AuthedClient::from_reqwest`] holds no jar of its own, so this
    /// does nothing for it.
    pub fn clear(&self) {
        if let Some(jar) = &self.jar {
            jar.clear();
        }
    }

    /// The token for the one retry after a `401` with `used`: when the
    /// session already holds another token (someone refreshed meanwhile),
    /// that one; else a forced refresh (shared with concurrent callers).
    async fn token_after_401(&self, used: &AccessToken) -> Result<AccessToken> {
        self.session.refresh_after_rejection(used).await
    }
}

/// One attempt's failure, kept apart for the offline queue: a token that
/// could not be had, a transport failure, anything else.
#[derive(Debug)]
enum SendError {
    Token(Error),
    Transport(reqwest::Error),
    Other(Error),
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Token(e) | SendError::Other(e) => e,
            SendError::Transport(e) => network(e),
        }
    }
}

/// The size of `request`'s body in memory.
fn body_len(request: &Request) -> usize {
    request
        .body()
        .and_then(reqwest::Body::as_bytes)
        .map_or(0, <[u8]>::len)
}

/// The answer of a queued request.
async fn wait_for(answer: tokio::sync::oneshot::Receiver<Result<Response>>) -> Result<Response> {
    // The sender goes away unanswered only if the replay task died with the runtime.
    answer.await.unwrap_or(Err(Error::Cancelled))
}

/// The `Authorization` header for `token` (`scheme` is `Bearer` or
/// `DPoP`), marked sensitive (HTTP/2 never indexes it; `Debug` hides it).
fn credentials(scheme: &str, token: &AccessToken) -> Result<HeaderValue> {
    let text = Zeroizing::new(format!("{scheme} {}", token.secret()));
    let mut value = HeaderValue::from_str(&text).map_err(|_| Error::Parse {
        message: "the access token is not a valid HTTP header value".to_owned(),
        body: String::new(),
        status: None,
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Puts `token` on `request`: as a bearer token, or — when the session's
/// tokens are bound to a DPoP key — with `Authorization: DPoP` and a proof
/// for this method and URL carrying `ath` and the origin's latest nonce.
fn authorize(
    request: &mut Request,
    token: &AccessToken,
    session: &Session,
    nonce: Option<&str>,
) -> Result<()> {
    let proof = session.dpop_proof(
        request.method().as_str(),
        request.url().as_str(),
        token,
        nonce,
    )?;
    let headers = request.headers_mut();
    match proof {
        Some(proof) => {
            headers.insert(AUTHORIZATION, credentials("DPoP", token)?);
            let mut value = HeaderValue::from_str(&proof).map_err(|_| {
                Error::Config("the DPoP proof is not a valid header value".to_owned())
            })?;
            value.set_sensitive(true);
            headers.insert(crate::dpop::DPOP, value);
        }
        None => {
            headers.remove(crate::dpop::DPOP);
            headers.insert(AUTHORIZATION, credentials("Bearer", token)?);
        }
    }
    Ok(())
}

/// Up to [`MAX_REDIRECTS`] hops; never from `https` down to `http`.
/// (reqwest itself strips `Authorization` and `Cookie` on cross-origin hops.)
fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        let downgrade = attempt.url().scheme() == "http"
            && attempt.previous().iter().any(|u| u.scheme() == "https");
        if downgrade {
            attempt.stop()
        } else if attempt.previous().len() > MAX_REDIRECTS {
            attempt.error("too many redirects")
        } else {
            attempt.follow()
        }
    })
}

/// One account's cookies, in a jar that can be swapped for an empty one.
#[derive(Default)]
struct AccountJar {
    jar: RwLock<Arc<Jar>>,
}

impl AccountJar {
    fn current(&self) -> Arc<Jar> {
        self.jar.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn clear(&self) {
        *self.jar.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Jar::default());
    }
}

impl CookieStore for AccountJar {
    fn set_cookies(&self, cookie_headers: &mut dyn Iterator<Item = &HeaderValue>, url: &url::Url) {
        self.current().set_cookies(cookie_headers, url);
    }

    fn cookies(&self, url: &url::Url) -> Option<HeaderValue> {
        self.current().cookies(url).map(|mut value| {
            value.set_sensitive(true);
            value
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_header_is_sensitive_and_redacted() {
        let value =
            credentials("Bearer", &AccessToken::new("abc.def.ghi")).expect("a header value");
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().ok(), Some("Bearer abc.def.ghi"));
        assert!(!format!("{value:?}").contains("abc"));
    }

    #[test]
    fn a_token_that_is_no_header_value_is_refused_without_echo() {
        let err = credentials("Bearer", &AccessToken::new("bad\ntoken")).expect_err("refused");
        assert!(!err.to_string().contains("bad"), "{err}");
    }

    #[test]
    fn clearing_the_jar_forgets_every_cookie() {
        let jar = AccountJar::default();
        let url = url::Url::parse("http://127.0.0.1:1/").expect("url");
        let set = HeaderValue::from_static("visit=1; Path=/");
        jar.set_cookies(&mut std::iter::once(&set), &url);
        let sent = jar.cookies(&url).expect("a cookie");
        assert!(sent.is_sensitive());
        assert_eq!(sent.to_str().ok(), Some("visit=1"));
        jar.clear();
        assert!(jar.cookies(&url).is_none());
    }
}
