//! Who may use the API: API keys, each of one tenant with scopes, and the
//! limits each tenant runs under. Keys are stored as hashes; the key itself
//! is shown once, when it is made.

use crate::ids::TenantId;
use crate::ports::JournalError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What a key may do. `Admin` implies every other scope, within its tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Read runs, their events, and agents.
    #[serde(rename = "runs:read")]
    RunsRead,
    /// Start and cancel runs.
    #[serde(rename = "runs:write")]
    RunsWrite,
    /// List and decide approval requests.
    #[serde(rename = "approvals")]
    Approvals,
    /// Register, activate, roll back, disable and enable agents; metrics.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::RunsRead, Scope::RunsWrite, Scope::Approvals, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::RunsRead => "runs:read",
            Scope::RunsWrite => "runs:write",
            Scope::Approvals => "approvals",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|scope| scope.as_str() == text)
    }

    /// Whether a key holding `held` may act where `self` is needed.
    pub fn granted_by(self, held: &[Scope]) -> bool {
        held.contains(&self) || held.contains(&Scope::Admin)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stored API key: everything but the key itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// The public part of the key, which finds the record.
    pub id: String,
    pub tenant: TenantId,
    /// What the key is for, for people reading a listing.
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Hex SHA-256 of the whole key.
    pub hash: String,
    pub created_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<u64>,
}

/// A tenant's own limits, overriding the server's defaults where set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantLimits {
    /// API requests per second, sustained.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_second: Option<u32>,
    /// API requests allowed at once above the sustained rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
    /// Runs of the tenant running at once, across every process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_runs: Option<u32>,
}

/// Keys and tenant limits, kept beside the journal.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Stores a new key; an id in use already is a [`JournalError::Conflict`].
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), JournalError>;

    /// The key with this id, revoked or not.
    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, JournalError>;

    /// Keys, oldest first; only `tenant`'s when given.
    async fn api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, JournalError>;

    /// Revokes a key at once; `false` when no unrevoked key has this id.
    async fn revoke_api_key(&self, id: &str, now_ms: u64) -> Result<bool, JournalError>;

    /// Sets `tenant`'s limits (replacing what was set before).
    async fn set_tenant_limits(&self, tenant: &TenantId, limits: &TenantLimits) -> Result<(), JournalError>;

    /// Every tenant with limits of its own.
    async fn tenant_limits(&self) -> Result<Vec<(TenantId, TenantLimits)>, JournalError>;
}
