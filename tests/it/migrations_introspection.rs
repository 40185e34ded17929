//! Migration planning on a real server: catalog introspection, re-planning after core's own DDL
//! for every id policy, schema-qualified and over-long names, refusals, atomic apply, and plugin
//! SQL migrations (behaviour.md §6, d, behaviour.md §10; quirks Q1, Q4, Q5, Q6, Q7, Q24).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, DbAdapter, DbField, DbFieldType, DbSchema, DbTable,
    IdGeneration, IdPolicy, MigrationStatement, MigrationStatementKind, RateLimitStorage,
    SchemaMigrationPlan, SchemaMigrationWarning, TableOptions,
};
use rustauth_core::plugin::{PluginMigration, PluginMigrationBody, PluginMigrationStep};
use rustauth_tokio_postgres::{driver, TokioPostgresAdapter};
use tokio_postgres::Client;

/// Core's refusal text for plans with warnings.
const REFUSED: &str = "non-executable migration warnings";

/// A brand-new database: its URL, an adapter on it (constructor schema = `schema`) and a raw client.
async fn database(label: &str, schema: &DbSchema) -> (String, TokioPostgresAdapter, Client) {
    let url = support::fresh_database(label).await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    let client = support::connect(&url).await;
    (url, adapter, client)
}

fn schema_with(id_policy: IdPolicy, rate_limit_storage: RateLimitStorage) -> DbSchema {
    auth_schema(AuthSchemaOptions {
        id_policy,
        rate_limit_storage,
        ..AuthSchemaOptions::default()
    })
}

fn default_schema() -> DbSchema {
    auth_schema(AuthSchemaOptions::default())
}

async fn table_exists(client: &Client, name: &str) -> bool {
    client
        .query_one("SELECT pg_catalog.to_regclass($1) IS NOT NULL", &[&name])
        .await
        .expect("to_regclass")
        .get(0)
}

/// Whether the client's session is outside any transaction block.
async fn outside_transaction(client: &Client) -> bool {
    client.batch_execute("SAVEPOINT probe").await.is_err()
}

fn assert_clean(plan: &SchemaMigrationPlan) {
    assert!(plan.is_empty(), "expected no statements: {plan:#?}");
    assert!(!plan.has_warnings(), "expected no warnings: {plan:#?}");
}

fn optional(name: &str, field_type: DbFieldType) -> DbField {
    DbField::new(name, field_type).optional()
}

/// The columns every hand-made `users` table below needs besides `id` and `email`.
const USER_COLUMNS: &str = "name TEXT NOT NULL, email_verified BOOLEAN NOT NULL, image TEXT, \
     created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL";

#[tokio::test]
async fn fresh_database_migrates_then_replans_clean_for_every_id_policy() {
    let policies = [
        ("random", IdPolicy::default()),
        ("uuid_plain", IdPolicy::new(IdGeneration::Uuid)),
        (
            "uuid_db",
            IdPolicy::new(IdGeneration::Uuid).with_database_uuid_support(true),
        ),
        ("serial", IdPolicy::new(IdGeneration::Serial)),
        ("disabled", IdPolicy::new(IdGeneration::Disabled)),
    ];
    for (label, policy) in policies {
        for storage in [RateLimitStorage::Memory, RateLimitStorage::Database] {
            let schema = schema_with(policy, storage);
            let (_, adapter, client) = database(&format!("mig_policy_{label}"), &schema).await;
            let first = adapter.plan_migrations(&schema).await.expect("first plan");
            let tables = if storage == RateLimitStorage::Database {
                5
            } else {
                4
            };
            assert_eq!(first.to_be_created.len(), tables, "{label}");
            // Core's three indexes plus the adapter's `idx_verifications_expires_at`.
            assert_eq!(first.indexes_to_be_created.len(), 4, "{label}");
            assert!(first
                .indexes_to_be_created
                .iter()
                .any(|index| index.index_name == "idx_verifications_expires_at"));
            assert_eq!(first.statements.len(), tables + 4, "{label}");
            assert!(!first.has_warnings(), "{label}: {:?}", first.warnings);

            adapter
                .run_migrations(&schema)
                .await
                .expect("run_migrations");
            assert_clean(&adapter.plan_migrations(&schema).await.expect("re-plan"));
            assert_eq!(
                adapter.compile_migrations(&schema).await.expect("compile"),
                ";"
            );
            // Q1: re-running on an existing database succeeds for every policy.
            adapter
                .run_migrations(&schema)
                .await
                .expect("second run_migrations");
            assert!(adapter
                .create_schema(&schema, None)
                .await
                .expect("create_schema")
                .is_none());
            assert_eq!(
                table_exists(&client, "rate_limits").await,
                storage == RateLimitStorage::Database
            );
        }
    }
}

