//! Failover, circuit breaking and shared rate limiting: the layers of
//! `rein_providers::layers` against local servers speaking the OpenAI wire
//! format, and (for the breaker's clock) against an in-process model with
//! paused time.

use async_trait::async_trait;
use rein_providers::layers::{Breaker, BreakerConfig, BreakerState, CircuitBreaker, Failover};
use rein_providers::{ProviderRegistry, build_chain_in};
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text};
use rein_types::{Message, Model, ModelError, ModelErrorKind, ModelRef, ModelRequest, ModelResponse, ProviderDecl};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn request(messages: &[Message]) -> ModelRequest<'_> {
    ModelRequest {
        model: "primary-model",
        messages,
        tools: &[],
        max_output_tokens: Some(64),
        temperature: None,
        top_p: None,
        seed: None,
        stop: &[],
        output_schema: None,
    }
}

fn user() -> Vec<Message> {
    vec![Message::User { text: "hello".into() }]
}

fn decl(server: &MockOpenAi) -> ProviderDecl {
    ProviderDecl {
        base_url: Some(server.base_url.clone()),
        max_retries: Some(0),
        timeout_ms: Some(2_000),
        ..ProviderDecl::default()
    }
}

fn model(id: &str) -> ModelRef {
    ModelRef::parse(id).unwrap()
}

fn no_env(_: &str) -> Option<String> {
    None
}

/// A chain `vllm:primary-model` → `ollama:backup` on two mock servers.
fn chain(registry: &ProviderRegistry, primary: &MockOpenAi, backup: &MockOpenAi) -> Arc<dyn Model> {
    build_chain_in(
        registry,
        (&model("vllm:primary-model"), &decl(primary)),
        &[(model("ollama:backup"), decl(backup))],
        None,
        no_env,
    )
    .unwrap()
}

#[tokio::test]
async fn server_errors_fail_over_and_served_by_names_the_fallback() {
    for status in [500, 503, 529] {
        let primary = MockOpenAi::scripted(vec![MockReply::error(status, "overloaded", "overloaded")]).await.unwrap();
        let backup = MockOpenAi::scripted(vec![MockReply::ok(completion_text("from backup"))]).await.unwrap();
        let registry = ProviderRegistry::default();
        let messages = user();
        let response = chain(&registry, &primary, &backup).complete(request(&messages)).await.unwrap();
        assert_eq!(response.served_by, "ollama:backup", "status {status}");
        assert_eq!(response.text.as_deref(), Some("from backup"));
        assert_eq!(primary.requests().len(), 1);
        let sent = backup.requests();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0]["model"], "backup", "the fallback is asked for its own model, not the primary's");
    }
}

#[tokio::test]
async fn the_primary_serves_when_healthy() {
    let primary = MockOpenAi::scripted(vec![MockReply::ok(completion_text("from primary"))]).await.unwrap();
    let backup = MockOpenAi::scripted(vec![MockReply::ok(completion_text("from backup"))]).await.unwrap();
    let registry = ProviderRegistry::default();
    let messages = user();
    let response = chain(&registry, &primary, &backup).complete(request(&messages)).await.unwrap();
    assert_eq!(response.served_by, "vllm:primary-model");
    assert!(backup.requests().is_empty());
}

#[tokio::test]
async fn a_time_out_fails_over() {
    let primary =
        MockOpenAi::scripted(vec![MockReply::ok(completion_text("too late")).with_delay(Duration::from_secs(5))])
            .await
            .unwrap();
    let backup = MockOpenAi::scripted(vec![MockReply::ok(completion_text("from backup"))]).await.unwrap();
    let registry = ProviderRegistry::default();
    let mut slow = decl(&primary);
    slow.timeout_ms = Some(200);
    let chain = build_chain_in(
        &registry,
        (&model("vllm:primary-model"), &slow),
        &[(model("ollama:backup"), decl(&backup))],
        None,
        no_env,
    )
    .unwrap();
    let messages = user();
    let response = chain.complete(request(&messages)).await.unwrap();
    assert_eq!(response.served_by, "ollama:backup");
}

