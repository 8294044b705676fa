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

mod callback;
mod error;
mod hooks;
mod metrics;
mod openapi;
mod routes;
mod stream;

pub use callback::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use error::ApiError;
pub use hooks::DELIVERY_HEADER;

use rein::{Agent, AgentDefinition, Operator};
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
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self { max_body_bytes: 1024 * 1024, callback_secret: None, allow_private_callbacks: false }
    }
}

/// An agent the server runs: its definition and the built agent.
pub struct Served {
    pub definition: AgentDefinition,
    pub agent: Arc<Agent>,
}

/// What every handler shares.
pub struct AppState {
    pub(crate) operator: Arc<Operator>,
    pub(crate) agents: RwLock<HashMap<String, Arc<Served>>>,
    pub(crate) config: ServeConfig,
    /// Runs driven in the background (async and stream modes, decisions):
    /// aborted when the server stops; their journals let any process take
    /// them up again.
    pub(crate) background: tokio::sync::Mutex<JoinSet<()>>,
    pub(crate) metrics: Arc<metrics::Metrics>,
}

impl AppState {
    pub fn new(operator: Arc<Operator>, config: ServeConfig) -> Arc<Self> {
        Arc::new(Self {
            operator,
            agents: RwLock::new(HashMap::new()),
            config,
            background: tokio::sync::Mutex::new(JoinSet::new()),
            metrics: Arc::new(metrics::Metrics::new()),
        })
    }

    /// A runtime for driving runs here: journaling as this process, and
    /// feeding the metrics.
    pub(crate) fn runtime(&self) -> rein::Runtime {
        self.operator.runtime().with_hooks(self.metrics.clone())
    }

    /// Serves `definition` as its agent's current version, registering it
    /// in the store so any process can resume its runs.
    pub async fn serve_agent(&self, definition: AgentDefinition) -> Result<Arc<Served>, ApiError> {
        hooks::check_unique(self, &definition)?;
        let agent = Arc::new(definition.build(self.operator.client()).map_err(|e| {
            ApiError::new(axum::http::StatusCode::UNPROCESSABLE_ENTITY, "invalid_agent", e.to_string())
        })?);
        self.operator.register(&definition).await?;
        let served = Arc::new(Served { definition, agent });
        if let Ok(mut agents) = self.agents.write() {
            agents.insert(served.agent.name().to_owned(), served.clone());
        }
        Ok(served)
    }

    pub(crate) fn agent(&self, name: &str) -> Result<Arc<Served>, ApiError> {
        self.agents
            .read()
            .ok()
            .and_then(|agents| agents.get(name).cloned())
            .ok_or_else(|| ApiError::not_found(format!("no agent named `{name}` is served here")))
    }

    /// Drives `work` in the background.
    pub(crate) async fn spawn(&self, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let mut background = self.background.lock().await;
        // Reap what finished, so the set does not grow with every run.
        while background.try_join_next().is_some() {}
        background.spawn(work);
    }
}

/// The API's routes on `state`.
pub fn router(state: Arc<AppState>) -> axum::Router {
    routes::router(state)
}
