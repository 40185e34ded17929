//! Opening a connection: each host of the string in turn within `connect_timeout`, TLS as
//! `sslmode` says, the session set to UTC, and a [`ConnectError`] that says why when it fails.

use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use super::options::{ConnectOptions, TlsMode};
use crate::error::{describe, ConnectError};
use crate::tls::{self, RootCerts, Tracked, Verification};

/// Opens a connection and drives it on the current Tokio runtime.
///
/// | `sslmode` | TLS | certificate check | server without TLS |
/// | --- | --- | --- | --- |
/// | `disable` | never | — | plain text |
/// | `prefer` (default) | if the server offers it | none | plain text |
/// | `require` | always | none; the chain (as `verify-ca`) when `sslrootcert` is given | error |
/// | `verify-ca` | always | the chain up to the roots | error |
/// | `verify-full` | always | the chain and the host name | error |
///
/// The roots are the `sslrootcert` PEM file, or Mozilla's root store with
/// `sslrootcert=system` (which implies `verify-full`) or without `sslrootcert`. Connections
/// over Unix-domain sockets never use TLS (the server does not offer it there), as in libpq.
///
/// The hosts of a multi-host string are tried in order, each attempt (TCP connect, TLS
/// handshake, startup and the `target_session_attrs` check) bounded as a whole by
/// `connect_timeout`; the error after the last host names every host tried and why it failed.
/// `read_write` asks for a writable server whatever `target_session_attrs` says (after a
/// connection met a read-only one).
pub(crate) async fn establish(
    options: &ConnectOptions,
    read_write: bool,
) -> Result<Client, ConnectError> {
    let limit = options.config.get_connect_timeout().copied();
    let mut failures = Vec::new();
    for (label, mut config) in single_hosts(&options.config) {
        let started = std::time::Instant::now();
        if read_write {
            config.target_session_attrs(TargetSessionAttrs::ReadWrite);
        }
        let attempt = establish_one(config, options);
        let result = match limit {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or(Err(ConnectError::Timeout { limit })),
            None => attempt.await,
        };
        match result {
            Ok(client) => {
                tracing::info!(
                    target: crate::trace::TARGET,
                    host = %label,
                    duration_ms = crate::trace::millis(started.elapsed()),
                    "connection opened"
                );
                return Ok(client);
            }
            Err(failure) => failures.push((label, failure)),
        }
    }
    if failures.len() == 1 {
        if let Some((_, failure)) = failures.pop() {
            return Err(failure);
        }
    }
    Err(ConnectError::AllHosts(failures))
}

/// One configuration per host of `config` (with its hostaddr and port), everything else
/// copied, labelled `host:port` for error messages; the configuration itself when it names
/// no host (tokio-postgres reports that).
fn single_hosts(config: &Config) -> Vec<(String, Config)> {
    let hosts = config.get_hosts();
    let addrs = config.get_hostaddrs();
    let ports = config.get_ports();
    let count = hosts.len().max(addrs.len());
    if count <= 1 {
        let label = hosts.first().map_or_else(String::new, |host| {
            host_label(host, ports.first().copied().unwrap_or(5432))
        });
        return vec![(label, config.clone())];
    }
    (0..count)
        .map(|index| {
            let port = ports
                .get(index)
                .or_else(|| ports.first())
                .copied()
                .unwrap_or(5432);
            let mut one = copy_without_hosts(config);
            if let Some(host) = hosts.get(index) {
                match host {
                    Host::Tcp(name) => one.host(name.as_str()),
                    Host::Unix(path) => one.host_path(path),
                };
            }
            if let Some(addr) = addrs.get(index) {
                one.hostaddr(*addr);
            }
            one.port(port);
            let label = match (hosts.get(index), addrs.get(index)) {
                (Some(host), _) => host_label(host, port),
                (None, Some(addr)) => format!("{addr}:{port}"),
                (None, None) => String::new(),
            };
            (label, one)
        })
        .collect()
}

fn host_label(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(name) => format!("{name}:{port}"),
        Host::Unix(path) => format!("{}:{port}", path.display()),
    }
}

