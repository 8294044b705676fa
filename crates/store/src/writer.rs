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
//! SQLite. The one piece that cannot move there is the hash chain: an
//! event's hash needs the run's head, known only inside the transaction.
//! That is one SHA-256 per event, over bytes `encode` already laid out, from
//! a head the writer remembers per run (see [`write_batch`]).
//!
//! The same transaction keeps what is derived from the events: the run's
//! summary row (status included: started and resumed runs are `running`,
//! suspended ones carry their suspension's status) and its lease, which
//! names the process holding a running run.

use rein_types::{CHAIN_GENESIS, Event, EventKind, JournalError, RunId, Usage, chain_hash};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Mutex, MutexGuard, TryLockError};
use tokio::sync::oneshot;

/// Most batches committed in one transaction. Bounds the latency a caller
/// can see behind a backlog; far above the 200 in flight a busy runtime has.
const MAX_GROUP: usize = 1024;

/// Group commits one appender performs before handing the lead on. Each
/// blocks its task's thread for one short transaction.
const MAX_ROUNDS: usize = 4;

/// Run heads the writer remembers. Finished and suspended runs are
/// forgotten at once; this only bounds what runs cut off without either
/// (their process's journal failed) can pile up in a long-lived process.
const MAX_HEADS: usize = 65_536;

const INSERT_EVENTS: &str =
    "INSERT INTO events (run_id, first_seq, last_seq, body, hashes) VALUES (?1, ?2, ?3, ?4, ?5)";

/// The newest row of a run: its last seq (appends must continue above it)
/// and chain hashes (the last is the head the next event chains from).
/// Read only when the writer does not know the run's head.
const NEWEST_ROW: &str = "SELECT last_seq, hashes FROM events WHERE run_id = ?1 ORDER BY first_seq DESC LIMIT 1";

/// A run's first event creates its summary with its head; a second
/// `RunStarted` (no longer written: resumption appends `RunResumed`, but
/// tolerated) refreshes what it describes and keeps the totals counted.
const UPSERT_STARTED: &str =
    "INSERT INTO runs (run_id, agent, agent_version, status, started_at_ms, input_preview, head_hash, last_seq, tenant)
     VALUES (?1, ?2, ?3, 'running', ?4, ?5, ?6, ?7, ?8)
     ON CONFLICT (run_id) DO UPDATE SET
         tenant = excluded.tenant,
         agent = excluded.agent,
         agent_version = excluded.agent_version,
         status = 'running',
         started_at_ms = excluded.started_at_ms,
         input_preview = excluded.input_preview,
         head_hash = excluded.head_hash,
         last_seq = excluded.last_seq";

/// Every other change an append makes to its run's summary, in one
/// statement: the new head, and whatever the events change. A NULL leaves
/// its column alone; a `RunFinished`'s totals replace the sums (with
/// nothing added after them), otherwise responses are added.
macro_rules! update_run {
    ($condition:literal) => {
        concat!(
            "UPDATE runs SET
                 head_hash = ?2, last_seq = ?3,
                 status = COALESCE(?4, status),
                 finished_at_ms = COALESCE(?5, finished_at_ms),
                 steps = COALESCE(?6, steps) + ?7,
                 input_tokens = COALESCE(?8, input_tokens) + ?9,
                 output_tokens = COALESCE(?10, output_tokens) + ?11,
                 cached_input_tokens = COALESCE(?12, cached_input_tokens) + ?13,
                 cost_usd = COALESCE(?14, cost_usd) + ?15
             WHERE run_id = ?1",
            $condition
        )
    };
}

/// [`update_run!`] once the run's head has been read in this transaction.
const UPDATE_RUN: &str = update_run!("");

/// [`update_run!`] on the head the writer remembers: it changes nothing
/// (and the writer reads the head afresh) unless the run's stored head is
/// still the remembered one, which another process appending to the run
/// would have moved. The check costs nothing beyond the update.
const UPDATE_RUN_FROM: &str = update_run!(" AND last_seq = ?16");

const TAKE_LEASE: &str = "INSERT INTO leases (run_id, owner, since_ms) VALUES (?1, ?2, ?3)
     ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, since_ms = excluded.since_ms";

