//! The loop and its control layer, driven by a scripted model through every
//! failure mode the source documents name: infinite loop, repeated action,
//! hallucinated tool, invalid and malformed arguments, tool failure cascade,
//! hallucinated completion, budget overrun and timeout — plus handoff,
//! approvals, cancellation, parallel calls and journal ordering.

use async_trait::async_trait;
use rein_core::RunRecord;
use rein_runtime::{
    Agent, ApprovalDecision, ApprovalRequest, Approver, CancellationToken, Durability, RunOptions, Runtime,
};
use rein_testkit::journal::MemoryJournal;
use rein_testkit::scripted::{self, FnModel, ScriptedModel, Turn};
use rein_types::{
    Approval, EventKind, Journal, LimitKind, Limits, LogLevel, Message, ModelErrorKind, ModelPrice, ModelSettings,
    RejectReason, RiskTier, RunId, RunStatus, StopConditions, Tool, ToolContext, ToolName, ToolOutcome, ToolReport,
    ToolSpec,
};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Behaviour = dyn Fn(&Value) -> ToolOutcome + Send + Sync;

/// A tool whose result is a function of its arguments; counts its calls.
struct TestTool {
    spec: ToolSpec,
    behaviour: Box<Behaviour>,
    delay: Option<Duration>,
    calls: Arc<AtomicUsize>,
}

impl TestTool {
    fn new(name: &str, risk: RiskTier, behaviour: impl Fn(&Value) -> ToolOutcome + Send + Sync + 'static) -> Self {
        let spec = ToolSpec::new(
            ToolName::new(name).unwrap(),
            format!("Test tool {name}: looks things up by key."),
            json!({"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"], "additionalProperties": false}),
            risk,
        );
        Self { spec, behaviour: Box::new(behaviour), delay: None, calls: Arc::new(AtomicUsize::new(0)) }
    }

    fn lookup() -> Self {
        Self::new("lookup", RiskTier::Read, |args| {
            ToolOutcome::ok(json!({"value": format!("v-{}", args["key"].as_str().unwrap_or(""))}))
        })
    }

    fn counter(&self) -> Arc<AtomicUsize> {
        self.calls.clone()
    }
}

#[async_trait]
impl Tool for TestTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, _context: &ToolContext) -> ToolOutcome {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
        (self.behaviour)(&arguments)
    }
}

fn runtime() -> (Runtime, Arc<MemoryJournal>) {
    let journal = Arc::new(MemoryJournal::new());
    (Runtime::new(journal.clone()), journal)
}

async fn events(journal: &MemoryJournal, run: RunId) -> Vec<EventKind> {
    journal.events(run).await.unwrap().into_iter().map(|e| e.kind).collect()
}

fn tool_messages(transcript: &[Message]) -> Vec<String> {
    transcript
        .iter()
        .filter_map(|m| match m {
            Message::Tool { content, .. } => Some(content.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn happy_path_journals_every_step_and_succeeds() {
    let model = Arc::new(ScriptedModel::new([
        scripted::call("lookup", json!({"key": "a"})),
        scripted::text("The value is v-a."),
    ]));
    let tool = TestTool::lookup();
    let agent = Agent::builder("happy")
        .system_prompt("Look things up.")
        .shared_model(model.clone())
        .tool(tool)
        .build()
        .unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "what is a?").await.unwrap();

    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.output.as_deref(), Some("The value is v-a."));
    assert_eq!(outcome.steps, 2);
    assert_eq!(outcome.usage.input_tokens, 200);
    assert_eq!(outcome.partial_results.len(), 1);
    assert!(outcome.unbacked_claims.is_empty());

    let kinds: Vec<&str> = events(&journal, outcome.run_id).await.iter().map(|k| k.type_name()).collect();
    assert_eq!(
        kinds,
        [
            "run_started",
            "model_requested",
            "model_responded",
            "tool_call_requested",
            "tool_call_executed",
            "model_requested",
            "model_responded",
            "run_finished"
        ]
    );
    // The second call saw the tool result, linked to the call.
    let transcript = &model.transcripts()[1];
    assert!(tool_messages(transcript)[0].contains("v-a"));

    let record = RunRecord::from_events(&journal.events(outcome.run_id).await.unwrap()).unwrap();
    assert_eq!(record.steps.len(), 2);
    assert_eq!(record.steps[0].calls[0].tool, "lookup");
    assert_eq!(record.status, RunStatus::Succeeded);
}

#[tokio::test]
async fn infinite_loop_stops_at_max_steps_with_partial_results() {
    let counter = AtomicUsize::new(0);
    let model = FnModel::new(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok(scripted::call("lookup", json!({"key": format!("k{n}")})))
    });
    let agent = Agent::builder("looper").model(model).tool(TestTool::lookup()).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();

    assert_eq!(outcome.status, RunStatus::LimitReached);
    assert_eq!(outcome.limit, Some(LimitKind::MaxSteps));
    assert_eq!(outcome.steps, 12, "the default max_steps is 12");
    assert_eq!(outcome.partial_results.len(), 12);
    assert!(outcome.explanation.contains("12 steps"), "{}", outcome.explanation);
    assert!(outcome.explanation.contains("max_steps"), "the explanation says what to do: {}", outcome.explanation);
    assert!(!outcome.explanation.contains("maximum iterations exceeded"));
}

#[tokio::test]
async fn repeated_action_is_told_once_then_stopped() {
    let model = Arc::new(FnModel::new(|_| Ok(scripted::call("lookup", json!({"key": "same"})))));
    let tool = TestTool::lookup();
    let calls = tool.counter();
    let agent = Agent::builder("repeater").shared_model(model.clone()).tool(tool).build().unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();

    assert_eq!(outcome.status, RunStatus::LimitReached);
    assert_eq!(outcome.limit, Some(LimitKind::RepeatedAction));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the repeat was not executed again");
    assert_eq!(model.calls_made(), 3);
    let rejected: Vec<String> = events(&journal, outcome.run_id)
        .await
        .into_iter()
        .filter_map(|k| match k {
            EventKind::ToolCallRejected { reason: RejectReason::RepeatedCall, message, .. } => Some(message),
            _ => None,
        })
        .collect();
    assert_eq!(rejected.len(), 1);
    assert!(rejected[0].contains("already called `lookup`"), "{}", rejected[0]);
    assert!(rejected[0].contains("v-same"), "the earlier result is repeated to the model: {}", rejected[0]);
}

#[tokio::test]
async fn steps_that_add_nothing_new_stop_as_no_progress() {
    let counter = AtomicUsize::new(0);
    let model = FnModel::new(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok(scripted::call("search", json!({"key": format!("query {n}")})))
    });
    let search = TestTool::new("search", RiskTier::Read, |_| ToolOutcome::ok(json!({"results": []})));
    let agent = Agent::builder("searcher").model(model).tool(search).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "find it").await.unwrap();

    assert_eq!(outcome.limit, Some(LimitKind::NoProgress));
    // Step 1 learns that searches come back empty; steps 2-4 learn nothing.
    assert_eq!(outcome.steps, 4);
}

