//! Issue #12: surviving a primary failover with bounded waits. Real servers only: a primary
//! and a synchronous streaming standby (tests/support/replication.rs), stopped with
//! `pg_ctl stop -m immediate` and promoted with `pg_ctl promote`, and a "silent host" that
//! accepts TCP connections and never answers.
//!
//! The bounds (correctness bounds on how long a call may take while no primary exists, not
//! speed measurements; see `CALL_BOUND`):
//! - a connect through a multi-host URL whose first host is silent succeeds within
//!   `connect_timeout` + 2 s; when no host answers, the error comes back within
//!   (number of hosts) × `connect_timeout` + 2 s and names every host;
//! - during an outage every call answers (success or a connection/failover error) within
//!   `connect_timeout` + 1 s (the bound the README promises: one connect cycle plus the
//!   200 ms back-off, rounded up) + 2 s slack for a loaded 2-core machine,
//!   whatever the number of callers;
//! - once the standby is promoted, the first call succeeds within that same bound, and every
//!   call that starts later than that succeeds.
//!
//! `RUSTAUTH_PG_FAILOVER=full` turns the short CI version into a soak: more failovers back
//! and forth (`RUSTAUTH_PG_FAILOVER_ROUNDS`, default 8), longer phases, and a 20-second
//! outage for the 32 callers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::{schema, user, user_by_email};
use crate::support;

use support::app::{self, cookies, json};

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Response, StatusCode};
use rustauth_core::api::AuthRouter;
use rustauth_core::db::{Count, DbAdapter};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{
    RateLimitConsumeInput, RateLimitOptions, RateLimitRule, RateLimitStore, RustAuthOptions,
    SessionOptions,
};
use rustauth_tokio_postgres::{
    TokioPostgresAdapter, TokioPostgresConnection, TokioPostgresRateLimitStore, TokioPostgresStores,
};
use serde_json::Value;
use support::cluster::Cluster;
use support::replication::{multi_host_key_value, multi_host_url, ReplicaPair, SilentHost};
use tokio_postgres::Client;

/// `connect_timeout` in every URL of these tests, in seconds.
const CONNECT_TIMEOUT_SECS: u64 = 2;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(CONNECT_TIMEOUT_SECS);
/// Room for a loaded 2-core machine (other builds, the other tests of this binary).
const SLACK: Duration = Duration::from_secs(2);
/// The longest any call may take while no primary exists (and around a promotion):
/// `connect_timeout` + 1 s, the bound the README promises (rounded up), plus [`SLACK`].
const CALL_BOUND: Duration = Duration::from_secs(CONNECT_TIMEOUT_SECS + 1 + 2);
/// A call still running after this is reported as hung (and fails the test); it only keeps
/// a failing run from taking forever.
const HANG: Duration = Duration::from_secs(30);
/// A password in the URLs: the clusters trust 127.0.0.1 and ignore it, and no error may
/// show it.
const PASSWORD: &str = "pw-Xq7-never-shown";
/// The rate-limit rule of the direct consumes: at most this many per key.
const RATE_LIMIT_MAX: u64 = 25;
/// Consumes per rate-limit key (so that keys fill up, and some of them across a failover).
const CONSUMES_PER_KEY: usize = 40;

fn soak() -> bool {
    std::env::var("RUSTAUTH_PG_FAILOVER").is_ok_and(|value| value == "full")
}

fn params(extra: &str) -> String {
    let base = format!("target_session_attrs=read-write&connect_timeout={CONNECT_TIMEOUT_SECS}");
    if extra.is_empty() {
        base
    } else {
        format!("{base}&{extra}")
    }
}

/// Whether an error text is what a caller may see during a failover: the connection was
/// lost, reconnecting failed (or is backing off after a failed cycle), or the server is
/// shutting down, starting, in recovery or read-only. Anything else (a constraint violation,
/// a decoding error, a panic's text) is a bug.
fn is_failover_error(text: &str) -> bool {
    const NEEDLES: [&str; 20] = [
        "connection closed",
        "connection lost",
        "connection is lost",
        "reconnect",
        "error connecting to server",
        "error communicating with the server",
        "57P01",
        "57P02",
        "57P03",
        "08001",
        "08003",
        "08006",
        "25006",
        "read-only",
        "does not allow writes",
        "Connection refused",
        "Connection reset",
        "unexpected EOF",
        "timed out",
        "timeout",
    ];
    NEEDLES.iter().any(|needle| text.contains(needle))
}

/// Whether `text` names host 127.0.0.1 with `port` (as `127.0.0.1:<port>` or with the port
/// as a word of its own).
fn names_host(text: &str, port: u16) -> bool {
    let port = port.to_string();
    text.contains("127.0.0.1")
        && text.match_indices(&port).any(|(at, _)| {
            let before = text[..at].chars().next_back();
            let after = text[at + port.len()..].chars().next();
            !before.is_some_and(|c| c.is_ascii_digit())
                && !after.is_some_and(|c| c.is_ascii_digit())
        })
}

