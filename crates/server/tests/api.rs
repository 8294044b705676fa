//! The HTTP API end to end: a real server on 127.0.0.1 over a real SQLite
//! journal, a local server speaking the OpenAI wire format, and a local
//! HTTP service for the agent's tool and for callbacks.

mod common;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use rein::store::SqliteJournal;
use rein::{Operator, Store};
use rein_server::{AppState, ServeConfig};
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text, completion_tool_calls};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the local service received: path, headers, body.
type Received = (String, HeaderMap, Vec<u8>);

/// Requests received by the local service.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<Received>>>);

async fn receive(
    State(inbox): State<Inbox>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Json<Value> {
    inbox.0.lock().unwrap().push((uri.path().to_owned(), headers, body.to_vec()));
    Json(json!({ "id": "msg-1", "ok": true }))
}

struct Fixture {
    base: String,
    http: reqwest::Client,
    inbox: Inbox,
    _model: MockOpenAi,
    _dir: tempfile::TempDir,
}

const SECRET: &[u8] = b"callback-secret";

fn agent_toml(model: &str, service: &str, risk: &str) -> String {
    format!(
        r#"
name = "notifier"
system_prompt = "Send the notice the user asks for, then report."

[model]
id = "openai-compatible:mock-model"
base_url = "{model}"

[[tools]]
name = "send_notice"
description = "Sends a notice to a recipient list."
kind = "http"
method = "POST"
url = "{service}/send"
risk = "{risk}"
idempotent = true
parameters = {{ type = "object", properties = {{ to = {{ type = "string" }} }}, required = ["to"], additionalProperties = false }}
"#
    )
}

async fn fixture(risk: &str) -> Fixture {
    let inbox = Inbox::default();
    let service = axum::Router::new().fallback(post(receive)).with_state(inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    let model = MockOpenAi::start(|body| {
        let messages = body["messages"].as_array().cloned().unwrap_or_default();
        let tool = messages.iter().rev().find(|m| m["role"] == "tool").and_then(|m| m["content"].as_str());
        MockReply::ok(match tool {
            None => completion_tool_calls(&[("send_notice", json!({"to": "all@example.com"}))]),
            Some(text) if text.contains("rejected") => completion_text("Not sent."),
            Some(text) => completion_text(&format!("Sent: {text}")),
        })
        .with_delay(Duration::from_millis(20))
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteJournal::open(dir.path().join("rein.db")).unwrap());
    let http = common::admin_client(store.as_ref()).await;
    let client = rein::providers::default_client().unwrap();
    let operator = Arc::new(Operator::new(store, client));
    let config = ServeConfig {
        max_body_bytes: 64 * 1024,
        callback_secret: Some(SECRET.to_vec()),
        allow_private_callbacks: true,
        ..ServeConfig::default()
    };
    let state = AppState::new(operator, config);
    // Async and webhook runs are queued; this worker loop drives them, as
    // `rein serve` runs one.
    let worker = state.worker(2, Duration::from_secs(1));
    tokio::spawn(worker.run(std::future::pending()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, rein_server::router(state)).await.unwrap() });
    let register = http
        .post(format!("{base}/v1/agents"))
        .json(&json!({ "toml": agent_toml(&model.base_url, &service_url, risk) }))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201, "{}", register.text().await.unwrap());
    Fixture { base, http, inbox, _model: model, _dir: dir }
}

impl Fixture {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self.http.post(format!("{}{path}", self.base)).json(&body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_run_returns_its_result_and_is_listed_with_its_events() {
    let f = fixture("write").await;
    let (status, result) = f.post("/v1/agents/notifier/runs", json!({ "input": "notify everyone" })).await;
    assert_eq!(status, 200, "{result}");
    assert_eq!(result["status"], "succeeded");
    assert!(result["output"].as_str().unwrap().contains("msg-1"));
    let run = result["run_id"].as_str().unwrap();
    let (_, got) = f.get(&format!("/v1/runs/{run}")).await;
    assert_eq!(got["status"], "succeeded");
    assert_eq!(got["outcome"]["output"], result["output"]);
    let (_, listed) = f.get("/v1/runs?agent=notifier&status=succeeded").await;
    assert_eq!(listed["runs"][0]["run_id"], run);
    let (_, events) = f.get(&format!("/v1/runs/{run}/events")).await;
    let events = events["events"].as_array().unwrap();
    assert_eq!(events.first().unwrap()["type"], "run_started");
    assert_eq!(events.last().unwrap()["type"], "run_finished");
    let (_, after) = f.get(&format!("/v1/runs/{run}/events?after=2")).await;
    assert_eq!(after["events"][0]["seq"], 3);
    // The tool got the call's idempotency key.
    let inbox = f.inbox.0.lock().unwrap();
    assert_eq!(inbox[0].0, "/send");
    assert_eq!(inbox[0].1["idempotency-key"], format!("{run}:1:0").as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_async_run_answers_202_and_posts_a_signed_result() {
    let f = fixture("write").await;
    let (_, listed) = f.get("/v1/agents").await;
    assert_eq!(listed["agents"][0]["name"], "notifier");
    // A receiver for the callback, recording into the same inbox.
    let app = axum::Router::new().fallback(post(receive)).with_state(f.inbox.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let service_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (status, accepted) = f
        .post(
            "/v1/agents/notifier/runs",
            json!({ "input": "notify", "mode": "async", "callback_url": format!("{service_url}/callback") }),
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let run = accepted["run_id"].as_str().unwrap().to_owned();
    assert_eq!(accepted["url"], format!("/v1/runs/{run}"));
    let mut delivered = None;
    for _ in 0..100 {
        if let Some(found) = f.inbox.0.lock().unwrap().iter().find(|(path, _, _)| path == "/callback").cloned() {
            delivered = Some(found);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, headers, body) = delivered.expect("the callback arrived");
    let result: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(result["run_id"], run);
    assert_eq!(result["status"], "succeeded");
    let timestamp: u64 = headers["x-rein-timestamp"].to_str().unwrap().parse().unwrap();
    let expected = rein_server::sign(SECRET, timestamp, &body);
    assert_eq!(headers["x-rein-signature"].to_str().unwrap(), expected, "the signature verifies");
    assert_ne!(rein_server::sign(b"wrong", timestamp, &body), expected);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_run_sends_its_committed_events_and_a_client_resumes_with_last_event_id() {
    let f = fixture("write").await;
    let response = f
        .http
        .post(format!("{}/v1/agents/notifier/runs", f.base))
        .json(&json!({ "input": "notify", "mode": "stream" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events = common::sse_events(&text);
    assert_eq!(events.first().map(|e| e.1.as_str()), Some("run_started"));
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("run_finished"));
    assert!(events.windows(2).all(|w| w[1].0 == w[0].0 + 1), "ids are consecutive seqs: {events:?}");
    let run = text
        .lines()
        .find_map(|l| l.strip_prefix("data:"))
        .and_then(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .and_then(|v| v["run_id"].as_str().map(str::to_owned))
        .unwrap();

    // Reconnecting after event 2 sends 3 onwards, nothing twice.
    let again = f
        .http
        .get(format!("{}/v1/runs/{run}/events", f.base))
        .header("accept", "text/event-stream")
        .header("last-event-id", "2")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resumed = common::sse_events(&again);
    assert_eq!(resumed.first().map(|e| e.0), Some(3));
    assert_eq!(resumed, events[3..].to_vec());
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_are_decided_through_the_api() {
    let f = fixture("dangerous").await;
    let (status, waiting) = f.post("/v1/agents/notifier/runs", json!({ "input": "notify" })).await;
    assert_eq!(status, 200);
    assert_eq!(waiting["status"], "waiting_approval");
    let (_, list) = f.get("/v1/approvals").await;
    let approval = &list["approvals"][0];
    assert_eq!(approval["tool"], "send_notice");
    assert_eq!(approval["risk"], "dangerous");
    let id = approval["id"].as_str().unwrap().to_owned();
    let (_, shown) = f.get(&format!("/v1/approvals/{id}")).await;
    assert_eq!(shown["arguments"], json!({"to": "all@example.com"}));

    let (status, bad) = f.post(&format!("/v1/approvals/{id}/edit"), json!({ "arguments": {"to": 5} })).await;
    assert_eq!((status, bad["error"]["code"].as_str()), (422, Some("invalid_arguments")), "{bad}");
    let (status, done) = f
        .post(&format!("/v1/approvals/{id}/edit"), json!({ "arguments": {"to": "ops@example.com"}, "by": "ana" }))
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["status"], "succeeded");
    assert_eq!(f.inbox.0.lock().unwrap().len(), 1);
    let (status, gone) = f.post(&format!("/v1/approvals/{id}/approve"), json!({})).await;
    assert_eq!((status, gone["error"]["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_kill_switch_cancel_and_errors_are_structured() {
    let f = fixture("dangerous").await;
    let (_, waiting) = f.post("/v1/agents/notifier/runs", json!({ "input": "notify" })).await;
    let run = waiting["run_id"].as_str().unwrap().to_owned();
    let (status, disabled) = f.post("/v1/agents/notifier/disable", json!({ "by": "ops" })).await;
    assert_eq!(status, 200);
    assert_eq!(disabled["cancelled"][0], run.as_str(), "the waiting run was cancelled");
    let (status, refused) = f.post("/v1/agents/notifier/runs", json!({ "input": "notify" })).await;
    assert_eq!((status, refused["error"]["code"].as_str()), (409, Some("agent_disabled")));
    let (status, _) = f.post("/v1/agents/notifier/enable", json!({})).await;
    assert_eq!(status, 200);

    let (_, second) = f.post("/v1/agents/notifier/runs", json!({ "input": "notify" })).await;
    let second = second["run_id"].as_str().unwrap().to_owned();
    let (status, cancelled) = f.post(&format!("/v1/runs/{second}/cancel"), json!({ "reason": "duplicate" })).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (status, again) = f.post(&format!("/v1/runs/{second}/cancel"), json!({})).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("run_finished")));

    let (status, missing) = f.get("/v1/runs/ffffffff").await;
    assert_eq!((status, missing["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, unknown) = f.post("/v1/agents/nobody/runs", json!({ "input": "x" })).await;
    assert_eq!((status, unknown["error"]["code"].as_str()), (404, Some("not_found")));
    let response = f
        .http
        .post(format!("{}/v1/agents/notifier/runs", f.base))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_request");
    let big = "x".repeat(100 * 1024);
    let (status, too_big) = f.post("/v1/agents/notifier/runs", json!({ "input": big })).await;
    assert_eq!(status, 413, "{too_big}");
    let (status, bad_mode) =
        f.post("/v1/agents/notifier/runs", json!({ "input": "x", "callback_url": "http://127.0.0.1:9/cb" })).await;
    assert_eq!((status, bad_mode["error"]["code"].as_str()), (400, Some("bad_request")));
    let (status, ready) = f.get("/readyz").await;
    assert_eq!((status, ready["status"].as_str()), (200, Some("ready")));
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_runs_tokens_tools_and_the_queue() {
    let f = fixture("dangerous").await;
    let (_, waiting) = f.post("/v1/agents/notifier/runs", json!({ "input": "notify" })).await;
    assert_eq!(waiting["status"], "waiting_approval");
    let id = waiting["pending"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = f.post(&format!("/v1/approvals/{id}/approve"), json!({})).await;
    assert_eq!(status, 200);
    let (_, second) = f.post("/v1/agents/notifier/runs", json!({ "input": "notify" })).await;
    assert_eq!(second["status"], "waiting_approval");

    let response = f.http.get(format!("{}/metrics", f.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{needle}` in\n{text}"))
    };
    assert_eq!(value(r#"rein_runs_started_total{agent="notifier"}"#), 2.0);
    assert_eq!(value(r#"rein_runs_finished_total{agent="notifier",status="succeeded"}"#), 1.0);
    assert_eq!(value(r#"rein_runs_suspended_total{agent="notifier",status="waiting_approval"}"#), 2.0);
    assert_eq!(value(r#"rein_tool_calls_total{agent="notifier",tool="send_notice",result="ok"}"#), 1.0);
    assert_eq!(value(r#"rein_runs_unfinished{status="waiting_approval"}"#), 1.0);
    assert_eq!(value(r#"rein_run_steps_count{agent="notifier"}"#), 1.0);
    assert!(text.contains("rein_tokens_total{agent=\"notifier\""), "{text}");
    assert!(text.contains("rein_run_duration_seconds_bucket"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_covers_every_route_with_request_schemas() {
    let f = fixture("write").await;
    let (status, doc) = f.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/v1/agents/{name}/runs", "post"),
        ("/v1/runs", "get"),
        ("/v1/runs/{id}/events", "get"),
        ("/v1/approvals/{id}/edit", "post"),
        ("/v1/agents", "get"),
        ("/v1/agents", "post"),
        ("/metrics", "get"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing");
    }
    let run = &paths["/v1/agents/{name}/runs"]["post"];
    assert_eq!(run["parameters"][0]["name"], "name");
    let schema = serde_json::to_string(&run["requestBody"]).unwrap();
    assert!(schema.contains("RunRequest") || schema.contains("\"input\""), "{schema}");
    let definitions = serde_json::to_string(&doc["components"]["schemas"]).unwrap();
    assert!(definitions.contains("\"input\"") && definitions.contains("stream"), "{definitions}");
    let list = &paths["/v1/runs"]["get"]["parameters"];
    let names: Vec<&str> = list.as_array().unwrap().iter().filter_map(|p| p["name"].as_str()).collect();
    assert!(names.contains(&"status") && names.contains(&"since_ms"), "{names:?}");
    // Every GET route without parameters answers (none falls through to 404).
    for (path, item) in paths {
        if item.get("get").is_some() && !path.contains('{') {
            let response = f.http.get(format!("{}{path}", f.base)).send().await.unwrap();
            assert_ne!(response.status(), 404, "{path}");
        }
    }
}
