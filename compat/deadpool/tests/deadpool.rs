//! rustauth-deadpool-postgres 0.3.2, built against this crate, on a real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/server.rs"]
pub mod server;

use std::sync::Arc;

use rustauth_core::db::adapter_harness::run_adapter_contract;
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbValue, FindOne, JoinOption,
    RateLimitStorage, Where,
};
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule, RateLimitStore};
use rustauth_deadpool_postgres::DeadpoolPostgresStores;

fn schema() -> rustauth_core::db::DbSchema {
    auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    })
}

async fn stores(label: &str) -> DeadpoolPostgresStores {
    let url = server::fresh_database(label).await;
    let stores = DeadpoolPostgresStores::connect_with_schema(&url, schema())
        .await
        .expect("pool");
    stores
        .adapter
        .run_migrations(&schema())
        .await
        .expect("migrations through our driver");
    stores
}

#[tokio::test]
async fn migrations_through_our_driver_are_idempotent() {
    let stores = stores("compat_migrate").await;
    let plan = stores
        .adapter
        .plan_migrations(&schema())
        .await
        .expect("plan");
    assert!(plan.is_empty(), "{plan:?}");
    // Ours plans the verification.expires_at index too, so it exists after the first run.
    assert!(stores
        .adapter
        .compile_migrations(&schema())
        .await
        .expect("compile")
        .trim()
        .eq(";"));
}

#[tokio::test]
async fn core_adapter_contract_passes_on_the_deadpool_adapter() {
    let stores = stores("compat_contract").await;
    let adapter: Arc<dyn DbAdapter> = stores.adapter();
    run_adapter_contract(adapter.as_ref())
        .await
        .expect("rustauth-core's adapter contract");
    assert_eq!(adapter.count(Count::new("user")).await.expect("count"), 7);
}

#[tokio::test]
async fn crud_joins_and_transactions_on_our_statements() {
    let stores = stores("compat_crud").await;
    let adapter = stores.adapter();
    let now = time::OffsetDateTime::now_utc();
    adapter
        .create(
            Create::new("user")
                .data("id", DbValue::String("u1".to_owned()))
                .data("name", DbValue::String("Ada".to_owned()))
                .data("email", DbValue::String("ada@example.com".to_owned()))
                .data("email_verified", DbValue::Boolean(false))
                .data("created_at", DbValue::Timestamp(now))
                .data("updated_at", DbValue::Timestamp(now)),
        )
        .await
        .expect("create user");
    adapter
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(
                    Create::new("account")
                        .data("id", DbValue::String("a1".to_owned()))
                        .data("account_id", DbValue::String("u1".to_owned()))
                        .data("provider_id", DbValue::String("credential".to_owned()))
                        .data("user_id", DbValue::String("u1".to_owned()))
                        .data("created_at", DbValue::Timestamp(now))
                        .data("updated_at", DbValue::Timestamp(now)),
                )
                .await?;
                Ok(())
            })
        }))
        .await
        .expect("committed transaction");
    let failed = adapter
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(
                    Create::new("account")
                        .data("id", DbValue::String("a2".to_owned()))
                        .data("account_id", DbValue::String("u1".to_owned()))
                        .data("provider_id", DbValue::String("github".to_owned()))
                        .data("user_id", DbValue::String("u1".to_owned()))
                        .data("created_at", DbValue::Timestamp(now))
                        .data("updated_at", DbValue::Timestamp(now)),
                )
                .await?;
                Err(rustauth_core::RustAuthError::Adapter("abort".to_owned()))
            })
        }))
        .await;
    assert!(failed.is_err());

    let user = adapter
        .find_one(
            FindOne::new("user")
                .where_clause(Where::new(
                    "email",
                    DbValue::String("ada@example.com".to_owned()),
                ))
                .join("account", JoinOption::enabled()),
        )
        .await
        .expect("join")
        .expect("user");
    match user.get("account") {
        Some(DbValue::RecordArray(accounts)) => {
            assert_eq!(accounts.len(), 1, "the rolled-back account is absent");
            assert_eq!(
                accounts[0].get("id"),
                Some(&DbValue::String("a1".to_owned()))
            );
        }
        other => panic!("expected an account array, got {other:?}"),
    }
}

#[tokio::test]
async fn rate_limit_store_consumes_through_our_driver() {
    let stores = stores("compat_rate_limit").await;
    let rule = RateLimitRule::new(time::Duration::seconds(10), 2);
    let mut permitted = 0;
    for step in 0..4 {
        let decision = stores
            .rate_limit
            .consume(RateLimitConsumeInput {
                key: "127.0.0.1:/sign-in".to_owned(),
                rule: rule.clone(),
                now_ms: 1_000 + step,
            })
            .await
            .expect("consume");
        permitted += u32::from(decision.permitted);
    }
    assert_eq!(permitted, 2);
}
