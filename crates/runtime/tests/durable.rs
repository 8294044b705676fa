//! Durable runs: resuming from any point of the journal, calls in flight at
//! a crash, approvals decided from another process, expiry, the kill switch.
//! Every "process" here is a fresh `Runtime` over the events the previous
//! one managed to journal.

use async_trait::async_trait;
use rein_runtime::{
    Agent, ApprovalDecision, Durability, ResumeAction, ResumeError, RunOptions, Runtime, RuntimeError, StopSignal,
};
use rein_testkit::clock::FakeClock;
use rein_testkit::journal::MemoryJournal;
use rein_testkit::scripted::{self, FnModel};
use rein_types::{
    Event, EventKind, Journal, JournalError, Limits, Message, PendingKind, Reconciliation, RejectReason, RiskTier,
    RunFilter, RunId, RunStatus, RunSummary, Tool, ToolContext, ToolName, ToolOutcome, ToolSpec,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Records each append as one batch, so tests can cut the journal where a
/// crash could: between two commits.
#[derive(Default)]
struct BatchJournal {
    inner: MemoryJournal,
    batches: Mutex<Vec<Vec<Event>>>,
}

#[async_trait]
impl Journal for BatchJournal {
    async fn append(&self, events: &[Event]) -> Result<(), JournalError> {
        self.inner.append(events).await?;
        self.batches.lock().unwrap().push(events.to_vec());
        Ok(())
    }
    async fn events(&self, run: RunId) -> Result<Vec<Event>, JournalError> {
        self.inner.events(run).await
    }
    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, JournalError> {
        self.inner.runs(filter).await
    }
    async fn resolve(&self, id: &str) -> Result<RunId, JournalError> {
        self.inner.resolve(id).await
    }
}

/// Executions per idempotency key, shared by every "process".
type Ledger = Arc<Mutex<HashMap<String, u32>>>;

struct LedgerTool {
    spec: ToolSpec,
    ledger: Ledger,
}

impl LedgerTool {
    fn new(name: &str, risk: RiskTier, idempotent: bool, ledger: &Ledger) -> Self {
        let mut spec = ToolSpec::new(
            ToolName::new(name).unwrap(),
            format!("{name}: acts on one key."),
            json!({"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"], "additionalProperties": false}),
            risk,
        );
        spec.idempotent = idempotent;
        Self { spec, ledger: ledger.clone() }
    }
}

#[async_trait]
impl Tool for LedgerTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }
    async fn call(&self, arguments: Value, context: &ToolContext) -> ToolOutcome {
        *self.ledger.lock().unwrap().entry(context.idempotency_key.0.clone()).or_default() += 1;
        ToolOutcome::ok(json!({ "tool": self.spec.name.as_str(), "key": arguments["key"] }))
    }
}

fn tool_results(messages: &[Message]) -> usize {
    messages.iter().filter(|m| matches!(m, Message::Tool { .. })).count()
}

/// A model whose answer depends only on the conversation, as a resumed run
/// needs: the same history gets the same answer in any process.
fn planner() -> FnModel {
    FnModel::new(|messages| {
        Ok(match tool_results(messages) {
            0 => scripted::calls(&[("lookup", json!({"key": "a"})), ("record", json!({"key": "a"}))]),
            2 => scripted::call("record", json!({"key": "b"})),
            3 => scripted::call("lookup", json!({"key": "c"})),
            _ => scripted::text("recorded a and b"),
        })
    })
}

fn agent(ledger: &Ledger, record_idempotent: bool) -> Agent {
    Agent::builder("recorder")
        .model(planner())
        .tool(LedgerTool::new("lookup", RiskTier::Read, false, ledger))
        .tool(LedgerTool::new("record", RiskTier::Write, record_idempotent, ledger))
        .build()
        .unwrap()
}

async fn journal_with(events: &[Event]) -> Arc<BatchJournal> {
    let journal = Arc::new(BatchJournal::default());
    if !events.is_empty() {
        journal.inner.append(events).await.unwrap();
    }
    journal
}

