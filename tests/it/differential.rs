//! Differential tests: the typed statements (src/typed/, behaviour.md §9) against the
//! generic path (core's SQL planner), call by call.
//!
//! Two fresh databases get the same schema. Adapter A has typed statements on, adapter B has
//! them off; the same calls go to both and must give identical records (key order included),
//! identical errors and identical table contents afterwards. A's typed counter must grow by
//! exactly the calls the typed path is meant to serve, and B's must stay at zero, so a route
//! that silently fell back to the generic path fails here too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::Rng;
use crate::support;

use std::sync::{Arc, Mutex};

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Connector, Count, Create, DbAdapter, DbField, DbFieldType,
    DbRecord, DbSchema, DbValue, Delete, DeleteMany, FindMany, FindOne, JoinOption,
    RateLimitStorage, Sort, SortDirection, TableOptions, Update, Where, WhereMode, WhereOperator,
};
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule, RateLimitStore};
use rustauth_tokio_postgres::layout::{
    ACCOUNT_FIELDS, SESSION_FIELDS, USER_FIELDS, VERIFICATION_FIELDS,
};
use rustauth_tokio_postgres::{TokioPostgresAdapter, TokioPostgresConnection};
use time::{Duration, OffsetDateTime, UtcOffset};
use tokio_postgres::Client;

// ---------------------------------------------------------------------------------------------
// Field lists exactly as core sends them (core: user/record.rs, session.rs, verification.rs).

/// The default tables (with database rate limits) and the column their dumps sort by.
const DEFAULT_TABLES: [(&str, &str); 5] = [
    ("users", "id"),
    ("sessions", "id"),
    ("accounts", "id"),
    ("verifications", "id"),
    ("rate_limits", "key"),
];

fn default_schema() -> DbSchema {
    auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    })
}

// ---------------------------------------------------------------------------------------------
// A small deterministic PRNG (splitmix64).

// ---------------------------------------------------------------------------------------------
// Values.

fn s(value: impl Into<String>) -> DbValue {
    DbValue::String(value.into())
}

/// A user named Ada with this id, email and creation time, as sign-up creates one.
fn new_user(id: &str, email: &str, at: OffsetDateTime) -> Create {
    Create::new("user")
        .data("id", s(id))
        .data("name", s("Ada"))
        .data("email", s(email))
        .data("email_verified", DbValue::Boolean(false))
        .data("created_at", ts(at))
        .data("updated_at", ts(at))
}

fn ts(value: OffsetDateTime) -> DbValue {
    DbValue::Timestamp(value)
}

/// A 10 000-character string (not bytes) mixing one- to four-byte characters.
fn long_text(rng: &mut Rng) -> String {
    let alphabet: Vec<char> = "aé€🦀Zß漢字ñ\u{0301}'%_\\\"".chars().collect();
    let start = rng.index(alphabet.len());
    alphabet.iter().cycle().skip(start).take(10_000).collect()
}

fn text(rng: &mut Rng) -> String {
    match rng.below(12) {
        0 => String::new(),
        1 => "Zoë Ångström 🦀 日本語 עברית ß".to_owned(),
        2 => long_text(rng),
        3 => "quote ' double \" backslash \\ percent % underscore _".to_owned(),
        4 => "e\u{0301} vs é, NBSP\u{00A0}and ZWJ 👩\u{200D}💻".to_owned(),
        _ => format!("text-{}", rng.below(1_000)),
    }
}

/// A timestamp with nanoseconds (stored truncated to microseconds), sometimes before 1970 or
/// 2000, sometimes in a non-UTC offset.
fn timestamp(rng: &mut Rng) -> OffsetDateTime {
    let seconds = match rng.below(6) {
        0 => -2_000_000_000 + i64::try_from(rng.below(2_000_000_000)).unwrap(),
        1 => 946_684_800 + i64::try_from(rng.below(3)).unwrap() - 1,
        2 => 4_102_444_800 + i64::try_from(rng.below(3_000_000_000)).unwrap(),
        _ => 1_700_000_000 + i64::try_from(rng.below(200_000_000)).unwrap(),
    };
    let nanos = match rng.below(3) {
        0 => 0,
        1 => rng.below(1_000_000) * 1_000,
        _ => rng.below(1_000_000_000),
    };
    let at = OffsetDateTime::from_unix_timestamp(seconds).unwrap()
        + Duration::nanoseconds(i64::try_from(nanos).unwrap());
    if rng.chance(15) {
        let hours = i8::try_from(rng.below(27)).unwrap() - 13;
        at.to_offset(UtcOffset::from_hms(hours, 0, 0).unwrap())
    } else {
        at
    }
}

/// `None` (key left out), `Null`, or a value.
fn optional(rng: &mut Rng, value: DbValue) -> Option<DbValue> {
    match rng.below(3) {
        0 => None,
        1 => Some(DbValue::Null),
        _ => Some(value),
    }
}

