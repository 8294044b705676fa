//! Error messages: each names the file, line, column and dotted key, and
//! validation reports every error rather than the first.

mod common;

use common::{BASE, errors, lines, single_error, validate};
use rein_config::{ConfigError, Severity, load_agent, validate_agent};

#[test]
fn unknown_top_level_key() {
    let (dir, report) = validate(&[("agent.toml", &format!("{BASE}colour = \"blue\"\n"))]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:4:1: error: colour: unknown key \"colour\"; expected one of name, description, system_prompt, \
         system_prompt_file, include, handoff, model, limits, stop, prices, databases, tools, providers, output_schema, \
         webhooks, schedules, mcp_servers"
    );
    assert!(report.agent.is_none());
}

#[test]
fn misspelt_keys_get_a_suggestion() {
    let (dir, report) = validate(&[("agent.toml", &format!("{BASE}[limits]\nmax_step = 4\n"))]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:5:1: error: limits.max_step: unknown key \"max_step\"; did you mean \"max_steps\"?"
    );
}

const HTTP_TOOL: &str = r#"
[[tools]]
name = "lookup_order"
description = "Use this to find an order by its number. Returns status and total."
kind = "http"
url = "https://shop.example/orders/{number}"
parameters = { type = "object", properties = { number = { type = "string" } }, required = ["number"], additionalProperties = false }
"#;

#[test]
fn unknown_key_inside_a_tool() {
    let text = format!("{BASE}{HTTP_TOOL}retries = 3\n");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let error = single_error(dir.path(), &report);
    assert!(error.starts_with("agent.toml:11:1: error: tools[0].retries: unknown key \"retries\""), "{error}");
}

#[test]
fn a_key_of_the_other_kind_says_so() {
    let text = format!("{BASE}{HTTP_TOOL}database = \"main\"\n");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:11:1: error: tools[0].database: unknown key \"database\": applies only to kind = \"sql\" tools"
    );
}

#[test]
fn bad_risk_value() {
    let text = format!("{BASE}{HTTP_TOOL}risk = \"medium\"\n");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:11:1: error: tools[0].risk: unknown value \"medium\"; expected one of read, write, dangerous"
    );
}

#[test]
fn unknown_tool_in_stop_after_tools() {
    let text = format!("{BASE}[stop]\nafter_tools = [\"lookup_order\", \"save_draft\"]\n{HTTP_TOOL}");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:5:32: error: stop.after_tools[1]: unknown tool \"save_draft\"; the agent's tools are: \
         lookup_order, handoff_to_human"
    );
}

#[test]
fn invalid_schema_points_at_the_bad_key() {
    let text =
        format!("{BASE}{}", HTTP_TOOL.replace("number = { type = \"string\" }", "number = { type = \"strnig\" }"));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let error = single_error(dir.path(), &report);
    assert!(
        error.starts_with("agent.toml:10:59: error: tools[0].parameters.properties.number.type: invalid JSON Schema: "),
        "{error}"
    );
    assert!(error.contains("strnig"), "{error}");
}

#[test]
fn schema_root_must_be_an_object() {
    let text = format!("{BASE}{}", HTTP_TOOL.replace("type = \"object\", properties", "type = \"array\", properties"));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let all = errors(dir.path(), &report);
    assert!(
        all.iter().any(|e| e.starts_with(
            "agent.toml:10:16: error: tools[0].parameters.type: the root schema must have type = \"object\""
        )),
        "{all:#?}"
    );
}

#[test]
fn required_names_a_declared_property() {
    let text = format!("{BASE}{}", HTTP_TOOL.replace("required = [\"number\"]", "required = [\"numbr\"]"));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let all = errors(dir.path(), &report);
    assert!(
        all.iter().any(|e| e.contains("tools[0].parameters.required[0]: required parameter \"numbr\" is not declared in properties; declared: number")),
        "{all:#?}"
    );
}