#[tokio::test]
async fn serial_ddl_uses_identity_never_serial() {
    let schema = schema_with(
        IdPolicy::new(IdGeneration::Serial),
        RateLimitStorage::Memory,
    );
    let (_, adapter, _) = database("mig_serial_ddl", &schema).await;
    let sql = adapter.compile_migrations(&schema).await.expect("compile");
    assert!(sql.contains("GENERATED BY DEFAULT AS IDENTITY"), "{sql}");
    assert!(!sql.contains("SERIAL"), "{sql}");
}

#[tokio::test]
async fn changing_the_id_policy_reports_generated_id_mismatches() {
    let (_, adapter, _) = database("mig_policy_switch", &default_schema()).await;
    adapter
        .run_migrations(&default_schema())
        .await
        .expect("migrate random");

    let serial = schema_with(
        IdPolicy::new(IdGeneration::Serial),
        RateLimitStorage::Memory,
    );
    let plan = adapter.plan_migrations(&serial).await.expect("plan serial");
    assert!(plan.is_empty());
    assert!(plan
        .warnings
        .contains(&SchemaMigrationWarning::GeneratedIdMismatch {
            table_name: "users".to_owned(),
            column_name: "id".to_owned(),
            expected: IdGeneration::Serial,
            actual: Some(IdGeneration::Disabled),
        }));
    assert!(plan
        .warnings
        .contains(&SchemaMigrationWarning::ColumnTypeMismatch {
            table_name: "users".to_owned(),
            column_name: "id".to_owned(),
            expected: "BIGINT".to_owned(),
            actual: "text".to_owned(),
        }));
    let error = adapter.run_migrations(&serial).await.expect_err("refused");
    assert!(error.to_string().contains(REFUSED), "{error}");

    let uuid = schema_with(
        IdPolicy::new(IdGeneration::Uuid).with_database_uuid_support(true),
        RateLimitStorage::Memory,
    );
    let plan = adapter.plan_migrations(&uuid).await.expect("plan uuid");
    assert_eq!(plan.warnings.len(), 4, "{:?}", plan.warnings);
    assert!(plan.warnings.iter().all(|warning| matches!(
        warning,
        SchemaMigrationWarning::GeneratedIdMismatch {
            expected: IdGeneration::Uuid,
            actual: Some(IdGeneration::Disabled),
            ..
        }
    )));

    // Core's Disabled DDL is the same `TEXT PRIMARY KEY` as Random's.
    let disabled = schema_with(
        IdPolicy::new(IdGeneration::Disabled),
        RateLimitStorage::Memory,
    );
    assert_clean(
        &adapter
            .plan_migrations(&disabled)
            .await
            .expect("plan disabled"),
    );
}

fn qualified_schema(pg_schema: &str) -> DbSchema {
    let name = |table: &str| TableOptions::default().with_name(format!("{pg_schema}.{table}"));
    auth_schema(AuthSchemaOptions {
        user: name("users"),
        session: name("sessions"),
        account: name("accounts"),
        verification: name("verifications"),
        rate_limit: name("rate_limits"),
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    })
}

