//! The live catalog of one connection: the real column types of the tables the adapter uses.
//!
//! Databases reach this adapter from Prisma, Drizzle, Better Auth or someone's hands, so what
//! `migrations/` would have created is only a guess. The catalog is read in one query per
//! connection (for every table asked for at once, pipelined with the preparation of the typed
//! statements), kept until a migration or a stale statement clears it, and consulted:
//! - by the typed router, which uses a generated statement only where the live columns are
//!   exactly those of `migrations/` (see `typed/statements.rs`);
//! - in unprepared statement mode, where nothing tells the client the types of a statement's
//!   parameters, to declare each parameter with the type of the column it meets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use postgres_types::{Kind, Type};
use tokio_postgres::Client;

use crate::error::Result;

/// The columns of one table: name → type (domains resolved to their base type, at any depth).
#[derive(Debug, Default)]
pub(crate) struct TableColumns {
    columns: HashMap<String, Type>,
}

impl TableColumns {
    /// The type of `column`, if the table has it.
    pub(crate) fn get(&self, column: &str) -> Option<&Type> {
        self.columns.get(column)
    }
}

/// What one connection knows of the tables, keyed by the table name as the schema spells it
/// (`users`, `auth.users`): `None` for a table that does not exist.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    tables: Mutex<HashMap<String, Option<Arc<TableColumns>>>>,
    /// Serialises loading, so concurrent first calls read the catalog once.
    loading: tokio::sync::Mutex<()>,
}

/// SQL for the base type of a type (`$oid`: an expression of type `oid`): a domain resolved
/// through every level (a domain over a domain), any other type itself, `NULL` for `NULL`. A
/// subquery to join `LATERAL … AS alias ON true`, giving `alias.oid`; the one place the crate
/// resolves domains (the live catalog and migration introspection both use it).
macro_rules! base_type_sql {
    ($oid:literal) => {
        concat!(
            "(WITH RECURSIVE base_type(oid, depth) AS (SELECT ",
            $oid,
            ", 0 UNION ALL SELECT domain_type.typbasetype, base_type.depth + 1 FROM base_type \
             JOIN pg_catalog.pg_type domain_type ON domain_type.oid = base_type.oid \
             WHERE domain_type.typtype = 'd' AND base_type.depth < 64) \
             SELECT base_type.oid FROM base_type ORDER BY base_type.depth DESC LIMIT 1)"
        )
    };
}
pub(crate) use base_type_sql;

/// One query for the columns of many tables. Names are SQL identifiers as the statements
/// spell them (quoted, optionally schema-qualified) and resolve through `search_path` exactly
/// as the statements' do (`to_regclass`; a name that resolves to nothing is simply absent,
/// never an error in the server's log). A column's type and an array's element type are
/// resolved to their base type ([`base_type_sql`]); `typtype` tells an enum (`e`).
const COLUMNS_SQL: &str = concat!(
    "SELECT r.name, a.attname::text, ty.oid, ty.typname::text, tn.nspname::text, \
     ty.typtype::text, COALESCE(el.oid, 0::oid), COALESCE(el.typname::text, ''), \
     COALESCE(en.nspname::text, '') \
     FROM unnest($1::text[]) AS r(name) \
     JOIN pg_catalog.pg_attribute a ON a.attrelid = pg_catalog.to_regclass(r.name) \
     JOIN LATERAL ",
    base_type_sql!("a.atttypid"),
    " AS base ON true \
     JOIN pg_catalog.pg_type ty ON ty.oid = base.oid \
     JOIN pg_catalog.pg_namespace tn ON tn.oid = ty.typnamespace \
     LEFT JOIN LATERAL ",
    base_type_sql!("CASE WHEN ty.typcategory = 'A' THEN ty.typelem END"),
    " AS element ON true \
     LEFT JOIN pg_catalog.pg_type el ON el.oid = element.oid \
     LEFT JOIN pg_catalog.pg_namespace en ON en.oid = el.typnamespace \
     WHERE a.attnum > 0 AND NOT a.attisdropped"
);

impl Catalog {
    /// The columns of `table` as last read, without I/O; `None` when not read yet or absent.
    pub(crate) fn known(&self, table: &str) -> Option<Arc<TableColumns>> {
        self.lock().get(table).cloned().flatten()
    }

    /// Whether `table` has been read (present or not).
    pub(crate) fn has(&self, table: &str) -> bool {
        self.lock().contains_key(table)
    }