#[tokio::test]
async fn a_run_cut_at_any_commit_resumes_to_the_same_end_without_repeating_journaled_calls() {
    let ledger = Ledger::default();
    let journal = Arc::new(BatchJournal::default());
    let runtime = Runtime::new(journal.clone()).with_durability(Durability::EveryStep);
    let whole = runtime.run(&agent(&ledger, true), "record a and b").await.unwrap();
    assert_eq!(whole.status, RunStatus::Succeeded);
    let batches = journal.batches.lock().unwrap().clone();
    assert!(batches.len() >= 6, "{} batches", batches.len());

    for cut in 1..batches.len() {
        let prefix: Vec<Event> = batches[..cut].iter().flatten().cloned().collect();
        let executed_before: Vec<String> = prefix
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::ToolCallRequested { idempotency_key, call_id, .. }
                    if prefix
                        .iter()
                        .any(|x| matches!(&x.kind, EventKind::ToolCallExecuted { call_id: c, .. } if c == call_id)) =>
                {
                    Some(idempotency_key.clone())
                }
                _ => None,
            })
            .collect();
        let ledger = Ledger::default();
        let journal = journal_with(&prefix).await;
        let runtime = Runtime::new(journal.clone()).with_identity("second-process");
        let resumed = runtime
            .resume(&agent(&ledger, true), whole.run_id, ResumeAction::Continue, RunOptions::default())
            .await
            .unwrap();
        assert_eq!(resumed.status, whole.status, "cut after batch {cut}");
        assert_eq!(resumed.output, whole.output, "cut after batch {cut}");
        assert_eq!(resumed.partial_results, whole.partial_results, "cut after batch {cut}");
        let ledger = ledger.lock().unwrap().clone();
        for key in &executed_before {
            assert!(!ledger.contains_key(key), "cut {cut}: journaled call {key} ran again");
        }
        // Every call of the run ran exactly once across the two processes,
        // with the keys the uninterrupted run used.
        let all_keys: Vec<String> = whole_keys(&batches);
        for key in &all_keys {
            let runs = ledger.get(key).copied().unwrap_or(0) + u32::from(executed_before.contains(key));
            assert_eq!(runs, 1, "cut {cut}: {key} ran {runs} times");
        }
        let events = journal.events(whole.run_id).await.unwrap();
        assert!(events.iter().any(|e| matches!(&e.kind, EventKind::RunResumed { by, .. } if by == "second-process")));
        assert!(events.windows(2).all(|w| w[1].seq == w[0].seq + 1), "cut {cut}: seqs stay contiguous");
    }
}

fn whole_keys(batches: &[Vec<Event>]) -> Vec<String> {
    batches
        .iter()
        .flatten()
        .filter_map(|e| match &e.kind {
            EventKind::ToolCallRequested { idempotency_key, .. } => Some(idempotency_key.clone()),
            _ => None,
        })
        .collect()
}

/// The journal up to the first commit of a `record` call that has not run.
fn cut_with_record_in_flight(batches: &[Vec<Event>]) -> Vec<Event> {
    let at = batches
        .iter()
        .position(|b| {
            b.iter().any(|e| matches!(&e.kind, EventKind::ToolCallRequested { tool, .. } if tool == "record"))
        })
        .unwrap();
    batches[..=at].iter().flatten().cloned().collect()
}

async fn interrupted_non_idempotent_run() -> (Vec<Event>, RunId) {
    let ledger = Ledger::default();
    let journal = Arc::new(BatchJournal::default());
    let runtime = Runtime::new(journal.clone()).with_durability(Durability::EveryStep);
    let whole = runtime.run(&agent(&ledger, false), "record a and b").await.unwrap();
    let batches = journal.batches.lock().unwrap().clone();
    (cut_with_record_in_flight(&batches), whole.run_id)
}

