//! Transactions on a real server: commit, rollback, cancellation, panics, nesting, re-entry and
//! the gate that keeps ordinary calls out of an open transaction (behaviour.md §5, behaviour.md §10, Q16).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::{schema, text, user, user_count};
use crate::support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustauth_core::db::{
    Count, Create, DbAdapter, DbRecord, DbValue, FindMany, Sort, SortDirection, Where,
};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule, RateLimitStore};
use rustauth_tokio_postgres::TokioPostgresAdapter;
use time::OffsetDateTime;
use tokio::sync::Notify;

/// How long a call must stay blocked to count as "waiting on the gate".
const GATE_WAIT: Duration = Duration::from_millis(100);
/// Generous bound proving that something does not hang (never a performance assertion).
const NO_HANG: Duration = Duration::from_secs(5);

/// An adapter on a brand-new database with every core table (rate limits in the database).
async fn adapter(label: &str) -> TokioPostgresAdapter {
    setup(label).await.1
}

/// The URL of a brand-new database with every core table, and an adapter on it.
async fn setup(label: &str) -> (String, TokioPostgresAdapter) {
    let url = support::fresh_database(label).await;
    let schema = schema();
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    adapter
        .create_schema(&schema, None)
        .await
        .expect("create schema");
    (url, adapter)
}

/// Ids of every stored user, sorted.
async fn user_ids(adapter: &TokioPostgresAdapter) -> Vec<String> {
    adapter
        .find_many(FindMany::new("user").sort_by(Sort::new("id", SortDirection::Asc)))
        .await
        .expect("list users")
        .iter()
        .map(|record: &DbRecord| match record.get("id") {
            Some(DbValue::String(id)) => id.clone(),
            other => panic!("user id is not a string: {other:?}"),
        })
        .collect()
}

fn message(error: &RustAuthError) -> String {
    match error {
        RustAuthError::Adapter(message) => message.clone(),
        other => other.to_string(),
    }
}

#[tokio::test]
async fn callback_error_is_returned_and_nothing_is_written() {
    let adapter = adapter("tx_callback_error_is_returned_a").await;
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("u1")).await?;
                assert_eq!(tx.count(Count::new("user")).await?, 1, "visible inside");
                Err(RustAuthError::Api("callback failed on purpose".to_owned()))
            })
        }))
        .await;
    assert_eq!(
        result,
        Err(RustAuthError::Api("callback failed on purpose".to_owned())),
        "the callback's own error comes back unchanged"
    );
    assert_eq!(user_count(&adapter).await, 0);
}

#[tokio::test]
async fn successful_callback_commits() {
    let (url, adapter) = setup("tx_successful_callback_commits").await;
    adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("u1")).await?;
                tx.create(user("u2")).await?;
                Ok(())
            })
        }))
        .await
        .expect("transaction commits");
    assert_eq!(user_ids(&adapter).await, ["u1", "u2"]);

    // Committed means visible to a different connection too.
    let other = TokioPostgresAdapter::connect_with_schema(&url, schema())
        .await
        .expect("second connection");
    assert_eq!(user_count(&other).await, 2);
}

#[tokio::test]
async fn duplicate_primary_key_inside_reports_23505_and_writes_nothing() {
    let adapter = adapter("tx_duplicate_primary_key_inside").await;
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("dup")).await?;
                let mut again = user("dup");
                again
                    .data
                    .insert("email".to_owned(), text("other@example.com"));
                tx.create(again).await?;
                Ok(())
            })
        }))
        .await;
    let error = result.expect_err("duplicate id must fail");
    assert!(
        message(&error).contains("23505"),
        "unique violation keeps its SQLSTATE: {error}"
    );
    assert_eq!(user_count(&adapter).await, 0);
}

