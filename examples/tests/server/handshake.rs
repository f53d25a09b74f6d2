//! The handshake: only a valid access token from the configured issuer
//! opens a connection; everything else is a 401 that shows nothing.

use std::time::Duration;

use serde_json::json;
use sessionkit_examples::server::ServerConfig;
use sessionkit_mock_idp::Alg;

use crate::support::{
    Client, assert_unauthorized, claims, forged, idp, refused, server, server_with, signed, token,
};

#[tokio::test]
async fn bad_tokens_are_refused_with_401() {
    let idp = idp().await;
    let server = server(&idp).await;
    let url = server.ws_url();
    let kid = idp.control().published_kids()[1].clone();
    let now = idp.control().now();
    let good = claims(&idp, "alice", 300);
    let with = |name: &str, value: serde_json::Value| {
        let mut c = good.clone();
        c[name] = value;
        c
    };

    assert_unauthorized(&url, None, "no token").await;
    assert_unauthorized(&url, Some("garbage"), "garbage").await;
    assert_unauthorized(&url, Some("a.b.c"), "three garbage parts").await;
    assert_unauthorized(
        &url,
        Some(&forged(&kid, "at+jwt", &good)),
        "forged with the provider's kid",
    )
    .await;
    assert_unauthorized(
        &url,
        Some(&forged("no-such-kid", "at+jwt", &good)),
        "forged with an unknown kid",
    )
    .await;
    let expired = with("exp", json!(now - 60));
    assert_unauthorized(&url, Some(&signed(&idp, &expired)), "expired").await;
    let wrong_aud = with("aud", json!("chat-example"));
    assert_unauthorized(&url, Some(&signed(&idp, &wrong_aud)), "wrong aud").await;
    let wrong_iss = with("iss", json!("http://127.0.0.1:1"));
    assert_unauthorized(&url, Some(&signed(&idp, &wrong_iss)), "wrong iss").await;
    let logout_typ = idp.control().sign_jwt(Alg::RS256, "logout+jwt", &good);
    assert_unauthorized(&url, Some(&logout_typ), "a logout token").await;
    // An unsigned token, and one "signed" with HMAC.
    let unsigned = {
        use base64::Engine as _;
        let b64 = |v: &serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "at+jwt"})),
            b64(&good)
        )
    };
    assert_unauthorized(&url, Some(&unsigned), "alg none").await;
    let hmac = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &good,
        &jsonwebtoken::EncodingKey::from_secret(kid.as_bytes()).expect("key"),
    )
    .expect("sign");
    assert_unauthorized(&url, Some(&hmac), "HS256").await;
    // A signature over other claims.
    let real = signed(&idp, &good);
    let mut parts: Vec<&str> = real.split('.').collect();
    let other_claims = {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(with("sub", json!("mallory")).to_string())
    };
    parts[1] = &other_claims;
    assert_unauthorized(&url, Some(&parts.join(".")), "tampered claims").await;
    assert_eq!(server.connections(), 0);

    // The same checks let good tokens in: self-signed with the real key, and a real login.
    Client::connect(&server, &real).await;
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    alice.assert_alive().await;
}

#[tokio::test]
async fn a_token_signed_with_a_rotated_key_makes_the_server_refetch_the_jwks() {
    let idp = idp().await;
    let mut config = ServerConfig::new(idp.issuer());
    config.jwks_refetch_interval = Duration::ZERO;
    let server = server_with(config).await;
    Client::connect(&server, &token(&idp, "alice").await).await;
    let fetches = idp.control().count("jwks");
    assert_eq!(fetches, 1, "one fetch for the first token");
    Client::connect(&server, &token(&idp, "alice").await).await;
    assert_eq!(idp.control().count("jwks"), 1, "a known key needs no fetch");

    idp.control().rotate_keys().await.expect("rotate");
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    bob.assert_alive().await;
    assert_eq!(
        idp.control().count("jwks"),
        2,
        "the unknown kid caused one refetch"
    );
}

#[tokio::test]
async fn unknown_key_ids_cannot_make_the_server_hammer_the_provider() {
    let idp = idp().await;
    let server = server(&idp).await; // the default 10 s between refetches
    let url = server.ws_url();
    let good = claims(&idp, "alice", 300);
    assert_unauthorized(&url, Some(&forged("kid-0", "at+jwt", &good)), "first").await;
    let after_first = idp.control().count("jwks");
    for i in 1..6 {
        let kid = format!("kid-{i}");
        assert_unauthorized(&url, Some(&forged(&kid, "at+jwt", &good)), &kid).await;
    }
    assert_eq!(
        idp.control().count("jwks"),
        after_first,
        "no refetch within the interval"
    );
}

#[tokio::test]
async fn an_unreachable_provider_is_a_503_not_a_401() {
    let idp = idp().await;
    let token = token(&idp, "alice").await;
    // A port where nothing listens.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let issuer = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    let server = server_with(ServerConfig::new(issuer)).await;
    let response = refused(&server.ws_url(), Some(&token)).await;
    assert_eq!(response.status(), 503);
}

#[tokio::test]
async fn a_plain_http_request_with_a_good_token_is_not_upgraded() {
    let idp = idp().await;
    let server = server(&idp).await;
    let token = token(&idp, "alice").await;
    let url = format!("http://{}/ws", server.local_addr());
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert!(response.status().is_client_error(), "{}", response.status());
    let response = reqwest::get(&url).await.expect("request");
    assert_eq!(
        response.status(),
        401,
        "no token is a 401 even without an upgrade"
    );
}
