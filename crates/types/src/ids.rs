//! Identifier newtypes. Each carries its own validation so that a value of the
//! type is known to be well formed wherever it travels.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one run of an agent. Time-ordered (UUID v7), so listing runs by
/// id lists them by start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(pub uuid::Uuid);

impl RunId {
    /// A fresh, time-ordered run id.
    pub fn new() -> Self {
        Self(uuid::Uuid::now_v7())
    }

    /// Parses the textual form printed by [`fmt::Display`]; a unique prefix is
    /// resolved by the store, not here.
    pub fn parse(text: &str) -> Option<Self> {
        uuid::Uuid::parse_str(text).ok().map(Self)
    }
}

impl Default for RunId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The tenant a record belongs to: every run, agent and API key has one.
/// Lowercase ASCII letters, digits, `-` and `_`, 1 to 64 of them, so a
/// tenant can appear in URLs, metrics labels and logs as it is. Records made
/// without tenants (the CLI on one machine) belong to [`TenantId::DEFAULT`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

/// Why a tenant name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a tenant name: use 1 to 64 lowercase letters, digits, `-` or `_`")]
pub struct TenantIdError(pub String);

impl TenantId {
    pub const DEFAULT: &'static str = "default";

    pub fn parse(text: &str) -> Result<Self, TenantIdError> {
        let valid = !text.is_empty()
            && text.len() <= 64
            && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if valid { Ok(Self(text.to_owned())) } else { Err(TenantIdError(text.to_owned())) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        self.0 == Self::DEFAULT
    }
}

impl Default for TenantId {
    fn default() -> Self {
        Self(Self::DEFAULT.to_owned())
    }
}

impl TryFrom<String> for TenantId {
    type Error = TenantIdError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::parse(&text)
    }
}

impl From<TenantId> for String {
    fn from(tenant: TenantId) -> Self {
        tenant.0
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The id a model gave one tool call; tool results are matched to calls by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ToolCallId(pub String);

impl fmt::Display for ToolCallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An agent's version: the hex SHA-256 of its resolved spec.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AgentVersion(pub String);

impl AgentVersion {
    /// The first 12 hex digits, enough to tell versions apart on a screen.
    pub fn short(&self) -> &str {
        &self.0[..self.0.len().min(12)]
    }
}

impl fmt::Display for AgentVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stable key for one tool call: the same run, step and call index always
/// give the same key, so a retried side effect can be recognised downstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(pub String);

impl IdempotencyKey {
    pub fn for_call(run: RunId, step: u32, call_index: usize) -> Self {
        Self(format!("{run}:{step}:{call_index}"))
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A tool name as every provider accepts it: 1 to 64 characters of
/// `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ToolName(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid tool name `{0}`: use 1 to 64 letters, digits, `_` or `-` (providers reject anything else)")]
pub struct ToolNameError(pub String);

impl ToolName {
    pub fn new(name: impl Into<String>) -> Result<Self, ToolNameError> {
        let name = name.into();
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if valid { Ok(Self(name)) } else { Err(ToolNameError(name)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ToolName {
    type Error = ToolNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<ToolName> for String {
    fn from(value: ToolName) -> Self {
        value.0
    }
}

impl fmt::Display for ToolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_names_are_validated() {
        assert!(ToolName::new("lookup_contact").is_ok());
        assert!(ToolName::new("a-b_9").is_ok());
        assert!(ToolName::new("").is_err());
        assert!(ToolName::new("has space").is_err());
        assert!(ToolName::new("x".repeat(65)).is_err());
    }

    #[test]
    fn idempotency_keys_are_stable() {
        let run = RunId::new();
        assert_eq!(IdempotencyKey::for_call(run, 2, 1), IdempotencyKey::for_call(run, 2, 1));
        assert_ne!(IdempotencyKey::for_call(run, 2, 1), IdempotencyKey::for_call(run, 2, 0));
    }
}
