//! A run's state is a fold over its events: replaying a journal through
//! `apply` rebuilds what the live machine holds, at any point.

use rein_core::{AgentPlan, Effect, MAX_REPORTS_PER_CALL, RunMachine, ToolResult};
use rein_types::{
    AgentSpec, EventKind, FinishReason, Limits, LogLevel, ModelRef, ModelResponse, ModelSettings, RiskTier, RunId,
    StopConditions, TenantId, ToolCall, ToolCallId, ToolName, ToolOutcome, ToolReport, ToolSpec, Usage,
};
use serde_json::json;
use std::sync::Arc;

fn plan() -> Arc<AgentPlan> {
    let tool = |name: &str, risk| {
        ToolSpec::new(
            ToolName::new(name).unwrap(),
            "test tool",
            json!({"type": "object", "properties": {"key": {"type": "string"}}, "required": ["key"]}),
            risk,
        )
    };
    Arc::new(
        AgentPlan::new(AgentSpec {
            name: "replay".into(),
            description: String::new(),
            model: ModelRef::new("scripted", "m"),
            settings: ModelSettings::default(),
            system_prompt: "sys".into(),
            tools: vec![tool("lookup", RiskTier::Read), tool("send", RiskTier::Dangerous)],
            limits: Limits::default(),
            stop: StopConditions::default(),
            price: None,
            routes: Default::default(),
            output_schema: None,
            extra: serde_json::Value::Null,
        })
        .unwrap(),
    )
}

fn calls(list: &[(&str, &str, &str)]) -> ModelResponse {
    ModelResponse {
        text: Some("checking".into()),
        tool_calls: list
            .iter()
            .map(|(id, name, args)| ToolCall {
                id: ToolCallId((*id).into()),
                name: (*name).into(),
                arguments: (*args).into(),
            })
            .collect(),
        usage: Usage { input_tokens: 50, output_tokens: 5, cached_input_tokens: 0 },
        finish_reason: FinishReason::ToolCalls,
        served_by: "m".into(),
    }
}

#[test]
fn replaying_the_journal_rebuilds_the_state_at_every_point() {
    let plan = plan();
    let run = RunId::new();
    let (mut live, first) = RunMachine::start(plan.clone(), run, TenantId::default(), "go".into(), 1_000);
    let mut journal = first.events;
    let check = |live: &RunMachine, journal: &[rein_types::Event]| {
        let replayed = RunMachine::replay(plan.clone(), run, journal);
        assert_eq!(replayed.messages(), live.messages());
        assert_eq!(replayed.step(), live.step());
        assert_eq!(replayed.usage(), live.usage());
        let ids = |m: &RunMachine| m.pending_calls().into_iter().map(|c| (c.call_id, c.arguments)).collect::<Vec<_>>();
        assert_eq!(ids(&replayed), ids(live));
        assert_eq!(replayed.outcome(), live.outcome());
    };
    check(&live, &journal);

    // A read call and a dangerous call in one turn: the dangerous one waits.
    let step =
        live.on_model_response(calls(&[("a", "lookup", r#"{"key":"x"}"#), ("b", "send", r#"{"key":"y"}"#)]), 5, 1_010);
    assert!(matches!(step.effect, Effect::RequestApprovals(_)));
    journal.extend(step.events);
    check(&live, &journal);
    assert_eq!(RunMachine::replay(plan.clone(), run, &journal).pending_calls().len(), 2, "both calls survive a crash");

    let step = live.on_approvals(
        vec![rein_core::ApprovalDecision::Edit {
            call_id: "b".into(),
            by: "ana".into(),
            arguments: json!({"key": "z"}),
        }],
        1_020,
    );
    let Effect::ExecuteTools(invocations) = &step.effect else { panic!("{:?}", step.effect) };
    assert_eq!(invocations[1].arguments, json!({"key": "z"}), "the edit is applied");
    journal.extend(step.events);
    check(&live, &journal);

    let results = invocations
        .iter()
        .map(|c| ToolResult { call_id: c.call_id.clone(), outcome: ToolOutcome::ok(json!("done")), latency_ms: 1 })
        .collect();
    let step = live.on_tool_results(results, 1_030);
    journal.extend(step.events);
    check(&live, &journal);

    let done = ModelResponse {
        text: Some("All done.".into()),
        tool_calls: vec![],
        usage: Usage { input_tokens: 80, output_tokens: 5, cached_input_tokens: 0 },
        finish_reason: FinishReason::Stop,
        served_by: "m".into(),
    };
    let step = live.on_model_response(done, 5, 1_040);
    assert!(matches!(step.effect, Effect::Finish(_)));
    journal.extend(step.events);
    check(&live, &journal);
    let seqs: Vec<u64> = journal.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..journal.len() as u64).collect::<Vec<_>>(), "seq has no gaps");
}

#[test]
fn reports_of_running_calls_are_journaled_capped_and_change_nothing_else() {
    let plan = plan();
    let run = RunId::new();
    let (mut live, first) = RunMachine::start(plan.clone(), run, TenantId::default(), "go".into(), 1_000);
    let mut journal = first.events;
    let step = live.on_model_response(calls(&[("a", "lookup", r#"{"key":"x"}"#)]), 5, 1_010);
    assert!(matches!(step.effect, Effect::ExecuteTools(_)));
    journal.extend(step.events);
    let before = RunMachine::replay(plan.clone(), run, &journal);

    let progress =
        |n: u32| ToolReport::Progress { progress: n.into(), total: Some(100.0), message: Some("x".repeat(5_000)) };
    // No such call is running: nothing to journal.
    assert!(live.on_tool_report("zz", progress(1), 1_011).is_none());
    for n in 0..MAX_REPORTS_PER_CALL + 10 {
        if let Some(event) = live.on_tool_report("a", progress(n), 1_012) {
            journal.push(event);
        }
    }
    let reports: Vec<&ToolReport> = journal
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::ToolCallReported { call_id, tool, report, .. } if call_id == "a" && tool == "lookup" => {
                Some(report)
            }
            _ => None,
        })
        .collect();
    assert_eq!(reports.len(), MAX_REPORTS_PER_CALL as usize);
    let ToolReport::Progress { message: Some(message), .. } = reports[0] else { panic!("{:?}", reports[0]) };
    assert_eq!(message.len(), 2_000, "long texts are cut");
    assert!(
        matches!(reports.last(), Some(ToolReport::Log { level: LogLevel::Warning, data, .. })
            if data.as_str().unwrap_or_default().contains("not journaled")),
        "the last says the rest were dropped: {:?}",
        reports.last()
    );

    // Replayed, the reports change nothing the run decides on, and the cap
    // holds after a crash too.
    let mut replayed = RunMachine::replay(plan.clone(), run, &journal);
    assert_eq!(replayed.messages(), before.messages());
    assert_eq!(replayed.pending_calls().len(), 1);
    assert!(replayed.on_tool_report("a", progress(1), 1_013).is_none());
    let step = live.on_tool_results(
        vec![ToolResult { call_id: "a".into(), outcome: ToolOutcome::ok(json!("found")), latency_ms: 3 }],
        1_020,
    );
    journal.extend(step.events);
    let seqs: Vec<u64> = journal.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..journal.len() as u64).collect::<Vec<_>>(), "seq has no gaps");
    // Once the call is over, its reports have nowhere to go.
    assert!(live.on_tool_report("a", progress(1), 1_021).is_none());
}
