//! Compatibility check: `rustauth-deadpool-postgres` 0.3.2 on this `rustauth-tokio-postgres`.
//!
//! The tests are the point; this library only re-exports the two crates under test so that
//! `cargo build` fails here when the `driver` module no longer offers what 0.3.2's deadpool
//! adapter calls.

pub use rustauth_deadpool_postgres;
pub use rustauth_tokio_postgres;
