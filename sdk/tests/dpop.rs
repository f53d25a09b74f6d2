//! DPoP (RFC 9449) through the SDK against mock-idp over real sockets: a
//! client that requires bound tokens signs in, calls userinfo, refreshes,
//! is restored from the store with its key and logs out — with the
//! provider's nonces required or not; a stolen token or refresh token
//! is of no use without the key; and a provider or resource server that
//! takes no ES256 proofs is reported as such, before a login or instead of
//! a refresh.
//!
//! (Over 500 lines: one file per protocol feature, as the other test
//! files; the set-up and the resource server of another origin are at the top.)

use std::sync::Arc;

use base64::Engine as _;
use sessionkit::{AccountRegistry, AuthedClient, DpopKey, MemoryStore, SessionManager, TokenStore};
use sessionkit_mock_idp::{ClientConfig, Lifetimes, MockIdp};

const CLIENT: &str = "dpop-app";

struct Setup {
    idp: MockIdp,
    store: Arc<MemoryStore>,
    dir: std::path::PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup(name: &str) -> Setup {
    let idp = MockIdp::builder()
        .auto_login("alice")
        .lifetimes(Lifetimes {
            device_poll_interval: 1,
            ..Lifetimes::default()
        })
        .start()
        .await
        .expect("idp");
    idp.control()
        .register_client(ClientConfig {
            dpop_bound_access_tokens: true,
            ..ClientConfig::public(CLIENT)
        })
        .expect("client");
    let dir = std::env::temp_dir().join(format!(
        "sk-dpop-{name}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    Setup {
        idp,
        store: Arc::new(MemoryStore::new()),
        dir,
    }
}

fn rand_suffix() -> u64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0)
}

async fn manager(setup: &Setup, dpop: bool, restore: bool) -> SessionManager {
    SessionManager::builder(setup.idp.issuer(), CLIENT)
        .namespace("dpop")
        .scopes(["openid", "profile", "offline_access"])
        .dpop(dpop)
        .store(setup.store.clone())
        .registry(AccountRegistry::at(setup.dir.join("accounts.json")))
        .restore(restore)
        .build()
        .await
        .expect("manager")
}

/// Signs in through the app-handled redirect (the provider logs alice in by itself).
async fn sign_in(manager: &SessionManager) -> Arc<sessionkit::Session> {
    let request = manager
        .client()
        .authorization_request("http://127.0.0.1/callback")
        .await
        .expect("request");
    assert!(
        request.url.query_pairs().any(|(k, _)| k == "dpop_jkt") == manager.client().uses_dpop(),
        "the code is bound to the key exactly when DPoP is on"
    );
    let back = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser")
        .get(request.url.as_str())
        .send()
        .await
        .expect("authorize")
        .headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let tokens = manager
        .client()
        .finish(&request, &back)
        .await
        .expect("tokens");
    manager.sign_in(tokens).await.expect("session")
}

/// The `cnf.jkt` of a JWT access token.
fn bound_jkt(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?,
    )
    .ok()?;
    claims["cnf"]["jkt"].as_str().map(str::to_owned)
}

fn token_requests(idp: &MockIdp) -> Vec<u16> {
    idp.control()
        .requests()
        .into_iter()
        .filter(|r| r.endpoint == "token")
        .map(|r| r.status)
        .collect()
}

