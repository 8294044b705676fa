//! Reads an agent file and its includes, checks everything, and resolves the
//! result into an [`AgentSpec`] plus the tools' implementations.
//!
//! The work is in three passes so that every problem is reported at once:
//! each file is walked on its own (types, values, schemas, placeholders);
//! then references between files are checked (databases, tool names in
//! `include.only` and `stop.after_tools`, duplicates); then, only if nothing
//! failed, the spec is assembled.

use crate::diagnostic::{self, Report};
use crate::mcp;
use crate::prices::{PriceTable, price_for};
use crate::reader::{Node, Table, join_key};
use crate::schedules;
use crate::source::{Loc, Sink, SourceFile};
use crate::templates::{self, Placeholder};
use crate::tools::{self, HANDOFF_TOOL_NAME, RawImpl, RawTool, ToolDefaults};
use crate::webhooks;
use crate::{DeclaredTool, Fallback, LoadedAgent};
use rein_types::{
    AgentSpec, Limits, ModelPrice, ModelRef, ModelSettings, Phase, ProviderDecl, Route, ScheduleDecl, SqlToolDecl,
    StopConditions, ToolChoice, ToolImpl, WebhookDecl,
};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::de::DeTable;

/// More tools than this and the model picks the wrong one more often.
const MAX_TOOLS: usize = 15;
/// Past this, a system prompt hurts more than it helps.
const MAX_PROMPT_TOKENS: usize = 600;
/// Providers rein is known to speak to; anything else is probably a typo.
// Kept in step with `rein_providers::KNOWN_PROVIDERS` (plus the providers
// that are planned); config must not depend on the providers crate, which
// pulls in the HTTP stack. A test in rein-cli checks the two lists agree.
pub const KNOWN_PROVIDERS: &[&str] =
    &["openai", "openrouter", "ollama", "vllm", "llamacpp", "openai-compatible", "anthropic", "gemini", "local"];

const AGENT_KEYS: &[&str] = &[
    "name",
    "description",
    "system_prompt",
    "system_prompt_file",
    "include",
    "handoff",
    "model",
    "limits",
    "stop",
    "prices",
    "databases",
    "tools",
    "providers",
    "output_schema",
    "webhooks",
    "schedules",
    "mcp_servers",
];
const TOOL_FILE_KEYS: &[&str] = &["tools", "databases"];
const MODEL_KEYS: &[&str] = &[
    "id",
    "base_url",
    "api_key_env",
    "temperature",
    "top_p",
    "seed",
    "max_output_tokens",
    "stop",
    "timeout",
    "max_retries",
    "headers",
    "fallbacks",
    "routes",
];

/// Phases `[model.routes]` may name.
const ROUTE_KEYS: &[&str] = &["planning", "tool_selection", "reflection", "synthesis", "summarisation"];
const PROVIDER_KEYS: &[&str] = &[
    "base_url",
    "api_key_env",
    "max_concurrency",
    "requests_per_minute",
    "tokens_per_minute",
    "threads",
    "context_length",
    "tool_choice",
];
const LIMIT_KEYS: &[&str] = &[
    "max_steps",
    "timeout",
    "max_tokens",
    "max_cost_usd",
    "max_invalid_calls",
    "max_tool_errors",
    "max_no_progress_steps",
    "max_output_repairs",
    "summarise_above_tokens",
    "tool_timeout",
    "approval_timeout",
];
const PRICE_KEYS: &[&str] = &["input_per_mtok", "output_per_mtok", "cached_input_per_mtok"];

/// An `${VAR}` reference, checked against the environment at the end so a
/// missing variable is warned about once.
pub(crate) struct EnvRef {
    pub name: String,
    pub loc: Loc,
    pub key: String,
}

/// A `[databases.NAME]` entry.
struct Database {
    name: String,
    /// As written, relative paths resolved against the declaring file.
    url: String,
    /// As written: what the version hashes, so that the same agent checked
    /// out in two places has the same version.
    written_url: String,
    loc: Loc,
}

/// An `include` entry.
struct Include {
    path: PathBuf,
    loc: Loc,
    key: String,
    /// `only = [...]`: names with their locations and keys.
    only: Option<Vec<(String, Loc, String)>>,
}

/// What one file (the agent file or a tool file) contributed.
#[derive(Default)]
struct FileParts {
    tools: Vec<RawTool>,
    databases: Vec<Database>,
}

/// The agent file's own settings.
struct AgentParts {
    name: Option<String>,
    description: String,
    prompt: Option<String>,
    prompt_loc: Loc,
    prompt_key: String,
    includes: Vec<Include>,
    handoff: bool,
    model: Option<ModelRef>,
    settings: ModelSettings,
    provider: ProviderDecl,
    /// `[model] fallbacks`, each with its provider's settings.
    fallbacks: Vec<Fallback>,
    /// `[model.routes]`, each with its provider's settings.
    routes: Vec<(Phase, Fallback)>,
    limits: Limits,
    max_cost_loc: Option<(Loc, String)>,
    stop: Vec<(String, Loc, String)>,
    prices: BTreeMap<String, ModelPrice>,
    output_schema: Option<serde_json::Value>,
    /// `[[webhooks]]`, in order.
    webhooks: Vec<WebhookDecl>,
    /// `[[schedules]]`, in order.
    schedules: Vec<ScheduleDecl>,
    /// `[[mcp_servers]]`, in order.
    mcp_servers: Vec<mcp::DeclaredServer>,
    own: FileParts,
}

