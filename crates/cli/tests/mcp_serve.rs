//! `rein mcp serve` driven by an independent client: the official Python
//! MCP SDK (`tests/mcp/client.py`; scripts/test.sh installs the pinned
//! package into .ci/py), over stdio and over Streamable HTTP, with both of
//! the SDK's ways of opening a session. The agents' model is the mock
//! OpenAI server; the runs land in the store like any other.

use rein_testkit::mcp_servers::python_client;
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text, completion_tool_calls};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

const REIN: &str = env!("CARGO_BIN_EXE_rein");
const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/client.py");

/// Answers by agent: `answerer` says where Paris is; `mailer` wants to send
/// an email, which needs approval.
async fn model() -> MockOpenAi {
    MockOpenAi::start(|body| {
        let system = body["messages"][0]["content"].as_str().unwrap_or_default();
        MockReply::ok(if system.contains("MAILER") {
            completion_tool_calls(&[("send_email", json!({"to": "team@example.com", "body": "Hello"}))])
        } else {
            completion_text("Paris is the capital of France.")
        })
    })
    .await
    .unwrap()
}

fn agents(dir: &Path, model_url: &str) -> (PathBuf, PathBuf) {
    let answerer = dir.join("answerer.toml");
    std::fs::write(
        &answerer,
        format!(
            r#"name = "answerer"
description = "Answers geography questions."
system_prompt = "ANSWERER: answer briefly."

[model]
id = "openai-compatible:mock"
base_url = "{model_url}"
api_key_env = "MOCK_KEY"
"#
        ),
    )
    .unwrap();
    let mailer = dir.join("mailer.toml");
    std::fs::write(
        &mailer,
        format!(
            r#"name = "mailer"
description = "Sends emails for the team."
system_prompt = "MAILER: send what you are asked to."

[model]
id = "openai-compatible:mock"
base_url = "{model_url}"
api_key_env = "MOCK_KEY"

[[tools]]
name = "send_email"
kind = "http"
description = "Send an email."
risk = "dangerous"
method = "POST"
url = "http://127.0.0.1:9/never-called"
body = {{ to = "{{to}}", body = "{{body}}" }}
parameters = {{ type = "object", properties = {{ to = {{ type = "string" }}, body = {{ type = "string" }} }}, required = ["to", "body"], additionalProperties = false }}
"#
        ),
    )
    .unwrap();
    (answerer, mailer)
}

/// Runs the Python client with `args` and the calls, and returns its report.
async fn client(python: &Path, args: &[&str], calls: &Value) -> Value {
    let out = tokio::process::Command::new(python)
        .arg(CLIENT)
        .args(args)
        .args(["--calls", &calls.to_string()])
        .env("MOCK_KEY", "test")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out).await.expect("the client finishes").unwrap();
    assert!(out.status.success(), "client failed:\n{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    })
}

