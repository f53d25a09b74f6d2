//! One account's connection to the chat server, shared by the plain mode and
//! the terminal UI: it joins the room, resumes after the last message seen,
//! re-sends what the server has not acknowledged, and reports what happens.
//!
//! Losing nothing across reconnects takes three things, all here: the
//! server's per-room sequence numbers (join with `after` = the last one
//! seen), client message ids (a resend is stored once), and the
//! `on_connect` hook of [`RealtimeClient`], which re-sends every
//! unacknowledged message ([`Unacked`]) before the queued ones go out. A
//! message typed while offline goes out once, from that hook (not queued as
//! well: doubled, a backlog would trip the server's rate limit at once).
//!
//! (Over 500 lines: one conversation's whole life — resume, idempotent
//! resends, the queue — read top to bottom; its tests are at the end.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use sessionkit::Session;
use sessionkit_realtime::{
    Endpoint, Incoming, RealtimeClient, Resume, State, TokenSource, Unacked,
};
use tokio::sync::{mpsc, watch};

use crate::protocol::{ChatMessage, ClientFrame, ServerFrame, valid_room};

/// What the conversation reports, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConversationEvent {
    /// The server greeted a new connection.
    Hello {
        /// The user the server sees.
        user: String,
        /// When the connection's token expires (Unix seconds).
        expires_at: u64,
    },
    /// A message not shown before, in sequence order per room.
    Message(ChatMessage),
    /// A message of ours is stored under `seq`.
    Acked {
        /// Our message id.
        id: String,
        /// Its sequence number.
        seq: u64,
    },
    /// The room's history is caught up.
    Joined {
        /// The room.
        room: String,
        /// Its last sequence number.
        last_seq: u64,
    },
    /// The server refused a frame.
    Refused {
        /// Our message id, when the refusal is about one of our messages.
        id: Option<String>,
        /// The server's code.
        code: String,
        /// Why.
        message: String,
        /// Whether the message was dropped for good (too long, bad room);
        /// otherwise (`storage`) it stays unacknowledged and is re-sent
        /// after the next reconnect.
        permanent: bool,
    },
}

#[derive(Debug)]
struct Shared {
    room: String,
    last_seq: HashMap<String, u64>,
    /// Rooms being joined again from their start because the server's
    /// history turned out shorter than what was seen (its database was
    /// reset): their messages are held, by sequence, until that join
    /// completes, then shown in order, once.
    resyncing: HashMap<String, std::collections::BTreeMap<u64, ChatMessage>>,
    next_id: u64,
    id_prefix: String,
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

fn frame_json(frame: &ClientFrame) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(frame).unwrap_or_default()
}

/// A connection to the chat server for one session and one room at a time.
#[derive(Debug)]
pub struct Conversation {
    client: Arc<RealtimeClient>,
    shared: Arc<Mutex<Shared>>,
    /// Our messages the server has not acknowledged, as `send` frames.
    unacked: Unacked,
    pending: watch::Receiver<usize>,
    pending_tx: Arc<watch::Sender<usize>>,
    reader: tokio::task::JoinHandle<()>,
}

