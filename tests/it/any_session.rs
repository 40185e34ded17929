//! Values exactly right in any session: instants under any server time zone while another
//! process changes a column between `timestamp` and `timestamptz` under warm statements,
//! domains (at any depth) and enums, and the table the statements hit being the one the
//! catalog describes (search_path, views, generated, dropped, re-added and renamed columns).
//! Every case runs in both statement modes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::crud_common::{at, default_schema, install, s, seed_user};
use crate::fixtures;
use crate::support;

use std::time::Duration;

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbRecord, DbValue, FindMany, FindOne,
    RateLimitStorage, TableOptions, Update, Where,
};
use rustauth_tokio_postgres::TokioPostgresAdapter;
use time::{OffsetDateTime, PrimitiveDateTime};

const MODES: [&str; 2] = ["prepared", "unprepared"];

/// A fresh database with the default tables and one user, its URL and an admin client on it.
async fn database(label: &str) -> (String, tokio_postgres::Client) {
    let url = support::fresh_database(label).await;
    let setup = TokioPostgresAdapter::connect_with_schema(&url, default_schema())
        .await
        .expect("connect");
    install(&setup, &default_schema()).await;
    seed_user(&setup, "u1", "a@example.com", at(0)).await;
    drop(setup);
    let admin = support::connect(&url).await;
    (url, admin)
}

async fn adapter(url: &str, mode: &str, extra: &str) -> TokioPostgresAdapter {
    TokioPostgresAdapter::connect_with_schema(
        &format!("{url}?statement_mode={mode}{extra}"),
        default_schema(),
    )
    .await
    .expect("connect")
}

/// An instant with whole milliseconds (what a `timestamp(3)` column keeps).
fn instant(seconds: i64) -> OffsetDateTime {
    at(seconds) + time::Duration::milliseconds(123)
}

fn session(id: &str, expires_at: OffsetDateTime) -> Create {
    Create::new("session")
        .data("id", s(id))
        .data("user_id", s("u1"))
        .data("token", s(&format!("token-{id}")))
        .data("expires_at", DbValue::Timestamp(expires_at))
        .data("created_at", DbValue::Timestamp(at(0)))
        .data("updated_at", DbValue::Timestamp(at(0)))
}

fn timestamp(record: &DbRecord, field: &str) -> OffsetDateTime {
    match record.get(field) {
        Some(DbValue::Timestamp(value)) => *value,
        other => panic!("`{field}` is not a timestamp: {other:?}"),
    }
}

/// What another process changes `sessions.expires_at` to, and which path writes after it.
#[derive(Debug, Clone, Copy)]
enum Alter {
    /// Prisma's `timestamp(3)` → `timestamptz`, the table served by the generic path.
    Timestamptz,
    /// `timestamptz` → `timestamp(3)` under the typed statements.
    TimestampTyped,
    /// The same on the generic path (typed statements off).
    TimestampGeneric,
}

/// An instant written before and after another process changes the column's type (the
/// correct conversion, `AT TIME ZONE 'UTC'`) is stored, read back and matched exactly, with
/// the database's time zone west (New York) or east (Kolkata, +05:30) of UTC.
#[tokio::test]
async fn instants_stay_exact_when_another_process_alters_the_column_type() {
    for zone in ["America/New_York", "Asia/Kolkata"] {
        for mode in MODES {
            for alter in [
                Alter::Timestamptz,
                Alter::TimestampTyped,
                Alter::TimestampGeneric,
            ] {
                instants_case(zone, mode, alter).await;
            }
        }
    }
}

