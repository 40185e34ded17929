//! Connecting from a URL: our own URL parameters, TLS, and spawning the connection driver.
//!
//! Besides everything tokio-postgres understands, a URL (or key/value string) may carry:
//! - `sslmode=disable|allow|prefer|require|verify-ca|verify-full` (libpq's meanings, `allow`
//!   read as `prefer`; default `prefer`), `sslrootcert=<path to PEM>|system`, and
//!   `sslcert`/`sslkey` (a PEM client certificate chain and its private key) — see
//!   [`establish`] and `tls.rs`;
//! - `statement_mode=prepared|unprepared`: `unprepared` sends every statement as an unnamed,
//!   typed statement (`query_typed`), still one round trip, for poolers such as PgBouncer in
//!   transaction mode where named prepared statements cannot live.
//!
//! The string is split into parameters with the grammar tokio-postgres itself uses for each
//! form (see [`split`]); ours are read and removed, and the rest of the text reaches
//! `tokio_postgres::Config::from_str` byte for byte. A parameter given twice with different
//! values is an error, never a guess.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;

use tokio_postgres::config::{Host, SslMode, TargetSessionAttrs};
use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, NoTls, Socket};

use crate::error::{describe, invalid_config, ConfigError, ConnectError, Error, Result};
use crate::tls::{self, ClientCert, RootCerts, Tracked, Verification};

