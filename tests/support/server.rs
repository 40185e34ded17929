#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! Finds or starts a PostgreSQL server for the integration tests and the examples.
//!
//! Self-contained on purpose: it uses only std, tokio and tokio-postgres, never the crate under
//! test, so that it can be included both as `tests/support/server.rs` (via `mod support;`) and
//! by the benchmarks via `#[path = "../tests/support/server.rs"] mod server;`.
//!
//! [`server_url`] decides once per process, in this order:
//! 1. `DATABASE_URL`, if set and not blank (used as given, never probed);
//! 2. `postgres://postgres@127.0.0.1:5432/postgres`, if a connection succeeds within 2 s;
//! 3. a throwaway cluster made with the system's `initdb` and `pg_ctl`, in
//!    `<temp dir>/rustauth-tokio-postgres-test-cluster-<uid>`: trust auth, user `postgres`,
//!    listening on 127.0.0.1 on a free port, fsync off. It is shared by every test process
//!    (a lock file serializes starting it, the `port` file records where it listens) and is
//!    deliberately left running when the process exits, so that the next test binary reuses it.
//!    Stop it with `pg_ctl -D <dir>/pg/data stop` (as the `postgres` user when running as root)
//!    or just delete the directory after a reboot. When running as root, `initdb` and `pg_ctl`
//!    run as the `postgres` OS user through `runuser` (or `su`).
//!
//! [`fresh_database`] hands out a uniquely named, empty database per call and releases it when
//! the Tokio runtime it was made on shuts down: for a `#[tokio::test]`, when the test ends,
//! passed or failed (a guard held by a task of that runtime; the sessions the test left open
//! are ended first). A released database is reset to what a new database holds and kept for
//! the process's next test while other tests still hold databases, else dropped, so that the
//! process's last release drops them all (see [`release`]). Databases left behind by test
//! processes that were killed are dropped in the background on the servers this module owns or
//! found locally (steps 2 and 3), never on a `DATABASE_URL` server.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::OnceCell;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, NoTls};

/// The local server tried at step 2.
const LOCAL_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
/// How long a probe of a candidate server may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Prefix of every database made by [`fresh_database`].
const DB_PREFIX: &str = "rat_";
/// Directory name (under the temp dir, suffixed with the uid) of the throwaway cluster.
const CLUSTER_DIR_NAME: &str = "rustauth-tokio-postgres-test-cluster";
/// Lines appended to the throwaway cluster's `postgresql.conf` (socket dir added separately).
const CLUSTER_SETTINGS: &str = "\
listen_addresses = '127.0.0.1'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
";
const INSTALL_HINT: &str = "install PostgreSQL (e.g. `apt-get install postgresql`, which provides \
initdb and pg_ctl under /usr/lib/postgresql/<version>/bin) or set DATABASE_URL to the URL of a \
server where the user may CREATE DATABASE";

/// Where the server came from; decides whether stale test databases may be dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    Env,
    Local,
    Throwaway,
}

static SERVER: OnceCell<(String, Origin)> = OnceCell::const_new();
static DB_COUNTER: AtomicU64 = AtomicU64::new(0);
static GC_STARTED: AtomicBool = AtomicBool::new(false);

/// The override rule for `DATABASE_URL`: a non-blank value (trimmed) wins; unset or blank → `None`.
pub fn url_from_env(value: Option<String>) -> Option<String> {
    value
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The admin URL of the test server (decided once per process; see the module docs).
pub async fn server_url() -> String {
    server().await.0.clone()
}

async fn server() -> &'static (String, Origin) {
    SERVER.get_or_init(decide_server).await
}

async fn decide_server() -> (String, Origin) {
    // RUSTAUTH_TEST_POSTGRES_URL is the variable 0.3.2's tests read; DATABASE_URL wins.
    let configured = url_from_env(std::env::var("DATABASE_URL").ok())
        .or_else(|| url_from_env(std::env::var("RUSTAUTH_TEST_POSTGRES_URL").ok()));
    if let Some(url) = configured {
        eprintln!("test support: using the configured URL ({})", redact(&url));
        return (url, Origin::Env);
    }
    // Undocumented: skip the local server, to exercise the throwaway cluster.
    if !env_flag("RUSTAUTH_PG_NO_LOCAL") && probe(LOCAL_URL).await.is_ok() {
        eprintln!("test support: using the local server {LOCAL_URL}");
        return (LOCAL_URL.to_owned(), Origin::Local);
    }
    let url = throwaway_cluster().await;
    eprintln!("test support: using the throwaway cluster at {url}");
    (url, Origin::Throwaway)
}

