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

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
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

#[cfg(unix)]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(unix)]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
}

/// Why keys in a file that others can read are not used: they may have leaked.
#[cfg(unix)]
fn readable_by_others(file: &std::fs::File) -> Option<String> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = file.metadata().ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "mode {:o} lets others read the private keys, so they are not used",
            mode & 0o777
        )
    })
}

#[cfg(not(unix))]
fn readable_by_others(_file: &std::fs::File) -> Option<String> {
    None
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

/// The key file's contents: each private key as base64 PKCS#8.
#[derive(serde::Serialize, serde::Deserialize)]
struct KeyFile {
    #[serde(rename = "RS256")]
    rs256: String,
    #[serde(rename = "ES256")]
    es256: String,
}

/// Where a provider's first keys came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyOrigin {
    /// Read from the key file.
    Loaded,
    /// Generated and written to the key file, which did not exist.
    Created,
    /// Generated and written over a key file that could not be used (why).
    Replaced(String),
    /// Generated, but the key file could not be written (why): the next
    /// start generates again.
    NotSaved(String),
}

/// The development key cache: `sessionkit-mock-idp/signing-keys.json` in the
/// user's cache directory (`$XDG_CACHE_HOME`, else `~/.cache`, on Linux), or
/// `None` when there is no cache directory.
pub(crate) fn default_keys_file() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("sessionkit-mock-idp").join("signing-keys.json"))
}

/// Logs where a provider's first keys came from.
pub(crate) fn log_origin(path: &Path, origin: &KeyOrigin) {
    let path = path.display();
    match origin {
        KeyOrigin::Loaded => tracing::debug!(%path, "signing keys loaded from the key file"),
        KeyOrigin::Created => tracing::info!(
            %path,
            "signing keys generated and saved for the next start (development keys: \
             whoever reads this file can sign tokens this provider's clients accept)"
        ),
        KeyOrigin::Replaced(why) => tracing::warn!(
            %path,
            %why,
            "the key file could not be used: new signing keys were generated and saved over it"
        ),
        KeyOrigin::NotSaved(why) => tracing::warn!(
            %path,
            %why,
            "signing keys generated, but they could not be saved: the next start generates again"
        ),
    }
}

