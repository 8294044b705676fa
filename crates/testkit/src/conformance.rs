//! The journal conformance suite: what every [`Journal`] implementation must
//! do, written once and run against each (the in-memory journal, the SQLite
//! store, later PostgreSQL). Each case is a public async function that takes
//! a fresh, empty journal and panics with a description of the first
//! violation; [`run_all`] runs them all. The cases spawn tokio tasks and the
//! stores may use `spawn_blocking`, so call them inside a tokio runtime
//! (`#[tokio::test(flavor = "multi_thread")]`).
//!
//! Semantics pinned here, beyond the trait's doc comments:
//! - a batch is appended whole or not at all; a `(run_id, seq)` already in
//!   the journal, or twice in one batch, fails the batch with an error and
//!   leaves the journal (events and summaries) as it was; seq continuity is
//!   the writer's business and is not checked;
//! - `events` of a run with no events is an empty list, not an error;
//! - a run appears in `runs` and `resolve` once its `RunStarted` is
//!   journaled; its summary then follows `ModelResponded` (one step each,
//!   usage and cost summed) until `RunFinished`, whose totals replace the
//!   sums; `input_preview` is the input's first line cut to 80 characters;
//! - a run's status follows its events: `RunStarted` and `RunResumed` make
//!   it `running`, `RunSuspended` gives it the status it names (not
//!   terminal: no finish time), `RunFinished` its final status; within one
//!   batch the last of them wins;
//! - `runs` lists newest first (`started_at_ms`, then run id, descending) and
//!   a `limit` of 0 lists nothing;
//! - `resolve` takes a full id (any case) or a unique prefix of the
//!   hyphenated lowercase form; no match is `NotFound`, several are
//!   `Ambiguous`; SQL wildcards in the input match nothing.

use rein_types::{
    AgentVersion, Event, EventKind, FinishReason, Journal, JournalError, LimitKind, Limits, ModelErrorKind,
    PartialResult, Reconciliation, RejectReason, RiskTier, RunFilter, RunId, RunStatus, RunSummary, TenantId, ToolCall,
    ToolCallId, ToolOutcome, Usage,
};
use serde_json::json;
use std::sync::Arc;

/// The agent version every builder here records.
pub const AGENT_VERSION: &str = "4d2f0c5e9b8a7f6e5d4c3b2a1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e";

/// Runs every case, each on a fresh journal from `make`.
pub async fn run_all<J, F>(make: F)
where
    J: Journal + 'static,
    F: Fn() -> J,
{
    append_then_read_in_order(&make()).await;
    every_event_kind_round_trips(&make()).await;
    duplicate_seq_is_rejected_atomically(&make()).await;
    summary_follows_run_started(&make()).await;
    summary_sums_model_responses(&make()).await;
    run_finished_totals_win(&make()).await;
    runs_filter_and_order(&make()).await;
    runs_belong_to_their_tenant(&make()).await;
    events_after_are_what_a_follower_has_not_seen(&make()).await;
    resolve_by_id_and_prefix(&make()).await;
    suspended_and_resumed_runs_list_their_status(&make()).await;
    concurrent_appenders(Arc::new(make())).await;
    failed_batches_do_not_fail_concurrent_ones(Arc::new(make())).await;
}

// ---------------------------------------------------------------------------
// Event builders, public so store-specific tests write the same events.
// ---------------------------------------------------------------------------

/// A `RunStarted` for `agent` with the given input.
pub fn run_started(run: RunId, seq: u64, at_ms: u64, agent: &str, input: &str) -> Event {
    Event {
        run_id: run,
        seq,
        at_ms,
        kind: EventKind::RunStarted {
            agent: agent.to_string(),
            agent_version: AgentVersion(AGENT_VERSION.to_string()),
            model: "mock:scripted".to_string(),
            input: input.to_string(),
            limits: Limits::default(),
            format: rein_types::JOURNAL_FORMAT_VERSION,
            tenant: TenantId::default(),
        },
    }
}

/// A `ModelRequested` for `step`.
pub fn model_requested(run: RunId, seq: u64, at_ms: u64, step: u32) -> Event {
    Event {
        run_id: run,
        seq,
        at_ms,
        kind: EventKind::ModelRequested {
            step,
            phase: rein_types::Phase::ToolSelection,
            model: "mock:scripted".into(),
            messages: 2 + step,
            estimated_tokens: 900,
            instruction: None,
        },
    }
}

/// A `ModelResponded` for `step` that used `usage` and cost `cost_usd`.
pub fn model_responded(run: RunId, seq: u64, at_ms: u64, step: u32, usage: Usage, cost_usd: f64) -> Event {
    Event {
        run_id: run,
        seq,
        at_ms,
        kind: EventKind::ModelResponded {
            step,
            text: Some(format!("step {step}")),
            tool_calls: vec![],
            usage,
            cost_usd,
            latency_ms: 12,
            finish_reason: FinishReason::Stop,
            served_by: "scripted-1".into(),
        },
    }
}

