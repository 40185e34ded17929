//! The generated statements on pooled connections: deadpool-postgres.
//!
//! The generated code implements its `GenericClient` for `tokio_postgres::Client` and
//! `tokio_postgres::Transaction` only, and that is enough for a pool:
//! * a pooled `deadpool_postgres::Object` derefs to `deadpool_postgres::ClientWrapper`, which
//!   derefs to `tokio_postgres::Client`, so `let client: &Client = &object;` (or `&**object`);
//! * `object.transaction()` gives a `deadpool_postgres::Transaction`, which derefs to
//!   `tokio_postgres::Transaction`: `let tx: &tokio_postgres::Transaction = &transaction;`,
//!   and `commit()`/`rollback()` stay on the deadpool wrapper.
//!
//! A statement handle prepared with `.prepare(client)` lives on that client's server
//! connection: reuse it on the same pooled connection (it survives going back to the pool
//! with the default `RecyclingMethod::Fast`), never on another one. Without `.prepare`, a
//! generated statement works on any client but costs a prepare every run.
//!
//! The plain `tokio_postgres::Client` and `Transaction` are covered statement by statement in
//! `tests/it/codegen.rs` (`generated_statements_run_on_a_plain_client`,
//! `generated_statements_run_inside_a_transaction`); `plain_client_and_transaction_share_the_flow`
//! below only runs this file's flow on them, so the pooled and plain results can be compared.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;
use crate::support_proxy;

use std::str::FromStr;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use rustauth_core::db::{auth_schema, AuthSchemaOptions, DbAdapter, RateLimitStorage};
use rustauth_tokio_postgres::generated::client::GenericClient;
use rustauth_tokio_postgres::generated::queries::session::{
    delete_session_by_token, insert_session, session_by_token, update_session_expiry,
    DeleteSessionByTokenStmt, InsertSessionStmt, Session, SessionByTokenStmt,
    UpdateSessionExpiryStmt,
};
use rustauth_tokio_postgres::generated::queries::user::{
    insert_user, user_by_email, user_by_id, InsertUserStmt, User, UserByEmailStmt, UserByIdStmt,
};
use rustauth_tokio_postgres::TokioPostgresAdapter;
use support_proxy::{CountingProxy, Messages};
use time::OffsetDateTime;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

fn at(seconds: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_900_000_000 + seconds).expect("timestamp")
}

/// A fresh database migrated by the adapter with database rate limiting (the layout the
/// generated statements are written for).
async fn migrated_database(label: &str) -> String {
    let url = support::fresh_database(label).await;
    let adapter = TokioPostgresAdapter::connect(&url).await.expect("connect");
    adapter
        .run_migrations(&auth_schema(AuthSchemaOptions {
            rate_limit_storage: RateLimitStorage::Database,
            ..AuthSchemaOptions::default()
        }))
        .await
        .expect("migrate");
    url
}

fn pool(config: Config, max_size: usize) -> Pool {
    let manager = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(max_size)
        .build()
        .expect("build pool")
}

async fn migrated_pool(label: &str, max_size: usize) -> Pool {
    let url = migrated_database(label).await;
    pool(Config::from_str(&url).expect("parse URL"), max_size)
}

async fn backend_pid(client: &Client) -> i32 {
    client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("backend pid")
        .get(0)
}

/// The statements one flow uses, prepared on a client (or not).
struct Statements {
    insert_user: InsertUserStmt,
    user_by_id: UserByIdStmt,
    user_by_email: UserByEmailStmt,
    insert_session: InsertSessionStmt,
    session_by_token: SessionByTokenStmt,
    update_session_expiry: UpdateSessionExpiryStmt,
    delete_session_by_token: DeleteSessionByTokenStmt,
}

impl Statements {
    fn unprepared() -> Self {
        Self {
            insert_user: insert_user(),
            user_by_id: user_by_id(),
            user_by_email: user_by_email(),
            insert_session: insert_session(),
            session_by_token: session_by_token(),
            update_session_expiry: update_session_expiry(),
            delete_session_by_token: delete_session_by_token(),
        }
    }

    async fn prepared<C: GenericClient>(client: &C) -> Self {
        let (
            insert_user,
            user_by_id,
            user_by_email,
            insert_session,
            session_by_token,
            update_session_expiry,
            delete_session_by_token,
        ) = tokio::try_join!(
            insert_user().prepare(client),
            user_by_id().prepare(client),
            user_by_email().prepare(client),
            insert_session().prepare(client),
            session_by_token().prepare(client),
            update_session_expiry().prepare(client),
            delete_session_by_token().prepare(client),
        )
        .expect("prepare");
        Self {
            insert_user,
            user_by_id,
            user_by_email,
            insert_session,
            session_by_token,
            update_session_expiry,
            delete_session_by_token,
        }
    }
}

