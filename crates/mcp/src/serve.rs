//! rein as an MCP server: each agent an [`AgentHost`] offers is a tool
//! whose input is `{"input": "..."}`, served on stdio or Streamable HTTP.
//!
//! This module owns the protocol side only. Which agents there are, and
//! how a run is started, journaled, bounded and answered, is the host's to
//! say (the `rein` crate's operator-backed host): an MCP client is one more
//! way to start a run, with no rules of its own.

use async_trait::async_trait;
use rein_types::{ToolReport, ToolReporter};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Map, Value, json};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

/// An agent as a tool.
#[derive(Debug, Clone, PartialEq)]
pub struct HostedAgent {
    /// The tool's name: the agent's.
    pub name: String,
    pub description: String,
}

/// What a run gave, for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct HostedRun {
    /// For the model or person calling: the answer, or what stopped the
    /// run and what it waits for, with the run id.
    pub text: String,
    /// The run as one object (`run_id`, `status`, `output`, ...).
    pub structured: Value,
    /// The run failed or was cancelled.
    pub is_error: bool,
}

/// Why a run could not be started or carried out.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// No agent of that name is served: a protocol error.
    #[error("no agent named `{0}` is served here")]
    UnknownAgent(String),
    /// The agent is there but the run could not be carried out (disabled,
    /// unavailable, a journal failure): a tool error the caller reads.
    #[error("{0}")]
    Failed(String),
}

/// What `rein mcp serve` serves: the agents and how to run one.
#[async_trait]
pub trait AgentHost: Send + Sync + 'static {
    /// The agents served now.
    async fn agents(&self) -> Result<Vec<HostedAgent>, HostError>;

    /// Runs `agent` on `input` to its end or its first wait for a person
    /// (which it must not wait out: the answer says what the run waits
    /// for). `cancel` fires when the client cancels the request or goes
    /// away. What the run does meanwhile may be told to `progress` (as
    /// [`ToolReport::Progress`], with a growing `progress`): the client
    /// gets it as progress notifications when it asked for them.
    async fn run(
        &self,
        agent: &str,
        input: String,
        cancel: CancellationToken,
        progress: ToolReporter,
    ) -> Result<HostedRun, HostError>;
}

