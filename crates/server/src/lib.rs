//! `rein serve`: the HTTP API in front of the runtime.
//!
//! Runs are created in one of three modes — `sync` (the response is the
//! result), `async` (202 with the run's URL, and the result POSTed to a
//! signed callback if asked) and `stream` (server-sent events of the run's
//! events as they are committed, resumable with `Last-Event-ID`). Runs,
//! their events, approvals and the kill switch are reachable from any
//! process sharing the store: a decision made here resumes the run here.
//!
//! Every error is `{"error": {"code", "message"}}` with a stable code.

mod auth;
mod callback;
mod error;
mod hooks;
mod limits;
mod metrics;
mod openapi;
mod routes;
mod schedule;
mod stream;

pub use auth::{AuthMode, Caller};
pub use callback::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use error::ApiError;
pub use hooks::DELIVERY_HEADER;
pub use schedule::{Due, Schedule, TickOutcome, due_ticks, spawn_scheduler};

use axum::http::StatusCode;
use rein::worker::{Worker, WorkerConfig};
use rein::{
    Agent, AgentDefinition, AgentRecord, AgentVersion, Operator, QueuedRun, RunId, RunOutcome, TenantId, TenantLimits,
    now_ms,
};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use tokio::task::JoinSet;

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Secret that signs callbacks; without one, `callback_url` is refused.
    pub callback_secret: Option<Vec<u8>>,
    /// Allow callbacks to loopback, private and link-local addresses. Off by
    /// default: a caller must not be able to make the server POST into its
    /// own network (metadata services, databases on localhost).
    pub allow_private_callbacks: bool,
    /// API keys (the default), or none.
    pub auth: AuthMode,
    /// Limits for tenants without their own (`rein tenants set`).
    pub tenant_defaults: TenantLimits,
    /// The queue lease taken on runs this server drives itself (sync and
    /// stream runs); [`AppState::worker`]'s heartbeat keeps it.
    pub lease_ttl: std::time::Duration,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            callback_secret: None,
            allow_private_callbacks: false,
            auth: AuthMode::Keys,
            tenant_defaults: TenantLimits::default(),
            lease_ttl: rein::worker::WorkerConfig::default().lease_ttl,
        }
    }
}

/// A deployed agent version: its definition and the built agent.
pub struct Served {
    pub definition: AgentDefinition,
    pub agent: Arc<Agent>,
}

/// What every handler shares.
pub struct AppState {
    pub(crate) operator: Arc<Operator>,
    /// Agents built from their registered definitions, by name and
    /// version. Which version is deployed is the store's to say (any
    /// server sharing the store serves the same); building is cached.
    pub(crate) built: RwLock<HashMap<(String, String), Arc<Served>>>,
    pub(crate) config: ServeConfig,
    pub(crate) limits: limits::TenantLimiter,
    /// Runs driven in the background (async and stream modes, decisions):
    /// aborted when the server stops; their journals let any process take
    /// them up again.
    pub(crate) background: tokio::sync::Mutex<JoinSet<()>>,
    pub(crate) metrics: Arc<metrics::Metrics>,
    /// Told when an agent is deployed here, so the scheduler looks at the
    /// schedules again instead of sleeping to a tick computed before.
    pub(crate) agents_changed: tokio::sync::Notify,
}

impl AppState {
    pub fn new(operator: Arc<Operator>, config: ServeConfig) -> Arc<Self> {
        Arc::new(Self {
            operator,
            built: RwLock::new(HashMap::new()),
            limits: limits::TenantLimiter::new(config.tenant_defaults),
            config,
            background: tokio::sync::Mutex::new(JoinSet::new()),
            metrics: Arc::new(metrics::Metrics::new()),
            agents_changed: tokio::sync::Notify::new(),
        })
    }

    /// A runtime for driving runs here: journaling as this process, and
    /// feeding the metrics.
    pub(crate) fn runtime(&self) -> rein::Runtime {
        self.operator.runtime().with_hooks(self.metrics.clone())
    }

    /// Registers `definition` for `tenant` and, if `activate`, deploys it
    /// (every server sharing the store serves it from then on). A name
    /// another tenant owns is refused (409 `agent_name_taken`); so is a
    /// webhook name another deployed agent declares (409 `hook_conflict`).
    pub async fn serve_agent(
        &self,
        tenant: &TenantId,
        definition: AgentDefinition,
        by: &str,
        activate: bool,
    ) -> Result<Arc<Served>, ApiError> {
        if activate {
            hooks::check_unique(self, &definition).await?;
        }
        let agent = self
            .operator
            .build(&definition)
            .await
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_agent", e.to_string()))?;
        self.operator.register(tenant, &definition).await.map_err(|error| match error {
            rein::OperateError::Store(rein::JournalError::Conflict(message)) => {
                ApiError::new(StatusCode::CONFLICT, "agent_name_taken", message)
            }
            other => other.into(),
        })?;
        let version = definition.spec.version();
        if activate {
            self.operator.activate(&definition.spec.name, &version, by).await?;
        }
        let served = Arc::new(Served { definition, agent });
        if let Ok(mut built) = self.built.write() {
            built.insert((served.agent.name().to_owned(), version.0), served.clone());
        }
        // A permit is kept if the scheduler is not waiting right now, so a
        // change made while it fires ticks is not missed.
        self.agents_changed.notify_one();
        Ok(served)
    }

    /// `name`'s record, if `tenant` owns it. Another tenant's agent is as
    /// absent as one that does not exist.
    pub(crate) async fn owned_agent(&self, tenant: &TenantId, name: &str) -> Result<AgentRecord, ApiError> {
        match self.operator.store().agent(name).await? {
            Some(record) if &record.tenant == tenant => Ok(record),
            _ => Err(ApiError::not_found(format!("no agent named `{name}`"))),
        }
    }

