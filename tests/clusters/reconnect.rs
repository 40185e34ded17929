//! Losing the server: restarts, `pg_terminate_backend` under load, inside a transaction, for
//! connections made from URLs (which reconnect on the next call) and for a caller's client
//! (which does not). Every test runs on a dedicated cluster (tests/support/cluster.rs), so
//! restarting it or killing backends touches nobody else.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::{schema, user};
use crate::support;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustauth_core::db::{Count, DbAdapter, DbValue, FindOne, Where};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{RateLimitConsumeInput, RateLimitStore};
use rustauth_tokio_postgres::{
    TokioPostgresAdapter, TokioPostgresRateLimitStore, TokioPostgresStores,
};
use support::cluster::{Cluster, SharedCluster};
use tokio::sync::oneshot;

/// The cluster of the tests that only terminate backends of their own database.
static SHARED: SharedCluster = SharedCluster::new();

/// Generous bound proving that a call does not hang (never a performance assertion).
const NO_HANG: Duration = Duration::from_secs(20);

async fn shared_cluster() -> Arc<Cluster> {
    SHARED
        .get(|| Cluster::start("reconnect", |_: &Path| String::new(), ""))
        .await
}

fn by_email(id: &str) -> FindOne {
    FindOne::new("user").where_clause(Where::new(
        "email",
        DbValue::String(format!("{id}@example.com")),
    ))
}

/// A database on `cluster` with the schema and user `ada`, and an adapter connected from
/// its URL.
async fn setup(cluster: &Cluster, label: &str) -> (String, TokioPostgresAdapter) {
    let db = cluster.create_database(label).await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&cluster.url(&db), schema())
        .await
        .expect("connect");
    adapter
        .create_schema(&schema(), None)
        .await
        .expect("create_schema");
    adapter.create(user("ada")).await.expect("create ada");
    (db, adapter)
}

/// A hot (typed, prepared) call and a generic one both succeed and see `users` users.
async fn assert_works(adapter: &TokioPostgresAdapter, users: u64) {
    let typed_before = adapter.typed_call_count();
    let found = bounded(adapter.find_one(by_email("ada")))
        .await
        .expect("find ada by email")
        .expect("ada exists");
    assert_eq!(
        found.get("email"),
        Some(&DbValue::String("ada@example.com".to_owned()))
    );
    assert!(
        adapter.typed_call_count() > typed_before,
        "find_one by email takes the typed statement"
    );
    assert_eq!(
        bounded(adapter.count(Count::new("user")))
            .await
            .expect("count users"),
        users
    );
}

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(NO_HANG, future)
        .await
        .expect("the call must return, not hang")
}

/// Asserts a failed call reports a lost connection (and is an adapter error).
fn assert_connection_error(error: &RustAuthError) {
    let text = error.to_string();
    assert!(matches!(error, RustAuthError::Adapter(_)), "{error:?}");
    let lost = [
        "connection closed",
        "57P01",
        "terminating connection",
        "connection lost",
        "unexpected EOF",
        "Connection reset",
    ];
    assert!(
        lost.iter().any(|needle| text.contains(needle)),
        "not a lost-connection error: {text}"
    );
}

/// Calls `call` until it succeeds, at most `attempts` times (each bounded); the failures
/// must be lost-connection errors. Returns how many calls failed.
async fn until_ok<T, F, Fut>(attempts: usize, mut call: F) -> (T, usize)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RustAuthError>>,
{
    let mut failures = Vec::new();
    for _ in 0..attempts {
        match bounded(call()).await {
            Ok(value) => return (value, failures.len()),
            Err(error) => {
                assert_connection_error(&error);
                failures.push(error);
            }
        }
    }
    panic!("no success in {attempts} attempts: {failures:?}");
}

// ---------------------------------------------------------------------------------------------
// (a) The server restarts.

