//! The authorization endpoint: checks the request strictly, shows the login
//! page (pick a user, or type name and password; consent when asked for),
//! honours `prompt`, `login_hint` and auto-login, and redirects back with a
//! single-use code, the `state` and the `iss` parameter (RFC 9207). A
//! `dpop_jkt` (RFC 9449 §10) binds the code to that DPoP key. A request
//! pushed to the PAR endpoint (RFC 9126, `par.rs`) comes back here as
//! `client_id` + `request_uri`, and passes the same checks.
//!
//! Errors about the client or the redirect URI are shown as a page and never
//! redirected (RFC 6749 §4.1.2.1); every other error goes back to the client.
//!
//! Why one file of ~850 lines: the authorization request's checks (shared
//! with the PAR endpoint), the login page it may show, the form that page
//! posts and the redirect with the code are the steps of one request (the
//! pending request is handed between them); a third of the file is the HTML
//! of the page and its unit tests.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use bytes::Bytes;

use crate::endpoints::pages::{esc, page};
use crate::keys::random_token;
use crate::params::Params;
use crate::state::{CodeGrant, PendingAuth, Session, Shared};

/// The scopes a client may ask for (at the authorization and device endpoints).
pub(crate) const SUPPORTED_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "email",
    "offline_access",
    crate::config::ACCOUNT_SCOPE,
];

/// Does `given` match the registered `registered` redirect URI? Exactly, or
/// for loopback IP literals and `localhost` with any port (RFC 8252 §7.3).
pub(crate) fn redirect_matches(registered: &str, given: &str) -> bool {
    if registered == given {
        return true;
    }
    let (Ok(r), Ok(g)) = (url::Url::parse(registered), url::Url::parse(given)) else {
        return false;
    };
    let loopback = |u: &url::Url| match u.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    r.scheme() == "http"
        && g.scheme() == "http"
        && loopback(&r)
        && r.host() == g.host()
        && r.path() == g.path()
        && r.query() == g.query()
        && g.fragment().is_none()
        && g.username().is_empty()
        && g.password().is_none()
}

pub(crate) fn error_page(status: StatusCode, title: &str, detail: &str) -> Response {
    let body = page(title, &format!("<p class=\"error\">{}</p>", esc(detail)));
    (status, Html(body)).into_response()
}

/// The authentication contexts this provider can claim to have satisfied
/// (it asks for a password either way; the names let tests ask for one).
pub(crate) const ACR_VALUES: &[&str] = &["urn:mock-idp:acr:password", "urn:mock-idp:acr:mfa"];

/// The `acr` for a request's `acr_values`: the first one supported, else the
/// password context (what the provider did).
fn choose_acr(requested: &str) -> String {
    requested
        .split(' ')
        .find(|v| ACR_VALUES.contains(v))
        .unwrap_or(ACR_VALUES[0])
        .to_owned()
}

/// Redirects to the client with `params`, plus `iss` on every response.
pub(crate) fn redirect_to_client(
    shared: &Shared,
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
) -> Response {
    redirect_with_iss(redirect_uri, params, state, Some(&shared.issuer))
}

/// [`redirect_to_client`] with the `iss` given (a conformance scenario may
/// change or drop it).
fn redirect_with_iss(
    redirect_uri: &str,
    params: &[(&str, &str)],
    state: Option<&str>,
    iss: Option<&str>,
) -> Response {
    let Ok(mut url) = url::Url::parse(redirect_uri) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad redirect",
            "the redirect URI is not a URL",
        );
    };
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in params {
            q.append_pair(k, v);
        }
        if let Some(state) = state {
            q.append_pair("state", state);
        }
        if let Some(iss) = iss {
            q.append_pair("iss", iss);
        }
    }
    let mut response = Redirect::to(url.as_str()).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn client_error(
    shared: &Shared,
    pending: &PendingAuth,
    error: &str,
    description: &str,
) -> Response {
    redirect_to_client(
        shared,
        &pending.redirect_uri,
        &[("error", error), ("error_description", description)],
        pending.state.as_deref(),
    )
}

