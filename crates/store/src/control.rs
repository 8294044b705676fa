//! The queries behind [`rein_types::ControlStore`]: registered agent
//! versions, the kill switch, cancel requests, leases and webhook
//! deliveries. Writes are rare
//! (a person at the CLI, a run starting) and run on the write connection
//! between group commits; reads run on the read pool.

use rein_types::{
    Activation, AgentRecord, AgentVersion, AgentVersionRecord, JournalError, Lease, Pruned, RunId, TenantId,
};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde_json::Value;

fn read_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("journal read failed: {error}"))
}

fn write_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("journal write failed: {error}"))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(crate) fn register_agent(
    conn: &mut Connection,
    tenant: &TenantId,
    name: &str,
    version: &AgentVersion,
    definition: &str,
    now_ms: u64,
) -> Result<(), JournalError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(write_failed)?;
    // The first tenant to register a name owns it. A row with no versions
    // yet (a kill switch set before any registration) is claimed.
    tx.prepare_cached("INSERT OR IGNORE INTO agents (name, tenant) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute([name, tenant.as_str()]))
        .map_err(write_failed)?;
    let (owner, versions): (String, i64) = tx
        .prepare_cached(
            "SELECT a.tenant, (SELECT COUNT(*) FROM agent_versions v WHERE v.name = a.name) FROM agents a
             WHERE a.name = ?1",
        )
        .and_then(|mut s| s.query_row([name], |row| Ok((row.get(0)?, row.get(1)?))))
        .map_err(write_failed)?;
    if owner != tenant.as_str() {
        if versions > 0 {
            return Err(JournalError::Conflict(format!("agent name `{name}` belongs to another tenant")));
        }
        tx.prepare_cached("UPDATE agents SET tenant = ?2 WHERE name = ?1")
            .and_then(|mut s| s.execute([name, tenant.as_str()]))
            .map_err(write_failed)?;
    }
    // A version is its content's hash: the same version is the same
    // definition, so registering it again keeps the first registration.
    tx.prepare_cached(
        "INSERT OR IGNORE INTO agent_versions (name, version, definition, registered_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )
    .and_then(|mut s| s.execute(params![name, version.0, definition, clamp(now_ms)]))
    .map_err(write_failed)?;
    tx.commit().map_err(write_failed)
}

pub(crate) fn agent_versions(conn: &Connection, name: &str) -> Result<Vec<AgentVersionRecord>, JournalError> {
    conn.prepare_cached(
        "SELECT version, registered_at_ms FROM agent_versions WHERE name = ?1 ORDER BY registered_at_ms, rowid",
    )
    .and_then(|mut s| {
        s.query_map([name], |row| {
            Ok(AgentVersionRecord { version: row.get(0)?, registered_at_ms: unsigned(row.get(1)?) })
        })
        .and_then(|rows| rows.collect())
    })
    .map_err(read_failed)
}

pub(crate) fn activate_agent(
    conn: &mut Connection,
    name: &str,
    version: &AgentVersion,
    by: &str,
    now_ms: u64,
) -> Result<(), JournalError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(write_failed)?;
    let registered = tx
        .prepare_cached("SELECT 1 FROM agent_versions WHERE name = ?1 AND version = ?2")
        .and_then(|mut s| s.exists(params![name, version.0]))
        .map_err(write_failed)?;
    if !registered {
        return Err(JournalError::NotFound(format!("agent {name} version {}", version.0)));
    }
    tx.prepare_cached("UPDATE agents SET active_version = ?2 WHERE name = ?1")
        .and_then(|mut s| s.execute(params![name, version.0]))
        .map_err(write_failed)?;
    tx.prepare_cached("INSERT INTO agent_activations (name, version, by, at_ms) VALUES (?1, ?2, ?3, ?4)")
        .and_then(|mut s| s.execute(params![name, version.0, by, clamp(now_ms)]))
        .map_err(write_failed)?;
    tx.commit().map_err(write_failed)
}

pub(crate) fn activations(conn: &Connection, name: &str) -> Result<Vec<Activation>, JournalError> {
    conn.prepare_cached("SELECT version, by, at_ms FROM agent_activations WHERE name = ?1 ORDER BY rowid")
        .and_then(|mut s| {
            s.query_map([name], |row| {
                Ok(Activation { version: row.get(0)?, by: row.get(1)?, at_ms: unsigned(row.get(2)?) })
            })
            .and_then(|rows| rows.collect())
        })
        .map_err(read_failed)
}

pub(crate) fn agent_definition(
    conn: &Connection,
    name: &str,
    version: &AgentVersion,
) -> Result<Option<Value>, JournalError> {
    let stored: Option<String> = conn
        .prepare_cached("SELECT definition FROM agent_versions WHERE name = ?1 AND version = ?2")
        .and_then(|mut s| s.query_row(params![name, version.0], |row| row.get(0)).optional())
        .map_err(read_failed)?;
    stored
        .map(|text| {
            serde_json::from_str(&text).map_err(|e| {
                JournalError::Storage(format!(
                    "the registered definition of agent {name} version {} is not JSON: {e}",
                    version.0
                ))
            })
        })
        .transpose()
}

