//! A fault-injecting TCP proxy: the unprivileged way for a test to put a
//! slow, partitioned, resetting or refusing network between a client and a
//! server on loopback (network namespaces and nftables need root; this
//! kernel has no netem for latency anyway).
//!
//! The proxy listens on `127.0.0.1:0` in front of one upstream address and
//! forwards bytes both ways. The test switches its [`Fault`] at any time
//! through the [`FaultProxy`] handle; a switch applies to the connections
//! already open as well as to new ones. Dropping the handle stops the proxy
//! and closes every connection it holds.
//!
//! Random packet loss is not modelled: on a byte stream, dropping a chunk
//! corrupts the stream instead of causing a retransmission, which is not
//! what 30 % loss does to TCP. Real loss needs nftables
//! (`numgen random mod 100 < 30 drop`) in a network namespace.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

/// What the proxy does to the traffic it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Fault {
    /// Forward everything at once (default).
    #[default]
    Pass,
    /// Forward every chunk this long after it was read, in order, each
    /// direction on its own: added latency, not a bandwidth limit. Chunks
    /// read before the switch keep the delay they were read with.
    Delay(Duration),
    /// Forward nothing and close nothing, on open and new connections: a
    /// partitioned node whose packets are silently dropped (half-open
    /// sockets). New connections are accepted but wait to be forwarded.
    /// Data sent meanwhile waits in the proxy and the kernel's buffers and
    /// goes through once the fault is lifted, as TCP's retransmissions
    /// would deliver it after a short partition.
    Blackhole,
    /// Close every open connection, and every new one once accepted, with
    /// a TCP reset (`SO_LINGER` 0, then close) on both sides.
    Reset,
    /// Stop listening: new connections are refused by the kernel
    /// (`ECONNREFUSED`); open ones are left as they are. Listening resumes
    /// on the same address once the fault is lifted.
    Refuse,
}

/// The proxy's counters since it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ProxyStats {
    /// Connections accepted from clients.
    pub accepted: u64,
    /// Connections currently held.
    pub open: u64,
    /// Bytes forwarded from clients to the upstream.
    pub bytes_up: u64,
    /// Bytes forwarded from the upstream to clients.
    pub bytes_down: u64,
}

#[derive(Default)]
struct Counters {
    accepted: AtomicU64,
    open: AtomicU64,
    bytes_up: AtomicU64,
    bytes_down: AtomicU64,
}

/// A running proxy; dropping it stops the proxy and closes its connections.
///
/// ```no_run
/// use std::time::Duration;
/// use sessionkit_tests::faults::{Fault, FaultProxy};
///
/// # async fn demo(server: std::net::SocketAddr) -> std::io::Result<()> {
/// let proxy = FaultProxy::start(server).await?;
/// let url = format!("ws://{}/ws", proxy.local_addr());
/// // ... connect a client to `url` ...
/// proxy.set(Fault::Delay(Duration::from_millis(300)));
/// proxy.set(Fault::Blackhole);
/// proxy.set(Fault::Pass);
/// assert!(proxy.stats().accepted <= 1);
/// # drop(url); Ok(()) }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<Fault>,
    counters: Arc<Counters>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("fault", &self.fault())
            .field("stats", &self.stats())
            .finish()
    }
}

