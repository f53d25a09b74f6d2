//! `chat-server`: the example chat server. Parses flags, binds, prints
//! `chat-server listening on ws://HOST:PORT/ws` as its first stdout line,
//! and serves until SIGTERM or Ctrl-C. See [`sessionkit_examples::server`].

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use sessionkit_examples::server::{ChatServer, Database, ServerConfig};
use tracing_subscriber::EnvFilter;

/// The example chat server: rooms over WebSocket for holders of a valid access token.
#[derive(Debug, Parser)]
#[command(name = "chat-server", version)]
struct Args {
    /// The address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:9091")]
    bind: SocketAddr,
    /// The OpenID provider whose access tokens are accepted (mock-idp's default).
    #[arg(long, default_value = "http://127.0.0.1:9090")]
    issuer: String,
    /// The audience access tokens must be for.
    #[arg(long, default_value = "chat-server")]
    audience: String,
    /// The client id back-channel logout tokens are addressed to.
    #[arg(long, default_value = "chat-example")]
    backchannel_client_id: String,
    /// Where messages are kept: an SQLite file, created if missing (PATH or
    /// sqlite:PATH; ":memory:" keeps nothing), or a PostgreSQL database that
    /// several chat-server nodes share (postgres://USER@HOST:PORT/DB).
    #[arg(
        long,
        default_value = "chat.db",
        value_name = "PATH | sqlite:PATH | postgres://USER@HOST:PORT/DB"
    )]
    db: String,
    /// Require the server's nonce in every DPoP proof: a handshake whose
    /// proof lacks it is answered 401 `use_dpop_nonce` with a DPoP-Nonce.
    #[arg(long)]
    dpop_nonce: bool,
    /// A WebSocket URL clients dial (repeatable; e.g. wss://chat.example/ws
    /// behind a TLS proxy): DPoP proofs must name one. Default: this
    /// server's own ws:// URL.
    #[arg(long = "public-url")]
    public_urls: Vec<String>,
    /// The most connections from one IP address that may be open without
    /// having sent a complete request head (default 64); past it the oldest
    /// of them is closed. Behind a proxy or NAT that makes many clients one
    /// address (or in a load test on loopback), raise it.
    #[arg(long, value_name = "N")]
    max_pending_per_ip: Option<usize>,
    /// With PostgreSQL: how often (seconds) this node compares its
    /// connections with the other nodes' and, when it holds more than its
    /// share, asks clients that know other nodes to move there (close
    /// 1012). 0: never. Default 5.
    #[arg(long, value_name = "SECS")]
    rebalance_interval: Option<f64>,
    /// With PostgreSQL: how many connections above its fair share a node
    /// keeps before it rebalances (or a tenth of the share, if more).
    /// Default 10.
    #[arg(long, value_name = "N")]
    rebalance_tolerance: Option<usize>,
    /// Log filter, as in RUST_LOG (default: RUST_LOG, else "info").
    #[arg(long)]
    log: Option<String>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = match &args.log {
        Some(filter) => EnvFilter::try_new(filter).context("invalid --log filter")?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the runtime")?;
    runtime.block_on(serve(args))
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let mut config = ServerConfig::new(args.issuer);
    config.bind = args.bind;
    config.audience = args.audience;
    config.backchannel_client_id = args.backchannel_client_id;
    config.db = Database::from_arg(&args.db);
    config.require_dpop_nonce = args.dpop_nonce;
    config.public_urls = args.public_urls;
    if let Some(n) = args.max_pending_per_ip {
        config.connections.max_pending_per_ip = n;
    }
    if let Some(secs) = args.rebalance_interval {
        config.rebalance.interval = Duration::try_from_secs_f64(secs)
            .context("--rebalance-interval must be a number of seconds, 0 or more")?;
    }
    if let Some(n) = args.rebalance_tolerance {
        config.rebalance.tolerance = n;
    }
    let stop = stop_signal()?;
    let server = ChatServer::start(config).await?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "chat-server listening on {}", server.ws_url())
            .and_then(|()| stdout.flush())
            .context("cannot write to stdout")?;
    }
    stop.await;
    tracing::info!("stopping");
    server.shutdown().await;
    Ok(())
}

/// Resolves at SIGTERM or Ctrl-C; the handlers are installed before it returns.
#[cfg(unix)]
fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// Resolves at Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> anyhow::Result<impl Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
