//! DPoP (RFC 9449) at the WebSocket handshake, with mock-idp's public
//! verifier (`sessionkit_mock_idp::dpop`), so the provider and this server
//! apply the same proof checks; and the handshake's counters
//! ([`HandshakeStats`]).
//!
//! The rules:
//! - `Authorization: DPoP TOKEN` must come with one `DPoP` proof for `GET`
//!   on the URL the client dialled, `ws://HOST/PATH`: `HOST` is the
//!   request's `Host` header and `PATH` its path (the query is not part of
//!   `htu`). The scheme is `ws` (this server speaks plain WebSocket; a proof
//!   naming `http://…` or `wss://…` is for another URL and refused). Its
//!   `ath` is the hash of the token, its `iat` within
//!   [`ServerConfig::dpop_window_secs`](super::ServerConfig::dpop_window_secs)
//!   of the server's clock, its `jti` not seen before (a replay cache keeps
//!   every accepted proof for its window), its key the one the token is
//!   bound to (`cnf.jkt`).
//! - A token with `cnf.jkt` sent as `Authorization: Bearer` is refused
//!   (RFC 9449 §7.1), and so is a token without `cnf` sent as DPoP.
//! - With [`ServerConfig::require_dpop_nonce`](super::ServerConfig::require_dpop_nonce)
//!   every proof must carry the server's current nonce: one without it is
//!   answered `use_dpop_nonce` with a `DPoP-Nonce` header, which every
//!   answer to a DPoP handshake (101 or 401) carries then.
//!
//! Every refusal is a 401 whose `WWW-Authenticate` is a `DPoP` challenge
//! (`error="invalid_dpop_proof"`, `"invalid_token"` or `"use_dpop_nonce"`);
//! clients treat it as a refused token. The one exception: a good proof the
//! server cannot record because its replay cache is full of live proofs is
//! a 503 with `Retry-After` (try again), never accepted unrecorded. A proof
//! by another key than the token's is refused before it is recorded, so a
//! token without its key cannot fill the cache. Logs name the kind of
//! refusal, never the token or the proof.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sessionkit_mock_idp::dpop::{self, Nonces, ProofError, ProofRequest, ReplayCache};

/// The method of a WebSocket handshake.
const HANDSHAKE_METHOD: &str = "GET";

/// How the request presents its access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    /// `Authorization: Bearer TOKEN` (RFC 6750).
    Bearer,
    /// `Authorization: DPoP TOKEN` with a `DPoP` proof (RFC 9449 §7.1).
    Dpop,
}

/// The scheme and token of the `Authorization` header (scheme names in any
/// case); `None` without a usable one.
pub(crate) fn authorization(headers: &HeaderMap) -> Option<(Scheme, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    if token.is_empty() {
        return None;
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((Scheme::Bearer, token))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some((Scheme::Dpop, token))
    } else {
        None
    }
}

/// The WebSocket URLs of a server bound to `addr` when none are
/// configured: `ws://ADDR/ws`, and `ws://localhost:PORT/ws` on loopback.
pub(crate) fn default_urls(addr: std::net::SocketAddr) -> Vec<String> {
    let mut urls = vec![format!("ws://{addr}{}", super::WS_PATH)];
    if addr.ip().is_loopback() {
        urls.push(format!("ws://localhost:{}{}", addr.port(), super::WS_PATH));
    }
    urls
}

/// The configured URL the client dialled, as a proof's `htu` must name
/// it: the one whose authority is the request's `Host` and whose path is
/// the request's. The client's `Host` only picks among the configured
/// URLs: a proof made for any other host is never accepted here.
pub(crate) fn handshake_url<'a>(
    urls: &'a [url::Url],
    headers: &HeaderMap,
    path: &str,
) -> Option<&'a url::Url> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    urls.iter().find(|u| {
        // The Host as a URL of the same scheme, normalised the same way
        // (case, default port); one with a path or credentials is no host.
        url::Url::parse(&format!("{}://{host}{path}", u.scheme())).is_ok_and(|dialled| {
            dialled.username().is_empty()
                && dialled.password().is_none()
                && dialled.path() == path
                && dialled.as_str() == u.as_str()
        })
    })
}

