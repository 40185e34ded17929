//! The core tables as real tools create them, not as this crate's migrations do: `timestamp(3)`
//! without time zone (Prisma, Drizzle), `uuid` ids, a `citext` email, `varchar(255)` strings,
//! and a Better Auth database (singular quoted table names, camelCase columns, `timestamp`
//! columns, a `"rateLimit"` table with `count integer`), each in prepared and in unprepared
//! statement mode, with the database's `timezone` set to America/New_York.
//!
//! For each: RustAuth's sign-up, get-session (with a refresh), sign-in, sign-out and password
//! reset routes end to end; stored timestamps are the instants written (read back by the
//! server as epoch seconds, and through filters), also through the hidden `driver` module (twice,
//! the second time on the plans it kept); the typed path is used only on the layout of
//! `migrations/`; the adapter with typed statements off returns the same records; and the
//! published 0.3.2 returns the same records wherever it can read the tables at all.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::crud_common::driver::DriverAdapter;
use crate::fixtures::text;
use crate::support;

use support::app::{self, cookies, json};

use std::net::{IpAddr, Ipv4Addr};

use http::{Method, Response, StatusCode};
use rustauth_core::api::AuthRouter;
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbFieldType, DbRecord, DbSchema,
    DbValue, DeleteMany, FindMany, FindOne, RateLimitStorage, Update, Where, WhereOperator,
};
use rustauth_core::test_utils::fast_verify_password;
use rustauth_tokio_postgres::{TokioPostgresAdapter, TokioPostgresStores};
use serde_json::Value;
use time::{Duration, OffsetDateTime};

const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));
const SIGN_UP: &str = r#"{"name":"Ada","email":"ada@example.com","password":"secret123"}"#;
const SERVER_TIME_ZONE: &str = "America/New_York";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Made by this crate's `create_schema` (the layout of `migrations/`).
    Migrations,
    /// `timestamp(3)` without time zone, as Prisma and Drizzle create it.
    PrismaTimestamps,
    /// `uuid` ids.
    UuidIds,
    /// `users.email citext`.
    CitextEmail,
    /// `varchar(255)` for every string.
    Varchar,
    /// Better Auth's own tables: `"user"`, `"emailVerified"`, `timestamp`, `"rateLimit"`.
    BetterAuth,
}

fn schema(layout: Layout) -> DbSchema {
    if layout == Layout::BetterAuth {
        return rustauth_tokio_postgres::layout::better_auth_schema();
    }
    auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    })
}

fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The DDL another tool would have run for `layout`.
fn ddl(layout: Layout, schema: &DbSchema) -> String {
    let mut sql = String::new();
    for (logical, table) in schema.tables() {
        let mut columns = Vec::new();
        if layout == Layout::BetterAuth && logical == "rate_limit" {
            columns.push("\"id\" text PRIMARY KEY DEFAULT gen_random_uuid()::text".to_owned());
        }
        for (field_name, field) in &table.fields {
            let ty = match field.field_type {
                DbFieldType::String => match layout {
                    Layout::Varchar => "varchar(255)",
                    Layout::CitextEmail if field_name == "email" => "citext",
                    Layout::UuidIds if field_name == "id" || field_name == "user_id" => "uuid",
                    _ => "text",
                },
                DbFieldType::Number if layout == Layout::BetterAuth && field_name == "count" => {
                    "integer"
                }
                DbFieldType::Number => "bigint",
                DbFieldType::Boolean => "boolean",
                DbFieldType::Timestamp => match layout {
                    Layout::PrismaTimestamps => "timestamp(3)",
                    Layout::BetterAuth => "timestamp",
                    _ => "timestamptz",
                },
                _ => "text",
            };
            let mut column = format!("{} {ty}", quote(&field.name));
            if field_name == "id" {
                column.push_str(" PRIMARY KEY");
            } else {
                if field.required {
                    column.push_str(" NOT NULL");
                }
                if field.unique {
                    column.push_str(" UNIQUE");
                }
            }
            columns.push(column);
        }
        sql.push_str(&format!(
            "CREATE TABLE {} ({});\n",
            quote(&table.name),
            columns.join(", ")
        ));
    }
    sql
}

struct Setup {
    url: String,
    schema: DbSchema,
    stores: TokioPostgresStores,
    router: AuthRouter,
    raw: tokio_postgres::Client,
}

