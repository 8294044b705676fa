//! `[[tools]]` entries: one HTTP endpoint or one parameterised SQL query
//! each, plus the built-in `handoff_to_human` tool.
//!
//! Everything that can be checked inside a single tool is checked here
//! (schema, placeholders against the schema, SQL mode against risk);
//! references to other things (databases, other tools) are checked by the
//! loader once every file has been read.

use crate::reader::{Node, Table};
use crate::schema::{self, Parameters};
use crate::source::{Loc, Sink};
use crate::templates::{self, Placeholder, WRITE_KEYWORDS};
use crate::{DeclaredTool, EnvRef};
use rein_types::{Approval, BodyMapping, HttpToolDecl, RetryPolicy, RiskTier, SqlMode, ToolImpl, ToolName, ToolSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Name of the built-in handoff tool.
pub const HANDOFF_TOOL_NAME: &str = "handoff_to_human";

/// Results longer than this many bytes of JSON are cut unless a tool says
/// otherwise: enough for a record or a short list, small enough that one
/// result cannot flood the context window.
pub(crate) const DEFAULT_MAX_RESULT_BYTES: usize = 8_000;
/// Rows a SQL tool returns unless it says otherwise.
pub(crate) const DEFAULT_MAX_ROWS: u32 = 50;
/// Shorter descriptions rarely tell the model when to use a tool.
const MIN_DESCRIPTION_CHARS: usize = 20;

const COMMON_KEYS: &[&str] =
    &["name", "description", "kind", "risk", "approval", "idempotent", "max_calls", "parameters", "max_result_bytes"];
const HTTP_KEYS: &[&str] = &["method", "url", "headers", "query", "body", "timeout", "retry", "extract"];
const SQL_KEYS: &[&str] = &["database", "query", "mode", "max_rows"];
const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The built-in tool that hands the conversation to a person and ends the
/// run. Declared here, independent of any tool implementation crate, so its
/// spec (and therefore every agent's version) is fixed by this crate.
pub fn handoff_tool() -> DeclaredTool {
    let description = "Use this to hand the conversation to a human when the request needs a person: \
        refunds, legal questions, an angry or upset customer, anything outside your tools, or when you are not \
        confident you can resolve it correctly. Calling it ends the run, so call it instead of guessing, and \
        give the reason in one sentence.";
    let parameters = json!({
        "type": "object",
        "properties": {
            "reason": {
                "type": "string",
                "description": "Why a person is needed, in one sentence, for the human who picks this up."
            }
        },
        "required": ["reason"],
        "additionalProperties": false
    });
    let name = match ToolName::new(HANDOFF_TOOL_NAME) {
        Ok(name) => name,
        // A constant that a unit test checks; never taken.
        Err(_) => unreachable!("{HANDOFF_TOOL_NAME} is a valid tool name"),
    };
    let mut spec = ToolSpec::new(name, description, parameters, RiskTier::Read);
    spec.approval = Approval::Never;
    DeclaredTool { spec, implementation: ToolImpl::Handoff }
}

/// A tool as read from a file: its name (kept even when other fields are
/// invalid, so references to it do not cascade into more errors) and, when
/// it is valid on its own, its spec and implementation.
pub(crate) struct RawTool {
    pub name: String,
    /// Where the name is, for duplicate and reference messages.
    pub name_loc: Loc,
    /// `tools[3]`.
    pub key: String,
    pub built: Option<(ToolSpec, RawImpl)>,
}

/// A tool implementation before cross-file resolution: a SQL tool names its
/// database, which may be declared in another file.
pub(crate) enum RawImpl {
    Http(HttpToolDecl),
    Sql(RawSql),
}

pub(crate) struct RawSql {
    pub database: String,
    pub database_loc: Loc,
    pub database_key: String,
    pub query: String,
    pub mode: SqlMode,
    pub max_rows: u32,
    pub max_result_bytes: usize,
}

/// Settings from the agent that tools default to.
pub(crate) struct ToolDefaults {
    pub timeout_ms: u64,
}

/// Parses one `[[tools]]` entry. Returns `None` when it has no usable name.
pub(crate) fn parse_tool(
    node: &Node<'_, '_>,
    defaults: &ToolDefaults,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
) -> Option<RawTool> {
    let table = node.table(sink)?;
    let errors_before = sink.error_count();

    let kind = table.require("kind", sink).and_then(|k| k.choice(&["http", "sql"], sink));
    let allowed: Vec<&str> = match kind {
        Some("http") => COMMON_KEYS.iter().chain(HTTP_KEYS).copied().collect(),
        Some(_) => COMMON_KEYS.iter().chain(SQL_KEYS).copied().collect(),
        // Unknown kind: accept either kind's keys rather than pile on errors.
        None => COMMON_KEYS.iter().chain(HTTP_KEYS).chain(SQL_KEYS).copied().collect(),
    };
    table.check_keys(&allowed, sink, &|key| {
        if kind == Some("sql") && HTTP_KEYS.contains(&key) {
            Some("applies only to kind = \"http\" tools".to_string())
        } else if kind == Some("http") && SQL_KEYS.contains(&key) {
            Some("applies only to kind = \"sql\" tools".to_string())
        } else if key == "type" {
            Some("use kind = \"http\" or kind = \"sql\"".to_string())
        } else {
            None
        }
    });

    let name_node = table.require("name", sink)?;
    let name_text = name_node.str(sink)?;
    let name = match ToolName::new(name_text) {
        Ok(name) => Some(name),
        Err(e) => {
            sink.error(&name_node.loc(), &name_node.key, e.to_string());
            None
        }
    };
    let mut raw =
        RawTool { name: name_text.to_string(), name_loc: name_node.loc(), key: table.key.clone(), built: None };
    let name = name?;

    let description = table.require("description", sink).and_then(|d| d.str(sink)).map(str::trim);
    if let Some(description) = description
        && description.chars().count() < MIN_DESCRIPTION_CHARS
        && let Some(node) = table.get("description")
    {
        sink.warning(
            &node.loc(),
            &node.key,
            format!(
                "description is only {} characters; describe when to use the tool (and when not to): the model picks tools by their descriptions",
                description.chars().count()
            ),
        );
    }

    let risk = match table.choice("risk", &["read", "write", "dangerous"], sink) {
        Some("read") => RiskTier::Read,
        Some("dangerous") => RiskTier::Dangerous,
        _ => RiskTier::Write,
    };
    let approval = match table.choice("approval", &["never", "required"], sink) {
        Some("never") => Approval::Never,
        Some(_) => Approval::Required,
        None => Approval::default_for(risk),
    };
    if risk == RiskTier::Dangerous
        && approval == Approval::Never
        && let Some(node) = table.get("approval")
    {
        sink.warning(
            &node.loc(),
            &node.key,
            "a dangerous tool runs without human approval: irreversible actions chosen by a model should be approved; remove approval = \"never\" unless a person already reviews every call",
        );
    }
    let idempotent = table.bool("idempotent", sink).unwrap_or(risk == RiskTier::Read);
    let max_calls = table.u32_at_least("max_calls", 1, sink);
    let parameters = match table.get("parameters") {
        Some(node) => schema::check_parameters(&node, sink),
        None => Some(schema::empty_parameters()),
    };
    let max_result_bytes = table
        .u64_at_least("max_result_bytes", 1, sink)
        .map_or(DEFAULT_MAX_RESULT_BYTES, |n| usize::try_from(n).unwrap_or(usize::MAX));

    let implementation = match (kind, &parameters) {
        (Some("http"), Some(params)) => {
            parse_http(&table, params, defaults, idempotent, max_result_bytes, env, sink).map(RawImpl::Http)
        }
        (Some("sql"), Some(params)) => parse_sql(&table, params, risk, max_result_bytes, sink).map(RawImpl::Sql),
        _ => None,
    };

    if sink.error_count() == errors_before
        && let (Some(description), Some(parameters), Some(implementation)) = (description, parameters, implementation)
    {
        let spec = ToolSpec {
            name,
            description: description.to_string(),
            parameters: parameters.schema,
            risk,
            approval,
            idempotent,
            max_calls,
        };
        raw.built = Some((spec, implementation));
    }
    Some(raw)
}

fn parse_http(
    table: &Table<'_, '_>,
    params: &Parameters,
    defaults: &ToolDefaults,
    idempotent: bool,
    max_result_bytes: usize,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
) -> Option<HttpToolDecl> {
    let errors_before = sink.error_count();
    let mut used: Vec<String> = Vec::new();

    let method = match table.get("method") {
        Some(node) => match node.str(sink) {
            Some(m) if HTTP_METHODS.contains(&m.to_ascii_uppercase().as_str()) => m.to_ascii_uppercase(),
            Some(m) => {
                sink.error(
                    &node.loc(),
                    &node.key,
                    format!("unknown value \"{m}\"; expected one of {}", HTTP_METHODS.join(", ")),
                );
                String::new()
            }
            None => String::new(),
        },
        None => "GET".to_string(),
    };

    let url = table.require("url", sink).and_then(|node| {
        let url = node.str(sink)?;
        check_url(url, &node, params, &mut used, sink);
        Some(url.to_string())
    });

    let headers = templated_map(table, "headers", params, &mut used, env, sink);
    let query = templated_map(table, "query", params, &mut used, env, sink);

    let body = match table.get("body") {
        None if matches!(method.as_str(), "POST" | "PUT" | "PATCH") => BodyMapping::Arguments,
        None => BodyMapping::None,
        Some(node) => match node.value {
            toml::de::DeValue::String(_) => match node.choice(&["none", "arguments"], sink) {
                Some("arguments") => BodyMapping::Arguments,
                _ => BodyMapping::None,
            },
            toml::de::DeValue::Table(_) => {
                let template = node.to_json(sink).unwrap_or(Value::Null);
                check_json_template(&template, &node, params, &mut used, sink);
                BodyMapping::Template(template)
            }
            _ => {
                sink.error(
                    &node.loc(),
                    &node.key,
                    "expected \"none\", \"arguments\" or a table used as a JSON template",
                );
                BodyMapping::None
            }
        },
    };
    if method == "GET"
        && body != BodyMapping::None
        && let Some(node) = table.get("body")
    {
        sink.error(
            &node.loc(),
            &node.key,
            "a GET request has no body; pass arguments in the url ({param}) or query instead",
        );
    }
    if body == BodyMapping::Arguments {
        used.extend(params.properties.iter().cloned());
    }

    let timeout_ms = table.duration_ms("timeout", sink).unwrap_or(defaults.timeout_ms);
    let retry = parse_retry(table, idempotent, sink);
    let mut extract = BTreeMap::new();
    if let Some(node) = table.get("extract")
        && let Some(map) = node.table(sink)
    {
        for (name, entry) in map.entries() {
            let Some(pointer) = entry.str(sink) else { continue };
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                sink.error(
                    &entry.loc(),
                    &entry.key,
                    format!("\"{pointer}\" is not a JSON Pointer; write it like \"/data/id\""),
                );
            }
            extract.insert(name.to_string(), pointer.to_string());
        }
    }

    warn_unused(table, params, &used, "the url, headers, query or body", sink);

    let url = url?;
    (sink.error_count() == errors_before).then_some(HttpToolDecl {
        method,
        url,
        headers,
        query,
        body,
        timeout_ms,
        retry,
        extract,
        max_result_bytes,
    })
}

