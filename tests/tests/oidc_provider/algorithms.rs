//! ID tokens signed with each algorithm oidc-provider offers besides RS256:
//! ES256 (a raw `r || s` signature), EdDSA, and Ed25519 — RFC 9864's
//! fully-specified name for EdDSA on Ed25519, which oidc-provider 9 signs
//! with and labels its key with. The login's ID token and the refreshed one
//! must both verify.

use std::sync::Arc;

use sessionkit::{MemoryStore, RefreshPolicy};

use sessionkit_tests::scratch::ScratchDir;

use crate::support::{CLIENT, OidcProvider, manager_of, sign_in_over_http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_signed_with_es256_eddsa_and_ed25519_verify() {
    let Some(op) = OidcProvider::start() else {
        return;
    };
    let scratch = ScratchDir::new("sk-oidc-provider-algorithms");
    for alg in ["ES256", "EdDSA", "Ed25519"] {
        let client = format!("{CLIENT}-{}", alg.to_lowercase());
        let sessions = manager_of(
            &client,
            op.issuer(),
            Arc::new(MemoryStore::new()),
            scratch.path(),
            RefreshPolicy::OnDemand,
        )
        .await;
        let session = sign_in_over_http(&sessions, "dave").await;
        assert_eq!(session.info().key.sub, "dave", "{alg}");
        let header = jose_header(session.id_token().expect("an ID token").secret());
        assert_eq!(header["alg"], alg, "the provider signed with {alg}");
        session
            .force_refresh()
            .await
            .unwrap_or_else(|e| panic!("refresh with {alg} ID tokens: {e}"));
        let header = jose_header(session.id_token().expect("an ID token").secret());
        assert_eq!(header["alg"], alg, "the refreshed ID token too");
    }
}

/// The decoded header of a compact JWS.
fn jose_header(jws: &str) -> serde_json::Value {
    use base64::Engine as _;
    let header = jws.split('.').next().expect("a header");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("header JSON")
}
