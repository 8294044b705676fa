//! The read side: a small pool of read-only connections and the queries
//! behind `events`, `runs` and `resolve`. In WAL mode readers see the last
//! committed state without blocking the writer or each other, so reads never
//! queue behind appends.

use rein_types::{Event, EventKind, JournalError, Lease, RunFilter, RunId, RunStatus, RunSummary, TenantId, Usage};
use rusqlite::{Connection, OpenFlags, Row, params};
use std::path::PathBuf;
use std::sync::Mutex;

/// Idle connections kept for reuse; more are opened under a burst of reads
/// and closed after it.
const MAX_IDLE: usize = 4;

/// Read-only connections to one journal file.
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl Readers {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self { path, idle: Mutex::new(Vec::new()) }
    }

    /// Runs `query` on a pooled connection. Blocking: call it from
    /// `spawn_blocking`.
    pub(crate) fn with<T>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, JournalError>,
    ) -> Result<T, JournalError> {
        let pooled = self.idle.lock().map_err(|_| poisoned())?.pop();
        let conn = match pooled {
            Some(conn) => conn,
            None => self.open()?,
        };
        let result = query(&conn);
        let mut idle = self.idle.lock().map_err(|_| poisoned())?;
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
        result
    }

    fn open(&self) -> Result<Connection, JournalError> {
        let failed = |e: rusqlite::Error| {
            JournalError::Storage(format!("cannot open journal {} for reading: {e}", self.path.display()))
        };
        // Not SQLITE_OPEN_READ_ONLY: a WAL reader may need to create the
        // shared-memory index. `query_only` keeps it from writing instead.
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(failed)?;
        conn.busy_timeout(crate::BUSY_TIMEOUT).map_err(failed)?;
        conn.pragma_update(None, "query_only", true).map_err(failed)?;
        Ok(conn)
    }
}

fn poisoned() -> JournalError {
    JournalError::Storage("journal read pool is poisoned by an earlier panic".into())
}

fn read_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("journal read failed: {error}"))
}

/// Every event of `run`, in seq order.
pub(crate) fn events(conn: &Connection, run: RunId) -> Result<Vec<Event>, JournalError> {
    events_from(conn, run, None)
}

/// The events of `run` with seq above `after` (all without), in seq order:
/// only the rows whose last event is above it are read.
pub(crate) fn events_from(conn: &Connection, run: RunId, after: Option<u64>) -> Result<Vec<Event>, JournalError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT first_seq, body FROM events WHERE run_id = ?1 AND (?2 IS NULL OR last_seq > ?2) ORDER BY first_seq",
        )
        .map_err(read_failed)?;
    let after_key = after.map(|seq| i64::try_from(seq).unwrap_or(i64::MAX));
    let mut rows = statement.query(params![run.to_string(), after_key]).map_err(read_failed)?;
    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(read_failed)? {
        let first_seq = u64::try_from(row.get::<_, i64>(0).map_err(read_failed)?).unwrap_or(0);
        let body = row.get_ref(1).map_err(read_failed)?.as_str().map_err(|e| JournalError::Corrupt {
            run,
            seq: first_seq,
            message: format!("body is not text: {e}"),
        })?;
        decode_row(run, first_seq, body, &mut events)?;
    }
    if let Some(after) = after {
        events.retain(|event| event.seq > after);
    }
    Ok(events)
}

/// Decodes one stored row of `run`, keyed by `first_seq`, onto `events`:
/// its body is the JSON array `[[seq, at_ms, kind], ...]`, whose first
/// event must carry the key's seq.
pub fn decode_row(run: RunId, first_seq: u64, body: &str, events: &mut Vec<Event>) -> Result<(), JournalError> {
    let corrupt = |message: String| JournalError::Corrupt { run, seq: first_seq, message };
    let stored: Vec<(u64, u64, EventKind)> =
        serde_json::from_str(body).map_err(|e| corrupt(format!("body is not a list of journal events: {e}")))?;
    if stored.first().map(|(seq, _, _)| *seq) != Some(first_seq) {
        return Err(corrupt("the row's first event does not carry its key's seq".into()));
    }
    events.extend(stored.into_iter().map(|(seq, at_ms, kind)| Event { run_id: run, seq, at_ms, kind }));
    Ok(())
}

/// The columns [`summary`] reads, in its order.
const SUMMARY_COLUMNS: &str = "run_id, agent, agent_version, status, started_at_ms, finished_at_ms, steps,
    input_tokens, output_tokens, cached_input_tokens, cost_usd, input_preview, tenant";

/// Runs matching `filter`, newest first. The filters present are ANDed as
/// plain comparisons rather than `(?1 IS NULL OR agent = ?1)`, which would
/// stop SQLite from using the indexes; `started_at_ms DESC, run_id DESC`
/// is a backwards walk of `runs_started` (or `runs_tenant`) with no sort.
/// Parameters are numbered, so every shape binds the same five values.
pub(crate) fn runs(conn: &Connection, filter: &RunFilter) -> Result<Vec<RunSummary>, JournalError> {
    let mut conditions = Vec::new();
    if filter.tenant.is_some() {
        conditions.push("tenant = ?1");
    }
    if filter.agent.is_some() {
        conditions.push("agent = ?2");
    }
    if filter.status.is_some() {
        conditions.push("status = ?3");
    }
    if filter.since_ms.is_some() {
        conditions.push("started_at_ms >= ?4");
    }
    let where_clause =
        if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
    let sql =
        format!("SELECT {SUMMARY_COLUMNS} FROM runs {where_clause} ORDER BY started_at_ms DESC, run_id DESC LIMIT ?5");
    // A negative limit is SQLite's "no limit".
    let limit = filter.limit.map_or(-1, i64::from);
    let since = filter.since_ms.map(|since| i64::try_from(since).unwrap_or(i64::MAX));
    let mut statement = conn.prepare_cached(&sql).map_err(read_failed)?;
    let mut rows = statement
        .query(params![
            filter.tenant.as_ref().map(TenantId::as_str),
            filter.agent,
            filter.status.map(RunStatus::as_str),
            since,
            limit
        ])
        .map_err(read_failed)?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next().map_err(read_failed)? {
        runs.push(summary(row)?);
    }
    Ok(runs)
}

