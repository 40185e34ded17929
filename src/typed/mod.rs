//! The hot-call router: query shape → generated statement → `DbRecord`.
//!
//! When the adapter is built, each core table of its schema is compared with the layout
//! `migrations/` declares (the default physical names of `auth_schema` with database rate
//! limits). A call then takes a typed statement when its model's layout matches, its shape is
//! one RustAuth's hot paths use (`docs/behaviour.md` §9), and every value converts to the
//! statement's parameter types; anything else returns `None` and takes the generic path.
//! Both paths give the same records, errors and side effects (tests/it/differential.rs).
//!
//! - this module: the decision, per core table, whether the adapter's schema is the layout
//!   the typed statements were written for ([`Router`]);
//! - [`routes`]: which call shapes a typed statement serves, and binding the call's values;
//! - [`rows`]: a generated row type → `DbRecord`;
//! - [`statements`]: the typed statements of one connection, prepared together and checked
//!   against the live catalog.

mod routes;
mod rows;
pub(crate) mod statements;

use std::borrow::Cow;

use rustauth_core::db::sql::resolve_table_with_logical;
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, DbSchema, DbValue, RateLimitStorage, Where, WhereMode,
    WhereOperator,
};

use crate::layout::CoreTable;
use crate::runner::{Db, TypedDb};
use statements::TableSet;

pub(crate) use routes::consume_rate_limit;

/// Column indexes `0..n`, sliced to a table's width: the projection of "every column".
const EVERY_COLUMN: [usize; 13] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/// How a schema table compares with the layout `migrations/` declares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Fit {
    /// Different name, columns or types: generic path only.
    #[default]
    No,
    /// Exactly the core columns.
    Core,
    /// The core columns plus plugin columns: typed statements serve calls that need no
    /// plugin column.
    Extended,
}

impl Fit {
    fn any(self) -> bool {
        self != Self::No
    }
}

/// The typed-path decision for one adapter, made once when it is built. It holds no state
/// of its own beyond that decision: the call state (`call.rs`) owns the router, the shape
/// cache and the counters; the runner gives it the statements of a connection.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Router {
    user: Fit,
    session: Fit,
    account: Fit,
    verification: Fit,
    /// Whether typed statements may serve calls at all (fixed when the adapter is built).
    enabled: bool,
}

impl Router {
    /// Compares `schema` with the canonical layout.
    pub(crate) fn new(schema: &DbSchema, enabled: bool) -> Self {
        let canonical = auth_schema(AuthSchemaOptions {
            rate_limit_storage: RateLimitStorage::Database,
            ..AuthSchemaOptions::default()
        });
        Self {
            user: fit(schema, &canonical, CoreTable::User),
            session: fit(schema, &canonical, CoreTable::Session),
            account: fit(schema, &canonical, CoreTable::Account),
            verification: fit(schema, &canonical, CoreTable::Verification),
            enabled,
        }
    }

    /// Whether typed statements are on.
    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    /// The tables whose typed statements this adapter can use.
    pub(crate) fn wanted(&self) -> TableSet {
        TableSet::of(
            [
                CoreTable::User,
                CoreTable::Session,
                CoreTable::Account,
                CoreTable::Verification,
            ]
            .into_iter()
            .filter(|table| self.fit_of(*table).any()),
        )
    }

    fn fit_of(&self, table: CoreTable) -> Fit {
        match table {
            CoreTable::User => self.user,
            CoreTable::Session => self.session,
            CoreTable::Account => self.account,
            CoreTable::Verification => self.verification,
            CoreTable::RateLimit => Fit::No,
        }
    }

    /// The statements of `db`'s connection, when this call may use them.
    async fn statements<'a>(&self, db: Db<'a>) -> Option<TypedDb<'a>> {
        if !self.enabled {
            return None;
        }
        db.typed(self.wanted()).await
    }

    /// The core table and its fit, if `model` names one the typed path may serve (never
    /// when typed statements are off: then no call looks further at its shape).
    fn model(&self, schema: &DbSchema, model: &str) -> Option<(CoreTable, Fit)> {
        if !self.enabled {
            return None;
        }
        let (logical, _) = resolve_table_with_logical(schema, model).ok()?;
        let table = CoreTable::from_logical(logical)?;
        let fit = self.fit_of(table);
        fit.any().then_some((table, fit))
    }
}

