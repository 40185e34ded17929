//! The size of the future each hot call boxes.
//!
//! `DbAdapter` and `RateLimitStore` return every call as a boxed future, so each call
//! allocates one block of its future's size. glibc's allocator serves blocks of up to 1,032
//! bytes from a per-thread cache; a larger block takes its slow path, which also merges the
//! fast lists of small freed blocks on every call, so the small allocations after it take the
//! slow path as well (in `benches/instructions.sh`, a typed find-by-email cost about 280
//! instructions more when its boxed future was 1,304 bytes). `trace::traced`, the `Call`
//! methods and the rate-limit consume are written to keep these futures under that size (see
//! their docs); this pins it down for the calls RustAuth makes most, on the adapter, inside
//! a transaction and on the rate-limit store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use crate::fixtures::{consume_input, read_in_transaction, schema};
use crate::support;

use std::mem::size_of_val;

use rustauth_core::db::{Create, DbAdapter, Delete, FindMany, FindOne, Update};
use rustauth_core::options::RateLimitStore;
use rustauth_tokio_postgres::TokioPostgresAdapter;

/// The largest block glibc's per-thread cache serves (`MAX_TCACHE_SIZE` on 64-bit targets).
const CACHED_BLOCK: usize = 1032;

/// The boxed future of each hot CRUD method, built and dropped without running.
fn sizes(db: &dyn DbAdapter) -> Vec<(&'static str, usize)> {
    vec![
        ("create", size_of_val(&*db.create(Create::new("session")))),
        ("find_one", size_of_val(&*db.find_one(FindOne::new("user")))),
        (
            "find_many",
            size_of_val(&*db.find_many(FindMany::new("session"))),
        ),
        ("update", size_of_val(&*db.update(Update::new("session")))),
        ("delete", size_of_val(&*db.delete(Delete::new("session")))),
    ]
}

fn assert_cached(place: &str, sizes: &[(&'static str, usize)]) {
    for (method, size) in sizes {
        assert!(
            *size <= CACHED_BLOCK,
            "{place}: the boxed future of `{method}` is {size} bytes, over the {CACHED_BLOCK} \
             bytes glibc's per-thread cache serves (all: {sizes:?})"
        );
    }
}

#[tokio::test]
async fn hot_call_futures_fit_the_allocators_cache() {
    let url = support::fresh_database("footprint").await;
    let adapter = TokioPostgresAdapter::connect_with_schema(&url, schema())
        .await
        .expect("connect");
    assert_cached("adapter", &sizes(&adapter));

    let store = adapter.rate_limit_store();
    let consume = store.consume(consume_input("footprint", 10, 5, 0));
    assert_cached("rate-limit store", &[("consume", size_of_val(&*consume))]);
    drop(consume);

    let in_transaction = read_in_transaction(&adapter, sizes).await;
    assert_cached("transaction adapter", &in_transaction);
}
