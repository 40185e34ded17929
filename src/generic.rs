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

use std::sync::Arc;

use rustauth_core::db::sql::{
    base_alias, count_statement, create_returning_selection, create_statement,
    delete_many_statement, delete_one_statement, find_many_statement, internal_base_selection,
    join_alias, join_field_alias, resolve_field, resolve_native_joins, resolve_table,
    resolve_table_with_logical, select_record, table_has_database_generated_id,
    update_many_statement, update_one_plan, SqlDialect, SqlParam, SqlSelectedField, SqlStatement,
    SqlUpdateOnePlan,
};
use rustauth_core::db::{
    Connector, Count, Create, DbRecord, DbSchema, DbTable, DbValue, Delete, DeleteMany, FindMany,
    FindOne, JoinRelation, SortDirection, Update, UpdateMany, Where, WhereMode, WhereOperator,
};
use rustauth_core::db::{DbField, DbFieldType};
use rustauth_core::error::RustAuthError;
use tokio_postgres::Row;

use crate::error::{Error, Result};
use crate::runner::{Db, Sql};
use crate::shapes::{
    data_values, decode_fields, where_params, where_values, Joined, JoinedModel, Key, Plan, Read,
    Shapes, Slot,
};

const PG: SqlDialect = SqlDialect::Postgres;
/// The most rows a join without its own `limit` returns per record: core's default (rustauth-core
/// 0.3.2 passes the literal `100` to `resolve_native_joins` and `resolve_fallback_joins`).
const JOIN_LIMIT: usize = 100;

/// The plan of one call and its parameters. With `shapes`, a kept plan for the call's shape
/// is used and only the values are built; a fresh plan is kept when the values built for it
/// are exactly the planner's parameters (so a shape whose parameters this module cannot
/// reproduce is planned every time, never run with the wrong values). Without `shapes`, every
/// call is planned.
fn prepare_call(
    shapes: Option<&Shapes>,
    key: impl FnOnce() -> Key,
    plan: impl FnOnce() -> Result<(Plan, Vec<SqlParam>)>,
    values: impl FnOnce(&mut Vec<DbValue>) -> Result<()>,
) -> Result<(Arc<Plan>, Vec<SqlParam>)> {
    let Some(shapes) = shapes else {
        let (plan, params) = plan()?;
        return Ok((Arc::new(plan), params));
    };
    let key = key();
    if let Some(plan) = shapes.get(&key) {
        let mut out = Vec::with_capacity(plan.kinds.len());
        values(&mut out)?;
        let params = plan.params(out)?;
        return Ok((plan, params));
    }
    let (plan, params) = plan()?;
    let plan = Arc::new(plan);
    let mut out = Vec::with_capacity(params.len());
    if values(&mut out).is_ok() && plan.params(out).is_ok_and(|ours| ours == params) {
        shapes.insert(&key, Arc::clone(&plan));
    }
    Ok((plan, params))
}

/// Runs a plan and returns its rows.
async fn plan_rows(db: Db<'_>, plan: &Plan, params: &[SqlParam]) -> Result<Vec<Row>> {
    let targets = plan.targets();
    let returning = plan.returning();
    db.query(Sql {
        text: &plan.text,
        params,
        table: &plan.table,
        targets: &targets,
        returning: &returning,
    })
    .await
}

/// Runs a plan and returns how many rows it affected.
async fn plan_execute(db: Db<'_>, plan: &Plan, params: &[SqlParam]) -> Result<u64> {
    let targets = plan.targets();
    let returning = plan.returning();
    db.execute(Sql {
        text: &plan.text,
        params,
        table: &plan.table,
        targets: &targets,
        returning: &returning,
    })
    .await
}

/// Inserts one row (`docs/behaviour.md` §3).
pub(crate) async fn create(
    db: Db<'_>,
    schema: &DbSchema,
    shapes: Option<&Shapes>,
    query: Create,
) -> Result<DbRecord> {
    let (plan, params) = prepare_call(
        shapes,
        || {
            Key::new('i', &query.model)
                .data(&query.data)
                .select(&query.select)
        },
        || plan_create(schema, &query),
        |out| {
            data_values(&query.data, out);
            Ok(())
        },
    )?;
    match &plan.read {
        Read::Fields(fields) => match plan_rows(db, &plan, &params).await?.first() {
            Some(row) => decode_fields(row, fields),
            None => Err(Error::Unexpected(
                "insert did not return the row with its database-generated id".to_owned(),
            )),
        },
        _ => {
            plan_execute(db, &plan, &params).await?;
            Ok(select_record(query.data, &query.select))
        }
    }
}

