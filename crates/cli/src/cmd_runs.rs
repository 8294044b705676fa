//! `rein runs list | show | resume | cancel | reconcile`: what the journal
//! says, and acting on runs from any process.

use crate::cmd_run::{exit_code, report};
use crate::session::open_store;
use crate::session::{Display, Session, now_ms, who};
use crate::{EXIT_USAGE, render};
use clap::{Args, Subcommand};
use rein::store::{Liveness, owner_liveness};
use rein::{JournalError, PendingKind, Reconciliation, ResumeAction, RunFilter, RunId, RunRecord, RunStatus, Store};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first.
    List(ListArgs),
    /// One run as a step tree: latency, tokens and cost per step, and totals.
    Show(ShowArgs),
    /// Take up interrupted runs from their journal (after a crash or a
    /// restart) and drive them to their end.
    Resume(ResumeArgs),
    /// Cancel a run: it stops at its next step boundary, with its partial
    /// results.
    Cancel(CancelArgs),
    /// Say what became of a call that was in flight when the process died.
    Reconcile(ReconcileArgs),
    /// Queue a run of an agent for `rein worker`s (or `rein serve`) to
    /// drive; prints its id.
    Submit(crate::cmd_worker::SubmitArgs),
}

#[derive(Args)]
pub struct ResumeArgs {
    /// The run id, or a unique prefix of it.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    id: Option<String>,
    /// Every unfinished run nobody is driving: interrupted runs, and runs
    /// whose approval requests all expired.
    #[arg(long)]
    all: bool,
    /// Take up a run held by a process on another machine.
    #[arg(long)]
    force: bool,
    /// Runs driven at once with --all.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    #[arg(long)]
    json: bool,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
pub struct CancelArgs {
    /// The run id, or a unique prefix of it.
    id: String,
    /// Why, for the journal.
    #[arg(long, default_value = "cancelled by an operator")]
    reason: String,
    /// Who is cancelling (default: the login name).
    #[arg(long = "as")]
    by: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
#[command(group = clap::ArgGroup::new("resolution").required(true).args(["done", "retry", "fail"]))]
pub struct ReconcileArgs {
    /// The run id (or prefix), or the call's idempotency key `run:step:index`.
    id: String,
    /// The call took effect; this is what it returned (JSON, or text).
    #[arg(long)]
    done: Option<String>,
    /// The call did not take effect: run it again with the same
    /// idempotency key.
    #[arg(long)]
    retry: bool,
    /// Give up: the run ends as failed, with this reason.
    #[arg(long, num_args = 0..=1, default_missing_value = "the call could not be reconciled")]
    fail: Option<String>,
    /// Which call, when several need reconciliation (its call id).
    #[arg(long)]
    call: Option<String>,
    /// Who is deciding (default: the login name).
    #[arg(long = "as")]
    by: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ListArgs {
    /// Only runs of this agent.
    #[arg(long)]
    agent: Option<String>,
    /// Only runs with this status (running, succeeded, failed, escalated, limit_reached, cancelled).
    #[arg(long)]
    status: Option<String>,
    /// At most this many runs.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ShowArgs {
    /// The run id, or a unique prefix of it.
    id: String,
    #[arg(long)]
    json: bool,
}

pub async fn run(command: RunsCommand, db: &Path) -> anyhow::Result<u8> {
    // A submission may be the store's first use: it creates the store.
    let command = match command {
        RunsCommand::Submit(args) => return crate::cmd_worker::submit(args, db).await,
        command => command,
    };
    if !crate::session::store_exists(db) {
        return Ok(crate::EXIT_USAGE);
    }
    match command {
        RunsCommand::List(args) => list(open_store(db).await?.as_ref(), args).await,
        RunsCommand::Show(args) => show(open_store(db).await?.as_ref(), args).await,
        RunsCommand::Resume(args) => resume(Arc::new(Session::open(db).await?), args).await,
        RunsCommand::Cancel(args) => cancel(&Session::open(db).await?, args).await,
        RunsCommand::Reconcile(args) => reconcile(&Session::open(db).await?, args).await,
        RunsCommand::Submit(args) => crate::cmd_worker::submit(args, db).await,
    }
}

/// Resolves a run id or prefix, reporting a person's mistake as such.
pub async fn resolve(journal: &dyn Store, id: &str) -> anyhow::Result<Result<RunId, u8>> {
    match journal.resolve(id).await {
        Ok(id) => Ok(Ok(id)),
        Err(error @ (JournalError::NotFound(_) | JournalError::Ambiguous(_))) => {
            eprintln!("error: {error}");
            Ok(Err(EXIT_USAGE))
        }
        Err(error) => Err(error.into()),
    }
}

async fn resume(session: Arc<Session>, args: ResumeArgs) -> anyhow::Result<u8> {
    let display = Display { json: args.json, quiet: args.quiet };
    if let Some(id) = &args.id {
        let run = match resolve(session.store.as_ref(), id).await? {
            Ok(run) => run,
            Err(code) => return Ok(code),
        };
        let summary = session.store.runs(&RunFilter::default()).await?.into_iter().find(|r| r.run_id == run);
        if let Some(summary) = summary.filter(|s| s.status.is_suspended()) {
            let events = session.store.events(run).await?;
            let now = now_ms();
            let lapsed = rein::pending_actions(&events)
                .iter()
                .all(|p| p.kind == PendingKind::Approval && p.expires_at_ms.is_some_and(|at| now >= at));
            if !lapsed {
                eprintln!(
                    "run {run} is {}: it waits for a person. {}",
                    summary.status,
                    match summary.status {
                        RunStatus::WaitingApproval => "Decide with `rein approvals approve|edit|reject ID`.",
                        _ => "Settle it with `rein runs reconcile RUN --done RESULT | --retry | --fail`.",
                    }
                );
                return Ok(3);
            }
        }
        if let Some(outcome) = rein::outcome_of(&session.store.events(run).await?) {
            eprintln!("run {run} already finished as {}; there is nothing to resume", outcome.status);
            return Ok(EXIT_USAGE);
        }
        return match session.resume(run, ResumeAction::Continue, args.force, display).await {
            Ok((outcome, streamed)) => Ok(report(&outcome, args.json, streamed)),
            Err(error) => {
                eprintln!("error: {error:#}");
                Ok(1)
            }
        };
    }
    let candidates = resumable(&session, args.force).await?;
    if candidates.is_empty() {
        if args.json {
            println!("[]");
        } else {
            eprintln!("no interrupted runs to resume");
        }
        return Ok(0);
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
    let mut tasks = tokio::task::JoinSet::new();
    // Each run is driven on this task set; a failure of one is reported and
    // the others go on.
    for run in candidates {
        let limit = Arc::clone(&limit);
        let session = Arc::clone(&session);
        let quiet = Display { json: true, quiet: true };
        let force = args.force;
        tasks.spawn(async move {
            let _permit = limit.acquire().await;
            (run, session.resume(run, ResumeAction::Continue, force, quiet).await)
        });
    }
    let mut results = Vec::new();
    let mut worst = 0;
    while let Some(joined) = tasks.join_next().await {
        let Ok((run, result)) = joined else { continue };
        match result {
            Ok((outcome, _)) => {
                if !args.json {
                    println!("{run}  {}  {}", outcome.status, outcome.reason);
                }
                worst = worst.max(exit_code(outcome.status));
                results.push(rein::outcome_json(&outcome));
            }
            Err(error) => {
                eprintln!("{run}: could not resume: {error:#}");
                worst = worst.max(1);
                results.push(serde_json::json!({ "run_id": run.to_string(), "error": format!("{error:#}") }));
            }
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(results));
    }
    Ok(worst)
}

/// Unfinished runs nobody drives: `running` with no live holder, and
/// `waiting_approval` whose every request has lapsed (resuming tells the
/// model they were rejected).
async fn resumable(session: &Session, force: bool) -> anyhow::Result<Vec<RunId>> {
    let now = now_ms();
    let mut runs = Vec::new();
    for (summary, lease) in session.store.unfinished_runs().await? {
        let free = match &lease {
            None => true,
            Some(lease) => {
                lease.owner != session.store.owner()
                    && match owner_liveness(&lease.owner) {
                        Liveness::Dead => true,
                        Liveness::Unknown => force,
                        Liveness::Alive => false,
                    }
            }
        };
        if !free {
            continue;
        }
        match summary.status {
            RunStatus::Running => runs.push(summary.run_id),
            RunStatus::WaitingApproval => {
                let events = session.store.events(summary.run_id).await?;
                let pending = rein::pending_actions(&events);
                if !pending.is_empty() && pending.iter().all(|p| p.expires_at_ms.is_some_and(|at| now >= at)) {
                    runs.push(summary.run_id);
                }
            }
            _ => {}
        }
    }
    Ok(runs)
}

async fn cancel(session: &Session, args: CancelArgs) -> anyhow::Result<u8> {
    let run = match resolve(session.store.as_ref(), &args.id).await? {
        Ok(run) => run,
        Err(code) => return Ok(code),
    };
    let by = who(args.by.as_deref());
    if let Some(outcome) = rein::outcome_of(&session.store.events(run).await?) {
        eprintln!("run {run} already finished as {}", outcome.status);
        return Ok(if outcome.status == RunStatus::Cancelled { 0 } else { EXIT_USAGE });
    }
    // Recorded first: whichever process holds the run stops it at its next
    // step boundary, and one that takes it up later cancels it at once.
    session.store.request_cancel(run, &by, &args.reason, now_ms()).await?;
    let reason = format!("cancelled by {by}: {}", args.reason);
    let display = Display { json: args.json, quiet: true };
    // Cancel it here if nobody holds it; otherwise wait for its holder to
    // act on the request, and take over should the holder go away first.
    let mut told = false;
    for _ in 0..120 {
        if let Some(outcome) = rein::outcome_of(&session.store.events(run).await?) {
            return Ok(cancelled(&outcome, args.json));
        }
        match session.resume(run, ResumeAction::Cancel { reason: reason.clone() }, false, display).await {
            Ok((outcome, _)) => return Ok(cancelled(&outcome, args.json)),
            Err(error) if !told => {
                eprintln!("{error:#}; waiting for it to stop at its next step boundary…");
                told = true;
            }
            Err(_) => {}
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "run {run} has not stopped within 30 s; the cancel request stays recorded and whoever drives it next will act on it"
    );
    Ok(1)
}

/// Reports a cancelled run: the command did what was asked, so it exits 0.
fn cancelled(outcome: &rein::RunOutcome, json: bool) -> u8 {
    let code = report(outcome, json, false);
    if outcome.status == RunStatus::Cancelled { 0 } else { code }
}

async fn reconcile(session: &Session, args: ReconcileArgs) -> anyhow::Result<u8> {
    let (run_part, call) = match args.id.split_once(':') {
        Some((run, rest)) => match rein::step_and_index(rest) {
            Some(call) => (run.to_owned(), Some(call)),
            None => {
                eprintln!("error: `{}` is neither a run id nor an idempotency key (RUN:STEP:INDEX)", args.id);
                return Ok(EXIT_USAGE);
            }
        },
        None => (args.id.clone(), None),
    };
    let run = match resolve(session.store.as_ref(), &run_part).await? {
        Ok(run) => run,
        Err(code) => return Ok(code),
    };
    let events = session.store.events(run).await?;
    let waiting: Vec<_> =
        rein::pending_actions(&events).into_iter().filter(|p| p.kind == PendingKind::Reconciliation).collect();
    let chosen: Vec<_> = waiting
        .iter()
        .filter(|p| call.is_none_or(|call| rein::step_and_index_of(&p.id) == Some(call)))
        .filter(|p| args.call.as_ref().is_none_or(|c| p.call_id == *c))
        .collect();
    let call = match chosen.as_slice() {
        [one] => one.call_id.clone(),
        [] => {
            eprintln!("error: run {run} has no call waiting for reconciliation that matches");
            return Ok(EXIT_USAGE);
        }
        many => {
            eprintln!("error: several calls need reconciliation; pick one with --call:");
            for p in many {
                eprintln!("  --call {}  `{}` {}", p.call_id, p.tool, p.arguments);
            }
            return Ok(EXIT_USAGE);
        }
    };
    let resolution = if let Some(result) = args.done {
        let result = serde_json::from_str(&result).unwrap_or(serde_json::Value::String(result));
        Reconciliation::Done { result }
    } else if args.retry {
        Reconciliation::Retry
    } else {
        Reconciliation::Fail { reason: args.fail.unwrap_or_default() }
    };
    let action = ResumeAction::Reconcile { call_id: call, resolution, by: who(args.by.as_deref()) };
    match session.resume(run, action, false, Display { json: args.json, quiet: false }).await {
        Ok((outcome, streamed)) => Ok(report(&outcome, args.json, streamed)),
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(1)
        }
    }
}

async fn list(journal: &dyn Store, args: ListArgs) -> anyhow::Result<u8> {
    let status = match args.status.as_deref().map(|s| (s, RunStatus::parse(s))) {
        None => None,
        Some((_, Some(status))) => Some(status),
        Some((text, None)) => {
            eprintln!(
                "error: unknown status `{text}`; use running, succeeded, failed, escalated, limit_reached or cancelled"
            );
            return Ok(EXIT_USAGE);
        }
    };
    let filter = RunFilter { agent: args.agent, status, limit: Some(args.limit), ..RunFilter::default() };
    let runs = journal.runs(&filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        render::run_list(&runs);
    }
    Ok(0)
}

async fn show(journal: &dyn Store, args: ShowArgs) -> anyhow::Result<u8> {
    let run_id = match journal.resolve(&args.id).await {
        Ok(id) => id,
        Err(error @ (JournalError::NotFound(_) | JournalError::Ambiguous(_))) => {
            eprintln!("error: {error}");
            return Ok(EXIT_USAGE);
        }
        Err(error) => return Err(error.into()),
    };
    let events = journal.events(run_id).await?;
    let Some(record) = RunRecord::from_events(&events) else {
        eprintln!("error: run {run_id} has no run_started event");
        return Ok(1);
    };
    if args.json {
        let body = serde_json::json!({ "run_id": run_id.to_string(), "run": record, "events": events });
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        render::run_tree(run_id, &record);
    }
    Ok(0)
}
