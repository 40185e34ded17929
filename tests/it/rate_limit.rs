//! The SQL rate-limit store on a real server: rule validation, core's decision rules (checked
//! against core's own arithmetic), atomicity under concurrency, and how it meets the adapter's
//! transaction gate (behaviour.md §7, behaviour.md §10, Q13, Q15).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::crud_common::counting_transaction;
use crate::fixtures::{schema, Rng};
use crate::support;

use std::sync::Arc;
use std::time::Duration;

use rustauth_core::db::sql::consume_sql_rate_limit_record;
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbSchema, DbValue,
    RateLimitStorage as DbRateLimitStorage, SqlRateLimitNames, TableOptions,
};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{
    validate_rate_limit_rule, HybridRateLimitOptions, MissingIpPolicy, RateLimitConsumeInput,
    RateLimitDecision, RateLimitOptions, RateLimitPathRule, RateLimitRecord, RateLimitRule,
    RateLimitStorageOption, RateLimitStore, RustAuthOptions,
};
use rustauth_tokio_postgres::{
    TokioPostgresAdapter, TokioPostgresConnection, TokioPostgresRateLimitStore, TokioPostgresStores,
};
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// How long a call must stay blocked to count as "waiting on the gate".
const GATE_WAIT: Duration = Duration::from_millis(100);
/// Generous bound proving that something does not hang (never a performance assertion).
const NO_HANG: Duration = Duration::from_secs(5);

/// A fresh database with `schema` installed, its URL and an adapter on it.
async fn setup_with(label: &str, schema: DbSchema) -> (String, TokioPostgresAdapter) {
    let url = support::fresh_database(label).await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    adapter
        .create_schema(&schema, None)
        .await
        .expect("create schema");
    (url, adapter)
}

async fn setup(label: &str) -> (String, TokioPostgresAdapter) {
    setup_with(label, schema()).await
}

fn rule(window: time::Duration, max: u64) -> RateLimitRule {
    RateLimitRule { window, max }
}

fn input(key: &str, rule: &RateLimitRule, now_ms: i64) -> RateLimitConsumeInput {
    RateLimitConsumeInput {
        key: key.to_owned(),
        rule: rule.clone(),
        now_ms,
    }
}

/// The stored `(count, last_request)` of `key` in `rate_limits`, read with raw SQL.
async fn stored(client: &tokio_postgres::Client, key: &str) -> Option<(i64, i64)> {
    client
        .query_opt(
            "SELECT count, last_request FROM rate_limits WHERE key = $1",
            &[&key],
        )
        .await
        .expect("read rate-limit row")
        .map(|row| (row.get(0), row.get(1)))
}

async fn row_count(client: &tokio_postgres::Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT COUNT(*) FROM {table}"), &[])
        .await
        .expect("count rows")
        .get(0)
}

fn permitted(limit: u64, remaining: u64, reset_after: u64) -> RateLimitDecision {
    RateLimitDecision {
        permitted: true,
        retry_after: 0,
        limit,
        remaining,
        reset_after,
    }
}

fn denied(limit: u64, retry_after: u64) -> RateLimitDecision {
    RateLimitDecision {
        permitted: false,
        retry_after,
        limit,
        remaining: 0,
        reset_after: retry_after,
    }
}

// ---------------------------------------------------------------------------------------------
// Rules

