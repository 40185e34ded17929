//! Quick start: RustAuth sign-up, sign-in and get-session on PostgreSQL.
//!
//! ```text
//! cargo run --example quickstart
//! ```
//!
//! It connects the adapter to PostgreSQL, migrates the database, and drives RustAuth's own
//! HTTP routes in-process, printing each step. Where the database comes from is
//! `local_server.rs`'s business (`DATABASE_URL`, else a local server, else a throwaway
//! cluster); in your app it is your configuration.

mod local_server;

use std::error::Error;
use std::net::IpAddr;

use http::{header, Method, Request, Response, StatusCode};
use rustauth_core::api::{core_auth_async_endpoints, AuthRouter};
use rustauth_core::context::create_auth_context_with_adapter;
use rustauth_core::db::{auth_schema, AuthSchemaOptions, DbAdapter, RateLimitStorage};
use rustauth_core::options::{AdvancedOptions, EmailPasswordOptions, RustAuthOptions};
use rustauth_core::rate_limit::RequestClientIp;
use rustauth_tokio_postgres::TokioPostgresStores;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let server = local_server::LocalServer::find_or_start().await?;
    let url = server.url.clone();
    println!("1. database ready: {}", redact(&url));

    // The adapter and the SQL rate-limit store share one connection.
    let schema = auth_schema(AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    });
    let stores = TokioPostgresStores::connect_with_schema(&url, schema.clone()).await?;
    stores.adapter.run_migrations(&schema).await?;
    println!("2. migrated: users, sessions, accounts, verifications, rate_limits");

    let options = stores.apply_to_options(RustAuthOptions {
        secret: Some("quickstart-secret-0123456789abcdef0123".to_owned()),
        email_password: EmailPasswordOptions::new().enabled(true),
        advanced: AdvancedOptions {
            // This example calls the router directly, with no browser to send Origin headers.
            disable_csrf_check: true,
            disable_origin_check: true,
            ..AdvancedOptions::default()
        },
        ..RustAuthOptions::default()
    });
    let context = create_auth_context_with_adapter(options, stores.adapter())?;
    let router =
        AuthRouter::with_async_endpoints(context, Vec::new(), core_auth_async_endpoints())?;

    let sign_up = router
        .handle_async(request(
            Method::POST,
            "/api/auth/sign-up/email",
            r#"{"name":"Ada Lovelace","email":"ada@example.com","password":"correct horse battery"}"#,
            None,
        )?)
        .await?;
    expect_ok("sign-up", &sign_up)?;
    println!("3. signed up: {}", body_text(&sign_up));

    let sign_in = router
        .handle_async(request(
            Method::POST,
            "/api/auth/sign-in/email",
            r#"{"email":"ada@example.com","password":"correct horse battery"}"#,
            None,
        )?)
        .await?;
    expect_ok("sign-in", &sign_in)?;
    let cookie = session_cookie(&sign_in).ok_or("sign-in set no session cookie")?;
    println!("4. signed in: {}", body_text(&sign_in));

    let session = router
        .handle_async(request(
            Method::GET,
            "/api/auth/get-session",
            "",
            Some(&cookie),
        )?)
        .await?;
    expect_ok("get-session", &session)?;
    println!("5. session: {}", body_text(&session));

    let users = stores
        .adapter
        .count(rustauth_core::db::Count::new("user"))
        .await?;
    println!("6. users in PostgreSQL: {users}");
    Ok(())
}

fn request(
    method: Method,
    path: &str,
    body: &str,
    cookie: Option<&str>,
) -> Result<Request<Vec<u8>>, http::Error> {
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("http://localhost:3000{path}"))
        // A server passes the peer's socket address; rate limits are counted per client IP.
        .extension(RequestClientIp(IpAddr::from([203, 0, 113, 7])));
    if !body.is_empty() {
        builder = builder.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(cookie) = cookie {
        builder = builder.header(header::COOKIE, cookie);
    }
    builder.body(body.as_bytes().to_vec())
}

fn expect_ok(step: &str, response: &Response<Vec<u8>>) -> Result<(), Box<dyn Error>> {
    if response.status() == StatusCode::OK {
        return Ok(());
    }
    Err(format!(
        "{step} answered {}: {}",
        response.status(),
        body_text(response)
    )
    .into())
}

fn session_cookie(response: &Response<Vec<u8>>) -> Option<String> {
    let cookies = response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next().map(str::to_owned))
        .collect::<Vec<_>>();
    (!cookies.is_empty()).then(|| cookies.join("; "))
}

fn body_text(response: &Response<Vec<u8>>) -> String {
    String::from_utf8_lossy(response.body()).into_owned()
}

fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}
