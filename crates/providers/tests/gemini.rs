//! `Gemini` against a real local HTTP server speaking the Gemini
//! `generateContent` wire format: answers, function calls, the request it
//! sends (shape, headers, URL), safety blocks, every error kind and retries.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use rein_providers::{Gemini, GeminiConfig, RetryConfig};
use rein_types::{
    FinishReason, Message, Model, ModelErrorKind, ModelRequest, RiskTier, ToolCall, ToolCallId, ToolName, ToolSpec,
    Usage,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const KEY: &str = "AIzaSy-test-secret-key";

// ------------------------------------------------------------ mock server

#[derive(Debug, Clone)]
struct Recorded {
    method: Method,
    uri: Uri,
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

struct MockGemini {
    base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl MockGemini {
    /// A server whose answer to the `n`th request (from 0) is `script(n)`.
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared { requests: Mutex::new(Vec::new()), script: Box::new(script) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
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

    fn model(&self) -> Gemini {
        let mut config = GeminiConfig::new("gemini-2.5-flash", KEY);
        config.base_url = self.base_url.clone();
        config.api_key_env = Some("GEMINI_API_KEY".into());
        config.timeout = Duration::from_secs(5);
        config.retry = RetryConfig {
            max_retries: 2,
            base_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            max_retry_after: Duration::from_secs(1),
        };
        Gemini::new(config, None).unwrap()
    }
}

impl Drop for MockGemini {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let recorded = Recorded { method, uri, headers, body: serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let reply = {
        let mut requests = shared.requests.lock().unwrap();
        let reply = (shared.script)(requests.len());
        requests.push(recorded);
        reply
    };
    let mut response = (StatusCode::from_u16(reply.status).unwrap(), reply.body.to_string()).into_response();
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    for (name, value) in reply.headers {
        response.headers_mut().insert(HeaderName::from_static(name), HeaderValue::from_str(&value).unwrap());
    }
    response
}

// ---------------------------------------------------------------- helpers

fn text_answer(text: &str) -> Value {
    json!({
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"}]
        }],
        "usageMetadata": {"promptTokenCount": 12, "candidatesTokenCount": 5, "thoughtsTokenCount": 3,
                          "cachedContentTokenCount": 4, "totalTokenCount": 20},
        "modelVersion": "gemini-2.5-flash-001",
        "responseId": "abc"
    })
}

fn calls_answer(calls: &[(&str, Value)]) -> Value {
    let parts: Vec<Value> =
        calls.iter().map(|(name, args)| json!({"functionCall": {"name": name, "args": args}})).collect();
    json!({
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": 30, "candidatesTokenCount": 9, "totalTokenCount": 39},
        "modelVersion": "gemini-2.5-flash-001"
    })
}

fn error(code: u16, status: &str, message: &str) -> Reply {
    Reply::json(code, json!({"error": {"code": code, "message": message, "status": status}}))
}

fn request<'a>(messages: &'a [Message], tools: &'a [ToolSpec]) -> ModelRequest<'a> {
    ModelRequest {
        model: "",
        messages,
        tools,
        max_output_tokens: Some(256),
        temperature: Some(0.2),
        top_p: None,
        seed: None,
        stop: &[],
        output_schema: None,
    }
}

fn user(text: &str) -> Vec<Message> {
    vec![Message::User { text: text.into() }]
}

fn lookup_tool() -> ToolSpec {
    ToolSpec::new(
        ToolName::new("lookup_contact").unwrap(),
        "Find a contact by name.",
        json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "additionalProperties": false,
            "properties": {"name": {"type": "string"}, "limit": {"type": ["integer", "null"], "default": 5}},
            "required": ["name"]
        }),
        RiskTier::Read,
    )
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall { id: ToolCallId(id.into()), name: name.into(), arguments: arguments.into() }
}

// ------------------------------------------------------------------ tests

#[tokio::test]
async fn text_answer_with_usage_metadata() {
    let server = MockGemini::start(|_| Reply::json(200, text_answer("Hello there."))).await;
    let model = server.model();
    assert_eq!(model.id(), "gemini:gemini-2.5-flash");
    let messages = user("hi");
    let response = model.complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("Hello there."));
    assert!(response.tool_calls.is_empty());
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage, Usage { input_tokens: 12, output_tokens: 8, cached_input_tokens: 4 });
    assert_eq!(response.served_by, "gemini-2.5-flash-001");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn one_function_call() {
    let server =
        MockGemini::start(|_| Reply::json(200, calls_answer(&[("lookup_contact", json!({"name": "Ada"}))]))).await;
    let messages = user("find Ada");
    let tools = [lookup_tool()];
    let response = server.model().complete(request(&messages, &tools)).await.unwrap();
    assert_eq!(response.text, None);
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.tool_calls, vec![call("call_0", "lookup_contact", r#"{"name":"Ada"}"#)]);
    assert_eq!(response.usage, Usage { input_tokens: 30, output_tokens: 9, cached_input_tokens: 0 });
}

#[tokio::test]
async fn two_function_calls_in_one_turn() {
    let server = MockGemini::start(|_| {
        Reply::json(
            200,
            calls_answer(&[("lookup_contact", json!({"name": "Ada"})), ("lookup_contact", json!({"name": "Alan"}))]),
        )
    })
    .await;
    let messages = user("find Ada and Alan");
    let tools = [lookup_tool()];
    let response = server.model().complete(request(&messages, &tools)).await.unwrap();
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.tool_calls,
        vec![
            call("call_0", "lookup_contact", r#"{"name":"Ada"}"#),
            call("call_1", "lookup_contact", r#"{"name":"Alan"}"#)
        ]
    );
}

#[tokio::test]
async fn the_request_has_gemini_shape_and_the_key_only_in_a_header() {
    let server = MockGemini::start(|_| Reply::json(200, text_answer("Ada is at ada@example.com."))).await;
    let messages = vec![
        Message::System { text: "You look things up.".into() },
        Message::User { text: "find Ada and Alan".into() },
        Message::Assistant {
            text: None,
            tool_calls: vec![
                call("call_0", "lookup_contact", r#"{"name":"Ada"}"#),
                call("call_1", "lookup_contact", r#"{"name":"Alan"}"#),
            ],
        },
        Message::Tool {
            call_id: ToolCallId("call_0".into()),
            name: "lookup_contact".into(),
            content: r#"{"status":"ok","data":{"email":"ada@example.com"}}"#.into(),
        },
        Message::Tool {
            call_id: ToolCallId("call_1".into()),
            name: "lookup_contact".into(),
            content: "no such contact".into(),
        },
    ];
    let tools = [lookup_tool()];
    server.model().complete(request(&messages, &tools)).await.unwrap();

    let recorded = server.requests().pop().unwrap();
    assert_eq!(recorded.method, Method::POST);
    assert_eq!(recorded.uri.path(), "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(recorded.uri.query(), None, "the key must never travel in the URL");
    assert!(!recorded.uri.to_string().contains(KEY));
    assert_eq!(recorded.headers.get("x-goog-api-key").unwrap(), KEY);
    assert!(recorded.headers.get("authorization").is_none());
    assert_eq!(recorded.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(
        recorded.body,
        json!({
            "systemInstruction": {"parts": [{"text": "You look things up."}]},
            "contents": [
                {"role": "user", "parts": [{"text": "find Ada and Alan"}]},
                {"role": "model", "parts": [
                    {"functionCall": {"name": "lookup_contact", "args": {"name": "Ada"}}},
                    {"functionCall": {"name": "lookup_contact", "args": {"name": "Alan"}}}
                ]},
                {"role": "user", "parts": [
                    {"functionResponse": {"name": "lookup_contact",
                        "response": {"status": "ok", "data": {"email": "ada@example.com"}}}},
                    {"functionResponse": {"name": "lookup_contact", "response": {"content": "no such contact"}}}
                ]}
            ],
            "tools": [{"functionDeclarations": [{
                "name": "lookup_contact",
                "description": "Find a contact by name.",
                "parameters": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "limit": {"type": "integer", "nullable": true}},
                    "required": ["name"]
                }
            }]}],
            "generationConfig": {"maxOutputTokens": 256, "temperature": 0.2}
        })
    );
    let text = recorded.body.to_string();
    assert!(!text.contains("additionalProperties") && !text.contains("$schema") && !text.contains("default"));
}

#[tokio::test]
async fn a_safety_blocked_prompt_is_a_clear_error() {
    let server = MockGemini::start(|_| {
        Reply::json(
            200,
            json!({
                "promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
                    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "NEGLIGIBLE"},
                    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"},
                    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "LOW"}
                ]},
                "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8},
                "modelVersion": "gemini-2.5-flash-001"
            }),
        )
    })
    .await;
    let messages = user("something dangerous");
    let error = server.model().complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::BadRequest);
    assert!(error.message.contains("blocked the prompt"), "{}", error.message);
    assert!(error.message.contains("SAFETY"), "{}", error.message);
    assert!(error.message.contains("HARM_CATEGORY_DANGEROUS_CONTENT"), "{}", error.message);
    assert!(!error.message.contains("HARASSMENT"), "only high ratings are named: {}", error.message);
    assert_eq!(server.hits(), 1, "a blocked prompt is not retried");
}

