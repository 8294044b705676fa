//! The driver of agent runs.
//!
//! [`Runtime::run`] asks the core's state machine what to do, writes the
//! resulting events to the [`Journal`](rein_types::Journal) — and only once
//! they are durable — performs the effect: a model call, concurrent tool
//! calls, or an approval request. It owns the things the core must not touch:
//! time-outs, cancellation, panics in tools, and the lifecycle [`Hooks`]
//! library users attach before and after each model and tool call.

mod agent;
mod approval;
mod driver;
mod durability;
mod hooks;
mod stop;
mod watcher;

pub use agent::{Agent, AgentBuilder};
pub use approval::{Approver, NoApprover};
pub use driver::{RunOptions, Runtime, RuntimeError};
pub use durability::Durability;
pub use hooks::{Hooks, RunInfo};
pub use rein_core::{ApprovalDecision, ApprovalRequest, ResumeAction, ResumeError, ToolInvocation};
pub use stop::StopSignal;
pub use tokio_util::sync::CancellationToken;
pub use watcher::StopWatcher;