#[tokio::test]
async fn a_non_idempotent_write_in_flight_at_a_crash_waits_for_reconciliation() {
    let (prefix, run) = interrupted_non_idempotent_run().await;
    let ledger = Ledger::default();
    let journal = journal_with(&prefix).await;
    let runtime = Runtime::new(journal.clone());
    let outcome =
        runtime.resume(&agent(&ledger, false), run, ResumeAction::Continue, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::NeedsReconciliation);
    assert!(ledger.lock().unwrap().is_empty(), "nothing ran: the read waits with the write");
    let [pending] = outcome.pending.as_slice() else { panic!("{:?}", outcome.pending) };
    assert_eq!((pending.kind, pending.tool.as_str()), (PendingKind::Reconciliation, "record"));
    assert!(outcome.explanation.contains("rein runs reconcile"), "{}", outcome.explanation);
    let summary = journal.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(summary[0].status, RunStatus::NeedsReconciliation);

    // A person says it took effect: its result goes to the model, it does
    // not run again, and the run goes on to the end.
    let done = Reconciliation::Done { result: json!({"tool": "record", "key": "a", "checked": true}) };
    let action = ResumeAction::Reconcile { call_id: pending.call_id.clone(), resolution: done, by: "ops".into() };
    let outcome = runtime.resume(&agent(&ledger, false), run, action, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let ledger = ledger.lock().unwrap();
    assert!(!ledger.contains_key(&pending.id), "a call reconciled as done is not run again");
    assert_eq!(ledger.len(), 3, "the read of that turn and the later calls ran once each: {ledger:?}");
}

#[tokio::test]
async fn reconciling_with_retry_runs_the_call_again_with_the_same_key_and_fail_ends_the_run() {
    let (prefix, run) = interrupted_non_idempotent_run().await;
    let ledger = Ledger::default();
    let journal = journal_with(&prefix).await;
    let runtime = Runtime::new(journal.clone());
    let outcome =
        runtime.resume(&agent(&ledger, false), run, ResumeAction::Continue, RunOptions::default()).await.unwrap();
    let pending = outcome.pending[0].clone();
    let wrong = ResumeAction::Reconcile { call_id: "nope".into(), resolution: Reconciliation::Retry, by: "ops".into() };
    let error = runtime.resume(&agent(&ledger, false), run, wrong, RunOptions::default()).await.unwrap_err();
    assert!(matches!(error, RuntimeError::Resume { error: ResumeError::NotReconcilable(_), .. }), "{error}");
    let retry = ResumeAction::Reconcile {
        call_id: pending.call_id.clone(),
        resolution: Reconciliation::Retry,
        by: "ops".into(),
    };
    let outcome = runtime.resume(&agent(&ledger, false), run, retry, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(ledger.lock().unwrap().get(&pending.id), Some(&1), "retried once, with the journaled key");

    let (prefix, run) = interrupted_non_idempotent_run().await;
    let journal = journal_with(&prefix).await;
    let runtime = Runtime::new(journal.clone());
    let ledger = Ledger::default();
    let outcome =
        runtime.resume(&agent(&ledger, false), run, ResumeAction::Continue, RunOptions::default()).await.unwrap();
    let fail = Reconciliation::Fail { reason: "the CRM shows a half-written record".into() };
    let action =
        ResumeAction::Reconcile { call_id: outcome.pending[0].call_id.clone(), resolution: fail, by: "ops".into() };
    let outcome = runtime.resume(&agent(&ledger, false), run, action, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.reason, "reconciled_failed");
    assert!(outcome.explanation.contains("half-written"), "{}", outcome.explanation);
}

#[tokio::test]
async fn an_idempotent_write_in_flight_is_retried_with_the_same_key() {
    let ledger = Ledger::default();
    let journal = Arc::new(BatchJournal::default());
    let runtime = Runtime::new(journal.clone()).with_durability(Durability::EveryStep);
    let whole = runtime.run(&agent(&ledger, true), "record a and b").await.unwrap();
    let prefix = cut_with_record_in_flight(&journal.batches.lock().unwrap());
    let key = prefix
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::ToolCallRequested { tool, idempotency_key, .. } if tool == "record" => {
                Some(idempotency_key.clone())
            }
            _ => None,
        })
        .unwrap();
    let ledger = Ledger::default();
    let runtime = Runtime::new(journal_with(&prefix).await);
    let outcome = runtime
        .resume(&agent(&ledger, true), whole.run_id, ResumeAction::Continue, RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(ledger.lock().unwrap().get(&key), Some(&1));
}

fn mailer(ledger: &Ledger) -> Agent {
    let model = FnModel::new(|messages| {
        let last_tool = messages.iter().rev().find_map(|m| match m {
            Message::Tool { content, .. } => Some(content.clone()),
            _ => None,
        });
        Ok(match last_tool {
            None => {
                let mut response = scripted::call("send_email", json!({"key": "all-customers"}));
                response.text = Some("The customers asked for the outage notice.".into());
                response
            }
            Some(content) if content.contains("rejected") => scripted::text("Not sent: a reviewer refused."),
            Some(_) => scripted::text("Sent."),
        })
    });
    let mut limits = Limits { timeout_ms: 1_000, approval_timeout_ms: 3_600_000, ..Limits::default() };
    limits.max_steps = 5;
    Agent::builder("mailer")
        .model(model)
        .tool(LedgerTool::new("send_email", RiskTier::Dangerous, false, ledger))
        .limits(limits)
        .build()
        .unwrap()
}

async fn waiting_run(clock: &Arc<FakeClock>, journal: &Arc<BatchJournal>, ledger: &Ledger) -> rein_types::RunOutcome {
    let runtime = Runtime::new(journal.clone()).with_clock(clock.clone());
    runtime.run(&mailer(ledger), "tell everyone about the outage").await.unwrap()
}

#[tokio::test]
async fn a_call_needing_approval_suspends_the_run_durably_with_a_preview() {
    let clock = Arc::new(FakeClock::new(1_700_000_000_000));
    let journal = Arc::new(BatchJournal::default());
    let ledger = Ledger::default();
    let outcome = waiting_run(&clock, &journal, &ledger).await;
    assert_eq!(outcome.status, RunStatus::WaitingApproval);
    assert!(ledger.lock().unwrap().is_empty());
    let [pending] = outcome.pending.as_slice() else { panic!() };
    assert_eq!(pending.kind, PendingKind::Approval);
    assert_eq!(pending.tool, "send_email");
    assert_eq!(pending.risk, RiskTier::Dangerous);
    assert_eq!(pending.arguments, json!({"key": "all-customers"}));
    assert_eq!(pending.rationale.as_deref(), Some("The customers asked for the outage notice."));
    assert_eq!(pending.expires_at_ms, Some(1_700_000_000_000 + 3_600_000));
    assert_eq!(pending.id, format!("{}:1:0", outcome.run_id));
    let events = journal.events(outcome.run_id).await.unwrap();
    assert!(matches!(events.last().unwrap().kind, EventKind::RunSuspended { status: RunStatus::WaitingApproval, .. }));
    assert_eq!(rein_core::pending_actions(&events), outcome.pending, "the journal alone says what waits");

    // Half an hour later, another process approves; waiting did not use up
    // the run's one-second clock.
    clock.advance(1_800_000);
    let other = Runtime::new(journal.clone()).with_clock(clock.clone()).with_identity("approver-process");
    let approve = ApprovalDecision::Approve { call_id: pending.call_id.clone(), by: "ana".into() };
    let outcome = other
        .resume(&mailer(&ledger), outcome.run_id, ResumeAction::Decide(vec![approve]), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded, "{}", outcome.explanation);
    assert_eq!(outcome.output.as_deref(), Some("Sent."));
    assert_eq!(ledger.lock().unwrap().get(&pending.id), Some(&1));
    let events = journal.events(outcome.run_id).await.unwrap();
    let decided = events.iter().find_map(|e| match &e.kind {
        EventKind::ApprovalDecided { by, approved: true, .. } => Some((by.clone(), e.at_ms)),
        _ => None,
    });
    assert_eq!(decided, Some(("ana".to_owned(), 1_700_000_000_000 + 1_800_000)));
}

#[tokio::test]
async fn a_rejection_is_told_to_the_model_and_an_invalid_edit_is_refused_without_a_trace() {
    let clock = Arc::new(FakeClock::new(1_700_000_000_000));
    let journal = Arc::new(BatchJournal::default());
    let ledger = Ledger::default();
    let outcome = waiting_run(&clock, &journal, &ledger).await;
    let call_id = outcome.pending[0].call_id.clone();
    let runtime = Runtime::new(journal.clone()).with_clock(clock.clone());
    let before = journal.events(outcome.run_id).await.unwrap().len();

    let edit = ApprovalDecision::Edit { call_id: call_id.clone(), by: "ana".into(), arguments: json!({"key": 7}) };
    let error = runtime
        .resume(&mailer(&ledger), outcome.run_id, ResumeAction::Decide(vec![edit]), RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, RuntimeError::Resume { error: ResumeError::InvalidEdit(_), .. }), "{error}");
    assert_eq!(journal.events(outcome.run_id).await.unwrap().len(), before, "a refused decision journals nothing");

    let reject = ApprovalDecision::Reject { call_id, by: "ana".into(), reason: Some("not during the freeze".into()) };
    let outcome = runtime
        .resume(&mailer(&ledger), outcome.run_id, ResumeAction::Decide(vec![reject]), RunOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.output.as_deref(), Some("Not sent: a reviewer refused."));
    assert!(ledger.lock().unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_request_counts_as_rejected() {
    let clock = Arc::new(FakeClock::new(1_700_000_000_000));
    let journal = Arc::new(BatchJournal::default());
    let ledger = Ledger::default();
    let outcome = waiting_run(&clock, &journal, &ledger).await;
    clock.advance(3_600_001);
    let runtime = Runtime::new(journal.clone()).with_clock(clock.clone());
    let approve = ApprovalDecision::Approve { call_id: outcome.pending[0].call_id.clone(), by: "late".into() };
    let error = runtime
        .resume(&mailer(&ledger), outcome.run_id, ResumeAction::Decide(vec![approve]), RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, RuntimeError::Resume { error: ResumeError::Expired(_), .. }), "{error}");
    let outcome =
        runtime.resume(&mailer(&ledger), outcome.run_id, ResumeAction::Continue, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.output.as_deref(), Some("Not sent: a reviewer refused."));
    let events = journal.events(outcome.run_id).await.unwrap();
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ApprovalDecided { by, approved: false, .. } if by == "expiry"))
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(&e.kind, EventKind::ToolCallRejected { reason: RejectReason::ApprovalRejected, .. }))
    );
    assert!(ledger.lock().unwrap().is_empty());
}

