//! `rein mcp tools AGENT.toml`: the tools the agent's MCP servers offer it,
//! as the model would see them (name with prefix, description, input
//! schema) with the tier and approval the agent file gives each. Starts the
//! servers, asks them, and stops them; never touches the store.

use crate::EXIT_USAGE;
use clap::{Args, Subcommand};
use rein::{RiskTier, ToolSpec};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum McpCommand {
    /// List the tools the agent would get from its `[[mcp_servers]]`.
    Tools(ToolsArgs),
}

#[derive(Args)]
pub struct ToolsArgs {
    /// The agent file.
    file: PathBuf,
    /// Print them as JSON, schemas included.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: McpCommand) -> anyhow::Result<u8> {
    match command {
        McpCommand::Tools(args) => tools(args).await,
    }
}

async fn tools(args: ToolsArgs) -> anyhow::Result<u8> {
    let loaded = match rein::config::load_agent(&args.file) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return Ok(EXIT_USAGE);
        }
    };
    // The client `rein run` gives providers, HTTP tools and MCP sessions.
    let client = rein::providers::default_client()?;
    let sets = match rein::discover_mcp(&loaded.mcp_servers, &client).await {
        Ok(sets) => sets,
        Err(error) => {
            eprintln!("error: {error}");
            return Ok(EXIT_USAGE);
        }
    };
    let listed: Vec<(String, Vec<ToolSpec>)> = sets
        .iter()
        .map(|set| (set.server.name().to_string(), set.tools.iter().map(|t| rein::Tool::spec(t).clone()).collect()))
        .collect();
    for set in &sets {
        set.server.shutdown().await;
    }

    if args.json {
        let servers: Vec<_> = listed
            .iter()
            .map(|(server, specs)| {
                let tools: Vec<_> = specs
                    .iter()
                    .map(|spec| {
                        serde_json::json!({
                            "name": spec.name,
                            "description": spec.description,
                            "parameters": spec.parameters,
                            "risk": spec.risk,
                            "approval": spec.approval,
                            "idempotent": spec.idempotent,
                            "max_calls": spec.max_calls,
                        })
                    })
                    .collect();
                serde_json::json!({ "server": server, "tools": tools })
            })
            .collect();
        println!("{:#}", serde_json::json!({ "agent": loaded.spec.name, "servers": servers }));
        return Ok(0);
    }
    if listed.is_empty() {
        println!("{} declares no MCP servers", loaded.spec.name);
    }
    for (server, specs) in listed {
        println!("{server}: {} tool(s)", specs.len());
        for spec in specs {
            let approval = match spec.approval {
                rein::Approval::Required => ", approval required",
                rein::Approval::Never => "",
            };
            let tier = match spec.risk {
                RiskTier::Read => "read",
                RiskTier::Write => "write",
                RiskTier::Dangerous => "dangerous",
            };
            println!("  {}  [{tier}{approval}]", spec.name);
            if !spec.description.is_empty() {
                println!("    {}", spec.description.lines().next().unwrap_or_default());
            }
            println!("    parameters: {}", spec.parameters);
        }
    }
    Ok(0)
}