#[tokio::test]
async fn hallucinated_tool_is_reported_to_the_model_which_recovers() {
    let model = Arc::new(ScriptedModel::new([
        scripted::call("delete_all_customers", json!({})),
        scripted::call("lookup", json!({"key": "a"})),
        scripted::text("v-a"),
    ]));
    let agent = Agent::builder("recovering").shared_model(model.clone()).tool(TestTool::lookup()).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();

    assert_eq!(outcome.status, RunStatus::Succeeded);
    let observation = &tool_messages(&model.transcripts()[1])[0];
    assert!(observation.contains("no tool named `delete_all_customers`"), "{observation}");
    assert!(observation.contains("lookup"), "the model is told which tools exist: {observation}");
}

#[tokio::test]
async fn consecutive_invalid_calls_stop_the_run() {
    let model = ScriptedModel::new([
        scripted::call("nope", json!({})),
        scripted::raw_call("lookup", "{\"key\": "),
        scripted::call("lookup", json!({"key": 42})),
        scripted::text("never reached"),
    ]);
    let tool = TestTool::lookup();
    let calls = tool.counter();
    let agent = Agent::builder("confused").model(model).tool(tool).build().unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();

    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.reason, "invalid_tool_calls");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "nothing invalid was executed");
    let reasons: Vec<RejectReason> = events(&journal, outcome.run_id)
        .await
        .into_iter()
        .filter_map(|k| match k {
            EventKind::ToolCallRejected { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [RejectReason::UnknownTool, RejectReason::MalformedArguments, RejectReason::InvalidArguments]);
    assert!(outcome.explanation.contains("3 invalid tool calls"), "{}", outcome.explanation);
}

#[tokio::test]
async fn invalid_arguments_are_explained_with_the_schema_error() {
    let model = Arc::new(ScriptedModel::new([
        scripted::call("lookup", json!({"key": 7, "extra": true})),
        scripted::call("lookup", json!({"key": "7"})),
        scripted::text("ok"),
    ]));
    let agent = Agent::builder("fixer").shared_model(model.clone()).tool(TestTool::lookup()).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let observation = &tool_messages(&model.transcripts()[1])[0];
    assert!(observation.contains("do not match its parameter schema"), "{observation}");
    assert!(observation.contains("/key"), "names the bad field: {observation}");
}

#[tokio::test]
async fn tool_failure_cascade_fails_with_the_last_error() {
    let counter = AtomicUsize::new(0);
    let model = FnModel::new(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok(scripted::call("crm", json!({"key": format!("c{n}")})))
    });
    let crm = TestTool::new("crm", RiskTier::Read, |_| ToolOutcome::Error {
        message: "connection refused by crm.internal".into(),
        hint: None,
        retryable: true,
    });
    let agent = Agent::builder("cascade").model(model).tool(crm).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();

    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.reason, "tool_errors");
    assert_eq!(outcome.steps, 3, "the default max_tool_errors is 3");
    assert!(outcome.explanation.contains("connection refused by crm.internal"), "{}", outcome.explanation);
}

