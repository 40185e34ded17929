//! The one statement runner. Every statement this crate sends (generic, typed, rate limit,
//! driver) goes through here, and so do the decisions about it:
//!
//! - **values follow the column**: a parameter is converted for the type of the column it
//!   meets: the prepared statement's parameter type, or in unprepared mode the live catalog's
//!   column type (see `catalog.rs`); a value that does not fit is refused before anything is
//!   sent, naming the column;
//! - **nothing unreadable runs**: a statement whose result has a column this adapter cannot
//!   decode is refused before it is executed, so a write is never applied and then reported
//!   as failed;
//! - **stale statements heal**: a cached statement that met another version of its table
//!   (SQLSTATE 0A000, 42804, 42883 when PostgreSQL re-plans it, or parameter types a value no
//!   longer fits after someone widened a column) is prepared again, with the catalog read
//!   again, and the call retried once. Inside a transaction a retry is only made when the
//!   failure happened on the client (nothing reached the server); a server error there has
//!   already aborted the transaction, so the error is returned;
//! - **typed calls fall back**: a generated statement that met a stale plan outside a
//!   transaction hands the call to the generic path (`None`);
//! - **transactions abort only on what aborts them**: a server error or a lost connection
//!   marks the transaction aborted; a value refused on the client does not;
//! - **wrong servers are left**: a write refused because the server is read-only (SQLSTATE
//!   25006: a standby, or a primary demoted under the connection) marks the connection, and
//!   the next call connects again, to a writable server. The call itself returns the error
//!   (nothing is retried: a write is never sent twice);
//! - **one span per statement**, with its SQL text and kind, never a parameter value.
//!
//! `BEGIN`, `COMMIT` and `ROLLBACK` (also the rollback of an abandoned transaction) run here
//! too ([`Db::control`]), as do the generated statements ([`Db::typed`]): the typed router
//! gets its client and statements from here, never from the live connection. Migrations and
//! catalog reads are the exceptions: they run their own statements on the client
//! (`migrate/`, `catalog.rs`).

use std::sync::atomic::{AtomicBool, Ordering};

use futures_util::StreamExt;
use postgres_types::{ToSql, Type};
use rustauth_core::db::sql::SqlParam;
use tokio_postgres::{Client, Row, Statement};

use crate::connect::StatementMode;
use crate::error::{value_error, Error, Result};
use crate::live::ClientHandle;
use crate::typed::statements::{Groups, TableSet};
use crate::values::{
    bind_all, bind_loose, declared_type, param_refs, readable, unreadable, PgParam,
};

/// The most parameters one statement can carry (the protocol's 16-bit count).
const MAX_PARAMETERS: usize = 65_535;

/// One statement: its text, its parameters, and for each parameter the physical column it
/// meets (`None` where it meets an expression, e.g. a `LIKE` pattern or `LOWER($n)`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sql<'a> {
    /// The SQL text.
    pub(crate) text: &'a str,
    /// The parameters, in placeholder order.
    pub(crate) params: &'a [SqlParam],
    /// The physical table the statement is about, as the schema names it.
    pub(crate) table: &'a str,
    /// Per parameter, the column it is compared with or assigned to.
    pub(crate) targets: &'a [Option<&'a str>],
    /// Columns a write statement returns (checked against the catalog in unprepared mode
    /// before the write is sent).
    pub(crate) returning: &'a [&'a str],
}

impl<'a> Sql<'a> {
    /// A statement with no knowledge of its parameters' columns (they are typed from the
    /// prepared statement, or declared from their schema fields in unprepared mode).
    pub(crate) fn plain(text: &'a str, params: &'a [SqlParam]) -> Self {
        Self {
            text,
            params,
            table: "",
            targets: &[],
            returning: &[],
        }
    }
}

/// Where a statement runs.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Db<'a> {
    /// One of our connections: statements come from its caches, the catalog types values.
    /// `transaction` is the open transaction's "aborted" flag.
    Cached {
        handle: &'a ClientHandle,
        transaction: Option<&'a AtomicBool>,
    },
    /// A caller's client (the `driver` module): every statement is sent unnamed, in one
    /// round trip, its strings, timestamps and NULLs typed by the server (see
    /// `values::LooseParam`).
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

/// A transaction's control statements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Control {
    Begin,
    Commit,
    Rollback,
}

impl Control {
    fn sql(self) -> &'static str {
        match self {
            Self::Begin => "BEGIN",
            Self::Commit => "COMMIT",
            Self::Rollback => "ROLLBACK",
        }
    }
}

impl<'a> Db<'a> {
    /// Statements on one of our connections, outside a transaction.
    pub(crate) fn on(handle: &'a ClientHandle) -> Self {
        Self::Cached {
            handle,
            transaction: None,
        }
    }

