//! `TokioPostgresAdapter`: RustAuth's `DbAdapter` on one PostgreSQL connection.

use std::fmt;
use std::sync::Arc;

use rustauth_core::db::sql::SchemaMigrationPlan;
use rustauth_core::db::{
    auth_schema, AdapterCapabilities, AdapterFuture, AuthSchemaOptions, Count, Create, DbAdapter,
    DbRecord, DbSchema, Delete, DeleteMany, FindMany, FindOne, SchemaCreation, TransactionCallback,
    Update, UpdateMany,
};
use rustauth_core::error::RustAuthError;
use rustauth_core::plugin::PluginMigration;
use tokio_postgres::Client;

use crate::call::{Call, CallState};
use crate::connection::{Lease, Settings, TokioPostgresConnection};
use crate::error::{AcquireError, Error};
use crate::live::ClientHandle;
use crate::rate_limit::TokioPostgresRateLimitStore;
use crate::runner::Db;
use crate::transaction::RollbackOnDrop;
use crate::{migrate, transaction};

/// Identifier the adapter reports.
const ADAPTER_ID: &str = "tokio-postgres";

/// The capabilities both the adapter and its transaction adapter report.
pub(crate) fn capabilities(id: &str, name: &str) -> AdapterCapabilities {
    let mut capabilities = AdapterCapabilities::new(id).named(name);
    capabilities.supports_numeric_ids = true;
    capabilities.supports_uuid_ids = true;
    capabilities.supports_json = true;
    capabilities.supports_dates = true;
    capabilities.supports_booleans = true;
    capabilities.supports_arrays = true;
    capabilities.supports_joins = true;
    capabilities.supports_native_joins = true;
    capabilities.supports_transactions = true;
    capabilities.disable_id_generation = false;
    capabilities
}

/// RustAuth's database adapter on a tokio-postgres connection.
///
/// CRUD calls use the schema given at construction; migration methods use their argument.
/// Every statement runs prepared and is cached per connection, so a warm call is one round
/// trip.
#[derive(Clone)]
pub struct TokioPostgresAdapter {
    connection: TokioPostgresConnection,
    schema: Arc<DbSchema>,
    state: Arc<CallState>,
}

impl fmt::Debug for TokioPostgresAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokioPostgresAdapter")
            .field("schema", &self.schema)
            .finish_non_exhaustive()
    }
}

impl TokioPostgresAdapter {
    /// An adapter on `client` with RustAuth's default schema. No I/O; the caller drives the
    /// client's connection future.
    pub fn new(client: Client) -> Self {
        Self::with_schema(client, auth_schema(AuthSchemaOptions::default()))
    }

    /// An adapter on `client` with `schema`. No I/O.
    pub fn with_schema(client: Client, schema: DbSchema) -> Self {
        Self::with_connection(TokioPostgresConnection::from_client(client), schema)
    }

    /// An adapter on a (possibly shared) connection with `schema`. No I/O.
    pub fn with_connection(connection: TokioPostgresConnection, schema: DbSchema) -> Self {
        let state = Arc::new(CallState::new(&schema, true, true));
        Self {
            connection,
            schema: Arc::new(schema),
            state,
        }
    }

    /// The same adapter (same connection and schema) with the typed statements for RustAuth's
    /// hot calls on (the default) or off: off, every call takes the generic path. Decided
    /// here, once, not on every call; the differential tests compare the two.
    #[doc(hidden)]
    #[must_use]
    pub fn with_typed_statements(&self, enabled: bool) -> Self {
        Self {
            connection: self.connection.clone(),
            schema: Arc::clone(&self.schema),
            state: Arc::new(CallState::new(
                &self.schema,
                enabled,
                self.state.shapes().is_some(),
            )),
        }
    }

    /// This adapter with the generic path's shape cache on (the default) or off. Off, every
    /// generic call is planned afresh by rustauth-core; the differential and model tests run
    /// both ways and compare. Call it when building the adapter: clones made before keep the
    /// previous setting.
    #[doc(hidden)]
    pub fn with_shape_cache(mut self, enabled: bool) -> Self {
        self.state = Arc::new(CallState::new(
            &self.schema,
            self.state.router.enabled(),
            enabled,
        ));
        self
    }

    /// How many query shapes the generic path keeps planned for this adapter (and its clones).
    #[doc(hidden)]
    pub fn cached_shape_count(&self) -> usize {
        self.state.shapes().map_or(0, |shapes| shapes.len())
    }

    /// How many calls of this adapter (and its clones) typed statements served.
    #[doc(hidden)]
    pub fn typed_call_count(&self) -> u64 {
        self.state.served()
    }

    /// The connection this adapter runs on.
    pub fn connection(&self) -> &TokioPostgresConnection {
        &self.connection
    }

    fn call<'a>(&'a self, db: Db<'a>) -> Call<'a> {
        Call {
            db,
            schema: &self.schema,
            state: &self.state,
        }
    }

    /// A member of the set for one ordinary call, and its current client.
    async fn lease(&self) -> Result<(Lease, Arc<ClientHandle>), RustAuthError> {
        let lease = self.connection.call().await?;
        let handle = lease.handle().await?;
        Ok((lease, handle))
    }

    /// A rate-limit store sharing this adapter's connection and gate, on the schema's
    /// `rate_limit` table (same as `TokioPostgresRateLimitStore::from(&adapter)`).
    pub fn rate_limit_store(&self) -> TokioPostgresRateLimitStore {
        TokioPostgresRateLimitStore::from(self)
    }

