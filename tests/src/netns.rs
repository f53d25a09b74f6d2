//! Test hosts on a real network path: a network namespace joined to this
//! one by a veth pair, whose traffic the test can partition, make lossy or
//! delay — in the kernel, on real TCP connections, with no proxy between.
//!
//! [`TestHost::new`] makes a namespace `sknf-{n}-{pid}` and a veth pair
//! (`sknf{n}r` here, `sknf{n}h` there) on a subnet of its own, a /30 in
//! 198.18.0.0/15 (RFC 2544's range for test networks); servers listen
//! inside it ([`TestHost::listen`], [`TestHost::command`]) and the test
//! reaches them at [`TestHost::addr`] across the veth. [`TestHost::impair`]
//! sets what the path does to IPv4 packets, each direction alike, on the
//! receiving side of each crossing (so a held or dropped packet no longer
//! counts against the sender's socket, as on a real wire):
//! - [`Impairment::Partition`] and [`Impairment::Loss`]: nftables rules on
//!   the ingress hook of both veth ends (`meta protocol ip drop`,
//!   `numgen random mod 100 < N drop`); ARP still passes, as it would to a
//!   gateway that is up while the path beyond it is not.
//! - [`Impairment::Delay`]: iptables `NFQUEUE` rules on both sides' INPUT
//!   chains and a userspace delayer per side (the `nfq` crate, on a thread of
//!   this process) that gives each packet its verdict that much later, in
//!   order. The kernel here has no netem, and nftables' own `queue`
//!   statement needs a module it lacks (`nft_queue`); `xt_NFQUEUE` is there.
//! - [`Impairment::Reset`]: an nftables `reject with tcp reset` on the
//!   host's input inside the namespace: the host answers every TCP segment
//!   with a reset (a burst of resets: open connections reset, new ones
//!   refused).
//!
//! Everything is removed on drop; what a killed test run left behind (names
//! carry the process id) is removed by the next run's first host.
//!
//! This needs root, `ip`, `nft` and `iptables`. [`available`] says whether
//! they are there; without them a test skips with a message on stderr,
//! unless `SESSIONKIT_REQUIRE_NETNS` is set (as in CI), where it panics.
//! The unprivileged way to a slow or partitioned path is
//! [`crate::faults::FaultProxy`].
//!
//! (Over 500 lines: one test host — its namespace, veth, impairments, the
//! sweep of what killed runs left — is one concern; the delayer has its
//! own file.)

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::AsFd as _;
use std::process::{Command, Output, Stdio};

use delayer::Delayer;

mod delayer;
use std::sync::{Mutex, Once};
use std::time::Duration;

/// The variable that turns a missing prerequisite into a failure.
pub const REQUIRE_VAR: &str = "SESSIONKIT_REQUIRE_NETNS";

/// What the path between this namespace and a [`TestHost`] does to IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Impairment {
    /// Nothing: every packet passes at once (the default).
    #[default]
    Clear,
    /// Every packet silently dropped, both ways: open connections become
    /// half-open, new ones time out.
    Partition,
    /// Each packet dropped with this probability in percent, both ways.
    Loss(u8),
    /// Each packet held this long, both ways (a round trip takes twice it).
    Delay(Duration),
    /// Every TCP segment reaching the host answered with a reset (nftables
    /// `reject with tcp reset` on the host's input): an open connection is
    /// reset at its next segment, a new one refused.
    Reset,
}

/// Whether test hosts can be made here: `Err` says what is missing.
pub fn check() -> Result<(), String> {
    if !rustix::process::geteuid().is_root() {
        return Err("network namespaces need root".to_owned());
    }
    for (tool, args) in [
        ("ip", &["-V"][..]),
        ("nft", &["-v"][..]),
        ("iptables", &["-V"][..]),
    ] {
        let ok = Command::new(tool)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            return Err(format!("`{tool}` is not installed"));
        }
    }
    Ok(())
}

/// Whether `test` can run: prints why it skips, or panics when
/// [`REQUIRE_VAR`] is set and something is missing.
pub fn available(test: &str) -> bool {
    match check() {
        Ok(()) => true,
        Err(why) if std::env::var_os(REQUIRE_VAR).is_some() => {
            panic!("{REQUIRE_VAR} is set but {why}")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why} (set {REQUIRE_VAR}=1 to make this an error)");
            false
        }
    }
}

