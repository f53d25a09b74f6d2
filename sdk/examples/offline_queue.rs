//! `RefreshPolicy::OfflineFirst`: requests the app marks repeatable wait out
//! an outage and go out, in order, once the provider is back.
//!
//! A field app saves notes with `PUT /notes/{id}` (a whole note each time,
//! so sending one twice does no harm: the app may mark it repeatable). The
//! identity provider becomes unreachable (its token endpoint answers 503)
//! while the app's 4-second access token runs out, so no request can carry a
//! valid token. `AuthedClient::send_repeatable` keeps the three saves in the
//! client's offline queue instead of failing them; the session keeps retrying
//! its refresh and keeps the user signed in. When the provider answers
//! again, the queue is replayed oldest first with the refreshed token, and
//! each caller gets the API's answer.
//!
//! Everything runs in this process on free ports: an embedded mock provider
//! (which, with `auto_login`, also plays the user at the browser; a fault
//! scripted through its control API is the outage) and a small axum API.
//! Tokens stay in memory (`MemoryStore`) and the account list goes to a
//! scratch directory; tokens are never printed, only their fingerprints.
//!
//! `cargo run -p sessionkit --example offline_queue`

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header::AUTHORIZATION};
use axum::routing::put;
use sessionkit::{
    AccessToken, AccountRegistry, AuthedClient, LoopbackOptions, MemoryStore, QueueOptions,
    RefreshPolicy, SessionEvent, SessionManager,
};
use sessionkit_mock_idp::{ClientConfig, Fault, MockIdp};
use tokio::time::Instant;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let idp = MockIdp::builder()
        .client(ClientConfig::public("example-field-app"))
        .auto_login("alice")
        .access_token_ttl(4)
        .start()
        .await?;
    println!("provider at {}", idp.issuer());

    let scratch = std::env::temp_dir().join(format!("sessionkit-offline-{}", std::process::id()));
    let result = run(&idp, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

async fn run(idp: &MockIdp, scratch: &std::path::Path) -> Result<(), BoxError> {
    let api = start_api().await?;
    let started = Instant::now();
    let at = move || format!("{:4.1} s", started.elapsed().as_secs_f32());

    let sessions = SessionManager::builder(idp.issuer(), "example-field-app")
        .namespace("sessionkit-example")
        .policy(RefreshPolicy::OfflineFirst)
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
    let (token, expires_at) = session.cached_access_token();
    println!(
        "{}  signed in as {}; token {} expires in {:.1} s",
        at(),
        session.info().name(),
        token.fingerprint(),
        left(expires_at).as_secs_f32()
    );

    // What the session goes through: its refresh keeps failing (each
    // attempt reported; the first one printed) and the user stays signed in.
    let mut events = session.events();
    let watcher = tokio::spawn(async move {
        let mut failed = 0;
        while let Ok(event) = events.recv().await {
            match event {
                SessionEvent::RefreshFailed { kind, retrying_in } => {
                    failed += 1;
                    if failed == 1 {
                        println!(
                            "{}  refresh failed ({kind:?}); retrying in {:.1} s, and on",
                            at(),
                            retrying_in.unwrap_or_default().as_secs_f32()
                        );
                    }
                }
                SessionEvent::Refreshed { .. } => {
                    println!("{}  refreshed, after {failed} failed attempts", at());
                    failed = 0;
                }
                SessionEvent::Refreshing => {}
                other => println!("{}  {other:?}", at()),
            }
        }
    });

    // The provider becomes unreachable (its token endpoint answers 503)...
    idp.control()
        .add_fault(Fault::on("token").status(503, "{}"));
    println!("{}  the provider is unreachable", at());
    // ...and stays so until the access token has expired.
    tokio::time::sleep(left(expires_at) + Duration::from_millis(200)).await;
    println!(
        "{}  the access token has expired; the user saves three notes",
        at()
    );

    // The client's offline queue: replay attempts every 0.2–1 s (the
    // defaults, 0.5–30 s, suit a phone better than a demo).
    let client = AuthedClient::new(session.clone())?.with_queue_options(
        QueueOptions::default().replay_backoff(Duration::from_millis(200), Duration::from_secs(1)),
    );
    let mut queued = client.queued_changes();
    let mut saves = Vec::new();
    for (id, text) in [
        (1_usize, "north gate: fence down"),
        (2, "pump 3 leaking"),
        (3, "road closed at km 12"),
    ] {
        let request = client
            .request(reqwest::Method::PUT, format!("{api}/notes/{id}"))
            .body(text);
        let client = client.clone();
        saves.push(tokio::spawn(async move {
            client.send_repeatable(request).await
        }));
        // Each one queued before the next is sent: they wait in this order.
        queued.wait_for(|n| *n >= id).await?;
    }
    println!("{}  {} requests wait in the queue", at(), client.queued());

    tokio::time::sleep(Duration::from_secs(1)).await;
    idp.control().clear_faults();
    println!("{}  the provider is back", at());

    for (id, save) in (1..).zip(saves) {
        let response = save.await??;
        let status = response.status();
        println!(
            "{}  note {id}: {status} {}",
            at(),
            response.text().await.unwrap_or_default()
        );
    }
    println!("{}  {} requests wait in the queue", at(), client.queued());

    let report = sessions.logout(session.key()).await;
    println!(
        "{}  logged out: complete {}, refresh token revoked {}",
        at(),
        report.is_complete(),
        report.revoked
    );
    watcher.abort();
    Ok(())
}

/// The API: `PUT /notes/{id}` with a bearer token saves the note. On a
/// free port; returns its base URL. (A real API would check the token's
/// signature, issuer, audience and expiry; this one prints its fingerprint.)
async fn start_api() -> Result<String, BoxError> {
    async fn save(Path(id): Path<u32>, headers: HeaderMap, body: String) -> (StatusCode, String) {
        let token = headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = token else {
            return (StatusCode::UNAUTHORIZED, "no token".to_owned());
        };
        println!(
            "        API: note {id} saved ({} bytes, token {})",
            body.len(),
            AccessToken::new(token).fingerprint()
        );
        (StatusCode::OK, format!("saved note {id}"))
    }

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let app = Router::new().route("/notes/{id}", put(save));
    // Ends with the example's runtime.
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

/// How long until `at` (zero when it has passed or is unknown).
fn left(at: Option<SystemTime>) -> Duration {
    at.and_then(|at| at.duration_since(SystemTime::now()).ok())
        .unwrap_or_default()
}