/// `headers` or `query`: a table of string templates.
fn templated_map(
    table: &Table<'_, '_>,
    key: &str,
    params: &Parameters,
    used: &mut Vec<String>,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(map) = table.get(key).and_then(|node| node.table(sink)) else { return out };
    for (name, entry) in map.entries() {
        let Some(value) = entry.str(sink) else { continue };
        if key == "headers" && !is_header_name(name) {
            sink.error(&entry.loc(), &entry.key, format!("invalid header name \"{name}\""));
        }
        check_text_template(value, &entry.loc(), &entry.key, params, used, Some(env), sink);
        out.insert(name.to_string(), value.to_string());
    }
    out
}

/// Retries repeat a request after a time-out, which may have taken effect:
/// only idempotent tools retry unless the file asks for it.
fn parse_retry(table: &Table<'_, '_>, idempotent: bool, sink: &mut Sink) -> RetryPolicy {
    let mut policy = RetryPolicy::default();
    if !idempotent {
        policy.max_attempts = 1;
    }
    let Some(node) = table.get("retry") else { return policy };
    let Some(retry) = node.table(sink) else { return policy };
    retry.check_keys(&["max_attempts", "initial_backoff", "max_backoff"], sink, &|_| None);
    if let Some(n) = retry.u32_at_least("max_attempts", 1, sink) {
        policy.max_attempts = n;
    }
    if let Some(ms) = retry.duration_ms("initial_backoff", sink) {
        policy.initial_backoff_ms = ms;
    }
    if let Some(ms) = retry.duration_ms("max_backoff", sink) {
        policy.max_backoff_ms = ms;
    }
    if policy.max_backoff_ms < policy.initial_backoff_ms {
        let at = retry.get("max_backoff").or_else(|| retry.get("initial_backoff"));
        let (loc, key) = at.map_or_else(|| (retry.loc(), retry.key.clone()), |n| (n.loc(), n.key.clone()));
        sink.error(&loc, &key, "max_backoff must not be shorter than initial_backoff");
    }
    policy
}

