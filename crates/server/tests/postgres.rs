//! Tenants, keys, scopes, limits and deploys through the HTTP API, on the
//! real PostgreSQL server (a fresh schema per test): no key of one tenant
//! reads or acts on another's agents, runs, events or approvals at any
//! endpoint; a key without an endpoint's scope is refused; over its limits a
//! tenant is answered 429 with `Retry-After`; versions are listed, activated
//! and rolled back.

mod common;

use rein::{Operator, Scope, Store, TenantId, TenantLimits};
use rein_server::{AppState, ServeConfig};
use rein_store_pg::PgStore;
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text, completion_tool_calls};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// A schema of its own on the test server, dropped afterwards.
struct Schema(String);

impl Schema {
    fn new() -> Self {
        let schema = Self(format!("tenants_{}", uuid_like()));
        let created = psql(&format!("CREATE SCHEMA {}", schema.0));
        assert!(
            created.status.success(),
            "the PostgreSQL server on 127.0.0.1:5432 must be up (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`): {}",
            String::from_utf8_lossy(&created.stderr)
        );
        schema
    }

    fn url(&self) -> String {
        let server = std::env::var("REIN_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        format!("{server}?options=-c%20search_path%3D{}", self.0)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.0));
    }
}

fn psql(sql: &str) -> std::process::Output {
    std::process::Command::new("psql")
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-qAtc", sql])
        .output()
        .expect("psql runs")
}

fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{nanos:x}", std::process::id())
}

/// An agent whose one tool needs approval, so runs wait for a person.
fn agent_toml(name: &str, model: &str, prompt: &str) -> String {
    format!(
        r#"
name = "{name}"
system_prompt = "{prompt}"

[model]
id = "openai-compatible:mock-model"
base_url = "{model}"

[[tools]]
name = "send_notice"
description = "Sends a notice."
kind = "http"
method = "POST"
url = "http://127.0.0.1:9/unreachable"
risk = "dangerous"
parameters = {{ type = "object", properties = {{ to = {{ type = "string" }} }}, required = ["to"], additionalProperties = false }}
"#
    )
}

struct Server {
    base: String,
    store: Arc<dyn Store>,
    model: MockOpenAi,
    _schema: Schema,
}

impl Server {
    async fn start() -> Self {
        // A run asks for the tool (and so waits for approval) unless its
        // input says `answer`; `slow` makes each reply take a second.
        let model = MockOpenAi::start(|body| {
            let input = body["messages"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["role"] == "user"))
                .and_then(|m| m["content"].as_str())
                .unwrap_or("")
                .to_owned();
            let reply = if input.contains("answer") {
                MockReply::ok(completion_text("Answered."))
            } else {
                MockReply::ok(completion_tool_calls(&[("send_notice", json!({"to": "all@example.com"}))]))
            };
            if input.contains("slow") { reply.with_delay(Duration::from_secs(2)) } else { reply }
        })
        .await
        .unwrap();
        let schema = Schema::new();
        let store: Arc<dyn Store> = Arc::new(PgStore::connect(&schema.url()).await.unwrap());
        let operator = Arc::new(Operator::new(store.clone(), rein::providers::default_client().unwrap()));
        let state = AppState::new(operator, ServeConfig::default());
        let worker = state.worker(2, Duration::from_secs(1));
        tokio::spawn(worker.run(std::future::pending()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, rein_server::router(state)).await.unwrap() });
        Self { base, store, model, _schema: schema }
    }

    /// A fresh key of `tenant` with `scopes`.
    async fn key(&self, tenant: &str, scopes: &[Scope]) -> String {
        let new = rein::keys::generate(TenantId::parse(tenant).unwrap(), "test", scopes.to_vec(), 0).unwrap();
        self.store.create_api_key(&new.record).await.unwrap();
        new.key
    }

    async fn call(&self, key: Option<&str>, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let http = reqwest::Client::new();
        let url = format!("{}{path}", self.base);
        let mut request = if method == "get" { http.get(url) } else { http.post(url) };
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn register(&self, key: &str, name: &str, prompt: &str) -> String {
        let toml = agent_toml(name, &self.model.base_url, prompt);
        let (status, body) = self.call(Some(key), "post", "/v1/agents", Some(json!({ "toml": toml }))).await;
        assert_eq!(status, 201, "{body}");
        body["version"].as_str().unwrap().to_owned()
    }
}

