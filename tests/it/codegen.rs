//! The SQL-first typed statements (the SQL-first workflow): `migrations/` builds exactly the catalog that
//! `run_migrations` builds for the default schema with database rate limiting, every generated
//! statement of `src/generated/` runs on a plain `tokio_postgres::Client` and inside a
//! `Transaction` (prepared or not) with the results its `queries/` doc promises, and every
//! typed lookup is planned on an index over tables of 10 000 rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::path::{Path, PathBuf};

use rustauth_core::db::{auth_schema, AuthSchemaOptions, DbAdapter, DbSchema, RateLimitStorage};
use rustauth_tokio_postgres::generated::client::GenericClient;
use rustauth_tokio_postgres::generated::queries::account::{
    insert_account, update_account_password, Account,
};
use rustauth_tokio_postgres::generated::queries::rate_limit::{
    consume_rate_limit, RateLimitConsumed,
};
use rustauth_tokio_postgres::generated::queries::session::{
    delete_session_by_token, delete_sessions_by_user_id, insert_session, session_by_token,
    sessions_by_user_id, update_session_expiry, Session,
};
use rustauth_tokio_postgres::generated::queries::user::{
    insert_user, set_user_email_verified, user_by_email, user_by_email_with_accounts, user_by_id,
    User, UserWithAccount,
};
use rustauth_tokio_postgres::generated::queries::verification::{
    delete_expired_verifications, delete_verification_by_identifier, insert_verification,
    newest_verification_by_identifier, Verification,
};
use rustauth_tokio_postgres::layout::CoreTable;
use rustauth_tokio_postgres::TokioPostgresAdapter;
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::Client;

/// The schema `migrations/` mirrors.
fn database_rate_limit_schema() -> DbSchema {
    auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    })
}