/// Validates the agent whose text is `text`; `path` names it in messages and
/// anchors relative paths.
pub(crate) fn validate_text(path: &Path, text: String) -> Report {
    let mut sink = Sink::default();
    let mut env = Vec::new();
    let mut files = vec![path.to_path_buf()];
    // Something could not be read or parsed: cross-file checks would only
    // report its consequences, so they are skipped.
    let mut incomplete = false;

    let agent_src = SourceFile::new(path.to_path_buf(), text);
    let agent = parse_document(&agent_src, &mut sink).map(|root| {
        let table = Table::root(&agent_src, &root);
        parse_agent(&table, &mut env, &mut incomplete, &mut sink)
    });
    let Some(mut agent) = agent else {
        return finish(path, sink, &files, None);
    };

    if let Some(prompt) = &agent.prompt {
        let tokens = prompt.chars().count() / 4;
        if tokens > MAX_PROMPT_TOKENS {
            sink.warning(
                &agent.prompt_loc,
                &agent.prompt_key,
                format!(
                    "the system prompt is about {tokens} tokens (estimated as characters / 4); keep it under {MAX_PROMPT_TOKENS}: long prompts hurt more than they help"
                ),
            );
        }
    }

    // Included tool files, in order.
    let mut included: Vec<(usize, FileParts)> = Vec::new();
    for (index, include) in agent.includes.iter().enumerate() {
        if files.contains(&include.path) {
            sink.error(&include.loc, &include.key, format!("{} is already included", include.path.display()));
            continue;
        }
        files.push(include.path.clone());
        match std::fs::read_to_string(&include.path) {
            Err(e) => {
                sink.error(&include.loc, &include.key, format!("cannot read {}: {e}", include.path.display()));
                incomplete = true;
            }
            Ok(text) => {
                let src = SourceFile::new(include.path.clone(), text);
                match parse_document(&src, &mut sink) {
                    None => incomplete = true,
                    Some(root) => {
                        let table = Table::root(&src, &root);
                        let defaults = ToolDefaults { timeout_ms: agent.limits.tool_timeout_ms };
                        let parts = parse_tool_file(&table, &defaults, &mut env, &mut incomplete, &mut sink);
                        included.push((index, parts));
                    }
                }
            }
        }
    }

    // Every file's databases, checked for duplicates.
    let mut databases: BTreeMap<String, Database> = BTreeMap::new();
    let own_databases = std::mem::take(&mut agent.own.databases);
    for db in own_databases.into_iter().chain(included.iter_mut().flat_map(|(_, p)| std::mem::take(&mut p.databases))) {
        if let Some(first) = databases.get(&db.name) {
            sink.error(
                &db.loc,
                &join_key("databases", &db.name),
                format!("database \"{}\" is already declared at {}", db.name, first.loc),
            );
        } else {
            databases.insert(db.name.clone(), db);
        }
    }

    // The tools the agent gets: each include's (filtered by `only`), then
    // the agent file's own, then the handoff tool.
    let mut selected: Vec<RawTool> = Vec::new();
    for (index, parts) in included {
        let include = &agent.includes[index];
        match &include.only {
            None => selected.extend(parts.tools),
            Some(only) => {
                if !incomplete {
                    for (name, loc, key) in only {
                        if !parts.tools.iter().any(|t| &t.name == name) {
                            let declared: Vec<&str> = parts.tools.iter().map(|t| t.name.as_str()).collect();
                            sink.error(
                                loc,
                                key,
                                format!(
                                    "unknown tool \"{name}\"; {} declares: {}",
                                    include.path.display(),
                                    list_or_none(&declared)
                                ),
                            );
                        }
                    }
                }
                selected.extend(parts.tools.into_iter().filter(|t| only.iter().any(|(n, _, _)| n == &t.name)));
            }
        }
    }
    selected.append(&mut agent.own.tools);

    for (i, tool) in selected.iter().enumerate() {
        if let Some(first) = selected[..i].iter().find(|t| t.name == tool.name) {
            sink.error(
                &tool.name_loc,
                &join_key(&tool.key, "name"),
                format!("duplicate tool name \"{}\": already declared at {}", tool.name, first.name_loc),
            );
        }
        if agent.handoff && tool.name == HANDOFF_TOOL_NAME {
            sink.error(
                &tool.name_loc,
                &join_key(&tool.key, "name"),
                format!(
                    "\"{HANDOFF_TOOL_NAME}\" is the built-in handoff tool; rename this tool or set handoff = false"
                ),
            );
        }
    }

    let mut names: Vec<&str> = selected.iter().map(|t| t.name.as_str()).collect();
    if agent.handoff {
        names.push(HANDOFF_TOOL_NAME);
    }
    if !incomplete {
        for tool in &selected {
            if let Some((_, RawImpl::Sql(sql))) = &tool.built
                && !databases.contains_key(&sql.database)
            {
                let declared: Vec<&str> = databases.keys().map(String::as_str).collect();
                sink.error(
                    &sql.database_loc,
                    &sql.database_key,
                    format!("unknown database \"{}\"; declared databases: {}", sql.database, list_or_none(&declared)),
                );
            }
        }
        for (name, loc, key) in &agent.stop {
            // An MCP server's tools are known only once it is asked, when
            // the agent is built; the runtime checks the name then.
            if !names.contains(&name.as_str()) && agent.mcp_servers.is_empty() {
                sink.error(
                    loc,
                    key,
                    format!("unknown tool \"{name}\"; the agent's tools are: {}", list_or_none(&names)),
                );
            }
        }
    }

    if names.len() > MAX_TOOLS
        && let Some(tool) = selected.get(MAX_TOOLS).or(selected.last())
    {
        sink.warning(
            &tool.name_loc,
            &tool.key,
            format!(
                "the agent has {} tools (more than {MAX_TOOLS}): selection accuracy drops with many tools; split the agent or expose a subset (include = [{{ file = \"...\", only = [...] }}])",
                names.len()
            ),
        );
    }

    let overrides = PriceTable::from_entries("agent", std::mem::take(&mut agent.prices));
    let price = agent.model.as_ref().and_then(|m| price_for(m, &overrides));
    if price.is_none()
        && agent.model.is_some()
        && let Some((loc, key)) = &agent.max_cost_loc
    {
        sink.warning(
            loc,
            key,
            "the model has no known price, so the cost budget cannot be enforced (cost counts as zero); add [prices.\"provider:model\"]",
        );
    }

    warn_missing_env(&env, &mut sink);

    if sink.error_count() > 0 {
        return finish(path, sink, &files, None);
    }
    let loaded = assemble(path, agent, selected, &databases, price, overrides);
    if loaded.is_none() {
        // Every missing piece records an error where it is found, so this
        // is never reached; it keeps a bug from passing as a valid agent.
        sink.error(&agent_src.loc(0), "", "internal error: the agent passed validation but could not be assembled");
    }
    finish(path, sink, &files, loaded)
}

