//! DPoP (RFC 9449): the account's proof-of-possession key, the proofs signed
//! with it, and the nonces providers and resource servers hand out.
//!
//! A client set to use DPoP ([`crate::OidcClient::dpop`]) makes a new P-256
//! key at each login, binds the authorization code to it (`dpop_jkt`), and
//! sends a proof with every token, refresh and revocation request and with
//! every API call of [`crate::AuthedClient`]. The key is kept in the
//! account's session entry (the keychain, next to the tokens) and deleted
//! with it at logout. A `use_dpop_nonce` answer is retried once with the
//! nonce; the latest nonce of each origin is kept for the next proof.
//!
//! Proofs are signed with ES256 only ([`DpopKey::ALG`]). A provider whose
//! discovery document lists `dpop_signing_alg_values_supported` without it
//! is refused before a login starts, and a resource server whose `401`
//! challenge lists `algs` without it is reported as such instead of being
//! answered with a refresh ([`crate::Error::DpopAlgorithm`], both).
//!
//! (Over 500 lines: the key, its proofs and what servers say back about
//! them are one concern; the unit tests at the end are about half of it.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::error::{Error, Result};
use crate::secret::AccessToken;
use crate::sign::EcKey;

/// The header carrying a proof.
pub(crate) const DPOP: &str = "DPoP";
/// The header carrying a server's nonce.
pub(crate) const DPOP_NONCE: &str = "DPoP-Nonce";
/// The error code of a nonce challenge.
pub(crate) const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// An account's DPoP key: a P-256 key pair whose public half the tokens are
/// bound to (`cnf.jkt`). Cheap to clone; `Debug` shows the thumbprint only.
///
/// The SDK makes and keeps these itself; an app sees one to learn what its
/// tokens are bound to, or to sign proofs for requests it makes without
/// [`crate::AuthedClient`] (see [`crate::Session::dpop_proof`]).
///
/// ```
/// let key = sessionkit::DpopKey::generate()?;
/// assert_eq!(key.thumbprint().len(), 43); // base64url of a SHA-256
/// # Ok::<(), sessionkit::Error>(())
/// ```
#[derive(Clone)]
pub struct DpopKey(Arc<EcKey>);

impl DpopKey {
    /// The JWS algorithm every proof is signed with: ES256 (ECDSA with
    /// P-256 and SHA-256), the one every DPoP server is expected to take.
    ///
    /// ```
    /// assert_eq!(sessionkit::DpopKey::ALG, "ES256");
    /// ```
    pub const ALG: &'static str = "ES256";

    /// A new random P-256 key.
    ///
    /// # Errors
    /// [`Error::Config`] if the system's random source fails.
    pub fn generate() -> Result<Self> {
        Ok(Self(Arc::new(EcKey::generate()?)))
    }

    /// The key's RFC 7638 thumbprint: the `jkt` tokens bound to it carry.
    pub fn thumbprint(&self) -> &str {
        self.0.thumbprint()
    }

    /// A proof for one request: `method` and `url` (its query and fragment
    /// are left out, as RFC 9449 §4.2 asks), `ath` when an access token is
    /// sent with it, the server's `nonce` when it gave one, issued `now`.
    ///
    /// ```
    /// # use std::time::SystemTime;
    /// let key = sessionkit::DpopKey::generate()?;
    /// let proof = key.proof("GET", "https://api.example/notes?page=2", None, None, SystemTime::now())?;
    /// assert_eq!(proof.split('.').count(), 3); // a compact JWS, `typ: dpop+jwt`
    /// # Ok::<(), sessionkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when `url` is not an absolute URL.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&AccessToken>,
        nonce: Option<&str>,
        now: SystemTime,
    ) -> Result<String> {
        let mut htu = url::Url::parse(url)
            .map_err(|_| Error::Config("a DPoP proof needs an absolute URL".to_owned()))?;
        htu.set_query(None);
        htu.set_fragment(None);
        let iat = now
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut claims = json!({
            "jti": crate::login::random_secret(),
            "htm": method,
            "htu": htu.as_str(),
            "iat": iat,
        });
        if let Some(token) = access_token {
            claims["ath"] = crate::sign::sha256_b64(token.secret().as_bytes()).into();
        }
        if let Some(nonce) = nonce {
            claims["nonce"] = nonce.into();
        }
        self.0.sign(
            json!({"typ": "dpop+jwt", "jwk": self.0.public_jwk()}),
            &claims,
        )
    }

    /// Reads a key stored with [`DpopKey::to_stored`].
    pub(crate) fn from_stored(text: &str) -> Result<Self> {
        use base64::Engine as _;
        let der = zeroize::Zeroizing::new(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .map_err(|_| Error::Config("the stored DPoP key is not base64url".to_owned()))?,
        );
        Ok(Self(Arc::new(EcKey::from_pkcs8(&der)?)))
    }

    /// The private key as base64url PKCS#8, for the session entry (secret).
    pub(crate) fn to_stored(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(crate::sign::b64(self.0.pkcs8()))
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.thumbprint() == other.thumbprint()
    }
}

