//! The store's operational side on real files: the hash chain and what
//! tampering with the file looks like, fencing between processes, leases
//! and their owners' liveness, the kill switch, cancel requests, the agent
//! registry, and files from before any of it.

use rein_store::{Liveness, ProcessIdentity, SqliteJournal, owner_liveness};
use rein_testkit::conformance::{
    every_kind, model_requested, model_responded, run_finished, run_resumed, run_started, run_suspended,
};
use rein_types::{
    AgentVersion, ChainFault, ChainReport, ControlStore, Event, Journal, JournalError, Lease, RunId, RunStatus, Store,
    TenantId, Usage, chain_hash,
};
use serde_json::json;
use std::path::{Path, PathBuf};
use tempfile::TempDir;

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

fn fresh() -> (TempDir, PathBuf, SqliteJournal) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("rein.db");
    let journal = SqliteJournal::open(&path).expect("open the journal");
    (dir, path, journal)
}

const USAGE: Usage = Usage { input_tokens: 10, output_tokens: 2, cached_input_tokens: 0 };

/// A run of `rows` rows of one event each: start, then requests.
async fn one_event_rows(journal: &SqliteJournal, rows: u64) -> RunId {
    let run = RunId::new();
    journal.append(&[run_started(run, 0, 1_000, "chained", "go")]).await.unwrap();
    for seq in 1..rows {
        journal.append(&[model_requested(run, seq, 1_000 + seq, seq as u32)]).await.unwrap();
    }
    run
}

fn faults(report: &ChainReport) -> Vec<(u64, ChainFault)> {
    report.problems.iter().map(|p| (p.seq, p.fault)).collect()
}