/// The `.sql` files of `migrations/`, in the order they apply.
fn migration_files() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let mut files = std::fs::read_dir(&dir)
        .expect("read migrations/")
        .map(|entry| entry.expect("migrations/ entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "sql"))
        .collect::<Vec<_>>();
    files.sort();
    assert!(!files.is_empty(), "migrations/ holds no .sql file");
    files
}

/// A fresh database with `migrations/` applied, and a client on it.
async fn migrated_database(label: &str) -> (String, Client) {
    let url = support::fresh_database(label).await;
    let client = support::connect(&url).await;
    for file in migration_files() {
        let sql = std::fs::read_to_string(&file).expect("read migration");
        client
            .batch_execute(&sql)
            .await
            .unwrap_or_else(|error| panic!("{} failed: {error:?}", file.display()));
    }
    (url, client)
}

async fn lines(client: &Client, sql: &str) -> Vec<String> {
    client
        .query(sql, &[])
        .await
        .unwrap_or_else(|error| panic!("catalog query failed: {error:?}\n{sql}"))
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

/// Tables (in creation order), columns, constraints and indexes of the current schema, one
/// line each, so that two databases compare with a readable diff.
#[derive(Debug, PartialEq)]
struct Catalog {
    tables: Vec<String>,
    columns: Vec<String>,
    constraints: Vec<String>,
    indexes: Vec<String>,
}

async fn catalog(client: &Client) -> Catalog {
    let tables = lines(
        client,
        "SELECT c.relname::text FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' ORDER BY c.oid",
    )
    .await;
    let columns = lines(
        client,
        "SELECT c.relname || '.' || a.attname || ' #' || a.attnum || ' ' \
             || pg_catalog.format_type(a.atttypid, a.atttypmod) \
             || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE ' NULL' END \
             || COALESCE(' DEFAULT ' || pg_catalog.pg_get_expr(d.adbin, d.adrelid), '') \
             || CASE WHEN a.attidentity <> '' THEN ' IDENTITY ' || a.attidentity::text ELSE '' END \
             || CASE WHEN a.attgenerated <> '' THEN ' GENERATED' ELSE '' END \
         FROM pg_catalog.pg_attribute a \
         JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
         LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
         WHERE n.nspname = current_schema() AND c.relkind = 'r' \
           AND a.attnum > 0 AND NOT a.attisdropped \
         ORDER BY c.relname, a.attnum",
    )
    .await;
    let constraints = lines(
        client,
        "SELECT c.relname || ' ' || k.conname || ' (' || k.contype::text || ') ' \
             || pg_catalog.pg_get_constraintdef(k.oid) \
         FROM pg_catalog.pg_constraint k \
         JOIN pg_catalog.pg_class c ON c.oid = k.conrelid \
         JOIN pg_catalog.pg_namespace n ON n.oid = k.connamespace \
         WHERE n.nspname = current_schema() ORDER BY 1",
    )
    .await;
    let indexes = lines(
        client,
        "SELECT tablename || ' ' || indexname || ': ' || indexdef FROM pg_catalog.pg_indexes \
         WHERE schemaname = current_schema() ORDER BY 1",
    )
    .await;
    Catalog {
        tables,
        columns,
        constraints,
        indexes,
    }
}

#[tokio::test]
async fn migrations_build_the_catalog_run_migrations_builds() {
    let schema = database_rate_limit_schema();
    let (sql_url, sql_client) = migrated_database("codegen_sql_ddl").await;

    let core_url = support::fresh_database("codegen_core_ddl").await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&core_url, schema.clone())
        .await
        .expect("connect");
    adapter
        .run_migrations(&schema)
        .await
        .expect("run_migrations");
    let core_client = support::connect(&core_url).await;

    let from_sql = catalog(&sql_client).await;
    let from_core = catalog(&core_client).await;
    assert_eq!(
        from_sql.tables,
        [
            "users",
            "sessions",
            "accounts",
            "verifications",
            "rate_limits"
        ],
        "migrations/ creates the five core tables in core's order"
    );
    assert_eq!(from_sql.tables, from_core.tables, "tables");
    assert_eq!(from_sql.columns, from_core.columns, "columns");
    assert_eq!(from_sql.constraints, from_core.constraints, "constraints");
    assert_eq!(from_sql.indexes, from_core.indexes, "indexes");
    assert!(
        from_sql
            .indexes
            .iter()
            .any(|line| line.starts_with("verifications idx_verifications_expires_at: ")),
        "the cleanup index exists: {:#?}",
        from_sql.indexes
    );

    // Our own planner sees the SQL-migrated database as up to date.
    let on_sql = TokioPostgresAdapter::connect_with_schema(&sql_url, schema.clone())
        .await
        .expect("connect");
    let plan = on_sql.plan_migrations(&schema).await.expect("plan");
    assert!(plan.is_empty(), "no statement left to run: {plan:#?}");
    assert!(!plan.has_warnings(), "no warning: {plan:#?}");
}

/// A fixed instant `seconds` after 2023-11-14T22:13:20Z (whole seconds survive `timestamptz`).
fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_700_000_000 + seconds).expect("timestamp")
}

/// The statement handle `$make`, prepared on `$client` when `$prepared`.
macro_rules! handle {
    ($client:expr, $prepared:expr, $make:expr) => {{
        let statement = $make;
        let statement = if $prepared {
            statement.prepare($client).await.expect("prepare")
        } else {
            statement
        };
        assert_eq!(statement.statement().is_some(), $prepared);
        assert!(statement.sql().contains('$'), "{}", statement.sql());
        statement
    }};
}