/// What one flow leaves behind.
struct Outcome {
    user: User,
    kept: Session,
    deleted_token: String,
}

fn new_session(tag: &str, name: &str, user_id: &str) -> Session {
    Session {
        id: format!("{tag}-session-{name}"),
        expires_at: at(7 * 86_400),
        token: format!("{tag}-token-{name}"),
        created_at: at(0),
        updated_at: at(0),
        ip_address: Some("127.0.0.1".to_owned()),
        user_agent: None,
        user_id: user_id.to_owned(),
    }
}

async fn insert_session_row<C: GenericClient>(client: &C, s: &Statements, session: &Session) {
    let id = s
        .insert_session
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
    assert_eq!(id, session.id);
}

/// Sign-up, a session refresh and a sign-out on `client`: inserts a user and two sessions,
/// reads them back, refreshes one and deletes the other, asserting every result.
async fn flow<C: GenericClient>(client: &C, s: &Statements, tag: &str) -> Outcome {
    let user = User {
        id: format!("{tag}-user"),
        name: "Ada".to_owned(),
        email: format!("{tag}@example.com"),
        email_verified: false,
        image: None,
        created_at: at(0),
        updated_at: at(0),
    };
    let id = s
        .insert_user
        .bind(
            client,
            &user.id.as_str(),
            &user.name.as_str(),
            &user.email.as_str(),
            &user.email_verified,
            &user.image.as_deref(),
            &user.created_at,
            &user.updated_at,
        )
        .one()
        .await
        .expect("insert user");
    assert_eq!(id, user.id);
    assert_eq!(
        s.user_by_id
            .bind(client, &user.id.as_str())
            .opt()
            .await
            .expect("user by id"),
        Some(user.clone())
    );
    assert_eq!(
        s.user_by_email
            .bind(client, &user.email.as_str())
            .one()
            .await
            .expect("user by email"),
        user
    );

    let mut kept = new_session(tag, "kept", &user.id);
    let doomed = new_session(tag, "doomed", &user.id);
    insert_session_row(client, s, &kept).await;
    insert_session_row(client, s, &doomed).await;
    assert_eq!(
        s.session_by_token
            .bind(client, &kept.token.as_str())
            .opt()
            .await
            .expect("session by token"),
        Some(kept.clone())
    );

    // The refresh returns the stored row.
    kept.expires_at = at(8 * 86_400);
    kept.updated_at = at(86_400);
    assert_eq!(
        s.update_session_expiry
            .bind(
                client,
                &kept.expires_at,
                &kept.updated_at,
                &kept.token.as_str()
            )
            .opt()
            .await
            .expect("refresh session"),
        Some(kept.clone())
    );
    assert_eq!(
        s.session_by_token
            .bind(client, &kept.token.as_str())
            .one()
            .await
            .expect("refreshed session"),
        kept
    );

    // Sign-out deletes one row and says which.
    assert_eq!(
        s.delete_session_by_token
            .bind(client, &doomed.token.as_str())
            .all()
            .await
            .expect("delete session"),
        vec![doomed.id.clone()]
    );
    assert_eq!(
        s.delete_session_by_token
            .bind(client, &doomed.token.as_str())
            .all()
            .await
            .expect("delete session again"),
        Vec::<String>::new()
    );
    assert_eq!(
        s.session_by_token
            .bind(client, &doomed.token.as_str())
            .opt()
            .await
            .expect("deleted session"),
        None
    );
    Outcome {
        user,
        kept,
        deleted_token: doomed.token,
    }
}

/// What another connection sees of a flow's rows: (user, kept session, deleted session).
async fn seen_by<C: GenericClient>(
    client: &C,
    outcome: &Outcome,
) -> (Option<User>, Option<Session>, Option<Session>) {
    // Unprepared generated statements: they work on any client, at the price of a prepare.
    let user = user_by_id()
        .bind(client, &outcome.user.id.as_str())
        .opt()
        .await
        .expect("user by id");
    let statement = session_by_token();
    let kept = statement
        .bind(client, &outcome.kept.token.as_str())
        .opt()
        .await
        .expect("kept session");
    let deleted = statement
        .bind(client, &outcome.deleted_token.as_str())
        .opt()
        .await
        .expect("deleted session");
    (user, kept, deleted)
}

