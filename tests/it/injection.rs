//! Injection: hostile strings as values and as table/column names.
//!
//! Values: a value is always a bound parameter, so it can never change statement text. That
//! is checked without server-side statement logging: with typed statements off, every call
//! goes through the connection's statement cache, keyed by the exact SQL text. After one
//! warm-up round of calls, rounds with arbitrary hostile values must not add a single entry
//! (`cached_statement_count` stays constant), every value must read back byte for byte, and a
//! canary table must keep its one row.
//!
//! Identifiers: hostile names go in through `TableOptions::with_name` and
//! `with_field_name`. Each is either rejected by identifier validation with a clear adapter
//! error (and nothing is created), or it is a valid identifier, quoted, and the table
//! with exactly that name works end to end. No other table is ever touched: the canary keeps
//! its row, and the database holds no table but the canary and the expected one.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::text;
use crate::support;

use std::cell::{Cell, RefCell};

use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, FileFailurePersistence, TestCaseError, TestRunner};
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbRecord, DbSchema, DbValue, Delete,
    DeleteMany, FindMany, FindOne, Sort, SortDirection, TableOptions, Update, UpdateMany, Where,
    WhereOperator,
};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule, RateLimitStore};
use rustauth_tokio_postgres::{TokioPostgresAdapter, TokioPostgresRateLimitStore};
use time::OffsetDateTime;
use tokio_postgres::Client;

/// The canary's name is not a valid identifier for the adapter, so no generated name can
/// address it on purpose; only an injection could.
const CANARY: &str = "canary; keep me";
const CANARY_NOTE: &str = "still here";

/// Pieces hostile strings are built from.
const HOSTILE: &[&str] = &[
    "x",
    "Y",
    "_",
    "1",
    "'",
    "\"",
    ";",
    "--",
    "/*",
    "*/",
    " ",
    ".",
    "\\",
    "$1",
    "$$",
    "%",
    "`",
    "\n",
    "é",
    "ß",
    "日本",
    "👩‍💻",
    "\u{202e}",
    "); DROP TABLE \"canary; keep me\"; --",
    "' OR '1'='1",
    "E'\\x27'",
];

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// `RUSTAUTH_PG_INJECTION_CASES` scales both properties (default: 64 value rounds, 48 name
/// pairs).
fn config(default_cases: u32) -> Config {
    let scale = std::env::var("RUSTAUTH_PG_INJECTION_CASES")
        .ok()
        .and_then(|value| value.trim().parse::<u32>().ok());
    Config {
        cases: scale.unwrap_or(default_cases),
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..Config::default()
    }
}

/// Creates the canary table with its row.
async fn plant_canary(client: &Client) {
    client
        .batch_execute(&format!(
            "CREATE TABLE \"{CANARY}\" (id integer PRIMARY KEY, note text NOT NULL); \
             INSERT INTO \"{CANARY}\" VALUES (1, '{CANARY_NOTE}')"
        ))
        .await
        .expect("canary");
}

/// The canary still has exactly its one row.
async fn canary_alive(client: &Client) -> Result<(), String> {
    let rows = client
        .query(&format!("SELECT id, note FROM \"{CANARY}\""), &[])
        .await
        .map_err(|error| format!("canary gone: {error}"))?;
    let rows = rows
        .iter()
        .map(|row| (row.get::<_, i32>(0), row.get::<_, String>(1)))
        .collect::<Vec<_>>();
    if rows == [(1, CANARY_NOTE.to_owned())] {
        Ok(())
    } else {
        Err(format!("canary changed: {rows:?}"))
    }
}