/// One run's summary.
pub(crate) fn run_summary(conn: &Connection, run: RunId) -> Result<Option<RunSummary>, JournalError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE run_id = ?1");
    let mut statement = conn.prepare_cached(&sql).map_err(read_failed)?;
    let mut rows = statement.query([run.to_string()]).map_err(read_failed)?;
    match rows.next().map_err(read_failed)? {
        Some(row) => Ok(Some(summary(row)?)),
        None => Ok(None),
    }
}

/// Runs that are not over (running, or suspended until a person acts),
/// oldest first, each with the process holding it if one does. Walks every
/// run: for `rein runs resume --all`, not for a hot path, and cheaper so
/// than an index every run's first and last commit would write.
pub(crate) fn unfinished_runs(conn: &Connection) -> Result<Vec<(RunSummary, Option<Lease>)>, JournalError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT r.run_id, r.agent, r.agent_version, r.status, r.started_at_ms, r.finished_at_ms, r.steps,
                    r.input_tokens, r.output_tokens, r.cached_input_tokens, r.cost_usd, r.input_preview, r.tenant,
                    l.owner, l.since_ms
             FROM runs r LEFT JOIN leases l ON l.run_id = r.run_id
             WHERE r.status IN ('running', 'waiting_approval', 'needs_reconciliation')
             ORDER BY r.started_at_ms, r.run_id",
        )
        .map_err(read_failed)?;
    let mut rows = statement.query([]).map_err(read_failed)?;
    let mut runs = Vec::new();
    while let Some(row) = rows.next().map_err(read_failed)? {
        let owner: Option<String> = row.get(13).map_err(read_failed)?;
        let since_ms: Option<i64> = row.get(14).map_err(read_failed)?;
        let lease =
            owner.map(|owner| Lease { owner, since_ms: since_ms.map_or(0, |at| u64::try_from(at).unwrap_or(0)) });
        runs.push((summary(row)?, lease));
    }
    Ok(runs)
}

fn summary(row: &Row<'_>) -> Result<RunSummary, JournalError> {
    let text = |index: usize| row.get::<_, String>(index).map_err(read_failed);
    let count = |index: usize| row.get::<_, i64>(index).map(|n| u64::try_from(n).unwrap_or(0)).map_err(read_failed);
    let run_id = text(0)?;
    let unreadable = |what: &str| JournalError::Storage(format!("run summary {run_id} has an unreadable {what}"));
    let status = text(3)?;
    Ok(RunSummary {
        run_id: RunId::parse(&run_id).ok_or_else(|| unreadable("id"))?,
        agent: text(1)?,
        agent_version: text(2)?,
        status: RunStatus::parse(&status).ok_or_else(|| unreadable("status"))?,
        started_at_ms: count(4)?,
        finished_at_ms: row.get::<_, Option<i64>>(5).map_err(read_failed)?.map(|at| u64::try_from(at).unwrap_or(0)),
        steps: u32::try_from(count(6)?).unwrap_or(u32::MAX),
        usage: Usage { input_tokens: count(7)?, output_tokens: count(8)?, cached_input_tokens: count(9)? },
        cost_usd: row.get(10).map_err(read_failed)?,
        input_preview: text(11)?,
        tenant: TenantId::parse(&text(12)?).map_err(|_| unreadable("tenant"))?,
    })
}

/// A full id, or the one run whose id starts with a prefix.
pub(crate) fn resolve(conn: &Connection, id_or_prefix: &str) -> Result<RunId, JournalError> {
    let not_found = || JournalError::NotFound(id_or_prefix.to_string());
    let wanted = id_or_prefix.trim().to_ascii_lowercase();
    if wanted.is_empty() {
        return Err(not_found());
    }
    if let Some(id) = RunId::parse(&wanted) {
        let mut statement = conn.prepare_cached("SELECT 1 FROM runs WHERE run_id = ?1").map_err(read_failed)?;
        return if statement.exists([id.to_string()]).map_err(read_failed)? { Ok(id) } else { Err(not_found()) };
    }
    // Ids are lowercase hex and hyphens; anything else (SQL wildcards
    // included) cannot be the start of one.
    if !wanted.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(not_found());
    }
    // Ids sharing a prefix sort together right after the prefix itself, so
    // the first two ids at or after it settle the question through the
    // primary key, without LIKE.
    let mut statement = conn
        .prepare_cached("SELECT run_id FROM runs WHERE run_id >= ?1 ORDER BY run_id LIMIT 2")
        .map_err(read_failed)?;
    let candidates: Vec<String> =
        statement.query_map([&wanted], |row| row.get(0)).and_then(|rows| rows.collect()).map_err(read_failed)?;
    let mut matches = candidates.iter().filter(|id| id.starts_with(&wanted));
    match (matches.next(), matches.next()) {
        (Some(id), None) => {
            RunId::parse(id).ok_or_else(|| JournalError::Storage(format!("run summary {id} has an unreadable id")))
        }
        (Some(_), Some(_)) => Err(JournalError::Ambiguous(id_or_prefix.to_string())),
        (None, _) => Err(not_found()),
    }
}
