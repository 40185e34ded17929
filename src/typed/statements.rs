//! The typed statements of one connection, prepared together the first time they are needed.
//!
//! Statements are grouped by the tables they touch, so a database without (say) a
//! `rate_limits` table still gets every other typed statement. The first call that needs a
//! group prepares every group the adapter's layout can use, all at once, and reads the live
//! catalog of the core tables in the same batch (their messages are pipelined on the
//! connection). A group is then used only if
//! - the live catalog shows each of its tables with exactly the columns and types of
//!   `migrations/` (a table made by another tool, with `timestamp` columns, `uuid` ids or
//!   `citext` emails, is served by the generic path; a warning names the column, once per
//!   table and connection), and
//! - every prepared statement reports the parameter and result types its generated code
//!   expects.
//!
//! A group so refused stays refused until migrations or a stale statement clear the groups
//! (no call pays for checking again). A group whose preparation failed for another reason
//! (e.g. the connection dropped) is tried again by a later call.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use postgres_types::Type;
use tokio_postgres::{Client, Statement};

use crate::catalog::Catalog;
use crate::generated::queries::{account, rate_limit, session, user, verification};
use crate::layout::CoreTable;

/// A set of core tables: which groups an adapter's schema can use, which the live catalog
/// shows as `migrations/` declares them, which are decided.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TableSet(u8);

impl TableSet {
    /// The set of `tables`.
    pub(crate) fn of(tables: impl IntoIterator<Item = CoreTable>) -> Self {
        let mut set = Self::default();
        for table in tables {
            set.insert(table);
        }
        set
    }

    /// The set as bits, to be kept in an atomic.
    pub(crate) fn bits(self) -> u8 {
        self.0
    }

    /// The set `bits` (from [`bits`](Self::bits)) stands for.
    pub(crate) fn from_bits(bits: u8) -> Self {
        Self(bits)
    }

    fn bit(table: CoreTable) -> u8 {
        1 << (table as u8)
    }

    /// Whether `table` is in the set.
    pub(crate) fn has(self, table: CoreTable) -> bool {
        self.0 & Self::bit(table) != 0
    }

    fn insert(&mut self, table: CoreTable) {
        self.0 |= Self::bit(table);
    }

    /// Whether every one of `tables` is in the set.
    pub(crate) fn has_all(self, tables: &[CoreTable]) -> bool {
        tables.iter().all(|table| self.has(*table))
    }

    fn tables(self) -> impl Iterator<Item = CoreTable> {
        CoreTable::ALL
            .into_iter()
            .filter(move |table| self.has(*table))
    }
}

/// The typed statements, in groups by the tables they touch: each group's statements, the
/// generated constructor of each, and its tables. From this one list follow the group structs,
/// [`Groups`], and preparing, checking and merging groups ([`statement_groups!`]).
macro_rules! typed_groups {
    ($then:ident) => {
        $then! {
            /// Statements on `users`.
            user: UserStatements [User] {
                by_id: user::UserByIdStmt = user::user_by_id(),
                by_email: user::UserByEmailStmt = user::user_by_email(),
                insert: user::InsertUserStmt = user::insert_user(),
                set_email_verified: user::SetUserEmailVerifiedStmt =
                    user::set_user_email_verified(),
            }
            /// The sign-in join of `users` and `accounts`.
            user_with_accounts: UserWithAccountsStatements [User, Account] {
                by_email: user::UserByEmailWithAccountsStmt =
                    user::user_by_email_with_accounts(),
            }
            /// Statements on `sessions`.
            session: SessionStatements [Session] {
                by_token: session::SessionByTokenStmt = session::session_by_token(),
                by_user_id: session::SessionsByUserIdStmt = session::sessions_by_user_id(),
                newest_by_user_id: session::NewestSessionsByUserIdStmt =
                    session::newest_sessions_by_user_id(),
                insert: session::InsertSessionStmt = session::insert_session(),
                update_expiry: session::UpdateSessionExpiryStmt =
                    session::update_session_expiry(),
                delete_by_token: session::DeleteSessionByTokenStmt =
                    session::delete_session_by_token(),
                delete_by_user_id: session::DeleteSessionsByUserIdStmt =
                    session::delete_sessions_by_user_id(),
            }
            /// Statements on `accounts`.
            account: AccountStatements [Account] {
                insert: account::InsertAccountStmt = account::insert_account(),
                update_password: account::UpdateAccountPasswordStmt =
                    account::update_account_password(),
            }
            /// Statements on `verifications`.
            verification: VerificationStatements [Verification] {
                insert: verification::InsertVerificationStmt = verification::insert_verification(),
                newest_by_identifier: verification::NewestVerificationByIdentifierStmt =
                    verification::newest_verification_by_identifier(),
                delete_by_identifier: verification::DeleteVerificationByIdentifierStmt =
                    verification::delete_verification_by_identifier(),
                delete_expired: verification::DeleteExpiredVerificationsStmt =
                    verification::delete_expired_verifications(),
            }
            /// The statement on `rate_limits`.
            rate_limit: RateLimitStatements [RateLimit] {
                consume: rate_limit::ConsumeRateLimitStmt = rate_limit::consume_rate_limit(),
            }
        }
    };
}