async fn setup(layout: Layout, unprepared: bool) -> Setup {
    let label = format!(
        "matrix_{}_{}",
        format!("{layout:?}").to_lowercase(),
        if unprepared { "u" } else { "p" }
    );
    let url = support::fresh_database(&label).await;
    let raw = support::connect(&url).await;
    let database: String = raw
        .query_one("SELECT current_database()", &[])
        .await
        .expect("database name")
        .get(0);
    raw.batch_execute(&format!(
        "ALTER DATABASE {} SET timezone TO '{SERVER_TIME_ZONE}'",
        quote(&database)
    ))
    .await
    .expect("set the database time zone");
    let schema = schema(layout);
    if layout == Layout::CitextEmail {
        raw.batch_execute("CREATE EXTENSION IF NOT EXISTS citext")
            .await
            .expect("citext (Debian: postgresql-contrib)");
    }
    if layout != Layout::Migrations {
        raw.batch_execute(&ddl(layout, &schema))
            .await
            .expect("foreign DDL");
    }
    let adapter_url = if unprepared {
        format!("{url}?statement_mode=unprepared")
    } else {
        url.clone()
    };
    let stores = TokioPostgresStores::connect_with_schema(&adapter_url, schema.clone())
        .await
        .expect("connect stores");
    if layout == Layout::Migrations {
        stores
            .adapter_ref()
            .create_schema(&schema, None)
            .await
            .expect("create schema");
    }
    let router = app::router(&stores, app::options());
    // Every session of this database runs in a zone that is not UTC.
    let raw = support::connect(&url).await;
    let zone: String = raw
        .query_one("SELECT current_setting('TimeZone')", &[])
        .await
        .expect("time zone")
        .get(0);
    assert_eq!(zone, SERVER_TIME_ZONE);
    Setup {
        url: adapter_url,
        schema,
        stores,
        router,
        raw,
    }
}

impl Setup {
    fn adapter(&self) -> &TokioPostgresAdapter {
        self.stores.adapter_ref()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
        cookie: Option<&str>,
    ) -> Response<Vec<u8>> {
        app::send(&self.router, method, path, body, cookie, CLIENT_IP).await
    }

    async fn post(&self, path: &str, body: &str, cookie: Option<&str>) -> Response<Vec<u8>> {
        self.send(Method::POST, path, body, cookie).await
    }

    async fn count(&self, model: &str) -> u64 {
        self.adapter()
            .count(Count::new(model))
            .await
            .expect("count")
    }

    /// The epoch seconds the server reads from a stored timestamp column: the instant of a
    /// `timestamptz`, the UTC wall-clock reading of a `timestamp` (as Prisma stores it).
    async fn stored_epoch(&self, model: &str, field: &str, id: &str) -> f64 {
        let table = self.schema.table(model).expect("table");
        let column = &table.fields[field].name;
        let id_column = &table.fields["id"].name;
        let sql = format!(
            "SELECT extract(epoch FROM {})::float8 FROM {} WHERE {}::text = $1",
            quote(column),
            quote(&table.name),
            quote(id_column)
        );
        self.raw
            .query_one(sql.as_str(), &[&id])
            .await
            .expect("stored epoch")
            .get(0)
    }
}

fn string<'a>(record: &'a DbRecord, field: &str) -> &'a str {
    match record.get(field) {
        Some(DbValue::String(value)) => value,
        other => panic!("`{field}` is not a string: {other:?}"),
    }
}

fn instant(record: &DbRecord, field: &str) -> OffsetDateTime {
    match record.get(field) {
        Some(DbValue::Timestamp(value)) => *value,
        other => panic!("`{field}` is not a timestamp: {other:?}"),
    }
}

/// A millisecond-precision instant (what `timestamp(3)` keeps).
fn at(seconds: i64, millis: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(seconds).expect("instant") + Duration::milliseconds(millis)
}

fn epoch(value: OffsetDateTime) -> f64 {
    value.unix_timestamp_nanos() as f64 / 1e9
}

