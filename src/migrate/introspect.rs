//! Introspection: the catalog facts of every target table (three set-based `pg_catalog`
//! queries, pipelined into one round trip) as core's [`SqlSchemaSnapshot`].

use std::collections::{HashMap, HashSet};

use rustauth_core::db::{
    DbField, DbSchema, ForeignKey, IdGeneration, OnDelete, SqlColumnSnapshot, SqlDialect,
    SqlSchemaSnapshot,
};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Row};

use crate::catalog::base_type_sql;
use crate::error::Error;

/// The snapshot of `schema`'s target tables as the database holds them.
pub(super) async fn snapshot(
    client: &Client,
    schema: &DbSchema,
) -> Result<SqlSchemaSnapshot, Error> {
    let targets = target_tables(schema)?;
    let found = Introspection::load(client, &targets).await?;
    Ok(found.snapshot(schema))
}

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1`); longer names are truncated.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The existing target relations: one row per target table that exists.
///
/// A name resolves exactly as the adapter's statements resolve it (they quote every
/// identifier): `to_regclass` of the quoted name, so an unqualified one goes through the whole
/// `search_path` (temporary schema first), not only `current_schema()`. Only a relation the
/// statements could read from counts; an index or sequence of that name does not.
///
/// Parameters: `$1` snapshot keys (the physical names as written in the schema), `$2` schema
/// qualifiers (NULL for unqualified names), `$3` bare table names, all of the same length.
const TARGET_CTE: &str = "WITH target AS (\
     SELECT t.key, t.ord, c.oid AS rel, t.qual IS NULL AS unqualified \
     FROM unnest($1::text[], $2::text[], $3::text[]) WITH ORDINALITY AS t(key, qual, name, ord) \
     JOIN pg_catalog.pg_class c ON c.oid = pg_catalog.to_regclass(CASE WHEN t.qual IS NULL \
     THEN pg_catalog.format('%I', t.name) ELSE pg_catalog.format('%I.%I', t.qual, t.name) END) \
     AND c.relkind IN ('r', 'p', 'v', 'm', 'f'))";

/// Columns of the target tables (a table without columns yields one row of NULLs).
///
/// Columns: key, column name, type, identity, default expression.
const COLUMNS_QUERY: &str = concat!(
    " \
     SELECT t.key, a.attname::text, \
     CASE WHEN ty.typtype <> 'd' AND ty.typelem <> 0 AND ty.typlen = -1 THEN ty.typname::text \
     ELSE pg_catalog.format_type(ty.oid, NULL) END, \
     a.attidentity <> '', pg_catalog.pg_get_expr(d.adbin, d.adrelid) \
     FROM target t \
     LEFT JOIN pg_catalog.pg_attribute a ON a.attrelid = t.rel AND a.attnum > 0 AND NOT a.attisdropped \
     LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum \
     LEFT JOIN LATERAL ",
    base_type_sql!("a.atttypid"),
    " AS base ON true \
     LEFT JOIN pg_catalog.pg_type ty ON ty.oid = base.oid \
     ORDER BY t.ord, a.attnum"
);

/// Indexes of the target tables.
///
/// Columns: key, index name, is primary key, is a unique non-partial index without
/// expressions, key column names in index order.
const INDEXES_QUERY: &str = " \
     SELECT t.key, ic.relname::text, i.indisprimary, \
     i.indisunique AND i.indpred IS NULL AND i.indexprs IS NULL, \
     ARRAY(SELECT a.attname::text \
     FROM pg_catalog.unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord) \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum \
     WHERE k.ord <= i.indnkeyatts ORDER BY k.ord) \
     FROM target t \
     JOIN pg_catalog.pg_index i ON i.indrelid = t.rel \
     JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid \
     ORDER BY t.ord, ic.relname";

/// Foreign-key columns of the target tables, ordered so the first row per column is the one
/// reported.
///
/// Columns: key, column, referenced schema, referenced table, referenced column, delete
/// action, whether the referenced table may be reported unqualified (the source table's name
/// is, and the referenced table's bare name resolves to that very table on `search_path`).
const FOREIGN_KEYS_QUERY: &str = " \
     SELECT t.key, sa.attname::text, rn.nspname::text, rc.relname::text, ra.attname::text, \
     con.confdeltype::text, t.unqualified \
     AND pg_catalog.to_regclass(pg_catalog.format('%I', rc.relname)) IS NOT DISTINCT FROM rc.oid \
     FROM target t \
     JOIN pg_catalog.pg_constraint con ON con.conrelid = t.rel AND con.contype = 'f' \
     CROSS JOIN LATERAL unnest(con.conkey, con.confkey) AS k(src, ref) \
     JOIN pg_catalog.pg_attribute sa ON sa.attrelid = con.conrelid AND sa.attnum = k.src \
     JOIN pg_catalog.pg_class rc ON rc.oid = con.confrelid \
     JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace \
     JOIN pg_catalog.pg_attribute ra ON ra.attrelid = con.confrelid AND ra.attnum = k.ref \
     ORDER BY t.ord, sa.attnum, con.conname";

/// A target table: the snapshot key (the physical name as written in the schema) and the parts
/// PostgreSQL stores (each truncated to 63 bytes, as PostgreSQL does).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TargetTable<'a> {
    /// The physical name as written in the schema (`users` or `internal.users`).
    key: &'a str,
    /// The schema qualifier, if any.
    schema: Option<&'a str>,
    /// The bare table name.
    name: &'a str,
}

/// Splits a physical table name into `schema.table` parts.
fn parse_table_name(value: &str) -> Result<TargetTable<'_>, Error> {
    let mut parts = value.split('.');
    let target = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, None) if !name.is_empty() => Some(TargetTable {
            key: value,
            schema: None,
            name: stored_identifier(name),
        }),
        (Some(schema), Some(name), None) if !schema.is_empty() && !name.is_empty() => {
            Some(TargetTable {
                key: value,
                schema: Some(stored_identifier(schema)),
                name: stored_identifier(name),
            })
        }
        _ => None,
    };
    target.ok_or_else(|| Error::Schema(format!("invalid PostgreSQL table name `{value}`")))
}

/// The distinct physical tables of `schema`, in schema order.
fn target_tables(schema: &DbSchema) -> Result<Vec<TargetTable<'_>>, Error> {
    let mut seen = HashSet::new();
    let mut targets = Vec::new();
    for (_, table) in schema.tables() {
        let target = parse_table_name(&table.name)?;
        if seen.insert(target.key) {
            targets.push(target);
        }
    }
    Ok(targets)
}

/// The name PostgreSQL stores for an identifier: its first 63 bytes (cut on a character
/// boundary, as PostgreSQL does for multibyte encodings).
fn stored_identifier(identifier: &str) -> &str {
    let mut end = identifier.len().min(MAX_IDENTIFIER_BYTES);
    while !identifier.is_char_boundary(end) {
        end -= 1;
    }
    identifier.get(..end).unwrap_or(identifier)
}

/// The name PostgreSQL stores for a possibly schema-qualified table name.
fn stored_table_name(table: &str) -> String {
    table
        .split('.')
        .map(stored_identifier)
        .collect::<Vec<_>>()
        .join(".")
}

/// One column as read from the catalog.
#[derive(Debug)]
struct ColumnRow {
    /// Type in the `information_schema` vocabulary.
    data_type: String,
    /// Whether the column is an identity column.
    identity: bool,
    /// The column default, as PostgreSQL prints it.
    default: Option<String>,
}

/// One index as read from the catalog.
#[derive(Debug)]
struct IndexRow {
    /// Index name.
    name: String,
    /// Whether it backs the primary key.
    primary: bool,
    /// Whether it enforces uniqueness of its plain key columns (unique, no predicate, no
    /// expressions).
    unique: bool,
    /// Plain key column names, in index order.
    columns: Vec<String>,
}

/// Introspection facts about one existing target table.
#[derive(Debug, Default)]
struct TableFacts {
    /// Columns by name.
    columns: HashMap<String, ColumnRow>,
    /// Indexes, by name order.
    indexes: Vec<IndexRow>,
    /// The first foreign key of each column, by column name.
    foreign_keys: HashMap<String, ForeignKey>,
}

impl TableFacts {
    /// Whether `column` is a key column of the primary key.
    fn is_primary(&self, column: &str) -> bool {
        self.indexes
            .iter()
            .any(|index| index.primary && index.columns.iter().any(|name| name == column))
    }

    /// Whether `column` is a key column of the primary key or of a unique index.
    fn is_unique(&self, column: &str) -> bool {
        self.indexes.iter().any(|index| {
            (index.primary || index.unique) && index.columns.iter().any(|name| name == column)
        })
    }
}

/// The catalog facts about the existing target tables, keyed by snapshot key.
#[derive(Debug, Default)]
struct Introspection {
    /// Existing tables.
    tables: HashMap<String, TableFacts>,
}

impl Introspection {
    /// Reads the catalog for `targets` with three pipelined queries.
    async fn load(client: &Client, targets: &[TargetTable<'_>]) -> Result<Self, Error> {
        if targets.is_empty() {
            return Ok(Self::default());
        }
        let keys = targets.iter().map(|target| target.key).collect::<Vec<_>>();
        let schemas = targets
            .iter()
            .map(|target| target.schema)
            .collect::<Vec<_>>();
        let names = targets.iter().map(|target| target.name).collect::<Vec<_>>();
        let params: [(&(dyn ToSql + Sync), Type); 3] = [
            (&keys, Type::TEXT_ARRAY),
            (&schemas, Type::TEXT_ARRAY),
            (&names, Type::TEXT_ARRAY),
        ];
        let columns_sql = format!("{TARGET_CTE}{COLUMNS_QUERY}");
        let indexes_sql = format!("{TARGET_CTE}{INDEXES_QUERY}");
        let foreign_keys_sql = format!("{TARGET_CTE}{FOREIGN_KEYS_QUERY}");
        // Issued together, the three queries share one network round trip.
        let (column_rows, index_rows, foreign_key_rows) = futures_util::future::try_join3(
            client.query_typed(&columns_sql, &params),
            client.query_typed(&indexes_sql, &params),
            client.query_typed(&foreign_keys_sql, &params),
        )
        .await
        .map_err(Error::from)?;

        let mut catalog = Self::default();
        for row in &column_rows {
            catalog.add_column_row(row)?;
        }
        for row in &index_rows {
            catalog.add_index_row(row)?;
        }
        for row in &foreign_key_rows {
            catalog.add_foreign_key_row(row)?;
        }
        Ok(catalog)
    }

    /// Records one row of [`COLUMNS_QUERY`].
    fn add_column_row(&mut self, row: &Row) -> Result<(), Error> {
        let key = row.try_get::<_, String>(0).map_err(Error::from)?;
        let table = self.tables.entry(key).or_default();
        // A table without columns yields one row whose column is NULL.
        let Some(name) = row.try_get::<_, Option<String>>(1).map_err(Error::from)? else {
            return Ok(());
        };
        let column = ColumnRow {
            data_type: row.try_get(2).map_err(Error::from)?,
            identity: row.try_get(3).map_err(Error::from)?,
            default: row.try_get(4).map_err(Error::from)?,
        };
        table.columns.insert(name, column);
        Ok(())
    }

    /// Records one row of [`INDEXES_QUERY`].
    fn add_index_row(&mut self, row: &Row) -> Result<(), Error> {
        let key = row.try_get::<_, String>(0).map_err(Error::from)?;
        let index = IndexRow {
            name: row.try_get(1).map_err(Error::from)?,
            primary: row.try_get(2).map_err(Error::from)?,
            unique: row.try_get(3).map_err(Error::from)?,
            columns: row.try_get(4).map_err(Error::from)?,
        };
        self.tables.entry(key).or_default().indexes.push(index);
        Ok(())
    }

    /// Records one row of [`FOREIGN_KEYS_QUERY`] unless its column already has a foreign key.
    fn add_foreign_key_row(&mut self, row: &Row) -> Result<(), Error> {
        let key = row.try_get::<_, String>(0).map_err(Error::from)?;
        let column = row.try_get::<_, String>(1).map_err(Error::from)?;
        let referenced_schema = row.try_get::<_, String>(2).map_err(Error::from)?;
        let referenced_table = row.try_get::<_, String>(3).map_err(Error::from)?;
        let referenced_column = row.try_get::<_, String>(4).map_err(Error::from)?;
        let action = row.try_get::<_, String>(5).map_err(Error::from)?;
        let unqualified = row.try_get::<_, bool>(6).map_err(Error::from)?;
        let table = if unqualified {
            referenced_table
        } else {
            format!("{referenced_schema}.{referenced_table}")
        };
        self.tables
            .entry(key)
            .or_default()
            .foreign_keys
            .entry(column)
            .or_insert_with(|| ForeignKey::new(table, referenced_column, on_delete(&action)));
        Ok(())
    }

    /// Builds core's snapshot for the fields of `schema`.
    ///
    /// Names longer than 63 bytes are looked up under PostgreSQL's truncation of them and
    /// reported under the schema's full name, so that they are found again (Q7).
    fn snapshot(&self, schema: &DbSchema) -> SqlSchemaSnapshot {
        let mut snapshot = SqlSchemaSnapshot::default();
        for (_, table) in schema.tables() {
            let Some(facts) = self.tables.get(&table.name) else {
                continue;
            };
            let key = table.name.as_str();
            snapshot = snapshot.with_table(key);
            for index in &facts.indexes {
                snapshot = snapshot.with_index(key, index.name.as_str());
            }
            for (logical_name, field) in &table.fields {
                let stored = stored_identifier(&field.name);
                if let Some(index_name) = truncated_index_name(facts, key, logical_name, field) {
                    snapshot = snapshot.with_index(key, index_name);
                }
                let Some(column) = facts.columns.get(stored) else {
                    continue;
                };
                let is_primary = facts.is_primary(stored);
                // Nullability and primary keys are deliberately not reported: 0.3.2 never
                // did, so hand-made tables that differ only there keep migrating (`docs/behaviour.md` §6).
                let mut snapshot_column = SqlColumnSnapshot::new(&field.name, &column.data_type)
                    .generated_id(generated_id(column, is_primary));
                if let Some(foreign_key) = facts.foreign_keys.get(stored) {
                    snapshot_column =
                        snapshot_column.references(reported_foreign_key(foreign_key, field));
                }
                snapshot = snapshot.with_column(key, snapshot_column);
                if facts.is_unique(stored) {
                    snapshot = snapshot.with_unique_column(key, field.name.as_str());
                }
            }
        }
        snapshot
    }
}

/// The full name of the field's planned index when it is longer than 63 bytes and its
/// truncation exists on the table over the same leading column (Q7).
fn truncated_index_name(
    facts: &TableFacts,
    table: &str,
    logical_name: &str,
    field: &DbField,
) -> Option<String> {
    let full_name = planned_index_name(table, logical_name, field)?;
    let stored = stored_identifier(&full_name);
    if stored.len() == full_name.len() {
        return None;
    }
    let column = stored_identifier(&field.name);
    facts
        .indexes
        .iter()
        .any(|index| index.name == stored && index.columns.first().is_some_and(|c| c == column))
        .then_some(full_name)
}

/// The foreign key reported for `field`: the catalog's, or the schema's own when the catalog's
/// is that one with names truncated by PostgreSQL.
fn reported_foreign_key(actual: &ForeignKey, field: &DbField) -> ForeignKey {
    match &field.foreign_key {
        Some(expected)
            if expected.on_delete == actual.on_delete
                && stored_table_name(&expected.table) == actual.table
                && stored_identifier(&expected.field) == actual.field =>
        {
            expected.clone()
        }
        _ => actual.clone(),
    }
}

/// The name core gives the standalone index of an indexed or unique field, as core computes
/// it; `None` for fields without one (or names core itself rejects).
fn planned_index_name(table: &str, logical_name: &str, field: &DbField) -> Option<String> {
    if !(field.index || field.unique) {
        return None;
    }
    let prefix = if field.unique { "uidx" } else { "idx" };
    SqlDialect::Postgres
        .sanitize_identifier(&format!("{prefix}_{table}_{logical_name}"))
        .ok()
}

/// Maps `pg_constraint.confdeltype` to core's delete action.
fn on_delete(action: &str) -> OnDelete {
    match action {
        "r" => OnDelete::Restrict,
        "c" => OnDelete::Cascade,
        "n" => OnDelete::SetNull,
        "d" => OnDelete::SetDefault,
        _ => OnDelete::NoAction,
    }
}

/// The id generation a column reports (see the module docs, "Generated ids").
fn generated_id(column: &ColumnRow, is_primary: bool) -> Option<IdGeneration> {
    let default = column.default.as_deref().map(str::trim);
    if column.identity || default.is_some_and(|default| default.starts_with("nextval(")) {
        return Some(IdGeneration::Serial);
    }
    if column.data_type == "uuid" && default.is_some_and(is_uuid_generator) {
        return Some(IdGeneration::Uuid);
    }
    is_primary.then_some(IdGeneration::Disabled)
}

/// Whether a default expression is a bare call of a UUID generator, optionally
/// schema-qualified (`gen_random_uuid()`, `pg_catalog.gen_random_uuid()`,
/// `extensions.uuid_generate_v4()`).
fn is_uuid_generator(default: &str) -> bool {
    let function = default
        .rsplit_once('.')
        .map_or(default, |(_, function)| function);
    matches!(function, "gen_random_uuid()" | "uuid_generate_v4()")
}
