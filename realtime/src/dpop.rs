//! DPoP (RFC 9449) on the opening handshake: what a [`TokenSource`] is asked
//! to sign ([`ProofRequest`]), the server nonce kept between attempts, and
//! the one attempt that opens a connection with a proof — and retries at
//! once, a single time, when the server answers `use_dpop_nonce`.
//!
//! The token source decides: [`TokenSource::dpop_proof`] answering `None`
//! (the default) keeps the bearer scheme; a proof turns the attempt into
//! `Authorization: DPoP TOKEN` plus `DPoP: PROOF`, both marked sensitive.
//! A proof is asked for on every attempt and used once (servers refuse a
//! replayed `jti`).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::timeout;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::challenge::{Challenge, reported};
use crate::error::TokenError;
use crate::handshake::{OpenError, Response, Socket, open, request};
use crate::options::TokenTransport;
use crate::token::{BearerToken, TokenSource};

/// The method of every WebSocket opening handshake (RFC 6455 §4.1).
pub const HANDSHAKE_METHOD: &str = "GET";

/// The longest `DPoP-Nonce` kept from a server's answer, in bytes.
const MAX_NONCE: usize = 1024;

/// [`crate::ENDPOINTS_HEADER`] as a header name.
const ENDPOINTS: HeaderName = HeaderName::from_static(crate::ENDPOINTS_HEADER);

/// What a DPoP proof for one connection attempt must say (RFC 9449 §4.2):
/// `htm` is [`method`](Self::method), `htu` is [`url`](Self::url), `ath`
/// is the base64url SHA-256 of [`token`](Self::token), and `nonce` is
/// [`nonce`](Self::nonce) when the server gave one. Given to
/// [`TokenSource::dpop_proof`].
///
/// ```
/// use sessionkit_realtime::{BearerToken, ProofRequest};
///
/// let token = BearerToken::new("an-access-token");
/// let request = ProofRequest::new("GET", "wss://chat.example.com/ws", &token)
///     .with_nonce(Some("server-nonce"));
/// assert_eq!((request.method, request.url), ("GET", "wss://chat.example.com/ws"));
/// assert_eq!(request.nonce, Some("server-nonce"));
/// ```
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ProofRequest<'a> {
    /// The HTTP method, `htm`: `"GET"` for a WebSocket handshake.
    pub method: &'a str,
    /// The URL the client dials, without query and fragment, `htu`: the
    /// WebSocket URL itself (`ws://…` or `wss://…`), as the client was given it.
    pub url: &'a str,
    /// The access token sent with the proof (its hash goes in `ath`).
    pub token: &'a BearerToken,
    /// The latest `DPoP-Nonce` of the endpoint this attempt goes to (each
    /// endpoint keeps its own), to put in `nonce`.
    pub nonce: Option<&'a str>,
}

impl<'a> ProofRequest<'a> {
    /// A request for `method` on `url` with `token` and no nonce (for
    /// tests of a [`TokenSource`]; the client builds its own).
    #[must_use]
    pub fn new(method: &'a str, url: &'a str, token: &'a BearerToken) -> Self {
        Self {
            method,
            url,
            token,
            nonce: None,
        }
    }

    /// With the server's nonce.
    #[must_use]
    pub fn with_nonce(mut self, nonce: Option<&'a str>) -> Self {
        self.nonce = nonce;
        self
    }
}

/// `url` without query and fragment: a proof's `htu`.
pub(crate) fn htu(url: &str) -> Result<String, TokenError> {
    let mut parsed =
        url::Url::parse(url).map_err(|e| TokenError::Unavailable(format!("bad request: {e}")))?;
    parsed.set_query(None);
    parsed.set_fragment(None);
    Ok(parsed.into())
}

/// The latest `DPoP-Nonce` a server sent (on a 101 or a 401), for the
/// next attempt; one per endpoint (a node's nonce means nothing to
/// another), shared by the driver and make-before-break connections.
#[derive(Debug, Clone, Default)]
pub(crate) struct NonceSlot(Arc<Mutex<Option<String>>>);

impl NonceSlot {
    fn get(&self) -> Option<String> {
        self.lock().clone()
    }

    fn set(&self, nonce: String) {
        *self.lock() = Some(nonce);
    }

    /// Whether both are the same slot (one endpoint's).
    #[cfg(test)]
    pub(crate) fn same_as(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `DPoP-Nonce` of an answer, if it is a usable one (visible ASCII
/// without `"` or `\`, RFC 9449 §8.1, and not too long).
pub(crate) fn nonce_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("dpop-nonce")?.to_str().ok()?.trim();
    let usable = !value.is_empty()
        && value.len() <= MAX_NONCE
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
    usable.then(|| value.to_owned())
}

/// The `alg` of a proof's JWS header, when it can be read.
fn proof_alg(proof: &str) -> Option<String> {
    use base64::Engine as _;
    let header = proof.split('.').next()?;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .ok()?;
    let header: serde_json::Value = serde_json::from_slice(&header).ok()?;
    header.get("alg")?.as_str().map(str::to_owned)
}

/// Why [`connect`] opened nothing.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The source gave no proof (or the request could not be built).
    Token(TokenError),
    /// The source gave a proof but the token goes in a subprotocol or the
    /// query: DPoP needs the `Authorization` header.
    DpopNeedsHeader,
    /// The server refused the proof, listing the algorithms it takes
    /// (`accepted`), and the proof's (`signs_with`) is not one of them.
    DpopAlgorithm {
        accepted: Vec<String>,
        signs_with: String,
    },
    /// The connection or the handshake failed (a 401 is a refused token).
    Open(OpenError),
}

/// What one connection attempt needs.
pub(crate) struct Dial<'a> {
    pub(crate) url: &'a str,
    pub(crate) transport: &'a TokenTransport,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) config: WebSocketConfig,
    pub(crate) limit: Duration,
    pub(crate) source: &'a dyn TokenSource,
    pub(crate) nonces: &'a NonceSlot,
    /// How many endpoints the client has: sent as [`ENDPOINTS_HEADER`].
    ///
    /// [`ENDPOINTS_HEADER`]: crate::ENDPOINTS_HEADER
    pub(crate) endpoints: usize,
}

