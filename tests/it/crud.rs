//! The `DbAdapter` CRUD contract on a real PostgreSQL server (`docs/behaviour.md` §2, §3, §8):
//! capabilities, generated ids, every where operator, sorting and paging, counting, single-
//! and multi-row mutations, renamed and
//! schema-qualified tables, errors, and concurrent refreshes of one session.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use crate::crud_common;
use crate::fixtures::read_in_transaction;

use crud_common::{
    adapter_with, assert_adapter_error, at, default_adapter, extended_schema, ids, keys, nested, s,
    seed_gadget, seed_session, seed_user, string,
};
use rustauth_core::db::{
    auth_schema, AdapterCapabilities, AuthSchemaOptions, Count, Create, DbAdapter, DbRecord,
    DbSchema, DbValue, Delete, DeleteMany, FindMany, FindOne, IdGeneration, IdPolicy, JoinOption,
    Sort, SortDirection, TableOptions, Update, UpdateMany, Where, WhereOperator,
};
use rustauth_core::error::RustAuthError;
use rustauth_tokio_postgres::layout::{
    ACCOUNT_FIELDS, SESSION_FIELDS, USER_FIELDS, VERIFICATION_FIELDS,
};
use rustauth_tokio_postgres::TokioPostgresAdapter;

// ---------------------------------------------------------------------------------------------
// Small helpers local to this file.

fn eq(field: &str, value: DbValue) -> Where {
    Where::new(field, value)
}

fn op(field: &str, operator: WhereOperator, value: DbValue) -> Where {
    Where::new(field, value).operator(operator)
}

fn strings(values: &[&str]) -> DbValue {
    DbValue::StringArray(values.iter().map(|value| (*value).to_owned()).collect())
}

async fn count_where(adapter: &dyn DbAdapter, model: &str, clauses: Vec<Where>) -> u64 {
    let mut query = Count::new(model);
    query.where_clauses = clauses;
    adapter.count(query).await.expect("count")
}

/// Ids of the `model` rows matching `clauses`, sorted by id.
async fn ids_where(adapter: &dyn DbAdapter, model: &str, clauses: Vec<Where>) -> Vec<String> {
    let mut query = FindMany::new(model).sort_by(Sort::new("id", SortDirection::Asc));
    query.where_clauses = clauses;
    ids(&adapter.find_many(query).await.expect("find_many"))
}

/// Creates a user with explicit `image` and `email_verified`.
async fn user_with(adapter: &dyn DbAdapter, id: &str, email: &str, image: DbValue, verified: bool) {
    adapter
        .create(
            Create::new("user")
                .data("id", s(id))
                .data("name", s(id))
                .data("email", s(email))
                .data("email_verified", DbValue::Boolean(verified))
                .data("image", image)
                .data("created_at", DbValue::Timestamp(at(0)))
                .data("updated_at", DbValue::Timestamp(at(0))),
        )
        .await
        .expect("create user");
}

fn assert_full_capabilities(capabilities: &AdapterCapabilities) {
    assert!(capabilities.supports_numeric_ids);
    assert!(capabilities.supports_uuid_ids);
    assert!(capabilities.supports_json);
    assert!(capabilities.supports_dates);
    assert!(capabilities.supports_booleans);
    assert!(capabilities.supports_arrays);
    assert!(capabilities.supports_joins);
    assert!(capabilities.supports_native_joins);
    assert!(capabilities.supports_transactions);
    assert!(!capabilities.disable_id_generation);
}

// ---------------------------------------------------------------------------------------------
// h4, h5: capabilities.

#[tokio::test]
async fn main_adapter_reports_capabilities() {
    let (adapter, _url) = default_adapter("capabilities").await;
    assert_eq!(adapter.id(), "tokio-postgres");
    let capabilities = adapter.capabilities();
    assert_eq!(capabilities.adapter_id, "tokio-postgres");
    assert_eq!(capabilities.adapter_name.as_deref(), Some("tokio-postgres"));
    assert_full_capabilities(&capabilities);
}

#[tokio::test]
async fn transaction_adapter_reports_capabilities() {
    let (adapter, _url) = default_adapter("tx capabilities").await;
    let (id, capabilities) =
        read_in_transaction(&adapter, |tx| (tx.id().to_owned(), tx.capabilities())).await;
    assert_eq!(id, "tokio-postgres-tx");
    assert_eq!(capabilities.adapter_id, "tokio-postgres-tx");
    assert_eq!(
        capabilities.adapter_name.as_deref(),
        Some("tokio-postgres transaction")
    );
    assert_full_capabilities(&capabilities);
}

// ---------------------------------------------------------------------------------------------
// h6, h7, h8: database-generated ids.

fn uuid_schema(force_allow_id: bool) -> DbSchema {
    auth_schema(AuthSchemaOptions {
        id_policy: IdPolicy::new(IdGeneration::Uuid)
            .with_database_uuid_support(true)
            .with_force_allow_id(force_allow_id),
        ..AuthSchemaOptions::default()
    })
}

fn user_without_id(email: &str) -> Create {
    Create::new("user")
        .data("name", s("Ada"))
        .data("email", s(email))
        .data("email_verified", DbValue::Boolean(false))
        .data("created_at", DbValue::Timestamp(at(0)))
        .data("updated_at", DbValue::Timestamp(at(0)))
}

#[tokio::test]
async fn uuid_with_database_support_generates_uuid_ids() {
    let schema = uuid_schema(false);
    let (adapter, _url) = adapter_with("uuid", &schema).await;

    let user = adapter
        .create(user_without_id("ada@example.com").select(["id", "email"]))
        .await
        .expect("create without id");
    assert_eq!(keys(&user), ["id", "email"]);
    assert_eq!(user.get("email"), Some(&s("ada@example.com")));
    let id = string(&user, "id").to_owned();
    let parsed = uuid::Uuid::parse_str(&id).expect("the generated id is a UUID");
    assert_eq!(id, parsed.hyphenated().to_string(), "lowercase hyphenated");

    // The FK column copies the uuid type: a session can point at the generated id, and a
    // session created without id also gets a UUID.
    let session = adapter
        .create(
            Create::new("session")
                .data("expires_at", DbValue::Timestamp(at(3600)))
                .data("token", s("uuid-token"))
                .data("created_at", DbValue::Timestamp(at(0)))
                .data("updated_at", DbValue::Timestamp(at(0)))
                .data("user_id", s(&id)),
        )
        .await
        .expect("create session without id");
    uuid::Uuid::parse_str(string(&session, "id")).expect("session id is a UUID");
    assert_eq!(session.get("user_id"), Some(&s(&id)));
    assert_eq!(session.len(), 8, "RETURNING path returns every field");

    // An uppercase spelling of the same UUID finds the row (bound as uuid, not text).
    let found = adapter
        .find_one(FindOne::new("user").where_clause(eq("id", s(&id.to_uppercase()))))
        .await
        .expect("find by uppercase uuid")
        .expect("found");
    assert_eq!(string(&found, "id"), id);

    let joined = adapter
        .find_one(
            FindOne::new("session")
                .where_clause(eq("token", s("uuid-token")))
                .join("user", JoinOption::enabled()),
        )
        .await
        .expect("join on uuid FK")
        .expect("session");
    assert_eq!(string(nested(&joined, "user"), "id"), id);

    // A string that is not a UUID is refused with an adapter error quoting it.
    assert_adapter_error(
        adapter
            .find_one(FindOne::new("user").where_clause(eq("id", s("not-a-uuid"))))
            .await,
        "not a valid UUID",
    );
}

