//! DPoP on the handshake, over real sockets: a source that signs proofs
//! with a P-256 key (aws-lc-rs, independent of the SDK) makes every attempt
//! carry `Authorization: DPoP` and a fresh, verifiable proof for the URL;
//! a `use_dpop_nonce` answer is retried at once, once, with the nonce; the
//! server's latest nonce goes in the next attempt; other 401s count as a
//! refused token, unless the server's challenge lists algorithms without
//! the proof's (the client moves on, and stops once every endpoint said
//! so); DPoP with a transport other than the header stops the client
//! before anything is sent.
//!
//! (Over 500 lines: one concern, DPoP on the handshake; the scripted
//! server's answers and the signing source are shared by every test.)

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::{Value, json};
use sessionkit_realtime::{
    Backoff, BearerToken, BoxFuture, CloseReason, Incoming, ProofRequest, RealtimeClient, State,
    StaticToken, TimedToken, TokenError, TokenSource, TokenTransport,
};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::support::scripted::Scripted;
use crate::support::{is_connected, lock, wait_for};

const LIMIT: Duration = Duration::from_secs(10);

/// Retries so slow that a reconnect within a test means "at once".
fn glacial() -> Backoff {
    Backoff::new(Duration::from_secs(3600), 2.0, Duration::from_secs(3600))
}

fn fast() -> Backoff {
    Backoff::new(Duration::from_millis(10), 2.0, Duration::from_millis(100))
}

/// A [`StaticToken`] whose token is bound to a P-256 key: every
/// `dpop_proof` call signs a new ES256 proof (a new `jti`).
pub(crate) struct Signing {
    tokens: StaticToken,
    key: EcdsaKeyPair,
    /// Every proof request seen: (method, url, nonce).
    asked: Mutex<Vec<(String, String, Option<String>)>>,
    /// Every proof given.
    proofs: Mutex<Vec<String>>,
}

impl Signing {
    pub(crate) fn new(token: &str) -> Arc<Self> {
        Arc::new(Self {
            tokens: StaticToken::new(token),
            key: EcdsaKeyPair::generate(&signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                .expect("p-256"),
            asked: Mutex::new(Vec::new()),
            proofs: Mutex::new(Vec::new()),
        })
    }

    /// Every proof given so far.
    pub(crate) fn proofs(&self) -> Vec<String> {
        lock(&self.proofs).clone()
    }

    fn jwk(&self) -> Value {
        let point = self.key.public_key().as_ref();
        json!({"kty": "EC", "crv": "P-256",
            "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..])})
    }

    fn sign(&self, request: &ProofRequest<'_>) -> String {
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()});
        let mut jti = [0u8; 16];
        aws_lc_rs::rand::fill(&mut jti).expect("random");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let mut claims = json!({
            "jti": B64.encode(jti),
            "htm": request.method,
            "htu": request.url,
            "iat": now,
            "ath": ath(request.token.secret()),
        });
        if let Some(nonce) = request.nonce {
            claims["nonce"] = json!(nonce);
        }
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }

    fn asked(&self) -> Vec<(String, String, Option<String>)> {
        lock(&self.asked).clone()
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
        lock(&self.asked).push((
            request.method.to_owned(),
            request.url.to_owned(),
            request.nonce.map(str::to_owned),
        ));
        let proof = self.sign(&request);
        lock(&self.proofs).push(proof.clone());
        Box::pin(std::future::ready(Some(Ok(proof))))
    }
}

fn ath(token: &str) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// What the server saw of one handshake.
#[derive(Debug, Clone)]
struct Seen {
    authorization: Option<String>,
    /// The proof's claims (its signature checked against its `jwk`).
    claims: Value,
    /// How many `DPoP` headers came.
    proofs: usize,
    /// The `Sessionkit-Endpoints` header: how many endpoints the client has.
    endpoints: Option<String>,
}

/// Checks a proof's signature with the key in its header; its claims.
fn checked_claims(proof: &str) -> Value {
    let parts: Vec<&str> = proof.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let header: Value =
        serde_json::from_slice(&B64.decode(parts[0]).expect("b64")).expect("header");
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    let x = B64
        .decode(header["jwk"]["x"].as_str().expect("x"))
        .expect("x");
    let y = B64
        .decode(header["jwk"]["y"].as_str().expect("y"))
        .expect("y");
    let point = [&[4u8][..], &x, &y].concat();
    let key = UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point);
    let signed = format!("{}.{}", parts[0], parts[1]);
    key.verify(signed.as_bytes(), &B64.decode(parts[2]).expect("sig"))
        .expect("the proof's signature verifies with its jwk");
    serde_json::from_slice(&B64.decode(parts[1]).expect("b64")).expect("claims")
}

