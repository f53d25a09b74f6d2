//! DPoP proofs (RFC 9449): the checks the provider applies at its token
//! endpoint and its resource endpoints, public so that other servers (the
//! example chat-server, a test's own API) apply exactly the same ones.
//!
//! A proof is checked with [`verify_proof`], one call with the request's
//! method and URL, the `DPoP` header's value, the access token when one is
//! presented, the time, and a [`ReplayCache`]. What is checked, in order
//! (RFC 9449 §4.3):
//! - one well-formed compact JWS, at most 8 KiB ([`proof_header`] refuses a
//!   repeated `DPoP` header);
//! - `typ` is `dpop+jwt`; no `crit`; `alg` is one of [`SUPPORTED_ALGS`]
//!   (asymmetric: never `none` or an HMAC), and of the server's own list
//!   when it takes fewer ([`ProofRequest::algs`]);
//! - `jwk` is a public key of the kind `alg` names (a private member such
//!   as `d` is refused) and the signature verifies with it;
//! - `jti`, `htm`, `htu` and `iat` are present; `htm` is the method;
//!   `htu` is the URL without query and fragment, both normalised (scheme
//!   and host case, default port, dot segments, percent-encoding case);
//!   `http`, `https`, and for WebSocket handshakes `ws` and `wss`, each
//!   only equal to itself;
//! - `iat` is within the window (60 s by default) either side of `now`;
//! - with an access token: `ath` is the base64url SHA-256 of it;
//! - when the server requires nonces ([`ProofRequest::require_nonce`]):
//!   `nonce` is the current (or previous) one, else
//!   [`ProofError::NonceMissing`] / [`ProofError::NonceStale`], whose
//!   [`error_code`](ProofError::error_code) is `use_dpop_nonce`;
//! - with the key the token is bound to ([`ProofRequest::bound_to`]): the
//!   proof is signed by it ([`ProofError::KeyMismatch`]);
//! - last, the proof was not seen before (its `jti` under its key); when
//!   the replay cache is full of live proofs, a new one is refused with
//!   [`ProofError::ReplayCacheFull`] (a 503, try again) rather than
//!   forgetting one.
//!
//! What the proof proves, its key's thumbprint ([`VerifiedProof::jkt`]),
//! must match the token's `cnf.jkt`: give it with [`ProofRequest::bound_to`]
//! when the token is known to be bound, so that a proof by another key is
//! refused before the replay cache records it (someone holding a token but
//! not its key could otherwise fill the cache);
//! [`VerifiedProof::check_binding`] compares afterwards.
//!
//! ```
//! use sessionkit_mock_idp::dpop::{self, ProofError, ProofRequest, ReplayCache};
//!
//! let replay = ReplayCache::default();
//! // `header` would be the request's `DPoP` header; this one is no proof.
//! let header = "not.a.proof";
//! let checked = dpop::verify_proof(
//!     &ProofRequest::new("GET", "https://api.example/messages?room=1", header)
//!         .access_token("eyJ...the access token"),
//!     1_700_000_000,
//!     &replay,
//! );
//! let err = checked.unwrap_err();
//! assert!(matches!(err, ProofError::Malformed(_)));
//! assert_eq!(err.error_code(), "invalid_dpop_proof");
//! // What a resource server answers with a 401:
//! assert!(err.www_authenticate().starts_with("DPoP error=\"invalid_dpop_proof\""));
//! ```
//!
//! Layout: this file holds the request, the checks and the errors; `jwk`
//! the keys and thumbprints; `replay` the replay cache and the nonces.
//! Why this file is ~630 lines: the checks run in the RFC's order and each
//! has its error, and the two are read together; a fifth of it is rustdoc.

pub(crate) mod jwk;
mod replay;

pub use jwk::{SUPPORTED_ALGS, jwk_thumbprint};
pub(crate) use replay::Use;
pub use replay::{Nonces, ReplayCache};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