#[tokio::test]
async fn non_retryable_errors_do_not_fail_over() {
    let primary = MockOpenAi::scripted(vec![MockReply::error(400, "bad temperature", "invalid_value")]).await.unwrap();
    let backup = MockOpenAi::scripted(vec![MockReply::ok(completion_text("from backup"))]).await.unwrap();
    let registry = ProviderRegistry::default();
    let messages = user();
    let error = chain(&registry, &primary, &backup).complete(request(&messages)).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::BadRequest);
    assert!(backup.requests().is_empty());
}

#[tokio::test]
async fn when_every_model_fails_the_error_names_each() {
    let primary = MockOpenAi::scripted(vec![MockReply::error(503, "down", "down")]).await.unwrap();
    let backup = MockOpenAi::scripted(vec![MockReply::error(500, "also down", "down")]).await.unwrap();
    let registry = ProviderRegistry::default();
    let messages = user();
    let error = chain(&registry, &primary, &backup).complete(request(&messages)).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ServerError);
    assert!(error.message.contains("ollama:backup"), "{}", error.message);
    assert!(error.message.contains("vllm:primary-model"), "{}", error.message);
}

#[tokio::test]
async fn an_open_breaker_sends_calls_straight_to_the_fallback_and_is_shared() {
    let primary = MockOpenAi::scripted(vec![MockReply::error(503, "down", "down")]).await.unwrap();
    let backup = MockOpenAi::scripted(vec![MockReply::ok(completion_text("from backup"))]).await.unwrap();
    let registry = ProviderRegistry::new(BreakerConfig { failure_threshold: 2, cool_down: Duration::from_secs(60) });
    let messages = user();
    // Two agents, one endpoint: they share its breaker.
    let first = chain(&registry, &primary, &backup);
    let second = chain(&registry, &primary, &backup);
    first.complete(request(&messages)).await.unwrap();
    second.complete(request(&messages)).await.unwrap();
    assert_eq!(primary.requests().len(), 2);
    for _ in 0..5 {
        let response = first.complete(request(&messages)).await.unwrap();
        assert_eq!(response.served_by, "ollama:backup");
    }
    assert_eq!(primary.requests().len(), 2, "an open breaker fails fast without calling the endpoint");
}

/// A model answering from a script, counting calls.
struct Scripted {
    replies: Mutex<VecDeque<Result<(), ModelErrorKind>>>,
    calls: AtomicU32,
}

impl Scripted {
    fn new(replies: Vec<Result<(), ModelErrorKind>>) -> Arc<Self> {
        Arc::new(Self { replies: Mutex::new(replies.into()), calls: AtomicU32::new(0) })
    }
}

#[async_trait]
impl Model for Scripted {
    fn id(&self) -> String {
        "test:scripted".into()
    }

