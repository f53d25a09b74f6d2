//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): ends the
//! session named by `id_token_hint` (or the browser's session), revokes its
//! grants, sends back-channel logout, and redirects to a registered
//! `post_logout_redirect_uri` — only an exactly registered one.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use bytes::Bytes;
use serde_json::Value;

use crate::endpoints::authorize::{error_page, session_cookie};
use crate::endpoints::pages::page;
use crate::params::Params;
use crate::state::Shared;

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

fn end_session(shared: &Arc<Shared>, headers: &HeaderMap, params: &Params) -> Response {
    let mut client_id = params.get("client_id").map(str::to_owned);
    let mut sid = None;
    let mut hint_valid = false;
    if let Some(hint) = params.get("id_token_hint") {
        // An expired ID token is still a fine hint; the signature must hold.
        let Some(decoded) = shared.keys().verify(hint, shared.clock.now()) else {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad logout request",
                "id_token_hint is not an ID token this provider signed",
            );
        };
        if decoded.claims.get("iss").and_then(Value::as_str) != Some(shared.issuer.as_str()) {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad logout request",
                "id_token_hint was issued by another issuer",
            );
        }
        // `aud` is the client, alone or as the first of an array.
        let aud = decoded
            .claims
            .get("aud")
            .and_then(|a| a.as_str().or_else(|| a.get(0).and_then(Value::as_str)))
            .map(str::to_owned);
        if client_id.is_some() && client_id != aud {
            return error_page(
                StatusCode::BAD_REQUEST,
                "Bad logout request",
                "client_id does not match id_token_hint",
            );
        }
        client_id = aud;
        hint_valid = true;
        sid = decoded
            .claims
            .get("sid")
            .and_then(Value::as_str)
            .map(str::to_owned);
    }
    let redirect = match params.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let settings = shared.settings();
            let Some(client) = client_id.as_deref().and_then(|c| settings.clients.get(c)) else {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Bad logout request",
                    "post_logout_redirect_uri needs id_token_hint or client_id",
                );
            };
            if !client
                .config
                .post_logout_redirect_uris
                .iter()
                .any(|r| r == uri)
            {
                return error_page(
                    StatusCode::BAD_REQUEST,
                    "Bad logout request",
                    "post_logout_redirect_uri is not registered for this client",
                );
            }
            Some(uri.to_owned())
        }
    };
    if let Some(client) = client_id.as_deref() {
        crate::conformance::twist::end_session(
            shared,
            client,
            hint_valid,
            params.get("state").is_some(),
        );
    }
    let cookie_sid = session_cookie(shared, headers);
    let ended = sid
        .or(cookie_sid)
        .is_some_and(|sid| shared.end_session(&sid));
    let mut response = match redirect {
        Some(uri) => {
            let mut url = match url::Url::parse(&uri) {
                Ok(u) => u,
                Err(_) => {
                    return error_page(
                        StatusCode::BAD_REQUEST,
                        "Bad logout request",
                        "bad post_logout_redirect_uri",
                    );
                }
            };
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
