//! TLS from the URL (`sslmode`, `sslrootcert`) against real servers: one with `ssl = on`, a
//! certificate for `localhost` only signed by a CA made here, and a `pg_hba.conf` that accepts
//! TCP connections over TLS only; and one without TLS.
//!
//! Whether a backend is encrypted is read from `pg_stat_ssl` over the cluster's Unix socket.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;
use crate::support_proxy;

use std::net::SocketAddr;
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
use support_proxy::RefuseTlsProxy;

/// The TLS-only server (shared by the tests of this file that run at the same time).
static TLS_SERVER: SharedCluster = SharedCluster::new();
/// The server without TLS.
static PLAIN_SERVER: SharedCluster = SharedCluster::new();
/// The TLS-only server that also demands a client certificate signed by its CA.
static CLIENT_CERT_SERVER: SharedCluster = SharedCluster::new();

/// A password that must never show up in an error.
const PASSWORD: &str = "s3cr3t-tls-pa55";
/// Generous bound proving that a call does not hang (never a performance assertion).
const NO_HANG: Duration = Duration::from_secs(30);

/// A CA, and a server certificate for `localhost` (DNS name only, no IP address) signed by it;
/// a client certificate for the role `postgres` signed by it, and one signed by another CA.
struct Pki {
    ca_pem: String,
    server_cert_pem: String,
    server_key_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    rogue_client_cert_pem: String,
    rogue_client_key_pem: String,
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
    let (client_cert_pem, client_key_pem) = make_client_cert(&ca, &ca_key);
    let (rogue_ca, rogue_ca_key) = make_ca("rogue client CA");
    let (rogue_client_cert_pem, rogue_client_key_pem) = make_client_cert(&rogue_ca, &rogue_ca_key);
    Pki {
        ca_pem: ca.pem(),
        server_cert_pem: server.pem(),
        server_key_pem: server_key.serialize_pem(),
        client_cert_pem,
        client_key_pem,
        rogue_client_cert_pem,
        rogue_client_key_pem,
    }
}

/// A client certificate for the role `postgres` (its CN, which `clientcert=verify-full`
/// compares with the user name) signed by `ca`, and its key, in PEM.
fn make_client_cert(ca: &rcgen::Certificate, ca_key: &KeyPair) -> (String, String) {
    let key = KeyPair::generate().expect("client key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("client cert params");
    params
        .distinguished_name
        .push(DnType::CommonName, "postgres");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let certificate = params
        .signed_by(&key, ca, ca_key)
        .expect("client certificate");
    (certificate.pem(), key.serialize_pem())
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
                // Password roles, everyone else trusted; TLS only.
                "hostssl all scram_user,scram_spaced 127.0.0.1/32 scram-sha-256\n\
                 hostssl all all 127.0.0.1/32 trust\n\
                 hostnossl all all 127.0.0.1/32 reject\n",
            )
        })
        .await
}

fn client_cert(cluster: &Cluster) -> (PathBuf, PathBuf) {
    (
        cluster.data_dir.join("client-cert.pem"),
        cluster.data_dir.join("client-key.pem"),
    )
}
fn rogue_client_cert(cluster: &Cluster) -> (PathBuf, PathBuf) {
    (
        cluster.data_dir.join("rogue-cert.pem"),
        cluster.data_dir.join("rogue-key.pem"),
    )
}

