//! The seams between the pure core and the world. Edge crates implement these
//! (providers implement [`Model`], tool crates [`Tool`], stores [`Journal`]);
//! none of them depends on the runtime.

use crate::event::Event;
use crate::ids::{IdempotencyKey, RunId, TenantId};
use crate::model::{ModelError, ModelRequest, ModelResponse};
use crate::outcome::RunStatus;
use crate::tool::{ToolOutcome, ToolReport, ToolSpec};
use crate::usage::Usage;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;

/// A piece of an answer as it streams in.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamDelta {
    /// More of the answer's text.
    Text(String),
    /// A tool call begins; `index` orders the calls of one turn.
    ToolCallStarted { index: usize, id: String, name: String },
    /// More of the arguments of call `index`, as raw JSON text.
    ToolCallArguments { index: usize, fragment: String },
}

/// Receives stream deltas as they arrive. Called on the run's task: keep it
/// quick.
pub type OnDelta<'a> = &'a (dyn Fn(StreamDelta) + Send + Sync);

/// A language model behind some provider.
#[async_trait]
pub trait Model: Send + Sync {
    /// `provider:model`, for logs and the journal.
    fn id(&self) -> String;

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError>;

    /// Like [`Model::complete`], streaming the answer to `on_delta` as it
    /// arrives, and returning the same assembled response. Providers that
    /// cannot stream use this default, which delivers the answer in one
    /// piece once it is complete.
    async fn complete_streaming(
        &self,
        request: ModelRequest<'_>,
        on_delta: OnDelta<'_>,
    ) -> Result<ModelResponse, ModelError> {
        let response = self.complete(request).await?;
        if let Some(text) = response.text.as_ref().filter(|t| !t.is_empty()) {
            on_delta(StreamDelta::Text(text.clone()));
        }
        for (index, call) in response.tool_calls.iter().enumerate() {
            on_delta(StreamDelta::ToolCallStarted { index, id: call.id.0.clone(), name: call.name.clone() });
            on_delta(StreamDelta::ToolCallArguments { index, fragment: call.arguments.clone() });
        }
        Ok(response)
    }
}

/// What a tool knows about the call it is serving.
#[derive(Debug, Clone)]
pub struct ToolContext {
    pub run_id: RunId,
    pub step: u32,
    pub call_id: String,
    /// Stable across retries of this call; send it to services that
    /// de-duplicate (`Idempotency-Key`).
    pub idempotency_key: IdempotencyKey,
    /// Where to report progress and log messages while the call runs; the
    /// runtime journals them. Discards them when nobody listens.
    pub reporter: ToolReporter,
}

impl ToolContext {
    /// A context whose reports go nowhere (add a sink with
    /// [`ToolContext::with_reporter`]).
    pub fn new(run_id: RunId, step: u32, call_id: impl Into<String>, idempotency_key: IdempotencyKey) -> Self {
        Self { run_id, step, call_id: call_id.into(), idempotency_key, reporter: ToolReporter::default() }
    }

    pub fn with_reporter(mut self, reporter: ToolReporter) -> Self {
        self.reporter = reporter;
        self
    }

    /// Reports on the call; see [`ToolReporter::report`].
    pub fn report(&self, report: ToolReport) {
        self.reporter.report(report);
    }
}

/// A sink for a call's [`ToolReport`]s. Reporting never blocks and never
/// fails: a report the run cannot take (too many, or the call is over) is
/// dropped, because a report is an observation about the call, not part of
/// its result.
#[derive(Clone, Default)]
pub struct ToolReporter(Option<Arc<dyn Fn(ToolReport) + Send + Sync>>);

impl ToolReporter {
    pub fn new(sink: impl Fn(ToolReport) + Send + Sync + 'static) -> Self {
        Self(Some(Arc::new(sink)))
    }

    pub fn report(&self, report: ToolReport) {
        if let Some(sink) = &self.0 {
            sink(report);
        }
    }

    /// Whether reports go anywhere: a tool may skip asking its service for
    /// progress when not.
    pub fn is_listening(&self) -> bool {
        self.0.is_some()
    }
}

impl std::fmt::Debug for ToolReporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ToolReporter(listening)" } else { "ToolReporter(none)" })
    }
}

/// Something the model can call. A tool never panics the run and never
/// returns a Rust error: failures are [`ToolOutcome::Error`] values the model
/// reads.
#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> &ToolSpec;

    /// Runs the call. `arguments` already validated against the spec's schema.
    async fn call(&self, arguments: Value, context: &ToolContext) -> ToolOutcome;
}

/// A failure of the journal itself. The runtime stops a run it cannot journal:
/// acting without a record would break the journal's guarantee.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal storage failed: {0}")]
    Storage(String),
    /// Another process appended to the run first: the append would not
    /// continue the run's journal. Nothing was written; the run is being
    /// driven elsewhere.
    #[error("{0}")]
    Conflict(String),
    #[error("journal entry for run {run} is unreadable at seq {seq}: {message}")]
    Corrupt { run: RunId, seq: u64, message: String },
    #[error("no run matches `{0}`")]
    NotFound(String),
    #[error("`{0}` matches more than one run; give more of the id")]
    Ambiguous(String),
}

/// One row of a run listing: what a fold over the run's events would give,
/// kept by the store so listing does not replay every journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub run_id: RunId,
    #[serde(default)]
    pub tenant: TenantId,
    pub agent: String,
    pub agent_version: String,
    pub status: RunStatus,
    pub started_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
    pub steps: u32,
    pub usage: Usage,
    pub cost_usd: f64,
    /// The first line of the input, for listings.
    pub input_preview: String,
}

/// Which runs to list, newest first.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    pub tenant: Option<TenantId>,
    pub agent: Option<String>,
    pub status: Option<RunStatus>,
    /// Only runs started at or after this time (Unix ms).
    pub since_ms: Option<u64>,
    pub limit: Option<u32>,
}

/// Durable, append-only storage of run events.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Appends events atomically and durably; returns only once they are
    /// committed, so the caller may act on them.
    async fn append(&self, events: &[Event]) -> Result<(), JournalError>;

    /// Every event of a run, in order.
    async fn events(&self, run: RunId) -> Result<Vec<Event>, JournalError>;

    /// The run's events with seq above `after`, in order: what a follower
    /// has not seen yet. The default reads them all; stores read only the
    /// rows that hold new events.
    async fn events_after(&self, run: RunId, after: u64) -> Result<Vec<Event>, JournalError> {
        Ok(self.events(run).await?.into_iter().filter(|event| event.seq > after).collect())
    }

    /// Runs, newest first.
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, JournalError>;

    /// Resolves a full id or a unique prefix of one.
    async fn resolve(&self, id_or_prefix: &str) -> Result<RunId, JournalError>;

    /// One run's summary, if it has started. The default walks the whole
    /// listing; stores look it up by key.
    async fn summary(&self, run: RunId) -> Result<Option<RunSummary>, JournalError> {
        Ok(self.runs(&RunFilter::default()).await?.into_iter().find(|summary| summary.run_id == run))
    }
}

/// Where time comes from, so tests can control it.
pub trait Clock: Send + Sync {
    /// Unix time in milliseconds.
    fn now_ms(&self) -> u64;
}

/// The machine's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
    }
}