#[tokio::test]
async fn claimed_actions_without_a_backing_call_are_flagged() {
    let model = ScriptedModel::new([scripted::text("I have sent the refund confirmation email to the customer.")]);
    let agent = Agent::builder("liar").model(model).tool(TestTool::lookup()).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "refund order 7").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.unbacked_claims, ["I have sent the refund confirmation email to the customer"]);
    assert!(outcome.explanation.contains("unverified"));

    // The same claim after a successful write call is backed.
    let model = ScriptedModel::new([
        scripted::call("send_email", json!({"key": "customer-7"})),
        scripted::text("I have sent the refund confirmation email to the customer."),
    ]);
    let send = TestTool::new("send_email", RiskTier::Write, |_| ToolOutcome::ok(json!({"sent": true})));
    let agent = Agent::builder("honest").model(model).tool(send).build().unwrap();
    let outcome = runtime.run(&agent, "refund order 7").await.unwrap();
    assert!(outcome.unbacked_claims.is_empty());
}

#[tokio::test]
async fn token_budget_stops_before_the_call_that_could_overspend() {
    let counter = AtomicUsize::new(0);
    let model = Arc::new(FnModel::new(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok(scripted::call("lookup", json!({"key": format!("k{n}")})))
    }));
    let limits = Limits { max_tokens: Some(600), ..Limits::default() };
    let settings = ModelSettings { max_output_tokens: Some(100), ..ModelSettings::default() };
    let agent = Agent::builder("budget")
        .shared_model(model.clone())
        .tool(TestTool::lookup())
        .limits(limits)
        .settings(settings)
        .build()
        .unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();

    assert_eq!(outcome.limit, Some(LimitKind::TokenBudget));
    assert!(outcome.usage.total() <= 600, "never overspent: {:?}", outcome.usage);
    assert!(model.calls_made() >= 2, "some calls fit in the budget");
    // The limit was hit before a model call, not after one.
    let kinds = events(&journal, outcome.run_id).await;
    let hit = kinds.iter().position(|k| matches!(k, EventKind::LimitHit { .. })).unwrap();
    assert!(matches!(kinds[hit - 1], EventKind::ToolCallExecuted { .. }), "{:?}", kinds[hit - 1]);
    assert!(outcome.explanation.contains("max_tokens"), "{}", outcome.explanation);
}

#[tokio::test]
async fn cost_budget_uses_the_price_and_stops_before_overspending() {
    let counter = AtomicUsize::new(0);
    let model = FnModel::new(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        Ok(scripted::call("lookup", json!({"key": format!("k{n}")})))
    });
    // $10 per million input tokens, $30 per million output: a call is about
    // 100 * 10e-6 + 20 * 30e-6 = $0.0016 but its worst case is far higher.
    let price = ModelPrice { input_per_mtok: 10.0, output_per_mtok: 30.0, cached_input_per_mtok: None };
    let limits = Limits { max_cost_usd: Some(0.01), ..Limits::default() };
    let settings = ModelSettings { max_output_tokens: Some(200), ..ModelSettings::default() };
    let agent = Agent::builder("spender")
        .model(model)
        .tool(TestTool::lookup())
        .limits(limits)
        .settings(settings)
        .price(price)
        .build()
        .unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.limit, Some(LimitKind::CostBudget));
    assert!(outcome.cost_usd <= 0.01, "{}", outcome.cost_usd);
    assert!(outcome.cost_usd > 0.0);
}

#[tokio::test]
async fn wall_clock_timeout_stops_a_slow_model_with_partial_results() {
    let model = ScriptedModel::new([
        Turn::from(scripted::call("lookup", json!({"key": "a"}))),
        Turn::Delayed(Duration::from_secs(30), Box::new(scripted::text("too late").into())),
    ]);
    let limits = Limits { timeout_ms: 300, ..Limits::default() };
    let agent = Agent::builder("slow").model(model).tool(TestTool::lookup()).limits(limits).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = tokio::time::timeout(Duration::from_secs(10), runtime.run(&agent, "go")).await.unwrap().unwrap();
    assert_eq!(outcome.limit, Some(LimitKind::Timeout));
    assert_eq!(outcome.partial_results.len(), 1, "the lookup result is kept");
    assert!(outcome.explanation.contains("timeout"), "{}", outcome.explanation);
}

#[tokio::test]
async fn a_slow_tool_times_out_as_a_readable_observation() {
    let model =
        Arc::new(ScriptedModel::new([scripted::call("lookup", json!({"key": "a"})), scripted::text("gave up")]));
    let mut tool = TestTool::lookup();
    tool.delay = Some(Duration::from_secs(30));
    let limits = Limits { tool_timeout_ms: 100, ..Limits::default() };
    let agent = Agent::builder("slowtool").shared_model(model.clone()).tool(tool).limits(limits).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let observation = &tool_messages(&model.transcripts()[1])[0];
    assert!(observation.contains("did not finish within 100 ms"), "{observation}");
}

