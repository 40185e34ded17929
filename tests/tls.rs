//! TLS from the URL (`sslmode`, `sslrootcert`) against real servers: one with `ssl = on`, a
//! certificate for `localhost` only signed by a CA made here, and a `pg_hba.conf` that accepts
//! TCP connections over TLS only; and one without TLS.
//!
//! Whether a backend is encrypted is read from `pg_stat_ssl` over the cluster's Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Count, Create, DbAdapter, DbValue, FindOne, Where,
};
use rustauth_core::error::RustAuthError;
use rustauth_tokio_postgres::{TokioPostgresAdapter, TokioPostgresConnection};
use support::cluster::{write_server_file, Cluster, SharedCluster};

/// The TLS-only server (shared by the tests of this file that run at the same time).
static TLS_SERVER: SharedCluster = SharedCluster::new();
/// The server without TLS.
static PLAIN_SERVER: SharedCluster = SharedCluster::new();

/// A password that must never show up in an error.
const PASSWORD: &str = "s3cr3t-tls-pa55";
/// Generous bound proving that a call does not hang (never a performance assertion).
const NO_HANG: Duration = Duration::from_secs(30);

/// A CA, and a server certificate for `localhost` (DNS name only, no IP address) signed by it.
struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
}

fn make_ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.distinguished_name.push(DnType::CommonName, name);
    let certificate = params.self_signed(&key).expect("self-signed CA");
    (certificate, key)
}

fn make_pki() -> Pki {
    let (ca, ca_key) = make_ca("rustauth test CA");
    let server_key = KeyPair::generate().expect("server key");
    let mut params =
        CertificateParams::new(vec!["localhost".to_owned()]).expect("server cert params");
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let server = params
        .signed_by(&server_key, &ca, &ca_key)
        .expect("server certificate");
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
    }
}

/// Client-side files next to the cluster: the right CA, another CA, and junk.
fn good_root(cluster: &Cluster) -> PathBuf {
    cluster.data_dir.join("client-good-ca.pem")
}
fn other_root(cluster: &Cluster) -> PathBuf {
    cluster.data_dir.join("client-other-ca.pem")
}
fn junk_root(cluster: &Cluster) -> PathBuf {
    cluster.data_dir.join("client-junk.pem")
}

