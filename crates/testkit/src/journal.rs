//! An in-memory [`Journal`] with the same semantics as the durable stores:
//! batches are atomic, a duplicate `(run_id, seq)` is refused, and the run
//! summaries follow `RunStarted`, `ModelResponded`, `RunSuspended`,
//! `RunResumed` and `RunFinished` exactly as the SQLite store's `runs` table
//! does. For tests, and for library users who want no disk. Nothing survives
//! the process.

use async_trait::async_trait;
use rein_types::{Event, EventKind, Journal, JournalError, RunFilter, RunId, RunStatus, RunSummary, Usage};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

/// Characters of the input's first line kept as a run's `input_preview`.
const INPUT_PREVIEW_CHARS: usize = 80;

/// The listing preview of a run's input: its first line, cut to
/// [`INPUT_PREVIEW_CHARS`] characters (characters, not bytes, so a cut never
/// splits a UTF-8 sequence).
fn input_preview(input: &str) -> String {
    input.lines().next().unwrap_or("").chars().take(INPUT_PREVIEW_CHARS).collect()
}

/// A journal held in process memory. Cheap to create; one per test keeps
/// tests independent.
#[derive(Debug, Default)]
pub struct MemoryJournal {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Keyed by seq so reads come back in order whatever order batches
    /// arrived in.
    events: HashMap<RunId, BTreeMap<u64, Event>>,
    runs: HashMap<RunId, RunSummary>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, JournalError> {
        // A panic while holding the lock may have left a batch half applied,
        // so a poisoned journal is reported rather than trusted.
        self.state.lock().map_err(|_| JournalError::Storage("in-memory journal is poisoned by an earlier panic".into()))
    }
}

/// The error every store gives for a `(run_id, seq)` that is already taken.
fn duplicate(run: RunId, seq: u64) -> JournalError {
    JournalError::Conflict(format!(
        "run {run} already has an event at seq {seq}; the batch was not appended (batches are all or nothing)"
    ))
}