#[tokio::test]
async fn sql_error_inside_rolls_back_and_connection_stays_usable() {
    let adapter = adapter("tx_sql_error").await;
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("first")).await?;
                // `name` is NOT NULL: the server rejects this insert (23502) and aborts the
                // transaction; the callback hands that error back.
                let now = OffsetDateTime::now_utc();
                tx.create(
                    Create::new("user")
                        .data("id", text("second"))
                        .data("email", text("second@example.com"))
                        .data("email_verified", DbValue::Boolean(false))
                        .data("created_at", DbValue::Timestamp(now))
                        .data("updated_at", DbValue::Timestamp(now)),
                )
                .await?;
                Ok(())
            })
        }))
        .await;
    let error = result.expect_err("not-null violation must fail");
    assert!(message(&error).contains("23502"), "{error}");
    assert_eq!(
        user_count(&adapter).await,
        0,
        "the first insert was rolled back"
    );

    // The connection is not stuck in the aborted transaction: plain calls and a new
    // transaction both work.
    adapter.create(user("plain")).await.expect("plain create");
    adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("in_tx")).await?;
                Ok(())
            })
        }))
        .await
        .expect("next transaction commits");
    assert_eq!(user_ids(&adapter).await, ["in_tx", "plain"]);
}

#[tokio::test]
async fn transaction_dropped_by_timeout_after_insert_leaves_nothing() {
    let adapter = adapter("tx_transaction_dropped_by_timeo").await;
    let inserted = Arc::new(AtomicBool::new(false));
    let inserted_in_tx = Arc::clone(&inserted);
    let outcome = tokio::time::timeout(
        Duration::from_millis(100),
        adapter.transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(user("cancelled")).await?;
                inserted_in_tx.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
        })),
    )
    .await;
    assert!(outcome.is_err(), "the timeout must cancel the transaction");
    assert!(
        inserted.load(Ordering::SeqCst),
        "the insert ran before the cancellation"
    );
    assert_eq!(user_count(&adapter).await, 0);
}

#[tokio::test]
async fn after_a_cancelled_transaction_a_new_one_commits_only_its_row() {
    let adapter = adapter("tx_after_a_cancelled_transactio").await;
    let outcome = tokio::time::timeout(
        Duration::from_millis(100),
        adapter.transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("aborted")).await?;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Ok(())
            })
        })),
    )
    .await;
    assert!(outcome.is_err(), "the timeout must cancel the transaction");

    adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("kept")).await?;
                Ok(())
            })
        }))
        .await
        .expect("new transaction commits");
    assert_eq!(user_ids(&adapter).await, ["kept"]);
}

#[tokio::test]
async fn panic_inside_callback_rolls_back_and_releases_the_gate() {
    let adapter = adapter("tx_panic").await;
    let in_task = adapter.clone();
    let task = tokio::spawn(async move {
        in_task
            .transaction(Box::new(|tx| {
                Box::pin(async move {
                    tx.create(user("panicked")).await?;
                    panic!("callback panics on purpose");
                })
            }))
            .await
    });
    let joined = task.await;
    assert!(
        joined.as_ref().is_err_and(|error| error.is_panic()),
        "the task must have panicked: {joined:?}"
    );

    // The gate is released (after the rollback) and nothing was committed.
    let count = tokio::time::timeout(NO_HANG, adapter.count(Count::new("user")))
        .await
        .expect("gate released after the panic")
        .expect("count");
    assert_eq!(count, 0);

    tokio::time::timeout(
        NO_HANG,
        adapter.transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("after")).await?;
                Ok(())
            })
        })),
    )
    .await
    .expect("a new transaction can take the gate")
    .expect("and commits");
    assert_eq!(user_ids(&adapter).await, ["after"]);
}

#[tokio::test]
async fn nested_transaction_is_rejected() {
    let adapter = adapter("tx_nested_transaction_is_reject").await;
    let inner_ran = Arc::new(AtomicBool::new(false));
    let inner_ran_in_tx = Arc::clone(&inner_ran);
    let nested = adapter
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(user("outer")).await?;
                tx.transaction(Box::new(move |_inner| {
                    Box::pin(async move {
                        inner_ran_in_tx.store(true, Ordering::SeqCst);
                        Ok(())
                    })
                }))
                .await
            })
        }))
        .await;
    let error = nested.expect_err("nested transaction must fail");
    assert!(message(&error).contains("nested"), "{error}");
    assert!(
        !inner_ran.load(Ordering::SeqCst),
        "the nested callback never runs"
    );
    assert_eq!(user_count(&adapter).await, 0);

    // Swallowing the nested error keeps the outer transaction healthy.
    adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("outer_ok")).await?;
                let nested = tx
                    .transaction(Box::new(|_inner| Box::pin(async { Ok(()) })))
                    .await;
                assert!(nested.is_err_and(|error| message(&error).contains("nested")));
                tx.create(user("outer_ok_2")).await?;
                Ok(())
            })
        }))
        .await
        .expect("outer transaction commits");
    assert_eq!(user_ids(&adapter).await, ["outer_ok", "outer_ok_2"]);
}