/// Every setting of `config` but its hosts, hostaddrs and ports (tokio-postgres has no way to
/// clear those on a copy). `single_hosts_copy_every_setting` checks that nothing is missed.
fn copy_without_hosts(config: &Config) -> Config {
    let mut one = Config::new();
    if let Some(user) = config.get_user() {
        one.user(user);
    }
    if let Some(password) = config.get_password() {
        one.password(password);
    }
    if let Some(dbname) = config.get_dbname() {
        one.dbname(dbname);
    }
    if let Some(options) = config.get_options() {
        one.options(options);
    }
    if let Some(name) = config.get_application_name() {
        one.application_name(name);
    }
    one.ssl_mode(config.get_ssl_mode());
    one.ssl_negotiation(config.get_ssl_negotiation());
    if let Some(timeout) = config.get_connect_timeout() {
        one.connect_timeout(*timeout);
    }
    if let Some(timeout) = config.get_tcp_user_timeout() {
        one.tcp_user_timeout(*timeout);
    }
    one.keepalives(config.get_keepalives());
    one.keepalives_idle(config.get_keepalives_idle());
    if let Some(interval) = config.get_keepalives_interval() {
        one.keepalives_interval(interval);
    }
    if let Some(retries) = config.get_keepalives_retries() {
        one.keepalives_retries(retries);
    }
    one.target_session_attrs(config.get_target_session_attrs());
    one.channel_binding(config.get_channel_binding());
    one.load_balance_hosts(config.get_load_balance_hosts());
    one
}

/// One attempt on a configuration with one host.
async fn establish_one(
    mut config: Config,
    options: &ConnectOptions,
) -> Result<Client, ConnectError> {
    let only_unix_sockets = !config.get_hosts().is_empty()
        && config.get_hostaddrs().is_empty()
        && config
            .get_hosts()
            .iter()
            .all(|host| !matches!(host, Host::Tcp(_)));
    let ssl_mode = match options.tls {
        TlsMode::Disable => SslMode::Disable,
        _ if only_unix_sockets => SslMode::Disable,
        TlsMode::Prefer => SslMode::Prefer,
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
    };
    config.ssl_mode(ssl_mode);
    if ssl_mode == SslMode::Disable {
        return open(&config, NoTls, |_| false, options).await;
    }
    let roots = options.root_cert.clone().unwrap_or(RootCerts::System);
    let verification = match options.tls {
        TlsMode::VerifyFull => Verification::ChainAndName,
        TlsMode::VerifyCa => Verification::Chain,
        // libpq: with a root certificate, `require` verifies the chain like `verify-ca`.
        TlsMode::Require if options.root_cert.is_some() => Verification::Chain,
        _ => Verification::None,
    };
    // Unreadable or invalid certificates and keys do not get better by trying again
    // (`ConnectError::permanent`).
    let connector = Tracked::new(
        tls::connector(verification, &roots, options.client_cert.as_ref())
            .map_err(ConnectError::TlsSetup)?,
    );
    // tokio-postgres checks that a host name is given before a handshake, after the server's
    // answer; without one, a failure there is not the server's refusal.
    let named_host = !config.get_hosts().is_empty();
    let probe = connector.clone();
    let refused = move |error: &tokio_postgres::Error| {
        ssl_mode == SslMode::Require && named_host && probe.refused(error)
    };
    open(&config, connector, refused, options).await
}

/// Connects with `tls` and drives the connection on the current Tokio runtime. `refused_tls`
/// tells a failure where the server refused TLS (see [`Tracked::refused`]).
async fn open<T>(
    config: &Config,
    tls: T,
    refused_tls: impl Fn(&tokio_postgres::Error) -> bool,
    options: &ConnectOptions,
) -> Result<Client, ConnectError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(|error| {
        let refused = refused_tls(&error);
        connect_error(error, refused, options)
    })?;
    let driver = tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; calls made after that
        // fail with "connection closed", and the next call connects again.
        if let Err(error) = connection.await {
            tracing::warn!(
                target: crate::trace::TARGET,
                why = %describe(&error, false),
                "connection lost"
            );
        }
    });
    // The session runs in UTC, before any statement: every server-side conversion between
    // `timestamp` and `timestamptz` (a statement prepared before another process changed a
    // column from one to the other, a parameter declared from a stale catalog) then keeps the
    // instant exactly. A `SET`, not the `options` startup parameter, since poolers such as
    // PgBouncer refuse `options` but track `TimeZone` and set it on every server connection
    // they hand this client.
    if let Err(error) = client.batch_execute(UTC_SESSION).await {
        driver.abort();
        return Err(ConnectError::Session(error));
    }
    Ok(client)
}

