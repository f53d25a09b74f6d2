//! The SDK's session as the realtime client's token source: under
//! `RefreshPolicy::Background` the connection moves to each refreshed token
//! without a gap, and the logout closes it.
//!
//! Everything runs in this process on free ports: an embedded mock provider
//! (which, with `auto_login`, also plays the user at the browser) hands out
//! 5-second access tokens, and a small axum WebSocket server checks each
//! connection's token at the provider's userinfo endpoint and echoes what it
//! receives. The session refreshes ahead of expiry (at half the life of
//! such short tokens); the client, built with `build(session.clone())`,
//! opens a second connection with the new token before it closes the old one
//! (make-before-break), so its state stays `Connected` and a message sent
//! every half second is echoed every time. For about 12 s the example prints
//! the session's refreshes, the client's state changes and the server's
//! connections; then it logs out, which closes the client. Tokens stay in
//! memory (`MemoryStore`) and are never printed, only their fingerprints.
//!
//! `cargo run -p sessionkit-realtime --example with_session`

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State as AxumState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sessionkit::{
    AccessToken, AccountRegistry, LoopbackOptions, MemoryStore, RefreshPolicy, SessionEvent,
    SessionManager,
};
use sessionkit_mock_idp::{ClientConfig, MockIdp};
use sessionkit_realtime::{Incoming, RealtimeClient, State};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long to watch: four or five refreshes of a 5 s token.
const WATCH_FOR: Duration = Duration::from_secs(12);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let idp = MockIdp::builder()
        .client(ClientConfig::public("example-chat-app"))
        .auto_login("alice")
        .access_token_ttl(5)
        .start()
        .await?;
    let scratch = std::env::temp_dir().join(format!("sessionkit-realtime-{}", std::process::id()));
    let result = run(&idp, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn run(idp: &MockIdp, scratch: &std::path::Path) -> Result<(), BoxError> {
    let started = Instant::now();
    let at = move || format!("{:4.1} s", started.elapsed().as_secs_f32());

    let sessions = SessionManager::builder(idp.issuer(), "example-chat-app")
        .namespace("sessionkit-example")
        .policy(RefreshPolicy::Background)
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(scratch.join("accounts.json")))
        .build()
        .await?;
    let browser = LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    });
    let session = sessions.login_loopback(browser).await?;
    let (token, _) = session.cached_access_token();
    println!(
        "{}  signed in as {}, token {}",
        at(),
        session.info().name(),
        token.fingerprint()
    );

    let server = start_server(idp.url("/userinfo"), at).await?;

    // The session is the token source: every connection attempt takes its
    // current token, and the client follows its refreshes.
    let (client, mut incoming) = RealtimeClient::builder(&server).build(session.clone())?;

    let mut state = client.state();
    let states = tokio::spawn(async move {
        loop {
            let now = state.borrow_and_update().clone();
            println!("{}  client state: {now:?}", at());
            if matches!(now, State::Closed(_)) || state.changed().await.is_err() {
                break;
            }
        }
    });
    let mut events = session.events();
    let refreshes = tokio::spawn({
        let session = session.clone();
        async move {
            while let Ok(event) = events.recv().await {
                match event {
                    SessionEvent::Refreshed { .. } => {
                        let (token, _) = session.cached_access_token();
                        println!("{}  session refreshed: token {}", at(), token.fingerprint());
                    }
                    SessionEvent::Refreshing => {}
                    other => println!("{}  session: {other:?}", at()),
                }
            }
        }
    });
    let echoes = tokio::spawn(async move {
        let mut echoed = 0_u64;
        while let Some(message) = incoming.recv().await {
            if matches!(message, Incoming::Text(_)) {
                echoed += 1;
            }
        }
        echoed
    });

    // A message every half second while the tokens change under the client.
    let mut sent = 0_u64;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let stop = tokio::time::sleep(WATCH_FOR);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {
                sent += 1;
                client.send(format!(r#"{{"seq":{sent}}}"#)).await?;
            }
        }
    }
    // The last echoes.
    tokio::time::sleep(Duration::from_millis(300)).await;

    // The logout ends the session, and with it the client (closed as
    // `SignedOut`); its incoming channel closes too.
    let report = sessions.logout(session.key()).await;
    println!(
        "{}  logged out: complete {}, refresh token revoked {}",
        at(),
        report.is_complete(),
        report.revoked
    );
    client.closed().await;
    let _ = states.await;
    refreshes.abort();
    let echoed = echoes.await?;
    println!(
        "sent {sent} messages, {echoed} echoed; client tasks left: {}",
        client.running_tasks()
    );
    Ok(())
}

/// The WebSocket server: accepts a connection whose bearer token the
/// provider's userinfo endpoint accepts, echoes text, and says when each
/// connection opens and closes. On a free port; returns its URL.
async fn start_server(
    userinfo: String,
    at: impl Fn() -> String + Copy + Send + Sync + 'static,
) -> Result<String, BoxError> {
    #[derive(Clone)]
    struct Server {
        userinfo: String,
        http: reqwest::Client,
        connections: Arc<AtomicU64>,
        at: Arc<dyn Fn() -> String + Send + Sync>,
    }

    async fn upgrade(
        AxumState(server): AxumState<Server>,
        headers: HeaderMap,
        upgrade: WebSocketUpgrade,
    ) -> Response {
        let Some(token) = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
        else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        // A real server checks the JWT's signature, issuer, audience and
        // expiry against the provider's keys; asking userinfo is shorter.
        let me = server
            .http
            .get(&server.userinfo)
            .bearer_auth(token)
            .send()
            .await;
        if !me.is_ok_and(|r| r.status().is_success()) {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let n = server.connections.fetch_add(1, Ordering::Relaxed) + 1;
        println!(
            "{}    server: connection {n} opened, token {}",
            (server.at)(),
            AccessToken::new(token).fingerprint()
        );
        upgrade.on_upgrade(move |socket| async move {
            echo(socket).await;
            println!("{}    server: connection {n} closed", (server.at)());
        })
    }

    async fn echo(mut socket: WebSocket) {
        while let Some(Ok(message)) = socket.recv().await {
            let echo = match message {
                Message::Text(text) => Message::Text(text),
                Message::Close(_) => return,
                _ => continue,
            };
            if socket.send(echo).await.is_err() {
                return;
            }
        }
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("ws://{}/ws", listener.local_addr()?);
    let app = Router::new().route("/ws", get(upgrade)).with_state(Server {
        userinfo,
        http: reqwest::Client::new(),
        connections: Arc::default(),
        at: Arc::new(at),
    });
    // Ends with the example's runtime.
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}
