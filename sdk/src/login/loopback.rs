//! The loopback redirect listener (RFC 8252): sign-in through the system
//! browser for apps that own no redirect URI. It listens on `127.0.0.1`,
//! opens the authorization URL and hands the one matching redirect to
//! [`OidcClient::finish`]. Behind the `loopback` feature, so apps with their
//! own redirect handling build without it and without `webbrowser`.
//!
//! Any local process can connect to the listener, so no connection may hold
//! the sign-in: connections are served side by side (hyper, HTTP/1.1, one
//! request each), each must send its request head within
//! [`HEADER_READ_TIMEOUT`], and the login's deadline and cancellation cover
//! everything — accepting, reading, redeeming the code. When the login
//! returns, every connection it accepted is closed.

use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{AuthorizationRequest, OidcClient};
use crate::error::{Error, Result};
use crate::token::TokenSet;

/// How long a connection may take to send its whole request head; then it
/// is closed (browsers send theirs at once).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head read (a redirect with a code, `state` and `iss`
/// takes well under 1 KiB); a larger one is answered 431.
const MAX_REQUEST_HEAD: usize = 16 * 1024;
/// How long, at most, the page of the answered redirect may take to reach
/// the browser once the sign-in is decided (never past the deadline).
const PAGE_GRACE: Duration = Duration::from_secs(2);

/// How the loopback login shows the authorization URL.
///
/// Available with the `loopback` feature (on by default).
pub enum OpenUrl {
    /// Open the system browser.
    SystemBrowser,
    /// Hand the URL to the app (print it, show it, drive a test browser).
    Callback(Box<dyn FnOnce(&str) + Send>),
}

impl std::fmt::Debug for OpenUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenUrl::SystemBrowser => f.write_str("SystemBrowser"),
            OpenUrl::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

/// Options of [`OidcClient::login_loopback`].
///
/// Available with the `loopback` feature (on by default).
#[derive(Debug)]
pub struct LoopbackOptions {
    /// How the URL reaches the user.
    pub open: OpenUrl,
    /// How long to wait for the browser to come back (default 5 minutes).
    pub timeout: Duration,
    /// Ends the wait early with [`Error::Cancelled`].
    pub cancel: CancellationToken,
    /// The loopback address to listen on: `None` (the default) tries
    /// `127.0.0.1`, then `[::1]` when the machine has no IPv4 loopback (RFC
    /// 8252 §8.3); `Some` takes that one (it must be a loopback address).
    pub address: Option<IpAddr>,
}

impl LoopbackOptions {
    /// Opens the system browser; waits up to 5 minutes.
    pub fn system_browser() -> Self {
        Self {
            open: OpenUrl::SystemBrowser,
            timeout: Duration::from_secs(300),
            cancel: CancellationToken::new(),
            address: None,
        }
    }

    /// Hands the URL to `f`; waits up to 5 minutes.
    pub fn with_callback(f: impl FnOnce(&str) + Send + 'static) -> Self {
        Self {
            open: OpenUrl::Callback(Box::new(f)),
            timeout: Duration::from_secs(300),
            cancel: CancellationToken::new(),
            address: None,
        }
    }

    /// Listens on `address` (`127.0.0.1` or `[::1]`; any other is refused
    /// when the login starts).
    ///
    /// ```no_run
    /// let options = sessionkit::LoopbackOptions::system_browser()
    ///     .address(std::net::Ipv6Addr::LOCALHOST.into()); // http://[::1]:PORT/callback
    /// # let _ = options;
    /// ```
    #[must_use]
    pub fn address(mut self, address: IpAddr) -> Self {
        self.address = Some(address);
        self
    }
}

/// Binds the listener as [`LoopbackOptions::address`] says; returns it and
/// the redirect URI that names it.
async fn bind(address: Option<IpAddr>) -> Result<(TcpListener, String)> {
    let listener = match address {
        Some(ip) if !ip.is_loopback() => {
            return Err(Error::Config(format!(
                "the loopback listener must listen on a loopback address, not {ip}"
            )));
        }
        Some(ip) => TcpListener::bind((ip, 0)).await?,
        None => match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
            Ok(l) => l,
            Err(_) => TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).await?,
        },
    };
    let local = listener.local_addr()?;
    // RFC 8252 §7.3: a literal loopback IP, IPv6 in brackets.
    let uri = match local.ip() {
        IpAddr::V4(ip) => format!("http://{ip}:{}/callback", local.port()),
        IpAddr::V6(ip) => format!("http://[{ip}]:{}/callback", local.port()),
    };
    Ok((listener, uri))
}

