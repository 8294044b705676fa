//! `rein mcp tools AGENT.toml` against the reference server
//! `@modelcontextprotocol/server-everything` (installed by scripts/test.sh).

use rein_testkit::mcp_servers::{node_modules, script};

const REIN: &str = env!("CARGO_BIN_EXE_rein");

fn agent(dir: &std::path::Path, server: &str, extra: &str) -> std::path::PathBuf {
    let text = format!(
        r#"name = "lister"
system_prompt = "Use the tools."
model = "openai:gpt-4o-mini"

[[mcp_servers]]
name = "everything"
command = "node"
args = ["{server}", "stdio"]
prefix = "ev_"
allow = ["echo", "get-sum"]
{extra}
[mcp_servers.tools.get-sum]
risk = "read"
"#
    );
    let path = dir.join("agent.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn rein_mcp_tools_lists_what_the_agent_would_see() {
    let Some(modules) = node_modules() else { return };
    let dir = tempfile::tempdir().unwrap();
    let path = agent(dir.path(), &script(&modules, "server-everything"), "");

    let out = std::process::Command::new(REIN).args(["mcp", "tools", path.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("everything: 2 tool(s)\n"), "{text}");
    assert!(text.contains("  ev_echo  [write]\n    Echoes back the input string\n"), "{text}");
    assert!(text.contains("  ev_get-sum  [read]\n"), "{text}");

    let out =
        std::process::Command::new(REIN).args(["mcp", "tools", path.to_str().unwrap(), "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tools = &json["servers"][0]["tools"];
    assert_eq!(json["servers"][0]["server"], "everything");
    assert_eq!(tools[0]["name"], "ev_echo");
    assert_eq!(tools[0]["risk"], "write");
    assert_eq!(tools[0]["parameters"]["properties"]["message"]["type"], "string");
    assert_eq!(tools[1]["risk"], "read");

    // A tool the server does not offer is an error, with what it offers.
    let path = agent(dir.path(), &script(&modules, "server-everything"), "deny = [\"ecko\"]\n");
    let out = std::process::Command::new(REIN).args(["mcp", "tools", path.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no tool named `ecko`") && stderr.contains("echo"), "{stderr}");
}
