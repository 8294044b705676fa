//! MCP tools as rein tools, and their discovery.

use crate::content;
use crate::error::McpError;
use crate::server::{McpServer, ServerTool};
use async_trait::async_trait;
use rein_types::{Approval, McpServerDecl, RiskTier, Tool, ToolContext, ToolName, ToolOutcome, ToolSpec};
use serde_json::{Map, Value};
use std::sync::Arc;

/// One tool of an MCP server, under the name the agent knows it by.
pub struct McpTool {
    server: Arc<McpServer>,
    /// The server's name for it: what is sent on the wire.
    remote_name: String,
    spec: ToolSpec,
}

impl McpTool {
    pub fn server(&self) -> &Arc<McpServer> {
        &self.server
    }

    /// The server's name for the tool (without the prefix).
    pub fn remote_name(&self) -> &str {
        &self.remote_name
    }
}

#[async_trait]
impl Tool for McpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> ToolOutcome {
        let arguments = match arguments {
            Value::Object(map) => map,
            Value::Null => Map::new(),
            other => return ToolOutcome::error(format!("arguments must be a JSON object, not {other}")),
        };
        match self.server.call_tool(&self.remote_name, arguments, &context.reporter).await {
            Ok(result) => content::outcome(self.spec.name.as_str(), result, self.server.decl().max_result_bytes),
            Err(error) => {
                let retryable = error.is_transient();
                let hint = match &error {
                    McpError::Protocol { .. } => "check the arguments against the tool's schema, or use another tool",
                    McpError::ToolGone { .. } => "do not call it again; use another tool or hand off to a human",
                    _ => "the tool's server is having trouble; try again later or continue without it",
                };
                ToolOutcome::Error { message: error.to_string(), hint: Some(hint.into()), retryable }
            }
        }
    }
}

/// A started server and the tools the agent may use from it.
pub struct McpToolset {
    pub server: Arc<McpServer>,
    /// In the server's order.
    pub tools: Vec<McpTool>,
}

impl McpToolset {
    /// The tools as the runtime takes them.
    pub fn runnable(&self) -> Vec<Arc<dyn Tool>> {
        self.tools
            .iter()
            .map(|t| {
                Arc::new(McpTool { server: t.server.clone(), remote_name: t.remote_name.clone(), spec: t.spec.clone() })
                    as Arc<dyn Tool>
            })
            .collect()
    }
}

/// Starts the server `decl` declares, lists its tools and keeps those its
/// `allow` and `deny` lists let through, named with its `prefix` and given
/// the risk, approval and limits of its per-tool policies.
///
/// # Errors
///
/// When the server cannot be started or listed, or when the declaration
/// names a tool (in `allow`, `deny` or a policy) the server does not offer:
/// a misspelt name would otherwise silently allow nothing or deny nothing.
pub async fn discover(decl: McpServerDecl, http: reqwest::Client) -> Result<McpToolset, McpError> {
    let server = Arc::new(McpServer::connect(decl, http).await?);
    let offered = server.list_tools().await?;
    let tools = select(&server, &offered)?;
    Ok(McpToolset { server, tools })
}

fn select(server: &Arc<McpServer>, offered: &[ServerTool]) -> Result<Vec<McpTool>, McpError> {
    let decl = server.decl();
    let names = || offered.iter().map(|t| t.name.as_str()).collect::<Vec<_>>().join(", ");
    let named = decl.allow.iter().chain(&decl.deny).chain(decl.tools.keys());
    for name in named {
        if !offered.iter().any(|t| &t.name == name) {
            return Err(McpError::UnknownTool { server: decl.name.clone(), tool: name.clone(), offered: names() });
        }
    }
    let mut tools = Vec::new();
    for tool in offered {
        let allowed = decl.allow.is_empty() || decl.allow.contains(&tool.name);
        if !allowed || decl.deny.contains(&tool.name) {
            continue;
        }
        let full = format!("{}{}", decl.prefix, tool.name);
        let name = ToolName::new(full.clone())
            .map_err(|_| McpError::InvalidToolName { server: decl.name.clone(), name: full })?;
        let policy = decl.tools.get(&tool.name).cloned().unwrap_or_default();
        // Unknown tools are `write`: a server's own hints are not trusted.
        let risk = policy.risk.unwrap_or(RiskTier::Write);
        let mut spec = ToolSpec::new(name, tool.description.clone(), schema(&tool.input_schema), risk);
        spec.approval = policy.approval.unwrap_or(Approval::default_for(risk));
        spec.idempotent = policy.idempotent.unwrap_or(risk == RiskTier::Read);
        spec.max_calls = policy.max_calls;
        tools.push(McpTool { server: server.clone(), remote_name: tool.name.clone(), spec });
    }
    Ok(tools)
}

/// Providers reject a tool whose parameters are not an object schema; some
/// servers send `{}` or omit `type` for tools without arguments.
fn schema(input: &Value) -> Value {
    let mut schema = input.clone();
    if let Value::Object(map) = &mut schema
        && !map.contains_key("type")
    {
        map.insert("type".into(), Value::String("object".into()));
    }
    schema
}
