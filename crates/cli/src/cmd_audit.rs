//! `rein audit verify [RUN]` and `rein audit log`: the tamper-evident
//! journal, checked and read as a log of every tool call.

use crate::cmd_runs::resolve;
use crate::render;
use crate::session::open_store;
use clap::{Args, Subcommand};
use rein::{RunFilter, Store, ToolOutcome};
use std::path::Path;

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain of one run, or of every run: reports any edited,
    /// reordered or deleted event. Exits 1 if any chain is broken.
    Verify(VerifyArgs),
    /// Every tool call, newest run first: agent, version, arguments,
    /// result, approver and time.
    Log(LogArgs),
}

#[derive(Args)]
pub struct VerifyArgs {
    /// A run id or prefix; every run when absent.
    run: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct LogArgs {
    /// Only this agent's runs.
    #[arg(long)]
    agent: Option<String>,
    /// Only this run (id or prefix).
    #[arg(long)]
    run: Option<String>,
    /// Look at this many runs, newest first.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[arg(long)]
    json: bool,
}

pub async fn run(command: AuditCommand, db: &Path) -> anyhow::Result<u8> {
    if !crate::session::store_exists(db) {
        return Ok(crate::EXIT_USAGE);
    }
    let journal = open_store(db).await?;
    match command {
        AuditCommand::Verify(args) => verify(journal.as_ref(), args).await,
        AuditCommand::Log(args) => log(journal.as_ref(), args).await,
    }
}

async fn verify(journal: &dyn Store, args: VerifyArgs) -> anyhow::Result<u8> {
    let runs = match &args.run {
        Some(id) => match resolve(journal, id).await? {
            Ok(run) => vec![run],
            Err(code) => return Ok(code),
        },
        None => journal.runs(&RunFilter::default()).await?.into_iter().map(|r| r.run_id).collect(),
    };
    let mut reports = Vec::with_capacity(runs.len());
    for run in runs {
        reports.push(journal.verify_chain(run).await?);
    }
    let broken = reports.iter().filter(|r| !r.is_intact()).count();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        for report in &reports {
            if report.is_intact() {
                let head = report.head.as_deref().unwrap_or("-");
                println!("ok      {}  {} events  head {}", report.run_id, report.events, &head[..head.len().min(16)]);
                for problem in &report.problems {
                    println!("        unchecked: {}", problem.detail);
                }
            } else {
                println!("BROKEN  {}  {} events", report.run_id, report.events);
                for problem in &report.problems {
                    println!("        seq {}: {:?}: {}", problem.seq, problem.fault, problem.detail);
                }
            }
        }
        eprintln!("{} run(s) checked, {broken} with a broken chain", reports.len());
    }
    Ok(if broken == 0 { 0 } else { 1 })
}

async fn log(journal: &dyn Store, args: LogArgs) -> anyhow::Result<u8> {
    let runs = match &args.run {
        Some(id) => match resolve(journal, id).await? {
            Ok(run) => vec![run],
            Err(code) => return Ok(code),
        },
        None => {
            let filter = RunFilter { agent: args.agent.clone(), limit: Some(args.limit), ..RunFilter::default() };
            journal.runs(&filter).await?.into_iter().map(|r| r.run_id).collect()
        }
    };
    let mut entries = Vec::new();
    for run in runs {
        entries.extend(rein::audit_entries(&journal.events(run).await?));
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(0);
    }
    if entries.is_empty() {
        println!("no tool calls");
        return Ok(0);
    }
    for entry in &entries {
        let result = match (&entry.outcome, &entry.rejected) {
            (Some(ToolOutcome::Ok { data, .. }), _) => format!("ok {}", clip(&data.to_string(), 80)),
            (Some(ToolOutcome::Error { message, .. }), _) => format!("error: {}", clip(message, 80)),
            (None, Some(reason)) => format!("not run ({reason})"),
            (None, None) => "no result".to_owned(),
        };
        println!(
            "{}  {}@{}  run {}  step {}  {} ({})  {}  → {}{}",
            render::timestamp(entry.requested_at_ms),
            entry.agent,
            &entry.agent_version[..entry.agent_version.len().min(8)],
            &entry.run_id.to_string()[..8],
            entry.step,
            entry.tool,
            entry.risk.as_str(),
            clip(&entry.arguments.to_string(), 80),
            result,
            entry.approval.as_ref().map(|a| format!("  [{a}]")).unwrap_or_default(),
        );
    }
    Ok(0)
}

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max { text.to_owned() } else { text.chars().take(max).collect::<String>() + "…" }
}