async fn the_whole_life_of_a_bound_session(nonces: bool) {
    let setup = setup(if nonces { "nonce" } else { "plain" }).await;
    setup.idp.control().set_dpop_nonce_required(nonces);
    let manager = manager(&setup, true, false).await;
    let session = sign_in(&manager).await;

    // Bound to a key of this login, and the key is stored with the tokens.
    let key = session.dpop_key().expect("bound tokens");
    let (access, _) = session.cached_access_token();
    assert_eq!(
        bound_jkt(access.secret()).as_deref(),
        Some(key.thumbprint())
    );
    let stored = setup.store.load_session(session.key()).expect("stored");
    assert_eq!(stored.dpop_key.as_ref(), Some(&key));
    if nonces {
        // The first token request was asked for a nonce, the second carried it.
        assert_eq!(token_requests(&setup.idp), vec![400, 200]);
    }

    // API calls: Authorization: DPoP with a proof carrying ath (mock-idp's
    // userinfo checks both, and the nonce when required).
    let api = AuthedClient::new(session.clone()).expect("client");
    let claims = api.userinfo().await.expect("userinfo with a proof");
    assert_eq!(claims["sub"], session.key().sub.as_str());
    let userinfo_401s = || {
        setup
            .idp
            .control()
            .requests()
            .iter()
            .filter(|r| r.endpoint == "userinfo" && r.status == 401)
            .count()
    };
    // The token endpoint's nonce serves userinfo too: the same origin.
    assert_eq!(userinfo_401s(), 0, "the origin's nonce was kept");
    api.userinfo().await.expect("again");
    assert_eq!(userinfo_401s(), 0);

    // Refresh: proof of the same key; the new token is bound to it too.
    setup.idp.control().reset_requests();
    let fresh = session.force_refresh().await.expect("refresh with a proof");
    assert_ne!(fresh.secret(), access.secret());
    assert_eq!(bound_jkt(fresh.secret()).as_deref(), Some(key.thumbprint()));
    assert_eq!(session.dpop_key().as_ref(), Some(&key));
    assert_eq!(
        token_requests(&setup.idp),
        vec![200],
        "the kept nonce served"
    );

    // Another process (here another manager on the same store) restores
    // the account with its key and can use its tokens.
    let again = manager_restored(&setup).await;
    let restored = again.session(session.key()).expect("restored");
    assert_eq!(restored.dpop_key().as_ref(), Some(&key));
    AuthedClient::new(restored)
        .expect("client")
        .userinfo()
        .await
        .expect("userinfo from the restored session");

    // Logout revokes with a proof; the key leaves with the tokens.
    let report = manager.logout(session.key()).await;
    assert!(report.revoked, "{report:?}");
    assert!(setup.store.load_session(session.key()).is_err());
    assert!(session.dpop_key().is_none(), "nothing kept in memory");
}

async fn manager_restored(setup: &Setup) -> SessionManager {
    manager(setup, true, true).await
}

#[tokio::test]
async fn a_bound_session_signs_in_calls_refreshes_restores_and_logs_out() {
    the_whole_life_of_a_bound_session(false).await;
}

#[tokio::test]
async fn the_providers_nonces_are_fetched_once_and_kept() {
    the_whole_life_of_a_bound_session(true).await;
}

#[tokio::test]
async fn a_stolen_token_is_useless_without_the_key() {
    let setup = setup("stolen").await;
    let manager = manager(&setup, true, false).await;
    let session = sign_in(&manager).await;
    let (access, _) = session.cached_access_token();
    let userinfo = format!("{}/userinfo", setup.idp.issuer());
    let http = reqwest::Client::new();

    // As a bearer token: refused.
    let status = http
        .get(&userinfo)
        .bearer_auth(access.secret())
        .send()
        .await
        .expect("userinfo")
        .status();
    assert_eq!(status, 401);

    // With a proof by another key: refused.
    let thief = DpopKey::generate().expect("key");
    let proof = thief
        .proof(
            "GET",
            &userinfo,
            Some(&access),
            None,
            std::time::SystemTime::now(),
        )
        .expect("proof");
    let answer = http
        .get(&userinfo)
        .header("authorization", format!("DPoP {}", access.secret()))
        .header("dpop", proof)
        .send()
        .await
        .expect("userinfo");
    assert_eq!(answer.status(), 401);
    assert!(
        answer.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .starts_with("DPoP"),
    );

    // The refresh token, without the key (as a bearer client would send it): refused.
    let refresh = manager
        .stored_refresh_token(session.key())
        .await
        .expect("refresh token");
    let answer = http
        .post(format!("{}/token", setup.idp.issuer()))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.secret()),
            ("client_id", CLIENT),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(answer.status(), 400);
    // The session itself still refreshes: the provider refused the thief only.
    session.force_refresh().await.expect("the owner refreshes");
}

