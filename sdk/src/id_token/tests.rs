//! The signature half of the check, with keys of every kind the allow-list
//! takes and the keys and tokens it must refuse. The claim checks have their
//! forged-token tests in `sdk/tests/login.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rsa::pkcs1::DecodeRsaPrivateKey as _;
use rsa::sha2::{Digest as _, Sha256};
use rsa::traits::PublicKeyParts as _;
use serde_json::{Value, json};

use super::{Expectations, Jwks, verify_with_keys};
use crate::error::IdTokenError;
use crate::secret::{AccessToken, IdToken, Nonce};

const ISSUER: &str = "https://id.example.com";
const CLIENT: &str = "chat-example";

/// Test-only RSA keys that the check must refuse, made with
/// `openssl genrsa -3 2048` and `openssl genrsa 1024` (PKCS#1 DER, base64).
/// Deliberately weak; they protect nothing. aws-lc cannot make such keys.
const RSA_2048_E3: &str = "MIIEpAIBAAKCAQEAwNQKAWN7Ws7ZoVsMVkhV3w0sfHz7Jjw00TiTg84wC9z19qPCZ9PnW0u0gh3JVAlvIAvgy08y1lA+7fjkKS53m8SKqNr/TCno0hsS6YIxaeEGO99ioQqPn2H8GuV+2vmuVpQMFnF3kBB7E39oDeV3hsaCGW3UHJhycN7eYSwT6LVIiqPHO+5NYPbbtBibenL9OUiOp3+GbllYC6zvtl1r00XAZOSjxZxB1zix+2CARVsWpQcHm+/qlsehoqXb/brStzignA93xAVz8FRxLcoxeE3cRwG68oMXn16gDQXrLB07DuglQ5IdSWCBsJ7rndh6SIBU6q11uwvDyJnL6qaiDQIBAwKCAQEAgI1cAOz85zSRFjyy5DA5P14dqFNSGX14i3sNAol1XT35TxfW7+KaPN0jAWkw4rD0wAfrMjTMjuAp8/tCxh76Z9hccJH/iBvwjBIMm6wg8UCu0pTsa1xfv5aoEe5UkfvJjw1dZEulCrWnYlTwCUOlBIRWu56NaGWhoJSUQMgNRc0HYfOtb7sPQrHBalGpcjLSnqSsqXHMNtkt1EzQVtpzZTzfm7kN9zscb/+UoZnjA63Cb8F0FZ+PklXxKXW3Zxz5bBBh1dJ86cOMLdBgu7CIPUeFHG4oPKsdJPd0jmmmvEa6s4r530URLa6SxlypFVWtWUriW2VP2eKSvR3j7+fQUwKBgQDubZr9kAEVP21uWAy0pD1IQUTcYF+Feo9tVg9KoQmwoWy/ou5NNIIqzoVuwrceHPwXnX7JgoNXBWWVF42xbx8Xg7VK4GwHUyWVwr45s/RmHkT74IlQrgWizqCr8a4N3vaICRwjgtSUPjglljCKJ3WJIYxjn9qOIFNkwIYyefjvewKBgQDPChtFhFShPX7LPJFoqul5CgyvSPVOoYQl9ypskwwOGf2xWGDBnkFsYLPkRkKNotpbX+YP+P08NeEizOeXc/BFEWrC+ue1EjqL6N2mYEz+/h2Yu9Mt6XzJGUrFRbljMrya+HuK8dXvRqJ/8ONj1mJtIQOdwbrv0+SC7GbDiNH6FwKBgQCe87ypCqtjf55JkAh4bX4wK4M9lZUDpwpI5AoxwLEga53VF0mIzawcia5J1yS+vf1lE6nbrFePWO5jZQkg9L9lAnjclZ1aN25j1yl7zU2ZaYNSlbDgdAPB3xXH9nQJP08FW2gXrI24KXrDuXWxb6OwwQhCapG0FYzt1a7MUVCfpwKBgQCKBrzZAuMWKP8yKGDwcfD7XAh02040a61upMbzDLK0EVPLkECBFCudlc1C2YGzwebnlUQKpf4oI+tsiJpk9/WDYPHXUe/ODCcH8JPEQDNUqWkQfTdz8P3bZjHY2SZCIdMR+v0HS+P02cGqoJeX5EGeFgJpK9H1N+2snZnXsIv8DwKBgQCeHsyfHgClzV9FrWShcYOBOpx6RzvcwR0GCuaSw6kc0pD17Hh1FjwWq5zUTkQfheR85vH9xp5i2qaZ8OXFWd4Z8ljcmd+mca+4HfeJNQ6vZKxEDbQjM/7HSSnojUmd0jX4zg50qCJd6V2y2mXTRy46R5nxrzognHA/fwGMAPLMsA==";
const RSA_1024: &str = "MIICXAIBAAKBgQDP0J19OssHNGFevGTo6wE+pacJGrEAFgBTqIW8yfewnimAlU3EG/fJ1aC4dytwefb6NJ9+PtkFI5kFilGi5MAOUF1flHUZwN4S1NGh7owOD1rhOjhPpQ1FyHwwY0xKS2EpC3xwKuhdG5aytn3BC/lOH28YmUwgHCoLblpmGCqnswIDAQABAoGAfGPmoNrcRAe6cLZbwH9KU3FcNjrfz6lbsLeitYo+1F0Xgnvb/JKxEwLoHQJX4g9fIgz1mt+Lj2PraEGO8+3wdozE67+bvfIJooKs/bFR698cCOW48dr+uriTsQos9WxROkcyOi4Bf6H9E+8lvtxcm3ekCtjrf2+aKBEs2eChQ4ECQQDqAVSSJFYKbG76XH98S7UckMCzLmOWXklZkBAasAX9JxBzEzILXhm7+U46eHTA/B/Amq+ypv1/yYDm4jesmOoDAkEA41kXA2pIrIBH3IySyDAGWWd7EfOAbohrZ7O0ioJtOl7pXu1fAzGGkWqOTSCW6PJStI7NALUbwF0mWN5A3ay0kQJAH4KoWbmM4IBzfUEhZaJoM/2GBVrUzDXMGMRedsmHNOyiuWw3S/KS8o4Cq7r2tdn9iJkL2bnE3wVKV0zVBGfe8wJAFl8g7Zwa1Ka265QFqZ9YMJoHOUf93mKcNxMu8+ZLu0+1pTq0e8r20/5pTFulnfyieNQIhkZMGczQxjPwrB+fkQJBAJ12gbrAgnNUjxFwpzIFQUKTP1iD/ZAeMgXA1po6qo2SjDSSpDgZ8aJ/xnUSRr5Ec1IgkugSuPbAX4B3RnSZz7A=";

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("time")
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "sub": "alice", "aud": CLIENT, "exp": now() + 300, "iat": now(), "nonce": "n-1"})
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims.to_string().as_bytes())
    )
}

