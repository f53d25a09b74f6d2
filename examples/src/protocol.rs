//! The chat wire protocol: JSON text frames tagged by `"type"`, shared by
//! [`crate::server`] and the `chat` client.
//!
//! A connection is opened with the access token in the `Authorization:
//! Bearer` header on `ws://HOST:PORT/ws`. The server answers with
//! [`ServerFrame::Hello`], then the client joins rooms and sends messages:
//!
//! ```text
//! client → {"type":"join","room":"general","after":41}
//! server ← {"type":"message","room":"general","seq":42,...}   (history after 41, then live)
//! server ← {"type":"joined","room":"general","last_seq":42}
//! client → {"type":"send","room":"general","id":"c-7","text":"hi"}
//! server ← {"type":"ack","room":"general","id":"c-7","seq":43}
//! server ← {"type":"message","room":"general","seq":43,"user":"alice","id":"c-7","text":"hi",...}
//! ```
//!
//! A `send` is idempotent per sender and `id`: a resend after a reconnect is
//! acknowledged with the sequence number it got the first time and is not
//! stored or delivered again. Sequence numbers are per room, start at 1 and
//! have no gaps.
//!
//! Close codes the server uses: 4001 when the connection's token expired,
//! 4003 when the provider logged the session out (back-channel logout),
//! 4008 when the client could not keep up with its rooms (reconnect and
//! resume), 4029 when the user sent frames faster than allowed (the close
//! reason is `{"retry_after_ms":N}`: reconnect after N ms and re-send what
//! was not acknowledged), 1013 ("try again later") when the database is
//! unavailable — a join cannot read the room, or a send could not be stored
//! (the close reason is `{"retry_after_ms":N}`: reconnect, to this node or
//! another, join again and re-send what was not acknowledged), 1008 for a
//! protocol violation. The server pings
//! every 30 s and drops a connection that sent no frame at all (not even a
//! pong) for 60 s.
//!
//! ## What a message's text may hold
//!
//! The server refuses, with an `error` frame and without storing it, a
//! `send` whose text ([`check_text`]):
//! - is empty or only white space (`bad_text`);
//! - is longer than [`MAX_TEXT_BYTES`] (`too_long`);
//! - holds a control character other than newline and tab: C0 controls
//!   (carriage return and escape included), DEL, C1 controls (`bad_text`).
//!   These drive terminals (cursor moves, OSC title and clipboard writes) or
//!   forge lines;
//! - holds a bidirectional embedding, override or isolate (U+202A–U+202E,
//!   U+2066–U+2069), which reorder what is displayed around them ("Trojan
//!   Source"; `bad_text`). The marks U+200E, U+200F and U+061C stay allowed:
//!   right-to-left writing needs them and they reorder nothing past
//!   themselves. Other format characters (the zero-width joiner of emoji
//!   sequences, tag characters of flags) stay allowed too.
//!
//! The `chat` client's plain mode still escapes what it prints: a server
//! that is not this one may send anything.
//!
//! ## Limits (per user, by the token's `sub`)
//!
//! Defaults, configurable in `ServerConfig::users`:
//! - 16 WebSocket connections at once; one more is refused at the handshake
//!   with HTTP 429 `{"error":"too_many_connections"}` and `Retry-After`;
//! - 64 rooms joined per connection and 256 across the user's connections,
//!   1,000 rooms created (a room is created by its first message): past
//!   either, an `error` frame `too_many_rooms` (a refused post is not stored);
//! - 10 frames per second through a bucket of 50 (every frame counts but
//!   pings and pongs); the first frame over it is not acted on and the
//!   connection is closed with 4029.
//!
//! The fuzz targets (`fuzz/` at the repository root) compile this file
//! on its own: it must depend on `serde`, `serde_json` and `thiserror` only.

use serde::{Deserialize, Serialize};

/// The path of the WebSocket endpoint.
pub const WS_PATH: &str = "/ws";
/// The path the provider posts back-channel logout tokens to.
pub const BACKCHANNEL_PATH: &str = "/backchannel-logout";
/// The longest message text the server accepts, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;
/// The longest client message id the server accepts, in bytes.
pub const MAX_ID_BYTES: usize = 128;
/// Close code: the connection's token expired (or was replaced by an invalid one).
pub const CLOSE_TOKEN_EXPIRED: u16 = 4001;
/// Close code: the session was logged out at the provider.
pub const CLOSE_SIGNED_OUT: u16 = 4003;
/// Close code: the client fell behind its rooms' traffic; reconnect and resume.
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code (WebSocket's "Try Again Later"): the node cannot read the
/// room being joined, or store a message sent, now (its database is
/// unavailable); the close reason is `{"retry_after_ms":N}`. Reconnect
/// after N ms, join again and re-send what was not acknowledged.
pub const CLOSE_TRY_AGAIN_LATER: u16 = 1013;
/// Close code (WebSocket's "Service Restart"): the node holds more than its
/// share of the service's connections and asks this client, which said it
/// knows other nodes (`Sessionkit-Endpoints`), to move to one; resume there.
pub const CLOSE_MOVE: u16 = 1012;
/// Close code: the user sent frames faster than allowed; the close reason
/// is `{"retry_after_ms":N}`. The frame that went over was not acted on.
pub const CLOSE_RATE_LIMITED: u16 = 4029;

/// Why a message's text is refused (see "What a message's text may hold"
/// above).
///
/// ```
/// use sessionkit_examples::protocol::{TextError, check_text};
///
/// assert_eq!(check_text("hi\nthere\t!"), Ok(()));
/// assert_eq!(check_text(" "), Err(TextError::Empty));
/// assert_eq!(check_text("\u{1b}]52;c;aGk=\u{7}"), Err(TextError::Control('\u{1b}')));
/// assert_eq!(check_text("abc\u{202e}fed"), Err(TextError::Control('\u{202e}')));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Empty, or only white space.
    #[error("the text is empty")]
    Empty,
    /// Longer than [`MAX_TEXT_BYTES`].
    #[error("the text is longer than {MAX_TEXT_BYTES} bytes")]
    TooLong,
    /// Holds this control or bidirectional-override character.
    #[error("the text holds the control character U+{:04X}", u32::from(*.0))]
    Control(char),
}

