//! `TokioPostgresConnection`: a set of live connections (one, or up to `max_connections`) and
//! the [`Lease`]s that hand them out.
//!
//! Who owns what:
//! - the set owns its members, each one [`LiveConnection`] (its client, statement caches,
//!   catalog and reconnect) with a gate, and the claims: which members a transaction or a
//!   migration holds, and who is waiting for one;
//! - a [`Lease`] owns one member from acquisition to release, for one ordinary call (the
//!   shared side of the gate: calls pipeline on a member), one transaction or one migration
//!   (the gate held exclusively). Dropping the lease releases the member on every path:
//!   success, error, cancellation, panic. A transaction's lease is kept by its rollback guard
//!   (`transaction.rs`) until `COMMIT` or `ROLLBACK` has finished;
//! - the live connection knows nothing of leases or of how statements run (`runner.rs`).
//!
//! The rules, all decided under one lock (the claims) so that they hold exactly:
//! - an ordinary call takes the member with the fewest calls in flight that no transaction
//!   holds; when every member is held, it waits. In a set of three or more, while two or more
//!   members are free, the free member with the fewest calls in flight is the standby: calls
//!   go to the others, so its calls in flight finish and the next transaction takes it
//!   without waiting for them;
//! - a transaction takes the least busy member no transaction holds (the standby, when there
//!   is one), then waits for that member's calls in flight to finish. While ordinary calls
//!   wait, transactions may hold at most all members but one (with one member: that one), so
//!   the next member released goes to the calls, even to a call that started waiting after a
//!   transaction did;
//! - a migration takes every member at once or none (it never holds some while waiting for
//!   others that a transaction may need); while one waits, new transactions wait behind it;
//! - who is woken: a member released by a transaction or a migration wakes every waiting call
//!   and migration, but one waiting transaction, the longest waiting (only one can take the
//!   member; waking them all made each release cost a wake-up per waiting transaction, and the
//!   winner a lottery). A woken transaction that cannot take the member leaves it to the calls
//!   or the migration it was kept for, which were woken too; a call or migration that stops
//!   waiting wakes every transaction, as the caps it lifts may let several go on. tokio's
//!   `Notify` hands a transaction's wake-up to the next one if the woken one is gone;
//! - every wait is bounded by `acquire_timeout` (default 30 s): past it the call fails with an
//!   error saying what it waited for, how long, and how the set was held;
//! - inside the callback of a transaction on this set nothing on this set waits: an outer call
//!   takes a member that is free now or is refused at once (waiting could be waiting for the
//!   very transaction the callback belongs to), and a migration is refused at once. A task
//!   spawned from a callback is not inside it (it may outlive it), so it waits like any
//!   caller, within `acquire_timeout`; so does a call on another set (another adapter's
//!   connections) from a callback.

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use rustauth_core::error::RustAuthError;
use tokio::sync::{Notify, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio_postgres::Client;

use crate::connect::{establish, ConnectOptions, StatementMode};
use crate::error::{AcquireError, Error};
use crate::live::{ClientHandle, LiveConnection};
use crate::trace::{millis, TARGET};

/// How long a call may wait for a member of the set when nothing else says
/// (`acquire_timeout`), as in sqlx.
pub(crate) const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// From this many members on, the free member with the fewest calls in flight is kept for
/// the next transaction (see the module docs). With two, keeping one from calls would halve
/// what calls pipeline on; with one, there is nothing to keep.
const STANDBY_FROM: usize = 3;

/// A wait for a member longer than this is reported (a `tracing` event), even when it ends well.
const LONG_WAIT: Duration = Duration::from_secs(1);

tokio::task_local! {
    /// The members held by the transactions whose callbacks the current task is running.
    static OPEN_TRANSACTIONS: Vec<usize>;
}

/// One member of the set: a live connection, its gate and its load.
#[derive(Debug)]
struct Member {
    live: Arc<LiveConnection>,
    gate: Arc<RwLock<()>>,
    /// Ordinary calls holding the shared side of the gate.
    in_flight: AtomicUsize,
}

impl Member {
    /// An identity unique among every member of every set while it lives.
    fn id(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }
}

/// What a caller takes members for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Call,
    Transaction,
    Migration,
}

