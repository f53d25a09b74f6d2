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
