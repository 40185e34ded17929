//! One live connection: the state of one server connection ([`ClientHandle`]: the client,
//! how statements reach the server, the live catalog, both statement caches) and how it is
//! re-established after a loss ([`LiveConnection`]).

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use rustauth_core::error::RustAuthError;
use tokio_postgres::Client;

use crate::catalog::Catalog;
use crate::connect::{establish, ConnectOptions, StatementMode};
use crate::error::adapter;
use crate::prepared::TypedStatements;
use crate::runner::Db;
use crate::statements::{StatementCache, DEFAULT_CAPACITY};

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
    pub(crate) fn new(client: Client, mode: StatementMode) -> Self {
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

/// How many times a lost connection is re-established before the call fails, and the wait
/// before the first retry (doubled each time).
const RECONNECT_ATTEMPTS: u32 = 5;
const RECONNECT_BACKOFF: Duration = Duration::from_millis(100);

/// One server connection as the adapter sees it over time: its current [`ClientHandle`],
/// replaced by a new one when a connection made from a connection string is lost.
#[derive(Debug)]
pub(crate) struct LiveConnection {
    current: std::sync::RwLock<Arc<ClientHandle>>,
    /// How to connect again; `None` for a caller's client.
    reconnect: Option<Arc<ConnectOptions>>,
    reconnecting: tokio::sync::Mutex<()>,
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
            reconnecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The current client, connecting again first if a connection made from a string was
    /// lost.
    pub(crate) async fn handle(&self) -> Result<Arc<ClientHandle>, RustAuthError> {
        let current = self.current();
        if !current.client.is_closed() {
            return Ok(current);
        }
        let Some(options) = &self.reconnect else {
            // A caller's client: its calls fail with "connection closed".
            return Ok(current);
        };
        let _reconnecting = self.reconnecting.lock().await;
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
                    *self.current.write().unwrap_or_else(PoisonError::into_inner) =
                        Arc::clone(&handle);
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

    /// The current handle, without reconnecting.
    pub(crate) fn current(&self) -> Arc<ClientHandle> {
        Arc::clone(&self.current.read().unwrap_or_else(PoisonError::into_inner))
    }
}
