//! The queries behind [`rein_types::RunQueue`] on SQLite. Every change runs
//! on the write connection in an IMMEDIATE transaction, which holds the
//! file's write lock: of several processes claiming at once, SQLite lets
//! one at a time read and take the oldest claimable row, so each run goes
//! to exactly one.

use rein_types::{AgentVersion, Claim, JournalError, QueueDepth, QueuedRun, RunId, TenantId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

fn read_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("run queue read failed: {error}"))
}

fn write_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("run queue write failed: {error}"))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn run_id(text: &str) -> Result<RunId, JournalError> {
    RunId::parse(text).ok_or_else(|| JournalError::Storage(format!("the run queue holds an unreadable run id {text}")))
}

pub(crate) fn enqueue(conn: &Connection, run: &QueuedRun) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO run_queue (run_id, tenant, agent, agent_version, input, enqueued_at_ms, state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'queued')
         ON CONFLICT (run_id) DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            run.run_id.to_string(),
            run.tenant.as_str(),
            run.agent,
            run.agent_version.0,
            run.input,
            clamp(run.enqueued_at_ms)
        ])
    })
    .map(|_| ())
    .map_err(write_failed)
}

pub(crate) fn claim(
    conn: &mut Connection,
    owner: &str,
    ttl_ms: u64,
    now_ms: u64,
) -> Result<Option<Claim>, JournalError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(write_failed)?;
    let found = tx
        .prepare_cached(
            "SELECT run_id, tenant, agent, agent_version, input, enqueued_at_ms, state, owner FROM run_queue
             WHERE state <> 'done' AND (state = 'queued' OR lease_until_ms < ?1)
             ORDER BY enqueued_at_ms, run_id LIMIT 1",
        )
        .and_then(|mut s| {
            s.query_row([clamp(now_ms)], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, String>(6)?,
                    row.get::<_, Option<String>>(7)?,
                ))
            })
            .optional()
        })
        .map_err(read_failed)?;
    let Some((id, tenant, agent, version, input, enqueued_at_ms, state, previous)) = found else {
        return Ok(None);
    };
    let taken_over = state == "claimed";
    tx.prepare_cached(
        "UPDATE run_queue SET state = 'claimed', owner = ?2, lease_until_ms = ?3,
             lease_expiries = lease_expiries + ?4
         WHERE run_id = ?1",
    )
    .and_then(|mut s| s.execute(params![id, owner, clamp(now_ms.saturating_add(ttl_ms)), i64::from(taken_over)]))
    .map_err(write_failed)?;
    tx.commit().map_err(write_failed)?;
    Ok(Some(Claim {
        run: QueuedRun {
            run_id: run_id(&id)?,
            tenant: TenantId::parse(&tenant)
                .map_err(|e| JournalError::Storage(format!("queued run {id} has an unreadable tenant: {e}")))?,
            agent,
            agent_version: AgentVersion(version),
            input,
            enqueued_at_ms: unsigned(enqueued_at_ms),
        },
        taken_over_from: if taken_over { previous } else { None },
    }))
}

pub(crate) fn claim_run(
    conn: &Connection,
    run: &QueuedRun,
    owner: &str,
    ttl_ms: u64,
    now_ms: u64,
) -> Result<bool, JournalError> {
    // One statement: the insert, or the take-over of a row nobody else
    // holds (or whose holder's lease expired), decided atomically.
    let changed = conn
        .prepare_cached(
            "INSERT INTO run_queue (run_id, tenant, agent, agent_version, input, enqueued_at_ms, state, owner,
                                   lease_until_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'claimed', ?7, ?8)
             ON CONFLICT (run_id) DO UPDATE SET
                 state = 'claimed', owner = excluded.owner, lease_until_ms = excluded.lease_until_ms,
                 lease_expiries = lease_expiries + (state = 'claimed' AND owner IS NOT excluded.owner)
             WHERE state <> 'claimed' OR owner = excluded.owner OR lease_until_ms < ?9",
        )
        .and_then(|mut s| {
            s.execute(params![
                run.run_id.to_string(),
                run.tenant.as_str(),
                run.agent,
                run.agent_version.0,
                run.input,
                clamp(run.enqueued_at_ms),
                owner,
                clamp(now_ms.saturating_add(ttl_ms)),
                clamp(now_ms)
            ])
        })
        .map_err(write_failed)?;
    Ok(changed == 1)
}

pub(crate) fn heartbeat(conn: &Connection, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<Vec<RunId>, JournalError> {
    let ids = conn
        .prepare_cached(
            "UPDATE run_queue SET lease_until_ms = ?2 WHERE owner = ?1 AND state = 'claimed' RETURNING run_id",
        )
        .and_then(|mut s| {
            s.query_map(params![owner, clamp(now_ms.saturating_add(ttl_ms))], |row| row.get::<_, String>(0))
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        })
        .map_err(write_failed)?;
    ids.iter().map(|id| run_id(id)).collect()
}

/// Whether a row changed: a released run wakes waiting workers.
pub(crate) fn release(conn: &Connection, run: RunId, owner: &str) -> Result<bool, JournalError> {
    conn.prepare_cached(
        "UPDATE run_queue SET state = 'queued', owner = NULL, lease_until_ms = NULL
         WHERE run_id = ?1 AND owner = ?2 AND state = 'claimed'",
    )
    .and_then(|mut s| s.execute(params![run.to_string(), owner]))
    .map(|changed| changed == 1)
    .map_err(write_failed)
}

pub(crate) fn complete(conn: &Connection, run: RunId, owner: &str) -> Result<(), JournalError> {
    conn.prepare_cached(
        "UPDATE run_queue SET state = 'done', owner = NULL, lease_until_ms = NULL
         WHERE run_id = ?1 AND owner = ?2 AND state = 'claimed'",
    )
    .and_then(|mut s| s.execute(params![run.to_string(), owner]))
    .map(|_| ())
    .map_err(write_failed)
}

pub(crate) fn live_runs(conn: &Connection, tenant: &TenantId) -> Result<u64, JournalError> {
    conn.prepare_cached("SELECT COUNT(*) FROM run_queue WHERE state <> 'done' AND tenant = ?1")
        .and_then(|mut s| s.query_row([tenant.as_str()], |row| row.get::<_, i64>(0)))
        .map(unsigned)
        .map_err(read_failed)
}

pub(crate) fn depth(conn: &Connection) -> Result<QueueDepth, JournalError> {
    conn.prepare_cached(
        "SELECT COALESCE(SUM(state = 'queued'), 0), COALESCE(SUM(state = 'claimed'), 0),
                (SELECT COALESCE(SUM(lease_expiries), 0) FROM run_queue)
         FROM run_queue WHERE state <> 'done'",
    )
    .and_then(|mut s| {
        s.query_row([], |row| {
            Ok(QueueDepth {
                queued: unsigned(row.get(0)?),
                claimed: unsigned(row.get(1)?),
                lease_expiries: unsigned(row.get(2)?),
            })
        })
    })
    .map_err(read_failed)
}
