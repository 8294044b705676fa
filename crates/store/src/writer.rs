//! The single writer: one OS thread owns the write connection and commits
//! appends in groups.
//!
//! SQLite allows one writer at a time, and a commit costs about the same for
//! one batch as for a hundred, so callers hand their batches to this thread
//! and wait on a oneshot reply. Each time the thread wakes it drains every
//! batch already queued and commits them in one transaction, then answers
//! every waiter; under load, groups grow by themselves and the per-commit
//! cost is shared. Each batch runs inside its own savepoint, so a batch that
//! fails (a duplicate seq) is rolled back alone while the rest of its group
//! commits.
//!
//! Callers do the CPU work (JSON encoding, working out summary changes) in
//! [`Batch::encode`] before queueing, so the one thread spends its time in
//! SQLite.

use rein_types::{Event, EventKind, JournalError, Usage};
use rusqlite::{Connection, ErrorCode, params};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Most batches committed in one transaction. Bounds the latency a caller
/// can see behind a backlog; far above the 200 in flight a busy runtime has.
const MAX_GROUP: usize = 1024;

/// How long the writer polls for the next batch before sleeping, while
/// batches are arriving back to back. Waking a sleeping thread costs tens of
/// microseconds on virtual machines (the idle vCPU has to be interrupted),
/// as much as the commit itself; a caller appending run after run sends its
/// next batch well within this window.
const SPIN: Duration = Duration::from_micros(100);

const INSERT_EVENT: &str = "INSERT INTO events (run_id, seq, at_ms, type, body) VALUES (?1, ?2, ?3, ?4, ?5)";

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
         steps = steps + 1,
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

/// Where a waiting `append` learns how its batch fared.
pub(crate) type Reply = oneshot::Sender<Result<(), JournalError>>;

/// What the journal handle sends its writer.
pub(crate) enum Command {
    Append {
        batch: Batch,
        reply: Reply,
    },
    /// Finish what is queued, then stop; sent when the journal is dropped.
    Shutdown,
}

/// One event, ready for its row.
struct Row {
    run_id: String,
    seq: i64,
    at_ms: i64,
    kind: &'static str,
    body: String,
}

/// How one event changes its run's row in `runs`.
enum SummaryChange {
    Started { run_id: String, agent: String, agent_version: String, started_at_ms: i64, input_preview: String },
    Responded { run_id: String, usage: [i64; 3], cost_usd: f64 },
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
        let mut rows = Vec::with_capacity(events.len());
        let mut changes = Vec::new();
        for event in events {
            let run_id = event.run_id.to_string();
            // The seq is part of the key, so it must be stored exactly;
            // times and counters merely saturate.
            let seq = i64::try_from(event.seq).map_err(|_| {
                JournalError::Storage(format!("run {run_id}: seq {} is beyond what the journal can store", event.seq))
            })?;
            let at_ms = clamp(event.at_ms);
            let body = serde_json::to_string(event).map_err(|e| {
                JournalError::Storage(format!("cannot encode event {seq} of run {run_id} as JSON: {e}"))
            })?;
            match &event.kind {
                EventKind::RunStarted { agent, agent_version, input, .. } => changes.push(SummaryChange::Started {
                    run_id: run_id.clone(),
                    agent: agent.clone(),
                    agent_version: agent_version.0.clone(),
                    started_at_ms: at_ms,
                    input_preview: input_preview(input),
                }),
                EventKind::ModelResponded { usage, cost_usd, .. } => changes.push(SummaryChange::Responded {
                    run_id: run_id.clone(),
                    usage: usage_columns(usage),
                    cost_usd: *cost_usd,
                }),
                EventKind::RunFinished { status, steps, usage, cost_usd, .. } => {
                    changes.push(SummaryChange::Finished {
                        run_id: run_id.clone(),
                        status: status.as_str(),
                        finished_at_ms: at_ms,
                        steps: i64::from(*steps),
                        usage: usage_columns(usage),
                        cost_usd: *cost_usd,
                    })
                }
                _ => {}
            }
            rows.push(Row { run_id, seq, at_ms, kind: event.kind.type_name(), body });
        }
        Ok(Self { rows, changes })
    }
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

/// Starts the writer thread on an open, migrated connection.
pub(crate) fn spawn(conn: Connection) -> std::io::Result<(Sender<Command>, JoinHandle<()>)> {
    let (sender, receiver) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new().name("rein-journal-writer".into()).spawn(move || run(&conn, &receiver))?;
    Ok((sender, handle))
}