impl OidcClient {
    /// Signs in through the browser with a loopback redirect (RFC 8252):
    /// listens on `127.0.0.1` (or `[::1]`: [`LoopbackOptions::address`]) on
    /// a free port, opens the authorization URL,
    /// accepts exactly the one redirect whose `state` matches (anything else is
    /// refused and the wait goes on), answers the browser with a short page,
    /// and times out.
    ///
    /// Connections are served side by side, each with its own 10 s limit for
    /// sending its request head, so local clients that connect and send
    /// nothing (or half a request) cannot hold the sign-in; the timeout and
    /// `cancel` end the wait whatever is open, and every connection is
    /// closed when this returns.
    ///
    /// Available with the `loopback` feature (on by default); without it, use
    /// [`OidcClient::authorization_request`] and [`OidcClient::finish`].
    ///
    /// ```no_run
    /// # async fn demo() -> sessionkit::Result<()> {
    /// use sessionkit::{HttpClient, LoopbackOptions, OidcClient, Provider};
    /// let http = HttpClient::new()?;
    /// let provider = Provider::discover("http://127.0.0.1:9090", &http).await?;
    /// let client = OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    /// let tokens = client
    ///     .login_loopback(LoopbackOptions::with_callback(|url| println!("Open this URL to sign in: {url}")))
    ///     .await?;
    /// println!("signed in as {}", tokens.claims.expect("an ID token").sub);
    /// # Ok(()) }
    /// ```
    pub async fn login_loopback(&self, options: LoopbackOptions) -> Result<TokenSet> {
        let (listener, redirect_uri) = bind(options.address).await?;
        let port = listener.local_addr()?.port();
        let request = self.authorization_request(&redirect_uri).await?;
        let url = request.url.to_string();
        match options.open {
            OpenUrl::SystemBrowser => {
                let opened = tokio::task::spawn_blocking(move || webbrowser::open(&url)).await;
                if !matches!(opened, Ok(Ok(()))) {
                    return Err(Error::Config(
                        "cannot open the system browser; hand the URL to the user instead"
                            .to_owned(),
                    ));
                }
            }
            OpenUrl::Callback(f) => f(&url),
        }
        let deadline = Instant::now() + options.timeout;
        // Dropped when this returns: every connection still open is closed.
        let mut connections = JoinSet::new();
        let (result, answered) = tokio::select! {
            () = options.cancel.cancelled() => return Err(Error::Cancelled),
            () = tokio::time::sleep_until(deadline) => return Err(Error::Timeout(options.timeout)),
            outcome = self.serve_redirect(listener, port, &request, &mut connections) => outcome,
        };
        // The sign-in is decided: give its page a moment to reach the
        // browser. The result stands whatever happens meanwhile.
        tokio::select! {
            () = answered.cancelled() => {}
            () = tokio::time::sleep(PAGE_GRACE) => {}
            () = tokio::time::sleep_until(deadline) => {}
            () = options.cancel.cancelled() => {}
        }
        result
    }

    /// Accepts connections (served in `connections`) until a redirect with
    /// the right `state` arrives, redeems it, and hands its connection the
    /// page to show. Returns the result and a token cancelled once that
    /// connection has ended.
    async fn serve_redirect(
        &self,
        listener: TcpListener,
        port: u16,
        request: &AuthorizationRequest,
        connections: &mut JoinSet<()>,
    ) -> (Result<TokenSet>, CancellationToken) {
        let (claims, mut claimed) = mpsc::channel(1);
        let shared = Arc::new(Shared {
            port,
            state_digest: request.state_digest(),
            claimed: AtomicBool::new(false),
            claims,
        });
        let claim = loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        connections.spawn(serve_connection(stream, Arc::clone(&shared)));
                    }
                    Err(err) => {
                        // Out of file descriptors, say: no hot loop.
                        tracing::debug!(%err, "loopback accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                },
                Some(claim) = claimed.recv() => break claim,
                // Forget connections that have ended.
                Some(_) = connections.join_next() => {}
            }
        };
        drop(listener);
        let result = self.finish(request, claim.url.as_str()).await;
        let page = match &result {
            Ok(_) => Page {
                status: StatusCode::OK,
                title: "Signed in",
                text: "You are signed in. You can close this tab and return to the app.".to_owned(),
            },
            Err(e) => Page {
                status: StatusCode::BAD_REQUEST,
                title: "Sign-in failed",
                text: format!("Sign-in failed: {e}. You can close this tab."),
            },
        };
        let _ = claim.page.send(page);
        (result, claim.ended)
    }
}

