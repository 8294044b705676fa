//! `[[mcp_servers]]`: MCP servers whose tools the agent may use. Only the
//! declaration is checked here; the tools themselves are discovered when
//! the agent is built, by asking the server.

use crate::EnvRef;
use crate::reader::{Node, Table};
use crate::source::{Loc, Sink};
use crate::templates;
use crate::tools::DEFAULT_MAX_RESULT_BYTES;
use rein_types::{Approval, McpServerDecl, McpToolPolicy, McpTransport, RiskTier};
use std::collections::BTreeMap;
use std::path::Path;

const SERVER_KEYS: &[&str] = &[
    "name",
    "command",
    "args",
    "env",
    "cwd",
    "url",
    "headers",
    "prefix",
    "allow",
    "deny",
    "timeout",
    "max_result_bytes",
    "tools",
];
const STDIO_KEYS: &[&str] = &["command", "args", "env", "cwd"];
const HTTP_KEYS: &[&str] = &["url", "headers"];
const POLICY_KEYS: &[&str] = &["risk", "approval", "idempotent", "max_calls"];
/// Leaves room for the server's own names within the 64 characters a tool
/// name may have.
const MAX_PREFIX_CHARS: usize = 32;

/// An MCP server as declared: what runs, and what the version hashes (the
/// working directory as written, so two checkouts of one agent have one
/// version).
pub(crate) struct DeclaredServer {
    pub decl: McpServerDecl,
    pub for_version: McpServerDecl,
}

pub(crate) fn parse_servers(
    node: &Node<'_, '_>,
    base: &Path,
    default_timeout_ms: u64,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
) -> Vec<DeclaredServer> {
    if matches!(node.value, toml::de::DeValue::Table(_)) {
        sink.error(
            &node.loc(),
            &node.key,
            "write each server as [[mcp_servers]] (an array of tables), not [mcp_servers]",
        );
        return Vec::new();
    }
    let mut declared: Vec<(DeclaredServer, Loc)> = Vec::new();
    for item in node.array(sink).unwrap_or_default() {
        let Some((server, loc, key)) = parse_server(&item, base, default_timeout_ms, env, sink) else { continue };
        if let Some((_, first)) = declared.iter().find(|(d, _)| d.decl.name == server.decl.name) {
            sink.error(
                &loc,
                &key,
                format!("duplicate MCP server name \"{}\": already declared at {first}", server.decl.name),
            );
            continue;
        }
        declared.push((server, loc));
    }
    declared.into_iter().map(|(d, _)| d).collect()
}

fn parse_server(
    item: &Node<'_, '_>,
    base: &Path,
    default_timeout_ms: u64,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
) -> Option<(DeclaredServer, Loc, String)> {
    let t = item.table(sink)?;
    let errors_before = sink.error_count();
    let stdio = t.get("command").is_some();
    let http = t.get("url").is_some();
    t.check_keys(SERVER_KEYS, sink, &|_| None);
    if stdio && http {
        sink.error(
            &t.loc(),
            &t.key,
            "give either command (a stdio server) or url (a Streamable HTTP server), not both",
        );
    } else if !stdio && !http {
        sink.error(&t.loc(), &t.key, "missing \"command\" (a stdio server) or \"url\" (a Streamable HTTP server)");
    }
    // Keys of the other transport are mistakes, not settings to ignore.
    let (foreign, kind) = if stdio { (HTTP_KEYS, "url servers") } else { (STDIO_KEYS, "command servers") };
    if stdio != http {
        for key in foreign {
            if let Some(node) = t.get(key) {
                sink.error(&node.loc(), &node.key, format!("\"{key}\" applies only to {kind}"));
            }
        }
    }

    let name_node = t.require("name", sink)?;
    let name = name_node.str(sink)?.to_string();
    if !is_name(&name, 64) {
        sink.error(
            &name_node.loc(),
            &name_node.key,
            format!("invalid MCP server name \"{name}\": use 1 to 64 letters, digits, _ or -"),
        );
    }

    let (transport, written_cwd) = if stdio {
        let command = t.str("command", sink).unwrap_or_default().to_string();
        if command.trim().is_empty()
            && let Some(node) = t.get("command")
        {
            sink.error(&node.loc(), &node.key, "the command is empty");
        }
        let args = t
            .get("args")
            .and_then(|n| n.strings(sink))
            .map(|items| items.into_iter().map(|(s, _)| s).collect())
            .unwrap_or_default();
        let env_vars = string_map(&t, "env", env, sink, &|name| {
            (name.is_empty() || name.contains('=')).then(|| format!("invalid environment variable name \"{name}\""))
        });
        let written_cwd = t.str("cwd", sink).map(str::to_string);
        let cwd = written_cwd.as_ref().map(|cwd| {
            let path = Path::new(cwd);
            if path.is_absolute() { cwd.clone() } else { base.join(path).display().to_string() }
        });
        (McpTransport::Stdio { command, args, env: env_vars, cwd }, written_cwd)
    } else {
        let url = t.get("url").and_then(|node| {
            let url = node.str(sink)?;
            if url.contains("${") {
                sink.error(
                    &node.loc(),
                    &node.key,
                    "environment variables (${VAR}) are expanded only in headers, not in the url",
                );
            } else if !(url.starts_with("http://") || url.starts_with("https://")) {
                sink.error(&node.loc(), &node.key, format!("\"{url}\" is not an http:// or https:// URL"));
            }
            Some(url.to_string())
        });
        let headers = string_map(&t, "headers", env, sink, &|name| {
            let token =
                !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !token {
                Some(format!("invalid header name \"{name}\""))
            } else if ["accept", "mcp-session-id", "mcp-protocol-version", "last-event-id"]
                .contains(&name.to_ascii_lowercase().as_str())
            {
                Some(format!("header \"{name}\" is set by the MCP transport itself"))
            } else {
                None
            }
        });
        (McpTransport::StreamableHttp { url: url.unwrap_or_default(), headers }, None)
    };

    let prefix = t.get("prefix").and_then(|node| {
        let prefix = node.str(sink)?;
        if !prefix.is_empty() && !is_name(prefix, MAX_PREFIX_CHARS) {
            sink.error(
                &node.loc(),
                &node.key,
                format!(
                    "invalid prefix \"{prefix}\": use up to {MAX_PREFIX_CHARS} letters, digits, _ or - (it starts tool names)"
                ),
            );
        }
        Some(prefix.to_string())
    });
    let allow = names(&t, "allow", sink);
    let deny = names(&t, "deny", sink);
    for (name, node) in &deny {
        if allow.iter().any(|(a, _)| a == name) {
            sink.warning(&node.loc(), &node.key, format!("\"{name}\" is both allowed and denied; deny wins"));
        }
    }
    let timeout_ms = t.duration_ms("timeout", sink).unwrap_or(default_timeout_ms);
    let max_result_bytes = t
        .u64_at_least("max_result_bytes", 1, sink)
        .map_or(DEFAULT_MAX_RESULT_BYTES, |n| usize::try_from(n).unwrap_or(usize::MAX));

    let mut tools = BTreeMap::new();
    if let Some(table) = t.get("tools").and_then(|n| n.table(sink)) {
        for (tool, node) in table.entries() {
            let Some(policy_table) = node.table(sink) else { continue };
            if let Some((_, denied)) = deny.iter().find(|(d, _)| d == tool) {
                sink.warning(
                    &node.loc(),
                    &node.key,
                    format!("\"{tool}\" is denied (at {}); this has no effect", denied.loc()),
                );
            }
            tools.insert(tool.to_string(), parse_policy(&policy_table, sink));
        }
    }

    if sink.error_count() != errors_before {
        return None;
    }
    let decl = McpServerDecl {
        name,
        transport,
        prefix: prefix.unwrap_or_default(),
        allow: allow.into_iter().map(|(n, _)| n).collect(),
        deny: deny.into_iter().map(|(n, _)| n).collect(),
        timeout_ms,
        max_result_bytes,
        tools,
    };
    let mut for_version = decl.clone();
    if let McpTransport::Stdio { cwd, .. } = &mut for_version.transport {
        *cwd = written_cwd;
    }
    Some((DeclaredServer { decl, for_version }, name_node.loc(), name_node.key.clone()))
}

