//! `complete_streaming` of the three providers against a local HTTP server
//! that sends each provider's server-sent event sequences, written by hand
//! after the providers' documented formats and cut into small network
//! chunks that split events mid-line: text answers streamed in several
//! deltas, parallel tool calls whose argument fragments interleave, an error
//! status retried before the stream starts, and streams that break midway.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::Response;
use futures::stream;
use rein_providers::{Anthropic, AnthropicConfig, Gemini, GeminiConfig, OpenAiCompatible, OpenAiConfig, RetryConfig};
use rein_types::{
    FinishReason, Message, Model, ModelError, ModelErrorKind, ModelRequest, ModelResponse, StreamDelta, ToolCall,
    ToolCallId, Usage,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the server answers to one request.
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
    /// Break the connection after the body instead of ending it cleanly.
    abort: bool,
}

impl Reply {
    fn sse(body: String) -> Self {
        Self { status: 200, content_type: "text/event-stream", body, abort: false }
    }

    fn json(status: u16, body: Value) -> Self {
        Self { status, content_type: "application/json", body: body.to_string(), abort: false }
    }

    fn aborted(mut self) -> Self {
        self.abort = true;
        self
    }
}

/// One request as the server saw it: path with query, and JSON body.
#[derive(Clone, Debug)]
struct Seen {
    uri: String,
    body: Value,
}

type Script = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

struct Shared {
    seen: Mutex<Vec<Seen>>,
    script: Box<Script>,
}

struct Server {
    base_url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(script: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Self {
        let shared = Arc::new(Shared { seen: Mutex::new(Vec::new()), script: Box::new(script) });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base_url: format!("http://{addr}"), shared, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(shared): State<Arc<Shared>>, uri: Uri, body: Bytes) -> Response {
    let seen = Seen { uri: uri.to_string(), body: serde_json::from_slice(&body).unwrap_or(Value::Null) };
    let reply = {
        let mut all = shared.seen.lock().unwrap();
        let reply = (shared.script)(all.len(), &seen);
        all.push(seen);
        reply
    };
    // Seven-byte pieces: events, lines and JSON tokens are split anywhere.
    let mut pieces: Vec<Result<Bytes, std::io::Error>> =
        reply.body.as_bytes().chunks(7).map(|piece| Ok(Bytes::copy_from_slice(piece))).collect();
    if reply.abort {
        pieces.push(Err(std::io::Error::other("connection lost")));
    }
    Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap())
        .header(header::CONTENT_TYPE, reply.content_type)
        .body(Body::from_stream(stream::iter(pieces)))
        .unwrap()
}

fn fast_retry() -> RetryConfig {
    RetryConfig {
        max_retries: 2,
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_retry_after: Duration::from_secs(1),
    }
}

fn openai(server: &Server) -> OpenAiCompatible {
    let mut config = OpenAiConfig::new("mock", "gpt-test", format!("{}/v1", server.base_url));
    config.timeout = Duration::from_secs(5);
    config.retry = fast_retry();
    OpenAiCompatible::new(config, None).unwrap()
}

fn anthropic(server: &Server) -> Anthropic {
    let mut config = AnthropicConfig::new("claude-test", server.base_url.clone());
    config.api_key = Some("sk-ant-test".into());
    config.timeout = Duration::from_secs(5);
    config.retry = fast_retry();
    Anthropic::new(config, None).unwrap()
}

fn gemini(server: &Server) -> Gemini {
    let mut config = GeminiConfig::new("gemini-test", "AIza-test-key");
    config.base_url = server.base_url.clone();
    config.timeout = Duration::from_secs(5);
    config.retry = fast_retry();
    Gemini::new(config, None).unwrap()
}

/// Streams one call with a single user message, collecting the deltas.
async fn stream_call(model: &dyn Model) -> (Result<ModelResponse, ModelError>, Vec<StreamDelta>) {
    let messages = [Message::User { text: "hi".into() }];
    let deltas = Mutex::new(Vec::new());
    let sink = |delta: StreamDelta| deltas.lock().unwrap().push(delta);
    let result = model.complete_streaming(request(&messages), &sink).await;
    (result, deltas.into_inner().unwrap())
}

async fn whole_call(model: &dyn Model) -> Result<ModelResponse, ModelError> {
    let messages = [Message::User { text: "hi".into() }];
    model.complete(request(&messages)).await
}

fn request(messages: &[Message]) -> ModelRequest<'_> {
    ModelRequest {
        model: "",
        messages,
        tools: &[],
        max_output_tokens: None,
        temperature: None,
        top_p: None,
        seed: None,
        stop: &[],
        output_schema: None,
    }
}

