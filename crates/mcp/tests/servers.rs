//! Against the reference servers from npm (`@modelcontextprotocol/server-everything`
//! and `server-filesystem`), which `scripts/test.sh` installs into
//! `.ci/node` and names in `REIN_MCP_NODE_MODULES`.

use rein_mcp::{McpError, McpServerDecl, McpToolPolicy, McpToolset, McpTransport, discover};
use rein_testkit::mcp_servers::{node_modules, script};
use rein_types::{Approval, IdempotencyKey, RiskTier, RunId, Tool, ToolContext, ToolOutcome, ToolReport, ToolReporter};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn stdio(name: &str, command: &str, args: Vec<String>) -> McpServerDecl {
    McpServerDecl {
        name: name.into(),
        transport: McpTransport::Stdio { command: command.into(), args, env: BTreeMap::new(), cwd: None },
        prefix: String::new(),
        allow: vec![],
        deny: vec![],
        timeout_ms: 20_000,
        max_result_bytes: 8_000,
        tools: BTreeMap::new(),
    }
}

fn everything(modules: &std::path::Path) -> McpServerDecl {
    stdio("everything", "node", vec![script(modules, "server-everything"), "stdio".into()])
}

fn context() -> ToolContext {
    let run_id = RunId::new();
    ToolContext::new(run_id, 1, "c1", IdempotencyKey::for_call(run_id, 1, 0))
}

async fn call(set: &McpToolset, name: &str, args: Value) -> ToolOutcome {
    call_in(set, name, args, &context()).await
}

async fn call_in(set: &McpToolset, name: &str, args: Value, context: &ToolContext) -> ToolOutcome {
    let tool = set.tools.iter().find(|t| t.spec().name.as_str() == name).unwrap_or_else(|| panic!("no tool {name}"));
    tool.call(args, context).await
}

/// A context whose reports are collected.
fn listening() -> (Arc<Mutex<Vec<ToolReport>>>, ToolContext) {
    let reports = Arc::new(Mutex::new(Vec::new()));
    let sink = reports.clone();
    let context = context().with_reporter(ToolReporter::new(move |report| sink.lock().unwrap().push(report)));
    (reports, context)
}

fn error_message(outcome: &ToolOutcome) -> (String, bool) {
    match outcome {
        ToolOutcome::Error { message, retryable, .. } => (message.clone(), *retryable),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn everything_over_stdio_lists_its_tools_and_echoes() {
    let Some(modules) = node_modules() else { return };
    let set = discover(everything(&modules), reqwest::Client::new()).await.unwrap();
    let names: Vec<&str> = set.tools.iter().map(|t| t.spec().name.as_str()).collect();
    assert!(names.contains(&"echo") && names.contains(&"get-sum"), "{names:?}");
    let echo = set.tools.iter().find(|t| t.spec().name.as_str() == "echo").unwrap().spec();
    assert_eq!(echo.description, "Echoes back the input string");
    assert_eq!(echo.parameters["properties"]["message"]["type"], "string");
    // The server marks echo read-only; rein does not take its word for it.
    assert_eq!((echo.risk, echo.approval), (RiskTier::Write, Approval::Never));

    assert_eq!(call(&set, "echo", json!({"message": "hello"})).await, ToolOutcome::ok(json!("Echo: hello")));
    let sum = call(&set, "get-sum", json!({"a": 2, "b": 40})).await;
    assert!(sum.to_observation().contains("42"), "{sum:?}");
    set.server.shutdown().await;
}

#[tokio::test]
async fn prefix_allow_deny_and_policies_shape_what_the_agent_sees() {
    let Some(modules) = node_modules() else { return };
    let mut decl = everything(&modules);
    decl.prefix = "ev_".into();
    decl.allow = vec!["echo".into(), "get-sum".into(), "get-env".into()];
    decl.deny = vec!["get-env".into()];
    decl.tools.insert(
        "get-sum".into(),
        McpToolPolicy { risk: Some(RiskTier::Read), max_calls: Some(3), ..McpToolPolicy::default() },
    );
    decl.tools.insert("echo".into(), McpToolPolicy { risk: Some(RiskTier::Dangerous), ..McpToolPolicy::default() });
    let set = discover(decl.clone(), reqwest::Client::new()).await.unwrap();
    let specs: Vec<_> = set.tools.iter().map(|t| t.spec().clone()).collect();
    let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"ev_echo") && names.contains(&"ev_get-sum"), "{names:?}");
    let sum = specs.iter().find(|s| s.name.as_str() == "ev_get-sum").unwrap();
    assert_eq!(
        (sum.risk, sum.approval, sum.idempotent, sum.max_calls),
        (RiskTier::Read, Approval::Never, true, Some(3))
    );
    let echo = specs.iter().find(|s| s.name.as_str() == "ev_echo").unwrap();
    assert_eq!((echo.risk, echo.approval), (RiskTier::Dangerous, Approval::Required));
    // The prefixed name is rein's; the server is called by its own name.
    assert_eq!(call(&set, "ev_echo", json!({"message": "x"})).await, ToolOutcome::ok(json!("Echo: x")));
    set.server.shutdown().await;

    // A misspelt name in the lists is an error, not a silent no-op.
    decl.allow = vec!["ecko".into()];
    decl.deny.clear();
    decl.tools.clear();
    match discover(decl, reqwest::Client::new()).await {
        Err(McpError::UnknownTool { tool, offered, .. }) => {
            assert_eq!(tool, "ecko");
            assert!(offered.contains("echo"), "{offered}");
        }
        other => panic!("expected UnknownTool, got {:?}", other.err()),
    }
}

