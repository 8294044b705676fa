//! How a run ended, always with an explanation a person can act on.

use crate::event::LimitKind;
use crate::ids::{AgentVersion, RunId};
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
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        self != RunStatus::Running
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
}
