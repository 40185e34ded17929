//! `TokioPostgresConnection`: a set of live connections (one, or up to `max_connections`) and
//! the gates that keep ordinary calls out of someone else's open transaction.
//!
//! Each member of the set is one [`LiveConnection`] (its own client, statement caches,
//! catalog and reconnect) with a gate. Ordinary calls take the shared side of the gate of the
//! member with the fewest calls in flight that is not inside a transaction, and pipeline
//! there. A transaction takes one member's gate exclusively from `BEGIN` until
//! `COMMIT`/`ROLLBACK` has finished; the other members keep serving. Transactions may hold
//! every member, but while ordinary calls wait for one, transactions take at most all but one,
//! so the next member released goes to those calls (an ordinary call waits for at most one
//! transaction). Waiting has no time limit of its own (wrap a call in a timeout to bound it;
//! it is cancel-safe). Migrations take every gate.

use std::fmt;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use rustauth_core::error::RustAuthError;
use tokio::sync::{Notify, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio_postgres::Client;

use crate::connect::{establish, ConnectOptions, StatementMode};
use crate::error::adapter;
use crate::live::{ClientHandle, LiveConnection};

tokio::task_local! {
    /// The gates of the transactions whose callbacks the current task is running (a callback
    /// of one connection's transaction may open a transaction on another connection).
    static OPEN_TRANSACTION_GATES: Vec<usize>;
}

/// One member of the set: a live connection, its gate and its load.
#[derive(Debug)]
struct Member {
    live: Arc<LiveConnection>,
    gate: Arc<RwLock<()>>,
    /// Ordinary calls holding the shared side of the gate.
    in_flight: AtomicUsize,
    /// Taken (or being taken) by a transaction or a migration.
    in_transaction: AtomicBool,
}

impl Member {
    fn new(live: Arc<LiveConnection>) -> Arc<Self> {
        Arc::new(Self {
            live,
            gate: Arc::new(RwLock::new(())),
            in_flight: AtomicUsize::new(0),
            in_transaction: AtomicBool::new(false),
        })
    }

    fn id(&self) -> usize {
        Arc::as_ptr(&self.gate) as usize
    }
}

#[derive(Debug)]
struct Set {
    members: Vec<Arc<Member>>,
    /// Signalled whenever a member leaves a transaction.
    released: Notify,
    /// Transactions open (counted against [`Set::transaction_limit`]).
    transactions: AtomicUsize,
    /// Ordinary calls waiting because every member is inside a transaction.
    waiting: AtomicUsize,
}

impl Set {
    /// How many transactions may hold members at once: every member, unless ordinary calls
    /// are waiting for one, in which case all but one (with one member: that one), so the
    /// next member a transaction releases goes to the waiting calls.
    fn transaction_limit(&self) -> usize {
        let members = self.members.len();
        if self.waiting.load(Ordering::SeqCst) > 0 {
            members.saturating_sub(1).max(1)
        } else {
            members
        }
    }
}

/// Counts an ordinary call as waiting for a member while it lives.
struct Waiting<'a>(&'a Set);

impl<'a> Waiting<'a> {
    fn new(set: &'a Set) -> Self {
        set.waiting.fetch_add(1, Ordering::SeqCst);
        Self(set)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
        // Transactions held back for this call may go on.
        self.0.released.notify_waiters();
    }
}

