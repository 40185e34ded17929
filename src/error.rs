//! Errors: the crate's internal error type, how it is classified, and how it becomes a
//! [`RustAuthError`] at the crate's boundary (`DbAdapter`, `RateLimitStore`, `driver`).
//!
//! Inside the crate an error keeps its structure: a [`tokio_postgres::Error`] stays one, so
//! decisions (retry, re-prepare, abort the transaction, reconnect) are taken on its
//! [`SqlState`] and its kind, never on message text (the server translates its messages under
//! `lc_messages`); a failed connection, a TLS file that cannot be used, a bad setting, a wait
//! for a connection that timed out or was refused, a failed migration statement are each a
//! variant with their data (host, SQLSTATE, whether retrying could help). No code reads or
//! edits an error's text. Only at the boundary, once, is an error turned into a
//! [`RustAuthError`]: `RustAuthError::Adapter`, whose text has 0.3.2's shape:
//! `tokio-postgres error: SQLSTATE <code>; <message>[; detail: …][; schema: …][; table: …][;
//! column: …][; constraint: …]`. Connection strings never appear in these messages, so a
//! password cannot leak through an error.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustauth_core::error::RustAuthError;
use tokio_postgres::error::SqlState;

use crate::tls::RootCerts;

/// An error inside the crate.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A tokio-postgres failure (server error with its SQLSTATE, lost connection, a value
    /// tokio-postgres could not encode or decode). `prepared` says whether the statement ran
    /// as a named prepared statement, which decides the pooler hint.
    #[error("tokio-postgres error: {}", describe(.error, *.prepared))]
    Postgres {
        /// The driver's error.
        error: tokio_postgres::Error,
        /// Whether it came from a named prepared statement.
        prepared: bool,
    },
    /// A JSON value that could not be encoded or decoded.
    #[error("tokio-postgres JSON error: {0}")]
    Json(#[from] serde_json::Error),
    /// A value the adapter refused before anything reached the server (it does not fit the
    /// column, a UUID that does not parse, a column type it cannot read, …).
    #[error("{0}")]
    Value(String),
    /// An error from rustauth-core (planning, validation) or one already in its form.
    #[error(transparent)]
    Core(#[from] RustAuthError),
    /// A connection string or setting the crate cannot use.
    #[error("tokio-postgres error: {0}")]
    Config(ConfigError),
    /// Opening a connection failed.
    #[error("tokio-postgres error: {0}")]
    Connect(ConnectError),
    /// A lost connection could not be made again (shared by the calls of the fail-fast window
    /// that follows the failed attempt).
    #[error("connection lost; reconnecting failed: tokio-postgres error: {0}")]
    Reconnect(Arc<ConnectError>),
    /// No connection of the set could be had for a call.
    #[error("{0}")]
    Acquire(AcquireError),
    /// A step of a migration failed.
    #[error("{source}; {step}")]
    Migration {
        /// Why it failed.
        source: Box<Error>,
        /// Which step.
        step: MigrationStep,
    },
    /// A schema the adapter cannot serve (a table name PostgreSQL cannot hold, …).
    #[error("{0}")]
    Schema(String),
    /// The server or rustauth-core answered what they never should (a `COUNT(*)` without a
    /// row, a plan the PostgreSQL dialect never makes, …).
    #[error("{0}")]
    Unexpected(String),
}

/// The step of a migration an error happened in.
#[derive(Debug)]
pub(crate) enum MigrationStep {
    /// A statement of a planned schema migration.
    Statement {
        /// Which (from 1).
        index: usize,
        /// Of how many.
        total: usize,
        /// Its text.
        sql: String,
    },
    /// A plugin's SQL migration.
    Plugin {
        /// The migration's name.
        name: String,
    },
}

impl fmt::Display for MigrationStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Statement { index, total, sql } => {
                write!(f, "migration statement {index} of {total}: {sql}")
            }
            Self::Plugin { name } => write!(f, "plugin migration `{name}`"),
        }
    }
}

