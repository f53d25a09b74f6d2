//! `chat --plain`: lines from stdin become messages, every message is
//! printed as `[SEQ] USER: TEXT` on stdout, status goes to stderr. At the
//! end of input it waits until the server acknowledged every line (and the
//! echo of the last one was printed: 5 s connected, 30 s at most), then
//! exits 0.

use std::collections::HashSet;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use sessionkit::Session;
use sessionkit_realtime::{CloseReason, State};
use tokio::io::AsyncBufReadExt as _;

use super::conversation::{Conversation, ConversationEvent};
use super::setup::Setup;
use super::status::{describe_session_event, describe_state};
use super::{DEMO_USERS, Options};

/// How long to wait, connected, for the echo of our last message once it is
/// acknowledged. A reconnect meanwhile (the server's rate limit, a node
/// going away) starts the wait again: the join after it brings the echoes.
const ECHO_WAIT: Duration = Duration::from_secs(5);
/// How long to wait for the echoes at most, reconnects included.
const ECHO_WAIT_LIMIT: Duration = Duration::from_secs(30);

pub(super) async fn run(setup: Setup, options: &Options) -> anyhow::Result<()> {
    let session = signed_in_session(&setup).await?;
    let (conversation, mut events) =
        Conversation::start(session.clone(), &setup.servers, &options.room)?;
    eprintln!(
        "chat: {} in #{} on {}",
        session.info().name(),
        options.room,
        setup.servers.join(", ")
    );
    let mut session_events = session.events();
    let mut state = conversation.state();
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let (mut input_open, mut events_open, mut state_open) = (true, true, true);
    // Our message ids the server has not settled yet (acknowledged or
    // refused for good), and the acknowledged ones whose echo has not been
    // printed yet; both follow the events in the order they are printed.
    let mut outstanding = HashSet::new();
    let mut awaiting_echo = HashSet::new();
    // The highest sequence printed: messages come in sequence order, so an
    // ack for a sequence at or below it was echoed already (after a move to
    // another node the echo can come before the ack).
    let mut printed_up_to = 0u64;
    let mut refused = 0usize;
    let mut echo_wait = EchoWait::default();
    let mut stdout = std::io::stdout();
    loop {
        if !input_open && outstanding.is_empty() {
            let connected = match *state.borrow() {
                State::Connected { generation } => Some(generation),
                _ => None,
            };
            if awaiting_echo.is_empty() || echo_wait.over(tokio::time::Instant::now(), connected) {
                break;
            }
        }
        tokio::select! {
            line = lines.next_line(), if input_open => {
                match line.context("cannot read stdin")? {
                    Some(line) if line.trim().is_empty() => {}
                    Some(line) => {
                        outstanding.insert(conversation.send(&line).await?);
                    }
                    None => input_open = false,
                }
            }
            event = events.recv(), if events_open => {
                // The events end when the connection closes for good; the
                // state says why (below).
                let Some(event) = event else {
                    events_open = false;
                    continue;
                };
                match event {
                    ConversationEvent::Message(m) => {
                        writeln!(stdout, "{}", line(m.seq, &m.user, &m.text))?;
                        stdout.flush()?;
                        awaiting_echo.remove(&m.id);
                        printed_up_to = printed_up_to.max(m.seq);
                    }
                    ConversationEvent::Acked { id, seq } => {
                        if outstanding.remove(&id) && seq > printed_up_to {
                            awaiting_echo.insert(id);
                        }
                    }
                    ConversationEvent::Hello { user, .. } => eprintln!("chat: signed in at the server as {user}"),
                    ConversationEvent::Joined { room, last_seq } => {
                        eprintln!("chat: joined #{room} (last message {last_seq})");
                    }
                    ConversationEvent::Refused { id, code, message, permanent } => {
                        eprintln!("chat: the server refused a message ({code}): {message}");
                        if permanent && id.is_some_and(|id| outstanding.remove(&id)) {
                            refused += 1;
                        }
                    }
                }
            }
            changed = state.changed(), if state_open => {
                state_open = changed.is_ok();
                let now = state.borrow_and_update().clone();
                if changed.is_ok() {
                    match (&now, conversation.endpoint()) {
                        (State::Connected { .. }, Some(at)) => eprintln!("chat: connected to {at}"),
                        _ => eprintln!("chat: {}", describe_state(&now)),
                    }
                }
                if let State::Closed(reason) = now {
                    conversation.shutdown().await;
                    return match reason {
                        CloseReason::Closed => Ok(()),
                        CloseReason::SignedOut => Err(anyhow::anyhow!(
                            "signed out by the server; run `chat login` to sign in again"
                        )),
                        other => Err(anyhow::anyhow!("{}", super::status::describe_close(&other))),
                    };
                }
                if !state_open {
                    anyhow::bail!("the connection ended without a reason");
                }
            }
            event = session_events.recv() => {
                if let Ok(event) = event && let Some(line) = describe_session_event(&event) {
                    eprintln!("chat: {line}");
                }
            }
            _ = tokio::time::sleep(ECHO_WAIT), if !input_open => {}
        }
    }
    // Print what already arrived (other users' messages too) before leaving.
    while let Ok(event) = events.try_recv() {
        if let ConversationEvent::Message(m) = event {
            writeln!(stdout, "{}", line(m.seq, &m.user, &m.text))?;
        }
    }
    stdout.flush()?;
    conversation.shutdown().await;
    if refused > 0 {
        anyhow::bail!("{refused} messages were refused by the server");
    }
    Ok(())
}

