//! The WebSocket endpoint: the handshake (a valid access token or a 401;
//! a 429 past the user's connections), then one task per connection that
//! answers the client's frames, forwards its rooms' messages, and closes the
//! socket when the token expires (4001), the session is logged out (4003),
//! the client falls behind (4008), sends frames too fast (4029), joins or
//! sends while the database is unavailable (1013, try again later) or the
//! server stops (1001).
//!
//! Joining a room subscribes to its live messages *before* reading the
//! history, and live messages the history already covered (up to the room's
//! last sequence number at the join) are skipped, so a join sees every
//! message once and in order even while others post. A client whose cursor
//! is past the room's end (the database was reset) is told the real end in
//! `joined` and gets every message after it, live. A live message past the
//! next expected number (a node that missed notifications from the shared
//! database) makes the connection read the gap from the store first; one at
//! or below it (sent already) is dropped.
//!
//! Sends are pipelined: a `send` goes to the store's batching writer and the
//! connection reads the next frame while it waits, up to
//! [`MAX_IN_FLIGHT`] of them; acks go out in the order the sends came,
//! each after its commit. When the connection is closed by the server
//! (logout, rate limit, shutdown) the sends in flight are answered first.
//!
//! DPoP: a token with `cnf.jkt` comes as `Authorization: DPoP` with a proof
//! for this handshake (see `dpop` for the rules); every refusal is a 401,
//! but for a proof the server could not record (its replay cache full of
//! live proofs): 503 with `Retry-After`.
//!
//! Access tokens: an RFC 9068 `typ` (`at+jwt`) is accepted as is; a generic
//! or missing `typ` (providers that do not set one) is accepted unless the
//! token looks like an ID token (`nonce`, `at_hash`).
//!
//! In-band `auth`: a valid token for the same subject moves the connection's
//! deadline to that token's `exp` (answered with `authed`). A token for
//! another subject is refused with an `error` frame (`bad_token`) and the
//! connection goes on under its current token, and so is a token whose DPoP
//! binding (`cnf.jkt`) is not the connection's (the key its handshake proved,
//! or none for a bearer connection); an invalid token closes the
//! connection with 4001, a logged-out one with 4003. When the provider cannot
//! be reached to check it, an `error` frame (`bad_token`) says so and the
//! connection goes on under its current token.
//!
//! (Over 500 lines: the handshake and the connection task share the token
//! checks and the close paths; splitting them would scatter one state machine.)

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

use super::claims::{self, AccessToken};
use super::db::{NewMessage, StoreError, Stored};
use super::dpop::{self, Scheme};
use super::hub::{Kick, OUTBOUND_BUFFER, Outbound, Refused, Registration, Subscription};
use super::jwks::VerifyError;
use super::serve::ConnectionSlot;
use super::{App, unix_millis, unix_now};
use crate::protocol::{
    BadFrame, CLOSE_RATE_LIMITED, CLOSE_SIGNED_OUT, CLOSE_TOKEN_EXPIRED, CLOSE_TOO_SLOW,
    CLOSE_TRY_AGAIN_LATER, ClientFrame, MAX_ID_BYTES, ServerFrame, check_text, parse_client_frame,
    valid_room,
};

/// The largest WebSocket frame and message the server reads.
pub(crate) const MAX_FRAME_BYTES: usize = 64 * 1024;
/// How many stored messages a join reads at a time.
const REPLAY_PAGE: usize = 500;
/// How many sends one connection may have waiting for their commit; past
/// it, the connection reads no more frames until one is answered.
pub(crate) const MAX_IN_FLIGHT: usize = 64;
/// The most rooms one connection may join.
const MAX_ROOMS: usize = 64;
/// How long a write to a client may take before it is given up as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the closing handshake may take.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);
/// The JOSE `typ` values an access token may carry (RFC 9068, or plain JWT;
/// a missing `typ` counts as plain JWT).
const ACCESS_TYPS: &[&str] = &["at+jwt", "jwt"];
/// Close code for a server going away (RFC 6455).
const CLOSE_GOING_AWAY: u16 = 1001;
/// How long a client asked to come back after a join or a send the
/// database could not serve waits (its own backoff grows from there).
const STORAGE_RETRY_AFTER_MS: u64 = 500;