/// A connection string or setting that cannot be used.
#[derive(Debug)]
pub(crate) enum ConfigError {
    /// The string itself (a parameter given twice, a value out of range, …), worded like
    /// tokio-postgres' own `invalid connection string`.
    Invalid(String),
    /// `sslrootcert=system` with an `sslmode` weaker than `verify-full`.
    WeakTlsWithSystemRoots {
        /// The `sslmode` given.
        mode: &'static str,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid(why) => write!(f, "invalid connection string: {why}"),
            Self::WeakTlsWithSystemRoots { mode } => write!(
                f,
                "weak sslmode `{mode}` may not be used with sslrootcert=system (use verify-full)"
            ),
        }
    }
}

/// Why a certificate, key or root file (or the TLS configuration) cannot be used.
#[derive(Debug)]
pub(crate) enum TlsSetupError {
    /// rustls refused the protocol versions of its provider.
    Provider(rustls::Error),
    /// The root store verifies nothing.
    NoUsableRoot {
        /// Which roots (`sslrootcert` or the system store).
        roots: String,
        /// rustls' reason.
        error: rustls::client::VerifierBuilderError,
    },
    /// The `sslrootcert` file.
    Roots {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        why: FileProblem,
    },
    /// The `sslcert` file.
    ClientCert {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        why: FileProblem,
    },
    /// The `sslkey` file.
    ClientKey {
        /// The file.
        path: PathBuf,
        /// Why it cannot be used.
        why: FileProblem,
    },
    /// The certificate and the key do not go together.
    Mismatch {
        /// The `sslcert` file.
        cert: PathBuf,
        /// The `sslkey` file.
        key: PathBuf,
        /// rustls' reason.
        error: rustls::Error,
    },
}

/// What is wrong with a PEM file.
#[derive(Debug)]
pub(crate) enum FileProblem {
    /// It cannot be read.
    Read(std::io::Error),
    /// It is not valid PEM.
    Pem(rustls::pki_types::pem::Error),
    /// It holds no certificate.
    NoCertificate,
    /// It holds no private key (the parser's own error is not kept: it may quote the file).
    NoPrivateKey,
    /// Certificate `index` (from 1) is not a usable root.
    NotARoot {
        /// Which certificate.
        index: usize,
        /// rustls' reason.
        error: rustls::Error,
    },
}

impl fmt::Display for FileProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(error) => write!(f, "{error}"),
            Self::Pem(error) => write!(f, "invalid PEM: {error}"),
            Self::NoCertificate => f.write_str("the file holds no PEM certificate"),
            Self::NoPrivateKey => f.write_str("the file holds no PEM private key"),
            Self::NotARoot { index, error } => {
                write!(f, "certificate {index} is not a usable root: {error}")
            }
        }
    }
}

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Provider(error) => write!(f, "TLS setup failed: {error}"),
            Self::NoUsableRoot { roots, error } => write!(
                f,
                "TLS setup failed: {roots} holds no usable root certificate: {error}"
            ),
            Self::Roots { path, why } => write!(
                f,
                "cannot read the root certificates in sslrootcert `{}`: {why}",
                path.display()
            ),
            Self::ClientCert { path, why } => write!(
                f,
                "cannot read the client certificate in sslcert `{}`: {why}",
                path.display()
            ),
            Self::ClientKey { path, why } => write!(
                f,
                "cannot read the private key in sslkey `{}`: {why}",
                path.display()
            ),
            Self::Mismatch { cert, key, error } => write!(
                f,
                "the client certificate in sslcert `{}` and the key in sslkey `{}` cannot be \
                 used together: {error}",
                cert.display(),
                key.display()
            ),
        }
    }
}

