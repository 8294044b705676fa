//! The run queue conformance suite: what every [`RunQueue`] must do, run
//! against each store. Cases take queue handles the way separate processes
//! would hold them (several handles on one file or database), and the
//! caller's clock is played with explicit times, so lease expiries happen
//! without waiting.

use rein_types::{AgentVersion, QueuedRun, RunId, RunQueue};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TTL: u64 = 1_000;
const T0: u64 = 1_700_000_000_000;

/// A run to enqueue, enqueued at `at_ms`.
pub fn queued(at_ms: u64, input: &str) -> QueuedRun {
    QueuedRun {
        run_id: RunId::new(),
        tenant: rein_types::TenantId::default(),
        agent: "agent".to_owned(),
        agent_version: AgentVersion("v1".to_owned()),
        input: input.to_owned(),
        enqueued_at_ms: at_ms,
    }
}

/// Oldest first, each run once; enqueuing a known id changes nothing.
pub async fn claims_come_oldest_first_once_each(queue: &dyn RunQueue) {
    let (b, a, c) = (queued(T0 + 2, "b"), queued(T0 + 1, "a"), queued(T0 + 3, "c"));
    for run in [&b, &a, &c] {
        queue.enqueue(run).await.unwrap();
    }
    queue.enqueue(&QueuedRun { input: "changed".into(), ..a.clone() }).await.unwrap();
    let depth = queue.queue_depth().await.unwrap();
    assert_eq!((depth.queued, depth.claimed, depth.lease_expiries), (3, 0, 0));
    let mut order = Vec::new();
    while let Some(claim) = queue.claim("w1", TTL, T0 + 10).await.unwrap() {
        assert_eq!(claim.taken_over_from, None);
        order.push(claim.run);
    }
    assert_eq!(order, vec![a, b, c], "oldest first, as enqueued (a re-enqueue changes nothing)");
    let depth = queue.queue_depth().await.unwrap();
    assert_eq!((depth.queued, depth.claimed), (0, 3));
}

/// A lease that expires is claimed by another worker (counted as an
/// expiry); one kept by heartbeats is not; the old holder's heartbeat
/// then no longer names the run.
pub async fn expired_leases_are_reclaimed_and_heartbeats_keep_them(queue: &dyn RunQueue) {
    let run = queued(T0, "task");
    queue.enqueue(&run).await.unwrap();
    let claim = queue.claim("w1", TTL, T0).await.unwrap().expect("a run to claim");
    assert_eq!(claim.run.run_id, run.run_id);
    assert!(queue.claim("w2", TTL, T0 + 500).await.unwrap().is_none(), "held by w1");
    assert_eq!(queue.heartbeat("w1", TTL, T0 + 900).await.unwrap(), vec![run.run_id]);
    assert!(queue.claim("w2", TTL, T0 + 1_500).await.unwrap().is_none(), "the heartbeat extended the lease");
    let taken = queue.claim("w2", TTL, T0 + 2_000).await.unwrap().expect("the expired lease is claimable");
    assert_eq!(taken.run, run);
    assert_eq!(taken.taken_over_from.as_deref(), Some("w1"));
    assert_eq!(queue.heartbeat("w1", TTL, T0 + 2_100).await.unwrap(), Vec::<RunId>::new(), "w1 lost it");
    assert_eq!(queue.heartbeat("w2", TTL, T0 + 2_100).await.unwrap(), vec![run.run_id]);
    // A finish reported by the ex-holder changes nothing.
    queue.complete(run.run_id, "w1").await.unwrap();
    assert_eq!(queue.queue_depth().await.unwrap().claimed, 1);
    assert_eq!(queue.queue_depth().await.unwrap().lease_expiries, 1);
}

