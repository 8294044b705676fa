//! A real HTTP server on 127.0.0.1 for the HTTP tool's tests: it records every
//! request it receives and answers according to the path, so tests can assert
//! both what the tool sent and how it handled each kind of response.

#![allow(dead_code)]

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rein_types::{HttpToolDecl, IdempotencyKey, RetryPolicy, RiskTier, RunId, ToolContext, ToolName, ToolSpec};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    pub headers: HashMap<String, String>,
    pub body: String,
}

#[derive(Default)]
pub struct Shared {
    pub requests: Mutex<Vec<Recorded>>,
}

pub struct TestServer {
    pub base: String,
    pub shared: Arc<Shared>,
}

impl TestServer {
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        let app = Router::new().fallback(handler).with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base: format!("http://{addr}"), shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Requests received for one path.
    pub fn hits(&self, path: &str) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.path == path).collect()
    }
}

async fn handler(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded {
        method: method.to_string(),
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let attempt = {
        let mut requests = shared.requests.lock().unwrap();
        requests.push(recorded.clone());
        requests.iter().filter(|r| r.path == recorded.path).count()
    };
    let path = recorded.path.as_str();
    match path {
        p if p.starts_with("/contacts/") => {
            let id = p.trim_start_matches("/contacts/");
            axum::Json(json!({
                "data": {"id": id, "name": "Ann Lee", "address": {"city": "Lyon"}},
                "meta": {"request": "r-1"}
            }))
            .into_response()
        }
        "/echo" => axum::Json(json!({
            "method": recorded.method,
            "query": recorded.query,
            "headers": recorded.headers,
            "body": serde_json::from_str::<Value>(&recorded.body).unwrap_or(Value::Null),
        }))
        .into_response(),
        "/echo-error" => {
            // A careless server that reflects the request into its error.
            let text = format!("Unauthorized: headers={:?} query={:?}", recorded.headers, recorded.query);
            (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"message": text}}))).into_response()
        }
        "/echo-500" => {
            let text = format!("boom: authorization={:?}", recorded.headers.get("authorization"));
            (StatusCode::INTERNAL_SERVER_ERROR, text).into_response()
        }
        "/flaky429" if attempt == 1 => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "0")], "slow down").into_response()
        }
        "/flaky429" => axum::Json(json!({"ok": true, "attempt": attempt})).into_response(),
        "/flaky429-wait1s" if attempt == 1 => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], "slow down").into_response()
        }
        "/flaky429-wait1s" => axum::Json(json!({"ok": true, "attempt": attempt})).into_response(),
        "/flaky503" if attempt <= 2 => (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response(),
        "/flaky503" => axum::Json(json!({"ok": true, "attempt": attempt})).into_response(),
        "/always500" => {
            (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(json!({"message": "database exploded"}))).into_response()
        }
        "/retry-after-long" => {
            (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "120")], "quota exhausted").into_response()
        }
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            axum::Json(json!({"late": true})).into_response()
        }
        "/missing" => {
            (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"message": "Contact 42 not found"}}))).into_response()
        }
        "/invalid" => {
            (StatusCode::UNPROCESSABLE_ENTITY, axum::Json(json!({"errors": [{"message": "date must be YYYY-MM-DD"}]})))
                .into_response()
        }
        "/forbidden" => (StatusCode::FORBIDDEN, "nope").into_response(),
        "/big" => {
            let items: Vec<Value> =
                (0..1000).map(|i| json!({"id": i, "title": format!("Ticket number {i}")})).collect();
            axum::Json(json!({"items": items, "total": 1000})).into_response()
        }
        // `/redirect/HOST:PORT/PATH` redirects to `http://HOST:PORT/PATH`.
        p if p.starts_with("/redirect/") => {
            let target = format!("http://{}", p.trim_start_matches("/redirect/"));
            (StatusCode::FOUND, [("location", target)], "moved").into_response()
        }
        "/text" => ([("content-type", "text/plain")], "plain words").into_response(),
        "/empty" => StatusCode::NO_CONTENT.into_response(),
        _ => (StatusCode::NOT_FOUND, "no such route").into_response(),
    }
}

pub fn spec(name: &str, parameters: Value) -> ToolSpec {
    ToolSpec::new(ToolName::new(name).unwrap(), "test tool", parameters, RiskTier::Read)
}

/// A schema declaring each name as a string property, so the build-time
/// template checks pass.
pub fn params(names: &[&str]) -> Value {
    let properties: serde_json::Map<String, Value> = names.iter().map(|n| (n.to_string(), json!({}))).collect();
    json!({"type": "object", "properties": properties})
}

pub fn decl(method: &str, url: String) -> HttpToolDecl {
    HttpToolDecl {
        method: method.into(),
        url,
        headers: BTreeMap::new(),
        query: BTreeMap::new(),
        body: Default::default(),
        timeout_ms: 2_000,
        retry: RetryPolicy { max_attempts: 3, initial_backoff_ms: 10, max_backoff_ms: 50 },
        extract: BTreeMap::new(),
        max_result_bytes: 100_000,
    }
}

pub fn context() -> ToolContext {
    let run_id = RunId::new();
    ToolContext::new(run_id, 1, "call-1", IdempotencyKey::for_call(run_id, 1, 0))
}

/// The client rein builds tools with: it follows no redirects.
pub fn client() -> reqwest::Client {
    rein_providers::default_client().unwrap()
}