/// Every agent, or only `name` (the agents tables are small: one row per
/// agent name, a few per version).
pub(crate) fn agents(conn: &Connection, name: Option<&str>) -> Result<Vec<AgentRecord>, JournalError> {
    // Registration always adds an `agents` row, but a name with versions
    // and no row (a hand-edited file) is listed all the same.
    let mut statement = conn
        .prepare_cached(
            "SELECT n.name, COALESCE(a.enabled, 1), a.changed_by, a.changed_at_ms,
                    (SELECT COUNT(*) FROM agent_versions v WHERE v.name = n.name),
                    (SELECT v.version FROM agent_versions v WHERE v.name = n.name
                     ORDER BY v.registered_at_ms DESC, v.rowid DESC LIMIT 1),
                    COALESCE(a.tenant, 'default'), a.active_version
             FROM (SELECT name FROM agents WHERE ?1 IS NULL OR name = ?1
                   UNION SELECT name FROM agent_versions WHERE ?1 IS NULL OR name = ?1) n
             LEFT JOIN agents a ON a.name = n.name
             ORDER BY n.name",
        )
        .map_err(read_failed)?;
    let records = statement
        .query_map([name], |row| {
            Ok(AgentRecord {
                name: row.get(0)?,
                enabled: row.get::<_, i64>(1)? != 0,
                changed_by: row.get(2)?,
                changed_at_ms: row.get::<_, Option<i64>>(3)?.map(unsigned),
                versions: u32::try_from(row.get::<_, i64>(4)?).unwrap_or(u32::MAX),
                latest_version: row.get(5)?,
                tenant: TenantId::parse(&row.get::<_, String>(6)?).map_err(|e| {
                    rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
                })?,
                active_version: row.get(7)?,
            })
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(read_failed)?;
    Ok(records)
}

pub(crate) fn set_agent_enabled(
    conn: &Connection,
    name: &str,
    enabled: bool,
    by: &str,
    now_ms: u64,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO agents (name, enabled, changed_by, changed_at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO UPDATE SET
             enabled = excluded.enabled, changed_by = excluded.changed_by, changed_at_ms = excluded.changed_at_ms",
    )
    .and_then(|mut s| s.execute(params![name, enabled, by, clamp(now_ms)]))
    .map(|_| ())
    .map_err(write_failed)
}

pub(crate) fn agent_enabled(conn: &Connection, name: &str) -> Result<bool, JournalError> {
    let enabled: Option<i64> = conn
        .prepare_cached("SELECT enabled FROM agents WHERE name = ?1")
        .and_then(|mut s| s.query_row([name], |row| row.get(0)).optional())
        .map_err(read_failed)?;
    Ok(enabled.is_none_or(|enabled| enabled != 0))
}

pub(crate) fn request_cancel(
    conn: &Connection,
    run: RunId,
    by: &str,
    reason: &str,
    now_ms: u64,
) -> Result<(), JournalError> {
    conn.prepare_cached(
        "INSERT INTO cancel_requests (run_id, by, reason, at_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (run_id) DO UPDATE SET by = excluded.by, reason = excluded.reason, at_ms = excluded.at_ms",
    )
    .and_then(|mut s| s.execute(params![run.to_string(), by, reason, clamp(now_ms)]))
    .map(|_| ())
    .map_err(write_failed)
}

/// Those of `runs` that must stop, with why. Polled by every process for
/// every run it holds, so it is two statements whatever the number of runs:
/// the ids go in as one JSON array, and each is looked up by key.
pub(crate) fn stop_requests(conn: &Connection, runs: &[RunId]) -> Result<Vec<(RunId, String)>, JournalError> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = runs.iter().map(RunId::to_string).collect();
    let ids = serde_json::to_string(&ids)
        .map_err(|e| JournalError::Storage(format!("cannot encode run ids for a query: {e}")))?;
    let mut stops: Vec<(RunId, String)> = Vec::new();
    let unreadable = |id: &str| JournalError::Storage(format!("cancel request for run {id} has an unreadable id"));

    let mut cancelled = conn
        .prepare_cached(
            "SELECT c.run_id, c.by, c.reason FROM json_each(?1) j JOIN cancel_requests c ON c.run_id = j.value",
        )
        .map_err(read_failed)?;
    let rows = cancelled
        .query_map([&ids], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?)))
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(read_failed)?;
    for (id, by, reason) in rows {
        let run = RunId::parse(&id).ok_or_else(|| unreadable(&id))?;
        if !stops.iter().any(|(stopping, _)| *stopping == run) {
            stops.push((run, format!("cancelled by {by}: {reason}")));
        }
    }

    let mut disabled = conn
        .prepare_cached(
            "SELECT r.run_id, a.name, a.changed_by FROM json_each(?1) j
             JOIN runs r ON r.run_id = j.value
             JOIN agents a ON a.name = r.agent
             WHERE a.enabled = 0",
        )
        .map_err(read_failed)?;
    let rows = disabled
        .query_map([&ids], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, Option<String>>(2)?))
        })
        .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
        .map_err(read_failed)?;
    for (id, agent, by) in rows {
        let run = RunId::parse(&id).ok_or_else(|| unreadable(&id))?;
        // A cancel request says more about this run than the kill switch.
        if !stops.iter().any(|(stopping, _)| *stopping == run) {
            let by = by.as_deref().unwrap_or("someone");
            stops.push((run, format!("agent {agent} was disabled by {by}")));
        }
    }
    // In the order asked, so callers see a stable answer.
    stops.sort_by_key(|(run, _)| runs.iter().position(|asked| asked == run));
    Ok(stops)
}

