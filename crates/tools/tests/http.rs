//! The HTTP tool against a real local server: substitution, bodies, headers,
//! retries, time-outs, error statuses, extraction and truncation.

mod common;

use common::{TestServer, client, context, decl, params, spec};
use rein_tools::{HttpTool, ToolBuildError};
use rein_types::{BodyMapping, RetryPolicy, Tool, ToolOutcome};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

fn tool(name: &str, param_names: &[&str], decl: rein_types::HttpToolDecl) -> HttpTool {
    HttpTool::new(spec(name, params(param_names)), decl, client()).unwrap()
}

fn ok_data(outcome: ToolOutcome) -> (Value, bool) {
    match outcome {
        ToolOutcome::Ok { data, truncated } => (data, truncated),
        other => panic!("expected ok, got {other:?}"),
    }
}

fn error_parts(outcome: ToolOutcome) -> (String, Option<String>, bool) {
    match outcome {
        ToolOutcome::Error { message, hint, retryable } => (message, hint, retryable),
        other => panic!("expected an error, got {other:?}"),
    }
}

#[tokio::test]
async fn get_substitutes_url_and_query() {
    let server = TestServer::start().await;
    let mut d = decl("GET", server.url("/contacts/{id}"));
    d.query.insert("expand".into(), "{expand}".into());
    d.query.insert("fixed".into(), "yes".into());
    d.query.insert("q".into(), "name:{name}".into());
    let t = tool("get_contact", &["id", "expand", "name"], d);

    let outcome = t.call(json!({"id": "a b/c", "expand": "notes", "name": "Ann & co"}), &context()).await;
    let (data, truncated) = ok_data(outcome);
    assert!(!truncated);
    assert_eq!(data["data"]["name"], "Ann Lee");

    let hit = &server.requests()[0];
    assert_eq!(hit.method, "GET");
    // `/` in an argument stays inside its path segment.
    assert_eq!(hit.path, "/contacts/a%20b%2Fc");
    assert_eq!(hit.query.as_deref(), Some("expand=notes&fixed=yes&q=name%3AAnn+%26+co"));

    // An absent optional argument drops its query pair.
    let outcome = t.call(json!({"id": "7", "name": "x"}), &context()).await;
    assert!(outcome.is_ok());
    assert_eq!(server.requests()[1].query.as_deref(), Some("fixed=yes&q=name%3Ax"));
}

#[tokio::test]
async fn post_with_template_body_sends_typed_values() {
    let server = TestServer::start().await;
    let mut d = decl("POST", server.url("/echo"));
    d.body = BodyMapping::Template(json!({
        "contact": {"id": "{id}", "tags": "{tags}", "vip": "{vip}"},
        "note": "Hello {name}, ticket {id}",
        "source": "agent",
        "optional": "{missing}"
    }));
    let t = tool("create_note", &["id", "tags", "vip", "name", "missing"], d);
    let outcome = t.call(json!({"id": 42, "tags": ["a", "b"], "vip": true, "name": "Ann"}), &context()).await;
    assert!(outcome.is_ok(), "{outcome:?}");

    let hit = &server.hits("/echo")[0];
    assert_eq!(hit.method, "POST");
    assert_eq!(hit.headers.get("content-type").map(String::as_str), Some("application/json"));
    let body: Value = serde_json::from_str(&hit.body).unwrap();
    assert_eq!(
        body,
        json!({
            "contact": {"id": 42, "tags": ["a", "b"], "vip": true},
            "note": "Hello Ann, ticket 42",
            "source": "agent"
        })
    );
}

#[tokio::test]
async fn post_with_arguments_body_sends_the_arguments() {
    let server = TestServer::start().await;
    let mut d = decl("POST", server.url("/echo"));
    d.body = BodyMapping::Arguments;
    let t = tool("create", &["title", "priority"], d);
    let args = json!({"title": "Printer on fire", "priority": 1});
    let (data, _) = ok_data(t.call(args.clone(), &context()).await);
    assert_eq!(data["body"], args);
    let received: Value = serde_json::from_str(&server.hits("/echo")[0].body).unwrap();
    assert_eq!(received, args);
}

