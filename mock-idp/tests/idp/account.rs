//! The account sessions API takes only access tokens meant for it: `aud`
//! must include the account audience, which tokens asked for with the
//! `account_sessions` scope carry beside their usual one.

use serde_json::Value;

use crate::logout::ACCOUNT_TOKEN_SCOPE;
use crate::support::*;

#[tokio::test]
async fn the_account_api_takes_only_tokens_for_its_audience() {
    let idp = idp_auto("alice").await;
    let audience = idp.control().account_audience();
    assert_eq!(audience, format!("{}/account", idp.issuer()));
    let discovery: Value = discovery(&idp).await;
    assert_eq!(discovery["account_sessions_audience"], audience);
    assert_eq!(
        discovery["account_sessions_scope"],
        sessionkit_mock_idp::config::ACCOUNT_SCOPE
    );
    let list = |token: String| {
        let url = idp.url("/account/sessions");
        async move {
            http()
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("get")
        }
    };
    let refused = |response: reqwest::Response| async move {
        assert_eq!(response.status(), 401);
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{challenge}"
        );
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"], "invalid_token");
    };

    // A token for chat-server only (no account scope): refused.
    let chat_only = consented(&idp).await;
    let at = chat_only["access_token"].as_str().expect("at");
    assert_eq!(decode(at).1["aud"], "chat-server");
    refused(list(at.to_owned()).await).await;

    // With the scope: both audiences, and both APIs take it.
    let both = consented_tokens(&idp, ACCOUNT_TOKEN_SCOPE).await;
    let at = both["access_token"].as_str().expect("at");
    assert_eq!(
        decode(at).1["aud"],
        serde_json::json!(["chat-server", audience])
    );
    assert!(
        verify(&idp, at, "chat-server").await.is_ok(),
        "chat-server's aud holds"
    );
    assert_eq!(list(at.to_owned()).await.status(), 200);

    // Its claim decides, not the scope: a token forged to name only chat-server is refused.
    idp.control()
        .next_claims(
            CLIENT,
            sessionkit_mock_idp::NextClaims::new().access_token_claim("aud", "chat-server"),
        )
        .expect("set");
    let forged = consented_tokens(&idp, ACCOUNT_TOKEN_SCOPE).await;
    refused(list(forged["access_token"].as_str().expect("at").to_owned()).await).await;

    // A token the provider signed but never issued is unknown, whatever its aud.
    let now = idp.control().now();
    let minted = idp.control().sign_jwt(
        sessionkit_mock_idp::Alg::RS256,
        "at+jwt",
        &serde_json::json!({"iss": idp.issuer(), "sub": "alice", "aud": audience,
                            "exp": now + 60, "iat": now, "scope": "account_sessions"}),
    );
    refused(list(minted).await).await;

    // The scope needs a user: client credentials cannot ask for it.
    let secret = idp.control().client_secret("chat-server").expect("secret");
    let (status, body) = token_request(
        &idp,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "chat-server"),
            ("client_secret", &secret),
            ("scope", "account_sessions"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
}
