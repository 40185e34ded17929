//! The workload shared by the benchmarks: the calls exactly as rustauth-core 0.3.2 issues them,
//! the hand-written floors, the seeded data, and the measuring loop.
//!
//! Used by `benches/hot_paths.rs` (`mod workload;`) and by the compatibility bench
//! `compat/deadpool/benches/pool.rs` (`#[path = "../../../benches/workload/mod.rs"]`), so that
//! both run the very same operations.

pub mod delay;
#[path = "../../tests/fixtures/mod.rs"]
pub mod fixtures;

pub use fixtures::Rng;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustauth_core::db::{
    create_statement, delete_one_statement, find_many_statement, find_many_with_joins_statement,
    find_one_statement, update_one_plan, Create, DbAdapter, DbRecord, DbSchema, DbValue, Delete,
    FindMany, FindOne, JoinOption, Sort, SortDirection, SqlDialect, SqlUpdateOnePlan, Update,
    Where,
};
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule, RateLimitStore};
use time::OffsetDateTime;
use tokio::sync::RwLock;
use tokio_postgres::{Client, Row, Statement};

// ---------------------------------------------------------------------------------------------
// What rustauth-core 0.3.2 asks for (core, modules `user::record` and `session`).

pub use rustauth_tokio_postgres::layout::{ACCOUNT_FIELDS, SESSION_FIELDS, USER_FIELDS};

pub const SESSIONS_PER_USER: usize = 2;
pub const RATE_LIMIT_WINDOW_SECONDS: i64 = 10;
pub const RATE_LIMIT_MAX: u64 = 100;
pub const SESSION_LIFETIME_DAYS: i64 = 7;
pub const IP_ADDRESS: &str = "203.0.113.7";
pub const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) rustauth-bench";
pub const PASSWORD_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$YmVuY2htYXJrc2FsdA$\
    2gGk0yPqJ7rB8mY8bq7cB1d1c6Gdx0pQ0q9bYk0e8cE";

pub fn user_id(index: usize) -> String {
    format!("u{index:031}")
}

pub fn user_email(index: usize) -> String {
    format!("user{index}@example.com")
}

pub fn session_token(index: usize) -> String {
    format!("t{index:031}")
}

pub fn rate_limit_key(tag: &str, index: usize) -> String {
    format!("{tag}:10.0.{}.{}:/get-session", index / 256, index % 256)
}

/// Ids and tokens for rows the benchmark creates: unique across implementations and rounds.
pub static NEXT_ID: AtomicU64 = AtomicU64::new(0);

