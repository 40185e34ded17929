//! The adapter behind PgBouncer in transaction mode.
//!
//! Every test starts its own PgBouncer (`support::pgbouncer`): transaction pooling, trust
//! auth, a `*` entry forwarding any database to the test server, and a small pool (2 server
//! connections per database by default) so that server connections really are shared by the
//! client connections of a test. With `statement_mode=unprepared` everything must work —
//! migrations, the core adapter contract, RustAuth's routes with the SQL rate-limit store,
//! transactions, and many concurrent callers. In the default prepared mode a named statement
//! prepared on one server connection is eventually looked up on another (where it is missing,
//! or where another process's statement has the same name), and every such failure must tell
//! the user about `statement_mode=unprepared`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::{self, schema, text, user_count};
use crate::support;

use support::app::{self, json};

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use http::{Method, Response, StatusCode};
use rustauth_core::api::AuthRouter;
use rustauth_core::db::adapter_harness::run_adapter_contract;
use rustauth_core::db::{
    Count, Create, DbAdapter, DbRecord, DbValue, Delete, FindMany, FindOne, Update, Where,
};
use rustauth_core::error::RustAuthError;
use rustauth_core::test_utils::fast_verify_password;
use rustauth_tokio_postgres::{TokioPostgresAdapter, TokioPostgresStores};
use serde_json::Value;
use support::pgbouncer::{self, PgBouncer, Settings};
use time::OffsetDateTime;
use tokio_postgres::NoTls;

/// What every failure of prepared mode behind the pooler must mention.
const HINT: &str = "statement_mode=unprepared";

/// `url` with `statement_mode=unprepared` added to its query string.
fn unprepared(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}statement_mode=unprepared")
}

/// The database name of a URL.
fn database_of(url: &str) -> String {
    url.parse::<tokio_postgres::Config>()
        .expect("url")
        .get_dbname()
        .expect("dbname")
        .to_owned()
}

fn message(error: &RustAuthError) -> String {
    match error {
        RustAuthError::Adapter(message) => message.clone(),
        other => other.to_string(),
    }
}

fn string_field<'a>(record: &'a DbRecord, field: &str) -> &'a str {
    match record.get(field) {
        Some(DbValue::String(value)) => value,
        other => panic!("field `{field}` is not a string: {other:?}"),
    }
}

/// A fresh database, and its URL through `bouncer` in unprepared mode.
async fn fresh_through(bouncer: &PgBouncer, label: &str) -> (String, String) {
    let direct = support::fresh_database(label).await;
    let pooled = unprepared(&bouncer.url_for(&direct));
    (direct, pooled)
}

/// An unprepared-mode adapter through the pooler.
async fn pooled_adapter(url: &str) -> TokioPostgresAdapter {
    TokioPostgresAdapter::connect_with_schema(url, schema())
        .await
        .unwrap_or_else(|error| panic!("connect through pgbouncer: {error}"))
}

/// Client and server connections PgBouncer has for `database`: (clients, servers).
async fn pool_usage(bouncer: &PgBouncer, database: &str) -> (usize, usize) {
    let clients = bouncer.admin_rows_for("CLIENTS", database).await.len();
    let servers = bouncer.admin_rows_for("SERVERS", database).await.len();
    (clients, servers)
}

// ---------------------------------------------------------------------------------------------
// The pooler itself

/// The setup is what the other tests rely on: transaction pooling really multiplexes many
/// client connections over at most `pool_size` server connections, so session state (named
/// prepared statements) does not follow a client.
#[tokio::test]
async fn setup_transaction_pooling_shares_two_server_connections_among_clients() {
    let (version_line, version) = pgbouncer::version();
    eprintln!(
        "pgbouncer: {version_line}; max_prepared_statements supported: {}",
        pgbouncer::supports_max_prepared_statements()
    );
    assert_eq!(
        pgbouncer::supports_max_prepared_statements(),
        version >= (1, 21)
    );
    let bouncer = PgBouncer::start().await;
    eprintln!("pgbouncer.ini:\n{}", bouncer.config_text());
    assert!(bouncer.config_text().contains("pool_mode = transaction"));
    assert_eq!(bouncer.settings().pool_size, 2);
    if pgbouncer::supports_max_prepared_statements() {
        assert!(bouncer
            .config_text()
            .contains("max_prepared_statements = 0"));
    }

    let direct = support::fresh_database("pgb_setup").await;
    let url = bouncer.url_for(&direct);
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|error| panic!("raw client through pgbouncer: {error}"));
        tokio::spawn(connection);
        clients.push(client);
    }
    let mut backends = BTreeSet::new();
    for round in 0..10 {
        // All four at once, so that they need more than one server connection.
        let pids = futures_util::future::join_all(clients.iter().map(|client| async move {
            let row = client
                .query_typed_one("SELECT pg_backend_pid(), pg_sleep(0.01)::text", &[])
                .await
                .unwrap_or_else(|error| panic!("round {round}: {error}"));
            row.get::<_, i32>(0)
        }))
        .await;
        backends.extend(pids);
    }
    assert!(
        !backends.is_empty() && backends.len() <= 2,
        "4 clients used at most 2 server connections: {backends:?}"
    );
    let (client_count, server_count) = pool_usage(&bouncer, &database_of(&direct)).await;
    assert_eq!(client_count, 4, "4 client connections");
    assert!(
        (1..=2).contains(&server_count),
        "{server_count} server connections"
    );
}

