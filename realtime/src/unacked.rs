//! The app-level half of "nothing is lost across reconnects": messages kept
//! until the server acknowledges them, and re-sent on every new connection.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::client::RealtimeClient;
use crate::error::Result;
use crate::options::Resume;
use crate::state::State;

/// Messages sent but not yet acknowledged by the server, in send order.
///
/// The client writes every queued message once, in order (a message whose
/// write failed is written again first on the next connection). What it
/// cannot know is whether a message written just before a connection died
/// reached the server: only the server can say. For at-least-once delivery
/// with the server dropping duplicates (exactly once, in order, as the app
/// sees it):
///
/// 1. give every message an id the server echoes in an acknowledgement;
/// 2. send through [`Unacked::send`] (it records the message, then queues it,
///    unless the next connection's hook will send it, below);
/// 3. in the `on_connect` hook, on every connection, call [`Unacked::resend`]: the unacknowledged
///    messages go out first on the new connection, in their order, before
///    anything still queued;
/// 4. on every acknowledgement from the server, call [`Unacked::ack`];
/// 5. on the server, store a message only the first time its id is seen and
///    acknowledge every copy.
///
/// A message sent while no connection is up (or while one is being set up
/// and its hook has not run yet) is recorded but not queued: the hook of
/// the connection that will carry it re-sends it anyway, and queueing it as
/// well would send it twice (a burst of duplicates that can trip a server's
/// rate limit right after a reconnect). This holds once [`Unacked::resend`]
/// has run in a hook; until then every message is queued too. So once it
/// is used, the hook must call it on every connection, and one `Unacked`
/// serves one client. Such messages count against the client's queue
/// limits ([`crate::Builder::outgoing_limits`]): past them they are queued
/// as well, and sending waits or fails as it does with a full queue.
///
/// Clones share the same list. The list is not bounded: it holds what the
/// server has not acknowledged yet (at most what the app sent since the
/// oldest unacknowledged message). Send from one task, or order is the order
/// in which concurrent senders recorded their messages.
///
/// ```no_run
/// use std::sync::Arc;
/// use sessionkit_realtime::{Incoming, RealtimeClient, Resume, StaticToken, Unacked};
///
/// # async fn demo() -> Result<(), sessionkit_realtime::Error> {
/// let unacked = Unacked::new();
/// let source = Arc::new(StaticToken::new("an-access-token"));
/// let (client, mut incoming) = RealtimeClient::builder("wss://chat.example.com/ws")
///     .on_connect({
///         let unacked = unacked.clone();
///         move |resume: Resume| {
///             unacked.resend(&resume);
///             std::future::ready(())
///         }
///     })
///     .build(source)?;
///
/// // Messages `{"id":N,...}`; the server answers `{"ack":N}`.
/// unacked.send(&client, "1", r#"{"id":1,"text":"hi"}"#).await?;
/// while let Some(Incoming::Text(text)) = incoming.recv().await {
///     if let Some(id) = text.strip_prefix(r#"{"ack":"#).and_then(|t| t.strip_suffix('}')) {
///         unacked.ack(id);
///     }
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Unacked {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    list: VecDeque<(String, String)>,
    /// The generation of the last connection [`Unacked::resend`] ran for.
    resent_for: Option<u64>,
    /// Messages (and their bytes) recorded since then and left to the next
    /// hook, not queued.
    held: usize,
    held_bytes: usize,
}

impl Inner {
    /// Whether a message of `len` bytes must be queued on `client` as well:
    /// unless the hook of the connection that will carry it is yet to run
    /// and re-sends it from the list. (The driver publishes `Connecting`
    /// before an attempt and `Connected` once open, both before that
    /// connection's hook.) Past what the queue itself holds, it is queued
    /// too, so the queue's back-pressure applies while offline as before.
    /// Called under the lock that `resend` takes: no hook runs meanwhile.
    fn queue_as_well(&self, client: &RealtimeClient, len: usize) -> bool {
        let Some(resent_for) = self.resent_for else {
            return true;
        };
        let hook_to_come = match client.current_state() {
            State::Connecting { generation } | State::Connected { generation } => {
                resent_for < generation
            }
            State::Reconnecting { .. } => true,
            _ => false,
        };
        !hook_to_come
            || self.held + 1 > client.outgoing.max_capacity()
            || self.held_bytes + len > client.max_bytes
    }
}

