//! Self-test of the shared test support (`tests/support/`): the server it finds or starts, the
//! fresh databases it creates, and its URL helpers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::collections::HashSet;

use support::server::{
    connect, database_url_with, drop_database_now, fresh_database, reset_for_reuse, server_url,
    url_from_env, Pool,
};
use tokio_postgres::error::SqlState;

/// The database named by a URL of the simple `postgres://…/db?…` form.
fn database_of(url: &str) -> &str {
    let after_scheme = &url[url.find("://").unwrap() + 3..];
    let path = &after_scheme[after_scheme.find('/').unwrap() + 1..];
    path.split(['?', '#']).next().unwrap()
}

#[test]
fn url_from_env_prefers_a_non_blank_override() {
    assert_eq!(
        url_from_env(Some("postgres://u:p@db.example:5433/app".to_owned())).as_deref(),
        Some("postgres://u:p@db.example:5433/app")
    );
    assert_eq!(
        url_from_env(Some("  postgres://h/db \n".to_owned())).as_deref(),
        Some("postgres://h/db")
    );
    assert_eq!(url_from_env(None), None);
    assert_eq!(url_from_env(Some(String::new())), None);
    assert_eq!(url_from_env(Some("   ".to_owned())), None);
}

#[test]
fn database_url_with_replaces_only_the_database() {
    assert_eq!(
        database_url_with("postgres://postgres@127.0.0.1:5432/postgres", "other"),
        "postgres://postgres@127.0.0.1:5432/other"
    );
    assert_eq!(
        database_url_with(
            "postgres://user:pa%2Fss@localhost:5433/app?sslmode=disable&application_name=t",
            "rat_x_1"
        ),
        "postgres://user:pa%2Fss@localhost:5433/rat_x_1?sslmode=disable&application_name=t"
    );
    assert_eq!(
        database_url_with("postgresql://u@h:1/db?connect_timeout=5", "new"),
        "postgresql://u@h:1/new?connect_timeout=5"
    );
    // No database path at all, with and without a query.
    assert_eq!(
        database_url_with("postgres://u@h:5432", "new"),
        "postgres://u@h:5432/new"
    );
    assert_eq!(
        database_url_with("postgres://u@h?sslmode=disable", "new"),
        "postgres://u@h/new?sslmode=disable"
    );
    // Characters that are not URL-safe are percent-encoded.
    assert_eq!(
        database_url_with("postgres://u@h/db", "a b/c"),
        "postgres://u@h/a%20b%2Fc"
    );
}

