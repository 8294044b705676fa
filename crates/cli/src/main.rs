//! The `rein` command-line interface. The only crate that uses `anyhow`:
//! errors here are reported to a person, not handled.
//!
//! Exit codes: 0 the run succeeded; 1 it failed or was cancelled; 3 it needs
//! a person (escalated, stopped by a limit, waiting for approval, needing
//! reconciliation); 2 usage or configuration error.

mod approve;
mod cmd_access;
mod cmd_agents;
mod cmd_approvals;
mod cmd_audit;
mod cmd_mcp;
mod cmd_prune;
mod cmd_run;
mod cmd_runs;
mod cmd_schedules;
mod cmd_serve;
mod cmd_validate;
mod cmd_worker;
mod progress;
mod render;
mod session;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Exit code for usage and configuration errors.
pub const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(name = "rein", version, about = "A runtime for AI agents in production: bounded, validated, journaled.")]
struct Cli {
    /// The store: an SQLite file, or a PostgreSQL URL (`postgres://user@host/db`).
    /// Default: an SQLite file in the user's data directory.
    #[arg(long, global = true, env = "REIN_DB")]
    db: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an agent on one input.
    Run(cmd_run::RunArgs),
    /// Inspect journaled runs.
    Runs {
        #[command(subcommand)]
        command: cmd_runs::RunsCommand,
    },
    /// Decide on tool calls waiting for a person's approval.
    Approvals {
        #[command(subcommand)]
        command: cmd_approvals::ApprovalsCommand,
    },
    /// Registered agents and the kill switch.
    Agents {
        #[command(subcommand)]
        command: cmd_agents::AgentsCommand,
    },
    /// API keys for `rein serve`: each acts for one tenant with scopes.
    Keys {
        #[command(subcommand)]
        command: cmd_access::KeysCommand,
    },
    /// Tenants' own limits: request rate and runs running at once.
    Tenants {
        #[command(subcommand)]
        command: cmd_access::TenantsCommand,
    },
    /// Verify the journal's hash chains; list every tool call.
    Audit {
        #[command(subcommand)]
        command: cmd_audit::AuditCommand,
    },
    /// Serve agents over HTTP: sync, async and streaming runs, approvals,
    /// the kill switch.
    Serve(cmd_serve::ServeArgs),
    /// Claim queued runs from the store and drive them (any number of
    /// workers, on any machines, sharing a PostgreSQL store).
    Worker(cmd_worker::WorkerArgs),
    /// An agent file's schedules with their next fire times.
    Schedules(cmd_schedules::SchedulesArgs),
    /// Check an agent file and report every problem with file, line and key.
    Validate(cmd_validate::ValidateArgs),
    /// Delete old webhook deliveries, schedule ticks, cancel requests and
    /// queue rows that nothing needs any more (journals stay).
    Prune(cmd_prune::PruneArgs),
    /// MCP: the tools an agent's MCP servers offer it; agents served as
    /// MCP tools.
    Mcp {
        #[command(subcommand)]
        command: cmd_mcp::McpCommand,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("REIN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: could not start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let db = cli.db.unwrap_or_else(rein::store::default_path);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Run(args) => cmd_run::run(args, &db).await,
            Command::Runs { command } => cmd_runs::run(command, &db).await,
            Command::Approvals { command } => cmd_approvals::run(command, &db).await,
            Command::Agents { command } => cmd_agents::run(command, &db).await,
            Command::Audit { command } => cmd_audit::run(command, &db).await,
            Command::Keys { command } => cmd_access::keys(command, &db).await,
            Command::Tenants { command } => cmd_access::tenants(command, &db).await,
            Command::Serve(args) => cmd_serve::run(args, &db).await,
            Command::Worker(args) => cmd_worker::run(args, &db).await,
            Command::Schedules(args) => cmd_schedules::run(args),
            Command::Validate(args) => cmd_validate::run(args),
            Command::Prune(args) => cmd_prune::run(args, &db).await,
            Command::Mcp { command } => cmd_mcp::run(command, &db).await,
        }
    });
    // A terminal read for an approval may still be blocked on stdin after a
    // Ctrl-C ended the run; do not wait for it.
    runtime.shutdown_timeout(std::time::Duration::from_millis(100));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}
