#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! A private PgBouncer in front of the test server, for `tests/clusters/pgbouncer.rs`.
//!
//! [`PgBouncer::start`] runs one `pgbouncer` process per call (so every test has its own pool
//! and settings), listening on a free port of 127.0.0.1, in `pool_mode = transaction` with
//! `auth_type = trust` and a `*` database entry that forwards any database name to the server
//! of [`server_url`](super::server_url) (TCP host or Unix socket, its user and password). The
//! pool is deliberately small (2 server connections per database and user by default) so that
//! server connections really are shared between client connections. The process is killed
//! when the handle is dropped; its files live in a temporary directory removed at the same
//! time.
//!
//! The binary is looked up on `PATH`, then in `/usr/sbin`, `/usr/local/sbin`,
//! `/usr/local/bin`. The test support installs nothing: `.ci/run` installs Debian's
//! `pgbouncer` package where it is missing; elsewhere a missing binary fails the test with an
//! install hint. PgBouncer refuses to run as root, so when we are root it
//! runs as the `postgres` OS user (else `nobody`), with the uid/gid set on the spawned process
//! itself — the child we hold is PgBouncer, so killing it needs no signal forwarding.
//!
//! Startup parameters: tokio-postgres sends `client_encoding`, `user`, `database`, and
//! `options`/`application_name` only when configured. PgBouncer tracks `client_encoding` and
//! `application_name` itself; `options` (and, from other drivers, `extra_float_digits`) would
//! be refused with "unsupported startup parameter" unless listed in
//! `ignore_startup_parameters`. The default configuration lists `extra_float_digits` as most
//! deployments do; [`Settings::ignore_startup_parameters`] can make the list empty to show
//! that this crate needs nothing ignored.
//!
//! `max_prepared_statements` (PgBouncer 1.21+) is written as `0` — its default — when the
//! binary supports it, so that named prepared statements break as in most deployments.

use std::fs::{self, File};
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;
use tokio_postgres::{Config, NoTls, SimpleQueryMessage};

use super::{database_url_with, server, server_url};

const INSTALL_HINT: &str = "PgBouncer is needed by tests/clusters/pgbouncer.rs: `bash .ci/run` \
installs it when run as root; or install it yourself (Debian/Ubuntu: `sudo apt-get install pgbouncer`, which puts it in /usr/sbin; macOS: `brew install pgbouncer`) \
or put the `pgbouncer` binary on PATH";

/// How long PgBouncer may take to accept connections after being spawned.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// The knobs the tests turn; everything else is fixed (see the module docs).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `default_pool_size`: server connections per database/user pair.
    pub pool_size: u32,
    /// `max_client_conn`.
    pub max_client_conn: u32,
    /// `ignore_startup_parameters` (comma-separated; may be empty).
    pub ignore_startup_parameters: String,
    /// `server_round_robin`: `false` (the default) reuses the most recently released server
    /// connection first (LIFO), `true` takes them in turn (FIFO).
    pub server_round_robin: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            pool_size: 2,
            max_client_conn: 64,
            ignore_startup_parameters: "extra_float_digits".to_owned(),
            server_round_robin: false,
        }
    }
}

/// Where the server behind the pooler is and how to log in to it.
#[derive(Clone, Debug)]
struct Upstream {
    /// A host name / address, or the directory of a Unix socket.
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
}

/// A running PgBouncer, killed on drop.
pub struct PgBouncer {
    child: Child,
    port: u16,
    dir: PathBuf,
    user: String,
    settings: Settings,
    config_text: String,
}

impl PgBouncer {
    /// PgBouncer with the default [`Settings`].
    pub async fn start() -> Self {
        Self::start_with(Settings::default()).await
    }

    /// PgBouncer with `settings`.
    pub async fn start_with(settings: Settings) -> Self {
        let upstream = upstream(&server_url().await);
        tokio::task::spawn_blocking(move || spawn(&upstream, settings))
            .await
            .expect("pgbouncer start task")
    }

    /// The port PgBouncer listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The complete `pgbouncer.ini` it runs with.
    pub fn config_text(&self) -> &str {
        &self.config_text
    }

    /// `database_url` (a URL of the test server, e.g. from `fresh_database`) rewritten to go
    /// through this PgBouncer: same user and database, its query string kept.
    pub fn url_for(&self, database_url: &str) -> String {
        let database = database_url
            .parse::<Config>()
            .expect("database URL")
            .get_dbname()
            .expect("database URL names a database")
            .to_owned();
        let base = format!(
            "postgres://{}@127.0.0.1:{}/postgres",
            server::percent_encode(&self.user),
            self.port
        );
        let query = database_url
            .split_once('?')
            .map(|(_, query)| format!("?{query}"))
            .unwrap_or_default();
        format!("{}{query}", database_url_with(&base, &database))
    }

