//! `rein worker` processes sharing a PostgreSQL store: runs queued with
//! `rein runs submit`, claimed with leases, a worker SIGKILLed while it
//! holds runs mid-run (its leases expire and the others resume those runs
//! from their journals), and SIGTERM draining a worker. Every run's tool
//! writes to a counter service that de-duplicates by `Idempotency-Key`, as
//! in the chaos test, so "each side effect applied once" is checked across
//! processes and take-overs.

mod common;

use common::PgSchema;
use common::counter::{Counter, STEPS_PER_RUN, agent_toml, count, respond};

use axum::routing::post;
use rein_testkit::openai_server::MockOpenAi;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const REIN: &str = env!("CARGO_BIN_EXE_rein");
/// The counter service, the mock model, and the agent file.
struct World {
    counter: Arc<Mutex<Counter>>,
    _model: MockOpenAi,
    _dir: tempfile::TempDir,
    agent: String,
}

async fn world() -> World {
    let counter = Arc::new(Mutex::new(Counter::default()));
    let app = axum::Router::new().route("/count", post(count)).with_state(counter.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let counter_url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let model = MockOpenAi::start(|body| respond(body, Duration::from_millis(150))).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let agent = dir.path().join("counter.toml");
    std::fs::write(&agent, agent_toml(&model.base_url, &counter_url, "120s")).unwrap();
    World { counter, _model: model, agent: agent.to_str().unwrap().to_owned(), _dir: dir }
}

impl World {
    /// Every item of every task applied exactly once, and nothing else.
    fn assert_applied_once(&self, tasks: &[String]) {
        let counter = self.counter.lock().unwrap();
        for task in tasks {
            for step in 0..STEPS_PER_RUN {
                let item = format!("{task}-{step}");
                assert_eq!(
                    counter.per_item.get(&item),
                    Some(&1),
                    "{item} applied {:?} times",
                    counter.per_item.get(&item)
                );
            }
        }
        assert_eq!(counter.applied.len(), tasks.len() * STEPS_PER_RUN);
    }
}

fn command(db: &str, log: &Path) -> Command {
    let mut command = Command::new(REIN);
    command
        .env("REIN_DB", db)
        .env("MOCK_KEY", "test")
        .env("NO_COLOR", "1")
        .env("REIN_LOG", "rein=info,warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .kill_on_drop(true);
    command
}

fn worker(db: &str, log: &Path, args: &[&str]) -> Child {
    command(db, log).arg("worker").args(args).spawn().unwrap()
}

async fn submit(db: &str, agent: &str, task: &str) {
    let output = Command::new(REIN)
        .args(["runs", "submit", agent, "--input", task, "--json"])
        .env("REIN_DB", db)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "submit: {}", String::from_utf8_lossy(&output.stderr));
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["status"], "queued");
}

