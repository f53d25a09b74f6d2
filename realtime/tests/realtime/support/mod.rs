//! A test WebSocket server on 127.0.0.1:0 that checks bearer tokens and can
//! be told to close connections with a code, drop them, or go away and come
//! back on the same port; and token sources whose refreshes are counted.

pub(crate) mod scripted;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State as AxumState};
use axum::http::{
    HeaderMap, StatusCode,
    header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL},
};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sessionkit_realtime::{BearerToken, BoxFuture, State, TimedToken, TokenError, TokenSource};
use tokio::sync::{broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the server tells its open connections.
#[derive(Debug, Clone)]
pub(crate) enum Command {
    Close(u16, String),
    Drop,
    /// Stop reading and answering (half-open), without closing.
    Freeze,
    /// Send this text on every open connection (one account, many
    /// connections: the same message on each).
    Broadcast(String),
}

/// Where the server reads the token from.
#[derive(Debug, Clone, Default)]
pub(crate) enum TokenIn {
    /// `Authorization: Bearer TOKEN`.
    #[default]
    Header,
    /// `Sec-WebSocket-Protocol: PROTOCOL, TOKEN`; the server chooses `PROTOCOL`.
    Subprotocol(String),
    /// Like `Subprotocol`, but (wrongly) chooses the token as the protocol.
    SubprotocolChoosingToken(String),
    /// The query parameter of this name.
    Query(String),
    /// `Authorization: DPoP TOKEN` with one `DPoP` header (not verified:
    /// `tests/realtime/dpop.rs` checks proofs).
    Dpop,
}

#[derive(Default)]
pub(crate) struct Shared {
    allowed: Mutex<HashSet<String>>,
    token_in: Mutex<TokenIn>,
    /// Every handshake's query string (`None` without one), in order.
    pub(crate) queries: Mutex<Vec<Option<String>>>,
    /// Tokens of accepted connections, in order.
    pub(crate) accepted: Mutex<Vec<String>>,
    /// Handshakes refused with 401.
    pub(crate) refused: AtomicUsize,
    /// Text messages received, in order.
    pub(crate) received: Mutex<Vec<String>>,
    /// Connections open now.
    pub(crate) open: AtomicUsize,
    /// Received text is not echoed back.
    quiet: AtomicBool,
}

#[derive(Clone)]
struct Run {
    shared: Arc<Shared>,
    commands: broadcast::Sender<Command>,
    cancel: CancellationToken,
}

pub(crate) struct WsServer {
    pub(crate) addr: SocketAddr,
    pub(crate) shared: Arc<Shared>,
    run: Option<(Run, JoinHandle<()>)>,
}

impl WsServer {
    pub(crate) async fn start(allowed: &[&str]) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shared = Arc::new(Shared::default());
        let mut server = Self {
            addr,
            shared,
            run: None,
        };
        server.allow(allowed);
        server.serve(listener);
        server
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub(crate) fn allow(&self, tokens: &[&str]) {
        lock(&self.shared.allowed).extend(tokens.iter().map(|t| (*t).to_owned()));
    }

    /// Reads the token from `token_in` from now on (the header by default).
    pub(crate) fn expect_token_in(&self, token_in: TokenIn) {
        *lock(&self.shared.token_in) = token_in;
    }

    /// Stops echoing received text (an in-band `auth` message, say).
    pub(crate) fn stop_echoing(&self) {
        self.shared.quiet.store(true, Ordering::SeqCst);
    }

    pub(crate) fn queries(&self) -> Vec<Option<String>> {
        lock(&self.shared.queries).clone()
    }

    pub(crate) fn accepted(&self) -> Vec<String> {
        lock(&self.shared.accepted).clone()
    }

    pub(crate) fn received(&self) -> Vec<String> {
        lock(&self.shared.received).clone()
    }

    /// Waits (up to 5 s) until `n` messages have arrived.
    pub(crate) async fn received_at_least(&self, n: usize) -> Vec<String> {
        for _ in 0..500 {
            if self.received().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.received()
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let run = Run {
            shared: self.shared.clone(),
            commands: broadcast::channel(16).0,
            cancel: CancellationToken::new(),
        };
        let app = Router::new()
            .route("/ws", get(upgrade))
            .with_state(run.clone());
        let shutdown = run.cancel.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown)
                .await;
        });
        self.run = Some((run, task));
    }

    /// Tells every open connection to do `command`.
    pub(crate) fn command(&self, command: Command) {
        if let Some((run, _)) = &self.run {
            let _ = run.commands.send(command);
        }
    }

    /// Drops every connection and the listener.
    pub(crate) async fn stop(&mut self) {
        if let Some((run, task)) = self.run.take() {
            run.cancel.cancel();
            task.await.expect("server task");
        }
    }

    /// Listens again on the same port.
    pub(crate) async fn restart(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("rebind the same port");
        self.serve(listener);
    }
}