impl Purpose {
    fn name(self) -> &'static str {
        match self {
            Self::Call => "call",
            Self::Transaction => "transaction",
            Self::Migration => "migration",
        }
    }
}

/// Which members are held exclusively, and who waits: changed only under the set's lock.
#[derive(Debug)]
struct Claims {
    /// Per member: held by a transaction or a migration.
    held: Vec<bool>,
    /// Transactions holding a member (a migration's members are not counted).
    transactions: usize,
    /// Callers waiting, by purpose.
    calls_waiting: usize,
    transactions_waiting: usize,
    migrations_waiting: usize,
}

#[derive(Debug)]
struct Set {
    members: Vec<Arc<Member>>,
    claims: std::sync::Mutex<Claims>,
    /// Waiting calls and migrations: all woken whenever a member is released.
    released: Notify,
    /// Waiting transactions: one woken per member released (the longest waiting), all when
    /// a waiting call or migration stops waiting.
    released_to_transaction: Notify,
    acquire_timeout: Duration,
}

impl Set {
    fn claims(&self) -> MutexGuard<'_, Claims> {
        // Every change under the lock is a few assignments that cannot panic half-way.
        self.claims.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The member no transaction holds with the fewest calls in flight, among those `allowed`.
    fn least_busy_free(
        &self,
        claims: &Claims,
        allowed: impl Fn(&Arc<Member>) -> bool,
    ) -> Option<usize> {
        (0..self.members.len())
            .filter(|index| !claims.held[*index] && allowed(&self.members[*index]))
            .min_by_key(|index| self.members[*index].in_flight.load(Ordering::SeqCst))
    }

    /// The member kept free of new calls for the next transaction, in a set of three or more
    /// with two or more members no transaction holds: the one of those with the fewest calls
    /// in flight. Calls go to the others while they can, so the calls in flight on it finish
    /// and a transaction that comes takes it without waiting for them to drain.
    fn standby(&self, claims: &Claims) -> Option<usize> {
        if self.members.len() < STANDBY_FROM
            || claims.held.iter().filter(|held| !**held).count() < 2
        {
            return None;
        }
        self.least_busy_free(claims, |_| true)
    }

    fn waiting(&self, purpose: Purpose, delta: isize) {
        let mut claims = self.claims();
        let counter = match purpose {
            Purpose::Call => &mut claims.calls_waiting,
            Purpose::Transaction => &mut claims.transactions_waiting,
            Purpose::Migration => &mut claims.migrations_waiting,
        };
        *counter = counter.saturating_add_signed(delta);
    }
}

/// Counts a caller as waiting while it lives; its drop lets held-back callers go on.
struct Waiting<'a> {
    set: &'a Set,
    purpose: Purpose,
}

impl<'a> Waiting<'a> {
    fn new(set: &'a Set, purpose: Purpose) -> Self {
        set.waiting(purpose, 1);
        Self { set, purpose }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.set.waiting(self.purpose, -1);
        // A waiting call holds transactions to all members but one, a waiting migration holds
        // every new transaction back: once it stops waiting, any of them may go on. Nothing
        // waits on how many transactions wait.
        if self.purpose != Purpose::Transaction {
            self.set.released_to_transaction.notify_waiters();
        }
    }
}

