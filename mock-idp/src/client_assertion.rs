//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, OpenID
//! Connect Core §9): a client registered with its public keys proves itself
//! with a JWT it signed, sent as `client_assertion` with
//! `client_assertion_type` [`ASSERTION_TYPE`]. Checked, in order:
//! - a compact JWS of at most 8 KiB with JSON header and claims, no `crit`;
//! - `alg` is asymmetric ([`ALGS`]; never `none` or an HMAC: a client's
//!   public keys are no shared secret);
//! - the signature verifies with one of the client's keys (the one named
//!   by `kid` when the header has one; a key's own `alg` or `use`, when
//!   set, must fit);
//! - `iss` and `sub` are both the `client_id`;
//! - `aud` names the issuer identifier or the token endpoint URL;
//! - `exp` is present and not past; `nbf` and `iat`, when present, not
//!   ahead of the provider's clock by more than [`SKEW_SECS`]; the
//!   assertion lives at most [`MAX_LIFETIME_SECS`] (from `iat`, or now);
//! - `jti` is present and was never accepted before for this client (a
//!   replay cache keeps it until `exp`).
//!
//! Every refusal says which check failed; the endpoints answer it as a 401
//! `invalid_client`. An assertion that passes every check while the replay
//! cache is full of live `jti`s is answered 503 `temporarily_unavailable`
//! with `Retry-After`: forgetting a live one would let it be replayed.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use crate::dpop::jwk::PublicKey;
use crate::dpop::{ReplayCache, Use};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The algorithms a client assertion may be signed with (discovery's
/// `token_endpoint_auth_signing_alg_values_supported`).
pub(crate) const ALGS: &[&str] = crate::dpop::SUPPORTED_ALGS;

/// How far ahead of the provider's clock `iat` and `nbf` may be.
pub(crate) const SKEW_SECS: i64 = 30;

/// The longest an assertion may live, from `iat` (or now) to `exp`.
pub(crate) const MAX_LIFETIME_SECS: i64 = 300;

/// The longest assertion read.
const MAX_BYTES: usize = 8 * 1024;

/// What an assertion is checked against besides the client's keys.
#[derive(Debug)]
pub(crate) struct AssertionCheck<'a> {
    /// The issuer identifier: one `aud` accepted.
    pub(crate) issuer: &'a str,
    /// The token endpoint URL: the other `aud` accepted.
    pub(crate) token_endpoint: String,
    /// The provider's time, Unix seconds.
    pub(crate) now: i64,
    /// The `jti`s accepted lately.
    pub(crate) replay: &'a ReplayCache,
}

/// A compact JWS taken apart (nothing checked but its shape).
struct Parts<'a> {
    header: Map<String, Value>,
    claims: Map<String, Value>,
    signed: &'a str,
    signature: Vec<u8>,
}

fn parts(assertion: &str) -> Result<Parts<'_>, String> {
    if assertion.len() > MAX_BYTES {
        return Err("the assertion is longer than 8 KiB".to_owned());
    }
    let mut split = assertion.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (split.next(), split.next(), split.next(), split.next())
    else {
        return Err("the assertion is not a compact JWS of three parts".to_owned());
    };
    let json = |part: &str, what: &str| -> Result<Map<String, Value>, String> {
        let bytes = URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| format!("the assertion's {what} is not base64url"))?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(format!("the assertion's {what} is not a JSON object")),
        }
    };
    Ok(Parts {
        header: json(h, "header")?,
        claims: json(c, "claims")?,
        signed: &assertion[..h.len() + 1 + c.len()],
        signature: URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| "the assertion's signature is not base64url".to_owned())?,
    })
}

/// The client an assertion says it is from (`iss`, else `sub`), unchecked:
/// to find the client's keys when the request has no `client_id`.
pub(crate) fn claimed_client(assertion: &str) -> Result<String, String> {
    let parts = parts(assertion)?;
    ["iss", "sub"]
        .iter()
        .find_map(|name| parts.claims.get(*name).and_then(Value::as_str))
        .map(str::to_owned)
        .ok_or_else(|| "the assertion has no iss".to_owned())
}

/// Why an assertion was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A check failed: which one, and why (a 401 `invalid_client`).
    Invalid(String),
    /// Every check passed, but the replay cache is full of live `jti`s, so
    /// this one could not be recorded (a 503: try again in `retry_after_secs`).
    Busy {
        /// Seconds until the first remembered assertion expires.
        retry_after_secs: u64,
    },
}

/// Checks `assertion` as `client_id`'s, signed by one of the keys of its
/// JWKS `jwks` (`{"keys": [...]}`), and records its `jti`, unless it was
/// recorded before (a replay) or there is no room for it.
pub(crate) fn verify(
    assertion: &str,
    client_id: &str,
    jwks: &Value,
    check: &AssertionCheck<'_>,
) -> Result<(), Refusal> {
    let (key, exp) = checked(assertion, client_id, jwks, check).map_err(Refusal::Invalid)?;
    match check.replay.first_use(key, exp, check.now) {
        Use::First => Ok(()),
        Use::Replayed => Err(Refusal::Invalid(
            "the jti was used before (replay): make a new assertion for every request".to_owned(),
        )),
        Use::Full { retry_after_secs } => Err(Refusal::Busy { retry_after_secs }),
    }
}