#[tokio::test]
async fn outer_adapter_inside_its_own_transaction_errors_instead_of_deadlocking() {
    let adapter = adapter("tx_adapter").await;
    let outer = adapter.clone();
    let outcome = tokio::time::timeout(
        NO_HANG,
        adapter.transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(user("inside")).await?;
                let reentrant = tokio::time::timeout(NO_HANG, outer.count(Count::new("user")))
                    .await
                    .expect("the outer adapter must answer instead of deadlocking");
                assert!(
                    matches!(reentrant, Err(RustAuthError::Adapter(_))),
                    "re-entry is an adapter error: {reentrant:?}"
                );
                let reentrant_create = tokio::time::timeout(NO_HANG, outer.create(user("outer")))
                    .await
                    .expect("the outer adapter must answer instead of deadlocking");
                assert!(reentrant_create.is_err(), "{reentrant_create:?}");
                let nested_via_outer = tokio::time::timeout(
                    NO_HANG,
                    outer.transaction(Box::new(|_tx| Box::pin(async { Ok(()) }))),
                )
                .await
                .expect("an outer transaction from inside must not deadlock");
                assert!(nested_via_outer.is_err(), "{nested_via_outer:?}");
                // The transaction itself is still usable and commits.
                tx.create(user("inside_2")).await?;
                Ok(())
            })
        })),
    )
    .await
    .expect("the transaction must not hang");
    outcome.expect("the transaction still commits");
    assert_eq!(user_ids(&adapter).await, ["inside", "inside_2"]);
}

#[tokio::test]
async fn rate_limit_store_inside_its_adapters_transaction_errors_and_can_roll_back() {
    let adapter = adapter("tx_store").await;
    let store = adapter.rate_limit_store();
    let outcome = tokio::time::timeout(
        NO_HANG,
        adapter.transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(user("rolled_back")).await?;
                let consumed = tokio::time::timeout(
                    NO_HANG,
                    store.consume(RateLimitConsumeInput {
                        key: "127.0.0.1|/sign-in/email".to_owned(),
                        rule: RateLimitRule {
                            window: time::Duration::seconds(10),
                            max: 3,
                        },
                        now_ms: 1_000,
                    }),
                )
                .await
                .expect("consume must answer instead of deadlocking");
                // Hand the re-entry error back: the transaction rolls back.
                consumed.map(|_| ())
            })
        })),
    )
    .await
    .expect("the transaction must not hang");
    assert!(
        matches!(outcome, Err(RustAuthError::Adapter(_))),
        "re-entrant consume fails with an adapter error: {outcome:?}"
    );
    assert_eq!(user_count(&adapter).await, 0, "rolled back");
    assert_eq!(
        adapter
            .count(Count::new("rate_limit"))
            .await
            .expect("count rate limits"),
        0
    );

    // Outside any transaction the same store works again.
    let decision = adapter
        .rate_limit_store()
        .consume(RateLimitConsumeInput {
            key: "k".to_owned(),
            rule: RateLimitRule {
                window: time::Duration::seconds(10),
                max: 3,
            },
            now_ms: 1_000,
        })
        .await
        .expect("consume outside the transaction");
    assert!(decision.permitted);
}

#[tokio::test]
async fn gate_plain_call_waits_for_open_transaction_then_sees_committed_data() {
    let adapter = adapter("tx_gate").await;
    let started = Arc::new(Notify::new());
    let release = Arc::new(Notify::new());
    let (started_tx, release_tx) = (Arc::clone(&started), Arc::clone(&release));
    let in_task = adapter.clone();
    let transaction = tokio::spawn(async move {
        in_task
            .transaction(Box::new(move |tx| {
                Box::pin(async move {
                    tx.create(user("committed")).await?;
                    started_tx.notify_one();
                    release_tx.notified().await;
                    Ok(())
                })
            }))
            .await
    });
    started.notified().await;

    let reader = adapter.clone();
    let mut count = tokio::spawn(async move {
        reader
            .count(Count::new("user").where_clause(Where::new("id", text("committed"))))
            .await
    });
    assert!(
        tokio::time::timeout(GATE_WAIT, &mut count).await.is_err(),
        "a plain call must wait while the transaction is open"
    );

    release.notify_one();
    transaction
        .await
        .expect("transaction task")
        .expect("transaction commits");
    let seen = tokio::time::timeout(NO_HANG, count)
        .await
        .expect("the waiting call finishes after the transaction")
        .expect("count task")
        .expect("count");
    assert_eq!(seen, 1, "the waiting call sees the committed row");
}

