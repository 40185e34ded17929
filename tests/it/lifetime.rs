//! A connection's life as an operator sees it: the fail-fast window after a failed reconnect
//! (counted in connection attempts through the proxy), a read-only server met by a generic
//! write, and the `tracing` events for each step.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::crud_common::{at, default_schema, install, s, seed_user};
use crate::leases::{hold_all, release_all};
use crate::support;
use crate::support_proxy::CountingProxy;
use crate::tracing::{capture_on_this_thread, Capture};

use std::time::{Duration, Instant};

use rustauth_core::db::{Count, DbAdapter, DeleteMany, FindOne, Where};
use rustauth_tokio_postgres::TokioPostgresAdapter;

/// The database name in a test URL.
fn database_of(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split('?').next().unwrap_or_default().to_owned()
}

/// A key/value string to the database of `url` through `proxy`, tagged `application_name`.
fn through(proxy: &CountingProxy, url: &str, tag: &str, extra: &str) -> String {
    let config = proxy.config();
    let mut string = format!(
        "host=127.0.0.1 port={} dbname={} application_name={tag} {extra}",
        proxy.address().port(),
        database_of(url)
    );
    if let Some(user) = config.get_user() {
        string.push_str(&format!(" user={user}"));
    }
    string
}

/// Terminates every backend tagged `tag`, and waits until the adapter has seen them go.
async fn kill(admin: &tokio_postgres::Client, adapter: &TokioPostgresAdapter, tag: &str) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&tag],
        )
        .await
        .expect("terminate");
    tokio::time::timeout(Duration::from_secs(20), async {
        while adapter.status().connected > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the adapter sees its connection closed");
}

/// Lets the database accept connections, or refuse them (SQLSTATE 55000: a failure that does
/// not last).
async fn allow_connections(admin: &tokio_postgres::Client, database: &str, allow: bool) {
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS {allow}"
        ))
        .await
        .expect("ALLOW_CONNECTIONS");
}

/// Makes sessions that start from now on read-only (`default_transaction_read_only`), or
/// writable again; sessions already open keep what they started with.
async fn read_only_sessions(admin: &tokio_postgres::Client, database: &str, on: bool) {
    let setting = if on {
        "SET default_transaction_read_only = on"
    } else {
        "RESET default_transaction_read_only"
    };
    admin
        .batch_execute(&format!("ALTER DATABASE \"{database}\" {setting}"))
        .await
        .expect("default_transaction_read_only");
}

fn by_id() -> FindOne {
    FindOne::new("user").where_clause(Where::new("id", s("u1")))
}

/// After a failed reconnect cycle, calls fail at once with its error and make no connection
/// attempt until the next cycle is due (200 ms after a transient failure, 5 s after one that
/// would repeat, such as a missing database); then the next call tries again.
#[tokio::test]
async fn calls_within_the_fail_fast_window_make_no_connection_attempt() {
    let url = support::fresh_database("life_fail_fast").await;
    let database = database_of(&url);
    let admin = support::connect(&support::server_url().await).await;
    let proxy = CountingProxy::start(&url).await;
    let tag = "life_fail_fast";
    let adapter = TokioPostgresAdapter::connect_with_schema(
        &through(&proxy, &url, tag, "connect_timeout=5"),
        default_schema(),
    )
    .await
    .expect("connect");
    install(&adapter, &default_schema()).await;
    seed_user(&adapter, "u1", "a@example.com", at(0)).await;
    assert_eq!(proxy.connections(), 1);

    // A transient failure: the database refuses connections for a while.
    allow_connections(&admin, &database, false).await;
    kill(&admin, &adapter, tag).await;
    let first = adapter
        .find_one(by_id())
        .await
        .expect_err("cannot reconnect");
    let failed_at = Instant::now();
    assert!(first.to_string().contains("reconnecting failed"), "{first}");
    assert_eq!(proxy.connections(), 2, "one attempt");
    let again = adapter
        .count(Count::new("user"))
        .await
        .expect_err("fails fast");
    if failed_at.elapsed() < Duration::from_millis(150) {
        assert_eq!(proxy.connections(), 2, "no attempt inside the window");
        assert_eq!(again.to_string(), first.to_string());
    }
    allow_connections(&admin, &database, true).await;
    // The window is a time: wait it out, then the next call reconnects.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(adapter
        .find_one(by_id())
        .await
        .expect("reconnected")
        .is_some());
    assert_eq!(proxy.connections(), 3, "one more attempt, which succeeded");

    // A failure that would repeat: the database is gone. Five seconds without an attempt.
    kill(&admin, &adapter, tag).await;
    admin
        .batch_execute(&format!("DROP DATABASE \"{database}\" WITH (FORCE)"))
        .await
        .expect("drop the database");
    let gone = adapter.find_one(by_id()).await.expect_err("no database");
    let failed_at = Instant::now();
    assert!(gone.to_string().contains("3D000"), "{gone}");
    let attempts = proxy.connections();
    let mut calls = 0;
    while failed_at.elapsed() < Duration::from_secs(2) {
        let error = adapter
            .count(Count::new("user"))
            .await
            .expect_err("fails fast");
        assert_eq!(error.to_string(), gone.to_string());
        calls += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(calls > 10, "{calls}");
    assert_eq!(
        proxy.connections(),
        attempts,
        "{calls} calls inside the window made no connection attempt"
    );
}