/// `data:` events, one per JSON value, with OpenAI's `[DONE]` appended by
/// the caller where it belongs.
fn data_events(chunks: &[Value]) -> String {
    chunks.iter().map(|chunk| format!("data: {chunk}\n\n")).collect()
}

fn text(piece: &str) -> StreamDelta {
    StreamDelta::Text(piece.into())
}

fn started(index: usize, id: &str, name: &str) -> StreamDelta {
    StreamDelta::ToolCallStarted { index, id: id.into(), name: name.into() }
}

fn args(index: usize, fragment: &str) -> StreamDelta {
    StreamDelta::ToolCallArguments { index, fragment: fragment.into() }
}

/// The arguments of each call, put together from the deltas.
fn arguments_from(deltas: &[StreamDelta], calls: usize) -> Vec<Value> {
    (0..calls)
        .map(|call| {
            let text: String = deltas
                .iter()
                .filter_map(|d| match d {
                    StreamDelta::ToolCallArguments { index, fragment } if *index == call => Some(fragment.as_str()),
                    _ => None,
                })
                .collect();
            serde_json::from_str(&text).unwrap()
        })
        .collect()
}

fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
    ToolCall { id: ToolCallId(id.into()), name: name.into(), arguments: arguments.into() }
}

// ------------------------------------------------------------------ OpenAI

fn openai_chunk(delta: Value, finish: Option<&str>) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test-2025",
           "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
}

fn openai_usage(prompt: u64, completion: u64) -> Value {
    json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-test-2025",
           "choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": 2}}})
}

fn openai_text_stream() -> String {
    let mut body = data_events(&[
        openai_chunk(json!({"role": "assistant", "content": ""}), None),
        openai_chunk(json!({"content": "Hel"}), None),
        openai_chunk(json!({"content": "lo, wor"}), None),
        openai_chunk(json!({"content": "ld!"}), None),
        openai_chunk(json!({}), Some("stop")),
        openai_usage(12, 4),
    ]);
    body.push_str("data: [DONE]\n\n");
    body
}

#[tokio::test]
async fn openai_streams_text_in_deltas_and_asks_for_usage() {
    let server = Server::start(|_, _| Reply::sse(openai_text_stream())).await;
    let (result, deltas) = stream_call(&openai(&server)).await;
    assert_eq!(deltas, vec![text("Hel"), text("lo, wor"), text("ld!")]);
    assert_eq!(
        result.unwrap(),
        ModelResponse {
            text: Some("Hello, world!".into()),
            tool_calls: vec![],
            usage: Usage { input_tokens: 12, output_tokens: 4, cached_input_tokens: 2 },
            finish_reason: FinishReason::Stop,
            served_by: "gpt-test-2025".into(),
        }
    );
    let seen = server.seen();
    assert_eq!(seen[0].uri, "/v1/chat/completions");
    assert_eq!(seen[0].body["stream"], json!(true));
    assert_eq!(seen[0].body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn openai_reassembles_interleaved_parallel_tool_calls_like_complete() {
    let call_start = |index: usize, id: &str, name: &str| {
        json!({"tool_calls": [{"index": index, "id": id, "type": "function",
                               "function": {"name": name, "arguments": ""}}]})
    };
    let fragment =
        |index: usize, piece: &str| json!({"tool_calls": [{"index": index, "function": {"arguments": piece}}]});
    let mut sse = data_events(&[
        openai_chunk(json!({"role": "assistant", "content": null}), None),
        openai_chunk(call_start(0, "call_a", "get_weather"), None),
        openai_chunk(fragment(0, "{\"ci"), None),
        openai_chunk(call_start(1, "call_b", "get_time"), None),
        openai_chunk(fragment(1, "{\"zone\": \"Europe/"), None),
        openai_chunk(fragment(0, "ty\": \"Par"), None),
        openai_chunk(fragment(1, "Paris\"}"), None),
        openai_chunk(fragment(0, "is\"}"), None),
        openai_chunk(json!({}), Some("tool_calls")),
        openai_usage(30, 9),
    ]);
    sse.push_str("data: [DONE]\n\n");
    let whole = json!({"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-test-2025",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [
                {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}},
                {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"zone\": \"Europe/Paris\"}"}}]}}],
        "usage": {"prompt_tokens": 30, "completion_tokens": 9, "prompt_tokens_details": {"cached_tokens": 2}}});
    let server = Server::start(move |_, seen| {
        if seen.body["stream"] == json!(true) { Reply::sse(sse.clone()) } else { Reply::json(200, whole.clone()) }
    })
    .await;
    let model = openai(&server);
    let (result, deltas) = stream_call(&model).await;
    assert_eq!(
        deltas,
        vec![
            started(0, "call_a", "get_weather"),
            args(0, "{\"ci"),
            started(1, "call_b", "get_time"),
            args(1, "{\"zone\": \"Europe/"),
            args(0, "ty\": \"Par"),
            args(1, "Paris\"}"),
            args(0, "is\"}"),
        ]
    );
    assert_eq!(arguments_from(&deltas, 2), vec![json!({"city": "Paris"}), json!({"zone": "Europe/Paris"})]);
    let streamed = result.unwrap();
    assert_eq!(
        streamed.tool_calls,
        vec![
            call("call_a", "get_weather", "{\"city\": \"Paris\"}"),
            call("call_b", "get_time", "{\"zone\": \"Europe/Paris\"}")
        ]
    );
    assert_eq!(streamed.finish_reason, FinishReason::ToolCalls);
    assert_eq!(streamed, whole_call(&model).await.unwrap(), "both modes give the same response");
}

