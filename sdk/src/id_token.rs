//! ID-token checks (OpenID Connect Core §3.1.3.7) with the settings this SDK
//! insists on: an allow-list of asymmetric algorithms (never `none`, never
//! HMAC — so a token "signed" with the provider's public key as an HMAC
//! secret is refused), `iss`, `aud` (a token for several audiences is
//! refused, so `azp` never has to choose between them), `exp` and `iat` with
//! a clock skew, `nonce`, `at_hash`; and, for a refreshed ID token, the same
//! `sub` as before.
//!
//! The signature is verified with aws-lc-rs against keys parsed once per JWKS
//! ([`Jwks`], in `jws`); the claim rules are the ones openidconnect's
//! verifier applied before, kept message for message. [`verify_with_keys`]
//! is a pure function (keys and clock passed in); [`verify`] adds the
//! provider: on a `kid` the cached JWKS lacks, it fetches the JWKS again
//! (rate limited) and tries once more.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openidconnect::core::CoreJwsSigningAlgorithm;
use serde_json::Value;

use crate::error::{IdTokenError, Result};
pub use crate::jws::Jwks;
use crate::jws::{Alg, Compact};
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
#[non_exhaustive]
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

fn unix(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

fn claim(claim: &'static str, reason: impl Into<String>) -> IdTokenError {
    IdTokenError::Claim {
        claim,
        reason: reason.into(),
    }
}

fn malformed(reason: impl Into<String>) -> IdTokenError {
    IdTokenError::Malformed(reason.into())
}

/// A required string claim.
fn required_str<'v>(all: &'v Value, name: &str) -> std::result::Result<&'v str, IdTokenError> {
    match all.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(malformed(format!("claim `{name}` is not a string"))),
        None => Err(malformed(format!("missing field `{name}`"))),
    }
}

/// An optional string claim.
fn optional_str<'v>(
    all: &'v Value,
    name: &str,
) -> std::result::Result<Option<&'v str>, IdTokenError> {
    match all.get(name) {
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Null) | None => Ok(None),
        Some(_) => Err(malformed(format!("claim `{name}` is not a string"))),
    }
}

/// A required NumericDate claim, in (possibly fractional) Unix seconds.
fn required_time(all: &Value, name: &str) -> std::result::Result<f64, IdTokenError> {
    match all.get(name) {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| malformed(format!("claim `{name}` is out of range"))),
        Some(_) => Err(malformed(format!("claim `{name}` is not a number"))),
        None => Err(malformed(format!("missing field `{name}`"))),
    }
}

/// `aud`: one string or an array of strings.
fn audiences(all: &Value) -> std::result::Result<Vec<&str>, IdTokenError> {
    match all.get("aud") {
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| malformed("claim `aud` holds a non-string"))
            })
            .collect(),
        Some(_) => Err(malformed("claim `aud` is neither a string nor an array")),
        None => Err(malformed("missing field `aud`")),
    }
}

fn format_time(secs: f64) -> String {
    // Whole seconds are what providers send; show them as a date.
    #[allow(clippy::cast_possible_truncation)]
    let whole = secs.floor() as i64;
    chrono::DateTime::from_timestamp(whole, 0).map_or_else(|| secs.to_string(), |t| t.to_string())
}

/// `at_hash`: the left half of the access token's hash with the ID token's
/// algorithm's hash function, base64url (Core §3.1.3.6).
fn access_token_hash(access: &AccessToken, alg: Alg) -> Option<String> {
    use aws_lc_rs::digest;
    let hash = match alg {
        Alg::RS256 | Alg::PS256 | Alg::ES256 => &digest::SHA256,
        Alg::RS384 | Alg::PS384 | Alg::ES384 => &digest::SHA384,
        // Ed25519, the only EdDSA curve accepted, hashes with SHA-512.
        Alg::RS512 | Alg::PS512 | Alg::ES512 | Alg::EdDSA | Alg::Ed25519 => &digest::SHA512,
        Alg::HS256 | Alg::HS384 | Alg::HS512 | Alg::None => return None,
    };
    let full = digest::digest(hash, access.secret().as_bytes());
    let half = &full.as_ref()[..full.as_ref().len() / 2];
    Some(base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        half,
    ))
}