impl Eq for DpopKey {}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("DpopKey").field(&self.thumbprint()).finish()
    }
}

/// The latest nonce each origin gave (RFC 9449 §8, §9), shared by a
/// client's clones. Bounded: an origin's nonce replaces its previous one,
/// and past [`Nonces::MAX_ORIGINS`] origins the map starts over.
#[derive(Debug, Default, Clone)]
pub(crate) struct Nonces(Arc<Mutex<HashMap<String, String>>>);

impl Nonces {
    const MAX_ORIGINS: usize = 256;

    fn origin(url: &str) -> Option<String> {
        url::Url::parse(url)
            .ok()
            .map(|u| u.origin().ascii_serialization())
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The nonce `url`'s origin gave last.
    pub(crate) fn get(&self, url: &str) -> Option<String> {
        self.map().get(&Self::origin(url)?).cloned()
    }

    /// Keeps the `DPoP-Nonce` of an answer from `url`, if it has one;
    /// returns it.
    pub(crate) fn keep(&self, url: &str, headers: &reqwest::header::HeaderMap) -> Option<String> {
        let nonce = headers
            .get(DPOP_NONCE)?
            .to_str()
            .ok()
            .filter(|n| !n.is_empty() && n.len() <= 512)?
            .to_owned();
        let origin = Self::origin(url)?;
        let mut map = self.map();
        if map.len() >= Self::MAX_ORIGINS && !map.contains_key(&origin) {
            map.clear();
        }
        map.insert(origin, nonce.clone());
        Some(nonce)
    }
}

/// Most algorithms a [`crate::Error::DpopAlgorithm`] keeps from a server's list.
const MAX_LISTED_ALGS: usize = 16;
/// Longest algorithm name it keeps (a longer one is cut).
const MAX_ALG_CHARS: usize = 64;

/// Refuses a server (`server`: the issuer or the origin, for the error)
/// that lists the algorithms it takes DPoP proofs signed with (`listed`,
/// `None` when it says nothing) and does not list [`DpopKey::ALG`]: a
/// proof would only be refused. Names are compared exactly, as JWS `alg`
/// values are case-sensitive (RFC 7515 §4.1.1).
pub(crate) fn check_algs<S: AsRef<str>>(server: &str, listed: Option<&[S]>) -> Result<()> {
    let Some(listed) = listed else {
        return Ok(());
    };
    if listed.iter().any(|alg| alg.as_ref() == DpopKey::ALG) {
        return Ok(());
    }
    Err(Error::DpopAlgorithm {
        server: server.to_owned(),
        accepted: listed
            .iter()
            .take(MAX_LISTED_ALGS)
            .map(|alg| alg.as_ref().chars().take(MAX_ALG_CHARS).collect())
            .collect(),
        signs_with: DpopKey::ALG,
    })
}

/// Is there a DPoP nonce challenge (RFC 9449 §9) among the answer's
/// `WWW-Authenticate` challenges — in a header of its own, or after
/// another scheme's in the same header (`Bearer realm="x", DPoP error=…`)?
pub(crate) fn is_nonce_challenge(headers: &reqwest::header::HeaderMap) -> bool {
    challenge_values(headers).any(|value| {
        dpop_params(value)
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("error") && *v == USE_DPOP_NONCE)
    })
}

/// The algorithms the answer's `DPoP` challenge lists (`algs="ES256 PS256"`,
/// RFC 9449 §7.1), when it has the parameter; the first one found counts.
pub(crate) fn challenge_algs(headers: &reqwest::header::HeaderMap) -> Option<Vec<String>> {
    challenge_values(headers).find_map(|value| {
        dpop_params(value)
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("algs"))
            .map(|(_, v)| v.split_ascii_whitespace().map(str::to_owned).collect())
    })
}

/// The answer's `WWW-Authenticate` values that are text.
fn challenge_values(headers: &reqwest::header::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
}