/// A `RunFinished` with the given status and totals.
pub fn run_finished(
    run: RunId,
    seq: u64,
    at_ms: u64,
    status: RunStatus,
    steps: u32,
    usage: Usage,
    cost_usd: f64,
) -> Event {
    Event {
        run_id: run,
        seq,
        at_ms,
        kind: EventKind::RunFinished {
            status,
            output: Some("done".into()),
            reason: "final_answer".into(),
            explanation: "The model gave a final answer.".into(),
            limit: None,
            partial_results: vec![],
            unbacked_claims: vec![],
            steps,
            usage,
            cost_usd,
            duration_ms: at_ms.saturating_sub(1),
        },
    }
}

/// A `RunSuspended` with the given (suspended) status.
pub fn run_suspended(run: RunId, seq: u64, at_ms: u64, status: RunStatus) -> Event {
    Event {
        run_id: run,
        seq,
        at_ms,
        kind: EventKind::RunSuspended {
            status,
            reason: status.as_str().into(),
            explanation: "The run waits for a person.".into(),
        },
    }
}

/// A `RunResumed` by the process `by`.
pub fn run_resumed(run: RunId, seq: u64, at_ms: u64, by: &str) -> Event {
    Event { run_id: run, seq, at_ms, kind: EventKind::RunResumed { by: by.into(), paused_ms: 1_500 } }
}

/// One event of every kind, seq 0 to 15, with awkward content (non-ASCII
/// text, quotes, newlines, nested JSON, fractional costs) so a store's
/// encoding is exercised.
pub fn every_kind(run: RunId, at_ms: u64) -> Vec<Event> {
    let usage = Usage { input_tokens: 1_234, output_tokens: 56, cached_input_tokens: 1_000 };
    let kinds = vec![
        EventKind::RunStarted {
            agent: "kitchen-sink".into(),
            agent_version: AgentVersion(AGENT_VERSION.into()),
            model: "openai:gpt-4o-mini".into(),
            input: "Résumé \"quoted\"\nsecond line\ttab".into(),
            limits: Limits { max_tokens: Some(50_000), max_cost_usd: Some(0.1), ..Limits::default() },
            format: rein_types::JOURNAL_FORMAT_VERSION,
            tenant: TenantId::parse("acme-co").expect("a valid tenant"),
        },
        EventKind::ModelRequested {
            step: 1,
            phase: rein_types::Phase::Planning,
            model: "openai:gpt-4o-mini".into(),
            messages: 2,
            estimated_tokens: 4_321,
            instruction: Some("write the answer".into()),
        },
        EventKind::ModelFailed {
            step: 1,
            kind: ModelErrorKind::RateLimited,
            message: "429 Too Many Requests".into(),
            latency_ms: 250,
        },
        EventKind::ModelResponded {
            step: 1,
            text: Some("Let me look that up — 一下.".into()),
            tool_calls: vec![ToolCall {
                id: ToolCallId("call_1".into()),
                name: "lookup".into(),
                arguments: "{\"q\": \"x\\ny\"".into(),
            }],
            usage,
            cost_usd: 0.000_123_456_789,
            latency_ms: 812,
            finish_reason: FinishReason::ToolCalls,
            served_by: "gpt-4o-mini-2024-07-18".into(),
        },
        EventKind::ToolCallRejected {
            step: 1,
            call_id: "call_0".into(),
            tool: "nope".into(),
            reason: RejectReason::UnknownTool,
            message: "There is no tool named `nope`.".into(),
        },
        EventKind::ToolCallRequested {
            step: 1,
            call_id: "call_1".into(),
            tool: "lookup".into(),
            arguments: json!({"q": "x", "n": [1, 2.5, null], "deep": {"ok": true}}),
            risk: RiskTier::Dangerous,
            idempotency_key: "run:1:0".into(),
        },
        EventKind::ApprovalRequested {
            step: 1,
            call_id: "call_1".into(),
            approval_id: "run:1:0".into(),
            tool: "lookup".into(),
            risk: RiskTier::Dangerous,
            arguments: json!({"q": "x", "n": [1, 2.5, null], "deep": {"ok": true}}),
            rationale: Some("I need the \"real\" figure —\nfirst.".into()),
            expires_at_ms: 86_400_000,
        },
        EventKind::RunSuspended {
            status: RunStatus::WaitingApproval,
            reason: "approval".into(),
            explanation: "Waiting for approval of `lookup`.".into(),
        },
        EventKind::RunResumed { by: "host.example/4242/987654".into(), paused_ms: 60_000 },
        EventKind::ApprovalDecided {
            step: 1,
            call_id: "call_1".into(),
            tool: "lookup".into(),
            approved: true,
            by: "alice@example.com".into(),
            waited_ms: 59_999,
            note: Some("fine".into()),
            edited_arguments: Some(json!({"q": "y"})),
        },
        EventKind::ToolCallExecuted {
            step: 1,
            call_id: "call_1".into(),
            tool: "lookup".into(),
            outcome: ToolOutcome::Ok { data: json!({"rows": [{"id": 1}], "emoji": "🦀"}), truncated: true },
            latency_ms: 31,
        },
        EventKind::ReconciliationRequired {
            step: 2,
            call_id: "call_2".into(),
            tool: "send".into(),
            arguments: json!({"to": "bob@example.com"}),
            idempotency_key: "run:2:0".into(),
        },
        EventKind::CallReconciled {
            step: 2,
            call_id: "call_2".into(),
            tool: "send".into(),
            resolution: Reconciliation::Done { result: json!({"sent": true}) },
            by: "bob".into(),
        },
        EventKind::ControlNotice { step: 2, message: "You already called `lookup` with these arguments.".into() },
        EventKind::LimitHit { step: 2, limit: LimitKind::CostBudget, detail: "spent $0.1000001 of $0.1".into() },
        EventKind::RunFinished {
            status: RunStatus::LimitReached,
            output: None,
            reason: "cost_budget".into(),
            explanation: "The run stopped at its cost budget.".into(),
            limit: Some(LimitKind::CostBudget),
            partial_results: vec![PartialResult { step: 1, tool: "lookup".into(), data: json!({"id": 1}) }],
            unbacked_claims: vec!["I have sent the email.".into()],
            steps: 2,
            usage,
            cost_usd: 0.100_000_1,
            duration_ms: 1_500,
        },
    ];
    kinds
        .into_iter()
        .enumerate()
        .map(|(seq, kind)| Event { run_id: run, seq: seq as u64, at_ms: at_ms + seq as u64, kind })
        .collect()
}

