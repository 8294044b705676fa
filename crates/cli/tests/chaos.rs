//! The chaos test: agent runs whose tool writes to a counter service, the
//! `rein` process killed with SIGKILL at random moments again and again,
//! `rein runs resume --all` until every run has finished; then every run
//! must have reached a final status and every logical side effect must have
//! been applied exactly once.
//!
//! The counter honours `Idempotency-Key` the way payment APIs do (a key it
//! has seen gets the first answer again), so "exactly once" holds only if
//! rein sends the same key whenever it repeats a call — across processes,
//! after any crash. The counter also records which logical item each key
//! applied, so a repeated effect under a *new* key (an unstable key, a
//! model call whose result was lost and redone differently) is caught.

mod common;

use axum::routing::post;
use common::counter::{Counter, STEPS_PER_RUN, agent_toml, count, respond};
use rein_testkit::openai_server::MockOpenAi;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const REIN: &str = env!("CARGO_BIN_EXE_rein");
const RUNS: usize = 50;
const MIN_KILLS: usize = 20;
fn rein(args: &[&str], db: &Path) -> Child {
    Command::new(REIN)
        .args(args)
        .env("REIN_DB", db)
        .env("MOCK_KEY", "test")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Kills the child with SIGKILL and reaps it (a zombie would still look
/// alive to the next process checking its lease).
async fn kill(child: &mut Child) -> bool {
    if child.try_wait().ok().flatten().is_some() {
        return false;
    }
    child.kill().await.is_ok()
}

fn runs_json(db: &Path) -> Vec<Value> {
    let output = std::process::Command::new(REIN)
        .args(["runs", "list", "--json", "--limit", "10000"])
        .env("REIN_DB", db)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_survive_repeated_sigkills_with_every_side_effect_applied_once() {
    let started = Instant::now();
    let counter = Arc::new(Mutex::new(Counter::default()));
    let app = axum::Router::new().route("/count", post(count)).with_state(counter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let counter_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let model = MockOpenAi::start(|body| respond(body, Duration::from_millis(25))).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let agent = dir.path().join("counter.toml");
    std::fs::write(&agent, agent_toml(&model.base_url, &counter_url, "60s")).unwrap();
    let agent = agent.to_str().unwrap().to_owned();
    let seed = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| fastrand::u64(..));
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut kills = 0usize;
    let mut resumes = 0usize;

    // Phase 1: start every run, ten processes at a time, killing some of
    // them at random moments.
    let tasks: Vec<String> = (0..RUNS).map(|i| format!("task{i:02}")).collect();
    for wave in tasks.chunks(10) {
        let mut children: Vec<(Child, Option<Instant>)> = wave
            .iter()
            .map(|task| {
                let child = rein(&["run", &agent, "--input", task, "--json"], &db);
                // Most processes get a moment to die at, somewhere in a
                // run's life (a few hundred milliseconds).
                let dies_at = (rng.u8(..100) < 90).then(|| Instant::now() + Duration::from_millis(rng.u64(20..300)));
                (child, dies_at)
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let mut running = 0;
            for (child, dies_at) in &mut children {
                if child.try_wait().ok().flatten().is_some() {
                    continue;
                }
                running += 1;
                if dies_at.is_some_and(|at| Instant::now() >= at) && kill(child).await {
                    kills += 1;
                    *dies_at = None;
                }
            }
            if running == 0 {
                break;
            }
        }
        for (child, _) in &mut children {
            let _ = child.wait().await;
        }
    }
    // A process killed before it journaled its run leaves nothing to
    // resume: start those runs again.
    let started_inputs: Vec<String> =
        runs_json(&db).iter().filter_map(|r| r["input_preview"].as_str().map(str::to_owned)).collect();
    for task in tasks.iter().filter(|t| !started_inputs.contains(t)) {
        let mut child = rein(&["run", &agent, "--input", task, "--json"], &db);
        let _ = child.wait().await;
    }

    // Phase 2: resume everything, killing the resumer at random moments
    // until enough kills happened, then let it finish.
    for round in 0..60 {
        let unfinished = runs_json(&db)
            .iter()
            .filter(|r| {
                !matches!(
                    r["status"].as_str(),
                    Some("succeeded" | "failed" | "escalated" | "limit_reached" | "cancelled")
                )
            })
            .count();
        if unfinished == 0 {
            break;
        }
        assert!(round < 59, "runs still unfinished after {round} resume rounds");
        let mut child = rein(&["runs", "resume", "--all", "--json"], &db);
        resumes += 1;
        // The first resumers die too, whatever the count: a crash during
        // recovery must be recoverable as well.
        if kills < MIN_KILLS + 5 || round < 3 {
            tokio::time::sleep(Duration::from_millis(rng.u64(20..150))).await;
            if kill(&mut child).await {
                kills += 1;
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), child.wait()).await;
    }

    let runs = runs_json(&db);
    let statuses: BTreeMap<String, usize> = runs.iter().fold(BTreeMap::new(), |mut acc, r| {
        *acc.entry(r["status"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        acc
    });
    let counter = counter.lock().unwrap();
    let deliveries: u32 = counter.deliveries.values().sum();
    println!(
        "chaos (seed {seed}): {} runs, {kills} SIGKILLs, {resumes} resume processes, {} effects applied, {deliveries} deliveries ({} repeats de-duplicated by key), statuses {statuses:?}, {:.1} s",
        runs.len(),
        counter.applied.len(),
        deliveries as usize - counter.applied.len(),
        started.elapsed().as_secs_f64()
    );

    assert!(kills >= MIN_KILLS, "only {kills} kills happened (seed {seed})");
    assert_eq!(runs.len(), RUNS, "one run per task (seed {seed})");
    assert_eq!(statuses.get("succeeded"), Some(&RUNS), "every run finished successfully: {statuses:?} (seed {seed})");
    // Every logical side effect applied exactly once…
    for task in &tasks {
        for step in 0..STEPS_PER_RUN {
            let item = format!("{task}-{step}");
            assert_eq!(
                counter.per_item.get(&item),
                Some(&1),
                "{item} applied {:?} times (seed {seed})",
                counter.per_item.get(&item)
            );
        }
    }
    // …and nothing else was.
    assert_eq!(counter.applied.len(), RUNS * STEPS_PER_RUN, "(seed {seed})");

    // The journal is intact after all that.
    let verify = std::process::Command::new(REIN).args(["audit", "verify"]).env("REIN_DB", &db).output().unwrap();
    assert!(verify.status.success(), "audit verify: {}", String::from_utf8_lossy(&verify.stdout));
}
