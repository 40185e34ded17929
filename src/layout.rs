//! The core tables as `migrations/` declares them: one description per table, used by the
//! typed router (to decide, against the live catalog, whether a table is the one the
//! generated statements were written for), by the tests and by the benchmark.
//!
//! Hidden from the docs: not a stable API.

use postgres_types::Type;
use rustauth_core::db::{auth_schema, AuthSchemaOptions, DbSchema, RateLimitStorage, TableOptions};

/// One of the five core tables with the layout `migrations/` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CoreTable {
    /// `users`.
    User,
    /// `sessions`.
    Session,
    /// `accounts`.
    Account,
    /// `verifications`.
    Verification,
    /// `rate_limits`.
    RateLimit,
}

/// A column of a core table: its name and PostgreSQL type.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// The column (and logical field) name.
    pub name: &'static str,
    /// The type `migrations/` gives it.
    pub ty: Type,
}

const fn column(name: &'static str, ty: Type) -> Column {
    Column { name, ty }
}

static USER: [Column; 7] = [
    column("id", Type::TEXT),
    column("name", Type::TEXT),
    column("email", Type::TEXT),
    column("email_verified", Type::BOOL),
    column("image", Type::TEXT),
    column("created_at", Type::TIMESTAMPTZ),
    column("updated_at", Type::TIMESTAMPTZ),
];
static SESSION: [Column; 8] = [
    column("id", Type::TEXT),
    column("expires_at", Type::TIMESTAMPTZ),
    column("token", Type::TEXT),
    column("created_at", Type::TIMESTAMPTZ),
    column("updated_at", Type::TIMESTAMPTZ),
    column("ip_address", Type::TEXT),
    column("user_agent", Type::TEXT),
    column("user_id", Type::TEXT),
];
static ACCOUNT: [Column; 13] = [
    column("id", Type::TEXT),
    column("account_id", Type::TEXT),
    column("provider_id", Type::TEXT),
    column("user_id", Type::TEXT),
    column("access_token", Type::TEXT),
    column("refresh_token", Type::TEXT),
    column("id_token", Type::TEXT),
    column("access_token_expires_at", Type::TIMESTAMPTZ),
    column("refresh_token_expires_at", Type::TIMESTAMPTZ),
    column("scope", Type::TEXT),
    column("password", Type::TEXT),
    column("created_at", Type::TIMESTAMPTZ),
    column("updated_at", Type::TIMESTAMPTZ),
];
static VERIFICATION: [Column; 6] = [
    column("id", Type::TEXT),
    column("identifier", Type::TEXT),
    column("value", Type::TEXT),
    column("expires_at", Type::TIMESTAMPTZ),
    column("created_at", Type::TIMESTAMPTZ),
    column("updated_at", Type::TIMESTAMPTZ),
];
static RATE_LIMIT: [Column; 3] = [
    column("key", Type::TEXT),
    column("count", Type::INT8),
    column("last_request", Type::INT8),
];

/// The user fields rustauth-core 0.3.2 selects on its hot paths, in its order.
pub const USER_FIELDS: [&str; 7] = [
    "id",
    "name",
    "email",
    "email_verified",
    "image",
    "created_at",
    "updated_at",
];
/// The session fields rustauth-core 0.3.2 selects on its hot paths, in its order.
pub const SESSION_FIELDS: [&str; 8] = [
    "id",
    "user_id",
    "expires_at",
    "token",
    "ip_address",
    "user_agent",
    "created_at",
    "updated_at",
];
/// The account fields rustauth-core 0.3.2 selects on its hot paths, in its order.
pub const ACCOUNT_FIELDS: [&str; 13] = [
    "id",
    "provider_id",
    "account_id",
    "user_id",
    "access_token",
    "refresh_token",
    "id_token",
    "access_token_expires_at",
    "refresh_token_expires_at",
    "scope",
    "password",
    "created_at",
    "updated_at",
];
/// The verification fields rustauth-core 0.3.2 selects on its hot paths, in its order.
pub const VERIFICATION_FIELDS: [&str; 6] = [
    "id",
    "identifier",
    "value",
    "expires_at",
    "created_at",
    "updated_at",
];

impl CoreTable {
    /// Every core table.
    pub const ALL: [CoreTable; 5] = [
        Self::User,
        Self::Session,
        Self::Account,
        Self::Verification,
        Self::RateLimit,
    ];

