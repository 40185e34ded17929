//! Connecting from a URL: our own URL parameters, TLS, and spawning the connection driver.
//!
//! Besides everything tokio-postgres understands, a URL (or key/value string) may carry:
//! - `sslmode=disable|allow|prefer|require|verify-ca|verify-full` (libpq's meanings, `allow`
//!   read as `prefer`; default `prefer`), `sslrootcert=<path to PEM>|system`, and
//!   `sslcert`/`sslkey` (a PEM client certificate chain and its private key) — see
//!   [`establish()`] and `tls.rs`;
//! - `statement_mode=prepared|unprepared`: `unprepared` sends every statement as an unnamed,
//!   typed statement (`query_typed`), still one round trip, for poolers such as PgBouncer in
//!   transaction mode where named prepared statements cannot live.
//!
//! The string is split into parameters with the grammar tokio-postgres itself uses for each
//! form (see [`grammar`]); ours are read and removed, and the rest of the text reaches
//! `tokio_postgres::Config::from_str` byte for byte. A parameter given twice with different
//! values is an error, never a guess.
//!
//! - [`options`]: what a string says ([`ConnectOptions`]), our parameters read and checked;
//! - [`grammar`]: splitting a string into parameters exactly as tokio-postgres does;
//! - [`establish`](mod@establish): opening a connection (hosts in turn, TLS, the session's
//!   time zone) and telling why it failed.

mod establish;
mod grammar;
mod options;

pub(crate) use establish::establish;
pub(crate) use options::{ConnectOptions, StatementMode, MAX_CONNECTIONS};