/// Creates a new, uniquely named, empty database and returns its URL (same server and user as
/// [`server_url`]). Safe to call concurrently from many tests and processes.
///
/// Inside a Tokio runtime the database may be one that an earlier test of this process
/// released, reset to what a new database holds and renamed (see [`release`]): creating a
/// database copies a whole template, about 0.2 s of server time and 7 MB of WAL each, a third
/// of a typical test's time.
pub async fn fresh_database(label: &str) -> String {
    let (admin_url, origin) = server().await;
    if *origin != Origin::Env && !GC_STARTED.swap(true, Ordering::SeqCst) {
        spawn_stale_database_cleanup(admin_url.clone());
    }
    let name = unique_database_name(label);
    let client = connect_with_retry(admin_url).await;
    // Released when the runtime it was made on shuts down (connecting needed one).
    let runtime = tokio::runtime::Handle::current();
    let handed_out = HandedOut {
        admin_url: admin_url.clone(),
        name: name.clone(),
    };
    let pooled = pool()
        .lock()
        .map(|mut pool| pool.hand_out())
        .unwrap_or(None);
    let reused = match pooled {
        Some(pooled) => rename_or_drop(&client, &pooled, &name).await,
        None => false,
    };
    if !reused {
        create_database(&client, admin_url, &name).await;
        record_new_database(admin_url, &name).await;
    }
    runtime.spawn(async move {
        let _released_on_drop = handed_out;
        std::future::pending::<()>().await;
    });
    database_url_with(admin_url, &name)
}

/// `CREATE DATABASE name` from template0, retrying transient conflicts.
async fn create_database(client: &Client, admin_url: &str, name: &str) {
    // template0 never accepts connections, so nobody can be "accessing" it; the retry covers
    // the remaining transient conflicts between concurrent CREATE DATABASE statements.
    let sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    let mut attempt = 0u32;
    loop {
        match client.batch_execute(&sql).await {
            Ok(()) => return,
            Err(error) if attempt < 60 && is_transient(&error) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 + 25 * u64::from(attempt.min(8))))
                    .await;
            }
            Err(error) => panic!(
                "test support: could not create database {name} on {}: {error:?}",
                redact(admin_url)
            ),
        }
    }
}

/// Gives pooled database `pooled` the name `name`; drops it when that fails.
async fn rename_or_drop(client: &Client, pooled: &str, name: &str) -> bool {
    let rename = format!(
        "ALTER DATABASE {} RENAME TO {}",
        quote_ident(pooled),
        quote_ident(name)
    );
    if client.batch_execute(&rename).await.is_ok() {
        return true;
    }
    drop_on(client, pooled).await;
    false
}

/// A database handed out by [`fresh_database`]: released when dropped, which a task of the
/// test's runtime does when that runtime shuts down (also when the test panicked). Blocks until
/// the database is pooled or dropped, so that a test process never ends with one left behind.
struct HandedOut {
    admin_url: String,
    name: String,
}

impl Drop for HandedOut {
    fn drop(&mut self) {
        on_release_thread(&self.admin_url, &self.name);
    }
}

/// A request to the release thread: the server, the database, and where to say it is done.
type ReleaseRequest = (String, String, std::sync::mpsc::Sender<()>);

/// Runs [`release`] for database `name` and returns once it is done. Releases run on one
/// thread of this process with a runtime of its own (the caller's is shutting down), each on a
/// connection of its own, several at once.
fn on_release_thread(admin_url: &str, name: &str) {
    static RELEASER: std::sync::OnceLock<tokio::sync::mpsc::UnboundedSender<ReleaseRequest>> =
        std::sync::OnceLock::new();
    let sender = RELEASER.get_or_init(|| {
        let (sender, mut requests) = tokio::sync::mpsc::unbounded_channel::<ReleaseRequest>();
        let _ = std::thread::Builder::new()
            .name("release-test-databases".to_owned())
            .spawn(move || {
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                else {
                    return;
                };
                runtime.block_on(async move {
                    while let Some((admin_url, name, done)) = requests.recv().await {
                        tokio::spawn(async move {
                            release(&admin_url, &name).await;
                            let _ = done.send(());
                        });
                    }
                });
            });
        sender
    });
    let (done, finished) = std::sync::mpsc::channel();
    if sender
        .send((admin_url.to_owned(), name.to_owned(), done))
        .is_ok()
    {
        let _ = finished.recv_timeout(Duration::from_secs(30));
    }
}

// ---------------------------------------------------------------------------------------------
// Reusing released databases

/// How many reset databases a process keeps for its next tests (more than tests run at once).
const POOL_CAPACITY: usize = 8;

/// The databases of this process that are handed out or pooled.
#[derive(Default)]
pub struct Pool {
    /// Handed out by [`fresh_database`] and not yet released.
    handed_out: usize,
    /// Released, reset, renamed `rat_pool_…`, waiting for the next [`fresh_database`].
    pooled: Vec<String>,
}

impl Pool {
    /// One more database handed out: a pooled one if there is one (else the caller creates it).
    pub fn hand_out(&mut self) -> Option<String> {
        self.handed_out += 1;
        self.pooled.pop()
    }

    /// A handed-out database came back, reset and renamed to `reset` when that worked. It is
    /// kept only while other databases are still handed out, since only their release can
    /// come before another `fresh_database`: the last release of a process returns every
    /// pooled database to be dropped, so that none outlives the tests. Returns the names to
    /// drop.
    pub fn released(&mut self, reset: Option<String>) -> Vec<String> {
        self.handed_out = self.handed_out.saturating_sub(1);
        let mut drop = Vec::new();
        if let Some(name) = reset {
            if self.handed_out > 0 && self.pooled.len() < POOL_CAPACITY {
                self.pooled.push(name);
            } else {
                drop.push(name);
            }
        }
        if self.handed_out == 0 {
            drop.append(&mut self.pooled);
        }
        drop
    }
}