/// Folds one event into the run summaries, mirroring the SQL the SQLite
/// store runs in the same transaction as the insert.
fn apply_to_summary(runs: &mut HashMap<RunId, RunSummary>, event: &Event) {
    match &event.kind {
        EventKind::RunStarted { agent, agent_version, input, tenant, .. } => {
            let summary = runs.entry(event.run_id).or_insert_with(|| RunSummary {
                run_id: event.run_id,
                tenant: tenant.clone(),
                agent: String::new(),
                agent_version: String::new(),
                status: RunStatus::Running,
                started_at_ms: 0,
                finished_at_ms: None,
                steps: 0,
                usage: Usage::default(),
                cost_usd: 0.0,
                input_preview: String::new(),
            });
            summary.agent.clone_from(agent);
            summary.agent_version.clone_from(&agent_version.0);
            summary.status = RunStatus::Running;
            summary.started_at_ms = event.at_ms;
            summary.input_preview = input_preview(input);
        }
        EventKind::ModelResponded { usage, cost_usd, .. } => {
            // Events of a run whose start was never journaled have no summary
            // to update; the SQL `UPDATE` likewise touches no row.
            if let Some(summary) = runs.get_mut(&event.run_id) {
                summary.steps = summary.steps.saturating_add(1);
                summary.usage += *usage;
                summary.cost_usd += cost_usd;
            }
        }
        // Paused until a person acts, and taken up again: not over either way.
        EventKind::RunSuspended { status, .. } => {
            if let Some(summary) = runs.get_mut(&event.run_id) {
                summary.status = *status;
            }
        }
        EventKind::RunResumed { .. } => {
            if let Some(summary) = runs.get_mut(&event.run_id) {
                summary.status = RunStatus::Running;
            }
        }
        EventKind::RunFinished { status, steps, usage, cost_usd, .. } => {
            if let Some(summary) = runs.get_mut(&event.run_id) {
                summary.status = *status;
                summary.finished_at_ms = Some(event.at_ms);
                summary.steps = *steps;
                summary.usage = *usage;
                summary.cost_usd = *cost_usd;
            }
        }
        _ => {}
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn append(&self, events: &[Event]) -> Result<(), JournalError> {
        let mut state = self.lock()?;
        // Validate the whole batch before touching anything, so a rejected
        // batch leaves no trace.
        // Append-only, as in every store: each run's events must continue
        // above its last stored seq, in increasing order.
        let mut last_in_batch: HashMap<RunId, u64> = HashMap::with_capacity(2);
        for event in events {
            let stored_last = state.events.get(&event.run_id).and_then(|run| run.keys().next_back().copied());
            let last = last_in_batch.get(&event.run_id).copied().or(stored_last);
            if last.is_some_and(|last| event.seq <= last) {
                return Err(duplicate(event.run_id, event.seq));
            }
            last_in_batch.insert(event.run_id, event.seq);
        }
        let State { events: stored, runs } = &mut *state;
        for event in events {
            stored.entry(event.run_id).or_default().insert(event.seq, event.clone());
            apply_to_summary(runs, event);
        }
        Ok(())
    }

    async fn events(&self, run: RunId) -> Result<Vec<Event>, JournalError> {
        let state = self.lock()?;
        Ok(state.events.get(&run).map(|events| events.values().cloned().collect()).unwrap_or_default())
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, JournalError> {
        let state = self.lock()?;
        let mut runs: Vec<RunSummary> = state
            .runs
            .values()
            .filter(|run| filter.agent.as_ref().is_none_or(|agent| &run.agent == agent))
            .filter(|run| filter.status.is_none_or(|status| run.status == status))
            .filter(|run| filter.tenant.as_ref().is_none_or(|tenant| &run.tenant == tenant))
            .filter(|run| filter.since_ms.is_none_or(|since| run.started_at_ms >= since))
            .cloned()
            .collect();
        runs.sort_by(|a, b| b.started_at_ms.cmp(&a.started_at_ms).then_with(|| b.run_id.cmp(&a.run_id)));
        if let Some(limit) = filter.limit {
            runs.truncate(limit as usize);
        }
        Ok(runs)
    }

    async fn resolve(&self, id_or_prefix: &str) -> Result<RunId, JournalError> {
        let state = self.lock()?;
        let wanted = id_or_prefix.trim().to_ascii_lowercase();
        if wanted.is_empty() {
            return Err(JournalError::NotFound(id_or_prefix.to_string()));
        }
        if let Some(id) = RunId::parse(&wanted) {
            return if state.runs.contains_key(&id) {
                Ok(id)
            } else {
                Err(JournalError::NotFound(id_or_prefix.into()))
            };
        }
        let mut matches = state.runs.keys().filter(|id| id.to_string().starts_with(&wanted));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok(*id),
            (Some(_), Some(_)) => Err(JournalError::Ambiguous(id_or_prefix.to_string())),
            (None, _) => Err(JournalError::NotFound(id_or_prefix.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;
    use std::sync::Arc;

    macro_rules! conformance_cases {
        ($($case:ident),* $(,)?) => {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    conformance::$case(&MemoryJournal::new()).await;
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
    async fn concurrent_appenders_all_land() {
        conformance::concurrent_appenders(Arc::new(MemoryJournal::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn failed_batches_do_not_fail_concurrent_ones() {
        conformance::failed_batches_do_not_fail_concurrent_ones(Arc::new(MemoryJournal::new())).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn run_all_passes() {
        conformance::run_all(MemoryJournal::new).await;
    }

    #[test]
    fn preview_is_the_first_line_cut_to_80_characters() {
        assert_eq!(input_preview("first\nsecond"), "first");
        assert_eq!(input_preview("crlf\r\nnext"), "crlf");
        assert_eq!(input_preview(""), "");
        let long = "é".repeat(100);
        assert_eq!(input_preview(&long).chars().count(), 80);
    }
}