    /// Statements inside a transaction on one of our connections; `aborted` is set when one
    /// of them ends the transaction.
    pub(crate) fn in_transaction(handle: &'a ClientHandle, aborted: &'a AtomicBool) -> Self {
        Self::Cached {
            handle,
            transaction: Some(aborted),
        }
    }

    /// Sends `BEGIN`, `COMMIT` or `ROLLBACK` (one simple-protocol round trip) under the same
    /// policy as every statement: its span, a failure that ends the transaction marks it
    /// aborted, a read-only server marks the connection.
    pub(crate) async fn control(self, control: Control) -> Result<()> {
        let client = match self {
            Self::Cached { handle, .. } => &handle.client,
            Self::Plain(client) => client,
        };
        let result = crate::trace::in_span(
            crate::trace::statement_span(control.sql(), "transaction"),
            client.batch_execute(control.sql()),
        )
        .await
        .map_err(Error::from);
        if let Err(error) = &result {
            self.after_failure(error);
        }
        result
    }

    /// The generated statements of this connection for the tables `wanted`, when they can
    /// run here at all: one of our connections in prepared mode (the driver's unprepared calls
    /// and `statement_mode=unprepared` never take them). Groups not decided yet are prepared
    /// only outside a transaction (a failed Parse inside one would abort it).
    pub(crate) async fn typed(self, wanted: TableSet) -> Option<TypedDb<'a>> {
        let Self::Cached {
            handle,
            transaction,
        } = self
        else {
            return None;
        };
        if handle.mode != StatementMode::Prepared {
            return None;
        }
        let groups = handle
            .typed
            .get(
                &handle.client,
                &handle.catalog,
                wanted,
                transaction.is_none(),
            )
            .await;
        Some(TypedDb {
            handle,
            transaction,
            groups,
        })
    }

    /// Runs a statement and returns its rows.
    pub(crate) async fn query(self, sql: Sql<'_>) -> Result<Vec<Row>> {
        match self.run(sql, Want::Rows).await? {
            Outcome::Rows(rows) => Ok(rows),
            Outcome::Count(_) => Ok(Vec::new()),
        }
    }

    /// Runs a statement and returns its first row, if any.
    pub(crate) async fn query_opt(self, sql: Sql<'_>) -> Result<Option<Row>> {
        Ok(self.query(sql).await?.into_iter().next())
    }

    /// Runs a statement and returns how many rows it affected.
    pub(crate) async fn execute(self, sql: Sql<'_>) -> Result<u64> {
        match self.run(sql, Want::Count).await? {
            Outcome::Count(count) => Ok(count),
            Outcome::Rows(rows) => Ok(rows.len() as u64),
        }
    }

    /// The open transaction's flag, if this runs inside one.
    fn transaction(self) -> Option<&'a AtomicBool> {
        match self {
            Self::Cached { transaction, .. } => transaction,
            Self::Plain(_) => None,
        }
    }

    async fn run(self, sql: Sql<'_>, want: Want) -> Result<Outcome> {
        if sql.params.len() > MAX_PARAMETERS {
            // The protocol counts parameters in 16 bits; more would be sent as a corrupt
            // message and reported as an unreadable server response.
            return Err(value_error(format!(
                "statement has {} parameters; PostgreSQL accepts at most {MAX_PARAMETERS} \
                 (split the IN list)",
                sql.params.len()
            )));
        }
        let kind = match self {
            Self::Plain(_) => "generic (unprepared client)",
            Self::Cached { handle, .. } if handle.mode == StatementMode::Unprepared => {
                "generic (unprepared)"
            }
            Self::Cached { .. } => "generic",
        };
        let result = crate::trace::in_span(
            crate::trace::statement_span(sql.text, kind),
            self.dispatch(sql, &want),
        )
        .await;
        if let Err(error) = &result {
            self.after_failure(error);
        }
        result
    }

    /// What a failed statement means for the transaction and the connection it ran on.
    fn after_failure(self, error: &Error) {
        if let (Some(aborted), true) = (self.transaction(), error.aborts_transaction()) {
            aborted.store(true, Ordering::SeqCst);
        }
        if let (Self::Cached { handle, .. }, true) = (self, error.read_only_server()) {
            handle.mark_read_only();
        }
    }

    async fn dispatch(self, sql: Sql<'_>, want: &Want) -> Result<Outcome> {
        let (handle, in_transaction) = match self {
            Self::Plain(client) => {
                // One unnamed statement, one round trip; the server types the loose values.
                let (values, types) = bind_loose(sql.params)?;
                return run_typed_values(client, sql.text, &values, &types, want).await;
            }
            Self::Cached {
                handle,
                transaction,
            } => (handle, transaction.is_some()),
        };
        match handle.mode {
            StatementMode::Prepared => prepared_attempts(handle, sql, want, in_transaction).await,
            StatementMode::Unprepared => {
                unprepared_attempts(handle, sql, want, in_transaction).await
            }
        }
    }
}