fn pool() -> &'static std::sync::Mutex<Pool> {
    static POOL: std::sync::OnceLock<std::sync::Mutex<Pool>> = std::sync::OnceLock::new();
    POOL.get_or_init(Default::default)
}

/// What a new database of this process's server holds, recorded from the first one created.
struct NewDatabase {
    /// [`CATALOG_FINGERPRINT`] of a new database.
    fingerprint: String,
    /// The statements that give its `public` schema back its owner, grants and comment.
    public_schema: String,
}

static NEW_DATABASE: OnceCell<Option<NewDatabase>> = OnceCell::const_new();

/// Records [`NewDatabase`] from database `name`, just created and not yet handed out.
async fn record_new_database(admin_url: &str, name: &str) {
    NEW_DATABASE
        .get_or_init(|| async {
            let client = try_connect(&database_url_with(admin_url, name))
                .await
                .ok()?;
            let fingerprint = fingerprint(&client).await?;
            let public_schema = client
                .query_one(RESTORE_PUBLIC, &[])
                .await
                .ok()?
                .try_get::<_, String>(0)
                .ok()?;
            Some(NewDatabase {
                fingerprint,
                public_schema,
            })
        })
        .await;
}

/// Everything in a database's catalogs a test can add, remove or change, except the contents
/// of its relations: schemas with owners, grants and comments, extensions, the database's own
/// properties and settings, and how many objects of every other kind exist. A database whose
/// fingerprint after the reset equals a new one's holds what a new one holds.
const CATALOG_FINGERPRINT: &str = "\
SELECT concat_ws(E'\\n', \
 (SELECT string_agg(format('%s %s %s %s', n.nspname, n.nspowner::regrole, \
   coalesce(n.nspacl::text, '-'), coalesce(obj_description(n.oid, 'pg_namespace'), '-')), \
   ', ' ORDER BY n.nspname) \
  FROM pg_namespace n WHERE n.nspname !~ '^pg_(toast_)?temp_'), \
 (SELECT string_agg(extname || ' ' || extversion, ', ' ORDER BY extname) FROM pg_extension), \
 (SELECT format('%s %s %s %s %s %s %s', d.datdba::regrole, d.datallowconn, d.datconnlimit, \
   d.datistemplate, coalesce(d.datacl::text, '-'), d.dattablespace, \
   coalesce(shobj_description(d.oid, 'pg_database'), '-')) \
  FROM pg_database d WHERE d.datname = current_database()), \
 (SELECT count(*) FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase \
  WHERE d.datname = current_database()), \
 concat_ws(' ', (SELECT count(*) FROM pg_class), (SELECT count(*) FROM pg_attribute), \
  (SELECT count(*) FROM pg_proc), (SELECT count(*) FROM pg_type), \
  (SELECT count(*) FROM pg_constraint), (SELECT count(*) FROM pg_attrdef), \
  (SELECT count(*) FROM pg_trigger), (SELECT count(*) FROM pg_rewrite), \
  (SELECT count(*) FROM pg_policy), (SELECT count(*) FROM pg_inherits), \
  (SELECT count(*) FROM pg_sequence), (SELECT count(*) FROM pg_enum), \
  (SELECT count(*) FROM pg_range), (SELECT count(*) FROM pg_aggregate), \
  (SELECT count(*) FROM pg_operator), (SELECT count(*) FROM pg_opfamily), \
  (SELECT count(*) FROM pg_opclass), (SELECT count(*) FROM pg_am), \
  (SELECT count(*) FROM pg_cast), (SELECT count(*) FROM pg_collation), \
  (SELECT count(*) FROM pg_conversion), (SELECT count(*) FROM pg_language), \
  (SELECT count(*) FROM pg_ts_config), (SELECT count(*) FROM pg_ts_dict), \
  (SELECT count(*) FROM pg_statistic_ext), (SELECT count(*) FROM pg_transform), \
  (SELECT count(*) FROM pg_event_trigger), (SELECT count(*) FROM pg_publication), \
  (SELECT count(*) FROM pg_foreign_data_wrapper), (SELECT count(*) FROM pg_foreign_server), \
  (SELECT count(*) FROM pg_user_mapping), (SELECT count(*) FROM pg_default_acl), \
  (SELECT count(*) FROM pg_largeobject_metadata), (SELECT count(*) FROM pg_description), \
  (SELECT count(*) FROM pg_init_privs), (SELECT count(*) FROM pg_seclabel)))";

/// The statements that give a database's `public` schema its present owner, grants to others
/// and comment back (none when it has no `public` schema; its privileges are revoked from
/// everyone first, so that grants a test added go).
const RESTORE_PUBLIC: &str = "\
SELECT coalesce((SELECT format('ALTER SCHEMA public OWNER TO %s;', n.nspowner::regrole) \
 || ' REVOKE ALL ON SCHEMA public FROM PUBLIC;' \
 || coalesce((SELECT string_agg(format(' REVOKE ALL ON SCHEMA public FROM %s;', r.rolname), '') \
    FROM pg_roles r WHERE r.rolname !~ '^pg_'), '') \
 || coalesce((SELECT string_agg(format(' GRANT %s ON SCHEMA public TO %s;', a.privilege_type, \
      CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE a.grantee::regrole::text END), '') \
    FROM aclexplode(n.nspacl) a WHERE a.grantee <> n.nspowner), '') \
 || format(' COMMENT ON SCHEMA public IS %L;', obj_description(n.oid, 'pg_namespace')) \
 FROM pg_namespace n WHERE n.nspname = 'public'), '')";