#[tokio::test]
async fn invalid_rules_fail_with_exact_messages_even_without_a_table() {
    let url = support::fresh_database("rl_custom_table").await;
    let connection = TokioPostgresConnection::connect(&url)
        .await
        .expect("connect");
    let store = TokioPostgresRateLimitStore::from_connection(&connection, "no_such_rate_limits");
    let cases = [
        (
            rule(time::Duration::ZERO, 3),
            "rate limit window must be greater than zero",
        ),
        (
            rule(time::Duration::microseconds(500), 3),
            "rate limit window must be greater than zero",
        ),
        (
            rule(time::Duration::seconds(-5), 3),
            "rate limit window must be greater than zero",
        ),
        (
            rule(time::Duration::seconds(10), 0),
            "rate limit max must be greater than zero",
        ),
        (
            rule(time::Duration::seconds(i64::MAX), 3),
            "rate limit window is too large",
        ),
        (
            rule(time::Duration::seconds(9_223_372_036_854_776), 3),
            "rate limit window is too large",
        ),
        (
            rule(time::Duration::seconds(10), u64::MAX),
            "rate limit max must fit in i64",
        ),
    ];
    for (rule, expected) in cases {
        let result = store.consume(input("ip|/x", &rule, 1_000)).await;
        assert_eq!(
            result,
            Err(RustAuthError::InvalidConfig(expected.to_owned())),
            "rule {rule:?}"
        );
    }

    // The table really does not exist: a valid rule reaches the database and fails there.
    let valid = store
        .consume(input("ip|/x", &rule(time::Duration::seconds(10), 3), 1_000))
        .await;
    match valid {
        Err(RustAuthError::Adapter(message)) => assert!(message.contains("42P01"), "{message}"),
        other => panic!("expected an undefined-table error, got {other:?}"),
    }
}

#[tokio::test]
async fn invalid_rule_fails_without_waiting_for_an_open_transaction() {
    let (_url, adapter) = setup("rl_gate").await;
    let store = adapter.rate_limit_store();
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let transaction = hold_transaction_open(&adapter, &started, &release, None);
    started.notified().await;

    let result = tokio::time::timeout(
        NO_HANG,
        store.consume(input("ip|/x", &rule(time::Duration::seconds(10), 0), 1)),
    )
    .await
    .expect("rule validation must not wait for the gate");
    assert_eq!(
        result,
        Err(RustAuthError::InvalidConfig(
            "rate limit max must be greater than zero".to_owned()
        ))
    );
    release.notify_one();
    transaction
        .await
        .expect("transaction task")
        .expect("transaction");
}

// ---------------------------------------------------------------------------------------------
// Decisions

#[tokio::test]
async fn worked_example_window_10s_max_2() {
    let (url, adapter) = setup("rl_worked_example_window_10s_ma").await;
    let raw = support::connect(&url).await;
    let store = adapter.rate_limit_store();
    let rule = rule(time::Duration::seconds(10), 2);
    let key = "127.0.0.1|/sign-in/email";

    let steps = [
        (1_000, permitted(2, 1, 10), (1, 1_000)),
        (1_001, permitted(2, 0, 10), (2, 1_001)),
        (1_002, denied(2, 10), (2, 1_001)),
        (1_500, denied(2, 10), (2, 1_001)),
        (12_001, permitted(2, 1, 10), (1, 12_001)),
    ];
    for (now_ms, decision, row) in steps {
        let got = store
            .consume(input(key, &rule, now_ms))
            .await
            .expect("consume");
        assert_eq!(got, decision, "decision at t={now_ms}");
        assert_eq!(stored(&raw, key).await, Some(row), "row after t={now_ms}");
    }
    assert_eq!(row_count(&raw, "rate_limits").await, 1);
}

#[tokio::test]
async fn denied_consume_does_not_increment() {
    let (url, adapter) = setup("rl_denied_consume_does_not_incr").await;
    let raw = support::connect(&url).await;
    let store = TokioPostgresRateLimitStore::from(&adapter);
    let rule = rule(time::Duration::seconds(60), 1);
    let key = "ip|/limited";
    let first = store
        .consume(input(key, &rule, 1_700_000_000_000))
        .await
        .expect("first");
    assert!(first.permitted);
    for offset in 1..=3 {
        let again = store
            .consume(input(key, &rule, 1_700_000_000_000 + offset))
            .await
            .expect("again");
        assert!(!again.permitted);
        assert_eq!(again.retry_after, 60);
    }
    assert_eq!(stored(&raw, key).await, Some((1, 1_700_000_000_000)));
    let record = adapter
        .find_one(rustauth_core::db::FindOne::new("rate_limit").where_clause(
            rustauth_core::db::Where::new("key", DbValue::String(key.to_owned())),
        ))
        .await
        .expect("find")
        .expect("row");
    assert_eq!(record.get("count"), Some(&DbValue::Number(1)));
}