/// Compares one table of `schema` with the canonical one.
fn fit(schema: &DbSchema, canonical: &DbSchema, core: CoreTable) -> Fit {
    let logical = core.logical();
    let (Some(table), Some(expected)) = (schema.table(logical), canonical.table(logical)) else {
        return Fit::No;
    };
    if table.name != expected.name {
        return Fit::No;
    }
    let same = expected.fields.iter().all(|(name, want)| {
        table.fields.get(name).is_some_and(|have| {
            have.name == want.name
                && have.field_type == want.field_type
                && have.required == want.required
                && have.unique == want.unique
                && have.generated_id == want.generated_id
        })
    });
    match (same, table.fields.len() == expected.fields.len()) {
        (false, _) => Fit::No,
        (true, true) => Fit::Core,
        (true, false) => Fit::Extended,
    }
}

/// The text value of a case-sensitive `field = value` clause.
fn eq_text<'q>(clause: &'q Where, field: &str) -> Option<&'q String> {
    if clause.field != field
        || clause.operator != WhereOperator::Eq
        || clause.mode != WhereMode::Sensitive
    {
        return None;
    }
    match &clause.value {
        DbValue::String(value) => Some(value),
        _ => None,
    }
}

/// Indexes into a table's canonical columns for the requested selection (empty = every
/// column, which needs the table to have no plugin columns).
fn projection(select: &[String], table: CoreTable, fit: Fit) -> Option<Cow<'static, [usize]>> {
    if select.is_empty() {
        let every = EVERY_COLUMN.get(..table.columns().len())?;
        return (fit == Fit::Core).then_some(Cow::Borrowed(every));
    }
    // The common case (core's hot-path selections): every column, in table order.
    let columns = table.columns();
    let every_in_order = select.len() == columns.len()
        && select
            .iter()
            .zip(columns)
            .all(|(field, column)| field == column.name);
    if let (true, Some(every)) = (every_in_order, EVERY_COLUMN.get(..columns.len())) {
        return Some(Cow::Borrowed(every));
    }
    select
        .iter()
        .map(|field| table.position(field))
        .collect::<Option<Vec<_>>>()
        .map(Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projections_follow_the_selection_order_and_refuse_unknown_fields() {
        let select = ["email".to_owned(), "id".to_owned()];
        let pick = projection(&select, CoreTable::User, Fit::Extended).map(Cow::into_owned);
        assert_eq!(pick, Some(vec![2, 0]));
        let unknown = ["nickname".to_owned()];
        assert_eq!(projection(&unknown, CoreTable::User, Fit::Core), None);
        // Every column only when the table has no plugin columns to return as well.
        let every = projection(&[], CoreTable::Session, Fit::Core).map(Cow::into_owned);
        assert_eq!(every, Some((0..8).collect::<Vec<_>>()));
        assert_eq!(projection(&[], CoreTable::Session, Fit::Extended), None);
        // Every column named in table order: the same indexes, whatever the fit.
        let named = crate::layout::USER_FIELDS.map(str::to_owned);
        let all = projection(&named, CoreTable::User, Fit::Extended).map(Cow::into_owned);
        assert_eq!(all, Some((0..7).collect::<Vec<_>>()));
    }

    #[test]
    fn only_case_sensitive_string_equalities_are_typed_lookups() {
        let plain = Where::new("token", DbValue::String("t".to_owned()));
        assert_eq!(eq_text(&plain, "token").map(String::as_str), Some("t"));
        assert_eq!(eq_text(&plain, "id"), None);
        assert_eq!(eq_text(&plain.clone().insensitive(), "token"), None);
        assert_eq!(
            eq_text(&plain.clone().operator(WhereOperator::Ne), "token"),
            None
        );
        assert_eq!(eq_text(&Where::new("token", DbValue::Null), "token"), None);
    }
}
