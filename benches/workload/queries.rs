//! The query structs, built as rustauth-core 0.3.2 builds them.

use rustauth_core::db::{
    Create, DbValue, Delete, FindMany, FindOne, JoinOption, Sort, SortDirection, Update, Where,
};
use rustauth_core::options::{RateLimitConsumeInput, RateLimitRule};
use time::OffsetDateTime;

use super::*;

// ---------------------------------------------------------------------------------------------
// The query structs, built as core builds them.

pub fn q_session_by_token(token: &str, session_fields: bool) -> FindOne {
    let query =
        FindOne::new("session").where_clause(Where::new("token", DbValue::String(token.into())));
    if session_fields {
        query.select(SESSION_FIELDS)
    } else {
        query
    }
}

pub fn q_user_by_id(id: &str, user_fields: bool) -> FindOne {
    let query = FindOne::new("user").where_clause(Where::new("id", DbValue::String(id.into())));
    if user_fields {
        query.select(USER_FIELDS)
    } else {
        query
    }
}

pub fn q_user_by_email(email: &str) -> FindOne {
    FindOne::new("user")
        .where_clause(Where::new("email", DbValue::String(email.into())))
        .select(USER_FIELDS)
}

pub fn q_user_by_email_with_accounts(email: &str) -> FindOne {
    q_user_by_email(email).join("account", JoinOption::enabled())
}

pub fn q_create_session(
    id: String,
    user_id: String,
    token: String,
    expires_at: OffsetDateTime,
    now: OffsetDateTime,
) -> Create {
    Create::new("session")
        .data("id", DbValue::String(id))
        .data("user_id", DbValue::String(user_id))
        .data("expires_at", DbValue::Timestamp(expires_at))
        .data("token", DbValue::String(token))
        .data("ip_address", DbValue::String(IP_ADDRESS.into()))
        .data("user_agent", DbValue::String(USER_AGENT.into()))
        .data("created_at", DbValue::Timestamp(now))
        .data("updated_at", DbValue::Timestamp(now))
        .select(SESSION_FIELDS)
        .force_allow_id()
}

pub fn q_delete_session(token: &str) -> Delete {
    Delete::new("session").where_clause(Where::new("token", DbValue::String(token.into())))
}

pub fn q_refresh_session(token: &str, expires_at: OffsetDateTime, now: OffsetDateTime) -> Update {
    Update::new("session")
        .where_clause(Where::new("token", DbValue::String(token.into())))
        .data("expires_at", DbValue::Timestamp(expires_at))
        .data("updated_at", DbValue::Timestamp(now))
}

pub fn q_sessions_of_user(user_id: &str) -> FindMany {
    FindMany::new("session")
        .where_clause(Where::new("user_id", DbValue::String(user_id.into())))
        .sort_by(Sort::new("created_at", SortDirection::Desc))
        .limit(10)
        .select(SESSION_FIELDS)
}

pub fn q_create_user(id: String, email: String, now: OffsetDateTime) -> Create {
    Create::new("user")
        .data("id", DbValue::String(id))
        .data("name", DbValue::String("Bench User".into()))
        .data("email", DbValue::String(email))
        .data("email_verified", DbValue::Boolean(false))
        .data("image", DbValue::Null)
        .data("created_at", DbValue::Timestamp(now))
        .data("updated_at", DbValue::Timestamp(now))
        .force_allow_id()
        .select(USER_FIELDS)
}

pub fn q_create_account(id: String, user_id: String, now: OffsetDateTime) -> Create {
    Create::new("account")
        .data("id", DbValue::String(id))
        .data("provider_id", DbValue::String("credential".into()))
        .data("account_id", DbValue::String(user_id.clone()))
        .data("user_id", DbValue::String(user_id))
        .data("access_token", DbValue::Null)
        .data("refresh_token", DbValue::Null)
        .data("id_token", DbValue::Null)
        .data("access_token_expires_at", DbValue::Null)
        .data("refresh_token_expires_at", DbValue::Null)
        .data("scope", DbValue::Null)
        .data("password", DbValue::String(PASSWORD_HASH.into()))
        .data("created_at", DbValue::Timestamp(now))
        .data("updated_at", DbValue::Timestamp(now))
        .select(ACCOUNT_FIELDS)
        .force_allow_id()
}

pub fn rate_limit_input(key: String) -> RateLimitConsumeInput {
    RateLimitConsumeInput {
        key,
        rule: RateLimitRule::new(
            time::Duration::seconds(RATE_LIMIT_WINDOW_SECONDS),
            RATE_LIMIT_MAX,
        ),
        now_ms: now_ms(),
    }
}