/// Prepared mode: the cached statement, prepared again once if it went stale.
async fn prepared_attempts(
    handle: &ClientHandle,
    sql: Sql<'_>,
    want: &Want,
    in_transaction: bool,
) -> Result<Outcome> {
    let (statement, cached) = prepared(handle, &sql).await?;
    let values = match bind_all(sql.params, statement.params(), sql.targets) {
        Ok(values) => values,
        Err(refused) if cached => {
            // The value does not fit the parameter types this statement was prepared with.
            // If someone altered the column since, the statement prepared afresh has other
            // types and the value may fit; nothing was sent, so this is safe anywhere.
            handle.invalidate_statement(sql.text);
            let (fresh, _) = prepared(handle, &sql).await?;
            if fresh.params() == statement.params() {
                return Err(refused);
            }
            let values = bind_all(sql.params, fresh.params(), sql.targets)?;
            return run_prepared(&handle.client, &fresh, &values, want).await;
        }
        Err(refused) => return Err(refused),
    };
    match run_prepared(&handle.client, &statement, &values, want).await {
        Err(error) if error.stale_statement() => {
            handle.invalidate_statement(sql.text);
            if in_transaction || !cached {
                return Err(error);
            }
            let (fresh, _) = prepared(handle, &sql).await?;
            let values = bind_all(sql.params, fresh.params(), sql.targets)?;
            run_prepared(&handle.client, &fresh, &values, want).await
        }
        other => other,
    }
}

/// Unprepared mode: parameter types from the live catalog, read again once if a value no
/// longer fits them or the server reports a stale plan.
///
/// Known gap: the readability of returned columns is judged from the catalog as this
/// connection last read it. If another process changes a returned column to a type this
/// adapter cannot read after that, a write with RETURNING is applied and then fails to decode
/// (prepared mode refuses it before it runs; tests/it/live_catalog.rs). Closing it needs the
/// result's types before execution, which one unnamed round trip does not give.
async fn unprepared_attempts(
    handle: &ClientHandle,
    sql: Sql<'_>,
    want: &Want,
    in_transaction: bool,
) -> Result<Outcome> {
    let tables: &[&str] = if sql.table.is_empty() {
        &[]
    } else {
        std::slice::from_ref(&sql.table)
    };
    let fresh = tables.iter().any(|table| !handle.catalog.has(table));
    handle.catalog.load(&handle.client, tables).await?;
    let error = match unprepared_once(handle, &sql, want).await {
        Ok(outcome) => return Ok(outcome),
        Err(error) => error,
    };
    let retry = if matches!(error, Error::Value(_)) {
        // Refused on the client against types read earlier: nothing was sent.
        !fresh
    } else {
        error.stale_statement() && !in_transaction
    };
    if !retry {
        return Err(error);
    }
    // Someone may have altered the table: read its columns again and try once more.
    handle.catalog.clear();
    handle.catalog.load(&handle.client, tables).await?;
    unprepared_once(handle, &sql, want).await
}

async fn unprepared_once(handle: &ClientHandle, sql: &Sql<'_>, want: &Want) -> Result<Outcome> {
    let types = catalog_types(handle, sql)?;
    let values = bind_all(sql.params, &types, sql.targets)?;
    run_typed_values(&handle.client, sql.text, &values, &types, want).await
}

/// The declared type of every parameter: its column's live type, else its schema field's.
/// Refuses a statement whose returned columns the adapter could not read.
fn catalog_types(handle: &ClientHandle, sql: &Sql<'_>) -> Result<Vec<Type>> {
    let columns = handle.catalog.known(sql.table);
    if let Some(columns) = &columns {
        for name in sql.returning {
            if let Some(ty) = columns.get(name) {
                if !readable(ty) {
                    return Err(unreadable(sql.table, name, ty));
                }
            }
        }
    }
    let targets_fit = sql.targets.len() == sql.params.len();
    Ok(sql
        .params
        .iter()
        .enumerate()
        .map(|(index, param)| {
            let live = targets_fit
                .then(|| sql.targets[index])
                .flatten()
                .zip(columns.as_ref())
                .and_then(|(column, columns)| columns.get(column).cloned());
            live.unwrap_or_else(|| declared_type(param))
        })
        .collect())
}

