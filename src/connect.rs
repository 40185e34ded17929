//! Connecting from a URL: our own URL parameters, TLS, and spawning the connection driver.
//!
//! Besides everything tokio-postgres understands, a URL (or key/value string) may carry:
//! - `sslmode=disable|prefer|require|verify-ca|verify-full` (libpq's meanings; default
//!   `prefer`) and `sslrootcert=<path to PEM>`;
//! - `statement_mode=prepared|unprepared`: `unprepared` sends every statement as an unnamed,
//!   typed statement (`query_typed`), still one round trip, for poolers such as PgBouncer in
//!   transaction mode where named prepared statements cannot live.
//!
//! These are removed before the rest is handed to tokio-postgres.

use std::path::PathBuf;

use rustauth_core::error::RustAuthError;
use tokio_postgres::{Client, Config, NoTls};

use crate::error::{adapter, postgres_error};

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

/// Everything needed to (re)connect.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    pub(crate) config: Config,
    pub(crate) tls: TlsMode,
    #[allow(dead_code)] // read by the TLS connector (in progress)
    pub(crate) root_cert: Option<PathBuf>,
    pub(crate) statements: StatementMode,
}

impl ConnectOptions {
    /// Parses a `postgres://` URL or a libpq key/value string.
    pub(crate) fn parse(database_url: &str) -> Result<Self, RustAuthError> {
        let mut tls = TlsMode::default();
        let mut root_cert = None;
        let mut statements = StatementMode::default();
        let mut take = |key: &str, value: &str| -> Result<bool, RustAuthError> {
            match key {
                "sslmode" => {
                    tls = match value {
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
                    };
                    Ok(true)
                }
                "sslrootcert" => {
                    root_cert = Some(PathBuf::from(value));
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
        let config = rest.parse::<Config>().map_err(postgres_error)?;
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
pub(crate) async fn establish(options: &ConnectOptions) -> Result<Client, RustAuthError> {
    match options.tls {
        TlsMode::Disable | TlsMode::Prefer => {
            let mut config = options.config.clone();
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config.connect(NoTls).await.map_err(postgres_error)?;
            tokio::spawn(async move {
                // Ends when the client is dropped or the server goes away; calls made after
                // that fail with "connection closed".
                let _ = connection.await;
            });
            Ok(client)
        }
        TlsMode::Require | TlsMode::VerifyCa | TlsMode::VerifyFull => Err(adapter(
            "tokio-postgres error: TLS (sslmode require, verify-ca, verify-full) is not built yet",
        )),
    }
}