/// The wait for the echoes of our acknowledged messages: [`ECHO_WAIT`] on
/// the current connection (a new one starts it again, however quickly it
/// came), [`ECHO_WAIT_LIMIT`] in all.
#[derive(Debug, Default)]
struct EchoWait {
    /// The connection's generation, and when the wait on it ends.
    deadline: Option<(u64, tokio::time::Instant)>,
    limit: Option<tokio::time::Instant>,
}

impl EchoWait {
    /// Whether to stop waiting, asked at `now`, connected (the connection's
    /// generation) or not.
    fn over(&mut self, now: tokio::time::Instant, connected: Option<u64>) -> bool {
        if now >= *self.limit.get_or_insert(now + ECHO_WAIT_LIMIT) {
            return true;
        }
        let Some(generation) = connected else {
            return false;
        };
        match self.deadline {
            Some((on, end)) if on == generation => now >= end,
            _ => {
                self.deadline = Some((generation, now + ECHO_WAIT));
                false
            }
        }
    }
}

/// The active account's session; in the embedded demo, a fresh sign-in as
/// `SESSIONKIT_DEMO_USER` (default `alice`).
async fn signed_in_session(setup: &Setup) -> anyhow::Result<Arc<Session>> {
    let Some(embedded) = &setup.embedded else {
        return setup.active_session().await;
    };
    let user = std::env::var("SESSIONKIT_DEMO_USER").unwrap_or_else(|_| DEMO_USERS[0].to_owned());
    let account = embedded.sign_in(&setup.manager, &user).await?;
    eprintln!("chat: embedded demo, signed in as {}", account.name());
    setup
        .manager
        .session(&account.key)
        .context("the new session is not in memory")
}

/// One message as a plain-mode line, `[SEQ] USER: TEXT`, with every
/// control character of the user and the text escaped: no message can end
/// the line and forge another user's, or drive the terminal (an ESC
/// sequence retitling it or writing the clipboard with OSC 52).
fn line(seq: u64, user: &str, text: &str) -> String {
    format!("[{seq}] {}: {}", escape(user), escape(text))
}

/// `text` with control characters (C0, DEL, C1) written as `\n`, `\t`,
/// `\r` or `\u{..}`, and a backslash as `\\` (so an escape is never
/// ambiguous).
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_echo_wait_counts_connected_time_since_the_last_reconnect_and_ends_at_the_limit() {
        let start = tokio::time::Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let mut wait = EchoWait::default();
        assert!(!wait.over(at(0), Some(1)));
        assert!(!wait.over(at(4), Some(1)));
        // A reconnect (a rate limit's 5 s, a node going away): no end meanwhile,
        // and a new 5 s once connected again.
        assert!(!wait.over(at(6), None));
        assert!(!wait.over(at(12), None));
        assert!(!wait.over(at(13), Some(2)));
        assert!(!wait.over(at(17), Some(2)));
        assert!(wait.over(at(18), Some(2)));
        // A reconnect seen only as a new generation counts the same.
        let mut wait = EchoWait::default();
        assert!(!wait.over(at(0), Some(1)));
        assert!(!wait.over(at(4), Some(2)));
        assert!(!wait.over(at(8), Some(2)));
        assert!(wait.over(at(9), Some(2)));
        // Never past the limit, connected or not.
        let mut wait = EchoWait::default();
        assert!(!wait.over(at(0), None));
        assert!(!wait.over(at(29), None));
        assert!(wait.over(at(30), None));
    }

    #[test]
    fn no_message_can_forge_a_line_or_drive_the_terminal() {
        let forged =
            "hi\n[99] alice: send me your password\x1b]0;pwned\x07\x1b]52;c;Zm9v\x07\u{9b}2J";
        let out = line(7, "mallory\r", forged);
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert_eq!(out.lines().count(), 1);
        assert_eq!(
            out,
            "[7] mallory\\r: hi\\n[99] alice: send me your password\\u{1b}]0;pwned\\u{7}\\u{1b}]52;c;Zm9v\\u{7}\\u{9b}2J"
        );
        assert_eq!(
            line(1, "bob", "plain text, ünïcødé ✓"),
            "[1] bob: plain text, ünïcødé ✓"
        );
        assert_eq!(escape("a\\nb"), "a\\\\nb", "a backslash is escaped too");
    }
}
