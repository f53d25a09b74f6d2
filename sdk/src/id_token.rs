//! ID-token checks (OpenID Connect Core §3.1.3.7), through openidconnect's
//! verifier with the settings this SDK insists on: an allow-list of
//! asymmetric algorithms (never `none`, never HMAC — so a token "signed" with
//! the provider's public key as an HMAC secret is refused), `iss`, `aud`,
//! `azp`, `exp` and `iat` with a clock skew, `nonce`, `at_hash`; and, for a
//! refreshed ID token, the same `iss` and `sub` as before.
//!
//! [`verify_with_keys`] is a pure function (keys and clock passed in);
//! [`verify`] adds the provider: on a `kid` the cached JWKS lacks, it fetches
//! the JWKS again (rate limited) and tries once more.

use std::str::FromStr as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessTokenHash, ClaimsVerificationError, ClientId, IssuerUrl, SignatureVerificationError,
};
use serde_json::Value;

use crate::error::{IdTokenError, Result};
use crate::provider::Provider;
use crate::secret::{AccessToken, IdToken, Nonce};

/// The algorithms an ID token may be signed with. Asymmetric only.
pub const ALLOWED_ALGS: &[CoreJwsSigningAlgorithm] = &[
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

/// What an ID token must say to be accepted.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The issuer, exactly.
    pub issuer: &'a str,
    /// This client's id: must be an audience, and the `azp` when there are several.
    pub client_id: &'a str,
    /// The nonce sent with the authorization request; `None` for a refreshed
    /// ID token (which carries none, or the original).
    pub nonce: Option<&'a Nonce>,
    /// The access token that came with it; its hash must match `at_hash` when present.
    pub access_token: Option<&'a AccessToken>,
    /// For a refreshed ID token: the `sub` of the session's earlier ID token.
    pub previous_sub: Option<&'a str>,
    /// How far the clocks may disagree (default 60 s).
    pub clock_skew: Duration,
    /// Now, as the checks see it.
    pub now: SystemTime,
}

/// The claims of an accepted ID token.
#[derive(Debug, Clone, PartialEq)]
pub struct IdClaims {
    /// Issuer.
    pub iss: String,
    /// Subject: the account.
    pub sub: String,
    /// Expiry (Unix seconds).
    pub exp: i64,
    /// Issued at (Unix seconds).
    pub iat: i64,
    /// The provider's session id, when it sends one.
    pub sid: Option<String>,
    /// A display name: `name`, else `preferred_username`, else `email`, else `sub`.
    pub display_name: String,
    /// A short name the user can type: `preferred_username`, else `email`.
    pub username: Option<String>,
    /// Every claim, as sent.
    pub all: Value,
}

fn payload(token: &str) -> std::result::Result<Value, IdTokenError> {
    let part = token
        .split('.')
        .nth(1)
        .ok_or_else(|| IdTokenError::Malformed("not a compact JWS".to_owned()))?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|e| IdTokenError::Malformed(format!("payload: {e}")))?;
    serde_json::from_slice(&bytes).map_err(|e| IdTokenError::Malformed(format!("payload: {e}")))
}

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn claim_error(err: ClaimsVerificationError) -> IdTokenError {
    use ClaimsVerificationError as C;
    let claim = |claim: &'static str, reason: String| IdTokenError::Claim { claim, reason };
    match err {
        // openidconnect reports a refused `iat` as Expired, with our message.
        C::Expired(m) if m.starts_with("iat ") => claim("iat", m),
        C::Expired(m) => claim("exp", m),
        C::InvalidAudience(m) => claim("aud", m),
        C::InvalidIssuer(m) => claim("iss", m),
        C::InvalidNonce(m) => claim("nonce", m),
        C::InvalidSubject(m) => claim("sub", m),
        C::InvalidAuthTime(m) => claim("auth_time", m),
        C::SignatureVerification(SignatureVerificationError::NoMatchingKey) => {
            IdTokenError::UnknownKey
        }
        C::SignatureVerification(e) => IdTokenError::Signature(e.to_string()),
        C::Other(m) if m.contains("azp") || m.contains("authorized party") => claim("azp", m),
        other => IdTokenError::Malformed(other.to_string()),
    }
}