/// Runs every generated statement once through the flows of behaviour.md §9, asserting each
/// result. `tag` keeps the rows of several runs apart. With `check_unique`, ends with a
/// duplicate-email insert, which fails (and so aborts an enclosing transaction).
async fn exercise<C: GenericClient>(client: &C, prepared: bool, tag: &str, check_unique: bool) {
    let user_id = format!("{tag}-user");
    let email = format!("{tag}@example.com");
    let (t0, t1) = (at(0), at(60));

    // Users.
    let insert_user = handle!(client, prepared, insert_user());
    let inserted = insert_user
        .bind(
            client,
            &user_id.as_str(),
            &"Ada",
            &email.as_str(),
            &false,
            &Some("https://example.com/ada.png"),
            &t0,
            &t0,
        )
        .one()
        .await
        .expect("insert user");
    assert_eq!(inserted, user_id);
    let mut user = User {
        id: user_id.clone(),
        name: "Ada".to_owned(),
        email: email.clone(),
        email_verified: false,
        image: Some("https://example.com/ada.png".to_owned()),
        created_at: t0,
        updated_at: t0,
    };
    let by_id = handle!(client, prepared, user_by_id());
    assert_eq!(
        by_id.bind(client, &user_id.as_str()).opt().await.unwrap(),
        Some(user.clone())
    );
    assert_eq!(by_id.bind(client, &"nobody").opt().await.unwrap(), None);
    let by_email = handle!(client, prepared, user_by_email());
    assert_eq!(
        by_email.bind(client, &email.as_str()).one().await.unwrap(),
        user
    );
    assert_eq!(
        by_email
            .bind(client, &"NOBODY@example.com")
            .opt()
            .await
            .unwrap(),
        None
    );

    // The sign-in join: one row without accounts, then one row per account in id order.
    let with_accounts = handle!(client, prepared, user_by_email_with_accounts());
    let lonely = with_accounts
        .bind(client, &email.as_str())
        .all()
        .await
        .unwrap();
    assert_eq!(lonely.len(), 1, "{lonely:#?}");
    assert_eq!(lonely[0].id, user_id);
    assert_eq!(lonely[0].account_id, None);
    assert_eq!(lonely[0].account_created_at, None);

    let insert_account = handle!(client, prepared, insert_account());
    let credential_id = format!("{tag}-account-b");
    let github_id = format!("{tag}-account-a");
    let inserted = insert_account
        .bind(
            client,
            &credential_id.as_str(),
            &user_id.as_str(),
            &"credential",
            &user_id.as_str(),
            &None::<&str>,
            &None::<&str>,
            &None::<&str>,
            &None,
            &None,
            &None::<&str>,
            &Some("hash-1"),
            &t0,
            &t0,
        )
        .one()
        .await
        .expect("insert credential account");
    assert_eq!(inserted, credential_id);
    insert_account
        .bind(
            client,
            &github_id.as_str(),
            &"gh-42",
            &"github",
            &user_id.as_str(),
            &Some("access"),
            &Some("refresh"),
            &Some("id-token"),
            &Some(t1),
            &Some(at(120)),
            &Some("read:user"),
            &None::<&str>,
            &t1,
            &t1,
        )
        .one()
        .await
        .expect("insert github account");
    let joined = with_accounts
        .bind(client, &email.as_str())
        .all()
        .await
        .unwrap();
    let account_ids = joined
        .iter()
        .map(|row| row.account_id.clone())
        .collect::<Vec<_>>();
    assert_eq!(
        account_ids,
        [Some(github_id.clone()), Some(credential_id.clone())]
    );
    assert!(joined.iter().all(|row| row.id == user_id
        && row.email == email
        && row.account_user_id.as_deref() == Some(user_id.as_str())));
    let github = &joined[0];
    assert_eq!(
        (
            github.account_account_id.as_deref(),
            github.account_provider_id.as_deref(),
            github.account_access_token.as_deref(),
            github.account_refresh_token.as_deref(),
            github.account_id_token.as_deref(),
            github.account_access_token_expires_at,
            github.account_refresh_token_expires_at,
            github.account_scope.as_deref(),
            github.account_password.as_deref(),
            github.account_created_at,
            github.account_updated_at,
        ),
        (
            Some("gh-42"),
            Some("github"),
            Some("access"),
            Some("refresh"),
            Some("id-token"),
            Some(t1),
            Some(at(120)),
            Some("read:user"),
            None,
            Some(t1),
            Some(t1),
        )
    );
    let credential: &UserWithAccount = &joined[1];
    assert_eq!(credential.account_password.as_deref(), Some("hash-1"));
    assert_eq!(credential.account_access_token, None);
    assert_eq!(
        with_accounts
            .bind(client, &"nobody@example.com")
            .all()
            .await
            .unwrap(),
        Vec::<UserWithAccount>::new()
    );

    // Password reset: one account of the user and provider, returned as stored.
    let update_password = handle!(client, prepared, update_account_password());
    let updated = update_password
        .bind(client, &"hash-2", &t1, &user_id.as_str(), &"credential")
        .opt()
        .await
        .unwrap();
    assert_eq!(
        updated,
        Some(Account {
            id: credential_id.clone(),
            account_id: user_id.clone(),
            provider_id: "credential".to_owned(),
            user_id: user_id.clone(),
            access_token: None,
            refresh_token: None,
            id_token: None,
            access_token_expires_at: None,
            refresh_token_expires_at: None,
            scope: None,
            password: Some("hash-2".to_owned()),
            created_at: t0,
            updated_at: t1,
        })
    );
    assert_eq!(
        update_password
            .bind(client, &"hash-3", &t1, &user_id.as_str(), &"gitlab")
            .opt()
            .await
            .unwrap(),
        None
    );

    // Email verification.
    let verify = handle!(client, prepared, set_user_email_verified());
    user.email_verified = true;
    user.updated_at = t1;
    assert_eq!(
        verify
            .bind(client, &true, &t1, &user_id.as_str())
            .opt()
            .await
            .unwrap(),
        Some(user.clone())
    );
    assert_eq!(
        verify
            .bind(client, &true, &t1, &"nobody")
            .opt()
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        by_id.bind(client, &user_id.as_str()).one().await.unwrap(),
        user
    );

    // Sessions.
    let insert_session = handle!(client, prepared, insert_session());
    let mut sessions = Vec::new();
    for index in 1..=2 {
        let session = Session {
            id: format!("{tag}-session-{index}"),
            expires_at: at(3600 * index),
            token: format!("{tag}-token-{index}"),
            created_at: t0,
            updated_at: t0,
            ip_address: (index == 1).then(|| "127.0.0.1".to_owned()),
            user_agent: (index == 2).then(|| "test-agent".to_owned()),
            user_id: user_id.clone(),
        };
        let inserted = insert_session
            .bind(
                client,
                &session.id.as_str(),
                &session.expires_at,
                &session.token.as_str(),
                &session.created_at,
                &session.updated_at,
                &session.ip_address.as_deref(),
                &session.user_agent.as_deref(),
                &session.user_id.as_str(),
            )
            .one()
            .await
            .expect("insert session");
        assert_eq!(inserted, session.id);
        sessions.push(session);
    }
    let by_token = handle!(client, prepared, session_by_token());
    assert_eq!(
        by_token
            .bind(client, &sessions[0].token.as_str())
            .opt()
            .await
            .unwrap(),
        Some(sessions[0].clone())
    );
    assert_eq!(
        by_token.bind(client, &"no-token").opt().await.unwrap(),
        None
    );
    let of_user = handle!(client, prepared, sessions_by_user_id());
    let mut listed = of_user.bind(client, &user_id.as_str()).all().await.unwrap();
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(listed, sessions);

    let refresh = handle!(client, prepared, update_session_expiry());
    let mut refreshed = sessions[0].clone();
    refreshed.expires_at = at(7200);
    refreshed.updated_at = t1;
    assert_eq!(
        refresh
            .bind(client, &at(7200), &t1, &sessions[0].token.as_str())
            .opt()
            .await
            .unwrap(),
        Some(refreshed.clone())
    );
    assert_eq!(
        refresh
            .bind(client, &at(7200), &t1, &"no-token")
            .opt()
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        by_token
            .bind(client, &sessions[0].token.as_str())
            .one()
            .await
            .unwrap(),
        refreshed
    );

    let sign_out = handle!(client, prepared, delete_session_by_token());
    assert_eq!(
        sign_out
            .bind(client, &sessions[0].token.as_str())
            .opt()
            .await
            .unwrap(),
        Some(sessions[0].id.clone())
    );
    assert_eq!(
        sign_out
            .bind(client, &sessions[0].token.as_str())
            .opt()
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        by_token
            .bind(client, &sessions[0].token.as_str())
            .opt()
            .await
            .unwrap(),
        None
    );
    let revoke = handle!(client, prepared, delete_sessions_by_user_id());
    assert_eq!(
        revoke.bind(client, &user_id.as_str()).all().await.unwrap(),
        [sessions[1].id.clone()]
    );
    assert!(of_user
        .bind(client, &user_id.as_str())
        .all()
        .await
        .unwrap()
        .is_empty());

    // Verifications: newest by identifier, cleanup of expired rows, single-row delete.
    let identifier = format!("reset-password:{tag}");
    let insert_verification = handle!(client, prepared, insert_verification());
    let rows = [
        (
            format!("{tag}-verification-old"),
            identifier.as_str(),
            at(-30),
            t0,
        ),
        (
            format!("{tag}-verification-new"),
            identifier.as_str(),
            at(-20),
            t1,
        ),
        (
            format!("{tag}-verification-gone"),
            "other",
            at(-40),
            at(-10),
        ),
    ];
    let mut verifications = Vec::new();
    for (id, identifier, created_at, expires_at) in &rows {
        let expires_at = if id.ends_with("gone") {
            *expires_at
        } else {
            at(3600)
        };
        let inserted = insert_verification
            .bind(
                client,
                &id.as_str(),
                identifier,
                &user_id.as_str(),
                &expires_at,
                created_at,
                created_at,
            )
            .one()
            .await
            .expect("insert verification");
        assert_eq!(&inserted, id);
        verifications.push(Verification {
            id: id.clone(),
            identifier: (*identifier).to_owned(),
            value: user_id.clone(),
            expires_at,
            created_at: *created_at,
            updated_at: *created_at,
        });
    }
    let newest = handle!(client, prepared, newest_verification_by_identifier());
    assert_eq!(
        newest
            .bind(client, &identifier.as_str())
            .opt()
            .await
            .unwrap(),
        Some(verifications[1].clone())
    );
    assert_eq!(
        newest
            .bind(client, &"reset-password:none")
            .opt()
            .await
            .unwrap(),
        None
    );
    let cleanup = handle!(client, prepared, delete_expired_verifications());
    assert_eq!(
        cleanup.bind(client, &t0).all().await.unwrap(),
        [verifications[2].id.clone()]
    );
    assert!(cleanup.bind(client, &t0).all().await.unwrap().is_empty());
    let delete_one = handle!(client, prepared, delete_verification_by_identifier());
    let first = delete_one
        .bind(client, &identifier.as_str())
        .all()
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "one row per delete: {first:?}");
    let survivor = newest
        .bind(client, &identifier.as_str())
        .one()
        .await
        .unwrap();
    assert_ne!(survivor.id, first[0]);
    assert_eq!(
        delete_one
            .bind(client, &identifier.as_str())
            .all()
            .await
            .unwrap(),
        [survivor.id]
    );
    assert!(delete_one
        .bind(client, &identifier.as_str())
        .all()
        .await
        .unwrap()
        .is_empty());

    // Rate limit: behaviour.md §7's example, window 10 s, max 2 (bind order: key, now, window, max).
    let consume = handle!(client, prepared, consume_rate_limit());
    let key = format!("{tag}|/sign-in/email");
    let steps = [
        (1000, (true, 1, 1000)),
        (1001, (true, 2, 1001)),
        (1002, (false, 2, 1001)),
        (1500, (false, 2, 1001)),
        (12001, (true, 1, 12001)),
    ];
    for (now_ms, (permitted, count, last_request)) in steps {
        let outcome = consume
            .bind(client, &key.as_str(), &now_ms, &10_000, &2)
            .opt()
            .await
            .unwrap();
        assert_eq!(
            outcome,
            Some(RateLimitConsumed {
                permitted,
                count,
                last_request
            }),
            "consume at {now_ms}"
        );
    }
    let other_key = format!("{tag}|/get-session");
    assert_eq!(
        consume
            .bind(client, &other_key.as_str(), &1002, &10_000, &2)
            .one()
            .await
            .unwrap(),
        RateLimitConsumed {
            permitted: true,
            count: 1,
            last_request: 1002
        }
    );

    if check_unique {
        let error = insert_user
            .bind(
                client,
                &format!("{tag}-other").as_str(),
                &"Eve",
                &email.as_str(),
                &false,
                &None::<&str>,
                &t0,
                &t0,
            )
            .one()
            .await
            .expect_err("a second user with the same email");
        assert_eq!(error.code(), Some(&SqlState::UNIQUE_VIOLATION), "{error:?}");
    }
}