/// A cheap-to-clone handle on one PostgreSQL connection (or a set of them) and its gates.
///
/// Clones share the clients, their prepared statements and the gates. Ordinary calls run
/// concurrently, pipelined on a connection; a transaction holds one connection exclusively
/// from `BEGIN` until `COMMIT`/`ROLLBACK` has finished, so no other call ever runs inside it.
///
/// Made with [`connect`](Self::connect) from a string carrying `max_connections=N` (or
/// through [`TokioPostgresStoresBuilder::max_connections`](crate::TokioPostgresStoresBuilder::max_connections)),
/// the handle opens N connections at once: ordinary calls go to the one with the fewest
/// calls in flight outside a transaction, so they never wait behind a transaction while
/// fewer transactions than connections are open. Without it, and with
/// [`from_client`](Self::from_client), there is one connection, as in 0.3.2.
///
/// A connection made by `connect*` that loses its server (restart, `pg_terminate_backend`,
/// network) fails the calls in flight on it at once, then connects again on its next call
/// (up to 5 attempts, 100 ms backoff doubling) and prepares its statements afresh; the other
/// connections of the set are not affected. A connection built from a caller's `Client`
/// reports the loss ("connection closed") and leaves reconnecting to the caller.
#[derive(Clone)]
pub struct TokioPostgresConnection {
    set: Arc<Set>,
}

impl fmt::Debug for TokioPostgresConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioPostgresConnection")
            .finish_non_exhaustive()
    }
}

/// The shared side of one member's gate, for one ordinary call.
pub(crate) struct Shared {
    member: Arc<Member>,
    _gate: OwnedRwLockReadGuard<()>,
}

impl Shared {
    /// The shared side of `member`'s gate, unless a transaction holds it.
    fn try_take(member: &Arc<Member>) -> Option<Self> {
        let gate = Arc::clone(&member.gate).try_read_owned().ok()?;
        member.in_flight.fetch_add(1, Ordering::SeqCst);
        Some(Self {
            member: Arc::clone(member),
            _gate: gate,
        })
    }

