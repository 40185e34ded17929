//! A counting TCP proxy between a test's client and the test server.
//!
//! `CountingProxy::start(url)` listens on `127.0.0.1:0` and forwards every connection it
//! accepts to the server of `url` (TCP host or Unix socket), byte for byte. On the way it
//! splits the frontend stream (client → server) into protocol messages and counts them by
//! type: after the untyped startup packet, each message is one type byte plus a big-endian
//! `i32` length that includes itself. A message is counted before its bytes are forwarded, so
//! once a call has its response, everything it sent is in the counters.
//!
//! It also watches the backend stream for `ReadyForQuery` (`Z`): every `Sync` and every simple
//! `Query` is answered by exactly one, so "sent but not yet answered" is the number of round
//! trips in flight at once, and its maximum shows whether requests were pipelined.

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::{Client, Config, NoTls};

/// Startup-phase request codes that are followed by another startup packet.
const SSL_REQUEST: i32 = 80_877_103;
const GSSENC_REQUEST: i32 = 80_877_104;

/// Frontend message counts (a snapshot, or the difference of two).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Messages {
    /// `P`: Parse (preparing a statement).
    pub parse: u64,
    /// `D`: Describe.
    pub describe: u64,
    /// `B`: Bind.
    pub bind: u64,
    /// `E`: Execute.
    pub execute: u64,
    /// `S`: Sync (ends one extended-protocol round trip).
    pub sync: u64,
    /// `Q`: simple Query (one round trip; BEGIN/COMMIT via `batch_execute`).
    pub query: u64,
    /// `C`: Close (tokio-postgres closes a named statement when its last handle is dropped).
    pub close: u64,
    /// Any other typed frontend message (password, Flush, Terminate, ...).
    pub other: u64,
}

impl Messages {
    /// What happened between `earlier` and `self`.
    pub fn since(self, earlier: Self) -> Self {
        Self {
            parse: self.parse - earlier.parse,
            describe: self.describe - earlier.describe,
            bind: self.bind - earlier.bind,
            execute: self.execute - earlier.execute,
            sync: self.sync - earlier.sync,
            query: self.query - earlier.query,
            close: self.close - earlier.close,
            other: self.other - earlier.other,
        }
    }

    /// Round trips: each Sync and each simple Query waits for one `ReadyForQuery`.
    pub fn round_trips(&self) -> u64 {
        self.sync + self.query
    }
}

#[derive(Debug, Default)]
struct Counters {
    parse: AtomicU64,
    describe: AtomicU64,
    bind: AtomicU64,
    execute: AtomicU64,
    sync: AtomicU64,
    query: AtomicU64,
    close: AtomicU64,
    other: AtomicU64,
    connections: AtomicU64,
    /// Syncs and Queries sent whose `ReadyForQuery` has not come back yet.
    in_flight: AtomicI64,
    /// The largest `in_flight` seen since the last reset.
    max_in_flight: AtomicI64,
}

impl Counters {
    fn frontend(&self, kind: u8) {
        let counter = match kind {
            b'P' => &self.parse,
            b'D' => &self.describe,
            b'B' => &self.bind,
            b'E' => &self.execute,
            b'S' => &self.sync,
            b'Q' => &self.query,
            b'C' => &self.close,
            _ => &self.other,
        };
        counter.fetch_add(1, Ordering::SeqCst);
        if kind == b'S' || kind == b'Q' {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        }
    }

