//! [`ClientKey`]: the private key a client proves itself with at the
//! provider (`private_key_jwt`, RFC 7523 and OpenID Connect Core §9),
//! instead of a secret. The key signs a short-lived JWT (a client
//! assertion) for every token, revocation and device authorization
//! request; the provider holds only the public half. Supplied by the app
//! (PKCS#8, P-256 or RSA), made here, or kept in the OS keychain.

use std::sync::Arc;
use std::time::SystemTime;

use base64::Engine as _;
use serde_json::{Value, json};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::sign::{EcKey, RsaKey};

/// How long a client assertion is valid: the provider must see it within this.
pub(crate) const ASSERTION_LIFETIME_SECS: u64 = 60;

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// A client's private signing key for `private_key_jwt` client
/// authentication: P-256 (signs ES256) or RSA (signs RS256).
///
/// Give it to [`OidcClient::client_key`](crate::OidcClient::client_key)
/// (or [`SessionManagerBuilder::client_key`](crate::SessionManagerBuilder::client_key));
/// register [`public_jwk`](Self::public_jwk) with the provider. Cheap to
/// clone (the key is shared). `Debug` shows the algorithm, the `kid` and the
/// public key's thumbprint, never key material.
///
/// ```
/// use sessionkit::ClientKey;
///
/// let key = ClientKey::generate()?.with_kid("2026-11");
/// // What the provider registers (a JWK Set with this one key).
/// let jwks = serde_json::json!({"keys": [key.public_jwk()]});
/// assert_eq!(jwks["keys"][0]["kid"], "2026-11");
/// assert!(jwks["keys"][0].get("d").is_none(), "public members only");
/// assert!(!format!("{key:?}").contains("PRIVATE"));
/// # Ok::<(), sessionkit::Error>(())
/// ```
#[derive(Clone)]
pub struct ClientKey {
    key: Arc<Signer>,
    kid: Option<String>,
}

enum Signer {
    Ec(EcKey),
    Rsa(RsaKey),
}

