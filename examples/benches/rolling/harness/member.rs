//! One simulated chat user, written as an app would write it: a
//! `RealtimeClient` given every node (`builder_multi`), joined to one room,
//! resuming after the last sequence number it saw on whichever node it
//! lands, and (for the senders) re-sending what was not acknowledged
//! (`Unacked`). Beside what the app needs it records what the harness
//! measures: each delivery, its latency, each connection and each
//! completed join, with times in µs since the run's epoch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use sessionkit_examples::protocol::{ChatMessage, ClientFrame, ServerFrame};
use sessionkit_realtime::{
    Incoming, RealtimeClient, ReconnectReason, Resume, State, StaticToken, TokenSource, Unacked,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Filler after the send time, so a message has an ordinary length.
const FILLER: &str = "a chat message of an ordinary length, about sixty bytes";

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// µs from `epoch` to now.
pub(crate) fn micros(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
}

/// The room of member `index`.
pub(crate) fn room_name(room: usize) -> String {
    format!("room{room}")
}

/// A sender's message id: its member index and its count, `s12-345`.
pub(crate) fn message_id(sender: usize, k: u64) -> String {
    format!("s{sender}-{k}")
}

/// The inverse of [`message_id`].
pub(crate) fn parse_id(id: &str) -> Option<(usize, u64)> {
    let (sender, k) = id.strip_prefix('s')?.split_once('-')?;
    Some((sender.parse().ok()?, k.parse().ok()?))
}

/// The send time (µs since the epoch) a message's text starts with.
fn parse_sent(text: &str) -> Option<u64> {
    text.strip_prefix('t')?.split_once(' ')?.0.parse().ok()
}

/// What one member saw, in the order its app saw it.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    pub(crate) index: usize,
    /// The last sequence number the app took (what it resumes after).
    pub(crate) cursor: u64,
    /// Messages the app took, in order: `(seq, sender, k)`.
    pub(crate) received: Vec<(u64, usize, u64)>,
    /// `(sent µs, latency µs)` of each message from another member.
    pub(crate) latencies: Vec<(u64, u64)>,
    /// Copies the app dropped because it had taken that sequence number
    /// already while a resume was under way, above the cursor the resume
    /// asked from: its queue still held them when the new connection
    /// asked (the protocol's expected overlap, not a duplicate).
    pub(crate) overlap: u64,
    /// Copies at or below the cursor outside that overlap, or not above
    /// the previous message of the same connection: a node sent a message
    /// twice (a duplicate).
    pub(crate) duplicates: u64,
    /// The highest sequence number on the current connection (its frames
    /// follow the server's `hello`; a server sends a room's messages on one
    /// connection in increasing order).
    pub(crate) connection_high: u64,
    /// Times a message skipped sequence numbers (a loss the app would not
    /// recover: it resumes after the highest number it took).
    pub(crate) gaps: u64,
    /// While a resume is under way: the lowest cursor it asked from.
    pub(crate) resuming_after: Option<u64>,
    /// Each new connection: `(µs, endpoint index)`.
    pub(crate) connects: Vec<(u64, usize)>,
    /// Each completed join (history caught up): µs.
    pub(crate) joins: Vec<u64>,
    /// `joined` frames whose `last_seq` was below the cursor.
    pub(crate) short_history: u64,
    /// `error` frames: code → count.
    pub(crate) errors: HashMap<String, u64>,
    /// Why the client was about to reconnect, as its state said: `(µs,
    /// reason)` (a lower bound: the state channel keeps the latest only).
    pub(crate) reasons: Vec<(u64, String)>,
}

impl Seen {
    /// A new connection's frames begin.
    pub(crate) fn on_hello(&mut self) {
        self.connection_high = 0;
    }