#[tokio::test]
async fn header_templates_use_arguments() {
    let server = TestServer::start().await;
    let mut d = decl("GET", server.url("/echo"));
    d.headers.insert("X-Tenant".into(), "tenant-{tenant}".into());
    d.headers.insert("X-Optional".into(), "{optional}".into());
    let t = tool("echo", &["tenant", "optional"], d);
    assert!(t.call(json!({"tenant": "acme"}), &context()).await.is_ok());
    let hit = &server.hits("/echo")[0];
    assert_eq!(hit.headers.get("x-tenant").map(String::as_str), Some("tenant-acme"));
    assert!(!hit.headers.contains_key("x-optional"));

    // A header injection attempt is refused, without echoing the value.
    let (message, _, retryable) = error_parts(t.call(json!({"tenant": "a\r\nX-Evil: 1"}), &context()).await);
    assert!(message.contains("X-Tenant") || message.contains("x-tenant"), "{message}");
    assert!(!retryable);
}

#[tokio::test]
async fn idempotency_key_is_sent_and_stable_across_retries() {
    let server = TestServer::start().await;
    let t = tool("flaky", &[], decl("POST", server.url("/flaky503")));
    let ctx = context();
    let (data, _) = ok_data(t.call(json!({}), &ctx).await);
    assert_eq!(data["attempt"], 3);
    let hits = server.hits("/flaky503");
    assert_eq!(hits.len(), 3, "503 twice, then success");
    for hit in hits {
        assert_eq!(hit.headers.get("idempotency-key"), Some(&ctx.idempotency_key.0));
    }
}

