//! Signing keys and the JWTs signed with them. Keys are generated in memory at
//! start (RSA 2048 for RS256, P-256 for ES256) and never written anywhere; a
//! rotation keeps the old keys in the JWKS, and able to verify, for a grace
//! period. Signing uses aws-lc-rs directly with the parsed key kept in memory,
//! so a signature costs one private-key operation and nothing else.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::config::Alg;
use crate::error::{Error, Result};

pub(crate) fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// A random URL-safe string carrying `bytes` bytes of entropy.
pub(crate) fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The system RNG only fails if the OS has no entropy source; nothing can go on then.
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut buf).expect("the system random number generator failed");
    b64(&buf)
}

/// A short, non-reversible label for a secret: the first 12 hex digits of its
/// SHA-256. Safe to show in pages and logs.
pub(crate) fn fingerprint(secret: &str) -> String {
    sha256(secret.as_bytes())[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

enum Inner {
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ec(signature::EcdsaKeyPair),
}

/// One signing key with its public half as a JWK.
pub(crate) struct SigningKey {
    pub(crate) alg: Alg,
    pub(crate) kid: String,
    inner: Inner,
    public_der: Vec<u8>,
    pub(crate) jwk: Value,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub(crate) fn generate(alg: Alg) -> Result<Self> {
        match alg {
            Alg::RS256 => {
                let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                    .map_err(|e| Error::Key(e.to_string()))?;
                let public = pair.public_key();
                let n = b64(public.modulus().big_endian_without_leading_zero());
                let e = b64(public.exponent().big_endian_without_leading_zero());
                // RFC 7638 thumbprint: the required members in lexical order, no spaces.
                let kid = b64(&sha256(
                    format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes(),
                ));
                let public_der = public.as_ref().to_vec();
                let jwk =
                    json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
                Ok(Self {
                    alg,
                    kid,
                    inner: Inner::Rsa(pair),
                    public_der,
                    jwk,
                })
            }
            Alg::ES256 => {
                let pair =
                    signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                        .map_err(|e| Error::Key(e.to_string()))?;
                let point = pair.public_key().as_ref().to_vec();
                // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
                if point.len() != 65 || point[0] != 4 {
                    return Err(Error::Key(
                        "unexpected P-256 public key encoding".to_owned(),
                    ));
                }
                let x = b64(&point[1..33]);
                let y = b64(&point[33..]);
                let kid = b64(&sha256(
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes(),
                ));
                let jwk = json!({"kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256", "x": x, "y": y});
                Ok(Self {
                    alg,
                    kid,
                    inner: Inner::Ec(pair),
                    public_der: point,
                    jwk,
                })
            }
        }
    }

    fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        // Signing with a key we generated ourselves fails only on an internal
        // error of the crypto library.
        #[allow(clippy::expect_used)]
        match &self.inner {
            Inner::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public_modulus_len()];
                pair.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig)
                    .expect("RSA signing failed");
                sig
            }
            Inner::Ec(pair) => pair
                .sign(&rng, message)
                .expect("ECDSA signing failed")
                .as_ref()
                .to_vec(),
        }
    }

    /// Signs `claims` as a compact JWS with the given `typ`.
    pub(crate) fn sign_jwt(&self, typ: &str, claims: &Value) -> String {
        let header = json!({"alg": self.alg.as_str(), "kid": self.kid, "typ": typ});
        let mut out = String::with_capacity(900);
        out.push_str(&b64(header.to_string().as_bytes()));
        out.push('.');
        out.push_str(&b64(claims.to_string().as_bytes()));
        let sig = self.sign_bytes(out.as_bytes());
        out.push('.');
        out.push_str(&b64(&sig));
        out
    }

    fn verify(&self, message: &[u8], sig: &[u8]) -> bool {
        let alg: &dyn signature::VerificationAlgorithm = match self.alg {
            Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
        };
        signature::UnparsedPublicKey::new(alg, &self.public_der)
            .verify(message, sig)
            .is_ok()
    }
}

/// The decoded parts of a JWT this provider signed.
#[derive(Debug, Clone)]
pub(crate) struct Decoded {
    pub(crate) header: Value,
    pub(crate) claims: Value,
}

/// Splits a compact JWS and decodes header and claims without checking the signature.
pub(crate) fn decode_unverified(token: &str) -> Option<Decoded> {
    let mut parts = token.split('.');
    let (h, c, _s) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).ok()?).ok()?;
    let claims = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).ok()?).ok()?;
    Some(Decoded { header, claims })
}

