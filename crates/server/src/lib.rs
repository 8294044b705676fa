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
mod schedule;
mod stream;

pub use callback::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use error::ApiError;
pub use hooks::DELIVERY_HEADER;
pub use schedule::{Due, Schedule, TickOutcome, due_ticks, spawn_scheduler};

use rein::{Agent, AgentDefinition, Operator, RunId, outcome_json};
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
    /// Told when the served agents change, so the scheduler looks at their
    /// schedules again instead of sleeping to a tick computed before.
    pub(crate) agents_changed: tokio::sync::Notify,
}

impl AppState {
    pub fn new(operator: Arc<Operator>, config: ServeConfig) -> Arc<Self> {
        Arc::new(Self {
            operator,
            agents: RwLock::new(HashMap::new()),
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
        // A permit is kept if the scheduler is not waiting right now, so a
        // change made while it fires ticks is not missed.
        self.agents_changed.notify_one();
        Ok(served)
    }

    pub(crate) fn agent(&self, name: &str) -> Result<Arc<Served>, ApiError> {
        self.agents
            .read()
            .ok()
            .and_then(|agents| agents.get(name).cloned())
            .ok_or_else(|| ApiError::not_found(format!("no agent named `{name}` is served here")))
    }

    /// Starts `agent` on `input` as `run` and drives it in the background;
    /// with a callback, POSTs the signed result to it when the run ends or
    /// suspends. Every run started in the background — async and stream
    /// mode, webhooks, schedules — starts here. `trigger` names what
    /// started it in the log.
    pub(crate) async fn start_in_background(
        &self,
        agent: Arc<Agent>,
        input: String,
        run: RunId,
        trigger: &'static str,
        callback: Option<(String, Vec<u8>)>,
    ) {
        let operator = self.operator.clone();
        let runtime = self.runtime();
        let client = self.operator.client().clone();
        self.spawn(async move {
            match operator.start(&runtime, &agent, input, run, None).await {
                Ok(outcome) => {
                    if let Some((url, secret)) = callback {
                        let body = serde_json::to_vec(&outcome_json(&outcome)).unwrap_or_default();
                        callback::deliver(&client, &url, &secret, body).await;
                    }
                }
                Err(error) => tracing::error!(%run, trigger, %error, "a run started in the background failed to run"),
            }
        })
        .await;
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
