//! Native joins (behaviour.md §3; behaviour.md §10) and their determinism (quirk Q8, fixed):
//! base records follow the requested sort then the base id, joined arrays follow the joined id,
//! and the same query always gives the same output.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::crud_common;

use std::sync::{Arc, Mutex};

use crud_common::{
    array, at, default_adapter, default_schema, ids, keys, nested, s, seed_account, seed_session,
    seed_user, string,
};
use rustauth_core::db::{
    DbAdapter, DbRecord, DbValue, FindMany, FindOne, JoinAdapter, JoinOption, Sort, SortDirection,
    Where, WhereOperator,
};
use rustauth_core::error::RustAuthError;
use rustauth_tokio_postgres::TokioPostgresAdapter;

const USER_KEYS: [&str; 7] = [
    "id",
    "name",
    "email",
    "email_verified",
    "image",
    "created_at",
    "updated_at",
];

/// u1: accounts a1, a2 and sessions s1, s2; u2: account a3, no session; u3: session s3, no
/// account. Rows are inserted out of id order, so heap order is not id order.
async fn seeded(label: &str) -> TokioPostgresAdapter {
    let (adapter, _url) = default_adapter(label).await;
    seed_user(&adapter, "u2", "bob@example.com", at(2)).await;
    seed_user(&adapter, "u1", "ada@example.com", at(1)).await;
    seed_user(&adapter, "u3", "cy@example.com", at(3)).await;
    seed_account(&adapter, "a2", "u1").await;
    seed_account(&adapter, "a3", "u2").await;
    seed_account(&adapter, "a1", "u1").await;
    seed_session(&adapter, "s2", "u1").await;
    seed_session(&adapter, "s3", "u3").await;
    seed_session(&adapter, "s1", "u1").await;
    adapter
}

fn user_where(id: &str) -> FindOne {
    FindOne::new("user").where_clause(Where::new("id", s(id)))
}

#[tokio::test]
async fn find_one_user_join_account_limit_1_gives_array_of_one() {
    let adapter = seeded("join limit").await;
    let user = adapter
        .find_one(user_where("u1").join("account", JoinOption::enabled().limit(1)))
        .await
        .expect("find_one")
        .expect("user");
    let accounts = array(&user, "account");
    assert_eq!(accounts.len(), 1);
    assert_eq!(ids(accounts), ["a1"], "the lowest joined id");
    assert_eq!(accounts[0].get("user_id"), Some(&s("u1")));

    let user = adapter
        .find_one(user_where("u1").join("account", JoinOption::enabled()))
        .await
        .expect("find_one")
        .expect("user");
    assert_eq!(ids(array(&user, "account")), ["a1", "a2"]);
    let mut expected_keys = USER_KEYS.to_vec();
    expected_keys.push("account");
    assert_eq!(keys(&user), expected_keys);

    // Nested records carry every field with logical keys, hidden ones included (b.9).
    let account = &array(&user, "account")[0];
    assert_eq!(account.len(), 13);
    assert_eq!(account.get("password"), Some(&s("hash")));
    assert_eq!(account.get("access_token"), Some(&DbValue::Null));

    let missing = adapter
        .find_one(user_where("nobody").join("account", JoinOption::enabled()))
        .await
        .expect("find_one");
    assert!(missing.is_none());
}

#[tokio::test]
async fn find_many_users_join_limited_account_and_sessions() {
    let adapter = seeded("two joins").await;
    let users = adapter
        .find_many(
            FindMany::new("user")
                .sort_by(Sort::new("id", SortDirection::Asc))
                .join("account", JoinOption::enabled().limit(1))
                .join("session", JoinOption::enabled()),
        )
        .await
        .expect("find_many");
    assert_eq!(ids(&users), ["u1", "u2", "u3"]);
    assert_eq!(ids(array(&users[0], "account")), ["a1"]);
    assert_eq!(ids(array(&users[0], "session")), ["s1", "s2"]);
    assert_eq!(ids(array(&users[1], "account")), ["a3"]);
    assert!(array(&users[1], "session").is_empty());
    assert!(array(&users[2], "account").is_empty());
    assert_eq!(ids(array(&users[2], "session")), ["s3"]);
    for user in &users {
        let mut expected_keys = USER_KEYS.to_vec();
        expected_keys.extend(["account", "session"]);
        assert_eq!(keys(user), expected_keys);
    }
}

#[tokio::test]
async fn account_join_user_is_a_record() {
    let adapter = seeded("account user").await;
    let account = adapter
        .find_one(
            FindOne::new("account")
                .where_clause(Where::new("id", s("a3")))
                .join("user", JoinOption::enabled()),
        )
        .await
        .expect("find_one")
        .expect("account");
    let user = nested(&account, "user");
    assert_eq!(string(user, "id"), "u2");
    assert_eq!(keys(user), USER_KEYS);
    assert_eq!(user.get("created_at"), Some(&DbValue::Timestamp(at(2))));
}

