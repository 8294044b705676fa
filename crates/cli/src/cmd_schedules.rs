//! `rein schedules AGENT.toml`: the agent file's `[[schedules]]` with their
//! next fire times, in each schedule's time zone — to check an expression
//! before `rein serve` fires it. Reads the file only, never the store.

use crate::EXIT_USAGE;
use clap::Args;
use rein::config::CronSchedule;
use std::path::PathBuf;

#[derive(Args)]
pub struct SchedulesArgs {
    /// The agent file.
    file: PathBuf,
    /// How many fire times to show per schedule.
    #[arg(long, default_value_t = 5)]
    count: usize,
    /// Print them as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: SchedulesArgs) -> anyhow::Result<u8> {
    let loaded = match rein::config::load_agent(&args.file) {
        Ok(loaded) => loaded,
        Err(error) => {
            eprintln!("{error}");
            return Ok(EXIT_USAGE);
        }
    };
    let now_ms = rein::now_ms();
    let mut listed = Vec::new();
    for decl in &loaded.schedules {
        // The loader checked the expression and the zone.
        let cron = CronSchedule::of(decl)?;
        let next = if decl.enabled { cron.upcoming(now_ms, args.count) } else { Vec::new() };
        let next: Vec<String> = next.into_iter().map(|ms| cron.local_time(ms)).collect();
        listed.push((decl, next));
    }
    if args.json {
        let body: Vec<_> = listed
            .iter()
            .map(|(decl, next)| {
                serde_json::json!({
                    "name": decl.name,
                    "cron": decl.cron,
                    "timezone": decl.timezone,
                    "enabled": decl.enabled,
                    "max_lateness_ms": decl.max_lateness_ms,
                    "next": next,
                })
            })
            .collect();
        println!("{:#}", serde_json::json!({ "agent": loaded.spec.name, "schedules": body }));
        return Ok(0);
    }
    if listed.is_empty() {
        println!("{} declares no schedules", loaded.spec.name);
    }
    for (decl, next) in listed {
        println!("{}  \"{}\" in {}", decl.name, decl.cron, decl.timezone);
        if !decl.enabled {
            println!("  disabled (enabled = false)");
        } else if next.is_empty() {
            println!("  never fires");
        }
        for at in next {
            println!("  {at}");
        }
    }
    Ok(0)
}