async fn tls_server() -> Arc<Cluster> {
    TLS_SERVER
        .get(|| {
            Cluster::start(
                "tls",
                |data: &Path| {
                    let pki = make_pki();
                    write_server_file(
                        &data.join("server.crt"),
                        pki.server_cert_pem.as_bytes(),
                        0o644,
                    );
                    write_server_file(
                        &data.join("server.key"),
                        pki.server_key_pem.as_bytes(),
                        0o600,
                    );
                    write_server_file(
                        &data.join("client-good-ca.pem"),
                        pki.ca_pem.as_bytes(),
                        0o644,
                    );
                    let (other, _) = make_ca("some other CA");
                    write_server_file(
                        &data.join("client-other-ca.pem"),
                        other.pem().as_bytes(),
                        0o644,
                    );
                    write_server_file(
                        &data.join("client-junk.pem"),
                        b"this is not a certificate\n",
                        0o644,
                    );
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                        .to_owned()
                },
                // One password role (for channel binding), everyone else trusted; TLS only.
                "hostssl all scram_user 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
        })
        .await
}

async fn plain_server() -> Arc<Cluster> {
    PLAIN_SERVER
        .get(|| Cluster::start("plain", |_: &Path| "ssl = off\n".to_owned(), ""))
        .await
}

fn schema() -> rustauth_core::db::DbSchema {
    auth_schema(AuthSchemaOptions::default())
}

/// Installs the schema, writes a user and reads it back through a typed (hot) and a generic
/// call: proof that the connection carries real traffic.
async fn exercise(adapter: &TokioPostgresAdapter, email: &str) {
    adapter
        .create_schema(&schema(), None)
        .await
        .expect("create_schema");
    adapter
        .create(
            Create::new("user")
                .data("id", DbValue::String(format!("id-{email}")))
                .data("name", DbValue::String("Ada".to_owned()))
                .data("email", DbValue::String(email.to_owned()))
                .data("email_verified", DbValue::Boolean(true))
                .data("image", DbValue::Null)
                .data(
                    "created_at",
                    DbValue::Timestamp(time::OffsetDateTime::UNIX_EPOCH),
                )
                .data(
                    "updated_at",
                    DbValue::Timestamp(time::OffsetDateTime::UNIX_EPOCH),
                ),
        )
        .await
        .expect("create user");
    let found = adapter
        .find_one(
            FindOne::new("user").where_clause(Where::new("email", DbValue::String(email.into()))),
        )
        .await
        .expect("find user")
        .expect("the user exists");
    assert_eq!(found.get("email"), Some(&DbValue::String(email.to_owned())));
    assert_eq!(adapter.count(Count::new("user")).await.expect("count"), 1);
}

/// `pg_stat_ssl.ssl` of every backend connected to `db`.
async fn ssl_of_backends(cluster: &Cluster, db: &str) -> Vec<bool> {
    cluster
        .admin()
        .await
        .query(
            "SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.datname = $1 ORDER BY a.pid",
            &[&db],
        )
        .await
        .expect("read pg_stat_ssl")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn connect(url: &str) -> Result<TokioPostgresAdapter, RustAuthError> {
    tokio::time::timeout(NO_HANG, TokioPostgresAdapter::connect(url))
        .await
        .expect("connecting must not hang")
}

/// Asserts `result` failed with an adapter error containing every needle, and no password.
fn assert_connect_error(result: Result<TokioPostgresAdapter, RustAuthError>, needles: &[&str]) {
    let error = result.expect_err("the connection must be refused");
    assert!(matches!(error, RustAuthError::Adapter(_)), "{error:?}");
    let text = error.to_string();
    for needle in needles {
        assert!(text.contains(needle), "`{needle}` missing from: {text}");
    }
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!format!("{error:?}").contains(PASSWORD), "{error:?}");
}

// ---------------------------------------------------------------------------------------------
// A server that offers TLS (and demands it on TCP).

#[tokio::test]
async fn require_encrypts_the_connection_and_the_adapter_works_over_it() {
    let cluster = tls_server().await;
    let db = cluster.create_database("require").await;
    let adapter = connect(&format!("{}?sslmode=require", cluster.url(&db)))
        .await
        .expect("sslmode=require connects without checking the certificate");
    exercise(&adapter, "require@example.com").await;
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true]);
}

#[tokio::test]
async fn prefer_is_the_default_and_uses_tls_when_the_server_offers_it() {
    let cluster = tls_server().await;
    for (label, suffix) in [("default", ""), ("prefer", "?sslmode=prefer")] {
        let db = cluster.create_database(label).await;
        let adapter = connect(&format!("{}{suffix}", cluster.url(&db)))
            .await
            .unwrap_or_else(|error| panic!("{label}: {error}"));
        exercise(&adapter, &format!("{label}@example.com")).await;
        assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true], "{label}");
    }
}

#[tokio::test]
async fn verify_full_with_the_right_root_connects() {
    let cluster = tls_server().await;
    let db = cluster.create_database("verify_full").await;
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url_on_host("localhost", &db),
        good_root(&cluster).display()
    );
    let adapter = connect(&url).await.expect("verify-full with the CA");
    exercise(&adapter, "full@example.com").await;
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true]);

    // The same through a libpq key/value string.
    let key_value = format!(
        "host=localhost port={} user=postgres dbname={db} sslmode=verify-full sslrootcert={}",
        cluster.port,
        good_root(&cluster).display()
    );
    let connection = TokioPostgresConnection::connect(&key_value)
        .await
        .expect("key/value verify-full");
    let second = TokioPostgresAdapter::with_connection(connection, schema());
    assert_eq!(second.count(Count::new("user")).await.expect("count"), 1);
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true, true]);
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_verification_clearly() {
    let cluster = tls_server().await;
    let db = cluster.create_database("wrong_root").await;
    let base = cluster.url_on_host("localhost", &db).replacen(
        "postgres@",
        &format!("postgres:{PASSWORD}@"),
        1,
    );
    let other = other_root(&cluster);
    for mode in ["verify-full", "verify-ca"] {
        let url = format!("{base}?sslmode={mode}&sslrootcert={}", other.display());
        assert_connect_error(
            connect(&url).await,
            &[
                "TLS certificate verification failed",
                &format!("sslmode={mode}"),
                "does not lead to a root of sslrootcert",
            ],
        );
    }
    // libpq: `require` with a root certificate verifies the chain like `verify-ca`.
    let url = format!("{base}?sslmode=require&sslrootcert={}", other.display());
    assert_connect_error(
        connect(&url).await,
        &["TLS certificate verification failed", "sslmode=require"],
    );
    let url = format!(
        "{base}?sslmode=require&sslrootcert={}",
        good_root(&cluster).display()
    );
    let adapter = connect(&url)
        .await
        .expect("require with the right root connects");
    exercise(&adapter, "require-root@example.com").await;
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true]);
}