#[tokio::test]
async fn without_dpop_the_tokens_are_bearer_tokens_and_no_key_is_kept() {
    let setup = setup("bearer").await;
    setup
        .idp
        .control()
        .register_client(ClientConfig::public("bearer-app"))
        .expect("client");
    let manager = SessionManager::builder(setup.idp.issuer(), "bearer-app")
        .namespace("dpop")
        .store(setup.store.clone())
        .registry(AccountRegistry::at(setup.dir.join("accounts.json")))
        .restore(false)
        .build()
        .await
        .expect("manager");
    let session = sign_in(&manager).await;
    assert!(session.dpop_key().is_none());
    let (access, _) = session.cached_access_token();
    assert_eq!(bound_jkt(access.secret()), None);
    assert!(
        setup
            .store
            .load_session(session.key())
            .expect("stored")
            .dpop_key
            .is_none()
    );
    AuthedClient::new(session.clone())
        .expect("client")
        .userinfo()
        .await
        .expect("a bearer call");
    // A client that must use DPoP gets nowhere without it.
    let required = manager_plain_for_required_client(&setup).await;
    let request = required
        .client()
        .authorization_request("http://127.0.0.1/callback")
        .await
        .expect("request");
    let back = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser")
        .get(request.url.as_str())
        .send()
        .await
        .expect("authorize")
        .headers()["location"]
        .to_str()
        .expect("ascii")
        .to_owned();
    match required.client().finish(&request, &back).await {
        Err(sessionkit::Error::Provider { error, .. }) => {
            assert_eq!(error, "invalid_dpop_proof")
        }
        other => panic!("{other:?}"),
    }
}

/// A resource server of its own origin that takes DPoP-bound tokens only,
/// checks proofs as strictly as mock-idp does (`ath`, the binding, replay)
/// and requires its own nonces; it counts the nonce challenges it answered.
mod resource {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use sessionkit_mock_idp::dpop::{self, Nonces, ProofRequest, ReplayCache};

    pub(super) struct Server {
        pub(super) url: String,
        pub(super) state: Arc<Shared>,
    }

    pub(super) struct Shared {
        nonces: Nonces,
        replay: ReplayCache,
        jkt: String,
        origin: std::sync::Mutex<String>,
        pub(super) challenges: AtomicUsize,
        pub(super) served: AtomicUsize,
    }

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }

    async fn note(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
        let refuse = |e: dpop::ProofError| {
            let nonce = e.is_nonce_challenge();
            let mut r = (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", e.www_authenticate())],
            )
                .into_response();
            if nonce {
                shared.challenges.fetch_add(1, Ordering::SeqCst);
                let value = shared.nonces.current(now()).parse().expect("header");
                r.headers_mut().insert("dpop-nonce", value);
            }
            r
        };
        let Some(token) = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("DPoP "))
        else {
            return StatusCode::UNAUTHORIZED.into_response();
        };
        let proof = match dpop::proof_header(&headers) {
            Ok(Some(p)) => p,
            _ => return StatusCode::UNAUTHORIZED.into_response(),
        };
        let url = format!("{}/note", shared.origin.lock().expect("lock"));
        let request = ProofRequest::new("GET", &url, proof)
            .access_token(token)
            .require_nonce(&shared.nonces);
        match dpop::verify_proof(&request, now(), &shared.replay)
            .and_then(|p| p.check_binding(&shared.jkt))
        {
            Ok(()) => {
                shared.served.fetch_add(1, Ordering::SeqCst);
                "a note".into_response()
            }
            Err(e) => refuse(e),
        }
    }

    pub(super) async fn start(jkt: &str) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(Shared {
            nonces: Nonces::new(300),
            replay: ReplayCache::default(),
            jkt: jkt.to_owned(),
            origin: std::sync::Mutex::new(url.clone()),
            challenges: AtomicUsize::new(0),
            served: AtomicUsize::new(0),
        });
        let app = axum::Router::new()
            .route("/note", axum::routing::get(note))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Server { url, state }
    }
}

#[tokio::test]
async fn a_resource_servers_nonce_challenge_is_answered_once_and_its_nonce_kept() {
    use std::sync::atomic::Ordering;
    let setup = setup("resource").await;
    let manager = manager(&setup, true, false).await;
    let session = sign_in(&manager).await;
    let key = session.dpop_key().expect("bound");
    let server = resource::start(key.thumbprint()).await;
    let api = AuthedClient::new(session.clone()).expect("client");
    let note = format!("{}/note", server.url);
    for round in 1..=3 {
        let answer = api.get(note.as_str()).await.expect("sent");
        assert_eq!(answer.status(), 200, "round {round}");
        assert_eq!(answer.text().await.expect("body"), "a note");
    }
    assert_eq!(server.state.served.load(Ordering::SeqCst), 3);
    assert_eq!(
        server.state.challenges.load(Ordering::SeqCst),
        1,
        "one challenge, then the kept nonce"
    );
    // A nonce challenge is not a refused token: nothing was refreshed.
    assert!(
        !setup
            .idp
            .control()
            .requests()
            .iter()
            .any(|r| r.endpoint == "token" && r.note.as_deref() == Some("refresh_token")),
    );
}

