//! `OpenAiCompatible` against a real local HTTP server: answers, tool calls,
//! the request it sends, every error kind, and the retry policy.

mod common;

use common::{MockServer, Reply, error_body, fast_retry, text_completion, tool_call_completion};
use rein_providers::{OpenAiCompatible, OpenAiConfig};
use rein_types::{
    FinishReason, Message, Model, ModelErrorKind, ModelRequest, RiskTier, ToolCall, ToolCallId, ToolName, ToolSpec,
    Usage,
};
use serde_json::json;
use std::time::{Duration, Instant};

fn user(text: &str) -> Vec<Message> {
    vec![Message::User { text: text.into() }]
}

fn request<'a>(messages: &'a [Message], tools: &'a [ToolSpec]) -> ModelRequest<'a> {
    ModelRequest {
        model: "test-model",
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

fn lookup_tool() -> ToolSpec {
    ToolSpec::new(
        ToolName::new("lookup_contact").unwrap(),
        "Find a contact by name.",
        json!({"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]}),
        RiskTier::Read,
    )
}

#[tokio::test]
async fn plain_text_answer_with_usage() {
    let server = MockServer::start(|_, _| Reply::json(200, text_completion("Hello there."))).await;
    let model = server.provider(|_| {});
    assert_eq!(model.id(), "mock:test-model");
    let messages = user("hi");
    let response = model.complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("Hello there."));
    assert!(response.tool_calls.is_empty());
    assert_eq!(response.finish_reason, FinishReason::Stop);
    assert_eq!(response.usage, Usage { input_tokens: 12, output_tokens: 5, cached_input_tokens: 4 });
    assert_eq!(response.served_by, "test-model-2024");
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_single_tool_call() {
    let server = MockServer::start(|_, _| {
        Reply::json(200, tool_call_completion(&[("call_abc", "lookup_contact", r#"{"name":"Ada"}"#)]))
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("find Ada");
    let tools = [lookup_tool()];
    let response = model.complete(request(&messages, &tools)).await.unwrap();
    assert_eq!(response.text, None);
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    assert_eq!(
        response.tool_calls,
        vec![ToolCall {
            id: ToolCallId("call_abc".into()),
            name: "lookup_contact".into(),
            arguments: r#"{"name":"Ada"}"#.into()
        }]
    );
    assert_eq!(response.usage, Usage { input_tokens: 30, output_tokens: 9, cached_input_tokens: 0 });
}

#[tokio::test]
async fn two_parallel_tool_calls_in_one_message() {
    let server = MockServer::start(|_, _| {
        Reply::json(
            200,
            tool_call_completion(&[
                ("call_1", "lookup_contact", r#"{"name":"Ada"}"#),
                ("call_2", "lookup_contact", r#"{"name":"Grace"}"#),
            ]),
        )
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("find Ada and Grace");
    let tools = [lookup_tool()];
    let response = model.complete(request(&messages, &tools)).await.unwrap();
    assert_eq!(response.finish_reason, FinishReason::ToolCalls);
    let ids: Vec<&str> = response.tool_calls.iter().map(|c| c.id.0.as_str()).collect();
    assert_eq!(ids, ["call_1", "call_2"]);
    assert_eq!(response.tool_calls[1].arguments, r#"{"name":"Grace"}"#);
}

#[tokio::test]
async fn request_shape_matches_the_wire_format() {
    let server = MockServer::start(|_, _| Reply::json(200, text_completion("ok"))).await;
    let model = server.provider(|config| {
        config.api_key = Some("sk-test-123".into());
        config.api_key_env = Some("TEST_KEY".into());
        config.headers.push(("x-team".into(), "blue".into()));
    });
    let messages = vec![
        Message::System { text: "Be brief.".into() },
        Message::User { text: "Find Ada and Grace.".into() },
        Message::Assistant {
            text: Some("Looking them up.".into()),
            tool_calls: vec![
                ToolCall {
                    id: ToolCallId("call_1".into()),
                    name: "lookup_contact".into(),
                    arguments: r#"{"name":"Ada"}"#.into(),
                },
                ToolCall {
                    id: ToolCallId("call_2".into()),
                    name: "lookup_contact".into(),
                    arguments: r#"{"name":"Grace"}"#.into(),
                },
            ],
        },
        Message::Tool {
            call_id: ToolCallId("call_1".into()),
            name: "lookup_contact".into(),
            content: r#"{"status":"ok","data":{"email":"ada@example.com"}}"#.into(),
        },
        Message::Tool {
            call_id: ToolCallId("call_2".into()),
            name: "lookup_contact".into(),
            content: r#"{"status":"ok","data":{"email":"grace@example.com"}}"#.into(),
        },
    ];
    let tools = [lookup_tool()];
    let stop = ["END".to_owned()];
    let mut req = request(&messages, &tools);
    req.max_output_tokens = Some(321);
    req.temperature = Some(0.25);
    req.top_p = Some(0.5);
    req.seed = Some(42);
    req.stop = &stop;
    model.complete(req).await.unwrap();

    let received = server.requests();
    assert_eq!(received.len(), 1);
    let headers = &received[0].headers;
    assert_eq!(headers["authorization"], "Bearer sk-test-123");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["x-team"], "blue");
    assert_eq!(
        received[0].body,
        json!({
            "model": "test-model",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Find Ada and Grace."},
                {"role": "assistant", "content": "Looking them up.", "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "lookup_contact", "arguments": "{\"name\":\"Ada\"}"}},
                    {"id": "call_2", "type": "function",
                     "function": {"name": "lookup_contact", "arguments": "{\"name\":\"Grace\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_1",
                 "content": "{\"status\":\"ok\",\"data\":{\"email\":\"ada@example.com\"}}"},
                {"role": "tool", "tool_call_id": "call_2",
                 "content": "{\"status\":\"ok\",\"data\":{\"email\":\"grace@example.com\"}}"},
            ],
            "tools": [{"type": "function", "function": {
                "name": "lookup_contact",
                "description": "Find a contact by name.",
                "parameters": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            }}],
            "max_tokens": 321,
            "temperature": 0.25,
            "top_p": 0.5,
            "seed": 42,
            "stop": ["END"],
        })
    );
}

#[tokio::test]
async fn no_tools_means_no_tools_field_and_no_key_means_no_authorization() {
    let server = MockServer::start(|_, _| Reply::json(200, text_completion("ok"))).await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    model.complete(request(&messages, &[])).await.unwrap();
    let received = &server.requests()[0];
    assert!(received.body.get("tools").is_none(), "{}", received.body);
    assert!(received.body.get("max_tokens").is_none());
    assert!(!received.headers.contains_key("authorization"));
}

#[tokio::test]
async fn rate_limited_with_retry_after_zero_then_success() {
    let server = MockServer::start(|n, _| match n {
        0 => Reply::json(429, error_body("Rate limit reached", "requests", "rate_limit_exceeded"))
            .header("retry-after", "0"),
        _ => Reply::json(200, text_completion("finally")),
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    let response = model.complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("finally"));
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let server = MockServer::start(|n, _| match n {
        0 => {
            Reply::json(429, error_body("slow down", "requests", "rate_limit_exceeded")).header("retry-after-ms", "150")
        }
        _ => Reply::json(200, text_completion("ok")),
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    let started = Instant::now();
    model.complete(request(&messages, &[])).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(150), "{:?}", started.elapsed());
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn retry_after_beyond_the_cap_fails_at_once() {
    let server = MockServer::start(|_, _| {
        Reply::json(429, error_body("Rate limit reached", "requests", "rate_limit_exceeded"))
            .header("retry-after", "120")
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    let started = Instant::now();
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(error.kind, ModelErrorKind::RateLimited);
    assert_eq!(error.status, Some(429));
    assert_eq!(error.retry_after, Some(Duration::from_secs(120)));
    assert!(error.message.contains("Rate limit reached"), "{}", error.message);
    assert!(error.message.contains("120s"), "{}", error.message);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn server_error_twice_then_success() {
    let server = MockServer::start(|n, _| match n {
        0 | 1 => Reply::json(500, error_body("The server had an error", "server_error", "")),
        _ => Reply::json(200, text_completion("third time")),
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    let response = model.complete(request(&messages, &[])).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("third time"));
    assert_eq!(server.hits(), 3);
}

#[tokio::test]
async fn server_error_always_gives_up_after_max_retries_plus_one_attempts() {
    let server = MockServer::start(|_, _| Reply::json(503, error_body("overloaded", "server_error", ""))).await;
    let model = server.provider(|config| config.retry = fast_retry(3));
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ServerError);
    assert_eq!(error.status, Some(503));
    assert!(error.message.contains("overloaded"), "{}", error.message);
    assert!(error.message.contains("gave up after 4 attempts"), "{}", error.message);
    assert_eq!(server.hits(), 4);
}

#[tokio::test]
async fn zero_retries_means_one_attempt() {
    let server = MockServer::start(|_, _| Reply::json(500, error_body("boom", "server_error", ""))).await;
    let model = server.provider(|config| config.retry = fast_retry(0));
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ServerError);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn unauthorized_is_auth_and_names_the_key_variable() {
    let server = MockServer::start(|_, _| {
        Reply::json(
            401,
            error_body("Incorrect API key provided: sk-wrong.", "invalid_request_error", "invalid_api_key"),
        )
    })
    .await;
    let model = server.provider(|config| {
        config.api_key = Some("sk-wrong".into());
        config.api_key_env = Some("OPENAI_API_KEY".into());
    });
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Auth);
    assert_eq!(error.status, Some(401));
    assert!(error.message.contains("OPENAI_API_KEY"), "{}", error.message);
    assert!(error.message.contains("Incorrect API key provided"), "{}", error.message);
    assert!(!error.message.contains("sk-wrong"), "the key leaked: {}", error.message);
    assert_eq!(server.hits(), 1, "auth failures are not retried");
}

#[tokio::test]
async fn model_not_found_is_unknown_model() {
    let server = MockServer::start(|_, _| {
        Reply::json(
            404,
            error_body(
                "The model `gpt-9` does not exist or you do not have access to it.",
                "invalid_request_error",
                "model_not_found",
            ),
        )
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    let mut req = request(&messages, &[]);
    req.model = "gpt-9";
    let error = model.complete(req).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::UnknownModel);
    assert_eq!(error.status, Some(404));
    assert!(error.message.contains("`gpt-9`"), "{}", error.message);
    assert!(error.message.contains("does not exist"), "{}", error.message);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn context_length_exceeded_is_context_too_long() {
    let server = MockServer::start(|_, _| {
        Reply::json(
            400,
            error_body(
                "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens.",
                "invalid_request_error",
                "context_length_exceeded",
            ),
        )
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("a very long prompt");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ContextTooLong);
    assert_eq!(error.status, Some(400));
    assert!(error.message.contains("maximum context length is 128000"), "{}", error.message);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn other_client_errors_are_bad_requests_with_the_provider_message() {
    let server = MockServer::start(|_, _| {
        Reply::json(400, error_body("Invalid value for 'temperature': must be <= 2.", "invalid_request_error", ""))
    })
    .await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::BadRequest);
    assert!(error.message.contains("Invalid value for 'temperature'"), "{}", error.message);
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn a_slow_server_times_out_after_every_attempt() {
    let server =
        MockServer::start(|_, _| Reply::json(200, text_completion("too late")).delay(Duration::from_secs(5))).await;
    let model = server.provider(|config| {
        config.timeout = Duration::from_millis(100);
        config.retry = fast_retry(1);
    });
    let messages = user("hi");
    let started = Instant::now();
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(error.kind, ModelErrorKind::Timeout);
    assert_eq!(error.status, None);
    assert!(error.message.contains("gave up after 2 attempts"), "{}", error.message);
    assert_eq!(server.hits(), 2);
}

#[tokio::test]
async fn a_garbage_body_is_an_invalid_response() {
    let server = MockServer::start(|_, _| Reply::raw(200, "<html>definitely not json</html>")).await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::InvalidResponse);
    assert!(error.message.contains("definitely not json"), "{}", error.message);
    assert_eq!(server.hits(), 1, "a malformed answer is not retried");
}

#[tokio::test]
async fn an_unreachable_server_is_a_transport_error() {
    // Bind and release a port so nothing listens on it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut config = OpenAiConfig::new("local", "m", format!("http://{addr}/v1"));
    config.retry = fast_retry(1);
    let model = OpenAiCompatible::new(config, None).unwrap();
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::Transport);
    assert!(error.message.contains(&addr.to_string()), "{}", error.message);
    assert!(error.message.contains("gave up after 2 attempts"), "{}", error.message);
}

#[tokio::test]
async fn providers_can_share_one_client() {
    let server = MockServer::start(|_, _| Reply::json(200, text_completion("ok"))).await;
    let client = rein_providers::default_client().unwrap();
    let a =
        OpenAiCompatible::new(OpenAiConfig::new("mock", "a", server.base_url.clone()), Some(client.clone())).unwrap();
    let b = OpenAiCompatible::new(OpenAiConfig::new("mock", "b", server.base_url.clone()), Some(client)).unwrap();
    let messages = user("hi");
    let mut req = request(&messages, &[]);
    req.model = "";
    a.complete(req).await.unwrap();
    b.complete(req).await.unwrap();
    let models: Vec<_> = server.requests().iter().map(|r| r.body["model"].clone()).collect();
    assert_eq!(models, [json!("a"), json!("b")], "an empty request model falls back to the configured one");
}

#[tokio::test]
async fn a_runaway_body_is_an_invalid_response() {
    // 33 MiB of whitespace would parse as nothing but must not be read.
    let huge = " ".repeat(33 * 1024 * 1024);
    let server = MockServer::start(move |_, _| Reply::raw(200, &huge)).await;
    let model = server.provider(|_| {});
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::InvalidResponse);
    assert!(error.message.contains("over 32 MiB"), "{}", error.message);
    assert_eq!(server.hits(), 1, "not retried");
}

#[tokio::test]
async fn a_runaway_body_without_a_length_is_cut_off_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A server that streams chunks without saying how many, for ever.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let streamed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = streamed.clone();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 64 * 1024];
        let _ = socket.read(&mut request).await;
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
        socket.write_all(head.as_bytes()).await.unwrap();
        let chunk = format!("{:x}\r\n{}\r\n", 1024 * 1024, " ".repeat(1024 * 1024));
        // Stops when the client hangs up (or after 1 GiB, should it not).
        for _ in 0..1024 {
            if socket.write_all(chunk.as_bytes()).await.is_err() {
                break;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    });
    let mut config = OpenAiConfig::new("local", "m", format!("http://{addr}/v1"));
    config.retry = fast_retry(0);
    let model = OpenAiCompatible::new(config, None).unwrap();
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::InvalidResponse);
    assert!(error.message.contains("over 32 MiB"), "{}", error.message);
    drop(model);
    server.await.unwrap();
    let sent = streamed.load(std::sync::atomic::Ordering::Relaxed);
    assert!(sent < 100, "the client stopped reading near the cap: {sent} MiB sent");
}

#[tokio::test]
async fn redirects_are_reported_not_followed() {
    let elsewhere = MockServer::start(|_, _| Reply::json(200, text_completion("took the key"))).await;
    let target = format!("{}/chat/completions", elsewhere.base_url);
    let server = MockServer::start(move |_, _| Reply::raw(307, "").header("location", &target)).await;
    let model = server.provider(|config| {
        config.api_key = Some("sk-do-not-forward".into());
        config.headers.push(("x-api-key".into(), "also-do-not-forward".into()));
    });
    let messages = user("hi");
    let error = model.complete(request(&messages, &[])).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::InvalidResponse);
    assert_eq!(error.status, Some(307));
    assert!(error.message.contains("redirect"), "{}", error.message);
    assert_eq!(server.hits(), 1, "not retried");
    assert_eq!(elsewhere.hits(), 0, "the redirect was not followed");
}
