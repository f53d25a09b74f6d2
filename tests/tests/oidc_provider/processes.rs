//! Four processes of one app (this test binary, started again as children)
//! share one account — one token store, one accounts file, one lock
//! directory — and all find its access token expired at the same moment.
//! With oidc-provider rotating refresh tokens and revoking the grant when a
//! used one comes back, two refreshes would end the session for everyone:
//! the per-account file lock and the re-read of the store under it must let
//! exactly one refresh grant reach the provider, and the others adopt its
//! tokens.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sessionkit::{RefreshPolicy, TokenStore};
use sessionkit_tests::file_store::FileStore;
use sessionkit_tests::scratch::ScratchDir;

use crate::support::{OidcProvider, manager, sign_in_over_http};

const CHILDREN: usize = 4;
const DIR: &str = "SK_OIDC_PROVIDER_DIR";
const ISSUER: &str = "SK_OIDC_PROVIDER_ISSUER";

/// A child: restores the account, says `READY`, waits for a line on stdin,
/// asks for a token and prints its fingerprint. Run by the test below.
#[tokio::test]
#[ignore = "a child process of several_processes_refreshing_at_once_make_one_refresh_grant"]
async fn child_process() {
    let (Ok(dir), Ok(issuer)) = (std::env::var(DIR), std::env::var(ISSUER)) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let sessions = manager(
        &issuer,
        Arc::new(FileStore::new(&dir)),
        &dir,
        RefreshPolicy::OnDemand,
    )
    .await;
    let session = sessions
        .active_session()
        .unwrap()
        .expect("the account restored from the shared store");
    println!("READY");
    tokio::task::spawn_blocking(|| {
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).expect("go");
    })
    .await
    .unwrap();
    let token = session.access_token().await.expect("a fresh token");
    println!("TOKEN {}", token.fingerprint());
}

/// Where child `n` writes its stderr.
fn stderr_file(dir: &Path, n: usize) -> PathBuf {
    dir.join(format!("child-{n}.stderr"))
}

fn spawn_child(issuer: &str, dir: &Path, n: usize) -> Child {
    let stderr = std::fs::File::create(stderr_file(dir, n)).unwrap();
    Command::new(std::env::current_exe().unwrap())
        .args([
            "processes::child_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR, dir)
        .env(ISSUER, issuer)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start a child process")
}

/// What follows `marker` on a line of a child's output (libtest may print
/// the test's name before it on the same line).
fn after<'l>(line: &'l str, marker: &str) -> Option<&'l str> {
    line.split_once(marker).map(|(_, rest)| rest.trim())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_refreshing_at_once_make_one_refresh_grant() {
    let Some(op) = OidcProvider::start() else {
        return;
    };
    let scratch = ScratchDir::new("sk-oidc-provider-processes");
    let dir = scratch.path().to_owned();
    let store = FileStore::new(&dir);
    // The parent signs in and then stays out of the way (on demand: no timer).
    let parent = manager(
        op.issuer(),
        Arc::new(FileStore::new(&dir)),
        &dir,
        RefreshPolicy::OnDemand,
    )
    .await;
    let key = sign_in_over_http(&parent, "carol").await.key().clone();
    // The stored access token has expired: every process must refresh.
    let mut entry = store.load_session(&key).unwrap();
    entry.expires_at = Some(SystemTime::now() - Duration::from_secs(5));
    store.save_session(&key, &entry).unwrap();
    let before = op.log().await;

    let issuer = op.issuer().to_owned();
    let children_dir = dir.clone();
    let outputs = tokio::task::spawn_blocking(move || {
        let dir = children_dir;
        let mut children: Vec<Child> = (0..CHILDREN)
            .map(|n| spawn_child(&issuer, &dir, n))
            .collect();
        let mut readers: Vec<_> = children
            .iter_mut()
            .map(|c| BufReader::new(c.stdout.take().unwrap()).lines())
            .collect();
        // Every child restored the account and waits; then all go at once.
        for lines in &mut readers {
            let ready = lines
                .map_while(Result::ok)
                .any(|l| after(&l, "READY").is_some());
            assert!(ready, "a child did not get ready");
        }
        for child in &mut children {
            writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
        }
        let tokens: Vec<Option<String>> = readers
            .into_iter()
            .map(|lines| {
                // Read to the end: a child writing into a closed pipe fails.
                let output: Vec<String> = lines.map_while(Result::ok).collect();
                output
                    .iter()
                    .find_map(|l| after(l, "TOKEN ").map(str::to_owned))
            })
            .collect();
        let statuses: Vec<_> = children.iter_mut().map(|c| c.wait().unwrap()).collect();
        (tokens, statuses)
    });
    let (tokens, statuses) = tokio::time::timeout(Duration::from_secs(60), outputs)
        .await
        .expect("the children finished")
        .unwrap();
    for (n, status) in statuses.iter().enumerate() {
        assert!(
            status.success(),
            "child {n}: {status}\n{}",
            std::fs::read_to_string(stderr_file(&dir, n)).unwrap_or_default()
        );
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .map(|t| t.expect("every child printed its token"))
        .collect();
    assert!(
        tokens.iter().all(|t| *t == tokens[0]),
        "every process uses the one refreshed token: {tokens:?}"
    );

    let log = op.log().await.since(&before);
    assert_eq!(
        log.requests("POST", "/token"),
        1,
        "exactly one refresh grant reached the provider"
    );
    assert_eq!(log.events("grant.success", Some("refresh_token")), 1);
    assert!(log.grant_errors("refresh_token").is_empty());
    assert_eq!(log.events("grant.revoked", None), 0, "no reuse detected");

    // The grant is alive and the store holds its newest refresh token: one
    // more refresh from it succeeds.
    let rt = store.load_refresh(&key).unwrap();
    assert_eq!(op.refresh_by_hand(rt.secret()).await, (200, None));
}
