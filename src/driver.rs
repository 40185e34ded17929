//! Building blocks for other adapters on tokio-postgres clients (used by
//! `rustauth-deadpool-postgres`). Not a stable API: hidden from the docs.
//!
//! Everything here runs on a caller's `Client` with no gate and no BEGIN/COMMIT of its own
//! (except the migration helpers, which wrap their statements in one transaction).

use rustauth_core::db::sql::{
    consume_sql_rate_limit_record, rate_limit_consume_statements, rate_limit_count_from_i64,
    rate_limit_count_to_i64, SchemaMigrationPlan, SqlAdapterRunner, SqlDialect, SqlExecutor,
    SqlParam, SqlRateLimitPlan, SqlRowReader, SqlStatement,
};
use rustauth_core::db::{
    AdapterFuture, Count, Create, DbField, DbRecord, DbSchema, DbValue, Delete, DeleteMany,
    FindMany, FindOne, Update, UpdateMany,
};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{
    validate_rate_limit_rule, RateLimitConsumeInput, RateLimitDecision, RateLimitRecord,
};
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row};

use crate::error::adapter;
use crate::runner::{Db, Sql};
use crate::shapes::Shapes;
use crate::{generic, migrate, values};

/// The adapter's CRUD semantics on a caller's client and schema (no gate, no transaction).
///
/// Each call's plan (its SQL text, parameter layout and row decoding) is kept per schema and
/// query shape, as an adapter keeps its own, in a registry that recognises a schema by its
/// content (`shapes.rs`): the second call of a shape skips rustauth-core's planner. The
/// statements themselves stay unnamed, one round trip each, since the client may be shared
/// with other code or sit behind a transaction-mode pooler.
#[derive(Debug, Clone, Copy)]
pub struct PostgresSqlState<'a> {
    schema: &'a DbSchema,
    client: &'a Client,
}

impl<'a> PostgresSqlState<'a> {
    /// CRUD on `client` resolving models against `schema`.
    pub fn new(schema: &'a DbSchema, client: &'a Client) -> Self {
        Self { schema, client }
    }

    fn db(&self) -> Db<'a> {
        Db::Plain(self.client)
    }

    /// `DbAdapter::create`.
    pub async fn create(self, query: Create) -> Result<DbRecord, RustAuthError> {
        let shapes = Shapes::of_schema(self.schema);
        Ok(generic::create(self.db(), self.schema, shapes.as_deref(), query).await?)
    }

    /// `DbAdapter::find_one`.
    pub async fn find_one(self, query: FindOne) -> Result<Option<DbRecord>, RustAuthError> {
        let shapes = Shapes::of_schema(self.schema);
        Ok(generic::find_one(self.db(), self.schema, shapes.as_deref(), query).await?)
    }

    /// `DbAdapter::find_many`.
    pub async fn find_many(self, query: FindMany) -> Result<Vec<DbRecord>, RustAuthError> {
        let shapes = Shapes::of_schema(self.schema);
        Ok(generic::find_many(self.db(), self.schema, shapes.as_deref(), query).await?)
    }

    /// `DbAdapter::count`.
    pub async fn count(self, query: Count) -> Result<u64, RustAuthError> {
        let shapes = Shapes::of_schema(self.schema);
        Ok(generic::count(self.db(), self.schema, shapes.as_deref(), query).await?)
    }

    /// `DbAdapter::update`.
    pub async fn update(self, query: Update) -> Result<Option<DbRecord>, RustAuthError> {
        let shapes = Shapes::of_schema(self.schema);
        Ok(generic::update(self.db(), self.schema, shapes.as_deref(), query).await?)
    }

    /// `DbAdapter::update_many`.
    pub async fn update_many(self, query: UpdateMany) -> Result<u64, RustAuthError> {
        let shapes = Shapes::of_schema(self.schema);
        Ok(generic::update_many(self.db(), self.schema, shapes.as_deref(), query).await?)
    }

    /// `DbAdapter::delete`.
    pub async fn delete(self, query: Delete) -> Result<(), RustAuthError> {
        let shapes = Shapes::of_schema(self.schema);
        Ok(generic::delete(self.db(), self.schema, shapes.as_deref(), query).await?)
    }

    /// `DbAdapter::delete_many`.
    pub async fn delete_many(self, query: DeleteMany) -> Result<u64, RustAuthError> {
        let shapes = Shapes::of_schema(self.schema);
        Ok(generic::delete_many(self.db(), self.schema, shapes.as_deref(), query).await?)
    }
}

