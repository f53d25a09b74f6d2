//! The HTTP side: the router, the middleware that applies scripted faults and
//! keeps the request log, the gate that answers discovery while the rest of
//! the provider is still starting, and an accept loop that can drop one
//! connection on purpose (a "dropped connection" fault), holds connections
//! to the limits of `limits.rs`, and drains on shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

use crate::endpoints;
use crate::error::OAuthError;
use crate::limits::{self, Activity, ConnectionLimits, DeadlineBody, InFlight, Slot};
use crate::log::LoggedRequest;
use crate::state::{Listening, Shared};

/// What the accept loop tells each request about its connection.
#[derive(Debug, Clone)]
pub(crate) struct Conn {
    pub(crate) peer: SocketAddr,
    kill: Arc<Notify>,
}

/// A note a handler leaves for the request log (such as the grant type).
#[derive(Debug, Clone)]
pub(crate) struct LogNote(pub(crate) String);

pub(crate) fn endpoint_of(path: &str) -> &'static str {
    match path {
        "/.well-known/openid-configuration" => "discovery",
        "/jwks" | crate::conformance::MOVED_JWKS_PATH => "jwks",
        "/authorize" | "/authorize/login" => "authorize",
        "/token" => "token",
        "/userinfo" => "userinfo",
        "/revoke" => "revocation",
        "/introspect" => "introspection",
        "/end_session" => "end_session",
        "/device_authorization" => "device_authorization",
        "/par" => "par",
        "/device" => "device_verification",
        p if p.starts_with("/account/") => "account",
        p if p.starts_with("/_control") => "control",
        _ => "other",
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let limit = shared.max_body_bytes;
    let inner = Router::new()
        .route(
            "/.well-known/openid-configuration",
            get(endpoints::discovery::discovery),
        )
        .route("/jwks", get(endpoints::discovery::jwks))
        .route(
            crate::conformance::MOVED_JWKS_PATH,
            get(endpoints::discovery::moved_jwks),
        )
        .route(
            "/authorize",
            get(endpoints::authorize::authorize).post(endpoints::authorize::authorize_post),
        )
        .route("/authorize/login", post(endpoints::authorize::login))
        .route("/token", post(endpoints::token::token))
        .route("/par", post(endpoints::par::par))
        .route(
            "/userinfo",
            get(endpoints::userinfo::userinfo).post(endpoints::userinfo::userinfo),
        )
        .route("/revoke", post(endpoints::revoke::revoke))
        .route("/introspect", post(endpoints::revoke::introspect))
        .route(
            "/end_session",
            get(endpoints::end_session::end_session_get)
                .post(endpoints::end_session::end_session_post),
        )
        .route(
            "/device_authorization",
            post(endpoints::device::device_authorization),
        )
        .route(
            "/device",
            get(endpoints::device::verification).post(endpoints::device::submit),
        )
        .route("/account/sessions", get(endpoints::account::list))
        .route(
            "/account/sessions/{sid}",
            axum::routing::delete(endpoints::account::revoke),
        )
        .route("/", get(endpoints::pages::index))
        .nest("/_control", endpoints::control::router(shared.clone()))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), observe))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(shared.clone());
    let prefix = path_prefix(&shared.issuer);
    if prefix.is_empty() {
        inner
    } else {
        Router::new().nest(&prefix, inner).fallback(not_found)
    }
}

/// The path of the issuer URL, under which every endpoint is served (empty
/// for an issuer without one).
fn path_prefix(issuer: &str) -> String {
    url::Url::parse(issuer)
        .map(|u| u.path().trim_end_matches('/').to_owned())
        .unwrap_or_default()
}

/// What the accept loop serves, from the moment the socket listens. Until
/// the provider is ready (its keys loaded, its client secrets made), a
/// discovery request is answered from the document alone, which needs
/// neither, and logged as the router would; every other request waits for
/// readiness and then goes to the router: none is refused for being early.
/// If start-up fails instead, the waiting requests get a 503.
#[derive(Debug, Clone)]
pub(crate) struct Gate {
    listening: Arc<Listening>,
    discovery_path: Arc<str>,
    /// `None` until the provider is ready; then its router.
    ready: watch::Receiver<Option<Router>>,
}