/// The browser session's cookie. Browsers do not keep cookies apart by port,
/// so the name carries a hash of the issuer: two providers on one host do not
/// overwrite each other's session.
pub(crate) fn session_cookie(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == shared.cookie_name)
        .map(|(_, v)| v.to_owned())
}

fn device_name(params: &Params, headers: &HeaderMap) -> String {
    if let Some(name) = params.get("device_name") {
        return name.chars().take(80).collect();
    }
    let agent = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("unknown device");
    agent.chars().take(80).collect()
}

pub(crate) async fn authorize(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match Params::from_query(query.as_deref()) {
        Ok(params) => start(&shared, &headers, &params),
        Err(e) => error_page(StatusCode::BAD_REQUEST, "Bad request", &e.description),
    }
}

pub(crate) async fn authorize_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error_page(e.status(), "Bad request", &e.body_text()),
    };
    match Params::from_form(&headers, &body) {
        Ok(params) => start(&shared, &headers, &params),
        Err(e) => error_page(StatusCode::BAD_REQUEST, "Bad request", &e.description),
    }
}

/// Why an authorization request is refused: shown as a page when the
/// client or its redirect URI is in doubt (RFC 6749 §4.1.2.1), else sent
/// back to the client.
pub(crate) enum Refusal {
    Page {
        status: StatusCode,
        title: &'static str,
        detail: String,
    },
    ToClient {
        pending: Box<PendingAuth>,
        error: &'static str,
        description: String,
    },
}

impl Refusal {
    fn page(title: &'static str, detail: impl Into<String>) -> Self {
        Refusal::Page {
            status: StatusCode::BAD_REQUEST,
            title,
            detail: detail.into(),
        }
    }

    fn to_client(
        pending: &PendingAuth,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Refusal::ToClient {
            pending: Box::new(pending.clone()),
            error,
            description: description.into(),
        }
    }

    fn respond(self, shared: &Shared) -> Response {
        match self {
            Refusal::Page {
                status,
                title,
                detail,
            } => error_page(status, title, &detail),
            Refusal::ToClient {
                pending,
                error,
                description,
            } => client_error(shared, &pending, error, &description),
        }
    }

    /// The refusal as the PAR endpoint answers it: a 400 with the error
    /// code the redirect would carry (`invalid_request` for a page's).
    pub(crate) fn into_oauth(self) -> crate::error::OAuthError {
        match self {
            Refusal::Page { title, detail, .. } => {
                crate::error::OAuthError::invalid_request(format!("{title}: {detail}"))
            }
            Refusal::ToClient {
                error, description, ..
            } => crate::error::OAuthError::new(StatusCode::BAD_REQUEST, error, description),
        }
    }
}

/// An authorization request that passed every check.
pub(crate) struct Checked {
    pending: PendingAuth,
    prompts: Vec<String>,
    max_age: Option<i64>,
}

