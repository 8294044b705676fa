//! What every command that drives runs shares: the store, a runtime that
//! names this process in the journal, the stop watcher that carries the kill
//! switch and cancel requests to this process's runs, and the rules for
//! taking up a run another process started.

use crate::approve::TerminalApprover;
use crate::progress::Progress;
use anyhow::{Context, bail};
use rein::store::{Liveness, SqliteJournal, owner_liveness};
use rein::{
    Agent, AgentDefinition, CancellationToken, EventKind, ResumeAction, RunId, RunOptions, RunOutcome, Runtime,
    StopWatcher, Store,
};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// How often a process looks for stop requests concerning its runs.
const STOP_POLL: Duration = Duration::from_millis(250);

/// How a command shows a run it drives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Display {
    pub json: bool,
    pub quiet: bool,
}

/// Opens the store `db` names.
pub fn open_store(db: &Path) -> anyhow::Result<Arc<dyn Store>> {
    let journal = SqliteJournal::open(db).with_context(|| format!("cannot open the journal at {}", db.display()))?;
    Ok(Arc::new(journal))
}

pub struct Session {
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    watcher: StopWatcher,
    cancel: CancellationToken,
}

impl Session {
    /// Opens the store; Ctrl-C cancels every run this process drives.
    pub fn open(db: &Path) -> anyhow::Result<Self> {
        let store =
            Arc::new(SqliteJournal::open(db).with_context(|| format!("cannot open the journal at {}", db.display()))?);
        let client = rein::providers::default_client().context("could not build the HTTP client")?;
        let watcher = StopWatcher::start(store.clone() as Arc<dyn rein::ControlStore>, STOP_POLL);
        let cancel = CancellationToken::new();
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_interrupt.cancel();
            }
        });
        Ok(Self { store, client, watcher, cancel })
    }

    /// A runtime journaling to the store as this process, with live
    /// progress and inline approvals on a terminal. Returns the progress
    /// hook to ask whether the answer was streamed.
    pub fn runtime(&self, agent: &Agent, display: Display) -> (Runtime, Option<Arc<Progress>>) {
        let interactive = std::io::stderr().is_terminal();
        let mut runtime = Runtime::new(self.store.clone() as Arc<dyn rein::Journal>).with_identity(self.store.owner());
        let mut progress = None;
        if interactive && !display.json && !display.quiet {
            // On a terminal the model's text streams to stdout as it arrives.
            let stream_text = std::io::stdout().is_terminal();
            let hook = Arc::new(Progress::new(agent.spec().price.is_some(), stream_text));
            runtime = runtime.with_hooks(hook.clone());
            progress = Some(hook);
        }
        if interactive && std::io::stdin().is_terminal() {
            runtime = runtime.with_approver(Arc::new(TerminalApprover));
        }
        (runtime, progress)
    }

    /// Options for driving `run`: Ctrl-C and the store's stop requests.
    pub fn options(&self, run: RunId) -> RunOptions {
        RunOptions { run_id: Some(run), cancel: Some(self.cancel.clone()), stop: Some(self.watcher.watch(run)) }
    }

    pub fn finished(&self, run: RunId) {
        self.watcher.forget(run);
    }

    /// Registers the definition under its name and version, so that any
    /// process can rebuild this exact agent to resume its runs.
    pub async fn register(&self, definition: &AgentDefinition) -> anyhow::Result<()> {
        let version = definition.spec.version();
        self.store
            .register_agent(&definition.spec.name, &version, &definition.to_json(), now_ms())
            .await
            .context("could not register the agent version")
    }

    /// The agent a run started with, rebuilt from its registered definition.
    pub async fn agent_of(&self, run: RunId) -> anyhow::Result<Agent> {
        let events = self.store.events(run).await?;
        let Some(EventKind::RunStarted { agent, agent_version, .. }) = events.first().map(|e| &e.kind) else {
            bail!("run {run} has no run_started event");
        };
        let Some(definition) = self.store.agent_definition(agent, agent_version).await? else {
            bail!(
                "agent `{agent}` version {} is not registered in this journal, so run {run} cannot be rebuilt \
                 (runs started through the library must register their agent; `rein run` does)",
                short(&agent_version.0)
            );
        };
        let definition = AgentDefinition::from_json(definition)?;
        Ok(definition.build(&self.client)?)
    }

    /// Whether this process may take `run` up: nobody holds it, or its
    /// holder is a process on this machine that is gone. A holder on
    /// another machine is respected unless `force`.
    pub async fn check_free(&self, run: RunId, force: bool) -> anyhow::Result<()> {
        let Some(lease) = self.store.lease(run).await? else { return Ok(()) };
        if lease.owner == self.store.owner() {
            return Ok(());
        }
        match owner_liveness(&lease.owner) {
            Liveness::Dead => Ok(()),
            Liveness::Alive => bail!(
                "run {run} is being driven by another live process ({}); decide or cancel there, or use `rein runs cancel`",
                lease.owner
            ),
            Liveness::Unknown if force => Ok(()),
            Liveness::Unknown => bail!(
                "run {run} is held by {} on another machine, whose liveness cannot be checked from here; \
                 pass --force if you know it is gone",
                lease.owner
            ),
        }
    }

    /// Takes `run` up and drives it with `action` to its end or its next
    /// suspension. A run whose agent was disabled is cancelled instead.
    pub async fn resume(
        &self,
        run: RunId,
        action: ResumeAction,
        force: bool,
        display: Display,
    ) -> anyhow::Result<(RunOutcome, bool)> {
        self.check_free(run, force).await?;
        let agent = self.agent_of(run).await?;
        // A cancel request or a disabled agent wins over anything else: the
        // run must not take another step.
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
        let (runtime, progress) = self.runtime(&agent, display);
        let result = runtime.resume(&agent, run, action, self.options(run)).await;
        self.finished(run);
        let outcome = result?;
        let streamed =
            outcome.output.as_deref().is_some_and(|o| progress.as_ref().is_some_and(|p| p.streamed_answer(o)));
        Ok((outcome, streamed))
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Who is acting, for the journal: `--as`, else the login name.
pub fn who(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}
