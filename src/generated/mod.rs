// @generated source-hash: fnv1a64:2624a17d1a537b8d (migrations/, queries/) by build.rs with cornucopia 1.0.1.
// Do not edit: change migrations/ or queries/, then run RUSTAUTH_PG_CODEGEN_URL=postgres://postgres@127.0.0.1:5432 RUSTAUTH_PG_CODEGEN_WRITE=1 cargo build --features codegen

#![cfg_attr(rustfmt, rustfmt_skip)]
//! Typed statements for the core tables: cornucopia's output for `queries/`, checked
//! against the schema of `migrations/`, rewritten into this module by `build.rs`.
//!
//! Each function of [`queries`](crate::generated::queries) returns a statement
//! handle: `prepare` it once per connection, then `bind` its parameters and run it
//! with `one`, `opt`, `all` or `iter` on a `tokio_postgres::Client` or `Transaction`
//! (see [`GenericClient`](crate::generated::client::GenericClient)).
#![allow(
    clippy::all,
    clippy::pedantic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]
/// One module per file of `queries/`.
#[allow(clippy::all, clippy::pedantic)]
#[allow(unused_variables)]
#[allow(unused_imports)]
#[allow(dead_code)]
pub mod queries;
/// Cornucopia's client layer: [`GenericClient`](client::GenericClient) over `tokio_postgres::Client` and `Transaction`, and the helpers the statements run through.
pub mod client;
mod domain;
mod type_traits;
mod utils;
pub(crate) use utils::slice_iter;
pub use domain::{Domain, DomainArray};
pub use type_traits::{ArraySql, BytesSql, IterSql, StringSql};
pub use tokio_postgres;
pub use tokio_postgres::fallible_iterator;
