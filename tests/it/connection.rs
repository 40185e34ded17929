//! Connection, errors and the hidden driver helpers (`docs/behaviour.md` §1, §8).

use crate::support;
use crate::support_proxy;

use rustauth_core::db::sql::SqlParam;
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, DbField, DbFieldType, DbValue, FindOne, TableOptions, Where,
};
use rustauth_core::error::RustAuthError;
use rustauth_tokio_postgres::{
    driver, TokioPostgresAdapter, TokioPostgresConnection, TokioPostgresRateLimitStore,
    TokioPostgresStores, TokioPostgresStoresBuilder,
};

#[test]
fn test_url_override_rule() {
    assert_eq!(support::url_from_env(None), None);
    assert_eq!(support::url_from_env(Some(String::new())), None);
    assert_eq!(
        support::url_from_env(Some("postgres://a@b:1/c".to_owned())),
        Some("postgres://a@b:1/c".to_owned())
    );
}

#[tokio::test]
async fn missing_database_reports_3d000_and_the_name() {
    let server = support::server_url().await;
    let missing = format!("rustauth_missing_{}", std::process::id());
    let url = support::database_url_with(&server, &missing);
    let error = TokioPostgresAdapter::connect(&url)
        .await
        .expect_err("connecting to a missing database must fail");
    let text = error.to_string();
    assert!(matches!(error, RustAuthError::Adapter(_)), "{error:?}");
    assert!(text.contains("3D000"), "{text}");
    assert!(text.contains(&missing), "{text}");
}

#[tokio::test]
async fn connection_errors_never_contain_the_password() {
    let server = support::server_url().await;
    // A password the server will never see in an error: the database does not exist, and for
    // a trust-auth server the password is simply unused.
    let with_password = server.replacen("://", "://postgres:s3cr3t-pa55@", 1);
    let with_password = if server.contains('@') {
        // The URL already names a user: put the password after it instead.
        let (scheme, rest) = server.split_once("://").unwrap_or(("postgres", &server));
        let (user, host) = rest.split_once('@').unwrap_or(("postgres", rest));
        let user = user.split(':').next().unwrap_or("postgres");
        format!("{scheme}://{user}:s3cr3t-pa55@{host}")
    } else {
        with_password
    };
    let url = support::database_url_with(&with_password, "rustauth_missing_pw");
    let error = TokioPostgresConnection::connect(&url)
        .await
        .expect_err("missing database");
    assert!(!error.to_string().contains("s3cr3t-pa55"), "{error}");
    assert!(!format!("{error:?}").contains("s3cr3t-pa55"), "{error:?}");

    let refused = TokioPostgresConnection::connect("postgres://u:s3cr3t-pa55@127.0.0.1:1/db")
        .await
        .expect_err("nothing listens on port 1");
    assert!(!refused.to_string().contains("s3cr3t-pa55"), "{refused}");
    assert!(
        refused
            .to_string()
            .starts_with("adapter error: tokio-postgres error"),
        "{refused}"
    );
}

#[test]
fn driver_params_bind_string_and_typed_null() {
    let text = DbField::new("name", DbFieldType::String);
    let number = DbField::new("age", DbFieldType::Number);
    let params = vec![
        SqlParam::new(&text, DbValue::String("ada".to_owned())),
        SqlParam::new(&number, DbValue::Null),
    ];
    let values = driver::postgres_params(&params).expect("bindable");
    assert_eq!(values.len(), 2);
    assert_eq!(driver::param_refs(&values).len(), 2);
}

#[tokio::test]
async fn driver_params_run_against_the_server() {
    let url = support::fresh_database("driver_params").await;
    let client = support::connect(&url).await;
    let text = DbField::new("name", DbFieldType::String);
    let number = DbField::new("age", DbFieldType::Number);
    let params = vec![
        SqlParam::new(&text, DbValue::String("ada".to_owned())),
        SqlParam::new(&number, DbValue::Null),
    ];
    let values = driver::postgres_params(&params).expect("bindable");
    let row = client
        .query_one(
            "SELECT $1::text, $2::bigint IS NULL",
            &driver::param_refs(&values),
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "ada");
    assert!(row.get::<_, bool>(1));
}

/// A database with the default tables and one user whose `email` column holds
/// `old@example.com` and whose extra `mail` column holds `new@example.com`.
async fn user_with_two_addresses(label: &str) -> tokio_postgres::Client {
    let url = support::fresh_database(label).await;
    let client = support::connect(&url).await;
    driver::create_schema(&client, &auth_schema(AuthSchemaOptions::default()))
        .await
        .expect("create the schema");
    client
        .batch_execute(
            r#"ALTER TABLE users ADD COLUMN mail text;
               INSERT INTO users (id, name, email, email_verified, created_at, updated_at, mail)
               VALUES ('u1', 'Ada', 'old@example.com', false, now(), now(), 'new@example.com')"#,
        )
        .await
        .expect("a user with two addresses");
    client
}

