//! Warnings: the agent still loads, but something will likely hurt quality
//! or safety, and the author is told where and why.

mod common;

use common::{BASE, validate, warnings};
use rein_config::load_agent;

/// `n` valid HTTP tools, each with a proper description and no parameters.
fn tools(n: usize) -> String {
    (0..n)
        .map(|i| {
            format!(
                "\n[[tools]]\nname = \"get_item_{i}\"\ndescription = \"Use this to fetch item number {i} from the store.\"\nkind = \"http\"\nurl = \"https://store.example/items/{i}\"\n"
            )
        })
        .collect()
}

#[test]
fn more_than_fifteen_tools() {
    // 16 declared tools, the handoff tool off: 16 tools the model sees.
    let text = format!("{BASE}handoff = false\n{}", tools(16));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(!report.has_errors(), "{report}");
    let found = warnings(dir.path(), &report);
    assert_eq!(found.len(), 1, "{found:#?}");
    // Reported at the 16th tool.
    assert!(
        found[0].starts_with("agent.toml:97:1: warning: tools[15]: the agent has 16 tools (more than 15): selection accuracy drops with many tools; split the agent or expose a subset"),
        "{}",
        found[0]
    );

    // 14 declared plus the handoff tool is 15: no warning.
    let (dir, report) = validate(&[("agent.toml", &format!("{BASE}{}", tools(14)))]);
    assert!(warnings(dir.path(), &report).is_empty(), "{report}");
}

#[test]
fn long_system_prompt() {
    let prompt = "Answer briefly. ".repeat(160); // 2,560 characters, about 640 tokens
    let text = BASE.replace("You answer questions about orders.", &prompt);
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(!report.has_errors(), "{report}");
    assert_eq!(
        warnings(dir.path(), &report),
        [
            "agent.toml:2:1: warning: system_prompt: the system prompt is about 640 tokens (estimated as characters / 4); keep it under 600: long prompts hurt more than they help"
        ]
    );
}

#[test]
fn long_prompt_file() {
    let text =
        BASE.replace("system_prompt = \"You answer questions about orders.\"", "system_prompt_file = \"prompt.md\"");
    let (dir, report) = validate(&[("agent.toml", &text), ("prompt.md", &"x".repeat(4000))]);
    let found = warnings(dir.path(), &report);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].starts_with("agent.toml:2:1: warning: system_prompt_file: the system prompt is about 1000 tokens")
    );
}

const DANGEROUS: &str = r#"
[[tools]]
name = "refund_order"
description = "Use this to refund an order in full once the customer has confirmed the order number."
kind = "http"
method = "POST"
url = "https://shop.example/orders/{number}/refund"
risk = "dangerous"
approval = "never"
parameters = { type = "object", properties = { number = { type = "string" } }, required = ["number"], additionalProperties = false }
"#;

#[test]
fn dangerous_tool_without_approval() {
    let (dir, report) = validate(&[("agent.toml", &format!("{BASE}{DANGEROUS}"))]);
    assert!(!report.has_errors(), "{report}");
    assert_eq!(
        warnings(dir.path(), &report),
        [
            "agent.toml:12:1: warning: tools[0].approval: a dangerous tool runs without human approval: irreversible actions chosen by a model should be approved; remove approval = \"never\" unless a person already reviews every call"
        ]
    );
    // Left to its default, a dangerous tool requires approval: no warning.
    let (dir, report) =
        validate(&[("agent.toml", &format!("{BASE}{}", DANGEROUS.replace("approval = \"never\"\n", "")))]);
    assert!(warnings(dir.path(), &report).is_empty(), "{report}");
    let agent = report.agent.unwrap();
    assert_eq!(agent.tools[0].spec.approval, rein_types::Approval::Required);
    // A non-idempotent tool does not retry unless told to.
    let rein_types::ToolImpl::Http(http) = &agent.tools[0].implementation else { panic!() };
    assert_eq!(http.retry.max_attempts, 1);
}