    pub(crate) fn on_message(&mut self, m: &ChatMessage, now: u64) {
        let repeated_here = m.seq <= self.connection_high;
        self.connection_high = self.connection_high.max(m.seq);
        if m.seq <= self.cursor {
            match self.resuming_after {
                Some(after) if m.seq > after && !repeated_here => self.overlap += 1,
                _ => self.duplicates += 1,
            }
            return;
        }
        if m.seq != self.cursor + 1 {
            self.gaps += 1;
        }
        self.cursor = m.seq;
        let (sender, k) = parse_id(&m.id).unwrap_or((usize::MAX, 0));
        self.received.push((m.seq, sender, k));
        if sender != self.index
            && let Some(sent) = parse_sent(&m.text)
        {
            self.latencies.push((sent, now.saturating_sub(sent)));
        }
    }

    pub(crate) fn on_joined(&mut self, last_seq: u64, now: u64) {
        self.joins.push(now);
        self.resuming_after = None;
        if last_seq < self.cursor {
            self.short_history += 1;
        }
    }

    /// When the member had resumed (a join completed on a connection
    /// opened at or after `since`), in µs, if it has.
    pub(crate) fn resumed_since(&self, since: u64) -> Option<u64> {
        let (opened, _) = self.connects.iter().find(|(at, _)| *at >= since)?;
        self.joins.iter().copied().find(|at| at >= opened)
    }
}

/// A sender's side: what waits for an acknowledgement, and what was
/// acknowledged under which sequence number.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    pub(crate) unacked: Unacked,
    /// `k` → the acknowledged sequence number.
    pub(crate) acked: Mutex<HashMap<u64, u64>>,
    /// Acknowledgements that named another sequence number than an
    /// earlier one for the same message.
    pub(crate) conflicts: AtomicU64,
    pub(crate) sent: AtomicU64,
}