fn committed(outcome: &Outcome) -> (Option<User>, Option<Session>, Option<Session>) {
    (Some(outcome.user.clone()), Some(outcome.kept.clone()), None)
}

#[tokio::test]
async fn generated_statements_run_on_a_pooled_client() {
    let pool = migrated_pool("pools_client", 2).await;
    let object: Object = pool.get().await.expect("pooled client");
    // Object → ClientWrapper → tokio_postgres::Client.
    let client: &Client = &object;

    let prepared = Statements::prepared(client).await;
    assert!(prepared.user_by_id.statement().is_some());
    let first = flow(client, &prepared, "prepared").await;
    let second = flow(client, &Statements::unprepared(), "unprepared").await;

    // Autocommit: a second pooled connection sees both flows' rows at once.
    let other = pool.get().await.expect("second pooled client");
    assert_ne!(backend_pid(client).await, backend_pid(&other).await);
    assert_eq!(seen_by(&**other, &first).await, committed(&first));
    assert_eq!(seen_by(&**other, &second).await, committed(&second));
    assert_eq!(pool.status().size, 2);
}

#[tokio::test]
async fn generated_statements_run_inside_a_pooled_transaction_commit_and_rollback() {
    let pool = migrated_pool("pools_transaction", 2).await;
    let mut object = pool.get().await.expect("pooled client");
    let other = pool.get().await.expect("observer");
    // Prepared on the pooled client, used inside its transactions (same server connection).
    let on_client = Statements::prepared(&**object).await;

    // Committed.
    let transaction = object.transaction().await.expect("begin");
    // deadpool's Transaction → tokio_postgres::Transaction.
    let tx: &tokio_postgres::Transaction<'_> = &transaction;
    let kept = flow(tx, &on_client, "committed").await;
    assert_eq!(
        seen_by(tx, &kept).await,
        committed(&kept),
        "visible inside the transaction"
    );
    assert_eq!(
        seen_by(&**other, &kept).await,
        (None, None, None),
        "invisible elsewhere before COMMIT"
    );
    transaction.commit().await.expect("commit");
    assert_eq!(seen_by(&**other, &kept).await, committed(&kept));

    // Rolled back, with statements prepared inside the transaction this time.
    let transaction = object.transaction().await.expect("begin again");
    let tx: &tokio_postgres::Transaction<'_> = &transaction;
    let in_transaction = Statements::prepared(tx).await;
    let dropped = flow(tx, &in_transaction, "rolled-back").await;
    assert_eq!(seen_by(tx, &dropped).await, committed(&dropped));
    // The committed session, deleted inside this transaction, is still there elsewhere.
    let removed = in_transaction
        .delete_session_by_token
        .bind(tx, &kept.kept.token.as_str())
        .all()
        .await
        .expect("delete committed session");
    assert_eq!(removed, vec![kept.kept.id.clone()]);
    assert_eq!(seen_by(&**other, &kept).await, committed(&kept));
    assert_eq!(seen_by(&**other, &dropped).await, (None, None, None));
    transaction.rollback().await.expect("rollback");

    assert_eq!(seen_by(&**object, &dropped).await, (None, None, None));
    assert_eq!(seen_by(&**object, &kept).await, committed(&kept));
    // The handles prepared on the client before either transaction still run.
    assert_eq!(
        on_client
            .user_by_id
            .bind(&**object, &kept.user.id.as_str())
            .one()
            .await
            .expect("user after rollback"),
        kept.user
    );
}

#[tokio::test]
async fn prepared_handles_belong_to_their_pooled_connection() {
    let pool = migrated_pool("pools_handles", 2).await;
    let first = pool.get().await.expect("first");
    let second = pool.get().await.expect("second");
    let first_pid = backend_pid(&first).await;
    assert_ne!(first_pid, backend_pid(&second).await);

    let statements = Statements::prepared(&**first).await;
    let outcome = flow(&**first, &statements, "handles").await;

    // Another connection never prepared this statement: the server refuses the handle.
    let error = statements
        .user_by_id
        .bind(&**second, &outcome.user.id.as_str())
        .opt()
        .await
        .expect_err("a handle from another connection");
    assert_eq!(
        error.code(),
        Some(&SqlState::INVALID_SQL_STATEMENT_NAME),
        "{error:?}"
    );

    // Back to the pool and out again: the same server connection, its statements intact
    // (RecyclingMethod::Fast sends nothing on recycle).
    drop(first);
    let again = pool.get().await.expect("recycled");
    assert_eq!(backend_pid(&again).await, first_pid);
    assert_eq!(
        statements
            .user_by_id
            .bind(&**again, &outcome.user.id.as_str())
            .one()
            .await
            .expect("handle on its recycled connection"),
        outcome.user
    );
}

