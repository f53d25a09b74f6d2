//! The HTTP control API under `/_control/`: the operations of
//! [`crate::Control`] as JSON endpoints, and the dashboard page. Loopback
//! peers only, unless a control secret is configured (then every request
//! needs `Authorization: Bearer SECRET`, and remote peers are allowed only
//! with `control_remote`).
//!
//! Why one file of ~655 lines: one route table behind one guard
//! (cross-site, `Host`, secret), and a small handler per operation that
//! decodes JSON and calls `Control`; splitting the handlers would split the
//! table from the guard that protects it.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::json;

use crate::claims::NextClaims;
use crate::config::{ClientConfig, Lifetimes, User};
use crate::conformance::{RpReport, RunResult};
use crate::control::Control;
use crate::error::OAuthError;
use crate::faults::{ENDPOINTS, Fault};
use crate::server::Conn;
use crate::state::{DeviceScript, Shared};

pub(crate) fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(dashboard))
        .route("/state", get(state))
        .route("/lifetimes", get(get_lifetimes).put(put_lifetimes))
        .route("/users", get(list_users))
        .route(
            "/users/{user}",
            get(get_user).put(put_user).delete(remove_user),
        )
        .route("/users/{user}/revoke", post(revoke_user))
        .route("/sessions", get(sessions))
        .route("/sessions/{sid}/revoke", post(revoke_session))
        .route("/sessions/{sid}/backchannel-logout", post(backchannel))
        .route("/keys/rotate", post(rotate))
        .route("/clock", get(clock).post(move_clock))
        .route("/faults", get(faults).post(add_fault).delete(clear_faults))
        .route("/device/script", post(script_device))
        .route("/device/{code}/approve", post(approve_device))
        .route("/device/{code}/deny", post(deny_device))
        .route("/requests", get(requests).delete(reset_requests))
        .route("/counters", get(counters))
        .route("/deliveries", get(deliveries))
        .route("/tokens", get(tokens))
        .route("/auto-login", put(auto_login))
        .route("/dpop", get(get_dpop).put(put_dpop))
        .route(
            "/refresh-tokens",
            get(get_refresh_tokens).put(put_refresh_tokens),
        )
        .route("/clients", post(register_client))
        .route("/clients/{id}/secret", get(client_secret))
        .route("/clients/{id}/backchannel-logout-uri", put(set_backchannel))
        .route("/conformance", get(conformance_table))
        .route("/conformance/scenarios", get(conformance_scenarios))
        .route(
            "/conformance/runs",
            get(conformance_runs).post(conformance_start),
        )
        .route("/conformance/runs/finish", post(conformance_finish))
        .route(
            "/clients/{id}/next-claims",
            get(pending_next_claims)
                .post(add_next_claims)
                .delete(clear_next_claims),
        )
        .route_layer(middleware::from_fn_with_state(shared, guard))
}

fn control(shared: &Arc<Shared>) -> Control {
    Control::new(shared.clone())
}

fn forbidden(why: &str) -> Response {
    OAuthError::new(StatusCode::FORBIDDEN, "access_denied", why).into_response()
}

async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let peer_is_loopback = request
        .extensions()
        .get::<Conn>()
        .is_some_and(|c| c.peer.ip().is_loopback());
    if !peer_is_loopback && !shared.control_remote {
        return forbidden("the control API answers loopback clients only");
    }
    if let Some(why) = cross_site(&shared, &request) {
        return forbidden(why);
    }
    if let Some(secret) = &shared.control_secret {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !crate::params::constant_time_eq(given.as_bytes(), secret.as_bytes()) {
            let mut e = OAuthError::invalid_token("the control API needs its bearer secret");
            e.error = "invalid_token";
            return e.into_response();
        }
    }
    next.run(request).await
}

/// Why a request must be refused as coming from a web page of another
/// site, if it must: a page a developer visits could otherwise rotate keys
/// or revoke users through the browser (body-less POSTs need no CORS
/// preflight), or reach the API under a rebound DNS name.
/// - `Host` must name this provider or a loopback address (DNS rebinding),
///   unless a control secret guards the API (a rebound page cannot send it);
/// - a changing request (anything but GET/HEAD) from a browser must come
///   from the provider's own pages: `Origin`, when sent, must be the
///   issuer's origin, and `Sec-Fetch-Site`, when sent, must not be
///   `cross-site` or `same-site`.
fn cross_site(shared: &Shared, request: &Request) -> Option<&'static str> {
    let issuer = url::Url::parse(&shared.issuer).ok()?;
    let headers = request.headers();
    // (A request without `Host` comes from no browser: HTTP/1.0 tools.)
    if shared.control_secret.is_none()
        && let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok())
    {
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map_or(host, |(name, _)| name);
        let ours = issuer
            .host_str()
            .is_some_and(|h| h.eq_ignore_ascii_case(name));
        let loopback = name.eq_ignore_ascii_case("localhost")
            || name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        if !ours && !loopback {
            return Some("the control API answers requests for this provider's host only");
        }
    }
    if matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        return None;
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != issuer.origin().ascii_serialization()
    {
        return Some("the control API refuses changes from another site's pages");
    }
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if matches!(fetch_site, Some("cross-site" | "same-site")) {
        return Some("the control API refuses changes from another site's pages");
    }
    None
}

