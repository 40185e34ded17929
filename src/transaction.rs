//! Transactions: a lease on one member of the set, BEGIN/COMMIT/ROLLBACK through the runner,
//! and rollback when the caller's future is dropped half-way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rustauth_core::db::{
    AdapterCapabilities, AdapterFuture, Count, Create, DbAdapter, DbRecord, DbSchema, Delete,
    DeleteMany, FindMany, FindOne, TransactionCallback, Update, UpdateMany,
};
use rustauth_core::error::RustAuthError;

use crate::call::{Call, CallState};
use crate::connection::{Lease, TokioPostgresConnection};
use crate::error::adapter;
use crate::live::ClientHandle;
use crate::runner::{Control, Db};
use crate::trace::{self, millis};

/// Identifier the transaction adapter reports.
const TX_ADAPTER_ID: &str = "tokio-postgres-tx";

/// Runs `callback` inside one database transaction on `connection`.
///
/// The lease is held exclusively from before `BEGIN` until `COMMIT` or `ROLLBACK` has
/// finished. `Ok` commits (a failed COMMIT is rolled back and its error returned); `Err` rolls
/// back and returns the callback's error unchanged. If this future is dropped half-way (a
/// timeout, a cancelled request, a panic in the callback), a ROLLBACK is sent on the same
/// connection and the lease stays held until it has completed, so no later call can see or
/// commit the abandoned writes.
pub(crate) async fn run(
    connection: &TokioPostgresConnection,
    schema: &Arc<DbSchema>,
    state: &Arc<CallState>,
    callback: TransactionCallback<'_>,
) -> Result<(), RustAuthError> {
    let lease = connection.transaction().await?;
    // The whole transaction runs on this client, even if the connection is replaced meanwhile.
    let handle = lease.handle().await?;
    let scope = lease.callback_scope();
    let mut guard = RollbackOnDrop::new(Arc::clone(&handle), lease);
    let aborted = Arc::new(AtomicBool::new(false));
    let db = Db::in_transaction(&handle, &aborted);
    let result = match db.control(Control::Begin).await {
        // Nothing ran: whatever BEGIN left (if anything) is rolled back below.
        Err(error) => Err(error.into()),
        Ok(()) => {
            let tx = TransactionAdapter {
                handle: Arc::clone(&handle),
                schema: Arc::clone(schema),
                state: Arc::clone(state),
                aborted: Arc::clone(&aborted),
            };
            scope.run(callback(Box::new(tx))).await
        }
    };
    let result = match result {
        // A statement failed inside and the callback went on: Postgres has already aborted the
        // transaction and would turn COMMIT into a silent ROLLBACK. Say so instead of Ok.
        Ok(()) if aborted.load(Ordering::SeqCst) => {
            let _ = db.control(Control::Rollback).await;
            Err(adapter(
                "transaction rolled back: a statement inside it failed and the callback \
                 returned Ok anyway (Postgres aborts a transaction at its first error)",
            ))
        }
        Ok(()) => match db.control(Control::Commit).await {
            Ok(()) => Ok(()),
            Err(error) => {
                let _ = db.control(Control::Rollback).await;
                Err(error.into())
            }
        },
        Err(error) => {
            // The callback's (or BEGIN's) error is the one that matters; a failed ROLLBACK
            // (e.g. the connection is gone) leaves nothing committed either way.
            let _ = db.control(Control::Rollback).await;
            Err(error)
        }
    };
    guard.finish();
    result
}

/// Sends ROLLBACK (and only then releases the lease) if a transaction is abandoned.
pub(crate) struct RollbackOnDrop {
    handle: Arc<ClientHandle>,
    lease: Option<Lease>,
    runtime: Option<tokio::runtime::Handle>,
}

impl RollbackOnDrop {
    /// Holds `lease` until [`finish`](Self::finish), or until a ROLLBACK sent on drop completes.
    pub(crate) fn new(handle: Arc<ClientHandle>, lease: Lease) -> Self {
        Self {
            handle,
            lease: Some(lease),
            runtime: tokio::runtime::Handle::try_current().ok(),
        }
    }

    /// The transaction ended normally: release the lease now.
    pub(crate) fn finish(&mut self) {
        self.lease = None;
    }
}

impl Drop for RollbackOnDrop {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        let handle = Arc::clone(&self.handle);
        let rollback = async move {
            let started = Instant::now();
            // Queued behind whatever the abandoned future left in flight on this connection.
            let outcome = Db::on(&handle).control(Control::Rollback).await;
            drop(lease);
            match outcome {
                Ok(()) => tracing::info!(
                    target: trace::TARGET,
                    duration_ms = millis(started.elapsed()),
                    "abandoned transaction rolled back"
                ),
                // The connection is gone, and the server ended the transaction with it.
                Err(error) => tracing::warn!(
                    target: trace::TARGET,
                    error = %error.kind(),
                    "abandoned transaction: ROLLBACK failed (a lost connection ends it too)"
                ),
            }
        };
        match self
            .runtime
            .clone()
            .or_else(|| tokio::runtime::Handle::try_current().ok())
        {
            Some(runtime) => {
                runtime.spawn(rollback);
            }
            None => tracing::error!(
                target: trace::TARGET,
                "abandoned transaction could not be rolled back: no Tokio runtime to send \
                 ROLLBACK on"
            ),
        }
    }
}

/// The adapter a transaction callback receives: same client and schema, no gate (the
/// transaction already holds it exclusively), no nested transactions.
pub(crate) struct TransactionAdapter {
    handle: Arc<ClientHandle>,
    schema: Arc<DbSchema>,
    state: Arc<CallState>,
    /// Set when a statement of this transaction failed on the server.
    aborted: Arc<AtomicBool>,
}

impl TransactionAdapter {
    fn call(&self) -> Call<'_> {
        Call {
            db: Db::in_transaction(&self.handle, &self.aborted),
            schema: &self.schema,
            state: &self.state,
        }
    }
}

impl DbAdapter for TransactionAdapter {
    fn id(&self) -> &str {
        TX_ADAPTER_ID
    }

    fn capabilities(&self) -> AdapterCapabilities {
        crate::adapter::capabilities(TX_ADAPTER_ID, "tokio-postgres transaction")
    }

    crate::call::crud_methods!(|this| {} => this.call());

    fn transaction<'a>(&'a self, _callback: TransactionCallback<'a>) -> AdapterFuture<'a, ()> {
        Box::pin(async {
            Err(adapter(
                "nested transactions are not supported by the tokio-postgres adapter \
                 (no savepoints); run the work in the current transaction",
            ))
        })
    }
}
