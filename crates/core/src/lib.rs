//! The agent loop and its control layer, without I/O.
//!
//! [`RunMachine`] is a state machine: the driver feeds it what happened (a
//! model answered, tools returned, a deadline passed) and gets back a
//! [`Transition`]: the journal events to write, then the one [`Effect`] to
//! perform. The machine never touches the network, the disk, the clock or
//! randomness; time arrives as arguments. That keeps every failure mode
//! testable in microseconds with a scripted model, and makes a run's state a
//! fold over its events: every state change happens in
//! [`RunMachine::apply`], from an event.
//!
//! The control policy lives here too: step, time, token and cost limits
//! (checked before each model call against a worst case), repeated-action and
//! no-progress detection, schema validation of tool arguments, consecutive
//! error limits, approvals, and the check for claimed actions no tool backs.

pub mod catalog;
pub mod claims;
mod explain;
pub mod fold;
pub mod machine;
mod policy;

pub use catalog::{AgentPlan, CatalogError, HANDOFF_TOOL, ToolCatalog};
pub use fold::{AuditEntry, CallRecord, RunRecord, StepRecord, audit_entries, pending_actions, report_line};
pub use machine::{
    ApprovalDecision, ApprovalRequest, Effect, MAX_REPORTS_PER_CALL, ResumeAction, ResumeError, RunMachine,
    ToolInvocation, ToolResult, Transition,
};