#[tokio::test]
async fn negative_stored_count_is_an_adapter_error() {
    let (url, adapter) = setup("rl_negative_stored_count_is_an_").await;
    let raw = support::connect(&url).await;
    let key = "ip|/corrupt";
    adapter
        .create(
            Create::new("rate_limit")
                .data("key", DbValue::String(key.to_owned()))
                .data("count", DbValue::Number(-1))
                .data("last_request", DbValue::Number(1_700_000_000_000)),
        )
        .await
        .expect("seed corrupt row");
    for now_ms in [1_700_000_000_001, i64::MAX] {
        let result = adapter
            .rate_limit_store()
            .consume(input(key, &rule(time::Duration::seconds(60), 5), now_ms))
            .await;
        match result {
            Err(RustAuthError::Adapter(message)) => {
                assert!(message.contains("negative rate limit count"), "{message}")
            }
            other => panic!("expected the negative-count error, got {other:?}"),
        }
        assert_eq!(
            stored(&raw, key).await,
            Some((-1, 1_700_000_000_000)),
            "the corrupt row is left alone"
        );
    }
}

#[derive(Debug, Clone)]
struct Case {
    existing: Option<(i64, i64)>,
    now_ms: i64,
    rule: RateLimitRule,
}

fn random_case(rng: &mut Rng) -> Case {
    let window = match rng.below(6) {
        0 => time::Duration::seconds(1 + rng.below(120) as i64),
        1 => time::Duration::milliseconds(1 + rng.below(5_000) as i64),
        2 => time::Duration::milliseconds(i64::MAX),
        3 => time::Duration::seconds(i64::MAX / 1_000),
        4 => time::Duration::days(365),
        _ => time::Duration::seconds(10),
    };
    let max = match rng.below(5) {
        0 => 1,
        1 => 2 + rng.below(4),
        2 => 1 + rng.below(1_000),
        3 => i64::MAX as u64,
        _ => 3,
    };
    let rule = rule(window, max);
    let window_ms = validate_rate_limit_rule(&rule).expect("generated rules are valid");
    let now_ms = match rng.below(6) {
        0 => *rng.pick(&[i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX]),
        1 => rng.any_i64(),
        _ => 1_700_000_000_000 + rng.below(1_000_000) as i64,
    };
    let existing = if rng.below(5) == 0 {
        None
    } else {
        let max_i64 = i64::try_from(max).expect("max fits");
        let count = match rng.below(7) {
            0 => 0,
            1 => 1,
            2 => max_i64.saturating_sub(1),
            3 => max_i64,
            4 => max_i64.saturating_add(1),
            5 => i64::MAX,
            _ => rng.below(20) as i64,
        };
        let last_request =
            match rng.below(10) {
                0 => now_ms,
                1 => now_ms.saturating_sub(window_ms),
                2 => now_ms.saturating_sub(window_ms).saturating_sub(1),
                3 => now_ms.saturating_sub(window_ms).saturating_add(1),
                // The clock went backwards: the stored request is in the future.
                4 => now_ms.saturating_add(1 + rng.below(100_000) as i64),
                5 => now_ms.saturating_sub(
                    rng.below(window_ms.unsigned_abs().saturating_mul(2).max(1)) as i64,
                ),
                6 => i64::MIN,
                7 => i64::MAX,
                8 => rng.any_i64(),
                _ => now_ms.saturating_sub(rng.below(1_000) as i64),
            };
        Some((count, last_request))
    };
    Case {
        existing,
        now_ms,
        rule,
    }
}

