//! The `mock-idp` binary: parses flags, starts the provider, prints
//! `mock-idp listening on URL` as its first line, and stops cleanly on Ctrl-C
//! or SIGTERM. Discovery is answered from that line on; the signing keys and
//! client secrets are made right after it, and the other endpoints answer
//! once they are. The keys are kept between runs in the development key
//! cache in the user's cache directory, shared with the embedded providers
//! of tests (`--keys-file`, `--ephemeral-keys`).

#![forbid(unsafe_code)]

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use sessionkit_mock_idp::{Alg, Config, MockIdp, SecretSource};

/// A strict, scriptable OpenID provider for development and tests.
#[derive(Debug, Parser)]
#[command(name = "mock-idp", version, about)]
struct Args {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:9090", env = "MOCK_IDP_BIND")]
    bind: String,
    /// Issuer URL (default: http://{bound address}).
    #[arg(long, env = "MOCK_IDP_ISSUER")]
    issuer: Option<String>,
    /// TOML file with users, clients and lifetimes.
    #[arg(long, env = "MOCK_IDP_CONFIG")]
    config: Option<PathBuf>,
    /// Access token lifetime in seconds.
    #[arg(long)]
    access_token_ttl: Option<u64>,
    /// ID token lifetime in seconds.
    #[arg(long)]
    id_token_ttl: Option<u64>,
    /// Refresh token lifetime in seconds.
    #[arg(long)]
    refresh_token_ttl: Option<u64>,
    /// Sign this user in without showing the login page (headless use).
    #[arg(long)]
    auto_login: Option<String>,
    /// Signing algorithm of access tokens and ID tokens.
    #[arg(long, value_parser = ["RS256", "ES256"])]
    signing_alg: Option<String>,
    /// Require `Authorization: Bearer $VAR` on the control API, reading the secret from this variable.
    #[arg(long)]
    control_secret_env: Option<String>,
    /// Serve HTTPS with a self-signed certificate for 127.0.0.1, ::1 and localhost.
    #[arg(long)]
    tls: bool,
    /// With --tls: write the certificate (PEM) here, for clients to trust.
    #[arg(long, requires = "tls")]
    tls_cert_out: Option<PathBuf>,
    /// Keep refresh tokens the same on every use (no rotation, no reuse detection).
    #[arg(long)]
    no_refresh_rotation: bool,
    /// Accept a used refresh token again for this many seconds (a reuse
    /// interval, as some providers have) instead of revoking its grant.
    #[arg(long, value_name = "SECS")]
    refresh_reuse_grace: Option<u64>,
    /// Keep the signing keys in this file between runs, so that later runs
    /// load them instead of generating an RSA key (50-200 ms) [default:
    /// sessionkit-mock-idp/signing-keys.json in the user's cache directory,
    /// shared with the embedded providers of tests]. The file holds the
    /// private keys of this development provider (mode 0600): whoever reads
    /// it can sign tokens its clients accept. A file there that is not a
    /// usable key file (or that others can read) is replaced by new keys.
    #[arg(long, env = "MOCK_IDP_KEYS_FILE", conflicts_with = "ephemeral_keys")]
    keys_file: Option<PathBuf>,
    /// Generate new signing keys at every start and write them nowhere.
    #[arg(long)]
    ephemeral_keys: bool,
    /// Log filter (also RUST_LOG), e.g. `info` or `sessionkit_mock_idp=debug`.
    #[arg(long, default_value = "info")]
    log: String,
}

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if let Some(issuer) = &args.issuer {
        config.issuer = Some(issuer.clone());
    }
    if let Some(v) = args.access_token_ttl {
        config.lifetimes.access_token = v;
    }
    if let Some(v) = args.id_token_ttl {
        config.lifetimes.id_token = v;
    }
    if let Some(v) = args.refresh_token_ttl {
        config.lifetimes.refresh_token = v;
    }
    if let Some(user) = &args.auto_login {
        config.auto_login = Some(user.clone());
    }
    if args.no_refresh_rotation {
        config.rotate_refresh_tokens = false;
    }
    if let Some(secs) = args.refresh_reuse_grace {
        config.refresh_token_reuse_grace = secs;
    }
    if let Some(alg) = &args.signing_alg {
        config.signing_alg = if alg == "ES256" {
            Alg::ES256
        } else {
            Alg::RS256
        };
    }
    if let Some(var) = &args.control_secret_env {
        std::env::var(var)
            .with_context(|| format!("--control-secret-env names {var}, which is not set"))?;
        config.control_secret = SecretSource::Env(var.clone());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        let mut builder = MockIdp::builder()
            .config(config)
            .bind(&args.bind)
            .on_listening(|issuer| {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "mock-idp listening on {issuer}");
                let _ = out.flush();
            });
        if args.tls {
            builder = builder.tls();
        }
        if args.ephemeral_keys {
            builder = builder.fresh_keys();
        } else if let Some(path) = &args.keys_file {
            builder = builder.keys_file(path);
        }
        let idp = builder.start().await?;
        if let (Some(path), Some(pem)) = (&args.tls_cert_out, idp.tls_certificate_pem()) {
            std::fs::write(path, pem)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        eprintln!(
            "users: alice, bob, carol (password = name) unless --config says otherwise; \
             control API and dashboard: {}",
            idp.url("/_control")
        );
        shutdown.await;
        // Conformance runs end with the provider: their verdicts, as a table.
        let results = idp.control().conformance_results();
        if !results.is_empty() {
            eprintln!(
                "conformance runs:\n{}",
                sessionkit_mock_idp::conformance::markdown_table(&results)
            );
        }
        eprintln!("mock-idp shutting down");
        idp.shutdown().await;
        Ok(())
    })
}

/// Installs the Ctrl-C and SIGTERM handlers now — before the listening line
/// is printed, so a signal sent right after it is never the default
/// (immediate) termination — and returns a future that ends at the first one.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