/// Timestamps written through the adapter are the instants given: stored so the server reads
/// them as those instants, read back equal, and compared correctly in filters.
async fn timestamps_are_instants(setup: &Setup, adapter: &dyn DbAdapter, id: &str) {
    let written = at(1_790_000_000, 123);
    let created = adapter
        .create(
            Create::new("verification")
                .data("id", text(id))
                .data("identifier", text("matrix:instant"))
                .data("value", text("v"))
                .data("expires_at", DbValue::Timestamp(written))
                .data("created_at", DbValue::Timestamp(written))
                .data("updated_at", DbValue::Timestamp(written)),
        )
        .await
        .expect("create verification");
    assert_eq!(instant(&created, "expires_at"), written);
    let stored = setup.stored_epoch("verification", "expires_at", id).await;
    assert!(
        (stored - epoch(written)).abs() < 1e-3,
        "stored {stored}, written {}",
        epoch(written)
    );
    let found = adapter
        .find_one(FindOne::new("verification").where_clause(Where::new("id", text(id))))
        .await
        .expect("find verification")
        .expect("the verification");
    assert_eq!(instant(&found, "expires_at"), written);
    // This row's only: the driver's passes add rows with the same instant.
    let before = |offset: i64| {
        Count::new("verification")
            .where_clause(Where::new("id", text(id)))
            .where_clause(
                Where::new(
                    "expires_at",
                    DbValue::Timestamp(written + Duration::minutes(offset)),
                )
                .operator(WhereOperator::Lt),
            )
    };
    assert_eq!(adapter.count(before(1)).await.expect("count"), 1);
    assert_eq!(adapter.count(before(-1)).await.expect("count"), 0);
    let deleted = adapter
        .delete_many(
            DeleteMany::new("verification").where_clause(
                Where::new(
                    "expires_at",
                    DbValue::Timestamp(written - Duration::minutes(1)),
                )
                .operator(WhereOperator::Lt),
            ),
        )
        .await
        .expect("delete expired");
    assert_eq!(
        deleted, 0,
        "a row one minute younger than the bound is not expired"
    );
}

/// The `driver` module (rustauth-deadpool-postgres' path) on the same tables, in the same
/// non-UTC zone: twice, so that the second pass runs on the plans the first one kept.
async fn driver_on_foreign_tables(setup: &Setup, layout: Layout) {
    let driver = DriverAdapter {
        schema: setup.schema.clone(),
        client: support::connect(&setup.url).await,
    };
    let ids: [&str; 2] = if layout == Layout::UuidIds {
        [
            "8d7c6b5a-4e3f-4a1b-9c2d-1e0f9a8b7c6d",
            "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d",
        ]
    } else {
        ["matrix-driver-1", "matrix-driver-2"]
    };
    for id in ids {
        timestamps_are_instants(setup, &driver, id).await;
    }
}

/// RustAuth's routes end to end.
async fn routes(setup: &Setup) {
    let sign_up = setup.post("/sign-up/email", SIGN_UP, None).await;
    assert_eq!(
        sign_up.status(),
        StatusCode::OK,
        "sign-up: {:?}",
        json(&sign_up)
    );
    let cookie = cookies(&sign_up);
    assert!(cookie.contains("session_token="), "{cookie}");
    assert_eq!(setup.count("user").await, 1);

    let session = setup
        .send(Method::GET, "/get-session", "", Some(&cookie))
        .await;
    assert_eq!(session.status(), StatusCode::OK);
    let body = json(&session);
    assert_eq!(body["user"]["email"], "ada@example.com", "{body}");
    let token = body["session"]["token"].as_str().expect("token").to_owned();

    // Refresh: a session close to expiry is extended by get-session.
    let adapter = setup.adapter();
    let soon = OffsetDateTime::now_utc() + Duration::hours(1);
    adapter
        .update(
            Update::new("session")
                .where_clause(Where::new("token", text(&token)))
                .data("expires_at", DbValue::Timestamp(soon)),
        )
        .await
        .expect("age the session")
        .expect("the session");
    let refreshed = setup
        .send(Method::GET, "/get-session", "", Some(&cookie))
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert_eq!(json(&refreshed)["user"]["email"], "ada@example.com");
    let stored = adapter
        .find_one(FindOne::new("session").where_clause(Where::new("token", text(&token))))
        .await
        .expect("find session")
        .expect("session");
    let expires = instant(&stored, "expires_at");
    assert!(
        expires > OffsetDateTime::now_utc() + Duration::days(6),
        "the refresh moved expiry to about a week ahead: {expires}"
    );
    let id = string(&stored, "id").to_owned();
    let stored_epoch = setup.stored_epoch("session", "expires_at", &id).await;
    assert!(
        (stored_epoch - epoch(expires)).abs() < 1e-3,
        "{stored_epoch} vs {expires}"
    );

    let wrong = setup
        .post(
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"wrong-password"}"#,
            None,
        )
        .await;
    assert!(wrong.status().is_client_error(), "{}", wrong.status());
    let sign_in = setup
        .post(
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"secret123"}"#,
            None,
        )
        .await;
    assert_eq!(
        sign_in.status(),
        StatusCode::OK,
        "sign-in: {:?}",
        json(&sign_in)
    );
    assert_eq!(setup.count("session").await, 2);

    let sign_out = setup.post("/sign-out", "", Some(&cookie)).await;
    assert_eq!(sign_out.status(), StatusCode::OK);
    assert_eq!(setup.count("session").await, 1);
    let after = setup
        .send(Method::GET, "/get-session", "", Some(&cookie))
        .await;
    assert_eq!(json(&after), Value::Null);

    let request = setup
        .post(
            "/request-password-reset",
            r#"{"email":"ada@example.com","redirectTo":"/reset"}"#,
            None,
        )
        .await;
    assert_eq!(request.status(), StatusCode::OK);
    let verifications = adapter
        .find_many(FindMany::new("verification").where_clause(
            Where::new("identifier", text("reset-password:")).operator(WhereOperator::StartsWith),
        ))
        .await
        .expect("verifications");
    assert_eq!(verifications.len(), 1);
    let reset_token = string(&verifications[0], "identifier")
        .trim_start_matches("reset-password:")
        .to_owned();
    let reset = setup
        .post(
            "/reset-password",
            &format!(r#"{{"newPassword":"new-secret123","token":"{reset_token}"}}"#),
            None,
        )
        .await;
    assert_eq!(reset.status(), StatusCode::OK, "reset: {:?}", json(&reset));
    let account = adapter
        .find_one(
            FindOne::new("account").where_clause(Where::new("provider_id", text("credential"))),
        )
        .await
        .expect("account")
        .expect("credential account");
    assert!(fast_verify_password(string(&account, "password"), "new-secret123").expect("verify"));
}

