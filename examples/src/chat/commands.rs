//! `chat login | accounts | switch | whoami | logout`.

use std::io::{IsTerminal as _, Write as _};

use anyhow::Context as _;
use sessionkit::{AccountInfo, AuthParams, AuthedClient, DevicePrompt, LoopbackOptions};
use tokio_util::sync::CancellationToken;

use super::setup::Setup;
use super::{Command, LoginArgs};

pub(super) async fn run(setup: &Setup, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Login(args) => login(setup, &args).await,
        Command::Accounts => accounts(setup),
        Command::Switch { account } => switch(setup, &account),
        Command::Whoami => whoami(setup).await,
        Command::Logout { account, all } => logout(setup, account.as_deref(), all).await,
    }
}

async fn login(setup: &Setup, args: &LoginArgs) -> anyhow::Result<()> {
    let manager = &setup.manager;
    // `--scope` replaces the default scopes for this sign-in; the rest
    // (DPoP, PAR, client authentication) is the manager's client's.
    let client = manager
        .client()
        .clone()
        .scopes(args.scope.split_whitespace())
        .auth_params(login_params(args));
    let cancel = CancellationToken::new();
    let ctrl_c = cancel.clone();
    let watcher = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            ctrl_c.cancel();
        }
    });
    let tokens = if args.device {
        client
            .login_device(show_device_prompt, &cancel)
            .await
            .context("device sign-in failed")?
    } else {
        let no_browser = args.no_browser;
        let mut options = LoopbackOptions::with_callback(move |url| {
            println!("Open this URL to sign in: {url}");
            let _ = std::io::stdout().flush();
            if !no_browser && let Err(e) = webbrowser::open(url) {
                eprintln!("(could not open a browser: {e})");
            }
        });
        options.cancel = cancel.clone();
        client
            .login_loopback(options)
            .await
            .context("sign-in failed")?
    };
    watcher.abort();
    let session = manager
        .sign_in(tokens)
        .await
        .context("cannot keep the account")?;
    println!("Signed in as {}", account_name(session.info()));
    Ok(())
}

/// The authorization parameters `chat login`'s options ask for.
fn login_params(args: &LoginArgs) -> AuthParams {
    let mut params = AuthParams::new();
    if let Some(prompt) = &args.prompt {
        params = params.prompt(prompt.as_str());
    }
    if let Some(hint) = &args.login_hint {
        params = params.login_hint(hint.as_str());
    }
    if let Some(secs) = args.max_age {
        params = params.max_age(std::time::Duration::from_secs(secs));
    }
    params
}

fn show_device_prompt(prompt: &DevicePrompt) {
    let mut out = std::io::stdout();
    let _ = writeln!(
        out,
        "To sign in, open {} and enter the code {}",
        prompt.verification_uri, prompt.user_code
    );
    if out.is_terminal()
        && let Some(complete) = &prompt.verification_uri_complete
        && let Ok(code) = qrcode::QrCode::new(complete.as_bytes())
    {
        let art = code
            .render::<qrcode::render::unicode::Dense1x2>()
            .quiet_zone(true)
            .build();
        let _ = writeln!(out, "{art}\nOr scan this code: {complete}");
    }
    let _ = writeln!(
        out,
        "The code expires in {} minutes.",
        prompt.expires_in.as_secs().div_ceil(60)
    );
    let _ = out.flush();
}

/// The name a user types for an account (`preferred_username`, else
/// `email`, else `sub`): what `chat switch` and `chat logout` take.
pub(super) fn account_name(account: &AccountInfo) -> &str {
    account.name()
}

fn accounts(setup: &Setup) -> anyhow::Result<()> {
    let active = setup.manager.active()?;
    let accounts = setup.manager.accounts()?;
    if accounts.is_empty() {
        eprintln!("no accounts: run `chat login`");
    }
    for account in accounts {
        let mark = if active.as_ref().is_some_and(|a| a.key == account.key) {
            '*'
        } else {
            ' '
        };
        println!("{mark} {}", account_name(&account));
    }
    Ok(())
}

/// The end-session URL without its `id_token_hint`: a token never goes to
/// the terminal (the provider then asks the user to confirm instead).
fn without_token(url: &url::Url) -> url::Url {
    let mut clean = url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "id_token_hint")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    clean.set_query(None);
    if !kept.is_empty() {
        clean.query_pairs_mut().extend_pairs(kept);
    }
    clean
}

fn find(setup: &Setup, name: &str) -> anyhow::Result<AccountInfo> {
    setup
        .manager
        .find(name)?
        .with_context(|| format!("no account {name:?} (see `chat accounts`)"))
}

fn switch(setup: &Setup, name: &str) -> anyhow::Result<()> {
    let account = find(setup, name)?;
    setup.manager.switch(&account.key)?;
    println!("Switched to {}", account_name(&account));
    Ok(())
}

async fn whoami(setup: &Setup) -> anyhow::Result<()> {
    let session = setup.active_session().await?;
    // The SDK refuses an answer about another subject (OIDC Core 5.3.2).
    let claims = AuthedClient::new(session)?.userinfo().await?;
    println!("{}", serde_json::to_string_pretty(&claims)?);
    Ok(())
}

async fn logout(setup: &Setup, name: Option<&str>, all: bool) -> anyhow::Result<()> {
    // Load the sessions so their refresh tokens can be revoked.
    let _ = setup.manager.restore().await?;
    let targets = if all {
        setup.manager.accounts()?
    } else if let Some(name) = name {
        vec![find(setup, name)?]
    } else {
        vec![
            setup
                .manager
                .active()?
                .context("not signed in: nothing to sign out of")?,
        ]
    };
    let mut incomplete = Vec::new();
    for account in targets {
        let report = setup.manager.logout(&account.key).await;
        if report.failures.is_empty() {
            println!("Signed out of {}", account_name(&account));
        } else {
            for (step, why) in &report.failures {
                eprintln!("{}: {step:?} failed: {why}", account_name(&account));
            }
            incomplete.push(account_name(&account).to_owned());
        }
        if let Some(url) = report.end_session_url {
            eprintln!(
                "To end the browser session too, open: {}",
                without_token(&url)
            );
        }
    }
    if incomplete.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("sign-out incomplete for {}", incomplete.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_session_url_is_shown_without_the_id_token() {
        let url = url::Url::parse(
            "http://127.0.0.1:9090/end_session?id_token_hint=eyJ.x.y&client_id=chat-example",
        )
        .expect("url");
        assert_eq!(
            without_token(&url).as_str(),
            "http://127.0.0.1:9090/end_session?client_id=chat-example"
        );
    }
}
