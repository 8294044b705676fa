//! `rein prune --older-than 720h` (30 days, the default): deletes the store's bookkeeping that
//! nothing needs any more (see `Store::prune`); journals, agents and keys
//! stay. Run it from cron; it is safe beside running servers and workers.

use crate::EXIT_USAGE;
use crate::session::{now_ms, open_store};
use clap::Args;
use std::path::Path;
use std::time::Duration;

/// Pruning closer than this to now could forget deliveries a sender is
/// still retrying, or ticks a server may still fire.
const SHORTEST: Duration = Duration::from_secs(3600);

#[derive(Args)]
pub struct PruneArgs {
    /// Delete what was recorded longer ago than this (at least 1h). Keep it
    /// longer than any webhook's `tolerance` and its senders' retry window.
    #[arg(long, default_value = "720h", value_parser = crate::cmd_worker::duration)]
    older_than: Duration,
    #[arg(long)]
    json: bool,
}

pub async fn run(args: PruneArgs, db: &Path) -> anyhow::Result<u8> {
    if args.older_than < SHORTEST {
        eprintln!("error: --older-than must be at least 1h (deliveries and ticks that recent may still be needed)");
        return Ok(EXIT_USAGE);
    }
    let store = open_store(db).await?;
    let before = now_ms().saturating_sub(u64::try_from(args.older_than.as_millis()).unwrap_or(u64::MAX));
    let pruned = store.prune(before).await?;
    if args.json {
        println!("{}", serde_json::to_string(&pruned)?);
    } else {
        eprintln!(
            "pruned {} webhook deliveries, {} schedule ticks, {} cancel requests of finished runs, {} queue rows of done runs",
            pruned.webhook_deliveries, pruned.schedule_ticks, pruned.cancel_requests, pruned.queue_rows
        );
    }
    Ok(0)
}
