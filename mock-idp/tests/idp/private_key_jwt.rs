//! `private_key_jwt` client authentication (RFC 7523, OpenID Connect Core
//! §9) over real sockets: assertions signed here with aws-lc-rs (ES256 and
//! RS256), accepted at the token, revocation, introspection and device
//! authorization endpoints; every kind of bad assertion refused with a 401
//! `invalid_client` that says which check failed; a key client cannot use
//! a secret and a secret client cannot use an assertion.
//!
//! (Over 500 lines: one file per protocol feature, as the other modules;
//! the ES256/RS256 signer at the top is shared with `par.rs`.)

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sessionkit_mock_idp::config::ClientAuthMethod;
use sessionkit_mock_idp::{ClientConfig, Config, MockIdp, SecretSource};

use crate::support::*;

pub(crate) const APP: &str = "key-app";
pub(crate) const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A client's signing key.
pub(crate) enum Key {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

impl Key {
    pub(crate) fn ec() -> Self {
        Key::Ec(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("p-256"))
    }

    fn rsa() -> Self {
        Key::Rsa(RsaKeyPair::generate(KeySize::Rsa2048).expect("rsa"))
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Ec(_) => "ES256",
            Key::Rsa(_) => "RS256",
        }
    }

    pub(crate) fn jwk(&self) -> Value {
        match self {
            Key::Ec(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Key::Rsa(pair) => {
                let public = pair.public_key();
                json!({"kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    fn sign_input(&self, input: &str) -> Vec<u8> {
        match self {
            Key::Ec(pair) => pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Key::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("sign");
                sig
            }
        }
    }

    pub(crate) fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self.sign_input(&input);
        format!("{input}.{}", b64(&sig))
    }

    /// A good assertion for `idp`'s issuer, with `changes` applied to the claims.
    pub(crate) fn assertion(&self, idp: &MockIdp, changes: &[(&str, Value)]) -> String {
        let mut claims = good_claims(idp);
        for (name, value) in changes {
            if value.is_null() {
                claims.as_object_mut().expect("object").remove(*name);
            } else {
                claims[*name] = value.clone();
            }
        }
        self.sign(&json!({"alg": self.alg(), "typ": "JWT"}), &claims)
    }
}

fn good_claims(idp: &MockIdp) -> Value {
    let now = idp.control().now();
    json!({"iss": APP, "sub": APP, "aud": idp.issuer(), "jti": random(16),
        "iat": now, "exp": now + 60})
}

/// A provider with the client `APP` registered with `keys`' public keys.
pub(crate) async fn idp_with(keys: &[&Key]) -> MockIdp {
    register(idp_auto("alice").await, keys)
}

/// `idp` with the client `APP` registered with `keys`' public keys.
fn register(idp: MockIdp, keys: &[&Key]) -> MockIdp {
    let jwks = json!({"keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>()});
    let mut client = ClientConfig::private_key_jwt(APP, jwks);
    client.grant_types.push("client_credentials".to_owned());
    client.introspection = true;
    idp.control().register_client(client).expect("client");
    idp
}

async fn post(idp: &MockIdp, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(idp.url(path))
        .form(form)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A client credentials request authenticated by `assertion`.
async fn with_assertion(idp: &MockIdp, assertion: &str) -> (u16, Value) {
    post(
        idp,
        "/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", assertion),
        ],
    )
    .await
}

/// Asserts a 401 `invalid_client` whose description contains `why`.
fn refused(answer: &(u16, Value), why: &str) {
    let (status, body) = answer;
    assert_eq!(*status, 401, "{body}");
    assert_eq!(body["error"], "invalid_client", "{body}");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(description.contains(why), "{why:?} not in {description:?}");
}

#[tokio::test]
async fn discovery_lists_private_key_jwt_and_its_algorithms() {
    let idp = idp().await;
    let doc: Value = discovery(&idp).await;
    for member in [
        "token_endpoint_auth_methods_supported",
        "revocation_endpoint_auth_methods_supported",
        "introspection_endpoint_auth_methods_supported",
    ] {
        assert!(
            doc[member]
                .as_array()
                .is_some_and(|m| m.contains(&json!("private_key_jwt"))),
            "{member}: {}",
            doc[member]
        );
    }
    let algs = doc["token_endpoint_auth_signing_alg_values_supported"]
        .as_array()
        .expect("algs");
    assert!(algs.contains(&json!("ES256")) && algs.contains(&json!("RS256")));
    assert!(!algs.contains(&json!("none")) && !algs.contains(&json!("HS256")));
}

#[tokio::test]
async fn a_good_assertion_signs_in_and_refreshes_with_es256_and_rs256() {
    let (ec, rsa) = (Key::ec(), Key::rsa());
    let idp = idp_with(&[&ec, &rsa]).await;
    for key in [&ec, &rsa] {
        // The code flow, the code redeemed with an assertion instead of a secret.
        let pkce = pkce();
        let mut params = auth_params(&pkce, "openid offline_access");
        params[1].1 = APP.to_owned();
        params.push(("prompt".into(), "consent".into()));
        let code = location_params(&authorize(&idp, &http(), &params).await)["code"].clone();
        let assertion = key.assertion(&idp, &[]);
        let (status, body) = post(
            &idp,
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &pkce.verifier),
                ("client_id", APP),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &assertion),
            ],
        )
        .await;
        assert_eq!(status, 200, "{} {body}", key.alg());
        let refresh = body["refresh_token"].as_str().expect("refresh token");
        // The refresh, with a new assertion (no client_id: `iss` names the client).
        let (status, body) = post(
            &idp,
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &key.assertion(&idp, &[])),
            ],
        )
        .await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test]
