//! Lifecycle hooks: library users observe (and log, trace, count) every model
//! and tool call and every journal event without forking the loop. Hooks are
//! synchronous and must be quick; they run on the run's task.

use rein_core::ToolInvocation;
use rein_types::{Event, ModelError, ModelRequest, ModelResponse, RunId, StreamDelta, ToolOutcome};

/// Which run a hook call is about.
#[derive(Debug, Clone, Copy)]
pub struct RunInfo<'a> {
    pub run_id: RunId,
    pub agent: &'a str,
    pub step: u32,
}

/// Callbacks around each model and tool call. Every method has a no-op
/// default; implement the ones you need.
pub trait Hooks: Send + Sync {
    /// After an event is recorded in the run's journal (in order; committed
    /// at the latest before the next side effect, see `Durability`), before
    /// the runtime acts on it.
    fn on_event(&self, _run: RunInfo<'_>, _event: &Event) {}

    fn before_model_call(&self, _run: RunInfo<'_>, _request: &ModelRequest<'_>) {}

    /// Whether this hook wants the model's answers as they stream in. When
    /// any hook does, model calls stream (`Model::complete_streaming`) and
    /// [`Hooks::on_model_delta`] receives each piece.
    fn wants_deltas(&self) -> bool {
        false
    }

    /// A piece of the answer of the model call in progress.
    fn on_model_delta(&self, _run: RunInfo<'_>, _delta: &StreamDelta) {}

    fn after_model_call(&self, _run: RunInfo<'_>, _result: Result<&ModelResponse, &ModelError>, _latency_ms: u64) {}

    fn before_tool_call(&self, _run: RunInfo<'_>, _call: &ToolInvocation) {}

    fn after_tool_call(&self, _run: RunInfo<'_>, _call: &ToolInvocation, _outcome: &ToolOutcome, _latency_ms: u64) {}
}