/// A released run is claimable by anyone at once; a completed one by
/// nobody.
pub async fn released_runs_go_back_and_completed_ones_leave(queue: &dyn RunQueue) {
    let run = queued(T0, "task");
    let tenant = rein_types::TenantId::default();
    queue.enqueue(&run).await.unwrap();
    assert_eq!(queue.live_runs(&tenant).await.unwrap(), 1, "queued runs are live, counted by tenant");
    queue.claim("w1", TTL, T0).await.unwrap().expect("claimed");
    assert_eq!(queue.live_runs(&tenant).await.unwrap(), 1, "claimed runs are live");
    queue.release(run.run_id, "w2").await.unwrap();
    assert!(queue.claim("w2", TTL, T0 + 1).await.unwrap().is_none(), "only the holder releases");
    queue.release(run.run_id, "w1").await.unwrap();
    assert_eq!(queue.queue_depth().await.unwrap().queued, 1);
    let again = queue.claim("w2", TTL, T0 + 2).await.unwrap().expect("released runs are claimable at once");
    assert_eq!(again.taken_over_from, None, "a release is not an expiry");
    queue.complete(run.run_id, "w2").await.unwrap();
    assert_eq!(queue.live_runs(&tenant).await.unwrap(), 0, "completed runs are not live");
    let elsewhere = QueuedRun { tenant: rein_types::TenantId::parse("elsewhere").unwrap(), ..queued(T0 + 5, "other") };
    queue.enqueue(&elsewhere).await.unwrap();
    assert_eq!(queue.live_runs(&tenant).await.unwrap(), 0, "another tenant's runs do not count");
    assert_eq!(queue.live_runs(&elsewhere.tenant).await.unwrap(), 1);
    let other = queue.claim("w3", TTL, T0 + 10 * TTL).await.unwrap().expect("the other tenant's run");
    assert_eq!(other.run.run_id, elsewhere.run_id);
    queue.complete(elsewhere.run_id, "w3").await.unwrap();
    assert!(queue.claim("w3", TTL, T0 + 10 * TTL).await.unwrap().is_none(), "completed runs are not claimed");
    let depth = queue.queue_depth().await.unwrap();
    assert_eq!((depth.queued, depth.claimed, depth.lease_expiries), (0, 0, 0));
}

/// `claim_run` adds a run it does not know and takes a lease nobody else
/// holds, but never one another owner holds unexpired.
pub async fn claim_run_takes_only_free_leases(queue: &dyn RunQueue) {
    let run = queued(T0, "driven here");
    assert!(queue.claim_run(&run, "server", TTL, T0).await.unwrap(), "a new run");
    assert!(queue.claim_run(&run, "server", TTL, T0 + 100).await.unwrap(), "its own lease, extended");
    assert!(!queue.claim_run(&run, "other", TTL, T0 + 200).await.unwrap(), "held by the server");
    assert!(queue.claim("worker", TTL, T0 + 300).await.unwrap().is_none());
    assert!(queue.claim_run(&run, "other", TTL, T0 + 1_200).await.unwrap(), "the server's lease expired");
    assert_eq!(queue.queue_depth().await.unwrap().lease_expiries, 1);
    queue.complete(run.run_id, "other").await.unwrap();
    // A run waiting for people is taken up again by whoever decides.
    assert!(queue.claim_run(&run, "server", TTL, T0 + 5_000).await.unwrap());
}

/// Workers claiming at once through separate handles: every run is claimed
/// exactly once.
pub async fn concurrent_claims_take_each_run_once(handles: Vec<Arc<dyn RunQueue>>, runs: usize) {
    let first = handles.first().expect("at least one handle").clone();
    for i in 0..runs {
        first.enqueue(&queued(T0 + i as u64, &format!("task{i}"))).await.unwrap();
    }
    let mut workers = tokio::task::JoinSet::new();
    for (index, queue) in handles.into_iter().enumerate() {
        for lane in 0..2 {
            let queue = queue.clone();
            workers.spawn(async move {
                let owner = format!("w{index}-{lane}");
                let mut got = Vec::new();
                while let Some(claim) = queue.claim(&owner, 60_000, T0 + 10_000).await.unwrap() {
                    got.push(claim.run.run_id);
                }
                got
            });
        }
    }
    let mut claimed: HashMap<RunId, u32> = HashMap::new();
    while let Some(got) = workers.join_next().await {
        for run in got.unwrap() {
            *claimed.entry(run).or_default() += 1;
        }
    }
    assert_eq!(claimed.len(), runs, "every run was claimed");
    assert!(claimed.values().all(|&n| n == 1), "no run was claimed twice: {claimed:?}");
}

/// A worker waiting on one handle wakes soon after another handle
/// enqueues, long before its timeout.
pub async fn waiting_workers_wake_on_enqueue(waiter: Arc<dyn RunQueue>, enqueuer: Arc<dyn RunQueue>) {
    // The first wait may set up the wake-up channel; let it.
    waiter.wait_for_work(Duration::from_millis(50)).await;
    let started = Instant::now();
    let waiting = tokio::spawn(async move { waiter.wait_for_work(Duration::from_secs(20)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    enqueuer.enqueue(&queued(T0, "wake up")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("woken before the timeout").unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}
