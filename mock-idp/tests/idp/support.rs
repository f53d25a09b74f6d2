//! Helpers shared by the tests: a provider on `127.0.0.1:0`, PKCE, a client
//! that does not follow redirects, the code flow in one call, JWT checks
//! through the provider's own JWKS with `jsonwebtoken`.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sessionkit_mock_idp::MockIdp;

pub const CLIENT: &str = "chat-example";
pub const REDIRECT: &str = "http://127.0.0.1:8123/callback";

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client")
}

pub fn cookie_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .cookie_store(true)
        .build()
        .expect("client")
}

/// The provider's discovery document.
pub async fn discovery(idp: &MockIdp) -> Value {
    http()
        .get(idp.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("discovery is JSON")
}

pub async fn idp() -> MockIdp {
    MockIdp::start().await.expect("mock idp starts")
}

pub async fn idp_auto(user: &str) -> MockIdp {
    MockIdp::builder()
        .auto_login(user)
        .start()
        .await
        .expect("mock idp starts")
}

pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub fn random(n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rand_byte()).collect();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn rand_byte() -> u8 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let mut x = SEED.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    (x & 0xff) as u8
}

pub fn pkce() -> Pkce {
    let verifier = random(32);
    let challenge = URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        verifier.as_bytes(),
    ));
    Pkce {
        verifier,
        challenge,
    }
}

/// The query parameters of a redirect's `Location`.
pub fn location_params(response: &reqwest::Response) -> HashMap<String, String> {
    let location = response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("expected a redirect, got {}", response.status()))
        .to_str()
        .expect("ascii");
    let url = url::Url::parse(location).expect("absolute location");
    url.query_pairs().into_owned().collect()
}

/// Authorization request parameters for the public client with PKCE.
pub fn auth_params(pkce: &Pkce, scope: &str) -> Vec<(String, String)> {
    vec![
        ("response_type".into(), "code".into()),
        ("client_id".into(), CLIENT.into()),
        ("redirect_uri".into(), REDIRECT.into()),
        ("scope".into(), scope.into()),
        ("state".into(), "st-123".into()),
        ("nonce".into(), "n-456".into()),
        ("code_challenge".into(), pkce.challenge.clone()),
        ("code_challenge_method".into(), "S256".into()),
    ]
}

pub async fn authorize(
    idp: &MockIdp,
    client: &reqwest::Client,
    params: &[(String, String)],
) -> reqwest::Response {
    client
        .get(idp.url("/authorize"))
        .query(params)
        .send()
        .await
        .expect("authorize")
}

/// Runs the authorization request against an auto-login provider and returns the code.
pub async fn code(idp: &MockIdp, pkce: &Pkce, scope: &str) -> String {
    let response = authorize(idp, &http(), &auth_params(pkce, scope)).await;
    assert_eq!(response.status(), 303, "authorize redirects");
    let params = location_params(&response);
    params
        .get("code")
        .cloned()
        .unwrap_or_else(|| panic!("no code in {params:?}"))
}

pub async fn token_request(idp: &MockIdp, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(idp.url("/token"))
        .form(form)
        .send()
        .await
        .expect("token");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}")),
    )
}

/// Redeems a code for the public client with its PKCE verifier.
pub async fn redeem(idp: &MockIdp, code: &str, verifier: &str) -> (u16, Value) {
    token_request(
        idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
            ("code_verifier", verifier),
        ],
    )
    .await
}

/// The whole code flow against an auto-login provider: the token response.
pub async fn tokens(idp: &MockIdp, scope: &str) -> Value {
    let pkce = pkce();
    let code = code(idp, &pkce, scope).await;
    let (status, body) = redeem(idp, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The code flow with `prompt=consent`, so `offline_access` brings a refresh token.
pub async fn consented_tokens(idp: &MockIdp, scope: &str) -> Value {
    let pkce = pkce();
    let mut params = auth_params(&pkce, scope);
    params.push(("prompt".into(), "consent".into()));
    let code = location_params(&authorize(idp, &http(), &params).await)["code"].clone();
    let (status, body) = redeem(idp, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// A consented sign-in with a refresh token.
pub async fn consented(idp: &MockIdp) -> Value {
    consented_tokens(idp, "openid offline_access").await
}

pub async fn refresh(idp: &MockIdp, refresh_token: &str) -> (u16, Value) {
    token_request(
        idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", CLIENT),
        ],
    )
    .await
}

/// Header and claims of a JWT, unverified.
pub fn decode(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let part = parts.next().expect("three parts");
        serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(part).expect("base64url"))
            .expect("json")
    };
    let header = next();
    let claims = next();
    (header, claims)
}

/// Verifies a JWT against the provider's published JWKS with `jsonwebtoken`.
pub async fn verify(
    idp: &MockIdp,
    token: &str,
    audience: &str,
) -> Result<Value, jsonwebtoken::errors::Error> {
    let jwks: jsonwebtoken::jwk::JwkSet = http()
        .get(idp.url("/jwks"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("jwks json");
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.clone().unwrap_or_default();
    let jwk = jwks.find(&kid).ok_or_else(|| {
        jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)
    })?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)?;
    let mut validation = jsonwebtoken::Validation::new(header.alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[idp.issuer()]);
    validation.validate_exp = true;
    Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
}

pub fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

/// The login page's form, filled in and sent as a browser would (cookies
/// kept in `browser`): the answer, a redirect to the client when it worked.
pub async fn sign_in_on_page(
    idp: &MockIdp,
    browser: &reqwest::Client,
    params: &[(String, String)],
    username: &str,
    password: &str,
) -> reqwest::Response {
    let page = authorize(idp, browser, params).await;
    assert_eq!(page.status(), 200, "the login page");
    let html = page.text().await.expect("html");
    let request_id = html
        .split("name=\"request_id\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("request id")
        .to_owned();
    browser
        .post(idp.url("/authorize/login"))
        .form(&[
            ("request_id", request_id.as_str()),
            ("username", username),
            ("password", password),
            ("action", "allow"),
        ])
        .send()
        .await
        .expect("login")
}

/// The userinfo answer for `access_token`: status and JSON (or `null`).
pub async fn userinfo(idp: &MockIdp, access_token: &str) -> (u16, Value) {
    let response = http()
        .get(idp.url("/userinfo"))
        .bearer_auth(access_token)
        .send()
        .await
        .expect("userinfo");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}
