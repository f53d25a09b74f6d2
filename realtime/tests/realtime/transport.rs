//! Where the token goes: the header, a subprotocol or a query parameter,
//! over real sockets; a query token never shows up in `Debug` or logs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit_realtime::{
    Backoff, Incoming, RealtimeClient, ReconnectReason, State, TokenTransport,
};

use crate::support::{Command, Rotating, TokenIn, WsServer, is_connected, lock, wait_for};

/// Retries so slow that a reconnect within a test means "at once".
fn glacial() -> Backoff {
    Backoff::new(Duration::from_secs(3600), 2.0, Duration::from_secs(3600))
}

/// Each client transport with the server side that reads it.
fn transports() -> [(TokenTransport, TokenIn); 3] {
    [
        (TokenTransport::Header, TokenIn::Header),
        (
            TokenTransport::subprotocol("bearer"),
            TokenIn::Subprotocol("bearer".to_owned()),
        ),
        (
            TokenTransport::query_parameter("access_token"),
            TokenIn::Query("access_token".to_owned()),
        ),
    ]
}

async fn server(allowed: &[&str], token_in: TokenIn) -> WsServer {
    let server = WsServer::start(allowed).await;
    server.expect_token_in(token_in);
    server
}

fn client(
    url: String,
    transport: TokenTransport,
    source: Arc<Rotating>,
) -> (RealtimeClient, tokio::sync::mpsc::Receiver<Incoming>) {
    RealtimeClient::builder(url)
        .backoff(glacial())
        .token_transport(transport)
        .build(source)
        .expect("client")
}

#[tokio::test]
async fn each_transport_connects_with_the_token() {
    for (transport, token_in) in transports() {
        let server = server(&["tok-0"], token_in).await;
        let source = Rotating::new();
        let (client, mut incoming) = client(server.url(), transport.clone(), source.clone());
        let mut state = client.state();
        assert_eq!(
            wait_for(&mut state, is_connected).await,
            State::Connected { generation: 1 },
            "{transport:?}"
        );
        assert_eq!(server.accepted(), ["tok-0"], "{transport:?}");
        client.send("hello").await.expect("send");
        assert_eq!(
            incoming.recv().await,
            Some(Incoming::Text("hello".to_owned()))
        );
        let query = matches!(transport, TokenTransport::QueryParameter { .. })
            .then(|| "access_token=tok-0".to_owned());
        assert_eq!(server.queries(), [query], "{transport:?}");
        client.shutdown().await;
    }
}

#[tokio::test]
async fn the_token_goes_nowhere_else() {
    // A server that reads the header refuses a client that sends the token
    // in the query, and one that reads the query refuses the header.
    for (transport, token_in) in [
        (
            TokenTransport::query_parameter("access_token"),
            TokenIn::Header,
        ),
        (
            TokenTransport::Header,
            TokenIn::Query("access_token".to_owned()),
        ),
    ] {
        let server = server(&["tok-0", "tok-1"], token_in).await;
        let source = Rotating::new();
        let (client, _incoming) = client(server.url(), transport.clone(), source.clone());
        let mut state = client.state();
        wait_for(&mut state, |s| {
            matches!(
                s,
                State::Reconnecting {
                    reason: ReconnectReason::Unauthorized,
                    ..
                }
            )
        })
        .await;
        assert!(server.accepted().is_empty(), "{transport:?}");
        client.shutdown().await;
    }
}

#[tokio::test]
async fn after_4001_the_refreshed_token_goes_in_the_same_transport() {
    for (transport, token_in) in transports() {
        let server = server(&["tok-0", "tok-1"], token_in).await;
        let source = Rotating::new();
        let (client, _incoming) = client(server.url(), transport.clone(), source.clone());
        let mut state = client.state();
        wait_for(&mut state, is_connected).await;

        server.command(Command::Close(4001, "token expired".to_owned()));
        let reconnected = wait_for(&mut state, |s| {
            assert!(
                !matches!(s, State::Reconnecting { .. }),
                "backed off: {s:?} ({transport:?})"
            );
            matches!(s, State::Connected { generation: 2 })
        })
        .await;
        assert_eq!(reconnected, State::Connected { generation: 2 });
        assert_eq!(source.refreshes(), 1, "{transport:?}");
        assert_eq!(server.accepted(), ["tok-0", "tok-1"], "{transport:?}");
        if matches!(transport, TokenTransport::QueryParameter { .. }) {
            // Each attempt carries only its own token.
            assert_eq!(
                server.queries(),
                [
                    Some("access_token=tok-0".to_owned()),
                    Some("access_token=tok-1".to_owned())
                ]
            );
        }
        client.shutdown().await;
    }
}