#[tokio::test]
async fn consume_matches_core_decisions_and_rows_on_random_and_extreme_cases() {
    let (url, adapter) = setup("rl_diff").await;
    let raw = support::connect(&url).await;
    let store = adapter.rate_limit_store();
    let mut rng = Rng(0x5EED_1234_ABCD_0042);

    let mut cases: Vec<Case> = (0..320).map(|_| random_case(&mut rng)).collect();
    // Hand-picked extremes on top of the random ones.
    let ten = rule(time::Duration::seconds(10), 2);
    let huge = rule(time::Duration::milliseconds(i64::MAX), 2);
    cases.extend([
        Case {
            existing: Some((2, i64::MAX)),
            now_ms: i64::MIN,
            rule: ten.clone(),
        },
        Case {
            existing: Some((2, i64::MIN)),
            now_ms: i64::MAX,
            rule: ten.clone(),
        },
        Case {
            existing: Some((2, i64::MIN)),
            now_ms: i64::MAX,
            rule: huge.clone(),
        },
        Case {
            existing: Some((2, i64::MAX)),
            now_ms: i64::MAX,
            rule: huge.clone(),
        },
        Case {
            existing: Some((1, i64::MAX)),
            now_ms: i64::MIN,
            rule: huge.clone(),
        },
        Case {
            existing: Some((2, 0)),
            now_ms: 10_000,
            rule: ten.clone(),
        },
        Case {
            existing: Some((2, 0)),
            now_ms: 10_001,
            rule: ten.clone(),
        },
        Case {
            existing: Some((2, 5_000)),
            now_ms: 1_000,
            rule: ten.clone(),
        },
        Case {
            existing: Some((0, 0)),
            now_ms: 0,
            rule: ten.clone(),
        },
        Case {
            existing: Some((i64::MAX, 0)),
            now_ms: 1,
            rule: rule(time::Duration::seconds(10), i64::MAX as u64),
        },
        Case {
            existing: Some((i64::MAX - 1, 0)),
            now_ms: 1,
            rule: rule(time::Duration::seconds(10), i64::MAX as u64),
        },
        Case {
            existing: None,
            now_ms: i64::MIN,
            rule: huge.clone(),
        },
        Case {
            existing: None,
            now_ms: i64::MAX,
            rule: rule(time::Duration::milliseconds(1_999), 1),
        },
        Case {
            existing: Some((1, 1_000)),
            now_ms: 1_000,
            rule: rule(time::Duration::milliseconds(1_999), 1),
        },
        Case {
            existing: Some((1, 1_000)),
            now_ms: 1_001,
            rule: rule(time::Duration::milliseconds(1_999), 1),
        },
    ]);

    let mut permits = 0;
    let mut denials = 0;
    for (index, case) in cases.iter().enumerate() {
        let key = format!("diff:{index}");
        if let Some((count, last_request)) = case.existing {
            raw.execute(
                "INSERT INTO rate_limits (key, count, last_request) VALUES ($1, $2, $3)",
                &[&key, &count, &last_request],
            )
            .await
            .expect("seed row");
        }
        let request = RateLimitConsumeInput {
            key: key.clone(),
            rule: case.rule.clone(),
            now_ms: case.now_ms,
        };
        let existing = case.existing.map(|(count, last_request)| RateLimitRecord {
            key: key.clone(),
            count: u64::try_from(count).expect("seeded counts are not negative"),
            last_request,
        });
        let (expected, record, _) =
            consume_sql_rate_limit_record(request.clone(), existing).expect("core decides");
        let got = store
            .consume(request)
            .await
            .unwrap_or_else(|error| panic!("case {index} {case:?}: {error}"));
        assert_eq!(got, expected, "decision of case {index}: {case:?}");
        let row = stored(&raw, &key).await;
        if expected.permitted {
            permits += 1;
            let expected_row = (
                i64::try_from(record.count).expect("count fits"),
                record.last_request,
            );
            assert_eq!(row, Some(expected_row), "row of case {index}: {case:?}");
        } else {
            denials += 1;
            assert_eq!(
                row, case.existing,
                "a denial leaves the row alone: {case:?}"
            );
        }
    }
    assert!(
        permits > 50 && denials > 50,
        "{permits} permits, {denials} denials"
    );
    assert_eq!(row_count(&raw, "rate_limits").await, cases.len() as i64);
}

// ---------------------------------------------------------------------------------------------
// Atomicity