/// Checks the authorization request `params` of `client`: the redirect URI,
/// PAR when required (`pushed`: the parameters came through the PAR
/// endpoint), response type and mode, PKCE, `dpop_jkt`, scopes, resources,
/// `prompt` and `max_age`. The PAR endpoint runs the same checks.
pub(crate) fn check_request(
    shared: &Shared,
    settings: &crate::state::Settings,
    client: &crate::state::RegisteredClient,
    params: &Params,
    headers: &HeaderMap,
    pushed: bool,
) -> Result<Checked, Refusal> {
    let client_id = client.config.client_id.as_str();
    let Some(redirect_uri) = params.get("redirect_uri") else {
        return Err(Refusal::page("Bad request", "redirect_uri is missing"));
    };
    if !client
        .config
        .redirect_uris
        .iter()
        .any(|r| redirect_matches(r, redirect_uri))
    {
        return Err(Refusal::page(
            "Redirect URI not registered",
            format!("{redirect_uri:?} is not a registered redirect URI of {client_id:?}"),
        ));
    }
    let now = shared.clock.now();
    let mut pending = PendingAuth {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        state: params.get("state").map(str::to_owned),
        nonce: params.get("nonce").map(str::to_owned),
        scope: params.scope(),
        code_challenge: String::new(),
        prompt_consent: false,
        login_hint: params.get("login_hint").map(str::to_owned),
        device_name: device_name(params, headers),
        audience: client.config.audience.clone(),
        acr: params.get("acr_values").map(choose_acr),
        created_at: now,
        dpop_jkt: None,
    };
    let refuse = |pending: &PendingAuth, error, description: &str| {
        Err(Refusal::to_client(pending, error, description))
    };
    if !pushed
        && (settings.require_pushed_authorization_requests
            || client.config.require_pushed_authorization_requests)
    {
        return refuse(
            &pending,
            "invalid_request",
            "pushed authorization requests are required: push the request to the PAR endpoint and send its request_uri",
        );
    }
    if params.get("response_type") != Some("code") {
        return refuse(
            &pending,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    if params.get("response_mode").is_some_and(|m| m != "query") {
        return refuse(
            &pending,
            "invalid_request",
            "only response_mode=query is supported",
        );
    }
    if params.get("request").is_some() {
        return refuse(
            &pending,
            "request_not_supported",
            "request objects are not supported",
        );
    }
    if params.get("request_uri").is_some() {
        return refuse(
            &pending,
            "invalid_request",
            "request_uri takes only client_id beside it",
        );
    }
    if !client.config.allows_grant("authorization_code") {
        return refuse(
            &pending,
            "unauthorized_client",
            "this client may not use the authorization code grant",
        );
    }
    let Some(challenge) = params.get("code_challenge") else {
        return refuse(
            &pending,
            "invalid_request",
            "PKCE is required: code_challenge is missing",
        );
    };
    if params.get("code_challenge_method") != Some("S256") {
        return refuse(
            &pending,
            "invalid_request",
            "code_challenge_method must be S256",
        );
    }
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return refuse(
            &pending,
            "invalid_request",
            "code_challenge is not a base64url SHA-256 digest",
        );
    }
    pending.code_challenge = challenge.to_owned();
    if let Some(jkt) = params.get("dpop_jkt") {
        // RFC 9449 §10: the base64url SHA-256 thumbprint of the client's DPoP key.
        if jkt.len() != 43
            || !jkt
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return refuse(
                &pending,
                "invalid_request",
                "dpop_jkt is not a base64url SHA-256 JWK thumbprint",
            );
        }
        pending.dpop_jkt = Some(jkt.to_owned());
    }
    if let Some(bad) = pending
        .scope
        .iter()
        .find(|s| !SUPPORTED_SCOPES.contains(&s.as_str()))
    {
        let bad = format!("unknown scope {bad:?}");
        return refuse(&pending, "invalid_scope", &bad);
    }
    match params.audience_for(client) {
        Ok(Some(audience)) => pending.audience = Some(audience),
        Ok(None) => {}
        Err(_) => {
            return refuse(
                &pending,
                "invalid_target",
                "this client may not ask for that resource",
            );
        }
    }
    let prompts: Vec<String> = params
        .get("prompt")
        .unwrap_or("")
        .split(' ')
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect();
    let has = |p: &str| prompts.iter().any(|x| x == p);
    if has("none") && prompts.len() > 1 {
        return refuse(
            &pending,
            "invalid_request",
            "prompt=none cannot be combined with other values",
        );
    }
    if let Some(bad) = prompts
        .iter()
        .find(|p| !["none", "login", "consent", "select_account"].contains(&p.as_str()))
    {
        let bad = format!("unknown prompt value {bad:?}");
        return refuse(&pending, "invalid_request", &bad);
    }
    pending.prompt_consent = has("consent");
    // OIDC Core §11: offline access needs explicit consent; without it the scope is ignored.
    if !pending.prompt_consent {
        pending.scope.retain(|s| s != "offline_access");
    }
    // max_age (OIDC Core §3.1.2.1): a session older than that must sign in again.
    let max_age = match params.get("max_age").map(str::parse::<u64>) {
        None => None,
        Some(Ok(secs)) => Some(i64::try_from(secs).unwrap_or(i64::MAX)),
        Some(Err(_)) => {
            return refuse(
                &pending,
                "invalid_request",
                "max_age must be a number of seconds",
            );
        }
    };
    Ok(Checked {
        pending,
        prompts,
        max_age,
    })
}