/// Why a DPoP handshake was refused.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The proof failed a check (or is missing, or repeated).
    Proof(ProofError),
    /// A DPoP-bound token came as `Bearer`.
    BoundAsBearer,
    /// A token without `cnf` came as `DPoP`.
    NotBound,
    /// No `Host` header, or one that names none of the server's URLs.
    NoHost,
}

impl Refusal {
    fn error_code(&self) -> &'static str {
        match self {
            Self::Proof(e) => e.error_code(),
            Self::BoundAsBearer | Self::NotBound => "invalid_token",
            Self::NoHost => "invalid_dpop_proof",
        }
    }

    fn description(&self) -> String {
        match self {
            Self::Proof(e) => e.to_string(),
            Self::BoundAsBearer => {
                "the access token is DPoP-bound: send it as Authorization: DPoP with a proof"
                    .to_owned()
            }
            Self::NotBound => "the access token is not DPoP-bound: send it as Bearer".to_owned(),
            Self::NoHost => {
                "the request's Host and path are none of this server's WebSocket URLs".to_owned()
            }
        }
    }

    /// For the log: the kind, never a value.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Proof(ProofError::Replayed) => "replayed proof",
            Self::Proof(ProofError::WrongUrl { .. }) => "proof for another URL",
            Self::Proof(ProofError::WrongMethod { .. }) => "proof for another method",
            Self::Proof(ProofError::KeyMismatch) => "proof by another key than the token's",
            Self::Proof(ProofError::TooOld { .. } | ProofError::FromTheFuture { .. }) => {
                "proof outside the iat window"
            }
            Self::Proof(ProofError::NonceMissing | ProofError::NonceStale) => "nonce required",
            Self::Proof(ProofError::ReplayCacheFull { .. }) => "replay cache full",
            Self::Proof(_) => "invalid proof",
            Self::BoundAsBearer => "DPoP-bound token sent as Bearer",
            Self::NotBound => "DPoP proof with an unbound token",
            Self::NoHost => "no Host header",
        }
    }
}

/// What the handshake counted since the server started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HandshakeStats {
    /// Handshake requests that reached `GET /ws`.
    pub attempts: u64,
    /// Of them, upgraded to a WebSocket.
    pub accepted: u64,
    /// Of them, refused with 401.
    pub unauthorized: u64,
    /// Upgraded with a valid DPoP proof.
    pub dpop_accepted: u64,
    /// Refused because their proof was seen before.
    pub dpop_replays: u64,
    /// Refused with `use_dpop_nonce`.
    pub nonce_challenges: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    attempts: AtomicU64,
    accepted: AtomicU64,
    unauthorized: AtomicU64,
    dpop_accepted: AtomicU64,
    dpop_replays: AtomicU64,
    nonce_challenges: AtomicU64,
}

fn add(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn attempt(&self) {
        add(&self.attempts);
    }

    pub(crate) fn accepted(&self, scheme: Scheme) {
        add(&self.accepted);
        if scheme == Scheme::Dpop {
            add(&self.dpop_accepted);
        }
    }

    pub(crate) fn unauthorized(&self) {
        add(&self.unauthorized);
    }

    pub(crate) fn snapshot(&self) -> HandshakeStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        HandshakeStats {
            attempts: get(&self.attempts),
            accepted: get(&self.accepted),
            unauthorized: get(&self.unauthorized),
            dpop_accepted: get(&self.dpop_accepted),
            dpop_replays: get(&self.dpop_replays),
            nonce_challenges: get(&self.nonce_challenges),
        }
    }
}

/// The verifier's memory: proofs seen, nonces handed out, and the window.
#[derive(Debug)]
pub(crate) struct Verifier {
    replay: ReplayCache,
    /// `Some` when proofs must carry the server's nonce.
    nonces: Option<Nonces>,
    window_secs: u32,
    /// The server's WebSocket URLs, one of which a proof's `htu` must be.
    urls: Vec<url::Url>,
    pub(crate) counters: Counters,
}

