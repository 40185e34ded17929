//! A delay proxy: a network's latency between the benchmark's clients and the server.
//!
//! `BENCH_RTT_US=500` puts one proxy, listening on a free port of 127.0.0.1, in front of the
//! benchmark's server (TCP only), and every implementation connects through it. Each byte is
//! held for half the round trip in each direction (client → server, server → client), in
//! order, so a statement's answer arrives one round trip later than on loopback, and pipelined
//! statements overlap their waits as they would on a network.
//!
//! Timers are the limit: tokio's fire on millisecond ticks, too coarse for a 250 µs hop, so
//! each direction of each connection has an OS thread that sleeps until a chunk is due
//! (`std::thread::sleep`; no spinning, which would take the benchmark's CPU on a small
//! machine). An OS timer fires late by the kernel's timer slack and scheduling (tens of
//! microseconds), so the round trip a client really sees is a little longer than the one
//! asked for: how late this machine's timers fire, and that effective round trip, are
//! measured by [`self_check`] before the benchmark and printed with its report.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// A running delay proxy; it lives as long as the process (its threads end with their
/// connections).
pub struct DelayProxy {
    address: SocketAddr,
}

impl DelayProxy {
    /// A proxy in front of `upstream` adding `round_trip` (half each way).
    pub fn start(upstream: SocketAddr, round_trip: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the delay proxy");
        let address = listener.local_addr().expect("delay proxy address");
        let one_way = round_trip / 2;
        std::thread::Builder::new()
            .name("delay-proxy-accept".to_owned())
            .spawn(move || {
                for client in listener.incoming() {
                    let Ok(client) = client else { continue };
                    let Ok(server) = TcpStream::connect(upstream) else {
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    pipe(&client, &server, one_way);
                    pipe(&server, &client, one_way);
                }
            })
            .expect("delay proxy thread");
        Self { address }
    }

    /// `url` (a `postgres://` URL of a TCP server) with its host and port replaced by the
    /// proxy's.
    pub fn url_for(&self, url: &str) -> String {
        let (scheme, rest) = url.split_once("://").expect("a postgres:// URL");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let user = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{user}127.0.0.1:{}{path}", self.address.port())
    }
}

/// Moves bytes from `from` to `to`, each chunk `delay` after it was read: a reader thread
/// stamps chunks, a writer thread sends each one when it is due.
fn pipe(from: &TcpStream, to: &TcpStream, delay: Duration) {
    let (Ok(mut from), Ok(mut to)) = (from.try_clone(), to.try_clone()) else {
        return;
    };
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    let _ = std::thread::Builder::new()
        .name("delay-proxy-read".to_owned())
        .spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                match from.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(read) => {
                        if chunks
                            .send((Instant::now() + delay, buffer[..read].to_vec()))
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
    let _ = std::thread::Builder::new()
        .name("delay-proxy-write".to_owned())
        .spawn(move || {
            for (at, chunk) in due {
                wait_until(at);
                if to.write_all(&chunk).is_err() {
                    break;
                }
            }
            let _ = to.shutdown(Shutdown::Write);
        });
}

/// Sleeps until `at` (not before; late by what the OS timer adds).
fn wait_until(at: Instant) {
    let now = Instant::now();
    if at > now {
        std::thread::sleep(at - now);
    }
}

/// What the self-check measured.
pub struct Check {
    /// Median lateness of a 200 µs `std::thread::sleep` on this machine.
    pub timer_late: Duration,
    /// Median round trip of `SELECT 1` straight to the server.
    pub direct: Duration,
    /// Median round trip of `SELECT 1` through the proxy.
    pub proxied: Duration,
}

/// Measures timer lateness and the effective round trip (200 sequential `SELECT 1`, on a
/// direct and on a proxied connection).
pub async fn self_check(direct: &Client, proxied: &Client) -> Check {
    let mut late = (0..200)
        .map(|_| {
            let started = Instant::now();
            std::thread::sleep(Duration::from_micros(200));
            started.elapsed().saturating_sub(Duration::from_micros(200))
        })
        .collect::<Vec<_>>();
    late.sort_unstable();
    Check {
        timer_late: late[late.len() / 2],
        direct: round_trip(direct).await,
        proxied: round_trip(proxied).await,
    }
}

async fn round_trip(client: &Client) -> Duration {
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let started = Instant::now();
        client.simple_query("SELECT 1").await.expect("SELECT 1");
        times.push(started.elapsed());
    }
    times.sort_unstable();
    times[times.len() / 2]
}