/// The parameters pushed for `request_uri` (RFC 9126 §4), taken once: the
/// request must be `client_id`'s and not expired. Strict: beside
/// `client_id` and `request_uri` the request may carry nothing, since every
/// parameter comes from the pushed request. `Err` is the page's text.
fn take_pushed(
    shared: &Shared,
    client_id: &str,
    request_uri: &str,
    front: &Params,
) -> Result<Params, String> {
    if let Some(other) = front.other_than(&["client_id", "request_uri"]) {
        return Err(format!(
            "with a request_uri the authorization request takes client_id and request_uri only (RFC 9126 §4); push {other:?} with the rest"
        ));
    }
    let now = shared.clock.now();
    let mut store = shared.store();
    let Some(pushed) = store.pushed.get(request_uri) else {
        return Err("this request_uri is unknown or was used already".to_owned());
    };
    if pushed.client_id != client_id {
        return Err("this request_uri was pushed by another client".to_owned());
    }
    let pushed = store.pushed.remove(request_uri);
    match pushed {
        Some(p) if p.expires_at > now => Ok(p.params),
        _ => Err("this request_uri has expired; push the request again".to_owned()),
    }
}

fn start(shared: &Arc<Shared>, headers: &HeaderMap, front: &Params) -> Response {
    let settings = shared.settings();
    let Some(client_id) = front.get("client_id") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "client_id is missing",
        );
    };
    let Some(client) = settings.clients.get(client_id) else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Unknown client",
            &format!("no client {client_id:?} is registered"),
        );
    };
    let pushed_params;
    let (params, pushed) = match front.get("request_uri") {
        None => (front, false),
        Some(uri) => match take_pushed(shared, client_id, uri, front) {
            Ok(p) => {
                pushed_params = p;
                (&pushed_params, true)
            }
            Err(why) => {
                return error_page(StatusCode::BAD_REQUEST, "Invalid request_uri", &why);
            }
        },
    };
    let checked = check_request(shared, &settings, client, params, headers, pushed);
    if !matches!(checked, Err(Refusal::Page { .. })) {
        crate::conformance::twist::on_authorize(shared, client_id);
    }
    let Checked {
        pending,
        prompts,
        max_age,
    } = match checked {
        Ok(checked) => checked,
        Err(refusal) => return refusal.respond(shared),
    };
    let now = pending.created_at;
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let force_login = prompts.contains(&"login") || prompts.contains(&"select_account");

    // Headless: sign the login_hint user (if known) or the auto-login user in.
    if let Some(auto) = &settings.auto_login {
        let user = pending
            .login_hint
            .as_deref()
            .filter(|h| settings.user(h).is_some())
            .unwrap_or(auto)
            .to_owned();
        return sign_in_and_redirect(shared, pending, &user, None);
    }

    let existing =
        session_cookie(shared, headers).and_then(|sid| shared.store().sessions.get(&sid).cloned());
    let existing = existing.filter(|s| {
        pending
            .login_hint
            .as_deref()
            .is_none_or(|h| h == s.username)
    });
    let existing =
        existing.filter(|s| max_age.is_none_or(|age| now.saturating_sub(s.created_at) <= age));
    if prompts.contains(&"none") {
        return match existing {
            Some(session) => {
                sign_in_and_redirect(shared, pending, &session.username.clone(), Some(session))
            }
            None => client_error(
                shared,
                &pending,
                "login_required",
                "no signed-in session and prompt=none",
            ),
        };
    }
    if let (Some(session), false, false) = (&existing, force_login, pending.prompt_consent) {
        return sign_in_and_redirect(shared, pending, &session.username.clone(), existing.clone());
    }
    let request_id = random_token(24);
    {
        let mut store = shared.store();
        store.pending.retain(|_, p| p.created_at + 600 > now);
        store.pending.insert(request_id.clone(), pending.clone());
    }
    let session = existing.filter(|_| !force_login);
    login_page(
        shared,
        &settings,
        &request_id,
        &pending,
        session.as_ref(),
        None,
    )
}