// ---------------------------------------------------------------------------
// Cases.
// ---------------------------------------------------------------------------

/// Batches of two interleaved runs read back per run, in seq order, equal
/// to what was written; an empty batch is accepted; an unknown run has no
/// events.
pub async fn append_then_read_in_order(journal: &dyn Journal) {
    let a = RunId::new();
    let b = RunId::new();
    let usage = Usage { input_tokens: 100, output_tokens: 20, cached_input_tokens: 0 };
    let a_events = vec![
        run_started(a, 0, 1_000, "reader", "hello"),
        model_requested(a, 1, 1_001, 1),
        model_responded(a, 2, 1_002, 1, usage, 0.5),
        model_requested(a, 3, 1_003, 2),
        model_responded(a, 4, 1_004, 2, usage, 0.5),
        run_finished(a, 5, 1_005, RunStatus::Succeeded, 2, usage, 1.0),
    ];
    let b_events = vec![
        run_started(b, 0, 2_000, "reader", "other"),
        model_requested(b, 1, 2_001, 1),
        model_requested(b, 2, 2_002, 2),
    ];

    ok(journal.append(&a_events[0..2]).await, "append a[0..2]");
    ok(journal.append(&b_events[0..1]).await, "append b[0..1]");
    ok(journal.append(&a_events[2..3]).await, "append a[2..3]");
    ok(journal.append(&[]).await, "append an empty batch");
    ok(journal.append(&b_events[1..3]).await, "append b[1..3]");
    ok(journal.append(&a_events[3..6]).await, "append a[3..6]");

    assert_eq!(ok(journal.events(a).await, "read a"), a_events, "run a reads back as written, in order");
    assert_eq!(ok(journal.events(b).await, "read b"), b_events, "run b reads back as written, in order");
    assert_eq!(ok(journal.events(RunId::new()).await, "read an unknown run"), vec![], "an unknown run has no events");
}

/// Every event kind survives the store's encoding exactly, one batch at a
/// time and as one big batch.
pub async fn every_event_kind_round_trips(journal: &dyn Journal) {
    let one_by_one = RunId::new();
    let events = every_kind(one_by_one, 10_000);
    for event in &events {
        ok(journal.append(std::slice::from_ref(event)).await, "append one event");
    }
    assert_eq!(ok(journal.events(one_by_one).await, "read back"), events, "events appended one by one");

    let at_once = RunId::new();
    let events = every_kind(at_once, 20_000);
    ok(journal.append(&events).await, "append every kind in one batch");
    assert_eq!(ok(journal.events(at_once).await, "read back"), events, "events appended as one batch");
}

