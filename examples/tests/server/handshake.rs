//! The handshake: only a valid access token from the configured issuer
//! opens a connection; everything else is a 401 that shows nothing.

use std::time::{Duration, Instant};

use serde_json::json;
use sessionkit_examples::server::ServerConfig;
use sessionkit_mock_idp::{Alg, Fault, Lifetimes, MockIdp};

use crate::support::{
    Client, assert_unauthorized, claims, forged, idp, refused, server, server_with, signed, token,
    tokens, within,
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

#[tokio::test]
async fn a_failing_jwks_endpoint_is_asked_at_most_once_per_interval() {
    let idp = idp().await;
    idp.control()
        .add_fault(Fault::on("jwks").status(500, r#"{"error":"server_error"}"#));
    let server = server(&idp).await; // the default 10 s between attempts
    let url = server.ws_url();
    let good = claims(&idp, "alice", 300);
    let response = refused(&url, Some(&signed(&idp, &good))).await;
    assert_eq!(response.status(), 503, "the keys are unavailable");
    assert_eq!(idp.control().count("jwks"), 1);
    // Tokens with made-up key ids, many at once: no further request.
    let attempts = (0..16).map(|i| {
        let token = forged(&format!("random-{i}"), "at+jwt", &good);
        let url = url.clone();
        async move { refused(&url, Some(&token)).await.status() }
    });
    let statuses = futures_util::future::join_all(attempts).await;
    assert!(statuses.iter().all(|s| *s == 503), "{statuses:?}");
    assert_eq!(
        idp.control().count("jwks"),
        1,
        "a failed attempt counts for the rate limit"
    );
    assert_eq!(idp.control().count("discovery"), 1);
}

#[tokio::test]
async fn a_cached_key_is_used_while_a_fetch_hangs() {
    const HANG_MS: u64 = 8_000;
    let idp = idp().await;
    let mut config = ServerConfig::new(idp.issuer());
    config.jwks_refetch_interval = Duration::ZERO;
    let server = server_with(config).await;
    let first = token(&idp, "alice").await;
    let second = token(&idp, "bob").await;
    Client::connect(&server, &first).await;
    assert_eq!(idp.control().count("jwks"), 1);

    // A token with an unknown key id makes the server refetch; that fetch hangs.
    idp.control()
        .add_fault(Fault::on("jwks").delay_ms(HANG_MS).times(1));
    let unknown = forged("unknown-kid", "at+jwt", &claims(&idp, "mallory", 300));
    let url = server.ws_url();
    let hanging = tokio::spawn(async move { refused(&url, Some(&unknown)).await.status() });
    within("the refetch reaches the provider", async {
        while !idp.control().faults().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // A token whose key is cached does not wait for it.
    let started = Instant::now();
    let mut bob = Client::connect(&server, &second).await;
    let took = started.elapsed();
    assert!(
        !hanging.is_finished(),
        "the refetch was still hanging when bob got in"
    );
    assert!(
        took < Duration::from_millis(HANG_MS / 2),
        "bob waited for the fetch: {took:?}"
    );
    bob.assert_alive().await;
    hanging.abort();
}

#[tokio::test]
async fn keys_are_refetched_after_the_max_age_and_dropped_keys_refused() {
    // Rotated-out keys leave the provider's JWKS at once.
    let idp = MockIdp::builder()
        .lifetimes(Lifetimes {
            key_grace: 0,
            ..Lifetimes::default()
        })
        .start()
        .await
        .expect("mock idp starts");
    let mut config = ServerConfig::new(idp.issuer());
    config.jwks_refetch_interval = Duration::ZERO;
    config.jwks_max_age = Duration::ZERO; // every token finds the keys too old
    let server = server_with(config).await;
    let old = signed(&idp, &claims(&idp, "alice", 300));
    Client::connect(&server, &old).await;
    let fetches = idp.control().count("jwks");

    // While the provider fails, the keys it published last stay in use.
    idp.control()
        .add_fault(Fault::on("jwks").status(503, "{}").times(1));
    Client::connect(&server, &old).await.assert_alive().await;
    assert_eq!(idp.control().count("jwks"), fetches + 1, "refetched");

    let (rs, _) = idp.control().rotate_keys().await.expect("rotate");
    assert_eq!(idp.control().published_kids().len(), 2, "old keys gone");
    assert_unauthorized(&server.ws_url(), Some(&old), "a key no longer published").await;
    assert!(idp.control().published_kids().contains(&rs));
    Client::connect(&server, &signed(&idp, &claims(&idp, "alice", 300)))
        .await
        .assert_alive()
        .await;
}

#[tokio::test]
async fn an_id_token_is_refused_even_when_its_audience_fits() {
    let idp = idp().await;
    let mut config = ServerConfig::new(idp.issuer());
    // The ID tokens of the chat client are for `chat-example`.
    config.audience = "chat-example".to_owned();
    let server = server_with(config).await;
    let login = tokens(&idp, "alice").await;
    let id_token = login["id_token"].as_str().expect("an ID token");
    assert_unauthorized(&server.ws_url(), Some(id_token), "an ID token").await;
    // A plain-JWT token without ID-token claims is still fine (other providers).
    let mut plain = claims(&idp, "alice", 300);
    plain["aud"] = json!("chat-example");
    let plain = idp.control().sign_jwt(Alg::RS256, "JWT", &plain);
    Client::connect(&server, &plain).await.assert_alive().await;
    // With the RFC 9068 typ, including its `application/` spelling.
    let mut at = claims(&idp, "alice", 300);
    at["aud"] = json!("chat-example");
    let at = idp
        .control()
        .sign_jwt(Alg::RS256, "application/at+jwt", &at);
    Client::connect(&server, &at).await.assert_alive().await;
}
