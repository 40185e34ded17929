//! Connecting from a URL: our own URL parameters, TLS, and spawning the connection driver.
//!
//! Besides everything tokio-postgres understands, a URL (or key/value string) may carry:
//! - `sslmode=disable|prefer|require|verify-ca|verify-full` (libpq's meanings; default
//!   `prefer`) and `sslrootcert=<path to PEM>|system` — see [`establish`] and `tls.rs`;
//! - `statement_mode=prepared|unprepared`: `unprepared` sends every statement as an unnamed,
//!   typed statement (`query_typed`), still one round trip, for poolers such as PgBouncer in
//!   transaction mode where named prepared statements cannot live.
//!
//! These are removed before the rest is handed to tokio-postgres.

use std::path::PathBuf;

use rustauth_core::error::RustAuthError;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use crate::error::{adapter, describe, postgres_error};
use crate::tls::{self, RootCerts, Verification};

/// The connect timeout when the URL sets none (`connect_timeout`, in seconds).
const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// How statements reach the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum StatementMode {
    /// Named prepared statements, cached per connection (the default).
    #[default]
    Prepared,
    /// Unnamed statements with explicit parameter types (`query_typed`), for poolers that do
    /// not keep prepared statements between transactions.
    Unprepared,
}

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum TlsMode {
    /// Never TLS.
    Disable,
    /// TLS when the server offers it, without verifying the certificate.
    #[default]
    Prefer,
    /// TLS always, without verifying the certificate.
    Require,
    /// TLS, with the certificate chain verified against the roots.
    VerifyCa,
    /// TLS, with the chain and the host name verified.
    VerifyFull,
}

impl TlsMode {
    /// The `sslmode` value.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// Everything needed to (re)connect.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) config: Config,
    pub(crate) tls: TlsMode,
    /// `sslrootcert`: a PEM file (`None`: not given), `system` being Mozilla's root store.
    pub(crate) root_cert: Option<RootCerts>,
    pub(crate) statements: StatementMode,
}

impl ConnectOptions {
    /// Parses a `postgres://` URL or a libpq key/value string.
    pub(crate) fn parse(database_url: &str) -> Result<Self, RustAuthError> {
        let mut tls = None;
        let mut root_cert = None;
        let mut statements = StatementMode::default();
        let mut take = |key: &str, value: &str| -> Result<bool, RustAuthError> {
            match key {
                "sslmode" => {
                    tls = Some(match value {
                        "disable" => TlsMode::Disable,
                        "prefer" | "allow" => TlsMode::Prefer,
                        "require" => TlsMode::Require,
                        "verify-ca" => TlsMode::VerifyCa,
                        "verify-full" => TlsMode::VerifyFull,
                        other => {
                            return Err(adapter(format!(
                            "tokio-postgres error: invalid sslmode `{other}` (expected disable, \
                                 prefer, require, verify-ca or verify-full)"
                        )))
                        }
                    });
                    Ok(true)
                }
                "sslrootcert" => {
                    root_cert = Some(if value == "system" {
                        RootCerts::System
                    } else {
                        RootCerts::File(PathBuf::from(value))
                    });
                    Ok(true)
                }
                "statement_mode" => {
                    statements = match value {
                        "prepared" => StatementMode::Prepared,
                        "unprepared" => StatementMode::Unprepared,
                        other => {
                            return Err(adapter(format!(
                                "tokio-postgres error: invalid statement_mode `{other}` \
                                 (expected prepared or unprepared)"
                            )))
                        }
                    };
                    Ok(true)
                }
                _ => Ok(false),
            }
        };
        let rest = strip_params(database_url, &mut take)?;
        let mut config = rest.parse::<Config>().map_err(postgres_error)?;
        if config.get_connect_timeout().is_none() {
            // Without one, a host that silently drops packets holds every (re)connect
            // attempt for minutes.
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        let tls = match (tls, &root_cert) {
            // libpq: `sslrootcert=system` means `verify-full` unless said otherwise, and
            // refuses weaker modes (any certificate from a public CA would pass them).
            (None, Some(RootCerts::System)) => TlsMode::VerifyFull,
            (Some(mode), Some(RootCerts::System)) if mode != TlsMode::VerifyFull => {
                return Err(adapter(format!(
                    "tokio-postgres error: weak sslmode `{}` may not be used with \
                     sslrootcert=system (use verify-full)",
                    mode.name()
                )))
            }
            (mode, _) => mode.unwrap_or_default(),
        };
        Ok(Self {
            config,
            tls,
            root_cert,
            statements,
        })
    }
}

/// Removes the parameters `take` claims (returns true for) from a URL's query string or a
/// key/value string, and returns the rest.
fn strip_params(
    url: &str,
    take: &mut impl FnMut(&str, &str) -> Result<bool, RustAuthError>,
) -> Result<String, RustAuthError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let Some((base, query)) = url.split_once('?') else {
            return Ok(url.to_owned());
        };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(key, &percent_decode(value))? {
                kept.push(pair);
            }
        }
        return Ok(if kept.is_empty() {
            base.to_owned()
        } else {
            format!("{base}?{}", kept.join("&"))
        });
    }
    // key=value pairs separated by whitespace; values here never contain spaces.
    let mut kept = Vec::new();
    for pair in url.split_whitespace() {
        let claimed = match pair.split_once('=') {
            Some((key, value)) => take(key.trim(), value.trim_matches('\''))?,
            None => false,
        };
        if !claimed {
            kept.push(pair);
        }
    }
    Ok(kept.join(" "))
}

fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match (bytes[index], bytes.get(index + 1..index + 3)) {
            (b'%', Some(hex)) => match std::str::from_utf8(hex)
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            {
                Some(byte) => {
                    out.push(byte);
                    index += 3;
                }
                None => {
                    out.push(b'%');
                    index += 1;
                }
            },
            (byte, _) => {
                out.push(byte);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

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
pub(crate) async fn establish(options: &ConnectOptions) -> Result<Client, ConnectError> {
    let mut config = options.config.clone();
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
        return connect_with(&config, NoTls, options).await;
    }
    let roots = options.root_cert.clone().unwrap_or(RootCerts::System);
    let verification = match options.tls {
        TlsMode::VerifyFull => Verification::ChainAndName,
        TlsMode::VerifyCa => Verification::Chain,
        // libpq: with a root certificate, `require` verifies the chain like `verify-ca`.
        TlsMode::Require if options.root_cert.is_some() => Verification::Chain,
        _ => Verification::None,
    };
    // Unreadable or invalid root certificates do not get better by trying again.
    let connector = tls::connector(verification, &roots).map_err(|error| ConnectError {
        error,
        permanent: true,
    })?;
    connect_with(&config, connector, options).await
}

/// A failed connection attempt, and whether trying again could succeed.
#[derive(Debug)]
pub(crate) struct ConnectError {
    pub(crate) error: RustAuthError,
    /// Refused credentials, a missing database, a rejected certificate: retrying is futile.
    pub(crate) permanent: bool,
}

impl From<ConnectError> for RustAuthError {
    fn from(failure: ConnectError) -> Self {
        failure.error
    }
}

/// Connects with `tls` and drives the connection on the current Tokio runtime.
async fn connect_with<T>(
    config: &Config,
    tls: T,
    options: &ConnectOptions,
) -> Result<Client, ConnectError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config.connect(tls).await.map_err(|error| ConnectError {
        permanent: is_permanent(&error),
        error: connect_error(&error, options),
    })?;
    tokio::spawn(async move {
        // Ends when the client is dropped or the server goes away; calls made after that
        // fail with "connection closed".
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether a connection failure would repeat on every attempt.
fn is_permanent(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(crate::error::connect_failure_is_permanent)
        || matches!(
            tls::rustls_error(error),
            Some(rustls::Error::InvalidCertificate(_))
        )
}

/// A connection failure as a `RustAuthError`, with what TLS had to do with it spelled out.
fn connect_error(error: &tokio_postgres::Error, options: &ConnectOptions) -> RustAuthError {
    let mode = options.tls.name();
    if let Some(rustls_error) = tls::rustls_error(error) {
        let roots = options.root_cert.clone().unwrap_or(RootCerts::System);
        return match rustls_error {
            rustls::Error::InvalidCertificate(_) => adapter(format!(
                "tokio-postgres error: TLS certificate verification failed \
                 (sslmode={mode}): {rustls_error}{}",
                tls::certificate_hint(rustls_error, &roots)
            )),
            _ => adapter(format!(
                "tokio-postgres error: TLS handshake failed (sslmode={mode}): {rustls_error}"
            )),
        };
    }
    let text = describe(error, false);
    // tokio-postgres' own words (not the server's) for a refused SSLRequest.
    if text.contains("server does not support TLS") {
        return adapter(format!(
            "tokio-postgres error: the server does not support TLS but sslmode={mode}"
        ));
    }
    if options.tls == TlsMode::Disable
        && error.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    {
        return adapter(format!(
            "tokio-postgres error: {text}; hint: if the server accepts this connection only \
             over TLS, sslmode=disable turns that off (use sslmode=require or stronger)"
        ));
    }
    adapter(format!("tokio-postgres error: {text}"))
}