#[tokio::test]
async fn schema_qualified_tables_replan_clean() {
    let schema = qualified_schema("auth");
    let (_, adapter, client) = database("mig_qualified", &schema).await;
    client
        .batch_execute("CREATE SCHEMA auth")
        .await
        .expect("create schema");
    let first = adapter.plan_migrations(&schema).await.expect("plan");
    assert!(first
        .compile()
        .contains(r#"REFERENCES "auth"."users" ("id")"#));
    assert!(first
        .indexes_to_be_created
        .iter()
        .any(|index| index.index_name == "idx_auth_sessions_user_id"));
    adapter
        .create_schema(&schema, None)
        .await
        .expect("create_schema");
    assert_clean(&adapter.plan_migrations(&schema).await.expect("re-plan"));
    assert!(table_exists(&client, "auth.users").await);
    assert!(!table_exists(&client, "public.users").await);

    // Qualified with the current schema itself: foreign keys are reported qualified too.
    let public = qualified_schema("public");
    adapter.run_migrations(&public).await.expect("public");
    assert_clean(
        &adapter
            .plan_migrations(&public)
            .await
            .expect("re-plan public"),
    );
}

#[tokio::test]
async fn missing_postgres_schema_fails_the_whole_plan() {
    let mut schema = default_schema();
    schema
        .insert_plugin_table(
            "audit".to_owned(),
            DbTable {
                name: "nowhere.audit".to_owned(),
                fields: [("id".to_owned(), DbField::new("id", DbFieldType::String))]
                    .into_iter()
                    .collect(),
                order: Some(9),
            },
        )
        .expect("plugin table");
    let (_, adapter, client) = database("mig_missing_schema", &schema).await;
    let error = adapter.run_migrations(&schema).await.expect_err("3F000");
    assert!(error.to_string().contains("3F000"), "{error}");
    assert!(!table_exists(&client, "users").await);
    assert!(outside_transaction(&client).await);
}

#[tokio::test]
async fn indexed_plugin_field_is_added_with_its_index() {
    let mut schema = default_schema();
    let (_, adapter, _) = database("mig_plugin_field", &schema).await;
    adapter
        .create_schema(&schema, None)
        .await
        .expect("create_schema");
    schema
        .insert_plugin_field(
            "user",
            "nickname".to_owned(),
            optional("nickname", DbFieldType::String).indexed(),
        )
        .expect("plugin field");
    let plan = adapter.plan_migrations(&schema).await.expect("plan");
    assert!(!plan.has_warnings(), "{:?}", plan.warnings);
    assert_eq!(plan.to_be_added.len(), 1);
    assert_eq!(plan.to_be_added[0].column_name, "nickname");
    assert_eq!(plan.indexes_to_be_created.len(), 1);
    assert_eq!(
        plan.indexes_to_be_created[0].index_name,
        "idx_users_nickname"
    );
    assert_eq!(
        plan.compile(),
        "ALTER TABLE \"users\" ADD COLUMN \"nickname\" TEXT;\n\n\
         CREATE INDEX IF NOT EXISTS \"idx_users_nickname\" ON \"users\" (\"nickname\");"
    );
    adapter.run_migrations(&schema).await.expect("migrate");
    assert_clean(&adapter.plan_migrations(&schema).await.expect("re-plan"));
}

#[tokio::test]
async fn preexisting_integer_email_is_refused_before_anything_runs() {
    let mut schema = default_schema();
    schema
        .insert_plugin_field(
            "user",
            "nickname".to_owned(),
            optional("nickname", DbFieldType::String).indexed(),
        )
        .expect("plugin field");
    let (_, adapter, client) = database("mig_integer_email", &schema).await;
    client
        .batch_execute("CREATE TABLE users (id TEXT PRIMARY KEY, email INTEGER)")
        .await
        .expect("pre-existing table");
    let plan = adapter.plan_migrations(&schema).await.expect("plan");
    assert!(plan
        .warnings
        .contains(&SchemaMigrationWarning::ColumnTypeMismatch {
            table_name: "users".to_owned(),
            column_name: "email".to_owned(),
            expected: "TEXT".to_owned(),
            actual: "integer".to_owned(),
        }));
    // Nullability is not compared (as in 0.3.2): the type mismatch is the only warning.
    assert_eq!(plan.warnings.len(), 1, "{:?}", plan.warnings);
    assert!(plan
        .indexes_to_be_created
        .iter()
        .any(|index| index.index_name == "idx_users_nickname"));

    let error = adapter.run_migrations(&schema).await.expect_err("refused");
    assert!(error.to_string().contains(REFUSED), "{error}");
    assert!(error.to_string().contains("1 non-executable"), "{error}");
    let error = adapter
        .create_schema(&schema, None)
        .await
        .expect_err("refused");
    assert!(error.to_string().contains(REFUSED), "{error}");
    assert!(!table_exists(&client, "sessions").await);
    assert_eq!(
        adapter.plan_migrations(&schema).await.expect("re-plan"),
        plan
    );
}

#[tokio::test]
async fn failure_mid_plan_rolls_back_everything() {
    let schema = default_schema();
    let (_, _, client) = database("mig_rollback", &schema).await;
    let mut plan = driver::plan_migrations(&client, &schema)
        .await
        .expect("plan");
    let first_table = plan.to_be_created[0].table_name.clone();
    plan.statements.insert(
        1,
        MigrationStatement {
            kind: MigrationStatementKind::CreateTable,
            sql: "CREATE TABLE broken (".to_owned(),
        },
    );
    let error = driver::apply_migration_plan(&client, &plan)
        .await
        .expect_err("bogus statement");
    let text = error.to_string();
    assert!(text.contains("42601"), "{text}");
    assert!(text.contains("migration statement 2 of 9"), "{text}");
    assert!(!table_exists(&client, &first_table).await);
    assert!(outside_transaction(&client).await);
}

#[tokio::test]
async fn failure_at_commit_rolls_back_everything() {
    let schema = default_schema();
    let (_, _, client) = database("mig_commit_failure", &schema).await;
    client
        .batch_execute(
            "CREATE TABLE parent (id INT PRIMARY KEY); \
             CREATE TABLE child (p INT REFERENCES parent DEFERRABLE INITIALLY DEFERRED)",
        )
        .await
        .expect("setup");
    let mut plan = driver::plan_migrations(&client, &schema)
        .await
        .expect("plan");
    plan.statements.push(MigrationStatement {
        kind: MigrationStatementKind::CreateTable,
        sql: "INSERT INTO child VALUES (42)".to_owned(),
    });
    let error = driver::apply_migration_plan(&client, &plan)
        .await
        .expect_err("deferred FK fails at COMMIT");
    assert!(error.to_string().contains("23503"), "{error}");
    assert!(!table_exists(&client, "users").await);
    assert!(outside_transaction(&client).await);
}

#[tokio::test]
async fn apply_does_not_check_warnings_but_create_schema_does() {
    let schema = default_schema();
    let (_, _, client) = database("mig_driver_warnings", &schema).await;
    client
        .batch_execute("CREATE TABLE users (id TEXT PRIMARY KEY, email INTEGER)")
        .await
        .expect("setup");
    let plan = driver::plan_migrations(&client, &schema)
        .await
        .expect("plan");
    assert!(plan.has_warnings());
    let error = driver::create_schema(&client, &schema)
        .await
        .expect_err("refused");
    assert!(error.to_string().contains(REFUSED), "{error}");
    let error = driver::execute_migration_plan(&client, &schema)
        .await
        .expect_err("refused");
    assert!(error.to_string().contains(REFUSED), "{error}");
    assert!(!table_exists(&client, "sessions").await);
    driver::apply_migration_plan(&client, &plan)
        .await
        .expect("applied anyway");
    assert!(table_exists(&client, "sessions").await);
}

#[tokio::test]
async fn names_longer_than_63_bytes_replan_clean() {
    // idx_<session table>_user_id is 73 bytes; the user table and one column exceed 63 bytes.
    let session = "sessions_with_a_really_quite_long_physical_table_name_abcdefg";
    let user = "users_with_a_table_name_that_is_far_too_long_for_postgres_identifiers_x";
    let column = "a_column_name_that_is_also_much_longer_than_sixty_three_bytes_yes";
    let mut schema = auth_schema(AuthSchemaOptions {
        user: TableOptions::default()
            .with_name(user)
            .with_field_name("image", column),
        session: TableOptions::default().with_name(session),
        ..AuthSchemaOptions::default()
    });
    let (_, adapter, _) = database("mig_long_names", &schema).await;
    adapter.run_migrations(&schema).await.expect("migrate");
    assert_clean(&adapter.plan_migrations(&schema).await.expect("re-plan"));

    // A field added later to the over-long table is still planned (the table is found).
    schema
        .insert_plugin_field(
            "user",
            "nickname".to_owned(),
            optional("nickname", DbFieldType::String),
        )
        .expect("plugin field");
    let plan = adapter.plan_migrations(&schema).await.expect("plan field");
    assert_eq!(plan.to_be_added.len(), 1, "{plan:#?}");
    assert!(plan.to_be_created.is_empty());
    adapter
        .run_migrations(&schema)
        .await
        .expect("migrate field");
    assert_clean(
        &adapter
            .plan_migrations(&schema)
            .await
            .expect("re-plan field"),
    );
}

#[tokio::test]
async fn unique_field_on_preexisting_column_gets_one_unique_index() {
    let schema = default_schema();
    let (_, adapter, client) = database("mig_unique_field_on_preexisting_", &schema).await;
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL, {USER_COLUMNS})"
        ))
        .await
        .expect("setup");
    let plan = adapter.plan_migrations(&schema).await.expect("plan");
    assert!(!plan.has_warnings(), "{:?}", plan.warnings);
    assert!(plan
        .indexes_to_be_created
        .iter()
        .any(|index| index.index_name == "uidx_users_email" && index.unique));
    adapter.run_migrations(&schema).await.expect("migrate");
    assert_clean(&adapter.plan_migrations(&schema).await.expect("re-plan"));
    client
        .batch_execute(
            "INSERT INTO users VALUES ('a', 'x@example.com', 'A', false, NULL, now(), now())",
        )
        .await
        .expect("first row");
    let duplicate = client
        .batch_execute(
            "INSERT INTO users VALUES ('b', 'x@example.com', 'B', false, NULL, now(), now())",
        )
        .await
        .expect_err("unique");
    assert_eq!(duplicate.code().map(|code| code.code()), Some("23505"));
}

