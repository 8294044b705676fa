//! From an agent file to a runnable [`Agent`]: parse and validate the TOML
//! into an [`AgentDefinition`] (everything needed to build the agent, as
//! data), then build the provider (with its failover chain) and each declared
//! tool. The version recorded on runs is the hash of the resolved spec, after
//! overrides, so a run always names exactly what ran.
//!
//! A definition is what the store registers under the agent's name and
//! version: resuming a run rebuilds its agent from the definition the run
//! started with, not from whatever the file says today.

use rein_config::{ConfigError, Diagnostic};
use rein_runtime::{Agent, RuntimeError};
use rein_types::{
    AgentSpec, McpServerDecl, ModelRef, Phase, ProviderDecl, ScheduleDecl, Tool, ToolImpl, ToolSpec, WebhookDecl,
};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;

/// Command-line or API overrides applied on top of the agent file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Replace `[model] id` (`provider:model`).
    pub model: Option<String>,
    /// Replace `[model] base_url`.
    pub base_url: Option<String>,
}

/// Why an agent could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("invalid --model `{0}`: expected provider:model, e.g. openai:gpt-4o-mini")]
    BadModelOverride(String),
    #[error("{0}")]
    Provider(#[from] rein_providers::ProviderError),
    #[error("tool `{tool}`: {message}")]
    Tool { tool: String, message: String },
    #[error("{0}")]
    Mcp(#[from] rein_mcp::McpError),
    #[error(
        "stop.after_tools names `{0}`, which is none of the agent's tools (its MCP servers do not offer it either)"
    )]
    UnknownStopTool(String),
    #[error("{0}")]
    Runtime(#[from] RuntimeError),
    #[error("stored agent definition is unreadable: {0}")]
    Definition(String),
}

/// A loaded agent and what validation warned about.
pub struct LoadedAgent {
    pub agent: Agent,
    pub definition: AgentDefinition,
    pub warnings: Vec<Diagnostic>,
}

/// Everything needed to build an agent, as data: what the store keeps per
/// agent version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentDefinition {
    pub spec: AgentSpec,
    /// How to reach the primary model's provider.
    pub provider: ProviderDecl,
    /// `[model] fallbacks`, in order.
    #[serde(default)]
    pub fallbacks: Vec<(ModelRef, ProviderDecl)>,
    /// `[model.routes]`.
    #[serde(default)]
    pub routes: Vec<(Phase, ModelRef, ProviderDecl)>,
    /// Each tool's spec and implementation, in the order of `spec.tools`.
    pub tools: Vec<(ToolSpec, ToolImpl)>,
    /// `[[webhooks]]`: what `rein serve` answers on `POST /v1/hooks/{name}`
    /// (also in `spec.extra`, so they are part of the version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<WebhookDecl>,
    /// `[[schedules]]`: what `rein serve` fires on its own (also in
    /// `spec.extra`, so they are part of the version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub schedules: Vec<ScheduleDecl>,
    /// `[[mcp_servers]]`: their tools are discovered by [`Self::build`],
    /// and are not in `spec.tools` (also in `spec.extra`, so the
    /// declarations are part of the version).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mcp_servers: Vec<McpServerDecl>,
}

impl AgentDefinition {
    /// As stored.
    pub fn to_json(&self) -> serde_json::Value {
        // Every field is plain data (strings, numbers, maps with string
        // keys), which always serialises.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    pub fn from_json(value: serde_json::Value) -> Result<Self, LoadError> {
        serde_json::from_value(value).map_err(|e| LoadError::Definition(e.to_string()))
    }

