//! The `openidconnect` crate as a standards client against the provider:
//! discovery, the code flow with PKCE, refresh-token rotation and reuse
//! detection, revocation over TLS, and the device flow. The client's HTTP goes
//! through our own `reqwest` 0.13 (no redirects), as the SDK does it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClient, CoreClientAuthMethod, CoreDeviceAuthorizationResponse, CoreErrorResponseType,
    CoreGrantType, CoreIdTokenClaims, CoreJsonWebKey, CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm, CoreResponseMode, CoreResponseType,
    CoreRevocableToken, CoreSubjectIdentifierType, CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AccessTokenHash, AdditionalProviderMetadata, AsyncHttpClient, AuthorizationCode,
    ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl, DeviceCodeErrorResponseType,
    EndSessionUrl, EndpointMaybeSet, EndpointSet, HttpRequest, HttpResponse, IntrospectionUrl,
    IssuerUrl, Nonce, NonceVerifier, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeChallengeMethod, ProviderMetadata, RedirectUrl, RefreshToken, RequestTokenError,
    RevocationUrl, Scope, TokenIntrospectionResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use sessionkit_mock_idp::{Lifetimes, MockIdp};

use crate::support::{CLIENT, REDIRECT, basic, location_params};

/// openidconnect's HTTP client: our `reqwest` client, which follows no redirects.
/// (A newtype, since the orphan rule forbids implementing the trait on `reqwest::Client`.)
#[derive(Debug, Clone)]
struct Http(reqwest::Client);

impl Http {
    fn plain() -> Self {
        Self(crate::support::http())
    }

    /// Trusts only the provider's self-signed certificate.
    fn trusting(idp: &MockIdp) -> Self {
        let pem = idp
            .tls_certificate_pem()
            .expect("the provider serves HTTPS");
        let cert = reqwest::Certificate::from_pem(pem.as_bytes()).expect("a PEM certificate");
        Self(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .tls_certs_only([cert])
                .build()
                .expect("client"),
        )
    }
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = reqwest::Error;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let response = self.0.execute(reqwest::Request::try_from(request)?).await?;
            let mut out = HttpResponse::new(Vec::new());
            *out.status_mut() = response.status();
            *out.headers_mut() = response.headers().clone();
            *out.body_mut() = response.bytes().await?.to_vec();
            Ok(out)
        })
    }
}

/// Discovery fields `CoreProviderMetadata` does not read. Required fields, so a
/// provider that stops publishing one fails discovery.
#[derive(Clone, Debug, Deserialize, Serialize)]
struct Extra {
    revocation_endpoint: RevocationUrl,
    introspection_endpoint: IntrospectionUrl,
    device_authorization_endpoint: DeviceAuthorizationUrl,
    end_session_endpoint: EndSessionUrl,
    authorization_response_iss_parameter_supported: bool,
    backchannel_logout_supported: bool,
    code_challenge_methods_supported: Vec<PkceCodeChallengeMethod>,
}

impl AdditionalProviderMetadata for Extra {}

type Metadata = ProviderMetadata<
    Extra,
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

/// A client built from discovery with every endpoint we use set.
type Client = CoreClient<
    EndpointSet,
    EndpointSet,
    EndpointSet,
    EndpointSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

async fn discover(idp: &MockIdp, http: &Http) -> Metadata {
    let issuer = IssuerUrl::new(idp.issuer().to_owned()).expect("issuer is a URL");
    Metadata::discover_async(issuer, http)
        .await
        .unwrap_or_else(|e| panic!("discovery failed: {e:?}"))
}

fn client(metadata: &Metadata, client_id: &str, secret: Option<String>) -> Client {
    let extra = metadata.additional_metadata().clone();
    CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(client_id.to_owned()),
        secret.map(ClientSecret::new),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).expect("redirect URL"))
    .set_revocation_url(extra.revocation_endpoint)
    .set_introspection_url(extra.introspection_endpoint)
    .set_device_authorization_url(extra.device_authorization_endpoint)
}