/// Drops what tests make inside a database: event triggers and publications first (they
/// would fire on or refer to what follows), then extensions but PL/pgSQL, every schema but
/// `public` (temporary ones are their sessions' and went with them), and what `public` holds:
/// relations, composite types, domains, enums, ranges and routines. `public` itself stays (a
/// new one would lack the initial privileges `initdb` recorded for it). Anything else a test
/// made shows in the fingerprint, and such a database is dropped instead.
const DROP_CONTENTS: &str = "\
DO $reset$ \
DECLARE statement text; \
BEGIN \
  FOREACH statement IN ARRAY ARRAY( \
    SELECT format('DROP EVENT TRIGGER %I', evtname) FROM pg_event_trigger \
    UNION ALL SELECT format('DROP PUBLICATION %I', pubname) FROM pg_publication) LOOP \
    EXECUTE statement; \
  END LOOP; \
  FOREACH statement IN ARRAY ARRAY( \
    SELECT format('DROP EXTENSION IF EXISTS %I CASCADE', extname) FROM pg_extension \
    WHERE extname <> 'plpgsql') LOOP \
    EXECUTE statement; \
  END LOOP; \
  FOREACH statement IN ARRAY ARRAY( \
    SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', nspname) FROM pg_namespace \
    WHERE nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'public') \
      AND nspname !~ '^pg_(toast_)?temp_') LOOP \
    EXECUTE statement; \
  END LOOP; \
  FOREACH statement IN ARRAY ARRAY( \
    SELECT format('DROP %s IF EXISTS public.%I CASCADE', CASE c.relkind \
      WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE' \
      WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END, c.relname) \
    FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace \
      AND c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S', 'c') \
    UNION ALL SELECT format('DROP TYPE IF EXISTS public.%I CASCADE', t.typname) FROM pg_type t \
    WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('d', 'e', 'r') \
    UNION ALL SELECT format('DROP %s IF EXISTS %s CASCADE', \
      CASE p.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'ROUTINE' END, p.oid::regprocedure) \
    FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace) LOOP \
    EXECUTE statement; \
  END LOOP; \
END \
$reset$";

async fn fingerprint(client: &Client) -> Option<String> {
    client
        .query_one(CATALOG_FINGERPRINT, &[])
        .await
        .ok()?
        .try_get::<_, String>(0)
        .ok()
}

/// Releases a database handed out by [`fresh_database`]: ends its sessions, resets it to what a
/// new database holds and renames it `rat_pool_…` for the next test of this process, or drops
/// it: when the reset fails, when its catalogs still differ from a new database's afterwards
/// (a test changed something the reset does not undo), and when no other database of this
/// process is handed out (see [`Pool::released`]).
async fn release(admin_url: &str, name: &str) {
    let Ok(admin) = try_connect(admin_url).await else {
        let _ = pool().lock().map(|mut pool| pool.released(None));
        return;
    };
    let reset = reset(&admin, admin_url, name).await;
    if reset.is_none() {
        drop_on(&admin, name).await;
    }
    let to_drop = pool()
        .lock()
        .map(|mut pool| pool.released(reset))
        .unwrap_or_default();
    for name in to_drop {
        drop_on(&admin, &name).await;
    }
}

/// [`reset`] on its own, for the self-test: database `name` (handed out by [`fresh_database`]
/// in this process) reset and renamed, and its new name, or `None` when it is not fit to be
/// reused (then it keeps its name).
pub async fn reset_for_reuse(name: &str) -> Option<String> {
    let (admin_url, _) = server().await;
    let admin = try_connect(admin_url).await.ok()?;
    reset(&admin, admin_url, name).await
}

/// Drops database `name` now (its sessions ended first).
pub async fn drop_database_now(name: &str) {
    let (admin_url, _) = server().await;
    drop_on(&connect(admin_url).await, name).await;
}

