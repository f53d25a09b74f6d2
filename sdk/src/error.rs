//! The one error type of the crate. Categories are kept apart so an app can
//! act on them: the provider said no (its `error` code kept), the network,
//! a response that did not parse (its body kept), an ID token that failed a
//! check, configuration, the token store (not found / unavailable / corrupt),
//! and a login that was cancelled or timed out.

use std::time::Duration;

/// What went wrong with the token store. "No tokens for this account" is kept
/// apart from "the keychain cannot be reached" and from "the entry is
/// damaged": only the first means signed out, and none of them is ever a
/// reason to delete anything.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store has no entry for this account.
    #[error("no tokens stored for this account")]
    NotFound,
    /// The store cannot be used now: locked, no keychain service, access denied.
    #[error("token store unavailable: {0}")]
    Unavailable(String),
    /// An entry exists but cannot be read as tokens.
    #[error("token store entry is corrupt: {0}")]
    Corrupt(String),
}

/// Why an ID token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdTokenError {
    /// The signature does not verify, or the algorithm is not allowed.
    #[error("ID token signature or algorithm refused: {0}")]
    Signature(String),
    /// No published key has the token's `kid`, even after fetching the JWKS again.
    #[error("no key in the provider's JWKS matches the ID token")]
    UnknownKey,
    /// A claim failed its check (`iss`, `aud`, `azp`, `exp`, `iat`, `nonce`, `at_hash`, `sub`).
    #[error("ID token claim {claim} refused: {reason}")]
    Claim {
        /// The claim that failed.
        claim: &'static str,
        /// Why.
        reason: String,
    },
    /// The token is not a well-formed JWT.
    #[error("ID token malformed: {0}")]
    Malformed(String),
}

/// Everything that can go wrong in sessionkit. Cloneable, so every caller
/// waiting on one refresh gets its error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider answered with an OAuth error (`invalid_grant`, `access_denied`, …).
    #[error("the provider refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Provider {
        /// The `error` code.
        error: String,
        /// The `error_description`, if any.
        description: Option<String>,
        /// The HTTP status.
        status: Option<u16>,
    },
    /// The network failed or timed out; the underlying error is its
    /// [`std::error::Error::source`].
    #[error("network error: {0}")]
    Network(#[source] NetworkError),
    /// A response was not what the protocol says (kept for diagnosis).
    #[error("unexpected response: {message}")]
    Parse {
        /// What was wrong.
        message: String,
        /// The start of the body (never a token: only error and metadata responses are kept).
        body: String,
        /// The HTTP status of the answer, when there was one.
        status: Option<u16>,
    },
    /// An ID token failed a check.
    #[error(transparent)]
    IdToken(#[from] IdTokenError),
    /// The configuration cannot work (an `http` issuer that is not loopback, a bad URL, …).
    #[error("configuration: {0}")]
    Config(String),
    /// The token store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The authorization response does not belong to this login (state, `iss`).
    #[error("authorization response refused: {0}")]
    AuthorizationResponse(String),
    /// The user did not finish in time.
    #[error("login timed out after {0:?}")]
    Timeout(Duration),
    /// The login or refresh was cancelled.
    #[error("cancelled")]
    Cancelled,
    /// The account is signed out (locally or by the provider): sign in again.
    #[error("the account is signed out")]
    SignedOut,
    /// The device code expired before the user answered.
    #[error("the device code expired before the user answered")]
    DeviceCodeExpired,
    /// The user denied the request.
    #[error("the user denied the request")]
    AccessDenied,
    /// Another process of the app held a lock (the account's refresh lock,
    /// the accounts file's) for longer than the SDK waits: it may be stopped.
    #[error("another process has held the {what} for {waited:?}")]
    LockTimeout {
        /// Which lock.
        what: &'static str,
        /// How long this process waited.
        waited: Duration,
    },
    /// A local I/O error (the loopback listener, the accounts file).
    #[error("I/O: {0}")]
    Io(std::sync::Arc<std::io::Error>),
    /// A userinfo answer was refused: about another subject, without one, or
    /// not a JSON object (OpenID Connect Core §5.3.2).
    #[error("userinfo answer refused: {0}")]
    UserInfo(String),
    /// A server takes DPoP proofs (RFC 9449) only with signature algorithms
    /// the SDK cannot sign with: the provider's discovery document lists
    /// `dpop_signing_alg_values_supported` without the SDK's algorithm
    /// (reported before any request that would carry a proof is sent), or
    /// a resource server's `401` challenge lists `DPoP algs="…"` without it
    /// (reported instead of a refresh and a retry that could not help).
    /// Not transient: the same key signs the same way next time. Turn
    /// DPoP off for this provider, or have the server accept `ES256`.
    #[error(
        "{server} accepts DPoP proofs signed with {} only, but sessionkit signs them with {signs_with}",
        alg_list(accepted)
    )]
    DpopAlgorithm {
        /// Who refused: the provider's issuer, or the resource server's origin.
        server: String,
        /// The algorithms it lists (at most 16 are kept, each at most 64
        /// characters).
        accepted: Vec<String>,
        /// The algorithm the SDK signs DPoP proofs with: `ES256`.
        signs_with: &'static str,
    },
    /// A repeatable request left the offline queue without being sent
    /// ([`crate::AuthedClient::send_repeatable`]); the reason says why.
    #[error("the request was not sent: {0}")]
    Dropped(crate::authed::DropReason),
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Io(std::sync::Arc::new(e))
    }
}