/// The public client `chat-example`, from discovery.
async fn public_client(idp: &MockIdp, http: &Http) -> Client {
    client(&discover(idp, http).await, CLIENT, None)
}

/// A finished sign-in: the token response, its verified ID token claims, and the nonce sent.
struct SignedIn {
    tokens: CoreTokenResponse,
    claims: CoreIdTokenClaims,
    nonce: Nonce,
}

impl SignedIn {
    fn refresh_token(&self) -> &RefreshToken {
        self.tokens
            .refresh_token()
            .expect("offline_access with prompt=consent gives a refresh token")
    }
}

/// The error code of a failed token request.
fn token_error<RE: std::error::Error>(
    error: RequestTokenError<RE, openidconnect::StandardErrorResponse<CoreErrorResponseType>>,
) -> CoreErrorResponseType {
    match error {
        RequestTokenError::ServerResponse(response) => response.error().clone(),
        other => panic!("expected an OAuth error response, got {other:?}"),
    }
}

/// Verifies the response's ID token (signature, iss, aud, exp, and the nonce
/// through `nonce`) and that its `at_hash` matches the access token.
fn verify_id_token(
    client: &Client,
    tokens: &CoreTokenResponse,
    nonce: impl NonceVerifier,
) -> CoreIdTokenClaims {
    let id_token = tokens.id_token().expect("an ID token for scope openid");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, nonce)
        .unwrap_or_else(|e| panic!("ID token does not verify: {e:?}"))
        .clone();
    let at_hash = claims
        .access_token_hash()
        .expect("the ID token carries at_hash");
    let alg: &CoreJwsSigningAlgorithm = id_token.signing_alg().expect("signed");
    let actual = AccessTokenHash::from_token(
        tokens.access_token(),
        alg,
        id_token.signing_key(&verifier).expect("key in the JWKS"),
    )
    .expect("hash");
    assert_eq!(&actual, at_hash, "at_hash matches the access token");
    claims
}

/// The code flow with PKCE against an auto-login provider, driven by openidconnect.
async fn sign_in(idp: &MockIdp, http: &Http, client: &Client) -> SignedIn {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".to_owned()))
        .add_scope(Scope::new("offline_access".to_owned()))
        // OIDC Core §11: offline_access needs prompt=consent, else no refresh token.
        .add_prompt(CoreAuthPrompt::Consent)
        .set_pkce_challenge(challenge)
        .url();

    let response = http.0.get(url).send().await.expect("authorize");
    assert_eq!(response.status(), 303, "authorize redirects to the client");
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("a Location");
    assert!(
        location.starts_with(&format!("{REDIRECT}?")),
        "redirects to the registered callback: {location}"
    );
    let params = location_params(&response);
    assert_eq!(params.get("state"), Some(csrf.secret()), "state comes back");
    assert_eq!(
        params.get("iss").map(String::as_str),
        Some(idp.issuer()),
        "RFC 9207 iss"
    );
    assert!(
        !params.contains_key("error"),
        "no error in the redirect: {params:?}"
    );
    let code = AuthorizationCode::new(params.get("code").cloned().expect("a code"));

    let tokens = client
        .exchange_code(code)
        .expect("discovery gave a token endpoint")
        .set_pkce_verifier(verifier)
        .request_async(http)
        .await
        .unwrap_or_else(|e| panic!("code exchange failed: {e:?}"));
    let claims = verify_id_token(client, &tokens, &nonce);
    SignedIn {
        tokens,
        claims,
        nonce,
    }
}