    /// Whether every table of `tables` has been read (present or not).
    fn has_all(&self, tables: &[&str]) -> bool {
        let known = self.lock();
        tables.iter().all(|table| known.contains_key(*table))
    }

    /// Reads the tables among `tables` not read yet, in one query. Only this (once per
    /// connection and table) quotes names; lookups use the names as the schema spells them.
    pub(crate) async fn load(&self, client: &Client, tables: &[&str]) -> Result<()> {
        if self.has_all(tables) {
            return Ok(());
        }
        let _loading = self.loading.lock().await;
        let missing = {
            let known = self.lock();
            tables
                .iter()
                .filter(|table| !known.contains_key(**table))
                .map(|table| ((*table).to_owned(), quoted(table)))
                .collect::<Vec<_>>()
        };
        if missing.is_empty() {
            return Ok(());
        }
        // Names the planner would refuse are recorded as absent without asking the server.
        let keys = missing
            .iter()
            .filter_map(|(_, key)| key.clone())
            .collect::<Vec<_>>();
        // `query_typed`: an unnamed statement, so this also works behind a pooler that keeps
        // no prepared statements; one round trip.
        let rows = client
            .query_typed(COLUMNS_SQL, &[(&keys, Type::TEXT_ARRAY)])
            .await?;
        let mut read: HashMap<String, TableColumns> = HashMap::new();
        for row in rows {
            let table: String = row.try_get(0)?;
            let column: String = row.try_get(1)?;
            let enumeration = row.try_get::<_, String>(5)? == "e";
            let ty = column_type(
                (row.try_get(2)?, row.try_get(3)?, row.try_get(4)?),
                enumeration,
                (row.try_get(6)?, row.try_get(7)?, row.try_get(8)?),
            );
            read.entry(table).or_default().columns.insert(column, ty);
        }
        let mut known = self.lock();
        for (table, key) in missing {
            let columns = key.and_then(|key| read.remove(&key)).map(Arc::new);
            known.insert(table, columns);
        }
        Ok(())
    }

    /// Forgets everything (after a migration, or when a statement met another table version).
    pub(crate) fn clear(&self) {
        self.lock().clear();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Option<Arc<TableColumns>>>> {
        // Every mutation is a single map call, so a poisoned lock holds consistent data.
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A `Type` for a catalog type: the built-in one for its OID, else one carrying its name
/// (how tokio-postgres' own conversions recognise e.g. `citext`), arrays with their element,
/// enums as enums (their labels are not needed: a value is sent as its label's text).
fn column_type(
    (oid, name, schema): (u32, String, String),
    enumeration: bool,
    (element_oid, element_name, element_schema): (u32, String, String),
) -> Type {
    if let Some(ty) = Type::from_oid(oid) {
        return ty;
    }
    let kind = if enumeration {
        Kind::Enum(Vec::new())
    } else if element_oid == 0 {
        Kind::Simple
    } else {
        let element = Type::from_oid(element_oid)
            .unwrap_or_else(|| Type::new(element_name, element_oid, Kind::Simple, element_schema));
        Kind::Array(element)
    };
    Type::new(name, oid, kind, schema)
}

/// The SQL identifier of a table name as core's planner spells it (`a.b` → `"a"."b"`), or
/// `None` for a name the planner would refuse.
fn quoted(name: &str) -> Option<String> {
    rustauth_core::db::sql::SqlDialect::Postgres
        .quote_identifier(name)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extension_types_keep_their_name_and_arrays_their_element() {
        let citext = column_type(
            (16_385, "citext".to_owned(), "public".to_owned()),
            false,
            (0, String::new(), String::new()),
        );
        assert_eq!(citext.name(), "citext");
        assert_eq!(citext.oid(), 16_385);
        let array = column_type(
            (16_390, "_citext".to_owned(), "public".to_owned()),
            false,
            (16_385, "citext".to_owned(), "public".to_owned()),
        );
        assert!(matches!(array.kind(), Kind::Array(element) if element.name() == "citext"));
        let int4 = column_type(
            (Type::INT4.oid(), "int4".to_owned(), "pg_catalog".to_owned()),
            false,
            (0, String::new(), String::new()),
        );
        assert_eq!(int4, Type::INT4);
    }

    #[test]
    fn table_keys_are_quoted_as_the_planner_quotes_them() {
        assert_eq!(quoted("users").as_deref(), Some("\"users\""));
        assert_eq!(quoted("auth.users").as_deref(), Some("\"auth\".\"users\""));
    }
}