fn plan_create(schema: &DbSchema, query: &Create) -> Result<(Plan, Vec<SqlParam>)> {
    let table = resolve_table(schema, &query.model)?;
    let statement = create_statement(PG, schema, query)?;
    let targets = data_targets(table, &query.data);
    if table_has_database_generated_id(table) {
        let selection = create_returning_selection(schema, query)?;
        let returning = selection
            .iter()
            .map(|selected| selected.field.name.as_str())
            .collect::<Vec<_>>();
        let plan = Plan::new(
            statement.sql,
            &table.name,
            &targets,
            &returning,
            &statement.params,
            Read::Fields(owned_selection(&selection)),
        );
        return Ok((plan, statement.params));
    }
    let plan = Plan::new(
        statement.sql,
        &table.name,
        &targets,
        &[],
        &statement.params,
        Read::Nothing,
    );
    Ok((plan, statement.params))
}

/// Reads at most one row (`docs/behaviour.md` §3).
pub(crate) async fn find_one(
    db: Db<'_>,
    schema: &DbSchema,
    shapes: Option<&Shapes>,
    query: FindOne,
) -> Result<Option<DbRecord>> {
    let mut many = FindMany::new(query.model);
    many.where_clauses = query.where_clauses;
    many.limit = Some(1);
    many.select = query.select;
    many.joins = query.joins;
    Ok(find_many(db, schema, shapes, many)
        .await?
        .into_iter()
        .next())
}

/// Reads rows (`docs/behaviour.md` §3).
pub(crate) async fn find_many(
    db: Db<'_>,
    schema: &DbSchema,
    shapes: Option<&Shapes>,
    query: FindMany,
) -> Result<Vec<DbRecord>> {
    let (plan, params) = prepare_call(
        shapes,
        || {
            Key::new('f', &query.model)
                .clauses(&query.where_clauses)
                .select(&query.select)
                .window(query.sort_by.as_ref(), query.limit, query.offset)
                .joins(query.joins.iter())
        },
        || {
            if query.joins.values().any(|join| join.enabled) {
                plan_joined(schema, &query)
            } else {
                plan_find_many(schema, &query)
            }
        },
        |out| where_values(&query.where_clauses, out),
    )?;
    let rows = plan_rows(db, &plan, &params).await?;
    match &plan.read {
        Read::Joined(joined) => joined.records(&rows),
        read => rows
            .iter()
            .map(|row| decode_fields(row, read.fields()))
            .collect(),
    }
}

fn plan_find_many(schema: &DbSchema, query: &FindMany) -> Result<(Plan, Vec<SqlParam>)> {
    let read = find_many_statement(PG, schema, query)?;
    filtered_plan(
        schema,
        &query.model,
        &query.where_clauses,
        read.statement,
        Read::Fields(owned_selection(&read.selection)),
    )
}

/// The plan of a statement whose only parameters are its where-clause's (reads, counts,
/// bulk deletes).
fn filtered_plan(
    schema: &DbSchema,
    model: &str,
    clauses: &[Where],
    statement: SqlStatement,
    read: Read,
) -> Result<(Plan, Vec<SqlParam>)> {
    let table = resolve_table(schema, model)?;
    let targets = where_targets(table, clauses);
    let plan = Plan::new(
        statement.sql,
        &table.name,
        &targets,
        &[],
        &statement.params,
        read,
    );
    Ok((plan, statement.params))
}

/// [`prepare_call`] for a statement whose shape is its operation, model and where-clause, and
/// whose only parameters are the where-clause's (counts, bulk deletes).
fn prepare_filtered(
    shapes: Option<&Shapes>,
    schema: &DbSchema,
    (operation, model, clauses): (char, &str, &[Where]),
    statement: impl FnOnce() -> Result<SqlStatement>,
    read: Read,
) -> Result<(Arc<Plan>, Vec<SqlParam>)> {
    prepare_call(
        shapes,
        || Key::new(operation, model).clauses(clauses),
        || filtered_plan(schema, model, clauses, statement()?, read),
        |out| where_values(clauses, out),
    )
}

