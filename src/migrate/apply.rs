//! Applying: a plan's statements, or plugin SQL, in one `BEGIN`/`COMMIT` under the advisory
//! lock every RustAuth migration takes; any failure rolls the whole of it back.

use std::collections::HashSet;

use rustauth_core::db::{ensure_executable_migration_plan, DbSchema, SchemaMigrationPlan};
use rustauth_core::plugin::{PluginMigration, PluginMigrationBody};
use tokio_postgres::types::Type;
use tokio_postgres::Client;

use super::plan;
use crate::error::{Error, MigrationStep};

/// Key of the transaction-scoped advisory lock every RustAuth migration takes
/// (the ASCII bytes of `rustauth`).
const MIGRATION_LOCK_KEY: i64 = 0x7275_7374_6175_7468;

/// Statement that creates the table recording applied plugin migrations.
const CREATE_PLUGIN_MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS \"rustauth_plugin_migrations\" \
     (\"name\" TEXT PRIMARY KEY, \"applied_at\" TIMESTAMPTZ NOT NULL DEFAULT now())";

/// Query returning which of the given plugin migration names are already recorded.
const SELECT_APPLIED_PLUGIN_MIGRATIONS: &str =
    "SELECT \"name\" FROM \"rustauth_plugin_migrations\" WHERE \"name\" = ANY($1)";

/// Statement recording plugin migration names as applied.
const INSERT_APPLIED_PLUGIN_MIGRATIONS: &str =
    "INSERT INTO \"rustauth_plugin_migrations\" (\"name\") \
     SELECT pg_catalog.unnest($1::text[])";

/// Applies every statement of `plan` in one BEGIN/COMMIT; on any failure (including COMMIT)
/// ROLLBACK and return the error; nothing of the plan survives. Does NOT check warnings.
///
/// An empty plan does nothing and sends nothing.
pub(crate) async fn apply(client: &Client, plan: &SchemaMigrationPlan) -> Result<(), Error> {
    if plan.is_empty() {
        return Ok(());
    }
    in_transaction(client, run_statements(client, plan)).await
}

/// plan(), refuse with core's ensure_executable_migration_plan if it has warnings (before
/// executing anything), then apply(). Returns the plan that was applied.
///
/// The plan is made inside the migration transaction, after the migration lock, so two
/// processes migrating at once do not apply the same plan twice. A refused plan changes nothing.
pub(crate) async fn migrate(
    client: &Client,
    schema: &DbSchema,
) -> Result<SchemaMigrationPlan, Error> {
    in_transaction(client, async {
        let plan = plan(client, schema).await?;
        ensure_executable_migration_plan(&plan)?;
        run_statements(client, &plan).await?;
        Ok(plan)
    })
    .await
}

/// Runs plugin SQL migrations (PluginMigrationBody::Sql and every Plan step with Some(sql)) in
/// one transaction, in order; rollback whole on failure. A migration with no body is a no-op.
/// (Fixes quirk Q4.)
///
/// Each migration that runs SQL is recorded by name in `rustauth_plugin_migrations` (created
/// if missing, in the current schema) in the same transaction, and a name already recorded is
/// skipped, so running the same list twice is harmless. Within one call, a repeated name runs
/// once. Migrations without SQL are neither run nor recorded; when no migration has SQL the
/// database is not touched at all. The SQL text of a migration may hold several statements but
/// must not end the transaction itself.
pub(crate) async fn apply_plugin_migrations(
    client: &Client,
    migrations: &[PluginMigration],
) -> Result<(), Error> {
    let runnable = migrations
        .iter()
        .filter_map(|migration| {
            let sql = migration_sql(migration);
            (!sql.is_empty()).then_some((migration.name.as_str(), sql))
        })
        .collect::<Vec<_>>();
    if runnable.is_empty() {
        return Ok(());
    }
    in_transaction(client, async {
        client
            .batch_execute(CREATE_PLUGIN_MIGRATIONS_TABLE)
            .await
            .map_err(Error::from)?;
        let names = runnable.iter().map(|(name, _)| *name).collect::<Vec<_>>();
        let mut applied = client
            .query_typed(
                SELECT_APPLIED_PLUGIN_MIGRATIONS,
                &[(&names, Type::TEXT_ARRAY)],
            )
            .await
            .map_err(Error::from)?
            .iter()
            .map(|row| row.try_get::<_, String>(0).map_err(Error::from))
            .collect::<Result<HashSet<_>, _>>()?;
        let mut recorded = Vec::new();
        for (name, statements) in runnable {
            if applied.contains(name) {
                continue;
            }
            for sql in statements {
                client
                    .batch_execute(sql)
                    .await
                    .map_err(|error| Error::Migration {
                        source: Box::new(error.into()),
                        step: MigrationStep::Plugin {
                            name: name.to_owned(),
                        },
                    })?;
            }
            applied.insert(name.to_owned());
            recorded.push(name);
        }
        if !recorded.is_empty() {
            client
                .query_typed(
                    INSERT_APPLIED_PLUGIN_MIGRATIONS,
                    &[(&recorded, Type::TEXT_ARRAY)],
                )
                .await
                .map_err(Error::from)?;
        }
        Ok(())
    })
    .await
}

/// The SQL texts a plugin migration runs, in order (empty for a migration without SQL).
fn migration_sql(migration: &PluginMigration) -> Vec<&str> {
    match &migration.body {
        None => Vec::new(),
        Some(PluginMigrationBody::Sql(sql)) => vec![sql.as_str()],
        Some(PluginMigrationBody::Plan(steps)) => steps
            .iter()
            .filter_map(|step| step.sql.as_deref())
            .collect(),
    }
}

/// Runs `work` between BEGIN (plus the migration lock) and COMMIT; rolls back when `work` or
/// the COMMIT fails and returns that first error.
async fn in_transaction<T>(
    client: &Client,
    work: impl std::future::Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let result = async {
        client
            .batch_execute(&format!(
                "BEGIN; SELECT pg_catalog.pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
            ))
            .await
            .map_err(Error::from)?;
        let value = work.await?;
        client.batch_execute("COMMIT").await.map_err(Error::from)?;
        Ok(value)
    }
    .await;
    if result.is_err() {
        // After a failed COMMIT the server has already ended the transaction and this ROLLBACK
        // only warns; either way the first error is the one worth reporting.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    result
}

/// Executes the plan's statements in order, naming the failing statement in the error.
async fn run_statements(client: &Client, plan: &SchemaMigrationPlan) -> Result<(), Error> {
    let total = plan.statements.len();
    for (index, statement) in plan.statements.iter().enumerate() {
        client
            .batch_execute(&statement.sql)
            .await
            .map_err(|error| Error::Migration {
                source: Box::new(error.into()),
                step: MigrationStep::Statement {
                    index: index + 1,
                    total,
                    sql: statement.sql.clone(),
                },
            })?;
    }
    Ok(())
}
