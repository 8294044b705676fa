//! End-to-end tests of the `rein` binary: a local HTTP server speaks the
//! OpenAI wire format, tools hit a real SQLite file and a real local HTTP
//! endpoint, and the journal is a real SQLite database.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text, completion_tool_calls};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};

const REIN: &str = env!("CARGO_BIN_EXE_rein");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Copies an example into a temp dir and creates its database from seed.sql.
fn example(name: &str, database: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = repo_root().join("examples").join(name);
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let file_name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_file() && !file_name.ends_with(".db") && !file_name.contains(".db-") {
            std::fs::copy(&path, dir.path().join(file_name)).unwrap();
        }
    }
    let seed = std::fs::read_to_string(source.join("seed.sql")).unwrap();
    rusqlite::Connection::open(dir.path().join(database)).unwrap().execute_batch(&seed).unwrap();
    dir
}

async fn rein(args: &[&str], db: &Path, env: &[(&str, &str)]) -> Output {
    let mut command = tokio::process::Command::new(REIN);
    command.args(args).env("REIN_DB", db).env_remove("OPENAI_API_KEY").env("NO_COLOR", "1");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().await.unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn tool_messages(body: &Value) -> usize {
    body["messages"].as_array().map_or(0, |m| m.iter().filter(|m| m["role"] == "tool").count())
}

#[tokio::test(flavor = "multi_thread")]
async fn support_triage_runs_end_to_end_and_is_journaled() {
    let dir = example("support-triage", "helpdesk.db");
    let server = MockOpenAi::start(|body| {
        MockReply::ok(match tool_messages(body) {
            0 => completion_tool_calls(&[("lookup_customer", json!({"email": "li@contoso.example"}))]),
            1 => completion_tool_calls(&[
                ("recent_tickets", json!({"customer_id": 2})),
                ("search_articles", json!({"keyword": "sso"})),
            ]),
            3 => completion_tool_calls(&[(
                "create_ticket",
                json!({"customer_id": 2, "subject": "SSO login loop after IdP certificate rotation", "category": "account", "priority": "urgent", "summary": "40 users blocked; repeat of ticket 102."}),
            )]),
            _ => completion_tool_calls(&[(
                "save_draft",
                json!({"ticket_id": 103, "body": "Hi Li, please upload the new IdP certificate under Settings > SSO > Certificates."}),
            )]),
        })
    })
    .await
    .unwrap();
    let db = dir.path().join("journal.db");
    let agent = dir.path().join("agent.toml");
    let input = format!("@{}", dir.path().join("inbound.txt").display());
    let output = rein(
        &["run", agent.to_str().unwrap(), "--input", &input, "--json", "--base-url", &server.base_url],
        &db,
        &[("OPENAI_API_KEY", "sk-test")],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let result: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    for key in ["run_id", "status", "output", "reason", "steps", "usage", "cost_usd"] {
        assert!(result.get(key).is_some(), "missing {key} in {result}");
    }
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["reason"], "stop_condition");
    assert_eq!(result["steps"], 4);
    assert_eq!(result["usage"]["input_tokens"], 4 * 120);
    assert!(result["cost_usd"].as_f64().unwrap() > 0.0, "gpt-4o-mini is in the price table");

    // The tools really wrote to the help desk.
    let helpdesk = rusqlite::Connection::open(dir.path().join("helpdesk.db")).unwrap();
    let (priority, draft): (String, String) = helpdesk
        .query_row(
            "SELECT t.priority, d.body FROM tickets t JOIN drafts d ON d.ticket_id = t.id WHERE t.id = 103",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(priority, "urgent");
    assert!(draft.contains("Certificates"));

    // The provider received the system prompt from prompt.md and the tool schemas.
    let first = &server.requests()[0];
    assert!(first["messages"][0]["content"].as_str().unwrap().contains("support triage agent"));
    assert_eq!(first["tools"].as_array().unwrap().len(), 6, "5 SQL tools and the handoff");
    assert_eq!(server.request_headers()[0]["authorization"], "Bearer sk-test");

    // The journal lists and shows the run.
    let run_id = result["run_id"].as_str().unwrap();
    let list = rein(&["runs", "list"], &db, &[]).await;
    assert_eq!(list.status.code(), Some(0), "{}", stderr(&list));
    assert!(stdout(&list).contains(run_id) && stdout(&list).contains("succeeded"), "{}", stdout(&list));
    let show = rein(&["runs", "show", &run_id[..13]], &db, &[]).await;
    assert_eq!(show.status.code(), Some(0), "{}", stderr(&show));
    let tree = stdout(&show);
    for expected in
        ["step 1", "step 4", "lookup_customer", "search_articles", "create_ticket", "save_draft", "totals: 4 step(s)"]
    {
        assert!(tree.contains(expected), "missing {expected:?} in\n{tree}");
    }
}

#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(HeaderMap, Value)>>>);

async fn crm_endpoint(State(received): State<Received>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    received.0.lock().unwrap().push((headers, body.clone()));
    Json(json!({"data": {"id": "T-9", "status": "created", "internal": "x".repeat(50)}}))
}

#[tokio::test(flavor = "multi_thread")]
async fn http_tools_send_idempotency_keys_and_keep_secrets_out_of_the_journal() {
    let received = Received::default();
    let app = axum::Router::new().route("/tickets/{customer}", post(crm_endpoint)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let crm = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("agent.toml");
    std::fs::write(
        &agent,
        format!(
            r#"
name = "ticketing"
description = "Opens tickets in the CRM."
system_prompt = "Open a ticket for the customer, then confirm."

[model]
id = "openai-compatible:mock"
api_key_env = "MOCK_KEY"

[[tools]]
name = "open_ticket"
kind = "http"
description = "Open a CRM ticket for a customer id with a short subject."
risk = "write"
method = "POST"
url = "{crm}/tickets/{{customer}}"
headers = {{ Authorization = "Bearer ${{CRM_TOKEN}}" }}
body = {{ subject = "{{subject}}", source = "rein" }}
extract = {{ ticket = "/data/id", status = "/data/status" }}
parameters = {{ type = "object", properties = {{ customer = {{ type = "string" }}, subject = {{ type = "string" }} }}, required = ["customer", "subject"], additionalProperties = false }}
"#
        ),
    )
    .unwrap();
    let server = MockOpenAi::start(|body| {
        MockReply::ok(match tool_messages(body) {
            0 => completion_tool_calls(&[("open_ticket", json!({"customer": "c-42", "subject": "Printer on fire"}))]),
            _ => completion_text("I have opened ticket T-9 for you."),
        })
    })
    .await
    .unwrap();
    let db = dir.path().join("journal.db");
    let secret = "crm-secret-token-4711";
    let output = rein(
        &["run", agent.to_str().unwrap(), "--input", "open a ticket", "--json", "--base-url", &server.base_url],
        &db,
        &[("MOCK_KEY", "k"), ("CRM_TOKEN", secret)],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "stderr: {}", stderr(&output));
    let result: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert!(result["unbacked_claims"].as_array().unwrap().is_empty(), "the claim is backed by a write call");

    let calls = received.0.lock().unwrap().clone();
    assert_eq!(calls.len(), 1);
    let (headers, body) = &calls[0];
    assert_eq!(headers["authorization"], format!("Bearer {secret}"));
    assert!(headers.contains_key("idempotency-key"));
    assert_eq!(body, &json!({"subject": "Printer on fire", "source": "rein"}));
    assert_eq!(result["partial_results"][0]["data"], json!({"ticket": "T-9", "status": "created"}));

    let show = rein(&["runs", "show", result["run_id"].as_str().unwrap(), "--json"], &db, &[]).await;
    let journal = stdout(&show);
    assert!(journal.contains("T-9"));
    assert!(!journal.contains(secret), "the secret leaked into the journal");
    let raw_db = std::fs::read(&db).unwrap();
    assert!(!raw_db.windows(secret.len()).any(|w| w == secret.as_bytes()), "the secret is in the database file");
}

fn looping_agent(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "looper"
description = "Looks things up."
system_prompt = "Look things up."
model = "openai-compatible:mock"

[[tools]]
name = "lookup"
kind = "sql"
description = "Look a key up in the key-value table."
risk = "read"
database = "kv"
mode = "read"
query = "SELECT :key AS key, 'nothing' AS value"
parameters = {{ type = "object", properties = {{ key = {{ type = "string" }} }}, required = ["key"], additionalProperties = false }}

[databases.kv]
url = "sqlite://kv.db"
{extra}
"#
        ),
    )
    .unwrap();
    rusqlite::Connection::open(dir.join("kv.db")).unwrap().execute_batch("CREATE TABLE t (x);").unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_codes_follow_the_run_status() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");

    // A model that never stops hits max_steps: exit 3, with an explanation.
    let agent = looping_agent(dir.path(), "[limits]\nmax_steps = 3\nmax_no_progress_steps = 10");
    let counter = Mutex::new(0);
    let server = MockOpenAi::start(move |_| {
        let mut n = counter.lock().unwrap();
        *n += 1;
        MockReply::ok(completion_tool_calls(&[("lookup", json!({"key": format!("k{n}")}))]))
    })
    .await
    .unwrap();
    let output =
        rein(&["run", agent.to_str().unwrap(), "--input", "go", "--base-url", &server.base_url], &db, &[]).await;
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("limit_reached"), "{}", stderr(&output));
    assert!(stderr(&output).contains("max_steps"), "the explanation says what to change: {}", stderr(&output));

    // A handoff escalates: exit 3.
    let server = MockOpenAi::scripted(vec![MockReply::ok(completion_tool_calls(&[(
        "handoff_to_human",
        json!({"reason": "legal question"}),
    )]))])
    .await
    .unwrap();
    let output =
        rein(&["run", agent.to_str().unwrap(), "--input", "go", "--json", "--base-url", &server.base_url], &db, &[])
            .await;
    assert_eq!(output.status.code(), Some(3));
    let result: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(result["status"], "escalated");

    // A rejected key fails the run: exit 1, and the explanation names the fix.
    let server = MockOpenAi::scripted(vec![MockReply::error(401, "Incorrect API key provided", "invalid_api_key")])
        .await
        .unwrap();
    let output =
        rein(&["run", agent.to_str().unwrap(), "--input", "go", "--json", "--base-url", &server.base_url], &db, &[])
            .await;
    assert_eq!(output.status.code(), Some(1));
    let result: Value = serde_json::from_str(stdout(&output).trim()).unwrap();
    assert_eq!(result["status"], "failed");
    assert_eq!(result["reason"], "model_error:auth");

    // A config error: exit 2, naming file, line and key.
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\nsystem_prompt = \"y\"\nmodel = \"openai:gpt-4o-mini\"\ncolour = \"blue\"\n")
        .unwrap();
    let output = rein(&["run", bad.to_str().unwrap(), "--input", "go"], &db, &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(message.contains("bad.toml:4") && message.contains("colour"), "{message}");

    // Every run above is in the journal, filterable by status.
    let list = rein(&["runs", "list", "--status", "escalated", "--json"], &db, &[]).await;
    let runs: Value = serde_json::from_str(&stdout(&list)).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_reports_errors_with_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");
    for example in ["support-triage", "lead-qualification"] {
        let path = repo_root().join("examples").join(example).join("agent.toml");
        let output = rein(&["validate", path.to_str().unwrap()], &db, &[]).await;
        assert_eq!(output.status.code(), Some(0), "{example}: {}", stderr(&output));
    }
    let agent = looping_agent(dir.path(), "[stop]\nafter_tools = [\"send_invoice\"]\n");
    let text = std::fs::read_to_string(&agent).unwrap().replace("risk = \"read\"", "risk = \"medium\"");
    std::fs::write(&agent, text).unwrap();
    let output = rein(&["validate", agent.to_str().unwrap(), "--json"], &db, &[]).await;
    assert_eq!(output.status.code(), Some(2));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["key"].as_str().unwrap().contains("risk") && e["line"].as_u64().unwrap() > 1),
        "{report:#}"
    );
    assert!(errors.iter().any(|e| e["message"].as_str().unwrap().contains("send_invoice")), "{report:#}");
}