impl Drop for WsServer {
    fn drop(&mut self) {
        if let Some((run, _)) = &self.run {
            run.cancel.cancel();
        }
    }
}

async fn upgrade(
    AxumState(run): AxumState<Run>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    mut upgrade: WebSocketUpgrade,
) -> Response {
    lock(&run.shared.queries).push(query.clone());
    let token_in = lock(&run.shared.token_in).clone();
    let token = match &token_in {
        TokenIn::Header => headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned),
        TokenIn::Subprotocol(protocol) | TokenIn::SubprotocolChoosingToken(protocol) => {
            let values: Vec<String> = headers
                .get_all(SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .map(|v| v.trim().to_owned())
                .collect();
            let token = match values.as_slice() {
                [first, token] if first == protocol => Some(token.clone()),
                _ => None,
            };
            let chosen = match &token_in {
                TokenIn::SubprotocolChoosingToken(_) => token.clone().unwrap_or_default(),
                _ => protocol.clone(),
            };
            upgrade = upgrade.protocols([chosen]);
            token
        }
        TokenIn::Dpop => headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("DPoP "))
            .filter(|_| headers.get_all("dpop").iter().count() == 1)
            .map(str::to_owned),
        TokenIn::Query(name) => query.as_deref().and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        }),
    };
    let allowed = token
        .as_ref()
        .is_some_and(|t| lock(&run.shared.allowed).contains(t));
    let Some(token) = token.filter(|_| allowed) else {
        run.shared.refused.fetch_add(1, Ordering::SeqCst);
        return StatusCode::UNAUTHORIZED.into_response();
    };
    lock(&run.shared.accepted).push(token);
    let commands = run.commands.subscribe();
    upgrade.on_upgrade(move |socket| connection(run, socket, commands))
}