/// The parameters of the `DPoP` challenges in one header value, names and
/// values trimmed (and values unquoted). The value is a comma-separated
/// list (commas inside quotes do not count) of items that either start a
/// challenge (`SCHEME` or `SCHEME param=value`) or continue it
/// (`param=value`).
fn dpop_params(value: &str) -> Vec<(&str, &str)> {
    let mut items = Vec::new();
    let (mut quoted, mut escaped, mut start) = (false, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                items.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&value[start..]);
    let mut in_dpop = false;
    let mut params = Vec::new();
    for item in items.iter().map(|i| i.trim()) {
        let param = match item.split_once(' ') {
            Some((scheme, rest)) if !scheme.contains('=') => {
                in_dpop = scheme.eq_ignore_ascii_case("dpop");
                rest
            }
            None if !item.contains('=') && !item.is_empty() => {
                in_dpop = item.eq_ignore_ascii_case("dpop");
                continue;
            }
            _ => item,
        };
        if in_dpop && let Some((k, v)) = param.split_once('=') {
            params.push((k.trim(), v.trim().trim_matches('"')));
        }
    }
    params
}

/// What a request to the provider signs its proofs with.
#[derive(Clone, Copy)]
pub(crate) struct Prover<'a> {
    pub(crate) key: &'a DpopKey,
    /// Whose metadata says which algorithms it takes.
    pub(crate) provider: &'a crate::provider::Provider,
    pub(crate) nonces: &'a Nonces,
    pub(crate) now: SystemTime,
}