    /// The deployed version of agent `name`, if `tenant` owns it, with the
    /// agent's record (its kill-switch state).
    pub(crate) async fn agent(&self, tenant: &TenantId, name: &str) -> Result<(AgentRecord, Arc<Served>), ApiError> {
        let record = self.owned_agent(tenant, name).await?;
        let Some(version) = record.active_version.clone() else {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "agent_not_deployed",
                format!("agent `{name}` has no deployed version; activate one"),
            ));
        };
        let served = self.version(name, &AgentVersion(version)).await?;
        Ok((record, served))
    }

    /// Version `version` of `name`, built once from its registered
    /// definition.
    pub(crate) async fn version(&self, name: &str, version: &AgentVersion) -> Result<Arc<Served>, ApiError> {
        let key = (name.to_owned(), version.0.clone());
        if let Some(served) = self.built.read().ok().and_then(|built| built.get(&key).cloned()) {
            return Ok(served);
        }
        let unavailable = |message: String| ApiError::new(StatusCode::CONFLICT, "agent_unavailable", message);
        let stored = self
            .operator
            .store()
            .agent_definition(name, version)
            .await?
            .ok_or_else(|| unavailable(format!("agent `{name}` version {} is not registered", version.short())))?;
        let definition = AgentDefinition::from_json(stored).map_err(|e| unavailable(e.to_string()))?;
        // Shared with the worker loop's runs of this version.
        let agent = self.operator.build(&definition).await.map_err(|e| unavailable(e.to_string()))?;
        let served = Arc::new(Served { definition, agent });
        if let Ok(mut built) = self.built.write() {
            built.insert(key, served.clone());
        }
        Ok(served)
    }

    /// Every deployed agent, with its record.
    pub(crate) async fn deployed(&self) -> Result<Vec<(AgentRecord, Arc<Served>)>, ApiError> {
        let mut deployed = Vec::new();
        for record in self.operator.store().agents().await? {
            if let Some(version) = record.active_version.clone() {
                let served = self.version(&record.name, &AgentVersion(version)).await?;
                deployed.push((record, served));
            }
        }
        Ok(deployed)
    }

    /// Queues a run of `served` for a worker (this server's own, or a
    /// `rein worker`): how async and webhook runs start.
    pub(crate) async fn enqueue(
        &self,
        tenant: &TenantId,
        served: &Served,
        input: String,
        run: RunId,
    ) -> Result<(), ApiError> {
        self.operator.store().enqueue(&queued(tenant, served, input, run)).await?;
        Ok(())
    }

    /// Starts a run this server drives itself (sync and stream runs) under
    /// a queue lease, so that if the server dies a worker takes the run
    /// over from its journal.
    pub(crate) fn drive_here(
        &self,
        tenant: &TenantId,
        served: &Served,
        input: String,
        run: RunId,
    ) -> impl std::future::Future<Output = Result<RunOutcome, rein::OperateError>> + Send + 'static {
        let (operator, agent, runtime) = (self.operator.clone(), served.agent.clone(), self.runtime());
        let entry = queued(tenant, served, input.clone(), run);
        let tenant = tenant.clone();
        let ttl_ms = u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
        async move {
            let store = operator.store().clone();
            // A new id: nobody else can hold it, so the answer is always
            // yes; only a store failure stops the run here.
            store.claim_run(&entry, store.owner(), ttl_ms, now_ms()).await?;
            let result = operator.start_for(&tenant, &runtime, &agent, input, run, None).await;
            if let Err(error) = store.complete(run, store.owner()).await {
                tracing::warn!(%run, %error, "cannot take the run off the queue; a worker will find it finished");
            }
            result
        }
    }

    /// The worker loop for this server: drives queued runs (`concurrency`
    /// of them at once; 0 for a server that only answers the API, beside
    /// separate `rein worker`s) and keeps the leases of the runs the server
    /// drives itself.
    pub fn worker(&self, concurrency: usize, drain_timeout: std::time::Duration) -> Worker {
        let config = WorkerConfig { concurrency, lease_ttl: self.config.lease_ttl, drain_timeout };
        Worker::new(self.operator.clone(), self.runtime(), config).with_observer(self.metrics.clone())
    }

    /// Waits until `run` finished or waits for people, and returns its
    /// outcome: for callbacks of queued runs, whichever process drives them.
    pub(crate) async fn outcome_when_done(&self, run: RunId) -> Option<RunOutcome> {
        let mut poll = tokio::time::interval(OUTCOME_POLL);
        loop {
            poll.tick().await;
            let events = self.operator.store().events(run).await.ok()?;
            if let Some(outcome) = rein::outcome_of(&events)
                && (outcome.status.is_terminal() || outcome.status.is_suspended())
            {
                return Some(outcome);
            }
        }
    }

    /// Drives `work` in the background.
    pub(crate) async fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut background = self.background.lock().await;
        // Reap what finished, so the set does not grow with every run.
        while background.try_join_next().is_some() {}
        background.spawn(work);
    }
}

/// How often a callback waiting for a queued run's end looks at its
/// journal.
const OUTCOME_POLL: std::time::Duration = std::time::Duration::from_millis(250);

fn queued(tenant: &TenantId, served: &Served, input: String, run: RunId) -> QueuedRun {
    QueuedRun {
        run_id: run,
        tenant: tenant.clone(),
        agent: served.agent.name().to_owned(),
        agent_version: served.definition.spec.version(),
        input,
        enqueued_at_ms: now_ms(),
    }
}

/// The API's routes on `state`.
pub fn router(state: Arc<AppState>) -> axum::Router {
    routes::router(state)
}