#[tokio::test]
async fn a_panicking_tool_does_not_crash_the_run() {
    let model = Arc::new(ScriptedModel::new([scripted::call("boom", json!({"key": "a"})), scripted::text("handled")]));
    let boom = TestTool::new("boom", RiskTier::Read, |_| panic!("tool bug"));
    let agent = Agent::builder("panic").shared_model(model.clone()).tool(boom).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert!(tool_messages(&model.transcripts()[1])[0].contains("crashed"));
}

#[tokio::test]
async fn parallel_calls_from_one_turn_run_concurrently() {
    // Each call waits for the other at a barrier: run one after the other,
    // the first would wait forever and time out.
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    struct Meet(ToolSpec, Arc<tokio::sync::Barrier>);
    #[async_trait]
    impl Tool for Meet {
        fn spec(&self) -> &ToolSpec {
            &self.0
        }
        async fn call(&self, arguments: Value, _: &ToolContext) -> ToolOutcome {
            self.1.wait().await;
            ToolOutcome::ok(arguments)
        }
    }
    let spec = TestTool::lookup().spec.clone();
    let model = ScriptedModel::new([
        scripted::calls(&[("lookup", json!({"key": "a"})), ("lookup", json!({"key": "b"}))]),
        scripted::text("both"),
    ]);
    let limits = Limits { tool_timeout_ms: 5_000, ..Limits::default() };
    let agent = Agent::builder("parallel").model(model).tool(Meet(spec, barrier)).limits(limits).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.partial_results.len(), 2, "both calls succeeded: {:?}", outcome.partial_results);
}

#[tokio::test]
async fn handoff_escalates_with_the_reason() {
    let model =
        ScriptedModel::new([scripted::call("handoff_to_human", json!({"reason": "customer asks for a refund"}))]);
    let agent = Agent::builder("support").model(model).tool(TestTool::lookup()).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "I want my money back").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Escalated);
    assert_eq!(outcome.reason, "handoff");
    assert!(outcome.explanation.contains("customer asks for a refund"));
}

fn dangerous_tool() -> TestTool {
    let mut tool =
        TestTool::new("send_email", RiskTier::Dangerous, |args| ToolOutcome::ok(json!({"sent_to": args["key"]})));
    assert_eq!(tool.spec.approval, Approval::Required, "dangerous tools need approval by default");
    tool.spec.description = "Send an email".into();
    tool
}

#[tokio::test]
async fn dangerous_call_without_an_approver_waits_for_approval_and_does_not_run() {
    let model = ScriptedModel::new([scripted::call("send_email", json!({"key": "all-customers"}))]);
    let tool = dangerous_tool();
    let calls = tool.counter();
    let agent = Agent::builder("mailer").model(model).tool(tool).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "email everyone").await.unwrap();
    assert_eq!(outcome.status, RunStatus::WaitingApproval);
    assert_eq!(outcome.reason, "approval_required");
    assert_eq!(outcome.pending.len(), 1);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

type Decide = Box<dyn Fn(&ApprovalRequest) -> ApprovalDecision + Send>;

struct ScriptedApprover(Mutex<Vec<Decide>>);

#[async_trait]
impl Approver for ScriptedApprover {
    async fn decide(&self, _run: RunId, requests: &[ApprovalRequest]) -> Vec<ApprovalDecision> {
        let decide = self.0.lock().unwrap().remove(0);
        requests.iter().map(decide).collect()
    }
}

#[tokio::test]
async fn approvals_approve_reject_and_edit() {
    let model = Arc::new(ScriptedModel::new([
        scripted::call("send_email", json!({"key": "first"})),
        scripted::call("send_email", json!({"key": "second"})),
        scripted::call("send_email", json!({"key": "third"})),
        scripted::text("done"),
    ]));
    let tool = dangerous_tool();
    let calls = tool.counter();
    let agent = Agent::builder("mailer").shared_model(model.clone()).tool(tool).build().unwrap();
    let approver = ScriptedApprover(Mutex::new(vec![
        Box::new(|r: &ApprovalRequest| ApprovalDecision::Approve { call_id: r.call_id.clone(), by: "ana".into() }),
        Box::new(|r: &ApprovalRequest| ApprovalDecision::Reject {
            call_id: r.call_id.clone(),
            by: "ana".into(),
            reason: Some("wrong recipient".into()),
        }),
        Box::new(|r: &ApprovalRequest| ApprovalDecision::Edit {
            call_id: r.call_id.clone(),
            by: "ana".into(),
            arguments: json!({"key": "edited"}),
        }),
    ]));
    let (runtime, journal) = runtime();
    let runtime = runtime.with_approver(Arc::new(approver));
    let outcome = runtime.run(&agent, "send").await.unwrap();

    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(calls.load(Ordering::SeqCst), 2, "approved and edited calls ran, the rejected one did not");
    let observations = tool_messages(&model.transcripts()[3]);
    assert!(observations[1].contains("rejected") && observations[1].contains("wrong recipient"), "{}", observations[1]);
    assert!(observations[2].contains("edited"), "the edited arguments were used: {}", observations[2]);
    let decisions = events(&journal, outcome.run_id)
        .await
        .into_iter()
        .filter(|k| matches!(k, EventKind::ApprovalDecided { by, .. } if by == "ana"))
        .count();
    assert_eq!(decisions, 3);
}

