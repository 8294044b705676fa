//! The writer: group commit without a writer thread.
//!
//! SQLite allows one writer at a time, and a commit costs about the same for
//! one batch as for a hundred. An appender that finds the write connection
//! free commits on its own task at once — no thread hand-off, which on a
//! virtual machine costs as much as the commit itself. An appender that finds
//! it busy queues its batch and waits; the appender holding the connection
//! (the leader) drains the queue and commits it as one group, answering
//! every waiter, so under load groups grow by themselves and the per-commit
//! cost is shared. After a few groups the leader hands the lead to the
//! oldest waiter, so no task blocks its thread for long. Each batch runs
//! inside its own savepoint, so a batch that fails (a duplicate seq) is
//! rolled back alone while the rest of its group commits.
//!
//! A waiter whose future is dropped (a time-out, a `select!`) must not lose
//! work: a batch still in the queue is committed by whoever leads next, and a
//! lead handed to a waiter that is gone before it could take it is taken
//! back by the waiter's drop guard ([`Waiting`]), which requeues the batch
//! and leads itself, so the queue never stalls without a leader.
//!
//! Callers do the CPU work (JSON encoding, working out summary changes) in
//! [`Batch::encode`] before queueing, so the one thread spends its time in
//! SQLite.

use rein_types::{Event, EventKind, JournalError, RunId, Usage};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, TryLockError};
use tokio::sync::oneshot;

/// Most batches committed in one transaction. Bounds the latency a caller
/// can see behind a backlog; far above the 200 in flight a busy runtime has.
const MAX_GROUP: usize = 1024;

/// Group commits one appender performs before handing the lead on. Each
/// blocks its task's thread for one short transaction.
const MAX_ROUNDS: usize = 4;

const INSERT_EVENTS: &str = "INSERT INTO events (run_id, first_seq, last_seq, body) VALUES (?1, ?2, ?3, ?4)";

/// The highest seq a run has; appends must continue above it.
const LAST_SEQ: &str = "SELECT last_seq FROM events WHERE run_id = ?1 ORDER BY first_seq DESC LIMIT 1";

/// A second `RunStarted` for a run (a resumed run) refreshes what it
/// describes but keeps the totals already counted.
const UPSERT_STARTED: &str = "INSERT INTO runs (run_id, agent, agent_version, status, started_at_ms, input_preview)
     VALUES (?1, ?2, ?3, 'running', ?4, ?5)
     ON CONFLICT (run_id) DO UPDATE SET
         agent = excluded.agent,
         agent_version = excluded.agent_version,
         started_at_ms = excluded.started_at_ms,
         input_preview = excluded.input_preview";

const ADD_RESPONSE: &str = "UPDATE runs SET
         steps = steps + ?6,
         input_tokens = input_tokens + ?2,
         output_tokens = output_tokens + ?3,
         cached_input_tokens = cached_input_tokens + ?4,
         cost_usd = cost_usd + ?5
     WHERE run_id = ?1";

const FINISH: &str = "UPDATE runs SET
         status = ?2, finished_at_ms = ?3, steps = ?4,
         input_tokens = ?5, output_tokens = ?6, cached_input_tokens = ?7, cost_usd = ?8
     WHERE run_id = ?1";

/// Characters of the input's first line kept as a run's `input_preview`.
const INPUT_PREVIEW_CHARS: usize = 80;

/// What a waiting appender is told.
pub(crate) enum Answer {
    /// Its batch was committed, or failed.
    Done(Result<(), JournalError>),
    /// The leader handed over: commit this (your own) batch and the queue.
    Lead(Batch),
}

/// Where a waiting `append` learns how its batch fared.
pub(crate) type Reply = oneshot::Sender<Answer>;

/// One event, ready for its row.
/// One run's events of an append: a single row, whose body is the JSON
/// array `[[seq, at_ms, kind], ...]`. One row per append rather than per
/// event: a run's events are written together and read together, and one
/// insert costs a fraction of sixteen.
struct Row {
    run_id: String,
    first_seq: i64,
    last_seq: i64,
    body: String,
}

