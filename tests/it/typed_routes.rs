//! RustAuth's hot routes (behaviour.md §9) on this adapter: every adapter call they make is
//! served by a typed statement.
//!
//! The router runs on a small counting `DbAdapter` that delegates every method to the real
//! adapter and records, per call, the query and how far the adapter's typed counter moved.
//! Calls inside a transaction do not pass through the wrapper (the callback goes to the real
//! adapter unchanged); the counter's growth across the transaction counts its typed calls,
//! and the rows it wrote count its calls.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use http::{header, Method, Request, Response, StatusCode};
use rustauth_core::api::{core_auth_async_endpoints, AuthRouter};
use rustauth_core::context::create_auth_context_with_adapter;
use rustauth_core::crypto::jwt::sign_jwt;
use rustauth_core::db::{
    auth_schema, AdapterCapabilities, AdapterFuture, AuthSchemaOptions, Count, Create, DbAdapter,
    DbRecord, DbSchema, Delete, DeleteMany, FindMany, FindOne, RateLimitStorage, SchemaCreation,
    TransactionCallback, Update, UpdateMany,
};
use rustauth_core::options::{
    AdvancedOptions, EmailVerificationOptions, PasswordOptions, RateLimitOptions, RustAuthOptions,
};
use rustauth_core::plugin::PluginMigration;
use rustauth_core::rate_limit::RequestClientIp;
use rustauth_core::test_utils::with_integration_test_defaults;
use rustauth_tokio_postgres::TokioPostgresAdapter;
use serde_json::Value;
use tokio_postgres::Client;

const SECRET: &str = "test-secret-0123456789abcdef0123456789";
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 9));

/// One call that went through the wrapper.
#[derive(Debug, Clone)]
struct Logged {
    method: &'static str,
    query: String,
    /// How many calls the typed path served while this call ran (for a transaction: the
    /// typed calls inside it).
    typed: u64,
}

/// Delegates every method to the real adapter and logs each call.
struct Counting {
    inner: Arc<TokioPostgresAdapter>,
    log: Mutex<Vec<Logged>>,
}

impl Counting {
    fn observe<'a, T: Send + 'a>(
        &'a self,
        method: &'static str,
        query: String,
        call: AdapterFuture<'a, T>,
    ) -> AdapterFuture<'a, T> {
        Box::pin(async move {
            let before = self.inner.typed_call_count();
            let result = call.await;
            let typed = self.inner.typed_call_count() - before;
            self.log.lock().unwrap().push(Logged {
                method,
                query,
                typed,
            });
            result
        })
    }

    fn len(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    fn since(&self, start: usize) -> Vec<Logged> {
        self.log.lock().unwrap()[start..].to_vec()
    }
}

impl DbAdapter for Counting {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn capabilities(&self) -> AdapterCapabilities {
        self.inner.capabilities()
    }

    fn create<'a>(&'a self, query: Create) -> AdapterFuture<'a, DbRecord> {
        let text = format!("{query:?}");
        self.observe("create", text, self.inner.create(query))
    }

    fn find_one<'a>(&'a self, query: FindOne) -> AdapterFuture<'a, Option<DbRecord>> {
        let text = format!("{query:?}");
        self.observe("find_one", text, self.inner.find_one(query))
    }

    fn find_many<'a>(&'a self, query: FindMany) -> AdapterFuture<'a, Vec<DbRecord>> {
        let text = format!("{query:?}");
        self.observe("find_many", text, self.inner.find_many(query))
    }

    fn count<'a>(&'a self, query: Count) -> AdapterFuture<'a, u64> {
        let text = format!("{query:?}");
        self.observe("count", text, self.inner.count(query))
    }

    fn update<'a>(&'a self, query: Update) -> AdapterFuture<'a, Option<DbRecord>> {
        let text = format!("{query:?}");
        self.observe("update", text, self.inner.update(query))
    }

    fn update_many<'a>(&'a self, query: UpdateMany) -> AdapterFuture<'a, u64> {
        let text = format!("{query:?}");
        self.observe("update_many", text, self.inner.update_many(query))
    }

    fn delete<'a>(&'a self, query: Delete) -> AdapterFuture<'a, ()> {
        let text = format!("{query:?}");
        self.observe("delete", text, self.inner.delete(query))
    }

    fn delete_many<'a>(&'a self, query: DeleteMany) -> AdapterFuture<'a, u64> {
        let text = format!("{query:?}");
        self.observe("delete_many", text, self.inner.delete_many(query))
    }

    fn transaction<'a>(&'a self, callback: TransactionCallback<'a>) -> AdapterFuture<'a, ()> {
        self.observe(
            "transaction",
            "(callback)".to_owned(),
            self.inner.transaction(callback),
        )
    }

    fn create_schema<'a>(
        &'a self,
        schema: &'a DbSchema,
        file: Option<&'a str>,
    ) -> AdapterFuture<'a, Option<SchemaCreation>> {
        self.inner.create_schema(schema, file)
    }

    fn run_migrations<'a>(&'a self, schema: &'a DbSchema) -> AdapterFuture<'a, ()> {
        self.inner.run_migrations(schema)
    }

    fn run_plugin_migrations<'a>(
        &'a self,
        migrations: &'a [PluginMigration],
    ) -> AdapterFuture<'a, ()> {
        self.inner.run_plugin_migrations(migrations)
    }
}

