//! The device authorization grant (RFC 8628): the device authorization
//! endpoint, and the verification page where the user enters the code, signs
//! in, and approves or denies. Polling is answered by the token endpoint.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use crate::config::DEVICE_CODE_GRANT;
use crate::endpoints::no_store_json;
use crate::endpoints::pages::{esc, page};
use crate::error::OAuthError;
use crate::keys::random_token;
use crate::params::{Params, authenticate_client};
use crate::state::{DeviceAuth, DeviceStatus, Session, Shared};

const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

fn new_user_code() -> String {
    let mut bytes = [0u8; 8];
    #[allow(clippy::expect_used)]
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random number generator failed");
    let chars: String = bytes
        .iter()
        .map(|b| USER_CODE_ALPHABET[usize::from(*b) % USER_CODE_ALPHABET.len()] as char)
        .collect();
    format!("{}-{}", &chars[..4], &chars[4..])
}

/// Upper-cases and drops separators, so `bcdf gh-jk` finds `BCDF-GHJK`.
pub(crate) fn normalize_user_code(code: &str) -> String {
    let raw: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if raw.len() == 8 {
        format!("{}-{}", &raw[..4], &raw[4..])
    } else {
        raw
    }
}

pub(crate) async fn device_authorization(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let result = body
        .map_err(|e| OAuthError::new(e.status(), "invalid_request", e.body_text()))
        .and_then(|b| Params::from_form(&headers, &b))
        .and_then(|params| {
            let settings = shared.settings();
            let client =
                authenticate_client(&settings, &headers, &params, &shared.assertion_check())?;
            if !client.config.allows_grant(DEVICE_CODE_GRANT) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "unauthorized_client",
                    "this client may not use the device grant",
                ));
            }
            let scope = params.scope();
            if let Some(bad) = scope
                .iter()
                .find(|s| !crate::endpoints::authorize::SUPPORTED_SCOPES.contains(&s.as_str()))
            {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    format!("unknown scope {bad:?}"),
                ));
            }
            let now = shared.clock.now();
            let lifetimes = settings.lifetimes;
            let device_code = random_token(32);
            let interval = i64::try_from(lifetimes.device_poll_interval).unwrap_or(5);
            let expires_in = lifetimes.device_code;
            let user_code = {
                let mut store = shared.store();
                let mut user_code = new_user_code();
                while store.user_codes.contains_key(&user_code) {
                    user_code = new_user_code();
                }
                let script = store.device_scripts.pop_front();
                store.devices.retain(|_, d| d.expires_at + 600 > now);
                let live: std::collections::HashSet<_> = store.devices.keys().copied().collect();
                store.user_codes.retain(|_, h| live.contains(h));
                let hash = Shared::hash(&device_code);
                store.devices.insert(
                    hash,
                    DeviceAuth {
                        client_id: client.config.client_id.clone(),
                        scope,
                        audience: client.config.audience.clone(),
                        expires_at: now + i64::try_from(expires_in).unwrap_or(600),
                        interval,
                        last_poll_ms: None,
                        status: DeviceStatus::Pending,
                        script,
                        polls: 0,
                    },
                );
                store.user_codes.insert(user_code.clone(), hash);
                user_code
            };
            let uri = format!("{}/device", shared.issuer);
            Ok(json!({
                "device_code": device_code,
                "user_code": user_code,
                "verification_uri": uri,
                "verification_uri_complete": format!("{uri}?user_code={user_code}"),
                "expires_in": expires_in,
                "interval": interval,
            }))
        });
    match result {
        Ok(v) => no_store_json(&v),
        Err(e) => e.into_response(),
    }
}

fn verification_page(shared: &Shared, user_code: &str, message: Option<&str>) -> Response {
    let settings = shared.settings();
    let action = esc(&format!("{}/device", shared.issuer));
    let mut body = String::new();
    if let Some(m) = message {
        body.push_str(&format!("<p class=\"error\" id=\"problem\">{}</p>", esc(m)));
    }
    body.push_str(&format!(
        "<form method=\"post\" action=\"{action}\">\
         <p><label>Code shown on your device <input id=\"user_code\" name=\"user_code\" value=\"{}\" autocomplete=\"off\"></label></p>\
         <p>Sign in as:</p><p>",
        esc(user_code)
    ));
    for user in &settings.users {
        let name = esc(&user.username);
        body.push_str(&format!(
            "<label><input type=\"radio\" name=\"user\" id=\"pick-{name}\" value=\"{name}\"> {name}</label> "
        ));
    }
    body.push_str(
        "</p><p>or type a name and password:</p>\
         <p><label>Name <input id=\"username\" name=\"username\"></label> \
         <label>Password <input id=\"password\" name=\"password\" type=\"password\"></label></p>\
         <button id=\"approve\" name=\"action\" value=\"approve\">Approve</button> \
         <button id=\"deny\" name=\"action\" value=\"deny\">Deny</button></form>",
    );
    Html(page("Connect a device", &body)).into_response()
}