/// How one event changes its run's row in `runs`.
enum SummaryChange {
    Started { run_id: String, agent: String, agent_version: String, started_at_ms: i64, input_preview: String },
    Responded { run_id: String, responses: i64, usage: [i64; 3], cost_usd: f64 },
    Finished { run_id: String, status: &'static str, finished_at_ms: i64, steps: i64, usage: [i64; 3], cost_usd: f64 },
}

/// An append, encoded on the caller's thread.
pub(crate) struct Batch {
    rows: Vec<Row>,
    changes: Vec<SummaryChange>,
}

impl Batch {
    /// Encodes `events` for the writer: JSON bodies, integer columns and the
    /// summary changes they imply.
    pub(crate) fn encode(events: &[Event]) -> Result<Self, JournalError> {
        // Events grouped by run, in order; a batch may span runs.
        let mut groups: Vec<(RunId, Vec<&Event>)> = Vec::new();
        for event in events {
            match groups.iter_mut().find(|(run, _)| *run == event.run_id) {
                Some((_, group)) => group.push(event),
                None => groups.push((event.run_id, vec![event])),
            }
        }
        let mut rows = Vec::with_capacity(groups.len());
        let mut changes = Vec::new();
        for (run, group) in groups {
            let run_id = run.to_string();
            let mut body = String::with_capacity(256 * group.len());
            body.push('[');
            let mut previous: Option<u64> = None;
            for (i, event) in group.iter().enumerate() {
                if previous.is_some_and(|p| event.seq <= p) {
                    return Err(JournalError::Storage(format!(
                        "run {run_id}: seq {} does not follow seq {} in the same batch; the batch was not appended (batches are all or nothing)",
                        event.seq,
                        previous.unwrap_or_default()
                    )));
                }
                previous = Some(event.seq);
                let at_ms = clamp(event.at_ms);
                if i > 0 {
                    body.push(',');
                }
                let kind = serde_json::to_string(&event.kind).map_err(|e| {
                    JournalError::Storage(format!("cannot encode event {} of run {run_id} as JSON: {e}", event.seq))
                })?;
                body.push_str(&format!("[{},{},{kind}]", event.seq, at_ms));
                summary_change(&mut changes, &run_id, at_ms, &event.kind);
            }
            body.push(']');
            // The seq is part of the key, so it must be stored exactly.
            let exact = |seq: u64| {
                i64::try_from(seq).map_err(|_| {
                    JournalError::Storage(format!("run {run_id}: seq {seq} is beyond what the journal can store"))
                })
            };
            let first_seq = exact(group[0].seq)?;
            let last_seq = exact(previous.unwrap_or_default())?;
            rows.push(Row { run_id, first_seq, last_seq, body });
        }
        Ok(Self { rows, changes: coalesce(changes) })
    }
}

/// How one event changes its run's row in `runs`, if it does.
fn summary_change(changes: &mut Vec<SummaryChange>, run_id: &str, at_ms: i64, kind: &EventKind) {
    match kind {
        EventKind::RunStarted { agent, agent_version, input, .. } => changes.push(SummaryChange::Started {
            run_id: run_id.to_owned(),
            agent: agent.clone(),
            agent_version: agent_version.0.clone(),
            started_at_ms: at_ms,
            input_preview: input_preview(input),
        }),
        EventKind::ModelResponded { usage, cost_usd, .. } => changes.push(SummaryChange::Responded {
            run_id: run_id.to_owned(),
            responses: 1,
            usage: usage_columns(usage),
            cost_usd: *cost_usd,
        }),
        EventKind::RunFinished { status, steps, usage, cost_usd, .. } => changes.push(SummaryChange::Finished {
            run_id: run_id.to_owned(),
            status: status.as_str(),
            finished_at_ms: at_ms,
            steps: i64::from(*steps),
            usage: usage_columns(usage),
            cost_usd: *cost_usd,
        }),
        _ => {}
    }
}

/// Folds a batch's summary changes into as few statements as give the same
/// row: a run's responses are summed into one update, and dropped when the
/// batch also finishes the run (whose totals replace them).
fn coalesce(changes: Vec<SummaryChange>) -> Vec<SummaryChange> {
    if changes.len() < 2 {
        return changes;
    }
    let mut out: Vec<SummaryChange> = Vec::with_capacity(changes.len());
    for change in changes {
        if let SummaryChange::Responded { run_id, responses, usage, cost_usd } = &change
            && let Some(SummaryChange::Responded { responses: count, usage: sum, cost_usd: cost, .. }) =
                out.iter_mut().rev().find(|c| matches!(c, SummaryChange::Responded { run_id: r, .. } if r == run_id))
        {
            for (total, add) in sum.iter_mut().zip(usage) {
                *total = total.saturating_add(*add);
            }
            *cost += cost_usd;
            *count += responses;
            continue;
        }
        if let SummaryChange::Finished { run_id, .. } = &change {
            out.retain(|c| !matches!(c, SummaryChange::Responded { run_id: r, .. } if r == run_id));
        }
        out.push(change);
    }
    out
}

/// The listing preview of a run's input: its first line, cut to 80
/// characters (not bytes, so a cut never splits a UTF-8 sequence).
pub(crate) fn input_preview(input: &str) -> String {
    input.lines().next().unwrap_or("").chars().take(INPUT_PREVIEW_CHARS).collect()
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn usage_columns(usage: &Usage) -> [i64; 3] {
    [clamp(usage.input_tokens), clamp(usage.output_tokens), clamp(usage.cached_input_tokens)]
}

/// Commits appends on the calling task, in groups.
pub(crate) struct Writer {
    conn: Mutex<Connection>,
    /// Batches of appenders that found another appender committing.
    queue: Mutex<VecDeque<(Batch, Reply)>>,
}

impl Writer {
    pub(crate) fn new(conn: Connection) -> Self {
        Self { conn: Mutex::new(conn), queue: Mutex::new(VecDeque::new()) }
    }

    /// Appends `batch` and returns once it is committed (or failed).
    pub(crate) async fn append(&self, mut batch: Batch) -> Result<(), JournalError> {
        loop {
            if let Some(conn) = self.try_conn() {
                return self.lead(conn, Some(batch)).unwrap_or(Ok(()));
            }
            let (reply, answer) = oneshot::channel();
            // Armed before the push: from then on, dropping this future must
            // not lose a lead handed to it.
            let mut waiting = Waiting { writer: self, answer };
            self.queue().push_back((batch, reply));
            // The leader may have finished between our first try and the
            // push; then nobody would commit the queue, so try once more.
            if let Some(conn) = self.try_conn() {
                self.lead(conn, None);
            }
            match (&mut waiting.answer).await {
                Ok(Answer::Done(outcome)) => return outcome,
                // No await until this batch is led or queued again, so the
                // lead cannot be lost between here and there.
                Ok(Answer::Lead(returned)) => batch = returned,
                Err(_) => return Err(JournalError::Storage("the journal dropped an append without answering".into())),
            }
        }
    }

    /// Commits `own` and the queued batches, group by group, answering each
    /// waiter; returns the outcome of `own`. After [`MAX_ROUNDS`] groups it
    /// hands the lead to the oldest waiter, so no appender's task is blocked
    /// for long.
    fn lead<'a>(
        &'a self,
        mut conn: MutexGuard<'a, Connection>,
        mut own: Option<Batch>,
    ) -> Option<Result<(), JournalError>> {
        let mut own_outcome = None;
        let mut rounds = 0;
        loop {
            if rounds >= MAX_ROUNDS && own.is_none() {
                let next = self.queue().pop_front();
                if let Some((batch, reply)) = next {
                    // Unlocked before the hand-over: the new leader, or the
                    // drop guard of a waiter cancelled right after the send,
                    // must find the connection free.
                    drop(conn);
                    let Err(Answer::Lead(batch)) = reply.send(Answer::Lead(batch)) else {
                        return own_outcome;
                    };
                    // The waiter is gone; its batch still gets committed:
                    // here, or by whoever took the connection meanwhile
                    // (a leader commits the queue before it lets go).
                    self.queue().push_front((batch, oneshot::channel().0));
                    match self.try_conn() {
                        Some(again) => conn = again,
                        None => return own_outcome,
                    }
                }
            }
            let mut waiting: Vec<(Batch, Reply)> = {
                let mut queue = self.queue();
                let take = queue.len().min(MAX_GROUP);
                queue.drain(..take).collect()
            };
            if waiting.is_empty() && own.is_none() {
                drop(conn);
                // An appender may have queued after the drain and before the
                // unlock, and found the lock still held.
                if self.queue().is_empty() {
                    return own_outcome;
                }
                match self.try_conn() {
                    Some(again) => {
                        conn = again;
                        continue;
                    }
                    None => return own_outcome,
                }
            }
            let mut batches: Vec<&Batch> = Vec::with_capacity(waiting.len() + 1);
            if let Some(batch) = own.as_ref() {
                batches.push(batch);
            }
            batches.extend(waiting.iter().map(|(batch, _)| batch));
            let mut outcomes = write_group(&conn, &batches).into_iter();
            if own.take().is_some() {
                own_outcome = outcomes.next();
            }
            for ((_, reply), outcome) in waiting.drain(..).zip(outcomes) {
                // A caller that stopped waiting needs no answer; its batch is
                // committed all the same.
                let _ = reply.send(Answer::Done(outcome));
            }
            rounds += 1;
        }
    }

    /// The write connection, for tests to inspect.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap()
    }

