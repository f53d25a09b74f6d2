//! What the client says about its connection and session, in words (the
//! plain mode's stderr lines and the terminal UI's status bar).

use std::time::{Duration, SystemTime};

use sessionkit::{FailureKind, SessionEvent};
use sessionkit_realtime::{CloseReason, ReconnectReason, State};

/// The connection state in a few words.
#[must_use]
pub fn describe_state(state: &State) -> String {
    match state {
        State::Connecting { .. } => "connecting".to_owned(),
        State::Connected { .. } => "connected".to_owned(),
        State::Reconnecting {
            attempt,
            retry_in,
            reason,
        } => format!(
            "reconnecting in {} (attempt {attempt}): {}",
            seconds(*retry_in),
            describe_reason(reason)
        ),
        State::Closed(reason) => describe_close(reason),
        _ => format!("{state:?}"),
    }
}

/// Why the connection went down.
#[must_use]
pub fn describe_reason(reason: &ReconnectReason) -> String {
    match reason {
        ReconnectReason::ServerClosed { code: 4001, .. } => {
            "the server said the token expired".to_owned()
        }
        ReconnectReason::ServerClosed { code: 4003, .. } => {
            "the server said the session was signed out".to_owned()
        }
        ReconnectReason::ServerClosed { code, reason } if reason.is_empty() => {
            format!("the server closed the connection ({code})")
        }
        ReconnectReason::ServerClosed { code, reason } => {
            format!("the server closed the connection ({code} {reason})")
        }
        ReconnectReason::Unauthorized => "the server refused the token".to_owned(),
        ReconnectReason::Handshake { status } => format!("the server answered HTTP {status}"),
        ReconnectReason::Transport(e) => format!("connection lost ({e})"),
        ReconnectReason::Unresponsive => "the server stopped answering".to_owned(),
        ReconnectReason::TokenUnavailable(e) => format!("no token ({e})"),
        _ => format!("{reason:?}"),
    }
}

/// Why the client stopped.
#[must_use]
pub fn describe_close(reason: &CloseReason) -> String {
    match reason {
        CloseReason::Closed => "closed".to_owned(),
        CloseReason::SignedOut => "signed out by the server".to_owned(),
        CloseReason::DeadlineExceeded => "could not connect in time".to_owned(),
        CloseReason::Terminal { code, reason } => {
            format!("the server ended the connection for good ({code} {reason})")
        }
        CloseReason::DpopAlgorithm {
            accepted,
            signs_with,
        } => format!(
            "the chat server takes DPoP proofs signed with {} only, and this client signs with {signs_with}",
            if accepted.is_empty() {
                "(none)".to_owned()
            } else {
                accepted.join(", ")
            }
        ),
        _ => format!("{reason:?}"),
    }
}

/// A session event in words, or `None` for the ones not worth a line.
#[must_use]
pub fn describe_session_event(event: &SessionEvent) -> Option<String> {
    Some(match event {
        SessionEvent::Refreshing => "refreshing the token".to_owned(),
        SessionEvent::Refreshed { expires_at } => match expires_at {
            Some(at) => format!("token refreshed, valid for {}", until(*at)),
            None => "token refreshed".to_owned(),
        },
        SessionEvent::RefreshFailed { kind, retrying_in } => {
            let what = match kind {
                FailureKind::Transient => "token refresh failed (provider unreachable)",
                FailureKind::SignedOutByServer => "token refresh refused: signed out",
                FailureKind::Rejected => "token refresh rejected",
                _ => "token refresh failed",
            };
            match retrying_in {
                Some(d) => format!("{what}, retrying in {}", seconds(*d)),
                None => what.to_owned(),
            }
        }
        SessionEvent::StoreWriteFailed => {
            "could not save the new tokens to the keychain".to_owned()
        }
        SessionEvent::SignedOutByServer => "signed out by the provider".to_owned(),
        SessionEvent::SignedOutLocally => "signed out".to_owned(),
        _ => return None,
    })
}

/// `d` as `1.5 s`, `42 s` or `3 min 5 s`.
#[must_use]
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 10.0 {
        format!("{s:.1} s")
    } else if s < 120.0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} min {} s", d.as_secs() / 60, d.as_secs() % 60)
    }
}

/// The time left until `at` (zero when past).
#[must_use]
pub fn until(at: SystemTime) -> String {
    seconds(at.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_read_as_words() {
        let s = describe_state(&State::Reconnecting {
            attempt: 2,
            retry_in: Duration::from_millis(1500),
            reason: ReconnectReason::ServerClosed {
                code: 4001,
                reason: "token expired".into(),
            },
        });
        assert_eq!(
            s,
            "reconnecting in 1.5 s (attempt 2): the server said the token expired"
        );
        assert_eq!(
            describe_state(&State::Closed(CloseReason::SignedOut)),
            "signed out by the server"
        );
        assert_eq!(seconds(Duration::from_secs(185)), "3 min 5 s");
        let refused = CloseReason::DpopAlgorithm {
            accepted: vec!["PS256".into(), "EdDSA".into()],
            signs_with: "ES256".into(),
        };
        assert_eq!(
            describe_close(&refused),
            "the chat server takes DPoP proofs signed with PS256, EdDSA only, and this client signs with ES256"
        );
    }
}
