//! `rein approvals list | show | approve | reject | edit`: decide, from any
//! process, on tool calls that wait for a person. A decision is journaled
//! with who made it and when, and the run goes on in this process.

use crate::cmd_run::report;
use crate::cmd_runs::resolve;
use crate::session::{Display, Session, now_ms, short, who};
use crate::{EXIT_USAGE, render};
use clap::{Args, Subcommand};
use rein::{ApprovalDecision, PendingAction, PendingKind, ResumeAction, RunFilter, RunId, RunStatus};
use std::path::Path;

#[derive(Subcommand)]
pub enum ApprovalsCommand {
    /// Approval requests waiting for a decision, oldest first.
    List(ListArgs),
    /// One request: the tool, its arguments, its risk tier and the model's
    /// stated reason.
    Show(IdArgs),
    /// Let the call run as requested.
    Approve(DecideArgs),
    /// Refuse the call; the model is told and may take another path.
    Reject(RejectArgs),
    /// Let the call run with changed arguments (checked against the tool's
    /// schema first).
    Edit(EditArgs),
}

#[derive(Args)]
pub struct ListArgs {
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct IdArgs {
    /// The approval id (`run:step:index`, or a prefix of its run), as
    /// `rein approvals list` prints it.
    id: String,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DecideArgs {
    #[command(flatten)]
    target: IdArgs,
    /// Who is deciding (default: the login name).
    #[arg(long = "as")]
    by: Option<String>,
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
pub struct RejectArgs {
    #[command(flatten)]
    decide: DecideArgs,
    /// Why, for the model and the journal.
    #[arg(long)]
    reason: Option<String>,
}

#[derive(Args)]
pub struct EditArgs {
    #[command(flatten)]
    decide: DecideArgs,
    /// The arguments to run the call with: JSON, or `@FILE`.
    #[arg(long)]
    arguments: String,
}

pub async fn run(command: ApprovalsCommand, db: &Path) -> anyhow::Result<u8> {
    if !db.exists() {
        eprintln!("error: no journal at {} (no runs yet, or pass --db / REIN_DB)", db.display());
        return Ok(EXIT_USAGE);
    }
    let session = Session::open(db)?;
    match command {
        ApprovalsCommand::List(args) => list(&session, args).await,
        ApprovalsCommand::Show(args) => show(&session, args).await,
        ApprovalsCommand::Approve(args) => {
            let by = who(args.by.as_deref());
            decide(&session, &args, |call_id| ApprovalDecision::Approve { call_id, by }).await
        }
        ApprovalsCommand::Reject(args) => {
            let by = who(args.decide.by.as_deref());
            let reason = args.reason.clone();
            decide(&session, &args.decide, |call_id| ApprovalDecision::Reject { call_id, by, reason }).await
        }
        ApprovalsCommand::Edit(args) => {
            let text = match args.arguments.strip_prefix('@') {
                Some(path) => std::fs::read_to_string(path)?,
                None => args.arguments.clone(),
            };
            let arguments: serde_json::Value = match serde_json::from_str(&text) {
                Ok(value) => value,
                Err(error) => {
                    eprintln!("error: --arguments is not JSON: {error}");
                    return Ok(EXIT_USAGE);
                }
            };
            let by = who(args.decide.by.as_deref());
            decide(&session, &args.decide, |call_id| ApprovalDecision::Edit { call_id, by, arguments }).await
        }
    }
}

/// Approval requests waiting, with the run they belong to, oldest first.
async fn waiting(session: &Session) -> anyhow::Result<Vec<(RunId, String, PendingAction)>> {
    let filter = RunFilter { status: Some(RunStatus::WaitingApproval), ..RunFilter::default() };
    let mut runs = session.store.runs(&filter).await?;
    // A run being decided on a terminal is `running` with a request open.
    let running = RunFilter { status: Some(RunStatus::Running), ..RunFilter::default() };
    runs.extend(session.store.runs(&running).await?);
    runs.sort_by_key(|r| r.started_at_ms);
    let mut out = Vec::new();
    for run in runs {
        let events = session.store.events(run.run_id).await?;
        for action in rein::pending_actions(&events) {
            if action.kind == PendingKind::Approval {
                out.push((run.run_id, run.agent.clone(), action));
            }
        }
    }
    Ok(out)
}

async fn list(session: &Session, args: ListArgs) -> anyhow::Result<u8> {
    let waiting = waiting(session).await?;
    if args.json {
        let items: Vec<_> = waiting.iter().map(|(run, agent, a)| item(*run, agent, a)).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    if waiting.is_empty() {
        println!("no approval requests waiting");
        return Ok(0);
    }
    let now = now_ms();
    println!("{:<44}  {:<20}  {:<20}  {:<9}  {:<19}  ARGUMENTS", "APPROVAL", "AGENT", "TOOL", "RISK", "EXPIRES (UTC)");
    for (_, agent, action) in &waiting {
        let expires = match action.expires_at_ms {
            Some(at) if at <= now => "expired".to_owned(),
            Some(at) => render::timestamp(at),
            None => "-".to_owned(),
        };
        let arguments: String = action.arguments.to_string().chars().take(60).collect();
        println!(
            "{:<44}  {:<20}  {:<20}  {:<9}  {:<19}  {arguments}",
            action.id,
            agent,
            action.tool,
            action.risk.as_str(),
            expires
        );
    }
    Ok(0)
}

fn item(run: RunId, agent: &str, action: &PendingAction) -> serde_json::Value {
    serde_json::json!({
        "approval_id": action.id,
        "run_id": run.to_string(),
        "agent": agent,
        "step": action.step,
        "call_id": action.call_id,
        "tool": action.tool,
        "risk": action.risk.as_str(),
        "arguments": action.arguments,
        "rationale": action.rationale,
        "expires_at_ms": action.expires_at_ms,
    })
}

/// The waiting request `id` names: an approval id, a prefix of one, or a run
/// (prefix) with exactly one request waiting.
async fn find(session: &Session, id: &str) -> anyhow::Result<Result<(RunId, String, PendingAction), u8>> {
    let run_part = id.split(':').next().unwrap_or(id);
    let run = match resolve(session.store.as_ref(), run_part).await? {
        Ok(run) => run,
        Err(code) => return Ok(Err(code)),
    };
    let events = session.store.events(run).await?;
    let agent = match events.first().map(|e| &e.kind) {
        Some(rein::EventKind::RunStarted { agent, .. }) => agent.clone(),
        _ => String::new(),
    };
    // `RUN:STEP:INDEX`: step and index must match exactly (`RUN:3:0` is not
    // `RUN:13:0`); a bare run (prefix) names its only waiting request.
    let call = match id.split_once(':') {
        None => None,
        Some((_, rest)) => match crate::cmd_runs::step_and_index(rest) {
            Some(call) => Some(call),
            None => {
                eprintln!("error: `{id}` is not an approval id (RUN:STEP:INDEX)");
                return Ok(Err(EXIT_USAGE));
            }
        },
    };
    let matching: Vec<PendingAction> = rein::pending_actions(&events)
        .into_iter()
        .filter(|a| a.kind == PendingKind::Approval)
        .filter(|a| call.is_none_or(|call| crate::cmd_runs::step_and_index_of(&a.id) == Some(call)))
        .collect();
    match matching.len() {
        1 => Ok(Ok((run, agent, matching.into_iter().next().unwrap_or_else(|| unreachable!())))),
        0 => {
            eprintln!(
                "error: no approval request `{id}` is waiting (decided already, expired and resumed, or the run ended)"
            );
            Ok(Err(EXIT_USAGE))
        }
        _ => {
            eprintln!("error: run {} waits on several approvals; give the full approval id:", short(&run.to_string()));
            for a in matching {
                eprintln!("  {}  `{}`", a.id, a.tool);
            }
            Ok(Err(EXIT_USAGE))
        }
    }
}

async fn show(session: &Session, args: IdArgs) -> anyhow::Result<u8> {
    let (run, agent, action) = match find(session, &args.id).await? {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&item(run, &agent, &action))?);
        return Ok(0);
    }
    println!("approval {}", action.id);
    println!("run {run} · agent {agent} · step {}", action.step);
    println!("tool: {} ({} tier)", action.tool, action.risk.as_str());
    println!("arguments: {}", serde_json::to_string_pretty(&action.arguments)?);
    if let Some(reason) = &action.rationale {
        println!("model's reason: {reason}");
    }
    if let Some(at) = action.expires_at_ms {
        let lapsed = if at <= now_ms() { " (expired: counts as rejected)" } else { "" };
        println!("expires: {} UTC{lapsed}", render::timestamp(at));
    }
    Ok(0)
}

async fn decide(
    session: &Session,
    args: &DecideArgs,
    decision: impl FnOnce(String) -> ApprovalDecision,
) -> anyhow::Result<u8> {
    let (run, _, action) = match find(session, &args.target.id).await? {
        Ok(found) => found,
        Err(code) => return Ok(code),
    };
    let display = Display { json: args.target.json, quiet: args.quiet };
    match session.resume(run, ResumeAction::Decide(vec![decision(action.call_id)]), false, display).await {
        Ok((outcome, streamed)) => Ok(report(&outcome, args.target.json, streamed)),
        Err(error) => {
            eprintln!("error: {error:#}");
            Ok(1)
        }
    }
}