impl Gate {
    pub(crate) fn new(listening: Listening, ready: watch::Receiver<Option<Router>>) -> Self {
        let discovery_path = format!(
            "{}/.well-known/openid-configuration",
            path_prefix(&listening.issuer)
        );
        Self {
            listening: Arc::new(listening),
            discovery_path: discovery_path.into(),
            ready,
        }
    }

    async fn serve(mut self, request: Request) -> Response {
        let ready = self.ready.borrow().clone();
        let app = match ready {
            Some(app) => app,
            None if request.method() == Method::GET
                && request.uri().path() == &*self.discovery_path =>
            {
                return self.early_discovery(&request);
            }
            None => {
                let ready = self.ready.wait_for(Option::is_some).await;
                match ready.map(|app| app.clone()) {
                    Ok(Some(app)) => app,
                    _ => {
                        return OAuthError::new(
                            StatusCode::SERVICE_UNAVAILABLE,
                            "temporarily_unavailable",
                            "the provider failed to start",
                        )
                        .into_response();
                    }
                }
            }
        };
        match app.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    fn early_discovery(&self, request: &Request) -> Response {
        let listening = &self.listening;
        listening.log.record(LoggedRequest {
            at_ms: listening.clock.now_ms(),
            method: request.method().to_string(),
            path: request.uri().path().to_owned(),
            endpoint: "discovery".to_owned(),
            note: None,
            status: 200,
        });
        endpoints::discovery::document_response(listening.discovery.clone())
    }
}

async fn not_found() -> Response {
    not_found_response()
}

pub(crate) fn not_found_response() -> Response {
    OAuthError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint").into_response()
}

/// Applies a scripted fault, if one is set for this endpoint, and logs the request.
async fn observe(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let endpoint = endpoint_of(&path);
    let method = request.method().to_string();
    let at_ms = shared.clock.now_ms();
    let kill = request.extensions().get::<Conn>().map(|c| c.kill.clone());
    let fault = match endpoint {
        "control" | "other" => None,
        e => shared.faults.take(e),
    };
    let response = match fault {
        None => next.run(request).await,
        Some(fault) => {
            if fault.delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
            }
            if fault.drop_connection {
                shared.log.record(LoggedRequest {
                    at_ms,
                    method,
                    path,
                    endpoint: endpoint.to_owned(),
                    note: Some("fault".to_owned()),
                    status: 0,
                });
                if let Some(kill) = kill {
                    kill.notify_one();
                }
                // The accept loop drops the connection, and this future with it.
                std::future::pending::<()>().await;
                unreachable!("a dropped connection never answers");
            } else if let Some(status) = fault.status {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let body = fault.body.unwrap_or_else(|| {
                    serde_json::json!({"error": "server_error", "error_description": "scripted fault"}).to_string()
                });
                let mut r = (status, body).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                if let Some(secs) = fault.retry_after_secs {
                    r.headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
                }
                r.extensions_mut().insert(LogNote("fault".to_owned()));
                r
            } else if fault.malformed_json {
                let mut r = (StatusCode::OK, "{\"access_token\": \"tr").into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                r.extensions_mut().insert(LogNote("fault".to_owned()));
                r
            } else {
                next.run(request).await
            }
        }
    };
    let mut response = response;
    if matches!(endpoint, "token" | "par" | "userinfo" | "account")
        && let Some(nonce) = crate::endpoints::proof::current_nonce(&shared)
        && let Ok(value) = HeaderValue::from_str(&nonce)
    {
        // RFC 9449 §8.2, §9: a fresh nonce on every answer while they are required.
        response.headers_mut().insert("dpop-nonce", value);
    }
    let note = response.extensions().get::<LogNote>().map(|n| n.0.clone());
    shared.log.record(LoggedRequest {
        at_ms,
        method,
        path,
        endpoint: endpoint.to_owned(),
        note,
        status: response.status().as_u16(),
    });
    response
}