fn bad(message: impl Into<String>) -> Response {
    OAuthError::invalid_request(message).into_response()
}

async fn dashboard(State(shared): State<Arc<Shared>>) -> Html<String> {
    Html(crate::endpoints::pages::dashboard(&shared))
}

async fn state(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let settings = shared.settings();
    let c = control(&shared);
    let mut clients: Vec<_> = settings.clients.keys().cloned().collect();
    clients.sort();
    Json(json!({
        "issuer": shared.issuer,
        "now": shared.clock.now(),
        "clock_frozen": shared.clock.is_frozen(),
        "lifetimes": settings.lifetimes,
        "signing_alg": settings.signing_alg,
        "auto_login": settings.auto_login,
        "dpop_nonce_required": settings.require_dpop_nonce,
        "users": settings.users.iter().map(|u| &u.username).collect::<Vec<_>>(),
        "clients": clients,
        "sessions": c.sessions(None),
        "kids": c.published_kids(),
        "faults": c.faults(),
    }))
}

async fn get_lifetimes(State(shared): State<Arc<Shared>>) -> Json<Lifetimes> {
    Json(shared.settings().lifetimes)
}

async fn put_lifetimes(
    State(shared): State<Arc<Shared>>,
    Json(patch): Json<serde_json::Value>,
) -> Response {
    let mut current = serde_json::to_value(shared.settings().lifetimes).unwrap_or_default();
    let Some(fields) = patch.as_object() else {
        return bad("expected an object of lifetimes in seconds");
    };
    for (k, v) in fields {
        if current.get(k).is_none() {
            return bad(format!("unknown lifetime {k:?}"));
        }
        current[k] = v.clone();
    }
    match serde_json::from_value::<Lifetimes>(current) {
        Ok(l) => {
            control(&shared).set_lifetimes(l);
            Json(l).into_response()
        }
        Err(e) => bad(e.to_string()),
    }
}

async fn revoke_user(
    State(shared): State<Arc<Shared>>,
    Path(user): Path<String>,
) -> Json<serde_json::Value> {
    Json(json!({"ended": control(&shared).revoke_user_sessions(&user)}))
}

async fn sessions(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!({"sessions": control(&shared).sessions(None)}))
}

async fn revoke_session(State(shared): State<Arc<Shared>>, Path(sid): Path<String>) -> Response {
    if control(&shared).end_session(&sid) {
        Json(json!({"ended": true})).into_response()
    } else {
        OAuthError::new(StatusCode::NOT_FOUND, "not_found", "no such session").into_response()
    }
}

async fn backchannel(
    State(shared): State<Arc<Shared>>,
    Path(sid): Path<String>,
) -> Json<serde_json::Value> {
    Json(json!({"sent": control(&shared).send_backchannel_logout(&sid)}))
}

async fn rotate(State(shared): State<Arc<Shared>>) -> Response {
    match control(&shared).rotate_keys().await {
        Ok((rs, es)) => Json(json!({"RS256": rs, "ES256": es})).into_response(),
        Err(e) => OAuthError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            e.to_string(),
        )
        .into_response(),
    }
}

