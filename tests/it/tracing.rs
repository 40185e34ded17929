//! Tracing: a span per adapter call (model, operation, path, rows, duration) and one per
//! statement (SQL text, kind), never a parameter value.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures;
use crate::support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Create, DbAdapter, DbValue, FindMany, FindOne, Where,
};
use rustauth_tokio_postgres::TokioPostgresAdapter;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// A span or an event as the capture saw it (events are named `event:<LEVEL>`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Captured {
    pub(crate) name: String,
    parent: Option<String>,
    pub(crate) fields: BTreeMap<String, String>,
    /// How often the span was entered (a future instrumented with it enters it per poll).
    entered: usize,
}

/// Every span and event of the threads it is the default subscriber of.
#[derive(Clone, Default)]
pub(crate) struct Capture(pub(crate) Arc<Mutex<Vec<(u64, Captured)>>>);

impl Capture {
    /// The events captured so far whose message is `message`.
    pub(crate) fn events(&self, message: &str) -> Vec<Captured> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, captured)| captured)
            .filter(|captured| {
                captured.name.starts_with("event:")
                    && captured.fields.get("message").map(String::as_str) == Some(message)
            })
            .cloned()
            .collect()
    }
}

/// Makes `capture` this thread's subscriber until the guard drops.
///
/// tracing-core caches, per callsite, whether any subscriber wants it. While exactly one
/// dispatcher is registered, a callsite met for the first time takes the answer of the
/// *calling thread's* default subscriber: a test on another thread without one (another
/// test of this binary) could then switch a callsite off for this test's subscriber too
/// (seen as an empty capture, once in about thirty runs of the two tests side by side). A
/// second dispatcher kept alive for the whole binary makes every such decision ask all of
/// them, so each thread's own subscriber decides per span; the rebuild re-asks the callsites
/// registered before.
pub(crate) fn capture_on_this_thread(capture: &Capture) -> tracing::subscriber::DefaultGuard {
    static SECOND_DISPATCHER: OnceLock<tracing::Dispatch> = OnceLock::new();
    SECOND_DISPATCHER
        .get_or_init(|| tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()));
    let guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    tracing::callsite::rebuild_interest_cache();
    guard
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(
            field.name().to_owned(),
            format!("{value:?}").trim_matches('"').to_owned(),
        );
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut captured = Captured {
            name: attrs.metadata().name().to_owned(),
            parent: ctx
                .span(id)
                .and_then(|span| span.parent().map(|parent| parent.name().to_owned())),
            ..Captured::default()
        };
        attrs.record(&mut Fields(&mut captured.fields));
        self.0.lock().unwrap().push((id.into_u64(), captured));
    }

    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let mut captured = Captured {
            name: format!("event:{}", event.metadata().level()),
            ..Captured::default()
        };
        event.record(&mut Fields(&mut captured.fields));
        self.0.lock().unwrap().push((0, captured));
    }

    fn on_enter(&self, id: &Id, _ctx: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, captured)) = spans
            .iter_mut()
            .rev()
            .find(|(key, _)| *key == id.into_u64())
        {
            captured.entered += 1;
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        let mut spans = self.0.lock().unwrap();
        if let Some((_, captured)) = spans
            .iter_mut()
            .rev()
            .find(|(key, _)| *key == id.into_u64())
        {
            values.record(&mut Fields(&mut captured.fields));
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn calls_and_statements_are_traced_without_values() {
    let url = support::fresh_database("tracing").await;
    let schema = auth_schema(AuthSchemaOptions::default());
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect");
    adapter.run_migrations(&schema).await.expect("migrate");

    let capture = Capture::default();
    let _guard = capture_on_this_thread(&capture);

    adapter
        .create(secret_user("u-1", "hidden-value@example.com"))
        .await
        .expect("typed create");
    let found = adapter
        .find_one(FindOne::new("user").where_clause(Where::new(
            "email",
            DbValue::String("hidden-value@example.com".to_owned()),
        )))
        .await
        .expect("typed find");
    assert!(found.is_some());
    let many = adapter
        .find_many(FindMany::new("user").where_clause(Where::new(
            "name",
            DbValue::String("Secret Name".to_owned()),
        )))
        .await
        .expect("generic find_many");
    assert_eq!(many.len(), 1);
    let failed = adapter
        .find_one(
            FindOne::new("user")
                .where_clause(Where::new("no_such_field", DbValue::String("x".to_owned()))),
        )
        .await;
    assert!(failed.is_err());
    // A database error whose detail quotes a value: the span keeps only the SQLSTATE.
    let duplicate = adapter
        .create(secret_user("u-1", "hidden-value@example.com"))
        .await;
    assert!(duplicate.unwrap_err().to_string().contains("23505"));

    let spans = capture.0.lock().unwrap().clone();
    let calls: Vec<&Captured> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.name == "rustauth_tokio_postgres.call")
        .collect();
    let statements: Vec<&Captured> = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.name == "rustauth_tokio_postgres.statement")
        .collect();
    assert_eq!(calls.len(), 5, "{calls:#?}");

    let field = |span: &Captured, name: &str| span.fields.get(name).cloned().unwrap_or_default();
    assert_eq!(field(calls[0], "operation"), "create");
    assert_eq!(field(calls[0], "model"), "user");
    assert_eq!(field(calls[0], "path"), "typed");
    assert_eq!(field(calls[0], "rows"), "1");
    assert_eq!(field(calls[1], "operation"), "find_one");
    assert_eq!(field(calls[1], "path"), "typed");
    assert_eq!(field(calls[1], "rows"), "1");
    assert_eq!(field(calls[2], "operation"), "find_many");
    assert_eq!(field(calls[2], "path"), "generic");
    assert_eq!(field(calls[2], "rows"), "1");
    assert!(
        field(calls[3], "error").contains("no_such_field"),
        "{:?}",
        calls[3]
    );
    for call in &calls {
        assert!(!field(call, "duration_us").is_empty(), "{call:?}");
    }

    // Each successful call ran exactly one statement, inside its call span.
    assert!(statements.len() >= 3, "{statements:#?}");
    for statement in &statements {
        assert_eq!(
            statement.parent.as_deref(),
            Some("rustauth_tokio_postgres.call")
        );
        // The statement ran inside its span, not beside it.
        assert!(statement.entered > 0, "{statement:?}");
    }
    for call in &calls {
        assert!(call.entered > 0, "{call:?}");
    }
    assert!(statements
        .iter()
        .any(|s| field(s, "kind") == "typed" && field(s, "sql").contains("\"users\"")));
    assert!(statements
        .iter()
        .any(|s| field(s, "kind") == "generic" && field(s, "sql").contains("\"name\" = $1")));

    // No parameter value reaches any span.
    for span in &spans {
        for value in span.1.fields.values() {
            assert!(!value.contains("hidden-value"), "{span:?}");
            assert!(!value.contains("Secret Name"), "{span:?}");
        }
    }
}