#[tokio::test]
async fn two_concurrent_consumes_max_one_exactly_one_permitted() {
    // Renamed table and column: the store built from the adapter uses physical names.
    let schema = auth_schema(AuthSchemaOptions {
        rate_limit_storage: DbRateLimitStorage::Database,
        rate_limit: TableOptions::default()
            .with_name("limits")
            .with_field_name("count", "hits"),
        ..AuthSchemaOptions::default()
    });
    let (url, adapter) = setup_with("rl_two_concurrent_consumes_max_", schema).await;
    let raw = support::connect(&url).await;
    let store = Arc::new(TokioPostgresRateLimitStore::from(&adapter));
    let rule = rule(time::Duration::seconds(60), 1);
    let (first, second) = tokio::join!(
        store.consume(input("ip|/sign-in", &rule, 1_000)),
        store.consume(input("ip|/sign-in", &rule, 1_001)),
    );
    let decisions = [first.expect("first"), second.expect("second")];
    assert_eq!(decisions.iter().filter(|d| d.permitted).count(), 1);
    assert_eq!(
        adapter
            .count(Count::new("rate_limit"))
            .await
            .expect("count"),
        1
    );
    let hits: i64 = raw
        .query_one("SELECT hits FROM limits WHERE key = 'ip|/sign-in'", &[])
        .await
        .expect("row")
        .get(0);
    assert_eq!(hits, 1);
}

#[tokio::test]
async fn two_concurrent_consumes_on_two_connections_max_one() {
    let (url, _adapter) = setup("rl_two").await;
    let raw = support::connect(&url).await;
    let a = TokioPostgresRateLimitStore::connect(&url, "rate_limits")
        .await
        .expect("a");
    let b = TokioPostgresRateLimitStore::connect(&url, "rate_limits")
        .await
        .expect("b");
    let rule = rule(time::Duration::seconds(60), 1);
    for round in 0..20 {
        let key = format!("race:{round}");
        let (first, second) = tokio::join!(
            a.consume(input(&key, &rule, 1_000)),
            b.consume(input(&key, &rule, 1_000)),
        );
        let decisions = [first.expect("first"), second.expect("second")];
        assert_eq!(
            decisions.iter().filter(|d| d.permitted).count(),
            1,
            "round {round}: {decisions:?}"
        );
        assert_eq!(stored(&raw, &key).await, Some((1, 1_000)));
    }
    assert_eq!(row_count(&raw, "rate_limits").await, 20);
}

/// Runs 64 consumes of one key (max 10) spread over `stores` and checks that exactly ten are
/// permitted, each with a distinct `remaining`, and that one row with count 10 is left.
async fn sixty_four_consumes(url: &str, stores: Vec<TokioPostgresRateLimitStore>) {
    let raw = support::connect(url).await;
    let rule = rule(time::Duration::seconds(60), 10);
    let mut tasks = JoinSet::new();
    for index in 0..64 {
        let store = stores[index % stores.len()].clone();
        let rule = rule.clone();
        tasks.spawn(async move {
            store
                .consume(input("ip|/hot", &rule, 1_000 + index as i64))
                .await
        });
    }
    let mut remaining = Vec::new();
    let mut denied = 0;
    while let Some(joined) = tasks.join_next().await {
        let decision = joined.expect("task").expect("consume");
        if decision.permitted {
            remaining.push(decision.remaining);
        } else {
            denied += 1;
        }
    }
    remaining.sort_unstable();
    assert_eq!(
        remaining,
        (0..10).collect::<Vec<u64>>(),
        "exactly ten permits"
    );
    assert_eq!(denied, 54);
    assert_eq!(row_count(&raw, "rate_limits").await, 1);
    let (count, _) = stored(&raw, "ip|/hot").await.expect("row");
    assert_eq!(count, 10);
}

#[tokio::test]
async fn sixty_four_concurrent_consumes_on_one_shared_connection_permit_exactly_ten() {
    let (url, adapter) = setup("rl_64_one").await;
    sixty_four_consumes(&url, vec![adapter.rate_limit_store()]).await;
}