/// How far (seconds) a proof's `iat` may be from the verifier's clock,
/// either way, unless [`ProofRequest::window`] says otherwise.
pub const DEFAULT_WINDOW_SECS: i64 = 60;

/// The longest `DPoP` header accepted, in bytes.
pub const MAX_PROOF_BYTES: usize = 8 * 1024;

/// Why a proof was refused. The message says what was wrong, never a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The request has no `DPoP` header, and one is needed.
    #[error("a DPoP proof is required: the request has no DPoP header")]
    Missing,
    /// The request has more than one `DPoP` header.
    #[error("the request has more than one DPoP header")]
    Repeated,
    /// Not a compact JWS with JSON header and claims, or a claim is missing
    /// or of the wrong type.
    #[error("the DPoP proof is malformed: {0}")]
    Malformed(String),
    /// The `typ` header is not `dpop+jwt`.
    #[error("the DPoP proof's typ is {0:?}, not \"dpop+jwt\"")]
    WrongType(String),
    /// The `alg` is not one of [`SUPPORTED_ALGS`] (`none` and HMAC never
    /// are), or not one the server takes (mock-idp's
    /// [`Config::dpop_signing_algs`](crate::Config::dpop_signing_algs)).
    #[error(
        "the DPoP proof's alg {0:?} is not accepted; use one the server lists (in its DPoP challenge's algs, or a provider's dpop_signing_alg_values_supported)"
    )]
    UnsupportedAlg(String),
    /// The `jwk` header is missing, or not a usable key for the `alg`.
    #[error("the DPoP proof's jwk is not usable: {0}")]
    BadKey(String),
    /// The `jwk` header holds a private key (this member of it).
    #[error("the DPoP proof's jwk holds private key material ({0:?}); send the public key only")]
    PrivateKey(String),
    /// The signature does not verify with the `jwk`.
    #[error("the DPoP proof's signature does not verify with its jwk")]
    BadSignature,
    /// `htm` is not the request's method.
    #[error("the DPoP proof is for method {found:?}, but the request is {expected}")]
    WrongMethod {
        /// The request's method.
        expected: String,
        /// The proof's `htm`.
        found: String,
    },
    /// `htu` is not the request's URL.
    #[error("the DPoP proof is for {found:?}, but the request is for {expected}")]
    WrongUrl {
        /// The request's URL, without query and fragment.
        expected: String,
        /// The proof's `htu`.
        found: String,
    },
    /// `iat` is further in the past than the window allows.
    #[error("the DPoP proof is too old: issued {age_secs} s ago")]
    TooOld {
        /// How long ago it was issued, by the verifier's clock.
        age_secs: i64,
    },
    /// `iat` is further in the future than the window allows.
    #[error("the DPoP proof is issued {ahead_secs} s in the future; check the clock")]
    FromTheFuture {
        /// How far ahead it is, by the verifier's clock.
        ahead_secs: i64,
    },
    /// An access token was presented but the proof has no `ath`.
    #[error("the DPoP proof has no ath, but an access token is presented with it")]
    MissingAth,
    /// `ath` is not the hash of the access token presented.
    #[error("the DPoP proof's ath is not the hash of the access token presented")]
    WrongAth,
    /// The server requires a nonce and the proof has none.
    #[error("a DPoP nonce is required: sign a new proof with the nonce of the DPoP-Nonce header")]
    NonceMissing,
    /// The proof's nonce is not the server's current one.
    #[error(
        "the DPoP proof's nonce is not current: sign a new proof with the nonce of the DPoP-Nonce header"
    )]
    NonceStale,
    /// The proof was accepted before (same `jti` under the same key).
    #[error("the DPoP proof was used before (jti replay); sign a new proof for every request")]
    Replayed,
    /// The proof is signed by another key than the token is bound to.
    #[error("the DPoP proof is signed by another key than the one the token is bound to")]
    KeyMismatch,
    /// The replay cache is full of proofs still within their window: this
    /// one could not be recorded, so it is not accepted (forgetting a live
    /// one would let it be replayed). A server answers 503 with
    /// `Retry-After` ([`ProofError::retry_after_secs`]).
    #[error(
        "the server remembers as many DPoP proofs as it can until older ones expire; try again in {retry_after_secs} s"
    )]
    ReplayCacheFull {
        /// Seconds until the first remembered proof expires.
        retry_after_secs: u64,
    },
}

