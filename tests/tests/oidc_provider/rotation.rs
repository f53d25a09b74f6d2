//! oidc-provider rotates refresh tokens at every use and, when a used one
//! comes back, revokes the whole grant (its reuse detection). The SDK must
//! keep only the newest token, and when the grant is gone end the session
//! cleanly: one refused refresh, a typed error, signed out by the server,
//! the store emptied, nothing left running — no retry loop.

use sessionkit::{AuthedClient, Error, SessionEvent, SessionState, StoreError, TokenStore};

use crate::support::{Setup, sign_in_over_http};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_refresh_token_revokes_the_grant_and_the_session_ends_cleanly() {
    let Some(Setup {
        op,
        _scratch,
        store,
        sessions,
    }) = Setup::start("rotation").await
    else {
        return;
    };
    let session = sign_in_over_http(&sessions, "bob").await;
    let key = session.key().clone();

    // Two refreshes, each rotating the refresh token.
    let first = store.load_refresh(&key).unwrap();
    session.force_refresh().await.unwrap();
    let second = store.load_refresh(&key).unwrap();
    session.force_refresh().await.unwrap();
    let third = store.load_refresh(&key).unwrap();
    assert_ne!(first.secret(), second.secret());
    assert_ne!(second.secret(), third.secret());
    let log = op.log().await;
    assert_eq!(log.events("grant.success", Some("refresh_token")), 2);
    assert_eq!(log.events("refresh_token.consumed", None), 2);

    // A copy of an old refresh token is used (a leaked backup, a stale
    // second copy of the app): oidc-provider refuses it and revokes the grant.
    let (status, error) = op.refresh_by_hand(first.secret()).await;
    assert_eq!((status, error.as_deref()), (400, Some("invalid_grant")));
    assert_eq!(op.log().await.events("grant.revoked", None), 1);

    // The app's next API call: userinfo answers 401 (the grant's access
    // tokens are gone), the client refreshes once with the newest refresh
    // token, the provider refuses it, and the session ends.
    let mut state = session.state();
    let mut events = session.events();
    let api = AuthedClient::new(session.clone()).unwrap();
    let before = op.log().await;
    let outcome = api.get(op.url("/me")).await;
    match &outcome {
        Err(Error::Provider { error, .. }) => assert_eq!(error, "invalid_grant"),
        other => panic!("expected the provider's invalid_grant, got {other:?}"),
    }
    assert!(outcome.as_ref().unwrap_err().is_signed_out());
    let log = op.log().await.since(&before);
    assert_eq!(
        log.requests("GET", "/me"),
        1,
        "one call, no retry without a token"
    );
    assert_eq!(
        log.grant_errors("refresh_token"),
        ["invalid_grant"],
        "exactly one refresh attempt, refused"
    );
    assert_eq!(log.events("grant.success", None), 0);
    assert_eq!(*state.borrow_and_update(), SessionState::SignedOutByServer);
    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    assert!(
        seen.contains(&SessionEvent::SignedOutByServer),
        "the app is told: {seen:?}"
    );

    // Cleanly signed out: the store emptied, the account unlisted, nothing
    // left running that could try again, and every later call refused
    // without reaching the provider.
    assert!(matches!(
        store.load_refresh(&key),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        store.load_session(&key),
        Err(StoreError::NotFound)
    ));
    assert!(sessions.accounts().unwrap().is_empty());
    assert_eq!(session.running_tasks(), 0);
    assert!(matches!(
        session.access_token().await,
        Err(Error::SignedOut)
    ));
    assert!(api.get(op.url("/me")).await.unwrap_err().is_signed_out());
    let after = op.log().await.since(&before);
    assert_eq!(
        after.requests("POST", "/token"),
        1,
        "no refresh after the session ended"
    );
    assert_eq!(after.requests("GET", "/me"), 1);
}