async fn connection(run: Run, mut socket: WebSocket, mut commands: broadcast::Receiver<Command>) {
    run.shared.open.fetch_add(1, Ordering::SeqCst);
    loop {
        tokio::select! {
            () = run.cancel.cancelled() => break,
            command = commands.recv() => match command {
                Ok(Command::Close(code, reason)) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
                Ok(Command::Drop) | Err(broadcast::error::RecvError::Closed) => break,
                Ok(Command::Freeze) => {
                    run.cancel.cancelled().await;
                    break;
                }
                Ok(Command::Broadcast(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
            },
            message = socket.recv() => match message {
                Some(Ok(Message::Text(text))) => {
                    lock(&run.shared.received).push(text.to_string());
                    if run.shared.quiet.load(Ordering::SeqCst) {
                        continue;
                    }
                    if socket.send(Message::Text(text)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    run.shared.open.fetch_sub(1, Ordering::SeqCst);
}

/// Tokens `tok-0`, `tok-1`, …: a refresh moves to the next one (or, once
/// `revoke` was called, signs out); refreshes are counted. With a lifetime,
/// each token expires that long after it is first handed out and the source
/// refreshes it by itself at half its life (when `token` is asked then),
/// as the SDK's session does.
#[derive(Default)]
pub(crate) struct Rotating {
    current: AtomicUsize,
    refreshes: AtomicUsize,
    revoked: AtomicBool,
    unavailable: AtomicBool,
    cancel: CancellationToken,
    /// Each token's lifetime from when it is handed out (`None`: unknown).
    lifetime: Mutex<Option<Duration>>,
    /// The current token's expiry and refresh time, once handed out.
    timing: Mutex<Option<(SystemTime, SystemTime)>>,
    changed: Mutex<Option<tokio::sync::watch::Sender<u64>>>,
}

impl Rotating {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Every `token` call fails transiently (no network).
    pub(crate) fn unavailable() -> Arc<Self> {
        let source = Self::default();
        source.unavailable.store(true, Ordering::SeqCst);
        Arc::new(source)
    }

    /// Tokens that expire `lifetime` after they are handed out.
    pub(crate) fn expiring(lifetime: Duration) -> Arc<Self> {
        let source = Self::default();
        *lock(&source.lifetime) = Some(lifetime);
        Arc::new(source)
    }

    /// Changes the lifetime of the tokens handed out from now on (a token
    /// already handed out keeps its timing).
    pub(crate) fn set_lifetime(&self, lifetime: Option<Duration>) {
        *lock(&self.lifetime) = lifetime;
    }

    pub(crate) fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }

    /// Moves to the next token without a refresh (it expired meanwhile).
    pub(crate) fn rotate(&self) {
        self.current.fetch_add(1, Ordering::SeqCst);
        *lock(&self.timing) = None;
        if let Some(changed) = lock(&self.changed).as_ref() {
            changed.send_modify(|v| *v += 1);
        }
    }

    /// The provider revoked the session: the next refresh signs out.
    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::SeqCst);
    }

    /// The user logs out.
    pub(crate) fn logout(&self) {
        self.cancel.cancel();
    }

    fn now(&self) -> Result<BearerToken, TokenError> {
        if self.cancel.is_cancelled() {
            return Err(TokenError::SignedOut);
        }
        if self.unavailable.load(Ordering::SeqCst) {
            return Err(TokenError::Unavailable("offline".to_owned()));
        }
        Ok(BearerToken::new(format!(
            "tok-{}",
            self.current.load(Ordering::SeqCst)
        )))
    }

    fn refresh(&self) -> Result<(), TokenError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        if self.revoked.load(Ordering::SeqCst) {
            self.cancel.cancel();
            return Err(TokenError::SignedOut);
        }
        self.rotate();
        Ok(())
    }

    /// The current token with its timing (set when first handed out).
    fn timed(&self) -> Result<TimedToken, TokenError> {
        let token = self.now()?;
        let mut timing = lock(&self.timing);
        if timing.is_none() {
            let now = SystemTime::now();
            *timing = lock(&self.lifetime).map(|l| (now + l, now + l / 2));
        }
        Ok(match *timing {
            Some((expires, due)) => TimedToken::new(token).expires_at(expires).refresh_at(due),
            None => TimedToken::new(token),
        })
    }
}

impl TokenSource for Rotating {
    fn token(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
        Box::pin(async move {
            let due = lock(&self.timing).map(|(_, due)| due);
            if due.is_some_and(|due| SystemTime::now() >= due) {
                self.refresh()?;
            }
            self.timed()
        })
    }

    fn rejected<'a>(
        &'a self,
        rejected: &'a BearerToken,
    ) -> BoxFuture<'a, Result<TimedToken, TokenError>> {
        Box::pin(async move {
            if self.now()? == *rejected {
                self.refresh()?;
            }
            self.timed()
        })
    }

    fn changed(&self) -> BoxFuture<'_, ()> {
        let mut rx = lock(&self.changed)
            .get_or_insert_with(|| tokio::sync::watch::channel(0).0)
            .subscribe();
        Box::pin(async move {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }

    fn cancellation(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Waits (up to 10 s) for a state that matches.
pub(crate) async fn wait_for(
    state: &mut watch::Receiver<State>,
    matches: impl FnMut(&State) -> bool,
) -> State {
    wait_within(Duration::from_secs(10), state, matches).await
}

/// Waits (up to `limit`) for a state that matches.
pub(crate) async fn wait_within(
    limit: Duration,
    state: &mut watch::Receiver<State>,
    matches: impl FnMut(&State) -> bool,
) -> State {
    tokio::time::timeout(limit, state.wait_for(matches))
        .await
        .expect("timed out waiting for a state")
        .expect("state channel closed")
        .clone()
}

pub(crate) fn is_connected(state: &State) -> bool {
    matches!(state, State::Connected { .. })
}