impl TextError {
    /// The `error` frame code the server answers with: `too_long` or `bad_text`.
    #[must_use]
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooLong => "too_long",
            Self::Empty | Self::Control(_) => "bad_text",
        }
    }
}

/// Whether `c` may not appear in a message's text: a control character
/// other than newline and tab (C0, DEL, C1), or a bidirectional embedding,
/// override or isolate.
#[must_use]
pub fn is_forbidden_in_text(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

/// Checks a message's text against the server's rule.
pub fn check_text(text: &str) -> Result<(), TextError> {
    if text.len() > MAX_TEXT_BYTES {
        return Err(TextError::TooLong);
    }
    if let Some(c) = text.chars().find(|&c| is_forbidden_in_text(c)) {
        return Err(TextError::Control(c));
    }
    if text.trim().is_empty() {
        return Err(TextError::Empty);
    }
    Ok(())
}

/// A frame the client sends. Its `Debug` never shows an `auth` token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Subscribe to `room`, first receiving every stored message with a
    /// sequence number above `after` (0 for the whole history).
    Join {
        /// The room name: 1–64 of `a-z`, `0-9`, `-`, `_`.
        room: String,
        /// The last sequence number the client has seen in this room.
        #[serde(default)]
        after: u64,
    },
    /// Stop receiving `room`'s messages.
    Leave {
        /// The room name.
        room: String,
    },
    /// Post a message. The client may post to a room it has not joined.
    Send {
        /// The room name.
        room: String,
        /// The client's id for this message, unique per sender; a resend
        /// with the same id is acknowledged again but stored once.
        id: String,
        /// The text, at most [`MAX_TEXT_BYTES`].
        text: String,
    },
    /// In-band re-authentication: a fresh access token for the same
    /// subject; the connection then lives until the new token expires.
    Auth {
        /// The new access token.
        token: String,
    },
}

impl std::fmt::Debug for ClientFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Join { room, after } => f
                .debug_struct("Join")
                .field("room", room)
                .field("after", after)
                .finish(),
            Self::Leave { room } => f.debug_struct("Leave").field("room", room).finish(),
            Self::Send { room, id, text } => f
                .debug_struct("Send")
                .field("room", room)
                .field("id", id)
                .field("text", text)
                .finish(),
            Self::Auth { token } => f
                .debug_struct("Auth")
                .field("token", &format_args!("[redacted {} bytes]", token.len()))
                .finish(),
        }
    }
}

/// A frame the server sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame on every connection.
    Hello {
        /// The display name of the connection's user.
        user: String,
        /// When the connection's token expires (Unix seconds); the server
        /// closes the connection with 4001 then unless re-authenticated.
        expires_at: u64,
    },
    /// A stored message, from the history or live.
    Message(ChatMessage),
    /// A `join` is complete: the history up to `last_seq` has been sent.
    Joined {
        /// The room name.
        room: String,
        /// The room's last sequence number when the join completed.
        last_seq: u64,
    },
    /// A `send` is stored (now or before) under `seq`.
    Ack {
        /// The room name.
        room: String,
        /// The client's message id.
        id: String,
        /// The sequence number the message has in the room.
        seq: u64,
    },
    /// An in-band `auth` was accepted.
    Authed {
        /// When the new token expires (Unix seconds).
        expires_at: u64,
    },
    /// A frame was refused; the connection stays open.
    Error {
        /// A short machine-readable code (`bad_frame`, `bad_room`, `bad_text`,
        /// `too_long`, `too_many_rooms`, `bad_token`, `storage`).
        code: String,
        /// What was wrong, for people.
        message: String,
        /// The client message id the error is about, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
}

/// A message as stored and delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// The room name.
    pub room: String,
    /// The per-room sequence number (1, 2, 3, …).
    pub seq: u64,
    /// The sender's display name.
    pub user: String,
    /// The sender's client message id.
    pub id: String,
    /// The text.
    pub text: String,
    /// When the server stored it (Unix milliseconds).
    pub sent_at: u64,
}