#[tokio::test]
async fn a_safety_finish_is_content_filter() {
    let server = MockGemini::start(|_| {
        Reply::json(
            200,
            json!({
                "candidates": [{"finishReason": "SAFETY", "index": 0, "safetyRatings": [
                    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "HIGH", "blocked": true}
                ]}],
                "usageMetadata": {"promptTokenCount": 8, "totalTokenCount": 8}
            }),
        )
    })
    .await;
    let messages = user("hi");
    let response = server.model().complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.finish_reason, FinishReason::ContentFilter);
    assert_eq!(response.text, None);
    assert!(response.tool_calls.is_empty());
}

#[tokio::test]
async fn unavailable_then_success_is_retried() {
    let server = MockGemini::start(|n| match n {
        0 => error(503, "UNAVAILABLE", "The model is overloaded. Please try again later."),
        _ => Reply::json(200, text_answer("ok")),
    })
    .await;
    let messages = user("hi");
    let response = server.model().complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("ok"));
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn resource_exhausted_then_success_honours_retry_after() {
    let server = MockGemini::start(|n| match n {
        0 => error(429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota).")
            .header("retry-after", "0.15"),
        _ => Reply::json(200, text_answer("ok")),
    })
    .await;
    let messages = user("hi");
    let started = Instant::now();
    let response = server.model().complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("ok"));
    assert_eq!(server.hits(), 2);
    assert!(started.elapsed() >= Duration::from_millis(150), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn resource_exhausted_everywhere_is_rate_limited_after_the_retries() {
    let server = MockGemini::start(|_| {
        Reply::json(
            429,
            json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.01s"}]}}),
        )
    })
    .await;
    let messages = user("hi");
    let error = server.model().complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::RateLimited);
    assert_eq!(error.status, Some(429));
    assert!(error.message.contains("gave up after 3 attempts"), "{}", error.message);
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn permission_denied_is_auth_without_the_key() {
    let server = MockGemini::start(|_| {
        error(403, "PERMISSION_DENIED", &format!("Method doesn't allow unregistered callers. Key {KEY} is not valid."))
    })
    .await;
    let messages = user("hi");
    let error = server.model().complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Auth);
    assert_eq!(error.status, Some(403));
    assert!(!error.message.contains(KEY), "{}", error.message);
    assert!(error.message.contains("GEMINI_API_KEY"), "{}", error.message);
    assert_eq!(server.hits(), 1, "auth failures are not retried");
}

