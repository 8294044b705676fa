//! The run state machine.
//!
//! Handlers (`on_*`) decide: they look at the state and the input, and
//! produce events. [`RunMachine::apply`] is the only place state changes, and
//! it changes it from an event, so replaying a journal through `apply`
//! rebuilds the same state. A handler returns the events with the effect the
//! driver must perform once those events are durable.

use crate::catalog::{AgentPlan, HANDOFF_TOOL};
use crate::claims::action_claims;
use crate::explain;
use crate::policy::{self, BudgetCheck};
use rein_types::text::prefix_within as cut;
use rein_types::{
    Event, EventKind, FinishReason, IdempotencyKey, JOURNAL_FORMAT_VERSION, LimitKind, Message, ModelError, ModelPrice,
    ModelRequest, ModelResponse, PartialResult, Phase, RejectReason, RiskTier, RunId, RunOutcome, RunStatus, TenantId,
    ToolCall, ToolCallId, ToolOutcome, ToolReport, Usage,
};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Reports journaled per call at most: a tool that reports in a tight loop
/// must not flood the journal. The last one journaled says the rest were
/// dropped.
pub const MAX_REPORTS_PER_CALL: u32 = 64;
/// Longest text a report keeps (a progress message, a log message's data
/// as JSON), in bytes.
const MAX_REPORT_BYTES: usize = 2_000;

/// What the driver must do next, after writing the transition's events.
#[derive(Debug)]
pub enum Effect {
    /// Call the model with [`RunMachine::model_request`].
    CallModel,
    /// Run these calls concurrently and report with
    /// [`RunMachine::on_tool_results`].
    ExecuteTools(Vec<ToolInvocation>),
    /// Ask a human about these calls and report with
    /// [`RunMachine::on_approvals`].
    RequestApprovals(Vec<ApprovalRequest>),
    /// The run is paused until a person acts; the outcome's status says for
    /// what, and its `pending` lists the calls concerned. The driver lets
    /// the run go (another process may take it up).
    Suspend(Box<RunOutcome>),
    /// The run is over.
    Finish(Box<RunOutcome>),
}

/// One tool call to execute.
#[derive(Debug, Clone)]
pub struct ToolInvocation {
    pub step: u32,
    pub call_id: String,
    /// Index in the agent's [`crate::ToolCatalog`].
    pub tool_index: usize,
    pub tool: String,
    pub arguments: Value,
    pub idempotency_key: IdempotencyKey,
    pub timeout_ms: u64,
}

/// The outcome of one executed call.
#[derive(Debug, Clone)]
pub struct ToolResult {
    pub call_id: String,
    pub outcome: ToolOutcome,
    pub latency_ms: u64,
}

/// A call waiting for a human, with what they need to decide.
#[derive(Debug, Clone)]
pub struct ApprovalRequest {
    pub step: u32,
    pub call_id: String,
    /// `run:step:index`, what `rein approvals` takes.
    pub approval_id: String,
    /// When the request lapses and counts as rejected (Unix ms).
    pub expires_at_ms: u64,
    pub tool: String,
    pub risk: RiskTier,
    pub arguments: Value,
    /// What the model said alongside the call: its stated reason.
    pub rationale: Option<String>,
}

/// A human's decision on one [`ApprovalRequest`].
#[derive(Debug, Clone)]
pub enum ApprovalDecision {
    Approve {
        call_id: String,
        by: String,
    },
    Reject {
        call_id: String,
        by: String,
        reason: Option<String>,
    },
    /// Approve with changed arguments (validated against the tool's schema).
    Edit {
        call_id: String,
        by: String,
        arguments: Value,
    },
    /// Nobody can decide now (no terminal, no approver configured).
    Unavailable {
        call_id: String,
    },
}

impl ApprovalDecision {
    fn call_id(&self) -> &str {
        match self {
            ApprovalDecision::Approve { call_id, .. }
            | ApprovalDecision::Reject { call_id, .. }
            | ApprovalDecision::Edit { call_id, .. }
            | ApprovalDecision::Unavailable { call_id } => call_id,
        }
    }
}

/// The events to journal and the effect to perform after them.
#[derive(Debug)]
pub struct Transition {
    pub events: Vec<Event>,
    pub effect: Effect,
}

/// A call accepted in the current step, waiting for approval or execution.
#[derive(Debug, Clone)]
struct PendingCall {
    invocation: ToolInvocation,
    needs_approval: bool,
    /// The journaled approval request, once there is one.
    approval: Option<RequestedApproval>,
    reconciliation: ReconcileState,
    /// It was ready to run when a process died driving the run, so it may
    /// have started.
    may_have_run: bool,
}

#[derive(Debug, Clone)]
struct RequestedApproval {
    rationale: Option<String>,
    expires_at_ms: u64,
}

/// One approval decision, as it will be journaled.
struct Verdict {
    call_id: String,
    tool: String,
    approved: bool,
    by: String,
    note: Option<String>,
    edited_arguments: Option<Value>,
}

impl Verdict {
    fn approve(call_id: String, tool: String, by: String, edited_arguments: Option<Value>) -> Self {
        let note = edited_arguments.is_some().then(|| "approved with edited arguments".to_owned());
        Self { call_id, tool, approved: true, by, note, edited_arguments }
    }

    fn reject(call_id: String, tool: String, by: String, note: Option<String>) -> Self {
        Self { call_id, tool, approved: false, by, note, edited_arguments: None }
    }
}

/// Whether a call that may have run before a crash may run (again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReconcileState {
    /// Nothing known against it.
    Clear,
    /// A person must say whether it took effect.
    Required,
    /// A person said it did not: run it again.
    Retry,
}

/// How a process takes a run up again from its journal.
#[derive(Debug, Clone)]
pub enum ResumeAction {
    /// Go on from where the journal ends (after a crash, or to retry
    /// lapsed approvals).
    Continue,
    /// Decide on approval requests the run waits for.
    Decide(Vec<ApprovalDecision>),
    /// Say what became of a call that needs reconciliation.
    Reconcile { call_id: String, resolution: rein_types::Reconciliation, by: String },
    /// Cancel the run.
    Cancel { reason: String },
}

/// Why a run cannot be taken up as asked. Nothing was journaled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResumeError {
    #[error("the run has no events")]
    NoEvents,
    #[error("the run already finished as {0}")]
    Finished(RunStatus),
    #[error("the run was started by agent `{journal}`, not `{given}`")]
    WrongAgent { journal: String, given: String },
    #[error("no approval request `{0}` is waiting in this run")]
    NoSuchApproval(String),
    #[error("the approval request for `{0}` has expired, which counts as a rejection")]
    Expired(String),
    #[error("the edited arguments do not match the tool's schema: {0}")]
    InvalidEdit(String),
    #[error("call `{0}` does not need reconciliation")]
    NotReconcilable(String),
}

/// What the run remembers about one distinct call (tool + canonical args).
#[derive(Debug, Clone)]
struct SeenCall {
    times: u32,
    step: u32,
    observation: Option<String>,
}

/// One run's state. See the module docs for how it changes.
pub struct RunMachine {
    plan: Arc<AgentPlan>,
    run_id: RunId,
    next_seq: u64,
    started_at_ms: u64,
    messages: Vec<Message>,
    prompt_chars: usize,
    /// Provider-reported prompt tokens of the last call, and the prompt
    /// characters at that time: the estimate's calibration point.
    calibration: Option<(u64, usize)>,
    step: u32,
    usage: Usage,
    /// Tokens counted against `max_tokens`: the provider's figures, or the
    /// call's worst-case estimate when a provider reports none.
    budget_tokens: u64,
    /// The worst-case estimate of the call in flight.
    requested_estimate: u64,
    last_finish: FinishReason,
    /// Final answers sent back for not matching the output schema.
    output_repairs: u32,
    /// What the call in flight is for.
    phase: Phase,
    /// A call of the current step failed or was refused: the next call
    /// reflects on it.
    step_had_failure: bool,
    cost_usd: f64,
    last_text: Option<String>,
    calls_per_tool: HashMap<usize, u32>,
    seen_calls: HashMap<String, SeenCall>,
    /// call id → canonical key, for calls of the current step.
    call_keys: HashMap<String, String>,
    seen_observations: HashSet<u64>,
    step_added_information: bool,
    step_open_calls: usize,
    /// Reports journaled per call of the current step.
    reports_per_call: HashMap<String, u32>,
    no_progress_steps: u32,
    consecutive_invalid: u32,
    consecutive_tool_errors: u32,
    last_tool_error: Option<(String, String)>,
    successful_changes: u32,
    partial_results: Vec<PartialResult>,
    pending: Vec<PendingCall>,
    stop_tool_output: Option<String>,
    outcome: Option<RunOutcome>,
    /// A model call was journaled and its answer was not.
    awaiting_model: bool,
    /// Time that does not count against the wall-clock limit: waiting for
    /// people, and time the run was not running at all.
    paused_ms: u64,
    /// Since when the run has been waiting for approvals, if it is.
    waiting_since_ms: Option<u64>,
    /// Set while the run is suspended.
    suspended: Option<RunStatus>,
    last_event_at_ms: u64,
}

