// @generated source-hash: fnv1a64:2624a17d1a537b8d (migrations/, queries/) by build.rs with cornucopia 1.0.1.
// Do not edit: change migrations/ or queries/, then run RUSTAUTH_PG_CODEGEN_URL=postgres://postgres@127.0.0.1:5432 RUSTAUTH_PG_CODEGEN_WRITE=1 cargo build --features codegen

#![cfg_attr(rustfmt, rustfmt_skip)]
//! Typed statements for the core tables: cornucopia's output for `queries/`, checked
//! against the schema of `migrations/` and committed; `build.rs` regenerates it only
//! with the `codegen` feature.
//!
//! Each function of [`queries`] returns a statement handle: `prepare` it once per
//! connection, then `bind` its parameters and run it with `one`, `opt`, `all` or
//! `iter` on any [`GenericClient`]: a `tokio_postgres::Client` or `Transaction`.
//!
//! [`GenericClient`]: client::GenericClient
#![allow(clippy::all, clippy::pedantic)]
/// The statements: one module per file of `queries/`.
#[allow(clippy::all, clippy::pedantic)]
#[allow(unused_variables)]
#[allow(unused_imports)]
#[allow(dead_code)]
pub mod queries;
/// The client trait the statements take: [`GenericClient`](client::GenericClient).
pub mod client;
mod type_traits;
mod utils;
pub(crate) use utils::slice_iter;
pub use type_traits::StringSql;