#[tokio::test]
async fn cancellation_ends_the_run_as_cancelled() {
    let model = ScriptedModel::new([Turn::Delayed(Duration::from_secs(30), Box::new(scripted::text("late").into()))]);
    let agent = Agent::builder("cancel").model(model).build().unwrap();
    let (runtime, _) = runtime();
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        trigger.cancel();
    });
    let options = RunOptions { cancel: Some(cancel), ..RunOptions::default() };
    let outcome = runtime.run_with(&agent, "go", options).await.unwrap();
    assert_eq!(outcome.status, RunStatus::Cancelled);
}

#[tokio::test]
async fn model_errors_fail_with_advice() {
    let model = ScriptedModel::new([scripted::failure(ModelErrorKind::Auth, "401 from provider: invalid key")]);
    let agent = Agent::builder("auth").model(model).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.reason, "model_error:auth");
    assert!(outcome.explanation.contains("API key"), "{}", outcome.explanation);
}

#[tokio::test]
async fn stop_condition_tool_ends_the_run_with_its_result() {
    let model = ScriptedModel::new([scripted::call("save_draft", json!({"key": "Dear customer"}))]);
    let draft = TestTool::new("save_draft", RiskTier::Write, |_| ToolOutcome::ok(json!({"draft_id": 9})));
    let stop = StopConditions { after_tools: vec!["save_draft".into()] };
    let agent = Agent::builder("drafter").model(model).tool(draft).stop(stop).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "draft a reply").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    assert_eq!(outcome.reason, "stop_condition");
    assert_eq!(outcome.output.as_deref(), Some("{\"draft_id\":9}"));
}

/// A tool that records whether its own `tool_call_requested` event was
/// already committed when it ran.
struct Witness(ToolSpec, Arc<MemoryJournal>, Arc<Mutex<Option<bool>>>);

#[async_trait]
impl Tool for Witness {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }
    async fn call(&self, _arguments: Value, context: &ToolContext) -> ToolOutcome {
        let events = self.1.events(context.run_id).await.unwrap();
        let journaled = events.iter().any(|e| {
            matches!(&e.kind, EventKind::ToolCallRequested { call_id, idempotency_key, .. }
                if *call_id == context.call_id && *idempotency_key == context.idempotency_key.0)
        });
        *self.2.lock().unwrap() = Some(journaled);
        ToolOutcome::ok(json!("seen"))
    }
}

async fn committed_before_running(risk: RiskTier, durability: Durability) -> bool {
    let journal = Arc::new(MemoryJournal::new());
    let runtime = Runtime::new(journal.clone()).with_durability(durability);
    let seen = Arc::new(Mutex::new(None));
    let mut spec = TestTool::lookup().spec.clone();
    spec.risk = risk;
    spec.approval = Approval::Never;
    let model = ScriptedModel::new([scripted::call("lookup", json!({"key": "a"})), scripted::text("ok")]);
    let agent =
        Agent::builder("witness").model(model).tool(Witness(spec, journal.clone(), seen.clone())).build().unwrap();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    // Whatever the policy, the finished run is fully committed.
    let kinds = events(&journal, outcome.run_id).await;
    assert!(matches!(kinds.last(), Some(EventKind::RunFinished { .. })), "{kinds:?}");
    assert_eq!(kinds.len(), 8);
    let seen = *seen.lock().unwrap();
    seen.expect("the tool ran")
}

#[tokio::test]
async fn side_effects_are_committed_before_they_run() {
    let default = Durability::default();
    assert!(committed_before_running(RiskTier::Write, default).await, "a write call is committed before it runs");
    assert!(committed_before_running(RiskTier::Dangerous, default).await);
    // A read call changes nothing: by default it runs while its event waits
    // to be committed with the rest of the side-effect-free steps.
    assert!(!committed_before_running(RiskTier::Read, default).await);
    assert!(
        committed_before_running(RiskTier::Read, Durability::EveryStep).await,
        "EveryStep commits everything first"
    );
}

#[tokio::test]
async fn the_agent_version_is_recorded_on_the_run() {
    let model = ScriptedModel::new([scripted::text("hi")]);
    let agent = Agent::builder("versioned").system_prompt("v1").model(model).build().unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(&outcome.agent_version, agent.version());
    let started = &events(&journal, outcome.run_id).await[0];
    assert!(matches!(started, EventKind::RunStarted { agent_version, .. } if agent_version == agent.version()));

    let other = Agent::builder("versioned")
        .system_prompt("v2")
        .model(ScriptedModel::new([scripted::text("hi")]))
        .build()
        .unwrap();
    assert_ne!(other.version(), agent.version());
}

