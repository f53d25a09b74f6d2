//! A person signs in through oidc-provider's own login and consent pages in
//! headless Chromium, opened by the SDK's loopback login; the app then calls
//! userinfo with the (opaque) access token through `AuthedClient`, the
//! session refreshes (the provider rotates the refresh token), the logout
//! revokes it at the provider, and the browser follows the RP-initiated
//! logout URL the SDK returns.

use std::time::{Duration, Instant};

use serde_json::Value;
use sessionkit::{AuthedClient, Error, LoopbackOptions, SessionState, StoreError, TokenStore};
use sessionkit_tests::webdriver::{Browser, WAIT};

use crate::support::{OidcProvider, Setup, looks_like_jwt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_in_a_browser_use_opaque_tokens_refresh_and_log_out() {
    let Some(Setup {
        op,
        _scratch,
        store,
        sessions,
    }) = Setup::start("browser").await
    else {
        return;
    };
    let Some(browser) = Browser::start().await else {
        return;
    };

    // The SDK listens on 127.0.0.1 and hands us the authorization URL; the
    // "person" types a name on the provider's page and continues on its
    // consent page (offline_access asks for it), and the browser lands on
    // the SDK's listener.
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let login = sessions.login_loopback(LoopbackOptions::with_callback(move |url| {
        let _ = tx.send(url.to_owned());
    }));
    let person = async {
        let url = rx.await.expect("the authorization URL");
        browser.goto(&url).await;
        browser.type_into("input[name=login]", "alice").await;
        browser
            .type_into("input[name=password]", "any password")
            .await;
        browser.click("button[type=submit]").await;
        // The consent page (the same button, another form): wait for it.
        browser.value("input[name=prompt][value=consent]").await;
        browser.click("button[type=submit]").await;
        wait_for_heading(&browser, "Signed in").await;
    };
    let (session, ()) = tokio::time::timeout(WAIT * 3, async { tokio::join!(login, person) })
        .await
        .expect("sign-in within the time limit");
    let session = session.expect("signed in through oidc-provider's pages");
    assert!(
        browser.current_url().await.starts_with("http://127.0.0.1:"),
        "the browser ended on the SDK's loopback listener"
    );
    assert_eq!(session.info().key.sub, "alice");

    // Opaque access tokens (no resource indicator asked): the SDK carries
    // them as they are, and userinfo accepts them.
    let first = session.access_token().await.unwrap();
    assert!(!looks_like_jwt(first.secret()), "an opaque access token");
    let api = AuthedClient::new(session.clone()).unwrap();
    let me: Value = userinfo(&api, &op).await;
    assert_eq!(me["sub"], "alice");
    assert_eq!(me["name"], "Alice");
    assert_eq!(me["preferred_username"], "alice");
    assert!(
        me.get("email").is_none(),
        "the email scope was not asked for"
    );

    // A refresh: a new access token and a rotated refresh token.
    let refresh_before = store.load_refresh(session.key()).unwrap();
    let before = op.log().await;
    let second = session.force_refresh().await.unwrap();
    let log = op.log().await.since(&before);
    assert_ne!(first, second, "a new access token");
    assert_eq!(log.events("grant.success", Some("refresh_token")), 1);
    assert_eq!(log.events("refresh_token.consumed", None), 1, "rotated");
    let refresh_after = store.load_refresh(session.key()).unwrap();
    assert_ne!(
        refresh_before.secret(),
        refresh_after.secret(),
        "the store holds the rotated refresh token"
    );
    assert_eq!(userinfo(&api, &op).await["sub"], "alice");

    // Logout revokes the refresh token at the provider (and with it the grant).
    let mut state = session.state();
    let before = op.log().await;
    let report = sessions.logout(session.key()).await;
    assert!(report.is_complete(), "{report:?}");
    assert!(report.revoked, "{report:?}");
    let end_session = report.end_session_url.expect("an end-session URL");
    assert!(
        end_session.as_str().starts_with(&op.url("/session/end")),
        "{end_session}"
    );
    // The RP-initiated logout URL the SDK made (the ID token as a hint)
    // is one the provider takes: it asks, and signs the browser out.
    browser.goto(end_session.as_str()).await;
    browser.click("button[name=logout]").await;
    wait_for_heading(&browser, "Sign-out Success").await;
    browser.quit().await;
    let log = op.log().await.since(&before);
    assert_eq!(log.events("end_session.success", None), 1);
    assert_eq!(log.requests("POST", "/token/revocation"), 1);
    assert_eq!(log.events("grant.revoked", None), 1);
    assert_eq!(*state.borrow_and_update(), SessionState::SignedOut);
    let (status, error) = op.refresh_by_hand(refresh_after.secret()).await;
    assert_eq!(
        (status, error.as_deref()),
        (400, Some("invalid_grant")),
        "the revoked refresh token is refused"
    );
    assert_eq!(
        op.userinfo_status(second.secret()).await,
        401,
        "the grant's access tokens went with it"
    );
    assert!(matches!(
        store.load_refresh(session.key()),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        session.access_token().await,
        Err(Error::SignedOut)
    ));
}

/// Waits until the page the browser shows has the heading `text` (a click
/// that submits a form may return before the next page is there).
async fn wait_for_heading(browser: &Browser, text: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        let heading = browser.text("h1").await;
        if heading == text {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the page still says {heading:?}, not {text:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// `GET` userinfo through the app's client: 200 and its claims.
async fn userinfo(api: &AuthedClient, op: &OidcProvider) -> Value {
    let response = api.get(op.url("/me")).await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}
