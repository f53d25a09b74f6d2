//! Where a session stands ([`SessionState`], on a `watch` channel) and what
//! happens to it ([`SessionEvent`], on a `broadcast` channel).

use std::time::{Duration, SystemTime};

use crate::refresh::FailureKind;

/// Where an account's session stands. Published on a `watch` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionState {
    /// Signed in; the access token expires then.
    SignedIn {
        /// When the access token expires.
        expires_at: Option<SystemTime>,
    },
    /// A refresh is running.
    Refreshing,
    /// The last refresh failed and the session is kept.
    RefreshFailing {
        /// What kind of failure.
        kind: FailureKind,
        /// The error, in words.
        message: String,
    },
    /// The app signed the account out.
    SignedOut,
    /// The provider ended the session (`invalid_grant`): revoked, expired, or a reused refresh token.
    SignedOutByServer,
}

/// Something that happened to a session. Sent on a `broadcast` channel.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// The account signed in (or was restored).
    SignedIn,
    /// A refresh started.
    Refreshing,
    /// A refresh succeeded.
    Refreshed {
        /// The new expiry.
        expires_at: Option<SystemTime>,
    },
    /// A refresh attempt failed; `retrying_in` is set when it will be retried.
    RefreshFailed {
        /// What kind of failure.
        kind: FailureKind,
        /// The wait before the next attempt, if there is one.
        retrying_in: Option<Duration>,
    },
    /// The new tokens could not be written to the store; they are kept in memory and the write is retried.
    StoreWriteFailed,
    /// The app signed the account out.
    SignedOutLocally,
    /// The provider ended the session.
    SignedOutByServer,
}
