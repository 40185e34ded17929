//! The generic path's plans, kept per query shape.
//!
//! Planning a statement with rustauth-core (resolving the table and fields, quoting, formatting
//! the SQL text, the select list and the join aliases) costs more client CPU than binding and
//! decoding it. So the first call of a shape is planned exactly as before (core's planner, or
//! our own single-row update/delete and join SQL in `generic/plans.rs`), and what was derived is kept
//! as a [`Plan`]: the SQL text, the physical table and the column each parameter meets (for
//! the runner), the type of each parameter, and how rows are decoded. A later call with the
//! same shape builds its parameter values ([`where_values`], [`data_values`]) and runs.
//!
//! A shape is everything that changes the SQL text or the parameter layout ([`Key`]): the
//! operation, the model, per where-clause its field, operator, connector and mode and the
//! *class* of its value (NULL or not, string or not, an IN list's length), the data keys in
//! order, the select list, the sort, the limit and offset values (core writes them into the
//! text) and the join options. Values that differ within a class (two tokens, two dates) share
//! a plan.
//!
//! Plans stay valid across catalog changes: the SQL text depends only on the adapter's
//! `DbSchema`, which is fixed for its lifetime, and the runner re-prepares a statement (and
//! re-reads the catalog) when the live table changed. The cache is still emptied by a
//! migration run through its adapter, so nothing planned before that migration outlives it
//! (a migration through another adapter leaves it alone: that adapter's schema is not this
//! one's); it is bounded and evicts the least recently used shape.
//!
//! The `driver` module's functions hold no adapter: they are handed a schema and a client on
//! every call. Their plans are kept per schema in one registry ([`Shapes::of_schema`]) that
//! recognises a schema by comparing its content with a copy, so a schema changed in place, or
//! a new one built where a dropped one was, never meets a plan made for another.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use rustauth_core::db::sql::SqlParam;
use rustauth_core::db::{
    Connector, DbField, DbFieldType, DbRecord, DbSchema, DbValue, IdGeneration, JoinOption, Sort,
    SortDirection, Where, WhereMode, WhereOperator,
};
use tokio_postgres::Row;

use crate::error::{adapter, Result};
use crate::lru::TextLru;
use crate::values::{decode, RecordTemplate};

/// How many shapes one adapter keeps planned.
const CAPACITY: usize = 512;

/// The plans of one adapter (shared by its clones and transaction adapters), by shape.
#[derive(Debug)]
pub(crate) struct Shapes {
    plans: TextLru<Arc<Plan>>,
}

impl Default for Shapes {
    fn default() -> Self {
        Self {
            plans: TextLru::new(CAPACITY),
        }
    }
}

impl Shapes {
    /// The plan for `key`, if one is kept.
    pub(crate) fn get(&self, key: &Key) -> Option<Arc<Plan>> {
        self.plans.get(&key.0)
    }

    /// Forgets every plan.
    pub(crate) fn clear(&self) {
        self.plans.clear();
    }

    /// Keeps `plan` for `key`.
    pub(crate) fn insert(&self, key: &Key, plan: Arc<Plan>) {
        self.plans.insert(&key.0, plan);
    }

    /// How many shapes are planned.
    pub(crate) fn len(&self) -> usize {
        self.plans.len()
    }
}

/// How many distinct schemas [`Shapes::of_schema`] keeps plans for.
const KNOWN_SCHEMAS: usize = 8;

/// The schemas the `driver` module's callers have planned against, most recently used first,
/// each with a copy of its content and its plans.
static KNOWN: RwLock<Vec<Known>> = RwLock::new(Vec::new());

/// One schema of [`KNOWN`].
struct Known {
    /// A copy of the schema as it was when its first plan was made.
    schema: Arc<DbSchema>,
    shapes: Arc<Shapes>,
}