impl ProofError {
    /// The OAuth error code for this error: `use_dpop_nonce` for a missing or
    /// stale nonce (RFC 9449 §8, §9), `invalid_token` for a proof by another
    /// key than the token's, `temporarily_unavailable` for a full replay
    /// cache, `invalid_dpop_proof` for every other.
    pub fn error_code(&self) -> &'static str {
        match self {
            ProofError::NonceMissing | ProofError::NonceStale => "use_dpop_nonce",
            ProofError::KeyMismatch => "invalid_token",
            ProofError::ReplayCacheFull { .. } => "temporarily_unavailable",
            _ => "invalid_dpop_proof",
        }
    }

    /// `Some(seconds)` when the proof was not refused for what it is but
    /// because the server is full ([`ProofError::ReplayCacheFull`]): answer
    /// `503 Service Unavailable` with `Retry-After: seconds`, not a 400 or a
    /// 401 challenge, so that the client tries again rather than giving up.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            ProofError::ReplayCacheFull { retry_after_secs } => Some(*retry_after_secs),
            _ => None,
        }
    }

    /// Does the client have to retry with the nonce of the `DPoP-Nonce` header?
    pub fn is_nonce_challenge(&self) -> bool {
        self.error_code() == "use_dpop_nonce"
    }

    /// The `WWW-Authenticate` value a resource server answers a 401 with
    /// (RFC 9449 §7.1): `DPoP error="…", error_description="…", algs="…"`.
    pub fn www_authenticate(&self) -> String {
        challenge(self.error_code(), &self.to_string())
    }
}

/// A `WWW-Authenticate` challenge of the DPoP scheme with `error` and its
/// description (quotes and backslashes in it replaced) and the accepted
/// algs: all of [`SUPPORTED_ALGS`] (see [`challenge_with_algs`] for fewer).
pub fn challenge(error: &str, description: &str) -> String {
    challenge_with_algs(error, description, SUPPORTED_ALGS)
}

/// [`challenge`] for a server that takes proofs signed with `algs` only.
///
/// ```
/// let value = sessionkit_mock_idp::dpop::challenge_with_algs("invalid_token", "expired", &["PS256"]);
/// assert_eq!(value, r#"DPoP error="invalid_token", error_description="expired", algs="PS256""#);
/// ```
pub fn challenge_with_algs<S: AsRef<str>>(error: &str, description: &str, algs: &[S]) -> String {
    let description: String = description
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect();
    let algs: Vec<&str> = algs.iter().map(AsRef::as_ref).collect();
    format!(
        "DPoP error=\"{error}\", error_description=\"{description}\", algs=\"{}\"",
        algs.join(" ")
    )
}

/// The request a proof is checked against. Built with [`ProofRequest::new`]
/// and the optional parts; see [`verify_proof`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct ProofRequest<'a> {
    method: &'a str,
    url: &'a str,
    proof: &'a str,
    access_token: Option<&'a str>,
    nonces: Option<&'a Nonces>,
    window_secs: i64,
    bound_to: Option<&'a str>,
    algs: Option<&'a [String]>,
}

impl<'a> ProofRequest<'a> {
    /// A request with `method` (`"POST"`) to `url` (absolute, as the client
    /// addresses the server; a query and fragment are ignored) that carries
    /// `proof`, the value of its `DPoP` header.
    pub fn new(method: &'a str, url: &'a str, proof: &'a str) -> Self {
        Self {
            method,
            url,
            proof,
            access_token: None,
            nonces: None,
            window_secs: DEFAULT_WINDOW_SECS,
            bound_to: None,
            algs: None,
        }
    }

