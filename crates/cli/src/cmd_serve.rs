//! `rein serve AGENT.toml... --listen ADDR`: the HTTP API (see the
//! rein-server crate) over the same store the other commands use.

use crate::session::open_store;
use anyhow::Context;
use clap::Args;
use rein::{Operator, Overrides};
use rein::{TenantId, TenantLimits};
use rein_server::{AppState, AuthMode, ServeConfig};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// Agent files to serve from the start (more can be registered with
    /// `POST /v1/agents`).
    agents: Vec<PathBuf>,
    /// Where to listen.
    #[arg(long, default_value = "127.0.0.1:8080", env = "REIN_LISTEN")]
    listen: SocketAddr,
    /// Serve without API keys: every request acts as the default tenant
    /// with every scope. Refused unless listening on loopback.
    #[arg(long)]
    no_auth: bool,
    /// The tenant that owns the agent files given here.
    #[arg(long, default_value = TenantId::DEFAULT)]
    tenant: String,
    /// Default API requests per second per tenant (0: no limit).
    #[arg(long, default_value_t = 50)]
    tenant_requests_per_second: u32,
    /// Default requests a tenant may send at once above its rate.
    #[arg(long, default_value_t = 100)]
    tenant_burst: u32,
    /// Default cap on a tenant's runs running at once, across every process
    /// sharing the store (0: no cap).
    #[arg(long, default_value_t = 64)]
    tenant_max_concurrent_runs: u32,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// Let async runs call back to loopback and private addresses (for a
    /// receiver on the same machine or network).
    #[arg(long)]
    allow_private_callbacks: bool,
    /// Queued runs (async API runs, webhook runs, `rein runs submit`) this
    /// server drives at once; 0 leaves them to separate `rein worker`s.
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// The queue lease on runs driven here (see `rein worker --lease-ttl`).
    #[arg(long, default_value = "15s", value_parser = crate::cmd_worker::duration)]
    lease_ttl: std::time::Duration,
    /// After SIGTERM or Ctrl-C, how long runs in flight may go on before
    /// they are stopped and handed back to the queue.
    #[arg(long, default_value = "30s", value_parser = crate::cmd_worker::duration)]
    drain_timeout: std::time::Duration,
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
    if args.no_auth && !args.listen.ip().is_loopback() {
        eprintln!("error: --no-auth serves without API keys; it is refused on {}, which is not loopback", args.listen);
        return Ok(crate::EXIT_USAGE);
    }
    let tenant = match TenantId::parse(&args.tenant) {
        Ok(tenant) => tenant,
        Err(error) => {
            eprintln!("error: --tenant: {error}");
            return Ok(crate::EXIT_USAGE);
        }
    };
    let config = ServeConfig {
        max_body_bytes: args.max_body_bytes,
        callback_secret,
        allow_private_callbacks: args.allow_private_callbacks,
        auth: if args.no_auth { AuthMode::Open } else { AuthMode::Keys },
        tenant_defaults: TenantLimits {
            requests_per_second: Some(args.tenant_requests_per_second),
            burst: Some(args.tenant_burst),
            max_concurrent_runs: Some(args.tenant_max_concurrent_runs),
        },
        lease_ttl: args.lease_ttl,
    };
    if !args.no_auth && operator.store().api_keys(None).await?.iter().all(|key| key.revoked_at_ms.is_some()) {
        eprintln!("rein serve: no API keys yet; make one with `rein keys create --tenant {tenant} --scope admin`");
    }
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
        let by = format!("rein serve {}", path.display());
        state
            .serve_agent(&tenant, definition, &by, true)
            .await
            .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message))?;
        eprintln!("serving agent {name} from {}", path.display());
    }
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("rein serve: driving up to {} queued runs at once", args.workers);
    eprintln!("rein serve: listening on http://{}", listener.local_addr()?);
    // One signal stops both the API and the worker loop, which drains.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown().await;
        let _ = stop.send(true);
    });
    let signalled = |mut stopping: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    };
    let scheduler = (!args.no_schedules).then(|| rein_server::spawn_scheduler(state.clone()));
    let worker = state.worker(args.workers, args.drain_timeout);
    let api = axum::serve(listener, rein_server::router(state)).with_graceful_shutdown(signalled(stopping.clone()));
    let (served, _report) = tokio::join!(api, worker.run(signalled(stopping)));
    if let Some(scheduler) = scheduler {
        scheduler.abort();
    }
    served?;
    eprintln!("rein serve: stopped; unfinished runs are in the journal (workers take up queued ones)");
    Ok(0)
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown() {
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