/// Counts rows (`docs/behaviour.md` §3).
pub(crate) async fn count(
    db: Db<'_>,
    schema: &DbSchema,
    shapes: Option<&Shapes>,
    query: Count,
) -> Result<u64> {
    let (plan, params) = prepare_filtered(
        shapes,
        schema,
        ('c', &query.model, &query.where_clauses),
        || Ok(count_statement(PG, schema, &query)?),
        Read::Nothing,
    )?;
    let row = plan_rows(db, &plan, &params)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| Error::Unexpected("COUNT(*) returned no row".to_owned()))?;
    let count: i64 = row.try_get(0)?;
    Ok(
        u64::try_from(count).map_err(|_| RustAuthError::NumericOutOfRange {
            context: "SQL count result",
        })?,
    )
}

/// Updates at most one row and returns it as stored (`docs/behaviour.md` §3).
pub(crate) async fn update(
    db: Db<'_>,
    schema: &DbSchema,
    shapes: Option<&Shapes>,
    query: Update,
) -> Result<Option<DbRecord>> {
    if query.data.is_empty() {
        return Ok(None);
    }
    let (plan, params) = prepare_call(
        shapes,
        || {
            Key::new('u', &query.model)
                .data(&query.data)
                .clauses(&query.where_clauses)
        },
        || plan_update(schema, &query),
        |out| {
            data_values(&query.data, out);
            where_values(&query.where_clauses, out)
        },
    )?;
    plan_rows(db, &plan, &params)
        .await?
        .first()
        .map(|row| decode_fields(row, plan.read.fields()))
        .transpose()
}

fn plan_update(schema: &DbSchema, query: &Update) -> Result<(Plan, Vec<SqlParam>)> {
    let table = resolve_table(schema, &query.model)?;
    let mut targets = data_targets(table, &query.data);
    targets.extend(where_targets(table, &query.where_clauses));
    let fields = all_fields(table);
    let returning = fields
        .iter()
        .map(|(_, field)| field.name.as_str())
        .collect::<Vec<_>>();
    let read = || {
        Read::Fields(
            fields
                .iter()
                .map(|(logical, field)| ((*logical).to_owned(), (*field).clone()))
                .collect(),
        )
    };
    let mut many = UpdateMany::new(query.model.clone());
    many.where_clauses = query.where_clauses.clone();
    many.data = query.data.clone();
    if pins_one_row(table, &query.where_clauses) {
        let statement = update_many_statement(PG, schema, &many)?;
        let sql = format!("{} RETURNING {}", statement.sql, column_list(&fields)?);
        let plan = Plan::new(
            sql,
            &table.name,
            &targets,
            &returning,
            &statement.params,
            read(),
        );
        return Ok((plan, statement.params));
    }
    if let Some(id) = id_column(table)? {
        // `UPDATE … WHERE id = (SELECT id … LIMIT 1) AND (<where>)`: a concurrent update of
        // the chosen row makes Postgres wait, then re-check `id` and the where-clause on the
        // newest row version, so the update is applied instead of lost.
        let assigned = query.data.len();
        let statement = update_many_statement(PG, schema, &many)?;
        let filter = PG.where_clause_starting_at(table, &many.where_clauses, assigned + 1)?;
        let head = statement
            .sql
            .strip_suffix(filter.sql.as_str())
            .ok_or_else(|| {
                Error::Unexpected("update statement does not end with its where-clause".to_owned())
            })?;
        let sql = format!(
            "{head}{} RETURNING {}",
            one_row_by_id(table, &id, &filter.sql)?,
            column_list(&fields)?
        );
        let plan = Plan::new(
            sql,
            &table.name,
            &targets,
            &returning,
            &statement.params,
            read(),
        );
        return Ok((plan, statement.params));
    }
    match update_one_plan(PG, schema, query)? {
        SqlUpdateOnePlan::Returning(planned) => {
            let plan = Plan::new(
                planned.statement.sql,
                &table.name,
                &targets,
                &returning,
                &planned.statement.params,
                Read::Fields(owned_selection(&planned.selection)),
            );
            Ok((plan, planned.statement.params))
        }
        SqlUpdateOnePlan::PreselectThenUpdate { .. } => Err(Error::Unexpected(
            "core planned a preselect update, which the Postgres dialect never uses".to_owned(),
        )),
    }
}

