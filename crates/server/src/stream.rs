//! Server-sent events of a run's journal: every committed event from a
//! point on, as `id: SEQ`, `event: TYPE`, `data: EVENT-JSON`, until the run
//! finishes or suspends. Only committed events are sent — what a client has
//! seen is what any process resuming the run will see — so a client that
//! reconnects with `Last-Event-ID` misses nothing and sees nothing twice.

use crate::AppState;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures::Stream;
use rein::{EventKind, RunId, RunStatus};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

/// How often the journal is read for new events. Commits come at least
/// every 200 ms (the durability policy's bound), so this adds little.
const POLL: Duration = Duration::from_millis(50);

/// The events of `run` with seq > `after` (all when `None`), then new ones
/// as they are committed.
pub fn events(
    state: Arc<AppState>,
    run: RunId,
    after: Option<u64>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let stream = futures::stream::unfold(
        (state, after.map_or(0, |seq| seq.saturating_add(1)), false),
        move |(state, next, done)| async move {
            if done {
                return None;
            }
            loop {
                let store = state.operator.store();
                // Only what is new: a long run is not read again in full
                // on every poll.
                let read = match next.checked_sub(1) {
                    Some(seen) => store.events_after(run, seen).await,
                    None => store.events(run).await,
                };
                let fresh = match read {
                    Ok(events) => events,
                    Err(error) => {
                        let event = SseEvent::default().event("error").data(error.to_string());
                        return Some((vec![Ok(event)], (state, next, true)));
                    }
                };
                if fresh.is_empty() {
                    // Everything up to the run's end (or suspension) was
                    // sent already: nothing more will come. The summary's
                    // status is the state after the run's last event.
                    let over = matches!(store.summary(run).await, Ok(Some(s)) if s.status != RunStatus::Running);
                    if over {
                        return None;
                    }
                    tokio::time::sleep(POLL).await;
                    continue;
                }
                let last = fresh.last().map_or(next, |e| e.seq + 1);
                // A suspension followed by a resumption is not the end.
                let ended = fresh
                    .last()
                    .is_some_and(|e| matches!(e.kind, EventKind::RunFinished { .. } | EventKind::RunSuspended { .. }));
                let out = fresh
                    .iter()
                    .map(|event| {
                        let data = serde_json::to_string(event).unwrap_or_default();
                        Ok(SseEvent::default().id(event.seq.to_string()).event(event.kind.type_name()).data(data))
                    })
                    .collect();
                return Some((out, (state, last, ended)));
            }
        },
    );
    let flat = futures::StreamExt::flat_map(stream, futures::stream::iter);
    Sse::new(flat).keep_alive(KeepAlive::default())
}