fn parse_sql(
    table: &Table<'_, '_>,
    params: &Parameters,
    risk: RiskTier,
    max_result_bytes: usize,
    sink: &mut Sink,
) -> Option<RawSql> {
    let errors_before = sink.error_count();
    let database = table.require("database", sink).and_then(|node| Some((node.str(sink)?.to_string(), node)));
    let query_node = table.require("query", sink);
    let query = query_node.as_ref().and_then(|node| node.str(sink));

    let mut mode = None;
    if let (Some(node), Some(query)) = (&query_node, query) {
        let scan = templates::scan_sql(query);
        if scan.first_keyword.is_empty() {
            sink.error(&node.loc(), &node.key, "the query is empty");
        }
        if scan.multiple_statements {
            sink.error(&node.loc(), &node.key, "one statement per tool: remove the text after \";\"");
        }
        if scan.positional {
            sink.error(
                &node.loc(),
                &node.key,
                "positional ? placeholders are not supported; bind arguments by name, e.g. :email",
            );
        }
        for name in &scan.params {
            if !params.properties.contains(name) {
                sink.error(
                    &node.loc(),
                    &node.key,
                    format!("placeholder :{name} is not a parameter{}", schema::known(&params.properties)),
                );
            }
        }
        warn_unused(table, params, &scan.params, "the query", sink);
        let writes = WRITE_KEYWORDS.contains(&scan.first_keyword.as_str());
        mode = Some(match table.choice("mode", &["read", "write"], sink) {
            Some("read") => {
                if writes {
                    sink.error(
                        &node.loc(),
                        &node.key,
                        format!(
                            "mode is \"read\" but the statement is {}, which changes data; set mode = \"write\"",
                            scan.first_keyword.to_ascii_uppercase()
                        ),
                    );
                }
                SqlMode::Read
            }
            Some(_) => SqlMode::Write,
            // Unset: inferred from the statement, so a plain SELECT runs on
            // a read-only connection without saying so.
            None if writes => SqlMode::Write,
            None => SqlMode::Read,
        });
    }
    if mode == Some(SqlMode::Write) && risk == RiskTier::Read {
        let at = table.get("mode").or_else(|| table.get("risk")).or(query_node.clone());
        let (loc, key) = at.map_or_else(|| (table.loc(), table.key.clone()), |n| (n.loc(), n.key.clone()));
        sink.error(
            &loc,
            &key,
            "a write query on a read tool: read tools run without approval and may be retried, so they must not change data; set risk = \"write\" (or \"dangerous\")",
        );
    }
    let max_rows = table.u32_at_least("max_rows", 1, sink).unwrap_or(DEFAULT_MAX_ROWS);

    let (database, database_node) = database?;
    let query = query?;
    let mode = mode?;
    (sink.error_count() == errors_before).then(|| RawSql {
        database,
        database_loc: database_node.loc(),
        database_key: database_node.key.clone(),
        query: query.to_string(),
        mode,
        max_rows,
        max_result_bytes,
    })
}

