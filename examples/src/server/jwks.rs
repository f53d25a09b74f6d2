//! Signature checks against the issuer's JWKS.
//!
//! The key set is found through the issuer's discovery document
//! (`{issuer}/.well-known/openid-configuration` → `jwks_uri`) and fetched
//! lazily, at the first token that needs it, so the server starts even while
//! the provider is still down.
//!
//! Fetching never stands in the way of tokens the cached keys can check: the
//! keys are a snapshot that readers copy out of a lock held only for that
//! copy, and fetches are serialized by a separate lock (single flight). A
//! token signed with a key id that is not cached waits for a fetch; a token
//! whose key is cached never does.
//!
//! Fetches are rate limited on the last *attempt*, failed or not: at most one
//! per [`ServerConfig::jwks_refetch_interval`](super::ServerConfig::jwks_refetch_interval),
//! so tokens with made-up key ids cannot make the server hammer the provider,
//! even while the provider fails or hangs. Keys are trusted for at most
//! [`ServerConfig::jwks_max_age`](super::ServerConfig::jwks_max_age): the
//! first token checked after that refetches the set (tokens checked
//! meanwhile use the old set), so a key removed at the provider stops being
//! trusted. When that refetch fails the old set stays in use until one
//! succeeds.
//!
//! Only asymmetric algorithms are accepted (RSA, RSA-PSS, ECDSA, EdDSA), and
//! only with a published key of the matching type: never `none`, never an
//! HMAC (whose "key" would be public), never a key embedded in the token.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::Value;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::claims::Claims;

/// Why a token's signature could not be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum VerifyError {
    /// The token is malformed, signed wrongly, or with an unknown key.
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The provider's keys could not be fetched; try again later.
    #[error("the provider's keys are unavailable: {0}")]
    Unavailable(String),
}

/// A token whose signature checked out.
#[derive(Debug, Clone)]
pub(crate) struct Verified {
    /// The JOSE `typ` of its header, lower case, without `application/`
    /// (`None` when the header has none).
    pub(crate) typ: Option<String>,
    /// Its claims, not checked yet (see `claims`).
    pub(crate) claims: Claims,
}

/// A published key, ready to verify.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWK is restricted to, if it says.
    alg: Option<Algorithm>,
    /// The algorithms its type can verify.
    algs: &'static [Algorithm],
    key: DecodingKey,
}

/// The keys of one successful fetch.
struct KeySet {
    keys: Vec<Key>,
    fetched_at: Instant,
}

/// What the single-flight fetcher remembers.
#[derive(Default)]
struct FetchState {
    /// From the discovery document, once read.
    jwks_uri: Option<String>,
    /// When the last fetch started, whatever came of it.
    attempted_at: Option<Instant>,
    /// Why the last fetch failed, if it did.
    last_error: Option<VerifyError>,
}

/// Verifies JWT signatures with the issuer's published keys.
pub(crate) struct Verifier {
    /// The issuer exactly as configured: the discovery document must name it.
    issuer: String,
    /// `{issuer without a trailing slash}/.well-known/openid-configuration`.
    discovery_url: String,
    http: reqwest::Client,
    refetch_interval: Duration,
    max_age: Duration,
    /// The keys in use; the lock is held only to copy the `Arc` in or out.
    current: Arc<RwLock<Option<Arc<KeySet>>>>,
    /// Held for the whole of a fetch, so there is one at a time.
    fetch: Mutex<FetchState>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// The algorithms that may sign tokens: asymmetric only.
fn allowed(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
            | Algorithm::ES256
            | Algorithm::ES384
            | Algorithm::EdDSA
    )
}

/// A JOSE `typ` compared the way RFC 7515 §4.1.9 says: without case and
/// without an `application/` prefix.
pub(crate) fn normalize_typ(typ: &str) -> String {
    let lower = typ.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(bare) => bare.to_owned(),
        None => lower,
    }
}

/// Whether the JOSE `typ` is one of `accepted` (see [`normalize_typ`]). A
/// missing `typ` counts as the generic `jwt`, so it is accepted only where
/// `jwt` is.
pub(crate) fn typ_accepted(typ: Option<&str>, accepted: &[&str]) -> bool {
    let typ = typ.map_or_else(|| "jwt".to_owned(), normalize_typ);
    accepted.iter().any(|a| a.eq_ignore_ascii_case(&typ))
}

/// Whether a fetch may start now, given when the last one started.
pub(crate) fn may_refetch(attempted_at: Option<Instant>, now: Instant, interval: Duration) -> bool {
    attempted_at.is_none_or(|at| now.saturating_duration_since(at) >= interval)
}

