#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod adapter;
mod call;
mod catalog;
mod connect;
mod connection;
mod error;
/// Typed statements for the core tables, generated at build time from `queries/` (see `build.rs`).
pub mod generated;
mod generic;
#[doc(hidden)]
pub mod layout;
mod live;
pub(crate) mod migrate;
mod prepared;
mod rate_limit;
mod runner;
mod shapes;
mod statements;
mod stores;
mod tls;
mod trace;
mod transaction;
mod typed;
mod values;

#[doc(hidden)]
pub mod driver;

pub use adapter::TokioPostgresAdapter;
pub use connection::TokioPostgresConnection;
pub use rate_limit::TokioPostgresRateLimitStore;
pub use stores::{TokioPostgresStores, TokioPostgresStoresBuilder};
