//! A quiet server log: connecting, migrating and serving RustAuth's calls causes no `ERROR`
//! line in PostgreSQL's log, on a fresh, a partial and a foreign database, in both statement
//! modes. (Operators alert on ERROR lines; typed statements prepared before their tables
//! existed once made 18 per connection.)
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::crud_common::{at, default_schema, seed_user};
use crate::support::cluster::Cluster;

use std::path::Path;

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, DbAdapter, DbValue, FindOne, RateLimitStorage, Where,
};
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule, RateLimitStore};
use rustauth_tokio_postgres::{TokioPostgresAdapter, TokioPostgresStores};

/// The `ERROR` lines of the cluster's log so far.
fn errors(cluster: &Cluster) -> Vec<String> {
    cluster
        .log_tail(usize::MAX)
        .lines()
        .filter(|line| line.contains("ERROR:"))
        .map(str::to_owned)
        .collect()
}

fn assert_quiet(cluster: &Cluster, when: &str) {
    let errors = errors(cluster);
    assert!(
        errors.is_empty(),
        "{when}: the server logged {} ERROR lines:\n{}\n--- log tail ---\n{}",
        errors.len(),
        errors.join("\n"),
        cluster.log_tail(40)
    );
}

async fn calls(adapter: &TokioPostgresAdapter) {
    seed_user(adapter, "u1", "a@example.com", at(0)).await;
    let found = adapter
        .find_one(FindOne::new("user").where_clause(Where::new(
            "email",
            DbValue::String("a@example.com".to_owned()),
        )))
        .await
        .expect("find");
    assert!(found.is_some());
    assert_eq!(adapter.count(Count::new("user")).await.expect("count"), 1);
}

#[tokio::test]
async fn connecting_migrating_and_calling_log_no_error() {
    let cluster = Cluster::start(
        "quiet_log",
        |_: &Path| "log_min_messages = warning\nlog_min_error_statement = error\n".to_owned(),
        "",
    )
    .await;
    let schema = auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    });
    for mode in ["prepared", "unprepared"] {
        // A fresh database: connect first, then migrate (the README's order).
        let fresh = cluster.create_database(&format!("fresh_{mode}")).await;
        let url = format!(
            "{}?statement_mode={mode}&max_connections=2",
            cluster.url(&fresh)
        );
        let stores = TokioPostgresStores::builder()
            .schema(schema.clone())
            .connect(&url)
            .await
            .expect("connect");
        assert_quiet(
            &cluster,
            &format!("{mode}: connecting to an empty database"),
        );
        stores
            .adapter
            .run_migrations(&schema)
            .await
            .expect("migrate");
        calls(&stores.adapter).await;
        let decision = stores
            .rate_limit
            .consume(RateLimitConsumeInput {
                key: "k".to_owned(),
                rule: RateLimitRule {
                    window: time::Duration::seconds(10),
                    max: 3,
                },
                now_ms: 1_000,
            })
            .await
            .expect("consume");
        assert!(decision.permitted);
        assert_quiet(&cluster, &format!("{mode}: migrating and calling"));
        // Connecting again to the migrated database.
        let again = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
            .await
            .expect("connect again");
        assert_eq!(again.count(Count::new("user")).await.expect("count"), 1);
        assert_quiet(
            &cluster,
            &format!("{mode}: connecting to a migrated database"),
        );

        // A partial database: some core tables missing.
        let partial = cluster.create_database(&format!("partial_{mode}")).await;
        let partial_url = format!("{}?statement_mode={mode}", cluster.url(&partial));
        let admin = cluster.connect_socket(&partial).await;
        admin
            .batch_execute(
                "CREATE TABLE users (id text PRIMARY KEY, name text NOT NULL, email text NOT NULL \
                 UNIQUE, email_verified boolean NOT NULL, image text, created_at timestamptz NOT \
                 NULL, updated_at timestamptz NOT NULL)",
            )
            .await
            .expect("users only");
        let adapter = TokioPostgresAdapter::connect_with_schema(&partial_url, default_schema())
            .await
            .expect("connect");
        calls(&adapter).await;
        assert_quiet(&cluster, &format!("{mode}: a partial database"));

        // A foreign database: Prisma's camelCase, timestamp(3), a citext-like domain.
        let foreign = cluster.create_database(&format!("foreign_{mode}")).await;
        let foreign_url = format!("{}?statement_mode={mode}", cluster.url(&foreign));
        let admin = cluster.connect_socket(&foreign).await;
        admin
            .batch_execute(
                "CREATE DOMAIN email_t AS text; \
                 CREATE TABLE users (id uuid PRIMARY KEY, name varchar(255) NOT NULL, \
                 email email_t NOT NULL UNIQUE, email_verified boolean NOT NULL, image text, \
                 created_at timestamp(3) NOT NULL, updated_at timestamp(3) NOT NULL)",
            )
            .await
            .expect("foreign users");
        let adapter = TokioPostgresAdapter::connect_with_schema(&foreign_url, default_schema())
            .await
            .expect("connect");
        let found = adapter
            .find_one(FindOne::new("user").where_clause(Where::new(
                "email",
                DbValue::String("nobody@example.com".to_owned()),
            )))
            .await
            .expect("find");
        assert!(found.is_none());
        assert_quiet(&cluster, &format!("{mode}: a foreign database"));
    }
}