    /// The thumbprint of the key the presented token is bound to (its
    /// `cnf.jkt`): a proof by another key is refused
    /// ([`ProofError::KeyMismatch`]) before it is recorded, so that a
    /// token without its key cannot fill the replay cache. (The same check
    /// as [`VerifiedProof::check_binding`], in its place in the order.)
    pub fn bound_to(mut self, jkt: &'a str) -> Self {
        self.bound_to = Some(jkt);
        self
    }

    /// The algorithms this server takes, fewer than [`SUPPORTED_ALGS`]: a
    /// proof signed with another is refused ([`ProofError::UnsupportedAlg`])
    /// before anything else is checked.
    pub fn algs(mut self, algs: &'a [String]) -> Self {
        self.algs = Some(algs);
        self
    }

    /// The access token presented with the proof: the proof must carry its
    /// hash in `ath`.
    pub fn access_token(mut self, token: &'a str) -> Self {
        self.access_token = Some(token);
        self
    }

    /// Requires the proof's `nonce` to be one `nonces` accepts now.
    pub fn require_nonce(mut self, nonces: &'a Nonces) -> Self {
        self.nonces = Some(nonces);
        self
    }

    /// How far (seconds) `iat` may be from `now`, either way (default
    /// [`DEFAULT_WINDOW_SECS`]). The replay cache remembers a proof for as
    /// long as this window keeps it acceptable.
    pub fn window(mut self, secs: u32) -> Self {
        self.window_secs = i64::from(secs);
        self
    }
}

/// A proof that passed every check of [`verify_proof`].
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedProof {
    jkt: String,
    jwk: Value,
    alg: String,
    jti: String,
    iat: i64,
}

impl VerifiedProof {
    /// The RFC 7638 thumbprint of the proof's key: what a token bound to
    /// this key carries as `cnf.jkt`.
    pub fn jkt(&self) -> &str {
        &self.jkt
    }
    /// The proof's public key, as it came.
    pub fn jwk(&self) -> &Value {
        &self.jwk
    }
    /// The proof's signature algorithm.
    pub fn alg(&self) -> &str {
        &self.alg
    }
    /// The proof's unique id.
    pub fn jti(&self) -> &str {
        &self.jti
    }
    /// When the proof was made (Unix seconds, the client's clock).
    pub fn iat(&self) -> i64 {
        self.iat
    }

    /// Checks that the proof is signed by the key a token is bound to
    /// (`bound_jkt`, the token's `cnf.jkt`).
    ///
    /// # Errors
    /// [`ProofError::KeyMismatch`] when it is another key.
    pub fn check_binding(&self, bound_jkt: &str) -> Result<(), ProofError> {
        if crate::params::constant_time_eq(self.jkt.as_bytes(), bound_jkt.as_bytes()) {
            Ok(())
        } else {
            Err(ProofError::KeyMismatch)
        }
    }
}

/// The value of the request's single `DPoP` header; `None` when there is none.
///
/// # Errors
/// [`ProofError::Repeated`] for more than one `DPoP` header;
/// [`ProofError::Malformed`] for a value that is not visible ASCII.
pub fn proof_header(headers: &http::HeaderMap) -> Result<Option<&str>, ProofError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ProofError::Repeated);
    }
    first
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| ProofError::Malformed("the DPoP header is not ASCII".to_owned()))
}

/// `ath`: the base64url SHA-256 of an access token, as a proof sent with
/// the token carries it.
pub fn access_token_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(crate::keys::sha256(access_token.as_bytes()))
}

