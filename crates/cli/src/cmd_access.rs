//! `rein keys create | list | revoke` and `rein tenants set | list`: who may
//! use `rein serve`'s API, and the limits each tenant runs under. These act
//! on the store directly: whoever can run them can read the store anyway.

use crate::EXIT_USAGE;
use crate::session::{now_ms, open_store};
use clap::{Args, Subcommand};
use rein::{Scope, TenantId, TenantLimits};
use std::path::Path;

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Make an API key; it is printed once and only its hash is kept.
    Create(CreateArgs),
    /// Keys (without the secrets), oldest first.
    List {
        /// Only this tenant's keys.
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key at once, by its id.
    Revoke { id: String },
}

#[derive(Args)]
pub struct CreateArgs {
    /// The tenant the key acts for; it sees only this tenant's agents, runs
    /// and approvals.
    #[arg(long, default_value = TenantId::DEFAULT)]
    tenant: String,
    /// A scope: runs:read, runs:write, approvals or admin (which holds
    /// them all). Repeat for several.
    #[arg(long = "scope", required = true)]
    scopes: Vec<String>,
    /// What the key is for, shown in listings and recorded with what it does.
    #[arg(long, default_value = "api")]
    name: String,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
pub enum TenantsCommand {
    /// Set a tenant's own limits (the server's defaults apply elsewhere;
    /// 0 is no limit).
    Set(LimitArgs),
    /// Tenants with limits of their own.
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
pub struct LimitArgs {
    tenant: String,
    /// API requests per second, sustained.
    #[arg(long)]
    requests_per_second: Option<u32>,
    /// Requests allowed at once above that rate.
    #[arg(long)]
    burst: Option<u32>,
    /// Runs running at once, across every server and worker.
    #[arg(long)]
    max_concurrent_runs: Option<u32>,
}

fn tenant(text: &str) -> Result<TenantId, u8> {
    TenantId::parse(text).map_err(|error| {
        eprintln!("error: {error}");
        EXIT_USAGE
    })
}

pub async fn keys(command: KeysCommand, db: &Path) -> anyhow::Result<u8> {
    let store = open_store(db).await?;
    match command {
        KeysCommand::Create(args) => {
            let tenant = match tenant(&args.tenant) {
                Ok(tenant) => tenant,
                Err(code) => return Ok(code),
            };
            let mut scopes = Vec::new();
            for text in &args.scopes {
                for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
                    let Some(scope) = Scope::parse(word) else {
                        eprintln!("error: unknown scope `{word}`: use runs:read, runs:write, approvals or admin");
                        return Ok(EXIT_USAGE);
                    };
                    if !scopes.contains(&scope) {
                        scopes.push(scope);
                    }
                }
            }
            let new = rein::keys::generate(tenant, &args.name, scopes, now_ms())?;
            store.create_api_key(&new.record).await?;
            if args.json {
                println!(
                    "{}",
                    serde_json::json!({ "id": new.record.id, "tenant": new.record.tenant, "key": new.key,
                                        "scopes": new.record.scopes, "name": new.record.name })
                );
            } else {
                println!("{}", new.key);
                let scopes: Vec<&str> = new.record.scopes.iter().map(|s| s.as_str()).collect();
                eprintln!(
                    "key {} for tenant {} ({}): shown once, keep it secret; send it as `Authorization: Bearer <key>`",
                    new.record.id,
                    new.record.tenant,
                    scopes.join(", ")
                );
            }
            Ok(0)
        }
        KeysCommand::List { tenant: only, json } => {
            let only = match only.as_deref().map(tenant).transpose() {
                Ok(only) => only,
                Err(code) => return Ok(code),
            };
            let keys = store.api_keys(only.as_ref()).await?;
            if json {
                let listed: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({ "id": k.id, "tenant": k.tenant, "name": k.name, "scopes": k.scopes,
                                            "created_at_ms": k.created_at_ms, "revoked_at_ms": k.revoked_at_ms })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else if keys.is_empty() {
                println!("no API keys yet (`rein keys create --tenant T --scope runs:read`)");
            } else {
                println!("{:<16}  {:<16}  {:<16}  {:<8}  SCOPES", "ID", "TENANT", "NAME", "STATE");
                for key in keys {
                    let state = if key.revoked_at_ms.is_some() { "REVOKED" } else { "active" };
                    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                    println!(
                        "{:<16}  {:<16}  {:<16}  {:<8}  {}",
                        key.id,
                        key.tenant.as_str(),
                        key.name,
                        state,
                        scopes.join(" ")
                    );
                }
            }
            Ok(0)
        }
        KeysCommand::Revoke { id } => {
            if store.revoke_api_key(&id, now_ms()).await? {
                eprintln!("key {id} revoked");
                Ok(0)
            } else {
                eprintln!("error: no active key with id {id}");
                Ok(EXIT_USAGE)
            }
        }
    }
}

pub async fn tenants(command: TenantsCommand, db: &Path) -> anyhow::Result<u8> {
    let store = open_store(db).await?;
    match command {
        TenantsCommand::Set(args) => {
            let tenant = match tenant(&args.tenant) {
                Ok(tenant) => tenant,
                Err(code) => return Ok(code),
            };
            let current = store.tenant_limits().await?.into_iter().find(|(t, _)| *t == tenant).map(|(_, l)| l);
            let current = current.unwrap_or_default();
            let limits = TenantLimits {
                requests_per_second: args.requests_per_second.or(current.requests_per_second),
                burst: args.burst.or(current.burst),
                max_concurrent_runs: args.max_concurrent_runs.or(current.max_concurrent_runs),
            };
            store.set_tenant_limits(&tenant, &limits).await?;
            eprintln!("tenant {tenant}: {}", serde_json::to_string(&limits)?);
            Ok(0)
        }
        TenantsCommand::List { json } => {
            let all = store.tenant_limits().await?;
            if json {
                let listed: Vec<_> = all.iter().map(|(t, l)| serde_json::json!({ "tenant": t, "limits": l })).collect();
                println!("{}", serde_json::to_string_pretty(&listed)?);
            } else {
                for (tenant, limits) in all {
                    println!("{tenant}  {}", serde_json::to_string(&limits)?);
                }
            }
            Ok(0)
        }
    }
}