/// A network namespace on a veth pair of its own; removed on drop.
///
/// ```no_run
/// use std::time::Duration;
/// use sessionkit_tests::netns::{self, Impairment, TestHost};
///
/// # fn demo() -> std::io::Result<()> {
/// if !netns::available("demo") {
///     return Ok(());
/// }
/// let host = TestHost::new()?;
/// let listener = host.listen(0)?; // inside the namespace
/// let port = listener.local_addr()?.port();
/// host.impair(Impairment::Delay(Duration::from_millis(300)))?;
/// // Connections to host.addr():port now take 600 ms round trips.
/// let _ = std::net::TcpStream::connect((host.addr(), port))?;
/// host.impair(Impairment::Partition)?; // now nothing passes
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestHost {
    n: u16,
    ns: String,
    root_if: String,
    host_if: String,
    root_addr: Ipv4Addr,
    host_addr: Ipv4Addr,
    state: Mutex<Applied>,
}

/// What is in place now, so it can be taken away.
#[derive(Debug, Default)]
struct Applied {
    impairment: Impairment,
    delayers: Vec<Delayer>,
}

impl TestHost {
    /// Makes the namespace, the veth pair and their addresses.
    pub fn new() -> io::Result<Self> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(remove_stale);
        let pid = std::process::id();
        let mut last = None;
        for _ in 0..64 {
            // The root-side link name is the lock on the number: the kernel
            // refuses a second link with it, whoever asks.
            let n = (random() % 32_768) as u16;
            let ns = format!("sknf-{n}-{pid}");
            let (root_if, host_if) = (format!("sknf{n}r"), format!("sknf{n}h"));
            run("ip", &["netns", "add", &ns])?;
            let made = run(
                "ip",
                &[
                    "link", "add", &root_if, "type", "veth", "peer", "name", &host_if, "netns", &ns,
                ],
            );
            if let Err(err) = made {
                let _ = run("ip", &["netns", "del", &ns]);
                last = Some(err);
                continue;
            }
            let base = u32::from(Ipv4Addr::new(198, 18, 0, 0)) + u32::from(n) * 4;
            let (root_addr, host_addr) = (Ipv4Addr::from(base + 1), Ipv4Addr::from(base + 2));
            let host = Self {
                n,
                ns,
                root_if,
                host_if,
                root_addr,
                host_addr,
                state: Mutex::new(Applied::default()),
            };
            host.configure()?;
            return Ok(host);
        }
        Err(last.unwrap_or_else(|| io::Error::other("no free test host number")))
    }

    fn configure(&self) -> io::Result<()> {
        let (ns, root, host) = (&self.ns, &self.root_if, &self.host_if);
        run(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/30", self.root_addr),
                "dev",
                root,
            ],
        )?;
        run("ip", &["link", "set", root, "up"])?;
        run(
            "ip",
            &[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{}/30", self.host_addr),
                "dev",
                host,
            ],
        )?;
        run("ip", &["-n", ns, "link", "set", host, "up"])?;
        run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The host's address, reached from this namespace across the veth.
    pub fn addr(&self) -> Ipv4Addr {
        self.host_addr
    }

    /// The namespace's name (for `ip netns exec`).
    pub fn namespace(&self) -> &str {
        &self.ns
    }

    /// A listener inside the namespace on `0.0.0.0:port` (0: a free one),
    /// reachable at [`TestHost::addr`] from here and on `127.0.0.1` from
    /// inside. Any thread of this process can serve it.
    pub fn listen(&self, port: u16) -> io::Result<TcpListener> {
        self.in_namespace(move || TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)))
    }

    /// `program` to run inside the namespace (`ip netns exec NS program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns]).arg(program);
        cmd
    }

    /// Runs `f` on a thread that has joined the namespace: the sockets it
    /// makes stay in the namespace wherever they are used afterwards.
    fn in_namespace<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        let path = format!("/run/netns/{}", self.ns);
        std::thread::spawn(move || {
            enter(&path)?;
            f()
        })
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
    }

    /// Replaces the path's impairment with `impairment`.
    pub fn impair(&self, impairment: Impairment) -> io::Result<()> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.clear(&mut state);
        state.impairment = impairment;
        let drop_rule = match impairment {
            Impairment::Clear => return Ok(()),
            Impairment::Partition => "meta protocol ip counter drop".to_owned(),
            Impairment::Loss(percent) => {
                format!("meta protocol ip numgen random mod 100 < {percent} counter drop")
            }
            Impairment::Delay(delay) => return self.delay(&mut state, delay),
            Impairment::Reset => {
                let rules = "table inet sknf_reset {\n  chain input {\n    type filter hook input priority 0;\n    meta l4proto tcp counter reject with tcp reset\n  }\n}\n";
                return nft(Some(&self.ns), rules);
            }
        };
        let table = |name: &str, dev: &str| {
            format!(
                "table netdev {name} {{\n  chain ingress {{\n    type filter hook ingress device \"{dev}\" priority 0;\n    {drop_rule}\n  }}\n}}\n"
            )
        };
        nft(None, &table(&self.table(), &self.root_if))?;
        nft(Some(&self.ns), &table("sknf", &self.host_if))?;
        Ok(())
    }

    /// The impairment in place.
    pub fn impairment(&self) -> Impairment {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .impairment
    }

    /// IPv4 packets dropped so far by the partition or loss in place, both
    /// ways (0 when neither is): proof that the impairment did something.
    pub fn dropped(&self) -> u64 {
        let count = |out: io::Result<Output>| -> u64 {
            let Ok(out) = out else { return 0 };
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split("counter packets ")
                .skip(1)
                .filter_map(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
                .sum()
        };
        let here = count(run("nft", &["list", "table", "netdev", &self.table()]));
        let there = count(run(
            "ip",
            &[
                "netns", "exec", &self.ns, "nft", "list", "table", "netdev", "sknf",
            ],
        ));
        here + there
    }

    fn delay(&self, state: &mut Applied, delay: Duration) -> io::Result<()> {
        // The delayers first: a queue without a reader drops its packets.
        let here = Delayer::start(None, self.n, delay)?;
        state.delayers.push(here);
        let there = Delayer::start(Some(format!("/run/netns/{}", self.ns)), self.n, delay)?;
        state.delayers.push(there);
        run("iptables", &self.queue_rule("-I", &self.root_if))?;
        let mut inside = vec!["netns", "exec", &self.ns, "iptables"];
        let rule = self.queue_rule("-I", &self.host_if);
        inside.extend(rule.iter().map(String::as_str));
        run("ip", &inside)?;
        Ok(())
    }

    /// `iptables {op} INPUT -i {dev} … -j NFQUEUE` for this host's queue.
    fn queue_rule(&self, op: &str, dev: &str) -> Vec<String> {
        let n = self.n.to_string();
        [
            op,
            "INPUT",
            "-i",
            dev,
            "-m",
            "comment",
            "--comment",
            &self.tag(),
            "-j",
            "NFQUEUE",
            "--queue-num",
            &n,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    fn tag(&self) -> String {
        format!("sknf-{}-{}", self.n, std::process::id())
    }

    fn table(&self) -> String {
        format!("sknf_{}_{}", self.n, std::process::id())
    }

    /// Takes away whatever is in place (best effort: it may not be there).
    fn clear(&self, state: &mut Applied) {
        match state.impairment {
            Impairment::Clear => {}
            Impairment::Partition | Impairment::Loss(_) => {
                let _ = run("nft", &["delete", "table", "netdev", &self.table()]);
                let _ = run(
                    "ip",
                    &[
                        "netns", "exec", &self.ns, "nft", "delete", "table", "netdev", "sknf",
                    ],
                );
            }
            Impairment::Reset => {
                let _ = run(
                    "ip",
                    &[
                        "netns",
                        "exec",
                        &self.ns,
                        "nft",
                        "delete",
                        "table",
                        "inet",
                        "sknf_reset",
                    ],
                );
            }
            Impairment::Delay(_) => {
                let _ = run("iptables", &self.queue_rule("-D", &self.root_if));
                let mut inside = vec!["netns", "exec", &self.ns, "iptables"];
                let rule = self.queue_rule("-D", &self.host_if);
                inside.extend(rule.iter().map(String::as_str));
                let _ = run("ip", &inside);
                // Held packets go on at once rather than being dropped.
                for delayer in state.delayers.drain(..) {
                    delayer.stop();
                }
            }
        }
        state.impairment = Impairment::Clear;
    }
}

impl Drop for TestHost {
    fn drop(&mut self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        self.clear(&mut state);
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = run("ip", &["netns", "del", &self.ns]);
        let _ = run("ip", &["link", "del", &self.root_if]);
    }
}

/// Moves the calling thread into the network namespace at `path`.
pub(crate) fn enter(path: &str) -> io::Result<()> {
    let file = File::open(path)?;
    rustix::thread::move_into_link_name_space(
        file.as_fd(),
        Some(rustix::thread::LinkNameSpaceType::Network),
    )?;
    Ok(())
}

/// Loads `rules` into nftables, here or inside namespace `ns`.
fn nft(ns: Option<&str>, rules: &str) -> io::Result<()> {
    use std::io::Write as _;
    let mut cmd = match ns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, "nft", "-f", "-"]);
            cmd
        }
        None => {
            let mut cmd = Command::new("nft");
            cmd.args(["-f", "-"]);
            cmd
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(rules.as_bytes())?;
    checked("nft -f -", child.wait_with_output()?)
}