impl RunMachine {
    /// Starts a run: journals `run_started` and asks for the first model call.
    pub fn start(
        plan: Arc<AgentPlan>,
        run_id: RunId,
        tenant: TenantId,
        input: String,
        now_ms: u64,
    ) -> (Self, Transition) {
        let mut machine = Self::empty(plan, run_id);
        let mut events = Vec::with_capacity(2);
        let started = EventKind::RunStarted {
            agent: machine.plan.spec.name.clone(),
            agent_version: machine.plan.version.clone(),
            model: machine.plan.spec.model.to_string(),
            input,
            limits: machine.plan.spec.limits.clone(),
            format: JOURNAL_FORMAT_VERSION,
            tenant,
        };
        machine.emit(&mut events, now_ms, started);
        let effect = machine.next_model_call(&mut events, now_ms);
        (machine, Transition { events, effect })
    }

    /// Rebuilds a run's state from its journal, as resume will: every event
    /// goes through [`RunMachine::apply`], the only place state changes.
    pub fn replay(plan: Arc<AgentPlan>, run_id: RunId, events: &[Event]) -> Self {
        let mut machine = Self::empty(plan, run_id);
        for event in events {
            machine.apply(event);
        }
        machine
    }

    /// Calls accepted and not yet resolved (waiting for approval or to run).
    pub fn pending_calls(&self) -> Vec<ToolInvocation> {
        self.pending.iter().map(|p| p.invocation.clone()).collect()
    }

    fn empty(plan: Arc<AgentPlan>, run_id: RunId) -> Self {
        Self {
            plan,
            run_id,
            next_seq: 0,
            started_at_ms: 0,
            messages: Vec::with_capacity(8),
            prompt_chars: 0,
            calibration: None,
            step: 0,
            usage: Usage::default(),
            budget_tokens: 0,
            requested_estimate: 0,
            last_finish: FinishReason::Stop,
            output_repairs: 0,
            phase: Phase::Planning,
            step_had_failure: false,
            cost_usd: 0.0,
            last_text: None,
            calls_per_tool: HashMap::new(),
            seen_calls: HashMap::new(),
            call_keys: HashMap::new(),
            seen_observations: HashSet::new(),
            step_added_information: false,
            step_open_calls: 0,
            reports_per_call: HashMap::new(),
            no_progress_steps: 0,
            consecutive_invalid: 0,
            consecutive_tool_errors: 0,
            last_tool_error: None,
            successful_changes: 0,
            partial_results: Vec::new(),
            pending: Vec::new(),
            stop_tool_output: None,
            outcome: None,
            awaiting_model: false,
            paused_ms: 0,
            waiting_since_ms: None,
            suspended: None,
            last_event_at_ms: 0,
        }
    }

    pub fn run_id(&self) -> RunId {
        self.run_id
    }

    pub fn plan(&self) -> &Arc<AgentPlan> {
        &self.plan
    }

    /// What the model call in flight (or the last one) is for.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The model reference serving `phase`: its route, or the agent's model.
    fn model_for(&self, phase: Phase) -> &rein_types::ModelRef {
        self.plan.spec.routes.get(&phase).map_or(&self.plan.spec.model, |route| &route.model)
    }

    /// The price of the model serving `phase`.
    fn price_for(&self, phase: Phase) -> Option<ModelPrice> {
        match self.plan.spec.routes.get(&phase) {
            Some(route) => route.price,
            None => self.plan.spec.price,
        }
    }

    /// Model calls made so far.
    pub fn step(&self) -> u32 {
        self.step
    }

    pub fn usage(&self) -> Usage {
        self.usage
    }

    pub fn cost_usd(&self) -> f64 {
        self.cost_usd
    }

    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    /// When the run's wall-clock limit expires (Unix ms). Time spent
    /// waiting for people or not running at all is added back.
    pub fn deadline_ms(&self) -> u64 {
        self.started_at_ms.saturating_add(self.plan.spec.limits.timeout_ms).saturating_add(self.paused_ms)
    }

    /// The status a run in this state has: its final one, a suspension, or
    /// running.
    pub fn status(&self) -> RunStatus {
        match (&self.outcome, self.suspended) {
            (Some(outcome), _) => outcome.status,
            (None, Some(status)) => status,
            (None, None) => RunStatus::Running,
        }
    }

    /// What a person must decide for the run to go on: approval requests
    /// not yet decided, and calls needing reconciliation.
    pub fn pending_actions(&self) -> Vec<rein_types::PendingAction> {
        self.pending
            .iter()
            .filter_map(|p| {
                let risk = self.plan.catalog.spec(p.invocation.tool_index).risk;
                let (kind, rationale, expires_at_ms) = if p.reconciliation == ReconcileState::Required {
                    (rein_types::PendingKind::Reconciliation, None, None)
                } else if p.needs_approval {
                    let approval = p.approval.as_ref()?;
                    (rein_types::PendingKind::Approval, approval.rationale.clone(), Some(approval.expires_at_ms))
                } else {
                    return None;
                };
                Some(rein_types::PendingAction {
                    id: p.invocation.idempotency_key.0.clone(),
                    kind,
                    step: p.invocation.step,
                    call_id: p.invocation.call_id.clone(),
                    tool: p.invocation.tool.clone(),
                    risk,
                    arguments: p.invocation.arguments.clone(),
                    rationale,
                    expires_at_ms,
                })
            })
            .collect()
    }

    pub fn outcome(&self) -> Option<&RunOutcome> {
        self.outcome.as_ref()
    }

