//! Running one planned statement: prepared (and cached) or not, with the 0A000 retry.

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use postgres_types::ToSql;
use rustauth_core::db::sql::SqlParam;
use rustauth_core::error::RustAuthError;
use tokio_postgres::{Client, Row, Statement};
use tracing::Instrument;

use crate::connect::StatementMode;
use crate::connection::ClientHandle;
use crate::error::{adapter, postgres_error, sqlstate, FEATURE_NOT_SUPPORTED};
use crate::values::{bind_all, bind_declared, param_refs};

/// The most parameters one statement can carry (the protocol's 16-bit count).
const MAX_PARAMETERS: usize = 65_535;

/// Where a statement runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Db<'a> {
    /// One of our connections: statements come from its cache. Outside a transaction a
    /// statement the server rejects with 0A000 is prepared again and retried once. Inside one
    /// (`transaction` is the transaction's "aborted" flag) any server error aborts the
    /// transaction: the flag is set and the error returned (a 0A000 entry is still evicted).
    Cached {
        handle: &'a ClientHandle,
        transaction: Option<&'a AtomicBool>,
    },
    /// A caller's client (the `driver` module): every call prepares its statement.
    Plain(&'a Client),
}

enum Want {
    Rows,
    Count,
}

enum Outcome {
    Rows(Vec<Row>),
    Count(u64),
}

enum Failure {
    Server(tokio_postgres::Error),
    Other(RustAuthError),
}

impl From<Failure> for RustAuthError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Server(error) => postgres_error(error),
            Failure::Other(error) => error,
        }
    }
}

impl Db<'_> {
    /// Runs a statement and returns its rows.
    pub(crate) async fn query(
        self,
        sql: &str,
        params: &[SqlParam],
    ) -> Result<Vec<Row>, RustAuthError> {
        match self.run(sql, params, Want::Rows).await? {
            Outcome::Rows(rows) => Ok(rows),
            Outcome::Count(_) => Ok(Vec::new()),
        }
    }

    /// Runs a statement and returns its first row, if any.
    pub(crate) async fn query_opt(
        self,
        sql: &str,
        params: &[SqlParam],
    ) -> Result<Option<Row>, RustAuthError> {
        Ok(self.query(sql, params).await?.into_iter().next())
    }

    /// Runs a statement and returns how many rows it affected.
    pub(crate) async fn execute(
        self,
        sql: &str,
        params: &[SqlParam],
    ) -> Result<u64, RustAuthError> {
        match self.run(sql, params, Want::Count).await? {
            Outcome::Count(count) => Ok(count),
            Outcome::Rows(rows) => Ok(rows.len() as u64),
        }
    }

    async fn run(
        self,
        sql: &str,
        params: &[SqlParam],
        want: Want,
    ) -> Result<Outcome, RustAuthError> {
        if params.len() > MAX_PARAMETERS {
            // The protocol counts parameters in 16 bits; more would be sent as a corrupt
            // message and reported as an unreadable server response.
            return Err(adapter(format!(
                "statement has {} parameters; PostgreSQL accepts at most {MAX_PARAMETERS} \
                 (split the IN list)",
                params.len()
            )));
        }
        let kind = match self {
            Self::Plain(_) => "generic (unprepared client)",
            Self::Cached { handle, .. } if handle.mode == StatementMode::Unprepared => {
                "generic (unprepared)"
            }
            Self::Cached { .. } => "generic",
        };
        self.dispatch(sql, params, want)
            .instrument(crate::trace::statement_span(sql, kind))
            .await
    }

    async fn dispatch(
        self,
        sql: &str,
        params: &[SqlParam],
        want: Want,
    ) -> Result<Outcome, RustAuthError> {
        match self {
            Self::Plain(client) => {
                let statement = client.prepare(sql).await.map_err(postgres_error)?;
                Ok(run_prepared(client, &statement, params, &want).await?)
            }
            Self::Cached {
                handle,
                transaction: Some(aborted),
            } => match attempt(handle, sql, params, &want).await {
                Err(Failure::Server(error)) => {
                    if sqlstate(&error) == Some(FEATURE_NOT_SUPPORTED) {
                        handle.statements.remove(sql);
                    }
                    aborted.store(true, Ordering::SeqCst);
                    Err(postgres_error(error))
                }
                other => Ok(other?),
            },
            Self::Cached {
                handle,
                transaction: None,
            } => match attempt(handle, sql, params, &want).await {
                Err(Failure::Server(error)) if sqlstate(&error) == Some(FEATURE_NOT_SUPPORTED) => {
                    handle.statements.remove(sql);
                    Ok(attempt(handle, sql, params, &want).await?)
                }
                other => Ok(other?),
            },
        }
    }
}

/// Prepares `sql` on the handle's connection unless it is cached.
pub(crate) async fn prepared(
    handle: &ClientHandle,
    sql: &str,
) -> Result<Statement, tokio_postgres::Error> {
    if let Some(statement) = handle.statements.get(sql) {
        return Ok(statement);
    }
    let statement = handle.client.prepare(sql).await?;
    handle.statements.insert(sql, statement.clone());
    Ok(statement)
}

async fn attempt(
    handle: &ClientHandle,
    sql: &str,
    params: &[SqlParam],
    want: &Want,
) -> Result<Outcome, Failure> {
    if handle.mode == StatementMode::Unprepared {
        return run_unprepared(&handle.client, sql, params, want).await;
    }
    let statement = prepared(handle, sql).await.map_err(Failure::Server)?;
    run_prepared(&handle.client, &statement, params, want).await
}

/// One unnamed statement with parameter types declared from the schema fields: Parse, Bind,
/// Execute and Sync in one round trip, nothing left on the server afterwards.
async fn run_unprepared(
    client: &Client,
    sql: &str,
    params: &[SqlParam],
    want: &Want,
) -> Result<Outcome, Failure> {
    let (values, types) = bind_declared(params).map_err(Failure::Other)?;
    let typed = values
        .iter()
        .zip(types)
        .map(|(value, ty)| (value as &(dyn ToSql + Sync), ty))
        .collect::<Vec<_>>();
    match want {
        Want::Rows => client
            .query_typed(sql, &typed)
            .await
            .map(Outcome::Rows)
            .map_err(Failure::Server),
        Want::Count => {
            let stream = client
                .query_typed_raw(sql, typed)
                .await
                .map_err(Failure::Server)?;
            futures_util::pin_mut!(stream);
            while let Some(row) = stream.next().await {
                row.map_err(Failure::Server)?;
            }
            Ok(Outcome::Count(stream.rows_affected().unwrap_or(0)))
        }
    }
}

async fn run_prepared(
    client: &Client,
    statement: &Statement,
    params: &[SqlParam],
    want: &Want,
) -> Result<Outcome, Failure> {
    let values = bind_all(params, statement.params()).map_err(Failure::Other)?;
    let refs = param_refs(&values);
    match want {
        Want::Rows => client
            .query(statement, &refs)
            .await
            .map(Outcome::Rows)
            .map_err(Failure::Server),
        Want::Count => client
            .execute(statement, &refs)
            .await
            .map(Outcome::Count)
            .map_err(Failure::Server),
    }
}
