//! Helpers shared by the CRUD, values, joins and core-harness integration tests
//! (`tests/it/crud.rs`, `tests/it/values.rs`, `tests/it/joins.rs`, `tests/it/core_harness.rs`),
//! and [`driver::DriverAdapter`] (the `driver` module as a `DbAdapter`, also used by
//! `benches/instructions.rs`).
//!
//! Each test file declares `mod support;` first and then `mod crud_common;`; this module uses
//! `crate::support` for the server and the fresh databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbField, DbFieldType, DbRecord,
    DbSchema, DbTable, DbValue, IdPolicy,
};
use rustauth_core::error::RustAuthError;
use rustauth_tokio_postgres::TokioPostgresAdapter;
use time::OffsetDateTime;

use crate::support;

pub mod driver;

/// A transaction on `adapter` that only counts the users: the smallest transaction that
/// takes a connection, runs a statement on it and commits.
pub async fn counting_transaction(adapter: &dyn DbAdapter) -> Result<(), RustAuthError> {
    adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.count(Count::new("user")).await?;
                Ok(())
            })
        }))
        .await
}

/// The default auth schema.
pub fn default_schema() -> DbSchema {
    auth_schema(AuthSchemaOptions::default())
}

/// A brand-new database with `schema`'s tables, and an adapter on it using `schema`.
pub async fn adapter_with(label: &str, schema: &DbSchema) -> (TokioPostgresAdapter, String) {
    let url = support::fresh_database(label).await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect_with_schema");
    install(&adapter, schema).await;
    (adapter, url)
}

/// Creates `schema`'s tables through the adapter's own migrations.
pub async fn install(adapter: &TokioPostgresAdapter, schema: &DbSchema) {
    let created = adapter
        .create_schema(schema, None)
        .await
        .expect("create_schema on a fresh database");
    assert!(created.is_none(), "create_schema never produces a file");
}

/// A brand-new database with the default schema.
pub async fn default_adapter(label: &str) -> (TokioPostgresAdapter, String) {
    adapter_with(label, &default_schema()).await
}

/// A fixed, microsecond-precise instant `seconds` after 2024-01-01T00:00:00Z.
pub fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_704_067_200 + seconds).expect("valid timestamp")
}

pub fn s(value: &str) -> DbValue {
    DbValue::String(value.to_owned())
}

/// Inserts a user with every core field (default id policy).
pub async fn seed_user(
    adapter: &dyn DbAdapter,
    id: &str,
    email: &str,
    created_at: OffsetDateTime,
) -> DbRecord {
    adapter
        .create(
            Create::new("user")
                .data("id", s(id))
                .data("name", s(id))
                .data("email", s(email))
                .data("email_verified", DbValue::Boolean(false))
                .data("image", DbValue::Null)
                .data("created_at", DbValue::Timestamp(created_at))
                .data("updated_at", DbValue::Timestamp(created_at)),
        )
        .await
        .expect("create user")
}

/// Inserts a session for `user_id` whose token equals `"tok_" + id`.
pub async fn seed_session(adapter: &dyn DbAdapter, id: &str, user_id: &str) -> DbRecord {
    adapter
        .create(
            Create::new("session")
                .data("id", s(id))
                .data("expires_at", DbValue::Timestamp(at(86_400)))
                .data("token", s(&format!("tok_{id}")))
                .data("created_at", DbValue::Timestamp(at(0)))
                .data("updated_at", DbValue::Timestamp(at(0)))
                .data("ip_address", DbValue::Null)
                .data("user_agent", DbValue::Null)
                .data("user_id", s(user_id)),
        )
        .await
        .expect("create session")
}

/// Inserts a credential account for `user_id`.
pub async fn seed_account(adapter: &dyn DbAdapter, id: &str, user_id: &str) -> DbRecord {
    adapter
        .create(
            Create::new("account")
                .data("id", s(id))
                .data("account_id", s(id))
                .data("provider_id", s("credential"))
                .data("user_id", s(user_id))
                .data("password", s("hash"))
                .data("created_at", DbValue::Timestamp(at(0)))
                .data("updated_at", DbValue::Timestamp(at(0))),
        )
        .await
        .expect("create account")
}

