//! Signing compact JWS with the SDK's own keys: P-256 (ES256) key pairs,
//! made here or read from PKCS#8, their public JWK and RFC 7638 thumbprint;
//! and RSA (RS256) key pairs read from PKCS#8, for client assertions of
//! apps whose provider registered an RSA key. DPoP proofs and client
//! assertions are signed with these.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// A P-256 key pair that signs ES256 JWS. `Debug` shows the thumbprint only.
pub(crate) struct EcKey {
    pair: EcdsaKeyPair,
    /// The private key as PKCS#8 (v1) DER, kept to store it again.
    pkcs8: Zeroizing<Vec<u8>>,
    thumbprint: String,
}

impl std::fmt::Debug for EcKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EcKey")
            .field("jkt", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl EcKey {
    /// A new random key.
    pub(crate) fn generate() -> Result<Self> {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .map_err(|_| Error::Config("could not generate a P-256 key".to_owned()))?;
        let pkcs8 = pair
            .to_pkcs8v1()
            .map_err(|_| Error::Config("could not encode a P-256 key".to_owned()))?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// Reads a P-256 private key from PKCS#8 DER (v1 or v2).
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let pair =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).map_err(|_| {
                Error::Config("the key is not a P-256 private key in PKCS#8".to_owned())
            })?;
        let thumbprint = thumbprint_of(&pair);
        Ok(Self {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
            thumbprint,
        })
    }

    /// The private key as PKCS#8 DER (secret: zeroized when dropped).
    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK (`kty`, `crv`, `x`, `y`; no private member).
    pub(crate) fn public_jwk(&self) -> Value {
        let (x, y) = coordinates(&self.pair);
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key (DPoP's `jkt`).
    pub(crate) fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A compact JWS over `claims` with `header` (to which `alg: ES256` is added).
    pub(crate) fn sign(&self, header: Value, claims: &Value) -> Result<String> {
        compact_jws("ES256", header, claims, |input| {
            self.pair
                .sign(&SystemRandom::new(), input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Config("could not sign with the P-256 key".to_owned()))
        })
    }
}

/// An RSA key pair (2048 to 8192 bits) that signs RS256 JWS. `Debug`
/// shows the thumbprint only.
pub(crate) struct RsaKey {
    pair: RsaKeyPair,
    pkcs8: Zeroizing<Vec<u8>>,
    thumbprint: String,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey")
            .field("jkt", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl RsaKey {
    /// Reads an RSA private key from PKCS#8 DER.
    pub(crate) fn from_pkcs8(der: &[u8]) -> Result<Self> {
        let pair = RsaKeyPair::from_pkcs8(der)
            .map_err(|_| Error::Config("the key is not an RSA private key in PKCS#8".to_owned()))?;
        let (n, e) = rsa_members(&pair);
        // RFC 7638 §3.2: e, kty, n in that order, no spaces.
        let thumbprint = sha256_b64(format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes());
        Ok(Self {
            pair,
            pkcs8: Zeroizing::new(der.to_vec()),
            thumbprint,
        })
    }

    /// The private key as PKCS#8 DER (secret: zeroized when dropped).
    pub(crate) fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key as a JWK (`kty`, `n`, `e`; no private member).
    pub(crate) fn public_jwk(&self) -> Value {
        let (n, e) = rsa_members(&self.pair);
        json!({"kty": "RSA", "n": n, "e": e})
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key.
    pub(crate) fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A compact JWS over `claims` with `header` (to which `alg: RS256` is added).
    pub(crate) fn sign(&self, header: Value, claims: &Value) -> Result<String> {
        compact_jws("RS256", header, claims, |input| {
            let mut signature = vec![0u8; self.pair.public_modulus_len()];
            self.pair
                .sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input,
                    &mut signature,
                )
                .map_err(|_| Error::Config("could not sign with the RSA key".to_owned()))?;
            Ok(signature)
        })
    }
}

/// An RSA key's public `n` and `e`, base64url without leading zeros.
fn rsa_members(pair: &RsaKeyPair) -> (String, String) {
    let public = pair.public_key();
    (
        b64(public.modulus().big_endian_without_leading_zero()),
        b64(public.exponent().big_endian_without_leading_zero()),
    )
}

/// A compact JWS: `header` with `alg` set, `claims`, and what `sign` makes
/// of the signing input.
fn compact_jws(
    alg: &str,
    mut header: Value,
    claims: &Value,
    sign: impl FnOnce(&[u8]) -> Result<Vec<u8>>,
) -> Result<String> {
    if let Some(h) = header.as_object_mut() {
        h.insert("alg".to_owned(), Value::from(alg));
    }
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    let signature = sign(input.as_bytes())?;
    Ok(format!("{input}.{}", b64(&signature)))
}

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url(SHA-256(`bytes`)), as `ath`, `jkt` and PKCE use it.
pub(crate) fn sha256_b64(bytes: &[u8]) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn coordinates(pair: &EcdsaKeyPair) -> (String, String) {
    // The uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
    let point = pair.public_key().as_ref();
    (b64(&point[1..33]), b64(&point[33..65]))
}

fn thumbprint_of(pair: &EcdsaKeyPair) -> String {
    let (x, y) = coordinates(pair);
    // RFC 7638 §3.2: the required members only, in lexicographic order, no spaces.
    sha256_b64(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    #[test]
    fn a_key_survives_pkcs8_and_signs_verifiable_jws() {
        let key = EcKey::generate().expect("key");
        let again = EcKey::from_pkcs8(key.pkcs8()).expect("reads back");
        assert_eq!(key.thumbprint(), again.thumbprint());
        assert_eq!(key.public_jwk(), again.public_jwk());
        assert!(key.public_jwk().get("d").is_none());

        let jws = again
            .sign(json!({"typ": "dpop+jwt"}), &json!({"a": 1}))
            .expect("signs");
        let parts: Vec<&str> = jws.split('.').collect();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("b64")).expect("json");
        assert_eq!(header["alg"], "ES256");
        let point = key.pair.public_key().as_ref().to_vec();
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
            .verify(
                format!("{}.{}", parts[0], parts[1]).as_bytes(),
                &URL_SAFE_NO_PAD.decode(parts[2]).expect("b64"),
            )
            .expect("the signature verifies");
    }

    #[test]
    fn an_rsa_key_signs_rs256_with_the_thumbprint_a_provider_computes() {
        let generated =
            aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa key");
        let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&generated)
            .expect("pkcs8");
        let key = RsaKey::from_pkcs8(der.as_ref()).expect("reads");
        let theirs =
            sessionkit_mock_idp::dpop::jwk_thumbprint(&key.public_jwk()).expect("thumbprint");
        assert_eq!(key.thumbprint(), theirs);
        assert!(format!("{key:?}").contains(&theirs));
        let jws = key
            .sign(json!({"typ": "JWT"}), &json!({"a": 1}))
            .expect("signs");
        let parts: Vec<&str> = jws.split('.').collect();
        aws_lc_rs::signature::RsaPublicKeyComponents {
            n: generated
                .public_key()
                .modulus()
                .big_endian_without_leading_zero(),
            e: generated
                .public_key()
                .exponent()
                .big_endian_without_leading_zero(),
        }
        .verify(
            &aws_lc_rs::signature::RSA_PKCS1_2048_8192_SHA256,
            format!("{}.{}", parts[0], parts[1]).as_bytes(),
            &URL_SAFE_NO_PAD.decode(parts[2]).expect("b64"),
        )
        .expect("the RS256 signature verifies");
        assert!(RsaKey::from_pkcs8(EcKey::generate().expect("ec").pkcs8()).is_err());
    }

    #[test]
    fn the_thumbprint_is_the_one_a_provider_computes() {
        let key = EcKey::generate().expect("key");
        let theirs =
            sessionkit_mock_idp::dpop::jwk_thumbprint(&key.public_jwk()).expect("thumbprint");
        assert_eq!(key.thumbprint(), theirs);
        assert!(format!("{key:?}").contains(key.thumbprint()));
        assert!(EcKey::from_pkcs8(b"not a key").is_err());
    }
}