#[tokio::test]
async fn openai_retries_a_429_before_the_stream() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::json(429, json!({"error": {"message": "slow down", "type": "rate_limit", "code": null}}))
        } else {
            Reply::sse(openai_text_stream())
        }
    })
    .await;
    let (result, deltas) = stream_call(&openai(&server)).await;
    assert_eq!(result.unwrap().text.as_deref(), Some("Hello, world!"));
    assert_eq!(deltas.len(), 3, "the failed attempt delivered nothing");
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn openai_stream_broken_midway_is_a_transport_error_not_retried() {
    let sse =
        data_events(&[openai_chunk(json!({"content": "Hel"}), None), openai_chunk(json!({"content": "lo"}), None)]);
    let server = Server::start(move |_, _| Reply::sse(sse.clone()).aborted()).await;
    let (result, deltas) = stream_call(&openai(&server)).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Transport, "{error}");
    assert_eq!(deltas, vec![text("Hel"), text("lo")]);
    assert_eq!(server.seen().len(), 1, "deltas were delivered: no retry");
}

// --------------------------------------------------------------- Anthropic

fn anthropic_events(events: &[Value]) -> String {
    events.iter().map(|event| format!("event: {}\ndata: {event}\n\n", event["type"].as_str().unwrap())).collect()
}

fn message_start() -> Value {
    json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
        "content": [], "model": "claude-test-2025", "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": 20, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100,
                  "output_tokens": 1}}})
}

fn text_delta(index: usize, piece: &str) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}})
}

fn json_delta(index: usize, piece: &str) -> Value {
    json!({"type": "content_block_delta", "index": index, "delta": {"type": "input_json_delta", "partial_json": piece}})
}

fn block_stop(index: usize) -> Value {
    json!({"type": "content_block_stop", "index": index})
}

fn message_end(reason: &str, output: u64) -> [Value; 2] {
    [
        json!({"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": null},
               "usage": {"output_tokens": output}}),
        json!({"type": "message_stop"}),
    ]
}

fn anthropic_text_stream() -> String {
    let mut events = vec![
        message_start(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "ping"}),
        text_delta(0, "Bon"),
        text_delta(0, "jour"),
        text_delta(0, " !"),
        block_stop(0),
    ];
    events.extend(message_end("end_turn", 6));
    anthropic_events(&events)
}

#[tokio::test]
async fn anthropic_streams_text_with_cache_usage() {
    let server = Server::start(|_, _| Reply::sse(anthropic_text_stream())).await;
    let (result, deltas) = stream_call(&anthropic(&server)).await;
    assert_eq!(deltas, vec![text("Bon"), text("jour"), text(" !")]);
    assert_eq!(
        result.unwrap(),
        ModelResponse {
            text: Some("Bonjour !".into()),
            tool_calls: vec![],
            usage: Usage { input_tokens: 125, output_tokens: 6, cached_input_tokens: 100 },
            finish_reason: FinishReason::Stop,
            served_by: "claude-test-2025".into(),
        }
    );
    let seen = server.seen();
    assert_eq!(seen[0].uri, "/v1/messages");
    assert_eq!(seen[0].body["stream"], json!(true));
}

