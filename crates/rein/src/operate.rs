//! Operating on runs from any process: starting them with the kill switch
//! checked, taking up runs another process started (after a crash, or to act
//! on a suspended one), and the rule for when that is allowed. Shared by the
//! CLI and the server, so both behave the same.

use crate::load::{AgentDefinition, LoadError};
use rein_runtime::{Agent, CancellationToken, ResumeAction, RunOptions, Runtime, RuntimeError, StopWatcher};
use rein_store::{Liveness, owner_liveness};
use rein_types::{
    AgentVersion, ControlStore, EventKind, Journal, JournalError, PendingAction, PendingKind, RunFilter, RunId,
    RunOutcome, RunStatus, Store, TenantId, rollback_target,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// How often a process looks for stop requests concerning its runs.
const STOP_POLL: Duration = Duration::from_millis(250);
/// Agent versions kept built per process. Each may hold MCP server
/// processes; the least recently used version beyond this is let go (runs
/// still using it keep it until they end).
const MAX_BUILT_VERSIONS: usize = 16;

/// Why an operation on a run could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum OperateError {
    #[error(transparent)]
    Store(#[from] JournalError),
    #[error("run {0} has no run_started event")]
    NotStarted(RunId),
    #[error(
        "agent `{agent}` version {version} is not registered in this store, so run {run} cannot be rebuilt \
         (runs started through the library must register their agent; `rein run` and `rein serve` do)"
    )]
    NotRegistered { agent: String, version: String, run: RunId },
    #[error("agent `{0}` is disabled (the kill switch); enable it to start runs")]
    Disabled(String),
    #[error("run {run} is being driven by another live process ({owner}); decide or cancel there, or cancel it")]
    Held { run: RunId, owner: String },
    #[error(
        "run {run} is held by {owner} on another machine, whose liveness cannot be checked from here; \
         force it if you know that process is gone"
    )]
    HeldElsewhere { run: RunId, owner: String },
    #[error("no approval request `{0}` is waiting (decided already, expired and resumed, or the run ended)")]
    NoSuchApproval(String),
    #[error("run {run} waits on several approvals; give the full approval id ({ids})")]
    AmbiguousApproval { run: RunId, ids: String },
    #[error("`{0}` is not an approval id (RUN:STEP:INDEX)")]
    BadApprovalId(String),
    #[error("agent `{0}` has no earlier deployed version to roll back to")]
    NothingToRollBack(String),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// A process's handle for driving runs against a [`Store`].
pub struct Operator {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    watcher: StopWatcher,
    /// Runs this process is driving now. They hold leases in this
    /// process's name, so the lease alone cannot tell them from runs a
    /// failed drive left behind.
    driving: std::sync::Mutex<std::collections::HashSet<RunId>>,
    /// Agents built from definitions, by name and version, shared by every
    /// run of that version in this process: building one starts its MCP
    /// servers, which is done once, not per run.
    built: tokio::sync::Mutex<BuiltAgents>,
}

/// Built agent versions, each built at most once at a time (a cell stays
/// empty when its build fails, so the next run tries again).
#[derive(Default)]
struct BuiltAgents {
    /// By name and version: the cell, and when it was last asked for.
    cells: HashMap<(String, String), (BuiltCell, u64)>,
    uses: u64,
}

type BuiltCell = Arc<tokio::sync::OnceCell<Arc<Agent>>>;

impl BuiltAgents {
    /// The cell for `key`, marked used now; the least recently used other
    /// version is let go beyond [`MAX_BUILT_VERSIONS`].
    fn cell(&mut self, key: (String, String)) -> BuiltCell {
        self.uses += 1;
        let uses = self.uses;
        let cell = {
            let entry = self.cells.entry(key.clone()).or_default();
            entry.1 = uses;
            entry.0.clone()
        };
        if self.cells.len() > MAX_BUILT_VERSIONS
            && let Some(oldest) =
                self.cells.iter().filter(|(k, _)| **k != key).min_by_key(|(_, (_, used))| *used).map(|(k, _)| k.clone())
        {
            self.cells.remove(&oldest);
        }
        cell
    }
}

