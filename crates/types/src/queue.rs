//! The durable run queue: runs waiting for a worker, and which worker holds
//! each one it claimed, for how long.
//!
//! A claim is a lease with a deadline, not a lock held by a connection: the
//! holder extends it with heartbeats, and a holder that stops (killed, cut
//! off, frozen) loses it when the deadline passes, whereupon any worker may
//! claim the run and take it up from its journal. The journal's own fencing
//! (an append must continue the run's last seq) keeps an ex-holder that is
//! only slow from writing over the new one. Once a run is in the queue, its
//! queue lease says who drives it; the per-run lease the journal derives
//! from `run_started`/`run_resumed` ([`crate::Lease`]) still names the last
//! process that took it up.
//!
//! Backends implement the ordering and atomicity; what a worker does with a
//! claim lives in the `rein` crate's worker loop.

use crate::ids::{AgentVersion, RunId, TenantId};
use crate::ports::JournalError;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A run as the queue keeps it: everything a worker needs to start it when
/// nothing has been journaled for it yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRun {
    pub run_id: RunId,
    pub tenant: TenantId,
    pub agent: String,
    /// The registered definition to build (see `ControlStore::register_agent`).
    pub agent_version: AgentVersion,
    pub input: String,
    pub enqueued_at_ms: u64,
}

/// A run a worker claimed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub run: QueuedRun,
    /// The worker whose lease on it had expired, when this claim takes the
    /// run over rather than picking it up fresh.
    pub taken_over_from: Option<String>,
}

/// How much work the queue holds, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueDepth {
    /// Waiting for a worker (never claimed, or released).
    pub queued: u64,
    /// Held by a worker, lease expired or not.
    pub claimed: u64,
    /// Claims, ever, that took a run over from a worker whose lease had
    /// expired.
    pub lease_expiries: u64,
}

/// The queue runs wait in for a worker. Every [`crate::Store`] has one, so
/// any process sharing a store can enqueue, and any can work.
///
/// Times are Unix milliseconds passed in by the caller, and lease lengths
/// are milliseconds: the backends compare them, they do not read a clock,
/// so tests can play out expiries without waiting. Workers on several
/// machines must have clocks that agree to well within a lease's length.
#[async_trait]
pub trait RunQueue: Send + Sync {
    /// Adds `run`, claimable at once. Enqueuing a run id already in the
    /// queue (claimed, done or waiting) changes nothing.
    async fn enqueue(&self, run: &QueuedRun) -> Result<(), JournalError>;

    /// Claims the oldest claimable run for `owner` until `now_ms + ttl_ms`:
    /// one waiting, or one whose holder's lease expired before `now_ms`.
    /// Of any number of callers at once, each run goes to exactly one.
    async fn claim(&self, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<Option<Claim>, JournalError>;

    /// Takes (or extends) the lease on `run` for a process that drives it
    /// itself (a run answered synchronously, an approval decided), adding it
    /// to the queue first if needed, so that if that process dies a worker
    /// takes the run over. `false` when another owner's lease on it has not
    /// expired: someone else drives it.
    async fn claim_run(&self, run: &QueuedRun, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<bool, JournalError>;

    /// Extends every lease `owner` holds to `now_ms + ttl_ms`, in one
    /// statement, and returns the runs it still holds: a run the caller
    /// drives that is not among them was lost to another worker.
    async fn heartbeat(&self, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<Vec<RunId>, JournalError>;

    /// Drops `owner`'s lease on `run` and puts it back in the queue,
    /// claimable by anyone at once (a worker stopping before the run did).
    async fn release(&self, run: RunId, owner: &str) -> Result<(), JournalError>;

    /// Takes `run` off the queue: it finished, or it waits for people (an
    /// approval, a reconciliation), whose decision will drive it again.
    async fn complete(&self, run: RunId, owner: &str) -> Result<(), JournalError>;

    /// How much work is queued and claimed.
    async fn queue_depth(&self) -> Result<QueueDepth, JournalError>;

    /// `tenant`'s runs queued or claimed: waiting for a worker or being
    /// driven (runs waiting for people have left the queue). What a
    /// tenant's cap on runs at once counts.
    async fn live_runs(&self, tenant: &TenantId) -> Result<u64, JournalError>;

    /// Waits until work may have been added or released (by any process,
    /// where the backend can tell) or `timeout` passes, whichever is first.
    /// Wakes may be spurious: callers claim and see.
    async fn wait_for_work(&self, timeout: Duration);
}