/// Updates every matching row (`docs/behaviour.md` §3).
pub(crate) async fn update_many(
    db: Db<'_>,
    schema: &DbSchema,
    shapes: Option<&Shapes>,
    query: UpdateMany,
) -> Result<u64> {
    if query.data.is_empty() {
        return Ok(0);
    }
    let (plan, params) = prepare_call(
        shapes,
        || {
            Key::new('m', &query.model)
                .data(&query.data)
                .clauses(&query.where_clauses)
        },
        || {
            let statement = update_many_statement(PG, schema, &query)?;
            let table = resolve_table(schema, &query.model)?;
            let mut targets = data_targets(table, &query.data);
            targets.extend(where_targets(table, &query.where_clauses));
            let plan = Plan::new(
                statement.sql,
                &table.name,
                &targets,
                &[],
                &statement.params,
                Read::Nothing,
            );
            Ok((plan, statement.params))
        },
        |out| {
            data_values(&query.data, out);
            where_values(&query.where_clauses, out)
        },
    )?;
    plan_execute(db, &plan, &params).await
}

/// Deletes at most one row (`docs/behaviour.md` §3).
pub(crate) async fn delete(
    db: Db<'_>,
    schema: &DbSchema,
    shapes: Option<&Shapes>,
    query: Delete,
) -> Result<()> {
    let (plan, params) = prepare_call(
        shapes,
        || Key::new('d', &query.model).clauses(&query.where_clauses),
        || plan_delete(schema, &query),
        |out| where_values(&query.where_clauses, out),
    )?;
    plan_execute(db, &plan, &params).await?;
    Ok(())
}

