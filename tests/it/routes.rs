//! RustAuth's own HTTP routes running on this adapter, with the SQL rate-limit store wired in
//! through `TokioPostgresStores::apply_to_options` (`docs/behaviour.md` §9).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::schema;
use crate::support;

use support::app::{self, json};

use std::net::{IpAddr, Ipv4Addr};

use http::{header, Method, Request, Response, StatusCode};
use rustauth_core::api::AuthRouter;
use rustauth_core::db::{Count, DbAdapter, DbRecord, DbValue, FindMany, FindOne, Where};
use rustauth_core::rate_limit::RequestClientIp;
use rustauth_core::test_utils::fast_verify_password;
use rustauth_tokio_postgres::TokioPostgresStores;
use serde_json::Value;

/// The client address every request of these tests comes from.
const CLIENT_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
const SIGN_UP: &str = r#"{"name":"Ada","email":"ada@example.com","password":"secret123"}"#;

struct App {
    url: String,
    stores: TokioPostgresStores,
    router: AuthRouter,
}

impl App {
    async fn new(label: &str) -> Self {
        let url = support::fresh_database(label).await;
        let schema = schema();
        let stores = TokioPostgresStores::connect_with_schema(&url, schema.clone())
            .await
            .expect("connect stores");
        stores
            .adapter_ref()
            .create_schema(&schema, None)
            .await
            .expect("create schema");
        let router = app::router(&stores, app::options());
        Self {
            url,
            stores,
            router,
        }
    }

    fn adapter(&self) -> &dyn DbAdapter {
        self.stores.adapter_ref()
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: &str,
        cookie: Option<&str>,
    ) -> Response<Vec<u8>> {
        app::send(&self.router, method, path, body, cookie, CLIENT_IP).await
    }

    async fn post(&self, path: &str, body: &str, cookie: Option<&str>) -> Response<Vec<u8>> {
        self.send(Method::POST, path, body, cookie).await
    }

    async fn count(&self, model: &str) -> u64 {
        self.adapter()
            .count(Count::new(model))
            .await
            .expect("count")
    }
}

/// The `Cookie` header a browser would send back after `response`.
fn cookies(response: &Response<Vec<u8>>) -> String {
    let cookies = app::cookies(response);
    assert!(!cookies.is_empty(), "response sets no cookie");
    cookies
}

fn string_field<'a>(record: &'a DbRecord, field: &str) -> &'a str {
    match record.get(field) {
        Some(DbValue::String(value)) => value,
        other => panic!("field `{field}` is not a string: {other:?}"),
    }
}

#[tokio::test]
async fn sign_up_get_session_sign_in_and_sign_out() {
    let app = App::new("routes_sign_up_get_session_sign_in_").await;

    let sign_up = app.post("/sign-up/email", SIGN_UP, None).await;
    assert_eq!(sign_up.status(), StatusCode::OK, "{:?}", json(&sign_up));
    assert_eq!(json(&sign_up)["user"]["email"], "ada@example.com");
    let cookie = cookies(&sign_up);
    assert!(
        cookie.contains("session_token="),
        "a session cookie is set: {cookie}"
    );
    assert_eq!(app.count("user").await, 1);
    assert_eq!(app.count("account").await, 1);
    assert_eq!(app.count("session").await, 1);

    let session = app
        .send(Method::GET, "/get-session", "", Some(&cookie))
        .await;
    assert_eq!(session.status(), StatusCode::OK);
    let body = json(&session);
    assert_eq!(body["user"]["email"], "ada@example.com");
    assert_eq!(body["user"]["name"], "Ada");
    assert!(body["session"]["token"].is_string(), "{body}");

    let wrong = app
        .post(
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"not-the-password"}"#,
            None,
        )
        .await;
    assert!(
        wrong.status().is_client_error() && wrong.status() != StatusCode::TOO_MANY_REQUESTS,
        "wrong password is rejected: {}",
        wrong.status()
    );
    assert_eq!(
        app.count("session").await,
        1,
        "no session for a wrong password"
    );

    let sign_in = app
        .post(
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"secret123"}"#,
            None,
        )
        .await;
    assert_eq!(sign_in.status(), StatusCode::OK);
    let token = json(&sign_in)["token"]
        .as_str()
        .expect("sign-in returns a string token")
        .to_owned();
    assert!(!token.is_empty());
    assert_eq!(app.count("session").await, 2);
    let stored = app
        .adapter()
        .find_one(FindOne::new("session").where_clause(Where::new("token", DbValue::String(token))))
        .await
        .expect("find session");
    assert!(stored.is_some(), "the returned token is a stored session");

    let sign_out = app.post("/sign-out", "", Some(&cookie)).await;
    assert_eq!(sign_out.status(), StatusCode::OK);
    assert_eq!(app.count("session").await, 1, "the sign-up session is gone");

    let after = app
        .send(Method::GET, "/get-session", "", Some(&cookie))
        .await;
    assert_eq!(after.status(), StatusCode::OK);
    assert_eq!(json(&after), Value::Null, "no session after sign-out");
}

