//! The journal: a run is an append-only sequence of these events, and its
//! state is a fold over them. The format is versioned; a change to it comes
//! with a new [`JOURNAL_FORMAT_VERSION`] and a reader for the old one.

use crate::agent::Limits;
use crate::ids::{AgentVersion, RunId, TenantId};
use crate::message::ToolCall;
use crate::model::{FinishReason, ModelErrorKind};
use crate::outcome::{PartialResult, RunStatus};
use crate::tool::{RiskTier, ToolOutcome, ToolReport};
use crate::usage::Usage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Version of the event encoding written by this build.
pub const JOURNAL_FORMAT_VERSION: u16 = 2;

/// One journal entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub run_id: RunId,
    /// Position in the run's journal, from 0 with no gaps.
    pub seq: u64,
    /// Unix time in milliseconds, from the run's clock.
    pub at_ms: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// Which limit stopped a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    MaxSteps,
    Timeout,
    TokenBudget,
    CostBudget,
    /// The same call with the same arguments, a third time.
    RepeatedAction,
    /// Steps whose results added nothing new.
    NoProgress,
    /// A tool's `max_calls`.
    ToolCalls,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::MaxSteps => "max_steps",
            LimitKind::Timeout => "timeout",
            LimitKind::TokenBudget => "token_budget",
            LimitKind::CostBudget => "cost_budget",
            LimitKind::RepeatedAction => "repeated_action",
            LimitKind::NoProgress => "no_progress",
            LimitKind::ToolCalls => "tool_calls",
        }
    }
}

/// Why a tool call was refused before it ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// No tool of that name (a hallucinated tool).
    UnknownTool,
    /// The arguments are not JSON.
    MalformedArguments,
    /// The arguments do not satisfy the tool's schema.
    InvalidArguments,
    /// The same call was already made; its earlier result is returned instead.
    RepeatedCall,
    /// The tool's `max_calls` for the run is used up.
    CallLimit,
    /// A human rejected the call.
    ApprovalRejected,
    /// The run ended (a limit, a handoff, a cancellation) before the call ran.
    RunEnded,
}

/// What a person found became of a call that needed reconciliation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "resolution", rename_all = "snake_case")]
pub enum Reconciliation {
    /// It took effect; `result` is what it returned, for the model.
    Done { result: Value },
    /// It did not take effect: run it again, with the same idempotency key.
    Retry,
    /// Give up: the run ends as failed.
    Fail { reason: String },
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What happened. Events are written before the runtime acts on them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    RunStarted {
        agent: String,
        agent_version: AgentVersion,
        model: String,
        input: String,
        limits: Limits,
        format: u16,
        /// Whose run this is. Left out of the stored event for the default
        /// tenant, so journals written before tenants read unchanged.
        #[serde(default, skip_serializing_if = "TenantId::is_default")]
        tenant: TenantId,
    },
    /// A model call is about to be made.
    ModelRequested {
        step: u32,
        /// What the call is for, which decided the model.
        #[serde(default)]
        phase: crate::agent::Phase,
        model: String,
        messages: u32,
        /// The worst case the budget check assumed: estimated prompt tokens
        /// plus the output cap.
        estimated_tokens: u64,
        /// An instruction added to the conversation for this call (the
        /// synthesis request).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        instruction: Option<String>,
    },
    ModelResponded {
        step: u32,
        text: Option<String>,
        tool_calls: Vec<ToolCall>,
        usage: Usage,
        cost_usd: f64,
        latency_ms: u64,
        finish_reason: FinishReason,
        served_by: String,
    },
    ModelFailed {
        step: u32,
        kind: ModelErrorKind,
        message: String,
        latency_ms: u64,
    },
    /// A call passed validation and will run.
    ToolCallRequested {
        step: u32,
        call_id: String,
        tool: String,
        arguments: Value,
        risk: RiskTier,
        idempotency_key: String,
    },
    /// A call was refused before running; `message` is what the model is told.
    ToolCallRejected {
        step: u32,
        call_id: String,
        tool: String,
        reason: RejectReason,
        message: String,
    },
    /// A call that needs a person's approval, with the preview they decide
    /// on. Journaled before anyone is asked.
    ApprovalRequested {
        step: u32,
        call_id: String,
        /// `run:step:index`, what `rein approvals` takes.
        approval_id: String,
        tool: String,
        risk: RiskTier,
        arguments: Value,
        /// What the model said alongside the call: its stated reason.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rationale: Option<String>,
        /// After this (Unix ms) the request lapses and counts as rejected.
        expires_at_ms: u64,
    },
    /// A person (or the lapse of the request) decided on a call that needs
    /// approval.
    ApprovalDecided {
        step: u32,
        call_id: String,
        tool: String,
        approved: bool,
        /// Who decided: a user name, or `expiry` for a lapsed request.
        by: String,
        /// Time spent waiting for this decision that does not count against
        /// the run's wall-clock limit.
        #[serde(default, skip_serializing_if = "is_zero")]
        waited_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
        /// Arguments as edited by the approver, when they changed them.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        edited_arguments: Option<Value>,
    },
    /// A call that is running reported on itself: progress, or a log
    /// message from the service it calls. For people and dashboards: the
    /// model does not see it and it changes no run state, so journals
    /// without it (written before it existed) fold the same.
    ToolCallReported {
        step: u32,
        call_id: String,
        tool: String,
        report: ToolReport,
    },
    ToolCallExecuted {
        step: u32,
        call_id: String,
        tool: String,
        outcome: ToolOutcome,
        latency_ms: u64,
    },
    /// A call that can change the world was requested, and may or may not
    /// have run before the process died; the tool is not idempotent, so a
    /// person must say what happened.
    ReconciliationRequired {
        step: u32,
        call_id: String,
        tool: String,
        arguments: Value,
        idempotency_key: String,
    },
    /// A person said what became of a call that needed reconciliation.
    CallReconciled {
        step: u32,
        call_id: String,
        tool: String,
        resolution: Reconciliation,
        by: String,
    },
    /// The run paused until a person acts; `status` is `waiting_approval`
    /// or `needs_reconciliation`. The process handling it lets it go.
    RunSuspended {
        status: RunStatus,
        reason: String,
        explanation: String,
    },
    /// A process took the run up again from its journal: after a crash,
    /// a suspension, or a decision.
    RunResumed {
        /// The process that resumed it (`host/pid/start`).
        by: String,
        /// Time since the previous event, during which the run did not run;
        /// it does not count against the wall-clock limit.
        paused_ms: u64,
    },
    /// The final answer did not match the agent's output schema; `message`
    /// (what is wrong, and the schema) goes back to the model for repair.
    OutputRejected {
        step: u32,
        errors: Vec<String>,
        message: String,
    },
    /// The conversation was replaced by the task and this summary of it, to
    /// keep the prompt within `limits.summarise_above_tokens`.
    ContextSummarised {
        step: u32,
        summary: String,
        /// Messages the summary replaced.
        replaced: u32,
    },
    /// The control layer warned the model (a repeated call, say).
    ControlNotice {
        step: u32,
        message: String,
    },
    LimitHit {
        step: u32,
        limit: LimitKind,
        detail: String,
    },
    RunFinished {
        status: RunStatus,
        output: Option<String>,
        reason: String,
        explanation: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<LimitKind>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        partial_results: Vec<PartialResult>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        unbacked_claims: Vec<String>,
        steps: u32,
        usage: Usage,
        cost_usd: f64,
        duration_ms: u64,
    },
}

