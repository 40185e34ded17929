//! Generated row types → `DbRecord`: each row's values by field name, moved (never cloned)
//! into the record in the order the call selected them. The mappers follow from the one
//! description of the core tables (`layout::core_tables!`).

use std::cell::RefCell;

use rustauth_core::db::{DbRecord, DbValue};
use time::OffsetDateTime;

use crate::generated::queries::user;
use crate::values::RecordTemplate;

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
///
/// The record's keys and their hash table come from a per-thread template of the projection
/// (see [`Template`]) once the projection has been built once.
pub(super) fn project<const N: usize>(
    values: [(&'static str, DbValue); N],
    pick: &[usize],
) -> DbRecord {
    project_with_room(values, pick, 0)
}

/// [`project`] into a record with room for `room` more keys, added by the caller without
/// growing (and rehashing) it: the sign-in join adds the accounts array to the user's record.
pub(super) fn project_with_room<const N: usize>(
    values: [(&'static str, DbValue); N],
    pick: &[usize],
    room: usize,
) -> DbRecord {
    let mut slots = values.map(|(name, value)| (name, Some(value)));
    let from_template = TEMPLATES.with(|templates| {
        let templates = templates.try_borrow().ok()?;
        let template = templates
            .iter()
            .find(|template| template.fits(&slots, pick, room))?;
        Some(template.fill(&mut slots))
    });
    if let Some(record) = from_template {
        return record;
    }
    let names = slots.each_ref().map(|(name, _)| *name);
    let record = build(&mut slots, pick);
    TEMPLATES.with(|templates| {
        if let Ok(mut templates) = templates.try_borrow_mut() {
            if templates.len() < MAX_TEMPLATES {
                templates.push(Template::new(&names, pick, room));
            }
        }
    });
    record
}

/// Every column of a row, in column order (as [`project`] with every column picked once).
pub(super) fn project_all<const N: usize>(values: [(&'static str, DbValue); N]) -> DbRecord {
    match IDENTITY.get(..N) {
        Some(pick) => project(values, pick),
        None => project(values, &(0..N).collect::<Vec<_>>()),
    }
}

/// `0, 1, 2, …`: the pick of every column of a core table (the widest has 13).
const IDENTITY: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

/// The projection without a template: each picked value inserted under its name.
fn build<const N: usize>(
    slots: &mut [(&'static str, Option<DbValue>); N],
    pick: &[usize],
) -> DbRecord {
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

/// The most projections a thread keeps a template of; others are built every time.
const MAX_TEMPLATES: usize = 32;

thread_local! {
    /// This thread's templates, one per (row type, pick) met so far.
    static TEMPLATES: RefCell<Vec<Template>> = const { RefCell::new(Vec::new()) };
}

/// The template of one projection of one row type (see [`RecordTemplate`]).
struct Template {
    /// The row's column names, in column order.
    names: Box<[&'static str]>,
    /// The pick the template was made for.
    pick: Box<[usize]>,
    /// Keys the caller may add without growing the record (see [`project_with_room`]).
    room: usize,
    record: RecordTemplate,
}

impl Template {
    /// The template of `pick` over a row with columns `names`: the keys [`build`] gives.
    fn new(names: &[&'static str], pick: &[usize], room: usize) -> Self {
        let picked = pick
            .iter()
            .filter_map(|column| names.get(*column).map(|name| (*column, *name)));
        Self {
            names: names.into(),
            pick: pick.into(),
            room,
            record: RecordTemplate::new(picked, room),
        }
    }

    /// Whether this template is the one of `pick` and `room` over a row with the columns of
    /// `slots`.
    fn fits(&self, slots: &[(&'static str, Option<DbValue>)], pick: &[usize], room: usize) -> bool {
        self.room == room
            && *self.pick == *pick
            && self.names.len() == slots.len()
            && self
                .names
                .iter()
                .zip(slots)
                .all(|(name, (slot, _))| name == slot)
    }

    /// The record with the values of `slots` moved into it (each column is used once: the
    /// record has one entry per distinct picked column).
    fn fill(&self, slots: &mut [(&'static str, Option<DbValue>)]) -> DbRecord {
        let filled = self.record.fill(|column| {
            Ok::<_, std::convert::Infallible>(
                slots.get_mut(column).and_then(|(_, slot)| slot.take()),
            )
        });
        match filled {
            Ok(record) => record,
            Err(never) => match never {},
        }
    }
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

    fn row(id: &str, second: (&'static str, &str)) -> [(&'static str, DbValue); 2] {
        [
            ("id", DbValue::String(id.to_owned())),
            (second.0, DbValue::String(second.1.to_owned())),
        ]
    }

    fn entries(record: &DbRecord) -> Vec<(String, DbValue)> {
        record
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }

    /// The second projection of a shape comes from the template the first one left, and is
    /// what building it gives: the same keys in the same order, this row's values, a column
    /// picked twice once; a row of other columns (even with the same first name) or another
    /// pick gets its own.
    #[test]
    fn a_projection_from_its_template_is_the_projection_built() {
        let picks: [&[usize]; 4] = [&[1, 0, 1], &[0, 1], &[1], &[0, 0]];
        for pick in picks {
            for second in [("name", "Ada"), ("email", "ada@example.com")] {
                let first = project(row("u1", second), pick);
                let again = project(row("u2", second), pick);
                let built = build(&mut row("u2", second).map(|(n, v)| (n, Some(v))), pick);
                assert_eq!(entries(&again), entries(&built), "{pick:?} {second:?}");
                assert_eq!(
                    first.keys().collect::<Vec<_>>(),
                    again.keys().collect::<Vec<_>>()
                );
            }
        }
        let all = project_all(row("u3", ("name", "Bo")));
        assert_eq!(
            entries(&all),
            [
                ("id".to_owned(), DbValue::String("u3".to_owned())),
                ("name".to_owned(), DbValue::String("Bo".to_owned())),
            ]
        );
        // Seven columns, as a user row: a table for seven keys has no room for an eighth.
        let wide =
            || ["id", "name", "email", "image", "a", "b", "c"].map(|name| (name, DbValue::Null));
        for round in 0..2 {
            let roomy = project_with_room(wide(), &IDENTITY[..7], 1);
            assert_eq!(entries(&roomy), entries(&project_all(wide())));
            // The first is built (and becomes the template), the second cloned from it.
            if round == 1 {
                assert!(roomy.capacity() > roomy.len(), "room for the join's key");
            }
        }
        TEMPLATES.with(|templates| {
            assert!(
                templates.borrow().len() >= 9,
                "a template per row type, pick and room"
            );
        });
    }
}
