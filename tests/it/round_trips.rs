//! Round trips, counted on the wire.
//!
//! A counting proxy (`tests/support_proxy/`) sits between the adapter and the test server and
//! counts the frontend protocol messages each call sends. tokio-postgres' `prepare` sends
//! Parse + Describe + Sync; a query on a prepared statement sends Bind + Execute + Sync; a
//! simple query (`batch_execute`, used for BEGIN and COMMIT) sends one Query. Every Sync and
//! every Query waits for one ReadyForQuery, so Syncs + Queries = round trips.
//!
//! What these tests pin down, on the default schema:
//! * the first typed call of a connection prepares every typed statement the schema can use
//!   in one pipelined batch (all Parses in flight at once), then runs;
//! * once warm, each hot call of behaviour.md §9 is exactly one round trip (1 Bind,
//!   1 Execute, 1 Sync, no Parse, no Query), served by a typed statement, and so is a
//!   rate-limit consume through `adapter.rate_limit_store()`, permitted or denied;
//! * a generic-path call is one round trip once its statement is cached;
//! * sign-up's transaction is BEGIN + 3 executes + COMMIT with no Parse when warm.
//!
//! Run with `--nocapture` to see the tables.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::{consume_input, text};
use crate::support;
use crate::support_proxy;

use std::fmt::Write as _;

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbRecord, DbSchema, DbValue, Delete,
    DeleteMany, FindMany, FindOne, JoinOption, RateLimitStorage, Sort, SortDirection, Update,
    Where, WhereOperator,
};
use rustauth_core::options::RateLimitStore;
use rustauth_tokio_postgres::layout::{
    ACCOUNT_FIELDS, SESSION_FIELDS, USER_FIELDS, VERIFICATION_FIELDS,
};
use rustauth_tokio_postgres::TokioPostgresAdapter;
use support_proxy::{CountingProxy, Messages};
use time::OffsetDateTime;

/// The typed statements the first typed call prepares for the default schema (see
/// src/typed/statements.rs): users 4 (by id, by email, insert, set email_verified), the sign-in join 1,
/// sessions 7, accounts 2, verifications 4. The rate-limit statement is its own group,
/// prepared by the first consume.
const TYPED_STATEMENTS: u64 = 4 + 1 + 7 + 2 + 4;

/// The user every read finds.
const USER_ID: &str = "user-main";
const EMAIL: &str = "main@example.com";
const TOKEN: &str = "token-main";

/// One warm call: exactly one extended-protocol round trip on a prepared statement.
const ONE_ROUND_TRIP: Messages = Messages {
    parse: 0,
    describe: 0,
    bind: 1,
    execute: 1,
    sync: 1,
    query: 0,
    close: 0,
    other: 0,
};

fn migration_schema() -> DbSchema {
    auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    })
}

/// A fixed instant, `seconds` after a base far in the future (sessions stay valid).
fn at(seconds: i64) -> DbValue {
    DbValue::Timestamp(
        OffsetDateTime::from_unix_timestamp(1_900_000_000 + seconds).expect("timestamp"),
    )
}

fn eq(field: &str, value: impl Into<String>) -> Where {
    Where::new(field, text(value))
}

/// Sign-up's user insert (behaviour.md §9, sign-up 3a).
fn create_user(id: &str, email: &str) -> Create {
    Create::new("user")
        .data("id", text(id))
        .data("name", text("Ada"))
        .data("email", text(email))
        .data("email_verified", DbValue::Boolean(false))
        .data("image", DbValue::Null)
        .data("created_at", at(0))
        .data("updated_at", at(0))
        .select(USER_FIELDS)
        .force_allow_id()
}

/// Sign-up's credential account insert (3b).
fn create_account(id: &str, user_id: &str) -> Create {
    let mut create = Create::new("account")
        .data("id", text(id))
        .data("account_id", text(user_id))
        .data("provider_id", text("credential"))
        .data("user_id", text(user_id));
    for field in [
        "access_token",
        "refresh_token",
        "id_token",
        "access_token_expires_at",
        "refresh_token_expires_at",
        "scope",
    ] {
        create = create.data(field, DbValue::Null);
    }
    create
        .data("password", text("hash"))
        .data("created_at", at(0))
        .data("updated_at", at(0))
        .select(ACCOUNT_FIELDS)
        .force_allow_id()
}