#[tokio::test]
async fn unsupported_column_types_are_refused() {
    let mut schema = schema_with(IdPolicy::default(), RateLimitStorage::Database);
    for (name, field_type) in [
        ("tags", DbFieldType::StringArray),
        ("score", DbFieldType::Number),
        ("nums", DbFieldType::NumberArray),
        ("nick", DbFieldType::String),
        ("seen", DbFieldType::Timestamp),
    ] {
        schema
            .insert_plugin_field("user", name.to_owned(), optional(name, field_type))
            .expect("plugin field");
    }
    let (_, adapter, client) = database("mig_unsupported_column_types_are", &schema).await;
    client
        .batch_execute(&format!(
            "CREATE DOMAIN email_text AS text; \
             CREATE TABLE users (id TEXT PRIMARY KEY, email TEXT NOT NULL UNIQUE, {USER_COLUMNS}, \
             tags CHAR(4)[], score REAL, nums INT2[], nick email_text, seen DATE); \
             CREATE TABLE rate_limits (key TEXT NOT NULL UNIQUE, count NUMERIC(20, 0) NOT NULL, \
             last_request DOUBLE PRECISION NOT NULL)"
        ))
        .await
        .expect("setup");
    let plan = adapter.plan_migrations(&schema).await.expect("plan");
    let mismatch = |table: &str, column: &str, expected: &str, actual: &str| {
        SchemaMigrationWarning::ColumnTypeMismatch {
            table_name: table.to_owned(),
            column_name: column.to_owned(),
            expected: expected.to_owned(),
            actual: actual.to_owned(),
        }
    };
    assert_eq!(
        plan.warnings,
        vec![
            // A domain over text is reported as text (the adapter binds and reads it as its
            // base type), so `nick email_text` is no mismatch; the driver's own refusals
            // follow core's warnings.
            mismatch("users", "tags", "TEXT[]", "_bpchar"),
            mismatch("users", "score", "BIGINT", "real"),
            mismatch("rate_limits", "count", "BIGINT", "numeric"),
            mismatch("rate_limits", "last_request", "BIGINT", "double precision"),
        ]
    );
    let error = adapter.run_migrations(&schema).await.expect_err("refused");
    assert!(error.to_string().contains("4 non-executable"), "{error}");
    assert!(!table_exists(&client, "sessions").await);
}

