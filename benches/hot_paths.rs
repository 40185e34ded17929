//! RustAuth's hot database calls, side by side: this crate, the published 0.3.2, and a
//! hand-written tokio-postgres floor running the same SQL on statements prepared once; in pool
//! mode, this crate with `max_connections`, the published rustauth-deadpool-postgres 0.3.2, and
//! the floor on a deadpool-postgres pool (`prepare_cached`).
//!
//! ```text
//! cargo bench --bench hot_paths                      # full run (about 5 minutes on 2 cores)
//! BENCH_QUICK=1 cargo bench --bench hot_paths        # smoke run, ~0.2 s per measurement (~40 s)
//! cargo bench --bench hot_paths -- sign_up get_session   # only calls whose name contains a word
//! ```
//!
//! Environment: `BENCH_SECONDS` (per measurement, default 0.5; quick 0.2), `BENCH_WARMUP`
//! (seconds before each measurement, default 0.1; quick 0.05), `BENCH_ROUNDS` (default 5;
//! quick 1), `BENCH_USERS` (default 10000), `BENCH_TASKS` (pipelined tasks, default 16),
//! `BENCH_POOL_TASKS` / `BENCH_POOL_CONNECTIONS` (pool mode, default 16 tasks over 4
//! connections), `BENCH_RATIOS_OUT` (a file to which the pool mode's rustauth-deadpool-postgres
//! / floor ratios are written, for `benches/pool-compare.sh`),
//! `BENCH_MODES` (only these modes, comma-separated: `sequential`, `pipelined`, `pool`),
//! `BENCH_WORKERS` (tokio worker threads, default: one per core), `BENCH_RTT_US` (every
//! implementation connects through a delay proxy adding this round-trip time; see
//! `benches/workload/delay.rs`), `BENCH_SHAPE_CACHE=0` (the
//! generic and Better Auth adapters plan every call), `DATABASE_URL` (server; see
//! `tests/support/server.rs` for how one is found otherwise).
//!
//! Without `--bench` in its arguments (`cargo test --benches` / `--all-targets` runs bench
//! targets that way) the binary does a tiny smoke run instead (300 users, one call per task
//! and measurement, one round, environment ignored): it checks that every implementation returns
//! the expected rows, and asserts nothing about timing.
//!
//! Every call is issued exactly as rustauth-core 0.3.2 issues it (same query structs, field
//! lists, predicates, data key order), through the public `DbAdapter` / `RateLimitStore`
//! traits, so whatever the adapter does internally is what gets measured.

#[path = "../tests/support/server.rs"]
pub mod server;
// `pub`: what this bench does not use of the shared workload is not dead code here.
pub mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustauth_core::db::{DbAdapter, DbSchema};
use tokio_postgres::Client;
use workload::*;

impl FloorSql {
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
/// Pool mode: ours with `max_connections`.
const OURS_POOL: usize = 7;
/// Pool mode: the published rustauth-deadpool-postgres 0.3.2 (on the published 0.3.2 driver).
const DEADPOOL: usize = 8;
/// Pool mode: the floor on a deadpool-postgres pool, `prepare_cached`.
const FLOOR_POOL: usize = 9;
/// Pool mode: a second rustauth-deadpool-postgres 0.3.2 (A/A).
const DEADPOOL_TWIN: usize = 10;
const IMPLEMENTATIONS: usize = 11;

/// The implementations each mode runs, in round order (reversed on odd rounds).
fn mode_implementations(mode: Mode) -> &'static [usize] {
    match mode {
        Mode::Sequential | Mode::Pipelined => &[
            OURS,
            PUBLISHED,
            FLOOR,
            PUBLISHED_TWIN,
            GENERIC,
            OURS_BA,
            FLOOR_BA,
        ],
        Mode::Pool => &[OURS_POOL, DEADPOOL, FLOOR_POOL, DEADPOOL_TWIN],
    }
}