/// Sign-up's and sign-in's session insert (3c).
fn create_session(id: &str, user_id: &str, token: &str) -> Create {
    Create::new("session")
        .data("id", text(id))
        .data("user_id", text(user_id))
        .data("expires_at", at(7 * 86_400))
        .data("token", text(token))
        .data("ip_address", text("127.0.0.1"))
        .data("user_agent", text("round-trips"))
        .data("created_at", at(0))
        .data("updated_at", at(0))
        .select(SESSION_FIELDS)
        .force_allow_id()
}

/// Password reset's verification insert.
fn create_verification(id: &str, identifier: &str, expires_at: DbValue) -> Create {
    Create::new("verification")
        .data("id", text(id))
        .data("identifier", text(identifier))
        .data("value", text(USER_ID))
        .data("expires_at", expires_at)
        .data("created_at", at(0))
        .data("updated_at", at(0))
        .select(VERIFICATION_FIELDS)
        .force_allow_id()
}

/// A fresh database migrated with database rate limiting, seeded through a direct adapter;
/// then a proxy in front of its server and an adapter with the default schema connected
/// through it, which has sent nothing but its startup yet.
async fn setup(label: &str) -> (CountingProxy, TokioPostgresAdapter) {
    let url = support::fresh_database(label).await;
    let direct = TokioPostgresAdapter::connect(&url).await.expect("connect");
    direct
        .run_migrations(&migration_schema())
        .await
        .expect("migrate");
    direct
        .create(create_user(USER_ID, EMAIL))
        .await
        .expect("seed user");
    direct
        .create(create_account("account-main", USER_ID))
        .await
        .expect("seed account");
    direct
        .create(create_session("session-main", USER_ID, TOKEN))
        .await
        .expect("seed session");
    for index in 0..2 {
        direct
            .create(create_session(
                &format!("session-doomed-{index}"),
                USER_ID,
                &format!("token-doomed-{index}"),
            ))
            .await
            .expect("seed doomed session");
        direct
            .create(create_verification(
                &format!("verification-doomed-{index}"),
                &format!("doomed:{index}"),
                at(3_600),
            ))
            .await
            .expect("seed doomed verification");
        direct
            .create(create_verification(
                &format!("verification-expired-{index}"),
                &format!("expired:{index}"),
                DbValue::Timestamp(OffsetDateTime::UNIX_EPOCH),
            ))
            .await
            .expect("seed expired verification");
    }
    direct
        .create(create_verification(
            "verification-reset",
            "reset-password:main",
            at(3_600),
        ))
        .await
        .expect("seed verification");
    drop(direct);

    let proxy = CountingProxy::start(&url).await;
    let adapter = TokioPostgresAdapter::new(proxy.connect().await);
    assert_eq!(proxy.connections(), 1);
    assert_eq!(
        proxy.in_flight(),
        0,
        "nothing pending once connected: {:?}",
        proxy.snapshot()
    );
    (proxy, adapter)
}

/// One measured call: its frontend messages and how many calls typed statements served.
struct Cost {
    call: String,
    messages: Messages,
    typed: u64,
}

#[derive(Default)]
struct Table {
    rows: Vec<Cost>,
}

impl Table {
    fn push(&mut self, call: &str, messages: Messages, typed: u64) {
        self.rows.push(Cost {
            call: call.to_owned(),
            messages,
            typed,
        });
    }

