//! The hot-call router: query shape → generated statement → `DbRecord`.
//!
//! When the adapter is built, each core table of its schema is compared with the layout
//! `migrations/` declares (the default physical names of `auth_schema` with database rate
//! limits). A call then takes a typed statement when its model's layout matches, its shape is
//! one RustAuth's hot paths use (`docs/behaviour.md` §9), and every value converts to the
//! statement's parameter types; anything else returns `None` and takes the generic path.
//! Both paths give the same records, errors and side effects (tests/it/differential.rs).

use std::borrow::Cow;

use rustauth_core::db::sql::{resolve_table_with_logical, select_record};
use rustauth_core::db::{
    auth_schema, AuthSchemaOptions, Connector, Create, DbRecord, DbSchema, DbValue, Delete,
    DeleteMany, FindMany, FindOne, RateLimitStorage, SortDirection, Update, Where, WhereMode,
    WhereOperator,
};
use time::OffsetDateTime;

use crate::error::Result;
use crate::generated::queries::{account, session, user, verification};
use crate::layout::CoreTable;
use crate::prepared::Wanted;
use crate::runner::{Db, TypedDb};

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
    pub(crate) fn wanted(&self) -> Wanted {
        Wanted::of(
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
                        row.map(|row| project(session_values(row), &pick))
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
                            row.map(|row| project(user_values(row), &pick))
                        })
                        .await
                } else {
                    let email = eq_text(clause, "email")?;
                    let found = statements.by_email.bind(client, email).opt();
                    typed
                        .run(statements.by_email.sql(), found, |row| {
                            row.map(|row| project(user_values(row), &pick))
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
                let mut record = project(joined_user_values(first), &pick);
                let accounts = rows
                    .into_iter()
                    .filter_map(joined_account_values)
                    .map(|values| values.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
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
                        row.map(|row| project(verification_values(row), &pick))
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
                        .map(|row| project(session_values(row), &pick))
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
        let data = &query.data;
        let typed = self.statements(db).await?;
        let client = typed.client();
        let echo = |_: String| select_record(query.data.clone(), &query.select);
        match model {
            CoreTable::User => {
                let statement = &typed.groups.user.as_ref()?.insert;
                let email_verified = boolean(data.get("email_verified")?)?;
                let image = optional_text(data.get("image"))?;
                let created_at = timestamp(data.get("created_at")?)?;
                let updated_at = timestamp(data.get("updated_at")?)?;
                let inserted = statement
                    .bind(
                        client,
                        text(data.get("id")?)?,
                        text(data.get("name")?)?,
                        text(data.get("email")?)?,
                        &email_verified,
                        &image,
                        &created_at,
                        &updated_at,
                    )
                    .one();
                typed.run(statement.sql(), inserted, echo).await
            }
            CoreTable::Session => {
                let statement = &typed.groups.session.as_ref()?.insert;
                let expires_at = timestamp(data.get("expires_at")?)?;
                let created_at = timestamp(data.get("created_at")?)?;
                let updated_at = timestamp(data.get("updated_at")?)?;
                let ip_address = optional_text(data.get("ip_address"))?;
                let user_agent = optional_text(data.get("user_agent"))?;
                let inserted = statement
                    .bind(
                        client,
                        text(data.get("id")?)?,
                        &expires_at,
                        text(data.get("token")?)?,
                        &created_at,
                        &updated_at,
                        &ip_address,
                        &user_agent,
                        text(data.get("user_id")?)?,
                    )
                    .one();
                typed.run(statement.sql(), inserted, echo).await
            }
            CoreTable::Account => {
                let statement = &typed.groups.account.as_ref()?.insert;
                let access_token = optional_text(data.get("access_token"))?;
                let refresh_token = optional_text(data.get("refresh_token"))?;
                let id_token = optional_text(data.get("id_token"))?;
                let access_expires = optional_timestamp(data.get("access_token_expires_at"))?;
                let refresh_expires = optional_timestamp(data.get("refresh_token_expires_at"))?;
                let scope = optional_text(data.get("scope"))?;
                let password = optional_text(data.get("password"))?;
                let created_at = timestamp(data.get("created_at")?)?;
                let updated_at = timestamp(data.get("updated_at")?)?;
                let inserted = statement
                    .bind(
                        client,
                        text(data.get("id")?)?,
                        text(data.get("account_id")?)?,
                        text(data.get("provider_id")?)?,
                        text(data.get("user_id")?)?,
                        &access_token,
                        &refresh_token,
                        &id_token,
                        &access_expires,
                        &refresh_expires,
                        &scope,
                        &password,
                        &created_at,
                        &updated_at,
                    )
                    .one();
                typed.run(statement.sql(), inserted, echo).await
            }
            CoreTable::Verification => {
                let statement = &typed.groups.verification.as_ref()?.insert;
                let expires_at = timestamp(data.get("expires_at")?)?;
                let created_at = timestamp(data.get("created_at")?)?;
                let updated_at = timestamp(data.get("updated_at")?)?;
                let inserted = statement
                    .bind(
                        client,
                        text(data.get("id")?)?,
                        text(data.get("identifier")?)?,
                        text(data.get("value")?)?,
                        &expires_at,
                        &created_at,
                        &updated_at,
                    )
                    .one();
                typed.run(statement.sql(), inserted, echo).await
            }
            _ => None,
        }
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
                        row.map(|row| project(session_values(row), all))
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
                        row.map(|row| project(user_values(row), all))
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
                        row.map(|row| project(account_values(row), all))
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
    let typed = db.typed(Wanted::of([CoreTable::RateLimit])).await?;
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

/// The picked columns of a row, in pick order. Values are moved out of the row; a column
/// picked twice (a select list naming a field twice) is cloned for its later places.
fn project<const N: usize>(values: [(&'static str, DbValue); N], pick: &[usize]) -> DbRecord {
    let mut slots = values.map(|(name, value)| (name, Some(value)));
    let mut record = DbRecord::with_capacity(pick.len());
    for index in pick {
        let Some((name, slot)) = slots.get_mut(*index) else {
            continue;
        };
        let value = match slot.take() {
            Some(value) => value,
            None => match record.get(*name) {
                Some(value) => value.clone(),
                None => continue,
            },
        };
        record.insert((*name).to_owned(), value);
    }
    record
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

fn string(value: String) -> DbValue {
    DbValue::String(value)
}

fn nullable_string(value: Option<String>) -> DbValue {
    value.map_or(DbValue::Null, DbValue::String)
}

fn nullable_timestamp(value: Option<OffsetDateTime>) -> DbValue {
    value.map_or(DbValue::Null, DbValue::Timestamp)
}

fn user_values(row: user::User) -> [(&'static str, DbValue); 7] {
    [
        ("id", string(row.id)),
        ("name", string(row.name)),
        ("email", string(row.email)),
        ("email_verified", DbValue::Boolean(row.email_verified)),
        ("image", nullable_string(row.image)),
        ("created_at", DbValue::Timestamp(row.created_at)),
        ("updated_at", DbValue::Timestamp(row.updated_at)),
    ]
}

/// The user half of a sign-in join row, moved out of it (the account half stays).
fn joined_user_values(row: &mut user::UserWithAccount) -> [(&'static str, DbValue); 7] {
    [
        ("id", string(std::mem::take(&mut row.id))),
        ("name", string(std::mem::take(&mut row.name))),
        ("email", string(std::mem::take(&mut row.email))),
        ("email_verified", DbValue::Boolean(row.email_verified)),
        ("image", nullable_string(row.image.take())),
        ("created_at", DbValue::Timestamp(row.created_at)),
        ("updated_at", DbValue::Timestamp(row.updated_at)),
    ]
}

/// The account half of a sign-in join row; `None` when the user has no account.
fn joined_account_values(row: user::UserWithAccount) -> Option<[(&'static str, DbValue); 13]> {
    Some([
        ("id", string(row.account_id?)),
        ("account_id", nullable_string(row.account_account_id)),
        ("provider_id", nullable_string(row.account_provider_id)),
        ("user_id", nullable_string(row.account_user_id)),
        ("access_token", nullable_string(row.account_access_token)),
        ("refresh_token", nullable_string(row.account_refresh_token)),
        ("id_token", nullable_string(row.account_id_token)),
        (
            "access_token_expires_at",
            nullable_timestamp(row.account_access_token_expires_at),
        ),
        (
            "refresh_token_expires_at",
            nullable_timestamp(row.account_refresh_token_expires_at),
        ),
        ("scope", nullable_string(row.account_scope)),
        ("password", nullable_string(row.account_password)),
        ("created_at", nullable_timestamp(row.account_created_at)),
        ("updated_at", nullable_timestamp(row.account_updated_at)),
    ])
}

fn session_values(row: session::Session) -> [(&'static str, DbValue); 8] {
    [
        ("id", string(row.id)),
        ("expires_at", DbValue::Timestamp(row.expires_at)),
        ("token", string(row.token)),
        ("created_at", DbValue::Timestamp(row.created_at)),
        ("updated_at", DbValue::Timestamp(row.updated_at)),
        ("ip_address", nullable_string(row.ip_address)),
        ("user_agent", nullable_string(row.user_agent)),
        ("user_id", string(row.user_id)),
    ]
}

fn account_values(row: account::Account) -> [(&'static str, DbValue); 13] {
    [
        ("id", string(row.id)),
        ("account_id", string(row.account_id)),
        ("provider_id", string(row.provider_id)),
        ("user_id", string(row.user_id)),
        ("access_token", nullable_string(row.access_token)),
        ("refresh_token", nullable_string(row.refresh_token)),
        ("id_token", nullable_string(row.id_token)),
        (
            "access_token_expires_at",
            nullable_timestamp(row.access_token_expires_at),
        ),
        (
            "refresh_token_expires_at",
            nullable_timestamp(row.refresh_token_expires_at),
        ),
        ("scope", nullable_string(row.scope)),
        ("password", nullable_string(row.password)),
        ("created_at", DbValue::Timestamp(row.created_at)),
        ("updated_at", DbValue::Timestamp(row.updated_at)),
    ]
}

fn verification_values(row: verification::Verification) -> [(&'static str, DbValue); 6] {
    [
        ("id", string(row.id)),
        ("identifier", string(row.identifier)),
        ("value", string(row.value)),
        ("expires_at", DbValue::Timestamp(row.expires_at)),
        ("created_at", DbValue::Timestamp(row.created_at)),
        ("updated_at", DbValue::Timestamp(row.updated_at)),
    ]
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
    fn project_moves_picked_values_and_repeats_a_field_picked_twice() {
        let values = [
            ("id", DbValue::String("u1".to_owned())),
            ("name", DbValue::String("Ada".to_owned())),
        ];
        let record = project(values, &[1, 0, 1]);
        let keys = record.keys().map(String::as_str).collect::<Vec<_>>();
        assert_eq!(keys, ["name", "id"]);
        assert_eq!(record.get("name"), Some(&DbValue::String("Ada".to_owned())));
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
