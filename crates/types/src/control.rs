//! What a store keeps beside the events so that runs can be operated on from
//! any process: registered agent definitions (resume rebuilds an agent from
//! the exact version a run started with), the kill switch, cancel requests,
//! which process holds a run, the webhook deliveries seen and schedule
//! ticks claimed, and the hash chain that makes the journal tamper-evident.

use crate::access::AccessStore;
use crate::ids::{AgentVersion, RunId, TenantId};
use crate::ports::{Journal, JournalError, RunSummary};
use crate::queue::RunQueue;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The hash before a run's first event.
pub const CHAIN_GENESIS: [u8; 32] = [0; 32];

/// One link of a run's hash chain: the hash of the previous link and of the
/// event's stored bytes. Any edit, reordering or removal of an event changes
/// every hash after it.
pub fn chain_hash(previous: &[u8; 32], event_bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(event_bytes);
    hasher.finalize().into()
}

/// An agent name known to the store, with its kill-switch state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub name: String,
    /// A disabled agent starts no runs, and its running runs stop at their
    /// next step boundary.
    pub enabled: bool,
    /// Who last disabled or enabled it, and when (Unix ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_at_ms: Option<u64>,
    /// Registered versions, and the newest of them.
    pub versions: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_version: Option<String>,
    /// The tenant that registered the name first, and owns it.
    #[serde(default)]
    pub tenant: TenantId,
    /// The version deployed (served by `rein serve`); `None` until one is
    /// activated. Registering a version for resume (`rein run`) does not
    /// deploy it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_version: Option<String>,
}

/// One registered version of an agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentVersionRecord {
    pub version: String,
    pub registered_at_ms: u64,
}

/// One change of an agent's active version, oldest first in a history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    pub version: String,
    pub by: String,
    pub at_ms: u64,
}

/// The version a roll-back activates: the one that was active before the
/// current version's latest activation. Rolling back twice toggles between
/// the two, like undoing the last deploy. `None` when there is nothing to
/// go back to.
pub fn rollback_target(history: &[Activation]) -> Option<&str> {
    let current = history.last()?;
    history.iter().rev().skip(1).map(|a| a.version.as_str()).find(|version| *version != current.version)
}

/// The process holding a run: it appended the run's start or resumption and
/// has not suspended or finished it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// `host/pid/start`, see the store's process identity.
    pub owner: String,
    pub since_ms: u64,
}

/// What is wrong with one event of a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChainFault {
    /// The event's bytes no longer hash to what was recorded: it was edited.
    Edited,
    /// The event does not follow the one before it: events were removed or
    /// reordered before it.
    Broken,
    /// Seq numbers skip or repeat: events were removed or reordered.
    Gap,
    /// The chain ends before the run's recorded head: events were removed
    /// from the end.
    Truncated,
    /// Written before the journal was chained; it cannot be checked.
    Unchained,
}

/// One problem found in a run's chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainProblem {
    pub seq: u64,
    pub fault: ChainFault,
    pub detail: String,
}

/// The result of checking one run's hash chain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChainReport {
    pub run_id: RunId,
    pub events: u64,
    /// The hash of the last event, hex: keep it elsewhere to detect a
    /// rewrite of the whole chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head: Option<String>,
    pub problems: Vec<ChainProblem>,
}

impl ChainReport {
    /// No event was found edited, removed or reordered. Events written
    /// before the journal was chained cannot be checked and do not count.
    pub fn is_intact(&self) -> bool {
        self.problems.iter().all(|p| p.fault == ChainFault::Unchained)
    }
}

