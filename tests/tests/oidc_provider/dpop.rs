//! DPoP and pushed authorization requests against oidc-provider: a client
//! whose tokens must be DPoP-bound signs in through the provider's own
//! pages, calls userinfo, refreshes and logs out, answering the provider's
//! nonce challenges; a provider that takes pushed authorization requests
//! only is used without the app saying anything.

use std::sync::Arc;

use sessionkit::{AuthedClient, MemoryStore, RefreshPolicy, TokenStore};
use sessionkit_tests::scratch::ScratchDir;

use crate::support::{CLIENT, OidcProvider, manager_with, sign_in_over_http};

const DPOP_CLIENT: &str = "sessionkit-interop-dpop";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dpop_bound_tokens_sign_in_call_refresh_and_log_out() {
    let Some(op) = OidcProvider::start() else {
        return;
    };
    let scratch = ScratchDir::new("sk-oidc-provider-dpop");
    let store = Arc::new(MemoryStore::new());
    let sessions = manager_with(
        DPOP_CLIENT,
        op.issuer(),
        store.clone(),
        scratch.path(),
        RefreshPolicy::Proactive,
        true,
    )
    .await;
    let session = sign_in_over_http(&sessions, "alice").await;
    let key = session.dpop_key().expect("DPoP-bound tokens");
    assert_eq!(
        store
            .load_session(session.key())
            .expect("stored")
            .dpop_key
            .as_ref(),
        Some(&key),
        "the key is kept with the tokens"
    );
    let log = op.log().await;
    assert_eq!(
        log.grant_errors("authorization_code"),
        ["use_dpop_nonce"],
        "the provider asked once for its nonce, and the SDK answered"
    );

    // The access token is bound: as a bearer token it is refused; through
    // AuthedClient (DPoP scheme, a proof with `ath` and the nonce) it works.
    let (access, _) = session.cached_access_token();
    assert_eq!(op.userinfo_status(access.secret()).await, 401);
    let api = AuthedClient::new(session.clone()).expect("client");
    let me = api.userinfo().await.expect("userinfo with a proof");
    assert_eq!(me["sub"], "alice");

    // A refresh proves the same key; the rotated refresh token alone (no
    // proof, as a thief would send it) is refused.
    let before = op.log().await;
    let fresh = session.force_refresh().await.expect("refresh with a proof");
    assert_ne!(fresh.secret(), access.secret());
    let since = op.log().await.since(&before);
    assert_eq!(since.events("grant.success", Some("refresh_token")), 1);
    assert_eq!(session.dpop_key().as_ref(), Some(&key));
    api.userinfo().await.expect("userinfo with the new token");
    let refresh = store.load_refresh(session.key()).expect("refresh token");
    let (status, error) = op.refresh_by_hand(refresh.secret()).await;
    assert_eq!(status, 400, "{error:?}");

    // Logout revokes (with a proof) and deletes the key with the tokens.
    let report = sessions.logout(session.key()).await;
    assert!(report.revoked, "{report:?}");
    assert!(store.load_session(session.key()).is_err());
    let after = op.log().await;
    assert_eq!(after.events("revocation.error", None), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_requires_pushed_requests_gets_them_unasked() {
    let Some(op) = OidcProvider::start_with(&[("SESSIONKIT_REQUIRE_PAR", "1")]) else {
        return;
    };
    let scratch = ScratchDir::new("sk-oidc-provider-par");
    for (client, dpop) in [(CLIENT, false), (DPOP_CLIENT, true)] {
        let sessions = manager_with(
            client,
            op.issuer(),
            Arc::new(MemoryStore::new()),
            scratch.path(),
            RefreshPolicy::Proactive,
            dpop,
        )
        .await;
        let before = op.log().await;
        let session = sign_in_over_http(&sessions, "bob").await;
        let since = op.log().await.since(&before);
        assert_eq!(since.requests("POST", "/request"), 1, "{client}: one push");
        assert_eq!(since.events("authorization.error", None), 0, "{client}");
        assert_eq!(session.dpop_key().is_some(), dpop, "{client}");
        AuthedClient::new(session.clone())
            .expect("client")
            .userinfo()
            .await
            .expect("userinfo");
        let report = sessions.logout(session.key()).await;
        assert!(report.revoked, "{client}: {report:?}");
    }
}

/// oidc-provider, too, refuses each kind of bad proof for a bound token at
/// userinfo: replayed, for another URL or method, by another key, too old.
/// (The same cases are tested against mock-idp and chat-server.) Without
/// nonces: with one, oidc-provider takes the nonce for the proof's
/// freshness and does not check `iat` (RFC 9449 §11.1 allows either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_proofs_are_refused_by_the_provider_too() {
    use std::time::{Duration, SystemTime};

    use sessionkit::DpopKey;

    let Some(op) = OidcProvider::start_with(&[("SESSIONKIT_DPOP_NONCE", "0")]) else {
        return;
    };
    let scratch = ScratchDir::new("sk-oidc-provider-dpop-bad");
    let sessions = manager_with(
        DPOP_CLIENT,
        op.issuer(),
        Arc::new(MemoryStore::new()),
        scratch.path(),
        RefreshPolicy::Proactive,
        true,
    )
    .await;
    let session = sign_in_over_http(&sessions, "carol").await;
    let key = session.dpop_key().expect("bound");
    let (token, _) = session.cached_access_token();
    let me = op.url("/me");
    let http = reqwest::Client::new();
    let send = |proof: String| {
        http.get(&me)
            .header("authorization", format!("DPoP {}", token.secret()))
            .header("dpop", proof)
            .send()
    };
    let proof = |key: &DpopKey, method: &str, url: &str, at: SystemTime| {
        key.proof(method, url, Some(&token), None, at)
            .expect("proof")
    };

    let good = proof(&key, "GET", &me, SystemTime::now());
    assert_eq!(send(good.clone()).await.expect("userinfo").status(), 200);
    let thief = DpopKey::generate().expect("key");
    for (case, bad) in [
        ("replayed", good),
        (
            "another URL",
            proof(&key, "GET", &op.url("/token"), SystemTime::now()),
        ),
        (
            "another method",
            proof(&key, "POST", &me, SystemTime::now()),
        ),
        ("another key", proof(&thief, "GET", &me, SystemTime::now())),
        (
            "too old",
            proof(
                &key,
                "GET",
                &me,
                SystemTime::now() - Duration::from_secs(600),
            ),
        ),
    ] {
        let answer = send(bad).await.expect("userinfo");
        assert_eq!(answer.status(), 401, "{case}");
        let challenge = answer.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(challenge.starts_with("DPoP"), "{case}: {challenge}");
    }
    // The owner's own calls still work.
    AuthedClient::new(session.clone())
        .expect("client")
        .userinfo()
        .await
        .expect("userinfo");
}
