//! `TokioPostgresRateLimitStore`: RustAuth's SQL rate limit as one atomic statement.
//!
//! 0.3.2 took the connection's gate exclusively and ran BEGIN, INSERT, SELECT … FOR UPDATE,
//! UPDATE and COMMIT for every request. Here a consume is a single
//! `INSERT … ON CONFLICT … DO UPDATE … WHERE … RETURNING` on the shared side of the gate: it
//! never runs inside someone else's open transaction on a shared gate, but it pipelines with
//! every other call. Postgres' row lock on the conflicting key serialises concurrent consumes
//! of one key, and the `WHERE` of the `DO UPDATE` re-checks the newest row version, so
//! concurrent requests never over-admit.

use std::fmt;
use std::sync::Arc;

use rustauth_core::db::sql::{rate_limit_count_from_i64, SqlDialect, SqlParam, SqlRateLimitNames};
use rustauth_core::db::{DbField, DbFieldType, DbValue};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{
    validate_rate_limit_rule, RateLimitConsumeInput, RateLimitDecision, RateLimitFuture,
    RateLimitStore,
};

use crate::connection::TokioPostgresConnection;
use crate::error::Error;
use crate::runner::{Db, Sql};

/// A RustAuth rate-limit store on a PostgreSQL table (`key`, `count`, `last_request`).
#[derive(Clone)]
pub struct TokioPostgresRateLimitStore {
    connection: TokioPostgresConnection,
    names: SqlRateLimitNames,
    /// The consume statement for `names`, built once; `None` when `names` hold an invalid
    /// identifier, which every consume reports (after rule validation) by building it again,
    /// as the store cannot fail to be built.
    statement: Option<Arc<str>>,
    /// Whether `names` are the defaults, which the generated statement serves.
    typed: bool,
}

impl fmt::Debug for TokioPostgresRateLimitStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioPostgresRateLimitStore")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl TokioPostgresRateLimitStore {
    /// A store on `table` (default column names) sharing `connection` and its gate. No I/O.
    pub fn from_connection(connection: &TokioPostgresConnection, table: impl Into<String>) -> Self {
        Self::from_connection_with_names(connection.clone(), SqlRateLimitNames::new(table))
    }

    /// A store on `table` with its own connection (and its own gate).
    pub async fn connect(
        database_url: &str,
        table: impl Into<String>,
    ) -> Result<Self, RustAuthError> {
        let connection = TokioPostgresConnection::connect(database_url).await?;
        Ok(Self::from_connection(&connection, table))
    }

    /// The connection this store runs on.
    pub fn connection(&self) -> &TokioPostgresConnection {
        &self.connection
    }

    /// A store on the table `names` describe, sharing `connection` (the adapter's store is
    /// made here, from its connection and its schema's names). No I/O.
    pub(crate) fn from_connection_with_names(
        connection: TokioPostgresConnection,
        names: SqlRateLimitNames,
    ) -> Self {
        let statement = consume_statement(&names).ok().map(Arc::from);
        let typed = names == SqlRateLimitNames::new("rate_limits");
        Self {
            connection,
            names,
            statement,
            typed,
        }
    }

    /// The consume behind [`RateLimitStore::consume`]. An `async move` block, not an
    /// `async fn`: that would keep `input` twice in the future the store boxes per call.
    #[allow(clippy::manual_async_fn)]
    fn consume_input(
        &self,
        input: RateLimitConsumeInput,
    ) -> impl std::future::Future<Output = Result<RateLimitDecision, RustAuthError>> + '_ {
        async move {
            // Rule errors come first, before the gate or the database is touched.
            validate_rate_limit_rule(&input.rule)?;
            let built;
            let sql: &str = match &self.statement {
                Some(sql) => sql,
                None => {
                    // The same names fail the same way: this returns their error.
                    built = consume_statement(&self.names)?;
                    &built
                }
            };
            let lease = self.connection.call().await?;
            let handle = lease.handle().await?;
            Ok(consume_with(Db::on(&handle), sql, &self.names, self.typed, &input).await?)
        }
    }
}