const RELEASE_LEASE: &str = "DELETE FROM leases WHERE run_id = ?1";

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

/// One run's events of an append: a single row, whose body is the JSON
/// array `[[seq, at_ms, kind], ...]`. One row per append rather than per
/// event: a run's events are written together and read together, and one
/// insert costs a fraction of sixteen. Built by [`Batch::encode`].
pub struct Row {
    pub run: RunId,
    pub run_id: String,
    pub first_seq: i64,
    pub last_seq: i64,
    pub body: String,
    /// Where each event's `[seq, at_ms, kind]` element lies in `body`: the
    /// bytes its chain hash covers.
    pub elements: Vec<Range<usize>>,
    pub change: RunChange,
}

/// What a `RunStarted` writes into its run's summary.
pub struct Started {
    pub tenant: String,
    pub agent: String,
    pub agent_version: String,
    pub started_at_ms: i64,
    pub input_preview: String,
}

/// A `RunFinished`'s final figures.
pub struct Finished {
    pub at_ms: i64,
    pub steps: i64,
    /// Input, output and cached input tokens.
    pub usage: [i64; 3],
    pub cost_usd: f64,
}

/// What a row's events do to the run's lease.
pub enum LeaseChange {
    /// This process holds the run from `since_ms` (a start or resumption).
    Take { since_ms: i64 },
    /// Nobody holds it (suspended or finished).
    Release,
}

/// How one row's events change their run's summary and lease: the fold of
/// the events in order, so the last status-changing event wins.
#[derive(Default)]
pub struct RunChange {
    pub started: Option<Started>,
    /// Set after the start's upsert (which sets `running` itself).
    pub status: Option<&'static str>,
    pub finished: Option<Finished>,
    /// `ModelResponded` events after the last `RunFinished`, if any: one
    /// step each, usage and cost summed (input, output, cached input).
    pub responses: i64,
    pub usage: [i64; 3],
    pub cost_usd: f64,
    pub lease: Option<LeaseChange>,
}

impl RunChange {
    fn apply(&mut self, at_ms: i64, kind: &EventKind) {
        match kind {
            EventKind::RunStarted { agent, agent_version, input, tenant, .. } => {
                self.started = Some(Started {
                    tenant: tenant.as_str().to_owned(),
                    agent: agent.clone(),
                    agent_version: agent_version.0.clone(),
                    started_at_ms: at_ms,
                    input_preview: input_preview(input),
                });
                self.status = None;
                self.lease = Some(LeaseChange::Take { since_ms: at_ms });
            }
            EventKind::ModelResponded { usage, cost_usd, .. } => {
                self.responses += 1;
                for (total, add) in self.usage.iter_mut().zip(usage_columns(usage)) {
                    *total = total.saturating_add(add);
                }
                self.cost_usd += cost_usd;
            }
            EventKind::RunResumed { .. } => {
                self.status = Some("running");
                self.lease = Some(LeaseChange::Take { since_ms: at_ms });
            }
            EventKind::RunSuspended { status, .. } => {
                self.status = Some(status.as_str());
                self.lease = Some(LeaseChange::Release);
            }
            EventKind::RunFinished { status, steps, usage, cost_usd, .. } => {
                // The runtime's own totals replace the sums.
                self.finished = Some(Finished {
                    at_ms,
                    steps: i64::from(*steps),
                    usage: usage_columns(usage),
                    cost_usd: *cost_usd,
                });
                self.status = Some(status.as_str());
                (self.responses, self.usage, self.cost_usd) = (0, [0; 3], 0.0);
                self.lease = Some(LeaseChange::Release);
            }
            _ => {}
        }
    }

    /// Whether anything but the head changes after the start's upsert.
    pub fn updates_summary(&self) -> bool {
        self.status.is_some() || self.finished.is_some() || self.responses != 0
    }

    /// Whether the writer should forget the run's head after this row: the
    /// run is over or paused, and nothing is appended to it soon (if
    /// anything, by another process).
    pub fn lets_go(&self) -> bool {
        matches!(self.lease, Some(LeaseChange::Release))
    }
}

