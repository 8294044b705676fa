//! A local HTTP server that speaks the OpenAI Chat Completions wire format,
//! for end-to-end tests of providers and of the `rein` binary. It binds
//! 127.0.0.1 on a free port and answers with whatever the test's responder
//! returns; every request body is recorded.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One reply of the mock.
#[derive(Debug, Clone)]
pub struct MockReply {
    pub status: u16,
    pub body: Value,
    pub headers: Vec<(String, String)>,
    pub delay: Option<Duration>,
}

impl MockReply {
    pub fn ok(body: Value) -> Self {
        Self { status: 200, body, headers: Vec::new(), delay: None }
    }

    pub fn error(status: u16, message: &str, code: &str) -> Self {
        Self {
            status,
            body: json!({ "error": { "message": message, "type": "invalid_request_error", "code": code } }),
            headers: Vec::new(),
            delay: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A `chat.completion` whose message is a final text answer.
pub fn completion_text(text: &str) -> Value {
    completion(json!({ "role": "assistant", "content": text }), "stop")
}

/// A `chat.completion` with these tool calls (name, arguments).
pub fn completion_tool_calls(calls: &[(&str, Value)]) -> Value {
    let tool_calls: Vec<Value> = calls
        .iter()
        .map(|(name, arguments)| {
            json!({
                "id": format!("call_mock{}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
                "type": "function",
                "function": { "name": name, "arguments": arguments.to_string() }
            })
        })
        .collect();
    completion(json!({ "role": "assistant", "content": null, "tool_calls": tool_calls }), "tool_calls")
}

fn completion(message: Value, finish_reason: &str) -> Value {
    json!({
        "id": format!("chatcmpl-{}", NEXT_ID.fetch_add(1, Ordering::Relaxed)),
        "object": "chat.completion",
        "created": 1_767_225_600,
        "model": "mock-model",
        "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason }],
        "usage": { "prompt_tokens": 120, "completion_tokens": 15, "total_tokens": 135 }
    })
}

type Responder = dyn Fn(&Value) -> MockReply + Send + Sync;

struct Shared {
    responder: Box<Responder>,
    requests: Mutex<Vec<(HeaderMap, Value)>>,
}

/// A running mock server. Dropping it stops the server.
pub struct MockOpenAi {
    /// Base URL to configure a provider with (`http://127.0.0.1:PORT/v1`).
    pub base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl MockOpenAi {
    /// Starts a server answering each request with `responder(body)`.
    pub async fn start(responder: impl Fn(&Value) -> MockReply + Send + Sync + 'static) -> std::io::Result<Self> {
        let shared = Arc::new(Shared { responder: Box::new(responder), requests: Mutex::new(Vec::new()) });
        let app = Router::new().route("/v1/chat/completions", post(handle)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { base_url: format!("http://{addr}/v1"), shared, task })
    }

    /// Replies in order; after the last, repeats it.
    pub async fn scripted(replies: Vec<MockReply>) -> std::io::Result<Self> {
        let replies = Mutex::new((replies, 0usize));
        Self::start(move |_| {
            let Ok(mut guard) = replies.lock() else { return MockReply::error(500, "mock poisoned", "mock") };
            let (list, next) = &mut *guard;
            let index = (*next).min(list.len().saturating_sub(1));
            *next += 1;
            list.get(index).cloned().unwrap_or_else(|| MockReply::error(500, "empty script", "mock"))
        })
        .await
    }

    /// Answers `reply` to at most `per_second` requests in any sliding second
    /// and 429 above that, as a provider's rate limit does.
    pub async fn rate_limited(per_second: usize, reply: Value) -> std::io::Result<Self> {
        let seen: Mutex<std::collections::VecDeque<std::time::Instant>> = Mutex::new(Default::default());
        Self::start(move |_| {
            let now = std::time::Instant::now();
            let Ok(mut seen) = seen.lock() else { return MockReply::error(500, "mock poisoned", "mock") };
            while seen.front().is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1)) {
                seen.pop_front();
            }
            if seen.len() >= per_second {
                return MockReply::error(429, "rate limit exceeded", "rate_limit_exceeded");
            }
            seen.push_back(now);
            MockReply::ok(reply.clone())
        })
        .await
    }

    /// The bodies of every request so far.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().map(|r| r.iter().map(|(_, body)| body.clone()).collect()).unwrap_or_default()
    }

    /// The headers of every request so far.
    pub fn request_headers(&self) -> Vec<HeaderMap> {
        self.shared.requests.lock().map(|r| r.iter().map(|(h, _)| h.clone()).collect()).unwrap_or_default()
    }
}

impl Drop for MockOpenAi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    let Ok(body) = serde_json::from_str::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "body is not JSON").into_response();
    };
    let reply = (shared.responder)(&body);
    if let Ok(mut requests) = shared.requests.lock() {
        requests.push((headers, body));
    }
    if let Some(delay) = reply.delay {
        tokio::time::sleep(delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(reply.body)).into_response();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) =
            (axum::http::HeaderName::from_bytes(name.as_bytes()), axum::http::HeaderValue::from_str(&value))
        {
            response.headers_mut().insert(name, value);
        }
    }
    response
}
