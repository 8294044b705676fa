//! An agent file with `[[mcp_servers]]`, run end to end: the reference
//! server's tools are discovered when the agent is built, sent to the
//! (mock) model with their schemas, validated, called, and their results
//! observed; the run is recorded under the declarations' version.

use rein::{EventKind, Journal, Overrides, RunRecord, RunStatus, Runtime, ToolReport, load_agent};
use rein_testkit::journal::MemoryJournal;
use rein_testkit::mcp_servers::{node_modules, script};
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text, completion_tool_calls};
use serde_json::{Value, json};
use std::sync::Arc;

fn agent_toml(model_url: &str, server: &str, stop: &str) -> String {
    format!(
        r#"
name = "mcp-echo"
system_prompt = "Repeat what the user says with the echo tool, then answer with its result."
{stop}

[model]
id = "ollama:mock-model"
base_url = "{model_url}"

[[mcp_servers]]
name = "everything"
command = "node"
args = ["{server}", "stdio"]
prefix = "ev_"
allow = ["echo", "get-sum", "trigger-long-running-operation"]
timeout = "20s"

[mcp_servers.tools.echo]
risk = "read"
"#
    )
}

/// The tool result messages of a recorded model request.
fn tool_results(request: &Value) -> Vec<String> {
    request["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "tool")
        .map(|m| m["content"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn an_agent_calls_an_mcp_tool_end_to_end() {
    let Some(modules) = node_modules() else { return };
    let model = MockOpenAi::scripted(vec![
        // The server's schema says `message` is a string: rein refuses this
        // call before it reaches the server.
        MockReply::ok(completion_tool_calls(&[("ev_echo", json!({ "message": 7 }))])),
        MockReply::ok(completion_tool_calls(&[("ev_echo", json!({ "message": "hello" }))])),
        MockReply::ok(completion_text("It said: Echo: hello")),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, agent_toml(&model.base_url, &script(&modules, "server-everything"), "")).unwrap();

    let client = reqwest::Client::new();
    let loaded = load_agent(&path, &Overrides::default(), &client).await.unwrap();
    let names: Vec<&str> = loaded.agent.spec().tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["ev_echo", "ev_get-sum", "ev_trigger-long-running-operation", "handoff_to_human"]);
    // Discovered tools are in the agent, not in its version.
    assert_eq!(loaded.agent.version(), &loaded.definition.spec.version());
    assert!(loaded.definition.spec.tools.iter().all(|t| !t.name.as_str().starts_with("ev_")));

    let runtime = Runtime::new(Arc::new(MemoryJournal::new()));
    let outcome = runtime.run(&loaded.agent, "Say hello").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded, "{}", outcome.explanation);
    assert_eq!(outcome.output.as_deref(), Some("It said: Echo: hello"));
    assert_eq!(&outcome.agent_version, loaded.agent.version());

    let requests = model.requests();
    assert_eq!(requests.len(), 3);
    let sent: Vec<&str> =
        requests[0]["tools"].as_array().unwrap().iter().map(|t| t["function"]["name"].as_str().unwrap()).collect();
    assert!(sent.contains(&"ev_echo") && sent.contains(&"ev_get-sum"), "{sent:?}");
    let echo = requests[0]["tools"].as_array().unwrap().iter().find(|t| t["function"]["name"] == "ev_echo").unwrap();
    assert_eq!(echo["function"]["description"], "Echoes back the input string");
    let rejected = tool_results(&requests[1]);
    assert!(rejected.iter().any(|r| r.contains("message")), "{rejected:?}");
    let answered = tool_results(&requests[2]);
    assert!(answered.iter().any(|r| r.contains("Echo: hello")), "{answered:?}");
}

#[tokio::test]
async fn stop_after_tools_may_name_an_mcp_tool_but_not_a_missing_one() {
    let Some(modules) = node_modules() else { return };
    let model = MockOpenAi::scripted(vec![MockReply::ok(completion_tool_calls(&[(
        "ev_echo",
        json!({ "message": "stop here" }),
    )]))])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let server = script(&modules, "server-everything");
    let client = reqwest::Client::new();

    std::fs::write(&path, agent_toml(&model.base_url, &server, "stop = { after_tools = [\"ev_echo\"] }")).unwrap();
    let loaded = load_agent(&path, &Overrides::default(), &client).await.unwrap();
    let outcome = Runtime::new(Arc::new(MemoryJournal::new())).run(&loaded.agent, "go").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded, "{}", outcome.explanation);
    assert!(outcome.output.unwrap_or_default().contains("Echo: stop here"));

    std::fs::write(&path, agent_toml(&model.base_url, &server, "stop = { after_tools = [\"ev_nope\"] }")).unwrap();
    let error = load_agent(&path, &Overrides::default(), &client).await.err().expect("unknown stop tool");
    assert!(error.to_string().contains("ev_nope"), "{error}");
}

#[tokio::test]
async fn progress_an_mcp_server_reports_during_a_call_is_journaled_before_the_result() {
    let Some(modules) = node_modules() else { return };
    let model = MockOpenAi::scripted(vec![
        MockReply::ok(completion_tool_calls(&[(
            "ev_trigger-long-running-operation",
            json!({ "duration": 0.3, "steps": 3 }),
        )])),
        MockReply::ok(completion_text("Done.")),
    ])
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(&path, agent_toml(&model.base_url, &script(&modules, "server-everything"), "")).unwrap();
    let loaded = load_agent(&path, &Overrides::default(), &reqwest::Client::new()).await.unwrap();
    let journal = Arc::new(MemoryJournal::new());
    let outcome = Runtime::new(journal.clone()).run(&loaded.agent, "Run the long operation").await.unwrap();
    assert_eq!(outcome.status, RunStatus::Succeeded, "{}", outcome.explanation);

    let events = journal.events(outcome.run_id).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.type_name()).collect();
    let requested = kinds.iter().position(|k| *k == "tool_call_requested").unwrap();
    let executed = kinds.iter().position(|k| *k == "tool_call_executed").unwrap();
    assert_eq!(kinds[requested + 1..executed], ["tool_call_reported"; 3], "{kinds:?}");
    for (n, event) in events[requested + 1..executed].iter().enumerate() {
        let EventKind::ToolCallReported { step, tool, report, .. } = &event.kind else { unreachable!() };
        assert_eq!((*step, tool.as_str()), (1, "ev_trigger-long-running-operation"));
        assert_eq!(report, &ToolReport::Progress { progress: (n + 1) as f64, total: Some(3.0), message: None });
    }
    // The model never sees reports: its second request has the result only.
    let answered = tool_results(&model.requests()[1]);
    assert_eq!(answered.len(), 1);
    assert!(answered[0].contains("Long running operation completed"), "{answered:?}");
    // The step tree shows them under their call.
    let record = RunRecord::from_events(&events).unwrap();
    assert_eq!(record.steps[0].calls[0].reports.len(), 3);
    assert_eq!(rein::report_line(&record.steps[0].calls[0].reports[2]), "progress 3/3");
}
