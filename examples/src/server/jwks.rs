//! Signature checks against the issuer's JWKS.
//!
//! The key set is found through the issuer's discovery document
//! (`{issuer}/.well-known/openid-configuration` → `jwks_uri`) and fetched
//! lazily, at the first token that needs it, so the server starts even while
//! the provider is still down. A token signed with a key id that is not in
//! the cached set makes the server fetch the set again, at most once per
//! [`ServerConfig::jwks_refetch_interval`](super::ServerConfig::jwks_refetch_interval).
//!
//! Only asymmetric algorithms are accepted (RSA, RSA-PSS, ECDSA, EdDSA), and
//! only with a published key of the matching type: never `none`, never an
//! HMAC (whose "key" would be public), never a key embedded in the token.

use std::sync::Arc;
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

/// A published key, ready to verify.
struct Key {
    kid: Option<String>,
    /// The algorithm the JWK is restricted to, if it says.
    alg: Option<Algorithm>,
    /// The algorithms its type can verify.
    algs: &'static [Algorithm],
    key: DecodingKey,
}

#[derive(Default)]
struct Cache {
    jwks_uri: Option<String>,
    keys: Arc<Vec<Key>>,
    fetched_at: Option<Instant>,
}

/// Verifies JWT signatures with the issuer's published keys.
pub(crate) struct Verifier {
    issuer: String,
    http: reqwest::Client,
    refetch_interval: Duration,
    cache: Mutex<Cache>,
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

/// Whether the JOSE `typ` is one of `accepted` (compared without case and
/// without an `application/` prefix, RFC 7515 §4.1.9); a missing `typ` is
/// accepted too.
pub(crate) fn typ_accepted(typ: Option<&str>, accepted: &[&str]) -> bool {
    typ.is_none_or(|typ| {
        let lower = typ.to_ascii_lowercase();
        let bare = lower.strip_prefix("application/").unwrap_or(&lower);
        accepted.iter().any(|a| a.eq_ignore_ascii_case(bare))
    })
}

/// Whether a fetch for an unknown key id may happen now.
pub(crate) fn may_refetch(fetched_at: Option<Instant>, now: Instant, interval: Duration) -> bool {
    fetched_at.is_none_or(|at| now.saturating_duration_since(at) >= interval)
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
    /// A verifier for `issuer` whose HTTP calls use `http`.
    pub(crate) fn new(issuer: &str, http: reqwest::Client, refetch_interval: Duration) -> Self {
        Self {
            issuer: issuer.trim_end_matches('/').to_owned(),
            http,
            refetch_interval,
            cache: Mutex::new(Cache::default()),
        }
    }

    /// Checks the signature of `token` (whose `typ`, if any, must be one of
    /// `typs`) and returns its claims. The claims themselves are not checked
    /// here; see `claims`.
    pub(crate) async fn verify(&self, token: &str, typs: &[&str]) -> Result<Claims, VerifyError> {
        let invalid = |why: &str| VerifyError::Invalid(why.to_owned());
        let header: Header =
            jsonwebtoken::decode_header(token).map_err(|_| invalid("malformed token header"))?;
        if !allowed(header.alg) {
            return Err(invalid("signing algorithm not allowed"));
        }
        if !typ_accepted(header.typ.as_deref(), typs) {
            return Err(invalid("unexpected token type"));
        }
        let keys = self.keys_for(header.kid.as_deref(), header.alg).await?;
        let mut validation = Validation::new(header.alg);
        // Only the signature here: the claims are checked by `claims`.
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let candidates = keys
            .iter()
            .filter(|k| Self::fits(k, header.kid.as_deref(), header.alg));
        for key in candidates {
            if let Ok(data) = jsonwebtoken::decode::<Claims>(token, &key.key, &validation) {
                return Ok(data.claims);
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

    /// The cached keys, fetched first if there are none yet, or again if
    /// none fits `kid` and the last fetch is old enough.
    async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<Vec<Key>>, VerifyError> {
        let mut cache = self.cache.lock().await;
        let fits = |keys: &[Key]| keys.iter().any(|k| Self::fits(k, kid, alg));
        if cache.fetched_at.is_some() && fits(&cache.keys) {
            return Ok(cache.keys.clone());
        }
        if cache.fetched_at.is_none()
            || may_refetch(cache.fetched_at, Instant::now(), self.refetch_interval)
        {
            self.fetch(&mut cache).await?;
        }
        if fits(&cache.keys) {
            Ok(cache.keys.clone())
        } else {
            Err(VerifyError::Invalid("unknown signing key".to_owned()))
        }
    }

    async fn fetch(&self, cache: &mut Cache) -> Result<(), VerifyError> {
        let jwks_uri = match &cache.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let doc = self.get_json(&url).await?;
                if doc.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
                    return Err(VerifyError::Unavailable(
                        "the discovery document names another issuer".to_owned(),
                    ));
                }
                let uri = doc
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        VerifyError::Unavailable(
                            "the discovery document has no jwks_uri".to_owned(),
                        )
                    })?
                    .to_owned();
                cache.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let doc = self.get_json(&jwks_uri).await?;
        let keys = parse_jwks(&doc).map_err(VerifyError::Unavailable)?;
        tracing::debug!(keys = keys.len(), "fetched the issuer's JWKS");
        cache.keys = Arc::new(keys);
        cache.fetched_at = Some(Instant::now());
        Ok(())
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
        let verifier = Verifier::new("http://127.0.0.1:9", reqwest::Client::new(), Duration::ZERO);
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
}