/// The modes a call runs in: the mix is measured with concurrency only; the pool mode covers
/// get-session, user-by-email, sign-up and the mix.
fn call_modes(call: Call) -> &'static [Mode] {
    match call {
        Call::Mixed => &[Mode::Pipelined, Mode::Pool],
        Call::GetSession | Call::UserByEmail | Call::SignUp => {
            &[Mode::Sequential, Mode::Pipelined, Mode::Pool]
        }
        _ => &[Mode::Sequential, Mode::Pipelined],
    }
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

async fn run(config: Config) {
    let started = Instant::now();
    let load_at_start = load_average();
    let (direct_url, schema, floor_sql, database) = benchmark_database("bench").await;
    // BENCH_RTT_US: every implementation connects through a delay proxy (setup does not).
    let (url, latency) = match config.rtt_us {
        Some(rtt) => {
            let parsed: tokio_postgres::Config = direct_url.parse().expect("the server URL");
            let host = match parsed.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
                _ => panic!("BENCH_RTT_US needs a TCP server (a host name or address)"),
            };
            let port = parsed.get_ports().first().copied().unwrap_or(5432);
            let upstream = std::net::ToSocketAddrs::to_socket_addrs(&(host.as_str(), port))
                .expect("resolve the server")
                .next()
                .expect("an address");
            let proxy = workload::delay::DelayProxy::start(upstream, Duration::from_micros(rtt));
            let url = proxy.url_for(&direct_url);
            let check = workload::delay::self_check(
                &server::connect(&direct_url).await,
                &server::connect(&url).await,
            )
            .await;
            eprintln!(
                "hot_paths: delay proxy adds {rtt} µs per round trip; timers fire {:?} late \
                 (median of a 200 µs sleep); SELECT 1 round trip {:?} direct, {:?} through \
                 the proxy",
                check.timer_late, check.direct, check.proxied
            );
            (url, Some((rtt, check)))
        }
        None => (direct_url.clone(), None),
    };
    let ba_schema = rustauth_tokio_postgres::layout::better_auth_schema();
    let ba_floor_sql = floor_sql.renamed(&physical_renames(&schema, &ba_schema));
    check_floor_sql(&ba_schema, &ba_floor_sql);

    // Every implementation gets its own connection; `setup` seeds and cleans up.
    let setup = server::connect(&direct_url).await;
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
        "ours",
        "v032",
        "floor",
        "v032b",
        "generic",
        "oursba",
        "floorba",
        "ourspool",
        "dp032",
        "floorpool",
        "dp032b",
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
    // Pool mode: every pool opens its connections now.
    let connections = config.pool_connections;
    let ours_pool = rustauth_tokio_postgres::TokioPostgresStores::builder()
        .schema(schema.clone())
        .max_connections(connections)
        .connect(&url)
        .await
        .expect("ours with max_connections");
    let deadpool = || async {
        let stores = rustauth_deadpool_postgres::DeadpoolPostgresStores::builder()
            .database_url(url.clone())
            .schema(schema.clone())
            .max_size(connections)
            .build_stores()
            .await
            .expect("rustauth-deadpool-postgres 0.3.2");
        let mut held = Vec::new();
        for _ in 0..connections {
            held.push(stores.pool().get().await.expect("open a pooled connection"));
        }
        drop(held);
        Engine::Adapter {
            db: Arc::new(stores.adapter),
            limiter: Arc::new(stores.rate_limit),
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
            engine: Engine::adapter(generic),
        },
        Implementation {
            label: "ours (Better Auth layout)",
            tag: tags[OURS_BA],
            engine: Engine::adapter(ours_ba),
        },
        Implementation {
            label: "floor (Better Auth layout)",
            tag: tags[FLOOR_BA],
            engine: Engine::Floor(Arc::new(
                Floor::prepare(server::connect(&url).await, &ba_floor_sql).await,
            )),
        },
        Implementation {
            label: "ours (max_connections)",
            tag: tags[OURS_POOL],
            engine: Engine::Adapter {
                db: Arc::new(ours_pool.adapter),
                limiter: Arc::new(ours_pool.rate_limit),
            },
        },
        Implementation {
            label: "rustauth-deadpool-postgres 0.3.2",
            tag: tags[DEADPOOL],
            engine: deadpool().await,
        },
        Implementation {
            label: "floor (deadpool, prepare_cached)",
            tag: tags[FLOOR_POOL],
            engine: Engine::PoolFloor(Arc::new(
                PoolFloor::connect(&url, connections, FloorSql::default_layout()).await,
            )),
        },
        Implementation {
            label: "rustauth-deadpool-postgres 0.3.2′",
            tag: tags[DEADPOOL_TWIN],
            engine: deadpool().await,
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

    let calls = config.calls();
    let groups: Vec<(Call, Mode)> = calls
        .iter()
        .flat_map(|call| call_modes(*call).iter().map(move |mode| (*call, *mode)))
        .filter(|(_, mode)| {
            config.modes.is_empty() || config.modes.iter().any(|name| name == mode.name())
        })
        .collect();
    // samples[group][implementation] = one per round (only the mode's implementations).
    let mut samples: Vec<[Vec<Sample>; IMPLEMENTATIONS]> =
        groups.iter().map(|_| Default::default()).collect();
    // Per round. Sequential and pipelined: ours/0.3.2, ours/floor, A/A, generic/floor, Better
    // Auth ours/floor. Pool: ours/deadpool, ours/floor, A/A (deadpool/deadpool′), deadpool/floor.
    let mut ratios: Vec<[Vec<f64>; 5]> = groups.iter().map(|_| Default::default()).collect();
    let measurement = Duration::from_secs_f64(config.seconds);
    let warmup = Duration::from_secs_f64(config.warmup);
    for round in 0..config.rounds {
        for (group, (call, mode)) in groups.iter().enumerate() {
            let tasks = match mode {
                Mode::Sequential => 1,
                Mode::Pipelined => config.tasks,
                Mode::Pool => config.pool_tasks,
            };
            let mut order = mode_implementations(*mode).to_vec();
            if round % 2 == 1 {
                order.reverse();
            }
            // The mix draws the same calls for every implementation of the group.
            let mix_seed = ((round as u64) << 40) ^ ((group as u64) << 20) ^ 0x006d_6978;
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
                        !mix_seed,
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
                    mix_seed,
                )
                .await;
                if matches!(call, Call::SignUp | Call::Mixed) {
                    remove_sign_ups(&setup, &schema).await;
                    remove_sign_ups(&setup, &ba_schema).await;
                }
                samples[group][index].push(sample);
            }
            let rate = |index: usize| samples[group][index][round].ops_per_second;
            let per_round: Vec<f64> = match mode {
                Mode::Sequential | Mode::Pipelined => vec![
                    rate(OURS) / rate(PUBLISHED),
                    rate(OURS) / rate(FLOOR),
                    rate(PUBLISHED) / rate(PUBLISHED_TWIN),
                    rate(GENERIC) / rate(FLOOR),
                    rate(OURS_BA) / rate(FLOOR_BA),
                ],
                Mode::Pool => vec![
                    rate(OURS_POOL) / rate(DEADPOOL),
                    rate(OURS_POOL) / rate(FLOOR_POOL),
                    rate(DEADPOOL) / rate(DEADPOOL_TWIN),
                    rate(DEADPOOL) / rate(FLOOR_POOL),
                ],
            };
            for (slot, ratio) in per_round.into_iter().enumerate() {
                ratios[group][slot].push(ratio);
            }
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
    match &latency {
        Some((rtt, check)) => line(
            &mut out,
            &format!(
                "- Network: every implementation through a delay proxy adding {rtt} µs per \
                 round trip (half each way; `BENCH_RTT_US`); self-check: a 200 µs sleep fires \
                 {:.0} µs late (median), `SELECT 1` takes {:.0} µs direct and **{:.0} µs \
                 through the proxy** (median of 200, the effective round trip)",
                check.timer_late.as_secs_f64() * 1e6,
                check.direct.as_secs_f64() * 1e6,
                check.proxied.as_secs_f64() * 1e6
            ),
        ),
        None => line(
            &mut out,
            "- Network: loopback (no delay proxy; set `BENCH_RTT_US` for one)",
        ),
    }
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
             ours, BA floor (pool mode: ours, deadpool, floor, deadpool′; reversed on odd \
             rounds); each implementation has its own connection(s); sequential = 1 task, \
             pipelined = {} tasks sharing one adapter (one connection); one op = one whole call \
             below; ops/s and latencies are medians over rounds; ratios are ops/s ratios taken \
             per round, then the median; A/A = 0.3.2 against a second 0.3.2 instance (noise floor)",
            config.rounds, config.seconds, config.warmup, config.tasks
        ),
    );
    line(
        &mut out,
        &format!(
            "- Reproduce: `{}`",
            config.reproduce("cargo bench --bench hot_paths")
        ),
    );
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
    let rate = |group: usize, index: usize| {
        median(
            &samples[group][index]
                .iter()
                .map(|sample| sample.ops_per_second)
                .collect::<Vec<_>>(),
        )
    };
    let of = |group: usize, index: usize, pick: &dyn Fn(&Sample) -> f64| {
        median(&samples[group][index].iter().map(pick).collect::<Vec<_>>())
    };
    let latency = |group: usize, index: usize| {
        fmt_micros(
            of(group, index, &|s| s.p50_micros),
            of(group, index, &|s| s.p99_micros),
        )
    };
    let ratio = |group: usize, slot: usize| median(&ratios[group][slot]);
    let mut denials = BTreeMap::new();
    for group_samples in &samples {
        for (index, implementation) in implementations.iter().enumerate() {
            let denied: u64 = group_samples[index].iter().map(|s| s.denied).sum();
            if denied > 0 {
                *denials.entry(implementation.label).or_insert(0) += denied;
            }
        }
    }
    let one_connection: Vec<(usize, Call, Mode)> = groups
        .iter()
        .enumerate()
        .filter(|(_, (_, mode))| *mode != Mode::Pool)
        .map(|(group, (call, mode))| (group, *call, *mode))
        .collect();
    let pooled: Vec<(usize, Call)> = groups
        .iter()
        .enumerate()
        .filter(|(_, (_, mode))| *mode == Mode::Pool)
        .map(|(group, (call, _))| (group, *call))
        .collect();
    for &(group, call, mode) in &one_connection {
        line(
            &mut out,
            &format!(
                "| {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                call.name(),
                mode.name(),
                fmt_rate(rate(group, OURS)),
                fmt_rate(rate(group, PUBLISHED)),
                fmt_rate(rate(group, FLOOR)),
                ratio(group, 0),
                ratio(group, 1),
                ratio(group, 2),
                latency(group, OURS),
                latency(group, PUBLISHED),
                latency(group, FLOOR),
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
    for &(group, call, mode) in &one_connection {
        line(
            &mut out,
            &format!(
                "| {} | {} | {} | {} | {:.2} | {} | {} | {:.2} | {} | {} | {} |",
                call.name(),
                mode.name(),
                fmt_rate(rate(group, GENERIC)),
                fmt_rate(rate(group, FLOOR)),
                ratio(group, 3),
                fmt_rate(rate(group, OURS_BA)),
                fmt_rate(rate(group, FLOOR_BA)),
                ratio(group, 4),
                latency(group, GENERIC),
                latency(group, OURS_BA),
                latency(group, FLOOR_BA),
            ),
        );
    }
    if !pooled.is_empty() {
        line(&mut out, "");
        line(
            &mut out,
            &format!(
                "Pool mode: {} tasks over {} connections. \"ours\" is this crate connected with \
                 `max_connections={}`; \"deadpool\" the published rustauth-deadpool-postgres \
                 0.3.2 (on the published rustauth-tokio-postgres 0.3.2 driver) with a pool of {}; \
                 \"floor\" the same SQL by hand on a deadpool-postgres pool of {}, one pooled \
                 connection per op, statements from `prepare_cached`, sign-up's transaction on \
                 its connection; A/A = deadpool against a second deadpool instance. \
                 deadpool/floor is the figure `benches/pool-compare.sh` compares with \
                 rustauth-deadpool-postgres on this crate's driver (compat/deadpool/benches/pool.rs).",
                config.pool_tasks,
                config.pool_connections,
                config.pool_connections,
                config.pool_connections,
                config.pool_connections,
            ),
        );
        line(&mut out, "");
        line(
            &mut out,
            "| call | ours ops/s | deadpool ops/s | floor ops/s | ours/deadpool | ours/floor | \
             deadpool/floor | A/A | ours p50 / p99 µs | deadpool p50 / p99 µs | \
             floor p50 / p99 µs |",
        );
        line(
            &mut out,
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        );
        let mut ratios_out = String::new();
        for &(group, call) in &pooled {
            line(
                &mut out,
                &format!(
                    "| {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {} | {} | {} |",
                    call.name(),
                    fmt_rate(rate(group, OURS_POOL)),
                    fmt_rate(rate(group, DEADPOOL)),
                    fmt_rate(rate(group, FLOOR_POOL)),
                    ratio(group, 0),
                    ratio(group, 1),
                    ratio(group, 3),
                    ratio(group, 2),
                    latency(group, OURS_POOL),
                    latency(group, DEADPOOL),
                    latency(group, FLOOR_POOL),
                ),
            );
            ratios_out.push_str(&format!("{} {:.4}\n", call.name(), ratio(group, 3)));
        }
        if let Ok(path) = std::env::var("BENCH_RATIOS_OUT") {
            std::fs::write(&path, ratios_out).expect("write BENCH_RATIOS_OUT");
        }
    }
    // The mix: get-session inside it against get-session alone (same mode, same run).
    let mixes: Vec<(usize, Mode)> = groups
        .iter()
        .enumerate()
        .filter(|(_, (call, _))| *call == Call::Mixed)
        .map(|(group, (_, mode))| (group, *mode))
        .collect();
    if !mixes.is_empty() {
        line(&mut out, "");
        line(
            &mut out,
            "The mix: get_session's latency inside `mixed` against get_session alone in the same \
             mode and run (\"—\" when get_session was filtered out); in/alone = the p99 ratio.",
        );
        line(&mut out, "");
        line(
            &mut out,
            "| mode | implementation | mixed ops/s | get_session in the mix p50 / p99 µs | \
             get_session alone p50 / p99 µs | in/alone p99 |",
        );
        line(&mut out, "| --- | --- | ---: | ---: | ---: | ---: |");
        for &(group, mode) in &mixes {
            let alone = groups
                .iter()
                .position(|(call, other)| *call == Call::GetSession && *other == mode);
            let members: &[usize] = match mode {
                Mode::Pool => &[OURS_POOL, DEADPOOL, FLOOR_POOL],
                _ => &[OURS, PUBLISHED, FLOOR],
            };
            for &index in members {
                let inside_p50 = of(group, index, &|s| {
                    s.mix_get_session.map_or(f64::NAN, |m| m.0)
                });
                let inside_p99 = of(group, index, &|s| {
                    s.mix_get_session.map_or(f64::NAN, |m| m.1)
                });
                let (alone_text, in_alone) = match alone {
                    Some(alone) => (
                        latency(alone, index),
                        format!("{:.2}", inside_p99 / of(alone, index, &|s| s.p99_micros)),
                    ),
                    None => ("—".to_owned(), "—".to_owned()),
                };
                line(
                    &mut out,
                    &format!(
                        "| {} | {} | {} | {} | {} | {} |",
                        mode.name(),
                        implementations[index].label,
                        fmt_rate(rate(group, index)),
                        fmt_micros(inside_p50, inside_p99),
                        alone_text,
                        in_alone,
                    ),
                );
            }
        }
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
        "The floor runs the same SQL text (taken from core's planner at start-up; the rate \
         limit uses this crate's single-statement consume from queries/rate_limit.sql) on statements prepared once, \
         with hand-written row decoding; its sign-up is BEGIN + 3 prepared inserts + COMMIT \
         under its own lock so that pipelined tasks stay out of the open transaction.",
    );
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
    database.drop("hot_paths").await;
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