    /// The write connection, unless another appender holds it. A panic while
    /// it was held leaves it usable: any open transaction is rolled back.
    fn try_conn(&self) -> Option<MutexGuard<'_, Connection>> {
        match self.conn.try_lock() {
            Ok(conn) => Some(conn),
            Err(TryLockError::WouldBlock) => None,
            Err(TryLockError::Poisoned(poisoned)) => {
                let conn = poisoned.into_inner();
                rollback(&conn);
                Some(conn)
            }
        }
    }

    fn queue(&self) -> MutexGuard<'_, VecDeque<(Batch, Reply)>> {
        // The queue is only pushed to and drained; a panic cannot leave it
        // half-changed, so a poisoned lock is still a consistent queue.
        self.queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// An appender waiting for its answer. Dropped before the answer was taken
/// (its future cancelled), it makes sure the lead it may have been handed is
/// not lost with it.
struct Waiting<'a> {
    writer: &'a Writer,
    answer: oneshot::Receiver<Answer>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        // After `close` no answer can arrive any more: a leader sending one
        // gets it back and keeps leading. Whatever arrived before is here.
        self.answer.close();
        let Ok(Answer::Lead(batch)) = self.answer.try_recv() else {
            // Answered (or still queued, and then committed by the next
            // leader): nothing of ours is in flight.
            return;
        };
        // The leader stopped for us. Nobody waits for this batch any more,
        // but it was queued and is committed all the same, ahead of the
        // batches queued after it; and since no one else may be leading,
        // lead now rather than leave the queue to the next append.
        self.writer.queue().push_front((batch, oneshot::channel().0));
        if let Some(conn) = self.writer.try_conn() {
            self.writer.lead(conn, None);
        }
    }
}

