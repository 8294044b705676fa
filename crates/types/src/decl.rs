//! Declarative tool implementations, as an agent file describes them. The
//! config crate produces these; the tools crate turns them into running
//! [`crate::Tool`]s. They are part of the agent's version (through
//! [`crate::AgentSpec::extra`]), so changing a URL or a query changes it too.
//!
//! Secrets never appear here: header values keep their `${ENV_VAR}`
//! references, which are expanded only when a request is sent.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// How a declared tool is implemented.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolImpl {
    Http(HttpToolDecl),
    Sql(SqlToolDecl),
    /// `handoff_to_human(reason)`: ends the run as escalated. Handled by the
    /// core; it never executes anything.
    Handoff,
}

/// An HTTP endpoint the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpToolDecl {
    /// `GET`, `POST`, `PUT`, `PATCH` or `DELETE`.
    pub method: String,
    /// URL template; `{param}` is replaced by the percent-encoded argument.
    pub url: String,
    /// Header templates; `${VAR}` is read from the environment at call time,
    /// `{param}` from the arguments.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Query-string templates, as for headers.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    #[serde(default)]
    pub body: BodyMapping,
    pub timeout_ms: u64,
    #[serde(default)]
    pub retry: RetryPolicy,
    /// Fields kept from a JSON response: output key → JSON Pointer
    /// (`/data/id`). Empty keeps the whole body.
    #[serde(default)]
    pub extract: BTreeMap<String, String>,
    /// Results longer than this (in bytes of JSON) are cut, and marked so.
    pub max_result_bytes: usize,
}

/// What an HTTP tool sends as its body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", content = "template", rename_all = "snake_case")]
pub enum BodyMapping {
    /// No body (the default for `GET` and `DELETE`).
    #[default]
    None,
    /// The arguments object, as JSON.
    Arguments,
    /// A JSON template: a string that is exactly `"{param}"` becomes the
    /// argument's JSON value; `{param}` inside a longer string is replaced by
    /// its text.
    Template(Value),
}

/// Exponential backoff with full jitter on time-outs, 429 and 5xx, honouring
/// `Retry-After`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts including the first; 1 disables retrying.
    pub max_attempts: u32,
    pub initial_backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_attempts: 3, initial_backoff_ms: 250, max_backoff_ms: 10_000 }
    }
}

/// Whether a SQL tool may change data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SqlMode {
    /// Runs on a read-only connection; a write fails.
    Read,
    /// Runs in a transaction, committed only if the statement succeeds.
    Write,
}

/// A named, parameterised query. The model supplies parameter values only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SqlToolDecl {
    /// The database's name in the agent file, for messages.
    pub database: String,
    /// `sqlite://PATH` (relative paths already resolved against the agent
    /// file's directory).
    pub database_url: String,
    /// SQL with `:name` placeholders, bound from the arguments of the same
    /// name.
    pub query: String,
    pub mode: SqlMode,
    /// Rows returned at most; more are cut and the result marked truncated.
    pub max_rows: u32,
    pub max_result_bytes: usize,
}

/// How to reach a model's provider. The key itself is never stored: only the
/// name of the environment variable that holds it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderDecl {
    /// Base URL of the API (`https://api.openai.com/v1`); the provider's
    /// default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Environment variable holding the API key; the provider's default
    /// (`OPENAI_API_KEY`, ...) when absent. Local servers need none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Per-call time-out in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Retries after the first attempt on 429, 5xx, time-outs and broken
    /// connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// Extra headers, with `${VAR}` expanded from the environment at start.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Calls in flight at once to this endpoint, across every run in the
    /// process; more wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Client-side request rate for this endpoint, shared by every run in
    /// the process; calls above it wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    /// Client-side token rate (prompt estimate + output cap) for this
    /// endpoint, shared by every run in the process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u32>,
    /// The embedded `local` provider: decoding threads (default: every core
    /// this process may use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u32>,
    /// The embedded `local` provider: context window in tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u32>,
    /// The embedded `local` provider: whether a turn may answer or must
    /// call a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
}

/// Whether a model turn with tools may answer or must call one. Sampling
/// constrained by a grammar (the embedded model) can enforce it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolChoice {
    /// An answer or a call, as the model chooses.
    #[default]
    Auto,
    /// Always a call: the run ends through `stop.after_tools` or a handoff.
    Required,
    /// "Look it up, then answer": a call while the conversation holds no
    /// tool result, an answer once it does. For small models, which would
    /// otherwise answer from memory, or call the same tool again and again.
    First,
}

