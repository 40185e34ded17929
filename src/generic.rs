//! The generic path: statements planned by rustauth-core's SQL planner (`db::sql`), run
//! through the per-connection statement cache.
//!
//! Three places differ from core's plans, each on purpose:
//! - a single-row `update`/`delete` whose where-clause pins a unique column (`id`, `token`,
//!   …) with a case-sensitive equality addresses that row directly. Core's
//!   `ctid IN (SELECT ctid … LIMIT 1)` form loses one of two concurrent updates of the same
//!   row: the second finds the old `ctid` gone and reports no row;
//! - joined reads get an outer `ORDER BY` (the requested sort, then the base id, then each
//!   joined id), so records and joined arrays come back in a deterministic order (Q8);
//! - a create on a table whose id the database generates reads the stored row back, as core
//!   does; other creates echo the caller's data (0.3.2's behaviour, Q10).

use rustauth_core::db::sql::SqlDialect;
use rustauth_core::db::sql::{
    base_alias, count_statement, create_returning_selection, create_statement,
    delete_many_statement, delete_one_statement, find_many_statement, internal_base_selection,
    join_alias, join_field_alias, joined_rows, resolve_field, resolve_native_joins, resolve_table,
    resolve_table_with_logical, select_record, table_has_database_generated_id,
    update_many_statement, update_one_plan, SqlSelectedField, SqlUpdateOnePlan,
};
use rustauth_core::db::{
    Connector, Count, Create, DbRecord, DbSchema, DbTable, DbValue, Delete, DeleteMany, FindMany,
    FindOne, SortDirection, Update, UpdateMany, Where, WhereMode, WhereOperator,
};
use rustauth_core::db::{DbField, DbFieldType};
use rustauth_core::error::RustAuthError;
use tokio_postgres::Row;

use crate::error::{adapter, Result};
use crate::runner::{Db, Sql};
use crate::values::{decode_named, decode_record};

const PG: SqlDialect = SqlDialect::Postgres;
/// The most rows a join without its own `limit` returns per record: core's default (rustauth-core
/// 0.3.2 passes the literal `100` to `resolve_native_joins` and `resolve_fallback_joins`).
const JOIN_LIMIT: usize = 100;

/// Inserts one row (CONTRACT b.6 `create`).
pub(crate) async fn create(db: Db<'_>, schema: &DbSchema, query: Create) -> Result<DbRecord> {
    let table = resolve_table(schema, &query.model)?;
    let statement = create_statement(PG, schema, &query)?;
    let targets = data_targets(table, &query.data);
    let mut sql = Sql {
        text: &statement.sql,
        params: &statement.params,
        table: &table.name,
        targets: &targets,
        returning: &[],
    };
    if table_has_database_generated_id(table) {
        let selection = create_returning_selection(schema, &query)?;
        let returning = selection
            .iter()
            .map(|selected| selected.field.name.as_str())
            .collect::<Vec<_>>();
        sql.returning = &returning;
        let row = db.query_opt(sql).await?;
        return match row {
            Some(row) => read_selection(&row, &selection),
            None => {
                Err(adapter("insert did not return the row with its database-generated id").into())
            }
        };
    }
    db.execute(sql).await?;
    Ok(select_record(query.data, &query.select))
}

/// Reads at most one row (CONTRACT b.6 `find_one`).
pub(crate) async fn find_one(
    db: Db<'_>,
    schema: &DbSchema,
    query: FindOne,
) -> Result<Option<DbRecord>> {
    let mut many = FindMany::new(query.model);
    many.where_clauses = query.where_clauses;
    many.limit = Some(1);
    many.select = query.select;
    many.joins = query.joins;
    Ok(find_many(db, schema, many).await?.into_iter().next())
}