/// tokio-postgres sends only `client_encoding`, `user` and `database` at startup (no
/// `options`, no `application_name` unless configured), which PgBouncer accepts with an
/// empty `ignore_startup_parameters`; a URL that does set `options` is refused by that same
/// PgBouncer, which shows the list is really enforced.
#[tokio::test]
async fn startup_parameters_need_no_ignore_list() {
    let bouncer = PgBouncer::start_with(Settings {
        ignore_startup_parameters: String::new(),
        ..Settings::default()
    })
    .await;
    assert!(bouncer
        .config_text()
        .contains("ignore_startup_parameters = \n"));
    let direct = support::fresh_database("pgb_startup").await;
    let url = bouncer.url_for(&direct);

    for adapter_url in [unprepared(&url), url.clone()] {
        let adapter = TokioPostgresAdapter::connect_with_schema(&adapter_url, schema())
            .await
            .unwrap_or_else(|error| panic!("adapter connect without ignore list: {error}"));
        let plan = adapter
            .compile_migrations(&schema())
            .await
            .unwrap_or_else(|error| panic!("a first statement through the pooler: {error}"));
        assert!(plan.contains("CREATE TABLE"), "{plan}");
    }

    let with_options = format!("{url}?options=-c%20statement_timeout%3D5000");
    let refused = tokio_postgres::connect(&with_options, NoTls).await;
    let error = match refused {
        Ok(_) => panic!("pgbouncer accepted the `options` startup parameter"),
        Err(error) => error
            .as_db_error()
            .map(|db| db.message().to_owned())
            .unwrap_or_else(|| format!("{error:?}")),
    };
    assert!(
        error.contains("unsupported startup parameter"),
        "refused for the expected reason: {error}"
    );
}

// ---------------------------------------------------------------------------------------------
// Unprepared mode: everything works

/// Migrations (BEGIN, a transaction-scoped advisory lock, DDL, COMMIT; catalog reads with
/// `query_typed`) and then rustauth-core's whole adapter contract, all through the pooler.
#[tokio::test]
async fn unprepared_migrations_and_core_contract_through_pgbouncer() {
    let bouncer = PgBouncer::start().await;
    let (direct, pooled) = fresh_through(&bouncer, "pgb_contract").await;
    let adapter = pooled_adapter(&pooled).await;

    let created = adapter
        .create_schema(&schema(), None)
        .await
        .unwrap_or_else(|error| panic!("migrations through pgbouncer: {error}"));
    assert!(created.is_none());
    assert_eq!(
        adapter
            .compile_migrations(&schema())
            .await
            .expect("plan after migrating")
            .trim(),
        ";",
        "the migration is complete: nothing left to do"
    );
    // A second run through the pooler is a no-op, not an error.
    adapter
        .create_schema(&schema(), None)
        .await
        .unwrap_or_else(|error| panic!("second migration through pgbouncer: {error}"));

    // A second client connection, so that the contract's calls interleave with another
    // client's on the two server connections.
    let other = pooled_adapter(&pooled).await;
    let noise = async {
        for _ in 0..20 {
            other.count(Count::new("user")).await.expect("noise count");
            tokio::task::yield_now().await;
        }
    };
    let (contract, ()) = tokio::join!(run_adapter_contract(&adapter), noise);
    contract.unwrap_or_else(|error| panic!("core adapter contract through pgbouncer: {error}"));

    assert_eq!(user_count(&adapter).await, 7, "users the contract leaves");
    assert_eq!(adapter.count(Count::new("session")).await.unwrap(), 1);
    assert_eq!(adapter.count(Count::new("account")).await.unwrap(), 1);
    assert_eq!(adapter.count(Count::new("verification")).await.unwrap(), 0);
    assert_eq!(
        adapter.typed_call_count(),
        0,
        "generated (named) statements are never used in unprepared mode"
    );
    assert_eq!(
        adapter.connection().cached_statement_count(),
        0,
        "no statement is kept prepared in unprepared mode"
    );

    // What the contract wrote is really in the database (read without the pooler).
    let raw = support::connect(&direct).await;
    let users: i64 = raw
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count directly")
        .get(0);
    assert_eq!(users, 7);
    let (clients, servers) = pool_usage(&bouncer, &database_of(&direct)).await;
    assert_eq!(clients, 2, "two client connections");
    assert!(servers <= 2, "{servers} server connections");
}