/// What every connection of one login shares.
struct Shared {
    port: u16,
    /// SHA-256 of the request's `state` (compared by digest, never kept in clear).
    state_digest: [u8; 32],
    /// Set by the first request with the right `state`: only one is redeemed.
    claimed: AtomicBool,
    claims: mpsc::Sender<Claim>,
}

/// The redirect with the right `state`, handed to the login.
struct Claim {
    url: url::Url,
    /// The page the login decides on.
    page: oneshot::Sender<Page>,
    /// Cancelled once the connection has ended (its page sent, or not).
    ended: CancellationToken,
}

/// A page for the browser.
struct Page {
    status: StatusCode,
    title: &'static str,
    text: String,
}

impl Page {
    fn bad_request() -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            title: "Bad request",
            text: "This is not a sign-in response.".to_owned(),
        }
    }

    fn refused(text: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            title: "Sign-in refused",
            text: text.to_owned(),
        }
    }
}

/// Serves one connection: one request, its head within [`HEADER_READ_TIMEOUT`].
async fn serve_connection(stream: TcpStream, shared: Arc<Shared>) {
    let ended = CancellationToken::new();
    // Cancelled when this ends, also when the login drops it mid-way.
    let _ended = ended.clone().drop_guard();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let ended = ended.clone();
        async move { Ok::<_, Infallible>(response(route(&request, &shared, ended).await)) }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(false)
        .max_buf_size(MAX_REQUEST_HEAD);
    if let Err(err) = http.serve_connection(TokioIo::new(stream), service).await {
        tracing::debug!(%err, "loopback connection ended");
    }
}

/// What one request to the listener is.
#[derive(Debug)]
pub(crate) enum Classified {
    /// Not a `GET` of an origin-form target: 400.
    NotARedirect,
    /// Another path than `/callback`: 404.
    NotFound,
    /// `/callback` without this login's `state`: refused.
    OtherLogin,
    /// The redirect of this login.
    Callback(url::Url),
}

/// Sorts a request by its method and target alone (no I/O; the fuzz
/// targets call it too): only a `GET /callback` with the login's `state`
/// (by its SHA-256) is this login's redirect.
pub(crate) fn classify(
    method: &Method,
    uri: &hyper::Uri,
    port: u16,
    state_digest: &[u8; 32],
) -> Classified {
    // Origin-form targets only (`/callback?...`), as browsers send them.
    let target = uri
        .path_and_query()
        .map(|t| t.as_str())
        .filter(|t| t.starts_with('/'))
        .filter(|_| method == Method::GET && uri.authority().is_none());
    let Some(redirect) =
        target.and_then(|t| url::Url::parse(&format!("http://127.0.0.1:{port}{t}")).ok())
    else {
        return Classified::NotARedirect;
    };
    if redirect.path() != "/callback" {
        return Classified::NotFound;
    }
    let state_ok = redirect
        .query_pairs()
        .find(|(k, _)| k == "state")
        .is_some_and(|(_, v)| crate::secret::sha256(v.as_bytes()) == *state_digest);
    if state_ok {
        Classified::Callback(redirect)
    } else {
        Classified::OtherLogin
    }
}

/// Decides the page for one request: only a `GET /callback` with the
/// login's `state` goes on to the login, and only the first one.
async fn route(request: &Request<Incoming>, shared: &Shared, ended: CancellationToken) -> Page {
    let redirect = match classify(
        request.method(),
        request.uri(),
        shared.port,
        &shared.state_digest,
    ) {
        Classified::NotARedirect => return Page::bad_request(),
        Classified::NotFound => {
            return Page {
                status: StatusCode::NOT_FOUND,
                title: "Not found",
                text: "Nothing here.".to_owned(),
            };
        }
        Classified::OtherLogin => {
            tracing::warn!("refused a loopback request whose state does not match");
            return Page::refused("This response does not belong to the sign-in in progress.");
        }
        Classified::Callback(redirect) => redirect,
    };
    if shared.claimed.swap(true, Ordering::SeqCst) {
        tracing::warn!("refused a second loopback request for the same sign-in");
        return Page::refused("This sign-in has been answered already.");
    }
    let (page, decided) = oneshot::channel();
    let claim = Claim {
        url: redirect,
        page,
        ended,
    };
    if shared.claims.send(claim).await.is_err() {
        return Page::refused("The sign-in has ended.");
    }
    decided
        .await
        .unwrap_or_else(|_| Page::refused("The sign-in has ended."))
}

/// The HTML page as a response (never cached: the URL held a code).
fn response(page: Page) -> Response<String> {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;margin:3rem\"><h1>{}</h1><p>{}</p></body></html>",
        esc(page.title),
        esc(page.title),
        esc(&page.text)
    );
    let mut response = Response::new(body);
    *response.status_mut() = page.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
