//! A run's history as a fold over its journal: the step tree `rein runs show`
//! prints, with latency, tokens and cost per step and in total.

use rein_types::{
    AgentVersion, Event, EventKind, PendingAction, PendingKind, RejectReason, RiskTier, RunId, RunOutcome, RunStatus,
    ToolOutcome, ToolReport, Usage,
};
use serde::Serialize;
use serde_json::Value;

/// One tool call within a step.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    pub call_id: String,
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub arguments: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ToolOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<RejectReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// `waiting`, `approved by X`, `rejected by X`, for calls that needed
    /// approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    /// For calls interrupted by a crash: `required`, then what a person
    /// said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconciliation: Option<String>,
    /// What the tool reported while it ran (progress, log messages).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reports: Vec<ToolReport>,
    pub latency_ms: u64,
}

/// One model call and what followed from it.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    pub step: u32,
    pub phase: rein_types::Phase,
    pub model: String,
    pub latency_ms: u64,
    pub usage: Usage,
    pub cost_usd: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub calls: Vec<CallRecord>,
    pub notices: Vec<String>,
}

/// Everything about a run that its events say.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub agent: String,
    pub agent_version: String,
    pub model: String,
    pub input: String,
    pub status: RunStatus,
    pub started_at_ms: u64,
    pub steps: Vec<StepRecord>,
    pub usage: Usage,
    pub cost_usd: f64,
    pub model_latency_ms: u64,
    pub tool_latency_ms: u64,
    /// Suspensions and resumptions, in order, for people.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub lifecycle: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<FinishedRecord>,
}

/// How the run ended, as journaled.
#[derive(Debug, Clone, Serialize)]
pub struct FinishedRecord {
    pub status: RunStatus,
    pub reason: String,
    pub explanation: String,
    pub output: Option<String>,
    pub unbacked_claims: Vec<String>,
    pub duration_ms: u64,
}

