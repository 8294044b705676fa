//! Secrets from the environment reach the server but never the outcome or the
//! logs, even when the server echoes the request back. One test in its own
//! binary: it sets an environment variable, which must not race other tests.

mod common;

use common::{TestServer, client, context, decl, params, spec};
use rein_tools::HttpTool;
use rein_types::{RetryPolicy, Tool, ToolOutcome};
use serde_json::json;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const VAR: &str = "REIN_TOOLS_TEST_SECRET";
const SECRET: &str = "sk-test-9f8e7d6c5b4a";

/// Captures every event and span field as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<String>>);

struct Text<'a>(&'a mut String);

impl Visit for Text<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut log = self.0.lock().unwrap();
        let _ = write!(log, "\nspan {}", span.metadata().name());
        span.record(&mut Text(&mut log));
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        values.record(&mut Text(&mut self.0.lock().unwrap()));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut log = self.0.lock().unwrap();
        let _ = write!(log, "\nevent {}", event.metadata().target());
        event.record(&mut Text(&mut log));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn observation_has_no_secret(outcome: &ToolOutcome) {
    let text = outcome.to_observation();
    assert!(!text.contains(SECRET), "secret leaked: {text}");
    assert!(!text.contains("9f8e7d6c5b4a"), "secret leaked: {text}");
}

#[tokio::test]
async fn secrets_reach_the_server_but_never_the_outcome_or_logs() {
    // SAFETY: this binary has a single test and sets the variable before any
    // other thread of its own reads the environment.
    unsafe { std::env::set_var(VAR, SECRET) };
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());

    let server = TestServer::start().await;
    let with_secret = |path: &str| {
        let mut d = decl("GET", server.url(path));
        d.headers.insert("Authorization".into(), format!("Bearer ${{{VAR}}}"));
        d.query.insert("api_key".into(), format!("${{{VAR}}}"));
        d.retry = RetryPolicy { max_attempts: 2, initial_backoff_ms: 1, max_backoff_ms: 5 };
        HttpTool::new(spec("crm", params(&[])), d, client()).unwrap()
    };

    // Success: the server got the secret (header and query); the echoed
    // response has it scrubbed.
    let outcome = with_secret("/echo").call(json!({}), &context()).await;
    assert!(outcome.is_ok(), "{outcome:?}");
    let hit = &server.hits("/echo")[0];
    assert_eq!(hit.headers.get("authorization").map(String::as_str), Some(format!("Bearer {SECRET}").as_str()));
    assert_eq!(hit.query.as_deref(), Some(format!("api_key={SECRET}").as_str()));
    observation_has_no_secret(&outcome);
    assert!(outcome.to_observation().contains("[REDACTED]"));

    // A 4xx whose message reflects the request.
    let outcome = with_secret("/echo-error").call(json!({}), &context()).await;
    assert!(matches!(outcome, ToolOutcome::Error { .. }), "{outcome:?}");
    observation_has_no_secret(&outcome);

    // A 5xx, retried and exhausted, with the secret in a plain-text body.
    let outcome = with_secret("/echo-500").call(json!({}), &context()).await;
    assert!(matches!(outcome, ToolOutcome::Error { retryable: true, .. }), "{outcome:?}");
    observation_has_no_secret(&outcome);

    // Connection failures: reqwest's error text would carry the URL (and the
    // query's key).
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut d = decl("GET", format!("http://{addr}/x"));
    d.query.insert("api_key".into(), format!("${{{VAR}}}"));
    d.retry.max_attempts = 1;
    let outcome = HttpTool::new(spec("crm", params(&[])), d, client()).unwrap().call(json!({}), &context()).await;
    assert!(matches!(outcome, ToolOutcome::Error { .. }), "{outcome:?}");
    observation_has_no_secret(&outcome);

    let log = capture.0.lock().unwrap().clone();
    assert!(log.contains("event"), "the capture works: {log}");
    assert!(!log.contains(SECRET), "secret in logs: {log}");
}