impl Prover<'_> {
    /// A proof for `method url` with the nonce the URL's origin gave last;
    /// [`Error::DpopAlgorithm`] instead when the provider lists algorithms
    /// without ours (a key of an earlier login, the metadata changed since).
    pub(crate) fn proof(&self, method: &str, url: &str, nonce: Option<&str>) -> Result<String> {
        self.provider.check_dpop_algs()?;
        let kept = self.nonces.get(url);
        self.key
            .proof(method, url, None, nonce.or(kept.as_deref()), self.now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sessionkit_mock_idp::dpop::{
        Nonces as ServerNonces, ProofRequest, ReplayCache, verify_proof,
    };
    use std::time::Duration;

    fn now() -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64
    }

    #[test]
    fn proofs_verify_at_a_strict_provider_and_bind_the_token() {
        let key = DpopKey::generate().expect("key");
        let token = AccessToken::new("at-123".to_owned());
        let proof = key
            .proof(
                "POST",
                "https://api.example/notes?x=1#f",
                Some(&token),
                None,
                SystemTime::now(),
            )
            .expect("proof");
        let verified = verify_proof(
            &ProofRequest::new("POST", "https://api.example/notes", &proof).access_token("at-123"),
            now(),
            &ReplayCache::default(),
        )
        .expect("verifies");
        assert_eq!(verified.jkt(), key.thumbprint());
        // Another token, another method: refused.
        assert!(
            verify_proof(
                &ProofRequest::new("POST", "https://api.example/notes", &proof)
                    .access_token("other"),
                now(),
                &ReplayCache::default(),
            )
            .is_err()
        );
        assert!(
            verify_proof(
                &ProofRequest::new("GET", "https://api.example/notes", &proof),
                now(),
                &ReplayCache::default()
            )
            .is_err()
        );
    }

    #[test]
    fn a_nonce_is_carried_and_each_proof_is_new() {
        let key = DpopKey::generate().expect("key");
        let server = ServerNonces::new(300);
        let nonce = server.current(now());
        let a = key
            .proof(
                "GET",
                "https://rs.example/",
                None,
                Some(&nonce),
                SystemTime::now(),
            )
            .expect("proof");
        let b = key
            .proof(
                "GET",
                "https://rs.example/",
                None,
                Some(&nonce),
                SystemTime::now(),
            )
            .expect("proof");
        assert_ne!(a, b, "a fresh jti each time");
        verify_proof(
            &ProofRequest::new("GET", "https://rs.example/", &a).require_nonce(&server),
            now(),
            &ReplayCache::default(),
        )
        .expect("the nonce is accepted");
        let old = key
            .proof(
                "GET",
                "https://rs.example/",
                None,
                None,
                SystemTime::now() - Duration::from_secs(3600),
            )
            .expect("proof");
        assert!(
            verify_proof(
                &ProofRequest::new("GET", "https://rs.example/", &old),
                now(),
                &ReplayCache::default()
            )
            .is_err()
        );
    }

    #[test]
    fn proofs_are_signed_with_the_alg_the_checks_compare_with() {
        use base64::Engine as _;
        let key = DpopKey::generate().expect("key");
        let proof = key
            .proof("GET", "https://rs.example/", None, None, SystemTime::now())
            .expect("proof");
        let header = proof.split('.').next().expect("header");
        let header: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(header)
                .expect("base64url"),
        )
        .expect("json");
        assert_eq!(header["alg"], DpopKey::ALG);
    }

    #[test]
    fn a_server_listing_algs_without_ours_is_refused_and_an_unknown_list_is_not() {
        let listed = |algs: &[&str]| algs.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
        assert!(check_algs::<String>("https://id.example", None).is_ok());
        assert!(check_algs("https://id.example", Some(&listed(&["PS256", "ES256"])[..])).is_ok());
        let err = check_algs("https://id.example", Some(&listed(&["RS256", "PS256"])[..]))
            .expect_err("no ES256");
        match &err {
            Error::DpopAlgorithm {
                server,
                accepted,
                signs_with,
            } => {
                assert_eq!(server, "https://id.example");
                assert_eq!(accepted, &["RS256", "PS256"]);
                assert_eq!(*signs_with, "ES256");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            err.to_string(),
            "https://id.example accepts DPoP proofs signed with RS256, PS256 only, \
             but sessionkit signs them with ES256"
        );
        assert!(!err.is_transient() && !err.is_signed_out());
        // Names are case-sensitive (RFC 7515 §4.1.1); an empty list takes nothing.
        assert!(check_algs("x", Some(&listed(&["es256"])[..])).is_err());
        let none = check_algs::<String>("x", Some(&[])).expect_err("empty");
        assert!(none.to_string().contains("(none)"), "{none}");
        // A long list from a server is cut in the error.
        let long: Vec<String> = (0..100).map(|i| format!("A{}", "x".repeat(i))).collect();
        let Err(Error::DpopAlgorithm { accepted, .. }) = check_algs("x", Some(&long[..])) else {
            panic!("refused");
        };
        assert_eq!(accepted.len(), MAX_LISTED_ALGS);
        assert!(accepted.iter().all(|a| a.chars().count() <= MAX_ALG_CHARS));
    }

    #[test]
    fn a_challenges_algs_are_read_from_its_dpop_scheme_only() {
        use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
        let algs = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(WWW_AUTHENTICATE, HeaderValue::from_static(v));
            }
            challenge_algs(&headers)
        };
        let some = |algs: &[&str]| Some(algs.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>());
        assert_eq!(algs(&[]), None);
        assert_eq!(algs(&[r#"Bearer realm="api""#]), None);
        assert_eq!(algs(&[r#"DPoP error="invalid_token""#]), None);
        assert_eq!(
            algs(&[r#"DPoP algs="ES256 PS256""#]),
            some(&["ES256", "PS256"])
        );
        assert_eq!(
            algs(&[
                r#"Bearer realm="a, algs=ES256", DPoP error="invalid_dpop_proof", ALGS="RS256""#
            ]),
            some(&["RS256"])
        );
        assert_eq!(
            algs(&[r#"Bearer algs="ES256""#, "DPoP algs=PS256"]),
            some(&["PS256"]),
            "a Bearer challenge's parameter is not DPoP's"
        );
        assert_eq!(algs(&[r#"DPoP algs="""#]), some(&[]));
    }

    #[test]
    fn the_key_round_trips_through_its_stored_form_and_never_prints() {
        let key = DpopKey::generate().expect("key");
        let stored = key.to_stored();
        let again = DpopKey::from_stored(&stored).expect("reads");
        assert_eq!(key, again);
        let shown = format!("{key:?}");
        assert!(shown.contains(key.thumbprint()));
        assert!(!shown.contains(stored.as_str()));
        assert!(DpopKey::from_stored("!!").is_err());
    }

    #[test]
    fn nonces_are_kept_per_origin_and_challenges_recognised() {
        use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
        let nonces = Nonces::default();
        let mut headers = HeaderMap::new();
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n-1"));
        assert_eq!(
            nonces.keep("https://a.example/token", &headers).as_deref(),
            Some("n-1")
        );
        assert_eq!(
            nonces.get("https://a.example/other").as_deref(),
            Some("n-1")
        );
        assert_eq!(nonces.get("https://b.example/"), None);
        assert!(!is_nonce_challenge(&headers));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="use_dpop_nonce", error_description="x""#),
        );
        assert!(is_nonce_challenge(&headers));
        headers.insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="use_dpop_nonce""#),
        );
        assert!(!is_nonce_challenge(&headers));
        for (value, expected) in [
            (
                r#"Bearer realm="api", DPoP error="use_dpop_nonce", algs="ES256""#,
                true,
            ),
            (r#"DPoP algs="ES256", error="use_dpop_nonce""#, true),
            ("dpop ERROR=use_dpop_nonce", true),
            (
                r#"DPoP error="invalid_token", Bearer error="use_dpop_nonce""#,
                false,
            ),
            (r#"Bearer realm="dpop, error=use_dpop_nonce""#, false),
            (
                r#"DPoP error="invalid_dpop_proof", error_description="use_dpop_nonce""#,
                false,
            ),
        ] {
            headers.insert(WWW_AUTHENTICATE, HeaderValue::from_static(value));
            assert_eq!(is_nonce_challenge(&headers), expected, "{value}");
        }
    }
}