#[tokio::test]
async fn only_foreign_key_differences_are_reported_not_nullability_or_primary_keys() {
    let schema = default_schema();
    let (_, adapter, client) = database("mig_constraints", &schema).await;
    client
        .batch_execute(
            "CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT, email TEXT NOT NULL UNIQUE, \
             email_verified BOOLEAN NOT NULL, image TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL, \
             updated_at TIMESTAMPTZ NOT NULL); \
             CREATE TABLE sessions (id TEXT, expires_at TIMESTAMPTZ NOT NULL, token TEXT NOT NULL UNIQUE, \
             created_at TIMESTAMPTZ NOT NULL, updated_at TIMESTAMPTZ NOT NULL, ip_address TEXT, \
             user_agent TEXT, user_id TEXT NOT NULL REFERENCES users (id) ON DELETE SET NULL)",
        )
        .await
        .expect("setup");
    let plan = adapter.plan_migrations(&schema).await.expect("plan");
    assert_eq!(
        plan.warnings,
        // Nullability and primary-key differences are not reported (0.3.2 never did);
        // a foreign key that differs is.
        vec![SchemaMigrationWarning::ForeignKeyMismatch {
            table_name: "sessions".to_owned(),
            column_name: "user_id".to_owned(),
            expected: rustauth_core::db::ForeignKey::new(
                "users",
                "id",
                rustauth_core::db::OnDelete::Cascade
            ),
            actual: Some(rustauth_core::db::ForeignKey::new(
                "users",
                "id",
                rustauth_core::db::OnDelete::SetNull
            )),
        },]
    );
}