#[tokio::test]
async fn mcp_errors_reach_the_model_as_observations() {
    let Some(modules) = node_modules() else { return };
    let set = discover(everything(&modules), reqwest::Client::new()).await.unwrap();
    // Arguments the server rejects.
    let (message, retryable) = error_message(&call(&set, "echo", json!({"message": 7})).await);
    assert!(message.contains("echo"), "{message}");
    assert!(!retryable);
    // A call that outlives the time-out.
    let mut slow = everything(&modules);
    slow.timeout_ms = 1_500;
    let slow = discover(slow, reqwest::Client::new()).await.unwrap();
    let started = std::time::Instant::now();
    let outcome = call(&slow, "trigger-long-running-operation", json!({"duration": 10, "steps": 2})).await;
    let (message, retryable) = error_message(&outcome);
    assert!(message.contains("no answer within 1.5 s"), "{message}");
    assert!(retryable);
    assert!(started.elapsed() < Duration::from_secs(5));
    set.server.shutdown().await;
    slow.server.shutdown().await;
}

#[tokio::test]
async fn filesystem_server_reads_inside_its_directory_only() {
    let Some(modules) = node_modules() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), "the launch is on Tuesday").unwrap();
    let outside = tempfile::NamedTempFile::new().unwrap();
    let mut decl = stdio("fs", "node", vec![script(&modules, "server-filesystem"), dir.path().display().to_string()]);
    decl.prefix = "fs_".into();
    decl.allow = vec!["read_text_file".into(), "list_directory".into()];
    decl.tools.insert("read_text_file".into(), McpToolPolicy { risk: Some(RiskTier::Read), ..Default::default() });
    let set = discover(decl, reqwest::Client::new()).await.unwrap();
    let mut names: Vec<&str> = set.tools.iter().map(|t| t.spec().name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["fs_list_directory", "fs_read_text_file"]);

    let path = dir.path().join("notes.txt").display().to_string();
    let read = call(&set, "fs_read_text_file", json!({"path": path})).await;
    assert!(read.is_ok(), "{read:?}");
    assert!(read.to_observation().contains("the launch is on Tuesday"), "{read:?}");
    let listing = call(&set, "fs_list_directory", json!({"path": dir.path().display().to_string()})).await;
    assert!(listing.to_observation().contains("notes.txt"), "{listing:?}");

    let denied = call(&set, "fs_read_text_file", json!({"path": outside.path().display().to_string()})).await;
    let (message, _) = error_message(&denied);
    assert!(message.to_lowercase().contains("denied") || message.contains("outside"), "{message}");
    set.server.shutdown().await;
}