#[tokio::test]
async fn forced_uuid_is_kept_and_uppercase_comes_back_lowercase() {
    let schema = uuid_schema(true);
    let (adapter, _url) = adapter_with("forced uuid", &schema).await;

    let forced = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
    let user = adapter
        .create(
            user_without_id("forced@example.com")
                .data("id", s(forced))
                .select(["id", "email"])
                .force_allow_id(),
        )
        .await
        .expect("create with forced id");
    assert_eq!(user.get("id"), Some(&s(forced)));

    // Quirk Q11: an uppercase UUID is stored as a uuid and read back lowercase.
    let upper = "B1B2C3D4-E5F6-4A7B-8C9D-0E1F2A3B4C5D";
    let user = adapter
        .create(
            user_without_id("upper@example.com")
                .data("id", s(upper))
                .select(["id"])
                .force_allow_id(),
        )
        .await
        .expect("create with uppercase id");
    assert_eq!(user.get("id"), Some(&s(&upper.to_lowercase())));
    let stored = adapter
        .find_one(FindOne::new("user").where_clause(eq("email", s("upper@example.com"))))
        .await
        .expect("find")
        .expect("stored");
    assert_eq!(stored.get("id"), Some(&s(&upper.to_lowercase())));
}

#[tokio::test]
async fn serial_schema_uses_identity_and_returns_number_ids() {
    let schema = auth_schema(AuthSchemaOptions {
        id_policy: IdPolicy::new(IdGeneration::Serial),
        ..AuthSchemaOptions::default()
    });
    let url = support::fresh_database("serial").await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    let sql = adapter
        .compile_migrations(&schema)
        .await
        .expect("compile_migrations");
    assert!(sql.contains("GENERATED BY DEFAULT AS IDENTITY"), "{sql}");
    assert!(!sql.to_uppercase().contains("SERIAL"), "{sql}");
    crud_common::install(&adapter, &schema).await;

    let first = adapter
        .create(user_without_id("one@example.com"))
        .await
        .expect("create");
    let Some(DbValue::Number(first_id)) = first.get("id").cloned() else {
        panic!("serial id must be a Number: {first:?}");
    };
    assert!(first_id > 0);
    let second = adapter
        .create(user_without_id("two@example.com").select(["id"]))
        .await
        .expect("create");
    assert_eq!(keys(&second), ["id"]);
    let Some(DbValue::Number(second_id)) = second.get("id").cloned() else {
        panic!("serial id must be a Number: {second:?}");
    };
    assert!(second_id > first_id);

    // Number ids work as FK values and in where clauses.
    let session = adapter
        .create(
            Create::new("session")
                .data("expires_at", DbValue::Timestamp(at(3600)))
                .data("token", s("serial-token"))
                .data("created_at", DbValue::Timestamp(at(0)))
                .data("updated_at", DbValue::Timestamp(at(0)))
                .data("user_id", DbValue::Number(second_id)),
        )
        .await
        .expect("session");
    assert!(matches!(session.get("id"), Some(DbValue::Number(id)) if *id > 0));
    let found = adapter
        .find_one(FindOne::new("user").where_clause(eq("id", DbValue::Number(second_id))))
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.get("email"), Some(&s("two@example.com")));
}

// ---------------------------------------------------------------------------------------------
// behaviour.md §10: filters, sorting, counting, mutations.

#[tokio::test]
async fn insensitive_ends_with_sort_limit_offset() {
    let (adapter, _url) = default_adapter("ends with").await;
    seed_user(&adapter, "ada", "ada@EXAMPLE.COM", at(1)).await;
    seed_user(&adapter, "alan", "alan@example.net", at(2)).await;
    seed_user(&adapter, "grace", "grace@Example.Com", at(3)).await;
    seed_user(&adapter, "linus", "linus@example.com", at(4)).await;

    let page = |limit: usize, offset: usize| {
        FindMany::new("user")
            .where_clause(op("email", WhereOperator::EndsWith, s("EXAMPLE.COM")).insensitive())
            .sort_by(Sort::new("created_at", SortDirection::Desc))
            .limit(limit)
            .offset(offset)
    };
    let newest = adapter.find_many(page(1, 0)).await.expect("page");
    assert_eq!(ids(&newest), ["linus"]);
    assert_eq!(
        ids(&adapter.find_many(page(1, 1)).await.expect("page")),
        ["grace"]
    );
    assert_eq!(
        ids(&adapter.find_many(page(2, 1)).await.expect("page")),
        ["grace", "ada"]
    );
    assert!(adapter
        .find_many(page(5, 3))
        .await
        .expect("page")
        .is_empty());

    let insensitive = count_where(
        &adapter,
        "user",
        vec![op("email", WhereOperator::EndsWith, s("example.com")).insensitive()],
    )
    .await;
    assert_eq!(insensitive, 3);
    let sensitive = count_where(
        &adapter,
        "user",
        vec![op("email", WhereOperator::EndsWith, s("EXAMPLE.COM"))],
    )
    .await;
    assert_eq!(sensitive, 1, "sensitive mode is case-sensitive");
}

#[tokio::test]
async fn update_returns_record_with_new_value() {
    let (adapter, _url) = default_adapter("update").await;
    seed_user(&adapter, "u1", "u1@example.com", at(0)).await;
    seed_session(&adapter, "s1", "u1").await;
    seed_session(&adapter, "s2", "u1").await;

    let updated = adapter
        .update(
            Update::new("session")
                .where_clause(eq("id", s("s1")))
                .data("user_agent", s("agent/2.0")),
        )
        .await
        .expect("update")
        .expect("a row matched");
    assert_eq!(updated.get("user_agent"), Some(&s("agent/2.0")));
    assert_eq!(updated.get("id"), Some(&s("s1")));
    assert_eq!(
        keys(&updated),
        [
            "id",
            "expires_at",
            "token",
            "created_at",
            "updated_at",
            "ip_address",
            "user_agent",
            "user_id"
        ],
        "all schema fields, logical keys, schema order"
    );
    assert_eq!(updated.get("ip_address"), Some(&DbValue::Null));

    let stored = adapter
        .find_one(FindOne::new("session").where_clause(eq("id", s("s1"))))
        .await
        .expect("find")
        .expect("row");
    assert_eq!(stored, updated);
    let other = adapter
        .find_one(FindOne::new("session").where_clause(eq("id", s("s2"))))
        .await
        .expect("find")
        .expect("row");
    assert_eq!(other.get("user_agent"), Some(&DbValue::Null), "untouched");

    let missing = adapter
        .update(
            Update::new("session")
                .where_clause(eq("id", s("nope")))
                .data("user_agent", s("x")),
        )
        .await
        .expect("update of nothing");
    assert!(missing.is_none());
}

#[tokio::test]
async fn delete_many_returns_deleted_count() {
    let (adapter, _url) = default_adapter("delete many").await;
    seed_user(&adapter, "owner", "owner@example.com", at(0)).await;
    seed_user(&adapter, "other", "other@example.com", at(0)).await;
    seed_session(&adapter, "s1", "owner").await;
    seed_session(&adapter, "s2", "owner").await;
    seed_session(&adapter, "s3", "other").await;

    let deleted = adapter
        .delete_many(DeleteMany::new("session").where_clause(eq("user_id", s("owner"))))
        .await
        .expect("delete_many");
    assert_eq!(deleted, 2);
    assert_eq!(ids_where(&adapter, "session", vec![]).await, ["s3"]);

    let none = adapter
        .delete_many(DeleteMany::new("session").where_clause(eq("user_id", s("owner"))))
        .await
        .expect("delete_many again");
    assert_eq!(none, 0);
    let all = adapter
        .delete_many(DeleteMany::new("session"))
        .await
        .expect("delete_many without where");
    assert_eq!(all, 1);
    assert_eq!(count_where(&adapter, "session", vec![]).await, 0);
}

#[tokio::test]
async fn insensitive_in_matches_mixed_case() {
    let (adapter, _url) = default_adapter("insensitive in").await;
    seed_user(&adapter, "ada", "Ada@Example.COM", at(0)).await;
    seed_user(&adapter, "bob", "bob@example.com", at(0)).await;

    let needle = || strings(&["ada@example.com"]);
    assert_eq!(
        count_where(
            &adapter,
            "user",
            vec![op("email", WhereOperator::In, needle()).insensitive()]
        )
        .await,
        1
    );
    assert_eq!(
        count_where(
            &adapter,
            "user",
            vec![op("email", WhereOperator::In, needle())]
        )
        .await,
        0,
        "sensitive In does not fold case"
    );
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![op("email", WhereOperator::NotIn, needle()).insensitive()]
        )
        .await,
        ["bob"]
    );
    // Insensitive Eq folds case too.
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![eq("email", s("ADA@example.com")).insensitive()]
        )
        .await,
        ["ada"]
    );
}

