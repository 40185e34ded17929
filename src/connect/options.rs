//! What a connection string says: tokio-postgres' own settings plus ours (`sslmode` with
//! libpq's meanings, `sslrootcert`, `sslcert`/`sslkey`, `statement_mode`, `max_connections`,
//! `acquire_timeout`), each checked, none guessed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::config::SslMode;
use tokio_postgres::Config;

use super::grammar::{split, Split};
use crate::error::{invalid_config, ConfigError, Error, Result};
use crate::tls::{ClientCert, RootCerts};

/// The connect timeout when the string sets none (`connect_timeout`, in seconds).
pub(super) const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The parameters this crate reads itself and removes before tokio-postgres parses the rest
/// (tokio-postgres rejects every one of them except `sslmode`, whose `verify-*` values it
/// rejects).
pub(super) const OWN_PARAMETERS: [&str; 7] = [
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "statement_mode",
    "max_connections",
    "acquire_timeout",
];

/// The most connections one `TokioPostgresConnection` opens (`max_connections`).
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// Parameters tokio-postgres collects into lists when repeated (`host=a host=b` is two
/// hosts), so giving them twice is not ambiguous.
const LIST_PARAMETERS: [&str; 3] = ["host", "hostaddr", "port"];

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

    /// What tokio-postgres is told: it knows `disable`, `prefer` and `require`; the
    /// `verify-*` modes are `require` plus our certificate verification.
    pub(super) fn ssl_mode(self) -> SslMode {
        match self {
            Self::Disable => SslMode::Disable,
            Self::Prefer => SslMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => SslMode::Require,
        }
    }
}

/// Everything needed to (re)connect.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// What tokio-postgres parsed from the string without our parameters, with its
    /// `ssl_mode` set from ours and the default connect timeout applied.
    pub(crate) config: Config,
    pub(crate) tls: TlsMode,
    /// `sslrootcert`: a PEM file (`None`: not given), `system` being Mozilla's root store.
    pub(crate) root_cert: Option<RootCerts>,
    /// `sslcert` and `sslkey`: the client certificate chain and its key (PEM files).
    pub(crate) client_cert: Option<ClientCert>,
    pub(crate) statements: StatementMode,
    /// `max_connections`: how many connections to open (default 1).
    pub(crate) max_connections: usize,
    /// `acquire_timeout` (seconds): how long a call may wait for a connection of the set
    /// (default 30 s).
    pub(crate) acquire_timeout: std::time::Duration,
}

