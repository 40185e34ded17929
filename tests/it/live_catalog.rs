//! The live database decides: tables altered by another process, values refused on the client
//! inside a transaction, a rate-limit table with an `integer` count, columns the adapter cannot
//! read, and typed lookups that must not drop a where clause.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use crate::crud_common;

use crud_common::{
    adapter_with, at, default_adapter, extended_schema, s, seed_gadget, seed_session, seed_user,
    string,
};
use rustauth_core::db::{
    Count, Create, DbAdapter, DbSchema, DbValue, FindMany, FindOne, Update, Where, WhereOperator,
};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule, RateLimitStore};
use rustauth_tokio_postgres::{TokioPostgresAdapter, TokioPostgresRateLimitStore};

fn unprepared(url: &str) -> String {
    format!("{url}?statement_mode=unprepared")
}

/// Another process widens a column under cached statements: a value that only fits the new
/// type is accepted (PostgreSQL raises nothing for a parameter type change, so the cached
/// statement is prepared again when the value does not fit it), in both statement modes and
/// inside a transaction.
#[tokio::test]
async fn a_column_widened_by_another_process_accepts_the_wider_values() {
    let schema = extended_schema();
    let (prepared, url) = adapter_with("live_widened", &schema).await;
    let unprepared = TokioPostgresAdapter::connect_with_schema(&unprepared(&url), schema.clone())
        .await
        .expect("unprepared adapter");
    let raw = support::connect(&url).await;
    raw.batch_execute("ALTER TABLE gadgets ALTER COLUMN number TYPE integer")
        .await
        .expect("narrow");
    for (index, adapter) in [&prepared, &unprepared].into_iter().enumerate() {
        seed_gadget(adapter, &format!("g{index}"), 7, at(0)).await;
        // The narrow column refuses 2^40 on the client, naming it; nothing is written.
        let error = adapter
            .update(
                Update::new("gadget")
                    .where_clause(Where::new("id", s(&format!("g{index}"))))
                    .data("number", DbValue::Number(1 << 40)),
            )
            .await
            .expect_err("2^40 does not fit an integer column");
        assert!(error.to_string().contains("column `number`"), "{error}");
    }
    raw.batch_execute("ALTER TABLE gadgets ALTER COLUMN number TYPE bigint")
        .await
        .expect("widen");
    for (index, adapter) in [&prepared, &unprepared].into_iter().enumerate() {
        let id = format!("g{index}");
        let updated = adapter
            .update(
                Update::new("gadget")
                    .where_clause(Where::new("id", s(&id)))
                    .data("number", DbValue::Number(1 << 40)),
            )
            .await
            .expect("the widened column takes 2^40")
            .expect("the gadget");
        assert_eq!(updated.get("number"), Some(&DbValue::Number(1 << 40)));
        let found = adapter
            .count(Count::new("gadget").where_clause(
                Where::new("number", DbValue::Number(1 << 40)).operator(WhereOperator::Eq),
            ))
            .await
            .expect("count by the wide value");
        assert_eq!(found, index as u64 + 1);
    }
}

/// Inside a transaction, a value refused on the client never reached the server, so the
/// transaction is not aborted: the callback may handle the error and commit its other writes.
#[tokio::test]
async fn a_value_refused_on_the_client_does_not_abort_the_transaction() {
    let schema = extended_schema();
    let (adapter, url) = adapter_with("live_tx_client_error", &schema).await;
    support::connect(&url)
        .await
        .batch_execute("ALTER TABLE gadgets ALTER COLUMN number TYPE integer")
        .await
        .expect("narrow");
    adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                seed_gadget(tx.as_ref(), "kept", 1, at(0)).await;
                let refused = tx
                    .create(
                        Create::new("gadget")
                            .data("id", s("too-big"))
                            .data("text", s("t"))
                            .data("number", DbValue::Number(1 << 40))
                            .data("flag", DbValue::Boolean(true))
                            .data("moment", DbValue::Timestamp(at(0)))
                            .data("doc", DbValue::Json(serde_json::json!({})))
                            .data("tags", DbValue::StringArray(vec![]))
                            .data("scores", DbValue::NumberArray(vec![])),
                    )
                    .await;
                assert!(refused.is_err(), "2^40 does not fit an integer column");
                Ok(())
            })
        }))
        .await
        .expect("the transaction commits");
    let ids = adapter
        .find_many(FindMany::new("gadget"))
        .await
        .expect("gadgets")
        .iter()
        .map(|record| string(record, "id").to_owned())
        .collect::<Vec<_>>();
    assert_eq!(ids, ["kept"]);
}