/// `sql` prepared on the handle's connection, and whether it came from the cache. A statement
/// whose result has a column this adapter cannot read is refused when it is prepared, before
/// anything runs, and never cached: every cached statement has been checked once.
async fn prepared(handle: &ClientHandle, sql: &Sql<'_>) -> Result<(Statement, bool)> {
    if let Some(statement) = handle.statements.get(sql.text) {
        return Ok((statement, true));
    }
    let statement = handle
        .client
        .prepare(sql.text)
        .await
        .map_err(Error::prepared)?;
    if let Some(column) = statement
        .columns()
        .iter()
        .find(|column| !readable(column.type_()))
    {
        return Err(unreadable(sql.table, column.name(), column.type_()));
    }
    handle.statements.insert(sql.text, statement.clone());
    Ok((statement, false))
}

/// One unnamed statement with declared parameter types: Parse, Bind, Execute and Sync in one
/// round trip, nothing left on the server afterwards (unprepared mode and the driver).
async fn run_typed_values<P: ToSql + Sync>(
    client: &Client,
    sql: &str,
    values: &[P],
    types: &[Type],
    want: &Want,
) -> Result<Outcome> {
    let typed = values
        .iter()
        .zip(types.iter().cloned())
        .map(|(value, ty)| (value as &(dyn ToSql + Sync), ty))
        .collect::<Vec<_>>();
    match want {
        Want::Rows => Ok(Outcome::Rows(client.query_typed(sql, &typed).await?)),
        Want::Count => {
            let stream = client.query_typed_raw(sql, typed).await?;
            futures_util::pin_mut!(stream);
            while let Some(row) = stream.next().await {
                row?;
            }
            Ok(Outcome::Count(stream.rows_affected().unwrap_or(0)))
        }
    }
}

async fn run_prepared(
    client: &Client,
    statement: &Statement,
    values: &[PgParam<'_>],
    want: &Want,
) -> Result<Outcome> {
    let refs = param_refs(values);
    match want {
        Want::Rows => client
            .query(statement, &refs)
            .await
            .map(Outcome::Rows)
            .map_err(Error::prepared),
        Want::Count => client
            .execute(statement, &refs)
            .await
            .map(Outcome::Count)
            .map_err(Error::prepared),
    }
}

/// The generated statements of one connection, for one call ([`Db::typed`]).
pub(crate) struct TypedDb<'a> {
    handle: &'a ClientHandle,
    transaction: Option<&'a AtomicBool>,
    /// The statement groups usable on this connection.
    pub(crate) groups: std::sync::Arc<Groups>,
}

impl TypedDb<'_> {
    /// The client to bind generated statements to.
    pub(crate) fn client(&self) -> &Client {
        &self.handle.client
    }

    /// Whether the call runs inside a transaction.
    pub(crate) fn in_transaction(&self) -> bool {
        self.transaction.is_some()
    }

    /// Awaits a generated statement under the same policy as every other and maps its result;
    /// `None` hands the call to the generic path (a stale plan outside a transaction: the
    /// generic path prepares afresh and the typed statements are prepared again on a later
    /// call).
    ///
    /// The driver's statement future (over a kilobyte) is boxed here, before the returned
    /// future exists: inline, it would size the router's and every enclosing call future,
    /// which each call moves several times (about 2,000 instructions of `memcpy` per typed
    /// call, measured with `benches/instructions.sh`); the box costs one allocation.
    pub(crate) fn run<'s, T: 's, R: 's, F>(
        &'s self,
        sql: &'static str,
        statement: F,
        map: impl FnOnce(T) -> R + 's,
    ) -> impl std::future::Future<Output = Option<Result<R>>> + 's
    where
        F: std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>> + 's,
    {
        let statement = Box::pin(statement);
        self.finish(sql, statement, map)
    }

    async fn finish<T, R, F>(
        &self,
        sql: &'static str,
        statement: F,
        map: impl FnOnce(T) -> R,
    ) -> Option<Result<R>>
    where
        F: std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    {
        let outcome =
            crate::trace::in_span(crate::trace::statement_span(sql, "typed"), statement).await;
        match outcome {
            Ok(value) => {
                tracing::Span::current().record("path", "typed");
                Some(Ok(map(value)))
            }
            Err(error) => {
                let error = Error::prepared(error);
                if error.stale_statement() {
                    self.handle.invalidate_typed();
                    // Outside a transaction, let the generic path prepare afresh.
                    self.transaction?;
                }
                Db::Cached {
                    handle: self.handle,
                    transaction: self.transaction,
                }
                .after_failure(&error);
                Some(Err(error))
            }
        }
    }
}