#[tokio::test]
async fn verify_full_checks_the_host_name_and_verify_ca_does_not() {
    let cluster = tls_server().await;
    let db = cluster.create_database("host_name").await;
    let root = good_root(&cluster);
    // The certificate names `localhost` only; 127.0.0.1 is not in it.
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url_on_host("127.0.0.1", &db),
        root.display()
    );
    assert_connect_error(
        connect(&url).await,
        &[
            "TLS certificate verification failed",
            "sslmode=verify-full",
            "127.0.0.1",
            "does not name the host",
        ],
    );
    let url = format!(
        "{}?sslmode=verify-ca&sslrootcert={}",
        cluster.url_on_host("127.0.0.1", &db),
        root.display()
    );
    let adapter = connect(&url)
        .await
        .expect("verify-ca ignores the host name");
    exercise(&adapter, "ca@example.com").await;
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true]);
}

#[tokio::test]
async fn disable_against_a_server_that_demands_tls_fails_clearly() {
    let cluster = tls_server().await;
    let db = cluster.create_database("disable").await;
    let url = format!(
        "{}?sslmode=disable",
        cluster
            .url(&db)
            .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
    );
    assert_connect_error(
        connect(&url).await,
        &["SQLSTATE 28000", "no encryption", "sslmode=disable"],
    );
    assert!(ssl_of_backends(&cluster, &db).await.is_empty());
}

#[tokio::test]
async fn system_roots_are_mozillas_and_imply_verify_full() {
    let cluster = tls_server().await;
    let db = cluster.create_database("system_roots").await;
    let base = cluster.url_on_host("localhost", &db);
    // `sslrootcert=system` alone means verify-full against the public roots, which do not
    // include the CA made here.
    assert_connect_error(
        connect(&format!("{base}?sslrootcert=system")).await,
        &[
            "TLS certificate verification failed",
            "sslmode=verify-full",
            "system root store",
        ],
    );
    // Weaker modes are refused with it, as libpq does.
    for mode in ["disable", "prefer", "require", "verify-ca"] {
        let error =
            TokioPostgresConnection::connect(&format!("{base}?sslmode={mode}&sslrootcert=system"))
                .await
                .expect_err("weak sslmode with sslrootcert=system");
        let text = error.to_string();
        assert!(
            text.contains(&format!("weak sslmode `{mode}`")) && text.contains("verify-full"),
            "{text}"
        );
    }
    // verify-full without sslrootcert uses the same public roots.
    assert_connect_error(
        connect(&format!("{base}?sslmode=verify-full")).await,
        &["TLS certificate verification failed", "system root store"],
    );
}

#[tokio::test]
async fn unreadable_root_files_are_reported() {
    let cluster = tls_server().await;
    let db = cluster.create_database("bad_root").await;
    let base = cluster.url_on_host("localhost", &db);
    let missing = cluster.data_dir.join("no-such-ca.pem");
    assert_connect_error(
        connect(&format!(
            "{base}?sslmode=verify-full&sslrootcert={}",
            missing.display()
        ))
        .await,
        &["cannot read the root certificates", "no-such-ca.pem"],
    );
    assert_connect_error(
        connect(&format!(
            "{base}?sslmode=verify-ca&sslrootcert={}",
            junk_root(&cluster).display()
        ))
        .await,
        &["cannot read the root certificates", "no PEM certificate"],
    );
}

