//! DPoP (RFC 9449) at the chat server's handshake, over real sockets, with
//! DPoP-bound tokens from the embedded mock-idp: the realtime client with a
//! proof-signing source connects, chats, reconnects with a fresh proof each
//! time and retries once with the server's nonce; raw handshakes with
//! replayed, misdirected, mis-signed, stale or missing proofs, and bound
//! tokens sent as Bearer, are each refused with 401 and a DPoP challenge.
//! Proofs are signed here with P-256 keys from aws-lc-rs, independently of
//! the SDK.
//!
//! (Over 500 lines: the signer, the token source and the raw handshake are
//! at the top, then one test per rule; they share those helpers.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sessionkit_examples::protocol::{ClientFrame, ServerFrame};
use sessionkit_examples::server::{ChatServer, ServerConfig, UserLimits};
use sessionkit_mock_idp::MockIdp;
use sessionkit_realtime::{
    Backoff, BearerToken, BoxFuture, Incoming, ProofRequest, RealtimeClient, ReconnectReason,
    State, StaticToken, TimedToken, TokenError, TokenSource,
};
use tokio::sync::mpsc::Receiver;
use tokio_tungstenite::tungstenite;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::{HeaderValue, header};
use tokio_util::sync::CancellationToken;

use crate::support::{Client, claims, idp, server, server_with, signed, token, within};

fn sha256_b64(bytes: &[u8]) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes).as_ref())
}

fn random_id() -> String {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes).expect("random");
    B64.encode(bytes)
}

/// A client's DPoP key (P-256).
struct Key(EcdsaKeyPair);

impl Key {
    fn new() -> Self {
        Self(EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING).expect("p-256"))
    }

    fn coordinates(&self) -> (String, String) {
        let point = self.0.public_key().as_ref();
        (B64.encode(&point[1..33]), B64.encode(&point[33..]))
    }

    /// The RFC 7638 thumbprint, from its definition.
    fn jkt(&self) -> String {
        let (x, y) = self.coordinates();
        sha256_b64(format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#).as_bytes())
    }

    fn sign(&self, claims: &Value) -> String {
        let (x, y) = self.coordinates();
        let header = json!({"typ": "dpop+jwt", "alg": "ES256",
            "jwk": {"kty": "EC", "crv": "P-256", "x": x, "y": y}});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .0
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    /// A good proof for `htm` `htu` with `token`'s `ath`, issued `age`
    /// seconds ago by the system clock (the chat server's), and `extra` claims.
    fn proof(&self, htm: &str, htu: &str, token: Option<&str>, extra: &[(&str, Value)]) -> String {
        let mut claims = json!({
            "jti": random_id(),
            "htm": htm,
            "htu": htu,
            "iat": unix_now(),
        });
        if let Some(token) = token {
            claims["ath"] = json!(sha256_b64(token.as_bytes()));
        }
        for (name, value) in extra {
            claims[*name] = value.clone();
        }
        self.sign(&claims)
    }
}

fn unix_now() -> i64 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    i64::try_from(secs).expect("time")
}

/// A DPoP-bound access token for `user`: the chat client's device flow,
/// its token request carrying a proof by `key`.
async fn bound_token(idp: &MockIdp, user: &str, key: &Key) -> String {
    let http = reqwest::Client::new();
    let device: Value = http
        .post(idp.url("/device_authorization"))
        .form(&[("client_id", "chat-example"), ("scope", "openid profile")])
        .send()
        .await
        .expect("device authorization")
        .json()
        .await
        .expect("JSON");
    idp.control()
        .approve_device(device["user_code"].as_str().expect("user_code"), user)
        .expect("approve");
    let proof = key.proof("POST", &idp.url("/token"), None, &[]);
    let body: Value = http
        .post(idp.url("/token"))
        .header("DPoP", proof)
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
            ("device_code", device["device_code"].as_str().expect("code")),
            ("client_id", "chat-example"),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["token_type"], "DPoP", "{body}");
    let token = body["access_token"].as_str().expect("access token");
    assert_eq!(
        claims_of(token)["cnf"]["jkt"],
        key.jkt(),
        "bound to the key"
    );
    token.to_owned()
}