async fn count(client: &Client, table: &str) -> i64 {
    client
        .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
        .await
        .expect("count")
        .get(0)
}

#[tokio::test]
async fn generated_statements_run_on_a_plain_client() {
    let (_url, client) = migrated_database("codegen_client").await;
    exercise(&client, true, "prepared", true).await;
    exercise(&client, false, "unprepared", true).await;
    assert_eq!(count(&client, "users").await, 2);
    assert_eq!(count(&client, "accounts").await, 4);
    assert_eq!(count(&client, "rate_limits").await, 4);
}

#[tokio::test]
async fn generated_statements_run_inside_a_transaction() {
    let (_url, mut client) = migrated_database("codegen_transaction").await;

    let transaction = client.transaction().await.expect("begin");
    exercise(&transaction, true, "committed", false).await;
    transaction.commit().await.expect("commit");
    assert_eq!(count(&client, "users").await, 1);
    assert_eq!(count(&client, "accounts").await, 2);
    assert_eq!(count(&client, "verifications").await, 0);
    assert_eq!(count(&client, "rate_limits").await, 2);

    // The duplicate email at the end aborts this one; nothing of it survives the rollback.
    let transaction = client.transaction().await.expect("begin");
    exercise(&transaction, false, "rolled-back", true).await;
    transaction.rollback().await.expect("rollback");
    assert_eq!(count(&client, "users").await, 1);
    assert_eq!(count(&client, "accounts").await, 2);
    assert_eq!(count(&client, "rate_limits").await, 2);
}