fn login_page(
    shared: &Shared,
    settings: &crate::state::Settings,
    request_id: &str,
    pending: &PendingAuth,
    session: Option<&Session>,
    problem: Option<&str>,
) -> Response {
    let mut body = String::new();
    body.push_str(&format!(
        "<p><b>{}</b> asks you to sign in{}.</p>",
        esc(&pending.client_id),
        if pending.scope.is_empty() {
            String::new()
        } else {
            format!(
                " and allow: <code id=\"scopes\">{}</code>",
                esc(&pending.scope.join(" "))
            )
        }
    ));
    if let Some(problem) = problem {
        body.push_str(&format!(
            "<p class=\"error\" id=\"problem\">{}</p>",
            esc(problem)
        ));
    }
    let rid = esc(request_id);
    let action = esc(&format!("{}/authorize/login", shared.issuer));
    if let Some(session) = session {
        body.push_str(&format!(
            "<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"request_id\" value=\"{rid}\">\
             <input type=\"hidden\" name=\"use_session\" value=\"1\">\
             <p>Signed in as <b id=\"current-user\">{}</b>.</p>\
             <button id=\"allow\" name=\"action\" value=\"allow\">Allow</button> \
             <button id=\"deny\" name=\"action\" value=\"deny\">Deny</button></form><hr><p>Or sign in as someone else:</p>",
            esc(&session.username)
        ));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"request_id\" value=\"{rid}\">\
         <input type=\"hidden\" name=\"action\" value=\"allow\"><p>Pick a user:</p><p>"
    ));
    for user in &settings.users {
        let name = esc(&user.username);
        body.push_str(&format!(
            "<button id=\"pick-{name}\" name=\"user\" value=\"{name}\">{name}</button> "
        ));
    }
    let hint = pending.login_hint.as_deref().map(esc).unwrap_or_default();
    body.push_str(&format!(
        "</p></form><form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"request_id\" value=\"{rid}\">\
         <p>Or type a name and password:</p>\
         <p><label>Name <input id=\"username\" name=\"username\" value=\"{hint}\" autocomplete=\"username\"></label></p>\
         <p><label>Password <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\"></label></p>\
         <button id=\"sign-in\" name=\"action\" value=\"allow\">Sign in</button> \
         <button id=\"cancel\" name=\"action\" value=\"deny\">Cancel</button></form>"
    ));
    let mut response = Html(page("Sign in", &body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub(crate) async fn login(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(e) => return error_page(e.status(), "Bad request", &e.body_text()),
    };
    let params = match Params::from_form(&headers, &body) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, "Bad request", &e.description),
    };
    let Some(request_id) = params.get("request_id") else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "request_id is missing",
        );
    };
    let Some(pending) = shared.store().pending.get(request_id).cloned() else {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "this sign-in request is unknown or was already used; start again",
        );
    };
    let settings = shared.settings();
    if params.get("action") == Some("deny") {
        shared.store().pending.remove(request_id);
        return client_error(
            &shared,
            &pending,
            "access_denied",
            "the user denied the request",
        );
    }
    let (username, session) = if params.get("use_session").is_some() {
        let session = session_cookie(&shared, &headers)
            .and_then(|sid| shared.store().sessions.get(&sid).cloned());
        match session {
            Some(s) => (s.username.clone(), Some(s)),
            None => {
                return login_page(
                    &shared,
                    &settings,
                    request_id,
                    &pending,
                    None,
                    Some("your session has ended; sign in again"),
                );
            }
        }
    } else if let Some(user) = params.get("user") {
        match settings.user(user) {
            Some(u) => (u.username.clone(), None),
            None => {
                return login_page(
                    &shared,
                    &settings,
                    request_id,
                    &pending,
                    None,
                    Some("no such user"),
                );
            }
        }
    } else {
        let name = params.get("username").unwrap_or("");
        let password = params.get("password").unwrap_or("");
        match settings.user(name) {
            Some(u)
                if crate::params::constant_time_eq(u.password.as_bytes(), password.as_bytes()) =>
            {
                (u.username.clone(), None)
            }
            _ => {
                return login_page(
                    &shared,
                    &settings,
                    request_id,
                    &pending,
                    None,
                    Some("wrong name or password"),
                );
            }
        }
    };
    if shared.store().pending.remove(request_id).is_none() {
        return error_page(
            StatusCode::BAD_REQUEST,
            "Sign-in expired",
            "this sign-in request was already used",
        );
    }
    sign_in_and_redirect(&shared, pending, &username, session)
}