#[test]
fn cost_budget_without_a_price() {
    let text = BASE.replace("openai:gpt-4o-mini", "openai:gpt-unknown") + "[limits]\nmax_cost_usd = 0.10\n";
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(!report.has_errors(), "{report}");
    assert_eq!(
        warnings(dir.path(), &report),
        [
            "agent.toml:5:1: warning: limits.max_cost_usd: the model has no known price, so the cost budget cannot be enforced (cost counts as zero); add [prices.\"provider:model\"]"
        ]
    );
    // A price in the agent file fixes it.
    let text = text + "[prices.\"openai:gpt-unknown\"]\ninput_per_mtok = 1\noutput_per_mtok = 2\n";
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(warnings(dir.path(), &report).is_empty(), "{report}");
    let agent = report.agent.unwrap();
    assert_eq!(agent.spec.price.map(|p| p.output_per_mtok), Some(2.0));
    // The overrides are kept for re-pricing when the model is overridden.
    let model = rein_types::ModelRef::new("openai", "gpt-unknown");
    assert_eq!(rein_config::price_for(&model, &agent.prices), agent.spec.price);
    let other = rein_types::ModelRef::new("openai", "gpt-4o");
    assert_eq!(rein_config::price_for(&other, &agent.prices), rein_config::lookup_price(&other));
}

#[test]
fn short_description_and_loose_schema() {
    let text = format!(
        "{BASE}\n[[tools]]\nname = \"find\"\ndescription = \"Finds things.\"\nkind = \"http\"\nurl = \"https://x.example/find?q={{q}}\"\nparameters = {{ type = \"object\", properties = {{ q = {{ type = \"string\" }} }} }}\n"
    );
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(!report.has_errors(), "{report}");
    assert_eq!(
        warnings(dir.path(), &report),
        [
            "agent.toml:7:1: warning: tools[0].description: description is only 13 characters; describe when to use the tool (and when not to): the model picks tools by their descriptions",
            "agent.toml:10:1: warning: tools[0].parameters: set additionalProperties = false: strict schemas reject invented arguments and make tool calls more reliable",
        ]
    );
}

#[test]
fn missing_environment_variables_are_warnings_not_errors() {
    let text = format!(
        "{BASE}\n[[tools]]\nname = \"find\"\ndescription = \"Use this to search the catalogue by keyword.\"\nkind = \"http\"\nurl = \"https://x.example/find\"\nheaders = {{ Authorization = \"Bearer ${{REIN_TEST_SURELY_UNSET}}\" }}\nquery = {{ q = \"{{q}}\" }}\nparameters = {{ type = \"object\", properties = {{ q = {{ type = \"string\" }} }}, additionalProperties = false }}\n"
    );
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(!report.has_errors(), "{report}");
    assert_eq!(
        warnings(dir.path(), &report),
        [
            "agent.toml:10:13: warning: tools[0].headers.Authorization: environment variable REIN_TEST_SURELY_UNSET is not set here; it is read when the agent runs, so set it there"
        ]
    );
    let agent = load_agent(&dir.path().join("agent.toml")).unwrap();
    assert_eq!(agent.warnings.len(), 1);
}

#[test]
fn misspelt_schema_keywords() {
    let text = format!(
        "{BASE}\n[[tools]]\nname = \"find\"\ndescription = \"Use this to search the catalogue by keyword.\"\nkind = \"http\"\nurl = \"https://x.example/find\"\nquery = {{ q = \"{{q}}\" }}\n[tools.parameters]\ntype = \"object\"\nrequird = [\"q\"]\nadditionalProperties = false\nproperties.q = {{ type = \"string\", maxLenght = 80 }}\n"
    );
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(!report.has_errors(), "{report}");
    assert_eq!(
        warnings(dir.path(), &report),
        [
            "agent.toml:13:1: warning: tools[0].parameters.requird: \"requird\" is not a JSON Schema keyword, so validators ignore it; did you mean \"required\"?",
            "agent.toml:15:35: warning: tools[0].parameters.properties.q.maxLenght: \"maxLenght\" is not a JSON Schema keyword, so validators ignore it; did you mean \"maxLength\"?",
        ]
    );
}