impl Conversation {
    /// Connects `session` to the chat server at one of `servers` (the nodes
    /// of one service: it starts at one at random and fails over to the
    /// next) and joins `room`; on every new connection, whichever node it
    /// lands on, it joins again after the last message seen and re-sends
    /// what was not acknowledged.
    ///
    /// # Errors
    /// When a URL is not a `ws://` or `wss://` URL, there is none, or the
    /// room name is invalid.
    pub fn start(
        session: Arc<Session>,
        servers: &[String],
        room: &str,
    ) -> anyhow::Result<(Self, mpsc::UnboundedReceiver<ConversationEvent>)> {
        if !valid_room(room) {
            anyhow::bail!("{room:?} is not a room name (1–64 of a-z, 0-9, - and _)");
        }
        let shared = Arc::new(Mutex::new(Shared {
            room: room.to_owned(),
            last_seq: HashMap::new(),
            resyncing: HashMap::new(),
            next_id: 0,
            id_prefix: id_prefix(),
        }));
        let unacked = Unacked::new();
        let (resume_state, resume_unacked) = (shared.clone(), unacked.clone());
        let source: Arc<dyn TokenSource> = session;
        let (client, incoming) = RealtimeClient::builder_multi(servers)
            .on_connect(move |resume: Resume| {
                let (shared, unacked) = (resume_state.clone(), resume_unacked.clone());
                async move { resume_conversation(&shared, &unacked, &resume) }
            })
            .message_identity(identity)
            .build(source)?;
        let client = Arc::new(client);
        let (events_tx, events) = mpsc::unbounded_channel();
        let (pending_tx, pending) = watch::channel(0);
        let pending_tx = Arc::new(pending_tx);
        let reader = tokio::spawn(read(
            incoming,
            Arc::downgrade(&client),
            Reader {
                shared: shared.clone(),
                unacked: unacked.clone(),
                events: events_tx,
                pending: pending_tx.clone(),
            },
        ));
        Ok((
            Self {
                client,
                shared,
                unacked,
                pending,
                pending_tx,
                reader,
            },
            events,
        ))
    }

    /// Posts `text` to the current room; returns its message id. It is
    /// re-sent after every reconnect until the server acknowledges it.
    ///
    /// # Errors
    /// When the client is closed (signed out, closed by the server for good).
    pub async fn send(&self, text: &str) -> anyhow::Result<String> {
        let (id, frame) = {
            let mut shared = lock(&self.shared);
            shared.next_id += 1;
            let id = format!("{}-{}", shared.id_prefix, shared.next_id);
            let frame = frame_json(&ClientFrame::Send {
                room: shared.room.clone(),
                id: id.clone(),
                text: text.to_owned(),
            });
            (id, frame)
        };
        let sent = self.unacked.send(&self.client, id.clone(), frame).await;
        self.pending_tx.send_replace(self.unacked.len());
        sent?;
        Ok(id)
    }

    /// Moves to `room`: leaves the current one and joins the new one after
    /// the last message seen there.
    ///
    /// # Errors
    /// An invalid room name, or a closed client.
    pub async fn switch_room(&self, room: &str) -> anyhow::Result<()> {
        if !valid_room(room) {
            anyhow::bail!("{room:?} is not a room name (1–64 of a-z, 0-9, - and _)");
        }
        let (old, after) = {
            let mut shared = lock(&self.shared);
            let old = std::mem::replace(&mut shared.room, room.to_owned());
            (old, shared.last_seq.get(room).copied().unwrap_or(0))
        };
        self.client
            .send(frame_json(&ClientFrame::Leave { room: old }))
            .await?;
        self.client
            .send(frame_json(&ClientFrame::Join {
                room: room.to_owned(),
                after,
            }))
            .await?;
        Ok(())
    }

    /// The current room.
    #[must_use]
    pub fn room(&self) -> String {
        lock(&self.shared).room.clone()
    }

    /// How many of our messages wait for the server's acknowledgement.
    #[must_use]
    pub fn unacknowledged(&self) -> usize {
        *self.pending.borrow()
    }

    /// The connection's state.
    #[must_use]
    pub fn state(&self) -> watch::Receiver<State> {
        self.client.state()
    }

    /// The server the connection is on, while connected.
    #[must_use]
    pub fn endpoint(&self) -> Option<Endpoint> {
        self.client.endpoint()
    }

    /// Closes the connection and waits until nothing of it runs.
    pub async fn shutdown(&self) {
        self.client.shutdown().await;
        self.reader.abort();
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        self.client.close();
        self.reader.abort();
    }
}

/// Runs on every new connection before queued messages: join the room after
/// the last message seen, then re-send every unacknowledged message in
/// order (the server stores each id once).
fn resume_conversation(shared: &Mutex<Shared>, unacked: &Unacked, resume: &Resume) {
    {
        let shared = lock(shared);
        resume.send(frame_json(&ClientFrame::Join {
            room: shared.room.clone(),
            after: shared.last_seq.get(&shared.room).copied().unwrap_or(0),
        }));
    }
    unacked.resend(resume);
}

