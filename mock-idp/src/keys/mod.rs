//! Signing keys and the JWTs signed with them: RSA 2048 for RS256, P-256 for
//! ES256. A rotation keeps the old keys in the JWKS, and able to verify, for a
//! grace period. Signing uses aws-lc-rs directly with the parsed key kept in
//! memory, so a signature costs one private-key operation and nothing else.
//!
//! Where the first keys come from:
//! - by default, from one pair per process shared by every provider in it
//!   ([`KeySet::shared_initial`]), which the first provider loads from the
//!   development key cache ([`default_keys_file`], the file the binary uses
//!   too) or, when there is none yet, generates and saves there: RSA-2048
//!   generation takes 50–200 ms, loading the file well under 1 ms. Rotation
//!   always generates new keys;
//! - [`KeySet::generate`]: fresh keys for this provider alone;
//! - [`KeySet::load_or_create`]: a key file (PKCS#8 in JSON, mode 0600). A
//!   missing, unreadable, corrupt or world-readable file means new keys,
//!   written over it through a private temporary file and a rename, so
//!   processes starting at the same moment never read half a file.
//!
//! These are the private keys of a *development* provider: anyone who can
//! read the file can sign tokens that this provider's clients accept. They
//! are for tests and local development, never for anything real.
//!
//! Layout: this file holds the keys, signing and the JWKS; `file` the
//! key cache on disk.

mod file;

pub(crate) use file::{default_keys_file, log_origin};

use std::sync::{Arc, Mutex, OnceLock};

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

/// Makes aws-lc seed its random generator now. The first use in a process
/// costs ~20 ms of CPU (CPU jitter entropy); start-up pays it on a blocking
/// thread instead of the first request that signs or makes a secret.
pub(crate) fn warm_up_random() {
    let _ = random_token(1);
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
                Ok(Self::from_rsa(pair))
            }
            Alg::ES256 => {
                let pair =
                    signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                        .map_err(|e| Error::Key(e.to_string()))?;
                Self::from_ec(pair)
            }
        }
    }

    /// A key from its PKCS#8 (v1) encoding.
    fn from_pkcs8(alg: Alg, der: &[u8]) -> Result<Self> {
        match alg {
            Alg::RS256 => aws_lc_rs::rsa::KeyPair::from_pkcs8(der)
                .map(Self::from_rsa)
                .map_err(|e| Error::Key(format!("RS256 key: {e}"))),
            Alg::ES256 => signature::EcdsaKeyPair::from_pkcs8(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                der,
            )
            .map_err(|e| Error::Key(format!("ES256 key: {e}")))
            .and_then(Self::from_ec),
        }
    }

    /// The private key as PKCS#8 (v1).
    fn to_pkcs8(&self) -> Result<Vec<u8>> {
        use aws_lc_rs::encoding::AsDer as _;
        match &self.inner {
            Inner::Rsa(pair) => pair
                .as_der()
                .map(|der| der.as_ref().to_vec())
                .map_err(|e| Error::Key(e.to_string())),
            Inner::Ec(pair) => pair
                .to_pkcs8v1()
                .map(|doc| doc.as_ref().to_vec())
                .map_err(|e| Error::Key(e.to_string())),
        }
    }

    fn from_rsa(pair: aws_lc_rs::rsa::KeyPair) -> Self {
        let public = pair.public_key();
        let n = b64(public.modulus().big_endian_without_leading_zero());
        let e = b64(public.exponent().big_endian_without_leading_zero());
        // RFC 7638 thumbprint: the required members in lexical order, no spaces.
        let kid = b64(&sha256(
            format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#).as_bytes(),
        ));
        let public_der = public.as_ref().to_vec();
        let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e});
        Self {
            alg: Alg::RS256,
            kid,
            inner: Inner::Rsa(pair),
            public_der,
            jwk,
        }
    }

    fn from_ec(pair: signature::EcdsaKeyPair) -> Result<Self> {
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
            alg: Alg::ES256,
            kid,
            inner: Inner::Ec(pair),
            public_der: point,
            jwk,
        })
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
        self.sign_with_header(&header, claims)
    }

    /// Signs `claims` under exactly `header` (whose `alg` should be this
    /// key's): the conformance scenarios leave out the `kid` this way.
    pub(crate) fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
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