/// An append, encoded on the caller's thread.
pub struct Batch {
    rows: Vec<Row>,
}

impl Batch {
    /// Encodes `events` for the writer: JSON bodies with each event's
    /// place in them, integer columns and the summary changes they imply.
    /// Events out of seq order within a run fail the whole batch.
    pub fn encode(events: &[Event]) -> Result<Self, JournalError> {
        // Events grouped by run, in order; a batch may span runs.
        let mut groups: Vec<(RunId, Vec<&Event>)> = Vec::new();
        for event in events {
            match groups.iter_mut().find(|(run, _)| *run == event.run_id) {
                Some((_, group)) => group.push(event),
                None => groups.push((event.run_id, vec![event])),
            }
        }
        let mut rows = Vec::with_capacity(groups.len());
        for (run, group) in groups {
            let run_id = run.to_string();
            let mut body = String::with_capacity(256 * group.len());
            let mut elements = Vec::with_capacity(group.len());
            let mut change = RunChange::default();
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
                let start = body.len();
                body.push_str(&format!("[{},{},{kind}]", event.seq, at_ms));
                elements.push(start..body.len());
                change.apply(at_ms, &event.kind);
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
            rows.push(Row { run, run_id, first_seq, last_seq, body, elements, change });
        }
        Ok(Self { rows })
    }

    /// One row per run, in the order the runs first appear in the batch.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }
}

/// The listing preview of a run's input: its first line, cut to 80
/// characters (not bytes, so a cut never splits a UTF-8 sequence).
pub fn input_preview(input: &str) -> String {
    input.lines().next().unwrap_or("").chars().take(INPUT_PREVIEW_CHARS).collect()
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn usage_columns(usage: &Usage) -> [i64; 3] {
    [clamp(usage.input_tokens), clamp(usage.output_tokens), clamp(usage.cached_input_tokens)]
}

/// The newest event of a run: the seq appends must continue above, and the
/// hash the next event chains from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    last_seq: i64,
    hash: [u8; 32],
}

/// The write connection and what the writer keeps beside it; only the
/// appender holding the connection touches either.
pub(crate) struct WriteConn {
    db: Connection,
    /// The committed head of each run this writer appended to lately, so an
    /// append continues its chain without reading it back. Only a hint:
    /// every use is checked against `runs.last_seq` by the update that
    /// moves the head, so appends by other processes are noticed.
    heads: HashMap<RunId, Head>,
    /// Who leases the runs this journal starts or resumes.
    owner: String,
}

impl std::ops::Deref for WriteConn {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.db
    }
}

impl std::ops::DerefMut for WriteConn {
    fn deref_mut(&mut self) -> &mut Connection {
        &mut self.db
    }
}

impl WriteConn {
    pub(crate) fn set_owner(&mut self, owner: String) {
        self.owner = owner;
    }

    /// Takes a committed group's heads in: runs it let go of are forgotten.
    fn remember(&mut self, staged: HashMap<RunId, Option<Head>>) {
        for (run, head) in staged {
            match head {
                Some(head) => {
                    self.heads.insert(run, head);
                }
                None => {
                    self.heads.remove(&run);
                }
            }
        }
        if self.heads.len() > MAX_HEADS {
            self.heads.clear();
        }
    }
}

/// Commits appends on the calling task, in groups.
pub(crate) struct Writer {
    conn: Mutex<WriteConn>,
    /// Batches of appenders that found another appender committing.
    queue: Mutex<VecDeque<(Batch, Reply)>>,
}