#[tokio::test]
async fn discovery_metadata_reads_into_openidconnect_with_the_extra_endpoints() {
    let idp = crate::support::idp().await;
    let http = Http::plain();
    let metadata = discover(&idp, &http).await;

    assert_eq!(metadata.issuer().as_str(), idp.issuer());
    assert_eq!(
        metadata.authorization_endpoint().as_str(),
        idp.url("/authorize")
    );
    assert_eq!(
        metadata.token_endpoint().map(|u| u.as_str().to_owned()),
        Some(idp.url("/token"))
    );
    assert_eq!(
        metadata.userinfo_endpoint().map(|u| u.as_str().to_owned()),
        Some(idp.url("/userinfo"))
    );
    assert_eq!(metadata.jwks_uri().as_str(), idp.url("/jwks"));
    let algs = metadata.id_token_signing_alg_values_supported();
    assert!(algs.contains(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256));
    assert!(algs.contains(&CoreJwsSigningAlgorithm::EcdsaP256Sha256));
    assert!(
        metadata.jwks().keys().len() >= 2,
        "the JWKS holds an RS256 and an ES256 key"
    );

    let extra = metadata.additional_metadata();
    assert_eq!(extra.revocation_endpoint.as_str(), idp.url("/revoke"));
    assert_eq!(
        extra.introspection_endpoint.as_str(),
        idp.url("/introspect")
    );
    assert_eq!(
        extra.device_authorization_endpoint.as_str(),
        idp.url("/device_authorization")
    );
    assert_eq!(extra.end_session_endpoint.as_str(), idp.url("/end_session"));
    assert!(extra.authorization_response_iss_parameter_supported);
    assert!(extra.backchannel_logout_supported);
    assert_eq!(
        extra.code_challenge_methods_supported,
        vec![PkceCodeChallengeMethod::new("S256".to_owned())],
        "S256 only, no plain"
    );
}

