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
//!
//! Files: this one holds the entry points (one per `DbAdapter` call) and the prepare
//! protocol (a kept plan per query shape, or planning afresh); `plans.rs` plans each call with
//! core's planner and writes the SQL that differs from it; `targets.rs` says which column
//! each parameter meets.

mod plans;
mod targets;

use std::sync::Arc;

use rustauth_core::db::sql::{
    count_statement, delete_many_statement, select_record, SqlDialect, SqlParam, SqlStatement,
};
use rustauth_core::db::{
    Count, Create, DbRecord, DbSchema, DbValue, Delete, DeleteMany, FindMany, FindOne, Update,
    UpdateMany, Where,
};
use rustauth_core::error::RustAuthError;
use tokio_postgres::Row;

use crate::error::{Error, Result};
use crate::runner::{Db, Sql};
use crate::shapes::{data_values, where_values, Key, Plan, Read, Shapes};
use plans::*;

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
            Some(row) => fields.decode(row),
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
        read => rows.iter().map(|row| read.record(row)).collect(),
    }
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
        .map(|row| plan.read.record(row))
        .transpose()
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
        || plan_update_many(schema, &query),
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
    use rustauth_core::db::{Connector, WhereMode, WhereOperator};
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