/// One line for people: `progress 2/5: copying`, `log warning (db): disk full`.
pub fn report_line(report: &ToolReport) -> String {
    match report {
        ToolReport::Progress { progress, total, message } => {
            let amount = match total {
                Some(total) => format!("{progress}/{total}"),
                None => progress.to_string(),
            };
            match message {
                Some(message) => format!("progress {amount}: {message}"),
                None => format!("progress {amount}"),
            }
        }
        ToolReport::Log { level, logger, data } => {
            let text = match data {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            match logger {
                Some(logger) => format!("log {} ({logger}): {text}", level.as_str()),
                None => format!("log {}: {text}", level.as_str()),
            }
        }
    }
}

impl RunRecord {
    /// Folds a run's events, in journal order.
    pub fn from_events(events: &[Event]) -> Option<Self> {
        let mut record: Option<RunRecord> = None;
        for event in events {
            match &event.kind {
                EventKind::RunStarted { agent, agent_version, model, input, .. } => {
                    record = Some(RunRecord {
                        agent: agent.clone(),
                        agent_version: agent_version.0.clone(),
                        model: model.clone(),
                        input: input.clone(),
                        status: RunStatus::Running,
                        started_at_ms: event.at_ms,
                        steps: Vec::new(),
                        usage: Usage::default(),
                        cost_usd: 0.0,
                        model_latency_ms: 0,
                        tool_latency_ms: 0,
                        lifecycle: Vec::new(),
                        finished: None,
                    });
                }
                kind => {
                    if let Some(record) = record.as_mut() {
                        record.apply(kind);
                    }
                }
            }
        }
        record
    }

    fn step_mut(&mut self, step: u32) -> &mut StepRecord {
        if self.steps.last().is_none_or(|s| s.step != step) {
            self.steps.push(StepRecord {
                step,
                phase: rein_types::Phase::default(),
                model: String::new(),
                latency_ms: 0,
                usage: Usage::default(),
                cost_usd: 0.0,
                text: None,
                error: None,
                calls: Vec::new(),
                notices: Vec::new(),
            });
        }
        let last = self.steps.len() - 1;
        &mut self.steps[last]
    }

    fn call_mut(&mut self, step: u32, call_id: &str, tool: &str) -> &mut CallRecord {
        let step = self.step_mut(step);
        if let Some(index) = step.calls.iter().position(|c| c.call_id == call_id) {
            return &mut step.calls[index];
        }
        step.calls.push(CallRecord {
            call_id: call_id.to_owned(),
            tool: tool.to_owned(),
            arguments: None,
            outcome: None,
            rejected: None,
            message: None,
            approved_by: None,
            approval: None,
            reconciliation: None,
            reports: Vec::new(),
            latency_ms: 0,
        });
        let last = step.calls.len() - 1;
        &mut step.calls[last]
    }

    fn apply(&mut self, kind: &EventKind) {
        match kind {
            EventKind::RunStarted { .. } => {}
            EventKind::ModelRequested { step, model, phase, .. } => {
                let record = self.step_mut(*step);
                record.model = model.clone();
                record.phase = *phase;
            }
            EventKind::ModelResponded { step, text, usage, cost_usd, latency_ms, served_by, .. } => {
                let record = self.step_mut(*step);
                record.usage = *usage;
                record.cost_usd = *cost_usd;
                record.latency_ms = *latency_ms;
                record.text = text.clone();
                if !served_by.is_empty() {
                    record.model = served_by.clone();
                }
                self.usage += *usage;
                self.cost_usd += cost_usd;
                self.model_latency_ms += latency_ms;
            }
            EventKind::ModelFailed { step, message, latency_ms, .. } => {
                let record = self.step_mut(*step);
                record.error = Some(message.clone());
                record.latency_ms = *latency_ms;
                self.model_latency_ms += latency_ms;
            }
            EventKind::ToolCallRequested { step, call_id, tool, arguments, .. } => {
                self.call_mut(*step, call_id, tool).arguments = Some(arguments.clone());
            }
            EventKind::ToolCallRejected { step, call_id, tool, reason, message } => {
                let call = self.call_mut(*step, call_id, tool);
                call.rejected = Some(*reason);
                call.message = Some(message.clone());
            }
            EventKind::ApprovalRequested { step, call_id, tool, .. } => {
                self.call_mut(*step, call_id, tool).approval = Some("waiting".into());
            }
            EventKind::ApprovalDecided { step, call_id, tool, approved, by, .. } => {
                let call = self.call_mut(*step, call_id, tool);
                if *approved {
                    call.approved_by = Some(by.clone());
                    call.approval = Some(format!("approved by {by}"));
                } else {
                    call.approval = Some(format!("rejected by {by}"));
                }
            }
            EventKind::ReconciliationRequired { step, call_id, tool, .. } => {
                self.call_mut(*step, call_id, tool).reconciliation = Some("required".into());
            }
            EventKind::CallReconciled { step, call_id, tool, resolution, by } => {
                let what = match resolution {
                    rein_types::Reconciliation::Done { .. } => "done",
                    rein_types::Reconciliation::Retry => "retry",
                    rein_types::Reconciliation::Fail { .. } => "fail",
                };
                self.call_mut(*step, call_id, tool).reconciliation = Some(format!("{what} (by {by})"));
            }
            EventKind::RunSuspended { status, reason, .. } => {
                self.status = *status;
                self.lifecycle.push(format!("suspended: {status} ({reason})"));
            }
            EventKind::RunResumed { by, paused_ms } => {
                self.status = RunStatus::Running;
                self.lifecycle.push(format!("resumed by {by} after {paused_ms} ms"));
            }
            EventKind::ToolCallReported { step, call_id, tool, report } => {
                self.call_mut(*step, call_id, tool).reports.push(report.clone());
            }
            EventKind::ToolCallExecuted { step, call_id, tool, outcome, latency_ms } => {
                let call = self.call_mut(*step, call_id, tool);
                call.outcome = Some(outcome.clone());
                call.latency_ms = *latency_ms;
                self.tool_latency_ms += latency_ms;
            }
            EventKind::ControlNotice { step, message } => self.step_mut(*step).notices.push(message.clone()),
            EventKind::ContextSummarised { step, replaced, .. } => self
                .step_mut(*step)
                .notices
                .push(format!("context summarised: {replaced} messages replaced by a summary")),
            EventKind::OutputRejected { step, errors, .. } => {
                self.step_mut(*step).notices.push(format!("output rejected: {}", errors.join("; ")))
            }
            EventKind::LimitHit { step, detail, .. } => self.step_mut(*step).notices.push(format!("limit: {detail}")),
            EventKind::RunFinished { status, output, reason, explanation, unbacked_claims, duration_ms, .. } => {
                self.status = *status;
                self.finished = Some(FinishedRecord {
                    status: *status,
                    reason: reason.clone(),
                    explanation: explanation.clone(),
                    output: output.clone(),
                    unbacked_claims: unbacked_claims.clone(),
                    duration_ms: *duration_ms,
                });
            }
        }
    }
}

/// The outcome a finished run's journal records, if it finished.
pub fn outcome_of(events: &[Event]) -> Option<RunOutcome> {
    let (run_id, agent, version) = events.iter().find_map(|e| match &e.kind {
        EventKind::RunStarted { agent, agent_version, .. } => Some((e.run_id, agent.clone(), agent_version.clone())),
        _ => None,
    })?;
    events.iter().rev().find_map(|e| finished_outcome(run_id, &agent, &version, &e.kind))
}

/// The outcome a `run_finished` event records; `None` for other events.
pub fn finished_outcome(run_id: RunId, agent: &str, version: &AgentVersion, kind: &EventKind) -> Option<RunOutcome> {
    let EventKind::RunFinished {
        status,
        output,
        reason,
        explanation,
        limit,
        partial_results,
        unbacked_claims,
        steps,
        usage,
        cost_usd,
        duration_ms,
    } = kind
    else {
        return None;
    };
    Some(RunOutcome {
        run_id,
        agent: agent.to_owned(),
        agent_version: version.clone(),
        status: *status,
        output: output.clone(),
        reason: reason.clone(),
        explanation: explanation.clone(),
        limit: *limit,
        partial_results: partial_results.clone(),
        unbacked_claims: unbacked_claims.clone(),
        steps: *steps,
        usage: *usage,
        cost_usd: *cost_usd,
        duration_ms: *duration_ms,
        pending: Vec::new(),
    })
}

/// What a run waits on a person for, from its journal alone (no agent
/// definition needed): approval requests not yet decided and calls needing
/// reconciliation. Empty once the run finished.
pub fn pending_actions(events: &[Event]) -> Vec<PendingAction> {
    let mut pending: Vec<PendingAction> = Vec::new();
    let mut requested: Vec<(String, RiskTier, String)> = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::ToolCallRequested { call_id, risk, idempotency_key, .. } => {
                requested.push((call_id.clone(), *risk, idempotency_key.clone()))
            }
            EventKind::ApprovalRequested {
                step,
                call_id,
                approval_id,
                tool,
                risk,
                arguments,
                rationale,
                expires_at_ms,
            } => pending.push(PendingAction {
                id: approval_id.clone(),
                kind: PendingKind::Approval,
                step: *step,
                call_id: call_id.clone(),
                tool: tool.clone(),
                risk: *risk,
                arguments: arguments.clone(),
                rationale: rationale.clone(),
                expires_at_ms: Some(*expires_at_ms),
            }),
            EventKind::ApprovalDecided { call_id, .. } => {
                pending.retain(|p| !(p.kind == PendingKind::Approval && p.call_id == *call_id))
            }
            EventKind::ReconciliationRequired { step, call_id, tool, arguments, idempotency_key }
                if !pending.iter().any(|p| p.kind == PendingKind::Reconciliation && p.call_id == *call_id) =>
            {
                let risk = requested.iter().find(|r| r.0 == *call_id).map_or(RiskTier::Write, |r| r.1);
                pending.push(PendingAction {
                    id: idempotency_key.clone(),
                    kind: PendingKind::Reconciliation,
                    step: *step,
                    call_id: call_id.clone(),
                    tool: tool.clone(),
                    risk,
                    arguments: arguments.clone(),
                    rationale: None,
                    expires_at_ms: None,
                });
            }
            EventKind::CallReconciled { call_id, .. } => {
                pending.retain(|p| !(p.kind == PendingKind::Reconciliation && p.call_id == *call_id))
            }
            EventKind::ToolCallExecuted { call_id, .. } | EventKind::ToolCallRejected { call_id, .. } => {
                pending.retain(|p| p.call_id != *call_id)
            }
            EventKind::RunFinished { .. } => pending.clear(),
            _ => {}
        }
    }
    pending
}

