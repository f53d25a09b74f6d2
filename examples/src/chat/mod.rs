//! The `chat` client: command line, setup, and the two front ends.
//!
//! ```text
//! chat [--issuer URL] [--client-id ID] [--server WS_URL]... [--store auto|secret-service|keyutils|memory]
//!      [--namespace NAME] [--room NAME] [--plain] [--dpop]
//! chat login [--device] [--no-browser] [--scope "openid profile offline_access"]
//!            [--prompt login] [--login-hint NAME] [--max-age SECONDS]
//! chat accounts              # one line per account, the active one marked with *
//! chat switch ACCOUNT
//! chat whoami                # the userinfo claims as JSON, fetched with a fresh token
//! chat logout [ACCOUNT | --all]
//! ```
//!
//! `--server` may be given more than once (`SESSIONKIT_SERVER` as a
//! comma-separated list): the nodes of one chat service. The client starts
//! at one of them at random and fails over to the next when a node refuses,
//! drops the connection, stops answering or shuts down, resuming each room
//! after the last message it saw.
//!
//! The options also come from `SESSIONKIT_ISSUER`, `SESSIONKIT_CLIENT_ID`,
//! `SESSIONKIT_SERVER`, `SESSIONKIT_STORE`, `SESSIONKIT_NAMESPACE` and
//! `SESSIONKIT_DPOP` (`1` for `--dpop`: logins bind their tokens to a DPoP
//! key kept with the account; every later command of that account — chat,
//! whoami, refresh, logout — proves possession of it, whether or not it is
//! given `--dpop` again).
//! Without an issuer, `chat` runs the embedded demo: an in-process mock
//! identity provider and chat server on free ports, tokens in memory, and a
//! sign-in as `alice`, `bob` or `carol` (`SESSIONKIT_DEMO_USER` picks one
//! without asking).
//!
//! Every command exits 0 on success and prints `error: …` on stderr with a
//! non-zero status otherwise.

mod commands;
mod conversation;
mod plain;
mod setup;
pub mod status;
mod tui;

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use conversation::{Conversation, ConversationEvent};
pub use setup::{Embedded, Setup};

/// The default room.
pub const DEFAULT_ROOM: &str = "general";
/// The default app namespace (keychain service prefix and accounts directory).
pub const DEFAULT_NAMESPACE: &str = "sessionkit-chat";
/// The chat server `chat-server` listens on by default.
pub const DEFAULT_SERVER: &str = "ws://127.0.0.1:9091/ws";
/// The OAuth client id of the example (registered in mock-idp's defaults).
pub const DEFAULT_CLIENT_ID: &str = "chat-example";
/// The scopes `chat login` asks for by default.
pub const DEFAULT_SCOPE: &str = "openid profile offline_access";
/// The users of the embedded demo (mock-idp's built-in users).
pub const DEMO_USERS: [&str; 3] = ["alice", "bob", "carol"];

/// The command line.
#[derive(Debug, Parser)]
#[command(
    name = "chat",
    version,
    about = "A terminal chat client that stays signed in (a sessionkit example)",
    after_help = "Without --issuer, chat starts an embedded identity provider and chat server and \
                  signs you in as alice, bob or carol (SESSIONKIT_DEMO_USER picks one)."
)]
pub struct Cli {
    /// Options shared by every command.
    #[command(flatten)]
    pub options: Options,
    /// What to do; without a command, chat.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options shared by every command.
#[derive(Debug, Clone, Args)]
pub struct Options {
    /// The OpenID provider (its issuer URL). Without it: the embedded demo.
    #[arg(long, env = "SESSIONKIT_ISSUER", global = true)]
    pub issuer: Option<String>,
    /// The OAuth client id.
    #[arg(long, env = "SESSIONKIT_CLIENT_ID", global = true, default_value = DEFAULT_CLIENT_ID)]
    pub client_id: String,
    /// A chat server's WebSocket URL; give it once per node to fail over
    /// between them (SESSIONKIT_SERVER: a comma-separated list). Default
    /// ws://127.0.0.1:9091/ws with --issuer.
    #[arg(long, env = "SESSIONKIT_SERVER", global = true, value_delimiter = ',')]
    pub server: Vec<String>,
    /// Where tokens are kept.
    #[arg(long, env = "SESSIONKIT_STORE", global = true, value_enum, default_value_t = StoreKind::Auto)]
    pub store: StoreKind,
    /// The app namespace: keychain entries and the accounts file are kept apart per namespace.
    #[arg(long, env = "SESSIONKIT_NAMESPACE", global = true, default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// The room to chat in.
    #[arg(long, global = true, default_value = DEFAULT_ROOM)]
    pub room: String,
    /// Read lines from stdin and print messages on stdout instead of the terminal UI.
    #[arg(long, global = true)]
    pub plain: bool,
    /// Bind the tokens of a login to a DPoP key (RFC 9449) kept with the
    /// account; later commands of that account use it by themselves.
    #[arg(
        long,
        env = "SESSIONKIT_DPOP",
        global = true,
        action = clap::ArgAction::SetTrue,
        value_parser = clap::builder::FalseyValueParser::new()
    )]
    pub dpop: bool,
}

