//! Back-channel logout: the provider's logout token closes that session's
//! sockets with 4003 and keeps its tokens out; bad logout tokens are a 400
//! and close nothing.

use std::time::Duration;

use serde_json::{Value, json};
use sessionkit_examples::protocol::CLOSE_SIGNED_OUT;
use sessionkit_examples::server::ChatServer;
use sessionkit_mock_idp::{Alg, MockIdp};

use crate::support::{
    Client, assert_unauthorized, claims, forged, idp, server, sid_of, signed, token, within,
};

const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

fn register(idp: &MockIdp, server: &ChatServer) {
    idp.control()
        .set_backchannel_logout_uri("chat-example", Some(&server.backchannel_logout_url()))
        .expect("register the logout URI");
}

/// Waits until the provider recorded `n` deliveries; returns their statuses.
async fn deliveries(idp: &MockIdp, n: usize) -> Vec<Option<u16>> {
    within("back-channel deliveries", async {
        loop {
            let done = idp.control().deliveries();
            if done.len() >= n {
                return done.iter().map(|d| d.status).collect();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

fn logout_claims(idp: &MockIdp, sid: &str, sub: &str) -> Value {
    let now = idp.control().now();
    json!({
        "iss": idp.issuer(), "aud": "chat-example", "iat": now, "exp": now + 120,
        "jti": format!("jti-{sid}"), "sub": sub, "sid": sid,
        "events": { EVENT: {} },
    })
}

async fn post_logout(server: &ChatServer, body: &[(&str, &str)]) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(server.backchannel_logout_url())
        .form(body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test]
async fn revoking_a_users_sessions_closes_their_sockets_with_4003() {
    let idp = idp().await;
    let server = server(&idp).await;
    register(&idp, &server);
    let alice_token = token(&idp, "alice").await;
    let mut alice = Client::connect(&server, &alice_token).await;
    let mut alice_phone = Client::connect(&server, &token(&idp, "alice").await).await;
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    bob.join("general", 0).await;

    assert_eq!(idp.control().revoke_user_sessions("alice"), 2);
    for socket in [&mut alice, &mut alice_phone] {
        let (code, reason) = socket.closed().await;
        assert_eq!((code, reason.as_str()), (CLOSE_SIGNED_OUT, "signed out"));
    }
    assert_eq!(deliveries(&idp, 2).await, [Some(200), Some(200)]);
    bob.assert_alive().await;
    assert_eq!(bob.post("general", "b", "still here").await, 1);

    // The logged-out session's token is refused from now on; a new sign-in is fine.
    assert_unauthorized(&server.ws_url(), Some(&alice_token), "logged-out session").await;
    Client::connect(&server, &token(&idp, "alice").await)
        .await
        .assert_alive()
        .await;
}

#[tokio::test]
async fn bad_logout_tokens_are_refused_with_400_and_close_nothing() {
    let idp = idp().await;
    let server = server(&idp).await;
    let alice_token = token(&idp, "alice").await;
    let sid = sid_of(&alice_token);
    let mut alice = Client::connect(&server, &alice_token).await;
    let kid = idp.control().published_kids()[1].clone();
    let good = logout_claims(&idp, &sid, "alice");
    let with = |name: &str, value: Option<Value>| {
        let mut c = good.clone();
        match value {
            Some(v) => c[name] = v,
            None => {
                c.as_object_mut().expect("object").remove(name);
            }
        }
        idp.control().sign_jwt(Alg::RS256, "logout+jwt", &c)
    };
    let cases: Vec<(&str, String)> = vec![
        ("garbage", "garbage".into()),
        ("forged", forged(&kid, "logout+jwt", &good)),
        ("wrong aud", with("aud", Some(json!("chat-server")))),
        ("wrong iss", with("iss", Some(json!("http://127.0.0.1:1")))),
        ("nonce", with("nonce", Some(json!("n")))),
        ("no events", with("events", None)),
        (
            "other event",
            with("events", Some(json!({"urn:other": {}}))),
        ),
        ("no iat", with("iat", None)),
        (
            "iat in the future",
            with("iat", Some(json!(idp.control().now() + 3600))),
        ),
        (
            "stale iat",
            with("iat", Some(json!(idp.control().now() - 600))),
        ),
        ("no exp", with("exp", None)),
        (
            "expired",
            with("exp", Some(json!(idp.control().now() - 60))),
        ),
        ("no jti", with("jti", None)),
        ("typ JWT", idp.control().sign_jwt(Alg::RS256, "JWT", &good)),
        (
            "typ at+jwt",
            idp.control().sign_jwt(Alg::RS256, "at+jwt", &good),
        ),
        ("neither sid nor sub", {
            let mut c = good.clone();
            let map = c.as_object_mut().expect("object");
            map.remove("sid");
            map.remove("sub");
            idp.control().sign_jwt(Alg::RS256, "logout+jwt", &c)
        }),
        ("an access token", alice_token.clone()),
    ];
    for (case, token) in &cases {
        let (status, body) = post_logout(&server, &[("logout_token", token)]).await;
        assert_eq!(status, 400, "{case}");
        assert_eq!(body["error"], "invalid_request", "{case}");
    }
    let (status, _) = post_logout(&server, &[("other", "x")]).await;
    assert_eq!(status, 400, "no logout_token");
    alice.assert_alive().await;
    assert_eq!(server.connections(), 1);

    // The good one works, and a replay of it is harmless.
    let token = with("jti", Some(json!("once")));
    assert_eq!(
        post_logout(&server, &[("logout_token", &token)]).await.0,
        200
    );
    assert_eq!(alice.closed().await.0, CLOSE_SIGNED_OUT);
    assert_eq!(
        post_logout(&server, &[("logout_token", &token)]).await.0,
        200
    );
}

#[tokio::test]
async fn a_logout_by_subject_closes_every_session_of_that_user() {
    let idp = idp().await;
    let server = server(&idp).await;
    let mut laptop = Client::connect(&server, &token(&idp, "alice").await).await;
    let mut phone = Client::connect(&server, &token(&idp, "alice").await).await;
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    let mut claims = logout_claims(&idp, "unused", "alice");
    claims.as_object_mut().expect("object").remove("sid");
    let token = idp.control().sign_jwt(Alg::RS256, "logout+jwt", &claims);
    assert_eq!(
        post_logout(&server, &[("logout_token", &token)]).await.0,
        200
    );
    assert_eq!(laptop.closed().await.0, CLOSE_SIGNED_OUT);
    assert_eq!(phone.closed().await.0, CLOSE_SIGNED_OUT);
    bob.assert_alive().await;
}

#[tokio::test]
async fn a_logout_by_subject_spares_later_sign_ins_and_a_replay_changes_nothing() {
    let idp = idp().await;
    let server = server(&idp).await;
    let now = idp.control().now();
    let alice_issued_at = |iat: i64| {
        let mut c = claims(&idp, "alice", 300);
        c["iat"] = json!(iat);
        signed(&idp, &c)
    };
    let mut before = Client::connect(&server, &alice_issued_at(now - 10)).await;
    let by_subject = |jti: &str| {
        let mut c = logout_claims(&idp, "unused", "alice");
        let map = c.as_object_mut().expect("object");
        map.remove("sid");
        map.insert("iat".into(), json!(now - 5));
        map.insert("jti".into(), json!(jti));
        idp.control().sign_jwt(Alg::RS256, "logout+jwt", &c)
    };
    let logout = by_subject("sub-1");
    assert_eq!(
        post_logout(&server, &[("logout_token", &logout)]).await.0,
        200
    );
    assert_eq!(before.closed().await.0, CLOSE_SIGNED_OUT);

    // Signed in again after the logout: not touched by it, nor by its replay,
    // nor by another logout token of the same moment.
    let mut after = Client::connect(&server, &alice_issued_at(now)).await;
    assert_eq!(
        post_logout(&server, &[("logout_token", &logout)]).await.0,
        200,
        "a replay is a harmless 200"
    );
    after.assert_alive().await;
    assert_eq!(
        post_logout(&server, &[("logout_token", &by_subject("sub-2"))])
            .await
            .0,
        200
    );
    after.assert_alive().await;
    assert_eq!(server.connections(), 1);
    // Tokens issued before the logout stay out.
    assert_unauthorized(
        &server.ws_url(),
        Some(&alice_issued_at(now - 6)),
        "issued before the logout",
    )
    .await;
}