/// A generic-path write (`delete_many` on users) that meets a read-only server (SQLSTATE
/// 25006) fails, and the next call connects again, to a writable server.
#[tokio::test]
async fn a_generic_write_on_a_read_only_server_makes_the_next_call_reconnect() {
    let url = support::fresh_database("life_read_only").await;
    let database = database_of(&url);
    let admin = support::connect(&support::server_url().await).await;
    let setup = TokioPostgresAdapter::connect_with_schema(&url, default_schema())
        .await
        .expect("connect");
    install(&setup, &default_schema()).await;
    seed_user(&setup, "u1", "a@example.com", at(0)).await;
    drop(setup);
    // Sessions started now are read-only; the adapter's is one of them.
    read_only_sessions(&admin, &database, true).await;
    let tag = "life_read_only";
    let adapter = TokioPostgresAdapter::connect_with_schema(
        &format!("{url}?application_name={tag}"),
        default_schema(),
    )
    .await
    .expect("connect");
    read_only_sessions(&admin, &database, false).await;
    let before: Vec<i32> = backends(&admin, tag).await;
    let refused = adapter
        .delete_many(DeleteMany::new("user").where_clause(Where::new("id", s("nobody"))))
        .await
        .expect_err("read-only");
    assert!(refused.to_string().contains("25006"), "{refused}");
    // The next call leaves the read-only session for a writable one.
    let deleted = adapter
        .delete_many(DeleteMany::new("user").where_clause(Where::new("id", s("nobody"))))
        .await
        .expect("a writable server");
    assert_eq!(deleted, 0);
    let after = backends(&admin, tag).await;
    assert_eq!(after.len(), 1);
    assert_ne!(before, after, "a new server session");
}

async fn backends(admin: &tokio_postgres::Client, tag: &str) -> Vec<i32> {
    admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 ORDER BY pid",
            &[&tag],
        )
        .await
        .expect("pg_stat_activity")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// What an operator needs to see is an event (target `rustauth_tokio_postgres`): a connection