impl SqlExecutor for PostgresSqlState<'_> {
    type Row = Row;

    fn execute<'a>(&'a mut self, statement: SqlStatement) -> AdapterFuture<'a, u64> {
        let db = self.db();
        Box::pin(async move {
            Ok(db
                .execute(Sql::plain(&statement.sql, &statement.params))
                .await?)
        })
    }

    fn fetch_all<'a>(&'a mut self, statement: SqlStatement) -> AdapterFuture<'a, Vec<Row>> {
        let db = self.db();
        Box::pin(async move {
            Ok(db
                .query(Sql::plain(&statement.sql, &statement.params))
                .await?)
        })
    }

    fn fetch_optional<'a>(&'a mut self, statement: SqlStatement) -> AdapterFuture<'a, Option<Row>> {
        let db = self.db();
        Box::pin(async move {
            Ok(db
                .query_opt(Sql::plain(&statement.sql, &statement.params))
                .await?)
        })
    }

    fn fetch_scalar_i64<'a>(&'a mut self, statement: SqlStatement) -> AdapterFuture<'a, i64> {
        let db = self.db();
        Box::pin(async move {
            let row = db
                .query_opt(Sql::plain(&statement.sql, &statement.params))
                .await?
                .ok_or_else(|| adapter("scalar query returned no row"))?;
            row.try_get::<_, i64>(0).map_err(postgres_error)
        })
    }
}

/// Reads rows of core's planned statements.
#[derive(Debug, Clone, Copy, Default)]
pub struct PostgresRowReader;

impl SqlRowReader<Row> for PostgresRowReader {
    fn value_at(&self, row: &Row, field: &DbField, alias: &str) -> Result<DbValue, RustAuthError> {
        row_value_at(row, field, alias)
    }
}

/// Core's shared SQL runner on a [`PostgresSqlState`].
pub fn postgres_runner<'a>(
    state: PostgresSqlState<'a>,
) -> SqlAdapterRunner<'a, PostgresSqlState<'a>, PostgresRowReader> {
    SqlAdapterRunner::new(SqlDialect::Postgres, state.schema, state, PostgresRowReader)
}

/// Core's three-statement rate-limit plan for the given physical names.
pub fn postgres_rate_limit_plan(
    table: &str,
    key: &str,
    count: &str,
    last_request: &str,
) -> Result<SqlRateLimitPlan, RustAuthError> {
    rate_limit_consume_statements(SqlDialect::Postgres, table, key, count, last_request)
}

/// Consumes one request with `plan`, inside a transaction the caller already opened.
pub async fn consume_postgres_rate_limit_in_tx(
    client: &Client,
    plan: &SqlRateLimitPlan,
    input: RateLimitConsumeInput,
) -> Result<RateLimitDecision, RustAuthError> {
    validate_rate_limit_rule(&input.rule)?;
    client
        .execute(
            plan.insert_ignore.sql.as_str(),
            &[&input.key, &input.now_ms],
        )
        .await
        .map_err(postgres_error)?;
    let row = client
        .query_opt(plan.select.sql.as_str(), &[&input.key])
        .await
        .map_err(postgres_error)?
        .ok_or_else(|| adapter(format!("rate limit row for key `{}` is missing", input.key)))?;
    let mut record = postgres_rate_limit_record(row)?;
    record.key = input.key.clone();
    let (decision, record, _) = consume_sql_rate_limit_record(input, Some(record))?;
    if decision.permitted {
        let count = rate_limit_count_to_i64(record.count)?;
        client
            .execute(
                plan.update.sql.as_str(),
                &[&count, &record.last_request, &record.key],
            )
            .await
            .map_err(postgres_error)?;
    }
    Ok(decision)
}

/// Decodes a row with `count` and `last_request` columns (the key is left empty).
pub fn postgres_rate_limit_record(row: Row) -> Result<RateLimitRecord, RustAuthError> {
    let count: i64 = row.try_get("count").map_err(postgres_error)?;
    let last_request: i64 = row.try_get("last_request").map_err(postgres_error)?;
    Ok(RateLimitRecord {
        key: String::new(),
        count: rate_limit_count_from_i64(count)?,
        last_request,
    })
}