/// What one route did.
struct RouteReport {
    route: String,
    status: StatusCode,
    /// Calls through the wrapper, transactions excluded.
    calls: Vec<Logged>,
    /// Transactions, with the typed calls inside each.
    transactions: Vec<Logged>,
    /// How far the typed counter moved during the whole request.
    typed_total: u64,
}

impl RouteReport {
    fn typed_outside(&self) -> u64 {
        self.calls.iter().map(|call| call.typed).sum()
    }

    fn typed_inside(&self) -> u64 {
        self.transactions.iter().map(|call| call.typed).sum()
    }

    fn untyped(&self) -> Vec<&Logged> {
        self.calls.iter().filter(|call| call.typed != 1).collect()
    }
}

struct App {
    adapter: Arc<TokioPostgresAdapter>,
    counting: Arc<Counting>,
    router: AuthRouter,
    raw: Client,
    reports: Vec<RouteReport>,
}

impl App {
    async fn new() -> Self {
        let url = support::fresh_database("typed_routes").await;
        let schema = auth_schema(AuthSchemaOptions {
            rate_limit_storage: RateLimitStorage::Database,
            ..AuthSchemaOptions::default()
        });
        let adapter = Arc::new(
            TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
                .await
                .expect("connect"),
        );
        adapter
            .create_schema(&schema, None)
            .await
            .expect("create_schema");
        let counting = Arc::new(Counting {
            inner: Arc::clone(&adapter),
            log: Mutex::new(Vec::new()),
        });
        let options = with_integration_test_defaults(RustAuthOptions {
            secret: Some(SECRET.to_owned()),
            advanced: AdvancedOptions {
                disable_csrf_check: true,
                disable_origin_check: true,
                ..AdvancedOptions::default()
            },
            rate_limit: RateLimitOptions::database(adapter.rate_limit_store()).enabled(true),
            password: PasswordOptions::new().revoke_sessions_on_password_reset(true),
            email_verification: EmailVerificationOptions::new()
                .auto_sign_in_after_verification(true),
            ..RustAuthOptions::default()
        });
        let context =
            create_auth_context_with_adapter(options, counting.clone()).expect("auth context");
        let router =
            AuthRouter::with_async_endpoints(context, Vec::new(), core_auth_async_endpoints())
                .expect("router");
        let raw = support::connect(&url).await;
        Self {
            adapter,
            counting,
            router,
            raw,
            reports: Vec::new(),
        }
    }

    async fn send(
        &mut self,
        route: &str,
        method: Method,
        path: &str,
        body: &str,
        cookie: Option<&str>,
    ) -> Response<Vec<u8>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(format!("http://localhost:3000/api/auth{path}"));
        if !body.is_empty() {
            builder = builder.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(cookie) = cookie {
            builder = builder.header(header::COOKIE, cookie);
        }
        let mut request = builder.body(body.as_bytes().to_vec()).expect("request");
        request.extensions_mut().insert(RequestClientIp(CLIENT_IP));

        let start = self.counting.len();
        let before = self.adapter.typed_call_count();
        let response = self
            .router
            .handle_async(request)
            .await
            .unwrap_or_else(|error| panic!("{path}: {error}"));
        let typed_total = self.adapter.typed_call_count() - before;
        let (transactions, calls) = self
            .counting
            .since(start)
            .into_iter()
            .partition(|call| call.method == "transaction");
        self.reports.push(RouteReport {
            route: route.to_owned(),
            status: response.status(),
            calls,
            transactions,
            typed_total,
        });
        response
    }

