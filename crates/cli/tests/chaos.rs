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

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text, completion_tool_calls};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

const REIN: &str = env!("CARGO_BIN_EXE_rein");
const RUNS: usize = 50;
const MIN_KILLS: usize = 20;
/// Increments each run makes, one per model turn.
const STEPS_PER_RUN: usize = 3;

#[derive(Default)]
struct Counter {
    /// Idempotency key → (logical item, the answer given).
    applied: HashMap<String, (String, Value)>,
    /// Deliveries per key, repeats included.
    deliveries: HashMap<String, u32>,
    /// Logical item → times applied.
    per_item: BTreeMap<String, u32>,
}

async fn count(State(counter): State<Arc<Mutex<Counter>>>, headers: HeaderMap, Json(body): Json<Value>) -> Json<Value> {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let item = body["item"].as_str().unwrap_or("").to_owned();
    let answer = {
        let mut counter = counter.lock().unwrap();
        *counter.deliveries.entry(key.clone()).or_default() += 1;
        match counter.applied.get(&key) {
            Some((_, answer)) => answer.clone(),
            None => {
                *counter.per_item.entry(item.clone()).or_default() += 1;
                let answer = json!({ "item": item, "applied": counter.applied.len() + 1 });
                counter.applied.insert(key, (item, answer.clone()));
                answer
            }
        }
    };
    // Applied before answering: a kill in this window leaves an effect the
    // caller never heard about, which is what the idempotency key is for.
    tokio::time::sleep(Duration::from_millis(25)).await;
    Json(answer)
}

fn agent_toml(model_url: &str, counter_url: &str) -> String {
    format!(
        r#"
name = "counter"
system_prompt = "Record each item of the task with the increment tool, one at a time, then say done."

[model]
id = "openai:mock-model"
base_url = "{model_url}"
api_key_env = "MOCK_KEY"

[limits]
max_steps = 8
timeout = "60s"

[[tools]]
name = "increment"
description = "Records one item in the counter service. Safe to retry: the service de-duplicates by idempotency key."
kind = "http"
method = "POST"
url = "{counter_url}/count"
risk = "write"
idempotent = true
parameters = {{ type = "object", properties = {{ item = {{ type = "string" }} }}, required = ["item"], additionalProperties = false }}
"#
    )
}

/// The model: increments `TASK-0`, `TASK-1`, `TASK-2` in turn, judged from
/// the conversation alone, so a resumed run gets the answers the lost
/// process would have got.
fn respond(body: &Value) -> MockReply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let task =
        messages.iter().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or("").to_owned();
    let done = messages.iter().filter(|m| m["role"] == "tool").count();
    let reply = if done < STEPS_PER_RUN {
        completion_tool_calls(&[("increment", json!({ "item": format!("{task}-{done}") }))])
    } else {
        completion_text(&format!("done {task}"))
    };
    MockReply::ok(reply).with_delay(Duration::from_millis(25))
}

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
    let model = MockOpenAi::start(respond).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rein.db");
    let agent = dir.path().join("counter.toml");
    std::fs::write(&agent, agent_toml(&model.base_url, &counter_url)).unwrap();
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
