//! The queries behind [`rein_types::RunQueue`] on PostgreSQL.
//!
//! A claim is one statement: the oldest claimable row is picked with
//! `FOR UPDATE SKIP LOCKED` (rows other claimers are taking are passed
//! over rather than waited for, so any number of workers claim at once
//! without queueing behind each other) and updated in the same
//! transaction. Enqueues and releases `NOTIFY` a channel named after the
//! schema, which waiting workers `LISTEN` on (a connection of their own,
//! see [`Waiter`]), so a worker wakes when work arrives rather than
//! polling for it.

use crate::read::{read_failed, unsigned};
use rein_types::{AgentVersion, Claim, JournalError, QueueDepth, QueuedRun, RunId, TenantId};
use sqlx_core::query::query;
use sqlx_core::row::Row as _;
use sqlx_postgres::{PgListener, PgPool, PgRow, Postgres};
use std::time::Duration;

/// The channel of this schema's queue: schemas sharing a database do not
/// wake each other's workers. Cut to PostgreSQL's identifier length, as
/// `LISTEN` would cut it.
const CHANNEL: &str = "left('rein_queue_' || current_schema(), 63)";

fn write_failed(error: sqlx_core::Error) -> JournalError {
    JournalError::Storage(format!("run queue write failed: {error}"))
}

fn clamp(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn run_id(text: &str) -> Result<RunId, JournalError> {
    RunId::parse(text).ok_or_else(|| JournalError::Storage(format!("the run queue holds an unreadable run id {text}")))
}

pub(crate) async fn enqueue(pool: &PgPool, run: &QueuedRun) -> Result<(), JournalError> {
    // The notification is sent at commit, so a woken worker finds the row.
    let sql = format!(
        "WITH added AS (
             INSERT INTO run_queue (run_id, tenant, agent, agent_version, input, enqueued_at_ms, state)
             VALUES ($1, $2, $3, $4, $5, $6, 'queued')
             ON CONFLICT (run_id) DO NOTHING
             RETURNING 1
         )
         SELECT pg_notify({CHANNEL}, '') FROM added"
    );
    query::<Postgres>(sqlx_core::sql_str::AssertSqlSafe(sql))
        .bind(run.run_id.to_string())
        .bind(run.tenant.as_str())
        .bind(&run.agent)
        .bind(&run.agent_version.0)
        .bind(&run.input)
        .bind(clamp(run.enqueued_at_ms))
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(write_failed)
}

const CLAIM: &str = "WITH picked AS (
         SELECT run_id, state AS was, owner AS held_by FROM run_queue
         WHERE state <> 'done' AND (state = 'queued' OR lease_until_ms < $2)
         ORDER BY enqueued_at_ms, run_id
         LIMIT 1
         FOR UPDATE SKIP LOCKED
     )
     UPDATE run_queue q SET state = 'claimed', owner = $1, lease_until_ms = $2 + $3,
         lease_expiries = q.lease_expiries + CASE WHEN picked.was = 'claimed' THEN 1 ELSE 0 END
     FROM picked WHERE q.run_id = picked.run_id
     RETURNING q.run_id, q.tenant, q.agent, q.agent_version, q.input, q.enqueued_at_ms, picked.was, picked.held_by";

pub(crate) async fn claim(pool: &PgPool, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<Option<Claim>, JournalError> {
    let row = query::<Postgres>(CLAIM)
        .bind(owner)
        .bind(clamp(now_ms))
        .bind(clamp(ttl_ms))
        .fetch_optional(pool)
        .await
        .map_err(write_failed)?;
    row.map(|row| claim_of(&row)).transpose()
}

fn claim_of(row: &PgRow) -> Result<Claim, JournalError> {
    let decode = |row: &PgRow| -> Result<_, sqlx_core::Error> {
        Ok((
            row.try_get::<String, _>(0)?,
            row.try_get::<String, _>(1)?,
            row.try_get::<String, _>(2)?,
            row.try_get::<String, _>(3)?,
            row.try_get::<String, _>(4)?,
            row.try_get::<i64, _>(5)?,
            row.try_get::<String, _>(6)?,
            row.try_get::<Option<String>, _>(7)?,
        ))
    };
    let (id, tenant, agent, version, input, enqueued_at_ms, was, held_by) = decode(row).map_err(read_failed)?;
    Ok(Claim {
        run: QueuedRun {
            run_id: run_id(&id)?,
            tenant: TenantId::parse(&tenant)
                .map_err(|e| JournalError::Storage(format!("queued run {id} has an unreadable tenant: {e}")))?,
            agent,
            agent_version: AgentVersion(version),
            input,
            enqueued_at_ms: unsigned(enqueued_at_ms),
        },
        taken_over_from: if was == "claimed" { held_by } else { None },
    })
}

pub(crate) async fn claim_run(
    pool: &PgPool,
    run: &QueuedRun,
    owner: &str,
    ttl_ms: u64,
    now_ms: u64,
) -> Result<bool, JournalError> {
    // One statement: the insert, or the take-over of a row nobody else
    // holds (or whose holder's lease expired), decided under the row lock.
    let changed = query::<Postgres>(
        "INSERT INTO run_queue (run_id, tenant, agent, agent_version, input, enqueued_at_ms, state, owner,
                               lease_until_ms)
         VALUES ($1, $2, $3, $4, $5, $6, 'claimed', $7, $8 + $9)
         ON CONFLICT (run_id) DO UPDATE SET
             state = 'claimed', owner = excluded.owner, lease_until_ms = excluded.lease_until_ms,
             lease_expiries = run_queue.lease_expiries
                 + CASE WHEN run_queue.state = 'claimed' AND run_queue.owner IS DISTINCT FROM excluded.owner
                        THEN 1 ELSE 0 END
         WHERE run_queue.state <> 'claimed' OR run_queue.owner = excluded.owner OR run_queue.lease_until_ms < $8",
    )
    .bind(run.run_id.to_string())
    .bind(run.tenant.as_str())
    .bind(&run.agent)
    .bind(&run.agent_version.0)
    .bind(&run.input)
    .bind(clamp(run.enqueued_at_ms))
    .bind(owner)
    .bind(clamp(now_ms))
    .bind(clamp(ttl_ms))
    .execute(pool)
    .await
    .map_err(write_failed)?;
    Ok(changed.rows_affected() == 1)
}

