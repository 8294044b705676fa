//! A run's state is a fold over its events: replaying a journal through
//! `apply` rebuilds what the live machine holds, at any point.

use rein_core::{AgentPlan, Effect, RunMachine, ToolResult};
use rein_types::{
    AgentSpec, FinishReason, Limits, ModelRef, ModelResponse, ModelSettings, RiskTier, RunId, StopConditions, TenantId,
    ToolCall, ToolCallId, ToolName, ToolOutcome, ToolSpec, Usage,
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