    /// The request for the model call the last transition asked for.
    pub fn model_request(&self) -> ModelRequest<'_> {
        let settings = &self.plan.spec.settings;
        // The synthesis call writes the answer; it may not call tools.
        let tools: &[rein_types::ToolSpec] =
            if matches!(self.phase, Phase::Synthesis | Phase::Summarisation) { &[] } else { &self.plan.tool_specs };
        ModelRequest {
            model: &self.model_for(self.phase).name,
            messages: &self.messages,
            tools,
            max_output_tokens: settings.max_output_tokens,
            temperature: settings.temperature,
            top_p: settings.top_p,
            seed: settings.seed,
            stop: &settings.stop,
            output_schema: self.plan.spec.output_schema.as_ref(),
        }
    }

    // ----- inputs -----------------------------------------------------------

    /// The model answered.
    pub fn on_model_response(&mut self, response: ModelResponse, latency_ms: u64, now_ms: u64) -> Transition {
        let mut events = Vec::with_capacity(4);
        let cost_usd = self.price_for(self.phase).map_or(0.0, |p| p.cost(&response.usage));
        let step = self.step;
        let ModelResponse { text, mut tool_calls, usage, finish_reason, served_by } = response;
        unique_call_ids(&mut tool_calls);
        self.emit(
            &mut events,
            now_ms,
            EventKind::ModelResponded { step, text, tool_calls, usage, cost_usd, latency_ms, finish_reason, served_by },
        );
        // Budgets are checked again with the real figures: a provider that
        // ignores the output cap must not let the run overspend silently.
        if let Some(effect) = self.check_spent(&mut events, now_ms) {
            return Transition { events, effect };
        }
        if self.phase == Phase::Summarisation {
            let summary = match self.messages.last() {
                Some(Message::Assistant { text: Some(text), .. }) => text.trim().to_owned(),
                _ => String::new(),
            };
            if !summary.is_empty() {
                let step = self.step;
                let replaced = self.messages.len() as u32;
                self.emit(&mut events, now_ms, EventKind::ContextSummarised { step, summary, replaced });
            }
            // A summary of nothing is dropped; the run goes on with its
            // history as it was.
            let effect = self.after_summary(&mut events, now_ms);
            return Transition { events, effect };
        }
        let tool_calls = match &self.messages.last() {
            Some(Message::Assistant { tool_calls, .. }) => tool_calls.clone(),
            _ => Vec::new(),
        };
        let effect = if tool_calls.is_empty() {
            self.final_answer(&mut events, now_ms)
        } else {
            self.accept_calls(&mut events, now_ms, tool_calls)
        };
        Transition { events, effect }
    }

    /// The model call failed after the provider's own retries.
    pub fn on_model_error(&mut self, error: &ModelError, latency_ms: u64, now_ms: u64) -> Transition {
        let mut events = Vec::with_capacity(2);
        let step = self.step;
        self.emit(
            &mut events,
            now_ms,
            EventKind::ModelFailed { step, kind: error.kind, message: error.message.clone(), latency_ms },
        );
        let explanation = explain::model_failed(error, self.partial_results.len());
        let reason = format!("model_error:{}", error.kind.as_str());
        let effect = self.finish(&mut events, now_ms, RunStatus::Failed, reason, explanation, None);
        Transition { events, effect }
    }

    /// A call of the last `ExecuteTools` effect reported on itself while it
    /// runs. Returns the event to journal — `None` for a call that is not
    /// running, or once the call used up [`MAX_REPORTS_PER_CALL`]. Long
    /// texts are cut. Reports change no state but the count, and the model
    /// never sees them.
    pub fn on_tool_report(&mut self, call_id: &str, report: ToolReport, now_ms: u64) -> Option<Event> {
        let tool = self.pending.iter().find(|p| p.invocation.call_id == call_id)?.invocation.tool.clone();
        let count = self.reports_per_call.get(call_id).copied().unwrap_or(0);
        if count >= MAX_REPORTS_PER_CALL {
            return None;
        }
        let report = if count + 1 == MAX_REPORTS_PER_CALL {
            ToolReport::Log {
                level: rein_types::LogLevel::Warning,
                logger: Some("rein".into()),
                data: Value::String(format!(
                    "this call reported {MAX_REPORTS_PER_CALL} times; its further reports are not journaled"
                )),
            }
        } else {
            bounded_report(report)
        };
        let mut events = Vec::with_capacity(1);
        let kind = EventKind::ToolCallReported { step: self.step, call_id: call_id.to_owned(), tool, report };
        self.emit(&mut events, now_ms, kind);
        events.pop()
    }

    /// The calls of the last `ExecuteTools` effect returned.
    pub fn on_tool_results(&mut self, results: Vec<ToolResult>, now_ms: u64) -> Transition {
        let mut events = Vec::with_capacity(results.len() + 2);
        self.record_results(&mut events, results, now_ms);
        let effect = self.after_step(&mut events, now_ms);
        Transition { events, effect }
    }

    /// The run's deadline passed, or it was cancelled, while tools were
    /// running. `results` holds one outcome per call of the effect — the ones
    /// that finished, and for the others an error saying their effect is
    /// unknown — so every requested call is resolved in the journal before
    /// the run ends.
    pub fn on_tools_interrupted(
        &mut self,
        results: Vec<ToolResult>,
        cancelled: Option<&str>,
        now_ms: u64,
    ) -> Transition {
        let mut events = Vec::with_capacity(results.len() + 2);
        self.record_results(&mut events, results, now_ms);
        let effect = match cancelled {
            Some(reason) => {
                let explanation = explain::cancelled(reason, self.partial_results.len());
                self.finish(&mut events, now_ms, RunStatus::Cancelled, "cancelled".into(), explanation, None)
            }
            None => {
                let detail = policy::timeout_detail(&self.plan.spec.limits);
                self.limit(&mut events, now_ms, LimitKind::Timeout, detail)
            }
        };
        Transition { events, effect }
    }

    fn record_results(&mut self, events: &mut Vec<Event>, results: Vec<ToolResult>, now_ms: u64) {
        let step = self.step;
        for result in results {
            let Some(tool) =
                self.pending.iter().find(|p| p.invocation.call_id == result.call_id).map(|p| p.invocation.tool.clone())
            else {
                continue;
            };
            self.emit(
                events,
                now_ms,
                EventKind::ToolCallExecuted {
                    step,
                    call_id: result.call_id,
                    tool,
                    outcome: result.outcome,
                    latency_ms: result.latency_ms,
                },
            );
        }
    }

    /// People decided on the calls of the last `RequestApprovals` effect.
    /// Requests past their expiry that nobody decided count as rejected.
    /// When some stay undecided, the run waits: it asks again for those
    /// not mentioned at all, and suspends as `waiting_approval` when the
    /// approver said nobody can decide now.
    pub fn on_approvals(&mut self, decisions: Vec<ApprovalDecision>, now_ms: u64) -> Transition {
        let mut events = Vec::with_capacity(decisions.len() * 2 + 2);
        let effect = self.decide(&mut events, decisions, now_ms);
        Transition { events, effect }
    }

    fn decide(&mut self, events: &mut Vec<Event>, decisions: Vec<ApprovalDecision>, now_ms: u64) -> Effect {
        let step = self.step;
        let mut waited_ms = self.waiting_since_ms.map_or(0, |since| now_ms.saturating_sub(since));
        let mut unavailable = false;
        let mut verdicts: Vec<Verdict> = Vec::new();
        for decision in decisions {
            let Some(pending) =
                self.pending.iter().find(|p| p.needs_approval && p.invocation.call_id == decision.call_id())
            else {
                continue;
            };
            let call_id = pending.invocation.call_id.clone();
            let tool = pending.invocation.tool.clone();
            // Every decision comes down to one journaled verdict.
            let verdict = match decision {
                ApprovalDecision::Approve { by, .. } => Verdict::approve(call_id, tool, by, None),
                ApprovalDecision::Edit { by, arguments, .. } => {
                    let violations = self.plan.catalog.violations(pending.invocation.tool_index, &arguments);
                    if violations.is_empty() {
                        Verdict::approve(call_id, tool, by, Some(arguments))
                    } else {
                        let note =
                            format!("edited arguments do not match the tool's schema: {}", violations.join("; "));
                        Verdict::reject(call_id, tool, by, Some(note))
                    }
                }
                ApprovalDecision::Reject { by, reason, .. } => Verdict::reject(call_id, tool, by, reason),
                ApprovalDecision::Unavailable { .. } => {
                    unavailable = true;
                    continue;
                }
            };
            verdicts.push(verdict);
        }
        // Lapsed requests nobody decided on count as rejected.
        let lapsed = format!(
            "the request expired after {} without a decision",
            policy::human_duration(self.plan.spec.limits.approval_timeout_ms)
        );
        for p in &self.pending {
            if p.needs_approval
                && p.approval.as_ref().is_some_and(|a| now_ms >= a.expires_at_ms)
                && !verdicts.iter().any(|v| v.call_id == p.invocation.call_id)
            {
                let (call_id, tool) = (p.invocation.call_id.clone(), p.invocation.tool.clone());
                verdicts.push(Verdict::reject(call_id, tool, "expiry".to_owned(), Some(lapsed.clone())));
            }
        }
        for Verdict { call_id, tool, approved, by, note, edited_arguments } in verdicts {
            // A rejection is told to the model (as the call's observation).
            let rejection = (!approved).then(|| explain::approval_rejected(&tool, note.as_deref()));
            self.emit(
                events,
                now_ms,
                EventKind::ApprovalDecided {
                    step,
                    call_id: call_id.clone(),
                    tool: tool.clone(),
                    approved,
                    by,
                    waited_ms: std::mem::take(&mut waited_ms),
                    note,
                    edited_arguments,
                },
            );
            if let Some(message) = rejection {
                self.emit(
                    events,
                    now_ms,
                    EventKind::ToolCallRejected {
                        step,
                        call_id,
                        tool,
                        reason: RejectReason::ApprovalRejected,
                        message,
                    },
                );
            }
        }
        if self.pending.iter().any(|p| p.needs_approval) {
            if unavailable {
                let waiting: Vec<String> =
                    self.approval_requests().into_iter().map(|r| format!("`{}` ({})", r.tool, r.approval_id)).collect();
                let explanation = explain::waiting_for_approval(&waiting);
                return self.suspend(events, now_ms, RunStatus::WaitingApproval, "approval_required", explanation);
            }
            return Effect::RequestApprovals(self.approval_requests());
        }
        self.execute_pending(events, now_ms)
    }

    /// Pauses the run until a person acts.
    fn suspend(
        &mut self,
        events: &mut Vec<Event>,
        now_ms: u64,
        status: RunStatus,
        reason: &str,
        explanation: String,
    ) -> Effect {
        self.emit(
            events,
            now_ms,
            EventKind::RunSuspended { status, reason: reason.to_owned(), explanation: explanation.clone() },
        );
        Effect::Suspend(Box::new(self.snapshot(status, reason.to_owned(), explanation)))
    }

    /// The outcome so far of a run that has not finished.
    fn snapshot(&self, status: RunStatus, reason: String, explanation: String) -> RunOutcome {
        RunOutcome {
            run_id: self.run_id,
            agent: self.plan.spec.name.clone(),
            agent_version: self.plan.version.clone(),
            status,
            output: self.last_text.clone(),
            reason,
            explanation,
            limit: None,
            partial_results: self.partial_results.clone(),
            unbacked_claims: Vec::new(),
            steps: self.step,
            usage: self.usage,
            cost_usd: self.cost_usd,
            duration_ms: self.last_event_at_ms.saturating_sub(self.started_at_ms),
            pending: self.pending_actions(),
        }
    }

    // ----- resuming -----------------------------------------------------------

    /// Takes a run up again from its journal: replays `events`, journals
    /// that process `by` resumed it, and carries out `action`. Completed
    /// model and tool calls are not repeated: their results are in the
    /// journal. What was in flight when the journal ends is done again when
    /// that is safe — a model call, a `read` call, a call to an idempotent
    /// tool (with the same idempotency key) — and otherwise the run
    /// suspends as `needs_reconciliation` for a person to say what
    /// happened.
    ///
    /// Nothing is journaled when the action cannot apply (an unknown
    /// approval, an invalid edit).
    pub fn resume(
        plan: Arc<AgentPlan>,
        run_id: RunId,
        events: &[Event],
        by: &str,
        action: ResumeAction,
        now_ms: u64,
    ) -> Result<(Self, Transition), ResumeError> {
        let Some(last) = events.last() else { return Err(ResumeError::NoEvents) };
        if let Some(EventKind::RunStarted { agent, .. }) = events.first().map(|e| &e.kind)
            && *agent != plan.spec.name
        {
            return Err(ResumeError::WrongAgent { journal: agent.clone(), given: plan.spec.name.clone() });
        }
        let mut machine = Self::replay(plan, run_id, events);
        if let Some(outcome) = &machine.outcome {
            return Err(ResumeError::Finished(outcome.status));
        }
        machine.check_action(&action, now_ms)?;
        let mut out = Vec::with_capacity(4);
        let paused_ms = now_ms.saturating_sub(last.at_ms);
        machine.emit(&mut out, now_ms, EventKind::RunResumed { by: by.to_owned(), paused_ms });
        let effect = match action {
            ResumeAction::Continue => machine.continue_run(&mut out, now_ms),
            ResumeAction::Decide(decisions) => machine.decide(&mut out, decisions, now_ms),
            ResumeAction::Reconcile { call_id, resolution, by } => {
                machine.reconcile(&mut out, call_id, resolution, by, now_ms)
            }
            ResumeAction::Cancel { reason } => {
                let explanation = explain::cancelled(&reason, machine.partial_results.len());
                machine.finish(&mut out, now_ms, RunStatus::Cancelled, "cancelled".into(), explanation, None)
            }
        };
        Ok((machine, Transition { events: out, effect }))
    }

    fn check_action(&self, action: &ResumeAction, now_ms: u64) -> Result<(), ResumeError> {
        match action {
            ResumeAction::Continue | ResumeAction::Cancel { .. } => Ok(()),
            ResumeAction::Decide(decisions) => {
                for decision in decisions {
                    let Some(p) =
                        self.pending.iter().find(|p| p.needs_approval && p.invocation.call_id == decision.call_id())
                    else {
                        return Err(ResumeError::NoSuchApproval(decision.call_id().to_owned()));
                    };
                    if p.approval.as_ref().is_some_and(|a| now_ms >= a.expires_at_ms) {
                        return Err(ResumeError::Expired(p.invocation.tool.clone()));
                    }
                    if let ApprovalDecision::Edit { arguments, .. } = decision {
                        let violations = self.plan.catalog.violations(p.invocation.tool_index, arguments);
                        if !violations.is_empty() {
                            return Err(ResumeError::InvalidEdit(violations.join("; ")));
                        }
                    }
                }
                Ok(())
            }
            ResumeAction::Reconcile { call_id, .. } => {
                if self
                    .pending
                    .iter()
                    .any(|p| p.invocation.call_id == *call_id && p.reconciliation == ReconcileState::Required)
                {
                    Ok(())
                } else {
                    Err(ResumeError::NotReconcilable(call_id.clone()))
                }
            }
        }
    }

    /// Goes on from where the journal ends.
    fn continue_run(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Effect {
        if self.awaiting_model {
            // The answer was never journaled: ask again.
            if now_ms >= self.deadline_ms() {
                let detail = policy::timeout_detail(&self.plan.spec.limits);
                return self.limit(events, now_ms, LimitKind::Timeout, detail);
            }
            return Effect::CallModel;
        }
        if self.pending.is_empty() {
            return self.after_step(events, now_ms);
        }
        if self.pending.iter().any(|p| p.needs_approval) {
            // Nothing of this turn ran yet: calls run once every approval
            // is in. Lapsed requests are rejected on the way.
            return self.decide(events, Vec::new(), now_ms);
        }
        self.reconcile_or_execute(events, now_ms)
    }

    /// Runs the turn's calls again, unless one of them may already have
    /// changed something and cannot safely run twice.
    fn reconcile_or_execute(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Effect {
        let step = self.step;
        let unsafe_to_repeat: Vec<(String, String, Value, String)> = self
            .pending
            .iter()
            .filter(|p| p.reconciliation != ReconcileState::Retry)
            .filter(|p| {
                let spec = self.plan.catalog.spec(p.invocation.tool_index);
                spec.risk != RiskTier::Read && !spec.idempotent
            })
            .map(|p| {
                let i = &p.invocation;
                (i.call_id.clone(), i.tool.clone(), i.arguments.clone(), i.idempotency_key.0.clone())
            })
            .collect();
        if unsafe_to_repeat.is_empty() {
            return self.execute_pending(events, now_ms);
        }
        let mut listed = Vec::with_capacity(unsafe_to_repeat.len());
        for (call_id, tool, arguments, idempotency_key) in unsafe_to_repeat {
            listed.push(format!("`{tool}` ({idempotency_key})"));
            let already = self
                .pending
                .iter()
                .any(|p| p.invocation.call_id == call_id && p.reconciliation == ReconcileState::Required);
            if !already {
                self.emit(
                    events,
                    now_ms,
                    EventKind::ReconciliationRequired { step, call_id, tool, arguments, idempotency_key },
                );
            }
        }
        let explanation = explain::needs_reconciliation(&listed);
        self.suspend(events, now_ms, RunStatus::NeedsReconciliation, "needs_reconciliation", explanation)
    }

    fn reconcile(
        &mut self,
        events: &mut Vec<Event>,
        call_id: String,
        resolution: rein_types::Reconciliation,
        by: String,
        now_ms: u64,
    ) -> Effect {
        let step = self.step;
        let Some(tool) =
            self.pending.iter().find(|p| p.invocation.call_id == call_id).map(|p| p.invocation.tool.clone())
        else {
            // `check_action` found the call; nothing else removes it.
            return self.continue_run(events, now_ms);
        };
        self.emit(
            events,
            now_ms,
            EventKind::CallReconciled {
                step,
                call_id: call_id.clone(),
                tool: tool.clone(),
                resolution: resolution.clone(),
                by: by.clone(),
            },
        );
        match resolution {
            rein_types::Reconciliation::Done { result } => {
                let outcome = ToolOutcome::ok(result);
                self.emit(events, now_ms, EventKind::ToolCallExecuted { step, call_id, tool, outcome, latency_ms: 0 });
                if self.pending.is_empty() {
                    return self.after_step(events, now_ms);
                }
                self.reconcile_or_execute(events, now_ms)
            }
            rein_types::Reconciliation::Retry => self.reconcile_or_execute(events, now_ms),
            rein_types::Reconciliation::Fail { reason } => {
                let message = format!("{by} marked this call as failed: {reason}");
                let outcome = ToolOutcome::error(message);
                self.emit(
                    events,
                    now_ms,
                    EventKind::ToolCallExecuted { step, call_id, tool: tool.clone(), outcome, latency_ms: 0 },
                );
                let explanation = explain::reconciled_failed(&tool, &by, &reason, self.partial_results.len());
                self.finish(events, now_ms, RunStatus::Failed, "reconciled_failed".into(), explanation, None)
            }
        }
    }

    /// The run's wall-clock limit passed while an effect was in progress.
    pub fn on_deadline(&mut self, now_ms: u64) -> Transition {
        let mut events = Vec::with_capacity(2);
        let effect =
            self.limit(&mut events, now_ms, LimitKind::Timeout, policy::timeout_detail(&self.plan.spec.limits));
        Transition { events, effect }
    }

    /// Someone cancelled the run.
    pub fn on_cancel(&mut self, reason: &str, now_ms: u64) -> Transition {
        let mut events = Vec::with_capacity(1);
        let explanation = explain::cancelled(reason, self.partial_results.len());
        let effect = self.finish(&mut events, now_ms, RunStatus::Cancelled, "cancelled".into(), explanation, None);
        Transition { events, effect }
    }

    // ----- decisions --------------------------------------------------------

    /// Checks the limits and either journals the next model call or stops.
    fn next_model_call(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Effect {
        // Keep the system prompt, the task and the last turn: summarising a
        // shorter conversation would gain nothing.
        if let Some(threshold) = self.plan.spec.limits.summarise_above_tokens
            && self.messages.len() > 4
            && self.estimate_prompt_tokens() > threshold
        {
            let instruction = String::from(
                "Summarise the work so far for yourself: what was asked, what each tool call returned that still matters (keep exact ids, numbers and names), what is done and what remains. Do not call tools.",
            );
            return self.model_call(events, now_ms, Phase::Summarisation, Some(instruction));
        }
        let phase = if self.step == 0 {
            Phase::Planning
        } else if self.step_had_failure {
            Phase::Reflection
        } else {
            Phase::ToolSelection
        };
        self.model_call(events, now_ms, phase, None)
    }

    /// The next call after a summary, without summarising again (a summary
    /// still over the threshold would loop). The summary stands in for the
    /// steps before it, so the run goes on selecting tools.
    fn after_summary(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Effect {
        self.model_call(events, now_ms, Phase::ToolSelection, None)
    }

    /// Checks the limits and either journals a model call for `phase` or
    /// stops.
    fn model_call(
        &mut self,
        events: &mut Vec<Event>,
        now_ms: u64,
        phase: Phase,
        instruction: Option<String>,
    ) -> Effect {
        let limits = &self.plan.spec.limits;
        if self.step >= limits.max_steps {
            let detail = format!("used all {} steps", limits.max_steps);
            return self.limit(events, now_ms, LimitKind::MaxSteps, detail);
        }
        if now_ms >= self.deadline_ms() {
            let detail = policy::timeout_detail(limits);
            return self.limit(events, now_ms, LimitKind::Timeout, detail);
        }
        let estimated_prompt = self.estimate_prompt_tokens();
        let check = policy::check_budget(
            &self.plan.spec,
            self.price_for(phase),
            self.budget_tokens,
            self.cost_usd,
            estimated_prompt,
        );
        match check {
            BudgetCheck::Within { estimated_tokens } => {
                let step = self.step + 1;
                let kind = EventKind::ModelRequested {
                    step,
                    phase,
                    model: self.model_for(phase).to_string(),
                    messages: self.messages.len() as u32,
                    estimated_tokens,
                    instruction,
                };
                self.emit(events, now_ms, kind);
                Effect::CallModel
            }
            BudgetCheck::Exceeded { limit, detail } => self.limit(events, now_ms, limit, detail),
        }
    }

    /// Stops the run if the figures the provider reported broke a budget.
    fn check_spent(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Option<Effect> {
        let limits = &self.plan.spec.limits;
        if let Some(max) = limits.max_tokens
            && self.budget_tokens > max
        {
            let detail = format!("used {} tokens of a budget of {max}", self.budget_tokens);
            return Some(self.limit(events, now_ms, LimitKind::TokenBudget, detail));
        }
        if let Some(max) = limits.max_cost_usd
            && self.cost_usd > max
        {
            let detail = format!("spent ${:.4} of a budget of ${max:.4}", self.cost_usd);
            return Some(self.limit(events, now_ms, LimitKind::CostBudget, detail));
        }
        None
    }

    fn final_answer(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Effect {
        let answer = match self.messages.last() {
            Some(Message::Assistant { text: Some(text), .. }) => text.clone(),
            _ => String::new(),
        };
        match self.last_finish {
            FinishReason::Length => {
                let explanation = explain::answer_truncated(self.plan.spec.settings.max_output_tokens);
                return self.finish(events, now_ms, RunStatus::Failed, "answer_truncated".into(), explanation, None);
            }
            FinishReason::ContentFilter => {
                let explanation = explain::content_filtered(self.partial_results.len());
                return self.finish(events, now_ms, RunStatus::Failed, "content_filtered".into(), explanation, None);
            }
            FinishReason::Stop | FinishReason::ToolCalls | FinishReason::Other => {}
        }
        if self.phase != Phase::Synthesis && self.plan.spec.routes.contains_key(&Phase::Synthesis) {
            let instruction = String::from(
                "Write the final answer to the user's request, based on everything above. Do not call tools; answer directly.",
            );
            return self.model_call(events, now_ms, Phase::Synthesis, Some(instruction));
        }
        if answer.trim().is_empty() {
            let explanation = explain::empty_answer(self.step, self.partial_results.len());
            return self.finish(events, now_ms, RunStatus::Failed, "empty_answer".into(), explanation, None);
        }
        let mut answer = answer;
        if let Some(validator) = &self.plan.output_validator {
            let json_text = strip_code_fence(&answer);
            let problems: Vec<String> = match serde_json::from_str::<Value>(json_text) {
                Ok(value) => validator
                    .iter_errors(&value)
                    .map(|e| {
                        let at = e.instance_path().to_string();
                        if at.is_empty() { e.to_string() } else { format!("at `{at}`: {e}") }
                    })
                    .collect(),
                Err(error) => vec![format!("the answer is not JSON ({error})")],
            };
            if !problems.is_empty() {
                if self.output_repairs < self.plan.spec.limits.max_output_repairs {
                    let step = self.step;
                    let schema = self.plan.spec.output_schema.as_ref().map(Value::to_string).unwrap_or_default();
                    let message = explain::output_rejected(&problems, &schema);
                    self.emit(events, now_ms, EventKind::OutputRejected { step, errors: problems, message });
                    return self.next_model_call(events, now_ms);
                }
                let explanation = explain::invalid_output(&problems, self.output_repairs);
                return self.finish(events, now_ms, RunStatus::Failed, "invalid_output".into(), explanation, None);
            }
            answer = json_text.to_owned();
        }
        if self.plan.output_validator.is_some() {
            let explanation = String::from("The agent gave its final answer, which matches the output schema.");
            return self.finish(events, now_ms, RunStatus::Succeeded, "final_answer".into(), explanation, Some(answer));
        }
        let explanation = if self.successful_changes == 0 && !action_claims(&answer).is_empty() {
            explain::unbacked_claims()
        } else {
            String::from("The agent gave its final answer.")
        };
        self.finish(events, now_ms, RunStatus::Succeeded, "final_answer".into(), explanation, None)
    }

    /// Validates each call of a model turn; rejects what cannot run and
    /// schedules the rest.
    fn accept_calls(&mut self, events: &mut Vec<Event>, now_ms: u64, calls: Vec<ToolCall>) -> Effect {
        let step = self.step;
        let limits = &self.plan.spec.limits;
        let max_invalid = limits.max_invalid_calls;
        for (call_index, call) in calls.into_iter().enumerate() {
            let ToolCall { id: ToolCallId(call_id), name, arguments: raw_arguments } = call;
            let Some(tool_index) = self.plan.catalog.index_of(&name) else {
                let message = explain::unknown_tool(&name, &self.plan.catalog.names());
                self.emit(
                    events,
                    now_ms,
                    EventKind::ToolCallRejected {
                        step,
                        call_id,
                        tool: name,
                        reason: RejectReason::UnknownTool,
                        message,
                    },
                );
                continue;
            };
            let arguments: Value = match parse_arguments(&raw_arguments) {
                Ok(value) => value,
                Err(error) => {
                    let message = explain::malformed_arguments(&name, &error);
                    self.emit(
                        events,
                        now_ms,
                        EventKind::ToolCallRejected {
                            step,
                            call_id,
                            tool: name,
                            reason: RejectReason::MalformedArguments,
                            message,
                        },
                    );
                    continue;
                }
            };
            let violations = self.plan.catalog.violations(tool_index, &arguments);
            if !violations.is_empty() {
                let message = explain::invalid_arguments(&name, &violations);
                self.emit(
                    events,
                    now_ms,
                    EventKind::ToolCallRejected {
                        step,
                        call_id,
                        tool: name,
                        reason: RejectReason::InvalidArguments,
                        message,
                    },
                );
                continue;
            }
            let key = canonical_call_key(&name, &arguments);
            if let Some(seen) = self.seen_calls.get(&key) {
                if seen.times >= 2 {
                    let detail = format!("`{name}` was called a third time with the same arguments");
                    return self.limit(events, now_ms, LimitKind::RepeatedAction, detail);
                }
                let message = explain::repeated_call(&name, seen.step, seen.observation.as_deref());
                self.emit(
                    events,
                    now_ms,
                    EventKind::ToolCallRejected {
                        step,
                        call_id,
                        tool: name,
                        reason: RejectReason::RepeatedCall,
                        message,
                    },
                );
                continue;
            }
            let spec = self.plan.catalog.spec(tool_index);
            if let Some(max) = spec.max_calls
                && self.calls_per_tool.get(&tool_index).copied().unwrap_or(0) >= max
            {
                let message = explain::call_limit(&name, max);
                self.emit(
                    events,
                    now_ms,
                    EventKind::ToolCallRejected { step, call_id, tool: name, reason: RejectReason::CallLimit, message },
                );
                continue;
            }
            let risk = spec.risk;
            let idempotency_key = IdempotencyKey::for_call(self.run_id, step, call_index);
            self.emit(
                events,
                now_ms,
                EventKind::ToolCallRequested {
                    step,
                    call_id: call_id.clone(),
                    tool: name.clone(),
                    arguments: arguments.clone(),
                    risk,
                    idempotency_key: idempotency_key.0.clone(),
                },
            );
            if name == HANDOFF_TOOL {
                let reason =
                    arguments.get("reason").and_then(Value::as_str).unwrap_or("the agent asked for a human").to_owned();
                let explanation = explain::handed_off(&reason, self.partial_results.len());
                return self.finish(events, now_ms, RunStatus::Escalated, "handoff".into(), explanation, None);
            }
            // `apply` of the requested event queued the call.
        }
        if self.consecutive_invalid >= max_invalid {
            let explanation = explain::invalid_calls(self.consecutive_invalid, &self.messages);
            return self.finish(events, now_ms, RunStatus::Failed, "invalid_tool_calls".into(), explanation, None);
        }
        // The model's stated reason is what it said alongside these calls,
        // not something from an earlier step.
        let rationale = match self.messages.last() {
            Some(Message::Assistant { text: Some(text), .. }) if !text.trim().is_empty() => Some(text.clone()),
            _ => None,
        };
        // Each request is journaled with its preview before anyone is
        // asked, so a person can decide on it from any process.
        let expires_at_ms = now_ms.saturating_add(self.plan.spec.limits.approval_timeout_ms);
        let to_request: Vec<(String, String, String, RiskTier, Value)> = self
            .pending
            .iter()
            .filter(|p| p.needs_approval && p.approval.is_none())
            .map(|p| {
                let risk = self.plan.catalog.spec(p.invocation.tool_index).risk;
                let i = &p.invocation;
                (i.call_id.clone(), i.idempotency_key.0.clone(), i.tool.clone(), risk, i.arguments.clone())
            })
            .collect();
        for (call_id, approval_id, tool, risk, arguments) in to_request {
            self.emit(
                events,
                now_ms,
                EventKind::ApprovalRequested {
                    step,
                    call_id,
                    approval_id,
                    tool,
                    risk,
                    arguments,
                    rationale: rationale.clone(),
                    expires_at_ms,
                },
            );
        }
        self.request_approvals_or_execute(events, now_ms)
    }

    /// Asks for the approvals still undecided, or runs the calls when none
    /// are.
    fn request_approvals_or_execute(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Effect {
        let requests = self.approval_requests();
        if requests.is_empty() { self.execute_pending(events, now_ms) } else { Effect::RequestApprovals(requests) }
    }

    /// The journaled approval requests not yet decided.
    fn approval_requests(&self) -> Vec<ApprovalRequest> {
        self.pending
            .iter()
            .filter(|p| p.needs_approval)
            .filter_map(|p| {
                let approval = p.approval.as_ref()?;
                Some(ApprovalRequest {
                    step: p.invocation.step,
                    call_id: p.invocation.call_id.clone(),
                    approval_id: p.invocation.idempotency_key.0.clone(),
                    expires_at_ms: approval.expires_at_ms,
                    tool: p.invocation.tool.clone(),
                    risk: self.plan.catalog.spec(p.invocation.tool_index).risk,
                    arguments: p.invocation.arguments.clone(),
                    rationale: approval.rationale.clone(),
                })
            })
            .collect()
    }

    /// Runs the accepted calls, or moves on when none are left.
    fn execute_pending(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Effect {
        if self.pending.is_empty() {
            return self.after_step(events, now_ms);
        }
        // Waiting for a human can take a while; nothing starts after the
        // run's time is up.
        if now_ms >= self.deadline_ms() {
            let detail = policy::timeout_detail(&self.plan.spec.limits);
            return self.limit(events, now_ms, LimitKind::Timeout, detail);
        }
        // Rejected calls were removed by `apply`; approved ones may carry
        // edited arguments.
        Effect::ExecuteTools(self.pending.iter().map(|p| p.invocation.clone()).collect())
    }

    /// Every call of the step is resolved: check the step's limits and go on.
    fn after_step(&mut self, events: &mut Vec<Event>, now_ms: u64) -> Effect {
        if let Some(output) = self.stop_tool_output.clone() {
            let explanation = String::from("A stop-condition tool succeeded, so the run ended with its result.");
            return self.finish(
                events,
                now_ms,
                RunStatus::Succeeded,
                "stop_condition".into(),
                explanation,
                Some(output),
            );
        }
        let limits = &self.plan.spec.limits;
        if self.consecutive_tool_errors >= limits.max_tool_errors {
            let (tool, error) = self.last_tool_error.clone().unwrap_or_default();
            let explanation =
                explain::tool_cascade(self.consecutive_tool_errors, &tool, &error, self.partial_results.len());
            return self.finish(events, now_ms, RunStatus::Failed, "tool_errors".into(), explanation, None);
        }
        if self.consecutive_invalid >= limits.max_invalid_calls {
            let explanation = explain::invalid_calls(self.consecutive_invalid, &self.messages);
            return self.finish(events, now_ms, RunStatus::Failed, "invalid_tool_calls".into(), explanation, None);
        }
        if self.no_progress_steps >= limits.max_no_progress_steps {
            let detail = format!("{} steps in a row added no new information", self.no_progress_steps);
            return self.limit(events, now_ms, LimitKind::NoProgress, detail);
        }
        self.next_model_call(events, now_ms)
    }

    fn limit(&mut self, events: &mut Vec<Event>, now_ms: u64, limit: LimitKind, detail: String) -> Effect {
        let step = self.step;
        self.emit(events, now_ms, EventKind::LimitHit { step, limit, detail: detail.clone() });
        let explanation = explain::limit_reached(
            limit,
            &detail,
            &self.plan.spec.limits,
            &self.partial_results,
            self.last_text.as_deref(),
        );
        self.finish_with_limit(events, now_ms, explanation, limit)
    }

    fn finish_with_limit(
        &mut self,
        events: &mut Vec<Event>,
        now_ms: u64,
        explanation: String,
        limit: LimitKind,
    ) -> Effect {
        self.finish_inner(
            events,
            now_ms,
            RunStatus::LimitReached,
            limit.as_str().into(),
            explanation,
            Some(limit),
            None,
        )
    }

    fn finish(
        &mut self,
        events: &mut Vec<Event>,
        now_ms: u64,
        status: RunStatus,
        reason: String,
        explanation: String,
        output: Option<String>,
    ) -> Effect {
        self.finish_inner(events, now_ms, status, reason, explanation, None, output)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish_inner(
        &mut self,
        events: &mut Vec<Event>,
        now_ms: u64,
        status: RunStatus,
        reason: String,
        explanation: String,
        limit: Option<LimitKind>,
        output: Option<String>,
    ) -> Effect {
        // Calls accepted but never run (a later call in the turn ended the
        // run, or time ran out before they started) are resolved, so every
        // requested call has exactly one outcome in the journal.
        // A call that may have started before a crash is not "not run":
        // its effect is unknown, and the journal says so.
        let step = self.step;
        let unrun: Vec<(String, String, bool)> = self
            .pending
            .iter()
            .map(|p| {
                let in_doubt = p.may_have_run || p.reconciliation == ReconcileState::Required;
                (p.invocation.call_id.clone(), p.invocation.tool.clone(), in_doubt)
            })
            .collect();
        for (call_id, tool, in_doubt) in unrun {
            if in_doubt {
                let outcome = ToolOutcome::Error {
                    message: format!(
                        "The run ended ({reason}) while it was unknown whether `{tool}` took effect: it was in flight when a process died."
                    ),
                    hint: Some("Check the system it acts on before doing this again.".into()),
                    retryable: false,
                };
                self.emit(events, now_ms, EventKind::ToolCallExecuted { step, call_id, tool, outcome, latency_ms: 0 });
            } else {
                let message = format!("Not run: the run ended ({reason}) before `{tool}` was executed.");
                self.emit(
                    events,
                    now_ms,
                    EventKind::ToolCallRejected { step, call_id, tool, reason: RejectReason::RunEnded, message },
                );
            }
        }
        let output = output.or_else(|| self.last_text.clone());
        let unbacked_claims = match (&output, status) {
            (Some(text), RunStatus::Succeeded) if self.successful_changes == 0 => action_claims(text),
            _ => Vec::new(),
        };
        self.emit(
            events,
            now_ms,
            EventKind::RunFinished {
                status,
                output,
                reason,
                explanation,
                limit,
                partial_results: self.partial_results.clone(),
                unbacked_claims,
                steps: self.step,
                usage: self.usage,
                cost_usd: self.cost_usd,
                duration_ms: now_ms.saturating_sub(self.started_at_ms),
            },
        );
        match &self.outcome {
            Some(outcome) => Effect::Finish(Box::new(outcome.clone())),
            // `apply` of `RunFinished` always sets the outcome.
            None => unreachable!("run_finished was applied"),
        }
    }

    fn estimate_prompt_tokens(&self) -> u64 {
        let chars = self.prompt_chars + self.plan.catalog.prompt_chars();
        match self.calibration {
            Some((tokens, chars_then)) => tokens + (chars.saturating_sub(chars_then) as u64).div_ceil(4),
            None => (chars as u64).div_ceil(4) + 4 * self.messages.len() as u64,
        }
    }

    // ----- state ------------------------------------------------------------

    fn emit(&mut self, events: &mut Vec<Event>, now_ms: u64, kind: EventKind) {
        let event = Event { run_id: self.run_id, seq: self.next_seq, at_ms: now_ms, kind };
        self.apply(&event);
        events.push(event);
    }

    /// Changes the state from one event. The only place state changes.
    pub fn apply(&mut self, event: &Event) {
        self.next_seq = event.seq + 1;
        self.last_event_at_ms = event.at_ms;
        match &event.kind {
            EventKind::RunStarted { input, .. } => {
                self.started_at_ms = event.at_ms;
                self.push_message(Message::System { text: self.plan.spec.system_prompt.clone() });
                self.push_message(Message::User { text: input.clone() });
            }
            EventKind::ModelRequested { step, phase, estimated_tokens, instruction, .. } => {
                self.step = *step;
                self.phase = *phase;
                self.step_had_failure = false;
                self.requested_estimate = *estimated_tokens;
                if let Some(text) = instruction {
                    self.push_message(Message::User { text: text.clone() });
                }
                self.step_added_information = false;
                self.step_open_calls = 0;
                self.call_keys.clear();
                self.reports_per_call.clear();
                self.awaiting_model = true;
            }
            EventKind::ModelResponded { text, tool_calls, usage, cost_usd, finish_reason, .. } => {
                self.awaiting_model = false;
                self.usage += *usage;
                self.cost_usd += cost_usd;
                self.last_finish = *finish_reason;
                self.budget_tokens += if usage.total() == 0 { self.requested_estimate } else { usage.total() };
                if let Some(text) = text.as_ref().filter(|t| !t.trim().is_empty()) {
                    self.last_text = Some(text.clone());
                }
                // A provider that reports no usage gives nothing to calibrate on.
                if usage.input_tokens > 0 {
                    self.calibration = Some((usage.input_tokens, self.prompt_chars + self.plan.catalog.prompt_chars()));
                }
                self.step_open_calls = tool_calls.len();
                // Keys are derived here, from the journaled calls, so that a
                // replay sees the same repeated-call bookkeeping.
                for call in tool_calls {
                    if let Ok(arguments) = parse_arguments(&call.arguments) {
                        self.call_keys.insert(call.id.0.clone(), canonical_call_key(&call.name, &arguments));
                    }
                }
                self.push_message(Message::Assistant { text: text.clone(), tool_calls: tool_calls.clone() });
            }
            EventKind::ModelFailed { .. } => self.awaiting_model = false,
            EventKind::ControlNotice { .. } | EventKind::LimitHit { .. } => {}
            EventKind::ToolCallReported { call_id, .. } => {
                *self.reports_per_call.entry(call_id.clone()).or_default() += 1;
            }
            EventKind::ApprovalRequested { call_id, rationale, expires_at_ms, .. } => {
                if let Some(pending) = self.pending.iter_mut().find(|p| p.invocation.call_id == *call_id) {
                    pending.approval =
                        Some(RequestedApproval { rationale: rationale.clone(), expires_at_ms: *expires_at_ms });
                }
                self.waiting_since_ms.get_or_insert(event.at_ms);
            }
            EventKind::ReconciliationRequired { call_id, .. } => {
                if let Some(pending) = self.pending.iter_mut().find(|p| p.invocation.call_id == *call_id) {
                    pending.reconciliation = ReconcileState::Required;
                }
            }
            EventKind::CallReconciled { call_id, resolution, .. } => {
                if let Some(pending) = self.pending.iter_mut().find(|p| p.invocation.call_id == *call_id) {
                    pending.reconciliation = match resolution {
                        rein_types::Reconciliation::Retry => ReconcileState::Retry,
                        _ => ReconcileState::Clear,
                    };
                }
            }
            EventKind::RunSuspended { status, .. } => {
                self.suspended = Some(*status);
                // The wait up to the suspension is counted now; the
                // suspension itself is counted by the resumption.
                if let Some(since) = self.waiting_since_ms {
                    self.paused_ms += event.at_ms.saturating_sub(since);
                    self.waiting_since_ms = Some(event.at_ms);
                }
            }
            EventKind::RunResumed { paused_ms, .. } => {
                let was_suspended = self.suspended.take().is_some();
                self.paused_ms += paused_ms;
                // The pause is already counted; waiting goes on from here.
                if self.waiting_since_ms.is_some() {
                    self.waiting_since_ms = Some(event.at_ms);
                }
                if !was_suspended {
                    // The process before died while driving the run: calls
                    // ready to run may have started, and a retried call
                    // may have run again, so it is judged afresh.
                    let turn_ran = !self.pending.iter().any(|p| p.needs_approval);
                    for pending in &mut self.pending {
                        pending.may_have_run |= turn_ran;
                        if pending.reconciliation == ReconcileState::Retry {
                            pending.reconciliation = ReconcileState::Clear;
                        }
                    }
                }
            }
            EventKind::ContextSummarised { summary, .. } => {
                // The system prompt and the task stay; everything after them
                // becomes the summary.
                let kept: Vec<Message> = self.messages.drain(..).take(2).collect();
                self.prompt_chars = 0;
                self.calibration = None;
                for message in kept {
                    self.push_message(message);
                }
                self.push_message(Message::User { text: format!("Summary of the work so far:\n{summary}") });
            }
            EventKind::OutputRejected { message, .. } => {
                self.output_repairs += 1;
                self.push_message(Message::User { text: message.clone() });
            }
            EventKind::ToolCallRequested { step, tool, call_id, arguments, idempotency_key, .. } => {
                if let Some(index) = self.plan.catalog.index_of(tool) {
                    *self.calls_per_tool.entry(index).or_default() += 1;
                    let spec = self.plan.catalog.spec(index);
                    self.pending.push(PendingCall {
                        invocation: ToolInvocation {
                            step: *step,
                            call_id: call_id.clone(),
                            tool_index: index,
                            tool: tool.clone(),
                            arguments: arguments.clone(),
                            idempotency_key: IdempotencyKey(idempotency_key.clone()),
                            timeout_ms: self.plan.spec.limits.tool_timeout_ms,
                        },
                        needs_approval: spec.approval == rein_types::Approval::Required,
                        approval: None,
                        reconciliation: ReconcileState::Clear,
                        may_have_run: false,
                    });
                }
                self.consecutive_invalid = 0;
                // Approved edits change the arguments after this point, but the
                // call is still the one the model asked for.
                let key = canonical_call_key(tool, arguments);
                self.seen_calls.insert(key.clone(), SeenCall { times: 1, step: self.step, observation: None });
                self.call_keys.insert(call_id.clone(), key);
            }
            EventKind::ToolCallRejected { call_id, tool, reason, message, .. } => {
                match reason {
                    RejectReason::UnknownTool | RejectReason::MalformedArguments | RejectReason::InvalidArguments => {
                        self.consecutive_invalid += 1;
                        self.step_had_failure = true;
                    }
                    RejectReason::RepeatedCall => {
                        let key = self.call_keys.get(call_id).cloned().unwrap_or_default();
                        if let Some(seen) = self.seen_calls.get_mut(&key) {
                            seen.times += 1;
                        }
                    }
                    RejectReason::CallLimit => {}
                    RejectReason::ApprovalRejected => {
                        // Nothing ran, so the call does not count against
                        // the tool's max_calls.
                        if let Some(index) = self.plan.catalog.index_of(tool)
                            && let Some(count) = self.calls_per_tool.get_mut(&index)
                        {
                            *count = count.saturating_sub(1);
                        }
                        // A human said no: that is new information for the model.
                        self.step_added_information = true;
                    }
                    RejectReason::RunEnded => {}
                }
                self.pending.retain(|p| p.invocation.call_id != *call_id);
                self.push_message(Message::Tool {
                    call_id: ToolCallId(call_id.clone()),
                    name: tool.clone(),
                    content: message.clone(),
                });
                self.resolve_call();
            }
            EventKind::ApprovalDecided { call_id, edited_arguments, approved, waited_ms, .. } => {
                self.paused_ms += waited_ms;
                if *approved && let Some(pending) = self.pending.iter_mut().find(|p| p.invocation.call_id == *call_id) {
                    pending.needs_approval = false;
                    if let Some(arguments) = edited_arguments {
                        pending.invocation.arguments = arguments.clone();
                    }
                }
                // The wait so far is counted; what remains is measured from
                // here.
                let others_waiting = self.pending.iter().any(|p| p.needs_approval && p.invocation.call_id != *call_id);
                self.waiting_since_ms = others_waiting.then_some(event.at_ms);
            }
            EventKind::ToolCallExecuted { call_id, tool, outcome, .. } => {
                let observation = outcome.to_observation();
                if self.seen_observations.insert(stable_hash(&[tool.as_bytes(), observation.as_bytes()])) {
                    self.step_added_information = true;
                }
                if let Some(key) = self.call_keys.get(call_id)
                    && let Some(seen) = self.seen_calls.get_mut(key)
                {
                    seen.observation = Some(observation.clone());
                }
                let index = self.plan.catalog.index_of(tool);
                match outcome {
                    ToolOutcome::Ok { data, .. } => {
                        self.consecutive_tool_errors = 0;
                        if let Some(index) = index
                            && self.plan.catalog.spec(index).risk != RiskTier::Read
                        {
                            self.successful_changes += 1;
                        }
                        self.partial_results.push(PartialResult {
                            step: self.step,
                            tool: tool.clone(),
                            data: data.clone(),
                        });
                        if self.plan.spec.stop.after_tools.iter().any(|t| t == tool) {
                            self.stop_tool_output = Some(match data {
                                Value::String(text) => text.clone(),
                                other => other.to_string(),
                            });
                        }
                    }
                    ToolOutcome::Error { message, .. } => {
                        self.step_had_failure = true;
                        self.consecutive_tool_errors += 1;
                        self.last_tool_error = Some((tool.clone(), message.clone()));
                    }
                }
                self.pending.retain(|p| p.invocation.call_id != *call_id);
                self.push_message(Message::Tool {
                    call_id: ToolCallId(call_id.clone()),
                    name: tool.clone(),
                    content: observation,
                });
                self.resolve_call();
            }
            kind @ EventKind::RunFinished { .. } => {
                self.pending.clear();
                self.stop_tool_output = None;
                self.outcome =
                    crate::fold::finished_outcome(self.run_id, &self.plan.spec.name, &self.plan.version, kind);
            }
        }
    }

    /// One call of the step got its observation; when the last one does, the
    /// step's progress is judged.
    fn resolve_call(&mut self) {
        self.step_open_calls = self.step_open_calls.saturating_sub(1);
        if self.step_open_calls == 0 {
            if self.step_added_information {
                self.no_progress_steps = 0;
            } else {
                self.no_progress_steps += 1;
            }
        }
    }

    fn push_message(&mut self, message: Message) {
        self.prompt_chars += message.text_len();
        self.messages.push(message);
    }
}

/// The JSON inside a Markdown code fence, which models often wrap answers
/// in; the text itself otherwise.
/// A report with its texts cut to [`MAX_REPORT_BYTES`]: log data that is
/// longer as JSON becomes the cut JSON text.
fn bounded_report(report: ToolReport) -> ToolReport {
    match report {
        ToolReport::Progress { progress, total, message } => {
            ToolReport::Progress { progress, total, message: message.map(|m| cut(&m, MAX_REPORT_BYTES).to_owned()) }
        }
        ToolReport::Log { level, logger, data } => {
            let text = match &data {
                Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            let data = if text.len() <= MAX_REPORT_BYTES {
                data
            } else {
                Value::String(cut(&text, MAX_REPORT_BYTES).to_owned())
            };
            ToolReport::Log { level, logger: logger.map(|l| cut(&l, 200).to_owned()), data }
        }
    }
}

fn strip_code_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed.strip_prefix("```") else { return trimmed };
    let body = rest.split_once('\n').map_or("", |(_, body)| body);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// Results are matched to calls by id, so a turn whose calls share an id
/// (or have none) would lose results: such ids get a unique suffix.
fn unique_call_ids(calls: &mut [ToolCall]) {
    let mut seen: Vec<String> = Vec::with_capacity(calls.len());
    for (index, call) in calls.iter_mut().enumerate() {
        if call.id.0.is_empty() || seen.contains(&call.id.0) {
            call.id = ToolCallId(format!("{}#{}", call.id.0, index + 1));
        }
        seen.push(call.id.0.clone());
    }
}

/// FNV-1a over the parts, with a separator. Written here rather than taken
/// from std's `DefaultHasher`, whose output may change between Rust
/// releases: a replayed journal must judge progress exactly as the original
/// run did.
fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// Arguments as the model sent them. An empty string means "no arguments",
/// which several providers send for parameterless tools.
fn parse_arguments(raw: &str) -> Result<Value, serde_json::Error> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(raw)
}

/// Tool name plus arguments with object keys sorted: the same call written
/// two ways is still the same call.
fn canonical_call_key(tool: &str, arguments: &Value) -> String {
    let mut key = String::with_capacity(tool.len() + 32);
    key.push_str(tool);
    key.push('\u{0}');
    rein_types::agent::write_canonical(arguments, &mut key);
    key
}
