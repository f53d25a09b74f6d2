//! The incoming queue's byte bound. The app holds a plain
//! `mpsc::Receiver<Incoming>` whose channel bounds the count; this side also
//! bounds the bytes, with the same effect when full: the driver waits, and
//! reading from the socket pauses (backpressure reaches the server through
//! TCP), nothing is dropped.
//!
//! The channel tells the sender how many messages are still queued
//! (`max_capacity - capacity`: a slot comes back when the app receives), and
//! messages leave in order, so the sizes of the messages sent, oldest first,
//! minus the ones already received, are what is queued. When the next
//! message does not fit, the driver waits for as many slots as the app must
//! take to make room.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::mpsc;

use crate::options::Incoming;

/// The driver's end of the incoming queue.
pub(crate) struct Inbox {
    tx: mpsc::Sender<Incoming>,
    max_bytes: usize,
    /// The sizes of the messages sent and maybe not yet received, oldest first.
    sizes: Mutex<VecDeque<usize>>,
}

impl Inbox {
    pub(crate) fn new(tx: mpsc::Sender<Incoming>, max_bytes: usize) -> Self {
        Self {
            tx,
            max_bytes,
            sizes: Mutex::new(VecDeque::new()),
        }
    }

    /// Queues `message` once it fits by count and by bytes (a message larger
    /// than the byte bound waits until the queue is empty, then goes alone).
    /// Dropped if the app has dropped its receiver. Cancel-safe: a message
    /// is either queued and counted, or neither.
    pub(crate) async fn send(&self, message: Incoming) {
        let size = message.len();
        while let Some(slots) = self.room_needed(size) {
            // Wait until the app has taken enough of the oldest messages.
            match self.tx.reserve_many(slots).await {
                Ok(permits) => drop(permits),
                Err(_) => return,
            }
        }
        if self.tx.send(message).await.is_ok() {
            self.sizes().push_back(size);
        }
    }

    /// The bytes queued now.
    #[cfg(test)]
    fn queued_bytes(&self) -> usize {
        let mut sizes = self.sizes();
        self.forget_received(&mut sizes);
        sizes.iter().sum()
    }

    /// `None` when `size` more bytes fit now; else how many free slots the
    /// channel must have (the app having taken the oldest messages) before
    /// they do.
    fn room_needed(&self, size: usize) -> Option<usize> {
        let mut sizes = self.sizes();
        let queued = self.forget_received(&mut sizes);
        let mut bytes: usize = sizes.iter().sum();
        let mut to_take = 0;
        for oldest in sizes.iter() {
            if bytes.saturating_add(size) <= self.max_bytes {
                break;
            }
            bytes -= oldest;
            to_take += 1;
        }
        (to_take > 0).then(|| self.tx.max_capacity() - queued + to_take)
    }

    /// Drops the sizes of the messages the app has received (the oldest);
    /// returns how many are still queued.
    fn forget_received(&self, sizes: &mut VecDeque<usize>) -> usize {
        let queued = self.tx.max_capacity() - self.tx.capacity();
        while sizes.len() > queued {
            sizes.pop_front();
        }
        queued
    }

    fn sizes(&self) -> std::sync::MutexGuard<'_, VecDeque<usize>> {
        self.sizes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Incoming {
    /// The message's size in bytes (text as UTF-8).
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Binary(bytes) => bytes.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn text(n: usize) -> Incoming {
        Incoming::Text("x".repeat(n))
    }

    /// Runs `send` and says whether it finished without waiting for the app.
    async fn queued_at_once(inbox: &Inbox, message: Incoming) -> bool {
        tokio::time::timeout(Duration::from_secs(1), inbox.send(message))
            .await
            .is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_bound_the_queue_and_receiving_makes_room() {
        let (tx, mut rx) = mpsc::channel(10);
        let inbox = Inbox::new(tx, 100);
        assert!(queued_at_once(&inbox, text(60)).await);
        assert!(queued_at_once(&inbox, text(40)).await, "exactly the bound");
        assert_eq!(inbox.queued_bytes(), 100);
        assert!(!queued_at_once(&inbox, text(1)).await, "one byte too many");
        assert_eq!(rx.len(), 2, "the waiting message was not queued");
        assert_eq!(rx.recv().await.map(|m| m.len()), Some(60));
        assert_eq!(inbox.queued_bytes(), 40);
        assert!(queued_at_once(&inbox, text(60)).await);
        assert_eq!(inbox.queued_bytes(), 100);
        // A wait ends as soon as the app takes what makes room.
        let waiting = inbox.send(text(50));
        tokio::pin!(waiting);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut waiting)
                .await
                .is_err()
        );
        assert_eq!(rx.recv().await.map(|m| m.len()), Some(40));
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut waiting)
                .await
                .is_err(),
            "60 + 50 still do not fit"
        );
        assert_eq!(rx.recv().await.map(|m| m.len()), Some(60));
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("fits now");
        assert_eq!(inbox.queued_bytes(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_larger_than_the_bound_goes_alone() {
        let (tx, mut rx) = mpsc::channel(10);
        let inbox = Inbox::new(tx, 100);
        assert!(queued_at_once(&inbox, text(10)).await);
        assert!(
            !queued_at_once(&inbox, text(500)).await,
            "waits for an empty queue"
        );
        assert_eq!(rx.recv().await.map(|m| m.len()), Some(10));
        assert!(queued_at_once(&inbox, text(500)).await, "alone");
        assert!(!queued_at_once(&inbox, text(1)).await);
        assert_eq!(rx.recv().await.map(|m| m.len()), Some(500));
        assert!(queued_at_once(&inbox, Incoming::Binary(vec![0; 100])).await);
    }

    #[tokio::test(start_paused = true)]
    async fn the_count_bound_still_holds_and_a_dropped_receiver_ends_waits() {
        let (tx, rx) = mpsc::channel(2);
        let inbox = Inbox::new(tx, 1 << 20);
        assert!(queued_at_once(&inbox, text(1)).await);
        assert!(queued_at_once(&inbox, text(1)).await);
        assert!(
            !queued_at_once(&inbox, text(1)).await,
            "two messages at most"
        );
        let (tx, rx2) = mpsc::channel(2);
        let small = Inbox::new(tx, 10);
        assert!(queued_at_once(&small, text(10)).await);
        let waiting = tokio::spawn(async move { small.send(text(5)).await });
        tokio::task::yield_now().await;
        drop(rx2);
        waiting
            .await
            .expect("the wait ends, the message is dropped");
        drop(rx);
    }
}
