//! Planning each call: core's planner, and the SQL this path writes itself where it differs
//! on purpose (see the module docs of `generic`).

use rustauth_core::db::sql::{
    base_alias, create_returning_selection, create_statement, delete_many_statement,
    delete_one_statement, find_many_statement, internal_base_selection, join_alias,
    join_field_alias, resolve_field, resolve_native_joins, resolve_table,
    resolve_table_with_logical, table_has_database_generated_id, update_many_statement,
    update_one_plan, SqlParam, SqlSelectedField, SqlStatement, SqlUpdateOnePlan,
};
use rustauth_core::db::DbField;
use rustauth_core::db::{
    Connector, Create, DbSchema, DbTable, DbValue, Delete, DeleteMany, FindMany, JoinRelation,
    SortDirection, Update, UpdateMany, Where, WhereMode, WhereOperator,
};

use super::targets::*;
use super::{JOIN_LIMIT, PG};
use crate::error::{Error, Result};
use crate::shapes::{Fields, Joined, JoinedModel, Plan, Read};

pub(super) fn plan_create(schema: &DbSchema, query: &Create) -> Result<(Plan, Vec<SqlParam>)> {
    let table = resolve_table(schema, &query.model)?;
    let statement = create_statement(PG, schema, query)?;
    let targets = data_targets(table, &query.data);
    if table_has_database_generated_id(table) {
        let selection = create_returning_selection(schema, query)?;
        let returning = selection
            .iter()
            .map(|selected| selected.field.name.as_str())
            .collect::<Vec<_>>();
        return Ok(planned(
            statement.sql,
            table,
            &targets,
            &returning,
            statement.params,
            Read::Fields(Fields::new(owned_selection(&selection))),
        ));
    }
    Ok(planned(
        statement.sql,
        table,
        &targets,
        &[],
        statement.params,
        Read::Nothing,
    ))
}

pub(super) fn plan_find_many(schema: &DbSchema, query: &FindMany) -> Result<(Plan, Vec<SqlParam>)> {
    let read = find_many_statement(PG, schema, query)?;
    filtered_plan(
        schema,
        &query.model,
        &query.where_clauses,
        read.statement,
        Read::Fields(Fields::new(owned_selection(&read.selection))),
    )
}

pub(super) fn plan_update(schema: &DbSchema, query: &Update) -> Result<(Plan, Vec<SqlParam>)> {
    let table = resolve_table(schema, &query.model)?;
    let mut targets = data_targets(table, &query.data);
    targets.extend(where_targets(table, &query.where_clauses));
    let fields = all_fields(table);
    let returning = fields
        .iter()
        .map(|(_, field)| field.name.as_str())
        .collect::<Vec<_>>();
    let read = || {
        Read::Fields(Fields::new(
            fields
                .iter()
                .map(|(logical, field)| ((*logical).to_owned(), (*field).clone()))
                .collect(),
        ))
    };
    let mut many = UpdateMany::new(query.model.clone());
    many.where_clauses = query.where_clauses.clone();
    many.data = query.data.clone();
    if pins_one_row(table, &query.where_clauses) {
        let statement = update_many_statement(PG, schema, &many)?;
        let sql = format!("{} RETURNING {}", statement.sql, column_list(&fields)?);
        return Ok(planned(
            sql,
            table,
            &targets,
            &returning,
            statement.params,
            read(),
        ));
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
        return Ok(planned(
            sql,
            table,
            &targets,
            &returning,
            statement.params,
            read(),
        ));
    }
    match update_one_plan(PG, schema, query)? {
        SqlUpdateOnePlan::Returning(update) => Ok(planned(
            update.statement.sql,
            table,
            &targets,
            &returning,
            update.statement.params,
            Read::Fields(Fields::new(owned_selection(&update.selection))),
        )),
        SqlUpdateOnePlan::PreselectThenUpdate { .. } => Err(Error::Unexpected(
            "core planned a preselect update, which the Postgres dialect never uses".to_owned(),
        )),
    }
}

