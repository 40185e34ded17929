//! No call waits forever: every wait for a connection of the set is bounded by
//! `acquire_timeout`, and a call from inside a transaction callback takes a free connection or
//! is refused at once. Each case runs with 1, 2 and 4 connections and asserts an answer within
//! a bound, then that the adapter still serves calls. States are observed through
//! `status()`, never guessed with sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::crud_common::{at, counting_transaction, default_schema, install, s, seed_user};
use crate::support;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustauth_core::db::{Count, DbAdapter, FindOne, Where};
use rustauth_core::error::RustAuthError;
use rustauth_tokio_postgres::{ConnectionStatus, TokioPostgresAdapter, TokioPostgresStores};
use tokio::sync::{oneshot, Barrier};
use tokio::task::JoinHandle;

/// Far longer than any answer here needs; a call that takes it is hung.
const ANSWER: Duration = Duration::from_secs(20);

/// The text of the refusal of an outer call made from inside a callback.
const REFUSED: &str = "called from inside its own transaction callback";

async fn adapter(label: &str, connections: usize, acquire_timeout: &str) -> TokioPostgresAdapter {
    let url = support::fresh_database(label).await;
    let adapter = TokioPostgresAdapter::connect_with_schema(
        &format!("{url}?max_connections={connections}&acquire_timeout={acquire_timeout}"),
        default_schema(),
    )
    .await
    .expect("connect");
    install(&adapter, &default_schema()).await;
    seed_user(&adapter, "u1", "a@example.com", at(0)).await;
    adapter
}

/// A fresh adapter with `params` in its URL, the default tables and one user, and a session
/// of its own holding `users` locked (ACCESS EXCLUSIVE, until it rolls back): calls on the
/// table stay in flight on the server until then.
async fn with_users_locked(
    label: &str,
    params: &str,
) -> (TokioPostgresAdapter, tokio_postgres::Client) {
    let url = support::fresh_database(label).await;
    let adapter =
        TokioPostgresAdapter::connect_with_schema(&format!("{url}?{params}"), default_schema())
            .await
            .expect("connect");
    install(&adapter, &default_schema()).await;
    seed_user(&adapter, "u1", "a@example.com", at(0)).await;
    let locker = support::connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock");
    (adapter, locker)
}

/// `future`'s output, failing the test if it does not come within [`ANSWER`].
async fn answered<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(ANSWER, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer within {ANSWER:?} (a hang)"))
}

/// Ends the table lock `locker` holds; every count it held up must then answer with the one
/// user, and the adapter still serve.
async fn unlock_then_counts_answer(
    locker: &tokio_postgres::Client,
    held_up: Vec<JoinHandle<Result<u64, RustAuthError>>>,
    adapter: &TokioPostgresAdapter,
) {
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    for call in held_up {
        assert_eq!(
            answered("a held-up call", call)
                .await
                .expect("task")
                .expect("count"),
            1
        );
    }
    still_serves(adapter).await;
}

/// `run_migrations` of the default schema, in a task of its own.
fn spawn_migration(adapter: &TokioPostgresAdapter) -> JoinHandle<Result<(), RustAuthError>> {
    let adapter = adapter.clone();
    tokio::spawn(async move { adapter.run_migrations(&default_schema()).await })
}

/// A transaction that counts the users, in a task of its own.
fn spawn_counting_transaction(
    adapter: &TokioPostgresAdapter,
) -> JoinHandle<Result<(), RustAuthError>> {
    let adapter = adapter.clone();
    tokio::spawn(async move { counting_transaction(&adapter).await })
}