#[tokio::test]
async fn sixty_four_concurrent_consumes_on_four_connections_permit_exactly_ten() {
    let (url, _adapter) = setup("rl_64_four").await;
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(
            TokioPostgresRateLimitStore::connect(&url, "rate_limits")
                .await
                .expect("store connection"),
        );
    }
    sixty_four_consumes(&url, stores).await;
}

// ---------------------------------------------------------------------------------------------
// The gate

/// Spawns a transaction on `adapter` that (optionally) inserts a user, signals `started`, waits
/// for `release`, then ends with `outcome`.
fn hold_transaction_open(
    adapter: &TokioPostgresAdapter,
    started: &Arc<Notify>,
    release: &Arc<Notify>,
    insert_user: Option<&str>,
) -> tokio::task::JoinHandle<Result<(), RustAuthError>> {
    hold_transaction_open_with(adapter, started, release, insert_user, Ok(()))
}

fn hold_transaction_open_with(
    adapter: &TokioPostgresAdapter,
    started: &Arc<Notify>,
    release: &Arc<Notify>,
    insert_user: Option<&str>,
    outcome: Result<(), RustAuthError>,
) -> tokio::task::JoinHandle<Result<(), RustAuthError>> {
    let adapter = adapter.clone();
    let (started, release) = (Arc::clone(started), Arc::clone(release));
    let insert_user = insert_user.map(str::to_owned);
    tokio::spawn(async move {
        adapter
            .transaction(Box::new(move |tx| {
                Box::pin(async move {
                    if let Some(id) = insert_user {
                        let now = OffsetDateTime::now_utc();
                        tx.create(
                            Create::new("user")
                                .data("id", DbValue::String(id.clone()))
                                .data("name", DbValue::String("Ada".to_owned()))
                                .data("email", DbValue::String(format!("{id}@example.com")))
                                .data("email_verified", DbValue::Boolean(false))
                                .data("created_at", DbValue::Timestamp(now))
                                .data("updated_at", DbValue::Timestamp(now)),
                        )
                        .await?;
                    }
                    started.notify_one();
                    release.notified().await;
                    outcome
                })
            }))
            .await
    })
}

/// Checks that a consume on `store` waits while a transaction on `adapter` is open, and
/// completes (permitted) once it has committed.
async fn assert_consume_waits_for_transaction(
    adapter: &TokioPostgresAdapter,
    store: TokioPostgresRateLimitStore,
) {
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let transaction = hold_transaction_open(adapter, &started, &release, None);
    started.notified().await;

    let mut consume = tokio::spawn(async move {
        store
            .consume(input(
                "ip|/shared-gate",
                &rule(time::Duration::seconds(60), 1),
                1_000,
            ))
            .await
    });
    assert!(
        tokio::time::timeout(GATE_WAIT, &mut consume).await.is_err(),
        "consume must wait while the adapter transaction is open"
    );

    release.notify_one();
    transaction
        .await
        .expect("transaction task")
        .expect("transaction completes Ok");
    let decision = tokio::time::timeout(NO_HANG, consume)
        .await
        .expect("consume finishes after the transaction")
        .expect("consume task")
        .expect("consume");
    assert!(decision.permitted);
}

#[tokio::test]
async fn adapter_store_waits_for_an_open_adapter_transaction() {
    let (_url, adapter) = setup("rl_adapter_store_waits_for_an_o").await;
    let store = adapter.rate_limit_store();
    assert_consume_waits_for_transaction(&adapter, store).await;
}

#[tokio::test]
async fn store_on_shared_connection_waits_for_an_open_adapter_transaction() {
    let url = support::fresh_database("rl_store_on_shared_connection_w").await;
    let schema = schema();
    let connection = TokioPostgresConnection::from_client(support::connect(&url).await);
    let adapter = TokioPostgresAdapter::with_connection(connection.clone(), schema.clone());
    adapter
        .create_schema(&schema, None)
        .await
        .expect("create schema");
    let store = TokioPostgresRateLimitStore::from_connection(
        &connection,
        SqlRateLimitNames::from_schema(&schema).table,
    );
    assert_consume_waits_for_transaction(&adapter, store).await;
}