async fn instants_case(zone: &str, mode: &str, alter: Alter) {
    let context = format!("{zone}, {mode}, {alter:?}");
    let (url, admin) = database("session_zone").await;
    let database = url
        .rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" SET timezone = '{zone}'"
        ))
        .await
        .expect("database time zone");
    if matches!(alter, Alter::Timestamptz) {
        admin
            .batch_execute(
                "ALTER TABLE sessions ALTER expires_at TYPE timestamp(3) \
                 USING expires_at AT TIME ZONE 'UTC'",
            )
            .await
            .expect("prisma layout");
    }
    let adapter = adapter(&url, mode, "").await;
    let adapter = match alter {
        Alter::TimestampGeneric => adapter.with_typed_statements(false),
        _ => adapter,
    };
    let expires = instant(3_600);
    // Warm every statement the case uses.
    adapter.create(session("s1", expires)).await.expect("first");
    let first = adapter
        .find_one(FindOne::new("session").where_clause(Where::new("token", s("token-s1"))))
        .await
        .expect("find")
        .expect("s1");
    assert_eq!(timestamp(&first, "expires_at"), expires, "{context}");
    if matches!(alter, Alter::TimestampTyped) && mode == "prepared" {
        assert!(
            adapter.typed_call_count() > 0,
            "{context}: typed statements are warm"
        );
    }

    let new_type = match alter {
        Alter::Timestamptz => "timestamptz",
        _ => "timestamp(3)",
    };
    admin
        .batch_execute(&format!(
            "ALTER TABLE sessions ALTER expires_at TYPE {new_type} \
             USING expires_at AT TIME ZONE 'UTC'"
        ))
        .await
        .expect("alter");

    adapter
        .create(session("s2", expires))
        .await
        .unwrap_or_else(|error| panic!("{context}: second create: {error}"));
    let refreshed = adapter
        .update(
            Update::new("session")
                .where_clause(Where::new("token", s("token-s1")))
                .data("expires_at", DbValue::Timestamp(expires)),
        )
        .await
        .unwrap_or_else(|error| panic!("{context}: refresh: {error}"))
        .expect("s1 refreshed");
    assert_eq!(timestamp(&refreshed, "expires_at"), expires, "{context}");

    // Stored exactly: the server itself finds both rows at the instant.
    let stored: i64 = match alter {
        Alter::Timestamptz => admin
            .query_one(
                "SELECT count(*) FROM sessions WHERE expires_at = $1",
                &[&expires],
            )
            .await
            .expect("count"),
        _ => admin
            .query_one(
                "SELECT count(*) FROM sessions WHERE expires_at = $1",
                &[&PrimitiveDateTime::new(expires.date(), expires.time())],
            )
            .await
            .expect("count"),
    }
    .get(0);
    assert_eq!(stored, 2, "{context}: both rows hold the instant");

    // Read back exactly, and matched exactly by an equality filter, by this adapter and by
    // a fresh one.
    let fresh = self::adapter(&url, mode, "").await;
    for (who, reader) in [("warm", &adapter), ("fresh", &fresh)] {
        let found = reader
            .find_many(
                FindMany::new("session")
                    .where_clause(Where::new("expires_at", DbValue::Timestamp(expires))),
            )
            .await
            .unwrap_or_else(|error| panic!("{context}, {who}: {error}"));
        assert_eq!(found.len(), 2, "{context}, {who}: equality filter");
        for record in &found {
            assert_eq!(timestamp(record, "expires_at"), expires, "{context}, {who}");
        }
        let count = reader
            .count(
                Count::new("session")
                    .where_clause(Where::new("expires_at", DbValue::Timestamp(expires))),
            )
            .await
            .expect("count");
        assert_eq!(count, 2, "{context}, {who}");
    }
}

/// A domain over text, and a domain over that domain, read, bind, filter and update like
/// text, in both modes; migrations see them as their base type.
#[tokio::test]
async fn domains_at_any_depth_read_and_bind_like_their_base_type() {
    for mode in MODES {
        let (url, admin) = database("session_domains").await;
        admin
            .batch_execute(
                "CREATE DOMAIN email_t AS text CHECK (VALUE LIKE '%@%'); \
                 CREATE DOMAIN email2_t AS email_t; \
                 CREATE DOMAIN name_t AS text; \
                 ALTER TABLE users ALTER email TYPE email2_t, ALTER name TYPE name_t",
            )
            .await
            .expect("domains");
        let adapter = adapter(&url, mode, "").await;
        adapter
            .run_migrations(&default_schema())
            .await
            .unwrap_or_else(|error| panic!("{mode}: domains are their base type: {error}"));
        seed_user(&adapter, "u2", "b@example.com", at(1)).await;
        let by_email =
            |email: &str| FindOne::new("user").where_clause(Where::new("email", s(email)));
        let found = adapter
            .find_one(by_email("b@example.com"))
            .await
            .unwrap_or_else(|error| panic!("{mode}: {error}"))
            .expect("found by its domain-typed email");
        assert_eq!(found.get("id"), Some(&s("u2")), "{mode}");
        assert_eq!(found.get("email"), Some(&s("b@example.com")), "{mode}");
        let updated = adapter
            .update(
                Update::new("user")
                    .where_clause(Where::new("id", s("u2")))
                    .data("email", s("c@example.com"))
                    .data("name", s("Cee")),
            )
            .await
            .unwrap_or_else(|error| panic!("{mode}: update: {error}"))
            .expect("updated");
        assert_eq!(updated.get("email"), Some(&s("c@example.com")), "{mode}");
        assert_eq!(updated.get("name"), Some(&s("Cee")), "{mode}");
        assert!(adapter
            .find_one(by_email("c@example.com"))
            .await
            .expect("find")
            .is_some());
        // The domain's own check still applies, as a clear error with its SQLSTATE.
        let refused = adapter
            .update(
                Update::new("user")
                    .where_clause(Where::new("id", s("u2")))
                    .data("email", s("no-at-sign")),
            )
            .await
            .expect_err("check");
        assert!(refused.to_string().contains("23514"), "{mode}: {refused}");
    }
}

