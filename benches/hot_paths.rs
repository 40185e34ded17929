//! RustAuth's hot database calls, side by side: this crate, the published 0.3.2, and a
//! hand-written tokio-postgres floor running the same SQL on statements prepared once.
//!
//! ```text
//! cargo bench --bench hot_paths                      # full run (about 4 minutes on 2 cores)
//! BENCH_QUICK=1 cargo bench --bench hot_paths        # smoke run, ~0.2 s per measurement
//! cargo bench --bench hot_paths -- sign_up get_session   # only calls whose name contains a word
//! ```
//!
//! Environment: `BENCH_SECONDS` (per measurement, default 0.5; quick 0.2), `BENCH_WARMUP`
//! (seconds before each measurement, default 0.1; quick 0.05), `BENCH_ROUNDS` (default 5;
//! quick 1), `BENCH_USERS` (default 10000), `BENCH_TASKS` (pipelined tasks, default 16),
//! `BENCH_WORKERS` (tokio worker threads, default: one per core), `BENCH_SHAPE_CACHE=0` (the
//! generic and Better Auth adapters plan every call), `DATABASE_URL` (server; see
//! `tests/support/server.rs` for how one is found otherwise).
//!
//! Without `--bench` in its arguments (`cargo test --benches` / `--all-targets` runs bench
//! targets that way) the binary does a tiny smoke run instead (300 users, 20 ms per
//! measurement, one round, environment ignored): it checks that every implementation returns
//! the expected rows, and asserts nothing about timing.
//!
//! Every call is issued exactly as rustauth-core 0.3.2 issues it (same query structs, field
//! lists, predicates, data key order), through the public `DbAdapter` / `RateLimitStore`
//! traits, so whatever the adapter does internally is what gets measured.

#[path = "../tests/support/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustauth_core::db::{
    auth_schema, create_statement, delete_one_statement, find_many_statement,
    find_many_with_joins_statement, find_one_statement, update_one_plan, AuthSchemaOptions, Create,
    DbAdapter, DbRecord, DbSchema, DbValue, Delete, FindMany, FindOne, JoinOption,
    RateLimitStorage, Sort, SortDirection, SqlDialect, SqlUpdateOnePlan, TableOptions, Update,
    Where,
};
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule, RateLimitStore};
use rustauth_tokio_postgres::layout::{ACCOUNT_FIELDS, SESSION_FIELDS, USER_FIELDS};
use time::OffsetDateTime;
use tokio::sync::RwLock;
use tokio_postgres::{Client, Row, Statement};

// ---------------------------------------------------------------------------------------------
// What rustauth-core 0.3.2 asks for (core, modules `user::record` and `session`).

const SESSIONS_PER_USER: usize = 2;
const RATE_LIMIT_WINDOW_SECONDS: i64 = 10;
const RATE_LIMIT_MAX: u64 = 100;
const SESSION_LIFETIME_DAYS: i64 = 7;
const IP_ADDRESS: &str = "203.0.113.7";
const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) rustauth-bench";
const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2htYXJrc2FsdA$\
    2gGk0yPqJ7rB8mY8bq7cB1d1c6Gdx0pQ0q9bYk0e8cE";

fn user_id(index: usize) -> String {
    format!("u{index:031}")
}

fn user_email(index: usize) -> String {
    format!("user{index}@example.com")
}

fn session_token(index: usize) -> String {
    format!("t{index:031}")
}

fn rate_limit_key(tag: &str, index: usize) -> String {
    format!("{tag}:10.0.{}.{}:/get-session", index / 256, index % 256)
}

