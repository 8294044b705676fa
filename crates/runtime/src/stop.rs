//! The kill switch's signal: set from anywhere (a watcher polling the
//! store, a signal handler), read by the driver at step boundaries.

use std::sync::{Arc, Mutex};
use tokio_util::sync::CancellationToken;

/// Asks a run to stop at its next step boundary, with a reason that ends up
/// in its explanation. Cheap to clone; clones share the signal.
#[derive(Debug, Clone, Default)]
pub struct StopSignal {
    token: CancellationToken,
    reason: Arc<Mutex<Option<String>>>,
}

impl StopSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop. The first reason given is kept.
    pub fn stop(&self, reason: impl Into<String>) {
        if let Ok(mut slot) = self.reason.lock()
            && slot.is_none()
        {
            *slot = Some(reason.into());
        }
        self.token.cancel();
    }

    /// Why the run must stop, once it must.
    pub fn reason(&self) -> Option<String> {
        if !self.token.is_cancelled() {
            return None;
        }
        let reason = self.reason.lock().ok().and_then(|slot| slot.clone());
        Some(reason.unwrap_or_else(|| "stop requested".to_owned()))
    }

    /// Completes once the run must stop.
    pub async fn stopped(&self) {
        self.token.cancelled().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reason_is_kept() {
        let signal = StopSignal::new();
        assert_eq!(signal.reason(), None);
        let clone = signal.clone();
        clone.stop("agent disabled");
        signal.stop("later");
        assert_eq!(signal.reason().as_deref(), Some("agent disabled"));
    }
}