async fn manager_plain_for_required_client(setup: &Setup) -> SessionManager {
    manager(setup, false, false).await
}

#[tokio::test]
async fn the_device_flow_binds_its_tokens_too() {
    let setup = setup("device").await;
    setup.idp.control().set_dpop_nonce_required(true);
    let manager = manager(&setup, true, false).await;
    let control = setup.idp.control().clone();
    let session = manager
        .login_device(
            move |p| {
                control
                    .approve_device(&p.user_code, "carol")
                    .expect("approve");
            },
            &Default::default(),
        )
        .await
        .expect("device login with proofs");
    let key = session.dpop_key().expect("bound");
    let (access, _) = session.cached_access_token();
    assert_eq!(
        bound_jkt(access.secret()).as_deref(),
        Some(key.thumbprint())
    );
    AuthedClient::new(session.clone())
        .expect("client")
        .userinfo()
        .await
        .expect("userinfo");
    assert!(manager.logout(session.key()).await.revoked);
}

/// Another process signs the same account in again: a new refresh token,
/// bound to a new key, replaces the stored one. When this process then
/// refreshes (its tokens and the stored ones both due), it sends the stored
/// refresh token with the key stored beside it — never with its own old
/// key, which the provider would answer `invalid_grant`, signing the
/// account out everywhere.
#[tokio::test]
async fn a_refresh_sends_the_stored_refresh_token_with_the_key_stored_beside_it() {
    let setup = setup("relogin").await;
    setup.idp.control().set_access_token_ttl(30);
    let clock = sessionkit::Clock::manual();
    let first = SessionManager::builder(setup.idp.issuer(), CLIENT)
        .namespace("dpop")
        .scopes(["openid", "profile", "offline_access"])
        .dpop(true)
        .clock(clock.clone())
        .store(setup.store.clone())
        .registry(AccountRegistry::at(setup.dir.join("accounts.json")))
        .restore(false)
        .build()
        .await
        .expect("manager");
    let here = sign_in(&first).await;
    let old_key = here.dpop_key().expect("bound");

    let elsewhere = sign_in(&manager(&setup, true, false).await).await;
    let new_key = elsewhere.dpop_key().expect("bound");
    assert_ne!(old_key, new_key, "a new login, a new key");
    assert_eq!(here.key(), elsewhere.key(), "the same account");

    // Past both logins' 30 s tokens (and within the provider's 60 s window
    // for a proof's iat): this process refreshes.
    clock.advance(std::time::Duration::from_secs(40));
    let token = here
        .access_token()
        .await
        .expect("refreshed with the stored refresh token and its key");
    assert_eq!(
        bound_jkt(token.secret()).as_deref(),
        Some(new_key.thumbprint())
    );
    assert_eq!(here.dpop_key().as_ref(), Some(&new_key));
    assert!(
        !setup
            .idp
            .control()
            .requests()
            .iter()
            .any(|r| r.endpoint == "token" && r.status != 200),
        "no refresh was refused"
    );
}

#[test]
fn a_stored_entry_keeps_whether_the_access_token_is_bound() {
    use sessionkit::SessionEntry;
    let key = DpopKey::generate().expect("key");
    let entry = |bound| {
        let mut e = SessionEntry::new(sessionkit::AccessToken::new("at"));
        e.dpop_key = Some(key.clone());
        e.dpop_bound = bound;
        e
    };
    for bound in [true, false] {
        let again = SessionEntry::from_json(&entry(bound).to_json()).expect("reads");
        assert_eq!(again.dpop_key.as_ref(), Some(&key));
        assert_eq!(
            again.dpop_bound, bound,
            "a bearer access token with a key for the provider"
        );
    }
}