/// Waits until `status()` satisfies `ready` (each check yields to the runtime first).
async fn until(
    adapter: &TokioPostgresAdapter,
    what: &str,
    ready: impl Fn(ConnectionStatus) -> bool,
) {
    answered(what, async {
        while !ready(adapter.status()) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
}

/// The adapter still serves an ordinary call, a transaction and a migration, and holds
/// nothing afterwards.
async fn still_serves(adapter: &TokioPostgresAdapter) {
    let found = answered(
        "a call afterwards",
        adapter.find_one(FindOne::new("user").where_clause(Where::new("id", s("u1")))),
    )
    .await
    .expect("a call afterwards");
    assert!(found.is_some());
    answered("a transaction afterwards", counting_transaction(adapter))
        .await
        .expect("a transaction afterwards");
    answered(
        "a migration afterwards",
        adapter.run_migrations(&default_schema()),
    )
    .await
    .expect("a migration afterwards");
    let status = adapter.status();
    assert_eq!(
        (
            status.transactions,
            status.waiting,
            status.calls_in_flight,
            status.migrating
        ),
        (0, 0, 0, false),
        "{status:?}"
    );
}

/// Runs `call` on the outer adapter from inside a transaction callback (same task), and
/// returns its output and how long it took; the transaction must commit within [`ANSWER`].
async fn from_callback<T, F, Fut>(adapter: &TokioPostgresAdapter, call: F) -> (T, Duration)
where
    F: FnOnce(TokioPostgresAdapter) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send,
    T: Send + 'static,
{
    let outer = adapter.clone();
    let (sent, outcome) = oneshot::channel();
    answered(
        "the transaction",
        adapter.transaction(Box::new(move |_tx| {
            Box::pin(async move {
                let started = Instant::now();
                let result = call(outer).await;
                let _ = sent.send((result, started.elapsed()));
                Ok(())
            })
        })),
    )
    .await
    .expect("the transaction commits");
    outcome.await.expect("the callback ran")
}

fn refused<T: std::fmt::Debug>(result: &Result<T, RustAuthError>) -> bool {
    matches!(result, Err(error) if error.to_string().contains(REFUSED))
}

/// Two transactions open at once whose callbacks each call the outer adapter: with a free
/// connection the outer calls run there, without one they are refused at once; either way
/// both transactions finish and the adapter serves afterwards (the app kept serving).
#[tokio::test]
async fn two_transactions_calling_the_outer_adapter_never_hang() {
    for connections in [1, 2, 4] {
        let adapter = adapter(&format!("lease_two_tx_{connections}"), connections, "30").await;
        // Both callbacks call out once both are open (with one connection the second cannot
        // open until the first ends: the first gives up waiting for it after a moment).
        let both_open = Arc::new(Barrier::new(2));
        let run = |adapter: TokioPostgresAdapter| {
            let both_open = Arc::clone(&both_open);
            let outer = adapter.clone();
            tokio::spawn(async move {
                let (sent, outcome) = oneshot::channel();
                let result = adapter
                    .transaction(Box::new(move |tx| {
                        Box::pin(async move {
                            tx.count(Count::new("user")).await?;
                            let patience = if connections == 1 {
                                Duration::from_millis(300)
                            } else {
                                ANSWER
                            };
                            let _ = tokio::time::timeout(patience, both_open.wait()).await;
                            let _ = sent.send(outer.count(Count::new("user")).await);
                            Ok(())
                        })
                    }))
                    .await;
                (result, outcome.await.expect("the callback ran"))
            })
        };
        let started = Instant::now();
        let first = run(adapter.clone());
        let second = run(adapter.clone());
        for task in [first, second] {
            let (result, outer) = answered("a transaction", task).await.expect("task");
            result.expect("the transaction commits");
            if connections >= 3 {
                assert_eq!(outer.expect("a free connection serves it"), 1);
            } else {
                assert!(refused(&outer), "{connections}: {outer:?}");
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
        still_serves(&adapter).await;
    }
}

/// `run_migrations` on the outer adapter from inside a callback is refused at once, for every
/// size of the set (a migration needs the connection the transaction holds).
#[tokio::test]
async fn migrations_inside_a_callback_are_refused_at_once() {
    for connections in [1, 2, 4] {
        let adapter = adapter(&format!("lease_mig_cb_{connections}"), connections, "30").await;
        let (result, took) = from_callback(&adapter, |outer| async move {
            outer.run_migrations(&default_schema()).await
        })
        .await;
        let error = result.expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("migrations called from inside a transaction callback"),
            "{error}"
        );
        assert!(
            took < Duration::from_secs(2),
            "refused at once, not after {took:?}"
        );
        still_serves(&adapter).await;
    }
}

/// A migration waiting for the set while the transaction that holds a connection calls the
/// outer adapter: the migration holds nothing while it waits, so the outer call takes a free
/// connection (or, with none, is refused at once), the transaction ends, the migration runs.
#[tokio::test]
async fn a_waiting_migration_holds_nothing() {
    for connections in [1, 2, 4] {
        let adapter = adapter(&format!("lease_mig_wait_{connections}"), connections, "30").await;
        let (opened, is_open) = oneshot::channel();
        let (go, proceed) = oneshot::channel::<()>();
        let outer = adapter.clone();
        let transaction = {
            let adapter = adapter.clone();
            tokio::spawn(async move {
                let (sent, outcome) = oneshot::channel();
                let result = adapter
                    .transaction(Box::new(move |tx| {
                        Box::pin(async move {
                            tx.count(Count::new("user")).await?;
                            let _ = opened.send(());
                            let _ = proceed.await;
                            let _ = sent.send(outer.count(Count::new("user")).await);
                            Ok(())
                        })
                    }))
                    .await;
                (result, outcome.await.expect("ran"))
            })
        };
        answered("the transaction opens", is_open)
            .await
            .expect("open");
        let migration = spawn_migration(&adapter);
        until(&adapter, "the migration waits", |status| {
            status.waiting == 1
        })
        .await;
        let status = adapter.status();
        assert!(
            !status.migrating,
            "a waiting migration holds no connection: {status:?}"
        );
        go.send(()).expect("callback waiting");
        let (result, outer) = answered("the transaction", transaction)
            .await
            .expect("task");
        result.expect("the transaction commits");
        if connections > 1 {
            assert_eq!(outer.expect("a free connection serves the outer call"), 1);
        } else {
            assert!(refused(&outer), "{outer:?}");
        }
        answered("the migration", migration)
            .await
            .expect("task")
            .expect("the migration runs once the transaction ended");
        still_serves(&adapter).await;
    }
}

/// A task spawned inside a callback is not inside it: it waits like any caller, and with every
/// connection held it gets the acquire-timeout error instead of hanging (0.3.2 hung).
#[tokio::test]
async fn a_task_spawned_in_a_callback_waits_within_acquire_timeout() {
    for connections in [1, 2, 4] {
        let adapter = adapter(&format!("lease_spawned_{connections}"), connections, "0.5").await;
        let (result, took) = from_callback(&adapter, |outer| async move {
            tokio::spawn(async move { outer.count(Count::new("user")).await })
                .await
                .expect("spawned task")
        })
        .await;
        if connections > 1 {
            assert_eq!(result.expect("a free connection serves it"), 1);
        } else {
            let error = result.expect_err("timed out");
            let text = error.to_string();
            assert!(
                text.contains("timed out after")
                    && text.contains("waiting for a connection for a call")
                    && text.contains("1 of 1 connections held by transactions"),
                "{text}"
            );
            assert!(
                took >= Duration::from_millis(500),
                "waited the bound: {took:?}"
            );
            assert!(took < Duration::from_secs(5), "and not much more: {took:?}");
        }
        still_serves(&adapter).await;
    }
}

/// Ends the transactions of [`hold_all`] and waits until each has committed.
pub(crate) async fn release_all(
    releases: Vec<oneshot::Sender<()>>,
    holders: Vec<tokio::task::JoinHandle<Result<(), RustAuthError>>>,
) {
    drop(releases);
    for holder in holders {
        answered("a holding transaction", holder)
            .await
            .expect("task")
            .expect("commits");
    }
}

/// Holds `count` transactions open until their senders are dropped or sent to.
pub(crate) async fn hold_all(
    adapter: &TokioPostgresAdapter,
    count: usize,
) -> (
    Vec<oneshot::Sender<()>>,
    Vec<tokio::task::JoinHandle<Result<(), RustAuthError>>>,
) {
    let mut releases = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..count {
        let (release, released) = oneshot::channel::<()>();
        let adapter = adapter.clone();
        tasks.push(tokio::spawn(async move {
            adapter
                .transaction(Box::new(move |tx| {
                    Box::pin(async move {
                        tx.count(Count::new("user")).await?;
                        let _ = released.await;
                        Ok(())
                    })
                }))
                .await
        }));
        releases.push(release);
    }
    until(adapter, "every connection held", |status| {
        status.transactions == count
    })
    .await;
    (releases, tasks)
}

/// `acquire_timeout` bounds every kind of wait: an ordinary call, a transaction and a
/// migration each fail after it with an error saying what waited, how long and how the set
/// was held; the set is intact afterwards.
#[tokio::test]
async fn acquire_timeout_bounds_calls_transactions_and_migrations() {
    for connections in [1, 2] {
        let adapter = adapter(&format!("lease_timeout_{connections}"), connections, "0.3").await;
        let (releases, holders) = hold_all(&adapter, connections).await;
        let started = Instant::now();
        let call = answered("a call", adapter.count(Count::new("user"))).await;
        let call_took = started.elapsed();
        let transaction = answered(
            "a transaction",
            adapter.transaction(Box::new(|_tx| Box::pin(async { Ok(()) }))),
        )
        .await;
        let migration = answered("a migration", adapter.run_migrations(&default_schema())).await;
        for (what, error) in [
            ("call", call.expect_err("timed out").to_string()),
            (
                "transaction",
                transaction.expect_err("timed out").to_string(),
            ),
            ("migration", migration.expect_err("timed out").to_string()),
        ] {
            assert!(
                error.contains(&format!(
                    "waiting for a connection for a {what} (acquire_timeout)"
                )) && error.contains(&format!(
                    "{connections} of {connections} connections held by transactions"
                )),
                "{error}"
            );
        }
        assert!(call_took >= Duration::from_millis(300), "{call_took:?}");
        assert!(call_took < Duration::from_secs(5), "{call_took:?}");
        assert_eq!(adapter.status().waiting, 0, "nobody is left waiting");
        release_all(releases, holders).await;
        still_serves(&adapter).await;
    }
}

/// The N − 1 rule: while ordinary calls wait, transactions hold at most all connections but
/// one, so a connection released goes to the waiting call, even when a transaction started
/// waiting before it.
#[tokio::test(flavor = "current_thread")]
async fn a_released_connection_goes_to_a_waiting_call_before_an_earlier_transaction() {
    let adapter = adapter("lease_cap", 2, "30").await;
    let (mut releases, holders) = hold_all(&adapter, 2).await;
    // A third transaction waits first (and, once it has a connection, keeps it) …
    let (release_third, third_released) = oneshot::channel::<()>();
    let third = {
        let adapter = adapter.clone();
        tokio::spawn(async move {
            adapter
                .transaction(Box::new(move |tx| {
                    Box::pin(async move {
                        tx.count(Count::new("user")).await?;
                        let _ = third_released.await;
                        Ok(())
                    })
                }))
                .await
        })
    };
    until(&adapter, "the transaction waits", |status| {
        status.waiting == 1
    })
    .await;
    // … then an ordinary call.
    let call = {
        let adapter = adapter.clone();
        tokio::spawn(async move { adapter.count(Count::new("user")).await })
    };
    until(&adapter, "the call waits", |status| status.waiting == 2).await;
    // One transaction ends: its connection must serve the call. Had the third transaction
    // taken it, the call would wait for a connection until its acquire_timeout (30 s).
    releases.remove(0).send(()).expect("holder waiting");
    let count = tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the waiting call got the released connection")
        .expect("task");
    assert_eq!(count.expect("count"), 1);
    drop(release_third);
    release_all(releases, holders).await;
    answered("the third transaction", third)
        .await
        .expect("task")
        .expect("commits");
    still_serves(&adapter).await;
}

/// From three connections on, calls keep off the free connection with the fewest calls in
/// flight, so the next transaction finds one with none: three calls held up on the server
/// (a table another session locked), started one after another, use two of the three
/// connections, and a transaction runs at once on the third. Had the calls been spread over
/// all three, the transaction would wait for one of them until its acquire_timeout.
#[tokio::test]
async fn calls_keep_a_connection_free_for_the_next_transaction() {
    let (adapter, locker) =
        with_users_locked("lease_standby", "max_connections=3&acquire_timeout=2").await;
    let mut stuck = Vec::new();
    for in_flight in 1..=3 {
        let caller = adapter.clone();
        stuck.push(tokio::spawn(async move {
            caller.count(Count::new("user")).await
        }));
        until(&adapter, "the call is in flight", |status| {
            status.calls_in_flight == in_flight
        })
        .await;
    }
    answered(
        "the transaction",
        adapter.transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.count(Count::new("session")).await?;
                Ok(())
            })
        })),
    )
    .await
    .expect("the transaction runs on the connection the calls kept free");
    assert_eq!(
        adapter.status().calls_in_flight,
        3,
        "the calls are still held up"
    );
    unlock_then_counts_answer(&locker, stuck, &adapter).await;
}