/// How busy a [`TokioPostgresConnection`] is, as [`status`](TokioPostgresConnection::status)
/// saw it (each number read at one moment; together they are a snapshot, not a transaction).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConnectionStatus {
    /// Connections in the set (`max_connections`).
    pub connections: usize,
    /// Connections whose server connection is open and usable now (the others connect again
    /// on their next call).
    pub connected: usize,
    /// Ordinary calls running now, over every connection.
    pub calls_in_flight: usize,
    /// Transactions holding a connection now.
    pub transactions: usize,
    /// Whether a migration holds the set.
    pub migrating: bool,
    /// Callers waiting for a connection: ordinary calls, transactions and migrations.
    pub waiting: usize,
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
/// No call waits for a connection longer than `acquire_timeout` (default 30 s), and a call
/// made from inside the callback of a transaction on this connection never waits: it takes a
/// connection that is free now or is refused at once. [`status`](Self::status) tells how busy
/// the set is.
///
/// A connection made by `connect*` that loses its server (restart, `pg_terminate_backend`,
/// network) fails the calls in flight on it at once, then connects again on its next call
/// (one cycle over the string's hosts, each bounded by `connect_timeout`; after a failed
/// cycle, calls fail at once with its error for a moment before the next cycle) and prepares
/// its statements afresh; the other connections of the set are not affected. A connection
/// built from a caller's `Client` reports the loss ("connection closed") and leaves
/// reconnecting to the caller.
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

/// How a lease holds its member.
enum Hold {
    /// The shared side of the gate: one ordinary call.
    Call(Option<OwnedRwLockReadGuard<()>>),
    /// The gate exclusively (once drained): a transaction (`counted`) or part of a migration.
    Exclusive {
        gate: Option<OwnedRwLockWriteGuard<()>>,
        counted: bool,
    },
}

impl Hold {
    /// Held exclusively, the gate not taken yet (see [`Lease::drain`]); `counted` against the
    /// transaction limit (a transaction) or not (a migration's members).
    fn exclusive(counted: bool) -> Self {
        Self::Exclusive {
            gate: None,
            counted,
        }
    }
}

/// One member of the set, owned from acquisition to release (see the module docs).
pub(crate) struct Lease {
    set: Arc<Set>,
    index: usize,
    hold: Hold,
}

impl Lease {
    fn member(&self) -> &Arc<Member> {
        &self.set.members[self.index]
    }

    /// The member's current client, connecting again first if it was lost.
    pub(crate) async fn handle(&self) -> Result<Arc<ClientHandle>, Error> {
        self.member().live.handle().await
    }

    /// The scope in which the callback of the transaction holding this lease runs.
    pub(crate) fn callback_scope(&self) -> CallbackScope {
        CallbackScope {
            member: self.member().id(),
        }
    }

    /// Waits, until `deadline`, for the ordinary calls in flight on an exclusively held
    /// member to finish.
    async fn drain(mut self, deadline: tokio::time::Instant) -> Result<Self, Self> {
        let gate = Arc::clone(&self.member().gate);
        match tokio::time::timeout_at(deadline, gate.write_owned()).await {
            Ok(guard) => {
                if let Hold::Exclusive { gate, .. } = &mut self.hold {
                    *gate = Some(guard);
                }
                Ok(self)
            }
            Err(_) => Err(self),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        match &mut self.hold {
            Hold::Call(guard) => {
                self.set.members[self.index]
                    .in_flight
                    .fetch_sub(1, Ordering::SeqCst);
                guard.take();
            }
            Hold::Exclusive { gate, counted } => {
                // The gate first: a call woken below must find it open.
                gate.take();
                let mut claims = self.set.claims();
                claims.held[self.index] = false;
                if *counted {
                    claims.transactions = claims.transactions.saturating_sub(1);
                }
                drop(claims);
                self.set.released.notify_waiters();
                self.set.released_to_transaction.notify_one();
            }
        }
    }
}

impl TokioPostgresConnection {
    /// Wraps a client whose connection future the caller drives, with a fresh gate. No I/O.
    pub fn from_client(client: Client) -> Self {
        Self::from_live(
            vec![Arc::new(LiveConnection::new(
                client,
                StatementMode::Prepared,
                None,
            ))],
            DEFAULT_ACQUIRE_TIMEOUT,
        )
    }