#[tokio::test]
async fn user_without_sessions_gets_an_empty_array() {
    let adapter = seeded("empty join").await;
    let users = adapter
        .find_many(
            FindMany::new("user")
                .where_clause(Where::new("id", s("u2")))
                .join("session", JoinOption::enabled().limit(1)),
        )
        .await
        .expect("find_many");
    assert_eq!(users.len(), 1);
    assert_eq!(
        users[0].get("session"),
        Some(&DbValue::RecordArray(Vec::new()))
    );
}

#[tokio::test]
async fn session_join_user_is_a_record() {
    let adapter = seeded("session user").await;
    let session = adapter
        .find_one(
            FindOne::new("session")
                .where_clause(Where::new("token", s("tok_s3")))
                .join("user", JoinOption::enabled()),
        )
        .await
        .expect("find_one")
        .expect("session");
    assert_eq!(string(&session, "id"), "s3");
    assert_eq!(string(nested(&session, "user"), "id"), "u3");
    assert_eq!(string(nested(&session, "user"), "email"), "cy@example.com");

    let sessions = adapter
        .find_many(
            FindMany::new("session")
                .sort_by(Sort::new("id", SortDirection::Desc))
                .join("user", JoinOption::enabled()),
        )
        .await
        .expect("find_many");
    assert_eq!(ids(&sessions), ["s3", "s2", "s1"]);
    let owners = sessions
        .iter()
        .map(|session| string(nested(session, "user"), "id").to_owned())
        .collect::<Vec<_>>();
    assert_eq!(owners, ["u3", "u1", "u1"]);
}

#[tokio::test]
async fn select_email_with_join_has_no_id_key() {
    let adapter = seeded("select join").await;
    let user = adapter
        .find_one(
            FindOne::new("user")
                .where_clause(Where::new("id", s("u3")))
                .select(["email"])
                .join("session", JoinOption::enabled()),
        )
        .await
        .expect("find_one")
        .expect("user");
    assert_eq!(keys(&user), ["email", "session"]);
    assert!(!user.contains_key("id"));
    assert_eq!(ids(array(&user, "session")), ["s3"]);

    let users = adapter
        .find_many(
            FindMany::new("user")
                .select(["email", "name"])
                .sort_by(Sort::new("email", SortDirection::Asc))
                .join("account", JoinOption::enabled()),
        )
        .await
        .expect("find_many");
    for user in &users {
        assert_eq!(keys(user), ["email", "name", "account"]);
    }
    assert_eq!(string(&users[0], "email"), "ada@example.com");
}

/// What a transaction saw: (through `JoinAdapter`, directly on the transaction adapter).
type TxJoins = (Vec<DbRecord>, Vec<DbRecord>);

/// Seeds, inside the transaction, one user with one account and one session, and returns what
/// the transaction adapter's joins saw, through `JoinAdapter` and directly.
async fn joins_inside_transaction(
    adapter: &TokioPostgresAdapter,
) -> (Vec<DbRecord>, Vec<DbRecord>) {
    let seen: Arc<Mutex<Option<TxJoins>>> = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&seen);
    adapter
        .transaction(Box::new(move |tx| {
            Box::pin(async move {
                seed_user(tx.as_ref(), "tx_user", "tx@example.com", at(9)).await;
                seed_account(tx.as_ref(), "tx_account", "tx_user").await;
                seed_session(tx.as_ref(), "tx_session", "tx_user").await;
                let query = FindMany::new("user")
                    .where_clause(Where::new("id", s("tx_user")))
                    .join("account", JoinOption::enabled())
                    .join("session", JoinOption::enabled());
                let direct = tx.find_many(query.clone()).await?;
                let wrapped = JoinAdapter::new(default_schema(), tx, true)
                    .find_many(query)
                    .await?;
                *slot.lock().unwrap() = Some((wrapped, direct));
                Ok(())
            })
        }))
        .await
        .expect("transaction");
    let result = seen.lock().unwrap().take().expect("callback ran");
    result
}

#[tokio::test]
async fn joins_inside_a_transaction() {
    let adapter = seeded("tx joins").await;
    let (wrapped, direct) = joins_inside_transaction(&adapter).await;
    for (label, users) in [("JoinAdapter", &wrapped), ("tx.find_many", &direct)] {
        assert_eq!(ids(users), ["tx_user"], "{label}");
        assert_eq!(ids(array(&users[0], "account")), ["tx_account"], "{label}");
        assert_eq!(ids(array(&users[0], "session")), ["tx_session"], "{label}");
    }
    assert_eq!(wrapped, direct);
    // Committed.
    let user = adapter
        .find_one(user_where("tx_user").join("session", JoinOption::enabled()))
        .await
        .expect("find_one")
        .expect("committed user");
    assert_eq!(ids(array(&user, "session")), ["tx_session"]);
}