#[tokio::test]
async fn password_reset_through_verifications() {
    let app = App::new("routes_password_reset_through_verif").await;
    let sign_up = app.post("/sign-up/email", SIGN_UP, None).await;
    assert_eq!(sign_up.status(), StatusCode::OK);

    let request_reset = app
        .post(
            "/request-password-reset",
            r#"{"email":"ada@example.com","redirectTo":"/reset"}"#,
            None,
        )
        .await;
    assert_eq!(request_reset.status(), StatusCode::OK);

    let verifications = app
        .adapter()
        .find_many(FindMany::new("verification"))
        .await
        .expect("list verifications");
    assert_eq!(verifications.len(), 1, "{verifications:?}");
    let identifier = string_field(&verifications[0], "identifier");
    let token = identifier
        .strip_prefix("reset-password:")
        .unwrap_or_else(|| panic!("unexpected identifier {identifier}"))
        .to_owned();

    let reset = app
        .post(
            "/reset-password",
            &format!(r#"{{"newPassword":"new-secret123","token":"{token}"}}"#),
            None,
        )
        .await;
    assert_eq!(reset.status(), StatusCode::OK, "{:?}", json(&reset));

    let account = app
        .adapter()
        .find_one(FindOne::new("account").where_clause(Where::new(
            "provider_id",
            DbValue::String("credential".to_owned()),
        )))
        .await
        .expect("find account")
        .expect("credential account");
    let hash = string_field(&account, "password");
    assert!(fast_verify_password(hash, "new-secret123").expect("verify"));
    assert!(!fast_verify_password(hash, "secret123").expect("verify"));
    assert_eq!(app.count("verification").await, 0);

    // The token is single-use.
    let again = app
        .post(
            "/reset-password",
            &format!(r#"{{"newPassword":"third-secret123","token":"{token}"}}"#),
            None,
        )
        .await;
    assert!(again.status().is_client_error(), "{}", again.status());

    let old = app
        .post(
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"secret123"}"#,
            None,
        )
        .await;
    assert!(old.status().is_client_error(), "{}", old.status());
    let new = app
        .post(
            "/sign-in/email",
            r#"{"email":"ada@example.com","password":"new-secret123"}"#,
            None,
        )
        .await;
    assert_eq!(new.status(), StatusCode::OK);
}

#[tokio::test]
async fn rate_limit_through_sql_store_rejects_the_fourth_sign_in_within_ten_seconds() {
    let app = App::new("routes_rate_limit").await;
    let sign_up = app.post("/sign-up/email", SIGN_UP, None).await;
    assert_eq!(sign_up.status(), StatusCode::OK);

    let body = r#"{"email":"ada@example.com","password":"secret123"}"#;
    for attempt in 1..=3 {
        let response = app.post("/sign-in/email", body, None).await;
        assert_eq!(response.status(), StatusCode::OK, "attempt {attempt}");
    }
    let limited = app.post("/sign-in/email", body, None).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        app.count("session").await,
        4,
        "the limited attempt made no session"
    );

    let raw = support::connect(&app.url).await;
    let rows = raw
        .query("SELECT key, count FROM rate_limits ORDER BY key", &[])
        .await
        .expect("read rate limits");
    let rows: Vec<(String, i64)> = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
    let sign_in = rows
        .iter()
        .find(|(key, _)| key.contains("203.0.113.7") && key.contains("/sign-in/email"))
        .unwrap_or_else(|| panic!("no sign-in bucket in {rows:?}"));
    assert_eq!(sign_in.1, 3, "denied requests are not counted");
    assert!(
        rows.iter()
            .any(|(key, count)| key.contains("/sign-up/email") && *count == 1),
        "{rows:?}"
    );

    // Another client address has its own bucket.
    let mut request = Request::builder()
        .method(Method::POST)
        .uri("http://localhost:3000/api/auth/sign-in/email")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.as_bytes().to_vec())
        .expect("request");
    request
        .extensions_mut()
        .insert(RequestClientIp(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1))));
    let other = app.router.handle_async(request).await.expect("other ip");
    assert_eq!(other.status(), StatusCode::OK);
}