impl Shapes {
    /// The plans for `schema`, for callers that hold no adapter to keep them in (the `driver`
    /// module's functions take a schema and a client on every call).
    ///
    /// A schema is recognised by its content, never by its address: a caller may change a
    /// schema in place, or drop it and build another where it was. A plan depends on nothing
    /// but the schema and the call's shape, so a copy whose tables and fields are equal, in
    /// the same order, gives every call the plan it would get afresh. Comparing costs about a
    /// hundred instructions a field (4,000 for the default schema); planning a find costs
    /// about forty thousand. A schema not seen before (or changed) is copied and starts with
    /// no plans; at most [`KNOWN_SCHEMAS`] are kept, the least recently used dropped first.
    /// `None` only if the registry's lock was poisoned; the caller then plans without a cache.
    /// A migration through the driver leaves these plans alone (an adapter empties its own,
    /// as a precaution): a plan depends on nothing the live tables hold, and one made before
    /// its table existed runs once the migration has created it.
    pub(crate) fn of_schema(schema: &DbSchema) -> Option<Arc<Shapes>> {
        let found = {
            let known = KNOWN.read().ok()?;
            match known
                .iter()
                .position(|known| same_schema(&known.schema, schema))
            {
                // The usual case, one schema per process: no write, no reordering.
                Some(0) => return known.first().map(|known| Arc::clone(&known.shapes)),
                Some(index) => known
                    .get(index)
                    .map(|known| (Arc::clone(&known.schema), Arc::clone(&known.shapes))),
                None => None,
            }
        };
        let (copy, shapes) =
            found.unwrap_or_else(|| (Arc::new(schema.clone()), Arc::new(Shapes::default())));
        let mut known = KNOWN.write().ok()?;
        // Also drops an equal copy another thread added meanwhile.
        known.retain(|entry| !same_schema(&entry.schema, &copy));
        known.insert(
            0,
            Known {
                schema: copy,
                shapes: Arc::clone(&shapes),
            },
        );
        known.truncate(KNOWN_SCHEMAS);
        Some(shapes)
    }
}

/// Whether two schemas have equal tables with equal fields, in the same order. Stricter than
/// `DbSchema`'s `==` (which ignores the order, and hashes every name to look it up): a schema
/// in another order counts as another schema, which costs only a plan.
fn same_schema(a: &DbSchema, b: &DbSchema) -> bool {
    let mut left = a.tables();
    let mut right = b.tables();
    loop {
        match (left.next(), right.next()) {
            (None, None) => return true,
            (Some((a_name, a_table)), Some((b_name, b_table))) => {
                if a_name != b_name
                    || a_table.name != b_table.name
                    || a_table.order != b_table.order
                    || !a_table.fields.iter().eq(b_table.fields.iter())
                {
                    return false;
                }
            }
            _ => return false,
        }
    }
}

/// What the generic path derived for one query shape.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The SQL text.
    pub(crate) text: String,
    /// The physical table (for the runner's catalog lookups).
    pub(crate) table: String,
    /// Per parameter, the column it meets (`None` for an expression).
    pub(crate) targets: Vec<Option<String>>,
    /// The columns a write returns.
    pub(crate) returning: Vec<String>,
    /// Per parameter, the field type and id generation it is bound with.
    pub(crate) kinds: Vec<(DbFieldType, Option<IdGeneration>)>,
    /// How the result is read.
    pub(crate) read: Read,
}

impl Plan {
    /// A plan from what a planner produced; `params` are the planned parameters, whose
    /// types (not values) the plan keeps.
    pub(crate) fn new(
        text: String,
        table: &str,
        targets: &[Option<&str>],
        returning: &[&str],
        params: &[SqlParam],
        read: Read,
    ) -> Self {
        Self {
            text,
            table: table.to_owned(),
            targets: targets
                .iter()
                .map(|target| target.map(str::to_owned))
                .collect(),
            returning: returning
                .iter()
                .map(|column| (*column).to_owned())
                .collect(),
            kinds: params
                .iter()
                .map(|param| (param.field_type.clone(), param.generated_id))
                .collect(),
            read,
        }
    }

    /// The parameters of one call: `values` (in placeholder order) with the plan's types.
    pub(crate) fn params(&self, values: Vec<DbValue>) -> Result<Vec<SqlParam>> {
        if values.len() != self.kinds.len() {
            return Err(adapter(format!(
                "planned statement takes {} parameters but the call has {}",
                self.kinds.len(),
                values.len()
            ))
            .into());
        }
        Ok(self
            .kinds
            .iter()
            .zip(values)
            .map(|((field_type, generated_id), value)| SqlParam {
                field_type: field_type.clone(),
                generated_id: *generated_id,
                value,
            })
            .collect())
    }

