//! Each fault over real sockets, in front of an echo server. Timing is
//! asserted with lower bounds and generous upper ones only.

#![allow(clippy::unwrap_used)]

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::{Fault, FaultProxy};

const PATIENCE: Duration = Duration::from_secs(5);

/// An echo server on a free port; it runs until the test's runtime ends.
async fn echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = stream.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

async fn read_exactly(stream: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut buf))
        .await
        .expect("the bytes in time")
        .unwrap();
    buf
}

async fn round_trip(stream: &mut TcpStream, text: &[u8]) {
    stream.write_all(text).await.unwrap();
    assert_eq!(read_exactly(stream, text.len()).await, text);
}

/// Waits until `want` holds for the proxy's counters.
async fn until(proxy: &FaultProxy, want: impl Fn(&super::ProxyStats) -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !want(&proxy.stats()) {
        assert!(Instant::now() < deadline, "{:?}", proxy.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn pass_forwards_both_ways_and_counts() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut stream, b"hello").await;
    round_trip(&mut stream, b", world").await;
    let stats = proxy.stats();
    assert_eq!(
        (stats.accepted, stats.open, stats.bytes_up, stats.bytes_down),
        (1, 1, 12, 12)
    );
    drop(stream);
    until(&proxy, |s| s.open == 0).await;
}

#[tokio::test]
async fn delay_adds_latency_each_way_and_keeps_order() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut stream, b"warm").await;
    // Applies to the open connection.
    proxy.set(Fault::Delay(Duration::from_millis(150)));
    let start = Instant::now();
    for chunk in [b"one ", b"two ", b"thr "] {
        stream.write_all(chunk).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = read_exactly(&mut stream, 4).await;
    let first_at = start.elapsed();
    let rest = read_exactly(&mut stream, 8).await;
    assert_eq!([first, rest].concat(), b"one two thr ");
    assert!(
        first_at >= Duration::from_millis(300),
        "one round trip crosses the delay twice: {first_at:?}"
    );
    assert!(first_at < Duration::from_secs(3), "{first_at:?}");
    // Latency, not bandwidth: the three chunks did not queue behind each
    // other's delays (that would take 3 × 300 ms).
    assert!(
        start.elapsed() < Duration::from_millis(850),
        "{:?}",
        start.elapsed()
    );

    proxy.set(Fault::Pass);
    let start = Instant::now();
    round_trip(&mut stream, b"fast").await;
    assert!(
        start.elapsed() < Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_chunk_read_after_the_delay_is_lifted_does_not_overtake_delayed_ones() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut stream = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut stream, b"warm").await;
    proxy.set(Fault::Delay(Duration::from_millis(200)));
    stream.write_all(b"slow ").await.unwrap();
    // Wait until the proxy has read it (with its delay) before lifting.
    tokio::time::sleep(Duration::from_millis(50)).await;
    proxy.set(Fault::Pass);
    stream.write_all(b"fast").await.unwrap();
    assert_eq!(read_exactly(&mut stream, 9).await, b"slow fast");
}

#[tokio::test]
async fn blackhole_holds_open_and_new_connections_without_closing_them() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut open, b"before").await;
    proxy.set(Fault::Blackhole);
    open.write_all(b"during").await.unwrap();
    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    fresh.write_all(b"new").await.unwrap();
    let mut buf = [0; 16];
    for stream in [&mut open, &mut fresh] {
        let read = tokio::time::timeout(Duration::from_millis(400), stream.read(&mut buf)).await;
        assert!(
            read.is_err(),
            "nothing arrives and nothing closes: {read:?}"
        );
    }
    assert_eq!(proxy.stats().bytes_up, 6, "only what came before");

    // Lifted: what was sent meanwhile arrives, as after retransmission.
    proxy.set(Fault::Pass);
    assert_eq!(read_exactly(&mut open, 6).await, b"during");
    assert_eq!(read_exactly(&mut fresh, 3).await, b"new");
    assert_eq!(proxy.stats().accepted, 2);
}

#[tokio::test]
async fn reset_resets_open_and_new_connections() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut open, b"before").await;
    proxy.set(Fault::Reset);
    let mut buf = [0; 16];
    let read = tokio::time::timeout(PATIENCE, open.read(&mut buf))
        .await
        .expect("the reset in time");
    assert_eq!(
        read.map_err(|e| e.kind()).unwrap_err(),
        ErrorKind::ConnectionReset
    );

    let mut fresh = TcpStream::connect(proxy.local_addr()).await.unwrap();
    let read = tokio::time::timeout(PATIENCE, fresh.read(&mut buf))
        .await
        .expect("the reset in time");
    assert_eq!(
        read.map_err(|e| e.kind()).unwrap_err(),
        ErrorKind::ConnectionReset
    );
    until(&proxy, |s| s.open == 0).await;

    proxy.set(Fault::Pass);
    let mut after = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut after, b"after").await;
}

#[tokio::test]
async fn refuse_stops_listening_and_resumes_on_the_same_address() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let mut open = TcpStream::connect(proxy.local_addr()).await.unwrap();
    round_trip(&mut open, b"before").await;
    proxy.set(Fault::Refuse);
    // The listener closes asynchronously (a connection caught in its
    // backlog meanwhile is reset): wait for the kernel's refusal.
    let deadline = Instant::now() + PATIENCE;
    loop {
        let attempt = TcpStream::connect(proxy.local_addr()).await;
        if matches!(&attempt, Err(err) if err.kind() == ErrorKind::ConnectionRefused) {
            break;
        }
        assert!(Instant::now() < deadline, "still listening: {attempt:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    round_trip(&mut open, b"open ones stay").await;

    proxy.set(Fault::Pass);
    let deadline = Instant::now() + PATIENCE;
    let mut again = loop {
        if let Ok(stream) = TcpStream::connect(proxy.local_addr()).await {
            break stream;
        }
        assert!(Instant::now() < deadline, "not listening again");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    round_trip(&mut again, b"again").await;
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let proxy = FaultProxy::start(echo().await).await.unwrap();
    let addr = proxy.local_addr();
    let mut open = TcpStream::connect(addr).await.unwrap();
    round_trip(&mut open, b"before").await;
    drop(proxy);
    let mut buf = [0; 16];
    let read = tokio::time::timeout(PATIENCE, open.read(&mut buf))
        .await
        .expect("closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(addr).await.is_ok() {
        assert!(Instant::now() < deadline, "still listening");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
