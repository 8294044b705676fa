use std::time::Duration;

/// Why an MCP server could not be started, reached or used.
#[derive(Debug, thiserror::Error)]
pub enum McpError {
    #[error("MCP server `{server}`: environment variable {var} is not set (referenced as ${{{var}}})")]
    MissingEnv { server: String, var: String },
    #[error("MCP server `{server}`: {message}")]
    Config { server: String, message: String },
    #[error("MCP server `{server}`: cannot start `{command}`: {source}")]
    Spawn {
        server: String,
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("MCP server `{server}`: initialisation failed: {message}")]
    Initialise { server: String, message: String },
    #[error("MCP server `{server}`: no answer within {}", human(*timeout))]
    Timeout { server: String, timeout: Duration },
    /// The server died and has not come back yet; the next attempt to
    /// restart it is after `retry_in`.
    #[error("MCP server `{server}` is unavailable ({reason}); next restart attempt in {}", human(*retry_in))]
    Unavailable { server: String, reason: String, retry_in: Duration },
    /// The connection broke while a request was in flight: the server may
    /// or may not have acted on it.
    #[error(
        "MCP server `{server}`: the connection broke during the request ({detail}); it may or may not have taken effect, and the server is restarted on the next call"
    )]
    ConnectionLost { server: String, detail: String },
    #[error("MCP server `{server}`: {message}")]
    Protocol { server: String, message: String },
    /// The tool was offered when the agent was built, and is no longer
    /// (the server changed its list, or came back without it after a
    /// restart).
    #[error(
        "MCP server `{server}` no longer offers the tool `{tool}` (it did when this agent was built); continue without it"
    )]
    ToolGone { server: String, tool: String },
    #[error("MCP server `{server}` has no tool named `{tool}` (it offers: {offered})")]
    UnknownTool { server: String, tool: String, offered: String },
    #[error(
        "MCP server `{server}`: tool name `{name}` is not a valid rein tool name (1–64 of A-Z, a-z, 0-9, _, -); add it to `deny`"
    )]
    InvalidToolName { server: String, name: String },
}

impl McpError {
    /// A failure that may pass: the server may be back on the next call.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            McpError::Timeout { .. }
                | McpError::Unavailable { .. }
                | McpError::Initialise { .. }
                | McpError::ConnectionLost { .. }
        )
    }
}

/// `1.5 s`, `30 s`, `250 ms`.
pub(crate) fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 { format!("{ms} ms") } else { format!("{:.1} s", d.as_secs_f64()).replace(".0 s", " s") }
}
