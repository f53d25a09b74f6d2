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

/// Is there a DPoP nonce challenge (RFC 9449 §9) among the answer's
/// `WWW-Authenticate` challenges — in a header of its own, or after
/// another scheme's in the same header (`Bearer realm="x", DPoP error=…`)?
pub(crate) fn is_nonce_challenge(headers: &reqwest::header::HeaderMap) -> bool {
    headers
        .get_all(reqwest::header::WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(asks_for_a_nonce)
}

/// Does one header value hold a `DPoP` challenge with
/// `error="use_dpop_nonce"`? The value is a comma-separated list (commas
/// inside quotes do not count) of items that either start a challenge
/// (`SCHEME` or `SCHEME param=value`) or continue it (`param=value`).
fn asks_for_a_nonce(value: &str) -> bool {
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
        let is_nonce_error = param.split_once('=').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("error") && v.trim().trim_matches('"') == USE_DPOP_NONCE
        });
        if in_dpop && is_nonce_error {
            return true;
        }
    }
    false
}

/// What a request to the provider signs its proofs with.
#[derive(Clone, Copy)]
pub(crate) struct Prover<'a> {
    pub(crate) key: &'a DpopKey,
    pub(crate) nonces: &'a Nonces,
    pub(crate) now: SystemTime,
}

impl Prover<'_> {
    /// A proof for `method url` with the nonce the URL's origin gave last.
    pub(crate) fn proof(&self, method: &str, url: &str, nonce: Option<&str>) -> Result<String> {
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
