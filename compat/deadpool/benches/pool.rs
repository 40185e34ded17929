//! The pool mode of `benches/hot_paths.rs`, for rustauth-deadpool-postgres 0.3.2 built on
//! THIS crate's driver (compat/deadpool patches rustauth-tokio-postgres onto the working tree),
//! against the same hand-written floor on a deadpool-postgres pool (`prepare_cached`).
//!
//! Cargo cannot build rustauth-deadpool-postgres against both the published driver and this
//! one in a single project, so "that crate on our driver" is measured here and the published
//! pairing in `benches/hot_paths.rs`; each against the same floor. The target
//! ("rustauth-deadpool-postgres on our driver ≥ 1.4× itself on 0.3.2") is
//! (deadpool-on-ours / floor, this run) ÷ (deadpool-0.3.2 / floor, hot_paths' run), per call;
//! `benches/pool-compare.sh` runs both and prints it.
//!
//! ```text
//! CARGO_TARGET_DIR=target cargo bench --manifest-path compat/deadpool/Cargo.toml --bench pool
//! ```
//!
//! Same workload (benches/workload/), same environment variables as hot_paths (`BENCH_QUICK`,
//! `BENCH_SECONDS`, `BENCH_WARMUP`, `BENCH_ROUNDS`, `BENCH_USERS`, `BENCH_POOL_TASKS`,
//! `BENCH_POOL_CONNECTIONS`, `BENCH_WORKERS`, `BENCH_RATIOS_OUT`, `DATABASE_URL`), same smoke
//! run without `--bench`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../tests/support/server.rs"]
pub mod server;
#[path = "../../../benches/workload/mod.rs"]
pub mod workload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustauth_core::db::DbAdapter;
use rustauth_deadpool_postgres::DeadpoolPostgresStores;
use workload::*;

const DEADPOOL: usize = 0;
const FLOOR_POOL: usize = 1;
const DEADPOOL_TWIN: usize = 2;
const IMPLEMENTATIONS: usize = 3;

/// The pool mode's calls (hot_paths' `call_modes`).
const POOL_CALLS: [Call; 4] = [
    Call::GetSession,
    Call::UserByEmail,
    Call::SignUp,
    Call::Mixed,
];

