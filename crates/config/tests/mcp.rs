//! `[[mcp_servers]]`: parsed into the loaded agent and its version (the
//! declarations, not the tools, which are discovered when the agent is
//! built), every mistake an error naming file, line and key.

mod common;

use common::{BASE, dir_with, single_error, validate};
use rein_config::load_agent;
use rein_types::{Approval, McpServerDecl, McpToolPolicy, McpTransport, RiskTier};
use std::collections::BTreeMap;

const SERVERS: &str = r#"
[[mcp_servers]]
name = "files"
command = "npx"
args = ["-y", "@modelcontextprotocol/server-filesystem", "./docs"]
env = { LOG_LEVEL = "warn", TOKEN = "${FILES_TOKEN}" }
cwd = "servers"
prefix = "fs_"
allow = ["read_text_file", "list_directory"]
timeout = "10s"

[mcp_servers.tools.read_text_file]
risk = "read"

[[mcp_servers]]
name = "tickets"
url = "https://mcp.example.com/mcp"
headers = { Authorization = "Bearer ${TICKETS_TOKEN}" }
deny = ["delete_ticket"]

[mcp_servers.tools.close_ticket]
risk = "dangerous"
max_calls = 2
"#;

#[test]
fn servers_are_loaded_with_their_defaults_and_change_the_version() {
    let text = format!("{BASE}{SERVERS}");
    let dir = dir_with(&[("agent.toml", &text)]);
    let loaded = load_agent(&dir.path().join("agent.toml")).unwrap_or_else(|e| panic!("{e}"));
    let cwd = dir.path().join("servers").display().to_string();
    assert_eq!(
        loaded.mcp_servers,
        [
            McpServerDecl {
                name: "files".into(),
                transport: McpTransport::Stdio {
                    command: "npx".into(),
                    args: vec!["-y".into(), "@modelcontextprotocol/server-filesystem".into(), "./docs".into()],
                    env: BTreeMap::from([
                        ("LOG_LEVEL".into(), "warn".into()),
                        ("TOKEN".into(), "${FILES_TOKEN}".into())
                    ]),
                    cwd: Some(cwd),
                },
                prefix: "fs_".into(),
                allow: vec!["read_text_file".into(), "list_directory".into()],
                deny: vec![],
                timeout_ms: 10_000,
                max_result_bytes: 8_000,
                tools: BTreeMap::from([(
                    "read_text_file".into(),
                    McpToolPolicy { risk: Some(RiskTier::Read), ..McpToolPolicy::default() }
                )]),
            },
            McpServerDecl {
                name: "tickets".into(),
                transport: McpTransport::StreamableHttp {
                    url: "https://mcp.example.com/mcp".into(),
                    headers: BTreeMap::from([("Authorization".into(), "Bearer ${TICKETS_TOKEN}".into())]),
                },
                prefix: String::new(),
                allow: vec![],
                deny: vec!["delete_ticket".into()],
                // The agent's tool time-out.
                timeout_ms: 30_000,
                max_result_bytes: 8_000,
                tools: BTreeMap::from([(
                    "close_ticket".into(),
                    McpToolPolicy { risk: Some(RiskTier::Dangerous), max_calls: Some(2), ..McpToolPolicy::default() }
                )]),
            },
        ]
    );
    // The version hashes the working directory as written, so the same
    // agent checked out elsewhere keeps its version.
    assert_eq!(loaded.spec.extra["mcp_servers"][0]["transport"]["cwd"], "servers");
    // Discovered tools are not in the spec.
    assert_eq!(loaded.spec.tools.len(), 1, "only handoff_to_human");
    let warnings: Vec<String> = loaded.warnings.iter().map(ToString::to_string).collect();
    assert!(
        warnings.iter().any(|w| w.contains("mcp_servers[1].headers.Authorization") && w.contains("TICKETS_TOKEN")),
        "{warnings:?}"
    );

    let plain = dir_with(&[("agent.toml", BASE)]);
    let plain = load_agent(&plain.path().join("agent.toml")).unwrap();
    assert!(plain.spec.extra.get("mcp_servers").is_none() && plain.mcp_servers.is_empty());
    assert_ne!(plain.spec.version(), loaded.spec.version());
    let changed = dir_with(&[("agent.toml", &text.replace("\"10s\"", "\"11s\""))]);
    let changed = load_agent(&changed.path().join("agent.toml")).unwrap();
    assert_ne!(changed.spec.version(), loaded.spec.version());
}