/// Reads rows (CONTRACT b.6 `find_many`, b.7 joins).
pub(crate) async fn find_many(
    db: Db<'_>,
    schema: &DbSchema,
    query: FindMany,
) -> Result<Vec<DbRecord>> {
    if query.joins.values().any(|join| join.enabled) {
        return find_many_joined(db, schema, &query).await;
    }
    let read = find_many_statement(PG, schema, &query)?;
    let table = resolve_table(schema, &query.model)?;
    let targets = where_targets(table, &query.where_clauses);
    let rows = db
        .query(Sql {
            text: &read.statement.sql,
            params: &read.statement.params,
            table: &table.name,
            targets: &targets,
            returning: &[],
        })
        .await?;
    rows.iter()
        .map(|row| read_selection(row, &read.selection))
        .collect()
}

/// Counts rows (CONTRACT b.6 `count`).
pub(crate) async fn count(db: Db<'_>, schema: &DbSchema, query: Count) -> Result<u64> {
    let statement = count_statement(PG, schema, &query)?;
    let table = resolve_table(schema, &query.model)?;
    let targets = where_targets(table, &query.where_clauses);
    let row = db
        .query_opt(Sql {
            text: &statement.sql,
            params: &statement.params,
            table: &table.name,
            targets: &targets,
            returning: &[],
        })
        .await?
        .ok_or_else(|| adapter("COUNT(*) returned no row"))?;
    let count: i64 = row.try_get(0)?;
    Ok(
        u64::try_from(count).map_err(|_| RustAuthError::NumericOutOfRange {
            context: "SQL count result",
        })?,
    )
}

/// Updates at most one row and returns it as stored (CONTRACT b.6 `update`).
pub(crate) async fn update(
    db: Db<'_>,
    schema: &DbSchema,
    query: Update,
) -> Result<Option<DbRecord>> {
    if query.data.is_empty() {
        return Ok(None);
    }
    let table = resolve_table(schema, &query.model)?;
    let mut targets = data_targets(table, &query.data);
    targets.extend(where_targets(table, &query.where_clauses));
    let fields = all_fields(table);
    let returning = fields
        .iter()
        .map(|(_, field)| field.name.as_str())
        .collect::<Vec<_>>();
    if pins_one_row(table, &query.where_clauses) {
        let mut many = UpdateMany::new(query.model.clone());
        many.where_clauses = query.where_clauses;
        many.data = query.data;
        let statement = update_many_statement(PG, schema, &many)?;
        let sql = format!("{} RETURNING {}", statement.sql, column_list(&fields)?);
        let row = db
            .query_opt(Sql {
                text: &sql,
                params: &statement.params,
                table: &table.name,
                targets: &targets,
                returning: &returning,
            })
            .await?;
        return row
            .map(|row| decode_record(&row, fields.iter().copied()))
            .transpose();
    }
    if let Some(id) = id_column(table)? {
        // `UPDATE … WHERE id = (SELECT id … LIMIT 1) AND (<where>)`: a concurrent update of
        // the chosen row makes Postgres wait, then re-check `id` and the where-clause on the
        // newest row version, so the update is applied instead of lost.
        let assigned = query.data.len();
        let mut many = UpdateMany::new(query.model.clone());
        many.where_clauses = query.where_clauses;
        many.data = query.data;
        let statement = update_many_statement(PG, schema, &many)?;
        let filter = PG.where_clause_starting_at(table, &many.where_clauses, assigned + 1)?;
        let head = statement
            .sql
            .strip_suffix(filter.sql.as_str())
            .ok_or_else(|| adapter("update statement does not end with its where-clause"))?;
        let sql = format!(
            "{head}{} RETURNING {}",
            one_row_by_id(table, &id, &filter.sql)?,
            column_list(&fields)?
        );
        let row = db
            .query_opt(Sql {
                text: &sql,
                params: &statement.params,
                table: &table.name,
                targets: &targets,
                returning: &returning,
            })
            .await?;
        return row
            .map(|row| decode_record(&row, fields.iter().copied()))
            .transpose();
    }
    match update_one_plan(PG, schema, &query)? {
        SqlUpdateOnePlan::Returning(read) => {
            let row = db
                .query_opt(Sql {
                    text: &read.statement.sql,
                    params: &read.statement.params,
                    table: &table.name,
                    targets: &targets,
                    returning: &returning,
                })
                .await?;
            row.map(|row| read_selection(&row, &read.selection))
                .transpose()
        }
        SqlUpdateOnePlan::PreselectThenUpdate { .. } => Err(adapter(
            "core planned a preselect update, which the Postgres dialect never uses",
        )
        .into()),
    }
}

