//! A chat client for the fault tests: the realtime client joined to one
//! room, resuming after the last message it saw and re-sending what the
//! server has not acknowledged (the app's half of "nothing lost"), with the
//! server's frames sorted for the test.
//!
//! Shared by source (`#[path]`) between `tests/tests/faults.rs` and
//! `examples/tests/matrix`: both link sessionkit-examples, whose frame types
//! it reads, and the support crate cannot (it would link a second copy).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sessionkit_examples::protocol::{ChatMessage, ClientFrame, ServerFrame};
use sessionkit_realtime::{Builder, Incoming, RealtimeClient, Resume, State, TokenSource, Unacked};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long a [`Chat`] waits for anything it is asked to wait for.
pub const CHAT_PATIENCE: Duration = Duration::from_secs(30);

/// A realtime client joined to one room.
pub struct Chat {
    pub client: RealtimeClient,
    pub unacked: Unacked,
    /// Messages delivered to this client, with their arrival time.
    pub messages: mpsc::UnboundedReceiver<(Instant, ChatMessage)>,
    room: String,
    joined: watch::Receiver<u64>,
}

impl Chat {
    /// Starts `builder` (its URL, backoff and liveness as the test wants)
    /// with `source`'s tokens and a connect hook that joins `room` after the
    /// last message seen and re-sends everything unacknowledged. Does not
    /// wait: see [`Chat::joined`].
    pub fn start(builder: Builder, room: &str, source: Arc<dyn TokenSource>) -> Self {
        let unacked = Unacked::new();
        let last_seq = Arc::new(AtomicU64::new(0));
        let (client, incoming) = builder
            .on_connect({
                let (unacked, last_seq, room) =
                    (unacked.clone(), Arc::clone(&last_seq), room.to_owned());
                move |resume: Resume| {
                    let join = ClientFrame::Join {
                        room: room.clone(),
                        after: last_seq.load(Ordering::SeqCst),
                    };
                    resume.send(serde_json::to_string(&join).unwrap());
                    unacked.resend(&resume);
                    std::future::ready(())
                }
            })
            .build(source)
            .unwrap();
        let (messages_tx, messages) = mpsc::unbounded_channel();
        let (joined_tx, joined) = watch::channel(0_u64);
        tokio::spawn(read_frames(
            incoming,
            unacked.clone(),
            last_seq,
            messages_tx,
            joined_tx,
        ));
        Self {
            client,
            unacked,
            messages,
            room: room.to_owned(),
            joined,
        }
    }

    /// Waits until the room was joined `n` times (once per connection).
    pub async fn joined(&self, n: u64) {
        let mut joined = self.joined.clone();
        tokio::time::timeout(CHAT_PATIENCE, joined.wait_for(|j| *j >= n))
            .await
            .expect("joined in time")
            .unwrap();
    }

    /// Sends a line with id `id` (kept until the server acknowledges it,
    /// queued while disconnected).
    pub async fn send(&self, id: &str) {
        let frame = ClientFrame::Send {
            room: self.room.clone(),
            id: id.into(),
            text: format!("text of {id}"),
        };
        self.unacked
            .send(&self.client, id, serde_json::to_string(&frame).unwrap())
            .await
            .unwrap();
    }

    /// Waits until the server has acknowledged everything sent.
    pub async fn all_acked(&self) {
        let deadline = Instant::now() + CHAT_PATIENCE;
        while !self.unacked.is_empty() {
            assert!(
                Instant::now() < deadline,
                "unacknowledged: {:?}",
                self.unacked.ids()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The next message delivered to this client, with its arrival time.
    pub async fn next(&mut self) -> (Instant, ChatMessage) {
        tokio::time::timeout(CHAT_PATIENCE, self.messages.recv())
            .await
            .expect("a message in time")
            .unwrap()
    }

    /// Waits for a state that `want` accepts; returns when it was seen, and it.
    pub async fn state(&self, want: impl Fn(&State) -> bool) -> (Instant, State) {
        let mut state = self.client.state();
        let seen = tokio::time::timeout(CHAT_PATIENCE, state.wait_for(|s| want(s)))
            .await
            .unwrap_or_else(|_| panic!("the state in time; now {:?}", self.client.current_state()))
            .unwrap()
            .clone();
        (Instant::now(), seen)
    }
}

/// Reads the server's frames: acknowledgements clear [`Unacked`], messages
/// go to the test with their arrival time.
async fn read_frames(
    mut incoming: mpsc::Receiver<Incoming>,
    unacked: Unacked,
    last_seq: Arc<AtomicU64>,
    messages: mpsc::UnboundedSender<(Instant, ChatMessage)>,
    joined: watch::Sender<u64>,
) {
    while let Some(message) = incoming.recv().await {
        let Incoming::Text(text) = message else {
            continue;
        };
        match serde_json::from_str::<ServerFrame>(&text) {
            Ok(ServerFrame::Ack { id, .. }) => {
                unacked.ack(&id);
            }
            Ok(ServerFrame::Message(message)) => {
                last_seq.fetch_max(message.seq, Ordering::SeqCst);
                let _ = messages.send((Instant::now(), message));
            }
            Ok(ServerFrame::Joined { .. }) => {
                joined.send_modify(|n| *n += 1);
            }
            _ => {}
        }
    }
}

/// Whether the client is connected.
pub fn connected(state: &State) -> bool {
    matches!(state, State::Connected { .. })
}