#[tokio::test]
async fn stores_rate_limit_waits_for_an_open_stores_adapter_transaction() {
    let url = support::fresh_database("rl_stores").await;
    let stores = TokioPostgresStores::connect_with_schema(&url, schema())
        .await
        .expect("connect stores");
    stores
        .adapter_ref()
        .create_schema(&schema(), None)
        .await
        .expect("create schema");
    assert_consume_waits_for_transaction(&stores.adapter, stores.rate_limit.clone()).await;
}

/// An adapter on its own connection plus a store on the same client with an unshared gate.
async fn unshared_setup(
    label: &str,
) -> (String, TokioPostgresAdapter, TokioPostgresRateLimitStore) {
    let url = support::fresh_database(label).await;
    let schema = schema();
    let connection = TokioPostgresConnection::connect(&url)
        .await
        .expect("connect");
    let adapter = TokioPostgresAdapter::with_connection(connection.clone(), schema.clone());
    adapter
        .create_schema(&schema, None)
        .await
        .expect("create schema");
    let store = TokioPostgresRateLimitStore::from_connection(
        &TokioPostgresConnection::duplicate_client_unshared_gate(&connection),
        SqlRateLimitNames::from_schema(&schema).table,
    );
    (url, adapter, store)
}

#[tokio::test]
async fn store_on_unshared_gate_does_not_wait_and_transaction_still_commits() {
    let (url, adapter, store) = unshared_setup("rl_store_on_unshared_gate_does_").await;
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let transaction = hold_transaction_open(&adapter, &started, &release, Some("committed"));
    started.notified().await;

    let decision = tokio::time::timeout(
        GATE_WAIT,
        store.consume(input(
            "ip|/unshared-gate",
            &rule(time::Duration::seconds(60), 1),
            1_000,
        )),
    )
    .await
    .expect("an unshared gate does not wait")
    .expect("consume");
    assert!(decision.permitted);

    release.notify_one();
    transaction
        .await
        .expect("transaction task")
        .expect("transaction completes Ok");
    let raw = support::connect(&url).await;
    assert_eq!(
        row_count(&raw, "users").await,
        1,
        "the transaction committed"
    );
}

