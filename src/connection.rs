//! `TokioPostgresConnection`: one tokio-postgres client, its prepared statements, and the gate
//! that keeps ordinary calls out of someone else's open transaction.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rustauth_core::error::RustAuthError;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio_postgres::Client;

use crate::catalog::Catalog;
use crate::connect::{establish, ConnectOptions, StatementMode};
use crate::error::adapter;
use crate::prepared::TypedStatements;
use crate::runner::Db;
use crate::statements::{StatementCache, DEFAULT_CAPACITY};

tokio::task_local! {
    /// The gates of the transactions whose callbacks the current task is running (a callback
    /// of one connection's transaction may open a transaction on another connection).
    static OPEN_TRANSACTION_GATES: Vec<usize>;
}

/// One live server connection: the client, how statements reach the server, what it knows
/// of the tables (the live catalog) and the statements prepared on it. Replaced as a whole
/// when a connection made from a URL is re-established.
#[derive(Debug)]
pub(crate) struct ClientHandle {
    pub(crate) client: Client,
    /// How statements reach the server.
    pub(crate) mode: StatementMode,
    /// The live column types of the tables used on this connection.
    pub(crate) catalog: Catalog,
    /// Generic-path statements, by SQL text.
    pub(crate) statements: StatementCache,
    /// Typed (generated) statements, by table group.
    pub(crate) typed: TypedStatements,
}

impl ClientHandle {
    fn new(client: Client, mode: StatementMode) -> Self {
        Self {
            client,
            mode,
            catalog: Catalog::default(),
            statements: StatementCache::new(DEFAULT_CAPACITY),
            typed: TypedStatements::default(),
        }
    }

    /// Forgets everything learned about the tables (after a migration changed them).
    pub(crate) fn invalidate(&self) {
        self.statements.clear();
        self.invalidate_typed();
    }

    /// A generic statement met another version of its table: forget it, what the catalog
    /// said and which typed statements fit, so all are checked again.
    pub(crate) fn invalidate_statement(&self, sql: &str) {
        self.statements.remove(sql);
        self.invalidate_typed();
    }

    /// A typed statement met another version of its table: forget the typed statements and
    /// the catalog; the next call outside a transaction checks and prepares them again.
    pub(crate) fn invalidate_typed(&self) {
        self.typed.clear();
        self.catalog.clear();
    }

    /// Runs statements through the statement cache, outside a transaction.
    pub(crate) fn db(&self) -> Db<'_> {
        Db::Cached {
            handle: self,
            transaction: None,
        }
    }

    /// Runs statements inside a transaction whose "aborted" flag is `aborted`.
    pub(crate) fn tx_db<'a>(&'a self, aborted: &'a AtomicBool) -> Db<'a> {
        Db::Cached {
            handle: self,
            transaction: Some(aborted),
        }
    }
}

/// The client of a connection, replaced by a new one when a connection made from a URL is
/// lost.
#[derive(Debug)]
struct Slot {
    current: std::sync::RwLock<Arc<ClientHandle>>,
    /// How to connect again; `None` for a caller's client.
    reconnect: Option<ConnectOptions>,
    reconnecting: tokio::sync::Mutex<()>,
}

/// How many times a lost connection is re-established before the call fails, and the wait
/// before the first retry (doubled each time).
const RECONNECT_ATTEMPTS: u32 = 5;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// A cheap-to-clone handle on one PostgreSQL connection and its transaction gate.
///
/// Clones share the client, its prepared statements and the gate. Ordinary calls take the
/// gate's shared side and run concurrently (pipelined on the one connection); a transaction
/// takes it exclusively from `BEGIN` until `COMMIT`/`ROLLBACK` has finished, so no other call
/// sharing the gate ever runs inside it.
///
/// A connection made by [`connect`](Self::connect) (or any `connect*` of this crate) that
/// loses its server (restart, `pg_terminate_backend`, network) fails the calls in flight at
/// once, then connects again on the next call (up to 5 attempts, 100 ms backoff doubling)
/// and prepares its statements afresh. A connection built from a caller's `Client` reports
/// the loss ("connection closed") and leaves reconnecting to the caller.
#[derive(Clone)]
pub struct TokioPostgresConnection {
    slot: Arc<Slot>,
    gate: Arc<RwLock<()>>,
}

impl fmt::Debug for TokioPostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioPostgresConnection")
            .finish_non_exhaustive()
    }
}

impl TokioPostgresConnection {
    /// Wraps a client whose connection future the caller drives, with a fresh gate. No I/O.
    pub fn from_client(client: Client) -> Self {
        Self::from_parts(client, StatementMode::Prepared, None)
    }

    /// Like [`from_client`](Self::from_client), but every statement is sent unnamed with
    /// explicit parameter types (`query_typed`) instead of being prepared: for poolers such as
    /// PgBouncer in transaction mode. Still one round trip per call. No I/O.
    pub fn from_client_unprepared(client: Client) -> Self {
        Self::from_parts(client, StatementMode::Unprepared, None)
    }