fn rein(db: &Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(REIN).arg("--db").arg(db).args(args).output().unwrap();
    assert!(out.status.success(), "rein {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The answerer's tool and a succeeded call of it, as every transport
/// must show them.
fn check_answer(report: &Value, call: &Value) {
    let tool = report["tools"].as_array().unwrap().iter().find(|t| t["name"] == "answerer").unwrap();
    assert!(tool["description"].as_str().unwrap().starts_with("Answers geography questions."), "{tool}");
    assert_eq!(tool["input_schema"]["required"], json!(["input"]));
    assert_eq!(tool["input_schema"]["properties"]["input"]["type"], "string");
    assert_eq!(tool["output_schema"]["required"], json!(["run_id", "status"]));
    assert_eq!(call["is_error"], false, "{call}");
    assert_eq!(call["structured"]["status"], "succeeded", "{call}");
    assert_eq!(call["structured"]["output"], "Paris is the capital of France.");
    let run_id = call["structured"]["run_id"].as_str().unwrap();
    let text = call["text"].as_str().unwrap();
    assert!(text.starts_with("Paris is the capital of France.") && text.contains(run_id), "{text}");
    // The run's progress reached the client before the answer.
    let progress: Vec<&str> =
        call["progress"].as_array().unwrap().iter().map(|p| p["message"].as_str().unwrap()).collect();
    assert_eq!(progress, [format!("run {run_id} started").as_str(), "step 1: asking the model"], "{call}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_are_mcp_tools_for_the_python_sdk_over_stdio() {
    let Some(python) = python_client() else { return };
    let model = model().await;
    let dir = tempfile::tempdir().unwrap();
    let (answerer, mailer) = agents(dir.path(), &model.base_url);
    let db = dir.path().join("rein.db");
    let (db_arg, answerer_arg, mailer_arg) =
        (db.to_str().unwrap(), answerer.to_str().unwrap(), mailer.to_str().unwrap());

    let calls = json!([
        ["answerer", {"input": "What is the capital of France?"}],
        ["mailer", {"input": "Tell the team hello."}],
        ["answerer", {}],
        ["nobody", {"input": "hello?"}],
    ]);
    let command = json!([REIN, "--db", db_arg, "mcp", "serve", answerer_arg, mailer_arg]).to_string();
    let report = client(&python, &["--stdio", &command], &calls).await;
    assert!(!report["protocol_version"].as_str().unwrap().is_empty(), "{report}");
    let names: Vec<&str> = report["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["answerer", "mailer"]);
    let calls = report["calls"].as_array().unwrap();
    check_answer(&report, &calls[0]);

    // A run that needs approval answers at once with what it waits for.
    let waiting = &calls[1];
    assert_eq!(waiting["is_error"], false, "{waiting}");
    assert_eq!(waiting["structured"]["status"], "waiting_approval", "{waiting}");
    let pending = &waiting["structured"]["pending"][0];
    assert_eq!(pending["tool"], "send_email");
    let approval_id = pending["id"].as_str().unwrap();
    let text = waiting["text"].as_str().unwrap();
    assert!(text.contains("approval of `send_email`") && text.contains(approval_id), "{text}");
    let progress = waiting["progress"].as_array().unwrap();
    assert_eq!(progress.last().unwrap()["message"], "send_email needs approval", "{waiting}");

    // Bad arguments are a tool error the model can correct; an unknown
    // agent is a protocol error.
    assert_eq!(calls[2]["is_error"], true);
    assert!(calls[2]["text"].as_str().unwrap().contains("`input` is required"), "{}", calls[2]);
    assert!(calls[3]["protocol_error"].as_str().unwrap().contains("no agent named `nobody`"), "{}", calls[3]);

    // Both runs are in the store, as the CLI's own would be.
    let runs = rein(&db, &["runs", "list", "--json"]);
    let mut statuses: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["agent"].as_str().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    statuses.sort();
    assert_eq!(statuses, [("answerer", "succeeded"), ("mailer", "waiting_approval")]);
    let approvals = rein(&db, &["approvals", "list", "--json"]);
    assert_eq!(approvals[0]["approval_id"], approval_id, "{approvals}");
}

#[tokio::test(flavor = "multi_thread")]
async fn deployed_agents_are_mcp_tools_for_the_python_sdk_over_streamable_http() {
    let Some(python) = python_client() else { return };
    let model = model().await;
    let dir = tempfile::tempdir().unwrap();
    let (answerer, _) = agents(dir.path(), &model.base_url);
    let db = dir.path().join("rein.db");

    // Registered by a first serve of the file, then deployed: a serve
    // without files serves what is deployed.
    let once = json!([["answerer", {"input": "Where is Paris?"}]]);
    let command = json!([REIN, "--db", db.to_str().unwrap(), "mcp", "serve", answerer.to_str().unwrap()]);
    let report = client(&python, &["--stdio", &command.to_string()], &once).await;
    let version = report["calls"][0]["structured"]["agent_version"].as_str().unwrap().to_owned();
    let out = std::process::Command::new(REIN)
        .arg("--db")
        .arg(&db)
        .args(["agents", "activate", "answerer", &version])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    let log = dir.path().join("serve.log");
    let mut server = tokio::process::Command::new(REIN)
        .arg("--db")
        .arg(&db)
        .args(["mcp", "serve", "--http", &addr])
        .env("MOCK_KEY", "test")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if std::net::TcpStream::connect(&addr).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let url = format!("http://{addr}/mcp");
    let calls = json!([["answerer", {"input": "What is the capital of France?"}]]);
    let mut versions = Vec::new();
    for mode in ["auto", "legacy"] {
        let report = client(&python, &["--http", &url, "--mode", mode], &calls).await;
        let names: Vec<&str> =
            report["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["answerer"], "{mode}: {report}");
        check_answer(&report, &report["calls"][0]);
        assert_eq!(report["calls"][0]["structured"]["agent_version"], version.as_str());
        versions.push(report["protocol_version"].as_str().unwrap().to_owned());
    }
    // The SDK's discovery and its initialise handshake both work.
    assert_ne!(versions[0], versions[1], "{versions:?}");

    // Not loopback: refused without --allow-remote.
    let out = std::process::Command::new(REIN)
        .arg("--db")
        .arg(&db)
        .args(["mcp", "serve", "--http", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not loopback"));

    server.start_kill().unwrap();
    let _ = server.wait().await;
    let runs = rein(&db, &["runs", "list", "--json"]);
    assert_eq!(runs.as_array().unwrap().len(), 3, "{runs}");
}
