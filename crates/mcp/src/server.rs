//! One connection to an MCP server, restarted when it dies, with the tool
//! list it offers now.

use crate::error::{McpError, human};
use crate::inbox::{Inbox, Tapped, listening_meta};
use rein_types::{McpServerDecl, McpTransport, ToolReporter};
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResult, CancelledNotificationParam, ClientCapabilities,
    ClientConfig, ClientRequest, Implementation, RequestId, ServerResult,
};
use rmcp::service::{PeerRequestOptions, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ClientHandler, Peer, RoleClient, ServiceError, ServiceExt};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::Mutex;

/// The first restart attempt after a failed one waits this long; each
/// further failure doubles the wait, up to [`MAX_BACKOFF`].
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
/// A server that keeps failing is retried at least this often, so it
/// comes back soon after whatever broke it is fixed.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a clean shutdown waits for the server before it is killed.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// What rein tells servers about itself; it offers no client capabilities
/// (sampling, roots, elicitation), so servers do not ask for them.
#[derive(Debug, Clone, Default)]
struct ReinClient;

impl ClientHandler for ReinClient {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(ClientCapabilities::default(), Implementation::new("rein", env!("CARGO_PKG_VERSION")))
    }
}

struct Connection {
    service: RunningService<RoleClient, ReinClient>,
    /// The child's process id, for stdio servers.
    pid: Option<u32>,
}

impl Connection {
    fn is_alive(&self) -> bool {
        !self.service.is_closed() && !self.service.peer().is_transport_closed()
    }
}

#[derive(Default)]
struct State {
    connection: Option<Connection>,
    /// Failed (re)starts since the last successful one.
    failures: u32,
    /// No restart is attempted before this.
    retry_at: Option<Instant>,
    /// Why the last start failed, for the calls turned away meanwhile.
    last_error: String,
    /// Set by [`McpServer::shutdown`]: no restart after it.
    shut_down: bool,
}

/// A tool as the server describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerTool {
    /// The server's name for it (without any prefix).
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub input_schema: Value,
}

/// A connection to one MCP server. A server that dies (the child exits,
/// the HTTP session ends) is restarted by the next call, with exponential
/// backoff between failed restarts; calls made while it is down fail with
/// [`McpError::Unavailable`] rather than wait. Dropping the last handle
/// ends the session and kills a child process.
///
/// The server's tool list is read again before the first call after a
/// restart or a `notifications/tools/list_changed`; a call to a tool the
/// server no longer offers fails with [`McpError::ToolGone`] without
/// reaching it. While a call runs, the server's progress notifications for
/// it and its log messages go to the call's [`ToolReporter`].
pub struct McpServer {
    decl: McpServerDecl,
    http: reqwest::Client,
    state: Mutex<State>,
    inbox: Arc<Inbox>,
    /// What the server offered when last asked; `None` before that.
    offered: RwLock<Option<Vec<ServerTool>>>,
}

impl McpServer {
    /// Starts the server and initialises the session. `http` carries
    /// Streamable HTTP sessions (share the process's client); stdio servers
    /// do not use it.
    ///
    /// # Errors
    ///
    /// When a referenced environment variable is unset, the command cannot
    /// be started, or the server does not initialise within the time-out.
    pub async fn connect(decl: McpServerDecl, http: reqwest::Client) -> Result<Self, McpError> {
        let inbox = Arc::new(Inbox::new(&decl.name));
        let server = Self { decl, http, state: Mutex::new(State::default()), inbox, offered: RwLock::new(None) };
        let connection = server.open().await?;
        server.state.lock().await.connection = Some(connection);
        Ok(server)
    }

    pub fn name(&self) -> &str {
        &self.decl.name
    }