    fn from_parts(client: Client, mode: StatementMode, reconnect: Option<ConnectOptions>) -> Self {
        Self {
            slot: Arc::new(Slot {
                current: std::sync::RwLock::new(Arc::new(ClientHandle::new(client, mode))),
                reconnect,
                reconnecting: tokio::sync::Mutex::new(()),
            }),
            gate: Arc::new(RwLock::new(())),
        }
    }

    /// Connects to `database_url` (a `postgres://` URL or libpq key/value string) and drives
    /// the connection on the current Tokio runtime.
    ///
    /// The string is split with tokio-postgres' own grammar for each form. Besides
    /// tokio-postgres' parameters it may set `sslmode` (`disable`, `allow`, `prefer` — the
    /// default —, `require`, `verify-ca`, `verify-full`), `sslrootcert` (a PEM file or
    /// `system`), `sslcert` and `sslkey` (a PEM client certificate and its key) and
    /// `statement_mode=unprepared` (see [`from_client_unprepared`](Self::from_client_unprepared));
    /// the crate's README lists them. A parameter given twice with different values, an
    /// unknown value or an unreadable certificate file is an error before anything is
    /// connected. Errors carry the server's SQLSTATE (e.g. `3D000` for a missing database) and
    /// never the URL or its password.
    pub async fn connect(database_url: &str) -> Result<Self, RustAuthError> {
        let options = ConnectOptions::parse(database_url)?;
        let client = establish(&options).await?;
        Ok(Self::from_parts(client, options.statements, Some(options)))
    }

    /// The same client with a new, independent gate (exists to show what mis-wiring does).
    #[doc(hidden)]
    pub fn duplicate_client_unshared_gate(connection: &Self) -> Self {
        Self {
            slot: Arc::clone(&connection.slot),
            gate: Arc::new(RwLock::new(())),
        }
    }

    /// The current client, connecting again first if a connection made from a URL was lost.
    pub(crate) async fn handle(&self) -> Result<Arc<ClientHandle>, RustAuthError> {
        let current = self.current();
        if !current.client.is_closed() {
            return Ok(current);
        }
        let Some(options) = &self.slot.reconnect else {
            // A caller's client: its calls fail with "connection closed".
            return Ok(current);
        };
        let _reconnecting = self.slot.reconnecting.lock().await;
        let current = self.current();
        if !current.client.is_closed() {
            return Ok(current);
        }
        let mut wait = RECONNECT_BACKOFF;
        let mut attempt = 1;
        loop {
            match establish(options).await {
                Ok(client) => {
                    let handle = Arc::new(ClientHandle::new(client, options.statements));
                    *self
                        .slot
                        .current
                        .write()
                        .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&handle);
                    return Ok(handle);
                }
                Err(failure) if attempt >= RECONNECT_ATTEMPTS || failure.permanent => {
                    return Err(adapter(format!(
                        "connection lost; reconnecting failed after {attempt} attempt(s): {}",
                        failure.error
                    )))
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                    attempt += 1;
                }
            }
        }
    }

    fn current(&self) -> Arc<ClientHandle> {
        Arc::clone(
            &self
                .slot
                .current
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// Forgets every prepared statement and the catalog (after a migration changed tables).
    pub(crate) fn clear_statements(&self) {
        self.current().invalidate();
    }

    /// How many generic statements this connection holds prepared.
    #[doc(hidden)]
    pub fn cached_statement_count(&self) -> usize {
        self.current().statements.len()
    }

    /// Takes the shared side of the gate: waits while a transaction is open.
    pub(crate) async fn shared(&self) -> Result<OwnedRwLockReadGuard<()>, RustAuthError> {
        self.refuse_reentry()?;
        Ok(Arc::clone(&self.gate).read_owned().await)
    }

    /// Takes the gate exclusively: waits until every other call has finished.
    pub(crate) async fn exclusive(&self) -> Result<OwnedRwLockWriteGuard<()>, RustAuthError> {
        self.refuse_reentry()?;
        Ok(Arc::clone(&self.gate).write_owned().await)
    }

    /// Runs `future` marked as the callback of a transaction holding this connection's gate.
    pub(crate) async fn inside_transaction<F: std::future::Future>(&self, future: F) -> F::Output {
        let mut gates = OPEN_TRANSACTION_GATES
            .try_with(Clone::clone)
            .unwrap_or_default();
        gates.push(self.gate_id());
        OPEN_TRANSACTION_GATES.scope(gates, future).await
    }

    fn gate_id(&self) -> usize {
        Arc::as_ptr(&self.gate) as usize
    }

    /// Waiting for the gate from inside the callback of a transaction that holds it would
    /// never end; say so instead (CONTRACT quirk Q16).
    fn refuse_reentry(&self) -> Result<(), RustAuthError> {
        let id = self.gate_id();
        if OPEN_TRANSACTION_GATES
            .try_with(|open| open.contains(&id))
            .unwrap_or(false)
        {
            return Err(adapter(
                "tokio-postgres adapter called from inside its own transaction callback; \
                 use the transaction adapter passed to the callback (waiting for the \
                 transaction to finish would deadlock)",
            ));
        }
        Ok(())
    }
}