/// Sorts the diagnostics and attaches the agent (with its warnings) when
/// there were no errors.
fn finish(path: &Path, sink: Sink, files: &[PathBuf], agent: Option<LoadedAgent>) -> Report {
    let mut diagnostics = sink.diagnostics;
    diagnostic::sort(&mut diagnostics, files);
    let has_errors = diagnostics.iter().any(|d| d.is_error());
    let agent = agent.filter(|_| !has_errors).map(|mut agent| {
        agent.warnings = diagnostics.clone();
        agent
    });
    Report { path: path.to_path_buf(), diagnostics, agent }
}

/// Parses TOML, reporting every syntax error; `None` if there was one, since
/// a half-parsed document would only produce misleading findings.
fn parse_document<'i>(src: &'i SourceFile, sink: &mut Sink) -> Option<DeTable<'i>> {
    let (root, errors) = DeTable::parse_recoverable(&src.text);
    for error in &errors {
        let offset = error.span().map_or(0, |s| s.start);
        sink.error(&src.loc(offset), "", error.message().trim().to_string());
    }
    errors.is_empty().then(|| root.into_inner())
}

fn parse_agent(table: &Table<'_, '_>, env: &mut Vec<EnvRef>, incomplete: &mut bool, sink: &mut Sink) -> AgentParts {
    table.check_keys(AGENT_KEYS, sink, &|key| match key {
        "version" => Some("an agent's version is the hash of its content; it is computed, not declared".to_string()),
        _ => None,
    });
    let base = base_dir(&table.src.path);

    let name = table.require("name", sink).and_then(|node| {
        let name = node.str(sink)?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !valid {
            sink.error(
                &node.loc(),
                &node.key,
                format!("invalid agent name \"{name}\": use 1 to 64 lowercase letters, digits, _ or -"),
            );
        }
        valid.then(|| name.to_string())
    });
    let description = table.str("description", sink).unwrap_or_default().trim().to_string();

    let (prompt, prompt_loc, prompt_key) = parse_prompt(table, &base, sink);
    let includes = table.get("include").map(|node| parse_includes(&node, &base, sink)).unwrap_or_default();
    let handoff = table.bool("handoff", sink).unwrap_or(true);

    let mut settings = ModelSettings::default();
    let mut provider = ProviderDecl::default();
    let mut fallback_refs = Vec::new();
    let mut route_refs = Vec::new();
    let model = table.require("model", sink).and_then(|node| {
        parse_model(&node, &mut settings, &mut provider, &mut fallback_refs, &mut route_refs, env, sink)
    });
    let providers = table.get("providers").map(|node| parse_providers(&node, env, sink)).unwrap_or_default();
    let (fallbacks, routes) =
        resolve_providers(model.as_ref(), &mut provider, fallback_refs, route_refs, &providers, sink);

    let mut limits = Limits::default();
    let mut max_cost_loc = None;
    if let Some(t) = table.get("limits").and_then(|n| n.table(sink)) {
        t.check_keys(LIMIT_KEYS, sink, &|_| None);
        parse_limits(&t, &mut limits, sink);
        max_cost_loc = t.get("max_cost_usd").map(|n| (n.loc(), n.key));
    }

    let mut stop = Vec::new();
    if let Some(t) = table.get("stop").and_then(|n| n.table(sink)) {
        t.check_keys(&["after_tools"], sink, &|_| None);
        if let Some(names) = t.get("after_tools").and_then(|n| n.strings(sink)) {
            stop = names.into_iter().map(|(name, node)| (name, node.loc(), node.key)).collect();
        }
    }

    let prices = table.get("prices").map(|node| parse_prices(&node, sink)).unwrap_or_default();
    let output_schema = table.get("output_schema").and_then(|node| parse_output_schema(&node, sink));
    let webhooks = table.get("webhooks").map(|node| webhooks::parse_webhooks(&node, env, sink)).unwrap_or_default();
    let schedules = table.get("schedules").map(|node| schedules::parse_schedules(&node, sink)).unwrap_or_default();

    let defaults = ToolDefaults { timeout_ms: limits.tool_timeout_ms };
    let mcp_servers = table
        .get("mcp_servers")
        .map(|node| mcp::parse_servers(&node, &base, limits.tool_timeout_ms, env, sink))
        .unwrap_or_default();
    let own = parse_tool_file_parts(table, &defaults, env, incomplete, sink);

    AgentParts {
        name,
        description,
        prompt,
        prompt_loc,
        prompt_key,
        includes,
        handoff,
        model,
        settings,
        provider,
        fallbacks,
        routes,
        limits,
        max_cost_loc,
        stop,
        prices,
        output_schema,
        webhooks,
        schedules,
        mcp_servers,
        own,
    }
}