/// Why a client frame was refused (the server answers with a `bad_frame` error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadFrame {
    /// The text is not JSON.
    NotJson,
    /// JSON, but no frame this protocol knows; `id` is the frame's `id`
    /// member when it has a string one, for the error to name.
    Malformed {
        /// The client message id the frame carried, if any.
        id: Option<String>,
    },
}

/// Parses a text frame from a client, as the server does. The serde error
/// is not kept: it may quote the frame's values (an `auth` token).
///
/// ```
/// use sessionkit_examples::protocol::{BadFrame, ClientFrame, parse_client_frame};
///
/// let frame = parse_client_frame(r#"{"type":"leave","room":"general"}"#);
/// assert_eq!(frame, Ok(ClientFrame::Leave { room: "general".into() }));
/// let refused = parse_client_frame(r#"{"type":"send","id":"c-1"}"#);
/// assert_eq!(refused, Err(BadFrame::Malformed { id: Some("c-1".into()) }));
/// ```
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, BadFrame> {
    let value = serde_json::from_str::<serde_json::Value>(text).map_err(|_| BadFrame::NotJson)?;
    let id = value
        .get("id")
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned);
    serde_json::from_value::<ClientFrame>(value).map_err(|_| BadFrame::Malformed { id })
}

/// Whether `room` is a valid room name: 1–64 of `a-z`, `0-9`, `-`, `_`.
#[must_use]
pub fn valid_room(room: &str) -> bool {
    (1..=64).contains(&room.len())
        && room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_with_their_type_tag() {
        let frame = ClientFrame::Send {
            room: "general".into(),
            id: "c-1".into(),
            text: "hi".into(),
        };
        let json = serde_json::to_string(&frame).expect("serialize");
        assert_eq!(
            json,
            r#"{"type":"send","room":"general","id":"c-1","text":"hi"}"#
        );
        assert_eq!(
            serde_json::from_str::<ClientFrame>(&json).expect("parse"),
            frame
        );
        let join: ClientFrame =
            serde_json::from_str(r#"{"type":"join","room":"a"}"#).expect("parse");
        assert_eq!(
            join,
            ClientFrame::Join {
                room: "a".into(),
                after: 0
            }
        );
        let message = ServerFrame::Message(ChatMessage {
            room: "a".into(),
            seq: 3,
            user: "bob".into(),
            id: "x".into(),
            text: "t".into(),
            sent_at: 1,
        });
        let json = serde_json::to_string(&message).expect("serialize");
        assert!(
            json.starts_with(r#"{"type":"message","room":"a","seq":3"#),
            "{json}"
        );
        assert_eq!(
            serde_json::from_str::<ServerFrame>(&json).expect("parse"),
            message
        );
    }

    #[test]
    fn an_auth_frame_never_shows_its_token() {
        let frame = ClientFrame::Auth {
            token: "eyJ.secret.token".into(),
        };
        let shown = format!("{frame:?} {frame:#?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("[redacted 16 bytes]"), "{shown}");
    }

    #[test]
    fn text_keeps_newlines_tabs_and_unicode_but_no_controls() {
        for ok in [
            "hi",
            "two\nlines\tand a tab",
            "שלום \u{200f}(RLM) and \u{200e}",
            "👩\u{200d}💻 joined",
            "émoji 🏳️\u{200d}🌈",
        ] {
            assert_eq!(check_text(ok), Ok(()), "{ok:?}");
        }
        for (bad, c) in [
            ("line\r[99] alice: forged", '\r'),
            ("\u{1b}[2J", '\u{1b}'),
            ("bell\u{7}", '\u{7}'),
            ("nul\0", '\0'),
            ("del\u{7f}", '\u{7f}'),
            ("c1 csi \u{9b}31m", '\u{9b}'),
            ("next line \u{85}", '\u{85}'),
            ("abc\u{202e}cba", '\u{202e}'),
            ("lre\u{202a}", '\u{202a}'),
            ("isolate \u{2066}x\u{2069}", '\u{2066}'),
        ] {
            assert_eq!(check_text(bad), Err(TextError::Control(c)), "{bad:?}");
            assert_eq!(TextError::Control(c).code(), "bad_text");
        }
        assert_eq!(check_text(""), Err(TextError::Empty));
        assert_eq!(check_text(" \n\t "), Err(TextError::Empty));
        assert_eq!(check_text(&"a".repeat(MAX_TEXT_BYTES)), Ok(()));
        let long = "a".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(check_text(&long), Err(TextError::TooLong));
        assert_eq!(TextError::TooLong.code(), "too_long");
        assert_eq!(
            TextError::Control('\u{1b}').to_string(),
            "the text holds the control character U+001B"
        );
    }

    #[test]
    fn room_names_are_checked() {
        assert!(valid_room("general"));
        assert!(valid_room("team-1_b"));
        assert!(!valid_room(""));
        assert!(!valid_room("General"));
        assert!(!valid_room("a b"));
        assert!(!valid_room(&"a".repeat(65)));
    }
}