#[tokio::test]
async fn a_url_connection_survives_a_server_restart() {
    let cluster = Cluster::start("restart", |_: &Path| String::new(), "").await;
    let (db, adapter) = setup(&cluster, "restart").await;
    assert_works(&adapter, 1).await;
    let before = cluster.backend_pids(&db).await;
    assert_eq!(before.len(), 1);
    let port = cluster.port;

    cluster.restart().await;
    assert_eq!(cluster.port, port);
    assert!(cluster.backend_pids(&db).await.is_empty());

    // The first call may fail (bounded) with the lost connection; a later one reconnects and
    // prepares its statements afresh, for the typed and the generic path.
    let (found, failures) = until_ok(2, || adapter.find_one(by_email("ada"))).await;
    assert!(found.is_some());
    assert!(failures <= 1, "{failures} calls failed after the restart");
    assert_works(&adapter, 1).await;
    bounded(adapter.create(user("bob")))
        .await
        .expect("write after restart");
    assert_works(&adapter, 2).await;
    let after = cluster.backend_pids(&db).await;
    assert_eq!(after.len(), 1, "one new backend");
    assert_ne!(after, before);
}

#[tokio::test]
async fn calls_fail_promptly_while_the_server_is_down_and_recover_when_it_is_back() {
    let cluster = Cluster::start("down", |_: &Path| String::new(), "").await;
    let (db, adapter) = setup(&cluster, "down").await;
    assert_works(&adapter, 1).await;

    cluster.stop().await;
    // Every call fails (after the bounded reconnect attempts) instead of hanging.
    for _ in 0..2 {
        let error = bounded(adapter.count(Count::new("user")))
            .await
            .expect_err("the server is down");
        assert_connection_error(&error);
    }
    let error = bounded(adapter.find_one(by_email("ada")))
        .await
        .expect_err("the server is down");
    let text = error.to_string();
    assert!(
        text.contains("reconnecting failed") && text.contains("refused"),
        "the failed reconnect is reported with its cause: {text}"
    );

    cluster.resume().await;
    // A failed reconnect cycle is not tried again for a short while (200 ms; calls fail at
    // once with its error meanwhile): let it pass.
    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    let (count, failures) = until_ok(2, || adapter.count(Count::new("user"))).await;
    assert_eq!(count, 1);
    assert_eq!(failures, 0, "the server is back: the next call reconnects");
    assert_works(&adapter, 1).await;
    assert_eq!(cluster.backend_pids(&db).await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// (b) The backend is killed while 200 calls are in flight.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminating_the_backend_under_load_fails_or_completes_every_call() {
    const IN_FLIGHT: usize = 150;
    const RACING: usize = 50;
    let cluster = shared_cluster().await;
    let (db, adapter) = setup(&cluster, "under_load").await;
    assert_works(&adapter, 1).await;
    let backend = cluster.backend_pids(&db).await;
    assert_eq!(backend.len(), 1);

    // Hold the `users` table so that the adapter's calls pile up on its backend, in flight.
    let locker = cluster.connect_socket(&db).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock the table");
    let mut calls = tokio::task::JoinSet::new();
    let spawn_call = |calls: &mut tokio::task::JoinSet<Result<(), RustAuthError>>, index: usize| {
        let adapter = adapter.clone();
        calls.spawn(async move {
            // Mixed traffic: typed reads, generic counts and writes.
            match index % 3 {
                0 => adapter.find_one(by_email("ada")).await.map(|_| ()),
                1 => adapter.count(Count::new("user")).await.map(|_| ()),
                _ => adapter
                    .create(user(&format!("load{index}")))
                    .await
                    .map(|_| ()),
            }
        });
    };
    for index in 0..IN_FLIGHT {
        spawn_call(&mut calls, index);
    }
    bounded(async {
        let admin = cluster.admin().await;
        loop {
            let waiting = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'",
                    &[&backend[0]],
                )
                .await
                .expect("read pg_stat_activity")
                .get::<_, i64>(0);
            if waiting == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;

    // Kill the adapter's backend (not the locker's), then let go of the table; more calls
    // race with the client noticing the loss.
    let admin = cluster.admin().await;
    let killed: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&backend[0]])
        .await
        .expect("terminate")
        .get(0);
    assert!(killed);
    for index in IN_FLIGHT..IN_FLIGHT + RACING {
        spawn_call(&mut calls, index);
    }
    bounded(async {
        while cluster.backend_pids(&db).await.contains(&backend[0]) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    locker.batch_execute("ROLLBACK").await.expect("unlock");

    let results = bounded(async {
        let mut results = Vec::new();
        while let Some(joined) = calls.join_next().await {
            results.push(joined.expect("no call panics"));
        }
        results
    })
    .await;
    assert_eq!(results.len(), IN_FLIGHT + RACING);
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    for error in results.iter().filter_map(|result| result.as_ref().err()) {
        assert_connection_error(error);
        *errors.entry(error.to_string()).or_default() += 1;
    }
    let failed: usize = errors.values().sum();
    eprintln!(
        "backend terminated under load: {} of {} calls succeeded, {failed} failed: {errors:#?}",
        results.len() - failed,
        results.len()
    );
    assert!(failed >= 1, "the call blocked on the killed backend fails");

    // Afterwards calls work again, on one new backend. (A call racing the old driver's exit
    // may still see the old client once.)
    let (_, failures) = until_ok(2, || adapter.count(Count::new("user"))).await;
    assert!(failures <= 1);
    let users = bounded(adapter.count(Count::new("user")))
        .await
        .expect("count");
    assert_works(&adapter, users).await;
    let locker_pid: i32 = locker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("locker pid")
        .get(0);
    let mut after = cluster.backend_pids(&db).await;
    after.retain(|pid| *pid != locker_pid);
    assert_eq!(after.len(), 1, "one new backend for the adapter");
    assert_ne!(after, backend);
}

// ---------------------------------------------------------------------------------------------
// (c) A caller's client is never replaced.

#[tokio::test]
async fn a_callers_client_reports_the_loss_and_does_not_reconnect() {
    let cluster = shared_cluster().await;
    let (db, setup_adapter) = setup(&cluster, "callers_client").await;
    drop(setup_adapter);
    let (client, connection) = tokio_postgres::connect(&cluster.url(&db), tokio_postgres::NoTls)
        .await
        .expect("the caller's client");
    let driver = tokio::spawn(connection);
    let adapter = TokioPostgresAdapter::with_schema(client, schema());
    assert_works(&adapter, 1).await;

    assert_eq!(cluster.terminate_backends(&db).await, 1);
    // The driver ends once it has seen the loss.
    let _ = bounded(driver).await;
    for _ in 0..3 {
        let error = bounded(adapter.find_one(by_email("ada")))
            .await
            .expect_err("the client's connection is gone");
        assert_connection_error(&error);
        assert!(error.to_string().contains("connection closed"), "{error}");
        let error = bounded(adapter.count(Count::new("user")))
            .await
            .expect_err("the client's connection is gone");
        assert!(error.to_string().contains("connection closed"), "{error}");
    }
    assert!(
        cluster.backend_pids(&db).await.is_empty(),
        "no reconnection was attempted"
    );
}

// ---------------------------------------------------------------------------------------------
// (d) The rate-limit store, alone and sharing the adapter's connection.

fn consume(key: &str, now_ms: i64) -> RateLimitConsumeInput {
    crate::fixtures::consume_input(key, 60, 100, now_ms)
}

#[tokio::test]
async fn the_rate_limit_store_and_the_stores_recover() {
    let cluster = shared_cluster().await;
    let (db, installer) = setup(&cluster, "stores").await;
    drop(installer);
    let stores = TokioPostgresStores::connect_with_schema(&cluster.url(&db), schema())
        .await
        .expect("stores");
    let alone = TokioPostgresRateLimitStore::connect(&cluster.url(&db), "rate_limits")
        .await
        .expect("a store of its own");
    let now = 1_700_000_000_000;
    let first = stores
        .rate_limit
        .consume(consume("ip|/a", now))
        .await
        .expect("consume");
    assert_eq!(first.remaining, 99);
    let first = alone.consume(consume("ip|/b", now)).await.expect("consume");
    assert_eq!(first.remaining, 99);
    assert_works(&stores.adapter, 1).await;
    assert_eq!(cluster.backend_pids(&db).await.len(), 2);

    assert_eq!(cluster.terminate_backends(&db).await, 2);

    // The store first: it reconnects the connection the adapter shares.
    let (decision, _) = until_ok(2, || stores.rate_limit.consume(consume("ip|/a", now + 1))).await;
    assert!(decision.permitted);
    assert_eq!(decision.remaining, 98, "the count survived in the table");
    let (count, failures) = until_ok(2, || stores.adapter.count(Count::new("user"))).await;
    assert_eq!(count, 1);
    assert_eq!(failures, 0, "the shared connection is already back");
    assert_works(&stores.adapter, 1).await;

    let (decision, _) = until_ok(2, || alone.consume(consume("ip|/b", now + 1))).await;
    assert_eq!(decision.remaining, 98);
    assert_eq!(
        cluster.backend_pids(&db).await.len(),
        2,
        "one backend for the stores, one for the lone store"
    );
}

// ---------------------------------------------------------------------------------------------
// (e) The backend dies inside a transaction.

#[tokio::test]
async fn a_transaction_cut_off_by_the_loss_fails_and_the_next_one_works() {
    let cluster = shared_cluster().await;
    let (db, adapter) = setup(&cluster, "transaction").await;
    assert_works(&adapter, 1).await;

    let (inside_tx, inside_rx) = oneshot::channel::<()>();
    let (go_tx, go_rx) = oneshot::channel::<()>();
    let in_flight = {
        let adapter = adapter.clone();
        tokio::spawn(async move {
            adapter
                .transaction(Box::new(move |tx| {
                    Box::pin(async move {
                        tx.create(user("inside")).await?;
                        let _ = inside_tx.send(());
                        let _ = go_rx.await;
                        tx.create(user("after_the_loss")).await?;
                        Ok(())
                    })
                }))
                .await
        })
    };
    inside_rx.await.expect("the transaction started");
    assert_eq!(cluster.terminate_backends(&db).await, 1);
    go_tx.send(()).expect("the callback waits");
    let outcome = bounded(in_flight).await.expect("no panic");
    let error = outcome.expect_err("the transaction lost its connection");
    assert_connection_error(&error);

    // Nothing of it was committed, and the next transaction works.
    let (_, failures) = until_ok(2, || {
        adapter.transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("next")).await?;
                Ok(())
            })
        }))
    })
    .await;
    assert!(failures <= 1, "{failures}");
    assert!(bounded(adapter.find_one(by_email("inside")))
        .await
        .expect("find")
        .is_none());
    assert!(bounded(adapter.find_one(by_email("next")))
        .await
        .expect("find")
        .is_some());
    assert_works(&adapter, 2).await;
}