/// Updates every matching row (CONTRACT b.6 `update_many`).
pub(crate) async fn update_many(db: Db<'_>, schema: &DbSchema, query: UpdateMany) -> Result<u64> {
    if query.data.is_empty() {
        return Ok(0);
    }
    let statement = update_many_statement(PG, schema, &query)?;
    let table = resolve_table(schema, &query.model)?;
    let mut targets = data_targets(table, &query.data);
    targets.extend(where_targets(table, &query.where_clauses));
    db.execute(Sql {
        text: &statement.sql,
        params: &statement.params,
        table: &table.name,
        targets: &targets,
        returning: &[],
    })
    .await
}

/// Deletes at most one row (CONTRACT b.6 `delete`).
pub(crate) async fn delete(db: Db<'_>, schema: &DbSchema, query: Delete) -> Result<()> {
    let table = resolve_table(schema, &query.model)?;
    let targets = where_targets(table, &query.where_clauses);
    let sql = |text, params| Sql {
        text,
        params,
        table: &table.name,
        targets: &targets,
        returning: &[],
    };
    if pins_one_row(table, &query.where_clauses) {
        let mut many = DeleteMany::new(query.model);
        many.where_clauses = query.where_clauses;
        let statement = delete_many_statement(PG, schema, &many)?;
        db.execute(sql(&statement.sql, &statement.params)).await?;
        return Ok(());
    }
    if let Some(id) = id_column(table)? {
        let filter = PG.where_clause(table, &query.where_clauses)?;
        let text = format!(
            "DELETE FROM {}{}",
            PG.quote_identifier(&table.name)?,
            one_row_by_id(table, &id, &filter.sql)?
        );
        db.execute(sql(&text, &filter.params)).await?;
        return Ok(());
    }
    let plan = delete_one_statement(PG, schema, &query)?;
    db.execute(sql(&plan.statement.sql, &plan.statement.params))
        .await?;
    Ok(())
}

/// The quoted `id` column of a table, if it has one.
fn id_column(table: &DbTable) -> Result<Option<String>> {
    match resolve_field(table, "id") {
        Ok((_, field)) => Ok(PG.quote_identifier(&field.name).map(Some)?),
        Err(_) => Ok(None),
    }
}

/// ` WHERE id = (SELECT id FROM t <filter> LIMIT 1) [AND (<filter>)]`: one matching row,
/// addressed by its key, with the filter re-checked against the row version it finally
/// touches. `filter` is a where fragment (`""` or `" WHERE …"`); its placeholders appear twice
/// and bind the same parameters.
fn one_row_by_id(table: &DbTable, id: &str, filter: &str) -> Result<String> {
    let recheck = filter
        .strip_prefix(" WHERE ")
        .map(|condition| format!(" AND ({condition})"))
        .unwrap_or_default();
    Ok(format!(
        " WHERE {id} = (SELECT {id} FROM {}{filter} LIMIT 1){recheck}",
        PG.quote_identifier(&table.name)?
    ))
}

/// Every field of a table, in schema order, as (logical name, field).
fn all_fields(table: &DbTable) -> Vec<(&str, &DbField)> {
    table
        .fields
        .iter()
        .map(|(logical, field)| (logical.as_str(), field))
        .collect()
}

