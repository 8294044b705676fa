//! The run loop: journal, then act.
//!
//! Invariant: every event is recorded, in order, before the runtime acts on
//! it; the journal is committed before any side effect (a `write` or
//! `dangerous` tool call, an approval request), right after one, and before
//! the run's result is returned (see [`Durability`] for the steps between).
//! When a model call's events must be committed, the request is sent first
//! and the commit overlaps its round trip; the answer is used only after the
//! commit. A journal failure stops the run with an error, because acting
//! without a record would break the guarantee.

use crate::agent::Agent;
use crate::approval::{Approver, NoApprover};
use crate::durability::{Durability, RunLog};
use crate::hooks::{Hooks, RunInfo};
use crate::stop::StopSignal;
use futures::stream::FuturesUnordered;
use futures::{FutureExt, StreamExt};
use rein_core::{Effect, ResumeAction, ResumeError, RunMachine, ToolInvocation, ToolResult, Transition};
use rein_types::{
    Clock, EventKind, Journal, JournalError, RiskTier, RunId, RunOutcome, StreamDelta, SystemClock, TenantId,
    ToolContext, ToolOutcome, ToolReport, ToolReporter,
};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Why a run could not be carried out. A run that *ends badly* (a limit, a
/// failed tool, a model error) is not an error: it is a [`RunOutcome`] with
/// its status and explanation.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("the journal could not record the run: {0}")]
    Journal(#[from] JournalError),
    #[error("invalid agent: {0}")]
    InvalidAgent(String),
    /// The run cannot be taken up as asked; nothing was journaled.
    #[error("cannot resume run {run}: {error}")]
    Resume { run: RunId, error: ResumeError },
}

/// Reports of one turn's calls waiting to be journaled; more are dropped.
const REPORT_BUFFER: usize = 256;

/// Per-run options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Use this id instead of a fresh one.
    pub run_id: Option<RunId>,
    /// Cancel the run from elsewhere; it stops as `cancelled` at once,
    /// interrupting tool calls in flight.
    pub cancel: Option<CancellationToken>,
    /// Stop the run at its next step boundary as `cancelled` (the kill
    /// switch): tool calls in flight finish and are journaled first; a
    /// model call or a wait for approval is abandoned.
    pub stop: Option<StopSignal>,
    /// Whose run this is (journaled in `run_started`); the default tenant
    /// when `None`. Ignored on resume: a run keeps its tenant.
    pub tenant: Option<TenantId>,
}

/// What can stop a run from outside: cancellation (at once) and the kill
/// switch (at the next step boundary).
struct Signals {
    cancel: CancellationToken,
    stop: StopSignal,
}

/// Runs agents, journaling every step. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    hooks: Arc<[Arc<dyn Hooks>]>,
    approver: Arc<dyn Approver>,
    durability: Durability,
    /// Whether model calls stream: set when a hook wants deltas.
    streaming: bool,
    /// Who this process is, journaled when it resumes a run.
    identity: Arc<str>,
}

