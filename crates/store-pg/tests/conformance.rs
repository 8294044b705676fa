//! The journal conformance suite from `rein_testkit`, run against the
//! PostgreSQL store: one test per case, each in a schema of its own.

mod common;

use common::TestDb;
use rein_testkit::conformance;
use std::sync::{Arc, Mutex};

macro_rules! conformance_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (_db, store) = TestDb::with_store().await;
                conformance::$case(&store).await;
            }
        )*
    };
}

conformance_cases!(
    append_then_read_in_order,
    every_event_kind_round_trips,
    duplicate_seq_is_rejected_atomically,
    summary_follows_run_started,
    summary_sums_model_responses,
    run_finished_totals_win,
    runs_filter_and_order,
    resolve_by_id_and_prefix,
    suspended_and_resumed_runs_list_their_status,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appenders() {
    let (_db, store) = TestDb::with_store().await;
    conformance::concurrent_appenders(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_batches_do_not_fail_concurrent_ones() {
    let (_db, store) = TestDb::with_store().await;
    conformance::failed_batches_do_not_fail_concurrent_ones(Arc::new(store)).await;
}

/// Every case on a current-thread runtime, each on a fresh schema (made
/// before the suite starts: `run_all` asks for its journals synchronously).
#[tokio::test(flavor = "current_thread")]
async fn run_all_on_a_current_thread_runtime() {
    const CASES: usize = 13;
    let mut dbs = Vec::with_capacity(CASES);
    let mut stores = Vec::with_capacity(CASES);
    for _ in 0..CASES {
        let (db, store) = TestDb::with_store().await;
        dbs.push(db);
        stores.push(store);
    }
    let stores = Mutex::new(stores);
    conformance::run_all(|| stores.lock().unwrap().pop().expect("a store for every case")).await;
}