#[tokio::test]
async fn cancelling_a_suspended_run_resolves_its_waiting_call() {
    let clock = Arc::new(FakeClock::new(1_700_000_000_000));
    let journal = Arc::new(BatchJournal::default());
    let ledger = Ledger::default();
    let outcome = waiting_run(&clock, &journal, &ledger).await;
    let runtime = Runtime::new(journal.clone()).with_clock(clock.clone());
    let cancel = ResumeAction::Cancel { reason: "agent mailer was disabled by ops".into() };
    let outcome = runtime.resume(&mailer(&ledger), outcome.run_id, cancel, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Cancelled);
    assert!(outcome.explanation.contains("disabled by ops"));
    let events = journal.events(outcome.run_id).await.unwrap();
    assert!(
        events.iter().any(|e| matches!(&e.kind, EventKind::ToolCallRejected { reason: RejectReason::RunEnded, .. }))
    );
    assert!(rein_core::pending_actions(&events).is_empty());
    let again = runtime
        .resume(&mailer(&ledger), outcome.run_id, ResumeAction::Continue, RunOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(again, RuntimeError::Resume { error: ResumeError::Finished(RunStatus::Cancelled), .. }));
}

/// A write that takes a while, during which the kill switch is thrown.
struct SlowWrite(ToolSpec, StopSignal, Ledger);