fn parse_policy(t: &Table<'_, '_>, sink: &mut Sink) -> McpToolPolicy {
    t.check_keys(POLICY_KEYS, sink, &|_| None);
    let risk = t.choice("risk", &["read", "write", "dangerous"], sink).map(|risk| match risk {
        "read" => RiskTier::Read,
        "dangerous" => RiskTier::Dangerous,
        _ => RiskTier::Write,
    });
    let approval = t.choice("approval", &["never", "required"], sink).map(|a| match a {
        "never" => Approval::Never,
        _ => Approval::Required,
    });
    if risk == Some(RiskTier::Dangerous)
        && approval == Some(Approval::Never)
        && let Some(node) = t.get("approval")
    {
        sink.warning(
            &node.loc(),
            &node.key,
            "a dangerous tool runs without human approval: irreversible actions chosen by a model should be approved; remove approval = \"never\" unless a person already reviews every call",
        );
    }
    McpToolPolicy {
        risk,
        approval,
        idempotent: t.bool("idempotent", sink),
        max_calls: t.u32_at_least("max_calls", 1, sink),
    }
}

/// `env` or `headers`: a table of strings whose `${VAR}` references are
/// read from the environment when the server starts.
fn string_map(
    t: &Table<'_, '_>,
    key: &str,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
    check_name: &dyn Fn(&str) -> Option<String>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(map) = t.get(key).and_then(|n| n.table(sink)) else { return out };
    for (name, entry) in map.entries() {
        let Some(value) = entry.str(sink) else { continue };
        if let Some(message) = check_name(name) {
            sink.error(&entry.loc(), &entry.key, message);
        }
        let mut rest = value;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                sink.error(&entry.loc(), &entry.key, "\"${\" is not closed: write ${VAR}");
                break;
            };
            let var = &after[..end];
            if templates::is_ident(var) {
                env.push(EnvRef { name: var.to_string(), loc: entry.loc(), key: entry.key.clone() });
            } else {
                sink.error(&entry.loc(), &entry.key, format!("\"{var}\" is not an environment variable name"));
            }
            rest = &after[end + 1..];
        }
        out.insert(name.to_string(), value.to_string());
    }
    out
}

fn names<'a, 'i>(t: &Table<'a, 'i>, key: &str, sink: &mut Sink) -> Vec<(String, Node<'a, 'i>)> {
    t.get(key).and_then(|n| n.strings(sink)).unwrap_or_default()
}

fn is_name(name: &str, max: usize) -> bool {
    !name.is_empty() && name.len() <= max && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}