fn exec(path: &Path, sql: &str, run: RunId) {
    raw(path).execute(sql, [run.to_string()]).unwrap_or_else(|e| panic!("{sql}: {e}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_chain_verifies_and_its_head_is_the_last_hash() {
    let (_dir, _path, journal) = fresh();
    let run = RunId::new();
    let events = every_kind(run, 1_000);
    // Rows of several events and of one, in and out of the writer's memory.
    journal.append(&events[..3]).await.unwrap();
    journal.append(&events[3..4]).await.unwrap();
    journal.append(&events[4..]).await.unwrap();
    let report = journal.verify_chain(run).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, events.len() as u64);

    // The head is the last link of a chain anyone can recompute: each
    // event's `[seq, at_ms, kind]` element as the journal writes it.
    let mut head = rein_types::CHAIN_GENESIS;
    for event in &events {
        let element = format!("[{},{},{}]", event.seq, event.at_ms, serde_json::to_string(&event.kind).unwrap());
        head = chain_hash(&head, element.as_bytes());
    }
    let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(report.head.as_deref(), Some(hex.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_event_is_found_at_its_seq() {
    let (_dir, path, journal) = fresh();
    let run = one_event_rows(&journal, 5).await;
    // Same length, same JSON shape, one step number changed.
    exec(
        &path,
        "UPDATE events SET body = replace(body, '\"step\":2', '\"step\":7') WHERE run_id = ?1 AND first_seq = 2",
        run,
    );
    let edited = &journal.events(run).await.unwrap()[2];
    assert!(matches!(edited.kind, rein_types::EventKind::ModelRequested { step: 7, .. }), "the edit reads back");
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(2, ChainFault::Edited)], "{report:?}");

    // Inside a row of several events, the edited one is named.
    let several = RunId::new();
    let events: Vec<Event> = (0..4)
        .map(|seq| if seq == 0 { run_started(several, 0, 1, "x", "y") } else { model_requested(several, seq, 1, 5) })
        .collect();
    journal.append(&events).await.unwrap();
    exec(
        &path,
        "UPDATE events SET body = replace(body, '[2,1,{\"type\":\"model_requested\",\"step\":5', '[2,1,{\"type\":\"model_requested\",\"step\":6') WHERE run_id = ?1",
        several,
    );
    let report = journal.verify_chain(several).await.unwrap();
    assert_eq!(faults(&report), [(2, ChainFault::Edited)], "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_middle_row_breaks_the_chain() {
    let (_dir, path, journal) = fresh();
    let run = one_event_rows(&journal, 5).await;
    exec(&path, "DELETE FROM events WHERE run_id = ?1 AND first_seq = 2", run);
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(3, ChainFault::Gap), (3, ChainFault::Broken)], "{report:?}");
    assert_eq!(report.events, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_rows_are_detected() {
    let (_dir, path, journal) = fresh();
    // Bodies swapped between two rows, keys and hashes left in place.
    let run = one_event_rows(&journal, 5).await;
    let swap_bodies = "UPDATE events SET body = CASE first_seq
            WHEN 1 THEN (SELECT body FROM events WHERE run_id = ?1 AND first_seq = 3)
            ELSE (SELECT body FROM events WHERE run_id = ?1 AND first_seq = 1) END
        WHERE run_id = ?1 AND first_seq IN (1, 3)";
    exec(&path, swap_bodies, run);
    let report = journal.verify_chain(run).await.unwrap();
    assert!(!report.is_intact(), "{report:?}");
    assert!(faults(&report).contains(&(3, ChainFault::Gap)), "{report:?}");

    // Whole rows swapped: their keys exchanged, bodies and hashes moving with them.
    let run = one_event_rows(&journal, 5).await;
    for swap in [
        "UPDATE events SET first_seq = -1, last_seq = -1 WHERE run_id = ?1 AND first_seq = 1",
        "UPDATE events SET first_seq = 1, last_seq = 1 WHERE run_id = ?1 AND first_seq = 3",
        "UPDATE events SET first_seq = 3, last_seq = 3 WHERE run_id = ?1 AND first_seq = -1",
    ] {
        exec(&path, swap, run);
    }
    let report = journal.verify_chain(run).await.unwrap();
    let found = faults(&report);
    assert!(found.contains(&(3, ChainFault::Gap)) && found.contains(&(3, ChainFault::Broken)), "{report:?}");
    assert!(found.contains(&(1, ChainFault::Broken)), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_last_row_is_a_truncation() {
    let (_dir, path, journal) = fresh();
    let run = one_event_rows(&journal, 4).await;
    exec(&path, "DELETE FROM events WHERE run_id = ?1 AND first_seq = 3", run);
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(3, ChainFault::Truncated)], "{report:?}");

    // Every event gone, the summary left.
    exec(&path, "DELETE FROM events WHERE run_id = ?1", run);
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(0, ChainFault::Truncated)], "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_chain_shows_against_the_recorded_head() {
    let (_dir, path, journal) = fresh();
    let run = one_event_rows(&journal, 3).await;
    // The last row's body edited and its hash recomputed to match: the
    // chain is consistent, but no longer ends at the recorded head.
    let conn = raw(&path);
    let hashes: Vec<u8> = conn
        .query_row("SELECT hashes FROM events WHERE run_id = ?1 AND first_seq = 1", [run.to_string()], |r| r.get(0))
        .unwrap();
    let previous: [u8; 32] = hashes[..32].try_into().unwrap();
    let body: String = conn
        .query_row("SELECT body FROM events WHERE run_id = ?1 AND first_seq = 2", [run.to_string()], |r| r.get(0))
        .unwrap();
    let edited = body.replace("\"step\":2", "\"step\":9");
    let element = &edited[1..edited.len() - 1];
    let forged = chain_hash(&previous, element.as_bytes());
    conn.execute(
        "UPDATE events SET body = ?2, hashes = ?3 WHERE run_id = ?1 AND first_seq = 2",
        rusqlite::params![run.to_string(), edited, &forged[..]],
    )
    .unwrap();
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(2, ChainFault::Broken)], "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hashes_stripped_after_chained_rows_break_the_chain_and_an_unchained_prefix_is_only_unchecked() {
    let (_dir, path, journal) = fresh();
    let run = one_event_rows(&journal, 3).await;
    exec(&path, "UPDATE events SET hashes = NULL WHERE run_id = ?1 AND first_seq = 2", run);
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(2, ChainFault::Broken)], "{report:?}");
    assert!(!report.is_intact());
    let run = one_event_rows(&journal, 3).await;
    exec(&path, "UPDATE events SET hashes = NULL WHERE run_id = ?1 AND first_seq = 0", run);
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report).first(), Some(&(0, ChainFault::Unchained)), "{report:?}");
    match journal.verify_chain(RunId::new()).await {
        Err(JournalError::NotFound(_)) => {}
        other => panic!("an unknown run is not found, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_appending_the_same_seq_one_wins() {
    let (_dir, path, first) = fresh();
    let first = first.with_owner("host-a/1/1".into());
    let second = SqliteJournal::open(&path).unwrap().with_owner("host-b/2/2".into());
    assert_eq!(second.owner(), "host-b/2/2");
    let run = RunId::new();
    first.append(&[run_started(run, 0, 1_000, "fenced", "x"), model_requested(run, 1, 1_001, 1)]).await.unwrap();
    first.append(&[model_responded(run, 2, 1_002, 1, USAGE, 0.5)]).await.unwrap();

    // Both believe the run is theirs and append the same seq, each in turn
    // going first, so each writer's memory of the run's head goes stale.
    for round in 0..20u64 {
        let seq = 3 + round * 2;
        let (x, y) = if round % 2 == 0 { (&first, &second) } else { (&second, &first) };
        let one = [model_requested(run, seq, 2_000, 2)];
        let two = [model_requested(run, seq, 2_000, 2), model_requested(run, seq + 1, 2_001, 3)];
        let (won, lost) = tokio::join!(x.append(&one), y.append(&two));
        assert!(won.is_ok() != lost.is_ok(), "round {round}: exactly one wins, got {won:?} and {lost:?}");
        if lost.is_err() {
            x.append(&[model_requested(run, seq + 1, 2_001, 3)]).await.unwrap();
        }
    }
    let events = first.events(run).await.unwrap();
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..43).collect::<Vec<_>>());
    let report = second.verify_chain(run).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, 43);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_taken_over_by_another_process_and_back_keeps_one_chain() {
    let (_dir, path, first) = fresh();
    let second = SqliteJournal::open(&path).unwrap().with_owner("host-b/2/2".into());
    let run = RunId::new();
    first.append(&[run_started(run, 0, 1_000, "handover", "x")]).await.unwrap();
    first.append(&[model_requested(run, 1, 1_001, 1)]).await.unwrap();
    // The other process resumes the run and appends...
    second.append(&[run_resumed(run, 2, 2_000, "host-b/2/2"), model_requested(run, 3, 2_001, 2)]).await.unwrap();
    // ...and the first takes it back, its memory of the head now stale.
    first.append(&[run_resumed(run, 4, 3_000, first.owner()), model_requested(run, 5, 3_001, 3)]).await.unwrap();
    first.append(&[run_finished(run, 6, 3_002, RunStatus::Succeeded, 0, USAGE, 0.0)]).await.unwrap();
    let report = second.verify_chain(run).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_follow_starts_suspensions_resumptions_and_finishes() {
    let (_dir, _path, journal) = fresh();
    let journal = journal.with_owner("runner/10/20".into());
    let run = RunId::new();
    assert_eq!(journal.lease(run).await.unwrap(), None);
    journal.append(&[run_started(run, 0, 1_000, "leased", "x"), model_requested(run, 1, 1_001, 1)]).await.unwrap();
    let held = Some(Lease { owner: "runner/10/20".into(), since_ms: 1_000 });
    assert_eq!(journal.lease(run).await.unwrap(), held);

    journal.append(&[run_suspended(run, 2, 1_500, RunStatus::WaitingApproval)]).await.unwrap();
    assert_eq!(journal.lease(run).await.unwrap(), None, "a suspended run is held by no one");
    let unfinished = journal.unfinished_runs().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(
        (unfinished[0].0.run_id, unfinished[0].0.status, &unfinished[0].1),
        (run, RunStatus::WaitingApproval, &None)
    );

    let other = journal.with_owner("other/30/40".into());
    other.append(&[run_resumed(run, 3, 9_000, "other/30/40")]).await.unwrap();
    let held = Some(Lease { owner: "other/30/40".into(), since_ms: 9_000 });
    assert_eq!(other.lease(run).await.unwrap(), held);
    let unfinished = other.unfinished_runs().await.unwrap();
    assert_eq!((unfinished[0].0.status, &unfinished[0].1), (RunStatus::Running, &held));

    other.append(&[run_finished(run, 4, 9_500, RunStatus::Succeeded, 1, USAGE, 0.1)]).await.unwrap();
    assert_eq!(other.lease(run).await.unwrap(), None, "a finished run is held by no one");
    assert!(other.unfinished_runs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_runs_are_listed_oldest_first() {
    let (_dir, _path, journal) = fresh();
    let (a, b, c, d) = (RunId::new(), RunId::new(), RunId::new(), RunId::new());
    journal.append(&[run_started(b, 0, 2_000, "u", "b")]).await.unwrap();
    journal.append(&[run_started(a, 0, 1_000, "u", "a")]).await.unwrap();
    journal
        .append(&[run_started(c, 0, 3_000, "u", "c"), run_suspended(c, 1, 3_001, RunStatus::NeedsReconciliation)])
        .await
        .unwrap();
    journal
        .append(&[run_started(d, 0, 500, "u", "d"), run_finished(d, 1, 501, RunStatus::Failed, 0, USAGE, 0.0)])
        .await
        .unwrap();
    let listed: Vec<(RunId, RunStatus, bool)> = journal
        .unfinished_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|(summary, lease)| (summary.run_id, summary.status, lease.is_some_and(|l| l.owner == journal.owner())))
        .collect();
    assert_eq!(
        listed,
        [(a, RunStatus::Running, true), (b, RunStatus::Running, true), (c, RunStatus::NeedsReconciliation, false)]
    );
}

#[test]
fn liveness_tells_this_process_from_dead_and_foreign_ones() {
    let me = ProcessIdentity::current();
    assert_eq!(owner_liveness(&me), Liveness::Alive);
    let this = ProcessIdentity::parse(&me).unwrap();
    // Same pid, another start time: the pid was reused.
    let reused = ProcessIdentity { start: this.start + 1, ..this.clone() };
    assert_eq!(owner_liveness(&reused.to_string()), Liveness::Dead);
    // A pid beyond the kernel's limit (at most 2^22) never exists.
    let gone = ProcessIdentity { pid: 9_999_999, ..this.clone() };
    assert_eq!(owner_liveness(&gone.to_string()), Liveness::Dead);
    // The same process as recorded in an earlier boot: gone with it.
    if let Some(boot) = &this.boot {
        let earlier = if boot == "00000000" { "ffffffff" } else { "00000000" };
        let before_reboot = ProcessIdentity { boot: Some(earlier.into()), ..this.clone() };
        assert_eq!(owner_liveness(&before_reboot.to_string()), Liveness::Dead);
        // Written before boot ids were recorded: judged by pid and start.
        let unbooted = ProcessIdentity { boot: None, ..this.clone() };
        assert_eq!(owner_liveness(&unbooted.to_string()), Liveness::Alive);
    }
    let foreign = ProcessIdentity { host: format!("not-{}", this.host), ..this };
    assert_eq!(owner_liveness(&foreign.to_string()), Liveness::Unknown);
    assert_eq!(owner_liveness("garbage"), Liveness::Unknown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_and_cancel_requests_stop_runs() {
    let (_dir, path, journal) = fresh();
    let (a, b, c) = (RunId::new(), RunId::new(), RunId::new());
    for (run, agent) in [(a, "mailer"), (b, "mailer"), (c, "reader")] {
        journal.append(&[run_started(run, 0, 1_000, agent, "x")]).await.unwrap();
    }
    assert!(journal.stop_requests(&[a, b, c]).await.unwrap().is_empty());
    assert!(journal.agent_enabled("mailer").await.unwrap(), "agents are enabled until disabled");

    journal.set_agent_enabled("mailer", false, "alice", 5_000).await.unwrap();
    assert!(!journal.agent_enabled("mailer").await.unwrap());
    journal.request_cancel(b, "bob", "wrong input", 5_001).await.unwrap();
    // Another process sees both.
    let other = SqliteJournal::open(&path).unwrap();
    assert_eq!(
        other.stop_requests(&[c, b, a]).await.unwrap(),
        [(b, "cancelled by bob: wrong input".to_string()), (a, "agent mailer was disabled by alice".to_string())]
    );
    assert!(other.stop_requests(&[]).await.unwrap().is_empty());

    other.set_agent_enabled("mailer", true, "carol", 6_000).await.unwrap();
    assert_eq!(journal.stop_requests(&[a, b, c]).await.unwrap(), [(b, "cancelled by bob: wrong input".to_string())]);
    let record = journal.agents().await.unwrap().into_iter().find(|r| r.name == "mailer").unwrap();
    assert_eq!(
        (record.enabled, record.changed_by.as_deref(), record.changed_at_ms),
        (true, Some("carol"), Some(6_000))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_versions_round_trip() {
    let (_dir, _path, journal) = fresh();
    let (v1, v2) = (AgentVersion("a".repeat(64)), AgentVersion("b".repeat(64)));
    let definition = json!({"name": "mailer", "prompt": "Be brief — «quoted»", "limits": {"max_steps": 3}});
    journal.register_agent(&TenantId::default(), "mailer", &v1, &definition, 1_000).await.unwrap();
    journal
        .register_agent(&TenantId::default(), "mailer", &v2, &json!({"name": "mailer", "v": 2}), 2_000)
        .await
        .unwrap();
    // Registering a version again keeps the first registration.
    journal.register_agent(&TenantId::default(), "mailer", &v1, &json!({"other": true}), 3_000).await.unwrap();
    journal.register_agent(&TenantId::default(), "reader", &v1, &json!({}), 1_500).await.unwrap();
    journal.set_agent_enabled("ghost", false, "ops", 4_000).await.unwrap();

    assert_eq!(journal.agent_definition("mailer", &v1).await.unwrap(), Some(definition));
    assert_eq!(journal.agent_definition("mailer", &AgentVersion("c".repeat(64))).await.unwrap(), None);
    assert_eq!(journal.agent_definition("nobody", &v1).await.unwrap(), None);

    let agents = journal.agents().await.unwrap();
    let summary: Vec<(&str, bool, u32, Option<&str>)> =
        agents.iter().map(|r| (r.name.as_str(), r.enabled, r.versions, r.latest_version.as_deref())).collect();
    assert_eq!(
        summary,
        [("ghost", false, 0, None), ("mailer", true, 2, Some(v2.0.as_str())), ("reader", true, 1, Some(v1.0.as_str())),]
    );
    assert_eq!(agents[1].changed_by, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_is_recorded_once_and_repeats_find_its_run() {
    let (_dir, path, journal) = fresh();
    let (first, second) = (RunId::new(), RunId::new());
    assert_eq!(journal.record_delivery("github", "d-1", first, 1_000).await.unwrap(), None);
    assert_eq!(journal.record_delivery("github", "d-1", second, 2_000).await.unwrap(), Some(first));
    // The same id from another hook is another delivery.
    assert_eq!(journal.record_delivery("stripe", "d-1", second, 2_000).await.unwrap(), None);
    // Another process on the file sees what this one recorded.
    let other = SqliteJournal::open(&path).unwrap().with_owner("other/1/1".into());
    assert_eq!(other.record_delivery("github", "d-1", RunId::new(), 3_000).await.unwrap(), Some(first));
    assert_eq!(other.record_delivery("stripe", "d-1", RunId::new(), 3_000).await.unwrap(), Some(second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_many_concurrent_recordings_of_a_delivery_wins() {
    let (_dir, path, journal) = fresh();
    let journal = std::sync::Arc::new(journal);
    let other = std::sync::Arc::new(SqliteJournal::open(&path).unwrap().with_owner("other/1/1".into()));
    let attempts: Vec<_> = (0..8)
        .map(|i| {
            let store = if i % 2 == 0 { journal.clone() } else { other.clone() };
            let run = RunId::new();
            tokio::spawn(async move { (run, store.record_delivery("hook", "same", run, 1_000 + i).await.unwrap()) })
        })
        .collect();
    let mut outcomes = Vec::new();
    for attempt in attempts {
        outcomes.push(attempt.await.unwrap());
    }
    let winners: Vec<RunId> = outcomes.iter().filter(|(_, found)| found.is_none()).map(|(run, _)| *run).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, found)| found.is_none_or(|run| run == winners[0])), "{outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_writes_do_not_stall_concurrent_appends() {
    let (_dir, _path, journal) = fresh();
    let journal = std::sync::Arc::new(journal);
    let mut tasks = Vec::new();
    for task in 0..16u64 {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            let run = RunId::new();
            journal.append(&[run_started(run, 0, task, "busy", "x")]).await.unwrap();
            for seq in 1..30 {
                journal.append(&[model_requested(run, seq, task, 1)]).await.unwrap();
                if seq % 10 == 0 {
                    journal.request_cancel(run, "ops", "test", seq).await.unwrap();
                    journal.set_agent_enabled("busy", seq % 20 == 0, "ops", seq).await.unwrap();
                }
            }
            run
        }));
    }
    let all = async {
        let mut runs = Vec::new();
        for task in tasks {
            runs.push(task.await.unwrap());
        }
        runs
    };
    let runs = tokio::time::timeout(std::time::Duration::from_secs(60), all).await.expect("no append is stuck");
    for run in runs {
        let report = journal.verify_chain(run).await.unwrap();
        assert!(report.is_intact() && report.events == 30, "{report:?}");
    }
}

/// Migration 1 exactly as released, to make a file from before the chain.
const SCHEMA_V1: &str = r#"
    CREATE TABLE schema_version (version INTEGER NOT NULL PRIMARY KEY, applied_at_ms INTEGER NOT NULL);
    INSERT INTO schema_version (version, applied_at_ms) VALUES (1, 0);
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, first_seq)
    );
    CREATE TABLE runs (
        run_id TEXT NOT NULL PRIMARY KEY,
        agent TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        steps INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cached_input_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        input_preview TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX runs_started ON runs (started_at_ms);
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_from_before_the_chain_opens_reads_and_goes_on_chained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let run = RunId::new();
    let old = [run_started(run, 0, 1_000, "veteran", "old input"), model_requested(run, 1, 1_001, 1)];
    {
        let conn = raw(&path);
        conn.execute_batch(SCHEMA_V1).unwrap();
        // The body exactly as version 1 wrote it.
        let body = format!(
            "[[0,1000,{}],[1,1001,{}]]",
            serde_json::to_string(&old[0].kind).unwrap(),
            serde_json::to_string(&old[1].kind).unwrap()
        );
        conn.execute(
            "INSERT INTO events (run_id, first_seq, last_seq, body) VALUES (?1, 0, 1, ?2)",
            rusqlite::params![run.to_string(), body],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO runs (run_id, agent, agent_version, status, started_at_ms, input_preview)
             VALUES (?1, 'veteran', 'v', 'running', 1000, 'old input')",
            [run.to_string()],
        )
        .unwrap();
    }

    let journal = SqliteJournal::open(&path).unwrap();
    assert_eq!(journal.events(run).await.unwrap(), old);
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(0, ChainFault::Unchained)], "{report:?}");
    assert_eq!((report.events, report.head), (2, None));
    assert_eq!(journal.unfinished_runs().await.unwrap()[0].1, None, "no lease was recorded before leases");

    // The run goes on: new events are chained after the old ones.
    let new = [run_resumed(run, 2, 5_000, journal.owner()), model_responded(run, 3, 5_001, 1, USAGE, 0.25)];
    journal.append(&new).await.unwrap();
    journal.append(&[run_finished(run, 4, 5_002, RunStatus::Succeeded, 1, USAGE, 0.25)]).await.unwrap();
    let mut all = old.to_vec();
    all.extend(new);
    assert_eq!(journal.events(run).await.unwrap()[..4], all[..]);
    let report = journal.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(0, ChainFault::Unchained)], "{report:?}");
    assert!(report.head.is_some());
    let summary = &journal.runs(&Default::default()).await.unwrap()[0];
    assert_eq!((summary.status, summary.steps), (RunStatus::Succeeded, 1));
}

