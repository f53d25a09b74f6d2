//! The scenarios, by plan: what the provider does differently in each, and
//! what a relying party is expected to do about it.
//!
//! Names follow the OpenID Foundation's conformance suite where it has the
//! test (`oidcc-client-test-…`, `fapi2-…-client-test-…`); the refresh
//! scenarios, which the suite does not have, carry an `rp-refresh-` name.

use serde::Serialize;

/// The test plan a scenario belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Plan {
    /// OpenID Connect Basic RP (code flow).
    BasicRp,
    /// OpenID Connect Config RP (discovery and keys).
    ConfigRp,
    /// Refreshed ID tokens (OpenID Connect Core §12.2).
    Refresh,
    /// RP-initiated logout.
    RpInitiatedLogout,
    /// Back-channel logout: logout tokens sent to the RP's receiver.
    BackChannelLogout,
    /// Checks from the FAPI 2.0 client test plan.
    Fapi2Client,
}

impl Plan {
    /// The plan's name as the table shows it.
    pub fn label(self) -> &'static str {
        match self {
            Plan::BasicRp => "Basic RP",
            Plan::ConfigRp => "Config RP",
            Plan::Refresh => "Refresh",
            Plan::RpInitiatedLogout => "RP-initiated logout",
            Plan::BackChannelLogout => "Back-channel logout",
            Plan::Fapi2Client => "FAPI 2.0 client",
        }
    }
}

/// What the relying party is expected to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Expect {
    /// Complete the flow and use what it got (call userinfo with the access token).
    Accept,
    /// Refuse what it got: never use the tokens (or the code) of that response.
    Reject,
    /// Either refuse, or accept after trying each candidate key.
    RejectOrAccept,
    /// Answer the logout token with this HTTP status.
    Status(u16),
    /// Send an RP-initiated logout request the provider can act on.
    LogoutRequest,
}

impl Expect {
    /// A short description for the table.
    pub fn label(self) -> String {
        match self {
            Expect::Accept => "accept".into(),
            Expect::Reject => "reject".into(),
            Expect::RejectOrAccept => "reject, or accept by trying each key".into(),
            Expect::Status(s) => format!("answer {s}"),
            Expect::LogoutRequest => "logout request".into(),
        }
    }
}

/// What the provider does differently in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Twist {
    /// Nothing: the plain flow.
    None,
    /// The ID token of the code exchange is changed.
    IdToken(IdTwist),
    /// The ID token of the first refresh is changed.
    RefreshIdToken(IdTwist),
    /// Userinfo answers about another subject.
    UserinfoSub,
    /// Discovery names another issuer.
    IssuerMismatch,
    /// Discovery points at a JWKS at another address (the usual one answers 404).
    JwksUriMoved,
    /// The key set is rotated just before the ID token of the code exchange is signed.
    RotateBeforeSigning,
    /// The key set is rotated just before the refreshed ID token is signed.
    RotateMidSession,
    /// The authorization response's `iss` names another issuer.
    AuthIssInvalid,
    /// The authorization response has no `iss` though discovery advertises it.
    AuthIssMissing,
    /// The authorization response carries another `state`.
    AuthStateInvalid,
    /// The token response has no `expires_in`.
    NoExpiresIn,
    /// The token response's `token_type` is `bEaReR`.
    TokenTypeCase,
    /// Logout tokens sent to the RP are changed.
    LogoutToken(LogoutTwist),
}

/// How an ID token is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdTwist {
    InvalidIss,
    MissingSub,
    InvalidAud,
    MissingIat,
    /// No `kid` in the header; the JWKS holds only the signing key.
    KidAbsentSingle,
    /// No `kid` in the header; the JWKS holds the signing key and a decoy RSA key.
    KidAbsentMultiple,
    /// Signed with RS256 whatever the client registered.
    SigRs256,
    /// `alg: none`, no signature.
    SigNone,
    /// An RS256 signature that does not verify.
    InvalidSig,
    NonceInvalid,
    /// `aud` is an array holding the client.
    AudArray,
    /// Another `sub` (for a refreshed ID token).
    OtherSub,
}

/// How a logout token is changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogoutTwist {
    Valid,
    AlgNone,
    NoEvent,
    WithNonce,
    /// HS256 with a key the RP does not know (an algorithm the RP must not accept).
    WrongAlg,
    WrongAud,
    WrongEvent,
    WrongIss,
}

/// How a scenario's verdict is reached beyond its [`Expect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Needs {
    /// Discovery must be fetched during the run.
    pub(crate) discovery: bool,
    /// The client must authenticate with HTTP Basic.
    pub(crate) basic_auth: bool,
    /// Userinfo must have answered with claims beyond `sub`.
    pub(crate) userinfo_claims: bool,
    /// The moved JWKS must be fetched.
    pub(crate) moved_jwks: bool,
    /// The JWKS must be fetched after the rotation.
    pub(crate) jwks_after_rotation: bool,
    /// A refresh must have happened, and its access token used.
    pub(crate) refreshed: bool,
    /// Only the RP can tell (the provider cannot see what it did with an answer).
    pub(crate) rp_report: bool,
    /// The RP-initiated logout request must carry `state`.
    pub(crate) logout_state: bool,
}

