//! Discovery advertises exactly what is implemented; the JWKS publishes RS256
//! and ES256 keys and keeps rotated-out keys for the grace period.

use std::time::Duration;

use serde_json::Value;
use sessionkit_mock_idp::{Alg, Lifetimes, MockIdp};

use crate::support::*;

#[tokio::test]
async fn discovery_advertises_the_implemented_endpoints_and_rules() {
    let idp = idp().await;
    let doc: Value = discovery(&idp).await;
    let i = idp.issuer();
    assert_eq!(doc["issuer"], i);
    for (key, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/jwks"),
        ("revocation_endpoint", "/revoke"),
        ("introspection_endpoint", "/introspect"),
        ("end_session_endpoint", "/end_session"),
        ("device_authorization_endpoint", "/device_authorization"),
    ] {
        assert_eq!(doc[key], format!("{i}{path}"), "{key}");
    }
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
    assert_eq!(doc["backchannel_logout_supported"], true);
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(
        doc["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256", "ES256"])
    );
    let grants = doc["grant_types_supported"].as_array().expect("grants");
    for g in [
        "authorization_code",
        "refresh_token",
        "client_credentials",
        "urn:ietf:params:oauth:grant-type:device_code",
    ] {
        assert!(grants.iter().any(|x| x == g), "{g}");
    }
    // Every advertised endpoint answers (none is a 404).
    for key in ["jwks_uri", "userinfo_endpoint"] {
        let url = doc[key].as_str().expect("url");
        let status = http().get(url).send().await.expect("get").status();
        assert_ne!(status, 404, "{key}");
    }
}

#[tokio::test]
async fn jwks_publishes_rs256_and_es256_and_rotation_keeps_the_old_keys_for_the_grace_period() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .lifetimes(Lifetimes {
            key_grace: 600,
            ..Lifetimes::default()
        })
        .start()
        .await
        .expect("start");
    let jwks = |idp: &MockIdp| {
        let url = idp.url("/jwks");
        async move {
            http()
                .get(url)
                .send()
                .await
                .expect("get")
                .json::<Value>()
                .await
                .expect("json")
        }
    };
    let before = jwks(&idp).await;
    let algs: Vec<&str> = before["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["alg"].as_str())
        .collect();
    assert_eq!(algs, ["RS256", "ES256"]);
    let old = tokens(&idp, "openid").await;
    let old_id = old["id_token"].as_str().expect("id token");

    let (rs, es) = idp.control().rotate_keys().await.expect("rotate");
    let after = jwks(&idp).await;
    assert_eq!(
        after["keys"].as_array().map(Vec::len),
        Some(4),
        "old keys stay during the grace period"
    );
    // Old tokens still verify through the JWKS, new ones use the new key.
    verify(&idp, old_id, CLIENT)
        .await
        .expect("old token verifies during grace");
    let new = tokens(&idp, "openid").await;
    let (header, _) = decode(new["id_token"].as_str().expect("id"));
    assert_eq!(header["kid"], rs.as_str());
    assert_ne!(rs, es);

    idp.control().advance_clock(Duration::from_secs(601));
    let later = jwks(&idp).await;
    let kids: Vec<&str> = later["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2);
    assert!(kids.contains(&rs.as_str()) && kids.contains(&es.as_str()));
}

#[tokio::test]
async fn es256_provider_signs_tokens_that_verify_with_the_published_key() {
    let idp = MockIdp::builder()
        .auto_login("bob")
        .signing_alg(Alg::ES256)
        .start()
        .await
        .expect("start");
    let t = tokens(&idp, "openid").await;
    let (header, _) = decode(t["id_token"].as_str().expect("id"));
    assert_eq!(header["alg"], "ES256");
    let claims = verify(&idp, t["id_token"].as_str().expect("id"), CLIENT)
        .await
        .expect("verifies");
    assert_eq!(claims["sub"], "bob");
    let access = verify(&idp, t["access_token"].as_str().expect("at"), "chat-server")
        .await
        .expect("verifies");
    assert_eq!(access["sub"], "bob");
}

#[tokio::test]
async fn unknown_paths_get_a_json_404() {
    let idp = idp().await;
    let response = http().get(idp.url("/nope")).send().await.expect("get");
    assert_eq!(response.status(), 404);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn tls_mode_serves_https_with_a_certificate_clients_can_trust() {
    let idp = MockIdp::builder().tls().start().await.expect("start");
    assert!(idp.issuer().starts_with("https://127.0.0.1:"));
    let pem = idp.tls_certificate_pem().expect("pem");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("cert"))
        .build()
        .expect("client");
    let doc: Value = client
        .get(idp.url("/.well-known/openid-configuration"))
        .send()
        .await
        .expect("https get")
        .json()
        .await
        .expect("json");
    assert_eq!(doc["issuer"], idp.issuer());
    // A client that does not trust the certificate is refused.
    assert!(http().get(idp.url("/jwks")).send().await.is_err());
}

/// The `href`s of a page.
fn links(page: &str) -> Vec<String> {
    page.split("href=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_link_of_the_home_page_answers_and_times_are_readable() {
    let idp = idp().await;
    let home = http()
        .get(idp.url("/"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    let found = links(&home);
    assert!(found.len() >= 4, "{found:?}");
    for link in &found {
        let status = http().get(link).send().await.expect("get").status();
        assert!(status.is_success(), "{link} answered {status}");
    }
    let dashboard = http()
        .get(idp.url("/_control"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("text");
    assert!(
        dashboard.contains(" UTC"),
        "times are dates, not Unix seconds"
    );
}