async fn run(config: Config) {
    let started = Instant::now();
    let load_at_start = load_average();
    let (url, schema, floor_sql, database) = benchmark_database("poolbench").await;
    let setup = server::connect(&url).await;
    // The same DDL as hot_paths (this crate's adapter creates it).
    rustauth_tokio_postgres::TokioPostgresAdapter::with_schema(
        server::connect(&url).await,
        schema.clone(),
    )
    .create_schema(&schema, None)
    .await
    .expect("create the schema");
    let tags = ["dpours", "floorpool", "dpoursb"];
    eprintln!(
        "pool: seeding {} users, {} sessions, {} accounts, {} rate-limit keys …",
        config.users,
        config.users * SESSIONS_PER_USER,
        config.users,
        config.rate_limit_keys * tags.len()
    );
    seed(&setup, &config, &tags).await;

    let connections = config.pool_connections;
    let deadpool = || async {
        let stores = DeadpoolPostgresStores::builder()
            .database_url(url.clone())
            .schema(schema.clone())
            .max_size(connections)
            .build_stores()
            .await
            .expect("rustauth-deadpool-postgres on our driver");
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
            label: "rustauth-deadpool-postgres 0.3.2 on our driver",
            tag: tags[DEADPOOL],
            engine: deadpool().await,
        },
        Implementation {
            label: "floor (deadpool, prepare_cached)",
            tag: tags[FLOOR_POOL],
            engine: Engine::PoolFloor(Arc::new(
                PoolFloor::connect(&url, connections, floor_sql).await,
            )),
        },
        Implementation {
            label: "rustauth-deadpool-postgres 0.3.2 on our driver′",
            tag: tags[DEADPOOL_TWIN],
            engine: deadpool().await,
        },
    ];

    let calls: Vec<Call> = config
        .calls()
        .into_iter()
        .filter(|call| POOL_CALLS.contains(call))
        .collect();
    let mut samples: Vec<[Vec<Sample>; IMPLEMENTATIONS]> =
        calls.iter().map(|_| Default::default()).collect();
    // Per round: deadpool/floor, A/A.
    let mut ratios: Vec<[Vec<f64>; 2]> = calls.iter().map(|_| Default::default()).collect();
    let measurement = Duration::from_secs_f64(config.seconds);
    let warmup = Duration::from_secs_f64(config.warmup);
    for round in 0..config.rounds {
        let mut order = [DEADPOOL, FLOOR_POOL, DEADPOOL_TWIN];
        if round % 2 == 1 {
            order.reverse();
        }
        for (group, call) in calls.iter().enumerate() {
            let mix_seed = ((round as u64) << 40) ^ ((group as u64) << 20) ^ 0x006d_6978;
            for &index in &order {
                let seed = ((round as u64) << 40) ^ ((group as u64) << 20) ^ index as u64;
                if !warmup.is_zero() {
                    measure(
                        &implementations[index],
                        *call,
                        config.pool_tasks,
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
                    config.pool_tasks,
                    measurement,
                    &config,
                    seed,
                    mix_seed,
                )
                .await;
                if matches!(call, Call::SignUp | Call::Mixed) {
                    remove_sign_ups(&setup, &schema).await;
                }
                samples[group][index].push(sample);
            }
            let rate = |index: usize| samples[group][index][round].ops_per_second;
            ratios[group][0].push(rate(DEADPOOL) / rate(FLOOR_POOL));
            ratios[group][1].push(rate(DEADPOOL) / rate(DEADPOOL_TWIN));
        }
        eprintln!(
            "pool: round {}/{} done after {:.0} s",
            round + 1,
            config.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    let mut out = String::new();
    let mut line = |text: &str| {
        out.push_str(text);
        out.push('\n');
    };
    line(
        "## Pool mode: rustauth-deadpool-postgres 0.3.2 on this crate's driver vs the pooled floor",
    );
    line("");
    if !config.full {
        line("**Smoke run (no `--bench` argument): correctness only, the numbers mean nothing.**");
        line("");
    } else if config.quick {
        line("**BENCH_QUICK smoke run: one short round, the numbers are indicative at best.**");
        line("");
    }
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let workers = config.workers.unwrap_or(cores);
    line(&format!(
        "- Machine: {cores} cores (client and server on the same machine), load average \
         {load_at_start} at start; tokio multi-thread runtime, {workers} workers"
    ));
    line(&format!(
        "- {} users, {} round(s) of {} s after {} s of warm-up per implementation, in the order \
         deadpool, floor, deadpool′ (reversed on odd rounds); {} tasks over {} connections; \
         medians over rounds; deadpool/floor per round, then the median; A/A = deadpool against \
         a second instance",
        config.users,
        config.rounds,
        config.seconds,
        config.warmup,
        config.pool_tasks,
        config.pool_connections
    ));
    line(&format!(
        "- Reproduce: `{}`",
        config.reproduce("cargo bench --manifest-path compat/deadpool/Cargo.toml --bench pool")
    ));
    line("");
    line(
        "| call | deadpool on ours ops/s | floor ops/s | deadpool/floor | A/A | \
         deadpool p50 / p99 µs | floor p50 / p99 µs | get_session in the mix p99 µs (deadpool / floor) |",
    );
    line("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut ratios_out = String::new();
    let mut denials = BTreeMap::new();
    for (group, call) in calls.iter().enumerate() {
        let of = |index: usize, pick: &dyn Fn(&Sample) -> f64| {
            median(&samples[group][index].iter().map(pick).collect::<Vec<_>>())
        };
        let latency =
            |index: usize| fmt_micros(of(index, &|s| s.p50_micros), of(index, &|s| s.p99_micros));
        let mix = if *call == Call::Mixed {
            let p99 = |index: usize| of(index, &|s| s.mix_get_session.map_or(f64::NAN, |m| m.1));
            format!("{:.0} / {:.0}", p99(DEADPOOL), p99(FLOOR_POOL))
        } else {
            "—".to_owned()
        };
        for (index, implementation) in implementations.iter().enumerate() {
            let denied: u64 = samples[group][index].iter().map(|s| s.denied).sum();
            if denied > 0 {
                *denials.entry(implementation.label).or_insert(0) += denied;
            }
        }
        let dp_floor = median(&ratios[group][0]);
        line(&format!(
            "| {} | {} | {} | {:.2} | {:.2} | {} | {} | {} |",
            call.name(),
            fmt_rate(of(DEADPOOL, &|s| s.ops_per_second)),
            fmt_rate(of(FLOOR_POOL, &|s| s.ops_per_second)),
            dp_floor,
            median(&ratios[group][1]),
            latency(DEADPOOL),
            latency(FLOOR_POOL),
            mix,
        ));
        ratios_out.push_str(&format!("{} {dp_floor:.4}\n", call.name()));
    }
    line("");
    if denials.is_empty() {
        line("Rate limit: every consume was permitted.");
    } else {
        line(&format!(
            "Rate limit: denied consumes per implementation: {denials:?}."
        ));
    }
    line(&format!(
        "Total run time: {:.0} s.",
        started.elapsed().as_secs_f64()
    ));
    print!("{out}");
    if let Ok(path) = std::env::var("BENCH_RATIOS_OUT") {
        std::fs::write(&path, ratios_out).expect("write BENCH_RATIOS_OUT");
    }

    drop(implementations);
    drop(setup);
    database.drop("pool").await;
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
