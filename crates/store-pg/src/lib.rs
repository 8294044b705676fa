//! rein's store on PostgreSQL: the journal, the run summaries and the
//! control tables of the SQLite store (`rein-store`), in one database that
//! workers on several machines share.
//!
//! [`PgStore`] keeps what [`rein_store::SqliteJournal`] keeps, with the same
//! semantics, and passes the same conformance suite
//! (`rein_testkit::conformance`):
//!
//! - events are stored one row per run per append, the JSON array
//!   `[[seq, at_ms, kind], ...]` encoded by `rein-store` itself
//!   ([`rein_store::shared::Batch`]), so both backends store the same bytes;
//! - each event is a link of its run's hash chain
//!   ([`rein_types::chain_hash`] over those bytes), checked by the same
//!   checker ([`rein_store::shared::ChainCheck`]);
//! - an append must continue exactly above its run's last seq, checked in
//!   the append's transaction with the run's row locked: two processes
//!   appending the same seq, exactly one succeeds (see `append.rs`). That is
//!   what makes taking up another process's run safe;
//! - the `runs` summary and each run's lease are derived from the events in
//!   the same transaction.
//!
//! An append is one transaction, committed (`synchronous_commit` as the
//! server has it, durable by default) before `append` returns. Appends are
//! not grouped: PostgreSQL commits concurrent transactions together by
//! itself, and each appender holds its own pooled connection.
//!
//! The run queue ([`RunQueue`], `queue.rs`) is claimed with `FOR UPDATE
//! SKIP LOCKED`, and workers wait on `LISTEN`/`NOTIFY` for new work.
//!
//! The schema lives in the first schema on the connection's `search_path`
//! (`public` unless configured, e.g. `?options=-c%20search_path%3Drein` in
//! the URL), is created on first connect and migrated under an advisory
//! lock; see `schema.rs`.

mod access;
mod append;
mod control;
mod queue;
mod read;
mod schema;

use async_trait::async_trait;
use rein_store::ProcessIdentity;
use rein_store::shared::Batch;
use rein_types::{
    AccessStore, Activation, AgentRecord, AgentVersion, AgentVersionRecord, ApiKeyRecord, ChainReport, Claim,
    ControlStore, Event, Journal, JournalError, Lease, Pruned, QueueDepth, QueuedRun, RunFilter, RunId, RunQueue,
    RunSummary, TenantId, TenantLimits,
};
use serde_json::Value;
use sqlx_core::connection::Connection as _;
use sqlx_postgres::PgConnection;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

pub use schema::SCHEMA_VERSION;
pub use sqlx_postgres::{PgConnectOptions, PgPool, PgPoolOptions};

/// Connections a store opens at most unless told otherwise: appends hold
/// one each for the length of their transaction.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The connection string does not parse.
    #[error("invalid PostgreSQL connection string: {0}")]
    Url(sqlx_core::Error),
    /// The server could not be reached or refused us (down, wrong
    /// credentials, no such database). The causes are part of the message
    /// rather than an error source, so that error chains do not repeat them.
    #[error("cannot connect to the journal database {target}: {error}")]
    Connect { target: String, error: sqlx_core::Error },
    /// The schema was written by a newer rein, whose tables this build does
    /// not know; it is left untouched.
    #[error(
        "the journal database {target} has schema version {found}, but this build of rein understands versions up to \
         {supported}; upgrade rein, or point it at another database or schema"
    )]
    NewerSchema { target: String, found: i64, supported: i64 },
    /// Bringing an older schema up to date failed; it keeps its old version.
    #[error("cannot migrate the journal database {target} to schema version {version}: {error}")]
    Migrate { target: String, version: i64, error: sqlx_core::Error },
}

impl From<StoreError> for JournalError {
    fn from(error: StoreError) -> Self {
        JournalError::Storage(error.to_string())
    }
}