    /// The member's current client, reconnecting first if it was lost.
    pub(crate) async fn handle(&self) -> Result<Arc<ClientHandle>, RustAuthError> {
        self.member.live.handle().await
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.member.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One member's gate held exclusively (a transaction or a migration). Dropping it releases
/// the member for other calls.
pub(crate) struct Exclusive {
    member: Arc<Member>,
    set: Arc<Set>,
    gate: Option<OwnedRwLockWriteGuard<()>>,
    /// Counted against the set's transaction limit (migrations are not).
    counted: bool,
}

impl Exclusive {
    /// The member's current client, reconnecting first if it was lost.
    pub(crate) async fn handle(&self) -> Result<Arc<ClientHandle>, RustAuthError> {
        self.member.live.handle().await
    }

    /// Waits until every ordinary call on the member has finished.
    async fn lock(mut self) -> Self {
        self.gate = Some(Arc::clone(&self.member.gate).write_owned().await);
        self
    }
}

impl Drop for Exclusive {
    fn drop(&mut self) {
        self.gate = None;
        self.member.in_transaction.store(false, Ordering::SeqCst);
        if self.counted {
            self.set.transactions.fetch_sub(1, Ordering::SeqCst);
        }
        self.set.released.notify_waiters();
    }
}

impl TokioPostgresConnection {
    /// Wraps a client whose connection future the caller drives, with a fresh gate. No I/O.
    pub fn from_client(client: Client) -> Self {
        Self::from_live(vec![Arc::new(LiveConnection::new(
            client,
            StatementMode::Prepared,
            None,
        ))])
    }

    /// Like [`from_client`](Self::from_client), but every statement is sent unnamed with
    /// explicit parameter types (`query_typed`) instead of being prepared: for poolers such as
    /// PgBouncer in transaction mode. Still one round trip per call. No I/O.
    pub fn from_client_unprepared(client: Client) -> Self {
        Self::from_live(vec![Arc::new(LiveConnection::new(
            client,
            StatementMode::Unprepared,
            None,
        ))])
    }

    fn from_live(live: Vec<Arc<LiveConnection>>) -> Self {
        Self {
            set: Arc::new(Set {
                members: live.into_iter().map(Member::new).collect(),
                released: Notify::new(),
                transactions: AtomicUsize::new(0),
                waiting: AtomicUsize::new(0),
            }),
        }
    }

    /// Connects to `database_url` (a `postgres://` URL or libpq key/value string) and drives
    /// the connection(s) on the current Tokio runtime.
    ///
    /// Besides tokio-postgres' parameters the string may set `sslmode`, `sslrootcert`,
    /// `sslcert`/`sslkey`, `statement_mode=unprepared` (see
    /// [`from_client_unprepared`](Self::from_client_unprepared)) and `max_connections=N`
    /// (default 1; all N are opened now). Errors carry the server's SQLSTATE (e.g. `3D000`
    /// for a missing database) and never the string or its password.
    pub async fn connect(database_url: &str) -> Result<Self, RustAuthError> {
        Self::connect_with(database_url, None).await
    }

    /// [`connect`](Self::connect), with `max_connections` overriding the string's.
    pub(crate) async fn connect_with(
        database_url: &str,
        max_connections: Option<usize>,
    ) -> Result<Self, RustAuthError> {
        let options = Arc::new(ConnectOptions::parse(database_url)?);
        let count = max_connections.unwrap_or(options.max_connections).max(1);
        let clients =
            futures_util::future::try_join_all((0..count).map(|_| establish(&options, false)))
                .await?;
        Ok(Self::from_live(
            clients
                .into_iter()
                .map(|client| {
                    Arc::new(LiveConnection::new(
                        client,
                        options.statements,
                        Some(Arc::clone(&options)),
                    ))
                })
                .collect(),
        ))
    }

    /// The same clients with new, independent gates (exists to show what mis-wiring does).
    #[doc(hidden)]
    pub fn duplicate_client_unshared_gate(connection: &Self) -> Self {
        Self::from_live(
            connection
                .set
                .members
                .iter()
                .map(|member| Arc::clone(&member.live))
                .collect(),
        )
    }

    /// The current client of every member (reconnecting lost ones), e.g. to warm them.
    pub(crate) async fn handles(&self) -> Result<Vec<Arc<ClientHandle>>, RustAuthError> {
        futures_util::future::try_join_all(self.set.members.iter().map(|m| m.live.handle())).await
    }

    /// Forgets every prepared statement and the catalog (after a migration changed tables).
    pub(crate) fn clear_statements(&self) {
        for member in &self.set.members {
            member.live.current().invalidate();
        }
    }

    /// How many generic statements this connection holds prepared (all members).
    #[doc(hidden)]
    pub fn cached_statement_count(&self) -> usize {
        self.set
            .members
            .iter()
            .map(|member| member.live.current().statements.len())
            .sum()
    }

    /// The shared side of a member's gate: the member with the fewest calls in flight that is
    /// not inside a transaction; waits while every member is.
    pub(crate) async fn shared(&self) -> Result<Shared, RustAuthError> {
        let excluded = self.excluded()?;
        // The common case first: the least busy free member (the one the loop below would try
        // first) takes the call, with no waiter registered on `released` and no list built.
        // Should its gate be taken, the loop decides as always.
        let least_busy = self
            .eligible(&excluded, true)
            .min_by_key(|member| member.in_flight.load(Ordering::SeqCst));
        if let Some(shared) = least_busy.and_then(Shared::try_take) {
            return Ok(shared);
        }
        let mut waiting = None;
        loop {
            let mut released = pin!(self.set.released.notified());
            released.as_mut().enable();
            for member in self.least_busy_first(&excluded, true) {
                // Fails only if a transaction took the member a moment ago: try the next.
                if let Some(shared) = Shared::try_take(member) {
                    return Ok(shared);
                }
            }
            // Every member is inside a transaction: say so, so that the next member released
            // is not taken by another transaction before this call.
            waiting.get_or_insert_with(|| Waiting::new(&self.set));
            released.await;
        }
    }

    /// One member's gate, exclusively: the member with the fewest calls in flight that is not
    /// inside a transaction, once its calls have finished. Waits while the set's transaction
    /// limit is reached (every member but one busy with a transaction) or no member is free.
    pub(crate) async fn exclusive(&self) -> Result<Exclusive, RustAuthError> {
        let excluded = self.excluded()?;
        loop {
            let mut released = pin!(self.set.released.notified());
            released.as_mut().enable();
            // A transaction opened from inside another one's callback cannot wait for it to
            // end: it may take any member.
            let limit = if excluded.is_empty() {
                self.set.transaction_limit()
            } else {
                self.set.members.len()
            };
            let counted = self
                .set
                .transactions
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |open| {
                    (open < limit).then_some(open + 1)
                })
                .is_ok();
            if !counted {
                released.await;
                continue;
            }
            for member in self.least_busy_first(&excluded, false) {
                if let Some(mut taken) = self.take(member) {
                    taken.counted = true;
                    return Ok(taken.lock().await);
                }
            }
            self.set.transactions.fetch_sub(1, Ordering::SeqCst);
            released.await;
        }
    }

    /// Every member's gate, exclusively, in a fixed order (migrations run alone).
    pub(crate) async fn exclusive_all(&self) -> Result<Vec<Exclusive>, RustAuthError> {
        self.excluded()?;
        let mut taken = Vec::with_capacity(self.set.members.len());
        for member in &self.set.members {
            loop {
                let mut released = pin!(self.set.released.notified());
                released.as_mut().enable();
                if let Some(exclusive) = self.take(member) {
                    taken.push(exclusive.lock().await);
                    break;
                }
                released.await;
            }
        }
        Ok(taken)
    }

    /// Marks `member` as taken by a transaction, if it is not already.
    fn take(&self, member: &Arc<Member>) -> Option<Exclusive> {
        member
            .in_transaction
            .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()?;
        Some(Exclusive {
            member: Arc::clone(member),
            set: Arc::clone(&self.set),
            gate: None,
            counted: false,
        })
    }

    /// Runs `future` marked as the callback of a transaction holding `exclusive`.
    pub(crate) async fn inside_transaction<F: std::future::Future>(
        exclusive: &Exclusive,
        future: F,
    ) -> F::Output {
        let mut gates = OPEN_TRANSACTION_GATES
            .try_with(Clone::clone)
            .unwrap_or_default();
        gates.push(exclusive.member.id());
        OPEN_TRANSACTION_GATES.scope(gates, future).await
    }

    /// The members a call may take: not `excluded` and, when `free`, not inside a transaction.
    fn eligible<'a>(
        &'a self,
        excluded: &'a [usize],
        free: bool,
    ) -> impl Iterator<Item = &'a Arc<Member>> + 'a {
        self.set.members.iter().filter(move |member| {
            let busy = free && member.in_transaction.load(Ordering::SeqCst);
            !busy && !excluded.contains(&member.id())
        })
    }

    /// [`eligible`](Self::eligible), the fewest calls in flight first.
    fn least_busy_first<'a>(&'a self, excluded: &'a [usize], free: bool) -> Vec<&'a Arc<Member>> {
        let mut members = self.eligible(excluded, free).collect::<Vec<_>>();
        members.sort_by_key(|member| member.in_flight.load(Ordering::SeqCst));
        members
    }

    /// The members this task's open transactions hold. Waiting for them from inside their
    /// own callback would never end: when they are all of the set's members, say so instead
    /// (quirk Q16 in UPSTREAM.md).
    fn excluded(&self) -> Result<Vec<usize>, RustAuthError> {
        let open = OPEN_TRANSACTION_GATES
            .try_with(Clone::clone)
            .unwrap_or_default();
        let excluded = self
            .set
            .members
            .iter()
            .map(|member| member.id())
            .filter(|id| open.contains(id))
            .collect::<Vec<_>>();
        if !excluded.is_empty() && excluded.len() == self.set.members.len() {
            return Err(adapter(
                "tokio-postgres adapter called from inside its own transaction callback; \
                 use the transaction adapter passed to the callback (waiting for the \
                 transaction to finish would deadlock)",
            ));
        }
        Ok(excluded)
    }
}