impl std::fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientKey")
            .field("alg", &self.alg())
            .field("kid", &self.kid)
            .field("thumbprint", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

impl ClientKey {
    fn new(signer: Signer) -> Self {
        Self {
            key: Arc::new(signer),
            kid: None,
        }
    }

    /// A new random P-256 key (ES256). Keep it with
    /// [`to_pkcs8_der`](Self::to_pkcs8_der), or let
    /// [`from_keychain`](Self::from_keychain) keep it.
    ///
    /// ```
    /// let key = sessionkit::ClientKey::generate()?;
    /// assert_eq!(key.alg(), "ES256");
    /// # Ok::<(), sessionkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] if the key cannot be made.
    pub fn generate() -> Result<Self> {
        Ok(Self::new(Signer::Ec(EcKey::generate()?)))
    }

    /// Reads a private key from PKCS#8 DER: a P-256 key (signs ES256) or an
    /// RSA key of 2048 to 8192 bits (signs RS256).
    ///
    /// ```
    /// use sessionkit::ClientKey;
    ///
    /// let key = ClientKey::generate()?;
    /// let again = ClientKey::from_pkcs8_der(&key.to_pkcs8_der())?;
    /// assert_eq!(again.thumbprint(), key.thumbprint());
    /// assert!(ClientKey::from_pkcs8_der(b"not a key").is_err());
    /// # Ok::<(), sessionkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when the bytes are not such a key (the message
    /// holds none of them).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self> {
        if let Ok(ec) = EcKey::from_pkcs8(der) {
            return Ok(Self::new(Signer::Ec(ec)));
        }
        RsaKey::from_pkcs8(der)
            .map(|rsa| Self::new(Signer::Rsa(rsa)))
            .map_err(|_| {
                Error::Config(
                    "the client key is neither a P-256 nor an RSA private key in PKCS#8".to_owned(),
                )
            })
    }

    /// Reads a private key from PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`,
    /// as `openssl genpkey` writes it): see [`from_pkcs8_der`](Self::from_pkcs8_der).
    ///
    /// ```no_run
    /// // openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out client-key.pem
    /// let pem = std::fs::read_to_string("client-key.pem")?;
    /// let key = sessionkit::ClientKey::from_pkcs8_pem(&pem)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when the text is not one PKCS#8 `PRIVATE KEY`
    /// block (an encrypted key, or SEC1 and PKCS#1 `EC PRIVATE KEY` and
    /// `RSA PRIVATE KEY` blocks, must be converted first), or holds no
    /// usable key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self> {
        const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
        const END: &str = "-----END PRIVATE KEY-----";
        let body = pem
            .split_once(BEGIN)
            .and_then(|(_, rest)| rest.split_once(END))
            .map(|(body, _)| body)
            .ok_or_else(|| {
                Error::Config(format!(
                    "the client key PEM has no {BEGIN} block (convert other formats to PKCS#8)"
                ))
            })?;
        let text: Zeroizing<String> =
            Zeroizing::new(body.chars().filter(|c| !c.is_whitespace()).collect());
        let der = Zeroizing::new(
            base64::engine::general_purpose::STANDARD
                .decode(text.as_bytes())
                .map_err(|_| Error::Config("the client key PEM block is not base64".to_owned()))?,
        );
        Self::from_pkcs8_der(&der)
    }

    /// The same key with a key id: assertions name it in their `kid`
    /// header and [`public_jwk`](Self::public_jwk) carries it, so a provider
    /// that has several keys of the client picks this one.
    ///
    /// ```
    /// let key = sessionkit::ClientKey::generate()?.with_kid("k1");
    /// assert_eq!(key.kid(), Some("k1"));
    /// # Ok::<(), sessionkit::Error>(())
    /// ```
    #[must_use]
    pub fn with_kid(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// The key id, when one was given ([`with_kid`](Self::with_kid)).
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    /// The JWS algorithm it signs with: `ES256` or `RS256`.
    pub fn alg(&self) -> &'static str {
        match &*self.key {
            Signer::Ec(_) => "ES256",
            Signer::Rsa(_) => "RS256",
        }
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key, base64url: a
    /// name for the key that is safe to log.
    pub fn thumbprint(&self) -> &str {
        match &*self.key {
            Signer::Ec(k) => k.thumbprint(),
            Signer::Rsa(k) => k.thumbprint(),
        }
    }

    /// The public key as a JWK to register with the provider: the key's
    /// public members, `use: sig`, `alg`, and `kid` when set.
    ///
    /// ```
    /// let key = sessionkit::ClientKey::generate()?;
    /// let jwk = key.public_jwk();
    /// assert_eq!((jwk["kty"].as_str(), jwk["alg"].as_str()), (Some("EC"), Some("ES256")));
    /// # Ok::<(), sessionkit::Error>(())
    /// ```
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &*self.key {
            Signer::Ec(k) => k.public_jwk(),
            Signer::Rsa(k) => k.public_jwk(),
        };
        jwk["use"] = json!("sig");
        jwk["alg"] = json!(self.alg());
        if let Some(kid) = &self.kid {
            jwk["kid"] = json!(kid);
        }
        jwk
    }

    /// The private key as PKCS#8 DER, to keep it somewhere safe (zeroized
    /// when dropped). Secret: anyone who has it can act as the client.
    ///
    /// ```
    /// let key = sessionkit::ClientKey::generate()?;
    /// let der = key.to_pkcs8_der();
    /// assert_eq!(sessionkit::ClientKey::from_pkcs8_der(&der)?.thumbprint(), key.thumbprint());
    /// # Ok::<(), sessionkit::Error>(())
    /// ```
    pub fn to_pkcs8_der(&self) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(
            match &*self.key {
                Signer::Ec(k) => k.pkcs8(),
                Signer::Rsa(k) => k.pkcs8(),
            }
            .to_vec(),
        )
    }

    /// A client assertion (RFC 7523 §3) of `client_id` for the provider
    /// `audience` (its issuer identifier), made at `now`: `iss` and `sub`
    /// the client, a random `jti`, valid for [`ASSERTION_LIFETIME_SECS`].
    pub(crate) fn assertion(
        &self,
        client_id: &str,
        audience: &str,
        now: SystemTime,
    ) -> Result<String> {
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let claims = json!({
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "jti": crate::login::random_secret(),
            "iat": iat,
            "exp": iat + ASSERTION_LIFETIME_SECS,
        });
        let mut header = json!({"typ": "JWT"});
        if let Some(kid) = &self.kid {
            header["kid"] = json!(kid);
        }
        match &*self.key {
            Signer::Ec(k) => k.sign(header, &claims),
            Signer::Rsa(k) => k.sign(header, &claims),
        }
    }
}

#[cfg(feature = "keychain")]
impl ClientKey {
    /// The key kept in the OS keychain under `service` and `name`, or a new
    /// P-256 key stored there now: the first run of the app makes the key
    /// (register its [`public_jwk`](Self::public_jwk) with the provider
    /// then), later runs find it. The keychain is the one
    /// [`KeychainStore::auto`](crate::KeychainStore::auto) picks; see
    /// [`from_keychain_in`](Self::from_keychain_in) to choose it.
    ///
    /// Blocks (keychain calls); call it from `spawn_blocking` in async code.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use sessionkit::{ClientKey, SessionManager};
    ///
    /// let key = tokio::task::spawn_blocking(|| ClientKey::from_keychain("my-app", "client-key"))
    ///     .await??;
    /// println!("register this key with the provider: {}", key.public_jwk());
    /// let sessions = SessionManager::builder("https://id.example.com", "my-app")
    ///     .client_key(key)
    ///     .build()
    ///     .await?;
    /// # let _ = sessions; Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::Store`] when the keychain cannot be opened or used
    /// ([`StoreError::Corrupt`](crate::StoreError::Corrupt) when the entry
    /// holds no key: it is not replaced).
    pub fn from_keychain(service: &str, name: &str) -> Result<Self> {
        let store = crate::store::KeychainStore::auto()?;
        Self::from_keychain_in(&store, service, name)
    }

