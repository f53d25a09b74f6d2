//! Secret newtypes. Every value that would let someone act as the user — or
//! finish a login in their place — lives in one of these: `Debug` prints
//! `[redacted]`, there is no `Display`, the memory is zeroized on drop, and
//! the value is read only through `.secret()`. Clones share one allocation
//! (an `Arc`), so handing a token to every request costs a reference count.

use std::fmt;
use std::sync::Arc;

use zeroize::Zeroizing;

macro_rules! secret_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(Arc<Zeroizing<String>>);

        impl $name {
            /// Wraps a secret value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(Arc::new(Zeroizing::new(value.into())))
            }

            /// The secret value.
            ///
            /// # Security
            /// Never log it, print it or write it anywhere but the token store.
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// A short fingerprint (first 12 hex digits of its SHA-256) that is
            /// safe to log in place of the value.
            pub fn fingerprint(&self) -> String {
                fingerprint(self.secret())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "([redacted])"))
            }
        }
    };
}

secret_type!(
    /// An OAuth 2.0 access token.
    AccessToken
);
secret_type!(
    /// An OAuth 2.0 refresh token.
    RefreshToken
);
secret_type!(
    /// An OpenID Connect ID token (a signed JWT about the user).
    IdToken
);
secret_type!(
    /// A PKCE code verifier (RFC 7636); memory only.
    CodeVerifier
);
secret_type!(
    /// The `state` of an authorization request; memory only.
    State
);
secret_type!(
    /// The `nonce` of an authorization request; memory only.
    Nonce
);
secret_type!(
    /// A confidential client's secret (from the environment or a file, never the source).
    ClientSecret
);
secret_type!(
    /// An authorization or device code; memory only.
    AuthorizationCode
);

/// SHA-256 of `value`, first 12 hex digits.
pub(crate) fn fingerprint(value: &str) -> String {
    use std::fmt::Write as _;
    let hash = sha256(value.as_bytes());
    let mut out = String::with_capacity(12);
    for b in &hash[..6] {
        let _ = write!(out, "{b:02x}");
    }
    out
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_for_every_secret_type() {
        let v = "super-secret-value-1234";
        let printed = [
            format!("{:?}", AccessToken::new(v)),
            format!("{:?}", RefreshToken::new(v)),
            format!("{:?}", IdToken::new(v)),
            format!("{:?}", CodeVerifier::new(v)),
            format!("{:?}", State::new(v)),
            format!("{:?}", Nonce::new(v)),
            format!("{:?}", ClientSecret::new(v)),
            format!("{:?}", AuthorizationCode::new(v)),
        ];
        for p in printed {
            assert!(p.contains("[redacted]"), "{p}");
            assert!(!p.contains("secret-value"), "{p}");
        }
        assert_eq!(AccessToken::new(v).secret(), v);
        assert_eq!(AccessToken::new(v).fingerprint().len(), 12);
    }
}