/// The operational side of a store, shared by every process using it.
#[async_trait]
pub trait ControlStore: Send + Sync {
    /// Records an agent version's definition (what resume rebuilds the agent
    /// from). Registering the same version again changes nothing.
    ///
    /// The first registration of a name makes `tenant` its owner; a
    /// registration by another tenant is refused with
    /// [`JournalError::Conflict`] and changes nothing.
    async fn register_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &AgentVersion,
        definition: &Value,
        now_ms: u64,
    ) -> Result<(), JournalError>;

    /// The definition registered for `name` at `version`.
    async fn agent_definition(&self, name: &str, version: &AgentVersion) -> Result<Option<Value>, JournalError>;

    /// Every agent with a registered version or a kill-switch state, by name.
    async fn agents(&self) -> Result<Vec<AgentRecord>, JournalError>;

    /// One agent's record.
    async fn agent(&self, name: &str) -> Result<Option<AgentRecord>, JournalError> {
        Ok(self.agents().await?.into_iter().find(|record| record.name == name))
    }

    /// `name`'s registered versions, oldest first.
    async fn agent_versions(&self, name: &str) -> Result<Vec<AgentVersionRecord>, JournalError>;

    /// Deploys `version` of `name` (it must be registered: otherwise
    /// [`JournalError::NotFound`]) and records who did, in the history that
    /// roll-backs read.
    async fn activate_agent(
        &self,
        name: &str,
        version: &AgentVersion,
        by: &str,
        now_ms: u64,
    ) -> Result<(), JournalError>;

    /// `name`'s activations, oldest first.
    async fn activations(&self, name: &str) -> Result<Vec<Activation>, JournalError>;

    /// The kill switch.
    async fn set_agent_enabled(&self, name: &str, enabled: bool, by: &str, now_ms: u64) -> Result<(), JournalError>;

    /// Whether `name` may run; agents never disabled are enabled.
    async fn agent_enabled(&self, name: &str) -> Result<bool, JournalError>;

    /// Asks whichever process holds `run` to cancel it at its next step
    /// boundary.
    async fn request_cancel(&self, run: RunId, by: &str, reason: &str, now_ms: u64) -> Result<(), JournalError>;

    /// Those of `runs` that must stop, with why: a cancel request, or their
    /// agent was disabled.
    async fn stop_requests(&self, runs: &[RunId]) -> Result<Vec<(RunId, String)>, JournalError>;

    /// The process holding `run`, if one does.
    async fn lease(&self, run: RunId) -> Result<Option<Lease>, JournalError>;

    /// Checks `run`'s hash chain against the stored events.
    async fn verify_chain(&self, run: RunId) -> Result<ChainReport, JournalError>;

    /// Records that webhook `hook`'s delivery `delivery_id` starts `run`,
    /// unless that delivery was recorded before: `None` when it is new (the
    /// caller starts `run`), `Some(run it started)` for a repeat (the caller
    /// starts nothing). Atomic: of two processes recording one delivery at
    /// once, exactly one gets `None`.
    async fn record_delivery(
        &self,
        hook: &str,
        delivery_id: &str,
        run: RunId,
        now_ms: u64,
    ) -> Result<Option<RunId>, JournalError>;

    /// Claims the tick at `tick_ms` (Unix ms, the time the cron expression
    /// named) of schedule `schedule` of `agent` for `run`: `None` when this
    /// caller won the claim (it starts `run`), `Some(run of the winner)`
    /// when the tick was claimed before, here or by another process (the
    /// caller starts nothing). Atomic: of any number of processes claiming
    /// one tick at once, exactly one gets `None`.
    async fn claim_tick(
        &self,
        agent: &str,
        schedule: &str,
        tick_ms: u64,
        run: RunId,
        now_ms: u64,
    ) -> Result<Option<RunId>, JournalError>;
}

/// Everything rein keeps, behind one handle: the journal, the control
/// tables, the run queue, and this process's name as a holder of runs. The CLI and the
/// server work against this, whichever backend is behind it.
#[async_trait]
pub trait Store: Journal + ControlStore + AccessStore + RunQueue {
    /// Who the runs this handle starts or resumes are leased to.
    fn owner(&self) -> &str;

    /// Runs that are not over — running, waiting for approval, or needing
    /// reconciliation — oldest first, each with the process holding it if
    /// one does.
    async fn unfinished_runs(&self) -> Result<Vec<(RunSummary, Option<Lease>)>, JournalError>;

    /// Deletes the bookkeeping recorded before `before_ms` that nothing
    /// needs any more — webhook deliveries (a retry that late is not
    /// expected; a replay that old fails its timestamp check anyway),
    /// claimed schedule ticks, cancel requests of finished runs, and queue
    /// rows of runs done — in one transaction. Journals, agents and keys are
    /// never pruned.
    async fn prune(&self, before_ms: u64) -> Result<Pruned, JournalError>;
}

/// What [`Store::prune`] deleted, by table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pruned {
    pub webhook_deliveries: u64,
    pub schedule_ticks: u64,
    pub cancel_requests: u64,
    pub queue_rows: u64,
}
