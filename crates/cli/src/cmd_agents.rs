//! `rein agents list | versions | activate | rollback | disable | enable`:
//! the registered agents, which version is deployed, and the kill switch.

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
    /// The agent's registered versions, the deployed one, and its deploys.
    Versions {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Deploy a registered version (a unique prefix will do): `rein serve`
    /// serves it from then on.
    Activate {
        name: String,
        version: String,
        /// Who is deploying (default: the login name).
        #[arg(long = "as")]
        by: Option<String>,
    },
    /// Deploy the version that was deployed before the current one.
    Rollback(SwitchArgs),
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
                println!(
                    "{:<24}  {:<16}  {:<8}  {:>8}  {:<12}  LATEST VERSION",
                    "AGENT", "TENANT", "STATE", "VERSIONS", "DEPLOYED"
                );
                for agent in agents {
                    let state = if agent.enabled { "enabled" } else { "DISABLED" };
                    let short =
                        |version: Option<String>| -> String { version.unwrap_or_default().chars().take(12).collect() };
                    let deployed = agent.active_version.clone().map_or_else(|| "-".to_owned(), |v| short(Some(v)));
                    println!(
                        "{:<24}  {:<16}  {:<8}  {:>8}  {:<12}  {}",
                        agent.name,
                        agent.tenant.as_str(),
                        state,
                        agent.versions,
                        deployed,
                        short(agent.latest_version)
                    );
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
        AgentsCommand::Versions { name, json } => versions(&session, &name, json).await,
        AgentsCommand::Activate { name, version, by } => {
            let wanted = version.trim().to_ascii_lowercase();
            let registered = session.store.agent_versions(&name).await?;
            let matching: Vec<_> = registered.iter().filter(|v| v.version.starts_with(&wanted)).collect();
            let [found] = matching.as_slice() else {
                eprintln!(
                    "error: agent {name} has {} version(s) starting with `{wanted}`; give a unique prefix \
                     (`rein agents versions {name}`)",
                    matching.len()
                );
                return Ok(EXIT_USAGE);
            };
            let version = rein::AgentVersion(found.version.clone());
            session.operator().activate(&name, &version, &who(by.as_deref())).await?;
            eprintln!("agent {name}: version {} deployed", version.short());
            Ok(0)
        }
        AgentsCommand::Rollback(args) => match session.operator().roll_back(&args.name, &who(args.by.as_deref())).await
        {
            Ok(version) => {
                if args.json {
                    println!("{}", serde_json::json!({ "agent": args.name, "active_version": version.0 }));
                } else {
                    eprintln!("agent {}: rolled back to version {}", args.name, version.short());
                }
                Ok(0)
            }
            Err(rein::OperateError::NothingToRollBack(name)) => {
                eprintln!("error: agent {name} has no earlier deployed version to roll back to");
                Ok(EXIT_USAGE)
            }
            Err(error) => Err(error.into()),
        },
    }
}

async fn versions(session: &Session, name: &str, json: bool) -> anyhow::Result<u8> {
    let record = session.store.agent(name).await?;
    let Some(record) = record else {
        eprintln!("error: no agent named {name} in this journal");
        return Ok(EXIT_USAGE);
    };
    let versions = session.store.agent_versions(name).await?;
    let deploys = session.store.activations(name).await?;
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "name": name,
                "tenant": record.tenant,
                "active_version": record.active_version,
                "versions": versions,
                "deploys": deploys,
            }))?
        );
        return Ok(0);
    }
    println!("{:<2} {:<64}  REGISTERED (ms)", "", "VERSION");
    for version in versions {
        let mark = if record.active_version.as_deref() == Some(version.version.as_str()) { "*" } else { "" };
        println!("{mark:<2} {:<64}  {}", version.version, version.registered_at_ms);
    }
    if !deploys.is_empty() {
        println!("\ndeploys, oldest first:");
        for deploy in deploys {
            println!("  {}  by {} at {}", &deploy.version[..deploy.version.len().min(12)], deploy.by, deploy.at_ms);
        }
    }
    Ok(0)
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
