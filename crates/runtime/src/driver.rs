//! The run loop: journal, then act.
//!
//! Invariant: no effect is performed before the events that announce it are
//! committed to the journal. A journal failure stops the run with an error,
//! because acting without a record would break that guarantee.

use crate::agent::Agent;
use crate::approval::{Approver, NoApprover};
use crate::hooks::{Hooks, RunInfo};
use futures::FutureExt;
use rein_core::{Effect, RunMachine, ToolInvocation, ToolResult, Transition};
use rein_types::{Clock, Journal, JournalError, RunId, RunOutcome, SystemClock, ToolContext, ToolOutcome};
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
}

/// Per-run options.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Use this id instead of a fresh one.
    pub run_id: Option<RunId>,
    /// Cancel the run from elsewhere; it stops as `cancelled`.
    pub cancel: Option<CancellationToken>,
}

/// Runs agents, journaling every step. Cheap to clone; share one per process.
#[derive(Clone)]
pub struct Runtime {
    journal: Arc<dyn Journal>,
    clock: Arc<dyn Clock>,
    hooks: Arc<[Arc<dyn Hooks>]>,
    approver: Arc<dyn Approver>,
}

impl Runtime {
    /// A runtime journaling to `journal`, on the system clock, with no hooks
    /// and no approver.
    pub fn new(journal: Arc<dyn Journal>) -> Self {
        Self { journal, clock: Arc::new(SystemClock), hooks: Arc::from(Vec::new()), approver: Arc::new(NoApprover) }
    }

    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    pub fn with_hooks(mut self, hooks: Arc<dyn Hooks>) -> Self {
        let mut all: Vec<Arc<dyn Hooks>> = self.hooks.iter().cloned().collect();
        all.push(hooks);
        self.hooks = all.into();
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
        let cancel = options.cancel.unwrap_or_default();
        let (mut machine, mut transition) =
            RunMachine::start(agent.plan.clone(), run_id, input.into(), self.clock.now_ms());
        loop {
            self.record(&machine, agent, &transition).await?;
            transition = match transition.effect {
                Effect::Finish(outcome) => return Ok(*outcome),
                Effect::CallModel => self.call_model(agent, &mut machine, &cancel).await,
                Effect::ExecuteTools(calls) => self.call_tools(agent, &mut machine, calls, &cancel).await,
                Effect::RequestApprovals(requests) => {
                    let decisions = tokio::select! {
                        biased;
                        _ = cancel.cancelled() => {
                            let now = self.clock.now_ms();
                            transition = machine.on_cancel("cancelled while waiting for approval", now);
                            continue;
                        }
                        decisions = self.approver.decide(run_id, &requests) => decisions,
                    };
                    machine.on_approvals(decisions, self.clock.now_ms())
                }
            };
        }
    }

    async fn record(&self, machine: &RunMachine, agent: &Agent, transition: &Transition) -> Result<(), RuntimeError> {
        self.journal.append(&transition.events).await?;
        if !self.hooks.is_empty() {
            let info = RunInfo { run_id: machine.run_id(), agent: agent.name(), step: machine.step() };
            for event in &transition.events {
                for hook in self.hooks.iter() {
                    hook.on_event(info, event);
                }
            }
        }
        Ok(())
    }

    fn time_left(&self, machine: &RunMachine) -> Duration {
        Duration::from_millis(machine.deadline_ms().saturating_sub(self.clock.now_ms()))
    }

    async fn call_model(&self, agent: &Agent, machine: &mut RunMachine, cancel: &CancellationToken) -> Transition {
        enum Ended {
            Answered(Result<rein_types::ModelResponse, rein_types::ModelError>),
            Deadline,
            Cancelled,
        }
        let info = RunInfo { run_id: machine.run_id(), agent: agent.name(), step: machine.step() };
        let started = Instant::now();
        let ended = {
            let request = machine.model_request();
            for hook in self.hooks.iter() {
                hook.before_model_call(info, &request);
            }
            let time_left = self.time_left(machine);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => Ended::Cancelled,
                result = agent.model.complete(request) => Ended::Answered(result),
                _ = tokio::time::sleep(time_left) => Ended::Deadline,
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        let now = self.clock.now_ms();
        match ended {
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
            Ended::Cancelled => machine.on_cancel("cancelled during a model call", now),
        }
    }

    async fn call_tools(
        &self,
        agent: &Agent,
        machine: &mut RunMachine,
        calls: Vec<ToolInvocation>,
        cancel: &CancellationToken,
    ) -> Transition {
        let info = RunInfo { run_id: machine.run_id(), agent: agent.name(), step: machine.step() };
        let run_id = machine.run_id();
        let time_left = self.time_left(machine);
        let all = futures::future::join_all(calls.iter().map(|call| self.call_tool(agent, run_id, info, call)));
        let results = tokio::select! {
            biased;
            _ = cancel.cancelled() => None,
            results = all => Some(results),
            _ = tokio::time::sleep(time_left) => return machine.on_deadline(self.clock.now_ms()),
        };
        match results {
            Some(results) => machine.on_tool_results(results, self.clock.now_ms()),
            None => machine.on_cancel("cancelled during tool calls", self.clock.now_ms()),
        }
    }

    async fn call_tool(&self, agent: &Agent, run_id: RunId, info: RunInfo<'_>, call: &ToolInvocation) -> ToolResult {
        for hook in self.hooks.iter() {
            hook.before_tool_call(info, call);
        }
        let started = Instant::now();
        let outcome = match agent.tools.get(call.tool_index).and_then(Option::as_ref) {
            Some(tool) => {
                let context = ToolContext {
                    run_id,
                    step: call.step,
                    call_id: call.call_id.clone(),
                    idempotency_key: call.idempotency_key.clone(),
                };
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
                    Err(_) => ToolOutcome::Error {
                        message: format!("The tool `{}` did not finish within {} ms.", call.tool, call.timeout_ms),
                        hint: Some("The service may be slow or down; try again later or hand off to a human.".into()),
                        retryable: true,
                    },
                }
            }
            None => ToolOutcome::error(format!("The tool `{}` has no implementation in this runtime.", call.tool)),
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        for hook in self.hooks.iter() {
            hook.after_tool_call(info, call, &outcome, latency_ms);
        }
        ToolResult { call_id: call.call_id.clone(), outcome, latency_ms }
    }
}
