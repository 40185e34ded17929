//! Tracing: one span per adapter call and one per statement. Spans carry the model, the
//! operation, the path (typed or generic), the row count, the duration and the SQL text, but
//! never a parameter value: values only ever travel as bound parameters.

use std::future::Future;
use std::time::Instant;

use futures_util::future::Either;
use futures_util::FutureExt;
use rustauth_core::error::RustAuthError;
use tracing::{field, Instrument, Span};

/// Target of every span this crate emits.
pub(crate) const TARGET: &str = "rustauth_tokio_postgres";

/// Whole milliseconds, for the fields of events (`duration_ms`, `waited_ms`, …).
pub(crate) fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The span of one adapter call. `path` starts as `generic`; the typed router records
/// `typed` when a generated statement served the call.
pub(crate) fn call_span(operation: &'static str, model: &str) -> Span {
    tracing::debug_span!(
        target: TARGET,
        "rustauth_tokio_postgres.call",
        operation,
        model,
        path = "generic",
        rows = field::Empty,
        duration_us = field::Empty,
        error = field::Empty,
    )
}

/// The span of one statement sent to the server.
pub(crate) fn statement_span(sql: &str, kind: &'static str) -> Span {
    tracing::debug_span!(
        target: TARGET,
        "rustauth_tokio_postgres.statement",
        sql,
        kind,
    )
}

/// Awaits `future` inside `span`, or plainly when no subscriber wants the span: entering and
/// leaving a disabled span on every poll is work for nothing.
///
/// Not an `async fn`: that would keep `future` in its own state and move it again to await
/// it; this moves it once, into whichever of the two it becomes.
pub(crate) fn in_span<F: Future>(span: Span, future: F) -> impl Future<Output = F::Output> {
    if span.is_disabled() {
        Either::Left(future)
    } else {
        Either::Right(future.instrument(span))
    }
}

/// Row counts for [`traced`]: one record.
pub(crate) fn one<T>(_: &T) -> Option<u64> {
    Some(1)
}

/// Row counts for [`traced`]: a record or none.
pub(crate) fn found<T>(record: &Option<T>) -> Option<u64> {
    Some(u64::from(record.is_some()))
}

/// Row counts for [`traced`]: the records returned.
#[allow(clippy::ptr_arg)] // passed where a `FnOnce(&Vec<_>)` is expected
pub(crate) fn listed<T>(records: &Vec<T>) -> Option<u64> {
    Some(records.len() as u64)
}

/// Row counts for [`traced`]: the rows the statement reports affected.
pub(crate) fn counted(rows: &u64) -> Option<u64> {
    Some(*rows)
}

/// Row counts for [`traced`]: nothing to report.
pub(crate) fn unknown<T>(_: &T) -> Option<u64> {
    None
}

/// Runs `call` inside `span` ([`in_span`]), then records its row count, duration and error
/// (if any), and turns the crate's error into the `RustAuthError` callers see. The duration
/// counts from here: the adapter builds this future and its caller awaits it at once.
///
/// Not an `async fn`: that would keep `call` in its state twice (as the argument, and again
/// as the awaited value), and the adapter boxes this future on every call. As a combinator it
/// holds `call` once, plus the span and the clock reading: small enough for the allocator's
/// per-thread cache of freed blocks (glibc keeps blocks of up to 1,032 bytes there), where a
/// larger box takes the allocator's slow path and merges its fast lists on every call.
pub(crate) fn traced<T, F>(
    span: Span,
    rows: impl FnOnce(&T) -> Option<u64>,
    call: F,
) -> impl Future<Output = Result<T, RustAuthError>>
where
    F: Future<Output = crate::error::Result<T>>,
{
    // Nobody records a disabled span: no clock reads, no fields.
    let started = (!span.is_disabled()).then(Instant::now);
    in_span(span.clone(), call).map(move |result| {
        if let Some(started) = started {
            let elapsed = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            span.record("duration_us", elapsed);
            match &result {
                Ok(value) => {
                    if let Some(rows) = rows(value) {
                        span.record("rows", rows);
                    }
                }
                Err(error) => {
                    span.record("error", tracing::field::display(error.kind()));
                }
            }
        }
        result.map_err(RustAuthError::from)
    })
}