    fn ready_for_query(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Where the real server listens.
#[derive(Debug, Clone)]
enum Upstream {
    Tcp(String, u16),
    Unix(std::path::PathBuf),
}

/// The proxy; stops accepting when dropped (open connections keep running).
#[derive(Debug)]
pub struct CountingProxy {
    address: SocketAddr,
    config: Config,
    counters: Arc<Counters>,
    acceptor: JoinHandle<()>,
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl CountingProxy {
    /// Starts a proxy in front of the server of `url` (a URL or key/value string).
    pub async fn start(url: &str) -> Self {
        let original = Config::from_str(url).expect("parse the test database URL");
        let port = original.get_ports().first().copied().unwrap_or(5432);
        let upstream = match (
            original.get_hostaddrs().first(),
            original.get_hosts().first(),
        ) {
            (Some(address), _) => Upstream::Tcp(address.to_string(), port),
            (None, Some(Host::Tcp(host))) => Upstream::Tcp(host.clone(), port),
            #[cfg(unix)]
            (None, Some(Host::Unix(dir))) => Upstream::Unix(dir.join(format!(".s.PGSQL.{port}"))),
            (None, None) => Upstream::Tcp("127.0.0.1".to_owned(), port),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");

        // The same user, password and database, through the proxy, never over TLS (the
        // proxy parses plain protocol messages).
        let mut config = Config::new();
        config
            .host("127.0.0.1")
            .port(address.port())
            .ssl_mode(SslMode::Disable);
        if let Some(user) = original.get_user() {
            config.user(user);
        }
        if let Some(password) = original.get_password() {
            config.password(password);
        }
        if let Some(dbname) = original.get_dbname() {
            config.dbname(dbname);
        }

        let counters = Arc::new(Counters::default());
        let acceptor = tokio::spawn(accept(listener, upstream, Arc::clone(&counters)));
        Self {
            address,
            config,
            counters,
            acceptor,
        }
    }

    /// A client connection configuration that goes through the proxy.
    pub fn config(&self) -> Config {
        self.config.clone()
    }

    /// The address the proxy listens on.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// A new client connected through the proxy (its connection driven on this runtime).
    pub async fn connect(&self) -> Client {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .expect("connect through the counting proxy");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// The frontend messages counted so far, over every proxied connection.
    pub fn snapshot(&self) -> Messages {
        let c = &self.counters;
        Messages {
            parse: c.parse.load(Ordering::SeqCst),
            describe: c.describe.load(Ordering::SeqCst),
            bind: c.bind.load(Ordering::SeqCst),
            execute: c.execute.load(Ordering::SeqCst),
            sync: c.sync.load(Ordering::SeqCst),
            query: c.query.load(Ordering::SeqCst),
            close: c.close.load(Ordering::SeqCst),
            other: c.other.load(Ordering::SeqCst),
        }
    }

    /// How many connections the proxy has accepted.
    pub fn connections(&self) -> u64 {
        self.counters.connections.load(Ordering::SeqCst)
    }

    /// Round trips in flight right now (sent, not yet answered).
    pub fn in_flight(&self) -> i64 {
        self.counters.in_flight.load(Ordering::SeqCst)
    }

    /// Starts a new "most round trips in flight at once" measurement.
    pub fn reset_max_in_flight(&self) {
        let now = self.counters.in_flight.load(Ordering::SeqCst);
        self.counters.max_in_flight.store(now, Ordering::SeqCst);
    }

    /// The most round trips in flight at once since the last reset.
    pub fn max_in_flight(&self) -> i64 {
        self.counters.max_in_flight.load(Ordering::SeqCst)
    }
}

async fn accept(listener: TcpListener, upstream: Upstream, counters: Arc<Counters>) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            return;
        };
        counters.connections.fetch_add(1, Ordering::SeqCst);
        let _ = client.set_nodelay(true);
        let counters = Arc::clone(&counters);
        let upstream = upstream.clone();
        tokio::spawn(async move {
            match upstream {
                Upstream::Tcp(host, port) => {
                    let server = TcpStream::connect((host.as_str(), port))
                        .await
                        .expect("proxy: connect to the test server");
                    let _ = server.set_nodelay(true);
                    relay(client, server, counters).await;
                }
                #[cfg(unix)]
                Upstream::Unix(path) => {
                    let server = tokio::net::UnixStream::connect(&path)
                        .await
                        .expect("proxy: connect to the test server's socket");
                    relay(client, server, counters).await;
                }
                #[cfg(not(unix))]
                Upstream::Unix(_) => unreachable!("no Unix sockets here"),
            }
        });
    }
}

/// Forwards both directions until either side closes.
async fn relay<S>(client: TcpStream, server: S, counters: Arc<Counters>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = tokio::io::split(server);
    let frontend = pump(
        client_read,
        server_write,
        Arc::clone(&counters),
        Side::Frontend,
    );
    let backend = pump(server_read, client_write, counters, Side::Backend);
    tokio::join!(frontend, backend);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Frontend,
    Backend,
}

/// Copies `from` to `to`, counting each complete message before forwarding the bytes that
/// completed it.
async fn pump<R, W>(mut from: R, mut to: W, counters: Arc<Counters>, side: Side)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut scanner = Scanner {
        side,
        // The frontend starts with untyped startup packets; the backend's first
        // ReadyForQuery ends authentication and answers no Sync.
        startup: side == Side::Frontend,
        seen_first_ready: false,
        pending: Vec::new(),
    };
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = match from.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        scanner.feed(&chunk[..read], &counters);
        if to.write_all(&chunk[..read]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

struct Scanner {
    side: Side,
    startup: bool,
    seen_first_ready: bool,
    pending: Vec<u8>,
}

impl Scanner {
    fn feed(&mut self, bytes: &[u8], counters: &Counters) {
        self.pending.extend_from_slice(bytes);
        let mut at = 0;
        loop {
            let rest = &self.pending[at..];
            if self.startup {
                if rest.len() < 8 {
                    break;
                }
                let length = length_at(rest, 0);
                assert!(length >= 8, "proxy: malformed startup packet");
                if rest.len() < length {
                    break;
                }
                let code = i32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
                if code != SSL_REQUEST && code != GSSENC_REQUEST {
                    self.startup = false;
                }
                at += length;
            } else {
                if rest.len() < 5 {
                    break;
                }
                let length = length_at(rest, 1);
                assert!(length >= 4, "proxy: malformed message length");
                if rest.len() < 1 + length {
                    break;
                }
                self.message(rest[0], counters);
                at += 1 + length;
            }
        }
        self.pending.drain(..at);
    }

    fn message(&mut self, kind: u8, counters: &Counters) {
        match self.side {
            Side::Frontend => counters.frontend(kind),
            Side::Backend if kind == b'Z' => {
                if self.seen_first_ready {
                    counters.ready_for_query();
                } else {
                    self.seen_first_ready = true;
                }
            }
            Side::Backend => {}
        }
    }
}

fn length_at(bytes: &[u8], offset: usize) -> usize {
    let raw = i32::from_be_bytes([
        bytes[offset],
        bytes[offset + 1],
        bytes[offset + 2],
        bytes[offset + 3],
    ]);
    usize::try_from(raw).expect("proxy: negative message length")
}

/// A downgrade attacker between a client and a server: it answers every SSLRequest itself
/// with `N` ("no TLS here") and relays whatever the client sends next to the server in plain
/// text, counting the startup packets (user and database, before any password) that reached
/// the server that way.
#[derive(Debug)]
pub struct RefuseTlsProxy {
    address: SocketAddr,
    ssl_requests: Arc<AtomicU64>,
    plain_startups: Arc<AtomicU64>,
    acceptor: JoinHandle<()>,
}

impl Drop for RefuseTlsProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl RefuseTlsProxy {
    /// Listens on `127.0.0.1:0` in front of the server at `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let address = listener.local_addr().expect("proxy address");
        let ssl_requests = Arc::new(AtomicU64::new(0));
        let plain_startups = Arc::new(AtomicU64::new(0));
        let (requests, startups) = (Arc::clone(&ssl_requests), Arc::clone(&plain_startups));
        let acceptor = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(refuse_tls(
                    client,
                    upstream,
                    Arc::clone(&requests),
                    Arc::clone(&startups),
                ));
            }
        });
        Self {
            address,
            ssl_requests,
            plain_startups,
            acceptor,
        }
    }

    /// The port the proxy listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.address.port()
    }

    /// How many SSLRequests the proxy refused.
    pub fn ssl_requests(&self) -> u64 {
        self.ssl_requests.load(Ordering::SeqCst)
    }

    /// How many plain-text startup packets the proxy relayed to the server.
    pub fn plain_startups(&self) -> u64 {
        self.plain_startups.load(Ordering::SeqCst)
    }
}

async fn refuse_tls(
    mut client: TcpStream,
    upstream: SocketAddr,
    ssl_requests: Arc<AtomicU64>,
    plain_startups: Arc<AtomicU64>,
) {
    loop {
        let mut head = [0u8; 8];
        if client.read_exact(&mut head).await.is_err() {
            return;
        }
        let length = i32::from_be_bytes([head[0], head[1], head[2], head[3]]);
        let code = i32::from_be_bytes([head[4], head[5], head[6], head[7]]);
        if length == 8 && (code == SSL_REQUEST || code == GSSENC_REQUEST) {
            if code == SSL_REQUEST {
                ssl_requests.fetch_add(1, Ordering::SeqCst);
            }
            if client.write_all(b"N").await.is_err() {
                return;
            }
            continue;
        }
        // A startup packet in plain text: the client accepted the downgrade.
        plain_startups.fetch_add(1, Ordering::SeqCst);
        let Ok(mut server) = TcpStream::connect(upstream).await else {
            return;
        };
        if server.write_all(&head).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        return;
    }
}