/// Why a connection could not be opened.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// tokio-postgres (or the server) refused: I/O, authentication, a missing database, ….
    Driver {
        /// The driver's error.
        error: tokio_postgres::Error,
        /// Whether `sslmode=disable` may be why the server refused (it accepts TLS only).
        tls_disabled: bool,
    },
    /// The server answered the TLS request with "no" while the mode requires TLS.
    TlsUnsupported {
        /// The `sslmode`.
        mode: &'static str,
    },
    /// The server's certificate failed verification.
    Certificate {
        /// The `sslmode`.
        mode: &'static str,
        /// rustls' reason.
        error: rustls::Error,
        /// The roots it was checked against.
        roots: RootCerts,
    },
    /// The TLS handshake failed otherwise.
    Handshake {
        /// The `sslmode`.
        mode: &'static str,
        /// rustls' reason.
        error: rustls::Error,
    },
    /// The attempt outlasted `connect_timeout`.
    Timeout {
        /// The bound.
        limit: Duration,
    },
    /// The certificates or keys of the string cannot be used.
    TlsSetup(TlsSetupError),
    /// The session could not be set up after connecting (`SET TimeZone`).
    Session(tokio_postgres::Error),
    /// Every host of a multi-host string failed: each host (`host:port`) and why.
    AllHosts(Vec<(String, ConnectError)>),
}

