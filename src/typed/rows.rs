//! Generated row types → `DbRecord`: each row's values by field name, moved (never cloned)
//! into the record in the order the call selected them.

use rustauth_core::db::{DbRecord, DbValue};
use time::OffsetDateTime;

use crate::generated::queries::{account, session, user, verification};

/// The picked columns of a row, in pick order. Values are moved out of the row; a column
/// picked twice (a select list naming a field twice) is cloned for its later places.
pub(super) fn project<const N: usize>(
    values: [(&'static str, DbValue); N],
    pick: &[usize],
) -> DbRecord {
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

pub(super) fn string(value: String) -> DbValue {
    DbValue::String(value)
}

pub(super) fn nullable_string(value: Option<String>) -> DbValue {
    value.map_or(DbValue::Null, DbValue::String)
}

pub(super) fn nullable_timestamp(value: Option<OffsetDateTime>) -> DbValue {
    value.map_or(DbValue::Null, DbValue::Timestamp)
}

pub(super) fn user_values(row: user::User) -> [(&'static str, DbValue); 7] {
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
pub(super) fn joined_user_values(row: &mut user::UserWithAccount) -> [(&'static str, DbValue); 7] {
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
pub(super) fn joined_account_values(
    row: user::UserWithAccount,
) -> Option<[(&'static str, DbValue); 13]> {
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

pub(super) fn session_values(row: session::Session) -> [(&'static str, DbValue); 8] {
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

pub(super) fn account_values(row: account::Account) -> [(&'static str, DbValue); 13] {
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

pub(super) fn verification_values(row: verification::Verification) -> [(&'static str, DbValue); 6] {
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
}