pub(super) fn plan_delete(schema: &DbSchema, query: &Delete) -> Result<(Plan, Vec<SqlParam>)> {
    let table = resolve_table(schema, &query.model)?;
    let targets = where_targets(table, &query.where_clauses);
    let plan = |text: String, params: Vec<SqlParam>| {
        planned(text, table, &targets, &[], params, Read::Nothing)
    };
    if pins_one_row(table, &query.where_clauses) {
        let mut many = DeleteMany::new(query.model.clone());
        many.where_clauses = query.where_clauses.clone();
        let statement = delete_many_statement(PG, schema, &many)?;
        return Ok(plan(statement.sql, statement.params));
    }
    if let Some(id) = id_column(table)? {
        let filter = PG.where_clause(table, &query.where_clauses)?;
        let text = format!(
            "DELETE FROM {}{}",
            PG.quote_identifier(&table.name)?,
            one_row_by_id(table, &id, &filter.sql)?
        );
        return Ok(plan(text, filter.params));
    }
    let statement = delete_one_statement(PG, schema, query)?.statement;
    Ok(plan(statement.sql, statement.params))
}

/// The quoted `id` column of a table, if it has one.
pub(super) fn id_column(table: &DbTable) -> Result<Option<String>> {
    match resolve_field(table, "id") {
        Ok((_, field)) => Ok(PG.quote_identifier(&field.name).map(Some)?),
        Err(_) => Ok(None),
    }
}

/// ` WHERE id = (SELECT id FROM t <filter> LIMIT 1) [AND (<filter>)]`: one matching row,
/// addressed by its key, with the filter re-checked against the row version it finally
/// touches. `filter` is a where fragment (`""` or `" WHERE …"`); its placeholders appear twice
/// and bind the same parameters.
pub(super) fn one_row_by_id(table: &DbTable, id: &str, filter: &str) -> Result<String> {
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
pub(super) fn all_fields(table: &DbTable) -> Vec<(&str, &DbField)> {
    table
        .fields
        .iter()
        .map(|(logical, field)| (logical.as_str(), field))
        .collect()
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

pub(super) fn column_list(fields: &[(&str, &DbField)]) -> Result<String> {
    Ok(fields
        .iter()
        .map(|(_, field)| PG.quote_identifier(&field.name))
        .collect::<Result<Vec<_>, _>>()?
        .join(", "))
}

/// A planner's selection, owned by a plan.
pub(super) fn owned_selection(selection: &[SqlSelectedField]) -> Vec<(String, DbField)> {
    selection
        .iter()
        .map(|selected| (selected.logical_name.clone(), selected.field.clone()))
        .collect()
}

/// A native join: core's join resolution and row grouping, with our own statement so that the
/// order of records and of joined arrays is deterministic.
pub(super) fn plan_joined(schema: &DbSchema, query: &FindMany) -> Result<(Plan, Vec<SqlParam>)> {
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
    Ok(planned(
        sql,
        table,
        &targets,
        &[],
        where_sql.params,
        Read::Joined(read),
    ))
}

/// The plan of `sql` on `table`, with the planner's parameters it was made from (which it
/// records, and the call runs with).
fn planned(
    sql: String,
    table: &DbTable,
    targets: &[Option<&str>],
    returning: &[&str],
    params: Vec<SqlParam>,
    read: Read,
) -> (Plan, Vec<SqlParam>) {
    let plan = Plan::new(sql, &table.name, targets, returning, &params, read);
    (plan, params)
}

pub(super) fn plan_update_many(
    schema: &DbSchema,
    query: &UpdateMany,
) -> Result<(Plan, Vec<SqlParam>)> {
    let statement = update_many_statement(PG, schema, query)?;
    let table = resolve_table(schema, &query.model)?;
    let mut targets = data_targets(table, &query.data);
    targets.extend(where_targets(table, &query.where_clauses));
    Ok(planned(
        statement.sql,
        table,
        &targets,
        &[],
        statement.params,
        Read::Nothing,
    ))
}

/// The plan of a statement whose only parameters are its where-clause's (reads, counts,
/// bulk deletes).
pub(super) fn filtered_plan(
    schema: &DbSchema,
    model: &str,
    clauses: &[Where],
    statement: SqlStatement,
    read: Read,
) -> Result<(Plan, Vec<SqlParam>)> {
    let table = resolve_table(schema, model)?;
    let targets = where_targets(table, clauses);
    Ok(planned(
        statement.sql,
        table,
        &targets,
        &[],
        statement.params,
        read,
    ))
}