    fn render(&self, title: &str) -> String {
        let width = self
            .rows
            .iter()
            .map(|row| row.call.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let mut out = format!(
            "\n{title}\n{:width$} | trips | sync | parse | describe | bind | execute | query | close | typed\n",
            "call"
        );
        for row in &self.rows {
            let m = row.messages;
            writeln!(
                out,
                "{:width$} | {:>5} | {:>4} | {:>5} | {:>8} | {:>4} | {:>7} | {:>5} | {:>5} | {:>5}",
                row.call,
                m.round_trips(),
                m.sync,
                m.parse,
                m.describe,
                m.bind,
                m.execute,
                m.query,
                m.close,
                row.typed
            )
            .expect("write table");
        }
        out
    }
}

/// Awaits `$call` once, measured; pushes its cost on `$table` and evaluates to the cost and the
/// call's result.
macro_rules! measure {
    ($table:expr, $proxy:expr, $adapter:expr, $label:literal, $call:expr) => {{
        let typed = $adapter.typed_call_count();
        let before = $proxy.snapshot();
        let value = $call.await.expect($label);
        let messages = $proxy.snapshot().since(before);
        $table.push($label, messages, $adapter.typed_call_count() - typed);
        (messages, value)
    }};
}

/// Runs `$call` once with `$i = 0` to warm it, then once more with `$i = 1`, measured; pushes
/// the measured cost on `$table` and evaluates to the measured call's result.
macro_rules! warm {
    ($table:expr, $proxy:expr, $adapter:expr, $label:literal, |$i:ident| $call:expr) => {{
        {
            let $i: usize = 0;
            let _ = $i;
            $call.await.expect(concat!("warm-up: ", $label));
        }
        let $i: usize = 1;
        let _ = $i;
        measure!($table, $proxy, $adapter, $label, $call).1
    }};
}

#[tokio::test]
async fn first_typed_call_prepares_every_typed_statement_in_one_pipelined_batch() {
    let (proxy, adapter) = setup("round_trips_first").await;
    let mut table = Table::default();

    // The connection's first call: session by token, as GET /get-session starts.
    let by_token = || {
        adapter.find_one(
            FindOne::new("session")
                .where_clause(eq("token", TOKEN))
                .select(SESSION_FIELDS),
        )
    };
    proxy.reset_max_in_flight();
    let (first, found) = measure!(
        table,
        proxy,
        adapter,
        "first typed call (session by token)",
        by_token()
    );
    let in_flight = proxy.max_in_flight();
    assert_eq!(
        found.and_then(|session| session.get("user_id").cloned()),
        Some(text(USER_ID))
    );

    // Its warm twin, for comparison.
    let (second, _) = measure!(table, proxy, adapter, "same call, second time", by_token());

    // The first consume prepares the rate-limit group (one statement), then runs it.
    let store = adapter.rate_limit_store();
    let (first_consume, decision) = measure!(
        table,
        proxy,
        adapter,
        "first rate-limit consume",
        store.consume(consume_input("127.0.0.1|/get-session", 10, 100, 1_000))
    );
    assert!(decision.permitted);

    // A shape no typed statement serves: prepared through the generic cache, then run.
    let (first_generic, users) = measure!(
        table,
        proxy,
        adapter,
        "first generic call (find_many user limit 5)",
        adapter.find_many(FindMany::new("user").limit(5))
    );
    assert_eq!(users.len(), 1);

    println!(
        "{}most round trips in flight during the first typed call: {in_flight}",
        table.render("first calls of a connection")
    );

    // The first typed call: every typed statement prepared (Parse + Describe + Sync each) and
    // the live catalog of the core tables read (one unnamed statement: Parse + Describe +
    // Bind + Execute + Sync), then the call itself (Bind + Execute + Sync). No simple query,
    // nothing closed.
    assert_eq!(
        first,
        Messages {
            parse: TYPED_STATEMENTS + 1,
            describe: TYPED_STATEMENTS + 1,
            bind: 2,
            execute: 2,
            sync: TYPED_STATEMENTS + 2,
            ..Messages::default()
        },
        "first typed call"
    );
    // The catalog is read first (so that nothing is prepared on a table that does not exist:
    // the server would log an ERROR for it), then the preparations are pipelined: all sent
    // before the first answer came back, so the batch costs one round trip of latency, not
    // eighteen. (tokio-postgres queues a prepare's Parse + Describe + Sync when its future is
    // first polled, and src/typed/statements.rs polls all of them in one join; on this single-threaded
    // test runtime the connection task then writes the whole queue before the proxy, or the
    // server's answer, gets a turn.)
    assert_eq!(
        in_flight,
        i64::try_from(TYPED_STATEMENTS).expect("small"),
        "every Parse of the batch in flight at once"
    );
    assert_eq!(second, ONE_ROUND_TRIP, "second typed call");
    assert_eq!(
        first_consume,
        Messages {
            parse: 1,
            describe: 1,
            bind: 1,
            execute: 1,
            sync: 2,
            ..Messages::default()
        },
        "first consume"
    );
    assert_eq!(
        first_generic,
        Messages {
            parse: 1,
            describe: 1,
            bind: 1,
            execute: 1,
            sync: 2,
            ..Messages::default()
        },
        "first generic call"
    );
    let typed: Vec<u64> = table.rows.iter().map(|row| row.typed).collect();
    assert_eq!(typed, [1, 1, 0, 0], "typed calls, in table order");
    assert_eq!(adapter.connection().cached_statement_count(), 1);
}

#[tokio::test]
async fn warm_hot_calls_cost_one_round_trip_each() {
    let (proxy, adapter) = setup("round_trips_warm").await;
    let store = adapter.rate_limit_store();
    let mut table = Table::default();

    // GET /get-session.
    let session = warm!(
        table,
        proxy,
        adapter,
        "session by token (SESSION_FIELDS)",
        |i| {
            adapter.find_one(
                FindOne::new("session")
                    .where_clause(eq("token", TOKEN))
                    .select(SESSION_FIELDS),
            )
        }
    );
    assert_eq!(
        session.as_ref().and_then(|s| s.get("token")),
        Some(&text(TOKEN))
    );
    let session = warm!(
        table,
        proxy,
        adapter,
        "session by token (all fields)",
        |i| { adapter.find_one(FindOne::new("session").where_clause(eq("token", TOKEN))) }
    );
    assert_eq!(session.map(|s| s.len()), Some(8));
    let user = warm!(table, proxy, adapter, "user by id (USER_FIELDS)", |i| {
        adapter.find_one(
            FindOne::new("user")
                .where_clause(eq("id", USER_ID))
                .select(USER_FIELDS),
        )
    });
    assert_eq!(
        user.as_ref().and_then(|u| u.get("email")),
        Some(&text(EMAIL))
    );
    let user = warm!(table, proxy, adapter, "user by id (all fields)", |i| {
        adapter.find_one(FindOne::new("user").where_clause(eq("id", USER_ID)))
    });
    assert_eq!(user.map(|u| u.len()), Some(7));
    let updated = warm!(
        table,
        proxy,
        adapter,
        "update session expiry by token",
        |i| {
            adapter.update(
                Update::new("session")
                    .where_clause(eq("token", TOKEN))
                    .data("expires_at", at(8 * 86_400 + i64::try_from(i).unwrap()))
                    .data("updated_at", at(86_400)),
            )
        }
    );
    assert_eq!(
        updated.as_ref().and_then(|s| s.get("expires_at")),
        Some(&at(8 * 86_400 + 1))
    );

    // POST /sign-up/email and /sign-in/email.
    let user = warm!(table, proxy, adapter, "user by email (USER_FIELDS)", |i| {
        adapter.find_one(
            FindOne::new("user")
                .where_clause(eq("email", EMAIL))
                .select(USER_FIELDS),
        )
    });
    assert_eq!(
        user.as_ref().and_then(|u| u.get("id")),
        Some(&text(USER_ID))
    );
    let joined = warm!(table, proxy, adapter, "user by email JOIN account", |i| {
        adapter.find_one(
            FindOne::new("user")
                .where_clause(eq("email", EMAIL))
                .select(USER_FIELDS)
                .join("account", JoinOption::enabled()),
        )
    });
    match joined.as_ref().and_then(|u| u.get("account")) {
        Some(DbValue::RecordArray(accounts)) => assert_eq!(accounts.len(), 1, "{accounts:?}"),
        other => panic!("no account array on the joined user: {other:?}"),
    }
    let created = warm!(table, proxy, adapter, "create user", |i| {
        adapter.create(create_user(
            &format!("user-new-{i}"),
            &format!("new-{i}@example.com"),
        ))
    });
    assert_eq!(created.get("id"), Some(&text("user-new-1")));
    let created = warm!(table, proxy, adapter, "create account", |i| {
        adapter.create(create_account(
            &format!("account-new-{i}"),
            &format!("user-new-{i}"),
        ))
    });
    assert_eq!(created.get("provider_id"), Some(&text("credential")));
    let created = warm!(table, proxy, adapter, "create session", |i| {
        adapter.create(create_session(
            &format!("session-new-{i}"),
            USER_ID,
            &format!("token-new-{i}"),
        ))
    });
    assert_eq!(created.get("token"), Some(&text("token-new-1")));

    // GET /verify-email.
    let verified = warm!(table, proxy, adapter, "set email_verified", |i| {
        adapter.update(
            Update::new("user")
                .where_clause(eq("id", USER_ID))
                .data("email_verified", DbValue::Boolean(true))
                .data("updated_at", at(86_400)),
        )
    });
    assert_eq!(
        verified.and_then(|u| u.get("email_verified").cloned()),
        Some(DbValue::Boolean(true))
    );

    // POST /request-password-reset and /reset-password.
    let created = warm!(table, proxy, adapter, "create verification", |i| {
        adapter.create(create_verification(
            &format!("verification-new-{i}"),
            &format!("reset-password:new-{i}"),
            at(3_600),
        ))
    });
    assert_eq!(created.get("value"), Some(&text(USER_ID)));
    let expired = warm!(table, proxy, adapter, "delete expired verifications", |i| {
        adapter.delete_many(
            DeleteMany::new("verification")
                .where_clause(Where::new("expires_at", at(0)).operator(WhereOperator::Lt)),
        )
    });
    assert_eq!(expired, 0, "the warm-up deleted both expired rows");
    let newest = warm!(table, proxy, adapter, "newest verification", |i| {
        adapter.find_many(
            FindMany::new("verification")
                .where_clause(eq("identifier", "reset-password:main"))
                .sort_by(Sort::new("created_at", SortDirection::Desc))
                .limit(1)
                .select(VERIFICATION_FIELDS),
        )
    });
    assert_eq!(newest.len(), 1);
    let account = warm!(table, proxy, adapter, "update account password", |i| {
        adapter.update(
            Update::new("account")
                .where_clause(eq("user_id", USER_ID))
                .where_clause(eq("provider_id", "credential"))
                .data("password", text(format!("hash-{i}")))
                .data("updated_at", at(86_400)),
        )
    });
    assert_eq!(
        account.and_then(|a| a.get("password").cloned()),
        Some(text("hash-1"))
    );
    warm!(
        table,
        proxy,
        adapter,
        "delete verification by identifier",
        |i| {
            adapter.delete(
                Delete::new("verification").where_clause(eq("identifier", format!("doomed:{i}"))),
            )
        }
    );

    // Sessions: list, sign out.
    let sessions = warm!(table, proxy, adapter, "sessions of a user", |i| {
        adapter.find_many(FindMany::new("session").where_clause(eq("user_id", USER_ID)))
    });
    assert_eq!(sessions.len(), 5, "main, two doomed, two new");
    let newest = warm!(table, proxy, adapter, "newest sessions of a user", |i| {
        adapter.find_many(
            FindMany::new("session")
                .where_clause(eq("user_id", USER_ID))
                .sort_by(Sort::new("created_at", SortDirection::Desc))
                .limit(2),
        )
    });
    assert_eq!(newest.len(), 2);
    warm!(table, proxy, adapter, "delete session by token", |i| {
        adapter
            .delete(Delete::new("session").where_clause(eq("token", format!("token-doomed-{i}"))))
    });

    // Every request: the rate limit, permitted and then denied (max 1).
    let decision = warm!(
        table,
        proxy,
        adapter,
        "rate-limit consume (permitted)",
        |i| {
            store.consume(consume_input(
                "127.0.0.1|/get-session",
                10,
                100,
                1_000 + i64::try_from(i).unwrap(),
            ))
        }
    );
    assert!(decision.permitted);
    assert_eq!(decision.remaining, 98);
    let decision = warm!(table, proxy, adapter, "rate-limit consume (denied)", |i| {
        store.consume(consume_input(
            "127.0.0.1|/sign-in/email",
            10,
            1,
            1_000 + i64::try_from(i).unwrap(),
        ))
    });
    assert!(!decision.permitted, "{decision:?}");

    // Reset-password's optional revoke: every session of the user.
    let revoked = warm!(table, proxy, adapter, "delete sessions of a user", |i| {
        adapter.delete_many(DeleteMany::new("session").where_clause(eq("user_id", USER_ID)))
    });
    assert_eq!(revoked, 0, "the warm-up deleted them all");

    // Shapes no typed statement serves: one round trip once their statement is cached.
    let users = warm!(
        table,
        proxy,
        adapter,
        "generic: find_many user limit 5",
        |i| { adapter.find_many(FindMany::new("user").limit(5)) }
    );
    assert_eq!(users.len(), 3);
    let users = warm!(table, proxy, adapter, "generic: count user", |i| {
        adapter.count(Count::new("user"))
    });
    assert_eq!(users, 3);

    println!("{}", table.render("warm calls (each run once before)"));

    let mut wrong = Vec::new();
    for row in &table.rows {
        // The rate-limit store and the generic path are not counted as typed calls.
        let expect_typed =
            u64::from(!row.call.starts_with("rate-limit") && !row.call.starts_with("generic:"));
        if row.messages != ONE_ROUND_TRIP || row.typed != expect_typed {
            wrong.push(format!(
                "{}: {:?}, typed {} (expected {expect_typed})",
                row.call, row.messages, row.typed
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "calls that are not one typed round trip when warm:\n{}",
        wrong.join("\n")
    );
    // The rate limit ran its typed statement: the generic cache holds only the two generic
    // shapes.
    assert_eq!(adapter.connection().cached_statement_count(), 2);
    assert_eq!(table.rows.len(), 24);
}

/// Sign-up's transaction: user, credential account and session inserts.
async fn sign_up(adapter: &TokioPostgresAdapter, tag: &str) {
    let user = create_user(&format!("user-{tag}"), &format!("{tag}@example.com"));
    let account = create_account(&format!("account-{tag}"), &format!("user-{tag}"));
    let session = create_session(
        &format!("session-{tag}"),
        &format!("user-{tag}"),
        &format!("token-{tag}"),
    );
    adapter
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                tx.create(user).await?;
                tx.create(account).await?;
                tx.create(session).await?;
                Ok(())
            })
        }))
        .await
        .expect("sign-up transaction");
}