fn process_alive(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

#[tokio::test]
async fn a_crashed_server_is_restarted_by_the_next_call() {
    let Some(modules) = node_modules() else { return };
    let set = discover(everything(&modules), reqwest::Client::new()).await.unwrap();
    let first = set.server.pid().await.expect("a stdio server has a pid");
    std::process::Command::new("kill").args(["-9", &first.to_string()]).status().unwrap();
    wait_until("the death is noticed", async || !set.server.is_connected().await).await;

    assert_eq!(call(&set, "echo", json!({"message": "back"})).await, ToolOutcome::ok(json!("Echo: back")));
    let second = set.server.pid().await.expect("restarted");
    assert_ne!(first, second);
    set.server.shutdown().await;
    wait_until("the restarted child exits", async || !process_alive(second)).await;
}

#[tokio::test]
async fn calls_during_an_outage_are_retryable_errors_until_the_backoff_allows_a_restart() {
    let Some(modules) = node_modules() else { return };
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("up");
    std::fs::write(&gate, "").unwrap();
    // Starts the server only while the gate file exists: removing it makes
    // every restart fail, as a broken install would.
    let command =
        format!("test -f '{}' && exec node '{}' stdio", gate.display(), script(&modules, "server-everything"));
    let set = discover(stdio("gated", "sh", vec!["-c".into(), command]), reqwest::Client::new()).await.unwrap();

    std::fs::remove_file(&gate).unwrap();
    let pid = set.server.pid().await.unwrap();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    wait_until("the death is noticed", async || !set.server.is_connected().await).await;

    let (message, retryable) = error_message(&call(&set, "echo", json!({"message": "x"})).await);
    assert!(retryable, "{message}");
    assert!(message.contains("unavailable") && message.contains("next restart attempt in"), "{message}");
    // Within the backoff no restart is tried: the answer is immediate.
    let (message, _) = error_message(&call(&set, "echo", json!({"message": "x"})).await);
    assert!(message.contains("unavailable"), "{message}");

    std::fs::write(&gate, "").unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(call(&set, "echo", json!({"message": "up"})).await, ToolOutcome::ok(json!("Echo: up")));
    set.server.shutdown().await;
}

#[tokio::test]
async fn dropping_the_server_kills_its_child() {
    let Some(modules) = node_modules() else { return };
    let set = discover(everything(&modules), reqwest::Client::new()).await.unwrap();
    let pid = set.server.pid().await.unwrap();
    assert!(process_alive(pid));
    drop(set);
    wait_until("the child is gone", async || !process_alive(pid)).await;
}

#[tokio::test]
async fn everything_over_streamable_http() {
    let Some(modules) = node_modules() else { return };
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut child = tokio::process::Command::new("node")
        .arg(script(&modules, "server-everything"))
        .arg("streamableHttp")
        .env("PORT", port.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    wait_until("the HTTP server listens", async || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()).await;

    let mut headers = BTreeMap::new();
    // Secrets come from the environment; PATH stands in for one here.
    headers.insert("X-Test".to_string(), "${PATH}".to_string());
    let mut decl = stdio("http", "unused", vec![]);
    decl.transport = McpTransport::StreamableHttp { url: format!("http://127.0.0.1:{port}/mcp"), headers };
    decl.allow = vec!["echo".into()];
    let set = discover(decl, reqwest::Client::new()).await.unwrap();
    assert_eq!(set.tools.len(), 1);
    assert_eq!(call(&set, "echo", json!({"message": "over http"})).await, ToolOutcome::ok(json!("Echo: over http")));
    set.server.shutdown().await;
    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_server_dying_mid_call_is_an_observation_that_says_the_call_may_have_run() {
    let Some(modules) = node_modules() else { return };
    let set = std::sync::Arc::new(discover(everything(&modules), reqwest::Client::new()).await.unwrap());
    let pid = set.server.pid().await.unwrap();
    let calling = set.clone();
    let call = tokio::spawn(async move {
        call(&calling, "trigger-long-running-operation", json!({"duration": 10, "steps": 2})).await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    let (message, retryable) = error_message(&call.await.unwrap());
    assert!(message.contains("connection broke") && message.contains("may or may not"), "{message}");
    assert!(retryable);
    assert_eq!(call_echo(&set).await, ToolOutcome::ok(json!("Echo: again")));
    set.server.shutdown().await;
}

async fn call_echo(set: &McpToolset) -> ToolOutcome {
    call(set, "echo", json!({"message": "again"})).await
}

#[tokio::test]
async fn progress_and_log_notifications_reach_the_calls_reporter() {
    let Some(modules) = node_modules() else { return };
    let set = discover(everything(&modules), reqwest::Client::new()).await.unwrap();

    // The call carries a progress token; the server reports each step on it.
    let (reports, context) = listening();
    let args = json!({"duration": 0.4, "steps": 4});
    let outcome = call_in(&set, "trigger-long-running-operation", args.clone(), &context).await;
    assert!(outcome.to_observation().contains("Long running operation completed"), "{outcome:?}");
    let progress: Vec<(f64, Option<f64>)> = reports
        .lock()
        .unwrap()
        .iter()
        .map(|r| match r {
            ToolReport::Progress { progress, total, .. } => (*progress, *total),
            other => panic!("expected progress, got {other:?}"),
        })
        .collect();
    // Every step, the last one included: it is sent just before the result.
    assert_eq!(progress, [(1.0, Some(4.0)), (2.0, Some(4.0)), (3.0, Some(4.0)), (4.0, Some(4.0))]);

    // A log message the server sends while a call runs goes to that call.
    let (reports, context) = listening();
    let outcome = call_in(&set, "toggle-simulated-logging", json!({}), &context).await;
    assert!(outcome.to_observation().contains("Started simulated"), "{outcome:?}");
    let logs = reports.lock().unwrap().clone();
    assert_eq!(logs.len(), 1, "{logs:?}");
    match &logs[0] {
        // "Warning-level message", at level warning (the level is random).
        ToolReport::Log { level, data, .. } => {
            assert!(data.as_str().unwrap_or_default().to_lowercase().starts_with(level.as_str()), "{level:?} {data}")
        }
        other => panic!("expected a log message, got {other:?}"),
    }

    // Reports of a call that is over go nowhere: the next call's reporter
    // sees only its own.
    let (reports, context) = listening();
    assert_eq!(call_in(&set, "echo", json!({"message": "x"}), &context).await, ToolOutcome::ok(json!("Echo: x")));
    assert!(reports.lock().unwrap().iter().all(|r| matches!(r, ToolReport::Log { .. })));
    set.server.shutdown().await;
}

#[tokio::test]
async fn a_tool_the_server_withdraws_is_an_error_observation() {
    let Some(modules) = node_modules() else { return };
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/changing-tools.cjs");
    let decl = stdio("changing", "node", vec![fixture.into(), modules.display().to_string()]);
    let set = discover(decl, reqwest::Client::new()).await.unwrap();
    let mut names: Vec<&str> = set.tools.iter().map(|t| t.spec().name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["doomed", "hang", "retire"]);
    assert_eq!(call(&set, "doomed", json!({})).await, ToolOutcome::ok(json!("still here")));

    // `retire` removes `doomed`; the server announces the change, and the
    // list is read again before the next call.
    assert_eq!(call(&set, "retire", json!({})).await, ToolOutcome::ok(json!("retired doomed")));
    let (message, retryable) = error_message(&call(&set, "doomed", json!({})).await);
    assert!(message.contains("no longer offers the tool `doomed`"), "{message}");
    assert!(!retryable);
    let offered: Vec<String> = set.server.offered().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(offered, ["retire", "hang"]);
    // The agent's tool set is what it was built with.
    assert_eq!(set.tools.len(), 3);
    set.server.shutdown().await;
}

#[tokio::test]
async fn a_restarted_server_is_asked_for_its_tools_again() {
    let Some(modules) = node_modules() else { return };
    let dir = tempfile::tempdir().unwrap();
    let switch = dir.path().join("filesystem");
    // The everything server at first; once the switch file exists, what
    // starts after a crash is the filesystem server, without `echo`.
    let command = format!(
        "if [ -f '{switch}' ]; then exec node '{fs}' '{dir}'; else exec node '{everything}' stdio; fi",
        switch = switch.display(),
        fs = script(&modules, "server-filesystem"),
        dir = dir.path().display(),
        everything = script(&modules, "server-everything"),
    );
    let mut decl = stdio("switching", "sh", vec!["-c".into(), command]);
    decl.allow = vec!["echo".into()];
    let set = discover(decl, reqwest::Client::new()).await.unwrap();
    assert_eq!(call(&set, "echo", json!({"message": "one"})).await, ToolOutcome::ok(json!("Echo: one")));

    std::fs::write(&switch, "").unwrap();
    let pid = set.server.pid().await.unwrap();
    std::process::Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap();
    wait_until("the death is noticed", async || !set.server.is_connected().await).await;

    let (message, retryable) = error_message(&call(&set, "echo", json!({"message": "two"})).await);
    assert!(message.contains("no longer offers the tool `echo`"), "{message}");
    assert!(!retryable);
    let offered: Vec<String> = set.server.offered().unwrap().into_iter().map(|t| t.name).collect();
    assert!(offered.contains(&"read_text_file".to_string()) && !offered.contains(&"echo".to_string()), "{offered:?}");
    set.server.shutdown().await;
}

#[tokio::test]
async fn a_call_given_up_on_is_cancelled_at_the_server() {
    let Some(modules) = node_modules() else { return };
    let fixture = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/changing-tools.cjs");
    let set = discover(
        stdio("changing", "node", vec![fixture.into(), modules.display().to_string()]),
        reqwest::Client::new(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let note = dir.path().join("note");
    // The run's own time-out drops the call, as the runtime does.
    let call = call(&set, "hang", json!({"path": note.display().to_string()}));
    assert!(tokio::time::timeout(Duration::from_millis(500), call).await.is_err());
    wait_until("the server hears of the cancellation", async || note.is_file()).await;
    assert_eq!(std::fs::read_to_string(&note).unwrap(), "cancelled");
    set.server.shutdown().await;
}