impl RateLimitStore for TokioPostgresRateLimitStore {
    fn consume<'a>(&'a self, input: RateLimitConsumeInput) -> RateLimitFuture<'a> {
        Box::pin(self.consume_input(input))
    }
}

/// How often a consume runs its statement before giving up: a denial whose row another session
/// inserted after the statement's snapshot shows no row, and the next attempt sees it, so
/// three attempts are far more than that race ever needs.
const CONSUME_ATTEMPTS: usize = 3;

/// The one-statement consume for a table's physical names.
///
/// Parameters: `$1` key, `$2` now (epoch ms), `$3` window (ms), `$4` max; the same text as
/// the generated `consume_rate_limit` for the default table. The window test
/// saturates `now - last_request` to the `bigint` range exactly as core's arithmetic does;
/// rows with a negative stored count are left alone and reported by the second branch.
/// The second branch returns the row a denied request found, so a denial costs no extra
/// round trip; it reads the statement's snapshot, which can miss a row another session
/// inserted a moment ago, in which case the caller runs the statement again.
pub(crate) fn consume_statement(names: &SqlRateLimitNames) -> Result<String, RustAuthError> {
    let pg = SqlDialect::Postgres;
    let table = pg.quote_identifier(&names.table)?;
    let key = pg.quote_identifier(&names.key)?;
    let count = pg.quote_identifier(&names.count)?;
    let last = pg.quote_identifier(&names.last_request)?;
    // `now - last_request` saturated to the `bigint` range, as core's arithmetic saturates.
    let (bigint_min, bigint_max) = (i64::MIN, i64::MAX);
    let inside = format!(
        "LEAST(GREATEST($2::numeric - \"r\".{last}::numeric, {bigint_min}), {bigint_max}) \
         <= $3::bigint"
    );
    Ok(format!(
        "WITH \"consumed\" AS (\
INSERT INTO {table} AS \"r\" ({key}, {count}, {last}) VALUES ($1, 1, $2::bigint) \
ON CONFLICT ({key}) DO UPDATE SET \
{count} = CASE WHEN {inside} THEN \"r\".{count} + 1 ELSE 1 END, {last} = $2::bigint \
WHERE \"r\".{count} >= 0 AND NOT ({inside} AND \"r\".{count} >= $4::bigint) \
RETURNING \"r\".{count}, \"r\".{last}) \
SELECT TRUE AS \"permitted\", {count} AS \"count\", {last} AS \"last_request\" FROM \"consumed\" \
UNION ALL \
SELECT FALSE, {count}, {last} FROM {table} WHERE {key} = $1 \
AND NOT EXISTS (SELECT 1 FROM \"consumed\")"
    ))
}

/// Runs the consume statement and turns its row into core's decision. With the default
/// table names it runs the generated statement (the same SQL text, prepared with the other
/// typed statements); otherwise `sql`, through the statement cache.
pub(crate) async fn consume_with(
    db: Db<'_>,
    sql: &str,
    names: &SqlRateLimitNames,
    typed: bool,
    input: &RateLimitConsumeInput,
) -> crate::error::Result<RateLimitDecision> {
    let window_ms = validate_rate_limit_rule(&input.rule)?;
    let max = i64::try_from(input.rule.max)
        .map_err(|_| RustAuthError::InvalidConfig("rate limit max must fit in i64".to_owned()))?;
    // A denial whose row was inserted after this statement's snapshot shows no row; the
    // next attempt sees it.
    for _ in 0..CONSUME_ATTEMPTS {
        let routed = if typed {
            crate::typed::consume_rate_limit(db, &input.key, input.now_ms, window_ms, max).await
        } else {
            None
        };
        let row = match routed {
            Some(row) => row?,
            // Boxed: the generic statement's future is kilobytes, and inline it would size
            // (and be moved with) every consume's future, typed or not.
            None => Box::pin(consume_generic(db, sql, names, input, window_ms, max)).await?,
        };
        if let Some((permitted, count, last_request)) = row {
            return Ok(decide(input, window_ms, permitted, count, last_request)?);
        }
    }
    Err(Error::Unexpected(format!(
        "rate limit row for key `{}` was neither written nor found",
        input.key
    )))
}