    /// The targets as the runner takes them.
    pub(crate) fn targets(&self) -> Vec<Option<&str>> {
        self.targets.iter().map(Option::as_deref).collect()
    }

    /// The returned columns as the runner takes them.
    pub(crate) fn returning(&self) -> Vec<&str> {
        self.returning.iter().map(String::as_str).collect()
    }
}

/// How a planned statement's result becomes records.
#[derive(Debug)]
pub(crate) enum Read {
    /// No row becomes a record: the caller reads what it needs itself (an affected-row
    /// count, a `COUNT(*)`, or a create's own data when the insert returns nothing).
    Nothing,
    /// Column `i` of each row is field `i` (logical name, field).
    Fields(Fields),
    /// A native join (see [`Joined`]).
    Joined(Joined),
}

impl Read {
    /// A row as a record: `Read::Fields` decodes its fields; other reads give an empty record.
    pub(crate) fn record(&self, row: &Row) -> Result<DbRecord> {
        match self {
            Self::Fields(fields) => fields.decode(row),
            _ => Ok(DbRecord::new()),
        }
    }
}

/// The selected fields of a plan (column `i` of a row is field `i`) and, from its second row
/// on, a [`RecordTemplate`] of their names that each row's record is cloned from. The first
/// row is read without one, so a plan read once (not kept in a shape cache: the `driver`
/// module's calls, `BENCH_SHAPE_CACHE=0`) costs what it did before templates.
pub(crate) struct Fields {
    list: Vec<(String, DbField)>,
    /// Whether a row has been read with these fields.
    read: AtomicBool,
    template: OnceLock<RecordTemplate>,
}

impl Fields {
    pub(crate) fn new(list: Vec<(String, DbField)>) -> Self {
        Self {
            list,
            read: AtomicBool::new(false),
            template: OnceLock::new(),
        }
    }

    /// The template of the fields' names (a name selected twice is read from its first column).
    fn template(&self) -> &RecordTemplate {
        self.template.get_or_init(|| {
            RecordTemplate::new(
                self.list
                    .iter()
                    .enumerate()
                    .map(|(column, (logical, _))| (column, logical.as_str())),
                0,
            )
        })
    }

    /// Reads a row whose column `i` is field `i`.
    pub(crate) fn decode(&self, row: &Row) -> Result<DbRecord> {
        if self.template.get().is_none() && !self.read.swap(true, Ordering::Relaxed) {
            let mut record = DbRecord::with_capacity(self.list.len());
            for (column, (logical, field)) in self.list.iter().enumerate() {
                record.insert(logical.clone(), decode(row, column, field)?);
            }
            return Ok(record);
        }
        self.template().fill(|column| match self.list.get(column) {
            Some((_, field)) => decode(row, column, field).map(Some),
            None => Ok(None),
        })
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The template follows from the list.
        self.list.fmt(f)
    }
}

/// The decoding of a native join: column 0 is the base id, columns `1..=base.len()` the base
/// selection, then each join's fields in order (the layout `generic::find_many_joined`
/// writes). The grouping is core's `joined_rows`, by column position instead of by alias.
#[derive(Debug)]
pub(crate) struct Joined {
    /// The base record's `id` field (read from column 0).
    pub(crate) id: DbField,
    /// The internal base selection; the flag says whether the field is in the output.
    pub(crate) base: Vec<(String, DbField, bool)>,
    /// The joined models.
    pub(crate) joins: Vec<JoinedModel>,
}

/// One joined model of a [`Joined`] read.
#[derive(Debug)]
pub(crate) struct JoinedModel {
    /// The key of the joined value in the base record (the joined model's logical name).
    pub(crate) model: String,
    /// One-to-one (a record or NULL) rather than one-to-many (an array).
    pub(crate) one: bool,
    /// The most joined records kept per base record.
    pub(crate) limit: usize,
    /// The joined table's fields.
    pub(crate) fields: Vec<(String, DbField)>,
}