    /// Runs a command on PgBouncer's admin console (`SHOW POOLS`, `SHOW SERVERS`, …) and
    /// returns every row as (column, value) pairs.
    pub async fn admin(&self, command: &str) -> Vec<Vec<(String, String)>> {
        let url = format!(
            "postgres://{}@127.0.0.1:{}/pgbouncer",
            server::percent_encode(&self.user),
            self.port
        );
        let (client, connection) = tokio_postgres::connect(&url, NoTls)
            .await
            .unwrap_or_else(|error| panic!("pgbouncer admin console: {error}\n{}", self.log()));
        let driver = tokio::spawn(connection);
        let messages = client
            .simple_query(command)
            .await
            .unwrap_or_else(|error| panic!("pgbouncer admin `{command}`: {error}"));
        drop(client);
        let _ = driver.await;
        messages
            .into_iter()
            .filter_map(|message| match message {
                SimpleQueryMessage::Row(row) => Some(
                    row.columns()
                        .iter()
                        .enumerate()
                        .map(|(index, column)| {
                            (
                                column.name().to_owned(),
                                row.get(index).unwrap_or_default().to_owned(),
                            )
                        })
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }

    /// Rows of `SHOW <what>` whose `database` column is `database`.
    pub async fn admin_rows_for(&self, what: &str, database: &str) -> Vec<Vec<(String, String)>> {
        self.admin(&format!("SHOW {what}"))
            .await
            .into_iter()
            .filter(|row| {
                row.iter()
                    .any(|(column, value)| column == "database" && value == database)
            })
            .collect()
    }

    /// PgBouncer's log so far (log file and stderr).
    pub fn log(&self) -> String {
        read_logs(&self.dir)
    }
}

impl Drop for PgBouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The `PgBouncer x.y.z` line of `pgbouncer --version`, and the parsed (major, minor).
pub fn version() -> (String, (u32, u32)) {
    let output = Command::new(binary())
        .arg("--version")
        .output()
        .unwrap_or_else(|error| panic!("pgbouncer --version: {error}"));
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let line = text.lines().next().unwrap_or_default().trim().to_owned();
    let mut numbers = line
        .rsplit(' ')
        .next()
        .unwrap_or_default()
        .split('.')
        .map(|part| part.parse::<u32>().unwrap_or(0));
    let major = numbers.next().unwrap_or(0);
    let minor = numbers.next().unwrap_or(0);
    assert!(
        major > 0,
        "cannot read the version from `pgbouncer --version`: {text:?}"
    );
    (line, (major, minor))
}

/// Whether this PgBouncer knows `max_prepared_statements` (protocol-level prepared statement
/// support, PgBouncer 1.21+).
pub fn supports_max_prepared_statements() -> bool {
    version().1 >= (1, 21)
}

/// The `pgbouncer` binary (`.ci/run` installs it; the tests never do).
pub fn binary() -> PathBuf {
    static FOUND: Mutex<Option<PathBuf>> = Mutex::new(None);
    let mut found = FOUND
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(path) = found.as_ref() {
        return path.clone();
    }
    let path =
        find_binary().unwrap_or_else(|| panic!("no `pgbouncer` binary found; {INSTALL_HINT}"));
    *found = Some(path.clone());
    path
}

fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(
            ["/usr/sbin", "/usr/local/sbin", "/usr/local/bin", "/usr/bin"]
                .iter()
                .map(PathBuf::from),
        )
        .map(|dir| dir.join("pgbouncer"))
        .find(|candidate| candidate.is_file())
}

/// Host, port, user and password of the test server's URL.
fn upstream(server_url: &str) -> Upstream {
    let config: Config = server_url.parse().expect("test server URL");
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        Some(Host::Unix(path)) => path.to_string_lossy().into_owned(),
        None => "127.0.0.1".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config
        .get_user()
        .map(str::to_owned)
        .unwrap_or_else(|| "postgres".to_owned());
    let password = config
        .get_password()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned());
    Upstream {
        host,
        port,
        user,
        password,
    }
}

/// Writes the files and starts PgBouncer, retrying on another port if the chosen one was
/// taken in the meantime.
fn spawn(upstream: &Upstream, settings: Settings) -> PgBouncer {
    let binary = binary();
    let run_as = if current_uid() == 0 {
        Some(unprivileged_user())
    } else {
        None
    };
    let mut last_failure = String::new();
    for _ in 0..5 {
        let dir = make_dir(run_as);
        let port = free_port();
        let config_text = config_text(upstream, &settings, &dir, port);
        let config_path = dir.join("pgbouncer.ini");
        fs::write(&config_path, &config_text).expect("write pgbouncer.ini");
        let userlist = format!(
            "{} {}\n",
            quote_userlist(&upstream.user),
            quote_userlist(upstream.password.as_deref().unwrap_or(""))
        );
        fs::write(dir.join("userlist.txt"), userlist).expect("write userlist.txt");
        if let Some((uid, gid)) = run_as {
            for entry in ["pgbouncer.ini", "userlist.txt"] {
                std::os::unix::fs::chown(dir.join(entry), Some(uid), Some(gid))
                    .expect("chown pgbouncer file");
            }
        }
        let stderr = File::create(dir.join("stderr.log")).expect("create stderr.log");
        let mut command = Command::new(&binary);
        command
            .arg(&config_path)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some((uid, gid)) = run_as {
            command.uid(uid).gid(gid);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {}: {error}", binary.display()));
        match wait_until_listening(&mut child, port) {
            Ok(()) => {
                return PgBouncer {
                    child,
                    port,
                    dir,
                    user: upstream.user.clone(),
                    settings,
                    config_text,
                }
            }
            Err(failure) => {
                let _ = child.kill();
                let _ = child.wait();
                last_failure = format!("{failure}\n{}", read_logs(&dir));
                let _ = fs::remove_dir_all(&dir);
                if !last_failure.contains("Address already in use") {
                    break;
                }
            }
        }
    }
    panic!("test support: pgbouncer did not start: {last_failure}");
}

fn config_text(upstream: &Upstream, settings: &Settings, dir: &Path, port: u16) -> String {
    let mut text = format!(
        "\
[databases]
* = host={host} port={upstream_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {dir}/userlist.txt
pool_mode = transaction
default_pool_size = {pool_size}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = {max_client_conn}
server_round_robin = {round_robin}
ignore_startup_parameters = {ignore}
admin_users = {user}
logfile = {dir}/pgbouncer.log
log_connections = 0
log_disconnections = 0
",
        host = upstream.host,
        upstream_port = upstream.port,
        dir = dir.display(),
        pool_size = settings.pool_size,
        max_client_conn = settings.max_client_conn,
        round_robin = u8::from(settings.server_round_robin),
        ignore = settings.ignore_startup_parameters,
        user = upstream.user,
    );
    if supports_max_prepared_statements() {
        // The default, written out: no protocol-level prepared statement support.
        text.push_str("max_prepared_statements = 0\n");
    }
    text
}

fn wait_until_listening(child: &mut Child, port: u16) -> Result<(), String> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().map_err(|error| error.to_string())? {
            return Err(format!("pgbouncer exited with {status}"));
        }
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => return Ok(()),
            Err(error) if Instant::now() > deadline => {
                return Err(format!(
                    "pgbouncer does not accept connections on port {port} after \
                     {START_TIMEOUT:?}: {error}"
                ))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(25)),
        }
    }
}

