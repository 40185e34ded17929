//! Generated row types → `DbRecord`: each row's values by field name, moved (never cloned)
//! into the record in the order the call selected them. The mappers follow from the one
//! description of the core tables (`layout::core_tables!`).

use rustauth_core::db::{DbRecord, DbValue};
use time::OffsetDateTime;

use crate::generated::queries::user;

/// A generated row of a core table as its values by field name, in column order.
pub(super) trait RowValues {
    /// `[(&'static str, DbValue); N]` for a table of N columns.
    type Values;

    /// The row's values, moved out of it.
    fn values(self) -> Self::Values;
}

/// The value of a column of `kind` (see `layout::core_tables!`).
macro_rules! value_of {
    (Text, $value:expr) => {
        DbValue::String($value)
    };
    (NullText, $value:expr) => {
        nullable_string($value)
    };
    (Bool, $value:expr) => {
        DbValue::Boolean($value)
    };
    (Timestamptz, $value:expr) => {
        DbValue::Timestamp($value)
    };
    (NullTimestamptz, $value:expr) => {
        nullable_timestamp($value)
    };
}

/// The value of a column of `kind` taken out of a borrowed row (text is moved out, leaving
/// an empty string; the rest is copied).
macro_rules! value_taken {
    (Text, $value:expr) => {
        DbValue::String(std::mem::take(&mut $value))
    };
    (NullText, $value:expr) => {
        nullable_string($value.take())
    };
    ($kind:ident, $value:expr) => {
        value_of!($kind, $value)
    };
}

/// The value of a sign-in join's account field of column `kind`: every one is an `Option`,
/// the join being a LEFT JOIN.
macro_rules! joined_value {
    (Text, $value:expr) => {
        nullable_string($value)
    };
    (NullText, $value:expr) => {
        nullable_string($value)
    };
    (Timestamptz, $value:expr) => {
        nullable_timestamp($value)
    };
    (NullTimestamptz, $value:expr) => {
        nullable_timestamp($value)
    };
}

/// How many columns.
macro_rules! count {
    () => {
        0
    };
    ($head:ident $($tail:ident)*) => {
        1 + count!($($tail)*)
    };
}

/// [`RowValues`] for every typed table's row, and both halves of the sign-in join (its user
/// fields are named as the user columns, its account fields as the description's `=> name`),
/// from `layout::core_tables!`.
macro_rules! row_values {
    (
        typed {
            $($table:ident($group:ident): $row:path {
                $($column:ident: $kind:ident $(=> $joined:ident)?),* $(,)?
            })*
        }
        untyped { $($untyped:tt)* }
    ) => {
        $(impl RowValues for $row {
            type Values = [(&'static str, DbValue); count!($($column)*)];

            fn values(self) -> Self::Values {
                [$((stringify!($column), value_of!($kind, self.$column))),*]
            }
        })*
        row_values!(@join $($table { $($column: $kind $(=> $joined)?),* })*);
    };
    (@join User { $($column:ident: $kind:ident),* } $($rest:tt)*) => {
        /// The user half of a sign-in join row, moved out of it (the account half stays).
        pub(super) fn joined_user_values(
            row: &mut user::UserWithAccount,
        ) -> [(&'static str, DbValue); count!($($column)*)] {
            [$((stringify!($column), value_taken!($kind, row.$column))),*]
        }
        row_values!(@join $($rest)*);
    };
    (@join Account {
        $id:ident: $id_kind:ident => $joined_id:ident,
        $($column:ident: $kind:ident => $joined:ident),*
    } $($rest:tt)*) => {
        /// The account half of a sign-in join row; `None` when the user has no account (the
        /// join is a LEFT JOIN, so every account field may be NULL).
        pub(super) fn joined_account_values(
            row: user::UserWithAccount,
        ) -> Option<[(&'static str, DbValue); 1 + count!($($column)*)]> {
            Some([
                (stringify!($id), DbValue::String(row.$joined_id?)),
                $((stringify!($column), joined_value!($kind, row.$joined))),*
            ])
        }
        row_values!(@join $($rest)*);
    };
    (@join $table:ident { $($body:tt)* } $($rest:tt)*) => {
        row_values!(@join $($rest)*);
    };
    (@join) => {};
}
crate::layout::core_tables!(row_values);

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

pub(super) fn nullable_string(value: Option<String>) -> DbValue {
    value.map_or(DbValue::Null, DbValue::String)
}

pub(super) fn nullable_timestamp(value: Option<OffsetDateTime>) -> DbValue {
    value.map_or(DbValue::Null, DbValue::Timestamp)
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