#[tokio::test]
async fn a_deadline_during_tool_calls_keeps_finished_results_and_resolves_the_rest() {
    let model = ScriptedModel::new([scripted::calls(&[("save", json!({"key": "a"})), ("slow", json!({"key": "b"}))])]);
    let save = TestTool::new("save", RiskTier::Write, |_| ToolOutcome::ok(json!({"saved": true})));
    let mut slow = TestTool::new("slow", RiskTier::Read, |_| ToolOutcome::ok(json!("late")));
    slow.delay = Some(Duration::from_secs(30));
    let limits = Limits { timeout_ms: 300, ..Limits::default() };
    let agent = Agent::builder("deadline").model(model).tool(save).tool(slow).limits(limits).build().unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();

    assert_eq!(outcome.limit, Some(LimitKind::Timeout));
    assert_eq!(outcome.partial_results.len(), 1, "the finished write is kept: {:?}", outcome.partial_results);
    let executed: Vec<(String, bool)> = events(&journal, outcome.run_id)
        .await
        .into_iter()
        .filter_map(|k| match k {
            EventKind::ToolCallExecuted { tool, outcome, .. } => Some((tool, outcome.is_ok())),
            _ => None,
        })
        .collect();
    assert_eq!(executed, [("save".to_owned(), true), ("slow".to_owned(), false)], "every requested call is resolved");
}

#[tokio::test]
async fn a_truncated_final_answer_is_not_a_success() {
    let mut cut = scripted::text("The three steps are: first, open the");
    cut.finish_reason = rein_types::FinishReason::Length;
    let agent = Agent::builder("cut").model(ScriptedModel::new([cut])).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.reason, "answer_truncated");
    assert_eq!(outcome.output.as_deref(), Some("The three steps are: first, open the"), "the partial text is kept");
    assert!(outcome.explanation.contains("max_output_tokens"), "{}", outcome.explanation);
}

#[tokio::test]
async fn the_token_budget_holds_when_the_provider_reports_no_usage() {
    let counter = AtomicUsize::new(0);
    let model = Arc::new(FnModel::new(move |_| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        let mut response = scripted::call("lookup", json!({"key": format!("k{n}")}));
        response.usage = rein_types::Usage::default();
        Ok(response)
    }));
    let limits = Limits { max_tokens: Some(1_000), ..Limits::default() };
    let settings = ModelSettings { max_output_tokens: Some(100), ..ModelSettings::default() };
    let agent = Agent::builder("silent")
        .shared_model(model.clone())
        .tool(TestTool::lookup())
        .limits(limits)
        .settings(settings)
        .build()
        .unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.limit, Some(LimitKind::TokenBudget), "{}", outcome.explanation);
    assert!(model.calls_made() < 12, "the budget stopped the run before max_steps");
}

#[tokio::test]
async fn calls_left_behind_by_a_handoff_are_resolved_not_run() {
    let model = ScriptedModel::new([scripted::calls(&[
        ("lookup", json!({"key": "a"})),
        ("handoff_to_human", json!({"reason": "legal question"})),
    ])]);
    let tool = TestTool::lookup();
    let calls = tool.counter();
    let agent = Agent::builder("handoff").model(model).tool(tool).build().unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Escalated);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    let resolved = events(&journal, outcome.run_id)
        .await
        .into_iter()
        .any(|k| matches!(k, EventKind::ToolCallRejected { reason: RejectReason::RunEnded, ref tool, .. } if tool == "lookup"));
    assert!(resolved, "the lookup accepted before the handoff is journaled as not run");
}

#[tokio::test]
async fn calls_sharing_an_id_each_get_their_result() {
    let mut both = scripted::calls(&[("lookup", json!({"key": "a"})), ("lookup", json!({"key": "b"}))]);
    let shared = both.tool_calls[0].id.clone();
    both.tool_calls[1].id = shared;
    let model = Arc::new(ScriptedModel::new([both, scripted::text("ok")]));
    let agent = Agent::builder("dupes").shared_model(model.clone()).tool(TestTool::lookup()).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();
    assert_eq!(outcome.partial_results.len(), 2);
    let observations = tool_messages(&model.transcripts()[1]);
    assert!(observations[0].contains("v-a") && observations[1].contains("v-b"), "{observations:?}");
}

#[tokio::test]
async fn hooks_that_want_deltas_receive_the_stream() {
    struct Collect(Mutex<Vec<rein_types::StreamDelta>>);
    impl rein_runtime::Hooks for Collect {
        fn wants_deltas(&self) -> bool {
            true
        }
        fn on_model_delta(&self, _run: rein_runtime::RunInfo<'_>, delta: &rein_types::StreamDelta) {
            self.0.lock().unwrap().push(delta.clone());
        }
    }
    let model =
        ScriptedModel::new([scripted::call("lookup", json!({"key": "a"})), scripted::text("The value is v-a.")]);
    let agent = Agent::builder("streamed").model(model).tool(TestTool::lookup()).build().unwrap();
    let collect = Arc::new(Collect(Mutex::new(Vec::new())));
    let (runtime, _) = runtime();
    let outcome = runtime.with_hooks(collect.clone()).run(&agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);
    let deltas = collect.0.lock().unwrap().clone();
    assert!(matches!(&deltas[0], rein_types::StreamDelta::ToolCallStarted { index: 0, name, .. } if name == "lookup"));
    assert!(
        matches!(&deltas[1], rein_types::StreamDelta::ToolCallArguments { index: 0, fragment } if fragment.contains("\"a\""))
    );
    assert_eq!(deltas[2], rein_types::StreamDelta::Text("The value is v-a.".into()));
}