/// Every user table of the database, as `schema.table`.
async fn tables(client: &Client) -> Vec<String> {
    let mut names = client
        .query(
            "SELECT n.nspname || '.' || c.relname FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')",
            &[],
        )
        .await
        .expect("list tables")
        .iter()
        .map(|row| row.get(0))
        .collect::<Vec<String>>();
    names.sort();
    names
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

fn hostile_value() -> BoxedStrategy<String> {
    prop_oneof![
        2 => prop::collection::vec(select(HOSTILE), 0..8).prop_map(|pieces| pieces.concat()),
        1 => any::<String>().prop_map(|value| value.replace('\0', "")),
    ]
    .boxed()
}

struct Values {
    adapter: TokioPostgresAdapter,
    typed: TokioPostgresAdapter,
    admin: Client,
}

/// One round of calls that put `name` and `image` everywhere a value can go. Returns an
/// error text on any disagreement. `n` makes the round's ids and emails unique.
async fn value_round(
    adapter: &TokioPostgresAdapter,
    n: usize,
    name: &str,
    image: &str,
) -> Result<(), String> {
    let id = format!("u{n}");
    let email = format!("{n}:{name}");
    let fail = |what: &str, error: RustAuthError| format!("{what}: {error:?}");
    let now = OffsetDateTime::now_utc();
    let created = adapter
        .create(
            Create::new("user")
                .data("id", text(&id))
                .data("name", text(name))
                .data("email", text(&email))
                .data("email_verified", DbValue::Boolean(false))
                .data("image", text(image))
                .data("created_at", DbValue::Timestamp(now))
                .data("updated_at", DbValue::Timestamp(now)),
        )
        .await
        .map_err(|error| fail("create", error))?;
    if created.get("name") != Some(&text(name)) {
        return Err(format!("create echoed {created:?}"));
    }

    let by = |field: &str, value: &str| Where::new(field, text(value));
    let found = adapter
        .find_one(
            FindOne::new("user")
                .where_clause(by("name", name))
                .where_clause(by("id", &id)),
        )
        .await
        .map_err(|error| fail("find_one", error))?
        .ok_or("find_one by the hostile name found nothing")?;
    expect_user(&found, name, image, &email)?;

    let counts = [
        Where::new(
            "name",
            DbValue::StringArray(vec![name.to_owned(), image.to_owned()]),
        )
        .operator(WhereOperator::In),
        by("name", name).operator(WhereOperator::Contains),
        by("name", name)
            .operator(WhereOperator::StartsWith)
            .insensitive(),
        by("email", &email).operator(WhereOperator::EndsWith),
        by("name", name).insensitive(),
    ];
    for clause in counts {
        let matched = adapter
            .count(
                Count::new("user")
                    .where_clause(clause.clone())
                    .where_clause(by("id", &id)),
            )
            .await
            .map_err(|error| fail("count", error))?;
        if matched != 1 {
            return Err(format!("{clause:?} matched {matched} rows"));
        }
    }
    let others = adapter
        .find_many(
            FindMany::new("user")
                .where_clause(by("name", name).operator(WhereOperator::Ne))
                .where_clause(by("id", &id))
                .sort_by(Sort::new("name", SortDirection::Desc))
                .limit(5),
        )
        .await
        .map_err(|error| fail("find_many", error))?;
    if !others.is_empty() {
        return Err(format!("Ne matched {others:?}"));
    }

    // Swap the two values with a single-row update, then back with update_many.
    let updated = adapter
        .update(
            Update::new("user")
                .where_clause(by("id", &id))
                .where_clause(by("email", &email))
                .data("name", text(image))
                .data("image", text(name)),
        )
        .await
        .map_err(|error| fail("update", error))?
        .ok_or("update found nothing")?;
    expect_user(&updated, image, name, &email)?;
    let swapped = adapter
        .update_many(
            UpdateMany::new("user")
                .where_clause(by("image", name))
                .where_clause(by("id", &id))
                .data("name", text(name))
                .data("image", text(image)),
        )
        .await
        .map_err(|error| fail("update_many", error))?;
    if swapped != 1 {
        return Err(format!("update_many changed {swapped} rows"));
    }

    // A throwaway session carrying the values, deleted by them.
    let token = format!("t{n}:{name}");
    adapter
        .create(
            Create::new("session")
                .data("id", text(format!("s{n}")))
                .data("user_id", text(&id))
                .data("token", text(&token))
                .data("expires_at", DbValue::Timestamp(now))
                .data("created_at", DbValue::Timestamp(now))
                .data("updated_at", DbValue::Timestamp(now))
                .data("ip_address", text(image))
                .data("user_agent", text(name)),
        )
        .await
        .map_err(|error| fail("create session", error))?;
    adapter
        .delete(Delete::new("session").where_clause(by("token", &token)))
        .await
        .map_err(|error| fail("delete session", error))?;
    let left = adapter
        .delete_many(
            DeleteMany::new("session")
                .where_clause(by("user_agent", name))
                .where_clause(by("user_id", &id)),
        )
        .await
        .map_err(|error| fail("delete_many", error))?;
    if left != 0 {
        return Err(format!("the single delete left {left} sessions"));
    }
    Ok(())
}

fn expect_user(record: &DbRecord, name: &str, image: &str, email: &str) -> Result<(), String> {
    let expected = [("name", name), ("image", image), ("email", email)];
    for (field, value) in expected {
        if record.get(field) != Some(&text(value)) {
            return Err(format!("{field} should be {value:?}: {record:?}"));
        }
    }
    Ok(())
}

async fn values_setup() -> Values {
    let url = support::fresh_database("inject_values").await;
    let schema = auth_schema(AuthSchemaOptions::default());
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    adapter.create_schema(&schema, None).await.expect("schema");
    // Every call on the generic path, so every statement text lands in the cache.
    let adapter = adapter.with_typed_statements(false);
    let typed = TokioPostgresAdapter::connect_with_schema(&url, schema)
        .await
        .expect("connect");
    let admin = support::connect(&url).await;
    plant_canary(&admin).await;
    Values {
        adapter,
        typed,
        admin,
    }
}

#[test]
fn hostile_values_never_change_statement_text() {
    let runtime = runtime();
    let values = runtime.block_on(values_setup());
    let warm = runtime.block_on(async {
        value_round(&values.adapter, 0, "warm", "up")
            .await
            .expect("warm-up round");
        values.adapter.connection().cached_statement_count()
    });
    assert!(
        warm >= 10,
        "the warm-up prepared the round's statements ({warm})"
    );

    let round = Cell::new(0);
    let written = RefCell::new(vec![("u0".to_owned(), "warm".to_owned(), "up".to_owned())]);
    let mut runner = TestRunner::new(config(64));
    let result = runner.run(&(hostile_value(), hostile_value()), |(name, image)| {
        round.set(round.get() + 1);
        let n = round.get();
        runtime
            .block_on(async {
                value_round(&values.adapter, n * 2, &name, &image).await?;
                // The same round on the typed path (separate connection, default routing).
                value_round(&values.typed, n * 2 + 1, &name, &image).await?;
                let cached = values.adapter.connection().cached_statement_count();
                if cached != warm {
                    return Err(format!("statement cache grew from {warm} to {cached}"));
                }
                canary_alive(&values.admin).await
            })
            .map_err(TestCaseError::fail)?;
        let mut written = written.borrow_mut();
        written.push((format!("u{}", n * 2), name.clone(), image.clone()));
        written.push((format!("u{}", n * 2 + 1), name, image));
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }

    // The table holds exactly what was written (the last successful round of each id).
    runtime.block_on(async {
        let rows = values
            .admin
            .query("SELECT id, name, image FROM users", &[])
            .await
            .expect("read users");
        let mut stored = rows
            .iter()
            .map(|row| {
                (
                    row.get::<_, String>(0),
                    row.get::<_, String>(1),
                    row.get::<_, String>(2),
                )
            })
            .collect::<Vec<_>>();
        stored.sort();
        let mut expected = written.borrow().clone();
        expected.sort();
        expected.dedup_by(|a, b| a.0 == b.0);
        // Shrinking re-runs failing inputs under new ids; only rounds that passed are recorded,
        // so every recorded row must be stored verbatim.
        for row in &expected {
            assert!(stored.contains(row), "{row:?} not stored verbatim");
        }
        let sessions: i64 = values
            .admin
            .query_one("SELECT count(*) FROM sessions", &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(sessions, 0);
        let mut expected_tables = vec![
            format!("public.{CANARY}"),
            "public.accounts".to_owned(),
            "public.sessions".to_owned(),
            "public.users".to_owned(),
            "public.verifications".to_owned(),
        ];
        expected_tables.sort();
        assert_eq!(tables(&values.admin).await, expected_tables);
    });
    assert_eq!(
        runtime.block_on(async { values.adapter.connection().cached_statement_count() }),
        warm
    );
}

// ---------------------------------------------------------------------------------------------
// Identifiers
// ---------------------------------------------------------------------------------------------

/// Names worth trying besides random mixes: valid but needing quotes (keywords, mixed case),
/// qualified ones, and classic injection shapes.
const NAMED: &[&str] = &[
    "select",
    "table",
    "user",
    "order",
    "DROP",
    "MixedCase",
    "_",
    "a1",
    "public.Probe",
    "public.select",
    "nosuchschema.probe",
    "a.b.c",
    "probe\"; DROP TABLE \"canary; keep me\"; --",
    "probe'; DROP TABLE x; --",
    "probe--",
    "probe/**/",
    "pro be",
    "prøbe",
    "",
    ".",
    "probe.",
    "\"probe\"",
];

fn hostile_name() -> BoxedStrategy<String> {
    prop_oneof![
        1 => select(NAMED).prop_map(str::to_owned),
        2 => prop::collection::vec(select(HOSTILE), 1..5).prop_map(|pieces| pieces.concat()),
    ]
    // PostgreSQL truncates identifiers to 63 bytes (quirk Q7 in UPSTREAM.md); keep names exact.
    .prop_filter("at most 63 bytes per part", |name| {
        name.split('.').all(|part| part.len() <= 63)
    })
    .boxed()
}

/// Core's identifier rule (behaviour.md §2): ASCII letter or `_`, then ASCII alphanumerics or `_`.
fn valid_part(part: &str) -> bool {
    let mut chars = part.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The verification table's other columns.
const OTHER_COLUMNS: &[&str] = &["id", "identifier", "expires_at", "created_at", "updated_at"];

/// The (schema, table) a table name creates, if creating it can succeed.
fn creatable(table: &str, column: &str) -> Option<(String, String)> {
    if !valid_part(column) {
        return None;
    }
    assert!(
        !OTHER_COLUMNS.contains(&column),
        "the generators never rename `value` onto another column"
    );
    let parts = table.split('.').collect::<Vec<_>>();
    if !parts.iter().all(|part| valid_part(part)) {
        return None;
    }
    match parts.as_slice() {
        [name] => Some(("public".to_owned(), (*name).to_owned())),
        ["public", name] => Some(("public".to_owned(), (*name).to_owned())),
        _ => None,
    }
}

/// The verification table of `auth_schema`, renamed, alone in a schema.
fn renamed_schema(table: &str, column: &str) -> DbSchema {
    let auth = auth_schema(AuthSchemaOptions {
        verification: TableOptions::default()
            .with_name(table)
            .with_field_name("value", column),
        ..AuthSchemaOptions::default()
    });
    let mut schema = DbSchema::default();
    schema
        .insert_plugin_table(
            "verification".to_owned(),
            auth.table("verification").expect("verification").clone(),
        )
        .expect("one table");
    schema
}

struct Names {
    url: String,
    admin: Client,
}

/// Drops every table except the canary (and any schema but public).
async fn reset(admin: &Client) {
    let drops = admin
        .query(
            "SELECT format('DROP TABLE %I.%I CASCADE', n.nspname, c.relname) FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') \
             AND c.relname <> $1",
            &[&CANARY],
        )
        .await
        .expect("list tables");
    for row in drops {
        admin
            .batch_execute(&row.get::<_, String>(0))
            .await
            .expect("drop table");
    }
}

fn is_clear_identifier_error(message: &str) -> bool {
    message.contains("identifier")
        || message.contains("table name")
        // A qualified name whose schema does not exist, or a three-part name at CRUD time.
        || message.contains("3F000")
        || message.contains("0A000")
}

/// Runs one name pair; `Ok(true)` when the names were valid and used, `Ok(false)` when
/// they were refused.
async fn name_case(names: &Names, table: &str, column: &str) -> Result<bool, String> {
    reset(&names.admin).await;
    let schema = renamed_schema(table, column);
    let adapter = TokioPostgresAdapter::connect_with_schema(&names.url, schema.clone())
        .await
        .map_err(|error| format!("connect: {error:?}"))?;
    let created = adapter.create_schema(&schema, None).await;
    let expected = creatable(table, column);
    let now = OffsetDateTime::now_utc();
    let row = Create::new("verification")
        .data("id", text("v1"))
        .data("identifier", text("reset-password:abc"))
        .data("value", text("value 1"))
        .data("expires_at", DbValue::Timestamp(now))
        .data("created_at", DbValue::Timestamp(now))
        .data("updated_at", DbValue::Timestamp(now));

    match (&expected, created) {
        (Some((namespace, name)), Ok(_)) => {
            let exists: i64 = names
                .admin
                .query_one(
                    "SELECT count(*) FROM information_schema.columns \
                     WHERE table_schema = $1 AND table_name = $2 AND column_name = $3",
                    &[namespace, name, &column],
                )
                .await
                .map_err(|error| error.to_string())?
                .get(0);
            if exists != 1 {
                return Err(format!(
                    "{namespace}.{name}.{column} was not created as named"
                ));
            }
            crud_round_trip(&adapter, row).await?;
            let mut expected_tables =
                vec![format!("public.{CANARY}"), format!("{namespace}.{name}")];
            expected_tables.sort();
            let actual = tables(&names.admin).await;
            if actual != expected_tables {
                return Err(format!("tables {actual:?}, expected {expected_tables:?}"));
            }
        }
        (Some(_), Err(error)) => return Err(format!("a valid name was refused: {error:?}")),
        (None, Ok(_)) => return Err("an invalid name was accepted by create_schema".to_owned()),
        (None, Err(RustAuthError::Adapter(message))) => {
            if !is_clear_identifier_error(&message) {
                return Err(format!("unclear create_schema error: {message}"));
            }
            match adapter.create(row).await {
                Err(RustAuthError::Adapter(message)) if is_clear_identifier_error(&message) => {}
                // A valid but unknown table: the server says it does not exist.
                Err(RustAuthError::Adapter(message)) if message.contains("42P01") => {}
                other => return Err(format!("create on a refused name gave {other:?}")),
            }
            let actual = tables(&names.admin).await;
            if actual != [format!("public.{CANARY}")] {
                return Err(format!("a refused name left tables behind: {actual:?}"));
            }
        }
        (None, Err(other)) => return Err(format!("unexpected error kind: {other:?}")),
    }

    // Hostile names at query level never reach SQL: unknown models and fields.
    if table != "verification" && table != "verifications" && !table.is_empty() {
        match adapter.count(Count::new(table)).await {
            Ok(0) if expected.is_some() => {}
            Err(RustAuthError::TableNotFound { .. }) => {}
            // The table name is valid but creating it failed (bad column): it does not exist.
            Err(RustAuthError::Adapter(message)) if message.contains("42P01") => {}
            Err(RustAuthError::Adapter(message)) if is_clear_identifier_error(&message) => {}
            other => return Err(format!("count on model {table:?} gave {other:?}")),
        }
    }
    let store = TokioPostgresRateLimitStore::from_connection(adapter.connection(), table);
    let consumed = store
        .consume(RateLimitConsumeInput {
            key: format!("{column}:key"),
            rule: RateLimitRule {
                window: time::Duration::seconds(10),
                max: 1,
            },
            now_ms: 1_000,
        })
        .await;
    match consumed {
        Err(RustAuthError::Adapter(message))
            if is_clear_identifier_error(&message)
                || message.contains("42P01")
                || message.contains("42703")
                || message.contains("42P10") => {}
        other => return Err(format!("rate limit on table {table:?} gave {other:?}")),
    }
    canary_alive(&names.admin).await?;
    Ok(expected.is_some())
}

/// Create, read, update, the hot verification shapes, and deletes on the renamed table.
async fn crud_round_trip(adapter: &TokioPostgresAdapter, row: Create) -> Result<(), String> {
    let fail = |what: &str, error: RustAuthError| format!("{what} on the renamed table: {error:?}");
    adapter
        .create(row)
        .await
        .map_err(|error| fail("create", error))?;
    let identifier = Where::new("identifier", text("reset-password:abc"));
    let latest = adapter
        .find_many(
            FindMany::new("verification")
                .where_clause(identifier.clone())
                .sort_by(Sort::new("created_at", SortDirection::Desc))
                .limit(1),
        )
        .await
        .map_err(|error| fail("find_many", error))?;
    if latest.len() != 1 || latest[0].get("value") != Some(&text("value 1")) {
        return Err(format!("read back {latest:?}"));
    }
    let updated = adapter
        .update(
            Update::new("verification")
                .where_clause(Where::new("value", text("value 1")))
                .data("value", text("value 2")),
        )
        .await
        .map_err(|error| fail("update", error))?;
    if updated.as_ref().and_then(|row| row.get("value")) != Some(&text("value 2")) {
        return Err(format!("update returned {updated:?}"));
    }
    let expired = adapter
        .delete_many(
            DeleteMany::new("verification").where_clause(
                Where::new("expires_at", DbValue::Timestamp(OffsetDateTime::UNIX_EPOCH))
                    .operator(WhereOperator::Lt),
            ),
        )
        .await
        .map_err(|error| fail("delete_many", error))?;
    if expired != 0 {
        return Err(format!("deleted {expired} unexpired rows"));
    }
    adapter
        .delete(Delete::new("verification").where_clause(identifier))
        .await
        .map_err(|error| fail("delete", error))?;
    let left = adapter
        .count(Count::new("verification"))
        .await
        .map_err(|error| fail("count", error))?;
    if left != 0 {
        return Err(format!("{left} rows left after delete"));
    }
    Ok(())
}

#[test]
fn hostile_identifiers_are_refused_or_quoted_and_touch_nothing_else() {
    let runtime = runtime();
    let names = runtime.block_on(async {
        let url = support::fresh_database("inject_names").await;
        let admin = support::connect(&url).await;
        plant_canary(&admin).await;
        Names { url, admin }
    });
    let column = prop_oneof![
        3 => Just("value".to_owned()),
        2 => hostile_name(),
    ];
    let used = Cell::new(0);
    let refused = Cell::new(0);
    let mut runner = TestRunner::new(config(48));
    let result = runner.run(&(hostile_name(), column), |(table, column)| {
        let counter = if runtime
            .block_on(name_case(&names, &table, &column))
            .map_err(TestCaseError::fail)?
        {
            &used
        } else {
            &refused
        };
        counter.set(counter.get() + 1);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    eprintln!(
        "identifiers: {} name pairs quoted and used, {} refused",
        used.get(),
        refused.get()
    );
}

/// Every fixed name once, as a plain test (the property above samples them).
#[test]
fn every_listed_hostile_name_is_refused_or_quoted() {
    let runtime = runtime();
    runtime.block_on(async {
        let url = support::fresh_database("inject_listed").await;
        let admin = support::connect(&url).await;
        plant_canary(&admin).await;
        let names = Names { url, admin };
        let mut used = Vec::new();
        for name in NAMED {
            match name_case(&names, name, "value").await {
                Ok(true) => used.push(format!("table {name}")),
                Ok(false) => {}
                Err(error) => panic!("table {name:?}: {error}"),
            }
            match name_case(&names, "probe", name).await {
                Ok(true) => used.push(format!("column {name}")),
                Ok(false) => {}
                Err(error) => panic!("column {name:?}: {error}"),
            }
        }
        // Keywords, mixed case, `_`, `public.`-qualified names work; the rest are refused.
        assert_eq!(
            used,
            [
                "table select",
                "column select",
                "table table",
                "column table",
                "table user",
                "column user",
                "table order",
                "column order",
                "table DROP",
                "column DROP",
                "table MixedCase",
                "column MixedCase",
                "table _",
                "column _",
                "table a1",
                "column a1",
                "table public.Probe",
                "table public.select",
            ]
        );
    });
}
