//! The chat protocol's frames: what the server makes of a client's text
//! frame, and what the client makes of the server's. Input: one byte
//! choosing the side, then the frame text (UTF-8, as WebSocket text is).
//!
//! Checked: no panic; every frame accepted serializes and parses back to
//! itself; a refused frame names the `id` it carried; an `auth` frame's
//! `Debug` shows its token's length only.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sessionkit_fuzz::protocol::{BadFrame, ClientFrame, ServerFrame, parse_client_frame};

fuzz_target!(|data: &[u8]| {
    let Some((side, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if side & 1 == 0 {
        match parse_client_frame(text) {
            Ok(frame) => {
                let json = serde_json::to_string(&frame).expect("a frame serializes");
                assert_eq!(parse_client_frame(&json).as_ref(), Ok(&frame), "{json}");
                let shown = format!("{frame:?}");
                if let ClientFrame::Auth { token } = &frame {
                    assert_eq!(
                        shown,
                        format!("Auth {{ token: [redacted {} bytes] }}", token.len())
                    );
                }
            }
            Err(BadFrame::NotJson) => {
                assert!(serde_json::from_str::<serde_json::Value>(text).is_err());
            }
            Err(BadFrame::Malformed { id }) => {
                let value: serde_json::Value = serde_json::from_str(text).expect("JSON");
                assert_eq!(id.as_deref(), value.get("id").and_then(|v| v.as_str()));
            }
        }
    } else if let Ok(frame) = serde_json::from_str::<ServerFrame>(text) {
        let json = serde_json::to_string(&frame).expect("a frame serializes");
        let again: ServerFrame = serde_json::from_str(&json).expect("parses back");
        assert_eq!(again, frame, "{json}");
    }
});
