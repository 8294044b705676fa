//! What the model is told about a tool, how risky it is, and what a tool call
//! returns.

use crate::ids::ToolName;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How much harm a tool can do. Decides the default approval policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RiskTier {
    /// Reads only; runs freely.
    Read,
    /// Changes state that can be changed back (a draft, an internal record).
    #[default]
    Write,
    /// Irreversible or external (send, pay, delete).
    Dangerous,
}

impl RiskTier {
    pub fn as_str(self) -> &'static str {
        match self {
            RiskTier::Read => "read",
            RiskTier::Write => "write",
            RiskTier::Dangerous => "dangerous",
        }
    }
}

/// Whether a call waits for a human before it runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Approval {
    /// Runs without asking.
    Never,
    /// Waits for a human decision.
    Required,
}

impl Approval {
    /// The default for a tier: dangerous tools ask, others do not.
    pub fn default_for(tier: RiskTier) -> Self {
        match tier {
            RiskTier::Dangerous => Approval::Required,
            RiskTier::Read | RiskTier::Write => Approval::Never,
        }
    }
}

/// Everything the runtime and the model know about a tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: ToolName,
    /// Written for the model: when to use it and when not to.
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
    pub risk: RiskTier,
    pub approval: Approval,
    /// Safe to run twice with the same arguments.
    #[serde(default)]
    pub idempotent: bool,
    /// Most calls allowed in one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_calls: Option<u32>,
}

impl ToolSpec {
    /// A spec with the tier's default approval and no call cap.
    pub fn new(name: ToolName, description: impl Into<String>, parameters: Value, risk: RiskTier) -> Self {
        Self {
            name,
            description: description.into(),
            parameters,
            risk,
            approval: Approval::default_for(risk),
            idempotent: risk == RiskTier::Read,
            max_calls: None,
        }
    }
}

/// Something a tool says about a call while it runs: how far along it is,
/// or a log message from the service it calls (an MCP server's
/// `notifications/progress` and `notifications/message`). Journaled as
/// `tool_call_reported` for people and dashboards; the model never sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ToolReport {
    Progress {
        /// How far along, in the tool's own unit; grows with each report.
        progress: f64,
        /// What `progress` counts up to, when the tool knows.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    Log {
        level: LogLevel,
        /// Which part of the service logged it, when it says.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        logger: Option<String>,
        /// The message: text, or any JSON the service sends.
        data: Value,
    },
}

/// The severity of a [`ToolReport::Log`]: the syslog levels (RFC 5424), as
/// MCP names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    Debug,
    Info,
    Notice,
    Warning,
    Error,
    Critical,
    Alert,
    Emergency,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Notice => "notice",
            LogLevel::Warning => "warning",
            LogLevel::Error => "error",
            LogLevel::Critical => "critical",
            LogLevel::Alert => "alert",
            LogLevel::Emergency => "emergency",
        }
    }
}

/// The structured result of one tool call. Tools never return Rust errors to
/// the loop: a failure is data the model reads and can recover from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum ToolOutcome {
    Ok {
        data: Value,
        /// Set when the data was cut to the tool's size limit.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        truncated: bool,
    },
    Error {
        message: String,
        /// What the model could do differently.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
        /// A transient failure: the same call may succeed later.
        #[serde(default)]
        retryable: bool,
    },
}

impl ToolOutcome {
    pub fn ok(data: Value) -> Self {
        ToolOutcome::Ok { data, truncated: false }
    }

    pub fn error(message: impl Into<String>) -> Self {
        ToolOutcome::Error { message: message.into(), hint: None, retryable: false }
    }

    pub fn error_with_hint(message: impl Into<String>, hint: impl Into<String>) -> Self {
        ToolOutcome::Error { message: message.into(), hint: Some(hint.into()), retryable: false }
    }

    pub fn is_ok(&self) -> bool {
        matches!(self, ToolOutcome::Ok { .. })
    }

    /// The observation text the model sees for this outcome.
    pub fn to_observation(&self) -> String {
        // Serialising a `Value` or these plain structs cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"status\":\"error\",\"message\":\"{e}\"}}"))
    }
}
