//! One run of a scenario: what the provider saw the RP do, and the verdict
//! that follows from it.

use std::collections::HashSet;
use std::sync::Arc;

use super::catalog::{Expect, Scenario, Twist};
use super::{RpOutcome, RpReport, RunResult, Verdict};
use crate::keys::SigningKey;
use crate::state::Hash;

/// A run and its observations.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) id: u64,
    pub(crate) scenario: &'static Scenario,
    pub(crate) client_id: String,
    pub(crate) open: bool,
    pub(crate) decoy: Option<Arc<SigningKey>>,
    /// The provider showed the RP the scenario's twist.
    shown: bool,
    discovery: bool,
    moved_jwks: bool,
    /// The key set was rotated for this run; JWKS fetches after it.
    pub(crate) rotated: bool,
    jwks_after_rotation: bool,
    basic_auth: Option<bool>,
    /// Access and refresh tokens of this run (by hash); the second set holds
    /// those of the response the RP must refuse.
    tokens: HashSet<Hash>,
    tainted: HashSet<Hash>,
    refreshed_tokens: HashSet<Hash>,
    used: bool,
    used_refreshed: bool,
    refreshes: u32,
    userinfo_claims: bool,
    /// Things the RP did that it must not have.
    violations: Vec<String>,
    logout: Option<(bool, bool)>,
    backchannel: Option<Result<u16, String>>,
    report: Option<RpReport>,
}

impl Run {
    pub(crate) fn new(
        id: u64,
        scenario: &'static Scenario,
        client_id: &str,
        decoy: Option<Arc<SigningKey>>,
    ) -> Self {
        Self {
            id,
            scenario,
            client_id: client_id.to_owned(),
            open: true,
            decoy,
            shown: false,
            discovery: false,
            moved_jwks: false,
            rotated: false,
            jwks_after_rotation: false,
            basic_auth: None,
            tokens: HashSet::new(),
            tainted: HashSet::new(),
            refreshed_tokens: HashSet::new(),
            used: false,
            used_refreshed: false,
            refreshes: 0,
            userinfo_claims: false,
            violations: Vec::new(),
            logout: None,
            backchannel: None,
            report: None,
        }
    }

    pub(crate) fn finish(&mut self, report: Option<RpReport>) {
        self.open = false;
        if report.is_some() {
            self.report = report;
        }
    }

    fn violate(&mut self, what: impl Into<String>) {
        let what = what.into();
        if !self.violations.contains(&what) {
            self.violations.push(what);
        }
    }

    pub(crate) fn saw_discovery(&mut self) {
        self.discovery = true;
        if self.scenario.twist == Twist::IssuerMismatch {
            self.shown = true;
        }
    }

    pub(crate) fn saw_jwks(&mut self, moved: bool) {
        self.moved_jwks |= moved;
        if self.rotated {
            self.jwks_after_rotation = true;
        }
    }

    /// An authorization request of this run's client arrived.
    pub(crate) fn saw_authorize(&mut self) {
        if self.scenario.twist == Twist::IssuerMismatch && self.shown {
            self.violate("sent an authorization request after discovery named another issuer");
        }
    }

    /// The authorization response was changed as the scenario says.
    pub(crate) fn showed_auth_response(&mut self) {
        self.shown = true;
    }

    /// A token request of this run's client: `refresh` names the presented
    /// refresh token's hash for that grant.
    pub(crate) fn saw_token_request(
        &mut self,
        grant_type: &str,
        basic: bool,
        refresh: Option<Hash>,
    ) {
        if grant_type == "authorization_code" {
            self.basic_auth = Some(basic);
            match self.scenario.twist {
                Twist::IssuerMismatch if self.shown => {
                    self.violate("redeemed a code after discovery named another issuer");
                }
                Twist::AuthIssInvalid | Twist::AuthIssMissing | Twist::AuthStateInvalid
                    if self.shown =>
                {
                    self.violate("redeemed the code of a forged authorization response");
                }
                _ => {}
            }
        }
        if let Some(hash) = refresh
            && self.tainted.contains(&hash)
        {
            self.violate("used the refresh token of a response it should have refused");
        }
    }

    /// Tokens were issued to this run's client; `tainted` when they came
    /// with what the RP must refuse.
    pub(crate) fn issued(&mut self, hashes: &[Hash], refresh_grant: bool, tainted: bool) {
        if refresh_grant {
            self.refreshes += 1;
            self.refreshed_tokens.extend(hashes.iter().copied());
        }
        self.tokens.extend(hashes.iter().copied());
        if tainted {
            self.shown = true;
            self.tainted.extend(hashes.iter().copied());
        }
    }

    /// Shown the RP a twist that is not in a token (userinfo's `sub`, a key set).
    pub(crate) fn showed(&mut self) {
        self.shown = true;
    }