/// `output_schema`: a JSON Schema (as a TOML table) the final answer must
/// satisfy.
fn parse_output_schema(node: &Node<'_, '_>, sink: &mut Sink) -> Option<serde_json::Value> {
    node.table(sink)?;
    let schema = node.to_json(sink)?;
    if let Err(error) = jsonschema::validator_for(&schema) {
        let at = node.follow_pointer(error.instance_path().as_str());
        sink.error(&at.loc(), &at.key, format!("invalid JSON Schema: {error}"));
        return None;
    }
    Some(schema)
}

/// The directory relative paths in `file` resolve against.
fn base_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `system_prompt` or `system_prompt_file`, exactly one.
fn parse_prompt(table: &Table<'_, '_>, base: &Path, sink: &mut Sink) -> (Option<String>, Loc, String) {
    let inline = table.get("system_prompt");
    let file = table.get("system_prompt_file");
    match (inline, file) {
        (Some(a), Some(_)) => {
            sink.error(&a.loc(), &a.key, "set system_prompt or system_prompt_file, not both");
            (None, a.loc(), a.key)
        }
        (None, None) => {
            sink.error(
                &table.loc(),
                "system_prompt",
                "missing required key \"system_prompt\" (or \"system_prompt_file\")",
            );
            (None, table.loc(), "system_prompt".to_string())
        }
        (Some(node), None) => {
            let text = node.str(sink).map(str::to_string);
            (non_empty_prompt(text, &node, sink), node.loc(), node.key)
        }
        (None, Some(node)) => {
            let text = node.str(sink).and_then(|rel| {
                let path = base.join(rel);
                match std::fs::read_to_string(&path) {
                    Ok(text) => Some(text),
                    Err(e) => {
                        sink.error(&node.loc(), &node.key, format!("cannot read prompt file {}: {e}", path.display()));
                        None
                    }
                }
            });
            (non_empty_prompt(text, &node, sink), node.loc(), node.key)
        }
    }
}

fn non_empty_prompt(text: Option<String>, node: &Node<'_, '_>, sink: &mut Sink) -> Option<String> {
    let text = text?;
    if text.trim().is_empty() {
        sink.error(&node.loc(), &node.key, "the system prompt is empty");
        return None;
    }
    Some(text)
}

fn parse_includes(node: &Node<'_, '_>, base: &Path, sink: &mut Sink) -> Vec<Include> {
    let mut out = Vec::new();
    for item in node.array(sink).unwrap_or_default() {
        match item.value {
            toml::de::DeValue::String(rel) => {
                out.push(Include { path: base.join(rel.as_ref()), loc: item.loc(), key: item.key.clone(), only: None });
            }
            toml::de::DeValue::Table(_) => {
                let Some(t) = item.table(sink) else { continue };
                t.check_keys(&["file", "only"], sink, &|_| None);
                let Some(file) = t.require("file", sink).and_then(|n| n.str(sink)) else { continue };
                let only = t.get("only").and_then(|n| {
                    let names = n.strings(sink)?;
                    if names.is_empty() {
                        sink.error(&n.loc(), &n.key, "only = [] selects no tools; remove the include instead");
                    }
                    Some(names.into_iter().map(|(name, node)| (name, node.loc(), node.key)).collect())
                });
                out.push(Include { path: base.join(file), loc: item.loc(), key: item.key.clone(), only });
            }
            _ => {
                sink.error(&item.loc(), &item.key, "expected a file path or { file = \"...\", only = [\"tool\", ...] }")
            }
        }
    }
    out
}

/// `model = "provider:model"` or a `[model]` table.
fn parse_model(
    node: &Node<'_, '_>,
    settings: &mut ModelSettings,
    provider: &mut ProviderDecl,
    fallbacks: &mut Vec<(ModelRef, Loc, String)>,
    routes: &mut Vec<(Phase, ModelRef, Loc, String)>,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
) -> Option<ModelRef> {
    let id_node = match node.value {
        toml::de::DeValue::String(_) => node.clone(),
        toml::de::DeValue::Table(_) => {
            let t = node.table(sink)?;
            t.check_keys(MODEL_KEYS, sink, &|key| match key {
                "api_key" | "key" | "token" | "secret" => Some(
                    "secrets never go in agent files; set api_key_env to the name of the environment variable that holds the key"
                        .to_string(),
                ),
                "provider" | "name" => Some("write the model as id = \"provider:model\"".to_string()),
                _ => None,
            });
            parse_model_table(&t, settings, provider, env, sink);
            if let Some(list) = t.get("fallbacks").and_then(|n| n.strings(sink)) {
                for (id, entry) in list {
                    if let Some(model) = parse_model_ref(&id, &entry, true, sink) {
                        fallbacks.push((model, entry.loc(), entry.key.clone()));
                    }
                }
            }
            if let Some(table) = t.get("routes").and_then(|n| n.table(sink)) {
                table.check_keys(ROUTE_KEYS, sink, &|_| None);
                for phase in Phase::ALL {
                    if let Some(entry) = table.get(phase.as_str())
                        && let Some(id) = entry.str(sink)
                        && let Some(model) = parse_model_ref(id, &entry, false, sink)
                    {
                        routes.push((phase, model, entry.loc(), entry.key.clone()));
                    }
                }
            }
            t.require("id", sink)?
        }
        _ => {
            sink.error(&node.loc(), &node.key, "expected \"provider:model\" or a [model] table");
            return None;
        }
    };
    let id = id_node.str(sink)?;
    parse_model_ref(id, &id_node, provider.base_url.is_some(), sink)
}