/// The database `label` on the pair's primary, with the schema created through an adapter
/// connected with the multi-host URL.
async fn database_with_schema(pair: &ReplicaPair, label: &str) -> String {
    let db = pair.primary().create_database(label).await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&pair.url(&db, &params("")), schema())
        .await
        .expect("connect with the multi-host URL");
    adapter
        .create_schema(&schema(), None)
        .await
        .expect("create_schema");
    // A synchronous commit is flushed on the standby, not necessarily replayed: wait until the
    // standby shows the database and its tables, so that a connection listed to it lands there.
    let standby = pair.standby().url(&db);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = match tokio_postgres::connect(&standby, tokio_postgres::NoTls).await {
            Ok((client, connection)) => {
                tokio::spawn(connection);
                client
                    .simple_query("SELECT 1 FROM users LIMIT 1")
                    .await
                    .is_ok()
            }
            Err(_) => false,
        };
        if ready {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby never replayed the new database"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    db
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() - 1) as f64 * fraction).round() as usize;
    sorted[index]
}

// ---------------------------------------------------------------------------------------------
// Timed calls.

/// How a call ended.
#[derive(Debug, Clone)]
enum Outcome {
    Ok,
    /// An error a failover explains (see [`is_failover_error`]).
    Failover(String),
    /// Anything else: a bug.
    Other(String),
    /// No answer within [`HANG`].
    Hung,
}

/// One call: what, when it started (since the test's epoch), how long it took, how it ended.
#[derive(Debug, Clone)]
struct Call {
    what: &'static str,
    task: usize,
    start: Duration,
    took: Duration,
    outcome: Outcome,
}

impl Call {
    fn end(&self) -> Duration {
        self.start + self.took
    }

    fn is_ok(&self) -> bool {
        matches!(self.outcome, Outcome::Ok)
    }
}

/// Runs `future` with the [`HANG`] watchdog; returns when it started, how long it took and
/// its output (`None`: hung).
async fn timed<T>(
    epoch: Instant,
    future: impl std::future::Future<Output = T>,
) -> (Duration, Duration, Option<T>) {
    let start = epoch.elapsed();
    let started = Instant::now();
    let output = tokio::time::timeout(HANG, future).await.ok();
    (start, started.elapsed(), output)
}

/// The outcome of an adapter or store call: its errors must be adapter errors.
fn outcome_of<T>(result: &Result<T, RustAuthError>) -> Outcome {
    match result {
        Ok(_) => Outcome::Ok,
        Err(error @ RustAuthError::Adapter(text)) if is_failover_error(text) => {
            Outcome::Failover(error.to_string())
        }
        Err(error) => Outcome::Other(format!("{error:?}")),
    }
}

/// What a failover did to a set of calls, and the checks every failover test makes.
struct Timeline<'a> {
    calls: &'a [Call],
    /// When the primary was stopped, and when the promotion had finished (since the epoch).
    stopped: Duration,
    promoted: Duration,
}

impl Timeline<'_> {
    /// Every call answered within [`CALL_BOUND`]; every error is a failover error; nothing
    /// failed before the primary stopped; the first success after the promotion came within
    /// [`CALL_BOUND`] of it; every call that started later than that succeeded. Returns the
    /// problems found (empty: all good) and prints the figures.
    fn check(&self, label: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let calls = self.calls;
        let slow: Vec<&Call> = calls
            .iter()
            .filter(|call| call.took > CALL_BOUND || matches!(call.outcome, Outcome::Hung))
            .collect();
        if !slow.is_empty() {
            let mut tooks: Vec<Duration> = slow.iter().map(|call| call.took).collect();
            tooks.sort();
            problems.push(format!(
                "{label}: {} of {} calls took longer than the bound {CALL_BOUND:?} (longest \
                 {:?}); first: {:?}",
                slow.len(),
                calls.len(),
                tooks.last().copied().unwrap_or_default(),
                slow.first()
            ));
        }
        let other: Vec<&Call> = calls
            .iter()
            .filter(|call| matches!(call.outcome, Outcome::Other(_)))
            .collect();
        if let Some(Call {
            what,
            outcome: Outcome::Other(text),
            ..
        }) = other.first()
        {
            problems.push(format!(
                "{label}: {} calls failed with errors that are not connection/failover \
                 errors; first ({what}): {text}",
                other.len()
            ));
        }
        let early: Vec<&Call> = calls
            .iter()
            .filter(|call| call.end() < self.stopped && !call.is_ok())
            .collect();
        if !early.is_empty() {
            problems.push(format!(
                "{label}: {} calls failed before the primary was stopped; first: {:?}",
                early.len(),
                early.first()
            ));
        }
        let first_success = calls
            .iter()
            .filter(|call| call.is_ok() && call.start >= self.promoted)
            .map(Call::end)
            .min();
        match first_success {
            Some(end) if end - self.promoted <= CALL_BOUND => {}
            Some(end) => problems.push(format!(
                "{label}: the first success after the promotion came {:?} after it (bound \
                 {CALL_BOUND:?})",
                end - self.promoted
            )),
            None => problems.push(format!("{label}: no call succeeded after the promotion")),
        }
        let settled = self.promoted + CALL_BOUND;
        let late: Vec<&Call> = calls
            .iter()
            .filter(|call| call.start >= settled && !call.is_ok())
            .collect();
        if !late.is_empty() {
            problems.push(format!(
                "{label}: {} calls that started more than {CALL_BOUND:?} after the promotion \
                 failed; first: {:?}",
                late.len(),
                late.first()
            ));
        }
        if !calls.iter().any(|call| call.start >= settled) {
            problems.push(format!(
                "{label}: no call started {CALL_BOUND:?} after the promotion (traffic too short)"
            ));
        }

        let mut durations: Vec<Duration> = calls.iter().map(|call| call.took).collect();
        durations.sort();
        let mut errors: Vec<Duration> = calls
            .iter()
            .filter(|call| !call.is_ok())
            .map(|call| call.took)
            .collect();
        errors.sort();
        let last_failure = calls
            .iter()
            .filter(|call| !call.is_ok())
            .map(Call::end)
            .max();
        let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
        for call in calls {
            if let Outcome::Failover(text) = &call.outcome {
                // Group by the text without numbers (attempt counts, ports).
                let shape: String = text
                    .chars()
                    .map(|c| if c.is_ascii_digit() { '#' } else { c })
                    .take(160)
                    .collect();
                *kinds.entry(shape).or_default() += 1;
            }
        }
        eprintln!(
            "[{label}] {} calls, {} failed; call duration p50 {:?} p99 {:?} max {:?}; failed \
             calls p50 {:?} max {:?}; outage {:?} (stop → promoted); first success {} after \
             the promotion finished; last failure {} after it",
            calls.len(),
            errors.len(),
            percentile(&durations, 0.5),
            percentile(&durations, 0.99),
            durations.last().copied().unwrap_or_default(),
            percentile(&errors, 0.5),
            errors.last().copied().unwrap_or_default(),
            self.promoted - self.stopped,
            first_success.map_or("never".to_owned(), |end| format!(
                "{:?}",
                end - self.promoted
            )),
            last_failure.map_or("none".to_owned(), |end| format!(
                "{:?}",
                end.saturating_sub(self.promoted)
            )),
        );
        let mut longest: BTreeMap<&str, Duration> = BTreeMap::new();
        for call in calls {
            let slot = longest.entry(call.what).or_default();
            *slot = (*slot).max(call.took);
        }
        eprintln!("[{label}] longest call by kind: {longest:?}");
        for (shape, count) in kinds {
            eprintln!("[{label}]   {count} × {shape}");
        }
        problems
    }
}

