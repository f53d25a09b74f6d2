//! The authorization parameters an app can send (`prompt`, `login_hint`,
//! `max_age`, `acr_values`, `ui_locales`, `resource`, a provider's own) and
//! the checks that follow (`auth_time` against `max_age`, a required `acr`),
//! against mock-idp over real sockets through the app-handled redirect.

use std::time::Duration;

use sessionkit::{AuthParams, Error, HttpClient, IdTokenError, OidcClient, Provider};
use sessionkit_mock_idp::{ClientConfig, MockIdp, NextClaims};

const CLIENT: &str = "params-client";
const REDIRECT: &str = "http://127.0.0.1/callback";
const API: &str = "https://api.example.test";
const OTHER_API: &str = "https://other.example.test";

async fn idp() -> MockIdp {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    idp.control()
        .register_client(ClientConfig {
            allowed_resources: vec![API.to_owned(), OTHER_API.to_owned()],
            ..ClientConfig::public(CLIENT)
        })
        .expect("client");
    idp
}

async fn client(idp: &MockIdp, params: AuthParams) -> OidcClient {
    let provider = Provider::discover(idp.issuer(), &HttpClient::new().expect("http"))
        .await
        .expect("discovery");
    OidcClient::new(provider, CLIENT)
        .scopes(["openid", "profile", "offline_access"])
        .auth_params(params)
}

/// The provider's redirect for an authorization URL (not followed).
async fn redirect_of(url: &url::Url) -> String {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let response = browser.get(url.as_str()).send().await.expect("authorize");
    assert_eq!(response.status(), 303, "{url}");
    response.headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

fn query(url: &url::Url, name: &str) -> Vec<String> {
    url.query_pairs()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .collect()
}

#[tokio::test]
async fn every_parameter_reaches_the_provider_and_the_login_completes() {
    let idp = idp().await;
    let params = AuthParams::new()
        .prompt("login")
        .login_hint("alice")
        .max_age(Duration::from_secs(600))
        .acr_values(["urn:mock-idp:acr:mfa"])
        .ui_locales(["fr-CA", "fr"])
        .resource(API)
        .extra("audience", API)
        .token_param("x-tenant", "blue");
    let client = client(&idp, params).await;
    let request = client
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    let url = &request.url;
    assert_eq!(
        query(url, "prompt"),
        ["login consent"],
        "offline_access adds consent"
    );
    assert_eq!(query(url, "login_hint"), ["alice"]);
    assert_eq!(query(url, "max_age"), ["600"]);
    assert_eq!(query(url, "acr_values"), ["urn:mock-idp:acr:mfa"]);
    assert_eq!(query(url, "ui_locales"), ["fr-CA fr"]);
    assert_eq!(query(url, "resource"), [API]);
    assert_eq!(query(url, "audience"), [API]);
    let tokens = client
        .finish(&request, &redirect_of(url).await)
        .await
        .expect("signed in");
    let claims = tokens.claims.clone().expect("claims");
    assert_eq!(
        claims.all["acr"], "urn:mock-idp:acr:mfa",
        "the provider chose it"
    );
    // The access token is for the resource asked for (RFC 8707).
    assert_eq!(access_claims(&tokens)["aud"], API);
}

#[tokio::test]
async fn repeated_resources_are_all_sent_and_all_become_audiences() {
    let idp = idp().await;
    let client = client(&idp, AuthParams::new().resource(API).resource(OTHER_API)).await;
    let request = client
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    assert_eq!(query(&request.url, "resource"), [API, OTHER_API]);
    let tokens = client
        .finish(&request, &redirect_of(&request.url).await)
        .await
        .expect("signed in");
    assert_eq!(
        access_claims(&tokens)["aud"],
        serde_json::json!([API, OTHER_API])
    );
    // A resource the client may not have is refused by the provider.
    let greedy = self::client(&idp, AuthParams::new().resource("https://not-allowed.test")).await;
    let request = greedy
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    let result = greedy
        .finish(&request, &redirect_of(&request.url).await)
        .await;
    assert!(
        matches!(&result, Err(Error::Provider { error, .. }) if error == "invalid_target"),
        "{result:?}"
    );
}

fn access_claims(tokens: &sessionkit::TokenSet) -> serde_json::Value {
    let payload = tokens.access_token.secret().split('.').nth(1).expect("jwt");
    serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .expect("b64"),
    )
    .expect("json")
}

#[tokio::test]
async fn an_auth_time_older_than_max_age_is_refused() {
    let idp = idp().await;
    let client = client(&idp, AuthParams::new().max_age(Duration::from_secs(300))).await;
    // The provider says the user authenticated an hour ago.
    let stale = idp.control().now() - 3600;
    idp.control()
        .next_claims(CLIENT, NextClaims::new().id_token_claim("auth_time", stale))
        .expect("next claims");
    let request = client
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    let result = client
        .finish(&request, &redirect_of(&request.url).await)
        .await;
    assert!(
        matches!(
            result,
            Err(Error::IdToken(IdTokenError::Claim {
                claim: "auth_time",
                ..
            }))
        ),
        "{result:?}"
    );
    // Without max_age the same answer is fine.
    let plain = self::client(&idp, AuthParams::new()).await;
    idp.control()
        .next_claims(CLIENT, NextClaims::new().id_token_claim("auth_time", stale))
        .expect("next claims");
    let request = plain
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    plain
        .finish(&request, &redirect_of(&request.url).await)
        .await
        .expect("no max_age, no check");
}

#[tokio::test]
async fn a_required_acr_the_provider_did_not_satisfy_is_refused() {
    let idp = idp().await;
    let client = client(
        &idp,
        AuthParams::new().require_acr(["urn:example:hardware-key"]),
    )
    .await;
    let request = client
        .authorization_request(REDIRECT)
        .await
        .expect("request");
    let result = client
        .finish(&request, &redirect_of(&request.url).await)
        .await;
    assert!(
        matches!(
            result,
            Err(Error::IdToken(IdTokenError::Claim { claim: "acr", .. }))
        ),
        "{result:?}"
    );
    let ok = self::client(
        &idp,
        AuthParams::new().require_acr(["urn:mock-idp:acr:mfa"]),
    )
    .await;
    let request = ok.authorization_request(REDIRECT).await.expect("request");
    ok.finish(&request, &redirect_of(&request.url).await)
        .await
        .expect("the provider satisfied it");
}

#[tokio::test]
async fn one_login_can_carry_its_own_parameters() {
    let idp = idp().await;
    let client = client(&idp, AuthParams::new().login_hint("alice")).await;
    let request = client
        .authorization_request_with(
            REDIRECT,
            &AuthParams::new().login_hint("bob").prompt("none"),
        )
        .await
        .expect("request");
    assert_eq!(query(&request.url, "login_hint"), ["bob"]);
    assert_eq!(
        query(&request.url, "prompt"),
        ["none"],
        "no consent added to none"
    );
    let tokens = client
        .finish(&request, &redirect_of(&request.url).await)
        .await
        .expect("signed in");
    assert_eq!(tokens.claims.expect("claims").sub, "bob");
    // A parameter the SDK sets itself is refused, not sent twice.
    let bad = client
        .authorization_request_with(REDIRECT, &AuthParams::new().extra("state", "x"))
        .await;
    assert!(matches!(bad, Err(Error::Config(_))), "{bad:?}");
}