/// A duplicate `(run_id, seq)` fails the batch, whether it clashes with the
/// journal or within the batch, and nothing of a failed batch lands: not its
/// other events, not its summary changes, not its other runs' events.
pub async fn duplicate_seq_is_rejected_atomically(journal: &dyn Journal) {
    let run = RunId::new();
    let other = RunId::new();
    let usage = Usage { input_tokens: 10, output_tokens: 5, cached_input_tokens: 0 };
    let original = vec![run_started(run, 0, 1_000, "dup", "input"), model_requested(run, 1, 1_001, 1)];
    ok(journal.append(&original).await, "append the first batch");
    ok(journal.append(&[run_started(other, 0, 2_000, "dup", "other")]).await, "start the other run");
    let before = summary_of(journal, run).await;
    let other_before = summary_of(journal, other).await;

    // Repeating a seq the journal has is another writer's conflict: the
    // error that tells a process it no longer drives the run.
    let clash_alone = [model_requested(run, 1, 1_100, 9)];
    match journal.append(&clash_alone).await {
        Err(JournalError::Conflict(_)) => {}
        other => panic!("a batch repeating an existing seq must fail with JournalError::Conflict, got {other:?}"),
    }

    let clash_at_end = [model_responded(run, 2, 1_101, 1, usage, 0.25), model_requested(run, 1, 1_102, 9)];
    assert_storage_error(journal.append(&clash_at_end).await, "a batch whose last event repeats a seq");

    let clash_within = [model_responded(run, 2, 1_103, 1, usage, 0.25), model_responded(run, 2, 1_104, 1, usage, 0.25)];
    assert_storage_error(journal.append(&clash_within).await, "a batch repeating a seq within itself");

    let clash_across_runs =
        [model_responded(run, 2, 1_105, 1, usage, 0.25), run_started(other, 0, 2_100, "dup", "again")];
    assert_storage_error(journal.append(&clash_across_runs).await, "a batch whose other run's event clashes");

    assert_eq!(ok(journal.events(run).await, "read run"), original, "failed batches left no events behind");
    assert_eq!(ok(journal.events(other).await, "read other").len(), 1, "failed batches left no events behind");
    assert_eq!(summary_of(journal, run).await, before, "failed batches left the summary as it was");
    assert_eq!(
        summary_of(journal, other).await,
        other_before,
        "failed batches left other runs' summaries as they were"
    );

    let rewrite_history = [model_responded(run, 0, 1_106, 1, usage, 0.25)];
    assert_storage_error(journal.append(&rewrite_history).await, "a batch below the run's last seq");

    let next = model_responded(run, 2, 1_200, 1, usage, 0.25);
    ok(journal.append(std::slice::from_ref(&next)).await, "the journal still takes a valid batch after failures");
    let mut expected = original.clone();
    expected.push(next);
    assert_eq!(ok(journal.events(run).await, "read run"), expected);
    assert_eq!(summary_of(journal, run).await.steps, 1);
}

/// `RunStarted` creates the summary: agent, version, start time, running,
/// zero totals, and the input's first line (at most 80 characters) as the
/// preview. A run without `RunFinished` (a crash mid-run) stays `running`.
pub async fn summary_follows_run_started(journal: &dyn Journal) {
    let multi_line = RunId::new();
    ok(journal.append(&[run_started(multi_line, 0, 5_000, "greeter", "Say hello\nto everyone\n")]).await, "start");
    assert_eq!(
        summary_of(journal, multi_line).await,
        RunSummary {
            run_id: multi_line,
            tenant: TenantId::default(),
            agent: "greeter".into(),
            agent_version: AGENT_VERSION.into(),
            status: RunStatus::Running,
            started_at_ms: 5_000,
            finished_at_ms: None,
            steps: 0,
            usage: Usage::default(),
            cost_usd: 0.0,
            input_preview: "Say hello".into(),
        }
    );

    let long = RunId::new();
    let line = "ü".repeat(50) + &"x".repeat(50);
    ok(journal.append(&[run_started(long, 0, 6_000, "greeter", &format!("{line}\nrest"))]).await, "start long");
    let preview = summary_of(journal, long).await.input_preview;
    assert_eq!(preview, "ü".repeat(50) + &"x".repeat(30), "the preview keeps 80 characters (not bytes)");

    let empty = RunId::new();
    ok(journal.append(&[run_started(empty, 0, 7_000, "greeter", "")]).await, "start empty");
    assert_eq!(summary_of(journal, empty).await.input_preview, "");

    let crashed = RunId::new();
    let usage = Usage { input_tokens: 7, output_tokens: 3, cached_input_tokens: 0 };
    let events = [
        run_started(crashed, 0, 8_000, "greeter", "hi"),
        model_requested(crashed, 1, 8_001, 1),
        model_responded(crashed, 2, 8_002, 1, usage, 0.125),
        model_requested(crashed, 3, 8_003, 2),
    ];
    ok(journal.append(&events).await, "a run that never finishes");
    let summary = summary_of(journal, crashed).await;
    assert_eq!((summary.status, summary.finished_at_ms, summary.steps), (RunStatus::Running, None, 1));
}

