//! Tests that run their own PostgreSQL clusters or pools (TLS, reconnects, PgBouncer,
//! failover) and the soaks: slower, so they build and run as a binary of their own.

#[path = "../crud_common/mod.rs"]
mod crud_common;
#[path = "../support/mod.rs"]
mod support;
#[path = "../support_proxy/mod.rs"]
mod support_proxy;

mod failover;
mod pgbouncer;
mod quiet_log;
mod reconnect;
mod soak;
mod tls;