#[tokio::test]
async fn empty_in_matches_nothing_and_empty_not_in_matches_all() {
    let (adapter, _url) = default_adapter("empty in").await;
    for name in ["a", "b", "c"] {
        seed_user(&adapter, name, &format!("{name}@example.com"), at(0)).await;
    }
    let empty = || DbValue::StringArray(Vec::new());

    assert_eq!(
        count_where(&adapter, "user", vec![op("id", WhereOperator::In, empty())]).await,
        0
    );
    assert_eq!(
        count_where(
            &adapter,
            "user",
            vec![op("id", WhereOperator::NotIn, empty())]
        )
        .await,
        3
    );
    assert!(adapter
        .find_many(FindMany::new("user").where_clause(op("id", WhereOperator::In, empty())))
        .await
        .expect("find_many")
        .is_empty());
    assert_eq!(
        adapter
            .delete_many(DeleteMany::new("user").where_clause(op("id", WhereOperator::In, empty())))
            .await
            .expect("delete_many"),
        0
    );
    assert_eq!(
        adapter
            .update_many(
                UpdateMany::new("user")
                    .where_clause(op("id", WhereOperator::NotIn, empty()))
                    .data("name", s("renamed")),
            )
            .await
            .expect("update_many"),
        3
    );
    // Empty number arrays behave the same.
    assert_eq!(
        count_where(
            &adapter,
            "user",
            vec![op(
                "id",
                WhereOperator::In,
                DbValue::NumberArray(Vec::new())
            )]
        )
        .await,
        0
    );
}

#[tokio::test]
async fn empty_update_data_changes_nothing() {
    let (adapter, _url) = default_adapter("empty update").await;
    seed_user(&adapter, "u1", "u1@example.com", at(0)).await;

    let updated = adapter
        .update(Update::new("user").where_clause(eq("id", s("u1"))))
        .await
        .expect("update with empty data");
    assert!(updated.is_none());
    let updated_many = adapter
        .update_many(UpdateMany::new("user"))
        .await
        .expect("update_many with empty data");
    assert_eq!(updated_many, 0);
    let stored = adapter
        .find_one(FindOne::new("user").where_clause(eq("id", s("u1"))))
        .await
        .expect("find")
        .expect("row");
    assert_eq!(stored.get("name"), Some(&s("u1")));
}

#[tokio::test]
async fn delete_with_two_matches_removes_exactly_one() {
    let (adapter, _url) = default_adapter("delete one").await;
    seed_user(&adapter, "u1", "u1@example.com", at(0)).await;
    for id in ["s1", "s2", "s3"] {
        seed_session(&adapter, id, "u1").await;
    }
    adapter
        .update_many(
            UpdateMany::new("session")
                .where_clause(op("id", WhereOperator::In, strings(&["s1", "s2"])))
                .data("user_agent", s("dup")),
        )
        .await
        .expect("mark two");

    adapter
        .delete(Delete::new("session").where_clause(eq("user_agent", s("dup"))))
        .await
        .expect("delete");
    assert_eq!(
        count_where(&adapter, "session", vec![eq("user_agent", s("dup"))]).await,
        1
    );
    assert_eq!(count_where(&adapter, "session", vec![]).await, 2);

    // By unique token: exactly that row.
    adapter
        .delete(Delete::new("session").where_clause(eq("token", s("tok_s3"))))
        .await
        .expect("delete by token");
    assert_eq!(count_where(&adapter, "session", vec![]).await, 1);
    assert_eq!(
        count_where(&adapter, "session", vec![eq("id", s("s3"))]).await,
        0
    );

    // Nothing matching is not an error.
    adapter
        .delete(Delete::new("session").where_clause(eq("id", s("nope"))))
        .await
        .expect("delete of nothing");
    assert_eq!(count_where(&adapter, "session", vec![]).await, 1);
}

#[tokio::test]
async fn null_predicates_in_and_or_groups() {
    let (adapter, _url) = default_adapter("null predicates").await;
    user_with(&adapter, "u1", "u1@example.com", DbValue::Null, true).await;
    user_with(&adapter, "u2", "u2@example.com", s("img2"), true).await;
    user_with(&adapter, "u3", "u3@example.com", DbValue::Null, false).await;
    user_with(&adapter, "u4", "u4@example.com", s("img4"), false).await;
    let verified = || eq("email_verified", DbValue::Boolean(true));

    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![eq("image", DbValue::Null), verified()]
        )
        .await,
        ["u1"],
        "image IS NULL AND verified"
    );
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![op("image", WhereOperator::Ne, DbValue::Null), verified()]
        )
        .await,
        ["u2"],
        "image IS NOT NULL AND verified"
    );
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![
                eq("image", DbValue::Null).or(),
                eq("email", s("u2@example.com")).or()
            ]
        )
        .await,
        ["u1", "u2", "u3"],
        "image IS NULL OR email = u2"
    );
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![
                verified(),
                eq("image", DbValue::Null).or(),
                eq("email", s("u2@example.com")).or()
            ]
        )
        .await,
        ["u1", "u2"],
        "verified AND (image IS NULL OR email = u2)"
    );
    // A lone OR clause after an AND clause is ANDed (behaviour.md §3).
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![verified(), eq("image", DbValue::Null).or()]
        )
        .await,
        ["u1"]
    );
    // Ne with a value follows three-valued logic: NULL images do not match.
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![op("image", WhereOperator::Ne, s("img2"))]
        )
        .await,
        ["u4"]
    );
    assert_eq!(
        count_where(&adapter, "user", vec![eq("image", DbValue::Null)]).await,
        2
    );
}

#[tokio::test]
async fn like_wildcards_and_escape_are_literal() {
    let (adapter, _url) = default_adapter("like literal").await;
    for (id, email) in [
        ("pct", "100%@example.com"),
        ("zero", "1000@example.com"),
        ("under", "a_b@example.com"),
        ("plain", "axb@example.com"),
        ("slash", "back\\slash@example.com"),
    ] {
        seed_user(&adapter, id, email, at(0)).await;
    }
    let like = |operator: WhereOperator, needle: &str| vec![op("email", operator, s(needle))];

    assert_eq!(
        ids_where(&adapter, "user", like(WhereOperator::Contains, "%")).await,
        ["pct"]
    );
    assert_eq!(
        ids_where(&adapter, "user", like(WhereOperator::Contains, "_")).await,
        ["under"]
    );
    assert_eq!(
        ids_where(&adapter, "user", like(WhereOperator::Contains, "\\")).await,
        ["slash"]
    );
    assert_eq!(
        ids_where(&adapter, "user", like(WhereOperator::StartsWith, "a_")).await,
        ["under"]
    );
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            like(WhereOperator::EndsWith, "%@example.com")
        )
        .await,
        ["pct"]
    );
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![op("email", WhereOperator::Contains, s("0%")).insensitive()]
        )
        .await,
        ["pct"],
        "ILIKE escapes too"
    );
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![op("email", WhereOperator::Contains, s("A_B")).insensitive()]
        )
        .await,
        ["under"]
    );
}

#[tokio::test]
async fn update_many_without_where_updates_all() {
    let (adapter, _url) = default_adapter("update all").await;
    for name in ["a", "b", "c"] {
        seed_user(&adapter, name, &format!("{name}@example.com"), at(0)).await;
    }
    let updated = adapter
        .update_many(UpdateMany::new("user").data("name", s("everyone")))
        .await
        .expect("update_many");
    assert_eq!(updated, 3);
    assert_eq!(
        count_where(&adapter, "user", vec![eq("name", s("everyone"))]).await,
        3
    );
    let updated = adapter
        .update_many(
            UpdateMany::new("user")
                .where_clause(eq("id", s("b")))
                .data("name", s("just b")),
        )
        .await
        .expect("update_many with where");
    assert_eq!(updated, 1);
    assert_eq!(
        ids_where(&adapter, "user", vec![eq("name", s("everyone"))]).await,
        ["a", "c"]
    );
}

