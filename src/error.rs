//! Errors: how tokio-postgres and JSON failures become [`RustAuthError`]s.
//!
//! Every database failure surfaces as `RustAuthError::Adapter` whose text starts with
//! `tokio-postgres error: `. Server errors carry `SQLSTATE <code>` and the server message, then
//! (when the server sent them) detail, schema, table, column and constraint. Connection strings
//! never appear in these messages, so a password cannot leak through an error.

use rustauth_core::error::RustAuthError;

/// The SQLSTATE Postgres reports when a cached plan no longer matches its table
/// ("cached plan must not change result type").
pub(crate) const FEATURE_NOT_SUPPORTED: &str = "0A000";

/// The failures this crate itself turns into `RustAuthError::Adapter`; their `Display` is the
/// adapter error's text.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A tokio-postgres failure: server errors with their SQLSTATE and fields.
    #[error("tokio-postgres error: {}", describe(.0))]
    Postgres(#[from] tokio_postgres::Error),
    /// A JSON value that could not be encoded or decoded.
    #[error("tokio-postgres JSON error: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<Error> for RustAuthError {
    fn from(error: Error) -> Self {
        RustAuthError::Adapter(error.to_string())
    }
}

/// Maps a tokio-postgres error to a `RustAuthError::Adapter` with the SQLSTATE and the
/// server's fields in a fixed order.
pub(crate) fn postgres_error(error: tokio_postgres::Error) -> RustAuthError {
    Error::from(error).into()
}

/// The human-readable details of a tokio-postgres error (no prefix).
pub(crate) fn describe(error: &tokio_postgres::Error) -> String {
    let Some(db) = error.as_db_error() else {
        // Non-server errors: tokio-postgres' own text plus its source, e.g. the I/O cause.
        return match std::error::Error::source(error) {
            Some(source) if !error.to_string().contains(&source.to_string()) => {
                format!("{error}: {source}")
            }
            _ => error.to_string(),
        };
    };
    let mut text = format!("SQLSTATE {}: {}", db.code().code(), db.message());
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
    // What a pooler in transaction mode (PgBouncer) does to named prepared statements: the
    // statement is missing on the server connection the call landed on, or that connection
    // holds another client's statement under the same name (different parameter count or
    // types).
    let message = db.message();
    let pooler_symptom = match db.code().code() {
        "26000" | "42P05" => true,
        "08P01" => message.contains("prepared statement"),
        "22P03" => message.contains("bind parameter"),
        _ => false,
    };
    if pooler_symptom {
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

/// The SQLSTATE code of a server error, if the error came from the server.
pub(crate) fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|code| code.code())
}

/// Maps a serde_json error to a `RustAuthError::Adapter`.
pub(crate) fn json_error(error: serde_json::Error) -> RustAuthError {
    Error::from(error).into()
}

/// An adapter-owned error message.
pub(crate) fn adapter(message: impl Into<String>) -> RustAuthError {
    RustAuthError::Adapter(message.into())
}