impl Writer {
    /// A writer on `db` whose appends lease runs to `owner`.
    pub(crate) fn new(db: Connection, owner: String) -> Self {
        Self { conn: Mutex::new(WriteConn { db, heads: HashMap::new(), owner }), queue: Mutex::new(VecDeque::new()) }
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
        mut conn: MutexGuard<'a, WriteConn>,
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
            let mut outcomes = write_group(&mut conn, &batches).into_iter();
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

    /// Runs `work` on the write connection, waiting for it: for the rare
    /// writes that are not appends (the control tables). Blocking: call it
    /// from `spawn_blocking`.
    ///
    /// Appenders that found the connection taken meanwhile queued their
    /// batches and wait for whoever holds it to commit them, as they would
    /// behind a leader; so, like a leader, this commits the queue after
    /// letting go.
    pub(crate) fn exclusive<T>(&self, work: impl FnOnce(&mut WriteConn) -> T) -> T {
        let mut conn = self.conn.lock().unwrap_or_else(|poisoned| {
            let conn = poisoned.into_inner();
            rollback(&conn);
            conn
        });
        let result = work(&mut conn);
        drop(conn);
        if !self.queue().is_empty()
            && let Some(conn) = self.try_conn()
        {
            self.lead(conn, None);
        }
        result
    }

    /// The write connection, for tests to inspect.
    #[cfg(test)]
    pub(crate) fn conn(&self) -> MutexGuard<'_, WriteConn> {
        self.conn.lock().unwrap()
    }