impl Verifier {
    pub(crate) fn new(
        require_nonce: bool,
        window_secs: u32,
        public_urls: &[String],
    ) -> Result<Self, crate::server::ServerError> {
        let urls = public_urls
            .iter()
            .map(|u| {
                url::Url::parse(u)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "ws" | "wss") && u.host_str().is_some())
                    .ok_or_else(|| {
                        crate::server::ServerError::Config(format!(
                            "public URL {u:?} is not a ws:// or wss:// URL"
                        ))
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            replay: ReplayCache::default(),
            nonces: require_nonce.then(Nonces::default),
            window_secs,
            urls,
            counters: Counters::default(),
        })
    }

    /// The nonce to hand out now, when nonces are required.
    pub(crate) fn nonce(&self, now: i64) -> Option<String> {
        self.nonces.as_ref().map(|n| n.current(now))
    }

    /// Checks the binding of a verified `token` (its `cnf.jkt`, `bound`)
    /// presented with `scheme` on a handshake to `path`, at `now`.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        path: &str,
        scheme: Scheme,
        token: &str,
        bound: Option<&str>,
        now: i64,
    ) -> Result<(), Refusal> {
        let result = self.check_inner(headers, path, scheme, token, bound, now);
        match &result {
            Err(Refusal::Proof(ProofError::Replayed)) => add(&self.counters.dpop_replays),
            Err(Refusal::Proof(e)) if e.is_nonce_challenge() => {
                add(&self.counters.nonce_challenges);
            }
            _ => {}
        }
        result
    }

    fn check_inner(
        &self,
        headers: &HeaderMap,
        path: &str,
        scheme: Scheme,
        token: &str,
        bound: Option<&str>,
        now: i64,
    ) -> Result<(), Refusal> {
        let Some(jkt) = bound else {
            return match scheme {
                Scheme::Bearer => Ok(()),
                Scheme::Dpop => Err(Refusal::NotBound),
            };
        };
        if scheme == Scheme::Bearer {
            return Err(Refusal::BoundAsBearer);
        }
        let proof = dpop::proof_header(headers)
            .map_err(Refusal::Proof)?
            .ok_or(Refusal::Proof(ProofError::Missing))?;
        let url = handshake_url(&self.urls, headers, path).ok_or(Refusal::NoHost)?;
        // Bound to the token's key before the proof is recorded: a token
        // without its key cannot fill the replay cache.
        let mut request = ProofRequest::new(HANDSHAKE_METHOD, url.as_str(), proof)
            .access_token(token)
            .bound_to(jkt)
            .window(self.window_secs);
        if let Some(nonces) = &self.nonces {
            request = request.require_nonce(nonces);
        }
        dpop::verify_proof(&request, now, &self.replay)
            .map(drop)
            .map_err(Refusal::Proof)
    }
}

