//! DPoP (RFC 9449) over real sockets: bound tokens issued and used, every
//! kind of bad proof refused at the token endpoint and at userinfo, bound
//! refresh tokens and codes, clients that require DPoP, nonces, a narrowed
//! list of algorithms. Proofs are signed here with P-256 keys from
//! aws-lc-rs, independently of the provider's own verifier.
//!
//! (Over 500 lines: one file per protocol feature, as the other modules;
//! the signer and the flow helpers are at the top.)

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use sessionkit_mock_idp::{ClientConfig, Config, MockIdp};

use crate::support::*;

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

/// A client's DPoP key: P-256, as the SDK will use.
struct Key {
    pair: EcdsaKeyPair,
}

impl Key {
    fn new() -> Self {
        Self {
            pair: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("p-256"),
        }
    }

    fn coordinates(&self) -> (String, String) {
        let point = self.pair.public_key().as_ref();
        (b64(&point[1..33]), b64(&point[33..]))
    }

    fn jwk(&self) -> Value {
        let (x, y) = self.coordinates();
        json!({"kty": "EC", "crv": "P-256", "x": x, "y": y})
    }

    /// The RFC 7638 thumbprint, computed here from its definition.
    fn jkt(&self) -> String {
        let (x, y) = self.coordinates();
        b64(&sha256(
            format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes(),
        ))
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", b64(sig.as_ref()))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()})
    }

    /// A good proof for `htm` `htu` at the provider's time, with `extra` claims.
    fn proof(&self, idp: &MockIdp, htm: &str, htu: &str, extra: &[(&str, Value)]) -> String {
        self.sign(&self.header(), &claims(idp, htm, htu, extra))
    }
}

fn claims(idp: &MockIdp, htm: &str, htu: &str, extra: &[(&str, Value)]) -> Value {
    let mut claims = json!({
        "jti": random(16),
        "htm": htm,
        "htu": htu,
        "iat": idp.control().now(),
    });
    for (k, v) in extra {
        claims[*k] = v.clone();
    }
    claims
}

fn ath(access_token: &str) -> Value {
    json!(b64(&sha256(access_token.as_bytes())))
}

/// An answer: status, headers, JSON body (or `null`).
struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        Self {
            status,
            headers,
            body,
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a refusal with `status` and `error`; returns the description.
    fn refused(&self, status: u16, error: &str) -> String {
        assert_eq!(
            (self.status, self.body["error"].as_str()),
            (status, Some(error)),
            "{}",
            self.body
        );
        self.body["error_description"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
}

async fn post_token(idp: &MockIdp, form: &[(&str, &str)], proofs: &[String]) -> Answer {
    let mut request = http().post(idp.url("/token")).form(form);
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    Answer::of(request.send().await.expect("token")).await
}

/// Userinfo with `Authorization: SCHEME TOKEN` and the given proofs.
async fn get_userinfo(idp: &MockIdp, scheme: &str, token: &str, proofs: &[String]) -> Answer {
    let mut request = http()
        .get(idp.url("/userinfo"))
        .header("authorization", format!("{scheme} {token}"));
    for proof in proofs {
        request = request.header("DPoP", proof);
    }
    Answer::of(request.send().await.expect("userinfo")).await
}

/// A consented authorization code (with `extra` authorization parameters)
/// for `client`, and its PKCE verifier.
async fn code_for(idp: &MockIdp, client: &str, extra: &[(&str, &str)]) -> (String, String) {
    let pkce = pkce();
    let mut params = auth_params(&pkce, "openid offline_access");
    for (k, v) in params.iter_mut() {
        if k == "client_id" {
            *v = client.to_owned();
        }
    }
    params.push(("prompt".into(), "consent".into()));
    for (k, v) in extra {
        params.push(((*k).to_owned(), (*v).to_owned()));
    }
    let response = authorize(idp, &http(), &params).await;
    let location = location_params(&response);
    let code = location
        .get("code")
        .unwrap_or_else(|| panic!("no code: {location:?}"))
        .clone();
    (code, pkce.verifier)
}

fn redeem_form<'a>(client: &'a str, code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", client),
        ("code_verifier", verifier),
    ]
}