/// Resets database `name` (see [`release`]); returns its new name, or `None` when it is not
/// fit to be reused and keeps its name.
async fn reset(admin: &Client, admin_url: &str, name: &str) -> Option<String> {
    let new = NEW_DATABASE.get()?.as_ref()?;
    end_sessions(admin, name).await;
    let database = quote_ident(name);
    // Settings made with ALTER DATABASE … SET and ALTER ROLE … IN DATABASE … SET, and the
    // database's comment (a new database has none).
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} RESET ALL; COMMENT ON DATABASE {database} IS NULL"
        ))
        .await
        .ok()?;
    let role_settings = admin
        .query(
            "SELECT s.setrole::regrole::text FROM pg_db_role_setting s \
             JOIN pg_database d ON d.oid = s.setdatabase \
             WHERE d.datname = $1 AND s.setrole <> 0",
            &[&name],
        )
        .await
        .ok()?;
    for row in role_settings {
        let role: String = row.try_get(0).ok()?;
        admin
            .batch_execute(&format!(
                "ALTER ROLE {role} IN DATABASE {database} RESET ALL"
            ))
            .await
            .ok()?;
    }
    let client = try_connect(&database_url_with(admin_url, name))
        .await
        .ok()?;
    client.batch_execute(DROP_CONTENTS).await.ok()?;
    client.batch_execute(&new.public_schema).await.ok()?;
    let fingerprint = fingerprint(&client).await?;
    drop(client);
    if fingerprint != new.fingerprint {
        return None;
    }
    end_sessions(admin, name).await;
    let pooled = unique_database_name("pool");
    admin
        .batch_execute(&format!(
            "ALTER DATABASE {database} RENAME TO {}",
            quote_ident(&pooled)
        ))
        .await
        .ok()?;
    Some(pooled)
}

/// Ends the sessions of database `name` and waits in short steps until they are gone
/// (`DROP DATABASE … WITH (FORCE)` alone waits in steps of 100 ms).
async fn end_sessions(client: &Client, name: &str) {
    let _ = client
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let left = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1",
                &[&name],
            )
            .await
            .map(|row| row.get::<_, i64>(0))
            .unwrap_or(0);
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Drops database `name` once its sessions are ended.
async fn drop_on(client: &Client, name: &str) {
    end_sessions(client, name).await;
    let quoted = quote_ident(name);
    if client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted}"))
        .await
        .is_err()
    {
        // A session arrived meanwhile (or before PostgreSQL 13 nothing else works): force it.
        let _ = client
            .batch_execute(&format!("DROP DATABASE IF EXISTS {quoted} WITH (FORCE)"))
            .await;
    }
}

/// Connects without TLS and drives the connection on the current tokio runtime.
pub async fn connect(url: &str) -> Client {
    match try_connect(url).await {
        Ok(client) => client,
        Err(error) => panic!("test support: cannot connect to {}: {error:?}", redact(url)),
    }
}

/// `url` with its database path replaced by `database` (query string kept), for URLs of the
/// form `postgres[ql]://[user[:password]@]host[:port][/db][?params]`.
pub fn database_url_with(url: &str, database: &str) -> String {
    let (authority, _path, rest) = split_url(url);
    format!("{authority}/{}{rest}", percent_encode(database))
}

// ---------------------------------------------------------------------------------------------
// Connections

async fn try_connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("test support: connection error: {error}");
        }
    });
    Ok(client)
}

/// Like [`connect`], but waits out "too many connections" and "starting up".
async fn connect_with_retry(url: &str) -> Client {
    let mut attempt = 0u32;
    loop {
        match try_connect(url).await {
            Ok(client) => return client,
            Err(error) if attempt < 100 && is_transient(&error) => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => panic!("test support: cannot connect to {}: {error:?}", redact(url)),
        }
    }
}

fn is_transient(error: &tokio_postgres::Error) -> bool {
    matches!(
        error.code(),
        Some(code) if *code == SqlState::OBJECT_IN_USE
            || *code == SqlState::TOO_MANY_CONNECTIONS
            || *code == SqlState::CANNOT_CONNECT_NOW
            || *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
    )
}

/// Connects and runs `SELECT 1` within [`PROBE_TIMEOUT`].
async fn probe(url: &str) -> Result<(), String> {
    let attempt = async {
        let (client, connection) = tokio_postgres::connect(url, NoTls)
            .await
            .map_err(|error| error.to_string())?;
        let driver = tokio::spawn(connection);
        let result = client
            .simple_query("SELECT 1")
            .await
            .map(|_| ())
            .map_err(|error| error.to_string());
        drop(client);
        let _ = driver.await;
        result
    };
    match tokio::time::timeout(PROBE_TIMEOUT, attempt).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    }
}

// ---------------------------------------------------------------------------------------------
// Database names and garbage collection

/// `rat_<label>_<tag>_<pid>_<counter>_<random>`, at most 63 bytes, `[a-z0-9_]` only. The tag
/// identifies this machine's boot and PID namespace so that the pid can be checked later.
fn unique_database_name(label: &str) -> String {
    let counter = DB_COUNTER.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let suffix = format!(
        "_{}_{pid}_{counter}_{:08x}",
        host_tag(),
        random_u32(counter)
    );
    let mut label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    if label.is_empty() {
        label.push_str("db");
    }
    label.truncate(63 - DB_PREFIX.len() - suffix.len());
    format!("{DB_PREFIX}{label}{suffix}")
}

/// The pid recorded in a database name made here (same boot and PID namespace), if any.
fn pid_of_database(name: &str) -> Option<u32> {
    let mut parts = name.strip_prefix(DB_PREFIX)?.rsplitn(5, '_');
    let random = parts.next()?;
    let counter = parts.next()?;
    let pid = parts.next()?;
    let tag = parts.next()?;
    let _label = parts.next()?;
    let is_hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_hex(random, 8) || counter.parse::<u64>().is_err() || tag != host_tag() {
        return None;
    }
    pid.parse().ok()
}