/// Accepts connections until `shutdown`, each held to `limits`, then lets
/// open ones finish (up to 5 s).
pub(crate) async fn serve(
    listener: TcpListener,
    app: Gate,
    tls: Option<tokio_rustls::TlsAcceptor>,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
) {
    let timeout = limits.header_read_timeout;
    let gate = limits::Gate::new(limits);
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors, most likely: let some close.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let Some(slot) = gate.admit(peer.ip()) else {
            tracing::warn!(%peer, "connection refused: too many connections open");
            drop(stream);
            continue;
        };
        let accepted_at = tokio::time::Instant::now();
        let _ = stream.set_nodelay(true);
        let conn = Conn {
            peer,
            kill: Arc::new(Notify::new()),
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tasks.spawn(async move {
            let slot = Arc::new(slot);
            let Some(acceptor) = tls else {
                serve_connection(stream, conn, app, slot, accepted_at, timeout, shutdown).await;
                return;
            };
            let evict = slot.evict.clone();
            let handshake = tokio::select! {
                handshake = tokio::time::timeout_at(accepted_at + timeout, acceptor.accept(stream)) => handshake,
                () = evict.notified() => return,
                () = shutdown.cancelled() => return,
            };
            match handshake {
                Ok(Ok(stream)) => {
                    serve_connection(stream, conn, app, slot, accepted_at, timeout, shutdown).await;
                }
                Ok(Err(err)) => tracing::debug!(%err, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake timed out"),
            }
        });
    }
}

/// Serves one connection until it ends, idles or stalls past `timeout`
/// (counted from `accepted_at` for the first request), is evicted, or the
/// server stops; drops it at once when a fault asks for that.
async fn serve_connection<I>(
    stream: I,
    conn: Conn,
    app: Gate,
    slot: Arc<Slot>,
    accepted_at: tokio::time::Instant,
    timeout: Duration,
    shutdown: CancellationToken,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let kill = conn.kill.clone();
    let evict = slot.evict.clone();
    let activity = Arc::new(watch::Sender::new(Activity::idle_since(accepted_at)));
    let mut idle = activity.subscribe();
    let service =
        hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            slot.served();
            let in_flight = InFlight::start(&activity);
            let deadline = tokio::time::Instant::now() + timeout;
            let mut request = request.map(|body| Body::new(DeadlineBody::new(body, deadline)));
            request.extensions_mut().insert(conn.clone());
            let app = app.clone();
            async move {
                let response = app.serve(request).await;
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(timeout);
    builder.http2().timer(TokioTimer::new());
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        _ = connection.as_mut() => {}
        () = kill.notified() => {}
        () = evict.notified() => {
            tracing::debug!("half-open connection closed to make way for a newer one");
        }
        () = limits::idle_for(&mut idle, timeout) => {
            tracing::debug!("connection closed: no request within the timeout");
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(limits::IDLE_DRAIN, connection).await;
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt as _;

    use super::Conn;
    use crate::config::{Config, SecretSource};
    use crate::keys::KeySet;
    use crate::state::{Listening, Shared};

    async fn status_from(peer: &str, config: &Config, bearer: Option<&str>) -> u16 {
        let keys = KeySet::generate().expect("keys");
        let shared = Arc::new(
            Shared::new(
                config,
                Listening::new(
                    "http://127.0.0.1:1".to_owned(),
                    false,
                    &config.dpop_signing_algs,
                ),
                keys,
            )
            .expect("shared"),
        );
        let app = super::router(shared);
        let mut request = Request::get("/_control/state");
        if let Some(b) = bearer {
            request = request.header("authorization", format!("Bearer {b}"));
        }
        let mut request = request.body(Body::empty()).expect("request");
        request.extensions_mut().insert(Conn {
            peer: peer.parse().expect("addr"),
            kill: Arc::new(tokio::sync::Notify::new()),
        });
        app.oneshot(request)
            .await
            .expect("infallible")
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn the_control_api_refuses_remote_peers_unless_a_secret_allows_them() {
        let default = Config::default();
        assert_eq!(status_from("127.0.0.1:5000", &default, None).await, 200);
        assert_eq!(status_from("[::1]:5000", &default, None).await, 200);
        assert_eq!(status_from("203.0.113.9:5000", &default, None).await, 403);
        let remote = Config {
            control_secret: SecretSource::Value("s".into()),
            control_remote: true,
            ..Config::default()
        };
        assert_eq!(status_from("203.0.113.9:5000", &remote, None).await, 401);
        assert_eq!(
            status_from("203.0.113.9:5000", &remote, Some("s")).await,
            200
        );
        let secret_only = Config {
            control_secret: SecretSource::Value("s".into()),
            ..Config::default()
        };
        assert_eq!(
            status_from("203.0.113.9:5000", &secret_only, Some("s")).await,
            403
        );
    }
}