/// Commits `group` in one transaction and says how each batch fared.
fn write_group(conn: &Connection, group: &[&Batch]) -> Vec<Result<(), JournalError>> {
    let fail_all = |message: String| -> Vec<Result<(), JournalError>> {
        tracing::warn!(batches = group.len(), "{message}");
        group.iter().map(|_| Err(JournalError::Storage(message.clone()))).collect()
    };
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        return fail_all(format!("cannot begin a journal transaction: {e}"));
    }
    let outcomes = if let [batch] = group {
        // Alone in its transaction, a batch needs no savepoint: if it fails,
        // the whole transaction is rolled back.
        let outcome = write_batch(conn, batch);
        if outcome.is_err() {
            rollback(conn);
            return vec![outcome];
        }
        vec![outcome]
    } else {
        let mut outcomes = Vec::with_capacity(group.len());
        for batch in group {
            match write_isolated(conn, batch) {
                Ok(outcome) => outcomes.push(outcome),
                Err(message) => {
                    rollback(conn);
                    return fail_all(message);
                }
            }
        }
        outcomes
    };
    match exec(conn, "COMMIT") {
        Ok(()) => outcomes,
        Err(e) => {
            rollback(conn);
            fail_all(format!("journal commit failed: {e}"))
        }
    }
}