#[tokio::test]
async fn invalid_table_names_are_rejected() {
    let (_, adapter, _) = database("mig_invalid_names", &default_schema()).await;
    for name in ["a.b.c", ".users", "users.", "public..users"] {
        let schema = auth_schema(AuthSchemaOptions {
            user: TableOptions::default().with_name(name),
            ..AuthSchemaOptions::default()
        });
        let error = adapter.plan_migrations(&schema).await.expect_err(name);
        assert!(
            error.to_string().contains("invalid PostgreSQL table name"),
            "{name}: {error}"
        );
    }
}

#[tokio::test]
async fn plans_are_deterministic() {
    let schema = schema_with(
        IdPolicy::new(IdGeneration::Serial),
        RateLimitStorage::Database,
    );
    let (_, adapter, client) = database("mig_deterministic", &schema).await;
    client
        .batch_execute("CREATE TABLE users (id TEXT PRIMARY KEY, email INTEGER)")
        .await
        .expect("setup");
    let first = adapter.plan_migrations(&schema).await.expect("plan");
    for _ in 0..5 {
        assert_eq!(adapter.plan_migrations(&schema).await.expect("plan"), first);
    }
}

#[tokio::test]
async fn concurrent_run_migrations_take_turns() {
    let mut schema = schema_with(IdPolicy::default(), RateLimitStorage::Database);
    schema
        .insert_plugin_field(
            "user",
            "nickname".to_owned(),
            optional("nickname", DbFieldType::String).indexed(),
        )
        .expect("plugin field");
    let (url, first, _) = database("mig_concurrent", &schema).await;
    let second = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    let (a, b) = tokio::join!(
        first.run_migrations(&schema),
        second.run_migrations(&schema)
    );
    a.expect("first");
    b.expect("second");
    assert_clean(&first.plan_migrations(&schema).await.expect("re-plan"));
}