#[tokio::test]
async fn plain_client_and_transaction_share_the_flow() {
    let url = migrated_database("pools_plain").await;
    let mut client = support::connect(&url).await;
    let observer = support::connect(&url).await;

    let statements = Statements::prepared(&client).await;
    let plain = flow(&client, &statements, "plain").await;
    assert_eq!(seen_by(&observer, &plain).await, committed(&plain));

    let transaction = client.transaction().await.expect("begin");
    let committed_rows = flow(&transaction, &statements, "plain-committed").await;
    assert_eq!(
        seen_by(&observer, &committed_rows).await,
        (None, None, None)
    );
    transaction.commit().await.expect("commit");
    assert_eq!(
        seen_by(&observer, &committed_rows).await,
        committed(&committed_rows)
    );

    let transaction = client.transaction().await.expect("begin");
    let dropped = flow(&transaction, &statements, "plain-rolled-back").await;
    transaction.rollback().await.expect("rollback");
    assert_eq!(seen_by(&observer, &dropped).await, (None, None, None));
}

#[tokio::test]
async fn pooled_generated_statements_cost_one_round_trip_when_prepared() {
    let url = migrated_database("pools_round_trips").await;
    let proxy = CountingProxy::start(&url).await;
    let pool = pool(proxy.config(), 1);
    let object = pool.get().await.expect("pooled client through the proxy");
    let client: &Client = &object;
    // Kept alive: dropping the last handle of a prepared statement sends Close + Sync.
    let statements = Statements::prepared(client).await;
    let outcome = flow(client, &statements, "counted").await;
    let id = outcome.user.id.as_str();

    let before = proxy.snapshot();
    let prepared = user_by_id().prepare(client).await.expect("prepare");
    let preparing = proxy.snapshot().since(before);

    let before = proxy.snapshot();
    let found = prepared
        .bind(client, &id)
        .one()
        .await
        .expect("prepared run");
    let prepared_run = proxy.snapshot().since(before);
    assert_eq!(found, outcome.user);

    // Unprepared: tokio-postgres prepares a named statement for the run and closes it when
    // the run drops it (Close + Sync, not awaited). A prepared run after it flushes that
    // Close through, so it is measured together and subtracted.
    let before = proxy.snapshot();
    let unprepared = user_by_id().bind(client, &id).one().await.expect("run");
    prepared.bind(client, &id).one().await.expect("flush");
    let unprepared_run = proxy.snapshot().since(before).since(prepared_run);
    assert_eq!(unprepared, outcome.user);

    // Back to the pool and out again: nothing sent, the handle still prepared.
    drop(object);
    let object = pool.get().await.expect("recycled");
    let before = proxy.snapshot();
    prepared
        .bind(&**object, &id)
        .one()
        .await
        .expect("prepared run after recycling");
    let recycled_run = proxy.snapshot().since(before);

    println!("\ngenerated user_by_id on a deadpool client (through the counting proxy)");
    for (call, m) in [
        (".prepare(client)", preparing),
        ("prepared .bind().one()", prepared_run),
        ("unprepared .bind().one()", unprepared_run),
        ("prepared, after recycling", recycled_run),
    ] {
        println!(
            "{call:26} | trips {} | sync {} | parse {} | describe {} | bind {} | execute {} | close {}",
            m.round_trips(),
            m.sync,
            m.parse,
            m.describe,
            m.bind,
            m.execute,
            m.close
        );
    }

    let one_round_trip = Messages {
        bind: 1,
        execute: 1,
        sync: 1,
        ..Messages::default()
    };
    assert_eq!(
        preparing,
        Messages {
            parse: 1,
            describe: 1,
            sync: 1,
            ..Messages::default()
        }
    );
    assert_eq!(prepared_run, one_round_trip);
    assert_eq!(recycled_run, one_round_trip);
    assert_eq!(
        unprepared_run,
        Messages {
            parse: 1,
            describe: 1,
            bind: 1,
            execute: 1,
            close: 1,
            sync: 3,
            ..Messages::default()
        },
        "prepare, run, close"
    );
    assert_eq!(proxy.connections(), 1, "one pooled connection throughout");
}