/// The connect timeout when the string sets none (`connect_timeout`, in seconds).
const DEFAULT_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The parameters this crate reads itself and removes before tokio-postgres parses the rest
/// (tokio-postgres rejects every one of them except `sslmode`, whose `verify-*` values it
/// rejects).
const OWN_PARAMETERS: [&str; 7] = [
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
    fn ssl_mode(self) -> SslMode {
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
                    return Err(invalid(&format!(
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
                        .map_err(|_| invalid(&format!("the value of `{key}` is not UTF-8")))
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
                _ => Err(invalid(
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
            (Some(_), None) => return Err(invalid("`sslcert` is given without `sslkey`")),
            (None, Some(_)) => return Err(invalid("`sslkey` is given without `sslcert`")),
        };
        let statements = match own("statement_mode")? {
            None | Some("prepared") => StatementMode::Prepared,
            Some("unprepared") => StatementMode::Unprepared,
            Some(_) => {
                return Err(invalid(
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
                    invalid(&format!(
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
                    invalid(
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

/// A configuration problem, worded like tokio-postgres' own (`invalid connection string`).
fn invalid(message: &str) -> Error {
    invalid_config(message)
}

/// One parameter of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parameter<'a> {
    /// The key, percent-decoded in a URL.
    key: Cow<'a, str>,
    /// The value as tokio-postgres decodes it (unquoted and unescaped, or percent-decoded).
    value: Vec<u8>,
    /// Where the whole `key=value` text is in the string (empty for a URL's user, password
    /// and database, which are never ours).
    span: Range<usize>,
}

/// A connection string taken apart: every parameter, and the string without ours.
#[derive(Debug)]
struct Split<'a> {
    parameters: Vec<Parameter<'a>>,
    rest: String,
}

/// Splits `s` into parameters exactly as `tokio_postgres::Config::from_str` does (a URL when
/// it starts with `postgres://` or `postgresql://`, else key/value pairs) and removes
/// [`OWN_PARAMETERS`] from the text.
///
/// By hand because no library splits the way tokio-postgres does: its URL parser is libpq's
/// "sloppy" one (the credentials end at the first `@` of the whole string, so a password may
/// hold a raw `?`, `/` or `:`, which a WHATWG parser such as the `url` crate would split at),
/// and its key/value parser is private. Both are mirrored from tokio-postgres 0.7's
/// `src/config.rs`; the property test in this module checks that they agree.
fn split(s: &str) -> Result<Split<'_>> {
    let (parameters, rest) = match ["postgres://", "postgresql://"]
        .iter()
        .find_map(|prefix| s.strip_prefix(prefix).map(|tail| s.len() - tail.len()))
    {
        Some(start) => {
            let parameters = url_parameters(s, start)?;
            let rest = without_url_parameters(s, &parameters);
            (parameters, rest)
        }
        None => {
            let parameters = key_value_parameters(s)?;
            let rest = without_key_value_parameters(s, &parameters);
            (parameters, rest)
        }
    };
    Ok(Split { parameters, rest })
}

fn is_own(parameter: &Parameter<'_>) -> bool {
    OWN_PARAMETERS.contains(&parameter.key.as_ref())
}

/// The parameters of a URL whose authority starts at byte `start` (after the scheme),
/// mirroring tokio-postgres' `UrlParser`: credentials up to the first `@` anywhere, host up
/// to the next `/` or `?`, database up to the next `?`, then `key=value` pairs where the key
/// runs to the next `=` and the value to the next `&`, both percent-decoded.
fn url_parameters(s: &str, start: usize) -> Result<Vec<Parameter<'_>>> {
    let decode =
        |text: &str| -> Vec<u8> { percent_encoding::percent_decode(text.as_bytes()).collect() };
    let mut parameters = Vec::new();
    let mut at = start;
    if let Some(end) = s[at..].find('@') {
        let credentials = &s[at..at + end];
        let (user, password) = match credentials.split_once(':') {
            Some((user, password)) => (user, Some(password)),
            None => (credentials, None),
        };
        parameters.push(Parameter {
            key: Cow::Borrowed("user"),
            value: decode(user),
            span: 0..0,
        });
        if let Some(password) = password {
            parameters.push(Parameter {
                key: Cow::Borrowed("password"),
                value: decode(password),
                span: 0..0,
            });
        }
        at += end + 1;
    }
    at = s[at..].find(['/', '?']).map_or(s.len(), |end| at + end);
    if s[at..].starts_with('/') {
        at += 1;
        let end = s[at..].find('?').map_or(s.len(), |end| at + end);
        if end > at {
            parameters.push(Parameter {
                key: Cow::Borrowed("dbname"),
                value: decode(&s[at..end]),
                span: 0..0,
            });
        }
        at = end;
    }
    if !s[at..].starts_with('?') {
        return Ok(parameters);
    }
    at += 1;
    while at < s.len() {
        let Some(equals) = s[at..].find('=').map(|offset| at + offset) else {
            return Err(invalid(&format!(
                "unterminated parameter at byte {at} (no `=`)"
            )));
        };
        let key = percent_encoding::percent_decode(&s.as_bytes()[at..equals])
            .decode_utf8()
            .map_err(|_| invalid(&format!("the parameter name at byte {at} is not UTF-8")))?;
        let value_start = equals + 1;
        let value_end = s[value_start..]
            .find('&')
            .map_or(s.len(), |offset| value_start + offset);
        parameters.push(Parameter {
            key,
            value: decode(&s[value_start..value_end]),
            span: at..value_end,
        });
        // Past the `&` (or the end).
        at = (value_end + 1).min(s.len());
        if value_end == s.len() {
            break;
        }
    }
    Ok(parameters)
}

/// `s` without our parameters: the text up to the `?`, then the other parameters' text as
/// written, joined by `&`.
fn without_url_parameters(s: &str, parameters: &[Parameter<'_>]) -> String {
    let query: Vec<&Parameter<'_>> = parameters.iter().filter(|p| !p.span.is_empty()).collect();
    let Some(first) = query.first() else {
        return s.to_owned();
    };
    // The `?` right before the first query parameter.
    let mut rest = s[..first.span.start.saturating_sub(1)].to_owned();
    let kept: Vec<&str> = query
        .iter()
        .filter(|p| !is_own(p))
        .map(|p| &s[p.span.clone()])
        .collect();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    rest
}

/// The parameters of a libpq key/value string, mirroring tokio-postgres' `Parser`: a keyword
/// up to whitespace or `=`, optional whitespace around `=`, and a value that is either
/// `'quoted'` or runs to the next whitespace, `\` escaping the next character in both.
fn key_value_parameters(s: &str) -> Result<Vec<Parameter<'_>>> {
    let mut chars = s.char_indices().peekable();
    let mut parameters = Vec::new();
    let position = |chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
        chars.peek().map_or(s.len(), |&(index, _)| index)
    };
    loop {
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let start = position(&mut chars);
        while chars
            .next_if(|&(_, c)| !c.is_whitespace() && c != '=')
            .is_some()
        {}
        let key_end = position(&mut chars);
        if key_end == start {
            if start == s.len() {
                return Ok(parameters);
            }
            // tokio-postgres silently ignores everything from a stray `=` on; that hides
            // whatever follows it, so it is an error here.
            return Err(invalid(&format!(
                "unexpected `=` at byte {start} (expected a parameter name)"
            )));
        }
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        match chars.next() {
            Some((_, '=')) => {}
            // Neither the word nor the character is shown: with an unquoted password that
            // holds a space, they are part of the password.
            Some((index, _)) => {
                return Err(invalid(&format!(
                    "expected `=` at byte {index} after the word at byte {start}"
                )))
            }
            None => {
                return Err(invalid(&format!(
                    "expected `=` after the word at byte {start}, found the end"
                )))
            }
        }
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if(|&(_, c)| c == '\'').is_some() {
            loop {
                match chars.next() {
                    Some((_, '\'')) => break,
                    Some((_, '\\')) => value.extend(chars.next().map(|(_, c)| c)),
                    Some((_, c)) => value.push(c),
                    None => return Err(invalid("unterminated quoted parameter value")),
                }
            }
        } else {
            while let Some((_, c)) = chars.next_if(|&(_, c)| !c.is_whitespace()) {
                if c == '\\' {
                    value.extend(chars.next().map(|(_, c)| c));
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return Err(invalid(&format!(
                    "missing value for the parameter at byte {start}"
                )));
            }
        }
        parameters.push(Parameter {
            key: Cow::Borrowed(&s[start..key_end]),
            value: value.into_bytes(),
            span: start..position(&mut chars),
        });
    }
}

/// `s` with each of our parameters replaced by one space (whitespace separates parameters
/// anywhere, so the others parse as before).
fn without_key_value_parameters(s: &str, parameters: &[Parameter<'_>]) -> String {
    let mut rest = String::with_capacity(s.len());
    let mut copied = 0;
    for parameter in parameters.iter().filter(|p| is_own(p)) {
        rest.push_str(&s[copied..parameter.span.start]);
        rest.push(' ');
        copied = parameter.span.end;
    }
    rest.push_str(&s[copied..]);
    rest
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
        return connect_with(&config, NoTls, |_| false, options).await;
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
    connect_with(&config, connector, refused, options).await
}

/// Connects with `tls` and drives the connection on the current Tokio runtime. `refused_tls`
/// tells a failure where the server refused TLS (see [`Tracked::refused`]).
async fn connect_with<T>(
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

/// Makes a session's time zone UTC (see [`connect_with`]).
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
    use proptest::prelude::*;
    use rustauth_core::error::RustAuthError;
    use std::time::Duration;

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

    // ---- The property test: our split agrees with tokio-postgres' parser.

    /// Characters that mean something to one of the grammars, and some that are not ASCII.
    const CHARS: &[char] = &[
        'a', 'Z', '0', '_', '-', '?', '&', '=', '\'', '\\', '%', ' ', '\t', '@', '/', ':', '#',
        '+', ',', '"', 'é', '密', '\u{a0}',
    ];
    /// Passwords that try to smuggle a parameter in.
    const HOSTILE: &[&str] = &[
        "pa?ss",
        "pa?ss&sslmode=disable",
        "x sslmode=disable",
        "' sslmode=disable '",
        "a  b",
        "%41%",
        "p@ss:w/rd?#",
        "\\'",
        "mot de passe é密",
        "",
    ];
    const SSLMODES: &[&str] = &[
        "disable",
        "allow",
        "prefer",
        "require",
        "verify-ca",
        "verify-full",
    ];

    fn word(length: Range<usize>) -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(CHARS), length)
            .prop_map(|chars| chars.into_iter().collect())
    }

    fn password() -> impl Strategy<Value = String> {
        prop_oneof![
            word(0..14),
            prop::sample::select(HOSTILE).prop_map(str::to_owned)
        ]
    }

    fn path() -> impl Strategy<Value = String> {
        word(1..8).prop_map(|name| format!("/tmp/{name}.pem"))
    }

    /// One `key=value` parameter to render.
    #[derive(Debug, Clone)]
    struct Entry {
        key: &'static str,
        value: String,
        own: bool,
    }

    /// How one parameter is written: which characters are percent-encoded (URL), spaces
    /// around `=` and quoting (key/value).
    #[derive(Debug, Clone, Copy)]
    struct Style {
        mask: u64,
        before: usize,
        after: usize,
        quoted: bool,
        tab: bool,
    }

    fn style() -> impl Strategy<Value = Style> {
        (
            any::<u64>(),
            0usize..3,
            0usize..3,
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(|(mask, before, after, quoted, tab)| Style {
                mask,
                before,
                after,
                quoted,
                tab,
            })
    }

    #[derive(Debug, Clone)]
    struct Case {
        url: bool,
        scheme: &'static str,
        host: &'static str,
        port: u16,
        user: String,
        password: Option<String>,
        /// URL: user and password before the `@` (else as query parameters).
        credentials_in_authority: bool,
        dbname: String,
        /// URL: the database as the path (else as a query parameter).
        dbname_in_path: bool,
        connect_timeout: Option<i64>,
        sslmode: Option<&'static str>,
        sslrootcert: Option<String>,
        statement_mode: Option<&'static str>,
        client_cert: Option<(String, String)>,
        /// Every parameter not in the URL's authority or path, in the order written.
        entries: Vec<Entry>,
        styles: Vec<Style>,
        masks: [u64; 3],
    }

    fn case() -> impl Strategy<Value = Case> {
        let base = (
            (
                any::<bool>(),
                prop::sample::select(&["postgres", "postgresql"][..]),
            ),
            prop::sample::select(&["db.example.com", "127.0.0.1", "localhost"][..]),
            1u16..,
            (word(1..8), prop::option::of(password()), any::<bool>()),
            (word(1..8), any::<bool>()),
            (
                prop::option::of(word(0..8)),
                prop::option::of(word(0..8)),
                prop::option::of(prop::sample::select(
                    &["any", "read-write", "read-only"][..],
                )),
                prop::option::of(-3i64..100),
            ),
            (
                prop::option::of(prop::sample::select(SSLMODES)),
                prop::option::of(path()),
                prop::option::of(prop::sample::select(&["prepared", "unprepared"][..])),
                prop::option::of((path(), path())),
            ),
            prop::collection::vec(style(), 16),
            any::<[u64; 3]>(),
        );
        base.prop_flat_map(
            |(
                (url, scheme),
                host,
                port,
                (user, password, credentials_in_authority),
                (dbname, dbname_in_path),
                (options, application_name, target_session_attrs, connect_timeout),
                (sslmode, sslrootcert, statement_mode, client_cert),
                styles,
                masks,
            )| {
                let mut entries = Vec::new();
                let mut push = |key: &'static str, value: Option<String>, own: bool| {
                    if let Some(value) = value {
                        entries.push(Entry { key, value, own });
                    }
                };
                if !url {
                    push("host", Some(host.to_owned()), false);
                    push("port", Some(port.to_string()), false);
                }
                if !url || !credentials_in_authority {
                    push("user", Some(user.clone()), false);
                    push("password", password.clone(), false);
                }
                if !url || !dbname_in_path {
                    push("dbname", Some(dbname.clone()), false);
                }
                push("options", options, false);
                push("application_name", application_name, false);
                push(
                    "target_session_attrs",
                    target_session_attrs.map(str::to_owned),
                    false,
                );
                push(
                    "connect_timeout",
                    connect_timeout.map(|t| t.to_string()),
                    false,
                );
                push("sslmode", sslmode.map(str::to_owned), true);
                push("sslrootcert", sslrootcert.clone(), true);
                push("statement_mode", statement_mode.map(str::to_owned), true);
                push("sslcert", client_cert.clone().map(|(cert, _)| cert), true);
                push("sslkey", client_cert.clone().map(|(_, key)| key), true);
                let case = Case {
                    url,
                    scheme,
                    host,
                    port,
                    user,
                    password,
                    credentials_in_authority,
                    dbname,
                    dbname_in_path,
                    connect_timeout,
                    sslmode,
                    sslrootcert,
                    statement_mode,
                    client_cert,
                    entries: Vec::new(),
                    styles,
                    masks,
                };
                (Just(case), Just(entries).prop_shuffle()).prop_map(|(mut case, entries)| {
                    case.entries = entries;
                    case
                })
            },
        )
    }

    fn percent_encode(c: char) -> String {
        let mut buffer = [0u8; 4];
        c.encode_utf8(&mut buffer)
            .bytes()
            .map(|byte| format!("%{byte:02X}"))
            .collect()
    }

    /// Percent-encodes what must be (`%`, `@` — the first `@` anywhere ends the credentials —
    /// and `must`) and whatever else `mask` picks.
    fn url_encode(value: &str, must: &str, mask: u64) -> String {
        value
            .chars()
            .enumerate()
            .map(|(index, c)| {
                if c == '%' || c == '@' || must.contains(c) || (mask >> (index % 64)) & 1 == 1 {
                    percent_encode(c)
                } else {
                    c.to_string()
                }
            })
            .collect()
    }

    /// A key/value value: quoted with `\'` and `\\`, or bare with every space, quote and
    /// backslash escaped.
    fn key_value_encode(value: &str, quoted: bool) -> String {
        if quoted || value.is_empty() {
            format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
        } else {
            value
                .chars()
                .map(|c| {
                    if c == '\\' || c == '\'' || c.is_whitespace() {
                        format!("\\{c}")
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        }
    }

    /// The connection string of `case`, with or without our own parameters.
    fn render(case: &Case, entries: &[Entry], with_own: bool) -> String {
        let written = entries
            .iter()
            .zip(case.styles.iter().cycle())
            .filter(|(entry, _)| with_own || !entry.own);
        if !case.url {
            return written
                .map(|(entry, style)| {
                    format!(
                        "{}{}{}={}{}",
                        if style.tab { "\t" } else { " " },
                        entry.key,
                        " ".repeat(style.before),
                        " ".repeat(style.after),
                        key_value_encode(&entry.value, style.quoted)
                    )
                })
                .collect();
        }
        let mut s = format!("{}://", case.scheme);
        if case.credentials_in_authority {
            s.push_str(&url_encode(&case.user, ":", case.masks[0]));
            if let Some(password) = &case.password {
                s.push(':');
                s.push_str(&url_encode(password, "", case.masks[1]));
            }
            s.push('@');
        }
        s.push_str(&format!("{}:{}", case.host, case.port));
        if case.dbname_in_path {
            s.push('/');
            s.push_str(&url_encode(&case.dbname, "?", case.masks[2]));
        }
        let query: Vec<String> = written
            .map(|(entry, style)| {
                format!(
                    "{}={}",
                    url_encode(entry.key, "", style.mask.rotate_left(23)),
                    url_encode(&entry.value, "&", style.mask)
                )
            })
            .collect();
        if !query.is_empty() {
            s.push('?');
            s.push_str(&query.join("&"));
        }
        s
    }

    fn expected_tls(case: &Case) -> TlsMode {
        match case.sslmode {
            None | Some("allow" | "prefer") => TlsMode::Prefer,
            Some("disable") => TlsMode::Disable,
            Some("require") => TlsMode::Require,
            Some("verify-ca") => TlsMode::VerifyCa,
            Some("verify-full") => TlsMode::VerifyFull,
            Some(other) => panic!("{other}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// What reaches tokio-postgres is exactly what it parses from the same string
        /// without our parameters, and our parameters are read as written.
        #[test]
        fn settings_match_what_tokio_postgres_parses(case in case()) {
            let with = render(&case, &case.entries, true);
            let without = render(&case, &case.entries, false);
            let options = ConnectOptions::parse(&with)
                .unwrap_or_else(|error| panic!("{with:?}: {error}"));

            let mut expected = Config::from_str(&without)
                .unwrap_or_else(|error| panic!("tokio-postgres on {without:?}: {error}"));
            // The generator is right: tokio-postgres sees the hostile values as generated.
            prop_assert_eq!(expected.get_password(), case.password.as_deref().map(str::as_bytes));
            prop_assert_eq!(expected.get_user(), Some(case.user.as_str()));
            prop_assert_eq!(expected.get_dbname(), Some(case.dbname.as_str()));
            prop_assert_eq!(expected.get_ports(), [case.port]);
            let tls = expected_tls(&case);
            expected.ssl_mode(tls.ssl_mode());
            if case.connect_timeout.is_none() {
                expected.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
            }
            // `Config`'s equality covers every setting (hosts, ports, user, password, dbname,
            // options, application_name, target_session_attrs, timeouts, ssl_mode, ...).
            prop_assert_eq!(&options.config, &expected, "{:?}", with);

            prop_assert_eq!(options.tls, tls);
            prop_assert_eq!(
                options.root_cert,
                case.sslrootcert.as_ref().map(|path| RootCerts::File(PathBuf::from(path)))
            );
            prop_assert_eq!(
                options.statements,
                if case.statement_mode == Some("unprepared") {
                    StatementMode::Unprepared
                } else {
                    StatementMode::Prepared
                }
            );
            prop_assert_eq!(
                options.client_cert,
                case.client_cert.as_ref().map(|(cert, key)| ClientCert {
                    cert: PathBuf::from(cert),
                    key: PathBuf::from(key),
                })
            );
        }

        /// One of our parameters given twice with different values is refused, naming it
        /// and never showing a password.
        #[test]
        fn conflicting_duplicates_are_refused(
            case in case(),
            which in 0usize..3,
            at in any::<prop::sample::Index>(),
        ) {
            let (key, first, second) = match which {
                0 => ("sslmode", "require", "disable"),
                1 => ("sslrootcert", "/tmp/a.pem", "/tmp/b.pem"),
                _ => ("statement_mode", "prepared", "unprepared"),
            };
            let mut entries: Vec<Entry> =
                case.entries.iter().filter(|entry| entry.key != key).cloned().collect();
            entries.push(Entry { key, value: first.to_owned(), own: true });
            let index = at.index(entries.len() + 1);
            entries.insert(index, Entry { key, value: second.to_owned(), own: true });
            let s = render(&case, &entries, true);
            let text = match ConnectOptions::parse(&s).map_err(RustAuthError::from) {
                Err(RustAuthError::Adapter(text)) => text,
                other => panic!("{s:?}: {other:?}"),
            };
            prop_assert!(text.contains(&format!("`{key}` is given twice")), "{}", text);
            if let Some(password) = case.password.as_deref().filter(|p| p.len() > 3) {
                prop_assert!(!text.contains(password), "{}", text);
            }
        }
    }
}
