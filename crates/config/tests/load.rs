//! A complete, valid agent loads into the expected spec, defaults are
//! applied, and the version depends on content only.

mod common;

use common::{BASE, dir_with};
use rein_config::{HANDOFF_TOOL_NAME, load_agent, load_agent_str, price_table};
use rein_types::{Approval, BodyMapping, Limits, ModelRef, RiskTier, SqlMode, ToolImpl};
use serde_json::json;
use std::path::{Path, PathBuf};

fn fixture(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(path)
}

#[test]
fn full_agent_loads() {
    let path = fixture("support/support.toml");
    let agent = load_agent(&path).unwrap_or_else(|e| panic!("{e}"));
    let spec = &agent.spec;

    assert_eq!(agent.path, path);
    assert_eq!(spec.name, "support-triage");
    assert_eq!(spec.description, "Triage inbound support tickets");
    assert_eq!(spec.model, ModelRef::new("openai", "gpt-4o-mini"));
    assert_eq!(spec.settings.temperature, Some(0.2));
    assert_eq!(spec.settings.top_p, Some(1.0));
    assert_eq!(spec.settings.seed, Some(7));
    assert_eq!(spec.settings.max_output_tokens, Some(512));
    assert_eq!(spec.settings.stop, vec!["###".to_string()]);

    // The prompt comes from prompt.md, next to the agent file.
    let prompt = std::fs::read_to_string(fixture("support/prompt.md")).unwrap();
    assert_eq!(spec.system_prompt, prompt);

    // Set limits are taken, the others keep their defaults.
    assert_eq!(spec.limits.max_steps, 12);
    assert_eq!(spec.limits.timeout_ms, 60_000);
    assert_eq!(spec.limits.max_tokens, Some(20_000));
    assert_eq!(spec.limits.max_cost_usd, Some(0.05));
    assert_eq!(spec.limits.max_invalid_calls, 3);
    assert_eq!(spec.limits.tool_timeout_ms, 20_000);
    assert_eq!(spec.stop.after_tools, vec!["create_ticket".to_string()]);

    // Provider settings.
    assert_eq!(agent.provider.base_url.as_deref(), Some("http://127.0.0.1:8080/v1"));
    assert_eq!(agent.provider.api_key_env.as_deref(), Some("REIN_TEST_OPENAI_KEY"));
    assert_eq!(agent.provider.timeout_ms, Some(30_000));
    assert_eq!(agent.provider.max_retries, Some(2));
    assert_eq!(agent.provider.headers.get("X-Org").map(String::as_str), Some("${REIN_TEST_ORG_ID}"));

    // The agent's price override wins.
    let price = spec.price.unwrap();
    assert_eq!((price.input_per_mtok, price.output_per_mtok, price.cached_input_per_mtok), (0.15, 0.60, Some(0.075)));

    // Tools: included files in include order (crm filtered by `only`), the
    // agent's own, then the handoff tool.
    let names: Vec<&str> = agent.tools.iter().map(|t| t.spec.name.as_str()).collect();
    assert_eq!(names, ["lookup_customer", "lookup_plan", "create_ticket", HANDOFF_TOOL_NAME]);
    assert_eq!(spec.tools, agent.tools.iter().map(|t| t.spec.clone()).collect::<Vec<_>>());

    let lookup = &agent.tools[0];
    assert_eq!(lookup.spec.risk, RiskTier::Read);
    assert_eq!(lookup.spec.approval, Approval::Never);
    assert!(lookup.spec.idempotent);
    assert_eq!(lookup.spec.max_calls, Some(5));
    assert_eq!(lookup.spec.parameters["required"], json!(["email"]));
    let ToolImpl::Sql(sql) = &lookup.implementation else { panic!("lookup_customer is SQL") };
    // Relative database paths resolve against the declaring file (tools/).
    let db = std::path::absolute(fixture("support/tools/helpdesk.sqlite3")).unwrap();
    assert_eq!(sql.database_url, format!("sqlite://{}", db.display()));
    assert_eq!(sql.database, "helpdesk");
    assert_eq!(sql.mode, SqlMode::Read, "a SELECT defaults to read mode");
    assert_eq!(sql.max_rows, 5);
    assert_eq!(sql.query, "SELECT id, name, plan FROM customers WHERE email = :email");

    let ticket = &agent.tools[2];
    assert_eq!(ticket.spec.risk, RiskTier::Write, "risk defaults to write");
    assert_eq!(ticket.spec.approval, Approval::Never);
    assert!(!ticket.spec.idempotent);
    let ToolImpl::Http(http) = &ticket.implementation else { panic!("create_ticket is HTTP") };
    assert_eq!(http.method, "POST");
    assert_eq!(http.url, "http://127.0.0.1:9000/tickets/{customer_id}");
    assert_eq!(http.headers.get("Authorization").map(String::as_str), Some("Bearer ${REIN_TEST_HELPDESK_TOKEN}"));
    assert_eq!(http.query.get("source").map(String::as_str), Some("agent"));
    assert_eq!(
        http.body,
        BodyMapping::Template(json!({ "summary": "{summary}", "priority": "{priority}", "channel": "email" }))
    );
    assert_eq!(http.timeout_ms, 10_000);
    assert_eq!((http.retry.max_attempts, http.retry.initial_backoff_ms, http.retry.max_backoff_ms), (3, 250, 10_000));
    assert_eq!(http.extract.get("ticket_id").map(String::as_str), Some("/id"));
    assert_eq!(http.max_result_bytes, 4000);

    let handoff = &agent.tools[3];
    assert_eq!(handoff.implementation, ToolImpl::Handoff);
    assert_eq!(handoff.spec.risk, RiskTier::Read);
    assert_eq!(handoff.spec.approval, Approval::Never);
    assert_eq!(handoff.spec.parameters["required"], json!(["reason"]));
    assert_eq!(handoff.spec.parameters["properties"]["reason"]["type"], "string");
    assert!(handoff.spec.description.contains("ends the run"));

    // Implementations are part of the spec, so they are part of the version;
    // database URLs as written, so the version does not depend on where the
    // checkout lives.
    assert_eq!(spec.extra["tools"]["lookup_customer"]["database_url"], "sqlite://helpdesk.sqlite3");
    assert_eq!(spec.extra["tools"]["create_ticket"]["url"], "http://127.0.0.1:9000/tickets/{customer_id}");
    assert_eq!(spec.extra["tools"][HANDOFF_TOOL_NAME]["kind"], "handoff");
    assert_eq!(spec.extra["provider"]["base_url"], "http://127.0.0.1:8080/v1");

    // The only warnings are the test's unset ${VAR}s (read at call time).
    assert!(!agent.warnings.is_empty());
    for warning in &agent.warnings {
        assert!(warning.message.contains("environment variable REIN_TEST_"), "{warning}");
    }
}