/// The code flow of the public client with a proof by `key`: the token response.
async fn bound_tokens(idp: &MockIdp, key: &Key) -> Value {
    let (code, verifier) = code_for(idp, CLIENT, &[]).await;
    let proof = key.proof(idp, "POST", &idp.url("/token"), &[]);
    let answer = post_token(idp, &redeem_form(CLIENT, &code, &verifier), &[proof]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.body
}

async fn refresh_with(idp: &MockIdp, refresh_token: &str, proofs: &[String]) -> Answer {
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
        ("client_id", CLIENT),
    ];
    post_token(idp, &form, proofs).await
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

fn str_of<'a>(v: &'a Value, name: &str) -> &'a str {
    v[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {v}"))
}

#[tokio::test]
async fn bound_tokens_are_issued_usable_with_their_key_and_introspected_with_cnf() {
    let idp = idp_auto("alice").await;
    let discovery: Value = discovery(&idp).await;
    let algs = discovery["dpop_signing_alg_values_supported"]
        .as_array()
        .expect("advertised");
    for alg in ["ES256", "RS256", "EdDSA"] {
        assert!(algs.contains(&json!(alg)), "{alg}");
    }
    assert!(!algs.contains(&json!("none")) && !algs.contains(&json!("HS256")));

    let key = Key::new();
    let tokens = bound_tokens(&idp, &key).await;
    assert_eq!(tokens["token_type"], "DPoP");
    let at = str_of(&tokens, "access_token");
    let (_, claims) = decode(at);
    assert_eq!(claims["cnf"]["jkt"], key.jkt());

    let url = idp.url("/userinfo");
    let proof = key.proof(&idp, "GET", &url, &[("ath", ath(at))]);
    let answer = get_userinfo(&idp, "DPoP", at, &[proof]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["sub"], "alice");
    assert_eq!(answer.header("dpop-nonce"), None, "nonces are off");

    let seen = introspect(&idp, at).await;
    assert_eq!(
        (seen["active"].as_bool(), seen["token_type"].as_str()),
        (Some(true), Some("DPoP"))
    );
    assert_eq!(seen["cnf"]["jkt"], key.jkt());
    let rt = str_of(&tokens, "refresh_token");
    assert_eq!(introspect(&idp, rt).await["cnf"]["jkt"], key.jkt());

    // Refreshed with a proof by the same key: bound again.
    let proof = key.proof(&idp, "POST", &idp.url("/token"), &[]);
    let refreshed = refresh_with(&idp, rt, &[proof]).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
    assert_eq!(refreshed.body["token_type"], "DPoP");
    let at2 = str_of(&refreshed.body, "access_token");
    assert_eq!(decode(at2).1["cnf"]["jkt"], key.jkt());
    let rt2 = str_of(&refreshed.body, "refresh_token");
    assert_eq!(introspect(&idp, rt2).await["cnf"]["jkt"], key.jkt());

    // The POST form of userinfo takes a proof for POST.
    let proof = key.proof(&idp, "POST", &url, &[("ath", ath(at2))]);
    let answer = Answer::of(
        http()
            .post(&url)
            .header("authorization", format!("DPoP {at2}"))
            .header("DPoP", proof)
            .send()
            .await
            .expect("userinfo"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn a_bound_token_presented_as_bearer_is_refused_with_a_dpop_challenge() {
    let idp = idp_auto("alice").await;
    let key = Key::new();
    let tokens = bound_tokens(&idp, &key).await;
    let at = str_of(&tokens, "access_token");
    for proofs in [
        vec![],
        vec![key.proof(&idp, "GET", &idp.url("/userinfo"), &[("ath", ath(at))])],
    ] {
        let answer = get_userinfo(&idp, "Bearer", at, &proofs).await;
        let why = answer.refused(401, "invalid_token");
        assert!(why.contains("DPoP-bound"), "{why}");
        let challenge = answer.header("www-authenticate").expect("challenge");
        assert!(
            challenge.starts_with("DPoP error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(challenge.contains("algs=\"ES256"), "{challenge}");
    }
    // Without any credentials both schemes are offered.
    let answer = Answer::of(http().get(idp.url("/userinfo")).send().await.expect("get")).await;
    assert_eq!(answer.status, 401);
    let challenge = answer.header("www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("Bearer") && challenge.contains("DPoP algs="),
        "{challenge}"
    );
}

#[tokio::test]
async fn an_unbound_token_stays_a_bearer_token() {
    let idp = idp_auto("alice").await;
    let tokens = consented(&idp).await;
    assert_eq!(tokens["token_type"], "Bearer");
    let at = str_of(&tokens, "access_token");
    assert!(decode(at).1.get("cnf").is_none());
    assert_eq!(introspect(&idp, at).await["token_type"], "Bearer");
    assert_eq!(get_userinfo(&idp, "Bearer", at, &[]).await.status, 200);
    // Sent as DPoP, with a good proof, it is refused: it is bound to no key.
    let key = Key::new();
    let proof = key.proof(&idp, "GET", &idp.url("/userinfo"), &[("ath", ath(at))]);
    let answer = get_userinfo(&idp, "DPoP", at, &[proof]).await;
    let why = answer.refused(401, "invalid_token");
    assert!(why.contains("not DPoP-bound"), "{why}");
    // Its refresh token is not bound: refreshing without a proof works.
    let refreshed = refresh_with(&idp, str_of(&tokens, "refresh_token"), &[]).await;
    assert_eq!(refreshed.status, 200, "{}", refreshed.body);
}

/// Bad proofs for a request `htm` `htu`, each with a word its refusal must name.
fn bad_proofs(
    idp: &MockIdp,
    key: &Key,
    htm: &str,
    htu: &str,
    extra: &[(&str, Value)],
) -> Vec<(&'static str, String, &'static str)> {
    let now = idp.control().now();
    let good_claims = || claims(idp, htm, htu, extra);
    let with_claims = |edit: &dyn Fn(&mut Value)| {
        let mut c = good_claims();
        edit(&mut c);
        key.sign(&key.header(), &c)
    };
    let with_header = |edit: &dyn Fn(&mut Value)| {
        let mut h = key.header();
        edit(&mut h);
        key.sign(&h, &good_claims())
    };
    let other_method = if htm == "GET" { "POST" } else { "GET" };
    let unsigned = {
        let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk()});
        format!(
            "{}.{}.",
            b64(header.to_string().as_bytes()),
            b64(good_claims().to_string().as_bytes())
        )
    };
    let hmac = {
        let header =
            json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2VjcmV0"}});
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(good_claims().to_string().as_bytes())
        );
        let k = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"secret");
        format!(
            "{input}.{}",
            b64(aws_lc_rs::hmac::sign(&k, input.as_bytes()).as_ref())
        )
    };
    let other = Key::new();
    vec![
        (
            "another URL",
            with_claims(&|c| c["htu"] = json!(format!("{htu}-elsewhere"))),
            "is for",
        ),
        (
            "another host",
            with_claims(&|c| c["htu"] = json!(htu.replace("127.0.0.1", "localhost"))),
            "is for",
        ),
        (
            "another method",
            with_claims(&|c| c["htm"] = json!(other_method)),
            "method",
        ),
        (
            "too old",
            with_claims(&|c| c["iat"] = json!(now - 120)),
            "too old",
        ),
        (
            "in the future",
            with_claims(&|c| c["iat"] = json!(now + 120)),
            "future",
        ),
        (
            "no jti",
            with_claims(&|c| {
                c.as_object_mut().map(|o| o.remove("jti"));
            }),
            "jti",
        ),
        (
            "another key's jwk",
            with_header(&|h| h["jwk"] = other.jwk()),
            "signature",
        ),
        (
            "a private jwk",
            with_header(&|h| h["jwk"]["d"] = json!(b64(&[9; 32]))),
            "private",
        ),
        ("typ JWT", with_header(&|h| h["typ"] = json!("JWT")), "typ"),
        (
            "no typ",
            with_header(&|h| {
                h.as_object_mut().map(|o| o.remove("typ"));
            }),
            "typ",
        ),
        ("alg none", unsigned, "alg"),
        ("alg HS256", hmac, "alg"),
        ("not a JWS", "not-a-proof".to_owned(), "malformed"),
    ]
}