async fn the_token_endpoint_url_and_an_audience_list_are_accepted_as_aud() {
    let key = Key::ec();
    let idp = idp_with(&[&key]).await;
    for aud in [
        json!(idp.url("/token")),
        json!(["https://other.example", idp.issuer()]),
    ] {
        let answer = with_assertion(&idp, &key.assertion(&idp, &[("aud", aud.clone())])).await;
        assert_eq!(answer.0, 200, "aud {aud}: {}", answer.1);
    }
}

#[tokio::test]
async fn revocation_introspection_and_device_authorization_take_assertions() {
    let key = Key::ec();
    let idp = idp_with(&[&key]).await;
    let (status, body) = with_assertion(&idp, &key.assertion(&idp, &[])).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().expect("token").to_owned();
    let form = |assertion: String| {
        vec![
            ("client_assertion_type", ASSERTION_TYPE.to_owned()),
            ("client_assertion", assertion),
        ]
    };
    let introspect = |assertion: String| {
        let mut form = form(assertion);
        form.push(("token", token.clone()));
        form
    };
    let send = |path: &'static str, form: Vec<(&'static str, String)>| {
        let idp = &idp;
        async move {
            let response = http()
                .post(idp.url(path))
                .form(&form)
                .send()
                .await
                .expect("post");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = send("/introspect", introspect(key.assertion(&idp, &[]))).await;
    assert_eq!((status, &body["active"]), (200, &json!(true)), "{body}");
    let mut device = form(key.assertion(&idp, &[]));
    device.push(("scope", "openid".to_owned()));
    let (status, body) = send("/device_authorization", device).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["device_code"].is_string());
    let (status, _) = send("/revoke", introspect(key.assertion(&idp, &[]))).await;
    assert_eq!(status, 200);
    let (_, body) = send("/introspect", introspect(key.assertion(&idp, &[]))).await;
    assert_eq!(body["active"], false, "revoked with an assertion");
    // The same checks apply there: a replayed assertion is refused.
    let once = key.assertion(&idp, &[]);
    assert_eq!(send("/revoke", introspect(once.clone())).await.0, 200);
    refused(&send("/revoke", introspect(once)).await, "replay");
}

