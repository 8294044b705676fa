//! rein's tool implementations: the edge where the model's tool calls touch
//! the world.
//!
//! - [`HttpTool`]: a declared HTTP endpoint (templated URL, query, headers and
//!   body; time-outs, retries with backoff, `Retry-After`; extraction and
//!   truncation of the response; secrets from the environment, scrubbed from
//!   every outcome).
//! - [`SqlTool`]: a declared, parameterised SQLite query; read tools on a
//!   read-only connection, write tools transactional and exactly-once per
//!   idempotency key.
//! - [`FnTool`]: an async Rust function, its parameter schema derived from its
//!   argument type.
//! - [`handoff_spec`]: the built-in `handoff_to_human`, which the core
//!   intercepts.
//!
//! The rule every tool here keeps: a call never panics and never returns a
//! Rust error to the loop. Every failure is a [`rein_types::ToolOutcome::Error`]
//! written for the model to read and recover from. Only building a tool from a
//! bad declaration fails, with a [`ToolBuildError`] for the agent's author.

#![warn(missing_docs)]

mod error;
mod function;
mod handoff;
mod http;
mod redact;
mod sql;
mod template;
mod truncate;

pub use error::ToolBuildError;
pub use function::{FnTool, ToolError};
pub use handoff::{HANDOFF_TOOL, handoff_spec};
pub use http::HttpTool;
pub use sql::SqlTool;

use rein_types::{Tool, ToolImpl, ToolSpec};
use std::sync::Arc;

/// Builds the running tool for a declared implementation. Returns `None` for
/// [`ToolImpl::Handoff`], which the core handles itself.
///
/// SQL tools open their database here (blocking file I/O): build tools when
/// the agent is loaded, not per call. `client` must not follow redirects, as
/// `rein_providers::default_client` does not (see [`HttpTool::new`]).
pub fn build_tool(
    spec: ToolSpec,
    implementation: &ToolImpl,
    client: &reqwest::Client,
) -> Result<Option<Arc<dyn Tool>>, ToolBuildError> {
    Ok(match implementation {
        ToolImpl::Http(decl) => Some(Arc::new(HttpTool::new(spec, decl.clone(), client.clone())?)),
        ToolImpl::Sql(decl) => Some(Arc::new(SqlTool::new(spec, decl.clone())?)),
        ToolImpl::Handoff => None,
    })
}