/// Ids and tokens for rows the benchmark creates: unique across implementations and rounds.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn fresh_id(prefix: char) -> String {
    format!("{prefix}{:031}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

// ---------------------------------------------------------------------------------------------
// The query structs, built as core builds them.

fn q_session_by_token(token: &str, session_fields: bool) -> FindOne {
    let query =
        FindOne::new("session").where_clause(Where::new("token", DbValue::String(token.into())));
    if session_fields {
        query.select(SESSION_FIELDS)
    } else {
        query
    }
}

fn q_user_by_id(id: &str, user_fields: bool) -> FindOne {
    let query = FindOne::new("user").where_clause(Where::new("id", DbValue::String(id.into())));
    if user_fields {
        query.select(USER_FIELDS)
    } else {
        query
    }
}

fn q_user_by_email(email: &str) -> FindOne {
    FindOne::new("user")
        .where_clause(Where::new("email", DbValue::String(email.into())))
        .select(USER_FIELDS)
}

fn q_user_by_email_with_accounts(email: &str) -> FindOne {
    q_user_by_email(email).join("account", JoinOption::enabled())
}

fn q_create_session(
    id: String,
    user_id: String,
    token: String,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Create {
    Create::new("session")
        .data("id", DbValue::String(id))
        .data("user_id", DbValue::String(user_id))
        .data("expires_at", DbValue::Timestamp(expires_at))
        .data("token", DbValue::String(token))
        .data("ip_address", DbValue::String(IP_ADDRESS.into()))
        .data("user_agent", DbValue::String(USER_AGENT.into()))
        .data("created_at", DbValue::Timestamp(now))
        .data("updated_at", DbValue::Timestamp(now))
        .select(SESSION_FIELDS)
        .force_allow_id()
}

fn q_delete_session(token: &str) -> Delete {
    Delete::new("session").where_clause(Where::new("token", DbValue::String(token.into())))
}

fn q_refresh_session(token: &str, expires_at: OffsetDateTime, now: OffsetDateTime) -> Update {
    Update::new("session")
        .where_clause(Where::new("token", DbValue::String(token.into())))
        .data("expires_at", DbValue::Timestamp(expires_at))
        .data("updated_at", DbValue::Timestamp(now))
}

fn q_sessions_of_user(user_id: &str) -> FindMany {
    FindMany::new("session")
        .where_clause(Where::new("user_id", DbValue::String(user_id.into())))
        .sort_by(Sort::new("created_at", SortDirection::Desc))
        .limit(10)
        .select(SESSION_FIELDS)
}

fn q_create_user(id: String, email: String, now: OffsetDateTime) -> Create {
    Create::new("user")
        .data("id", DbValue::String(id))
        .data("name", DbValue::String("Bench User".into()))
        .data("email", DbValue::String(email))
        .data("email_verified", DbValue::Boolean(false))
        .data("image", DbValue::Null)
        .data("created_at", DbValue::Timestamp(now))
        .data("updated_at", DbValue::Timestamp(now))
        .force_allow_id()
        .select(USER_FIELDS)
}

fn q_create_account(id: String, user_id: String, now: OffsetDateTime) -> Create {
    Create::new("account")
        .data("id", DbValue::String(id))
        .data("provider_id", DbValue::String("credential".into()))
        .data("account_id", DbValue::String(user_id.clone()))
        .data("user_id", DbValue::String(user_id))
        .data("access_token", DbValue::Null)
        .data("refresh_token", DbValue::Null)
        .data("id_token", DbValue::Null)
        .data("access_token_expires_at", DbValue::Null)
        .data("refresh_token_expires_at", DbValue::Null)
        .data("scope", DbValue::Null)
        .data("password", DbValue::String(PASSWORD_HASH.into()))
        .data("created_at", DbValue::Timestamp(now))
        .data("updated_at", DbValue::Timestamp(now))
        .select(ACCOUNT_FIELDS)
        .force_allow_id()
}

fn rate_limit_input(key: String) -> RateLimitConsumeInput {
    RateLimitConsumeInput {
        key,
        rule: RateLimitRule::new(
            time::Duration::seconds(RATE_LIMIT_WINDOW_SECONDS),
            RATE_LIMIT_MAX,
        ),
        now_ms: now_ms(),
    }
}

// ---------------------------------------------------------------------------------------------
// The hand-written floor: the same SQL text, prepared once per connection.

const SQL_SESSION_BY_TOKEN: &str = "SELECT \"id\", \"user_id\", \"expires_at\", \"token\", \
\"ip_address\", \"user_agent\", \"created_at\", \"updated_at\" FROM \"sessions\" \
WHERE \"token\" = $1 LIMIT 1";
/// No select list: every column in schema order.
const SQL_SESSION_BY_TOKEN_ALL: &str = "SELECT \"id\", \"expires_at\", \"token\", \
\"created_at\", \"updated_at\", \"ip_address\", \"user_agent\", \"user_id\" FROM \"sessions\" \
WHERE \"token\" = $1 LIMIT 1";
/// USER_FIELDS is the users table in schema order, so "all fields" is this very text too.
const SQL_USER_BY_ID: &str = "SELECT \"id\", \"name\", \"email\", \"email_verified\", \
\"image\", \"created_at\", \"updated_at\" FROM \"users\" WHERE \"id\" = $1 LIMIT 1";
const SQL_USER_BY_EMAIL: &str = "SELECT \"id\", \"name\", \"email\", \"email_verified\", \
\"image\", \"created_at\", \"updated_at\" FROM \"users\" WHERE \"email\" = $1 LIMIT 1";
const SQL_USER_WITH_ACCOUNTS: &str = "SELECT \"base\".\"id\" AS \"__base_id\", \
\"base\".\"id\" AS \"__base_0\", \"base\".\"name\" AS \"__base_1\", \
\"base\".\"email\" AS \"__base_2\", \"base\".\"email_verified\" AS \"__base_3\", \
\"base\".\"image\" AS \"__base_4\", \"base\".\"created_at\" AS \"__base_5\", \
\"base\".\"updated_at\" AS \"__base_6\", \"__join_0\".\"id\" AS \"__join_0_0\", \
\"__join_0\".\"account_id\" AS \"__join_0_1\", \"__join_0\".\"provider_id\" AS \"__join_0_2\", \
\"__join_0\".\"user_id\" AS \"__join_0_3\", \"__join_0\".\"access_token\" AS \"__join_0_4\", \
\"__join_0\".\"refresh_token\" AS \"__join_0_5\", \"__join_0\".\"id_token\" AS \"__join_0_6\", \
\"__join_0\".\"access_token_expires_at\" AS \"__join_0_7\", \
\"__join_0\".\"refresh_token_expires_at\" AS \"__join_0_8\", \
\"__join_0\".\"scope\" AS \"__join_0_9\", \"__join_0\".\"password\" AS \"__join_0_10\", \
\"__join_0\".\"created_at\" AS \"__join_0_11\", \"__join_0\".\"updated_at\" AS \"__join_0_12\" \
FROM (SELECT \"id\", \"name\", \"email\", \"email_verified\", \"image\", \"created_at\", \
\"updated_at\" FROM \"users\" WHERE \"email\" = $1 LIMIT 1) AS \"base\" \
LEFT JOIN \"accounts\" AS \"__join_0\" ON \"__join_0\".\"user_id\" = \"base\".\"id\"";
const SQL_INSERT_SESSION: &str = "INSERT INTO \"sessions\" (\"id\", \"user_id\", \
\"expires_at\", \"token\", \"ip_address\", \"user_agent\", \"created_at\", \"updated_at\") \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const SQL_DELETE_SESSION: &str = "DELETE FROM \"sessions\" WHERE ctid IN \
(SELECT ctid FROM \"sessions\" WHERE \"token\" = $1 LIMIT 1)";
const SQL_REFRESH_SESSION: &str = "UPDATE \"sessions\" SET \"expires_at\" = $1, \
\"updated_at\" = $2 WHERE ctid IN (SELECT ctid FROM \"sessions\" WHERE \"token\" = $3 LIMIT 1) \
RETURNING \"id\", \"expires_at\", \"token\", \"created_at\", \"updated_at\", \"ip_address\", \
\"user_agent\", \"user_id\"";
const SQL_SESSIONS_OF_USER: &str = "SELECT \"id\", \"user_id\", \"expires_at\", \"token\", \
\"ip_address\", \"user_agent\", \"created_at\", \"updated_at\" FROM \"sessions\" \
WHERE \"user_id\" = $1 ORDER BY \"created_at\" DESC LIMIT 10";
const SQL_INSERT_USER: &str = "INSERT INTO \"users\" (\"id\", \"name\", \"email\", \
\"email_verified\", \"image\", \"created_at\", \"updated_at\") \
VALUES ($1, $2, $3, $4, $5, $6, $7)";
const SQL_INSERT_ACCOUNT: &str = "INSERT INTO \"accounts\" (\"id\", \"provider_id\", \
\"account_id\", \"user_id\", \"access_token\", \"refresh_token\", \"id_token\", \
\"access_token_expires_at\", \"refresh_token_expires_at\", \"scope\", \"password\", \
\"created_at\", \"updated_at\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
/// The single-statement consume of this crate's `src/rate_limit.rs` (`consume_statement`)
/// for table `rate_limits`: `$1` key, `$2` now (ms), `$3` window (ms), `$4` max.
const SQL_CONSUME: &str = "WITH \"consumed\" AS (INSERT INTO \"rate_limits\" AS \"r\" \
(\"key\", \"count\", \"last_request\") VALUES ($1, 1, $2::bigint) ON CONFLICT (\"key\") DO UPDATE \
SET \"count\" = CASE WHEN LEAST(GREATEST($2::numeric - \"r\".\"last_request\"::numeric, \
-9223372036854775808), 9223372036854775807) <= $3::bigint THEN \"r\".\"count\" + 1 ELSE 1 END, \
\"last_request\" = $2::bigint WHERE \"r\".\"count\" >= 0 AND NOT (LEAST(GREATEST($2::numeric - \
\"r\".\"last_request\"::numeric, -9223372036854775808), 9223372036854775807) <= $3::bigint AND \
\"r\".\"count\" >= $4::bigint) RETURNING \"r\".\"count\", \"r\".\"last_request\") \
SELECT TRUE AS \"permitted\", \"count\" AS \"count\", \"last_request\" AS \"last_request\" \
FROM \"consumed\" UNION ALL SELECT FALSE, \"count\", \"last_request\" FROM \"rate_limits\" \
WHERE \"key\" = $1 AND NOT EXISTS (SELECT 1 FROM \"consumed\")";

/// Fails loudly if the floor's SQL is not the text core 0.3.2 plans for the same queries.
fn check_floor_sql(schema: &DbSchema, sql: &FloorSql) {
    let pg = SqlDialect::Postgres;
    let now = OffsetDateTime::now_utc();
    let check = |what: &str, floor: &String, core: String| {
        assert_eq!(
            *floor, core,
            "the floor's SQL for {what} differs from what rustauth-core 0.3.2 plans"
        );
    };
    let read = |query: FindOne| {
        find_one_statement(pg, schema, &query)
            .expect("core plans the query")
            .statement
            .sql
    };
    check(
        "session by token",
        &sql.session_by_token,
        read(q_session_by_token("x", true)),
    );
    check(
        "session by token, all fields",
        &sql.session_by_token_all,
        read(q_session_by_token("x", false)),
    );
    check("user by id", &sql.user_by_id, read(q_user_by_id("x", true)));
    check(
        "user by id, all fields",
        &sql.user_by_id,
        read(q_user_by_id("x", false)),
    );
    check(
        "user by email",
        &sql.user_by_email,
        read(q_user_by_email("x")),
    );
    // A find_one with joins runs as a find_many with limit 1 and the same joins.
    let joined = q_user_by_email_with_accounts("x");
    let mut as_many = FindMany::new(joined.model.clone()).limit(1);
    as_many.where_clauses = joined.where_clauses;
    as_many.select = joined.select;
    as_many.joins = joined.joins;
    check(
        "user by email with accounts",
        &sql.user_with_accounts,
        find_many_with_joins_statement(pg, schema, &as_many)
            .expect("core plans the join")
            .statement
            .sql,
    );
    let create = |query: Create| {
        create_statement(pg, schema, &query)
            .expect("core plans the insert")
            .sql
    };
    check(
        "session insert",
        &sql.insert_session,
        create(q_create_session(
            "i".into(),
            "u".into(),
            "t".into(),
            now,
            now,
        )),
    );
    check(
        "user insert",
        &sql.insert_user,
        create(q_create_user("i".into(), "e".into(), now)),
    );
    check(
        "account insert",
        &sql.insert_account,
        create(q_create_account("i".into(), "u".into(), now)),
    );
    check(
        "session delete",
        &sql.delete_session,
        delete_one_statement(pg, schema, &q_delete_session("x"))
            .expect("core plans the delete")
            .statement
            .sql,
    );
    let refresh = match update_one_plan(pg, schema, &q_refresh_session("x", now, now))
        .expect("core plans the update")
    {
        SqlUpdateOnePlan::Returning(statement) => statement.statement.sql,
        other => panic!("unexpected update plan for postgres: {other:?}"),
    };
    check("session expiry update", &sql.refresh_session, refresh);
    check(
        "sessions of a user",
        &sql.sessions_of_user,
        find_many_statement(pg, schema, &q_sessions_of_user("x"))
            .expect("core plans the query")
            .statement
            .sql,
    );
}

/// Whether [`SQL_CONSUME`] is still the crate's consume statement, as kept in
/// `queries/rate_limit.sql` (named parameters, numbered by first appearance).
fn consume_sql_matches_crate() -> bool {
    include_str!("../queries/rate_limit.sql")
        .lines()
        .find(|line| line.starts_with("WITH \"consumed\""))
        .map(|line| {
            line.trim_end()
                .trim_end_matches(';')
                .replace(":key", "$1")
                .replace(":now_ms", "$2")
                .replace(":window_ms", "$3")
                .replace(":max", "$4")
        })
        .is_some_and(|crate_sql| crate_sql == SQL_CONSUME)
}

/// The floor's SQL texts for one physical layout.
struct FloorSql {
    session_by_token: String,
    session_by_token_all: String,
    user_by_id: String,
    user_by_email: String,
    user_with_accounts: String,
    insert_session: String,
    delete_session: String,
    refresh_session: String,
    sessions_of_user: String,
    insert_user: String,
    insert_account: String,
    consume: String,
}

impl FloorSql {
    /// The default layout's texts (the constants above).
    fn default_layout() -> Self {
        Self {
            session_by_token: SQL_SESSION_BY_TOKEN.to_owned(),
            session_by_token_all: SQL_SESSION_BY_TOKEN_ALL.to_owned(),
            user_by_id: SQL_USER_BY_ID.to_owned(),
            user_by_email: SQL_USER_BY_EMAIL.to_owned(),
            user_with_accounts: SQL_USER_WITH_ACCOUNTS.to_owned(),
            insert_session: SQL_INSERT_SESSION.to_owned(),
            delete_session: SQL_DELETE_SESSION.to_owned(),
            refresh_session: SQL_REFRESH_SESSION.to_owned(),
            sessions_of_user: SQL_SESSIONS_OF_USER.to_owned(),
            insert_user: SQL_INSERT_USER.to_owned(),
            insert_account: SQL_INSERT_ACCOUNT.to_owned(),
            consume: SQL_CONSUME.to_owned(),
        }
    }

    /// The same texts with every quoted identifier renamed by `names` (table and column
    /// names; aliases are not in the map and stay).
    fn renamed(&self, names: &BTreeMap<String, String>) -> Self {
        let rename = |sql: &str| {
            let mut out = String::with_capacity(sql.len());
            let mut parts = sql.split('"');
            out.push_str(parts.next().unwrap_or_default());
            for (index, part) in parts.enumerate() {
                out.push('"');
                if index % 2 == 0 {
                    out.push_str(names.get(part).map_or(part, String::as_str));
                } else {
                    out.push_str(part);
                }
            }
            out
        };
        Self {
            session_by_token: rename(&self.session_by_token),
            session_by_token_all: rename(&self.session_by_token_all),
            user_by_id: rename(&self.user_by_id),
            user_by_email: rename(&self.user_by_email),
            user_with_accounts: rename(&self.user_with_accounts),
            insert_session: rename(&self.insert_session),
            delete_session: rename(&self.delete_session),
            refresh_session: rename(&self.refresh_session),
            sessions_of_user: rename(&self.sessions_of_user),
            insert_user: rename(&self.insert_user),
            insert_account: rename(&self.insert_account),
            consume: rename(&self.consume),
        }
    }
}

/// Physical name in `from` → physical name in `to`, for every table and column of the two
/// schemas (which have the same logical tables and fields).
fn physical_renames(from: &DbSchema, to: &DbSchema) -> BTreeMap<String, String> {
    let mut names = BTreeMap::new();
    for (logical, table) in from.tables() {
        let other = to.table(logical).expect("the same logical table");
        names.insert(table.name.clone(), other.name.clone());
        for (field, column) in &table.fields {
            let renamed = other.field(field).expect("the same logical field");
            names.insert(column.name.clone(), renamed.name.clone());
        }
    }
    names
}

fn camel(snake: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for character in snake.chars() {
        if character == '_' {
            upper = true;
        } else if upper {
            out.extend(character.to_uppercase());
            upper = false;
        } else {
            out.push(character);
        }
    }
    out
}

/// The Better Auth layout: singular table names (`"user"`, `"session"`, `"account"`,
/// `"verification"`, `"rateLimit"`) and camelCase columns (`"emailVerified"`, `"createdAt"`),
/// as tests/it/schema_matrix.rs builds it; column types stay those of `migrations/`.
fn better_auth_schema() -> DbSchema {
    let mut options = AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    };
    let defaults = auth_schema(options.clone());
    let renamed = |logical: &str, name: &str| {
        let table = defaults.table(logical).expect("core table");
        TableOptions {
            name: Some(name.to_owned()),
            field_names: table
                .fields
                .keys()
                .map(|field| (field.clone(), camel(field)))
                .collect(),
            ..TableOptions::default()
        }
    };
    options.user = renamed("user", "user");
    options.session = renamed("session", "session");
    options.account = renamed("account", "account");
    options.verification = renamed("verification", "verification");
    options.rate_limit = renamed("rate_limit", "rateLimit");
    auth_schema(options)
}

struct FloorStatements {
    session_by_token: Statement,
    session_by_token_all: Statement,
    user_by_id: Statement,
    user_by_email: Statement,
    user_with_accounts: Statement,
    insert_session: Statement,
    delete_session: Statement,
    refresh_session: Statement,
    sessions_of_user: Statement,
    insert_user: Statement,
    insert_account: Statement,
    consume: Statement,
}

/// Plain tokio-postgres on one client. The gate exists only because a transaction on a
/// shared client must keep other tasks' statements out; only sign-up takes it.
struct Floor {
    client: Client,
    gate: RwLock<()>,
    statements: FloorStatements,
}

impl Floor {
    async fn prepare(client: Client, sql: &FloorSql) -> Self {
        let prepare = |text: &String| {
            let client = &client;
            let text = text.clone();
            async move {
                client
                    .prepare(&text)
                    .await
                    .expect("prepare a floor statement")
            }
        };
        let statements = FloorStatements {
            session_by_token: prepare(&sql.session_by_token).await,
            session_by_token_all: prepare(&sql.session_by_token_all).await,
            user_by_id: prepare(&sql.user_by_id).await,
            user_by_email: prepare(&sql.user_by_email).await,
            user_with_accounts: prepare(&sql.user_with_accounts).await,
            insert_session: prepare(&sql.insert_session).await,
            delete_session: prepare(&sql.delete_session).await,
            refresh_session: prepare(&sql.refresh_session).await,
            sessions_of_user: prepare(&sql.sessions_of_user).await,
            insert_user: prepare(&sql.insert_user).await,
            insert_account: prepare(&sql.insert_account).await,
            consume: prepare(&sql.consume).await,
        };
        Self {
            client,
            gate: RwLock::new(()),
            statements,
        }
    }
}

/// Rows decoded the way an application would; not every field is read afterwards.
#[allow(dead_code)]
struct SessionRow {
    id: String,
    user_id: String,
    expires_at: OffsetDateTime,
    token: String,
    ip_address: Option<String>,
    user_agent: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

/// Column positions of (id, user_id, expires_at, token, ip_address, user_agent, created_at,
/// updated_at) in a SESSION_FIELDS row and in an all-fields (schema order) row.
const SESSION_FIELDS_COLUMNS: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
const SESSION_ALL_COLUMNS: [usize; 8] = [0, 7, 1, 2, 5, 6, 3, 4];

fn session_row(row: &Row, at: [usize; 8]) -> SessionRow {
    SessionRow {
        id: row.get(at[0]),
        user_id: row.get(at[1]),
        expires_at: row.get(at[2]),
        token: row.get(at[3]),
        ip_address: row.get(at[4]),
        user_agent: row.get(at[5]),
        created_at: row.get(at[6]),
        updated_at: row.get(at[7]),
    }
}

#[allow(dead_code)]
struct UserRow {
    id: String,
    name: String,
    email: String,
    email_verified: bool,
    image: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

fn user_row(row: &Row, first: usize) -> UserRow {
    UserRow {
        id: row.get(first),
        name: row.get(first + 1),
        email: row.get(first + 2),
        email_verified: row.get(first + 3),
        image: row.get(first + 4),
        created_at: row.get(first + 5),
        updated_at: row.get(first + 6),
    }
}

#[allow(dead_code)]
struct AccountRow {
    id: String,
    account_id: String,
    provider_id: String,
    user_id: String,
    access_token: Option<String>,
    refresh_token: Option<String>,
    id_token: Option<String>,
    access_token_expires_at: Option<OffsetDateTime>,
    refresh_token_expires_at: Option<OffsetDateTime>,
    scope: Option<String>,
    password: Option<String>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

/// The joined account (schema order) starting at column `first`; `None` for the LEFT JOIN's
/// all-NULL row.
fn account_row(row: &Row, first: usize) -> Option<AccountRow> {
    let id: Option<String> = row.get(first);
    Some(AccountRow {
        id: id?,
        account_id: row.get(first + 1),
        provider_id: row.get(first + 2),
        user_id: row.get(first + 3),
        access_token: row.get(first + 4),
        refresh_token: row.get(first + 5),
        id_token: row.get(first + 6),
        access_token_expires_at: row.get(first + 7),
        refresh_token_expires_at: row.get(first + 8),
        scope: row.get(first + 9),
        password: row.get(first + 10),
        created_at: row.get(first + 11),
        updated_at: row.get(first + 12),
    })
}

// ---------------------------------------------------------------------------------------------
// Calls, modes, implementations.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Call {
    GetSession,
    GetSessionHttp,
    UserByEmail,
    UserByEmailWithAccounts,
    SessionCreateDelete,
    SessionExpiryUpdate,
    RateLimitConsume,
    SessionsOfUser,
    SignUp,
}

impl Call {
    const ALL: [Call; 9] = [
        Call::GetSession,
        Call::GetSessionHttp,
        Call::UserByEmail,
        Call::UserByEmailWithAccounts,
        Call::SessionCreateDelete,
        Call::SessionExpiryUpdate,
        Call::RateLimitConsume,
        Call::SessionsOfUser,
        Call::SignUp,
    ];

    fn name(self) -> &'static str {
        match self {
            Call::GetSession => "get_session",
            Call::GetSessionHttp => "get_session_http",
            Call::UserByEmail => "user_by_email",
            Call::UserByEmailWithAccounts => "user_by_email_with_accounts",
            Call::SessionCreateDelete => "session_create_delete",
            Call::SessionExpiryUpdate => "session_expiry_update",
            Call::RateLimitConsume => "rate_limit_consume",
            Call::SessionsOfUser => "sessions_of_user",
            Call::SignUp => "sign_up",
        }
    }

    fn description(self) -> &'static str {
        match self {
            Call::GetSession => {
                "find_one session WHERE token SELECT SESSION_FIELDS, then find_one user WHERE id \
                 SELECT USER_FIELDS"
            }
            Call::GetSessionHttp => {
                "GET /get-session's 4 lookups: the two above, then session WHERE token and user \
                 WHERE id with all fields"
            }
            Call::UserByEmail => "find_one user WHERE email SELECT USER_FIELDS",
            Call::UserByEmailWithAccounts => {
                "the same JOIN account (JoinOption::enabled(), no limit), as sign-in does"
            }
            Call::SessionCreateDelete => {
                "create session (8 fields, select SESSION_FIELDS), then delete session WHERE token"
            }
            Call::SessionExpiryUpdate => {
                "update session WHERE token SET expires_at, updated_at (returns the row)"
            }
            Call::RateLimitConsume => {
                "rate-limit consume, rule 10 s / 100, keys spread so nearly all are permitted"
            }
            Call::SessionsOfUser => {
                "find_many session WHERE user_id ORDER BY created_at DESC LIMIT 10 SELECT \
                 SESSION_FIELDS"
            }
            Call::SignUp => {
                "2 × user by email (absent), then a transaction creating user, credential \
                 account and session"
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Sequential,
    Pipelined,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sequential => "sequential",
            Mode::Pipelined => "pipelined",
        }
    }
}

#[derive(Clone)]
enum Engine {
    Adapter {
        db: Arc<dyn DbAdapter>,
        limiter: Arc<dyn RateLimitStore>,
    },
    Floor(Arc<Floor>),
}

#[derive(Clone)]
struct Implementation {
    label: &'static str,
    /// Prefix of this implementation's own rate-limit keys.
    tag: &'static str,
    engine: Engine,
}

/// Indices into the implementation list.
const OURS: usize = 0;
const PUBLISHED: usize = 1;
const FLOOR: usize = 2;
const PUBLISHED_TWIN: usize = 3;
/// Ours with typed statements off: every call on the generic path.
const GENERIC: usize = 4;
/// Ours on the Better Auth layout (renamed tables and columns: the generic path).
const OURS_BA: usize = 5;
/// The floor on the Better Auth layout.
const FLOOR_BA: usize = 6;
const IMPLEMENTATIONS: usize = 7;

struct Rng(u64);

impl Rng {
    /// splitmix64.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

/// One task's view of the seeded data.
struct Task {
    rng: Rng,
    users: usize,
    rate_limit_keys: usize,
    tag: &'static str,
}

impl Task {
    fn user(&mut self) -> usize {
        self.rng.below(self.users)
    }

    fn session(&mut self) -> usize {
        self.rng.below(self.users * SESSIONS_PER_USER)
    }

    fn rate_limit_key(&mut self) -> String {
        let index = self.rng.below(self.rate_limit_keys);
        rate_limit_key(self.tag, index)
    }
}

fn string_field<'r>(record: &'r DbRecord, key: &str) -> &'r str {
    match record.get(key) {
        Some(DbValue::String(value)) => value,
        other => panic!("expected a string `{key}`, got {other:?}"),
    }
}

/// One call through a `DbAdapter` / `RateLimitStore`. Returns false for a rate-limit denial.
async fn adapter_call(
    db: &dyn DbAdapter,
    limiter: &dyn RateLimitStore,
    call: Call,
    task: &mut Task,
) -> bool {
    match call {
        Call::GetSession | Call::GetSessionHttp => {
            let token = session_token(task.session());
            let session = db
                .find_one(q_session_by_token(&token, true))
                .await
                .expect("session by token")
                .expect("the seeded session exists");
            let user_id = string_field(&session, "user_id").to_owned();
            let user = db
                .find_one(q_user_by_id(&user_id, true))
                .await
                .expect("user by id")
                .expect("the session's user exists");
            assert_eq!(string_field(&user, "id"), user_id);
            if call == Call::GetSessionHttp {
                let session = db
                    .find_one(q_session_by_token(&token, false))
                    .await
                    .expect("session by token, all fields")
                    .expect("the seeded session exists");
                assert_eq!(string_field(&session, "token"), token);
                let user = db
                    .find_one(q_user_by_id(&user_id, false))
                    .await
                    .expect("user by id, all fields")
                    .expect("the session's user exists");
                assert_eq!(string_field(&user, "id"), user_id);
            }
        }
        Call::UserByEmail => {
            let email = user_email(task.user());
            let user = db
                .find_one(q_user_by_email(&email))
                .await
                .expect("user by email")
                .expect("the seeded user exists");
            assert_eq!(string_field(&user, "email"), email);
        }
        Call::UserByEmailWithAccounts => {
            let email = user_email(task.user());
            let user = db
                .find_one(q_user_by_email_with_accounts(&email))
                .await
                .expect("user by email with accounts")
                .expect("the seeded user exists");
            match user.get("account") {
                Some(DbValue::RecordArray(accounts)) => assert_eq!(accounts.len(), 1),
                other => panic!("expected the joined accounts, got {other:?}"),
            }
        }
        Call::SessionCreateDelete => {
            let now = OffsetDateTime::now_utc();
            let token = fresh_id('K');
            let created = db
                .create(q_create_session(
                    fresh_id('N'),
                    user_id(task.user()),
                    token.clone(),
                    now + time::Duration::days(SESSION_LIFETIME_DAYS),
                    now,
                ))
                .await
                .expect("create session");
            assert_eq!(string_field(&created, "token"), token);
            db.delete(q_delete_session(&token))
                .await
                .expect("delete session");
        }
        Call::SessionExpiryUpdate => {
            let token = session_token(task.session());
            let now = OffsetDateTime::now_utc();
            let updated = db
                .update(q_refresh_session(
                    &token,
                    now + time::Duration::days(SESSION_LIFETIME_DAYS),
                    now,
                ))
                .await
                .expect("update session expiry")
                .expect("the seeded session exists");
            assert_eq!(string_field(&updated, "token"), token);
        }
        Call::RateLimitConsume => {
            return limiter
                .consume(rate_limit_input(task.rate_limit_key()))
                .await
                .expect("rate-limit consume")
                .permitted;
        }
        Call::SessionsOfUser => {
            let sessions = db
                .find_many(q_sessions_of_user(&user_id(task.user())))
                .await
                .expect("sessions of a user");
            assert_eq!(sessions.len(), SESSIONS_PER_USER);
        }
        Call::SignUp => {
            let email = format!(
                "signup{}@example.com",
                NEXT_ID.fetch_add(1, Ordering::Relaxed)
            );
            for _ in 0..2 {
                let existing = db
                    .find_one(q_user_by_email(&email))
                    .await
                    .expect("user by email");
                assert!(existing.is_none(), "a new email is free");
            }
            let now = OffsetDateTime::now_utc();
            let user = fresh_id('U');
            let create_user = q_create_user(user.clone(), email, now);
            let create_account = q_create_account(fresh_id('A'), user.clone(), now);
            let create_session = q_create_session(
                fresh_id('S'),
                user,
                fresh_id('T'),
                now + time::Duration::days(SESSION_LIFETIME_DAYS),
                now,
            );
            db.transaction(Box::new(move |tx| {
                Box::pin(async move {
                    tx.create(create_user).await?;
                    tx.create(create_account).await?;
                    tx.create(create_session).await?;
                    Ok(())
                })
            }))
            .await
            .expect("sign-up transaction");
        }
    }
    true
}

/// The same call on the floor. Returns false for a rate-limit denial.
async fn floor_call(floor: &Floor, call: Call, task: &mut Task) -> bool {
    let client = &floor.client;
    let st = &floor.statements;
    match call {
        Call::GetSession | Call::GetSessionHttp => {
            let token = session_token(task.session());
            let row = client
                .query_opt(&st.session_by_token, &[&token])
                .await
                .expect("session by token")
                .expect("the seeded session exists");
            let session = session_row(&row, SESSION_FIELDS_COLUMNS);
            let row = client
                .query_opt(&st.user_by_id, &[&session.user_id])
                .await
                .expect("user by id")
                .expect("the session's user exists");
            let user = user_row(&row, 0);
            assert_eq!(user.id, session.user_id);
            if call == Call::GetSessionHttp {
                let row = client
                    .query_opt(&st.session_by_token_all, &[&token])
                    .await
                    .expect("session by token, all fields")
                    .expect("the seeded session exists");
                assert_eq!(session_row(&row, SESSION_ALL_COLUMNS).token, token);
                let row = client
                    .query_opt(&st.user_by_id, &[&session.user_id])
                    .await
                    .expect("user by id, all fields")
                    .expect("the session's user exists");
                assert_eq!(user_row(&row, 0).id, session.user_id);
            }
        }
        Call::UserByEmail => {
            let email = user_email(task.user());
            let row = client
                .query_opt(&st.user_by_email, &[&email])
                .await
                .expect("user by email")
                .expect("the seeded user exists");
            assert_eq!(user_row(&row, 0).email, email);
        }
        Call::UserByEmailWithAccounts => {
            let email = user_email(task.user());
            let rows = client
                .query(&st.user_with_accounts, &[&email])
                .await
                .expect("user by email with accounts");
            let first = rows.first().expect("the seeded user exists");
            let user = user_row(first, 1);
            let accounts: Vec<AccountRow> =
                rows.iter().filter_map(|row| account_row(row, 8)).collect();
            assert_eq!(user.email, email);
            assert_eq!(accounts.len(), 1);
        }
        Call::SessionCreateDelete => {
            let now = OffsetDateTime::now_utc();
            let expires_at = now + time::Duration::days(SESSION_LIFETIME_DAYS);
            let (id, user, token) = (fresh_id('N'), user_id(task.user()), fresh_id('K'));
            let inserted = client
                .execute(
                    &st.insert_session,
                    &[
                        &id,
                        &user,
                        &expires_at,
                        &token,
                        &IP_ADDRESS,
                        &USER_AGENT,
                        &now,
                        &now,
                    ],
                )
                .await
                .expect("create session");
            assert_eq!(inserted, 1);
            client
                .execute(&st.delete_session, &[&token])
                .await
                .expect("delete session");
        }
        Call::SessionExpiryUpdate => {
            let token = session_token(task.session());
            let now = OffsetDateTime::now_utc();
            let expires_at = now + time::Duration::days(SESSION_LIFETIME_DAYS);
            let row = client
                .query_opt(&st.refresh_session, &[&expires_at, &now, &token])
                .await
                .expect("update session expiry")
                .expect("the seeded session exists");
            assert_eq!(session_row(&row, SESSION_ALL_COLUMNS).token, token);
        }
        Call::RateLimitConsume => {
            let input = rate_limit_input(task.rate_limit_key());
            let max = RATE_LIMIT_MAX as i64;
            let window_ms = RATE_LIMIT_WINDOW_SECONDS * 1000;
            // As in src/rate_limit.rs: a denial racing a concurrent first insert shows no
            // row; the next attempt sees it.
            for _ in 0..3 {
                let row = client
                    .query_opt(&st.consume, &[&input.key, &input.now_ms, &max, &window_ms])
                    .await
                    .expect("rate-limit consume");
                if let Some(row) = row {
                    let permitted: bool = row.get(0);
                    let _count: i64 = row.get(1);
                    let _last_request: i64 = row.get(2);
                    return permitted;
                }
            }
            panic!("rate-limit row neither written nor found");
        }
        Call::SessionsOfUser => {
            let user = user_id(task.user());
            let rows = client
                .query(&st.sessions_of_user, &[&user])
                .await
                .expect("sessions of a user");
            let sessions: Vec<SessionRow> = rows
                .iter()
                .map(|row| session_row(row, SESSION_FIELDS_COLUMNS))
                .collect();
            assert_eq!(sessions.len(), SESSIONS_PER_USER);
        }
        Call::SignUp => {
            let email = format!(
                "signup{}@example.com",
                NEXT_ID.fetch_add(1, Ordering::Relaxed)
            );
            {
                let _shared = floor.gate.read().await;
                for _ in 0..2 {
                    let existing = client
                        .query_opt(&st.user_by_email, &[&email])
                        .await
                        .expect("user by email");
                    assert!(existing.is_none(), "a new email is free");
                }
            }
            let now = OffsetDateTime::now_utc();
            let expires_at = now + time::Duration::days(SESSION_LIFETIME_DAYS);
            let user = fresh_id('U');
            let (account, session, token) = (fresh_id('A'), fresh_id('S'), fresh_id('T'));
            let no_text: Option<&str> = None;
            let no_time: Option<OffsetDateTime> = None;
            let _exclusive = floor.gate.write().await;
            client.batch_execute("BEGIN").await.expect("BEGIN");
            client
                .execute(
                    &st.insert_user,
                    &[&user, &"Bench User", &email, &false, &no_text, &now, &now],
                )
                .await
                .expect("create user");
            client
                .execute(
                    &st.insert_account,
                    &[
                        &account,
                        &"credential",
                        &user,
                        &user,
                        &no_text,
                        &no_text,
                        &no_text,
                        &no_time,
                        &no_time,
                        &no_text,
                        &PASSWORD_HASH,
                        &now,
                        &now,
                    ],
                )
                .await
                .expect("create account");
            client
                .execute(
                    &st.insert_session,
                    &[
                        &session,
                        &user,
                        &expires_at,
                        &token,
                        &IP_ADDRESS,
                        &USER_AGENT,
                        &now,
                        &now,
                    ],
                )
                .await
                .expect("create session");
            client.batch_execute("COMMIT").await.expect("COMMIT");
        }
    }
    true
}

impl Implementation {
    async fn call(&self, call: Call, task: &mut Task) -> bool {
        match &self.engine {
            Engine::Adapter { db, limiter } => {
                adapter_call(db.as_ref(), limiter.as_ref(), call, task).await
            }
            Engine::Floor(floor) => floor_call(floor, call, task).await,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

struct Sample {
    ops_per_second: f64,
    p50_micros: f64,
    p99_micros: f64,
    denied: u64,
}

/// Runs `call` for `duration` on `tasks` concurrent tasks sharing the implementation.
async fn measure(
    implementation: &Implementation,
    call: Call,
    tasks: usize,
    duration: Duration,
    config: &Config,
    seed: u64,
) -> Sample {
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for index in 0..tasks {
        let implementation = implementation.clone();
        let mut task = Task {
            rng: Rng(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            users: config.users,
            rate_limit_keys: config.rate_limit_keys,
            tag: implementation.tag,
        };
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut denied = 0u64;
            // At least one call per task, so that even a zero-length smoke run checks results.
            loop {
                let began = Instant::now();
                if !implementation.call(call, &mut task).await {
                    denied += 1;
                }
                latencies.push(began.elapsed().as_nanos() as u64);
                if Instant::now() >= deadline {
                    break;
                }
            }
            (latencies, denied)
        });
    }
    let mut latencies = Vec::new();
    let mut denied = 0;
    while let Some(joined) = set.join_next().await {
        let (task_latencies, task_denied) = joined.expect("a benchmark task panicked");
        latencies.extend(task_latencies);
        denied += task_denied;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[index] as f64 / 1000.0
    };
    Sample {
        ops_per_second: latencies.len() as f64 / elapsed,
        p50_micros: percentile(0.50),
        p99_micros: percentile(0.99),
        denied,
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

// ---------------------------------------------------------------------------------------------
// Configuration, setup, report.

struct Config {
    /// False when run without `--bench` (e.g. by `cargo test --all-targets`).
    full: bool,
    quick: bool,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    users: usize,
    rate_limit_keys: usize,
    tasks: usize,
    workers: Option<usize>,
    filters: Vec<String>,
    /// Whether "generic" and the Better Auth adapter keep plans per query shape.
    shape_cache: bool,
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(parsed) => Some(parsed),
        Err(_) => panic!("{name}={value:?} is not a valid number"),
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

impl Config {
    fn from_env_and_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let full = args.iter().any(|arg| arg == "--bench");
        let filters = args
            .iter()
            .filter(|arg| !arg.starts_with('-'))
            .cloned()
            .collect();
        if !full {
            return Self {
                full,
                quick: true,
                seconds: 0.02,
                warmup: 0.0,
                rounds: 1,
                users: 300,
                rate_limit_keys: 1000,
                tasks: 16,
                workers: None,
                filters,
                shape_cache: true,
            };
        }
        let quick = env_flag("BENCH_QUICK");
        let (seconds, warmup, rounds) = if quick { (0.2, 0.05, 1) } else { (0.5, 0.1, 5) };
        let users = env_number("BENCH_USERS").unwrap_or(10_000usize).max(1);
        Self {
            full,
            quick,
            seconds: env_number("BENCH_SECONDS").unwrap_or(seconds),
            warmup: env_number("BENCH_WARMUP").unwrap_or(warmup),
            rounds: env_number("BENCH_ROUNDS").unwrap_or(rounds).max(1),
            users,
            rate_limit_keys: 20_000,
            tasks: env_number("BENCH_TASKS").unwrap_or(16usize).max(1),
            workers: env_number("BENCH_WORKERS"),
            filters,
            shape_cache: std::env::var("BENCH_SHAPE_CACHE").map_or(true, |v| v.trim() != "0"),
        }
    }

    fn calls(&self) -> Vec<Call> {
        Call::ALL
            .into_iter()
            .filter(|call| {
                self.filters.is_empty()
                    || self
                        .filters
                        .iter()
                        .any(|filter| call.name().contains(filter.as_str()))
            })
            .collect()
    }

    fn reproduce(&self) -> String {
        if !self.full {
            return "cargo test --bench hot_paths".to_owned();
        }
        let mut env = Vec::new();
        if self.quick {
            env.push("BENCH_QUICK=1".to_owned());
        }
        env.push(format!("BENCH_SECONDS={}", self.seconds));
        env.push(format!("BENCH_WARMUP={}", self.warmup));
        env.push(format!("BENCH_ROUNDS={}", self.rounds));
        env.push(format!("BENCH_USERS={}", self.users));
        env.push(format!("BENCH_TASKS={}", self.tasks));
        if let Some(workers) = self.workers {
            env.push(format!("BENCH_WORKERS={workers}"));
        }
        if !self.shape_cache {
            env.push("BENCH_SHAPE_CACHE=0".to_owned());
        }
        let filters = if self.filters.is_empty() {
            String::new()
        } else {
            format!(" -- {}", self.filters.join(" "))
        };
        format!("{} cargo bench --bench hot_paths{filters}", env.join(" "))
    }
}

/// The database name at the end of a URL made by `server::fresh_database` (`[a-z0-9_]` only).
fn database_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split(['?', '#']).next().unwrap_or_default().to_owned()
}

async fn seed(client: &Client, config: &Config, tags: &[&str]) {
    let users = config.users;
    let sessions = users * SESSIONS_PER_USER;
    client
        .batch_execute(&format!(
            "INSERT INTO \"users\" (\"id\", \"name\", \"email\", \"email_verified\", \"image\", \
             \"created_at\", \"updated_at\") \
             SELECT 'u' || lpad(i::text, 31, '0'), 'User ' || i, 'user' || i || '@example.com', \
             i % 2 = 0, NULL, now() - interval '30 days', now() - interval '30 days' \
             FROM generate_series(0, {last_user}) AS i;\
             INSERT INTO \"sessions\" (\"id\", \"user_id\", \"expires_at\", \"token\", \
             \"ip_address\", \"user_agent\", \"created_at\", \"updated_at\") \
             SELECT 's' || lpad(j::text, 31, '0'), 'u' || lpad((j / {SESSIONS_PER_USER})::text, 31, '0'), \
             now() + interval '7 days', 't' || lpad(j::text, 31, '0'), '{IP_ADDRESS}', \
             '{USER_AGENT}', now() - j * interval '1 second', now() - j * interval '1 second' \
             FROM generate_series(0, {last_session}) AS j;\
             INSERT INTO \"accounts\" (\"id\", \"account_id\", \"provider_id\", \"user_id\", \
             \"password\", \"created_at\", \"updated_at\") \
             SELECT 'a' || lpad(i::text, 31, '0'), 'u' || lpad(i::text, 31, '0'), 'credential', \
             'u' || lpad(i::text, 31, '0'), '{PASSWORD_HASH}', now() - interval '30 days', \
             now() - interval '30 days' FROM generate_series(0, {last_user}) AS i;",
            last_user = users - 1,
            last_session = sessions - 1,
        ))
        .await
        .expect("seed users, sessions and accounts");
    for tag in tags {
        // Existing rows, as for returning clients; last_request 0 puts them outside the window.
        client
            .batch_execute(&format!(
                "INSERT INTO \"rate_limits\" (\"key\", \"count\", \"last_request\") \
                 SELECT '{tag}:10.0.' || (k / 256) || '.' || (k % 256) || ':/get-session', 0, 0 \
                 FROM generate_series(0, {last_key}) AS k",
                last_key = config.rate_limit_keys - 1,
            ))
            .await
            .expect("seed rate-limit keys");
    }
    client
        .batch_execute("VACUUM ANALYZE")
        .await
        .expect("VACUUM ANALYZE");
    // The client-side key format must match the seeded one.
    let probe = rate_limit_key(tags[0], 1000 % config.rate_limit_keys);
    let found = client
        .query_one(
            "SELECT count(*) FROM \"rate_limits\" WHERE \"key\" = $1",
            &[&probe],
        )
        .await
        .expect("probe a seeded key")
        .get::<_, i64>(0);
    assert_eq!(found, 1, "seeded rate-limit key {probe} not found");
}

/// Sign-up rows are removed after each sign-up measurement so every round starts alike.
async fn remove_sign_ups(client: &Client, schema: &DbSchema) {
    let users = schema.table("user").expect("user table");
    let email = users.field("email").expect("email field");
    client
        .batch_execute(&format!(
            "DELETE FROM \"{}\" WHERE \"{}\" LIKE 'signup%'",
            users.name, email.name
        ))
        .await
        .expect("remove signed-up users");
}

/// Copies the seeded rows of every table of `from` into the same table of `to` (another
/// physical layout in the same database), column by column in field order.
async fn copy_rows(client: &Client, from: &DbSchema, to: &DbSchema) {
    let quoted = |name: &str| format!("\"{name}\"");
    let mut sql = String::new();
    for logical in ["user", "session", "account", "rate_limit"] {
        let source = from.table(logical).expect("source table");
        let target = to.table(logical).expect("target table");
        let columns = |table: &rustauth_core::db::DbTable| {
            table
                .fields
                .values()
                .map(|field| quoted(&field.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        sql.push_str(&format!(
            "INSERT INTO {} ({}) SELECT {} FROM {};",
            quoted(&target.name),
            columns(target),
            columns(source),
            quoted(&source.name)
        ));
    }
    client
        .batch_execute(&sql)
        .await
        .expect("copy the seeded rows into the Better Auth layout");
    client
        .batch_execute("VACUUM ANALYZE")
        .await
        .expect("VACUUM ANALYZE");
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn fmt_rate(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

fn fmt_micros(p50: f64, p99: f64) -> String {
    format!("{p50:.0} / {p99:.0}")
}

async fn run(config: Config) {
    let started = Instant::now();
    let load_at_start = load_average();
    let url = server::fresh_database("bench").await;
    let name = database_name(&url);
    let admin = server::connect(&server::server_url().await).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" SET synchronous_commit = off"
        ))
        .await
        .expect("ALTER DATABASE … SET synchronous_commit = off");

    let schema = auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    });
    let floor_sql = FloorSql::default_layout();
    check_floor_sql(&schema, &floor_sql);
    let ba_schema = better_auth_schema();
    let ba_floor_sql = floor_sql.renamed(&physical_renames(&schema, &ba_schema));
    check_floor_sql(&ba_schema, &ba_floor_sql);

    // Every implementation gets its own connection; `setup` seeds and cleans up.
    let setup = server::connect(&url).await;
    let ours = rustauth_tokio_postgres::TokioPostgresAdapter::with_schema(
        server::connect(&url).await,
        schema.clone(),
    );
    ours.create_schema(&schema, None)
        .await
        .expect("create the schema");
    let generic = rustauth_tokio_postgres::TokioPostgresAdapter::with_schema(
        server::connect(&url).await,
        schema.clone(),
    )
    .with_typed_statements(false);
    // BENCH_SHAPE_CACHE=0: the generic path plans every call (the state before plans were kept
    // per query shape), for comparison.
    let shape_cache = config.shape_cache;
    let generic = generic.with_shape_cache(shape_cache);
    let ours_ba = rustauth_tokio_postgres::TokioPostgresAdapter::with_schema(
        server::connect(&url).await,
        ba_schema.clone(),
    )
    .with_shape_cache(shape_cache);
    ours_ba
        .create_schema(&ba_schema, None)
        .await
        .expect("create the Better Auth layout");
    let tags = [
        "ours", "v032", "floor", "v032b", "generic", "oursba", "floorba",
    ];
    eprintln!(
        "hot_paths: seeding {} users, {} sessions, {} accounts, {} rate-limit keys …",
        config.users,
        config.users * SESSIONS_PER_USER,
        config.users,
        config.rate_limit_keys * tags.len()
    );
    seed(&setup, &config, &tags).await;
    copy_rows(&setup, &schema, &ba_schema).await;

    let published = |client: Client| {
        let adapter =
            rustauth_tokio_postgres_032::TokioPostgresAdapter::with_schema(client, schema.clone());
        let limiter = adapter.rate_limit_store();
        Engine::Adapter {
            db: Arc::new(adapter),
            limiter: Arc::new(limiter),
        }
    };
    let ours_limiter = ours.rate_limit_store();
    let adapter_engine = |adapter: rustauth_tokio_postgres::TokioPostgresAdapter| {
        let limiter = adapter.rate_limit_store();
        Engine::Adapter {
            db: Arc::new(adapter),
            limiter: Arc::new(limiter),
        }
    };
    let implementations = [
        Implementation {
            label: "ours",
            tag: tags[OURS],
            engine: Engine::Adapter {
                db: Arc::new(ours),
                limiter: Arc::new(ours_limiter),
            },
        },
        Implementation {
            label: "0.3.2",
            tag: tags[PUBLISHED],
            engine: published(server::connect(&url).await),
        },
        Implementation {
            label: "floor",
            tag: tags[FLOOR],
            engine: Engine::Floor(Arc::new(
                Floor::prepare(server::connect(&url).await, &floor_sql).await,
            )),
        },
        Implementation {
            label: "0.3.2′",
            tag: tags[PUBLISHED_TWIN],
            engine: published(server::connect(&url).await),
        },
        Implementation {
            label: "generic",
            tag: tags[GENERIC],
            engine: adapter_engine(generic),
        },
        Implementation {
            label: "ours (Better Auth layout)",
            tag: tags[OURS_BA],
            engine: adapter_engine(ours_ba),
        },
        Implementation {
            label: "floor (Better Auth layout)",
            tag: tags[FLOOR_BA],
            engine: Engine::Floor(Arc::new(
                Floor::prepare(server::connect(&url).await, &ba_floor_sql).await,
            )),
        },
    ];

    let facts = setup
        .query_one(
            "SELECT current_setting('server_version'), current_setting('synchronous_commit'), \
             current_setting('fsync')",
            &[],
        )
        .await
        .expect("server facts");
    let (version, synchronous_commit, fsync): (String, String, String) =
        (facts.get(0), facts.get(1), facts.get(2));

    let modes = [Mode::Sequential, Mode::Pipelined];
    let calls = config.calls();
    let groups: Vec<(Call, Mode)> = calls
        .iter()
        .flat_map(|call| modes.iter().map(move |mode| (*call, *mode)))
        .collect();
    // samples[group][implementation] = one per round; ratios[group] = (ours/0.3.2, ours/floor, A/A).
    let mut samples: Vec<[Vec<Sample>; IMPLEMENTATIONS]> =
        groups.iter().map(|_| Default::default()).collect();
    // … then generic/floor and Better Auth ours/floor.
    let mut ratios: Vec<[Vec<f64>; 5]> = groups.iter().map(|_| Default::default()).collect();
    let measurement = Duration::from_secs_f64(config.seconds);
    let warmup = Duration::from_secs_f64(config.warmup);
    for round in 0..config.rounds {
        let mut order = [
            OURS,
            PUBLISHED,
            FLOOR,
            PUBLISHED_TWIN,
            GENERIC,
            OURS_BA,
            FLOOR_BA,
        ];
        if round % 2 == 1 {
            order.reverse();
        }
        for (group, (call, mode)) in groups.iter().enumerate() {
            let tasks = match mode {
                Mode::Sequential => 1,
                Mode::Pipelined => config.tasks,
            };
            for &index in &order {
                let seed = ((round as u64) << 40) ^ ((group as u64) << 20) ^ index as u64;
                if !warmup.is_zero() {
                    measure(
                        &implementations[index],
                        *call,
                        tasks,
                        warmup,
                        &config,
                        !seed,
                    )
                    .await;
                }
                let sample = measure(
                    &implementations[index],
                    *call,
                    tasks,
                    measurement,
                    &config,
                    seed,
                )
                .await;
                if *call == Call::SignUp {
                    remove_sign_ups(&setup, &schema).await;
                    remove_sign_ups(&setup, &ba_schema).await;
                }
                samples[group][index].push(sample);
            }
            let rate = |index: usize| samples[group][index][round].ops_per_second;
            ratios[group][0].push(rate(OURS) / rate(PUBLISHED));
            ratios[group][1].push(rate(OURS) / rate(FLOOR));
            ratios[group][2].push(rate(PUBLISHED) / rate(PUBLISHED_TWIN));
            ratios[group][3].push(rate(GENERIC) / rate(FLOOR));
            ratios[group][4].push(rate(OURS_BA) / rate(FLOOR_BA));
        }
        eprintln!(
            "hot_paths: round {}/{} done after {:.0} s",
            round + 1,
            config.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    // Report.
    let mut out = String::new();
    let line = |out: &mut String, text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(
        &mut out,
        "## Hot paths: this crate (ours) vs published 0.3.2 vs hand-written tokio-postgres (floor)",
    );
    line(&mut out, "");
    if !config.full {
        line(
            &mut out,
            "**Smoke run (no `--bench` argument): correctness only, the numbers mean nothing.**",
        );
        line(&mut out, "");
    } else if config.quick {
        line(
            &mut out,
            "**BENCH_QUICK smoke run: one short round, the numbers are indicative at best.**",
        );
        line(&mut out, "");
    }
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let workers = config.workers.unwrap_or(cores);
    line(
        &mut out,
        &format!(
            "- Machine: {cores} cores (client and server on the same machine), load average \
             {load_at_start} at start; tokio multi-thread runtime, {workers} workers"
        ),
    );
    line(
        &mut out,
        &format!(
            "- PostgreSQL {version}; `ALTER DATABASE … SET synchronous_commit = off` on the \
             benchmark database only (sessions show synchronous_commit={synchronous_commit}; \
             server fsync={fsync})"
        ),
    );
    line(
        &mut out,
        &format!(
            "- Data: {} users, {} sessions ({SESSIONS_PER_USER} per user), {} credential \
             accounts, {} rate-limit keys per implementation; fresh database, dropped at the end",
            config.users,
            config.users * SESSIONS_PER_USER,
            config.users,
            config.rate_limit_keys
        ),
    );
    line(
        &mut out,
        &format!(
            "- Method: {} round(s); per round, each (call, mode) runs every implementation for \
             {} s after {} s of warm-up, in the order ours, 0.3.2, floor, 0.3.2′, generic, BA \
             ours, BA floor (reversed on odd rounds); each implementation has its own connection; sequential = 1 task, \
             pipelined = {} tasks sharing one adapter (one connection); one op = one whole call \
             below; ops/s and latencies are medians over rounds; ratios are ops/s ratios taken \
             per round, then the median; A/A = 0.3.2 against a second 0.3.2 instance (noise floor)",
            config.rounds, config.seconds, config.warmup, config.tasks
        ),
    );
    line(&mut out, &format!("- Reproduce: `{}`", config.reproduce()));
    line(&mut out, "");
    line(
        &mut out,
        "| call | mode | ours ops/s | 0.3.2 ops/s | floor ops/s | ours/0.3.2 | ours/floor | A/A | \
         ours p50 / p99 µs | 0.3.2 p50 / p99 µs | floor p50 / p99 µs |",
    );
    line(
        &mut out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    let mut denials = BTreeMap::new();
    for (group, (call, mode)) in groups.iter().enumerate() {
        let rate = |index: usize| {
            median(
                &samples[group][index]
                    .iter()
                    .map(|sample| sample.ops_per_second)
                    .collect::<Vec<_>>(),
            )
        };
        let latency = |index: usize| {
            let of = |pick: fn(&Sample) -> f64| {
                median(&samples[group][index].iter().map(pick).collect::<Vec<_>>())
            };
            fmt_micros(of(|s| s.p50_micros), of(|s| s.p99_micros))
        };
        for (index, implementation) in implementations.iter().enumerate() {
            let denied: u64 = samples[group][index].iter().map(|s| s.denied).sum();
            if denied > 0 {
                *denials.entry(implementation.label).or_insert(0) += denied;
            }
        }
        line(
            &mut out,
            &format!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                call.name(),
                mode.name(),
                fmt_rate(rate(OURS)),
                fmt_rate(rate(PUBLISHED)),
                fmt_rate(rate(FLOOR)),
                median(&ratios[group][0]),
                median(&ratios[group][1]),
                median(&ratios[group][2]),
                latency(OURS),
                latency(PUBLISHED),
                latency(FLOOR),
            ),
        );
    }
    line(&mut out, "");
    line(
        &mut out,
        "The generic path: \"generic\" is ours with typed statements off on the same tables; \
         \"BA\" is the Better Auth layout (tables `user`, `session`, `account`, `rateLimit`, \
         camelCase columns, the same column types) in the same database, ours (every call on \
         the generic path, the layout does not match `migrations/`) against its own floor (the \
         same SQL text with the renamed identifiers).",
    );
    line(&mut out, "");
    line(
        &mut out,
        "| call | mode | generic ops/s | floor ops/s | generic/floor | BA ours ops/s | \
         BA floor ops/s | BA ours/floor | generic p50 / p99 µs | BA ours p50 / p99 µs | \
         BA floor p50 / p99 µs |",
    );
    line(
        &mut out,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    );
    for (group, (call, mode)) in groups.iter().enumerate() {
        let rate = |index: usize| {
            median(
                &samples[group][index]
                    .iter()
                    .map(|sample| sample.ops_per_second)
                    .collect::<Vec<_>>(),
            )
        };
        let latency = |index: usize| {
            let of = |pick: fn(&Sample) -> f64| {
                median(&samples[group][index].iter().map(pick).collect::<Vec<_>>())
            };
            fmt_micros(of(|s| s.p50_micros), of(|s| s.p99_micros))
        };
        line(
            &mut out,
            &format!(
                "| {} | {} | {} | {} | {:.2} | {} | {} | {:.2} | {} | {} | {} |",
                call.name(),
                mode.name(),
                fmt_rate(rate(GENERIC)),
                fmt_rate(rate(FLOOR)),
                median(&ratios[group][3]),
                fmt_rate(rate(OURS_BA)),
                fmt_rate(rate(FLOOR_BA)),
                median(&ratios[group][4]),
                latency(GENERIC),
                latency(OURS_BA),
                latency(FLOOR_BA),
            ),
        );
    }
    line(&mut out, "");
    line(
        &mut out,
        "Calls (exactly as rustauth-core 0.3.2 issues them):",
    );
    line(&mut out, "");
    for call in &calls {
        line(
            &mut out,
            &format!("- `{}`: {}", call.name(), call.description()),
        );
    }
    line(&mut out, "");
    line(
        &mut out,
        "The floor runs the same SQL text (checked against core's planner at start-up; the \
         rate limit uses this crate's single-statement consume) on statements prepared once, \
         with hand-written row decoding; its sign-up is BEGIN + 3 prepared inserts + COMMIT \
         under its own lock so that pipelined tasks stay out of the open transaction.",
    );
    if !consume_sql_matches_crate() {
        line(
            &mut out,
            "**Warning: the floor's rate-limit SQL no longer matches queries/rate_limit.sql; \
             update SQL_CONSUME in benches/hot_paths.rs.**",
        );
    }
    if denials.is_empty() {
        line(&mut out, "Rate limit: every consume was permitted.");
    } else {
        line(
            &mut out,
            &format!("Rate limit: denied consumes per implementation: {denials:?}."),
        );
    }
    line(
        &mut out,
        &format!("Total run time: {:.0} s.", started.elapsed().as_secs_f64()),
    );
    print!("{out}");

    // Close every connection to the benchmark database, then drop it.
    drop(implementations);
    drop(setup);
    // WITH (FORCE) needs PostgreSQL 13; older servers get a few plain attempts while the
    // closed connections go away.
    let mut dropped = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .await;
    for _ in 0..20 {
        if dropped.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        dropped = admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\""))
            .await;
    }
    if let Err(error) = dropped {
        eprintln!("hot_paths: could not drop database {name}: {error}");
    }
}

fn main() {
    let config = Config::from_env_and_args();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(workers) = config.workers {
        runtime.worker_threads(workers.max(1));
    }
    let runtime = runtime.build().expect("build the tokio runtime");
    runtime.block_on(run(config));
}
