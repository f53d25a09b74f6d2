//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the
//! browser's session (or the one named by `id_token_hint`), revokes its
//! grants, sends back-channel logout, and redirects to a registered
//! `post_logout_redirect_uri` — only an exactly registered one.
//!
//! It asks first (§2: the OP MUST ask when there is no `id_token_hint`, or
//! the ID token does not belong to the current session's user): any page
//! can send a browser here with a plain GET, and a sign-out nobody asked
//! for is a nuisance at least. Without a vouching hint it answers with a
//! page, "Sign out of ISSUER?", whose form POSTs back with a single-use
//! token bound to the browser's session (so another site cannot post it),
//! and only that POST ends the session. The page may not be framed.
//!
//! What ends, by case:
//! - a valid hint whose `sub` is the current session's user (the current
//!   session is the browser's, else the hint's `sid`): both end at once;
//! - no hint, or a hint for someone else: the confirmation page; its POST
//!   ends the browser's session (and the hint's, when it is the same user's);
//! - no session at all: nothing to ask; signed out (or redirected) at once.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::endpoints::authorize::{error_page, session_cookie};
use crate::endpoints::pages::{esc, page};
use crate::params::Params;
use crate::state::{Session, Shared};

/// How long a confirmation page's form can be sent, in seconds.
const CONFIRM_TTL: i64 = 600;

pub(crate) async fn end_session_get(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    match Params::from_query(query.as_deref()) {
        Ok(params) => end_session(&shared, &headers, &params),
        Err(e) => error_page(StatusCode::BAD_REQUEST, "Bad request", &e.description),
    }
}

pub(crate) async fn end_session_post(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let params = body
        .map_err(|e| e.body_text())
        .and_then(|b| Params::from_form(&headers, &b).map_err(|e| e.description));
    match params {
        Ok(params) => end_session(&shared, &headers, &params),
        Err(e) => error_page(StatusCode::BAD_REQUEST, "Bad request", &e),
    }
}

fn bad_logout(detail: &str) -> Response {
    error_page(StatusCode::BAD_REQUEST, "Bad logout request", detail)
}

/// What a valid `id_token_hint` says.
struct Hint {
    client_id: Option<String>,
    sub: Option<String>,
    sid: Option<String>,
}

/// The hint's claims, or why it is no hint.
fn check_hint(shared: &Shared, hint: &str) -> Result<Hint, &'static str> {
    // An expired ID token is still a fine hint; the signature must hold.
    let Some(decoded) = shared.keys().verify(hint, shared.clock.now()) else {
        return Err("id_token_hint is not an ID token this provider signed");
    };
    let typ = decoded.header.get("typ").and_then(Value::as_str);
    if matches!(typ, Some("at+jwt" | "logout+jwt")) {
        return Err("id_token_hint is not an ID token");
    }
    if decoded.claims.get("iss").and_then(Value::as_str) != Some(shared.issuer.as_str()) {
        return Err("id_token_hint was issued by another issuer");
    }
    let claim = |name: &str| {
        decoded
            .claims
            .get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    // `aud` is the client, alone or as the first of an array.
    let client_id = decoded
        .claims
        .get("aud")
        .and_then(|a| a.as_str().or_else(|| a.get(0).and_then(Value::as_str)))
        .map(str::to_owned);
    Ok(Hint {
        client_id,
        sub: claim("sub"),
        sid: claim("sid"),
    })
}

