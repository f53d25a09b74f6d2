//! The README's quick start, compiled: sign in, call an API, open a
//! reconnecting socket, log out. `tests/quickstart.rs` runs it against the
//! mock provider and the chat server and checks that the README shows
//! exactly this code; `cargo run -p sessionkit-examples --example quickstart`
//! runs it on the embedded demo.

use sessionkit::{AuthedClient, LogoutReport, LoopbackOptions, RefreshPolicy, SessionManager};
use sessionkit_realtime::{Incoming, RealtimeClient};

/// What the quick start saw: the userinfo answer, the chat server's first
/// frame, and the logout's report.
#[derive(Debug)]
pub struct Seen {
    /// The provider's userinfo answer (JSON).
    pub me: String,
    /// The first frame the chat server sent.
    pub hello: Option<Incoming>,
    /// What the logout did.
    pub report: LogoutReport,
}

/// The quick start against `issuer` and the chat server at `ws`; `browser`
/// opens the sign-in page (the system browser in an app).
///
/// # Errors
/// Whatever the SDK or the socket reports.
pub async fn quickstart(
    issuer: &str,
    ws: &str,
    namespace: &str,
    browser: LoopbackOptions,
) -> anyhow::Result<Seen> {
    // README quick start begins
    let sessions = SessionManager::builder(issuer, "chat-example")
        .namespace(namespace) // keychain entries and the accounts file
        .policy(RefreshPolicy::Background) // sockets follow each refresh
        .build() // discovery, the OS keychain, earlier accounts
        .await?;
    let session = match sessions.active_session()? {
        Some(session) => session,
        None => sessions.login_loopback(browser).await?,
    };
    let api = AuthedClient::new(session.clone())?; // bearer token, one retry after a 401
    let me = api.get(format!("{issuer}/userinfo")).await?.text().await?;
    let (socket, mut incoming) = RealtimeClient::builder(ws).build(session.clone())?;
    socket.send(r#"{"type":"join","room":"general"}"#).await?;
    let hello = incoming.recv().await; // reconnects by itself, always with a fresh token
    let report = sessions.logout(session.key()).await; // closes the socket too
    // README quick start ends
    Ok(Seen { me, hello, report })
}
