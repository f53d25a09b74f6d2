//! The delayer behind [`super::Impairment::Delay`]: a thread per NFQUEUE
//! queue that holds each packet the kernel hands it and gives it its
//! verdict (accept) a fixed delay after it arrived, in arrival order.
//! The `nfq` crate speaks netlink to the kernel (no libnetfilter_queue);
//! it lets a message be kept and given its verdict later.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::enter;

/// A thread that holds every packet of one NFQUEUE queue for a delay.
#[derive(Debug)]
pub(super) struct Delayer {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl Delayer {
    /// Binds queue `num` (in the namespace at `netns`, else this one) and
    /// starts giving verdicts `delay` after each packet arrives.
    pub(super) fn start(netns: Option<String>, num: u16, delay: Duration) -> io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("delayer-{num}"))
            .spawn({
                let stop = Arc::clone(&stop);
                move || {
                    let queue = (|| {
                        if let Some(path) = &netns {
                            enter(path)?;
                        }
                        let mut queue = nfq::Queue::open()?;
                        queue.bind(num)?;
                        // The headers are enough: the verdict keeps the packet.
                        queue.set_copy_range(num, 0)?;
                        queue.set_queue_max_len(num, 65_536)?;
                        queue.set_nonblocking(true);
                        Ok::<_, io::Error>(queue)
                    })();
                    match queue {
                        Ok(queue) => {
                            let _ = ready_tx.send(Ok(()));
                            hold(queue, delay, &stop);
                        }
                        Err(err) => {
                            let _ = ready_tx.send(Err(err));
                        }
                    }
                }
            })?;
        ready
            .recv()
            .map_err(|_| io::Error::other("the delayer thread ended"))??;
        Ok(Self { stop, thread })
    }

    /// Lets every held packet go and ends the thread.
    pub(super) fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

/// The delayer's loop: packets in arrival order, each let go at its time.
fn hold(mut queue: nfq::Queue, delay: Duration, stop: &AtomicBool) {
    let mut held: VecDeque<(Instant, nfq::Message)> = VecDeque::new();
    loop {
        let stopping = stop.load(Ordering::SeqCst);
        let mut got = false;
        loop {
            match queue.recv() {
                Ok(message) => {
                    held.push_back((Instant::now() + delay, message));
                    got = true;
                }
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let now = Instant::now();
        while let Some((due, _)) = held.front() {
            if *due > now && !stopping {
                break;
            }
            let (_, mut message) = held.pop_front().expect("a front");
            message.set_verdict(nfq::Verdict::Accept);
            let _ = queue.verdict(message);
        }
        if stopping {
            return;
        }
        if !got {
            let wait = held.front().map_or(Duration::from_millis(1), |(due, _)| {
                due.saturating_duration_since(now)
            });
            std::thread::sleep(wait.min(Duration::from_millis(1)));
        }
    }
}
