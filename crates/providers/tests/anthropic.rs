//! `Anthropic` against a real local HTTP server speaking the Messages API
//! (`POST /v1/messages`): answers with cache usage, tool use, the request it
//! sends, the retry policy on 529 and 429, and every error kind.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use rein_providers::{Anthropic, AnthropicConfig, ProviderError, RetryConfig, build_model_with};
use rein_types::{
    FinishReason, Message, Model, ModelErrorKind, ModelRef, ModelRequest, ProviderDecl, RiskTier, ToolCall, ToolCallId,
    ToolName, ToolSpec, Usage,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KEY: &str = "sk-ant-test-key-123";

#[derive(Clone)]
struct Recorded {
    headers: HeaderMap,
    body: Value,
}

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Value,
}

impl Reply {
    fn json(status: u16, body: Value) -> Self {
        Self { status, headers: Vec::new(), body }
    }

    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

type Script = dyn Fn(usize) -> Reply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Recorded>>,
    script: Box<Script>,
}

struct Server {
    base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// A server whose answer to the `n`th request (from 0) is `script(n)`.
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared { requests: Mutex::new(Vec::new()), script: Box::new(script) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().route("/v1/messages", post(handle)).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base_url: format!("http://{addr}"), shared, task }
    }

    fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }

    fn hits(&self) -> usize {
        self.shared.requests.lock().unwrap().len()
    }

    /// A provider for this server with millisecond backoffs.
    fn provider(&self) -> Anthropic {
        let mut config = AnthropicConfig::new("claude-test", self.base_url.clone());
        config.api_key = Some(KEY.into());
        config.api_key_env = Some("ANTHROPIC_API_KEY".into());
        config.timeout = Duration::from_secs(5);
        config.retry = RetryConfig {
            max_retries: 2,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        };
        Anthropic::new(config, None).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let recorded = Recorded { headers, body: serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let reply = {
        let mut requests = shared.requests.lock().unwrap();
        let reply = (shared.script)(requests.len());
        requests.push(recorded);
        reply
    };
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body.to_string()).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response.headers_mut().insert("request-id", HeaderValue::from_static("req_test_1"));
    for (name, value) in reply.headers {
        response.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_str(&value).unwrap());
    }
    response
}

fn message(content: Value, stop_reason: &str, usage: Value) -> Value {
    json!({
        "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-test-20250101",
        "content": content, "stop_reason": stop_reason, "stop_sequence": null, "usage": usage,
    })
}

fn text_message(text: &str) -> Value {
    message(json!([{"type": "text", "text": text}]), "end_turn", json!({"input_tokens": 10, "output_tokens": 3}))
}

fn error(kind: &str, text: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": text}})
}

fn request<'a>(messages: &'a [Message], tools: &'a [ToolSpec]) -> ModelRequest<'a> {
    ModelRequest {
        model: "claude-test",
        messages,
        tools,
        max_output_tokens: None,
        temperature: None,
        top_p: None,
        seed: None,
        stop: &[],
        output_schema: None,
    }
}

fn user(text: &str) -> Vec<Message> {
    vec![Message::User { text: text.into() }]
}

fn tool(name: &str) -> ToolSpec {
    ToolSpec::new(
        ToolName::new(name).unwrap(),
        format!("The {name} tool."),
        json!({"type": "object", "properties": {"q": {"type": "string"}}}),
        RiskTier::Read,
    )
}

#[tokio::test]
async fn text_answer_with_cache_usage() {
    let server = Server::start(|_| {
        Reply::json(
            200,
            message(
                json!([{"type": "text", "text": "Hello "}, {"type": "text", "text": "there."}]),
                "end_turn",
                json!({"input_tokens": 20, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 300,
                       "output_tokens": 7}),
            ),
        )
    })
    .await;
    let model = server.provider();
    assert_eq!(model.id(), "anthropic:claude-test");
    let messages = user("hi");
    let response = model.complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("Hello there."));
    assert!(response.tool_calls.is_empty());
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage, Usage { input_tokens: 420, output_tokens: 7, cached_input_tokens: 300 });
    assert_eq!(response.served_by, "claude-test-20250101");
}