/// Opens one connection with `token`: a fresh DPoP proof from the source
/// when it has one, the handshake, and — when the server answers 401 with
/// `use_dpop_nonce` and a `DPoP-Nonce` — at once a second handshake with a
/// new proof carrying that nonce (once). Every `DPoP-Nonce` the server
/// sends is kept for the next attempt.
pub(crate) async fn connect(
    dial: Dial<'_>,
    token: &BearerToken,
) -> Result<(Socket, Response), Failure> {
    let htu = htu(dial.url).map_err(Failure::Token)?;
    let mut nonce_retry = true;
    loop {
        let nonce = dial.nonces.get();
        let asked = ProofRequest::new(HANDSHAKE_METHOD, &htu, token).with_nonce(nonce.as_deref());
        let proof = match timeout(dial.limit, dial.source.dpop_proof(asked)).await {
            Err(_) => {
                let why = "the token source timed out signing a DPoP proof";
                return Err(Failure::Token(TokenError::Unavailable(why.to_owned())));
            }
            Ok(None) => None,
            Ok(Some(Err(e))) => return Err(Failure::Token(e)),
            Ok(Some(Ok(proof))) => Some(proof),
        };
        if proof.is_some() && *dial.transport != TokenTransport::Header {
            return Err(Failure::DpopNeedsHeader);
        }
        let mut built =
            request(dial.url, dial.transport, token, proof.as_deref()).map_err(Failure::Token)?;
        built
            .headers_mut()
            .insert(ENDPOINTS, HeaderValue::from(dial.endpoints));
        let opened = open(built, dial.tls.clone(), dial.config, dial.limit).await;
        let dpop = proof.is_some();
        match opened {
            Ok((socket, response)) => {
                if let Some(nonce) = nonce_of(response.headers()).filter(|_| dpop) {
                    dial.nonces.set(nonce);
                }
                return Ok((socket, response));
            }
            Err(OpenError::Status {
                status,
                nonce,
                challenge,
            }) if dpop => {
                if let Some(fresh) = &nonce {
                    dial.nonces.set(fresh.clone());
                }
                let algs = challenge.as_ref().and_then(|c| c.algs.as_ref());
                if status == 401
                    && let (Some(accepted), Some(signs_with)) =
                        (algs, proof.as_deref().and_then(proof_alg))
                    && !accepted.contains(&signs_with)
                {
                    return Err(Failure::DpopAlgorithm {
                        accepted: reported(accepted),
                        signs_with,
                    });
                }
                let asks = challenge.as_ref().is_some_and(Challenge::asks_for_nonce);
                if status == 401 && asks && nonce.is_some() && nonce_retry {
                    nonce_retry = false;
                    tracing::debug!("the server asked for a DPoP nonce; retrying at once");
                    continue;
                }
                return Err(Failure::Open(OpenError::Status {
                    status,
                    nonce,
                    challenge,
                }));
            }
            Err(e) => return Err(Failure::Open(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::tests::headers;

    #[test]
    fn htu_drops_the_query_and_the_fragment() {
        assert_eq!(
            htu("ws://127.0.0.1:9/ws?room=a#x").expect("url"),
            "ws://127.0.0.1:9/ws"
        );
        assert_eq!(
            htu("wss://Chat.Example.com/ws").expect("url"),
            "wss://chat.example.com/ws"
        );
    }

    #[test]
    fn a_proofs_alg_is_read_from_its_header() {
        use base64::Engine as _;
        let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let proof = format!(
            "{}.{}.sig",
            b64(r#"{"typ":"dpop+jwt","alg":"ES256"}"#),
            b64("{}")
        );
        assert_eq!(proof_alg(&proof).as_deref(), Some("ES256"));
        assert_eq!(proof_alg("not a proof"), None);
        assert_eq!(proof_alg(&format!("{}.x.y", b64(r#"{"alg":1}"#))), None);
    }

    #[test]
    fn only_usable_nonces_are_kept() {
        assert_eq!(
            nonce_of(&headers(&[("dpop-nonce", "eyJ7S_zG.n-1")])).as_deref(),
            Some("eyJ7S_zG.n-1")
        );
        assert_eq!(nonce_of(&headers(&[("dpop-nonce", "a\"b")])), None);
        assert_eq!(nonce_of(&headers(&[("dpop-nonce", "")])), None);
        assert_eq!(nonce_of(&headers(&[])), None);
    }
}
