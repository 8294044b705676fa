//! Measures `SqliteJournal::append` throughput: runs of 8 batches × 2 events
//! appended one run at a time, then with 200 runs in flight. Each `append`
//! waits for its commit, as the runtime's do. Prints figures; asserts
//! nothing.
//!
//! ```text
//! cargo run --release -p rein-store --example append_bench [runs] [in_flight] [dir]
//! ```
//!
//! `dir` defaults to a temporary directory; pass one to measure a specific
//! disk.

use rein_store::SqliteJournal;
use rein_testkit::conformance::{model_requested, model_responded, run_finished, run_started};
use rein_types::{Event, Journal, RunFilter, RunId, RunStatus, Usage};
use std::sync::Arc;
use std::time::{Duration, Instant};

const BATCHES_PER_RUN: usize = 8;

/// A run's journal as the runtime writes it: start, seven model turns, and
/// the finish, two events per batch.
fn run_batches(run: RunId, at: u64) -> Vec<Vec<Event>> {
    let usage = Usage { input_tokens: 1_200, output_tokens: 80, cached_input_tokens: 512 };
    let mut batches = vec![vec![
        run_started(run, 0, at, "bench", "Summarise the quarterly report"),
        model_requested(run, 1, at + 1, 1),
    ]];
    for step in 1..BATCHES_PER_RUN as u32 - 1 {
        let seq = u64::from(step) * 2;
        batches.push(vec![
            model_responded(run, seq, at + seq, step, usage, 0.000_42),
            model_requested(run, seq + 1, at + seq + 1, step + 1),
        ]);
    }
    let seq = (BATCHES_PER_RUN as u64 - 1) * 2;
    let steps = BATCHES_PER_RUN as u32 - 1;
    batches.push(vec![
        model_responded(run, seq, at + seq, steps, usage, 0.000_42),
        run_finished(run, seq + 1, at + seq + 1, RunStatus::Succeeded, steps, usage, 0.003),
    ]);
    batches
}

fn report(label: &str, runs: usize, elapsed: Duration, latencies: &mut [Duration]) {
    let batches = runs * BATCHES_PER_RUN;
    let secs = elapsed.as_secs_f64();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
    println!(
        "{label:<28} {runs:>6} runs {batches:>7} batches in {:>7.1} ms: {:>9.0} batches/s {:>8.0} runs/s  append p50 {:>5.0} µs p90 {:>5.0} µs p99 {:>6.0} µs",
        secs * 1e3,
        batches as f64 / secs,
        runs as f64 / secs,
        at(0.5).as_secs_f64() * 1e6,
        at(0.9).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6,
    );
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(2_000);
    let in_flight: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(200);
    let temp = tempfile::tempdir()?;
    let dir = args.next().map(std::path::PathBuf::from).unwrap_or_else(|| temp.path().to_path_buf());
    let path = dir.join(format!("append-bench-{}.db", std::process::id()));
    let journal = Arc::new(SqliteJournal::open(&path)?);
    println!("journal: {}", path.display());

    // Sequential: one run after another, every append awaited.
    let plans: Vec<_> = (0..runs).map(|n| run_batches(RunId::new(), n as u64 * 100)).collect();
    let mut latencies = Vec::with_capacity(runs * BATCHES_PER_RUN);
    let start = Instant::now();
    for plan in &plans {
        for batch in plan {
            let t = Instant::now();
            journal.append(batch).await?;
            latencies.push(t.elapsed());
        }
    }
    report("sequential", runs, start.elapsed(), &mut latencies);

    // Concurrent: `in_flight` tasks, each appending its runs one batch at a
    // time, so about that many appends wait on the writer at once.
    let plans: Vec<_> = (0..runs).map(|n| run_batches(RunId::new(), 1_000_000 + n as u64 * 100)).collect();
    let mut shares: Vec<Vec<Vec<Vec<Event>>>> = (0..in_flight).map(|_| Vec::new()).collect();
    for (n, plan) in plans.into_iter().enumerate() {
        shares[n % in_flight].push(plan);
    }
    let start = Instant::now();
    let mut tasks = Vec::new();
    for share in shares {
        let journal = Arc::clone(&journal);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share.len() * BATCHES_PER_RUN);
            for plan in share {
                for batch in plan {
                    let t = Instant::now();
                    journal.append(&batch).await?;
                    latencies.push(t.elapsed());
                }
            }
            Ok::<_, rein_types::JournalError>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(runs * BATCHES_PER_RUN);
    for task in tasks {
        latencies.extend(task.await??);
    }
    report(&format!("concurrent ({in_flight} in flight)"), runs, start.elapsed(), &mut latencies);

    let listed = journal.runs(&RunFilter::default()).await?.len();
    println!("runs listed afterwards: {listed}");
    drop(journal);
    let _ = std::fs::remove_file(&path);
    Ok(())
}
