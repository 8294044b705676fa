//! Tools from MCP (Model Context Protocol) servers, as rein [`Tool`]s.
//!
//! An [`McpServer`] is one connection to a server declared by an
//! [`McpServerDecl`]: a child process speaking MCP on stdio, or a Streamable
//! HTTP endpoint. [`discover`] connects, lists the server's tools, keeps the
//! ones the declaration allows and returns them as [`McpTool`]s, whose specs
//! carry the server's description and input schema under the configured
//! name prefix and the risk tier the agent file gives them (`write` when it
//! says nothing).
//!
//! While a call runs, the server's progress notifications for it and its
//! log messages reach the call's [`ToolReporter`], which the runtime
//! journals. The server's tool list is read again after a restart and when
//! the server says it changed; an agent keeps the tools it was built with,
//! and a call to one the server no longer offers is an error observation.
//!
//! The other way round, [`serve_stdio`] and [`serve_http`] make rein an MCP
//! server: each agent an [`AgentHost`] offers becomes a tool.
//!
//! The rmcp SDK stays behind this crate: nothing of its API crosses it, so
//! the rest of the workspace neither compiles it nor follows its changes.
//!
//! [`Tool`]: rein_types::Tool
//! [`ToolReporter`]: rein_types::ToolReporter

mod content;
mod error;
mod inbox;
mod serve;
mod server;
mod tool;

pub use error::McpError;
pub use serve::{AgentHost, HostError, HostedAgent, HostedRun, HttpOptions, serve_http, serve_stdio};
pub use server::{McpServer, ServerTool};
pub use tool::{McpTool, McpToolset, discover};

pub use rein_types::{McpServerDecl, McpToolPolicy, McpTransport};
