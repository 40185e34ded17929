//! Running one planned statement: prepared (and cached) or not, with the 0A000 retry.

use std::sync::atomic::{AtomicBool, Ordering};

use rustauth_core::db::sql::SqlParam;
use rustauth_core::error::RustAuthError;
use tokio_postgres::{Client, Row, Statement};

use crate::connection::ClientHandle;
use crate::error::{postgres_error, sqlstate, FEATURE_NOT_SUPPORTED};
use crate::values::{bind_all, param_refs};

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
    let statement = prepared(handle, sql).await.map_err(Failure::Server)?;
    run_prepared(&handle.client, &statement, params, want).await
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