#[tokio::test]
async fn a_single_tool_use() {
    let server = Server::start(|_| {
        Reply::json(
            200,
            message(
                json!([
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_01", "name": "lookup", "input": {"q": "Ada"}},
                ]),
                "tool_use",
                json!({"input_tokens": 30, "output_tokens": 9}),
            ),
        )
    })
    .await;
    let messages = user("find Ada");
    let tools = [tool("lookup")];
    let response = server.provider().complete(request(&messages, &tools)).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("Let me look."));
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.tool_calls,
        vec![ToolCall { id: ToolCallId("toolu_01".into()), name: "lookup".into(), arguments: r#"{"q":"Ada"}"#.into() }]
    );
    assert_eq!(response.usage, Usage { input_tokens: 30, output_tokens: 9, cached_input_tokens: 0 });
}

#[tokio::test]
async fn two_parallel_tool_uses() {
    let server = Server::start(|_| {
        Reply::json(
            200,
            message(
                json!([
                    {"type": "tool_use", "id": "toolu_a", "name": "lookup", "input": {"q": "Ada"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {}},
                ]),
                "tool_use",
                json!({"input_tokens": 30, "output_tokens": 19}),
            ),
        )
    })
    .await;
    let messages = user("both");
    let tools = [tool("lookup"), tool("weather")];
    let response = server.provider().complete(request(&messages, &tools)).await.unwrap();
    assert_eq!(response.text, None);
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    let calls: Vec<(&str, &str, &str)> =
        response.tool_calls.iter().map(|c| (c.id.0.as_str(), c.name.as_str(), c.arguments.as_str())).collect();
    assert_eq!(calls, [("toolu_a", "lookup", r#"{"q":"Ada"}"#), ("toolu_b", "weather", "{}")]);
}

#[tokio::test]
async fn the_request_has_anthropics_shape() {
    let server = Server::start(|_| Reply::json(200, text_message("ok"))).await;
    let messages = vec![
        Message::System { text: "You are terse.".into() },
        Message::User { text: "find Ada and the weather".into() },
        Message::Assistant {
            text: Some("Looking.".into()),
            tool_calls: vec![
                ToolCall {
                    id: ToolCallId("toolu_a".into()),
                    name: "lookup".into(),
                    arguments: r#"{"q":"Ada"}"#.into(),
                },
                ToolCall { id: ToolCallId("toolu_b".into()), name: "weather".into(), arguments: "{not json".into() },
            ],
        },
        Message::Tool { call_id: ToolCallId("toolu_a".into()), name: "lookup".into(), content: "Ada: 555".into() },
        Message::Tool { call_id: ToolCallId("toolu_b".into()), name: "weather".into(), content: "sunny".into() },
    ];
    let tools = [tool("lookup"), tool("weather")];
    let stop = vec!["END".to_owned()];
    let mut req = request(&messages, &tools);
    req.temperature = Some(0.5);
    req.top_p = Some(0.9);
    req.stop = &stop;
    server.provider().complete(req).await.unwrap();

    let recorded = server.requests().remove(0);
    assert_eq!(recorded.headers.get("x-api-key").unwrap(), KEY);
    assert_eq!(recorded.headers.get("anthropic-version").unwrap(), "2023-06-01");
    assert!(recorded.headers.get("authorization").is_none());
    assert_eq!(
        recorded.body,
        json!({
            "model": "claude-test",
            "max_tokens": 4096,
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": "find Ada and the weather"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Looking."},
                    {"type": "tool_use", "id": "toolu_a", "name": "lookup", "input": {"q": "Ada"}},
                    {"type": "tool_use", "id": "toolu_b", "name": "weather", "input": {}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_a", "content": "Ada: 555"},
                    {"type": "tool_result", "tool_use_id": "toolu_b", "content": "sunny"},
                ]},
            ],
            "tools": [
                {"name": "lookup", "description": "The lookup tool.", "input_schema": tools[0].parameters},
                {"name": "weather", "description": "The weather tool.", "input_schema": tools[1].parameters,
                 "cache_control": {"type": "ephemeral"}},
            ],
            "temperature": 0.5,
            "top_p": 0.9,
            "stop_sequences": ["END"],
        })
    );

    // The request's own cap wins over the default.
    let messages = user("hi");
    let mut req = request(&messages, &[]);
    req.max_output_tokens = Some(256);
    server.provider().complete(req).await.unwrap();
    let body = &server.requests()[1].body;
    assert_eq!(body["max_tokens"], 256);
    assert!(body.get("system").is_none() && body.get("tools").is_none() && body.get("stop_sequences").is_none());
}

#[tokio::test]
async fn overloaded_529_is_retried() {
    let server = Server::start(|n| match n {
        0 => Reply::json(529, error("overloaded_error", "Overloaded")),
        _ => Reply::json(200, text_message("recovered")),
    })
    .await;
    let messages = user("hi");
    let response = server.provider().complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("recovered"));
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn overloaded_every_time_is_a_server_error() {
    let server = Server::start(|_| Reply::json(529, error("overloaded_error", "Overloaded"))).await;
    let messages = user("hi");
    let error = server.provider().complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ServerError);
    assert_eq!(error.status, Some(529));
    assert!(error.message.contains("gave up after 3 attempts"), "{}", error.message);
    assert!(error.message.contains("req_test_1"), "{}", error.message);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn rate_limit_honours_retry_after() {
    let server = Server::start(|n| match n {
        0 => Reply::json(429, error("rate_limit_error", "Number of request tokens has exceeded your limit"))
            .header("retry-after", "0.2"),
        _ => Reply::json(200, text_message("later")),
    })
    .await;
    let messages = user("hi");
    let started = std::time::Instant::now();
    let response = server.provider().complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("later"));
    assert_eq!(server.hits(), 2);
    assert!(started.elapsed() >= Duration::from_millis(200), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn a_401_is_auth_without_the_key() {
    let server =
        Server::start(|_| Reply::json(401, error("authentication_error", &format!("invalid x-api-key {KEY}")))).await;
    let messages = user("hi");
    let error = server.provider().complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Auth);
    assert_eq!(error.status, Some(401));
    assert!(!error.message.contains(KEY), "{}", error.message);
    assert!(error.message.contains("ANTHROPIC_API_KEY"), "{}", error.message);
    assert_eq!(server.hits(), 1, "auth failures are not retried");
}

#[tokio::test]
async fn a_404_is_an_unknown_model() {
    let server = Server::start(|_| Reply::json(404, error("not_found_error", "model: claude-test"))).await;
    let messages = user("hi");
    let error = server.provider().complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::UnknownModel);
    assert!(error.message.contains("`claude-test`"), "{}", error.message);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_prompt_too_long_is_context_too_long_and_other_400s_are_bad_requests() {
    let server = Server::start(|n| match n {
        0 => Reply::json(400, error("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")),
        _ => Reply::json(400, error("invalid_request_error", "temperature: range: 0..1")),
    })
    .await;
    let messages = user("hi");
    let model = server.provider();
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ContextTooLong);
    assert!(error.message.contains("prompt is too long"), "{}", error.message);
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::BadRequest);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn the_factory_builds_a_working_anthropic_model() {
    let server = Server::start(|_| Reply::json(200, text_message("built"))).await;
    let decl = ProviderDecl { base_url: Some(server.base_url.clone()), ..ProviderDecl::default() };
    let env = |var: &str| (var == "ANTHROPIC_API_KEY").then(|| KEY.to_owned());
    let model = build_model_with(&ModelRef::new("anthropic", "claude-test"), &decl, None, env).unwrap();
    assert_eq!(model.id(), "anthropic:claude-test");
    let messages = user("hi");
    let response = model.complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("built"));
    assert_eq!(server.requests()[0].headers.get("x-api-key").unwrap(), KEY);
}

#[test]
fn the_factory_requires_anthropic_api_key() {
    let result =
        build_model_with(&ModelRef::new("anthropic", "claude-sonnet-4-5"), &ProviderDecl::default(), None, |_| None);
    match result {
        Ok(model) => panic!("built {} without a key", model.id()),
        Err(error) => assert_eq!(error, ProviderError::MissingKey { var: "ANTHROPIC_API_KEY".into() }),
    }
}
