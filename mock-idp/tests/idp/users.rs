//! Per-test users and claims: users added, replaced and removed while the
//! provider runs (HTTP control API and in-process), and extra claims for
//! the next token responses of one client, through the real endpoints.

use serde_json::{Value, json};
use sessionkit_mock_idp::{ClientConfig, MockIdp, NextClaims, User};

use crate::support::*;

fn dana() -> User {
    let mut dana = User::simple("dana");
    dana.password = "dana-pw".to_owned();
    dana.claims.insert("name".into(), json!("Dana Example"));
    dana.claims.insert("groups".into(), json!(["admins"]));
    dana
}

/// The code flow through the login page as `username`, with a refresh
/// token (`prompt=consent`): the token response.
async fn sign_in(idp: &MockIdp, username: &str, password: &str) -> Value {
    let pkce = pkce();
    let mut params = auth_params(&pkce, "openid profile email offline_access");
    params.push(("prompt".into(), "consent".into()));
    let answer = sign_in_on_page(idp, &cookie_http(), &params, username, password).await;
    assert_eq!(answer.status(), 303, "signed in");
    let code = location_params(&answer)["code"].clone();
    let (status, body) = redeem(idp, &code, &pkce.verifier).await;
    assert_eq!(status, 200, "{body}");
    body
}

fn id_claims(tokens: &Value) -> Value {
    decode(tokens["id_token"].as_str().expect("id token")).1
}

fn at(tokens: &Value) -> &str {
    tokens["access_token"].as_str().expect("access token")
}

fn rt(tokens: &Value) -> &str {
    tokens["refresh_token"].as_str().expect("refresh token")
}