async fn client_cert_server() -> Arc<Cluster> {
    CLIENT_CERT_SERVER
        .get(|| {
            Cluster::start(
                "clientcert",
                |data: &Path| {
                    let pki = make_pki();
                    let files: [(&str, &str, u32); 8] = [
                        ("server.crt", &pki.server_cert_pem, 0o644),
                        ("server.key", &pki.server_key_pem, 0o600),
                        ("root.crt", &pki.ca_pem, 0o644),
                        ("client-good-ca.pem", &pki.ca_pem, 0o644),
                        ("client-cert.pem", &pki.client_cert_pem, 0o644),
                        ("client-key.pem", &pki.client_key_pem, 0o600),
                        ("rogue-cert.pem", &pki.rogue_client_cert_pem, 0o644),
                        ("rogue-key.pem", &pki.rogue_client_key_pem, 0o600),
                    ];
                    for (name, contents, mode) in files {
                        write_server_file(&data.join(name), contents.as_bytes(), mode);
                    }
                    write_server_file(
                        &data.join("client-junk.pem"),
                        b"this is not a certificate\n",
                        0o644,
                    );
                    "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n\
                     ssl_ca_file = 'root.crt'\n"
                        .to_owned()
                },
                // TLS with a client certificate whose CN is the user name, or nothing.
                "hostssl all all 127.0.0.1/32 trust clientcert=verify-full\n\
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

/// A string with a host address but no host name: the server offers TLS, and tokio-postgres
/// refuses the handshake itself (there is no name to check a certificate against). That is
/// not the server refusing TLS, and the error must not say it is.
#[tokio::test]
async fn a_host_address_without_a_host_name_is_not_called_a_server_without_tls() {
    let cluster = tls_server().await;
    let db = cluster.create_database("hostaddr_only").await;
    let string = format!(
        "hostaddr=127.0.0.1 port={} user=postgres password={PASSWORD} dbname={db} \
         sslmode=require",
        cluster.port
    );
    let error = connect(&string)
        .await
        .expect_err("no host name: the TLS handshake cannot start");
    let text = error.to_string();
    assert!(!text.contains("does not support TLS"), "{text}");
    assert!(text.contains("no hostname provided"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Issue #10: the crate's parameters are read with tokio-postgres' grammar, so TLS settings
// are never dropped, whatever the password holds.

/// Passwords that break a naive split of a connection string.
const HOSTILE_PASSWORDS: &[&str] = &[
    "pa?ss",
    "pa?ss&sslmode=disable",
    "x=y&sslmode=prefer",
    "a  b ' sslmode=disable",
    "ünï?&=\\%/:",
    "%sslmode=disable",
];

/// `password` for a URL's credentials: raw (`?`, `&`, `=`, `/`, `:` included, as tokio-postgres
/// accepts them there), except `%` and `@`, which must be percent-encoded.
fn url_password(password: &str) -> String {
    password.replace('%', "%25").replace('@', "%40")
}

/// `value` quoted for a key/value string, with `\'` and `\\` escapes.
fn quoted(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The three TLS modes that must never fall back to plain text, for `password`, in both forms
/// (the key/value one with spaces around `=`).
fn strict_strings(port: u16, db: &str, password: &str) -> Vec<(String, &'static str)> {
    ["require", "verify-ca", "verify-full"]
        .into_iter()
        .flat_map(|mode| {
            [
                (
                    format!(
                        "postgres://postgres:{}@127.0.0.1:{port}/{db}?sslmode={mode}",
                        url_password(password)
                    ),
                    mode,
                ),
                (
                    format!(
                        "host=127.0.0.1 port={port} user=postgres password = {} dbname={db} \
                         sslmode = {mode}",
                        quoted(password)
                    ),
                    mode,
                ),
            ]
        })
        .collect()
}

async fn downgrading_proxy(cluster: &Cluster) -> RefuseTlsProxy {
    RefuseTlsProxy::start(SocketAddr::from(([127, 0, 0, 1], cluster.port))).await
}

#[tokio::test]
async fn a_downgrading_proxy_never_gets_a_plain_text_connection() {
    let cluster = plain_server().await;
    let db = cluster.create_database("downgrade").await;
    let proxy = downgrading_proxy(&cluster).await;
    let mut attempts = 0;
    for password in HOSTILE_PASSWORDS {
        for (string, mode) in strict_strings(proxy.port(), &db, password) {
            let error = TokioPostgresConnection::connect(&string)
                .await
                .expect_err("a strict sslmode must not connect without TLS");
            let text = error.to_string();
            assert!(
                text.contains(&format!(
                    "the server does not support TLS but sslmode={mode}"
                )),
                "{string:?}: {text}"
            );
            assert!(!text.contains(password), "{text}");
            attempts += 1;
        }
    }
    assert_eq!(proxy.ssl_requests(), attempts);
    assert_eq!(
        proxy.plain_startups(),
        0,
        "a strict sslmode sent its startup packet in plain text"
    );
    assert!(ssl_of_backends(&cluster, &db).await.is_empty());

    // The same strings with `prefer` do go through the proxy (in plain text): it relays.
    for password in HOSTILE_PASSWORDS {
        for (string, _) in strict_strings(proxy.port(), &db, password)
            .into_iter()
            .filter(|(_, mode)| *mode == "require")
        {
            let string = string.replace("sslmode=require", "sslmode=prefer");
            let string = string.replace("sslmode = require", "sslmode = prefer");
            let connection = TokioPostgresConnection::connect(&string)
                .await
                .unwrap_or_else(|error| panic!("{string:?}: {error}"));
            drop(connection);
        }
    }
    assert_eq!(proxy.plain_startups(), 2 * HOSTILE_PASSWORDS.len() as u64);
}

/// The connection string `string(port, database, sslmode)` keeps the sslmode it asks for:
/// `require` through a proxy that refuses TLS is refused with nothing sent in plain text;
/// `disable` against a server that offers TLS and refuses plain text on TCP is not encrypted
/// (the error carries `disable_error`); `require` there connects encrypted.
async fn the_string_keeps_its_sslmode(
    label: &str,
    string: impl Fn(u16, &str, &str) -> String,
    disable_error: &[&str],
) {
    let plain = plain_server().await;
    let plain_db = plain.create_database(&format!("{label}_plain")).await;
    let proxy = downgrading_proxy(&plain).await;
    assert_connect_error(
        connect(&string(proxy.port(), &plain_db, "require")).await,
        &["the server does not support TLS but sslmode=require"],
    );
    assert_eq!((proxy.ssl_requests(), proxy.plain_startups()), (1, 0));

    let cluster = tls_server().await;
    let db = cluster.create_database(label).await;
    assert_connect_error(
        connect(&string(cluster.port, &db, "disable")).await,
        disable_error,
    );
    let adapter = connect(&string(cluster.port, &db, "require"))
        .await
        .unwrap_or_else(|error| panic!("{label}: require: {error}"));
    exercise(&adapter, &format!("{label}@example.com")).await;
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true]);
}

#[tokio::test]
async fn a_raw_question_mark_in_the_password_keeps_sslmode() {
    // Before the fix, the `?` in the password ended the path and sslmode was lost.
    the_string_keeps_its_sslmode(
        "question_mark",
        |port, db, mode| format!("postgres://postgres:pa?ss@127.0.0.1:{port}/{db}?sslmode={mode}"),
        &["SQLSTATE 28000", "no encryption", "sslmode=disable"],
    )
    .await;
}

#[tokio::test]
async fn spaces_around_equals_keep_sslmode() {
    the_string_keeps_its_sslmode(
        "spaced_equals",
        |port, db, mode| {
            // One and two spaces on each side.
            let equals = if mode == "require" { "  =  " } else { " = " };
            format!("host=127.0.0.1 port={port} user=postgres dbname={db} sslmode{equals}{mode}")
        },
        &["SQLSTATE 28000", "no encryption"],
    )
    .await;
}

#[tokio::test]
async fn a_quoted_password_reaches_the_server_with_every_space() {
    let cluster = tls_server().await;
    let db = cluster.create_database("spaced_password").await;
    cluster
        .admin()
        .await
        .batch_execute(&format!(
            "DO $$ BEGIN CREATE ROLE scram_spaced LOGIN PASSWORD 'a  b'; \
             EXCEPTION WHEN duplicate_object THEN NULL; END $$; \
             GRANT ALL ON DATABASE {db} TO scram_spaced; \
             ALTER DATABASE {db} OWNER TO scram_spaced"
        ))
        .await
        .expect("create the role");
    let base = format!(
        "host=localhost port={} user=scram_spaced dbname={db} sslmode=verify-full sslrootcert='{}'",
        cluster.port,
        good_root(&cluster).display()
    );
    let connection = TokioPostgresConnection::connect(&format!("{base} password='a  b'"))
        .await
        .expect("the password with both spaces");
    let adapter = TokioPostgresAdapter::with_connection(connection, schema());
    exercise(&adapter, "spaced@example.com").await;
    // One space is another password.
    let error = TokioPostgresConnection::connect(&format!("{base} password='a b'"))
        .await
        .expect_err("a different password");
    assert!(error.to_string().contains("28P01"), "{error}");
    // The URL form, percent-encoded.
    let url = format!(
        "postgres://scram_spaced:a%20%20b@localhost:{}/{db}?sslmode=verify-full&sslrootcert={}",
        cluster.port,
        good_root(&cluster).display()
    );
    let second = connect(&url).await.expect("URL with the spaced password");
    assert_eq!(second.count(Count::new("user")).await.expect("count"), 1);
    assert_eq!(ssl_of_backends(&cluster, &db).await, vec![true, true]);
}

// ---------------------------------------------------------------------------------------------
// Client certificates (`sslcert` + `sslkey`) on a server with `clientcert=verify-full`.

/// The client DNs of the TLS backends connected to `db`.
async fn client_dns(cluster: &Cluster, db: &str) -> Vec<Option<String>> {
    cluster
        .admin()
        .await
        .query(
            "SELECT s.client_dn FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
             WHERE a.datname = $1 ORDER BY a.pid",
            &[&db],
        )
        .await
        .expect("read pg_stat_ssl")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

#[tokio::test]
async fn client_certificates_signed_by_the_servers_ca_are_required_and_accepted() {
    let cluster = client_cert_server().await;
    let db = cluster.create_database("client_cert").await;
    let base = cluster.url_on_host("localhost", &db);
    let root = good_root(&cluster);
    let (cert, key) = client_cert(&cluster);
    let url = format!(
        "{base}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        root.display(),
        cert.display(),
        key.display()
    );
    let adapter = connect(&url).await.expect("the right client certificate");
    exercise(&adapter, "client-cert@example.com").await;
    // The key/value form, with `require`.
    let key_value = format!(
        "host=127.0.0.1 port={} user=postgres dbname={db} sslmode=require sslcert = '{}' \
         sslkey='{}'",
        cluster.port,
        cert.display(),
        key.display()
    );
    let connection = TokioPostgresConnection::connect(&key_value)
        .await
        .expect("key/value with the right client certificate");
    let second = TokioPostgresAdapter::with_connection(connection, schema());
    assert_eq!(second.count(Count::new("user")).await.expect("count"), 1);
    let cn = Some("/CN=postgres".to_owned());
    assert_eq!(
        client_dns(&cluster, &db).await,
        vec![cn.clone(), cn.clone()]
    );

    // Without a certificate: the server refuses.
    let without = format!("{base}?sslmode=verify-full&sslrootcert={}", root.display());
    assert_connect_error(connect(&without).await, &["28000", "certificate"]);
    // With one the server's CA did not sign: the handshake fails.
    let (rogue_cert, rogue_key) = rogue_client_cert(&cluster);
    let rogue = format!(
        "{base}?sslmode=verify-full&sslrootcert={}&sslcert={}&sslkey={}",
        root.display(),
        rogue_cert.display(),
        rogue_key.display()
    );
    assert_connect_error(connect(&rogue).await, &["tokio-postgres error"]);
    assert_eq!(client_dns(&cluster, &db).await, vec![cn.clone(), cn]);
}

#[tokio::test]
async fn unusable_client_certificates_and_keys_are_reported_without_their_contents() {
    let cluster = client_cert_server().await;
    let db = cluster.create_database("bad_client_cert").await;
    let base = format!(
        "{}?sslmode=verify-full&sslrootcert={}",
        cluster.url_on_host("localhost", &db),
        good_root(&cluster).display()
    );
    let (cert, key) = client_cert(&cluster);
    let (_, rogue_key) = rogue_client_cert(&cluster);
    let missing = cluster.data_dir.join("no-such-file.pem");
    let junk = cluster.data_dir.join("client-junk.pem");
    let key_lines: Vec<String> = std::fs::read_to_string(&key)
        .expect("read the client key")
        .lines()
        .filter(|line| !line.starts_with("-----"))
        .map(str::to_owned)
        .collect();
    let cases: [(&Path, &Path, &[&str]); 5] = [
        (
            &missing,
            &key,
            &[
                "cannot read the client certificate in sslcert",
                "no-such-file.pem",
            ],
        ),
        (&junk, &key, &["sslcert", "no PEM certificate"]),
        (
            &cert,
            &missing,
            &["cannot read the private key in sslkey", "no-such-file.pem"],
        ),
        (&cert, &cert, &["sslkey", "no PEM private key"]),
        (
            &cert,
            &rogue_key,
            &["sslcert", "sslkey", "cannot be used together"],
        ),
    ];
    for (cert, key, needles) in cases {
        let url = format!("{base}&sslcert={}&sslkey={}", cert.display(), key.display());
        let error = connect(&url)
            .await
            .expect_err("an unusable client certificate");
        let text = error.to_string();
        for needle in needles {
            assert!(text.contains(needle), "`{needle}` missing from: {text}");
        }
        for line in &key_lines {
            assert!(!text.contains(line.as_str()), "key material in: {text}");
        }
    }
    assert!(ssl_of_backends(&cluster, &db).await.is_empty());
}