/// A core table that differs from migrations/ is left to the generic path with one warning
/// per table and connection naming the column, however many calls follow.
#[tokio::test(flavor = "current_thread")]
async fn a_differing_core_table_is_named_in_one_warning_per_connection() {
    let url = support::fresh_database("tracing_live").await;
    let schema = auth_schema(AuthSchemaOptions::default());
    TokioPostgresAdapter::connect_with_schema(&url, schema.clone())
        .await
        .expect("connect")
        .run_migrations(&schema)
        .await
        .expect("migrate");
    support::connect(&url)
        .await
        .batch_execute("ALTER TABLE users ALTER COLUMN created_at TYPE timestamp(3)")
        .await
        .expect("alter");

    let capture = Capture::default();
    let _guard = capture_on_this_thread(&capture);
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema)
        .await
        .expect("connect");
    for index in 0..3 {
        adapter
            .create(secret_user(
                &format!("u-{index}"),
                &format!("{index}@example.com"),
            ))
            .await
            .expect("create on the generic path");
        adapter
            .find_one(
                FindOne::new("user")
                    .where_clause(Where::new("id", DbValue::String(format!("u-{index}")))),
            )
            .await
            .expect("find")
            .expect("the user");
    }
    assert_eq!(adapter.typed_call_count(), 0, "users is served generically");
    let spans = capture.0.lock().unwrap().clone();
    let warnings = spans
        .iter()
        .map(|(_, span)| span)
        .filter(|span| span.name == "event:WARN")
        .collect::<Vec<_>>();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = &warnings[0].fields;
    assert_eq!(warning.get("table").map(String::as_str), Some("users"));
    assert_eq!(
        warning.get("column").map(String::as_str),
        Some("created_at")
    );
    assert_eq!(warning.get("found").map(String::as_str), Some("timestamp"));
    assert_eq!(
        warning.get("expected").map(String::as_str),
        Some("timestamptz")
    );
}

/// A user whose name and email must never appear in a span.
fn secret_user(id: &str, email: &str) -> Create {
    fixtures::user(id)
        .data("name", DbValue::String("Secret Name".to_owned()))
        .data("email", DbValue::String(email.to_owned()))
}
