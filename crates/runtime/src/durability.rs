//! When a run's events are committed.
//!
//! Events are always recorded in order, before the runtime acts on them; the
//! question is when the journal is *forced* (its commit awaited). Forcing
//! costs a transaction each time, and most steps of a run — model calls and
//! read-tier tools — change nothing in the world: a crash during them loses
//! nothing that cannot be done again on resume. So by default rein follows
//! the write-ahead rule of databases, with side effects in the place of data
//! pages: the journal is forced before any side effect (a `write` or
//! `dangerous` tool call, an approval request), right after one, before a
//! run's result is returned, and whenever the oldest uncommitted event is
//! older than a bound; the side-effect-free steps in between are committed
//! together. [`Durability::EveryStep`] forces every transition instead.

use rein_types::{Event, Journal, JournalError};
use std::time::{Duration, Instant};

/// How eagerly a run's events are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Commit each transition's events before acting on them.
    EveryStep,
    /// Commit before and after side effects, before the result is returned,
    /// and at least every `max_lag`.
    SideEffects { max_lag: Duration },
}

impl Default for Durability {
    fn default() -> Self {
        // Real model calls take a second or more, so in practice every step
        // of a production run is committed; only fast local steps group.
        Durability::SideEffects { max_lag: Duration::from_millis(200) }
    }
}

/// One run's journal writer: events recorded but not yet committed.
pub(crate) struct RunLog<'a> {
    journal: &'a dyn Journal,
    durability: Durability,
    pending: Vec<Event>,
    oldest: Option<Instant>,
}

impl<'a> RunLog<'a> {
    pub(crate) fn new(journal: &'a dyn Journal, durability: Durability) -> Self {
        Self { journal, durability, pending: Vec::new(), oldest: None }
    }

    /// Records `events`; commits everything recorded when `force` is set,
    /// when the policy commits every step, or when the oldest uncommitted
    /// event is older than the policy's bound.
    pub(crate) async fn record(&mut self, events: Vec<Event>, force: bool) -> Result<(), JournalError> {
        if self.pending.is_empty() {
            self.pending = events;
            self.oldest = Some(Instant::now());
        } else {
            self.pending.extend(events);
        }
        let due = match self.durability {
            Durability::EveryStep => true,
            Durability::SideEffects { max_lag } => force || self.oldest.is_some_and(|t| t.elapsed() >= max_lag),
        };
        if due && !self.pending.is_empty() {
            self.journal.append(&self.pending).await?;
            self.pending.clear();
            self.oldest = None;
        }
        Ok(())
    }
}