#[test]
fn control_lookups_are_served_by_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    drop(SqliteJournal::open(&path).unwrap());
    let conn = raw(&path);
    let plan = |sql: &str| -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map(["[]"], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .join("; ")
    };
    // The stop-request poll: each asked run found by key, whatever the
    // number of runs and requests stored.
    let cancelled = plan("SELECT c.run_id FROM json_each(?1) j JOIN cancel_requests c ON c.run_id = j.value");
    assert!(cancelled.contains("SEARCH c USING PRIMARY KEY"), "{cancelled}");
    let disabled = plan(
        "SELECT r.run_id FROM json_each(?1) j JOIN runs r ON r.run_id = j.value
         JOIN agents a ON a.name = r.agent WHERE a.enabled = 0",
    );
    assert!(!disabled.contains("SCAN r") && !disabled.contains("SCAN a"), "{disabled}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_deploys_and_keys_conform() {
    let (_dir, _path, journal) = fresh();
    rein_testkit::access::run_all(&journal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_tick_is_claimed_once_and_repeats_find_its_run() {
    let (_dir, path, store) = fresh();
    let other = SqliteJournal::open(&path).unwrap().with_owner("other/1/1".into());
    rein_testkit::ticks::a_tick_is_claimed_once_and_repeats_find_its_run(&store, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_many_concurrent_claims_of_a_tick_wins() {
    let (_dir, path, store) = fresh();
    let other = SqliteJournal::open(&path).unwrap().with_owner("other/1/1".into());
    let handles: [std::sync::Arc<dyn ControlStore>; 2] = [std::sync::Arc::new(store), std::sync::Arc::new(other)];
    rein_testkit::ticks::one_of_many_concurrent_claims_of_a_tick_wins(&handles, 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_bookkeeping_is_pruned_and_the_rest_kept() {
    let (_dir, _path, journal) = fresh();
    rein_testkit::prune::old_bookkeeping_is_pruned_and_the_rest_kept(&journal).await;
}