/// Turns a JWK into a verification key, or `None` for keys that may not
/// sign (symmetric, encryption-only, unknown types).
fn to_key(jwk: &Jwk) -> Option<Key> {
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return None;
    }
    let algs: &'static [Algorithm] = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ],
        AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
            EllipticCurve::P256 => &[Algorithm::ES256],
            EllipticCurve::P384 => &[Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        _ => return None,
    };
    let alg = match jwk.common.key_algorithm {
        Some(alg) => Some(alg.to_string().parse::<Algorithm>().ok()?),
        None => None,
    };
    if alg.is_some_and(|a| !algs.contains(&a)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        algs,
        key,
    })
}

/// The usable keys of a JWKS document; keys that cannot sign, or that this
/// library cannot parse, are skipped rather than spoiling the whole set.
fn parse_jwks(doc: &Value) -> Result<Vec<Key>, String> {
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("the JWKS has no `keys` array")?;
    Ok(keys
        .iter()
        .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
        .filter_map(|jwk| to_key(&jwk))
        .collect())
}

impl Verifier {
    /// A verifier for `issuer` (compared exactly with the discovery
    /// document's `issuer`) whose HTTP calls use `http`: at most one fetch
    /// per `refetch_interval`, and keys trusted for at most `max_age`.
    pub(crate) fn new(
        issuer: &str,
        http: reqwest::Client,
        refetch_interval: Duration,
        max_age: Duration,
    ) -> Self {
        Self {
            issuer: issuer.to_owned(),
            discovery_url: format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ),
            http,
            refetch_interval,
            max_age,
            current: Arc::default(),
            fetch: Mutex::new(FetchState::default()),
        }
    }

    /// Checks the signature of `token` (whose `typ` must be one of `typs`,
    /// see [`typ_accepted`]) and returns its claims. The claims themselves
    /// are not checked here; see `claims`.
    pub(crate) async fn verify(&self, token: &str, typs: &[&str]) -> Result<Verified, VerifyError> {
        let invalid = |why: &str| VerifyError::Invalid(why.to_owned());
        let header: Header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token header"))?;
        if !allowed(header.alg) {
            return Err(invalid("signing algorithm not allowed"));
        }
        if !typ_accepted(header.typ.as_deref(), typs) {
            return Err(invalid("unexpected token type"));
        }
        let set = self.keys_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        // Only the signature here: the claims are checked by `claims`.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let candidates = set
            .keys
            .iter()
            .filter(|k| Self::fits(k, header.kid.as_deref(), header.alg));
        for key in candidates {
            if let Ok(data) = jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                return Ok(Verified {
                    typ: header.typ.as_deref().map(normalize_typ),
                    claims: data.claims,
                });
            }
        }
        Err(invalid("bad signature"))
    }

    fn fits(key: &Key, kid: Option<&str>, alg: Algorithm) -> bool {
        let kid_ok = match kid {
            Some(kid) => key.kid.as_deref() == Some(kid),
            None => true,
        };
        kid_ok && key.algs.contains(&alg) && key.alg.is_none_or(|a| a == alg)
    }

    /// The keys in use now, without waiting for anything.
    fn current(&self) -> Option<Arc<KeySet>> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The key set to check a token with: the cached one when a key fits and
    /// it is young enough; otherwise after a fetch, if one may happen now.
    async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<KeySet>, VerifyError> {
        let fits = |set: &KeySet| set.keys.iter().any(|k| Self::fits(k, kid, alg));
        let fresh =
            |set: &KeySet| Instant::now().saturating_duration_since(set.fetched_at) < self.max_age;
        if let Some(set) = self.current()
            && fits(&set)
        {
            if fresh(&set) {
                return Ok(set);
            }
            // Too old: one token refetches; the others go on with the old
            // keys meanwhile rather than wait.
            let Ok(mut state) = self.fetch.try_lock() else {
                return Ok(set);
            };
            // A fetch may have finished since `set` was read.
            if let Some(newer) = self.current()
                && fresh(&newer)
            {
                return if fits(&newer) {
                    Ok(newer)
                } else {
                    Err(VerifyError::Invalid(
                        "the signing key is no longer published".to_owned(),
                    ))
                };
            }
            if !may_refetch(state.attempted_at, Instant::now(), self.refetch_interval) {
                return Ok(set);
            }
            return match self.fetch_now(&mut state).await {
                Ok(new) if fits(&new) => Ok(new),
                Ok(_) => Err(VerifyError::Invalid(
                    "the signing key is no longer published".to_owned(),
                )),
                // The provider is down: the keys it published last stay in use.
                Err(_) => Ok(set),
            };
        }
        // No key fits (or none fetched yet): wait for the fetch in flight, if any.
        let mut state = self.fetch.lock().await;
        let cached = self.current();
        if let Some(set) = &cached
            && fits(set)
        {
            return Ok(set.clone());
        }
        if !may_refetch(state.attempted_at, Instant::now(), self.refetch_interval) {
            return Err(match (&cached, &state.last_error) {
                (None, Some(error)) => error.clone(),
                (None, None) => VerifyError::Unavailable("the keys are being fetched".to_owned()),
                (Some(_), _) => VerifyError::Invalid("unknown signing key".to_owned()),
            });
        }
        let set = self.fetch_now(&mut state).await?;
        if fits(&set) {
            Ok(set)
        } else {
            Err(VerifyError::Invalid("unknown signing key".to_owned()))
        }
    }

    /// Fetches the key set (the discovery document first, once) and makes
    /// it the current one. The attempt counts for the rate limit whatever
    /// comes of it. The fetch runs as a task of its own, so that when the
    /// request that caused it goes away, the keys it brings are kept anyway.
    async fn fetch_now(&self, state: &mut FetchState) -> Result<Arc<KeySet>, VerifyError> {
        state.attempted_at = Some(Instant::now());
        let fetch = Fetch {
            http: self.http.clone(),
            issuer: self.issuer.clone(),
            discovery_url: self.discovery_url.clone(),
            jwks_uri: state.jwks_uri.clone(),
            current: self.current.clone(),
        };
        let (jwks_uri, result) = tokio::spawn(fetch.run()).await.unwrap_or_else(|e| {
            let why = format!("the key fetch failed: {e}");
            (None, Err(VerifyError::Unavailable(why)))
        });
        if jwks_uri.is_some() {
            state.jwks_uri = jwks_uri;
        }
        state.last_error = result.as_ref().err().cloned();
        result
    }
}