fn run(conn: &Connection, commands: &Receiver<Command>) {
    let mut group: Vec<(Batch, Reply)> = Vec::new();
    let mut spin = false;
    loop {
        // Wait for the first batch, then take whatever else queued up
        // meanwhile: those callers are all waiting on the same disk.
        match next_command(commands, &mut spin) {
            Some(Command::Append { batch, reply }) => group.push((batch, reply)),
            Some(Command::Shutdown) | None => break,
        }
        let mut stop = false;
        while group.len() < MAX_GROUP {
            match commands.try_recv() {
                Ok(Command::Append { batch, reply }) => group.push((batch, reply)),
                Ok(Command::Shutdown) => {
                    stop = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let outcomes = write_group(conn, &group);
        for ((_, reply), outcome) in group.drain(..).zip(outcomes) {
            // A caller that stopped waiting (its future was dropped) needs
            // no answer; its batch is committed all the same.
            let _ = reply.send(outcome);
        }
        if stop {
            break;
        }
    }
    tracing::debug!("journal writer stopped");
}

/// The next command, or `None` once every sender is gone. Polls for up to
/// [`SPIN`] first, but only while the last wait was that short: an idle
/// journal sleeps at once and burns no CPU.
fn next_command(commands: &Receiver<Command>, spin: &mut bool) -> Option<Command> {
    let start = Instant::now();
    if *spin {
        loop {
            match commands.try_recv() {
                Ok(command) => return Some(command),
                Err(TryRecvError::Disconnected) => return None,
                // Yielding rather than spinning in place leaves the core to
                // the caller that is about to send, on machines with few.
                Err(TryRecvError::Empty) if start.elapsed() < SPIN => std::thread::yield_now(),
                Err(TryRecvError::Empty) => break,
            }
        }
    }
    let command = commands.recv().ok();
    *spin = start.elapsed() < SPIN;
    command
}

/// Commits `group` in one transaction and says how each batch fared.
fn write_group(conn: &Connection, group: &[(Batch, Reply)]) -> Vec<Result<(), JournalError>> {
    let fail_all = |message: String| -> Vec<Result<(), JournalError>> {
        tracing::warn!(batches = group.len(), "{message}");
        group.iter().map(|_| Err(JournalError::Storage(message.clone()))).collect()
    };
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        return fail_all(format!("cannot begin a journal transaction: {e}"));
    }
    let outcomes = if let [(batch, _)] = group {
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
        for (batch, _) in group {
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
    let mut insert = conn.prepare_cached(INSERT_EVENT).map_err(write_failed)?;
    for row in &batch.rows {
        insert.execute(params![row.run_id, row.seq, row.at_ms, row.kind, row.body]).map_err(|e| match e {
            rusqlite::Error::SqliteFailure(ref failure, _) if failure.code == ErrorCode::ConstraintViolation => {
                JournalError::Storage(format!(
                    "run {} already has an event at seq {}; the batch was not appended (batches are all or nothing)",
                    row.run_id, row.seq
                ))
            }
            other => write_failed(other),
        })?;
    }
    for change in &batch.changes {
        match change {
            SummaryChange::Started { run_id, agent, agent_version, started_at_ms, input_preview } => conn
                .prepare_cached(UPSERT_STARTED)
                .and_then(|mut s| s.execute(params![run_id, agent, agent_version, started_at_ms, input_preview])),
            SummaryChange::Responded { run_id, usage: [input, output, cached], cost_usd } => conn
                .prepare_cached(ADD_RESPONSE)
                .and_then(|mut s| s.execute(params![run_id, input, output, cached, cost_usd])),
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

    fn group(batches: Vec<Vec<Event>>) -> Vec<(Batch, Reply)> {
        batches.into_iter().map(|events| (Batch::encode(&events).unwrap(), oneshot::channel().0)).collect()
    }

    fn count(conn: &Connection, sql: &str) -> i64 {
        conn.query_row(sql, [], |row| row.get(0)).unwrap()
    }

    #[test]
    fn a_failing_batch_is_rolled_back_alone_within_its_group() {
        let conn = journal();
        let (a, b) = (RunId::new(), RunId::new());
        let usage = Usage { input_tokens: 1, output_tokens: 1, cached_input_tokens: 0 };
        let outcomes = write_group(
            &conn,
            &group(vec![
                vec![run_started(a, 0, 1, "g", "x"), model_requested(a, 1, 2, 1)],
                vec![run_started(b, 0, 1, "g", "y")],
                // Clashes on its second event, after its first was written.
                vec![model_responded(a, 2, 3, 1, usage, 1.0), model_requested(a, 1, 4, 2)],
                vec![model_responded(b, 1, 3, 1, usage, 0.5)],
            ]),
        );
        let failed: Vec<bool> = outcomes.iter().map(Result::is_err).collect();
        assert_eq!(failed, [false, false, true, false]);
        assert!(conn.is_autocommit(), "the group transaction is closed");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 4);
        assert_eq!(count(&conn, &format!("SELECT steps FROM runs WHERE run_id = '{a}'")), 0);
        assert_eq!(count(&conn, &format!("SELECT steps FROM runs WHERE run_id = '{b}'")), 1);
    }

    #[test]
    fn a_failing_batch_alone_leaves_nothing() {
        let conn = journal();
        let a = RunId::new();
        let outcomes =
            write_group(&conn, &group(vec![vec![run_started(a, 0, 1, "g", "x"), model_requested(a, 0, 2, 1)]]));
        assert!(outcomes[0].is_err());
        assert!(conn.is_autocommit(), "the transaction is closed");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events") + count(&conn, "SELECT COUNT(*) FROM runs"), 0);
    }

    #[test]
    fn preview_is_the_first_line_cut_to_80_characters() {
        assert_eq!(input_preview("first\nsecond"), "first");
        assert_eq!(input_preview("crlf\r\nnext"), "crlf");
        assert_eq!(input_preview(""), "");
        assert_eq!(input_preview(&"ß".repeat(81)), "ß".repeat(80));
    }
}