/// Checks one `provider:model` reference. An unknown provider is a warning
/// unless `has_base_url` (a gateway rein does not know by name).
fn parse_model_ref(id: &str, node: &Node<'_, '_>, has_base_url: bool, sink: &mut Sink) -> Option<ModelRef> {
    let parsed = ModelRef::parse(id).filter(|m| {
        m.provider.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
            && !m.name.chars().any(char::is_whitespace)
    });
    let Some(model) = parsed else {
        sink.error(
            &node.loc(),
            &node.key,
            format!("invalid model \"{id}\": expected provider:model, e.g. \"openai:gpt-4o-mini\""),
        );
        return None;
    };
    if !KNOWN_PROVIDERS.contains(&model.provider.as_str()) && !has_base_url {
        sink.warning(
            &node.loc(),
            &node.key,
            format!(
                "unknown provider \"{}\" (known: {}); check the spelling",
                model.provider,
                KNOWN_PROVIDERS.join(", ")
            ),
        );
    }
    Some(model)
}

/// A `[providers.NAME]` table: how to reach a provider and its limits.
struct ProviderSettings {
    decl: ProviderDecl,
    loc: Loc,
    key: String,
}

/// `[providers.NAME]` tables, by provider name.
fn parse_providers(node: &Node<'_, '_>, env: &mut Vec<EnvRef>, sink: &mut Sink) -> BTreeMap<String, ProviderSettings> {
    let mut out = BTreeMap::new();
    let Some(table) = node.table(sink) else { return out };
    for (name, entry) in table.entries() {
        let Some(t) = entry.table(sink) else { continue };
        t.check_keys(PROVIDER_KEYS, sink, &|key| match key {
            "api_key" | "key" | "token" | "secret" => Some(
                "secrets never go in agent files; set api_key_env to the name of the environment variable that holds the key"
                    .to_string(),
            ),
            "timeout" | "max_retries" | "headers" => {
                Some("set it in [model]; it applies to the primary model and every fallback".to_string())
            }
            _ => None,
        });
        let mut decl = ProviderDecl::default();
        parse_endpoint(&t, &mut decl, env, sink);
        decl.max_concurrency = t.u32_at_least("max_concurrency", 1, sink);
        decl.requests_per_minute = t.u32_at_least("requests_per_minute", 1, sink);
        decl.tokens_per_minute = t.u32_at_least("tokens_per_minute", 1, sink);
        decl.threads = t.u32_at_least("threads", 1, sink);
        decl.context_length = t.u32_at_least("context_length", 16, sink);
        decl.tool_choice = t.choice("tool_choice", ToolChoice::NAMES, sink).and_then(ToolChoice::parse);
        if !KNOWN_PROVIDERS.contains(&name) && decl.base_url.is_none() {
            sink.warning(
                &entry.loc(),
                &entry.key,
                format!("unknown provider \"{name}\" (known: {}); check the spelling", KNOWN_PROVIDERS.join(", ")),
            );
        }
        out.insert(name.to_string(), ProviderSettings { decl, loc: entry.loc(), key: entry.key.clone() });
    }
    out
}

/// Gives the primary model and each fallback its provider's settings.
/// The primary's `[model]` `base_url` and `api_key_env` win over its
/// `[providers.NAME]` ones; fallbacks take `timeout` and `max_retries` from
/// `[model]` (headers stay the primary's: they are usually provider-specific).
fn resolve_providers(
    model: Option<&ModelRef>,
    provider: &mut ProviderDecl,
    fallbacks: Vec<(ModelRef, Loc, String)>,
    routes: Vec<(Phase, ModelRef, Loc, String)>,
    providers: &BTreeMap<String, ProviderSettings>,
    sink: &mut Sink,
) -> (Vec<Fallback>, Vec<(Phase, Fallback)>) {
    if let Some(model) = model
        && let Some(settings) = providers.get(&model.provider)
    {
        let own = &settings.decl;
        provider.base_url = provider.base_url.take().or_else(|| own.base_url.clone());
        provider.api_key_env = provider.api_key_env.take().or_else(|| own.api_key_env.clone());
        provider.max_concurrency = own.max_concurrency;
        provider.requests_per_minute = own.requests_per_minute;
        provider.tokens_per_minute = own.tokens_per_minute;
        provider.threads = own.threads;
        provider.context_length = own.context_length;
        provider.tool_choice = own.tool_choice;
    }
    let mut out: Vec<Fallback> = Vec::new();
    for (fallback, loc, key) in fallbacks {
        if model == Some(&fallback) || out.iter().any(|f| f.model == fallback) {
            sink.error(&loc, &key, format!("\"{fallback}\" is already in the chain; each model may appear once"));
            continue;
        }
        let mut decl = providers.get(&fallback.provider).map(|s| s.decl.clone()).unwrap_or_default();
        decl.timeout_ms = provider.timeout_ms;
        decl.max_retries = provider.max_retries;
        out.push(Fallback { model: fallback, provider: decl });
    }
    // A route on the primary's provider reaches it the same way; others use
    // their `[providers.NAME]` table. All take the primary's time-out and
    // retries.
    let routes: Vec<(Phase, Fallback)> = routes
        .into_iter()
        .map(|(phase, routed, _, _)| {
            let mut decl = if model.is_some_and(|m| m.provider == routed.provider) {
                provider.clone()
            } else {
                providers.get(&routed.provider).map(|s| s.decl.clone()).unwrap_or_default()
            };
            decl.timeout_ms = provider.timeout_ms;
            decl.max_retries = provider.max_retries;
            (phase, Fallback { model: routed, provider: decl })
        })
        .collect();
    for (name, settings) in providers {
        let used = model.is_some_and(|m| &m.provider == name)
            || out.iter().any(|f| &f.model.provider == name)
            || routes.iter().any(|(_, r)| &r.model.provider == name);
        if !used && model.is_some() {
            sink.warning(
                &settings.loc,
                &settings.key,
                format!("no model of this agent uses provider \"{name}\"; add it to [model] id, fallbacks or routes"),
            );
        }
    }
    (out, routes)
}