impl ConnectError {
    /// Whether trying again would fail the same way: refused credentials, a missing database,
    /// a certificate that failed verification, unusable TLS files (every host, for several).
    pub(crate) fn permanent(&self) -> bool {
        match self {
            Self::Driver { error, .. } => error.code().is_some_and(connect_failure_is_permanent),
            Self::Certificate { .. } | Self::TlsSetup(_) => true,
            Self::AllHosts(failures) => {
                !failures.is_empty() && failures.iter().all(|(_, failure)| failure.permanent())
            }
            Self::TlsUnsupported { .. }
            | Self::Handshake { .. }
            | Self::Timeout { .. }
            | Self::Session(_) => false,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Driver {
                error,
                tls_disabled,
            } => {
                f.write_str(&describe(error, false))?;
                if *tls_disabled {
                    f.write_str(
                        "; hint: if the server accepts this connection only over TLS, \
                         sslmode=disable turns that off (use sslmode=require or stronger)",
                    )?;
                }
                Ok(())
            }
            Self::TlsUnsupported { mode } => {
                write!(f, "the server does not support TLS but sslmode={mode}")
            }
            Self::Certificate { mode, error, roots } => write!(
                f,
                "TLS certificate verification failed (sslmode={mode}): {error}{}",
                crate::tls::certificate_hint(error, roots)
            ),
            Self::Handshake { mode, error } => {
                write!(f, "TLS handshake failed (sslmode={mode}): {error}")
            }
            Self::Timeout { limit } => write!(
                f,
                "no answer within connect_timeout ({} s)",
                limit.as_secs_f64()
            ),
            Self::TlsSetup(error) => write!(f, "{error}"),
            Self::Session(error) => f.write_str(&describe(error, false)),
            Self::AllHosts(failures) => {
                write!(f, "could not connect to any of {} hosts (", failures.len())?;
                for (index, (host, failure)) in failures.iter().enumerate() {
                    if index > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{host}: {failure}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// A call that could not have a connection of the set.
#[derive(Debug)]
pub(crate) enum AcquireError {
    /// The wait reached `acquire_timeout`.
    TimedOut {
        /// How long it waited.
        waited: Duration,
        /// For what (`call`, `transaction`, `migration`).
        purpose: &'static str,
        /// The set's connections.
        connections: usize,
        /// How many of them transactions held.
        transactions: usize,
        /// Whether a migration held the rest.
        migrating: bool,
        /// How many callers were waiting.
        waiting: usize,
    },
    /// A call from inside a transaction callback that would have to wait (possibly for that
    /// very transaction).
    FromCallback {
        /// The set's connections.
        connections: usize,
        /// How many of them transactions held.
        transactions: usize,
    },
    /// A migration from inside a transaction callback.
    MigrationFromCallback,
    /// The set has no connection at all.
    EmptySet,
}

impl fmt::Display for AcquireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut {
                waited,
                purpose,
                connections,
                transactions,
                migrating,
                waiting,
            } => write!(
                f,
                "tokio-postgres adapter: timed out after {:.1} s waiting for a connection for a \
                 {purpose} (acquire_timeout): {transactions} of {connections} connections held \
                 by transactions{}, {waiting} callers waiting; raise max_connections or \
                 acquire_timeout, or shorten transactions",
                waited.as_secs_f64(),
                if *migrating {
                    ", the rest by a migration"
                } else {
                    ""
                },
            ),
            Self::FromCallback {
                connections,
                transactions,
            } => write!(
                f,
                "tokio-postgres adapter called from inside its own transaction callback while \
                 no other connection of the set is free ({connections} connections, \
                 {transactions} held by transactions); use the transaction adapter passed to \
                 the callback (waiting here could wait for this very transaction, a deadlock)",
            ),
            Self::MigrationFromCallback => f.write_str(
                "tokio-postgres adapter: migrations called from inside a transaction callback \
                 are refused: a migration needs every connection of the set, including the one \
                 the transaction holds (run migrations before or after the transaction)",
            ),
            Self::EmptySet => f.write_str("the connection set is empty"),
        }
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Self {
        Self::Postgres {
            error,
            prepared: false,
        }
    }
}

impl From<Error> for RustAuthError {
    fn from(error: Error) -> Self {
        match error {
            Error::Core(error) => error,
            other => RustAuthError::Adapter(other.to_string()),
        }
    }
}

/// A result inside the crate.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A driver error from a named prepared statement (see [`Error::Postgres`]).
    pub(crate) fn prepared(error: tokio_postgres::Error) -> Self {
        Self::Postgres {
            error,
            prepared: true,
        }
    }

    /// The SQLSTATE, when the server reported the error.
    pub(crate) fn code(&self) -> Option<&SqlState> {
        match self {
            Self::Postgres { error, .. } => error.code(),
            _ => None,
        }
    }

    /// Whether this error ended the transaction it happened in: PostgreSQL aborts a
    /// transaction at the first statement it rejects, and a lost connection ends it. A value
    /// refused on the client, or a row that could not be decoded, leave it open.
    pub(crate) fn aborts_transaction(&self) -> bool {
        match self {
            Self::Postgres { error, .. } => error.as_db_error().is_some() || error.is_closed(),
            _ => false,
        }
    }

    /// Whether the server refused a write because it is read-only (a standby, or a primary
    /// demoted under the connection, or `default_transaction_read_only`): the connection is
    /// on the wrong server.
    pub(crate) fn read_only_server(&self) -> bool {
        self.code() == Some(&SqlState::READ_ONLY_SQL_TRANSACTION)
    }

    /// Whether the statement's cached plan or parameter types may be stale (another session
    /// altered the table): preparing the statement afresh may succeed where it failed.
    pub(crate) fn stale_statement(&self) -> bool {
        self.code().is_some_and(is_stale_plan)
    }

    /// What a span records about this error: the SQLSTATE for server errors (their messages
    /// and details can quote values), a kind for everything else.
    pub(crate) fn kind(&self) -> Kind<'_> {
        match self {
            Self::Postgres { error, .. } => match error.code() {
                Some(code) => Kind::Sqlstate(code.code()),
                None if error.is_closed() => Kind::Named("connection closed"),
                None => Kind::Named("driver error"),
            },
            Self::Json(_) => Kind::Named("json error"),
            Self::Value(_) => Kind::Named("value error"),
            Self::Core(RustAuthError::Adapter(_)) => Kind::Named("adapter error"),
            Self::Core(other) => Kind::Core(other),
            Self::Config(_) => Kind::Named("configuration error"),
            Self::Connect(_) | Self::Reconnect(_) => Kind::Named("connect error"),
            Self::Acquire(_) => Kind::Named("acquire error"),
            Self::Migration { source, .. } => source.kind(),
            Self::Schema(_) => Kind::Named("schema error"),
            Self::Unexpected(_) => Kind::Named("unexpected answer"),
        }
    }
}

/// What a span records about an error (see [`Error::kind`]), formatted only when recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind<'a> {
    /// A server error's SQLSTATE.
    Sqlstate(&'a str),
    /// A fixed kind.
    Named(&'static str),
    /// rustauth-core's own error (not an adapter message, which could quote values).
    Core(&'a RustAuthError),
}

impl fmt::Display for Kind<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sqlstate(code) => write!(f, "SQLSTATE {code}"),
            Self::Named(name) => f.write_str(name),
            Self::Core(error) => write!(f, "{error}"),
        }
    }
}

