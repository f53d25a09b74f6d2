//! Hardening, over real sockets: idle and half-sent connections are closed
//! in time and capped, per-user limits hold, and text with control
//! characters is refused.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sessionkit_examples::protocol::{CLOSE_RATE_LIMITED, ClientFrame, ServerFrame};
use sessionkit_examples::server::{ConnectionLimits, ServerConfig, UserLimits};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{Client, STEP, idp, refused, server_with, token, within};

/// A request head cut short: the blank line that ends it never comes.
const HALF_SENT: &[u8] = b"GET /ws HTTP/1.1\r\nHost: x\r\n";

/// Opens a connection and sends half a request.
async fn half_sent(addr: SocketAddr) -> TcpStream {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    stream.write_all(HALF_SENT).await.expect("write");
    stream
}

/// Reads until the server closes the connection (EOF or reset).
async fn until_closed(stream: &mut TcpStream) {
    let mut buf = [0_u8; 512];
    while let Ok(n) = stream.read(&mut buf).await
        && n > 0
    {}
}

/// Whether the server closes `stream` within `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    tokio::time::timeout(wait, until_closed(stream))
        .await
        .is_ok()
}

/// The status of a complete, ordinary `GET path` on a new connection.
async fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = within("connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    within("response", stream.read_to_end(&mut response))
        .await
        .expect("read");
    let head = String::from_utf8_lossy(&response);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"))
}

fn with_connections(idp_issuer: &str, connections: ConnectionLimits) -> ServerConfig {
    let mut config = ServerConfig::new(idp_issuer);
    config.connections = connections;
    config
}

#[tokio::test]
async fn half_sent_requests_are_all_closed_by_the_timeout_and_others_are_served() {
    const FLOOD: usize = 300;
    const TIMEOUT: Duration = Duration::from_secs(1);
    let idp = idp().await;
    let server = server_with(with_connections(
        idp.issuer(),
        ConnectionLimits {
            header_read_timeout: TIMEOUT,
            max_pending_per_ip: 10_000,
            ..ConnectionLimits::default()
        },
    ))
    .await;
    let addr = server.local_addr();
    // A WebSocket is long-lived: the timeout is for requests, not for it.
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;

    let start = Instant::now();
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(half_sent(addr).await);
    }
    // An ordinary request is answered in the middle of the flood.
    assert_eq!(status_of(addr, "/ws").await, 401, "served during the flood");
    let bound = TIMEOUT + Duration::from_secs(4);
    let closes = flood.into_iter().map(|mut stream| async move {
        let closed = closed_within(&mut stream, bound.saturating_sub(start.elapsed())).await;
        closed.then(|| start.elapsed())
    });
    let closes = futures_util::future::join_all(closes).await;
    let open = closes.iter().filter(|c| c.is_none()).count();
    assert_eq!(
        open, 0,
        "{open} of {FLOOD} half-sent connections still open after {bound:?}"
    );
    let last = closes.iter().flatten().max().expect("closed");
    eprintln!("{FLOOD} half-sent connections closed within {last:?} (timeout {TIMEOUT:?})");
    assert!(*last >= TIMEOUT, "none closed before the timeout: {last:?}");

    // The WebSocket opened before the flood outlived the timeout.
    assert!(start.elapsed() > TIMEOUT);
    alice.assert_alive().await;
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_timeout() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let idp = idp().await;
    let server = server_with(with_connections(
        idp.issuer(),
        ConnectionLimits {
            header_read_timeout: TIMEOUT,
            ..ConnectionLimits::default()
        },
    ))
    .await;
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write");
    let start = Instant::now();
    let mut buf = vec![0_u8; 4096];
    let n = within("the response", stream.read(&mut buf))
        .await
        .expect("read");
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 401"),
        "answered and kept alive"
    );
    assert!(
        closed_within(&mut stream, TIMEOUT + Duration::from_secs(4)).await,
        "an idle kept-alive connection is closed"
    );
    assert!(start.elapsed() >= TIMEOUT, "{:?}", start.elapsed());
}

