//! From an agent file to a runnable [`Agent`]: parse and validate the TOML,
//! build the provider (with its failover chain), build each declared tool, and assemble them. The
//! version recorded on runs is the hash of the resolved spec, after
//! overrides, so a run always names exactly what ran.

use rein_config::{ConfigError, Diagnostic};
use rein_runtime::{Agent, RuntimeError};
use rein_types::{ModelRef, Tool};
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
    Runtime(#[from] RuntimeError),
}

/// A loaded agent and what validation warned about.
pub struct LoadedAgent {
    pub agent: Agent,
    pub warnings: Vec<Diagnostic>,
}

/// Loads the agent file at `path`, applying `overrides`. `client` is shared
/// by the provider and the HTTP tools (one connection pool per process).
pub fn load_agent(path: &Path, overrides: &Overrides, client: &reqwest::Client) -> Result<LoadedAgent, LoadError> {
    let mut loaded = rein_config::load_agent(path)?;
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
    // The primary, then `[model] fallbacks`, each behind its endpoint's
    // breaker and limits, shared with every other agent in the process.
    let fallbacks: Vec<(ModelRef, rein_types::ProviderDecl)> =
        loaded.fallbacks.iter().map(|f| (f.model.clone(), f.provider.clone())).collect();
    let model = rein_providers::build_chain((&loaded.spec.model, &loaded.provider), &fallbacks, Some(client.clone()))?;
    let mut tools: Vec<Arc<dyn Tool>> = Vec::with_capacity(loaded.tools.len());
    for declared in &loaded.tools {
        let built = rein_tools::build_tool(declared.spec.clone(), &declared.implementation, client)
            .map_err(|e| LoadError::Tool { tool: declared.spec.name.to_string(), message: e.to_string() })?;
        if let Some(tool) = built {
            tools.push(tool);
        }
    }
    // `[model.routes]`: a model per phase, each behind its own endpoint's
    // breaker and limits.
    let mut routes = Vec::with_capacity(loaded.routes.len());
    for (phase, route) in &loaded.routes {
        routes.push((*phase, rein_providers::build_chain((&route.model, &route.provider), &[], Some(client.clone()))?));
    }
    let agent = Agent::from_spec(loaded.spec, model, tools)?.with_route_models(routes)?;
    Ok(LoadedAgent { agent, warnings: loaded.warnings })
}