/// SQLSTATEs that mean "this statement was planned against another version of the table":
/// 0A000 (`cached plan must not change result type`), and the type errors PostgreSQL raises
/// when it re-plans a cached statement whose parameter types no longer fit the altered column
/// (42804 datatype mismatch, 42883 no such operator).
fn is_stale_plan(code: &SqlState) -> bool {
    *code == SqlState::FEATURE_NOT_SUPPORTED
        || *code == SqlState::DATATYPE_MISMATCH
        || *code == SqlState::UNDEFINED_FUNCTION
}

/// Whether a failed connection attempt would fail the same way on every retry: refused
/// credentials, an unknown role or database.
pub(crate) fn connect_failure_is_permanent(code: &SqlState) -> bool {
    *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        || *code == SqlState::INVALID_PASSWORD
        || *code == SqlState::INVALID_CATALOG_NAME
}

/// SQLSTATEs a pooler in transaction mode (PgBouncer) causes for named prepared statements:
/// the statement is missing on the server connection the call landed on (26000), or that
/// connection holds another client's statement under the same name (42P05, and 08P01 / 22P03
/// when the other statement has other parameters).
fn is_pooler_symptom(code: &SqlState) -> bool {
    *code == SqlState::INVALID_SQL_STATEMENT_NAME
        || *code == SqlState::DUPLICATE_PSTATEMENT
        || *code == SqlState::PROTOCOL_VIOLATION
        || *code == SqlState::INVALID_BINARY_REPRESENTATION
}

/// Maps a tokio-postgres error to a `RustAuthError::Adapter` with the SQLSTATE and the
/// server's fields in a fixed order.
pub(crate) fn postgres_error(error: tokio_postgres::Error) -> RustAuthError {
    Error::from(error).into()
}

/// The human-readable details of a tokio-postgres error (no prefix).
pub(crate) fn describe(error: &tokio_postgres::Error, prepared: bool) -> String {
    let Some(db) = error.as_db_error() else {
        // Non-server errors: tokio-postgres' own text (which never includes its cause) plus
        // the cause, e.g. the I/O error.
        return match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        };
    };
    let mut text = format!("SQLSTATE {}; {}", db.code().code(), db.message());
    let labelled = [
        ("detail", db.detail()),
        ("schema", db.schema()),
        ("table", db.table()),
        ("column", db.column()),
        ("constraint", db.constraint()),
    ];
    for (label, value) in labelled {
        if let Some(value) = value {
            text.push_str("; ");
            text.push_str(label);
            text.push_str(": ");
            text.push_str(value);
        }
    }
    if prepared && is_pooler_symptom(db.code()) {
        text.push_str(
            "; hint: behind a pooler in transaction mode (e.g. PgBouncer) prepared statements \
             do not survive between transactions, and a server connection may hold another \
             client's statement of the same name: connect with `statement_mode=unprepared` in \
             the URL, or build the connection with \
             `TokioPostgresConnection::from_client_unprepared`",
        );
    }
    text
}

/// Maps a serde_json error to a `RustAuthError::Adapter`.
pub(crate) fn json_error(error: serde_json::Error) -> RustAuthError {
    Error::from(error).into()
}

/// An adapter-owned error message.
pub(crate) fn adapter(message: impl Into<String>) -> RustAuthError {
    RustAuthError::Adapter(message.into())
}

/// A connection string that cannot be used, for `why`.
pub(crate) fn invalid_config(why: impl Into<String>) -> Error {
    Error::Config(ConfigError::Invalid(why.into()))
}