#[tokio::test]
async fn code_flow_with_pkce_gives_a_verified_id_token_and_a_refresh_token() {
    let idp = crate::support::idp_auto("alice").await;
    let http = Http::plain();
    let client = public_client(&idp, &http).await;
    let signed_in = sign_in(&idp, &http, &client).await;

    let claims = &signed_in.claims;
    assert_eq!(claims.subject().as_str(), "alice");
    assert_eq!(claims.issuer().as_str(), idp.issuer());
    assert_eq!(
        claims.nonce().map(Nonce::secret),
        Some(signed_in.nonce.secret()),
        "the nonce comes back"
    );
    assert!(
        claims.audiences().iter().any(|a| a.as_str() == CLIENT),
        "aud is the client"
    );
    assert!(claims.auth_time().is_some(), "auth_time is set");
    assert!(
        !signed_in.refresh_token().secret().is_empty(),
        "a refresh token"
    );
    let scopes: Vec<&str> = signed_in
        .tokens
        .scopes()
        .map(|s| s.iter().map(|s| s.as_str()).collect())
        .unwrap_or_default();
    assert!(
        scopes.contains(&"offline_access"),
        "offline_access granted: {scopes:?}"
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_grant() {
    let idp = crate::support::idp_auto("alice").await;
    let http = Http::plain();
    let client = public_client(&idp, &http).await;
    let signed_in = sign_in(&idp, &http, &client).await;
    let old = signed_in.refresh_token().clone();

    let refreshed = client
        .exchange_refresh_token(&old)
        .expect("token endpoint")
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("refresh failed: {e:?}"));
    let new = refreshed
        .refresh_token()
        .expect("rotation gives a new refresh token")
        .clone();
    assert_ne!(new.secret(), old.secret(), "the refresh token rotated");
    assert_ne!(
        refreshed.access_token().secret(),
        signed_in.tokens.access_token().secret(),
        "a new access token"
    );

    // OIDC Core §12.2: a refreshed ID token should carry no nonce; if it does,
    // it must be the original one.
    let original_nonce = signed_in.nonce.secret().clone();
    let claims = verify_id_token(&client, &refreshed, |n: Option<&Nonce>| match n {
        None => Ok(()),
        Some(n) if n.secret() == &original_nonce => Ok(()),
        Some(_) => Err("a different nonce on refresh".to_owned()),
    });
    assert_eq!(claims.subject(), signed_in.claims.subject(), "same sub");
    assert_eq!(claims.issuer(), signed_in.claims.issuer(), "same iss");
    assert_eq!(
        claims.auth_time(),
        signed_in.claims.auth_time(),
        "auth_time stays the original authentication"
    );

    // Reusing the rotated-out token fails...
    let reuse = client
        .exchange_refresh_token(&old)
        .expect("token endpoint")
        .request_async(&http)
        .await
        .expect_err("a used refresh token is refused");
    assert_eq!(token_error(reuse), CoreErrorResponseType::InvalidGrant);
    // ...and revokes the grant, so the newest token fails too.
    let after = client
        .exchange_refresh_token(&new)
        .expect("token endpoint")
        .request_async(&http)
        .await
        .expect_err("reuse revoked the whole grant");
    assert_eq!(token_error(after), CoreErrorResponseType::InvalidGrant);
}

/// The status of a userinfo request with `token` (plain reqwest).
async fn userinfo_status(http: &Http, idp: &MockIdp, token: &AccessToken) -> u16 {
    http.0
        .get(idp.url("/userinfo"))
        .bearer_auth(token.secret())
        .send()
        .await
        .expect("userinfo")
        .status()
        .as_u16()
}

/// `active` from `POST /introspect` as the resource server `chat-server`
/// (client_secret_basic, plain reqwest).
async fn introspect_active(http: &Http, idp: &MockIdp, token: &str) -> bool {
    let secret = idp
        .control()
        .client_secret("chat-server")
        .expect("chat-server is confidential");
    let response = http
        .0
        .post(idp.url("/introspect"))
        .header("authorization", basic("chat-server", &secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect");
    assert_eq!(response.status(), 200, "introspection answers");
    let body: serde_json::Value = response.json().await.expect("JSON");
    body["active"]
        .as_bool()
        .unwrap_or_else(|| panic!("no active flag: {body}"))
}

#[tokio::test]
async fn revocation_over_tls_shows_in_refresh_userinfo_and_introspection() {
    let idp = MockIdp::builder()
        .tls()
        .auto_login("alice")
        .start()
        .await
        .expect("mock idp starts");
    assert!(idp.issuer().starts_with("https://"), "{}", idp.issuer());
    let http = Http::trusting(&idp);
    let metadata = discover(&idp, &http).await;
    let client = client(&metadata, CLIENT, None);
    // The resource server, for openidconnect's own introspection request.
    let server = self::client(
        &metadata,
        "chat-server",
        idp.control().client_secret("chat-server"),
    );

    // Revoking a refresh token revokes its grant: refresh, userinfo and
    // introspection all see it at once.
    let first = sign_in(&idp, &http, &client).await;
    let access = first.tokens.access_token();
    let refresh = first.refresh_token().clone();
    assert_eq!(userinfo_status(&http, &idp, access).await, 200);
    assert!(introspect_active(&http, &idp, access.secret()).await);
    assert!(introspect_active(&http, &idp, refresh.secret()).await);
    client
        .revoke_token(CoreRevocableToken::RefreshToken(refresh.clone()))
        .expect("an https revocation endpoint")
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("revocation failed: {e:?}"));
    let error = client
        .exchange_refresh_token(&refresh)
        .expect("token endpoint")
        .request_async(&http)
        .await
        .expect_err("a revoked refresh token is refused");
    assert_eq!(token_error(error), CoreErrorResponseType::InvalidGrant);
    assert_eq!(
        userinfo_status(&http, &idp, access).await,
        401,
        "the grant's access token is revoked too"
    );
    assert!(!introspect_active(&http, &idp, access.secret()).await);
    assert!(!introspect_active(&http, &idp, refresh.secret()).await);

    // Revoking an access token revokes that token only.
    let second = sign_in(&idp, &http, &client).await;
    let access = second.tokens.access_token();
    let active = server
        .introspect(access)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("introspection failed: {e:?}"));
    assert!(active.active(), "fresh access token is active");
    client
        .revoke_token(CoreRevocableToken::AccessToken(access.clone()))
        .expect("an https revocation endpoint")
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("revocation failed: {e:?}"));
    let inactive = server
        .introspect(access)
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("introspection failed: {e:?}"));
    assert!(!inactive.active(), "revoked access token is inactive");
    assert!(!introspect_active(&http, &idp, access.secret()).await);
    assert_eq!(userinfo_status(&http, &idp, access).await, 401);
    let refreshed = client
        .exchange_refresh_token(second.refresh_token())
        .expect("token endpoint")
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("the grant survives an access token revocation: {e:?}"));
    assert_eq!(
        userinfo_status(&http, &idp, refreshed.access_token()).await,
        200
    );
}