/// A server error inside the transaction still aborts it (and the commit is refused).
#[tokio::test]
async fn a_server_error_swallowed_inside_the_transaction_still_fails_it() {
    let (adapter, _) = default_adapter("live_tx_server_error").await;
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                seed_user(tx.as_ref(), "u1", "a@example.com", at(0)).await;
                let duplicate = tx
                    .create(
                        Create::new("user")
                            .data("id", s("u1"))
                            .data("name", s("again"))
                            .data("email", s("b@example.com"))
                            .data("email_verified", DbValue::Boolean(false))
                            .data("created_at", DbValue::Timestamp(at(0)))
                            .data("updated_at", DbValue::Timestamp(at(0))),
                    )
                    .await;
                assert!(duplicate.is_err());
                Ok(())
            })
        }))
        .await;
    assert!(result.is_err(), "a swallowed server error rolls back");
    assert_eq!(adapter.count(Count::new("user")).await.expect("count"), 0);
}

/// `token = X AND user_id = Y`: the typed session lookup must honour both clauses.
#[tokio::test]
async fn a_session_lookup_by_token_and_user_honours_both_clauses() {
    let (adapter, _) = default_adapter("live_token_and_user").await;
    seed_user(&adapter, "u1", "one@example.com", at(0)).await;
    seed_user(&adapter, "u2", "two@example.com", at(0)).await;
    seed_session(&adapter, "s1", "u1").await;
    for (typed, expected) in [(true, None), (false, None)] {
        let adapter = adapter.with_typed_statements(typed);
        let found = adapter
            .find_one(
                FindOne::new("session")
                    .where_clause(Where::new("token", s("tok_s1")))
                    .where_clause(Where::new("user_id", s("u2"))),
            )
            .await
            .expect("lookup");
        assert_eq!(found.map(|r| string(&r, "id").to_owned()), expected);
        let own = adapter
            .find_one(
                FindOne::new("session")
                    .where_clause(Where::new("token", s("tok_s1")))
                    .where_clause(Where::new("user_id", s("u1"))),
            )
            .await
            .expect("lookup")
            .expect("the session of its own user");
        assert_eq!(string(&own, "id"), "s1");
        // Both Or-connected (`token = X OR user_id = Y`): the token alone is enough.
        let either = adapter
            .find_one(
                FindOne::new("session")
                    .where_clause(Where::new("token", s("tok_s1")).or())
                    .where_clause(Where::new("user_id", s("u2")).or()),
            )
            .await
            .expect("lookup");
        assert!(either.is_some());
    }
}

/// Better Auth creates `count integer`: every consume works, and the stored count is the one
/// the decision reports (nothing is incremented behind a failed call).
#[tokio::test]
async fn a_rate_limit_table_with_an_integer_count_works_in_both_modes() {
    let url = support::fresh_database("live_rate_limit_int4").await;
    let raw = support::connect(&url).await;
    raw.batch_execute(
        "CREATE TABLE rate_limits (key text PRIMARY KEY, count integer NOT NULL, \
         last_request bigint NOT NULL)",
    )
    .await
    .expect("table");
    for (mode, url) in [("prepared", url.clone()), ("unprepared", unprepared(&url))] {
        let store = TokioPostgresRateLimitStore::connect(&url, "rate_limits")
            .await
            .expect("store");
        let key = format!("{mode}|/sign-in");
        for attempt in 1..=4u64 {
            let decision = store
                .consume(RateLimitConsumeInput {
                    key: key.clone(),
                    rule: RateLimitRule {
                        window: time::Duration::seconds(60),
                        max: 3,
                    },
                    now_ms: 1_700_000_000_000 + i64::try_from(attempt).expect("small"),
                })
                .await
                .expect("consume");
            assert_eq!(decision.permitted, attempt <= 3, "{mode} attempt {attempt}");
            let stored: i32 = raw
                .query_one("SELECT count FROM rate_limits WHERE key = $1", &[&key])
                .await
                .expect("stored")
                .get(0);
            assert_eq!(
                i64::from(stored),
                attempt.min(3) as i64,
                "{mode} attempt {attempt}"
            );
        }
    }
}