fn parse_model_table(
    t: &Table<'_, '_>,
    settings: &mut ModelSettings,
    provider: &mut ProviderDecl,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
) {
    parse_endpoint(t, provider, env, sink);
    parse_settings(t, settings, provider, env, sink);
}

/// `base_url` and `api_key_env`, in `[model]` or `[providers.NAME]`.
fn parse_endpoint(t: &Table<'_, '_>, provider: &mut ProviderDecl, env: &mut Vec<EnvRef>, sink: &mut Sink) {
    if let Some(node) = t.get("base_url")
        && let Some(url) = node.str(sink)
    {
        if url.starts_with("http://") || url.starts_with("https://") {
            provider.base_url = Some(url.trim_end_matches('/').to_string());
        } else {
            sink.error(&node.loc(), &node.key, format!("\"{url}\" is not an http:// or https:// URL"));
        }
    }
    if let Some(node) = t.get("api_key_env")
        && let Some(name) = node.str(sink)
    {
        if templates::is_ident(name) {
            provider.api_key_env = Some(name.to_string());
            env.push(EnvRef { name: name.to_string(), loc: node.loc(), key: node.key.clone() });
        } else if name.starts_with("${") {
            sink.error(&node.loc(), &node.key, "write the variable's name only, without ${...}");
        } else {
            sink.error(
                &node.loc(),
                &node.key,
                format!(
                    "\"{}\" is not an environment variable name (this is the variable's name, never the key itself)",
                    shorten(name)
                ),
            );
        }
    }
}

fn parse_settings(
    t: &Table<'_, '_>,
    settings: &mut ModelSettings,
    provider: &mut ProviderDecl,
    env: &mut Vec<EnvRef>,
    sink: &mut Sink,
) {
    settings.temperature = t.get("temperature").and_then(|n| n.f64_in(0.0, 2.0, sink)).map(|v| v as f32);
    settings.top_p = t.get("top_p").and_then(|n| n.f64_in(0.0, 1.0, sink)).map(|v| v as f32);
    settings.seed = t.u64_at_least("seed", 0, sink);
    settings.max_output_tokens = t.u32_at_least("max_output_tokens", 1, sink);
    if let Some(stops) = t.get("stop").and_then(|n| n.strings(sink)) {
        for (text, node) in &stops {
            if text.is_empty() {
                sink.error(&node.loc(), &node.key, "an empty stop sequence would stop immediately");
            }
        }
        settings.stop = stops.into_iter().map(|(text, _)| text).collect();
    }
    provider.timeout_ms = t.duration_ms("timeout", sink);
    provider.max_retries = t.u32_at_least("max_retries", 0, sink);
    if let Some(headers) = t.get("headers").and_then(|n| n.table(sink)) {
        for (name, entry) in headers.entries() {
            let Some(value) = entry.str(sink) else { continue };
            match templates::scan_text(value) {
                Err(message) => sink.error(&entry.loc(), &entry.key, message),
                Ok(found) => {
                    for placeholder in found {
                        if let Placeholder::Env(var) = placeholder {
                            env.push(EnvRef { name: var, loc: entry.loc(), key: entry.key.clone() });
                        }
                    }
                }
            }
            provider.headers.insert(name.to_string(), value.to_string());
        }
    }
}

fn shorten(text: &str) -> String {
    let short: String = text.chars().take(6).collect();
    if short.len() < text.len() { format!("{short}...") } else { short }
}

fn parse_limits(t: &Table<'_, '_>, limits: &mut Limits, sink: &mut Sink) {
    if let Some(n) = t.u32_at_least("max_steps", 1, sink) {
        limits.max_steps = n;
    }
    if let Some(ms) = t.duration_ms("timeout", sink) {
        limits.timeout_ms = ms;
    }
    limits.max_tokens = t.u64_at_least("max_tokens", 1, sink);
    if let Some(node) = t.get("max_cost_usd")
        && let Some(cost) = node.f64(sink)
    {
        if cost > 0.0 {
            limits.max_cost_usd = Some(cost);
        } else {
            sink.error(&node.loc(), &node.key, format!("must be greater than 0, found {cost}"));
        }
    }
    if let Some(n) = t.u32_at_least("max_invalid_calls", 1, sink) {
        limits.max_invalid_calls = n;
    }
    if let Some(n) = t.u32_at_least("max_tool_errors", 1, sink) {
        limits.max_tool_errors = n;
    }
    if let Some(n) = t.u32_at_least("max_output_repairs", 0, sink) {
        limits.max_output_repairs = n;
    }
    if let Some(n) = t.u32_at_least("summarise_above_tokens", 100, sink) {
        limits.summarise_above_tokens = Some(u64::from(n));
    }
    if let Some(n) = t.u32_at_least("max_no_progress_steps", 1, sink) {
        limits.max_no_progress_steps = n;
    }
    if let Some(ms) = t.duration_ms("tool_timeout", sink) {
        limits.tool_timeout_ms = ms;
    }
    if let Some(ms) = t.duration_ms("approval_timeout", sink) {
        limits.approval_timeout_ms = ms;
    }
}

