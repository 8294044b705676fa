//! `rein worker`: claims queued runs from the store and drives them, any
//! number of processes on any machines sharing one PostgreSQL store; and
//! `rein runs submit`, which queues a run for them.

use crate::cmd_run::{read_input, usage_error};
use crate::session::open_store;
use anyhow::Context;
use clap::Args;
use rein::worker::{Worker, WorkerConfig};
use rein::{Operator, Overrides, QueuedRun, RunId, TenantId};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[derive(Args)]
pub struct WorkerArgs {
    /// Runs driven at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// How long a claim lasts without a heartbeat (heartbeats go every
    /// third of it): how soon other workers take over this one's runs if it
    /// dies. Worker clocks must agree to well within it.
    #[arg(long, default_value = "15s", value_parser = duration)]
    lease_ttl: Duration,
    /// After SIGTERM or Ctrl-C, how long runs in flight may go on before
    /// they are stopped and handed back to the queue.
    #[arg(long, default_value = "30s", value_parser = duration)]
    drain_timeout: Duration,
}

/// `30s`, `500ms`, `2m`: as agent files write durations.
pub fn duration(text: &str) -> Result<Duration, String> {
    rein::config::parse_duration_ms(text).map(Duration::from_millis)
}

impl WorkerArgs {
    pub fn config(&self) -> WorkerConfig {
        WorkerConfig { concurrency: self.concurrency, lease_ttl: self.lease_ttl, drain_timeout: self.drain_timeout }
    }
}

pub async fn run(args: WorkerArgs, db: &Path) -> anyhow::Result<u8> {
    if !db.to_str().is_some_and(crate::session::is_url) {
        eprintln!(
            "note: workers on an SQLite file share it only with processes on this machine; \
             use PostgreSQL (--db postgres://...) for workers on several machines"
        );
    }
    if args.concurrency == 0 {
        eprintln!("error: --concurrency must be at least 1");
        return Ok(crate::EXIT_USAGE);
    }
    let store = open_store(db).await?;
    let client = rein::providers::default_client().context("could not build the HTTP client")?;
    let operator = Arc::new(Operator::new(store.clone(), client));
    eprintln!(
        "rein worker {}: claiming up to {} runs at once (lease {:?}, drain {:?})",
        store.owner(),
        args.concurrency,
        args.lease_ttl,
        args.drain_timeout
    );
    let runtime = operator.runtime();
    let report = Worker::new(operator, runtime, args.config()).run(crate::cmd_serve::shutdown()).await;
    eprintln!(
        "rein worker: stopped; {} claimed ({} taken over), {} done, {} released, {} lost to other workers",
        report.claimed, report.taken_over, report.completed, report.released, report.lost
    );
    Ok(0)
}

#[derive(Args)]
pub struct SubmitArgs {
    /// The agent file (TOML); its version is registered in the store.
    agent: PathBuf,
    /// The input: text, `@FILE` to read a file, or `@-` for standard input.
    #[arg(long, short)]
    input: String,
    /// The tenant the run belongs to.
    #[arg(long, default_value = TenantId::DEFAULT)]
    tenant: String,
    /// Print `{"run_id": ...}` instead of the bare id.
    #[arg(long)]
    json: bool,
}

/// Registers the agent's version and queues a run of it for a worker.
pub async fn submit(args: SubmitArgs, db: &Path) -> anyhow::Result<u8> {
    let input = match read_input(&args.input) {
        Ok(input) => input,
        Err(error) => return Ok(usage_error(args.json, "bad_input", &format!("{error:#}"))),
    };
    let (definition, warnings) = match rein::load_definition(&args.agent, &Overrides::default()) {
        Ok(loaded) => loaded,
        Err(error) => return Ok(usage_error(args.json, "invalid_agent", &error.to_string())),
    };
    for warning in warnings {
        eprintln!("{warning}");
    }
    let tenant = match TenantId::parse(&args.tenant) {
        Ok(tenant) => tenant,
        Err(error) => return Ok(usage_error(args.json, "bad_tenant", &error.to_string())),
    };
    let store = open_store(db).await?;
    let name = definition.spec.name.clone();
    if !store.agent_enabled(&name).await? {
        let message =
            format!("agent `{name}` is disabled (the kill switch); `rein agents enable {name}` turns it back on");
        return Ok(usage_error(args.json, "agent_disabled", &message));
    }
    let version = definition.spec.version();
    store
        .register_agent(&tenant, &name, &version, &definition.to_json(), rein::now_ms())
        .await
        .context("could not register the agent version")?;
    let run = RunId::new();
    let queued =
        QueuedRun { run_id: run, tenant, agent: name, agent_version: version, input, enqueued_at_ms: rein::now_ms() };
    store.enqueue(&queued).await.context("could not queue the run")?;
    if args.json {
        println!("{}", serde_json::json!({ "run_id": run.to_string(), "status": "queued" }));
    } else {
        println!("{run}");
    }
    Ok(0)
}
