//! Unit tests of the proof checks, with proofs signed here by P-256,
//! RSA and Ed25519 keys from aws-lc-rs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};

use super::*;

const NOW: i64 = 1_700_000_000;
const URL: &str = "https://idp.example/token";

enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(aws_lc_rs::rsa::KeyPair),
    Ed(Ed25519KeyPair),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl Signer {
    fn p256() -> Self {
        Signer::Ec(
            EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("p-256"),
        )
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Ec(_) => "ES256",
            Signer::Rsa(_) => "RS256",
            Signer::Ed(_) => "EdDSA",
        }
    }

    fn jwk(&self) -> Value {
        match self {
            Signer::Ec(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])})
            }
            Signer::Rsa(pair) => {
                let public = pair.public_key();
                json!({"kty": "RSA",
                    "n": b64(public.modulus().big_endian_without_leading_zero()),
                    "e": b64(public.exponent().big_endian_without_leading_zero())})
            }
            Signer::Ed(pair) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())})
            }
        }
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Signer::Ec(pair) => pair
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Signer::Rsa(pair) => {
                let mut sig = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("sign");
                sig
            }
            Signer::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
        };
        format!("{input}.{}", b64(&sig))
    }

    fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()})
    }

    fn proof(&self, claims: &Value) -> String {
        self.sign(&self.header(), claims)
    }
}

fn claims(jti: &str) -> Value {
    json!({"jti": jti, "htm": "POST", "htu": URL, "iat": NOW})
}

fn check(proof: &str) -> Result<VerifiedProof, ProofError> {
    verify_proof(
        &ProofRequest::new("POST", URL, proof),
        NOW,
        &ReplayCache::default(),
    )
}

#[test]
fn a_good_proof_passes_and_names_its_key() {
    let signer = Signer::p256();
    let proof = signer.proof(&claims("a"));
    let verified = check(&proof).expect("valid");
    assert_eq!(verified.jkt(), jwk_thumbprint(&signer.jwk()).expect("jkt"));
    assert_eq!(
        (verified.alg(), verified.jti(), verified.iat()),
        ("ES256", "a", NOW)
    );
    assert!(verified.check_binding(verified.jkt()).is_ok());
    let other = jwk_thumbprint(&Signer::p256().jwk()).expect("jkt");
    assert_eq!(verified.check_binding(&other), Err(ProofError::KeyMismatch));
}

#[test]
fn rsa_and_ed25519_proofs_verify_too() {
    let rsa = Signer::Rsa(
        aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).expect("rsa"),
    );
    let ed = Signer::Ed(Ed25519KeyPair::generate().expect("ed25519"));
    for signer in [rsa, ed] {
        let verified = check(&signer.proof(&claims("x"))).expect("valid");
        assert_eq!(verified.alg(), signer.alg());
        // The same key under another alg's name is refused.
        let mut header = signer.header();
        header["alg"] = json!("ES256");
        assert!(matches!(
            check(&signer.sign(&header, &claims("y"))),
            Err(ProofError::BadKey(_))
        ));
    }
}

#[test]
fn a_proof_is_accepted_once() {
    let signer = Signer::p256();
    let replay = ReplayCache::default();
    let proof = signer.proof(&claims("once"));
    let request = ProofRequest::new("POST", URL, &proof);
    assert!(verify_proof(&request, NOW, &replay).is_ok());
    assert_eq!(
        verify_proof(&request, NOW + 1, &replay),
        Err(ProofError::Replayed)
    );
    // The same jti from another key is another proof.
    let other = Signer::p256().proof(&claims("once"));
    assert!(verify_proof(&ProofRequest::new("POST", URL, &other), NOW, &replay).is_ok());
}

#[test]
fn a_proof_by_another_key_or_alg_than_taken_is_refused_unrecorded() {
    let holder = Signer::p256();
    let thief = Signer::p256();
    let bound = jwk_thumbprint(&holder.jwk()).expect("jkt");
    let replay = ReplayCache::new(1);
    // A proof by a key other than the token's is refused, and takes no
    // place in the cache (a full cache would refuse everyone's proofs).
    for n in 0..3 {
        let proof = thief.proof(&claims(&format!("t{n}")));
        let request = ProofRequest::new("POST", URL, &proof).bound_to(&bound);
        assert_eq!(
            verify_proof(&request, NOW, &replay),
            Err(ProofError::KeyMismatch)
        );
    }
    // So is one signed with an algorithm the server does not take.
    let only_ps256 = ["PS256".to_owned()];
    let proof = holder.proof(&claims("es"));
    let request = ProofRequest::new("POST", URL, &proof).algs(&only_ps256);
    assert!(matches!(
        verify_proof(&request, NOW, &replay),
        Err(ProofError::UnsupportedAlg(alg)) if alg == "ES256"
    ));
    assert!(replay.is_empty());
    let proof = holder.proof(&claims("h"));
    let request = ProofRequest::new("POST", URL, &proof).bound_to(&bound);
    assert!(verify_proof(&request, NOW, &replay).is_ok());
    assert_eq!(replay.len(), 1);
}

