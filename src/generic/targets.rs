//! Which column each parameter of a statement meets, so that its value is converted for that
//! column's type (see `runner.rs`).

use rustauth_core::db::sql::resolve_field;
use rustauth_core::db::DbFieldType;
use rustauth_core::db::{DbRecord, DbTable, DbValue, Where, WhereMode, WhereOperator};

use crate::shapes::{where_params, Slot};

/// The column each assigned value meets, in data order (the order core binds them).
pub(super) fn data_targets<'t>(table: &'t DbTable, data: &DbRecord) -> Vec<Option<&'t str>> {
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
pub(super) fn where_targets<'t>(table: &'t DbTable, clauses: &[Where]) -> Vec<Option<&'t str>> {
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
