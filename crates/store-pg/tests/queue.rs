//! The run queue conformance suite from `rein_testkit`, run against the
//! PostgreSQL store, each case in a schema of its own; several stores on
//! one schema play several processes.

mod common;

use common::TestDb;
use rein_testkit::queue;
use rein_types::RunQueue;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_come_oldest_first_once_each() {
    let (_db, store) = TestDb::with_store().await;
    queue::claims_come_oldest_first_once_each(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_leases_are_reclaimed_and_heartbeats_keep_them() {
    let (_db, store) = TestDb::with_store().await;
    queue::expired_leases_are_reclaimed_and_heartbeats_keep_them(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_runs_go_back_and_completed_ones_leave() {
    let (_db, store) = TestDb::with_store().await;
    queue::released_runs_go_back_and_completed_ones_leave(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claim_run_takes_only_free_leases() {
    let (_db, store) = TestDb::with_store().await;
    queue::claim_run_takes_only_free_leases(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_take_each_run_once() {
    let db = TestDb::new().await;
    let mut handles: Vec<Arc<dyn RunQueue>> = Vec::new();
    for _ in 0..4 {
        handles.push(Arc::new(db.store().await));
    }
    queue::concurrent_claims_take_each_run_once(handles, 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_workers_wake_on_enqueue() {
    let db = TestDb::new().await;
    let waiter: Arc<dyn RunQueue> = Arc::new(db.store().await);
    let enqueuer: Arc<dyn RunQueue> = Arc::new(db.store().await);
    queue::waiting_workers_wake_on_enqueue(waiter, enqueuer).await;
}
