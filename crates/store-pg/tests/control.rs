//! The store's operational side on a real server: the hash chain (the same
//! as SQLite's) and what tampering with the tables looks like, fencing
//! between processes, leases, the kill switch, cancel requests, the agent
//! registry, and migrations.

mod common;

use common::TestDb;
use rein_store::SqliteJournal;
use rein_store_pg::{PgConnectOptions, PgPool, PgPoolOptions, PgStore, SCHEMA_VERSION, StoreError};
use rein_testkit::conformance::{
    every_kind, model_requested, model_responded, run_finished, run_resumed, run_started, run_suspended,
};
use rein_types::{
    AgentVersion, ChainFault, ChainReport, ControlStore, Event, Journal, JournalError, Lease, RunId, RunStatus, Store,
    TenantId, Usage, chain_hash,
};
use serde_json::json;
use sqlx_core::query::query;
use std::str::FromStr;
use std::sync::Arc;

const USAGE: Usage = Usage { input_tokens: 10, output_tokens: 2, cached_input_tokens: 0 };

/// A run of `rows` rows of one event each: start, then requests.
async fn one_event_rows(store: &PgStore, rows: u64) -> RunId {
    let run = RunId::new();
    store.append(&[run_started(run, 0, 1_000, "chained", "go")]).await.unwrap();
    for seq in 1..rows {
        store.append(&[model_requested(run, seq, 1_000 + seq, seq as u32)]).await.unwrap();
    }
    run
}

fn faults(report: &ChainReport) -> Vec<(u64, ChainFault)> {
    report.problems.iter().map(|p| (p.seq, p.fault)).collect()
}

