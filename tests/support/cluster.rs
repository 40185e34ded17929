#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! Dedicated, throwaway PostgreSQL clusters with custom settings, for tests that restart the
//! server, terminate its backends or need TLS (`tests/clusters/reconnect.rs`, `tests/clusters/tls.rs`).
//!
//! Unlike [`super::server`]'s shared cluster, each [`Cluster`] is private to the test (or the
//! group of tests, see [`SharedCluster`]) that started it, lives in its own directory under
//! the temp dir (`rustauth-pg-cluster-<label>-<pid>-<n>`), listens on 127.0.0.1 on a free
//! port and on a Unix socket in that directory, and is stopped and deleted when dropped.
//! Clusters left behind by test processes that died are stopped and deleted by the next
//! [`Cluster::start`].
//!
//! `initdb` and `pg_ctl` come from PATH or `/usr/lib/postgresql/*/bin` (highest version);
//! when running as root they run as the `postgres` OS user through `runuser` (or `su`), and
//! the cluster's directory belongs to that user.

use std::ffi::OsStr;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio_postgres::{Client, NoTls};

use super::server;

/// Name prefix of every cluster directory made here.
const DIR_PREFIX: &str = "rustauth-pg-cluster-";
/// Settings every cluster gets (before the test's own lines, which may override them).
const BASE_SETTINGS: &str = "\
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 100
shared_buffers = 16MB
";
/// pg_hba.conf lines for TCP when the test gives none.
const DEFAULT_HBA: &str = "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n";

static COUNTER: AtomicU64 = AtomicU64::new(0);
static STALE_SWEPT: AtomicBool = AtomicBool::new(false);

/// A running (until stopped or dropped) PostgreSQL cluster of the test's own.
#[derive(Debug)]
pub struct Cluster {
    /// The TCP port on 127.0.0.1 (kept across [`restart`](Self::restart)).
    pub port: u16,
    /// The data directory (owned by `postgres` when running as root).
    pub data_dir: PathBuf,
    /// The directory of the Unix socket.
    pub socket_dir: PathBuf,
    base: PathBuf,
    bin: PathBuf,
    as_root: bool,
    running: AtomicBool,
}

impl Cluster {
    /// Initializes a new cluster, lets `setup` write files into its data directory and return
    /// extra `postgresql.conf` lines, installs `hba` as the TCP lines of `pg_hba.conf`
    /// (blank: trust on 127.0.0.1 and ::1; a `local all all trust` line always comes first so
    /// that [`admin`](Self::admin) works whatever `hba` says), and starts it.
    pub async fn start(label: &str, setup: impl FnOnce(&Path) -> String, hba: &str) -> Cluster {
        if !STALE_SWEPT.swap(true, Ordering::SeqCst) {
            let _ = tokio::task::spawn_blocking(sweep_stale_clusters).await;
        }
        let bin = server::find_pg_bin().unwrap_or_else(|| {
            panic!(
                "test support: initdb/pg_ctl not found on PATH nor in /usr/lib/postgresql/*/bin; \
                 install PostgreSQL (`apt-get install postgresql`)"
            )
        });
        let as_root = server::current_uid() == 0;
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(24)
            .collect();
        let base = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&base);
        let socket_dir = base.join("socket");
        fs::create_dir_all(&socket_dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", socket_dir.display()));
        if as_root {
            chown_postgres(&base);
        }
        let data_dir = base.join("data");
        let mut args = vec!["-D".as_ref(), data_dir.as_os_str()];
        args.extend(
            [
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ]
            .map(OsStr::new),
        );
        let initdb = server::pg_command(as_root, &bin.join("initdb"), &args);
        let (base_for_initdb, initdb) = (base.clone(), initdb);
        tokio::task::spawn_blocking(move || server::run(initdb, &base_for_initdb, "initdb"))
            .await
            .expect("initdb thread")
            .unwrap_or_else(|error| panic!("test support: initdb failed: {error}"));

        let extra = setup(&data_dir);
        let socket = socket_dir.to_string_lossy().replace('\'', "''");
        let settings = format!(
            "\n# rustauth-tokio-postgres test cluster\n{BASE_SETTINGS}\
             unix_socket_directories = '{socket}'\n{extra}\n"
        );
        OpenOptions::new()
            .append(true)
            .open(data_dir.join("postgresql.conf"))
            .and_then(|mut file| file.write_all(settings.as_bytes()))
            .expect("append to postgresql.conf");
        let hba = if hba.trim().is_empty() {
            DEFAULT_HBA
        } else {
            hba
        };
        fs::write(
            data_dir.join("pg_hba.conf"),
            format!("local all all trust\n{hba}\n"),
        )
        .expect("write pg_hba.conf");

        let mut last_error = String::new();
        for _ in 0..5 {
            let port = server::free_port().expect("a free port");
            let cluster = Cluster {
                port,
                data_dir: data_dir.clone(),
                socket_dir: socket_dir.clone(),
                base: base.clone(),
                bin: bin.clone(),
                as_root,
                running: AtomicBool::new(false),
            };
            let port_option = format!("-p {port}");
            match cluster.pg_ctl(&["-o", &port_option, "start"]).await {
                Ok(()) => {
                    cluster.running.store(true, Ordering::SeqCst);
                    cluster.wait_until_ready().await;
                    return cluster;
                }
                // Most likely someone took the port between our probe and the server's bind.
                Err(error) => last_error = error,
            }
        }
        panic!(
            "test support: could not start the cluster in {}: {last_error}",
            base.display()
        );
    }

