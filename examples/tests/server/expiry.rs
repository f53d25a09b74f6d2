//! Token expiry: the server closes a connection with 4001 when its token
//! expires, unless an in-band `auth` with a fresh token moved the deadline.
//! These wait in real time, several seconds: the short tokens live long
//! enough (6 s) that a slow machine cannot make them expire before the step
//! that needs them, and every other token is fetched before the connection.

use std::time::{Duration, Instant};

use sessionkit_examples::protocol::{
    CLOSE_SIGNED_OUT, CLOSE_TOKEN_EXPIRED, ClientFrame, ServerFrame,
};

use crate::support::{Client, Event, claims, idp, server, signed, token};

/// The lifetime of the short tokens, in seconds.
const SHORT: i64 = 6;

#[tokio::test]
async fn a_connection_is_closed_with_4001_when_its_token_expires() {
    let idp = idp().await;
    let server = server(&idp).await;
    let short = claims(&idp, "alice", SHORT);
    let exp = short["exp"].as_u64().expect("exp");
    let token = signed(&idp, &short);
    let mut alice = Client::connect(&server, &token).await;
    let connected = Instant::now();
    let left = Duration::from_secs(exp).saturating_sub(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970"),
    );
    assert!(matches!(alice.hello, ServerFrame::Hello { expires_at, .. } if expires_at == exp));
    alice.assert_alive().await;
    let (code, reason) = alice.closed().await;
    assert_eq!(code, CLOSE_TOKEN_EXPIRED, "{reason}");
    assert_eq!(reason, "token expired");
    // Not before the expiry (less a second for `exp`'s whole seconds).
    let waited = connected.elapsed();
    assert!(
        waited + Duration::from_secs(1) >= left,
        "closed too early: after {waited:?}, {left:?} before the expiry"
    );
}

#[tokio::test]
async fn an_in_band_auth_moves_the_deadline() {
    let idp = idp().await;
    let server = server(&idp).await;
    // A fresh token from a real login of the same user, ready before the connection.
    let fresh = token(&idp, "alice").await;
    let short = claims(&idp, "alice", SHORT);
    let exp = short["exp"].as_i64().expect("exp");
    let mut alice = Client::connect(&server, &signed(&idp, &short)).await;
    alice.send(&ClientFrame::Auth { token: fresh }).await;
    let expires_at = match alice.frame().await {
        ServerFrame::Authed { expires_at } => expires_at,
        other => panic!("expected authed, got {other:?}"),
    };
    assert!(expires_at as i64 > exp + 60, "the new expiry is reported");

    // Past the first token's expiry the connection is still open.
    let until = Duration::from_secs(u64::try_from(exp + 2 - idp.control().now()).unwrap_or(0));
    assert_eq!(alice.event_within(until).await, None, "nothing happened");
    alice.assert_alive().await;
}

#[tokio::test]
async fn an_in_band_auth_for_another_user_is_refused_and_a_bad_one_closes() {
    let idp = idp().await;
    let server = server(&idp).await;
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    alice
        .send(&ClientFrame::Auth {
            token: token(&idp, "bob").await,
        })
        .await;
    match alice.frame().await {
        ServerFrame::Error { code, .. } => assert_eq!(code, "bad_token"),
        other => panic!("expected an error, got {other:?}"),
    }
    alice.assert_alive().await;
    assert!(
        matches!(&alice.hello, ServerFrame::Hello { user, .. } if user == "alice"),
        "still alice"
    );

    alice
        .send(&ClientFrame::Auth {
            token: "garbage".into(),
        })
        .await;
    assert_eq!(alice.closed().await.0, CLOSE_TOKEN_EXPIRED);

    // A token of a session logged out since closes with 4003.
    let bob_token = token(&idp, "bob").await;
    let mut bob = Client::connect(&server, &bob_token).await;
    idp.control()
        .set_backchannel_logout_uri("chat-example", Some(&server.backchannel_logout_url()))
        .expect("register");
    let sid = crate::support::sid_of(&bob_token);
    assert_eq!(idp.control().send_backchannel_logout(&sid), 1);
    let (code, _) = bob.closed().await;
    assert_eq!(code, CLOSE_SIGNED_OUT);
    let mut bob2 = Client::connect(&server, &token(&idp, "bob").await).await;
    bob2.send(&ClientFrame::Auth { token: bob_token }).await;
    assert!(matches!(
        bob2.event().await,
        Event::Closed(CLOSE_SIGNED_OUT, _)
    ));
}

/// A client that stops reading (a frozen app, a half-open connection) never
/// answers the server's pings: it is dropped after the idle timeout, while
/// one that keeps reading answers them and stays.
#[tokio::test]
async fn a_silent_connection_is_dropped_and_a_reading_one_stays() {
    let idp = idp().await;
    let mut config = sessionkit_examples::server::ServerConfig::new(idp.issuer());
    config.idle_timeout = Duration::from_secs(1);
    let server = crate::support::server_with(config).await;
    let (silent_token, reading_token) = (token(&idp, "alice").await, token(&idp, "bob").await);
    let mut reading = Client::connect(&server, &reading_token).await;
    let _silent = crate::support::open(&server.ws_url(), Some(&silent_token))
        .await
        .expect("handshake accepted");
    assert_eq!(server.connections(), 2);
    // Bob reads (tungstenite answers pings while reading) for 3 idle timeouts.
    assert!(reading.event_within(Duration::from_secs(3)).await.is_none());
    assert_eq!(server.connections(), 1, "the silent connection was dropped");
    reading.assert_alive().await;
}
