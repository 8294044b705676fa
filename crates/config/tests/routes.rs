//! `[model.routes]`: a model per phase, priced, reached through its
//! provider's settings, part of the version; bad entries name file, line and
//! key.

mod common;

use common::{dir_with, single_error};
use rein_config::{load_agent, validate_agent};
use rein_types::Phase;

const AGENT: &str = r#"name = "routed"
system_prompt = "Answer questions about orders."

[model]
id = "openai:gpt-4o-mini"
timeout = "20s"

[model.routes]
planning = "openai:gpt-4o"
synthesis = "anthropic:claude-sonnet-4-5"

[providers.anthropic]
max_concurrency = 4
"#;

#[test]
fn routes_resolve_with_prices_and_providers() {
    let dir = dir_with(&[("agent.toml", AGENT)]);
    let loaded = load_agent(&dir.path().join("agent.toml")).unwrap();
    let planning = &loaded.spec.routes[&Phase::Planning];
    assert_eq!(planning.model.to_string(), "openai:gpt-4o");
    assert!(planning.price.is_some(), "routed models are priced from the table");
    let (phase, synthesis) = loaded.routes.iter().find(|(p, _)| *p == Phase::Synthesis).unwrap();
    assert_eq!(*phase, Phase::Synthesis);
    assert_eq!(synthesis.provider.max_concurrency, Some(4), "the route uses its provider's table");
    assert_eq!(synthesis.provider.timeout_ms, Some(20_000), "and the [model] time-out");

    let without = dir_with(&[("agent.toml", &AGENT.replace("planning = \"openai:gpt-4o\"\n", ""))]);
    let other = load_agent(&without.path().join("agent.toml")).unwrap();
    assert_ne!(other.spec.version(), loaded.spec.version(), "routes are part of the version");
}

#[test]
fn an_unknown_phase_is_an_error_at_its_key() {
    let bad = AGENT.replace("planning =", "plannning =");
    let dir = dir_with(&[("agent.toml", &bad)]);
    let report = validate_agent(&dir.path().join("agent.toml"));
    let error = single_error(dir.path(), &report);
    assert!(error.contains("agent.toml:9") && error.contains("plannning"), "{error}");
}