/// Runs by status, from `rein runs list`.
fn statuses(db: &str) -> BTreeMap<String, usize> {
    let output = std::process::Command::new(REIN)
        .args(["runs", "list", "--json", "--limit", "10000"])
        .env("REIN_DB", db)
        .output()
        .unwrap();
    let runs: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap_or_default();
    runs.iter().fold(BTreeMap::new(), |mut acc, r| {
        *acc.entry(r["status"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        acc
    })
}

async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The runs `pid`'s worker holds in the queue that have started (events
/// journaled): caught mid-run.
fn held_mid_run(schema: &PgSchema, pid: u32) -> Vec<String> {
    schema
        .scalar(&format!(
            "SELECT string_agg(q.run_id, ',') FROM run_queue q JOIN runs r ON r.run_id = q.run_id
             WHERE q.state = 'claimed' AND q.owner LIKE '%/{pid}/%' AND r.status = 'running' AND r.steps >= 1"
        ))
        .split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .collect()
}

fn audit_verify(db: &str) {
    let verify = std::process::Command::new(REIN).args(["audit", "verify"]).env("REIN_DB", db).output().unwrap();
    assert!(verify.status.success(), "audit verify: {}", String::from_utf8_lossy(&verify.stdout));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_mid_run_every_run_completes_with_each_effect_once() {
    const RUNS: usize = 30;
    let started = Instant::now();
    let schema = PgSchema::new("workers");
    let db = schema.url();
    let world = world().await;
    let logs = tempfile::tempdir().unwrap();
    let tasks: Vec<String> = (0..RUNS).map(|i| format!("task{i:02}")).collect();
    for task in &tasks {
        submit(&db, &world.agent, task).await;
    }
    assert_eq!(schema.count("SELECT count(*) FROM run_queue WHERE state = 'queued'"), RUNS);

    let args = ["--concurrency", "4", "--lease-ttl", "1500ms", "--drain-timeout", "10s"];
    let mut workers: Vec<Child> =
        (0..3).map(|i| worker(&db, &logs.path().join(format!("worker{i}.log")), &args)).collect();
    let victim = workers[0].id().unwrap();

    // Kill the first worker once it holds at least two runs mid-way.
    let mut doomed = Vec::new();
    wait_until("the first worker holds runs mid-run", Duration::from_secs(30), || {
        doomed = held_mid_run(&schema, victim);
        doomed.len() >= 2
    })
    .await;
    workers[0].kill().await.unwrap();
    let killed_at = started.elapsed();

    wait_until("every run has finished", Duration::from_secs(90), || statuses(&db).get("succeeded") == Some(&RUNS))
        .await;
    let finished_at = started.elapsed();

    // The killed worker's runs were taken over and resumed from their
    // journals by the survivors.
    let resumed =
        schema.count("SELECT count(DISTINCT run_id) FROM events WHERE body LIKE '%\"type\":\"run_resumed\"%'");
    for run in &doomed {
        let owner =
            schema.scalar(&format!("SELECT string_agg(DISTINCT owner, ',') FROM run_queue WHERE run_id = '{run}'"));
        assert!(owner.is_empty(), "{run} is done, no longer held: {owner}");
        let resumed_here = schema.count(&format!(
            "SELECT count(*) FROM events WHERE run_id = '{run}' AND body LIKE '%\"type\":\"run_resumed\"%'"
        ));
        assert!(resumed_here >= 1, "run {run}, held by the killed worker mid-run, was resumed from its journal");
    }
    let expiries = schema.count("SELECT COALESCE(sum(lease_expiries), 0) FROM run_queue");
    assert!(expiries >= doomed.len(), "{expiries} lease expiries, {} runs held by the killed worker", doomed.len());
    assert_eq!(schema.count("SELECT count(*) FROM run_queue WHERE state <> 'done'"), 0);

    world.assert_applied_once(&tasks);
    audit_verify(&db);

    // The survivors drain and exit on SIGTERM at once: nothing is in flight.
    for child in &mut workers[1..] {
        let pid = child.id().unwrap();
        std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    }
    for child in &mut workers[1..] {
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await.unwrap().unwrap();
        assert!(status.success(), "a drained worker exits 0: {status}");
    }
    println!(
        "workers: {RUNS} runs, worker {victim} SIGKILLed at {:.1} s holding {} runs mid-run, {resumed} runs resumed \
         by the others, {expiries} lease expiries, all succeeded at {:.1} s, {} effects applied once each",
        killed_at.as_secs_f64(),
        doomed.len(),
        finished_at.as_secs_f64(),
        world.counter.lock().unwrap().applied.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_a_worker_and_nothing_is_lost() {
    let schema = PgSchema::new("workers");
    let db = schema.url();
    let world = world().await;
    let logs = tempfile::tempdir().unwrap();
    let tasks: Vec<String> = (0..6).map(|i| format!("drain{i}")).collect();

    // A worker waiting on an empty queue is woken by submissions.
    let mut first = worker(&db, &logs.path().join("first.log"), &["--concurrency", "2", "--drain-timeout", "30s"]);
    let pid = first.id().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // All at once: one after another, `rein runs submit` processes are
    // slower than the worker, which would be done before the last was in.
    let submissions: Vec<_> = tasks
        .iter()
        .map(|task| {
            let (db, agent, task) = (db.clone(), world.agent.clone(), task.clone());
            tokio::spawn(async move { submit(&db, &agent, &task).await })
        })
        .collect();
    for submission in submissions {
        submission.await.unwrap();
    }
    // As soon as it is mid-run: waiting for both of its slots to be mid-run
    // at one instant can take until the last runs on a loaded machine.
    wait_until("the worker drives a run", Duration::from_secs(30), || !held_mid_run(&schema, pid).is_empty()).await;
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), first.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    // It finished what it had and claimed nothing more.
    let succeeded = statuses(&db).get("succeeded").copied().unwrap_or(0);
    assert!(
        (1..tasks.len()).contains(&succeeded),
        "the in-flight runs finished: {:?}\n{}",
        statuses(&db),
        std::fs::read_to_string(logs.path().join("first.log")).unwrap_or_default()
    );
    assert_eq!(schema.count("SELECT count(*) FROM run_queue WHERE state = 'claimed'"), 0, "nothing left held");
    let left = schema.count("SELECT count(*) FROM run_queue WHERE state = 'queued'");
    assert_eq!(left, tasks.len() - succeeded, "the rest wait in the queue");

    // A worker with a drain time-out shorter than a run releases what it
    // holds; the next worker resumes it at once from the journal.
    let mut second = worker(&db, &logs.path().join("second.log"), &["--concurrency", "2", "--drain-timeout", "50ms"]);
    let pid = second.id().unwrap();
    wait_until("the second worker drives runs", Duration::from_secs(30), || !held_mid_run(&schema, pid).is_empty())
        .await;
    std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    let status = tokio::time::timeout(Duration::from_secs(30), second.wait()).await.unwrap().unwrap();
    assert!(status.success(), "{status}");
    assert_eq!(schema.count("SELECT count(*) FROM run_queue WHERE state = 'claimed'"), 0, "released, not left held");

    let mut third = worker(&db, &logs.path().join("third.log"), &["--concurrency", "4"]);
    wait_until("every run has finished", Duration::from_secs(60), || {
        statuses(&db).get("succeeded") == Some(&tasks.len())
    })
    .await;
    let resumed =
        schema.count("SELECT count(DISTINCT run_id) FROM events WHERE body LIKE '%\"type\":\"run_resumed\"%'");
    assert!(resumed >= 1, "the released runs were resumed from their journals");
    assert_eq!(schema.count("SELECT COALESCE(sum(lease_expiries), 0) FROM run_queue"), 0, "released, not expired");
    world.assert_applied_once(&tasks);
    audit_verify(&db);
    third.kill().await.unwrap();
}