/// The URL must be absolute http(s), with a host the model cannot choose, and
/// its placeholders must be parameters.
fn check_url(url: &str, node: &Node<'_, '_>, params: &Parameters, used: &mut Vec<String>, sink: &mut Sink) {
    let loc = node.loc();
    if url.contains("${") {
        sink.error(
            &loc,
            &node.key,
            "environment variables (${VAR}) are expanded only in headers and query values, not in the url",
        );
        return;
    }
    let Some(rest) = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://")) else {
        sink.error(&loc, &node.key, format!("\"{url}\" is not an http:// or https:// URL"));
        return;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() {
        sink.error(&loc, &node.key, format!("\"{url}\" has no host"));
    } else if authority.contains(['{', '}']) {
        // A model-chosen host would let a prompt injection send requests
        // (and their headers, tokens included) anywhere.
        sink.error(&loc, &node.key, "the host cannot come from a parameter: the model would choose where requests go");
    }
    if templates::literal_text(url).contains(['{', '}']) {
        sink.error(&loc, &node.key, "the url has a brace that is not a {param} placeholder");
    }
    check_text_template(url, &loc, &node.key, params, used, None, sink);
}

/// Checks `{param}` and `${ENV}` placeholders in one text template. `env` is
/// `None` where environment references are not expanded.
fn check_text_template(
    text: &str,
    loc: &Loc,
    key: &str,
    params: &Parameters,
    used: &mut Vec<String>,
    env: Option<&mut Vec<EnvRef>>,
    sink: &mut Sink,
) {
    match templates::scan_text(text) {
        Err(message) => sink.error(loc, key, message),
        Ok(found) => {
            let mut env = env;
            for placeholder in found {
                match placeholder {
                    Placeholder::Param(name) => {
                        if params.properties.contains(&name) {
                            used.push(name);
                        } else {
                            sink.error(
                                loc,
                                key,
                                format!(
                                    "placeholder {{{name}}} is not a parameter{}",
                                    schema::known(&params.properties)
                                ),
                            );
                        }
                    }
                    Placeholder::Env(name) => match env.as_deref_mut() {
                        Some(env) => env.push(EnvRef { name, loc: loc.clone(), key: key.to_string() }),
                        None => sink.error(loc, key, "environment variables (${VAR}) are not expanded here"),
                    },
                }
            }
        }
    }
}