impl Runtime {
    /// A runtime journaling to `journal`, on the system clock, with no hooks
    /// and no approver.
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        Self {
            journal,
            clock: Arc::new(SystemClock),
            hooks: Arc::from(Vec::new()),
            approver: Arc::new(NoApprover),
            durability: Durability::default(),
            streaming: false,
            identity: Arc::from(format!("pid/{}", std::process::id())),
        }
    }

    /// How this process names itself in the journal when it resumes a run
    /// (the store's process identity, `host/pid/start`).
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = Arc::from(identity.into());
        self
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        self.streaming |= hooks.wants_deltas();
        let mut all: Vec<Arc<dyn Hooks>> = self.hooks.iter().cloned().collect();
        all.push(hooks);
        self.hooks = all.into();
        self
    }

    /// How eagerly runs are committed; see [`Durability`].
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    pub fn with_approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = approver;
        self
    }

    pub fn journal(&self) -> &Arc<dyn Journal> {
        &self.journal
    }

    /// Runs `agent` on `input` to its end.
    pub async fn run(&self, agent: &Agent, input: impl Into<String>) -> Result<RunOutcome, RuntimeError> {
        self.run_with(agent, input, RunOptions::default()).await
    }

    pub async fn run_with(
        &self,
        agent: &Agent,
        input: impl Into<String>,
        options: RunOptions,
    ) -> Result<RunOutcome, RuntimeError> {
        let run_id = options.run_id.unwrap_or_default();
        let tenant = options.tenant.clone().unwrap_or_default();
        let (machine, transition) =
            RunMachine::start(agent.plan.clone(), run_id, tenant, input.into(), self.clock.now_ms());
        self.drive(agent, machine, transition, options).await
    }

    /// Takes up a run from its journal — after a crash, or to act on a
    /// suspended run — and drives it on to its end or its next suspension.
    /// `agent` must be the version the run started with (the caller looks
    /// it up by the name and version of the run's `run_started`).
    ///
    /// Completed model and tool calls are replayed from the journal, not
    /// repeated; see [`RunMachine::resume`] for what happens to calls that
    /// were in flight.
    pub async fn resume(
        &self,
        agent: &Agent,
        run_id: RunId,
        action: ResumeAction,
        options: RunOptions,
    ) -> Result<RunOutcome, RuntimeError> {
        let events = self.journal.events(run_id).await?;
        let (machine, transition) =
            RunMachine::resume(agent.plan.clone(), run_id, &events, &self.identity, action, self.clock.now_ms())
                .map_err(|error| RuntimeError::Resume { run: run_id, error })?;
        self.drive(agent, machine, transition, options).await
    }

    async fn drive(
        &self,
        agent: &Agent,
        mut machine: RunMachine,
        mut transition: Transition,
        options: RunOptions,
    ) -> Result<RunOutcome, RuntimeError> {
        let run_id = machine.run_id();
        let signals = Signals { cancel: options.cancel.unwrap_or_default(), stop: options.stop.unwrap_or_default() };
        let Signals { cancel, stop } = &signals;
        let mut log = RunLog::new(self.journal.as_ref(), self.durability);
        // Set after a state-changing tool ran, so its result is committed
        // before the model sees it.
        let mut after_side_effect = false;
        loop {
            let Transition { events, effect } = transition;
            // The kill switch acts at step boundaries: before a model call,
            // before tools start, before waiting for people.
            if let Some(reason) = stop.reason()
                && !matches!(effect, Effect::Finish(_))
            {
                self.notify(&machine, agent, &events);
                log.record(events, false).await?;
                transition = machine.on_cancel(&reason, self.clock.now_ms());
                continue;
            }
            // A person's decision and a resumption (which takes the run
            // over from another process) are committed before anything
            // else happens.
            let decided = events.iter().any(|e| {
                matches!(
                    e.kind,
                    EventKind::ApprovalDecided { .. } | EventKind::CallReconciled { .. } | EventKind::RunResumed { .. }
                )
            });
            let force = decided
                || match &effect {
                    Effect::Finish(_) | Effect::Suspend(_) | Effect::RequestApprovals(_) => true,
                    Effect::ExecuteTools(calls) => {
                        let changes =
                            calls.iter().any(|c| agent.plan.catalog.spec(c.tool_index).risk != RiskTier::Read);
                        std::mem::replace(&mut after_side_effect, changes) || changes
                    }
                    Effect::CallModel => std::mem::take(&mut after_side_effect),
                };
            if let Effect::CallModel = effect {
                transition = self.call_model(agent, &mut machine, &mut log, events, force, &signals).await?;
                continue;
            }
            self.notify(&machine, agent, &events);
            log.record(events, force).await?;
            transition = match effect {
                Effect::Finish(outcome) | Effect::Suspend(outcome) => return Ok(*outcome),
                Effect::CallModel => unreachable!("handled above"),
                Effect::ExecuteTools(calls) => self.call_tools(agent, &mut machine, &mut log, calls, cancel).await?,
                Effect::RequestApprovals(requests) => {
                    // Time waiting for people does not count against the
                    // run's clock; the requests' expiry bounds the wait.
                    let now = self.clock.now_ms();
                    let expiry = requests.iter().map(|r| r.expires_at_ms).min().unwrap_or(now);
                    let time_left = Duration::from_millis(expiry.saturating_sub(now));
                    let decisions = tokio::select! {
                        biased;
                        _ = cancel.cancelled() => Err(Some("cancelled while waiting for approval".to_owned())),
                        _ = stop.stopped() => Err(Some(stop.reason().unwrap_or_default())),
                        decisions = self.approver.decide(run_id, &requests) => Ok(decisions),
                        _ = tokio::time::sleep(time_left) => Err(None),
                    };
                    let now = self.clock.now_ms();
                    match decisions {
                        Ok(decisions) => machine.on_approvals(decisions, now),
                        Err(Some(reason)) => machine.on_cancel(&reason, now),
                        // The requests lapsed: they count as rejected.
                        Err(None) => machine.on_approvals(Vec::new(), now),
                    }
                }
            };
        }
    }

    /// Tells the hooks about events as they are recorded, in order.
    fn notify(&self, machine: &RunMachine, agent: &Agent, events: &[rein_types::Event]) {
        if !self.hooks.is_empty() {
            let info = RunInfo { run_id: machine.run_id(), agent: agent.name(), step: machine.step() };
            for event in events {
                for hook in self.hooks.iter() {
                    hook.on_event(info, event);
                }
            }
        }
    }

    fn time_left(&self, machine: &RunMachine) -> Duration {
        Duration::from_millis(machine.deadline_ms().saturating_sub(self.clock.now_ms()))
    }

    /// Sends the model request, then commits the transition's events while
    /// the request is in flight, and acts on the answer only once they are
    /// durable. A model call changes nothing in the world, so overlapping its
    /// round trip with the commit loses no guarantee: a crash before the
    /// commit leaves no trace of the call, and a resumed run makes it again.
    async fn call_model(
        &self,
        agent: &Agent,
        machine: &mut RunMachine,
        log: &mut RunLog<'_>,
        events: Vec<rein_types::Event>,
        force: bool,
        Signals { cancel, stop }: &Signals,
    ) -> Result<Transition, RuntimeError> {
        enum Ended {
            Answered(Result<rein_types::ModelResponse, rein_types::ModelError>),
            Deadline,
            Cancelled(String),
        }
        let info = RunInfo { run_id: machine.run_id(), agent: agent.name(), step: machine.step() };
        let started = Instant::now();
        let ended = {
            let request = machine.model_request();
            for hook in self.hooks.iter() {
                hook.before_model_call(info, &request);
            }
            let hooks = &self.hooks;
            let on_delta = move |delta: StreamDelta| {
                for hook in hooks.iter() {
                    hook.on_model_delta(info, &delta);
                }
            };
            let model = agent.model_for(machine.phase());
            let call =
                if self.streaming { model.complete_streaming(request, &on_delta) } else { model.complete(request) };
            let mut call = std::pin::pin!(call);
            let mut early = std::task::Poll::Pending;
            if force {
                // One poll hands the request to the HTTP client; yielding
                // once lets its connection task write it to the socket before
                // this task spends its time committing.
                early = futures::poll!(call.as_mut());
                if early.is_pending() {
                    tokio::task::yield_now().await;
                    early = futures::poll!(call.as_mut());
                }
            }
            self.notify(machine, agent, &events);
            log.record(events, force).await?;
            match early {
                std::task::Poll::Ready(result) => Ended::Answered(result),
                std::task::Poll::Pending => {
                    let time_left = self.time_left(machine);
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => Ended::Cancelled("cancelled during a model call".to_owned()),
                        // A model call changes nothing: the kill switch need
                        // not wait for it.
                        _ = stop.stopped() => Ended::Cancelled(stop.reason().unwrap_or_default()),
                        result = call => Ended::Answered(result),
                        _ = tokio::time::sleep(time_left) => Ended::Deadline,
                    }
                }
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let now = self.clock.now_ms();
        Ok(match ended {
            Ended::Answered(result) => {
                for hook in self.hooks.iter() {
                    hook.after_model_call(info, result.as_ref(), latency_ms);
                }
                match result {
                    Ok(response) => machine.on_model_response(response, latency_ms, now),
                    Err(error) => machine.on_model_error(&error, latency_ms, now),
                }
            }
            Ended::Deadline => machine.on_deadline(now),
            Ended::Cancelled(reason) => machine.on_cancel(&reason, now),
        })
    }

    /// Runs the calls of one turn concurrently, journaling what they report
    /// while they run (progress, log messages) as it arrives. Should the
    /// deadline pass or the run be cancelled first, the calls that finished
    /// keep their outcomes and the others are reported as interrupted with
    /// an unknown effect, so the journal resolves every call.
    async fn call_tools(
        &self,
        agent: &Agent,
        machine: &mut RunMachine,
        log: &mut RunLog<'_>,
        calls: Vec<ToolInvocation>,
        cancel: &CancellationToken,
    ) -> Result<Transition, RuntimeError> {
        let info = RunInfo { run_id: machine.run_id(), agent: agent.name(), step: machine.step() };
        let run_id = machine.run_id();
        let time_left = self.time_left(machine);
        // Reports are best-effort: a tool that outpaces the journal loses
        // some rather than stall (core caps what a call may journal anyway).
        let (report_tx, mut reports) = tokio::sync::mpsc::channel::<(usize, ToolReport)>(REPORT_BUFFER);
        let mut running: FuturesUnordered<_> = calls
            .iter()
            .enumerate()
            .map(|(index, call)| {
                let sender = report_tx.clone();
                let reporter = ToolReporter::new(move |report| {
                    let _ = sender.try_send((index, report));
                });
                self.call_tool(agent, run_id, info, call, index, reporter)
            })
            .collect();
        drop(report_tx);
        let mut finished: Vec<Option<ToolResult>> = vec![None; calls.len()];
        let deadline = tokio::time::sleep(time_left);
        tokio::pin!(deadline);
        let interrupted = loop {
            tokio::select! {
                biased;
                _ = cancel.cancelled() => break Some(Some("cancelled during tool calls")),
                Some((index, report)) = reports.recv() => {
                    self.journal_report(agent, machine, log, &calls[index], report).await?;
                }
                next = running.next() => match next {
                    Some((index, result)) => finished[index] = Some(result),
                    None => break None,
                },
                _ = &mut deadline => break Some(None),
            }
        };
        drop(running);
        // What the calls reported before they ended comes before their
        // results in the journal.
        while let Ok((index, report)) = reports.try_recv() {
            self.journal_report(agent, machine, log, &calls[index], report).await?;
        }
        let results: Vec<ToolResult> = finished
            .into_iter()
            .zip(&calls)
            .map(|(result, call)| result.unwrap_or_else(|| interrupted_result(agent, call)))
            .collect();
        let now = self.clock.now_ms();
        Ok(match interrupted {
            None => machine.on_tool_results(results, now),
            Some(cancelled) => machine.on_tools_interrupted(results, cancelled, now),
        })
    }

    /// Journals a report of a running call, committed at once so that
    /// followers of the run see it while the call runs.
    async fn journal_report(
        &self,
        agent: &Agent,
        machine: &mut RunMachine,
        log: &mut RunLog<'_>,
        call: &ToolInvocation,
        report: ToolReport,
    ) -> Result<(), RuntimeError> {
        if let Some(event) = machine.on_tool_report(&call.call_id, report, self.clock.now_ms()) {
            let events = vec![event];
            self.notify(machine, agent, &events);
            log.record(events, true).await?;
        }
        Ok(())
    }

    async fn call_tool(
        &self,
        agent: &Agent,
        run_id: RunId,
        info: RunInfo<'_>,
        call: &ToolInvocation,
        index: usize,
        reporter: ToolReporter,
    ) -> (usize, ToolResult) {
        for hook in self.hooks.iter() {
            hook.before_tool_call(info, call);
        }
        let started = Instant::now();
        let outcome = match agent.tools.get(call.tool_index).and_then(Option::as_ref) {
            Some(tool) => {
                let context = ToolContext::new(run_id, call.step, call.call_id.clone(), call.idempotency_key.clone())
                    .with_reporter(reporter);
                let future = AssertUnwindSafe(tool.call(call.arguments.clone(), &context)).catch_unwind();
                match tokio::time::timeout(Duration::from_millis(call.timeout_ms), future).await {
                    Ok(Ok(outcome)) => outcome,
                    Ok(Err(panic)) => {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "unknown panic".into());
                        tracing::error!(tool = %call.tool, %message, "tool panicked");
                        ToolOutcome::error_with_hint(
                            format!("The tool `{}` crashed while handling this call.", call.tool),
                            "This is a fault in the tool, not in your arguments; try another approach or hand off to a human.",
                        )
                    }
                    Err(_) => timed_out(agent, call, format!("did not finish within {} ms", call.timeout_ms)),
                }
            }
            None => ToolOutcome::error(format!("The tool `{}` has no implementation in this runtime.", call.tool)),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        for hook in self.hooks.iter() {
            hook.after_tool_call(info, call, &outcome, latency_ms);
        }
        (index, ToolResult { call_id: call.call_id.clone(), outcome, latency_ms })
    }
}

/// The outcome of a call that was stopped before it answered. A call that can
/// change state may have done so: the model must not be told it is safe to
/// repeat.
fn timed_out(agent: &Agent, call: &ToolInvocation, what: String) -> ToolOutcome {
    let spec = agent.plan.catalog.spec(call.tool_index);
    if spec.idempotent || spec.risk == RiskTier::Read {
        ToolOutcome::Error {
            message: format!("The tool `{}` {what}.", call.tool),
            hint: Some("The service may be slow or down; try again later or hand off to a human.".into()),
            retryable: true,
        }
    } else {
        ToolOutcome::Error {
            message: format!("The tool `{}` {what}; it may or may not have taken effect.", call.tool),
            hint: Some(
                "Do not repeat the call blindly: check whether it took effect first, or hand off to a human.".into(),
            ),
            retryable: false,
        }
    }
}

fn interrupted_result(agent: &Agent, call: &ToolInvocation) -> ToolResult {
    ToolResult {
        call_id: call.call_id.clone(),
        outcome: timed_out(agent, call, "was interrupted because the run stopped".into()),
        latency_ms: 0,
    }
}
