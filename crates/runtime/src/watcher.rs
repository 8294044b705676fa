//! Carries stop requests from the store to the runs of this process: the
//! kill switch (`rein agents disable`) and `rein runs cancel` are written to
//! the store by any process, and each process running runs polls for those
//! that concern it.

use crate::stop::StopSignal;
use rein_types::{ControlStore, RunId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Polls the store for stop requests concerning the runs it watches and
/// fires their [`StopSignal`]s. One per process; stops polling when
/// dropped.
pub struct StopWatcher {
    runs: Arc<Mutex<HashMap<RunId, StopSignal>>>,
    task: tokio::task::JoinHandle<()>,
}

impl StopWatcher {
    /// Starts polling every `interval` (a quarter of a second is plenty: a
    /// run stops at its next step boundary anyway). Must be called within a
    /// tokio runtime.
    pub fn start(store: Arc<dyn ControlStore>, interval: Duration) -> Self {
        let runs: Arc<Mutex<HashMap<RunId, StopSignal>>> = Arc::default();
        let watched = Arc::clone(&runs);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let ids: Vec<RunId> = match watched.lock() {
                    Ok(runs) => runs.keys().copied().collect(),
                    Err(_) => return,
                };
                if ids.is_empty() {
                    continue;
                }
                match store.stop_requests(&ids).await {
                    Ok(requests) => {
                        let Ok(runs) = watched.lock() else { return };
                        for (run, reason) in requests {
                            if let Some(signal) = runs.get(&run) {
                                signal.stop(reason);
                            }
                        }
                    }
                    // A store that cannot be read now may be readable at
                    // the next tick; the runs go on meanwhile.
                    Err(error) => tracing::warn!(%error, "could not check for stop requests"),
                }
            }
        });
        Self { runs, task }
    }

    /// The signal for `run`, fired when a stop request for it appears.
    pub fn watch(&self, run: RunId) -> StopSignal {
        let signal = StopSignal::new();
        if let Ok(mut runs) = self.runs.lock() {
            runs.insert(run, signal.clone());
        }
        signal
    }

    /// Stops watching `run` (it finished or was suspended).
    pub fn forget(&self, run: RunId) {
        if let Ok(mut runs) = self.runs.lock() {
            runs.remove(&run);
        }
    }
}

impl Drop for StopWatcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}
