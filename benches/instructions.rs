//! Client instructions per call, deterministically: the driver of `benches/instructions.sh`.
//!
//! `instructions <implementation> <call> <n>` sets up a benchmark database (the workload of
//! `hot_paths`, 2,000 users), makes every connection and statement warm with 50 calls, then
//! makes `n` more calls of `<call>` one after another on a current-thread runtime and exits.
//! Run under `valgrind --tool=callgrind` with two values of `n`, the difference of the two
//! instruction totals divided by the difference of the `n`s is what one call costs the client
//! (setup and warm-up cancel out; the server is another process and is not counted).
//!
//! Implementations: `typed` (this crate, its generated statements), `generic` (this crate with
//! typed statements off), `driver` (the hidden `driver` module on one client, as
//! rustauth-deadpool-postgres calls it), `floor` (the same SQL by hand on tokio-postgres, statements prepared
//! once, rows decoded into plain structs: no `DbRecord`). Calls: `user_by_email`,
//! `user_by_email_with_accounts` (the sign-in join), `get_session`, `session_create_delete`,
//! `rate_limit_consume`.
//!
//! Without arguments (as `cargo test --all-targets` runs bench targets) it makes 2 calls of
//! every combination and checks their results: a smoke run, no measurement.

#[path = "../tests/support/server.rs"]
pub mod server;
// `pub`: what this bench does not use of the shared workload is not dead code here.
#[path = "../tests/crud_common/driver.rs"]
pub mod driver;
pub mod workload;

use std::sync::Arc;

use rustauth_core::db::DbAdapter;

use workload::*;

const IMPLEMENTATIONS: [&str; 4] = ["typed", "generic", "driver", "floor"];
const CALLS: [Call; 5] = [
    Call::UserByEmail,
    Call::UserByEmailWithAccounts,
    Call::GetSession,
    Call::SessionCreateDelete,
    Call::RateLimitConsume,
];
const WARM_UP: usize = 50;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match args.as_slice() {
        [implementation, call, n] => {
            let call = CALLS
                .into_iter()
                .find(|candidate| candidate.name() == call)
                .unwrap_or_else(|| panic!("unknown call `{call}`"));
            let n: usize = n.parse().expect("a number of calls");
            runtime.block_on(run(&[implementation.as_str()], &[call], n));
        }
        [] => runtime.block_on(run(&IMPLEMENTATIONS, &CALLS, 2)),
        _ => panic!("usage: instructions <typed|generic|driver|floor> <call> <n>"),
    }
}

async fn run(implementations: &[&str], calls: &[Call], n: usize) {
    let config = Config {
        users: 2_000,
        tasks: 1,
        pool_tasks: 1,
        pool_connections: 1,
        ..Config::smoke()
    };
    let (url, schema, floor_sql, database) = benchmark_database("instr").await;
    let setup = server::connect(&url).await;
    let ours = rustauth_tokio_postgres::TokioPostgresAdapter::with_schema(
        server::connect(&url).await,
        schema.clone(),
    );
    ours.create_schema(&schema, None)
        .await
        .expect("create the schema");
    seed(&setup, &config, &IMPLEMENTATIONS).await;
    for implementation in implementations {
        let engine = match *implementation {
            "typed" | "generic" => Engine::adapter(
                rustauth_tokio_postgres::TokioPostgresAdapter::with_schema(
                    server::connect(&url).await,
                    schema.clone(),
                )
                .with_typed_statements(*implementation == "typed"),
            ),
            "driver" => Engine::Adapter {
                db: Arc::new(driver::DriverAdapter {
                    schema: schema.clone(),
                    client: server::connect(&url).await,
                }),
                limiter: Arc::new(ours.rate_limit_store()),
            },
            "floor" => Engine::Floor(Arc::new(
                Floor::prepare(server::connect(&url).await, &floor_sql).await,
            )),
            other => panic!("unknown implementation `{other}`"),
        };
        let tag = match *implementation {
            "typed" => "typed",
            "generic" => "generic",
            "driver" => "driver",
            _ => "floor",
        };
        let subject = Implementation {
            label: tag,
            tag,
            engine,
        };
        for call in calls {
            if *implementation == "driver" && *call == Call::RateLimitConsume {
                // The driver's rate limiting is a caller's transaction of core's statements.
                continue;
            }
            let mut task = Task {
                rng: Rng(0x5eed),
                mix: Rng(0x5eed),
                users: config.users,
                rate_limit_keys: config.rate_limit_keys,
                tag,
            };
            for _ in 0..WARM_UP.min(n.max(1)) {
                subject.call(*call, &mut task).await;
            }
            for _ in 0..n {
                subject.call(*call, &mut task).await;
            }
        }
    }
    database.drop("instructions").await;
}
