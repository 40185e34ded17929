//! One CRUD call on a connection: the typed statement when the router has one for its shape,
//! the generic path otherwise. Shared by the adapter and its transaction adapter.
//!
//! [`CallState`] is the per-adapter state every call reads: the typed router's decision, the
//! generic path's shape cache and how many calls typed statements served. The adapter, its
//! clones and its transaction adapters share one.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::future::{ready, Either, Ready};

use crate::error::Result;
use crate::generic;
use crate::runner::Db;
use crate::shapes::Shapes;
use crate::typed::Router;
use rustauth_core::db::{
    Count, Create, DbRecord, DbSchema, Delete, DeleteMany, FindMany, FindOne, Update, UpdateMany,
};

/// What one adapter's calls share (see the module docs).
#[derive(Debug)]
pub(crate) struct CallState {
    /// Which calls typed statements may serve (decided when the adapter is built).
    pub(crate) router: Router,
    /// The generic path's plans by query shape (`None`: every generic call is planned).
    shapes: Option<Shapes>,
    /// Calls typed statements served.
    served: AtomicU64,
}

impl CallState {
    /// The state for `schema`, with typed statements and the shape cache on or off.
    pub(crate) fn new(schema: &DbSchema, typed: bool, shapes: bool) -> Self {
        Self {
            router: Router::new(schema, typed),
            shapes: shapes.then(Shapes::default),
            served: AtomicU64::new(0),
        }
    }

    /// The generic path's shape cache, when it is on.
    pub(crate) fn shapes(&self) -> Option<&Shapes> {
        self.shapes.as_ref()
    }

    /// Empties the shape cache (after a migration through this adapter).
    pub(crate) fn forget_plans(&self) {
        if let Some(shapes) = &self.shapes {
            shapes.clear();
        }
    }

    /// How many calls typed statements have served.
    pub(crate) fn served(&self) -> u64 {
        self.served.load(Ordering::SeqCst)
    }

    /// Counts a call a typed statement served.
    fn count<T>(&self, routed: Option<Result<T>>) -> Option<Result<T>> {
        if matches!(routed, Some(Ok(_))) {
            self.served.fetch_add(1, Ordering::Relaxed);
        }
        routed
    }
}

/// Where and against what schema a call runs.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) db: Db<'a>,
    pub(crate) schema: &'a DbSchema,
    pub(crate) state: &'a CallState,
}

/// The `Call` methods a typed statement may serve: each asks the router first, and runs the
/// generic path when it declines ([`Call::or_generic`]).
macro_rules! routed_methods {
    ($($method:ident($query:ty) -> $output:ty;)*) => {$(
        pub(crate) fn $method(self, query: $query) -> impl Future<Output = Result<$output>> + 'a {
            async move {
                let routed = self.router().$method(self.db, self.schema, &query).await;
                self.or_generic(routed, || {
                    generic::$method(self.db, self.schema, self.shapes(), query)
                })
                .await
            }
        }
    )*};
}

/// The generic path's futures are boxed where a typed statement may serve the call instead
/// (the typed statement's own future is boxed by the runner): the generic future is about
/// 3 KB (planning, the shape cache, decoding), and inline it would size every call's future,
/// which each call then moves several times (`benches/instructions.sh` measures the cost).
///
/// The methods return `async move` blocks rather than being `async fn`s: an `async fn` keeps
/// its arguments twice in its state (as arguments, then as the locals its body moves them
/// into), and the query is 144 bytes for a `FindOne`. Smaller, the adapter's boxed call future
/// stays within the allocator's per-thread cache (see [`crate::trace::traced`]).
#[allow(clippy::manual_async_fn)]
impl<'a> Call<'a> {
    fn router(&self) -> &Router {
        &self.state.router
    }

    fn shapes(&self) -> Option<&'a Shapes> {
        self.state.shapes()
    }

    /// The typed statement's result when one served the call (counted), or else the future
    /// `generic` makes, boxed (see above). Not `async`: it holds nothing across an await.
    fn or_generic<T, G>(
        self,
        routed: Option<Result<T>>,
        generic: impl FnOnce() -> G,
    ) -> Either<Ready<Result<T>>, Pin<Box<G>>>
    where
        G: Future<Output = Result<T>>,
    {
        match self.state.count(routed) {
            Some(result) => Either::Left(ready(result)),
            None => Either::Right(Box::pin(generic())),
        }
    }

    routed_methods! {
        create(Create) -> DbRecord;
        find_one(FindOne) -> Option<DbRecord>;
        find_many(FindMany) -> Vec<DbRecord>;
        update(Update) -> Option<DbRecord>;
        delete(Delete) -> ();
        delete_many(DeleteMany) -> u64;
    }

    pub(crate) fn count(self, query: Count) -> impl Future<Output = Result<u64>> + 'a {
        async move { generic::count(self.db, self.schema, self.shapes(), query).await }
    }

    pub(crate) fn update_many(self, query: UpdateMany) -> impl Future<Output = Result<u64>> + 'a {
        async move { generic::update_many(self.db, self.schema, self.shapes(), query).await }
    }
}

/// The eight CRUD methods of `DbAdapter` (`create` … `delete_many`), written once for the
/// adapter and its transaction adapter: each opens its span, runs the statements given
/// before `=>` (the adapter takes a member of the set there), and makes one [`Call`] with
/// the expression after it. `$this` names `self` inside them.
macro_rules! crud_methods {
    (|$this:ident| { $($setup:tt)* } => $call:expr) => {
        $crate::call::crud_methods!(@one create, Create, DbRecord, one,
            |$this| { $($setup)* } => $call);
        $crate::call::crud_methods!(@one find_one, FindOne, Option<DbRecord>, found,
            |$this| { $($setup)* } => $call);
        $crate::call::crud_methods!(@one find_many, FindMany, Vec<DbRecord>, listed,
            |$this| { $($setup)* } => $call);
        $crate::call::crud_methods!(@one count, Count, u64, unknown,
            |$this| { $($setup)* } => $call);
        $crate::call::crud_methods!(@one update, Update, Option<DbRecord>, found,
            |$this| { $($setup)* } => $call);
        $crate::call::crud_methods!(@one update_many, UpdateMany, u64, counted,
            |$this| { $($setup)* } => $call);
        $crate::call::crud_methods!(@one delete, Delete, (), unknown,
            |$this| { $($setup)* } => $call);
        $crate::call::crud_methods!(@one delete_many, DeleteMany, u64, counted,
            |$this| { $($setup)* } => $call);
    };
    (@one $method:ident, $query:ty, $output:ty, $rows:ident,
        |$this:ident| { $($setup:tt)* } => $call:expr) => {
        fn $method<'a>(&'a self, query: $query) -> AdapterFuture<'a, $output> {
            let span = $crate::trace::call_span(stringify!($method), &query.model);
            Box::pin($crate::trace::traced(span, $crate::trace::$rows, async move {
                let $this = self;
                $($setup)*
                $call.$method(query).await
            }))
        }
    };
}
pub(crate) use crud_methods;
