//! The public keys of DPoP proofs: reading a `jwk` header into a key that
//! verifies signatures, refusing private keys, and the RFC 7638 thumbprint
//! (`jkt`) that tokens are bound to.

use aws_lc_rs::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value};

use super::ProofError;

/// The JWS algorithms a proof may be signed with: asymmetric ones only.
pub const SUPPORTED_ALGS: &[&str] = &["ES256", "ES384", "RS256", "PS256", "EdDSA"];

/// JWK members that only a private (or symmetric) key has (RFC 7518 §6).
const PRIVATE_MEMBERS: &[&str] = &["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// A public key read from a proof's `jwk`, for one algorithm.
pub(crate) enum PublicKey {
    Ec(&'static signature::EcdsaVerificationAlgorithm, Vec<u8>),
    Rsa(&'static signature::RsaParameters, Vec<u8>, Vec<u8>),
    Ed25519(Vec<u8>),
}

impl PublicKey {
    /// Reads `jwk` as a public key usable with `alg`: the key type and curve
    /// must be the ones `alg` names, and no private member may be present.
    pub(crate) fn from_jwk(alg: &str, jwk: &Map<String, Value>) -> Result<Self, ProofError> {
        if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
            return Err(ProofError::PrivateKey((*member).to_owned()));
        }
        let kty = member(jwk, "kty")?;
        let crv = || member(jwk, "crv");
        let bytes = |name: &str| decode_member(jwk, name);
        let fixed = |name: &str, len: usize| {
            let value = bytes(name)?;
            if value.len() == len {
                Ok(value)
            } else {
                Err(ProofError::BadKey(format!(
                    "jwk member {name:?} must be {len} bytes"
                )))
            }
        };
        let ec = |curve: &str, len: usize, verify| {
            if kty != "EC" || crv()? != curve {
                return Err(ProofError::BadKey(format!(
                    "{alg} needs an EC key on {curve}"
                )));
            }
            // The uncompressed point: 0x04 || x || y.
            let mut point = vec![4u8];
            point.extend(fixed("x", len)?);
            point.extend(fixed("y", len)?);
            Ok(PublicKey::Ec(verify, point))
        };
        let rsa = |params| {
            if kty != "RSA" {
                return Err(ProofError::BadKey(format!("{alg} needs an RSA key")));
            }
            let (n, e) = (bytes("n")?, bytes("e")?);
            // A leading zero byte is not the minimal encoding RFC 7518 asks for.
            if n.first().is_none_or(|b| *b == 0) || e.first().is_none_or(|b| *b == 0) {
                return Err(ProofError::BadKey(
                    "RSA n and e must be unsigned big-endian without leading zeros".to_owned(),
                ));
            }
            Ok(PublicKey::Rsa(params, n, e))
        };
        match alg {
            "ES256" => ec("P-256", 32, &signature::ECDSA_P256_SHA256_FIXED),
            "ES384" => ec("P-384", 48, &signature::ECDSA_P384_SHA384_FIXED),
            "RS256" => rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
            "PS256" => rsa(&signature::RSA_PSS_2048_8192_SHA256),
            "EdDSA" => {
                if kty != "OKP" || crv()? != "Ed25519" {
                    return Err(ProofError::BadKey(
                        "EdDSA needs an OKP key on Ed25519".to_owned(),
                    ));
                }
                Ok(PublicKey::Ed25519(fixed("x", 32)?))
            }
            other => Err(ProofError::UnsupportedAlg(other.to_owned())),
        }
    }

    /// Does `sig` sign `message` under this key?
    pub(crate) fn verifies(&self, message: &[u8], sig: &[u8]) -> bool {
        match self {
            PublicKey::Ec(alg, point) => UnparsedPublicKey::new(*alg, point)
                .verify(message, sig)
                .is_ok(),
            PublicKey::Rsa(params, n, e) => RsaPublicKeyComponents { n, e }
                .verify(params, message, sig)
                .is_ok(),
            PublicKey::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok(),
        }
    }
}

fn member<'a>(jwk: &'a Map<String, Value>, name: &str) -> Result<&'a str, ProofError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ProofError::BadKey(format!("jwk member {name:?} is missing")))
}