/// One fetch of the key set, owning all it needs.
struct Fetch {
    http: reqwest::Client,
    issuer: String,
    discovery_url: String,
    /// Known already, or `None` to read the discovery document first.
    jwks_uri: Option<String>,
    current: Arc<RwLock<Option<Arc<KeySet>>>>,
}

impl Fetch {
    /// Fetches the keys and, when that works, makes them the current set.
    /// Returns the `jwks_uri` (when known) and the new set.
    async fn run(self) -> (Option<String>, Result<Arc<KeySet>, VerifyError>) {
        let jwks_uri = match self.jwks_uri.clone() {
            Some(uri) => uri,
            None => match self.discover().await {
                Ok(uri) => uri,
                Err(error) => return (None, Err(error)),
            },
        };
        let keys = match self.get_json(&jwks_uri).await {
            Ok(doc) => parse_jwks(&doc).map_err(VerifyError::Unavailable),
            Err(error) => Err(error),
        };
        let result = keys.map(|keys| {
            tracing::debug!(keys = keys.len(), "fetched the issuer's JWKS");
            let set = Arc::new(KeySet {
                keys,
                fetched_at: Instant::now(),
            });
            *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(set.clone());
            set
        });
        (Some(jwks_uri), result)
    }

    /// The `jwks_uri` of the discovery document, which must name the
    /// configured issuer exactly.
    async fn discover(&self) -> Result<String, VerifyError> {
        let doc = self.get_json(&self.discovery_url).await?;
        if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(VerifyError::Unavailable(
                "the discovery document names another issuer".to_owned(),
            ));
        }
        doc.get("jwks_uri")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                VerifyError::Unavailable("the discovery document has no jwks_uri".to_owned())
            })
    }

    async fn get_json(&self, url: &str) -> Result<Value, VerifyError> {
        let unavailable = |e: reqwest::Error| {
            tracing::warn!(%url, error = %e.without_url(), "cannot fetch from the issuer");
            VerifyError::Unavailable(format!("GET {url} failed"))
        };
        let response = self.http.get(url).send().await.map_err(unavailable)?;
        let response = response.error_for_status().map_err(unavailable)?;
        response.json::<Value>().await.map_err(unavailable)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn typ_is_compared_loosely_and_may_be_missing() {
        let at = ["at+jwt", "jwt"];
        assert!(typ_accepted(Some("at+jwt"), &at));
        assert!(typ_accepted(Some("application/at+jwt"), &at));
        assert!(typ_accepted(Some("JWT"), &at));
        assert!(typ_accepted(None, &at));
        assert!(!typ_accepted(Some("logout+jwt"), &at));
        assert!(!typ_accepted(Some("application/jose"), &at));
    }

    #[test]
    fn only_asymmetric_algorithms_are_allowed() {
        assert!(allowed(Algorithm::RS256));
        assert!(allowed(Algorithm::ES256));
        assert!(allowed(Algorithm::PS256));
        assert!(!allowed(Algorithm::HS256));
        assert!(!allowed(Algorithm::HS512));
    }

    #[test]
    fn refetch_is_rate_limited() {
        let now = Instant::now();
        let interval = Duration::from_secs(10);
        assert!(may_refetch(None, now, interval));
        assert!(!may_refetch(Some(now), now, interval));
        assert!(!may_refetch(
            Some(now),
            now + Duration::from_secs(9),
            interval
        ));
        assert!(may_refetch(Some(now), now + interval, interval));
    }

    #[test]
    fn symmetric_and_encryption_keys_are_skipped() {
        let doc = json!({"keys": [
            {"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"},
            {"kty": "EC", "crv": "P-256", "use": "enc", "kid": "e",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "use": "sig", "kid": "s", "alg": "ES256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "EC", "crv": "P-256", "kid": "mismatch", "alg": "RS256",
             "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
            {"kty": "weird", "kid": "w"},
        ]});
        let keys = parse_jwks(&doc).expect("parses");
        let kids: Vec<_> = keys.iter().filter_map(|k| k.kid.as_deref()).collect();
        assert_eq!(kids, ["s"]);
        assert!(Verifier::fits(&keys[0], Some("s"), Algorithm::ES256));
        assert!(!Verifier::fits(&keys[0], Some("s"), Algorithm::ES384));
        assert!(!Verifier::fits(&keys[0], Some("x"), Algorithm::ES256));
        assert!(parse_jwks(&json!({})).is_err());
    }

    #[tokio::test]
    async fn none_and_hmac_tokens_are_refused_before_any_fetch() {
        // The issuer is unreachable: reaching the network would give `Unavailable`.
        let verifier = Verifier::new(
            "http://127.0.0.1:9",
            reqwest::Client::new(),
            Duration::ZERO,
            Duration::from_secs(600),
        );
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJhbGljZSJ9.";
        assert!(matches!(
            verifier.verify(none, &["jwt"]).await,
            Err(VerifyError::Invalid(_))
        ));
        let hmac = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "alice"}),
            &jsonwebtoken::EncodingKey::from_secret(b"public").expect("key"),
        )
        .expect("sign");
        assert!(matches!(
            verifier.verify(&hmac, &["jwt"]).await,
            Err(VerifyError::Invalid(_))
        ));
        assert!(matches!(
            verifier.verify("garbage", &["jwt"]).await,
            Err(VerifyError::Invalid(_))
        ));
    }

    /// A provider whose discovery document names `issuer` (which ends in a
    /// slash) and points at `idp`'s JWKS.
    async fn slash_issuer(idp: &sessionkit_mock_idp::MockIdp) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}/", listener.local_addr().expect("addr"));
        let doc = json!({"issuer": issuer, "jwks_uri": idp.url("/jwks")});
        let app = axum::Router::new().route(
            "/.well-known/openid-configuration",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc) }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        issuer
    }

    #[tokio::test]
    async fn an_issuer_with_a_trailing_slash_is_compared_exactly() {
        let idp = sessionkit_mock_idp::MockIdp::builder()
            .start()
            .await
            .expect("idp");
        let issuer = slash_issuer(&idp).await;
        let now = idp.control().now();
        let claims = json!({
            "iss": issuer, "aud": "chat-server", "sub": "alice", "exp": now + 60, "iat": now,
        });
        let token = idp
            .control()
            .sign_jwt(sessionkit_mock_idp::Alg::RS256, "at+jwt", &claims);
        let max_age = Duration::from_secs(600);
        let verifier = Verifier::new(&issuer, reqwest::Client::new(), Duration::ZERO, max_age);
        let verified = verifier
            .verify(&token, &["at+jwt"])
            .await
            .expect("the discovery document names the configured issuer");
        // The same string the claims are checked against.
        let access = super::super::claims::check_access(
            &verified.claims,
            verified.typ.as_deref(),
            &issuer,
            "chat-server",
            now,
        )
        .expect("iss is the configured issuer");
        assert_eq!(access.sub, "alice");

        // Configured without the slash, it is another issuer.
        let other = Verifier::new(
            issuer.trim_end_matches('/'),
            reqwest::Client::new(),
            Duration::ZERO,
            max_age,
        );
        assert!(matches!(
            other.verify(&token, &["at+jwt"]).await,
            Err(VerifyError::Unavailable(_))
        ));
    }

    #[test]
    fn a_missing_typ_is_the_generic_one() {
        assert!(!typ_accepted(None, &["logout+jwt"]));
        assert!(!typ_accepted(Some("JWT"), &["logout+jwt"]));
        assert!(typ_accepted(Some("Logout+JWT"), &["logout+jwt"]));
        assert!(typ_accepted(
            Some("application/logout+jwt"),
            &["logout+jwt"]
        ));
        assert_eq!(normalize_typ("application/AT+JWT"), "at+jwt");
    }
}
