//! Many connections, one fast path: `max_connections=N` (connection string) and
//! `TokioPostgresStoresBuilder::max_connections`. Ordinary calls never wait behind a
//! transaction while fewer transactions than connections are open, a task spawned inside a
//! transaction callback can use the outer adapter, and a lost connection fails only the
//! calls in flight on it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use crate::crud_common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crud_common::{at, default_schema, install, s, seed_user};
use rustauth_core::db::{Count, DbAdapter, FindOne, Where};
use rustauth_tokio_postgres::{TokioPostgresAdapter, TokioPostgresStores};

fn with(url: &str, parameters: &str) -> String {
    format!("{url}?{parameters}")
}

async fn adapter(label: &str, connections: usize) -> (TokioPostgresAdapter, String) {
    let url = support::fresh_database(label).await;
    let tagged = with(
        &url,
        &format!("max_connections={connections}&application_name={label}"),
    );
    let adapter = TokioPostgresAdapter::connect_with_schema(&tagged, default_schema())
        .await
        .expect("connect");
    install(&adapter, &default_schema()).await;
    (adapter, url)
}

/// The server processes of this database tagged with `application_name`.
async fn backends(raw: &tokio_postgres::Client, label: &str) -> Vec<i32> {
    raw.query(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
         AND application_name = $1 ORDER BY pid",
        &[&label],
    )
    .await
    .expect("pg_stat_activity")
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[tokio::test]
async fn connect_opens_every_connection_of_the_set() {
    let (_adapter, url) = adapter("set_opens", 3).await;
    let raw = support::connect(&url).await;
    assert_eq!(backends(&raw, "set_opens").await.len(), 3);

    let stores = TokioPostgresStores::builder()
        .max_connections(2)
        .connect(&with(
            &url,
            "application_name=set_builder&max_connections=5",
        ))
        .await
        .expect("stores");
    assert_eq!(
        backends(&raw, "set_builder").await.len(),
        2,
        "the builder's count wins over the string's"
    );
    drop(stores);
}

#[tokio::test]
async fn max_connections_out_of_range_is_refused_before_connecting() {
    let url = support::fresh_database("set_range").await;
    for bad in ["0", "65", "many", "-1"] {
        let error = TokioPostgresAdapter::connect(&with(&url, &format!("max_connections={bad}")))
            .await
            .expect_err("refused");
        assert!(error.to_string().contains("`max_connections`"), "{error}");
    }
}

/// While a transaction holds one connection, ordinary calls run on the others at once; with
/// one connection they wait for it (0.3.2's behaviour, kept for a single connection).
#[tokio::test]
async fn ordinary_calls_do_not_wait_behind_an_open_transaction() {
    for (connections, waits) in [(2, false), (4, false), (1, true)] {
        let label = format!("set_hol_{connections}");
        let (adapter, _) = adapter(&label, connections).await;
        seed_user(&adapter, "u1", "a@example.com", at(0)).await;
        let (opened, is_open) = tokio::sync::oneshot::channel::<()>();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let holder = {
            let adapter = adapter.clone();
            tokio::spawn(async move {
                adapter
                    .transaction(Box::new(move |tx| {
                        Box::pin(async move {
                            tx.count(Count::new("user")).await?;
                            let _ = opened.send(());
                            let _ = finished.await;
                            Ok(())
                        })
                    }))
                    .await
            })
        };
        is_open.await.expect("the transaction is open");
        let lookups = async {
            for _ in 0..20 {
                adapter
                    .find_one(FindOne::new("user").where_clause(Where::new("id", s("u1"))))
                    .await
                    .expect("lookup")
                    .expect("the user");
            }
        };
        let done = tokio::time::timeout(Duration::from_millis(500), lookups)
            .await
            .is_ok();
        assert_eq!(
            done, !waits,
            "{connections} connection(s): lookups finished during the transaction: {done}"
        );
        let _ = finish.send(());
        holder.await.expect("holder").expect("transaction commits");
    }
}

/// A task spawned inside a transaction callback that calls the outer adapter completes (with
/// one connection it would wait for the transaction that waits for it).
#[tokio::test]
async fn a_task_spawned_in_a_transaction_callback_can_use_the_outer_adapter() {
    let (adapter, _) = adapter("set_spawned", 2).await;
    seed_user(&adapter, "u1", "a@example.com", at(0)).await;
    let outer = adapter.clone();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        adapter.transaction(Box::new(move |tx| {
            Box::pin(async move {
                let count = tokio::spawn(async move { outer.count(Count::new("user")).await })
                    .await
                    .expect("spawned task")?;
                assert_eq!(count, 1);
                tx.count(Count::new("user")).await?;
                Ok(())
            })
        })),
    )
    .await;
    assert!(matches!(result, Ok(Ok(()))), "{result:?}");
}

/// Calls from inside a callback on the outer adapter (same task) use another connection when
/// there is one; with one connection they are refused instead of deadlocking.
#[tokio::test]
async fn outer_calls_from_inside_a_callback_use_another_connection() {
    for (connections, refused) in [(2, false), (1, true)] {
        let (adapter, _) = adapter(&format!("set_reentry_{connections}"), connections).await;
        let outer = adapter.clone();
        let result = adapter
            .transaction(Box::new(move |_tx| {
                Box::pin(async move {
                    outer.count(Count::new("user")).await?;
                    Ok(())
                })
            }))
            .await;
        assert_eq!(result.is_err(), refused, "{connections}: {result:?}");
    }
}