/// One attempt of the consume on the generic path: the store's own statement text for its
/// table's names, with the rule's window and max already checked and in milliseconds.
async fn consume_generic(
    db: Db<'_>,
    sql: &str,
    names: &SqlRateLimitNames,
    input: &RateLimitConsumeInput,
    window_ms: i64,
    max: i64,
) -> crate::error::Result<Option<(bool, i64, i64)>> {
    let text = DbField::new("key", DbFieldType::String);
    let number_field = DbField::new("count", DbFieldType::Number);
    let params = [
        SqlParam::new(&text, DbValue::String(input.key.clone())),
        SqlParam::new(&number_field, DbValue::Number(input.now_ms)),
        SqlParam::new(&number_field, DbValue::Number(window_ms)),
        SqlParam::new(&number_field, DbValue::Number(max)),
    ];
    let statement = Sql {
        text: sql,
        params: &params,
        table: &names.table,
        // The key is compared with the key column; the numbers meet casts.
        targets: &[Some(names.key.as_str()), None, None, None],
        returning: &[],
    };
    match db.query_opt(statement).await? {
        // `count` and `last_request` may be `integer` or `bigint` columns (Better Auth
        // creates `count integer`): read them by their real type.
        Some(row) => Ok(Some((
            row.try_get(0)?,
            number(&row, 1, &number_field)?,
            number(&row, 2, &number_field)?,
        ))),
        None => Ok(None),
    }
}

/// A number column of the consume's result, whatever integer type it has.
fn number(row: &tokio_postgres::Row, index: usize, field: &DbField) -> crate::error::Result<i64> {
    match crate::values::decode(row, index, field)? {
        DbValue::Number(value) => Ok(value),
        other => Err(crate::error::value_error(format!(
            "rate limit column {index} holds {other:?}, not a number"
        ))),
    }
}

/// Core's decision for the row the statement returned.
fn decide(
    input: &RateLimitConsumeInput,
    window_ms: i64,
    permitted: bool,
    count: i64,
    last_request: i64,
) -> Result<RateLimitDecision, RustAuthError> {
    let count = rate_limit_count_from_i64(count)?;
    if permitted {
        return Ok(RateLimitDecision {
            permitted: true,
            retry_after: 0,
            limit: input.rule.max,
            remaining: input.rule.max.saturating_sub(count),
            reset_after: u64::try_from(input.rule.window.whole_seconds()).unwrap_or(0),
        });
    }
    // The database denied: the stored row was inside the window and at its limit.
    let retry_ms = last_request
        .saturating_add(window_ms)
        .saturating_sub(input.now_ms)
        .max(0);
    let retry_after = ceil_millis_to_seconds(retry_ms);
    Ok(RateLimitDecision {
        permitted: false,
        retry_after,
        limit: input.rule.max,
        remaining: 0,
        reset_after: retry_after,
    })
}

/// Whole seconds, rounded up, as core's rate-limit arithmetic reports them.
fn ceil_millis_to_seconds(milliseconds: i64) -> u64 {
    u64::try_from(milliseconds)
        .map(|milliseconds| milliseconds.saturating_add(999) / 1000)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generic_statement_is_the_generated_one_for_the_default_table() {
        let generic = consume_statement(&SqlRateLimitNames::new("rate_limits"));
        assert_eq!(
            generic.ok().as_deref(),
            Some(crate::generated::queries::rate_limit::consume_rate_limit().sql())
        );
    }
}