#[tokio::test]
async fn too_many_requests_with_retry_after_zero_then_success() {
    let server = TestServer::start().await;
    let mut d = decl("GET", server.url("/flaky429"));
    // Retry-After is a floor under the backoff, not a replacement for it
    // (see `retry_after_is_waited_out_in_full`): with 0 s, the short backoff
    // decides.
    d.retry = RetryPolicy { max_attempts: 3, initial_backoff_ms: 50, max_backoff_ms: 50 };
    let t = tool("rate_limited", &[], d);
    let started = Instant::now();
    let (data, _) = ok_data(t.call(json!({}), &context()).await);
    assert_eq!(data["attempt"], 2);
    assert_eq!(server.hits("/flaky429").len(), 2);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn long_retry_after_gives_up_with_a_retryable_error() {
    let server = TestServer::start().await;
    let t = tool("quota", &[], decl("GET", server.url("/retry-after-long")));
    let started = Instant::now();
    let (message, hint, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(retryable);
    assert!(message.contains("429") && message.contains("120 s"), "{message}");
    assert!(hint.is_some());
    assert_eq!(server.hits("/retry-after-long").len(), 1);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_as_retryable() {
    let server = TestServer::start().await;
    let t = tool("broken", &[], decl("GET", server.url("/always500")));
    let (message, hint, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(retryable);
    assert_eq!(server.hits("/always500").len(), 3, "max_attempts");
    assert!(message.contains("500") && message.contains("3 attempts"), "{message}");
    assert!(message.contains("database exploded"), "the server's message is quoted: {message}");
    assert!(hint.is_some_and(|h| h.contains("later")));
}

#[tokio::test]
async fn timeouts_become_retryable_errors() {
    let server = TestServer::start().await;
    let mut d = decl("GET", server.url("/slow"));
    d.timeout_ms = 200;
    d.retry = RetryPolicy { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 10 };
    let t = tool("slow", &[], d);
    let started = Instant::now();
    let (message, _, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(retryable);
    assert!(message.contains("timed out") && message.contains("2 attempts"), "{message}");
    assert!(started.elapsed() < Duration::from_secs(2), "each attempt is cut at 200 ms");
}

#[tokio::test]
async fn timeouts_of_tools_that_are_not_idempotent_say_the_call_may_have_been_applied() {
    let server = TestServer::start().await;
    let mut d = decl("POST", server.url("/slow"));
    d.timeout_ms = 200;
    d.retry = RetryPolicy { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 10 };
    let mut write_spec = spec("create_ticket", params(&[]));
    write_spec.idempotent = false;
    let t = HttpTool::new(write_spec, d, client()).unwrap();
    let (message, hint, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(!retryable, "it may have been applied: {message}");
    assert!(message.contains("timed out") && message.contains("may have been applied"), "{message}");
    let hint = hint.unwrap_or_default();
    assert!(hint.contains("check") && !hint.contains("try again later"), "{hint}");
}

#[tokio::test]
async fn retry_after_is_waited_out_in_full() {
    let server = TestServer::start().await;
    // The backoff cap is far below what the service asks for.
    let mut d = decl("GET", server.url("/flaky429-wait1s"));
    d.retry = RetryPolicy { max_attempts: 2, initial_backoff_ms: 10, max_backoff_ms: 50 };
    let t = tool("limited", &[], d);
    let started = Instant::now();
    let (data, _) = ok_data(t.call(json!({}), &context()).await);
    assert_eq!(data["attempt"], 2);
    assert!(started.elapsed() >= Duration::from_secs(1), "retried after {:?}", started.elapsed());
}

#[tokio::test]
async fn dot_segments_cannot_be_smuggled_into_the_path() {
    let server = TestServer::start().await;
    let t = tool("get_contact", &["id"], decl("GET", server.url("/contacts/{id}/notes")));
    for id in [".", ".."] {
        let (message, hint, retryable) = error_parts(t.call(json!({ "id": id }), &context()).await);
        assert!(!retryable);
        assert!(message.contains("`id`") && message.contains("`..`"), "{message}");
        assert!(hint.is_some_and(|h| h.contains("`id`")));
    }
    assert!(server.requests().is_empty(), "nothing was sent: {:?}", server.requests());
    // Percent-encoded dots are no way around it: `%` itself is encoded.
    assert!(t.call(json!({"id": "%2e%2e"}), &context()).await.is_ok());
    assert_eq!(server.requests()[0].path, "/contacts/%252e%252e/notes");
}

#[tokio::test]
async fn connection_refused_is_retryable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut d = decl("GET", format!("http://{addr}/x"));
    d.retry.max_attempts = 2;
    let t = tool("down", &[], d);
    let (message, _, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(retryable);
    assert!(message.contains("Could not connect"), "{message}");
}

#[tokio::test]
async fn not_found_is_a_final_error_with_a_hint() {
    let server = TestServer::start().await;
    let t = tool("lookup", &[], decl("GET", server.url("/missing")));
    let (message, hint, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(!retryable);
    assert!(message.contains("404") && message.contains("Contact 42 not found"), "{message}");
    assert!(hint.is_some_and(|h| h.contains("id")));
    assert_eq!(server.hits("/missing").len(), 1, "4xx is not retried");
}

#[tokio::test]
async fn invalid_input_and_permission_errors_have_hints() {
    let server = TestServer::start().await;
    let t = tool("book", &[], decl("POST", server.url("/invalid")));
    let (message, hint, _) = error_parts(t.call(json!({}), &context()).await);
    assert!(message.contains("422") && message.contains("YYYY-MM-DD"), "{message}");
    assert!(hint.is_some_and(|h| h.contains("invalid")));

    let t = tool("admin", &[], decl("GET", server.url("/forbidden")));
    let (message, hint, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(message.contains("403"), "{message}");
    assert!(hint.is_some_and(|h| h.contains("permission")));
    assert!(!retryable);
}

#[tokio::test]
async fn extraction_uses_json_pointers() {
    let server = TestServer::start().await;
    let mut d = decl("GET", server.url("/contacts/{id}"));
    d.extract.insert("name".into(), "/data/name".into());
    d.extract.insert("city".into(), "/data/address/city".into());
    d.extract.insert("absent".into(), "/data/nope".into());
    let t = tool("get_contact", &["id"], d);
    let (data, _) = ok_data(t.call(json!({"id": "9"}), &context()).await);
    assert_eq!(data, json!({"name": "Ann Lee", "city": "Lyon", "absent": null}));
}

#[tokio::test]
async fn large_results_are_truncated_and_marked() {
    let server = TestServer::start().await;
    let mut d = decl("GET", server.url("/big"));
    d.max_result_bytes = 500;
    let t = tool("list", &[], d);
    let (data, truncated) = ok_data(t.call(json!({}), &context()).await);
    assert!(truncated);
    assert!(serde_json::to_string(&data).unwrap().len() <= 500);
    // Structure survives: the first items, whole, and the total.
    assert_eq!(data["total"], 1000);
    assert_eq!(data["items"][0], json!({"id": 0, "title": "Ticket number 0"}));
}

#[tokio::test]
async fn text_and_empty_responses() {
    let server = TestServer::start().await;
    let t = tool("text", &[], decl("GET", server.url("/text")));
    let (data, _) = ok_data(t.call(json!({}), &context()).await);
    assert_eq!(data, json!("plain words"));
    let t = tool("empty", &[], decl("DELETE", server.url("/empty")));
    let (data, _) = ok_data(t.call(json!({}), &context()).await);
    assert_eq!(data, Value::Null);
}

#[tokio::test]
async fn missing_argument_and_environment_are_named() {
    let server = TestServer::start().await;
    let t = tool("get_contact", &["id"], decl("GET", server.url("/contacts/{id}")));
    let (message, hint, retryable) = error_parts(t.call(json!({}), &context()).await);
    assert!(message.contains("`id`"), "{message}");
    assert!(hint.is_some());
    assert!(!retryable);

    let mut d = decl("GET", server.url("/echo"));
    d.headers.insert("Authorization".into(), "Bearer ${REIN_TEST_SURELY_UNSET_VAR}".into());
    let t = tool("echo", &[], d);
    let (message, _, _) = error_parts(t.call(json!({}), &context()).await);
    assert!(message.contains("REIN_TEST_SURELY_UNSET_VAR"), "{message}");
    assert!(server.hits("/echo").is_empty(), "nothing is sent without the credential");
}

#[test]
fn declarations_are_checked_at_build_time() {
    let build = |d: rein_types::HttpToolDecl, names: &[&str]| HttpTool::new(spec("t", params(names)), d, client());
    let base = "http://127.0.0.1:9/x".to_string();

    let err = build(decl("FETCH", base.clone()), &[]).unwrap_err();
    assert!(err.to_string().contains("FETCH"), "{err}");

    assert!(build(decl("get", base.clone()), &[]).is_ok(), "methods are case-insensitive");
    assert!(build(decl("GET", "not a url".into()), &[]).is_err());
    assert!(build(decl("GET", "http://h/{id".into()), &["id"]).is_err());
    assert!(build(decl("GET", "https://${HOST}/x".into()), &[]).is_err());

    let err = build(decl("GET", "http://h/users/{user}".into()), &["id"]).unwrap_err();
    assert!(err.to_string().contains("{user}"), "{err}");

    let mut d = decl("GET", base.clone());
    d.extract.insert("x".into(), "data.id".into());
    assert!(matches!(build(d, &[]), Err(ToolBuildError::InvalidDeclaration { .. })));

    let mut d = decl("POST", base.clone());
    d.body = BodyMapping::Template(json!({"a": "{undeclared}"}));
    assert!(build(d, &[]).is_err());

    let mut d = decl("GET", base);
    d.timeout_ms = 0;
    assert!(build(d, &[]).is_err());
}