#[tokio::test]
async fn update_changing_where_field_returns_new_value() {
    let (adapter, _url) = default_adapter("update where field").await;
    seed_user(&adapter, "u1", "u1@example.com", at(0)).await;
    seed_session(&adapter, "s1", "u1").await;
    seed_session(&adapter, "s2", "u1").await;

    // Through a unique column (token).
    let updated = adapter
        .update(
            Update::new("session")
                .where_clause(eq("token", s("tok_s1")))
                .data("token", s("rotated")),
        )
        .await
        .expect("update")
        .expect("row");
    assert_eq!(updated.get("token"), Some(&s("rotated")));
    assert_eq!(updated.get("id"), Some(&s("s1")));
    let old = adapter
        .find_one(FindOne::new("session").where_clause(eq("token", s("tok_s1"))))
        .await
        .expect("find old");
    assert!(old.is_none());
    let new = adapter
        .find_one(FindOne::new("session").where_clause(eq("token", s("rotated"))))
        .await
        .expect("find new")
        .expect("row");
    assert_eq!(new.get("id"), Some(&s("s1")));

    // Through a non-unique column (user_agent), which takes the single-row plan.
    adapter
        .update_many(
            UpdateMany::new("session")
                .where_clause(eq("id", s("s2")))
                .data("user_agent", s("ua-old")),
        )
        .await
        .expect("prepare");
    let updated = adapter
        .update(
            Update::new("session")
                .where_clause(eq("user_agent", s("ua-old")))
                .data("user_agent", s("ua-new")),
        )
        .await
        .expect("update")
        .expect("row");
    assert_eq!(updated.get("user_agent"), Some(&s("ua-new")));
    assert_eq!(updated.get("id"), Some(&s("s2")));
    assert_eq!(
        count_where(&adapter, "session", vec![eq("user_agent", s("ua-old"))]).await,
        0
    );
}

// ---------------------------------------------------------------------------------------------
// b.4: every where operator on strings, numbers and timestamps; b.5 sorting and paging.

#[tokio::test]
async fn every_operator_on_strings() {
    let (adapter, _url) = default_adapter("string operators").await;
    for (id, name) in [("a", "alpha"), ("b", "bravo"), ("c", "charlie")] {
        adapter
            .create(
                Create::new("user")
                    .data("id", s(id))
                    .data("name", s(name))
                    .data("email", s(&format!("{id}@example.com")))
                    .data("email_verified", DbValue::Boolean(false))
                    .data("created_at", DbValue::Timestamp(at(0)))
                    .data("updated_at", DbValue::Timestamp(at(0))),
            )
            .await
            .expect("create");
    }
    let cases: Vec<(Where, &[&str])> = vec![
        (op("name", WhereOperator::Eq, s("bravo")), &["b"]),
        (op("name", WhereOperator::Ne, s("bravo")), &["a", "c"]),
        (op("name", WhereOperator::Lt, s("bravo")), &["a"]),
        (op("name", WhereOperator::Lte, s("bravo")), &["a", "b"]),
        (op("name", WhereOperator::Gt, s("bravo")), &["c"]),
        (op("name", WhereOperator::Gte, s("bravo")), &["b", "c"]),
        (
            op("name", WhereOperator::In, strings(&["alpha", "charlie"])),
            &["a", "c"],
        ),
        (
            op("name", WhereOperator::NotIn, strings(&["alpha"])),
            &["b", "c"],
        ),
        (op("name", WhereOperator::Contains, s("ra")), &["b"]),
        (op("name", WhereOperator::StartsWith, s("ch")), &["c"]),
        (op("name", WhereOperator::EndsWith, s("ha")), &["a"]),
        (
            op("name", WhereOperator::Eq, s("BRAVO")).insensitive(),
            &["b"],
        ),
        (
            op("name", WhereOperator::Ne, s("BRAVO")).insensitive(),
            &["a", "c"],
        ),
        (
            op("name", WhereOperator::StartsWith, s("CH")).insensitive(),
            &["c"],
        ),
        (op("name", WhereOperator::StartsWith, s("CH")), &[]),
        (
            op("name", WhereOperator::Contains, s("AV")).insensitive(),
            &["b"],
        ),
    ];
    for (clause, expected) in cases {
        let label = format!("{clause:?}");
        assert_eq!(
            ids_where(&adapter, "user", vec![clause.clone()]).await,
            expected,
            "{label}"
        );
        assert_eq!(
            count_where(&adapter, "user", vec![clause]).await,
            expected.len() as u64,
            "count {label}"
        );
    }
}

#[tokio::test]
async fn every_operator_on_numbers_and_timestamps() {
    let (adapter, _url) = adapter_with("number operators", &extended_schema()).await;
    seed_gadget(&adapter, "g1", 10, at(10)).await;
    seed_gadget(&adapter, "g2", 20, at(20)).await;
    seed_gadget(&adapter, "g3", 30, at(30)).await;
    seed_gadget(&adapter, "g4", -5, at(-5)).await;

    let n = DbValue::Number;
    let t = |seconds| DbValue::Timestamp(at(seconds));
    let cases: Vec<(Where, &[&str])> = vec![
        (op("number", WhereOperator::Eq, n(20)), &["g2"]),
        (op("number", WhereOperator::Ne, n(20)), &["g1", "g3", "g4"]),
        (op("number", WhereOperator::Lt, n(20)), &["g1", "g4"]),
        (op("number", WhereOperator::Lte, n(20)), &["g1", "g2", "g4"]),
        (op("number", WhereOperator::Gt, n(20)), &["g3"]),
        (op("number", WhereOperator::Gte, n(20)), &["g2", "g3"]),
        (op("number", WhereOperator::Lt, n(0)), &["g4"]),
        (
            op(
                "number",
                WhereOperator::In,
                DbValue::NumberArray(vec![10, 30]),
            ),
            &["g1", "g3"],
        ),
        (
            op(
                "number",
                WhereOperator::NotIn,
                DbValue::NumberArray(vec![10]),
            ),
            &["g2", "g3", "g4"],
        ),
        (op("moment", WhereOperator::Eq, t(20)), &["g2"]),
        (op("moment", WhereOperator::Ne, t(20)), &["g1", "g3", "g4"]),
        (op("moment", WhereOperator::Lt, t(20)), &["g1", "g4"]),
        (op("moment", WhereOperator::Lte, t(20)), &["g1", "g2", "g4"]),
        (op("moment", WhereOperator::Gt, t(20)), &["g3"]),
        (op("moment", WhereOperator::Gte, t(20)), &["g2", "g3"]),
        (
            op("flag", WhereOperator::Eq, DbValue::Boolean(true)),
            &["g1", "g2", "g3"],
        ),
        (
            op("flag", WhereOperator::Ne, DbValue::Boolean(true)),
            &["g4"],
        ),
        (
            op("number_opt", WhereOperator::Eq, DbValue::Null),
            &["g1", "g2", "g3", "g4"],
        ),
        (op("moment_opt", WhereOperator::Ne, DbValue::Null), &[]),
        // Range: AND of two comparisons.
    ];
    for (clause, expected) in cases {
        let label = format!("{clause:?}");
        assert_eq!(
            ids_where(&adapter, "gadget", vec![clause.clone()]).await,
            expected,
            "{label}"
        );
        assert_eq!(
            count_where(&adapter, "gadget", vec![clause]).await,
            expected.len() as u64,
            "count {label}"
        );
    }
    assert_eq!(
        ids_where(
            &adapter,
            "gadget",
            vec![
                op("moment", WhereOperator::Gt, t(0)),
                op("moment", WhereOperator::Lt, t(30)),
            ]
        )
        .await,
        ["g1", "g2"]
    );
    // A timestamp in another offset is the same instant.
    let shifted = at(20).to_offset(time::UtcOffset::from_hms(5, 30, 0).expect("offset"));
    assert_eq!(
        ids_where(
            &adapter,
            "gadget",
            vec![op("moment", WhereOperator::Eq, DbValue::Timestamp(shifted))]
        )
        .await,
        ["g2"]
    );
    // Pattern operators need strings: an adapter error, not a panic.
    assert_adapter_error(
        adapter
            .count(Count::new("gadget").where_clause(op("number", WhereOperator::Contains, n(1))))
            .await,
        "string pattern operators require string values",
    );
}

