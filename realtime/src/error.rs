//! The crate's errors: one for the client's API, one for token sources.

/// What the client's API can fail with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL is not a `ws://` or `wss://` URL.
    #[error("not a ws:// or wss:// URL: {0}")]
    InvalidUrl(String),
    /// The client was given no endpoint
    /// ([`crate::RealtimeClient::builder_multi`] with an empty list).
    #[error("the realtime client was given no endpoint")]
    NoEndpoints,
    /// The client is closed: nothing more is sent.
    #[error("the realtime client is closed")]
    Closed,
    /// The outgoing queue is full (by count or bytes).
    #[error("the outgoing queue is full")]
    QueueFull,
    /// The message is larger than the outgoing queue's byte bound.
    #[error("a message of {len} bytes is larger than the queue's {limit} bytes")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The byte bound.
        limit: usize,
    },
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a [`crate::TokenSource`] gave no token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The account is signed out (locally or by the provider): terminal.
    #[error("the account is signed out")]
    SignedOut,
    /// No token right now (network, provider down): worth retrying later.
    #[error("no token available right now: {0}")]
    Unavailable(String),
}

impl TokenError {
    /// Whether this ends the client (the account is signed out).
    #[must_use]
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::SignedOut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Error>();
        check::<TokenError>();
    }

    #[test]
    fn only_signed_out_is_terminal() {
        assert!(TokenError::SignedOut.is_terminal());
        assert!(!TokenError::Unavailable("x".into()).is_terminal());
    }
}