fn triage_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "priority": { "enum": ["low", "normal", "high"] }, "summary": { "type": "string" } },
        "required": ["priority", "summary"]
    })
}

#[tokio::test]
async fn a_final_answer_that_breaks_the_output_schema_is_sent_back_for_repair() {
    let model = Arc::new(ScriptedModel::new([
        scripted::text("Priority is high."),
        scripted::text("{\"priority\": \"urgent\", \"summary\": \"SSO down\"}"),
        scripted::text("```json\n{\"priority\": \"high\", \"summary\": \"SSO down\"}\n```"),
    ]));
    let agent = Agent::builder("triage").shared_model(model.clone()).output_schema(triage_schema()).build().unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "classify").await.unwrap();

    assert_eq!(outcome.status, RunStatus::Succeeded, "{}", outcome.explanation);
    assert_eq!(outcome.output.as_deref(), Some("{\"priority\": \"high\", \"summary\": \"SSO down\"}"));
    let rejected = events(&journal, outcome.run_id)
        .await
        .into_iter()
        .filter(|k| matches!(k, EventKind::OutputRejected { .. }))
        .count();
    assert_eq!(rejected, 2);
    // The model was told what was wrong.
    let Message::User { text } = model.transcripts()[2].last().unwrap().clone() else { panic!("no repair request") };
    assert!(text.contains("priority") && text.contains("JSON Schema"), "{text}");
}

#[tokio::test]
async fn an_output_that_stays_invalid_fails_the_run() {
    let model = FnModel::new(|_| Ok(scripted::text("no JSON here")));
    let agent = Agent::builder("stubborn").model(model).output_schema(triage_schema()).build().unwrap();
    let (runtime, _) = runtime();
    let outcome = runtime.run(&agent, "classify").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Failed);
    assert_eq!(outcome.reason, "invalid_output");
    assert_eq!(outcome.steps, 3, "the answer and two repairs (max_output_repairs = 2)");
    assert!(outcome.explanation.contains("not JSON"), "{}", outcome.explanation);
}

/// A scripted model with its own id, so routes can be told apart.
struct Named(&'static str, ScriptedModel);

#[async_trait]
impl rein_types::Model for Named {
    fn id(&self) -> String {
        self.0.into()
    }
    async fn complete(
        &self,
        request: rein_types::ModelRequest<'_>,
    ) -> Result<rein_types::ModelResponse, rein_types::ModelError> {
        self.1.complete(request).await
    }
}

#[tokio::test]
async fn each_phase_is_served_by_its_routed_model_and_journaled() {
    use rein_types::Phase;
    let planner = Arc::new(Named("strong:planner", ScriptedModel::new([scripted::call("crm", json!({"key": "a"}))])));
    let reflector =
        Arc::new(Named("strong:reflector", ScriptedModel::new([scripted::call("lookup", json!({"key": "b"}))])));
    let worker = Arc::new(Named("cheap:worker", ScriptedModel::new([scripted::text("draft answer")])));
    let writer = Arc::new(Named("strong:writer", ScriptedModel::new([scripted::text("Polished answer.")])));
    let price = ModelPrice { input_per_mtok: 1_000.0, output_per_mtok: 0.0, cached_input_per_mtok: None };
    let crm = TestTool::new("crm", RiskTier::Read, |_| ToolOutcome::error("crm is down"));
    let agent = Agent::builder("routed")
        .shared_model(Arc::new(Named("cheap:default", ScriptedModel::new(Vec::<Turn>::new()))))
        .tool(crm)
        .tool(TestTool::lookup())
        .route(Phase::Planning, planner.clone(), None)
        .route(Phase::Reflection, reflector.clone(), None)
        .route(Phase::ToolSelection, worker.clone(), None)
        .route(Phase::Synthesis, writer.clone(), Some(price))
        .build()
        .unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "go").await.unwrap();

    assert_eq!(outcome.status, RunStatus::Succeeded, "{}", outcome.explanation);
    assert_eq!(outcome.output.as_deref(), Some("Polished answer."), "the synthesis model wrote the answer");
    let phases: Vec<(Phase, String)> = events(&journal, outcome.run_id)
        .await
        .into_iter()
        .filter_map(|k| match k {
            EventKind::ModelRequested { phase, model, .. } => Some((phase, model)),
            _ => None,
        })
        .collect();
    assert_eq!(
        phases,
        [
            (Phase::Planning, "strong:planner".into()),
            (Phase::Reflection, "strong:reflector".into()),
            (Phase::ToolSelection, "cheap:worker".into()),
            (Phase::Synthesis, "strong:writer".into()),
        ],
        "a failed call leads to reflection, results to tool selection, a final answer to synthesis"
    );
    // Only the synthesis step is priced: cost follows the routed model.
    assert!((outcome.cost_usd - 0.1).abs() < 1e-9, "{}", outcome.cost_usd);
    let synthesis = writer.1.transcripts();
    assert!(matches!(synthesis[0].last(), Some(Message::User { text }) if text.contains("final answer")));
}

