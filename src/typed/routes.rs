//! The call shapes typed statements serve: each matcher checks a call's model, selection,
//! where-clause and values against one generated statement, binds the values, and hands the
//! row to [`rows`](super::rows); anything else returns `None` for the generic path.

use rustauth_core::db::sql::{resolve_table_with_logical, select_record};
use rustauth_core::db::{
    Connector, Create, DbRecord, DbSchema, DbValue, Delete, DeleteMany, FindMany, FindOne,
    SortDirection, Update, WhereMode, WhereOperator,
};
use time::OffsetDateTime;

use super::rows::*;
use super::statements::TableSet;
use super::{eq_text, projection, Fit, Router, EVERY_COLUMN};
use crate::error::Result;
use crate::generated::queries::session;
use crate::layout::CoreTable;
use crate::runner::{Db, TypedDb};

impl Router {
    /// `find_one` on a typed statement, or `None` for the generic path.
    pub(crate) async fn find_one(
        &self,
        db: Db<'_>,
        schema: &DbSchema,
        query: &FindOne,
    ) -> Option<Result<Option<DbRecord>>> {
        let (model, fit) = self.model(schema, &query.model)?;
        if !query.joins.is_empty() {
            return self.find_one_joined(db, schema, query, model, fit).await;
        }
        let [clause] = query.where_clauses.as_slice() else {
            return None;
        };
        match model {
            CoreTable::Session => {
                let token = eq_text(clause, "token")?;
                let pick = projection(&query.select, CoreTable::Session, fit)?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.session.as_ref()?.by_token;
                let found = statement.bind(typed.client(), token).opt();
                typed
                    .run(statement.sql(), found, |row| {
                        row.map(|row| project(row.values(), &pick))
                    })
                    .await
            }
            CoreTable::User => {
                let pick = projection(&query.select, CoreTable::User, fit)?;
                let typed = self.statements(db).await?;
                let statements = typed.groups.user.as_ref()?;
                let client = typed.client();
                if let Some(id) = eq_text(clause, "id") {
                    let found = statements.by_id.bind(client, id).opt();
                    typed
                        .run(statements.by_id.sql(), found, |row| {
                            row.map(|row| project(row.values(), &pick))
                        })
                        .await
                } else {
                    let email = eq_text(clause, "email")?;
                    let found = statements.by_email.bind(client, email).opt();
                    typed
                        .run(statements.by_email.sql(), found, |row| {
                            row.map(|row| project(row.values(), &pick))
                        })
                        .await
                }
            }
            _ => None,
        }
    }

    /// Sign-in's `find_one user WHERE email = $1 JOIN account`.
    async fn find_one_joined(
        &self,
        db: Db<'_>,
        schema: &DbSchema,
        query: &FindOne,
        model: CoreTable,
        fit: Fit,
    ) -> Option<Result<Option<DbRecord>>> {
        if model != CoreTable::User || self.account != Fit::Core || query.joins.len() != 1 {
            return None;
        }
        let (join_model, option) = query.joins.first()?;
        let (join_logical, _) = resolve_table_with_logical(schema, join_model).ok()?;
        if join_logical != "account" || !option.enabled || option.limit.is_some() {
            return None;
        }
        let [clause] = query.where_clauses.as_slice() else {
            return None;
        };
        let email = eq_text(clause, "email")?;
        let pick = projection(&query.select, CoreTable::User, fit)?;
        let typed = self.statements(db).await?;
        let statement = &typed.groups.user_with_accounts.as_ref()?.by_email;
        let rows = statement.bind(typed.client(), email).all();
        // The output key is the logical model name, however the join was spelled.
        let key = join_logical.to_owned();
        typed
            .run(statement.sql(), rows, move |mut rows| {
                // No row: no user with this email.
                let first = rows.first_mut()?;
                let mut record = project_with_room(joined_user_values(first), &pick, 1);
                let accounts = rows
                    .into_iter()
                    .filter_map(joined_account_values)
                    .map(project_all)
                    .collect();
                record.insert(key, DbValue::RecordArray(accounts));
                Some(record)
            })
            .await
    }

