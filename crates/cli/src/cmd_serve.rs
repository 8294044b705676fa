//! `rein serve AGENT.toml... --listen ADDR`: the HTTP API (see the
//! rein-server crate) over the same store the other commands use.

use crate::session::open_store;
use anyhow::Context;
use clap::Args;
use rein::{Operator, Overrides};
use rein_server::{AppState, ServeConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// Agent files to serve from the start (more can be registered with
    /// `POST /v1/agents`).
    agents: Vec<PathBuf>,
    /// Where to listen. The API has no authentication yet: keep it on a
    /// private interface.
    #[arg(long, default_value = "127.0.0.1:8080", env = "REIN_LISTEN")]
    listen: SocketAddr,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Let async runs call back to loopback and private addresses (for a
    /// receiver on the same machine or network).
    #[arg(long)]
    allow_private_callbacks: bool,
    /// Do not fire the agents' `[[schedules]]` from this process (another
    /// server sharing the store can; each tick fires once either way).
    #[arg(long)]
    no_schedules: bool,
}

pub async fn run(args: ServeArgs, db: &Path) -> anyhow::Result<u8> {
    let store = open_store(db).await?;
    let client = rein::providers::default_client().context("could not build the HTTP client")?;
    let operator = Arc::new(Operator::new(store, client));
    // The secret that signs callbacks comes from the environment, never
    // from a flag (which `ps` would show).
    let callback_secret = std::env::var("REIN_CALLBACK_SECRET").ok().filter(|s| !s.is_empty()).map(String::into_bytes);
    let config = ServeConfig {
        max_body_bytes: args.max_body_bytes,
        callback_secret,
        allow_private_callbacks: args.allow_private_callbacks,
    };
    let state = AppState::new(operator, config);
    for path in &args.agents {
        let (definition, warnings) = match rein::load_definition(path, &Overrides::default()) {
            Ok(loaded) => loaded,
            Err(error) => {
                eprintln!("{error}");
                return Ok(crate::EXIT_USAGE);
            }
        };
        for warning in warnings {
            eprintln!("{warning}");
        }
        let name = definition.spec.name.clone();
        state.serve_agent(definition).await.map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
        eprintln!("serving agent {name} from {}", path.display());
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("rein serve: listening on http://{}", listener.local_addr()?);
    let scheduler = (!args.no_schedules).then(|| rein_server::spawn_scheduler(state.clone()));
    axum::serve(listener, rein_server::router(state)).with_graceful_shutdown(shutdown()).await?;
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    eprintln!("rein serve: stopped; unfinished runs are in the journal (`rein runs resume --all`)");
    Ok(0)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