    pub fn decl(&self) -> &McpServerDecl {
        &self.decl
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.decl.timeout_ms)
    }

    /// The child's process id while a stdio server is running: for
    /// supervision, and for tests that kill it.
    pub async fn pid(&self) -> Option<u32> {
        let state = self.state.lock().await;
        state.connection.as_ref().filter(|c| c.is_alive()).and_then(|c| c.pid)
    }

    /// Whether a session is open now (a dead one is noticed here without a
    /// call).
    pub async fn is_connected(&self) -> bool {
        self.state.lock().await.connection.as_ref().is_some_and(Connection::is_alive)
    }

    /// Every tool the server offers, following pagination. The answer is
    /// also kept as [`McpServer::offered`].
    ///
    /// # Errors
    ///
    /// When the server is unavailable, does not answer in time, or answers
    /// with an error.
    pub async fn list_tools(&self) -> Result<Vec<ServerTool>, McpError> {
        let peer = self.peer().await?;
        self.list_on(&peer).await
    }

    /// The tools the server offered when last asked (at discovery, or
    /// after a restart or a change it announced); `None` before the first
    /// listing.
    pub fn offered(&self) -> Option<Vec<ServerTool>> {
        self.offered.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    async fn list_on(&self, peer: &Peer<RoleClient>) -> Result<Vec<ServerTool>, McpError> {
        // Marked read before asking: a change announced during the listing
        // marks it stale again.
        self.inbox.take_tools_stale();
        let listed = tokio::time::timeout(self.timeout(), peer.list_all_tools())
            .await
            .map_err(|_| self.timed_out())
            .and_then(|answer| answer.map_err(|e| self.service_error(e)));
        let tools: Vec<ServerTool> = match listed {
            Ok(tools) => tools
                .into_iter()
                .map(|tool| ServerTool {
                    name: tool.name.to_string(),
                    description: tool.description.as_deref().unwrap_or_default().to_string(),
                    input_schema: Value::Object((*tool.input_schema).clone()),
                })
                .collect(),
            Err(error) => {
                self.inbox.mark_tools_stale();
                return Err(error);
            }
        };
        let mut offered = self.offered.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(before) = offered.as_ref() {
            let gone: Vec<&str> =
                before.iter().filter(|b| !tools.iter().any(|t| t.name == b.name)).map(|t| t.name.as_str()).collect();
            let added: Vec<&str> =
                tools.iter().filter(|t| !before.iter().any(|b| b.name == t.name)).map(|t| t.name.as_str()).collect();
            if !gone.is_empty() || !added.is_empty() {
                tracing::info!(server = %self.decl.name, ?gone, ?added,
                    "MCP server's tools changed; agents built before keep theirs, and calls to gone tools fail");
            }
        }
        *offered = Some(tools.clone());
        Ok(tools)
    }

    /// Calls a tool by the server's name for it, with the per-call
    /// time-out. A result with `isError` set is returned as it is: that is
    /// the tool's answer, not a failure to reach it. When `reporter`
    /// listens, the call carries a progress token, and the server's
    /// progress notifications for it and its log messages while it runs go
    /// to `reporter`.
    ///
    /// # Errors
    ///
    /// When the server is unavailable, does not answer in time, no longer
    /// offers the tool, or rejects the call (unknown tool, invalid
    /// arguments).
    pub async fn call_tool(
        &self,
        name: &str,
        arguments: Map<String, Value>,
        reporter: &ToolReporter,
    ) -> Result<CallToolResult, McpError> {
        let peer = self.peer().await?;
        if self.inbox.tools_stale()
            && let Err(error) = self.list_on(&peer).await
        {
            // The call may still work; the list is read again next time.
            tracing::warn!(server = %self.decl.name, %error, "cannot read the MCP server's tool list again");
        }
        if let Some(offered) = self.offered()
            && !offered.iter().any(|t| t.name == name)
        {
            return Err(McpError::ToolGone { server: self.decl.name.clone(), tool: name.to_owned() });
        }
        let mut params = CallToolRequestParams::new(name.to_string()).with_arguments(arguments);
        let listening = reporter.is_listening();
        if listening {
            params.meta = Some(listening_meta());
        }
        let request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        let mut handle = peer
            .send_cancellable_request(request, PeerRequestOptions::no_options())
            .await
            .map_err(|e| self.service_error(e))?;
        // Should this future be dropped before the answer (the run's own
        // time-out, a cancellation), the server is told to stop.
        let mut abandoned = Abandoned { peer: peer.clone(), id: Some(handle.id.clone()) };
        // The SDK put a progress token of its own in the request: the
        // server's progress notifications carry it.
        let registration = listening.then(|| self.inbox.register(handle.progress_token.clone(), reporter.clone()));
        let answer = match tokio::time::timeout(self.timeout(), &mut handle.rx).await {
            Ok(Ok(answer)) => answer.map_err(|e| self.service_error(e)),
            Ok(Err(_)) => Err(self.service_error(ServiceError::TransportClosed)),
            Err(_) => {
                // Tell the server to stop; a late answer is discarded.
                abandoned.id = None;
                let _ = handle.cancel(Some("the client's time-out passed".into())).await;
                Err(self.timed_out())
            }
        };
        abandoned.id = None;
        drop(registration);
        match answer? {
            ServerResult::CallToolResult(result) => Ok(result),
            ServerResult::EmptyResult(_) => Ok(CallToolResult::success(Vec::new())),
            _ => Err(McpError::Protocol {
                server: self.decl.name.clone(),
                message: "the server answered the call with something other than a tool result".into(),
            }),
        }
    }

    /// Ends the session: closes the connection, lets a child process exit
    /// on its own for a moment, then kills it. Later calls fail; nothing
    /// restarts the server.
    pub async fn shutdown(&self) {
        let connection = {
            let mut state = self.state.lock().await;
            state.shut_down = true;
            state.connection.take()
        };
        if let Some(mut connection) = connection {
            // The child is killed when the transport is dropped, whether the
            // close finished in time or not.
            if connection.service.close_with_timeout(SHUTDOWN_GRACE).await.is_err() {
                tracing::warn!(server = %self.decl.name, "MCP session did not close cleanly");
            }
        }
    }

    /// The live session's peer, restarting the server first if it died and
    /// the backoff allows. Holding the lock while restarting makes
    /// concurrent callers wait for one restart instead of starting several.
    async fn peer(&self) -> Result<Peer<RoleClient>, McpError> {
        let mut state = self.state.lock().await;
        if let Some(connection) = state.connection.as_ref().filter(|c| c.is_alive()) {
            return Ok(connection.service.peer().clone());
        }
        if state.shut_down {
            return Err(McpError::Protocol {
                server: self.decl.name.clone(),
                message: "the server was shut down".into(),
            });
        }
        if let Some(dead) = state.connection.take() {
            tracing::warn!(server = %self.decl.name, pid = ?dead.pid, "MCP server died; restarting it");
            state.last_error = "the server exited".into();
        }
        if let Some(retry_at) = state.retry_at {
            let now = Instant::now();
            if now < retry_at {
                return Err(McpError::Unavailable {
                    server: self.decl.name.clone(),
                    reason: state.last_error.clone(),
                    retry_in: retry_at - now,
                });
            }
        }
        match self.open().await {
            Ok(connection) => {
                let peer = connection.service.peer().clone();
                state.connection = Some(connection);
                state.failures = 0;
                state.retry_at = None;
                // The restarted server may offer other tools.
                self.inbox.mark_tools_stale();
                tracing::info!(server = %self.decl.name, "MCP server restarted");
                Ok(peer)
            }
            Err(error) => {
                state.failures = state.failures.saturating_add(1);
                let backoff = backoff(state.failures);
                state.retry_at = Some(Instant::now() + backoff);
                state.last_error = error.to_string();
                tracing::warn!(server = %self.decl.name, %error, retry_in = %human(backoff), "MCP server restart failed");
                Err(McpError::Unavailable {
                    server: self.decl.name.clone(),
                    reason: error.to_string(),
                    retry_in: backoff,
                })
            }
        }
    }

    async fn open(&self) -> Result<Connection, McpError> {
        let server = &self.decl.name;
        self.inbox.reset();
        let (service, pid) = match &self.decl.transport {
            McpTransport::Stdio { command, args, env, cwd } => {
                let mut cmd = tokio::process::Command::new(command);
                cmd.args(args);
                for (key, value) in env {
                    cmd.env(key, expand_env(server, value)?);
                }
                if let Some(cwd) = cwd {
                    cmd.current_dir(cwd);
                }
                let (transport, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|source| McpError::Spawn { server: server.clone(), command: command.clone(), source })?;
                let pid = transport.id();
                if let Some(stderr) = stderr {
                    // Servers log to stderr; an unread pipe would fill and
                    // block the server.
                    let server = server.clone();
                    tokio::spawn(async move {
                        let mut lines = BufReader::new(stderr).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            tracing::debug!(server = %server, "{line}");
                        }
                    });
                }
                (self.initialised(ReinClient.serve(Tapped::new(transport, self.inbox.clone()))).await?, pid)
            }
            McpTransport::StreamableHttp { url, headers } => {
                let mut custom = HashMap::with_capacity(headers.len());
                for (name, value) in headers {
                    let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                        McpError::Config { server: server.clone(), message: format!("invalid header name `{name}`") }
                    })?;
                    // The value may hold a secret: the message names only
                    // the header.
                    let header_value =
                        reqwest::header::HeaderValue::from_str(&expand_env(server, value)?).map_err(|_| {
                            McpError::Config {
                                server: server.clone(),
                                message: format!("header `{name}` has a value that is not valid in HTTP"),
                            }
                        })?;
                    custom.insert(header_name, header_value);
                }
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(custom);
                let transport = StreamableHttpClientTransport::with_client(self.http.clone(), config);
                (self.initialised(ReinClient.serve(Tapped::new(transport, self.inbox.clone()))).await?, None)
            }
        };
        if let Some(info) = service.peer_info().and_then(|info| info.server_info.clone()) {
            tracing::info!(
                server = %server,
                name = %info.name,
                version = %info.version,
                "MCP server initialised"
            );
        }
        Ok(Connection { service, pid })
    }

    async fn initialised<E: std::fmt::Display>(
        &self,
        initialising: impl Future<Output = Result<RunningService<RoleClient, ReinClient>, E>>,
    ) -> Result<RunningService<RoleClient, ReinClient>, McpError> {
        tokio::time::timeout(self.timeout(), initialising)
            .await
            .map_err(|_| self.timed_out())?
            .map_err(|e| McpError::Initialise { server: self.decl.name.clone(), message: e.to_string() })
    }

    fn timed_out(&self) -> McpError {
        McpError::Timeout { server: self.decl.name.clone(), timeout: self.timeout() }
    }

    fn service_error(&self, error: ServiceError) -> McpError {
        let server = self.decl.name.clone();
        match error {
            ServiceError::McpError(data) => McpError::Protocol { server, message: data.message.to_string() },
            ServiceError::Timeout { .. } => self.timed_out(),
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                McpError::ConnectionLost { server, detail: error.to_string() }
            }
            other => McpError::Protocol { server, message: other.to_string() },
        }
    }
}

