//! The worker loop: claims runs from the store's queue and drives them, as
//! `rein worker` and `rein serve` do.
//!
//! Once a run is in the queue its lease there says who drives it, so a
//! worker does not ask whether the journal's last holder lives (it may be on
//! another machine): it starts a run nothing was journaled for, and takes
//! any other up from its journal. Should the previous holder be merely slow
//! rather than dead, the journal's fencing (an append must continue the
//! run's last seq) lets only one of them write; the loser's drive ends in a
//! conflict and it lets go.
//!
//! One heartbeat task extends every lease this process holds (runs claimed
//! here, and runs the process drives itself with `claim_run`), at a third
//! of the lease's length; a run whose lease was lost all the same is
//! abandoned. The loop wakes when the store says work arrived, when a run
//! ends, and every half lease, to pick up runs whose holder's lease
//! expired. Shutting down drains: nothing more is claimed, runs in flight
//! may finish until the drain time-out, and those still going then are
//! stopped and released, so another worker takes them up at once from
//! their journals (a tool call cut off is retried with its idempotency key,
//! or waits for reconciliation, by the usual resume rules).
//!
//! A claimed run's agent is built from its registered definition by the
//! operator, once per version and process ([`Operator::build`]): the runs
//! of one version share it, and so its MCP servers, which are started for
//! the first run and stay up (restarted if they crash) for the next. A run
//! whose agent cannot be built because an MCP server is unreachable goes
//! back to the queue after a pause rather than off it.

use crate::load::LoadError;
use crate::operate::{OperateError, Operator, now_ms};
use rein_runtime::{ResumeAction, Runtime, RuntimeError};
use rein_types::{Claim, JournalError, RunId, RunOutcome, Store};
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::{AbortHandle, JoinSet};

/// How a worker claims and drains.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Runs driven at once; 0 claims nothing (the heartbeat still keeps
    /// the leases of runs the process drives itself).
    pub concurrency: usize,
    /// How long a claim lasts without a heartbeat: how soon another worker
    /// takes over the runs of one that died.
    pub lease_ttl: Duration,
    /// How long runs in flight may go on after a shutdown is asked for
    /// before they are stopped and released.
    pub drain_timeout: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self { concurrency: 8, lease_ttl: Duration::from_secs(15), drain_timeout: Duration::from_secs(30) }
    }
}

/// What a worker did, for its exit log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerReport {
    pub claimed: u64,
    /// Claims of runs whose previous holder's lease had expired.
    pub taken_over: u64,
    /// Runs driven to their end or to a wait for people.
    pub completed: u64,
    /// Runs handed back to the queue (drain time-out, failures another
    /// worker may not have).
    pub released: u64,
    /// Runs whose lease went to another worker while driven here.
    pub lost: u64,
}

/// Observes a worker's claims, for metrics.
pub trait WorkerObserver: Send + Sync {
    fn claimed(&self, claim: &Claim);
}

/// Claims and drives runs until shut down.
pub struct Worker {
    operator: Arc<Operator>,
    runtime: Runtime,
    config: WorkerConfig,
    observer: Option<Arc<dyn WorkerObserver>>,
}

/// Runs this worker drives, by run: how to stop each, and when it was
/// claimed (a heartbeat sent before the claim cannot know of it).
type Held = Arc<std::sync::Mutex<HashMap<RunId, (AbortHandle, tokio::time::Instant)>>>;

impl Worker {
    /// A worker driving runs with `runtime` (which should journal as the
    /// operator's store does: [`Operator::runtime`], with hooks to taste).
    pub fn new(operator: Arc<Operator>, runtime: Runtime, config: WorkerConfig) -> Self {
        Self { operator, runtime, config, observer: None }
    }