impl Operator {
    /// Must be called within a tokio runtime: it starts polling the store
    /// for stop requests concerning this process's runs.
    pub fn new(store: Arc<dyn Store>, client: reqwest::Client) -> Self {
        let watcher = StopWatcher::start(store.clone() as Arc<dyn ControlStore>, STOP_POLL);
        Self { store, client, watcher, driving: Default::default(), built: Default::default() }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// A runtime journaling to the store as this process; add hooks and an
    /// approver to taste.
    pub fn runtime(&self) -> Runtime {
        Runtime::new(self.store.clone() as Arc<dyn Journal>).with_identity(self.store.owner())
    }

    /// Options for driving `run`: `cancel`, and the store's stop requests.
    /// Call [`Operator::forget`] when the run returns.
    pub fn options(&self, run: RunId, cancel: Option<CancellationToken>) -> RunOptions {
        if let Ok(mut driving) = self.driving.lock() {
            driving.insert(run);
        }
        RunOptions { run_id: Some(run), cancel, stop: Some(self.watcher.watch(run)), tenant: None }
    }

    pub fn forget(&self, run: RunId) {
        if let Ok(mut driving) = self.driving.lock() {
            driving.remove(&run);
        }
        self.watcher.forget(run);
    }

    /// Registers the definition under its name and version, so that any
    /// process can rebuild this exact agent to resume its runs.
    /// The first tenant to register a name owns it; another tenant's
    /// registration is refused.
    pub async fn register(&self, tenant: &TenantId, definition: &AgentDefinition) -> Result<(), OperateError> {
        let version = definition.spec.version();
        self.store.register_agent(tenant, &definition.spec.name, &version, &definition.to_json(), now_ms()).await?;
        Ok(())
    }

    /// Deploys `version` of agent `name` (registered before), recording who
    /// did it for roll-backs.
    pub async fn activate(&self, name: &str, version: &AgentVersion, by: &str) -> Result<(), OperateError> {
        self.store.activate_agent(name, version, by, now_ms()).await?;
        Ok(())
    }

    /// Deploys the version that was active before the current one.
    pub async fn roll_back(&self, name: &str, by: &str) -> Result<AgentVersion, OperateError> {
        let history = self.store.activations(name).await?;
        let target = rollback_target(&history).ok_or_else(|| OperateError::NothingToRollBack(name.to_owned()))?;
        let version = AgentVersion(target.to_owned());
        self.activate(name, &version, by).await?;
        Ok(version)
    }

    /// Starts a run of `agent` on `input` as `run`, unless the agent is
    /// disabled, and drives it to its end or its first suspension.
    pub async fn start(
        &self,
        runtime: &Runtime,
        agent: &Agent,
        input: String,
        run: RunId,
        cancel: Option<CancellationToken>,
    ) -> Result<RunOutcome, OperateError> {
        self.start_for(&TenantId::default(), runtime, agent, input, run, cancel).await
    }

    /// [`Operator::start`] for `tenant`: the run is journaled as theirs.
    pub async fn start_for(
        &self,
        tenant: &TenantId,
        runtime: &Runtime,
        agent: &Agent,
        input: String,
        run: RunId,
        cancel: Option<CancellationToken>,
    ) -> Result<RunOutcome, OperateError> {
        if !self.store.agent_enabled(agent.name()).await? {
            return Err(OperateError::Disabled(agent.name().to_owned()));
        }
        let options = RunOptions { tenant: Some(tenant.clone()), ..self.options(run, cancel) };
        let result = runtime.run_with(agent, input, options).await;
        self.forget(run);
        Ok(result?)
    }

    /// The agent `definition` describes, built once per process and
    /// version: later calls for the same name and version share it (and
    /// its MCP servers). A failed build is not kept.
    pub async fn build(&self, definition: &AgentDefinition) -> Result<Arc<Agent>, LoadError> {
        let key = (definition.spec.name.clone(), definition.spec.version().0);
        let cell = self.built.lock().await.cell(key);
        let agent = cell.get_or_try_init(|| async { definition.build(&self.client).await.map(Arc::new) }).await?;
        Ok(agent.clone())
    }

    /// The agent a run started with, rebuilt from its registered definition.
    pub async fn agent_of(&self, run: RunId) -> Result<Arc<Agent>, OperateError> {
        let events = self.store.events(run).await?;
        let Some(EventKind::RunStarted { agent, agent_version, .. }) = events.first().map(|e| &e.kind) else {
            return Err(OperateError::NotStarted(run));
        };
        self.registered_agent(agent, agent_version, run).await
    }

    /// The agent `name` at `version`, built from its registered definition
    /// (for `run`, which the error names), or shared with the runs of that
    /// version this process built it for before (see [`Operator::build`]).
    pub async fn registered_agent(
        &self,
        name: &str,
        version: &AgentVersion,
        run: RunId,
    ) -> Result<Arc<Agent>, OperateError> {
        let Some(definition) = self.store.agent_definition(name, version).await? else {
            return Err(OperateError::NotRegistered {
                agent: name.to_owned(),
                version: version.0.chars().take(12).collect(),
                run,
            });
        };
        Ok(self.build(&AgentDefinition::from_json(definition)?).await?)
    }

    /// Whether this process may take `run` up: nobody holds it, or its
    /// holder is a process on this machine that is gone. A holder on
    /// another machine is respected unless `force`.
    pub async fn check_free(&self, run: RunId, force: bool) -> Result<(), OperateError> {
        // A run a task of this process drives is held, whatever the store
        // says yet (its first steps may not be committed).
        let driven = self.driving.lock().map(|driving| driving.contains(&run)).unwrap_or(true);
        if driven {
            return Err(OperateError::Held { run, owner: self.store.owner().to_owned() });
        }
        let Some(lease) = self.store.lease(run).await? else { return Ok(()) };
        if lease.owner == self.store.owner() {
            // Left behind by a drive of this process that failed.
            return Ok(());
        }
        match owner_liveness(&lease.owner) {
            Liveness::Dead => Ok(()),
            Liveness::Alive => Err(OperateError::Held { run, owner: lease.owner }),
            Liveness::Unknown if force => Ok(()),
            Liveness::Unknown => Err(OperateError::HeldElsewhere { run, owner: lease.owner }),
        }
    }

    /// Takes `run` up and drives it with `action` to its end or its next
    /// suspension. A cancel request or a disabled agent wins over the
    /// action: the run is cancelled instead of taking another step.
    pub async fn resume(
        &self,
        runtime: &Runtime,
        run: RunId,
        action: ResumeAction,
        force: bool,
        cancel: Option<CancellationToken>,
    ) -> Result<RunOutcome, OperateError> {
        let agent = self.take_up(run, force).await?;
        self.resume_with(runtime, &agent, run, action, cancel).await
    }

    /// The first half of [`Operator::resume`]: checks that `run` may be
    /// taken up here and rebuilds its agent, for callers that need the agent
    /// to set up their runtime (the CLI's progress display) before driving.
    pub async fn take_up(&self, run: RunId, force: bool) -> Result<Arc<Agent>, OperateError> {
        self.check_free(run, force).await?;
        self.agent_of(run).await
    }

    /// The second half of [`Operator::resume`]: drives `run` with `agent`
    /// (from [`Operator::take_up`]).
    pub async fn resume_with(
        &self,
        runtime: &Runtime,
        agent: &Agent,
        run: RunId,
        action: ResumeAction,
        cancel: Option<CancellationToken>,
    ) -> Result<RunOutcome, OperateError> {
        let action = match action {
            cancel @ ResumeAction::Cancel { .. } => cancel,
            action => match self.store.stop_requests(&[run]).await?.into_iter().next() {
                Some((_, reason)) => ResumeAction::Cancel { reason },
                None if !self.store.agent_enabled(agent.name()).await? => {
                    ResumeAction::Cancel { reason: format!("agent {} is disabled", agent.name()) }
                }
                None => action,
            },
        };
        let result = runtime.resume(agent, run, action, self.options(run, cancel)).await;
        self.forget(run);
        Ok(result?)
    }
}

/// An approval request waiting for a person, with its run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct WaitingApproval {
    pub run_id: RunId,
    pub agent: String,
    #[serde(flatten)]
    pub action: PendingAction,
}

