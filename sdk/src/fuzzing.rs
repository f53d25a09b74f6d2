//! Entry points for the fuzz targets in `fuzz/` at the repository root
//! (cargo-fuzz). Each one hands its input to the very function the SDK
//! calls on bytes that come from outside — a redirect, a token or error
//! response, a discovery document, a JWKS — with any network call answered
//! from the input, so the targets reach the parsers without a server.
//!
//! Compiled only with the non-default `fuzzing` feature and hidden from
//! the documentation: **not part of the API**, it may change in any release.

use std::future::Future;
use std::time::SystemTime;

use openidconnect::http;
use openidconnect::{HttpRequest, HttpResponse, JsonWebKeySetUrl};

use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::jws::Jwks;
use crate::login::AuthorizationRequest;
use crate::provider::Provider;
use crate::secret::AuthorizationCode;

/// The issuer of [`provider`].
pub const ISSUER: &str = "https://id.example.com";
/// The `state` of [`authorization_request`].
pub const STATE: &str = "fuzz-state-5b7e2c19a4d3";
/// The `nonce` of [`authorization_request`].
pub const NONCE: &str = "fuzz-nonce-c03f81d6e2aa";

/// Runs a future whose I/O is all answered at once (the network calls of
/// these entry points are): polls it with a waker that does nothing.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for _ in 0..1000 {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
    unreachable!("a fuzzing entry point waited on real I/O")
}

/// An HTTP client that answers every request from a table of
/// (path suffix, status, body); anything else is a 404.
fn answering(
    answers: &[(&str, u16, &[u8])],
) -> impl Fn(HttpRequest) -> std::future::Ready<std::result::Result<HttpResponse, std::io::Error>> + use<>
{
    let answers: Vec<(String, u16, Vec<u8>)> = answers
        .iter()
        .map(|(p, s, b)| ((*p).to_owned(), *s, b.to_vec()))
        .collect();
    move |request: HttpRequest| {
        let path = request.uri().path();
        let (status, body) = answers
            .iter()
            .find(|(suffix, _, _)| path.ends_with(suffix.as_str()))
            .map_or((404, Vec::new()), |(_, s, b)| (*s, b.clone()));
        let mut response = HttpResponse::new(body);
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::OK);
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        std::future::ready(Ok(response))
    }
}

/// Discovery of `issuer` ([`Provider::discover`]) answered with `document`
/// (the discovery document, HTTP 200) and `jwks` (at any path ending in
/// `jwks`).
pub fn discover(issuer: &str, document: &[u8], jwks: &[u8]) -> Result<Provider> {
    let fetch = answering(&[
        ("/.well-known/openid-configuration", 200, document),
        ("jwks", 200, jwks),
    ]);
    ready(Provider::discover_through(issuer, &fetch, http()?))
}

/// One HTTP client for every provider discovered here (building one reads
/// the system's root certificates: far slower than the parsing fuzzed).
fn http() -> Result<&'static HttpClient> {
    static HTTP: std::sync::OnceLock<HttpClient> = std::sync::OnceLock::new();
    if let Some(http) = HTTP.get() {
        return Ok(http);
    }
    let http = HttpClient::new()?;
    Ok(HTTP.get_or_init(|| http))
}

/// A JWKS fetch (discovery's, and the refetch on an unknown `kid`)
/// answered with `status` and `body`, parsed into [`Jwks`].
pub fn jwks(status: u16, body: &[u8]) -> Result<Jwks> {
    let fetch = answering(&[("/jwks", status, body)]);
    let url = JsonWebKeySetUrl::new(format!("{ISSUER}/jwks"))
        .map_err(|e| Error::Config(e.to_string()))?;
    ready(crate::provider::fetch_jwks(&url, &fetch))
}

/// A token endpoint answer, as the login, device and refresh flows parse it.
/// `Ok` holds the `Debug` of the parsed tokens (secrets redacted), for the
/// targets to check.
pub fn token_response(status: u16, body: &[u8], received_at: SystemTime) -> Result<String> {
    crate::token::parse_token_response(status, body, received_at).map(|raw| format!("{raw:?}"))
}

/// An OAuth error answer (revocation, the devices API, the device flow).
pub fn error_response(status: u16, body: &[u8]) -> Error {
    crate::token::parse_error_response(status, body)
}

/// A provider at [`ISSUER`] with a usual discovery document; it promises
/// RFC 9207's `iss` parameter when `iss_parameter` is set.
pub fn provider(iss_parameter: bool) -> Result<Provider> {
    let document = serde_json::json!({
        "issuer": ISSUER,
        "authorization_endpoint": format!("{ISSUER}/authorize"),
        "token_endpoint": format!("{ISSUER}/token"),
        "jwks_uri": format!("{ISSUER}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "authorization_response_iss_parameter_supported": iss_parameter,
    });
    discover(ISSUER, document.to_string().as_bytes(), br#"{"keys":[]}"#)
}

/// An authorization request in flight with [`STATE`] and [`NONCE`],
/// redirecting to `redirect_uri`.
pub fn authorization_request(provider: &Provider, redirect_uri: &str) -> AuthorizationRequest {
    let url = provider.metadata().authorization_endpoint().url().clone();
    AuthorizationRequest::fixed(url, redirect_uri, STATE, NONCE)
}

/// The redirect an app hands to [`crate::OidcClient::finish`], checked as it
/// does before redeeming the code; `Ok` is the code it would redeem.
pub fn redirect(
    provider: &Provider,
    request: &AuthorizationRequest,
    redirect_url: &str,
) -> Result<AuthorizationCode> {
    crate::login::parse_redirect(provider, request, redirect_url).map(|p| p.code)
}

/// What the loopback listener on `port` makes of a request `head` (its
/// request line): `None` when it answers 400 or 404 or refuses it and waits
/// on, else what [`crate::OidcClient::finish`] then makes of the callback URL.
#[cfg(feature = "loopback")]
pub fn loopback_request(
    provider: &Provider,
    request: &AuthorizationRequest,
    port: u16,
    head: &[u8],
) -> Option<Result<AuthorizationCode>> {
    use crate::login::loopback::{Classified, classify};
    // hyper parses the head in the listener; here the request line is split
    // the way HTTP/1.1 puts it (method, target, version).
    let line = head.split(|b| *b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let method = hyper::Method::from_bytes(parts.next()?.as_bytes()).ok()?;
    let uri: hyper::Uri = parts.next()?.parse().ok()?;
    match classify(&method, &uri, port, &request.state_digest()) {
        Classified::Callback(url) => Some(redirect(provider, request, url.as_str())),
        Classified::NotARedirect | Classified::NotFound | Classified::OtherLogin => None,
    }
}