    pub fn with_observer(mut self, observer: Arc<dyn WorkerObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Claims and drives runs until `shutdown` completes, then drains.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> WorkerReport {
        let store = self.operator.store().clone();
        let owner = store.owner().to_owned();
        let ttl_ms = u64::try_from(self.config.lease_ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: Held = Arc::default();
        let mut report = WorkerReport::default();
        let heartbeat = tokio::spawn(heartbeat(store.clone(), held.clone(), self.config.lease_ttl));
        let mut tasks: JoinSet<Result<RunOutcome, OperateError>> = JoinSet::new();
        let mut runs: HashMap<tokio::task::Id, RunId> = HashMap::new();
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let mut stopped_the_rest = false;
        let recheck = (self.config.lease_ttl / 2).max(Duration::from_millis(1));
        tokio::pin!(shutdown);
        tracing::info!(owner, concurrency = self.config.concurrency, ttl_ms, "worker started");

        loop {
            while drain_deadline.is_none() && tasks.len() < self.config.concurrency {
                match store.claim(&owner, ttl_ms, now_ms()).await {
                    Ok(Some(claim)) => {
                        report.claimed += 1;
                        let run = claim.run.run_id;
                        if let Some(from) = &claim.taken_over_from {
                            report.taken_over += 1;
                            tracing::warn!(%run, from, "taking over a run whose worker's lease expired");
                        } else {
                            tracing::info!(%run, agent = claim.run.agent, "claimed a run");
                        }
                        if let Some(observer) = &self.observer {
                            observer.claimed(&claim);
                        }
                        let claimed_at = tokio::time::Instant::now();
                        let drive = drive(self.operator.clone(), self.runtime.clone(), claim);
                        let task = tasks.spawn(drive);
                        runs.insert(task.id(), run);
                        if let Ok(mut held) = held.lock() {
                            held.insert(run, (task, claimed_at));
                        }
                    }
                    Ok(None) => break,
                    Err(error) => {
                        tracing::error!(%error, "cannot claim from the run queue");
                        break;
                    }
                }
            }
            if drain_deadline.is_some() && tasks.is_empty() {
                break;
            }
            let can_claim = drain_deadline.is_none() && tasks.len() < self.config.concurrency;
            // Biased, shutdown first: a stop that arrives with a finished
            // run must be seen before the loop goes back to claiming.
            tokio::select! {
                biased;
                () = &mut shutdown, if drain_deadline.is_none() => {
                    tracing::info!(in_flight = tasks.len(), drain_timeout = ?self.config.drain_timeout,
                        "draining: claiming nothing more");
                    drain_deadline = Some(tokio::time::Instant::now() + self.config.drain_timeout);
                }
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, Ok(result)),
                        Err(error) => (error.id(), Err(error)),
                    };
                    let Some(run) = runs.remove(&id) else { continue };
                    // Out of the held set before the store hears of it, so
                    // a heartbeat in between does not count it lost.
                    let still_held = held.lock().map(|mut held| held.remove(&run).is_some()).unwrap_or(false);
                    settle(&*store, &owner, run, result, still_held, drain_deadline.is_some(), &mut report).await;
                }
                () = store.wait_for_work(recheck), if can_claim => {}
                () = sleep_until(drain_deadline), if drain_deadline.is_some() && !stopped_the_rest => {
                    tracing::warn!(runs = tasks.len(), "drain time-out: stopping the runs still going and releasing them");
                    // Each comes back through `join_next` as cancelled, and
                    // is released there.
                    tasks.abort_all();
                    stopped_the_rest = true;
                }
            }
        }
        heartbeat.abort();
        tracing::info!(?report, "worker stopped");
        report
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Tells the store what became of a drive.
async fn settle(
    store: &dyn Store,
    owner: &str,
    run: RunId,
    result: Result<Result<RunOutcome, OperateError>, tokio::task::JoinError>,
    still_held: bool,
    draining: bool,
    report: &mut WorkerReport,
) {
    if !still_held {
        report.lost += 1;
        tracing::warn!(%run, "stopped driving a run whose lease went to another worker");
        return;
    }
    let release = match result {
        Ok(Ok(outcome)) => {
            tracing::info!(%run, status = outcome.status.as_str(), steps = outcome.steps, "run done here");
            false
        }
        Ok(Err(error)) if permanent(&error) => {
            tracing::error!(%run, %error, "the run cannot be driven; taking it off the queue");
            false
        }
        Ok(Err(error)) => {
            tracing::warn!(%run, %error, "the run's drive failed; releasing it for another worker");
            true
        }
        Err(error) if error.is_cancelled() => {
            if draining {
                tracing::info!(%run, "released at the drain time-out; another worker resumes it from its journal");
            }
            true
        }
        Err(error) => {
            tracing::error!(%run, %error, "the run's task failed; releasing it");
            true
        }
    };
    let answer = if release { store.release(run, owner).await } else { store.complete(run, owner).await };
    match answer {
        Ok(()) if release => report.released += 1,
        Ok(()) => report.completed += 1,
        Err(error) => tracing::error!(%run, %error, "cannot update the run queue; the lease will expire instead"),
    }
}

/// Failures no other worker would fare better with. An MCP server of the
/// agent that cannot be reached now may be back later: that run is
/// released, not dropped.
fn permanent(error: &OperateError) -> bool {
    match error {
        OperateError::Load(LoadError::Mcp(error)) if error.is_transient() => false,
        OperateError::NotRegistered { .. }
        | OperateError::Disabled(_)
        | OperateError::NotStarted(_)
        | OperateError::Load(_) => true,
        OperateError::Runtime(RuntimeError::InvalidAgent(_) | RuntimeError::Resume { .. }) => true,
        OperateError::Store(_) | OperateError::Runtime(RuntimeError::Journal(_)) => false,
        _ => false,
    }
}

/// Starts a claimed run nothing was journaled for, or takes it up from its
/// journal.
async fn drive(operator: Arc<Operator>, runtime: Runtime, claim: Claim) -> Result<RunOutcome, OperateError> {
    let run = claim.run.run_id;
    // An abort (lost lease, drain time-out) skips the operator's own
    // clean-up after the drive.
    let _forget = Forget(operator.clone(), run);
    let events = operator.store().events(run).await?;
    if events.is_empty() {
        let agent = paced(operator.registered_agent(&claim.run.agent, &claim.run.agent_version, run).await).await?;
        return operator.start_for(&claim.run.tenant, &runtime, &agent, claim.run.input, run, None).await;
    }
    if let Some(outcome) = rein_core::fold::outcome_of(&events).filter(|o| o.status.is_terminal()) {
        // Finished by a worker that died before taking it off the queue.
        return Ok(outcome);
    }
    let agent = paced(operator.agent_of(run).await).await?;
    operator.resume_with(&runtime, &agent, run, ResumeAction::Continue, None).await
}

/// How long a drive whose agent could not be built for a passing reason
/// (an MCP server down) waits before it lets the run go, so that the run
/// is not claimed and failed again at once, in a loop.
const BUILD_RETRY_PAUSE: Duration = Duration::from_secs(2);

/// The agent built for a drive; a build that failed for a passing reason
/// returns its error only after [`BUILD_RETRY_PAUSE`].
async fn paced<T>(built: Result<T, OperateError>) -> Result<T, OperateError> {
    if let Err(error) = &built
        && !permanent(error)
    {
        tracing::warn!(%error, "cannot build the run's agent now; releasing the run after a pause");
        tokio::time::sleep(BUILD_RETRY_PAUSE).await;
    }
    built
}

struct Forget(Arc<Operator>, RunId);

impl Drop for Forget {
    fn drop(&mut self) {
        self.0.forget(self.1);
    }
}

/// Extends this process's leases every third of their length, and stops
/// the drives of runs whose lease was lost.
async fn heartbeat(store: Arc<dyn Store>, held: Held, ttl: Duration) {
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    let mut ticks = tokio::time::interval((ttl / 3).max(Duration::from_millis(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let sent = tokio::time::Instant::now();
        let kept = match store.heartbeat(store.owner(), ttl_ms, now_ms()).await {
            Ok(kept) => kept,
            Err(error) => {
                heartbeat_failed(&error);
                continue;
            }
        };
        let Ok(mut held) = held.lock() else { continue };
        let lost: Vec<RunId> = held
            .iter()
            .filter(|(run, (_, claimed_at))| *claimed_at < sent && !kept.contains(run))
            .map(|(run, _)| *run)
            .collect();
        for run in lost {
            if let Some((task, _)) = held.remove(&run) {
                tracing::warn!(%run, "lost the lease on a run (another worker claimed it); stopping it here");
                task.abort();
            }
        }
    }
}

fn heartbeat_failed(error: &JournalError) {
    tracing::warn!(%error, "heartbeat failed; leases run out unless the next one succeeds");
}