#[tokio::test]
async fn joined_find_many_follows_sort_and_repeats_identically() {
    let adapter = seeded("determinism").await;
    let query = |direction: SortDirection| {
        FindMany::new("user")
            .sort_by(Sort::new("email", direction))
            .join("account", JoinOption::enabled())
            .join("session", JoinOption::enabled())
    };
    let ascending = adapter
        .find_many(query(SortDirection::Asc))
        .await
        .expect("find_many");
    assert_eq!(ids(&ascending), ["u1", "u2", "u3"]);
    let descending = adapter
        .find_many(query(SortDirection::Desc))
        .await
        .expect("find_many");
    assert_eq!(ids(&descending), ["u3", "u2", "u1"]);
    // Joined arrays follow the joined id whatever the base order.
    assert_eq!(ids(array(&descending[2], "account")), ["a1", "a2"]);
    assert_eq!(ids(array(&descending[2], "session")), ["s1", "s2"]);

    for _ in 0..5 {
        assert_eq!(
            adapter
                .find_many(query(SortDirection::Desc))
                .await
                .expect("find_many"),
            descending
        );
    }
    // Record-level equality ignores key order; the key order is stable too.
    let again = adapter
        .find_many(query(SortDirection::Desc))
        .await
        .expect("find_many");
    for (left, right) in again.iter().zip(&descending) {
        assert_eq!(keys(left), keys(right));
    }

    // Sorting by a timestamp, paging through the base records.
    let page = |offset: usize| {
        FindMany::new("user")
            .sort_by(Sort::new("created_at", SortDirection::Desc))
            .limit(1)
            .offset(offset)
            .join("account", JoinOption::enabled())
    };
    let mut paged = Vec::new();
    for offset in 0..4 {
        paged.extend(adapter.find_many(page(offset)).await.expect("page"));
    }
    assert_eq!(ids(&paged), ["u3", "u2", "u1"]);
    assert_eq!(ids(array(&paged[2], "account")), ["a1", "a2"]);
}

#[tokio::test]
async fn ties_and_unsorted_joins_fall_back_to_base_id_order() {
    let adapter = seeded("ties").await;
    // Every user has email_verified = false: the sort ties, the base id decides.
    let tied = adapter
        .find_many(
            FindMany::new("user")
                .sort_by(Sort::new("email_verified", SortDirection::Desc))
                .join("session", JoinOption::enabled()),
        )
        .await
        .expect("find_many");
    assert_eq!(ids(&tied), ["u1", "u2", "u3"]);
    let unsorted = adapter
        .find_many(FindMany::new("user").join("account", JoinOption::enabled()))
        .await
        .expect("find_many");
    assert_eq!(ids(&unsorted), ["u1", "u2", "u3"]);
    let filtered = adapter
        .find_many(
            FindMany::new("user")
                .where_clause(Where::new("id", s("u2")).operator(WhereOperator::Ne))
                .limit(1)
                .join("account", JoinOption::enabled()),
        )
        .await
        .expect("find_many");
    assert_eq!(ids(&filtered), ["u1"]);
    assert_eq!(ids(array(&filtered[0], "account")), ["a1", "a2"]);
}

#[tokio::test]
async fn disabled_joins_are_ignored_and_bad_joins_are_errors() {
    let adapter = seeded("join edges").await;
    let plain = adapter
        .find_many(FindMany::new("user").sort_by(Sort::new("id", SortDirection::Asc)))
        .await
        .expect("find_many");
    let disabled = adapter
        .find_many(
            FindMany::new("user")
                .sort_by(Sort::new("id", SortDirection::Asc))
                .join("account", JoinOption::disabled()),
        )
        .await
        .expect("find_many");
    assert_eq!(disabled, plain);
    assert!(disabled.iter().all(|user| !user.contains_key("account")));

    let no_relation = adapter
        .find_many(FindMany::new("user").join("verification", JoinOption::enabled()))
        .await;
    assert!(
        matches!(
            no_relation,
            Err(RustAuthError::JoinForeignKeyNotFound { .. })
        ),
        "{no_relation:?}"
    );
    let unknown = adapter
        .find_one(user_where("u1").join("nope", JoinOption::enabled()))
        .await;
    assert!(
        matches!(unknown, Err(RustAuthError::TableNotFound { .. })),
        "{unknown:?}"
    );
    // A join on an empty base result is an empty list.
    let none = adapter
        .find_many(
            FindMany::new("user")
                .where_clause(Where::new("id", s("nobody")))
                .join("account", JoinOption::enabled()),
        )
        .await
        .expect("find_many");
    assert!(none.is_empty());
    // More than 100 joined rows: the default one-to-many limit is 100.
    for index in 0..105 {
        seed_session(&adapter, &format!("bulk_{index:03}"), "u2").await;
    }
    let user = adapter
        .find_one(user_where("u2").join("session", JoinOption::enabled()))
        .await
        .expect("find_one")
        .expect("user");
    let sessions = array(&user, "session");
    assert_eq!(sessions.len(), 100);
    assert_eq!(string(&sessions[0], "id"), "bulk_000");
    assert_eq!(string(&sessions[99], "id"), "bulk_099");
}