/// Seeds 10 000 rows into every core table (a few verifications expired) and refreshes the
/// planner's statistics.
async fn seed(client: &Client) {
    client
        .batch_execute(
            "INSERT INTO users (id, name, email, email_verified, image, created_at, updated_at) \
             SELECT 'user-' || i, 'User ' || i, 'user' || i || '@example.com', i % 2 = 0, NULL, \
                    now(), now() \
             FROM generate_series(1, 10000) AS i; \
             INSERT INTO accounts (id, account_id, provider_id, user_id, password, created_at, \
                    updated_at) \
             SELECT 'account-' || i, 'user-' || i, 'credential', 'user-' || i, 'hash', now(), \
                    now() \
             FROM generate_series(1, 10000) AS i; \
             INSERT INTO sessions (id, expires_at, token, created_at, updated_at, user_id) \
             SELECT 'session-' || i, now() + interval '7 days', 'token-' || i, now(), now(), \
                    'user-' || i \
             FROM generate_series(1, 10000) AS i; \
             INSERT INTO verifications (id, identifier, value, expires_at, created_at, \
                    updated_at) \
             SELECT 'verification-' || i, 'reset-password:' || i, 'user-' || i, \
                    CASE WHEN i <= 10 THEN now() - interval '1 hour' \
                         ELSE now() + interval '1 hour' END, now(), now() \
             FROM generate_series(1, 10000) AS i; \
             INSERT INTO rate_limits (key, count, last_request) \
             SELECT '127.0.0.1|/path-' || i, 1, 0 FROM generate_series(1, 10000) AS i; \
             ANALYZE;",
        )
        .await
        .expect("seed");
}