#[tokio::test]
async fn anthropic_reassembles_two_tool_calls_split_mid_token() {
    let mut events = vec![
        message_start(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        text_delta(0, "Checking."),
        block_stop(0),
        json!({"type": "content_block_start", "index": 1,
               "content_block": {"type": "tool_use", "id": "toolu_a", "name": "get_weather", "input": {}}}),
        json_delta(1, ""),
        json_delta(1, "{\"ci"),
        json_delta(1, "ty\": \"Pa"),
        json_delta(1, "ris\", \"days\": 1"),
        json_delta(1, "2}"),
        block_stop(1),
        json!({"type": "content_block_start", "index": 2,
               "content_block": {"type": "tool_use", "id": "toolu_b", "name": "get_time", "input": {}}}),
        json_delta(2, "{\"zo"),
        json_delta(2, "ne\": \"UTC\"}"),
        block_stop(2),
    ];
    events.extend(message_end("tool_use", 40));
    let sse = anthropic_events(&events);
    let server = Server::start(move |_, _| Reply::sse(sse.clone())).await;
    let (result, deltas) = stream_call(&anthropic(&server)).await;
    assert_eq!(
        deltas,
        vec![
            text("Checking."),
            started(0, "toolu_a", "get_weather"),
            args(0, "{\"ci"),
            args(0, "ty\": \"Pa"),
            args(0, "ris\", \"days\": 1"),
            args(0, "2}"),
            started(1, "toolu_b", "get_time"),
            args(1, "{\"zo"),
            args(1, "ne\": \"UTC\"}"),
        ]
    );
    assert_eq!(arguments_from(&deltas, 2), vec![json!({"city": "Paris", "days": 12}), json!({"zone": "UTC"})]);
    let response = result.unwrap();
    assert_eq!(response.text.as_deref(), Some("Checking."));
    assert_eq!(
        response.tool_calls,
        vec![
            call("toolu_a", "get_weather", "{\"city\":\"Paris\",\"days\":12}"),
            call("toolu_b", "get_time", "{\"zone\":\"UTC\"}")
        ]
    );
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(response.usage.output_tokens, 40);
}

#[tokio::test]
async fn anthropic_retries_a_429_before_the_stream() {
    let server = Server::start(|n, _| {
        if n == 0 {
            Reply::json(429, json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}))
        } else {
            Reply::sse(anthropic_text_stream())
        }
    })
    .await;
    let (result, _) = stream_call(&anthropic(&server)).await;
    assert_eq!(result.unwrap().text.as_deref(), Some("Bonjour !"));
    assert_eq!(server.seen().len(), 2);
}

#[tokio::test]
async fn anthropic_overloaded_mid_stream_is_a_server_error_not_retried() {
    let events = [
        message_start(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        text_delta(0, "Bon"),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ];
    let sse = anthropic_events(&events);
    let server = Server::start(move |_, _| Reply::sse(sse.clone())).await;
    let (result, deltas) = stream_call(&anthropic(&server)).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ServerError, "{error}");
    assert!(error.message.contains("Overloaded"), "{error}");
    assert_eq!(deltas, vec![text("Bon")]);
    assert_eq!(server.seen().len(), 1, "deltas were delivered: no retry");
}

#[tokio::test]
async fn anthropic_stream_cut_off_before_message_stop_is_an_error() {
    let events = [
        message_start(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        text_delta(0, "Bon"),
    ];
    let sse = anthropic_events(&events);
    let server = Server::start(move |_, _| Reply::sse(sse.clone())).await;
    let (result, _) = stream_call(&anthropic(&server)).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Transport, "{error}");
    assert!(error.message.contains("before the answer was complete"), "{error}");
    assert_eq!(server.seen().len(), 1);
}

// ------------------------------------------------------------------ Gemini

fn gemini_chunk(parts: Value, finish: Option<&str>, output_tokens: u64) -> Value {
    let mut candidate = json!({"content": {"role": "model", "parts": parts}, "index": 0});
    if let Some(finish) = finish {
        candidate["finishReason"] = json!(finish);
    }
    json!({"candidates": [candidate],
           "usageMetadata": {"promptTokenCount": 9, "candidatesTokenCount": output_tokens,
                             "totalTokenCount": 9 + output_tokens},
           "modelVersion": "gemini-test-001", "responseId": "r1"})
}