impl Outbox {
    fn on_ack(&self, id: &str, seq: u64) {
        self.unacked.ack(id);
        let Some((_, k)) = parse_id(id) else {
            return;
        };
        if let Some(before) = lock(&self.acked).insert(k, seq)
            && before != seq
        {
            self.conflicts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One member: its client, what it saw, and (for a sender) its outbox.
pub(crate) struct Member {
    pub(crate) index: usize,
    pub(crate) room: usize,
    pub(crate) client: Arc<RealtimeClient>,
    pub(crate) seen: Arc<Mutex<Seen>>,
    pub(crate) outbox: Option<Arc<Outbox>>,
}

fn frame_json(frame: &ClientFrame) -> String {
    serde_json::to_string(frame).expect("a client frame serializes")
}

impl Member {
    /// Builds member `index` of `room` on the nodes at `urls`, with its
    /// user's access token. Every frame it receives counts in `deliveries`
    /// (messages only).
    pub(crate) fn start(
        index: usize,
        room: usize,
        sender: bool,
        urls: &[String],
        token: &str,
        epoch: Instant,
        deliveries: Arc<AtomicU64>,
    ) -> Self {
        let seen = Arc::new(Mutex::new(Seen {
            index,
            ..Seen::default()
        }));
        let outbox = sender.then(|| Arc::new(Outbox::default()));
        let source: Arc<dyn TokenSource> = Arc::new(StaticToken::new(token));
        let (hook_seen, hook_outbox, name) = (seen.clone(), outbox.clone(), room_name(room));
        let (client, incoming) = RealtimeClient::builder_multi(urls)
            .on_connect(move |resume: Resume| {
                {
                    let mut seen = lock(&hook_seen);
                    seen.connects.push((micros(epoch), resume.endpoint().index));
                    let after = seen.cursor;
                    seen.resuming_after = Some(seen.resuming_after.map_or(after, |a| a.min(after)));
                    resume.send(frame_json(&ClientFrame::Join {
                        room: name.clone(),
                        after,
                    }));
                }
                if let Some(outbox) = &hook_outbox {
                    outbox.unacked.resend(&resume);
                }
                std::future::ready(())
            })
            .build(source)
            .expect("a client");
        tokio::spawn(watch_reasons(client.state(), seen.clone(), epoch));
        tokio::spawn(read(
            incoming,
            seen.clone(),
            outbox.clone(),
            epoch,
            deliveries,
        ));
        Self {
            index,
            room,
            client: Arc::new(client),
            seen,
            outbox,
        }
    }

    /// Whether the client is connected with its room joined.
    pub(crate) fn settled(&self) -> bool {
        matches!(self.client.current_state(), State::Connected { .. })
            && lock(&self.seen).resuming_after.is_none()
    }

    /// The node the client is connected to.
    pub(crate) fn node(&self) -> Option<usize> {
        self.client.endpoint().map(|e| e.index)
    }

    /// Sends every `interval` (the first after `phase`) until `stop`.
    pub(crate) fn spawn_sender(
        &self,
        interval: Duration,
        phase: Duration,
        epoch: Instant,
        stop: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let outbox = self.outbox.clone().expect("a sender");
        let (client, index, room) = (self.client.clone(), self.index, room_name(self.room));
        tokio::spawn(async move {
            let start = tokio::time::Instant::now() + phase;
            let mut ticks = tokio::time::interval_at(start, interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut k = 0;
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                k += 1;
                let id = message_id(index, k);
                let frame = frame_json(&ClientFrame::Send {
                    room: room.clone(),
                    id: id.clone(),
                    text: format!("t{} {FILLER}", micros(epoch)),
                });
                outbox.sent.fetch_add(1, Ordering::Relaxed);
                if outbox.unacked.send(&client, id, frame).await.is_err() {
                    return;
                }
            }
        })
    }
}

/// Records every `Reconnecting` state's reason, in short: the close code,
/// the HTTP status, or the transport error without the endpoint's URL.
async fn watch_reasons(
    mut state: tokio::sync::watch::Receiver<State>,
    seen: Arc<Mutex<Seen>>,
    epoch: Instant,
) {
    while state.changed().await.is_ok() {
        let reason = match &*state.borrow_and_update() {
            State::Reconnecting { reason, .. } => match reason {
                ReconnectReason::ServerClosed { code, .. } => format!("close {code}"),
                ReconnectReason::Handshake { status } => format!("HTTP {status}"),
                ReconnectReason::Transport(why) => {
                    let why = why.split_once(": ").map_or(why.as_str(), |(_, w)| w);
                    format!("transport: {why}")
                }
                other => format!("{other:?}"),
            },
            State::Closed(_) => return,
            _ => continue,
        };
        lock(&seen).reasons.push((micros(epoch), reason));
    }
}

/// The member's app: reads every frame, keeps the cursor, acknowledges.
async fn read(
    mut incoming: mpsc::Receiver<Incoming>,
    seen: Arc<Mutex<Seen>>,
    outbox: Option<Arc<Outbox>>,
    epoch: Instant,
    deliveries: Arc<AtomicU64>,
) {
    while let Some(frame) = incoming.recv().await {
        let Incoming::Text(text) = frame else {
            continue;
        };
        let now = micros(epoch);
        match serde_json::from_str::<ServerFrame>(&text) {
            Ok(ServerFrame::Message(m)) => {
                deliveries.fetch_add(1, Ordering::Relaxed);
                lock(&seen).on_message(&m, now);
            }
            Ok(ServerFrame::Hello { .. }) => lock(&seen).on_hello(),
            Ok(ServerFrame::Joined { last_seq, .. }) => lock(&seen).on_joined(last_seq, now),
            Ok(ServerFrame::Ack { id, seq, .. }) => {
                if let Some(outbox) = &outbox {
                    outbox.on_ack(&id, seq);
                }
            }
            Ok(ServerFrame::Error { code, .. }) => {
                *lock(&seen).errors.entry(code).or_default() += 1;
            }
            Ok(_) => {}
            Err(_) => *lock(&seen).errors.entry("unparsable".into()).or_default() += 1,
        }
    }
}
