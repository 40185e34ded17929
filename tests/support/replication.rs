#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! A primary and a streaming-replication standby on 127.0.0.1, for failover tests
//! (`tests/clusters/failover.rs`), and a "silent host" that accepts TCP connections and never answers.
//!
//! [`ReplicaPair::start`] makes the primary with [`Cluster::start`] (trust on 127.0.0.1 for
//! databases and replication; `wal_level = replica`, `hot_standby = on`,
//! `synchronous_standby_names = '*'`, `synchronous_commit = on`, so a commit is acknowledged
//! only once the standby has it), then the standby with `pg_basebackup -R` (as the `postgres`
//! OS user when root, like every other server command here), and waits until the primary
//! reports it as its synchronous standby. Both are [`Cluster`]s: stopped (`-m immediate`) and
//! deleted when dropped, and swept by the next test process if this one dies.
//!
//! `fsync` stays off (the base settings): `pg_ctl stop -m immediate` kills the server
//! processes, not the machine, so everything they wrote is still in the kernel's page cache
//! when the standby is promoted or the old primary's directory is read again; only a power
//! loss or a kernel crash would need the data on disk. `synchronous_commit` on the other hand
//! must be on (the base settings turn it off): it is what makes an acknowledged commit exist
//! on the standby.
//!
//! After [`promote_standby`](ReplicaPair::promote_standby) the roles swap; the old primary can
//! be made the new primary's standby with
//! [`rebuild_old_primary_as_standby`](ReplicaPair::rebuild_old_primary_as_standby) (wipe and
//! `pg_basebackup` again), after which the pair is synchronous again and can fail over the
//! other way. Each node keeps its port for its whole life, so a multi-host URL listing both
//! stays valid across every failover.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::cluster::Cluster;

/// `postgresql.conf` lines of a primary with a synchronous standby.
const PRIMARY_SETTINGS: &str = "\
wal_level = replica
max_wal_senders = 10
wal_keep_size = 256MB
hot_standby = on
synchronous_commit = on
synchronous_standby_names = '*'
wal_sender_timeout = 10s
";

/// What a standby adds to the primary's settings (it is copied from it): no standby of its
/// own to wait for (else its writes would hang once promoted), and it reports to the primary
/// quickly.
const STANDBY_SETTINGS: &str = "\
synchronous_standby_names = ''
wal_receiver_status_interval = 1s
hot_standby_feedback = on
";

/// pg_hba.conf TCP lines: databases and replication, trusted on loopback.
const PAIR_HBA: &str = "\
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
host replication all 127.0.0.1/32 trust
";

/// A primary and its synchronous standby.
#[derive(Debug)]
pub struct ReplicaPair {
    /// The two servers, in the order every URL lists them (fixed for the pair's life).
    pub nodes: [Cluster; 2],
    /// Which of `nodes` is the primary (the other is the standby, or stopped).
    primary: usize,
    /// How many promotions so far.
    pub failovers: usize,
}

impl ReplicaPair {
    /// Starts a primary and a synchronous standby of it (see the module docs).
    pub async fn start(label: &str) -> ReplicaPair {
        let primary = Cluster::start(
            &format!("{label}_a"),
            |_: &Path| PRIMARY_SETTINGS.to_owned(),
            PAIR_HBA,
        )
        .await;
        let standby =
            Cluster::from_base_backup(&format!("{label}_b"), &primary, STANDBY_SETTINGS).await;
        let pair = ReplicaPair {
            nodes: [primary, standby],
            primary: 0,
            failovers: 0,
        };
        pair.wait_until_synchronous().await;
        pair
    }

    /// The current primary.
    pub fn primary(&self) -> &Cluster {
        &self.nodes[self.primary]
    }

    /// The current standby (stopped after a failover until it is rebuilt).
    pub fn standby(&self) -> &Cluster {
        &self.nodes[1 - self.primary]
    }

    /// `pg_ctl stop -m immediate` on the primary: its clients' connections drop at once and
    /// nothing accepts writes until [`promote_standby`](Self::promote_standby).
    pub async fn stop_primary_immediate(&self) {
        self.primary().stop_immediate().await;
    }

    /// `pg_ctl promote -w` on the standby, which becomes the primary (the old primary, if it
    /// still runs, is stopped first: two primaries would split the data).
    pub async fn promote_standby(&mut self) {
        self.primary().stop_immediate().await;
        self.standby().promote().await;
        self.primary = 1 - self.primary;
        self.failovers += 1;
        // `pg_ctl promote -w` returns once the server left recovery; make sure a session sees
        // it writable.
        let admin = self.primary().admin().await;
        let read_only: bool = admin
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .expect("pg_is_in_recovery")
            .get(0);
        assert!(!read_only, "the promoted standby is still in recovery");
    }