impl Joined {
    /// Groups joined rows into records. Rows of one base record are adjacent: the statement
    /// orders by the base sort, then the base id.
    pub(crate) fn records(&self, rows: &[Row]) -> Result<Vec<DbRecord>> {
        let mut records = Vec::<DbRecord>::new();
        let mut last: Option<DbValue> = None;
        for row in rows {
            let base_id = decode(row, 0, &self.id)?;
            if !matches!(base_id, DbValue::String(_) | DbValue::Number(_)) {
                return Err(adapter("joined query base row is missing an id").into());
            }
            let same = last.as_ref() == Some(&base_id) && !records.is_empty();
            if !same {
                let mut record = DbRecord::with_capacity(self.base.len() + self.joins.len());
                for (index, (logical, field, output)) in self.base.iter().enumerate() {
                    if *output {
                        record.insert(logical.clone(), decode(row, index + 1, field)?);
                    }
                }
                for join in &self.joins {
                    let empty = if join.one {
                        DbValue::Null
                    } else {
                        DbValue::RecordArray(Vec::new())
                    };
                    record.insert(join.model.clone(), empty);
                }
                records.push(record);
                last = Some(base_id);
            }
            let Some(record) = records.last_mut() else {
                continue;
            };
            let mut column = 1 + self.base.len();
            for join in &self.joins {
                let first = column;
                column += join.fields.len();
                let mut joined = DbRecord::with_capacity(join.fields.len());
                for (offset, (logical, field)) in join.fields.iter().enumerate() {
                    joined.insert(logical.clone(), decode(row, first + offset, field)?);
                }
                if joined.values().all(|value| *value == DbValue::Null) {
                    continue;
                }
                if join.one {
                    record.insert(join.model.clone(), DbValue::Record(joined));
                } else if let Some(DbValue::RecordArray(values)) = record.get_mut(&join.model) {
                    if values.len() < join.limit && !contains_record(values, &joined) {
                        values.push(joined);
                    }
                }
            }
        }
        Ok(records)
    }
}

/// Core's `contains_record`: the same id, or (without ids) the same record.
fn contains_record(records: &[DbRecord], candidate: &DbRecord) -> bool {
    let key = |record: &DbRecord| match record.get("id") {
        Some(DbValue::String(value)) => Some(value.clone()),
        Some(DbValue::Number(value)) => Some(value.to_string()),
        _ => None,
    };
    let candidate_id = key(candidate);
    records.iter().any(|record| match &candidate_id {
        Some(id) => key(record).as_ref() == Some(id),
        None => record == candidate,
    })
}

/// How a where-clause parameter meets its column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// Compared with the column (`=`, `<`, …), possibly inside `LOWER(…)`.
    Compared,
    /// One element of an `IN` / `NOT IN` list, possibly inside `LOWER(…)`.
    Element,
    /// A `LIKE` / `ILIKE` pattern built from the value.
    Pattern,
}

