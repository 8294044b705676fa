//! The queries behind [`rein_types::ControlStore`]: registered agent
//! versions, the kill switch, cancel requests, leases and webhook
//! deliveries, as the SQLite
//! journal's `control.rs` keeps them.

use crate::read::{read_failed, unsigned};
use rein_types::{
    Activation, AgentRecord, AgentVersion, AgentVersionRecord, JournalError, Lease, Pruned, RunId, TenantId,
};
use serde_json::Value;
use sqlx_core::query::query;
use sqlx_core::row::Row as _;
use sqlx_postgres::{PgPool, Postgres};

fn write_failed(error: sqlx_core::Error) -> JournalError {
    JournalError::Storage(format!("journal write failed: {error}"))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(crate) async fn register_agent(
    pool: &PgPool,
    tenant: &TenantId,
    name: &str,
    version: &AgentVersion,
    definition: &str,
    now_ms: u64,
) -> Result<(), JournalError> {
    let mut tx = pool.begin().await.map_err(write_failed)?;
    // The first tenant to register a name owns it. The row is locked for
    // the check, so two tenants registering one new name at once cannot
    // both own it; a row with no versions yet (a kill switch set before any
    // registration) is claimed.
    query::<Postgres>("INSERT INTO agents (name, tenant) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(name)
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await
        .map_err(write_failed)?;
    let row = query::<Postgres>(
        "SELECT a.tenant, (SELECT COUNT(*) FROM agent_versions v WHERE v.name = a.name) FROM agents a
         WHERE a.name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_one(&mut *tx)
    .await
    .map_err(write_failed)?;
    let owner: String = row.try_get(0).map_err(read_failed)?;
    let versions: i64 = row.try_get(1).map_err(read_failed)?;
    if owner != tenant.as_str() {
        if versions > 0 {
            return Err(JournalError::Conflict(format!("agent name `{name}` belongs to another tenant")));
        }
        query::<Postgres>("UPDATE agents SET tenant = $2 WHERE name = $1")
            .bind(name)
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await
            .map_err(write_failed)?;
    }
    // A version is its content's hash: the same version is the same
    // definition, so registering it again keeps the first registration.
    query::<Postgres>(
        "INSERT INTO agent_versions (name, version, definition, registered_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(&version.0)
    .bind(definition)
    .bind(clamp(now_ms))
    .execute(&mut *tx)
    .await
    .map_err(write_failed)?;
    tx.commit().await.map_err(write_failed)
}

pub(crate) async fn agent_versions(pool: &PgPool, name: &str) -> Result<Vec<AgentVersionRecord>, JournalError> {
    let rows = query::<Postgres>(
        "SELECT version, registered_at_ms FROM agent_versions WHERE name = $1 ORDER BY registered_at_ms, registration",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .map_err(read_failed)?;
    rows.iter()
        .map(|row| Ok(AgentVersionRecord { version: row.try_get(0)?, registered_at_ms: unsigned(row.try_get(1)?) }))
        .collect::<Result<Vec<_>, sqlx_core::Error>>()
        .map_err(read_failed)
}

pub(crate) async fn activate_agent(
    pool: &PgPool,
    name: &str,
    version: &AgentVersion,
    by: &str,
    now_ms: u64,
) -> Result<(), JournalError> {
    let mut tx = pool.begin().await.map_err(write_failed)?;
    let registered = query::<Postgres>("SELECT 1 FROM agent_versions WHERE name = $1 AND version = $2")
        .bind(name)
        .bind(&version.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(write_failed)?;
    if registered.is_none() {
        return Err(JournalError::NotFound(format!("agent {name} version {}", version.0)));
    }
    query::<Postgres>("UPDATE agents SET active_version = $2 WHERE name = $1")
        .bind(name)
        .bind(&version.0)
        .execute(&mut *tx)
        .await
        .map_err(write_failed)?;
    query::<Postgres>("INSERT INTO agent_activations (name, version, by_whom, at_ms) VALUES ($1, $2, $3, $4)")
        .bind(name)
        .bind(&version.0)
        .bind(by)
        .bind(clamp(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(write_failed)?;
    tx.commit().await.map_err(write_failed)
}

pub(crate) async fn activations(pool: &PgPool, name: &str) -> Result<Vec<Activation>, JournalError> {
    let rows =
        query::<Postgres>("SELECT version, by_whom, at_ms FROM agent_activations WHERE name = $1 ORDER BY activation")
            .bind(name)
            .fetch_all(pool)
            .await
            .map_err(read_failed)?;
    rows.iter()
        .map(|row| Ok(Activation { version: row.try_get(0)?, by: row.try_get(1)?, at_ms: unsigned(row.try_get(2)?) }))
        .collect::<Result<Vec<_>, sqlx_core::Error>>()
        .map_err(read_failed)
}

pub(crate) async fn agent_definition(
    pool: &PgPool,
    name: &str,
    version: &AgentVersion,
) -> Result<Option<Value>, JournalError> {
    let stored = query::<Postgres>("SELECT definition FROM agent_versions WHERE name = $1 AND version = $2")
        .bind(name)
        .bind(&version.0)
        .fetch_optional(pool)
        .await
        .map_err(read_failed)?;
    let Some(row) = stored else { return Ok(None) };
    let text: &str = row.try_get(0).map_err(read_failed)?;
    serde_json::from_str(text).map(Some).map_err(|e| {
        JournalError::Storage(format!(
            "the registered definition of agent {name} version {} is not JSON: {e}",
            version.0
        ))
    })
}

/// Every agent, or only `name` (the agents tables are small: one row per
/// agent name, a few per version).
pub(crate) async fn agents(pool: &PgPool, name: Option<&str>) -> Result<Vec<AgentRecord>, JournalError> {
    // Registration always adds an `agents` row, but a name with versions
    // and no row (a hand-edited database) is listed all the same.
    let rows = query::<Postgres>(
        "SELECT n.name, COALESCE(a.enabled, TRUE), a.changed_by, a.changed_at_ms,
                (SELECT COUNT(*) FROM agent_versions v WHERE v.name = n.name),
                (SELECT v.version FROM agent_versions v WHERE v.name = n.name
                 ORDER BY v.registered_at_ms DESC, v.registration DESC LIMIT 1),
                COALESCE(a.tenant, 'default'), a.active_version
         FROM (SELECT name FROM agents WHERE $1::TEXT IS NULL OR name = $1
               UNION SELECT name FROM agent_versions WHERE $1::TEXT IS NULL OR name = $1) n
         LEFT JOIN agents a ON a.name = n.name
         ORDER BY n.name",
    )
    .bind(name)
    .fetch_all(pool)
    .await
    .map_err(read_failed)?;
    rows.iter()
        .map(|row| {
            Ok(AgentRecord {
                name: row.try_get(0)?,
                enabled: row.try_get(1)?,
                changed_by: row.try_get(2)?,
                changed_at_ms: row.try_get::<Option<i64>, _>(3)?.map(unsigned),
                versions: u32::try_from(row.try_get::<i64, _>(4)?).unwrap_or(u32::MAX),
                latest_version: row.try_get(5)?,
                tenant: TenantId::parse(row.try_get::<&str, _>(6)?)
                    .map_err(|e| sqlx_core::Error::Decode(Box::new(e)))?,
                active_version: row.try_get(7)?,
            })
        })
        .collect::<Result<Vec<_>, sqlx_core::Error>>()
        .map_err(read_failed)
}

pub(crate) async fn set_agent_enabled(
    pool: &PgPool,
    name: &str,
    enabled: bool,
    by: &str,
    now_ms: u64,
) -> Result<(), JournalError> {
    query::<Postgres>(
        "INSERT INTO agents (name, enabled, changed_by, changed_at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET
             enabled = excluded.enabled, changed_by = excluded.changed_by, changed_at_ms = excluded.changed_at_ms",
    )
    .bind(name)
    .bind(enabled)
    .bind(by)
    .bind(clamp(now_ms))
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(write_failed)
}

pub(crate) async fn agent_enabled(pool: &PgPool, name: &str) -> Result<bool, JournalError> {
    let enabled = query::<Postgres>("SELECT enabled FROM agents WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .map_err(read_failed)?
        .map(|row| row.try_get::<bool, _>(0))
        .transpose()
        .map_err(read_failed)?;
    Ok(enabled.unwrap_or(true))
}

pub(crate) async fn request_cancel(
    pool: &PgPool,
    run: RunId,
    by: &str,
    reason: &str,
    now_ms: u64,
) -> Result<(), JournalError> {
    query::<Postgres>(
        "INSERT INTO cancel_requests (run_id, requested_by, reason, at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (run_id) DO UPDATE SET
             requested_by = excluded.requested_by, reason = excluded.reason, at_ms = excluded.at_ms",
    )
    .bind(run.to_string())
    .bind(by)
    .bind(reason)
    .bind(clamp(now_ms))
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(write_failed)
}

/// Those of `runs` that must stop, with why. Polled by every process for
/// every run it holds, so it is one statement whatever the number of runs:
/// the ids go in as one array, and each is looked up by key.
pub(crate) async fn stop_requests(pool: &PgPool, runs: &[RunId]) -> Result<Vec<(RunId, String)>, JournalError> {
    if runs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<String> = runs.iter().map(RunId::to_string).collect();
    // Cancel requests first: one says more about a run than the kill
    // switch, and the first reason found for a run is kept.
    let rows = query::<Postgres>(
        "SELECT c.run_id, 0 AS kind, 'cancelled by ' || c.requested_by || ': ' || c.reason
         FROM cancel_requests c WHERE c.run_id = ANY($1)
         UNION ALL
         SELECT r.run_id, 1, 'agent ' || a.name || ' was disabled by ' || COALESCE(a.changed_by, 'someone')
         FROM runs r JOIN agents a ON a.name = r.agent
         WHERE r.run_id = ANY($1) AND NOT a.enabled
         ORDER BY 2",
    )
    .bind(&ids)
    .fetch_all(pool)
    .await
    .map_err(read_failed)?;
    let mut stops: Vec<(RunId, String)> = Vec::new();
    for row in &rows {
        let id: &str = row.try_get(0).map_err(read_failed)?;
        let why: String = row.try_get(2).map_err(read_failed)?;
        let run = RunId::parse(id)
            .ok_or_else(|| JournalError::Storage(format!("stop request for run {id} has an unreadable id")))?;
        if !stops.iter().any(|(stopping, _)| *stopping == run) {
            stops.push((run, why));
        }
    }
    // In the order asked, so callers see a stable answer.
    stops.sort_by_key(|(run, _)| runs.iter().position(|asked| asked == run));
    Ok(stops)
}

pub(crate) async fn lease(pool: &PgPool, run: RunId) -> Result<Option<Lease>, JournalError> {
    query::<Postgres>("SELECT owner, since_ms FROM leases WHERE run_id = $1")
        .bind(run.to_string())
        .fetch_optional(pool)
        .await
        .map_err(read_failed)?
        .map(|row| Ok(Lease { owner: row.try_get(0)?, since_ms: unsigned(row.try_get(1)?) }))
        .transpose()
        .map_err(read_failed)
}

/// Records webhook `hook`'s delivery `delivery_id` as starting `run`, or
/// finds the run an earlier recording of it started. The insert does
/// nothing when the delivery is known, and waits for a concurrent
/// transaction inserting it to end, so exactly one recording succeeds. The
/// read is a statement of its own: one statement sees the database as it
/// stood when it began, before a concurrent insert it waited for committed.
pub(crate) async fn record_delivery(
    pool: &PgPool,
    hook: &str,
    delivery_id: &str,
    run: RunId,
    now_ms: u64,
) -> Result<Option<RunId>, JournalError> {
    let inserted = query::<Postgres>(
        "INSERT INTO webhook_deliveries (hook, delivery_id, run_id, at_ms) VALUES ($1, $2, $3, $4)
         ON CONFLICT (hook, delivery_id) DO NOTHING",
    )
    .bind(hook)
    .bind(delivery_id)
    .bind(run.to_string())
    .bind(clamp(now_ms))
    .execute(pool)
    .await
    .map_err(write_failed)?;
    if inserted.rows_affected() == 1 {
        return Ok(None);
    }
    let row = query::<Postgres>("SELECT run_id FROM webhook_deliveries WHERE hook = $1 AND delivery_id = $2")
        .bind(hook)
        .bind(delivery_id)
        .fetch_one(pool)
        .await
        .map_err(read_failed)?;
    let id: &str = row.try_get(0).map_err(read_failed)?;
    RunId::parse(id).map(Some).ok_or_else(|| {
        JournalError::Storage(format!("delivery {delivery_id} of webhook {hook} has an unreadable run id"))
    })
}

/// Claims tick `tick_ms` of `agent`'s schedule `schedule` for `run`, or
/// finds the run the tick's earlier claim started. As with deliveries, the
/// insert waits for a concurrent one of the same tick to end and then does
/// nothing, so exactly one claim succeeds; the read is a statement of its
/// own so that it sees the winner's row.
pub(crate) async fn claim_tick(
    pool: &PgPool,
    agent: &str,
    schedule: &str,
    tick_ms: u64,
    run: RunId,
    now_ms: u64,
) -> Result<Option<RunId>, JournalError> {
    let inserted = query::<Postgres>(
        "INSERT INTO schedule_ticks (agent, schedule, tick_ms, run_id, claimed_at_ms) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (agent, schedule, tick_ms) DO NOTHING",
    )
    .bind(agent)
    .bind(schedule)
    .bind(clamp(tick_ms))
    .bind(run.to_string())
    .bind(clamp(now_ms))
    .execute(pool)
    .await
    .map_err(write_failed)?;
    if inserted.rows_affected() == 1 {
        return Ok(None);
    }
    let row =
        query::<Postgres>("SELECT run_id FROM schedule_ticks WHERE agent = $1 AND schedule = $2 AND tick_ms = $3")
            .bind(agent)
            .bind(schedule)
            .bind(clamp(tick_ms))
            .fetch_one(pool)
            .await
            .map_err(read_failed)?;
    let id: &str = row.try_get(0).map_err(read_failed)?;
    RunId::parse(id).map(Some).ok_or_else(|| {
        JournalError::Storage(format!("tick {tick_ms} of schedule {agent}/{schedule} has an unreadable run id"))
    })
}

/// Deletes what `Store::prune` names, recorded before `before_ms`, in one
/// transaction.
pub(crate) async fn prune(pool: &PgPool, before_ms: u64) -> Result<Pruned, JournalError> {
    let before = clamp(before_ms);
    let mut tx = pool.begin().await.map_err(write_failed)?;
    let mut counts = [0u64; 4];
    let statements: [&'static str; 4] = [
        "DELETE FROM webhook_deliveries WHERE at_ms < $1",
        "DELETE FROM schedule_ticks WHERE claimed_at_ms < $1",
        "DELETE FROM cancel_requests WHERE at_ms < $1
         AND run_id IN (SELECT run_id FROM runs WHERE finished_at_ms IS NOT NULL)",
        "DELETE FROM run_queue WHERE state = 'done' AND enqueued_at_ms < $1",
    ];
    for (count, sql) in counts.iter_mut().zip(statements) {
        *count = query::<Postgres>(sql).bind(before).execute(&mut *tx).await.map_err(write_failed)?.rows_affected();
    }
    tx.commit().await.map_err(write_failed)?;
    let [webhook_deliveries, schedule_ticks, cancel_requests, queue_rows] = counts;
    Ok(Pruned { webhook_deliveries, schedule_ticks, cancel_requests, queue_rows })
}