/// Why a key file gave no keys: it does not exist, or it cannot be used.
enum Unusable {
    Missing,
    Bad(String),
}

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

    /// The keys in the file at `path`; or, when it is missing or cannot be
    /// used (unreadable, not a key file, readable by others), new keys
    /// written there (mode 0600, its directory created 0700) through a
    /// private temporary file and a rename, so that a provider starting at
    /// the same moment reads either the old file or a complete new one.
    /// Fails only when keys cannot be generated: a file that cannot be
    /// written is reported in the [`KeyOrigin`].
    pub(crate) fn load_or_create(path: &Path) -> Result<(Self, KeyOrigin)> {
        let replaced = match Self::load(path) {
            Ok(keys) => return Ok((keys, KeyOrigin::Loaded)),
            Err(Unusable::Missing) => None,
            Err(Unusable::Bad(why)) => Some(why),
        };
        let keys = Self::generate()?;
        let origin = match keys.save(path) {
            Ok(()) => replaced.map_or(KeyOrigin::Created, KeyOrigin::Replaced),
            Err(why) => KeyOrigin::NotSaved(match replaced {
                Some(bad) => format!("{bad}; and {why}"),
                None => why,
            }),
        };
        Ok((keys, origin))
    }

    fn load(path: &Path) -> std::result::Result<Self, Unusable> {
        let mut file = match std::fs::File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
            Err(e) => return Err(Unusable::Bad(format!("cannot open it: {e}"))),
        };
        if let Some(why) = readable_by_others(&file) {
            return Err(Unusable::Bad(why));
        }
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut file, &mut bytes)
            .map_err(|e| Unusable::Bad(format!("cannot read it: {e}")))?;
        let bad = |e: &dyn std::fmt::Display| Unusable::Bad(format!("not a key file: {e}"));
        let file: KeyFile = serde_json::from_slice(&bytes).map_err(|e| bad(&e))?;
        let key = |alg, text: &str| {
            let der = URL_SAFE_NO_PAD.decode(text).map_err(|e| bad(&e))?;
            SigningKey::from_pkcs8(alg, &der).map_err(|e| bad(&e))
        };
        Ok(Self::with_active(
            Arc::new(key(Alg::RS256, &file.rs256)?),
            Arc::new(key(Alg::ES256, &file.es256)?),
        ))
    }

    /// Writes the active keys to `path` (see [`KeySet::load_or_create`]).
    fn save(&self, path: &Path) -> std::result::Result<(), String> {
        /// Tells apart the temporary files of one process's threads.
        static NEXT_TMP: AtomicU64 = AtomicU64::new(0);
        let file = KeyFile {
            rs256: b64(&self.active_rs.to_pkcs8().map_err(|e| e.to_string())?),
            es256: b64(&self.active_es.to_pkcs8().map_err(|e| e.to_string())?),
        };
        let json = serde_json::to_vec_pretty(&file).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            private_dir(dir).map_err(|e| format!("cannot create its directory: {e}"))?;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Unique per process and thread, and created new (never an old file
        // reused with another mode), in the same directory for the rename.
        let (tmp, mut out) = loop {
            let tmp = path.with_file_name(format!(
                ".{name}.{}.{}.tmp",
                std::process::id(),
                NEXT_TMP.fetch_add(1, Ordering::Relaxed)
            ));
            match private_file(&tmp) {
                Ok(out) => break (tmp, out),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", tmp.display())),
            }
        };
        let written = out
            .write_all(&json)
            .and_then(|()| out.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", tmp.display()))
            .and_then(|()| {
                std::fs::rename(&tmp, path).map_err(|e| format!("cannot rename into place: {e}"))
            });
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        written
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

    /// A new empty directory under the system's temporary directory.
    fn scratch_dir(what: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "mock-idp-{what}-{}-{}",
            std::process::id(),
            random_token(6)
        ))
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    fn kids(keys: &KeySet) -> [String; 2] {
        [keys.active_rs.kid.clone(), keys.active_es.kid.clone()]
    }

    #[test]
    fn a_key_file_is_created_private_then_loaded_with_the_same_keys() {
        let dir = scratch_dir("keys");
        let path = dir.join("nested").join("keys.json");
        let (created, origin) = KeySet::load_or_create(&path).expect("create");
        assert_eq!(origin, KeyOrigin::Created);
        let (loaded, origin) = KeySet::load_or_create(&path).expect("load");
        assert_eq!(origin, KeyOrigin::Loaded);
        for alg in [Alg::RS256, Alg::ES256] {
            assert_eq!(loaded.active(alg).kid, created.active(alg).kid);
            // A token signed by the loaded key verifies with the created one.
            let token = loaded.active(alg).sign_jwt("JWT", &json!({"sub": "alice"}));
            assert!(created.verify(&token, 0).is_some());
        }
        #[cfg(unix)]
        {
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().expect("dir")), 0o700);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_corrupt_or_world_readable_key_file_is_replaced_by_new_private_keys() {
        let dir = scratch_dir("bad-keys");
        let path = dir.join("keys.json");
        let (first, _) = KeySet::load_or_create(&path).expect("create");
        let mut bad_contents: Vec<&[u8]> =
            vec![b"", b"not keys", br#"{"RS256":"AAAA","ES256":"AAAA"}"#];
        // Cut off in the middle, as a file half-written by an older version would be.
        let whole = std::fs::read(&path).expect("read");
        bad_contents.push(&whole[..whole.len() / 2]);
        let mut previous = kids(&first);
        for bad in bad_contents {
            let _ = std::fs::remove_file(&path);
            std::fs::write(&path, bad).expect("write");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                    .expect("chmod");
            }
            let (keys, origin) = KeySet::load_or_create(&path).expect("regenerated");
            assert!(
                matches!(&origin, KeyOrigin::Replaced(why) if why.contains("not a key file")),
                "{origin:?}"
            );
            let (again, origin) = KeySet::load_or_create(&path).expect("load");
            assert_eq!(origin, KeyOrigin::Loaded, "the replacement is a key file");
            assert_eq!(kids(&again), kids(&keys));
            assert_ne!(kids(&keys), previous);
            previous = kids(&keys);
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            // Keys others could read may have leaked: they are not used.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let (keys, origin) = KeySet::load_or_create(&path).expect("regenerated");
            assert!(
                matches!(&origin, KeyOrigin::Replaced(why) if why.contains("644")),
                "{origin:?}"
            );
            assert_ne!(kids(&keys), previous);
            assert_eq!(mode(&path), 0o600, "the replacement is private");
        }
        let left: Vec<_> = std::fs::read_dir(&dir)
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, ["keys.json"], "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn providers_creating_one_key_file_at_the_same_moment_all_get_working_keys() {
        let dir = scratch_dir("racing-keys");
        let path = dir.join("keys.json");
        let barrier = std::sync::Barrier::new(4);
        let results: Vec<(KeySet, KeyOrigin)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        KeySet::load_or_create(&path).expect("keys")
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        for (keys, origin) in &results {
            assert!(
                matches!(origin, KeyOrigin::Created | KeyOrigin::Loaded),
                "{origin:?}"
            );
            let token = keys.active(Alg::RS256).sign_jwt("JWT", &json!({}));
            assert!(keys.verify(&token, 0).is_some());
        }
        // The file is whole: one of the racers' keys, loaded as they were written.
        let (on_disk, origin) = KeySet::load_or_create(&path).expect("load");
        assert_eq!(origin, KeyOrigin::Loaded);
        assert!(results.iter().any(|(k, _)| kids(k) == kids(&on_disk)));
        #[cfg(unix)]
        assert_eq!(mode(&path), 0o600);
        let left = std::fs::read_dir(&dir).expect("dir").count();
        assert_eq!(left, 1, "no temporary file is left behind");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fingerprint_is_short_and_not_the_secret() {
        let fp = fingerprint("secret-value");
        assert_eq!(fp.len(), 12);
        assert!(!fp.contains("secret"));
    }
}