#[tokio::test]
async fn a_handshake_401_refreshes_once_in_every_transport() {
    for (transport, token_in) in transports() {
        let server = server(&["tok-1"], token_in).await;
        let source = Rotating::new();
        let (client, _incoming) = client(server.url(), transport.clone(), source.clone());
        let mut state = client.state();
        assert_eq!(
            wait_for(&mut state, is_connected).await,
            State::Connected { generation: 2 },
            "{transport:?}"
        );
        assert_eq!(source.refreshes(), 1, "{transport:?}");
        assert_eq!(server.accepted(), ["tok-1"], "{transport:?}");
        client.shutdown().await;
    }
}

#[tokio::test]
async fn a_server_that_does_not_choose_the_subprotocol_fails_the_attempt() {
    // The server takes the token but chooses it (not "bearer") as the protocol.
    let server = server(
        &["tok-0"],
        TokenIn::SubprotocolChoosingToken("bearer".to_owned()),
    )
    .await;
    let source = Rotating::new();
    let (client, _incoming) = client(
        server.url(),
        TokenTransport::subprotocol("bearer"),
        source.clone(),
    );
    let mut state = client.state();
    let failed = wait_for(&mut state, |s| matches!(s, State::Reconnecting { .. })).await;
    let State::Reconnecting {
        reason: ReconnectReason::Transport(why),
        ..
    } = &failed
    else {
        panic!("{failed:?}");
    };
    assert!(why.contains("did not choose"), "{why}");
    assert!(!why.contains("tok-"), "{why}");
    assert_eq!(server.accepted(), ["tok-0"]);
    assert_eq!(source.refreshes(), 0);
    client.shutdown().await;
}

/// A log sink for a scoped subscriber.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        lock(&self.0).extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&lock(&self.0)).into_owned()
    }
}

#[tokio::test]
async fn a_query_token_is_not_in_debug_output_or_trace_logs() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer({
            let captured = captured.clone();
            move || captured.clone()
        })
        .finish();
    // This test's runtime is current-thread: every task (client and server)
    // runs on this thread, under this default.
    let _guard = tracing::subscriber::set_default(subscriber);
    // A callsite first hit on another test's thread while this subscriber
    // was being registered may have cached "never" (tracing's interest
    // cache is process-wide): ask every callsite again.
    tracing::callsite::rebuild_interest_cache();

    // The first token is refused (401), the second accepted, then a 4001.
    let server = server(
        &["tok-1", "tok-2"],
        TokenIn::Query("access_token".to_owned()),
    )
    .await;
    let url = format!("{}?room=general", server.url());
    let source = Rotating::new();
    let builder = RealtimeClient::builder(url.clone())
        .backoff(glacial())
        .token_transport(TokenTransport::query_parameter("access_token"));
    let (client, _incoming) = builder.clone().build(source.clone()).expect("client");
    let mut state = client.state();
    assert_eq!(
        wait_for(&mut state, is_connected).await,
        State::Connected { generation: 2 }
    );
    assert_eq!(server.accepted(), ["tok-1"]);
    assert_eq!(
        server.queries(),
        [
            Some("room=general&access_token=tok-0".to_owned()),
            Some("room=general&access_token=tok-1".to_owned()),
        ]
    );
    client.send("hello").await.expect("send");
    assert_eq!(server.received_at_least(1).await, ["hello"]);

    let client_debug = format!("{client:?}");
    let builder_debug = format!("{builder:?}");
    assert!(!client_debug.contains("tok-"), "{client_debug}");
    assert!(!builder_debug.contains("tok-"), "{builder_debug}");
    // The stored URL is the app's, unchanged.
    assert!(builder_debug.contains(&url), "{builder_debug}");

    // A failing attempt's error does not carry the token either.
    let (unreachable, _incoming) = RealtimeClient::builder("ws://127.0.0.1:9/ws")
        .backoff(glacial())
        .token_transport(TokenTransport::query_parameter("access_token"))
        .build(Rotating::new())
        .expect("client");
    let mut unreachable_state = unreachable.state();
    let failed = wait_for(&mut unreachable_state, |s| {
        matches!(
            s,
            State::Reconnecting {
                reason: ReconnectReason::Transport(_),
                ..
            }
        )
    })
    .await;
    assert!(!format!("{failed:?}").contains("tok-"), "{failed:?}");
    unreachable.shutdown().await;
    client.shutdown().await;

    let logs = captured.text();
    assert!(
        logs.contains("realtime connecting"),
        "nothing captured: {logs}"
    );
    assert!(logs.contains("ws://127.0.0.1"), "{logs}");
    assert!(
        !logs.contains("tok-"),
        "the token leaked into the logs:\n{logs}"
    );
    assert!(
        !logs.contains("access_token"),
        "a query was logged:\n{logs}"
    );
}
