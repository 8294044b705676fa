//! `rein mcp tools AGENT.toml`: the tools the agent's MCP servers offer it,
//! as the model would see them (name with prefix, description, input
//! schema) with the tier and approval the agent file gives each. Starts the
//! servers, asks them, and stops them; never touches the store.
//!
//! `rein mcp serve [AGENT.toml...] [--http [ADDR]]`: rein as an MCP server.
//! Each agent (the files given, else the agents deployed in the store) is a
//! tool that runs it through the store like `rein run` (see
//! `rein::McpHost`), on stdio or Streamable HTTP.

use crate::EXIT_USAGE;
use crate::session::open_store;
use anyhow::Context;
use clap::{Args, Subcommand};
use rein::{McpHost, Operator, Overrides, RiskTier, TenantId, ToolSpec};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum McpCommand {
    /// List the tools the agent would get from its `[[mcp_servers]]`.
    Tools(ToolsArgs),
    /// Serve agents as MCP tools (stdio, or Streamable HTTP with --http).
    Serve(ServeArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Agent files to serve, each a tool named after its agent. Without
    /// any, the agents deployed in the store are served.
    agents: Vec<PathBuf>,
    /// Serve the agents deployed in the store too (the default when no
    /// file is given).
    #[arg(long)]
    deployed: bool,
    /// Serve Streamable HTTP at http://ADDR/mcp instead of stdio.
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8765")]
    http: Option<SocketAddr>,
    /// Let --http listen on an address that is not loopback. The endpoint
    /// has no authentication of its own: put one in front of it.
    #[arg(long)]
    allow_remote: bool,
    /// The tenant whose runs the agent files' runs are.
    #[arg(long, default_value = TenantId::DEFAULT)]
    tenant: String,
}

#[derive(Args)]
pub struct ToolsArgs {
    /// The agent file.
    file: PathBuf,
    /// Print them as JSON, schemas included.
    #[arg(long)]
    json: bool,
}

pub async fn run(command: McpCommand, db: &Path) -> anyhow::Result<u8> {
    match command {
        McpCommand::Tools(args) => tools(args).await,
        McpCommand::Serve(args) => serve(args, db).await,
    }
}

async fn serve(args: ServeArgs, db: &Path) -> anyhow::Result<u8> {
    if let Some(addr) = args.http
        && !addr.ip().is_loopback()
        && !args.allow_remote
    {
        eprintln!(
            "error: --http {addr} is not loopback, and the MCP endpoint has no authentication; \
             add --allow-remote if something in front of it authenticates"
        );
        return Ok(EXIT_USAGE);
    }
    let tenant = match TenantId::parse(&args.tenant) {
        Ok(tenant) => tenant,
        Err(error) => {
            eprintln!("error: --tenant: {error}");
            return Ok(EXIT_USAGE);
        }
    };
    let store = open_store(db).await?;
    let client = rein::providers::default_client().context("could not build the HTTP client")?;
    let operator = Arc::new(Operator::new(store, client));
    // No approver: a call that needs approval pauses its run, and the
    // client gets the run id instead of a wait.
    let mut host = McpHost::new(operator.clone(), operator.runtime());
    for path in &args.agents {
        let (definition, warnings) = match rein::load_definition(path, &Overrides::default()) {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("{error}");
                return Ok(EXIT_USAGE);
            }
        };
        for warning in warnings {
            eprintln!("{warning}");
        }
        if let Err(error) = host.add(&tenant, &definition).await {
            eprintln!("error: {}: {error}", path.display());
            return Ok(EXIT_USAGE);
        }
        eprintln!("rein mcp serve: agent {} from {}", definition.spec.name, path.display());
    }
    if args.deployed || args.agents.is_empty() {
        host = host.with_deployed();
        eprintln!("rein mcp serve: and the agents deployed in the store");
    }
    let host: Arc<dyn rein::mcp::AgentHost> = Arc::new(host);
    match args.http {
        None => rein::mcp::serve_stdio(host).await.context("MCP session on stdio")?,
        Some(addr) => {
            let listener =
                tokio::net::TcpListener::bind(addr).await.with_context(|| format!("cannot listen on {addr}"))?;
            eprintln!("rein mcp serve: listening on http://{}/mcp", listener.local_addr()?);
            let options = rein::mcp::HttpOptions { any_host: args.allow_remote && !addr.ip().is_loopback() };
            rein::mcp::serve_http(listener, host, options, crate::cmd_serve::shutdown()).await?;
        }
    }
    // Runs cut off by the end of the session stay in the journal; `rein
    // runs resume --all` takes them up.
    Ok(0)
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