#[tokio::test]
async fn sort_asc_desc_with_limit_offset_paging() {
    let (adapter, _url) = adapter_with("sort paging", &extended_schema()).await;
    // Inserted out of order so that heap order differs from every sort order.
    for (id, number) in [("g3", 30), ("g1", 10), ("g5", 50), ("g2", 20), ("g4", 40)] {
        seed_gadget(&adapter, id, number, at(number)).await;
    }
    let page =
        |field: &str, direction: SortDirection, limit: Option<usize>, offset: Option<usize>| {
            let mut query = FindMany::new("gadget").sort_by(Sort::new(field, direction));
            query.limit = limit;
            query.offset = offset;
            query
        };
    let run = |query: FindMany| {
        let adapter = adapter.clone();
        async move { ids(&adapter.find_many(query).await.expect("find_many")) }
    };

    assert_eq!(
        run(page("number", SortDirection::Asc, None, None)).await,
        ["g1", "g2", "g3", "g4", "g5"]
    );
    assert_eq!(
        run(page("number", SortDirection::Desc, None, None)).await,
        ["g5", "g4", "g3", "g2", "g1"]
    );
    assert_eq!(
        run(page("moment", SortDirection::Asc, Some(2), Some(0))).await,
        ["g1", "g2"]
    );
    assert_eq!(
        run(page("moment", SortDirection::Asc, Some(2), Some(2))).await,
        ["g3", "g4"]
    );
    assert_eq!(
        run(page("moment", SortDirection::Asc, Some(2), Some(4))).await,
        ["g5"]
    );
    assert!(run(page("moment", SortDirection::Asc, Some(2), Some(6)))
        .await
        .is_empty());
    assert_eq!(
        run(page("id", SortDirection::Desc, Some(3), Some(1))).await,
        ["g4", "g3", "g2"]
    );
    assert_eq!(
        run(page("text", SortDirection::Desc, None, Some(3))).await,
        ["g2", "g1"],
        "offset without limit"
    );
    assert_eq!(
        run(page("number", SortDirection::Asc, Some(0), None)).await,
        Vec::<String>::new(),
        "limit 0"
    );
    // Sort combined with a filter and a selection.
    let records = adapter
        .find_many(
            FindMany::new("gadget")
                .where_clause(op("number", WhereOperator::Gte, DbValue::Number(20)))
                .sort_by(Sort::new("number", SortDirection::Desc))
                .limit(2)
                .select(["number", "id"]),
        )
        .await
        .expect("find_many");
    assert_eq!(records.len(), 2);
    assert_eq!(keys(&records[0]), ["number", "id"]);
    assert_eq!(records[0].get("number"), Some(&DbValue::Number(50)));
    assert_eq!(records[1].get("number"), Some(&DbValue::Number(40)));
}

// ---------------------------------------------------------------------------------------------
// c.4 / b.3: renamed and schema-qualified tables.

fn renamed_schema() -> DbSchema {
    auth_schema(AuthSchemaOptions {
        user: TableOptions::default()
            .with_name("app_users")
            .with_field_name("email", "email_address")
            .with_field_name("created_at", "created_on"),
        session: TableOptions::default()
            .with_name("app_sessions")
            .with_field_name("user_id", "owner_id")
            .with_field_name("token", "session_token"),
        account: TableOptions::default().with_name("app_accounts"),
        verification: TableOptions::default().with_name("app_verifications"),
        ..AuthSchemaOptions::default()
    })
}

#[tokio::test]
async fn renamed_tables_and_columns_logical_in_logical_out() {
    let schema = renamed_schema();
    let (adapter, url) = adapter_with("renamed", &schema).await;
    seed_user(&adapter, "ada", "ada@example.com", at(1)).await;
    seed_user(&adapter, "bob", "bob@example.com", at(2)).await;
    seed_session(&adapter, "s1", "ada").await;

    // The physical layout really is renamed.
    let client = support::connect(&url).await;
    let row = client
        .query_one(
            "SELECT email_address, created_on FROM app_users WHERE id = 'ada'",
            &[],
        )
        .await
        .expect("physical columns");
    assert_eq!(row.get::<_, String>(0), "ada@example.com");
    let owner: String = client
        .query_one("SELECT owner_id FROM app_sessions WHERE id = 's1'", &[])
        .await
        .expect("physical FK column")
        .get(0);
    assert_eq!(owner, "ada");

    // Logical names in, logical keys out.
    let user = adapter
        .find_one(FindOne::new("user").where_clause(eq("email", s("ada@example.com"))))
        .await
        .expect("find logical")
        .expect("row");
    assert_eq!(
        keys(&user),
        [
            "id",
            "name",
            "email",
            "email_verified",
            "image",
            "created_at",
            "updated_at"
        ]
    );
    assert_eq!(user.get("created_at"), Some(&DbValue::Timestamp(at(1))));

    // Physical names are accepted for the model, where, select and sort; keys stay logical.
    let physical = adapter
        .find_many(
            FindMany::new("app_users")
                .where_clause(op(
                    "email_address",
                    WhereOperator::EndsWith,
                    s("example.com"),
                ))
                .sort_by(Sort::new("created_on", SortDirection::Desc))
                .select(["id", "email_address", "created_on"]),
        )
        .await
        .expect("find physical");
    assert_eq!(ids(&physical), ["bob", "ada"]);
    assert_eq!(keys(&physical[0]), ["id", "email", "created_at"]);
    assert_eq!(
        count_where(
            &adapter,
            "app_users",
            vec![eq("email_address", s("bob@example.com"))]
        )
        .await,
        1
    );

    let updated = adapter
        .update(
            Update::new("app_users")
                .where_clause(eq("id", s("bob")))
                .data("email_address", s("robert@example.com")),
        )
        .await
        .expect("update physical")
        .expect("row");
    assert_eq!(updated.get("email"), Some(&s("robert@example.com")));
    assert!(!updated.contains_key("email_address"));

    let session = adapter
        .find_one(
            FindOne::new("session")
                .where_clause(eq("token", s("tok_s1")))
                .join("user", JoinOption::enabled()),
        )
        .await
        .expect("join renamed")
        .expect("row");
    assert_eq!(session.get("user_id"), Some(&s("ada")));
    assert_eq!(string(nested(&session, "user"), "email"), "ada@example.com");

    assert_eq!(
        adapter
            .delete_many(DeleteMany::new("app_sessions").where_clause(eq("owner_id", s("ada"))))
            .await
            .expect("delete physical"),
        1
    );
    assert_eq!(
        adapter
            .update_many(UpdateMany::new("user").data("created_on", DbValue::Timestamp(at(9))))
            .await
            .expect("update_many physical data key"),
        2
    );
    assert_eq!(
        count_where(
            &adapter,
            "user",
            vec![eq("created_at", DbValue::Timestamp(at(9)))]
        )
        .await,
        2
    );
}