/// The default schema with the user's `email` field on the `mail` column.
fn schema_on_mail() -> rustauth_core::db::DbSchema {
    auth_schema(AuthSchemaOptions {
        user: TableOptions::default().with_field_name("email", "mail"),
        ..AuthSchemaOptions::default()
    })
}

/// The `email` of the user the driver finds by `email`, if any.
async fn driver_email_of(
    schema: &rustauth_core::db::DbSchema,
    client: &tokio_postgres::Client,
    email: &str,
) -> Option<String> {
    let query =
        FindOne::new("user").where_clause(Where::new("email", DbValue::String(email.to_owned())));
    let found = driver::PostgresSqlState::new(schema, client)
        .find_one(query)
        .await
        .expect("find by email");
    match found.as_ref().and_then(|record| record.get("email")) {
        Some(DbValue::String(email)) => Some(email.clone()),
        _ => None,
    }
}

/// The driver keeps each call's plan per schema and shape, recognising a schema by its
/// content. A schema replaced in place (same address, another column for a field) must get
/// plans of its own: a registry keyed by address, or one that skipped the comparison, would
/// run the kept plan against the old column and find the row by its old email.
#[tokio::test]
async fn driver_plans_follow_a_schema_changed_in_place() {
    let client = user_with_two_addresses("driver_plans").await;
    let mut schema = auth_schema(AuthSchemaOptions::default());
    for _ in 0..2 {
        let found = driver_email_of(&schema, &client, "old@example.com").await;
        assert_eq!(found.as_deref(), Some("old@example.com"));
    }

    schema = schema_on_mail();
    let stale = driver_email_of(&schema, &client, "old@example.com").await;
    assert_eq!(stale, None, "a plan of the old schema ran");
    let found = driver_email_of(&schema, &client, "new@example.com").await;
    assert_eq!(found.as_deref(), Some("new@example.com"));
}

/// The driver keeps its plans across its own migrations: a plan depends on the schema only,
/// so the one made (and failed with 42P01) before the table existed runs once it does.
#[tokio::test]
async fn driver_plans_made_before_a_migration_run_after_it() {
    let url = support::fresh_database("driver_plans_migration").await;
    let client = support::connect(&url).await;
    let schema = schema_on_mail();
    let query =
        FindOne::new("user").where_clause(Where::new("email", DbValue::String("x@y.z".into())));
    let missing = driver::PostgresSqlState::new(&schema, &client)
        .find_one(query)
        .await
        .expect_err("no table yet");
    assert!(missing.to_string().contains("42P01"), "{missing}");
    driver::create_schema(&client, &schema)
        .await
        .expect("create the schema");
    client
        .batch_execute(
            "INSERT INTO users (id, name, mail, email_verified, created_at, updated_at) \
             VALUES ('u1', 'Ada', 'new@example.com', false, now(), now())",
        )
        .await
        .expect("a user");
    let found = driver_email_of(&schema, &client, "new@example.com").await;
    assert_eq!(found.as_deref(), Some("new@example.com"));
}