/// Messages and acknowledgements seen on two connections at once (during a
/// make-before-break token refresh) are delivered once.
fn identity(incoming: &Incoming) -> Option<String> {
    let Incoming::Text(text) = incoming else {
        return None;
    };
    match serde_json::from_str::<ServerFrame>(text).ok()? {
        ServerFrame::Message(m) => Some(format!("m:{}:{}", m.room, m.seq)),
        ServerFrame::Ack { room, id, seq } => Some(format!("a:{room}:{id}:{seq}")),
        _ => None,
    }
}

/// What the reader of the server's frames updates.
struct Reader {
    shared: Arc<Mutex<Shared>>,
    unacked: Unacked,
    events: mpsc::UnboundedSender<ConversationEvent>,
    /// How many of our messages wait for an acknowledgement.
    pending: Arc<watch::Sender<usize>>,
}

async fn read(
    mut incoming: mpsc::Receiver<Incoming>,
    client: std::sync::Weak<RealtimeClient>,
    reader: Reader,
) {
    let Reader {
        shared,
        unacked,
        events,
        pending: pending_tx,
    } = reader;
    while let Some(message) = incoming.recv().await {
        let Incoming::Text(text) = message else {
            continue;
        };
        let frame = match serde_json::from_str::<ServerFrame>(&text) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring a frame the client does not understand");
                continue;
            }
        };
        let out: Vec<ConversationEvent> = {
            let mut guard = lock(&shared);
            let shared = &mut *guard;
            match frame {
                ServerFrame::Hello { user, expires_at } => {
                    vec![ConversationEvent::Hello { user, expires_at }]
                }
                ServerFrame::Message(m) => match shared.resyncing.get_mut(&m.room) {
                    Some(held) => {
                        held.insert(m.seq, m);
                        Vec::new()
                    }
                    None => {
                        let last = shared.last_seq.entry(m.room.clone()).or_insert(0);
                        if m.seq > *last {
                            *last = m.seq;
                            vec![ConversationEvent::Message(m)]
                        } else {
                            Vec::new()
                        }
                    }
                },
                ServerFrame::Ack { id, seq, .. } => {
                    let settled = unacked.ack(&id);
                    pending_tx.send_replace(unacked.len());
                    if settled {
                        vec![ConversationEvent::Acked { id, seq }]
                    } else {
                        Vec::new()
                    }
                }
                ServerFrame::Joined { room, last_seq } => {
                    let cursor = shared.last_seq.entry(room.clone()).or_insert(0);
                    if let Some(held) = shared.resyncing.remove(&room) {
                        // The join from the start is complete: what was held
                        // (its history and anything live before it) in order.
                        let mut out: Vec<_> = held
                            .into_values()
                            .filter(|m| m.seq > *cursor)
                            .map(ConversationEvent::Message)
                            .collect();
                        if let Some(ConversationEvent::Message(m)) = out.last() {
                            *cursor = m.seq;
                        }
                        out.push(ConversationEvent::Joined { room, last_seq });
                        out
                    } else if last_seq >= *cursor {
                        vec![ConversationEvent::Joined { room, last_seq }]
                    } else {
                        // The server's history ends before what we saw: its
                        // database was reset, and its messages 1..=last_seq
                        // are new ones. Join again from the start (the join
                        // replaces the subscription) and hold what arrives
                        // until that join completes.
                        tracing::warn!(%room, last_seq, cursor = *cursor, "the room's history is shorter than what was seen; joining it again");
                        *cursor = 0;
                        let rejoin = frame_json(&ClientFrame::Join {
                            room: room.clone(),
                            after: 0,
                        });
                        if client.upgrade().is_some_and(|c| c.try_send(rejoin).is_ok()) {
                            shared
                                .resyncing
                                .insert(room, std::collections::BTreeMap::new());
                        }
                        Vec::new()
                    }
                }
                ServerFrame::Authed { .. } => Vec::new(),
                ServerFrame::Error { code, message, id } => {
                    // A storage failure is the server's trouble: the message
                    // stays pending and goes again after the next reconnect.
                    // Anything else about a message (too long, bad room) is
                    // final: re-sending would be refused again.
                    let permanent = id.is_some() && code != "storage";
                    if permanent && let Some(id) = &id {
                        unacked.ack(id);
                        pending_tx.send_replace(unacked.len());
                    }
                    vec![ConversationEvent::Refused {
                        id,
                        code,
                        message,
                        permanent,
                    }]
                }
            }
        };
        for event in out {
            if events.send(event).is_err() {
                return;
            }
        }
    }
}