impl EventKind {
    /// The snake_case tag, as stored in the journal's `type` column.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::RunStarted { .. } => "run_started",
            EventKind::ModelRequested { .. } => "model_requested",
            EventKind::ModelResponded { .. } => "model_responded",
            EventKind::ModelFailed { .. } => "model_failed",
            EventKind::ToolCallRequested { .. } => "tool_call_requested",
            EventKind::ToolCallRejected { .. } => "tool_call_rejected",
            EventKind::ApprovalRequested { .. } => "approval_requested",
            EventKind::ApprovalDecided { .. } => "approval_decided",
            EventKind::ReconciliationRequired { .. } => "reconciliation_required",
            EventKind::CallReconciled { .. } => "call_reconciled",
            EventKind::RunSuspended { .. } => "run_suspended",
            EventKind::RunResumed { .. } => "run_resumed",
            EventKind::ToolCallReported { .. } => "tool_call_reported",
            EventKind::ToolCallExecuted { .. } => "tool_call_executed",
            EventKind::OutputRejected { .. } => "output_rejected",
            EventKind::ContextSummarised { .. } => "context_summarised",
            EventKind::ControlNotice { .. } => "control_notice",
            EventKind::LimitHit { .. } => "limit_hit",
            EventKind::RunFinished { .. } => "run_finished",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_json() {
        let event = Event {
            run_id: RunId::new(),
            seq: 3,
            at_ms: 1_700_000_000_000,
            kind: EventKind::ToolCallRejected {
                step: 2,
                call_id: "c1".into(),
                tool: "nope".into(),
                reason: RejectReason::UnknownTool,
                message: "no such tool".into(),
            },
        };
        let json = serde_json::to_string(&event).unwrap();
        assert!(json.contains("\"type\":\"tool_call_rejected\""), "{json}");
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, event);
    }

    #[test]
    fn a_tool_report_is_tagged_by_kind_inside_its_event() {
        let event = Event {
            run_id: RunId::new(),
            seq: 5,
            at_ms: 1_700_000_000_000,
            kind: EventKind::ToolCallReported {
                step: 1,
                call_id: "c1".into(),
                tool: "ev_slow".into(),
                report: ToolReport::Progress { progress: 2.0, total: Some(5.0), message: None },
            },
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "tool_call_reported");
        assert_eq!(json["report"], serde_json::json!({"kind": "progress", "progress": 2.0, "total": 5.0}));
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
        let log = r#"{"kind":"log","level":"warning","data":{"disk":"full"}}"#;
        let report: ToolReport = serde_json::from_str(log).unwrap();
        assert_eq!(
            report,
            ToolReport::Log {
                level: crate::tool::LogLevel::Warning,
                logger: None,
                data: serde_json::json!({"disk": "full"})
            }
        );
    }
}