fn decode_member(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, ProofError> {
    URL_SAFE_NO_PAD
        .decode(member(jwk, name)?)
        .map_err(|_| ProofError::BadKey(format!("jwk member {name:?} is not base64url")))
}

/// The RFC 7638 SHA-256 thumbprint of a public JWK, base64url-encoded: the
/// `jkt` that DPoP-bound tokens carry in `cnf` and that the `dpop_jkt`
/// authorization parameter names.
///
/// Only the required members count (`crv`, `kty`, `x`, `y` for EC; `e`,
/// `kty`, `n` for RSA; `crv`, `kty`, `x` for OKP), in lexical order with
/// no whitespace, so `alg`, `use` or `kid` do not change it.
///
/// ```
/// use sessionkit_mock_idp::dpop::jwk_thumbprint;
///
/// // The example key of RFC 7638 §3.1.
/// let jwk = serde_json::json!({
///     "kty": "RSA",
///     "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
///     "e": "AQAB",
///     "alg": "RS256",
///     "kid": "2011-04-29"
/// });
/// assert_eq!(
///     jwk_thumbprint(&jwk).unwrap(),
///     "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
/// );
/// ```
///
/// # Errors
/// [`ProofError::BadKey`] when a required member is missing or not a
/// string, or the key type is not `EC`, `RSA` or `OKP`.
pub fn jwk_thumbprint(jwk: &Value) -> Result<String, ProofError> {
    let Some(jwk) = jwk.as_object() else {
        return Err(ProofError::BadKey(
            "the jwk is not a JSON object".to_owned(),
        ));
    };
    let required: &[&str] = match member(jwk, "kty")? {
        "EC" => &["crv", "kty", "x", "y"],
        "RSA" => &["e", "kty", "n"],
        "OKP" => &["crv", "kty", "x"],
        other => {
            return Err(ProofError::BadKey(format!(
                "key type {other:?} is not supported"
            )));
        }
    };
    // The canonical form of RFC 7638 §3.3: members in lexical order (the
    // lists above are), no whitespace, strings escaped as JSON does.
    let mut text = String::from("{");
    for (i, name) in required.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        let value = Value::String(member(jwk, name)?.to_owned());
        text.push_str(&format!("\"{name}\":{value}"));
    }
    text.push('}');
    Ok(URL_SAFE_NO_PAD.encode(crate::keys::sha256(text.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn private_members_are_refused_before_anything_else() {
        for member in PRIVATE_MEMBERS {
            let mut jwk = object(json!({"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"}));
            jwk.insert((*member).to_owned(), json!("c2VjcmV0"));
            assert!(matches!(
                PublicKey::from_jwk("ES256", &jwk),
                Err(ProofError::PrivateKey(m)) if m == *member
            ));
        }
    }

    #[test]
    fn the_key_type_must_fit_the_algorithm() {
        let ec = object(json!({"kty": "EC", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode([1u8; 32]), "y": URL_SAFE_NO_PAD.encode([2u8; 32])}));
        assert!(PublicKey::from_jwk("ES256", &ec).is_ok());
        assert!(matches!(
            PublicKey::from_jwk("ES384", &ec),
            Err(ProofError::BadKey(_))
        ));
        assert!(matches!(
            PublicKey::from_jwk("RS256", &ec),
            Err(ProofError::BadKey(_))
        ));
        assert!(matches!(
            PublicKey::from_jwk("EdDSA", &ec),
            Err(ProofError::BadKey(_))
        ));
        assert!(matches!(
            PublicKey::from_jwk("HS256", &ec),
            Err(ProofError::UnsupportedAlg(_))
        ));
        let short = object(json!({"kty": "EC", "crv": "P-256", "x": "AQ", "y": "AQ"}));
        assert!(matches!(
            PublicKey::from_jwk("ES256", &short),
            Err(ProofError::BadKey(_))
        ));
        let padded = object(json!({"kty": "RSA", "n": "AAEC", "e": "AQAB"}));
        assert!(matches!(
            PublicKey::from_jwk("RS256", &padded),
            Err(ProofError::BadKey(_))
        ));
    }

    #[test]
    fn thumbprints_use_the_required_members_only() {
        let a = json!({"kty": "EC", "crv": "P-256", "x": "eA", "y": "eQ"});
        let b =
            json!({"y": "eQ", "x": "eA", "crv": "P-256", "kty": "EC", "kid": "k", "use": "sig"});
        assert_eq!(jwk_thumbprint(&a).ok(), jwk_thumbprint(&b).ok());
        let expected = URL_SAFE_NO_PAD.encode(crate::keys::sha256(
            br#"{"crv":"P-256","kty":"EC","x":"eA","y":"eQ"}"#,
        ));
        assert_eq!(jwk_thumbprint(&a).ok(), Some(expected));
        assert!(jwk_thumbprint(&json!({"kty": "oct", "k": "AA"})).is_err());
        assert!(jwk_thumbprint(&json!({"kty": "EC", "crv": "P-256", "x": "eA"})).is_err());
        assert!(jwk_thumbprint(&json!("EC")).is_err());
    }
}
