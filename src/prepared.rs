//! The typed statements of one connection, prepared together the first time they are needed.
//!
//! Statements are grouped by the tables they touch, so a database without (say) a
//! `rate_limits` table still gets every other typed statement. The first call that needs a
//! group prepares every group the adapter's layout can use, all at once (their Parse messages
//! are pipelined on the connection). A group whose preparation fails (its table does not exist
//! yet) is simply not cached; the call takes the generic path, which reports the real error,
//! and a later call tries again. Migrations and SQLSTATE 0A000 clear every group.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_postgres::Client;

use crate::generated::queries::{account, rate_limit, session, user, verification};

/// Which groups an adapter's schema can use (see `typed::Layout`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Wanted {
    pub(crate) user: bool,
    pub(crate) session: bool,
    pub(crate) account: bool,
    pub(crate) verification: bool,
    pub(crate) rate_limit: bool,
}

impl Wanted {
    /// Whether the sign-in join (users with accounts) is usable.
    pub(crate) fn user_with_accounts(self) -> bool {
        self.user && self.account
    }
}

/// Statements on `users`.
pub(crate) struct UserStatements {
    pub(crate) by_id: user::UserByIdStmt,
    pub(crate) by_email: user::UserByEmailStmt,
    pub(crate) insert: user::InsertUserStmt,
    pub(crate) set_email_verified: user::SetUserEmailVerifiedStmt,
}

/// The sign-in join of `users` and `accounts`.
pub(crate) struct UserWithAccountsStatements {
    pub(crate) by_email: user::UserByEmailWithAccountsStmt,
}

/// Statements on `sessions`.
pub(crate) struct SessionStatements {
    pub(crate) by_token: session::SessionByTokenStmt,
    pub(crate) by_user_id: session::SessionsByUserIdStmt,
    pub(crate) newest_by_user_id: session::NewestSessionsByUserIdStmt,
    pub(crate) insert: session::InsertSessionStmt,
    pub(crate) update_expiry: session::UpdateSessionExpiryStmt,
    pub(crate) delete_by_token: session::DeleteSessionByTokenStmt,
    pub(crate) delete_by_user_id: session::DeleteSessionsByUserIdStmt,
}

/// Statements on `accounts`.
pub(crate) struct AccountStatements {
    pub(crate) insert: account::InsertAccountStmt,
    pub(crate) update_password: account::UpdateAccountPasswordStmt,
}

/// Statements on `verifications`.
pub(crate) struct VerificationStatements {
    pub(crate) insert: verification::InsertVerificationStmt,
    pub(crate) newest_by_identifier: verification::NewestVerificationByIdentifierStmt,
    pub(crate) delete_by_identifier: verification::DeleteVerificationByIdentifierStmt,
    pub(crate) delete_expired: verification::DeleteExpiredVerificationsStmt,
}

/// The statement on `rate_limits`.
pub(crate) struct RateLimitStatements {
    pub(crate) consume: rate_limit::ConsumeRateLimitStmt,
}

/// The prepared groups of one connection.
#[derive(Default, Clone)]
pub(crate) struct Groups {
    pub(crate) user: Option<Arc<UserStatements>>,
    pub(crate) user_with_accounts: Option<Arc<UserWithAccountsStatements>>,
    pub(crate) session: Option<Arc<SessionStatements>>,
    pub(crate) account: Option<Arc<AccountStatements>>,
    pub(crate) verification: Option<Arc<VerificationStatements>>,
    pub(crate) rate_limit: Option<Arc<RateLimitStatements>>,
}

/// Per-connection holder of the typed statement groups.
#[derive(Default)]
pub(crate) struct TypedStatements {
    groups: Mutex<Groups>,
    /// Serialises preparation so concurrent first calls prepare once.
    preparing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for TypedStatements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TypedStatements").finish_non_exhaustive()
    }
}

impl TypedStatements {
    /// The prepared groups, preparing every wanted group that is missing first when
    /// `may_prepare` (never inside a transaction: a failed Parse there would abort it).
    pub(crate) async fn get(&self, client: &Client, wanted: Wanted, may_prepare: bool) -> Groups {
        let current = self.lock().clone();
        if !may_prepare || !missing(&current, wanted) {
            return current;
        }
        let _preparing = self.preparing.lock().await;
        let current = self.lock().clone();
        if !missing(&current, wanted) {
            return current;
        }
        let prepared = prepare_missing(client, &current, wanted).await;
        let mut groups = self.lock();
        merge(&mut groups, prepared);
        groups.clone()
    }