impl Error {
    /// Worth trying again later: the network, a timeout, the provider's
    /// 5xx or 429, a store that is unavailable (locked) right now.
    #[must_use]
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network(_)
            | Error::Store(StoreError::Unavailable(_))
            | Error::LockTimeout { .. } => true,
            Error::Provider {
                status: Some(s), ..
            } => *s >= 500 || *s == 429,
            // A gateway's HTML page, or a success answer that came cut short.
            Error::Parse {
                status: Some(s), ..
            } => *s >= 500 || *s == 429 || (200..300).contains(s),
            _ => false,
        }
    }

    /// The account is signed out: the app asked, or the provider refused
    /// the refresh token (`invalid_grant`, `invalid_client`) — also when
    /// that dropped a queued request. Sign in again.
    #[must_use]
    pub fn is_signed_out(&self) -> bool {
        match self {
            Error::SignedOut | Error::Dropped(crate::authed::DropReason::SignedOut) => true,
            Error::Provider { error, .. } => error == "invalid_grant" || error == "invalid_client",
            _ => false,
        }
    }
}

/// `ES256, PS256`, or `(none)` for an empty list.
fn alg_list(algs: &[String]) -> String {
    if algs.is_empty() {
        "(none)".to_owned()
    } else {
        algs.join(", ")
    }
}

/// A transport failure: what happened, in words (never a URL's query), and
/// the underlying error as its [`std::error::Error::source`] (reqwest's, with
/// its own chain: DNS, connect, TLS, I/O).
#[derive(Debug, Clone)]
pub struct NetworkError {
    message: String,
    timeout: bool,
    connect: bool,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl NetworkError {
    /// A failure described by `message` alone.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            timeout: false,
            connect: false,
            source: None,
        }
    }

    /// From reqwest's error, its URL removed (a query may hold a code).
    /// The message names the root cause too: reqwest's own says only
    /// "error sending request", whether the request timed out, was refused
    /// or the provider closed the connection, and a report that keeps only
    /// the text (a logout's failed revocation) would lose which.
    pub(crate) fn from_reqwest(err: reqwest::Error) -> Self {
        let err = err.without_url();
        let mut message = err.to_string();
        let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&err);
        let mut root = None;
        while let Some(e) = cause {
            root = Some(e);
            cause = e.source();
        }
        if let Some(root) = root.map(ToString::to_string)
            && !message.contains(&root)
        {
            message = format!("{message} ({root})");
        }
        Self {
            message,
            timeout: err.is_timeout(),
            connect: err.is_connect(),
            source: Some(std::sync::Arc::new(err)),
        }
    }

    /// Did the request time out?
    #[must_use]
    pub fn is_timeout(&self) -> bool {
        self.timeout
    }

    /// Did the connection fail to open (DNS, refused, TLS)?
    #[must_use]
    pub fn is_connect(&self) -> bool {
        self.connect
    }
}

impl std::fmt::Display for NetworkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NetworkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<String> for NetworkError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for NetworkError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_network_error_keeps_its_source_chain_without_the_url() {
        let http = crate::HttpClient::new().expect("client");
        // Nothing listens on port 9 of loopback (discard): connection refused.
        let err = http
            .reqwest()
            .get("http://127.0.0.1:9/?code=secret-code")
            .send()
            .await
            .expect_err("refused");
        let Error::Network(network) = crate::http::network(err) else {
            panic!("a network error");
        };
        assert!(network.is_connect());
        let top: &dyn std::error::Error = &Error::Network(network.clone());
        let mut chain = Vec::new();
        let mut next = top.source();
        while let Some(e) = next {
            chain.push(e.to_string());
            next = e.source();
        }
        assert!(chain.len() >= 3, "error, reqwest, and its cause: {chain:?}");
        // The text names the root cause, not only "error sending request".
        let root = chain.last().expect("a cause");
        assert!(network.to_string().contains(root.as_str()), "{network}");
        assert!(
            chain.iter().all(|c| !c.contains("secret-code")),
            "{chain:?}"
        );
    }

    #[test]
    fn predicates_sort_errors() {
        let provider = |error: &str, status| Error::Provider {
            error: error.to_owned(),
            description: None,
            status: Some(status),
        };
        assert!(Error::Network("reset".into()).is_transient());
        assert!(provider("server_error", 503).is_transient());
        assert!(provider("slow_down", 429).is_transient());
        assert!(!provider("invalid_grant", 400).is_transient());
        assert!(provider("invalid_grant", 400).is_signed_out());
        assert!(provider("invalid_client", 401).is_signed_out());
        assert!(Error::SignedOut.is_signed_out());
        assert!(!Error::Network("x".into()).is_signed_out());
        use crate::authed::DropReason;
        assert!(Error::Dropped(DropReason::SignedOut).is_signed_out());
        assert!(!Error::Dropped(DropReason::Expired).is_signed_out());
        assert!(!Error::Dropped(DropReason::Full).is_transient());
        assert!(Error::Store(StoreError::Unavailable("locked".into())).is_transient());
        assert!(!Error::Store(StoreError::NotFound).is_transient());
        let parse = |status| Error::Parse {
            message: "not JSON".into(),
            body: String::new(),
            status,
        };
        assert!(parse(Some(502)).is_transient(), "a gateway's HTML page");
        assert!(
            parse(Some(200)).is_transient(),
            "a success answer cut short"
        );
        assert!(!parse(Some(404)).is_transient());
        assert!(!parse(None).is_transient());
    }

    #[test]
    fn errors_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<super::Error>();
        assert_send_sync::<super::StoreError>();
    }
}