/// The input schema every agent tool has.
fn input_schema() -> Map<String, Value> {
    let schema = json!({
        "type": "object",
        "properties": {
            "input": {"type": "string", "description": "The task or message for the agent, as you would write it to a person."}
        },
        "required": ["input"],
        "additionalProperties": false
    });
    match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// What every agent tool answers with as structured content.
fn output_schema() -> Map<String, Value> {
    let schema = json!({
        "type": "object",
        "properties": {
            "run_id": {"type": "string", "description": "The run, for `rein runs show` and approvals."},
            "status": {
                "type": "string",
                "enum": ["succeeded", "failed", "escalated", "limit_reached", "cancelled", "waiting_approval", "needs_reconciliation", "running"]
            },
            "output": {"type": ["string", "null"]},
            "explanation": {"type": "string"}
        },
        "required": ["run_id", "status"]
    });
    match schema {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// The MCP server handler over a host. Cheap to clone: one per HTTP
/// session shares the host.
#[derive(Clone)]
struct AgentServer {
    host: Arc<dyn AgentHost>,
}

impl AgentServer {
    fn tool(agent: &HostedAgent) -> Tool {
        let description = if agent.description.trim().is_empty() {
            format!("Runs the rein agent `{}` on the input and returns its answer with the run id.", agent.name)
        } else {
            format!(
                "{} (Runs the rein agent `{}`; the answer carries the run id.)",
                agent.description.trim(),
                agent.name
            )
        };
        Tool::new(agent.name.clone(), description, Arc::new(input_schema()))
            .with_raw_output_schema(Arc::new(output_schema()))
    }
}

fn internal(error: HostError) -> ErrorData {
    ErrorData::internal_error(error.to_string(), None)
}

/// A tool error the caller reads and can correct.
fn refused(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

impl ServerHandler for AgentServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("rein", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Each tool is a rein agent: call it with {\"input\": \"...\"} and it runs the agent to its end, \
                 journaled and bounded by the agent's limits. A run that needs a person's approval returns \
                 status waiting_approval with its run id instead of waiting.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let agents = self.host.agents().await.map_err(internal)?;
        Ok(ListToolsResult::with_all_items(agents.iter().map(Self::tool).collect()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let agents = self.host.agents().await.map_err(internal)?;
        if !agents.iter().any(|a| a.name == request.name) {
            return Err(ErrorData::invalid_params(format!("no agent named `{}` is served here", request.name), None));
        }
        let arguments = request.arguments.unwrap_or_default();
        let input = match arguments.get("input") {
            Some(Value::String(input)) if !input.trim().is_empty() => input.clone(),
            Some(Value::String(_)) => {
                return Ok(refused("`input` is empty: say what the agent should do".into()).into());
            }
            _ => return Ok(refused("`input` is required and must be a string".into()).into()),
        };
        if let Some(other) = arguments.keys().find(|k| *k != "input") {
            return Ok(refused(format!("unknown argument `{other}`: the only argument is `input`")).into());
        }
        // Progress goes to the client as the run makes it, and all of it
        // before the answer.
        let (sender, mut reports) = tokio::sync::mpsc::unbounded_channel::<ToolReport>();
        let token = context.meta.get_progress_token();
        let progress = match &token {
            Some(_) => ToolReporter::new(move |report| {
                let _ = sender.send(report);
            }),
            None => ToolReporter::default(),
        };
        let forward = async |report: ToolReport| {
            let (Some(token), ToolReport::Progress { progress, total, message }) = (&token, report) else { return };
            let mut params = ProgressNotificationParam::new(token.clone(), progress);
            if let Some(total) = total {
                params = params.with_total(total);
            }
            if let Some(message) = message {
                params = params.with_message(message);
            }
            if let Err(error) = context.peer.notify_progress(params).await {
                tracing::debug!(%error, "cannot send a progress notification");
            }
        };
        let run = self.host.run(&request.name, input, context.ct.clone(), progress);
        tokio::pin!(run);
        let ran = loop {
            tokio::select! {
                ran = &mut run => break ran,
                Some(report) = reports.recv() => forward(report).await,
            }
        };
        while let Ok(report) = reports.try_recv() {
            forward(report).await;
        }
        match ran {
            Ok(run) => {
                let mut result = if run.is_error {
                    CallToolResult::error(vec![ContentBlock::text(run.text)])
                } else {
                    CallToolResult::success(vec![ContentBlock::text(run.text)])
                };
                result.structured_content = Some(run.structured);
                Ok(result.into())
            }
            Err(HostError::UnknownAgent(name)) => {
                Err(ErrorData::invalid_params(format!("no agent named `{name}` is served here"), None))
            }
            Err(HostError::Failed(message)) => Ok(refused(message).into()),
        }
    }
}

/// Serves `host`'s agents on this process's stdin and stdout until the
/// client closes them. Nothing else may write to stdout meanwhile.
///
/// # Errors
///
/// When the client does not initialise the session.
pub async fn serve_stdio(host: Arc<dyn AgentHost>) -> Result<(), std::io::Error> {
    let running =
        AgentServer { host }.serve(rmcp::transport::stdio()).await.map_err(|e| std::io::Error::other(e.to_string()))?;
    running.waiting().await.map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(())
}

/// How the Streamable HTTP endpoint checks the requests it gets.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// Accept any `Host` header. Off, only loopback names are accepted,
    /// which keeps web pages from reaching a local server through DNS
    /// rebinding; turn it on only for a server reached through another
    /// address (and protected by something in front of it).
    pub any_host: bool,
}

/// Serves `host`'s agents over Streamable HTTP at `/mcp` on `listener`
/// until `shutdown` completes.
///
/// # Errors
///
/// When the listener fails.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    host: Arc<dyn AgentHost>,
    options: HttpOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), std::io::Error> {
    let stop = CancellationToken::new();
    let mut config = StreamableHttpServerConfig::default().with_cancellation_token(stop.child_token());
    if options.any_host {
        config = config.disable_allowed_hosts();
    }
    let server = AgentServer { host };
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(LocalSessionManager::default()), config);
    let router = axum::Router::new().nest_service("/mcp", service);
    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Ends the open sessions' streams, so the server can stop.
            stop.cancel();
        })
        .await
}
