//! The loopback redirect listener against hostile local clients: connections
//! that send nothing, and requests that stop half-way, opened before the
//! browser comes back. The listener must serve them side by side (each with
//! its own header-read timeout), so none of them can hold the sign-in; its
//! deadline and cancellation must hold while they are open. The happy path,
//! path and `state` matching and the page live in `login.rs`.
//!
//! The hostile connections are opened with blocking connects inside the URL
//! callback, so they sit in the listener's accept queue before the listener
//! starts waiting: they are accepted first, ahead of the browser. Tests of
//! time use a paused tokio clock (the clock moves only while every task waits);
//! the one that needs the mock provider runs on the real clock with a bound.

use std::io::Write as _;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit::{Error, HttpClient, LoopbackOptions, OidcClient, Provider};
use sessionkit_mock_idp::MockIdp;
use tokio::io::AsyncReadExt as _;
use tokio::time::Instant;

const IDLE: usize = 50;
const HALF_SENT: usize = 50;

async fn client_for(idp: &MockIdp) -> OidcClient {
    let http = HttpClient::new().expect("client");
    let provider = Provider::discover(idp.issuer(), &http)
        .await
        .expect("discovery");
    OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"])
}

/// The listener's address, from the authorization URL's `redirect_uri`.
fn listener_of(url: &str) -> String {
    let url = url::Url::parse(url).expect("url");
    let redirect = url
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .expect("redirect_uri")
        .1
        .into_owned();
    let redirect = url::Url::parse(&redirect).expect("redirect url");
    format!(
        "{}:{}",
        redirect.host_str().expect("host"),
        redirect.port().expect("port")
    )
}

/// Opens `idle` connections that send nothing and `half` that send the start
/// of a request head and stop (blocking connects: they are queued at the
/// listener when this returns).
fn hostile(addr: &str, idle: usize, half: usize) -> Vec<TcpStream> {
    let mut open = Vec::with_capacity(idle + half);
    for _ in 0..idle {
        open.push(TcpStream::connect(addr).expect("connect"));
    }
    for i in 0..half {
        let mut stream = TcpStream::connect(addr).expect("connect");
        write!(
            stream,
            "GET /callback?code=c{i}&state=s{i} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: half"
        )
        .expect("write");
        open.push(stream);
    }
    open
}

/// Hostile connections opened from the URL callback, kept open by the test.
type Held = Arc<Mutex<Vec<TcpStream>>>;

fn held() -> Held {
    Arc::new(Mutex::new(Vec::new()))
}

/// Turns the held connections into tokio streams (to await their end).
fn take_async(held: &Held) -> Vec<tokio::net::TcpStream> {
    std::mem::take(&mut *held.lock().expect("lock"))
        .into_iter()
        .map(|s| {
            s.set_nonblocking(true).expect("nonblocking");
            tokio::net::TcpStream::from_std(s).expect("tokio stream")
        })
        .collect()
}

/// `elapsed` is `expected` on the paused clock (timers fire on whole
/// milliseconds, so up to a few past it).
fn at(elapsed: Duration, expected: Duration) -> bool {
    elapsed >= expected && elapsed <= expected + Duration::from_millis(10)
}

/// Reads until the listener closes the connection (EOF or reset).
async fn closed(mut stream: tokio::net::TcpStream) {
    let mut buf = [0u8; 1024];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

#[tokio::test]
async fn a_login_completes_while_idle_and_half_sent_connections_are_open() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let client = client_for(&idp).await;
    let hold = held();
    let (page_tx, page_rx) = tokio::sync::oneshot::channel();
    let mut options = LoopbackOptions::with_callback({
        let hold = hold.clone();
        move |url| {
            hold.lock()
                .expect("lock")
                .extend(hostile(&listener_of(url), IDLE, HALF_SENT));
            // Then the browser: it follows the provider's redirect to the listener.
            let url = url.to_owned();
            tokio::spawn(async move {
                let page = reqwest::get(&url)
                    .await
                    .expect("browser")
                    .text()
                    .await
                    .expect("page");
                let _ = page_tx.send(page);
            });
        }
    });
    options.timeout = Duration::from_secs(60);
    let started = std::time::Instant::now();
    let tokens = tokio::time::timeout(Duration::from_secs(30), client.login_loopback(options))
        .await
        .expect("idle connections do not hold the sign-in")
        .expect("signed in");
    let took = started.elapsed();
    assert_eq!(tokens.claims.expect("claims").sub, "alice");
    // Well under the 10 s a single idle connection may stay unanswered.
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let page = page_rx.await.expect("page");
    assert!(page.contains("You can close this tab"), "{page}");
    assert_eq!(hold.lock().expect("lock").len(), IDLE + HALF_SENT);
}

