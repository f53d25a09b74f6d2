//! The conformance scenarios from the provider's side: what each kind of
//! scenario changes in what the provider serves, the control API that runs
//! them, and verdicts reached from what a client does (the SDK's and
//! chat-server's full runs are in their own crates' tests).

use serde_json::{Value, json};
use sessionkit_mock_idp::conformance::{RpReport, Verdict};
use sessionkit_mock_idp::{ClientConfig, Config, MockIdp};

use crate::support::{
    CLIENT, auth_params, authorize, consented, decode, discovery, http, idp_auto, location_params,
    pkce, refresh, tokens,
};

fn start(idp: &MockIdp, scenario: &str) {
    idp.control()
        .conformance_start(scenario, CLIENT)
        .expect("start");
}

async fn id_token_of(scenario: &str) -> (Value, Value, String) {
    let idp = idp_auto("alice").await;
    start(&idp, scenario);
    let body = tokens(&idp, "openid profile").await;
    let token = body["id_token"].as_str().expect("id token").to_owned();
    let (header, claims) = decode(&token);
    (header, claims, token)
}

#[tokio::test]
async fn id_token_scenarios_change_exactly_what_they_name() {
    let (_, plain, _) = id_token_of("oidcc-client-test").await;
    assert_eq!(plain["sub"], "alice");
    let (_, c, _) = id_token_of("oidcc-client-test-invalid-iss").await;
    assert_ne!(c["iss"], plain["iss"]);
    assert_eq!(c["sub"], "alice");
    let (_, c, _) = id_token_of("oidcc-client-test-missing-sub").await;
    assert!(c.get("sub").is_none(), "{c}");
    let (_, c, _) = id_token_of("oidcc-client-test-invalid-aud").await;
    assert_ne!(c["aud"], CLIENT);
    let (_, c, _) = id_token_of("oidcc-client-test-missing-iat").await;
    assert!(c.get("iat").is_none() && c.get("exp").is_some(), "{c}");
    let (h, _, _) = id_token_of("oidcc-client-test-kid-absent-single-jwks").await;
    assert!(h.get("kid").is_none() && h["alg"] == "RS256", "{h}");
    let (h, _, token) = id_token_of("oidcc-client-test-idtoken-sig-none").await;
    assert_eq!(h["alg"], "none");
    assert!(token.ends_with('.'), "no signature");
    let (_, c, _) = id_token_of("oidcc-client-test-nonce-invalid").await;
    assert_ne!(c["nonce"], "n-456");
    let (_, c, _) = id_token_of("fapi2-client-test-aud-as-array").await;
    assert_eq!(c["aud"], json!([CLIENT]));
}

#[tokio::test]
async fn an_invalid_signature_does_not_verify_with_the_published_key() {
    let (h, c, token) = id_token_of("oidcc-client-test-invalid-sig-rs256").await;
    assert_eq!(
        (h["alg"].as_str(), c["sub"].as_str()),
        (Some("RS256"), Some("alice"))
    );
    // The same claims signed properly verify; these do not (checked by the
    // provider's own verifier through end_session's id_token_hint check).
    let idp = idp_auto("alice").await;
    let response = http()
        .get(idp.url("/end_session"))
        .query(&[("id_token_hint", token.as_str())])
        .send()
        .await
        .expect("end session");
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn discovery_and_jwks_scenarios_change_what_the_whole_provider_serves() {
    let idp = idp_auto("alice").await;
    start(&idp, "oidcc-client-test-discovery-issuer-mismatch");
    assert_ne!(discovery(&idp).await["issuer"], idp.issuer());

    start(&idp, "oidcc-client-test-discovery-jwks-uri-keys");
    let doc = discovery(&idp).await;
    let moved = doc["jwks_uri"].as_str().expect("jwks_uri").to_owned();
    assert_ne!(moved, idp.url("/jwks"));
    assert_eq!(
        http()
            .get(idp.url("/jwks"))
            .send()
            .await
            .expect("jwks")
            .status(),
        404
    );
    let keys: Value = http()
        .get(&moved)
        .send()
        .await
        .expect("moved")
        .json()
        .await
        .expect("json");
    assert!(!keys["keys"].as_array().expect("keys").is_empty());

    start(&idp, "oidcc-client-test-kid-absent-multiple-jwks");
    let keys: Value = http()
        .get(idp.url("/jwks"))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let keys = keys["keys"].as_array().expect("keys");
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k["kty"] == "RSA"), "{keys:?}");

    idp.control().conformance_finish(CLIENT, None);
    assert_eq!(
        discovery(&idp).await["issuer"],
        idp.issuer(),
        "back to normal"
    );
    assert_eq!(
        http()
            .get(idp.url("/jwks"))
            .send()
            .await
            .expect("jwks")
            .status(),
        200
    );
}

#[tokio::test]
async fn authorization_and_token_response_scenarios() {
    let idp = idp_auto("alice").await;
    let answer = |scenario: &'static str| {
        let idp = &idp;
        async move {
            start(idp, scenario);
            location_params(&authorize(idp, &http(), &auth_params(&pkce(), "openid")).await)
        }
    };
    let p = answer("fapi2-client-test-invalid-iss-in-authorization-response").await;
    assert_ne!(p.get("iss").map(String::as_str), Some(idp.issuer()));
    let p = answer("fapi2-client-test-missing-iss-in-authorization-response").await;
    assert!(!p.contains_key("iss") && p.contains_key("code"), "{p:?}");
    let p = answer("fapi2-client-test-invalid-state").await;
    assert_ne!(p.get("state").map(String::as_str), Some("st-123"));

    start(&idp, "fapi2-client-test-no-expires-in");
    let body = tokens(&idp, "openid").await;
    assert!(body.get("expires_in").is_none(), "{body}");
    start(&idp, "fapi2-client-test-token-type-case");
    assert_eq!(tokens(&idp, "openid").await["token_type"], "bEaReR");
}