/// A new directory for one PgBouncer's files, owned by the user it runs as.
fn make_dir(run_as: Option<(u32, u32)>) -> PathBuf {
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let counter = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "rustauth-pgbouncer-{}-{counter}",
        std::process::id()
    ));
    match fs::remove_dir_all(&dir) {
        Err(error) if error.kind() != ErrorKind::NotFound => {
            panic!("cannot clear {}: {error}", dir.display())
        }
        _ => {}
    }
    fs::create_dir_all(&dir).unwrap_or_else(|error| panic!("{}: {error}", dir.display()));
    if let Some((uid, gid)) = run_as {
        std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown pgbouncer dir");
    }
    dir
}

fn read_logs(dir: &Path) -> String {
    let tail = |name: &str| {
        let text = fs::read_to_string(dir.join(name)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    format!(
        "--- pgbouncer.log ---\n{}\n--- stderr ---\n{}",
        tail("pgbouncer.log"),
        tail("stderr.log")
    )
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// uid and gid of `postgres`, else `nobody`, from /etc/passwd.
fn unprivileged_user() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    for wanted in ["postgres", "nobody"] {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3 && fields[0] == wanted {
                if let (Ok(uid), Ok(gid)) = (fields[2].parse(), fields[3].parse()) {
                    return (uid, gid);
                }
            }
        }
    }
    panic!("running as root, but neither a `postgres` nor a `nobody` user exists to run pgbouncer as (it refuses root)");
}

fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self")
        .map(|metadata| metadata.uid())
        .unwrap_or(u32::MAX)
}

/// A userlist.txt field: double-quoted, inner quotes doubled.
fn quote_userlist(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\"\""))
}
