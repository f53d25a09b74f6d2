//! [`ServerError`]: why the chat server could not start.
//!
//! Errors that happen while it runs (a refused token, a storage failure on
//! one message) are answered on the connection they concern and logged; they
//! never stop the server, so they are not part of this type.

use std::path::PathBuf;

/// Why [`ChatServer::start`](super::ChatServer::start) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be bound (or its address read).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The database could not be opened, configured or migrated.
    #[error("database {}: {source}", path.display())]
    Database {
        /// The database file (`:memory:` for the in-memory one).
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The PostgreSQL database could not be reached, configured or
    /// migrated.
    #[error("database {database}: {source}")]
    Postgres {
        /// The URL, without its password.
        database: String,
        /// What the driver or the pool said.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database was written by a newer version of the server.
    #[error(
        "database {}: schema version {found} is newer than this server understands ({known})",
        path.display()
    )]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// The `user_version` found in the file.
        found: i64,
        /// The newest version this server knows.
        known: i64,
    },
    /// The configuration is unusable (an empty issuer, an HTTP client that
    /// cannot be built).
    #[error("invalid configuration: {0}")]
    Config(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_send_sync_and_names_the_address() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<ServerError>();
        let err = ServerError::Bind {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::other("in use"),
        };
        assert_eq!(err.to_string(), "cannot listen on 127.0.0.1:1: in use");
    }
}