/// Where tokens are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// The OS keychain this machine has (Secret Service, else the kernel keyring).
    Auto,
    /// The Secret Service over D-Bus (GNOME Keyring, KWallet).
    SecretService,
    /// The Linux kernel key retention service.
    Keyutils,
    /// Memory only: gone when the process exits.
    Memory,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Sign in (an account is added and becomes the active one).
    Login(LoginArgs),
    /// List the accounts, the active one marked with `*`.
    Accounts,
    /// Make another signed-in account the active one.
    Switch {
        /// The account (its name or subject).
        account: String,
    },
    /// Print the active account's userinfo claims as JSON.
    Whoami,
    /// Sign out: revoke the tokens, delete them, forget the account.
    Logout {
        /// The account (default: the active one).
        account: Option<String>,
        /// Sign out of every account.
        #[arg(long, conflicts_with = "account")]
        all: bool,
    },
}

/// `chat login` options.
#[derive(Debug, Clone, Args)]
pub struct LoginArgs {
    /// Use the device flow (a code to enter on another device).
    #[arg(long)]
    pub device: bool,
    /// Print the URL instead of opening a browser.
    #[arg(long, conflicts_with = "device")]
    pub no_browser: bool,
    /// The scopes to ask for.
    #[arg(long, default_value = DEFAULT_SCOPE)]
    pub scope: String,
    /// `prompt` for the provider (`login` to type the password again,
    /// `select_account`, `consent`, `none`).
    #[arg(long, conflicts_with = "device")]
    pub prompt: Option<String>,
    /// Who is expected to sign in (`login_hint`): the provider fills it in.
    #[arg(long, conflicts_with = "device")]
    pub login_hint: Option<String>,
    /// Sign in again unless the user did within this many seconds
    /// (`max_age`; the ID token's `auth_time` is checked).
    #[arg(long, conflicts_with = "device")]
    pub max_age: Option<u64>,
}

/// Runs `chat` with the process's arguments; the `chat` binary's `main`.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::anyhow!("cannot start the async runtime: {e}")),
    };
    let result = runtime.block_on(run(cli));
    // A blocking stdin read may still be pending: do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let _ = std::io::stdout().flush();
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}

/// Runs a parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    init_logging(&cli);
    match cli.command {
        None => {
            let setup = Setup::new(&cli.options).await?;
            if cli.options.plain {
                plain::run(setup, &cli.options).await
            } else {
                tui::run(setup, &cli.options).await
            }
        }
        Some(command) => {
            if cli.options.issuer.is_none() {
                anyhow::bail!(
                    "`chat {}` needs --issuer (or SESSIONKIT_ISSUER); without one, plain `chat` \
                     runs the embedded demo",
                    command.name()
                );
            }
            let setup = Setup::new(&cli.options).await?;
            commands::run(&setup, command).await
        }
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Login(_) => "login",
            Command::Accounts => "accounts",
            Command::Switch { .. } => "switch",
            Command::Whoami => "whoami",
            Command::Logout { .. } => "logout",
        }
    }
}

/// Logs go to stderr in plain mode and for commands (`RUST_LOG`, default
/// warnings); the terminal UI logs nowhere unless `SESSIONKIT_CHAT_LOG`
/// names a file.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    let filter = || EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let tui = cli.command.is_none() && !cli.options.plain;
    if tui {
        if let Some(path) = std::env::var_os("SESSIONKIT_CHAT_LOG")
            && let Ok(file) = std::fs::File::create(path)
        {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter())
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .try_init();
        }
    } else {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn options_go_before_or_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "chat",
            "--issuer",
            "http://127.0.0.1:1",
            "logout",
            "--all",
            "--namespace",
            "t",
        ])
        .expect("parse");
        assert_eq!(cli.options.issuer.as_deref(), Some("http://127.0.0.1:1"));
        assert_eq!(cli.options.namespace, "t");
        assert!(matches!(
            cli.command,
            Some(Command::Logout {
                account: None,
                all: true
            })
        ));
        let cli = Cli::try_parse_from([
            "chat",
            "--server",
            "ws://127.0.0.1:1/ws",
            "--plain",
            "--server",
            "ws://127.0.0.1:2/ws",
        ])
        .expect("parse");
        assert_eq!(
            cli.options.server,
            ["ws://127.0.0.1:1/ws", "ws://127.0.0.1:2/ws"]
        );
        let cli =
            Cli::try_parse_from(["chat", "--store", "secret-service", "--plain"]).expect("parse");
        assert!(cli.options.server.is_empty());
        assert_eq!(cli.options.store, StoreKind::SecretService);
        assert!(cli.options.plain && cli.command.is_none());
        assert!(Cli::try_parse_from(["chat", "logout", "bob", "--all"]).is_err());
        assert!(Cli::try_parse_from(["chat", "login", "--device", "--no-browser"]).is_err());
    }
}