#[tokio::test]
async fn consume_on_unshared_gate_does_not_commit_a_failing_transaction() {
    let (url, adapter, store) = unshared_setup("rl_consume_on_unshared_gate_doe").await;
    let (started, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let failure = || RustAuthError::Api("fail after consuming".to_owned());
    let transaction = hold_transaction_open_with(
        &adapter,
        &started,
        &release,
        Some("must_not_survive"),
        Err(failure()),
    );
    started.notified().await;

    let decision = tokio::time::timeout(
        GATE_WAIT,
        store.consume(input(
            "ip|/unshared-gate",
            &rule(time::Duration::seconds(60), 1),
            1_000,
        )),
    )
    .await
    .expect("an unshared gate does not wait")
    .expect("consume");
    assert!(decision.permitted);

    release.notify_one();
    let outcome = transaction.await.expect("transaction task");
    assert_eq!(outcome, Err(failure()));

    // Seen from another connection: the failed transaction's row was not committed early.
    let raw = support::connect(&url).await;
    assert_eq!(
        row_count(&raw, "users").await,
        0,
        "the user row inserted by the failed transaction must not be committed"
    );
    assert_eq!(adapter.count(Count::new("user")).await.expect("count"), 0);
    // And the shared client is healthy afterwards.
    counting_transaction(&adapter)
        .await
        .expect("a later transaction works");
}

// ---------------------------------------------------------------------------------------------
// Options

#[tokio::test]
async fn apply_to_options_keeps_configured_rate_limit_settings() {
    let url = support::fresh_database("rl_apply_to_options_keeps_confi").await;
    let schema = schema();
    let stores = TokioPostgresStores::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect stores");
    stores
        .adapter_ref()
        .create_schema(&schema, None)
        .await
        .expect("create schema");

    let custom = rule(time::Duration::seconds(5), 1);
    let configured = RustAuthOptions::default().rate_limit(
        RateLimitOptions::new()
            .enabled(true)
            .window(time::Duration::seconds(42))
            .max(7)
            .custom_rule("/custom", custom.clone())
            .disabled_path("/health")
            .hybrid(HybridRateLimitOptions::enabled().local_multiplier(3))
            .memory_cleanup_interval(None)
            .missing_ip_policy(MissingIpPolicy::SharedBucket),
    );
    let applied = stores.apply_to_options(configured);
    let limits = &applied.rate_limit;
    assert_eq!(limits.enabled, Some(true));
    assert_eq!(limits.window, time::Duration::seconds(42));
    assert_eq!(limits.max, 7);
    assert_eq!(
        limits.custom_rules,
        vec![
            RateLimitPathRule {
                path: "/custom".to_owned(),
                rule: Some(custom),
            },
            RateLimitPathRule {
                path: "/health".to_owned(),
                rule: None,
            },
        ]
    );
    assert_eq!(
        limits.hybrid,
        HybridRateLimitOptions::enabled().local_multiplier(3)
    );
    assert_eq!(limits.memory_cleanup_interval, None);
    assert_eq!(limits.missing_ip_policy, MissingIpPolicy::SharedBucket);
    assert_eq!(limits.storage, RateLimitStorageOption::Database);

    // The custom store is ours: consuming through it writes the SQL table.
    let store = limits.custom_store.clone().expect("custom store set");
    let decision = store
        .consume(input(
            "ip|/via-options",
            &rule(time::Duration::seconds(10), 3),
            1_000,
        ))
        .await
        .expect("consume through the options' store");
    assert_eq!(decision, permitted(3, 2, 10));
    let raw = support::connect(&url).await;
    assert_eq!(stored(&raw, "ip|/via-options").await, Some((1, 1_000)));

    // Defaults stay defaults.
    let defaults = stores.apply_to_options(RustAuthOptions::default());
    assert_eq!(defaults.rate_limit.enabled, None);
    assert_eq!(defaults.rate_limit.max, 100);
    assert_eq!(defaults.rate_limit.window, time::Duration::seconds(10));
    assert_eq!(
        defaults.rate_limit.storage,
        RateLimitStorageOption::Database
    );
    assert!(defaults.rate_limit.custom_store.is_some());
}

/// The window's edge decided through behaviour on a renamed table (the statement built from
/// the schema's names, not the generated one): a request exactly `window` after the last one
/// is still inside the window, one millisecond later it is not (as core's arithmetic says).
#[tokio::test]
async fn the_window_edge_on_a_renamed_table() {
    let schema = auth_schema(AuthSchemaOptions {
        rate_limit_storage: DbRateLimitStorage::Database,
        rate_limit: TableOptions::default()
            .with_name("throttle")
            .with_field_name("last_request", "seen_ms"),
        ..AuthSchemaOptions::default()
    });
    let (url, adapter) = setup_with("rl_window_edge_renamed", schema).await;
    let raw = support::connect(&url).await;
    let store = adapter.rate_limit_store();
    let rule = rule(time::Duration::seconds(10), 1);
    let window_ms = validate_rate_limit_rule(&rule).expect("valid");
    let key = "edge";
    let start = 50_000;
    // First request, then one exactly at the edge (denied: still inside), then one just past
    // it (permitted: a new window), then the edge of that window again.
    let steps = [
        (start, true),
        (start + window_ms, false),
        (start + window_ms + 1, true),
        (start + 2 * window_ms + 1, false),
        (start + 2 * window_ms + 2, true),
    ];
    for (now_ms, expect_permitted) in steps {
        let decision = store
            .consume(input(key, &rule, now_ms))
            .await
            .expect("consume");
        assert_eq!(
            decision.permitted, expect_permitted,
            "at t={now_ms}: {decision:?}"
        );
    }
    let row = raw
        .query_one(
            "SELECT count, seen_ms FROM throttle WHERE key = $1",
            &[&key],
        )
        .await
        .expect("row");
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (1, start + 2 * window_ms + 2)
    );
}
