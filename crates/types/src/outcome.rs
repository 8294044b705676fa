//! How a run ended, always with an explanation a person can act on.

use crate::event::LimitKind;
use crate::ids::{AgentVersion, RunId};
use crate::tool::RiskTier;
use crate::usage::Usage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A run's status. Exactly one terminal status ends every run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Handed to a human, with the reason.
    Escalated,
    /// A limit stopped the run; the outcome names which.
    LimitReached,
    Cancelled,
    /// Paused, durably, until a person approves or rejects a tool call
    /// (`rein approvals`). Not terminal.
    WaitingApproval,
    /// Paused because a call that can change the world was in flight when
    /// the process died, and the tool is not idempotent: a person says
    /// whether it took effect (`rein runs reconcile`). Not terminal.
    NeedsReconciliation,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Escalated => "escalated",
            RunStatus::LimitReached => "limit_reached",
            RunStatus::Cancelled => "cancelled",
            RunStatus::WaitingApproval => "waiting_approval",
            RunStatus::NeedsReconciliation => "needs_reconciliation",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "running" => RunStatus::Running,
            "succeeded" => RunStatus::Succeeded,
            "failed" => RunStatus::Failed,
            "escalated" => RunStatus::Escalated,
            "limit_reached" => RunStatus::LimitReached,
            "cancelled" => RunStatus::Cancelled,
            "waiting_approval" => RunStatus::WaitingApproval,
            "needs_reconciliation" => RunStatus::NeedsReconciliation,
            _ => return None,
        })
    }

    /// Whether the run is over: nothing will ever be appended to it again.
    pub fn is_terminal(self) -> bool {
        !matches!(self, RunStatus::Running | RunStatus::WaitingApproval | RunStatus::NeedsReconciliation)
    }

    /// Paused until a person acts.
    pub fn is_suspended(self) -> bool {
        matches!(self, RunStatus::WaitingApproval | RunStatus::NeedsReconciliation)
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A successful tool result gathered before the run ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartialResult {
    pub step: u32,
    pub tool: String,
    pub data: Value,
}

/// The result of a run, whatever its status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunOutcome {
    pub run_id: RunId,
    pub agent: String,
    pub agent_version: AgentVersion,
    pub status: RunStatus,
    /// The final answer, or the last thing the model said.
    pub output: Option<String>,
    /// Short machine-friendly cause (`final_answer`, `max_steps`, ...).
    pub reason: String,
    /// What happened and what to do next, in plain language.
    pub explanation: String,
    /// Which limit stopped the run, for `limit_reached`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitKind>,
    /// Successful tool results gathered so far.
    pub partial_results: Vec<PartialResult>,
    /// Sentences of the final answer that claim an action no successful tool
    /// call backs ("I have sent the email").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbacked_claims: Vec<String>,
    pub steps: u32,
    pub usage: Usage,
    pub cost_usd: f64,
    pub duration_ms: u64,
    /// What a suspended run waits for: one entry per call awaiting a
    /// person's approval or reconciliation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingAction>,
}

/// What a person must decide for a suspended run to go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingKind {
    /// Approve, edit or reject the call (`rein approvals`).
    Approval,
    /// Say whether the interrupted call took effect (`rein runs reconcile`).
    Reconciliation,
}

/// A tool call a suspended run waits on, with what a person needs to decide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingAction {
    /// The approval id (for approvals) or the call's idempotency key; both
    /// are `run:step:index`.
    pub id: String,
    pub kind: PendingKind,
    pub step: u32,
    pub call_id: String,
    pub tool: String,
    pub risk: RiskTier,
    pub arguments: Value,
    /// What the model said alongside the call: its stated reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    /// When an approval request lapses and counts as rejected (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<u64>,
}