async fn sign_up_measured(
    proxy: &CountingProxy,
    adapter: &TokioPostgresAdapter,
    tag: &str,
) -> (Messages, u64) {
    let typed = adapter.typed_call_count();
    let before = proxy.snapshot();
    sign_up(adapter, tag).await;
    (
        proxy.snapshot().since(before),
        adapter.typed_call_count() - typed,
    )
}

#[tokio::test]
async fn warm_sign_up_transaction_is_begin_three_executes_commit() {
    let (proxy, adapter) = setup("round_trips_transaction").await;
    let mut table = Table::default();

    // On a cold connection a transaction prepares nothing typed (a Parse failing inside it
    // would abort it): its inserts take the generic path and prepare their statements there.
    let (cold, cold_typed) = sign_up_measured(&proxy, &adapter, "cold").await;
    table.push("sign-up transaction, cold connection", cold, cold_typed);

    // Any call outside a transaction prepares the typed groups.
    adapter
        .find_one(FindOne::new("user").where_clause(eq("id", USER_ID)))
        .await
        .expect("warm the typed statements");
    let (warm, warm_typed) = sign_up_measured(&proxy, &adapter, "warm").await;
    table.push("sign-up transaction, warm", warm, warm_typed);
    let (again, again_typed) = sign_up_measured(&proxy, &adapter, "again").await;
    table.push("sign-up transaction, warm again", again, again_typed);

    println!(
        "{}",
        table.render("sign-up transaction (BEGIN, 3 inserts, COMMIT)")
    );

    let created: Vec<DbRecord> = adapter
        .find_many(FindMany::new("session").where_clause(eq("user_id", "user-warm")))
        .await
        .expect("sessions");
    assert_eq!(created.len(), 1, "the warm transaction committed");

    assert_eq!(
        cold,
        Messages {
            parse: 3,
            describe: 3,
            bind: 3,
            execute: 3,
            sync: 6,
            query: 2,
            ..Messages::default()
        },
        "cold: BEGIN, 3 × (prepare, execute), COMMIT"
    );
    assert_eq!(cold_typed, 0);
    let expected = Messages {
        bind: 3,
        execute: 3,
        sync: 3,
        query: 2,
        ..Messages::default()
    };
    assert_eq!(warm, expected, "warm: BEGIN, 3 executes, COMMIT");
    assert_eq!(warm_typed, 3);
    assert_eq!(again, expected);
    assert_eq!(again_typed, 3);
    assert_eq!(warm.round_trips(), 5);
}
