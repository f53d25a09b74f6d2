//! Test support: a provider and a server on free ports, real tokens from the
//! provider's device flow, signed tokens with chosen claims, and a raw
//! WebSocket client that speaks the protocol frames.

#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use sessionkit_examples::protocol::{ChatMessage, ClientFrame, ServerFrame};
use sessionkit_examples::server::{ChatServer, ServerConfig};
use sessionkit_mock_idp::{Alg, MockIdp};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Response, header};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single step may take.
pub const STEP: Duration = Duration::from_secs(10);

/// Awaits `fut` for at most [`STEP`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(STEP, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

/// A provider with the default configuration.
pub async fn idp() -> MockIdp {
    MockIdp::builder().start().await.expect("mock idp starts")
}

/// A server (in-memory database) that trusts `idp`.
pub async fn server(idp: &MockIdp) -> ChatServer {
    server_with(ServerConfig::new(idp.issuer())).await
}

/// A server with this configuration.
pub async fn server_with(config: ServerConfig) -> ChatServer {
    ChatServer::start(config).await.expect("chat server starts")
}

/// A real access token for `user`, through the device flow of the chat client.
pub async fn token(idp: &MockIdp, user: &str) -> String {
    let body = tokens(idp, user).await;
    body["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token in {body}"))
        .to_owned()
}

/// The whole token response of a device-flow login of `user` (access, ID
/// and refresh token).
pub async fn tokens(idp: &MockIdp, user: &str) -> Value {
    let http = reqwest::Client::new();
    let device: Value = http
        .post(idp.url("/device_authorization"))
        .form(&[
            ("client_id", "chat-example"),
            ("scope", "openid profile offline_access"),
        ])
        .send()
        .await
        .expect("device authorization")
        .json()
        .await
        .expect("device authorization JSON");
    let user_code = device["user_code"].as_str().expect("user_code");
    idp.control()
        .approve_device(user_code, user)
        .expect("approve device");
    let response = http
        .post(idp.url("/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            (
                "device_code",
                device["device_code"].as_str().expect("device_code"),
            ),
            ("client_id", "chat-example"),
        ])
        .send()
        .await
        .expect("token request");
    response.json().await.expect("token JSON")
}

/// The claims of a good access token for `sub`, valid for `ttl` seconds.
pub fn claims(idp: &MockIdp, sub: &str, ttl: i64) -> Value {
    let now = idp.control().now();
    json!({
        "iss": idp.issuer(),
        "aud": "chat-server",
        "sub": sub,
        "exp": now + ttl,
        "iat": now,
        "client_id": "chat-example",
        "scope": "openid profile",
    })
}

/// `claims` signed with the provider's current RS256 key.
pub fn signed(idp: &MockIdp, claims: &Value) -> String {
    idp.control().sign_jwt(Alg::RS256, "at+jwt", claims)
}

