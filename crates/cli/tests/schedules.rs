//! Schedules end to end: two `rein serve` processes on one PostgreSQL
//! schema fire a schedule that ticks every second, and every tick starts
//! exactly one run — none twice, none missed — plus `rein schedules`.

mod common;

use common::PgSchema;

use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text};
use std::collections::HashSet;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const REIN: &str = env!("CARGO_BIN_EXE_rein");

fn agent_file(dir: &std::path::Path, model: &str, schedules: &str) -> std::path::PathBuf {
    let path = dir.join("ticker.toml");
    let text = format!(
        "name = \"ticker\"\nsystem_prompt = \"Say tick.\"\n\n[model]\nid = \"openai-compatible:mock\"\nbase_url = \"{model}\"\n{schedules}"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// `rein serve AGENT` on `db`, with the URL it listens on.
async fn serve(agent: &std::path::Path, db: &str) -> (Child, String) {
    let mut server = Command::new(REIN)
        .args(["serve", agent.to_str().unwrap(), "--listen", "127.0.0.1:0", "--no-auth"])
        .env("REIN_DB", db)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let base = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.split("listening on ").nth(1) {
                return url.trim().to_owned();
            }
        }
        panic!("rein serve exited before listening");
    })
    .await
    .unwrap();
    // Keep reading stderr so the server never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (server, base)
}

/// The value of `rein_schedule_ticks_total` for `outcome` in a `/metrics`
/// text (0 when absent).
fn ticks(metrics: &str, outcome: &str) -> u64 {
    metrics
        .lines()
        .filter(|line| {
            line.starts_with("rein_schedule_ticks_total{") && line.contains(&format!("outcome=\"{outcome}\""))
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn two_servers_on_one_schema_fire_each_tick_exactly_once() {
    let schema = PgSchema::new("sched");
    let db = schema.url();
    let model = MockOpenAi::start(|_| MockReply::ok(completion_text("tick"))).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let every_second = "\n[[schedules]]\nname = \"every-second\"\ncron = \"* * * * * *\"\ninput = \"tick\"\n";
    let agent = agent_file(dir.path(), &model.base_url, every_second);

    // The first creates the schema's tables; the second starts on them.
    let (mut first, first_url) = serve(&agent, &db).await;
    let (mut second, second_url) = serve(&agent, &db).await;
    let both_from_ms = rein::now_ms();
    tokio::time::sleep(Duration::from_millis(4_300)).await;
    let both_until_ms = rein::now_ms();

    let http = reqwest::Client::new();
    let mut fired = 0;
    let mut elsewhere = 0;
    for base in [&first_url, &second_url] {
        let metrics = http.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
        fired += ticks(&metrics, "fired");
        elsewhere += ticks(&metrics, "claimed_elsewhere");
    }
    let listed: serde_json::Value =
        http.get(format!("{first_url}/v1/agents/ticker/schedules")).send().await.unwrap().json().await.unwrap();
    assert_eq!(listed["schedules"][0]["name"], "every-second", "{listed}");
    assert_eq!(listed["schedules"][0]["next"].as_array().unwrap().len(), 5, "{listed}");

    for server in [&mut first, &mut second] {
        let pid = server.id().unwrap().to_string();
        assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        tokio::time::timeout(Duration::from_secs(10), server.wait()).await.unwrap().unwrap();
    }

    let claims: Vec<(u64, String)> = schema
        .rows("SELECT tick_ms, run_id FROM schedule_ticks WHERE agent = 'ticker' AND schedule = 'every-second' ORDER BY tick_ms")
        .iter()
        .map(|row| {
            let (tick, run) = row.split_once('|').unwrap();
            (tick.parse().unwrap(), run.to_owned())
        })
        .collect();
    let ticks_claimed: Vec<u64> = claims.iter().map(|(tick, _)| *tick).collect();
    // Every second from the first claim to the last, once each.
    assert!(claims.len() >= 4, "{ticks_claimed:?}");
    assert!(ticks_claimed.windows(2).all(|w| w[1] - w[0] == 1_000), "a tick missed: {ticks_claimed:?}");
    // Every whole second while both servers ran was claimed.
    let first_whole = both_from_ms.div_ceil(1_000) * 1_000;
    let last_whole = both_until_ms / 1_000 * 1_000;
    for tick in (first_whole..=last_whole).step_by(1_000) {
        assert!(ticks_claimed.contains(&tick), "tick {tick} was not fired: {ticks_claimed:?}");
    }
    // Each claim started its own run, and the store holds no other run:
    // no tick started two.
    let runs: HashSet<String> = schema.rows("SELECT run_id FROM runs WHERE agent = 'ticker'").into_iter().collect();
    let claimed_runs: HashSet<String> = claims.iter().map(|(_, run)| run.clone()).collect();
    assert_eq!(claimed_runs.len(), claims.len(), "two ticks share a run");
    assert_eq!(runs, claimed_runs);
    // Both servers took part: each tick they both saw was fired by one and
    // found claimed by the other.
    assert!(fired >= 4 && elsewhere >= 1, "fired {fired}, claimed elsewhere {elsewhere}");
    assert!(fired <= claims.len() as u64, "fired {fired} > {} claims", claims.len());
}

#[test]
fn rein_schedules_prints_the_next_fire_times_in_the_time_zone() {
    let dir = tempfile::tempdir().unwrap();
    let schedules = "\n[[schedules]]\nname = \"nightly\"\ncron = \"0 3 * * *\"\ntimezone = \"Asia/Tokyo\"\ninput = \"go\"\n\n[[schedules]]\nname = \"off\"\ncron = \"0 * * * *\"\ninput = \"go\"\nenabled = false\n";
    let agent = agent_file(dir.path(), "http://127.0.0.1:9", schedules);
    let out =
        std::process::Command::new(REIN).args(["schedules", agent.to_str().unwrap(), "--count", "3"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("nightly  \"0 3 * * *\" in Asia/Tokyo\n"), "{text}");
    assert_eq!(text.matches("T03:00:00+09:00").count(), 3, "{text}");
    assert!(text.contains("off  \"0 * * * *\" in UTC\n  disabled"), "{text}");

    let json =
        std::process::Command::new(REIN).args(["schedules", agent.to_str().unwrap(), "--json"]).output().unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(json["schedules"][0]["next"].as_array().unwrap().len(), 5, "{json}");

    // A bad expression is a config error naming file, line and key.
    std::fs::write(&agent, std::fs::read_to_string(&agent).unwrap().replace("0 3 * * *", "0 25 * * *")).unwrap();
    let out = std::process::Command::new(REIN).args(["schedules", agent.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ticker.toml:10:") && stderr.contains("schedules[0].cron"), "{stderr}");
}