#[tokio::test]
async fn using_a_token_that_should_have_been_refused_fails_the_run_at_once() {
    let idp = idp_auto("alice").await;
    start(&idp, "rp-refresh-sub-changed");
    let first = consented(&idp).await;
    // The first response is fine to use.
    let ok = http()
        .get(idp.url("/userinfo"))
        .bearer_auth(first["access_token"].as_str().expect("at"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(ok.status(), 200);
    let (status, refreshed) = refresh(&idp, first["refresh_token"].as_str().expect("rt")).await;
    assert_eq!(status, 200);
    assert_eq!(
        decode(refreshed["id_token"].as_str().expect("id")).1["sub"],
        "someone-else"
    );
    let open = &idp.control().conformance_results()[0];
    assert_eq!(open.verdict, Verdict::Waiting, "{open:?}");
    // Using the refreshed refresh token: failed, while the run is still open.
    let _ = refresh(&idp, refreshed["refresh_token"].as_str().expect("rt")).await;
    let now = &idp.control().conformance_results()[0];
    assert!(now.open);
    assert_eq!(now.verdict, Verdict::Failed, "{now:?}");
    assert!(now.reason.contains("refresh token"), "{}", now.reason);
}

#[tokio::test]
async fn the_http_control_api_runs_scenarios_and_serves_the_table() {
    let idp = idp_auto("alice").await;
    let post = |path: &str, body: Value| http().post(idp.url(path)).json(&body).send();
    let bad = post(
        "/_control/conformance/runs",
        json!({"scenario": "nope", "client_id": CLIENT}),
    )
    .await
    .expect("post");
    assert_eq!(bad.status(), 400);
    let bad = post(
        "/_control/conformance/runs",
        json!({"scenario": "oidcc-client-test", "client_id": "nobody"}),
    )
    .await
    .expect("post");
    assert_eq!(bad.status(), 400);
    let started = post(
        "/_control/conformance/runs",
        json!({"scenario": "oidcc-client-test", "client_id": CLIENT}),
    )
    .await
    .expect("post");
    assert_eq!(started.status(), 201);
    let body = tokens(&idp, "openid profile").await;
    let userinfo = http()
        .get(idp.url("/userinfo"))
        .bearer_auth(body["access_token"].as_str().expect("at"))
        .send()
        .await
        .expect("userinfo");
    assert_eq!(userinfo.status(), 200);
    let finished: Value = post(
        "/_control/conformance/runs/finish",
        json!({"client_id": CLIENT, "report": {"outcome": "accepted"}}),
    )
    .await
    .expect("finish")
    .json()
    .await
    .expect("json");
    assert_eq!(finished["verdict"], "passed", "{finished}");
    let again = post(
        "/_control/conformance/runs/finish",
        json!({"client_id": CLIENT}),
    )
    .await
    .expect("finish");
    assert_eq!(again.status(), 404, "no open run");
    let table = http()
        .get(idp.url("/_control/conformance?format=markdown"))
        .send()
        .await
        .expect("table")
        .text()
        .await
        .expect("text");
    assert!(
        table.contains("| Basic RP | `oidcc-client-test` | accept | used the tokens | PASSED |"),
        "{table}"
    );
    let scenarios: Value = http()
        .get(idp.url("/_control/conformance/scenarios"))
        .send()
        .await
        .expect("scenarios")
        .json()
        .await
        .expect("json");
    assert!(scenarios.as_array().expect("list").len() >= 36);
    // Another site's page cannot start runs in a developer's provider.
    let cross = http()
        .post(idp.url("/_control/conformance/runs"))
        .header("origin", "https://evil.example")
        .json(&json!({"scenario": "oidcc-client-test", "client_id": CLIENT}))
        .send()
        .await
        .expect("post");
    assert_eq!(cross.status(), 403);
}

#[tokio::test]
async fn a_client_configured_for_a_scenario_opens_a_run_at_each_login() {
    let mut config = Config::default();
    config.clients.push(ClientConfig {
        conformance: Some("oidcc-client-test-missing-sub".into()),
        ..ClientConfig::public("judged")
    });
    assert!(
        Config {
            clients: vec![ClientConfig {
                conformance: Some("no-such-scenario".into()),
                ..ClientConfig::public("x")
            }],
            ..Config::default()
        }
        .validate()
        .is_err()
    );
    let idp = MockIdp::builder()
        .config(config)
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    for round in 1..=2 {
        let pkce = pkce();
        let mut params = auth_params(&pkce, "openid");
        for (k, v) in &mut params {
            if k == "client_id" {
                *v = "judged".into();
            }
        }
        let code = location_params(&authorize(&idp, &http(), &params).await)["code"].clone();
        let (status, body) = crate::support::token_request(
            &idp,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", crate::support::REDIRECT),
                ("client_id", "judged"),
                ("code_verifier", &pkce.verifier),
            ],
        )
        .await;
        assert_eq!(status, 200);
        assert!(
            decode(body["id_token"].as_str().expect("id"))
                .1
                .get("sub")
                .is_none()
        );
        let result = idp
            .control()
            .conformance_finish("judged", Some(RpReport::rejected("no sub")))
            .expect("a run was opened by the login");
        assert_eq!(result.id, round);
        assert_eq!(result.verdict, Verdict::Passed, "{result:?}");
    }
}