#[tokio::test]
async fn the_deadline_ends_a_login_held_by_idle_connections() {
    let idp = MockIdp::start().await.expect("idp");
    let client = client_for(&idp).await;
    tokio::time::pause();
    let hold = held();
    let mut options = LoopbackOptions::with_callback({
        let hold = hold.clone();
        move |url| {
            hold.lock()
                .expect("lock")
                .extend(hostile(&listener_of(url), IDLE, HALF_SENT));
        }
    });
    options.timeout = Duration::from_secs(3);
    let started = Instant::now();
    match client.login_loopback(options).await {
        Err(Error::Timeout(limit)) => assert_eq!(limit, Duration::from_secs(3)),
        other => panic!("expected a timeout, got {other:?}"),
    }
    let took = started.elapsed();
    assert!(
        at(took, Duration::from_secs(3)),
        "at the deadline, not {took:?}"
    );
    // Nothing outlives the login: every connection is closed.
    let connections = take_async(&hold);
    assert_eq!(connections.len(), IDLE + HALF_SENT);
    for stream in connections {
        closed(stream).await;
    }
    let took = started.elapsed();
    assert!(
        at(took, Duration::from_secs(3)),
        "closed at once, not {took:?}"
    );
}

#[tokio::test]
async fn cancel_during_a_half_sent_request_returns_at_once() {
    let idp = MockIdp::start().await.expect("idp");
    let client = client_for(&idp).await;
    tokio::time::pause();
    let hold = held();
    let mut options = LoopbackOptions::with_callback({
        let hold = hold.clone();
        move |url| {
            hold.lock()
                .expect("lock")
                .extend(hostile(&listener_of(url), 0, 1));
        }
    });
    options.timeout = Duration::from_secs(300);
    let cancel = options.cancel.clone();
    tokio::spawn(async move {
        // The clock moves only once the listener waits for the rest of the request.
        tokio::time::sleep(Duration::from_secs(1)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let result = client.login_loopback(options).await;
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    let took = started.elapsed();
    assert!(at(took, Duration::from_secs(1)), "at once, not {took:?}");
}

#[tokio::test]
async fn every_connection_has_its_own_header_read_timeout() {
    let idp = MockIdp::start().await.expect("idp");
    let client = client_for(&idp).await;
    tokio::time::pause();
    let hold = held();
    let mut options = LoopbackOptions::with_callback({
        let hold = hold.clone();
        move |url| {
            hold.lock()
                .expect("lock")
                .extend(hostile(&listener_of(url), 2, 2));
        }
    });
    options.timeout = Duration::from_secs(300);
    let cancel = options.cancel.clone();
    let login = tokio::spawn({
        let client = client.clone();
        async move { client.login_loopback(options).await }
    });
    while hold.lock().expect("lock").is_empty() {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let waits: Vec<_> = take_async(&hold)
        .into_iter()
        .map(|s| {
            tokio::spawn(async move {
                closed(s).await;
                started.elapsed()
            })
        })
        .collect();
    for wait in waits {
        let after = wait.await.expect("join");
        // Side by side: each closed 10 s after it was accepted, not in turn.
        assert!(
            after >= Duration::from_secs(9) && after <= Duration::from_secs(11),
            "closed after {after:?}"
        );
    }
    assert!(
        !login.is_finished(),
        "the login still waits for the browser"
    );
    cancel.cancel();
    assert!(matches!(login.await.expect("join"), Err(Error::Cancelled)));
}

/// Sends one raw request to the listener; returns the status code.
async fn status_of(addr: &str, request: String) -> u16 {
    use tokio::io::AsyncWriteExt as _;
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer);
    answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {answer:?}"))
}

#[tokio::test]
async fn only_a_get_of_exactly_the_callback_is_taken_and_errors_come_back_typed() {
    let idp = MockIdp::start().await.expect("idp");
    let client = client_for(&idp).await;
    let issuer = idp.issuer().to_owned();
    let (statuses_tx, statuses_rx) = tokio::sync::oneshot::channel();
    let options = LoopbackOptions::with_callback(move |url| {
        let addr = listener_of(url);
        let state = url::Url::parse(url)
            .expect("url")
            .query_pairs()
            .find(|(k, _)| k == "state")
            .expect("state")
            .1
            .into_owned();
        tokio::spawn(async move {
            let enc =
                |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let query = format!(
                "error=access_denied&state={}&iss={}",
                enc(&state),
                enc(&issuer)
            );
            let mut statuses = Vec::new();
            for (method, target) in [
                ("POST", format!("/callback?{query}")),
                ("GET", format!("http://{addr}/callback?{query}")),
                ("GET", format!("/callback/?{query}")),
                ("GET", format!("/Callback?{query}")),
                (
                    "GET",
                    format!(
                        "/callback?error=access_denied&state=other&iss={}",
                        enc(&issuer)
                    ),
                ),
                ("GET", format!("/callback?{query}")),
            ] {
                let request = format!(
                    "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n"
                );
                statuses.push(status_of(&addr, request).await);
            }
            let _ = statuses_tx.send(statuses);
        });
    });
    let result = client.login_loopback(options).await;
    assert!(matches!(result, Err(Error::AccessDenied)), "{result:?}");
    // Refused (the wait went on): not GET, not origin-form, not exactly
    // /callback, another state; then the provider's error: its page, 400.
    assert_eq!(
        statuses_rx.await.expect("statuses"),
        [400, 400, 404, 404, 400, 400]
    );
}

#[tokio::test]
async fn a_request_whose_body_never_comes_is_answered_and_closed_at_once() {
    let idp = MockIdp::start().await.expect("idp");
    let client = client_for(&idp).await;
    tokio::time::pause();
    let (addr_tx, addr_rx) = tokio::sync::oneshot::channel();
    let mut options = LoopbackOptions::with_callback(move |url| {
        let _ = addr_tx.send(listener_of(url));
    });
    options.timeout = Duration::from_secs(300);
    let cancel = options.cancel.clone();
    let login = tokio::spawn({
        let client = client.clone();
        async move { client.login_loopback(options).await }
    });
    let addr = addr_rx.await.expect("address");
    let started = Instant::now();
    let status = status_of(
        &addr,
        format!("POST /callback HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 100000\r\n\r\nx"),
    )
    .await;
    assert_eq!(status, 400);
    let took = started.elapsed();
    assert!(at(took, Duration::ZERO), "closed after {took:?}");
    cancel.cancel();
    assert!(matches!(login.await.expect("join"), Err(Error::Cancelled)));
}

#[tokio::test]
async fn the_listener_can_take_the_ipv6_loopback_and_refuses_other_addresses() {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let client = client_for(&idp).await;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let options = LoopbackOptions::with_callback(move |url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = tx.send(listener_of(&url));
            let _ = reqwest::get(url).await;
        });
    })
    .address(std::net::Ipv6Addr::LOCALHOST.into());
    let tokens = client.login_loopback(options).await.expect("signed in");
    assert_eq!(tokens.claims.expect("claims").sub, "alice");
    let listener = rx.await.expect("the URL");
    assert!(listener.starts_with("[::1]:"), "{listener}");

    let outside = LoopbackOptions::with_callback(|_| {}).address([192, 0, 2, 1].into());
    assert!(matches!(
        client.login_loopback(outside).await,
        Err(Error::Config(_))
    ));
}