/// Runs `program args…`; an error carries its stderr.
fn run<S: AsRef<str>>(program: &str, args: &[S]) -> io::Result<Output> {
    let args: Vec<&str> = args.iter().map(AsRef::as_ref).collect();
    let output = Command::new(program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("{program}: {e}")))?;
    let what = format!("{program} {}", args.join(" "));
    checked(&what, output.clone())?;
    Ok(output)
}

fn checked(what: &str, output: Output) -> io::Result<()> {
    if output.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "{what}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )))
    }
}

/// Removes the namespaces (killing what still runs in them), nftables
/// tables and iptables rules of test runs whose process is gone (killed
/// before their hosts were dropped).
fn remove_stale() {
    let dead = |pid: &str| !std::path::Path::new(&format!("/proc/{pid}")).exists();
    if let Ok(out) = run("ip", &["netns", "list"]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let mut parts = name.strip_prefix("sknf-").unwrap_or_default().split('-');
            if let (Some(n), Some(pid)) = (parts.next(), parts.next())
                && dead(pid)
            {
                // Its servers outlived the run (a killed test drops nothing).
                if let Ok(pids) = run("ip", &["netns", "pids", name]) {
                    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
                        let _ = run("kill", &["-KILL", pid]);
                    }
                }
                let _ = run("ip", &["netns", "del", name]);
                let _ = run("ip", &["link", "del", &format!("sknf{n}r")]);
            }
        }
    }
    if let Ok(out) = run("nft", &["list", "tables", "netdev"]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(name) = line.strip_prefix("table netdev ") else {
                continue;
            };
            let pid = name.rsplit('_').next().unwrap_or_default();
            if name.starts_with("sknf_") && dead(pid) {
                let _ = run("nft", &["delete", "table", "netdev", name]);
            }
        }
    }
    if let Ok(out) = run("iptables", &["-S", "INPUT"]) {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let Some(tag) = line
                .split("--comment ")
                .nth(1)
                .and_then(|rest| rest.split_whitespace().next())
            else {
                continue;
            };
            let tag = tag.trim_matches('"');
            let pid = tag.rsplit('-').next().unwrap_or_default();
            if tag.starts_with("sknf-") && dead(pid) {
                let args: Vec<String> = line
                    .replacen("-A ", "-D ", 1)
                    .split_whitespace()
                    .map(|a| a.trim_matches('"').to_owned())
                    .collect();
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                let _ = run("iptables", &args);
            }
        }
    }
}

/// A number that differs between calls and processes (no `rand` here).
fn random() -> u32 {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.write_u32(std::process::id());
    hasher.finish() as u32
}