async fn plan(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> String {
    client
        .query(&format!("EXPLAIN {sql}"), params)
        .await
        .unwrap_or_else(|error| panic!("EXPLAIN failed: {error:?}\n{sql}"))
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn typed_lookups_use_indexes_on_big_tables() {
    let (_url, client) = migrated_database("codegen_explain").await;
    seed(&client).await;
    let now = OffsetDateTime::now_utc();
    let lookups: Vec<(&str, &str, Vec<&(dyn ToSql + Sync)>)> = vec![
        ("user_by_id", user_by_id().sql(), vec![&"user-5000"]),
        (
            "user_by_email",
            user_by_email().sql(),
            vec![&"user5000@example.com"],
        ),
        (
            "user_by_email_with_accounts",
            user_by_email_with_accounts().sql(),
            vec![&"user5000@example.com"],
        ),
        (
            "set_user_email_verified",
            set_user_email_verified().sql(),
            vec![&true, &now, &"user-5000"],
        ),
        (
            "session_by_token",
            session_by_token().sql(),
            vec![&"token-5000"],
        ),
        (
            "sessions_by_user_id",
            sessions_by_user_id().sql(),
            vec![&"user-5000"],
        ),
        (
            "update_session_expiry",
            update_session_expiry().sql(),
            vec![&now, &now, &"token-5000"],
        ),
        (
            "delete_session_by_token",
            delete_session_by_token().sql(),
            vec![&"token-5000"],
        ),
        (
            "delete_sessions_by_user_id",
            delete_sessions_by_user_id().sql(),
            vec![&"user-5000"],
        ),
        (
            "update_account_password",
            update_account_password().sql(),
            vec![&"hash-2", &now, &"user-5000", &"credential"],
        ),
        (
            "newest_verification_by_identifier",
            newest_verification_by_identifier().sql(),
            vec![&"reset-password:5000"],
        ),
        (
            "delete_verification_by_identifier",
            delete_verification_by_identifier().sql(),
            vec![&"reset-password:5000"],
        ),
        (
            "delete_expired_verifications",
            delete_expired_verifications().sql(),
            vec![&now],
        ),
        (
            "consume_rate_limit",
            consume_rate_limit().sql(),
            vec![&"127.0.0.1|/path-5000", &1_000_i64, &10_000_i64, &2_i64],
        ),
    ];
    let mut failures = Vec::new();
    for (name, sql, params) in &lookups {
        let plan = plan(&client, sql, params).await;
        if plan.contains("Seq Scan") || !plan.contains("Index") {
            failures.push(format!("{name}:\n{plan}"));
        }
    }
    assert!(
        failures.is_empty(),
        "typed lookups planned without an index:\n{}",
        failures.join("\n\n")
    );
}

/// The fingerprints `build.rs` and `codegen/` share. `fingerprint::generator` is only needed
/// here and by `codegen/` (the build script checks what the published package contains).
#[path = "../../build/fingerprint.rs"]
#[allow(dead_code)] // the parts only `codegen/` writes with (`Fingerprints::line`, …)
mod fingerprint;

/// A change to the generator (`codegen/`, or the fingerprint code itself) without regenerating
/// `src/generated/` is caught here: the build script cannot watch `codegen/`, which a published
/// crate does not contain.
#[test]
fn the_generator_is_the_one_that_made_src_generated() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let (_, line) = fingerprint::committed(root).expect("read src/generated/");
    let recorded = fingerprint::Fingerprints::parse(&line).expect("fingerprint line");
    let generator = fingerprint::generator(root)
        .expect("hash codegen/")
        .expect("the repository has codegen/");
    assert_eq!(
        recorded.generator.as_deref(),
        Some(generator.as_str()),
        "src/generated/ is stale: the generator (codegen/) changed since it was generated; \
         regenerate with: {}",
        fingerprint::REGENERATE
    );
}

/// The one description of the core tables (`layout::core_tables!`, from which the typed
/// path's row mappers and insert binders follow) is `migrations/`: every column in order, with
/// its type and nullability.
#[tokio::test]
async fn the_core_table_description_is_what_migrations_create() {
    let (_url, client) = migrated_database("layout_matches").await;
    for table in CoreTable::ALL {
        let rows = client
            .query(
                "SELECT a.attname::text, a.atttypid, NOT a.attnotnull \
                 FROM pg_catalog.pg_attribute a \
                 WHERE a.attrelid = $1::text::regclass AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&table.table()],
            )
            .await
            .expect("columns");
        let live = rows
            .iter()
            .map(|row| {
                let oid: u32 = row.get(1);
                (row.get::<_, String>(0), oid, row.get::<_, bool>(2))
            })
            .collect::<Vec<_>>();
        let described = table
            .columns()
            .iter()
            .map(|column| {
                let nullable = table.nullable(column.name).expect("described column");
                (column.name.to_owned(), column.ty.oid(), nullable)
            })
            .collect::<Vec<_>>();
        assert_eq!(described, live, "{}", table.table());
    }
}