/// Drops, on a background thread with its own runtime (so that it outlives the calling test),
/// the databases made by test processes of this machine that no longer exist. Best effort:
/// databases still in use are left alone (plain `DROP DATABASE` refuses them).
fn spawn_stale_database_cleanup(admin_url: String) {
    let _ = std::thread::Builder::new()
        .name("drop-stale-test-databases".to_owned())
        .spawn(move || {
            if let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                runtime.block_on(drop_stale_databases(admin_url));
            }
        });
}

async fn drop_stale_databases(admin_url: String) {
    const WORKERS: usize = 4;
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(client) = try_connect(&admin_url).await else {
        return;
    };
    let Ok(rows) = client
        .query("SELECT datname::text FROM pg_database", &[])
        .await
    else {
        return;
    };
    drop(client);
    let mut stale: Vec<(u32, String)> = rows
        .iter()
        .map(|row| row.get::<_, String>(0))
        .filter(|name| {
            pid_of_database(name)
                .is_some_and(|pid| pid != std::process::id() && !process_alive(pid))
        })
        .map(|name| (random_u32(fnv1a(name.as_bytes())), name))
        .collect();
    // A random order, so that concurrent test processes mostly drop different databases.
    stale.sort();
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..WORKERS {
        let names: Vec<String> = stale
            .iter()
            .skip(worker)
            .step_by(WORKERS)
            .map(|(_, name)| name.clone())
            .collect();
        if names.is_empty() {
            continue;
        }
        let url = admin_url.clone();
        workers.spawn(async move {
            let Ok(client) = try_connect(&url).await else {
                return;
            };
            for name in names {
                let sql = format!("DROP DATABASE IF EXISTS {}", quote_ident(&name));
                let _ = client.batch_execute(&sql).await;
            }
        });
    }
    while workers.join_next().await.is_some() {}
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Six hex digits naming this boot and PID namespace (stable across processes).
fn host_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(compute_host_tag)
}

fn compute_host_tag() -> String {
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace = fs::read_link("/proc/self/ns/pid")
        .map(|link| link.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{:06x}",
        fnv1a(format!("{boot}|{namespace}").as_bytes()) & 0xff_ffff
    )
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn random_u32(salt: u64) -> u32 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(salt);
    hasher.write_u128(
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish() as u32
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// ---------------------------------------------------------------------------------------------
// URLs

/// `(scheme://authority, /path, ?query#fragment)`.
fn split_url(url: &str) -> (&str, &str, &str) {
    let scheme_end = ["postgres://", "postgresql://"]
        .iter()
        .find(|scheme| url.starts_with(*scheme))
        .map(|scheme| scheme.len())
        .unwrap_or_else(|| {
            panic!(
                "test support: expected a postgres:// or postgresql:// URL, got {}",
                redact(url)
            )
        });
    let authority_end = scheme_end
        + url[scheme_end..]
            .find(['/', '?', '#'])
            .unwrap_or(url.len() - scheme_end);
    let rest = &url[authority_end..];
    let path_end = rest.find(['?', '#']).unwrap_or(rest.len());
    (&url[..authority_end], &rest[..path_end], &rest[path_end..])
}

/// A URL path or userinfo segment with everything but unreserved characters percent-encoded.
pub fn percent_encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The URL with any password replaced by `***`, for messages.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return "<non-URL connection string>".to_owned();
    };
    let authority_end = scheme_end
        + url[scheme_end..]
            .find(['/', '?', '#'])
            .unwrap_or(url.len() - scheme_end);
    let authority = &url[scheme_end..authority_end];
    match authority.rfind('@') {
        Some(at) if authority[..at].contains(':') => {
            let user_end = authority.find(':').unwrap_or(at);
            format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &authority[..user_end],
                &url[scheme_end + at..]
            )
        }
        _ => url.to_owned(),
    }
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|value| !matches!(value.trim(), "" | "0" | "false"))
}

// ---------------------------------------------------------------------------------------------
// Throwaway cluster

fn cluster_url(port: u16) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/postgres")
}

async fn throwaway_cluster() -> String {
    let uid = current_uid();
    let base = std::env::temp_dir().join(format!("{CLUSTER_DIR_NAME}-{uid}"));
    if let Err(error) = fs::create_dir_all(&base) {
        panic!("test support: cannot create {}: {error}", base.display());
    }
    if let Some(url) = running_cluster(&base).await {
        return url;
    }
    let _lock = DirLock::acquire(base.join("lock")).await;
    if let Some(url) = running_cluster(&base).await {
        return url;
    }
    start_cluster(&base, uid == 0).await
}

