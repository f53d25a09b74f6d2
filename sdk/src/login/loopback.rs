//! The loopback redirect listener (RFC 8252): sign-in through the system
//! browser for apps that own no redirect URI. It listens on `127.0.0.1`,
//! opens the authorization URL and hands the one matching redirect to
//! [`OidcClient::finish`]. Behind the `loopback` feature, so apps with their
//! own redirect handling build without it and without `webbrowser`.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;

use super::{AuthorizationRequest, OidcClient, same};
use crate::error::{Error, Result};
use crate::token::TokenSet;

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
}

impl LoopbackOptions {
    /// Opens the system browser; waits up to 5 minutes.
    pub fn system_browser() -> Self {
        Self {
            open: OpenUrl::SystemBrowser,
            timeout: Duration::from_secs(300),
            cancel: CancellationToken::new(),
        }
    }

    /// Hands the URL to `f`; waits up to 5 minutes.
    pub fn with_callback(f: impl FnOnce(&str) + Send + 'static) -> Self {
        Self {
            open: OpenUrl::Callback(Box::new(f)),
            timeout: Duration::from_secs(300),
            cancel: CancellationToken::new(),
        }
    }
}

impl OidcClient {
    /// Signs in through the browser with a loopback redirect (RFC 8252):
    /// listens on `127.0.0.1` on a free port, opens the authorization URL,
    /// accepts exactly the one redirect whose `state` matches (anything else is
    /// refused and the wait goes on), answers the browser with a short page,
    /// and times out.
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
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let port = listener.local_addr()?.port();
        let request = self.authorization_request(&format!("http://127.0.0.1:{port}/callback"))?;
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
        let deadline = tokio::time::Instant::now() + options.timeout;
        loop {
            let accepted = tokio::select! {
                () = options.cancel.cancelled() => return Err(Error::Cancelled),
                () = tokio::time::sleep_until(deadline) => return Err(Error::Timeout(options.timeout)),
                accepted = listener.accept() => accepted,
            };
            let Ok((mut stream, _)) = accepted else {
                continue;
            };
            let head = read_head(&mut stream).await;
            let redirect = match classify(head.as_deref(), port, &request) {
                Incoming::Callback(redirect) => redirect,
                Incoming::NotARedirect => {
                    let _ = respond(
                        &mut stream,
                        400,
                        "Bad request",
                        "This is not a sign-in response.",
                    )
                    .await;
                    continue;
                }
                Incoming::NotFound => {
                    let _ = respond(&mut stream, 404, "Not found", "Nothing here.").await;
                    continue;
                }
                Incoming::OtherLogin => {
                    tracing::warn!("refused a loopback request whose state does not match");
                    let _ = respond(
                        &mut stream,
                        400,
                        "Sign-in refused",
                        "This response does not belong to the sign-in in progress.",
                    )
                    .await;
                    continue;
                }
            };
            let result = self.finish(&request, redirect.as_str()).await;
            let _ = match &result {
                Ok(_) => {
                    respond(
                        &mut stream,
                        200,
                        "Signed in",
                        "You are signed in. You can close this tab and return to the app.",
                    )
                    .await
                }
                Err(e) => {
                    respond(
                        &mut stream,
                        400,
                        "Sign-in failed",
                        &format!("Sign-in failed: {e}. You can close this tab."),
                    )
                    .await
                }
            };
            return result;
        }
    }
}

/// What one request to the listener is.
#[derive(Debug, PartialEq)]
pub(crate) enum Incoming {
    /// Not a `GET` with an origin-form target (or nothing readable came).
    NotARedirect,
    /// A path other than `/callback`.
    NotFound,
    /// A callback whose `state` is not this login's.
    OtherLogin,
    /// This login's callback, for [`OidcClient::finish`].
    Callback(url::Url),
}

/// Sorts a request head the listener read on `port` (pure: the fuzz
/// targets drive it with their input).
pub(crate) fn classify(head: Option<&[u8]>, port: u16, request: &AuthorizationRequest) -> Incoming {
    let Some(redirect) = head
        .and_then(request_target)
        .and_then(|t| url::Url::parse(&format!("http://127.0.0.1:{port}{t}")).ok())
    else {
        return Incoming::NotARedirect;
    };
    if redirect.path() != "/callback" {
        return Incoming::NotFound;
    }
    let state_ok = redirect
        .query_pairs()
        .find(|(k, _)| k == "state")
        .is_some_and(|(_, v)| same(v.as_bytes(), request.state.secret().as_bytes()));
    if state_ok {
        Incoming::Callback(redirect)
    } else {
        Incoming::OtherLogin
    }
}

/// Reads an HTTP request head, bounded in size and time.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::with_capacity(2048);
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 16 * 1024 {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()??;
    Some(buf)
}

/// The request target of a `GET` request head, when it is in origin form.
fn request_target(head: &[u8]) -> Option<String> {
    let head = std::str::from_utf8(head).ok()?;
    let line = head.lines().next()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    (method == "GET" && target.starts_with('/')).then(|| target.to_owned())
}

async fn respond(
    stream: &mut tokio::net::TcpStream,
    status: u16,
    title: &str,
    text: &str,
) -> std::io::Result<()> {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title></head>\
         <body style=\"font-family:system-ui,sans-serif;margin:3rem\"><h1>{}</h1><p>{}</p></body></html>",
        esc(title),
        esc(title),
        esc(text)
    );
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        _ => "Bad Request",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}
