//! Bad input: every row of the table below gets a clear `RustAuthError`
//! (never a panic) and leaves the database as it was (checked by reading back), unless the
//! contract defines a non-error answer, which is then asserted instead.
//!
//! | Input | Result |
//! | --- | --- |
//! | NUL byte in a text value (create, update, where, array element) | `Adapter`, SQLSTATE 22021; nothing written |
//! | NUL (`\u0000`) inside a JSON string | `Adapter`, SQLSTATE 22P05; nothing written |
//! | Invalid UUID on a uuid-id schema (create, where, `In`) | `Adapter` "invalid UUID parameter `…`", before the database |
//! | Pattern operator on a uuid column | `Adapter`, SQLSTATE 42883 (no `uuid ~~ text` operator) |
//! | Unknown model | `TableNotFound { table }` |
//! | Unknown field in data / where / select / sort | `FieldNotFound { table: <physical>, field }` |
//! | Value of the wrong type for a column | `Adapter` "error serializing parameter N"; nothing written |
//! | `Record`/`RecordArray` as a value | `Adapter` "joined records … cannot be bound" |
//! | `Null` with an ordering or pattern operator | `Adapter` "null only supports Eq and Ne operators" |
//! | `In`/`NotIn` with a non-array value; pattern with a non-string | `Adapter` (core's where-clause errors) |
//! | 10,000-element `In`/`NotIn` lists, and 65,535 (the protocol's maximum) | work: exact counts |
//! | 65,536 or more `In` values | `Adapter` "statement has N parameters; PostgreSQL accepts at most 65535", before sending; connection still usable |
//! | LIKE metacharacters `%` `_` `\` in pattern values | matched literally |
//! | Quotes, semicolons, comment markers, unicode in values | stored and matched verbatim |
//! | Quotes, unicode, spaces, empty parts in table/column names | `Adapter` "invalid postgres identifier `…`"; nothing created |
//! | `i64::MAX` into an `integer` (int4) / `smallint` column | `Adapter` "number … does not fit the int4 column"; nothing written |
//! | `i64::MAX` / `i64::MIN` into `bigint` | stored and read back exactly |
//! | Timestamp before 4713 BC (year −9999) | `Adapter`, SQLSTATE 22008 (timestamp out of range); nothing written |
//! | Stored timestamp beyond `time`'s range (year 10000, `infinity`, `-infinity`) | read fails with `Adapter` "error deserializing column"; rows intact |
//! | `LIMIT`/`OFFSET` of `usize::MAX` | `Adapter`, SQLSTATE 22003 (bigint out of range) |
//! | Empty `update` / `update_many` data | `Ok(None)` / `Ok(0)` (behaviour.md §3), row unchanged |
//! | Empty `create` data | `Adapter`, SQLSTATE 23502 (NOT NULL); nothing written |
//! | A bad value in the second assignment of `update_many` | error; no row changed |
//! | A failing call inside a transaction after a good one | error; the good write is rolled back |
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::{self, text, user_count};
use crate::support;

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbField, DbFieldType, DbRecord,
    DbSchema, DbTable, DbValue, FindMany, FindOne, IdGeneration, IdPolicy, Sort, SortDirection,
    TableOptions, Update, UpdateMany, Where, WhereOperator,
};
use rustauth_core::error::RustAuthError;
use rustauth_tokio_postgres::TokioPostgresAdapter;
use serde_json::json;
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time};

/// A brand-new database with the default auth tables; returns the adapter and its URL.
async fn setup(label: &str) -> (TokioPostgresAdapter, String) {
    setup_with(label, auth_schema(AuthSchemaOptions::default())).await
}

async fn setup_with(label: &str, schema: DbSchema) -> (TokioPostgresAdapter, String) {
    let url = support::fresh_database(label).await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    adapter
        .create_schema(&schema, None)
        .await
        .expect("create schema");
    (adapter, url)
}

async fn users(adapter: &TokioPostgresAdapter) -> Vec<DbRecord> {
    adapter
        .find_many(FindMany::new("user").sort_by(Sort::new("id", SortDirection::Asc)))
        .await
        .expect("read users back")
}