/// Two schemas in turn, from tasks on two threads, each task with copies of its own: every
/// call must get its own schema's plan (the registry reorders and re-inserts its entries as
/// the schemas alternate, under concurrent readers and writers).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_plans_of_two_schemas_in_turn_from_many_tasks() {
    let client = std::sync::Arc::new(user_with_two_addresses("driver_plans_turns").await);
    let mut tasks = Vec::new();
    for task in 0..4 {
        let client = std::sync::Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let on_email = auth_schema(AuthSchemaOptions::default());
            let on_mail = schema_on_mail();
            for turn in 0..20 {
                let (schema, present, absent) = if (task + turn) % 2 == 0 {
                    (&on_email, "old@example.com", "new@example.com")
                } else {
                    (&on_mail, "new@example.com", "old@example.com")
                };
                let found = driver_email_of(schema, &client, present).await;
                assert_eq!(found.as_deref(), Some(present), "task {task}, turn {turn}");
                let found = driver_email_of(schema, &client, absent).await;
                assert_eq!(
                    found, None,
                    "task {task}, turn {turn}: another schema's plan"
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("the task finished");
    }
}

#[tokio::test]
async fn constructors_do_no_io_and_work_outside_a_runtime() {
    // Build a client inside a runtime, then construct every type outside of it.
    let url = support::fresh_database("constructors").await;
    let client = support::connect(&url).await;
    let handle = std::thread::spawn(move || {
        let adapter = TokioPostgresAdapter::new(client);
        let store = adapter.rate_limit_store();
        let from = TokioPostgresRateLimitStore::from(&adapter);
        let connection = adapter.connection().clone();
        let shared = TokioPostgresRateLimitStore::from_connection(&connection, "rate_limits");
        (
            format!("{adapter:?}"),
            format!("{store:?}"),
            format!("{from:?}"),
            format!("{connection:?}"),
            format!("{shared:?}"),
        )
    });
    let (adapter, store, from, connection, shared) = handle.join().expect("no panic");
    assert!(adapter.starts_with("TokioPostgresAdapter"), "{adapter}");
    assert!(adapter.contains("schema"), "{adapter}");
    assert!(store.contains("rate_limits"), "{store}");
    assert_eq!(store, from);
    assert_eq!(connection, "TokioPostgresConnection { .. }");
    assert!(shared.contains("rate_limits"), "{shared}");
}

#[tokio::test]
async fn stores_share_one_connection_and_keep_builder_defaults() {
    let url = support::fresh_database("stores").await;
    let schema = auth_schema(AuthSchemaOptions::default());
    let built = TokioPostgresStoresBuilder::default()
        .schema(schema.clone())
        .connect(&url)
        .await
        .expect("connect");
    let direct = TokioPostgresStores::connect_with_schema(&url, schema)
        .await
        .expect("connect");
    for stores in [&built, &direct] {
        let debug = format!("{stores:?}");
        assert!(
            debug.contains("adapter") && debug.contains("rate_limit"),
            "{debug}"
        );
        assert_eq!(stores.adapter().id(), "tokio-postgres");
        assert_eq!(
            stores.adapter_ref().connection().cached_statement_count(),
            0
        );
    }
    assert_eq!(
        format!("{:?}", TokioPostgresStoresBuilder::new()),
        format!("{:?}", TokioPostgresStoresBuilder::default())
    );
}

use rustauth_core::db::DbAdapter;

fn _assert_send_sync() {
    fn is<T: Send + Sync + 'static>() {}
    is::<TokioPostgresAdapter>();
    is::<TokioPostgresConnection>();
    is::<TokioPostgresRateLimitStore>();
    is::<TokioPostgresStores>();
    is::<TokioPostgresStoresBuilder>();
}

/// `value` quoted for a key/value connection string.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

#[tokio::test]
async fn invalid_or_ambiguous_tls_settings_are_refused_before_connecting() {
    let url = support::fresh_database("tls_settings").await;
    let proxy = support_proxy::CountingProxy::start(&url).await;
    let config = proxy.config();
    let mut base = format!(
        "host=127.0.0.1 port={} dbname={}",
        proxy.address().port(),
        quoted(config.get_dbname().unwrap_or("postgres"))
    );
    if let Some(user) = config.get_user() {
        base.push_str(&format!(" user={}", quoted(user)));
    }
    if let Some(password) = config.get_password() {
        base.push_str(&format!(
            " password={}",
            quoted(&String::from_utf8_lossy(password))
        ));
    }
    // The control: a valid string connects through the proxy.
    let connection = TokioPostgresConnection::connect(&format!("{base} sslmode = disable"))
        .await
        .expect("connect through the proxy");
    drop(connection);
    assert_eq!(proxy.connections(), 1);

    let port = proxy.address().port();
    let cases: Vec<(String, &[&str])> = vec![
        (
            format!("{base} sslmode=require sslmode = disable"),
            &["`sslmode` is given twice with different values"],
        ),
        (
            format!("postgres://u:pa?ss@127.0.0.1:{port}/db?sslmode=require&ssl%6Dode=disable"),
            &["`sslmode` is given twice with different values"],
        ),
        (
            format!("{base} statement_mode=unprepared statement_mode=prepared"),
            &["`statement_mode` is given twice"],
        ),
        (
            format!("{base} sslmode=verify_full"),
            &["invalid value for `sslmode`"],
        ),
        (
            format!("{base} sslmode=verify-ca sslrootcert='/nonexistent dir/ca.pem'"),
            &["sslrootcert", "/nonexistent dir/ca.pem"],
        ),
        // Even where it would verify nothing.
        (
            format!("{base} sslmode=prefer sslrootcert=/nonexistent/ca.pem"),
            &["sslrootcert", "/nonexistent/ca.pem"],
        ),
        (
            format!(
                "postgres://u:pa?ss@127.0.0.1:{port}/db?sslmode=require\
                 &sslcert=%2Fnonexistent%2Fc.pem&sslkey=%2Fnonexistent%2Fk.pem"
            ),
            &["sslcert", "/nonexistent/c.pem"],
        ),
        (
            format!("{base} sslmode=require sslcert=/nonexistent/c.pem"),
            &["`sslcert` is given without `sslkey`"],
        ),
    ];
    for (string, needles) in cases {
        let error = TokioPostgresConnection::connect(&string)
            .await
            .expect_err("refused");
        assert!(matches!(error, RustAuthError::Adapter(_)), "{error:?}");
        let text = error.to_string();
        assert!(
            text.starts_with("adapter error: tokio-postgres error: "),
            "{text}"
        );
        for needle in needles {
            assert!(text.contains(needle), "`{needle}` missing from: {text}");
        }
        assert!(!text.contains("pa?ss"), "{text}");
    }
    assert_eq!(proxy.connections(), 1, "a refused string connected");
}
