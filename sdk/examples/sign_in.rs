//! Sign in through the loopback redirect, use the access token, watch the
//! session refresh it in the background, then log out.
//!
//! Everything runs in this process: an embedded mock provider on a free
//! port plays the identity provider, and (with `auto_login`) the user at the
//! browser. Its access tokens live 5 seconds, so the default
//! `RefreshPolicy::Proactive` timer refreshes them twice while the example
//! watches the session's events. Tokens stay in memory (`MemoryStore`) and
//! the account list goes to a scratch directory: nothing touches the
//! keychain or your config directory. Tokens are never printed, only their
//! fingerprints.
//!
//! `cargo run -p sessionkit --example sign_in`
//! (`RUST_LOG=sessionkit=debug` shows what the SDK does meanwhile)

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sessionkit::{AccountRegistry, LoopbackOptions, MemoryStore, SessionEvent, SessionManager};
use sessionkit_mock_idp::{ClientConfig, MockIdp};
use tokio::sync::broadcast::error::RecvError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long to watch the session: long enough for two refreshes of a 5 s token.
const WATCH_FOR: Duration = Duration::from_secs(6);

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    // The provider: a public client with loopback redirects, alice signed
    // in without a login page, 5-second access tokens.
    let idp = MockIdp::builder()
        .client(ClientConfig::public("example-app"))
        .auto_login("alice")
        .access_token_ttl(5)
        .start()
        .await?;
    println!("provider at {}", idp.issuer());

    let scratch = std::env::temp_dir().join(format!("sessionkit-sign-in-{}", std::process::id()));
    let result = run(&idp, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn run(idp: &MockIdp, scratch: &std::path::Path) -> Result<(), BoxError> {
    // Discovery, the store, and no earlier accounts to restore.
    let sessions = SessionManager::builder(idp.issuer(), "example-app")
        .namespace("sessionkit-example")
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(scratch.join("accounts.json")))
        .build()
        .await?;
    println!("refresh policy: {:?}", sessions.policy());

    // An app passes `LoopbackOptions::system_browser()`; here the "browser"
    // is a GET of the authorization URL, which the provider answers with a
    // redirect to the SDK's listener on 127.0.0.1.
    let browser = LoopbackOptions::with_callback(|url| {
        let url = url.to_owned();
        tokio::spawn(async move {
            let _ = reqwest::get(url).await;
        });
    });
    let session = sessions.login_loopback(browser).await?;
    println!(
        "signed in as {} ({})",
        session.info().name(),
        session.info().display_name
    );

    let token = session.access_token().await?;
    let (_, expires_at) = session.cached_access_token();
    println!(
        "access token {} ({} bytes), expires in {}",
        token.fingerprint(),
        token.secret().len(),
        until(expires_at)
    );

    // The timer refreshes ahead of expiry; every consumer of the session
    // (API clients, sockets, this loop) takes the new token.
    println!("watching the session for {} s", WATCH_FOR.as_secs());
    let mut events = session.events();
    let started = tokio::time::Instant::now();
    let stop = tokio::time::sleep(WATCH_FOR);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            event = events.recv() => {
                let at = started.elapsed().as_secs_f32();
                match event {
                    Ok(SessionEvent::Refreshed { expires_at }) => {
                        let (token, _) = session.cached_access_token();
                        println!(
                            "  {at:4.1} s  refreshed: token {}, expires in {}",
                            token.fingerprint(),
                            until(expires_at)
                        );
                    }
                    Ok(event) => println!("  {at:4.1} s  {event:?}"),
                    Err(RecvError::Lagged(missed)) => println!("  ({missed} events missed)"),
                    Err(RecvError::Closed) => break,
                }
            }
        }
    }

    // Cancels the timer, deletes the tokens, revokes the refresh token.
    let report = sessions.logout(session.key()).await;
    println!(
        "logged out: complete {}, refresh token revoked {}",
        report.is_complete(),
        report.revoked
    );
    for (step, why) in &report.failures {
        println!("  {step:?} failed: {why}");
    }
    println!("session ended: {}", session.access_token().await.is_err());
    Ok(())
}

/// "4.9 s" from now until `at`.
fn until(at: Option<SystemTime>) -> String {
    match at.map(|at| at.duration_since(SystemTime::now())) {
        Some(Ok(left)) => format!("{:.1} s", left.as_secs_f32()),
        Some(Err(_)) => "0 s (expired)".to_owned(),
        None => "(no expiry given)".to_owned(),
    }
}
