//! Support for the node rows (SIGKILLed node, PostgreSQL restarted, keychain
//! locked): the `chat` test support (users, `chat --plain`, `chat-server`
//! processes) shared with the `chat` test binary, an SDK sign-in in this
//! process, raw WebSocket handshakes with an access token, and the chat
//! table as PostgreSQL holds it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use sessionkit::{
    AccountRegistry, HttpClient, LoopbackOptions, OidcClient, Provider, Session, SessionManager,
    TokenStore,
};
use sessionkit_examples::protocol::{BACKCHANNEL_PATH, WS_PATH};
use sessionkit_mock_idp::MockIdp;
use sessionkit_tests::scratch::ScratchDir;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

#[allow(dead_code, unreachable_pub, clippy::allow_attributes)]
#[path = "../chat/support.rs"]
pub mod chat;

pub use chat::{PATIENCE, User, connection, messages, plain_landing_on};

/// A mock IdP on a free port.
pub async fn idp() -> MockIdp {
    MockIdp::builder()
        .bind("127.0.0.1:0")
        .start()
        .await
        .expect("mock idp")
}

/// The back-channel logout URL of the node whose WebSocket URL is `ws_url`.
pub fn backchannel_url(ws_url: &str) -> String {
    ws_url
        .replacen("ws://", "http://", 1)
        .replace(WS_PATH, BACKCHANNEL_PATH)
}

/// `(seq, user, text)` of #general's messages as PostgreSQL holds them, and
/// how many distinct client ids they carry.
pub async fn stored(client: &tokio_postgres::Client) -> (Vec<(u64, String, String)>, usize) {
    let rows = client
        .query(
            "SELECT seq, user_name, client_id, text FROM messages
             WHERE room = 'general' ORDER BY seq",
            &[],
        )
        .await
        .expect("read messages");
    let ids: std::collections::HashSet<String> = rows.iter().map(|r| r.get(2)).collect();
    let messages = rows
        .iter()
        .map(|r| {
            (
                u64::try_from(r.get::<_, i64>(0)).expect("seq"),
                r.get(1),
                r.get(3),
            )
        })
        .collect();
    (messages, ids.len())
}

/// `user`'s lines `m{from}..=m{to}` as `(seq, user, text)`, seq = n.
pub fn lines_of(user: &str, from: u64, to: u64) -> Vec<(u64, String, String)> {
    (from..=to)
        .map(|i| (i, user.to_owned(), format!("m{i}")))
        .collect()
}

/// An SDK session manager for `chat-example` at `idp`, keeping tokens in
/// `store`, its account registry in `dir`.
pub async fn manager(
    idp: &MockIdp,
    store: Arc<dyn TokenStore>,
    namespace: &str,
    dir: &ScratchDir,
) -> SessionManager {
    let http = HttpClient::new().expect("http client");
    let provider = Provider::discover(idp.issuer(), &http)
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    SessionManager::for_client(client)
        .namespace(namespace)
        .store(store)
        .registry(AccountRegistry::at(dir.path().join("accounts.json")))
        .build()
        .await
        .expect("session manager")
}

/// Signs `user` in through the loopback flow, the provider logging the
/// user in when the authorization URL is requested.
pub async fn sign_in(
    idp: &MockIdp,
    manager: &SessionManager,
    user: &str,
) -> sessionkit::Result<Arc<Session>> {
    idp.control()
        .set_auto_login(Some(user))
        .expect("auto login");
    let options = LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    });
    manager.login_loopback(options).await
}

/// The newest provider session (`sid`) of `user`.
pub fn newest_sid(idp: &MockIdp, user: &str) -> String {
    idp.control()
        .sessions(Some(user))
        .pop()
        .expect("a session at the provider")
        .sid
}

pub type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A WebSocket handshake at `url` with `token`: the socket, or the HTTP
/// status the node refused it with.
pub async fn handshake(url: &str, token: &str) -> Result<Socket, u16> {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("header"),
    );
    match tokio::time::timeout(PATIENCE, tokio_tungstenite::connect_async(request))
        .await
        .expect("the handshake in time")
    {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(e) => panic!("handshake at {url}: {e}"),
    }
}

/// Reads `socket` until it closes; returns the close code (`None`: the
/// connection ended without a close frame).
pub async fn close_code(socket: &mut Socket, within: Duration) -> Option<u16> {
    let read = async {
        while let Some(frame) = socket.next().await {
            match frame {
                Ok(Message::Close(Some(close))) => return Some(u16::from(close.code)),
                Ok(Message::Close(None)) => return Some(u16::from(CloseCode::Status)),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
        None
    };
    tokio::time::timeout(within, read)
        .await
        .expect("the socket closes in time")
}