/// A prefix that keeps this process's message ids apart from earlier runs
/// of the same account (ids are unique per sender at the server).
fn id_prefix() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared() -> Mutex<Shared> {
        Mutex::new(Shared {
            room: "general".into(),
            last_seq: HashMap::from([("general".to_owned(), 7)]),
            resyncing: HashMap::new(),
            next_id: 2,
            id_prefix: "p".into(),
        })
    }

    #[test]
    fn identity_names_messages_and_acks_only() {
        let m =
            r#"{"type":"message","room":"a","seq":3,"user":"u","id":"x","text":"t","sent_at":1}"#;
        assert_eq!(
            identity(&Incoming::Text(m.into())).as_deref(),
            Some("m:a:3")
        );
        let a = r#"{"type":"ack","room":"a","id":"x","seq":3}"#;
        assert_eq!(
            identity(&Incoming::Text(a.into())).as_deref(),
            Some("a:a:x:3")
        );
        let h = r#"{"type":"hello","user":"u","expires_at":1}"#;
        assert_eq!(identity(&Incoming::Text(h.into())), None);
        assert_eq!(identity(&Incoming::Text("not json".into())), None);
    }

    #[test]
    fn ids_differ_between_runs() {
        assert_ne!(id_prefix(), id_prefix());
    }

    #[tokio::test]
    async fn reader_drops_replayed_messages_and_settles_acks() {
        let shared = Arc::new(shared());
        let unacked = Unacked::new();
        unacked.record("p-1", "one");
        unacked.record("p-2", "two");
        let (in_tx, in_rx) = mpsc::channel(16);
        let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
        let (p_tx, p_rx) = watch::channel(2);
        let task = tokio::spawn(read(
            in_rx,
            std::sync::Weak::new(),
            Reader {
                shared: shared.clone(),
                unacked: unacked.clone(),
                events: ev_tx,
                pending: Arc::new(p_tx),
            },
        ));
        let msg = |seq: u64| {
            Incoming::Text(format!(
                r#"{{"type":"message","room":"general","seq":{seq},"user":"u","id":"i{seq}","text":"t","sent_at":1}}"#
            ))
        };
        for m in [msg(6), msg(7), msg(8), msg(8)] {
            in_tx.send(m).await.expect("send");
        }
        in_tx
            .send(Incoming::Text(
                r#"{"type":"ack","room":"general","id":"p-1","seq":9}"#.into(),
            ))
            .await
            .expect("send");
        in_tx
            .send(Incoming::Text(
                r#"{"type":"ack","room":"general","id":"p-1","seq":9}"#.into(),
            ))
            .await
            .expect("send");
        drop(in_tx);
        task.await.expect("reader");
        let mut events = Vec::new();
        while let Ok(e) = ev_rx.try_recv() {
            events.push(e);
        }
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(matches!(&events[0], ConversationEvent::Message(m) if m.seq == 8));
        assert_eq!(
            events[1],
            ConversationEvent::Acked {
                id: "p-1".into(),
                seq: 9
            }
        );
        assert_eq!(*p_rx.borrow(), 1);
        assert_eq!(unacked.ids(), ["p-2"]);
        assert_eq!(lock(&shared).last_seq["general"], 8);
    }
}
