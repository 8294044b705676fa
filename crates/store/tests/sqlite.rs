//! SQLite-specific behaviour the conformance suite cannot express:
//! durability across reopening, crash recovery, schema versioning, and how
//! damaged files are reported.

use rein_store::{SCHEMA_VERSION, SqliteJournal, StoreError, default_path};
use rein_testkit::conformance::{every_kind, model_requested, model_responded, run_finished, run_started};
use rein_types::{Journal, JournalError, RunFilter, RunId, RunStatus, Usage};

fn raw(path: &std::path::Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw connection")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_survive_closing_and_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested").join("deeper").join("rein.db");
    let run = RunId::new();
    let events = every_kind(run, 1_000);
    {
        let journal = SqliteJournal::open(&path).unwrap();
        journal.append(&events[..4]).await.unwrap();
        journal.append(&events[4..]).await.unwrap();
    }
    assert!(path.exists(), "open creates the parent directories");

    let journal = SqliteJournal::open(&path).unwrap();
    assert_eq!(journal.events(run).await.unwrap(), events);
    let runs = journal.runs(&RunFilter::default()).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].status, RunStatus::LimitReached);
    assert_eq!(runs[0].input_preview, "Résumé \"quoted\"");
    assert_eq!(journal.resolve(&run.to_string()[..13]).await.unwrap(), run);
    drop(journal);

    let versions: Vec<i64> = raw(&path)
        .prepare("SELECT version FROM schema_version ORDER BY version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>(), "reopening applies no migration twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_cut_off_by_a_crash_is_listed_as_running() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    let run = RunId::new();
    let usage = Usage { input_tokens: 50, output_tokens: 5, cached_input_tokens: 0 };
    let crashed = SqliteJournal::open(&path).unwrap();
    crashed.append(&[run_started(run, 0, 1_000, "crashy", "do it"), model_requested(run, 1, 1_001, 1)]).await.unwrap();
    crashed.append(&[model_responded(run, 2, 1_002, 1, usage, 0.5)]).await.unwrap();
    // No clean shutdown: the writer keeps its connection and the WAL is never
    // checkpointed, as when the process dies.
    std::mem::forget(crashed);

    let journal = SqliteJournal::open(&path).unwrap();
    let runs = journal.runs(&RunFilter { status: Some(RunStatus::Running), ..RunFilter::default() }).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].run_id, runs[0].steps, runs[0].finished_at_ms), (run, 1, None));
    assert_eq!(journal.events(run).await.unwrap().len(), 3);

    // The run can still be finished by whoever picks it up.
    journal.append(&[run_finished(run, 3, 2_000, RunStatus::Failed, 1, usage, 0.5)]).await.unwrap();
    let runs = journal.runs(&RunFilter::default()).await.unwrap();
    assert_eq!((runs[0].status, runs[0].finished_at_ms), (RunStatus::Failed, Some(2_000)));
}

#[test]
fn a_file_from_a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    drop(SqliteJournal::open(&path).unwrap());
    let newer = SCHEMA_VERSION + 1;
    raw(&path).execute("INSERT INTO schema_version (version, applied_at_ms) VALUES (?1, 0)", [newer]).unwrap();
    let before = std::fs::read(&path).unwrap();

    let error = SqliteJournal::open(&path).unwrap_err();
    match &error {
        StoreError::NewerSchema { found, supported, .. } => assert_eq!((*found, *supported), (newer, SCHEMA_VERSION)),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&format!("schema version {newer}")), "{message}");
    assert!(message.contains("upgrade rein"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), before, "a refused file is not modified");
}