/// The requests the provider saw, but discovery and the JWKS.
fn protocol_requests(idp: &MockIdp) -> Vec<String> {
    idp.control()
        .requests()
        .into_iter()
        .map(|r| r.endpoint)
        .filter(|e| e != "discovery" && e != "jwks")
        .collect()
}

#[tokio::test]
async fn a_provider_that_takes_no_es256_proofs_is_refused_before_any_login_request() {
    let idp = MockIdp::builder()
        .config(sessionkit_mock_idp::Config {
            dpop_signing_algs: vec!["PS256".to_owned(), "RS256".to_owned()],
            ..sessionkit_mock_idp::Config::default()
        })
        .auto_login("alice")
        .start()
        .await
        .expect("idp");
    let dir = std::env::temp_dir().join(format!(
        "sk-dpop-algs-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let manager = SessionManager::builder(idp.issuer(), "chat-example")
        .namespace("dpop")
        .dpop(true)
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(dir.join("accounts.json")))
        .restore(false)
        .build()
        .await
        .expect("a manager: nothing is signed yet");
    let refused = |err: sessionkit::Error| match err {
        sessionkit::Error::DpopAlgorithm {
            server,
            accepted,
            signs_with,
        } => {
            assert_eq!(server, idp.issuer());
            assert_eq!(accepted, ["PS256", "RS256"]);
            assert_eq!(signs_with, DpopKey::ALG);
        }
        other => panic!("{other:?}"),
    };
    refused(
        manager
            .client()
            .authorization_request("http://127.0.0.1/callback")
            .await
            .expect_err("the app-redirect login"),
    );
    #[cfg(feature = "loopback")]
    refused(
        manager
            .login_loopback(sessionkit::LoopbackOptions::with_callback(|url| {
                panic!("no browser is opened: {url}")
            }))
            .await
            .expect_err("the loopback login"),
    );
    refused(
        manager
            .client()
            .login_device(
                |p| panic!("no code is shown: {}", p.user_code),
                &Default::default(),
            )
            .await
            .expect_err("the device login"),
    );
    assert_eq!(protocol_requests(&idp), Vec::<String>::new());
    assert!(manager.accounts().expect("accounts").is_empty());

    // Without the check the provider would be asked, and refuse the
    // proof only at the token endpoint, after the user signed in.
    let bearer = SessionManager::builder(idp.issuer(), "chat-example")
        .namespace("dpop")
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(dir.join("bearer.json")))
        .restore(false)
        .build()
        .await
        .expect("manager");
    let session = sign_in(&bearer).await;
    assert!(session.dpop_key().is_none(), "a bearer login still works");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A resource server that refuses every request with a `DPoP` challenge
/// listing `algs`; counts what it was sent.
async fn refusing_api(algs: &'static str) -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use axum::http::StatusCode;
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    let app = axum::Router::new().route(
        "/note",
        axum::routing::get(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let challenge = format!(
                r#"DPoP error="invalid_dpop_proof", error_description="alg", algs="{algs}""#
            );
            std::future::ready((StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, hits)
}

#[tokio::test]
async fn a_resource_server_that_takes_no_es256_proofs_is_reported_without_a_refresh() {
    use std::sync::atomic::Ordering;
    let setup = setup("rs-algs").await;
    let manager = manager(&setup, true, false).await;
    let session = sign_in(&manager).await;
    let api = AuthedClient::new(session.clone()).expect("client");
    let refreshes = || {
        setup
            .idp
            .control()
            .requests()
            .iter()
            .filter(|r| r.endpoint == "token" && r.note.as_deref() == Some("refresh_token"))
            .count()
    };

    let (url, hits) = refusing_api("PS256 RS256").await;
    match api.get(format!("{url}/note")).await {
        Err(sessionkit::Error::DpopAlgorithm {
            server, accepted, ..
        }) => {
            assert_eq!(server, url);
            assert_eq!(accepted, ["PS256", "RS256"]);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "sent once");
    assert_eq!(refreshes(), 0, "a new token would not have helped");

    // A server whose challenge lists ES256 refused the token itself: one
    // refresh and one retry, then its answer, as for any 401.
    let (url, hits) = refusing_api("PS256 ES256").await;
    let answer = api.get(format!("{url}/note")).await.expect("an answer");
    assert_eq!(answer.status(), 401);
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(refreshes(), 1);
}
