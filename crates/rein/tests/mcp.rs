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

/// Queued runs of an agent with MCP servers, driven by a worker: each run
/// gets the servers' tools, and the servers are started once for the
/// agent's version, not once per run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_starts_an_agent_versions_mcp_servers_once_for_all_its_runs() {
    use rein::worker::{Worker, WorkerConfig};
    use rein::{Operator, QueuedRun, RunId, Store, TenantId};

    let Some(modules) = node_modules() else { return };
    // Echo what the user said, then answer with the tool's result.
    let model = MockOpenAi::start(|body| {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let said = messages.iter().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or("");
        MockReply::ok(match messages.iter().find(|m| m["role"] == "tool") {
            None => completion_tool_calls(&[("ev_echo", json!({ "message": said }))]),
            Some(result) => completion_text(&format!("Done: {}", result["content"].as_str().unwrap_or_default())),
        })
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let starts = dir.path().join("starts");
    let path = dir.path().join("agent.toml");
    // The server is started through a shell that counts its starts.
    let command =
        format!("echo started >> '{}'; exec node '{}' stdio", starts.display(), script(&modules, "server-everything"));
    let toml = agent_toml(&model.base_url, "UNUSED", "")
        .replace(r#"command = "node""#, r#"command = "sh""#)
        .replace(r#"args = ["UNUSED", "stdio"]"#, &format!("args = [\"-c\", {}]", toml_string(&command)));
    std::fs::write(&path, toml).unwrap();
    let (definition, _) = rein::load_definition(&path, &Overrides::default()).unwrap();

    let store: Arc<dyn Store> = Arc::new(rein::store::SqliteJournal::open(dir.path().join("rein.db")).unwrap());
    let operator = Arc::new(Operator::new(store.clone(), reqwest::Client::new()));
    operator.register(&TenantId::default(), &definition).await.unwrap();
    let runs: Vec<RunId> = (0..3).map(|_| RunId::new()).collect();
    for (n, run) in runs.iter().enumerate() {
        let queued = QueuedRun {
            run_id: *run,
            tenant: TenantId::default(),
            agent: definition.spec.name.clone(),
            agent_version: definition.spec.version(),
            input: format!("message {n}"),
            enqueued_at_ms: rein::now_ms(),
        };
        store.enqueue(&queued).await.unwrap();
    }
    let config = WorkerConfig {
        concurrency: 2,
        lease_ttl: std::time::Duration::from_secs(10),
        drain_timeout: std::time::Duration::from_secs(10),
    };
    let watched = store.clone();
    let all_done = {
        let runs = runs.clone();
        async move {
            loop {
                let mut done = 0;
                for run in &runs {
                    if watched.summary(*run).await.unwrap().is_some_and(|s| s.status.is_terminal()) {
                        done += 1;
                    }
                }
                if done == runs.len() {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    };
    let worker = Worker::new(operator.clone(), operator.runtime(), config);
    let report = tokio::time::timeout(std::time::Duration::from_secs(60), worker.run(all_done)).await.unwrap();
    assert_eq!(report.completed, 3, "{report:?}");

    for (n, run) in runs.iter().enumerate() {
        let events = store.events(*run).await.unwrap();
        let record = RunRecord::from_events(&events).unwrap();
        assert_eq!(record.status, RunStatus::Succeeded, "{record:?}");
        let output = record.finished.as_ref().unwrap().output.clone().unwrap_or_default();
        assert!(output.starts_with("Done:") && output.contains(&format!("Echo: message {n}")), "{output}");
    }
    let started = std::fs::read_to_string(&starts).unwrap();
    assert_eq!(started.lines().count(), 1, "the server was started {} times", started.lines().count());
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}