    /// Forgets every group (after migrations, or when a statement's plan went stale).
    pub(crate) fn clear(&self) {
        *self.lock() = Groups::default();
    }

    fn lock(&self) -> MutexGuard<'_, Groups> {
        // Every mutation is a single assignment, so a poisoned lock holds consistent data.
        self.groups.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn missing(groups: &Groups, wanted: Wanted) -> bool {
    (wanted.user && groups.user.is_none())
        || (wanted.user_with_accounts() && groups.user_with_accounts.is_none())
        || (wanted.session && groups.session.is_none())
        || (wanted.account && groups.account.is_none())
        || (wanted.verification && groups.verification.is_none())
        || (wanted.rate_limit && groups.rate_limit.is_none())
}

fn merge(groups: &mut Groups, prepared: Groups) {
    groups.user = groups.user.take().or(prepared.user);
    groups.user_with_accounts = groups
        .user_with_accounts
        .take()
        .or(prepared.user_with_accounts);
    groups.session = groups.session.take().or(prepared.session);
    groups.account = groups.account.take().or(prepared.account);
    groups.verification = groups.verification.take().or(prepared.verification);
    groups.rate_limit = groups.rate_limit.take().or(prepared.rate_limit);
}

/// Prepares every wanted group that `current` lacks, concurrently; failures are left out.
async fn prepare_missing(client: &Client, current: &Groups, wanted: Wanted) -> Groups {
    let user = async {
        if !wanted.user || current.user.is_some() {
            return None;
        }
        let (by_id, by_email, insert, set_email_verified) = tokio::try_join!(
            user::user_by_id().prepare(client),
            user::user_by_email().prepare(client),
            user::insert_user().prepare(client),
            user::set_user_email_verified().prepare(client),
        )
        .ok()?;
        Some(Arc::new(UserStatements {
            by_id,
            by_email,
            insert,
            set_email_verified,
        }))
    };
    let user_with_accounts = async {
        if !wanted.user_with_accounts() || current.user_with_accounts.is_some() {
            return None;
        }
        let by_email = user::user_by_email_with_accounts()
            .prepare(client)
            .await
            .ok()?;
        Some(Arc::new(UserWithAccountsStatements { by_email }))
    };
    let session = async {
        if !wanted.session || current.session.is_some() {
            return None;
        }
        let (
            by_token,
            by_user_id,
            newest_by_user_id,
            insert,
            update_expiry,
            delete_by_token,
            delete_by_user_id,
        ) = tokio::try_join!(
            session::session_by_token().prepare(client),
            session::sessions_by_user_id().prepare(client),
            session::newest_sessions_by_user_id().prepare(client),
            session::insert_session().prepare(client),
            session::update_session_expiry().prepare(client),
            session::delete_session_by_token().prepare(client),
            session::delete_sessions_by_user_id().prepare(client),
        )
        .ok()?;
        Some(Arc::new(SessionStatements {
            by_token,
            by_user_id,
            newest_by_user_id,
            insert,
            update_expiry,
            delete_by_token,
            delete_by_user_id,
        }))
    };
    let account = async {
        if !wanted.account || current.account.is_some() {
            return None;
        }
        let (insert, update_password) = tokio::try_join!(
            account::insert_account().prepare(client),
            account::update_account_password().prepare(client),
        )
        .ok()?;
        Some(Arc::new(AccountStatements {
            insert,
            update_password,
        }))
    };
    let verification = async {
        if !wanted.verification || current.verification.is_some() {
            return None;
        }
        let (insert, newest_by_identifier, delete_by_identifier, delete_expired) =
            tokio::try_join!(
                verification::insert_verification().prepare(client),
                verification::newest_verification_by_identifier().prepare(client),
                verification::delete_verification_by_identifier().prepare(client),
                verification::delete_expired_verifications().prepare(client),
            )
            .ok()?;
        Some(Arc::new(VerificationStatements {
            insert,
            newest_by_identifier,
            delete_by_identifier,
            delete_expired,
        }))
    };
    let rate_limit = async {
        if !wanted.rate_limit || current.rate_limit.is_some() {
            return None;
        }
        let consume = rate_limit::consume_rate_limit()
            .prepare(client)
            .await
            .ok()?;
        Some(Arc::new(RateLimitStatements { consume }))
    };
    let (user, user_with_accounts, session, account, verification, rate_limit) = tokio::join!(
        user,
        user_with_accounts,
        session,
        account,
        verification,
        rate_limit
    );
    Groups {
        user,
        user_with_accounts,
        session,
        account,
        verification,
        rate_limit,
    }
}
