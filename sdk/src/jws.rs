//! The signature half of the ID-token check: a provider's JWKS with its keys
//! parsed once for aws-lc-rs, and the verification of a compact JWS against
//! them. Parsing once per JWKS matters: building an RSA key (and its
//! Montgomery context) costs about as much as the verification itself, and
//! the pure-Rust `rsa` crate that openidconnect verifies with is an order of
//! magnitude slower than aws-lc.
//!
//! The rules are openidconnect's, kept on purpose so that the switch changes
//! speed and nothing else: the token's `alg` must be on the caller's
//! allow-list; a key is a candidate when its `kid` matches (any key when the
//! token has no `kid`), its `use` allows signatures, its `kty` fits the
//! algorithm and its `alg`, when it has one, is the token's; no candidate is
//! [`IdTokenError::UnknownKey`] (the caller may fetch the JWKS again), more
//! than one is refused. Stricter than openidconnect: RSA keys must have a
//! 2048–8192-bit modulus and a public exponent of at least 65537, and EC
//! coordinates must have their full length.
//!
//! Why one file of ~510 lines: key parsing per key type (RSA, EC, OKP) and
//! the verification per algorithm are one table read together; splitting
//! them would split each algorithm from its key type.

use std::fmt;

use aws_lc_rs::signature::{self, ParsedPublicKey, RsaPublicKeyComponents};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use serde::Deserialize;

use crate::error::IdTokenError;

/// The smallest RSA modulus accepted, in bits.
const RSA_MIN_BITS: usize = 2048;
/// The largest RSA modulus accepted, in bits (aws-lc's verification limit).
const RSA_MAX_BITS: usize = 8192;
/// The smallest RSA public exponent accepted: 65537, as every provider uses.
const RSA_MIN_EXPONENT: u64 = 65_537;

const RSA_ALGS: [Alg; 6] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
];

/// A provider's JSON Web Key Set, with every key parsed for verification.
///
/// Build it once per fetched JWKS ([`Provider`](crate::Provider) does) and
/// check any number of tokens against it. A key that cannot be used (a short
/// RSA modulus, an unknown curve, bad encoding) stays in the set as refused,
/// so that a token naming it is refused rather than taken for an unknown key.
///
/// ```
/// # fn demo(set: openidconnect::core::CoreJsonWebKeySet) {
/// let jwks = sessionkit::Jwks::new(set);
/// println!("{} keys", jwks.len());
/// # }
/// ```
pub struct Jwks {
    set: CoreJsonWebKeySet,
    keys: Vec<Key>,
}

impl Jwks {
    /// Parses every key of `set`.
    ///
    /// openidconnect leaves out of its set every key it cannot read — one
    /// whose `alg` it does not know, such as RFC 9864's `Ed25519` — so such
    /// keys are missing here; [`Jwks::from_json`] reads the JWKS as sent.
    pub fn new(set: CoreJsonWebKeySet) -> Self {
        // openidconnect keeps a key's material private; its serialised form
        // is the JWK itself.
        let keys = serde_json::to_value(&set)
            .map(|value| parse_keys(&value))
            .unwrap_or_default();
        Self { set, keys }
    }

    /// Parses a JWKS document as the provider sent it: every key in it,
    /// including those openidconnect's [`CoreJsonWebKeySet`] leaves out
    /// (which [`Jwks::set`] still reflects).
    ///
    /// ```
    /// let jwks = sessionkit::Jwks::from_json(
    ///     br#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "Ed25519", "kid": "k1",
    ///                    "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
    /// )
    /// .expect("a JWKS");
    /// assert_eq!(jwks.len(), 1);
    /// ```
    ///
    /// # Errors
    /// The text is not a JSON object with a `keys` array.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let value: serde_json::Value = serde_json::from_slice(json)?;
        let set: CoreJsonWebKeySet = serde_json::from_value(value.clone())?;
        Ok(Self {
            set,
            keys: parse_keys(&value),
        })
    }

    /// The set as openidconnect reads it.
    pub fn set(&self) -> &CoreJsonWebKeySet {
        &self.set
    }

    /// How many keys the set holds, usable or not.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key at all.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies the signature of a compact JWS and returns its header's `alg`.
    pub(crate) fn verify(
        &self,
        jws: &Compact<'_>,
        allowed: &[CoreJwsSigningAlgorithm],
    ) -> Result<Alg, IdTokenError> {
        let alg = jws.alg;
        if !allowed.contains(&alg.core()) {
            return Err(IdTokenError::Signature(format!(
                "algorithm `{}` is not allowed",
                jws.alg_name
            )));
        }
        let mut candidates = self.keys.iter().filter(|k| k.fits(jws.kid.as_deref(), alg));
        let key = match (candidates.next(), candidates.next()) {
            (None, _) => return Err(IdTokenError::UnknownKey),
            (Some(key), None) => key,
            (Some(_), Some(_)) => {
                return Err(IdTokenError::Signature(
                    "more than one key in the JWKS fits the token".to_owned(),
                ));
            }
        };
        let verifier = match &key.material {
            Err(reason) => {
                return Err(IdTokenError::Signature(format!(
                    "the provider's key is refused: {reason}"
                )));
            }
            Ok(verifiers) => verifiers
                .iter()
                .find(|(a, _)| *a == alg)
                .map(|(_, v)| v)
                .ok_or_else(|| {
                    IdTokenError::Signature(format!(
                        "the key cannot verify `{}` (another curve)",
                        jws.alg_name
                    ))
                })?,
        };
        verifier
            .verify_sig(jws.signing_input.as_bytes(), &jws.signature)
            .map_err(|_| IdTokenError::Signature("bad signature".to_owned()))?;
        Ok(alg)
    }
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.keys
                    .iter()
                    .map(|k| (&k.kid, &k.kty, k.material.is_ok())),
            )
            .finish()
    }
}