#[tokio::test]
async fn every_bad_assertion_is_refused_with_its_reason() {
    let key = Key::ec();
    let other = Key::ec();
    let idp = idp_with(&[&key]).await;
    let now = idp.control().now();

    let replayed = key.assertion(&idp, &[]);
    assert_eq!(with_assertion(&idp, &replayed).await.0, 200);
    refused(&with_assertion(&idp, &replayed).await, "replay");

    let cases: Vec<(&str, String)> = vec![
        (
            "aud must name the issuer",
            key.assertion(&idp, &[("aud", json!("https://someone-else.example"))]),
        ),
        (
            "aud must name the issuer",
            key.assertion(&idp, &[("aud", json!(idp.url("/userinfo")))]),
        ),
        (
            "iss and sub must both be the client_id",
            key.assertion(&idp, &[("sub", json!("someone-else"))]),
        ),
        (
            "expired",
            key.assertion(&idp, &[("iat", json!(now - 120)), ("exp", json!(now - 60))]),
        ),
        (
            "exp claim is missing",
            key.assertion(&idp, &[("exp", Value::Null)]),
        ),
        (
            "jti claim is missing",
            key.assertion(&idp, &[("jti", Value::Null)]),
        ),
        (
            "in the future",
            key.assertion(
                &idp,
                &[("iat", json!(now + 3600)), ("exp", json!(now + 3660))],
            ),
        ),
        (
            "at most 300 s",
            key.assertion(&idp, &[("exp", json!(now + 3600))]),
        ),
        (
            "does not verify with any of the client's registered keys",
            other.assertion(&idp, &[]),
        ),
    ];
    for (why, assertion) in &cases {
        refused(&with_assertion(&idp, assertion).await, why);
    }

    // Another client's iss, with this client's client_id.
    let theirs = key.assertion(
        &idp,
        &[
            ("iss", json!("chat-example")),
            ("sub", json!("chat-example")),
        ],
    );
    refused(
        &post(
            &idp,
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", APP),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &theirs),
            ],
        )
        .await,
        "iss and sub must both be the client_id",
    );

    // alg none and HS256 (keyed with the public key's text, the classic confusion).
    let claims = good_claims(&idp);
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none"}"#),
        b64(claims.to_string().as_bytes())
    );
    refused(
        &with_assertion(&idp, &unsigned).await,
        "alg \"none\" is not accepted",
    );
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256"}"#),
        b64(claims.to_string().as_bytes())
    );
    let mac_key = aws_lc_rs::hmac::Key::new(
        aws_lc_rs::hmac::HMAC_SHA256,
        key.jwk().to_string().as_bytes(),
    );
    let hs256 = format!(
        "{input}.{}",
        b64(aws_lc_rs::hmac::sign(&mac_key, input.as_bytes()).as_ref())
    );
    refused(
        &with_assertion(&idp, &hs256).await,
        "alg \"HS256\" is not accepted",
    );

    // A wrong assertion type.
    refused(
        &post(
            &idp,
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:example:saml"),
                ("client_assertion", &key.assertion(&idp, &[])),
            ],
        )
        .await,
        "client_assertion_type must be",
    );
}

#[tokio::test]
async fn an_assertion_expires_by_the_providers_clock() {
    let key = Key::ec();
    let idp = idp_with(&[&key]).await;
    let assertion = key.assertion(&idp, &[]);
    idp.control()
        .advance_clock(std::time::Duration::from_secs(61));
    refused(&with_assertion(&idp, &assertion).await, "expired");
}

#[tokio::test]
async fn a_full_replay_cache_answers_503_and_forgets_no_live_assertion() {
    let key = Key::ec();
    let config = sessionkit_mock_idp::Config {
        replay_cache_capacity: 1,
        ..Default::default()
    };
    let idp = MockIdp::builder()
        .config(config)
        .start()
        .await
        .expect("starts");
    let idp = register(idp, &[&key]);
    idp.control().freeze_clock();
    let first = key.assertion(&idp, &[]);
    assert_eq!(with_assertion(&idp, &first).await.0, 200);

    // A good second assertion while the first is live: no room to record it.
    let response = http()
        .post(idp.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", key.assertion(&idp, &[]).as_str()),
        ])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(
        response.headers()["retry-after"],
        "61",
        "the first lives 60 s"
    );
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");

    // The live one was not forgotten to make room.
    refused(&with_assertion(&idp, &first).await, "replay");
    idp.control()
        .advance_clock(std::time::Duration::from_secs(61));
    assert_eq!(with_assertion(&idp, &key.assertion(&idp, &[])).await.0, 200);
}