impl FaultProxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream`, in
    /// [`Fault::Pass`]. Must be called inside a tokio runtime.
    ///
    /// # Errors
    /// When the listening socket cannot be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Fault::Pass);
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(accept_loop(
            listener,
            addr,
            upstream,
            mode.clone(),
            Arc::clone(&counters),
        ));
        Ok(Self {
            addr,
            mode,
            counters,
            task,
        })
    }

    /// The address clients connect to.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Switches to `fault`, for open connections and new ones.
    pub fn set(&self, fault: Fault) {
        self.mode.send_replace(fault);
    }

    /// The current fault.
    #[must_use]
    pub fn fault(&self) -> Fault {
        *self.mode.borrow()
    }

    /// The counters so far.
    #[must_use]
    pub fn stats(&self) -> ProxyStats {
        ProxyStats {
            accepted: self.counters.accepted.load(Ordering::Relaxed),
            open: self.counters.open.load(Ordering::Relaxed),
            bytes_up: self.counters.bytes_up.load(Ordering::Relaxed),
            bytes_down: self.counters.bytes_down.load(Ordering::Relaxed),
        }
    }
}

/// Aborting the accept task drops its `JoinSet`, which aborts every
/// connection task; their sockets close.
impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<Fault>,
    counters: Arc<Counters>,
) {
    let mut rx = mode.subscribe();
    let mut listener = Some(listener);
    let mut tasks = JoinSet::new();
    loop {
        let current = *rx.borrow_and_update();
        if current == Fault::Refuse {
            listener = None;
            if rx.wait_for(|m| *m != Fault::Refuse).await.is_err() {
                return;
            }
            continue;
        }
        let bound = match &listener {
            Some(bound) => bound,
            None => listener.insert(rebind(addr).await),
        };
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            Some(_) = tasks.join_next() => {}
            accepted = bound.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counters.accepted.fetch_add(1, Ordering::Relaxed);
                if *rx.borrow() == Fault::Reset {
                    reset(&client);
                    continue;
                }
                tasks.spawn(connection(client, upstream, mode.subscribe(), Arc::clone(&counters)));
            }
        }
    }
}

/// Listens on `addr` again after [`Fault::Refuse`] (the listener sets
/// `SO_REUSEADDR`, so the port's old connections do not block it).
async fn rebind(addr: SocketAddr) -> TcpListener {
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(err) => {
                eprintln!("fault proxy: listening on {addr} again failed ({err}); retrying");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Closes with a reset rather than a FIN. (Tokio deprecates `set_linger`
/// because a non-zero linger blocks the thread on drop; a zero one does not
/// wait: the kernel sends the reset at once.)
#[allow(deprecated)]
fn reset(stream: &TcpStream) {
    let _ = stream.set_linger(Some(Duration::ZERO));
}

struct OpenGuard(Arc<Counters>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    mut mode: watch::Receiver<Fault>,
    counters: Arc<Counters>,
) {
    counters.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(Arc::clone(&counters));
    // A partitioned node does not reach its upstream either.
    if mode.wait_for(|m| *m != Fault::Blackhole).await.is_err() {
        return;
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        reset(&client);
        return;
    };
    // The proxy must not add a Nagle delay of its own.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    {
        let up = pump(
            &mut client_read,
            &mut server_write,
            mode.clone(),
            &counters.bytes_up,
        );
        let down = pump(
            &mut server_read,
            &mut client_write,
            mode.clone(),
            &counters.bytes_down,
        );
        let reset_now = mode.wait_for(|m| *m == Fault::Reset);
        tokio::select! {
            _ = async { tokio::try_join!(up, down) } => return,
            _ = reset_now => {}
        }
    }
    // A dropped write half would send a FIN before the reset: forget them.
    reset(client_read.as_ref());
    reset(server_read.as_ref());
    client_write.forget();
    server_write.forget();
}

/// One direction: a reader that timestamps chunks and a writer that
/// forwards each once its time has come (and the path is not blackholed).
/// Ends after forwarding the end of the stream, or at the first error.
async fn pump(
    from: &mut OwnedReadHalf,
    to: &mut OwnedWriteHalf,
    mode: watch::Receiver<Fault>,
    bytes: &AtomicU64,
) -> io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let gone = || io::Error::other("the proxy stopped");
    let mut read_mode = mode.clone();
    let reader = async move {
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            read_mode
                .wait_for(|m| *m != Fault::Blackhole)
                .await
                .map_err(|_| gone())?;
            let n = from.read(&mut buf).await?;
            let delay = match *read_mode.borrow() {
                Fault::Delay(delay) => delay,
                _ => Duration::ZERO,
            };
            let chunk = (n > 0).then(|| buf[..n].to_vec());
            let _ = tx.send((Instant::now() + delay, chunk));
            if n == 0 {
                return Ok::<(), io::Error>(());
            }
        }
    };
    let mut write_mode = mode;
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            write_mode
                .wait_for(|m| *m != Fault::Blackhole)
                .await
                .map_err(|_| gone())?;
            match chunk {
                Some(chunk) => {
                    to.write_all(&chunk).await?;
                    bytes.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                None => {
                    to.shutdown().await?;
                    return Ok(());
                }
            }
        }
        Ok(())
    };
    tokio::try_join!(reader, writer).map(|_| ())
}

#[cfg(test)]
mod tests;