    pub(crate) fn used_token(&mut self, token: &Hash, endpoint: &str) {
        if self.tainted.contains(token) {
            self.violate(format!(
                "used the access token of a response it should have refused at {endpoint}"
            ));
        } else if self.tokens.contains(token) {
            self.used = true;
            if self.refreshed_tokens.contains(token) {
                self.used_refreshed = true;
            }
        }
    }

    pub(crate) fn userinfo_answered(&mut self, claims: usize) {
        if claims > 1 {
            self.userinfo_claims = true;
        }
    }

    pub(crate) fn saw_logout(&mut self, hint_valid: bool, state: bool) {
        self.logout = Some((hint_valid, state));
    }

    pub(crate) fn saw_backchannel(&mut self, answer: Result<u16, String>) {
        self.backchannel = Some(answer);
    }

    /// What the provider saw, in a few words (the same words for the same
    /// behaviour, so that tables can be compared).
    fn observed(&self) -> String {
        match self.scenario.expect {
            Expect::Status(_) => match &self.backchannel {
                Some(Ok(status)) => format!("answered {status}"),
                Some(Err(_)) => "the receiver could not be reached".into(),
                None => "no logout token sent".into(),
            },
            Expect::LogoutRequest => match self.logout {
                Some((hint, state)) => format!(
                    "logout request {} id_token_hint, {} state",
                    if hint {
                        "with a valid"
                    } else {
                        "without a valid"
                    },
                    if state { "with" } else { "without" }
                ),
                None => "no logout request".into(),
            },
            _ if !self.violations.is_empty() => self.violations[0].clone(),
            Expect::Reject => match self.scenario.twist {
                _ if self.scenario.needs.rp_report => match &self.report {
                    Some(r) if r.outcome == RpOutcome::Rejected => {
                        "the RP reports a refusal".into()
                    }
                    Some(_) => "the RP reports it accepted".into(),
                    None => "no report from the RP".into(),
                },
                Twist::IssuerMismatch => "went no further than discovery".into(),
                Twist::AuthIssInvalid | Twist::AuthIssMissing | Twist::AuthStateInvalid => {
                    "did not redeem the code".into()
                }
                _ if self.used => "never used the refused tokens (used earlier ones)".into(),
                _ => "never used the refused tokens".into(),
            },
            _ if self.used => "used the tokens".into(),
            _ if self.tokens.is_empty() => "got no tokens".into(),
            _ => "never used the tokens".into(),
        }
    }

