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
//! The rmcp SDK stays behind this crate: nothing of its API crosses it, so
//! the rest of the workspace neither compiles it nor follows its changes.
//!
//! [`Tool`]: rein_types::Tool

mod content;
mod error;
mod server;
mod tool;

pub use error::McpError;
pub use server::{McpServer, ServerTool};
pub use tool::{McpTool, McpToolset, discover};

pub use rein_types::{McpServerDecl, McpToolPolicy, McpTransport};
