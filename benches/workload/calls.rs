//! Calls, the mix, modes and implementations, and one call of each on the adapters.

use std::sync::Arc;

use rustauth_core::db::{DbAdapter, DbRecord, DbValue};
use rustauth_core::options::RateLimitStore;
use time::OffsetDateTime;

use super::*;

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
