//! `TokioPostgresConnection`: one tokio-postgres client, its prepared statements, and the gate
//! that keeps ordinary calls out of someone else's open transaction.

use std::fmt;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use rustauth_core::error::RustAuthError;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio_postgres::{Client, NoTls};

use crate::error::{adapter, postgres_error};
use crate::executor::Db;
use crate::prepared::TypedStatements;
use crate::statements::{StatementCache, DEFAULT_CAPACITY};

tokio::task_local! {
    /// The gates of the transactions whose callbacks the current task is running (a callback
    /// of one connection's transaction may open a transaction on another connection).
    static OPEN_TRANSACTION_GATES: Vec<usize>;
}

/// A client plus the statements prepared on its server connection.
#[derive(Debug)]
pub(crate) struct ClientHandle {
    pub(crate) client: Client,
    /// Generic-path statements, by SQL text.
    pub(crate) statements: StatementCache,
    /// Typed (generated) statements, by table group.
    pub(crate) typed: TypedStatements,
}

impl ClientHandle {
    fn new(client: Client) -> Self {
        Self {
            client,
            statements: StatementCache::new(DEFAULT_CAPACITY),
            typed: TypedStatements::default(),
        }
    }
}

/// A cheap-to-clone handle on one PostgreSQL connection and its transaction gate.
///
/// Clones share the client, its prepared statements and the gate. Ordinary calls take the
/// gate's shared side and run concurrently (pipelined on the one connection); a transaction
/// takes it exclusively from `BEGIN` until `COMMIT`/`ROLLBACK` has finished, so no other call
/// sharing the gate ever runs inside it.
#[derive(Clone)]
pub struct TokioPostgresConnection {
    handle: Arc<ClientHandle>,
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
        Self {
            handle: Arc::new(ClientHandle::new(client)),
            gate: Arc::new(RwLock::new(())),
        }
    }

    /// Connects to `database_url` (a libpq-style URL or key/value string) without TLS and
    /// drives the connection on the current Tokio runtime.
    ///
    /// Errors carry the server's SQLSTATE (e.g. `3D000` for a missing database) and never
    /// the URL or its password.
    pub async fn connect(database_url: &str) -> Result<Self, RustAuthError> {
        let (client, connection) = tokio_postgres::connect(database_url, NoTls)
            .await
            .map_err(postgres_error)?;
        tokio::spawn(async move {
            // The connection ends when the client is dropped or the server goes away; calls
            // made after that fail with tokio-postgres' "connection closed" error.
            let _ = connection.await;
        });
        Ok(Self::from_client(client))
    }

    /// The same client with a new, independent gate (exists to show what mis-wiring does).
    #[doc(hidden)]
    pub fn duplicate_client_unshared_gate(connection: &Self) -> Self {
        Self {
            handle: Arc::clone(&connection.handle),
            gate: Arc::new(RwLock::new(())),
        }
    }

    /// The underlying tokio-postgres client.
    pub(crate) fn client(&self) -> &Client {
        &self.handle.client
    }

    /// The client with its statement cache, for calls outside a transaction.
    pub(crate) fn db(&self) -> Db<'_> {
        Db::Cached {
            handle: &self.handle,
            transaction: None,
        }
    }

    /// The client with its statement cache, for calls inside a transaction whose "aborted"
    /// flag is `aborted`.
    pub(crate) fn tx_db<'a>(&'a self, aborted: &'a AtomicBool) -> Db<'a> {
        Db::Cached {
            handle: &self.handle,
            transaction: Some(aborted),
        }
    }

    /// Forgets every prepared statement (after a migration changed tables).
    pub(crate) fn clear_statements(&self) {
        self.handle.statements.clear();
        self.handle.typed.clear();
    }

    /// How many statements this connection holds prepared.
    #[doc(hidden)]
    pub fn cached_statement_count(&self) -> usize {
        self.handle.statements.len()
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