/// A value the adapter refuses before sending anything.
pub(crate) fn value_error(message: impl Into<String>) -> Error {
    Error::Value(message.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejected_credentials_and_missing_databases_are_permanent() {
        assert!(connect_failure_is_permanent(&SqlState::INVALID_PASSWORD));
        assert!(connect_failure_is_permanent(
            &SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        ));
        assert!(connect_failure_is_permanent(
            &SqlState::INVALID_CATALOG_NAME
        ));
        assert!(!connect_failure_is_permanent(&SqlState::CANNOT_CONNECT_NOW));
        assert!(!connect_failure_is_permanent(&SqlState::ADMIN_SHUTDOWN));
        assert!(!connect_failure_is_permanent(
            &SqlState::TOO_MANY_CONNECTIONS
        ));
    }

    #[test]
    fn stale_plans_are_told_by_sqlstate() {
        assert!(is_stale_plan(&SqlState::FEATURE_NOT_SUPPORTED));
        assert!(is_stale_plan(&SqlState::DATATYPE_MISMATCH));
        assert!(is_stale_plan(&SqlState::UNDEFINED_FUNCTION));
        assert!(!is_stale_plan(&SqlState::UNIQUE_VIOLATION));
        assert!(!is_stale_plan(&SqlState::UNDEFINED_TABLE));
    }

    #[test]
    fn client_side_errors_do_not_abort_a_transaction() {
        assert!(!value_error("does not fit").aborts_transaction());
        assert!(!Error::Core(adapter("x")).aborts_transaction());
    }

    #[test]
    fn core_errors_cross_the_boundary_unchanged() {
        let error = RustAuthError::InvalidConfig("bad".to_owned());
        let back: RustAuthError = Error::Core(error).into();
        assert!(matches!(back, RustAuthError::InvalidConfig(text) if text == "bad"));
        let value: RustAuthError = value_error("number 7 does not fit").into();
        assert!(matches!(value, RustAuthError::Adapter(text) if text == "number 7 does not fit"));
    }

    fn unreadable_roots() -> ConnectError {
        ConnectError::TlsSetup(TlsSetupError::Roots {
            path: PathBuf::from("/etc/roots.pem"),
            why: FileProblem::NoCertificate,
        })
    }

    #[test]
    fn several_hosts_fail_for_good_only_when_every_host_does() {
        let timeout = || ConnectError::Timeout {
            limit: Duration::from_secs(1),
        };
        assert!(unreadable_roots().permanent());
        assert!(!timeout().permanent());
        let all = |failures: Vec<ConnectError>| {
            ConnectError::AllHosts(
                failures
                    .into_iter()
                    .enumerate()
                    .map(|(index, failure)| (format!("db{index}:5432"), failure))
                    .collect(),
            )
        };
        assert!(all(vec![unreadable_roots(), unreadable_roots()]).permanent());
        assert!(!all(vec![unreadable_roots(), timeout()]).permanent());
        assert!(!all(Vec::new()).permanent());
        let text = RustAuthError::from(Error::Connect(all(vec![unreadable_roots(), timeout()])))
            .to_string();
        assert!(
            text.contains(
                "tokio-postgres error: could not connect to any of 2 hosts (db0:5432: cannot \
                 read the root certificates in sslrootcert `/etc/roots.pem`: the file holds no \
                 PEM certificate; db1:5432: no answer within connect_timeout (1 s))"
            ),
            "{text}"
        );
    }

    #[test]
    fn a_failed_migration_step_is_named_after_its_cause() {
        let error = Error::Migration {
            source: Box::new(Error::Schema(
                "invalid PostgreSQL table name `a.b.c`".to_owned(),
            )),
            step: MigrationStep::Plugin {
                name: "p1".to_owned(),
            },
        };
        assert_eq!(error.kind().to_string(), "schema error");
        assert!(matches!(
            RustAuthError::from(error),
            RustAuthError::Adapter(text)
                if text == "invalid PostgreSQL table name `a.b.c`; plugin migration `p1`"
        ));
        let reconnect = Error::Reconnect(Arc::new(ConnectError::Timeout {
            limit: Duration::from_millis(500),
        }));
        assert_eq!(
            RustAuthError::from(reconnect).to_string(),
            "adapter error: connection lost; reconnecting failed: tokio-postgres error: no \
             answer within connect_timeout (0.5 s)"
        );
    }
}