/// The keys as a provider's JWKS document, read as discovery reads it.
fn jwks(keys: Value) -> Jwks {
    Jwks::from_json(json!({ "keys": keys }).to_string().as_bytes()).expect("a JWKS")
}

fn check(token: &str, keys: &Jwks) -> Result<super::IdClaims, IdTokenError> {
    let nonce = Nonce::new("n-1");
    verify_with_keys(
        &IdToken::new(token.to_owned()),
        keys,
        &Expectations {
            issuer: ISSUER,
            client_id: CLIENT,
            nonce: Some(&nonce),
            access_token: None,
            previous_sub: None,
            clock_skew: Duration::from_secs(60),
            now: SystemTime::now(),
        },
    )
}

struct Rsa {
    pair: aws_lc_rs::rsa::KeyPair,
}

impl Rsa {
    fn new() -> Self {
        Self {
            pair: aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa"),
        }
    }

    fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let public = self.pair.public_key();
        let mut jwk = json!({
            "kty": "RSA", "use": "sig", "kid": kid,
            "n": b64(public.modulus().big_endian_without_leading_zero()),
            "e": b64(public.exponent().big_endian_without_leading_zero()),
        });
        if let Some(alg) = alg {
            jwk["alg"] = alg.into();
        }
        jwk
    }

    fn token(
        &self,
        padding: &'static dyn signature::RsaEncoding,
        header: &Value,
        claims: &Value,
    ) -> String {
        let input = signing_input(header, claims);
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(padding, &SystemRandom::new(), input.as_bytes(), &mut sig)
            .expect("sign");
        format!("{input}.{}", b64(&sig))
    }
}

