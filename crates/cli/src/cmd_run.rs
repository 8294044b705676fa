//! `rein run AGENT.toml --input TEXT|@FILE`: run an agent once, show live
//! progress on a terminal, print the answer (or one JSON object), and exit
//! with a code that says how the run ended.

use crate::session::{Display, Session};
use crate::{EXIT_USAGE, render};
use anyhow::Context;
use clap::Args;
use rein::{Overrides, RunOutcome, RunStatus};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct RunArgs {
    /// The agent file (TOML).
    agent: PathBuf,
    /// The input: text, `@FILE` to read a file, or `@-` for standard input.
    #[arg(long, short)]
    input: String,
    /// Print one JSON object with the result instead of text.
    #[arg(long)]
    json: bool,
    /// Override the agent's model (`provider:model`).
    #[arg(long)]
    model: Option<String>,
    /// Override the provider's base URL.
    #[arg(long, env = "REIN_BASE_URL")]
    base_url: Option<String>,
    /// No progress lines, even on a terminal.
    #[arg(long, short)]
    quiet: bool,
}

pub async fn run(args: RunArgs, db: &Path) -> anyhow::Result<u8> {
    let input = match read_input(&args.input) {
        Ok(input) => input,
        Err(error) => return Ok(usage_error(args.json, "bad_input", &format!("{error:#}"))),
    };
    let overrides = Overrides { model: args.model.clone(), base_url: args.base_url.clone() };
    let session = match Session::open(db).await {
        Ok(session) => session,
        Err(error) => return Ok(usage_error(args.json, "journal_unavailable", &format!("{error:#}"))),
    };
    let loaded = match rein::load_agent(&args.agent, &overrides, &session.client).await {
        Ok(loaded) => loaded,
        Err(error) => return Ok(usage_error(args.json, "invalid_agent", &error.to_string())),
    };
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    let name = loaded.agent.name().to_owned();
    if !session.store.agent_enabled(&name).await? {
        let message =
            format!("agent `{name}` is disabled (the kill switch); `rein agents enable {name}` turns it back on");
        return Ok(usage_error(args.json, "agent_disabled", &message));
    }
    session.register(&loaded.definition).await?;
    let display = Display { json: args.json, quiet: args.quiet };
    let (outcome, streamed) = session.start(&loaded.agent, input, display).await?;
    Ok(report(&outcome, args.json, streamed))
}

/// Prints a run's outcome (text or the `--json` object) and returns the
/// exit code for it.
pub fn report(outcome: &RunOutcome, json: bool, streamed: bool) -> u8 {
    if json {
        println!("{}", rein::outcome_json(outcome));
    } else {
        render::outcome(outcome, streamed);
    }
    exit_code(outcome.status)
}

/// Reports an error that kept the run from starting: on stderr, and with
/// `--json` also as one JSON object on stdout, so scripts always get JSON.
pub fn usage_error(json: bool, code: &str, message: &str) -> u8 {
    eprintln!("{message}");
    if json {
        println!("{}", serde_json::json!({ "error": { "code": code, "message": message } }));
    }
    EXIT_USAGE
}

pub fn read_input(arg: &str) -> anyhow::Result<String> {
    match arg.strip_prefix('@') {
        Some("-") => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text).context("could not read standard input")?;
            Ok(text)
        }
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("could not read the input file {path}")),
        None => Ok(arg.to_owned()),
    }
}

pub fn exit_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Succeeded => 0,
        // A person is needed: to take over, to raise a limit, to approve, or
        // to say what became of an interrupted call.
        RunStatus::Escalated
        | RunStatus::LimitReached
        | RunStatus::WaitingApproval
        | RunStatus::NeedsReconciliation => 3,
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Running => 1,
    }
}