#[tokio::test]
async fn a_long_conversation_is_summarised_by_the_summarisation_route() {
    use rein_types::Phase;
    let counter = AtomicUsize::new(0);
    // The working model looks up keys with long results, then answers.
    let worker = Arc::new(FnModel::new(move |messages| {
        let n = counter.fetch_add(1, Ordering::SeqCst);
        if messages
            .iter()
            .any(|m| matches!(m, Message::User { text } if text.starts_with("Summary of the work so far")))
        {
            return Ok(scripted::text("Done: k0 and k1 looked up."));
        }
        Ok(scripted::call("lookup", json!({"key": format!("k{n}")})))
    }));
    let summariser = Arc::new(Named("cheap:summariser", ScriptedModel::new([scripted::text("Looked up k0 and k1.")])));
    let mut lookup = TestTool::new("lookup", RiskTier::Read, |args| {
        ToolOutcome::ok(json!({"value": "x".repeat(400), "key": args["key"]}))
    });
    lookup.spec.description = "Looks up a key.".into();
    // Scripted calls report 100 prompt tokens; each long result adds ~110.
    let limits = Limits { summarise_above_tokens: Some(150), ..Limits::default() };
    let agent = Agent::builder("compact")
        .shared_model(worker.clone())
        .tool(lookup)
        .route(Phase::Summarisation, summariser.clone(), None)
        .limits(limits)
        .build()
        .unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "look up k0 and k1").await.unwrap();

    assert_eq!(outcome.status, RunStatus::Succeeded, "{}", outcome.explanation);
    assert_eq!(outcome.output.as_deref(), Some("Done: k0 and k1 looked up."));
    let kinds = events(&journal, outcome.run_id).await;
    let summarised = kinds.iter().any(|k| matches!(k, EventKind::ContextSummarised { .. }));
    assert!(summarised, "the conversation was summarised");
    let summary_call = kinds.iter().any(|k| {
        matches!(k, EventKind::ModelRequested { phase: Phase::Summarisation, model, .. } if model == "cheap:summariser")
    });
    assert!(summary_call, "the summarisation call went to its route");
    // The summariser saw the whole history; the next call saw the summary instead.
    assert!(summariser.1.transcripts()[0].len() > 4);
}

/// Reports on itself while it runs, then answers.
struct ReportingTool(ToolSpec);

#[async_trait]
impl Tool for ReportingTool {
    fn spec(&self) -> &ToolSpec {
        &self.0
    }

    async fn call(&self, _arguments: Value, context: &ToolContext) -> ToolOutcome {
        context.report(ToolReport::Progress { progress: 1.0, total: Some(2.0), message: Some("copying".into()) });
        tokio::task::yield_now().await;
        context.report(ToolReport::Log { level: LogLevel::Warning, logger: None, data: json!("disk nearly full") });
        context.report(ToolReport::Progress { progress: 2.0, total: Some(2.0), message: None });
        ToolOutcome::ok(json!("copied"))
    }
}

#[tokio::test]
async fn what_a_running_call_reports_is_journaled_before_its_result_and_not_shown_to_the_model() {
    let spec = ToolSpec::new(
        ToolName::new("copy").unwrap(),
        "Copies things.",
        json!({"type": "object", "properties": {"key": {"type": "string"}}}),
        RiskTier::Write,
    );
    let model = Arc::new(ScriptedModel::new([
        scripted::calls(&[("copy", json!({"key": "a"})), ("lookup", json!({"key": "b"}))]),
        scripted::text("Copied."),
    ]));
    let agent = Agent::builder("copier")
        .shared_model(model.clone())
        .tool(ReportingTool(spec))
        .tool(TestTool::lookup())
        .build()
        .unwrap();
    let (runtime, journal) = runtime();
    let outcome = runtime.run(&agent, "copy a").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded);

    let events = events(&journal, outcome.run_id).await;
    let reports: Vec<(usize, &str, &ToolReport)> = events
        .iter()
        .enumerate()
        .filter_map(|(at, e)| match e {
            EventKind::ToolCallReported { tool, report, .. } => Some((at, tool.as_str(), report)),
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), 3, "{events:?}");
    assert!(reports.iter().all(|(_, tool, _)| *tool == "copy"));
    assert!(matches!(reports[1].2, ToolReport::Log { level: LogLevel::Warning, .. }));
    let executed = events.iter().position(|e| matches!(e, EventKind::ToolCallExecuted { tool, .. } if tool == "copy"));
    assert!(reports.iter().all(|(at, _, _)| Some(*at) < executed), "{events:?}");
    // The model sees each call's result, nothing of the reports.
    let transcript = model.transcripts().last().cloned().unwrap();
    let seen = tool_messages(&transcript).join(" ");
    assert!(seen.contains("copied") && !seen.contains("disk nearly full"), "{seen}");
    let record = RunRecord::from_events(&journal.events(outcome.run_id).await.unwrap()).unwrap();
    let copy = record.steps[0].calls.iter().find(|c| c.tool == "copy").unwrap();
    assert_eq!(copy.reports.len(), 3);
}
