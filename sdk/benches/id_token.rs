//! ID-token verification against a raw RSA-2048 verification.
//! Goal (issue 10): the whole check (parse, algorithm allow-list, key lookup,
//! signature, iss/aud/exp/iat/nonce/at_hash) costs ≤ 1.5× a raw aws-lc-rs
//! RSA-2048 verify (`UnparsedPublicKey::verify`, which parses the key every
//! time). Also measured: the same verify with the key parsed once (what the
//! check does with its cached JWKS), and RustCrypto `rsa`, which
//! openidconnect verified with before the check moved to aws-lc-rs.
//!
//! Run: `cargo bench -p sessionkit --bench id_token`

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use openidconnect::core::CoreJsonWebKeySet;
use rsa::sha2::{Digest as _, Sha256};
use sessionkit::id_token::{Expectations, verify_with_keys};
use sessionkit::{AccessToken, IdToken, Jwks, Nonce};

fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

fn bench(c: &mut Criterion) {
    let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
    let public = pair.public_key();
    let n = public.modulus().big_endian_without_leading_zero().to_vec();
    let e = public.exponent().big_endian_without_leading_zero().to_vec();
    let set: CoreJsonWebKeySet = serde_json::from_value(serde_json::json!({
        "keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": "k1", "n": b64(&n), "e": b64(&e)}]
    }))
    .unwrap();
    let jwks = Jwks::new(set);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let access = AccessToken::new("an-access-token-of-some-length-0123456789");
    let at_hash = b64(&Sha256::digest(access.secret().as_bytes())[..16]);
    let claims = serde_json::json!({
        "iss": "https://id.example.com", "sub": "alice", "aud": "chat-example", "exp": now + 300,
        "iat": now, "nonce": "n-1", "at_hash": at_hash, "sid": "s1", "name": "Alice Example"
    });
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    );
    let mut sig = vec![0u8; pair.public_modulus_len()];
    pair.sign(
        &signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let token = IdToken::new(format!("{input}.{}", b64(&sig)));
    let nonce = Nonce::new("n-1");
    let expect = Expectations {
        issuer: "https://id.example.com",
        client_id: "chat-example",
        nonce: Some(&nonce),
        access_token: Some(&access),
        previous_sub: None,
        clock_skew: Duration::from_secs(60),
        now: SystemTime::now(),
    };
    verify_with_keys(&token, &jwks, &expect).expect("the token verifies");

    let rsa_key = rsa::RsaPublicKey::new(
        rsa::BigUint::from_bytes_be(&n),
        rsa::BigUint::from_bytes_be(&e),
    )
    .unwrap();
    let aws_key = signature::UnparsedPublicKey::new(
        &signature::RSA_PKCS1_2048_8192_SHA256,
        public.as_ref().to_vec(),
    );
    let aws_parsed = aws_key.parse().unwrap();

    let mut group = c.benchmark_group("id_token");
    group.bench_function("raw RSA-2048 verify (rsa crate, as openidconnect)", |b| {
        b.iter(|| {
            let digest = Sha256::digest(input.as_bytes());
            rsa_key
                .verify(rsa::Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
                .unwrap();
        })
    });
    group.bench_function("raw RSA-2048 verify (aws-lc-rs)", |b| {
        b.iter(|| aws_key.verify(input.as_bytes(), &sig).unwrap())
    });
    group.bench_function("raw RSA-2048 verify (aws-lc-rs, key parsed once)", |b| {
        b.iter(|| aws_parsed.verify_sig(input.as_bytes(), &sig).unwrap())
    });
    group.bench_function("full ID-token check", |b| {
        b.iter(|| verify_with_keys(&token, &jwks, &expect).unwrap())
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