#[tokio::test]
async fn invalid_api_key_400_is_auth() {
    let server = MockGemini::start(|_| {
        Reply::json(
            400,
            json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
                             "domain": "googleapis.com"}]}}),
        )
    })
    .await;
    let messages = user("hi");
    let error = server.model().complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Auth);
    assert!(!error.message.contains(KEY));
}

#[tokio::test]
async fn not_found_is_unknown_model() {
    let server = MockGemini::start(|_| {
        error(
            404,
            "NOT_FOUND",
            "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent.",
        )
    })
    .await;
    let messages = user("hi");
    let mut req = request(&messages, &[]);
    req.model = "gemini-9";
    let error = server.model().complete(req).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::UnknownModel);
    assert!(error.message.contains("gemini-9"), "{}", error.message);
    assert_eq!(server.requests()[0].uri.path(), "/v1beta/models/gemini-9:generateContent");
}

#[tokio::test]
async fn too_many_tokens_is_context_too_long_and_other_400s_bad_request() {
    let server = MockGemini::start(|n| match n {
        0 => error(
            400,
            "INVALID_ARGUMENT",
            "The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).",
        ),
        _ => error(400, "INVALID_ARGUMENT", "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), 9"),
    })
    .await;
    let messages = user("hi");
    let model = server.model();
    assert_eq!(model.complete(request(&messages, &[])).await.unwrap_err().kind, ModelErrorKind::ContextTooLong);
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::BadRequest);
    assert!(error.message.contains("temperature"), "{}", error.message);
    assert_eq!(server.hits(), 2);
}