/// Answers a device authorization once the client has polled once (and been
/// told to wait), so the test covers `authorization_pending` and the interval.
fn answer_after_first_poll(
    idp: &MockIdp,
    details: &CoreDeviceAuthorizationResponse,
    approve_as: Option<&'static str>,
) -> tokio::task::JoinHandle<()> {
    let control = idp.control().clone();
    let user_code = details.user_code().secret().clone();
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while control.count("token:device_code") == 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the client never polled"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        match approve_as {
            Some(user) => control.approve_device(&user_code, user),
            None => control.deny_device(&user_code),
        }
        .expect("the user code is pending");
    })
}

async fn device_idp() -> MockIdp {
    MockIdp::builder()
        .lifetimes(Lifetimes {
            device_poll_interval: 1,
            ..Default::default()
        })
        .start()
        .await
        .expect("mock idp starts")
}

async fn start_device_flow(
    idp: &MockIdp,
    http: &Http,
    client: &Client,
) -> CoreDeviceAuthorizationResponse {
    let details: CoreDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scope(Scope::new("profile".to_owned()))
        .request_async(http)
        .await
        .unwrap_or_else(|e| panic!("device authorization failed: {e:?}"));
    assert_eq!(details.interval(), Duration::from_secs(1));
    assert!(
        details
            .verification_uri()
            .as_str()
            .starts_with(&idp.url("/device")),
        "verification URI at the provider"
    );
    assert!(details.verification_uri_complete().is_some());
    details
}

#[tokio::test]
async fn device_flow_polls_until_approved() {
    let idp = device_idp().await;
    let http = Http::plain();
    let client = public_client(&idp, &http).await;
    let details = start_device_flow(&idp, &http, &client).await;
    let approver = answer_after_first_poll(&idp, &details, Some("bob"));

    let tokens = client
        .exchange_device_access_token(&details)
        .expect("token endpoint")
        .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(30)))
        .await
        .unwrap_or_else(|e| panic!("device flow failed: {e:?}"));
    approver.await.expect("approver");

    let claims = verify_id_token(&client, &tokens, |n: Option<&Nonce>| match n {
        None => Ok(()),
        Some(_) => Err("no nonce was sent".to_owned()),
    });
    assert_eq!(claims.subject().as_str(), "bob");
    assert_eq!(
        idp.control().count("token:device_code"),
        2,
        "one pending poll, then the tokens; the interval was kept (no slow_down)"
    );
}

#[tokio::test]
async fn device_flow_denied_reports_access_denied() {
    let idp = device_idp().await;
    let http = Http::plain();
    let client = public_client(&idp, &http).await;
    let details = start_device_flow(&idp, &http, &client).await;
    let denier = answer_after_first_poll(&idp, &details, None);

    let error = client
        .exchange_device_access_token(&details)
        .expect("token endpoint")
        .request_async(&http, tokio::time::sleep, Some(Duration::from_secs(30)))
        .await
        .expect_err("the user denied");
    denier.await.expect("denier");
    match error {
        RequestTokenError::ServerResponse(response) => {
            assert_eq!(response.error(), &DeviceCodeErrorResponseType::AccessDenied);
        }
        other => panic!("expected access_denied, got {other:?}"),
    }
}