async fn clock(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!({"now": shared.clock.now(), "frozen": shared.clock.is_frozen()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClockMove {
    #[serde(default)]
    advance_secs: Option<i64>,
    #[serde(default)]
    freeze: Option<bool>,
}

async fn move_clock(
    State(shared): State<Arc<Shared>>,
    Json(m): Json<ClockMove>,
) -> Json<serde_json::Value> {
    match m.freeze {
        Some(true) => shared.clock.freeze(),
        Some(false) => shared.clock.unfreeze(),
        None => {}
    }
    if let Some(secs) = m.advance_secs {
        shared.clock.advance_ms(secs.saturating_mul(1000));
    }
    Json(json!({"now": shared.clock.now(), "frozen": shared.clock.is_frozen()}))
}

async fn faults(State(shared): State<Arc<Shared>>) -> Json<Vec<Fault>> {
    Json(control(&shared).faults())
}

async fn add_fault(State(shared): State<Arc<Shared>>, Json(fault): Json<Fault>) -> Response {
    if !ENDPOINTS.contains(&fault.endpoint.as_str()) {
        return bad(format!(
            "unknown endpoint {:?}; one of {}",
            fault.endpoint,
            ENDPOINTS.join(", ")
        ));
    }
    if fault.delay_ms > 600_000 {
        return bad("delay_ms is at most 600000");
    }
    control(&shared).add_fault(fault);
    (StatusCode::CREATED, Json(control(&shared).faults())).into_response()
}

async fn clear_faults(State(shared): State<Arc<Shared>>) -> StatusCode {
    control(&shared).clear_faults();
    StatusCode::NO_CONTENT
}

async fn script_device(
    State(shared): State<Arc<Shared>>,
    Json(script): Json<DeviceScript>,
) -> StatusCode {
    control(&shared).script_device(script);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Approve {
    user: String,
}

async fn approve_device(
    State(shared): State<Arc<Shared>>,
    Path(code): Path<String>,
    Json(a): Json<Approve>,
) -> Response {
    match control(&shared).approve_device(&code, &a.user) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => bad(e.to_string()),
    }
}

async fn deny_device(State(shared): State<Arc<Shared>>, Path(code): Path<String>) -> Response {
    match control(&shared).deny_device(&code) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => bad(e.to_string()),
    }
}

async fn requests(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!({"requests": control(&shared).requests()}))
}

async fn reset_requests(State(shared): State<Arc<Shared>>) -> StatusCode {
    control(&shared).reset_requests();
    StatusCode::NO_CONTENT
}

async fn counters(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!(control(&shared).counters()))
}

async fn deliveries(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!({"deliveries": control(&shared).deliveries()}))
}

async fn tokens(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(json!({"tokens": control(&shared).recent_tokens()}))
}

#[derive(Deserialize)]
struct AutoLogin {
    user: Option<String>,
}

async fn auto_login(State(shared): State<Arc<Shared>>, Json(a): Json<AutoLogin>) -> Response {
    match control(&shared).set_auto_login(a.user.as_deref()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => bad(e.to_string()),
    }
}

fn dpop_state(shared: &Arc<Shared>) -> serde_json::Value {
    let c = control(shared);
    json!({
        "nonce_required": c.dpop_nonce_required(),
        "nonce": c.dpop_nonce(),
        "algs": shared.dpop_algs,
        "window_secs": crate::endpoints::proof::PROOF_WINDOW_SECS,
    })
}

async fn get_dpop(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(dpop_state(&shared))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DpopSettings {
    nonce_required: bool,
}

async fn put_dpop(
    State(shared): State<Arc<Shared>>,
    Json(settings): Json<DpopSettings>,
) -> Json<serde_json::Value> {
    control(&shared).set_dpop_nonce_required(settings.nonce_required);
    Json(dpop_state(&shared))
}

fn refresh_token_state(shared: &Arc<Shared>) -> serde_json::Value {
    let settings = shared.settings();
    json!({
        "rotate": settings.rotate_refresh_tokens,
        "reuse_grace_secs": settings.refresh_token_reuse_grace,
    })
}

async fn get_refresh_tokens(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(refresh_token_state(&shared))
}

/// Any subset of the refresh-token policy.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshTokenSettings {
    rotate: Option<bool>,
    reuse_grace_secs: Option<u64>,
}

async fn put_refresh_tokens(
    State(shared): State<Arc<Shared>>,
    Json(settings): Json<RefreshTokenSettings>,
) -> Json<serde_json::Value> {
    let c = control(&shared);
    if let Some(rotate) = settings.rotate {
        c.set_refresh_token_rotation(rotate);
    }
    if let Some(secs) = settings.reuse_grace_secs {
        c.set_refresh_token_reuse_grace(std::time::Duration::from_secs(secs));
    }
    Json(refresh_token_state(&shared))
}

async fn register_client(
    State(shared): State<Arc<Shared>>,
    Json(client): Json<ClientConfig>,
) -> Response {
    let id = client.client_id.clone();
    match control(&shared).register_client(client) {
        Ok(secret) => (
            StatusCode::CREATED,
            Json(json!({"client_id": id, "client_secret": secret})),
        )
            .into_response(),
        Err(e) => bad(e.to_string()),
    }
}

async fn client_secret(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match control(&shared).client_secret(&id) {
        Some(secret) => Json(json!({"client_secret": secret})).into_response(),
        None => OAuthError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such confidential client",
        )
        .into_response(),
    }
}

#[derive(Deserialize)]
struct BackchannelUri {
    uri: Option<String>,
}

async fn set_backchannel(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(b): Json<BackchannelUri>,
) -> Response {
    match control(&shared).set_backchannel_logout_uri(&id, b.uri.as_deref()) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => bad(e.to_string()),
    }
}

