//! `rein run AGENT.toml --input TEXT|@FILE`: run an agent once, show live
//! progress on a terminal, print the answer (or one JSON object), and exit
//! with a code that says how the run ended.

use crate::approve::TerminalApprover;
use crate::progress::Progress;
use crate::{EXIT_USAGE, render};
use anyhow::Context;
use clap::Args;
use rein::{CancellationToken, Overrides, RunOptions, RunOutcome, RunStatus, Runtime};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

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
    let client = rein::providers::default_client().context("could not build the HTTP client")?;
    let overrides = Overrides { model: args.model.clone(), base_url: args.base_url.clone() };
    let loaded = match rein::load_agent(&args.agent, &overrides, &client) {
        Ok(loaded) => loaded,
        Err(error) => return Ok(usage_error(args.json, "invalid_agent", &error.to_string())),
    };
    for warning in &loaded.warnings {
        eprintln!("{warning}");
    }
    let journal = match rein::store::SqliteJournal::open(db) {
        Ok(journal) => journal,
        Err(error) => {
            let message = format!("cannot open the journal at {}: {error}", db.display());
            return Ok(usage_error(args.json, "journal_unavailable", &message));
        }
    };
    let interactive = std::io::stderr().is_terminal();
    let mut runtime = Runtime::new(Arc::new(journal));
    let mut progress = None;
    if interactive && !args.json && !args.quiet {
        // On a terminal the model's text streams to stdout as it arrives.
        let stream_text = std::io::stdout().is_terminal();
        let hook = Arc::new(Progress::new(loaded.agent.spec().price.is_some(), stream_text));
        runtime = runtime.with_hooks(hook.clone());
        progress = Some(hook);
    }
    if interactive && std::io::stdin().is_terminal() {
        runtime = runtime.with_approver(Arc::new(TerminalApprover));
    }

    // Ctrl-C cancels the run at its next boundary, journaled as `cancelled`.
    let cancel = CancellationToken::new();
    let on_interrupt = cancel.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_interrupt.cancel();
        }
    });
    let options = RunOptions { cancel: Some(cancel), ..RunOptions::default() };
    let outcome = runtime.run_with(&loaded.agent, input, options).await?;
    if args.json {
        println!("{}", serde_json::to_string(&json_result(&outcome))?);
    } else {
        let streamed =
            outcome.output.as_deref().is_some_and(|o| progress.as_ref().is_some_and(|p| p.streamed_answer(o)));
        render::outcome(&outcome, streamed);
    }
    Ok(exit_code(outcome.status))
}

/// Reports an error that kept the run from starting: on stderr, and with
/// `--json` also as one JSON object on stdout, so scripts always get JSON.
fn usage_error(json: bool, code: &str, message: &str) -> u8 {
    eprintln!("{message}");
    if json {
        println!("{}", serde_json::json!({ "error": { "code": code, "message": message } }));
    }
    EXIT_USAGE
}

fn read_input(arg: &str) -> anyhow::Result<String> {
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

/// The documented `--json` shape: stable keys, one object.
pub fn json_result(outcome: &RunOutcome) -> serde_json::Value {
    serde_json::json!({
        "run_id": outcome.run_id.to_string(),
        "agent": outcome.agent,
        "agent_version": outcome.agent_version.0,
        "status": outcome.status.as_str(),
        "output": outcome.output,
        "reason": outcome.reason,
        "explanation": outcome.explanation,
        "limit": outcome.limit.map(|l| l.as_str()),
        "steps": outcome.steps,
        "usage": {
            "input_tokens": outcome.usage.input_tokens,
            "output_tokens": outcome.usage.output_tokens,
            "cached_input_tokens": outcome.usage.cached_input_tokens,
        },
        "cost_usd": outcome.cost_usd,
        "duration_ms": outcome.duration_ms,
        "partial_results": outcome.partial_results,
        "unbacked_claims": outcome.unbacked_claims,
    })
}

pub fn exit_code(status: RunStatus) -> u8 {
    match status {
        RunStatus::Succeeded => 0,
        RunStatus::Escalated | RunStatus::LimitReached => 3,
        RunStatus::Failed | RunStatus::Cancelled | RunStatus::Running => 1,
    }
}