/// The keys in use: one active key per algorithm, and retired keys that are
/// still published until their grace period ends.
#[derive(Debug)]
pub(crate) struct KeySet {
    pub(crate) active_rs: Arc<SigningKey>,
    pub(crate) active_es: Arc<SigningKey>,
    /// Retired keys with the time (provider clock, seconds) they leave the JWKS.
    pub(crate) retired: Vec<(Arc<SigningKey>, i64)>,
}

impl KeySet {
    pub(crate) fn generate() -> Result<Self> {
        Ok(Self {
            active_rs: Arc::new(SigningKey::generate(Alg::RS256)?),
            active_es: Arc::new(SigningKey::generate(Alg::ES256)?),
            retired: Vec::new(),
        })
    }

    pub(crate) fn active(&self, alg: Alg) -> &Arc<SigningKey> {
        match alg {
            Alg::RS256 => &self.active_rs,
            Alg::ES256 => &self.active_es,
        }
    }

    /// A new set whose active keys are new and whose old active keys are retired
    /// until `now + grace`; retired keys past their time are dropped.
    pub(crate) fn rotated(&self, now: i64, grace: i64) -> Result<Self> {
        let mut retired: Vec<_> = self
            .retired
            .iter()
            .filter(|(_, until)| *until > now)
            .cloned()
            .collect();
        retired.push((self.active_rs.clone(), now + grace));
        retired.push((self.active_es.clone(), now + grace));
        Ok(Self {
            active_rs: Arc::new(SigningKey::generate(Alg::RS256)?),
            active_es: Arc::new(SigningKey::generate(Alg::ES256)?),
            retired,
        })
    }

    fn published(&self, now: i64) -> impl Iterator<Item = &Arc<SigningKey>> {
        [&self.active_rs, &self.active_es].into_iter().chain(
            self.retired
                .iter()
                .filter(move |(_, until)| *until > now)
                .map(|(k, _)| k),
        )
    }

    pub(crate) fn jwks(&self, now: i64) -> Value {
        json!({"keys": self.published(now).map(|k| k.jwk.clone()).collect::<Vec<_>>()})
    }

    /// Checks the signature of a token against the published keys (by `kid`).
    pub(crate) fn verify(&self, token: &str, now: i64) -> Option<Decoded> {
        let decoded = decode_unverified(token)?;
        let kid = decoded.header.get("kid")?.as_str()?;
        let alg = decoded.header.get("alg")?.as_str()?;
        let key = self
            .published(now)
            .find(|k| k.kid == kid && k.alg.as_str() == alg)?;
        let (signed, sig) = token.rsplit_once('.')?;
        let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
        key.verify(signed.as_bytes(), &sig).then_some(decoded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_both_algorithms_and_rejects_tampering() {
        let keys = KeySet::generate().expect("keys");
        for alg in [Alg::RS256, Alg::ES256] {
            let token = keys.active(alg).sign_jwt("JWT", &json!({"sub": "alice"}));
            let decoded = keys.verify(&token, 0).expect("verifies");
            assert_eq!(decoded.claims["sub"], "alice");
            assert_eq!(decoded.header["alg"], alg.as_str());
            let (head, _) = token.split_once('.').expect("dot");
            let forged = format!(
                "{head}.{}.{}",
                b64(br#"{"sub":"mallory"}"#),
                token.rsplit('.').next().unwrap_or("")
            );
            assert!(keys.verify(&forged, 0).is_none());
        }
    }

    #[test]
    fn rotation_keeps_old_keys_for_the_grace_period() {
        let keys = KeySet::generate().expect("keys");
        let old = keys.active(Alg::RS256).sign_jwt("JWT", &json!({}));
        let rotated = keys.rotated(1_000, 60).expect("rotate");
        assert_eq!(
            rotated.jwks(1_000)["keys"].as_array().map(Vec::len),
            Some(4)
        );
        assert!(rotated.verify(&old, 1_059).is_some());
        assert!(rotated.verify(&old, 1_060).is_none());
        assert_eq!(
            rotated.jwks(1_060)["keys"].as_array().map(Vec::len),
            Some(2)
        );
    }

    #[test]
    fn fingerprint_is_short_and_not_the_secret() {
        let fp = fingerprint("secret-value");
        assert_eq!(fp.len(), 12);
        assert!(!fp.contains("secret"));
    }
}