/// `status()` reports the set as it is: connections, calls in flight, transactions, waiting.
#[tokio::test]
async fn status_reports_the_set() {
    let adapter = adapter("lease_status", 3, "30").await;
    let idle = adapter.status();
    assert_eq!(
        (
            idle.connections,
            idle.connected,
            idle.calls_in_flight,
            idle.transactions,
            idle.waiting,
            idle.migrating
        ),
        (3, 3, 0, 0, 0, false),
        "{idle:?}"
    );
    let (releases, holders) = hold_all(&adapter, 2).await;
    let held = adapter.status();
    assert_eq!(held.transactions, 2, "{held:?}");
    // The third connection still serves ordinary calls.
    assert_eq!(adapter.count(Count::new("user")).await.expect("count"), 1);
    release_all(releases, holders).await;
    assert_eq!(adapter.status().transactions, 0);
    // The stores builder sets the bound too.
    let url = support::fresh_database("lease_status_builder").await;
    let stores = TokioPostgresStores::builder()
        .acquire_timeout(Duration::from_millis(200))
        .connect(&url)
        .await
        .expect("stores");
    install(&stores.adapter, &default_schema()).await;
    let (release, holder) = hold_all(&stores.adapter, 1).await;
    let started = Instant::now();
    let error = answered("a call", stores.adapter.count(Count::new("user")))
        .await
        .expect_err("timed out");
    assert!(error.to_string().contains("timed out after"), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(release);
    for holder in holder {
        holder.await.expect("task").expect("commits");
    }
}

/// Bad `acquire_timeout` values are refused before connecting, naming the parameter.
#[tokio::test]
async fn acquire_timeout_out_of_range_is_refused() {
    let url = support::fresh_database("lease_bad_timeout").await;
    for bad in ["0", "-1", "soon", "NaN", "100000"] {
        let error = TokioPostgresAdapter::connect(&format!("{url}?acquire_timeout={bad}"))
            .await
            .expect_err("refused");
        assert!(
            error.to_string().contains("`acquire_timeout`"),
            "{bad}: {error}"
        );
    }
}

/// A transaction's (and a migration's) wait for the calls in flight on its connection is
/// bounded too: a call held up on the server (a table another session locked) keeps the
/// connection busy, and the transaction, then the migration, get the acquire-timeout error
/// instead of waiting for it; once the lock is gone, everything completes.
#[tokio::test]
async fn a_transaction_waiting_for_calls_in_flight_times_out() {
    let (adapter, locker) = with_users_locked("lease_drain", "acquire_timeout=0.5").await;
    let stuck = {
        let adapter = adapter.clone();
        tokio::spawn(async move { adapter.count(Count::new("user")).await })
    };
    until(&adapter, "the call is in flight", |status| {
        status.calls_in_flight == 1
    })
    .await;
    let started = Instant::now();
    let error = answered(
        "the transaction",
        adapter.transaction(Box::new(|_tx| Box::pin(async { Ok(()) }))),
    )
    .await
    .expect_err("timed out waiting for the call in flight");
    assert!(
        error
            .to_string()
            .contains("waiting for a connection for a transaction (acquire_timeout)"),
        "{error}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(adapter.status().transactions, 0, "the claim was given back");
    // A migration's wait for the same call is bounded the same way.
    let error = answered("the migration", adapter.run_migrations(&default_schema()))
        .await
        .expect_err("timed out waiting for the call in flight");
    assert!(
        error
            .to_string()
            .contains("waiting for a connection for a migration (acquire_timeout)"),
        "{error}"
    );
    assert!(!adapter.status().migrating, "the members were given back");
    unlock_then_counts_answer(&locker, vec![stuck], &adapter).await;
}

/// While a migration waits for the set, a new transaction waits behind it instead of taking
/// a free connection (a stream of transactions would otherwise keep the migration out for
/// ever); the migration runs as soon as the transaction holding the set ends, then the other.
#[tokio::test(flavor = "current_thread")]
async fn a_waiting_migration_goes_before_later_transactions() {
    let adapter = adapter("lease_mig_first", 2, "30").await;
    let (releases, holders) = hold_all(&adapter, 1).await;
    let migration = spawn_migration(&adapter);
    until(&adapter, "the migration waits", |status| {
        status.waiting == 1
    })
    .await;
    let later = spawn_counting_transaction(&adapter);
    until(&adapter, "the later transaction waits", |status| {
        status.waiting == 2
    })
    .await;
    let status = adapter.status();
    assert_eq!(
        (status.transactions, status.migrating),
        (1, false),
        "the free connection stays free for the migration: {status:?}"
    );
    release_all(releases, holders).await;
    answered("the migration", migration)
        .await
        .expect("task")
        .expect("migrates");
    answered("the later transaction", later)
        .await
        .expect("task")
        .expect("commits");
    still_serves(&adapter).await;
}

/// A migration that gives up waiting (acquire_timeout) lets the transactions it held back take
/// the free connection at once, not at the next release: nothing is released here until the
/// later transaction has committed.
#[tokio::test(flavor = "current_thread")]
async fn a_migration_that_stops_waiting_lets_the_transactions_behind_it_go() {
    let adapter = adapter("lease_mig_gives_up", 2, "2").await;
    let (releases, holders) = hold_all(&adapter, 1).await;
    let migration = spawn_migration(&adapter);
    until(&adapter, "the migration waits", |status| {
        status.waiting == 1
    })
    .await;
    // Started a second after the migration: the migration gives up a second before this
    // transaction would.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let later = spawn_counting_transaction(&adapter);
    let gave_up = answered("the migration", migration)
        .await
        .expect("task")
        .expect_err("the set stays held past acquire_timeout");
    assert!(
        gave_up
            .to_string()
            .contains("waiting for a connection for a migration"),
        "{gave_up}"
    );
    answered("the later transaction", later)
        .await
        .expect("task")
        .expect("commits on the connection the migration no longer waits for");
    release_all(releases, holders).await;
    still_serves(&adapter).await;
}

/// Only calls on the set whose transaction the callback belongs to are refused instead of
/// waiting: from inside a transaction on one adapter, a call on another adapter (its own
/// connection, held for a moment by someone else's transaction) waits for it like any caller.
#[tokio::test]
async fn a_callback_waits_for_another_adapters_connection() {
    let first = adapter("lease_two_sets_a", 1, "30").await;
    let second = adapter("lease_two_sets_b", 1, "30").await;
    let (mut releases, holders) = hold_all(&second, 1).await;
    let release = releases.remove(0);
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let _ = release.send(());
    });
    let (result, took) = from_callback(&first, move |_outer| async move {
        second.count(Count::new("user")).await
    })
    .await;
    assert_eq!(
        result.expect("waited for the other adapter, then served"),
        1
    );
    assert!(took >= Duration::from_millis(150), "it waited: {took:?}");
    release_all(releases, holders).await;
    releaser.await.expect("releaser");
    still_serves(&first).await;
}