/// A call in flight; dropped armed, it sends the server a cancellation
/// for the request (what the SDK's own `call_tool` does when dropped).
struct Abandoned {
    peer: Peer<RoleClient>,
    id: Option<RequestId>,
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(id) = self.id.take() else { return };
        let peer = self.peer.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let reason = Some("the caller gave up on the call".to_owned());
                let _ = peer.notify_cancelled(CancelledNotificationParam::new(Some(id), reason)).await;
            });
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
    INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Replaces each `${VAR}` with the variable's value. Other text, `$`
/// included, is kept as written.
fn expand_env(server: &str, text: &str) -> Result<String, McpError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let var = &after[..end];
        let value = std::env::var(var)
            .map_err(|_| McpError::MissingEnv { server: server.to_string(), var: var.to_string() })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_millis(500));
        assert_eq!(backoff(2), Duration::from_secs(1));
        assert_eq!(backoff(4), Duration::from_secs(4));
        assert_eq!(backoff(50), MAX_BACKOFF);
    }

    #[test]
    fn env_references_are_expanded_and_missing_ones_named() {
        // PATH is set wherever tests run.
        let path = std::env::var("PATH").unwrap();
        assert_eq!(expand_env("s", "a ${PATH} b $HOME").unwrap(), format!("a {path} b $HOME"));
        let err = expand_env("s", "Bearer ${REIN_MCP_SURELY_UNSET}").unwrap_err();
        assert!(err.to_string().contains("REIN_MCP_SURELY_UNSET"), "{err}");
    }
}
