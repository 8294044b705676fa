//! What every store must do to fire each schedule tick once: claiming a
//! tick is insert-or-find, atomic across handles (processes) on one store.
//! Run against each backend by its own tests.

use rein_types::{ControlStore, RunId};
use std::sync::Arc;

/// A tick is claimed once; a repeat finds the run that claimed it, through
/// this handle or `other` (another process on the same store).
pub async fn a_tick_is_claimed_once_and_repeats_find_its_run(store: &dyn ControlStore, other: &dyn ControlStore) {
    let (first, second) = (RunId::new(), RunId::new());
    assert_eq!(store.claim_tick("digest", "daily", 60_000, first, 60_010).await.expect("a claim"), None);
    assert_eq!(store.claim_tick("digest", "daily", 60_000, second, 60_020).await.expect("a claim"), Some(first));
    // The next tick, the same schedule name on another agent, and another
    // schedule of the same agent are other ticks.
    assert_eq!(store.claim_tick("digest", "daily", 120_000, second, 120_010).await.expect("a claim"), None);
    assert_eq!(store.claim_tick("other", "daily", 60_000, RunId::new(), 60_030).await.expect("a claim"), None);
    assert_eq!(store.claim_tick("digest", "weekly", 60_000, RunId::new(), 60_030).await.expect("a claim"), None);
    // Another process on the same store sees what this one claimed.
    let seen =
        other.claim_tick("digest", "daily", 60_000, RunId::new(), 61_000).await.expect("a claim from another handle");
    assert_eq!(seen, Some(first));
    let seen =
        other.claim_tick("digest", "daily", 120_000, RunId::new(), 121_000).await.expect("a claim from another handle");
    assert_eq!(seen, Some(second));
}

/// Of `attempts` concurrent claims of one tick, spread over `handles`,
/// exactly one wins and the others find its run.
pub async fn one_of_many_concurrent_claims_of_a_tick_wins(handles: &[Arc<dyn ControlStore>], attempts: u64) {
    let tasks: Vec<_> = (0..attempts)
        .map(|i| {
            let store = handles[i as usize % handles.len()].clone();
            let run = RunId::new();
            tokio::spawn(async move {
                (run, store.claim_tick("agent", "every-second", 5_000, run, 5_000 + i).await.expect("a claim"))
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("a claiming task"));
    }
    let winners: Vec<RunId> = outcomes.iter().filter(|(_, found)| found.is_none()).map(|(run, _)| *run).collect();
    assert_eq!(winners.len(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|(_, found)| found.is_none_or(|run| run == winners[0])), "{outcomes:?}");
}