/// Why a token was not accepted.
#[derive(Debug)]
pub(crate) enum AuthError {
    /// Bad signature, wrong claims, malformed.
    Invalid(String),
    /// Its session (or subject) was logged out by the provider.
    Revoked,
    /// The provider's keys could not be fetched.
    Unavailable(String),
}

/// Verifies an access token: signature, claims, and not logged out.
pub(crate) async fn authenticate(app: &App, token: &str) -> Result<AccessToken, AuthError> {
    let verified = app
        .verifier
        .verify(token, ACCESS_TYPS)
        .await
        .map_err(|e| match e {
            VerifyError::Invalid(why) => AuthError::Invalid(why),
            VerifyError::Unavailable(why) => AuthError::Unavailable(why),
        })?;
    let token = claims::check_access(
        &verified.claims,
        verified.typ.as_deref(),
        &app.config.issuer,
        &app.config.audience,
        unix_now(),
    )
    .map_err(AuthError::Invalid)?;
    if app.revocations.is_revoked(&token) {
        return Err(AuthError::Revoked);
    }
    Ok(token)
}

/// 401 with the challenge of the scheme the token came with (RFC 6750
/// `Bearer`, or RFC 9449 `DPoP`); the reason stays in the log.
fn unauthorized(scheme: Option<Scheme>) -> Response {
    let body = serde_json::json!({
        "error": "invalid_token",
        "error_description": "the access token is missing or invalid",
    });
    let mut response = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    let challenge = match scheme {
        Some(Scheme::Dpop) => HeaderValue::from_str(&sessionkit_mock_idp::dpop::challenge(
            "invalid_token",
            "the access token is missing or invalid",
        ))
        .unwrap_or_else(|_| HeaderValue::from_static(r#"DPoP error="invalid_token""#)),
        _ => HeaderValue::from_static(r#"Bearer error="invalid_token""#),
    };
    headers.insert(header::WWW_AUTHENTICATE, challenge);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 429: the user has as many connections open as allowed.
fn too_many_connections() -> Response {
    let body = serde_json::json!({
        "error": "too_many_connections",
        "error_description": "this user has as many connections open as allowed; close one",
    });
    let mut response = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
    response
}

fn unavailable() -> Response {
    let body = serde_json::json!({
        "error": "temporarily_unavailable",
        "error_description": "the identity provider cannot be reached; try again",
    });
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

/// `GET /ws`: checks the token (and, for DPoP, the proof and the
/// binding), then upgrades.
pub(crate) async fn handler(
    State(app): State<Arc<App>>,
    slot: Option<Extension<ConnectionSlot>>,
    uri: Uri,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    app.dpop.counters.attempt();
    let response = handshake(app.clone(), slot, &uri, &headers, upgrade).await;
    if response.status() == StatusCode::UNAUTHORIZED {
        app.dpop.counters.unauthorized();
    }
    response
}

async fn handshake(
    app: Arc<App>,
    slot: Option<Extension<ConnectionSlot>>,
    uri: &Uri,
    headers: &HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Some((scheme, token)) = dpop::authorization(headers) else {
        tracing::info!("WebSocket refused: no bearer or DPoP token");
        return unauthorized(None);
    };
    let now = unix_now();
    // Every answer to a DPoP handshake carries the nonce, when one is required.
    let nonce = (scheme == Scheme::Dpop)
        .then(|| app.dpop.nonce(now))
        .flatten();
    let identity = match authenticate(&app, token).await {
        Ok(identity) => identity,
        Err(AuthError::Unavailable(why)) => {
            tracing::warn!(%why, "WebSocket refused: cannot check the token now");
            return unavailable();
        }
        Err(AuthError::Invalid(why)) => {
            tracing::info!(%why, token_len = token.len(), "WebSocket refused: invalid token");
            return unauthorized(Some(scheme)).with_dpop_nonce(nonce);
        }
        Err(AuthError::Revoked) => {
            tracing::info!(
                token_len = token.len(),
                "WebSocket refused: session logged out"
            );
            return unauthorized(Some(scheme)).with_dpop_nonce(nonce);
        }
    };
    let bound = identity.jkt.as_deref();
    if let Err(refusal) = app
        .dpop
        .check(headers, uri.path(), scheme, token, bound, now)
    {
        tracing::info!(user = %identity.user, why = refusal.kind(), "WebSocket refused: DPoP");
        return dpop::refused(&refusal, nonce);
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    if app.cancel.is_cancelled() {
        return unavailable();
    }
    // Registered before the upgrade, so two handshakes at once cannot both
    // take the user's last place.
    let registered = app.hub.register(
        &identity.sub,
        identity.sid.clone(),
        identity.iat,
        knows_other_nodes(headers),
    );
    let Ok((registration, kicks)) = registered else {
        tracing::info!(user = %identity.user, "WebSocket refused: too many connections for this user");
        return too_many_connections();
    };
    app.dpop.counters.accepted(scheme);
    // Counted by the tracker from now, so shutdown waits for the connection.
    let tracked = app.tracker.token();
    upgrade
        .max_message_size(MAX_FRAME_BYTES)
        .max_frame_size(MAX_FRAME_BYTES)
        .on_upgrade(move |socket| async move {
            // The socket keeps its place in the server's connection count.
            let _slot = slot;
            let _tracked = tracked;
            run(app, identity, registration, kicks, socket).await;
        })
        .with_dpop_nonce(nonce)
}

/// Whether the client says it has other endpoints to go to
/// ([`sessionkit_realtime::ENDPOINTS_HEADER`] of 2 or more): only such a
/// client is asked to move when the nodes rebalance.
fn knows_other_nodes(headers: &HeaderMap) -> bool {
    headers
        .get(sessionkit_realtime::ENDPOINTS_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u32>().ok())
        .is_some_and(|n| n >= 2)
}

/// A response with the server's `DPoP-Nonce`, when it has one to give.
trait WithNonce {
    fn with_dpop_nonce(self, nonce: Option<String>) -> Self;
}

impl WithNonce for Response {
    fn with_dpop_nonce(mut self, nonce: Option<String>) -> Self {
        dpop::with_nonce(&mut self, nonce);
        self
    }
}

/// How a connection ends.
#[derive(Debug)]
enum End {
    /// Close with this code and reason.
    Close(u16, &'static str),
    /// Close with 4029: the user is over the rate limit for this long (ms).
    RateLimited(u64),
    /// Close with 1013: a join could not read the room, or a send could not
    /// be stored (the database is unavailable); come back after this long
    /// (ms), join again and re-send. An error frame would leave the client
    /// connected and never joined, or its message behind later ones.
    TryAgainLater(u64),
    /// The peer is gone (closed, reset, or too slow to write to).
    Gone,
}

/// A joined room: which join it is, what was sent of it, and the
/// subscription to its live messages.
#[derive(Debug)]
struct Joined {
    generation: u64,
    /// Every message up to this sequence number was sent (with the history,
    /// or live); the next live one must be the one after.
    sent_through: u64,
    _subscription: Subscription,
}

/// A send waiting for its commit: its room, its id, and the outcome.
type InFlight = Pin<Box<dyn Future<Output = (String, String, Result<Stored, StoreError>)> + Send>>;

/// When a token that expires at `exp` (Unix seconds) runs out, on the runtime's clock.
fn deadline_for(exp: i64) -> Instant {
    let exp_ms = u64::try_from(exp).unwrap_or(0).saturating_mul(1000);
    Instant::now() + Duration::from_millis(exp_ms.saturating_sub(unix_millis()))
}

async fn send(socket: &mut WebSocket, frame: &ServerFrame) -> Result<(), End> {
    let text = serde_json::to_string(frame).map_err(|_| End::Gone)?;
    match timeout(SEND_TIMEOUT, socket.send(Message::Text(text.into()))).await {
        Ok(Ok(())) => Ok(()),
        _ => Err(End::Gone),
    }
}

/// A join that cannot read its room: while the database is unavailable,
/// the client is asked to come back ([`End::TryAgainLater`]); otherwise an
/// error frame says so.
async fn unreadable(socket: &mut WebSocket, room: &str, e: &StoreError) -> Result<(), End> {
    if e.is_transient() {
        tracing::warn!(error = %e, %room, "cannot read the room: the database is unavailable; asking the client to come back");
        return Err(End::TryAgainLater(STORAGE_RETRY_AFTER_MS));
    }
    tracing::error!(error = %e, %room, "cannot read the room");
    send_error(socket, "storage", "cannot read the room now", None).await
}

async fn send_error(
    socket: &mut WebSocket,
    code: &str,
    message: &str,
    id: Option<String>,
) -> Result<(), End> {
    let frame = ServerFrame::Error {
        code: code.to_owned(),
        message: message.to_owned(),
        id,
    };
    send(socket, &frame).await
}

/// Sends a close frame and waits (briefly) for the client's, so the frame is
/// not lost to a connection reset.
async fn close(mut socket: WebSocket, code: u16, reason: impl Into<Utf8Bytes>) {
    let frame = CloseFrame {
        code,
        reason: reason.into(),
    };
    if !matches!(
        timeout(CLOSE_TIMEOUT, socket.send(Message::Close(Some(frame)))).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let _ = timeout(CLOSE_TIMEOUT, async {
        while let Some(Ok(message)) = socket.recv().await {
            if matches!(message, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}

struct Connection {
    app: Arc<App>,
    identity: AccessToken,
    deadline: Instant,
    registration: Registration,
    rooms: HashMap<String, Joined>,
    next_generation: u64,
    out_tx: mpsc::Sender<Outbound>,
    /// Sends waiting for their commit, in the order they came.
    in_flight: FuturesOrdered<InFlight>,
}

async fn run(
    app: Arc<App>,
    identity: AccessToken,
    registration: Registration,
    mut kicks: mpsc::Receiver<Kick>,
    mut socket: WebSocket,
) {
    // A logout that came between the handshake and the registration.
    if app.revocations.is_revoked(&identity) {
        close(socket, CLOSE_SIGNED_OUT, "signed out").await;
        return;
    }
    tracing::info!(user = %identity.user, sid = identity.sid.as_deref(), "connected");
    let (out_tx, mut out_rx) = mpsc::channel(OUTBOUND_BUFFER);
    let mut conn = Connection {
        deadline: deadline_for(identity.exp),
        app,
        identity,
        registration,
        rooms: HashMap::new(),
        next_generation: 0,
        out_tx,
        in_flight: FuturesOrdered::new(),
    };
    let hello = ServerFrame::Hello {
        user: conn.identity.user.clone(),
        expires_at: u64::try_from(conn.identity.exp).unwrap_or(0),
    };
    let mut end = send(&mut socket, &hello).await.err();
    // Liveness: a ping every half idle timeout; a peer silent for the whole
    // timeout (a half-open TCP connection, a frozen client) is gone.
    let idle = conn.app.config.idle_timeout.max(Duration::from_millis(10));
    let mut last_heard = Instant::now();
    let mut pings = tokio::time::interval_at(Instant::now() + idle / 2, idle / 2);
    pings.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while end.is_none() {
        // Unbiased: a busy room must not starve the client's own frames.
        let step = tokio::select! {
            () = conn.app.cancel.cancelled() => Err(End::Close(CLOSE_GOING_AWAY, "server shutting down")),
            Some(kick) = kicks.recv() => {
                let Kick { code, reason } = kick;
                Err(End::Close(code, reason))
            }
            () = tokio::time::sleep_until(conn.deadline) => Err(End::Close(CLOSE_TOKEN_EXPIRED, "token expired")),
            Some(out) = out_rx.recv() => conn.outbound(&mut socket, out).await,
            Some((room, id, outcome)) = conn.in_flight.next(), if !conn.in_flight.is_empty() => {
                conn.answer(&mut socket, room, id, outcome).await
            }
            _ = pings.tick() => {
                if last_heard.elapsed() >= idle {
                    tracing::info!(user = %conn.identity.user, "no frame within the idle timeout");
                    Err(End::Gone)
                } else {
                    socket.send(Message::Ping(Default::default())).await.map_err(|_| End::Gone)
                }
            }
            incoming = socket.recv(), if conn.in_flight.len() < MAX_IN_FLIGHT => match incoming.inspect(|_| last_heard = Instant::now()) {
                Some(Ok(Message::Text(text))) => match conn.take_frame() {
                    Ok(()) => conn.frame(&mut socket, text.as_str()).await,
                    Err(end) => Err(end),
                },
                Some(Ok(Message::Binary(_))) => match conn.take_frame() {
                    Ok(()) => send_error(&mut socket, "bad_frame", "frames are JSON text", None).await,
                    Err(end) => Err(end),
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => Ok(()),
                // The library answers a close frame; an error means the peer is gone.
                Some(Ok(Message::Close(_)) | Err(_)) | None => Err(End::Gone),
            },
        };
        end = step.err();
    }
    tracing::info!(user = %conn.identity.user, ?end, "disconnected");
    if !matches!(end, Some(End::Gone)) {
        // Closed by the server: answer the sends already in flight first.
        let _ = timeout(CLOSE_TIMEOUT + super::db::RETRY_FOR, async {
            while let Some((room, id, outcome)) = conn.in_flight.next().await {
                if conn.answer(&mut socket, room, id, outcome).await.is_err() {
                    break;
                }
            }
        })
        .await;
    }
    // Unregistered before the closing handshake: a closing connection is
    // not counted, and no longer kicked.
    drop(conn);
    match end {
        Some(End::Close(code, reason)) => close(socket, code, reason).await,
        Some(End::RateLimited(ms)) => {
            let reason = format!(r#"{{"retry_after_ms":{ms}}}"#);
            close(socket, CLOSE_RATE_LIMITED, reason).await;
        }
        Some(End::TryAgainLater(ms)) => {
            let reason = format!(r#"{{"retry_after_ms":{ms}}}"#);
            close(socket, CLOSE_TRY_AGAIN_LATER, reason).await;
        }
        Some(End::Gone) | None => {}
    }
}

impl Connection {
    /// Sends a live message, unless it is from a room left (or joined
    /// again) since, or was sent already (with the history, or live). When
    /// messages before it were not sent (this node missed them), they are
    /// read from the store and sent first; if they cannot be read, the
    /// client is asked to reconnect and resume (4008) rather than see a gap.
    async fn outbound(&mut self, socket: &mut WebSocket, out: Outbound) -> Result<(), End> {
        let (generation, message) = out;
        let Some(joined) = self.rooms.get_mut(&message.room) else {
            return Ok(());
        };
        if joined.generation != generation || message.seq <= joined.sent_through {
            return Ok(());
        }
        while joined.sent_through + 1 < message.seq {
            let missed = self
                .app
                .store
                .page(
                    &message.room,
                    joined.sent_through,
                    message.seq - 1,
                    REPLAY_PAGE,
                )
                .await;
            let missed = match missed {
                Ok(missed) if !missed.is_empty() => missed,
                other => {
                    if let Err(e) = other {
                        tracing::warn!(error = %e, room = %message.room, "cannot read missed messages");
                    }
                    return Err(End::Close(
                        CLOSE_TOO_SLOW,
                        "missed messages; reconnect and resume",
                    ));
                }
            };
            for m in missed {
                joined.sent_through = m.seq;
                send(socket, &ServerFrame::Message(m)).await?;
            }
        }
        joined.sent_through = message.seq;
        send(socket, &ServerFrame::Message((*message).clone())).await
    }

    /// Answers a send whose commit is done: an ack, or an error frame.
    async fn answer(
        &mut self,
        socket: &mut WebSocket,
        room: String,
        id: String,
        outcome: Result<Stored, StoreError>,
    ) -> Result<(), End> {
        match outcome {
            Ok(Stored::New(message)) => {
                let ack = ServerFrame::Ack {
                    room,
                    id,
                    seq: message.seq,
                };
                send(socket, &ack).await
            }
            Ok(Stored::Existing { room: stored, seq }) if stored == room => {
                send(socket, &ServerFrame::Ack { room, id, seq }).await
            }
            Ok(Stored::Existing { .. }) => {
                let why = "this id was used for a message in another room";
                send_error(socket, "bad_frame", why, Some(id)).await
            }
            Ok(Stored::TooManyRooms) => {
                let why = "this user created as many rooms as allowed";
                send_error(socket, "too_many_rooms", why, Some(id)).await
            }
            Err(e) if e.is_transient() => {
                // Not an error frame: the connection's later messages would
                // be stored before this one, which the client would only
                // send again after some later reconnect. Closed, the client
                // comes back and re-sends what was not acknowledged, in order.
                tracing::warn!(error = %e, %room, "cannot store a message: the database is unavailable; asking the client to come back");
                Err(End::TryAgainLater(STORAGE_RETRY_AFTER_MS))
            }
            Err(e) => {
                tracing::error!(error = %e, %room, "cannot store a message");
                send_error(socket, "storage", "the message was not stored", Some(id)).await
            }
        }
    }

    /// Takes a frame from the user's budget; past it, the close (4029) with
    /// the time after which the budget is whole again.
    fn take_frame(&self) -> Result<(), End> {
        match self.registration.take_frame() {
            Ok(()) => Ok(()),
            Err(refused) => {
                let wait = match refused {
                    Refused::RateLimited(wait) => wait,
                    _ => Duration::from_secs(1),
                };
                tracing::info!(user = %self.identity.user, ?wait, "frames over the rate limit");
                let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
                Err(End::RateLimited(ms))
            }
        }
    }

    async fn frame(&mut self, socket: &mut WebSocket, text: &str) -> Result<(), End> {
        let frame = match parse_client_frame(text) {
            Ok(frame) => frame,
            Err(BadFrame::NotJson) => {
                return send_error(socket, "bad_frame", "not JSON", None).await;
            }
            Err(BadFrame::Malformed { id }) => {
                return send_error(socket, "bad_frame", "unknown or malformed frame", id).await;
            }
        };
        match frame {
            ClientFrame::Join { room, after } => self.join(socket, room, after).await,
            ClientFrame::Leave { room } => {
                if !valid_room(&room) {
                    return send_error(socket, "bad_room", "invalid room name", None).await;
                }
                self.rooms.remove(&room);
                Ok(())
            }
            ClientFrame::Send { room, id, text } => self.post(socket, room, id, text).await,
            ClientFrame::Auth { token } => self.reauth(socket, &token).await,
        }
    }

    async fn join(&mut self, socket: &mut WebSocket, room: String, after: u64) -> Result<(), End> {
        if !valid_room(&room) {
            return send_error(socket, "bad_room", "invalid room name", None).await;
        }
        if self.rooms.remove(&room).is_none() && self.rooms.len() >= MAX_ROOMS {
            let why = "too many rooms joined on this connection";
            return send_error(socket, "too_many_rooms", why, None).await;
        }
        // Subscribe first: whatever is stored after `last` arrives live, and
        // only what the history covered (up to `last`) is skipped. A cursor
        // past `last` (the database was reset) skips nothing more: those
        // messages are new, whatever their numbers.
        self.next_generation += 1;
        let generation = self.next_generation;
        let subscription = match self
            .registration
            .subscribe(&room, generation, self.out_tx.clone())
        {
            Ok(subscription) => subscription,
            Err(_) => {
                let why = "too many rooms joined by this user";
                return send_error(socket, "too_many_rooms", why, None).await;
            }
        };
        let store = &self.app.store;
        let last = match store.last_seq(&room).await {
            Ok(last) => last,
            Err(e) => return unreadable(socket, &room, &e).await,
        };
        let mut cursor = after;
        while cursor < last {
            let page = match store.page(&room, cursor, last, REPLAY_PAGE).await {
                Ok(page) => page,
                Err(e) => return unreadable(socket, &room, &e).await,
            };
            let Some(tail) = page.last() else { break };
            cursor = tail.seq;
            for message in page {
                send(socket, &ServerFrame::Message(message)).await?;
            }
        }
        send(
            socket,
            &ServerFrame::Joined {
                room: room.clone(),
                last_seq: last,
            },
        )
        .await?;
        self.rooms.insert(
            room,
            Joined {
                generation,
                sent_through: last,
                _subscription: subscription,
            },
        );
        Ok(())
    }

    async fn post(
        &mut self,
        socket: &mut WebSocket,
        room: String,
        id: String,
        text: String,
    ) -> Result<(), End> {
        if !valid_room(&room) {
            return send_error(socket, "bad_room", "invalid room name", Some(id)).await;
        }
        if id.is_empty() {
            return send_error(socket, "bad_frame", "the message id is empty", None).await;
        }
        if id.len() > MAX_ID_BYTES {
            return send_error(socket, "too_long", "the message id is too long", None).await;
        }
        if let Err(refused) = check_text(&text) {
            return send_error(socket, refused.code(), &refused.to_string(), Some(id)).await;
        }
        let message = NewMessage {
            room: room.clone(),
            sender_sub: self.identity.sub.clone(),
            user: self.identity.user.clone(),
            client_id: id.clone(),
            text,
            sent_at: unix_millis(),
        };
        // Answered (in order) by the connection loop once its batch committed.
        let stored = self.app.store.insert(message).await;
        self.in_flight
            .push_back(Box::pin(async move { (room, id, stored.await) }));
        Ok(())
    }

    async fn reauth(&mut self, socket: &mut WebSocket, token: &str) -> Result<(), End> {
        match authenticate(&self.app, token).await {
            // The connection proved its key at the handshake (or had no
            // binding): a token in-band must be bound to that same key.
            Ok(fresh) if fresh.sub == self.identity.sub && fresh.jkt != self.identity.jkt => {
                tracing::info!(user = %self.identity.user, "in-band auth with another DPoP binding refused");
                let why = "the token's DPoP binding is not this connection's";
                send_error(socket, "bad_token", why, None).await
            }
            Ok(fresh) if fresh.sub == self.identity.sub => {
                self.registration.set_token(fresh.sid.clone(), fresh.iat);
                // A logout that landed between the check and the line above
                // was aimed at the old session and missed this connection.
                if self.app.revocations.is_revoked(&fresh) {
                    return Err(End::Close(CLOSE_SIGNED_OUT, "signed out"));
                }
                self.deadline = deadline_for(fresh.exp);
                let expires_at = u64::try_from(fresh.exp).unwrap_or(0);
                self.identity = fresh;
                send(socket, &ServerFrame::Authed { expires_at }).await
            }
            Ok(_) => {
                tracing::info!(user = %self.identity.user, "in-band auth for another subject refused");
                let why = "the token is for another user";
                send_error(socket, "bad_token", why, None).await
            }
            Err(AuthError::Unavailable(why)) => {
                tracing::warn!(%why, "in-band auth: cannot check the token now");
                let why = "the token cannot be checked now; try again";
                send_error(socket, "bad_token", why, None).await
            }
            Err(AuthError::Revoked) => Err(End::Close(CLOSE_SIGNED_OUT, "signed out")),
            Err(AuthError::Invalid(why)) => {
                tracing::info!(%why, token_len = token.len(), "in-band auth: invalid token");
                Err(End::Close(CLOSE_TOKEN_EXPIRED, "invalid token"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_carries_the_bearer_challenge() {
        let response = unauthorized(None);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            r#"Bearer error="invalid_token""#
        );
        let dpop = unauthorized(Some(Scheme::Dpop));
        assert!(
            dpop.headers()[header::WWW_AUTHENTICATE]
                .to_str()
                .expect("ascii")
                .starts_with(r#"DPoP error="invalid_token""#)
        );
    }

    #[test]
    fn deadlines_follow_the_expiry() {
        let now = unix_now();
        let start = Instant::now();
        let in_ten = deadline_for(now + 10);
        assert!(
            in_ten > start + Duration::from_secs(8) && in_ten <= start + Duration::from_secs(10)
        );
        assert!(deadline_for(now - 10) <= Instant::now());
    }
}
