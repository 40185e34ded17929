//! Splitting a connection string into parameters with the grammar tokio-postgres uses for
//! each form (a `postgres://` URL, or libpq key/value pairs), so that ours can be read and
//! removed and the rest reach `tokio_postgres::Config::from_str` byte for byte.

use std::borrow::Cow;
use std::ops::Range;

use super::options::OWN_PARAMETERS;
use crate::error::{invalid_config, Result};

/// One parameter of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Parameter<'a> {
    /// The key, percent-decoded in a URL.
    pub(super) key: Cow<'a, str>,
    /// The value as tokio-postgres decodes it (unquoted and unescaped, or percent-decoded).
    pub(super) value: Vec<u8>,
    /// Where the whole `key=value` text is in the string (empty for a URL's user, password
    /// and database, which are never ours).
    span: Range<usize>,
}

/// A connection string taken apart: every parameter, and the string without ours.
#[derive(Debug)]
pub(super) struct Split<'a> {
    pub(super) parameters: Vec<Parameter<'a>>,
    pub(super) rest: String,
}

/// Splits `s` into parameters exactly as `tokio_postgres::Config::from_str` does (a URL when
/// it starts with `postgres://` or `postgresql://`, else key/value pairs) and removes
/// [`OWN_PARAMETERS`] from the text.
///
/// By hand because no library splits the way tokio-postgres does: its URL parser is libpq's
/// "sloppy" one (the credentials end at the first `@` of the whole string, so a password may
/// hold a raw `?`, `/` or `:`, which a WHATWG parser such as the `url` crate would split at),
/// and its key/value parser is private. Both are written here to accept what tokio-postgres
/// 0.7 accepts (its grammar lives in that crate's `src/config.rs`); the property test in this
/// module checks that the two agree.
pub(super) fn split(s: &str) -> Result<Split<'_>> {
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
            return Err(invalid_config(format!(
                "unterminated parameter at byte {at} (no `=`)"
            )));
        };
        let key = percent_encoding::percent_decode(&s.as_bytes()[at..equals])
            .decode_utf8()
            .map_err(|_| invalid_config(format!("the parameter name at byte {at} is not UTF-8")))?;
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
            return Err(invalid_config(format!(
                "unexpected `=` at byte {start} (expected a parameter name)"
            )));
        }
        while chars.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        match chars.next() {
            Some((_, '=')) => {}
            // Neither the word nor the character is shown: with an unquoted password that
            // holds a space, they are part of the password.
            Some((index, _)) => {
                return Err(invalid_config(format!(
                    "expected `=` at byte {index} after the word at byte {start}"
                )))
            }
            None => {
                return Err(invalid_config(format!(
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
                    None => return Err(invalid_config("unterminated quoted parameter value")),
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
                return Err(invalid_config(format!(
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::ops::Range;
    use std::path::PathBuf;
    use std::str::FromStr;

    use proptest::prelude::*;
    use rustauth_core::error::RustAuthError;
    use tokio_postgres::Config;

    use super::super::options::{ConnectOptions, StatementMode, TlsMode, DEFAULT_CONNECT_TIMEOUT};
    use crate::tls::{ClientCert, RootCerts};

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