#[test]
fn defaults_apply_to_a_minimal_agent() {
    let dir = dir_with(&[("agent.toml", BASE)]);
    let agent = load_agent(&dir.path().join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    assert!(agent.warnings.is_empty(), "{:?}", agent.warnings);
    assert_eq!(agent.spec.limits, Limits::default());
    assert_eq!(agent.spec.limits.max_steps, 12);
    assert_eq!(agent.spec.limits.timeout_ms, 60_000);
    assert_eq!(agent.spec.tools.len(), 1, "only the handoff tool");
    assert_eq!(agent.spec.tools[0].name.as_str(), HANDOFF_TOOL_NAME);
    // No override: the shipped price.
    assert_eq!(agent.spec.price, price_table().get_str("openai:gpt-4o-mini"));
    assert_eq!(agent.spec.price.map(|p| p.input_per_mtok), Some(0.15));
}

#[test]
fn handoff_can_be_turned_off() {
    let text = format!("{BASE}handoff = false\n");
    let agent = load_agent_str(Path::new("agent.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    assert!(agent.tools.is_empty());
    assert!(agent.spec.tools.is_empty());
}

const TOOL: &str = r#"
[[tools]]
name = "lookup_order"
description = "Use this to find an order by its number. Returns status and total."
kind = "http"
url = "https://shop.example/orders/{number}"
parameters = { type = "object", properties = { number = { type = "string" } }, required = ["number"], additionalProperties = false }
"#;

fn version_of(text: &str) -> String {
    load_agent_str(Path::new("agent.toml"), text).unwrap_or_else(|e| panic!("{e}\n{text}")).spec.version().0
}

#[test]
fn version_is_stable_across_key_order_and_layout() {
    let a = format!("{BASE}[limits]\nmax_steps = 8\ntimeout = \"30s\"\n{TOOL}");
    // Same content: keys reordered, an inline table written as a table,
    // a duration written as an integer of seconds.
    let b = r#"model = "openai:gpt-4o-mini"
system_prompt = "You answer questions about orders."
name = "t"

[[tools]]
url = "https://shop.example/orders/{number}"
kind = "http"
description = "Use this to find an order by its number. Returns status and total."
name = "lookup_order"

[tools.parameters]
additionalProperties = false
required = ["number"]
type = "object"
properties.number.type = "string"

[limits]
timeout = 30
max_steps = 8
"#;
    assert_eq!(version_of(&a), version_of(b));
    // And the same file in another directory has the same version.
    let dir1 = dir_with(&[("agent.toml", &a)]);
    let dir2 = dir_with(&[("nested/agent.toml", &a)]);
    let v1 = load_agent(&dir1.path().join("agent.toml")).unwrap().spec.version();
    let v2 = load_agent(&dir2.path().join("nested/agent.toml")).unwrap().spec.version();
    assert_eq!(v1, v2);
}

#[test]
fn version_changes_with_behaviour() {
    let base = format!("{BASE}{TOOL}");
    let v = version_of(&base);
    let changed = [
        ("prompt", base.replace("about orders.", "about orders!")),
        ("tool description", base.replace("Returns status and total.", "Returns the status.")),
        ("tool url", base.replace("shop.example/orders", "shop.example/v2/orders")),
        ("model", base.replace("openai:gpt-4o-mini", "openai:gpt-4.1-mini")),
        ("limit", format!("{BASE}[limits]\nmax_steps = 5\n{TOOL}")),
        ("handoff", format!("{BASE}handoff = false\n{TOOL}")),
        (
            "temperature",
            base.replace(
                "model = \"openai:gpt-4o-mini\"",
                "model = { id = \"openai:gpt-4o-mini\", temperature = 0.5 }",
            ),
        ),
    ];
    for (what, text) in changed {
        assert_ne!(version_of(&text), v, "changing the {what} must change the version");
    }
}

#[test]
fn sql_query_changes_the_version() {
    let sql = |query: &str| {
        format!(
            "{BASE}[databases.db]\nurl = \"sqlite://db.sqlite3\"\n\n[[tools]]\nname = \"count_orders\"\ndescription = \"Use this to count the orders placed today.\"\nkind = \"sql\"\nrisk = \"read\"\ndatabase = \"db\"\nquery = \"{query}\"\n"
        )
    };
    assert_ne!(
        version_of(&sql("SELECT count(*) FROM orders")),
        version_of(&sql("SELECT count(*) FROM orders WHERE 1"))
    );
}
