//! Discovery: the provider's metadata and keys, fetched through openidconnect
//! over our own HTTP client, cached in memory. The issuer must match exactly,
//! plain `http` is refused unless the issuer is a loopback address, and the
//! endpoints openidconnect's core type does not read (revocation, device
//! authorization, end session, RFC 9207) are read too. On a `kid` the cached
//! JWKS lacks, the JWKS is fetched again — at most once per interval.
//!
//! (Over 500 lines: discovery, its error mapping and the key cache are one
//! concern; about 180 lines at the end are their unit tests.)

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreClaimName, CoreClaimType, CoreClientAuthMethod, CoreGrantType,
    CoreJsonWebKey, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AdditionalProviderMetadata, AsyncHttpClient, DiscoveryError, HttpRequest, HttpResponse,
    IssuerUrl, ProviderMetadata,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::http::HttpClient;
use crate::jws::Jwks;

/// Discovery fields that openidconnect's core metadata lacks.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[non_exhaustive]
pub struct ExtraMetadata {
    /// RFC 7009 revocation endpoint.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
    /// RFC 7662 introspection endpoint.
    #[serde(default)]
    pub introspection_endpoint: Option<String>,
    /// RFC 8628 device authorization endpoint.
    #[serde(default)]
    pub device_authorization_endpoint: Option<String>,
    /// RP-initiated logout endpoint.
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
    /// The provider's account sessions (devices) API, where it has one.
    #[serde(default)]
    pub account_sessions_endpoint: Option<String>,
    /// The scope a sign-in must ask for so that its access tokens are
    /// accepted by the account sessions API, where the provider names one
    /// (see [`OidcClient::manage_devices`](crate::OidcClient::manage_devices)).
    #[serde(default)]
    pub account_sessions_scope: Option<String>,
    /// RFC 9207: the provider puts `iss` on authorization responses.
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: Option<bool>,
    /// PKCE methods; only S256 is used.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
    /// RFC 9126 pushed authorization request endpoint.
    #[serde(default)]
    pub pushed_authorization_request_endpoint: Option<String>,
    /// RFC 9126: the provider takes authorization requests only through
    /// its pushed authorization request endpoint.
    #[serde(default)]
    pub require_pushed_authorization_requests: Option<bool>,
    /// RFC 9449 §5.1: the JWS algorithms the provider accepts DPoP proofs
    /// signed with. `None` when the provider does not say (then nothing is
    /// known, and the SDK signs with ES256 as always); a list without
    /// ES256 makes a DPoP client refuse to sign in
    /// ([`Error::DpopAlgorithm`](crate::Error::DpopAlgorithm)). A value
    /// that is not a list of strings counts as not said: it is advice for
    /// DPoP clients only, and must not break discovery for every client.
    #[serde(default, deserialize_with = "list_or_unknown")]
    pub dpop_signing_alg_values_supported: Option<Vec<String>>,
}

/// A list of strings, or `None` for any other JSON value.
fn list_or_unknown<'de, D>(deserializer: D) -> std::result::Result<Option<Vec<String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = <serde_json::Value as serde::Deserialize>::deserialize(deserializer)?;
    Ok(serde_json::from_value(value).ok())
}

impl AdditionalProviderMetadata for ExtraMetadata {}

/// openidconnect's provider metadata with [`ExtraMetadata`].
pub type Metadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// Refuses a URL (`what`: which one, for the message) that is not
/// `https`, unless it is `http` to a loopback address (development).
fn check_secure_url(what: &str, value: &str) -> Result<url::Url> {
    let url = url::Url::parse(value)
        .map_err(|e| Error::Config(format!("{what} {value:?} is not a URL: {e}")))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" => {
            let loopback = match url.host() {
                Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
                Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(url)
            } else {
                Err(Error::Config(format!(
                    "{what} {value:?} uses plain http; only https is allowed, except for a \
                     loopback address (127.0.0.1, [::1], localhost) during development"
                )))
            }
        }
        other => Err(Error::Config(format!(
            "{what} {value:?} has scheme {other:?}; use https"
        ))),
    }
}