    /// Like [`from_client`](Self::from_client), but every statement is sent unnamed with
    /// explicit parameter types (`query_typed`) instead of being prepared: for poolers such as
    /// PgBouncer in transaction mode. Still one round trip per call. No I/O.
    pub fn from_client_unprepared(client: Client) -> Self {
        Self::from_live(
            vec![Arc::new(LiveConnection::new(
                client,
                StatementMode::Unprepared,
                None,
            ))],
            DEFAULT_ACQUIRE_TIMEOUT,
        )
    }

    fn from_live(live: Vec<Arc<LiveConnection>>, acquire_timeout: Duration) -> Self {
        let members = live
            .into_iter()
            .map(|live| {
                Arc::new(Member {
                    live,
                    gate: Arc::new(RwLock::new(())),
                    in_flight: AtomicUsize::new(0),
                })
            })
            .collect::<Vec<_>>();
        let claims = Claims {
            held: vec![false; members.len()],
            transactions: 0,
            calls_waiting: 0,
            transactions_waiting: 0,
            migrations_waiting: 0,
        };
        Self {
            set: Arc::new(Set {
                members,
                claims: std::sync::Mutex::new(claims),
                released: Notify::new(),
                released_to_transaction: Notify::new(),
                acquire_timeout,
            }),
        }
    }

    /// Connects to `database_url` (a `postgres://` URL or libpq key/value string) and drives
    /// the connection(s) on the current Tokio runtime.
    ///
    /// Besides tokio-postgres' parameters the string may set `sslmode`, `sslrootcert`,
    /// `sslcert`/`sslkey`, `statement_mode=unprepared` (see
    /// [`from_client_unprepared`](Self::from_client_unprepared)), `max_connections=N`
    /// (default 1; all N are opened now) and `acquire_timeout` (seconds a call may wait for a
    /// connection of the set; default 30). Errors carry the server's SQLSTATE (e.g. `3D000`
    /// for a missing database) and never the string or its password.
    pub async fn connect(database_url: &str) -> Result<Self, RustAuthError> {
        Self::connect_with_settings(database_url, Settings::default()).await
    }

    /// [`connect`](Self::connect), with `settings` overriding the string's.
    pub(crate) async fn connect_with_settings(
        database_url: &str,
        settings: Settings,
    ) -> Result<Self, RustAuthError> {
        let options = Arc::new(ConnectOptions::parse(database_url)?);
        let count = settings
            .max_connections
            .unwrap_or(options.max_connections)
            .max(1);
        let acquire_timeout = settings.acquire_timeout.unwrap_or(options.acquire_timeout);
        let clients =
            futures_util::future::try_join_all((0..count).map(|_| establish(&options, false)))
                .await
                .map_err(Error::Connect)?;
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
            acquire_timeout,
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
            connection.set.acquire_timeout,
        )
    }

    /// How busy the set is now: connections, calls in flight, transactions open, callers
    /// waiting (as deadpool's `Pool::status`). No I/O.
    pub fn status(&self) -> ConnectionStatus {
        let claims = self.set.claims();
        let members = &self.set.members;
        ConnectionStatus {
            connections: members.len(),
            connected: members
                .iter()
                .filter(|member| member.live.current().usable())
                .count(),
            calls_in_flight: members
                .iter()
                .map(|member| member.in_flight.load(Ordering::SeqCst))
                .sum(),
            transactions: claims.transactions,
            // Members held but not by a transaction are a migration's.
            migrating: claims.held.iter().filter(|held| **held).count() > claims.transactions,
            waiting: claims.calls_waiting + claims.transactions_waiting + claims.migrations_waiting,
        }
    }