#[test]
fn the_header_must_say_dpop_with_an_asymmetric_alg_and_a_public_key() {
    let signer = Signer::p256();
    let c = claims("h");
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut header = signer.header();
        edit(&mut header);
        check(&signer.sign(&header, &c))
    };
    assert_eq!(
        with(&|h| h["typ"] = json!("JWT")),
        Err(ProofError::WrongType("JWT".into()))
    );
    assert!(matches!(
        with(&|h| {
            h.as_object_mut().map(|o| o.remove("typ"));
        }),
        Err(ProofError::WrongType(_))
    ));
    assert!(with(&|h| h["typ"] = json!("application/dpop+jwt")).is_ok());
    for alg in ["none", "HS256", "ES512", ""] {
        assert_eq!(
            with(&|h| h["alg"] = json!(alg)),
            Err(ProofError::UnsupportedAlg(alg.into()))
        );
    }
    assert!(matches!(
        with(&|h| {
            h.as_object_mut().map(|o| o.remove("jwk"));
        }),
        Err(ProofError::BadKey(_))
    ));
    assert_eq!(
        with(&|h| h["jwk"]["d"] = json!(b64(&[7; 32]))),
        Err(ProofError::PrivateKey("d".into()))
    );
    assert!(matches!(
        with(&|h| h["crit"] = json!(["exp"])),
        Err(ProofError::Malformed(_))
    ));
    // Signed by one key, naming another.
    assert_eq!(
        with(&|h| h["jwk"] = Signer::p256().jwk()),
        Err(ProofError::BadSignature)
    );
}

#[test]
fn an_alg_none_or_hmac_proof_is_refused() {
    let header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": Signer::p256().jwk()});
    let unsigned = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(claims("n").to_string().as_bytes())
    );
    assert_eq!(
        check(&unsigned),
        Err(ProofError::UnsupportedAlg("none".into()))
    );
    let hmac = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, b"shared");
    let header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": "c2hhcmVk"}});
    let input = format!(
        "{}.{}",
        b64(header.to_string().as_bytes()),
        b64(claims("h").to_string().as_bytes())
    );
    let tag = aws_lc_rs::hmac::sign(&hmac, input.as_bytes());
    let proof = format!("{input}.{}", b64(tag.as_ref()));
    assert_eq!(
        check(&proof),
        Err(ProofError::UnsupportedAlg("HS256".into()))
    );
}

#[test]
fn malformed_proofs_are_refused_with_a_reason() {
    for bad in [
        "a.b",
        "a.b.c.d",
        "!!.!!.!!",
        &"x".repeat(MAX_PROOF_BYTES + 1),
    ] {
        assert!(
            matches!(check(bad), Err(ProofError::Malformed(_))),
            "{bad:.20}"
        );
    }
    assert_eq!(check(""), Err(ProofError::Missing));
    let signer = Signer::p256();
    for missing in ["jti", "htm", "htu", "iat"] {
        let mut c = claims("m");
        c.as_object_mut().map(|o| o.remove(missing));
        let err = check(&signer.proof(&c)).expect_err("refused");
        assert!(
            matches!(&err, ProofError::Malformed(m) if m.contains(missing)),
            "{missing}: {err}"
        );
    }
}

#[test]
fn method_and_url_must_be_the_requests() {
    let signer = Signer::p256();
    let with = |htm: &str, htu: &str| {
        let mut c = claims(&format!("{htm}{htu}"));
        c["htm"] = json!(htm);
        c["htu"] = json!(htu);
        check(&signer.proof(&c))
    };
    assert!(matches!(
        with("GET", URL),
        Err(ProofError::WrongMethod { .. })
    ));
    assert!(matches!(
        with("post", URL),
        Err(ProofError::WrongMethod { .. })
    ));
    assert!(matches!(
        with("POST", "https://idp.example/userinfo"),
        Err(ProofError::WrongUrl { .. })
    ));
    assert!(matches!(
        with("POST", "http://idp.example/token"),
        Err(ProofError::WrongUrl { .. })
    ));
    assert!(matches!(
        with("POST", "https://idp.example:8443/token"),
        Err(ProofError::WrongUrl { .. })
    ));
    assert!(matches!(
        with("POST", "/token"),
        Err(ProofError::WrongUrl { .. })
    ));
    // Normalised: case, default port, dot segments, percent-encoding; query
    // and fragment ignored.
    for same in [
        "HTTPS://IDP.example:443/token",
        "https://idp.example/a/../token?x=1#f",
        "https://idp.example/%74oken",
    ] {
        assert!(with("POST", same).is_ok(), "{same}");
    }
}

