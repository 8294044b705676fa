//! The read side: `events`, `runs`, `resolve`, `unfinished_runs` and the
//! chain check, the same queries as the SQLite journal's `reader.rs` and
//! `chain.rs` in PostgreSQL's dialect.

use rein_store::shared::{ChainCheck, decode_row};
use rein_types::{ChainReport, Event, JournalError, Lease, RunFilter, RunId, RunStatus, RunSummary, TenantId, Usage};
use sqlx_core::query::query;
use sqlx_core::row::Row as _;
use sqlx_core::sql_str::AssertSqlSafe;
use sqlx_postgres::{PgPool, PgRow, Postgres};

pub(crate) fn read_failed(error: sqlx_core::Error) -> JournalError {
    JournalError::Storage(format!("journal read failed: {error}"))
}

pub(crate) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

/// Every event of `run`, in seq order.
pub(crate) async fn events(pool: &PgPool, run: RunId) -> Result<Vec<Event>, JournalError> {
    events_from(pool, run, None).await
}

/// The events of `run` with seq above `after` (all without), in seq order:
/// only the rows whose last event is above it are read.
pub(crate) async fn events_from(pool: &PgPool, run: RunId, after: Option<u64>) -> Result<Vec<Event>, JournalError> {
    let rows = query::<Postgres>(
        "SELECT first_seq, body FROM events WHERE run_id = $1 AND ($2::BIGINT IS NULL OR last_seq > $2)
         ORDER BY first_seq",
    )
    .bind(run.to_string())
    .bind(after.map(|seq| i64::try_from(seq).unwrap_or(i64::MAX)))
    .fetch_all(pool)
    .await
    .map_err(read_failed)?;
    let mut events = Vec::new();
    for row in rows {
        let first_seq = unsigned(row.try_get(0).map_err(read_failed)?);
        let body: &str = row.try_get(1).map_err(read_failed)?;
        decode_row(run, first_seq, body, &mut events)?;
    }
    if let Some(after) = after {
        events.retain(|event| event.seq > after);
    }
    Ok(events)
}

/// The columns [`summary`] reads, in its order.
const SUMMARY_COLUMNS: &str = "run_id, agent, agent_version, status, started_at_ms, finished_at_ms, steps,
    input_tokens, output_tokens, cached_input_tokens, cost_usd, input_preview, tenant";

/// Runs matching `filter`, newest first. One statement per filter shape
/// rather than `($1 IS NULL OR agent = $1)`, so each is planned for its
/// shape; an absent filter still names its parameter (`$2::TEXT IS NULL`,
/// always true) so that every shape binds the same five values.
/// `started_at_ms DESC, run_id DESC` reads `runs_started` (or
/// `runs_tenant`) backwards with no sort. A NULL limit is no limit.
pub(crate) async fn runs(pool: &PgPool, filter: &RunFilter) -> Result<Vec<RunSummary>, JournalError> {
    let conditions = [
        if filter.tenant.is_some() { "tenant = $1" } else { "$1::TEXT IS NULL" },
        if filter.agent.is_some() { "agent = $2" } else { "$2::TEXT IS NULL" },
        if filter.status.is_some() { "status = $3" } else { "$3::TEXT IS NULL" },
        if filter.since_ms.is_some() { "started_at_ms >= $4" } else { "$4::BIGINT IS NULL" },
    ];
    let sql = format!(
        "SELECT {SUMMARY_COLUMNS} FROM runs WHERE {} ORDER BY started_at_ms DESC, run_id DESC LIMIT $5",
        conditions.join(" AND ")
    );
    let rows = query::<Postgres>(AssertSqlSafe(sql))
        .bind(filter.tenant.as_ref().map(TenantId::as_str))
        .bind(filter.agent.as_deref())
        .bind(filter.status.map(RunStatus::as_str))
        .bind(filter.since_ms.map(|since| i64::try_from(since).unwrap_or(i64::MAX)))
        .bind(filter.limit.map(i64::from))
        .fetch_all(pool)
        .await
        .map_err(read_failed)?;
    rows.iter().map(summary).collect()
}

/// One run's summary.
pub(crate) async fn run_summary(pool: &PgPool, run: RunId) -> Result<Option<RunSummary>, JournalError> {
    let sql = format!("SELECT {SUMMARY_COLUMNS} FROM runs WHERE run_id = $1");
    let row =
        query::<Postgres>(AssertSqlSafe(sql)).bind(run.to_string()).fetch_optional(pool).await.map_err(read_failed)?;
    row.as_ref().map(summary).transpose()
}

/// Runs that are not over, oldest first, each with the process holding it
/// if one does.
pub(crate) async fn unfinished_runs(pool: &PgPool) -> Result<Vec<(RunSummary, Option<Lease>)>, JournalError> {
    let rows = query::<Postgres>(
        "SELECT r.run_id, r.agent, r.agent_version, r.status, r.started_at_ms, r.finished_at_ms, r.steps,
                r.input_tokens, r.output_tokens, r.cached_input_tokens, r.cost_usd, r.input_preview, r.tenant,
                l.owner, l.since_ms
         FROM runs r LEFT JOIN leases l ON l.run_id = r.run_id
         WHERE r.status IN ('running', 'waiting_approval', 'needs_reconciliation')
         ORDER BY r.started_at_ms, r.run_id",
    )
    .fetch_all(pool)
    .await
    .map_err(read_failed)?;
    let mut runs = Vec::with_capacity(rows.len());
    for row in &rows {
        let owner: Option<String> = row.try_get(13).map_err(read_failed)?;
        let since_ms: Option<i64> = row.try_get(14).map_err(read_failed)?;
        let lease = owner.map(|owner| Lease { owner, since_ms: since_ms.map_or(0, unsigned) });
        runs.push((summary(row)?, lease));
    }
    Ok(runs)
}

