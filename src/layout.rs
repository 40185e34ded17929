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

/// The one description of the core tables' columns, in `migrations/`' order (which is the
/// order of the generated row types and of the generated inserts' parameters): name and kind
/// of each column, and for the four tables the typed path reads and writes, the statement
/// group it belongs to and the generated row type. Everything else that needs a core table's
/// columns follows from it: [`CoreTable::columns`] here, the row → `DbRecord` mappers
/// (`typed/rows.rs`) and the insert binders (`typed/routes.rs`), each a macro `$then` that
/// receives this description. `tests/it/codegen.rs` checks the description against
/// `migrations/` (every column, type and nullability).
///
/// Kinds: `Text`, `NullText`, `Bool`, `Timestamptz`, `NullTimestamptz`, `Int8`. `=> name`
/// after an account column is the field the sign-in join (`user_by_email_with_accounts` of
/// `queries/user.sql`) reads it into: that statement selects the user's columns under their
/// own names and the account's as `account_<column>`.
macro_rules! core_tables {
    ($then:path) => {
        $then! {
            typed {
                User(user): $crate::generated::queries::user::User {
                    id: Text,
                    name: Text,
                    email: Text,
                    email_verified: Bool,
                    image: NullText,
                    created_at: Timestamptz,
                    updated_at: Timestamptz,
                }
                Session(session): $crate::generated::queries::session::Session {
                    id: Text,
                    expires_at: Timestamptz,
                    token: Text,
                    created_at: Timestamptz,
                    updated_at: Timestamptz,
                    ip_address: NullText,
                    user_agent: NullText,
                    user_id: Text,
                }
                Account(account): $crate::generated::queries::account::Account {
                    id: Text => account_id,
                    account_id: Text => account_account_id,
                    provider_id: Text => account_provider_id,
                    user_id: Text => account_user_id,
                    access_token: NullText => account_access_token,
                    refresh_token: NullText => account_refresh_token,
                    id_token: NullText => account_id_token,
                    access_token_expires_at: NullTimestamptz => account_access_token_expires_at,
                    refresh_token_expires_at: NullTimestamptz => account_refresh_token_expires_at,
                    scope: NullText => account_scope,
                    password: NullText => account_password,
                    created_at: Timestamptz => account_created_at,
                    updated_at: Timestamptz => account_updated_at,
                }
                Verification(verification): $crate::generated::queries::verification::Verification {
                    id: Text,
                    identifier: Text,
                    value: Text,
                    expires_at: Timestamptz,
                    created_at: Timestamptz,
                    updated_at: Timestamptz,
                }
            }
            untyped {
                RateLimit {
                    key: Text,
                    count: Int8,
                    last_request: Int8,
                }
            }
        }
    };
}
pub(crate) use core_tables;

/// The PostgreSQL type of a column kind of [`core_tables!`].
macro_rules! column_type {
    (Text) => {
        Type::TEXT
    };
    (NullText) => {
        Type::TEXT
    };
    (Bool) => {
        Type::BOOL
    };
    (Timestamptz) => {
        Type::TIMESTAMPTZ
    };
    (NullTimestamptz) => {
        Type::TIMESTAMPTZ
    };
    (Int8) => {
        Type::INT8
    };
}

/// Whether a column kind of [`core_tables!`] admits NULL.
macro_rules! column_nullable {
    (NullText) => {
        true
    };
    (NullTimestamptz) => {
        true
    };
    ($kind:ident) => {
        false
    };
}

/// [`CoreTable::columns`] and [`CoreTable::nullable`] from [`core_tables!`].
macro_rules! column_lists {
    (
        typed {
            $($table:ident($group:ident): $row:path {
                $($column:ident: $kind:ident $(=> $joined:ident)?),* $(,)?
            })*
        }
        untyped { $($other:ident { $($other_column:ident: $other_kind:ident),* $(,)? })* }
    ) => {
        impl CoreTable {
            /// The columns in `migrations/`' order (the order of the generated row types).
            pub fn columns(self) -> &'static [Column] {
                match self {
                    $(Self::$table => {
                        static COLUMNS: &[Column] = &[$(Column {
                            name: stringify!($column),
                            ty: column_type!($kind),
                        }),*];
                        COLUMNS
                    })*
                    $(Self::$other => {
                        static COLUMNS: &[Column] = &[$(Column {
                            name: stringify!($other_column),
                            ty: column_type!($other_kind),
                        }),*];
                        COLUMNS
                    })*
                }
            }

            /// Whether column `name` of this table admits NULL (`None`: no such column).
            pub fn nullable(self, name: &str) -> Option<bool> {
                let nullable: &[(&str, bool)] = match self {
                    $(Self::$table => &[$((stringify!($column), column_nullable!($kind))),*],)*
                    $(Self::$other => {
                        &[$((stringify!($other_column), column_nullable!($other_kind))),*]
                    })*
                };
                nullable
                    .iter()
                    .find(|(column, _)| *column == name)
                    .map(|(_, nullable)| *nullable)
            }
        }
    };
}
core_tables!(column_lists);

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