/// The recorded cluster, if it answers.
async fn running_cluster(base: &Path) -> Option<String> {
    let port: u16 = fs::read_to_string(base.join("port"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let url = cluster_url(port);
    probe(&url).await.ok().map(|()| url)
}

/// Starts (initializing first if needed) the cluster in `base`. Called with the lock held.
async fn start_cluster(base: &Path, as_root: bool) -> String {
    let bin = find_pg_bin().unwrap_or_else(|| {
        panic!(
            "test support: no PostgreSQL server reachable at {LOCAL_URL}, and initdb/pg_ctl \
             were not found on PATH nor in /usr/lib/postgresql/*/bin; {INSTALL_HINT}"
        )
    });
    let pg_dir = base.join("pg");
    let data = pg_dir.join("data");
    let _ = fs::remove_file(base.join("port"));
    let mut last_error = String::new();

    if data.join("PG_VERSION").exists() {
        // A server may still run from this data dir (the port file was lost, or the machine
        // rebooted and left a stale pid file): reuse it if it answers, otherwise restart it.
        if let Some(port) = postmaster_port(&data) {
            let url = cluster_url(port);
            if probe(&url).await.is_ok() {
                write_port(base, port);
                return url;
            }
        }
        let stop = pg_command(
            as_root,
            &bin.join("pg_ctl"),
            &[
                "-D".as_ref(),
                data.as_os_str(),
                "-m".as_ref(),
                "immediate".as_ref(),
                "-w".as_ref(),
                "stop".as_ref(),
            ],
        );
        let _ = run(stop, base, "pg_ctl-stop");
        for _ in 0..2 {
            match try_start(&bin, base, &pg_dir, as_root).await {
                Ok(url) => return url,
                Err(error) => last_error = error,
            }
        }
        eprintln!(
            "test support: could not restart the cluster in {} ({last_error}); \
             initializing a new one",
            pg_dir.display()
        );
    }

    init_cluster(&bin, base, &pg_dir, as_root);
    for _ in 0..3 {
        match try_start(&bin, base, &pg_dir, as_root).await {
            Ok(url) => return url,
            Err(error) => last_error = error,
        }
    }
    panic!(
        "test support: could not start a throwaway PostgreSQL cluster in {}: {last_error}\n\
         Hint: {INSTALL_HINT}",
        pg_dir.display()
    );
}

fn init_cluster(bin: &Path, base: &Path, pg_dir: &Path, as_root: bool) {
    if pg_dir.exists() {
        if let Err(error) = fs::remove_dir_all(pg_dir) {
            panic!("test support: cannot remove {}: {error}", pg_dir.display());
        }
    }
    let socket_dir = pg_dir.join("socket");
    if let Err(error) = fs::create_dir_all(&socket_dir) {
        panic!(
            "test support: cannot create {}: {error}",
            socket_dir.display()
        );
    }
    if as_root {
        // initdb and the server refuse to run as root: hand the directory to `postgres`.
        let mut chown = Command::new("chown");
        chown.arg("-R").arg("postgres").arg(pg_dir);
        if let Err(error) = run(chown, base, "chown") {
            panic!(
                "test support: running as root, the throwaway cluster must belong to the \
                 `postgres` OS user, but chown failed (does that user exist? \
                 `apt-get install postgresql` creates it): {error}"
            );
        }
    }
    let data = pg_dir.join("data");
    let mut args = vec!["-D".as_ref(), data.as_os_str()];
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
    let initdb = pg_command(as_root, &bin.join("initdb"), &args);
    if let Err(error) = run(initdb, base, "initdb") {
        panic!(
            "test support: initdb failed in {} (when running as root, the `postgres` OS user \
             must be able to reach this directory; set TMPDIR elsewhere if not): {error}\n\
             Hint: {INSTALL_HINT}",
            pg_dir.display()
        );
    }
    let socket = socket_dir.to_string_lossy().replace('\'', "''");
    let settings = format!(
        "\n# added by rustauth-tokio-postgres test support\n{CLUSTER_SETTINGS}\
         unix_socket_directories = '{socket}'\n"
    );
    let conf = data.join("postgresql.conf");
    let appended = OpenOptions::new()
        .append(true)
        .open(&conf)
        .and_then(|mut file| file.write_all(settings.as_bytes()));
    if let Err(error) = appended {
        panic!("test support: cannot write {}: {error}", conf.display());
    }
}

/// Starts the server on a fresh free port and waits until it answers.
async fn try_start(
    bin: &Path,
    base: &Path,
    pg_dir: &Path,
    as_root: bool,
) -> Result<String, String> {
    let port = free_port()?;
    let log = pg_dir.join("server.log");
    let data = pg_dir.join("data");
    let port_option = format!("-p {port}");
    let mut args = vec![
        "-D".as_ref(),
        data.as_os_str(),
        "-l".as_ref(),
        log.as_os_str(),
    ];
    args.extend(["-w", "-t", "60", "-o", &port_option, "start"].map(OsStr::new));
    let start = pg_command(as_root, &bin.join("pg_ctl"), &args);
    if let Err(error) = run(start, base, "pg_ctl-start") {
        return Err(format!("{error}\nserver log tail:\n{}", tail(&log, 20)));
    }
    let url = cluster_url(port);
    let mut last_error = String::new();
    for _ in 0..40 {
        match probe(&url).await {
            Ok(()) => {
                write_port(base, port);
                return Ok(url);
            }
            Err(error) => last_error = error,
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Err(format!(
        "pg_ctl started the server but {url} does not answer: {last_error}\nserver log tail:\n{}",
        tail(&log, 20)
    ))
}

fn write_port(base: &Path, port: u16) {
    // Write then rename, so that readers never see a partial file.
    let temporary = base.join(format!("port.{}", std::process::id()));
    let written = fs::write(&temporary, format!("{port}\n"))
        .and_then(|()| fs::rename(&temporary, base.join("port")));
    if let Err(error) = written {
        panic!(
            "test support: cannot record the port in {}: {error}",
            base.display()
        );
    }
}

/// The port in `postmaster.pid` (fourth line), if the file exists.
fn postmaster_port(data: &Path) -> Option<u16> {
    fs::read_to_string(data.join("postmaster.pid"))
        .ok()?
        .lines()
        .nth(3)?
        .trim()
        .parse()
        .ok()
}

pub fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free port: {error}"))
}

/// The directory holding `initdb` and `pg_ctl`: PATH first, then the usual package locations
/// (highest version first).
pub fn find_pg_bin() -> Option<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        if let Some(dir) = std::env::split_paths(&path).find(|dir| has_tools(dir)) {
            return Some(dir);
        }
    }
    for parent in [
        "/usr/lib/postgresql",
        "/usr/local/pgsql",
        "/opt/homebrew/opt",
    ] {
        let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir(parent)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| {
                let name = entry.file_name().to_string_lossy().into_owned();
                let version = name
                    .trim_start_matches(|c: char| !c.is_ascii_digit())
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|digits| digits.parse().ok())
                    .unwrap_or(0);
                (version, entry.path().join("bin"))
            })
            .filter(|(_, dir)| has_tools(dir))
            .collect();
        candidates.sort();
        if let Some((_, dir)) = candidates.pop() {
            return Some(dir);
        }
    }
    ["/usr/local/pgsql/bin", "/usr/pgsql/bin"]
        .iter()
        .map(PathBuf::from)
        .find(|dir| has_tools(dir))
}