/// The group structs, [`Groups`] and [`prepare_missing`] from [`typed_groups!`].
macro_rules! statement_groups {
    ($(
        $(#[$doc:meta])*
        $group:ident: $name:ident [$($table:ident),+] {
            $($field:ident: $ty:ty = $make:expr),+ $(,)?
        }
    )*) => {
        $(
            $(#[$doc])*
            pub(crate) struct $name {
                $(pub(crate) $field: $ty,)+
            }
        )*

        /// The prepared groups of one connection.
        #[derive(Default, Clone)]
        pub(crate) struct Groups {
            $(pub(crate) $group: Option<Arc<$name>>,)*
        }

        impl Groups {
            /// Whether the group of `table` alone is prepared (a join's group is not any one
            /// table's).
            fn has(&self, table: CoreTable) -> bool {
                $((&[$(CoreTable::$table),+][..] == [table] && self.$group.is_some()))||*
            }

            /// `self`'s groups, completed with those of `prepared` whose tables all fit.
            fn merge(&mut self, prepared: Groups, fits: TableSet) {
                $(
                    let fit = fits.has_all(&[$(CoreTable::$table),+]);
                    self.$group = self.$group.take().or(prepared.$group.filter(|_| fit));
                )*
            }
        }

        /// Prepares every wanted group that `current` lacks, concurrently. Failures are left
        /// out; groups whose statements report other types than their generated code expects
        /// are left out and, for a group of one table, returned as refused (a join's refusal
        /// needs no record of its own: it is only used where both tables fit).
        async fn prepare_missing(
            client: &Client,
            current: &Groups,
            wanted: TableSet,
        ) -> (Groups, TableSet) {
            let refused = Mutex::new(TableSet::default());
            $(
                let $group = async {
                    let tables = [$(CoreTable::$table),+];
                    if !wanted.has_all(&tables) || current.$group.is_some()
                    {
                        return None;
                    }
                    let ($($field,)+) = tokio::try_join!($($make.prepare(client)),+).ok()?;
                    let fits = [$($field.statement()),+]
                        .into_iter()
                        .all(|statement| statement_fits(statement, &tables));
                    if !fits {
                        if let [table] = tables[..] {
                            refused
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .insert(table);
                        }
                        return None;
                    }
                    Some(Arc::new($name { $($field),+ }))
                };
            )*
            let ($($group,)*) = tokio::join!($($group),*);
            let groups = Groups { $($group),* };
            let refused = refused.into_inner().unwrap_or_else(PoisonError::into_inner);
            (groups, refused)
        }
    };
}
typed_groups!(statement_groups);

/// Per-connection holder of the typed statement groups.
#[derive(Default)]
pub(crate) struct TypedStatements {
    groups: Mutex<Settled>,
    /// Serialises preparation so concurrent first calls prepare once.
    preparing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TypedStatements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedStatements").finish_non_exhaustive()
    }
}

/// The groups decided so far: prepared and usable (`groups`), or refused (`settled` without
/// a group).
#[derive(Default, Clone)]
struct Settled {
    /// Shared with every call that reads it: one reference count per call, not one per group.
    groups: Arc<Groups>,
    settled: TableSet,
}

impl TypedStatements {
    /// The usable groups, first deciding every wanted group not decided yet when
    /// `may_prepare` (never inside a transaction: a failed Parse there would abort it).
    pub(crate) async fn get(
        &self,
        client: &Client,
        catalog: &Catalog,
        wanted: TableSet,
        may_prepare: bool,
    ) -> Arc<Groups> {
        let current = self.lock().clone();
        if !may_prepare || !undecided(current.settled, wanted) {
            return current.groups;
        }
        // Boxed: preparing every group is a large future (tens of kilobytes), and every call
        // that may take a typed statement awaits this one; inline, each call's future would
        // carry (and copy, several times per call) space for a preparation that runs once per
        // connection.
        Box::pin(self.prepare(client, catalog, wanted)).await
    }

    /// Decides every wanted group not decided yet (the slow path of [`get`](Self::get)).
    async fn prepare(&self, client: &Client, catalog: &Catalog, wanted: TableSet) -> Arc<Groups> {
        let _preparing = self.preparing.lock().await;
        let current = self.lock().clone();
        if !undecided(current.settled, wanted) {
            return current.groups;
        }
        // Every core table at once, whatever this call wants: one catalog query per
        // connection (until something clears it). The catalog first, then only the groups
        // whose tables it shows as `migrations/` declares them: a statement on a table that
        // does not exist (yet) is never sent, so the server logs no error for it.
        let tables = CoreTable::ALL.map(CoreTable::table);
        if catalog.load(client, &tables).await.is_err() {
            // Nothing decided: a later call reads the catalog again.
            return current.groups;
        }
        let live = LiveFit::check(catalog, wanted);
        let (prepared, refused) = prepare_missing(client, &current.groups, live.fits).await;
        for table in CoreTable::ALL {
            // The catalog explained the other refusals already; this one it did not (the
            // table changed between the two, or a type differs in a way it cannot show).
            if refused.has(table) && live.fits.has(table) {
                tracing::warn!(
                    target: crate::trace::TARGET,
                    table = table.table(),
                    "typed statements not used for this table: their prepared types differ \
                     from the generated code's"
                );
            }
        }
        let mut settled = self.lock();
        let mut groups = Groups::clone(&settled.groups);
        groups.merge(prepared, live.fits);
        settled.settled = live.decided(wanted, &groups, refused);
        settled.groups = Arc::new(groups);
        Arc::clone(&settled.groups)
    }

    /// Forgets every group (after migrations, or when a statement's plan went stale).
    pub(crate) fn clear(&self) {
        *self.lock() = Settled::default();
    }

    fn lock(&self) -> MutexGuard<'_, Settled> {
        // Every mutation is a single assignment, so a poisoned lock holds consistent data.
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn undecided(settled: TableSet, wanted: TableSet) -> bool {
    wanted.tables().any(|table| !settled.has(table))
}

/// Which core tables the live catalog shows exactly as `migrations/` declares them.
struct LiveFit {
    fits: TableSet,
    /// Tables whose catalog was read (present, absent or different): decided.
    read: TableSet,
}

impl LiveFit {
    fn check(catalog: &Catalog, wanted: TableSet) -> Self {
        let mut fits = TableSet::default();
        let mut read = TableSet::default();
        for table in wanted.tables() {
            let key = table.table();
            if !catalog.has(key) {
                continue;
            }
            read.insert(table);
            let Some(columns) = catalog.known(key) else {
                tracing::debug!(
                    target: crate::trace::TARGET,
                    table = table.table(),
                    "typed statements not used: the table does not exist"
                );
                continue;
            };
            let differs =
                table
                    .columns()
                    .iter()
                    .find_map(|column| match columns.get(column.name) {
                        Some(live) if *live == column.ty => None,
                        Some(live) => Some((column, live.name().to_owned())),
                        None => Some((column, "missing".to_owned())),
                    });
            match differs {
                None => fits.insert(table),
                Some((column, live)) => tracing::warn!(
                    target: crate::trace::TARGET,
                    table = table.table(),
                    column = column.name,
                    expected = column.ty.name(),
                    found = live.as_str(),
                    "typed statements not used for this table: its live column differs from \
                     migrations/ (the generic path serves it)"
                ),
            }
        }
        Self { fits, read }
    }

    /// The groups decided after a preparation: every table whose catalog was read, except a
    /// fitting one whose group failed to prepare (tried again later).
    fn decided(&self, wanted: TableSet, groups: &Groups, refused: TableSet) -> TableSet {
        let mut decided = TableSet::default();
        for table in wanted.tables() {
            let prepared = groups.has(table);
            if self.read.has(table) && (prepared || refused.has(table) || !self.fits.has(table)) {
                decided.insert(table);
            }
        }
        decided
    }
}

/// Whether a prepared typed statement has the types its generated code reads and binds: each
/// result column the type of the column of that name in `tables` (a join's `account_*`
/// columns are the account table's), each parameter one the generated code can bind.
fn statement_fits(statement: Option<&Statement>, tables: &[CoreTable]) -> bool {
    let Some(statement) = statement else {
        return false;
    };
    let params_fit = statement
        .params()
        .iter()
        .all(|ty| [Type::TEXT, Type::INT8, Type::BOOL, Type::TIMESTAMPTZ].contains(ty));
    let columns_fit = statement.columns().iter().all(|column| {
        let name = column.name();
        let expected = tables.iter().find_map(|table| {
            let name = match table {
                CoreTable::Account if tables.len() > 1 => name.strip_prefix("account_")?,
                _ => name,
            };
            table
                .columns()
                .iter()
                .find(|expected| expected.name == name)
                .map(|expected| &expected.ty)
        });
        match expected {
            Some(expected) => column.type_() == expected,
            // Computed columns (the rate limit's `permitted`, the join's account id).
            None => [Type::BOOL, Type::TEXT].contains(column.type_()),
        }
    });
    params_fit && columns_fit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_of_core_tables_holds_each_table_once() {
        let set = TableSet::of([CoreTable::User, CoreTable::RateLimit, CoreTable::User]);
        assert!(set.has(CoreTable::User) && set.has(CoreTable::RateLimit));
        assert!(!set.has(CoreTable::Account));
        assert!(!set.has_all(&[CoreTable::User, CoreTable::Account]));
        assert_eq!(
            set.tables().collect::<Vec<_>>(),
            [CoreTable::User, CoreTable::RateLimit]
        );
        assert!(TableSet::of(CoreTable::ALL).has_all(&[CoreTable::User, CoreTable::Account]));
        assert!(undecided(TableSet::of([CoreTable::User]), set));
        assert!(!undecided(set, TableSet::of([CoreTable::RateLimit])));
    }
}