pub(crate) fn lease(conn: &Connection, run: RunId) -> Result<Option<Lease>, JournalError> {
    conn.prepare_cached("SELECT owner, since_ms FROM leases WHERE run_id = ?1")
        .and_then(|mut s| {
            s.query_row([run.to_string()], |row| Ok(Lease { owner: row.get(0)?, since_ms: unsigned(row.get(1)?) }))
                .optional()
        })
        .map_err(read_failed)
}

/// Records webhook `hook`'s delivery `delivery_id` as starting `run`, or
/// finds the run an earlier recording of it started. One transaction, so the
/// insert and the read agree even with another process recording the same
/// delivery.
pub(crate) fn record_delivery(
    conn: &mut Connection,
    hook: &str,
    delivery_id: &str,
    run: RunId,
    now_ms: u64,
) -> Result<Option<RunId>, JournalError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(write_failed)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO webhook_deliveries (hook, delivery_id, run_id, at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (hook, delivery_id) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![hook, delivery_id, run.to_string(), clamp(now_ms)]))
        .map_err(write_failed)?;
    let existing = if inserted == 1 {
        None
    } else {
        let id: String = tx
            .prepare_cached("SELECT run_id FROM webhook_deliveries WHERE hook = ?1 AND delivery_id = ?2")
            .and_then(|mut s| s.query_row(params![hook, delivery_id], |row| row.get(0)))
            .map_err(read_failed)?;
        let earlier = RunId::parse(&id).ok_or_else(|| {
            JournalError::Storage(format!("delivery {delivery_id} of webhook {hook} has an unreadable run id"))
        })?;
        Some(earlier)
    };
    tx.commit().map_err(write_failed)?;
    Ok(existing)
}

/// Claims tick `tick_ms` of `agent`'s schedule `schedule` for `run`, or
/// finds the run the tick's earlier claim started. One immediate
/// transaction, so of processes claiming the same tick exactly one inserts.
pub(crate) fn claim_tick(
    conn: &mut Connection,
    agent: &str,
    schedule: &str,
    tick_ms: u64,
    run: RunId,
    now_ms: u64,
) -> Result<Option<RunId>, JournalError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(write_failed)?;
    let inserted = tx
        .prepare_cached(
            "INSERT INTO schedule_ticks (agent, schedule, tick_ms, run_id, claimed_at_ms) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (agent, schedule, tick_ms) DO NOTHING",
        )
        .and_then(|mut s| s.execute(params![agent, schedule, clamp(tick_ms), run.to_string(), clamp(now_ms)]))
        .map_err(write_failed)?;
    let existing = if inserted == 1 {
        None
    } else {
        let id: String = tx
            .prepare_cached("SELECT run_id FROM schedule_ticks WHERE agent = ?1 AND schedule = ?2 AND tick_ms = ?3")
            .and_then(|mut s| s.query_row(params![agent, schedule, clamp(tick_ms)], |row| row.get(0)))
            .map_err(read_failed)?;
        let earlier = RunId::parse(&id).ok_or_else(|| {
            JournalError::Storage(format!("tick {tick_ms} of schedule {agent}/{schedule} has an unreadable run id"))
        })?;
        Some(earlier)
    };
    tx.commit().map_err(write_failed)?;
    Ok(existing)
}

/// Deletes what `Store::prune` names, recorded before `before_ms`, in one
/// transaction.
pub(crate) fn prune(conn: &mut Connection, before_ms: u64) -> Result<Pruned, JournalError> {
    let before = clamp(before_ms);
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(write_failed)?;
    let delete = |sql: &str| -> Result<u64, JournalError> {
        tx.prepare_cached(sql)
            .and_then(|mut s| s.execute([before]))
            .map(|n| u64::try_from(n).unwrap_or(0))
            .map_err(write_failed)
    };
    let pruned = Pruned {
        webhook_deliveries: delete("DELETE FROM webhook_deliveries WHERE at_ms < ?1")?,
        schedule_ticks: delete("DELETE FROM schedule_ticks WHERE claimed_at_ms < ?1")?,
        cancel_requests: delete(
            "DELETE FROM cancel_requests WHERE at_ms < ?1
             AND run_id IN (SELECT run_id FROM runs WHERE finished_at_ms IS NOT NULL)",
        )?,
        queue_rows: delete("DELETE FROM run_queue WHERE state = 'done' AND enqueued_at_ms < ?1")?,
    };
    tx.commit().map_err(write_failed)?;
    Ok(pruned)
}