/// Commit and rollback (callback error, failed statement) through the pooler, while a second
/// client keeps using the other server connection.
#[tokio::test]
async fn unprepared_transactions_commit_and_roll_back_through_pgbouncer() {
    let bouncer = PgBouncer::start().await;
    let (_direct, pooled) = fresh_through(&bouncer, "pgb_tx").await;
    let adapter = pooled_adapter(&pooled).await;
    adapter
        .create_schema(&schema(), None)
        .await
        .expect("migrate");
    let other = Arc::new(pooled_adapter(&pooled).await);

    // Commit: visible afterwards to the other client; not visible to it before COMMIT even
    // though it runs on the same two server connections meanwhile.
    let other_ref = Arc::clone(&other);
    adapter
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(ada("c1")).await?;
                tx.create(ada("c2")).await?;
                assert_eq!(tx.count(Count::new("user")).await?, 2, "visible inside");
                assert_eq!(
                    user_count(other_ref.as_ref()).await,
                    0,
                    "another client does not see uncommitted rows"
                );
                let found = tx
                    .find_one(FindOne::new("user").where_clause(Where::new("id", text("c1"))))
                    .await?;
                assert!(found.is_some());
                Ok(())
            })
        }))
        .await
        .unwrap_or_else(|error| panic!("commit through pgbouncer: {error}"));
    assert_eq!(
        user_count(other.as_ref()).await,
        2,
        "committed rows are visible"
    );

    // Rollback on the callback's error.
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(ada("r1")).await?;
                tx.update(
                    Update::new("user")
                        .where_clause(Where::new("id", text("c1")))
                        .data("name", text("changed")),
                )
                .await?;
                Err(RustAuthError::Api("callback failed on purpose".to_owned()))
            })
        }))
        .await;
    assert_eq!(
        result,
        Err(RustAuthError::Api("callback failed on purpose".to_owned()))
    );
    assert_eq!(user_count(other.as_ref()).await, 2, "r1 was rolled back");
    let c1 = other
        .find_one(FindOne::new("user").where_clause(Where::new("id", text("c1"))))
        .await
        .expect("find c1")
        .expect("c1 exists");
    assert_eq!(
        string_field(&c1, "name"),
        "Ada",
        "the update was rolled back"
    );

    // Rollback on a failing statement (duplicate primary key) propagated by `?`.
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(ada("r2")).await?;
                tx.create(ada("c2")).await?;
                Ok(())
            })
        }))
        .await;
    let error = result.expect_err("duplicate key fails the transaction");
    assert!(message(&error).contains("23505"), "{error}");
    assert_eq!(user_count(other.as_ref()).await, 2, "r2 was rolled back");

    // A failed statement whose error the callback swallows: still rolled back, and said so.
    let result = adapter
        .transaction(Box::new(|tx| {
            Box::pin(async move {
                tx.create(ada("r3")).await?;
                let _ = tx.create(ada("c1")).await;
                Ok(())
            })
        }))
        .await;
    assert!(
        result.is_err(),
        "a transaction with a failed statement never reports success"
    );
    assert_eq!(user_count(other.as_ref()).await, 2, "r3 was rolled back");

    // The server connections are clean afterwards: no transaction left open on either.
    for round in 0..6 {
        let (a, b) = tokio::join!(user_count(&adapter), user_count(other.as_ref()));
        assert_eq!((a, b), (2, 2), "round {round}");
    }
    adapter
        .delete(Delete::new("user").where_clause(Where::new("id", text("c2"))))
        .await
        .expect("delete after transactions");
    assert_eq!(user_count(other.as_ref()).await, 1);
}

