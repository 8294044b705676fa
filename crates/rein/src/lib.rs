//! rein: a runtime for AI agents that run in production.
//!
//! An agent is a model, tools and a loop; rein adds the control layer that
//! makes it safe to run unattended: every run is bounded (steps, wall-clock
//! time, tokens, money), tool arguments are validated against their JSON
//! Schema before anything executes, dangerous calls wait for a human,
//! failures come back to the model as readable observations, and every step
//! is journaled before it is acted on.
//!
//! This crate is the facade: it re-exports the pieces and glues an agent file
//! (TOML) to its provider and tool implementations with [`load_agent`].
//!
//! # An agent in Rust
//!
//! ```
//! use rein::{Agent, Runtime, FnTool, RiskTier, RunStatus, ToolError};
//! use rein_testkit::{scripted, ScriptedModel, journal::MemoryJournal};
//! use std::sync::Arc;
//!
//! #[derive(serde::Deserialize, schemars::JsonSchema)]
//! struct Lookup {
//!     /// The customer's email address.
//!     email: String,
//! }
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let plan = FnTool::new("lookup_plan", "Find a customer's plan by email.", RiskTier::Read,
//!     |args: Lookup, _ctx| async move {
//!         if args.email.ends_with("@acme.com") { Ok(serde_json::json!({ "plan": "pro" })) }
//!         else { Err(ToolError::new("no customer with that email").with_hint("check the address")) }
//!     })?;
//! // A scripted model (from the rein-testkit crate) stands in for a provider here;
//! // in production use rein::providers::build_model or any `Model`.
//! let model = ScriptedModel::new([
//!     scripted::call("lookup_plan", serde_json::json!({ "email": "jo@acme.com" })),
//!     scripted::text("Jo is on the Pro plan."),
//! ]);
//! let agent = Agent::builder("plans").system_prompt("Answer plan questions.").model(model).tool(plan).build()?;
//! let runtime = Runtime::new(Arc::new(MemoryJournal::new()));
//! let outcome = runtime.run(&agent, "Which plan is jo@acme.com on?").await?;
//! assert_eq!(outcome.status, RunStatus::Succeeded);
//! assert_eq!(outcome.output.as_deref(), Some("Jo is on the Pro plan."));
//! # Ok(()) }
//! ```

pub mod keys;
mod load;
mod mcp_host;
mod operate;
pub mod worker;

pub use load::{
    AgentDefinition, LoadError, LoadedAgent, Overrides, discover_mcp, load_agent, load_definition, load_definition_str,
};
pub use mcp_host::McpHost;
pub use operate::{OperateError, Operator, WaitingApproval, now_ms, outcome_json, step_and_index, step_and_index_of};
pub use rein_core::fold::outcome_of;
pub use rein_core::{
    AgentPlan, AuditEntry, CallRecord, ResumeAction, ResumeError, RunRecord, StepRecord, audit_entries,
    pending_actions, report_line,
};
pub use rein_runtime::{
    Agent, AgentBuilder, ApprovalDecision, ApprovalRequest, Approver, CancellationToken, Durability, Hooks, NoApprover,
    RunInfo, RunOptions, Runtime, RuntimeError, StopSignal, StopWatcher,
};
pub use rein_tools::{FnTool, ToolError};
pub use rein_types::*;

/// Agent-file loading and validation.
pub use rein_config as config;
/// MCP servers' tools (`McpServer`, `McpTool`, `discover`).
pub use rein_mcp as mcp;
/// Providers (`OpenAiCompatible`, `build_model`).
pub use rein_providers as providers;
/// The SQLite journal.
pub use rein_store as store;