    /// `find_many` on a typed statement, or `None` for the generic path.
    pub(crate) async fn find_many(
        &self,
        db: Db<'_>,
        schema: &DbSchema,
        query: &FindMany,
    ) -> Option<Result<Vec<DbRecord>>> {
        let (model, fit) = self.model(schema, &query.model)?;
        if !query.joins.is_empty() || query.offset.is_some_and(|offset| offset > 0) {
            return None;
        }
        let [clause] = query.where_clauses.as_slice() else {
            return None;
        };
        match model {
            CoreTable::Verification => {
                let identifier = eq_text(clause, "identifier")?;
                let sort = query.sort_by.as_ref()?;
                if sort.field != "created_at"
                    || sort.direction != SortDirection::Desc
                    || query.limit != Some(1)
                {
                    return None;
                }
                let pick = projection(&query.select, CoreTable::Verification, fit)?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.verification.as_ref()?.newest_by_identifier;
                let found = statement.bind(typed.client(), identifier).opt();
                typed
                    .run(statement.sql(), found, |row| {
                        row.map(|row| project(row.values(), &pick))
                            .into_iter()
                            .collect()
                    })
                    .await
            }
            CoreTable::Session => {
                let user_id = eq_text(clause, "user_id")?;
                let pick = projection(&query.select, CoreTable::Session, fit)?;
                let newest_first = match (&query.sort_by, query.limit) {
                    (None, None) => None,
                    (Some(sort), Some(limit))
                        if sort.field == "created_at" && sort.direction == SortDirection::Desc =>
                    {
                        Some(i64::try_from(limit).ok()?)
                    }
                    _ => return None,
                };
                let typed = self.statements(db).await?;
                let statements = typed.groups.session.as_ref()?;
                let client = typed.client();
                let to_records = |rows: Vec<session::Session>| {
                    rows.into_iter()
                        .map(|row| project(row.values(), &pick))
                        .collect()
                };
                match newest_first {
                    None => {
                        let found = statements.by_user_id.bind(client, user_id).all();
                        typed
                            .run(statements.by_user_id.sql(), found, to_records)
                            .await
                    }
                    Some(limit) => {
                        let found = statements
                            .newest_by_user_id
                            .bind(client, user_id, &limit)
                            .all();
                        typed
                            .run(statements.newest_by_user_id.sql(), found, to_records)
                            .await
                    }
                }
            }
            _ => None,
        }
    }

    /// `create` on a typed statement, or `None` for the generic path.
    pub(crate) async fn create(
        &self,
        db: Db<'_>,
        schema: &DbSchema,
        query: &Create,
    ) -> Option<Result<DbRecord>> {
        let (model, _) = self.model(schema, &query.model)?;
        if query
            .data
            .keys()
            .chain(&query.select)
            .any(|field| model.position(field).is_none())
        {
            return None;
        }
        let typed = self.statements(db).await?;
        let echo = |_: String| select_record(query.data.clone(), &query.select);
        insert(&typed, model, &query.data, echo).await
    }