// ---------------------------------------------------------------------------------------------
// (a) A silent first host.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_first_host_is_skipped_within_connect_timeout() {
    let cluster = Cluster::start("silent_host", |_: &Path| String::new(), "").await;
    let db = cluster.create_database("silent").await;
    TokioPostgresAdapter::connect_with_schema(&cluster.url(&db), schema())
        .await
        .expect("connect")
        .create_schema(&schema(), None)
        .await
        .expect("create_schema");
    let silent = SilentHost::start();
    let silent_too = SilentHost::start();
    let closed = support::server::free_port().expect("a free port");
    let with_password = |ports: &[u16], extra: &str| {
        multi_host_url(
            ports,
            &db,
            &format!("connect_timeout={CONNECT_TIMEOUT_SECS}{extra}"),
        )
        .replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
    };
    let url = with_password(&[silent.port, cluster.port], "");
    let key_value = multi_host_key_value(
        &[silent.port, cluster.port],
        &db,
        &format!("connect_timeout={CONNECT_TIMEOUT_SECS} password={PASSWORD}"),
    );
    let pooled = with_password(&[silent.port, cluster.port], "&max_connections=3");

    // Every constructor, at the same time; each must succeed within connect_timeout + 2 s.
    let bound = CONNECT_TIMEOUT + SLACK;
    let epoch = Instant::now();
    let (adapter, stores, key_value_adapter, connection, store, set) = tokio::join!(
        timed(epoch, TokioPostgresAdapter::connect(&url)),
        timed(epoch, TokioPostgresStores::connect(&url)),
        timed(epoch, TokioPostgresAdapter::connect(&key_value)),
        timed(epoch, TokioPostgresConnection::connect(&url)),
        timed(
            epoch,
            TokioPostgresRateLimitStore::connect(&url, "rate_limits")
        ),
        timed(
            epoch,
            TokioPostgresStores::builder()
                .schema(schema())
                .connect(&pooled)
        ),
    );
    let took = [
        ("TokioPostgresAdapter::connect(url)", adapter.1),
        ("TokioPostgresStores::connect(url)", stores.1),
        (
            "TokioPostgresAdapter::connect(key/value)",
            key_value_adapter.1,
        ),
        ("TokioPostgresConnection::connect(url)", connection.1),
        ("TokioPostgresRateLimitStore::connect(url)", store.1),
        ("TokioPostgresStores (max_connections=3)", set.1),
    ];
    eprintln!("[silent first host] connect durations: {took:?}");
    for (what, took) in took {
        assert!(
            took <= bound,
            "{what} took {took:?} with a silent first host (bound: connect_timeout + 2 s = \
             {bound:?})"
        );
    }
    let adapter = adapter.2.expect("not hung").expect("connect (adapter)");
    let stores = stores.2.expect("not hung").expect("connect (stores)");
    let key_value_adapter = key_value_adapter
        .2
        .expect("not hung")
        .expect("connect (key/value)");
    connection
        .2
        .expect("not hung")
        .expect("connect (connection)");
    let store = store
        .2
        .expect("not hung")
        .expect("connect (rate-limit store)");
    let set = set
        .2
        .expect("not hung")
        .expect("connect (max_connections=3)");
    assert!(
        silent.accepted() >= 8,
        "every connection tried the silent host first ({} accepted)",
        silent.accepted()
    );
    // They are connected to the real server.
    for adapter in [&adapter, &stores.adapter, &key_value_adapter, &set.adapter] {
        assert_eq!(adapter.count(Count::new("user")).await.expect("count"), 0);
    }
    let consume = |store: TokioPostgresRateLimitStore| async move {
        store
            .consume(RateLimitConsumeInput {
                key: "silent".to_owned(),
                rule: RateLimitRule {
                    window: time::Duration::seconds(60),
                    max: 10,
                },
                now_ms: 1_700_000_000_000,
            })
            .await
            .expect("consume")
    };
    assert!(consume(store).await.permitted);
    assert!(consume(stores.rate_limit.clone()).await.permitted);

    // No host answers: the error names every host and comes back within
    // (hosts) × connect_timeout + 2 s.
    let cases = [
        ("silent, silent", vec![silent.port, silent_too.port]),
        ("silent, closed port", vec![silent.port, closed]),
    ];
    for (label, ports) in cases {
        let bound = CONNECT_TIMEOUT * u32::try_from(ports.len()).unwrap() + SLACK;
        let url = with_password(&ports, "");
        let key_value = multi_host_key_value(
            &ports,
            &db,
            &format!("connect_timeout={CONNECT_TIMEOUT_SECS} password={PASSWORD}"),
        );
        let (url_result, key_value_result) = tokio::join!(
            timed(epoch, TokioPostgresAdapter::connect(&url)),
            timed(epoch, TokioPostgresStores::connect(&key_value)),
        );
        for (form, took, result) in [
            ("URL", url_result.1, url_result.2.map(|r| r.map(|_| ()))),
            (
                "key/value",
                key_value_result.1,
                key_value_result.2.map(|r| r.map(|_| ())),
            ),
        ] {
            let error = result
                .unwrap_or_else(|| panic!("{label} ({form}): connect hung for {HANG:?}"))
                .expect_err("no host answers");
            let text = error.to_string();
            eprintln!("[{label} ({form})] failed after {took:?}: {text}");
            assert!(
                matches!(error, RustAuthError::Adapter(_)),
                "{label} ({form}): {error:?}"
            );
            assert!(
                took <= bound,
                "{label} ({form}): the error took {took:?} (bound: {} × connect_timeout + 2 s \
                 = {bound:?})",
                ports.len()
            );
            for port in &ports {
                assert!(
                    names_host(&text, *port),
                    "{label} ({form}): the error does not name host 127.0.0.1:{port}: {text}"
                );
            }
            // The silent host's failure is a timeout.
            assert!(
                text.contains("time"),
                "{label} ({form}): the error does not say the silent host timed out: {text}"
            );
            assert!(
                !text.contains(PASSWORD),
                "{label} ({form}): the error shows the password: {text}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// (b) A real failover under RustAuth traffic, and repeated ones in the soak.

/// RustAuth's router on stores connected with a multi-host URL.
struct App {
    label: &'static str,
    stores: TokioPostgresStores,
    router: AuthRouter,
}

impl App {
    async fn new(label: &'static str, url: &str) -> App {
        let stores = TokioPostgresStores::connect_with_schema(url, schema())
            .await
            .unwrap_or_else(|error| panic!("{label}: connect stores: {error}"));
        // Rate limiting on, through the SQL store; the special sign-up rule (3 per 10 s and
        // IP) would turn the traffic into 429s, so the routes get roomy rules of their own.
        let roomy = RateLimitRule {
            window: time::Duration::seconds(60),
            max: 1_000_000,
        };
        let options = RustAuthOptions {
            rate_limit: RateLimitOptions::new()
                .enabled(true)
                .custom_rule("/sign-up/email", roomy.clone())
                .custom_rule("/get-session", roomy),
            // Every get-session refreshes the session's expiry (a write).
            session: SessionOptions::new().update_age(time::Duration::ZERO),
            ..app::options()
        };
        let router = app::router(&stores, options);
        App {
            label,
            stores,
            router,
        }
    }

    fn adapter(&self) -> &TokioPostgresAdapter {
        self.stores.adapter_ref()
    }

    /// Sends a request; `Ok` is a 200 response, `Err` the outcome of anything else.
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
        cookie: Option<&str>,
        ip: IpAddr,
    ) -> Result<Response<Vec<u8>>, Outcome> {
        let request = app::request(method, path, body, cookie, ip);
        match self.router.handle_async(request).await {
            Ok(response) if response.status() == StatusCode::OK => Ok(response),
            Ok(response) => {
                let body = String::from_utf8_lossy(response.body()).into_owned();
                let json = serde_json::from_str::<Value>(&body).unwrap_or_default();
                let message = json["message"].as_str().unwrap_or_default().to_owned();
                let server_error = response.status() == StatusCode::INTERNAL_SERVER_ERROR;
                if server_error && is_failover_error(&message) {
                    Err(Outcome::Failover(message))
                } else if server_error
                    && path == "/sign-up/email"
                    && json["code"] == "FAILED_TO_CREATE_SESSION"
                {
                    // rustauth-core 0.3.2 replaces any error of the session insert inside the
                    // sign-up transaction by this fixed text (`create_session(..).map_err(|_|
                    // FailedToCreateSession)`), so the adapter's words are lost. It is a storage
                    // failure of that one insert; that none happens outside the outage is
                    // checked like every other failure.
                    Err(Outcome::Failover(format!(
                        "{body} (cause dropped by rustauth-core)"
                    )))
                } else {
                    Err(Outcome::Other(format!("{}: {body}", response.status())))
                }
            }
            Err(error) => {
                let text = error.to_string();
                if is_failover_error(&text) {
                    Err(Outcome::Failover(text))
                } else {
                    Err(Outcome::Other(format!("{error:?}")))
                }
            }
        }
    }
}

/// What one traffic task saw and what the server acknowledged to it.
#[derive(Debug, Default)]
struct Traffic {
    calls: Vec<Call>,
    /// Acknowledged sign-ups: (email, user id).
    sign_ups: Vec<(String, String)>,
    /// Acknowledged session refreshes: (token, the `expiresAt` the response reported).
    refreshes: Vec<(String, String)>,
    /// Per rate-limit key: consumes permitted, denied, and failed (outcome unknown).
    consumes: BTreeMap<String, [u64; 3]>,
}

/// One task of RustAuth traffic until `stop`: sign up a new user, get the session (which
/// refreshes it), consume a rate-limit token; again.
async fn traffic(
    app: Arc<App>,
    task: usize,
    round: usize,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> Traffic {
    let mut seen = Traffic::default();
    let ip = IpAddr::V4(Ipv4Addr::new(10, u8::try_from(task).unwrap(), 0, 1));
    let now_ms = 1_700_000_000_000 + i64::try_from(round).unwrap() * 10_000_000;
    let mut cookie: Option<String> = None;
    let mut n = 0_usize;
    while !stop.load(Ordering::SeqCst) {
        let mut failed = false;

        let email = format!("{}-r{round}-t{task}-{n}@example.com", app.label);
        let body =
            serde_json::json!({ "name": "Failover", "email": email, "password": "secret123" })
                .to_string();
        let (start, took, result) = timed(
            epoch,
            app.send(Method::POST, "/sign-up/email", &body, None, ip),
        )
        .await;
        let outcome = match result {
            None => Outcome::Hung,
            Some(Ok(response)) => {
                let id = json(&response)["user"]["id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("sign-up response without user.id"))
                    .to_owned();
                seen.sign_ups.push((email, id));
                cookie = Some(cookies(&response));
                Outcome::Ok
            }
            Some(Err(outcome)) => outcome,
        };
        failed |= !matches!(outcome, Outcome::Ok);
        seen.calls.push(Call {
            what: "POST /sign-up/email",
            task,
            start,
            took,
            outcome,
        });

        if let Some(cookie) = &cookie {
            let (start, took, result) = timed(
                epoch,
                app.send(Method::GET, "/get-session", "", Some(cookie), ip),
            )
            .await;
            let outcome = match result {
                None => Outcome::Hung,
                Some(Ok(response)) => {
                    let body = json(&response);
                    match (
                        body["session"]["token"].as_str(),
                        body["session"]["expiresAt"].as_str(),
                    ) {
                        (Some(token), Some(expires_at)) => {
                            seen.refreshes
                                .push((token.to_owned(), expires_at.to_owned()));
                            Outcome::Ok
                        }
                        _ => Outcome::Other(format!("get-session without a session: {body}")),
                    }
                }
                Some(Err(outcome)) => outcome,
            };
            failed |= !matches!(outcome, Outcome::Ok);
            seen.calls.push(Call {
                what: "GET /get-session",
                task,
                start,
                took,
                outcome,
            });
        }

        let key = format!("{}|r{round}|t{task}|k{}", app.label, n / CONSUMES_PER_KEY);
        let (start, took, result) = timed(
            epoch,
            app.stores.rate_limit.consume(RateLimitConsumeInput {
                key: key.clone(),
                rule: RateLimitRule {
                    window: time::Duration::seconds(3600),
                    max: RATE_LIMIT_MAX,
                },
                now_ms,
            }),
        )
        .await;
        let tally = seen.consumes.entry(key).or_default();
        let outcome = match result {
            None => {
                tally[2] += 1;
                Outcome::Hung
            }
            Some(result) => {
                match &result {
                    Ok(decision) if decision.permitted => tally[0] += 1,
                    Ok(_) => tally[1] += 1,
                    Err(_) => tally[2] += 1,
                }
                outcome_of(&result)
            }
        };
        failed |= !matches!(outcome, Outcome::Ok);
        seen.calls.push(Call {
            what: "rate-limit consume",
            task,
            start,
            took,
            outcome,
        });

        n += 1;
        if failed {
            // Do not spin on errors that come back at once.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    seen
}

/// Checks, on the current primary, that everything acknowledged to `traffic` is there:
/// every sign-up's user, every refresh's expiry (or a later one), and that the rate-limit
/// counts are within the rule. Returns the problems found.
async fn check_acknowledged(client: &Client, label: &str, traffic: &Traffic) -> Vec<String> {
    let mut problems = Vec::new();
    let (emails, ids): (Vec<String>, Vec<String>) = traffic.sign_ups.iter().cloned().unzip();
    let lost: Vec<String> = client
        .query(
            "SELECT x.email FROM unnest($1::text[], $2::text[]) AS x(email, id) \
             LEFT JOIN users u ON u.email = x.email AND u.id::text = x.id \
             WHERE u.id IS NULL",
            &[&emails, &ids],
        )
        .await
        .expect("look up the sign-ups")
        .iter()
        .map(|row| row.get(0))
        .collect();
    if !lost.is_empty() {
        problems.push(format!(
            "{label}: {} of {} acknowledged sign-ups are not on the new primary: {:?}",
            lost.len(),
            emails.len(),
            &lost[..lost.len().min(5)]
        ));
    }
    let (tokens, expiries): (Vec<String>, Vec<String>) = traffic.refreshes.iter().cloned().unzip();
    // The stored expiry must be at least the acknowledged one (a later refresh moves it on);
    // 1 µs for the rounding of sub-microsecond digits.
    let stale: Vec<(String, String, Option<String>)> = client
        .query(
            "SELECT x.token, x.expires_at, s.expires_at::text FROM \
             unnest($1::text[], $2::text[]) AS x(token, expires_at) \
             LEFT JOIN sessions s ON s.token = x.token \
             WHERE s.token IS NULL \
                OR s.expires_at < x.expires_at::timestamptz - interval '1 microsecond'",
            &[&tokens, &expiries],
        )
        .await
        .expect("look up the refreshes")
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    if !stale.is_empty() {
        problems.push(format!(
            "{label}: {} of {} acknowledged session refreshes are missing on the new primary \
             (token, acknowledged expiry, stored expiry): {:?}",
            stale.len(),
            tokens.len(),
            &stale[..stale.len().min(5)]
        ));
    }
    let keys: Vec<String> = traffic.consumes.keys().cloned().collect();
    let stored: BTreeMap<String, i64> = client
        .query(
            "SELECT key, count::bigint FROM rate_limits WHERE key = ANY($1)",
            &[&keys],
        )
        .await
        .expect("read the rate limits")
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for (key, [permitted, _denied, unknown]) in &traffic.consumes {
        let count = u64::try_from(stored.get(key).copied().unwrap_or(0)).unwrap_or(u64::MAX);
        if *permitted > RATE_LIMIT_MAX || count > RATE_LIMIT_MAX {
            problems.push(format!(
                "{label}: rate limit {key} passed its max {RATE_LIMIT_MAX}: {permitted} \
                 permitted, {count} stored"
            ));
        }
        if count < *permitted || count > permitted + unknown {
            problems.push(format!(
                "{label}: rate limit {key}: {count} stored, but {permitted} consumes were \
                 acknowledged and {unknown} failed (a count must be between the two)"
            ));
        }
    }
    problems
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_loses_no_acknowledged_write() {
    const TASKS: usize = 8;
    let rounds: usize = if soak() {
        std::env::var("RUSTAUTH_PG_FAILOVER_ROUNDS")
            .ok()
            .and_then(|value| value.parse().ok())
            .unwrap_or(8)
    } else {
        // One failover in CI; failing back and forth is the soak's job.
        1
    };
    // The outage outlasts the call bound, so a call that merely waits for the new primary
    // breaks it; the soak alternates with a short pause (2 s).
    let long_outage = CALL_BOUND + Duration::from_secs(1);
    let (before, after) = if soak() {
        (Duration::from_secs(3), CALL_BOUND + Duration::from_secs(5))
    } else {
        (
            Duration::from_millis(1500),
            CALL_BOUND + Duration::from_secs(2),
        )
    };
    let outage = |round: usize| {
        if soak() && round % 2 == 1 {
            Duration::from_secs(2)
        } else {
            long_outage
        }
    };

    let mut pair = ReplicaPair::start("failover").await;
    let db = database_with_schema(&pair, "failover").await;
    // One connection, and a set of four whose members fail over on their own; both live
    // through every round.
    let apps = [
        Arc::new(App::new("one", &pair.url(&db, &params(""))).await),
        Arc::new(App::new("four", &pair.url(&db, &params("max_connections=4"))).await),
    ];
    let mut acknowledged: Vec<Traffic> = Vec::new();
    let mut problems = Vec::new();

    for round in 0..rounds {
        if round > 0 {
            pair.rebuild_old_primary_as_standby().await;
        }
        let epoch = Instant::now();
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, app) in apps.iter().enumerate() {
            for task in 0..TASKS {
                let (app, stop) = (Arc::clone(app), Arc::clone(&stop));
                tasks.spawn(async move { (index, traffic(app, task, round, epoch, stop).await) });
            }
        }
        tokio::time::sleep(before).await;
        let stopped = epoch.elapsed();
        pair.stop_primary_immediate().await;
        tokio::time::sleep(outage(round)).await;
        pair.promote_standby().await;
        let promoted = epoch.elapsed();
        let typed_at_promotion: Vec<u64> = apps
            .iter()
            .map(|app| app.adapter().typed_call_count())
            .collect();
        tokio::time::sleep(after).await;
        stop.store(true, Ordering::SeqCst);

        let mut per_app: [Vec<Traffic>; 2] = [Vec::new(), Vec::new()];
        let joined = tokio::time::timeout(HANG + CALL_BOUND * 3, async {
            while let Some(result) = tasks.join_next().await {
                let (index, traffic) = result.expect("a traffic task panicked");
                per_app[index].push(traffic);
            }
        })
        .await;
        assert!(
            joined.is_ok(),
            "round {round}: traffic tasks did not finish (hung)"
        );

        let client = pair.primary().connect_socket(&db).await;
        for (index, app) in apps.iter().enumerate() {
            let label = format!("round {round} ({}, node {})", app.label, pair.failovers % 2);
            let calls: Vec<Call> = per_app[index]
                .iter()
                .flat_map(|traffic| traffic.calls.iter().cloned())
                .collect();
            problems.extend(
                Timeline {
                    calls: &calls,
                    stopped,
                    promoted,
                }
                .check(&label),
            );
            for task in 0..TASKS {
                if !calls
                    .iter()
                    .any(|call| call.task == task && call.is_ok() && call.start >= promoted)
                {
                    problems.push(format!(
                        "{label}: task {task} had no success after the promotion"
                    ));
                }
            }
            // Typed statements were prepared again on the new primary and serve calls.
            let typed_now = app.adapter().typed_call_count();
            if typed_now <= typed_at_promotion[index] {
                problems.push(format!(
                    "{label}: no typed statement served a call after the promotion"
                ));
            }
            let sign_ups: usize = per_app[index].iter().map(|t| t.sign_ups.len()).sum();
            let refreshes: usize = per_app[index].iter().map(|t| t.refreshes.len()).sum();
            let permitted: u64 = per_app[index]
                .iter()
                .flat_map(|t| t.consumes.values())
                .map(|tally| tally[0])
                .sum();
            if sign_ups == 0 || refreshes == 0 || permitted == 0 {
                problems.push(format!("{label}: the traffic got nothing acknowledged"));
            }
            eprintln!(
                "[{label}] acknowledged: {sign_ups} sign-ups, {refreshes} session refreshes, \
                 {permitted} permitted consumes; typed calls after the promotion: {}",
                typed_now - typed_at_promotion[index].min(typed_now)
            );
            if let Some((email, _)) = per_app[index]
                .iter()
                .flat_map(|t| t.sign_ups.iter())
                .next_back()
            {
                let before = app.adapter().typed_call_count();
                match tokio::time::timeout(CALL_BOUND, app.adapter().find_one(user_by_email(email)))
                    .await
                {
                    Ok(Ok(Some(_))) if app.adapter().typed_call_count() == before + 1 => {}
                    Ok(Ok(Some(_))) => problems.push(format!(
                        "{label}: find_one by email did not take the typed statement on the \
                         new primary"
                    )),
                    other => problems.push(format!(
                        "{label}: find_one({email}) after the failover: {other:?}"
                    )),
                }
            }
        }
        let backends: i64 = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
                 AND pid <> pg_backend_pid()",
                &[&db],
            )
            .await
            .expect("count backends")
            .get(0);
        eprintln!(
            "[round {round}] the new primary serves {backends} connections of the two apps \
             (at most 1 + 4)"
        );
        if backends > 5 {
            problems.push(format!(
                "round {round}: {backends} connections on the new primary (at most 5)"
            ));
        }
        acknowledged.extend(per_app.into_iter().flatten());
        // Everything acknowledged in every round so far is on the current primary.
        for traffic in &acknowledged {
            problems.extend(
                check_acknowledged(&client, &format!("after round {round}"), traffic).await,
            );
        }
        if !problems.is_empty() {
            break;
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// (c) 32 callers through an outage.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_callers_through_an_outage_each_answer_within_the_bound() {
    const CALLERS: usize = 32;
    let outage = if soak() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(8)
    };
    let mut pair = ReplicaPair::start("callers").await;
    let db = database_with_schema(&pair, "callers").await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&pair.url(&db, &params("")), schema())
        .await
        .expect("connect");
    adapter.create(user("ada")).await.expect("create ada");

    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..CALLERS {
        let (adapter, stop) = (adapter.clone(), Arc::clone(&stop));
        tasks.spawn(async move {
            let mut calls = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let (start, took, result) =
                    timed(epoch, adapter.find_one(user_by_email("ada@example.com"))).await;
                let outcome = match result {
                    None => Outcome::Hung,
                    Some(Ok(Some(_))) => Outcome::Ok,
                    Some(Ok(None)) => Outcome::Other("ada is missing".to_owned()),
                    Some(Err(error)) => outcome_of::<()>(&Err(error)),
                };
                let failed = !matches!(outcome, Outcome::Ok);
                calls.push(Call {
                    what: "find_one",
                    task,
                    start,
                    took,
                    outcome,
                });
                if failed {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            calls
        });
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stopped = epoch.elapsed();
    pair.stop_primary_immediate().await;
    tokio::time::sleep(outage).await;
    pair.promote_standby().await;
    let promoted = epoch.elapsed();
    tokio::time::sleep(CALL_BOUND + Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    let mut calls = Vec::new();
    let joined = tokio::time::timeout(HANG + CALL_BOUND, async {
        while let Some(result) = tasks.join_next().await {
            calls.extend(result.expect("a caller panicked"));
        }
    })
    .await;
    assert!(joined.is_ok(), "callers did not finish (hung)");

    let mut problems = Timeline {
        calls: &calls,
        stopped,
        promoted,
    }
    .check(&format!("{CALLERS} callers, {outage:?} outage"));
    // During the outage every caller got answers, not one long wait.
    let during: Vec<&Call> = calls
        .iter()
        .filter(|call| call.start >= stopped && call.end() <= promoted)
        .collect();
    for task in 0..CALLERS {
        let answered = during.iter().filter(|call| call.task == task).count();
        if answered == 0 {
            problems.push(format!("caller {task} got no answer during the outage"));
        }
        if !calls
            .iter()
            .any(|call| call.task == task && call.is_ok() && call.start >= promoted)
        {
            problems.push(format!("caller {task} had no success after the promotion"));
        }
    }
    let answered_within: usize = during.iter().filter(|call| call.took <= CALL_BOUND).count();
    eprintln!(
        "[{CALLERS} callers] {} calls answered during the {outage:?} outage, {answered_within} \
         within {CALL_BOUND:?}",
        during.len()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// (d) A connection on a read-only server.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_on_a_read_only_server_is_replaced() {
    let pair = ReplicaPair::start("read_only").await;
    let db = database_with_schema(&pair, "read_only").await;
    let on = |cluster: &Cluster| cluster.port;
    let count_on = |client: Client, email: &'static str| async move {
        client
            .query_one("SELECT count(*) FROM users WHERE email = $1", &[&email])
            .await
            .expect("count")
            .get::<_, i64>(0)
    };

    // 1. It lands there: the standby listed first, no target_session_attrs.
    let url = multi_host_url(
        &[on(pair.standby()), on(pair.primary())],
        &db,
        &format!("connect_timeout={CONNECT_TIMEOUT_SECS}"),
    );
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema())
        .await
        .expect("connect (to the standby)");
    let error = tokio::time::timeout(CALL_BOUND, adapter.create(user("on_standby")))
        .await
        .expect("the write on the standby hung")
        .expect_err("the standby refuses writes");
    eprintln!("[read-only] a write on the standby: {error}");
    assert!(matches!(error, RustAuthError::Adapter(_)), "{error:?}");
    assert!(error.to_string().contains("25006"), "{error}");
    // The next call reconnects to the primary (the connection that met 25006 was dropped, and
    // the new one is read-write).
    tokio::time::timeout(CALL_BOUND, adapter.create(user("after_standby")))
        .await
        .expect("the write after the read-only error hung")
        .expect("the next call reaches the primary");
    assert_eq!(
        count_on(
            pair.primary().connect_socket(&db).await,
            "after_standby@example.com"
        )
        .await,
        1
    );
    assert_eq!(
        count_on(
            pair.primary().connect_socket(&db).await,
            "on_standby@example.com"
        )
        .await,
        0,
        "the refused write was not retried"
    );
    assert_eq!(
        adapter.count(Count::new("user")).await.expect("count"),
        1,
        "reads go to the primary too"
    );

    // 2. It is left there: the old primary is fenced (made read-only, as failover managers
    // do) and the standby promoted while the adapter's connection stays on the old primary.
    let url = pair.url(&db, &params(""));
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema())
        .await
        .expect("connect (to the primary)");
    adapter
        .create(user("before_fence"))
        .await
        .expect("a write before the fence");
    let old = pair.primary();
    let fence = old.admin().await;
    for statement in [
        "ALTER SYSTEM SET default_transaction_read_only = on",
        "SELECT pg_reload_conf()",
    ] {
        fence
            .batch_execute(statement)
            .await
            .expect("fence the old primary");
    }
    // The reload reaches the adapter's backend before its next statement; wait until a new
    // session sees it, then promote the standby without stopping the old primary.
    for _ in 0..100 {
        let read_only: String = old
            .connect_socket(&db)
            .await
            .query_one("SHOW default_transaction_read_only", &[])
            .await
            .expect("show")
            .get(0);
        if read_only == "on" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    pair.standby().promote().await;
    let old_port = pair.primary().port;
    let error = tokio::time::timeout(CALL_BOUND, adapter.create(user("on_fenced")))
        .await
        .expect("the write on the fenced primary hung")
        .expect_err("the fenced primary refuses writes");
    eprintln!("[read-only] a write on the fenced old primary: {error}");
    assert!(error.to_string().contains("25006"), "{error}");
    tokio::time::timeout(CALL_BOUND, adapter.create(user("after_fence")))
        .await
        .expect("the write after the fence hung")
        .expect("the next call reaches the promoted standby");
    let new_primary = pair.standby();
    assert_ne!(new_primary.port, old_port);
    assert_eq!(
        count_on(
            new_primary.connect_socket(&db).await,
            "after_fence@example.com"
        )
        .await,
        1
    );
    assert_eq!(
        count_on(
            new_primary.connect_socket(&db).await,
            "on_fenced@example.com"
        )
        .await,
        0,
        "the refused write was not retried"
    );
}