/// How the server answers one handshake.
enum Answer {
    /// 101, with a `DPoP-Nonce` when given.
    Accept(Option<&'static str>),
    /// 401 with this DPoP `error` and, when given, a `DPoP-Nonce`.
    Refuse(&'static str, Option<&'static str>),
    /// 401 `invalid_dpop_proof` taking proofs signed with `PS256 EdDSA`
    /// only (never this source's ES256).
    RefuseAlgs,
}

/// Answers the next handshake; returns what it carried (and the socket
/// when accepted).
// The callback's error type is tungstenite's.
#[allow(clippy::result_large_err)]
async fn answer(server: &mut Scripted, how: Answer) -> (Seen, Option<WebSocketStream<TcpStream>>) {
    answer_tcp(server.next_tcp().await, how).await
}

/// Answers the handshake on `tcp`, as [`answer`].
#[allow(clippy::result_large_err)]
async fn answer_tcp(tcp: TcpStream, how: Answer) -> (Seen, Option<WebSocketStream<TcpStream>>) {
    let seen = Arc::new(Mutex::new(None));
    let record = seen.clone();
    let callback = move |request: &Request, mut response: Response| {
        let headers = request.headers();
        let proofs: Vec<&HeaderValue> = headers.get_all("dpop").iter().collect();
        let claims = proofs
            .first()
            .map_or(Value::Null, |p| checked_claims(p.to_str().expect("ascii")));
        *lock(&record) = Some(Seen {
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            claims,
            proofs: proofs.len(),
            endpoints: headers
                .get(sessionkit_realtime::ENDPOINTS_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });
        match how {
            Answer::Accept(nonce) => {
                if let Some(nonce) = nonce {
                    response
                        .headers_mut()
                        .insert("dpop-nonce", HeaderValue::from_static(nonce));
                }
                Ok(response)
            }
            Answer::Refuse(..) | Answer::RefuseAlgs => {
                let (error, nonce, algs) = match how {
                    Answer::Refuse(error, nonce) => (error, nonce, "ES256"),
                    _ => ("invalid_dpop_proof", None, "PS256 EdDSA"),
                };
                let mut refused = ErrorResponse::new(None);
                *refused.status_mut() = StatusCode::UNAUTHORIZED;
                let challenge = format!("DPoP error=\"{error}\", algs=\"{algs}\"");
                refused.headers_mut().insert(
                    "www-authenticate",
                    HeaderValue::from_str(&challenge).expect("header"),
                );
                if let Some(nonce) = nonce {
                    refused
                        .headers_mut()
                        .insert("dpop-nonce", HeaderValue::from_static(nonce));
                }
                Err(refused)
            }
        }
    };
    let accepted = timeout(LIMIT, tokio_tungstenite::accept_hdr_async(tcp, callback))
        .await
        .expect("handshake in time")
        .ok();
    let seen = lock(&seen).take().expect("a handshake came");
    (seen, accepted)
}

fn start(
    url: &str,
    backoff: Backoff,
    source: Arc<Signing>,
) -> (RealtimeClient, tokio::sync::mpsc::Receiver<Incoming>) {
    RealtimeClient::builder(url)
        .backoff(backoff)
        .build(source)
        .expect("client")
}

#[tokio::test]
async fn each_attempt_sends_the_dpop_scheme_and_a_fresh_proof_for_the_url() {
    let mut server = Scripted::start().await;
    let source = Signing::new("bound-tok");
    let url = format!("{}?room=a#top", server.url());
    let (client, mut incoming) = start(&url, fast(), source.clone());
    let mut state = client.state();

    let (first, socket) = answer(&mut server, Answer::Accept(None)).await;
    wait_for(&mut state, is_connected).await;
    assert_eq!(first.authorization.as_deref(), Some("DPoP bound-tok"));
    assert_eq!(first.proofs, 1);
    assert_eq!(first.claims["htm"], "GET");
    // The WebSocket URL without query and fragment.
    assert_eq!(first.claims["htu"], server.url());
    assert_eq!(first.claims["ath"], ath("bound-tok"));
    assert!(first.claims.get("nonce").is_none());
    // A client of one URL says so: a balancing server leaves it alone.
    assert_eq!(first.endpoints.as_deref(), Some("1"));
    // The connection works.
    let mut socket = socket.expect("accepted");
    {
        use futures_util::{SinkExt as _, StreamExt as _};
        use tokio_tungstenite::tungstenite::Message;
        client.send("over dpop").await.expect("send");
        let got = timeout(LIMIT, socket.next()).await.expect("in time");
        assert!(matches!(got, Some(Ok(Message::Text(t))) if t == "over dpop"));
        socket
            .send(Message::text("back"))
            .await
            .expect("server send");
        assert_eq!(
            timeout(LIMIT, incoming.recv()).await.expect("in time"),
            Some(Incoming::Text("back".to_owned()))
        );
    }

    // The server drops the connection: the reconnect signs a new proof.
    drop(socket);
    let (second, _socket) = answer(&mut server, Answer::Accept(None)).await;
    assert_eq!(second.authorization.as_deref(), Some("DPoP bound-tok"));
    assert_eq!(second.claims["htu"], server.url());
    assert_ne!(second.claims["jti"], first.claims["jti"], "a fresh proof");
    assert_eq!(source.asked().len(), 2, "one proof per attempt");
    assert!(
        source
            .asked()
            .iter()
            .all(|(m, u, n)| m == "GET" && *u == server.url() && n.is_none())
    );
    client.shutdown().await;
}

#[tokio::test]
async fn use_dpop_nonce_is_retried_at_once_with_the_nonce_and_the_latest_nonce_is_kept() {
    let mut server = Scripted::start().await;
    let source = Signing::new("bound-tok");
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();

    let (first, _) = answer(&mut server, Answer::Refuse("use_dpop_nonce", Some("n-1"))).await;
    assert!(first.claims.get("nonce").is_none());
    let (second, socket) = answer(&mut server, Answer::Accept(Some("n-2"))).await;
    // The same attempt (generation 1), with no wait in between.
    let connected = wait_for(&mut state, |s| {
        assert!(
            !matches!(s, State::Reconnecting { .. }),
            "backed off: {s:?}"
        );
        is_connected(s)
    })
    .await;
    assert_eq!(connected, State::Connected { generation: 1 });
    assert_eq!(second.claims["nonce"], "n-1");
    assert_ne!(second.claims["jti"], first.claims["jti"]);
    let metrics = client.metrics();
    assert_eq!(
        (metrics.refusals, metrics.failed_attempts, metrics.connects),
        (0, 0, 1),
        "{metrics:?}"
    );
    assert_eq!(source.tokens.rejections(), 0, "no refresh for a nonce");

    // The 101 brought a newer nonce: the next attempt uses it.
    drop(socket);
    let (third, _socket) = answer(&mut server, Answer::Accept(None)).await;
    assert_eq!(third.claims["nonce"], "n-2");
    assert_eq!(source.asked().len(), 3, "one proof per handshake");
    client.shutdown().await;
}

#[tokio::test]
async fn the_nonce_retry_happens_once_then_it_is_a_refused_token() {
    let mut server = Scripted::start().await;
    let source = Signing::new("bound-tok");
    let (client, _incoming) = start(&server.url(), glacial(), source.clone());
    let mut state = client.state();

    answer(&mut server, Answer::Refuse("use_dpop_nonce", Some("n-1"))).await;
    let (retry, _) = answer(&mut server, Answer::Refuse("use_dpop_nonce", Some("n-2"))).await;
    assert_eq!(retry.claims["nonce"], "n-1");
    // A refused token: one forced refresh and a new attempt at once, with
    // the newest nonce.
    let (after_refusal, _socket) = answer(&mut server, Answer::Accept(None)).await;
    assert_eq!(after_refusal.claims["nonce"], "n-2");
    wait_for(&mut state, is_connected).await;
    assert_eq!(source.tokens.rejections(), 1);
    assert_eq!(client.metrics().refusals, 1);
    client.shutdown().await;
}

#[tokio::test]
async fn other_dpop_refusals_count_as_a_refused_token() {
    let mut server = Scripted::start().await;
    let source = Signing::new("bound-tok");
    let (client, _incoming) = start(&server.url(), glacial(), source.clone());
    let mut state = client.state();

    let (first, _) = answer(&mut server, Answer::Refuse("invalid_dpop_proof", None)).await;
    let (second, _socket) = answer(&mut server, Answer::Accept(None)).await;
    wait_for(&mut state, is_connected).await;
    assert_ne!(second.claims["jti"], first.claims["jti"]);
    assert_eq!(source.tokens.rejections(), 1, "one forced refresh");
    assert_eq!(client.metrics().refusals, 1);
    client.shutdown().await;
}

#[tokio::test]
async fn dpop_needs_the_header_transport() {
    for transport in [
        TokenTransport::subprotocol("bearer"),
        TokenTransport::query_parameter("access_token"),
    ] {
        let mut server = Scripted::start().await;
        let source = Signing::new("bound-tok");
        let (client, _incoming) = RealtimeClient::builder(server.url())
            .backoff(glacial())
            .token_transport(transport.clone())
            .build(source.clone())
            .expect("client");
        let mut state = client.state();
        let closed = wait_for(&mut state, |s| matches!(s, State::Closed(_))).await;
        assert_eq!(
            closed,
            State::Closed(CloseReason::DpopNeedsHeader),
            "{transport:?}"
        );
        assert!(
            server
                .connection_within(Duration::from_millis(100))
                .await
                .is_none(),
            "nothing was sent"
        );
    }
}

#[tokio::test]
async fn a_source_without_dpop_keeps_the_bearer_scheme() {
    let source = StaticToken::new("t");
    let token = BearerToken::new("t");
    let asked = (&source as &dyn TokenSource)
        .dpop_proof(ProofRequest::new("GET", "ws://127.0.0.1:1/ws", &token))
        .await;
    assert_eq!(asked, None);
}

/// Two nodes and a client of both (fast backoff).
struct TwoNodes {
    nodes: [Scripted; 2],
    urls: Vec<String>,
    client: RealtimeClient,
    _incoming: tokio::sync::mpsc::Receiver<Incoming>,
}

impl TwoNodes {
    async fn start(source: Arc<Signing>) -> Self {
        let nodes = [Scripted::start().await, Scripted::start().await];
        let urls: Vec<String> = nodes.iter().map(Scripted::url).collect();
        let (client, incoming) = RealtimeClient::builder_multi(urls.clone())
            .backoff(fast())
            .build(source)
            .expect("client");
        Self {
            nodes,
            urls,
            client,
            _incoming: incoming,
        }
    }

    /// The first connection, on whichever node the client picked.
    async fn first(&mut self) -> (usize, TcpStream) {
        let [a, b] = &mut self.nodes;
        tokio::select! {
            tcp = a.next_tcp() => (0, tcp),
            tcp = b.next_tcp() => (1, tcp),
        }
    }
}

/// The server closes `socket` with 1001, "going away".
async fn go_away(socket: &mut WebSocketStream<TcpStream>) {
    use futures_util::SinkExt as _;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::protocol::CloseFrame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    let frame = CloseFrame {
        code: CloseCode::Away,
        reason: "server shutting down".into(),
    };
    let _ = socket.send(Message::Close(Some(frame))).await;
}

#[tokio::test]
async fn each_endpoint_keeps_its_own_nonce() {
    let source = Signing::new("bound-tok");
    let mut two = TwoNodes::start(source.clone()).await;
    let (on, tcp) = two.first().await;
    let nonces = ["nonce-of-0", "nonce-of-1"];
    let (seen, socket) = answer_tcp(tcp, Answer::Accept(Some(nonces[on]))).await;
    assert!(seen.claims.get("nonce").is_none());
    assert_eq!(seen.endpoints.as_deref(), Some("2"), "it can be moved");
    let mut socket = socket.expect("accepted");
    let mut on = on;
    // Each node goes away in turn: the proof for a node carries that
    // node's nonce (none before it gave one), never the other's.
    for round in 0..4 {
        go_away(&mut socket).await;
        let next = 1 - on;
        let (seen, accepted) =
            answer(&mut two.nodes[next], Answer::Accept(Some(nonces[next]))).await;
        assert_eq!(seen.claims["htu"], two.urls[next], "round {round}");
        if round == 0 {
            assert!(seen.claims.get("nonce").is_none(), "{:?}", seen.claims);
        } else {
            assert_eq!(seen.claims["nonce"], nonces[next], "round {round}");
        }
        socket = accepted.expect("accepted");
        on = next;
    }
    two.client.shutdown().await;
}

fn refused_algorithm() -> CloseReason {
    CloseReason::DpopAlgorithm {
        accepted: vec!["PS256".to_owned(), "EdDSA".to_owned()],
        signs_with: "ES256".to_owned(),
    }
}

#[tokio::test]
async fn a_server_taking_no_proof_signed_this_way_stops_the_client_saying_what_it_takes() {
    let mut server = Scripted::start().await;
    let source = Signing::new("bound-tok");
    let (client, _incoming) = start(&server.url(), fast(), source.clone());
    let mut state = client.state();

    answer(&mut server, Answer::RefuseAlgs).await;
    let closed = wait_for(&mut state, |s| matches!(s, State::Closed(_))).await;
    assert_eq!(closed, State::Closed(refused_algorithm()));
    // Neither a new token nor a new proof would change the answer.
    assert_eq!(source.tokens.rejections(), 0, "no forced refresh");
    assert_eq!(source.asked().len(), 1, "no second proof");
    assert_eq!(client.metrics().refusals, 0, "not a refused token");
    assert!(
        server
            .connection_within(Duration::from_millis(200))
            .await
            .is_none(),
        "no further attempt"
    );
}

#[tokio::test]
async fn one_node_refusing_the_algorithm_moves_the_client_on_and_all_of_them_stop_it() {
    let source = Signing::new("bound-tok");
    let mut two = TwoNodes::start(source.clone()).await;
    let mut state = two.client.state();
    let (bad, tcp) = two.first().await;
    answer_tcp(tcp, Answer::RefuseAlgs).await;
    // The other node takes the proof: connected there, not stopped.
    let good = 1 - bad;
    let (_, socket) = answer(&mut two.nodes[good], Answer::Accept(None)).await;
    wait_for(&mut state, |s| {
        assert!(!matches!(s, State::Closed(_)), "stopped: {s:?}");
        is_connected(s)
    })
    .await;
    assert_eq!(source.tokens.rejections(), 0);

    // It goes away; now both refuse the algorithm, one after the other (the
    // connection in between started the count again): the client stops.
    go_away(&mut socket.expect("accepted")).await;
    answer(&mut two.nodes[bad], Answer::RefuseAlgs).await;
    answer(&mut two.nodes[good], Answer::RefuseAlgs).await;
    let closed = wait_for(&mut state, |s| matches!(s, State::Closed(_))).await;
    assert_eq!(closed, State::Closed(refused_algorithm()));
    assert_eq!(source.asked().len(), 4, "one proof per handshake");
    assert_eq!(source.tokens.rejections(), 0, "never a refresh");
}
