//! Shared support for the integration tests, declared once by each test binary
//! (`tests/it/main.rs`, `tests/clusters/main.rs`) and used as `crate::support`.
//!
//! `server` finds or starts the PostgreSQL server (see its docs); it is also included by the
//! examples through `#[path]`, so it must stay self-contained.

pub mod app;
pub mod cluster;
pub mod pgbouncer;
pub mod replication;
pub mod server;

pub use server::{connect, database_url_with, fresh_database, server_url, url_from_env};