    /// [`from_keychain`](Self::from_keychain) in a keychain of the app's
    /// choice (such as [`KeychainStore::secret_service`](crate::KeychainStore::secret_service)).
    /// The entry is kept like a refresh token: on Apple platforms only while
    /// the device is unlocked, never synced; on Windows never roaming.
    ///
    /// ```no_run
    /// use sessionkit::{ClientKey, KeychainStore};
    ///
    /// let store = KeychainStore::keyutils()?;
    /// let key = ClientKey::from_keychain_in(&store, "my-app", "client-key")?;
    /// # let _ = key; Ok::<(), sessionkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_keychain`](Self::from_keychain).
    pub fn from_keychain_in(
        store: &crate::store::KeychainStore,
        service: &str,
        name: &str,
    ) -> Result<Self> {
        use crate::error::StoreError;
        let read = |text: &str| {
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .ok()
                .map(Zeroizing::new)
                .and_then(|der| Self::from_pkcs8_der(&der).ok())
                .ok_or_else(|| {
                    Error::Store(StoreError::Corrupt(
                        "the client key entry holds no PKCS#8 key".to_owned(),
                    ))
                })
        };
        match store.read_client_key(service, name) {
            Ok(text) => return read(&text),
            Err(StoreError::NotFound) => {}
            Err(err) => return Err(err.into()),
        }
        let key = Self::generate()?;
        let text = Zeroizing::new(
            base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8_der().as_slice()),
        );
        store.write_client_key(service, name, text)?;
        tracing::info!(
            backend = store.backend().name(),
            thumbprint = key.thumbprint(),
            "made a new client key and kept it in the keychain"
        );
        // Another process may have stored its own meanwhile: the stored one wins.
        read(&store.read_client_key(service, name)?)
    }

    /// Deletes the key kept under `service` and `name` (absent is fine):
    /// the next [`from_keychain_in`](Self::from_keychain_in) makes a new one.
    ///
    /// ```no_run
    /// use sessionkit::{ClientKey, KeychainStore};
    ///
    /// ClientKey::delete_from_keychain(&KeychainStore::auto()?, "my-app", "client-key")?;
    /// # Ok::<(), sessionkit::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Store`] when the keychain cannot be used.
    pub fn delete_from_keychain(
        store: &crate::store::KeychainStore,
        service: &str,
        name: &str,
    ) -> Result<()> {
        Ok(store.delete_client_key(service, name)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    #[test]
    fn debug_and_errors_show_no_key_material() {
        let key = ClientKey::generate().expect("key").with_kid("k-1");
        let der = key.to_pkcs8_der();
        let pem_body = base64::engine::general_purpose::STANDARD.encode(der.as_slice());
        let shown = format!("{key:?}");
        assert!(
            shown.contains(key.thumbprint()) && shown.contains("k-1"),
            "{shown}"
        );
        assert!(!shown.contains(&pem_body[..40]), "{shown}");
        // A key that does not parse is not echoed back in the error.
        let mut broken = der.to_vec();
        broken.truncate(der.len() - 5);
        let broken_b64 = base64::engine::general_purpose::STANDARD.encode(&broken);
        let pem = format!("-----BEGIN PRIVATE KEY-----\n{broken_b64}\n-----END PRIVATE KEY-----\n");
        let err = ClientKey::from_pkcs8_pem(&pem).expect_err("truncated");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(&broken_b64[..40]), "{shown}");
    }

    #[test]
    fn pem_round_trips_and_other_labels_are_refused() {
        let key = ClientKey::generate().expect("key");
        let b64 = base64::engine::general_purpose::STANDARD.encode(key.to_pkcs8_der().as_slice());
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).expect("ascii"))
            .collect();
        let pem = format!(
            "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
            lines.join("\n")
        );
        let again = ClientKey::from_pkcs8_pem(&pem).expect("reads");
        assert_eq!(again.thumbprint(), key.thumbprint());
        let sec1 = pem.replace("PRIVATE KEY", "EC PRIVATE KEY");
        assert!(matches!(
            ClientKey::from_pkcs8_pem(&sec1),
            Err(Error::Config(_))
        ));
    }

    #[test]
    fn an_assertion_names_the_client_the_audience_and_lives_a_minute() {
        let key = ClientKey::generate().expect("key").with_kid("k-2");
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let jwt = key
            .assertion("app", "https://id.example", now)
            .expect("signs");
        let part = |i: usize| -> Value {
            let raw = jwt.split('.').nth(i).expect("part");
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(raw).expect("b64")).expect("json")
        };
        let (header, claims) = (part(0), part(1));
        assert_eq!(
            (header["alg"].as_str(), header["kid"].as_str()),
            (Some("ES256"), Some("k-2"))
        );
        assert_eq!(
            (claims["iss"].as_str(), claims["sub"].as_str()),
            (Some("app"), Some("app"))
        );
        assert_eq!(claims["aud"], "https://id.example");
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_060);
        let other = key
            .assertion("app", "https://id.example", now)
            .expect("signs");
        assert_ne!(jwt, other, "every assertion has its own jti");
    }
}