/// A command for a PostgreSQL tool, run as the `postgres` OS user when we are root.
pub fn pg_command(as_root: bool, program: &Path, args: &[&OsStr]) -> Command {
    if !as_root {
        let mut command = Command::new(program);
        command.args(args);
        return command;
    }
    if let Some(runuser) = ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .iter()
        .find(|path| Path::new(path).is_file())
    {
        let mut command = Command::new(runuser);
        command
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args);
        return command;
    }
    // No runuser: `su -c` with one shell-quoted command line (portable across su flavours).
    let line = std::iter::once(program.as_os_str())
        .chain(args.iter().copied())
        .map(|arg| format!("'{}'", arg.to_string_lossy().replace('\'', "'\\''")))
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new("su");
    command.args(["-s", "/bin/sh", "-c", &format!("exec {line}"), "postgres"]);
    command
}

/// Runs `command` in `base` with its output in `base/<what>.out` (a file, not a pipe: a
/// daemon that inherited a pipe would keep us waiting forever).
pub fn run(mut command: Command, base: &Path, what: &str) -> Result<(), String> {
    let out_path = base.join(format!("{what}.out"));
    let out =
        File::create(&out_path).map_err(|error| format!("{}: {error}", out_path.display()))?;
    let err = out.try_clone().map_err(|error| error.to_string())?;
    let status = command
        .current_dir(base)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|error| format!("cannot run {command:?}: {error}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed ({status}):\n{}",
            fs::read_to_string(&out_path).unwrap_or_default()
        ))
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The effective uid, read from `/proc/self` (falling back to `id -u`).
pub fn current_uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    if let Ok(metadata) = fs::metadata("/proc/self") {
        return metadata.uid();
    }
    Command::new("id")
        .arg("-u")
        .output()
        .ok()
        .and_then(|output| String::from_utf8(output.stdout).ok())
        .and_then(|uid| uid.trim().parse().ok())
        .unwrap_or(u32::MAX)
}

/// An exclusive lock between processes: a file created with `create_new`, holding the owner's
/// pid. A lock whose owner has exited (or that is very old) is taken over.
struct DirLock(PathBuf);

impl DirLock {
    async fn acquire(path: PathBuf) -> DirLock {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            match OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(mut file) => {
                    let _ = writeln!(file, "{}", std::process::id());
                    return DirLock(path);
                }
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                    if lock_is_stale(&path) {
                        // Rename first: only one of several racing processes wins it.
                        let grave = path.with_extension(format!("stale.{}", std::process::id()));
                        if fs::rename(&path, &grave).is_ok() {
                            let _ = fs::remove_file(&grave);
                        }
                        continue;
                    }
                    if Instant::now() > deadline {
                        panic!(
                            "test support: {} is still locked after 180 s; \
                             remove it if no test is running",
                            path.display()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("test support: cannot create {}: {error}", path.display()),
            }
        }
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

fn lock_is_stale(path: &Path) -> bool {
    let Ok(metadata) = fs::metadata(path) else {
        return false;
    };
    let age = metadata
        .modified()
        .ok()
        .and_then(|modified| modified.elapsed().ok())
        .unwrap_or_default();
    let owner = fs::read_to_string(path)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok());
    match owner {
        Some(pid) if Path::new("/proc/self").exists() => !process_alive(pid),
        Some(_) => age > Duration::from_secs(600),
        // The owner died between creating and writing the file.
        None => age > Duration::from_secs(10),
    }
}