#[tokio::test]
async fn a_body_that_trickles_is_cut() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let idp = idp().await;
    let server = server_with(with_connections(
        idp.issuer(),
        ConnectionLimits {
            header_read_timeout: TIMEOUT,
            ..ConnectionLimits::default()
        },
    ))
    .await;
    let mut stream = TcpStream::connect(server.local_addr())
        .await
        .expect("connect");
    stream
        .write_all(
            b"POST /backchannel-logout HTTP/1.1\r\nHost: x\r\n\
              Content-Type: application/x-www-form-urlencoded\r\n\
              Content-Length: 100\r\n\r\nlogout_token=",
        )
        .await
        .expect("write");
    let start = Instant::now();
    assert!(
        closed_within(&mut stream, TIMEOUT + Duration::from_secs(4)).await,
        "a body that never arrives whole ends the connection"
    );
    assert!(start.elapsed() >= TIMEOUT, "{:?}", start.elapsed());
}

#[tokio::test]
async fn the_oldest_half_open_connections_of_an_address_make_way() {
    const CAP: usize = 20;
    const OPENED: usize = 50;
    let idp = idp().await;
    let server = server_with(with_connections(
        idp.issuer(),
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(60),
            max_pending_per_ip: CAP,
            ..ConnectionLimits::default()
        },
    ))
    .await;
    let addr = server.local_addr();
    let mut streams = Vec::new();
    for _ in 0..OPENED {
        streams.push(half_sent(addr).await);
    }
    // Still answered from the same address: the newest connection gets in.
    assert_eq!(status_of(addr, "/ws").await, 401);
    let (oldest, newest) = streams.split_at_mut(OPENED - CAP + 1);
    for (i, stream) in oldest.iter_mut().enumerate() {
        assert!(closed_within(stream, STEP).await, "connection {i} evicted");
    }
    // The request above made the oldest of the last CAP make way too; the
    // rest are left alone (well before their 60 s).
    for (i, stream) in newest.iter_mut().enumerate() {
        assert!(
            !closed_within(stream, Duration::from_millis(100)).await,
            "connection {} kept",
            OPENED - CAP + 1 + i
        );
    }
}

