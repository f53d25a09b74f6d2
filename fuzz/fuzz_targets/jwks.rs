//! A JWKS as the SDK fetches it (at discovery, and again on an unknown
//! `kid`) and parses every key of it for aws-lc-rs, then a fixed ID token
//! checked against it. Input: two bytes of HTTP status, then the body.
//!
//! Checked: no panic on any key (an empty RSA modulus once underflowed);
//! every key of the set is kept, usable or not; the fixed token, signed
//! by a key the input cannot hold, is never accepted.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use sessionkit::IdToken;
use sessionkit::id_token::{Expectations, verify_with_keys};

/// An ID token with a made-up Ed25519 signature (bytes 0 to 63) that no
/// key verifies (`{"alg":"EdDSA","kid":"k1"}` over the usual claims).
const TOKEN: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6ImsxIn0.\
eyJpc3MiOiJodHRwczovL2lkLmV4YW1wbGUuY29tIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJjaGF0LWV4YW1wbGUiLCJleHAiOjE4MDAwMDAzMDAsImlhdCI6MTgwMDAwMDAwMH0.\
AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0-Pw";

fuzz_target!(|data: &[u8]| {
    let Some((head, body)) = data.split_first_chunk::<2>() else {
        return;
    };
    let status = u16::from_be_bytes(*head);
    let Ok(jwks) = sessionkit::fuzzing::jwks(status, body) else {
        return;
    };
    assert_eq!(jwks.len(), jwks.set().keys().len(), "a key was dropped");
    let _ = format!("{jwks:?}");
    let checked = verify_with_keys(
        &IdToken::new(TOKEN),
        &jwks,
        &Expectations {
            issuer: "https://id.example.com",
            client_id: "chat-example",
            nonce: None,
            access_token: None,
            previous_sub: None,
            clock_skew: Duration::from_secs(60),
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_100),
        },
    );
    assert!(checked.is_err(), "a token no input key signed was accepted");
});
