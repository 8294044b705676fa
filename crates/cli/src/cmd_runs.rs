//! `rein runs list` and `rein runs show ID`: what the journal says.

use crate::{EXIT_USAGE, render};
use clap::{Args, Subcommand};
use rein::store::SqliteJournal;
use rein::{Journal, JournalError, RunFilter, RunRecord, RunStatus};
use std::path::Path;

#[derive(Subcommand)]
pub enum RunsCommand {
    /// Runs, newest first.
    List(ListArgs),
    /// One run as a step tree: latency, tokens and cost per step, and totals.
    Show(ShowArgs),
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
    if !db.exists() {
        eprintln!("error: no journal at {} (no runs yet, or pass --db / REIN_DB)", db.display());
        return Ok(EXIT_USAGE);
    }
    let journal = SqliteJournal::open(db)?;
    match command {
        RunsCommand::List(args) => list(&journal, args).await,
        RunsCommand::Show(args) => show(&journal, args).await,
    }
}

async fn list(journal: &SqliteJournal, args: ListArgs) -> anyhow::Result<u8> {
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
    let filter = RunFilter { agent: args.agent, status, limit: Some(args.limit) };
    let runs = journal.runs(&filter).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&runs)?);
    } else {
        render::run_list(&runs);
    }
    Ok(0)
}

async fn show(journal: &SqliteJournal, args: ShowArgs) -> anyhow::Result<u8> {
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