/// The [`rein_types::Store`] on a PostgreSQL database.
///
/// Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Who the runs this store starts or resumes are leased to.
    owner: Arc<str>,
    /// `user@host:port/database`, for messages; never the password.
    target: String,
    /// The `LISTEN` connection workers wait on, shared by clones.
    waiter: Arc<queue::Waiter>,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").field("target", &self.target).field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database `url` names (`postgres://user@host/db`, with
    /// libpq's parameters: `sslmode`, `options`, ...), creating or migrating
    /// the schema as needed. A schema written by a newer build is refused
    /// untouched.
    ///
    /// Runs it starts or resumes are leased to this process
    /// ([`ProcessIdentity::current`]).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Url)?;
        Self::connect_with(options, PgPoolOptions::new().max_connections(DEFAULT_MAX_CONNECTIONS)).await
    }

    /// [`Self::connect`] with the connection and pool options given.
    pub async fn connect_with(options: PgConnectOptions, pool: PgPoolOptions) -> Result<Self, StoreError> {
        let target = format!(
            "{}@{}:{}/{}",
            options.get_username(),
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or(options.get_username())
        );
        // One connection first, tried once: a server that is down or
        // refuses us is reported at once, not after the pool's retries.
        let mut conn = PgConnection::connect_with(&options)
            .await
            .map_err(|error| StoreError::Connect { target: target.clone(), error })?;
        schema::migrate(&mut conn, &target).await?;
        if let Err(error) = conn.close().await {
            tracing::debug!(%target, "closing the migration connection failed: {error}");
        }
        let pool = pool.connect_lazy_with(options);
        tracing::debug!(%target, "opened journal database");
        Ok(Self { pool, owner: ProcessIdentity::current().into(), target, waiter: Arc::default() })
    }

    /// The same store with runs leased to `owner` instead of this process:
    /// for tests that play several processes on one database.
    pub fn with_owner(mut self, owner: String) -> Self {
        self.owner = owner.into();
        self
    }

    /// The connection pool, for queries of the caller's own.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// `user@host:port/database`: where this store is, without secrets.
    pub fn target(&self) -> &str {
        &self.target
    }
}

#[async_trait]
impl rein_types::Store for PgStore {
    fn owner(&self) -> &str {
        &self.owner
    }

    async fn unfinished_runs(&self) -> Result<Vec<(RunSummary, Option<Lease>)>, JournalError> {
        read::unfinished_runs(&self.pool).await
    }

    async fn prune(&self, before_ms: u64) -> Result<Pruned, JournalError> {
        control::prune(&self.pool, before_ms).await
    }
}