impl ConnectOptions {
    /// Parses a `postgres://` URL or a libpq key/value string.
    pub(crate) fn parse(database_url: &str) -> Result<Self> {
        let Split { parameters, rest } = split(database_url)?;

        let mut seen: HashMap<&str, &[u8]> = HashMap::new();
        for parameter in &parameters {
            if LIST_PARAMETERS.contains(&parameter.key.as_ref()) {
                continue;
            }
            match seen.insert(parameter.key.as_ref(), &parameter.value) {
                // The values are not shown: `password` is one of these parameters.
                Some(earlier) if earlier != parameter.value.as_slice() => {
                    return Err(invalid_config(format!(
                        "`{}` is given twice with different values",
                        parameter.key
                    )))
                }
                _ => {}
            }
        }
        let own = |key: &str| -> Result<Option<&str>> {
            seen.get(key)
                .map(|value| {
                    std::str::from_utf8(value)
                        .map_err(|_| invalid_config(format!("the value of `{key}` is not UTF-8")))
                })
                .transpose()
        };

        let tls = own("sslmode")?
            .map(|value| match value {
                "disable" => Ok(TlsMode::Disable),
                // libpq's `allow` tries plain text first; TLS first is never less safe.
                "allow" | "prefer" => Ok(TlsMode::Prefer),
                "require" => Ok(TlsMode::Require),
                "verify-ca" => Ok(TlsMode::VerifyCa),
                "verify-full" => Ok(TlsMode::VerifyFull),
                _ => Err(invalid_config(
                    "invalid value for `sslmode` (expected disable, allow, prefer, require, \
                     verify-ca or verify-full)",
                )),
            })
            .transpose()?;
        let root_cert = own("sslrootcert")?.map(|value| {
            if value == "system" {
                RootCerts::System
            } else {
                RootCerts::File(PathBuf::from(value))
            }
        });
        let client_cert = match (own("sslcert")?, own("sslkey")?) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientCert {
                cert: PathBuf::from(cert),
                key: PathBuf::from(key),
            }),
            // libpq falls back to ~/.postgresql/postgresql.{crt,key}; a server-side process
            // should not pick up a home directory's key silently.
            (Some(_), None) => return Err(invalid_config("`sslcert` is given without `sslkey`")),
            (None, Some(_)) => return Err(invalid_config("`sslkey` is given without `sslcert`")),
        };
        let statements = match own("statement_mode")? {
            None | Some("prepared") => StatementMode::Prepared,
            Some("unprepared") => StatementMode::Unprepared,
            Some(_) => {
                return Err(invalid_config(
                    "invalid value for `statement_mode` (expected prepared or unprepared)",
                ))
            }
        };
        let max_connections = match own("max_connections")? {
            None => 1,
            Some(value) => value
                .parse::<usize>()
                .ok()
                .filter(|count| (1..=MAX_CONNECTIONS).contains(count))
                .ok_or_else(|| {
                    invalid_config(format!(
                        "invalid value for `max_connections` (expected 1 to {MAX_CONNECTIONS})"
                    ))
                })?,
        };
        let acquire_timeout = match own("acquire_timeout")? {
            None => crate::connection::DEFAULT_ACQUIRE_TIMEOUT,
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|seconds| seconds.is_finite() && *seconds > 0.0 && *seconds <= 86_400.0)
                .map(std::time::Duration::from_secs_f64)
                .ok_or_else(|| {
                    invalid_config(
                        "invalid value for `acquire_timeout` (expected seconds, more than 0 \
                         and at most 86400)",
                    )
                })?,
        };
        let tls = match (tls, &root_cert) {
            // libpq: `sslrootcert=system` means `verify-full` unless said otherwise, and
            // refuses weaker modes (any certificate from a public CA would pass them).
            (None, Some(RootCerts::System)) => TlsMode::VerifyFull,
            (Some(mode), Some(RootCerts::System)) if mode != TlsMode::VerifyFull => {
                return Err(Error::Config(ConfigError::WeakTlsWithSystemRoots {
                    mode: mode.name(),
                }))
            }
            (mode, _) => mode.unwrap_or_default(),
        };

        let mut config = Config::from_str(&rest)?;
        // `sslmode` was removed from what tokio-postgres parsed (it rejects `verify-ca` and
        // `verify-full`); its own setting is set here from ours, so the two never disagree.
        config.ssl_mode(tls.ssl_mode());
        // Only when absent: `connect_timeout=0` (or negative) means no timeout, as in libpq,
        // and tokio-postgres reports it as `None` too.
        if !seen.contains_key("connect_timeout") {
            // Without one, a host that silently drops packets holds every (re)connect
            // attempt for minutes.
            config.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        Ok(Self {
            config,
            tls,
            root_cert,
            client_cert,
            statements,
            max_connections,
            acquire_timeout,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use rustauth_core::error::RustAuthError;
    use std::time::Duration;
    use tokio_postgres::config::Host;

    fn parse(s: &str) -> ConnectOptions {
        ConnectOptions::parse(s).unwrap_or_else(|error| panic!("{s}: {error}"))
    }

    /// The text of the adapter error `s` fails with.
    fn error_text(s: &str) -> String {
        match ConnectOptions::parse(s).map_err(RustAuthError::from) {
            Err(RustAuthError::Adapter(text)) => {
                assert!(text.starts_with("tokio-postgres error: "), "{text}");
                text
            }
            Err(other) => panic!("{s}: not an adapter error: {other:?}"),
            Ok(options) => panic!("{s}: parsed: {options:?}"),
        }
    }

    // A raw `?` in a password, spaces around `=`, and quoted spaces: each once hid or
    // changed a setting.

    #[test]
    fn a_raw_question_mark_in_the_password_does_not_hide_sslmode() {
        for (mode, tls, ssl_mode) in [
            ("require", TlsMode::Require, SslMode::Require),
            ("disable", TlsMode::Disable, SslMode::Disable),
            ("verify-full", TlsMode::VerifyFull, SslMode::Require),
        ] {
            let options = parse(&format!("postgres://app:pa?ss@db:5432/auth?sslmode={mode}"));
            assert_eq!(options.tls, tls, "{mode}");
            assert_eq!(options.config.get_ssl_mode(), ssl_mode, "{mode}");
            assert_eq!(options.config.get_password(), Some(&b"pa?ss"[..]));
            assert_eq!(options.config.get_user(), Some("app"));
            assert_eq!(options.config.get_dbname(), Some("auth"));
            assert_eq!(options.config.get_hosts(), [Host::Tcp("db".to_owned())]);
            assert_eq!(options.config.get_ports(), [5432]);
        }
    }

    #[test]
    fn spaces_around_equals_do_not_hide_sslmode() {
        let options = parse("host=db user=app dbname=auth sslmode = require");
        assert_eq!(options.tls, TlsMode::Require);
        assert_eq!(options.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(options.config.get_dbname(), Some("auth"));
        let options =
            parse("host=db sslmode=  verify-ca   sslrootcert\t=\t'/etc/my ca.pem' user=app");
        assert_eq!(options.tls, TlsMode::VerifyCa);
        assert_eq!(
            options.root_cert,
            Some(RootCerts::File(PathBuf::from("/etc/my ca.pem")))
        );
        assert_eq!(options.config.get_user(), Some("app"));
    }

    #[test]
    fn quoted_values_keep_every_space_and_escape() {
        let options = parse(r"host=db password='a  b' user=app sslmode=require");
        assert_eq!(options.config.get_password(), Some(&b"a  b"[..]));
        let options = parse(r"password='it\'s \\ a  b' sslmode='disable' user=app");
        assert_eq!(options.config.get_password(), Some(&br"it's \ a  b"[..]));
        assert_eq!(options.tls, TlsMode::Disable);
        let options = parse(r"password=a\ \ b sslmode=require");
        assert_eq!(options.config.get_password(), Some(&b"a  b"[..]));
        // A quoted value may be followed directly by the next parameter, as in tokio-postgres.
        let options = parse("password='x'sslmode=require user=app");
        assert_eq!(options.config.get_password(), Some(&b"x"[..]));
        assert_eq!(options.tls, TlsMode::Require);
    }

    #[test]
    fn url_keys_and_values_are_percent_decoded() {
        let options =
            parse("postgresql://app@db/auth?ssl%6Dode=verify%2Dca&sslrootcert=%2Ftmp%2Fa%26b.pem");
        assert_eq!(options.tls, TlsMode::VerifyCa);
        assert_eq!(
            options.root_cert,
            Some(RootCerts::File(PathBuf::from("/tmp/a&b.pem")))
        );
        // `=` inside a value, and an empty trailing pair.
        let options = parse("postgres://db?options=-c%20a=b&sslmode=require&");
        assert_eq!(options.config.get_options(), Some("-c a=b"));
        assert_eq!(options.tls, TlsMode::Require);
    }

    #[test]
    fn sslmode_reaches_tokio_postgres_as_what_it_can_express() {
        for (mode, tls, ssl_mode) in [
            ("disable", TlsMode::Disable, SslMode::Disable),
            ("allow", TlsMode::Prefer, SslMode::Prefer),
            ("prefer", TlsMode::Prefer, SslMode::Prefer),
            ("require", TlsMode::Require, SslMode::Require),
            ("verify-ca", TlsMode::VerifyCa, SslMode::Require),
            ("verify-full", TlsMode::VerifyFull, SslMode::Require),
        ] {
            for s in [
                format!("postgres://db/x?sslmode={mode}"),
                format!("host=db sslmode={mode}"),
            ] {
                let options = parse(&s);
                assert_eq!(
                    (options.tls, options.config.get_ssl_mode()),
                    (tls, ssl_mode)
                );
            }
        }
        let options = parse("host=db");
        assert_eq!(options.tls, TlsMode::Prefer);
        assert_eq!(options.config.get_ssl_mode(), SslMode::Prefer);
    }

    #[test]
    fn ambiguous_or_invalid_settings_are_errors_that_hide_values() {
        let text = error_text("postgres://u:hunter2@db/x?sslmode=verify_full");
        assert!(text.contains("`sslmode`"), "{text}");
        assert!(
            !text.contains("verify_full") && !text.contains("hunter2"),
            "{text}"
        );
        let text = error_text("host=db password=hunter2 sslmode=hunter3");
        assert!(
            text.contains("`sslmode`") && !text.contains("hunter"),
            "{text}"
        );
        let text = error_text("host=db statement_mode=hunter3");
        assert!(
            text.contains("`statement_mode`") && !text.contains("hunter"),
            "{text}"
        );

        for s in [
            "postgres://db/x?sslmode=require&sslmode=disable",
            "postgres://db/x?sslmode=require&ssl%6dode=disable",
            "host=db sslmode=require sslmode = disable",
        ] {
            let text = error_text(s);
            assert!(text.contains("`sslmode` is given twice"), "{s}: {text}");
        }
        // The same value twice is not ambiguous.
        assert_eq!(
            parse("host=db sslmode=require sslmode='require'").tls,
            TlsMode::Require
        );
        for s in [
            "postgres://u:hunter2@db/x?password=hunter3",
            "host=db password=hunter2 password='hunter3'",
        ] {
            let text = error_text(s);
            assert!(text.contains("`password` is given twice"), "{text}");
            assert!(!text.contains("hunter"), "{text}");
        }
        let text = error_text("postgres://u@db/x?user=v");
        assert!(text.contains("`user` is given twice"), "{text}");
        let text = error_text("postgres://u@db/x?dbname=y");
        assert!(text.contains("`dbname` is given twice"), "{text}");
        // Lists are not ambiguous: tokio-postgres tries each host in turn.
        let options = parse("host=a host=b port=1 port=2");
        assert_eq!(options.config.get_ports(), [1, 2]);

        let text = error_text("host=db sslcert=/c.pem");
        assert!(
            text.contains("`sslcert` is given without `sslkey`"),
            "{text}"
        );
        let text = error_text("host=db sslkey=/k.pem");
        assert!(
            text.contains("`sslkey` is given without `sslcert`"),
            "{text}"
        );
    }

    #[test]
    fn syntax_errors_never_quote_the_string() {
        for s in [
            "host=db password=hunter2 hunter3",
            "host=db password='hunter2",
            "host=db password=",
            "host=db =hunter2 sslmode=disable",
            "postgres://db/x?hunter2",
            "postgres://db/x?sslmode=require&hunter2",
        ] {
            let text = error_text(s);
            assert!(text.contains("invalid connection string"), "{s}: {text}");
            assert!(!text.contains("hunter"), "{s}: {text}");
        }
    }

    #[test]
    fn the_connect_timeout_default_applies_only_when_none_is_given() {
        let timeout = |s: &str| parse(s).config.get_connect_timeout().copied();
        assert_eq!(timeout("host=db"), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(timeout("postgres://db"), Some(DEFAULT_CONNECT_TIMEOUT));
        assert_eq!(
            timeout("host=db connect_timeout = 3"),
            Some(Duration::from_secs(3))
        );
        assert_eq!(
            timeout("postgres://db?connect%5Ftimeout=4"),
            Some(Duration::from_secs(4))
        );
        // 0 means no timeout, in libpq and tokio-postgres alike.
        assert_eq!(timeout("host=db connect_timeout=0"), None);
        assert_eq!(timeout("postgres://db?connect_timeout=0"), None);
    }

    #[test]
    fn client_certificates_and_system_roots() {
        let options =
            parse("postgres://db/x?sslcert=%2Fa%20b.crt&sslkey=/k.pem&sslmode=verify-full");
        assert_eq!(
            options.client_cert,
            Some(ClientCert {
                cert: PathBuf::from("/a b.crt"),
                key: PathBuf::from("/k.pem"),
            })
        );
        assert_eq!(parse("host=db sslrootcert=system").tls, TlsMode::VerifyFull);
        let text = error_text("host=db sslrootcert=system sslmode=require");
        assert!(text.contains("weak sslmode `require`"), "{text}");
    }
}