    /// Prepares the typed statements of `wanted` on every member now (pipelined), and on each
    /// member again whenever it connects again.
    pub(crate) async fn warm(&self, wanted: crate::typed::statements::TableSet) {
        futures_util::future::join_all(self.set.members.iter().map(|m| m.live.warm(wanted))).await;
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

    /// A member for one ordinary call: the least busy one no transaction holds.
    pub(crate) async fn call(&self) -> Result<Lease, Error> {
        let open = self.held_by_this_task();
        if let Some(lease) = self.try_call(&open) {
            return Ok(lease);
        }
        if !open.is_empty() {
            return Err(self.refused(Purpose::Call));
        }
        self.wait(Purpose::Call, || self.try_call(&[])).await
    }

    fn try_call(&self, excluded: &[usize]) -> Option<Lease> {
        let claims = self.set.claims();
        let standby = self
            .set
            .standby(&claims)
            .map(|index| self.set.members[index].id());
        let allowed = |member: &Arc<Member>| !excluded.contains(&member.id());
        let index = self
            .set
            .least_busy_free(&claims, |member| {
                allowed(member) && Some(member.id()) != standby
            })
            .or_else(|| self.set.least_busy_free(&claims, allowed))?;
        let member = &self.set.members[index];
        // Fails only while a migration or transaction drains the member: wait for it then.
        let guard = Arc::clone(&member.gate).try_read_owned().ok()?;
        member.in_flight.fetch_add(1, Ordering::SeqCst);
        drop(claims);
        Some(self.lease(index, Hold::Call(Some(guard))))
    }

    /// A member for one transaction, held exclusively once its calls in flight have finished.
    pub(crate) async fn transaction(&self) -> Result<Lease, Error> {
        let started = Instant::now();
        let open = self.held_by_this_task();
        let lease = match self.try_transaction(&open) {
            Some(lease) => lease,
            None if !open.is_empty() => return Err(self.refused(Purpose::Transaction)),
            None => {
                self.wait(Purpose::Transaction, || self.try_transaction(&[]))
                    .await?
            }
        };
        let deadline = tokio::time::Instant::from_std(started + self.set.acquire_timeout);
        match lease.drain(deadline).await {
            Ok(lease) => Ok(lease),
            Err(lease) => {
                drop(lease);
                Err(self.timed_out(Purpose::Transaction, started.elapsed()))
            }
        }
    }

    fn try_transaction(&self, excluded: &[usize]) -> Option<Lease> {
        let mut claims = self.set.claims();
        if excluded.is_empty() {
            // Inside a callback the caps do not apply: it never waits, and the transaction
            // it belongs to cannot end before it does.
            let members = self.set.members.len();
            let limit = if claims.calls_waiting > 0 {
                members.saturating_sub(1).max(1)
            } else {
                members
            };
            if claims.migrations_waiting > 0 || claims.transactions >= limit {
                return None;
            }
        }
        let index = self
            .set
            .least_busy_free(&claims, |member| !excluded.contains(&member.id()))?;
        claims.held[index] = true;
        claims.transactions += 1;
        drop(claims);
        Some(self.lease(index, Hold::exclusive(true)))
    }

    /// Every member, exclusively (migrations run alone): all at once or none.
    pub(crate) async fn migration(&self) -> Result<Vec<Lease>, Error> {
        if !self.held_by_this_task().is_empty() {
            return Err(self.refused(Purpose::Migration));
        }
        let started = Instant::now();
        let leases = match self.try_migration() {
            Some(leases) => leases,
            None => {
                self.wait(Purpose::Migration, || self.try_migration())
                    .await?
            }
        };
        let deadline = tokio::time::Instant::from_std(started + self.set.acquire_timeout);
        let mut drained = Vec::with_capacity(leases.len());
        for lease in leases {
            match lease.drain(deadline).await {
                Ok(lease) => drained.push(lease),
                Err(_) => return Err(self.timed_out(Purpose::Migration, started.elapsed())),
            }
        }
        Ok(drained)
    }

    fn try_migration(&self) -> Option<Vec<Lease>> {
        let mut claims = self.set.claims();
        if claims.held.iter().any(|held| *held) {
            return None;
        }
        claims.held.iter_mut().for_each(|held| *held = true);
        drop(claims);
        Some(
            (0..self.set.members.len())
                .map(|index| self.lease(index, Hold::exclusive(false)))
                .collect(),
        )
    }

    /// The lease on member `index`, whose claim (or shared gate) the caller has just taken.
    fn lease(&self, index: usize, hold: Hold) -> Lease {
        Lease {
            set: Arc::clone(&self.set),
            index,
            hold,
        }
    }

    /// Waits, counted as waiting for `purpose`, until `attempt` succeeds or `acquire_timeout` has
    /// passed since the wait began.
    async fn wait<T>(
        &self,
        purpose: Purpose,
        mut attempt: impl FnMut() -> Option<T>,
    ) -> Result<T, Error> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::from_std(started + self.set.acquire_timeout);
        let _waiting = Waiting::new(&self.set, purpose);
        loop {
            let notify = match purpose {
                Purpose::Transaction => &self.set.released_to_transaction,
                Purpose::Call | Purpose::Migration => &self.set.released,
            };
            let mut released = pin!(notify.notified());
            released.as_mut().enable();
            if let Some(taken) = attempt() {
                let waited = started.elapsed();
                if waited >= LONG_WAIT {
                    tracing::warn!(
                        target: TARGET,
                        waited_ms = millis(waited),
                        want = purpose.name(),
                        "waited long for a connection of the set"
                    );
                }
                return Ok(taken);
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(self.timed_out(purpose, started.elapsed()));
            }
        }
    }