#[tokio::test]
async fn schema_qualified_tables_crud_and_join() {
    let url = support::fresh_database("qualified").await;
    let client = support::connect(&url).await;
    client
        .batch_execute("CREATE SCHEMA internal_xyz")
        .await
        .expect("create postgres schema");
    let schema = auth_schema(AuthSchemaOptions {
        user: TableOptions::default().with_name("internal_xyz.users"),
        session: TableOptions::default().with_name("internal_xyz.sessions"),
        account: TableOptions::default().with_name("internal_xyz.accounts"),
        verification: TableOptions::default().with_name("internal_xyz.verifications"),
        ..AuthSchemaOptions::default()
    });
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    crud_common::install(&adapter, &schema).await;

    let in_schema: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'internal_xyz'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(in_schema, 4);
    let in_public: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'",
            &[],
        )
        .await
        .expect("catalog")
        .get(0);
    assert_eq!(in_public, 0);

    seed_user(&adapter, "ada", "ada@example.com", at(0)).await;
    seed_user(&adapter, "bob", "bob@example.com", at(1)).await;
    seed_session(&adapter, "s1", "ada").await;
    crud_common::seed_account(&adapter, "a1", "ada").await;

    assert_eq!(count_where(&adapter, "user", vec![]).await, 2);
    assert_eq!(
        count_where(&adapter, "internal_xyz.users", vec![]).await,
        2,
        "the qualified physical name resolves too"
    );
    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(eq("id", s("bob")))
                .data("name", s("Robert")),
        )
        .await
        .expect("update")
        .expect("row");
    assert_eq!(updated.get("name"), Some(&s("Robert")));

    let session = adapter
        .find_one(
            FindOne::new("session")
                .where_clause(eq("token", s("tok_s1")))
                .join("user", JoinOption::enabled()),
        )
        .await
        .expect("join")
        .expect("row");
    assert_eq!(string(nested(&session, "user"), "id"), "ada");
    let user = adapter
        .find_one(
            FindOne::new("user")
                .where_clause(eq("id", s("ada")))
                .join("account", JoinOption::enabled()),
        )
        .await
        .expect("join")
        .expect("row");
    assert_eq!(ids(crud_common::array(&user, "account")), ["a1"]);

    adapter
        .delete(Delete::new("user").where_clause(eq("id", s("ada"))))
        .await
        .expect("delete");
    assert_eq!(
        count_where(&adapter, "session", vec![]).await,
        0,
        "ON DELETE CASCADE into the qualified sessions table"
    );
    assert_eq!(
        adapter
            .delete_many(DeleteMany::new("user"))
            .await
            .expect("delete_many"),
        1
    );

    let plan = adapter.plan_migrations(&schema).await.expect("plan");
    assert!(plan.is_empty(), "{:?}", plan.statements);
}

// ---------------------------------------------------------------------------------------------
// f: errors are values, never panics.

#[tokio::test]
async fn f_unknown_model_is_table_not_found_for_every_method() {
    let (adapter, _url) = default_adapter("f unknown model").await;
    let is_table_not_found = |result: Result<(), RustAuthError>| match result {
        Err(RustAuthError::TableNotFound { table }) => assert_eq!(table, "nope"),
        other => panic!("expected TableNotFound, got {other:?}"),
    };
    is_table_not_found(
        adapter
            .create(Create::new("nope").data("id", s("x")))
            .await
            .map(drop),
    );
    is_table_not_found(adapter.find_one(FindOne::new("nope")).await.map(drop));
    is_table_not_found(adapter.find_many(FindMany::new("nope")).await.map(drop));
    is_table_not_found(adapter.count(Count::new("nope")).await.map(drop));
    is_table_not_found(
        adapter
            .update(Update::new("nope").data("id", s("x")))
            .await
            .map(drop),
    );
    is_table_not_found(
        adapter
            .update_many(UpdateMany::new("nope").data("id", s("x")))
            .await
            .map(drop),
    );
    is_table_not_found(adapter.delete(Delete::new("nope")).await);
    is_table_not_found(adapter.delete_many(DeleteMany::new("nope")).await.map(drop));
    is_table_not_found(
        adapter
            .find_many(FindMany::new("user").join("nope", JoinOption::enabled()))
            .await
            .map(drop),
    );
    // The adapter still works afterwards.
    assert_eq!(count_where(&adapter, "user", vec![]).await, 0);
}

#[tokio::test]
async fn f_unknown_field_is_field_not_found() {
    let (adapter, _url) = default_adapter("f unknown field").await;
    seed_user(&adapter, "u1", "u1@example.com", at(0)).await;
    let is_field_not_found = |result: Result<(), RustAuthError>| match result {
        Err(RustAuthError::FieldNotFound { field, .. }) => assert_eq!(field, "nope"),
        other => panic!("expected FieldNotFound, got {other:?}"),
    };
    is_field_not_found(
        adapter
            .find_one(FindOne::new("user").where_clause(eq("nope", s("x"))))
            .await
            .map(drop),
    );
    is_field_not_found(
        adapter
            .find_many(FindMany::new("user").select(["id", "nope"]))
            .await
            .map(drop),
    );
    is_field_not_found(
        adapter
            .find_many(FindMany::new("user").sort_by(Sort::new("nope", SortDirection::Asc)))
            .await
            .map(drop),
    );
    is_field_not_found(
        adapter
            .count(Count::new("user").where_clause(eq("nope", s("x"))))
            .await
            .map(drop),
    );
    is_field_not_found(
        adapter
            .create(Create::new("user").data("id", s("u2")).data("nope", s("x")))
            .await
            .map(drop),
    );
    is_field_not_found(
        adapter
            .create(Create::new("user").data("id", s("u3")).select(["nope"]))
            .await
            .map(drop),
    );
    is_field_not_found(
        adapter
            .update(
                Update::new("user")
                    .where_clause(eq("id", s("u1")))
                    .data("nope", s("x")),
            )
            .await
            .map(drop),
    );
    is_field_not_found(
        adapter
            .update_many(UpdateMany::new("user").data("nope", s("x")))
            .await
            .map(drop),
    );
    is_field_not_found(
        adapter
            .delete(Delete::new("user").where_clause(eq("nope", s("x"))))
            .await,
    );
    is_field_not_found(
        adapter
            .delete_many(DeleteMany::new("user").where_clause(eq("nope", s("x"))))
            .await
            .map(drop),
    );
    // Nothing was written or removed.
    assert_eq!(ids_where(&adapter, "user", vec![]).await, ["u1"]);
}

#[tokio::test]
async fn f_invalid_where_values_are_adapter_errors() {
    let (adapter, _url) = default_adapter("f invalid where").await;
    seed_user(&adapter, "u1", "u1@example.com", at(0)).await;

    for operator in [
        WhereOperator::Lt,
        WhereOperator::Lte,
        WhereOperator::Gt,
        WhereOperator::Gte,
        WhereOperator::In,
        WhereOperator::NotIn,
        WhereOperator::Contains,
    ] {
        assert_adapter_error(
            adapter
                .find_many(FindMany::new("user").where_clause(op("image", operator, DbValue::Null)))
                .await,
            "null only supports Eq and Ne operators",
        );
    }
    for operator in [WhereOperator::In, WhereOperator::NotIn] {
        assert_adapter_error(
            adapter
                .count(Count::new("user").where_clause(op("id", operator, s("u1"))))
                .await,
            "IN and NOT IN require array values",
        );
        assert_adapter_error(
            adapter
                .delete_many(DeleteMany::new("user").where_clause(op(
                    "id",
                    operator,
                    DbValue::Number(1),
                )))
                .await,
            "IN and NOT IN require array values",
        );
    }
    assert_adapter_error(
        adapter
            .update(
                Update::new("user")
                    .where_clause(op("email", WhereOperator::StartsWith, strings(&["u"])))
                    .data("name", s("x")),
            )
            .await,
        "string pattern operators require string values",
    );
    // A joined record is never bindable.
    let result = adapter
        .update_many(UpdateMany::new("user").data("name", DbValue::Record(DbRecord::new())))
        .await;
    assert!(
        matches!(result, Err(RustAuthError::Adapter(_))),
        "{result:?}"
    );
    // A value of the wrong type for its column is a tokio-postgres adapter error.
    assert_adapter_error(
        adapter
            .count(Count::new("user").where_clause(eq("email_verified", s("yes"))))
            .await,
        "tokio-postgres error",
    );
    // Nothing changed, and the connection is still healthy.
    let user = adapter
        .find_one(FindOne::new("user").where_clause(eq("id", s("u1"))))
        .await
        .expect("find")
        .expect("row");
    assert_eq!(user.get("name"), Some(&s("u1")));
}

#[tokio::test]
async fn f_unique_violation_is_an_adapter_error_with_23505() {
    let (adapter, _url) = default_adapter("f unique").await;
    seed_user(&adapter, "u1", "dup@example.com", at(0)).await;
    let result = adapter
        .create(
            Create::new("user")
                .data("id", s("u2"))
                .data("name", s("u2"))
                .data("email", s("dup@example.com"))
                .data("email_verified", DbValue::Boolean(false))
                .data("created_at", DbValue::Timestamp(at(0)))
                .data("updated_at", DbValue::Timestamp(at(0))),
        )
        .await;
    assert_adapter_error(result, "23505");
    assert_eq!(count_where(&adapter, "user", vec![]).await, 1);
}

