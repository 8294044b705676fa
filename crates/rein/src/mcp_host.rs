//! The agents `rein mcp serve` offers to MCP clients, each as a tool, run
//! through an [`Operator`] like any other run: journaled in the store,
//! bounded by the agent's limits, stopped by the kill switch, and paused —
//! not waited out — when a call needs a person's approval (the client gets
//! the run id and what the run waits for, and whoever decides with `rein
//! approvals` or the HTTP API drives it on).
//!
//! The protocol side is `rein_mcp::serve_stdio` / `serve_http`; this is
//! only which agents there are and how a call becomes a run.

use crate::load::AgentDefinition;
use crate::operate::{OperateError, Operator, outcome_json};
use async_trait::async_trait;
use rein_core::report_line;
use rein_mcp::{AgentHost, HostError, HostedAgent, HostedRun};
use rein_runtime::{Agent, CancellationToken, Hooks, RunInfo, Runtime};
use rein_types::{
    AgentVersion, Event, EventKind, PendingKind, RunId, RunOutcome, RunStatus, TenantId, ToolReport, ToolReporter,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Which agents a host serves.
pub struct McpHost {
    operator: Arc<Operator>,
    runtime: Runtime,
    /// Agents given as files, built once, run as `tenant`'s.
    fixed: Vec<(Arc<Agent>, TenantId)>,
    /// Also serve the agents deployed in the store (each run as the tenant
    /// owning it), at the version deployed when the call comes.
    deployed: bool,
}

impl McpHost {
    /// A host that serves nothing yet; `runtime` should journal to the
    /// operator's store ([`Operator::runtime`]) and have no approver, so
    /// runs needing approval pause instead of waiting.
    pub fn new(operator: Arc<Operator>, runtime: Runtime) -> Self {
        Self { operator, runtime, fixed: Vec::new(), deployed: false }
    }

    /// Serves the agent `definition` describes, run as `tenant`'s. Registers
    /// the definition, so that a run paused for approval can be taken up by
    /// any process sharing the store.
    pub async fn add(&mut self, tenant: &TenantId, definition: &AgentDefinition) -> Result<(), OperateError> {
        self.operator.register(tenant, definition).await?;
        let agent = self.operator.build(definition).await?;
        self.fixed.retain(|(a, _)| a.name() != agent.name());
        self.fixed.push((agent, tenant.clone()));
        Ok(())
    }

    /// Also serves the agents deployed in the store (an agent given with
    /// [`McpHost::add`] wins over a deployed one of the same name).
    pub fn with_deployed(mut self) -> Self {
        self.deployed = true;
        self
    }

    /// The agent `name` and whose runs it makes.
    async fn resolve(&self, name: &str) -> Result<(Arc<Agent>, TenantId), HostError> {
        if let Some((agent, tenant)) = self.fixed.iter().find(|(a, _)| a.name() == name) {
            return Ok((agent.clone(), tenant.clone()));
        }
        if self.deployed {
            let record = self.operator.store().agent(name).await.map_err(failed)?;
            if let Some(record) = record
                && let Some(version) = record.active_version
            {
                let version = AgentVersion(version);
                let Some(stored) = self.operator.store().agent_definition(name, &version).await.map_err(failed)? else {
                    return Err(HostError::Failed(format!(
                        "agent `{name}` version {} is deployed but not registered",
                        version.short()
                    )));
                };
                let definition = AgentDefinition::from_json(stored).map_err(failed)?;
                let agent = self.operator.build(&definition).await.map_err(failed)?;
                return Ok((agent, record.tenant));
            }
        }
        Err(HostError::UnknownAgent(name.to_owned()))
    }
}

fn failed(error: impl std::fmt::Display) -> HostError {
    HostError::Failed(error.to_string())
}

#[async_trait]
impl AgentHost for McpHost {
    async fn agents(&self) -> Result<Vec<HostedAgent>, HostError> {
        let mut agents: Vec<HostedAgent> = self
            .fixed
            .iter()
            .map(|(agent, _)| HostedAgent {
                name: agent.name().to_owned(),
                description: agent.spec().description.clone(),
            })
            .collect();
        if self.deployed {
            for record in self.operator.store().agents().await.map_err(failed)? {
                let Some(version) = record.active_version else { continue };
                if agents.iter().any(|a| a.name == record.name) {
                    continue;
                }
                // The description without building the agent (which would
                // start its MCP servers just to list it).
                let stored = self
                    .operator
                    .store()
                    .agent_definition(&record.name, &AgentVersion(version))
                    .await
                    .map_err(failed)?;
                let description = stored
                    .and_then(|stored| AgentDefinition::from_json(stored).ok())
                    .map(|definition| definition.spec.description)
                    .unwrap_or_default();
                agents.push(HostedAgent { name: record.name, description });
            }
        }
        Ok(agents)
    }

    async fn run(
        &self,
        name: &str,
        input: String,
        cancel: CancellationToken,
        progress: ToolReporter,
    ) -> Result<HostedRun, HostError> {
        let (agent, tenant) = self.resolve(name).await?;
        let runtime = match progress.is_listening() {
            true => self.runtime.clone().with_hooks(Arc::new(Progress { reporter: progress, told: AtomicU64::new(0) })),
            false => self.runtime.clone(),
        };
        let outcome = self
            .operator
            .start_for(&tenant, &runtime, &agent, input, RunId::new(), Some(cancel))
            .await
            .map_err(failed)?;
        Ok(hosted(&outcome))
    }
}

/// Tells an MCP client what its run is doing, one line per step, tool call
/// and report.
struct Progress {
    reporter: ToolReporter,
    told: AtomicU64,
}

impl Hooks for Progress {
    fn on_event(&self, _run: RunInfo<'_>, event: &Event) {
        let message = match &event.kind {
            EventKind::RunStarted { .. } => format!("run {} started", event.run_id),
            EventKind::ModelRequested { step, .. } => format!("step {step}: asking the model"),
            EventKind::ToolCallRequested { tool, .. } => format!("calling {tool}"),
            EventKind::ToolCallReported { tool, report, .. } => format!("{tool}: {}", report_line(report)),
            EventKind::ToolCallExecuted { tool, outcome, .. } if outcome.is_ok() => format!("{tool} done"),
            EventKind::ToolCallExecuted { tool, .. } => format!("{tool} failed"),
            EventKind::ApprovalRequested { tool, .. } => format!("{tool} needs approval"),
            _ => return,
        };
        let told = self.told.fetch_add(1, Ordering::Relaxed) + 1;
        self.reporter.report(ToolReport::Progress { progress: told as f64, total: None, message: Some(message) });
    }
}

/// A run's outcome for an MCP client: the `rein run --json` object as
/// structured content, and text for the model or person calling.
pub fn hosted(outcome: &RunOutcome) -> HostedRun {
    HostedRun {
        text: run_text(outcome),
        structured: outcome_json(outcome),
        is_error: matches!(outcome.status, RunStatus::Failed | RunStatus::Cancelled),
    }
}

fn run_text(outcome: &RunOutcome) -> String {
    let footer = format!("(rein run {}: {})", outcome.run_id, outcome.status);
    let body = match outcome.status {
        RunStatus::Succeeded => outcome.output.clone().unwrap_or_default(),
        RunStatus::WaitingApproval | RunStatus::NeedsReconciliation => {
            let waits: Vec<String> = outcome
                .pending
                .iter()
                .map(|p| match p.kind {
                    PendingKind::Approval => format!("approval of `{}` (approval id {})", p.tool, p.id),
                    PendingKind::Reconciliation => format!("reconciliation of `{}` ({})", p.tool, p.id),
                })
                .collect();
            format!(
                "{} The run is paused and waits for a person: {}. It goes on once someone decides (`rein approvals` \
                 or the HTTP API); ask about run {} later.",
                outcome.explanation,
                waits.join("; "),
                outcome.run_id
            )
        }
        _ => match &outcome.output {
            Some(output) if !output.is_empty() => format!("{}\n\nOutput: {output}", outcome.explanation),
            _ => outcome.explanation.clone(),
        },
    };
    if body.is_empty() { footer } else { format!("{body}\n\n{footer}") }
}