    /// `update` on a typed statement, or `None` for the generic path.
    pub(crate) async fn update(
        &self,
        db: Db<'_>,
        schema: &DbSchema,
        query: &Update,
    ) -> Option<Result<Option<DbRecord>>> {
        let (model, fit) = self.model(schema, &query.model)?;
        // The update returns every column of the table, plugin columns included.
        if fit != Fit::Core || query.data.len() != 2 {
            return None;
        }
        let updated_at = timestamp(query.data.get("updated_at")?)?;
        let all = &EVERY_COLUMN[..model.columns().len()];
        match model {
            CoreTable::Session => {
                let [clause] = query.where_clauses.as_slice() else {
                    return None;
                };
                let token = eq_text(clause, "token")?;
                let expires_at = timestamp(query.data.get("expires_at")?)?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.session.as_ref()?.update_expiry;
                let updated = statement
                    .bind(typed.client(), &expires_at, &updated_at, token)
                    .opt();
                typed
                    .run(statement.sql(), updated, |row| {
                        row.map(|row| project(row.values(), all))
                    })
                    .await
            }
            CoreTable::User => {
                let [clause] = query.where_clauses.as_slice() else {
                    return None;
                };
                let id = eq_text(clause, "id")?;
                let verified = boolean(query.data.get("email_verified")?)?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.user.as_ref()?.set_email_verified;
                let updated = statement
                    .bind(typed.client(), &verified, &updated_at, id)
                    .opt();
                typed
                    .run(statement.sql(), updated, |row| {
                        row.map(|row| project(row.values(), all))
                    })
                    .await
            }
            CoreTable::Account => {
                let [first, second] = query.where_clauses.as_slice() else {
                    return None;
                };
                if first.connector != Connector::And || second.connector != Connector::And {
                    return None;
                }
                let (user_id, provider_id) =
                    match (eq_text(first, "user_id"), eq_text(second, "provider_id")) {
                        (Some(user_id), Some(provider_id)) => (user_id, provider_id),
                        _ => (eq_text(second, "user_id")?, eq_text(first, "provider_id")?),
                    };
                let password = text(query.data.get("password")?)?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.account.as_ref()?.update_password;
                let updated = statement
                    .bind(typed.client(), password, &updated_at, user_id, provider_id)
                    .opt();
                typed
                    .run(statement.sql(), updated, |row| {
                        row.map(|row| project(row.values(), all))
                    })
                    .await
            }
            _ => None,
        }
    }

    /// `delete` on a typed statement, or `None` for the generic path.
    pub(crate) async fn delete(
        &self,
        db: Db<'_>,
        schema: &DbSchema,
        query: &Delete,
    ) -> Option<Result<()>> {
        let (model, _) = self.model(schema, &query.model)?;
        let [clause] = query.where_clauses.as_slice() else {
            return None;
        };
        match model {
            CoreTable::Session => {
                let token = eq_text(clause, "token")?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.session.as_ref()?.delete_by_token;
                let deleted = statement.bind(typed.client(), token).all();
                typed.run(statement.sql(), deleted, |_| ()).await
            }
            CoreTable::Verification => {
                let identifier = eq_text(clause, "identifier")?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.verification.as_ref()?.delete_by_identifier;
                let deleted = statement.bind(typed.client(), identifier).all();
                typed.run(statement.sql(), deleted, |_| ()).await
            }
            _ => None,
        }
    }

    /// `delete_many` on a typed statement, or `None` for the generic path.
    pub(crate) async fn delete_many(
        &self,
        db: Db<'_>,
        schema: &DbSchema,
        query: &DeleteMany,
    ) -> Option<Result<u64>> {
        let (model, _) = self.model(schema, &query.model)?;
        let [clause] = query.where_clauses.as_slice() else {
            return None;
        };
        let count = |ids: Vec<String>| ids.len() as u64;
        match model {
            CoreTable::Verification => {
                if clause.field != "expires_at"
                    || clause.operator != WhereOperator::Lt
                    || clause.mode != WhereMode::Sensitive
                {
                    return None;
                }
                let now = timestamp(&clause.value)?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.verification.as_ref()?.delete_expired;
                let deleted = statement.bind(typed.client(), &now).all();
                typed.run(statement.sql(), deleted, count).await
            }
            CoreTable::Session => {
                let user_id = eq_text(clause, "user_id")?;
                let typed = self.statements(db).await?;
                let statement = &typed.groups.session.as_ref()?.delete_by_user_id;
                let deleted = statement.bind(typed.client(), user_id).all();
                typed.run(statement.sql(), deleted, count).await
            }
            _ => None,
        }
    }
}