impl ToolChoice {
    pub const NAMES: &[&str] = &["auto", "required", "first"];

    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "auto" => Some(ToolChoice::Auto),
            "required" => Some(ToolChoice::Required),
            "first" => Some(ToolChoice::First),
            _ => None,
        }
    }
}

/// A webhook that starts the agent: `POST /v1/hooks/{name}` with a JSON body
/// signed with the shared secret. The secret itself is never stored: only
/// the name of the environment variable that holds it, read when a delivery
/// arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookDecl {
    /// 1–64 of `A-Z`, `a-z`, `0-9`, `_`, `-`; unique across the agents one
    /// server serves.
    pub name: String,
    /// Environment variable holding the shared secret.
    pub secret_env: String,
    /// Input template: `{/json/pointer}` is replaced by the payload's value
    /// there (a string as it is, any other value as JSON). Absent, the input
    /// is the whole payload as pretty-printed JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// How far the signed timestamp may be from now, in milliseconds.
    pub tolerance_ms: u64,
}

impl WebhookDecl {
    /// Five minutes.
    pub const DEFAULT_TOLERANCE_MS: u64 = 5 * 60 * 1000;
}

/// A schedule that starts the agent on a fixed input at the times a cron
/// expression names, in a time zone (`[[schedules]]`, fired by `rein serve`).
/// Each tick starts one run however many servers share the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDecl {
    /// 1–64 of `A-Z`, `a-z`, `0-9`, `_`, `-`; unique within the agent.
    pub name: String,
    /// Five fields (minute hour day-of-month month day-of-week), or six
    /// with seconds first.
    pub cron: String,
    /// IANA time zone name the cron expression is read in.
    pub timezone: String,
    /// The input of every run the schedule starts.
    pub input: String,
    /// A disabled schedule fires nothing.
    pub enabled: bool,
    /// A tick found this long (milliseconds) after its time — the server
    /// was down — is skipped rather than fired late.
    pub max_lateness_ms: u64,
}

impl ScheduleDecl {
    /// Five minutes.
    pub const DEFAULT_MAX_LATENESS_MS: u64 = 5 * 60 * 1000;
    pub const DEFAULT_TIMEZONE: &'static str = "UTC";
}

/// An MCP server whose tools the agent may use (`[[mcp_servers]]`). Its
/// tools are discovered when the agent is built, so they are not part of
/// the version; this declaration is, so pointing the agent at another
/// server, or changing its filters or tiers, changes the version.
///
/// Secrets never appear here: environment and header values keep their
/// `${ENV_VAR}` references, expanded when the server is started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct McpServerDecl {
    /// 1–64 of `A-Z`, `a-z`, `0-9`, `_`, `-`; unique within the agent.
    pub name: String,
    pub transport: McpTransport,
    /// Put before every tool name the server offers (`fs_` makes
    /// `read_file` `fs_read_file`), so two servers' tools cannot collide.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
    /// The server's tool names (without the prefix) the agent may use;
    /// empty allows every tool not denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// The server's tool names (without the prefix) the agent never sees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Per-call time-out, and the time-out of starting and initialising
    /// the server.
    pub timeout_ms: u64,
    /// Results longer than this (in bytes of JSON) are cut, and marked so.
    pub max_result_bytes: usize,
    /// Risk, approval and limits per tool (keyed by the server's name for
    /// it); tools not listed are `write` tools with the tier's approval.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tools: BTreeMap<String, McpToolPolicy>,
}

/// How rein reaches an MCP server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "transport", rename_all = "snake_case")]
pub enum McpTransport {
    /// A child process speaking MCP on its standard input and output.
    Stdio {
        command: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        args: Vec<String>,
        /// Added to rein's own environment; `${VAR}` in values is read from
        /// rein's environment at start.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        env: BTreeMap<String, String>,
        /// Working directory (already resolved against the agent file's
        /// directory); rein's own when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cwd: Option<String>,
    },
    /// A Streamable HTTP endpoint.
    StreamableHttp {
        url: String,
        /// `${VAR}` in values is read from the environment at start.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        headers: BTreeMap<String, String>,
    },
}

/// What the agent file says about one MCP tool. Servers' own annotations
/// (`readOnlyHint`, ...) are hints from code rein does not control, so only
/// this decides a tool's tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct McpToolPolicy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<crate::RiskTier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<crate::Approval>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotent: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
}