/// One scenario.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    /// Its name.
    pub name: &'static str,
    /// Its plan.
    pub plan: Plan,
    /// What the RP is expected to do.
    pub expect: Expect,
    /// What the provider does, in a sentence.
    pub summary: &'static str,
    pub(crate) twist: Twist,
    pub(crate) needs: Needs,
}

const fn s(
    name: &'static str,
    plan: Plan,
    expect: Expect,
    summary: &'static str,
    twist: Twist,
    needs: Needs,
) -> Scenario {
    Scenario {
        name,
        plan,
        expect,
        summary,
        twist,
        needs,
    }
}

const NONE: Needs = Needs {
    discovery: false,
    basic_auth: false,
    userinfo_claims: false,
    moved_jwks: false,
    jwks_after_rotation: false,
    refreshed: false,
    rp_report: false,
    logout_state: false,
};

use Expect::{Accept, LogoutRequest, Reject, RejectOrAccept, Status};
use IdTwist as I;
use LogoutTwist as L;
use Plan::{BackChannelLogout, BasicRp, ConfigRp, Fapi2Client, Refresh, RpInitiatedLogout};

/// Every scenario mock-idp serves, in table order.
#[rustfmt::skip]
pub const SCENARIOS: &[Scenario] = &[
    s("oidcc-client-test", BasicRp, Accept,
      "the plain code flow; the RP must call userinfo", Twist::None, NONE),
    s("oidcc-client-test-invalid-iss", BasicRp, Reject,
      "the ID token's iss names another issuer", Twist::IdToken(I::InvalidIss), NONE),
    s("oidcc-client-test-missing-sub", BasicRp, Reject,
      "the ID token has no sub", Twist::IdToken(I::MissingSub), NONE),
    s("oidcc-client-test-invalid-aud", BasicRp, Reject,
      "the ID token's aud is another client", Twist::IdToken(I::InvalidAud), NONE),
    s("oidcc-client-test-missing-iat", BasicRp, Reject,
      "the ID token has no iat", Twist::IdToken(I::MissingIat), NONE),
    s("oidcc-client-test-kid-absent-single-jwks", BasicRp, Accept,
      "the ID token header has no kid; the JWKS holds one key", Twist::IdToken(I::KidAbsentSingle), NONE),
    s("oidcc-client-test-kid-absent-multiple-jwks", BasicRp, RejectOrAccept,
      "the ID token header has no kid; the JWKS holds two RSA keys", Twist::IdToken(I::KidAbsentMultiple), NONE),
    s("oidcc-client-test-idtoken-sig-rs256", BasicRp, Accept,
      "the ID token is signed with RS256", Twist::IdToken(I::SigRs256), NONE),
    s("oidcc-client-test-idtoken-sig-none", BasicRp, Reject,
      "the ID token is unsigned (alg none)", Twist::IdToken(I::SigNone), NONE),
    s("oidcc-client-test-invalid-sig-rs256", BasicRp, Reject,
      "the ID token's RS256 signature does not verify", Twist::IdToken(I::InvalidSig), NONE),
    s("oidcc-client-test-userinfo-invalid-sub", BasicRp, Reject,
      "userinfo answers about another sub; only the RP can tell whether it used the answer",
      Twist::UserinfoSub, Needs { rp_report: true, ..NONE }),
    s("oidcc-client-test-nonce-invalid", BasicRp, Reject,
      "the ID token's nonce is not the one the RP sent", Twist::IdToken(I::NonceInvalid), NONE),
    s("oidcc-client-test-scope-userinfo-claims", BasicRp, Accept,
      "userinfo answers with the claims of the profile and email scopes", Twist::None,
      Needs { userinfo_claims: true, ..NONE }),
    s("oidcc-client-test-client-secret-basic", BasicRp, Accept,
      "the client must authenticate with client_secret_basic", Twist::None,
      Needs { basic_auth: true, ..NONE }),
    s("oidcc-client-test-discovery-openid-config", ConfigRp, Accept,
      "the RP must read the provider's configuration from discovery", Twist::None,
      Needs { discovery: true, ..NONE }),
    s("oidcc-client-test-discovery-jwks-uri-keys", ConfigRp, Accept,
      "discovery's jwks_uri moves to another address; the old one answers 404", Twist::JwksUriMoved,
      Needs { moved_jwks: true, ..NONE }),
    s("oidcc-client-test-discovery-issuer-mismatch", ConfigRp, Reject,
      "discovery names another issuer; the RP must go no further", Twist::IssuerMismatch, NONE),
    s("oidcc-client-test-signing-key-rotation-just-before-signing", ConfigRp, Accept,
      "the keys rotate just before the ID token is signed; the RP must fetch the JWKS again",
      Twist::RotateBeforeSigning, Needs { jwks_after_rotation: true, ..NONE }),
    s("oidcc-client-test-signing-key-rotation", ConfigRp, Accept,
      "the keys rotate mid-session, before the refreshed ID token is signed",
      Twist::RotateMidSession, Needs { jwks_after_rotation: true, refreshed: true, ..NONE }),
    s("rp-refresh-iss-changed", Refresh, Reject,
      "the refreshed ID token names another issuer", Twist::RefreshIdToken(I::InvalidIss), NONE),
    s("rp-refresh-sub-changed", Refresh, Reject,
      "the refreshed ID token is about another sub", Twist::RefreshIdToken(I::OtherSub), NONE),
    s("oidcc-client-test-rp-init-logout", RpInitiatedLogout, LogoutRequest,
      "the RP ends the session with id_token_hint, post_logout_redirect_uri and state", Twist::None,
      Needs { logout_state: true, ..NONE }),
    s("oidcc-client-test-rp-init-logout-no-state", RpInitiatedLogout, LogoutRequest,
      "the RP ends the session with id_token_hint, without state", Twist::None, NONE),
    s("oidcc-client-test-rp-backchannel-rpinitlogout", BackChannelLogout, Status(200),
      "a valid logout token", Twist::LogoutToken(L::Valid), NONE),
    s("oidcc-client-test-rp-backchannel-rpinitlogout-lt-alg-none", BackChannelLogout, Status(400),
      "the logout token is unsigned (alg none)", Twist::LogoutToken(L::AlgNone), NONE),
    s("oidcc-client-test-rp-backchannel-rpinitlogout-lt-no-event", BackChannelLogout, Status(400),
      "the logout token has no events claim", Twist::LogoutToken(L::NoEvent), NONE),
    s("oidcc-client-test-rp-backchannel-rpinitlogout-lt-with-nonce", BackChannelLogout, Status(400),
      "the logout token carries a nonce", Twist::LogoutToken(L::WithNonce), NONE),
    s("oidcc-client-test-rp-backchannel-rpinitlogout-lt-wrong-alg", BackChannelLogout, Status(400),
      "the logout token is signed with HS256", Twist::LogoutToken(L::WrongAlg), NONE),
    s("oidcc-client-test-rp-backchannel-rpinitlogout-lt-wrong-aud", BackChannelLogout, Status(400),
      "the logout token's aud is another client", Twist::LogoutToken(L::WrongAud), NONE),
    s("oidcc-client-test-rp-backchannel-rpinitlogout-lt-wrong-event", BackChannelLogout, Status(400),
      "the logout token's events claim has another event", Twist::LogoutToken(L::WrongEvent), NONE),
    s("oidcc-client-test-rp-backchannel-rpinitlogout-lt-wrong-iss", BackChannelLogout, Status(400),
      "the logout token names another issuer", Twist::LogoutToken(L::WrongIss), NONE),
    s("fapi2-client-test-invalid-iss-in-authorization-response", Fapi2Client, Reject,
      "the authorization response's iss names another issuer (RFC 9207)", Twist::AuthIssInvalid, NONE),
    s("fapi2-client-test-missing-iss-in-authorization-response", Fapi2Client, Reject,
      "the authorization response has no iss though discovery advertises it", Twist::AuthIssMissing, NONE),
    s("fapi2-client-test-invalid-state", Fapi2Client, Reject,
      "the authorization response carries another state", Twist::AuthStateInvalid, NONE),
    s("fapi2-client-test-aud-as-array", Fapi2Client, Accept,
      "the ID token's aud is an array", Twist::IdToken(I::AudArray), NONE),
    s("fapi2-client-test-no-expires-in", Fapi2Client, Accept,
      "the token response has no expires_in", Twist::NoExpiresIn, NONE),
    s("fapi2-client-test-token-type-case", Fapi2Client, Accept,
      "the token response's token_type is bEaReR", Twist::TokenTypeCase, NONE),
];

/// The scenario of this name.
pub fn scenario(name: &str) -> Option<&'static Scenario> {
    SCENARIOS.iter().find(|s| s.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_plan_has_scenarios() {
        let mut names: Vec<_> = SCENARIOS.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), SCENARIOS.len());
        for plan in [
            BasicRp,
            ConfigRp,
            Refresh,
            RpInitiatedLogout,
            BackChannelLogout,
            Fapi2Client,
        ] {
            assert!(SCENARIOS.iter().any(|s| s.plan == plan), "{plan:?}");
        }
        assert!(scenario("oidcc-client-test-invalid-iss").is_some());
        assert!(scenario("nope").is_none());
    }
}