    /// Builds the runnable agent. `client` is shared by the provider, the
    /// HTTP tools and Streamable HTTP MCP sessions (one connection pool per
    /// process). Each `[[mcp_servers]]` server is started and asked for its
    /// tools here, which is why this is async; the servers live as long as
    /// the agent, and stop when it is dropped.
    ///
    /// Runs of the agent are recorded under the definition's version: the
    /// discovered tools are in the agent's spec but not in its version.
    pub async fn build(&self, client: &reqwest::Client) -> Result<Agent, LoadError> {
        // The primary, then `[model] fallbacks`, each behind its endpoint's
        // breaker and limits, shared with every other agent in the process.
        let model =
            rein_providers::build_chain((&self.spec.model, &self.provider), &self.fallbacks, Some(client.clone()))?;
        let mut tools: Vec<Arc<dyn Tool>> = Vec::with_capacity(self.tools.len());
        for (spec, implementation) in &self.tools {
            let built = rein_tools::build_tool(spec.clone(), implementation, client)
                .map_err(|e| LoadError::Tool { tool: spec.name.to_string(), message: e.to_string() })?;
            if let Some(tool) = built {
                tools.push(tool);
            }
        }
        // `[model.routes]`: a model per phase, each behind its own endpoint's
        // breaker and limits.
        let mut routes = Vec::with_capacity(self.routes.len());
        for (phase, model, provider) in &self.routes {
            routes.push((*phase, rein_providers::build_chain((model, provider), &[], Some(client.clone()))?));
        }
        if self.mcp_servers.is_empty() {
            return Ok(Agent::from_spec(self.spec.clone(), model, tools)?.with_route_models(routes)?);
        }
        let mut spec = self.spec.clone();
        // Before the handoff tool, which by convention comes last.
        let mut at = spec
            .tools
            .iter()
            .position(|t| t.name.as_str() == rein_config::HANDOFF_TOOL_NAME)
            .unwrap_or(spec.tools.len());
        for set in discover_mcp(&self.mcp_servers, client).await? {
            for tool in set.runnable() {
                spec.tools.insert(at, tool.spec().clone());
                at += 1;
                tools.push(tool);
            }
        }
        if let Some(name) =
            spec.stop.after_tools.iter().find(|name| !spec.tools.iter().any(|t| t.name.as_str() == *name))
        {
            return Err(LoadError::UnknownStopTool(name.clone()));
        }
        Ok(Agent::from_spec_with_version(spec, self.spec.version(), model, tools)?.with_route_models(routes)?)
    }
}

/// Starts each declared MCP server and discovers the tools the agent may
/// use from it, in declaration order. A server that fails stops the ones
/// already started (they are dropped).
pub async fn discover_mcp(
    servers: &[McpServerDecl],
    client: &reqwest::Client,
) -> Result<Vec<rein_mcp::McpToolset>, LoadError> {
    let mut sets = Vec::with_capacity(servers.len());
    for decl in servers {
        sets.push(rein_mcp::discover(decl.clone(), client.clone()).await?);
    }
    Ok(sets)
}

/// Loads the agent file at `path` into a definition, applying `overrides`.
pub fn load_definition(path: &Path, overrides: &Overrides) -> Result<(AgentDefinition, Vec<Diagnostic>), LoadError> {
    resolve(rein_config::load_agent(path)?, overrides)
}

/// Like [`load_definition`], for agent TOML that is not in a file (an API
/// upload). `path` names it in diagnostics and anchors relative paths.
pub fn load_definition_str(
    path: &Path,
    text: &str,
    overrides: &Overrides,
) -> Result<(AgentDefinition, Vec<Diagnostic>), LoadError> {
    resolve(rein_config::load_agent_str(path, text)?, overrides)
}

fn resolve(
    mut loaded: rein_config::LoadedAgent,
    overrides: &Overrides,
) -> Result<(AgentDefinition, Vec<Diagnostic>), LoadError> {
    if let Some(model) = &overrides.model {
        let model_ref = ModelRef::parse(model).ok_or_else(|| LoadError::BadModelOverride(model.clone()))?;
        loaded.spec.price = rein_config::price_for(&model_ref, &loaded.prices);
        loaded.spec.model = model_ref;
    }
    if let Some(base_url) = &overrides.base_url {
        loaded.provider.base_url = Some(base_url.clone());
    }
    // Overrides change what runs, so they must change the version too.
    if let Some(extra) = loaded.spec.extra.as_object_mut() {
        extra.insert("provider".into(), serde_json::to_value(&loaded.provider).unwrap_or_default());
    }
    let definition = AgentDefinition {
        fallbacks: loaded.fallbacks.iter().map(|f| (f.model.clone(), f.provider.clone())).collect(),
        routes: loaded.routes.iter().map(|(phase, r)| (*phase, r.model.clone(), r.provider.clone())).collect(),
        tools: loaded.tools.iter().map(|t| (t.spec.clone(), t.implementation.clone())).collect(),
        webhooks: loaded.webhooks,
        schedules: loaded.schedules,
        mcp_servers: loaded.mcp_servers,
        provider: loaded.provider,
        spec: loaded.spec,
    };
    Ok((definition, loaded.warnings))
}

/// Loads the agent file at `path`, applying `overrides`, and builds it.
/// `client` is shared by the provider and the HTTP tools (one connection
/// pool per process).
pub async fn load_agent(
    path: &Path,
    overrides: &Overrides,
    client: &reqwest::Client,
) -> Result<LoadedAgent, LoadError> {
    let (definition, warnings) = load_definition(path, overrides)?;
    let agent = definition.build(client).await?;
    Ok(LoadedAgent { agent, definition, warnings })
}