/// Deletes every matching row (CONTRACT b.6 `delete_many`).
pub(crate) async fn delete_many(db: Db<'_>, schema: &DbSchema, query: DeleteMany) -> Result<u64> {
    let statement = delete_many_statement(PG, schema, &query)?;
    let table = resolve_table(schema, &query.model)?;
    let targets = where_targets(table, &query.where_clauses);
    db.execute(Sql {
        text: &statement.sql,
        params: &statement.params,
        table: &table.name,
        targets: &targets,
        returning: &[],
    })
    .await
}

/// True when the where-clause can match at most one row: it requires (ANDed with everything
/// else) a case-sensitive equality with a non-null value on the primary key or a unique column.
pub(crate) fn pins_one_row(table: &DbTable, clauses: &[Where]) -> bool {
    let pins = |clause: &Where| {
        clause.operator == WhereOperator::Eq
            && clause.mode == WhereMode::Sensitive
            && clause.value != DbValue::Null
            && resolve_field(table, &clause.field)
                .map(|(logical, field)| field.unique || logical == "id" || field.name == "id")
                .unwrap_or(false)
    };
    if clauses.len() == 1 {
        return pins(&clauses[0]);
    }
    clauses
        .iter()
        .any(|clause| clause.connector == Connector::And && pins(clause))
}

fn column_list(fields: &[(&str, &DbField)]) -> Result<String> {
    Ok(fields
        .iter()
        .map(|(_, field)| PG.quote_identifier(&field.name))
        .collect::<Result<Vec<_>, _>>()?
        .join(", "))
}

fn read_selection(row: &Row, selection: &[SqlSelectedField]) -> Result<DbRecord> {
    decode_record(
        row,
        selection
            .iter()
            .map(|selected| (selected.logical_name.as_str(), &selected.field)),
    )
}

/// A native join: core's join resolution and row grouping, with our own statement so that the
/// order of records and of joined arrays is deterministic.
async fn find_many_joined(
    db: Db<'_>,
    schema: &DbSchema,
    query: &FindMany,
) -> Result<Vec<DbRecord>> {
    let (base_logical, table) = resolve_table_with_logical(schema, &query.model)?;
    let joins = resolve_native_joins(schema, base_logical, table, &query.joins, JOIN_LIMIT)?;
    let base_selection = internal_base_selection(table, &query.select, &joins)?;
    let where_sql = PG.where_clause(table, &query.where_clauses)?;
    let (_, id_field) = resolve_field(table, "id")?;
    let id = PG.quote_identifier(&id_field.name)?;

    let mut base_columns = base_selection
        .iter()
        .map(|(_, field)| PG.quote_identifier(&field.name))
        .collect::<Result<Vec<_>, _>>()?;
    let mut inner_order = Vec::new();
    let mut outer_order = Vec::new();
    if let Some(sort) = &query.sort_by {
        let (_, field) = resolve_field(table, &sort.field)?;
        let direction = match sort.direction {
            SortDirection::Asc => "ASC",
            SortDirection::Desc => "DESC",
        };
        let column = PG.quote_identifier(&field.name)?;
        base_columns.push(format!("{column} AS \"__base_sort\""));
        inner_order.push(format!("{column} {direction}"));
        outer_order.push(format!("\"base\".\"__base_sort\" {direction}"));
    }
    inner_order.push(format!("{id} ASC"));
    outer_order.push(format!("\"base\".{id} ASC"));

    let mut base_sql = format!(
        "SELECT {} FROM {}{} ORDER BY {}",
        base_columns.join(", "),
        PG.quote_identifier(&table.name)?,
        where_sql.sql,
        inner_order.join(", ")
    );
    if let Some(limit) = query.limit {
        base_sql.push_str(&format!(" LIMIT {limit}"));
    }
    if let Some(offset) = query.offset {
        base_sql.push_str(&format!(" OFFSET {offset}"));
    }

    let mut selects = vec![format!("\"base\".{id} AS \"__base_id\"")];
    for (index, (_, field)) in base_selection.iter().enumerate() {
        selects.push(format!(
            "\"base\".{} AS {}",
            PG.quote_identifier(&field.name)?,
            PG.quote_identifier(&base_alias(index))?
        ));
    }
    let mut sql_joins = String::new();
    for (join_index, join) in joins.iter().enumerate() {
        let alias = PG.quote_identifier(&join_alias(join_index))?;
        for (field_index, (_, field)) in join.selection.iter().enumerate() {
            selects.push(format!(
                "{alias}.{} AS {}",
                PG.quote_identifier(&field.name)?,
                PG.quote_identifier(&join_field_alias(join_index, field_index))?
            ));
        }
        sql_joins.push_str(&format!(
            " LEFT JOIN {} AS {alias} ON {alias}.{} = \"base\".{}",
            PG.quote_identifier(&join.table.name)?,
            PG.quote_identifier(&join.to)?,
            PG.quote_identifier(&join.from)?
        ));
        if let Some((_, joined_id)) = join
            .selection
            .iter()
            .find(|(logical, field)| *logical == "id" || field.name == "id")
        {
            outer_order.push(format!(
                "{alias}.{} ASC",
                PG.quote_identifier(&joined_id.name)?
            ));
        }
    }
    let sql = format!(
        "SELECT {} FROM ({base_sql}) AS \"base\"{sql_joins} ORDER BY {}",
        selects.join(", "),
        outer_order.join(", ")
    );
    let targets = where_targets(table, &query.where_clauses);
    let rows = db
        .query(Sql {
            text: &sql,
            params: &where_sql.params,
            table: &table.name,
            targets: &targets,
            returning: &[],
        })
        .await?;
    Ok(joined_rows(
        &rows,
        &base_selection,
        &query.select,
        &joins,
        |row, field, alias| decode_named(row, alias, field).map_err(RustAuthError::from),
    )?)
}

