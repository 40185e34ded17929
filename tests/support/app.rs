#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]
//! RustAuth's own HTTP routes on this crate's stores, as the route tests drive them: the
//! options they share (fast hashing, CSRF and origin checks off, rate limiting on through the
//! SQL store), the router, a request, and reading a response.

use std::net::IpAddr;

use http::{header, Method, Request, Response};
use rustauth_core::api::{core_auth_async_endpoints, AuthRouter};
use rustauth_core::context::create_auth_context_with_adapter;
use rustauth_core::options::{AdvancedOptions, RateLimitOptions, RustAuthOptions};
use rustauth_core::rate_limit::RequestClientIp;
use rustauth_core::test_utils::with_integration_test_defaults;
use rustauth_tokio_postgres::TokioPostgresStores;
use serde_json::Value;

/// The options every route test starts from; `rate_limit` is on, backed by the stores.
pub fn options() -> RustAuthOptions {
    with_integration_test_defaults(RustAuthOptions {
        secret: Some("test-secret-0123456789abcdef0123456789".to_owned()),
        advanced: AdvancedOptions {
            disable_csrf_check: true,
            disable_origin_check: true,
            ..AdvancedOptions::default()
        },
        rate_limit: RateLimitOptions::new().enabled(true),
        ..RustAuthOptions::default()
    })
}

/// RustAuth's core routes on `stores` (its adapter and, through `apply_to_options`, its
/// rate-limit store).
pub fn router(stores: &TokioPostgresStores, options: RustAuthOptions) -> AuthRouter {
    let options = stores.apply_to_options(options);
    assert!(options.rate_limit.custom_store.is_some());
    let context =
        create_auth_context_with_adapter(options, stores.adapter()).expect("auth context");
    AuthRouter::with_async_endpoints(context, Vec::new(), core_auth_async_endpoints())
        .expect("router")
}

/// A request to `/api/auth{path}` from `ip`, with a JSON body when `body` is not empty.
pub fn request(
    method: Method,
    path: &str,
    body: &str,
    cookie: Option<&str>,
    ip: IpAddr,
) -> Request<Vec<u8>> {
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
    request.extensions_mut().insert(RequestClientIp(ip));
    request
}

/// Sends a request; a router error (not an HTTP error status) fails the test.
pub async fn send(
    router: &AuthRouter,
    method: Method,
    path: &str,
    body: &str,
    cookie: Option<&str>,
    ip: IpAddr,
) -> Response<Vec<u8>> {
    router
        .handle_async(request(method, path, body, cookie, ip))
        .await
        .unwrap_or_else(|error| panic!("{path}: {error}"))
}

/// The response body as JSON.
pub fn json(response: &Response<Vec<u8>>) -> Value {
    serde_json::from_slice(response.body()).unwrap_or_else(|error| {
        panic!(
            "body is not JSON ({error}): {}",
            String::from_utf8_lossy(response.body())
        )
    })
}

/// The `Cookie` header a browser would send back after `response` (empty when it sets none).
pub fn cookies(response: &Response<Vec<u8>>) -> String {
    response
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next())
        .map(str::to_owned)
        .collect::<Vec<_>>()
        .join("; ")
}
