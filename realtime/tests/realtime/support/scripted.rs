//! A WebSocket server on 127.0.0.1:0 (plain or TLS) whose connections the
//! test drives itself, one step at a time: take the next TCP connection,
//! answer its handshake now, later or never, then read and write on each
//! connection, close it with a frame, drop it, or reset it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::http::header::AUTHORIZATION;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const LIMIT: Duration = Duration::from_secs(10);

pub(crate) struct Scripted {
    pub(crate) addr: SocketAddr,
    tcp: mpsc::UnboundedReceiver<TcpStream>,
    task: JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Scripted {
    pub(crate) async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, tcp) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                if tx.send(stream).is_err() {
                    break;
                }
            }
        });
        Self { addr, tcp, task }
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The next TCP connection, its handshake not answered yet.
    pub(crate) async fn next_tcp(&mut self) -> TcpStream {
        timeout(LIMIT, self.tcp.recv())
            .await
            .expect("timed out waiting for a connection")
            .expect("listener gone")
    }

    /// The next connection, handshake accepted.
    pub(crate) async fn next(&mut self) -> Conn<TcpStream> {
        let tcp = self.next_tcp().await;
        accept(tcp).await.expect("handshake")
    }

    /// Whether a connection arrives within `limit`.
    pub(crate) async fn connection_within(&mut self, limit: Duration) -> Option<TcpStream> {
        timeout(limit, self.tcp.recv()).await.ok().flatten()
    }
}

/// An accepted connection and the bearer token it came with.
pub(crate) struct Conn<S> {
    pub(crate) token: Option<String>,
    pub(crate) ws: WebSocketStream<S>,
}

fn bearer(request: &Request) -> Option<String> {
    request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
}

/// Answers the handshake with 101, keeping the bearer token.
// The callback's error type is tungstenite's.
#[allow(clippy::result_large_err)]
pub(crate) async fn accept<S>(stream: S) -> Result<Conn<S>, String>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let token = Arc::new(Mutex::new(None));
    let seen = token.clone();
    let callback = move |request: &Request, response: Response| {
        *super::lock(&seen) = bearer(request);
        Ok(response)
    };
    let ws = timeout(LIMIT, tokio_tungstenite::accept_hdr_async(stream, callback))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let token = super::lock(&token).take();
    Ok(Conn { token, ws })
}

/// Answers the handshake with 401.
#[allow(clippy::result_large_err)]
pub(crate) async fn refuse(stream: TcpStream) {
    let callback = |_: &Request, _: Response| -> Result<Response, ErrorResponse> {
        let mut refused = ErrorResponse::new(None);
        *refused.status_mut() = StatusCode::UNAUTHORIZED;
        Err(refused)
    };
    let _ = timeout(LIMIT, tokio_tungstenite::accept_hdr_async(stream, callback)).await;
}

impl<S: AsyncRead + AsyncWrite + Unpin> Conn<S> {
    pub(crate) async fn send_text(&mut self, text: &str) {
        timeout(LIMIT, self.ws.send(Message::text(text)))
            .await
            .expect("send timed out")
            .expect("send");
    }

    pub(crate) async fn send_binary(&mut self, bytes: &[u8]) {
        timeout(LIMIT, self.ws.send(Message::binary(bytes.to_vec())))
            .await
            .expect("send timed out")
            .expect("send");
    }

    /// The next text message (pings and pongs skipped).
    pub(crate) async fn recv_text(&mut self) -> String {
        loop {
            match timeout(LIMIT, self.ws.next())
                .await
                .expect("recv timed out")
            {
                Some(Ok(Message::Text(text))) => return text.to_string(),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                other => panic!("expected a text message, got {other:?}"),
            }
        }
    }

    /// Sends a close frame.
    pub(crate) async fn close(&mut self, code: u16, reason: &str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_owned().into(),
        };
        let _ = timeout(LIMIT, self.ws.send(Message::Close(Some(frame)))).await;
    }

    /// Reads WebSocket frames, then raw bytes, until the client has
    /// dropped the connection (EOF or reset); returns the text messages
    /// read meanwhile.
    pub(crate) async fn until_client_gone(mut self) -> Vec<String> {
        let mut texts = Vec::new();
        loop {
            match timeout(LIMIT, self.ws.next())
                .await
                .expect("client kept it open")
            {
                Some(Ok(Message::Text(text))) => texts.push(text.to_string()),
                Some(Ok(Message::Close(_))) => {}
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
        let mut raw = self.ws.into_inner();
        let mut buf = [0u8; 512];
        loop {
            match timeout(LIMIT, raw.read(&mut buf))
                .await
                .expect("client kept the socket open")
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        texts
    }
}