    /// `pg_ctl restart -m fast` on the same port; returns once the server accepts connections.
    /// Every backend is terminated, so every client connection is lost.
    pub async fn restart(&self) {
        self.pg_ctl(&["-m", "fast", "restart"])
            .await
            .unwrap_or_else(|error| panic!("test support: pg_ctl restart failed: {error}"));
        self.running.store(true, Ordering::SeqCst);
        self.wait_until_ready().await;
    }

    /// Stops the server (`-m fast`). The data directory stays until the cluster is dropped.
    pub async fn stop(&self) {
        if self.running.swap(false, Ordering::SeqCst) {
            self.pg_ctl(&["-m", "fast", "stop"])
                .await
                .unwrap_or_else(|error| panic!("test support: pg_ctl stop failed: {error}"));
        }
    }

    /// Starts a [`stop`](Self::stop)ped server again on the same port.
    pub async fn resume(&self) {
        let port_option = format!("-p {}", self.port);
        self.pg_ctl(&["-o", &port_option, "start"])
            .await
            .unwrap_or_else(|error| panic!("test support: pg_ctl start failed: {error}"));
        self.running.store(true, Ordering::SeqCst);
        self.wait_until_ready().await;
    }

    /// A new cluster copied from the running `source` with `pg_basebackup -R` (so it starts as
    /// a streaming standby of `source`; `source` must allow replication connections from
    /// 127.0.0.1), with `extra` appended to its `postgresql.auto.conf` (after what `-R` wrote
    /// there, so it wins), started on a free port. Its Unix socket is its own.
    pub async fn from_base_backup(label: &str, source: &Cluster, extra: &str) -> Cluster {
        let label: String = label
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .take(24)
            .collect();
        let base = std::env::temp_dir().join(format!(
            "{DIR_PREFIX}{label}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&base);
        let socket_dir = base.join("socket");
        fs::create_dir_all(&socket_dir)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", socket_dir.display()));
        if source.as_root {
            chown_postgres(&base);
        }
        let mut cluster = Cluster {
            port: 0,
            data_dir: base.join("data"),
            socket_dir,
            base,
            bin: source.bin.clone(),
            as_root: source.as_root,
            running: AtomicBool::new(false),
        };
        cluster.base_backup(source, extra).await;
        let mut last_error = String::new();
        for _ in 0..5 {
            // Most likely someone took the port between our probe and the server's bind.
            cluster.port = server::free_port().expect("a free port");
            match cluster.start_on_port().await {
                Ok(()) => return cluster,
                Err(error) => last_error = error,
            }
        }
        panic!(
            "test support: could not start the standby in {}: {last_error}",
            cluster.base.display()
        );
    }

    /// Stops this (standby's) server if it runs, deletes its data directory, copies `source`
    /// again with `pg_basebackup -R` (plus `extra`, as in
    /// [`from_base_backup`](Self::from_base_backup)) and starts it on the same port: it is
    /// then a standby of `source`.
    pub async fn rebuild_from(&self, source: &Cluster, extra: &str) {
        self.stop_immediate().await;
        let data_dir = self.data_dir.clone();
        tokio::task::spawn_blocking(move || fs::remove_dir_all(data_dir))
            .await
            .expect("remove thread")
            .unwrap_or_else(|error| panic!("cannot delete the old data directory: {error}"));
        self.base_backup(source, extra).await;
        self.start_on_port()
            .await
            .unwrap_or_else(|error| panic!("test support: the rebuilt standby: {error}"));
    }

    /// `pg_ctl stop -m immediate`: the server exits at once without a checkpoint (as in a
    /// crash; its clients see their connections drop). No-op when it is not running.
    pub async fn stop_immediate(&self) {
        if self.running.swap(false, Ordering::SeqCst) {
            self.pg_ctl(&["-m", "immediate", "stop"])
                .await
                .unwrap_or_else(|error| panic!("test support: pg_ctl stop -m immediate: {error}"));
        }
    }

    /// `pg_ctl promote -w`: a standby becomes a primary; returns once it accepts writes.
    pub async fn promote(&self) {
        self.pg_ctl(&["promote"])
            .await
            .unwrap_or_else(|error| panic!("test support: pg_ctl promote failed: {error}"));
    }

    /// Whether the server is running (as far as this handle started and stopped it).
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// `pg_basebackup -R` of `source` into this cluster's (absent) data directory, then
    /// `extra` and the socket directory appended to its `postgresql.auto.conf`.
    async fn base_backup(&self, source: &Cluster, extra: &str) {
        let port = source.port.to_string();
        let mut args = vec!["-D".as_ref(), self.data_dir.as_os_str()];
        args.extend(
            [
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
            ]
            .map(OsStr::new),
        );
        let command = server::pg_command(self.as_root, &self.tool("pg_basebackup"), &args);
        let base = self.base.clone();
        tokio::task::spawn_blocking(move || server::run(command, &base, "pg_basebackup"))
            .await
            .expect("pg_basebackup thread")
            .unwrap_or_else(|error| panic!("test support: pg_basebackup failed: {error}"));
        let socket = self.socket_dir.to_string_lossy().replace('\'', "''");
        let settings = format!(
            "\n# rustauth-tokio-postgres test standby\nunix_socket_directories = '{socket}'\n{extra}\n"
        );
        OpenOptions::new()
            .append(true)
            .open(self.data_dir.join("postgresql.auto.conf"))
            .and_then(|mut file| file.write_all(settings.as_bytes()))
            .expect("append to postgresql.auto.conf");
    }

    /// A PostgreSQL program next to `pg_ctl` (following a symbolic link such as
    /// `/usr/local/bin/pg_ctl -> /usr/lib/postgresql/15/bin/pg_ctl`, whose directory holds
    /// the programs not linked into PATH).
    fn tool(&self, name: &str) -> PathBuf {
        let beside = self.bin.join(name);
        if beside.is_file() {
            return beside;
        }
        fs::canonicalize(self.bin.join("pg_ctl"))
            .ok()
            .and_then(|pg_ctl| pg_ctl.parent().map(|dir| dir.join(name)))
            .filter(|path| path.is_file())
            .unwrap_or(beside)
    }

    /// `pg_ctl start` on `self.port`, then waits until it answers.
    async fn start_on_port(&self) -> Result<(), String> {
        let port_option = format!("-p {}", self.port);
        self.pg_ctl(&["-o", &port_option, "start"]).await?;
        self.running.store(true, Ordering::SeqCst);
        self.wait_until_ready().await;
        Ok(())
    }

    /// Terminates every backend connected to `db` (except the caller's) and waits until
    /// they are gone; returns how many there were.
    pub async fn terminate_backends(&self, db: &str) -> usize {
        let admin = self.admin().await;
        let terminated = admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&db],
            )
            .await
            .expect("pg_terminate_backend")
            .len();
        for _ in 0..200 {
            if self.backend_pids(db).await.is_empty() {
                return terminated;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("test support: the backends of {db} did not exit within 10 s");
    }

    /// The pids of the backends connected to `db` (except the caller's).
    pub async fn backend_pids(&self, db: &str) -> Vec<i32> {
        self.admin()
            .await
            .query(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
                 ORDER BY pid",
                &[&db],
            )
            .await
            .expect("read pg_stat_activity")
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// The superuser URL over TCP to database `postgres` (subject to the cluster's hba lines).
    pub fn admin_url(&self) -> String {
        self.url("postgres")
    }

    /// `postgres://postgres@127.0.0.1:<port>/<db>`.
    pub fn url(&self, db: &str) -> String {
        self.url_on_host("127.0.0.1", db)
    }

    /// `postgres://postgres@<host>:<port>/<db>` (e.g. `localhost`, for TLS host-name checks).
    pub fn url_on_host(&self, host: &str, db: &str) -> String {
        format!("postgres://postgres@{host}:{}/{db}", self.port)
    }

    /// A superuser connection over the Unix socket (always trusted, never TLS), driven on the
    /// current runtime.
    pub async fn admin(&self) -> Client {
        self.connect_socket("postgres").await
    }

    /// A superuser connection to `db` over the Unix socket, driven on the current runtime.
    pub async fn connect_socket(&self, db: &str) -> Client {
        let config = format!(
            "host={} port={} user=postgres dbname={db}",
            self.socket_dir.display(),
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&config, NoTls)
            .await
            .unwrap_or_else(|error| {
                panic!("test support: cannot connect to the cluster's socket: {error}")
            });
        tokio::spawn(async move {
            let _ = connection.await;
        });
        client
    }

    /// Creates a database named after `label` (unique in this cluster) and returns its name.
    pub async fn create_database(&self, label: &str) -> String {
        let name = format!(
            "db_{}_{}",
            label
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                })
                .take(40)
                .collect::<String>(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        self.admin()
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE template0"))
            .await
            .unwrap_or_else(|error| panic!("test support: CREATE DATABASE {name}: {error}"));
        name
    }

    /// The last `lines` lines of the server log (for failure messages).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(self.base.join("server.log")).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    async fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let log = self.base.join("server.log");
        let mut all = vec![
            "-D".as_ref(),
            self.data_dir.as_os_str(),
            "-l".as_ref(),
            log.as_os_str(),
            "-w".as_ref(),
            "-t".as_ref(),
            "60".as_ref(),
        ];
        all.extend(args.iter().map(OsStr::new));
        let command = server::pg_command(self.as_root, &self.bin.join("pg_ctl"), &all);
        let base = self.base.clone();
        let what = format!("pg_ctl-{}", args.last().copied().unwrap_or("run"));
        let result = tokio::task::spawn_blocking(move || server::run(command, &base, &what))
            .await
            .expect("pg_ctl thread");
        result.map_err(|error| format!("{error}\nserver log tail:\n{}", self.log_tail(20)))
    }

    /// Waits (up to 30 s) until a connection over the socket succeeds.
    async fn wait_until_ready(&self) {
        let config = format!(
            "host={} port={} user=postgres dbname=postgres",
            self.socket_dir.display(),
            self.port
        );
        let mut last_error = String::new();
        for _ in 0..300 {
            match tokio_postgres::connect(&config, NoTls).await {
                Ok((client, connection)) => {
                    drop(client);
                    let _ = connection.await;
                    return;
                }
                Err(error) => last_error = error.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "test support: the cluster does not answer: {last_error}\nserver log tail:\n{}",
            self.log_tail(20)
        );
    }

    fn stop_blocking(&self) {
        if self.running.swap(false, Ordering::SeqCst) {
            let log = self.base.join("server.log");
            let args: Vec<&OsStr> = vec![
                "-D".as_ref(),
                self.data_dir.as_os_str(),
                "-l".as_ref(),
                log.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ];
            let command = server::pg_command(self.as_root, &self.bin.join("pg_ctl"), &args);
            let _ = server::run(command, &self.base, "pg_ctl-drop");
        }
    }
}

impl Drop for Cluster {
    /// Stops the server (`-m immediate`) and deletes the directory; best effort.
    fn drop(&mut self) {
        self.stop_blocking();
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// One cluster shared by the tests of a binary that run at the same time: the first caller
/// starts it, the others get the same one, and it stops when the last of them drops it (a
/// later caller then starts a new one).
pub struct SharedCluster {
    slot: tokio::sync::Mutex<Weak<Cluster>>,
}

impl SharedCluster {
    pub const fn new() -> Self {
        Self {
            slot: tokio::sync::Mutex::const_new(Weak::new()),
        }
    }

    /// The running cluster, or the one `start` makes.
    pub async fn get<F, Fut>(&self, start: F) -> Arc<Cluster>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Cluster>,
    {
        let mut slot = self.slot.lock().await;
        if let Some(cluster) = slot.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(start().await);
        *slot = Arc::downgrade(&cluster);
        cluster
    }
}

impl Default for SharedCluster {
    fn default() -> Self {
        Self::new()
    }
}

/// Writes `contents` to `path` with permissions `mode`, owned by the `postgres` OS user when
/// running as root (the server refuses a private key that others can read or that belongs to
/// someone else).
pub fn write_server_file(path: &Path, contents: &[u8], mode: u32) {
    fs::write(path, contents).unwrap_or_else(|error| panic!("write {}: {error}", path.display()));
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|error| panic!("chmod {}: {error}", path.display()));
    if server::current_uid() == 0 {
        chown_postgres(path);
    }
}

// ---------------------------------------------------------------------------------------------

/// Stops and deletes the clusters of test processes that no longer exist.
fn sweep_stale_clusters() {
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    let Some(bin) = server::find_pg_bin() else {
        return;
    };
    let as_root = server::current_uid() == 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(DIR_PREFIX) else {
            continue;
        };
        let mut parts = rest.rsplit('-');
        let _counter = parts.next();
        let Some(pid) = parts.next().and_then(|pid| pid.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let base = entry.path();
        let data = base.join("data");
        if data.join("postmaster.pid").exists() {
            let args: Vec<&OsStr> = vec![
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ];
            let _ = server::run(
                server::pg_command(as_root, &bin.join("pg_ctl"), &args),
                &std::env::temp_dir(),
                &format!("{name}-stop"),
            );
            let _ = fs::remove_file(std::env::temp_dir().join(format!("{name}-stop.out")));
        }
        let _ = fs::remove_dir_all(&base);
    }
}

fn chown_postgres(path: &Path) {
    let status = Command::new("chown")
        .arg("-R")
        .arg("postgres")
        .arg(path)
        .status()
        .expect("run chown");
    assert!(
        status.success(),
        "chown -R postgres {} failed (running as root needs the `postgres` OS user)",
        path.display()
    );
}
