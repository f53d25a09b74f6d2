//! The OpenID relying-party conformance tests, offline: mock-idp plays the
//! provider side of each scenario (an ID token without `sub`, a discovery
//! document naming another issuer, a logout token signed with `alg: none`…)
//! and judges the relying party by what it then does.
//!
//! A scenario runs for one client: started through the control API
//! ([`crate::Control::conformance_start`], `POST /_control/conformance/runs`)
//! or by the client's configuration ([`crate::ClientConfig::conformance`]),
//! ended by `finish`, where the RP may add its own report. The provider
//! watches the run:
//! - **reject** scenarios fail the moment the RP uses what it should have
//!   refused — the access token at userinfo or the account API, the refresh
//!   token at the token endpoint, the code of a forged authorization
//!   response, anything after a discovery document naming another issuer —
//!   and pass at `finish` if it never did;
//! - **accept** scenarios pass once the RP used the access token of the run
//!   (and met the scenario's extra condition: HTTP Basic, the moved JWKS
//!   fetched, the JWKS fetched again after a rotation…);
//! - **back-channel** scenarios are judged by the HTTP status the RP's
//!   receiver answers (200 for a valid logout token, 400 otherwise);
//! - one scenario (`userinfo-invalid-sub`) is invisible to the provider:
//!   its verdict is the RP's own report.
//!
//! Discovery and JWKS scenarios change what the whole provider serves while
//! their run is open (discovery names no client); the others change only
//! what the run's client gets. Results stay until the provider stops and are
//! shown as a table (`GET /_control/conformance`, and printed by the binary
//! when it stops).

mod catalog;
mod run;
pub(crate) mod table;
pub(crate) mod twist;

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use catalog::{Expect, Plan, SCENARIOS, Scenario, scenario};
pub(crate) use catalog::{IdTwist, Twist};
pub(crate) use run::Run;
pub use table::{check_table_in_file, markdown_table};

use crate::keys::SigningKey;
use crate::state::Hash;

/// What the RP says it did in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RpOutcome {
    /// It completed the flow and used what it got.
    Accepted,
    /// It refused what it got.
    Rejected,
}

/// The RP's own report, given when a run is finished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RpReport {
    /// What it did.
    pub outcome: RpOutcome,
    /// Why, in its own words (an error message, say). Shown, never judged.
    #[serde(default)]
    pub detail: String,
}

impl RpReport {
    /// The RP accepted.
    pub fn accepted() -> Self {
        Self {
            outcome: RpOutcome::Accepted,
            detail: String::new(),
        }
    }
    /// The RP refused, for `detail`.
    pub fn rejected(detail: impl Into<String>) -> Self {
        Self {
            outcome: RpOutcome::Rejected,
            detail: detail.into(),
        }
    }
}

/// A run's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Not decided yet: the run is open and nothing has settled it.
    Waiting,
    /// The RP did what the scenario expects.
    Passed,
    /// It did not.
    Failed,
}

impl Verdict {
    /// As the table shows it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Waiting => "WAITING",
            Verdict::Passed => "PASSED",
            Verdict::Failed => "FAILED",
        }
    }
}

/// One run as the control API reports it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct RunResult {
    /// The run's number, from 1, in this provider.
    pub id: u64,
    /// The scenario's name.
    pub scenario: &'static str,
    /// Its plan.
    pub plan: Plan,
    /// What the RP was expected to do.
    pub expected: Expect,
    /// The client it ran for.
    pub client_id: String,
    /// Is it still open?
    pub open: bool,
    /// What the provider saw the RP do, in a few words.
    pub observed: String,
    /// What the RP said it did.
    pub rp_report: Option<RpReport>,
    /// The verdict.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
}

/// The runs of one provider.
#[derive(Debug, Default)]
pub(crate) struct Conformance {
    runs: Mutex<Runs>,
}

#[derive(Debug, Default)]
struct Runs {
    next_id: u64,
    all: Vec<Run>,
}

/// The most runs kept; the oldest finished ones go first.
const KEPT: usize = 1000;

