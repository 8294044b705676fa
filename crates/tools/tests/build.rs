//! `build_tool` dispatch and the built-in handoff spec.

use rein_tools::{HANDOFF_TOOL, build_tool, handoff_spec};
use rein_types::{HttpToolDecl, RetryPolicy, RiskTier, ToolImpl, ToolName, ToolSpec};
use serde_json::json;

fn spec(name: &str) -> ToolSpec {
    ToolSpec::new(ToolName::new(name).unwrap(), "d", json!({"type": "object", "properties": {}}), RiskTier::Read)
}

#[test]
fn handoff_builds_nothing() {
    let client = reqwest::Client::new();
    let built = build_tool(handoff_spec(), &ToolImpl::Handoff, &client).unwrap();
    assert!(built.is_none());
    assert_eq!(handoff_spec().name.as_str(), HANDOFF_TOOL);
}

#[test]
fn http_declarations_build_tools() {
    let client = reqwest::Client::new();
    let decl = HttpToolDecl {
        method: "GET".into(),
        url: "https://api.example.com/things".into(),
        headers: Default::default(),
        query: Default::default(),
        body: Default::default(),
        timeout_ms: 1_000,
        retry: RetryPolicy::default(),
        extract: Default::default(),
        max_result_bytes: 1_000,
    };
    let tool = build_tool(spec("things"), &ToolImpl::Http(decl.clone()), &client).unwrap().unwrap();
    assert_eq!(tool.spec().name.as_str(), "things");

    let bad = HttpToolDecl { method: "BREW".into(), ..decl };
    assert!(build_tool(spec("things"), &ToolImpl::Http(bad), &client).is_err());
}