/// 16 tasks × 50 calls over 4 client connections (4 tasks pipelining on each) and 2 server
/// connections: every call succeeds and the final state adds up.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unprepared_sixteen_tasks_times_fifty_calls_all_succeed() {
    const TASKS: usize = 16;
    const CALLS: usize = 50;
    let bouncer = PgBouncer::start().await;
    let (direct, pooled) = fresh_through(&bouncer, "pgb_concurrency").await;
    let mut adapters = Vec::new();
    for _ in 0..4 {
        adapters.push(Arc::new(pooled_adapter(&pooled).await));
    }
    adapters[0]
        .create_schema(&schema(), None)
        .await
        .expect("migrate");

    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let adapter = Arc::clone(&adapters[task % adapters.len()]);
        tasks.spawn(async move {
            let mut failures = Vec::new();
            // 50 calls: 10 × (create, find_one, update, count, then delete for the users
            // with an odd index or find_many for the others).
            for step in 0..CALLS {
                let id = format!("t{task}_u{}", step / 5);
                let result = match step % 5 {
                    0 => adapter.create(ada(&id)).await.map(|_| ()),
                    1 => adapter
                        .find_one(FindOne::new("user").where_clause(Where::new("id", text(&id))))
                        .await
                        .and_then(|found| {
                            found.map(|_| ()).ok_or_else(|| {
                                RustAuthError::Adapter(format!("{id} not found after create"))
                            })
                        }),
                    2 => adapter
                        .update(
                            Update::new("user")
                                .where_clause(Where::new("id", text(&id)))
                                .data("name", DbValue::String(format!("name {id}"))),
                        )
                        .await
                        .and_then(|updated| {
                            updated
                                .map(|_| ())
                                .ok_or_else(|| RustAuthError::Adapter(format!("{id} not updated")))
                        }),
                    3 => adapter.count(Count::new("user")).await.map(|_| ()),
                    _ if (step / 5) % 2 == 1 => {
                        adapter
                            .delete(Delete::new("user").where_clause(Where::new("id", text(&id))))
                            .await
                    }
                    _ => adapter
                        .find_many(FindMany::new("user").limit(5))
                        .await
                        .map(|_| ()),
                };
                if let Err(error) = result {
                    failures.push(format!("task {task} step {step}: {error}"));
                }
            }
            failures
        });
    }
    let mut failures = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        failures.extend(joined.expect("task panicked"));
    }
    assert!(
        failures.is_empty(),
        "{} failures: {failures:#?}",
        failures.len()
    );

    // Each task created 10 users and deleted the 5 with an odd index.
    let expected = (TASKS * 5) as u64;
    assert_eq!(user_count(adapters[1].as_ref()).await, expected);
    let renamed = adapters[2]
        .find_many(FindMany::new("user"))
        .await
        .expect("list")
        .iter()
        .filter(|record| string_field(record, "name").starts_with("name t"))
        .count();
    assert_eq!(renamed as u64, expected, "every surviving user was updated");
    let (clients, servers) = pool_usage(&bouncer, &database_of(&direct)).await;
    assert_eq!(clients, 4);
    assert!(servers <= 2, "{servers} server connections");
}

// ---------------------------------------------------------------------------------------------
// RustAuth's routes

/// Every request of one client address; the routes rate-limit per address and path.
fn ip(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(203, 0, 113, last))
}

/// A RustAuth router on its own `TokioPostgresStores` (one client connection to the pooler),
/// rate limiting on with the SQL store.
struct App {
    stores: TokioPostgresStores,
    router: AuthRouter,
}

impl App {
    async fn new(url: &str) -> Self {
        let stores = TokioPostgresStores::connect_with_schema(url, schema())
            .await
            .unwrap_or_else(|error| panic!("stores through pgbouncer: {error}"));
        let router = app::router(&stores, app::options());
        Self { stores, router }
    }

    fn adapter(&self) -> &TokioPostgresAdapter {
        self.stores.adapter_ref()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
        cookie: Option<&str>,
        client: IpAddr,
    ) -> Response<Vec<u8>> {
        app::send(&self.router, method, path, body, cookie, client).await
    }

    async fn post(
        &self,
        path: &str,
        body: &str,
        cookie: Option<&str>,
        client: IpAddr,
    ) -> Response<Vec<u8>> {
        self.send(Method::POST, path, body, cookie, client).await
    }
}

/// The `Cookie` header a browser would send back after `response`.
fn cookies(response: &Response<Vec<u8>>) -> String {
    let cookies = app::cookies(response);
    assert!(!cookies.is_empty(), "response sets no cookie");
    cookies
}

