//! Connection limits over real sockets: half-sent, silent and idle
//! connections are closed in time, slow bodies are cut, and the caps hold,
//! while ordinary requests are served throughout.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sessionkit_mock_idp::{ConnectionLimits, MockIdp};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The longest a single step may take.
const STEP: Duration = Duration::from_secs(10);
/// A request head cut short: the blank line that ends it never comes.
const HALF_SENT: &[u8] = b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\n";

async fn idp_with(limits: ConnectionLimits) -> MockIdp {
    MockIdp::builder()
        .connection_limits(limits)
        .start()
        .await
        .expect("mock idp starts")
}

async fn connect(addr: SocketAddr) -> TcpStream {
    tokio::time::timeout(STEP, TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect")
}

/// Opens a connection and sends `bytes` (maybe nothing).
async fn opened_with(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut stream = connect(addr).await;
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Reads until the server closes the connection (EOF or reset).
async fn until_closed(stream: &mut TcpStream) {
    let mut buf = [0_u8; 512];
    while let Ok(n) = stream.read(&mut buf).await
        && n > 0
    {}
}

async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    tokio::time::timeout(wait, until_closed(stream))
        .await
        .is_ok()
}

/// The status of a complete `GET path` on a new connection.
async fn status_of(addr: SocketAddr, path: &str) -> u16 {
    let mut stream = connect(addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut response))
        .await
        .expect("answered in time")
        .expect("read");
    let head = String::from_utf8_lossy(&response);
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {head:?}"))
}

/// Waits for every stream to be closed by the server, within `bound` of
/// `start`; returns how many stayed open and when the last one closed.
async fn all_closed(streams: Vec<TcpStream>, start: Instant, bound: Duration) -> (usize, Duration) {
    let closes = streams.into_iter().map(|mut stream| async move {
        let left = bound.saturating_sub(start.elapsed());
        closed_within(&mut stream, left)
            .await
            .then(|| start.elapsed())
    });
    let closes = futures_util::future::join_all(closes).await;
    let open = closes.iter().filter(|c| c.is_none()).count();
    (open, closes.into_iter().flatten().max().unwrap_or_default())
}

#[tokio::test]
async fn half_sent_and_silent_connections_are_all_closed_by_the_timeout() {
    const HALF: usize = 300;
    const SILENT: usize = 50;
    const TIMEOUT: Duration = Duration::from_secs(1);
    let idp = idp_with(ConnectionLimits {
        header_read_timeout: TIMEOUT,
        max_pending_per_ip: 10_000,
        ..ConnectionLimits::default()
    })
    .await;
    let addr = idp.addr();
    let start = Instant::now();
    let mut streams = Vec::with_capacity(HALF + SILENT);
    for _ in 0..HALF {
        streams.push(opened_with(addr, HALF_SENT).await);
    }
    // Not even the first bytes, which decide between HTTP/1 and HTTP/2.
    for _ in 0..SILENT {
        streams.push(opened_with(addr, b"").await);
    }
    assert_eq!(
        status_of(addr, "/.well-known/openid-configuration").await,
        200,
        "served during the flood"
    );
    let bound = TIMEOUT + Duration::from_secs(4);
    let (open, last) = all_closed(streams, start, bound).await;
    assert_eq!(
        open,
        0,
        "{open} of {} connections still open after {bound:?}",
        HALF + SILENT
    );
    eprintln!(
        "{HALF} half-sent and {SILENT} silent connections closed within {last:?} (timeout {TIMEOUT:?})"
    );
    assert!(last >= TIMEOUT, "none closed before the timeout: {last:?}");
}

#[tokio::test]
async fn a_tls_handshake_that_never_comes_is_given_up() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let idp = MockIdp::builder()
        .tls()
        .connection_limits(ConnectionLimits {
            header_read_timeout: TIMEOUT,
            ..ConnectionLimits::default()
        })
        .start()
        .await
        .expect("mock idp starts");
    let start = Instant::now();
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(opened_with(idp.addr(), b"").await);
    }
    let (open, _) = all_closed(streams, start, TIMEOUT + Duration::from_secs(4)).await;
    assert_eq!(open, 0, "{open} silent TLS connections still open");
}

#[tokio::test]
async fn a_body_that_trickles_is_cut_and_an_idle_connection_closed() {
    const TIMEOUT: Duration = Duration::from_millis(500);
    let idp = idp_with(ConnectionLimits {
        header_read_timeout: TIMEOUT,
        ..ConnectionLimits::default()
    })
    .await;
    // A complete head announcing a body that never comes whole.
    let mut slow = opened_with(
        idp.addr(),
        b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=",
    )
    .await;
    let start = Instant::now();
    assert!(
        closed_within(&mut slow, TIMEOUT + Duration::from_secs(4)).await,
        "a body that never arrives whole ends the connection"
    );
    assert!(start.elapsed() >= TIMEOUT);

    // A kept-alive connection is answered, then closed once idle.
    let mut kept = opened_with(
        idp.addr(),
        b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    let mut buf = vec![0_u8; 8192];
    let n = tokio::time::timeout(STEP, kept.read(&mut buf))
        .await
        .expect("answered in time")
        .expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let start = Instant::now();
    assert!(
        closed_within(&mut kept, TIMEOUT + Duration::from_secs(4)).await,
        "an idle kept-alive connection is closed"
    );
    assert!(start.elapsed() >= TIMEOUT / 2, "{:?}", start.elapsed());
}

#[tokio::test]
async fn the_oldest_half_open_connections_of_an_address_make_way() {
    const CAP: usize = 20;
    const OPENED: usize = 50;
    let idp = idp_with(ConnectionLimits {
        header_read_timeout: Duration::from_secs(60),
        max_pending_per_ip: CAP,
        ..ConnectionLimits::default()
    })
    .await;
    let addr = idp.addr();
    let mut streams = Vec::new();
    for _ in 0..OPENED {
        streams.push(opened_with(addr, HALF_SENT).await);
    }
    assert_eq!(
        status_of(addr, "/.well-known/openid-configuration").await,
        200,
        "the newest connection from the flooding address still gets in"
    );
    let (oldest, newest) = streams.split_at_mut(OPENED - CAP + 1);
    for (i, stream) in oldest.iter_mut().enumerate() {
        assert!(closed_within(stream, STEP).await, "connection {i} evicted");
    }
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
    let idp = idp_with(ConnectionLimits {
        max_connections: 2,
        ..ConnectionLimits::default()
    })
    .await;
    let addr = idp.addr();
    let one = opened_with(addr, HALF_SENT).await;
    let _two = opened_with(addr, HALF_SENT).await;
    let mut third = opened_with(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut got = Vec::new();
    let _ = tokio::time::timeout(STEP, third.read_to_end(&mut got)).await;
    assert!(
        got.is_empty(),
        "closed without an answer: {}",
        String::from_utf8_lossy(&got)
    );
    drop(one);
    tokio::time::timeout(STEP, async {
        loop {
            let mut stream = connect(addr).await;
            let _ = stream
                .write_all(b"GET /jwks HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await;
            let mut got = Vec::new();
            let _ = stream.read_to_end(&mut got).await;
            if got.starts_with(b"HTTP/1.1 200") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("a place again once a connection closed");
}