/// A column the adapter cannot read fails the call before anything is written.
#[tokio::test]
async fn an_unreadable_column_fails_an_update_before_it_is_applied() {
    let schema: DbSchema = extended_schema();
    let (prepared, url) = adapter_with("live_unreadable", &schema).await;
    let unprepared = TokioPostgresAdapter::connect_with_schema(&unprepared(&url), schema.clone())
        .await
        .expect("unprepared adapter");
    seed_gadget(&prepared, "g1", 5, at(0)).await;
    support::connect(&url)
        .await
        .batch_execute("ALTER TABLE gadgets ALTER COLUMN number_opt TYPE numeric")
        .await
        .expect("numeric column");
    for adapter in [&prepared, &unprepared] {
        let result = adapter
            .update(
                Update::new("gadget")
                    .where_clause(Where::new("id", s("g1")))
                    .data("text", s("changed")),
            )
            .await;
        match result {
            Err(RustAuthError::Adapter(message)) => {
                assert!(
                    message.contains("number_opt") && message.contains("numeric"),
                    "{message}"
                );
            }
            other => panic!("expected an adapter error, got {other:?}"),
        }
    }
    let text: String = support::connect(&url)
        .await
        .query_one("SELECT text FROM gadgets WHERE id = 'g1'", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(text, "text g1", "nothing was written");
}

/// The same refusal in prepared mode when the statement was prepared and cached before another
/// process made the column unreadable: the cached statement meets the new table (0A000), is
/// prepared again, and the fresh one is refused before it runs. (Unprepared mode does not hold
/// this yet: its catalog, read before the change, still calls the column readable, so the
/// write is applied before its returned row fails to decode; see `unprepared_attempts`.)
#[tokio::test]
async fn a_column_made_unreadable_under_a_cached_statement_fails_before_it_is_applied() {
    let schema: DbSchema = extended_schema();
    let (prepared, url) = adapter_with("live_unreadable_cached", &schema).await;
    let unprepared = TokioPostgresAdapter::connect_with_schema(&unprepared(&url), schema.clone())
        .await
        .expect("unprepared adapter");
    seed_gadget(&prepared, "g1", 5, at(0)).await;
    let update = |text: &str| {
        Update::new("gadget")
            .where_clause(Where::new("id", s("g1")))
            .data("text", s(text))
    };
    for adapter in [&prepared, &unprepared] {
        adapter
            .update(update("before"))
            .await
            .expect("update before the change")
            .expect("the row");
    }
    support::connect(&url)
        .await
        .batch_execute("ALTER TABLE gadgets ALTER COLUMN number_opt TYPE numeric")
        .await
        .expect("numeric column");
    {
        match prepared.update(update("changed")).await {
            Err(RustAuthError::Adapter(message)) => {
                assert!(
                    message.contains("number_opt") && message.contains("numeric"),
                    "{message}"
                );
            }
            other => panic!("expected an adapter error, got {other:?}"),
        }
    }
    let text: String = support::connect(&url)
        .await
        .query_one("SELECT text FROM gadgets WHERE id = 'g1'", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(text, "before", "nothing was written after the change");
}

/// Server errors keep 0.3.2's text shape: `SQLSTATE <code>; <message>`.
#[tokio::test]
async fn server_errors_read_like_0_3_2() {
    let (adapter, _) = default_adapter("live_error_shape").await;
    seed_user(&adapter, "u1", "a@example.com", at(0)).await;
    let duplicate = adapter
        .create(
            Create::new("user")
                .data("id", s("u1"))
                .data("name", s("again"))
                .data("email", s("b@example.com"))
                .data("email_verified", DbValue::Boolean(false))
                .data("created_at", DbValue::Timestamp(at(0)))
                .data("updated_at", DbValue::Timestamp(at(0))),
        )
        .await
        .expect_err("duplicate id");
    let message = duplicate.to_string();
    assert!(
        message.contains("tokio-postgres error: SQLSTATE 23505; "),
        "{message}"
    );
    assert!(message.contains("; constraint: "), "{message}");
}