/// Every check of [`verify`] but the replay cache's; `Ok` holds the key
/// its `jti` is remembered by and until when.
fn checked(
    assertion: &str,
    client_id: &str,
    jwks: &Value,
    check: &AssertionCheck<'_>,
) -> Result<([u8; 32], i64), String> {
    let parts = parts(assertion)?;
    if parts.header.contains_key("crit") {
        return Err("the crit header names extensions this provider lacks".to_owned());
    }
    let alg = parts
        .header
        .get("alg")
        .and_then(Value::as_str)
        .unwrap_or("");
    if !ALGS.contains(&alg) {
        return Err(format!(
            "alg {alg:?} is not accepted: sign with the client's private key, using one of {}",
            ALGS.join(", ")
        ));
    }
    verify_signature(&parts, alg, jwks)?;

    let claims = &parts.claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let iss = text("iss").ok_or("the iss claim is missing")?;
    let sub = text("sub").ok_or("the sub claim is missing")?;
    if iss != client_id || sub != client_id {
        return Err(format!(
            "iss and sub must both be the client_id {client_id:?} (iss {iss:?}, sub {sub:?})"
        ));
    }
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        _ => return Err("the aud claim is missing".to_owned()),
    };
    if !audiences
        .iter()
        .any(|a| *a == check.issuer || *a == check.token_endpoint)
    {
        return Err(format!(
            "aud must name the issuer {:?} or the token endpoint {:?}",
            check.issuer, check.token_endpoint
        ));
    }
    let now = check.now;
    let exp = numeric(claims, "exp")?.ok_or("the exp claim is missing")?;
    if exp <= now {
        return Err(format!("the assertion expired {} s ago", now - exp));
    }
    if let Some(nbf) = numeric(claims, "nbf")?
        && nbf > now + SKEW_SECS
    {
        return Err(format!(
            "the assertion is not valid for {} s (nbf)",
            nbf - now
        ));
    }
    let iat = numeric(claims, "iat")?;
    if let Some(iat) = iat
        && iat > now + SKEW_SECS
    {
        return Err(format!(
            "the assertion is issued {} s in the future (iat); check the clock",
            iat - now
        ));
    }
    let lifetime = exp - iat.unwrap_or(now);
    if lifetime > MAX_LIFETIME_SECS {
        return Err(format!(
            "the assertion lives {lifetime} s (iat to exp); at most {MAX_LIFETIME_SECS} s is accepted"
        ));
    }
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= 512)
        .ok_or("the jti claim is missing (or longer than 512 characters)")?;
    let key = crate::keys::sha256(format!("{client_id}\0{jti}").as_bytes());
    Ok((key, exp))
}

/// A NumericDate claim (RFC 7519 §2: a fraction is allowed); `Ok(None)` when absent.
fn numeric(claims: &Map<String, Value>, name: &str) -> Result<Option<i64>, String> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.is_finite())
                    .map(|f| f.floor() as i64)
            })
            .map(Some)
            .ok_or_else(|| format!("the {name} claim is not a usable number")),
        Some(_) => Err(format!("the {name} claim is not a number")),
    }
}

/// The signature verifies with one of the keys of `jwks` that may sign with `alg`.
fn verify_signature(parts: &Parts<'_>, alg: &str, jwks: &Value) -> Result<(), String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let kid = parts.header.get("kid").and_then(Value::as_str);
    let candidates: Vec<&Map<String, Value>> = keys
        .iter()
        .filter_map(Value::as_object)
        .filter(|k| kid.is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid)))
        .filter(|k| {
            k.get("alg")
                .and_then(Value::as_str)
                .is_none_or(|a| a == alg)
        })
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .collect();
    if candidates.is_empty() {
        return Err(match kid {
            Some(kid) => format!("no registered key of the client has kid {kid:?} for {alg}"),
            None => format!("the client has no registered key for {alg}"),
        });
    }
    let verified = candidates.iter().any(|jwk| {
        PublicKey::from_jwk(alg, jwk)
            .is_ok_and(|key| key.verifies(parts.signed.as_bytes(), &parts.signature))
    });
    if verified {
        Ok(())
    } else {
        Err("the signature does not verify with any of the client's registered keys".to_owned())
    }
}

/// Checks a client's registered JWKS: an object with a non-empty `keys`
/// array of public keys (no private member). `Err` says what is wrong.
pub(crate) fn check_jwks(jwks: &Value) -> Result<(), String> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Err("jwks must be an object with a \"keys\" array".to_owned());
    };
    if keys.is_empty() {
        return Err("jwks has no keys".to_owned());
    }
    for key in keys {
        let Some(key) = key.as_object() else {
            return Err("every jwks key must be a JSON object".to_owned());
        };
        if let Some(member) = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
            .iter()
            .find(|m| key.contains_key(**m))
        {
            return Err(format!(
                "a jwks key holds private key material ({member:?}); register public keys only"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_claimed_client_is_iss_and_shapes_are_checked() {
        let h = URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256"}"#);
        let c = URL_SAFE_NO_PAD.encode(br#"{"iss":"app","sub":"app"}"#);
        assert_eq!(claimed_client(&format!("{h}.{c}.AA")).as_deref(), Ok("app"));
        assert!(claimed_client("a.b").is_err());
        assert!(claimed_client(&format!("{h}.{h}x.AA")).is_err());
    }

    #[test]
    fn jwks_with_private_members_or_no_keys_are_refused() {
        assert!(
            check_jwks(&json!({"keys": [{"kty": "EC", "crv": "P-256", "x": "a", "y": "b"}]}))
                .is_ok()
        );
        assert!(check_jwks(&json!({"keys": []})).is_err());
        assert!(check_jwks(&json!([])).is_err());
        let private = check_jwks(&json!({"keys": [{"kty": "EC", "d": "secret"}]}));
        assert!(private.is_err_and(|e| e.contains("\"d\"") && !e.contains("secret")));
    }
}