/// Every URL of the metadata that codes, tokens, secrets or the ID token
/// travel to, or keys come from, must be `https` (or loopback `http`): a
/// proxy that terminates TLS and advertises `http://` endpoints would
/// otherwise have them sent in clear text.
fn check_endpoints(metadata: &Metadata) -> Result<()> {
    let extra = metadata.additional_metadata();
    let urls = [
        (
            "authorization_endpoint",
            Some(metadata.authorization_endpoint().as_str()),
        ),
        (
            "token_endpoint",
            metadata.token_endpoint().map(|u| u.as_str()),
        ),
        (
            "userinfo_endpoint",
            metadata.userinfo_endpoint().map(|u| u.as_str()),
        ),
        ("jwks_uri", Some(metadata.jwks_uri().as_str())),
        ("revocation_endpoint", extra.revocation_endpoint.as_deref()),
        (
            "introspection_endpoint",
            extra.introspection_endpoint.as_deref(),
        ),
        (
            "device_authorization_endpoint",
            extra.device_authorization_endpoint.as_deref(),
        ),
        (
            "end_session_endpoint",
            extra.end_session_endpoint.as_deref(),
        ),
        (
            "account_sessions_endpoint",
            extra.account_sessions_endpoint.as_deref(),
        ),
        (
            "pushed_authorization_request_endpoint",
            extra.pushed_authorization_request_endpoint.as_deref(),
        ),
    ];
    for (what, url) in urls {
        if let Some(url) = url {
            check_secure_url(what, url)?;
        }
    }
    Ok(())
}

/// Refuses an issuer that is not `https`, unless it is a loopback address.
pub fn check_issuer_url(issuer: &str) -> Result<url::Url> {
    let url = check_secure_url("issuer", issuer)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(Error::Config(format!(
            "issuer {issuer:?} must have no query or fragment"
        )));
    }
    Ok(url)
}

#[derive(Debug)]
struct Inner {
    issuer: String,
    metadata: Metadata,
    jwks: RwLock<Arc<Jwks>>,
    last_refetch: Mutex<Option<Instant>>,
    refetch_interval: Duration,
    http: HttpClient,
}

/// A discovered provider: metadata and keys, cached. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Provider {
    inner: Arc<Inner>,
}

impl Provider {
    /// Fetches `{issuer}/.well-known/openid-configuration` and the JWKS.
    ///
    /// ```no_run
    /// # async fn demo() -> sessionkit::Result<()> {
    /// let http = sessionkit::HttpClient::new()?;
    /// let provider = sessionkit::Provider::discover("https://id.example.com", &http).await?;
    /// println!("token endpoint: {:?}", provider.metadata().token_endpoint());
    /// # Ok(()) }
    /// ```
    pub async fn discover(issuer: &str, http: &HttpClient) -> Result<Self> {
        let keeping = KeepLastBody::new(http);
        let provider = Self::discover_through(issuer, &keeping, http).await?;
        // The last answer was the JWKS: read it as sent (openidconnect's
        // parse leaves out keys with an `alg` it does not know).
        let jwks = keeping.jwks(provider.metadata().jwks());
        *provider
            .inner
            .jwks
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(jwks);
        Ok(provider)
    }