const SQL_AGENT: &str = r#"name = "t"
system_prompt = "You answer questions about customers."
model = "openai:gpt-4o-mini"

[databases.crm]
url = "sqlite://crm.sqlite3"

[[tools]]
name = "lookup_customer"
description = "Use this to find a customer by email. Returns id, name, plan."
kind = "sql"
risk = "read"
parameters = { type = "object", properties = { email = { type = "string" } }, required = ["email"], additionalProperties = false }
database = "crm"
query = "SELECT id, name, plan FROM customers WHERE email = :emial"
"#;

#[test]
fn sql_placeholder_not_in_schema() {
    let (dir, report) = validate(&[("agent.toml", SQL_AGENT)]);
    let errors = errors(dir.path(), &report);
    assert_eq!(
        errors,
        ["agent.toml:15:1: error: tools[0].query: placeholder :emial is not a parameter; declared: email"]
    );
    // The declared parameter that is never bound is a warning.
    assert!(lines(dir.path(), &report).iter().any(|l| {
        l.contains("warning: tools[0].parameters.properties.email: parameter \"email\" is not used in the query")
    }));
}

#[test]
fn url_placeholder_not_in_schema() {
    let text = format!("{BASE}{}", HTTP_TOOL.replace("orders/{number}", "orders/{order_id}"));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let errors = errors(dir.path(), &report);
    assert_eq!(
        errors,
        ["agent.toml:9:1: error: tools[0].url: placeholder {order_id} is not a parameter; declared: number"]
    );
}

#[test]
fn the_host_cannot_be_a_parameter() {
    let text =
        format!("{BASE}{}", HTTP_TOOL.replace("https://shop.example/orders/{number}", "https://{number}/orders"));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:9:1: error: tools[0].url: the host cannot come from a parameter: the model would choose where requests go"
    );
}

#[test]
fn write_query_on_a_read_tool() {
    let text = SQL_AGENT.replace(
        "SELECT id, name, plan FROM customers WHERE email = :emial",
        "DELETE FROM customers WHERE email = :email",
    );
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let error = single_error(dir.path(), &report);
    assert!(error.starts_with("agent.toml:12:1: error: tools[0].risk: a write query on a read tool"), "{error}");

    let text = text.replace("risk = \"read\"", "risk = \"write\"\nmode = \"read\"");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let error = single_error(dir.path(), &report);
    assert!(
        error.starts_with("agent.toml:16:1: error: tools[0].query: mode is \"read\" but the statement is DELETE"),
        "{error}"
    );
}

#[test]
fn unknown_database() {
    let text = SQL_AGENT.replace("database = \"crm\"", "database = \"sales\"").replace(":emial", ":email");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:14:1: error: tools[0].database: unknown database \"sales\"; declared databases: crm"
    );
}