/// `claims` signed with a key of our own (P-256) under the key id `kid`.
pub fn forged(kid: &str, typ: &str, claims: &Value) -> String {
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
    let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("key");
    let pkcs8 = pair.to_pkcs8v1().expect("pkcs8");
    let key = jsonwebtoken::EncodingKey::from_ec_der(pkcs8.as_ref());
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    header.typ = Some(typ.to_owned());
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

/// The `sid` in a JWT's claims (read without checking the signature).
pub fn sid_of(token: &str) -> String {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    let claims: Value = serde_json::from_slice(&bytes).expect("JSON claims");
    claims["sid"].as_str().expect("sid").to_owned()
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Opens `url` with `Authorization: Bearer token` (or no header).
pub async fn open(url: &str, token: Option<&str>) -> Result<Ws, tungstenite::Error> {
    let mut request = url.into_client_request().expect("request");
    if let Some(token) = token {
        request.headers_mut().insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
    }
    within("handshake", tokio_tungstenite::connect_async(request))
        .await
        .map(|(ws, _)| ws)
}

/// The HTTP response of a refused handshake.
pub async fn refused(url: &str, token: Option<&str>) -> Response<Option<Vec<u8>>> {
    match open(url, token).await {
        Err(tungstenite::Error::Http(response)) => *response,
        Err(other) => panic!("expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("the handshake was accepted"),
    }
}

/// Asserts a 401 with the bearer challenge.
pub async fn assert_unauthorized(url: &str, token: Option<&str>, case: &str) {
    let response = refused(url, token).await;
    assert_eq!(response.status(), 401, "{case}");
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.starts_with("Bearer") && challenge.contains(r#"error="invalid_token""#),
        "{case}: challenge {challenge:?}"
    );
    let body = String::from_utf8(response.body().clone().unwrap_or_default()).expect("utf-8");
    assert!(
        !body.contains("hello") && !body.contains("message"),
        "{case}: {body}"
    );
}

/// What the client saw next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A protocol frame.
    Frame(ServerFrame),
    /// A close frame with its code and reason.
    Closed(u16, String),
    /// The connection ended without a close frame.
    Ended,
}

/// A protocol client on a raw WebSocket.
pub struct Client {
    ws: Ws,
    /// Frames read while waiting for another one.
    backlog: VecDeque<ServerFrame>,
    /// The `hello` frame.
    pub hello: ServerFrame,
}

impl Client {
    /// Connects and reads the `hello`.
    pub async fn connect(server: &ChatServer, token: &str) -> Self {
        let ws = open(&server.ws_url(), Some(token))
            .await
            .expect("handshake accepted");
        Self::from_ws(ws).await
    }

    /// Wraps an open socket and reads the `hello`.
    pub async fn from_ws(ws: Ws) -> Self {
        let mut client = Self {
            ws,
            backlog: VecDeque::new(),
            hello: ServerFrame::Authed { expires_at: 0 },
        };
        match client.event().await {
            Event::Frame(hello @ ServerFrame::Hello { .. }) => client.hello = hello,
            other => panic!("expected hello, got {other:?}"),
        }
        client
    }

    /// Sends a frame.
    pub async fn send(&mut self, frame: &ClientFrame) {
        self.send_text(&serde_json::to_string(frame).expect("JSON"))
            .await;
    }

    /// Sends raw text.
    pub async fn send_text(&mut self, text: &str) {
        within("send", self.ws.send(Message::text(text)))
            .await
            .expect("send");
    }

    /// The next thing from the server, read off the wire (ignores the backlog).
    async fn read(&mut self) -> Event {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    let frame = serde_json::from_str(text.as_str())
                        .unwrap_or_else(|e| panic!("bad frame {text}: {e}"));
                    return Event::Frame(frame);
                }
                Some(Ok(Message::Close(frame))) => {
                    return frame.map_or(Event::Closed(1005, String::new()), |f| {
                        Event::Closed(u16::from(f.code), f.reason.as_str().to_owned())
                    });
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Event::Ended,
            }
        }
    }

    /// The next thing from the server, within [`STEP`].
    pub async fn event(&mut self) -> Event {
        if let Some(frame) = self.backlog.pop_front() {
            return Event::Frame(frame);
        }
        within("next event", self.read()).await
    }

    /// The next thing from the server within `wait`, or `None`.
    pub async fn event_within(&mut self, wait: Duration) -> Option<Event> {
        if let Some(frame) = self.backlog.pop_front() {
            return Some(Event::Frame(frame));
        }
        tokio::time::timeout(wait, self.read()).await.ok()
    }

    /// The next frame; panics on a close.
    pub async fn frame(&mut self) -> ServerFrame {
        match self.event().await {
            Event::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Waits for the first frame `pick` accepts; others are kept for later.
    pub async fn wait_for<T>(&mut self, mut pick: impl FnMut(&ServerFrame) -> Option<T>) -> T {
        if let Some(i) = self.backlog.iter().position(|f| pick(f).is_some()) {
            let frame = self.backlog.remove(i).expect("index");
            return pick(&frame).expect("picked");
        }
        loop {
            match within("a frame", self.read()).await {
                Event::Frame(frame) => match pick(&frame) {
                    Some(out) => return out,
                    None => self.backlog.push_back(frame),
                },
                other => panic!("closed while waiting: {other:?}"),
            }
        }
    }

    /// The close frame's code and reason (frames before it are skipped).
    pub async fn closed(&mut self) -> (u16, String) {
        self.backlog.clear();
        loop {
            match within("close", self.read()).await {
                Event::Closed(code, reason) => return (code, reason),
                Event::Ended => panic!("ended without a close frame"),
                Event::Frame(_) => {}
            }
        }
    }

    /// Joins `room` after `after`; returns the history and `last_seq`.
    pub async fn join(&mut self, room: &str, after: u64) -> (Vec<ChatMessage>, u64) {
        self.send(&ClientFrame::Join {
            room: room.into(),
            after,
        })
        .await;
        let mut history = Vec::new();
        loop {
            match self.frame().await {
                ServerFrame::Message(m) if m.room == room => history.push(m),
                ServerFrame::Joined { room: r, last_seq } if r == room => {
                    return (history, last_seq);
                }
                other => panic!("unexpected during join: {other:?}"),
            }
        }
    }

    /// Sends a message without waiting.
    pub async fn post_nowait(&mut self, room: &str, id: &str, text: &str) {
        self.send(&ClientFrame::Send {
            room: room.into(),
            id: id.into(),
            text: text.into(),
        })
        .await;
    }

    /// Sends a message and waits for its ack; returns its sequence number.
    pub async fn post(&mut self, room: &str, id: &str, text: &str) -> u64 {
        self.post_nowait(room, id, text).await;
        self.ack(id).await
    }

    /// Waits for the ack of `id`.
    pub async fn ack(&mut self, id: &str) -> u64 {
        self.wait_for(|f| match f {
            ServerFrame::Ack { id: i, seq, .. } if i == id => Some(*seq),
            ServerFrame::Error { id: Some(i), .. } if i == id => panic!("refused: {f:?}"),
            _ => None,
        })
        .await
    }

    /// Waits for the live message with this sequence number in `room`.
    pub async fn message(&mut self, room: &str, seq: u64) -> ChatMessage {
        self.wait_for(|f| match f {
            ServerFrame::Message(m) if m.room == room && m.seq == seq => Some(m.clone()),
            _ => None,
        })
        .await
    }

    /// Asserts that the connection is alive: a join of an unused room answers.
    pub async fn assert_alive(&mut self) {
        self.send(&ClientFrame::Join {
            room: "ping".into(),
            after: 0,
        })
        .await;
        self.wait_for(|f| {
            matches!(f, ServerFrame::Joined { room, .. } if room == "ping").then_some(())
        })
        .await;
    }

    /// Frames read but not consumed yet.
    pub fn backlog(&self) -> &VecDeque<ServerFrame> {
        &self.backlog
    }
}

/// Converts a close code for comparisons.
pub fn code(c: CloseCode) -> u16 {
    u16::from(c)
}

/// A fresh directory under the target's temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Makes one.
    pub fn new(name: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "server-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