/// The results: an HTML page for a browser, Markdown with `?format=markdown`,
/// else JSON.
async fn conformance_table(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let results = control(&shared).conformance_results();
    if query.as_deref() == Some("format=markdown") {
        return (
            [(header::CONTENT_TYPE, "text/markdown; charset=utf-8")],
            crate::conformance::markdown_table(&results),
        )
            .into_response();
    }
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html {
        let body = crate::endpoints::pages::page(
            "Conformance runs",
            &crate::conformance::table::html_table(&results),
        );
        return Html(body).into_response();
    }
    Json(results).into_response()
}

async fn conformance_scenarios() -> Json<serde_json::Value> {
    let list: Vec<_> = crate::conformance::SCENARIOS
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name,
                "plan": s.plan,
                "expect": s.expect,
                "summary": s.summary,
            })
        })
        .collect();
    Json(serde_json::Value::Array(list))
}

async fn conformance_runs(State(shared): State<Arc<Shared>>) -> Json<Vec<RunResult>> {
    Json(control(&shared).conformance_results())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRun {
    scenario: String,
    client_id: String,
}

async fn conformance_start(
    State(shared): State<Arc<Shared>>,
    Json(start): Json<StartRun>,
) -> Response {
    let shared2 = shared.clone();
    // A scenario with a decoy key generates an RSA key (50–200 ms).
    let started = tokio::task::spawn_blocking(move || {
        control(&shared2).conformance_start(&start.scenario, &start.client_id)
    })
    .await;
    match started {
        Ok(Ok(id)) => (StatusCode::CREATED, Json(serde_json::json!({"id": id}))).into_response(),
        Ok(Err(e)) => bad(e.to_string()),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FinishRun {
    client_id: String,
    #[serde(default)]
    report: Option<RpReport>,
}

async fn conformance_finish(
    State(shared): State<Arc<Shared>>,
    Json(finish): Json<FinishRun>,
) -> Response {
    match control(&shared).conformance_finish(&finish.client_id, finish.report) {
        Some(result) => Json(result).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"error": "not_found", "error_description": "this client has no open run"})),
        )
            .into_response(),
    }
}
fn not_found(what: &str) -> Response {
    OAuthError::new(StatusCode::NOT_FOUND, "not_found", what).into_response()
}

/// A user as the control API shows one: never the password.
fn shown(user: &User) -> serde_json::Value {
    json!({"username": user.username, "sub": user.sub(), "claims": user.claims})
}

async fn list_users(State(shared): State<Arc<Shared>>) -> Json<serde_json::Value> {
    let users: Vec<_> = control(&shared).users().iter().map(shown).collect();
    Json(json!({ "users": users }))
}

async fn get_user(State(shared): State<Arc<Shared>>, Path(user): Path<String>) -> Response {
    match control(&shared).user(&user) {
        Some(u) => Json(shown(&u)).into_response(),
        None => not_found("no such user"),
    }
}

/// `PUT /_control/users/{name}` with a [`User`] as JSON; `username` may be
/// left out (the path names it) but must match when given.
async fn put_user(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Json(mut body): Json<serde_json::Value>,
) -> Response {
    let Some(fields) = body.as_object_mut() else {
        return bad("expected a user object");
    };
    match fields.get("username") {
        None => {
            fields.insert("username".to_owned(), json!(name));
        }
        Some(given) if given.as_str() == Some(name.as_str()) => {}
        Some(_) => return bad("username differs from the name in the path"),
    }
    let user: User = match serde_json::from_value(body) {
        Ok(u) => u,
        Err(e) => return bad(e.to_string()),
    };
    let shown = shown(&user);
    match control(&shared).put_user(user) {
        Ok(true) => Json(shown).into_response(),
        Ok(false) => (StatusCode::CREATED, Json(shown)).into_response(),
        Err(e) => bad(e.to_string()),
    }
}

async fn remove_user(State(shared): State<Arc<Shared>>, Path(user): Path<String>) -> Response {
    match control(&shared).remove_user(&user) {
        Ok(ended) => Json(json!({"removed": user, "ended_sessions": ended})).into_response(),
        Err(_) => not_found("no such user"),
    }
}

async fn pending_next_claims(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Json<serde_json::Value> {
    Json(json!({"next_claims": control(&shared).pending_next_claims(&id)}))
}

async fn add_next_claims(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Json(claims): Json<NextClaims>,
) -> Response {
    let c = control(&shared);
    if !shared.settings().clients.contains_key(&id) {
        return not_found("no such client");
    }
    match c.next_claims(&id, claims) {
        Ok(()) => (
            StatusCode::CREATED,
            Json(json!({"next_claims": c.pending_next_claims(&id)})),
        )
            .into_response(),
        Err(e) => bad(e.to_string()),
    }
}

async fn clear_next_claims(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Json<serde_json::Value> {
    Json(json!({"cleared": control(&shared).clear_next_claims(&id)}))
}