/// One tool call as the audit log shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub run_id: RunId,
    pub agent: String,
    pub agent_version: String,
    pub step: u32,
    pub call_id: String,
    pub tool: String,
    pub risk: RiskTier,
    pub idempotency_key: String,
    pub arguments: Value,
    pub requested_at_ms: u64,
    /// Who approved or rejected it, for calls that needed approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ToolOutcome>,
    /// Why it never ran, if it did not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rejected: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at_ms: Option<u64>,
}

/// Every tool call a run requested, with who approved it and what it
/// returned.
pub fn audit_entries(events: &[Event]) -> Vec<AuditEntry> {
    let Some((agent, version)) = events.iter().find_map(|e| match &e.kind {
        EventKind::RunStarted { agent, agent_version, .. } => Some((agent.clone(), agent_version.0.clone())),
        _ => None,
    }) else {
        return Vec::new();
    };
    let mut entries: Vec<AuditEntry> = Vec::new();
    for event in events {
        match &event.kind {
            EventKind::ToolCallRequested { step, call_id, tool, arguments, risk, idempotency_key } => {
                entries.push(AuditEntry {
                    run_id: event.run_id,
                    agent: agent.clone(),
                    agent_version: version.clone(),
                    step: *step,
                    call_id: call_id.clone(),
                    tool: tool.clone(),
                    risk: *risk,
                    idempotency_key: idempotency_key.clone(),
                    arguments: arguments.clone(),
                    requested_at_ms: event.at_ms,
                    approval: None,
                    outcome: None,
                    rejected: None,
                    finished_at_ms: None,
                })
            }
            EventKind::ApprovalDecided { step, call_id, approved, by, edited_arguments, .. } => {
                if let Some(entry) = entries.iter_mut().rev().find(|e| e.step == *step && e.call_id == *call_id) {
                    let verdict = if *approved { "approved" } else { "rejected" };
                    entry.approval = Some(format!("{verdict} by {by}"));
                    if let Some(arguments) = edited_arguments {
                        entry.arguments = arguments.clone();
                        entry.approval = Some(format!("approved with edits by {by}"));
                    }
                }
            }
            EventKind::ToolCallExecuted { step, call_id, outcome, .. } => {
                if let Some(entry) = entries.iter_mut().rev().find(|e| e.step == *step && e.call_id == *call_id) {
                    entry.outcome = Some(outcome.clone());
                    entry.finished_at_ms = Some(event.at_ms);
                }
            }
            EventKind::ToolCallRejected { step, call_id, reason, .. } => {
                if let Some(entry) = entries.iter_mut().rev().find(|e| e.step == *step && e.call_id == *call_id) {
                    entry.rejected = Some(format!("{reason:?}").to_lowercase());
                    entry.finished_at_ms = Some(event.at_ms);
                }
            }
            _ => {}
        }
    }
    entries
}
