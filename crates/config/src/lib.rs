//! Agent files: loading and validating the TOML that declares an agent (its
//! model, prompt, limits and tools) and resolving it into the
//! [`rein_types::AgentSpec`] whose hash is the agent's version.
//!
//! Two entry points: [`load_agent`] for running an agent (fails on any error)
//! and [`validate_agent`] for `rein validate` and editors (collects every
//! error and warning). Every [`Diagnostic`] names the file, line, column and
//! dotted key it is about. The file format is documented in `FORMAT.md` next
//! to this crate's `Cargo.toml`.
//!
//! Secrets never pass through here: `${VAR}` references stay as written and
//! are expanded by the tools and providers when a call is made.

#![deny(missing_docs)]

mod diagnostic;
mod duration;
mod load;
mod mcp;
mod prices;
mod reader;
mod schedules;
mod schema;
mod source;
mod templates;
mod tools;
mod webhooks;

pub use diagnostic::{ConfigError, Diagnostic, Report, Severity};
pub use duration::parse_duration_ms;
pub(crate) use load::EnvRef;
pub use load::KNOWN_PROVIDERS;
pub use prices::{PriceTable, lookup_price, price_for, price_table};
pub use schedules::{CronSchedule, ScheduleError};
pub use tools::{HANDOFF_TOOL_NAME, handoff_tool};
pub use webhooks::render_webhook_input;

use rein_types::{AgentSpec, McpServerDecl, ModelRef, ProviderDecl, ScheduleDecl, ToolImpl, ToolSpec, WebhookDecl};
use std::path::{Path, PathBuf};

/// An agent file, resolved and checked: ready to run.
#[derive(Debug, Clone)]
pub struct LoadedAgent {
    /// The agent file, as given.
    pub path: PathBuf,
    /// The resolved spec; `spec.version()` is the agent's version.
    /// `spec.tools` lists the tools in declaration order (included files in
    /// include order, then the agent file's own, then `handoff_to_human`);
    /// `spec.extra` holds `{ "provider": ProviderDecl, "tools": { name:
    /// ToolImpl } }` (with `"webhooks"` and `"schedules"` when the agent declares
    /// any) so
    /// that implementation changes change the version.
    pub spec: AgentSpec,
    /// How to reach the model's provider, with its `[providers.NAME]`
    /// limits.
    pub provider: ProviderDecl,
    /// `[model] fallbacks`, in order, each with how to reach its provider.
    pub fallbacks: Vec<Fallback>,
    /// `[model.routes]`: the model serving a phase, with how to reach its
    /// provider (`spec.routes` holds the same models with their prices).
    pub routes: Vec<(rein_types::Phase, Fallback)>,
    /// The agent file's own `[prices]` entries. `spec.price` is already
    /// resolved; this is for re-pricing when the model is overridden (see
    /// [`price_for`]).
    pub prices: PriceTable,
    /// Each tool's spec with its implementation, in the order of
    /// `spec.tools`.
    pub tools: Vec<DeclaredTool>,
    /// `[[webhooks]]`: the endpoints that start the agent with a signed
    /// payload, in declaration order.
    pub webhooks: Vec<WebhookDecl>,
    /// `[[schedules]]`: the cron schedules that start the agent, in
    /// declaration order.
    pub schedules: Vec<ScheduleDecl>,
    /// `[[mcp_servers]]`, in declaration order (relative `cwd` resolved
    /// against the agent file's directory). Their tools are not in `spec`:
    /// they are discovered when the agent is built. The declarations are in
    /// `spec.extra["mcp_servers"]` when there are any, so they are part of
    /// the version.
    pub mcp_servers: Vec<McpServerDecl>,
    /// Warnings found while loading; the agent runs regardless.
    pub warnings: Vec<Diagnostic>,
}

/// A fallback model: tried, in order, when the models before it fail with a
/// retryable error.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// `provider:model`.
    pub model: ModelRef,
    /// How to reach its provider: its `[providers.NAME]` table, with the
    /// `[model]` time-out and retries.
    pub provider: ProviderDecl,
}

/// A tool as the agent file declares it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeclaredTool {
    /// What the model and the runtime know about the tool.
    pub spec: ToolSpec,
    /// How it runs: HTTP, SQL, or the built-in handoff.
    pub implementation: ToolImpl,
}

/// Loads the agent file at `path`, its prompt file and included tool files.
///
/// # Errors
///
/// [`ConfigError::Io`] if the agent file cannot be read;
/// [`ConfigError::Invalid`] with every diagnostic (warnings included) if
/// anything in it, or in a file it refers to, is invalid.
pub fn load_agent(path: &Path) -> Result<LoadedAgent, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.to_path_buf(), source })?;
    load::validate_text(path, text).into_result()
}

/// Like [`load_agent`], for agent text that is not (or not yet) in a file.
/// `path` names it in diagnostics and anchors relative paths (prompt file,
/// includes, databases); it is not read.
///
/// # Errors
///
/// [`ConfigError::Invalid`] with every diagnostic if the agent is invalid.
pub fn load_agent_str(path: &Path, text: &str) -> Result<LoadedAgent, ConfigError> {
    load::validate_text(path, text.to_string()).into_result()
}

/// Checks the agent file at `path` and reports every error and warning,
/// rather than stopping at the first. An unreadable file gives a report with
/// a single error that has no line.
pub fn validate_agent(path: &Path) -> Report {
    match std::fs::read_to_string(path) {
        Ok(text) => load::validate_text(path, text),
        Err(e) => Report {
            path: path.to_path_buf(),
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                file: path.to_path_buf(),
                line: 0,
                column: 0,
                key: String::new(),
                message: format!("cannot read the agent file: {e}"),
            }],
            agent: None,
        },
    }
}