/// Every parameter a where-clause binds, in the order core's planner binds them (AND clauses,
/// then OR clauses; a NULL binds none, an IN list one per element, a pattern the escaped
/// value with its `%`): the one place that mirrors the planner, used for the values of every
/// call and for the columns of a plan.
pub(crate) fn where_params(
    clauses: &[Where],
    mut visit: impl FnMut(&Where, Slot, DbValue),
) -> Result<()> {
    let ands = clauses.iter().filter(|c| c.connector == Connector::And);
    let ors = clauses.iter().filter(|c| c.connector == Connector::Or);
    for clause in ands.chain(ors) {
        if clause.value == DbValue::Null {
            continue;
        }
        match clause.operator {
            WhereOperator::Eq
            | WhereOperator::Ne
            | WhereOperator::Lt
            | WhereOperator::Lte
            | WhereOperator::Gt
            | WhereOperator::Gte => visit(clause, Slot::Compared, clause.value.clone()),
            WhereOperator::In | WhereOperator::NotIn => match &clause.value {
                DbValue::StringArray(values) => {
                    for value in values {
                        visit(clause, Slot::Element, DbValue::String(value.clone()));
                    }
                }
                DbValue::NumberArray(values) => {
                    for value in values {
                        visit(clause, Slot::Element, DbValue::Number(*value));
                    }
                }
                _ => return Err(adapter("IN and NOT IN require array values").into()),
            },
            WhereOperator::Contains | WhereOperator::StartsWith | WhereOperator::EndsWith => {
                let DbValue::String(value) = &clause.value else {
                    return Err(adapter("string pattern operators require string values").into());
                };
                let mut pattern = String::with_capacity(value.len() + 2);
                if clause.operator != WhereOperator::StartsWith {
                    pattern.push('%');
                }
                for character in value.chars() {
                    if matches!(character, '%' | '_' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(character);
                }
                if clause.operator != WhereOperator::EndsWith {
                    pattern.push('%');
                }
                visit(clause, Slot::Pattern, DbValue::String(pattern));
            }
        }
    }
    Ok(())
}

/// The parameter values of a where-clause (see [`where_params`]).
pub(crate) fn where_values(clauses: &[Where], out: &mut Vec<DbValue>) -> Result<()> {
    where_params(clauses, |_, _, value| out.push(value))
}

/// The values of assigned or inserted data, in data order.
pub(crate) fn data_values(data: &DbRecord, out: &mut Vec<DbValue>) {
    out.extend(data.values().cloned());
}

/// A query shape, encoded as text: every string is length-prefixed, so two different shapes
/// never share a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Key(String);

impl Key {
    /// The shape of operation `operation` (one letter per `DbAdapter` method) on `model`.
    pub(crate) fn new(operation: char, model: &str) -> Self {
        let mut key = Self(String::with_capacity(256 + model.len()));
        key.0.push(operation);
        key.text(model);
        key
    }

    fn text(&mut self, text: &str) {
        self.number(text.len());
        self.0.push(':');
        self.0.push_str(text);
    }

    /// A number, written so that the key stays injective: one `char` for any number below
    /// U+D800 (every length and count in practice: one push instead of one per digit), else
    /// a marker no such `char` can be, the decimal digits and `;`.
    fn number(&mut self, number: usize) {
        if let Some(short) = u32::try_from(number)
            .ok()
            .filter(|short| *short < 0xD800)
            .and_then(char::from_u32)
        {
            self.0.push(short);
            return;
        }
        self.0.push('\u{FFFF}');
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = number;
        loop {
            at -= 1;
            // `rest % 10` is below 10.
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        for digit in &digits[at..] {
            self.0.push(char::from(*digit));
        }
        self.0.push(';');
    }

    /// The where-clause: per clause its field, operator, connector, mode and value class.
    pub(crate) fn clauses(mut self, clauses: &[Where]) -> Self {
        self.0.push('W');
        self.number(clauses.len());
        for clause in clauses {
            self.text(&clause.field);
            self.0.push(match clause.operator {
                WhereOperator::Eq => '=',
                WhereOperator::Ne => '!',
                WhereOperator::Lt => '<',
                WhereOperator::Lte => 'l',
                WhereOperator::Gt => '>',
                WhereOperator::Gte => 'g',
                WhereOperator::In => 'i',
                WhereOperator::NotIn => 'n',
                WhereOperator::Contains => 'c',
                WhereOperator::StartsWith => 's',
                WhereOperator::EndsWith => 'e',
            });
            self.0.push(match clause.connector {
                Connector::And => '&',
                Connector::Or => '|',
            });
            self.0.push(match clause.mode {
                WhereMode::Sensitive => 'S',
                WhereMode::Insensitive => 'I',
            });
            self.value_class(&clause.value);
        }
        self
    }

    /// What of a value changes the SQL: NULL-ness, its kind, an array's length.
    fn value_class(&mut self, value: &DbValue) {
        match value {
            DbValue::Null => self.0.push('0'),
            DbValue::String(_) => self.0.push('s'),
            DbValue::Number(_) => self.0.push('n'),
            DbValue::Boolean(_) => self.0.push('b'),
            DbValue::Timestamp(_) => self.0.push('t'),
            DbValue::Json(_) => self.0.push('j'),
            DbValue::StringArray(values) => {
                self.0.push('S');
                self.number(values.len());
            }
            DbValue::NumberArray(values) => {
                self.0.push('N');
                self.number(values.len());
            }
            DbValue::Record(_) => self.0.push('r'),
            DbValue::RecordArray(_) => self.0.push('R'),
        }
    }

    /// The data keys, in order (their values are parameters whatever they are).
    pub(crate) fn data(mut self, data: &DbRecord) -> Self {
        self.0.push('D');
        self.number(data.len());
        for field in data.keys() {
            self.text(field);
        }
        self
    }

    /// The select list.
    pub(crate) fn select(mut self, select: &[String]) -> Self {
        self.0.push('F');
        self.number(select.len());
        for field in select {
            self.text(field);
        }
        self
    }

    /// The sort, limit and offset (core writes limit and offset into the text).
    pub(crate) fn window(
        mut self,
        sort: Option<&Sort>,
        limit: Option<usize>,
        offset: Option<usize>,
    ) -> Self {
        match sort {
            Some(sort) => {
                self.0.push(match sort.direction {
                    SortDirection::Asc => 'A',
                    SortDirection::Desc => 'Z',
                });
                self.text(&sort.field);
            }
            None => self.0.push('-'),
        }
        for bound in [limit, offset] {
            match bound {
                Some(value) => {
                    self.0.push('L');
                    self.number(value);
                }
                None => self.0.push('-'),
            }
        }
        self
    }

    /// The join options, in order.
    pub(crate) fn joins<'a>(
        mut self,
        joins: impl ExactSizeIterator<Item = (&'a String, &'a JoinOption)>,
    ) -> Self {
        self.0.push('J');
        self.number(joins.len());
        for (model, option) in joins {
            self.text(model);
            self.0.push(if option.enabled { 'y' } else { 'n' });
            match option.limit {
                Some(limit) => {
                    self.0.push('L');
                    self.number(limit);
                }
                None => self.0.push('-'),
            }
        }
        self
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// The registry behind the `driver` module: one set of plans per schema content, not per
    /// address; a changed schema is another; the bound drops the least recently used. (One
    /// test: the registry is the process's.)
    #[test]
    fn driver_plans_are_kept_per_schema_content() {
        use rustauth_core::db::{auth_schema, AuthSchemaOptions, TableOptions};
        let options = |column: &str| AuthSchemaOptions {
            user: TableOptions::default()
                .with_name("registry_test_user")
                .with_field_name("email", column),
            ..AuthSchemaOptions::default()
        };
        let schema = auth_schema(options("email"));
        let shapes = |schema: &DbSchema| Shapes::of_schema(schema).expect("not poisoned");

        let first = shapes(&schema);
        let copy = schema.clone();
        assert!(
            Arc::ptr_eq(&first, &shapes(&copy)),
            "equal content, another address"
        );

        let mut changed = schema.clone();
        changed
            .insert_plugin_field("user", "nickname".to_owned(), {
                DbField::new("nickname", DbFieldType::String)
            })
            .expect("a new field");
        assert!(!Arc::ptr_eq(&first, &shapes(&changed)), "a field more");
        assert!(
            Arc::ptr_eq(&first, &shapes(&schema)),
            "the first is still kept"
        );

        for index in 0..KNOWN_SCHEMAS {
            shapes(&auth_schema(options(&format!("email_{index}"))));
        }
        let known = KNOWN.read().expect("not poisoned");
        assert_eq!(known.len(), KNOWN_SCHEMAS);
        assert!(!known.iter().any(|entry| Arc::ptr_eq(&entry.shapes, &first)));
    }

    /// A field selected twice is one entry of the record, at its first place, read from its
    /// first column; the others keep their order.
    #[test]
    fn fields_read_each_distinct_name_once_in_selection_order() {
        let field = |name: &str| (name.to_owned(), DbField::new(name, DbFieldType::String));
        let fields = Fields::new(vec![
            field("name"),
            field("id"),
            field("name"),
            field("email"),
        ]);
        let template = fields.template();
        assert_eq!(template.keys(), ["name", "id", "email"]);
        assert_eq!(template.columns(), [0, 1, 3]);
    }

    #[test]
    fn keys_of_different_shapes_differ() {
        let select = |fields: &[&str]| {
            let fields = fields
                .iter()
                .map(|field| (*field).to_owned())
                .collect::<Vec<_>>();
            Key::new('f', "user").select(&fields).0
        };
        assert_ne!(select(&["ab", "c"]), select(&["a", "bc"]));
        assert_ne!(select(&["a"]), select(&["a", ""]));
        assert_ne!(select(&[]), select(&[""]));
        // Numbers on both sides of the one-char bound, and the largest.
        let numbers = [0, 1, 9, 10, 0xD7FF, 0xD800, 0xFFFF, 0x10_FFFF, usize::MAX];
        let keys = numbers
            .iter()
            .map(|limit| Key::new('f', "user").window(None, Some(*limit), None).0)
            .collect::<Vec<_>>();
        for (i, a) in keys.iter().enumerate() {
            for b in &keys[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
