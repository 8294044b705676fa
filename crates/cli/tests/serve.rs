//! `rein serve` as a process: it starts, serves a run, shares its journal
//! with the other commands, and stops cleanly on SIGTERM.

use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};

const REIN: &str = env!("CARGO_BIN_EXE_rein");

#[tokio::test(flavor = "multi_thread")]
async fn rein_serve_runs_an_agent_over_http_and_stops_on_sigterm() {
    let model = MockOpenAi::start(|_| MockReply::ok(completion_text("Hello from the mock."))).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let agent = dir.path().join("greeter.toml");
    std::fs::write(
        &agent,
        format!(
            "name = \"greeter\"\nsystem_prompt = \"Greet the user.\"\n\n[model]\nid = \"openai-compatible:mock\"\nbase_url = \"{}\"\n",
            model.base_url
        ),
    )
    .unwrap();
    // A key made by the CLI, as an operator would: printed once.
    let made = std::process::Command::new(REIN)
        .args(["keys", "create", "--tenant", "default", "--scope", "runs:write", "--name", "test", "--json"])
        .env("REIN_DB", &db)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    let key = made["key"].as_str().unwrap().to_owned();
    let mut server = tokio::process::Command::new(REIN)
        .args(["serve", agent.to_str().unwrap(), "--listen", "127.0.0.1:0"])
        .env("REIN_DB", &db)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("listening on ").nth(1) {
                return url.trim().to_owned();
            }
        }
        panic!("rein serve exited before listening");
    })
    .await
    .unwrap();

    let http = reqwest::Client::new();
    let health: Value = http.get(format!("{base}/healthz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(health["status"], "ok");
    let anonymous = http.post(format!("{base}/v1/agents/greeter/runs")).json(&json!({ "input": "hi" })).send().await;
    assert_eq!(anonymous.unwrap().status(), 401, "no key, no run");
    let result: Value = http
        .post(format!("{base}/v1/agents/greeter/runs"))
        .bearer_auth(&key)
        .json(&json!({ "input": "hi" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["output"], "Hello from the mock.");

    // SIGTERM: a graceful stop, exit 0.
    let pid = server.id().unwrap().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(0));

    // The run is in the journal the CLI reads.
    let list = std::process::Command::new(REIN).args(["runs", "list", "--json"]).env("REIN_DB", &db).output().unwrap();
    let runs: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(runs[0]["run_id"], result["run_id"]);
}
