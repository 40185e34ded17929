//! `TokioPostgresStores`: the adapter and the rate-limit store on one connection.

use std::sync::Arc;
use std::time::Duration;

use rustauth_core::db::{auth_schema, AuthSchemaOptions, DbAdapter, DbSchema};
use rustauth_core::error::RustAuthError;
use rustauth_core::options::{RateLimitStorageOption, RustAuthOptions};

use crate::adapter::TokioPostgresAdapter;
use crate::connection::Settings;
use crate::rate_limit::TokioPostgresRateLimitStore;

/// Builds [`TokioPostgresStores`] with a chosen schema.
#[derive(Debug, Clone)]
pub struct TokioPostgresStoresBuilder {
    schema: DbSchema,
    settings: Settings,
}

impl Default for TokioPostgresStoresBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TokioPostgresStoresBuilder {
    /// A builder with RustAuth's default schema.
    pub fn new() -> Self {
        Self {
            schema: auth_schema(AuthSchemaOptions::default()),
            settings: Settings::default(),
        }
    }

    /// Uses `schema` for the adapter and for the rate-limit store's table names.
    #[must_use]
    pub fn schema(mut self, schema: DbSchema) -> Self {
        self.schema = schema;
        self
    }

    /// Opens `count` connections (1 to 64) instead of the connection string's
    /// `max_connections` (default 1). Ordinary calls are spread over them, a transaction takes
    /// one for itself while the others keep serving, and each has its own prepared
    /// statements and reconnects on its own. `connect` opens all of them.
    #[must_use]
    pub fn max_connections(mut self, count: usize) -> Self {
        self.settings.max_connections = Some(count.clamp(1, crate::connect::MAX_CONNECTIONS));
        self
    }

    /// Bounds every wait for a connection of the set (an ordinary call while transactions
    /// hold every connection, a transaction, a migration) at `timeout` instead of the
    /// connection string's `acquire_timeout` (default 30 s). A call that reaches it fails with
    /// an error saying what it waited for and how the set was held. A zero `timeout` is taken
    /// as one millisecond: every wait has a bound, and none is skipped.
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.settings.acquire_timeout = Some(timeout.max(Duration::from_millis(1)));
        self
    }

    /// Connects and builds the adapter and a rate-limit store sharing its connection(s).
    pub async fn connect(self, database_url: &str) -> Result<TokioPostgresStores, RustAuthError> {
        let adapter =
            TokioPostgresAdapter::connect_with_settings(database_url, self.schema, self.settings)
                .await?;
        let rate_limit = TokioPostgresRateLimitStore::from(&adapter);
        Ok(TokioPostgresStores {
            adapter,
            rate_limit,
        })
    }
}

/// The database adapter and the rate-limit store, sharing one connection and gate.
#[derive(Debug, Clone)]
pub struct TokioPostgresStores {
    /// The `DbAdapter`.
    pub adapter: TokioPostgresAdapter,
    /// The rate-limit store on the schema's `rate_limit` table.
    pub rate_limit: TokioPostgresRateLimitStore,
}

impl TokioPostgresStores {
    /// A builder (default schema).
    pub fn builder() -> TokioPostgresStoresBuilder {
        TokioPostgresStoresBuilder::new()
    }

    /// Connects with RustAuth's default schema.
    pub async fn connect(database_url: &str) -> Result<Self, RustAuthError> {
        Self::builder().connect(database_url).await
    }

    /// Connects with `schema`.
    pub async fn connect_with_schema(
        database_url: &str,
        schema: DbSchema,
    ) -> Result<Self, RustAuthError> {
        Self::builder().schema(schema).connect(database_url).await
    }

    /// Plugs the rate-limit store into `options` as database storage.
    ///
    /// Unlike 0.3.2, which replaced the whole rate-limit block (quirk Q13), every rate-limit
    /// setting already in `options` (enabled, window, max, custom rules, …) is kept; only the
    /// storage kind and the store are set.
    #[must_use]
    pub fn apply_to_options(&self, options: RustAuthOptions) -> RustAuthOptions {
        let mut rate_limit = options.rate_limit.clone();
        rate_limit.storage = RateLimitStorageOption::Database;
        rate_limit.custom_store = Some(Arc::new(self.rate_limit.clone()));
        options.rate_limit(rate_limit)
    }

    /// The adapter as a shared trait object.
    pub fn adapter(&self) -> Arc<dyn DbAdapter> {
        Arc::new(self.adapter.clone())
    }

    /// The adapter by reference.
    pub fn adapter_ref(&self) -> &TokioPostgresAdapter {
        &self.adapter
    }
}
