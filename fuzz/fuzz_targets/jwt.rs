//! ID tokens: the JWS header and the claims, checked as the SDK checks
//! every ID token (`verify_with_keys`, the function `OidcClient` calls).
//! The target signs what it is given with keys of its JWKS, so the claim
//! checks are reached: a signature the fuzzer had to guess would stop
//! every input at the first step. Input: one byte of flags, then the header
//! JSON, a NUL byte, and the claims JSON; with flag 1, the rest of the input
//! is the whole token instead (the compact form's own parsing).
//!
//! Checked: no panic; an accepted token has an allowed algorithm, the
//! issuer, this client as its only audience (and `azp`), is unexpired,
//! carries the nonce when one was sent and the earlier `sub` on refresh;
//! no error shows the nonce or the access token.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};
use sessionkit::id_token::{Expectations, verify_with_keys};
use sessionkit::{AccessToken, IdToken, Jwks, Nonce};
use sessionkit_fuzz::{json_strings, shows_secret, split};

const ISSUER: &str = "https://id.example.com";
const CLIENT: &str = "chat-example";
const NONCE: &str = "fuzz-nonce-0b6e39d1f4a7";
const ACCESS: &str = "fuzz-access-token-72c4e8a1";
const NOW: u64 = 1_800_000_000;
const SKEW: u64 = 60;

struct Keys {
    ed: Ed25519KeyPair,
    ec: EcdsaKeyPair,
    jwks: Jwks,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let ed = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("an Ed25519 key");
        let ec = EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("a P-256 key");
        let point = ec.public_key().as_ref();
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let set = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "use": "sig",
             "x": b64(ed.public_key().as_ref())},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "alg": "ES256",
             "x": b64(&point[1..33]), "y": b64(&point[33..65])},
        ]});
        let jwks = sessionkit::fuzzing::jwks(200, set.to_string().as_bytes()).expect("the JWKS");
        Keys { ed, ec, jwks }
    })
}

/// `header.payload.signature`, signed with the EC key when the header asks
/// for ES256 and with the Ed25519 key otherwise.
fn sign(header: &[u8], payload: &[u8]) -> String {
    let keys = keys();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let alg = serde_json::from_slice::<Value>(header)
        .ok()
        .and_then(|h| h.get("alg").and_then(Value::as_str).map(str::to_owned));
    let signature = if alg.as_deref() == Some("ES256") {
        keys.ec
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ECDSA signs")
            .as_ref()
            .to_vec()
    } else {
        keys.ed.sign(input.as_bytes()).as_ref().to_vec()
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fuzz_target!(|data: &[u8]| {
    let Some((flags, rest)) = data.split_first() else {
        return;
    };
    let (token, header, payload) = if flags & 1 == 1 {
        (String::from_utf8_lossy(rest).into_owned(), None, None)
    } else {
        let (header, payload) = split(rest);
        (sign(header, payload), Some(header), Some(payload))
    };
    let nonce = Nonce::new(NONCE);
    let access = AccessToken::new(ACCESS);
    let expect = Expectations {
        issuer: ISSUER,
        client_id: CLIENT,
        nonce: (flags & 2 != 0).then_some(&nonce),
        access_token: (flags & 4 != 0).then_some(&access),
        previous_sub: (flags & 8 != 0).then_some("alice"),
        clock_skew: Duration::from_secs(SKEW),
        now: SystemTime::UNIX_EPOCH + Duration::from_secs(NOW),
    };
    let checked = verify_with_keys(&IdToken::new(token.clone()), &keys().jwks, &expect);
    let json = |b: Option<&[u8]>| b.and_then(|b| serde_json::from_slice::<Value>(b).ok());
    match checked {
        Ok(claims) => {
            let (Some(header), Some(payload)) = (json(header), json(payload)) else {
                panic!("a token that is not two JSON documents was accepted: {token}");
            };
            let alg = header.get("alg").and_then(Value::as_str);
            assert!(
                matches!(alg, Some("EdDSA" | "ES256")),
                "alg {alg:?} accepted"
            );
            assert_eq!(claims.iss, ISSUER);
            let aud = match payload.get("aud") {
                Some(Value::String(a)) => vec![a.as_str()],
                Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            assert!(
                !aud.is_empty() && aud.iter().all(|a| *a == CLIENT),
                "aud {aud:?}"
            );
            let azp = payload.get("azp");
            assert!(
                matches!(azp, None | Some(Value::Null)) || azp == Some(&json!(CLIENT)),
                "azp {azp:?}"
            );
            assert!(
                claims.exp as i128 + SKEW as i128 > NOW as i128,
                "expired: {}",
                claims.exp
            );
            if expect.nonce.is_some() {
                assert_eq!(payload.get("nonce"), Some(&json!(NONCE)));
            }
            if expect.previous_sub.is_some() {
                assert_eq!(claims.sub, "alice");
            }
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            let (h, p) = (json(header), json(payload));
            let raw: Vec<String> = [header, payload]
                .into_iter()
                .flatten()
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .collect();
            let mut public: Vec<&str> = vec![token.as_str()];
            public.extend(raw.iter().map(String::as_str));
            for part in [&h, &p].into_iter().flatten() {
                public.extend(json_strings(part, None));
            }
            for secret in [NONCE, ACCESS] {
                assert!(
                    !shows_secret(&shown, secret, &public),
                    "shows {secret}: {shown}"
                );
            }
        }
    }
});