#[tokio::test]
async fn cancellation_while_a_statement_is_in_flight_still_rolls_back() {
    let (url, adapter) = setup("tx_inflight").await;
    // Another session locks `users`, so the transaction's insert blocks on the server.
    let locker = support::connect(&url).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock users");

    let outcome = tokio::time::timeout(
        Duration::from_millis(100),
        adapter.transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("blocked")).await?;
                Ok(())
            })
        })),
    )
    .await;
    assert!(
        outcome.is_err(),
        "the insert is still blocked when the timeout fires"
    );

    // The count queues behind the rollback, which queues behind the blocked insert.
    let reader = adapter.clone();
    let count = tokio::spawn(async move { reader.count(Count::new("user")).await });
    locker.batch_execute("COMMIT").await.expect("unlock users");
    let seen = tokio::time::timeout(NO_HANG, count)
        .await
        .expect("the count finishes once the lock is gone")
        .expect("count task")
        .expect("count");
    assert_eq!(
        seen, 0,
        "the insert that finished after the cancellation was rolled back"
    );

    adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("later")).await?;
                Ok(())
            })
        }))
        .await
        .expect("next transaction commits");
    assert_eq!(user_ids(&adapter).await, ["later"]);
}

#[tokio::test]
async fn a_different_connection_inside_a_callback_is_not_refused() {
    let (url, adapter) = setup("tx_other").await;
    let other = TokioPostgresAdapter::connect_with_schema(&url, schema())
        .await
        .expect("second connection");
    adapter
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(user("uncommitted")).await?;
                let seen = tokio::time::timeout(NO_HANG, other.count(Count::new("user")))
                    .await
                    .expect("another connection does not wait for this transaction")?;
                assert_eq!(
                    seen, 0,
                    "the other connection does not see uncommitted rows"
                );
                Ok(())
            })
        }))
        .await
        .expect("transaction commits");
    assert_eq!(user_count(&adapter).await, 1);
}

#[tokio::test]
async fn outer_adapter_inside_a_transaction_of_another_connection_inside_its_own_errors() {
    let (url, adapter) = setup("tx_stacked").await;
    let other = TokioPostgresAdapter::connect_with_schema(&url, schema())
        .await
        .expect("second connection");
    let outer = adapter.clone();
    let outcome = tokio::time::timeout(
        NO_HANG,
        adapter.transaction(Box::new(move |_tx| {
            Box::pin(async move {
                other
                    .transaction(Box::new(move |_other_tx| {
                        Box::pin(async move {
                            // Still inside `adapter`'s transaction: the outer adapter must
                            // refuse instead of waiting for its own transaction to end.
                            let reentrant =
                                tokio::time::timeout(NO_HANG, outer.count(Count::new("user")))
                                    .await
                                    .expect("the outer adapter must answer, not deadlock");
                            assert!(reentrant.is_err(), "{reentrant:?}");
                            Ok(())
                        })
                    }))
                    .await
            })
        })),
    )
    .await;
    outcome
        .expect("the transactions must not hang")
        .expect("both transactions commit");
}

#[tokio::test]
async fn a_swallowed_sql_error_makes_the_transaction_fail_instead_of_a_silent_rollback() {
    let adapter = adapter("tx_swallowed").await;
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user("kept?")).await?;
                // A duplicate primary key: the server aborts the transaction. The callback
                // ignores the error and returns Ok, so COMMIT could only roll back.
                let duplicate = tx.create(user("kept?")).await;
                assert!(duplicate.is_err());
                Ok(())
            })
        }))
        .await;
    let error = result.expect_err("an aborted transaction must not report success");
    assert!(message(&error).contains("rolled back"), "{error}");
    assert_eq!(user_count(&adapter).await, 0);
    // The connection is usable afterwards.
    adapter.create(user("after")).await.expect("plain create");
    assert_eq!(user_count(&adapter).await, 1);
}