fn end_session(shared: &Arc<Shared>, headers: &HeaderMap, params: &Params) -> Response {
    let mut client_id = params.get("client_id").map(str::to_owned);
    let hint = match params.get("id_token_hint").map(|h| check_hint(shared, h)) {
        None => None,
        Some(Ok(hint)) => Some(hint),
        Some(Err(why)) => return bad_logout(why),
    };
    if let Some(hint) = &hint {
        if client_id.is_some() && client_id != hint.client_id {
            return bad_logout("client_id does not match id_token_hint");
        }
        client_id.clone_from(&hint.client_id);
    }
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let settings = shared.settings();
            let Some(client) = client_id.as_deref().and_then(|c| settings.clients.get(c)) else {
                return bad_logout("post_logout_redirect_uri needs id_token_hint or client_id");
            };
            if !client
                .config
                .post_logout_redirect_uris
                .iter()
                .any(|r| r == uri)
            {
                return bad_logout("post_logout_redirect_uri is not registered for this client");
            }
            match url::Url::parse(uri) {
                Ok(url) => Some(url),
                Err(_) => return bad_logout("bad post_logout_redirect_uri"),
            }
        }
    };
    if let Some(client) = client_id.as_deref() {
        crate::conformance::twist::end_session(
            shared,
            client,
            hint.is_some(),
            params.get("state").is_some(),
        );
    }

    let (current, hint_session) = {
        let store = shared.store();
        let live = |sid: Option<&str>| sid.and_then(|s| store.sessions.get(s)).cloned();
        let browser = live(session_cookie(shared, headers).as_deref());
        let hinted = live(hint.as_ref().and_then(|h| h.sid.as_deref()));
        (browser.or_else(|| hinted.clone()), hinted)
    };
    let ended = match &current {
        None => false,
        Some(current) => {
            let vouched = hint
                .as_ref()
                .is_some_and(|h| h.sub.as_deref() == Some(current.sub.as_str()));
            let confirmed = params
                .get("confirm")
                .is_some_and(|token| take_confirmation(shared, token, &current.sid));
            if !vouched && !confirmed {
                return confirmation_page(shared, params, current, client_id.as_deref());
            }
            let mut ended = shared.end_session(&current.sid);
            if let Some(other) =
                hint_session.filter(|h| h.sid != current.sid && h.sub == current.sub)
            {
                ended |= shared.end_session(&other.sid);
            }
            ended
        }
    };
    let mut response = match redirect {
        Some(mut url) => {
            if let Some(state) = params.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            Redirect::to(url.as_str()).into_response()
        }
        None => Html(page(
            "Signed out",
            if ended {
                "<p id=\"signed-out\">You are signed out. You can close this tab.</p>"
            } else {
                "<p id=\"signed-out\">There was no session to end. You are signed out.</p>"
            },
        ))
        .into_response(),
    };
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{}=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
        shared.cookie_name
    )) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// Uses up a confirmation token: it must exist, be fresh, and have been
/// made for this session.
fn take_confirmation(shared: &Shared, token: &str, sid: &str) -> bool {
    let now = shared.clock.now();
    let mut store = shared.store();
    let hash = Shared::hash(token);
    match store.logout_confirmations.get(&hash) {
        Some((for_sid, expires_at)) if for_sid == sid && *expires_at > now => {
            store.logout_confirmations.remove(&hash);
            true
        }
        _ => false,
    }
}

/// "Sign out of ISSUER?": a form that POSTs the request back with a
/// single-use token for `session`.
fn confirmation_page(
    shared: &Shared,
    params: &Params,
    session: &Session,
    client_id: Option<&str>,
) -> Response {
    let token = crate::keys::random_token(24);
    {
        let now = shared.clock.now();
        let mut store = shared.store();
        store.remember_logout_confirmation(
            Shared::hash(&token),
            session.sid.clone(),
            now + CONFIRM_TTL,
            now,
        );
    }
    let issuer = esc(&shared.issuer);
    let mut hidden = format!(
        "<input type=\"hidden\" name=\"confirm\" value=\"{}\">",
        esc(&token)
    );
    for name in [
        "id_token_hint",
        "client_id",
        "post_logout_redirect_uri",
        "state",
    ] {
        if let Some(value) = params.get(name) {
            hidden.push_str(&format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                esc(value)
            ));
        }
    }
    let asked_by = client_id
        .map(|c| format!(" <b id=\"client\">{}</b> asks to sign you out.", esc(c)))
        .unwrap_or_default();
    let body = format!(
        "<p id=\"question\">Sign out of <code>{issuer}</code>?</p>\
         <p>You are signed in as <b id=\"current-user\">{user}</b>.{asked_by}</p>\
         <form method=\"post\" action=\"{issuer}/end_session\">{hidden}\
         <button id=\"sign-out\">Sign out</button></form>\
         <p><a id=\"stay\" href=\"{issuer}/\">Stay signed in</a></p>",
        user = esc(&session.username),
    );
    let mut response =
        Html(page(&format!("Sign out of {}?", shared.issuer), &body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // A page of another site must not frame the button and get it clicked.
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    response
}