fn json_of(output: &Output) -> Value {
    serde_json::from_str(&stdout(output)).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(output), stderr(output)))
}

#[tokio::test(flavor = "multi_thread")]
async fn keys_tenants_deploys_and_pruning_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("journal.db");

    // Keys: made once, listed without their secret, revoked.
    let made =
        rein(&["keys", "create", "--tenant", "acme", "--scope", "runs:read,approvals", "--json"], &db, &[]).await;
    assert!(made.status.success(), "{}", stderr(&made));
    let made = json_of(&made);
    let (id, key) = (made["id"].as_str().unwrap().to_owned(), made["key"].as_str().unwrap().to_owned());
    assert!(key.starts_with(&format!("rein_{id}_")));
    let listed = stdout(&rein(&["keys", "list", "--tenant", "acme", "--json"], &db, &[]).await);
    assert!(listed.contains(&id) && !listed.contains(&key), "the secret is never listed: {listed}");
    assert!(listed.contains("runs:read") && listed.contains("approvals"));
    let bad = rein(&["keys", "create", "--tenant", "acme", "--scope", "everything"], &db, &[]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    let bad = rein(&["keys", "create", "--tenant", "Not A Tenant", "--scope", "admin"], &db, &[]).await;
    assert_eq!(bad.status.code(), Some(2));
    assert!(rein(&["keys", "revoke", &id], &db, &[]).await.status.success());
    assert_eq!(rein(&["keys", "revoke", &id], &db, &[]).await.status.code(), Some(2), "revoked already");
    let listed = json_of(&rein(&["keys", "list", "--json"], &db, &[]).await);
    assert!(listed[0]["revoked_at_ms"].is_u64());

    // Tenants' own limits; unset flags keep what was set.
    assert!(rein(&["tenants", "set", "acme", "--requests-per-second", "5"], &db, &[]).await.status.success());
    assert!(rein(&["tenants", "set", "acme", "--max-concurrent-runs", "2"], &db, &[]).await.status.success());
    let limits = json_of(&rein(&["tenants", "list", "--json"], &db, &[]).await);
    assert_eq!(limits[0]["limits"], json!({ "requests_per_second": 5, "max_concurrent_runs": 2 }));

    // Deploys: two versions registered (by queuing runs), one activated by
    // prefix, the other activated, then rolled back.
    let first = looping_agent(dir.path(), "");
    assert!(rein(&["runs", "submit", first.to_str().unwrap(), "--input", "a"], &db, &[]).await.status.success());
    let other = tempfile::tempdir().unwrap();
    let second = looping_agent(other.path(), "\n[limits]\nmax_steps = 5\n");
    assert!(rein(&["runs", "submit", second.to_str().unwrap(), "--input", "b"], &db, &[]).await.status.success());
    let versions = json_of(&rein(&["agents", "versions", "looper", "--json"], &db, &[]).await);
    let [v1, v2] = [0, 1].map(|i| versions["versions"][i]["version"].as_str().unwrap().to_owned());
    assert_eq!(versions["active_version"], Value::Null, "queuing a run deploys nothing");
    for version in [&v1, &v2] {
        let activated = rein(&["agents", "activate", "looper", &version[..12]], &db, &[]).await;
        assert!(activated.status.success(), "{}", stderr(&activated));
    }
    let back = json_of(&rein(&["agents", "rollback", "looper", "--json"], &db, &[]).await);
    assert_eq!(back["active_version"], v1.as_str());
    let versions = json_of(&rein(&["agents", "versions", "looper", "--json"], &db, &[]).await);
    assert_eq!(versions["active_version"], v1.as_str());
    assert_eq!(versions["deploys"].as_array().unwrap().len(), 3);
    let missing = rein(&["agents", "activate", "looper", "ffff"], &db, &[]).await;
    assert_eq!(missing.status.code(), Some(2));

    // Pruning: refused too close to now; nothing old to prune here.
    assert_eq!(rein(&["prune", "--older-than", "10m"], &db, &[]).await.status.code(), Some(2));
    let pruned = json_of(&rein(&["prune", "--older-than", "24h", "--json"], &db, &[]).await);
    assert_eq!(pruned, json!({ "webhook_deliveries": 0, "schedule_ticks": 0, "cancel_requests": 0, "queue_rows": 0 }));
}