/// Killing one backend under load fails only calls in flight on it; the others go on and the
/// lost connection is replaced on its next call.
#[tokio::test]
async fn a_killed_backend_fails_only_its_own_calls() {
    let (adapter, url) = adapter("set_kill", 4).await;
    seed_user(&adapter, "u1", "a@example.com", at(0)).await;
    let raw = support::connect(&url).await;
    let before = backends(&raw, "set_kill").await;
    assert_eq!(before.len(), 4);
    let failed = Arc::new(AtomicUsize::new(0));
    let succeeded = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let adapter = adapter.clone();
        let failed = Arc::clone(&failed);
        let succeeded = Arc::clone(&succeeded);
        tasks.push(tokio::spawn(async move {
            for _ in 0..150 {
                match adapter
                    .find_one(FindOne::new("user").where_clause(Where::new("id", s("u1"))))
                    .await
                {
                    Ok(Some(_)) => succeeded.fetch_add(1, Ordering::SeqCst),
                    Ok(None) => panic!("the user vanished"),
                    Err(error) => {
                        let text = error.to_string();
                        assert!(
                            text.contains("SQLSTATE 57P01")
                                || text.contains("closed")
                                || text.contains("connection"),
                            "only lost-connection errors: {text}"
                        );
                        failed.fetch_add(1, Ordering::SeqCst)
                    }
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    raw.execute("SELECT pg_terminate_backend($1)", &[&before[1]])
        .await
        .expect("terminate one backend");
    for task in tasks {
        tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("no call is stuck")
            .expect("task");
    }
    let failed = failed.load(Ordering::SeqCst);
    let succeeded = succeeded.load(Ordering::SeqCst);
    assert_eq!(failed + succeeded, 16 * 150);
    // At most the calls pipelined on the killed connection at that moment (16 tasks spread
    // over 4 connections); the other connections never failed a call.
    assert!(failed <= 16, "{failed} calls failed");
    let after = backends(&raw, "set_kill").await;
    assert_eq!(
        after.len(),
        4,
        "the lost connection was replaced: {after:?}"
    );
    assert!(!after.contains(&before[1]));
    for pid in [before[0], before[2], before[3]] {
        assert!(after.contains(&pid), "the other connections were kept");
    }
}

/// Transactions may take every connection; an ordinary call then waits for one transaction,
/// and the connection that transaction releases goes to it, not to the next transaction.
/// A transaction opened from inside another's callback does not wait for itself.
#[tokio::test]
async fn a_waiting_call_gets_the_next_released_connection() {
    let (adapter, _) = adapter("set_tx_limit", 2).await;
    seed_user(&adapter, "u1", "a@example.com", at(0)).await;
    let hold = |adapter: TokioPostgresAdapter| {
        let (opened, is_open) = tokio::sync::oneshot::channel::<()>();
        let (finish, finished) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            adapter
                .transaction(Box::new(move |tx| {
                    Box::pin(async move {
                        tx.count(Count::new("user")).await?;
                        let _ = opened.send(());
                        let _ = finished.await;
                        Ok(())
                    })
                }))
                .await
        });
        (is_open, finish, task)
    };
    let (first_open, finish_first, first) = hold(adapter.clone());
    first_open.await.expect("the first transaction is open");
    let (second_open, finish_second, second) = hold(adapter.clone());
    tokio::time::timeout(Duration::from_secs(5), second_open)
        .await
        .expect("a second transaction takes the other connection")
        .expect("open");
    // Both connections are inside transactions: an ordinary call waits.
    let order = Arc::new(AtomicUsize::new(0));
    let ordinary = {
        let adapter = adapter.clone();
        let order = Arc::clone(&order);
        tokio::spawn(async move {
            let count = adapter.count(Count::new("user")).await;
            (count, order.fetch_add(1, Ordering::SeqCst))
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !ordinary.is_finished(),
        "every connection is in a transaction"
    );
    let third = {
        let adapter = adapter.clone();
        let order = Arc::clone(&order);
        tokio::spawn(async move {
            let result = crud_common::counting_transaction(&adapter).await;
            (result, order.fetch_add(1, Ordering::SeqCst))
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = finish_first.send(());
    first.await.expect("first").expect("first commits");
    let (count, ordinary_place) = tokio::time::timeout(Duration::from_secs(5), ordinary)
        .await
        .expect("the waiting call gets the released connection")
        .expect("ordinary");
    assert_eq!(count.expect("count"), 1);
    let (result, third_place) = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("the third transaction runs after the waiting call")
        .expect("third");
    result.expect("third commits");
    assert!(ordinary_place < third_place, "the waiting call went first");
    let _ = finish_second.send(());
    second.await.expect("second").expect("second commits");

    // A transaction on the outer adapter from inside a callback does not wait for itself.
    let outer = adapter.clone();
    let nested = tokio::time::timeout(
        Duration::from_secs(5),
        adapter.transaction(Box::new(move |_tx| {
            Box::pin(async move { crud_common::counting_transaction(&outer).await })
        })),
    )
    .await;
    assert!(matches!(nested, Ok(Ok(()))), "{nested:?}");
}