#[test]
fn a_file_that_is_not_a_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    std::fs::write(&path, b"this is not an SQLite database, just some text long enough to have a header").unwrap();
    match SqliteJournal::open(&path) {
        Err(StoreError::Open { .. }) => {}
        other => panic!("expected StoreError::Open, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_event_body_is_reported_as_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    let journal = SqliteJournal::open(&path).unwrap();
    let run = RunId::new();
    journal.append(&[run_started(run, 0, 1, "a", "x")]).await.unwrap();
    journal.append(&[model_requested(run, 1, 2, 1)]).await.unwrap();
    raw(&path)
        .execute(
            "UPDATE events SET body = '[[1, 2, {\"truncated' WHERE run_id = ?1 AND first_seq = 1",
            [run.to_string()],
        )
        .unwrap();
    match journal.events(run).await {
        Err(JournalError::Corrupt { run: bad, seq: 1, .. }) => assert_eq!(bad, run),
        other => panic!("expected Corrupt at seq 1, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_queued_before_drop_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    let journal = std::sync::Arc::new(SqliteJournal::open(&path).unwrap());
    let mut tasks = Vec::new();
    let mut runs = Vec::new();
    for n in 0..20 {
        let run = RunId::new();
        runs.push(run);
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move { journal.append(&[run_started(run, 0, n, "drop", "x")]).await }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    drop(journal);
    let journal = SqliteJournal::open(&path).unwrap();
    assert_eq!(journal.runs(&RunFilter::default()).await.unwrap().len(), runs.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn cancelled_appends_lose_no_batch_and_stall_no_one() {
    const TASKS: usize = 64;
    const APPENDS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    let journal = std::sync::Arc::new(SqliteJournal::open(&path).unwrap());
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let journal = journal.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..APPENDS {
                let events = [run_started(RunId::new(), 0, n as u64, "cancel", "x")];
                if (task + n) % 2 == 0 {
                    journal.append(&events).await.unwrap();
                    continue;
                }
                // Polled once (which commits the batch or queues it), then
                // dropped on the next poll whatever it was told meanwhile:
                // a queued batch, or a lead handed to this waiter, is left
                // behind by a future that is gone.
                tokio::select! {
                    biased;
                    () = tokio::task::yield_now() => {}
                    outcome = journal.append(&events) => outcome.unwrap(),
                }
            }
        }));
    }
    let all = async {
        for task in tasks {
            task.await.unwrap();
        }
    };
    // A lost lead leaves the appenders still waiting stuck until an append
    // that never comes.
    tokio::time::timeout(std::time::Duration::from_secs(60), all).await.expect("no appender is left waiting");

    // Every batch was queued or committed by its first poll, and all are
    // committed by now, the cancelled ones included.
    let count = |path: &std::path::Path| -> i64 {
        raw(path).query_row("SELECT COUNT(*) FROM events", [], |row| row.get(0)).unwrap()
    };
    assert_eq!(count(&path), (TASKS * APPENDS) as i64);
    let later = [run_started(RunId::new(), 0, 1, "cancel", "later")];
    tokio::time::timeout(std::time::Duration::from_secs(5), journal.append(&later))
        .await
        .expect("a later append is not stuck")
        .unwrap();
    assert_eq!(count(&path), (TASKS * APPENDS) as i64 + 1);
}

#[test]
fn listings_are_served_by_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rein.db");
    drop(SqliteJournal::open(&path).unwrap());
    let conn = raw(&path);
    let plan = |sql: &str| -> String {
        conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap()
            .join("; ")
    };
    for (sql, index) in [
        ("SELECT * FROM runs ORDER BY started_at_ms DESC, run_id DESC LIMIT 20", "runs_started"),
        // Filters walk the same index and stop at the limit: one index is
        // cheaper to keep on every run's commits than one per filter.
        ("SELECT * FROM runs WHERE agent = 'a' ORDER BY started_at_ms DESC, run_id DESC LIMIT 20", "runs_started"),
        ("SELECT * FROM runs WHERE status = 'running' ORDER BY started_at_ms DESC, run_id DESC", "runs_started"),
    ] {
        let plan = plan(sql);
        assert!(plan.contains(index), "{sql}: {plan}");
        assert!(!plan.contains("TEMP B-TREE"), "{sql} needs no sort: {plan}");
    }
}

#[test]
fn the_default_path_is_in_the_data_directory() {
    let path = default_path();
    assert!(path.ends_with("rein/rein.db"), "{}", path.display());
}
