//! The token endpoint and what reads tokens: codes are single-use and bound to
//! client, redirect URI and PKCE verifier; refresh tokens rotate and a reused
//! one revokes the grant; client authentication; RFC 6749 error bodies for
//! malformed requests; device flow answers; userinfo, introspection and
//! revocation seeing each other at once.
//!
//! (Over 500 lines: one file per endpoint family, as the other modules; the
//! token endpoint has the most rules, each with its test.)

use std::time::Duration;

use serde_json::Value;
use sessionkit_mock_idp::{DeviceOutcome, DeviceScript, Lifetimes, MockIdp};

use crate::support::*;

async fn userinfo_status(idp: &MockIdp, access: &str) -> u16 {
    http()
        .get(idp.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("userinfo")
        .status()
        .as_u16()
}

async fn introspect(idp: &MockIdp, token: &str) -> Value {
    let secret = idp.control().client_secret("chat-server").expect("secret");
    http()
        .post(idp.url("/introspect"))
        .header("authorization", basic("chat-server", &secret))
        .form(&[("token", token)])
        .send()
        .await
        .expect("introspect")
        .json()
        .await
        .expect("json")
}

#[tokio::test]
async fn id_and_access_tokens_carry_the_required_claims_and_verify() {
    let idp = idp_auto("alice").await;
    let t = consented_tokens(&idp, "openid profile email offline_access").await;
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 300);
    let id = t["id_token"].as_str().expect("id");
    let access = t["access_token"].as_str().expect("access");
    let claims = verify(&idp, id, CLIENT).await.expect("id token verifies");
    for c in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "nonce",
        "at_hash",
        "sid",
        "auth_time",
    ] {
        assert!(claims.get(c).is_some(), "id token lacks {c}: {claims}");
    }
    assert_eq!(claims["nonce"], "n-456");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["name"], "Alice Example");
    assert_eq!(claims["email"], "alice@example.com");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, access.as_bytes());
    let at_hash = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &digest.as_ref()[..16],
    );
    assert_eq!(claims["at_hash"], at_hash);

    let (header, _) = decode(access);
    assert_eq!(header["typ"], "at+jwt", "RFC 9068");
    let at = verify(&idp, access, "chat-server")
        .await
        .expect("access token verifies for its API");
    assert_eq!(at["client_id"], CLIENT);
    assert_eq!(at["sid"], claims["sid"]);
    assert!(
        verify(&idp, access, CLIENT).await.is_err(),
        "the access token is not for the client"
    );
    assert!(
        t["refresh_token"]
            .as_str()
            .is_some_and(|r| r.len() >= 40 && !r.contains('.')),
        "opaque"
    );
}