#[async_trait]
impl Journal for PgStore {
    async fn append(&self, events: &[Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        append::append(&self.pool, &self.owner, Batch::encode(events)?).await
    }

    async fn events(&self, run: RunId) -> Result<Vec<Event>, JournalError> {
        read::events(&self.pool, run).await
    }

    async fn events_after(&self, run: RunId, after: u64) -> Result<Vec<Event>, JournalError> {
        read::events_from(&self.pool, run, Some(after)).await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, JournalError> {
        read::runs(&self.pool, filter).await
    }

    async fn resolve(&self, id_or_prefix: &str) -> Result<RunId, JournalError> {
        read::resolve(&self.pool, id_or_prefix).await
    }

    async fn summary(&self, run: RunId) -> Result<Option<RunSummary>, JournalError> {
        read::run_summary(&self.pool, run).await
    }
}

#[async_trait]
impl AccessStore for PgStore {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), JournalError> {
        access::create_api_key(&self.pool, key).await
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, JournalError> {
        access::api_key(&self.pool, id).await
    }

    async fn api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, JournalError> {
        access::api_keys(&self.pool, tenant).await
    }

    async fn revoke_api_key(&self, id: &str, now_ms: u64) -> Result<bool, JournalError> {
        access::revoke_api_key(&self.pool, id, now_ms).await
    }

    async fn set_tenant_limits(&self, tenant: &TenantId, limits: &TenantLimits) -> Result<(), JournalError> {
        access::set_tenant_limits(&self.pool, tenant, limits).await
    }

    async fn tenant_limits(&self) -> Result<Vec<(TenantId, TenantLimits)>, JournalError> {
        access::tenant_limits(&self.pool).await
    }
}

#[async_trait]
impl ControlStore for PgStore {
    async fn register_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &AgentVersion,
        definition: &Value,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        let definition = serde_json::to_string(definition)
            .map_err(|e| JournalError::Storage(format!("cannot encode the definition of agent {name}: {e}")))?;
        control::register_agent(&self.pool, tenant, name, version, &definition, now_ms).await
    }

    async fn agent_definition(&self, name: &str, version: &AgentVersion) -> Result<Option<Value>, JournalError> {
        control::agent_definition(&self.pool, name, version).await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, JournalError> {
        control::agents(&self.pool, None).await
    }

    async fn agent(&self, name: &str) -> Result<Option<AgentRecord>, JournalError> {
        Ok(control::agents(&self.pool, Some(name)).await?.pop())
    }

    async fn agent_versions(&self, name: &str) -> Result<Vec<AgentVersionRecord>, JournalError> {
        control::agent_versions(&self.pool, name).await
    }

    async fn activate_agent(
        &self,
        name: &str,
        version: &AgentVersion,
        by: &str,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        control::activate_agent(&self.pool, name, version, by, now_ms).await
    }

    async fn activations(&self, name: &str) -> Result<Vec<Activation>, JournalError> {
        control::activations(&self.pool, name).await
    }

    async fn set_agent_enabled(&self, name: &str, enabled: bool, by: &str, now_ms: u64) -> Result<(), JournalError> {
        control::set_agent_enabled(&self.pool, name, enabled, by, now_ms).await
    }

    async fn agent_enabled(&self, name: &str) -> Result<bool, JournalError> {
        control::agent_enabled(&self.pool, name).await
    }

    async fn request_cancel(&self, run: RunId, by: &str, reason: &str, now_ms: u64) -> Result<(), JournalError> {
        control::request_cancel(&self.pool, run, by, reason, now_ms).await
    }

    async fn stop_requests(&self, runs: &[RunId]) -> Result<Vec<(RunId, String)>, JournalError> {
        control::stop_requests(&self.pool, runs).await
    }

    async fn lease(&self, run: RunId) -> Result<Option<Lease>, JournalError> {
        control::lease(&self.pool, run).await
    }

    async fn verify_chain(&self, run: RunId) -> Result<ChainReport, JournalError> {
        read::verify_chain(&self.pool, run).await
    }

    async fn record_delivery(
        &self,
        hook: &str,
        delivery_id: &str,
        run: RunId,
        now_ms: u64,
    ) -> Result<Option<RunId>, JournalError> {
        control::record_delivery(&self.pool, hook, delivery_id, run, now_ms).await
    }

    async fn claim_tick(
        &self,
        agent: &str,
        schedule: &str,
        tick_ms: u64,
        run: RunId,
        now_ms: u64,
    ) -> Result<Option<RunId>, JournalError> {
        control::claim_tick(&self.pool, agent, schedule, tick_ms, run, now_ms).await
    }
}

#[async_trait]
impl RunQueue for PgStore {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(), JournalError> {
        queue::enqueue(&self.pool, run).await
    }

    async fn claim(&self, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<Option<Claim>, JournalError> {
        queue::claim(&self.pool, owner, ttl_ms, now_ms).await
    }

    async fn claim_run(&self, run: &QueuedRun, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<bool, JournalError> {
        queue::claim_run(&self.pool, run, owner, ttl_ms, now_ms).await
    }

    async fn heartbeat(&self, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<Vec<RunId>, JournalError> {
        queue::heartbeat(&self.pool, owner, ttl_ms, now_ms).await
    }

    async fn release(&self, run: RunId, owner: &str) -> Result<(), JournalError> {
        queue::release(&self.pool, run, owner).await
    }

    async fn complete(&self, run: RunId, owner: &str) -> Result<(), JournalError> {
        queue::complete(&self.pool, run, owner).await
    }

    async fn live_runs(&self, tenant: &TenantId) -> Result<u64, JournalError> {
        queue::live_runs(&self.pool, tenant).await
    }

    async fn queue_depth(&self) -> Result<QueueDepth, JournalError> {
        queue::depth(&self.pool).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        self.waiter.wait(&self.pool, timeout).await
    }
}