/// Runs `sql` with the run's id as `$1`, as someone with access to the
/// database might.
async fn exec(pool: &PgPool, sql: &'static str, run: RunId) {
    query::<sqlx_postgres::Postgres>(sql)
        .bind(run.to_string())
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

// ---------------------------------------------------------------------------
// The hash chain.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untouched_chain_verifies_and_is_the_sqlite_chain() {
    let (_db, store) = TestDb::with_store().await;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteJournal::open(dir.path().join("rein.db")).unwrap();
    let run = RunId::new();
    let events = every_kind(run, 1_000);
    // Rows of several events and of one.
    for range in [0..3, 3..4, 4..events.len()] {
        store.append(&events[range.clone()]).await.unwrap();
        sqlite.append(&events[range]).await.unwrap();
    }
    let report = store.verify_chain(run).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, events.len() as u64);

    // The head is the last link of a chain anyone can recompute...
    let mut head = rein_types::CHAIN_GENESIS;
    for event in &events {
        let element = format!("[{},{},{}]", event.seq, event.at_ms, serde_json::to_string(&event.kind).unwrap());
        head = chain_hash(&head, element.as_bytes());
    }
    let hex: String = head.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(report.head.as_deref(), Some(hex.as_str()));
    // ...and the SQLite journal's, event for event.
    assert_eq!(sqlite.verify_chain(run).await.unwrap(), report);
    assert_eq!(store.events(run).await.unwrap(), sqlite.events(run).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_event_is_found_at_its_seq() {
    let (db, store) = TestDb::with_store().await;
    let raw = db.raw().await;
    let run = one_event_rows(&store, 5).await;
    // Same length, same JSON shape, one step number changed.
    exec(
        &raw,
        "UPDATE events SET body = replace(body, '\"step\":2', '\"step\":7') WHERE run_id = $1 AND first_seq = 2",
        run,
    )
    .await;
    let edited = &store.events(run).await.unwrap()[2];
    assert!(matches!(edited.kind, rein_types::EventKind::ModelRequested { step: 7, .. }), "the edit reads back");
    let report = store.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(2, ChainFault::Edited)], "{report:?}");

    // Inside a row of several events, the edited one is named.
    let several = RunId::new();
    let events: Vec<Event> = (0..4)
        .map(|seq| if seq == 0 { run_started(several, 0, 1, "x", "y") } else { model_requested(several, seq, 1, 5) })
        .collect();
    store.append(&events).await.unwrap();
    exec(
        &raw,
        "UPDATE events SET body = replace(body, '[2,1,{\"type\":\"model_requested\",\"step\":5', '[2,1,{\"type\":\"model_requested\",\"step\":6') WHERE run_id = $1",
        several,
    )
    .await;
    let report = store.verify_chain(several).await.unwrap();
    assert_eq!(faults(&report), [(2, ChainFault::Edited)], "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_middle_row_breaks_the_chain() {
    let (db, store) = TestDb::with_store().await;
    let run = one_event_rows(&store, 5).await;
    exec(&db.raw().await, "DELETE FROM events WHERE run_id = $1 AND first_seq = 2", run).await;
    let report = store.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(3, ChainFault::Gap), (3, ChainFault::Broken)], "{report:?}");
    assert_eq!(report.events, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_rows_are_detected() {
    let (db, store) = TestDb::with_store().await;
    let raw = db.raw().await;
    // Bodies swapped between two rows, keys and hashes left in place.
    let run = one_event_rows(&store, 5).await;
    let swap_bodies = "UPDATE events SET body = CASE first_seq
            WHEN 1 THEN (SELECT body FROM events WHERE run_id = $1 AND first_seq = 3)
            ELSE (SELECT body FROM events WHERE run_id = $1 AND first_seq = 1) END
        WHERE run_id = $1 AND first_seq IN (1, 3)";
    exec(&raw, swap_bodies, run).await;
    let report = store.verify_chain(run).await.unwrap();
    assert!(!report.is_intact(), "{report:?}");
    assert!(faults(&report).contains(&(3, ChainFault::Gap)), "{report:?}");

    // Whole rows swapped: their keys exchanged, bodies and hashes moving with them.
    let run = one_event_rows(&store, 5).await;
    for swap in [
        "UPDATE events SET first_seq = -1, last_seq = -1 WHERE run_id = $1 AND first_seq = 1",
        "UPDATE events SET first_seq = 1, last_seq = 1 WHERE run_id = $1 AND first_seq = 3",
        "UPDATE events SET first_seq = 3, last_seq = 3 WHERE run_id = $1 AND first_seq = -1",
    ] {
        exec(&raw, swap, run).await;
    }
    let report = store.verify_chain(run).await.unwrap();
    let found = faults(&report);
    assert!(found.contains(&(3, ChainFault::Gap)) && found.contains(&(3, ChainFault::Broken)), "{report:?}");
    assert!(found.contains(&(1, ChainFault::Broken)), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_last_row_is_a_truncation() {
    let (db, store) = TestDb::with_store().await;
    let raw = db.raw().await;
    let run = one_event_rows(&store, 4).await;
    exec(&raw, "DELETE FROM events WHERE run_id = $1 AND first_seq = 3", run).await;
    let report = store.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(3, ChainFault::Truncated)], "{report:?}");

    // Every event gone, the summary left.
    exec(&raw, "DELETE FROM events WHERE run_id = $1", run).await;
    let report = store.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(0, ChainFault::Truncated)], "{report:?}");

    // A truncated run takes no append that would paper over the hole.
    let refused = store.append(&[model_requested(run, 3, 2_000, 3)]).await;
    assert!(refused.is_err(), "seq 3 is at or below the recorded head: {refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_chain_shows_against_the_recorded_head() {
    let (db, store) = TestDb::with_store().await;
    let raw = db.raw().await;
    let run = one_event_rows(&store, 3).await;
    // The last row's body edited and its hash recomputed to match: the
    // chain is consistent, but no longer ends at the recorded head.
    let row = |first_seq: i64| {
        query::<sqlx_postgres::Postgres>("SELECT body, hashes FROM events WHERE run_id = $1 AND first_seq = $2")
            .bind(run.to_string())
            .bind(first_seq)
            .fetch_one(&raw)
    };
    use sqlx_core::row::Row as _;
    let previous: Vec<u8> = row(1).await.unwrap().get(1);
    let previous: [u8; 32] = previous[..32].try_into().unwrap();
    let body: String = row(2).await.unwrap().get(0);
    let edited = body.replace("\"step\":2", "\"step\":9");
    let forged = chain_hash(&previous, &edited.as_bytes()[1..edited.len() - 1]);
    query::<sqlx_postgres::Postgres>("UPDATE events SET body = $2, hashes = $3 WHERE run_id = $1 AND first_seq = 2")
        .bind(run.to_string())
        .bind(&edited)
        .bind(&forged[..])
        .execute(&raw)
        .await
        .unwrap();
    let report = store.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(2, ChainFault::Broken)], "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripped_hashes_break_the_chain_and_unknown_runs_are_not_found() {
    let (db, store) = TestDb::with_store().await;
    let run = one_event_rows(&store, 3).await;
    exec(&db.raw().await, "UPDATE events SET hashes = NULL WHERE run_id = $1 AND first_seq = 2", run).await;
    let report = store.verify_chain(run).await.unwrap();
    assert_eq!(faults(&report), [(2, ChainFault::Broken)], "{report:?}");
    assert!(!report.is_intact());
    match store.verify_chain(RunId::new()).await {
        Err(JournalError::NotFound(_)) => {}
        other => panic!("an unknown run is not found, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Fencing between processes.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_appending_the_same_seq_one_wins() {
    let db = TestDb::new().await;
    let first = db.store().await.with_owner("host-a/1/1".into());
    let second = db.store().await.with_owner("host-b/2/2".into());
    assert_eq!((first.owner(), second.owner()), ("host-a/1/1", "host-b/2/2"));
    let run = RunId::new();
    first.append(&[run_started(run, 0, 1_000, "fenced", "x"), model_requested(run, 1, 1_001, 1)]).await.unwrap();
    first.append(&[model_responded(run, 2, 1_002, 1, USAGE, 0.5)]).await.unwrap();

    // Both believe the run is theirs and append the same seq at once, each
    // in turn going first.
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

/// Many processes race for every seq of one run, on separate tasks: each
/// seq is won exactly once, and what is stored is one intact chain.
async fn race(run: RunId, first_event: Event) {
    const PROCESSES: usize = 6;
    const SEQS: u64 = 15;
    let db = TestDb::new().await;
    let mut stores = Vec::new();
    for n in 0..PROCESSES {
        stores.push(Arc::new(db.store().await.with_owner(format!("racer-{n}/{n}/1"))));
    }
    stores[0].append(&[first_event]).await.unwrap();
    for seq in 1..=SEQS {
        let barrier = Arc::new(tokio::sync::Barrier::new(PROCESSES));
        let tasks: Vec<_> = stores
            .iter()
            .enumerate()
            .map(|(n, store)| {
                let (store, barrier) = (store.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let event = model_responded(run, seq, 2_000 + n as u64, seq as u32, USAGE, 0.25);
                    store.append(&[event]).await.is_ok()
                })
            })
            .collect();
        let mut wins = 0;
        for task in tasks {
            wins += usize::from(task.await.unwrap());
        }
        assert_eq!(wins, 1, "seq {seq}: exactly one of {PROCESSES} appenders wins");
    }
    let seqs: Vec<u64> = stores[1].events(run).await.unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..=SEQS).collect::<Vec<_>>());
    let report = stores[2].verify_chain(run).await.unwrap();
    assert!(report.is_intact() && report.events == SEQS + 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_processes_racing_for_each_seq_of_a_started_run_one_wins_each() {
    let run = RunId::new();
    race(run, run_started(run, 0, 1_000, "raced", "x")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_processes_racing_for_each_seq_of_a_run_without_a_summary_one_wins_each() {
    // No `RunStarted`: no summary row to lock, so the run's advisory lock
    // fences the appenders.
    let run = RunId::new();
    race(run, model_requested(run, 0, 1_000, 1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_starting_the_same_run_one_wins() {
    let db = TestDb::new().await;
    let (a, b) = (db.store().await.with_owner("a/1/1".into()), db.store().await.with_owner("b/2/2".into()));
    for _ in 0..10 {
        let run = RunId::new();
        let by_a = [run_started(run, 0, 1_000, "first", "a")];
        let by_b = [run_started(run, 0, 1_000, "first", "b"), model_requested(run, 1, 1_001, 1)];
        let (x, y) = tokio::join!(a.append(&by_a), b.append(&by_b));
        assert!(x.is_ok() != y.is_ok(), "exactly one start lands, got {x:?} and {y:?}");
        let winner = if x.is_ok() { "a/1/1" } else { "b/2/2" };
        assert_eq!(a.lease(run).await.unwrap().map(|l| l.owner).as_deref(), Some(winner));
        assert!(b.verify_chain(run).await.unwrap().is_intact());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_taken_over_by_another_process_and_back_keeps_one_chain() {
    let db = TestDb::new().await;
    let first = db.store().await;
    let second = db.store().await.with_owner("host-b/2/2".into());
    let run = RunId::new();
    first.append(&[run_started(run, 0, 1_000, "handover", "x")]).await.unwrap();
    first.append(&[model_requested(run, 1, 1_001, 1)]).await.unwrap();
    second.append(&[run_resumed(run, 2, 2_000, "host-b/2/2"), model_requested(run, 3, 2_001, 2)]).await.unwrap();
    assert_eq!(first.lease(run).await.unwrap().unwrap().owner, "host-b/2/2");
    first.append(&[run_resumed(run, 4, 3_000, first.owner()), model_requested(run, 5, 3_001, 3)]).await.unwrap();
    assert_eq!(second.lease(run).await.unwrap().unwrap().owner, first.owner());
    first.append(&[run_finished(run, 6, 3_002, RunStatus::Succeeded, 0, USAGE, 0.0)]).await.unwrap();
    let report = second.verify_chain(run).await.unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.events, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_whose_caller_stops_waiting_is_still_committed() {
    let (_db, store) = TestDb::with_store().await;
    let run = RunId::new();
    store.append(&[run_started(run, 0, 1_000, "impatient", "x")]).await.unwrap();
    let next = [model_requested(run, 1, 1_001, 1)];
    let append = store.append(&next);
    // Polled once (the transaction starts on its own task), then dropped.
    let _ = tokio::time::timeout(std::time::Duration::from_nanos(1), append).await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while store.events(run).await.unwrap().len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the abandoned append was never committed");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(store.verify_chain(run).await.unwrap().is_intact());
}

// ---------------------------------------------------------------------------
// Leases and the runs summary.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_status_follow_starts_suspensions_resumptions_and_finishes() {
    let (_db, store) = TestDb::with_store().await;
    let store = store.with_owner("runner/10/20".into());
    let run = RunId::new();
    let status = |store: &PgStore| {
        let store = store.clone();
        async move { store.runs(&Default::default()).await.unwrap()[0].status }
    };
    assert_eq!(store.lease(run).await.unwrap(), None);
    store.append(&[run_started(run, 0, 1_000, "leased", "x"), model_requested(run, 1, 1_001, 1)]).await.unwrap();
    let held = Some(Lease { owner: "runner/10/20".into(), since_ms: 1_000 });
    assert_eq!(store.lease(run).await.unwrap(), held);
    assert_eq!(status(&store).await, RunStatus::Running);

    store.append(&[run_suspended(run, 2, 1_500, RunStatus::WaitingApproval)]).await.unwrap();
    assert_eq!(store.lease(run).await.unwrap(), None, "a suspended run is held by no one");
    assert_eq!(status(&store).await, RunStatus::WaitingApproval);
    let unfinished = store.unfinished_runs().await.unwrap();
    assert_eq!(unfinished.len(), 1);
    assert_eq!(
        (unfinished[0].0.run_id, unfinished[0].0.status, &unfinished[0].1),
        (run, RunStatus::WaitingApproval, &None)
    );

    let other = store.clone().with_owner("other/30/40".into());
    other.append(&[run_resumed(run, 3, 9_000, "other/30/40")]).await.unwrap();
    let held = Some(Lease { owner: "other/30/40".into(), since_ms: 9_000 });
    assert_eq!(other.lease(run).await.unwrap(), held);
    assert_eq!(status(&store).await, RunStatus::Running);
    let unfinished = other.unfinished_runs().await.unwrap();
    assert_eq!((unfinished[0].0.status, &unfinished[0].1), (RunStatus::Running, &held));

    other.append(&[run_finished(run, 4, 9_500, RunStatus::Succeeded, 1, USAGE, 0.1)]).await.unwrap();
    assert_eq!(other.lease(run).await.unwrap(), None, "a finished run is held by no one");
    assert_eq!(status(&store).await, RunStatus::Succeeded);
    assert!(other.unfinished_runs().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_runs_are_listed_oldest_first() {
    let (_db, store) = TestDb::with_store().await;
    let (a, b, c, d) = (RunId::new(), RunId::new(), RunId::new(), RunId::new());
    store.append(&[run_started(b, 0, 2_000, "u", "b")]).await.unwrap();
    store.append(&[run_started(a, 0, 1_000, "u", "a")]).await.unwrap();
    store
        .append(&[run_started(c, 0, 3_000, "u", "c"), run_suspended(c, 1, 3_001, RunStatus::NeedsReconciliation)])
        .await
        .unwrap();
    store
        .append(&[run_started(d, 0, 500, "u", "d"), run_finished(d, 1, 501, RunStatus::Failed, 0, USAGE, 0.0)])
        .await
        .unwrap();
    let listed: Vec<(RunId, RunStatus, bool)> = store
        .unfinished_runs()
        .await
        .unwrap()
        .into_iter()
        .map(|(summary, lease)| (summary.run_id, summary.status, lease.is_some_and(|l| l.owner == store.owner())))
        .collect();
    assert_eq!(
        listed,
        [(a, RunStatus::Running, true), (b, RunStatus::Running, true), (c, RunStatus::NeedsReconciliation, false)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nul_in_the_input_is_kept_in_the_event_and_replaced_in_the_preview() {
    let (_db, store) = TestDb::with_store().await;
    let run = RunId::new();
    let events = [run_started(run, 0, 1_000, "nul", "a\0b\nrest")];
    store.append(&events).await.unwrap();
    assert_eq!(store.events(run).await.unwrap(), events);
    assert_eq!(store.runs(&Default::default()).await.unwrap()[0].input_preview, "a\u{fffd}b");
}

// ---------------------------------------------------------------------------
// The control tables.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_and_cancel_requests_stop_runs() {
    let db = TestDb::new().await;
    let store = db.store().await;
    let (a, b, c) = (RunId::new(), RunId::new(), RunId::new());
    for (run, agent) in [(a, "mailer"), (b, "mailer"), (c, "reader")] {
        store.append(&[run_started(run, 0, 1_000, agent, "x")]).await.unwrap();
    }
    assert!(store.stop_requests(&[a, b, c]).await.unwrap().is_empty());
    assert!(store.agent_enabled("mailer").await.unwrap(), "agents are enabled until disabled");

    store.set_agent_enabled("mailer", false, "alice", 5_000).await.unwrap();
    assert!(!store.agent_enabled("mailer").await.unwrap());
    store.request_cancel(b, "bob", "wrong input", 5_001).await.unwrap();
    // Another process sees both.
    let other = db.store().await;
    assert_eq!(
        other.stop_requests(&[c, b, a]).await.unwrap(),
        [(b, "cancelled by bob: wrong input".to_string()), (a, "agent mailer was disabled by alice".to_string())]
    );
    assert!(other.stop_requests(&[]).await.unwrap().is_empty());

    other.set_agent_enabled("mailer", true, "carol", 6_000).await.unwrap();
    assert_eq!(store.stop_requests(&[a, b, c]).await.unwrap(), [(b, "cancelled by bob: wrong input".to_string())]);
    let record = store.agents().await.unwrap().into_iter().find(|r| r.name == "mailer").unwrap();
    assert_eq!(
        (record.enabled, record.changed_by.as_deref(), record.changed_at_ms),
        (true, Some("carol"), Some(6_000))
    );
    // A second request replaces the first.
    store.request_cancel(b, "dave", "really", 7_000).await.unwrap();
    assert_eq!(store.stop_requests(&[b]).await.unwrap(), [(b, "cancelled by dave: really".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_versions_round_trip() {
    let (_db, store) = TestDb::with_store().await;
    let (v1, v2) = (AgentVersion("a".repeat(64)), AgentVersion("b".repeat(64)));
    let definition = json!({"name": "mailer", "prompt": "Be brief — «quoted»", "limits": {"max_steps": 3}, "x": 0.1});
    store.register_agent(&TenantId::default(), "mailer", &v1, &definition, 1_000).await.unwrap();
    store.register_agent(&TenantId::default(), "mailer", &v2, &json!({"name": "mailer", "v": 2}), 2_000).await.unwrap();
    // Registering a version again keeps the first registration.
    store.register_agent(&TenantId::default(), "mailer", &v1, &json!({"other": true}), 3_000).await.unwrap();
    store.register_agent(&TenantId::default(), "reader", &v1, &json!({}), 1_500).await.unwrap();
    store.set_agent_enabled("ghost", false, "ops", 4_000).await.unwrap();

    assert_eq!(store.agent_definition("mailer", &v1).await.unwrap(), Some(definition));
    assert_eq!(store.agent_definition("mailer", &AgentVersion("c".repeat(64))).await.unwrap(), None);
    assert_eq!(store.agent_definition("nobody", &v1).await.unwrap(), None);

    let agents = store.agents().await.unwrap();
    let summary: Vec<(&str, bool, u32, Option<&str>)> =
        agents.iter().map(|r| (r.name.as_str(), r.enabled, r.versions, r.latest_version.as_deref())).collect();
    assert_eq!(
        summary,
        [("ghost", false, 0, None), ("mailer", true, 2, Some(v2.0.as_str())), ("reader", true, 1, Some(v1.0.as_str())),]
    );
    assert_eq!(agents[1].changed_by, None);

    // Versions registered in the same millisecond: the later one is the latest.
    let (v3, v4) = (AgentVersion("d".repeat(64)), AgentVersion("0".repeat(64)));
    store.register_agent(&TenantId::default(), "twins", &v3, &json!({}), 9_000).await.unwrap();
    store.register_agent(&TenantId::default(), "twins", &v4, &json!({}), 9_000).await.unwrap();
    let twins = store.agents().await.unwrap().into_iter().find(|r| r.name == "twins").unwrap();
    assert_eq!(twins.latest_version.as_deref(), Some(v4.0.as_str()));
}

// ---------------------------------------------------------------------------
// Connecting and migrations.
// ---------------------------------------------------------------------------

async fn versions(raw: &PgPool) -> Vec<i64> {
    sqlx_core::query_scalar::query_scalar::<sqlx_postgres::Postgres, i64>(
        "SELECT version FROM schema_version ORDER BY version",
    )
    .fetch_all(raw)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_delivery_is_recorded_once_and_repeats_find_its_run() {
    let (db, store) = TestDb::with_store().await;
    let (first, second) = (RunId::new(), RunId::new());
    assert_eq!(store.record_delivery("github", "d-1", first, 1_000).await.unwrap(), None);
    assert_eq!(store.record_delivery("github", "d-1", second, 2_000).await.unwrap(), Some(first));
    // The same id from another hook is another delivery.
    assert_eq!(store.record_delivery("stripe", "d-1", second, 2_000).await.unwrap(), None);
    // Another process on the schema sees what this one recorded.
    let other = db.store().await;
    assert_eq!(other.record_delivery("github", "d-1", RunId::new(), 3_000).await.unwrap(), Some(first));
    assert_eq!(other.record_delivery("stripe", "d-1", RunId::new(), 3_000).await.unwrap(), Some(second));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_many_concurrent_recordings_of_a_delivery_wins() {
    let (db, store) = TestDb::with_store().await;
    let other = db.store().await;
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let store = if i % 2 == 0 { store.clone() } else { other.clone() };
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_connecting_at_once_migrate_once() {
    let db = TestDb::new().await;
    let connects: Vec<_> = (0..6)
        .map(|_| {
            let options = db.options();
            tokio::spawn(async move { PgStore::connect_with(options, PgPoolOptions::new().max_connections(2)).await })
        })
        .collect();
    let mut stores = Vec::new();
    for connect in connects {
        stores.push(connect.await.unwrap().expect("every store connects"));
    }
    assert_eq!(versions(&db.raw().await).await, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    // They all work on the one schema.
    let run = RunId::new();
    stores[0].append(&[run_started(run, 0, 1, "shared", "x")]).await.unwrap();
    stores[5].append(&[model_requested(run, 1, 2, 1)]).await.unwrap();
    assert_eq!(stores[3].events(run).await.unwrap().len(), 2);
    // Connecting again changes nothing.
    drop(db.store().await);
    assert_eq!(versions(&db.raw().await).await, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_from_a_newer_build_is_refused_untouched() {
    let (db, store) = TestDb::with_store().await;
    let run = RunId::new();
    store.append(&[run_started(run, 0, 1, "old", "x")]).await.unwrap();
    let raw = db.raw().await;
    query::<sqlx_postgres::Postgres>("INSERT INTO schema_version (version, applied_at_ms) VALUES ($1, 0)")
        .bind(SCHEMA_VERSION + 1)
        .execute(&raw)
        .await
        .unwrap();
    match PgStore::connect_with(db.options(), PgPoolOptions::new()).await {
        Err(error @ StoreError::NewerSchema { found, supported, .. }) => {
            assert_eq!((found, supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
            assert!(error.to_string().contains("upgrade rein"), "{error}");
        }
        other => panic!("a newer schema must be refused, got {other:?}"),
    }
    let mut expected: Vec<i64> = (1..=SCHEMA_VERSION).collect();
    expected.push(SCHEMA_VERSION + 1);
    assert_eq!(versions(&raw).await, expected);
    assert_eq!(store.events(run).await.unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_server_is_a_connect_error_naming_it_without_the_password() {
    // Nothing listens on port 1.
    let options = PgConnectOptions::from_str("postgres://rein:secret@127.0.0.1:1/journal").unwrap();
    let started = std::time::Instant::now();
    match PgStore::connect_with(options, PgPoolOptions::new()).await {
        Err(error @ StoreError::Connect { .. }) => {
            let message = error.to_string();
            assert!(message.contains("rein@127.0.0.1:1/journal"), "{message}");
            assert!(!message.contains("secret"), "{message}");
            assert!(started.elapsed() < std::time::Duration::from_secs(5), "reported at once, not after retries");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    let bad = PgStore::connect("postgres://127.0.0.1:notaport/journal").await;
    assert!(matches!(bad, Err(StoreError::Url(_))), "{bad:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_deploys_and_keys_conform() {
    let (_db, store) = TestDb::with_store().await;
    rein_testkit::access::run_all(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_tick_is_claimed_once_and_repeats_find_its_run() {
    let (db, store) = TestDb::with_store().await;
    let other = db.store().await;
    rein_testkit::ticks::a_tick_is_claimed_once_and_repeats_find_its_run(&store, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_many_concurrent_claims_of_a_tick_wins() {
    let (db, store) = TestDb::with_store().await;
    let other = db.store().await;
    let handles: [Arc<dyn ControlStore>; 2] = [Arc::new(store), Arc::new(other)];
    rein_testkit::ticks::one_of_many_concurrent_claims_of_a_tick_wins(&handles, 16).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_bookkeeping_is_pruned_and_the_rest_kept() {
    let (_db, store) = TestDb::with_store().await;
    rein_testkit::prune::old_bookkeeping_is_pruned_and_the_rest_kept(&store).await;
}
