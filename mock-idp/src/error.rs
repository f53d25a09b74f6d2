//! Errors: [`Error`] for the library's own failures (bad configuration, a port
//! that cannot be bound), and [`OAuthError`], the RFC 6749 error body that
//! every endpoint answers with when a request is refused.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What can go wrong when configuring or starting the mock identity provider.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration file could not be read.
    #[error("cannot read configuration file {path}: {source}")]
    ConfigRead {
        /// The file that was named.
        path: std::path::PathBuf,
        /// Why reading it failed.
        source: std::io::Error,
    },
    /// The configuration is not valid TOML or breaks a rule.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// A signing key could not be generated.
    #[error("cannot generate a signing key: {0}")]
    Key(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An OAuth 2.0 error response (RFC 6749 §5.2): `{"error", "error_description"}`
/// with the status that goes with it and `Cache-Control: no-store`.
#[derive(Debug, Clone)]
pub(crate) struct OAuthError {
    pub(crate) status: StatusCode,
    pub(crate) error: &'static str,
    pub(crate) description: String,
    pub(crate) www_authenticate: Option<String>,
    /// A `Retry-After` header, in seconds (with a 503).
    pub(crate) retry_after_secs: Option<u64>,
}

impl OAuthError {
    pub(crate) fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            www_authenticate: None,
            retry_after_secs: None,
        }
    }
    /// A 503 `temporarily_unavailable`: the request may succeed in
    /// `retry_after_secs`.
    pub(crate) fn temporarily_unavailable(
        description: impl Into<String>,
        retry_after_secs: u64,
    ) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            description,
        );
        e.retry_after_secs = Some(retry_after_secs);
        e
    }
    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }
    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }
    pub(crate) fn invalid_client(description: impl Into<String>, basic: bool) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", description);
        if basic {
            e.www_authenticate = Some("Basic realm=\"mock-idp\"".to_owned());
        }
        e
    }
    pub(crate) fn invalid_token(description: impl Into<String>) -> Self {
        let description = description.into();
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            description.clone(),
        );
        e.www_authenticate = Some(format!(
            "Bearer error=\"invalid_token\", error_description=\"{}\"",
            description.replace('"', "'")
        ));
        e
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error": self.error,
            "error_description": self.description,
        });
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(value) = self
            .www_authenticate
            .and_then(|v| HeaderValue::from_str(&v).ok())
        {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let Some(secs) = self.retry_after_secs {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<super::Error>();
    }
}