/// `[prices."provider:model"]` overrides; `provider:*` is allowed.
fn parse_prices(node: &Node<'_, '_>, sink: &mut Sink) -> BTreeMap<String, ModelPrice> {
    let mut out = BTreeMap::new();
    let Some(table) = node.table(sink) else { return out };
    for (key, entry) in table.entries() {
        if ModelRef::parse(key).is_none() {
            sink.error(
                &entry.loc(),
                &entry.key,
                format!("invalid model \"{key}\": expected provider:model or provider:*, e.g. \"openai:gpt-4o-mini\""),
            );
        }
        let Some(t) = entry.table(sink) else { continue };
        t.check_keys(PRICE_KEYS, sink, &|_| None);
        let price = |name: &str, sink: &mut Sink| {
            let node = t.get(name)?;
            let v = node.f64(sink)?;
            if v < 0.0 {
                sink.error(&node.loc(), &node.key, format!("a price cannot be negative, found {v}"));
                return None;
            }
            Some(v)
        };
        let input = t.require("input_per_mtok", sink).and(price("input_per_mtok", sink));
        let output = t.require("output_per_mtok", sink).and(price("output_per_mtok", sink));
        let cached = price("cached_input_per_mtok", sink);
        if let (Some(input_per_mtok), Some(output_per_mtok)) = (input, output) {
            out.insert(key.to_string(), ModelPrice { input_per_mtok, output_per_mtok, cached_input_per_mtok: cached });
        }
    }
    out
}

/// An included tool file: only `[[tools]]` and `[databases.*]`.
fn parse_tool_file(
    table: &Table<'_, '_>,
    defaults: &ToolDefaults,
    env: &mut Vec<EnvRef>,
    incomplete: &mut bool,
    sink: &mut Sink,
) -> FileParts {
    table.check_keys(TOOL_FILE_KEYS, sink, &|key| {
        AGENT_KEYS.contains(&key).then(|| {
            "a tool file holds only [[tools]] and [databases.*]; put agent settings in the agent file".to_string()
        })
    });
    parse_tool_file_parts(table, defaults, env, incomplete, sink)
}

/// The `[[tools]]` and `[databases.*]` of a file.
fn parse_tool_file_parts(
    table: &Table<'_, '_>,
    defaults: &ToolDefaults,
    env: &mut Vec<EnvRef>,
    incomplete: &mut bool,
    sink: &mut Sink,
) -> FileParts {
    let mut parts = FileParts::default();
    let base = base_dir(&table.src.path);
    if let Some(dbs) = table.get("databases").and_then(|n| n.table(sink)) {
        for (name, entry) in dbs.entries() {
            let Some(t) = entry.table(sink) else { continue };
            t.check_keys(&["url"], sink, &|_| None);
            let Some(url_node) = t.require("url", sink) else { continue };
            let Some(written) = url_node.str(sink) else { continue };
            match resolve_sqlite_url(written, &base) {
                Err(message) => {
                    sink.error(&url_node.loc(), &url_node.key, message);
                    // Still declared, so tools naming it do not add errors.
                    parts.databases.push(Database {
                        name: name.to_string(),
                        url: written.to_string(),
                        written_url: written.to_string(),
                        loc: entry.loc(),
                    });
                }
                Ok((url, file)) => {
                    // A warning, not an error: the file may exist only where
                    // the agent runs (validation often runs in CI). The SQL
                    // tools refuse to start without it.
                    if !file.is_file() {
                        sink.warning(
                            &url_node.loc(),
                            &url_node.key,
                            format!("database file {} does not exist here; SQL tools need it to start", file.display()),
                        );
                    }
                    parts.databases.push(Database {
                        name: name.to_string(),
                        url,
                        written_url: written.to_string(),
                        loc: entry.loc(),
                    });
                }
            }
        }
    }
    let list = table.get("tools").and_then(|n| {
        if matches!(n.value, toml::de::DeValue::Table(_)) {
            sink.error(&n.loc(), &n.key, "write each tool as [[tools]] (an array of tables), not [tools]");
            return None;
        }
        n.array(sink)
    });
    if let Some(list) = list {
        for node in list {
            match tools::parse_tool(&node, defaults, env, sink) {
                Some(tool) => parts.tools.push(tool),
                // Without a name, references to the tool cannot be checked.
                None => *incomplete = true,
            }
        }
    }
    parts
}

/// Resolves a relative `sqlite://` path against the declaring file's
/// directory (made absolute, so it holds whatever the working directory).
/// Returns the URL and the database file.
fn resolve_sqlite_url(url: &str, base: &Path) -> Result<(String, PathBuf), String> {
    let Some(rest) = url.strip_prefix("sqlite:") else {
        return Err(format!("unsupported database URL \"{url}\": only sqlite:// databases are supported"));
    };
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let (file, query) = match rest.split_once('?') {
        Some((file, query)) => (file, format!("?{query}")),
        None => (rest, String::new()),
    };
    // The SQL tools open an existing file and never create one, so an
    // in-memory database (empty, and private to one connection) is refused.
    if file.is_empty() || file == ":memory:" {
        return Err(format!("database URL \"{url}\" must name a database file (sqlite://PATH)"));
    }
    let path = Path::new(file);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        let joined = base.join(path);
        std::path::absolute(&joined).unwrap_or(joined)
    };
    Ok((format!("sqlite://{}{query}", path.display()), path))
}

