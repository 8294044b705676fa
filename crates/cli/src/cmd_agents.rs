//! `rein agents list | disable | enable`: the registered agents and the
//! kill switch.

use crate::EXIT_USAGE;
use crate::session::{Display, Session, now_ms, who};
use clap::{Args, Subcommand};
use rein::ResumeAction;
use rein::store::{Liveness, owner_liveness};
use std::path::Path;

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Agents with registered versions, and whether they are enabled.
    List {
        #[arg(long)]
        json: bool,
    },
    /// The kill switch: start no new runs of the agent, and stop its
    /// unfinished runs at their next step boundary as `cancelled`.
    Disable(SwitchArgs),
    /// Let the agent run again.
    Enable(SwitchArgs),
}

#[derive(Args)]
pub struct SwitchArgs {
    /// The agent's name (`name` in its TOML).
    name: String,
    /// Who is switching (default: the login name).
    #[arg(long = "as")]
    by: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn run(command: AgentsCommand, db: &Path) -> anyhow::Result<u8> {
    let session = Session::open(db).await?;
    match command {
        AgentsCommand::List { json } => {
            let agents = session.store.agents().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&agents)?);
            } else if agents.is_empty() {
                println!("no agents registered yet (`rein run` registers each version it runs)");
            } else {
                println!("{:<24}  {:<8}  {:>8}  LATEST VERSION", "AGENT", "STATE", "VERSIONS");
                for agent in agents {
                    let state = if agent.enabled { "enabled" } else { "DISABLED" };
                    let latest: String = agent.latest_version.unwrap_or_default().chars().take(12).collect();
                    println!("{:<24}  {:<8}  {:>8}  {latest}", agent.name, state, agent.versions);
                }
            }
            Ok(0)
        }
        AgentsCommand::Enable(args) => {
            session.store.set_agent_enabled(&args.name, true, &who(args.by.as_deref()), now_ms()).await?;
            eprintln!("agent {} enabled", args.name);
            Ok(0)
        }
        AgentsCommand::Disable(args) => disable(&session, args).await,
    }
}

async fn disable(session: &Session, args: SwitchArgs) -> anyhow::Result<u8> {
    let by = who(args.by.as_deref());
    session.store.set_agent_enabled(&args.name, false, &by, now_ms()).await?;
    // Runs driven by live processes see the switch at their next step
    // boundary; runs nobody drives (suspended, or left by a crash) are
    // cancelled here and now.
    let mut cancelled = Vec::new();
    let mut stopping = 0;
    for (summary, lease) in session.store.unfinished_runs().await? {
        if summary.agent != args.name {
            continue;
        }
        let live = lease.is_some_and(|l| owner_liveness(&l.owner) != Liveness::Dead);
        if live {
            stopping += 1;
            continue;
        }
        let reason = format!("agent {} was disabled by {by}", args.name);
        let quiet = Display { json: true, quiet: true };
        match session.resume(summary.run_id, ResumeAction::Cancel { reason }, false, quiet).await {
            Ok((outcome, _)) => cancelled.push(outcome),
            Err(error) => eprintln!("run {}: {error:#}", summary.run_id),
        }
    }
    if args.json {
        let runs: Vec<_> = cancelled.iter().map(rein::outcome_json).collect();
        println!(
            "{}",
            serde_json::json!({ "agent": args.name, "enabled": false, "cancelled": runs, "stopping": stopping })
        );
    } else {
        eprintln!(
            "agent {} disabled: no new runs; {} unfinished run(s) cancelled, {stopping} running elsewhere will stop at their next step",
            args.name,
            cancelled.len()
        );
    }
    Ok(if cancelled.len() + stopping > 0 || session.store.agents().await?.iter().any(|a| a.name == args.name) {
        0
    } else {
        eprintln!("note: no agent named {} has run in this journal; it is disabled for when it does", args.name);
        let _ = EXIT_USAGE;
        0
    })
}