fn credentials(email: &str, password: &str) -> String {
    format!(r#"{{"email":"{email}","password":"{password}"}}"#)
}

/// Sign-up, get-session, sign-in, sign-out and password reset with two routers on two client
/// connections taking turns (each step's follow-up goes through the other one), then many
/// sign-ups and sign-ins from both at once, and the SQL rate limit shared by both.
#[tokio::test]
async fn unprepared_routes_through_pgbouncer_with_two_interleaved_apps() {
    let bouncer = PgBouncer::start().await;
    let (direct, pooled) = fresh_through(&bouncer, "pgb_routes").await;
    let a = App::new(&pooled).await;
    a.adapter()
        .create_schema(&schema(), None)
        .await
        .expect("migrate through pgbouncer");
    let b = App::new(&pooled).await;

    // Sign up on A; the session works on B.
    let sign_up = a
        .post(
            "/sign-up/email",
            r#"{"name":"Ada","email":"ada@example.com","password":"secret123"}"#,
            None,
            ip(1),
        )
        .await;
    assert_eq!(sign_up.status(), StatusCode::OK, "{:?}", json(&sign_up));
    let cookie = cookies(&sign_up);
    let session = b
        .send(Method::GET, "/get-session", "", Some(&cookie), ip(2))
        .await;
    assert_eq!(session.status(), StatusCode::OK);
    assert_eq!(json(&session)["user"]["email"], "ada@example.com");

    // Wrong password on B, right one on A.
    let wrong = b
        .post(
            "/sign-in/email",
            &credentials("ada@example.com", "not-the-password"),
            None,
            ip(3),
        )
        .await;
    assert!(
        wrong.status().is_client_error() && wrong.status() != StatusCode::TOO_MANY_REQUESTS,
        "{}",
        wrong.status()
    );
    let sign_in = a
        .post(
            "/sign-in/email",
            &credentials("ada@example.com", "secret123"),
            None,
            ip(3),
        )
        .await;
    assert_eq!(sign_in.status(), StatusCode::OK, "{:?}", json(&sign_in));
    let token = json(&sign_in)["token"].as_str().expect("token").to_owned();
    let stored = b
        .adapter()
        .find_one(FindOne::new("session").where_clause(Where::new("token", text(&token))))
        .await
        .expect("find session");
    assert!(stored.is_some(), "A's new session is visible to B");
    assert_eq!(b.adapter().count(Count::new("session")).await.unwrap(), 2);

    // Sign out on B; the cookie is dead on A.
    let sign_out = b.post("/sign-out", "", Some(&cookie), ip(4)).await;
    assert_eq!(sign_out.status(), StatusCode::OK);
    let after = a
        .send(Method::GET, "/get-session", "", Some(&cookie), ip(4))
        .await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(json(&after), Value::Null, "no session after sign-out");
    assert_eq!(a.adapter().count(Count::new("session")).await.unwrap(), 1);

    // Password reset: requested on A, completed on B, used on A.
    let request_reset = a
        .post(
            "/request-password-reset",
            r#"{"email":"ada@example.com","redirectTo":"/reset"}"#,
            None,
            ip(5),
        )
        .await;
    assert_eq!(request_reset.status(), StatusCode::OK);
    let verifications = b
        .adapter()
        .find_many(FindMany::new("verification"))
        .await
        .expect("verifications");
    assert_eq!(verifications.len(), 1, "{verifications:?}");
    let reset_token = string_field(&verifications[0], "identifier")
        .strip_prefix("reset-password:")
        .expect("reset identifier")
        .to_owned();
    let reset = b
        .post(
            "/reset-password",
            &format!(r#"{{"newPassword":"new-secret123","token":"{reset_token}"}}"#),
            None,
            ip(5),
        )
        .await;
    assert_eq!(reset.status(), StatusCode::OK, "{:?}", json(&reset));
    let account = a
        .adapter()
        .find_one(
            FindOne::new("account").where_clause(Where::new("provider_id", text("credential"))),
        )
        .await
        .expect("find account")
        .expect("credential account");
    assert!(fast_verify_password(string_field(&account, "password"), "new-secret123").unwrap());
    assert_eq!(
        a.adapter().count(Count::new("verification")).await.unwrap(),
        0
    );
    let old = a
        .post(
            "/sign-in/email",
            &credentials("ada@example.com", "secret123"),
            None,
            ip(6),
        )
        .await;
    assert!(old.status().is_client_error(), "{}", old.status());
    let new = b
        .post(
            "/sign-in/email",
            &credentials("ada@example.com", "new-secret123"),
            None,
            ip(6),
        )
        .await;
    assert_eq!(new.status(), StatusCode::OK);

    // Many users at once from both apps: sign-up then sign-in, each from its own address.
    let apps = [&a, &b];
    let flows = (0..12u8).map(|n| {
        let app = apps[usize::from(n % 2)];
        async move {
            let email = format!("user{n}@example.com");
            let body = format!(r#"{{"name":"User {n}","email":"{email}","password":"secret123"}}"#);
            let up = app.post("/sign-up/email", &body, None, ip(100 + n)).await;
            assert_eq!(up.status(), StatusCode::OK, "sign-up {n}: {:?}", json(&up));
            let other = apps[usize::from((n + 1) % 2)];
            let session = other
                .send(
                    Method::GET,
                    "/get-session",
                    "",
                    Some(&cookies(&up)),
                    ip(100 + n),
                )
                .await;
            assert_eq!(
                json(&session)["user"]["email"],
                email.as_str(),
                "session {n}"
            );
            let sign_in = other
                .post(
                    "/sign-in/email",
                    &credentials(&email, "secret123"),
                    None,
                    ip(100 + n),
                )
                .await;
            assert_eq!(sign_in.status(), StatusCode::OK, "sign-in {n}");
        }
    });
    futures_util::future::join_all(flows).await;
    assert_eq!(user_count(a.adapter()).await, 13);

    // The rate limit lives in the database, shared by both apps: 3 sign-ins per 10 s per
    // address, whichever app serves them.
    let body = credentials("ada@example.com", "new-secret123");
    for (attempt, app) in [&a, &b, &a].into_iter().enumerate() {
        let response = app.post("/sign-in/email", &body, None, ip(200)).await;
        assert_eq!(response.status(), StatusCode::OK, "attempt {}", attempt + 1);
    }
    let limited = b.post("/sign-in/email", &body, None, ip(200)).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);

    assert_eq!(
        a.adapter().typed_call_count() + b.adapter().typed_call_count(),
        0,
        "no generated statement ran"
    );
    let (clients, servers) = pool_usage(&bouncer, &database_of(&direct)).await;
    assert_eq!(clients, 2, "two client connections");
    assert!(servers <= 2, "{servers} server connections");
}

// ---------------------------------------------------------------------------------------------
// Prepared mode: fails, and says what to do

/// Records the outcome of one call: `Some(message)` for a failure.
fn failure<T>(result: Result<T, RustAuthError>) -> Option<String> {
    result.err().map(|error| message(&error))
}

/// In the default prepared mode a statement prepared on one server connection is executed on
/// whichever server connection PgBouncer hands out next.
///
/// First deterministically: a raw client holds server connection X in an open transaction,
/// so the adapter prepares its statements on Y (when connecting, and in its first call); then
/// X is released after Y, and
/// PgBouncer (LIFO by default) gives X to the adapter's next call, where the statement does
/// not exist (SQLSTATE 26000). Then two prepared-mode adapters alternate calls, concurrently,
/// for many rounds. At least one call fails, and every failure names `statement_mode=unprepared`.
#[tokio::test]
async fn prepared_mode_through_pgbouncer_fails_with_the_unprepared_hint() {
    let bouncer = PgBouncer::start().await;
    let direct = support::fresh_database("pgb_prepared").await;
    // Tables made without the pooler: only the calls below are under test.
    let setup = TokioPostgresAdapter::connect_with_schema(&direct, schema())
        .await
        .expect("direct adapter");
    setup.create_schema(&schema(), None).await.expect("migrate");
    setup.create(ada("seed")).await.expect("seed user");
    drop(setup);
    let pooled = bouncer.url_for(&direct);
    assert!(!pooled.contains("statement_mode"));

    // One entry per call: `Some(message)` for a failure.
    let mut outcomes: Vec<Option<String>> = Vec::new();

    // Deterministic part.
    let (pin, connection) = tokio_postgres::connect(&pooled, NoTls)
        .await
        .expect("raw client");
    tokio::spawn(connection);
    pin.batch_execute("BEGIN; SELECT 1")
        .await
        .expect("hold a server connection");
    // Connecting prepares (warms) the generated statements: on Y, the only free one.
    let a = TokioPostgresAdapter::connect_with_schema(&pooled, schema())
        .await
        .expect("prepared adapter");
    let by_email =
        || FindOne::new("user").where_clause(Where::new("email", text("seed@example.com")));
    let first = a.find_one(by_email()).await;
    assert!(
        matches!(first, Ok(Some(_))),
        "the first call prepares and runs on the free server connection: {first:?}"
    );
    pin.batch_execute("COMMIT").await.expect("release it");
    let second = a.find_one(by_email()).await;
    let second = failure(second);
    assert!(
        second.is_some(),
        "the statement prepared on one server connection is looked up on the other"
    );
    outcomes.push(second);

    // Two prepared-mode adapters alternating, concurrently, with different calls.
    let b = TokioPostgresAdapter::connect_with_schema(&pooled, schema())
        .await
        .expect("second prepared adapter");
    for round in 0..40 {
        let id = format!("p{round}");
        let (x, y) = tokio::join!(a.find_one(by_email()), b.create(ada(&id)),);
        outcomes.extend([failure(x), failure(y)]);
        let (x, y) = tokio::join!(
            b.find_one(FindOne::new("user").where_clause(Where::new("id", text(&id)))),
            a.count(Count::new("user")),
        );
        outcomes.extend([failure(x), failure(y)]);
        outcomes.push(failure(
            b.update(
                Update::new("user")
                    .where_clause(Where::new("id", text("seed")))
                    .data("name", DbValue::String(format!("round {round}"))),
            )
            .await,
        ));
        outcomes.push(failure(a.find_many(FindMany::new("user").limit(3)).await));
    }
    let failures: Vec<String> = outcomes.iter().flatten().cloned().collect();
    eprintln!(
        "prepared mode through pgbouncer: {} of {} calls failed ({} in the concurrent \
         rounds); first: {:?}",
        failures.len(),
        outcomes.len(),
        outcomes[1..].iter().flatten().count(),
        failures.first()
    );
    assert!(
        !failures.is_empty(),
        "prepared mode cannot work behind the pooler"
    );
    let without_hint: Vec<&String> = failures
        .iter()
        .filter(|message| !message.contains(HINT))
        .collect();
    assert!(
        without_hint.is_empty(),
        "{} of {} failures do not mention {HINT}: {without_hint:#?}",
        without_hint.len(),
        failures.len()
    );
    assert!(
        failures
            .iter()
            .all(|message| message.contains("26000") || message.contains("42P05")),
        "every failure is a missing or duplicate prepared statement: {failures:#?}"
    );
}

/// What a second application process (or this one before a restart) leaves on PgBouncer's
/// server connections in prepared mode: tokio-postgres names statements `s0`, `s1`, … per
/// process, so another process's `s<k>` — a different statement under the same name — sits
/// on the server connection this client's `s<k>` is later bound on. Simulated with SQL
/// `PREPARE s<k>` (the same namespace as protocol-level statements) on server connection X
/// for the names this process will use next, while this adapter prepares on Y; then X is
/// released last and handed to the adapter's next call (LIFO). Every failure that causes —
/// a wrong parameter count (SQLSTATE 08P01) or wrong parameter types (22P03) — must name
/// `statement_mode=unprepared` too, not only 26000/42P05.
#[tokio::test]
async fn prepared_mode_binding_another_processes_statement_fails_with_the_unprepared_hint() {
    let direct = support::fresh_database("pgb_foreign").await;
    let setup = TokioPostgresAdapter::connect_with_schema(&direct, schema())
        .await
        .expect("direct adapter");
    setup.create_schema(&schema(), None).await.expect("migrate");
    setup.create(ada("seed")).await.expect("seed user");

    let mut failures = Vec::new();
    for foreign in [
        // Three parameters where ours have one: "bind message supplies 1 parameters, but
        // prepared statement … requires 3".
        "(text, text, text) AS SELECT $1 || $2 || $3",
        // One int4 parameter where ours send text: "incorrect binary data format".
        "(int4) AS SELECT $1",
    ] {
        let bouncer = PgBouncer::start().await;
        let pooled = bouncer.url_for(&direct);
        let (pin, connection) = tokio_postgres::connect(&pooled, NoTls)
            .await
            .expect("raw client");
        tokio::spawn(connection);
        pin.batch_execute("BEGIN")
            .await
            .expect("hold server connection X");
        // The highest statement name this process has used so far (this `prepare` included).
        let _kept = pin.prepare("SELECT 1").await.expect("prepare on X");
        let highest: i32 = pin
            .query_typed_one(
                "SELECT max(substr(name, 2)::int4) FROM pg_prepared_statements \
                 WHERE name ~ '^s[0-9]+$'",
                &[],
            )
            .await
            .expect("statement names on X")
            .get(0);
        let batch: String = (highest + 1..highest + 1000)
            .map(|k| format!("PREPARE s{k}{foreign};"))
            .collect();
        pin.batch_execute(&batch)
            .await
            .expect("foreign statements on X");

        let adapter = TokioPostgresAdapter::connect_with_schema(&pooled, schema())
            .await
            .expect("prepared adapter");
        let by_email =
            || FindOne::new("user").where_clause(Where::new("email", text("seed@example.com")));
        let first = adapter.find_one(by_email()).await;
        assert!(
            matches!(first, Ok(Some(_))),
            "prepared and run on server connection Y: {first:?}"
        );
        pin.batch_execute("COMMIT").await.expect("release X");
        let second = failure(adapter.find_one(by_email()).await);
        let second = second.unwrap_or_else(|| {
            panic!("binding on X, where s<k> is another statement, cannot succeed")
        });
        failures.push(second);
    }
    assert_eq!(
        setup.count(Count::new("user")).await.expect("count"),
        1,
        "the foreign statements changed nothing"
    );
    let without_hint: Vec<&String> = failures
        .iter()
        .filter(|message| !message.contains(HINT))
        .collect();
    assert!(
        without_hint.is_empty(),
        "failures that do not mention {HINT}: {without_hint:#?}"
    );
}

/// The UTC session holds through PgBouncer in transaction mode: the database's time zone is
/// New York, its server connections move between this adapter's two client connections and
/// another client's, and another process changes `sessions.expires_at` from Prisma's
/// `timestamp(3)` to `timestamptz` while the adapter's catalog still says `timestamp`. Every
/// instant is stored and read back exactly (PgBouncer tracks the `TimeZone` the adapter set and
/// sets it on every server connection it hands the adapter's clients).
#[tokio::test]
async fn instants_stay_exact_through_pgbouncer_under_a_new_york_database() {
    let bouncer = PgBouncer::start().await;
    let (direct, pooled) = fresh_through(&bouncer, "pgb_zone").await;
    let database = database_of(&direct);
    let admin = support::connect(&direct).await;
    // Set up directly, so that PgBouncer opens its server connections only after the
    // database's time zone is New York.
    let setup = TokioPostgresAdapter::connect_with_schema(&direct, schema())
        .await
        .expect("connect directly");
    setup.create_schema(&schema(), None).await.expect("migrate");
    setup.create(ada("u1")).await.expect("user");
    drop(setup);
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{database}\" SET timezone = 'America/New_York'; \
             ALTER TABLE sessions ALTER expires_at TYPE timestamp(3) \
             USING expires_at AT TIME ZONE 'UTC'"
        ))
        .await
        .expect("prisma layout, New York");
    let adapter =
        TokioPostgresAdapter::connect_with_schema(&format!("{pooled}&max_connections=2"), schema())
            .await
            .expect("connect");
    let other = pooled_adapter(&pooled).await;
    let expires = OffsetDateTime::from_unix_timestamp(1_704_070_800).expect("instant")
        + time::Duration::milliseconds(250);
    let session = |id: &str| {
        Create::new("session")
            .data("id", text(id))
            .data("user_id", text("u1"))
            .data("token", DbValue::String(format!("token-{id}")))
            .data("expires_at", DbValue::Timestamp(expires))
            .data("created_at", DbValue::Timestamp(expires))
            .data("updated_at", DbValue::Timestamp(expires))
    };
    for index in 0..4 {
        adapter
            .create(session(&format!("a{index}")))
            .await
            .expect("create before the alter");
        user_count(&other).await;
    }
    admin
        .batch_execute(
            "ALTER TABLE sessions ALTER expires_at TYPE timestamptz \
             USING expires_at AT TIME ZONE 'UTC'",
        )
        .await
        .expect("alter");
    for index in 0..4 {
        adapter
            .create(session(&format!("b{index}")))
            .await
            .expect("create after the alter");
        user_count(&other).await;
    }
    let stored: i64 = admin
        .query_one(
            "SELECT count(*) FROM sessions WHERE expires_at = $1",
            &[&expires],
        )
        .await
        .expect("count")
        .get(0);
    assert_eq!(stored, 8, "every row holds the instant");
    let found = adapter
        .find_many(
            FindMany::new("session")
                .where_clause(Where::new("expires_at", DbValue::Timestamp(expires))),
        )
        .await
        .expect("find");
    assert_eq!(found.len(), 8);
    for record in found {
        assert_eq!(record.get("expires_at"), Some(&DbValue::Timestamp(expires)));
    }
}

/// A user named Ada (the rollback tests check the name survives).
fn ada(id: &str) -> Create {
    fixtures::user(id).data("name", text("Ada"))
}