fn claims_of(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT");
    serde_json::from_slice(&B64.decode(payload).expect("b64")).expect("JSON")
}

/// A token source for the realtime client: a fixed bound token, and a
/// new proof by `key` for every handshake (the `jti`s are recorded).
struct Signing {
    tokens: StaticToken,
    key: Key,
    jtis: Mutex<Vec<String>>,
    nonces: Mutex<Vec<Option<String>>>,
}

impl Signing {
    fn new(token: &str, key: Key) -> Arc<Self> {
        Arc::new(Self {
            tokens: StaticToken::new(token),
            key,
            jtis: Mutex::new(Vec::new()),
            nonces: Mutex::new(Vec::new()),
        })
    }

    fn jtis(&self) -> Vec<String> {
        self.jtis.lock().expect("lock").clone()
    }

    fn nonces(&self) -> Vec<Option<String>> {
        self.nonces.lock().expect("lock").clone()
    }
}

impl TokenSource for Signing {
    fn token(&self) -> BoxFuture<'_, Result<TimedToken, TokenError>> {
        self.tokens.token()
    }

    fn rejected<'a>(
        &'a self,
        rejected: &'a BearerToken,
    ) -> BoxFuture<'a, Result<TimedToken, TokenError>> {
        self.tokens.rejected(rejected)
    }

    fn cancellation(&self) -> CancellationToken {
        self.tokens.cancellation()
    }

    fn dpop_proof<'a>(
        &'a self,
        request: ProofRequest<'a>,
    ) -> BoxFuture<'a, Option<Result<String, TokenError>>> {
        let jti = random_id();
        let mut claims = json!({
            "jti": jti,
            "htm": request.method,
            "htu": request.url,
            "iat": unix_now(),
            "ath": sha256_b64(request.token.secret().as_bytes()),
        });
        if let Some(nonce) = request.nonce {
            claims["nonce"] = json!(nonce);
        }
        self.jtis.lock().expect("lock").push(jti);
        self.nonces
            .lock()
            .expect("lock")
            .push(request.nonce.map(str::to_owned));
        let proof = self.key.sign(&claims);
        Box::pin(std::future::ready(Some(Ok(proof))))
    }
}

fn realtime(server: &ChatServer, source: Arc<Signing>) -> (RealtimeClient, Receiver<Incoming>) {
    RealtimeClient::builder(server.ws_url())
        .backoff(Backoff::new(
            Duration::from_millis(10),
            2.0,
            Duration::from_millis(100),
        ))
        .build(source)
        .expect("client")
}

/// The next protocol frame from the realtime client's inbox.
async fn next_frame(incoming: &mut Receiver<Incoming>) -> ServerFrame {
    match within("a frame", incoming.recv()).await {
        Some(Incoming::Text(text)) => serde_json::from_str(&text).expect("a frame"),
        other => panic!("expected a frame, got {other:?}"),
    }
}

async fn wait_for_state(client: &RealtimeClient, pick: impl FnMut(&State) -> bool) -> State {
    let mut state = client.state();
    within("a state", state.wait_for(pick))
        .await
        .expect("state channel")
        .clone()
}

/// A raw handshake with `Authorization: SCHEME TOKEN` and these `DPoP` headers.
async fn open(
    url: &str,
    scheme: &str,
    token: &str,
    proofs: &[&str],
) -> Result<crate::support::Ws, tungstenite::Error> {
    let mut request = url.into_client_request().expect("request");
    request.headers_mut().insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("{scheme} {token}")).expect("header"),
    );
    for proof in proofs {
        request
            .headers_mut()
            .append("DPoP", HeaderValue::from_str(proof).expect("header"));
    }
    within("handshake", tokio_tungstenite::connect_async(request))
        .await
        .map(|(ws, _)| ws)
}

