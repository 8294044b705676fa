//! Rust functions as tools: the derived schema, valid and invalid calls,
//! errors the function returns, and panics.

use rein_tools::{FnTool, ToolBuildError, ToolError};
use rein_types::{Approval, IdempotencyKey, RiskTier, RunId, Tool, ToolContext, ToolOutcome};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

/// Where to look.
#[derive(Debug, Deserialize, JsonSchema)]
struct Scope {
    /// The region code.
    region: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
struct LookupArgs {
    /// The key to look up.
    key: String,
    /// At most this many results.
    limit: Option<u32>,
    scope: Option<Scope>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Strict {
    id: u64,
}

fn context() -> ToolContext {
    let run_id = RunId::new();
    ToolContext::new(run_id, 3, "call-9", IdempotencyKey::for_call(run_id, 3, 0))
}

fn lookup() -> FnTool {
    FnTool::new("lookup", "Look up a key", RiskTier::Read, |args: LookupArgs, ctx: ToolContext| async move {
        if args.key == "missing" {
            return Err(ToolError::new("No entry for key `missing`").with_hint("Ask the user for the exact key"));
        }
        if args.key == "flaky" {
            return Err(ToolError::new("Backend unavailable").retryable());
        }
        Ok(json!({
            "key": args.key,
            "limit": args.limit,
            "region": args.scope.map(|s| s.region),
            "step": ctx.step,
        }))
    })
    .unwrap()
}

#[test]
fn schema_is_derived_from_the_argument_type() {
    let tool = lookup();
    let spec = tool.spec();
    assert_eq!(spec.name.as_str(), "lookup");
    assert_eq!(spec.description, "Look up a key");
    assert_eq!(spec.risk, RiskTier::Read);
    assert_eq!(spec.approval, Approval::Never);
    let schema = &spec.parameters;
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["required"], json!(["key"]));
    assert_eq!(schema["properties"]["key"]["type"], "string");
    assert_eq!(schema["properties"]["key"]["description"], "The key to look up.");
    assert!(schema["properties"]["limit"].is_object());
    // Nested types are inlined, not referenced.
    let text = schema.to_string();
    assert!(!text.contains("$ref") && !text.contains("$defs"), "{text}");
    assert!(text.contains("The region code."), "{text}");
    assert!(schema.get("$schema").is_none());

    let strict = FnTool::new("strict", "s", RiskTier::Write, |_: Strict, _| async { Ok::<_, ToolError>(()) }).unwrap();
    assert_eq!(strict.spec().parameters["additionalProperties"], false);
}

#[test]
fn builder_sets_policy() {
    let tool = lookup().approval(Approval::Required).idempotent(false).max_calls(4);
    assert_eq!(tool.spec().approval, Approval::Required);
    assert!(!tool.spec().idempotent);
    assert_eq!(tool.spec().max_calls, Some(4));
}

#[test]
fn bad_names_and_non_object_arguments_are_build_errors() {
    let err = FnTool::new("bad name", "d", RiskTier::Read, |_: Strict, _| async { Ok::<_, ToolError>(()) });
    assert!(matches!(err, Err(ToolBuildError::InvalidName(_))));
    let err = FnTool::new("s", "d", RiskTier::Read, |_: String, _| async { Ok::<_, ToolError>(()) });
    assert!(matches!(err, Err(ToolBuildError::InvalidSchema { .. })));
}

#[tokio::test]
async fn valid_call_returns_the_value() {
    let outcome = lookup().call(json!({"key": "a", "scope": {"region": "eu"}}), &context()).await;
    assert_eq!(outcome, ToolOutcome::ok(json!({"key": "a", "limit": null, "region": "eu", "step": 3})));
}

#[tokio::test]
async fn bad_arguments_give_the_serde_message_as_hint() {
    let outcome = lookup().call(json!({"limit": 3}), &context()).await;
    match outcome {
        ToolOutcome::Error { message, hint, retryable } => {
            assert!(message.contains("lookup"), "{message}");
            assert!(hint.is_some_and(|h| h.contains("missing field `key`")));
            assert!(!retryable);
        }
        other => panic!("expected an error, got {other:?}"),
    }
    let outcome = lookup().call(json!({"key": 5}), &context()).await;
    assert!(matches!(outcome, ToolOutcome::Error { hint: Some(h), .. } if h.contains("invalid type")));
}

#[tokio::test]
async fn returned_errors_become_outcomes() {
    let outcome = lookup().call(json!({"key": "missing"}), &context()).await;
    assert_eq!(
        outcome,
        ToolOutcome::Error {
            message: "No entry for key `missing`".into(),
            hint: Some("Ask the user for the exact key".into()),
            retryable: false
        }
    );
    let outcome = lookup().call(json!({"key": "flaky"}), &context()).await;
    assert!(matches!(outcome, ToolOutcome::Error { retryable: true, .. }));
}

#[tokio::test]
async fn panics_become_error_outcomes() {
    let after_await = FnTool::new("boom", "d", RiskTier::Read, |args: Strict, _| async move {
        tokio::task::yield_now().await;
        if args.id > 0 {
            panic!("exploded on {}", args.id);
        }
        Ok::<_, ToolError>(json!({}))
    })
    .unwrap();
    let outcome = after_await.call(json!({"id": 1}), &context()).await;
    assert!(matches!(&outcome, ToolOutcome::Error { message, .. } if message.contains("boom")), "{outcome:?}");

    // A panic in the function body before it returns its future.
    #[allow(unreachable_code)]
    let before_future = FnTool::new("sync_boom", "d", RiskTier::Read, |_: Strict, _| {
        panic!("no future for you");
        async { Ok::<Value, ToolError>(json!({})) }
    })
    .unwrap();
    let outcome = before_future.call(json!({"id": 1}), &context()).await;
    assert!(matches!(outcome, ToolOutcome::Error { .. }), "{outcome:?}");

    // The tool still works afterwards.
    assert!(after_await.call(json!({"id": 0}), &context()).await.is_ok());
}
