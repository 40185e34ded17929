//! A delay proxy: a network's latency between the benchmark's clients and the server.
//!
//! `BENCH_RTT_US=500` puts one proxy, listening on a free port of 127.0.0.1, in front of the
//! benchmark's server (TCP only), and every implementation connects through it. Each byte is
//! held for half the round trip in each direction (client → server, server → client), in
//! order, so a statement's answer arrives one round trip later than on loopback, and pipelined
//! statements overlap their waits as they would on a network.
//!
//! Timers are the limit: tokio's fire on millisecond ticks, too coarse for a 250 µs hop, so
//! the proxy keeps its own: one OS thread per direction of each connection blocks in `read`
//! and queues what it read, stamped with the time it is due, and one thread for the whole
//! proxy sleeps until the oldest chunk is due (`Condvar::wait_timeout`, a precise kernel
//! timer; no spinning, which would take the benchmark's CPU on a small machine) and then
//! writes every chunk that is due, the chunks of one destination in one `write`. Every hop is
//! delayed by the same amount, so the queue is in order of due time; a reader wakes the
//! writer only when it queues into an empty queue. A chunk therefore costs the proxy one
//! wake-up of its reader and a share of one of the writer's, where a writer thread per
//! direction, waiting on a channel and then on its timer, cost three. The proxy runs in the
//! benchmark's process and takes CPU the implementations and the server need; with this
//! design the process used about a fifth less CPU for the same pool-mode get-session run
//! (6.1–6.5 s → 5.1–5.2 s of user + system time, `BENCH_RTT_US=200 BENCH_MODES=pool
//! BENCH_ROUNDS=3 … -- get_session`, twice each). The price of one writer: its writes are
//! blocking, so a destination that stops reading until its socket buffer is full would hold up
//! every connection's bytes behind it. The benchmark's clients and server read all the time,
//! and a client that goes away makes its writes fail at once, so no run has met that; a
//! workload whose client stalls mid-read would need a writer per destination again. The
//! writer waits without a bound when nothing is queued: it is a benchmark's idle thread and
//! ends with the process.
//!
//! An OS timer fires late by the kernel's timer slack and scheduling (tens of
//! microseconds), so the round trip a client really sees is a little longer than the one
//! asked for: how late this machine's timers fire, and that effective round trip, are
//! measured by [`self_check`] before the benchmark and printed with its report.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

/// A running delay proxy; it lives as long as the process (its reader threads end with their
/// connections, its writer with the process).
pub struct DelayProxy {
    address: SocketAddr,
}

/// Bytes read from one side, to be written to `to` at `due`; no bytes and `close` set: the
/// side it came from closed, so `to` is shut down for writing (after what came before).
struct Chunk {
    due: Instant,
    to: Arc<TcpStream>,
    bytes: Vec<u8>,
    close: bool,
}

/// What the readers queue and the writer takes, in order of due time.
struct Queue {
    chunks: Mutex<VecDeque<Chunk>>,
    queued: Condvar,
    one_way: Duration,
}

impl DelayProxy {
    /// A proxy in front of `upstream` adding `round_trip` (half each way).
    pub fn start(upstream: SocketAddr, round_trip: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the delay proxy");
        let address = listener.local_addr().expect("delay proxy address");
        let queue = Arc::new(Queue {
            chunks: Mutex::new(VecDeque::new()),
            queued: Condvar::new(),
            one_way: round_trip / 2,
        });
        let writer = Arc::clone(&queue);
        std::thread::Builder::new()
            .name("delay-proxy-write".to_owned())
            .spawn(move || write_when_due(&writer))
            .expect("delay proxy writer thread");
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
                    let (client, server) = (Arc::new(client), Arc::new(server));
                    read_into(&queue, &client, &server);
                    read_into(&queue, &server, &client);
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

/// A thread that reads from `from` and queues each chunk for `to`, due one hop later.
fn read_into(queue: &Arc<Queue>, from: &Arc<TcpStream>, to: &Arc<TcpStream>) {
    let (queue, from, to) = (Arc::clone(queue), Arc::clone(from), Arc::clone(to));
    let _ = std::thread::Builder::new()
        .name("delay-proxy-read".to_owned())
        .spawn(move || {
            let mut buffer = vec![0u8; 64 * 1024];
            loop {
                let (bytes, close) = match (&*from).read(&mut buffer) {
                    Ok(0) | Err(_) => (Vec::new(), true),
                    Ok(read) => (buffer[..read].to_vec(), false),
                };
                let mut chunks = queue.chunks.lock().expect("delay proxy queue");
                // Stamped under the lock, so the queue stays in order of due time.
                let due = Instant::now() + queue.one_way;
                let to = Arc::clone(&to);
                chunks.push_back(Chunk {
                    due,
                    to,
                    bytes,
                    close,
                });
                if chunks.len() == 1 {
                    queue.queued.notify_one();
                }
                drop(chunks);
                if close {
                    break;
                }
            }
        });
}

/// The writer: sleeps until the oldest chunk is due, then writes every chunk that is due,
/// a destination's chunks in one `write` (in the order they were read).
fn write_when_due(queue: &Queue) {
    let mut due_now: Vec<Chunk> = Vec::new();
    loop {
        {
            let mut chunks = queue.chunks.lock().expect("delay proxy queue");
            loop {
                let now = Instant::now();
                match chunks.front() {
                    None => chunks = queue.queued.wait(chunks).expect("delay proxy queue"),
                    Some(first) if first.due > now => {
                        let wait = first.due - now;
                        chunks = queue
                            .queued
                            .wait_timeout(chunks, wait)
                            .expect("delay proxy queue")
                            .0;
                    }
                    Some(_) => break,
                }
            }
            let now = Instant::now();
            while chunks.front().is_some_and(|chunk| chunk.due <= now) {
                due_now.extend(chunks.pop_front());
            }
        }
        // Group by destination, keeping each destination's order.
        while !due_now.is_empty() {
            let to = Arc::clone(&due_now[0].to);
            let mut bytes = Vec::new();
            let mut close = false;
            due_now.retain_mut(|chunk| {
                if !Arc::ptr_eq(&chunk.to, &to) || close {
                    return true;
                }
                bytes.append(&mut chunk.bytes);
                close = chunk.close;
                false
            });
            // A destination that has gone away loses its bytes, as on a network.
            let _ = (&*to).write_all(&bytes);
            if close {
                let _ = to.shutdown(Shutdown::Write);
            }
        }
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
