//! The per-connection statement cache: reuse, bound, invalidation, 0A000 retry.

use crate::fixtures::{user, user_by_email};
use crate::support;

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, DbAdapter, DbSchema, DbValue, FindMany, FindOne, Where,
};
use rustauth_tokio_postgres::TokioPostgresAdapter;

async fn migrated(label: &str) -> (TokioPostgresAdapter, DbSchema, String) {
    let url = support::fresh_database(label).await;
    let schema = auth_schema(AuthSchemaOptions::default());
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    adapter.run_migrations(&schema).await.expect("migrate");
    // These tests are about the generic path's statement cache.
    let adapter = adapter.with_typed_statements(false);
    (adapter, schema, url)
}

#[tokio::test]
async fn one_statement_per_query_shape_whatever_the_values() {
    let (adapter, _, _) = migrated("cache_reuse").await;
    assert_eq!(adapter.connection().cached_statement_count(), 0);
    for index in 0..20 {
        adapter
            .create(user(&format!("u{index}")))
            .await
            .expect("create");
    }
    let after_creates = adapter.connection().cached_statement_count();
    assert_eq!(
        after_creates, 1,
        "20 inserts of one shape share one statement"
    );
    for index in 0..20 {
        let found = adapter
            .find_one(FindOne::new("user").where_clause(Where::new(
                "email",
                DbValue::String(format!("u{index}@example.com")),
            )))
            .await
            .expect("find");
        assert!(found.is_some());
    }
    assert_eq!(
        adapter.connection().cached_statement_count(),
        after_creates + 1
    );
}

#[tokio::test]
async fn cache_is_bounded() {
    let (adapter, _, _) = migrated("cache_bound").await;
    // Every distinct LIMIT is a distinct SQL text.
    for limit in 1..=600 {
        adapter
            .find_many(FindMany::new("user").limit(limit))
            .await
            .expect("find_many");
    }
    let cached = adapter.connection().cached_statement_count();
    assert!(cached <= 512, "cache holds {cached} statements");
    assert!(cached >= 500, "cache keeps recent statements ({cached})");
}

#[tokio::test]
async fn migrations_clear_the_cache() {
    let (adapter, schema, _) = migrated("cache_clear").await;
    adapter.create(user("a")).await.expect("create");
    assert!(adapter.connection().cached_statement_count() > 0);
    adapter.run_migrations(&schema).await.expect("re-run");
    assert_eq!(adapter.connection().cached_statement_count(), 0);
    adapter
        .create(user("b"))
        .await
        .expect("create after migration");
}

#[tokio::test]
async fn a_migration_empties_the_shape_cache_of_its_own_adapter_only() {
    let (adapter, schema, _) = migrated("shape_clear").await;
    let (other, other_schema, _) = migrated("shape_clear_other").await;
    for adapter in [&adapter, &other] {
        adapter.create(user("a")).await.expect("create");
        adapter
            .find_one(user_by_email("a@example.com"))
            .await
            .expect("find");
    }
    let planned = adapter.cached_shape_count();
    assert!(planned >= 2, "a create and a find were planned ({planned})");
    assert_eq!(other.cached_shape_count(), planned);

    other.run_migrations(&other_schema).await.expect("re-run");
    assert_eq!(
        other.cached_shape_count(),
        0,
        "its own migration empties it"
    );
    assert_eq!(
        adapter.cached_shape_count(),
        planned,
        "another adapter's migration (another database) leaves it alone"
    );
    adapter.run_migrations(&schema).await.expect("re-run");
    assert_eq!(adapter.cached_shape_count(), 0);
    let found = adapter
        .find_one(user_by_email("a@example.com"))
        .await
        .expect("find after the migration");
    assert!(found.is_some());
    assert_eq!(adapter.cached_shape_count(), 1, "planned afresh");
}

#[tokio::test]
async fn a_changed_result_type_is_prepared_again_and_retried_once() {
    let (adapter, _, url) = migrated("cache_0a000").await;
    adapter
        .create(user("a").data("name", DbValue::String("User a".to_owned())))
        .await
        .expect("create");
    let query =
        || FindOne::new("user").where_clause(Where::new("id", DbValue::String("a".to_owned())));
    assert!(adapter.find_one(query()).await.expect("warm").is_some());

    // Another session changes the type of a selected column: the cached plan's result type
    // no longer matches, and Postgres answers SQLSTATE 0A000 on the next execution.
    let other = support::connect(&url).await;
    other
        .batch_execute("ALTER TABLE users ALTER COLUMN name TYPE varchar(200)")
        .await
        .expect("alter");

    let record = adapter
        .find_one(query())
        .await
        .expect("re-prepared and retried")
        .expect("row");
    assert_eq!(
        record.get("name"),
        Some(&DbValue::String("User a".to_owned()))
    );
}

#[tokio::test]
async fn hot_calls_take_the_typed_statements_and_leave_the_generic_cache_alone() {
    let (adapter, _, _) = migrated("cache_typed").await;
    let adapter = adapter.with_typed_statements(true);
    adapter.create(user("t")).await.expect("create");
    let found = adapter
        .find_one(user_by_email("t@example.com"))
        .await
        .expect("find");
    assert!(found.is_some());
    assert_eq!(adapter.typed_call_count(), 2);
    assert_eq!(adapter.connection().cached_statement_count(), 0);
    // A shape no typed statement serves goes through the cache.
    adapter
        .find_many(FindMany::new("user").limit(5))
        .await
        .expect("find_many");
    assert_eq!(adapter.typed_call_count(), 2);
    assert_eq!(adapter.connection().cached_statement_count(), 1);
}
