//! One CRUD call on a connection: the typed statement when the router has one for its shape,
//! the generic path otherwise. Shared by the adapter and its transaction adapter.

use crate::error::Result;
use crate::generic;
use crate::runner::Db;
use crate::typed::Router;
use rustauth_core::db::{
    Count, Create, DbRecord, DbSchema, Delete, DeleteMany, FindMany, FindOne, Update, UpdateMany,
};

/// Where and against what schema a call runs.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) db: Db<'a>,
    pub(crate) schema: &'a DbSchema,
    pub(crate) router: &'a Router,
}

impl Call<'_> {
    pub(crate) async fn create(self, query: Create) -> Result<DbRecord> {
        match self.router.create(self.db, self.schema, &query).await {
            Some(result) => result,
            None => generic::create(self.db, self.schema, self.router.shapes(), query).await,
        }
    }

    pub(crate) async fn find_one(self, query: FindOne) -> Result<Option<DbRecord>> {
        match self.router.find_one(self.db, self.schema, &query).await {
            Some(result) => result,
            None => generic::find_one(self.db, self.schema, self.router.shapes(), query).await,
        }
    }

    pub(crate) async fn find_many(self, query: FindMany) -> Result<Vec<DbRecord>> {
        match self.router.find_many(self.db, self.schema, &query).await {
            Some(result) => result,
            None => generic::find_many(self.db, self.schema, self.router.shapes(), query).await,
        }
    }

    pub(crate) async fn count(self, query: Count) -> Result<u64> {
        generic::count(self.db, self.schema, self.router.shapes(), query).await
    }

    pub(crate) async fn update(self, query: Update) -> Result<Option<DbRecord>> {
        match self.router.update(self.db, self.schema, &query).await {
            Some(result) => result,
            None => generic::update(self.db, self.schema, self.router.shapes(), query).await,
        }
    }

    pub(crate) async fn update_many(self, query: UpdateMany) -> Result<u64> {
        generic::update_many(self.db, self.schema, self.router.shapes(), query).await
    }

    pub(crate) async fn delete(self, query: Delete) -> Result<()> {
        match self.router.delete(self.db, self.schema, &query).await {
            Some(result) => result,
            None => generic::delete(self.db, self.schema, self.router.shapes(), query).await,
        }
    }

    pub(crate) async fn delete_many(self, query: DeleteMany) -> Result<u64> {
        match self.router.delete_many(self.db, self.schema, &query).await {
            Some(result) => result,
            None => generic::delete_many(self.db, self.schema, self.router.shapes(), query).await,
        }
    }
}