#[tokio::test]
async fn bad_proofs_are_refused_at_the_token_endpoint_without_spending_the_code() {
    let idp = idp_auto("alice").await;
    let key = Key::new();
    let token_url = idp.url("/token");
    let (code, verifier) = code_for(&idp, CLIENT, &[]).await;
    let form = redeem_form(CLIENT, &code, &verifier);
    for (case, proof, word) in bad_proofs(&idp, &key, "POST", &token_url, &[]) {
        let answer = post_token(&idp, &form, &[proof]).await;
        let why = answer.refused(400, "invalid_dpop_proof");
        assert!(why.contains(word), "{case}: {why}");
    }
    // Two DPoP headers, even two good proofs.
    let two = [
        key.proof(&idp, "POST", &token_url, &[]),
        key.proof(&idp, "POST", &token_url, &[]),
    ];
    let why = post_token(&idp, &form, &two)
        .await
        .refused(400, "invalid_dpop_proof");
    assert!(why.contains("more than one"), "{why}");

    // The code was never spent: a good proof redeems it.
    let good = key.proof(&idp, "POST", &token_url, &[]);
    let answer = post_token(&idp, &form, std::slice::from_ref(&good)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    // The same proof again is a replay, whatever it is sent with.
    let rt = str_of(&answer.body, "refresh_token").to_owned();
    let why = refresh_with(&idp, &rt, &[good])
        .await
        .refused(400, "invalid_dpop_proof");
    assert!(why.contains("used before"), "{why}");
}

#[tokio::test]
async fn bad_proofs_are_refused_at_userinfo_with_a_dpop_challenge() {
    let idp = idp_auto("alice").await;
    let key = Key::new();
    let tokens = bound_tokens(&idp, &key).await;
    let at = str_of(&tokens, "access_token");
    let url = idp.url("/userinfo");
    let refused = |answer: &Answer, error: &str| {
        let why = answer.refused(401, error);
        let challenge = answer.header("www-authenticate").expect("challenge");
        assert!(
            challenge.starts_with(&format!("DPoP error=\"{error}\"")),
            "{challenge}"
        );
        why
    };
    let mut cases = bad_proofs(&idp, &key, "GET", &url, &[("ath", ath(at))]);
    cases.push(("no ath", key.proof(&idp, "GET", &url, &[]), "no ath"));
    cases.push((
        "the ath of another token",
        key.proof(&idp, "GET", &url, &[("ath", ath("another-token"))]),
        "not the hash",
    ));
    for (case, proof, word) in cases {
        let answer = get_userinfo(&idp, "DPoP", at, &[proof]).await;
        let why = refused(&answer, "invalid_dpop_proof");
        assert!(why.contains(word), "{case}: {why}");
    }
    let why = refused(
        &get_userinfo(&idp, "DPoP", at, &[]).await,
        "invalid_dpop_proof",
    );
    assert!(why.contains("no DPoP header"), "{why}");

    // A good proof by another key: the token is not bound to it.
    let other = Key::new();
    let proof = other.proof(&idp, "GET", &url, &[("ath", ath(at))]);
    let why = refused(
        &get_userinfo(&idp, "DPoP", at, &[proof]).await,
        "invalid_token",
    );
    assert!(why.contains("another key"), "{why}");

    // A replayed proof.
    let proof = key.proof(&idp, "GET", &url, &[("ath", ath(at))]);
    assert_eq!(
        get_userinfo(&idp, "DPoP", at, std::slice::from_ref(&proof))
            .await
            .status,
        200
    );
    let why = refused(
        &get_userinfo(&idp, "DPoP", at, &[proof]).await,
        "invalid_dpop_proof",
    );
    assert!(why.contains("used before"), "{why}");

    // A revoked token is an invalid token, proof or not.
    let rt = str_of(&tokens, "refresh_token");
    let revoked = http()
        .post(idp.url("/revoke"))
        .form(&[("token", rt), ("client_id", CLIENT)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    let proof = key.proof(&idp, "GET", &url, &[("ath", ath(at))]);
    refused(
        &get_userinfo(&idp, "DPoP", at, &[proof]).await,
        "invalid_token",
    );
}

#[tokio::test]
async fn a_bound_refresh_token_needs_a_proof_by_its_key() {
    let idp = idp_auto("alice").await;
    let key = Key::new();
    let tokens = bound_tokens(&idp, &key).await;
    let rt = str_of(&tokens, "refresh_token");
    let token_url = idp.url("/token");
    let other = Key::new().proof(&idp, "POST", &token_url, &[]);
    let why = refresh_with(&idp, rt, &[other])
        .await
        .refused(400, "invalid_grant");
    assert!(why.contains("another DPoP key"), "{why}");
    let why = refresh_with(&idp, rt, &[])
        .await
        .refused(400, "invalid_grant");
    assert!(why.contains("DPoP-bound"), "{why}");
    // Neither attempt spent it, nor revoked the grant: its key still refreshes.
    let proof = key.proof(&idp, "POST", &token_url, &[]);
    let answer = refresh_with(&idp, rt, &[proof]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn revoking_a_bound_refresh_token_works_as_before() {
    let idp = idp_auto("alice").await;
    let key = Key::new();
    let tokens = bound_tokens(&idp, &key).await;
    let rt = str_of(&tokens, "refresh_token");
    // A proof sent along is not needed, and does no harm.
    let proof = key.proof(&idp, "POST", &idp.url("/revoke"), &[]);
    let revoked = http()
        .post(idp.url("/revoke"))
        .header("DPoP", proof)
        .form(&[("token", rt), ("client_id", CLIENT)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(revoked.status(), 200);
    assert_eq!(introspect(&idp, rt).await["active"], false);
    let proof = key.proof(&idp, "POST", &idp.url("/token"), &[]);
    refresh_with(&idp, rt, &[proof])
        .await
        .refused(400, "invalid_grant");
}

#[tokio::test]
async fn a_client_that_requires_dpop_gets_nothing_without_a_proof() {
    let idp = idp_auto("alice").await;
    // Registered through the HTTP control API, as a person would.
    let registered = http()
        .post(idp.url("/_control/clients"))
        .json(&json!({
            "client_id": "dpop-app",
            "redirect_uris": ["http://127.0.0.1/callback"],
            "dpop_bound_access_tokens": true,
        }))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201);
    let (code, verifier) = code_for(&idp, "dpop-app", &[]).await;
    let form = redeem_form("dpop-app", &code, &verifier);
    let why = post_token(&idp, &form, &[])
        .await
        .refused(400, "invalid_dpop_proof");
    assert!(why.contains("dpop_bound_access_tokens"), "{why}");
    let key = Key::new();
    let proof = key.proof(&idp, "POST", &idp.url("/token"), &[]);
    let answer = post_token(&idp, &form, &[proof]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["token_type"], "DPoP");
    let rt = str_of(&answer.body, "refresh_token");
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", "dpop-app"),
    ];
    post_token(&idp, &form, &[])
        .await
        .refused(400, "invalid_dpop_proof");

    // In code and TOML alike, the switch is off unless set.
    assert!(!ClientConfig::public("x").dpop_bound_access_tokens);
    let config = sessionkit_mock_idp::Config::from_toml(
        "[[clients]]\nclient_id = \"a\"\ndpop_bound_access_tokens = true\n",
    )
    .expect("toml");
    assert!(config.clients[0].dpop_bound_access_tokens);
}

#[tokio::test]
async fn a_confidential_client_gets_bound_access_tokens_and_no_bound_refresh() {
    let idp = idp().await;
    let secret = idp.control().client_secret("chat-server").expect("secret");
    let key = Key::new();
    let proof = key.proof(&idp, "POST", &idp.url("/token"), &[]);
    let answer = Answer::of(
        http()
            .post(idp.url("/token"))
            .header("authorization", basic("chat-server", &secret))
            .header("DPoP", proof)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .expect("token"),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["token_type"], "DPoP");
    let at = str_of(&answer.body, "access_token");
    assert_eq!(decode(at).1["cnf"]["jkt"], key.jkt());
    assert_eq!(introspect(&idp, at).await["cnf"]["jkt"], key.jkt());
}

#[tokio::test]
async fn dpop_jkt_binds_the_code_to_one_key() {
    let idp = idp_auto("alice").await;
    let key = Key::new();
    let jkt = key.jkt();
    let (code, verifier) = code_for(&idp, CLIENT, &[("dpop_jkt", &jkt)]).await;
    let form = redeem_form(CLIENT, &code, &verifier);
    let token_url = idp.url("/token");
    let why = post_token(&idp, &form, &[])
        .await
        .refused(400, "invalid_grant");
    assert!(why.contains("dpop_jkt"), "{why}");
    let other = Key::new().proof(&idp, "POST", &token_url, &[]);
    let why = post_token(&idp, &form, &[other])
        .await
        .refused(400, "invalid_grant");
    assert!(why.contains("another DPoP key"), "{why}");
    let proof = key.proof(&idp, "POST", &token_url, &[]);
    let answer = post_token(&idp, &form, &[proof]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        decode(str_of(&answer.body, "access_token")).1["cnf"]["jkt"],
        jkt
    );

    // A dpop_jkt that is no thumbprint goes back to the client as an error.
    let pkce = pkce();
    let mut params = auth_params(&pkce, "openid");
    params.push(("dpop_jkt".into(), "short".into()));
    let location = location_params(&authorize(&idp, &http(), &params).await);
    assert_eq!(
        location.get("error").map(String::as_str),
        Some("invalid_request")
    );
}

#[tokio::test]
async fn required_nonces_are_challenged_then_accepted_and_rotate() {
    let idp = idp_auto("alice").await;
    let key = Key::new();
    let token_url = idp.url("/token");
    let url = idp.url("/userinfo");
    // A stopped clock: the nonce rotates only when the test moves it.
    idp.control().freeze_clock();
    idp.control().set_dpop_nonce_required(true);

    // The token endpoint: 400 use_dpop_nonce with a nonce, then the retry works.
    let (code, verifier) = code_for(&idp, CLIENT, &[]).await;
    let form = redeem_form(CLIENT, &code, &verifier);
    let answer = post_token(&idp, &form, &[key.proof(&idp, "POST", &token_url, &[])]).await;
    let why = answer.refused(400, "use_dpop_nonce");
    assert!(why.contains("DPoP-Nonce"), "{why}");
    let nonce = answer.header("dpop-nonce").expect("a nonce").to_owned();
    assert_eq!(Some(nonce.clone()), idp.control().dpop_nonce());
    let proof = key.proof(&idp, "POST", &token_url, &[("nonce", json!(nonce))]);
    let tokens = post_token(&idp, &form, &[proof]).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    assert_eq!(
        tokens.header("dpop-nonce"),
        Some(nonce.as_str()),
        "kept fresh"
    );
    let at = str_of(&tokens.body, "access_token").to_owned();
    let rt = str_of(&tokens.body, "refresh_token").to_owned();

    // Userinfo: 401 with a DPoP challenge and a nonce, then the retry works.
    let proof = key.proof(&idp, "GET", &url, &[("ath", ath(&at))]);
    let answer = get_userinfo(&idp, "DPoP", &at, &[proof]).await;
    answer.refused(401, "use_dpop_nonce");
    let challenge = answer.header("www-authenticate").expect("challenge");
    assert!(
        challenge.starts_with("DPoP error=\"use_dpop_nonce\""),
        "{challenge}"
    );
    let nonce = answer.header("dpop-nonce").expect("a nonce").to_owned();
    let proof = key.proof(
        &idp,
        "GET",
        &url,
        &[("ath", ath(&at)), ("nonce", json!(nonce))],
    );
    assert_eq!(get_userinfo(&idp, "DPoP", &at, &[proof]).await.status, 200);

    // Ten minutes on, the nonce has rotated: the old one is stale.
    idp.control()
        .advance_clock(std::time::Duration::from_secs(600));
    let fresh = idp.control().dpop_nonce().expect("required");
    assert_ne!(fresh, nonce);
    let stale = key.proof(&idp, "POST", &token_url, &[("nonce", json!(nonce))]);
    let answer = refresh_with(&idp, &rt, &[stale]).await;
    let why = answer.refused(400, "use_dpop_nonce");
    assert!(why.contains("not current"), "{why}");
    assert_eq!(answer.header("dpop-nonce"), Some(fresh.as_str()));
    let proof = key.proof(&idp, "POST", &token_url, &[("nonce", json!(fresh))]);
    let answer = refresh_with(&idp, &rt, &[proof]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Off again through the HTTP control API: proofs without nonces pass.
    let state: Value = http()
        .put(idp.url("/_control/dpop"))
        .json(&json!({"nonce_required": false}))
        .send()
        .await
        .expect("control")
        .json()
        .await
        .expect("json");
    assert_eq!(
        (state["nonce_required"].as_bool(), &state["nonce"]),
        (Some(false), &Value::Null)
    );
    assert!(!idp.control().dpop_nonce_required());
    let rt = str_of(&answer.body, "refresh_token");
    let proof = key.proof(&idp, "POST", &token_url, &[]);
    let answer = refresh_with(&idp, rt, &[proof]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.header("dpop-nonce"), None);
}

#[tokio::test]
async fn a_full_replay_cache_answers_503_and_forgets_no_live_proof() {
    let idp = MockIdp::builder()
        .config(Config {
            replay_cache_capacity: 2,
            ..Config::default()
        })
        .auto_login("alice")
        .start()
        .await
        .expect("mock idp starts");
    idp.control().freeze_clock();
    let key = Key::new();
    let url = idp.url("/userinfo");
    // Two live proofs: the token request's, then a userinfo call's.
    let tokens = bound_tokens(&idp, &key).await;
    let at = str_of(&tokens, "access_token").to_owned();
    let first = key.proof(&idp, "GET", &url, &[("ath", ath(&at))]);
    let answer = get_userinfo(&idp, "DPoP", &at, std::slice::from_ref(&first)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // A third is refused: not for what it is (no challenge), for now.
    let third = key.proof(&idp, "GET", &url, &[("ath", ath(&at))]);
    let answer = get_userinfo(&idp, "DPoP", &at, std::slice::from_ref(&third)).await;
    let why = answer.refused(503, "temporarily_unavailable");
    assert!(why.contains("try again"), "{why}");
    let retry_after: u64 = answer
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=61).contains(&retry_after), "{retry_after}");
    assert_eq!(answer.header("www-authenticate"), None);
    // The same at the token endpoint.
    let proof = key.proof(&idp, "POST", &idp.url("/token"), &[]);
    let rt = str_of(&tokens, "refresh_token");
    refresh_with(&idp, rt, &[proof])
        .await
        .refused(503, "temporarily_unavailable");

    // The live proofs were not forgotten to make room: a replay is refused.
    let answer = get_userinfo(&idp, "DPoP", &at, &[first]).await;
    let why = answer.refused(401, "invalid_dpop_proof");
    assert!(why.contains("used before"), "{why}");

    // Once they are out of their window, there is room again.
    idp.control()
        .advance_clock(std::time::Duration::from_secs(retry_after));
    let proof = key.proof(&idp, "GET", &url, &[("ath", ath(&at))]);
    let answer = get_userinfo(&idp, "DPoP", &at, &[proof]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test]
async fn the_account_api_takes_bound_tokens_with_proofs_for_its_urls() {
    let idp = idp_auto("alice").await;
    let key = Key::new();
    let (code, verifier) = {
        let pkce = pkce();
        let mut params = auth_params(&pkce, crate::logout::ACCOUNT_TOKEN_SCOPE);
        params.push(("prompt".into(), "consent".into()));
        let location = location_params(&authorize(&idp, &http(), &params).await);
        (location["code"].clone(), pkce.verifier)
    };
    let proof = key.proof(&idp, "POST", &idp.url("/token"), &[]);
    let tokens = post_token(&idp, &redeem_form(CLIENT, &code, &verifier), &[proof]).await;
    assert_eq!(tokens.status, 200, "{}", tokens.body);
    let at = str_of(&tokens.body, "access_token");
    let list_url = idp.url("/account/sessions");
    let get = |proof: String| {
        let url = list_url.clone();
        let at = at.to_owned();
        async move {
            Answer::of(
                http()
                    .get(url)
                    .header("authorization", format!("DPoP {at}"))
                    .header("DPoP", proof)
                    .send()
                    .await
                    .expect("get"),
            )
            .await
        }
    };
    let answer = get(key.proof(&idp, "GET", &list_url, &[("ath", ath(at))])).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let sid = answer.body["sessions"][0]["sid"]
        .as_str()
        .expect("a session")
        .to_owned();
    // A proof for another URL is refused.
    let answer = get(key.proof(&idp, "GET", &idp.url("/userinfo"), &[("ath", ath(at))])).await;
    answer.refused(401, "invalid_dpop_proof");
    let session_url = idp.url(&format!("/account/sessions/{sid}"));
    let proof = key.proof(&idp, "DELETE", &session_url, &[("ath", ath(at))]);
    let deleted = http()
        .delete(&session_url)
        .header("authorization", format!("DPoP {at}"))
        .header("DPoP", proof)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert!(idp.control().sessions(Some("alice")).is_empty());
}

#[tokio::test]
async fn a_narrowed_alg_list_is_advertised_and_other_proofs_are_refused() {
    let idp = MockIdp::builder()
        .config(sessionkit_mock_idp::Config {
            dpop_signing_algs: vec!["PS256".to_owned(), "EdDSA".to_owned()],
            ..sessionkit_mock_idp::Config::default()
        })
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let discovery: Value = discovery(&idp).await;
    assert_eq!(
        discovery["dpop_signing_alg_values_supported"],
        json!(["PS256", "EdDSA"])
    );
    // An ES256 proof, good in every other way, is refused before the grant.
    let key = Key::new();
    let (code, verifier) = code_for(&idp, CLIENT, &[]).await;
    let form = redeem_form(CLIENT, &code, &verifier);
    let proof = key.proof(&idp, "POST", &idp.url("/token"), &[]);
    let why = post_token(&idp, &form, &[proof])
        .await
        .refused(400, "invalid_dpop_proof");
    assert!(why.contains("\"ES256\" is not accepted"), "{why}");
    // The code is not spent: without a proof it still redeems, as a bearer token.
    let answer = post_token(&idp, &form, &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.body["token_type"], "Bearer");
    // The resource endpoints' challenges name the narrowed list.
    let answer = Answer::of(http().get(idp.url("/userinfo")).send().await.expect("get")).await;
    assert_eq!(answer.status, 401);
    let challenge = answer.header("www-authenticate").expect("challenge");
    assert!(
        challenge.ends_with("DPoP algs=\"PS256 EdDSA\""),
        "{challenge}"
    );
}