#[async_trait]
impl Tool for SlowWrite {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }
    async fn call(&self, _arguments: Value, context: &ToolContext) -> ToolOutcome {
        self.1.stop("agent recorder was disabled by ops");
        tokio::time::sleep(Duration::from_millis(50)).await;
        *self.2.lock().unwrap().entry(context.idempotency_key.0.clone()).or_default() += 1;
        ToolOutcome::ok(json!({"written": true}))
    }
}

#[tokio::test]
async fn the_kill_switch_lets_a_tool_call_in_flight_finish_then_stops_at_the_step_boundary() {
    let ledger = Ledger::default();
    let stop = StopSignal::new();
    let spec = ToolSpec::new(
        ToolName::new("record").unwrap(),
        "record: writes one key.",
        json!({"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}),
        RiskTier::Write,
    );
    let model = FnModel::new(|messages| {
        Ok(if tool_results(messages) == 0 {
            scripted::call("record", json!({"key": "a"}))
        } else {
            scripted::text("done")
        })
    });
    let agent =
        Agent::builder("recorder").model(model).tool(SlowWrite(spec, stop.clone(), ledger.clone())).build().unwrap();
    let journal = Arc::new(MemoryJournal::new());
    let runtime = Runtime::new(journal.clone());
    let options = RunOptions { stop: Some(stop), ..RunOptions::default() };
    let outcome = runtime.run_with(&agent, "record a", options).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Cancelled);
    assert!(outcome.explanation.contains("disabled by ops"), "{}", outcome.explanation);
    assert_eq!(outcome.partial_results.len(), 1, "the finished write is kept as a partial result");
    assert_eq!(ledger.lock().unwrap().len(), 1);
    let events = journal.events(outcome.run_id).await.unwrap();
    let models = events.iter().filter(|e| matches!(e.kind, EventKind::ModelRequested { .. })).count();
    let executed =
        events.iter().any(|e| matches!(&e.kind, EventKind::ToolCallExecuted { outcome: ToolOutcome::Ok { .. }, .. }));
    assert!(executed, "the call in flight finished and was journaled");
    assert!(models <= 2, "no model call was answered after the stop");
}

/// A turn with two writes that are not idempotent, cut off after its calls
/// were committed: both are in doubt.
async fn two_writes_in_doubt(ledger: &Ledger) -> (Arc<BatchJournal>, RunId, Agent) {
    let build = |ledger: &Ledger| {
        let model = FnModel::new(|messages| {
            Ok(if tool_results(messages) == 0 {
                scripted::calls(&[("record", json!({"key": "x"})), ("record", json!({"key": "y"}))])
            } else {
                scripted::text("both recorded")
            })
        });
        Agent::builder("recorder")
            .model(model)
            .tool(LedgerTool::new("record", RiskTier::Write, false, ledger))
            .build()
            .unwrap()
    };
    let journal = Arc::new(BatchJournal::default());
    let runtime = Runtime::new(journal.clone()).with_durability(Durability::EveryStep);
    let whole = runtime.run(&build(&Ledger::default()), "record x and y").await.unwrap();
    let prefix = cut_with_record_in_flight(&journal.batches.lock().unwrap());
    (journal_with(&prefix).await, whole.run_id, build(ledger))
}

#[tokio::test]
async fn a_retry_answer_holds_while_another_call_still_waits_for_its_answer() {
    let ledger = Ledger::default();
    let (journal, run, agent) = two_writes_in_doubt(&ledger).await;
    let runtime = Runtime::new(journal.clone());
    let outcome = runtime.resume(&agent, run, ResumeAction::Continue, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.pending.len(), 2);
    let (first, second) = (outcome.pending[0].clone(), outcome.pending[1].clone());
    let retry =
        ResumeAction::Reconcile { call_id: first.call_id.clone(), resolution: Reconciliation::Retry, by: "ops".into() };
    let outcome = runtime.resume(&agent, run, retry, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::NeedsReconciliation);
    assert_eq!(outcome.pending.len(), 1, "only the unanswered call waits: {:?}", outcome.pending);
    let done = Reconciliation::Done { result: json!({"key": "y"}) };
    let action = ResumeAction::Reconcile { call_id: second.call_id.clone(), resolution: done, by: "ops".into() };
    let outcome = runtime.resume(&agent, run, action, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded, "{}", outcome.explanation);
    let ledger = ledger.lock().unwrap().clone();
    assert_eq!(ledger.get(&first.id), Some(&1), "the call answered `retry` ran once");
    assert_eq!(ledger.get(&second.id), None, "the call answered `done` did not run again");
}

#[tokio::test]
async fn cancelling_a_run_with_calls_in_doubt_does_not_journal_them_as_not_run() {
    let ledger = Ledger::default();
    let (journal, run, agent) = two_writes_in_doubt(&ledger).await;
    let runtime = Runtime::new(journal.clone());
    let cancel = ResumeAction::Cancel { reason: "operator".into() };
    let outcome = runtime.resume(&agent, run, cancel, RunOptions::default()).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Cancelled);
    let events = journal.events(run).await.unwrap();
    let in_doubt = events
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::ToolCallExecuted { outcome: ToolOutcome::Error { message, .. }, .. } if message.contains("unknown whether")))
        .count();
    assert_eq!(in_doubt, 2, "both writes are journaled as of unknown effect");
    assert!(
        !events.iter().any(|e| matches!(&e.kind, EventKind::ToolCallRejected { reason: RejectReason::RunEnded, .. }))
    );
    assert!(ledger.lock().unwrap().is_empty());
}