/// The reads the hot paths make, on this adapter, on a second one with typed statements off,
/// and on the published 0.3.2 where it can read the tables.
async fn same_records_everywhere(setup: &Setup, layout: Layout) {
    let generic = TokioPostgresAdapter::connect_with_schema(&setup.url, setup.schema.clone())
        .await
        .expect("second adapter")
        .with_typed_statements(false);
    let user = setup
        .adapter()
        .find_one(FindOne::new("user").where_clause(Where::new("email", text("ada@example.com"))))
        .await
        .expect("user")
        .expect("the user");
    let user_id = string(&user, "id").to_owned();
    let calls: Vec<FindMany> = vec![
        FindMany::new("user").where_clause(Where::new("email", text("ada@example.com"))),
        FindMany::new("user").where_clause(Where::new("id", text(&user_id))),
        FindMany::new("session").where_clause(Where::new("user_id", text(&user_id))),
        FindMany::new("account").where_clause(Where::new("user_id", text(&user_id))),
        FindMany::new("user")
            .where_clause(Where::new("email", text("ADA@example.com")).insensitive()),
    ];
    let published = {
        let client = support::connect(&setup.url.replace("?statement_mode=unprepared", "")).await;
        rustauth_tokio_postgres_032::TokioPostgresAdapter::with_schema(client, setup.schema.clone())
    };
    let mut published_failures = Vec::new();
    for call in calls {
        let ours = setup.adapter().find_many(call.clone()).await.expect("ours");
        let off = generic.find_many(call.clone()).await.expect("typed off");
        assert_eq!(ours, off, "typed on/off differ for {call:?}");
        assert!(!ours.is_empty(), "{call:?} finds the rows");
        match published.find_many(call.clone()).await {
            Ok(theirs) => assert_eq!(ours, theirs, "0.3.2 differs for {call:?}"),
            Err(error) => published_failures.push(format!("{}: {error}", call.model)),
        }
    }
    // 0.3.2 cannot read `timestamp` columns (Prisma, Better Auth layouts: "error deserializing
    // column"); where it reads the tables at all it must agree with us.
    if matches!(
        layout,
        Layout::Migrations | Layout::Varchar | Layout::CitextEmail
    ) {
        assert!(published_failures.is_empty(), "{published_failures:?}");
    } else {
        eprintln!("{layout:?}: 0.3.2 failed on {published_failures:?}");
    }
}