/// The string value of `key`, panicking with context otherwise.
pub fn string<'a>(record: &'a DbRecord, key: &str) -> &'a str {
    match record.get(key) {
        Some(DbValue::String(value)) => value,
        other => panic!("expected a String at `{key}`, got {other:?} in {record:?}"),
    }
}

/// The `id` strings of `records`, in order.
pub fn ids(records: &[DbRecord]) -> Vec<String> {
    records
        .iter()
        .map(|record| string(record, "id").to_owned())
        .collect()
}

/// The joined records under `key` (a `RecordArray`), panicking otherwise.
pub fn array<'a>(record: &'a DbRecord, key: &str) -> &'a [DbRecord] {
    match record.get(key) {
        Some(DbValue::RecordArray(records)) => records,
        other => panic!("expected a RecordArray at `{key}`, got {other:?}"),
    }
}

/// The joined record under `key` (a `Record`), panicking otherwise.
pub fn nested<'a>(record: &'a DbRecord, key: &str) -> &'a DbRecord {
    match record.get(key) {
        Some(DbValue::Record(record)) => record,
        other => panic!("expected a Record at `{key}`, got {other:?}"),
    }
}

/// The keys of `record`, in order.
pub fn keys(record: &DbRecord) -> Vec<&str> {
    record.keys().map(String::as_str).collect()
}

/// Asserts that `result` is an adapter error (never a panic) whose text contains `needle`.
pub fn assert_adapter_error<T: std::fmt::Debug>(result: Result<T, RustAuthError>, needle: &str) {
    match result {
        Err(RustAuthError::Adapter(text)) => {
            assert!(text.contains(needle), "`{text}` should contain `{needle}`")
        }
        other => panic!("expected an adapter error containing `{needle}`, got {other:?}"),
    }
}

/// Every `DbFieldType`, as (logical suffix, type).
pub const FIELD_TYPES: [(&str, DbFieldType); 7] = [
    ("text", DbFieldType::String),
    ("number", DbFieldType::Number),
    ("flag", DbFieldType::Boolean),
    ("moment", DbFieldType::Timestamp),
    ("doc", DbFieldType::Json),
    ("tags", DbFieldType::StringArray),
    ("scores", DbFieldType::NumberArray),
];

/// A plugin table `gadget` (physical `gadgets`) with a random-string `id` and, for every
/// `DbFieldType`, a required field `<kind>` and a nullable field `<kind>_opt`.
pub fn gadget_table() -> DbTable {
    let mut fields = indexmap::IndexMap::new();
    fields.insert("id".to_owned(), IdPolicy::default().field());
    for (kind, field_type) in FIELD_TYPES {
        fields.insert(kind.to_owned(), DbField::new(kind, field_type.clone()));
        let optional = format!("{kind}_opt");
        fields.insert(
            optional.clone(),
            DbField::new(optional, field_type).optional(),
        );
    }
    DbTable {
        name: "gadgets".to_owned(),
        fields,
        order: Some(10),
    }
}

/// The default schema plus the `gadget` plugin table and an optional JSON `profile` field on
/// `user` (added through `TableOptions::with_field`).
pub fn extended_schema() -> DbSchema {
    let mut schema = auth_schema(AuthSchemaOptions {
        user: rustauth_core::db::TableOptions::default().with_field(
            "profile",
            DbField::new("profile", DbFieldType::Json).optional(),
        ),
        ..AuthSchemaOptions::default()
    });
    schema
        .insert_plugin_table("gadget".to_owned(), gadget_table())
        .expect("insert plugin table");
    schema
}

/// Inserts a `gadget` whose required fields are derived from `number` and `moment`, and whose
/// optional fields are all SQL NULL.
pub async fn seed_gadget(
    adapter: &dyn DbAdapter,
    id: &str,
    number: i64,
    moment: OffsetDateTime,
) -> DbRecord {
    adapter
        .create(
            Create::new("gadget")
                .data("id", s(id))
                .data("text", s(&format!("text {id}")))
                .data("number", DbValue::Number(number))
                .data("flag", DbValue::Boolean(number % 2 == 0))
                .data("moment", DbValue::Timestamp(moment))
                .data("doc", DbValue::Json(serde_json::json!({ "n": number })))
                .data("tags", DbValue::StringArray(vec![id.to_owned()]))
                .data("scores", DbValue::NumberArray(vec![number])),
        )
        .await
        .expect("create gadget")
}
