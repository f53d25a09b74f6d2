//! "Never a token in a log": a whole session — discovery, loopback login,
//! device login, keeping the accounts, restoring them, a refresh, logout — runs with every
//! crate's tracing at TRACE level into a buffer, and no token, code or
//! verifier may appear in it, nor in any `Debug` output of the SDK's types.

use std::io::Write;
use std::sync::{Arc, Mutex};

use sessionkit::{
    AccountRegistry, HttpClient, LoopbackOptions, MemoryStore, OidcClient, Provider, SessionManager,
};
use sessionkit_mock_idp::{Lifetimes, MockIdp};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_sign_in_at_trace_level_logs_no_secret() {
    let buffer = Buffer::default();
    let writer = buffer.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();

    let idp = MockIdp::builder()
        .auto_login("alice")
        .lifetimes(Lifetimes {
            device_poll_interval: 1,
            ..Lifetimes::default()
        })
        .start()
        .await
        .expect("idp");
    let provider = Provider::discover(idp.issuer(), &HttpClient::new().expect("http"))
        .await
        .expect("discovery");
    let client =
        OidcClient::new(provider, "chat-example").scopes(["openid", "profile", "offline_access"]);
    let dir = std::env::temp_dir().join(format!("sk-redaction-{}", std::process::id()));
    let store = Arc::new(MemoryStore::new());
    let manager = SessionManager::for_client(client.clone())
        .namespace("redaction")
        .store(store.clone())
        .registry(AccountRegistry::at(dir.join("a.json")))
        .build()
        .await
        .expect("manager");

    let (url_tx, url_rx) = std::sync::mpsc::channel::<String>();
    let loopback = manager
        .login_loopback(LoopbackOptions::with_callback(move |url| {
            let _ = url_tx.send(url.to_owned());
            let url = url.to_owned();
            tokio::spawn(async move {
                let _ = reqwest::get(url).await;
            });
        }))
        .await
        .expect("loopback login")
        .info()
        .clone();
    let control = idp.control().clone();
    let device = client
        .login_device(
            move |p| {
                control
                    .approve_device(&p.user_code, "alice")
                    .expect("approve")
            },
            &CancellationToken::new(),
        )
        .await
        .expect("device login");
    let restored = manager.restore().await.expect("restore");
    let session = manager.session(&loopback.key).expect("session");
    let (access, _) = session.cached_access_token();
    let refresh = manager
        .stored_refresh_token(&loopback.key)
        .await
        .expect("refresh");

    let mut secrets = vec![access.secret().to_owned(), refresh.secret().to_owned()];
    // A refresh (the old refresh token is spent, a new one arrives), then logout.
    let refreshed = session.force_refresh().await.expect("refresh");
    let rotated = manager
        .stored_refresh_token(&loopback.key)
        .await
        .expect("rotated refresh token");
    secrets.push(refreshed.secret().to_owned());
    secrets.push(rotated.secret().to_owned());
    if let Some(id) = session.id_token() {
        secrets.push(id.secret().to_owned());
    }
    let report = manager.logout(&loopback.key).await;
    assert!(report.is_complete(), "{:?}", report.failures);
    secrets.push(device.access_token.secret().to_owned());
    if let Some(r) = &device.refresh_token {
        secrets.push(r.secret().to_owned());
    }
    if let Some(id) = &device.id_token {
        secrets.push(id.secret().to_owned());
        secrets.push(id.secret().rsplit('.').next().expect("sig").to_owned());
    }
    // The state and nonce of the loopback login, from the URL the browser got.
    let url = url::Url::parse(&url_rx.recv().expect("url")).expect("url");
    for (k, v) in url.query_pairs() {
        if k == "state" || k == "nonce" {
            secrets.push(v.into_owned());
        }
    }
    let debug = format!(
        "{loopback:?} {device:?} {restored:?} {session:?} {manager:?} {client:?} {report:?}"
    );
    let log = String::from_utf8(buffer.0.lock().expect("lock").clone()).expect("utf8");
    assert!(log.contains("signed in"), "the log was captured at all");
    for s in &secrets {
        assert!(s.len() >= 16);
        assert!(!log.contains(s.as_str()), "a secret is in the trace log");
        assert!(!debug.contains(s.as_str()), "a secret is in Debug output");
    }
    let _ = std::fs::remove_dir_all(dir);
}