/// A reconnect that cannot succeed (the database is gone) is not retried for a while: calls
/// fail at once with the same error instead of each trying again.
#[tokio::test]
async fn a_permanent_reconnect_error_is_not_retried() {
    let cluster = shared_cluster().await;
    let (db, adapter) = setup(&cluster, "gone").await;
    assert_works(&adapter, 1).await;

    let admin = cluster.admin().await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{db}\" WITH (FORCE)"))
        .await
        .expect("drop the database under the adapter");
    // The call in flight when the backend went away may fail with "connection closed"; the
    // next one reconnects and is told the database does not exist, after one attempt.
    let mut last = String::new();
    for _ in 0..2 {
        let error = bounded(adapter.count(Count::new("user")))
            .await
            .expect_err("the database is gone");
        last = error.to_string();
    }
    assert!(last.contains("3D000"), "{last}");
    assert!(last.contains("reconnecting failed"), "{last}");
    // Within the back-off for a permanent failure, the next calls get the same error without
    // a new attempt: many of them answer in far less time than one connection attempt.
    let started = std::time::Instant::now();
    for _ in 0..50 {
        let error = bounded(adapter.count(Count::new("user")))
            .await
            .expect_err("still gone");
        assert_eq!(error.to_string(), last);
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(2),
        "50 calls failed fast: {:?}",
        started.elapsed()
    );
}
