//! Measuring: samples, percentiles, medians.

use std::time::{Duration, Instant};

use super::*;

// ---------------------------------------------------------------------------------------------
// Measuring.

pub struct Sample {
    pub ops_per_second: f64,
    pub p50_micros: f64,
    pub p99_micros: f64,
    pub denied: u64,
    /// For [`Call::Mixed`]: p50 and p99 (µs) of the get-session ops inside the mix.
    pub mix_get_session: Option<(f64, f64)>,
}

/// Nearest-rank percentile (µs) of sorted nanosecond latencies.
fn percentile_micros(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

/// Runs `call` for `duration` on `tasks` concurrent tasks sharing the implementation.
/// `seed` drives each task's choice of users, sessions and keys; `mix_seed` the calls drawn
/// for [`Call::Mixed`] (give every implementation the same one).
pub async fn measure(
    implementation: &Implementation,
    call: Call,
    tasks: usize,
    duration: Duration,
    config: &Config,
    seed: u64,
    mix_seed: u64,
) -> Sample {
    let start = Instant::now();
    let deadline = start + duration;
    let mut set = tokio::task::JoinSet::new();
    for index in 0..tasks {
        let implementation = implementation.clone();
        let mut task = Task {
            rng: Rng(seed ^ (index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d)),
            mix: Rng(mix_seed ^ (index as u64).wrapping_mul(0x9fb2_1c65_1e98_df25)),
            users: config.users,
            rate_limit_keys: config.rate_limit_keys,
            tag: implementation.tag,
        };
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut get_session = Vec::new();
            let mut denied = 0u64;
            // At least one call per task, so that even a zero-length smoke run checks results.
            loop {
                let began = Instant::now();
                let outcome = implementation.call(call, &mut task).await;
                let took = began.elapsed().as_nanos() as u64;
                if !outcome.permitted {
                    denied += 1;
                }
                latencies.push(took);
                if call == Call::Mixed && outcome.ran == Call::GetSession {
                    get_session.push(took);
                }
                if Instant::now() >= deadline {
                    break;
                }
            }
            (latencies, get_session, denied)
        });
    }
    let mut latencies = Vec::new();
    let mut get_session = Vec::new();
    let mut denied = 0;
    while let Some(joined) = set.join_next().await {
        let (task_latencies, task_get_session, task_denied) =
            joined.expect("a benchmark task panicked");
        latencies.extend(task_latencies);
        get_session.extend(task_get_session);
        denied += task_denied;
    }
    let elapsed = start.elapsed().as_secs_f64();
    latencies.sort_unstable();
    get_session.sort_unstable();
    Sample {
        ops_per_second: latencies.len() as f64 / elapsed,
        p50_micros: percentile_micros(&latencies, 0.50),
        p99_micros: percentile_micros(&latencies, 0.99),
        denied,
        mix_get_session: (!get_session.is_empty()).then(|| {
            (
                percentile_micros(&get_session, 0.50),
                percentile_micros(&get_session, 0.99),
            )
        }),
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}