// ---------------------------------------------------------------------------------------------
// The concurrency figure: two connections refreshing one session at once.

/// Seeds one user and one session, then for `rounds` rounds runs `update(seconds)` from two
/// separate connections at once (seconds `base + 10 * round` and one more). Returns the
/// adapter of the seeding connection, how many updates returned the row, and the (round,
/// connection) of every update that returned `None`.
async fn race_two_connections(
    label: &str,
    rounds: usize,
    base: i64,
    update: fn(i64) -> Update,
) -> (TokioPostgresAdapter, usize, Vec<(usize, &'static str)>) {
    let schema = crud_common::default_schema();
    let (adapter, url) = adapter_with(label, &schema).await;
    seed_user(&adapter, "u1", "u1@example.com", at(0)).await;
    seed_session(&adapter, "s1", "u1").await;

    let first = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("first connection");
    let second = TokioPostgresAdapter::connect_with_schema(&url, schema)
        .await
        .expect("second connection");
    let run = |adapter: TokioPostgresAdapter, seconds: i64| async move {
        adapter.update(update(seconds)).await
    };
    let mut refreshed = 0usize;
    let mut lost = Vec::new();
    for round in 0..rounds {
        let seconds = base + 10 * round as i64;
        let (a, b) = tokio::join!(
            tokio::spawn(run(first.clone(), seconds)),
            tokio::spawn(run(second.clone(), seconds + 1)),
        );
        for (who, outcome) in [("first", a), ("second", b)] {
            match outcome.expect("task").expect("update must not fail") {
                Some(record) => {
                    assert_eq!(record.get("id"), Some(&s("s1")));
                    refreshed += 1;
                }
                None => lost.push((round, who)),
            }
        }
    }
    (adapter, refreshed, lost)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_refreshing_one_session_lose_no_refresh() {
    const ROUNDS: usize = 200;
    let (adapter, refreshed, lost) =
        race_two_connections("g concurrent refresh", ROUNDS, 100_000, |seconds| {
            Update::new("session")
                .where_clause(eq("token", s("tok_s1")))
                .data("expires_at", DbValue::Timestamp(at(seconds)))
                .data("updated_at", DbValue::Timestamp(at(seconds)))
        })
        .await;
    eprintln!(
        "two connections refreshing one session: {refreshed} of {} updates returned the row, {} lost",
        2 * ROUNDS,
        lost.len()
    );
    assert!(
        lost.is_empty(),
        "lost refreshes (round, connection): {lost:?}"
    );
    assert_eq!(refreshed, 2 * ROUNDS);

    let last = 100_000 + 10 * (ROUNDS as i64 - 1);
    let session = adapter
        .find_one(FindOne::new("session").where_clause(eq("token", s("tok_s1"))))
        .await
        .expect("find")
        .expect("session");
    let expires = session.get("expires_at").cloned();
    assert!(
        expires == Some(DbValue::Timestamp(at(last)))
            || expires == Some(DbValue::Timestamp(at(last + 1))),
        "the last round's value wins: {expires:?}"
    );
    assert_eq!(count_where(&adapter, "session", vec![]).await, 1);
}

/// Same figure through a where clause on a non-unique column (`user_id`, one matching row),
/// which `update` cannot address by a unique key. Core's `ctid IN (SELECT ctid … LIMIT 1)`
/// plan loses the second of two concurrent updates (its re-check finds the old row version
/// gone and reports no row), although the row matched before and after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_connections_updating_one_row_by_non_unique_where_lose_no_update() {
    const ROUNDS: usize = 100;
    let (_adapter, refreshed, lost) =
        race_two_connections("concurrent update", ROUNDS, 200_000, |seconds| {
            Update::new("session")
                .where_clause(eq("user_id", s("u1")))
                .data("expires_at", DbValue::Timestamp(at(seconds)))
        })
        .await;
    eprintln!(
        "two connections updating one session by user_id: {refreshed} of {} updates returned the row",
        2 * ROUNDS
    );
    assert_eq!(
        lost.len(),
        0,
        "updates that matched a row but returned None: {lost:?}"
    );
    assert_eq!(refreshed, 2 * ROUNDS);
}

/// Single-row `update`/`delete` whose where-clause is not a case-sensitive equality on a
/// unique column (no where, OR groups, insensitive equality, IS NOT NULL): exactly one row is
/// touched, and `update` returns that row as stored (behaviour.md §3, quirk Q9).
#[tokio::test]
async fn single_row_update_and_delete_touch_exactly_one_row() {
    let (adapter, _url) = default_adapter("single row").await;
    user_with(&adapter, "u1", "u1@example.com", DbValue::Null, false).await;
    user_with(&adapter, "u2", "u2@example.com", DbValue::Null, false).await;
    user_with(&adapter, "u3", "U3@Example.com", s("img"), false).await;
    user_with(&adapter, "u4", "u4@example.com", s("img"), false).await;
    let renamed = |adapter: TokioPostgresAdapter, name: &'static str| async move {
        ids_where(&adapter, "user", vec![eq("name", s(name))]).await
    };

    // No where at all: one arbitrary row.
    let updated = adapter
        .update(Update::new("user").data("name", s("first")))
        .await
        .expect("update without where")
        .expect("a row");
    assert_eq!(updated.get("name"), Some(&s("first")));
    assert_eq!(
        renamed(adapter.clone(), "first").await,
        [string(&updated, "id")]
    );

    // An OR group of non-unique predicates matching three rows.
    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(eq("image", DbValue::Null).or())
                .where_clause(eq("name", s("u4")).or())
                .data("name", s("second")),
        )
        .await
        .expect("update with OR group")
        .expect("a row");
    assert_eq!(renamed(adapter.clone(), "second").await.len(), 1);
    assert_eq!(updated.get("name"), Some(&s("second")));

    // AND + OR group where the OR part alone would match more rows than the whole.
    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(op("image", WhereOperator::Ne, DbValue::Null))
                .where_clause(eq("id", s("u1")).or())
                .where_clause(eq("id", s("u3")).or())
                .data("email_verified", DbValue::Boolean(true)),
        )
        .await
        .expect("update with AND and OR")
        .expect("a row");
    assert_eq!(updated.get("id"), Some(&s("u3")));
    assert_eq!(
        ids_where(
            &adapter,
            "user",
            vec![eq("email_verified", DbValue::Boolean(true))]
        )
        .await,
        ["u3"]
    );

    // Insensitive equality on the unique email column.
    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(eq("email", s("u3@example.COM")).insensitive())
                .data("name", s("third")),
        )
        .await
        .expect("insensitive update")
        .expect("a row");
    assert_eq!(updated.get("id"), Some(&s("u3")));

    // Nothing matching: None, nothing written.
    let none = adapter
        .update(
            Update::new("user")
                .where_clause(eq("image", s("missing")).or())
                .where_clause(eq("name", s("missing")).or())
                .data("name", s("never")),
        )
        .await
        .expect("update of nothing");
    assert!(none.is_none());
    assert!(renamed(adapter.clone(), "never").await.is_empty());

    // delete: an OR group matching three rows removes one; no where removes one.
    adapter
        .delete(
            Delete::new("user")
                .where_clause(eq("image", DbValue::Null).or())
                .where_clause(eq("id", s("u4")).or()),
        )
        .await
        .expect("delete with OR group");
    assert_eq!(count_where(&adapter, "user", vec![]).await, 3);
    adapter
        .delete(Delete::new("user"))
        .await
        .expect("delete without where");
    assert_eq!(count_where(&adapter, "user", vec![]).await, 2);
    adapter
        .delete(Delete::new("user").where_clause(eq("email", s("U3@EXAMPLE.COM")).insensitive()))
        .await
        .expect("insensitive delete");
    assert_eq!(
        count_where(&adapter, "user", vec![eq("id", s("u3"))]).await,
        0,
        "{:?}",
        ids_where(&adapter, "user", vec![]).await
    );
}