fn plugin_migrations() -> Vec<PluginMigration> {
    vec![
        PluginMigration::new("audit_create").body(PluginMigrationBody::Sql(
            "CREATE TABLE audit (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, what TEXT); \
             INSERT INTO audit (what) VALUES ('one')"
                .to_owned(),
        )),
        PluginMigration::new("metadata_only"),
        PluginMigration::new("audit_extra").body(PluginMigrationBody::Plan(vec![
            PluginMigrationStep::new("described, no SQL"),
            PluginMigrationStep::new("add column").sql("ALTER TABLE audit ADD COLUMN extra TEXT"),
            PluginMigrationStep::new("insert")
                .sql("INSERT INTO audit (what, extra) VALUES ('two', 'x')"),
        ])),
    ]
}

#[tokio::test]
async fn plugin_migrations_run_once() {
    let (_, adapter, client) = database("mig_plugin_sql", &default_schema()).await;
    adapter
        .run_plugin_migrations(&plugin_migrations())
        .await
        .expect("first run");
    adapter
        .run_plugin_migrations(&plugin_migrations())
        .await
        .expect("second run is harmless");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM audit", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 2);
    let names: Vec<String> = client
        .query(
            "SELECT name FROM rustauth_plugin_migrations ORDER BY name",
            &[],
        )
        .await
        .expect("names")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(names, ["audit_create", "audit_extra"]);
}

#[tokio::test]
async fn failed_plugin_migration_rolls_back_the_whole_batch() {
    let (_, adapter, client) = database("mig_plugin_failure", &default_schema()).await;
    let migrations = [
        PluginMigration::new("good").body(PluginMigrationBody::Sql(
            "CREATE TABLE good (x INT)".to_owned(),
        )),
        PluginMigration::new("bad").body(PluginMigrationBody::Sql("CREATE TABLE bad (".to_owned())),
    ];
    let error = adapter
        .run_plugin_migrations(&migrations)
        .await
        .expect_err("syntax error");
    let text = error.to_string();
    assert!(
        text.contains("42601") && text.contains("plugin migration `bad`"),
        "{text}"
    );
    assert!(!table_exists(&client, "good").await);
    assert!(!table_exists(&client, "rustauth_plugin_migrations").await);
    assert!(outside_transaction(&client).await);
}

#[tokio::test]
async fn plugin_migrations_without_sql_touch_nothing() {
    let (_, adapter, client) = database("mig_plugin_noop", &default_schema()).await;
    adapter
        .run_plugin_migrations(&[
            PluginMigration::new("metadata_only"),
            PluginMigration::new("steps_only").body(PluginMigrationBody::Plan(vec![
                PluginMigrationStep::new("no SQL"),
            ])),
        ])
        .await
        .expect("no-op");
    assert!(!table_exists(&client, "rustauth_plugin_migrations").await);
}