/// A selection: empty (every field), core's list, or a shuffled non-empty subset.
fn selection(rng: &mut Rng, core: &[&str]) -> Vec<String> {
    match rng.below(4) {
        0 => Vec::new(),
        1 | 2 => core.iter().map(|field| (*field).to_owned()).collect(),
        _ => {
            let mut fields: Vec<String> = core.iter().map(|field| (*field).to_owned()).collect();
            rng.shuffle(&mut fields);
            fields.truncate(1 + rng.index(fields.len()));
            fields
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outcomes, compared with key order at every level.

/// A value with records flattened to ordered key/value lists.
#[derive(Debug, Clone, PartialEq)]
enum Plain {
    Value(DbValue),
    Record(Vec<(String, Plain)>),
    Records(Vec<Vec<(String, Plain)>>),
}

fn ordered(record: &DbRecord) -> Vec<(String, Plain)> {
    record
        .iter()
        .map(|(key, value)| {
            let plain = match value {
                DbValue::Record(inner) => Plain::Record(ordered(inner)),
                DbValue::RecordArray(inner) => Plain::Records(inner.iter().map(ordered).collect()),
                other => Plain::Value(other.clone()),
            };
            (key.clone(), plain)
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Created(Vec<(String, Plain)>),
    Found(Option<Vec<(String, Plain)>>),
    Many(Vec<Vec<(String, Plain)>>),
    Number(u64),
    Unit,
    /// The records the creates inside a transaction returned, then the transaction's result.
    Transaction(Vec<Vec<(String, Plain)>>, Result<(), String>),
}

/// One adapter call.
#[derive(Debug, Clone)]
enum Call {
    Create(Create),
    FindOne(FindOne),
    FindMany(FindMany),
    /// A `find_many` without a defined row order: records are compared as a sorted list.
    FindManyUnordered(FindMany),
    Update(Update),
    Delete(Delete),
    DeleteMany(DeleteMany),
    Count(Count),
    /// Sign-up's creates, in one transaction.
    Transaction(Vec<Create>),
}

/// Runs `call`; returns its outcome (errors as their `Display` text).
async fn apply(adapter: &TokioPostgresAdapter, call: &Call) -> Result<Outcome, String> {
    let text = |error: rustauth_core::error::RustAuthError| error.to_string();
    match call.clone() {
        Call::Create(query) => adapter
            .create(query)
            .await
            .map(|record| Outcome::Created(ordered(&record)))
            .map_err(text),
        Call::FindOne(query) => adapter
            .find_one(query)
            .await
            .map(|record| Outcome::Found(record.as_ref().map(ordered)))
            .map_err(text),
        Call::FindMany(query) => adapter
            .find_many(query)
            .await
            .map(|records| Outcome::Many(records.iter().map(ordered).collect()))
            .map_err(text),
        Call::FindManyUnordered(query) => adapter
            .find_many(query)
            .await
            .map(|records| {
                let mut records: Vec<_> = records.iter().map(ordered).collect();
                records.sort_by_key(|record| format!("{record:?}"));
                Outcome::Many(records)
            })
            .map_err(text),
        Call::Update(query) => adapter
            .update(query)
            .await
            .map(|record| Outcome::Found(record.as_ref().map(ordered)))
            .map_err(text),
        Call::Delete(query) => adapter
            .delete(query)
            .await
            .map(|()| Outcome::Unit)
            .map_err(text),
        Call::DeleteMany(query) => adapter
            .delete_many(query)
            .await
            .map(Outcome::Number)
            .map_err(text),
        Call::Count(query) => adapter
            .count(query)
            .await
            .map(Outcome::Number)
            .map_err(text),
        Call::Transaction(creates) => {
            let records = Arc::new(Mutex::new(Vec::new()));
            let sink = Arc::clone(&records);
            let result = adapter
                .transaction(Box::new(move |tx| {
                    Box::pin(async move {
                        for create in creates {
                            let record = tx.create(create).await?;
                            sink.lock().unwrap().push(ordered(&record));
                        }
                        Ok(())
                    })
                }))
                .await
                .map_err(text);
            let records = records.lock().unwrap().clone();
            Ok(Outcome::Transaction(records, result))
        }
    }
}

/// How many calls of this outcome the typed path served, if the call's shape is typed: one per
/// successful call (the counter does not count failed statements), or one per create that
/// succeeded inside a transaction.
fn typed_calls(outcome: &Result<Outcome, String>) -> u64 {
    match outcome {
        Ok(Outcome::Transaction(records, _)) => records.len() as u64,
        Ok(_) => 1,
        Err(_) => 0,
    }
}

// ---------------------------------------------------------------------------------------------
// Two databases, one typed adapter and one generic adapter.

struct Side {
    adapter: TokioPostgresAdapter,
    raw: Client,
}

struct Pair {
    typed: Side,
    generic: Side,
    /// (table, dump order) of every table compared after each step.
    tables: Vec<(String, String)>,
    /// Typed calls A has served so far, as this test expects them.
    expected_typed: u64,
    steps: usize,
    /// How the two sides are named in failure messages.
    labels: (&'static str, &'static str),
}

async fn side(label: &str, schema: &DbSchema, typed: bool) -> Side {
    side_with_shapes(label, schema, typed, true).await
}

/// A side whose generic path keeps plans by query shape (`shapes`) or plans every call.
async fn side_with_shapes(label: &str, schema: &DbSchema, typed: bool, shapes: bool) -> Side {
    let mut side = side_without_tables(label, schema, typed).await;
    side.adapter = side.adapter.with_shape_cache(shapes);
    side.adapter
        .create_schema(schema, None)
        .await
        .expect("create_schema");
    side
}

/// A fresh, empty database and an adapter on it.
async fn side_without_tables(label: &str, schema: &DbSchema, typed: bool) -> Side {
    let url = support::fresh_database(label).await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect")
        .with_typed_statements(typed);
    let raw = support::connect(&url).await;
    Side { adapter, raw }
}

impl Pair {
    async fn new(label: &str, schema: &DbSchema, tables: &[(&str, &str)]) -> Self {
        let typed = side(&format!("{label}_typed"), schema, true).await;
        let generic = side(&format!("{label}_generic"), schema, false).await;
        Self::from_sides(typed, generic, tables)
    }

    fn from_sides(typed: Side, generic: Side, tables: &[(&str, &str)]) -> Self {
        assert_eq!(typed.adapter.typed_call_count(), 0);
        assert_eq!(generic.adapter.typed_call_count(), 0);
        Self {
            typed,
            generic,
            tables: tables
                .iter()
                .map(|(table, order)| ((*table).to_owned(), (*order).to_owned()))
                .collect(),
            expected_typed: 0,
            steps: 0,
            labels: ("typed", "generic"),
        }
    }

    /// Runs `call` on both adapters and compares results, counters and table contents.
    /// `typed` says whether A must serve it with a typed statement. Returns A's outcome.
    async fn step(&mut self, context: &str, call: Call, typed: bool) -> Result<Outcome, String> {
        self.steps += 1;
        let before = self.typed.adapter.typed_call_count();
        let a = apply(&self.typed.adapter, &call).await;
        let served = self.typed.adapter.typed_call_count() - before;
        let b = apply(&self.generic.adapter, &call).await;
        assert_eq!(
            a, b,
            "{context}: {} and {} results differ for {call:?}",
            self.labels.0, self.labels.1
        );
        // Debug text as well: identical text means identical key order at every level.
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{context}: {call:?}");
        let expected = if typed { typed_calls(&a) } else { 0 };
        assert_eq!(
            served, expected,
            "{context}: the typed path served {served} call(s), expected {expected}, for \
             {call:?} (result {a:?})"
        );
        self.expected_typed += expected;
        assert_eq!(self.typed.adapter.typed_call_count(), self.expected_typed);
        assert_eq!(
            self.generic.adapter.typed_call_count(),
            0,
            "{context}: the adapter with typed statements off served a typed call"
        );
        self.compare_tables(context).await;
        a
    }

    /// Like [`step`](Self::step) for a call whose routing this test does not predict (a
    /// typed shape with one part changed): results and tables must agree, whichever path
    /// served it.
    async fn step_unchecked(&mut self, context: &str, call: Call) -> Result<Outcome, String> {
        self.steps += 1;
        let before = self.typed.adapter.typed_call_count();
        let a = apply(&self.typed.adapter, &call).await;
        self.expected_typed += self.typed.adapter.typed_call_count() - before;
        let b = apply(&self.generic.adapter, &call).await;
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "{context}: {call:?}");
        self.compare_tables(context).await;
        a
    }

    async fn compare_tables(&self, context: &str) {
        for (table, order) in &self.tables {
            let a = dump(&self.typed.raw, table, order).await;
            let b = dump(&self.generic.raw, table, order).await;
            assert_eq!(a, b, "{context}: table {table} differs after the call");
        }
    }
}

/// Every row of `table` as JSON text, sorted by `order`.
async fn dump(raw: &Client, table: &str, order: &str) -> Vec<String> {
    raw.query(
        &format!("SELECT to_jsonb(t)::text FROM \"{table}\" AS t ORDER BY t.\"{order}\""),
        &[],
    )
    .await
    .unwrap_or_else(|error| panic!("dump {table}: {error}"))
    .iter()
    .map(|row| row.get(0))
    .collect()
}

// ---------------------------------------------------------------------------------------------
// What the database holds now (read from A's database), to aim calls at present and absent keys.

#[derive(Default)]
struct Snapshot {
    /// (id, email)
    users: Vec<(String, String)>,
    /// (id, token, user_id)
    sessions: Vec<(String, String, String)>,
    /// (id, user_id, provider_id)
    accounts: Vec<(String, String, String)>,
    /// (id, identifier)
    verifications: Vec<(String, String)>,
}

impl Snapshot {
    async fn read(raw: &Client) -> Self {
        let rows = |sql: &'static str| async move {
            raw.query(sql, &[])
                .await
                .unwrap_or_else(|error| panic!("{sql}: {error}"))
        };
        Self {
            users: rows("SELECT id, email FROM users ORDER BY id")
                .await
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect(),
            sessions: rows("SELECT id, token, user_id FROM sessions ORDER BY id")
                .await
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect(),
            accounts: rows("SELECT id, user_id, provider_id FROM accounts ORDER BY id")
                .await
                .iter()
                .map(|row| (row.get(0), row.get(1), row.get(2)))
                .collect(),
            verifications: rows("SELECT id, identifier FROM verifications ORDER BY id")
                .await
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect(),
        }
    }

    fn rows_with_identifier(&self, identifier: &str) -> usize {
        self.verifications
            .iter()
            .filter(|(_, existing)| existing == identifier)
            .count()
    }

    fn has_pair(&self, user_id: &str, provider_id: &str) -> bool {
        self.accounts
            .iter()
            .any(|(_, user, provider)| user == user_id && provider == provider_id)
    }
}

// ---------------------------------------------------------------------------------------------
// The call generator.

const PROVIDERS: [&str; 4] = ["credential", "github", "google", "gitlab"];

struct Generator {
    rng: Rng,
    fresh: u64,
    /// Verification `created_at`s strictly increase, so "newest by identifier" has one answer.
    clock: i64,
}

impl Generator {
    fn new(seed: u64) -> Self {
        Self {
            rng: Rng(seed),
            fresh: 0,
            clock: 1_700_000_000,
        }
    }

    /// A key never used before (32 characters, like core's random ids).
    fn fresh_id(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix}{:0>width$}", self.fresh, width = 32 - prefix.len())
    }

    /// An existing key (most of the time) or an absent one.
    fn key(&mut self, existing: &[String], prefix: &str) -> String {
        if !existing.is_empty() && self.rng.chance(75) {
            self.rng.pick(existing).clone()
        } else {
            self.fresh_id(prefix)
        }
    }

    /// A new id, or (sometimes) an existing one: a duplicate key.
    fn new_or_duplicate(&mut self, existing: &[String], prefix: &str) -> String {
        if !existing.is_empty() && self.rng.chance(8) {
            self.rng.pick(existing).clone()
        } else {
            self.fresh_id(prefix)
        }
    }

    fn email(&mut self, snapshot: &Snapshot) -> String {
        if !snapshot.users.is_empty() && self.rng.chance(8) {
            return self.rng.pick(&snapshot.users).1.clone();
        }
        self.fresh += 1;
        match self.rng.below(4) {
            0 => format!("zoë.{}@exämple.org", self.fresh),
            1 => format!("Mixed.Case{}@Example.COM", self.fresh),
            _ => format!("user{}@example.com", self.fresh),
        }
    }

    fn identifier(&mut self) -> String {
        match self.rng.below(5) {
            0 => format!("email-verification:ünï{}", self.rng.below(3)),
            _ => format!("reset-password:{}", self.rng.below(8)),
        }
    }

    fn next_created_at(&mut self) -> OffsetDateTime {
        self.clock += 1;
        let nanos = i64::try_from(self.rng.below(1_000_000_000)).unwrap();
        OffsetDateTime::from_unix_timestamp(self.clock).unwrap() + Duration::nanoseconds(nanos)
    }

    fn user_create(&mut self, snapshot: &Snapshot) -> Create {
        let ids: Vec<String> = snapshot.users.iter().map(|(id, _)| id.clone()).collect();
        let mut fields = vec![
            ("id", s(self.new_or_duplicate(&ids, "u"))),
            ("name", s(text(&mut self.rng))),
            ("email", s(self.email(snapshot))),
            ("email_verified", DbValue::Boolean(self.rng.chance(50))),
            ("created_at", ts(timestamp(&mut self.rng))),
            ("updated_at", ts(timestamp(&mut self.rng))),
        ];
        let image = s(text(&mut self.rng));
        if let Some(image) = optional(&mut self.rng, image) {
            fields.push(("image", image));
        }
        if self.rng.chance(30) {
            self.rng.shuffle(&mut fields);
        }
        let model = if self.rng.chance(10) { "users" } else { "user" };
        let mut create = Create::new(model);
        for (field, value) in fields {
            create = create.data(field, value);
        }
        create.select = selection(&mut self.rng, &USER_FIELDS);
        create.force_allow_id = self.rng.chance(50);
        create
    }

    fn session_create(&mut self, snapshot: &Snapshot, user_id: Option<String>) -> Create {
        let ids: Vec<String> = snapshot.sessions.iter().map(|row| row.0.clone()).collect();
        let tokens: Vec<String> = snapshot.sessions.iter().map(|row| row.1.clone()).collect();
        let users: Vec<String> = snapshot.users.iter().map(|(id, _)| id.clone()).collect();
        let user_id = user_id.unwrap_or_else(|| {
            if !users.is_empty() && self.rng.chance(93) {
                self.rng.pick(&users).clone()
            } else {
                self.fresh_id("missing-user")
            }
        });
        let mut fields = vec![
            ("id", s(self.new_or_duplicate(&ids, "s"))),
            ("user_id", s(user_id)),
            ("expires_at", ts(timestamp(&mut self.rng))),
            ("token", s(self.new_or_duplicate(&tokens, "t"))),
            ("created_at", ts(timestamp(&mut self.rng))),
            ("updated_at", ts(timestamp(&mut self.rng))),
        ];
        let ip = s(self.ip());
        if let Some(ip) = optional(&mut self.rng, ip) {
            fields.push(("ip_address", ip));
        }
        let agent = s(text(&mut self.rng));
        if let Some(agent) = optional(&mut self.rng, agent) {
            fields.push(("user_agent", agent));
        }
        if self.rng.chance(30) {
            self.rng.shuffle(&mut fields);
        }
        let model = if self.rng.chance(10) {
            "sessions"
        } else {
            "session"
        };
        let mut create = Create::new(model);
        for (field, value) in fields {
            create = create.data(field, value);
        }
        create.select = selection(&mut self.rng, &SESSION_FIELDS);
        create
    }

    fn ip(&mut self) -> String {
        if self.rng.chance(30) {
            "2001:db8::1".to_owned()
        } else {
            format!("203.0.113.{}", self.rng.below(256))
        }
    }

    /// An account create, or `None` when the chosen user already has every provider (the
    /// generator keeps (user_id, provider_id) unique: which of two matching rows a single-row
    /// update picks is unspecified, see `duplicate_rows_*` for that case).
    fn account_create(&mut self, snapshot: &Snapshot, user_id: Option<String>) -> Option<Create> {
        let ids: Vec<String> = snapshot.accounts.iter().map(|row| row.0.clone()).collect();
        let users: Vec<String> = snapshot.users.iter().map(|(id, _)| id.clone()).collect();
        let (user_id, provider_id) = match user_id {
            Some(user_id) => (user_id, "credential".to_owned()),
            None if users.is_empty() || self.rng.chance(5) => {
                (self.fresh_id("missing-user"), "credential".to_owned())
            }
            None => {
                let user_id = self.rng.pick(&users).clone();
                let free: Vec<&str> = PROVIDERS
                    .iter()
                    .copied()
                    .filter(|provider| !snapshot.has_pair(&user_id, provider))
                    .collect();
                if free.is_empty() {
                    return None;
                }
                let provider = (*self.rng.pick(&free)).to_owned();
                (user_id, provider)
            }
        };
        let mut fields = vec![
            ("id", s(self.new_or_duplicate(&ids, "a"))),
            ("provider_id", s(provider_id)),
            ("account_id", s(text(&mut self.rng))),
            ("user_id", s(user_id)),
            ("created_at", ts(timestamp(&mut self.rng))),
            ("updated_at", ts(timestamp(&mut self.rng))),
        ];
        for field in [
            "access_token",
            "refresh_token",
            "id_token",
            "scope",
            "password",
        ] {
            let value = s(text(&mut self.rng));
            if let Some(value) = optional(&mut self.rng, value) {
                fields.push((field, value));
            }
        }
        for field in ["access_token_expires_at", "refresh_token_expires_at"] {
            let value = ts(timestamp(&mut self.rng));
            if let Some(value) = optional(&mut self.rng, value) {
                fields.push((field, value));
            }
        }
        if self.rng.chance(30) {
            self.rng.shuffle(&mut fields);
        }
        let mut create = Create::new("account");
        for (field, value) in fields {
            create = create.data(field, value);
        }
        create.select = selection(&mut self.rng, &ACCOUNT_FIELDS);
        Some(create)
    }

    fn verification_create(&mut self, snapshot: &Snapshot) -> Create {
        let ids: Vec<String> = snapshot
            .verifications
            .iter()
            .map(|row| row.0.clone())
            .collect();
        let value = if self.rng.chance(20) {
            long_text(&mut self.rng)
        } else {
            text(&mut self.rng)
        };
        let created_at = self.next_created_at();
        let mut create = Create::new("verification")
            .data("id", s(self.new_or_duplicate(&ids, "v")))
            .data("identifier", s(self.identifier()))
            .data("value", s(value))
            .data("expires_at", ts(self.expiry()))
            .data("created_at", ts(created_at))
            .data("updated_at", ts(created_at));
        create.select = selection(&mut self.rng, &VERIFICATION_FIELDS);
        create
    }

    /// Verification expiries spread around the cleanup cut-offs `expiry` also produces.
    fn expiry(&mut self) -> OffsetDateTime {
        let seconds = 1_800_000_000 + i64::try_from(self.rng.below(1_000)).unwrap();
        let nanos = i64::try_from(self.rng.below(1_000_000_000)).unwrap();
        OffsetDateTime::from_unix_timestamp(seconds).unwrap() + Duration::nanoseconds(nanos)
    }

    /// One call of a shape the typed path serves.
    fn typed_call(&mut self, snapshot: &Snapshot) -> (&'static str, Call) {
        let user_ids: Vec<String> = snapshot.users.iter().map(|(id, _)| id.clone()).collect();
        let emails: Vec<String> = snapshot.users.iter().map(|(_, e)| e.clone()).collect();
        let tokens: Vec<String> = snapshot.sessions.iter().map(|row| row.1.clone()).collect();
        let session_users: Vec<String> =
            snapshot.sessions.iter().map(|row| row.2.clone()).collect();
        loop {
            let call = match self.rng.below(24) {
                0 | 1 => ("create user", Call::Create(self.user_create(snapshot))),
                2 | 20..=22 => (
                    "create session",
                    Call::Create(self.session_create(snapshot, None)),
                ),
                3 => match self.account_create(snapshot, None) {
                    Some(create) => ("create account", Call::Create(create)),
                    None => continue,
                },
                4 | 23 => (
                    "create verification",
                    Call::Create(self.verification_create(snapshot)),
                ),
                5 => {
                    let model = if self.rng.chance(10) {
                        "sessions"
                    } else {
                        "session"
                    };
                    let mut query = FindOne::new(model)
                        .where_clause(Where::new("token", s(self.key(&tokens, "t"))));
                    query.select = selection(&mut self.rng, &SESSION_FIELDS);
                    ("find session by token", Call::FindOne(query))
                }
                6 => {
                    let mut query = FindOne::new("user")
                        .where_clause(Where::new("id", s(self.key(&user_ids, "u"))));
                    query.select = selection(&mut self.rng, &USER_FIELDS);
                    ("find user by id", Call::FindOne(query))
                }
                7 => {
                    let mut query = FindOne::new("user")
                        .where_clause(Where::new("email", s(self.key(&emails, "nobody"))));
                    query.select = selection(&mut self.rng, &USER_FIELDS);
                    ("find user by email", Call::FindOne(query))
                }
                8 | 9 => {
                    let mut query = FindOne::new("user")
                        .where_clause(Where::new("email", s(self.key(&emails, "nobody"))))
                        .join("account", JoinOption::enabled());
                    query.select = selection(&mut self.rng, &USER_FIELDS);
                    ("find user by email with accounts", Call::FindOne(query))
                }
                10 => {
                    let mut update = Update::new("session")
                        .where_clause(Where::new("token", s(self.key(&tokens, "t"))));
                    let expires = ts(timestamp(&mut self.rng));
                    let updated = ts(timestamp(&mut self.rng));
                    update = if self.rng.chance(50) {
                        update
                            .data("expires_at", expires)
                            .data("updated_at", updated)
                    } else {
                        update
                            .data("updated_at", updated)
                            .data("expires_at", expires)
                    };
                    ("update session expiry", Call::Update(update))
                }
                11 => {
                    let update = Update::new("user")
                        .where_clause(Where::new("id", s(self.key(&user_ids, "u"))))
                        .data("email_verified", DbValue::Boolean(self.rng.chance(50)))
                        .data("updated_at", ts(timestamp(&mut self.rng)));
                    ("set email verified", Call::Update(update))
                }
                12 => {
                    let (user_id, provider_id) =
                        if !snapshot.accounts.is_empty() && self.rng.chance(75) {
                            let (_, user, provider) = self.rng.pick(&snapshot.accounts).clone();
                            (user, provider)
                        } else {
                            let user = self.key(&user_ids, "u");
                            (user, (*self.rng.pick(&PROVIDERS)).to_owned())
                        };
                    let user = Where::new("user_id", s(user_id));
                    let provider = Where::new("provider_id", s(provider_id));
                    let mut update = Update::new("account");
                    update.where_clauses = if self.rng.chance(50) {
                        vec![user, provider]
                    } else {
                        vec![provider, user]
                    };
                    let update = update
                        .data("password", s(text(&mut self.rng)))
                        .data("updated_at", ts(timestamp(&mut self.rng)));
                    ("update account password", Call::Update(update))
                }
                13 => {
                    let mut query = FindMany::new("verification")
                        .where_clause(Where::new("identifier", s(self.identifier())))
                        .sort_by(Sort::new("created_at", SortDirection::Desc))
                        .limit(1);
                    if self.rng.chance(30) {
                        query = query.offset(0);
                    }
                    query.select = selection(&mut self.rng, &VERIFICATION_FIELDS);
                    ("newest verification", Call::FindMany(query))
                }
                14 => {
                    let mut query = FindMany::new("session")
                        .where_clause(Where::new("user_id", s(self.key(&session_users, "u"))));
                    query.select = selection(&mut self.rng, &SESSION_FIELDS);
                    ("sessions of a user", Call::FindManyUnordered(query))
                }
                15 => (
                    "delete session by token",
                    Call::Delete(
                        Delete::new("session")
                            .where_clause(Where::new("token", s(self.key(&tokens, "t")))),
                    ),
                ),
                16 => {
                    // Only identifiers with at most one row: which of several rows a
                    // single-row delete removes is unspecified (see `duplicate_rows_*`).
                    let identifier = self.identifier();
                    if snapshot.rows_with_identifier(&identifier) > 1 {
                        continue;
                    }
                    (
                        "delete verification by identifier",
                        Call::Delete(
                            Delete::new("verification")
                                .where_clause(Where::new("identifier", s(identifier))),
                        ),
                    )
                }
                17 => (
                    "delete expired verifications",
                    Call::DeleteMany(DeleteMany::new("verification").where_clause(
                        Where::new("expires_at", ts(self.expiry())).operator(WhereOperator::Lt),
                    )),
                ),
                18 => (
                    "delete sessions of a user",
                    Call::DeleteMany(
                        DeleteMany::new("session")
                            .where_clause(Where::new("user_id", s(self.key(&session_users, "u")))),
                    ),
                ),
                19 => ("sign-up transaction", self.sign_up(snapshot)),
                _ => unreachable!(),
            };
            return call;
        }
    }

    /// Sign-up's three creates (user, credential account, session), sometimes with a
    /// duplicate email or token that fails inside the transaction.
    fn sign_up(&mut self, snapshot: &Snapshot) -> Call {
        let user_id = self.fresh_id("u");
        let now = timestamp(&mut self.rng);
        let mut user = Create::new("user")
            .data("id", s(user_id.clone()))
            .data("name", s(text(&mut self.rng)))
            .data("email", s(self.email(snapshot)))
            .data("email_verified", DbValue::Boolean(false))
            .data("image", DbValue::Null)
            .data("created_at", ts(now))
            .data("updated_at", ts(now))
            .select(USER_FIELDS)
            .force_allow_id();
        if self.rng.chance(20) {
            user.data.shift_remove("image");
        }
        let mut account = Create::new("account")
            .data("id", s(self.fresh_id("a")))
            .data("provider_id", s("credential"))
            .data("account_id", s(user_id.clone()))
            .data("user_id", s(user_id.clone()))
            .data("password", s(text(&mut self.rng)))
            .data("created_at", ts(now))
            .data("updated_at", ts(now))
            .select(ACCOUNT_FIELDS);
        for field in [
            "access_token",
            "refresh_token",
            "id_token",
            "access_token_expires_at",
            "refresh_token_expires_at",
            "scope",
        ] {
            account.data.insert(field.to_owned(), DbValue::Null);
        }
        let session = self
            .session_create(snapshot, Some(user_id))
            .select(SESSION_FIELDS);
        Call::Transaction(vec![user, account, session])
    }

    /// One call of a shape the typed path must leave to the generic path.
    fn generic_call(&mut self, snapshot: &Snapshot) -> (&'static str, Call) {
        let user_ids: Vec<String> = snapshot.users.iter().map(|(id, _)| id.clone()).collect();
        let emails: Vec<String> = snapshot.users.iter().map(|(_, e)| e.clone()).collect();
        let tokens: Vec<String> = snapshot.sessions.iter().map(|row| row.1.clone()).collect();
        let session_users: Vec<String> =
            snapshot.sessions.iter().map(|row| row.2.clone()).collect();
        match self.rng.below(17) {
            0 => {
                let email = self.key(&emails, "nobody").to_uppercase();
                let mut query =
                    FindOne::new("user").where_clause(Where::new("email", s(email)).insensitive());
                query.select = selection(&mut self.rng, &USER_FIELDS);
                ("insensitive email", Call::FindOne(query))
            }
            1 => {
                let mut create = self.user_create(snapshot);
                create.data.insert("nickname".to_owned(), s("extra"));
                ("create user with an unknown key", Call::Create(create))
            }
            2 => {
                let mut create = self.user_create(snapshot);
                create.data.shift_remove("email_verified");
                ("create user without a required key", Call::Create(create))
            }
            3 => {
                let mut create = self.session_create(snapshot, None);
                create.data.insert("token".to_owned(), DbValue::Number(7));
                ("create session with a numeric token", Call::Create(create))
            }
            4 => {
                let mut query = FindOne::new("session")
                    .where_clause(Where::new("token", s(self.key(&tokens, "t"))));
                query.select = vec!["token".to_owned(), "no_such_field".to_owned()];
                ("select an unknown field", Call::FindOne(query))
            }
            5 => (
                "user by id and email",
                Call::FindOne(
                    FindOne::new("user")
                        .where_clause(Where::new("id", s(self.key(&user_ids, "u"))))
                        .where_clause(Where::new("email", s(self.key(&emails, "nobody")))),
                ),
            ),
            6 => (
                "update session with three keys",
                Call::Update(
                    Update::new("session")
                        .where_clause(Where::new("token", s(self.key(&tokens, "t"))))
                        .data("expires_at", ts(timestamp(&mut self.rng)))
                        .data("updated_at", ts(timestamp(&mut self.rng)))
                        .data("user_agent", s(text(&mut self.rng))),
                ),
            ),
            7 => (
                "update session expiry only",
                Call::Update(
                    Update::new("session")
                        .where_clause(Where::new("token", s(self.key(&tokens, "t"))))
                        .data("expires_at", ts(timestamp(&mut self.rng))),
                ),
            ),
            8 => (
                "sessions of a user with a limit",
                Call::FindMany(
                    FindMany::new("session")
                        .where_clause(Where::new("user_id", s(self.key(&session_users, "u"))))
                        .sort_by(Sort::new("id", SortDirection::Asc))
                        .limit(2),
                ),
            ),
            9 => (
                "oldest verification",
                Call::FindMany(
                    FindMany::new("verification")
                        .where_clause(Where::new("identifier", s(self.identifier())))
                        .sort_by(Sort::new("created_at", SortDirection::Asc))
                        .limit(1),
                ),
            ),
            10 => (
                "user with at most two accounts",
                Call::FindOne(
                    FindOne::new("user")
                        .where_clause(Where::new("email", s(self.key(&emails, "nobody"))))
                        .join("account", JoinOption::enabled().limit(2)),
                ),
            ),
            11 => (
                "user with a disabled join",
                Call::FindOne(
                    FindOne::new("user")
                        .where_clause(Where::new("email", s(self.key(&emails, "nobody"))))
                        .join("account", JoinOption::disabled()),
                ),
            ),
            12 => (
                "delete verifications expiring up to",
                Call::DeleteMany(DeleteMany::new("verification").where_clause(
                    Where::new("expires_at", ts(self.expiry())).operator(WhereOperator::Lte),
                )),
            ),
            13 => {
                let id = snapshot
                    .sessions
                    .first()
                    .map_or_else(|| self.fresh_id("s"), |row| row.0.clone());
                (
                    "delete session by id",
                    Call::Delete(Delete::new("session").where_clause(Where::new("id", s(id)))),
                )
            }
            14 => (
                "user whose id is null",
                Call::FindOne(FindOne::new("user").where_clause(Where::new("id", DbValue::Null))),
            ),
            15 => (
                "set email verified and name",
                Call::Update(
                    Update::new("user")
                        .where_clause(Where::new("id", s(self.key(&user_ids, "u"))))
                        .data("email_verified", DbValue::Boolean(true))
                        .data("name", s(text(&mut self.rng)))
                        .data("updated_at", ts(timestamp(&mut self.rng))),
                ),
            ),
            _ => (
                "count sessions of a user",
                Call::Count(
                    Count::new("session")
                        .where_clause(Where::new("user_id", s(self.key(&session_users, "u")))),
                ),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests.

/// A few hundred random calls of every routed shape (and of shapes that must stay generic),
/// over NULLs, unicode, 10k-character strings, nanosecond timestamps, absent keys and
/// duplicate keys.
/// (`DIFFERENTIAL_SEED` and `DIFFERENTIAL_STEPS` override the seed and the length.)
#[tokio::test]
async fn random_calls_give_the_same_records_errors_and_rows_on_both_paths() {
    let schema = default_schema();
    let pair = Pair::new("differential_random", &schema, &DEFAULT_TABLES).await;
    random_run(pair, 0x5EED_0003_0005).await;
}

/// The same random calls against a generic side that plans every call afresh (shape cache
/// off): the typed side's generic fallbacks keep plans by shape, the other side does not.
#[tokio::test]
async fn random_calls_match_with_the_shape_cache_off() {
    let schema = default_schema();
    let typed = side("differential_shapes_typed", &schema, true).await;
    let generic = side_with_shapes("differential_shapes_off", &schema, false, false).await;
    let mut pair = Pair::from_sides(typed, generic, &DEFAULT_TABLES);
    pair.labels = ("typed", "generic without shape cache");
    random_run(pair, 0x5EED_0003_0005).await;
}

/// Calls whose SQL depends on their values (NULL vs a value, empty and longer IN lists,
/// insensitive comparisons of strings and of other values, LIKE patterns with wildcards),
/// each shape repeated with other values, on the generic path with the shape cache on (A)
/// and off (B): results, errors and tables agree, and A keeps plans.
#[tokio::test]
async fn value_dependent_shapes_agree_with_and_without_the_shape_cache() {
    let schema = default_schema();
    let on = side_with_shapes("differential_shapes_on_values", &schema, false, true).await;
    let off = side_with_shapes("differential_shapes_off_values", &schema, false, false).await;
    let mut pair = Pair::from_sides(on, off, &DEFAULT_TABLES);
    pair.labels = ("shape cache on", "shape cache off");
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    for (index, (email, image)) in [
        ("ada@example.com", Some("a.png")),
        ("GRACE@example.com", None),
        ("100%_sure@example.com", Some(r"c:\\x")),
        ("o'hara@example.com", None),
    ]
    .into_iter()
    .enumerate()
    {
        let mut user = Create::new("user");
        user.data = [
            ("id", s(format!("u{index}"))),
            ("name", s(format!("User {index}"))),
            ("email", s(email)),
            ("email_verified", DbValue::Boolean(index % 2 == 0)),
            ("image", image.map_or(DbValue::Null, s)),
            ("created_at", ts(at)),
            ("updated_at", ts(at)),
        ]
        .into_iter()
        .map(|(field, value)| (field.to_owned(), value))
        .collect();
        pair.step("create", Call::Create(user), false)
            .await
            .expect("create a user");
    }
    let many = |clauses: Vec<Where>| {
        let mut query = FindMany::new("user").sort_by(Sort::new("id", SortDirection::Asc));
        query.where_clauses = clauses;
        Call::FindMany(query)
    };
    let texts =
        |values: &[&str]| DbValue::StringArray(values.iter().map(|v| (*v).to_owned()).collect());
    let image =
        |value: DbValue, operator: WhereOperator| Where::new("image", value).operator(operator);
    // Each list runs twice: the second pass meets the plans the first one kept.
    let calls = vec![
        many(vec![image(DbValue::Null, WhereOperator::Eq)]),
        many(vec![image(s("a.png"), WhereOperator::Eq)]),
        many(vec![image(DbValue::Null, WhereOperator::Ne)]),
        many(vec![image(s("a.png"), WhereOperator::Ne)]),
        many(vec![
            Where::new("id", texts(&[])).operator(WhereOperator::In)
        ]),
        many(vec![
            Where::new("id", texts(&["u1"])).operator(WhereOperator::In)
        ]),
        many(vec![
            Where::new("id", texts(&["u1", "u3"])).operator(WhereOperator::In)
        ]),
        many(vec![
            Where::new("id", texts(&[])).operator(WhereOperator::NotIn)
        ]),
        many(vec![
            Where::new("id", texts(&["u0", "u2"])).operator(WhereOperator::NotIn)
        ]),
        many(vec![Where::new(
            "email",
            texts(&["ADA@EXAMPLE.COM", "grace@example.com"]),
        )
        .operator(WhereOperator::In)
        .insensitive()]),
        many(vec![
            Where::new("email", s("grace@EXAMPLE.com")).insensitive()
        ]),
        many(vec![Where::new("email", DbValue::Number(7)).insensitive()]),
        many(vec![
            Where::new("email", s("100%_")).operator(WhereOperator::StartsWith)
        ]),
        many(vec![
            Where::new("email", s("%")).operator(WhereOperator::Contains)
        ]),
        many(vec![
            Where::new("email", s("_")).operator(WhereOperator::Contains)
        ]),
        many(vec![Where::new("email", s("EXAMPLE.COM"))
            .operator(WhereOperator::EndsWith)
            .insensitive()]),
        many(vec![image(s(r"\\x"), WhereOperator::EndsWith)]),
        many(vec![image(DbValue::Null, WhereOperator::Lt)]),
        many(vec![
            Where::new("email_verified", DbValue::Boolean(true)),
            Where::new("id", s("u1")).or(),
            image(DbValue::Null, WhereOperator::Eq).or(),
        ]),
        Call::Count(Count::new("user").where_clause(image(DbValue::Null, WhereOperator::Eq))),
        Call::Count(Count::new("user").where_clause(image(s("a.png"), WhereOperator::Eq))),
        Call::FindOne(
            FindOne::new("user").where_clause(Where::new("email", s("o'hara@example.com"))),
        ),
        Call::FindOne(FindOne::new("user").where_clause(Where::new("email", s("ada@example.com")))),
    ];
    for pass in ["first pass", "second pass"] {
        for (index, call) in calls.iter().enumerate() {
            let _ = pair
                .step(&format!("{pass}, call {index}"), call.clone(), false)
                .await;
        }
    }
    // Writes of one shape, with values of other classes.
    for (index, value) in [s("b.png"), DbValue::Null, s("c.png")]
        .into_iter()
        .enumerate()
    {
        let mut update = Update::new("user").where_clause(Where::new("id", s(format!("u{index}"))));
        update.data = [("image".to_owned(), value.clone())].into_iter().collect();
        pair.step(&format!("update {index}"), Call::Update(update), false)
            .await
            .expect("update by id");
        let mut update = Update::new("user")
            .where_clause(Where::new("image", value).operator(WhereOperator::Ne));
        update.data = [("name".to_owned(), s(format!("Renamed {index}")))]
            .into_iter()
            .collect();
        let _ = pair
            .step(
                &format!("update by image {index}"),
                Call::Update(update),
                false,
            )
            .await;
    }
    for (index, value) in [DbValue::Null, s("zzz"), s("c.png")]
        .into_iter()
        .enumerate()
    {
        let delete = Delete::new("user").where_clause(Where::new("image", value));
        let _ = pair
            .step(&format!("delete {index}"), Call::Delete(delete), false)
            .await;
    }
    let kept = pair.typed.adapter.cached_shape_count();
    assert!(
        kept >= 20,
        "the shape cache keeps the shapes it planned ({kept})"
    );
    assert_eq!(
        pair.generic.adapter.cached_shape_count(),
        0,
        "the cache is off on B"
    );
}

/// The same random calls, the generic side sending unprepared statements (`query_typed`, the
/// PgBouncer mode, where typed statements are never used).
#[tokio::test]
async fn random_calls_match_against_unprepared_generic_statements() {
    let schema = default_schema();
    let typed = side("differential_unprepared_typed", &schema, true).await;
    let url = support::fresh_database("differential_unprepared_generic").await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let adapter = TokioPostgresAdapter::with_connection(
        TokioPostgresConnection::from_client_unprepared(client),
        schema.clone(),
    );
    adapter
        .create_schema(&schema, None)
        .await
        .expect("create_schema");
    let generic = Side {
        adapter,
        raw: support::connect(&url).await,
    };
    let mut pair = Pair::from_sides(typed, generic, &DEFAULT_TABLES);
    pair.labels = ("typed", "unprepared generic");
    random_run(pair, 0x0DD5_EED5).await;
}

async fn random_run(mut pair: Pair, default_seed: u64) {
    let seed = std::env::var("DIFFERENTIAL_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(default_seed);
    let steps: usize = std::env::var("DIFFERENTIAL_STEPS")
        .ok()
        .and_then(|steps| steps.parse().ok())
        .unwrap_or(400);
    let mut generator = Generator::new(seed);

    // The typed statements of a connection are prepared by its first call outside a
    // transaction (never inside one); warm them up so the first transaction is typed too.
    pair.step(
        "warm-up",
        Call::FindOne(FindOne::new("user").where_clause(Where::new("id", s("nobody")))),
        true,
    )
    .await
    .expect("warm-up");

    let mut typed_by_shape: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    // Per shape: calls that found, changed or deleted something, and calls that did not.
    let mut hits: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
    let mut errors = 0;
    let mut mutated = 0;
    for step in 0..steps {
        let snapshot = Snapshot::read(&pair.typed.raw).await;
        let typed = !generator.rng.chance(12);
        let (shape, call) = if typed {
            generator.typed_call(&snapshot)
        } else {
            generator.generic_call(&snapshot)
        };
        if typed && generator.rng.chance(20) {
            let (change, call) = mutate(&mut generator.rng, call);
            let context = format!("seed {seed:#x} step {step} ({shape}, {change})");
            pair.step_unchecked(&context, call).await.ok();
            mutated += 1;
            continue;
        }
        let context = format!("seed {seed:#x} step {step} ({shape})");
        let before = pair.expected_typed;
        let outcome = pair.step(&context, call, typed).await;
        if outcome.is_err() || matches!(outcome, Ok(Outcome::Transaction(_, Err(_)))) {
            errors += 1;
        }
        let entry = typed_by_shape.entry(shape).or_default();
        entry.0 += 1;
        entry.1 += pair.expected_typed - before;
        let hit = match &outcome {
            Ok(Outcome::Found(found)) => Some(found.is_some()),
            Ok(Outcome::Many(found)) => Some(!found.is_empty()),
            Ok(Outcome::Number(count)) => Some(*count > 0),
            _ => None,
        };
        if let (true, Some(hit)) = (typed, hit) {
            let entry = hits.entry(shape).or_default();
            if hit {
                entry.0 += 1;
            } else {
                entry.1 += 1;
            }
        }
    }

    let snapshot = Snapshot::read(&pair.typed.raw).await;
    println!(
        "seed {seed:#x}: {} steps, {errors} errors, {} typed calls; final rows: {} users, {} \
         sessions, {} accounts, {} verifications",
        pair.steps,
        pair.expected_typed,
        snapshot.users.len(),
        snapshot.sessions.len(),
        snapshot.accounts.len(),
        snapshot.verifications.len()
    );
    for (shape, (calls, typed)) in &typed_by_shape {
        let (hit, miss) = hits.get(shape).copied().unwrap_or_default();
        println!("  {shape:<40} {calls:>4} calls {typed:>4} typed {hit:>4} hits {miss:>4} misses");
    }
    // Every routed read, update and bulk delete both found rows and missed.
    assert_eq!(hits.len(), 11, "{hits:?}");
    for (shape, (hit, miss)) in &hits {
        assert!(*hit > 0 && *miss > 0, "{shape}: {hit} hits, {miss} misses");
    }
    // The run exercised every routed shape (and most generic ones), errors included, and
    // ended with data in place.
    let routed = typed_by_shape
        .values()
        .filter(|(_, typed)| *typed > 0)
        .count();
    assert_eq!(routed, 18, "routed shapes covered: {typed_by_shape:?}");
    assert!(
        typed_by_shape.len() >= 28,
        "shapes covered: {typed_by_shape:?}"
    );
    assert!(errors > 5, "duplicate keys and bad shapes produced errors");
    assert!(
        mutated > steps / 20,
        "typed shapes with a changed part: {mutated}"
    );
    assert!(pair.expected_typed > steps as u64 / 2);
    assert!(!snapshot.users.is_empty() && !snapshot.accounts.is_empty());
}

/// A typed call with one part changed: an extra AND clause (that matches or not), the clause
/// turned OR, insensitive, or to another operator, a selection or a sort added. Any part the
/// router dropped instead of declining the call shows up as a difference.
fn mutate(rng: &mut Rng, call: Call) -> (&'static str, Call) {
    fn change(rng: &mut Rng, clauses: &mut Vec<Where>) -> &'static str {
        let Some(first) = clauses.first().cloned() else {
            clauses.push(Where::new("id", s("nobody")));
            return "extra id clause";
        };
        match rng.below(6) {
            0 => {
                clauses.push(Where::new("id", s("nobody")));
                "extra non-matching AND clause"
            }
            1 => {
                let mut again = first.clone();
                again.operator = WhereOperator::Ne;
                clauses.push(again);
                "extra contradicting AND clause"
            }
            2 => {
                for clause in clauses.iter_mut() {
                    clause.connector = Connector::Or;
                }
                clauses.push(Where::new("id", s("nobody")).or());
                "OR connectors"
            }
            3 => {
                if let Some(clause) = clauses.first_mut() {
                    clause.mode = WhereMode::Insensitive;
                    if let DbValue::String(value) = &clause.value {
                        clause.value = s(value.to_uppercase());
                    }
                }
                "insensitive first clause"
            }
            4 => {
                if let Some(clause) = clauses.first_mut() {
                    clause.operator = WhereOperator::Ne;
                }
                "Ne first clause"
            }
            _ => {
                if let Some(clause) = clauses.first_mut() {
                    clause.operator = WhereOperator::StartsWith;
                }
                "StartsWith first clause"
            }
        }
    }
    match call {
        Call::FindOne(mut query) => {
            let what = change(rng, &mut query.where_clauses);
            (what, Call::FindOne(query))
        }
        Call::FindMany(mut query) => {
            if rng.chance(30) {
                query.sort_by = Some(Sort::new("id", SortDirection::Asc));
                query.limit = Some(2);
                return ("sorted by id", Call::FindMany(query));
            }
            let what = change(rng, &mut query.where_clauses);
            query.sort_by = Some(Sort::new("id", SortDirection::Asc));
            (what, Call::FindMany(query))
        }
        Call::Update(mut query) => {
            let what = change(rng, &mut query.where_clauses);
            (what, Call::Update(query))
        }
        Call::Delete(mut query) => {
            let what = change(rng, &mut query.where_clauses);
            (what, Call::Delete(query))
        }
        Call::DeleteMany(mut query) => {
            let what = change(rng, &mut query.where_clauses);
            (what, Call::DeleteMany(query))
        }
        other => ("unchanged", other),
    }
}

/// Fixed scenarios for each routed shape, with the edge cases spelled out: users with 0, 1 and
/// 3 accounts, optional keys left out, `Null`s, 10k-character values, nanosecond timestamps,
/// absent keys and duplicate keys.
#[tokio::test]
async fn every_routed_shape_matches_the_generic_path() {
    let schema = default_schema();
    let mut pair = Pair::new("differential_shapes", &schema, &DEFAULT_TABLES).await;
    let mut rng = Rng(42);
    let at = |seconds: i64, nanos: i64| {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap() + Duration::nanoseconds(nanos)
    };
    let long = long_text(&mut rng);

    // Users: every key, image left out, image NULL, a long unicode name.
    let users = [
        ("u0", "none@example.com", None),
        ("u1", "one@example.com", Some(DbValue::Null)),
        (
            "u3",
            "three@example.com",
            Some(s("https://img.example/ß.png")),
        ),
    ];
    for (index, (id, email, image)) in users.iter().enumerate() {
        let mut create = Create::new("user")
            .data("id", s(*id))
            .data(
                "name",
                s(if index == 2 {
                    long.clone()
                } else {
                    "Zoë 🦀".to_owned()
                }),
            )
            .data("email", s(*email))
            .data("email_verified", DbValue::Boolean(index == 1))
            .data("created_at", ts(at(1_700_000_000, 123_456_789)))
            .data("updated_at", ts(at(1_700_000_000, 999)));
        if let Some(image) = image {
            create = create.data("image", image.clone());
        }
        if index == 0 {
            create = create.select(USER_FIELDS);
        }
        pair.step(&format!("create user {id}"), Call::Create(create), true)
            .await
            .expect("create user");
    }
    let duplicate = pair
        .step(
            "duplicate user id",
            Call::Create(
                Create::new("user")
                    .data("id", s("u1"))
                    .data("name", s("again"))
                    .data("email", s("fresh@example.com"))
                    .data("email_verified", DbValue::Boolean(false))
                    .data("created_at", ts(at(0, 0)))
                    .data("updated_at", ts(at(0, 0))),
            ),
            true,
        )
        .await;
    assert!(duplicate.unwrap_err().contains("23505"));
    let duplicate = pair
        .step(
            "duplicate email",
            Call::Create(
                Create::new("user")
                    .data("id", s("u9"))
                    .data("name", s("again"))
                    .data("email", s("one@example.com"))
                    .data("email_verified", DbValue::Boolean(false))
                    .data("created_at", ts(at(0, 0)))
                    .data("updated_at", ts(at(0, 0))),
            ),
            true,
        )
        .await;
    assert!(duplicate.unwrap_err().contains("23505"));

    // Accounts: u1 has one (every optional key absent), u3 has three (NULLs, values, long).
    let account = |id: &str, user: &str, provider: &str| {
        Create::new("account")
            .data("id", s(id))
            .data("account_id", s(format!("{user}-{provider}")))
            .data("provider_id", s(provider))
            .data("user_id", s(user))
            .data("created_at", ts(at(1_600_000_000, 1)))
            .data("updated_at", ts(at(1_600_000_000, 2)))
    };
    pair.step(
        "account of u1",
        Call::Create(account("a1", "u1", "credential").data("password", s("hash-1"))),
        true,
    )
    .await
    .expect("account");
    pair.step(
        "github account of u3",
        Call::Create(
            account("a3b", "u3", "github")
                .data("access_token", s(long.clone()))
                .data("refresh_token", DbValue::Null)
                .data("access_token_expires_at", ts(at(-86_400, 5)))
                .data("refresh_token_expires_at", DbValue::Null)
                .data("scope", s("read:user 🦀"))
                .select(ACCOUNT_FIELDS),
        ),
        true,
    )
    .await
    .expect("account");
    pair.step(
        "credential account of u3",
        Call::Create(account("a3a", "u3", "credential").data("password", s("hash-3"))),
        true,
    )
    .await
    .expect("account");
    pair.step(
        "google account of u3",
        Call::Create(
            account("a3c", "u3", "google")
                .data("id_token", s("id-token"))
                .select(["password", "id"]),
        ),
        true,
    )
    .await
    .expect("account");
    let orphan = pair
        .step(
            "account of a missing user",
            Call::Create(account("a404", "nobody", "credential")),
            true,
        )
        .await;
    assert!(orphan.unwrap_err().contains("23503"));

    // The sign-in join: 0, 1 and 3 accounts, an absent email, each selection.
    for email in [
        "none@example.com",
        "one@example.com",
        "three@example.com",
        "absent@example.com",
    ] {
        for select in [Vec::new(), USER_FIELDS.to_vec(), vec!["email", "name"]] {
            let mut query = FindOne::new("user")
                .where_clause(Where::new("email", s(email)))
                .join("account", JoinOption::enabled());
            query.select = select.iter().map(|field| (*field).to_owned()).collect();
            let found = pair
                .step(&format!("join {email}"), Call::FindOne(query), true)
                .await
                .expect("join");
            if email == "three@example.com" {
                let Outcome::Found(Some(record)) = found else {
                    panic!("u3 is found: {found:?}")
                };
                let (key, Plain::Records(accounts)) = record.last().unwrap() else {
                    panic!("accounts are an array: {record:?}")
                };
                assert_eq!(key, "account");
                assert_eq!(accounts.len(), 3);
            }
        }
    }

    // Sessions: optional keys absent, NULL, set; nanosecond timestamps; a duplicate token.
    let session = |id: &str, token: &str, user: &str| {
        Create::new("session")
            .data("id", s(id))
            .data("user_id", s(user))
            .data("expires_at", ts(at(1_900_000_000, 123_456_789)))
            .data("token", s(token))
            .data("created_at", ts(at(1_700_000_000, 1)))
            .data("updated_at", ts(at(1_700_000_000, 999_999_999)))
    };
    pair.step(
        "session without optional keys",
        Call::Create(session("s1", "t1", "u1").select(SESSION_FIELDS)),
        true,
    )
    .await
    .expect("session");
    pair.step(
        "session with NULLs",
        Call::Create(
            session("s2", "t2", "u1")
                .data("ip_address", DbValue::Null)
                .data("user_agent", DbValue::Null),
        ),
        true,
    )
    .await
    .expect("session");
    pair.step(
        "session with values",
        Call::Create(
            session("s3", "t3", "u3")
                .data("ip_address", s("2001:db8::1"))
                .data("user_agent", s(long.clone())),
        ),
        true,
    )
    .await
    .expect("session");
    let duplicate = pair
        .step(
            "duplicate token",
            Call::Create(session("s4", "t1", "u3")),
            true,
        )
        .await;
    assert!(duplicate.unwrap_err().contains("23505"));

    for token in ["t1", "t2", "t3", "absent"] {
        for select in [Vec::new(), SESSION_FIELDS.to_vec()] {
            let mut query = FindOne::new("session").where_clause(Where::new("token", s(token)));
            query.select = select.iter().map(|field| (*field).to_owned()).collect();
            pair.step(&format!("session {token}"), Call::FindOne(query), true)
                .await
                .expect("find session");
        }
    }
    for (id, email) in [("u0", "none@example.com"), ("absent", "absent@example.com")] {
        for select in [Vec::new(), USER_FIELDS.to_vec()] {
            let mut by_id = FindOne::new("user").where_clause(Where::new("id", s(id)));
            by_id.select = select.iter().map(|field| (*field).to_owned()).collect();
            pair.step(&format!("user {id}"), Call::FindOne(by_id), true)
                .await
                .expect("user by id");
            let mut by_email = FindOne::new("user").where_clause(Where::new("email", s(email)));
            by_email.select = select.iter().map(|field| (*field).to_owned()).collect();
            pair.step(&format!("user {email}"), Call::FindOne(by_email), true)
                .await
                .expect("user by email");
        }
    }
    for user in ["u1", "u3", "u0"] {
        for select in [Vec::new(), SESSION_FIELDS.to_vec()] {
            let mut query = FindMany::new("session").where_clause(Where::new("user_id", s(user)));
            query.select = select.iter().map(|field| (*field).to_owned()).collect();
            pair.step(
                &format!("sessions of {user}"),
                Call::FindManyUnordered(query),
                true,
            )
            .await
            .expect("sessions of a user");
        }
    }

    // Updates: the session refresh, email verification, password reset; each also on a
    // missing row.
    for token in ["t1", "absent"] {
        let found = pair
            .step(
                &format!("refresh {token}"),
                Call::Update(
                    Update::new("session")
                        .where_clause(Where::new("token", s(token)))
                        .data("expires_at", ts(at(1_950_000_000, 987_654_321)))
                        .data("updated_at", ts(at(1_800_000_000, 1))),
                ),
                true,
            )
            .await
            .expect("refresh");
        assert_eq!(matches!(found, Outcome::Found(Some(_))), token == "t1");
    }
    for id in ["u0", "absent"] {
        pair.step(
            &format!("verify {id}"),
            Call::Update(
                Update::new("user")
                    .where_clause(Where::new("id", s(id)))
                    .data("email_verified", DbValue::Boolean(true))
                    .data("updated_at", ts(at(1_800_000_000, 5))),
            ),
            true,
        )
        .await
        .expect("verify email");
    }
    for (user, provider) in [("u3", "credential"), ("u3", "github"), ("u0", "credential")] {
        pair.step(
            &format!("password of {user}/{provider}"),
            Call::Update(
                Update::new("account")
                    .where_clause(Where::new("user_id", s(user)))
                    .where_clause(Where::new("provider_id", s(provider)))
                    .data("password", s("new-hash ✓"))
                    .data("updated_at", ts(at(1_800_000_000, 7))),
            ),
            true,
        )
        .await
        .expect("update password");
    }

    // Verifications: two for one identifier (the newest wins), a long value, expiries on both
    // sides of the cleanup cut-off (nanoseconds included).
    let verification = |id: &str, identifier: &str, created: i64, expires: OffsetDateTime| {
        Create::new("verification")
            .data("id", s(id))
            .data("identifier", s(identifier))
            .data("value", s(format!("value of {id}")))
            .data("expires_at", ts(expires))
            .data("created_at", ts(at(created, 500)))
            .data("updated_at", ts(at(created, 500)))
    };
    pair.step(
        "verification v1",
        Call::Create(
            verification(
                "v1",
                "reset-password:a",
                1_700_000_001,
                at(1_800_000_000, 0),
            )
            .select(VERIFICATION_FIELDS),
        ),
        true,
    )
    .await
    .expect("verification");
    pair.step(
        "verification v2",
        Call::Create(
            verification(
                "v2",
                "reset-password:a",
                1_700_000_002,
                at(1_800_000_000, 1_000),
            )
            .data("value", s(long.clone())),
        ),
        true,
    )
    .await
    .expect("verification");
    pair.step(
        "verification v3",
        Call::Create(verification(
            "v3",
            "reset-password:b",
            1_700_000_003,
            at(1_800_000_000, 999),
        )),
        true,
    )
    .await
    .expect("verification");
    for identifier in [
        "reset-password:a",
        "reset-password:b",
        "reset-password:none",
    ] {
        for select in [Vec::new(), VERIFICATION_FIELDS.to_vec()] {
            let mut query = FindMany::new("verification")
                .where_clause(Where::new("identifier", s(identifier)))
                .sort_by(Sort::new("created_at", SortDirection::Desc))
                .limit(1);
            query.select = select.iter().map(|field| (*field).to_owned()).collect();
            pair.step(&format!("newest {identifier}"), Call::FindMany(query), true)
                .await
                .expect("newest verification");
        }
    }
    // Cut-offs with nanoseconds: v1 (…00.000000) and v3 (…00.000000999 → …00.000000) expire
    // before …00.000001, v2 (…00.000001) does not.
    for (cut, expected) in [(at(1_800_000_000, 0), 0), (at(1_800_000_000, 1_500), 2)] {
        let deleted = pair
            .step(
                "delete expired",
                Call::DeleteMany(
                    DeleteMany::new("verification").where_clause(
                        Where::new("expires_at", ts(cut)).operator(WhereOperator::Lt),
                    ),
                ),
                true,
            )
            .await
            .expect("delete expired");
        assert_eq!(deleted, Outcome::Number(expected));
    }
    for identifier in [
        "reset-password:a",
        "reset-password:a",
        "reset-password:none",
    ] {
        pair.step(
            &format!("delete {identifier}"),
            Call::Delete(
                Delete::new("verification").where_clause(Where::new("identifier", s(identifier))),
            ),
            true,
        )
        .await
        .expect("delete verification");
    }

    // Sign-out and revocation.
    for token in ["t2", "t2"] {
        pair.step(
            "sign out",
            Call::Delete(Delete::new("session").where_clause(Where::new("token", s(token)))),
            true,
        )
        .await
        .expect("delete session");
    }
    for user in ["u1", "u1", "absent"] {
        pair.step(
            &format!("revoke sessions of {user}"),
            Call::DeleteMany(
                DeleteMany::new("session").where_clause(Where::new("user_id", s(user))),
            ),
            true,
        )
        .await
        .expect("revoke");
    }

    // Sign-up's transaction: committed, then failing on its third insert (duplicate token),
    // which rolls back the first two.
    let mut generator = Generator::new(7);
    for (label, token) in [
        ("sign-up", "t-new"),
        ("sign-up with a duplicate token", "t3"),
    ] {
        let Call::Transaction(mut creates) = generator.sign_up(&Snapshot::default()) else {
            unreachable!()
        };
        creates[2].data.insert("token".to_owned(), s(token));
        let user_id = creates[0].data["id"].clone();
        creates[2].data.insert("user_id".to_owned(), user_id);
        let outcome = pair
            .step(label, Call::Transaction(creates), true)
            .await
            .expect("transaction outcome");
        let Outcome::Transaction(records, result) = outcome else {
            unreachable!()
        };
        assert_eq!(records.len(), if token == "t3" { 2 } else { 3 });
        assert_eq!(result.is_ok(), token != "t3", "{result:?}");
    }
    println!(
        "{} steps, {} served by typed statements",
        pair.steps, pair.expected_typed
    );
}

/// Which row a single-row update or delete picks among several matches is unspecified;
/// on freshly inserted rows both paths pick the same one (the first in physical order).
#[tokio::test]
async fn duplicate_rows_single_row_update_and_delete_match() {
    let schema = default_schema();
    let mut pair = Pair::new("differential_duplicates", &schema, &DEFAULT_TABLES).await;
    let at = |seconds: i64| OffsetDateTime::from_unix_timestamp(seconds).unwrap();
    pair.step(
        "user",
        Call::Create(new_user("u1", "ada@example.com", at(1))),
        true,
    )
    .await
    .expect("user");
    for id in ["a1", "a2", "a3"] {
        pair.step(
            "same user and provider",
            Call::Create(
                Create::new("account")
                    .data("id", s(id))
                    .data("account_id", s(id))
                    .data("provider_id", s("credential"))
                    .data("user_id", s("u1"))
                    .data("password", s(format!("hash of {id}")))
                    .data("created_at", ts(at(2)))
                    .data("updated_at", ts(at(2))),
            ),
            true,
        )
        .await
        .expect("account");
    }
    for round in 0..3 {
        pair.step(
            "update one of three",
            Call::Update(
                Update::new("account")
                    .where_clause(Where::new("provider_id", s("credential")))
                    .where_clause(Where::new("user_id", s("u1")))
                    .data("password", s(format!("round {round}")))
                    .data("updated_at", ts(at(10 + round))),
            ),
            true,
        )
        .await
        .expect("update");
    }
    for (id, created) in [("v1", 5), ("v2", 7), ("v3", 6)] {
        pair.step(
            "same identifier",
            Call::Create(
                Create::new("verification")
                    .data("id", s(id))
                    .data("identifier", s("reset-password:same"))
                    .data("value", s(id))
                    .data("expires_at", ts(at(100)))
                    .data("created_at", ts(at(created)))
                    .data("updated_at", ts(at(created))),
            ),
            true,
        )
        .await
        .expect("verification");
    }
    for (before, remaining) in [(3_usize, 2_u64), (2, 1), (1, 0), (0, 0)] {
        let newest = pair
            .step(
                "newest",
                Call::FindMany(
                    FindMany::new("verification")
                        .where_clause(Where::new("identifier", s("reset-password:same")))
                        .sort_by(Sort::new("created_at", SortDirection::Desc))
                        .limit(1),
                ),
                true,
            )
            .await
            .expect("newest");
        let Outcome::Many(found) = newest else {
            unreachable!()
        };
        assert_eq!(found.len(), before.min(1));
        pair.step(
            "delete one of several",
            Call::Delete(
                Delete::new("verification")
                    .where_clause(Where::new("identifier", s("reset-password:same"))),
            ),
            true,
        )
        .await
        .expect("delete");
        let left = pair
            .step(
                "count",
                Call::Count(
                    Count::new("verification")
                        .where_clause(Where::new("identifier", s("reset-password:same"))),
                ),
                false,
            )
            .await
            .expect("count");
        assert_eq!(left, Outcome::Number(remaining));
    }
}

/// A schema whose `user` table has a plugin column and whose `session` table is renamed:
/// user calls that need only core columns stay typed, calls that need the plugin column and
/// every session call take the generic path, and both give the same results.
#[tokio::test]
async fn extended_and_renamed_tables_route_only_what_fits() {
    let schema = auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        user: TableOptions::default().with_field(
            "nickname",
            DbField::new("nickname", DbFieldType::String).optional(),
        ),
        session: TableOptions::default().with_name("app_sessions"),
        ..AuthSchemaOptions::default()
    });
    let tables = [
        ("users", "id"),
        ("app_sessions", "id"),
        ("accounts", "id"),
        ("verifications", "id"),
    ];
    let mut pair = Pair::new("differential_extended", &schema, &tables).await;
    let at = |seconds: i64, nanos: i64| {
        OffsetDateTime::from_unix_timestamp(seconds).unwrap() + Duration::nanoseconds(nanos)
    };
    let user = |id: &str, email: &str| {
        Create::new("user")
            .data("id", s(id))
            .data("name", s("Zoë"))
            .data("email", s(email))
            .data("email_verified", DbValue::Boolean(false))
            .data("created_at", ts(at(1_700_000_000, 1)))
            .data("updated_at", ts(at(1_700_000_000, 2)))
    };

    // Creates: core keys only → typed (the plugin column stays NULL); with the plugin key →
    // generic.
    pair.step(
        "user without nickname",
        Call::Create(user("u1", "one@example.com").select(USER_FIELDS)),
        true,
    )
    .await
    .expect("user");
    pair.step(
        "user with nickname",
        Call::Create(user("u2", "two@example.com").data("nickname", s("Twö"))),
        false,
    )
    .await
    .expect("user");
    pair.step(
        "account",
        Call::Create(
            Create::new("account")
                .data("id", s("a2"))
                .data("account_id", s("u2"))
                .data("provider_id", s("credential"))
                .data("user_id", s("u2"))
                .data("password", s("hash"))
                .data("created_at", ts(at(1_700_000_000, 3)))
                .data("updated_at", ts(at(1_700_000_000, 4))),
        ),
        true,
    )
    .await
    .expect("account");

    for (id, email) in [
        ("u1", "one@example.com"),
        ("u2", "two@example.com"),
        ("u9", "x@y.z"),
    ] {
        // Core's field lists need no plugin column: typed.
        pair.step(
            "user by id, core fields",
            Call::FindOne(
                FindOne::new("user")
                    .where_clause(Where::new("id", s(id)))
                    .select(USER_FIELDS),
            ),
            true,
        )
        .await
        .expect("find");
        pair.step(
            "user by email with accounts, core fields",
            Call::FindOne(
                FindOne::new("user")
                    .where_clause(Where::new("email", s(email)))
                    .select(USER_FIELDS)
                    .join("account", JoinOption::enabled()),
            ),
            true,
        )
        .await
        .expect("join");
        // Every field includes the plugin column: generic.
        pair.step(
            "user by id, every field",
            Call::FindOne(FindOne::new("user").where_clause(Where::new("id", s(id)))),
            false,
        )
        .await
        .expect("find");
        pair.step(
            "user by email, with nickname",
            Call::FindOne(
                FindOne::new("user")
                    .where_clause(Where::new("email", s(email)))
                    .select(["id", "nickname"]),
            ),
            false,
        )
        .await
        .expect("find");
        pair.step(
            "user by email with accounts, every field",
            Call::FindOne(
                FindOne::new("user")
                    .where_clause(Where::new("email", s(email)))
                    .join("account", JoinOption::enabled()),
            ),
            false,
        )
        .await
        .expect("join");
        // The update returns every column, plugin column included: generic.
        pair.step(
            "verify email",
            Call::Update(
                Update::new("user")
                    .where_clause(Where::new("id", s(id)))
                    .data("email_verified", DbValue::Boolean(true))
                    .data("updated_at", ts(at(1_800_000_000, 9))),
            ),
            false,
        )
        .await
        .expect("update");
    }

    // The renamed session table: every session call is generic.
    pair.step(
        "session create",
        Call::Create(
            Create::new("session")
                .data("id", s("s1"))
                .data("user_id", s("u1"))
                .data("expires_at", ts(at(1_900_000_000, 5)))
                .data("token", s("t1"))
                .data("created_at", ts(at(1_700_000_000, 5)))
                .data("updated_at", ts(at(1_700_000_000, 5)))
                .select(SESSION_FIELDS),
        ),
        false,
    )
    .await
    .expect("session");
    pair.step(
        "session by token",
        Call::FindOne(
            FindOne::new("session")
                .where_clause(Where::new("token", s("t1")))
                .select(SESSION_FIELDS),
        ),
        false,
    )
    .await
    .expect("session");
    pair.step(
        "session refresh",
        Call::Update(
            Update::new("session")
                .where_clause(Where::new("token", s("t1")))
                .data("expires_at", ts(at(1_950_000_000, 5)))
                .data("updated_at", ts(at(1_800_000_000, 5))),
        ),
        false,
    )
    .await
    .expect("refresh");
    pair.step(
        "sign out",
        Call::Delete(Delete::new("session").where_clause(Where::new("token", s("t1")))),
        false,
    )
    .await
    .expect("sign out");
    // The verification table still fits: typed.
    pair.step(
        "verification",
        Call::Create(
            Create::new("verification")
                .data("id", s("v1"))
                .data("identifier", s("reset-password:x"))
                .data("value", s("u1"))
                .data("expires_at", ts(at(1_800_000_000, 0)))
                .data("created_at", ts(at(1_700_000_000, 0)))
                .data("updated_at", ts(at(1_700_000_000, 0))),
        ),
        true,
    )
    .await
    .expect("verification");
}

/// The join key is the join's logical model name on both paths, whatever spelling the caller
/// used for the join model.
#[tokio::test]
async fn join_spelled_with_the_physical_table_name_matches() {
    let schema = default_schema();
    let mut pair = Pair::new("differential_join_name", &schema, &DEFAULT_TABLES).await;
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    pair.step(
        "user",
        Call::Create(new_user("u1", "ada@example.com", at)),
        true,
    )
    .await
    .expect("user");
    pair.step(
        "account",
        Call::Create(
            Create::new("account")
                .data("id", s("a1"))
                .data("account_id", s("u1"))
                .data("provider_id", s("credential"))
                .data("user_id", s("u1"))
                .data("created_at", ts(at))
                .data("updated_at", ts(at)),
        ),
        true,
    )
    .await
    .expect("account");
    for (model, join) in [
        ("users", "account"),
        ("user", "accounts"),
        ("users", "accounts"),
    ] {
        let found = pair
            .step(
                &format!("{model} joined with {join}"),
                Call::FindOne(
                    FindOne::new(model)
                        .where_clause(Where::new("email", s("ada@example.com")))
                        .select(USER_FIELDS)
                        .join(join, JoinOption::enabled()),
                ),
                true,
            )
            .await
            .expect("join");
        let Outcome::Found(Some(record)) = found else {
            panic!("found: {found:?}")
        };
        assert_eq!(record.last().unwrap().0, "account");
    }
}

/// The rate-limit consume on the default table (the generated statement) against the same
/// consumes on a renamed table (the generic statement): same decisions, same rows.
#[tokio::test]
async fn rate_limit_consumes_match_on_default_and_renamed_tables() {
    let default = default_schema();
    let renamed = auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        rate_limit: TableOptions::default().with_name("rl_renamed"),
        ..AuthSchemaOptions::default()
    });
    let typed = side("differential_rate_limit_typed", &default, true).await;
    let generic = side("differential_rate_limit_generic", &renamed, true).await;
    let typed_store = typed.adapter.rate_limit_store();
    let generic_store = generic.adapter.rate_limit_store();
    assert_eq!(typed.adapter.connection().cached_statement_count(), 0);
    assert_eq!(generic.adapter.connection().cached_statement_count(), 0);

    let mut rng = Rng(0x0BAD_5EED);
    let keys = ["203.0.113.7:/sign-in/email", "ünï:/x", "k", ""];
    let windows = [
        Duration::milliseconds(1),
        Duration::seconds(1),
        Duration::seconds(10),
        Duration::seconds(60),
        Duration::seconds(i64::MAX / 1_000_000),
    ];
    let maxes = [1_u64, 2, 3, 100];
    let mut now: i64 = 1_700_000_000_000;
    let mut decisions = (0, 0, 0);
    for step in 0..300 {
        now = match rng.below(20) {
            0 => now.saturating_sub(i64::try_from(rng.below(5_000)).unwrap()),
            1 => now.saturating_add(11_000),
            2 => now.saturating_add(61_000),
            3 => i64::MAX - i64::try_from(rng.below(3)).unwrap(),
            4 => i64::MIN + i64::try_from(rng.below(3)).unwrap(),
            5 => 1_700_000_000_000 + i64::try_from(rng.below(100_000)).unwrap(),
            _ => now.saturating_add(i64::try_from(rng.below(700)).unwrap()),
        };
        let rule = match rng.below(40) {
            0 => RateLimitRule::new(Duration::ZERO, 3),
            1 => RateLimitRule::new(Duration::seconds(10), 0),
            2 => RateLimitRule::new(Duration::seconds(10), u64::MAX),
            _ => RateLimitRule::new(*rng.pick(&windows), *rng.pick(&maxes)),
        };
        let input = RateLimitConsumeInput {
            key: (*rng.pick(&keys)).to_owned(),
            rule,
            now_ms: now,
        };
        if step == 150 || step == 200 {
            // A corrupted row (both stores report it the same way), later removed.
            for (raw, table) in [(&typed.raw, "rate_limits"), (&generic.raw, "rl_renamed")] {
                let sql = if step == 150 {
                    format!("UPDATE \"{table}\" SET count = -1 WHERE key = 'k'")
                } else {
                    format!("DELETE FROM \"{table}\" WHERE key = 'k'")
                };
                raw.execute(&sql, &[]).await.expect("corrupt row");
            }
        }
        let a = typed_store
            .consume(input.clone())
            .await
            .map_err(|error| error.to_string());
        let b = generic_store
            .consume(input.clone())
            .await
            .map_err(|error| error.to_string());
        assert_eq!(a, b, "step {step}: {input:?}");
        match &a {
            Ok(decision) if decision.permitted => decisions.0 += 1,
            Ok(_) => decisions.1 += 1,
            Err(_) => decisions.2 += 1,
        }
        let rows_a = dump(&typed.raw, "rate_limits", "key").await;
        let rows_b = dump(&generic.raw, "rl_renamed", "key").await;
        assert_eq!(rows_a, rows_b, "step {step}: rows differ after {input:?}");
    }
    println!(
        "rate limit: {} permitted, {} denied, {} errors",
        decisions.0, decisions.1, decisions.2
    );
    assert!(
        decisions.0 > 20 && decisions.1 > 20 && decisions.2 > 3,
        "{decisions:?}"
    );
    // The default table went through the generated statement, which lives outside the
    // generic statement cache; the renamed table prepared its statement in that cache.
    assert_eq!(typed.adapter.connection().cached_statement_count(), 0);
    assert_eq!(generic.adapter.connection().cached_statement_count(), 1);
}

/// The sign-in join caps a user's accounts at 100 on both paths (the same 100, in id order),
/// and a selection naming a field twice gives the same record.
#[tokio::test]
async fn a_user_with_more_than_a_hundred_accounts_matches() {
    let schema = default_schema();
    let mut pair = Pair::new("differential_many_accounts", &schema, &DEFAULT_TABLES).await;
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    pair.step(
        "user",
        Call::Create(new_user("u1", "ada@example.com", at)),
        true,
    )
    .await
    .expect("user");
    // Inserted out of id order.
    for index in (0..103).rev() {
        pair.step(
            "account",
            Call::Create(
                Create::new("account")
                    .data("id", s(format!("a{index:03}")))
                    .data("account_id", s(format!("{index}")))
                    .data("provider_id", s(format!("p{index}")))
                    .data("user_id", s("u1"))
                    .data("created_at", ts(at))
                    .data("updated_at", ts(at)),
            ),
            true,
        )
        .await
        .expect("account");
    }
    let found = pair
        .step(
            "user with 103 accounts",
            Call::FindOne(
                FindOne::new("user")
                    .where_clause(Where::new("email", s("ada@example.com")))
                    .select(USER_FIELDS)
                    .join("account", JoinOption::enabled()),
            ),
            true,
        )
        .await
        .expect("join");
    let Outcome::Found(Some(record)) = found else {
        panic!("found: {found:?}")
    };
    let Plain::Records(accounts) = &record.last().unwrap().1 else {
        panic!("accounts: {record:?}")
    };
    assert_eq!(accounts.len(), 100);
    assert_eq!(accounts[0][0].1, Plain::Value(s("a000")));
    assert_eq!(accounts[99][0].1, Plain::Value(s("a099")));

    for model in ["user", "session"] {
        let field = if model == "user" { "id" } else { "token" };
        let mut query = FindOne::new(model).where_clause(Where::new(field, s("u1")));
        query.select = vec!["id".to_owned(), "id".to_owned()];
        pair.step("a field selected twice", Call::FindOne(query), true)
            .await
            .expect("find");
    }
}

/// Without tables the typed statements cannot be prepared: calls take the generic path and
/// fail the same way; after the migration the same calls are typed and succeed.
#[tokio::test]
async fn calls_before_and_after_the_migration_match() {
    let schema = default_schema();
    let typed = side_without_tables("differential_unmigrated_typed", &schema, true).await;
    let generic = side_without_tables("differential_unmigrated_generic", &schema, false).await;
    let mut pair = Pair::from_sides(typed, generic, &[]);
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let create = new_user("u1", "ada@example.com", at);
    let find = FindOne::new("session").where_clause(Where::new("token", s("t1")));
    for (label, call) in [
        ("create user", Call::Create(create.clone())),
        ("find session", Call::FindOne(find.clone())),
    ] {
        let error = pair.step(label, call, false).await.unwrap_err();
        assert!(error.contains("42P01"), "{error}");
    }
    for side in [&pair.typed, &pair.generic] {
        side.adapter
            .create_schema(&schema, None)
            .await
            .expect("create_schema");
    }
    pair.tables = DEFAULT_TABLES
        .iter()
        .map(|(table, order)| ((*table).to_owned(), (*order).to_owned()))
        .collect();
    pair.step("create user", Call::Create(create), true)
        .await
        .expect("create user");
    pair.step("find session", Call::FindOne(find), true)
        .await
        .expect("find session");
}

/// A column whose type changes under a prepared statement (SQLSTATE 0A000, "cached plan must
/// not change result type"): both paths still give the same results.
#[tokio::test]
async fn a_column_type_change_under_prepared_statements_matches() {
    let schema = default_schema();
    let mut pair = Pair::new("differential_altered", &schema, &DEFAULT_TABLES).await;
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    pair.step(
        "user",
        Call::Create(new_user("u1", "ada@example.com", at)),
        true,
    )
    .await
    .expect("user");
    pair.step(
        "session",
        Call::Create(
            Create::new("session")
                .data("id", s("s1"))
                .data("user_id", s("u1"))
                .data("expires_at", ts(at))
                .data("token", s("t1"))
                .data("user_agent", s("agent 🦀"))
                .data("created_at", ts(at))
                .data("updated_at", ts(at)),
        ),
        true,
    )
    .await
    .expect("session");
    let find = || {
        Call::FindOne(
            FindOne::new("session")
                .where_clause(Where::new("token", s("t1")))
                .select(SESSION_FIELDS),
        )
    };
    pair.step("find before", find(), true).await.expect("find");
    for side in [&pair.typed, &pair.generic] {
        side.raw
            .batch_execute("ALTER TABLE sessions ALTER COLUMN user_agent TYPE varchar(200)")
            .await
            .expect("alter");
    }
    // The stale typed statement fails with 0A000; the call is answered by the generic path
    // (which prepares afresh). The live table no longer matches migrations/ (`varchar`, not
    // `text`), so the typed statements are not used again while it stays so.
    pair.step("first find after", find(), false)
        .await
        .expect("find");
    pair.step("second find after", find(), false)
        .await
        .expect("find");
    for side in [&pair.typed, &pair.generic] {
        side.raw
            .batch_execute("ALTER TABLE sessions ALTER COLUMN user_agent TYPE text")
            .await
            .expect("alter back");
    }
    // The generic statement meets the restored table (0A000) and is prepared afresh; that
    // also makes the typed path look at the catalog again, and it fits once more.
    pair.step("first find restored", find(), false)
        .await
        .expect("find");
    pair.step("second find restored", find(), true)
        .await
        .expect("find");
}

/// A value whose variant does not fit its column (behaviour.md §4): prepared statements fail with
/// tokio-postgres' "error serializing parameter N" and write nothing; unprepared statements
/// (`statement_mode=unprepared`) must do the same, not let the server cast or complain about
/// operators instead.
#[tokio::test]
async fn unprepared_statements_reject_mismatched_values_like_prepared_ones() {
    let schema = default_schema();
    let prepared = side("differential_mismatch_prepared", &schema, false).await;
    let url = support::fresh_database("differential_mismatch_unprepared").await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let unprepared = Side {
        adapter: TokioPostgresAdapter::with_connection(
            TokioPostgresConnection::from_client_unprepared(client),
            schema.clone(),
        ),
        raw: support::connect(&url).await,
    };
    unprepared
        .adapter
        .create_schema(&schema, None)
        .await
        .expect("create_schema");
    let mut pair = Pair::from_sides(prepared, unprepared, &DEFAULT_TABLES);
    pair.labels = ("prepared generic", "unprepared generic");
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let user = |name: DbValue| {
        Create::new("user")
            .data("id", s("u1"))
            .data("name", name)
            .data("email", s("ada@example.com"))
            .data("email_verified", DbValue::Boolean(false))
            .data("created_at", ts(at))
            .data("updated_at", ts(at))
    };
    let error = pair
        .step(
            "a number for a text column",
            Call::Create(user(DbValue::Number(5))),
            false,
        )
        .await
        .unwrap_err();
    assert!(error.contains("error serializing parameter"), "{error}");
    pair.step("user", Call::Create(user(s("Ada"))), false)
        .await
        .expect("user");
    let error = pair
        .step(
            "a number compared with a text column",
            Call::FindOne(
                FindOne::new("user").where_clause(Where::new("email", DbValue::Number(5))),
            ),
            false,
        )
        .await
        .unwrap_err();
    assert!(error.contains("error serializing parameter"), "{error}");
    let error = pair
        .step(
            "a string for a boolean column",
            Call::Update(
                Update::new("user")
                    .where_clause(Where::new("id", s("u1")))
                    .data("email_verified", s("true")),
            ),
            false,
        )
        .await
        .unwrap_err();
    assert!(error.contains("error serializing parameter"), "{error}");
}

/// `find_many session WHERE user_id ORDER BY created_at DESC LIMIT n` (a "list sessions" page)
/// on its typed statement: same records, in the same order, as the generic path, for limits
/// below, at and above the number of sessions, and for a user without sessions.
#[tokio::test]
async fn newest_sessions_of_a_user_match() {
    let schema = default_schema();
    let mut pair = Pair::new("differential_newest_sessions", &schema, &DEFAULT_TABLES).await;
    let at = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    for user in ["u1", "u2"] {
        pair.step(
            "user",
            Call::Create(new_user(user, &format!("{user}@example.com"), at)),
            true,
        )
        .await
        .expect("user");
    }
    // Distinct creation times, inserted out of order.
    for index in [3_i64, 0, 4, 1, 2] {
        let created = at + time::Duration::seconds(index);
        pair.step(
            "session",
            Call::Create(
                Create::new("session")
                    .data("id", s(format!("s{index}")))
                    .data("expires_at", ts(created + time::Duration::days(7)))
                    .data("token", s(format!("t{index}")))
                    .data("created_at", ts(created))
                    .data("updated_at", ts(created))
                    .data("user_id", s("u1")),
            ),
            true,
        )
        .await
        .expect("session");
    }
    for (user, limit) in [("u1", 2), ("u1", 5), ("u1", 9), ("u1", 0), ("u2", 3)] {
        let found = pair
            .step(
                "newest sessions",
                Call::FindMany(
                    FindMany::new("session")
                        .where_clause(Where::new("user_id", s(user)))
                        .sort_by(Sort::new("created_at", SortDirection::Desc))
                        .limit(limit)
                        .select(SESSION_FIELDS),
                ),
                true,
            )
            .await
            .expect("newest sessions");
        let Outcome::Many(records) = found else {
            panic!("found: {found:?}")
        };
        let expected = if user == "u1" { limit.min(5) } else { 0 };
        assert_eq!(records.len(), expected, "{user} limit {limit}");
        if expected > 0 {
            assert_eq!(records[0][0].1, Plain::Value(s("s4")), "newest first");
        }
    }
}