/// Unwraps an adapter error's text, failing on any other result.
fn adapter_error<T: std::fmt::Debug>(result: Result<T, RustAuthError>) -> String {
    match result {
        Err(RustAuthError::Adapter(message)) => message,
        other => panic!("expected an adapter error, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------
// NUL bytes
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn nul_byte_in_text_is_rejected_and_nothing_is_written() {
    let (adapter, _) = setup("bad_nul").await;
    adapter
        .create(user_with_email("u1", "a@example.com"))
        .await
        .unwrap();
    let before = users(&adapter).await;

    let created = adapter
        .create(user_with_email("u2", "nul\0@example.com"))
        .await;
    assert!(adapter_error(created).contains("22021"));

    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(Where::new("id", text("u1")))
                .data("name", text("Ada\0Lovelace")),
        )
        .await;
    assert!(adapter_error(updated).contains("22021"));

    let found = adapter
        .find_one(FindOne::new("user").where_clause(Where::new("email", text("a\0"))))
        .await;
    assert!(adapter_error(found).contains("22021"));

    let listed = adapter
        .count(
            Count::new("user").where_clause(
                Where::new("email", DbValue::StringArray(vec!["x".into(), "\0".into()]))
                    .operator(WhereOperator::In),
            ),
        )
        .await;
    assert!(adapter_error(listed).contains("22021"));

    assert_eq!(users(&adapter).await, before, "no partial write");
}

#[tokio::test]
async fn nul_escape_inside_json_is_rejected_and_nothing_is_written() {
    let (adapter, _) = setup_with("bad_nul_json", wide_schema()).await;
    let result = adapter
        .create(wide_row("w1").data("doc", DbValue::Json(json!({"note": "a\u{0}b"}))))
        .await;
    assert!(adapter_error(result).contains("22P05"));
    let result = adapter
        .create(wide_row("w2").data(
            "tags",
            DbValue::StringArray(vec!["ok".into(), "n\0".into()]),
        ))
        .await;
    assert!(adapter_error(result).contains("22021"));
    assert_eq!(adapter.count(Count::new("wide")).await.unwrap(), 0);
}

// ------------------------------------------------------------------------------------------
// UUIDs
// ------------------------------------------------------------------------------------------

fn uuid_schema() -> DbSchema {
    auth_schema(AuthSchemaOptions {
        id_policy: IdPolicy::new(IdGeneration::Uuid).with_database_uuid_support(true),
        ..AuthSchemaOptions::default()
    })
}

#[tokio::test]
async fn invalid_uuid_is_rejected_before_the_database() {
    let (adapter, _) = setup_with("bad_uuid", uuid_schema()).await;
    let created = adapter
        .create(user_with_email("not-a-uuid", "a@example.com").select(["id"]))
        .await;
    let message = adapter_error(created);
    // The error names the column and does not repeat the value (it could be a token).
    assert!(
        message.contains("column `id`") && message.contains("not a valid UUID"),
        "{message}"
    );
    assert!(!message.contains("not-a-uuid"), "{message}");
    assert_eq!(user_count(&adapter).await, 0, "nothing written");

    let found = adapter
        .find_one(FindOne::new("user").where_clause(Where::new("id", text("1234"))))
        .await;
    let message = adapter_error(found);
    assert!(
        message.contains("column `id`") && !message.contains("1234"),
        "{message}"
    );

    let listed = adapter
        .count(
            Count::new("session").where_clause(
                Where::new(
                    "user_id",
                    DbValue::StringArray(vec![
                        "6f1c8a39-4d6b-4d5e-9d3c-6b1f9e0f7a11".into(),
                        "zz".into(),
                    ]),
                )
                .operator(WhereOperator::In),
            ),
        )
        .await;
    let message = adapter_error(listed);
    assert!(
        message.contains("column `user_id`") && message.contains("not a valid UUID"),
        "{message}"
    );

    // A pattern on a uuid column has no operator in PostgreSQL.
    let pattern = adapter
        .count(
            Count::new("user")
                .where_clause(Where::new("id", text("6f1c")).operator(WhereOperator::StartsWith)),
        )
        .await;
    assert!(adapter_error(pattern).contains("42883"));

    // A valid UUID, upper case, still works and reads back lower case.
    let id = "6F1C8A39-4D6B-4D5E-9D3C-6B1F9E0F7A11";
    let created = adapter
        .create(user_with_email(id, "b@example.com").select(["id"]))
        .await
        .expect("valid uuid");
    assert_eq!(created.get("id"), Some(&text(id.to_lowercase())));
    assert_eq!(user_count(&adapter).await, 1);
}

// ------------------------------------------------------------------------------------------
// Unknown names
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn unknown_model_is_table_not_found() {
    let (adapter, _) = setup("bad_model").await;
    let mut create = user_with_email("u1", "a@example.com");
    create.model = "gizmo".into();
    assert_eq!(
        adapter.create(create).await,
        Err(RustAuthError::TableNotFound {
            table: "gizmo".into()
        })
    );
    assert_eq!(
        adapter.count(Count::new("gizmo")).await,
        Err(RustAuthError::TableNotFound {
            table: "gizmo".into()
        })
    );
    assert_eq!(user_count(&adapter).await, 0);
}

#[tokio::test]
async fn unknown_field_is_field_not_found_everywhere() {
    let (adapter, _) = setup("bad_field").await;
    adapter
        .create(user_with_email("u1", "a@example.com"))
        .await
        .unwrap();
    let before = users(&adapter).await;
    let not_found = |field: &str| RustAuthError::FieldNotFound {
        table: "users".into(),
        field: field.into(),
    };

    let created = adapter
        .create(user_with_email("u2", "b@example.com").data("nickname", text("x")))
        .await;
    assert_eq!(created, Err(not_found("nickname")));

    let found = adapter
        .find_one(FindOne::new("user").where_clause(Where::new("nick", text("x"))))
        .await;
    assert_eq!(found, Err(not_found("nick")));

    let selected = adapter
        .find_many(FindMany::new("user").select(["id", "shoe_size"]))
        .await;
    assert_eq!(selected, Err(not_found("shoe_size")));

    let sorted = adapter
        .find_many(FindMany::new("user").sort_by(Sort::new("height", SortDirection::Asc)))
        .await;
    assert_eq!(sorted, Err(not_found("height")));

    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(Where::new("id", text("u1")))
                .data("name", text("Changed"))
                .data("age", DbValue::Number(3)),
        )
        .await;
    assert_eq!(updated, Err(not_found("age")));

    assert_eq!(users(&adapter).await, before, "nothing changed");
}

// ------------------------------------------------------------------------------------------
// Wrong types
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn value_of_the_wrong_type_is_rejected_and_nothing_is_written() {
    let (adapter, _) = setup("bad_type").await;
    let cases = [
        ("name", DbValue::Number(7)),
        ("name", DbValue::Json(json!({"a": 1}))),
        ("name", DbValue::StringArray(vec!["a".into()])),
        ("email_verified", text("yes")),
        ("created_at", DbValue::Boolean(true)),
        ("image", DbValue::Timestamp(OffsetDateTime::now_utc())),
        ("email_verified", DbValue::NumberArray(vec![1])),
    ];
    for (index, (field, value)) in cases.into_iter().enumerate() {
        let create = user_with_email(&format!("u{index}"), &format!("{index}@example.com"))
            .data(field, value.clone());
        let message = adapter_error(adapter.create(create).await);
        assert!(
            message.contains("error serializing parameter"),
            "{field} = {value:?}: {message}"
        );
    }
    assert_eq!(user_count(&adapter).await, 0, "nothing written");

    adapter
        .create(user_with_email("u1", "a@example.com"))
        .await
        .unwrap();
    let before = users(&adapter).await;
    let wrong_where = adapter
        .find_many(FindMany::new("user").where_clause(Where::new("email_verified", text("true"))))
        .await;
    assert!(adapter_error(wrong_where).contains("error serializing parameter"));
    let wrong_update = adapter
        .update_many(UpdateMany::new("user").data("created_at", DbValue::Number(0)))
        .await;
    assert!(adapter_error(wrong_update).contains("error serializing parameter"));
    assert_eq!(users(&adapter).await, before);
}

#[tokio::test]
async fn joined_records_and_bad_operator_values_are_rejected() {
    let (adapter, _) = setup("bad_operator").await;
    adapter
        .create(user_with_email("u1", "a@example.com"))
        .await
        .unwrap();
    let before = users(&adapter).await;

    let record = adapter
        .create(
            user_with_email("u2", "b@example.com").data("image", DbValue::Record(DbRecord::new())),
        )
        .await;
    assert!(adapter_error(record).contains("joined records"));
    let array = adapter
        .update(
            Update::new("user")
                .where_clause(Where::new("id", text("u1")))
                .data("name", DbValue::RecordArray(Vec::new())),
        )
        .await;
    assert!(adapter_error(array).contains("joined records"));

    for operator in [
        WhereOperator::Lt,
        WhereOperator::Gte,
        WhereOperator::In,
        WhereOperator::Contains,
    ] {
        let result = adapter
            .count(
                Count::new("user")
                    .where_clause(Where::new("image", DbValue::Null).operator(operator)),
            )
            .await;
        assert_eq!(
            adapter_error(result),
            "null only supports Eq and Ne operators",
            "{operator:?}"
        );
    }
    let not_array = adapter
        .count(
            Count::new("user")
                .where_clause(Where::new("id", text("u1")).operator(WhereOperator::In)),
        )
        .await;
    assert!(adapter_error(not_array).contains("array"));
    let not_text =
        adapter
            .count(Count::new("user").where_clause(
                Where::new("name", DbValue::Number(1)).operator(WhereOperator::Contains),
            ))
            .await;
    adapter_error(not_text);
    assert_eq!(users(&adapter).await, before);
}

// ------------------------------------------------------------------------------------------
// Large IN lists
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn ten_thousand_element_in_lists_work() {
    let (adapter, _) = setup("bad_in_list").await;
    for index in 0..3 {
        adapter
            .create(user_with_email(
                &format!("u{index}"),
                &format!("user{index}@example.com"),
            ))
            .await
            .unwrap();
    }
    let emails = |count: usize| {
        (0..count)
            .map(|index| format!("user{}@example.com", index * 2))
            .collect::<Vec<_>>()
    };
    let matched = adapter
        .count(Count::new("user").where_clause(
            Where::new("email", DbValue::StringArray(emails(10_000))).operator(WhereOperator::In),
        ))
        .await
        .expect("10k IN list");
    assert_eq!(matched, 2, "user0 and user2");
    let others = adapter
        .count(
            Count::new("user").where_clause(
                Where::new("email", DbValue::StringArray(emails(10_000)))
                    .operator(WhereOperator::NotIn)
                    .insensitive(),
            ),
        )
        .await
        .expect("10k NOT IN list");
    assert_eq!(others, 1, "user1");
    let numbers = adapter
        .count(
            Count::new("user").where_clause(
                Where::new(
                    "id",
                    DbValue::StringArray((0..10_000).map(|i| format!("u{i}")).collect()),
                )
                .operator(WhereOperator::In),
            ),
        )
        .await
        .expect("10k ids");
    assert_eq!(numbers, 3);

    // The most parameters one statement can have (the protocol counts them in 16 bits).
    let largest = adapter
        .count(Count::new("user").where_clause(
            Where::new("email", DbValue::StringArray(emails(65_535))).operator(WhereOperator::In),
        ))
        .await
        .expect("65,535-element IN list");
    assert_eq!(largest, 2);
}

/// One parameter more than the protocol can describe: an adapter error that names the limit,
/// and the connection stays usable. (Sent as is, the server's 16-bit parameter count wraps
/// and tokio-postgres reports "error parsing response from server: invalid message length",
/// which reads like a corrupted connection.)
#[tokio::test]
async fn in_lists_beyond_the_protocol_limit_get_a_clear_error() {
    let (adapter, _) = setup("bad_in_limit").await;
    adapter
        .create(user_with_email("u1", "a@example.com"))
        .await
        .unwrap();
    for size in [65_536, 70_000] {
        let values = (0..size)
            .map(|index| format!("{index}@example.com"))
            .collect();
        let oversized = adapter
            .count(Count::new("user").where_clause(
                Where::new("email", DbValue::StringArray(values)).operator(WhereOperator::In),
            ))
            .await;
        let message = adapter_error(oversized);
        assert!(
            message.contains("65535") || message.contains("65,535"),
            "{size} values: the error should name the limit, got: {message}"
        );
        assert_eq!(
            user_count(&adapter).await,
            1,
            "the connection is still usable"
        );
    }
}

// ------------------------------------------------------------------------------------------
// LIKE metacharacters, quotes, unicode
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn like_metacharacters_match_literally() {
    let (adapter, _) = setup("bad_like").await;
    let emails = [
        "100%@example.com",
        "1000@example.com",
        "a_b@example.com",
        "axb@example.com",
        "back\\slash@example.com",
        "backslash@example.com",
    ];
    for (index, email) in emails.iter().enumerate() {
        adapter
            .create(user_with_email(&format!("u{index}"), email))
            .await
            .unwrap();
    }
    let matching = |operator: WhereOperator, pattern: &str, insensitive: bool| {
        let mut clause = Where::new("email", text(pattern)).operator(operator);
        if insensitive {
            clause = clause.insensitive();
        }
        let adapter = adapter.clone();
        async move {
            let rows = adapter
                .find_many(
                    FindMany::new("user")
                        .where_clause(clause)
                        .sort_by(Sort::new("email", SortDirection::Asc)),
                )
                .await
                .expect("pattern query");
            rows.iter()
                .map(|row| match row.get("email") {
                    Some(DbValue::String(email)) => email.clone(),
                    other => panic!("email {other:?}"),
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        matching(WhereOperator::Contains, "%", false).await,
        ["100%@example.com"]
    );
    assert_eq!(
        matching(WhereOperator::Contains, "_", true).await,
        ["a_b@example.com"]
    );
    assert_eq!(
        matching(WhereOperator::Contains, "\\", false).await,
        ["back\\slash@example.com"]
    );
    assert_eq!(
        matching(WhereOperator::StartsWith, "100%", false).await,
        ["100%@example.com"]
    );
    assert_eq!(
        matching(WhereOperator::EndsWith, "%@EXAMPLE.COM", true).await,
        ["100%@example.com"]
    );
    assert!(matching(WhereOperator::Contains, "%%", false)
        .await
        .is_empty());
}

#[tokio::test]
async fn quotes_and_unicode_in_values_round_trip_verbatim() {
    let (adapter, _) = setup("bad_quotes").await;
    let names = [
        "O'Brien",
        "\"double\"",
        "Robert'); DROP TABLE users;--",
        "/* comment */ -- dash",
        "$1 $$ dollar $$",
        "E'\\x41'",
        "Zoë Ünïcödé 日本語 👩‍💻 \u{202e}rtl",
        "tab\tnew\nline\rreturn",
    ];
    for (index, name) in names.iter().enumerate() {
        adapter
            .create(
                user_with_email(&format!("u{index}"), &format!("{index}@example.com"))
                    .data("name", text(*name)),
            )
            .await
            .unwrap();
    }
    for (index, name) in names.iter().enumerate() {
        let found = adapter
            .find_one(FindOne::new("user").where_clause(Where::new("name", text(*name))))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name:?} not found"));
        assert_eq!(found.get("id"), Some(&text(format!("u{index}"))));
        assert_eq!(found.get("name"), Some(&text(*name)));
    }
    assert_eq!(user_count(&adapter).await, names.len() as u64);
}

#[tokio::test]
async fn hostile_identifiers_are_rejected_and_nothing_is_created() {
    let url = support::fresh_database("bad_ident").await;
    let names = [
        "us\"ers",
        "users; DROP TABLE x",
        "usérs",
        "users--",
        "1users",
        "",
        "a..b",
        "my users",
    ];
    for name in names {
        let schema = auth_schema(AuthSchemaOptions {
            user: TableOptions::default().with_name(name),
            ..AuthSchemaOptions::default()
        });
        let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
            .await
            .unwrap();
        let message = adapter_error(adapter.create_schema(&schema, None).await);
        assert!(
            message.contains("identifier") || message.contains("table name"),
            "{name:?}: {message}"
        );
        let message = adapter_error(adapter.count(Count::new("user")).await);
        assert!(message.contains("identifier"), "{name:?}: {message}");
    }
    for column in ["e'mail", "email\"", "e mail", "émail", ""] {
        let schema = auth_schema(AuthSchemaOptions {
            user: TableOptions::default().with_field_name("email", column),
            ..AuthSchemaOptions::default()
        });
        let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
            .await
            .unwrap();
        let message = adapter_error(adapter.create_schema(&schema, None).await);
        assert!(message.contains("identifier"), "{column:?}: {message}");
        let message = adapter_error(adapter.create(user_with_email("u1", "a@example.com")).await);
        assert!(message.contains("identifier"), "{column:?}: {message}");
    }
    let client = support::connect(&url).await;
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0, "no table, index or sequence was created");
}

// ------------------------------------------------------------------------------------------
// Out-of-range numbers and timestamps
// ------------------------------------------------------------------------------------------

/// A plugin table over every field type, used where the auth tables have no such column.
fn wide_schema() -> DbSchema {
    let mut table = DbTable {
        name: "wides".into(),
        fields: Default::default(),
        order: None,
    };
    let fields = [
        ("id", DbField::new("id", DbFieldType::String)),
        ("big", DbField::new("big", DbFieldType::Number)),
        ("at", DbField::new("at", DbFieldType::Timestamp)),
        ("doc", DbField::new("doc", DbFieldType::Json).optional()),
        (
            "tags",
            DbField::new("tags", DbFieldType::StringArray).optional(),
        ),
    ];
    for (name, field) in fields {
        table.fields.insert(name.into(), field);
    }
    let mut schema = DbSchema::default();
    schema.insert_plugin_table("wide".into(), table).unwrap();
    schema
}

fn wide_row(id: &str) -> Create {
    Create::new("wide")
        .data("id", text(id))
        .data("big", DbValue::Number(1))
        .data("at", DbValue::Timestamp(OffsetDateTime::UNIX_EPOCH))
}

async fn wide_ids(adapter: &TokioPostgresAdapter) -> Vec<DbRecord> {
    adapter
        .find_many(FindMany::new("wide").sort_by(Sort::new("id", SortDirection::Asc)))
        .await
        .expect("read back")
}

#[tokio::test]
async fn out_of_range_numbers_are_rejected_for_narrow_columns() {
    // The columns exist as `integer` and `smallint`, which the planner accepts for Number
    // fields (behaviour.md §6); a 64-bit value that does not fit must fail before the database.
    let url = support::fresh_database("bad_int4").await;
    let client = support::connect(&url).await;
    client
        .batch_execute(
            "CREATE TABLE counters (id text PRIMARY KEY, hits integer NOT NULL, small smallint)",
        )
        .await
        .unwrap();
    let mut table = DbTable {
        name: "counters".into(),
        fields: Default::default(),
        order: None,
    };
    table
        .fields
        .insert("id".into(), DbField::new("id", DbFieldType::String));
    table
        .fields
        .insert("hits".into(), DbField::new("hits", DbFieldType::Number));
    table.fields.insert(
        "small".into(),
        DbField::new("small", DbFieldType::Number).optional(),
    );
    let mut schema = DbSchema::default();
    schema.insert_plugin_table("counter".into(), table).unwrap();
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema)
        .await
        .unwrap();

    let create = |id: &str, hits: i64, small: i64| {
        Create::new("counter")
            .data("id", text(id))
            .data("hits", DbValue::Number(hits))
            .data("small", DbValue::Number(small))
    };
    adapter
        .create(create("ok", i32::MAX.into(), i16::MIN.into()))
        .await
        .unwrap();
    let message = adapter_error(adapter.create(create("big", i64::MAX, 0)).await);
    assert!(
        message.contains("does not fit the int4 column"),
        "{message}"
    );
    let message = adapter_error(
        adapter
            .create(create("neg", 0, i64::from(i16::MAX) + 1))
            .await,
    );
    assert!(
        message.contains("does not fit the int2 column"),
        "{message}"
    );
    let message = adapter_error(
        adapter
            .update_many(UpdateMany::new("counter").data("hits", DbValue::Number(i64::MIN)))
            .await,
    );
    assert!(message.contains("does not fit"), "{message}");
    let message = adapter_error(
        adapter
            .count(Count::new("counter").where_clause(Where::new("hits", DbValue::Number(1 << 40))))
            .await,
    );
    assert!(message.contains("does not fit"), "{message}");

    let rows = adapter.find_many(FindMany::new("counter")).await.unwrap();
    assert_eq!(rows.len(), 1, "only the row that fits");
    assert_eq!(rows[0].get("hits"), Some(&DbValue::Number(i32::MAX.into())));
    assert_eq!(
        rows[0].get("small"),
        Some(&DbValue::Number(i16::MIN.into()))
    );
}

#[tokio::test]
async fn extreme_i64_values_round_trip_in_bigint() {
    let (adapter, _) = setup_with("bad_bigint", wide_schema()).await;
    adapter
        .create(wide_row("max").data("big", DbValue::Number(i64::MAX)))
        .await
        .unwrap();
    adapter
        .create(wide_row("min").data("big", DbValue::Number(i64::MIN)))
        .await
        .unwrap();
    let rows = wide_ids(&adapter).await;
    assert_eq!(rows[0].get("big"), Some(&DbValue::Number(i64::MAX)));
    assert_eq!(rows[1].get("big"), Some(&DbValue::Number(i64::MIN)));
    let above = adapter
        .count(Count::new("wide").where_clause(
            Where::new("big", DbValue::Number(i64::MAX - 1)).operator(WhereOperator::Gt),
        ))
        .await
        .unwrap();
    assert_eq!(above, 1);
}

#[tokio::test]
async fn timestamp_before_4713_bc_is_rejected_and_nothing_is_written() {
    let (adapter, _) = setup_with("bad_ts_low", wide_schema()).await;
    let ancient = PrimitiveDateTime::new(
        Date::from_calendar_date(-9999, Month::January, 1).unwrap(),
        Time::MIDNIGHT,
    )
    .assume_utc();
    let message = adapter_error(
        adapter
            .create(wide_row("old").data("at", DbValue::Timestamp(ancient)))
            .await,
    );
    assert!(message.contains("22008"), "{message}");
    adapter.create(wide_row("ok")).await.unwrap();
    let message = adapter_error(
        adapter
            .update_many(UpdateMany::new("wide").data("at", DbValue::Timestamp(ancient)))
            .await,
    );
    assert!(message.contains("22008"), "{message}");
    let rows = wide_ids(&adapter).await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].get("at"),
        Some(&DbValue::Timestamp(OffsetDateTime::UNIX_EPOCH)),
        "unchanged"
    );

    // The latest instant `time` can represent is fine.
    let latest = PrimitiveDateTime::new(
        Date::from_calendar_date(9999, Month::December, 31).unwrap(),
        Time::from_hms_micro(23, 59, 59, 999_999).unwrap(),
    )
    .assume_utc();
    let mut late = wide_row("late").data("at", DbValue::Timestamp(latest));
    late.select = vec!["at".into()];
    adapter.create(late).await.unwrap();
    let found = adapter
        .find_one(FindOne::new("wide").where_clause(Where::new("id", text("late"))))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.get("at"), Some(&DbValue::Timestamp(latest)));
}

