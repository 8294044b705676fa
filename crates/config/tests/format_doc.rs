//! The example in FORMAT.md is valid: it is extracted and loaded, so the
//! reference cannot drift from what the loader accepts.

mod common;

use common::dir_with;
use rein_config::load_agent;

/// The TOML code blocks of FORMAT.md, in order.
fn toml_blocks() -> Vec<String> {
    let doc = include_str!("../FORMAT.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in doc.lines() {
        match (&mut current, line.trim_end()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), text) => {
                block.push_str(text);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[test]
fn format_example_loads() {
    let blocks = toml_blocks();
    let crm = r#"
[[tools]]
name = "lookup_plan"
description = "Use this to read the limits of a plan by its name."
kind = "sql"
risk = "read"
parameters = { type = "object", properties = { plan = { type = "string" } }, required = ["plan"], additionalProperties = false }
database = "helpdesk"
query = "SELECT * FROM plans WHERE plan = :plan"
"#;
    let dir = dir_with(&[
        ("agents/support.toml", &blocks[0]),
        ("agents/tools/helpdesk.toml", &blocks[1]),
        ("agents/tools/crm.toml", crm),
        ("agents/tools/helpdesk.db", ""),
        ("agents/prompt.md", "You triage support tickets."),
    ]);
    let agent = load_agent(&dir.path().join("agents/support.toml")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = agent.tools.iter().map(|t| t.spec.name.as_str()).collect();
    assert_eq!(names, ["lookup_customer", "lookup_plan", "create_ticket", "handoff_to_human"]);
    for warning in &agent.warnings {
        assert!(warning.message.starts_with("environment variable"), "{warning}");
    }
}
