//! rein's domain vocabulary, shared by every other crate.
//!
//! This crate owns the provider-neutral message model, tool specifications,
//! usage and cost figures, the versioned journal event enum, run outcomes, the
//! resolved agent spec (whose content hash is the agent's version), and the
//! small seam traits that edge crates implement: [`Model`], [`Tool`],
//! [`Journal`], [`Clock`], the control store and the run queue.
//!
//! It deliberately holds no behaviour beyond construction, validation of
//! newtypes and (de)serialisation: the loop lives in `rein-core`, I/O lives in
//! the edge crates.

pub mod access;
pub mod agent;
pub mod control;
pub mod decl;
pub mod event;
pub mod ids;
pub mod message;
pub mod model;
pub mod outcome;
pub mod ports;
pub mod queue;
pub mod text;
pub mod tool;
pub mod usage;

pub use access::{AccessStore, ApiKeyRecord, Scope, TenantLimits};
pub use agent::{AgentSpec, Limits, ModelRef, ModelSettings, Phase, Route, StopConditions};
pub use control::{
    Activation, AgentRecord, AgentVersionRecord, CHAIN_GENESIS, ChainFault, ChainProblem, ChainReport, ControlStore,
    Lease, Pruned, Store, chain_hash, rollback_target,
};
pub use decl::{
    BodyMapping, HttpToolDecl, McpServerDecl, McpToolPolicy, McpTransport, ProviderDecl, RetryPolicy, ScheduleDecl,
    SqlMode, SqlToolDecl, ToolChoice, ToolImpl, WebhookDecl,
};
pub use event::{Event, EventKind, JOURNAL_FORMAT_VERSION, LimitKind, Reconciliation, RejectReason};
pub use ids::{AgentVersion, IdempotencyKey, RunId, TenantId, TenantIdError, ToolCallId, ToolName, ToolNameError};
pub use message::{Message, ToolCall};
pub use model::{FinishReason, ModelError, ModelErrorKind, ModelRequest, ModelResponse};
pub use outcome::{PartialResult, PendingAction, PendingKind, RunOutcome, RunStatus};
pub use ports::{
    Clock, Journal, JournalError, Model, OnDelta, RunFilter, RunSummary, StreamDelta, SystemClock, Tool, ToolContext,
    ToolReporter,
};
pub use queue::{Claim, QueueDepth, QueuedRun, RunQueue};
pub use tool::{Approval, LogLevel, RiskTier, ToolOutcome, ToolReport, ToolSpec};
pub use usage::{ModelPrice, Usage};