/// Checks a DPoP proof against `request` at time `now` (Unix seconds, the
/// verifier's clock), and records it in `replay` when it passes, so that it
/// is accepted once. See the [module documentation](self) for the checks.
///
/// ```
/// use aws_lc_rs::rand::SystemRandom;
/// use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair as _, ECDSA_P256_SHA256_FIXED_SIGNING};
/// use base64::Engine as _;
/// use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
/// use sessionkit_mock_idp::dpop::{self, ProofError, ProofRequest, ReplayCache};
///
/// // The client: a P-256 key, and a proof for one request with a token.
/// let key = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
/// let point = key.public_key().as_ref();
/// let jwk = serde_json::json!({"kty": "EC", "crv": "P-256",
///     "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])});
/// let now = 1_700_000_000;
/// let header = serde_json::json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk});
/// let claims = serde_json::json!({"jti": "j-1", "htm": "GET", "iat": now,
///     "htu": "https://api.example/messages", "ath": dpop::access_token_hash("the-token")});
/// let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
/// let sig = key.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
/// let proof = format!("{input}.{}", B64.encode(sig.as_ref()));
///
/// // The server: the request's method, URL (the query is ignored) and token.
/// let replay = ReplayCache::default();
/// let request = ProofRequest::new("GET", "https://api.example/messages?after=7", &proof)
///     .access_token("the-token");
/// let checked = dpop::verify_proof(&request, now + 2, &replay).unwrap();
/// // The token must be bound to this key: its `cnf.jkt` is this thumbprint.
/// assert_eq!(checked.jkt(), dpop::jwk_thumbprint(&jwk).unwrap());
/// assert!(checked.check_binding(&dpop::jwk_thumbprint(&jwk).unwrap()).is_ok());
/// // The same proof again is a replay.
/// assert_eq!(dpop::verify_proof(&request, now + 3, &replay), Err(ProofError::Replayed));
/// ```
///
/// # Errors
/// The first check that fails, as a [`ProofError`].
pub fn verify_proof(
    request: &ProofRequest<'_>,
    now: i64,
    replay: &ReplayCache,
) -> Result<VerifiedProof, ProofError> {
    let proof = request.proof;
    if proof.is_empty() {
        return Err(ProofError::Missing);
    }
    if proof.len() > MAX_PROOF_BYTES {
        return Err(malformed("longer than 8 KiB"));
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("not a compact JWS of three parts"));
    };
    let header = json_part(h, "header")?;
    let claims = json_part(c, "claims")?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| malformed("the signature is not base64url"))?;

    // The header: typ, alg, jwk.
    let typ = header.get("typ").and_then(Value::as_str).unwrap_or("");
    if !typ.eq_ignore_ascii_case("dpop+jwt") && !typ.eq_ignore_ascii_case("application/dpop+jwt") {
        return Err(ProofError::WrongType(typ.to_owned()));
    }
    if header.contains_key("crit") {
        return Err(malformed(
            "the crit header names extensions this verifier lacks",
        ));
    }
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let taken = request
        .algs
        .is_none_or(|algs| algs.iter().any(|a| a == alg));
    if !SUPPORTED_ALGS.contains(&alg) || !taken {
        return Err(ProofError::UnsupportedAlg(alg.to_owned()));
    }
    let Some(jwk) = header.get("jwk").and_then(Value::as_object) else {
        return Err(ProofError::BadKey("the jwk header is missing".to_owned()));
    };
    let key = jwk::PublicKey::from_jwk(alg, jwk)?;
    let signed = &proof[..h.len() + 1 + c.len()];
    if !key.verifies(signed.as_bytes(), &signature) {
        return Err(ProofError::BadSignature);
    }
    let jwk = Value::Object(jwk.clone());
    let jkt = jwk_thumbprint(&jwk)?;

    // The claims: jti, htm, htu, iat, then ath and nonce.
    let text = |name: &str| {
        claims
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| malformed(&format!("the {name} claim is missing or not a string")))
    };
    let jti = text("jti")?;
    if jti.is_empty() || jti.len() > 512 {
        return Err(malformed("the jti claim must have 1 to 512 characters"));
    }
    let htm = text("htm")?;
    let htu = text("htu")?;
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n
            .as_i64()
            // A NumericDate may have a fraction (RFC 7519 §2).
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            }),
        _ => None,
    }
    .ok_or_else(|| malformed("the iat claim is missing or not a number"))?;
    if htm != request.method {
        return Err(ProofError::WrongMethod {
            expected: request.method.to_owned(),
            found: htm.chars().take(16).collect(),
        });
    }
    let expected = normalized_url(request.url)
        .ok_or_else(|| malformed("the request URL is not an absolute http(s) or ws(s) URL"))?;
    if normalized_url(htu).as_deref() != Some(expected.as_str()) {
        return Err(ProofError::WrongUrl {
            expected,
            found: htu.chars().take(256).collect(),
        });
    }
    let window = request.window_secs;
    if iat < now - window {
        return Err(ProofError::TooOld {
            age_secs: now.saturating_sub(iat),
        });
    }
    if iat > now + window {
        return Err(ProofError::FromTheFuture {
            ahead_secs: iat.saturating_sub(now),
        });
    }
    if let Some(token) = request.access_token {
        let ath = claims
            .get("ath")
            .and_then(Value::as_str)
            .ok_or(ProofError::MissingAth)?;
        if !crate::params::constant_time_eq(ath.as_bytes(), access_token_hash(token).as_bytes()) {
            return Err(ProofError::WrongAth);
        }
    }
    if let Some(nonces) = request.nonces {
        match claims.get("nonce").and_then(Value::as_str) {
            None => return Err(ProofError::NonceMissing),
            Some(nonce) if !nonces.accepts(nonce, now) => return Err(ProofError::NonceStale),
            Some(_) => {}
        }
    }
    if let Some(bound) = request.bound_to
        && !crate::params::constant_time_eq(jkt.as_bytes(), bound.as_bytes())
    {
        return Err(ProofError::KeyMismatch);
    }
    let replay_key = crate::keys::sha256(format!("{jkt}.{jti}").as_bytes());
    match replay.first_use(replay_key, iat.saturating_add(window), now) {
        Use::First => {}
        Use::Replayed => return Err(ProofError::Replayed),
        Use::Full { retry_after_secs } => {
            return Err(ProofError::ReplayCacheFull { retry_after_secs });
        }
    }
    Ok(VerifiedProof {
        jkt,
        jwk,
        alg: alg.to_owned(),
        jti: jti.to_owned(),
        iat,
    })
}

