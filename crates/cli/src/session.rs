//! What every command that drives runs shares: the store, a runtime that
//! names this process in the journal, the stop watcher that carries the kill
//! switch and cancel requests to this process's runs, and the rules for
//! taking up a run another process started.

use crate::approve::TerminalApprover;
use crate::progress::Progress;
use anyhow::Context;
use rein::store::SqliteJournal;
use rein::{Agent, AgentDefinition, CancellationToken, Operator, ResumeAction, RunId, RunOutcome, Runtime, Store};
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

/// How a command shows a run it drives.
#[derive(Debug, Clone, Copy, Default)]
pub struct Display {
    pub json: bool,
    pub quiet: bool,
}

/// Opens the store `db` names: a PostgreSQL database for a
/// `postgres://` or `postgresql://` URL, an SQLite file otherwise.
pub async fn open_store(db: &Path) -> anyhow::Result<Arc<dyn Store>> {
    if let Some(url) = db.to_str().filter(|db| is_url(db)) {
        #[cfg(feature = "postgres")]
        {
            let store = rein_store_pg::PgStore::connect(url).await.context("cannot open the PostgreSQL store")?;
            return Ok(Arc::new(store));
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            anyhow::bail!(
                "this rein was built without PostgreSQL support (the `postgres` feature); use an SQLite file"
            );
        }
    }
    let journal = SqliteJournal::open(db).with_context(|| format!("cannot open the journal at {}", db.display()))?;
    Ok(Arc::new(journal))
}

/// Whether `db` names a PostgreSQL server rather than an SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Whether there is a store at `db` to read: a file that exists, or a server
/// URL (whose store is created on first connection). Says why not.
pub fn store_exists(db: &Path) -> bool {
    if db.to_str().is_some_and(is_url) || db.exists() {
        return true;
    }
    eprintln!("error: no journal at {} (no runs yet, or pass --db / REIN_DB)", db.display());
    false
}

pub struct Session {
    pub store: Arc<dyn Store>,
    pub client: reqwest::Client,
    operator: Operator,
    cancel: CancellationToken,
}

impl Session {
    /// Opens the store; Ctrl-C cancels every run this process drives.
    pub async fn open(db: &Path) -> anyhow::Result<Self> {
        let store = open_store(db).await?;
        let client = rein::providers::default_client().context("could not build the HTTP client")?;
        let operator = Operator::new(store.clone(), client.clone());
        let cancel = CancellationToken::new();
        let on_interrupt = cancel.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                on_interrupt.cancel();
            }
        });
        Ok(Self { store, client, operator, cancel })
    }

    /// A runtime journaling to the store as this process, with live
    /// progress and inline approvals on a terminal. Returns the progress
    /// hook to ask whether the answer was streamed.
    pub fn runtime(&self, agent: &Agent, display: Display) -> (Runtime, Option<Arc<Progress>>) {
        let interactive = std::io::stderr().is_terminal();
        let mut runtime = self.operator.runtime();
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

    pub fn operator(&self) -> &Operator {
        &self.operator
    }

    /// Registers the definition under its name and version, so that any
    /// process can rebuild this exact agent to resume its runs.
    pub async fn register(&self, definition: &AgentDefinition) -> anyhow::Result<()> {
        self.operator
            .register(&rein::TenantId::default(), definition)
            .await
            .context("could not register the agent version")
    }

    /// Starts a run and drives it to its end or its first suspension.
    pub async fn start(&self, agent: &Agent, input: String, display: Display) -> anyhow::Result<(RunOutcome, bool)> {
        let (runtime, progress) = self.runtime(agent, display);
        let outcome = self.operator.start(&runtime, agent, input, RunId::new(), Some(self.cancel.clone())).await?;
        Ok((outcome.clone(), streamed(&outcome, progress.as_deref())))
    }

    /// Takes `run` up and drives it with `action` to its end or its next
    /// suspension (see [`Operator::resume`]).
    pub async fn resume(
        &self,
        run: RunId,
        action: ResumeAction,
        force: bool,
        display: Display,
    ) -> anyhow::Result<(RunOutcome, bool)> {
        let agent = self.operator.take_up(run, force).await?;
        let (runtime, progress) = self.runtime(&agent, display);
        let outcome = self.operator.resume_with(&runtime, &agent, run, action, Some(self.cancel.clone())).await?;
        Ok((outcome.clone(), streamed(&outcome, progress.as_deref())))
    }
}

/// Whether the run's answer already went to stdout as it streamed.
fn streamed(outcome: &RunOutcome, progress: Option<&Progress>) -> bool {
    outcome.output.as_deref().is_some_and(|o| progress.is_some_and(|p| p.streamed_answer(o)))
}

pub fn now_ms() -> u64 {
    rein::now_ms()
}

/// Who is acting, for the journal: `--as`, else the login name.
pub fn who(given: Option<&str>) -> String {
    given
        .map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .or_else(|| std::env::var("USERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}