impl From<CoreJsonWebKeySet> for Jwks {
    fn from(set: CoreJsonWebKeySet) -> Self {
        Self::new(set)
    }
}

/// The keys of a JWKS document (`{"keys": [...]}`), each parsed; a member
/// that is not a JWK object stays as a refused key.
fn parse_keys(jwks: &serde_json::Value) -> Vec<Key> {
    jwks.get("keys")
        .and_then(serde_json::Value::as_array)
        .map(|keys| {
            keys.iter()
                .map(|k| Key::parse(RawJwk::deserialize(k).unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default()
}

/// The members of a JWK this module reads.
#[derive(Debug, Default, Deserialize)]
struct RawJwk {
    #[serde(default)]
    kty: String,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

/// What a JWK's `alg` allows.
#[derive(Debug, Clone, Copy, PartialEq)]
enum KeyAlg {
    /// No `alg`: any algorithm of the key's type.
    Any,
    /// A signing algorithm: that one only.
    Only(Alg),
    /// Something that is not a signing algorithm: none.
    NotForSigning,
}

/// One parsed JWK.
struct Key {
    kid: Option<String>,
    kty: String,
    signing_use: bool,
    alg: KeyAlg,
    /// A parsed key per algorithm it may verify, or why it is refused.
    material: Result<Vec<(Alg, ParsedPublicKey)>, String>,
}

impl Key {
    fn parse(raw: RawJwk) -> Self {
        let alg = match raw.alg.as_deref() {
            None => KeyAlg::Any,
            Some(name) => alg_from_name(name).map_or(KeyAlg::NotForSigning, KeyAlg::Only),
        };
        let algs: Vec<Alg> = match alg {
            KeyAlg::Only(a) => vec![a],
            KeyAlg::Any => match raw.kty.as_str() {
                "RSA" => RSA_ALGS.to_vec(),
                "EC" => vec![Alg::ES256, Alg::ES384],
                "OKP" => vec![Alg::EdDSA, Alg::Ed25519],
                _ => Vec::new(),
            },
            KeyAlg::NotForSigning => Vec::new(),
        };
        let material = match raw.kty.as_str() {
            "RSA" => rsa_verifiers(&raw, &algs),
            "EC" => ec_verifier(&raw, &algs),
            "OKP" => ed_verifier(&raw, &algs),
            other => Err(format!("key type `{other}` cannot verify an ID token")),
        };
        Self {
            kid: raw.kid,
            kty: raw.kty,
            signing_use: raw.use_.as_deref().is_none_or(|u| u == "sig"),
            alg,
            material,
        }
    }

    /// openidconnect's candidate rule: kid, use, kty and the key's alg.
    fn fits(&self, kid: Option<&str>, alg: Alg) -> bool {
        if kid.is_some() && kid != self.kid.as_deref() {
            return false;
        }
        self.signing_use
            && key_type(alg) == Some(self.kty.as_str())
            && match self.alg {
                KeyAlg::Any => true,
                KeyAlg::Only(a) => a == alg,
                KeyAlg::NotForSigning => false,
            }
    }
}

fn decode(member: &'static str, value: Option<&str>) -> Result<Vec<u8>, String> {
    let value = value.ok_or_else(|| format!("`{member}` is missing"))?;
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|e| format!("`{member}` is not base64url: {e}"))
}

fn rsa_verifiers(raw: &RawJwk, algs: &[Alg]) -> Result<Vec<(Alg, ParsedPublicKey)>, String> {
    let n = decode("n", raw.n.as_deref())?;
    let e = decode("e", raw.e.as_deref())?;
    // RFC 7518 forbids leading zeros; some providers send one anyway.
    let n = strip_zeros(&n);
    let e = strip_zeros(&e);
    // An empty (or all-zero) modulus has no bits; `len * 8 - 8` would underflow.
    let bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(format!(
            "an RSA modulus of {bits} bits (allowed: {RSA_MIN_BITS}–{RSA_MAX_BITS})"
        ));
    }
    let exponent = (e.len() <= 8).then(|| e.iter().fold(0u64, |acc, b| acc << 8 | u64::from(*b)));
    match exponent {
        Some(x) if x >= RSA_MIN_EXPONENT && x % 2 == 1 => {}
        _ => {
            return Err(format!(
                "an RSA public exponent other than an odd number ≥ {RSA_MIN_EXPONENT}"
            ));
        }
    }
    let components = RsaPublicKeyComponents { n, e };
    algs.iter()
        .filter_map(|alg| rsa_params(*alg).map(|params| (*alg, params)))
        .map(|(alg, params)| {
            components
                .to_parsed_public_key(params)
                .map(|key| (alg, key))
                .map_err(|e| format!("RSA key: {e}"))
        })
        .collect()
}

fn strip_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

fn rsa_params(alg: Alg) -> Option<&'static signature::RsaParameters> {
    Some(match alg {
        Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
        Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
        Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

fn ec_verifier(raw: &RawJwk, algs: &[Alg]) -> Result<Vec<(Alg, ParsedPublicKey)>, String> {
    let (alg, verification, len): (Alg, &'static signature::EcdsaVerificationAlgorithm, usize) =
        match raw.crv.as_deref() {
            Some("P-256") => (Alg::ES256, &signature::ECDSA_P256_SHA256_FIXED, 32),
            Some("P-384") => (Alg::ES384, &signature::ECDSA_P384_SHA384_FIXED, 48),
            other => return Err(format!("EC curve {other:?} is not supported")),
        };
    let x = decode("x", raw.x.as_deref())?;
    let y = decode("y", raw.y.as_deref())?;
    if x.len() != len || y.len() != len {
        return Err(format!("EC coordinates must be {len} bytes each"));
    }
    if !algs.contains(&alg) {
        // The key's `alg` names another algorithm: nothing to verify with.
        return Ok(Vec::new());
    }
    // The uncompressed point: 0x04 || x || y.
    let mut point = Vec::with_capacity(1 + 2 * len);
    point.push(4);
    point.extend_from_slice(&x);
    point.extend_from_slice(&y);
    let key = ParsedPublicKey::new(verification, point).map_err(|e| format!("EC key: {e}"))?;
    Ok(vec![(alg, key)])
}

/// An Ed25519 key verifies `EdDSA` (RFC 8037) and `Ed25519` (RFC 9864's
/// fully-specified name for the same signature), whichever of `algs` it may.
fn ed_verifier(raw: &RawJwk, algs: &[Alg]) -> Result<Vec<(Alg, ParsedPublicKey)>, String> {
    if raw.crv.as_deref() != Some("Ed25519") {
        return Err(format!("OKP curve {:?} is not supported", raw.crv));
    }
    let x = decode("x", raw.x.as_deref())?;
    [Alg::EdDSA, Alg::Ed25519]
        .into_iter()
        .filter(|alg| algs.contains(alg))
        .map(|alg| {
            ParsedPublicKey::new(&signature::ED25519, x.as_slice())
                .map(|key| (alg, key))
                .map_err(|e| format!("Ed25519 key: {e}"))
        })
        .collect()
}

/// The JWK `kty` an algorithm needs.
fn key_type(alg: Alg) -> Option<&'static str> {
    match alg {
        a if RSA_ALGS.contains(&a) => Some("RSA"),
        Alg::ES256 | Alg::ES384 | Alg::ES512 => Some("EC"),
        Alg::EdDSA | Alg::Ed25519 => Some("OKP"),
        Alg::HS256 | Alg::HS384 | Alg::HS512 => Some("oct"),
        _ => None,
    }
}

/// The JWS algorithms (RFC 7518 §3.1, RFC 8037) by their registered names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::upper_case_acronyms)]
pub(crate) enum Alg {
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
    ES256,
    ES384,
    ES512,
    EdDSA,
    /// EdDSA on Ed25519 under its fully-specified name (RFC 9864), which
    /// providers move to from the polymorphic `EdDSA` (oidc-provider 9 signs
    /// with it).
    Ed25519,
    HS256,
    HS384,
    HS512,
    None,
}

impl Alg {
    /// The same algorithm as openidconnect names it (for its allow-list).
    pub(crate) fn core(self) -> CoreJwsSigningAlgorithm {
        use CoreJwsSigningAlgorithm as C;
        match self {
            Alg::RS256 => C::RsaSsaPkcs1V15Sha256,
            Alg::RS384 => C::RsaSsaPkcs1V15Sha384,
            Alg::RS512 => C::RsaSsaPkcs1V15Sha512,
            Alg::PS256 => C::RsaSsaPssSha256,
            Alg::PS384 => C::RsaSsaPssSha384,
            Alg::PS512 => C::RsaSsaPssSha512,
            Alg::ES256 => C::EcdsaP256Sha256,
            Alg::ES384 => C::EcdsaP384Sha384,
            Alg::ES512 => C::EcdsaP521Sha512,
            // openidconnect has no name of its own for it: an allow-list
            // that takes EdDSA takes its fully-specified Ed25519 form.
            Alg::EdDSA | Alg::Ed25519 => C::EdDsa,
            Alg::HS256 => C::HmacSha256,
            Alg::HS384 => C::HmacSha384,
            Alg::HS512 => C::HmacSha512,
            Alg::None => C::None,
        }
    }
}

/// A JWS algorithm by its registered name; `None` for anything that is not one.
pub(crate) fn alg_from_name(name: &str) -> Option<Alg> {
    Some(match name {
        "RS256" => Alg::RS256,
        "RS384" => Alg::RS384,
        "RS512" => Alg::RS512,
        "PS256" => Alg::PS256,
        "PS384" => Alg::PS384,
        "PS512" => Alg::PS512,
        "ES256" => Alg::ES256,
        "ES384" => Alg::ES384,
        "ES512" => Alg::ES512,
        "EdDSA" => Alg::EdDSA,
        "Ed25519" => Alg::Ed25519,
        "HS256" => Alg::HS256,
        "HS384" => Alg::HS384,
        "HS512" => Alg::HS512,
        "none" => Alg::None,
        _ => return None,
    })
}

/// The protected header members the check reads.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    kid: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    typ: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    cty: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    enc: Option<serde::de::IgnoredAny>,
}

/// A compact JWS split into its parts, header decoded, signature not yet checked.
pub(crate) struct Compact<'a> {
    /// `BASE64URL(header) "." BASE64URL(payload)`: what is signed.
    pub(crate) signing_input: &'a str,
    /// The decoded payload.
    pub(crate) payload: Vec<u8>,
    signature: Vec<u8>,
    alg: Alg,
    alg_name: String,
    kid: Option<String>,
}

impl<'a> Compact<'a> {
    /// Splits and decodes `token`, and applies openidconnect's header rules:
    /// `typ`, when present, is `JWT` (or `application/jwt`, `application/jose`);
    /// no `cty` (nested JWTs), no `crit`, no JWE.
    pub(crate) fn parse(token: &'a str) -> Result<Self, IdTokenError> {
        let malformed = |m: &str| IdTokenError::Malformed(m.to_owned());
        let (signing_input, signature) = token
            .rsplit_once('.')
            .ok_or_else(|| malformed("not a compact JWS"))?;
        let (header, payload) = signing_input
            .split_once('.')
            .ok_or_else(|| malformed("not a compact JWS"))?;
        if payload.contains('.') {
            return Err(malformed("not a compact JWS (more than three parts)"));
        }
        let header = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|e| IdTokenError::Malformed(format!("header: {e}")))?;
        // UTF-8 first (RFC 7515 §4): serde_json checks only the strings it
        // reads, so bytes that are not UTF-8 in a member it skips would pass.
        let header = std::str::from_utf8(&header).map_err(|_| malformed("header: not UTF-8"))?;
        let header: Header<'_> = serde_json::from_str(header)
            .map_err(|e| IdTokenError::Malformed(format!("header: {e}")))?;
        if let Some(typ) = &header.typ {
            let normalised = openidconnect::JsonWebTokenType::new(typ.to_string()).normalize();
            if !normalised
                .is_ok_and(|t| t.as_str() == "application/jwt" || t.as_str() == "application/jose")
            {
                return Err(IdTokenError::Malformed(format!(
                    "unexpected or unsupported JWT type `{typ}`"
                )));
            }
        }
        if header.cty.is_some() {
            return Err(malformed("nested JWTs are not supported (`cty` is set)"));
        }
        if header.crit.is_some() {
            return Err(malformed("critical JWT header fields are unsupported"));
        }
        if header.enc.is_some() {
            return Err(malformed("JWE encryption is not supported"));
        }
        let alg_name = header.alg.into_owned();
        let alg = alg_from_name(&alg_name).ok_or_else(|| {
            IdTokenError::Signature(format!("algorithm `{alg_name}` is not allowed"))
        })?;
        let payload = URL_SAFE_NO_PAD
            .decode(payload)
            .map_err(|e| IdTokenError::Malformed(format!("payload: {e}")))?;
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| IdTokenError::Signature(format!("signature is not base64url: {e}")))?;
        Ok(Self {
            signing_input,
            payload,
            signature,
            alg,
            alg_name,
            kid: header.kid.map(std::borrow::Cow::into_owned),
        })
    }
}