    /// The write connection, unless another appender holds it. A panic while
    /// it was held leaves it usable: any open transaction is rolled back.
    fn try_conn(&self) -> Option<MutexGuard<'_, WriteConn>> {
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

/// Heads moved by a transaction not yet committed, by run; `None` for a run
/// the writer is to forget.
type Staged = HashMap<RunId, Option<Head>>;

/// Commits `group` in one transaction and says how each batch fared.
fn write_group(conn: &mut WriteConn, group: &[&Batch]) -> Vec<Result<(), JournalError>> {
    let fail_all = |message: String| -> Vec<Result<(), JournalError>> {
        tracing::warn!(batches = group.len(), "{message}");
        group.iter().map(|_| Err(JournalError::Storage(message.clone()))).collect()
    };
    if let Err(e) = exec(conn, "BEGIN IMMEDIATE") {
        return fail_all(format!("cannot begin a journal transaction: {e}"));
    }
    let mut staged = Staged::new();
    let outcomes = if let [batch] = group {
        // Alone in its transaction, a batch needs no savepoint: if it fails,
        // the whole transaction is rolled back.
        match write_batch(conn, batch, &staged) {
            Ok(heads) => {
                staged.extend(heads);
                vec![Ok(())]
            }
            Err(e) => {
                rollback(conn);
                return vec![Err(e)];
            }
        }
    } else {
        let mut outcomes = Vec::with_capacity(group.len());
        for batch in group {
            match write_isolated(conn, batch, &mut staged) {
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
        Ok(()) => {
            // Only now are the heads the journal's.
            conn.remember(staged);
            outcomes
        }
        Err(e) => {
            rollback(conn);
            fail_all(format!("journal commit failed: {e}"))
        }
    }
}

/// Writes one batch of a group inside a savepoint, staging the heads it
/// moves only if it succeeds. The outer `Err` means the group transaction
/// itself is lost and every batch in it must fail.
fn write_isolated(conn: &WriteConn, batch: &Batch, staged: &mut Staged) -> Result<Result<(), JournalError>, String> {
    exec(conn, "SAVEPOINT batch").map_err(|e| format!("cannot open a journal savepoint: {e}"))?;
    let outcome = write_batch(conn, batch, staged);
    let outcome = match outcome {
        Ok(heads) => {
            exec(conn, "RELEASE batch").map_err(|e| format!("cannot release a journal savepoint: {e}"))?;
            staged.extend(heads);
            return Ok(Ok(()));
        }
        Err(e) => e,
    };
    if conn.is_autocommit() {
        // Some errors (I/O, a full disk) make SQLite roll back the whole
        // transaction, taking the group's earlier batches with it.
        return Err(format!("journal transaction was rolled back: {outcome}"));
    }
    exec(conn, "ROLLBACK TO batch")
        .and_then(|()| exec(conn, "RELEASE batch"))
        .map_err(|e| format!("cannot roll back a failed journal batch: {e}"))?;
    Ok(Err(outcome))
}

/// Writes one batch: per run, the chained row, the summary and the lease.
/// Returns the heads it moved, for the writer to remember once committed.
///
/// Each event's chain hash needs the previous one, the run's head. Where the
/// writer remembers it (every append after a run's first, in the process
/// running it), the head moves with one `UPDATE` that also checks it is
/// still the stored one and carries the batch's summary changes: the same
/// statements as an append without a chain. Otherwise (a run's first
/// append, another process's run, a head moved by another process) the
/// newest row is read first, inside the transaction, as appends always did
/// to check the batch continues the run.
fn write_batch(conn: &WriteConn, batch: &Batch, staged: &Staged) -> Result<Vec<(RunId, Option<Head>)>, JournalError> {
    let mut moved = Vec::with_capacity(batch.rows.len());
    let mut hashes: Vec<u8> = Vec::new();
    for row in &batch.rows {
        let change = &row.change;
        let known = match staged.get(&row.run) {
            Some(head) => *head,
            None => conn.heads.get(&row.run).copied(),
        };
        // A start upserts the summary, head included; it always reads the
        // stored head, so the upsert never races the remembered one.
        let known = known.filter(|_| change.started.is_none());
        let mut head_moved = false;
        if let Some(head) = known {
            continues(row, head.last_seq)?;
            chain(row, &head.hash, &mut hashes);
            head_moved = update_run(conn, row, &hashes, Some(head.last_seq))?;
        }
        // Whether the run has a summary row, which holds its head.
        let mut summarised = head_moved;
        if !head_moved {
            let newest = conn
                .prepare_cached(NEWEST_ROW)
                .and_then(|mut s| s.query_row([&row.run_id], |r| Ok((r.get::<_, i64>(0)?, last_hash(r.get_ref(1)?)))))
                .optional()
                .map_err(write_failed)?;
            if let Some((last_seq, _)) = newest {
                continues(row, last_seq)?;
            }
            // After rows written before the chain, a chain starts afresh.
            let previous = newest.and_then(|(_, hash)| hash).unwrap_or(CHAIN_GENESIS);
            chain(row, &previous, &mut hashes);
            if let Some(started) = &change.started {
                conn.prepare_cached(UPSERT_STARTED)
                    .and_then(|mut s| {
                        s.execute(params![
                            row.run_id,
                            started.agent,
                            started.agent_version,
                            started.started_at_ms,
                            started.input_preview,
                            head_of(&hashes),
                            row.last_seq,
                            started.tenant
                        ])
                    })
                    .map_err(write_failed)?;
                summarised = true;
                if change.updates_summary() {
                    update_run(conn, row, &hashes, None)?;
                }
            } else {
                // Events of a run whose start was never journaled have no
                // summary to update (nor a head to remember).
                summarised = update_run(conn, row, &hashes, None)?;
            }
        }
        conn.prepare_cached(INSERT_EVENTS)
            .and_then(|mut s| s.execute(params![row.run_id, row.first_seq, row.last_seq, row.body, hashes]))
            .map_err(write_failed)?;
        match change.lease {
            Some(LeaseChange::Take { since_ms }) => {
                conn.prepare_cached(TAKE_LEASE).and_then(|mut s| s.execute(params![row.run_id, conn.owner, since_ms]))
            }
            Some(LeaseChange::Release) => conn.prepare_cached(RELEASE_LEASE).and_then(|mut s| s.execute([&row.run_id])),
            None => Ok(0),
        }
        .map_err(write_failed)?;
        let head = Head { last_seq: row.last_seq, hash: head_of(&hashes) };
        moved.push((row.run, (summarised && !change.lets_go()).then_some(head)));
    }
    Ok(moved)
}

/// Append-only: a row must continue above the run's last seq, which rejects
/// a repeated seq (and any rewrite of history) before writing. This is also
/// what fences a run between processes: of two appending the same seq, the
/// second to take the write lock fails here.
pub fn continues(row: &Row, stored: i64) -> Result<(), JournalError> {
    if stored >= row.first_seq {
        return Err(JournalError::Conflict(format!(
            "run {} already has events up to seq {stored}, so seq {} cannot be appended; the batch was not appended (batches are all or nothing)",
            row.run_id, row.first_seq
        )));
    }
    Ok(())
}

/// Fills `hashes` with the chain hashes of `row`'s events after `previous`.
pub fn chain(row: &Row, previous: &[u8; 32], hashes: &mut Vec<u8>) {
    hashes.clear();
    let mut previous = *previous;
    for element in &row.elements {
        previous = chain_hash(&previous, &row.body.as_bytes()[element.clone()]);
        hashes.extend_from_slice(&previous);
    }
}

/// The last hash of a row's `hashes`; a row always has at least one event.
pub fn head_of(hashes: &[u8]) -> [u8; 32] {
    hashes.len().checked_sub(32).and_then(|at| hashes[at..].try_into().ok()).unwrap_or(CHAIN_GENESIS)
}

/// The last hash of a stored `hashes` column: `None` for a row written
/// before the chain (or one whose hashes are not whole).
fn last_hash(column: rusqlite::types::ValueRef<'_>) -> Option<[u8; 32]> {
    match column {
        rusqlite::types::ValueRef::Blob(hashes) if !hashes.is_empty() && hashes.len() % 32 == 0 => {
            Some(head_of(hashes))
        }
        _ => None,
    }
}

/// Moves the run's head to the end of `hashes` and applies the row's
/// summary changes; with `from`, only if the stored head is still at that
/// seq. Returns whether the run's summary row was updated.
fn update_run(conn: &Connection, row: &Row, hashes: &[u8], from: Option<i64>) -> Result<bool, JournalError> {
    let change = &row.change;
    let finished = change.finished.as_ref();
    let head = head_of(hashes);
    let [input, output, cached] = change.usage;
    let (finished_at, steps, cost) =
        (finished.map(|f| f.at_ms), finished.map(|f| f.steps), finished.map(|f| f.cost_usd));
    let totals = finished.map(|f| f.usage);
    let (total_input, total_output, total_cached) = (totals.map(|t| t[0]), totals.map(|t| t[1]), totals.map(|t| t[2]));
    let mut values: Vec<&dyn rusqlite::ToSql> = vec![
        &row.run_id,
        &head,
        &row.last_seq,
        &change.status,
        &finished_at,
        &steps,
        &change.responses,
        &total_input,
        &input,
        &total_output,
        &output,
        &total_cached,
        &cached,
        &cost,
        &change.cost_usd,
    ];
    let sql = match &from {
        Some(last_seq) => {
            values.push(last_seq);
            UPDATE_RUN_FROM
        }
        None => UPDATE_RUN,
    };
    let changed = conn.prepare_cached(sql).and_then(|mut s| s.execute(&*values)).map_err(write_failed)?;
    Ok(changed > 0)
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

    fn database() -> Connection {
        let mut conn = Connection::open_in_memory().unwrap();
        crate::schema::migrate(&mut conn, std::path::Path::new(":memory:")).unwrap();
        conn
    }

    fn journal() -> WriteConn {
        WriteConn { db: database(), heads: HashMap::new(), owner: "test/1/1".into() }
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
        let mut conn = journal();
        let (a, b) = (RunId::new(), RunId::new());
        let usage = Usage { input_tokens: 1, output_tokens: 1, cached_input_tokens: 0 };
        let batches = group(vec![
            vec![run_started(a, 0, 1, "g", "x"), model_requested(a, 1, 2, 1)],
            vec![run_started(b, 0, 1, "g", "y")],
            // Writes run b's row, then clashes on run a's seq 1.
            vec![model_responded(b, 1, 3, 1, usage, 1.0), model_requested(a, 1, 4, 2)],
            vec![model_responded(b, 1, 3, 1, usage, 0.5)],
        ]);
        let outcomes = write_group(&mut conn, &refs(&batches));
        let failed: Vec<bool> = outcomes.iter().map(Result::is_err).collect();
        assert_eq!(failed, [false, false, true, false]);
        assert!(conn.is_autocommit(), "the group transaction is closed");
        assert_eq!(count(&conn, "SELECT COUNT(*) FROM events"), 3, "one row per run per successful batch");
        assert_eq!(count(&conn, &format!("SELECT steps FROM runs WHERE run_id = '{a}'")), 0);
        assert_eq!(count(&conn, &format!("SELECT steps FROM runs WHERE run_id = '{b}'")), 1);
    }

    #[test]
    fn a_failing_batch_alone_leaves_nothing() {
        let mut conn = journal();
        let a = RunId::new();
        let first = group(vec![vec![run_started(a, 0, 1, "g", "x")]]);
        assert!(write_group(&mut conn, &refs(&first))[0].is_ok());
        let clash = group(vec![vec![model_requested(a, 0, 2, 1)]]);
        let outcomes = write_group(&mut conn, &refs(&clash));
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

    fn head(conn: &WriteConn, run: RunId) -> Option<i64> {
        conn.heads.get(&run).map(|head| head.last_seq)
    }

    #[test]
    fn heads_are_remembered_once_committed_and_forgotten_when_runs_let_go() {
        let mut conn = journal();
        let (a, b) = (RunId::new(), RunId::new());
        let batches = group(vec![
            vec![run_started(a, 0, 1, "g", "x")],
            vec![run_started(b, 0, 1, "g", "y"), model_requested(b, 1, 2, 1)],
            // Clashes: a's head stays where the first batch put it.
            vec![model_requested(a, 0, 2, 1)],
        ]);
        let failed: Vec<bool> = write_group(&mut conn, &refs(&batches)).iter().map(Result::is_err).collect();
        assert_eq!(failed, [false, false, true]);
        assert_eq!((head(&conn, a), head(&conn, b)), (Some(0), Some(1)));
        let stored: Vec<u8> =
            conn.query_row("SELECT head_hash FROM runs WHERE run_id = ?1", [b.to_string()], |row| row.get(0)).unwrap();
        assert_eq!(stored, conn.heads[&b].hash, "the remembered head is the stored one");

        // A batch failing after it moved a head leaves the memory as it was.
        let clash = group(vec![vec![model_requested(a, 1, 3, 1), model_requested(b, 0, 3, 1)]]);
        assert!(write_group(&mut conn, &refs(&clash))[0].is_err());
        assert_eq!(head(&conn, a), Some(0));

        let usage = Usage::default();
        let done = group(vec![vec![
            rein_testkit::conformance::run_finished(a, 1, 4, rein_types::RunStatus::Succeeded, 0, usage, 0.0),
            model_requested(b, 2, 4, 2),
        ]]);
        assert!(write_group(&mut conn, &refs(&done))[0].is_ok());
        assert_eq!((head(&conn, a), head(&conn, b)), (None, Some(2)), "a finished run is forgotten");
    }

    #[test]
    fn a_stale_head_is_noticed_and_the_stored_one_read() {
        let mut conn = journal();
        let a = RunId::new();
        assert!(
            write_group(&mut conn, &refs(&group(vec![vec![run_started(a, 0, 1, "g", "x")]]))).iter().all(Result::is_ok)
        );
        let stale = conn.heads.clone();
        // Seqs 1 and 2 in one row, appended (as far as the stale memory
        // knows) by another process.
        let other = group(vec![vec![model_requested(a, 1, 2, 1), model_requested(a, 2, 3, 2)]]);
        assert!(write_group(&mut conn, &refs(&other))[0].is_ok());

        // Seq 2 again starts no existing row, so only the head check stands
        // between it and a repeated seq.
        conn.heads = stale.clone();
        let repeat = group(vec![vec![model_requested(a, 2, 4, 3)]]);
        assert!(write_group(&mut conn, &refs(&repeat))[0].is_err(), "a repeated seq is refused");

        conn.heads = stale;
        let next = group(vec![vec![model_requested(a, 3, 5, 3)]]);
        assert!(write_group(&mut conn, &refs(&next))[0].is_ok());
        assert_eq!(head(&conn, a), Some(3));
        let report = crate::chain::verify(&conn, a).unwrap();
        assert!(report.is_intact() && report.events == 4, "{report:?}");
    }

    fn one(run: RunId) -> Batch {
        Batch::encode(&[run_started(run, 0, 1, "w", "x")]).unwrap()
    }

    fn poll<F: std::future::Future + ?Sized>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_lead_handed_to_a_cancelled_waiter_is_taken_back() {
        let writer = Writer::new(database(), "test/1/1".into());
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
        let writer = Writer::new(database(), "test/1/1".into());
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