    /// [`Provider::discover`] with the two requests (the document, the
    /// JWKS) sent through `fetch`; `http` is kept for every later call.
    /// The fuzz targets answer through `fetch` with their input.
    pub(crate) async fn discover_through<'c, C: AsyncHttpClient<'c>>(
        issuer: &str,
        fetch: &'c C,
        http: &HttpClient,
    ) -> Result<Self> {
        check_issuer_url(issuer)?;
        let issuer_url =
            IssuerUrl::new(issuer.to_owned()).map_err(|e| Error::Config(format!("issuer: {e}")))?;
        let metadata = Metadata::discover_async(issuer_url, fetch)
            .await
            .map_err(discovery_error)?;
        check_endpoints(&metadata)?;
        let jwks = Jwks::new(metadata.jwks().clone());
        tracing::debug!(issuer, keys = jwks.len(), "discovered provider");
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: issuer.to_owned(),
                metadata,
                jwks: RwLock::new(Arc::new(jwks)),
                last_refetch: Mutex::new(None),
                refetch_interval: Duration::from_secs(10),
                http: http.clone(),
            }),
        })
    }

    /// The issuer, exactly as discovered.
    pub fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// The full metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.inner.metadata
    }

    /// The metadata fields openidconnect's core type lacks.
    pub fn extra(&self) -> &ExtraMetadata {
        self.inner.metadata.additional_metadata()
    }

    /// Does the provider put `iss` on authorization responses (RFC 9207)?
    pub fn supports_iss_parameter(&self) -> bool {
        self.extra().authorization_response_iss_parameter_supported == Some(true)
    }

    /// Refuses DPoP with this provider when its metadata lists the
    /// algorithms it takes proofs signed with and ES256 is not among them.
    pub(crate) fn check_dpop_algs(&self) -> Result<()> {
        crate::dpop::check_algs(
            self.issuer(),
            self.extra().dpop_signing_alg_values_supported.as_deref(),
        )
    }

    pub(crate) fn http(&self) -> &HttpClient {
        &self.inner.http
    }

    pub(crate) fn token_endpoint(&self) -> Result<String> {
        self.metadata()
            .token_endpoint()
            .map(|u| u.as_str().to_owned())
            .ok_or_else(|| Error::Config("the provider has no token endpoint".to_owned()))
    }

    /// The keys in the cache, parsed for verification (once per fetch).
    pub fn jwks(&self) -> Arc<Jwks> {
        self.inner
            .jwks
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Fetches the JWKS again unless that was done less than the interval ago.
    /// Returns whether it fetched.
    pub(crate) async fn refetch_jwks(&self) -> Result<bool> {
        {
            let mut last = self
                .inner
                .last_refetch
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() < self.inner.refetch_interval) {
                return Ok(false);
            }
            *last = Some(Instant::now());
        }
        let keeping = KeepLastBody::new(&self.inner.http);
        let set = CoreJsonWebKeySet::fetch_async(self.metadata().jwks_uri(), &keeping)
            .await
            .map_err(discovery_error)?;
        let jwks = Arc::new(keeping.jwks(&set));
        tracing::debug!(keys = jwks.len(), "fetched the JWKS again");
        *self.inner.jwks.write().unwrap_or_else(|e| e.into_inner()) = jwks;
        Ok(true)
    }
}

/// The SDK's HTTP client for openidconnect's discovery and JWKS fetch,
/// keeping the body of the last answer: openidconnect's key set leaves out
/// every key it cannot read (an `alg` it does not know, such as RFC 9864's
/// `Ed25519`), so the JWKS is read again from the body as sent.
struct KeepLastBody {
    http: HttpClient,
    last: Mutex<Vec<u8>>,
}

impl KeepLastBody {
    fn new(http: &HttpClient) -> Self {
        Self {
            http: http.clone(),
            last: Mutex::new(Vec::new()),
        }
    }

    /// The keys of the last answer — the JWKS openidconnect read as `set`.
    fn jwks(&self, set: &CoreJsonWebKeySet) -> Jwks {
        let body = std::mem::take(&mut *self.last.lock().unwrap_or_else(|e| e.into_inner()));
        Jwks::from_json(&body).unwrap_or_else(|_| Jwks::new(set.clone()))
    }
}

impl<'c> AsyncHttpClient<'c> for KeepLastBody {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.http.call(request).await?;
            response
                .body()
                .clone_into(&mut self.last.lock().unwrap_or_else(|e| e.into_inner()));
            Ok(response)
        })
    }
}

/// Fetches a JWKS through `fetch` and parses its keys (the fuzz targets'
/// way to the JWKS parsing; the SDK's own fetch keeps the body as sent).
#[cfg(feature = "fuzzing")]
pub(crate) async fn fetch_jwks<'c, C: AsyncHttpClient<'c>>(
    url: &openidconnect::JsonWebKeySetUrl,
    fetch: &'c C,
) -> Result<Jwks> {
    let set = CoreJsonWebKeySet::fetch_async(url, fetch)
        .await
        .map_err(discovery_error)?;
    Ok(Jwks::new(set))
}

