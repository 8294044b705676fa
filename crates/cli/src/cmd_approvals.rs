//! `rein approvals list | show | approve | reject | edit`: decide, from any
//! process, on tool calls that wait for a person. A decision is journaled
//! with who made it and when, and the run goes on in this process.

use crate::cmd_run::report;
use crate::session::{Display, Session, now_ms, who};
use crate::{EXIT_USAGE, render};
use clap::{Args, Subcommand};
use rein::{ApprovalDecision, OperateError, PendingAction, ResumeAction, RunId, WaitingApproval};
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
    if !crate::session::store_exists(db) {
        return Ok(crate::EXIT_USAGE);
    }
    let session = Session::open(db).await?;
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

async fn list(session: &Session, args: ListArgs) -> anyhow::Result<u8> {
    let waiting = session.operator().waiting_approvals(None).await?;
    if args.json {
        let items: Vec<_> = waiting.iter().map(|w| item(w.run_id, &w.agent, &w.action)).collect();
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(0);
    }
    if waiting.is_empty() {
        println!("no approval requests waiting");
        return Ok(0);
    }
    let now = now_ms();
    println!("{:<44}  {:<20}  {:<20}  {:<9}  {:<19}  ARGUMENTS", "APPROVAL", "AGENT", "TOOL", "RISK", "EXPIRES (UTC)");
    for WaitingApproval { agent, action, .. } in &waiting {
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

/// The waiting request `id` names, or the exit code after saying why not.
async fn find(session: &Session, id: &str) -> anyhow::Result<Result<(RunId, String, PendingAction), u8>> {
    match session.operator().find_approval(id).await {
        Ok(WaitingApproval { run_id, agent, action }) => Ok(Ok((run_id, agent, action))),
        Err(
            error @ (OperateError::NoSuchApproval(_)
            | OperateError::AmbiguousApproval { .. }
            | OperateError::BadApprovalId(_)
            | OperateError::NotStarted(_)),
        ) => {
            eprintln!("error: {error}");
            Ok(Err(EXIT_USAGE))
        }
        Err(error) => Err(error.into()),
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
