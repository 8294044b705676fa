//! What every [`Store`] must do when pruned: delete the bookkeeping older
//! than the cut that nothing needs, and keep the rest. Run against each
//! backend by its own tests.

use crate::conformance::{run_finished, run_started};
use crate::queue::queued;
use rein_types::{Pruned, RunId, RunStatus, Store, Usage};

const OLD: u64 = 1_000;
const CUT: u64 = 5_000;
const NEW: u64 = 9_000;

pub async fn old_bookkeeping_is_pruned_and_the_rest_kept(store: &dyn Store) {
    // Deliveries and ticks: one old, one new each.
    store.record_delivery("hook", "old", RunId::new(), OLD).await.expect("record");
    store.record_delivery("hook", "new", RunId::new(), NEW).await.expect("record");
    store.claim_tick("agent", "daily", 60_000, RunId::new(), OLD).await.expect("claim");
    store.claim_tick("agent", "daily", 120_000, RunId::new(), NEW).await.expect("claim");
    // Cancel requests: an old one of a finished run goes; an old one of a
    // run still going stays (it must still stop it).
    let (finished, going) = (RunId::new(), RunId::new());
    let none = Usage::default();
    let events = [
        run_started(finished, 0, OLD, "agent", "x"),
        run_finished(finished, 1, OLD, RunStatus::Cancelled, 0, none, 0.0),
    ];
    store.append(&events).await.expect("append");
    store.append(&[run_started(going, 0, OLD, "agent", "y")]).await.expect("append");
    store.request_cancel(finished, "ops", "done with", OLD).await.expect("cancel");
    store.request_cancel(going, "ops", "stop it", OLD).await.expect("cancel");
    // Queue rows: an old done one goes; an old queued one stays.
    let (done, waiting) = (queued(OLD, "done"), queued(OLD + 1, "waiting"));
    store.enqueue(&done).await.expect("enqueue");
    store.enqueue(&waiting).await.expect("enqueue");
    let claim = store.claim("w", 1_000, OLD).await.expect("claim").expect("a run to claim");
    assert_eq!(claim.run.run_id, done.run_id, "oldest first");
    store.complete(done.run_id, "w").await.expect("complete");

    let pruned = store.prune(CUT).await.expect("prune");
    assert_eq!(pruned, Pruned { webhook_deliveries: 1, schedule_ticks: 1, cancel_requests: 1, queue_rows: 1 });
    assert_eq!(store.prune(CUT).await.expect("prune again"), Pruned::default(), "nothing left to prune");

    // What stays still works: the new delivery and tick are still found,
    // the old ones can be recorded anew, the going run still must stop, the
    // queued run is still claimable.
    assert!(store.record_delivery("hook", "new", RunId::new(), NEW).await.expect("record").is_some());
    assert!(store.record_delivery("hook", "old", RunId::new(), NEW).await.expect("record").is_none());
    assert!(store.claim_tick("agent", "daily", 120_000, RunId::new(), NEW).await.expect("claim").is_some());
    let stops = store.stop_requests(&[finished, going]).await.expect("stops");
    assert_eq!(stops.iter().map(|(run, _)| *run).collect::<Vec<_>>(), [going]);
    let claim = store.claim("w", 1_000, NEW).await.expect("claim").expect("the waiting run");
    assert_eq!(claim.run.run_id, waiting.run_id);
    assert!(store.events(finished).await.expect("events").len() == 2, "journals are never pruned");
}