fn plan_delete(schema: &DbSchema, query: &Delete) -> Result<(Plan, Vec<SqlParam>)> {
    let table = resolve_table(schema, &query.model)?;
    let targets = where_targets(table, &query.where_clauses);
    let plan = |text: String, params: &[SqlParam]| {
        Plan::new(text, &table.name, &targets, &[], params, Read::Nothing)
    };
    if pins_one_row(table, &query.where_clauses) {
        let mut many = DeleteMany::new(query.model.clone());
        many.where_clauses = query.where_clauses.clone();
        let statement = delete_many_statement(PG, schema, &many)?;
        return Ok((plan(statement.sql, &statement.params), statement.params));
    }
    if let Some(id) = id_column(table)? {
        let filter = PG.where_clause(table, &query.where_clauses)?;
        let text = format!(
            "DELETE FROM {}{}",
            PG.quote_identifier(&table.name)?,
            one_row_by_id(table, &id, &filter.sql)?
        );
        return Ok((plan(text, &filter.params), filter.params));
    }
    let planned = delete_one_statement(PG, schema, query)?;
    Ok((
        plan(planned.statement.sql, &planned.statement.params),
        planned.statement.params,
    ))
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

/// Deletes every matching row (`docs/behaviour.md` §3).
pub(crate) async fn delete_many(
    db: Db<'_>,
    schema: &DbSchema,
    shapes: Option<&Shapes>,
    query: DeleteMany,
) -> Result<u64> {
    let (plan, params) = prepare_filtered(
        shapes,
        schema,
        ('x', &query.model, &query.where_clauses),
        || Ok(delete_many_statement(PG, schema, &query)?),
        Read::Nothing,
    )?;
    plan_execute(db, &plan, &params).await
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

/// A planner's selection, owned by a plan.
fn owned_selection(selection: &[SqlSelectedField]) -> Vec<(String, DbField)> {
    selection
        .iter()
        .map(|selected| (selected.logical_name.clone(), selected.field.clone()))
        .collect()
}

/// A native join: core's join resolution and row grouping, with our own statement so that the
/// order of records and of joined arrays is deterministic.
fn plan_joined(schema: &DbSchema, query: &FindMany) -> Result<(Plan, Vec<SqlParam>)> {
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
    let read = Joined {
        id: id_field.clone(),
        base: base_selection
            .iter()
            .map(|(logical, field)| {
                let output = query.select.is_empty() || query.select.iter().any(|f| f == logical);
                ((*logical).to_owned(), (*field).clone(), output)
            })
            .collect(),
        joins: joins
            .iter()
            .map(|join| JoinedModel {
                model: join.model.clone(),
                one: join.relation == JoinRelation::OneToOne,
                limit: join.limit,
                fields: join
                    .selection
                    .iter()
                    .map(|(logical, field)| ((*logical).to_owned(), (*field).clone()))
                    .collect(),
            })
            .collect(),
    };
    let plan = Plan::new(
        sql,
        &table.name,
        &targets,
        &[],
        &where_sql.params,
        Read::Joined(read),
    );
    Ok((plan, where_sql.params))
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

/// The column each parameter of a where-clause meets, in [`where_params`]' order: `None`
/// where the parameter meets an expression (`LOWER($n)`, a `LIKE` pattern) rather than the
/// column itself. Called after the planner accepted the clauses, so a walk error (which the
/// planner reports first) leaves the list short and the runner types values by their fields.
fn where_targets<'t>(table: &'t DbTable, clauses: &[Where]) -> Vec<Option<&'t str>> {
    let mut targets = Vec::new();
    let _ = where_params(clauses, |clause, slot, value| {
        let field = resolve_field(table, &clause.field)
            .ok()
            .map(|(_, field)| field);
        let lowered = clause.mode == WhereMode::Insensitive
            && field.is_some_and(|field| field.field_type == DbFieldType::String);
        let meets_column = match slot {
            Slot::Compared => {
                !(lowered
                    && matches!(value, DbValue::String(_))
                    && matches!(clause.operator, WhereOperator::Eq | WhereOperator::Ne))
            }
            Slot::Element => !(lowered && matches!(clause.value, DbValue::StringArray(_))),
            Slot::Pattern => false,
        };
        targets.push(
            field
                .filter(|_| meets_column)
                .map(|field| field.name.as_str()),
        );
    });
    targets
}

#[cfg(test)]
mod tests {
    //! A kept plan must be what planning the call afresh gives: for random shapes, two calls
    //! with the same key (values of the same class, otherwise different) plan to the same SQL
    //! text, targets and decoding, and the values built for the second from the first's plan
    //! are exactly the parameters the planner gives it.

    use super::*;
    use proptest::prelude::*;
    use rustauth_core::db::{
        auth_schema, AuthSchemaOptions, JoinOption, RateLimitStorage, Sort, SortDirection,
    };
    use time::OffsetDateTime;

    #[derive(Debug, Clone, Copy)]
    enum Class {
        Null,
        Text,
        Number,
        Boolean,
        Time,
        Texts(usize),
        Numbers(usize),
    }

    fn class() -> impl Strategy<Value = Class> {
        prop_oneof![
            Just(Class::Null),
            Just(Class::Text),
            Just(Class::Number),
            Just(Class::Boolean),
            Just(Class::Time),
            (0usize..4).prop_map(Class::Texts),
            (0usize..4).prop_map(Class::Numbers),
        ]
    }

    /// A value of `class`; `seed` varies it within the class (strings with LIKE wildcards,
    /// backslashes and quotes included).
    fn value(class: Class, seed: u64) -> DbValue {
        let text = |n: u64| {
            ["ada@example.com", "100%_x", r"a\b", "o'hara", "", "ÄÖ"][(n % 6) as usize].to_owned()
                + &n.to_string()
        };
        match class {
            Class::Null => DbValue::Null,
            Class::Text => DbValue::String(text(seed)),
            Class::Number => DbValue::Number(seed as i64 - 7),
            Class::Boolean => DbValue::Boolean(seed % 2 == 0),
            Class::Time => DbValue::Timestamp(
                OffsetDateTime::from_unix_timestamp(1_700_000_000 + seed as i64)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            ),
            Class::Texts(n) => {
                DbValue::StringArray((0..n as u64).map(|i| text(seed + i)).collect())
            }
            Class::Numbers(n) => {
                DbValue::NumberArray((0..n as u64).map(|i| (seed + i) as i64).collect())
            }
        }
    }

    const FIELDS: [&str; 7] = [
        "id",
        "email",
        "email_verified",
        "created_at",
        "name",
        "userId",
        "nope",
    ];
    const OPERATORS: [WhereOperator; 11] = [
        WhereOperator::Eq,
        WhereOperator::Ne,
        WhereOperator::Lt,
        WhereOperator::Lte,
        WhereOperator::Gt,
        WhereOperator::Gte,
        WhereOperator::In,
        WhereOperator::NotIn,
        WhereOperator::Contains,
        WhereOperator::StartsWith,
        WhereOperator::EndsWith,
    ];

    type ClauseShape = (usize, usize, bool, bool, Class);

    fn clause_shape() -> impl Strategy<Value = ClauseShape> {
        (
            0..FIELDS.len(),
            0..OPERATORS.len(),
            any::<bool>(),
            any::<bool>(),
            class(),
        )
    }

    fn clauses(shapes: &[ClauseShape], seed: u64) -> Vec<Where> {
        shapes
            .iter()
            .enumerate()
            .map(|(index, (field, operator, or, insensitive, class))| {
                let mut clause = Where::new(FIELDS[*field], value(*class, seed + index as u64))
                    .operator(OPERATORS[*operator]);
                if *or {
                    clause.connector = Connector::Or;
                }
                if *insensitive {
                    clause.mode = WhereMode::Insensitive;
                }
                clause
            })
            .collect()
    }

    #[derive(Debug, Clone)]
    struct Shape {
        model: &'static str,
        clauses: Vec<ClauseShape>,
        data: Vec<(usize, Class)>,
        select: Vec<usize>,
        sort: Option<(usize, bool)>,
        limit: Option<usize>,
        offset: Option<usize>,
        join: Option<Option<usize>>,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        (
            prop_oneof![
                Just("user"),
                Just("session"),
                Just("users"),
                Just("account")
            ],
            proptest::collection::vec(clause_shape(), 0..4),
            proptest::collection::vec((0..FIELDS.len(), class()), 0..3),
            proptest::collection::vec(0..FIELDS.len() - 1, 0..3),
            proptest::option::of((0..FIELDS.len() - 1, any::<bool>())),
            proptest::option::of(0usize..3),
            proptest::option::of(0usize..3),
            proptest::option::of(proptest::option::of(1usize..3)),
        )
            .prop_map(
                |(model, clauses, data, select, sort, limit, offset, join)| Shape {
                    model,
                    clauses,
                    data,
                    select,
                    sort,
                    limit,
                    offset,
                    join,
                },
            )
    }

    fn data(shape: &Shape, seed: u64) -> DbRecord {
        shape
            .data
            .iter()
            .enumerate()
            .map(|(index, (field, class))| {
                (
                    FIELDS[*field].to_owned(),
                    value(*class, seed + index as u64),
                )
            })
            .collect()
    }

    fn find(shape: &Shape, seed: u64) -> FindMany {
        let mut query = FindMany::new(shape.model);
        query.where_clauses = clauses(&shape.clauses, seed);
        query.select = shape.select.iter().map(|i| FIELDS[*i].to_owned()).collect();
        query.sort_by = shape.sort.map(|(field, asc)| Sort {
            field: FIELDS[field].to_owned(),
            direction: if asc {
                SortDirection::Asc
            } else {
                SortDirection::Desc
            },
        });
        query.limit = shape.limit;
        query.offset = shape.offset;
        if let Some(limit) = shape.join {
            let model = if shape.model == "account" {
                "user"
            } else {
                "account"
            };
            query.joins.insert(
                model.to_owned(),
                JoinOption {
                    enabled: true,
                    limit,
                },
            );
        }
        query
    }

    /// What must agree between two plans of one shape.
    fn summary(plan: &Plan) -> String {
        let read = match &plan.read {
            Read::Fields(fields) => format!("{fields:?}"),
            Read::Joined(joined) => format!("{:?} {:?} {:?}", joined.id, joined.base, joined.joins),
            other => format!("{other:?}"),
        };
        format!(
            "{} | {} | {:?} | {:?} | {:?} | {read}",
            plan.text, plan.table, plan.targets, plan.returning, plan.kinds
        )
    }

    /// Plans two calls of one shape and checks the second against the first's plan.
    fn agree<Q>(
        first: &Q,
        second: &Q,
        key: impl Fn(&Q) -> Key,
        plan: impl Fn(&Q) -> Result<(Plan, Vec<SqlParam>)>,
        values: impl Fn(&Q, &mut Vec<DbValue>) -> Result<()>,
    ) -> std::result::Result<(), TestCaseError> {
        prop_assert_eq!(key(first), key(second), "same shape, same key");
        let (Ok((kept, _)), Ok((fresh, params))) = (plan(first), plan(second)) else {
            // The shape is refused (unknown field, NULL with `<`, …): nothing is kept.
            prop_assert!(plan(first).is_err() && plan(second).is_err());
            return Ok(());
        };
        prop_assert_eq!(summary(&kept), summary(&fresh));
        let mut out = Vec::new();
        prop_assert!(values(second, &mut out).is_ok());
        let built = kept.params(out);
        prop_assert!(built.is_ok());
        prop_assert_eq!(built.ok(), Some(params));
        Ok(())
    }

    fn schema() -> DbSchema {
        auth_schema(AuthSchemaOptions {
            rate_limit_storage: RateLimitStorage::Database,
            ..AuthSchemaOptions::default()
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        #[test]
        fn reads_of_one_shape_plan_alike(shape in shape(), a in 0u64..1000, b in 0u64..1000) {
            let schema = schema();
            let key = |q: &FindMany| {
                Key::new('f', &q.model)
                    .clauses(&q.where_clauses)
                    .select(&q.select)
                    .window(q.sort_by.as_ref(), q.limit, q.offset)
                    .joins(q.joins.iter())
            };
            let plan = |q: &FindMany| {
                if q.joins.values().any(|join| join.enabled) {
                    plan_joined(&schema, q)
                } else {
                    plan_find_many(&schema, q)
                }
            };
            agree(&find(&shape, a), &find(&shape, b), key, plan, |q, out| {
                where_values(&q.where_clauses, out)
            })?;
        }

        #[test]
        fn writes_of_one_shape_plan_alike(shape in shape(), a in 0u64..1000, b in 0u64..1000) {
            let schema = schema();
            let update = |seed| {
                let mut query = Update::new(shape.model);
                query.where_clauses = clauses(&shape.clauses, seed);
                query.data = data(&shape, seed);
                query
            };
            agree(
                &update(a),
                &update(b),
                |q| Key::new('u', &q.model).data(&q.data).clauses(&q.where_clauses),
                |q| plan_update(&schema, q),
                |q, out| {
                    data_values(&q.data, out);
                    where_values(&q.where_clauses, out)
                },
            )?;
            let delete = |seed| {
                let mut query = Delete::new(shape.model);
                query.where_clauses = clauses(&shape.clauses, seed);
                query
            };
            agree(
                &delete(a),
                &delete(b),
                |q| Key::new('d', &q.model).clauses(&q.where_clauses),
                |q| plan_delete(&schema, q),
                |q, out| where_values(&q.where_clauses, out),
            )?;
            let create = |seed| {
                let mut query = Create::new(shape.model);
                query.data = data(&shape, seed);
                query.select = shape.select.iter().map(|i| FIELDS[*i].to_owned()).collect();
                query
            };
            agree(
                &create(a),
                &create(b),
                |q| Key::new('i', &q.model).data(&q.data).select(&q.select),
                |q| plan_create(&schema, q),
                |q, out| {
                    data_values(&q.data, out);
                    Ok(())
                },
            )?;
        }
    }

    #[test]
    fn null_empty_in_and_insensitive_strings_are_other_shapes() {
        let key = |value: DbValue, operator: WhereOperator, insensitive: bool| {
            let mut clause = Where::new("email", value).operator(operator);
            if insensitive {
                clause.mode = WhereMode::Insensitive;
            }
            Key::new('f', "user").clauses(&[clause])
        };
        let text = || DbValue::String("a".to_owned());
        assert_ne!(
            key(DbValue::Null, WhereOperator::Eq, false),
            key(text(), WhereOperator::Eq, false)
        );
        assert_ne!(
            key(DbValue::StringArray(vec![]), WhereOperator::In, false),
            key(
                DbValue::StringArray(vec!["a".into()]),
                WhereOperator::In,
                false
            )
        );
        assert_ne!(
            key(text(), WhereOperator::Eq, true),
            key(DbValue::Number(1), WhereOperator::Eq, true)
        );
        assert_eq!(
            key(text(), WhereOperator::Eq, true),
            key(DbValue::String("B".into()), WhereOperator::Eq, true)
        );
        // Length prefixes keep field names from running into each other.
        assert_ne!(
            Key::new('f', "ab").select(&["c".into()]),
            Key::new('f', "a").select(&["bc".into()])
        );
    }
}