    /// Makes the stopped old primary a synchronous standby of the current primary: wipes its
    /// directory, `pg_basebackup -R` from the primary, starts it on its port, and turns
    /// `synchronous_standby_names = '*'` on at the primary once it streams.
    pub async fn rebuild_old_primary_as_standby(&self) {
        let (primary, standby) = (self.primary(), self.standby());
        standby.rebuild_from(primary, STANDBY_SETTINGS).await;
        let admin = primary.admin().await;
        // Two statements: ALTER SYSTEM cannot run in the implicit transaction of a batch.
        for statement in [
            "ALTER SYSTEM SET synchronous_standby_names = '*'",
            "SELECT pg_reload_conf()",
        ] {
            admin
                .batch_execute(statement)
                .await
                .expect("make the new standby synchronous");
        }
        self.wait_until_synchronous().await;
    }

    /// Waits (up to 60 s) until the primary has a streaming standby in `sync` state.
    pub async fn wait_until_synchronous(&self) {
        let admin = self.primary().admin().await;
        let started = Instant::now();
        loop {
            let states: Vec<String> = admin
                .query(
                    "SELECT state || '/' || sync_state FROM pg_stat_replication",
                    &[],
                )
                .await
                .expect("read pg_stat_replication")
                .iter()
                .map(|row| row.get(0))
                .collect();
            if states.iter().any(|state| state == "streaming/sync") {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the standby did not become synchronous within 60 s ({states:?})\n\
                 primary log:\n{}\nstandby log:\n{}",
                self.primary().log_tail(20),
                self.standby().log_tail(20)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `postgres://postgres[:password]@127.0.0.1:P1,127.0.0.1:P2/<db>?<params>`: both nodes,
    /// in the pair's fixed order (`params` without the `?`; empty for none).
    pub fn url(&self, db: &str, params: &str) -> String {
        self.url_listing(&[self.nodes[0].port, self.nodes[1].port], db, params)
    }

    /// The same multi-host URL for any list of ports on 127.0.0.1 (e.g. a silent host first).
    pub fn url_listing(&self, ports: &[u16], db: &str, params: &str) -> String {
        multi_host_url(ports, db, params)
    }

    /// The key/value form of [`url`](Self::url): `host=127.0.0.1,127.0.0.1 port=P1,P2
    /// user=postgres dbname=<db> <params>` (`params` as `key=value` words).
    pub fn key_value(&self, db: &str, params: &str) -> String {
        multi_host_key_value(&[self.nodes[0].port, self.nodes[1].port], db, params)
    }
}

/// `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2,…/<db>?<params>`.
pub fn multi_host_url(ports: &[u16], db: &str, params: &str) -> String {
    let hosts: Vec<String> = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let query = if params.is_empty() {
        String::new()
    } else {
        format!("?{params}")
    };
    format!("postgres://postgres@{}/{db}{query}", hosts.join(","))
}

/// `host=127.0.0.1,… port=P1,… user=postgres dbname=<db> <params>`.
pub fn multi_host_key_value(ports: &[u16], db: &str, params: &str) -> String {
    let hosts = vec!["127.0.0.1"; ports.len()].join(",");
    let ports: Vec<String> = ports.iter().map(u16::to_string).collect();
    format!(
        "host={hosts} port={} user=postgres dbname={db} {params}",
        ports.join(",")
    )
}

/// A TCP listener on 127.0.0.1 that accepts every connection and never writes a byte (it
/// reads and discards what the client sends and keeps the socket open): a stuck server or a
/// black-holing proxy. Stops accepting, and closes the sockets, when dropped.
#[derive(Debug)]
pub struct SilentHost {
    /// The port it listens on.
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentHost {
    pub fn start() -> SilentHost {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a silent host");
        let port = listener.local_addr().expect("local address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (Arc::clone(&accepted), Arc::clone(&stop));
            std::thread::spawn(move || {
                let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    // Drain what the client sends (so its writes never block) on a thread of
                    // its own; keep a handle so the socket stays open until we stop.
                    if let Ok(mut reader) = stream.try_clone() {
                        std::thread::spawn(move || {
                            let mut sink = [0_u8; 1024];
                            while matches!(reader.read(&mut sink), Ok(n) if n > 0) {}
                        });
                    }
                    open.lock().unwrap().push(stream);
                }
                for stream in open.lock().unwrap().drain(..) {
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                }
            })
        };
        SilentHost {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// How many connections it has accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentHost {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(
            &SocketAddr::from(([127, 0, 0, 1], self.port)),
            Duration::from_secs(1),
        );
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
