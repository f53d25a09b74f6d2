//! The feed of a node that shares PostgreSQL with others: one connection
//! that `LISTEN`s, handing every committed message (this node's and the
//! others') to the local hub, and applying every back-channel logout
//! (closing the session's sockets here with 4003 and refusing its tokens).
//!
//! Messages of a room arrive in sequence order (PostgreSQL delivers
//! notifications in commit order, and a room's messages commit in sequence
//! order); a connection drops what it sent already and reads what it
//! missed from the table (see `ws`), so a duplicate or a gap never reaches
//! a client. When the `LISTEN` connection drops, notifications sent
//! meanwhile are lost: after it is back, the feed reloads the logouts and
//! hands each room with local listeners its newest message, from which
//! every connection behind catches up from the table.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::Notification;
use tokio_util::sync::CancellationToken;

use super::backchannel::{Revocations, kick_for};
use super::db::{Notice, Postgres, Revocation, RevocationRow};
use super::error::ServerError;
use super::hub::Hub;
use super::unix_now;

/// The longest wait between two attempts to listen again.
const MAX_WAIT: Duration = Duration::from_secs(2);

/// What the feed needs of the node.
#[derive(Debug, Clone)]
pub(crate) struct Feed {
    pub(crate) pg: Postgres,
    pub(crate) hub: Arc<Hub>,
    pub(crate) revocations: Arc<Revocations>,
}

type Listening = (
    tokio_postgres::Client,
    tokio::sync::mpsc::UnboundedReceiver<Notification>,
);

impl Feed {
    /// Listens once (so a node that starts is in the fan-out before it
    /// serves) and loads the logouts; the returned future runs the feed
    /// until `cancel`, listening again whenever the connection drops.
    pub(crate) async fn start(
        self,
        cancel: CancellationToken,
    ) -> Result<impl Future<Output = ()> + Send + 'static, ServerError> {
        let first = self.connect().await.map_err(|e| ServerError::Postgres {
            database: format!("{:?}", self.pg),
            source: Box::new(e),
        })?;
        Ok(self.run(first, cancel))
    }

    /// Listens, then catches up on what may have been missed.
    async fn connect(&self) -> Result<Listening, super::db::StoreError> {
        let listening = self.pg.listen().await?;
        for row in self.pg.revocations(unix_now()).await? {
            self.apply(&row.revocation);
        }
        for room in self.hub.listened_rooms() {
            let last = self.pg.last_seq_of(&room).await?;
            if last > 0 {
                self.forward(&room, last, None).await;
            }
        }
        Ok(listening)
    }

    async fn run(self, mut listening: Listening, cancel: CancellationToken) {
        loop {
            let (client, mut notifications) = listening;
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    n = notifications.recv() => match n {
                        Some(n) => self.notified(&n).await,
                        None => break,
                    },
                }
            }
            drop(client);
            tracing::warn!("lost the LISTEN connection to PostgreSQL; listening again");
            let mut wait = Duration::from_millis(50);
            listening = loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(wait) => {}
                }
                match self.connect().await {
                    Ok(listening) => {
                        tracing::info!("listening to PostgreSQL again");
                        break listening;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, ?wait, "cannot listen to PostgreSQL yet");
                        wait = (wait * 2).min(MAX_WAIT);
                    }
                }
            };
        }
    }

    async fn notified(&self, n: &Notification) {
        match Notice::parse(n.channel(), n.payload()) {
            Some(Notice::Message(message)) => {
                let (room, seq) = (message.room.clone(), message.seq);
                self.forward(&room, seq, Some(message)).await;
            }
            Some(Notice::Pointer { room, seq }) => self.forward(&room, seq, None).await,
            Some(Notice::Revoked(revocation)) => self.apply(&revocation),
            None => {}
        }
    }

    /// Hands message `seq` of `room` to its local listeners, reading it
    /// when it did not come whole.
    async fn forward(&self, room: &str, seq: u64, message: Option<crate::protocol::ChatMessage>) {
        if !self.hub.has_listeners(room) {
            return;
        }
        let message = match message {
            Some(message) => message,
            None => match self.pg.message(room, seq).await {
                Ok(Some(message)) => message,
                Ok(None) => return,
                Err(e) => {
                    // The next message's gap makes the connections read it.
                    tracing::warn!(error = %e, room, seq, "cannot read an announced message");
                    return;
                }
            },
        };
        self.hub.publish(&message);
    }

    /// Remembers a logout and closes its sockets on this node.
    fn apply(&self, revocation: &Revocation) {
        let closed = self.revocations.apply(revocation, &self.hub, kick_for());
        if closed > 0 {
            tracing::info!(
                closed,
                "closed connections of a session logged out on another node"
            );
        }
    }
}

/// A logout to record, remembered as long as the node remembers its own.
pub(crate) fn row_for(revocation: Revocation) -> RevocationRow {
    let remember = i64::try_from(super::backchannel::REMEMBER.as_secs()).unwrap_or(i64::MAX);
    RevocationRow {
        revocation,
        until: unix_now().saturating_add(remember),
    }
}