/// Each `ModelResponded` is one step; usage and cost are summed. Other
/// events (requests, failures) change nothing.
pub async fn summary_sums_model_responses(journal: &dyn Journal) {
    let run = RunId::new();
    let first = Usage { input_tokens: 1_000, output_tokens: 200, cached_input_tokens: 300 };
    let second = Usage { input_tokens: 1_500, output_tokens: 100, cached_input_tokens: 1_000 };
    ok(journal.append(&[run_started(run, 0, 1_000, "summer", "add")]).await, "start");
    ok(journal.append(&[model_requested(run, 1, 1_001, 1), model_responded(run, 2, 1_002, 1, first, 0.25)]).await, "1");
    ok(
        journal
            .append(&[Event {
                run_id: run,
                seq: 3,
                at_ms: 1_003,
                kind: EventKind::ModelFailed {
                    step: 2,
                    kind: ModelErrorKind::ServerError,
                    message: "502".into(),
                    latency_ms: 5,
                },
            }])
            .await,
        "a failed call",
    );
    ok(journal.append(&[model_responded(run, 4, 1_004, 2, second, 0.5)]).await, "2");
    ok(journal.append(&[model_responded(run, 5, 1_005, 3, second, 0.125)]).await, "3");

    let summary = summary_of(journal, run).await;
    assert_eq!(summary.steps, 3, "three ModelResponded events are three steps");
    assert_eq!(summary.usage, Usage { input_tokens: 4_000, output_tokens: 400, cached_input_tokens: 2_300 });
    assert_eq!(summary.cost_usd, 0.875);
    assert_eq!((summary.status, summary.finished_at_ms), (RunStatus::Running, None));
}

/// `RunFinished` sets the status and finish time, and its totals replace
/// the sums (the runtime's own accounting is authoritative).
pub async fn run_finished_totals_win(journal: &dyn Journal) {
    let run = RunId::new();
    let used = Usage { input_tokens: 100, output_tokens: 10, cached_input_tokens: 0 };
    let reported = Usage { input_tokens: 999, output_tokens: 99, cached_input_tokens: 9 };
    ok(
        journal
            .append(&[
                run_started(run, 0, 3_000, "finisher", "go"),
                model_responded(run, 1, 3_001, 1, used, 0.5),
                model_responded(run, 2, 3_002, 2, used, 0.5),
            ])
            .await,
        "run",
    );
    ok(journal.append(&[run_finished(run, 3, 3_500, RunStatus::Escalated, 5, reported, 2.25)]).await, "finish");
    assert_eq!(
        summary_of(journal, run).await,
        RunSummary {
            run_id: run,
            tenant: TenantId::default(),
            agent: "finisher".into(),
            agent_version: AGENT_VERSION.into(),
            status: RunStatus::Escalated,
            started_at_ms: 3_000,
            finished_at_ms: Some(3_500),
            steps: 5,
            usage: reported,
            cost_usd: 2.25,
            input_preview: "go".into(),
        }
    );
}

/// Listing is newest first and filters by agent, status and limit, alone
/// and together.
pub async fn runs_filter_and_order(journal: &dyn Journal) {
    let none = Usage::default();
    // (agent, started_at_ms, final status); written out of start order.
    let plan = [
        ("alpha", 3_000, Some(RunStatus::Failed)),
        ("alpha", 1_000, Some(RunStatus::Succeeded)),
        ("beta", 5_000, Some(RunStatus::Succeeded)),
        ("beta", 2_000, None),
        ("alpha", 4_000, None),
    ];
    let mut ids = std::collections::HashMap::new();
    for (agent, at, status) in plan {
        let run = RunId::new();
        ids.insert(at, run);
        let mut events = vec![run_started(run, 0, at, agent, "x")];
        if let Some(status) = status {
            events.push(run_finished(run, 1, at + 10, status, 0, none, 0.0));
        }
        ok(journal.append(&events).await, "append a run");
    }
    let listed = |runs: Vec<RunSummary>| runs.iter().map(|r| r.started_at_ms).collect::<Vec<_>>();
    let filter = |agent: Option<&str>, status: Option<RunStatus>, limit: Option<u32>| RunFilter {
        agent: agent.map(str::to_string),
        status,
        limit,
        ..RunFilter::default()
    };
    let cases: [(RunFilter, Vec<u64>); 9] = [
        (filter(None, None, None), vec![5_000, 4_000, 3_000, 2_000, 1_000]),
        (filter(Some("alpha"), None, None), vec![4_000, 3_000, 1_000]),
        (filter(None, Some(RunStatus::Running), None), vec![4_000, 2_000]),
        (filter(None, Some(RunStatus::Succeeded), None), vec![5_000, 1_000]),
        (filter(Some("alpha"), Some(RunStatus::Succeeded), None), vec![1_000]),
        (filter(None, None, Some(2)), vec![5_000, 4_000]),
        (filter(Some("alpha"), Some(RunStatus::Running), Some(1)), vec![4_000]),
        (filter(Some("nobody"), None, None), vec![]),
        (filter(None, None, Some(0)), vec![]),
    ];
    for (filter, expected) in cases {
        let got = listed(ok(journal.runs(&filter).await, "list runs"));
        assert_eq!(got, expected, "runs({filter:?}), listed by started_at_ms");
    }
    let all = ok(journal.runs(&RunFilter::default()).await, "list runs");
    for summary in all {
        assert_eq!(Some(&summary.run_id), ids.get(&summary.started_at_ms), "summaries carry their run's id");
    }
    let since = RunFilter { since_ms: Some(3_000), ..RunFilter::default() };
    assert_eq!(listed(ok(journal.runs(&since).await, "list runs")), vec![5_000, 4_000, 3_000], "since_ms");
    let since_limited = RunFilter { since_ms: Some(2_000), limit: Some(10), agent: Some("beta".into()), ..since };
    assert_eq!(listed(ok(journal.runs(&since_limited).await, "list runs")), vec![5_000, 2_000], "since_ms and agent");
}