/// An enum column reads as a string and accepts one (written, filtered, updated); a label
/// the enum does not have is a clear error.
#[tokio::test]
async fn enum_columns_read_and_accept_strings() {
    for mode in MODES {
        let (url, admin) = database("session_enums").await;
        admin
            .batch_execute(
                "CREATE TYPE image_kind AS ENUM ('avatar', 'banner'); \
                 ALTER TABLE users ALTER image TYPE image_kind USING image::image_kind",
            )
            .await
            .expect("enum");
        let adapter = adapter(&url, mode, "").await;
        adapter
            .create(bee("u2", at(1)).data("image", s("avatar")))
            .await
            .unwrap_or_else(|error| panic!("{mode}: create: {error}"));
        let found = adapter
            .find_many(FindMany::new("user").where_clause(Where::new("image", s("avatar"))))
            .await
            .unwrap_or_else(|error| panic!("{mode}: filter: {error}"));
        assert_eq!(found.len(), 1, "{mode}");
        assert_eq!(found[0].get("image"), Some(&s("avatar")), "{mode}");
        let updated = adapter
            .update(
                Update::new("user")
                    .where_clause(Where::new("id", s("u2")))
                    .data("image", s("banner")),
            )
            .await
            .unwrap_or_else(|error| panic!("{mode}: update: {error}"))
            .expect("updated");
        assert_eq!(updated.get("image"), Some(&s("banner")), "{mode}");
        let refused = adapter
            .update(
                Update::new("user")
                    .where_clause(Where::new("id", s("u2")))
                    .data("image", s("poster")),
            )
            .await
            .expect_err("no such label");
        assert!(refused.to_string().contains("22P02"), "{mode}: {refused}");
    }
}

/// A same-named table in a schema earlier on `search_path` is the one the catalog describes
/// and the statements write: its own column types are used, and the table behind it is left
/// alone.
#[tokio::test]
async fn a_shadowing_table_earlier_on_search_path_is_the_one_used() {
    for mode in MODES {
        let (url, admin) = database("session_shadow").await;
        admin
            .batch_execute(
                "CREATE SCHEMA shadow; \
                 CREATE TABLE shadow.users (LIKE public.users INCLUDING ALL); \
                 ALTER TABLE shadow.users ALTER created_at TYPE timestamp(3), \
                 ALTER updated_at TYPE timestamp(3)",
            )
            .await
            .expect("shadow");
        let adapter = adapter(&url, mode, "&options=-c%20search_path%3Dshadow%2Cpublic").await;
        let created = instant(7);
        adapter
            .create(bee("u2", created))
            .await
            .unwrap_or_else(|error| panic!("{mode}: {error}"));
        let found = adapter
            .find_one(FindOne::new("user").where_clause(Where::new("id", s("u2"))))
            .await
            .expect("find")
            .expect("in shadow.users");
        assert_eq!(timestamp(&found, "created_at"), created, "{mode}");
        assert!(
            adapter
                .find_one(FindOne::new("user").where_clause(Where::new("id", s("u1"))))
                .await
                .expect("find")
                .is_none(),
            "{mode}: public.users is not on the adapter's path first"
        );
        let counts: (i64, i64) = {
            let row = admin
                .query_one(
                    "SELECT (SELECT count(*) FROM shadow.users), (SELECT count(*) FROM public.users)",
                    &[],
                )
                .await
                .expect("counts");
            (row.get(0), row.get(1))
        };
        assert_eq!(counts, (1, 1), "{mode}: written to shadow.users only");
    }
}