/// opened, lost, re-established, a reconnect that failed, a read-only server, an abandoned
/// transaction rolled back, a long wait and a time-out.
#[tokio::test(flavor = "current_thread")]
async fn the_life_of_a_connection_is_told_in_events() {
    let url = support::fresh_database("life_events").await;
    let database = database_of(&url);
    let admin = support::connect(&support::server_url().await).await;
    let tag = "life_events";
    let capture = Capture::default();
    let _guard = capture_on_this_thread(&capture);
    let adapter = TokioPostgresAdapter::connect_with_schema(
        &format!("{url}?application_name={tag}&acquire_timeout=1.5"),
        default_schema(),
    )
    .await
    .expect("connect");
    let opened = capture.events("connection opened");
    assert_eq!(opened.len(), 1, "{opened:#?}");
    assert!(opened[0].fields.contains_key("host") && opened[0].fields.contains_key("duration_ms"));
    install(&adapter, &default_schema()).await;
    seed_user(&adapter, "u1", "a@example.com", at(0)).await;

    // Lost, then re-established by the next call.
    kill(&admin, &adapter, tag).await;
    let lost = capture.events("connection lost");
    assert_eq!(lost.len(), 1, "{lost:#?}");
    assert!(lost[0].fields["why"].contains("57P01"), "{lost:#?}");
    assert!(adapter
        .find_one(by_id())
        .await
        .expect("reconnects")
        .is_some());
    assert_eq!(
        capture
            .events("connection unusable; connecting again")
            .len(),
        1
    );
    assert_eq!(capture.events("connection re-established").len(), 1);

    // A reconnect cycle that fails.
    allow_connections(&admin, &database, false).await;
    kill(&admin, &adapter, tag).await;
    adapter
        .find_one(by_id())
        .await
        .expect_err("cannot reconnect");
    let failed =
        capture.events("reconnecting failed; calls fail at once until the next attempt is due");
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].fields["permanent"], "false");
    allow_connections(&admin, &database, true).await;
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert!(adapter
        .find_one(by_id())
        .await
        .expect("reconnects")
        .is_some());

    // A read-only server.
    read_only_sessions(&admin, &database, true).await;
    kill(&admin, &adapter, tag).await;
    assert!(adapter
        .find_one(by_id())
        .await
        .expect("reconnects")
        .is_some());
    read_only_sessions(&admin, &database, false).await;
    adapter
        .delete_many(DeleteMany::new("session").where_clause(Where::new("id", s("x"))))
        .await
        .expect_err("read-only");
    assert_eq!(
        capture
            .events(
                "connection found on a read-only server (SQLSTATE 25006): the next call \
                 connects again, to a writable server"
            )
            .len(),
        1
    );
    assert!(adapter.find_one(by_id()).await.expect("writable").is_some());

    // An abandoned transaction.
    let abandoned = tokio::time::timeout(
        Duration::from_millis(200),
        adapter.transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.count(Count::new("user")).await?;
                std::future::pending::<()>().await;
                Ok(())
            })
        })),
    )
    .await;
    assert!(abandoned.is_err(), "dropped half-way");
    tokio::time::timeout(Duration::from_secs(20), async {
        while adapter.status().transactions > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .expect("the rollback ends the transaction");
    assert_eq!(capture.events("abandoned transaction rolled back").len(), 1);

    // A long wait (over a second), then a time-out (1.5 s).
    let (mut releases, holders) = hold_all(&adapter, 1).await;
    let release = releases.remove(0);
    let releaser = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let _ = release.send(());
    });
    adapter
        .count(Count::new("user"))
        .await
        .expect("waited, then served");
    let long = capture.events("waited long for a connection of the set");
    assert_eq!(long.len(), 1, "{long:#?}");
    assert_eq!(long[0].fields["want"], "call");
    release_all(releases, holders).await;
    releaser.await.expect("releaser");

    let (releases, holders) = hold_all(&adapter, 1).await;
    adapter
        .count(Count::new("user"))
        .await
        .expect_err("timed out");
    let timed_out = capture.events("timed out waiting for a connection of the set");
    assert_eq!(timed_out.len(), 1, "{timed_out:#?}");
    assert_eq!(timed_out[0].fields["transactions"], "1");
    release_all(releases, holders).await;

    // No event carries a connection string or a password.
    for event in capture.0.lock().unwrap().iter() {
        for value in event.1.fields.values() {
            assert!(!value.contains("postgres://"), "{event:?}");
        }
    }
}

/// A connection made again prepares the typed statements its first connect prepared, before
/// its first call: even when that call is inside a transaction (where nothing may be
/// prepared, since a failed Parse would abort it), typed statements serve it.
#[tokio::test]
async fn a_reconnected_connection_prepares_its_typed_statements_first() {
    let url = support::fresh_database("life_reprepare").await;
    let admin = support::connect(&support::server_url().await).await;
    let setup = TokioPostgresAdapter::connect_with_schema(&url, default_schema())
        .await
        .expect("connect");
    install(&setup, &default_schema()).await;
    seed_user(&setup, "u1", "a@example.com", at(0)).await;
    drop(setup);
    let tag = "life_reprepare";
    // Connected after the tables exist: its first connect prepares the typed statements.
    let adapter = TokioPostgresAdapter::connect_with_schema(
        &format!("{url}?application_name={tag}"),
        default_schema(),
    )
    .await
    .expect("connect");
    let in_transaction = |adapter: TokioPostgresAdapter| async move {
        adapter
            .transaction(Box::new(|tx| {
                Box::pin(async move {
                    let found = tx.find_one(by_id()).await?;
                    assert!(found.is_some());
                    Ok(())
                })
            }))
            .await
            .expect("transaction");
    };
    let before = adapter.typed_call_count();
    in_transaction(adapter.clone()).await;
    assert_eq!(
        adapter.typed_call_count(),
        before + 1,
        "typed from the first connect"
    );
    kill(&admin, &adapter, tag).await;
    in_transaction(adapter.clone()).await;
    assert_eq!(
        adapter.typed_call_count(),
        before + 2,
        "typed on the connection made again, inside a transaction"
    );
}