    /// How busy the adapter's connection set is (see [`TokioPostgresConnection::status`]).
    pub fn status(&self) -> crate::ConnectionStatus {
        self.connection.status()
    }

    /// Connects to `database_url` (a URL or key/value string) and uses RustAuth's default
    /// schema.
    ///
    /// Besides what tokio-postgres reads, the string may carry `sslmode` (default `prefer`:
    /// TLS when the server offers it), `sslrootcert`, `sslcert`/`sslkey`, `statement_mode`
    /// (`prepared` or `unprepared`, for PgBouncer in transaction mode) and `max_connections`
    /// (default 1).
    pub async fn connect(database_url: &str) -> Result<Self, RustAuthError> {
        Self::connect_with_schema(database_url, auth_schema(AuthSchemaOptions::default())).await
    }

    /// Connects to `database_url` like [`connect`](Self::connect) and uses `schema`.
    pub async fn connect_with_schema(
        database_url: &str,
        schema: DbSchema,
    ) -> Result<Self, RustAuthError> {
        Self::connect_with_settings(database_url, schema, Settings::default()).await
    }

    /// [`connect_with_schema`](Self::connect_with_schema), with `settings` overriding the
    /// string's.
    pub(crate) async fn connect_with_settings(
        database_url: &str,
        schema: DbSchema,
        settings: Settings,
    ) -> Result<Self, RustAuthError> {
        let connection =
            TokioPostgresConnection::connect_with_settings(database_url, settings).await?;
        let adapter = Self::with_connection(connection, schema);
        // Prepare the typed statements of every connection now (pipelined), so the first
        // requests do not wait for them (a connection made again prepares them too); tables
        // that do not exist yet are prepared later.
        if adapter.state.router.enabled() {
            adapter.connection.warm(adapter.state.router.wanted()).await;
        }
        Ok(adapter)
    }

    /// What `run_migrations(schema)` would do to this database, without doing it.
    pub async fn plan_migrations(
        &self,
        schema: &DbSchema,
    ) -> Result<SchemaMigrationPlan, RustAuthError> {
        // Planning only reads the catalogs, so it shares the gate (0.3.2 took it exclusively).
        let (_lease, handle) = self.lease().await?;
        Ok(migrate::plan(&handle.client, schema).await?)
    }

    /// The planned migration as SQL text (`;` alone when there is nothing to do).
    pub async fn compile_migrations(&self, schema: &DbSchema) -> Result<String, RustAuthError> {
        Ok(self.plan_migrations(schema).await?.compile())
    }

    async fn migrate(&self, schema: &DbSchema) -> Result<(), RustAuthError> {
        Ok(self
            .alone(
                |handle| async move { migrate::migrate(&handle.client, schema).await.map(|_| ()) },
            )
            .await?)
    }

    /// Runs `work` on one connection while every connection of the set is held exclusively
    /// (migrations run alone), then forgets every prepared statement, catalog and planned
    /// shape.
    async fn alone<F, Fut>(&self, work: F) -> Result<(), Error>
    where
        F: FnOnce(Arc<ClientHandle>) -> Fut,
        Fut: std::future::Future<Output = Result<(), Error>>,
    {
        let mut all = self.connection.migration().await?;
        if all.is_empty() {
            return Err(Error::Acquire(AcquireError::EmptySet));
        }
        let first = all.remove(0);
        let handle = first.handle().await?;
        // A migration dropped half-way would leave its transaction open on the connection.
        let mut guard = RollbackOnDrop::new(Arc::clone(&handle), first);
        let result = work(Arc::clone(&handle)).await;
        self.connection.clear_statements();
        self.state.forget_plans();
        guard.finish();
        drop(all);
        result
    }
}

impl DbAdapter for TokioPostgresAdapter {
    fn id(&self) -> &str {
        ADAPTER_ID
    }

    fn capabilities(&self) -> AdapterCapabilities {
        capabilities(ADAPTER_ID, ADAPTER_ID)
    }

    crate::call::crud_methods!(|this| {
        let (_lease, handle) = this.lease().await?;
    } => this.call(Db::on(&handle)));

    fn transaction<'a>(&'a self, callback: TransactionCallback<'a>) -> AdapterFuture<'a, ()> {
        Box::pin(transaction::run(
            &self.connection,
            &self.schema,
            &self.state,
            callback,
        ))
    }

    fn create_schema<'a>(
        &'a self,
        schema: &'a DbSchema,
        _file: Option<&'a str>,
    ) -> AdapterFuture<'a, Option<SchemaCreation>> {
        Box::pin(async move {
            self.migrate(schema).await?;
            Ok(None)
        })
    }

    fn run_migrations<'a>(&'a self, schema: &'a DbSchema) -> AdapterFuture<'a, ()> {
        Box::pin(self.migrate(schema))
    }

    fn run_plugin_migrations<'a>(
        &'a self,
        migrations: &'a [PluginMigration],
    ) -> AdapterFuture<'a, ()> {
        Box::pin(async move {
            Ok(self
                .alone(move |handle| async move {
                    migrate::apply_plugin_migrations(&handle.client, migrations).await
                })
                .await?)
        })
    }
}

impl From<&TokioPostgresAdapter> for TokioPostgresRateLimitStore {
    fn from(adapter: &TokioPostgresAdapter) -> Self {
        Self::from_connection_with_names(
            adapter.connection.clone(),
            rustauth_core::db::sql::SqlRateLimitNames::from_schema(&adapter.schema),
        )
    }
}