async fn matrix(layout: Layout, unprepared: bool) {
    let setup = setup(layout, unprepared).await;
    let id = if layout == Layout::UuidIds {
        "5f0c8a52-5a3b-4f9e-9d3c-2f1e0b8a7c61"
    } else {
        "matrix-instant"
    };
    timestamps_are_instants(&setup, setup.adapter(), id).await;
    if !unprepared {
        driver_on_foreign_tables(&setup, layout).await;
    }
    let typed_before = setup.adapter().typed_call_count();
    if layout == Layout::UuidIds {
        // RustAuth generates 32-character random ids, which a `uuid` column cannot hold (with
        // any adapter): the routes cannot run here. The adapter itself serves uuid ids, and
        // refuses a malformed one naming the column, with nothing written.
        uuid_ids(&setup).await;
    } else {
        routes(&setup).await;
        same_records_everywhere(&setup, layout).await;
    }
    let typed = setup.adapter().typed_call_count() - typed_before;
    match (layout, unprepared) {
        (Layout::Migrations, false) => {
            assert!(typed > 0, "the typed path serves the layout of migrations/");
        }
        (Layout::CitextEmail, false) => {
            // Only `users` differs from migrations/: the other tables stay typed.
            assert!(typed > 0, "sessions, accounts and verifications stay typed");
            let typed_calls = |adapter: &TokioPostgresAdapter| adapter.typed_call_count();
            let adapter = setup.adapter();
            let before = typed_calls(adapter);
            adapter
                .find_one(
                    FindOne::new("user").where_clause(Where::new("email", text("ada@example.com"))),
                )
                .await
                .expect("user by email");
            assert_eq!(
                typed_calls(adapter),
                before,
                "users (citext email) is generic"
            );
            adapter
                .find_many(FindMany::new("session").where_clause(Where::new("user_id", text("x"))))
                .await
                .expect("sessions of a user");
            assert_eq!(typed_calls(adapter), before + 1, "sessions are typed");
        }
        _ => assert_eq!(
            typed, 0,
            "{layout:?}: the live catalog keeps the typed path off"
        ),
    }
}

async fn uuid_ids(setup: &Setup) {
    let adapter = setup.adapter();
    let id = "0b3e1f52-9a8c-4d7e-b1f0-6c2d9e8a4b13";
    let now = at(1_790_000_000, 0);
    let user = adapter
        .create(
            Create::new("user")
                .data("id", text(id))
                .data("name", text("Ada"))
                .data("email", text("ada@example.com"))
                .data("email_verified", DbValue::Boolean(false))
                .data("created_at", DbValue::Timestamp(now))
                .data("updated_at", DbValue::Timestamp(now)),
        )
        .await
        .expect("create user with a uuid id");
    assert_eq!(string(&user, "id"), id);
    let found = adapter
        .find_one(FindOne::new("user").where_clause(Where::new("id", text(id))))
        .await
        .expect("find by uuid")
        .expect("the user");
    assert_eq!(string(&found, "id"), id);
    let refused = adapter
        .create(
            Create::new("session")
                .data("id", text("not-a-uuid"))
                .data("user_id", text(id))
                .data("token", text("t"))
                .data("expires_at", DbValue::Timestamp(now))
                .data("created_at", DbValue::Timestamp(now))
                .data("updated_at", DbValue::Timestamp(now)),
        )
        .await
        .expect_err("a malformed uuid is refused");
    let message = refused.to_string();
    assert!(
        message.contains("column `id`") && message.contains("UUID"),
        "{message}"
    );
    assert!(
        !message.contains("not-a-uuid"),
        "the value is not echoed: {message}"
    );
    assert_eq!(setup.count("session").await, 0, "nothing written");
}

macro_rules! matrix_tests {
    ($($name:ident: $layout:expr, $unprepared:expr;)*) => {
        $(
            #[tokio::test]
            async fn $name() {
                matrix($layout, $unprepared).await;
            }
        )*
    };
}

matrix_tests! {
    migrations_prepared: Layout::Migrations, false;
    migrations_unprepared: Layout::Migrations, true;
    prisma_timestamps_prepared: Layout::PrismaTimestamps, false;
    prisma_timestamps_unprepared: Layout::PrismaTimestamps, true;
    uuid_ids_prepared: Layout::UuidIds, false;
    uuid_ids_unprepared: Layout::UuidIds, true;
    citext_email_prepared: Layout::CitextEmail, false;
    citext_email_unprepared: Layout::CitextEmail, true;
    varchar_prepared: Layout::Varchar, false;
    varchar_unprepared: Layout::Varchar, true;
    better_auth_prepared: Layout::BetterAuth, false;
    better_auth_unprepared: Layout::BetterAuth, true;
}