fn error_for(servers: &str) -> String {
    let (dir, report) = validate(&[("agent.toml", &format!("{BASE}{servers}"))]);
    single_error(dir.path(), &report)
}

#[test]
fn each_mistake_names_its_line_and_key() {
    // BASE is three lines and the text starts with a newline: the table is
    // on line 5.
    let error = error_for("\n[[mcp_servers]]\nname = \"x\"\ncommand = \"srv\"\nalow = [\"a\"]\n");
    assert!(error.starts_with("agent.toml:8:1: error: mcp_servers[0].alow:"), "{error}");
    assert!(error.contains("did you mean \"allow\""), "{error}");

    let cases = [
        ("name = \"x\"", "mcp_servers[0]", "missing \"command\""),
        ("name = \"x\"\ncommand = \"a\"\nurl = \"http://h/mcp\"", "mcp_servers[0]", "not both"),
        ("command = \"a\"", "mcp_servers[0].name", "missing required key \"name\""),
        ("name = \"a b\"\ncommand = \"a\"", "mcp_servers[0].name", "invalid MCP server name"),
        ("name = \"x\"\ncommand = \"a\"\nheaders = { A = \"b\" }", "mcp_servers[0].headers", "only to url servers"),
        ("name = \"x\"\nurl = \"http://h/mcp\"\nargs = [\"a\"]", "mcp_servers[0].args", "only to command servers"),
        ("name = \"x\"\nurl = \"ftp://h/mcp\"", "mcp_servers[0].url", "not an http:// or https:// URL"),
        ("name = \"x\"\nurl = \"https://${HOST}/mcp\"", "mcp_servers[0].url", "only in headers"),
        (
            "name = \"x\"\nurl = \"http://h/mcp\"\nheaders = { Accept = \"x\" }",
            "mcp_servers[0].headers.Accept",
            "set by the MCP transport",
        ),
        ("name = \"x\"\ncommand = \"a\"\nenv = { T = \"${UNCLOSED\" }", "mcp_servers[0].env.T", "not closed"),
        ("name = \"x\"\ncommand = \"a\"\nprefix = \"f.s\"", "mcp_servers[0].prefix", "invalid prefix"),
        ("name = \"x\"\ncommand = \"a\"\ntimeout = \"soon\"", "mcp_servers[0].timeout", "invalid duration"),
        ("name = \"x\"\ncommand = \"a\"\nallow = \"read\"", "mcp_servers[0].allow", "expected an array"),
        (
            "name = \"x\"\ncommand = \"a\"\n[mcp_servers.tools.t]\nrisk = \"low\"",
            "mcp_servers[0].tools.t.risk",
            "unknown value",
        ),
        (
            "name = \"x\"\ncommand = \"a\"\n[mcp_servers.tools.t]\napprove = \"never\"",
            "mcp_servers[0].tools.t.approve",
            "approval",
        ),
    ];
    for (body, key, message) in cases {
        let error = error_for(&format!("\n[[mcp_servers]]\n{body}\n"));
        assert!(error.contains(&format!("error: {key}: ")) && error.contains(message), "{body}\n=> {error}");
        assert!(error.starts_with("agent.toml:") && !error.starts_with("agent.toml: "), "{error}");
    }
}

#[test]
fn names_are_unique_and_servers_are_an_array_of_tables() {
    let error = error_for(
        "\n[[mcp_servers]]\nname = \"d\"\ncommand = \"a\"\n\n[[mcp_servers]]\nname = \"d\"\ncommand = \"b\"\n",
    );
    assert!(
        error.starts_with("agent.toml:10:1: error: mcp_servers[1].name: duplicate MCP server name \"d\""),
        "{error}"
    );
    let error = error_for("\n[mcp_servers]\nname = \"x\"\ncommand = \"a\"\n");
    assert!(error.contains("error: mcp_servers: write each server as [[mcp_servers]]"), "{error}");
}

#[test]
fn policies_default_to_the_tiers_approval_and_dangerous_without_approval_warns() {
    let text = format!(
        "{BASE}\n[[mcp_servers]]\nname = \"x\"\ncommand = \"a\"\n[mcp_servers.tools.pay]\nrisk = \"dangerous\"\napproval = \"never\"\n"
    );
    let dir = dir_with(&[("agent.toml", &text)]);
    let loaded = load_agent(&dir.path().join("agent.toml")).unwrap();
    assert_eq!(loaded.mcp_servers[0].tools["pay"].approval, Some(Approval::Never));
    assert!(loaded.warnings.iter().any(|w| w.to_string().contains("without human approval")));
}
