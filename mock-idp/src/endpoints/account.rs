//! The account sessions API: a signed-in user lists their sessions (one per
//! device) and revokes one — its grants die and back-channel logout is sent.
//!
//! Authenticated with an active access token of the user whose `aud`
//! includes the account audience ([`crate::config::account_audience`]):
//! tokens issued with the [`ACCOUNT_SCOPE`] scope carry it. A token meant
//! for another API (chat-server's, say) is refused with 401
//! `invalid_token` (RFC 6750 §3.1: "invalid for other reasons"; RFC 9068
//! §4: a resource server rejects a token whose `aud` does not name it), so
//! an API that gets a user's token cannot revoke the user's devices with it.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::config::{ACCOUNT_SCOPE, account_audience};

use crate::endpoints::no_store_json;
use crate::endpoints::userinfo::ValidAccess;
use crate::error::OAuthError;
use crate::state::Shared;

fn user_of(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<(String, ValidAccess), OAuthError> {
    let valid = crate::endpoints::proof::resource_access(
        shared,
        headers,
        method.as_str(),
        uri.path(),
        "the account API",
    )?;
    let audience = account_audience(&shared.issuer);
    let for_us = match valid.claims.get("aud") {
        Some(Value::String(aud)) => *aud == audience,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(audience.as_str())),
        _ => false,
    };
    if !for_us {
        let mut e = OAuthError::invalid_token(format!(
            "this access token is not for the account API: its aud lacks {audience}; \
             sign in with the {ACCOUNT_SCOPE} scope"
        ));
        if valid.jkt.is_some() {
            e.www_authenticate = Some(crate::dpop::challenge("invalid_token", &e.description));
        }
        return Err(e);
    }
    let username = valid.grant.username.clone().ok_or_else(|| {
        OAuthError::new(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            "this token has no user",
        )
    })?;
    Ok((username, valid))
}

pub(crate) async fn list(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    match user_of(&shared, &method, &uri, &headers) {
        Ok((username, valid)) => {
            let current = valid.grant.sid.clone();
            let store = shared.store();
            let mut sessions: Vec<_> = store
                .sessions
                .values()
                .filter(|s| s.username == username)
                .map(|s| {
                    json!({
                        "sid": s.sid,
                        "device_name": s.device_name,
                        "created_at": s.created_at,
                        "last_seen": s.last_seen,
                        "clients": s.clients,
                        "current": current.as_deref() == Some(s.sid.as_str()),
                    })
                })
                .collect();
            sessions.sort_by_key(|s| s["created_at"].as_i64());
            no_store_json(&json!({"sessions": sessions}))
        }
        Err(e) => e.into_response(),
    }
}

pub(crate) async fn revoke(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Path(sid): Path<String>,
) -> Response {
    match user_of(&shared, &method, &uri, &headers) {
        Ok((username, _)) => {
            let owned = shared
                .store()
                .sessions
                .get(&sid)
                .is_some_and(|s| s.username == username);
            if owned && shared.end_session(&sid) {
                StatusCode::NO_CONTENT.into_response()
            } else {
                OAuthError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    "no such session of this user",
                )
                .into_response()
            }
        }
        Err(e) => e.into_response(),
    }
}