/// Writes one batch of a group inside a savepoint. The outer `Err` means
/// the group transaction itself is lost and every batch in it must fail.
fn write_isolated(conn: &Connection, batch: &Batch) -> Result<Result<(), JournalError>, String> {
    exec(conn, "SAVEPOINT batch").map_err(|e| format!("cannot open a journal savepoint: {e}"))?;
    let outcome = write_batch(conn, batch);
    if outcome.is_ok() {
        exec(conn, "RELEASE batch").map_err(|e| format!("cannot release a journal savepoint: {e}"))?;
        return Ok(outcome);
    }
    if conn.is_autocommit() {
        // Some errors (I/O, a full disk) make SQLite roll back the whole
        // transaction, taking the group's earlier batches with it.
        let reason = outcome.err().map(|e| e.to_string()).unwrap_or_default();
        return Err(format!("journal transaction was rolled back: {reason}"));
    }
    exec(conn, "ROLLBACK TO batch")
        .and_then(|()| exec(conn, "RELEASE batch"))
        .map_err(|e| format!("cannot roll back a failed journal batch: {e}"))?;
    Ok(outcome)
}

fn write_batch(conn: &Connection, batch: &Batch) -> Result<(), JournalError> {
    let mut last = conn.prepare_cached(LAST_SEQ).map_err(write_failed)?;
    let mut insert = conn.prepare_cached(INSERT_EVENTS).map_err(write_failed)?;
    for row in &batch.rows {
        // Append-only: a batch must continue above the run's last seq, which
        // rejects a repeated seq (and any rewrite of history) before writing.
        let stored: Option<i64> = last.query_row([&row.run_id], |r| r.get(0)).optional().map_err(write_failed)?;
        if let Some(stored) = stored
            && stored >= row.first_seq
        {
            return Err(JournalError::Storage(format!(
                "run {} already has events up to seq {stored}, so seq {} cannot be appended; the batch was not appended (batches are all or nothing)",
                row.run_id, row.first_seq
            )));
        }
        insert.execute(params![row.run_id, row.first_seq, row.last_seq, row.body]).map_err(write_failed)?;
    }
    for change in &batch.changes {
        match change {
            SummaryChange::Started { run_id, agent, agent_version, started_at_ms, input_preview } => conn
                .prepare_cached(UPSERT_STARTED)
                .and_then(|mut s| s.execute(params![run_id, agent, agent_version, started_at_ms, input_preview])),
            SummaryChange::Responded { run_id, responses, usage: [input, output, cached], cost_usd } => conn
                .prepare_cached(ADD_RESPONSE)
                .and_then(|mut s| s.execute(params![run_id, input, output, cached, cost_usd, responses])),
            SummaryChange::Finished {
                run_id,
                status,
                finished_at_ms,
                steps,
                usage: [input, output, cached],
                cost_usd,
            } => conn.prepare_cached(FINISH).and_then(|mut s| {
                s.execute(params![run_id, status, finished_at_ms, steps, input, output, cached, cost_usd])
            }),
        }
        .map_err(write_failed)?;
    }
    Ok(())
}

fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

fn rollback(conn: &Connection) {
    // Skipped when SQLite has already rolled the transaction back itself.
    if !conn.is_autocommit()
        && let Err(e) = exec(conn, "ROLLBACK")
    {
        tracing::error!("journal rollback failed: {e}");
    }
}