impl Operator {
    /// Approval requests waiting for a decision, oldest run first: those of
    /// suspended runs, and those a live process is asking about on a
    /// terminal.
    /// Only `tenant`'s, when given.
    pub async fn waiting_approvals(&self, tenant: Option<&TenantId>) -> Result<Vec<WaitingApproval>, OperateError> {
        let mut runs = Vec::new();
        for status in [RunStatus::WaitingApproval, RunStatus::Running] {
            let filter = RunFilter { status: Some(status), tenant: tenant.cloned(), ..RunFilter::default() };
            runs.extend(self.store.runs(&filter).await?);
        }
        runs.sort_by_key(|r| r.started_at_ms);
        let mut out = Vec::new();
        for run in runs {
            let events = self.store.events(run.run_id).await?;
            for action in rein_core::pending_actions(&events) {
                if action.kind == PendingKind::Approval {
                    out.push(WaitingApproval { run_id: run.run_id, agent: run.agent.clone(), action });
                }
            }
        }
        Ok(out)
    }

    /// The waiting request `id` names: `RUN:STEP:INDEX` (the run may be a
    /// unique prefix; step and index must match exactly), or a run (prefix)
    /// with exactly one request waiting.
    pub async fn find_approval(&self, id: &str) -> Result<WaitingApproval, OperateError> {
        let (run_part, call) = match id.split_once(':') {
            None => (id, None),
            Some((run, rest)) => {
                let call = step_and_index(rest).ok_or_else(|| OperateError::BadApprovalId(id.to_owned()))?;
                (run, Some(call))
            }
        };
        let run = self.store.resolve(run_part).await.map_err(|error| match error {
            JournalError::NotFound(_) => OperateError::NoSuchApproval(id.to_owned()),
            other => other.into(),
        })?;
        let events = self.store.events(run).await?;
        let agent = match events.first().map(|e| &e.kind) {
            Some(EventKind::RunStarted { agent, .. }) => agent.clone(),
            _ => return Err(OperateError::NotStarted(run)),
        };
        let mut matching: Vec<PendingAction> = rein_core::pending_actions(&events)
            .into_iter()
            .filter(|a| a.kind == PendingKind::Approval)
            .filter(|a| call.is_none_or(|call| step_and_index_of(&a.id) == Some(call)))
            .collect();
        match matching.len() {
            0 => Err(OperateError::NoSuchApproval(id.to_owned())),
            1 => Ok(WaitingApproval { run_id: run, agent, action: matching.remove(0) }),
            _ => Err(OperateError::AmbiguousApproval {
                run,
                ids: matching.iter().map(|a| a.id.as_str()).collect::<Vec<_>>().join(", "),
            }),
        }
    }
}