#[test]
fn iat_must_be_within_the_window() {
    let signer = Signer::p256();
    let at = |iat: Value| {
        let mut c = claims(&iat.to_string());
        c["iat"] = iat;
        check(&signer.proof(&c))
    };
    assert!(at(json!(NOW - 60)).is_ok());
    assert!(at(json!(NOW + 60)).is_ok());
    assert!(at(json!(NOW as f64 + 0.5)).is_ok());
    assert_eq!(
        at(json!(NOW - 61)),
        Err(ProofError::TooOld { age_secs: 61 })
    );
    assert_eq!(
        at(json!(NOW + 61)),
        Err(ProofError::FromTheFuture { ahead_secs: 61 })
    );
    assert!(matches!(at(json!("now")), Err(ProofError::Malformed(_))));
    let narrow = ProofRequest::new("POST", URL, "").window(5);
    let mut c = claims("w");
    c["iat"] = json!(NOW - 6);
    let proof = signer.proof(&c);
    let request = ProofRequest {
        proof: &proof,
        ..narrow
    };
    assert!(matches!(
        verify_proof(&request, NOW, &ReplayCache::default()),
        Err(ProofError::TooOld { .. })
    ));
}

#[test]
fn with_an_access_token_ath_is_required_and_must_match() {
    let signer = Signer::p256();
    let token = "the-access-token";
    let run = |c: &Value| {
        let proof = signer.proof(c);
        verify_proof(
            &ProofRequest::new("POST", URL, &proof).access_token(token),
            NOW,
            &ReplayCache::default(),
        )
    };
    assert_eq!(run(&claims("a")), Err(ProofError::MissingAth));
    let mut c = claims("b");
    c["ath"] = json!(access_token_hash("another-token"));
    assert_eq!(run(&c), Err(ProofError::WrongAth));
    c["ath"] = json!(access_token_hash(token));
    assert!(run(&c).is_ok());
}

#[test]
fn a_required_nonce_must_be_current() {
    let signer = Signer::p256();
    let nonces = Nonces::new(300);
    let run = |c: &Value, now: i64| {
        let proof = signer.proof(c);
        verify_proof(
            &ProofRequest::new("POST", URL, &proof).require_nonce(&nonces),
            now,
            &ReplayCache::default(),
        )
    };
    let err = run(&claims("n"), NOW).expect_err("no nonce");
    assert_eq!(err, ProofError::NonceMissing);
    assert_eq!(err.error_code(), "use_dpop_nonce");
    assert!(err.is_nonce_challenge());
    let mut c = claims("n");
    c["nonce"] = json!(nonces.current(NOW - 3600));
    assert_eq!(run(&c, NOW), Err(ProofError::NonceStale));
    c["nonce"] = json!(nonces.current(NOW));
    assert!(run(&c, NOW).is_ok());
}

#[test]
fn the_header_must_come_once() {
    let mut headers = http::HeaderMap::new();
    assert_eq!(proof_header(&headers), Ok(None));
    headers.append("DPoP", http::HeaderValue::from_static("a.b.c"));
    assert_eq!(proof_header(&headers), Ok(Some("a.b.c")));
    headers.append("dpop", http::HeaderValue::from_static("d.e.f"));
    assert_eq!(proof_header(&headers), Err(ProofError::Repeated));
}

#[test]
fn challenges_name_the_error_and_the_algorithms_and_stay_quotable() {
    let value = challenge("invalid_token", "a \"quoted\" \\ thing\n");
    assert_eq!(
        value,
        "DPoP error=\"invalid_token\", error_description=\"a 'quoted' ' thing?\", \
         algs=\"ES256 ES384 RS256 PS256 EdDSA\""
    );
    assert!(http::HeaderValue::from_str(&ProofError::Replayed.www_authenticate()).is_ok());
}

#[test]
fn the_url_normalisation_keeps_what_differs() {
    assert_eq!(
        normalized_url("HTTP://Example.COM:80/a/./b/%7e%2f?q#f").as_deref(),
        Some("http://example.com/a/b/~%2F")
    );
    assert_eq!(
        normalized_url("https://[::1]:8443").as_deref(),
        Some("https://[::1]:8443/")
    );
    assert_eq!(normalized_url("ftp://example.com/"), None);
    assert_eq!(normalized_url("example.com/token"), None);
    // A WebSocket handshake's URL keeps its own scheme: a proof for
    // ws://host/ws is not one for http://host/ws, nor wss for https.
    assert_eq!(
        normalized_url("WS://Chat.example:80/ws?room=a").as_deref(),
        Some("ws://chat.example/ws")
    );
    assert_eq!(
        normalized_url("wss://chat.example:443/ws").as_deref(),
        Some("wss://chat.example/ws")
    );
    assert_ne!(
        normalized_url("ws://chat.example/ws"),
        normalized_url("http://chat.example/ws")
    );
}