fn discovery_error<E: std::error::Error + 'static>(err: DiscoveryError<E>) -> Error {
    match err {
        DiscoveryError::Request(e) => Error::Network(request_error(e)),
        DiscoveryError::Response(status, body, message) => Error::Parse {
            message: format!("discovery answered {status}: {message}"),
            body: String::from_utf8_lossy(&body).chars().take(512).collect(),
            status: Some(status.as_u16()),
        },
        // openidconnect parses only a 200 answer: a document cut short
        // is a success answer cut short, as with the token endpoint.
        DiscoveryError::Parse(e) => Error::Parse {
            message: format!("discovery document: {e}"),
            body: String::new(),
            status: Some(200),
        },
        DiscoveryError::Validation(message) => {
            Error::Config(format!("discovery document refused: {message}"))
        }
        DiscoveryError::UrlParse(e) => Error::Config(format!("discovery URL: {e}")),
        DiscoveryError::Other(message) => Error::Parse {
            message,
            body: String::new(),
            status: None,
        },
        other => Error::Parse {
            message: other.to_string(),
            body: String::new(),
            status: None,
        },
    }
}

/// A failed discovery request as a [`NetworkError`] that keeps reqwest's
/// `is_timeout()` and `is_connect()` (our HTTP client's error; the fuzz
/// targets' clients fail otherwise, in words).
fn request_error<E: std::error::Error + 'static>(e: E) -> crate::error::NetworkError {
    let e: Box<dyn std::error::Error + 'static> = Box::new(e);
    match e.downcast::<reqwest::Error>() {
        Ok(e) => crate::error::NetworkError::from_reqwest(*e),
        Err(e) => e.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Error, HttpClient, Provider, check_issuer_url};

    #[tokio::test]
    async fn a_discovery_that_times_out_says_so() {
        // A provider that accepts the connection and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let http = HttpClient::with_timeout(std::time::Duration::from_millis(100)).expect("client");
        let err = Provider::discover(&issuer, &http)
            .await
            .expect_err("no answer");
        assert!(
            matches!(&err, Error::Network(n) if n.is_timeout() && !n.is_connect()),
            "{err:?}"
        );
        assert!(err.is_transient());
        held.abort();
    }

    #[test]
    fn plain_http_only_on_loopback() {
        assert!(check_issuer_url("https://id.example.com").is_ok());
        assert!(check_issuer_url("http://127.0.0.1:8080").is_ok());
        assert!(check_issuer_url("http://[::1]:8080").is_ok());
        assert!(check_issuer_url("http://localhost:8080").is_ok());
        let err = check_issuer_url("http://id.example.com")
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("plain http") && err.contains("loopback"),
            "{err}"
        );
        assert!(check_issuer_url("http://10.0.0.1").is_err());
        assert!(check_issuer_url("ftp://id.example.com").is_err());
        assert!(check_issuer_url("https://id.example.com?x=1").is_err());
    }

    /// A provider on loopback serving a minimal discovery document with the
    /// members of `extra` put over it, and `jwks`; returns its issuer.
    async fn provider_serving(extra: serde_json::Value, jwks: serde_json::Value) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let i = format!("http://{}", listener.local_addr().expect("addr"));
        let mut doc = serde_json::json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"),
            "jwks_uri": format!("{i}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
        });
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            doc.extend(extra.clone());
        }
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || std::future::ready(axum::Json(doc.clone()))),
            )
            .route(
                "/jwks",
                axum::routing::get(move || std::future::ready(axum::Json(jwks.clone()))),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        i
    }

    /// A provider whose discovery document advertises `field` as `value`.
    async fn provider_advertising(field: &'static str, value: &'static str) -> String {
        provider_serving(
            serde_json::json!({ field: value }),
            serde_json::json!({"keys": []}),
        )
        .await
    }

    #[tokio::test]
    async fn discovery_keeps_the_keys_openidconnect_cannot_read() {
        // oidc-provider 9 publishes an Ed25519 key under RFC 9864's name;
        // openidconnect's key set leaves it out.
        let x = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";
        let jwks = serde_json::json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "a", "x": x, "use": "sig"},
            {"kty": "OKP", "crv": "Ed25519", "alg": "Ed25519", "kid": "b", "x": x, "use": "sig"},
        ]});
        let algs =
            serde_json::json!({"id_token_signing_alg_values_supported": ["EdDSA", "Ed25519"]});
        let http = HttpClient::new().expect("http");
        let provider = Provider::discover(&provider_serving(algs, jwks).await, &http)
            .await
            .expect("discovery");
        assert_eq!(provider.jwks().len(), 2, "{:?}", provider.jwks());
        assert!(provider.refetch_jwks().await.expect("refetch"), "fetched");
        assert_eq!(provider.jwks().len(), 2, "and when fetched again");
    }

    #[tokio::test]
    async fn a_dpop_client_of_a_provider_without_es256_fails_before_its_login_starts() {
        let http = HttpClient::new().expect("http");
        let discover = |algs: serde_json::Value| {
            let http = http.clone();
            async move {
                let issuer = provider_serving(algs, serde_json::json!({"keys": []})).await;
                Provider::discover(&issuer, &http).await.expect("discovery")
            }
        };
        let refusing =
            discover(serde_json::json!({"dpop_signing_alg_values_supported": ["RS256", "PS256"]}))
                .await;
        assert_eq!(
            refusing
                .extra()
                .dpop_signing_alg_values_supported
                .as_deref(),
            Some(&["RS256".to_owned(), "PS256".to_owned()][..])
        );
        let dpop = crate::OidcClient::new(refusing.clone(), "app").dpop(true);
        match dpop.authorization_request("http://127.0.0.1/cb").await {
            Err(Error::DpopAlgorithm {
                server, accepted, ..
            }) => {
                assert_eq!(server, refusing.issuer());
                assert_eq!(accepted, ["RS256", "PS256"]);
            }
            other => panic!("{other:?}"),
        }
        // A key of an earlier login: the refresh is refused here, before its
        // request (the provider serves no token endpoint: a request sent
        // would fail another way), and is not taken for a signed-out session.
        let key = crate::DpopKey::generate().expect("key");
        let failure = dpop
            .refresh_once(&crate::RefreshToken::new("rt"), None, Some(&key))
            .await
            .expect_err("refused");
        assert!(
            matches!(failure.error, Error::DpopAlgorithm { .. }),
            "{:?}",
            failure.error
        );
        assert_eq!(failure.kind, crate::FailureKind::Rejected);
        // Without DPoP the same provider is fine.
        let bearer = crate::OidcClient::new(refusing, "app");
        assert!(
            bearer
                .authorization_request("http://127.0.0.1/cb")
                .await
                .is_ok()
        );
        // A provider that lists ES256, says nothing, or says something that
        // is no list (discovery still works; nothing is known): DPoP as always.
        for algs in [
            serde_json::json!({"dpop_signing_alg_values_supported": ["PS256", "ES256"]}),
            serde_json::json!({}),
            serde_json::json!({"dpop_signing_alg_values_supported": "RS256"}),
            serde_json::json!({"dpop_signing_alg_values_supported": [1, 2]}),
        ] {
            let client = crate::OidcClient::new(discover(algs.clone()).await, "app").dpop(true);
            let request = client
                .authorization_request("http://127.0.0.1/cb")
                .await
                .unwrap_or_else(|e| panic!("{algs}: {e}"));
            assert!(request.url.query_pairs().any(|(k, _)| k == "dpop_jkt"));
        }
    }

    #[tokio::test]
    async fn every_endpoint_must_be_https_or_loopback() {
        let http = HttpClient::new().expect("http");
        for field in [
            "token_endpoint",
            "userinfo_endpoint",
            "revocation_endpoint",
            "device_authorization_endpoint",
            "end_session_endpoint",
            "account_sessions_endpoint",
            "pushed_authorization_request_endpoint",
        ] {
            let issuer = provider_advertising(field, "http://id.example.com/x").await;
            match Provider::discover(&issuer, &http).await {
                Err(Error::Config(why)) => assert!(why.contains(field), "{why}"),
                other => panic!("{field} over plain http to another host: {other:?}"),
            }
            let issuer = provider_advertising(field, "https://id.example.com/x").await;
            assert!(
                Provider::discover(&issuer, &http).await.is_ok(),
                "{field} over https"
            );
        }
    }
}
