//! The pushed authorization request endpoint (RFC 9126): a client posts
//! its authorization request here, authenticated as at the token endpoint
//! (a public client with `client_id`), and gets a single-use `request_uri`
//! (`urn:ietf:params:oauth:request_uri:…`, valid 60 s) to send the browser
//! to `/authorize` with, beside its `client_id` and nothing else.
//!
//! The request passes the authorization endpoint's own checks now
//! (`authorize::check_request`: redirect URI, PKCE S256, response type,
//! scopes, …) and again when it is used. A `request_uri` in a pushed
//! request is refused (§2.1). A `DPoP` proof with the push (RFC 9449
//! §10.1) binds the code to its key, as `dpop_jkt` does; both must then
//! name the same key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::OAuthError;
use crate::keys::random_token;
use crate::params::{Params, authenticate_client};
use crate::state::{PushedRequest, Shared};

/// How long a `request_uri` can be used, in seconds.
pub(crate) const REQUEST_URI_LIFETIME_SECS: i64 = 60;

/// The prefix of every `request_uri` (RFC 9126 §2.2).
pub(crate) const REQUEST_URI_PREFIX: &str = "urn:ietf:params:oauth:request_uri:";

/// The most pushed requests kept at once (the oldest go first).
const MAX_PUSHED: usize = 4096;

pub(crate) async fn par(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let result = body
        .map_err(|e| OAuthError::new(e.status(), "invalid_request", e.body_text()))
        .and_then(|b| Params::from_form(&headers, &b))
        .and_then(|params| push(&shared, uri.path(), &headers, params));
    match result {
        Ok(value) => {
            let mut response = (StatusCode::CREATED, axum::Json(value)).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(e) => e.into_response(),
    }
}

fn push(
    shared: &Arc<Shared>,
    path: &str,
    headers: &HeaderMap,
    mut params: Params,
) -> Result<Value, OAuthError> {
    let settings = shared.settings();
    let client = authenticate_client(&settings, headers, &params, &shared.assertion_check())?;
    let client_id = client.config.client_id.clone();
    if params.get("request_uri").is_some() {
        return Err(OAuthError::invalid_request(
            "a pushed authorization request cannot carry a request_uri (RFC 9126 §2.1)",
        ));
    }
    if let Some(proof) = crate::endpoints::proof::token_request_proof(shared, headers, path)? {
        match params.get("dpop_jkt") {
            Some(jkt) if jkt != proof.jkt() => {
                return Err(OAuthError::invalid_request(
                    "dpop_jkt is not the thumbprint of the DPoP proof's key (RFC 9449 §10.1)",
                ));
            }
            _ => params.set("dpop_jkt", proof.jkt().to_owned()),
        }
    }
    // Kept for the authorization endpoint: the request, not the credentials.
    for credential in ["client_secret", "client_assertion", "client_assertion_type"] {
        params.remove(credential);
    }
    params.set("client_id", client_id.clone());
    crate::endpoints::authorize::check_request(shared, &settings, client, &params, headers, true)
        .map_err(|refusal| refusal.into_oauth())?;

    let request_uri = format!("{REQUEST_URI_PREFIX}{}", random_token(32));
    let now = shared.clock.now();
    {
        let mut store = shared.store();
        store.pushed.retain(|_, p| p.expires_at > now);
        if store.pushed.len() >= MAX_PUSHED
            && let Some(oldest) = store
                .pushed
                .iter()
                .min_by_key(|(_, p)| p.expires_at)
                .map(|(k, _)| k.clone())
        {
            store.pushed.remove(&oldest);
        }
        store.pushed.insert(
            request_uri.clone(),
            PushedRequest {
                client_id,
                params,
                expires_at: now + REQUEST_URI_LIFETIME_SECS,
            },
        );
    }
    Ok(json!({
        "request_uri": request_uri,
        "expires_in": REQUEST_URI_LIFETIME_SECS,
    }))
}