#[test]
fn error_inside_an_included_file_names_that_file() {
    let tools = HTTP_TOOL.replace("kind = \"http\"", "kind = \"http\"\nrisk = \"medium\"");
    let agent = format!("{BASE}include = [\"tools/orders.toml\"]\n");
    let (dir, report) = validate(&[("agent.toml", &agent), ("tools/orders.toml", &tools)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "tools/orders.toml:6:1: error: tools[0].risk: unknown value \"medium\"; expected one of read, write, dangerous"
    );
}

#[test]
fn included_files_hold_only_tools_and_databases() {
    let agent = format!("{BASE}include = [\"tools.toml\"]\n");
    let (dir, report) = validate(&[("agent.toml", &agent), ("tools.toml", &format!("name = \"x\"\n{HTTP_TOOL}"))]);
    assert_eq!(
        single_error(dir.path(), &report),
        "tools.toml:1:1: error: name: unknown key \"name\": a tool file holds only [[tools]] and [databases.*]; put agent settings in the agent file"
    );
}

#[test]
fn duplicate_tools_across_included_files() {
    let agent = format!("{BASE}include = [\"a.toml\", \"b.toml\"]\n");
    let (dir, report) = validate(&[("agent.toml", &agent), ("a.toml", HTTP_TOOL), ("b.toml", HTTP_TOOL)]);
    assert_eq!(
        single_error(dir.path(), &report).replace(&format!("{}/", dir.path().display()), ""),
        "b.toml:3:1: error: tools[0].name: duplicate tool name \"lookup_order\": already declared at a.toml:3"
    );
}

#[test]
fn include_only_names_tools_of_that_file() {
    let agent = format!("{BASE}include = [{{ file = \"a.toml\", only = [\"lookup_order\", \"cancel_order\"] }}]\n");
    let (dir, report) = validate(&[("agent.toml", &agent), ("a.toml", HTTP_TOOL)]);
    let error = single_error(dir.path(), &report).replace(&format!("{}/", dir.path().display()), "");
    assert_eq!(
        error,
        "agent.toml:4:55: error: include[0].only[1]: unknown tool \"cancel_order\"; a.toml declares: lookup_order"
    );
}

#[test]
fn missing_include_file() {
    let agent = format!("{BASE}include = [\"nowhere.toml\"]\n");
    let (dir, report) = validate(&[("agent.toml", &agent)]);
    let error = single_error(dir.path(), &report);
    assert!(error.starts_with("agent.toml:4:12: error: include[0]: cannot read "), "{error}");
    assert!(error.contains("nowhere.toml"), "{error}");
}

#[test]
fn missing_prompt_file() {
    let text =
        BASE.replace("system_prompt = \"You answer questions about orders.\"", "system_prompt_file = \"prompt.md\"");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let error = single_error(dir.path(), &report).replace(&format!("{}/", dir.path().display()), "");
    assert!(
        error.starts_with("agent.toml:2:1: error: system_prompt_file: cannot read prompt file prompt.md: "),
        "{error}"
    );
}

#[test]
fn prompt_is_required_exactly_once() {
    let text = BASE.replace("system_prompt = \"You answer questions about orders.\"\n", "");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:1:1: error: system_prompt: missing required key \"system_prompt\" (or \"system_prompt_file\")"
    );
    let text = format!("{BASE}system_prompt_file = \"p.md\"\n");
    let (dir, report) = validate(&[("agent.toml", &text), ("p.md", "hi")]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:2:1: error: system_prompt: set system_prompt or system_prompt_file, not both"
    );
}

#[test]
fn missing_required_keys_and_bad_values_are_all_reported() {
    let text = r#"description = "no name, no model"
system_prompt = "x"

[limits]
timeout = "10 parsecs"
max_steps = 0

[[tools]]
name = "bad name!"
kind = "http"
"#;
    let (dir, report) = validate(&[("agent.toml", text)]);
    assert_eq!(
        errors(dir.path(), &report),
        [
            "agent.toml:1:1: error: name: missing required key \"name\"",
            "agent.toml:1:1: error: model: missing required key \"model\"",
            "agent.toml:5:1: error: limits.timeout: invalid duration \"10 parsecs\": unknown unit \"parsecs\"; use ms, s, m or h (e.g. \"30s\")",
            "agent.toml:6:1: error: limits.max_steps: must be at least 1, found 0",
            "agent.toml:9:1: error: tools[0].name: invalid tool name `bad name!`: use 1 to 64 letters, digits, `_` or `-` (providers reject anything else)",
        ]
    );
}

#[test]
fn invalid_model() {
    let text = BASE.replace("openai:gpt-4o-mini", "gpt-4o-mini");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:3:1: error: model: invalid model \"gpt-4o-mini\": expected provider:model, e.g. \"openai:gpt-4o-mini\""
    );
}

#[test]
fn secrets_are_refused_with_a_reason() {
    let text = BASE
        .replace("model = \"openai:gpt-4o-mini\"", "[model]\nid = \"openai:gpt-4o-mini\"\napi_key = \"sk-live-123\"");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:5:1: error: model.api_key: unknown key \"api_key\": secrets never go in agent files; set api_key_env to the name of the environment variable that holds the key"
    );
}