/// One warning per unset variable, at its first use.
fn warn_missing_env(env: &[EnvRef], sink: &mut Sink) {
    let mut seen: Vec<&str> = Vec::new();
    for var in env {
        if seen.contains(&var.name.as_str()) {
            continue;
        }
        seen.push(&var.name);
        if std::env::var_os(&var.name).is_none() {
            sink.warning(
                &var.loc,
                &var.key,
                format!(
                    "environment variable {} is not set here; it is read when the agent runs, so set it there",
                    var.name
                ),
            );
        }
    }
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() { "none".to_string() } else { names.join(", ") }
}

/// Builds the spec and tools from parts that passed every check.
fn assemble(
    path: &Path,
    agent: AgentParts,
    selected: Vec<RawTool>,
    databases: &BTreeMap<String, Database>,
    price: Option<ModelPrice>,
    prices: PriceTable,
) -> Option<LoadedAgent> {
    let mut tools = Vec::new();
    let mut versioned = serde_json::Map::new();
    for tool in selected {
        let (spec, raw) = tool.built?;
        let (implementation, for_version) = match raw {
            RawImpl::Http(http) => (ToolImpl::Http(http.clone()), ToolImpl::Http(http)),
            RawImpl::Sql(sql) => {
                let db = databases.get(&sql.database)?;
                let decl = SqlToolDecl {
                    database: sql.database,
                    database_url: db.url.clone(),
                    query: sql.query,
                    mode: sql.mode,
                    max_rows: sql.max_rows,
                    max_result_bytes: sql.max_result_bytes,
                };
                let for_version = SqlToolDecl { database_url: db.written_url.clone(), ..decl.clone() };
                (ToolImpl::Sql(decl), ToolImpl::Sql(for_version))
            }
        };
        versioned.insert(spec.name.to_string(), serde_json::to_value(&for_version).ok()?);
        tools.push(DeclaredTool { spec, implementation });
    }
    if agent.handoff {
        let handoff = tools::handoff_tool();
        versioned.insert(handoff.spec.name.to_string(), serde_json::to_value(&handoff.implementation).ok()?);
        tools.push(handoff);
    }

    let mut extra = json!({
        "provider": serde_json::to_value(&agent.provider).ok()?,
        "tools": versioned,
    });
    // Only when there are fallbacks, so agents without them keep their
    // version.
    if !agent.fallbacks.is_empty()
        && let Some(map) = extra.as_object_mut()
    {
        let chain: Vec<serde_json::Value> = agent
            .fallbacks
            .iter()
            .map(|f| json!({ "model": f.model.to_string(), "provider": serde_json::to_value(&f.provider).ok() }))
            .collect();
        map.insert("fallbacks".into(), serde_json::Value::Array(chain));
    }
    // Likewise only when there are routes; the routed models themselves are
    // in `spec.routes`, their endpoints here.
    if !agent.routes.is_empty()
        && let Some(map) = extra.as_object_mut()
    {
        let endpoints: serde_json::Map<String, serde_json::Value> = agent
            .routes
            .iter()
            .map(|(phase, r)| (phase.as_str().to_owned(), serde_json::to_value(&r.provider).unwrap_or_default()))
            .collect();
        map.insert("routes".into(), serde_json::Value::Object(endpoints));
    }
    // Likewise only when there are webhooks: how a run can be started is
    // part of what the agent is.
    if !agent.webhooks.is_empty()
        && let Some(map) = extra.as_object_mut()
    {
        map.insert("webhooks".into(), serde_json::to_value(&agent.webhooks).ok()?);
    }
    // And schedules: when the agent runs by itself is part of it too.
    if !agent.schedules.is_empty()
        && let Some(map) = extra.as_object_mut()
    {
        map.insert("schedules".into(), serde_json::to_value(&agent.schedules).ok()?);
    }
    // And the MCP servers as declared (their tools are discovered at build
    // and are not part of the version).
    if !agent.mcp_servers.is_empty()
        && let Some(map) = extra.as_object_mut()
    {
        let declared: Vec<&rein_types::McpServerDecl> = agent.mcp_servers.iter().map(|s| &s.for_version).collect();
        map.insert("mcp_servers".into(), serde_json::to_value(declared).ok()?);
    }
    let routes = agent
        .routes
        .iter()
        .map(|(phase, r)| (*phase, Route { model: r.model.clone(), price: price_for(&r.model, &prices) }))
        .collect();
    let prompt = agent.prompt?;
    let spec = AgentSpec {
        name: agent.name?,
        description: agent.description,
        model: agent.model?,
        settings: agent.settings,
        system_prompt: prompt,
        tools: tools.iter().map(|t| t.spec.clone()).collect(),
        limits: agent.limits,
        stop: StopConditions { after_tools: agent.stop.into_iter().map(|(name, _, _)| name).collect() },
        price,
        routes,
        output_schema: agent.output_schema,
        extra,
    };
    Some(LoadedAgent {
        path: path.to_path_buf(),
        spec,
        provider: agent.provider,
        fallbacks: agent.fallbacks,
        routes: agent.routes,
        prices,
        tools,
        webhooks: agent.webhooks,
        schedules: agent.schedules,
        mcp_servers: agent.mcp_servers.into_iter().map(|s| s.decl).collect(),
        warnings: Vec::new(),
    })
}