/// `run_started`'s tenant lands on the run's summary, and listings filter
/// by it: one tenant never sees another's runs, whatever else is asked.
pub async fn runs_belong_to_their_tenant(journal: &dyn Journal) {
    let acme = TenantId::parse("acme").expect("a valid tenant");
    let globex = TenantId::parse("globex").expect("a valid tenant");
    let mut owned = Vec::new();
    for (index, tenant) in [&acme, &globex, &acme].into_iter().enumerate() {
        let run = RunId::new();
        let mut started = run_started(run, 0, 1_000 + index as u64, "shared-agent", "x");
        if let EventKind::RunStarted { tenant: slot, .. } = &mut started.kind {
            *slot = tenant.clone();
        }
        ok(journal.append(&[started]).await, "append a run");
        owned.push((run, tenant.clone()));
    }
    for tenant in [&acme, &globex] {
        let filter = RunFilter { tenant: Some(tenant.clone()), ..RunFilter::default() };
        let listed = ok(journal.runs(&filter).await, "list a tenant's runs");
        let expected: Vec<RunId> =
            owned.iter().rev().filter(|(_, owner)| owner == tenant).map(|(run, _)| *run).collect();
        assert_eq!(listed.iter().map(|r| r.run_id).collect::<Vec<_>>(), expected, "{tenant}'s runs");
        assert!(listed.iter().all(|r| &r.tenant == tenant));
    }
    for (run, tenant) in &owned {
        let summary = ok(journal.summary(*run).await, "one run's summary");
        assert_eq!(summary.map(|s| s.tenant), Some(tenant.clone()), "summary({run}) carries its tenant");
    }
    assert_eq!(ok(journal.summary(RunId::new()).await, "an unknown run"), None);
    let nobody = RunFilter { tenant: Some(TenantId::parse("initech").expect("valid")), ..RunFilter::default() };
    assert!(ok(journal.runs(&nobody).await, "list").is_empty());
}

/// A full id (in any case) or a unique prefix resolves; a shared prefix is
/// ambiguous; anything else, including SQL wildcards, is not found.
pub async fn resolve_by_id_and_prefix(journal: &dyn Journal) {
    // Three ids that share all but their last six hex digits, so prefixes
    // of every length can be tried.
    let base = RunId::new().to_string();
    let stem = &base[..30];
    let id = |tail: &str| RunId::parse(&format!("{stem}{tail}")).unwrap_or_else(|| panic!("bad test id {stem}{tail}"));
    let (a, b, c) = (id("aa0001"), id("aa0002"), id("bb0001"));
    for (n, run) in [a, b, c].into_iter().enumerate() {
        ok(journal.append(&[run_started(run, 0, 1_000 + n as u64, "resolver", "x")]).await, "start");
    }

    let resolves = [
        (a.to_string(), a),
        (b.to_string(), b),
        (a.to_string().to_uppercase(), a),
        (format!("{stem}bb"), c),
        (format!("{stem}b"), c),
        (format!("{}BB", stem.to_uppercase()), c),
        (format!("{stem}aa0002"), b),
    ];
    for (input, expected) in resolves {
        assert_eq!(ok(journal.resolve(&input).await, &format!("resolve `{input}`")), expected, "resolve `{input}`");
    }

    for input in [format!("{stem}aa"), stem.to_string(), base[..8].to_string(), base[..1].to_string()] {
        match journal.resolve(&input).await {
            Err(JournalError::Ambiguous(_)) => {}
            other => panic!("resolve `{input}` should be Ambiguous, got {other:?}"),
        }
    }

    let unknown_full = format!("{stem}cc0001");
    let wildcard_one = format!("{}_", &stem[..29]);
    let wildcard_any = format!("{stem}%");
    for input in [format!("{stem}cc"), unknown_full, wildcard_one, wildcard_any, "zz".into(), String::new()] {
        match journal.resolve(&input).await {
            Err(JournalError::NotFound(_)) => {}
            other => panic!("resolve `{input}` should be NotFound, got {other:?}"),
        }
    }
}