/// How many relations (tables, indexes, sequences, …) schema `name` holds.
async fn relations_in(admin: &tokio_postgres::Client, name: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1",
            &[&name],
        )
        .await
        .expect("relations of a schema")
        .get(0)
}

/// Tables that exist only in a later schema of `search_path` are the ones migrations see, as
/// they are the ones the statements hit: planning finds nothing to do, migrating creates no
/// second set of tables in the first schema (`current_schema()`), and writes land in the
/// existing tables.
#[tokio::test]
async fn migrations_find_the_tables_the_search_path_resolves_to() {
    for mode in MODES {
        let (url, admin) = database("session_later_schema").await;
        admin
            .batch_execute("CREATE SCHEMA early")
            .await
            .expect("an empty schema first on the path");
        let adapter = adapter(&url, mode, "&options=-c%20search_path%3Dearly%2Cpublic").await;
        let plan = adapter
            .plan_migrations(&default_schema())
            .await
            .unwrap_or_else(|error| panic!("{mode}: plan: {error}"));
        assert!(
            plan.is_empty() && !plan.has_warnings(),
            "{mode}: the tables in public are found through search_path: {plan:#?}"
        );
        adapter
            .run_migrations(&default_schema())
            .await
            .unwrap_or_else(|error| panic!("{mode}: migrate: {error}"));
        let in_early = relations_in(&admin, "early").await;
        assert_eq!(in_early, 0, "{mode}: nothing created in the first schema");
        seed_user(&adapter, "u2", "b@example.org", at(2)).await;
        let users: i64 = admin
            .query_one("SELECT count(*) FROM public.users", &[])
            .await
            .expect("public.users")
            .get(0);
        assert_eq!(users, 2, "{mode}: written to the existing public.users");
    }
}

/// The same for names that only resolve quoted, in a later schema of `search_path`: Better
/// Auth's `"user"` (a reserved word) and camelCase `"rateLimit"`, and a camelCase users table
/// that the sessions' and accounts' foreign keys reference (reported unqualified only when its
/// quoted name resolves to it).
#[tokio::test]
async fn migrations_find_quoted_table_names_through_search_path() {
    let renamed = auth_schema(AuthSchemaOptions {
        user: TableOptions::default().with_name("AppUser"),
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    });
    for (label, schema) in [
        ("ba", rustauth_tokio_postgres::layout::better_auth_schema()),
        ("camel", renamed),
    ] {
        let url = support::fresh_database(&format!("session_later_{label}")).await;
        let admin = support::connect(&url).await;
        admin
            .batch_execute("CREATE SCHEMA early; CREATE SCHEMA auth")
            .await
            .expect("schemas");
        let in_auth = TokioPostgresAdapter::connect_with_schema(
            &format!("{url}?options=-c%20search_path%3Dauth"),
            schema.clone(),
        )
        .await
        .expect("connect");
        in_auth
            .run_migrations(&schema)
            .await
            .expect("the tables in auth");
        let later = TokioPostgresAdapter::connect_with_schema(
            &format!("{url}?options=-c%20search_path%3Dearly%2Cauth"),
            schema.clone(),
        )
        .await
        .expect("connect");
        let plan = later.plan_migrations(&schema).await.expect("plan");
        assert!(
            plan.is_empty() && !plan.has_warnings(),
            "{label}: the tables in auth are found through search_path: {plan:#?}"
        );
        later.run_migrations(&schema).await.expect("migrate");
        let in_early = relations_in(&admin, "early").await;
        assert_eq!(in_early, 0, "{label}: nothing created in the first schema");
    }
}

