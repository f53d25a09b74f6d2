//! One module per endpoint. Handlers are thin: parse strictly, check, change
//! the store under its lock, sign outside it, answer.

pub(crate) mod account;
pub(crate) mod authorize;
pub(crate) mod control;
pub(crate) mod device;
pub(crate) mod discovery;
pub(crate) mod end_session;
pub(crate) mod pages;
pub(crate) mod par;
pub(crate) mod proof;
pub(crate) mod revoke;
pub(crate) mod token;
pub(crate) mod userinfo;

use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// A JSON response that must not be cached (RFC 6749 §5.1).
pub(crate) fn no_store_json(value: &serde_json::Value) -> Response {
    let mut response = axum::Json(value).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