/// Checks every string of a JSON body template.
fn check_json_template(
    value: &Value,
    node: &Node<'_, '_>,
    params: &Parameters,
    used: &mut Vec<String>,
    sink: &mut Sink,
) {
    fn walk(
        value: &Value,
        pointer: String,
        node: &Node<'_, '_>,
        params: &Parameters,
        used: &mut Vec<String>,
        sink: &mut Sink,
    ) {
        match value {
            Value::String(text) => {
                let at = node.follow_pointer(&pointer);
                check_text_template(text, &at.loc(), &at.key, params, used, None, sink);
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{pointer}/{i}"), node, params, used, sink);
                }
            }
            Value::Object(map) => {
                for (k, v) in map {
                    walk(v, format!("{pointer}/{}", k.replace('~', "~0").replace('/', "~1")), node, params, used, sink);
                }
            }
            _ => {}
        }
    }
    walk(value, String::new(), node, params, used, sink);
}

/// A declared parameter that nothing sends is silently dropped at call time;
/// the model would fill it in for nothing.
fn warn_unused(table: &Table<'_, '_>, params: &Parameters, used: &[String], where_: &str, sink: &mut Sink) {
    let Some(node) = table.get("parameters") else { return };
    for name in &params.properties {
        if !used.contains(name) {
            let at = node.follow_pointer(&format!("/properties/{name}"));
            sink.warning(
                &at.loc(),
                &at.key,
                format!("parameter \"{name}\" is not used in {where_}; the model's value would be ignored"),
            );
        }
    }
}

/// RFC 9110 token characters.
fn is_header_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handoff_tool_is_a_read_tool_with_one_required_reason() {
        let tool = handoff_tool();
        assert_eq!(tool.spec.name.as_str(), HANDOFF_TOOL_NAME);
        assert_eq!((tool.spec.risk, tool.spec.approval), (RiskTier::Read, Approval::Never));
        assert_eq!(tool.spec.parameters["required"], json!(["reason"]));
        assert_eq!(tool.implementation, ToolImpl::Handoff);
        assert!(jsonschema::validator_for(&tool.spec.parameters).is_ok());
        for word in ["refund", "legal", "angry", "confident", "ends the run"] {
            assert!(tool.spec.description.contains(word), "{word}");
        }
    }
}
