//! Tests that run their own PostgreSQL clusters or pools (TLS, reconnects, PgBouncer,
//! failover) and the soaks: slower, so they build and run as a binary of their own.

// `pub`: what a binary does not use of the shared modules is not dead code there.
#[path = "../crud_common/mod.rs"]
pub mod crud_common;
#[path = "../fixtures/mod.rs"]
pub mod fixtures;
#[path = "../support/mod.rs"]
pub mod support;
#[path = "../support_proxy/mod.rs"]
pub mod support_proxy;

mod failover;
mod pgbouncer;
mod quiet_log;
mod reconnect;
mod soak;
mod tls;