/// 401 with a `DPoP` challenge for `refusal`, and the server's nonce when
/// it requires them; 503 with `Retry-After` when the proof could not be
/// recorded (the replay cache is full of live proofs: the client is not at
/// fault and tries again).
pub(crate) fn refused(refusal: &Refusal, nonce: Option<String>) -> Response {
    let description = refusal.description();
    let body = serde_json::json!({
        "error": refusal.error_code(),
        "error_description": description,
    });
    let retry_after = match refusal {
        Refusal::Proof(e) => e.retry_after_secs(),
        _ => None,
    };
    let status = match retry_after {
        Some(_) => StatusCode::SERVICE_UNAVAILABLE,
        None => StatusCode::UNAUTHORIZED,
    };
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Some(secs) = retry_after {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
    } else if let Ok(value) =
        HeaderValue::from_str(&dpop::challenge(refusal.error_code(), &description))
    {
        headers.insert(header::WWW_AUTHENTICATE, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    with_nonce(&mut response, nonce);
    response
}

/// Adds `DPoP-Nonce: nonce` to `response`.
pub(crate) fn with_nonce(response: &mut Response, nonce: Option<String>) {
    if let Some(value) = nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
        response.headers_mut().insert("dpop-nonce", value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemes_are_read_in_any_case() {
        let mut headers = HeaderMap::new();
        assert_eq!(authorization(&headers), None);
        for (value, expected) in [
            ("Bearer abc", Some((Scheme::Bearer, "abc"))),
            ("bearer  abc ", Some((Scheme::Bearer, "abc"))),
            ("DPoP abc", Some((Scheme::Dpop, "abc"))),
            ("dpop abc", Some((Scheme::Dpop, "abc"))),
            ("DPoP ", None),
            ("Basic abc", None),
        ] {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
            assert_eq!(authorization(&headers), expected, "{value}");
        }
    }

    #[test]
    fn the_host_only_picks_one_of_the_servers_urls() {
        let urls: Vec<url::Url> = ["ws://127.0.0.1:9091/ws", "wss://chat.example/ws"]
            .iter()
            .map(|u| url::Url::parse(u).expect("url"))
            .collect();
        let pick = |host: Option<&'static str>, path| {
            let mut headers = HeaderMap::new();
            if let Some(host) = host {
                headers.insert(header::HOST, HeaderValue::from_static(host));
            }
            handshake_url(&urls, &headers, path).map(url::Url::as_str)
        };
        assert_eq!(pick(None, "/ws"), None);
        assert_eq!(
            pick(Some("127.0.0.1:9091"), "/ws"),
            Some("ws://127.0.0.1:9091/ws")
        );
        assert_eq!(
            pick(Some("Chat.Example:443"), "/ws"),
            Some("wss://chat.example/ws")
        );
        assert_eq!(
            pick(Some("chat.example"), "/ws"),
            Some("wss://chat.example/ws")
        );
        // A Host the server does not answer to names no URL: a proof made
        // for it is never checked against it.
        for bad in [
            "evil.example",
            "127.0.0.1:9092",
            "evil/x",
            "user@chat.example",
            "",
        ] {
            assert_eq!(pick(Some(bad), "/ws"), None, "{bad}");
        }
        assert_eq!(pick(Some("127.0.0.1:9091"), "/other"), None);
    }

    #[test]
    fn tokens_are_bound_one_way_or_the_other() {
        let verifier = Verifier::new(false, 60, &["ws://127.0.0.1:1/ws".to_owned()]).expect("ok");
        let headers = HeaderMap::new();
        let check = |scheme, bound| verifier.check(&headers, "/ws", scheme, "t", bound, 0);
        assert!(check(Scheme::Bearer, None).is_ok());
        assert!(matches!(
            check(Scheme::Bearer, Some("jkt")),
            Err(Refusal::BoundAsBearer)
        ));
        assert!(matches!(check(Scheme::Dpop, None), Err(Refusal::NotBound)));
        assert!(matches!(
            check(Scheme::Dpop, Some("jkt")),
            Err(Refusal::Proof(ProofError::Missing))
        ));
    }

    #[test]
    fn a_refusal_is_a_dpop_challenge_with_the_nonce() {
        let response = refused(
            &Refusal::Proof(ProofError::NonceMissing),
            Some("n-1".to_owned()),
        );
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let challenge = response.headers()[header::WWW_AUTHENTICATE]
            .to_str()
            .expect("ascii");
        assert!(
            challenge.starts_with(r#"DPoP error="use_dpop_nonce""#),
            "{challenge}"
        );
        assert_eq!(response.headers()["dpop-nonce"], "n-1");
        let bearer = refused(&Refusal::BoundAsBearer, None);
        assert!(
            bearer.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .starts_with(r#"DPoP error="invalid_token""#)
        );
        assert!(bearer.headers().get("dpop-nonce").is_none());
    }

    #[test]
    fn a_proof_the_server_cannot_record_is_a_503_to_try_again() {
        let response = refused(
            &Refusal::Proof(ProofError::ReplayCacheFull {
                retry_after_secs: 42,
            }),
            None,
        );
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "42");
        assert!(
            response.headers().get(header::WWW_AUTHENTICATE).is_none(),
            "no challenge: the proof itself was fine"
        );
    }
}
