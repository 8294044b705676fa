//! End-to-end tests of operating on runs through the `rein` binary:
//! approvals decided from another process, the kill switch, cancelling,
//! reconciling a call cut off by SIGKILL, and the tamper-evident audit.
//! Every command is a separate process over one SQLite journal, as an
//! operator would run them.

mod common;

use common::PgSchema;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text, completion_tool_calls};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const REIN: &str = env!("CARGO_BIN_EXE_rein");

async fn rein(args: &[&str], db: &Path) -> Output {
    tokio::process::Command::new(REIN)
        .args(args)
        .env("REIN_DB", db)
        .env("MOCK_KEY", "test")
        .env("USER", "ana")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|e| panic!("{e}: {}\n{}", stdout(output), stderr(output)))
}

/// The service the agent's tool posts to; records every request.
#[derive(Clone, Default)]
struct Mailbox {
    received: Arc<Mutex<Vec<(HeaderMap, Value)>>>,
    /// When set, requests hang until the process making them dies.
    hang: Arc<Mutex<bool>>,
}

async fn send(State(mailbox): State<Mailbox>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    mailbox.received.lock().unwrap().push((headers, body.clone()));
    if *mailbox.hang.lock().unwrap() {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    Json(json!({ "sent_to": body["to"], "id": "msg-1" }))
}

async fn mailbox() -> (Mailbox, String) {
    let mailbox = Mailbox::default();
    let app = axum::Router::new().route("/send", post(send)).with_state(mailbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (mailbox, url)
}

/// Emails once, then reports what the tool returned (or that it was refused).
async fn model() -> MockOpenAi {
    MockOpenAi::start(|body| {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let tool = messages.iter().rev().find(|m| m["role"] == "tool").and_then(|m| m["content"].as_str());
        MockReply::ok(match tool {
            None => {
                let mut reply = completion_tool_calls(&[("send_email", json!({"to": "all@customers.example"}))]);
                reply["choices"][0]["message"]["content"] = json!("Everyone must hear about the outage.");
                reply
            }
            Some(text) if text.contains("rejected") => completion_text("Not sent: the reviewer said no."),
            Some(text) => completion_text(&format!("Sent: {text}")),
        })
    })
    .await
    .unwrap()
}

fn agent(dir: &Path, model: &str, mail: &str, risk: &str, idempotent: bool) -> PathBuf {
    let path = dir.join("mailer.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "mailer"
system_prompt = "Send the notice the user asks for, then report."

[model]
id = "openai:mock-model"
base_url = "{model}"
api_key_env = "MOCK_KEY"

[[tools]]
name = "send_email"
description = "Sends an email to a recipient list. Irreversible."
kind = "http"
method = "POST"
url = "{mail}/send"
risk = "{risk}"
idempotent = {idempotent}
parameters = {{ type = "object", properties = {{ to = {{ type = "string" }} }}, required = ["to"], additionalProperties = false }}
"#
        ),
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_waits_durably_and_is_decided_from_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let (mailbox, mail) = mailbox().await;
    let server = model().await;
    let agent = agent(dir.path(), &server.base_url, &mail, "dangerous", false);
    let agent = agent.to_str().unwrap();

    // No terminal: the run pauses, exits 3 and prints the approval id.
    let run = rein(&["run", agent, "--input", "announce the outage"], &db).await;
    assert_eq!(run.status.code(), Some(3), "{}", stderr(&run));
    assert!(stderr(&run).contains("waiting_approval"), "{}", stderr(&run));
    assert!(mailbox.received.lock().unwrap().is_empty());
    let list = rein(&["approvals", "list", "--json"], &db).await;
    let waiting = json_of(&list);
    let request = &waiting[0];
    assert_eq!(request["tool"], "send_email");
    assert_eq!(request["risk"], "dangerous");
    assert_eq!(request["arguments"], json!({"to": "all@customers.example"}));
    assert_eq!(request["rationale"], "Everyone must hear about the outage.");
    let id = request["approval_id"].as_str().unwrap().to_owned();
    assert!(stderr(&run).contains(&id), "the run printed its approval id");
    let show = rein(&["approvals", "show", &id], &db).await;
    assert!(
        stdout(&show).contains("all@customers.example") && stdout(&show).contains("dangerous"),
        "{}",
        stdout(&show)
    );

    // An edit that breaks the schema is refused and changes nothing.
    let bad = rein(&["approvals", "edit", &id, "--arguments", r#"{"to": 5}"#], &db).await;
    assert_eq!(bad.status.code(), Some(1), "{}", stderr(&bad));
    assert!(stderr(&bad).contains("schema"), "{}", stderr(&bad));
    assert_eq!(json_of(&rein(&["approvals", "list", "--json"], &db).await).as_array().unwrap().len(), 1);

    // Edited and approved by another process, which runs the rest.
    let edit = rein(&["approvals", "edit", &id, "--arguments", r#"{"to": "ops@example.com"}"#, "--json"], &db).await;
    assert_eq!(edit.status.code(), Some(0), "{}", stderr(&edit));
    let result = json_of(&edit);
    assert_eq!(result["status"], "succeeded");
    let received = mailbox.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].1["to"], "ops@example.com", "the edited arguments were sent");
    assert_eq!(received[0].0["idempotency-key"], id.as_str(), "the approval id is the call's idempotency key");
    assert_eq!(json_of(&rein(&["approvals", "list", "--json"], &db).await), json!([]));

    // The audit log has the call, its approver and its result.
    let log = rein(&["audit", "log", "--json"], &db).await;
    let entries = json_of(&log);
    assert_eq!(entries[0]["tool"], "send_email");
    assert_eq!(entries[0]["approval"], "approved with edits by ana");
    assert_eq!(entries[0]["arguments"], json!({"to": "ops@example.com"}));
    assert_eq!(entries[0]["outcome"]["data"]["id"], "msg-1");
    assert_eq!(entries[0]["agent"], "mailer");
    assert!(entries[0]["agent_version"].as_str().unwrap().len() == 64);

    // A second run is rejected instead: the model is told and answers.
    let run = rein(&["run", agent, "--input", "announce it again", "--json"], &db).await;
    let id = json_of(&run)["pending"][0]["id"].as_str().unwrap().to_owned();
    let reject = rein(&["approvals", "reject", &id, "--reason", "not during the freeze", "--json"], &db).await;
    assert_eq!(json_of(&reject)["output"], "Not sent: the reviewer said no.");
    assert_eq!(mailbox.received.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_refuses_new_runs_and_cancels_waiting_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let (_mailbox, mail) = mailbox().await;
    let server = model().await;
    let agent = agent(dir.path(), &server.base_url, &mail, "dangerous", false);
    let agent = agent.to_str().unwrap();
    let waiting = json_of(&rein(&["run", agent, "--input", "announce", "--json"], &db).await);
    assert_eq!(waiting["status"], "waiting_approval");

    let disable = rein(&["agents", "disable", "mailer", "--json"], &db).await;
    assert_eq!(disable.status.code(), Some(0), "{}", stderr(&disable));
    let report = json_of(&disable);
    assert_eq!(report["cancelled"][0]["run_id"], waiting["run_id"]);
    assert_eq!(report["cancelled"][0]["status"], "cancelled");
    assert!(report["cancelled"][0]["explanation"].as_str().unwrap().contains("disabled by ana"));

    let refused = rein(&["run", agent, "--input", "announce", "--json"], &db).await;
    assert_eq!(refused.status.code(), Some(2));
    assert_eq!(json_of(&refused)["error"]["code"], "agent_disabled");
    let agents = json_of(&rein(&["agents", "list", "--json"], &db).await);
    assert_eq!(agents[0]["enabled"], false);
    assert_eq!(agents[0]["changed_by"], "ana");

    assert_eq!(rein(&["agents", "enable", "mailer"], &db).await.status.code(), Some(0));
    let again = rein(&["run", agent, "--input", "announce", "--json"], &db).await;
    assert_eq!(json_of(&again)["status"], "waiting_approval");

    // Cancelling one run by id.
    let id = json_of(&again)["run_id"].as_str().unwrap().to_owned();
    let cancel = rein(&["runs", "cancel", &id[..12], "--reason", "duplicate request", "--json"], &db).await;
    assert_eq!(json_of(&cancel)["status"], "cancelled", "{}", stderr(&cancel));
    assert_eq!(cancel.status.code(), Some(0), "a cancel that worked succeeds");
    let resume = rein(&["runs", "resume", &id], &db).await;
    assert_eq!(resume.status.code(), Some(2), "a finished run cannot be resumed: {}", stderr(&resume));
    assert!(json_of(&cancel)["explanation"].as_str().unwrap().contains("duplicate request"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_agent_stops_at_its_next_step_when_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let (mailbox, mail) = mailbox().await;
    // A model that keeps working, slowly: one harmless write per step.
    let server = MockOpenAi::start(|body| {
        let done = body["messages"].as_array().map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count());
        MockReply::ok(completion_tool_calls(&[("send_email", json!({"to": format!("user{done}@example.com")}))]))
            .with_delay(Duration::from_millis(300))
    })
    .await
    .unwrap();
    let agent = agent(dir.path(), &server.base_url, &mail, "write", true);
    let runner = {
        let (agent, db) = (agent.clone(), db.clone());
        tokio::spawn(
            async move { rein(&["run", agent.to_str().unwrap(), "--input", "mail everyone", "--json"], &db).await },
        )
    };
    // Wait until the run has done some work, then throw the switch.
    for _ in 0..100 {
        if !mailbox.received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let disable = rein(&["agents", "disable", "mailer", "--json"], &db).await;
    assert_eq!(json_of(&disable)["stopping"], 1, "{}", stdout(&disable));
    let run = runner.await.unwrap();
    let result = json_of(&run);
    assert_eq!(result["status"], "cancelled", "{}", stderr(&run));
    assert!(result["explanation"].as_str().unwrap().contains("disabled"), "{result}");
    assert!(!result["partial_results"].as_array().unwrap().is_empty(), "partial results are kept");
    assert!(result["steps"].as_u64().unwrap() < 12, "it stopped long before its step limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_cut_off_by_sigkill_is_reconciled_by_a_person() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let (mailbox, mail) = mailbox().await;
    *mailbox.hang.lock().unwrap() = true;
    let server = model().await;
    let agent = agent(dir.path(), &server.base_url, &mail, "write", false);
    let mut child = tokio::process::Command::new(REIN)
        .args(["run", agent.to_str().unwrap(), "--input", "announce"])
        .env("REIN_DB", &db)
        .env("MOCK_KEY", "test")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if !mailbox.received.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(mailbox.received.lock().unwrap().len(), 1, "the call is in flight");
    child.kill().await.unwrap();
    *mailbox.hang.lock().unwrap() = false;

    let runs = json_of(&rein(&["runs", "list", "--json"], &db).await);
    let run_id = runs[0]["run_id"].as_str().unwrap().to_owned();
    assert_eq!(runs[0]["status"], "running", "the journal says it was running when it died");
    let resume = rein(&["runs", "resume", "--all", "--json"], &db).await;
    let resumed = json_of(&resume);
    assert_eq!(resumed[0]["status"], "needs_reconciliation", "{}", stderr(&resume));
    assert_eq!(mailbox.received.lock().unwrap().len(), 1, "a non-idempotent call is not repeated blindly");
    assert_eq!(resume.status.code(), Some(3));

    // The call's key, with the run shortened to a prefix, names it.
    let key = resumed[0]["pending"][0]["id"].as_str().unwrap().to_owned();
    let short_key = format!("{}{}", &run_id[..8], &key[run_id.len()..]);
    let wrong = rein(&["runs", "reconcile", &format!("{}:9:0", &run_id[..8]), "--retry"], &db).await;
    assert_eq!(wrong.status.code(), Some(2), "no such call: {}", stderr(&wrong));
    let done = rein(&["runs", "reconcile", &short_key, "--done", r#"{"id": "msg-1"}"#, "--json"], &db).await;
    let result = json_of(&done);
    assert_eq!(result["status"], "succeeded", "{}", stderr(&done));
    assert!(result["output"].as_str().unwrap().contains("msg-1"));
    assert_eq!(mailbox.received.lock().unwrap().len(), 1);
    let show = rein(&["runs", "show", &run_id], &db).await;
    assert!(stdout(&show).contains("reconciliation: done (by ana)"), "{}", stdout(&show));
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_verify_reports_an_edited_journal() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let (_mailbox, mail) = mailbox().await;
    let server = model().await;
    let agent = agent(dir.path(), &server.base_url, &mail, "write", true);
    let run = json_of(&rein(&["run", agent.to_str().unwrap(), "--input", "announce", "--json"], &db).await);
    assert_eq!(run["status"], "succeeded");
    let verify = rein(&["audit", "verify"], &db).await;
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    assert!(stdout(&verify).starts_with("ok"), "{}", stdout(&verify));

    // Someone rewrites what the tool returned.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let changed =
        conn.execute("UPDATE events SET body = replace(body, 'msg-1', 'msg-2') WHERE body LIKE '%msg-1%'", []).unwrap();
    assert!(changed >= 1);
    drop(conn);
    let verify = rein(&["audit", "verify", "--json"], &db).await;
    assert_eq!(verify.status.code(), Some(1));
    let report = json_of(&verify);
    assert_eq!(report[0]["problems"][0]["fault"], "edited", "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_commands_work_on_postgresql() {
    let schema = PgSchema::new("cli");
    let url = schema.url();
    let db = Path::new(&url);
    let dir = tempfile::tempdir().unwrap();
    let (mailbox, mail) = mailbox().await;
    let server = model().await;
    let agent = agent(dir.path(), &server.base_url, &mail, "dangerous", false);
    let run = rein(&["run", agent.to_str().unwrap(), "--input", "announce", "--json"], db).await;
    let waiting = json_of(&run);
    assert_eq!(waiting["status"], "waiting_approval", "{}", stderr(&run));
    let id = waiting["pending"][0]["id"].as_str().unwrap().to_owned();
    let listed = json_of(&rein(&["approvals", "list", "--json"], db).await);
    assert_eq!(listed[0]["approval_id"], id.as_str());
    let approve = rein(&["approvals", "approve", &id, "--json"], db).await;
    assert_eq!(json_of(&approve)["status"], "succeeded", "{}", stderr(&approve));
    assert_eq!(mailbox.received.lock().unwrap().len(), 1);
    let runs = json_of(&rein(&["runs", "list", "--json"], db).await);
    assert_eq!(runs[0]["status"], "succeeded");
    let verify = rein(&["audit", "verify"], db).await;
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));
    let log = json_of(&rein(&["audit", "log", "--json"], db).await);
    assert_eq!(log[0]["approval"], "approved by ana");
}