/// A suspended run lists with the status it was suspended with (and no
/// finish time: it is not over), a resumed one as running again; a batch's
/// last status-changing event wins.
pub async fn suspended_and_resumed_runs_list_their_status(journal: &dyn Journal) {
    let run = RunId::new();
    let usage = Usage { input_tokens: 10, output_tokens: 2, cached_input_tokens: 0 };
    let status_of = |summary: RunSummary| (summary.status, summary.finished_at_ms);
    ok(
        journal.append(&[run_started(run, 0, 1_000, "pausing", "go"), model_requested(run, 1, 1_001, 1)]).await,
        "start",
    );
    ok(journal.append(&[run_suspended(run, 2, 1_002, RunStatus::WaitingApproval)]).await, "suspend");
    assert_eq!(status_of(summary_of(journal, run).await), (RunStatus::WaitingApproval, None));
    let waiting = RunFilter { status: Some(RunStatus::WaitingApproval), ..RunFilter::default() };
    let listed: Vec<RunId> = ok(journal.runs(&waiting).await, "list waiting").iter().map(|r| r.run_id).collect();
    assert_eq!(listed, [run], "a run waiting for approval lists under that status");
    let running = RunFilter { status: Some(RunStatus::Running), ..RunFilter::default() };
    assert!(ok(journal.runs(&running).await, "list running").is_empty(), "a suspended run is not running");

    ok(journal.append(&[run_resumed(run, 3, 5_000, "host/1/1")]).await, "resume");
    assert_eq!(status_of(summary_of(journal, run).await), (RunStatus::Running, None));

    // Resumed and suspended again within one batch: suspended.
    ok(
        journal
            .append(&[
                run_resumed(run, 4, 6_000, "host/2/2"),
                model_responded(run, 5, 6_001, 1, usage, 0.5),
                run_suspended(run, 6, 6_002, RunStatus::NeedsReconciliation),
            ])
            .await,
        "resume and suspend",
    );
    let summary = summary_of(journal, run).await;
    assert_eq!((summary.status, summary.finished_at_ms, summary.steps), (RunStatus::NeedsReconciliation, None, 1));

    ok(
        journal
            .append(&[
                run_resumed(run, 7, 7_000, "host/3/3"),
                run_finished(run, 8, 7_001, RunStatus::Succeeded, 1, usage, 0.5),
            ])
            .await,
        "resume and finish",
    );
    let summary = summary_of(journal, run).await;
    assert_eq!(
        (summary.status, summary.finished_at_ms, summary.started_at_ms),
        (RunStatus::Succeeded, Some(7_001), 1_000)
    );
}

/// Many tasks appending at once (50 runs × 20 batches of 2 events) all land,
/// each run complete, in order and correctly summarised.
pub async fn concurrent_appenders(journal: Arc<dyn Journal>) {
    const TASKS: u64 = 50;
    const BATCHES: u32 = 20;
    let usage = Usage { input_tokens: 10, output_tokens: 5, cached_input_tokens: 1 };
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let journal = Arc::clone(&journal);
        tasks.push(tokio::spawn(async move {
            let run = RunId::new();
            let at = 1_000_000 + task * 1_000;
            for batch in 0..BATCHES {
                let seq = u64::from(batch) * 2;
                let events = if batch == 0 {
                    [run_started(run, 0, at, "concurrent", "parallel"), model_requested(run, 1, at + 1, 1)]
                } else {
                    [
                        model_responded(run, seq, at + seq, batch, usage, 0.25),
                        model_requested(run, seq + 1, at + seq + 1, batch + 1),
                    ]
                };
                ok(journal.append(&events).await, &format!("concurrent append, task {task} batch {batch}"));
            }
            (run, at)
        }));
    }
    let runs = join_all(tasks).await;

    let listing =
        ok(journal.runs(&RunFilter { agent: Some("concurrent".into()), ..RunFilter::default() }).await, "list");
    assert_eq!(listing.len(), TASKS as usize, "every concurrent run is listed");
    let responses = u64::from(BATCHES - 1);
    for (run, at) in runs {
        let events = ok(journal.events(run).await, "read a concurrent run");
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (0..u64::from(BATCHES) * 2).collect::<Vec<_>>(), "run {run} has every event, in order");
        let summary = summary_of(journal.as_ref(), run).await;
        assert_eq!(summary.started_at_ms, at);
        assert_eq!(summary.steps, BATCHES - 1);
        assert_eq!(
            summary.usage,
            Usage { input_tokens: 10 * responses, output_tokens: 5 * responses, cached_input_tokens: responses }
        );
        assert_eq!(summary.cost_usd, 0.25 * responses as f64);
    }
}