/// The exact call shapes core's hot paths send (behaviour.md §9), on the default schema, with the
/// exact records they must produce: whatever path serves them (planned or precompiled), keys,
/// key order and values are those of the contract.
#[tokio::test]
async fn core_hot_path_shapes_return_exact_records() {
    let (adapter, _url) = default_adapter("g hot paths").await;
    // Nanoseconds: echoed by create (Q10), stored and read back at microseconds.
    let now = at(1_000) + time::Duration::nanoseconds(123_456_789);
    let stored_now = at(1_000) + time::Duration::microseconds(123_456);
    let ts = |value| DbValue::Timestamp(value);

    // Sign-up: three creates in one transaction, as core sends them.
    adapter
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                let user = tx
                    .create(
                        Create::new("user")
                            .data("id", s("uid"))
                            .data("name", s("Ada"))
                            .data("email", s("ada@example.com"))
                            .data("email_verified", DbValue::Boolean(false))
                            .data("image", DbValue::Null)
                            .data("created_at", ts(now))
                            .data("updated_at", ts(now))
                            .select(USER_FIELDS)
                            .force_allow_id(),
                    )
                    .await?;
                assert_eq!(keys(&user), USER_FIELDS);
                assert_eq!(user.get("created_at"), Some(&ts(now)));
                let mut account = Create::new("account")
                    .data("id", s("aid"))
                    .data("provider_id", s("credential"))
                    .data("account_id", s("uid"))
                    .data("user_id", s("uid"));
                for field in [
                    "access_token",
                    "refresh_token",
                    "id_token",
                    "access_token_expires_at",
                    "refresh_token_expires_at",
                    "scope",
                ] {
                    account = account.data(field, DbValue::Null);
                }
                let account = tx
                    .create(
                        account
                            .data("password", s("hash-1"))
                            .data("created_at", ts(now))
                            .data("updated_at", ts(now))
                            .select(ACCOUNT_FIELDS),
                    )
                    .await?;
                assert_eq!(keys(&account), ACCOUNT_FIELDS);
                let session = tx
                    .create(
                        Create::new("session")
                            .data("id", s("sid"))
                            .data("user_id", s("uid"))
                            .data("expires_at", ts(now + time::Duration::days(7)))
                            .data("token", s("token-1"))
                            .data("ip_address", s("127.0.0.1"))
                            .data("user_agent", DbValue::Null)
                            .data("created_at", ts(now))
                            .data("updated_at", ts(now))
                            .select(SESSION_FIELDS),
                    )
                    .await?;
                assert_eq!(keys(&session), SESSION_FIELDS);
                Ok(())
            })
        }))
        .await
        .expect("sign-up transaction");

    // User by email with USER_FIELDS, and with the account join (sign-in).
    let user = adapter
        .find_one(
            FindOne::new("user")
                .where_clause(eq("email", s("ada@example.com")))
                .select(USER_FIELDS),
        )
        .await
        .expect("user by email")
        .expect("user");
    assert_eq!(keys(&user), USER_FIELDS);
    assert_eq!(user.get("created_at"), Some(&ts(stored_now)));
    assert_eq!(user.get("image"), Some(&DbValue::Null));
    let with_accounts = adapter
        .find_one(
            FindOne::new("user")
                .where_clause(eq("email", s("ada@example.com")))
                .select(USER_FIELDS)
                .join("account", JoinOption::enabled()),
        )
        .await
        .expect("user with accounts")
        .expect("user");
    let mut joined_keys = USER_FIELDS.to_vec();
    joined_keys.push("account");
    assert_eq!(keys(&with_accounts), joined_keys);
    let accounts = crud_common::array(&with_accounts, "account");
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0].get("password"), Some(&s("hash-1")));

    // Session by token with SESSION_FIELDS, then all fields; user by id, all fields.
    let session = adapter
        .find_one(
            FindOne::new("session")
                .where_clause(eq("token", s("token-1")))
                .select(SESSION_FIELDS),
        )
        .await
        .expect("session by token")
        .expect("session");
    assert_eq!(keys(&session), SESSION_FIELDS);
    assert_eq!(session.get("ip_address"), Some(&s("127.0.0.1")));
    assert_eq!(session.get("user_agent"), Some(&DbValue::Null));
    assert_eq!(
        session.get("expires_at"),
        Some(&ts(stored_now + time::Duration::days(7)))
    );
    let full_session = adapter
        .find_one(FindOne::new("session").where_clause(eq("token", s("token-1"))))
        .await
        .expect("session by token")
        .expect("session");
    assert_eq!(
        keys(&full_session),
        [
            "id",
            "expires_at",
            "token",
            "created_at",
            "updated_at",
            "ip_address",
            "user_agent",
            "user_id"
        ]
    );
    assert_eq!(full_session, session);
    let full_user = adapter
        .find_one(FindOne::new("user").where_clause(eq("id", s("uid"))))
        .await
        .expect("user by id")
        .expect("user");
    assert_eq!(keys(&full_user), USER_FIELDS);
    assert_eq!(full_user, user);

    // Session refresh by token.
    let refreshed = adapter
        .update(
            Update::new("session")
                .where_clause(eq("token", s("token-1")))
                .data("expires_at", ts(at(99_999)))
                .data("updated_at", ts(at(5_000))),
        )
        .await
        .expect("refresh")
        .expect("session");
    assert_eq!(keys(&refreshed), keys(&full_session));
    assert_eq!(refreshed.get("expires_at"), Some(&ts(at(99_999))));
    assert_eq!(refreshed.get("created_at"), Some(&ts(stored_now)));

    // Password reset: verification create, cleanup, lookup, account update, delete.
    for (id, identifier, expires) in [
        ("v1", "reset-password:abc", at(10_000)),
        ("v2", "reset-password:abc", at(20_000)),
        ("v3", "reset-password:old", at(10)),
    ] {
        let created = adapter
            .create(
                Create::new("verification")
                    .data("id", s(id))
                    .data("identifier", s(identifier))
                    .data("value", s("uid"))
                    .data("expires_at", ts(expires))
                    .data("created_at", ts(expires - time::Duration::hours(1)))
                    .data("updated_at", ts(expires - time::Duration::hours(1)))
                    .select(VERIFICATION_FIELDS),
            )
            .await
            .expect("verification");
        assert_eq!(keys(&created), VERIFICATION_FIELDS);
    }
    let cleaned = adapter
        .delete_many(DeleteMany::new("verification").where_clause(op(
            "expires_at",
            WhereOperator::Lt,
            ts(at(5_000)),
        )))
        .await
        .expect("cleanup");
    assert_eq!(cleaned, 1);
    let latest = adapter
        .find_many(
            FindMany::new("verification")
                .where_clause(eq("identifier", s("reset-password:abc")))
                .sort_by(Sort::new("created_at", SortDirection::Desc))
                .limit(1)
                .select(VERIFICATION_FIELDS),
        )
        .await
        .expect("lookup");
    assert_eq!(ids(&latest), ["v2"]);
    assert_eq!(keys(&latest[0]), VERIFICATION_FIELDS);
    let account = adapter
        .update(
            Update::new("account")
                .where_clause(eq("user_id", s("uid")))
                .where_clause(eq("provider_id", s("credential")))
                .data("password", s("hash-2"))
                .data("updated_at", ts(at(6_000))),
        )
        .await
        .expect("password update")
        .expect("account");
    assert_eq!(account.get("password"), Some(&s("hash-2")));
    assert_eq!(account.len(), 13);
    adapter
        .delete(Delete::new("verification").where_clause(eq("identifier", s("reset-password:abc"))))
        .await
        .expect("delete verification");
    assert_eq!(
        count_where(&adapter, "verification", vec![]).await,
        1,
        "delete removes a single row"
    );

    // Sign-out: delete session by token.
    adapter
        .delete(Delete::new("session").where_clause(eq("token", s("token-1"))))
        .await
        .expect("sign-out");
    let gone = adapter
        .find_one(
            FindOne::new("session")
                .where_clause(eq("token", s("token-1")))
                .select(SESSION_FIELDS),
        )
        .await
        .expect("session by token");
    assert!(gone.is_none());
}