fn write_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("journal write failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rein_testkit::conformance::{model_requested, model_responded, run_started};
    use rein_types::RunId;

    fn journal() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        conn
    }

    fn group(batches: Vec<Vec<Event>>) -> Vec<Batch> {
        batches.into_iter().map(|events| Batch::encode(&events).unwrap()).collect()
    }

    fn refs(batches: &[Batch]) -> Vec<&Batch> {
        batches.iter().collect()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn a_failing_batch_is_rolled_back_alone_within_its_group() {
        let conn = journal();
        let (a, b) = (RunId::new(), RunId::new());
        let usage = Usage { input_tokens: 1, output_tokens: 1, cached_input_tokens: 0 };
        let batches = group(vec![
            vec![run_started(a, 0, 1, "g", "x"), model_requested(a, 1, 2, 1)],
            vec![run_started(b, 0, 1, "g", "y")],
            // Writes run b's row, then clashes on run a's seq 1.
            vec![model_responded(b, 1, 3, 1, usage, 1.0), model_requested(a, 1, 4, 2)],
            vec![model_responded(b, 1, 3, 1, usage, 0.5)],
        ]);
        let outcomes = write_group(&conn, &refs(&batches));
        let failed: Vec<bool> = outcomes.iter().map(Result::is_err).collect();
        assert_eq!(failed, [false, false, true, false]);
        assert!(conn.is_autocommit(), "the group transaction is closed");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 3, "one row per run per successful batch");
        assert_eq!(count(&conn, &format!("SELECT steps FROM runs WHERE run_id = '{a}'")), 0);
        assert_eq!(count(&conn, &format!("SELECT steps FROM runs WHERE run_id = '{b}'")), 1);
    }

    #[test]
    fn a_failing_batch_alone_leaves_nothing() {
        let conn = journal();
        let a = RunId::new();
        let first = group(vec![vec![run_started(a, 0, 1, "g", "x")]]);
        assert!(write_group(&conn, &refs(&first))[0].is_ok());
        let clash = group(vec![vec![model_requested(a, 0, 2, 1)]]);
        let outcomes = write_group(&conn, &refs(&clash));
        assert!(outcomes[0].is_err());
        assert!(conn.is_autocommit(), "the transaction is closed");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 1);
    }

    #[test]
    fn seqs_out_of_order_within_a_batch_are_refused_before_writing() {
        let a = RunId::new();
        assert!(Batch::encode(&[run_started(a, 0, 1, "g", "x"), model_requested(a, 0, 2, 1)]).is_err());
        assert!(Batch::encode(&[model_requested(a, 2, 2, 1), model_requested(a, 1, 3, 1)]).is_err());
    }

    fn one(run: RunId) -> Batch {
        Batch::encode(&[run_started(run, 0, 1, "w", "x")]).unwrap()
    }

    fn poll<F: std::future::Future + ?Sized>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_lead_handed_to_a_cancelled_waiter_is_taken_back() {
        let writer = Writer::new(journal());
        let held = writer.try_conn().unwrap();
        // Both queue behind the appender holding the connection.
        let mut first = Box::pin(writer.append(one(RunId::new())));
        let mut second = Box::pin(writer.append(one(RunId::new())));
        assert!(poll(first.as_mut()).is_pending());
        assert!(poll(second.as_mut()).is_pending());
        // The leader hands the lead to the oldest waiter, as it does after
        // MAX_ROUNDS, and lets go of the connection...
        drop(held);
        let (batch, reply) = writer.queue().pop_front().unwrap();
        assert!(reply.send(Answer::Lead(batch)).is_ok());
        // ...and that waiter's future is dropped before it could take it.
        drop(first);
        // Its guard committed both batches, and the other waiter has its
        // answer without any further append.
        assert!(matches!(poll(second.as_mut()), std::task::Poll::Ready(Ok(()))));
        assert!(writer.queue().is_empty());
        assert_eq!(count(&writer.try_conn().unwrap(), "SELECT COUNT(*) FROM events"), 2);
    }

    #[test]
    fn a_batch_whose_waiter_is_gone_is_still_committed() {
        let writer = Writer::new(journal());
        let held = writer.try_conn().unwrap();
        let mut waiter = Box::pin(writer.append(one(RunId::new())));
        assert!(poll(waiter.as_mut()).is_pending());
        drop(waiter);
        assert_eq!(writer.queue().len(), 1, "the batch stays queued");
        // The appender holding the connection commits the queue as it goes.
        assert!(writer.lead(held, None).is_none());
        assert_eq!(count(&writer.try_conn().unwrap(), "SELECT COUNT(*) FROM events"), 1);
    }

    #[test]
    fn preview_is_the_first_line_cut_to_80_characters() {
        assert_eq!(input_preview("first\nsecond"), "first");
        assert_eq!(input_preview("crlf\r\nnext"), "crlf");
        assert_eq!(input_preview(""), "");
        assert_eq!(input_preview(&"ß".repeat(81)), "ß".repeat(80));
    }
}