/// Asserts a 401 whose challenge is `DPoP error="ERROR"`; returns the
/// answer's `DPoP-Nonce`.
async fn assert_refused(
    url: &str,
    scheme: &str,
    token: &str,
    proofs: &[&str],
    error: &str,
    case: &str,
) -> Option<String> {
    let response = match open(url, scheme, token, proofs).await {
        Err(tungstenite::Error::Http(response)) => response,
        Err(other) => panic!("{case}: expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("{case}: the handshake was accepted"),
    };
    assert_eq!(response.status(), 401, "{case}");
    let challenge = response
        .headers()
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        challenge.starts_with(&format!("DPoP error=\"{error}\"")),
        "{case}: challenge {challenge:?}"
    );
    let body = String::from_utf8(response.body().clone().unwrap_or_default()).expect("utf-8");
    assert!(!body.contains(token), "{case}: the token in the body");
    response
        .headers()
        .get("dpop-nonce")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

#[tokio::test]
async fn a_realtime_client_with_a_bound_token_connects_sends_and_receives() {
    let idp = idp().await;
    let server = server(&idp).await;
    let key = Key::new();
    let token = bound_token(&idp, "alice", &key).await;
    let source = Signing::new(&token, key);
    let (client, mut incoming) = realtime(&server, source.clone());

    let connected = wait_for_state(&client, |s| matches!(s, State::Connected { .. })).await;
    assert_eq!(connected, State::Connected { generation: 1 });
    assert!(
        matches!(next_frame(&mut incoming).await, ServerFrame::Hello { user, .. } if user == "alice")
    );
    let join = ClientFrame::Join {
        room: "dpop".into(),
        after: 0,
    };
    client
        .send(serde_json::to_string(&join).expect("JSON"))
        .await
        .expect("send");
    assert!(
        matches!(next_frame(&mut incoming).await, ServerFrame::Joined { room, .. } if room == "dpop")
    );
    let say = ClientFrame::Send {
        room: "dpop".into(),
        id: "m1".into(),
        text: "bound and proven".into(),
    };
    client
        .send(serde_json::to_string(&say).expect("JSON"))
        .await
        .expect("send");
    let mut acked = false;
    let mut seen = false;
    while !(acked && seen) {
        match next_frame(&mut incoming).await {
            ServerFrame::Ack { id, .. } if id == "m1" => acked = true,
            ServerFrame::Message(m) if m.text == "bound and proven" => seen = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    let stats = server.handshake_stats();
    assert_eq!(
        (stats.attempts, stats.dpop_accepted, stats.unauthorized),
        (1, 1, 0),
        "{stats:?}"
    );
    assert_eq!(source.jtis().len(), 1);
    client.shutdown().await;
}

#[tokio::test]
async fn every_reconnect_signs_a_fresh_proof() {
    let idp = idp().await;
    // One frame at a time: a second frame right behind the first makes the
    // server close the socket (4029, retry after ~50 ms).
    let mut config = ServerConfig::new(idp.issuer());
    config.users = UserLimits {
        frames_per_second: 20,
        frame_burst: 1,
        ..UserLimits::default()
    };
    let server = server_with(config).await;
    let key = Key::new();
    let token = bound_token(&idp, "alice", &key).await;
    let source = Signing::new(&token, key);
    let (client, _incoming) = realtime(&server, source.clone());

    for generation in 1..=4u64 {
        let connected = wait_for_state(&client, |s| is_connected_at(s, generation)).await;
        assert_eq!(connected, State::Connected { generation });
        if generation < 4 {
            for _ in 0..3 {
                client.send("{}").await.expect("send");
            }
            wait_for_state(&client, |s| {
                matches!(
                    s,
                    State::Reconnecting {
                        reason: ReconnectReason::ServerClosed { code: 4029, .. },
                        ..
                    }
                ) || is_connected_at(s, generation + 1)
            })
            .await;
        }
    }
    let jtis = source.jtis();
    let distinct: std::collections::HashSet<&String> = jtis.iter().collect();
    assert_eq!((jtis.len(), distinct.len()), (4, 4), "{jtis:?}");
    let stats = server.handshake_stats();
    assert_eq!(
        (stats.dpop_accepted, stats.dpop_replays, stats.unauthorized),
        (4, 0, 0),
        "{stats:?}"
    );
    assert_eq!(client.metrics().refusals, 0);
    client.shutdown().await;
}

fn is_connected_at(state: &State, generation: u64) -> bool {
    matches!(state, State::Connected { generation: g } if *g >= generation)
}

#[tokio::test]
async fn the_realtime_client_retries_once_with_the_servers_nonce() {
    let idp = idp().await;
    let mut config = ServerConfig::new(idp.issuer());
    config.require_dpop_nonce = true;
    let server = server_with(config).await;
    let key = Key::new();
    let token = bound_token(&idp, "alice", &key).await;
    let source = Signing::new(&token, key);
    let (client, mut incoming) = realtime(&server, source.clone());

    let connected = wait_for_state(&client, |s| {
        assert!(
            !matches!(s, State::Reconnecting { .. }),
            "backed off: {s:?}"
        );
        matches!(s, State::Connected { .. })
    })
    .await;
    assert_eq!(connected, State::Connected { generation: 1 });
    assert!(matches!(
        next_frame(&mut incoming).await,
        ServerFrame::Hello { .. }
    ));
    let stats = server.handshake_stats();
    assert_eq!(
        (
            stats.attempts,
            stats.nonce_challenges,
            stats.unauthorized,
            stats.dpop_accepted
        ),
        (2, 1, 1, 1),
        "exactly two handshakes: {stats:?}"
    );
    let nonces = source.nonces();
    assert_eq!(nonces.len(), 2);
    assert_eq!(nonces[0], None);
    assert!(nonces[1].is_some(), "the retry carries the nonce");
    let metrics = client.metrics();
    assert_eq!(
        (metrics.refusals, metrics.failed_attempts, metrics.connects),
        (0, 0, 1),
        "{metrics:?}"
    );

    // A raw handshake without the nonce is told to use one.
    let url = server.ws_url();
    let other = Key::new();
    let bound = bound_token(&idp, "bob", &other).await;
    let proof = other.proof("GET", &url, Some(&bound), &[]);
    let nonce = assert_refused(
        &url,
        "DPoP",
        &bound,
        &[&proof],
        "use_dpop_nonce",
        "no nonce",
    )
    .await
    .expect("a DPoP-Nonce header");
    let with_nonce = other.proof("GET", &url, Some(&bound), &[("nonce", json!(nonce))]);
    let mut bob = Client::from_ws(
        open(&url, "DPoP", &bound, &[&with_nonce])
            .await
            .expect("open"),
    )
    .await;
    bob.assert_alive().await;
    let stale = other.proof("GET", &url, Some(&bound), &[("nonce", json!("made-up"))]);
    assert_refused(
        &url,
        "DPoP",
        &bound,
        &[&stale],
        "use_dpop_nonce",
        "a made-up nonce",
    )
    .await;
    client.shutdown().await;
}

#[tokio::test]
async fn bad_proofs_and_misused_tokens_are_refused_with_a_dpop_challenge() {
    let idp = idp().await;
    let server = server(&idp).await;
    let url = server.ws_url();
    let key = Key::new();
    let token = bound_token(&idp, "alice", &key).await;
    let good = |extra: &[(&str, Value)]| key.proof("GET", &url, Some(&token), extra);

    // A good proof opens a connection; the same proof again is a replay.
    let proof = good(&[]);
    let mut alice =
        Client::from_ws(open(&url, "DPoP", &token, &[&proof]).await.expect("open")).await;
    alice.assert_alive().await;
    assert_refused(
        &url,
        "DPoP",
        &token,
        &[&proof],
        "invalid_dpop_proof",
        "replayed",
    )
    .await;
    assert_eq!(server.handshake_stats().dpop_replays, 1);

    // For another URL: another port, another path, or the http:// scheme.
    let port = server.local_addr().port();
    for htu in [
        format!("ws://127.0.0.1:{}/ws", port.wrapping_add(1)),
        format!("ws://127.0.0.1:{port}/other"),
        format!("http://127.0.0.1:{port}/ws"),
        format!("wss://127.0.0.1:{port}/ws"),
    ] {
        let proof = key.proof("GET", &htu, Some(&token), &[]);
        assert_refused(&url, "DPoP", &token, &[&proof], "invalid_dpop_proof", &htu).await;
    }
    // A query on the URL is not part of htu.
    let with_query = format!("{url}?room=a");
    let mut ok = Client::from_ws(
        open(&with_query, "DPoP", &token, &[&good(&[])])
            .await
            .expect("open"),
    )
    .await;
    ok.assert_alive().await;

    // For another method.
    let post = key.proof("POST", &url, Some(&token), &[]);
    assert_refused(&url, "DPoP", &token, &[&post], "invalid_dpop_proof", "POST").await;
    // Signed by another key than the token's cnf.jkt.
    let stranger = Key::new().proof("GET", &url, Some(&token), &[]);
    assert_refused(
        &url,
        "DPoP",
        &token,
        &[&stranger],
        "invalid_token",
        "another key",
    )
    .await;
    // Outside the iat window (60 s), either way.
    let old = good(&[("iat", json!(unix_now() - 120))]);
    assert_refused(
        &url,
        "DPoP",
        &token,
        &[&old],
        "invalid_dpop_proof",
        "too old",
    )
    .await;
    let future = good(&[("iat", json!(unix_now() + 120))]);
    assert_refused(
        &url,
        "DPoP",
        &token,
        &[&future],
        "invalid_dpop_proof",
        "future",
    )
    .await;
    // For another token (ath), or none.
    let other_ath = good(&[("ath", json!(sha256_b64(b"another token")))]);
    assert_refused(
        &url,
        "DPoP",
        &token,
        &[&other_ath],
        "invalid_dpop_proof",
        "ath",
    )
    .await;
    let no_ath = key.proof("GET", &url, None, &[]);
    assert_refused(
        &url,
        "DPoP",
        &token,
        &[&no_ath],
        "invalid_dpop_proof",
        "no ath",
    )
    .await;
    // No proof, two proofs, garbage.
    assert_refused(&url, "DPoP", &token, &[], "invalid_dpop_proof", "no proof").await;
    let (a, b) = (good(&[]), good(&[]));
    assert_refused(
        &url,
        "DPoP",
        &token,
        &[&a, &b],
        "invalid_dpop_proof",
        "two proofs",
    )
    .await;
    assert_refused(
        &url,
        "DPoP",
        &token,
        &["a.b.c"],
        "invalid_dpop_proof",
        "garbage",
    )
    .await;

    // The bound token as Bearer (RFC 9449 §7.1), with or without a proof.
    assert_refused(
        &url,
        "Bearer",
        &token,
        &[],
        "invalid_token",
        "bound as Bearer",
    )
    .await;
    assert_refused(
        &url,
        "Bearer",
        &token,
        &[&good(&[])],
        "invalid_token",
        "Bearer + proof",
    )
    .await;
    // An unbound token with a proof.
    let unbound = crate::support::token(&idp, "bob").await;
    let proof = key.proof("GET", &url, Some(&unbound), &[]);
    assert_refused(
        &url,
        "DPoP",
        &unbound,
        &[&proof],
        "invalid_token",
        "unbound as DPoP",
    )
    .await;
    // An invalid token with the DPoP scheme gets the DPoP challenge.
    let forged = signed(&idp, &claims(&idp, "alice", -10));
    let proof = key.proof("GET", &url, Some(&forged), &[]);
    assert_refused(&url, "DPoP", &forged, &[&proof], "invalid_token", "expired").await;

    let stats = server.handshake_stats();
    assert_eq!(stats.dpop_accepted, 2, "{stats:?}");
    assert_eq!(stats.accepted, 2, "{stats:?}");
    assert_eq!(stats.unauthorized, stats.attempts - 2, "{stats:?}");
    // Bearer tokens without a binding still work.
    let mut bob = Client::connect(&server, &crate::support::token(&idp, "bob").await).await;
    bob.assert_alive().await;
}

#[tokio::test]
async fn the_realtime_client_sees_a_proof_refusal_as_a_refused_token() {
    let idp = idp().await;
    let server = server(&idp).await;
    let token = bound_token(&idp, "alice", &Key::new()).await;
    // Proofs by another key than the one the token is bound to.
    let source = Signing::new(&token, Key::new());
    let (client, _incoming) = realtime(&server, source.clone());

    let state = wait_for_state(&client, |s| {
        matches!(
            s,
            State::Reconnecting {
                reason: ReconnectReason::Unauthorized,
                ..
            }
        )
    })
    .await;
    assert!(matches!(state, State::Reconnecting { .. }));
    assert!(source.tokens.rejections() >= 1, "the source was told");
    assert!(client.metrics().refusals >= 2);
    assert_eq!(client.metrics().connects, 0);
    let stats = server.handshake_stats();
    assert_eq!(stats.accepted, 0, "{stats:?}");
    client.shutdown().await;
}

#[tokio::test]
async fn in_band_auth_keeps_the_connections_binding() {
    let idp = idp().await;
    let server = server(&idp).await;
    let url = server.ws_url();
    let key = Key::new();
    let first = bound_token(&idp, "alice", &key).await;
    let proof = key.proof("GET", &url, Some(&first), &[]);
    let mut alice =
        Client::from_ws(open(&url, "DPoP", &first, &[&proof]).await.expect("open")).await;

    // A token bound to the same key moves the connection on.
    let second = bound_token(&idp, "alice", &key).await;
    alice.send(&ClientFrame::Auth { token: second }).await;
    alice
        .wait_for(|f| matches!(f, ServerFrame::Authed { .. }).then_some(()))
        .await;
    // An unbound token, or one bound to another key, does not.
    for other in [
        token(&idp, "alice").await,
        bound_token(&idp, "alice", &Key::new()).await,
    ] {
        alice.send(&ClientFrame::Auth { token: other }).await;
        let code = alice
            .wait_for(|f| match f {
                ServerFrame::Error { code, .. } => Some(code.clone()),
                _ => None,
            })
            .await;
        assert_eq!(code, "bad_token");
    }
    alice.assert_alive().await;
}

/// The Host header only picks one of the server's own URLs: a proof made
/// for another host, sent with that host in `Host`, is refused — it would
/// otherwise let a proof made for one server be used at another.
#[tokio::test]
async fn a_proof_for_another_host_is_refused_whatever_the_host_header_says() {
    let idp = idp().await;
    let server = server(&idp).await;
    let url = server.ws_url();
    let key = Key::new();
    let token = bound_token(&idp, "alice", &key).await;
    let port = server.local_addr().port();
    for host in [format!("evil.example:{port}"), "evil.example".to_owned()] {
        let htu = format!("ws://{host}/ws");
        let proof = key.proof("GET", &htu, Some(&token), &[]);
        let mut request = url.as_str().into_client_request().expect("request");
        let headers = request.headers_mut();
        headers.insert(header::HOST, HeaderValue::from_str(&host).expect("host"));
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("DPoP {token}")).expect("header"),
        );
        headers.insert("DPoP", HeaderValue::from_str(&proof).expect("header"));
        match within("handshake", tokio_tungstenite::connect_async(request)).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 401, "{host}");
            }
            Err(other) => panic!("{host}: expected a refusal, got {other}"),
            Ok(_) => panic!("{host}: a proof for another host was accepted"),
        }
    }
    // The server's own URL still works.
    let proof = key.proof("GET", &url, Some(&token), &[]);
    let mut alice =
        Client::from_ws(open(&url, "DPoP", &token, &[&proof]).await.expect("open")).await;
    alice.assert_alive().await;
}