fn summary(row: &PgRow) -> Result<RunSummary, JournalError> {
    let text = |index: usize| row.try_get::<String, _>(index).map_err(read_failed);
    let count = |index: usize| row.try_get::<i64, _>(index).map(unsigned).map_err(read_failed);
    let run_id = text(0)?;
    let unreadable = |what: &str| JournalError::Storage(format!("run summary {run_id} has an unreadable {what}"));
    let status = text(3)?;
    Ok(RunSummary {
        run_id: RunId::parse(&run_id).ok_or_else(|| unreadable("id"))?,
        agent: text(1)?,
        agent_version: text(2)?,
        status: RunStatus::parse(&status).ok_or_else(|| unreadable("status"))?,
        started_at_ms: count(4)?,
        finished_at_ms: row.try_get::<Option<i64>, _>(5).map_err(read_failed)?.map(unsigned),
        steps: u32::try_from(count(6)?).unwrap_or(u32::MAX),
        usage: Usage { input_tokens: count(7)?, output_tokens: count(8)?, cached_input_tokens: count(9)? },
        cost_usd: row.try_get(10).map_err(read_failed)?,
        input_preview: text(11)?,
        tenant: TenantId::parse(&text(12)?).map_err(|_| unreadable("tenant"))?,
    })
}

/// A full id, or the one run whose id starts with a prefix.
pub(crate) async fn resolve(pool: &PgPool, id_or_prefix: &str) -> Result<RunId, JournalError> {
    let not_found = || JournalError::NotFound(id_or_prefix.to_string());
    let wanted = id_or_prefix.trim().to_ascii_lowercase();
    if wanted.is_empty() {
        return Err(not_found());
    }
    if let Some(id) = RunId::parse(&wanted) {
        let found = query::<Postgres>("SELECT 1 FROM runs WHERE run_id = $1")
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(read_failed)?;
        return if found.is_some() { Ok(id) } else { Err(not_found()) };
    }
    // Ids are lowercase hex and hyphens; anything else (SQL wildcards
    // included) cannot be the start of one.
    if !wanted.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(not_found());
    }
    // Ids sharing a prefix sort together (byte order) right after the prefix
    // itself, so the first two ids at or after it settle the question
    // through the primary key.
    let candidates: Vec<String> =
        query::<Postgres>("SELECT run_id FROM runs WHERE run_id >= $1 ORDER BY run_id LIMIT 2")
            .bind(&wanted)
            .fetch_all(pool)
            .await
            .map_err(read_failed)?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(read_failed)?;
    let mut matches = candidates.iter().filter(|id| id.starts_with(&wanted));
    match (matches.next(), matches.next()) {
        (Some(id), None) => {
            RunId::parse(id).ok_or_else(|| JournalError::Storage(format!("run summary {id} has an unreadable id")))
        }
        (Some(_), Some(_)) => Err(JournalError::Ambiguous(id_or_prefix.to_string())),
        (None, _) => Err(not_found()),
    }
}

/// Checks `run`'s chain with the checker the SQLite journal uses.
/// `NotFound` for a run the store knows nothing of.
pub(crate) async fn verify_chain(pool: &PgPool, run: RunId) -> Result<ChainReport, JournalError> {
    let run_id = run.to_string();
    // One snapshot: the rows and the head are written together, and read
    // apart an append in between would look like tampering.
    let mut tx = pool.begin().await.map_err(read_failed)?;
    sqlx_core::raw_sql::raw_sql("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await
        .map_err(read_failed)?;
    let recorded_head = query::<Postgres>("SELECT head_hash, last_seq FROM runs WHERE run_id = $1")
        .bind(&run_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(read_failed)?
        .map(|row| {
            Ok::<_, sqlx_core::Error>((row.try_get::<Option<Vec<u8>>, _>(0)?, row.try_get::<Option<i64>, _>(1)?))
        })
        .transpose()
        .map_err(read_failed)?;
    let rows =
        query::<Postgres>("SELECT first_seq, last_seq, body, hashes FROM events WHERE run_id = $1 ORDER BY first_seq")
            .bind(&run_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(read_failed)?;
    tx.commit().await.map_err(read_failed)?;
    if rows.is_empty() && recorded_head.is_none() {
        return Err(JournalError::NotFound(run_id));
    }
    let mut check = ChainCheck::default();
    for row in &rows {
        let first_seq: i64 = row.try_get(0).map_err(read_failed)?;
        let last_seq: i64 = row.try_get(1).map_err(read_failed)?;
        let body: &str = row.try_get(2).map_err(read_failed)?;
        let hashes: Option<&[u8]> = row.try_get(3).map_err(read_failed)?;
        check.row(unsigned(first_seq), unsigned(last_seq), body, hashes);
    }
    if let Some((head_hash, Some(head_seq))) = recorded_head {
        check.against_head(unsigned(head_seq), head_hash.as_deref());
    }
    Ok(check.report(run))
}