/// The keyed endpoints of the OpenAPI document, with the scope each needs.
async fn keyed_endpoints(server: &Server) -> Vec<(String, String, Scope)> {
    let (_, document) = server.call(None, "get", "/openapi.json", None).await;
    let mut endpoints = Vec::new();
    for (path, operations) in document["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            if let Some(scope) = operation["x-rein-scope"].as_str() {
                endpoints.push((method.clone(), path.clone(), Scope::parse(scope).unwrap()));
            }
        }
    }
    endpoints
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn no_tenant_reaches_another_tenants_records_at_any_endpoint() {
    let server = Server::start().await;
    let acme = server.key("acme", &[Scope::Admin]).await;
    let globex = server.key("globex", &[Scope::Admin]).await;
    let version = server.register(&acme, "acme-mailer", "Send notices.").await;
    let (status, waiting) =
        server.call(Some(&acme), "post", "/v1/agents/acme-mailer/runs", Some(json!({ "input": "notify" }))).await;
    assert_eq!((status, waiting["status"].as_str()), (200, Some("waiting_approval")), "{waiting}");
    let run = waiting["run_id"].as_str().unwrap().to_owned();
    let (_, approvals) = server.call(Some(&acme), "get", "/v1/approvals", None).await;
    let approval = approvals["approvals"][0]["id"].as_str().unwrap().to_owned();

    // Every keyed endpoint, as globex (an admin of its own tenant), aimed
    // at acme's agent, run and approval. A new endpoint must be added here.
    let endpoints = keyed_endpoints(&server).await;
    assert!(endpoints.len() >= 19, "every endpoint but health, openapi and hooks needs a key: {endpoints:?}");
    for (method, path, _) in &endpoints {
        let target = path
            .replace("{name}", "acme-mailer")
            .replace("{id}", if path.contains("approvals") { &approval } else { &run });
        let body = match path.as_str() {
            "/v1/agents" => Some(json!({ "toml": agent_toml("acme-mailer", &server.model.base_url, "Taken over.") })),
            "/v1/agents/{name}/runs" => Some(json!({ "input": "notify" })),
            "/v1/agents/{name}/activate" => Some(json!({ "version": version })),
            "/v1/approvals/{id}/edit" => Some(json!({ "arguments": { "to": "x@example.com" } })),
            _ => None,
        };
        let (status, answer) = server.call(Some(&globex), method, &target, body).await;
        let expected: (u16, Option<&str>) = match (method.as_str(), path.as_str()) {
            // Listings answer with globex's own records: none of acme's.
            ("get", "/v1/runs" | "/v1/approvals" | "/v1/agents") => {
                assert!(!answer.to_string().contains("acme-mailer"), "{path} shows acme's records: {answer}");
                assert!(!answer.to_string().contains(&run), "{path} shows acme's run: {answer}");
                (200, None)
            }
            ("post", "/v1/agents") => (409, Some("agent_name_taken")),
            ("get", "/metrics") => (403, Some("missing_scope")),
            _ => (404, Some("not_found")),
        };
        assert_eq!((status, answer["error"]["code"].as_str()), expected, "{method} {target}: {answer}");
    }
    // Without the event stream's Accept header the events endpoint answered
    // JSON; the stream is refused the same way.
    let stream = reqwest::Client::new()
        .get(format!("{}/v1/runs/{run}/events", server.base))
        .bearer_auth(&globex)
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 404);
    // A prefix of a run id is not an id: no probing for other tenants' runs.
    let (status, _) = server.call(Some(&acme), "get", &format!("/v1/runs/{}", &run[..8]), None).await;
    assert_eq!(status, 404);

    // Acme's records are as they were, and acme still reaches them.
    let (status, mine) = server.call(Some(&acme), "get", &format!("/v1/runs/{run}"), None).await;
    assert_eq!((status, mine["status"].as_str()), (200, Some("waiting_approval")), "{mine}");
    let (_, agents) = server.call(Some(&acme), "get", "/v1/agents", None).await;
    assert_eq!(agents["agents"][0]["enabled"], true, "globex's disable did nothing: {agents}");
    assert_eq!(agents["agents"][0]["version"], version.as_str());
    let (_, approvals) = server.call(Some(&acme), "get", "/v1/approvals", None).await;
    assert_eq!(approvals["approvals"][0]["id"], approval.as_str(), "globex's decisions did nothing");
    let (status, events) = server.call(Some(&acme), "get", &format!("/v1/runs/{run}/events"), None).await;
    assert_eq!(status, 200);
    assert_eq!(events["events"][0]["tenant"], "acme", "the journal records whose run it is: {events}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn keys_need_the_scope_of_each_endpoint_and_revoked_keys_nothing() {
    let server = Server::start().await;
    let admin = server.key("default", &[Scope::Admin]).await;
    server.register(&admin, "mailer", "Send notices.").await;
    let endpoints = keyed_endpoints(&server).await;
    for scope in Scope::ALL.into_iter().filter(|s| *s != Scope::Admin) {
        let key = server.key("default", &[scope]).await;
        for (method, path, needed) in &endpoints {
            let target = path.replace("{name}", "mailer").replace("{id}", "0190b0b0-0000-7000-8000-000000000000");
            let (status, answer) = server.call(Some(&key), method, &target, Some(json!({}))).await;
            if *needed == scope {
                assert_ne!(status, 403, "{scope} may {method} {path}: {answer}");
            } else {
                assert_eq!((status, answer["error"]["code"].as_str()), (403, Some("missing_scope")), "{method} {path}");
            }
        }
    }
    for (method, path, _) in &endpoints {
        let target = path.replace("{name}", "mailer").replace("{id}", "x");
        let (status, answer) = server.call(None, method, &target, None).await;
        assert_eq!((status, answer["error"]["code"].as_str()), (401, Some("unauthorized")), "{method} {path}");
        let (status, _) = server.call(Some("rein_0123456789abcdef_nope"), method, &target, None).await;
        assert_eq!(status, 401, "a malformed key, {method} {path}");
    }
    // A revoked key opens nothing, at once.
    let reader = server.key("default", &[Scope::RunsRead]).await;
    assert_eq!(server.call(Some(&reader), "get", "/v1/runs", None).await.0, 200);
    let id = rein::keys::key_id(&reader).unwrap().to_owned();
    assert!(server.store.revoke_api_key(&id, rein::now_ms()).await.unwrap());
    let (status, answer) = server.call(Some(&reader), "get", "/v1/runs", None).await;
    assert_eq!((status, answer["error"]["message"].as_str()), (401, Some("the API key was revoked")));
    // Health and the API description need no key.
    assert_eq!(server.call(None, "get", "/healthz", None).await.0, 200);
    assert_eq!(server.call(None, "get", "/readyz", None).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenants_over_their_rate_or_run_cap_get_429_with_retry_after() {
    let server = Server::start().await;
    let ratey = TenantId::parse("ratey").unwrap();
    let limits = TenantLimits { requests_per_second: Some(1), burst: Some(3), max_concurrent_runs: None };
    server.store.set_tenant_limits(&ratey, &limits).await.unwrap();
    // Set before any request: a server reads tenants' limits every 5 s.
    let capped = TenantId::parse("capped").unwrap();
    let cap = TenantLimits { max_concurrent_runs: Some(1), ..TenantLimits::default() };
    server.store.set_tenant_limits(&capped, &cap).await.unwrap();
    let key = server.key("ratey", &[Scope::RunsRead]).await;
    let other = server.key("calm", &[Scope::RunsRead]).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let response =
            reqwest::Client::new().get(format!("{}/v1/runs", server.base)).bearer_auth(&key).send().await.unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            retry_after = response.headers().get("retry-after").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(&statuses[..3], [200, 200, 200], "the burst passes: {statuses:?}");
    assert_eq!(&statuses[3..], [429, 429], "then the rate holds: {statuses:?}");
    assert_eq!(retry_after.as_deref(), Some("1"));
    // Another tenant has a bucket of its own.
    assert_eq!(server.call(Some(&other), "get", "/v1/runs", None).await.0, 200);

    // The cap on runs at once counts across the store.
    let admin = server.key("capped", &[Scope::Admin]).await;
    server.register(&admin, "capped-agent", "Answer.").await;
    let body = json!({ "input": "slow answer", "mode": "async" });
    let (status, started) = server.call(Some(&admin), "post", "/v1/agents/capped-agent/runs", Some(body)).await;
    assert_eq!(status, 202, "{started}");
    // Queued or running, the async run fills the cap of one.
    let response = reqwest::Client::new()
        .post(format!("{}/v1/agents/capped-agent/runs", server.base))
        .bearer_auth(&admin)
        .json(&json!({ "input": "answer" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_runs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn versions_are_listed_activated_and_rolled_back() {
    let server = Server::start().await;
    let admin = server.key("default", &[Scope::Admin]).await;
    let first = server.register(&admin, "mailer", "Version one.").await;
    let second = server.register(&admin, "mailer", "Version two.").await;
    assert_ne!(first, second);
    let toml = agent_toml("mailer", &server.model.base_url, "Version three, staged.");
    let (status, staged) =
        server.call(Some(&admin), "post", "/v1/agents", Some(json!({ "toml": toml, "activate": false }))).await;
    assert_eq!((status, staged["active"].as_bool()), (201, Some(false)));
    let third = staged["version"].as_str().unwrap().to_owned();

    let run_version = |answer: Value| answer["agent_version"].as_str().unwrap_or_default().to_owned();
    let input = Some(json!({ "input": "answer" }));
    let runs = "/v1/agents/mailer/runs";
    assert_eq!(run_version(server.call(Some(&admin), "post", runs, input.clone()).await.1), second, "newest deploy");

    let (_, listed) = server.call(Some(&admin), "get", "/v1/agents/mailer/versions", None).await;
    let versions: Vec<&str> =
        listed["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap()).collect();
    assert_eq!(versions, [first.as_str(), second.as_str(), third.as_str()]);
    assert_eq!(listed["active_version"], second.as_str());
    assert_eq!(listed["deploys"].as_array().unwrap().len(), 2, "the staged version was not deployed");

    // Activate by a prefix.
    let body = Some(json!({ "version": &first[..10] }));
    let (status, active) = server.call(Some(&admin), "post", "/v1/agents/mailer/activate", body).await;
    assert_eq!((status, active["active_version"].as_str()), (200, Some(first.as_str())), "{active}");
    assert_eq!(run_version(server.call(Some(&admin), "post", runs, input.clone()).await.1), first);
    let (status, unknown) =
        server.call(Some(&admin), "post", "/v1/agents/mailer/activate", Some(json!({ "version": "ffff" }))).await;
    assert_eq!((status, unknown["error"]["code"].as_str()), (404, Some("not_found")));

    // Roll back: to the version deployed before; twice toggles.
    let (_, back) = server.call(Some(&admin), "post", "/v1/agents/mailer/rollback", None).await;
    assert_eq!(back["active_version"], second.as_str(), "{back}");
    assert_eq!(run_version(server.call(Some(&admin), "post", runs, input.clone()).await.1), second);
    let (_, again) = server.call(Some(&admin), "post", "/v1/agents/mailer/rollback", None).await;
    assert_eq!(again["active_version"], first.as_str());

    // An agent deployed once has nothing to roll back to.
    server.register(&admin, "single", "Only one.").await;
    let (status, none) = server.call(Some(&admin), "post", "/v1/agents/single/rollback", None).await;
    assert_eq!((status, none["error"]["code"].as_str()), (409, Some("nothing_to_roll_back")));
}

fn hook_toml(model: &str) -> String {
    format!(
        r#"
name = "triager"
system_prompt = "Triage the issue."

[model]
id = "openai-compatible:mock-model"
base_url = "{model}"

[[webhooks]]
name = "issues"
secret_env = "REIN_PG_TEST_HOOK_SECRET"
input = "answer: {{/title}}"
tolerance = "2m"
"#
    )
}

async fn deliver(server: &Server, secret: &[u8], timestamp: u64, id: &str, body: &[u8]) -> (u16, Value) {
    let signature = rein_server::sign(secret, timestamp, body);
    let response = reqwest::Client::new()
        .post(format!("{}/v1/hooks/issues", server.base))
        .header("content-type", "application/json")
        .header("x-rein-timestamp", timestamp.to_string())
        .header("x-rein-signature", signature)
        .header("x-rein-delivery", id)
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn webhook_signatures_stale_timestamps_and_replays_are_refused() {
    // SAFETY of the test: no other test in this binary reads this variable.
    unsafe { std::env::set_var("REIN_PG_TEST_HOOK_SECRET", "hook-secret") };
    let server = Server::start().await;
    let admin = server.key("acme", &[Scope::Admin]).await;
    let toml = hook_toml(&server.model.base_url);
    let (status, body) = server.call(Some(&admin), "post", "/v1/agents", Some(json!({ "toml": toml }))).await;
    assert_eq!(status, 201, "{body}");
    let now = rein::now_ms() / 1000;
    let payload = serde_json::to_vec(&json!({ "title": "Crash" })).unwrap();

    let (status, wrong) = deliver(&server, b"not-the-secret", now, "d-1", &payload).await;
    assert_eq!((status, wrong["error"]["code"].as_str()), (401, Some("bad_signature")));
    let (status, stale) = deliver(&server, b"hook-secret", now - 600, "d-1", &payload).await;
    assert_eq!((status, stale["error"]["code"].as_str()), (401, Some("stale_timestamp")));

    let (status, started) = deliver(&server, b"hook-secret", now, "d-1", &payload).await;
    assert_eq!(status, 202, "{started}");
    let run = started["run_id"].as_str().unwrap().to_owned();
    // A retry of the delivery, and the same signed bytes under a new id.
    let (status, again) = deliver(&server, b"hook-secret", now, "d-1", &payload).await;
    assert_eq!((status, again["error"]["code"].as_str()), (409, Some("duplicate_delivery")));
    assert_eq!(again["error"]["run_id"], run.as_str());
    let (status, replay) = deliver(&server, b"hook-secret", now, "d-2", &payload).await;
    assert_eq!((status, replay["error"]["code"].as_str()), (409, Some("duplicate_delivery")));

    // A delivery recorded by a server that died before queuing its run:
    // the sender's retry queues it, under the recorded id, once.
    let lost = rein::RunId::new();
    assert_eq!(server.store.record_delivery("issues", "d-lost", lost, rein::now_ms()).await.unwrap(), None);
    let lost_payload = serde_json::to_vec(&json!({ "title": "Lost" })).unwrap();
    let (status, retried) = deliver(&server, b"hook-secret", now, "d-lost", &lost_payload).await;
    assert_eq!((status, retried["error"]["run_id"].as_str()), (409, Some(lost.to_string().as_str())));
    let lost_url = format!("/v1/runs/{lost}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while server.call(Some(&admin), "get", &lost_url, None).await.1["status"] != "succeeded" {
        assert!(tokio::time::Instant::now() < deadline, "the retried delivery's run never ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = deliver(&server, b"hook-secret", now, "d-lost", &lost_payload).await;
    assert_eq!(status, 409, "a further retry starts nothing");

    // The one run ran, as the agent's tenant's.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, shown) = server.call(Some(&admin), "get", &format!("/v1/runs/{run}"), None).await;
        if shown["status"] == "succeeded" {
            assert_eq!(shown["input"], "answer: Crash");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the webhook's run did not finish: {shown}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, runs) = server.call(Some(&admin), "get", "/v1/runs", None).await;
    assert_eq!(runs["runs"].as_array().unwrap().len(), 2, "one run per delivery: {runs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_event_stream_resumes_after_last_event_id() {
    let server = Server::start().await;
    let admin = server.key("default", &[Scope::Admin]).await;
    server.register(&admin, "mailer", "Send notices.").await;
    let response = reqwest::Client::new()
        .post(format!("{}/v1/agents/mailer/runs", server.base))
        .bearer_auth(&admin)
        .json(&json!({ "input": "answer now", "mode": "stream" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    let events = common::sse_events(&text);
    assert_eq!(events.first().map(|e| e.1.as_str()), Some("run_started"));
    assert_eq!(events.last().map(|e| e.1.as_str()), Some("run_finished"));
    assert!(events.windows(2).all(|w| w[1].0 == w[0].0 + 1), "ids are consecutive seqs: {events:?}");
    let (_, runs) = server.call(Some(&admin), "get", "/v1/runs", None).await;
    let run = runs["runs"][0]["run_id"].as_str().unwrap().to_owned();
    let again = reqwest::Client::new()
        .get(format!("{}/v1/runs/{run}/events", server.base))
        .bearer_auth(&admin)
        .header("accept", "text/event-stream")
        .header("last-event-id", "1")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resumed = common::sse_events(&again);
    assert_eq!(resumed.first().map(|e| e.0), Some(2));
    assert_eq!(resumed, events[2..].to_vec(), "nothing missed, nothing twice");
}