#[tokio::test]
async fn stored_timestamps_beyond_the_time_crate_fail_to_read_without_a_panic() {
    // Year 10000 cannot even be built with `time` (no `large-dates`), so it is written by raw
    // SQL, as another application sharing the table could.
    let (adapter, url) = setup_with("bad_ts_high", wide_schema()).await;
    let client = support::connect(&url).await;
    for (id, at) in [
        ("y10k", "10000-01-01 00:00:00+00"),
        ("inf", "infinity"),
        ("neginf", "-infinity"),
    ] {
        client
            .execute(
                "INSERT INTO wides (id, big, at) VALUES ($1, 0, $2::text::timestamptz)",
                &[&id, &at],
            )
            .await
            .unwrap();
        let message = adapter_error(
            adapter
                .find_one(FindOne::new("wide").where_clause(Where::new("id", text(id))))
                .await,
        );
        assert!(
            message.contains("error deserializing column"),
            "{id}: {message}"
        );
    }
    // Selecting around the column works, and the rows are intact.
    let rows = adapter
        .find_many(FindMany::new("wide").select(["id", "big"]))
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let count: i64 = client
        .query_one(
            "SELECT count(*) FROM wides WHERE at IN ('infinity', '-infinity') OR at > '9999-12-31'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(count, 3);
}

#[tokio::test]
async fn huge_limit_and_offset_fail_cleanly() {
    let (adapter, _) = setup("bad_limit").await;
    adapter
        .create(user_with_email("u1", "a@example.com"))
        .await
        .unwrap();
    for query in [
        FindMany::new("user").limit(usize::MAX),
        FindMany::new("user").offset(usize::MAX),
    ] {
        // Inlined as an integer literal beyond `bigint`: PostgreSQL refuses it.
        let message = adapter_error(adapter.find_many(query).await);
        assert!(message.contains("22003"), "{message}");
    }
    assert_eq!(user_count(&adapter).await, 1, "connection still usable");
}

// ------------------------------------------------------------------------------------------
// Empty data and partial writes
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn empty_updates_change_nothing_and_empty_creates_fail() {
    let (adapter, _) = setup("bad_empty").await;
    adapter
        .create(user_with_email("u1", "a@example.com"))
        .await
        .unwrap();
    let before = users(&adapter).await;
    assert_eq!(
        adapter
            .update(Update::new("user").where_clause(Where::new("id", text("u1"))))
            .await,
        Ok(None)
    );
    assert_eq!(adapter.update_many(UpdateMany::new("user")).await, Ok(0));
    assert_eq!(users(&adapter).await, before);

    let message = adapter_error(adapter.create(Create::new("user")).await);
    assert!(message.contains("23502"), "{message}");
    assert_eq!(user_count(&adapter).await, 1);
}

#[tokio::test]
async fn a_failure_leaves_no_partial_write() {
    let (adapter, _) = setup("bad_partial").await;
    for index in 0..3 {
        adapter
            .create(user_with_email(
                &format!("u{index}"),
                &format!("{index}@example.com"),
            ))
            .await
            .unwrap();
    }
    let before = users(&adapter).await;

    // The first assignment is fine, the second is not: the statement changes no row.
    let result = adapter
        .update_many(
            UpdateMany::new("user")
                .data("name", text("Changed"))
                .data("email_verified", text("not a boolean")),
        )
        .await;
    adapter_error(result);
    let result = adapter
        .update_many(
            UpdateMany::new("user")
                .data("name", text("Changed"))
                .data("email", text("same@example.com")),
        )
        .await;
    assert!(adapter_error(result).contains("23505"), "unique email");
    assert_eq!(users(&adapter).await, before);

    // Inside a transaction: a good write, then a bad one; the good one is rolled back.
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(user_with_email("u9", "9@example.com")).await?;
                tx.create(user_with_email("u10", "nul\0@example.com"))
                    .await?;
                Ok(())
            })
        }))
        .await;
    assert!(adapter_error(result).contains("22021"));
    assert_eq!(users(&adapter).await, before);
}

/// A user whose email is `email`.
fn user_with_email(id: &str, email: &str) -> Create {
    fixtures::user(id).data("email", text(email))
}
