//! `output_schema`: parsed into the spec (and so the version), checked as a
//! JSON Schema with errors naming file, line and key.

mod common;

use common::{dir_with, single_error};
use rein_config::{load_agent, validate_agent};

const AGENT: &str = r#"name = "triage"
system_prompt = "Classify the ticket."
model = "openai:gpt-4o-mini"

[limits]
max_output_repairs = 1

[output_schema]
type = "object"
required = ["priority"]
properties = { priority = { enum = ["low", "normal", "high"] } }
"#;

#[test]
fn the_output_schema_is_part_of_the_spec_and_version() {
    let dir = dir_with(&[("agent.toml", AGENT)]);
    let loaded = load_agent(&dir.path().join("agent.toml")).unwrap();
    let schema = loaded.spec.output_schema.clone().unwrap();
    assert_eq!(schema["required"][0], "priority");
    assert_eq!(loaded.spec.limits.max_output_repairs, 1);

    let other = dir_with(&[("agent.toml", &AGENT.replace("\"high\"]", "\"high\", \"urgent\"]"))]);
    let changed = load_agent(&other.path().join("agent.toml")).unwrap();
    assert_ne!(changed.spec.version(), loaded.spec.version());
}

#[test]
fn an_invalid_output_schema_is_an_error_at_its_key() {
    let bad = AGENT.replace("type = \"object\"", "type = \"objekt\"");
    let dir = dir_with(&[("agent.toml", &bad)]);
    let report = validate_agent(&dir.path().join("agent.toml"));
    let error = single_error(dir.path(), &report);
    assert!(error.contains("agent.toml:9") && error.contains("output_schema.type"), "{error}");
}
