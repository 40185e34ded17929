//! The hidden `driver` module behind a `DbAdapter`, called the way rustauth-deadpool-postgres
//! calls it: a `PostgresSqlState` made per call from a schema and a client. No transactions
//! (the deadpool crate runs its own BEGIN and COMMIT around driver calls). Used by the
//! integration tests (`schema_matrix.rs`) and by `benches/instructions.rs`.

use rustauth_core::db::{
    AdapterFuture, Count, Create, DbAdapter, DbRecord, DbSchema, Delete, DeleteMany, FindMany,
    FindOne, TransactionCallback, Update, UpdateMany,
};
use rustauth_core::error::RustAuthError;
use rustauth_tokio_postgres::driver::PostgresSqlState;

/// CRUD through the driver on one client.
pub struct DriverAdapter {
    pub schema: DbSchema,
    pub client: tokio_postgres::Client,
}

impl DriverAdapter {
    fn state(&self) -> PostgresSqlState<'_> {
        PostgresSqlState::new(&self.schema, &self.client)
    }
}

impl DbAdapter for DriverAdapter {
    fn id(&self) -> &str {
        "driver"
    }

    fn create<'a>(&'a self, query: Create) -> AdapterFuture<'a, DbRecord> {
        Box::pin(self.state().create(query))
    }

    fn find_one<'a>(&'a self, query: FindOne) -> AdapterFuture<'a, Option<DbRecord>> {
        Box::pin(self.state().find_one(query))
    }

    fn find_many<'a>(&'a self, query: FindMany) -> AdapterFuture<'a, Vec<DbRecord>> {
        Box::pin(self.state().find_many(query))
    }

    fn count<'a>(&'a self, query: Count) -> AdapterFuture<'a, u64> {
        Box::pin(self.state().count(query))
    }

    fn update<'a>(&'a self, query: Update) -> AdapterFuture<'a, Option<DbRecord>> {
        Box::pin(self.state().update(query))
    }

    fn update_many<'a>(&'a self, query: UpdateMany) -> AdapterFuture<'a, u64> {
        Box::pin(self.state().update_many(query))
    }

    fn delete<'a>(&'a self, query: Delete) -> AdapterFuture<'a, ()> {
        Box::pin(self.state().delete(query))
    }

    fn delete_many<'a>(&'a self, query: DeleteMany) -> AdapterFuture<'a, u64> {
        Box::pin(self.state().delete_many(query))
    }

    fn transaction<'a>(&'a self, _callback: TransactionCallback<'a>) -> AdapterFuture<'a, ()> {
        Box::pin(async {
            Err(RustAuthError::Adapter(
                "DriverAdapter runs no transactions (the caller's BEGIN/COMMIT are its own)"
                    .to_owned(),
            ))
        })
    }
}
