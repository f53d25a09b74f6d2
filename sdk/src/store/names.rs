//! How an account's keychain entries are named, and the names older
//! versions used.
//!
//! An entry's "user" joins the issuer, the client id, the `sub` and the
//! entry's kind with `|`. Each field is escaped first (`%` → `%25`,
//! `|` → `%7C`), so no two keys share a name. When escaping changed any
//! field, the name ends with one more field, a lone `%`:
//!
//! | fields | name |
//! | --- | --- |
//! | `https://id.example`, `app`, `alice`, `session` | `https://id.example\|app\|alice\|session` |
//! | `https://id.example`, `app`, `auth0\|42`, `session` | `https://id.example\|app\|auth0%7C42\|session\|%` |
//!
//! Why the mark: versions up to 0.1.0 joined the fields unescaped, and any
//! string could be such a legacy name (a `sub` may well contain `%7C`). A
//! name without the mark has no `%` in it and is the same in both schemes;
//! a name with it never ends a legacy name (those end with the kind). So a
//! name read now was written for this key, never left by an older version
//! for another one. Decoding is the reverse: drop the mark, split on `|`,
//! unescape.
//!
//! Legacy names of keys that need escaping: when no field holds a `|` (only
//! `%`), the legacy name splits one way only and names this key alone —
//! [`Legacy::Unambiguous`], moved to the new name on first read. With a `|`
//! in a field, other keys could have written the same legacy name
//! ([`Legacy::Ambiguous`]): never read, only deleted at logout (no current
//! name is ever such a string, so nothing reachable is lost).

/// The legacy (unescaped) name of an entry, compared with its name now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Legacy {
    /// The fields need no escaping: the names are the same.
    Same,
    /// Only this key could have written this name: it is migrated.
    Unambiguous(String),
    /// Other keys could have written this name: deleted at logout, never read.
    Ambiguous(String),
}

/// The escaped form of one field (borrowed when there is nothing to escape).
fn escape(field: &str) -> std::borrow::Cow<'_, str> {
    if field.contains(['%', '|']) {
        field.replace('%', "%25").replace('|', "%7C").into()
    } else {
        field.into()
    }
}

/// The entry name of `fields` (issuer, client id, sub, kind).
pub(crate) fn entry_user(fields: [&str; 4]) -> String {
    let escaped = fields.map(escape);
    let mut name = escaped.join("|");
    if fields.iter().any(|f| f.contains(['%', '|'])) {
        name.push_str("|%");
    }
    name
}

/// What versions up to 0.1.0 named the entry of `fields`.
pub(crate) fn legacy_entry_user(fields: [&str; 4]) -> Legacy {
    if !fields.iter().any(|f| f.contains(['%', '|'])) {
        Legacy::Same
    } else if fields.iter().any(|f| f.contains('|')) {
        Legacy::Ambiguous(fields.join("|"))
    } else {
        Legacy::Unambiguous(fields.join("|"))
    }
}

/// The fields an entry name was made from (the reverse of [`entry_user`]);
/// `None` for a string no key is named by.
#[cfg(test)]
pub(crate) fn parse_entry_user(name: &str) -> Option<[String; 4]> {
    fn unescape(field: &str) -> Option<String> {
        let mut out = String::with_capacity(field.len());
        let mut rest = field;
        while let Some(at) = rest.find('%') {
            out.push_str(&rest[..at]);
            let (c, tail) = match rest.get(at..at + 3)? {
                "%25" => ('%', &rest[at + 3..]),
                "%7C" => ('|', &rest[at + 3..]),
                _ => return None,
            };
            out.push(c);
            rest = tail;
        }
        out.push_str(rest);
        Some(out)
    }
    let (body, marked) = match name.strip_suffix("|%") {
        Some(body) => (body, true),
        None => (name, false),
    };
    let fields: Vec<String> = body.split('|').map(unescape).collect::<Option<_>>()?;
    let fields: [String; 4] = fields.try_into().ok()?;
    // Exactly one name per key: the mark when (and only when) escaping changed a field.
    (marked == fields.iter().any(|f| f.contains(['%', '|']))).then_some(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://id.example";

    #[test]
    fn plain_fields_keep_the_old_name() {
        let fields = [ISS, "app", "alice", "session"];
        assert_eq!(entry_user(fields), "https://id.example|app|alice|session");
        assert_eq!(legacy_entry_user(fields), Legacy::Same);
    }

    #[test]
    fn fields_that_collided_get_different_names() {
        // Joined unescaped, these pairs gave one name each.
        let pairs = [
            (
                [ISS, "app|x", "y", "session"],
                [ISS, "app", "x|y", "session"],
            ),
            (
                [ISS, "app", "a|session", "refresh"],
                [ISS, "app", "a", "session|refresh"],
            ),
            (
                ["https://a|b", "c", "d", "session"],
                ["https://a", "b|c", "d", "session"],
            ),
            // The escape itself: a literal `%7C` and an escaped `|`.
            (
                [ISS, "app", "a%7Cb", "session"],
                [ISS, "app", "a|b", "session"],
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(entry_user(a), entry_user(b), "{a:?} / {b:?}");
        }
        assert_eq!(
            entry_user([ISS, "app", "auth0|42", "session"]),
            "https://id.example|app|auth0%7C42|session|%"
        );
        assert_eq!(
            entry_user([ISS, "app", "50%", "refresh"]),
            "https://id.example|app|50%25|refresh|%"
        );
    }

    #[test]
    fn names_decode_to_their_fields() {
        for fields in [
            [ISS, "app", "alice", "session"],
            [ISS, "app", "auth0|42", "session"],
            [ISS, "a|p%p", "%7C|%25%", "refresh"],
            ["", "", "", ""],
            [ISS, "app", "|", "%"],
        ] {
            let name = entry_user(fields);
            assert_eq!(
                parse_entry_user(&name),
                Some(fields.map(str::to_owned)),
                "{name}"
            );
        }
        // Strings no key is named by.
        for name in [
            "a|b|c",
            "a|b|c|d|e",
            "a|b|c%|d",
            "a|b|c%7C|d",
            "a|b|c|d|%|%",
            "a|b|c%2|d|%",
        ] {
            assert_eq!(parse_entry_user(name), None, "{name}");
        }
    }

    #[test]
    fn no_legacy_name_of_another_key_is_a_name_now() {
        // A legacy name with a `%` in a field: not a name now (only marked ones hold `%`).
        let legacy_key = [ISS, "app", "a%7Cb", "session"];
        let Legacy::Unambiguous(old) = legacy_entry_user(legacy_key) else {
            panic!("only `%`: unambiguous");
        };
        assert_eq!(old, "https://id.example|app|a%7Cb|session");
        assert_eq!(parse_entry_user(&old), None);
        assert_ne!(old, entry_user([ISS, "app", "a|b", "session"]));
        // A legacy name with a `|` in a field: ambiguous, and not a name now either.
        let Legacy::Ambiguous(old) = legacy_entry_user([ISS, "app", "auth0|42", "session"]) else {
            panic!("a `|`: ambiguous");
        };
        assert_eq!(
            old,
            legacy_entry_user([ISS, "app|auth0", "42", "session"]).name()
        );
        assert_eq!(parse_entry_user(&old), None);
    }

    impl Legacy {
        fn name(&self) -> &str {
            match self {
                Self::Same => "",
                Self::Unambiguous(n) | Self::Ambiguous(n) => n,
            }
        }
    }
}