/// Counts only: the texts may hold anything the app sends.
impl std::fmt::Debug for Unacked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unacked")
            .field("messages", &self.len())
            .finish()
    }
}

impl Unacked {
    /// An empty list.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records `text` under `id`, then queues it on `client` (waiting for
    /// room like [`RealtimeClient::send`]) unless the next connection's
    /// hook will send it (see above). If queueing fails the record is
    /// removed again.
    ///
    /// # Errors
    /// Those of [`RealtimeClient::send`].
    pub async fn send(
        &self,
        client: &RealtimeClient,
        id: impl Into<String>,
        text: impl Into<String>,
    ) -> Result<()> {
        let (id, text) = (id.into(), text.into());
        client.check(&text)?;
        if !self.record_for(client, id.clone(), text.clone()) {
            return Ok(());
        }
        let sent = client.send(text).await;
        if sent.is_err() {
            self.forget_last(&id);
        }
        sent
    }

    /// Like [`Unacked::send`] without waiting ([`RealtimeClient::try_send`]).
    ///
    /// # Errors
    /// Those of [`RealtimeClient::try_send`].
    pub fn try_send(
        &self,
        client: &RealtimeClient,
        id: impl Into<String>,
        text: impl Into<String>,
    ) -> Result<()> {
        let (id, text) = (id.into(), text.into());
        client.check(&text)?;
        if !self.record_for(client, id.clone(), text.clone()) {
            return Ok(());
        }
        let sent = client.try_send(text);
        if sent.is_err() {
            self.forget_last(&id);
        }
        sent
    }

    /// Records a message without queueing it (for apps that queue it
    /// themselves, after this call).
    pub fn record(&self, id: impl Into<String>, text: impl Into<String>) {
        self.lock().list.push_back((id.into(), text.into()));
    }

    /// Records a message; returns whether it must be queued on `client` as
    /// well (no hook to come re-sends it).
    fn record_for(&self, client: &RealtimeClient, id: String, text: String) -> bool {
        let mut inner = self.lock();
        let queue = inner.queue_as_well(client, text.len());
        if !queue {
            inner.held += 1;
            inner.held_bytes += text.len();
        }
        inner.list.push_back((id, text));
        queue
    }

    fn forget_last(&self, id: &str) {
        let list = &mut self.lock().list;
        if let Some(at) = list.iter().rposition(|(i, _)| i == id) {
            list.remove(at);
        }
    }

    /// The server acknowledged `id`: forgets it. Returns whether it was
    /// there (an acknowledgement of a re-sent duplicate is not).
    pub fn ack(&self, id: &str) -> bool {
        let list = &mut self.lock().list;
        // Acknowledgements usually come in order: the oldest first.
        match list.iter().position(|(i, _)| i == id) {
            Some(at) => {
                list.remove(at);
                true
            }
            None => false,
        }
    }

    /// Sends every unacknowledged message through `resume`, oldest first;
    /// call it from the `on_connect` hook. Returns how many.
    pub fn resend(&self, resume: &Resume) -> usize {
        let mut inner = self.lock();
        inner.resent_for = Some(resume.generation());
        (inner.held, inner.held_bytes) = (0, 0);
        for (_, text) in &inner.list {
            resume.send(text.clone());
        }
        inner.list.len()
    }

    /// How many messages wait for an acknowledgement.
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().list.len()
    }

    /// Whether every message was acknowledged.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.lock().list.is_empty()
    }

    /// The ids waiting for an acknowledgement, oldest first.
    #[must_use]
    pub fn ids(&self) -> Vec<String> {
        self.lock().list.iter().map(|(id, _)| id.clone()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_remove_and_order_is_kept() {
        let unacked = Unacked::new();
        for i in 0..5 {
            unacked.record(i.to_string(), format!("m{i}"));
        }
        assert!(unacked.ack("2"));
        assert!(!unacked.ack("2"));
        assert!(unacked.ack("0"));
        assert_eq!(unacked.ids(), ["1", "3", "4"]);
        unacked.forget_last("4");
        assert_eq!(unacked.len(), 2);
        assert!(unacked.ack("1") && unacked.ack("3"));
        assert!(unacked.is_empty());
    }
}
