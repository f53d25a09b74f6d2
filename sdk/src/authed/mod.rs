//! Authenticated HTTP for the app's own API calls on behalf of one account.
//!
//! [`AuthedClient`] puts `Authorization: Bearer` (marked sensitive) on every
//! request, with a token from [`Session::access_token`] — which refreshes
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

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use reqwest::cookie::{CookieStore, Jar};
use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{IntoUrl, Method, Request, RequestBuilder, Response, StatusCode};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::http::network;
use crate::secret::AccessToken;
use crate::session::Session;

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
}

impl fmt::Debug for AuthedClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthedClient")
            .field("account", &self.session.key().sub)
            .field("own_cookie_jar", &self.jar.is_some())
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

    /// Sends `request` with `Authorization: Bearer` and the account's token
    /// (replacing any `Authorization` it had).
    ///
    /// The token comes from [`Session::access_token`]: cached while fresh,
    /// refreshed first when expired or within the clock skew. When the
    /// request's own origin answers `401`, the session is refreshed once
    /// (unless another caller already did since this token was taken) and the
    /// request is sent once more with the new token; that answer is returned,
    /// whatever it is. A request whose body is a stream cannot be sent twice:
    /// its `401` is returned as is. A `401` from another origin (after a
    /// redirect) is returned without a refresh, since the token was not sent
    /// there.
    ///
    /// # Errors
    /// [`Error::Network`] when the request fails in transport; the session's
    /// error when a token cannot be had (for example `invalid_grant` when the
    /// provider ended the session — the session is then signed out);
    /// [`Error::SignedOut`] once the account is signed out.
    pub async fn execute(&self, mut request: Request) -> Result<Response> {
        let origin = request.url().origin();
        let method = request.method().clone();
        let token = self.session.access_token().await?;
        let retry = request.try_clone();
        authorize(&mut request, &token)?;
        let response = self.http.execute(request).await.map_err(network)?;
        if response.status() != StatusCode::UNAUTHORIZED {
            return Ok(response);
        }
        if response.url().origin() != origin {
            tracing::debug!(%method, "401 from another origin after a redirect; not refreshing");
            return Ok(response);
        }
        let Some(mut retry) = retry else {
            tracing::debug!(%method, "401 on a request with a streaming body; not retried");
            return Ok(response);
        };
        drop(response);
        let fresh = self.token_after_401(&token).await?;
        tracing::debug!(%method, token = %fresh.fingerprint(), "401; retrying once with a refreshed token");
        authorize(&mut retry, &fresh)?;
        self.http.execute(retry).await.map_err(network)
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

/// The `Authorization` header for `token`, marked sensitive (HTTP/2 never
/// indexes it; `Debug` hides it).
fn bearer(token: &AccessToken) -> Result<HeaderValue> {
    let text = Zeroizing::new(format!("Bearer {}", token.secret()));
    let mut value = HeaderValue::from_str(&text).map_err(|_| Error::Parse {
        message: "the access token is not a valid HTTP header value".to_owned(),
        body: String::new(),
    })?;
    value.set_sensitive(true);
    Ok(value)
}

fn authorize(request: &mut Request, token: &AccessToken) -> Result<()> {
    request.headers_mut().insert(AUTHORIZATION, bearer(token)?);
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
        let value = bearer(&AccessToken::new("abc.def.ghi")).expect("a header value");
        assert!(value.is_sensitive());
        assert_eq!(value.to_str().ok(), Some("Bearer abc.def.ghi"));
        assert!(!format!("{value:?}").contains("abc"));
    }

    #[test]
    fn a_token_that_is_no_header_value_is_refused_without_echo() {
        let err = bearer(&AccessToken::new("bad\ntoken")).expect_err("refused");
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