/// The rate-limit consume on the generated statement (default table names only, outside a
/// transaction): the row it returned (`permitted`, `count`, `last_request`), or `None` for the
/// generic path.
pub(crate) async fn consume_rate_limit(
    db: Db<'_>,
    key: &str,
    now_ms: i64,
    window_ms: i64,
    max: i64,
) -> Option<Result<Option<(bool, i64, i64)>>> {
    let typed = db.typed(TableSet::of([CoreTable::RateLimit])).await?;
    if typed.in_transaction() {
        return None;
    }
    let statement = &typed.groups.rate_limit.as_ref()?.consume;
    let row = statement
        .bind(typed.client(), &key, &now_ms, &window_ms, &max)
        .opt();
    typed
        .run(statement.sql(), row, |row| {
            row.map(|row| (row.permitted, row.count, row.last_request))
        })
        .await
}

fn text(value: &DbValue) -> Option<&String> {
    match value {
        DbValue::String(value) => Some(value),
        _ => None,
    }
}

fn optional_text(value: Option<&DbValue>) -> Option<Option<&str>> {
    match value {
        None | Some(DbValue::Null) => Some(None),
        Some(DbValue::String(value)) => Some(Some(value)),
        Some(_) => None,
    }
}

fn timestamp(value: &DbValue) -> Option<OffsetDateTime> {
    match value {
        DbValue::Timestamp(value) => Some(*value),
        _ => None,
    }
}

fn optional_timestamp(value: Option<&DbValue>) -> Option<Option<OffsetDateTime>> {
    match value {
        None | Some(DbValue::Null) => Some(None),
        Some(DbValue::Timestamp(value)) => Some(Some(*value)),
        Some(_) => None,
    }
}

fn boolean(value: &DbValue) -> Option<bool> {
    match value {
        DbValue::Boolean(value) => Some(*value),
        _ => None,
    }
}

/// The value of a column of `kind` for an insert (see `layout::core_tables!`), from the
/// call's data; `None` (the generic path) when it is missing where required or has another
/// type.
macro_rules! param_of {
    (Text, $value:expr) => {
        text($value?)?
    };
    (NullText, $value:expr) => {
        optional_text($value)?
    };
    (Bool, $value:expr) => {
        boolean($value?)?
    };
    (Timestamptz, $value:expr) => {
        timestamp($value?)?
    };
    (NullTimestamptz, $value:expr) => {
        optional_timestamp($value)?
    };
}

/// How a parameter of `kind` is passed to a generated `bind` (text is already a reference).
macro_rules! bind_arg {
    (Text, $param:ident) => {
        $param
    };
    ($kind:ident, $param:ident) => {
        &$param
    };
}

/// `insert`: a create on the typed tables' generated inserts, whose parameters are the
/// table's columns in order (`layout::core_tables!`).
macro_rules! insert_binders {
    (
        typed {
            $($table:ident($group:ident): $row:path {
                $($column:ident: $kind:ident $(=> $joined:ident)?),* $(,)?
            })*
        }
        untyped { $($untyped:tt)* }
    ) => {
        /// Inserts `data` into `model` with its generated insert and answers with `echo`, or
        /// `None` for the generic path (no such statement, a value it cannot take).
        async fn insert(
            typed: &TypedDb<'_>,
            model: CoreTable,
            data: &DbRecord,
            echo: impl FnOnce(String) -> DbRecord,
        ) -> Option<Result<DbRecord>> {
            match model {
                $(CoreTable::$table => {
                    let statement = &typed.groups.$group.as_ref()?.insert;
                    $(let $column = param_of!($kind, data.get(stringify!($column)));)*
                    let inserted = statement
                        .bind(typed.client(), $(bind_arg!($kind, $column)),*)
                        .one();
                    typed.run(statement.sql(), inserted, echo).await
                })*
                _ => None,
            }
        }
    };
}
crate::layout::core_tables!(insert_binders);