pub(crate) async fn verification(
    State(shared): State<Arc<Shared>>,
    RawQuery(query): RawQuery,
) -> Response {
    let code = Params::from_query(query.as_deref())
        .ok()
        .and_then(|p| p.get("user_code").map(normalize_user_code))
        .unwrap_or_default();
    verification_page(&shared, &code, None)
}

/// How a verification ended, for the control API and the page.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    Approved,
    Denied,
}

/// Answers a pending device authorization as `username` (approve) or denies it.
pub(crate) fn answer(
    shared: &Shared,
    user_code: &str,
    approve_as: Option<&str>,
) -> Result<Answer, String> {
    let code = normalize_user_code(user_code);
    let now = shared.clock.now();
    let settings = shared.settings();
    let mut store = shared.store();
    let Some(hash) = store.user_codes.get(&code).copied() else {
        return Err("unknown code; check the code shown on your device".to_owned());
    };
    let Some(device) = store.devices.get(&hash).cloned() else {
        return Err("unknown code".to_owned());
    };
    if device.expires_at <= now {
        return Err("this code has expired; start again on your device".to_owned());
    }
    if device.status != DeviceStatus::Pending {
        return Err("this code was already used".to_owned());
    }
    let status = match approve_as {
        None => DeviceStatus::Denied,
        Some(username) => {
            let user = settings.user(username).ok_or("unknown user")?;
            let sid = random_token(16);
            store.sessions.insert(
                sid.clone(),
                Session {
                    sid: sid.clone(),
                    username: user.username.clone(),
                    sub: user.sub().to_owned(),
                    device_name: format!("device flow ({})", device.client_id),
                    created_at: now,
                    last_seen: now,
                    clients: Default::default(),
                },
            );
            DeviceStatus::Approved {
                username: user.username.clone(),
                sid,
            }
        }
    };
    let answer = if matches!(status, DeviceStatus::Denied) {
        Answer::Denied
    } else {
        Answer::Approved
    };
    if let Some(d) = store.devices.get_mut(&hash) {
        d.status = status;
    }
    Ok(answer)
}

pub(crate) async fn submit(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let params = match body
        .map_err(|e| e.body_text())
        .and_then(|b| Params::from_form(&headers, &b).map_err(|e| e.description))
    {
        Ok(p) => p,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, Html(page("Bad request", &esc(&e)))).into_response();
        }
    };
    let user_code = params.get("user_code").unwrap_or("");
    let approve_as = if params.get("action") == Some("deny") {
        None
    } else {
        let settings = shared.settings();
        let user = if let Some(u) = params.get("user") {
            settings.user(u)
        } else {
            let name = params.get("username").unwrap_or("");
            let password = params.get("password").unwrap_or("");
            settings.user(name).filter(|u| {
                crate::params::constant_time_eq(u.password.as_bytes(), password.as_bytes())
            })
        };
        match user {
            Some(u) => Some(u.username.clone()),
            None => {
                return verification_page(
                    &shared,
                    &normalize_user_code(user_code),
                    Some("pick a user, or give a right name and password"),
                );
            }
        }
    };
    match answer(&shared, user_code, approve_as.as_deref()) {
        Ok(Answer::Approved) => Html(page(
            "Device connected",
            "<p id=\"result\">Approved. Return to your device; it signs in by itself.</p>",
        ))
        .into_response(),
        Ok(Answer::Denied) => Html(page(
            "Request denied",
            "<p id=\"result\">Denied. The device will not be signed in.</p>",
        ))
        .into_response(),
        Err(message) => verification_page(&shared, &normalize_user_code(user_code), Some(&message)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_readable_and_normalized() {
        let code = new_user_code();
        assert_eq!(code.len(), 9);
        assert!(
            code.chars()
                .all(|c| c == '-' || USER_CODE_ALPHABET.contains(&(c as u8)))
        );
        assert_eq!(
            normalize_user_code(&code.to_lowercase().replace('-', " ")),
            code
        );
    }
}