pub(crate) async fn heartbeat(
    pool: &PgPool,
    owner: &str,
    ttl_ms: u64,
    now_ms: u64,
) -> Result<Vec<RunId>, JournalError> {
    let rows = query::<Postgres>(
        "UPDATE run_queue SET lease_until_ms = $2 + $3 WHERE owner = $1 AND state = 'claimed' RETURNING run_id",
    )
    .bind(owner)
    .bind(clamp(now_ms))
    .bind(clamp(ttl_ms))
    .fetch_all(pool)
    .await
    .map_err(write_failed)?;
    rows.iter().map(|row| run_id(row.try_get::<&str, _>(0).map_err(read_failed)?)).collect()
}

pub(crate) async fn release(pool: &PgPool, run: RunId, owner: &str) -> Result<(), JournalError> {
    let sql = format!(
        "WITH released AS (
             UPDATE run_queue SET state = 'queued', owner = NULL, lease_until_ms = NULL
             WHERE run_id = $1 AND owner = $2 AND state = 'claimed'
             RETURNING 1
         )
         SELECT pg_notify({CHANNEL}, '') FROM released"
    );
    query::<Postgres>(sqlx_core::sql_str::AssertSqlSafe(sql))
        .bind(run.to_string())
        .bind(owner)
        .execute(pool)
        .await
        .map(|_| ())
        .map_err(write_failed)
}

pub(crate) async fn complete(pool: &PgPool, run: RunId, owner: &str) -> Result<(), JournalError> {
    query::<Postgres>(
        "UPDATE run_queue SET state = 'done', owner = NULL, lease_until_ms = NULL
         WHERE run_id = $1 AND owner = $2 AND state = 'claimed'",
    )
    .bind(run.to_string())
    .bind(owner)
    .execute(pool)
    .await
    .map(|_| ())
    .map_err(write_failed)
}

pub(crate) async fn live_runs(pool: &PgPool, tenant: &TenantId) -> Result<u64, JournalError> {
    let row = query::<Postgres>("SELECT COUNT(*) FROM run_queue WHERE state <> 'done' AND tenant = $1")
        .bind(tenant.as_str())
        .fetch_one(pool)
        .await
        .map_err(read_failed)?;
    row.try_get::<i64, _>(0).map(unsigned).map_err(read_failed)
}

pub(crate) async fn depth(pool: &PgPool) -> Result<QueueDepth, JournalError> {
    let row = query::<Postgres>(
        "SELECT COUNT(*) FILTER (WHERE state = 'queued'), COUNT(*) FILTER (WHERE state = 'claimed'),
                (SELECT COALESCE(SUM(lease_expiries), 0)::BIGINT FROM run_queue)
         FROM run_queue WHERE state <> 'done'",
    )
    .fetch_one(pool)
    .await
    .map_err(read_failed)?;
    let get = |index: usize| row.try_get::<i64, _>(index).map(unsigned).map_err(read_failed);
    Ok(QueueDepth { queued: get(0)?, claimed: get(1)?, lease_expiries: get(2)? })
}

/// A worker's `LISTEN` connection, opened on the first wait and kept: one
/// per store handle, shared by its waiters one at a time.
#[derive(Default)]
pub(crate) struct Waiter {
    listener: tokio::sync::Mutex<Option<PgListener>>,
}

impl Waiter {
    pub(crate) async fn wait(&self, pool: &PgPool, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        let Ok(mut slot) = tokio::time::timeout_at(deadline, self.listener.lock()).await else { return };
        if slot.is_none() {
            match listen(pool).await {
                Ok(listener) => *slot = Some(listener),
                Err(error) => {
                    // Without notifications the caller's timeout is the
                    // poll: it claims again when this returns.
                    tracing::warn!("cannot LISTEN for queued runs, polling instead: {error}");
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
            }
        }
        let Some(listener) = slot.as_mut() else { return };
        match tokio::time::timeout_at(deadline, listener.recv()).await {
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(error)) => {
                tracing::warn!("the LISTEN connection for queued runs failed; reconnecting: {error}");
                *slot = None;
            }
        }
    }
}

async fn listen(pool: &PgPool) -> Result<PgListener, sqlx_core::Error> {
    let channel: String = sqlx_core::query_scalar::query_scalar::<Postgres, String>(sqlx_core::sql_str::AssertSqlSafe(
        format!("SELECT {CHANNEL}"),
    ))
    .fetch_one(pool)
    .await?;
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(&channel).await?;
    Ok(listener)
}