/// The first keys of every provider in this process that did not ask for its
/// own (see [`KeySet::shared_initial`]).
static SHARED_INITIAL: OnceLock<(Arc<SigningKey>, Arc<SigningKey>)> = OnceLock::new();
/// Held while the shared keys are loaded or generated, so that providers
/// started at the same moment wait for one load instead of each running their own.
static SHARED_INITIAL_GENERATION: Mutex<()> = Mutex::new(());

impl KeySet {
    /// Fresh keys for one provider (and for every rotation).
    pub(crate) fn generate() -> Result<Self> {
        Ok(Self::with_active(
            Arc::new(SigningKey::generate(Alg::RS256)?),
            Arc::new(SigningKey::generate(Alg::ES256)?),
        ))
    }

    fn with_active(active_rs: Arc<SigningKey>, active_es: Arc<SigningKey>) -> Self {
        Self {
            active_rs,
            active_es,
            retired: Vec::new(),
        }
    }

    /// The process's shared first keys, if they exist yet. Never blocks.
    pub(crate) fn shared_initial_ready() -> Option<Self> {
        SHARED_INITIAL
            .get()
            .map(|(rs, es)| Self::with_active(rs.clone(), es.clone()))
    }

    /// The process's shared first keys. The first caller gets them from the
    /// development key cache ([`default_keys_file`]), generating and saving
    /// them there when needed, and seeds the random generator; it blocks for
    /// that (well under 1 ms with the file, 50–200 ms without plus ~20 ms
    /// for the seeding): call it on a blocking thread. Callers at the same
    /// moment wait for that one load. The keys are immutable, so sharing them
    /// shares nothing else: each provider has its own key set, and rotating
    /// it replaces that set only.
    pub(crate) fn shared_initial() -> Result<Self> {
        if let Some(keys) = Self::shared_initial_ready() {
            return Ok(keys);
        }
        let _loading = SHARED_INITIAL_GENERATION
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(keys) = Self::shared_initial_ready() {
            return Ok(keys);
        }
        let keys = match default_keys_file() {
            Some(path) => {
                let (keys, origin) = Self::load_or_create(&path)?;
                log_origin(&path, &origin);
                keys
            }
            None => {
                tracing::warn!("no cache directory: signing keys are generated and not kept");
                Self::generate()?
            }
        };
        warm_up_random();
        let _ = SHARED_INITIAL.set((keys.active_rs.clone(), keys.active_es.clone()));
        Ok(keys)
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
            retired,
            ..Self::generate()?
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
    fn the_shared_initial_keys_are_generated_once_and_rotation_makes_new_ones() {
        let first = KeySet::shared_initial().expect("keys");
        let second = KeySet::shared_initial().expect("keys");
        assert!(Arc::ptr_eq(&first.active_rs, &second.active_rs));
        assert!(Arc::ptr_eq(&first.active_es, &second.active_es));
        let ready = KeySet::shared_initial_ready().expect("ready now");
        assert_eq!(ready.active_rs.kid, first.active_rs.kid);
        let rotated = second.rotated(0, 60).expect("rotate");
        assert_ne!(rotated.active_rs.kid, first.active_rs.kid);
        assert_ne!(rotated.active_es.kid, first.active_es.kid);
        let fresh = KeySet::generate().expect("fresh");
        assert_ne!(fresh.active_rs.kid, first.active_rs.kid);
    }

    #[test]
    fn fingerprint_is_short_and_not_the_secret() {
        let fp = fingerprint("secret-value");
        assert_eq!(fp.len(), 12);
        assert!(!fp.contains("secret"));
    }
}