/// Same as [`plan_migrations`].
pub async fn plan_schema_migrations(
    client: &Client,
    schema: &DbSchema,
) -> Result<SchemaMigrationPlan, RustAuthError> {
    plan_migrations(client, schema).await
}

/// Maps a tokio-postgres error to `RustAuthError::Adapter` (with the SQLSTATE).
pub fn postgres_error(error: tokio_postgres::Error) -> RustAuthError {
    crate::error::postgres_error(error)
}

/// Maps a JSON error to `RustAuthError::Adapter`.
pub fn json_error(error: serde_json::Error) -> RustAuthError {
    crate::error::json_error(error)
}

/// Converts parameters to boxed tokio-postgres values, typed by their schema field (NULLs
/// included).
pub fn postgres_params(
    params: &[SqlParam],
) -> Result<Vec<Box<dyn ToSql + Sync + Send>>, RustAuthError> {
    let (values, _) = values::bind_declared(params).map_err(RustAuthError::from)?;
    Ok(values
        .into_iter()
        .map(|value| Box::new(value.into_owned()) as Box<dyn ToSql + Sync + Send>)
        .collect())
}

/// Borrows boxed parameters the way tokio-postgres' query methods take them.
pub fn param_refs(values: &[Box<dyn ToSql + Sync + Send>]) -> Vec<&(dyn ToSql + Sync)> {
    values
        .iter()
        .map(|value| value.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

/// Reads the column named `column` of `row` as the value of `field`.
pub fn row_value_at(row: &Row, field: &DbField, column: &str) -> Result<DbValue, RustAuthError> {
    Ok(values::decode_named(row, column, field)?)
}

/// Introspects the database and plans the additive migration to `schema`.
pub async fn plan_migrations(
    client: &Client,
    schema: &DbSchema,
) -> Result<SchemaMigrationPlan, RustAuthError> {
    Ok(migrate::plan(client, schema).await?)
}

/// Plans, refuses plans with warnings, and applies the rest in one transaction.
pub async fn create_schema(client: &Client, schema: &DbSchema) -> Result<(), RustAuthError> {
    migrate::migrate(client, schema).await?;
    Ok(())
}

/// Same as [`create_schema`].
pub async fn execute_migration_plan(
    client: &Client,
    schema: &DbSchema,
) -> Result<(), RustAuthError> {
    create_schema(client, schema).await
}

/// Applies `plan` in one transaction without checking its warnings.
#[doc(hidden)]
pub async fn apply_migration_plan(
    client: &Client,
    plan: &SchemaMigrationPlan,
) -> Result<(), RustAuthError> {
    Ok(migrate::apply(client, plan).await?)
}

/// Runs statement text with no parameters; cannot fetch rows.
#[derive(Debug, Clone, Copy)]
pub struct PostgresSchemaExecutor<'a> {
    /// The client statements run on.
    pub client: &'a Client,
}

impl SqlExecutor for PostgresSchemaExecutor<'_> {
    type Row = Row;

    fn execute<'a>(&'a mut self, statement: SqlStatement) -> AdapterFuture<'a, u64> {
        let client = self.client;
        Box::pin(async move {
            client
                .execute(statement.sql.as_str(), &[])
                .await
                .map_err(postgres_error)
        })
    }

    fn fetch_all<'a>(&'a mut self, _statement: SqlStatement) -> AdapterFuture<'a, Vec<Row>> {
        Box::pin(async { Err(schema_executor_cannot_fetch()) })
    }

    fn fetch_optional<'a>(
        &'a mut self,
        _statement: SqlStatement,
    ) -> AdapterFuture<'a, Option<Row>> {
        Box::pin(async { Err(schema_executor_cannot_fetch()) })
    }

    fn fetch_scalar_i64<'a>(&'a mut self, _statement: SqlStatement) -> AdapterFuture<'a, i64> {
        Box::pin(async { Err(schema_executor_cannot_fetch()) })
    }
}

fn schema_executor_cannot_fetch() -> RustAuthError {
    adapter("the postgres schema executor only executes statements; it cannot fetch rows")
}