/// Creates a session for `username` (or reuses `session`), issues a code and
/// redirects to the client with it.
fn sign_in_and_redirect(
    shared: &Arc<Shared>,
    pending: PendingAuth,
    username: &str,
    session: Option<Session>,
) -> Response {
    let settings = shared.settings();
    let Some(user) = settings.user(username) else {
        return client_error(shared, &pending, "access_denied", "unknown user");
    };
    let now = shared.clock.now();
    let code = random_token(32);
    let set_cookie;
    {
        let mut store = shared.store();
        let (sid, auth_time) = match session.filter(|s| store.sessions.contains_key(&s.sid)) {
            Some(s) => {
                set_cookie = None;
                (s.sid, s.created_at)
            }
            None => {
                let sid = random_token(16);
                store.sessions.insert(
                    sid.clone(),
                    Session {
                        sid: sid.clone(),
                        username: user.username.clone(),
                        sub: user.sub().to_owned(),
                        device_name: pending.device_name.clone(),
                        created_at: now,
                        last_seen: now,
                        clients: Default::default(),
                    },
                );
                set_cookie = Some(sid.clone());
                (sid, now)
            }
        };
        let expires_at = now + i64::try_from(settings.lifetimes.code).unwrap_or(60);
        store.codes.insert(
            Shared::hash(&code),
            CodeGrant {
                auth: pending.clone(),
                sid,
                username: user.username.clone(),
                auth_time,
                expires_at,
                redeemed: None,
            },
        );
    }
    let mut state = pending.state.clone();
    let mut iss = Some(shared.issuer.clone());
    crate::conformance::twist::auth_response(shared, &pending.client_id, &mut state, &mut iss);
    let mut response = redirect_with_iss(
        &pending.redirect_uri,
        &[("code", &code)],
        state.as_deref(),
        iss.as_deref(),
    );
    if let Some(sid) = set_cookie
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{}={sid}; Path=/; HttpOnly; SameSite=Lax",
            shared.cookie_name
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::redirect_matches;

    #[test]
    fn loopback_redirects_match_on_any_port_and_nothing_else_is_loose() {
        let reg = "http://127.0.0.1/callback";
        assert!(redirect_matches(reg, "http://127.0.0.1:49152/callback"));
        assert!(redirect_matches(reg, reg));
        assert!(!redirect_matches(
            reg,
            "http://127.0.0.1:49152/callback/extra"
        ));
        assert!(!redirect_matches(reg, "http://127.0.0.2:49152/callback"));
        assert!(!redirect_matches(reg, "https://127.0.0.1:49152/callback"));
        assert!(!redirect_matches(reg, "http://127.0.0.1:1/callback?x=1"));
        assert!(!redirect_matches(reg, "http://evil@127.0.0.1:1/callback"));
        assert!(redirect_matches(
            "http://[::1]/callback",
            "http://[::1]:8080/callback"
        ));
        let https = "https://app.example/cb";
        assert!(redirect_matches(https, https));
        assert!(!redirect_matches(https, "https://app.example:444/cb"));
        assert!(!redirect_matches(https, "https://app.example/cb?x"));
    }
}