#[tokio::test]
async fn scram_channel_binding_works_over_rustls() {
    let cluster = tls_server().await;
    let db = cluster.create_database("scram").await;
    let admin = cluster.admin().await;
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE scram_user LOGIN PASSWORD '{PASSWORD}'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             GRANT ALL ON DATABASE {db} TO scram_user; \
             ALTER DATABASE {db} OWNER TO scram_user"
        ))
        .await
        .expect("create the password role");
    let url = format!(
        "postgres://scram_user:{PASSWORD}@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}\
         &channel_binding=require",
        cluster.port,
        good_root(&cluster).display()
    );
    let adapter = connect(&url)
        .await
        .expect("SCRAM-SHA-256-PLUS with tls-server-end-point binding");
    exercise(&adapter, "scram@example.com").await;
    let wrong = url.replace(PASSWORD, "not-the-password");
    let error = connect(&wrong).await.expect_err("wrong password");
    assert!(error.to_string().contains("28P01"), "{error}");
}

#[tokio::test]
async fn a_lost_tls_connection_reconnects_over_tls() {
    let cluster = tls_server().await;
    let db = cluster.create_database("tls_reconnect").await;
    let url = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url_on_host("localhost", &db),
        good_root(&cluster).display()
    );
    let adapter = connect(&url).await.expect("connect");
    exercise(&adapter, "again@example.com").await;
    assert_eq!(cluster.terminate_backends(&db).await, 1);
    // The first call may still see the old connection fail; a later one reconnects.
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        let outcome = tokio::time::timeout(NO_HANG, adapter.count(Count::new("user")))
            .await
            .expect("no hang");
        let done = outcome.is_ok();
        outcomes.push(outcome);
        if done {
            break;
        }
    }
    assert!(
        matches!(outcomes.last(), Some(Ok(1))),
        "a call after the loss must reconnect: {outcomes:?}"
    );
    assert!(outcomes.len() <= 2, "{outcomes:?}");
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true]);
}

#[tokio::test]
async fn unix_sockets_ignore_sslmode_as_in_libpq() {
    let cluster = tls_server().await;
    let db = cluster.create_database("socket").await;
    let key_value = format!(
        "host={} port={} user=postgres dbname={db} sslmode=require",
        cluster.socket_dir.display(),
        cluster.port
    );
    let connection = TokioPostgresConnection::connect(&key_value)
        .await
        .expect("a socket connection with sslmode=require");
    let adapter = TokioPostgresAdapter::with_connection(connection, schema());
    exercise(&adapter, "socket@example.com").await;
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![false]);
}

// ---------------------------------------------------------------------------------------------
// A server without TLS.

#[tokio::test]
async fn prefer_falls_back_to_plain_text_when_the_server_has_no_tls() {
    let cluster = plain_server().await;
    for (label, suffix) in [("plain_default", ""), ("plain_prefer", "?sslmode=prefer")] {
        let db = cluster.create_database(label).await;
        let adapter = connect(&format!("{}{suffix}", cluster.url(&db)))
            .await
            .unwrap_or_else(|error| panic!("{label}: {error}"));
        exercise(&adapter, &format!("{label}@example.com")).await;
        assert_eq!(ssl_of_backends(&cluster, &db).await, vec![false], "{label}");
    }
}

#[tokio::test]
async fn tls_modes_fail_clearly_when_the_server_has_no_tls() {
    let cluster = plain_server().await;
    let db = cluster.create_database("plain_require").await;
    let base = cluster.url_on_host("localhost", &db).replacen(
        "postgres@",
        &format!("postgres:{PASSWORD}@"),
        1,
    );
    for mode in ["require", "verify-ca", "verify-full"] {
        assert_connect_error(
            connect(&format!("{base}?sslmode={mode}")).await,
            &[&format!(
                "the server does not support TLS but sslmode={mode}"
            )],
        );
    }
    let adapter = connect(&format!("{base}?sslmode=disable"))
        .await
        .expect("disable connects in plain text");
    exercise(&adapter, "plain@example.com").await;
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![false]);
}