#[tokio::test]
async fn a_key_client_cannot_use_a_secret_nor_a_secret_client_an_assertion() {
    let key = Key::ec();
    let idp = idp_with(&[&key]).await;
    // A key client presenting only its id, or a made-up secret.
    refused(
        &post(
            &idp,
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", APP)],
        )
        .await,
        "private_key_jwt",
    );
    let response = http()
        .post(idp.url("/token"))
        .basic_auth(APP, Some("guess"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.expect("json");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap_or_default()
            .contains("private_key_jwt")
    );

    // A secret client signing an assertion (with a key it might have).
    let mut secret_client =
        ClientConfig::confidential("secret-app", SecretSource::Value("s3cret".into()));
    secret_client.jwks = Some(json!({"keys": [key.jwk()]}));
    idp.control()
        .register_client(secret_client)
        .expect("client");
    let claims = json!({"iss": "secret-app", "sub": "secret-app", "aud": idp.issuer(),
        "jti": random(16), "exp": idp.control().now() + 60});
    let assertion = key.sign(&json!({"alg": "ES256"}), &claims);
    refused(
        &with_assertion(&idp, &assertion).await,
        "not registered for private_key_jwt",
    );
    // And the two methods at once are one too many.
    let (status, body) = post(
        &idp,
        "/token",
        &[
            ("grant_type", "client_credentials"),
            ("client_secret", "s3cret"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[test]
fn clients_are_configured_with_their_keys_in_toml_or_refused_without() {
    let config = Config::from_toml(
        r#"
        [[clients]]
        client_id = "table"
        token_endpoint_auth_method = "private_key_jwt"
        jwks = { keys = [{ kty = "EC", crv = "P-256", x = "eA", y = "eQ" }] }
        [[clients]]
        client_id = "text"
        token_endpoint_auth_method = "private_key_jwt"
        jwks = '{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB"}]}'
        "#,
    )
    .expect("valid");
    assert!(
        config
            .clients
            .iter()
            .all(ClientConfig::uses_private_key_jwt)
    );
    assert_eq!(
        config.clients[1]
            .jwks
            .as_ref()
            .map(|j| j["keys"][0]["kty"].clone()),
        Some(json!("RSA"))
    );

    for bad in [
        "[[clients]]\nclient_id = \"a\"\ntoken_endpoint_auth_method = \"private_key_jwt\"\n",
        "[[clients]]\nclient_id = \"a\"\ntoken_endpoint_auth_method = \"private_key_jwt\"\nsecret = \"generated\"\njwks = { keys = [{ kty = \"EC\" }] }\n",
        "[[clients]]\nclient_id = \"a\"\njwks = { keys = [{ kty = \"EC\", d = \"private\" }] }\n",
    ] {
        assert!(Config::from_toml(bad).is_err(), "{bad}");
    }
    let mut no_keys = ClientConfig::public("x");
    no_keys.token_endpoint_auth_method = Some(ClientAuthMethod::PrivateKeyJwt);
    assert!(no_keys.check().is_err());
}

#[tokio::test]
async fn the_control_api_refuses_a_key_client_without_keys() {
    let idp = idp().await;
    let mut client = ClientConfig::public("keyless");
    client.token_endpoint_auth_method = Some(ClientAuthMethod::PrivateKeyJwt);
    assert!(idp.control().register_client(client.clone()).is_err());
    let response = http()
        .post(idp.url("/_control/clients"))
        .json(&client)
        .send()
        .await
        .expect("post");
    assert!(response.status().is_client_error(), "{}", response.status());
}
