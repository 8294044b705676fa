//! rein on the shared benchmark workload: one agent, one `lookup(key)` tool,
//! against the mock OpenAI server; a run is 4 model calls and 3 tool calls.
//! Every run is journaled durably to SQLite (WAL), as in production.
//!
//! Modes and output follow `shared/bench/rs-common/harness.rs`, which this
//! binary includes unchanged so that its figures sit in the same table as
//! the raw floor, rig and the Python frameworks.

#[path = "../../../../shared/bench/rs-common/harness.rs"]
mod harness;

use rein::providers::{OpenAiCompatible, OpenAiConfig, RetryConfig};
use rein::store::SqliteJournal;
use rein::{Agent, Durability, FnTool, Journal, Limits, RiskTier, RunStatus, Runtime, ToolError};
use serde_json::{Map, json};
use std::sync::Arc;

#[derive(serde::Deserialize, schemars::JsonSchema)]
struct LookupArgs {
    key: String,
}

fn build(base_url: &str, journal: Arc<dyn Journal>, durability: Durability) -> (Runtime, Agent) {
    let mut config = OpenAiConfig::new("openai", "gpt-4o-mini", base_url);
    config.api_key = Some("sk-dummy".into());
    config.retry = RetryConfig { max_retries: 0, ..RetryConfig::default() };
    let model = OpenAiCompatible::new(config, None).expect("provider");
    let lookup = FnTool::new("lookup", "Look up the value stored under a key.", RiskTier::Read, |args: LookupArgs, _ctx| async move {
        Ok::<_, ToolError>(format!("value-of-{}", args.key))
    })
    .expect("tool");
    let agent = Agent::builder("bench")
        .system_prompt("You are a benchmark agent. Call lookup until told otherwise, then answer.")
        .model(model)
        .tool(lookup)
        .handoff(false)
        // The mem mode holds runs for 4 x 2 s; the default 60 s is ample.
        .limits(Limits { max_steps: 10, ..Limits::default() })
        .build()
        .expect("agent");
    (Runtime::new(journal).with_durability(durability), agent)
}

fn main() {
    let args = harness::parse_args();
    assert!(!args.stream, "rein-bench: streaming arrives with the streaming providers");
    let rt = harness::runtime(&args);
    let db = std::env::temp_dir().join(format!("rein-bench-{}.db", std::process::id()));
    // REIN_BENCH_JOURNAL=memory measures the loop without the durable
    // journal, to show what durability costs; REIN_BENCH_JOURNAL=postgres
    // (with REIN_BENCH_PG, a URL naming an existing, empty schema) puts it
    // in PostgreSQL; the default is SQLite.
    let choice = std::env::var("REIN_BENCH_JOURNAL").unwrap_or_default();
    let in_memory = choice == "memory";
    let postgres = choice == "postgres";
    let journal: Arc<dyn Journal> = if in_memory {
        Arc::new(rein_testkit::journal::MemoryJournal::new())
    } else if postgres {
        let url = std::env::var("REIN_BENCH_PG").expect("REIN_BENCH_PG: the PostgreSQL URL");
        Arc::new(rt.block_on(rein_store_pg::PgStore::connect(&url)).expect("postgres store"))
    } else {
        Arc::new(SqliteJournal::open(&db).expect("journal"))
    };
    // REIN_BENCH_DURABILITY=every-step commits every transition before
    // acting on it; the default commits around side effects (see
    // rein_runtime::Durability).
    let every_step = std::env::var("REIN_BENCH_DURABILITY").is_ok_and(|v| v == "every-step");
    let durability = if every_step { Durability::EveryStep } else { Durability::default() };
    let journal_name = match (in_memory, postgres, every_step) {
        (true, _, _) => "in-memory journal",
        (false, true, false) => "PostgreSQL journal",
        (false, true, true) => "PostgreSQL journal, commit every step",
        (false, false, false) => "SQLite journal",
        (false, false, true) => "SQLite journal, commit every step",
    };
    let mut meta = Map::new();
    meta.insert("framework".into(), json!(format!("rein ({journal_name})")));
    meta.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    let result = rt.block_on(harness::run(&args, meta, |base_url: &str| {
        let (runtime, agent) = build(base_url, journal.clone(), durability);
        let shared = Arc::new((runtime, agent));
        move |i: i64| {
            let shared = shared.clone();
            async move {
                let (runtime, agent) = &*shared;
                let outcome = runtime.run(agent, format!("run {i}: look things up")).await.map_err(|e| e.to_string())?;
                if outcome.status != RunStatus::Succeeded {
                    return Err(format!("{}: {}", outcome.status, outcome.explanation));
                }
                Ok(outcome.output.unwrap_or_default())
            }
        }
    }));
    harness::print_result(&result);
    drop(journal);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
}