#[tokio::test]
async fn a_user_put_over_http_signs_in_with_their_claims_in_the_id_token_and_userinfo() {
    let idp = idp().await;
    let url = idp.url("/_control/users/dana");
    // Not there yet: the login page refuses the name.
    let refused = sign_in_on_page(
        &idp,
        &cookie_http(),
        &auth_params(&pkce(), "openid"),
        "dana",
        "dana-pw",
    )
    .await;
    assert_eq!(refused.status(), 200, "the page again");
    assert!(
        refused
            .text()
            .await
            .expect("html")
            .contains("wrong name or password")
    );

    let body = json!({
        "password": "dana-pw",
        "sub": "dana-0001",
        "claims": {"name": "Dana Example", "email": "dana@example.com", "groups": ["admins"]},
    });
    let created = http().put(&url).json(&body).send().await.expect("put");
    assert_eq!(created.status(), 201);
    let shown: Value = created.json().await.expect("json");
    assert_eq!(shown["sub"], "dana-0001");
    assert!(shown.get("password").is_none(), "never the password");
    let listed: Value = http()
        .get(idp.url("/_control/users"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert!(
        listed["users"]
            .as_array()
            .expect("users")
            .iter()
            .any(|u| u["username"] == "dana"),
        "{listed}"
    );

    let tokens = sign_in(&idp, "dana", "dana-pw").await;
    let claims = verify(&idp, tokens["id_token"].as_str().expect("id"), CLIENT)
        .await
        .expect("a valid ID token");
    assert_eq!(claims["sub"], "dana-0001");
    assert_eq!(claims["name"], "Dana Example");
    assert_eq!(claims["email"], "dana@example.com");
    assert_eq!(claims["groups"], json!(["admins"]));
    let (status, info) = userinfo(&idp, at(&tokens)).await;
    assert_eq!(status, 200);
    assert_eq!(info["sub"], "dana-0001");
    assert_eq!(info["groups"], json!(["admins"]));

    // Replacing over HTTP answers 200; a body naming someone else is refused.
    let mut renamed = body.clone();
    renamed["claims"]["name"] = json!("Dana Renamed");
    let replaced = http().put(&url).json(&renamed).send().await.expect("put");
    assert_eq!(replaced.status(), 200);
    let mut other = renamed.clone();
    other["username"] = json!("eve");
    let bad = http().put(&url).json(&other).send().await.expect("put");
    assert_eq!(bad.status(), 400);
    let (_, info) = userinfo(&idp, at(&tokens)).await;
    assert_eq!(info["name"], "Dana Renamed");
}

#[tokio::test]
async fn replacing_a_users_claims_changes_the_next_token_only() {
    let idp = idp().await;
    assert!(!idp.control().put_user(dana()).expect("added"));
    let first = sign_in(&idp, "dana", "dana-pw").await;
    assert_eq!(id_claims(&first)["name"], "Dana Example");

    let mut changed = dana();
    changed.claims.insert("name".into(), json!("Dana Renamed"));
    changed.claims.remove("groups");
    assert!(idp.control().put_user(changed).expect("replaced"));

    // What was issued stays as it was signed.
    assert_eq!(id_claims(&first)["name"], "Dana Example");
    assert_eq!(id_claims(&first)["groups"], json!(["admins"]));
    // The session goes on, and its next token says the new claims.
    let (status, next) = refresh(&idp, rt(&first)).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(id_claims(&next)["name"], "Dana Renamed");
    assert!(id_claims(&next).get("groups").is_none());
    assert_eq!(id_claims(&next)["sub"], "dana");
    // Userinfo answers with what the provider knows now.
    let (_, info) = userinfo(&idp, at(&next)).await;
    assert_eq!(info["name"], "Dana Renamed");

    // Another `sub` is another identity: the sessions end.
    let mut moved = dana();
    moved.sub = Some("dana-2".to_owned());
    idp.control().put_user(moved).expect("replaced");
    assert!(idp.control().sessions(Some("dana")).is_empty());
    assert_eq!(refresh(&idp, rt(&next)).await.1["error"], "invalid_grant");
    let again = sign_in(&idp, "dana", "dana-pw").await;
    assert_eq!(id_claims(&again)["sub"], "dana-2");

    // A sub another user has is refused.
    let mut clash = User::simple("eve");
    clash.sub = Some("alice".to_owned());
    assert!(idp.control().put_user(clash).is_err());
    assert!(idp.control().user("eve").is_none());
}

#[tokio::test]
async fn removing_a_user_ends_their_sessions_and_their_sign_in() {
    let idp = idp().await;
    idp.control().put_user(dana()).expect("added");
    let tokens = sign_in(&idp, "dana", "dana-pw").await;
    idp.control().set_auto_login(Some("dana")).expect("auto");

    // In-process: one session ended.
    assert_eq!(idp.control().remove_user("dana").expect("removed"), 1);
    assert_eq!(refresh(&idp, rt(&tokens)).await.1["error"], "invalid_grant");
    assert_eq!(userinfo(&idp, at(&tokens)).await.0, 401);
    let refused = sign_in_on_page(
        &idp,
        &cookie_http(),
        &auth_params(&pkce(), "openid"),
        "dana",
        "dana-pw",
    )
    .await;
    assert_eq!(refused.status(), 200, "the login page again, no auto-login");
    assert!(idp.control().remove_user("dana").is_err());

    // Over HTTP: the same, and 404 once gone.
    idp.control().put_user(dana()).expect("added again");
    sign_in(&idp, "dana", "dana-pw").await;
    let url = idp.url("/_control/users/dana");
    let removed = http().delete(&url).send().await.expect("delete");
    assert_eq!(removed.status(), 200);
    let body: Value = removed.json().await.expect("json");
    assert_eq!(body["ended_sessions"], 1);
    assert_eq!(
        http().delete(&url).send().await.expect("delete").status(),
        404
    );
    assert_eq!(http().get(&url).send().await.expect("get").status(), 404);
}

/// The code flow for another public client of an auto-login provider.
async fn tokens_of(idp: &MockIdp, client_id: &str) -> Value {
    let pkce = pkce();
    let params: Vec<(String, String)> = auth_params(&pkce, "openid email")
        .into_iter()
        .map(|(k, v)| {
            let v = if k == "client_id" {
                client_id.to_owned()
            } else {
                v
            };
            (k, v)
        })
        .collect();
    let code = location_params(&authorize(idp, &http(), &params).await)["code"].clone();
    let (status, body) = token_request(
        idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn next_claims_apply_to_exactly_n_tokens_of_that_client_and_no_other() {
    let idp = idp_auto("alice").await;
    idp.control()
        .register_client(ClientConfig::public("other-app"))
        .expect("registered");
    idp.control()
        .next_claims(
            CLIENT,
            NextClaims::new()
                .id_token_claim("iss", "https://evil.example")
                .id_token_claim("email", Value::Null)
                .access_token_claim("roles", json!(["admin"]))
                .userinfo_claim("sub", "mallory")
                .times(2),
        )
        .expect("set");
    assert_eq!(idp.control().pending_next_claims(CLIENT)[0].times, 2);

    // Another client's tokens are untouched.
    let other = tokens_of(&idp, "other-app").await;
    assert_eq!(id_claims(&other)["iss"], idp.issuer());
    assert_eq!(idp.control().pending_next_claims(CLIENT)[0].times, 2);

    let forged: Vec<Value> = [tokens_of(&idp, CLIENT).await, tokens_of(&idp, CLIENT).await].into();
    for tokens in &forged {
        let claims = id_claims(tokens);
        assert_eq!(claims["iss"], "https://evil.example");
        assert!(claims.get("email").is_none(), "removed with null");
        assert_eq!(claims["sub"], "alice", "the rest as always");
        // Signed right by the provider's key: only the issuer check fails.
        let err = verify(&idp, tokens["id_token"].as_str().expect("id"), CLIENT)
            .await
            .expect_err("a foreign iss");
        assert!(
            matches!(err.kind(), jsonwebtoken::errors::ErrorKind::InvalidIssuer),
            "{err:?}"
        );
        assert_eq!(decode(at(tokens)).1["roles"], json!(["admin"]));
        let (status, info) = userinfo(&idp, at(tokens)).await;
        assert_eq!(status, 200);
        assert_eq!(info["sub"], "mallory");
        assert_eq!(info["email"], "alice@example.com");
    }
    assert!(idp.control().pending_next_claims(CLIENT).is_empty());

    // The third is as always.
    let plain = tokens_of(&idp, CLIENT).await;
    assert_eq!(id_claims(&plain)["iss"], idp.issuer());
    assert_eq!(id_claims(&plain)["email"], "alice@example.com");
    assert!(decode(at(&plain)).1.get("roles").is_none());
    assert_eq!(userinfo(&idp, at(&plain)).await.1["sub"], "alice");

    // Bad requests.
    assert!(
        idp.control()
            .next_claims("no-such-client", NextClaims::new())
            .is_err()
    );
    assert!(
        idp.control()
            .next_claims(CLIENT, NextClaims::new().times(0))
            .is_err()
    );
}

#[tokio::test]
async fn next_claims_over_http_reach_a_refresh_and_can_be_cleared() {
    let idp = idp_auto("bob").await;
    let url = idp.url(&format!("/_control/clients/{CLIENT}/next-claims"));
    let first = consented(&idp).await;

    let set = http()
        .post(&url)
        .json(&json!({"id_token": {"sub": "not-bob"}, "access_token": {"aud": ["chat-server", "extra"]}}))
        .send()
        .await
        .expect("post");
    assert_eq!(set.status(), 201);
    let listed: Value = http()
        .get(&url)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(listed["next_claims"][0]["times"], 1);

    let (status, refreshed) = refresh(&idp, rt(&first)).await;
    assert_eq!(status, 200, "{refreshed}");
    assert_eq!(id_claims(&refreshed)["sub"], "not-bob");
    assert_eq!(
        decode(at(&refreshed)).1["aud"],
        json!(["chat-server", "extra"])
    );
    let (_, again) = refresh(&idp, rt(&refreshed)).await;
    assert_eq!(id_claims(&again)["sub"], "bob", "once only");

    // Set, then cleared before any token: nothing applies.
    let set = http()
        .post(&url)
        .json(&json!({"id_token": {"sub": "not-bob"}, "times": 5}))
        .send()
        .await
        .expect("post");
    assert_eq!(set.status(), 201);
    let cleared: Value = http()
        .delete(&url)
        .send()
        .await
        .expect("delete")
        .json()
        .await
        .expect("json");
    assert_eq!(cleared["cleared"], 1);
    let (_, after) = refresh(&idp, rt(&again)).await;
    assert_eq!(id_claims(&after)["sub"], "bob");

    // Refused: an unknown client, zero times, an unknown field.
    let unknown = http()
        .post(idp.url("/_control/clients/nobody/next-claims"))
        .json(&json!({}))
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 404);
    for bad in [json!({"times": 0}), json!({"idtoken": {}})] {
        let status = http()
            .post(&url)
            .json(&bad)
            .send()
            .await
            .expect("post")
            .status();
        assert!(status.is_client_error(), "{bad}: {status}");
    }
    assert!(idp.control().pending_next_claims(CLIENT).is_empty());
}

#[tokio::test]
async fn the_new_control_routes_refuse_other_sites_pages() {
    let idp = idp().await;
    let user = idp.url("/_control/users/mallory");
    let next = idp.url(&format!("/_control/clients/{CLIENT}/next-claims"));
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let put = http()
            .put(&user)
            .header(name, value)
            .json(&json!({"password": "x"}))
            .send()
            .await
            .expect("put");
        assert_eq!(put.status(), 403, "PUT user, {name}: {value}");
        let delete = http()
            .delete(idp.url("/_control/users/alice"))
            .header(name, value)
            .send()
            .await
            .expect("delete");
        assert_eq!(delete.status(), 403, "DELETE user, {name}: {value}");
        let post = http()
            .post(&next)
            .header(name, value)
            .json(&json!({"id_token": {"sub": "x"}}))
            .send()
            .await
            .expect("post");
        assert_eq!(post.status(), 403, "POST next-claims, {name}: {value}");
    }
    assert!(idp.control().user("mallory").is_none());
    assert!(idp.control().user("alice").is_some());
    assert!(idp.control().pending_next_claims(CLIENT).is_empty());
    // The provider's own pages and tools without a browser may.
    let put = http()
        .put(&user)
        .header("origin", idp.issuer())
        .json(&json!({"password": "x"}))
        .send()
        .await
        .expect("put");
    assert_eq!(put.status(), 201);
}
