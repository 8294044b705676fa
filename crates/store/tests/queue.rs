//! The run queue conformance suite from `rein_testkit`, run against the
//! SQLite store; several handles on one file play several processes.

use rein_store::SqliteJournal;
use rein_testkit::queue;
use rein_types::RunQueue;
use std::sync::Arc;
use tempfile::TempDir;

fn fresh() -> (TempDir, SqliteJournal) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let journal = SqliteJournal::open(dir.path().join("journal.db")).expect("open the journal");
    (dir, journal)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_come_oldest_first_once_each() {
    let (_dir, store) = fresh();
    queue::claims_come_oldest_first_once_each(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_reclaimed_and_heartbeats_keep_them() {
    let (_dir, store) = fresh();
    queue::expired_leases_are_reclaimed_and_heartbeats_keep_them(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_runs_go_back_and_completed_ones_leave() {
    let (_dir, store) = fresh();
    queue::released_runs_go_back_and_completed_ones_leave(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_run_takes_only_free_leases() {
    let (_dir, store) = fresh();
    queue::claim_run_takes_only_free_leases(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_take_each_run_once() {
    let (dir, _store) = fresh();
    let path = dir.path().join("journal.db");
    let handles: Vec<Arc<dyn RunQueue>> =
        (0..4).map(|_| Arc::new(SqliteJournal::open(&path).unwrap()) as Arc<dyn RunQueue>).collect();
    queue::concurrent_claims_take_each_run_once(handles, 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_workers_wake_on_enqueue() {
    let (dir, store) = fresh();
    let store: Arc<dyn RunQueue> = Arc::new(store);
    // In-process: woken at once.
    queue::waiting_workers_wake_on_enqueue(store.clone(), store).await;
    // Another handle on the file, as another process: by the poll.
    let path = dir.path().join("journal.db");
    let other: Arc<dyn RunQueue> = Arc::new(SqliteJournal::open(&path).unwrap());
    let waiter: Arc<dyn RunQueue> = Arc::new(SqliteJournal::open(&path).unwrap());
    queue::waiting_workers_wake_on_enqueue(waiter, other).await;
}
