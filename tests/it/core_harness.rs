//! rustauth-core's shared adapter contract (`db::adapter_harness::run_adapter_contract`,
//! behaviour.md §10) against our adapter, each run on a fresh database: with the default
//! schema, with renamed tables and columns, with schema-qualified tables, through core's
//! `JoinAdapter` (as the `rustauth` facade wraps adapters), and through the
//! `Arc<dyn DbAdapter>` that `TokioPostgresStores` hands out.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use crate::crud_common;

use crud_common::{adapter_with, default_schema};
use rustauth_core::db::adapter_harness::run_adapter_contract;
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, DbAdapter, DbSchema, JoinAdapter, TableOptions,
};
use rustauth_tokio_postgres::TokioPostgresStores;

/// Runs the harness and checks it really wrote: 3 + 2 + 1 + 1 users (filters, updates,
/// committed transaction, joins; the rolled-back one is absent).
async fn run_and_check(adapter: &dyn DbAdapter) {
    run_adapter_contract(adapter)
        .await
        .expect("core adapter contract");
    let users = adapter.count(Count::new("user")).await.expect("count");
    assert_eq!(users, 7, "users left behind by the contract");
    let sessions = adapter.count(Count::new("session")).await.expect("count");
    assert_eq!(sessions, 1, "the other user's session survives delete_many");
    let accounts = adapter.count(Count::new("account")).await.expect("count");
    assert_eq!(accounts, 1);
    let verifications = adapter
        .count(Count::new("verification"))
        .await
        .expect("count");
    assert_eq!(verifications, 0);
}

#[tokio::test]
async fn core_contract_default_schema() {
    let (adapter, _url) = adapter_with("harness default", &default_schema()).await;
    run_and_check(&adapter).await;
}

#[tokio::test]
async fn core_contract_renamed_tables_and_columns() {
    let schema = auth_schema(AuthSchemaOptions {
        user: TableOptions::default()
            .with_name("members")
            .with_field_name("email", "mail")
            .with_field_name("created_at", "joined_at"),
        session: TableOptions::default()
            .with_name("logins")
            .with_field_name("user_id", "member_id")
            .with_field_name("user_agent", "agent"),
        account: TableOptions::default()
            .with_name("credentials")
            .with_field_name("user_id", "member_id"),
        verification: TableOptions::default()
            .with_name("codes")
            .with_field_name("identifier", "code_key"),
        ..AuthSchemaOptions::default()
    });
    let (adapter, _url) = adapter_with("harness renamed", &schema).await;
    run_and_check(&adapter).await;
}

#[tokio::test]
async fn core_contract_schema_qualified_tables() {
    let url = support::fresh_database("harness qualified").await;
    support::connect(&url)
        .await
        .batch_execute("CREATE SCHEMA auth_harness")
        .await
        .expect("create postgres schema");
    let schema: DbSchema = auth_schema(AuthSchemaOptions {
        user: TableOptions::default().with_name("auth_harness.users"),
        session: TableOptions::default().with_name("auth_harness.sessions"),
        account: TableOptions::default().with_name("auth_harness.accounts"),
        verification: TableOptions::default().with_name("auth_harness.verifications"),
        ..AuthSchemaOptions::default()
    });
    let adapter =
        rustauth_tokio_postgres::TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
            .await
            .expect("connect");
    crud_common::install(&adapter, &schema).await;
    run_and_check(&adapter).await;
}

#[tokio::test]
async fn core_contract_through_join_adapter() {
    let schema = default_schema();
    let (adapter, _url) = adapter_with("harness join adapter", &schema).await;
    let wrapped = JoinAdapter::new(schema, adapter, false);
    run_and_check(&wrapped).await;
}

#[tokio::test]
async fn core_contract_through_stores_arc_dyn() {
    let schema = default_schema();
    let (adapter, url) = adapter_with("harness stores", &schema).await;
    drop(adapter);
    let stores = TokioPostgresStores::connect_with_schema(&url, schema)
        .await
        .expect("stores");
    let shared = stores.adapter();
    run_and_check(shared.as_ref()).await;
}
