//! Sign in through a redirect the app receives itself: a custom URI scheme
//! (`com.example.app:/callback`) that the OS hands to a desktop or mobile
//! app, or a claimed `https` link. No loopback listener: the app builds the
//! authorization request, opens its URL, and gives the redirect it gets back
//! to `OidcClient::finish`, which checks `state` and `iss`, redeems the code
//! with the PKCE verifier and checks the ID token; `SessionManager::sign_in`
//! keeps the tokens.
//!
//! An embedded mock provider on a free port stands in for the identity
//! provider, with the app's client registered for the custom-scheme
//! redirect; with `auto_login` it signs alice in without a login page. "The
//! OS" is a GET of the authorization URL with redirects turned off: the
//! provider's `Location` header is the URL the OS would hand to the app.
//! Tokens stay in memory (`MemoryStore`) and the account list goes to a
//! scratch directory; tokens are never printed, only their fingerprints.
//! Needs no Cargo feature.
//!
//! `cargo run -p sessionkit --example app_redirect`

use std::sync::Arc;

use sessionkit::{
    AccountRegistry, DEFAULT_SCOPES, HttpClient, MemoryStore, OidcClient, Provider, SessionManager,
};
use sessionkit_mock_idp::{ClientConfig, MockIdp};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The redirect URI the app registered with the provider (RFC 8252 §7.1:
/// a reverse-DNS scheme of a domain the developer controls).
const REDIRECT_URI: &str = "com.example.app:/callback";
/// Where the provider sends the browser after the logout, also for the app.
const SIGNED_OUT_URI: &str = "com.example.app:/signed-out";

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();

    let idp = provider().await?;
    println!("provider at {}", idp.issuer());

    let scratch = std::env::temp_dir().join(format!("sessionkit-redirect-{}", std::process::id()));
    let result = run(&idp, &scratch).await;
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

/// The stand-in provider, with the app registered: a public client (PKCE,
/// no secret) whose only redirects are the custom scheme's, matched exactly.
async fn provider() -> Result<MockIdp, BoxError> {
    let idp = MockIdp::builder().auto_login("alice").start().await?;
    idp.control().register_client(ClientConfig {
        redirect_uris: vec![REDIRECT_URI.to_owned()],
        post_logout_redirect_uris: vec![SIGNED_OUT_URI.to_owned()],
        ..ClientConfig::public("example-desktop-app")
    })?;
    Ok(idp)
}

async fn run(idp: &MockIdp, scratch: &std::path::Path) -> Result<(), BoxError> {
    // The app's own client: discovery done once, the scopes it asks for.
    let provider = Provider::discover(idp.issuer(), &HttpClient::new()?).await?;
    let client = OidcClient::new(provider, "example-desktop-app")
        .scopes(DEFAULT_SCOPES)
        .post_logout_redirect_uri(SIGNED_OUT_URI);
    let sessions = SessionManager::for_client(client)
        .namespace("sessionkit-example")
        .store(Arc::new(MemoryStore::new()))
        .registry(AccountRegistry::at(scratch.join("accounts.json")))
        .build()
        .await?;

    // The request's state, nonce and PKCE verifier stay in `request`
    // (memory only) until the redirect comes back.
    let request = sessions
        .client()
        .authorization_request(REDIRECT_URI)
        .await?;
    println!(
        "open in the browser: {}",
        without_query(request.url.as_str())
    );

    let redirect = the_os_hands_back_the_redirect(request.url.as_str()).await?;
    println!("the OS opened the app with: {}", without_query(&redirect));

    // Any other app can register the same scheme, so a redirect is checked
    // before its code is used: one that does not carry this request's
    // `state` is refused without a word to the provider.
    let forged = format!("{REDIRECT_URI}?code=intercepted&state=not-ours");
    match sessions.client().finish(&request, &forged).await {
        Ok(_) => return Err("a forged redirect was accepted".into()),
        Err(e) => println!("a forged redirect is refused: {e}"),
    }

    let tokens = sessions.client().finish(&request, &redirect).await?;
    let session = sessions.sign_in(tokens).await?;
    println!(
        "signed in as {} ({})",
        session.info().name(),
        session.info().display_name
    );
    let token = session.access_token().await?;
    println!(
        "access token {} ({} bytes)",
        token.fingerprint(),
        token.secret().len()
    );

    let report = sessions.logout(session.key()).await;
    println!(
        "logged out: complete {}, refresh token revoked {}",
        report.is_complete(),
        report.revoked
    );
    for (step, why) in &report.failures {
        println!("  {step:?} failed: {why}");
    }
    if !report.is_complete() {
        return Err("the logout was not complete".into());
    }
    // The provider's logout page sends the browser back to the app, which
    // checks that it is this logout's answer (its `state`).
    let end_session = report
        .end_session_url
        .as_ref()
        .ok_or("the provider has no end-session endpoint")?;
    let back = the_os_hands_back_the_redirect(end_session.as_str()).await?;
    if !back.starts_with(SIGNED_OUT_URI) || !report.is_logout_redirect(&back) {
        return Err(format!("an unexpected logout redirect: {}", without_query(&back)).into());
    }
    println!("the OS opened the app with: {}", without_query(&back));
    Ok(())
}

/// What the browser and the OS do between the app's "open this URL" and
/// "open the app with this URL": the provider signs the user in and answers
/// with a redirect to the app's custom scheme, which the browser cannot
/// follow but hands to the OS. Here: one GET, redirects off, the `Location`.
async fn the_os_hands_back_the_redirect(authorization_url: &str) -> Result<String, BoxError> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let answer = browser.get(authorization_url).send().await?;
    let location = answer
        .headers()
        .get(reqwest::header::LOCATION)
        .ok_or_else(|| {
            format!(
                "the provider answered {} without a redirect",
                answer.status()
            )
        })?
        .to_str()?
        .to_owned();
    Ok(location)
}

/// The URL without its query: the code, `state`, the nonce and the PKCE
/// challenge are not for the terminal.
fn without_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, query)) => {
            let names: Vec<&str> = query
                .split('&')
                .filter_map(|pair| pair.split('=').next())
                .collect();
            format!("{base}?{{{}}}", names.join(", "))
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    /// The whole example (`[[example]] test = true` in sdk/Cargo.toml): a
    /// forged redirect refused, the custom-scheme sign-in, the logout and the
    /// way back to the app, against the embedded provider.
    #[tokio::test]
    async fn the_custom_scheme_sign_in_and_logout_work_end_to_end() {
        let idp = super::provider().await.expect("provider");
        let scratch =
            std::env::temp_dir().join(format!("sessionkit-redirect-test-{}", std::process::id()));
        let result = super::run(&idp, &scratch).await;
        let _ = std::fs::remove_dir_all(&scratch);
        if let Err(e) = result {
            panic!("{e}");
        }
    }
}