#[tokio::test]
async fn server_url_answers_select_1() {
    let url = server_url().await;
    assert_eq!(url, server_url().await, "decided once per process");
    let client = connect(&url).await;
    let one: i32 = client
        .query_one("SELECT 1::int4", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fresh_database_gives_distinct_empty_databases_concurrently() {
    let tasks: Vec<_> = (0..8)
        .map(|i| tokio::spawn(async move { fresh_database(&format!("selftest {i}")).await }))
        .collect();
    let mut urls = Vec::new();
    for task in tasks {
        urls.push(task.await.unwrap());
    }
    let names: HashSet<&str> = urls.iter().map(|url| database_of(url)).collect();
    assert_eq!(names.len(), 8, "8 distinct databases: {urls:?}");

    let server = server_url().await;
    let server_database = database_of(&server);
    for url in &urls {
        let name = database_of(url);
        assert!(name.starts_with("rat_selftest_"), "{name}");
        assert_ne!(name, server_database);
        assert_eq!(
            database_url_with(&server, name),
            *url,
            "same server and user"
        );
        let client = connect(url).await;
        let row = client
            .query_one(
                "SELECT current_database()::text, \
                 (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(row.get::<_, String>(0), name);
        assert_eq!(row.get::<_, i64>(1), 0, "a fresh database has no tables");
        // Writable, and private to this database.
        client
            .batch_execute("CREATE TABLE marker (id int PRIMARY KEY)")
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn fresh_database_names_are_valid_for_any_label() {
    let label = "Ünïcode / spaces & \"quotes\" and a very long label ".repeat(4);
    let url = fresh_database(&label).await;
    let name = database_of(&url).to_owned();
    assert!(name.len() <= 63, "{name} is {} bytes", name.len());
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "{name}"
    );
    let client = connect(&url).await;
    let current: String = client
        .query_one("SELECT current_database()::text", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(current, name);
}

#[tokio::test]
async fn database_url_with_builds_a_url_to_a_missing_database() {
    let server = server_url().await;
    let missing = database_url_with(&server, "rat_selftest_surely_missing");
    let error = match tokio_postgres::connect(&missing, tokio_postgres::NoTls).await {
        Ok(_) => panic!("connected to a database that should not exist"),
        Err(error) => error,
    };
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_CATALOG_NAME),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("rat_selftest_surely_missing")
            || format!("{error:?}").contains("rat_selftest_surely_missing"),
        "{error:?}"
    );
}

/// A fresh database is dropped when the runtime that made it shuts down (the end of a
/// `#[tokio::test]`), also when the test panicked and while a connection to it is still
/// open: tests leave the server as they found it.
#[test]
fn fresh_databases_are_dropped_when_their_runtime_shuts_down() {
    let runtime = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    };
    let exists = |name: String| {
        runtime().block_on(async move {
            connect(&server_url().await)
                .await
                .query_one(
                    "SELECT count(*) FROM pg_database WHERE datname = $1",
                    &[&name],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        })
    };
    // A test that ends normally, leaving a connection open.
    let test = runtime();
    let name = test.block_on(async {
        let url = fresh_database("selftest_guard").await;
        let client = connect(&url).await;
        client
            .batch_execute("CREATE TABLE t (x int)")
            .await
            .unwrap();
        std::mem::forget(client);
        database_of(&url).to_owned()
    });
    assert_eq!(exists(name.clone()), 1, "alive while its runtime is");
    drop(test);
    assert_eq!(
        exists(name),
        0,
        "dropped with its runtime (or reset and pooled under another name)"
    );
    // A test that panics.
    let name = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = std::sync::Arc::clone(&name);
    let panicked = std::thread::spawn(move || {
        runtime().block_on(async move {
            let url = fresh_database("selftest_guard_panic").await;
            *seen.lock().unwrap() = database_of(&url).to_owned();
            panic!("a failing test");
        })
    })
    .join();
    assert!(panicked.is_err());
    let name = name.lock().unwrap().clone();
    assert!(!name.is_empty());
    assert_eq!(
        exists(name),
        0,
        "dropped although the test failed (or reset and pooled under another name)"
    );
}

/// What tests make in a database, of every kind the reset drops.
const MADE_BY_A_TEST: &str = "
    CREATE TABLE t (x int PRIMARY KEY, y text DEFAULT 'a');
    CREATE INDEX ON t (y);
    CREATE SCHEMA elsewhere;
    CREATE TABLE elsewhere.u (x int REFERENCES public.t);
    CREATE EXTENSION citext;
    CREATE TABLE c (e citext);
    CREATE TYPE mood AS ENUM ('a', 'b');
    CREATE DOMAIN positive AS int CHECK (VALUE > 0);
    CREATE TYPE pair AS (a int, b int);
    CREATE FUNCTION one() RETURNS int LANGUAGE sql AS 'SELECT 1';
    CREATE FUNCTION \"odd \"\"name\"\"\"(a int, b text) RETURNS int LANGUAGE sql AS 'SELECT 1';
    CREATE VIEW v AS SELECT * FROM t;
    CREATE MATERIALIZED VIEW mv AS SELECT 1 AS one;
    CREATE SEQUENCE s;
    CREATE TABLE \"Mixed Case\" (id serial);
    CREATE TABLE p (id int) PARTITION BY RANGE (id);
    CREATE TABLE p1 PARTITION OF p FOR VALUES FROM (0) TO (10);
    COMMENT ON SCHEMA public IS 'changed';
    GRANT CREATE ON SCHEMA public TO PUBLIC;
";

/// What a test can see of a database's state, compared between a reset one and a new one.
const VISIBLE_STATE: &str = "
    SELECT concat_ws(' | ',
        (SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace),
        (SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension),
        (SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace
          WHERE nspname !~ '^pg_(toast_)?temp_'),
        (SELECT nspacl::text FROM pg_namespace WHERE nspname = 'public'),
        obj_description('public'::regnamespace, 'pg_namespace'),
        shobj_description((SELECT oid FROM pg_database WHERE datname = current_database()),
          'pg_database'),
        current_setting('TimeZone'), current_setting('search_path'))";

/// A database a test made things in and set settings on, once reset, looks to a test exactly
/// like one made by `CREATE DATABASE` (tables, types, routines, schemas, extensions, grants,
/// comments, settings), under a new name.
#[tokio::test]
async fn a_reset_database_is_what_a_new_one_is() {
    let url = fresh_database("selftest_reset").await;
    let name = database_of(&url).to_owned();
    let server = server_url().await;
    let admin = connect(&server).await;
    let client = connect(&url).await;
    client.batch_execute(MADE_BY_A_TEST).await.unwrap();
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" SET timezone = 'Asia/Kolkata'; \
             ALTER ROLE CURRENT_USER IN DATABASE \"{name}\" SET search_path = elsewhere; \
             COMMENT ON DATABASE \"{name}\" IS 'changed'"
        ))
        .await
        .unwrap();
    drop(client);

    let pooled = reset_for_reuse(&name).await.expect("a reset database");
    assert_ne!(pooled, name);
    let reset = connect(&database_url_with(&server, &pooled))
        .await
        .query_one(VISIBLE_STATE, &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    let new_name = format!("rat_selftest_new_{}", std::process::id());
    admin
        .batch_execute(&format!(
            "CREATE DATABASE \"{new_name}\" TEMPLATE template0"
        ))
        .await
        .unwrap();
    let new = connect(&database_url_with(&server, &new_name))
        .await
        .query_one(VISIBLE_STATE, &[])
        .await
        .unwrap()
        .get::<_, String>(0);
    drop_database_now(&pooled).await;
    drop_database_now(&new_name).await;
    assert_eq!(reset, new);
    assert!(reset.starts_with("0 | plpgsql | "), "{reset}");
}

/// A database the reset cannot bring back to a new one's state (here: a connection limit, an
/// operator) is not reused: it keeps its name, to be dropped when it is released.
#[tokio::test]
async fn a_database_the_reset_cannot_restore_is_not_reused() {
    let server = server_url().await;
    let admin = connect(&server).await;
    for change in [
        "ALTER DATABASE \"{name}\" CONNECTION LIMIT 50",
        "CREATE OPERATOR === (LEFTARG = int, RIGHTARG = int, FUNCTION = int4eq)",
    ] {
        let url = fresh_database("selftest_unresettable").await;
        let name = database_of(&url).to_owned();
        let change = change.replace("{name}", &name);
        if change.starts_with("ALTER DATABASE") {
            admin.batch_execute(&change).await.unwrap();
        } else {
            connect(&url).await.batch_execute(&change).await.unwrap();
        }
        assert_eq!(reset_for_reuse(&name).await, None, "{change}");
        let left: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_database WHERE datname = $1",
                &[&name],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(left, 1, "{change}: kept its name");
    }
}

/// Released databases are kept only while another is handed out, and the last release hands
/// every kept one back to be dropped: a test process never ends with a database of its own
/// left on the server.
#[test]
fn the_last_release_drops_every_pooled_database() {
    let mut pool = Pool::default();
    assert_eq!(pool.hand_out(), None, "nothing pooled yet: create");
    assert_eq!(pool.hand_out(), None);
    assert!(pool.released(Some("a".into())).is_empty(), "one still out");
    assert_eq!(pool.hand_out().as_deref(), Some("a"), "reused");
    assert!(pool.released(Some("b".into())).is_empty());
    assert_eq!(pool.released(Some("c".into())), ["c", "b"], "the last");
    assert_eq!(pool.hand_out(), None, "dropped, not pooled");
    assert_eq!(pool.released(None), Vec::<String>::new());
    // At most POOL_CAPACITY (8) are kept.
    let out: Vec<_> = (0..10).map(|_| pool.hand_out()).collect();
    assert!(out.iter().all(Option::is_none));
    let kept: usize = (0..9)
        .map(|i| pool.released(Some(format!("d{i}"))).len())
        .sum();
    assert_eq!(kept, 1, "the ninth beyond capacity is dropped");
    assert_eq!(pool.released(None).len(), 8);
}