#[test]
fn handoff_name_is_reserved() {
    let text = format!("{BASE}{}", HTTP_TOOL.replace("name = \"lookup_order\"", "name = \"handoff_to_human\""));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let error = single_error(dir.path(), &report);
    assert!(
        error.starts_with("agent.toml:6:1: error: tools[0].name: \"handoff_to_human\" is the built-in handoff tool"),
        "{error}"
    );
    // With the built-in off, the name is free.
    let (_dir, report) = validate(&[("agent.toml", &format!("handoff = false\n{text}"))]);
    assert!(!report.has_errors(), "{report}");
}

#[test]
fn syntax_errors_have_positions() {
    let text = "name = \"t\"\nmodel = \n";
    let (dir, report) = validate(&[("agent.toml", text)]);
    let errors = errors(dir.path(), &report);
    assert!(!errors.is_empty());
    assert!(errors[0].starts_with("agent.toml:2:"), "{errors:?}");
}

#[test]
fn load_agent_returns_every_diagnostic() {
    let text = format!("{BASE}colour = 1\n[limits]\nmax_steps = -1\n");
    let dir = common::dir_with(&[("agent.toml", &text)]);
    let error = load_agent(&dir.path().join("agent.toml")).unwrap_err();
    let ConfigError::Invalid(diagnostics) = &error else { panic!("{error}") };
    assert_eq!(diagnostics.len(), 2);
    assert!(diagnostics.iter().all(|d| d.severity == Severity::Error));
    assert_eq!((diagnostics[1].line, diagnostics[1].column, diagnostics[1].key.as_str()), (6, 1, "limits.max_steps"));
    // Displayed one per line.
    assert_eq!(error.to_string().lines().count(), 2);
}

#[test]
fn unreadable_agent_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.toml");
    assert!(matches!(load_agent(&path), Err(ConfigError::Io { .. })));
    let report = validate_agent(&path);
    assert!(report.has_errors());
    assert_eq!(report.diagnostics[0].line, 0);
    assert!(report.diagnostics[0].to_string().contains("missing.toml: error: cannot read the agent file"));
}

#[test]
fn tools_must_be_an_array_of_tables() {
    let text = format!("{BASE}{}", HTTP_TOOL.replace("[[tools]]", "[tools]"));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:5:2: error: tools: write each tool as [[tools]] (an array of tables), not [tools]"
    );
}

#[test]
fn databases_are_sqlite_files() {
    let text = SQL_AGENT.replace("sqlite://crm.sqlite3", "sqlite::memory:").replace(":emial", ":email");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        errors(dir.path(), &report),
        [
            "agent.toml:6:1: error: databases.crm.url: database URL \"sqlite::memory:\" must name a database file (sqlite://PATH)"
        ]
    );
    let text = SQL_AGENT.replace("sqlite://crm.sqlite3", "postgres://db/crm").replace(":emial", ":email");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        errors(dir.path(), &report),
        [
            "agent.toml:6:1: error: databases.crm.url: unsupported database URL \"postgres://db/crm\": only sqlite:// databases are supported"
        ]
    );
    // A missing file is a warning: it may exist only where the agent runs.
    let text = SQL_AGENT.replace(":emial", ":email");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(!report.has_errors(), "{report}");
    let warnings = common::warnings(dir.path(), &report);
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("agent.toml:6:1: warning: databases.crm.url: database file "), "{}", warnings[0]);
}

#[test]
fn stray_braces_in_urls() {
    let text = format!("{BASE}{}", HTTP_TOOL.replace("orders/{number}", "orders/{number}?filter={a b}"));
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert_eq!(
        single_error(dir.path(), &report),
        "agent.toml:9:1: error: tools[0].url: the url has a brace that is not a {param} placeholder"
    );
}