impl Conformance {
    fn runs(&self) -> MutexGuard<'_, Runs> {
        self.runs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a run of `scenario` for `client_id`, finishing the client's open
    /// run if it has one. `decoy` is the extra RSA key of the scenarios
    /// whose JWKS holds two.
    pub(crate) fn start(
        &self,
        scenario: &'static Scenario,
        client_id: &str,
        decoy: Option<Arc<SigningKey>>,
    ) -> u64 {
        let mut runs = self.runs();
        for run in runs
            .all
            .iter_mut()
            .filter(|r| r.open && r.client_id == client_id)
        {
            run.finish(None);
        }
        runs.next_id += 1;
        let id = runs.next_id;
        runs.all.push(Run::new(id, scenario, client_id, decoy));
        if runs.all.len() > KEPT
            && let Some(oldest) = runs.all.iter().position(|r| !r.open)
        {
            runs.all.remove(oldest);
        }
        id
    }

    /// Finishes the open run of `client_id`, with the RP's report.
    pub(crate) fn finish(&self, client_id: &str, report: Option<RpReport>) -> Option<RunResult> {
        let mut runs = self.runs();
        let run = runs
            .all
            .iter_mut()
            .find(|r| r.open && r.client_id == client_id)?;
        run.finish(report);
        Some(run.result())
    }

    /// Every run kept, oldest first.
    pub(crate) fn results(&self) -> Vec<RunResult> {
        self.runs().all.iter().map(Run::result).collect()
    }

    /// Calls `f` with the open run of `client_id`, if any.
    pub(crate) fn with_run<T>(&self, client_id: &str, f: impl FnOnce(&mut Run) -> T) -> Option<T> {
        let mut runs = self.runs();
        runs.all
            .iter_mut()
            .find(|r| r.open && r.client_id == client_id)
            .map(f)
    }

    /// The twist of the open run of `client_id`.
    pub(crate) fn twist(&self, client_id: &str) -> Option<Twist> {
        self.with_run(client_id, |r| r.scenario.twist)
    }

    /// Calls `f` with every open run.
    fn each_open(&self, mut f: impl FnMut(&mut Run)) {
        let mut runs = self.runs();
        runs.all.iter_mut().filter(|r| r.open).for_each(&mut f);
    }

    /// Discovery was fetched: returns the document to serve instead, when an
    /// open run changes it.
    pub(crate) fn on_discovery(&self, issuer: &str, document: &[u8]) -> Option<Vec<u8>> {
        let mut twist = None;
        self.each_open(|run| {
            run.saw_discovery();
            if matches!(
                run.scenario.twist,
                Twist::IssuerMismatch | Twist::JwksUriMoved
            ) {
                twist = Some(run.scenario.twist);
            }
        });
        let mut doc: Value = serde_json::from_slice(document).ok()?;
        match twist? {
            Twist::IssuerMismatch => doc["issuer"] = Value::from(format!("{issuer}/other-issuer")),
            _ => doc["jwks_uri"] = Value::from(format!("{issuer}{MOVED_JWKS_PATH}")),
        }
        Some(doc.to_string().into_bytes())
    }

    /// The JWKS was fetched (`moved`: at the moved address). Returns `None`
    /// when it must answer 404, else the keys to publish instead of the
    /// usual ones, if an open run changes them.
    pub(crate) fn on_jwks(&self, moved: bool) -> Option<JwksAnswer> {
        let mut answer = JwksAnswer::Usual;
        let mut moved_open = false;
        self.each_open(|run| {
            let served_here = match run.scenario.twist {
                Twist::JwksUriMoved => {
                    moved_open = true;
                    moved
                }
                _ => !moved,
            };
            if served_here {
                run.saw_jwks(moved);
            }
            match run.scenario.twist {
                Twist::IdToken(IdTwist::KidAbsentSingle) => answer = JwksAnswer::SingleRsa,
                Twist::IdToken(IdTwist::KidAbsentMultiple) => {
                    if let Some(decoy) = run.decoy.clone() {
                        answer = JwksAnswer::RsaAnd(decoy);
                    }
                }
                _ => {}
            }
        });
        if moved != moved_open {
            return None;
        }
        Some(answer)
    }

    /// A token was presented at `endpoint` (userinfo, account, introspection).
    pub(crate) fn on_token_use(&self, client_id: &str, token: &Hash, endpoint: &str) {
        self.with_run(client_id, |run| run.used_token(token, endpoint));
    }
}

/// Where the JWKS is served while a `discovery-jwks-uri-keys` run is open.
pub(crate) const MOVED_JWKS_PATH: &str = "/conformance/moved-jwks";

/// What the JWKS endpoint publishes.
#[derive(Debug)]
pub(crate) enum JwksAnswer {
    /// The usual keys.
    Usual,
    /// Only the active RSA key.
    SingleRsa,
    /// The active RSA key and this one.
    RsaAnd(Arc<SigningKey>),
}
