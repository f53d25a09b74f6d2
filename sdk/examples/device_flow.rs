//! Sign in with the device flow (RFC 8628), as a TV, a CLI on a remote
//! machine, or anything else without a browser does: the app shows a code
//! and a URL, the user approves on their phone, and the app's polling gets
//! the tokens.
//!
//! An embedded mock provider on a free port stands in for the identity
//! provider; "the user on their phone" is its control API approving the code
//! a second after the prompt appears. Its polling interval is 1 s (real
//! providers say 5). Tokens stay in memory (`MemoryStore`) and the account
//! list goes to a scratch directory; tokens are never printed, only their
//! fingerprints. Needs no Cargo feature (no loopback listener, no browser).
//!
//! `cargo run -p sessionkit --example device_flow`

use std::sync::Arc;
use std::time::Duration;

use sessionkit::{AccountRegistry, MemoryStore, SessionManager};
use sessionkit_mock_idp::{ClientConfig, Lifetimes, MockIdp};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    // A public client with the device grant; the provider asks clients to
    // poll every second.
    let idp = MockIdp::builder()
        .client(ClientConfig::public("example-tv-app"))
        .lifetimes(Lifetimes {
            device_poll_interval: 1,
            ..Lifetimes::default()
        })
        .start()
        .await?;
    println!("provider at {}", idp.issuer());

    let scratch = std::env::temp_dir().join(format!("sessionkit-device-{}", std::process::id()));
    let result = run(&idp, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn run(idp: &MockIdp, scratch: &std::path::Path) -> Result<(), BoxError> {
    let sessions = SessionManager::builder(idp.issuer(), "example-tv-app")
        .namespace("sessionkit-example")
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(scratch.join("accounts.json")))
        .build()
        .await?;

    // The prompt is shown once; here it also tells "the phone" the code.
    let (code_tx, code_rx) = oneshot::channel();
    let show_prompt = move |prompt: &sessionkit::DevicePrompt| {
        println!("To sign in, go to {}", prompt.verification_uri);
        println!("and enter the code {}", prompt.user_code);
        if let Some(complete) = &prompt.verification_uri_complete {
            println!("(or scan a QR code of {complete})");
        }
        println!("the code is valid for {} s", prompt.expires_in.as_secs());
        let _ = code_tx.send(prompt.user_code.clone());
    };
    // Cancelling stops the polling (a "Cancel" button on the TV).
    let cancel = CancellationToken::new();
    let started = tokio::time::Instant::now();

    // The user, on their phone: opens the page, signs in as alice, approves.
    let phone = async {
        let user_code = code_rx.await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        idp.control().approve_device(&user_code, "alice")?;
        println!(
            "  {:.1} s  alice approved the code on her phone",
            started.elapsed().as_secs_f32()
        );
        Ok::<_, BoxError>(())
    };
    let (session, approved) = tokio::join!(sessions.login_device(show_prompt, &cancel), phone);
    approved?;
    let session = session?;
    println!(
        "  {:.1} s  signed in as {} ({})",
        started.elapsed().as_secs_f32(),
        session.info().name(),
        session.info().display_name
    );

    let token = session.access_token().await?;
    println!(
        "access token {} ({} bytes)",
        token.fingerprint(),
        token.secret().len()
    );

    let report = sessions.logout(session.key()).await;
    println!(
        "logged out: complete {}, refresh token revoked {}",
        report.is_complete(),
        report.revoked
    );
    for (step, why) in &report.failures {
        println!("  {step:?} failed: {why}");
    }
    Ok(())
}