    fn last(&self) -> &RouteReport {
        self.reports.last().unwrap()
    }

    async fn rows(&self) -> [i64; 4] {
        let mut counts = [0; 4];
        for (slot, table) in
            counts
                .iter_mut()
                .zip(["users", "accounts", "sessions", "verifications"])
        {
            *slot = self
                .raw
                .query_one(&format!("SELECT count(*) FROM \"{table}\""), &[])
                .await
                .expect("count rows")
                .get(0);
        }
        counts
    }
}

fn json(response: &Response<Vec<u8>>) -> Value {
    serde_json::from_slice(response.body()).unwrap_or_else(|error| {
        panic!(
            "body is not JSON ({error}): {}",
            String::from_utf8_lossy(response.body())
        )
    })
}

fn cookies(response: &Response<Vec<u8>>) -> String {
    let pairs: Vec<String> = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .filter(|pair| {
            pair.split_once('=')
                .is_some_and(|(_, value)| !value.is_empty())
        })
        .map(str::to_owned)
        .collect();
    assert!(
        !pairs.is_empty(),
        "response sets no cookie: {:?} {}",
        response.headers(),
        String::from_utf8_lossy(response.body())
    );
    pairs.join("; ")
}

#[tokio::test]
async fn every_hot_call_of_the_core_routes_is_served_by_a_typed_statement() {
    let mut app = App::new().await;
    let ada = r#"{"name":"Ada Lövelace","email":"Ada@Example.com","password":"secret123"}"#;

    // Sign-up: two duplicate checks, the three inserts in one transaction, the response read.
    let rows = app.rows().await;
    let sign_up = app
        .send(
            "POST /sign-up/email",
            Method::POST,
            "/sign-up/email",
            ada,
            None,
        )
        .await;
    assert_eq!(sign_up.status(), StatusCode::OK, "{:?}", json(&sign_up));
    let cookie = cookies(&sign_up);
    let written = app.rows().await;
    let inserted: i64 = written.iter().zip(rows).map(|(now, was)| now - was).sum();
    assert_eq!(
        inserted, 3,
        "sign-up inserts a user, an account and a session"
    );
    let report = app.last();
    assert_eq!(report.transactions.len(), 1, "sign-up runs one transaction");
    assert_eq!(
        report.typed_inside(),
        3,
        "the three sign-up inserts inside the transaction are typed"
    );

    // Get-session on a fresh session: no refresh.
    let session = app
        .send(
            "GET /get-session",
            Method::GET,
            "/get-session",
            "",
            Some(&cookie),
        )
        .await;
    assert_eq!(session.status(), StatusCode::OK);
    assert_eq!(json(&session)["user"]["email"], "ada@example.com");
    let token = json(&session)["session"]["token"]
        .as_str()
        .expect("session token")
        .to_owned();
    assert!(app
        .last()
        .calls
        .iter()
        .all(|call| call.method == "find_one"));

    // Get-session on a session older than `update_age`: core refreshes it.
    app.raw
        .execute(
            "UPDATE sessions SET expires_at = expires_at - interval '2 days' WHERE token = $1",
            &[&token],
        )
        .await
        .expect("age the session");
    let refreshed = app
        .send(
            "GET /get-session (refresh)",
            Method::GET,
            "/get-session",
            "",
            Some(&cookie),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    assert!(
        app.last().calls.iter().any(|call| call.method == "update"),
        "the session was refreshed: {:?}",
        app.last().calls
    );

    // Sign-in: the user-with-accounts join, a new session, the response read.
    let sign_in = app
        .send(
            "POST /sign-in/email",
            Method::POST,
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"secret123"}"#,
            None,
        )
        .await;
    assert_eq!(sign_in.status(), StatusCode::OK, "{:?}", json(&sign_in));
    assert!(app
        .last()
        .calls
        .iter()
        .any(|call| call.method == "find_one" && call.query.contains("\"account\"")));
    let sign_in_cookie = cookies(&sign_in);

    let wrong = app
        .send(
            "POST /sign-in/email (wrong password)",
            Method::POST,
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"not-it-at-all"}"#,
            None,
        )
        .await;
    assert!(wrong.status().is_client_error(), "{}", wrong.status());

    // Sign-out: delete the session by token.
    let sign_out = app
        .send(
            "POST /sign-out",
            Method::POST,
            "/sign-out",
            "",
            Some(&sign_in_cookie),
        )
        .await;
    assert_eq!(sign_out.status(), StatusCode::OK);
    assert!(app.last().calls.iter().any(|call| call.method == "delete"));

    // An expired session: found, deleted, unauthenticated.
    app.raw
        .execute(
            "UPDATE sessions SET expires_at = now() - interval '1 hour' WHERE token = $1",
            &[&token],
        )
        .await
        .expect("expire the session");
    let expired = app
        .send(
            "GET /get-session (expired)",
            Method::GET,
            "/get-session",
            "",
            Some(&cookie),
        )
        .await;
    assert_eq!(expired.status(), StatusCode::OK);
    assert_eq!(json(&expired), Value::Null);

    // A new session to be revoked by the password reset.
    let again = app
        .send(
            "POST /sign-in/email",
            Method::POST,
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"secret123"}"#,
            None,
        )
        .await;
    assert_eq!(again.status(), StatusCode::OK);

    // Password reset: the request writes a verification, the reset reads and deletes it,
    // updates the password and (revoke_sessions_on_password_reset) deletes every session.
    let request_reset = app
        .send(
            "POST /request-password-reset",
            Method::POST,
            "/request-password-reset",
            r#"{"email":"ada@example.com","redirectTo":"/reset"}"#,
            None,
        )
        .await;
    assert_eq!(request_reset.status(), StatusCode::OK);
    let identifier: String = app
        .raw
        .query_one("SELECT identifier FROM verifications", &[])
        .await
        .expect("one verification")
        .get(0);
    let reset_token = identifier
        .strip_prefix("reset-password:")
        .expect("reset identifier")
        .to_owned();
    let reset = app
        .send(
            "POST /reset-password",
            Method::POST,
            "/reset-password",
            &format!(r#"{{"newPassword":"new-secret123","token":"{reset_token}"}}"#),
            None,
        )
        .await;
    assert_eq!(reset.status(), StatusCode::OK, "{:?}", json(&reset));
    assert_eq!(app.rows().await[2], 0, "every session was revoked");
    assert_eq!(app.rows().await[3], 0, "the verification was used up");

    // Email verification (a JWT, no verification row) with auto sign-in.
    let jwt = sign_jwt(
        &serde_json::json!({
            "email": "ada@example.com",
            "updateTo": null,
            "requestType": null,
        }),
        SECRET,
        3600,
    )
    .expect("sign the verification token");
    let verify = app
        .send(
            "GET /verify-email",
            Method::GET,
            &format!("/verify-email?token={jwt}"),
            "",
            None,
        )
        .await;
    assert_eq!(verify.status(), StatusCode::OK, "{:?}", json(&verify));
    let verified: bool = app
        .raw
        .query_one("SELECT email_verified FROM users", &[])
        .await
        .expect("user")
        .get(0);
    assert!(verified);
    assert_eq!(app.rows().await[2], 1, "auto sign-in made a session");

    // The table, then the verdict.
    println!(
        "{:<38} {:>6} {:>6} {:>6} {:>9}",
        "route", "status", "calls", "typed", "tx typed"
    );
    for report in &app.reports {
        println!(
            "{:<38} {:>6} {:>6} {:>6} {:>9}",
            report.route,
            report.status.as_u16(),
            report.calls.len(),
            report.typed_outside(),
            if report.transactions.is_empty() {
                "-".to_owned()
            } else {
                report.typed_inside().to_string()
            }
        );
        for call in &report.calls {
            println!(
                "    {:<12} typed={} {}",
                call.method, call.typed, call.query
            );
        }
    }
    let untyped: Vec<String> = app
        .reports
        .iter()
        .flat_map(|report| {
            report
                .untyped()
                .into_iter()
                .map(move |call| format!("{}: {} {}", report.route, call.method, call.query))
        })
        .collect();
    assert!(
        untyped.is_empty(),
        "hot calls not served by a typed statement:\n{}",
        untyped.join("\n")
    );
    for report in &app.reports {
        assert_eq!(
            report.typed_outside() + report.typed_inside(),
            report.typed_total,
            "{}: every typed call is accounted for",
            report.route
        );
    }
    let calls: usize = app.reports.iter().map(|report| report.calls.len()).sum();
    assert!(calls >= 25, "the routes made {calls} calls");
    // Nothing (not even the rate-limit consumes of every request) went through the generic
    // statement cache.
    assert_eq!(app.adapter.connection().cached_statement_count(), 0);
}
