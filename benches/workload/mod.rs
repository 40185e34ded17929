//! The workload shared by the benchmarks: the calls exactly as rustauth-core 0.3.2 issues them,
//! the hand-written floors, the seeded data, and the measuring loop.
//!
//! Files: this one (what core asks for: fields, ids, constants); `queries.rs` (the query
//! structs, built as core builds them); `floor.rs` (the hand-written floor: SQL, statements,
//! decoders, calls); `calls.rs` (calls, the mix, modes, implementations); `measure.rs`;
//! `setup.rs` (configuration, the benchmark database, seeding, report formatting);
//! `delay.rs` (the delay proxy); the RNG and the schema come from `tests/fixtures/`.
//!
//! Used by `benches/hot_paths.rs` (`mod workload;`) and by the compatibility bench
//! `compat/deadpool/benches/pool.rs` (`#[path = "../../../benches/workload/mod.rs"]`), so that
//! both run the very same operations.

pub mod calls;
pub mod delay;
#[path = "../../tests/fixtures/mod.rs"]
pub mod fixtures;
pub mod floor;
pub mod measure;
pub mod queries;
pub mod setup;

pub use calls::*;
pub use fixtures::Rng;
pub use floor::*;
pub use measure::*;
pub use queries::*;
pub use setup::*;

use std::sync::atomic::{AtomicU64, Ordering};

use time::OffsetDateTime;

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