    /// The error (and event) of a wait that reached `acquire_timeout`.
    fn timed_out(&self, purpose: Purpose, waited: Duration) -> Error {
        let status = self.status();
        tracing::warn!(
            target: TARGET,
            waited_ms = millis(waited),
            want = purpose.name(),
            connections = status.connections,
            transactions = status.transactions,
            migrating = status.migrating,
            waiting = status.waiting,
            "timed out waiting for a connection of the set"
        );
        Error::Acquire(AcquireError::TimedOut {
            waited,
            purpose: purpose.name(),
            connections: status.connections,
            transactions: status.transactions,
            migrating: status.migrating,
            waiting: status.waiting,
        })
    }

    /// The members of this set that transactions of the current task hold: non-empty inside
    /// the callback of a transaction on this set, where no call on this set may wait (it could
    /// be waiting for that very transaction). A callback of a transaction on another set is
    /// an ordinary caller here.
    fn held_by_this_task(&self) -> Vec<usize> {
        let open = open_transactions();
        if open.is_empty() {
            return open;
        }
        self.set
            .members
            .iter()
            .map(Member::id)
            .filter(|id| open.contains(id))
            .collect()
    }

    /// The error of a call made from inside a transaction callback that would have to wait.
    fn refused(&self, purpose: Purpose) -> Error {
        Error::Acquire(match purpose {
            Purpose::Migration => AcquireError::MigrationFromCallback,
            _ => AcquireError::FromCallback {
                connections: self.set.members.len(),
                transactions: self.set.claims().transactions,
            },
        })
    }
}

/// Where a transaction callback runs: calls it makes on the outer adapter never wait for the
/// member its transaction holds (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct CallbackScope {
    member: usize,
}

impl CallbackScope {
    /// Runs `future` (the callback) in this scope.
    pub(crate) async fn run<F: Future>(self, future: F) -> F::Output {
        let mut open = OPEN_TRANSACTIONS.try_with(Clone::clone).unwrap_or_default();
        open.push(self.member);
        OPEN_TRANSACTIONS.scope(open, future).await
    }
}

/// The members (of any set) held by the transactions whose callbacks the current task is
/// running; empty outside every callback.
fn open_transactions() -> Vec<usize> {
    OPEN_TRANSACTIONS.try_with(Clone::clone).unwrap_or_default()
}

/// What a caller may set in code instead of the connection string.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Settings {
    /// Overrides `max_connections`.
    pub(crate) max_connections: Option<usize>,
    /// Overrides `acquire_timeout`.
    pub(crate) acquire_timeout: Option<Duration>,
}