/// `STEP:INDEX`, the end of an approval id or idempotency key.
pub fn step_and_index(text: &str) -> Option<(u32, u32)> {
    let (step, index) = text.split_once(':')?;
    Some((step.parse().ok()?, index.parse().ok()?))
}

/// The step and index of a full `RUN:STEP:INDEX` key.
pub fn step_and_index_of(key: &str) -> Option<(u32, u32)> {
    let mut parts = key.rsplitn(3, ':');
    let index = parts.next()?.parse().ok()?;
    let step = parts.next()?.parse().ok()?;
    Some((step, index))
}

/// A run's result as one JSON object with stable keys: what `rein run
/// --json` prints and what the HTTP API answers.
pub fn outcome_json(outcome: &RunOutcome) -> serde_json::Value {
    serde_json::json!({
        "run_id": outcome.run_id.to_string(),
        "agent": outcome.agent,
        "agent_version": outcome.agent_version.0,
        "status": outcome.status.as_str(),
        "output": outcome.output,
        "reason": outcome.reason,
        "explanation": outcome.explanation,
        "limit": outcome.limit.map(|l| l.as_str()),
        "steps": outcome.steps,
        "usage": {
            "input_tokens": outcome.usage.input_tokens,
            "output_tokens": outcome.usage.output_tokens,
            "cached_input_tokens": outcome.usage.cached_input_tokens,
        },
        "cost_usd": outcome.cost_usd,
        "duration_ms": outcome.duration_ms,
        "partial_results": outcome.partial_results,
        "unbacked_claims": outcome.unbacked_claims,
        "pending": outcome.pending,
    })
}

/// Unix time in milliseconds.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