/// Checks an ID token against `keys` and the expectations. Pure: no I/O.
///
/// In order: the header (`typ`, no `cty`/`crit`/JWE), the algorithm against
/// [`ALLOWED_ALGS`], the key (by `kid`, `kty`, `use` and the key's `alg`),
/// the signature; then `iss` (exact), `aud` (must name this client and no
/// one else), `exp` (accepted until `exp + skew`), `iat` (at most `skew` in
/// the future), `nonce`, `at_hash` (when both it and the access token are
/// there), and for a refreshed token the `sub` of the earlier one.
pub fn verify_with_keys(
    token: &IdToken,
    keys: &Jwks,
    expect: &Expectations<'_>,
) -> std::result::Result<IdClaims, IdTokenError> {
    let jws = Compact::parse(token.secret())?;
    let alg = keys.verify(&jws, ALLOWED_ALGS)?;
    let all: Value =
        serde_json::from_slice(&jws.payload).map_err(|e| malformed(format!("payload: {e}")))?;
    if !all.is_object() {
        return Err(malformed("payload: not a JSON object"));
    }
    // Read every claim the checks need before checking any, as a typed
    // parse would: a malformed token is malformed whatever else it says.
    let iss = required_str(&all, "iss")?;
    let auds = audiences(&all)?;
    let exp = required_time(&all, "exp")?;
    let iat = required_time(&all, "iat")?;
    let sub = required_str(&all, "sub")?;
    let nonce = optional_str(&all, "nonce")?;
    let at_hash = optional_str(&all, "at_hash")?;

    if iss != expect.issuer {
        return Err(claim(
            "iss",
            format!("expected `{}` (found `{iss}`)", expect.issuer),
        ));
    }
    if !auds.contains(&expect.client_id) {
        return Err(claim(
            "aud",
            format!(
                "must contain `{}` (found audiences: {})",
                expect.client_id,
                auds.iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if let Some(other) = auds.iter().find(|a| **a != expect.client_id) {
        return Err(claim("aud", format!("`{other}` is not a trusted audience")));
    }
    // OIDC Core 3.1.3.7 (4, 5): an `azp` that is present must be this
    // client, even with this client as the only audience.
    if let Some(azp) = optional_str(&all, "azp")?
        && azp != expect.client_id
    {
        return Err(claim(
            "azp",
            format!(
                "the token was issued to `{azp}`, not to `{}`",
                expect.client_id
            ),
        ));
    }

    let now_secs = unix(expect.now);
    let skew_secs = i64::try_from(expect.clock_skew.as_secs()).unwrap_or(i64::MAX / 2);
    // `exp` is compared with this time: a token is accepted until exp + skew.
    let lenient_now = now_secs.saturating_sub(skew_secs);
    #[allow(clippy::cast_precision_loss)]
    if lenient_now as f64 >= exp {
        return Err(claim(
            "exp",
            format!(
                "ID token expired at {} (current time is {})",
                format_time(exp),
                format_time(lenient_now as f64)
            ),
        ));
    }
    #[allow(clippy::cast_possible_truncation)]
    let iat_secs = iat.floor() as i64;
    if iat_secs > now_secs.saturating_add(skew_secs) {
        return Err(claim(
            "iat",
            format!("iat is {}s in the future", iat_secs - now_secs),
        ));
    }
    match (expect.nonce, nonce) {
        (Some(want), Some(got)) => {
            let same = crate::secret::sha256(want.secret().as_bytes())
                == crate::secret::sha256(got.as_bytes());
            if !same {
                return Err(claim("nonce", "nonce mismatch"));
            }
        }
        (Some(_), None) => return Err(claim("nonce", "nonce missing")),
        (None, _) => {}
    }
    if let (Some(access), Some(expected_hash)) = (expect.access_token, at_hash) {
        let actual = access_token_hash(access, alg).ok_or_else(|| {
            IdTokenError::Signature("no at_hash function for this algorithm".to_owned())
        })?;
        if actual != expected_hash {
            return Err(claim("at_hash", "does not match the access token"));
        }
    }
    if let Some(previous) = expect.previous_sub
        && previous != sub
    {
        return Err(claim("sub", "a refreshed ID token names another subject"));
    }
    let sub = sub.to_owned();
    let iss = expect.issuer.to_owned();
    let text = |k: &str| all.get(k).and_then(Value::as_str).map(str::to_owned);
    let display_name = text("name")
        .or_else(|| text("preferred_username"))
        .or_else(|| text("email"))
        .unwrap_or_else(|| sub.clone());
    #[allow(clippy::cast_possible_truncation)]
    let exp = exp.floor() as i64;
    Ok(IdClaims {
        iss,
        sub,
        exp,
        iat: iat_secs,
        sid: text("sid"),
        display_name,
        username: text("preferred_username").or_else(|| text("email")),
        all,
    })
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

#[cfg(test)]
mod tests;