/// Failing batches interleaved with valid ones from other tasks: every
/// valid batch lands and every failing one leaves nothing, so a store that
/// commits batches in groups must isolate each batch's failure.
pub async fn failed_batches_do_not_fail_concurrent_ones(journal: Arc<dyn Journal>) {
    const TASKS: usize = 40;
    const ROUNDS: u32 = 10;
    let usage = Usage { input_tokens: 3, output_tokens: 2, cached_input_tokens: 0 };
    let barrier = Arc::new(tokio::sync::Barrier::new(TASKS));
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let journal = Arc::clone(&journal);
        let barrier = Arc::clone(&barrier);
        tasks.push(tokio::spawn(async move {
            let run = RunId::new();
            let failing = task % 2 == 1;
            // Outcomes are collected, not asserted, inside the task: a task
            // that panicked would stop arriving at the barrier and hang the
            // others instead of failing the test.
            let mut outcomes = vec![journal.append(&[run_started(run, 0, 1_000, "mixed", "x")]).await];
            for round in 1..=ROUNDS {
                // Line the tasks up so their batches reach the store together.
                barrier.wait().await;
                let seq = u64::from(round);
                let respond = model_responded(run, seq, 1_000 + seq, round, usage, 0.5);
                let batch =
                    if failing { vec![respond, model_requested(run, 0, 1_000 + seq, round)] } else { vec![respond] };
                outcomes.push(journal.append(&batch).await);
            }
            (run, failing, outcomes)
        }));
    }
    for (run, failing, outcomes) in join_all(tasks).await {
        for (round, outcome) in outcomes.into_iter().enumerate() {
            if failing && round > 0 {
                assert_storage_error(outcome, &format!("run {run} round {round}: a clashing batch among valid ones"));
            } else {
                ok(outcome, &format!("run {run} round {round}: a valid batch among clashing ones"));
            }
        }
        let events = ok(journal.events(run).await, "read").len();
        let summary = summary_of(journal.as_ref(), run).await;
        if failing {
            assert_eq!((events, summary.steps), (1, 0), "run {run}: failed batches left nothing");
        } else {
            assert_eq!((events, summary.steps), (1 + ROUNDS as usize, ROUNDS), "run {run}: valid batches all landed");
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------

#[track_caller]
fn ok<T>(result: Result<T, JournalError>, doing: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{doing}: unexpected journal error: {error}"),
    }
}

/// A batch that clashes with the journal or with itself fails, as a
/// conflict or as a malformed batch.
#[track_caller]
fn assert_storage_error(result: Result<(), JournalError>, what: &str) {
    match result {
        Err(JournalError::Storage(_) | JournalError::Conflict(_)) => {}
        other => panic!("{what} must fail with JournalError::Storage or Conflict, got {other:?}"),
    }
}

async fn summary_of(journal: &dyn Journal, run: RunId) -> RunSummary {
    let all = ok(journal.runs(&RunFilter::default()).await, "list runs");
    match all.into_iter().find(|summary| summary.run_id == run) {
        Some(summary) => summary,
        None => panic!("run {run} is missing from runs()"),
    }
}

/// Awaits every task, re-raising a task's panic so its message reaches the
/// test output.
async fn join_all<T>(tasks: Vec<tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(value) => results.push(value),
            Err(error) => match error.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(error) => panic!("a conformance task did not finish: {error}"),
            },
        }
    }
    results
}

/// `events_after(run, seq)` gives exactly the events above `seq`, whether
/// `seq` falls inside a stored batch or at its end.
pub async fn events_after_are_what_a_follower_has_not_seen(journal: &dyn Journal) {
    let run = RunId::new();
    ok(journal.append(&[run_started(run, 0, 1, "follower", "x"), model_requested(run, 1, 2, 1)]).await, "append");
    ok(
        journal
            .append(&[model_requested(run, 2, 3, 2), model_requested(run, 3, 4, 3), model_requested(run, 4, 5, 4)])
            .await,
        "append",
    );
    for after in 0..6 {
        let seqs: Vec<u64> = ok(journal.events_after(run, after).await, "events after").iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (after + 1..5).collect::<Vec<_>>(), "events_after({after})");
    }
    assert!(ok(journal.events_after(RunId::new(), 0).await, "an unknown run").is_empty());
}