/// The column each assigned value meets, in data order (the order core binds them).
fn data_targets<'t>(table: &'t DbTable, data: &DbRecord) -> Vec<Option<&'t str>> {
    data.keys()
        .map(|field| {
            resolve_field(table, field)
                .ok()
                .map(|(_, field)| field.name.as_str())
        })
        .collect()
}

/// The column each parameter of a where-clause meets, in the order core's planner binds
/// them (AND clauses, then OR clauses): `None` where the parameter meets an expression
/// (`LOWER($n)`, a `LIKE` pattern) rather than the column itself.
fn where_targets<'t>(table: &'t DbTable, clauses: &[Where]) -> Vec<Option<&'t str>> {
    let mut targets = Vec::new();
    let ands = clauses.iter().filter(|c| c.connector == Connector::And);
    let ors = clauses.iter().filter(|c| c.connector == Connector::Or);
    for clause in ands.chain(ors) {
        let Ok((_, field)) = resolve_field(table, &clause.field) else {
            continue;
        };
        let column = Some(field.name.as_str());
        let lowered =
            clause.mode == WhereMode::Insensitive && field.field_type == DbFieldType::String;
        match (&clause.value, clause.operator) {
            (DbValue::Null, _) => {}
            (
                value,
                WhereOperator::Eq
                | WhereOperator::Ne
                | WhereOperator::Lt
                | WhereOperator::Lte
                | WhereOperator::Gt
                | WhereOperator::Gte,
            ) => {
                let lower = lowered
                    && matches!(value, DbValue::String(_))
                    && matches!(clause.operator, WhereOperator::Eq | WhereOperator::Ne);
                targets.push(if lower { None } else { column });
            }
            (DbValue::StringArray(values), WhereOperator::In | WhereOperator::NotIn) => {
                let target = if lowered { None } else { column };
                targets.extend(values.iter().map(|_| target));
            }
            (DbValue::NumberArray(values), WhereOperator::In | WhereOperator::NotIn) => {
                targets.extend(values.iter().map(|_| column));
            }
            (_, WhereOperator::In | WhereOperator::NotIn) => {}
            (_, WhereOperator::Contains | WhereOperator::StartsWith | WhereOperator::EndsWith) => {
                targets.push(None);
            }
        }
    }
    targets
}