    /// Conditions of an accept scenario still unmet.
    fn unmet(&self) -> Vec<&'static str> {
        let n = self.scenario.needs;
        let mut missing = Vec::new();
        if n.discovery && !self.discovery {
            missing.push("discovery was not fetched");
        }
        if n.basic_auth && self.basic_auth != Some(true) {
            missing.push("the client did not authenticate with client_secret_basic");
        }
        if n.moved_jwks && !self.moved_jwks {
            missing.push("the JWKS at the advertised jwks_uri was not fetched");
        }
        if n.jwks_after_rotation && !self.jwks_after_rotation {
            missing.push("the JWKS was not fetched again after the rotation");
        }
        if n.userinfo_claims && !self.userinfo_claims {
            missing.push("userinfo was not asked for profile or email claims");
        }
        if n.refreshed && !self.used_refreshed {
            missing.push("no refreshed access token was used");
        }
        if !self.used {
            missing.push("the access token was never used");
        }
        missing
    }

    fn verdict(&self) -> (Verdict, String) {
        let reported = self.report.as_ref().map(|r| r.outcome);
        match self.scenario.expect {
            Expect::Status(want) => match &self.backchannel {
                None if self.open => (Verdict::Waiting, "no logout token sent yet".into()),
                None => (
                    Verdict::Failed,
                    "no logout token was sent in the run".into(),
                ),
                Some(Err(e)) => (Verdict::Failed, format!("the receiver failed: {e}")),
                Some(Ok(got)) if *got == want || (want == 200 && *got == 204) => {
                    (Verdict::Passed, format!("answered {got}"))
                }
                Some(Ok(got)) => (Verdict::Failed, format!("answered {got}, expected {want}")),
            },
            Expect::LogoutRequest => match self.logout {
                None if self.open => (Verdict::Waiting, "no logout request yet".into()),
                None => (Verdict::Failed, "no logout request was sent".into()),
                Some((false, _)) => (
                    Verdict::Failed,
                    "the logout request had no valid id_token_hint".into(),
                ),
                Some((true, false)) if self.scenario.needs.logout_state => {
                    (Verdict::Failed, "the logout request had no state".into())
                }
                Some(_) => (Verdict::Passed, "the provider could end the session".into()),
            },
            Expect::Reject => {
                if let Some(v) = self.violations.first() {
                    return (Verdict::Failed, v.clone());
                }
                if reported == Some(RpOutcome::Accepted) {
                    return (Verdict::Failed, "the RP says it accepted".into());
                }
                if self.open {
                    return (
                        Verdict::Waiting,
                        "open: nothing refused has been used".into(),
                    );
                }
                if !self.shown {
                    return (Verdict::Failed, "the run never reached its twist".into());
                }
                if self.scenario.needs.rp_report && reported != Some(RpOutcome::Rejected) {
                    return (
                        Verdict::Failed,
                        "only the RP can tell, and it did not report a refusal".into(),
                    );
                }
                (Verdict::Passed, "refused: nothing of it was used".into())
            }
            Expect::RejectOrAccept => {
                if self.used {
                    (Verdict::Passed, "accepted (found the signing key)".into())
                } else if self.open {
                    (Verdict::Waiting, "open".into())
                } else if self.shown {
                    (Verdict::Passed, "refused".into())
                } else {
                    (Verdict::Failed, "the run never reached its twist".into())
                }
            }
            Expect::Accept => {
                if let Some(v) = self.violations.first() {
                    return (Verdict::Failed, v.clone());
                }
                let unmet = self.unmet();
                if unmet.is_empty() && reported != Some(RpOutcome::Rejected) {
                    return (Verdict::Passed, "completed and used the tokens".into());
                }
                if reported == Some(RpOutcome::Rejected) {
                    return (Verdict::Failed, "the RP refused a valid response".into());
                }
                if self.open {
                    return (Verdict::Waiting, unmet.join("; "));
                }
                (Verdict::Failed, unmet.join("; "))
            }
        }
    }

    pub(crate) fn result(&self) -> RunResult {
        let (verdict, reason) = self.verdict();
        RunResult {
            id: self.id,
            scenario: self.scenario.name,
            plan: self.scenario.plan,
            expected: self.scenario.expect,
            client_id: self.client_id.clone(),
            open: self.open,
            observed: self.observed(),
            rp_report: self.report.clone(),
            verdict,
            reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::scenario;

    fn run(name: &str) -> Run {
        Run::new(1, scenario(name).expect("a scenario"), "c", None)
    }

    #[test]
    fn a_reject_scenario_fails_on_use_and_passes_only_when_finished_unused() {
        let mut r = run("oidcc-client-test-invalid-iss");
        r.issued(&[[1; 32], [2; 32]], false, true);
        assert_eq!(r.verdict().0, Verdict::Waiting);
        r.finish(None);
        assert_eq!(r.verdict().0, Verdict::Passed);

        let mut r = run("oidcc-client-test-invalid-iss");
        r.issued(&[[1; 32]], false, true);
        r.used_token(&[1; 32], "userinfo");
        r.finish(Some(RpReport::rejected("no")));
        assert_eq!(r.verdict().0, Verdict::Failed);
        assert!(r.verdict().1.contains("userinfo"));

        let mut r = run("oidcc-client-test-invalid-iss");
        r.finish(None);
        assert_eq!(r.verdict().0, Verdict::Failed, "never shown");
    }

    #[test]
    fn an_accept_scenario_needs_its_conditions_and_the_token_used() {
        let mut r = run("oidcc-client-test-client-secret-basic");
        r.saw_token_request("authorization_code", false, None);
        r.issued(&[[1; 32]], false, false);
        r.used_token(&[1; 32], "userinfo");
        r.finish(None);
        let (v, why) = r.verdict();
        assert_eq!(v, Verdict::Failed);
        assert!(why.contains("client_secret_basic"), "{why}");

        let mut r = run("oidcc-client-test-client-secret-basic");
        r.saw_token_request("authorization_code", true, None);
        r.issued(&[[1; 32]], false, false);
        r.used_token(&[1; 32], "userinfo");
        assert_eq!(r.verdict().0, Verdict::Passed);
    }

    #[test]
    fn back_channel_scenarios_are_judged_by_the_status() {
        let mut r = run("oidcc-client-test-rp-backchannel-rpinitlogout-lt-alg-none");
        r.saw_backchannel(Ok(200));
        assert_eq!(r.verdict().0, Verdict::Failed);
        r.saw_backchannel(Ok(400));
        assert_eq!(r.verdict().0, Verdict::Passed);
        let mut r = run("oidcc-client-test-rp-backchannel-rpinitlogout");
        r.saw_backchannel(Ok(204));
        assert_eq!(r.verdict().0, Verdict::Passed);
    }

    #[test]
    fn the_invisible_scenario_needs_the_rps_report() {
        let mut r = run("oidcc-client-test-userinfo-invalid-sub");
        r.showed();
        r.finish(None);
        assert_eq!(r.verdict().0, Verdict::Failed);
        let mut r = run("oidcc-client-test-userinfo-invalid-sub");
        r.showed();
        r.finish(Some(RpReport::rejected("another subject")));
        assert_eq!(r.verdict().0, Verdict::Passed);
    }
}