/// A view in front of the table, a generated column, and a column dropped and added again
/// under warm statements: calls keep working and values stay right.
#[tokio::test]
async fn views_generated_and_re_added_columns_keep_working() {
    for mode in MODES {
        let (url, admin) = database("session_views").await;
        admin
            .batch_execute(
                "ALTER TABLE users RENAME TO users_table; \
                 CREATE VIEW users AS SELECT * FROM users_table; \
                 ALTER TABLE users_table ADD COLUMN email_domain text \
                 GENERATED ALWAYS AS (split_part(email, '@', 2)) STORED",
            )
            .await
            .expect("view and generated column");
        let adapter = adapter(&url, mode, "").await;
        seed_user(&adapter, "u2", "b@example.org", at(2)).await;
        let find = |id: &str| FindOne::new("user").where_clause(Where::new("id", s(id)));
        let found = adapter
            .find_one(find("u2"))
            .await
            .unwrap_or_else(|error| panic!("{mode}: through the view: {error}"))
            .expect("u2");
        assert_eq!(found.get("email"), Some(&s("b@example.org")), "{mode}");
        let domain: String = admin
            .query_one("SELECT email_domain FROM users_table WHERE id = 'u2'", &[])
            .await
            .expect("generated")
            .get(0);
        assert_eq!(
            domain, "example.org",
            "{mode}: computed by the server, never written"
        );

        // Dropped and added again (a new position, NULL everywhere) under warm statements.
        admin
            .batch_execute(
                "DROP VIEW users; \
                 ALTER TABLE users_table DROP COLUMN image; \
                 ALTER TABLE users_table ADD COLUMN image text; \
                 CREATE VIEW users AS SELECT * FROM users_table",
            )
            .await
            .expect("re-add");
        let updated = adapter
            .update(
                Update::new("user")
                    .where_clause(Where::new("id", s("u2")))
                    .data("image", s("https://example.org/a.png")),
            )
            .await
            .unwrap_or_else(|error| panic!("{mode}: after the re-add: {error}"))
            .expect("u2");
        assert_eq!(
            updated.get("image"),
            Some(&s("https://example.org/a.png")),
            "{mode}"
        );
        let again = adapter
            .find_one(find("u1"))
            .await
            .expect("find")
            .expect("u1");
        assert_eq!(again.get("image"), Some(&DbValue::Null), "{mode}");
        assert_eq!(again.get("email"), Some(&s("a@example.com")), "{mode}");
    }
}

/// A column renamed while calls run: the calls fail with an error naming the column (never a
/// wrong value, never a panic), and once the table matches the schema again, calls are right.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_renamed_during_traffic_is_named_then_calls_recover() {
    for mode in MODES {
        let (url, admin) = database("session_rename").await;
        let adapter = adapter(&url, mode, "&max_connections=2").await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut traffic = Vec::new();
        for task in 0..4 {
            let adapter = adapter.clone();
            let stop = std::sync::Arc::clone(&stop);
            traffic.push(tokio::spawn(async move {
                let (mut ok, mut named) = (0u64, 0u64);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let result = if task % 2 == 0 {
                        adapter
                            .find_one(FindOne::new("user").where_clause(Where::new("id", s("u1"))))
                            .await
                            .map(|found| found.map(|user| user.get("name").cloned()))
                    } else {
                        adapter
                            .update(
                                Update::new("user")
                                    .where_clause(Where::new("id", s("u1")))
                                    .data("name", s("Ada")),
                            )
                            .await
                            .map(|found| found.map(|user| user.get("name").cloned()))
                    };
                    match result {
                        Ok(Some(Some(name))) => {
                            assert!(matches!(name, DbValue::String(_)), "{name:?}");
                            ok += 1;
                        }
                        Ok(other) => panic!("u1 must be found with a name: {other:?}"),
                        Err(error) => {
                            let text = error.to_string();
                            assert!(
                                text.contains("\"name\"") || text.contains("`name`"),
                                "the error names the column: {text}"
                            );
                            named += 1;
                        }
                    }
                    tokio::task::yield_now().await;
                }
                (ok, named)
            }));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        admin
            .batch_execute("ALTER TABLE users RENAME COLUMN name TO full_name")
            .await
            .expect("rename");
        tokio::time::sleep(Duration::from_millis(200)).await;
        admin
            .batch_execute("ALTER TABLE users RENAME COLUMN full_name TO name")
            .await
            .expect("rename back");
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut named = 0;
        for task in traffic {
            let (_, failed) = task.await.expect("traffic");
            named += failed;
        }
        assert!(named > 0, "{mode}: the rename was seen");
        // Once the table matches the schema again, every call is right.
        for _ in 0..4 {
            let user = adapter
                .find_one(FindOne::new("user").where_clause(Where::new("id", s("u1"))))
                .await
                .unwrap_or_else(|error| panic!("{mode}: after the rename back: {error}"))
                .expect("u1");
            assert_eq!(user.get("name"), Some(&s("Ada")), "{mode}");
        }
    }
}

/// The user these tests write and read back at `at`.
fn bee(id: &str, at: OffsetDateTime) -> Create {
    fixtures::user_at(id, at)
        .data("name", s("Bee"))
        .data("email", s("b@example.com"))
}
