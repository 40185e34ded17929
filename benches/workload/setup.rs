//! Configuration (`BENCH_*`), the benchmark database, seeding, and report formatting.

use std::time::Duration;

use rustauth_core::db::DbSchema;
use tokio_postgres::Client;

use super::*;

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
    /// `BENCH_MODES`: only these modes (`sequential`, `pipelined`, `pool`, comma-separated);
    /// empty = every mode.
    pub modes: Vec<String>,
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
            modes: Vec::new(),
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
            modes: std::env::var("BENCH_MODES")
                .unwrap_or_default()
                .split(',')
                .map(|mode| mode.trim().to_owned())
                .filter(|mode| !mode.is_empty())
                .collect(),
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
        if !self.modes.is_empty() {
            env.push(format!("BENCH_MODES={}", self.modes.join(",")));
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