fn gemini_text_stream() -> String {
    // Gemini separates events with CRLF.
    data_events(&[
        gemini_chunk(json!([{"text": "Hallo"}]), None, 1),
        gemini_chunk(json!([{"text": ", Welt"}]), None, 3),
        gemini_chunk(json!([{"text": "!"}]), Some("STOP"), 4),
    ])
    .replace("\n\n", "\r\n\r\n")
}

#[tokio::test]
async fn gemini_streams_text_over_the_sse_endpoint() {
    let server = Server::start(|_, _| Reply::sse(gemini_text_stream())).await;
    let (result, deltas) = stream_call(&gemini(&server)).await;
    assert_eq!(deltas, vec![text("Hallo"), text(", Welt"), text("!")]);
    assert_eq!(
        result.unwrap(),
        ModelResponse {
            text: Some("Hallo, Welt!".into()),
            tool_calls: vec![],
            usage: Usage { input_tokens: 9, output_tokens: 4, cached_input_tokens: 0 },
            finish_reason: FinishReason::Stop,
            served_by: "gemini-test-001".into(),
        }
    );
    assert_eq!(server.seen()[0].uri, "/v1beta/models/gemini-test:streamGenerateContent?alt=sse");
}

#[tokio::test]
async fn gemini_two_function_calls_in_one_chunk() {
    let sse = data_events(&[gemini_chunk(
        json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
               {"functionCall": {"name": "get_time", "args": {"zone": "UTC"}}}]),
        Some("STOP"),
        7,
    )]);
    let whole = gemini_chunk(
        json!([{"functionCall": {"name": "get_weather", "args": {"city": "Paris"}}},
               {"functionCall": {"name": "get_time", "args": {"zone": "UTC"}}}]),
        Some("STOP"),
        7,
    );
    let server = Server::start(move |_, seen| {
        if seen.uri.contains("stream") { Reply::sse(sse.clone()) } else { Reply::json(200, whole.clone()) }
    })
    .await;
    let model = gemini(&server);
    let (result, deltas) = stream_call(&model).await;
    assert_eq!(
        deltas,
        vec![
            started(0, "call_0", "get_weather"),
            args(0, "{\"city\":\"Paris\"}"),
            started(1, "call_1", "get_time"),
            args(1, "{\"zone\":\"UTC\"}"),
        ]
    );
    let streamed = result.unwrap();
    assert_eq!(
        streamed.tool_calls,
        vec![call("call_0", "get_weather", "{\"city\":\"Paris\"}"), call("call_1", "get_time", "{\"zone\":\"UTC\"}")]
    );
    assert_eq!(streamed.finish_reason, FinishReason::ToolCalls);
    assert_eq!(streamed, whole_call(&model).await.unwrap(), "both modes give the same response");
}

#[tokio::test]
async fn gemini_retries_a_429_then_reports_a_blocked_prompt_and_a_cut_stream() {
    let server = Server::start(|n, _| match n {
        0 => Reply::json(429, json!({"error": {"code": 429, "message": "quota", "status": "RESOURCE_EXHAUSTED"}})),
        1 => Reply::sse(gemini_text_stream()),
        2 => Reply::sse(data_events(&[json!({"promptFeedback": {"blockReason": "SAFETY",
            "safetyRatings": [{"category": "HARM_CATEGORY_HARASSMENT", "probability": "HIGH"}]}})])),
        _ => Reply::sse(data_events(&[gemini_chunk(json!([{"text": "Hal"}]), None, 1)])).aborted(),
    })
    .await;
    let model = gemini(&server);
    let (result, _) = stream_call(&model).await;
    assert_eq!(result.unwrap().text.as_deref(), Some("Hallo, Welt!"));
    assert_eq!(server.seen().len(), 2);

    let (result, deltas) = stream_call(&model).await;
    let error = result.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::BadRequest, "{error}");
    assert!(error.message.contains("HARM_CATEGORY_HARASSMENT"), "{error}");
    assert!(deltas.is_empty());

    let (result, deltas) = stream_call(&model).await;
    assert_eq!(result.unwrap_err().kind, ModelErrorKind::Transport);
    assert_eq!(deltas, vec![text("Hal")]);
    assert_eq!(server.seen().len(), 4, "deltas were delivered: no retry");
}
