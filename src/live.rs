//! One live connection: the state of one server connection ([`ClientHandle`]: the client,
//! how statements reach the server, the live catalog, both statement caches) and how it is
//! re-established after a loss ([`LiveConnection`]). It knows nothing of how statements run
//! (`runner.rs` takes a handle) nor of who holds it (`connection.rs` leases it).

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::catalog::Catalog;
use crate::connect::{establish, ConnectOptions, StatementMode};
use crate::error::{ConnectError, Error};
use crate::lru::{TextLru, DEFAULT_CAPACITY};
use crate::trace::{millis, TARGET};
use crate::typed::statements::{TableSet, TypedStatements};

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
    pub(crate) statements: TextLru,
    /// Typed (generated) statements, by table group.
    pub(crate) typed: TypedStatements,
    /// Set when a write met a read-only server.
    read_only: AtomicBool,
}

impl ClientHandle {
    pub(crate) fn new(client: Client, mode: StatementMode) -> Self {
        Self {
            client,
            mode,
            catalog: Catalog::default(),
            statements: TextLru::new(DEFAULT_CAPACITY),
            typed: TypedStatements::default(),
            read_only: AtomicBool::new(false),
        }
    }

    /// Whether new calls may use this connection: not closed, and not found on a read-only
    /// server.
    pub(crate) fn usable(&self) -> bool {
        !self.client.is_closed() && !self.wrong_server()
    }

    /// Whether a statement met a read-only server (SQLSTATE 25006) on this connection.
    pub(crate) fn wrong_server(&self) -> bool {
        self.read_only.load(Ordering::SeqCst)
    }

    /// This connection met a read-only server (a standby, or a primary demoted under it):
    /// new calls connect again, to a writable server.
    pub(crate) fn mark_read_only(&self) {
        if !self.read_only.swap(true, Ordering::SeqCst) {
            tracing::warn!(
                target: TARGET,
                "connection found on a read-only server (SQLSTATE 25006): the next call \
                 connects again, to a writable server"
            );
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

    /// Prepares the typed statements of `wanted` on this connection (prepared mode only).
    pub(crate) async fn prepare_typed(&self, wanted: TableSet) {
        if self.mode == StatementMode::Prepared {
            self.typed
                .get(&self.client, &self.catalog, wanted, true)
                .await;
        }
    }
}

/// After a failed reconnect cycle, calls fail at once with its error for this long before the
/// next cycle is tried; longer when the failure would repeat (bad credentials, a missing
/// database, a rejected certificate).
const RETRY_AFTER: Duration = Duration::from_millis(200);
const RETRY_AFTER_PERMANENT: Duration = Duration::from_secs(5);

/// The outcome of the last failed reconnect cycle.
#[derive(Debug)]
struct Failed {
    at: Instant,
    wait: Duration,
    error: Arc<ConnectError>,
}

/// One server connection as the adapter sees it over time: its current [`ClientHandle`],
/// replaced by a new one when a connection made from a connection string is lost (or left
/// on a read-only server).
///
/// Reconnecting is one cycle over the string's hosts (each attempt bounded by
/// `connect_timeout`) that every waiting caller shares: callers queued behind it get its
/// outcome, and after a failed cycle calls fail at once with the same error until the next
/// cycle is due ([`RETRY_AFTER`]). So during an outage a call answers within one cycle plus a
/// moment, however many callers there are.
#[derive(Debug)]
pub(crate) struct LiveConnection {
    current: std::sync::RwLock<Arc<ClientHandle>>,
    /// How to connect again; `None` for a caller's client.
    reconnect: Option<Arc<ConnectOptions>>,
    /// Held during a reconnect cycle; remembers the last failed one.
    reconnecting: tokio::sync::Mutex<Option<Failed>>,
    /// The typed statement groups prepared when the connection was opened ([`TableSet`]'s
    /// bits): a connection made again prepares them too, before its first call.
    typed: AtomicU8,
}

impl LiveConnection {
    /// A connection on `client`; `reconnect` says how to replace it once lost.
    pub(crate) fn new(
        client: Client,
        mode: StatementMode,
        reconnect: Option<Arc<ConnectOptions>>,
    ) -> Self {
        Self {
            current: std::sync::RwLock::new(Arc::new(ClientHandle::new(client, mode))),
            reconnect,
            reconnecting: tokio::sync::Mutex::new(None),
            typed: AtomicU8::new(0),
        }
    }

    /// Prepares the typed statements of `wanted` now, and again whenever the connection is
    /// made again.
    pub(crate) async fn warm(&self, wanted: TableSet) {
        let bits = self.typed.fetch_or(wanted.bits(), Ordering::SeqCst) | wanted.bits();
        self.current()
            .prepare_typed(TableSet::from_bits(bits))
            .await;
    }

    /// The current client, connecting again first if a connection made from a string was
    /// lost or met a read-only server.
    pub(crate) async fn handle(&self) -> Result<Arc<ClientHandle>, Error> {
        let current = self.current();
        if current.usable() {
            return Ok(current);
        }
        let Some(options) = &self.reconnect else {
            // A caller's client: its calls fail with "connection closed".
            return Ok(current);
        };
        // Boxed: connecting and preparing is a future of kilobytes that would otherwise size
        // every call's future (and be copied with it several times per call), for a path
        // taken once per lost connection.
        Box::pin(self.reconnect(options)).await
    }

    /// The slow path of [`handle`](Self::handle): one reconnect cycle shared by every waiting
    /// caller, or the last failed cycle's error while it is fresh.
    async fn reconnect(&self, options: &Arc<ConnectOptions>) -> Result<Arc<ClientHandle>, Error> {
        let mut last = self.reconnecting.lock().await;
        let current = self.current();
        if current.usable() {
            return Ok(current);
        }
        if let Some(failed) = last.as_ref() {
            if failed.at.elapsed() < failed.wait {
                return Err(Error::Reconnect(Arc::clone(&failed.error)));
            }
        }
        let started = Instant::now();
        let read_write = current.wrong_server();
        if last.is_none() {
            tracing::warn!(
                target: TARGET,
                why = if read_write { "read-only server" } else { "connection closed" },
                "connection unusable; connecting again"
            );
        }
        match establish(options, read_write).await {
            Ok(client) => {
                let handle = Arc::new(ClientHandle::new(client, options.statements));
                handle
                    .prepare_typed(TableSet::from_bits(self.typed.load(Ordering::SeqCst)))
                    .await;
                tracing::info!(
                    target: TARGET,
                    duration_ms = millis(started.elapsed()),
                    after_failures = last.is_some(),
                    for_writes = read_write,
                    "connection re-established"
                );
                *last = None;
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&handle);
                Ok(handle)
            }
            Err(failure) => {
                let permanent = failure.permanent();
                let wait = if permanent {
                    RETRY_AFTER_PERMANENT
                } else {
                    RETRY_AFTER
                };
                tracing::warn!(
                    target: TARGET,
                    duration_ms = millis(started.elapsed()),
                    fail_fast_ms = millis(wait),
                    permanent,
                    error = %failure,
                    "reconnecting failed; calls fail at once until the next attempt is due"
                );
                let failure = Arc::new(failure);
                *last = Some(Failed {
                    at: Instant::now(),
                    wait,
                    error: Arc::clone(&failure),
                });
                Err(Error::Reconnect(failure))
            }
        }
    }

    /// The current handle, without reconnecting.
    pub(crate) fn current(&self) -> Arc<ClientHandle> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}
