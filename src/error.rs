//! Errors: the crate's internal error type, how it is classified, and how it becomes a
//! [`RustAuthError`] at the crate's boundary (`DbAdapter`, `RateLimitStore`, `driver`).
//!
//! Inside the crate an error keeps its structure: a [`tokio_postgres::Error`] stays one, so
//! decisions (retry, re-prepare, abort the transaction, reconnect) are taken on its
//! [`SqlState`] and its kind, never on message text (the server translates its messages under
//! `lc_messages`). Only at the boundary is it turned into `RustAuthError::Adapter`, whose text
//! has 0.3.2's shape: `tokio-postgres error: SQLSTATE <code>; <message>[; detail: …][; schema:
//! …][; table: …][; column: …][; constraint: …]`. Connection strings never appear in these
//! messages, so a password cannot leak through an error.

use rustauth_core::error::RustAuthError;
use tokio_postgres::error::SqlState;

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
    pub(crate) fn kind(&self) -> String {
        match self {
            Self::Postgres { error, .. } => match error.code() {
                Some(code) => format!("SQLSTATE {}", code.code()),
                None if error.is_closed() => "connection closed".to_owned(),
                None => "driver error".to_owned(),
            },
            Self::Json(_) => "json error".to_owned(),
            Self::Value(_) => "value error".to_owned(),
            Self::Core(RustAuthError::Adapter(_)) => "adapter error".to_owned(),
            Self::Core(other) => other.to_string(),
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
        // Non-server errors: tokio-postgres' own text plus its source, e.g. the I/O cause.
        return match std::error::Error::source(error) {
            Some(source) if !error.to_string().contains(&source.to_string()) => {
                format!("{error}: {source}")
            }
            _ => error.to_string(),
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
}