/// Checks an ID token against `keys` and the expectations. Pure: no I/O.
pub fn verify_with_keys(
    token: &IdToken,
    keys: &CoreJsonWebKeySet,
    expect: &Expectations<'_>,
) -> std::result::Result<IdClaims, IdTokenError> {
    let parsed = CoreIdToken::from_str(token.secret())
        .map_err(|e| IdTokenError::Malformed(e.to_string()))?;
    let issuer = IssuerUrl::new(expect.issuer.to_owned())
        .map_err(|e| IdTokenError::Malformed(e.to_string()))?;
    let now = expect.now;
    let skew = expect.clock_skew;
    let now_secs = unix(now);
    let skew_secs = i64::try_from(skew.as_secs()).unwrap_or(i64::MAX / 2);
    // `exp` is compared with this time: a token is accepted until exp + skew.
    let lenient_now = chrono_from_unix(now_secs.saturating_sub(skew_secs));
    let verifier = CoreIdTokenVerifier::new_public_client(
        ClientId::new(expect.client_id.to_owned()),
        issuer,
        keys.clone(),
    )
    .set_allowed_algs(ALLOWED_ALGS.iter().cloned())
    .set_time_fn(move || lenient_now)
    .set_issue_time_verifier_fn(move |iat| {
        if iat.timestamp() > now_secs.saturating_add(skew_secs) {
            Err(format!(
                "iat is {}s in the future",
                iat.timestamp() - now_secs
            ))
        } else {
            Ok(())
        }
    });
    let nonce_check = |found: Option<&openidconnect::Nonce>| -> std::result::Result<(), String> {
        match (expect.nonce, found) {
            (Some(want), Some(got)) => {
                let same = crate::secret::sha256(want.secret().as_bytes())
                    == crate::secret::sha256(got.secret().as_bytes());
                if same {
                    Ok(())
                } else {
                    Err("nonce mismatch".to_owned())
                }
            }
            (Some(_), None) => Err("nonce missing".to_owned()),
            (None, _) => Ok(()),
        }
    };
    let claims = parsed.claims(&verifier, nonce_check).map_err(claim_error)?;
    if let (Some(access), Some(expected_hash)) = (expect.access_token, claims.access_token_hash()) {
        let alg = parsed
            .signing_alg()
            .map_err(|e| IdTokenError::Signature(e.to_string()))?;
        let key = parsed
            .signing_key(&verifier)
            .map_err(|e| IdTokenError::Signature(e.to_string()))?;
        let actual = AccessTokenHash::from_token(
            &openidconnect::AccessToken::new(access.secret().to_owned()),
            alg,
            key,
        )
        .map_err(|e| IdTokenError::Signature(e.to_string()))?;
        if actual != *expected_hash {
            return Err(IdTokenError::Claim {
                claim: "at_hash",
                reason: "does not match the access token".to_owned(),
            });
        }
    }
    let all = payload(token.secret())?;
    let sub = claims.subject().as_str().to_owned();
    if let Some(previous) = expect.previous_sub
        && previous != sub
    {
        return Err(IdTokenError::Claim {
            claim: "sub",
            reason: "a refreshed ID token names another subject".to_owned(),
        });
    }
    let text = |k: &str| all.get(k).and_then(Value::as_str).map(str::to_owned);
    let display_name = text("name")
        .or_else(|| text("preferred_username"))
        .or_else(|| text("email"))
        .unwrap_or_else(|| sub.clone());
    Ok(IdClaims {
        iss: claims.issuer().as_str().to_owned(),
        sub,
        exp: claims.expiration().timestamp(),
        iat: claims.issue_time().timestamp(),
        sid: text("sid"),
        display_name,
        username: text("preferred_username").or_else(|| text("email")),
        all,
    })
}

fn chrono_from_unix(secs: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Checks an ID token with the provider's keys, fetching the JWKS again
/// (rate limited) and retrying once when the token's key is not in the cache.
pub async fn verify(
    provider: &Provider,
    token: &IdToken,
    expect: &Expectations<'_>,
) -> Result<IdClaims> {
    match verify_with_keys(token, &provider.jwks(), expect) {
        Err(IdTokenError::UnknownKey) => {
            if provider.refetch_jwks().await? {
                Ok(verify_with_keys(token, &provider.jwks(), expect)?)
            } else {
                Err(IdTokenError::UnknownKey.into())
            }
        }
        other => Ok(other?),
    }
}