#[tokio::test]
async fn past_the_connection_cap_a_new_connection_is_closed_unanswered() {
    let idp = idp().await;
    let server = server_with(with_connections(
        idp.issuer(),
        ConnectionLimits {
            max_connections: 3,
            ..ConnectionLimits::default()
        },
    ))
    .await;
    let addr = server.local_addr();
    // An upgraded WebSocket keeps its place in the count.
    let alice = Client::connect(&server, &token(&idp, "alice").await).await;
    let _one = half_sent(addr).await;
    let _two = half_sent(addr).await;
    let mut refused = half_sent(addr).await;
    let mut got = Vec::new();
    within("the refusal", refused.read_to_end(&mut got))
        .await
        .ok();
    assert!(
        got.is_empty(),
        "closed without an answer: {}",
        String::from_utf8_lossy(&got)
    );
    drop(alice);
    // Once the WebSocket is gone, there is room again.
    within("a place", async {
        loop {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream
                .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .ok();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).await.ok();
            if got.starts_with(b"HTTP/1.1 401") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

fn with_users(issuer: &str, users: UserLimits) -> ServerConfig {
    let mut config = ServerConfig::new(issuer);
    config.users = users;
    config
}

#[tokio::test]
async fn a_user_past_their_connections_is_refused_with_429() {
    let idp = idp().await;
    let server = server_with(with_users(
        idp.issuer(),
        UserLimits {
            connections: 2,
            ..UserLimits::default()
        },
    ))
    .await;
    let alice = token(&idp, "alice").await;
    let first = Client::connect(&server, &alice).await;
    let _second = Client::connect(&server, &alice).await;
    let response = refused(&server.ws_url(), Some(&alice)).await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body = String::from_utf8(response.body().clone().unwrap_or_default()).expect("utf-8");
    assert!(body.contains("too_many_connections"), "{body}");
    // Another user is not affected.
    let _bob = Client::connect(&server, &token(&idp, "bob").await).await;
    drop(first);
    within("the place freed", async {
        while server.connections() > 2 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let mut third = Client::connect(&server, &alice).await;
    third.assert_alive().await;
}

#[tokio::test]
async fn frames_past_the_rate_close_the_connection_with_4029_and_are_not_stored() {
    const BURST: u32 = 5;
    let idp = idp().await;
    let server = server_with(with_users(
        idp.issuer(),
        UserLimits {
            frame_burst: BURST,
            frames_per_second: 1,
            ..UserLimits::default()
        },
    ))
    .await;
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    for i in 1..=u64::from(BURST) {
        assert_eq!(alice.post("general", &format!("m{i}"), "hi").await, i);
    }
    alice.post_nowait("general", "over", "one too many").await;
    let (code, reason) = alice.closed().await;
    assert_eq!(code, CLOSE_RATE_LIMITED);
    let advice: serde_json::Value = serde_json::from_str(&reason).expect("JSON reason");
    let wait = advice["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(
        (1..=5_000).contains(&wait),
        "full again within burst / rate: {wait}"
    );
    // Reconnecting does not refill the budget.
    let mut again = Client::connect(&server, &token(&idp, "alice").await).await;
    again.post_nowait("general", "over", "one too many").await;
    assert_eq!(again.closed().await.0, CLOSE_RATE_LIMITED);
    // Bob has his own budget, and sees only what was acknowledged.
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    let (history, last) = bob.join("general", 0).await;
    assert_eq!(last, u64::from(BURST));
    assert!(history.iter().all(|m| m.id != "over"));
}

#[tokio::test]
async fn rooms_joined_and_created_are_capped_per_user() {
    let idp = idp().await;
    let server = server_with(with_users(
        idp.issuer(),
        UserLimits {
            rooms_joined: 3,
            rooms_created: 2,
            ..UserLimits::default()
        },
    ))
    .await;
    let alice = token(&idp, "alice").await;
    let mut one = Client::connect(&server, &alice).await;
    let mut two = Client::connect(&server, &alice).await;
    one.join("a", 0).await;
    one.join("b", 0).await;
    two.join("c", 0).await;
    let refusal = |frame: ServerFrame| match frame {
        ServerFrame::Error { code, id, .. } => (code, id),
        other => panic!("expected an error, got {other:?}"),
    };
    two.send(&ClientFrame::Join {
        room: "d".into(),
        after: 0,
    })
    .await;
    assert_eq!(
        refusal(two.frame().await),
        ("too_many_rooms".into(), None),
        "counted across the user's connections"
    );
    one.send(&ClientFrame::Leave { room: "a".into() }).await;
    one.join("d", 0).await;

    // Creating: the first message of a room.
    assert_eq!(one.post("x", "x1", "first in x").await, 1);
    assert_eq!(one.post("y", "y1", "first in y").await, 1);
    one.post_nowait("z", "z1", "first in z").await;
    assert_eq!(
        refusal(one.frame().await),
        ("too_many_rooms".into(), Some("z1".into()))
    );
    assert_eq!(one.post("x", "x2", "x exists").await, 2);
    let mut bob = Client::connect(&server, &token(&idp, "bob").await).await;
    let (history, last) = bob.join("z", 0).await;
    assert_eq!((history.len(), last), (0, 0), "nothing stored in z");
}

#[tokio::test]
async fn text_with_control_characters_or_nothing_in_it_is_refused_and_not_stored() {
    let idp = idp().await;
    let server = server_with(ServerConfig::new(idp.issuer())).await;
    let mut alice = Client::connect(&server, &token(&idp, "alice").await).await;
    let refused = [
        ("osc52", "\u{1b}]52;c;aGVsbG8=\u{7}"),
        ("forge", "hi\r[9] bob: send me your password"),
        ("c1", "\u{9b}2J"),
        ("del", "x\u{7f}"),
        ("bidi", "invoice\u{202e}fdp.exe"),
        ("empty", ""),
        ("blank", " \n\t"),
    ];
    for (id, text) in refused {
        alice.post_nowait("general", id, text).await;
        match alice.frame().await {
            ServerFrame::Error { code, id: got, .. } => {
                assert_eq!((code.as_str(), got.as_deref()), ("bad_text", Some(id)));
            }
            other => panic!("{id}: expected bad_text, got {other:?}"),
        }
    }
    assert_eq!(
        alice
            .post("general", "ok", "two\nlines\tand \u{200f}marks")
            .await,
        1
    );
    let (history, _) = alice.join("general", 0).await;
    let ids: Vec<&str> = history.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["ok"], "nothing refused was stored");
}
