//! Per-test claims: [`NextClaims`], what a test wants the next token
//! response(s) of one client to say, and the rule that merges it into the
//! claims the provider would have written. Nothing is protected: a test may
//! override `iss`, `aud`, `exp`, `sub`, `nonce`, `at_hash` — any claim — and
//! remove one with `null`, because tests of clients must be able to forge
//! tokens that are signed right but say something wrong.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Extra claims for the next token response(s) of one client, set with
/// [`Control::next_claims`](crate::Control::next_claims) or
/// `POST /_control/clients/{id}/next-claims`.
///
/// Each map is merged into what the provider would have issued: a claim
/// given here replaces the provider's (registered claims included — `iss`,
/// `aud`, `exp`, `sub`, `nonce`, … are **not** protected, so a test can
/// forge a token that is signed right but wrong), and a claim given as
/// `null` is removed. The tokens are signed after the merge, with the
/// provider's real key.
///
/// - `id_token`: merged into the ID token (when the response has one);
/// - `access_token`: merged into the access token (a JWT), before the ID
///   token's `at_hash` is computed over it;
/// - `userinfo`: merged into what `/userinfo` answers when called with an
///   access token from one of these responses.
///
/// `times` token responses of the client get it (default 1), whatever the
/// grant (code, refresh, device, client credentials), whether or not they
/// carry an ID token. Several calls queue up: the first one's `times` are
/// used up before the next applies.
///
/// ```
/// use sessionkit_mock_idp::NextClaims;
///
/// // The next two token responses: a foreign `aud` in the ID token, a
/// // custom claim in the access token, no `email` in userinfo.
/// let next = NextClaims::new()
///     .id_token_claim("aud", "someone-else")
///     .access_token_claim("roles", serde_json::json!(["admin"]))
///     .userinfo_claim("email", serde_json::Value::Null)
///     .times(2);
/// assert_eq!(next.times, 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextClaims {
    /// Claims merged into the ID token.
    #[serde(default)]
    pub id_token: Map<String, Value>,
    /// Claims merged into the access token.
    #[serde(default)]
    pub access_token: Map<String, Value>,
    /// Claims merged into userinfo answers for the access tokens issued with these.
    #[serde(default)]
    pub userinfo: Map<String, Value>,
    /// How many token responses of the client get them (at least 1).
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl Default for NextClaims {
    fn default() -> Self {
        Self::new()
    }
}

impl NextClaims {
    /// Nothing extra, for the next token response only.
    pub fn new() -> Self {
        Self {
            id_token: Map::new(),
            access_token: Map::new(),
            userinfo: Map::new(),
            times: 1,
        }
    }

    /// Sets `name` in the ID token (`Value::Null` removes it).
    #[must_use]
    pub fn id_token_claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.id_token.insert(name.to_owned(), value.into());
        self
    }

    /// Sets `name` in the access token (`Value::Null` removes it).
    #[must_use]
    pub fn access_token_claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.access_token.insert(name.to_owned(), value.into());
        self
    }

    /// Sets `name` in userinfo answers (`Value::Null` removes it).
    #[must_use]
    pub fn userinfo_claim(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.userinfo.insert(name.to_owned(), value.into());
        self
    }

    /// How many token responses get these claims (default 1).
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = n;
        self
    }
}

/// Merges `extra` into `claims`: replaces what is there, removes what is `null`.
pub(crate) fn merge(claims: &mut Map<String, Value>, extra: &Map<String, Value>) {
    for (name, value) in extra {
        if value.is_null() {
            claims.remove(name);
        } else {
            claims.insert(name.clone(), value.clone());
        }
    }
}

/// Takes one use of the first queued [`NextClaims`] (its `times` counted down).
pub(crate) fn take_one(queue: &mut VecDeque<NextClaims>) -> Option<NextClaims> {
    let front = queue.front_mut()?;
    let taken = NextClaims {
        times: 1,
        ..front.clone()
    };
    front.times = front.times.saturating_sub(1);
    if front.times == 0 {
        queue.pop_front();
    }
    Some(taken)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_replaces_adds_and_removes_with_null() {
        let mut claims = json!({"iss": "a", "sub": "s", "email": "e"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let extra = json!({"iss": "b", "email": null, "roles": ["x"]})
            .as_object()
            .cloned()
            .unwrap_or_default();
        merge(&mut claims, &extra);
        assert_eq!(
            Value::Object(claims),
            json!({"iss": "b", "sub": "s", "roles": ["x"]})
        );
    }

    #[test]
    fn each_entry_is_used_its_times_then_the_next_one() {
        let mut queue: VecDeque<NextClaims> = [
            NextClaims::new().id_token_claim("n", 1).times(2),
            NextClaims::new().id_token_claim("n", 2),
        ]
        .into();
        let seen: Vec<Option<Value>> = (0..4)
            .map(|_| take_one(&mut queue).map(|c| c.id_token["n"].clone()))
            .collect();
        assert_eq!(seen, [Some(json!(1)), Some(json!(1)), Some(json!(2)), None]);
        assert!(queue.is_empty());
    }

    #[test]
    fn times_defaults_to_one_and_unknown_fields_are_refused() {
        let c: NextClaims = serde_json::from_value(json!({"id_token": {"a": 1}})).expect("parses");
        assert_eq!(c.times, 1);
        assert!(serde_json::from_value::<NextClaims>(json!({"idtoken": {}})).is_err());
    }
}