    async fn complete(&self, _request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let next = self.replies.lock().unwrap().pop_front().unwrap_or(Ok(()));
        match next {
            Ok(()) => Ok(ModelResponse {
                text: Some("ok".into()),
                tool_calls: Vec::new(),
                usage: Default::default(),
                finish_reason: rein_types::FinishReason::Stop,
                served_by: "scripted".into(),
            }),
            Err(kind) => Err(ModelError::new(kind, "scripted failure")),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_after_n_failures_then_half_opens_and_closes() {
    use ModelErrorKind::{BadRequest, ServerError, Timeout};
    let inner = Scripted::new(vec![
        Err(ServerError),
        Err(BadRequest), // not counted, but not a success either
        Err(Timeout),
        Err(ServerError), // third counted failure: opens
        Err(ServerError), // the first probe fails: re-opens
        Ok(()),           // the second probe succeeds: closes
    ]);
    let breaker =
        Arc::new(Breaker::new("test", BreakerConfig { failure_threshold: 3, cool_down: Duration::from_secs(30) }));
    let model = CircuitBreaker::new(inner.clone(), breaker.clone());
    let messages = user();
    for _ in 0..4 {
        assert!(model.complete(request(&messages)).await.is_err());
    }
    assert!(matches!(breaker.state(), BreakerState::Open { .. }));
    assert_eq!(inner.calls.load(Ordering::SeqCst), 4);

    let fast = model.complete(request(&messages)).await.unwrap_err();
    assert_eq!(fast.kind, ServerError, "the fail-fast error keeps the family of the failure that opened it");
    assert!(fast.message.contains("circuit breaker") && fast.message.contains("open"), "{}", fast.message);
    assert!(fast.is_retryable());
    assert_eq!(inner.calls.load(Ordering::SeqCst), 4, "open: no call reaches the model");

    tokio::time::advance(Duration::from_secs(29)).await;
    assert!(model.complete(request(&messages)).await.is_err());
    assert_eq!(inner.calls.load(Ordering::SeqCst), 4, "still cooling down");

    tokio::time::advance(Duration::from_secs(2)).await;
    assert!(model.complete(request(&messages)).await.is_err(), "the probe fails");
    assert_eq!(inner.calls.load(Ordering::SeqCst), 5);
    assert!(matches!(breaker.state(), BreakerState::Open { .. }), "a failed probe re-opens");

    tokio::time::advance(Duration::from_secs(31)).await;
    model.complete(request(&messages)).await.unwrap();
    assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
    model.complete(request(&messages)).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 7);
}

#[tokio::test(start_paused = true)]
async fn failover_uses_the_fallback_while_the_primary_breaker_is_open() {
    let primary = Scripted::new(vec![Err(ModelErrorKind::ServerError)]);
    let backup = Scripted::new(vec![]);
    let breaker =
        Arc::new(Breaker::new("p", BreakerConfig { failure_threshold: 1, cool_down: Duration::from_secs(30) }));
    let chain = Failover::new(Arc::new(CircuitBreaker::new(primary.clone(), breaker)), vec![backup.clone()]);
    let messages = user();
    for _ in 0..3 {
        assert_eq!(chain.complete(request(&messages)).await.unwrap().served_by, "test:scripted");
    }
    assert_eq!(primary.calls.load(Ordering::SeqCst), 1);
    assert_eq!(backup.calls.load(Ordering::SeqCst), 3);
    tokio::time::advance(Duration::from_secs(31)).await;
    chain.complete(request(&messages)).await.unwrap();
    assert_eq!(primary.calls.load(Ordering::SeqCst), 2, "after the cool-down the primary is probed again");
    assert_eq!(backup.calls.load(Ordering::SeqCst), 3);
}

/// A server that allows `per_second` requests in any sliding second and
/// answers 429 above that.
async fn limited_server(per_second: usize) -> MockOpenAi {
    MockOpenAi::rate_limited(per_second, completion_text("ok")).await.unwrap()
}

async fn fire(model: Arc<dyn Model>, calls: usize) -> Vec<Result<ModelResponse, ModelError>> {
    let tasks: Vec<_> = (0..calls)
        .map(|_| {
            let model = model.clone();
            tokio::spawn(async move {
                let messages = user();
                model.complete(request(&messages)).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(calls);
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_calls_queue_instead_of_hitting_429() {
    let server = limited_server(100).await;
    let registry = ProviderRegistry::default();
    // Each bucket holds one second of its rate: at 2,700 a minute (45 a
    // second) no sliding second sees more than 90 requests.
    let limited = ProviderDecl {
        requests_per_minute: Some(2_700),
        tokens_per_minute: Some(10_000_000),
        max_concurrency: Some(50),
        timeout_ms: Some(20_000),
        ..decl(&server)
    };
    // Many agents, one endpoint: each builds its own model; all share the limits.
    let models: Vec<Arc<dyn Model>> = (0..4)
        .map(|_| {
            rein_providers::build_model_in(&registry, &model("vllm:primary-model"), &limited, None, no_env).unwrap()
        })
        .collect();
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for model in models {
        handles.push(tokio::spawn(fire(model, 50)));
    }
    let mut failures = Vec::new();
    for handle in handles {
        failures.extend(handle.await.unwrap().into_iter().filter_map(Result::err));
    }
    assert!(failures.is_empty(), "{} calls failed, first: {:?}", failures.len(), failures.first());
    assert_eq!(server.requests().len(), 200);
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_limits_the_same_load_hits_429() {
    let server = limited_server(100).await;
    let registry = ProviderRegistry::default();
    let model =
        rein_providers::build_model_in(&registry, &model("vllm:primary-model"), &decl(&server), None, no_env).unwrap();
    let results = fire(model, 200).await;
    let limited = results.iter().filter(|r| matches!(r, Err(e) if e.kind == ModelErrorKind::RateLimited)).count();
    assert!(limited > 0, "the control: the server does enforce its limit");
}