#[tokio::test]
async fn codes_are_single_use_and_a_second_use_revokes_the_grant() {
    let idp = idp_auto("alice").await;
    let pkce = pkce();
    let mut params = auth_params(&pkce, "openid offline_access");
    params.push(("prompt".into(), "consent".into()));
    let code = location_params(&authorize(&idp, &http(), &params).await)["code"].clone();
    let (status, first) = redeem(&idp, &code, &pkce.verifier).await;
    assert_eq!(status, 200);
    let (status, second) = redeem(&idp, &code, &pkce.verifier).await;
    assert_eq!(status, 400);
    assert_eq!(second["error"], "invalid_grant");
    // What the first redemption got is revoked.
    let (status, body) = refresh(&idp, first["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        userinfo_status(&idp, first["access_token"].as_str().expect("at")).await,
        401
    );
}

#[tokio::test]
async fn a_code_is_bound_to_its_verifier_client_redirect_and_lifetime() {
    let idp = idp_auto("alice").await;
    let pkce = pkce();
    let fresh = |idp: &MockIdp| {
        let params = auth_params(&pkce, "openid");
        let url = idp.url("/authorize");
        async move {
            location_params(&http().get(url).query(&params).send().await.expect("get"))["code"]
                .clone()
        }
    };
    // No verifier: never redeemed (no downgrade).
    let code = fresh(&idp).await;
    let (status, body) = token_request(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("client_id", CLIENT),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Wrong verifier.
    let code = fresh(&idp).await;
    let (status, _) = redeem(&idp, &code, &crate::support::pkce().verifier).await;
    assert_eq!(status, 400);
    // The challenge itself as a "plain" verifier.
    let code = fresh(&idp).await;
    let (status, _) = redeem(&idp, &code, &pkce.challenge).await;
    assert_eq!(status, 400);
    // Another redirect URI (even another loopback port).
    let code = fresh(&idp).await;
    let (status, body) = token_request(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9999/callback"),
            ("client_id", CLIENT),
            ("code_verifier", &pkce.verifier),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // Expired.
    let code = fresh(&idp).await;
    idp.control().advance_clock(Duration::from_secs(61));
    let (status, body) = redeem(&idp, &code, &pkce.verifier).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| d.contains("expired"))
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_whole_grant() {
    let idp = idp_auto("alice").await;
    let t = consented_tokens(&idp, "openid offline_access").await;
    let first = t["refresh_token"].as_str().expect("rt").to_owned();
    let (status, r1) = refresh(&idp, &first).await;
    assert_eq!(status, 200, "{r1}");
    let second = r1["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(first, second);
    let id = verify(&idp, r1["id_token"].as_str().expect("id"), CLIENT)
        .await
        .expect("verifies");
    assert_eq!(id["sub"], "alice");
    assert!(
        id.get("nonce").is_none(),
        "refreshed ID tokens carry no nonce"
    );
    let live_access = r1["access_token"].as_str().expect("at").to_owned();
    assert_eq!(userinfo_status(&idp, &live_access).await, 200);

    // The rotated-out token is used again: the grant dies, the new token too.
    let (status, reuse) = refresh(&idp, &first).await;
    assert_eq!(
        (status, reuse["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, _) = refresh(&idp, &second).await;
    assert_eq!(status, 400);
    assert_eq!(userinfo_status(&idp, &live_access).await, 401);
    assert_eq!(introspect(&idp, &live_access).await["active"], false);
}

#[tokio::test]
async fn a_reuse_within_the_grace_gets_fresh_tokens_and_after_it_revokes() {
    let config = sessionkit_mock_idp::Config::from_toml("refresh_token_reuse_grace = 30\n")
        .expect("the config file names it");
    assert_eq!(config.refresh_token_reuse_grace, 30);
    let idp = idp_auto("alice").await;
    // Through the HTTP control API, as a script would (the same as
    // `Control::set_refresh_token_reuse_grace`).
    let put = |body: serde_json::Value| {
        http()
            .put(idp.url("/_control/refresh-tokens"))
            .json(&body)
            .send()
    };
    let state: serde_json::Value = put(serde_json::json!({"reuse_grace_secs": 30}))
        .await
        .expect("control")
        .json()
        .await
        .expect("json");
    assert_eq!(
        state,
        serde_json::json!({"rotate": true, "reuse_grace_secs": 30})
    );
    let unknown = put(serde_json::json!({"grace": 30}))
        .await
        .expect("control");
    assert_eq!(unknown.status().as_u16(), 422, "unknown fields are refused");
    let t = consented_tokens(&idp, "openid offline_access").await;
    let first = t["refresh_token"].as_str().expect("rt").to_owned();
    let (status, r1) = refresh(&idp, &first).await;
    assert_eq!(status, 200, "{r1}");
    let second = r1["refresh_token"].as_str().expect("rotated").to_owned();

    // The client never saw that answer and sends the first token again,
    // 20 s later: within the grace, fresh tokens; the grant lives.
    idp.control()
        .advance_clock(std::time::Duration::from_secs(20));
    let (status, r2) = refresh(&idp, &first).await;
    assert_eq!(status, 200, "{r2}");
    let third = r2["refresh_token"].as_str().expect("rotated").to_owned();
    assert_ne!(third, second);
    let live_access = r2["access_token"].as_str().expect("at").to_owned();
    assert_eq!(userinfo_status(&idp, &live_access).await, 200);
    // The grace runs from the first use, not the last: 11 s more is past it.
    idp.control()
        .advance_clock(std::time::Duration::from_secs(11));
    let (status, reuse) = refresh(&idp, &first).await;
    assert_eq!(
        (status, reuse["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    for token in [&second, &third] {
        let (status, _) = refresh(&idp, token).await;
        assert_eq!(status, 400, "the grant is revoked");
    }
    assert_eq!(userinfo_status(&idp, &live_access).await, 401);
}

#[tokio::test]
async fn refresh_tokens_expire_and_cannot_widen_scope() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .lifetimes(Lifetimes {
            refresh_token: 100,
            ..Lifetimes::default()
        })
        .start()
        .await
        .expect("start");
    let t = consented_tokens(&idp, "openid offline_access").await;
    let rt = t["refresh_token"].as_str().expect("rt");
    let (status, body) = token_request(
        &idp,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt),
            ("client_id", CLIENT),
            ("scope", "openid email"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    idp.control().advance_clock(Duration::from_secs(101));
    let (status, body) = refresh(&idp, rt).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn client_credentials_and_client_authentication() {
    let idp = idp().await;
    let secret = idp.control().client_secret("chat-server").expect("secret");
    let post = |form: Vec<(&'static str, String)>, auth: Option<String>| {
        let url = idp.url("/token");
        async move {
            let mut r = http().post(url).form(&form);
            if let Some(a) = auth {
                r = r.header("authorization", a);
            }
            let response = r.send().await.expect("post");
            let status = response.status().as_u16();
            let www = response.headers().get("www-authenticate").is_some();
            (status, www, response.json::<Value>().await.expect("json"))
        }
    };
    let grant = || vec![("grant_type", "client_credentials".to_owned())];
    let (status, _, body) = post(grant(), Some(basic("chat-server", &secret))).await;
    assert_eq!(status, 200, "{body}");
    let claims = verify(
        &idp,
        body["access_token"].as_str().expect("at"),
        "chat-server",
    )
    .await
    .expect("verifies");
    assert_eq!(claims["sub"], "chat-server");
    assert!(body.get("refresh_token").is_none() && body.get("id_token").is_none());

    let mut form = grant();
    form.push(("client_id", "chat-server".into()));
    form.push(("client_secret", secret.clone()));
    assert_eq!(post(form, None).await.0, 200, "client_secret_post");

    let (status, www, body) = post(grant(), Some(basic("chat-server", "wrong"))).await;
    assert_eq!(
        (status, www, body["error"].as_str()),
        (401, true, Some("invalid_client"))
    );
    let mut both = grant();
    both.push(("client_secret", secret.clone()));
    assert_eq!(
        post(both, Some(basic("chat-server", &secret))).await.2["error"],
        "invalid_request"
    );
    let mut public = grant();
    public.push(("client_id", CLIENT.into()));
    assert_eq!(post(public, None).await.2["error"], "unauthorized_client");
    let mut openid = grant();
    openid.push(("scope", "openid".into()));
    assert_eq!(
        post(openid, Some(basic("chat-server", &secret))).await.2["error"],
        "invalid_scope"
    );
}

#[tokio::test]
async fn malformed_requests_get_rfc6749_errors_never_a_panic() {
    let idp = idp().await;
    let cases: Vec<(reqwest::RequestBuilder, u16, &str)> = vec![
        (
            http()
                .post(idp.url("/token"))
                .form(&[("grant_type", "password")]),
            400,
            "unsupported_grant_type",
        ),
        (
            http()
                .post(idp.url("/token"))
                .form(&[("client_id", CLIENT)]),
            400,
            "invalid_request",
        ),
        (
            http()
                .post(idp.url("/token"))
                .json(&serde_json::json!({"grant_type": "refresh_token"})),
            400,
            "invalid_request",
        ),
        (
            http()
                .post(idp.url("/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=a&grant_type=b"),
            400,
            "invalid_request",
        ),
        (
            http().post(idp.url("/token")).form(&[
                ("grant_type", "refresh_token"),
                ("client_id", "ghost"),
                ("refresh_token", "x"),
            ]),
            401,
            "invalid_client",
        ),
        (
            http().post(idp.url("/token")).form(&[
                ("grant_type", "refresh_token"),
                ("client_id", CLIENT),
                ("refresh_token", "x"),
            ]),
            400,
            "invalid_grant",
        ),
        (
            http()
                .post(idp.url("/token"))
                .form(&[("grant_type", "authorization_code"), ("client_id", CLIENT)]),
            400,
            "invalid_request",
        ),
        (
            http()
                .post(idp.url("/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(vec![b'a'; 200 * 1024]),
            413,
            "invalid_request",
        ),
        (
            http()
                .post(idp.url("/revoke"))
                .form(&[("client_id", CLIENT)]),
            400,
            "invalid_request",
        ),
        (
            http()
                .post(idp.url("/introspect"))
                .form(&[("token", "x"), ("client_id", CLIENT)]),
            403,
            "unauthorized_client",
        ),
        (http().get(idp.url("/userinfo")), 401, "invalid_request"),
        (
            http().get(idp.url("/userinfo")).bearer_auth("not.a.jwt"),
            401,
            "invalid_token",
        ),
        (
            http()
                .get(idp.url("/userinfo"))
                .header("authorization", "Basic abc"),
            401,
            "invalid_token",
        ),
        (
            http()
                .post(idp.url("/device_authorization"))
                .form(&[("client_id", "chat-server")]),
            401,
            "invalid_client",
        ),
        (
            http()
                .post(idp.url("/device_authorization"))
                .form(&[("client_id", CLIENT), ("scope", "root")]),
            400,
            "invalid_scope",
        ),
    ];
    for (request, status, error) in cases {
        let response = request.send().await.expect("send");
        assert_eq!(response.status().as_u16(), status, "{error}");
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.expect("json body");
        assert_eq!(body["error"], error);
        assert!(body["error_description"].is_string());
    }
}

#[tokio::test]
async fn userinfo_introspection_and_revocation_agree() {
    let idp = idp_auto("bob").await;
    let t = consented_tokens(&idp, "openid profile offline_access").await;
    let access = t["access_token"].as_str().expect("at");
    let rt = t["refresh_token"].as_str().expect("rt");
    let info: Value = http()
        .get(idp.url("/userinfo"))
        .bearer_auth(access)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(info["sub"], "bob");
    assert_eq!(info["name"], "Bob Example");
    assert!(info.get("email").is_none(), "email scope was not asked for");
    let at = introspect(&idp, access).await;
    assert_eq!(
        (
            at["active"].as_bool(),
            at["sub"].as_str(),
            at["token_type"].as_str()
        ),
        (Some(true), Some("bob"), Some("Bearer"))
    );
    let r = introspect(&idp, rt).await;
    assert_eq!(
        (r["active"].as_bool(), r["token_type"].as_str()),
        (Some(true), Some("refresh_token"))
    );
    assert_eq!(
        introspect(&idp, "garbage").await,
        serde_json::json!({"active": false})
    );

    // Another client may not revoke it.
    let secret = idp.control().client_secret("chat-server").expect("secret");
    let other = http()
        .post(idp.url("/revoke"))
        .header("authorization", basic("chat-server", &secret))
        .form(&[("token", rt)])
        .send()
        .await
        .expect("post");
    assert_eq!(other.status(), 400);
    // Unknown tokens are fine (RFC 7009 §2.2).
    let unknown = http()
        .post(idp.url("/revoke"))
        .form(&[("token", "nope"), ("client_id", CLIENT)])
        .send()
        .await
        .expect("post");
    assert_eq!(unknown.status(), 200);
    // Revoking the refresh token revokes the grant: all three see it at once.
    let ok = http()
        .post(idp.url("/revoke"))
        .form(&[("token", rt), ("client_id", CLIENT)])
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status(), 200);
    assert_eq!(introspect(&idp, rt).await["active"], false);
    assert_eq!(introspect(&idp, access).await["active"], false);
    assert_eq!(userinfo_status(&idp, access).await, 401);
    assert_eq!(refresh(&idp, rt).await.1["error"], "invalid_grant");
}

#[tokio::test]
async fn revoking_an_access_token_revokes_that_token_only() {
    let idp = idp_auto("bob").await;
    let t = consented_tokens(&idp, "openid offline_access").await;
    let access = t["access_token"].as_str().expect("at");
    let ok = http()
        .post(idp.url("/revoke"))
        .form(&[
            ("token", access),
            ("client_id", CLIENT),
            ("token_type_hint", "access_token"),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(ok.status(), 200);
    assert_eq!(userinfo_status(&idp, access).await, 401);
    let (status, _) = refresh(&idp, t["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 200, "the grant lives on");
}

#[tokio::test]
async fn userinfo_needs_openid_scope_and_an_unexpired_token() {
    let idp = idp_auto("carol").await;
    let t = tokens(&idp, "profile").await;
    let access = t["access_token"].as_str().expect("at");
    assert_eq!(userinfo_status(&idp, access).await, 403);
    let t = tokens(&idp, "openid").await;
    let access = t["access_token"].as_str().expect("at");
    assert_eq!(userinfo_status(&idp, access).await, 200);
    idp.control().advance_clock(Duration::from_secs(301));
    assert_eq!(userinfo_status(&idp, access).await, 401);
}

async fn device_start(idp: &MockIdp) -> Value {
    let response = http()
        .post(idp.url("/device_authorization"))
        .form(&[("client_id", CLIENT), ("scope", "openid offline_access")])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    response.json().await.expect("json")
}

async fn device_poll(idp: &MockIdp, device_code: &str) -> (u16, Value) {
    token_request(
        idp,
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device_code),
            ("client_id", CLIENT),
        ],
    )
    .await
}

#[tokio::test]
async fn device_flow_pending_slow_down_approve_and_single_use() {
    let idp = idp().await;
    let d = device_start(&idp).await;
    assert_eq!(d["interval"], 5);
    assert_eq!(d["verification_uri"], idp.url("/device"));
    let user_code = d["user_code"].as_str().expect("user code");
    assert_eq!(
        d["verification_uri_complete"],
        format!("{}?user_code={user_code}", idp.url("/device"))
    );
    let dc = d["device_code"].as_str().expect("device code");
    assert_eq!(
        device_poll(&idp, dc).await.1["error"],
        "authorization_pending"
    );
    // Polling again at once is too fast: slow_down, and the interval grows to 10 s.
    assert_eq!(device_poll(&idp, dc).await.1["error"], "slow_down");
    idp.control().advance_clock(Duration::from_secs(6));
    assert_eq!(
        device_poll(&idp, dc).await.1["error"],
        "slow_down",
        "6 s is under the new 10 s interval"
    );
    idp.control().advance_clock(Duration::from_secs(16));
    assert_eq!(
        device_poll(&idp, dc).await.1["error"],
        "authorization_pending"
    );
    idp.control()
        .approve_device(&user_code.to_lowercase(), "carol")
        .expect("approve");
    idp.control().advance_clock(Duration::from_secs(16));
    let (status, t) = device_poll(&idp, dc).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        decode(t["id_token"].as_str().expect("id")).1["sub"],
        "carol"
    );
    assert!(t["refresh_token"].is_string());
    idp.control().advance_clock(Duration::from_secs(16));
    assert_eq!(
        device_poll(&idp, dc).await.1["error"],
        "invalid_grant",
        "a device code is used once"
    );
}

#[tokio::test]
async fn device_flow_denied_and_expired() {
    let idp = idp().await;
    let d = device_start(&idp).await;
    idp.control()
        .deny_device(d["user_code"].as_str().expect("code"))
        .expect("deny");
    assert_eq!(
        device_poll(&idp, d["device_code"].as_str().expect("dc"))
            .await
            .1["error"],
        "access_denied"
    );
    let d = device_start(&idp).await;
    idp.control().advance_clock(Duration::from_secs(601));
    assert_eq!(
        device_poll(&idp, d["device_code"].as_str().expect("dc"))
            .await
            .1["error"],
        "expired_token"
    );
}

#[tokio::test]
async fn device_flow_outcomes_can_be_scripted() {
    let idp = idp().await;
    let step = Duration::from_secs(30);
    idp.control().script_device(DeviceScript {
        pending_polls: 2,
        then: DeviceOutcome::Approve {
            user: "alice".into(),
        },
    });
    let d = device_start(&idp).await;
    let dc = d["device_code"].as_str().expect("dc");
    for _ in 0..2 {
        assert_eq!(
            device_poll(&idp, dc).await.1["error"],
            "authorization_pending"
        );
        idp.control().advance_clock(step);
    }
    let (status, t) = device_poll(&idp, dc).await;
    assert_eq!(status, 200, "{t}");

    for (then, expected) in [
        (DeviceOutcome::Deny, "access_denied"),
        (DeviceOutcome::Expire, "expired_token"),
        (DeviceOutcome::SlowDown, "slow_down"),
    ] {
        idp.control().script_device(DeviceScript {
            pending_polls: 0,
            then,
        });
        let d = device_start(&idp).await;
        idp.control().advance_clock(step);
        assert_eq!(
            device_poll(&idp, d["device_code"].as_str().expect("dc"))
                .await
                .1["error"],
            expected
        );
    }
    // A scripted slow_down grows the interval, then the flow stays pending.
    idp.control().script_device(DeviceScript {
        pending_polls: 0,
        then: DeviceOutcome::SlowDown,
    });
    let d = device_start(&idp).await;
    let dc = d["device_code"].as_str().expect("dc");
    assert_eq!(device_poll(&idp, dc).await.1["error"], "slow_down");
    idp.control().advance_clock(Duration::from_secs(7));
    assert_eq!(
        device_poll(&idp, dc).await.1["error"],
        "slow_down",
        "the interval is now 10 s"
    );
    idp.control().advance_clock(step);
    assert_eq!(
        device_poll(&idp, dc).await.1["error"],
        "authorization_pending"
    );
}

#[tokio::test]
async fn rotation_can_be_turned_off_to_play_a_provider_without_it() {
    let idp = idp_auto("alice").await;
    idp.control().set_refresh_token_rotation(false);
    let t = consented_tokens(&idp, "openid offline_access").await;
    let rt = t["refresh_token"].as_str().expect("rt");
    for _ in 0..3 {
        let (status, body) = refresh(&idp, rt).await;
        assert_eq!(status, 200, "{body}");
        assert!(
            body.get("refresh_token").is_none(),
            "the client keeps its token"
        );
        assert!(body["id_token"].is_string());
    }
}

#[tokio::test]
async fn a_tampered_or_foreign_access_token_is_refused_everywhere() {
    let idp = idp_auto("alice").await;
    let t = tokens(&idp, "openid").await;
    let access = t["access_token"].as_str().expect("at");
    let parts: Vec<&str> = access.split('.').collect();
    let (_, mut claims) = decode(access);
    claims["sub"] = "bob".into();
    let payload = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        claims.to_string(),
    );
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    assert_eq!(userinfo_status(&idp, &tampered).await, 401);
    assert_eq!(introspect(&idp, &tampered).await["active"], false);
    // A token signed right by another provider instance is not one of ours,
    // whether it shares this process's first keys or has its own.
    let sharing = idp_auto("alice").await;
    assert_eq!(
        sharing.control().published_kids(),
        idp.control().published_kids()
    );
    let shared_key_token = tokens(&sharing, "openid").await;
    assert_eq!(
        userinfo_status(&idp, shared_key_token["access_token"].as_str().expect("at")).await,
        401
    );
    let other = MockIdp::builder()
        .auto_login("alice")
        .fresh_keys()
        .start()
        .await
        .expect("idp");
    let other_kids = other.control().published_kids();
    assert!(
        idp.control()
            .published_kids()
            .iter()
            .all(|k| !other_kids.contains(k)),
        "fresh keys are not the shared ones"
    );
    let foreign = tokens(&other, "openid").await;
    assert_eq!(
        userinfo_status(&idp, foreign["access_token"].as_str().expect("at")).await,
        401
    );
    assert_eq!(
        userinfo_status(&idp, access).await,
        200,
        "the real one still works"
    );
}