fn malformed(why: &str) -> ProofError {
    ProofError::Malformed(why.to_owned())
}

fn json_part(part: &str, what: &str) -> Result<Map<String, Value>, ProofError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| malformed(&format!("the {what} is not base64url")))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(malformed(&format!("the {what} is not a JSON object"))),
    }
}

/// `url` without query and fragment, normalised for comparison (RFC 3986
/// §6.2.2–6.2.3): scheme and host lower-case, default port left out, dot
/// segments removed, an empty path as `/`, percent-encodings of unreserved
/// characters decoded and the rest in upper-case hex. `None` unless it is an
/// absolute `http`, `https`, `ws` or `wss` URL. The WebSocket schemes are
/// kept as they are (RFC 6455 §3): a proof for a handshake names the URL
/// the client dialled, `ws://host/path`, and is no proof for
/// `http://host/path` (nor the other way round).
pub(crate) fn normalized_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    if !matches!(parsed.scheme(), "http" | "https" | "ws" | "wss") {
        return None;
    }
    let host = parsed.host_str()?;
    let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!(
        "{}://{host}{port}{}",
        parsed.scheme(),
        normalize_percent(parsed.path())
    ))
}

fn normalize_percent(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            )
        {
            let decoded = (hi * 16 + lo) as u8;
            if decoded.is_ascii_alphanumeric() || matches!(decoded, b'-' | b'.' | b'_' | b'~') {
                out.push(decoded as char);
            } else {
                out.push_str(&format!("%{decoded:02X}"));
            }
            i += 3;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests;