pub fn fresh_id(prefix: char) -> String {
    format!("{prefix}{:031}", NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

pub fn now_ms() -> i64 {
    (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

// ---------------------------------------------------------------------------------------------
// The query structs, built as core builds them.

pub fn q_session_by_token(token: &str, session_fields: bool) -> FindOne {
    let query =
        FindOne::new("session").where_clause(Where::new("token", DbValue::String(token.into())));
    if session_fields {
        query.select(SESSION_FIELDS)
    } else {
        query
    }
}

pub fn q_user_by_id(id: &str, user_fields: bool) -> FindOne {
    let query = FindOne::new("user").where_clause(Where::new("id", DbValue::String(id.into())));
    if user_fields {
        query.select(USER_FIELDS)
    } else {
        query
    }
}

pub fn q_user_by_email(email: &str) -> FindOne {
    FindOne::new("user")
        .where_clause(Where::new("email", DbValue::String(email.into())))
        .select(USER_FIELDS)
}

pub fn q_user_by_email_with_accounts(email: &str) -> FindOne {
    q_user_by_email(email).join("account", JoinOption::enabled())
}

pub fn q_create_session(
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

pub fn q_delete_session(token: &str) -> Delete {
    Delete::new("session").where_clause(Where::new("token", DbValue::String(token.into())))
}

pub fn q_refresh_session(token: &str, expires_at: OffsetDateTime, now: OffsetDateTime) -> Update {
    Update::new("session")
        .where_clause(Where::new("token", DbValue::String(token.into())))
        .data("expires_at", DbValue::Timestamp(expires_at))
        .data("updated_at", DbValue::Timestamp(now))
}

pub fn q_sessions_of_user(user_id: &str) -> FindMany {
    FindMany::new("session")
        .where_clause(Where::new("user_id", DbValue::String(user_id.into())))
        .sort_by(Sort::new("created_at", SortDirection::Desc))
        .limit(10)
        .select(SESSION_FIELDS)
}

pub fn q_create_user(id: String, email: String, now: OffsetDateTime) -> Create {
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

pub fn q_create_account(id: String, user_id: String, now: OffsetDateTime) -> Create {
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

pub fn rate_limit_input(key: String) -> RateLimitConsumeInput {
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

pub const SQL_SESSION_BY_TOKEN: &str = "SELECT \"id\", \"user_id\", \"expires_at\", \"token\", \
\"ip_address\", \"user_agent\", \"created_at\", \"updated_at\" FROM \"sessions\" \
WHERE \"token\" = $1 LIMIT 1";
/// No select list: every column in schema order.
pub const SQL_SESSION_BY_TOKEN_ALL: &str = "SELECT \"id\", \"expires_at\", \"token\", \
\"created_at\", \"updated_at\", \"ip_address\", \"user_agent\", \"user_id\" FROM \"sessions\" \
WHERE \"token\" = $1 LIMIT 1";
/// USER_FIELDS is the users table in schema order, so "all fields" is this very text too.
pub const SQL_USER_BY_ID: &str = "SELECT \"id\", \"name\", \"email\", \"email_verified\", \
\"image\", \"created_at\", \"updated_at\" FROM \"users\" WHERE \"id\" = $1 LIMIT 1";
pub const SQL_USER_BY_EMAIL: &str = "SELECT \"id\", \"name\", \"email\", \"email_verified\", \
\"image\", \"created_at\", \"updated_at\" FROM \"users\" WHERE \"email\" = $1 LIMIT 1";
pub const SQL_USER_WITH_ACCOUNTS: &str = "SELECT \"base\".\"id\" AS \"__base_id\", \
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
pub const SQL_INSERT_SESSION: &str = "INSERT INTO \"sessions\" (\"id\", \"user_id\", \
\"expires_at\", \"token\", \"ip_address\", \"user_agent\", \"created_at\", \"updated_at\") \
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
pub const SQL_DELETE_SESSION: &str = "DELETE FROM \"sessions\" WHERE ctid IN \
(SELECT ctid FROM \"sessions\" WHERE \"token\" = $1 LIMIT 1)";
pub const SQL_REFRESH_SESSION: &str = "UPDATE \"sessions\" SET \"expires_at\" = $1, \
\"updated_at\" = $2 WHERE ctid IN (SELECT ctid FROM \"sessions\" WHERE \"token\" = $3 LIMIT 1) \
RETURNING \"id\", \"expires_at\", \"token\", \"created_at\", \"updated_at\", \"ip_address\", \
\"user_agent\", \"user_id\"";
pub const SQL_SESSIONS_OF_USER: &str = "SELECT \"id\", \"user_id\", \"expires_at\", \"token\", \
\"ip_address\", \"user_agent\", \"created_at\", \"updated_at\" FROM \"sessions\" \
WHERE \"user_id\" = $1 ORDER BY \"created_at\" DESC LIMIT 10";
pub const SQL_INSERT_USER: &str = "INSERT INTO \"users\" (\"id\", \"name\", \"email\", \
\"email_verified\", \"image\", \"created_at\", \"updated_at\") \
VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub const SQL_INSERT_ACCOUNT: &str = "INSERT INTO \"accounts\" (\"id\", \"provider_id\", \
\"account_id\", \"user_id\", \"access_token\", \"refresh_token\", \"id_token\", \
\"access_token_expires_at\", \"refresh_token_expires_at\", \"scope\", \"password\", \
\"created_at\", \"updated_at\") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
/// The single-statement consume of this crate's `src/rate_limit.rs` (`consume_statement`)
/// for table `rate_limits`: `$1` key, `$2` now (ms), `$3` window (ms), `$4` max.
pub const SQL_CONSUME: &str = "WITH \"consumed\" AS (INSERT INTO \"rate_limits\" AS \"r\" \
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
pub fn check_floor_sql(schema: &DbSchema, sql: &FloorSql) {
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
pub fn consume_sql_matches_crate() -> bool {
    include_str!("../../queries/rate_limit.sql")
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
pub struct FloorSql {
    pub session_by_token: String,
    pub session_by_token_all: String,
    pub user_by_id: String,
    pub user_by_email: String,
    pub user_with_accounts: String,
    pub insert_session: String,
    pub delete_session: String,
    pub refresh_session: String,
    pub sessions_of_user: String,
    pub insert_user: String,
    pub insert_account: String,
    pub consume: String,
}

impl FloorSql {
    /// The default layout's texts (the constants above).
    pub fn default_layout() -> Self {
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
}

pub struct FloorStatements {
    pub session_by_token: Statement,
    pub session_by_token_all: Statement,
    pub user_by_id: Statement,
    pub user_by_email: Statement,
    pub user_with_accounts: Statement,
    pub insert_session: Statement,
    pub delete_session: Statement,
    pub refresh_session: Statement,
    pub sessions_of_user: Statement,
    pub insert_user: Statement,
    pub insert_account: Statement,
    pub consume: Statement,
}

/// Plain tokio-postgres on one client. The gate exists only because a transaction on a
/// shared client must keep other tasks' statements out; only sign-up takes it.
pub struct Floor {
    pub client: Client,
    pub gate: RwLock<()>,
    pub statements: FloorStatements,
}

impl Floor {
    pub async fn prepare(client: Client, sql: &FloorSql) -> Self {
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
pub struct SessionRow {
    pub id: String,
    pub user_id: String,
    pub expires_at: OffsetDateTime,
    pub token: String,
    pub ip_address: Option<String>,
    pub user_agent: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Column positions of (id, user_id, expires_at, token, ip_address, user_agent, created_at,
/// updated_at) in a SESSION_FIELDS row and in an all-fields (schema order) row.
pub const SESSION_FIELDS_COLUMNS: [usize; 8] = [0, 1, 2, 3, 4, 5, 6, 7];
pub const SESSION_ALL_COLUMNS: [usize; 8] = [0, 7, 1, 2, 5, 6, 3, 4];

pub fn session_row(row: &Row, at: [usize; 8]) -> SessionRow {
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
pub struct UserRow {
    pub id: String,
    pub name: String,
    pub email: String,
    pub email_verified: bool,
    pub image: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

pub fn user_row(row: &Row, first: usize) -> UserRow {
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
pub struct AccountRow {
    pub id: String,
    pub account_id: String,
    pub provider_id: String,
    pub user_id: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub access_token_expires_at: Option<OffsetDateTime>,
    pub refresh_token_expires_at: Option<OffsetDateTime>,
    pub scope: Option<String>,
    pub password: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// The joined account (schema order) starting at column `first`; `None` for the LEFT JOIN's
/// all-NULL row.
pub fn account_row(row: &Row, first: usize) -> Option<AccountRow> {
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
pub enum Call {
    GetSession,
    GetSessionHttp,
    UserByEmail,
    UserByEmailWithAccounts,
    SessionCreateDelete,
    SessionExpiryUpdate,
    RateLimitConsume,
    SessionsOfUser,
    SignUp,
    /// One call drawn from the mix ([`MIX`]) by the task's own mix generator.
    Mixed,
}

/// The mixed workload: percent of ops per call (drawn per op, deterministic per task).
pub const MIX: [(Call, usize); 4] = [
    (Call::GetSession, 85),
    (Call::SessionExpiryUpdate, 5),
    (Call::RateLimitConsume, 5),
    (Call::SignUp, 5),
];

impl Call {
    pub const ALL: [Call; 10] = [
        Call::GetSession,
        Call::GetSessionHttp,
        Call::UserByEmail,
        Call::UserByEmailWithAccounts,
        Call::SessionCreateDelete,
        Call::SessionExpiryUpdate,
        Call::RateLimitConsume,
        Call::SessionsOfUser,
        Call::SignUp,
        Call::Mixed,
    ];

    pub fn name(self) -> &'static str {
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
            Call::Mixed => "mixed",
        }
    }

    pub fn description(self) -> &'static str {
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
            Call::Mixed => {
                "one call per op drawn from 85% get_session, 5% session_expiry_update (session \
                 refresh), 5% rate_limit_consume, 5% sign_up; per-task generator seeded by round, \
                 call and task only, so every implementation draws the same sequence"
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Sequential,
    Pipelined,
    /// `pool_tasks` tasks over `pool_connections` connections (a pool, or ours with
    /// `max_connections`).
    Pool,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Sequential => "sequential",
            Mode::Pipelined => "pipelined",
            Mode::Pool => "pool",
        }
    }
}

#[derive(Clone)]
pub enum Engine {
    Adapter {
        db: Arc<dyn DbAdapter>,
        limiter: Arc<dyn RateLimitStore>,
    },
    Floor(Arc<Floor>),
    /// The floor on a deadpool-postgres pool, statements from `prepare_cached`.
    PoolFloor(Arc<PoolFloor>),
}

impl Engine {
    /// One of this crate's adapters, with its rate-limit store.
    pub fn adapter(adapter: rustauth_tokio_postgres::TokioPostgresAdapter) -> Self {
        let limiter = adapter.rate_limit_store();
        Self::Adapter {
            db: Arc::new(adapter),
            limiter: Arc::new(limiter),
        }
    }
}

#[derive(Clone)]
pub struct Implementation {
    pub label: &'static str,
    /// Prefix of this implementation's own rate-limit keys.
    pub tag: &'static str,
    pub engine: Engine,
}
/// One task's view of the seeded data.
pub struct Task {
    pub rng: Rng,
    /// Draws the calls of [`Call::Mixed`]; seeded without the implementation, so every
    /// implementation draws the same sequence.
    pub mix: Rng,
    pub users: usize,
    pub rate_limit_keys: usize,
    pub tag: &'static str,
}

impl Task {
    pub fn user(&mut self) -> usize {
        self.rng.index(self.users)
    }

    pub fn session(&mut self) -> usize {
        self.rng.index(self.users * SESSIONS_PER_USER)
    }

    pub fn rate_limit_key(&mut self) -> String {
        let index = self.rng.index(self.rate_limit_keys);
        rate_limit_key(self.tag, index)
    }

    /// The call one op of `call` runs: `call` itself, or one drawn from [`MIX`].
    pub fn resolve(&mut self, call: Call) -> Call {
        if call != Call::Mixed {
            return call;
        }
        let mut draw = self.mix.index(100);
        for (drawn, percent) in MIX {
            if draw < percent {
                return drawn;
            }
            draw -= percent;
        }
        unreachable!("MIX adds up to 100")
    }
}

pub fn string_field<'r>(record: &'r DbRecord, key: &str) -> &'r str {
    match record.get(key) {
        Some(DbValue::String(value)) => value,
        other => panic!("expected a string `{key}`, got {other:?}"),
    }
}

/// One call through a `DbAdapter` / `RateLimitStore`. Returns false for a rate-limit denial.
pub async fn adapter_call(
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
            let email = sign_up_email();
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
        Call::Mixed => unreachable!("Implementation::call resolves the mix"),
    }
    true
}

/// The same call on the floor. Returns false for a rate-limit denial.
pub async fn floor_call(floor: &Floor, call: Call, task: &mut Task) -> bool {
    let client = &floor.client;
    let st = &floor.statements;
    match call {
        Call::GetSession | Call::GetSessionHttp => {
            let token = session_token(task.session());
            let session =
                floor_get_session(client, &st.session_by_token, &st.user_by_id, &token).await;
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
            floor_user_by_email(client, &st.user_by_email, &user_email(task.user())).await;
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
            floor_refresh(client, &st.refresh_session, &session_token(task.session())).await;
        }
        Call::RateLimitConsume => {
            return floor_consume(client, &st.consume, task.rate_limit_key()).await;
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
            let email = sign_up_email();
            {
                let _shared = floor.gate.read().await;
                floor_lookups_absent(client, &st.user_by_email, &email).await;
            }
            let _exclusive = floor.gate.write().await;
            floor_sign_up_transaction(
                client,
                [&st.insert_user, &st.insert_account, &st.insert_session],
                email,
            )
            .await;
        }
        Call::Mixed => unreachable!("Implementation::call resolves the mix"),
    }
    true
}

/// A fresh sign-up email (never seeded, removed by [`remove_sign_ups`]).
pub fn sign_up_email() -> String {
    format!(
        "signup{}@example.com",
        NEXT_ID.fetch_add(1, Ordering::Relaxed)
    )
}

// The floors' statements, shared by the single-connection floor and the pooled one.

/// Session by token, then its user (SESSION_FIELDS, USER_FIELDS).
pub async fn floor_get_session(
    client: &Client,
    by_token: &Statement,
    by_id: &Statement,
    token: &str,
) -> SessionRow {
    let row = client
        .query_opt(by_token, &[&token])
        .await
        .expect("session by token")
        .expect("the seeded session exists");
    let session = session_row(&row, SESSION_FIELDS_COLUMNS);
    let row = client
        .query_opt(by_id, &[&session.user_id])
        .await
        .expect("user by id")
        .expect("the session's user exists");
    let user = user_row(&row, 0);
    assert_eq!(user.id, session.user_id);
    session
}

pub async fn floor_user_by_email(client: &Client, by_email: &Statement, email: &str) {
    let row = client
        .query_opt(by_email, &[&email])
        .await
        .expect("user by email")
        .expect("the seeded user exists");
    assert_eq!(user_row(&row, 0).email, email);
}

pub async fn floor_refresh(client: &Client, refresh: &Statement, token: &str) {
    let now = OffsetDateTime::now_utc();
    let expires_at = now + time::Duration::days(SESSION_LIFETIME_DAYS);
    let row = client
        .query_opt(refresh, &[&expires_at, &now, &token])
        .await
        .expect("update session expiry")
        .expect("the seeded session exists");
    assert_eq!(session_row(&row, SESSION_ALL_COLUMNS).token, token);
}

/// Returns false for a denial.
pub async fn floor_consume(client: &Client, consume: &Statement, key: String) -> bool {
    let input = rate_limit_input(key);
    let max = RATE_LIMIT_MAX as i64;
    let window_ms = RATE_LIMIT_WINDOW_SECONDS * 1000;
    // As in src/rate_limit.rs: a denial racing a concurrent first insert shows no
    // row; the next attempt sees it.
    for _ in 0..3 {
        let row = client
            .query_opt(consume, &[&input.key, &input.now_ms, &max, &window_ms])
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

/// Sign-up's two lookups by email, as core makes them (both find nothing).
pub async fn floor_lookups_absent(client: &Client, by_email: &Statement, email: &str) {
    for _ in 0..2 {
        let existing = client
            .query_opt(by_email, &[&email])
            .await
            .expect("user by email");
        assert!(existing.is_none(), "a new email is free");
    }
}

/// BEGIN, insert user, credential account and session, COMMIT; the caller keeps every other
/// statement off `client` meanwhile.
pub async fn floor_sign_up_transaction(
    client: &Client,
    [insert_user, insert_account, insert_session]: [&Statement; 3],
    email: String,
) {
    let now = OffsetDateTime::now_utc();
    let expires_at = now + time::Duration::days(SESSION_LIFETIME_DAYS);
    let user = fresh_id('U');
    let (account, session, token) = (fresh_id('A'), fresh_id('S'), fresh_id('T'));
    let no_text: Option<&str> = None;
    let no_time: Option<OffsetDateTime> = None;
    client.batch_execute("BEGIN").await.expect("BEGIN");
    client
        .execute(
            insert_user,
            &[&user, &"Bench User", &email, &false, &no_text, &now, &now],
        )
        .await
        .expect("create user");
    client
        .execute(
            insert_account,
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
            insert_session,
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

/// The floor on a deadpool-postgres pool: per op one pooled connection, its statements from
/// `prepare_cached` (prepared once per connection, then a cache lookup).
pub struct PoolFloor {
    pub pool: deadpool_postgres::Pool,
    pub sql: FloorSql,
}

impl PoolFloor {
    /// A pool of `size` connections (`RecyclingMethod::Fast`), all opened now.
    pub async fn connect(url: &str, size: usize, sql: FloorSql) -> Self {
        let config = url
            .parse::<tokio_postgres::Config>()
            .expect("a tokio-postgres URL");
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let pool = deadpool_postgres::Pool::builder(manager)
            .max_size(size)
            .build()
            .expect("build the floor's pool");
        let floor = Self { pool, sql };
        // Open every connection before measuring.
        let mut held = Vec::new();
        for _ in 0..size {
            held.push(floor.pool.get().await.expect("open a pooled connection"));
        }
        drop(held);
        floor
    }
}

/// The pool mode's calls on the pooled floor. Returns false for a rate-limit denial.
pub async fn pool_floor_call(floor: &PoolFloor, call: Call, task: &mut Task) -> bool {
    let client = floor.pool.get().await.expect("a pooled connection");
    let sql = &floor.sql;
    let prepare = |text: &String| {
        let client = &client;
        let text = text.clone();
        async move {
            client
                .prepare_cached(&text)
                .await
                .expect("prepare_cached a floor statement")
        }
    };
    match call {
        Call::GetSession => {
            let by_token = prepare(&sql.session_by_token).await;
            let by_id = prepare(&sql.user_by_id).await;
            let token = session_token(task.session());
            floor_get_session(&client, &by_token, &by_id, &token).await;
        }
        Call::UserByEmail => {
            let by_email = prepare(&sql.user_by_email).await;
            floor_user_by_email(&client, &by_email, &user_email(task.user())).await;
        }
        Call::SessionExpiryUpdate => {
            let refresh = prepare(&sql.refresh_session).await;
            floor_refresh(&client, &refresh, &session_token(task.session())).await;
        }
        Call::RateLimitConsume => {
            let consume = prepare(&sql.consume).await;
            return floor_consume(&client, &consume, task.rate_limit_key()).await;
        }
        Call::SignUp => {
            let email = sign_up_email();
            let by_email = prepare(&sql.user_by_email).await;
            floor_lookups_absent(&client, &by_email, &email).await;
            let insert_user = prepare(&sql.insert_user).await;
            let insert_account = prepare(&sql.insert_account).await;
            let insert_session = prepare(&sql.insert_session).await;
            floor_sign_up_transaction(
                &client,
                [&insert_user, &insert_account, &insert_session],
                email,
            )
            .await;
        }
        other => panic!("{} has no pooled floor", other.name()),
    }
    true
}

/// What one op did.
pub struct Outcome {
    /// The call it ran (for [`Call::Mixed`], the one drawn).
    pub ran: Call,
    /// False for a rate-limit denial.
    pub permitted: bool,
}

impl Implementation {
    pub async fn call(&self, call: Call, task: &mut Task) -> Outcome {
        let ran = task.resolve(call);
        let permitted = match &self.engine {
            Engine::Adapter { db, limiter } => {
                adapter_call(db.as_ref(), limiter.as_ref(), ran, task).await
            }
            Engine::Floor(floor) => floor_call(floor, ran, task).await,
            Engine::PoolFloor(floor) => pool_floor_call(floor, ran, task).await,
        };
        Outcome { ran, permitted }
    }
}

// ---------------------------------------------------------------------------------------------
// Measuring.

pub struct Sample {
    pub ops_per_second: f64,
    pub p50_micros: f64,
    pub p99_micros: f64,
    pub denied: u64,
    /// For [`Call::Mixed`]: p50 and p99 (µs) of the get-session ops inside the mix.
    pub mix_get_session: Option<(f64, f64)>,
}

/// Nearest-rank percentile (µs) of sorted nanosecond latencies.
fn percentile_micros(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// Runs `call` for `duration` on `tasks` concurrent tasks sharing the implementation.
/// `seed` drives each task's choice of users, sessions and keys; `mix_seed` the calls drawn
/// for [`Call::Mixed`] (give every implementation the same one).
pub async fn measure(
    implementation: &Implementation,
    call: Call,
    tasks: usize,
    duration: Duration,
    config: &Config,
    seed: u64,
    mix_seed: u64,
) -> Sample {
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for index in 0..tasks {
        let implementation = implementation.clone();
        let mut task = Task {
            rng: Rng(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            mix: Rng(mix_seed ^ (index as u64).wrapping_mul(0x9fb2_1c65_1e98_df25)),
            users: config.users,
            rate_limit_keys: config.rate_limit_keys,
            tag: implementation.tag,
        };
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut get_session = Vec::new();
            let mut denied = 0u64;
            // At least one call per task, so that even a zero-length smoke run checks results.
            loop {
                let began = Instant::now();
                let outcome = implementation.call(call, &mut task).await;
                let took = began.elapsed().as_nanos() as u64;
                if !outcome.permitted {
                    denied += 1;
                }
                latencies.push(took);
                if call == Call::Mixed && outcome.ran == Call::GetSession {
                    get_session.push(took);
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            (latencies, get_session, denied)
        });
    }
    let mut latencies = Vec::new();
    let mut get_session = Vec::new();
    let mut denied = 0;
    while let Some(joined) = set.join_next().await {
        let (task_latencies, task_get_session, task_denied) =
            joined.expect("a benchmark task panicked");
        latencies.extend(task_latencies);
        get_session.extend(task_get_session);
        denied += task_denied;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    get_session.sort_unstable();
    Sample {
        ops_per_second: latencies.len() as f64 / elapsed,
        p50_micros: percentile_micros(&latencies, 0.50),
        p99_micros: percentile_micros(&latencies, 0.99),
        denied,
        mix_get_session: (!get_session.is_empty()).then(|| {
            (
                percentile_micros(&get_session, 0.50),
                percentile_micros(&get_session, 0.99),
            )
        }),
    }
}

pub fn median(values: &[f64]) -> f64 {
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

pub struct Config {
    /// False when run without `--bench` (e.g. by `cargo test --all-targets`).
    pub full: bool,
    pub quick: bool,
    pub seconds: f64,
    pub warmup: f64,
    pub rounds: usize,
    pub users: usize,
    pub rate_limit_keys: usize,
    pub tasks: usize,
    /// Pool mode: tasks, and connections they share.
    pub pool_tasks: usize,
    pub pool_connections: usize,
    pub workers: Option<usize>,
    pub filters: Vec<String>,
    /// `BENCH_RTT_US`: a delay proxy adding this round trip (µs) in front of the server.
    pub rtt_us: Option<u64>,
    /// Whether "generic" and the Better Auth adapter keep plans per query shape.
    pub shape_cache: bool,
}

pub fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(parsed) => Some(parsed),
        Err(_) => panic!("{name}={value:?} is not a valid number"),
    }
}

pub fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

impl Config {
    /// A smoke run's configuration (300 users, one call per task, one round, no timing): what
    /// a bench target does when run without `--bench`, and the base of other drivers'.
    pub fn smoke() -> Self {
        Self {
            full: false,
            quick: true,
            // Every task still makes at least one call, and checks its result.
            seconds: 0.0,
            warmup: 0.0,
            rounds: 1,
            users: 300,
            rate_limit_keys: 1000,
            tasks: 16,
            pool_tasks: 16,
            pool_connections: 4,
            workers: None,
            filters: Vec::new(),
            rtt_us: None,
            shape_cache: true,
        }
    }

    pub fn from_env_and_args() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let full = args.iter().any(|arg| arg == "--bench");
        let filters = args
            .iter()
            .filter(|arg| !arg.starts_with('-'))
            .cloned()
            .collect();
        if !full {
            return Self {
                filters,
                ..Self::smoke()
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
            pool_tasks: env_number("BENCH_POOL_TASKS").unwrap_or(16usize).max(1),
            // ours allows 1 to 64 connections.
            pool_connections: env_number("BENCH_POOL_CONNECTIONS")
                .unwrap_or(4usize)
                .clamp(1, 64),
            workers: env_number("BENCH_WORKERS"),
            filters,
            rtt_us: env_number("BENCH_RTT_US").filter(|rtt: &u64| *rtt > 0),
            shape_cache: std::env::var("BENCH_SHAPE_CACHE").map_or(true, |v| v.trim() != "0"),
        }
    }

    pub fn calls(&self) -> Vec<Call> {
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

    /// The command line that repeats this run; `bench` is e.g. `cargo bench --bench hot_paths`.
    pub fn reproduce(&self, bench: &str) -> String {
        if !self.full {
            return bench.replacen("cargo bench", "cargo test", 1);
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
        env.push(format!("BENCH_POOL_TASKS={}", self.pool_tasks));
        env.push(format!("BENCH_POOL_CONNECTIONS={}", self.pool_connections));
        if let Some(workers) = self.workers {
            env.push(format!("BENCH_WORKERS={workers}"));
        }
        if !self.shape_cache {
            env.push("BENCH_SHAPE_CACHE=0".to_owned());
        }
        if let Some(rtt) = self.rtt_us {
            env.push(format!("BENCH_RTT_US={rtt}"));
        }
        let filters = if self.filters.is_empty() {
            String::new()
        } else {
            format!(" -- {}", self.filters.join(" "))
        };
        format!("{} {bench}{filters}", env.join(" "))
    }
}

/// A fresh benchmark database with `synchronous_commit = off` on it only, the default schema
/// with database rate limiting, the floor's SQL for it (checked against core's planner), and
/// what drops the database at the end.
pub async fn benchmark_database(label: &str) -> (String, DbSchema, FloorSql, BenchDatabase) {
    let url = crate::server::fresh_database(label).await;
    let name = database_name(&url);
    let admin = crate::server::connect(&crate::server::server_url().await).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{name}\" SET synchronous_commit = off"
        ))
        .await
        .expect("ALTER DATABASE … SET synchronous_commit = off");
    let schema = fixtures::schema();
    let floor_sql = FloorSql::default_layout();
    check_floor_sql(&schema, &floor_sql);
    (url, schema, floor_sql, BenchDatabase { name, admin })
}

/// The benchmark database of [`benchmark_database`], to drop at the end.
pub struct BenchDatabase {
    name: String,
    admin: Client,
}

impl BenchDatabase {
    /// Drops the database (`bench` names the benchmark in a warning if it cannot).
    pub async fn drop(&self, bench: &str) {
        drop_database(&self.admin, &self.name, bench).await;
    }
}

/// The database name at the end of a URL made by `server::fresh_database` (`[a-z0-9_]` only).
pub fn database_name(url: &str) -> String {
    let path = url.rsplit('/').next().unwrap_or_default();
    path.split(['?', '#']).next().unwrap_or_default().to_owned()
}

pub async fn seed(client: &Client, config: &Config, tags: &[&str]) {
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
pub async fn remove_sign_ups(client: &Client, schema: &DbSchema) {
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

/// Drops the benchmark database once every connection to it is closed.
pub async fn drop_database(admin: &Client, name: &str, bench: &str) {
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
        eprintln!("{bench}: could not drop database {name}: {error}");
    }
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|_| "unknown".to_owned())
}

pub fn fmt_rate(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

pub fn fmt_micros(p50: f64, p99: f64) -> String {
    format!("{p50:.0} / {p99:.0}")
}