struct Ec {
    pair: signature::EcdsaKeyPair,
}

impl Ec {
    fn new() -> Self {
        Self {
            pair: signature::EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("ec"),
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
            "x": b64(&point[1..33]), "y": b64(&point[33..]),
        })
    }

    fn token(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", b64(sig.as_ref()))
    }
}

/// A token signed RS256 with an RSA key parsed from PKCS#1 DER (the rsa crate,
/// which takes keys aws-lc refuses), and that key's JWK.
fn weak_rsa_token(der_b64: &str) -> (String, Value) {
    let key = rsa::RsaPrivateKey::from_pkcs1_der(&STANDARD.decode(der_b64).expect("base64"))
        .expect("a PKCS#1 key");
    let input = signing_input(&json!({"alg": "RS256", "kid": "weak"}), &claims());
    let digest = Sha256::digest(input.as_bytes());
    let sig = key
        .sign(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest)
        .expect("sign");
    let jwk = json!({
        "kty": "RSA", "use": "sig", "alg": "RS256", "kid": "weak",
        "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
    });
    (format!("{input}.{}", b64(&sig)), jwk)
}

fn flip_signature_byte(token: &str) -> String {
    let (input, sig) = token.rsplit_once('.').expect("three parts");
    let mut sig = URL_SAFE_NO_PAD.decode(sig).expect("b64");
    sig[7] ^= 0x01;
    format!("{input}.{}", b64(&sig))
}

fn flip_payload_byte(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    let mut payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("b64");
    // Inside the value of `sub` ("alice" → "alicd"): still valid JSON.
    let at = payload.windows(5).position(|w| w == b"alice").expect("sub") + 4;
    payload[at] ^= 0x01;
    format!("{}.{}.{}", parts[0], b64(&payload), parts[2])
}

fn is_signature_error(r: &Result<super::IdClaims, IdTokenError>) -> bool {
    matches!(r, Err(IdTokenError::Signature(_)))
}

#[test]
fn rs256_ps256_and_es256_tokens_verify() {
    let rsa = Rsa::new();
    let ec = Ec::new();
    let keys = jwks(json!([rsa.jwk("r", None), ec.jwk("e")]));
    let rs256 = rsa.token(
        &signature::RSA_PKCS1_SHA256,
        &json!({"alg": "RS256", "kid": "r", "typ": "JWT"}),
        &claims(),
    );
    assert_eq!(check(&rs256, &keys).expect("RS256 verifies").sub, "alice");
    let ps256 = rsa.token(
        &signature::RSA_PSS_SHA256,
        &json!({"alg": "PS256", "kid": "r"}),
        &claims(),
    );
    assert_eq!(check(&ps256, &keys).expect("PS256 verifies").sub, "alice");
    let es256 = ec.token(
        &json!({"alg": "ES256", "kid": "e", "typ": "JWT"}),
        &claims(),
    );
    assert_eq!(check(&es256, &keys).expect("ES256 verifies").sub, "alice");
    // With one key of the right type, the token need not name it.
    let only_ec = jwks(json!([ec.jwk("e")]));
    let no_kid = ec.token(&json!({"alg": "ES256"}), &claims());
    assert!(check(&no_kid, &only_ec).is_ok());
}

