//! The hand-written floor: the same SQL text, prepared once per connection, decoded into
//! plain structs, and its calls (one connection, or a deadpool pool).

use std::sync::atomic::Ordering;

use rustauth_core::db::{
    create_statement, delete_one_statement, find_many_statement, find_many_with_joins_statement,
    find_one_statement, update_one_plan, Create, DbSchema, FindMany, FindOne, SqlDialect,
    SqlUpdateOnePlan,
};
use time::OffsetDateTime;
use tokio::sync::RwLock;
use tokio_postgres::{Client, Row, Statement};

use super::*;

// ---------------------------------------------------------------------------------------------
// The hand-written floor: the same SQL text, prepared once per connection.

/// The floor's SQL texts for `schema`: each exactly what rustauth-core 0.3.2 plans for the
/// same query (so the floor runs the very text the adapters run, with none of their work),
/// and the rate limit's the crate's single-statement consume as kept in
/// `queries/rate_limit.sql`.
pub fn planned_floor_sql(schema: &DbSchema) -> FloorSql {
    let pg = SqlDialect::Postgres;
    let now = OffsetDateTime::now_utc();
    let read = |query: FindOne| {
        find_one_statement(pg, schema, &query)
            .expect("core plans the query")
            .statement
            .sql
    };
    // A find_one with joins runs as a find_many with limit 1 and the same joins.
    let joined = q_user_by_email_with_accounts("x");
    let mut as_many = FindMany::new(joined.model.clone()).limit(1);
    as_many.where_clauses = joined.where_clauses;
    as_many.select = joined.select;
    as_many.joins = joined.joins;
    let create = |query: Create| {
        create_statement(pg, schema, &query)
            .expect("core plans the insert")
            .sql
    };
    let refresh = match update_one_plan(pg, schema, &q_refresh_session("x", now, now))
        .expect("core plans the update")
    {
        SqlUpdateOnePlan::Returning(statement) => statement.statement.sql,
        other => panic!("unexpected update plan for postgres: {other:?}"),
    };
    let user_by_id = read(q_user_by_id("x", true));
    // The floor runs this one text for a user by id with and without a select list.
    assert_eq!(
        user_by_id,
        read(q_user_by_id("x", false)),
        "core plans a user by id with USER_FIELDS and with every field differently"
    );
    FloorSql {
        session_by_token: read(q_session_by_token("x", true)),
        session_by_token_all: read(q_session_by_token("x", false)),
        user_by_id,
        user_by_email: read(q_user_by_email("x")),
        user_with_accounts: find_many_with_joins_statement(pg, schema, &as_many)
            .expect("core plans the join")
            .statement
            .sql,
        insert_session: create(q_create_session(
            "i".into(),
            "u".into(),
            "t".into(),
            now,
            now,
        )),
        delete_session: delete_one_statement(pg, schema, &q_delete_session("x"))
            .expect("core plans the delete")
            .statement
            .sql,
        refresh_session: refresh,
        sessions_of_user: find_many_statement(pg, schema, &q_sessions_of_user("x"))
            .expect("core plans the query")
            .statement
            .sql,
        insert_user: create(q_create_user("i".into(), "e".into(), now)),
        insert_account: create(q_create_account("i".into(), "u".into(), now)),
        consume: crate_consume_sql(),
    }
}

/// Fails loudly if the floor's SQL is not the text core 0.3.2 plans for the same queries on
/// `schema` (for a floor whose texts were renamed for another layout).
pub fn check_floor_sql(schema: &DbSchema, sql: &FloorSql) {
    let planned = planned_floor_sql(schema);
    let pairs = [
        (
            "session by token",
            &sql.session_by_token,
            &planned.session_by_token,
        ),
        (
            "session by token, all fields",
            &sql.session_by_token_all,
            &planned.session_by_token_all,
        ),
        ("user by id", &sql.user_by_id, &planned.user_by_id),
        ("user by email", &sql.user_by_email, &planned.user_by_email),
        (
            "user by email with accounts",
            &sql.user_with_accounts,
            &planned.user_with_accounts,
        ),
        (
            "session insert",
            &sql.insert_session,
            &planned.insert_session,
        ),
        ("user insert", &sql.insert_user, &planned.insert_user),
        (
            "account insert",
            &sql.insert_account,
            &planned.insert_account,
        ),
        (
            "session delete",
            &sql.delete_session,
            &planned.delete_session,
        ),
        (
            "session expiry update",
            &sql.refresh_session,
            &planned.refresh_session,
        ),
        (
            "sessions of a user",
            &sql.sessions_of_user,
            &planned.sessions_of_user,
        ),
    ];
    for (what, floor, core) in pairs {
        assert_eq!(
            floor, core,
            "the floor's SQL for {what} differs from what rustauth-core 0.3.2 plans"
        );
    }
}

/// The crate's consume statement as kept in `queries/rate_limit.sql`, its named parameters
/// numbered as the generated statement numbers them (`$1` key, `$2` now in ms, `$3` window
/// in ms, `$4` max).
pub fn crate_consume_sql() -> String {
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
        .expect("queries/rate_limit.sql holds the consume statement on one line")
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
    /// The default layout's texts.
    pub fn default_layout() -> Self {
        planned_floor_sql(&fixtures::schema())
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
