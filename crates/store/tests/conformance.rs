//! The journal conformance suite from `rein_testkit`, run against the SQLite
//! store: one test per case, each on its own temporary file.

use rein_store::SqliteJournal;
use rein_testkit::conformance;
use std::sync::Arc;
use tempfile::TempDir;

/// A fresh journal in a fresh directory; the directory lives as long as the
/// returned guard.
fn fresh() -> (TempDir, SqliteJournal) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let journal = SqliteJournal::open(dir.path().join("journal.db")).expect("open the journal");
    (dir, journal)
}

macro_rules! conformance_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let (_dir, journal) = fresh();
                conformance::$case(&journal).await;
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
    let (_dir, journal) = fresh();
    conformance::concurrent_appenders(Arc::new(journal)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failed_batches_do_not_fail_concurrent_ones() {
    let (_dir, journal) = fresh();
    conformance::failed_batches_do_not_fail_concurrent_ones(Arc::new(journal)).await;
}

#[tokio::test(flavor = "current_thread")]
async fn run_all_on_a_current_thread_runtime() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let next = std::sync::atomic::AtomicUsize::new(0);
    conformance::run_all(|| {
        let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        SqliteJournal::open(dir.path().join(format!("journal-{n}.db"))).expect("open the journal")
    })
    .await;
}