#[test]
fn an_eddsa_token_verifies_and_its_at_hash_uses_sha512() {
    let pair = signature::Ed25519KeyPair::generate().expect("ed25519");
    let keys = jwks(json!([{
        "kty": "OKP", "crv": "Ed25519", "kid": "d", "x": b64(pair.public_key().as_ref()),
    }]));
    let access = AccessToken::new("an-access-token");
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, b"an-access-token");
    let mut c = claims();
    c["at_hash"] = b64(&digest.as_ref()[..32]).into();
    let input = signing_input(&json!({"alg": "EdDSA", "kid": "d"}), &c);
    let token = format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()));
    let nonce = Nonce::new("n-1");
    let claims = verify_with_keys(
        &IdToken::new(token),
        &keys,
        &Expectations {
            issuer: ISSUER,
            client_id: CLIENT,
            nonce: Some(&nonce),
            access_token: Some(&access),
            previous_sub: None,
            clock_skew: Duration::from_secs(60),
            now: SystemTime::now(),
        },
    )
    .expect("EdDSA verifies, at_hash matches");
    assert_eq!(claims.sub, "alice");
}

/// Found by the `jwt` fuzz target: a signed header with bytes that are not
/// UTF-8 inside a member the check skips was accepted (serde_json checks
/// only the strings it reads into its typed header). The header and the
/// payload are UTF-8 JSON (RFC 7515 §4, RFC 7519 §7.2) or the token is
/// malformed.
#[test]
fn a_header_or_payload_that_is_not_utf8_is_refused_though_signed() {
    let pair = signature::Ed25519KeyPair::generate().expect("ed25519");
    let keys = jwks(json!([{
        "kty": "OKP", "crv": "Ed25519", "kid": "d", "x": b64(pair.public_key().as_ref()),
    }]));
    let sign = |header: &[u8], payload: &[u8]| {
        let input = format!("{}.{}", b64(header), b64(payload));
        format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()))
    };
    let claims = claims().to_string();
    let fine = sign(br#"{"alg": "EdDSA", "kid": "d"}"#, claims.as_bytes());
    check(&fine, &keys).expect("the same token in UTF-8 verifies");
    let header = b"{\"alg\": \"EdDSA\", \"kid\": \"d\", \"x-extra\": \"\xff\xfe\"}";
    let refused = check(&sign(header, claims.as_bytes()), &keys);
    assert!(
        matches!(&refused, Err(IdTokenError::Malformed(m)) if m.contains("header")),
        "{refused:?}"
    );
    let mut payload = b"{\"x-extra\": \"\xff\", ".to_vec();
    payload.extend_from_slice(&claims.as_bytes()[1..]);
    let refused = check(&sign(br#"{"alg": "EdDSA", "kid": "d"}"#, &payload), &keys);
    assert!(
        matches!(&refused, Err(IdTokenError::Malformed(m)) if m.contains("payload")),
        "{refused:?}"
    );
}

#[test]
fn an_ed25519_token_verifies_under_rfc_9864s_name() {
    // oidc-provider 9 signs with `"alg": "Ed25519"` and labels its key so.
    let pair = signature::Ed25519KeyPair::generate().expect("ed25519");
    let x = b64(pair.public_key().as_ref());
    let sign = |header: &Value| {
        let input = signing_input(header, &claims());
        format!("{input}.{}", b64(pair.sign(input.as_bytes()).as_ref()))
    };
    let token = sign(&json!({"alg": "Ed25519", "kid": "d"}));
    for alg in [Some("Ed25519"), None] {
        let mut jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": x});
        if let Some(alg) = alg {
            jwk["alg"] = alg.into();
        }
        let claims = check(&token, &jwks(json!([jwk])))
            .unwrap_or_else(|e| panic!("an Ed25519 token, key alg {alg:?}: {e:?}"));
        assert_eq!(claims.sub, "alice");
    }
    // openidconnect's key set drops a key whose `alg` it does not know:
    // read as sent, the JWKS keeps it.
    let labelled =
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": x, "alg": "Ed25519"}]});
    let dropped = Jwks::new(serde_json::from_value(labelled.clone()).expect("a JWKS"));
    assert_eq!(dropped.len(), 0, "openidconnect's set left the key out");
    assert_eq!(jwks(labelled["keys"].clone()).len(), 1);
    // A key restricted to one name is not used for the other.
    let eddsa_only =
        jwks(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": x, "alg": "EdDSA"}]));
    assert!(matches!(
        check(&token, &eddsa_only),
        Err(IdTokenError::UnknownKey)
    ));
    let ed25519_only =
        jwks(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": x, "alg": "Ed25519"}]));
    let eddsa = sign(&json!({"alg": "EdDSA", "kid": "d"}));
    assert!(matches!(
        check(&eddsa, &ed25519_only),
        Err(IdTokenError::UnknownKey)
    ));
    // And the signature is checked under the new name too.
    let bad = check(
        &flip_signature_byte(&token),
        &jwks(json!([{"kty": "OKP", "crv": "Ed25519", "kid": "d", "x": x}])),
    );
    assert!(is_signature_error(&bad), "{bad:?}");
}

#[test]
fn a_flipped_signature_or_payload_byte_is_refused() {
    let rsa = Rsa::new();
    let ec = Ec::new();
    let keys = jwks(json!([rsa.jwk("r", Some("RS256")), ec.jwk("e")]));
    let tokens = [
        rsa.token(
            &signature::RSA_PKCS1_SHA256,
            &json!({"alg": "RS256", "kid": "r"}),
            &claims(),
        ),
        ec.token(&json!({"alg": "ES256", "kid": "e"}), &claims()),
    ];
    for token in tokens {
        assert!(check(&token, &keys).is_ok());
        let sig = check(&flip_signature_byte(&token), &keys);
        assert!(is_signature_error(&sig), "{sig:?}");
        let payload = check(&flip_payload_byte(&token), &keys);
        assert!(is_signature_error(&payload), "{payload:?}");
    }
}

#[test]
fn an_rsa_key_with_exponent_3_or_a_short_modulus_is_refused() {
    for (der, why) in [(RSA_2048_E3, "exponent"), (RSA_1024, "1024 bits")] {
        let (token, jwk) = weak_rsa_token(der);
        let keys = jwks(json!([jwk]));
        match check(&token, &keys) {
            Err(IdTokenError::Signature(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("a weak key ({why}) must be refused, got {other:?}"),
        }
    }
}

/// Found by the `jwks` fuzz target: an all-zero modulus (empty once its
/// leading zeros are stripped) underflowed the bit count.
#[test]
fn an_rsa_key_with_a_zero_or_empty_modulus_is_refused_not_a_panic() {
    for n in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AA", ""] {
        let keys = jwks(json!([
            {"kty": "RSA", "kid": "r1", "use": "sig", "alg": "RS256", "n": n, "e": "AQAB"}
        ]));
        assert_eq!(keys.len(), 1, "the key is kept, as refused");
        let token = format!(
            "{}.{}",
            signing_input(&json!({"alg": "RS256", "kid": "r1"}), &claims()),
            b64(&[1; 256])
        );
        match check(&token, &keys) {
            Err(IdTokenError::Signature(m)) => assert!(m.contains("modulus of 0 bits"), "{m}"),
            other => panic!("a modulus of {n:?} must be refused, got {other:?}"),
        }
    }
}

#[test]
fn a_header_alg_the_key_does_not_allow_is_refused() {
    let rsa = Rsa::new();
    let ec = Ec::new();
    // The key says RS256; a PS256 signature by the very same key is refused.
    let keys = jwks(json!([rsa.jwk("r", Some("RS256")), ec.jwk("e")]));
    let ps256 = rsa.token(
        &signature::RSA_PSS_SHA256,
        &json!({"alg": "PS256", "kid": "r"}),
        &claims(),
    );
    assert_eq!(check(&ps256, &keys).err(), Some(IdTokenError::UnknownKey));
    // An RSA signature that claims to be ES256 under the RSA key's kid.
    let as_es256 = rsa.token(
        &signature::RSA_PKCS1_SHA256,
        &json!({"alg": "ES256", "kid": "r"}),
        &claims(),
    );
    assert_eq!(
        check(&as_es256, &keys).err(),
        Some(IdTokenError::UnknownKey)
    );
    // An ECDSA signature that claims RS256 under the EC key's kid.
    let as_rs256 = ec.token(&json!({"alg": "RS256", "kid": "e"}), &claims());
    assert_eq!(
        check(&as_rs256, &keys).err(),
        Some(IdTokenError::UnknownKey)
    );
    // A key without `alg`: the header's RS384 is tried, and the RS256
    // signature does not verify as RS384.
    let any = jwks(json!([rsa.jwk("r", None)]));
    let as_rs384 = rsa.token(
        &signature::RSA_PKCS1_SHA256,
        &json!({"alg": "RS384", "kid": "r"}),
        &claims(),
    );
    assert!(is_signature_error(&check(&as_rs384, &any)));
    // A key for encryption only is no candidate.
    let mut enc = rsa.jwk("r", None);
    enc["use"] = "enc".into();
    let rs256 = rsa.token(
        &signature::RSA_PKCS1_SHA256,
        &json!({"alg": "RS256", "kid": "r"}),
        &claims(),
    );
    assert_eq!(
        check(&rs256, &jwks(json!([enc]))).err(),
        Some(IdTokenError::UnknownKey)
    );
}

#[test]
fn none_hmac_and_unknown_algorithms_are_refused_before_any_key() {
    let rsa = Rsa::new();
    let keys = jwks(json!([rsa.jwk("r", None)]));
    for alg in ["none", "HS256", "HS512", "ES512", "RS1", ""] {
        let token = format!(
            "{}.",
            signing_input(&json!({"alg": alg, "kid": "r"}), &claims())
        );
        assert!(is_signature_error(&check(&token, &keys)), "{alg}");
    }
    let nested = format!(
        "{}.AA",
        signing_input(&json!({"alg": "RS256", "cty": "JWT"}), &claims())
    );
    assert!(matches!(
        check(&nested, &keys),
        Err(IdTokenError::Malformed(_))
    ));
}

#[test]
fn two_keys_that_both_fit_are_refused() {
    let rsa = Rsa::new();
    let keys = jwks(json!([rsa.jwk("r", None), rsa.jwk("r", None)]));
    let token = rsa.token(
        &signature::RSA_PKCS1_SHA256,
        &json!({"alg": "RS256", "kid": "r"}),
        &claims(),
    );
    assert!(is_signature_error(&check(&token, &keys)));
}

#[test]
fn an_azp_naming_another_client_is_refused_even_with_one_audience() {
    let ec = Ec::new();
    let keys = jwks(json!([ec.jwk("e")]));
    let mut issued_to_another = claims();
    issued_to_another["azp"] = json!("another-client");
    let token = ec.token(&json!({"alg": "ES256", "kid": "e"}), &issued_to_another);
    match check(&token, &keys) {
        Err(IdTokenError::Claim { claim, .. }) => assert_eq!(claim, "azp"),
        other => panic!("an azp for another client: {other:?}"),
    }
    let mut ours = claims();
    ours["azp"] = json!(CLIENT);
    let token = ec.token(&json!({"alg": "ES256", "kid": "e"}), &ours);
    assert!(check(&token, &keys).is_ok(), "an azp naming this client");
}