/// Makes a session's time zone UTC (see [`open`]).
pub(crate) const UTC_SESSION: &str = "SET TimeZone = 'UTC'";

/// A connection failure, with what TLS had to do with it: a certificate that failed
/// verification, a failed handshake, a server that refused TLS (`refused_tls`), or
/// `sslmode=disable` against a server that accepts TLS connections only.
fn connect_error(
    error: tokio_postgres::Error,
    refused_tls: bool,
    options: &ConnectOptions,
) -> ConnectError {
    let mode = options.tls.name();
    if let Some(rustls_error) = tls::rustls_error(&error) {
        return match rustls_error {
            rustls::Error::InvalidCertificate(_) => ConnectError::Certificate {
                mode,
                error: rustls_error.clone(),
                roots: options.root_cert.clone().unwrap_or(RootCerts::System),
            },
            _ => ConnectError::Handshake {
                mode,
                error: rustls_error.clone(),
            },
        };
    }
    if refused_tls {
        return ConnectError::TlsUnsupported { mode };
    }
    let tls_disabled = options.tls == TlsMode::Disable
        && error.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION);
    ConnectError::Driver {
        error,
        tls_disabled,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn parse(s: &str) -> ConnectOptions {
        ConnectOptions::parse(s).unwrap_or_else(|error| panic!("{s}: {error}"))
    }

    #[test]
    fn single_hosts_copy_every_setting() {
        let strings = [
            "postgres://app:secret@db:6432/auth?application_name=a&options=-c%20x%3D1\
             &connect_timeout=3&keepalives=0&target_session_attrs=read-write\
             &channel_binding=require&tcp_user_timeout=5&keepalives_idle=30",
            "host=db port=7 user=u password='p w' dbname=d sslmode=require \
             keepalives_interval=4 keepalives_retries=2 load_balance_hosts=random",
            "host=/var/run/postgresql dbname=d",
        ];
        for string in strings {
            let config = parse(string).config;
            let hosts = single_hosts(&config);
            assert_eq!(hosts.len(), 1);
            // With one host the configuration is used as it is; rebuilding it from its
            // settings must give the same configuration, or a setting would be dropped for
            // multi-host strings.
            let mut rebuilt = copy_without_hosts(&config);
            for host in config.get_hosts() {
                match host {
                    Host::Tcp(name) => rebuilt.host(name.as_str()),
                    Host::Unix(path) => rebuilt.host_path(path),
                };
            }
            for port in config.get_ports() {
                rebuilt.port(*port);
            }
            assert_eq!(rebuilt, config, "{string}");
        }
    }

    #[test]
    fn multi_host_strings_split_into_one_configuration_per_host() {
        let config = parse(
            "postgres://u:pw@a:5433,b,c:5435/auth?target_session_attrs=read-write&connect_timeout=2",
        )
        .config;
        let hosts = single_hosts(&config);
        let labels = hosts
            .iter()
            .map(|(label, _)| label.as_str())
            .collect::<Vec<_>>();
        assert_eq!(labels, ["a:5433", "b:5432", "c:5435"]);
        for (_, one) in &hosts {
            assert_eq!(one.get_hosts().len(), 1);
            assert_eq!(one.get_ports().len(), 1);
            assert_eq!(one.get_password(), Some(&b"pw"[..]));
            assert_eq!(one.get_dbname(), Some("auth"));
            assert_eq!(
                one.get_target_session_attrs(),
                TargetSessionAttrs::ReadWrite
            );
            assert_eq!(one.get_connect_timeout(), Some(&Duration::from_secs(2)));
        }
        let config = parse("host=a,b port=1,2 user=u").config;
        let labels = single_hosts(&config)
            .into_iter()
            .map(|(label, _)| label)
            .collect::<Vec<_>>();
        assert_eq!(labels, ["a:1", "b:2"]);
    }
}