    /// The logical model name (`auth_schema`'s key).
    pub fn logical(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Session => "session",
            Self::Account => "account",
            Self::Verification => "verification",
            Self::RateLimit => "rate_limit",
        }
    }

    /// The table of a logical model name, if it is a core one.
    pub fn from_logical(logical: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|table| table.logical() == logical)
    }

    /// The physical table name `migrations/` creates.
    pub fn table(self) -> &'static str {
        match self {
            Self::User => "users",
            Self::Session => "sessions",
            Self::Account => "accounts",
            Self::Verification => "verifications",
            Self::RateLimit => "rate_limits",
        }
    }

    /// The columns in `migrations/`' order (the order of the generated row types).
    pub fn columns(self) -> &'static [Column] {
        match self {
            Self::User => &USER,
            Self::Session => &SESSION,
            Self::Account => &ACCOUNT,
            Self::Verification => &VERIFICATION,
            Self::RateLimit => &RATE_LIMIT,
        }
    }

    /// The position of `name` among [`columns`](Self::columns).
    pub fn position(self, name: &str) -> Option<usize> {
        self.columns().iter().position(|column| column.name == name)
    }

    /// The fields rustauth-core selects when it reads this table on a hot path, in its order
    /// (empty for the rate-limit table, which core never reads through the adapter).
    pub fn core_selection(self) -> &'static [&'static str] {
        match self {
            Self::User => &USER_FIELDS,
            Self::Session => &SESSION_FIELDS,
            Self::Account => &ACCOUNT_FIELDS,
            Self::Verification => &VERIFICATION_FIELDS,
            Self::RateLimit => &[],
        }
    }
}

/// RustAuth's schema mapped onto Better Auth's own tables: singular table names (`"user"`,
/// `"session"`, `"account"`, `"verification"`, `"rateLimit"`) and camelCase columns
/// (`"emailVerified"`, `"createdAt"`, `"userId"`, …), with database rate limits. A database
/// migrated from Better Auth is used through this schema; the tests and the benchmark use it
/// for a layout this crate's migrations did not make.
pub fn better_auth_schema() -> DbSchema {
    let mut options = AuthSchemaOptions {
        rate_limit_storage: RateLimitStorage::Database,
        ..AuthSchemaOptions::default()
    };
    let defaults = auth_schema(options.clone());
    let renamed = |logical: &str, name: &str| TableOptions {
        name: Some(name.to_owned()),
        field_names: defaults
            .table(logical)
            .map(|table| {
                table
                    .fields
                    .keys()
                    .map(|field| (field.clone(), camel_case(field)))
                    .collect()
            })
            .unwrap_or_default(),
        ..TableOptions::default()
    };
    options.user = renamed("user", "user");
    options.session = renamed("session", "session");
    options.account = renamed("account", "account");
    options.verification = renamed("verification", "verification");
    options.rate_limit = renamed("rate_limit", "rateLimit");
    auth_schema(options)
}

/// `email_verified` → `emailVerified`.
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for character in name.chars() {
        if character == '_' {
            upper = true;
        } else if upper {
            out.extend(character.to_uppercase());
            upper = false;
        } else {
            out.push(character);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_selections_name_only_columns_of_their_table() {
        for table in CoreTable::ALL {
            for field in table.core_selection() {
                assert!(table.position(field).is_some(), "{table:?}.{field}");
            }
        }
    }

    #[test]
    fn the_better_auth_schema_renames_tables_and_columns() {
        let schema = better_auth_schema();
        let user = schema.table("user").map(|table| table.name.as_str());
        assert_eq!(user, Some("user"));
        let verified = schema
            .table("user")
            .and_then(|table| table.field("email_verified"))
            .map(|field| field.name.as_str());
        assert_eq!(verified, Some("emailVerified"));
        let last = schema
            .table("rate_limit")
            .and_then(|table| table.field("last_request"))
            .map(|field| field.name.as_str());
        assert_eq!(last, Some("lastRequest"));
    }

    #[test]
    fn logical_names_round_trip() {
        for table in CoreTable::ALL {
            assert_eq!(CoreTable::from_logical(table.logical()), Some(table));
        }
        assert_eq!(CoreTable::from_logical("users"), None);
    }
}
