//! Finding a PostgreSQL server to run the quick start on — not part of using the adapter. In
//! your app, the server's URL comes from your configuration; this helper only makes
//! `cargo run --example quickstart` work on a machine with nothing set up.
//!
//! In order: `DATABASE_URL` (used as it is); else a server on 127.0.0.1:5432 as user
//! `postgres`, on a fresh database dropped when the returned [`LocalServer`] is dropped; else
//! a throwaway cluster from the system's `initdb` and `pg_ctl` (on `PATH` or under
//! `/usr/lib/postgresql/<version>/bin`) in a temporary directory, listening on a Unix socket
//! only, stopped and removed on drop. When running as root, `initdb` and `pg_ctl` run as the
//! `postgres` OS user (they refuse root).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tokio_postgres::NoTls;

/// A database URL, and what to remove when done.
pub struct LocalServer {
    /// The URL of the database to use.
    pub url: String,
    /// A database created for this run on a shared server: (admin URL, name).
    database: Option<(String, String)>,
    cluster: Option<Cluster>,
}

struct Cluster {
    dir: PathBuf,
    pg_ctl: PathBuf,
    as_postgres: bool,
}

impl LocalServer {
    /// Finds or starts a server (see the module docs).
    pub async fn find_or_start() -> Result<Self, Box<dyn Error>> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            return Ok(Self {
                url,
                database: None,
                cluster: None,
            });
        }
        let admin = "postgres://postgres@127.0.0.1:5432/postgres?connect_timeout=2";
        if let Ok((client, connection)) = tokio_postgres::connect(admin, NoTls).await {
            tokio::spawn(connection);
            let name = format!("rustauth_quickstart_{}", std::process::id());
            client
                .batch_execute(&format!("CREATE DATABASE \"{name}\""))
                .await?;
            return Ok(Self {
                url: format!("postgres://postgres@127.0.0.1:5432/{name}"),
                database: Some((admin.to_owned(), name)),
                cluster: None,
            });
        }
        Self::start().await
    }

    async fn start() -> Result<Self, Box<dyn Error>> {
        let bin = postgres_bin().ok_or(
            "no PostgreSQL server answers at 127.0.0.1:5432 and no initdb/pg_ctl was found: \
             install PostgreSQL or set DATABASE_URL",
        )?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("rustauth-quickstart-{}", std::process::id()));
        let data = dir.join("data");
        std::fs::create_dir_all(&dir)?;
        let server = Self {
            url: format!("postgres://postgres@{}/postgres", encode(&dir)),
            database: None,
            cluster: Some(Cluster {
                dir: dir.clone(),
                pg_ctl: bin.join("pg_ctl"),
                as_postgres,
            }),
        };
        if as_postgres {
            run(Command::new("chown").args(["-R", "postgres"]).arg(&dir))?;
        }
        run(pg(as_postgres, &bin.join("initdb"))
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "-D"])
            .arg(&data))?;
        let options = format!("-c listen_addresses='' -k {}", dir.display());
        run(pg(as_postgres, &bin.join("pg_ctl"))
            .args(["-w", "-D"])
            .arg(&data)
            .args(["-o", &options, "-l"])
            .arg(dir.join("log"))
            .arg("start"))?;
        for _ in 0..50 {
            if tokio_postgres::connect(&server.url, NoTls).await.is_ok() {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err("the throwaway cluster started but does not answer".into())
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.database.take() {
            // Drop runs outside any async context we could await in: a thread of its own.
            let dropped = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let (client, connection) = tokio_postgres::connect(&admin, NoTls).await?;
                    tokio::spawn(connection);
                    client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await
                })?;
                Ok::<(), Box<dyn Error + Send + Sync>>(())
            });
            let _ = dropped.join();
        }
        if let Some(cluster) = &self.cluster {
            let _ = run(pg(cluster.as_postgres, &cluster.pg_ctl)
                .args(["-w", "-m", "immediate", "-D"])
                .arg(cluster.dir.join("data"))
                .arg("stop"));
            let _ = std::fs::remove_dir_all(&cluster.dir);
        }
    }
}

/// The directory holding `initdb` and `pg_ctl`.
fn postgres_bin() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut installed = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path().join("bin"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    installed.sort();
    installed.reverse(); // the newest version first
    on_path
        .into_iter()
        .chain(installed)
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|output| output.stdout.trim_ascii() == b"0")
        .unwrap_or(false)
}

/// `program`, run as the `postgres` OS user when `as_postgres`.
fn pg(as_postgres: bool, program: &Path) -> Command {
    if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

fn run(command: &mut Command) -> Result<(), Box<dyn Error>> {
    let output = command.output()?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    )
    .into())
}

/// A socket directory as the host of a URL (`/` percent-encoded).
fn encode(dir: &Path) -> String {
    dir.display().to_string().replace('/', "%2F")
}
