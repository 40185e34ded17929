//! Integration tests on a real PostgreSQL server (the shared test server of
//! `support::server`), one module per area; see `docs/behaviour.md` §10 for what each covers.

// `pub`: what a binary does not use of the shared modules is not dead code there.
#[path = "../crud_common/mod.rs"]
pub mod crud_common;
#[path = "../fixtures/mod.rs"]
pub mod fixtures;
#[path = "../support/mod.rs"]
pub mod support;
#[path = "../support_proxy/mod.rs"]
pub mod support_proxy;

mod any_session;
mod bad_input;
mod codegen;
mod connection;
mod connection_set;
mod core_harness;
mod crud;
mod differential;
mod footprint;
mod injection;
mod joins;
mod leases;
mod lifetime;
mod live_catalog;
mod migrations_introspection;
mod model;
mod pools;
mod rate_limit;
mod round_trips;
mod routes;
mod schema_matrix;
mod statements;
mod support_selftest;
mod tracing;
mod transactions;
mod typed_routes;
mod values;
