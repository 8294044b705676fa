//! Appends: one transaction per `append`, holding every run it touches.
//!
//! The batch is encoded by `rein-store`'s [`Batch::encode`], so the rows,
//! bodies and chain hashes are byte for byte those the SQLite journal
//! writes. Per run (in run-id order, so two batches spanning the same runs
//! lock them in the same order and cannot deadlock), the transaction:
//!
//! 1. locks the run's head: its `runs` row, `FOR UPDATE`. A run with no
//!    summary yet (its first append, or events of a run whose start was
//!    never journaled) has no row to lock; then a transaction-scoped
//!    advisory lock on the run id stands in, and the row is looked for
//!    again under it, because whoever creates a run's summary holds that
//!    lock until it commits. Either way, of two processes appending to one
//!    run, the second waits for the first to commit and then reads the head
//!    the first moved (PostgreSQL re-reads a row locked `FOR UPDATE` at its
//!    newest committed version);
//! 2. checks the append continues above the head's seq (the same
//!    [`continues`] check as SQLite): of two processes appending the same
//!    seq, exactly one succeeds, the other gets an error and writes nothing;
//! 3. chains the row's events from the head hash, records the new head and
//!    the summary changes in one `UPDATE ... WHERE last_seq = <the head it
//!    read>` (a second guard: it must change exactly the locked row), or
//!    creates the summary on `RunStarted`;
//! 4. inserts the events row and takes or drops the run's lease.
//!
//! A failure anywhere rolls the whole batch back. The transaction runs on
//! its own task: a caller that stops waiting (a time-out, a `select!`)
//! does not cut a commit off halfway, and the batch is committed all the
//! same, as with the SQLite journal.

use rein_store::shared::{Batch, LeaseChange, Row, chain, continues, head_of};
use rein_types::{CHAIN_GENESIS, JournalError, RunId};
use sqlx_core::query::query;
use sqlx_core::row::Row as _;
use sqlx_postgres::{PgConnection, PgPool, Postgres};

/// The run's head, locked for the rest of the transaction.
const LOCK_HEAD: &str = "SELECT last_seq, head_hash FROM runs WHERE run_id = $1 FOR UPDATE";

/// Stands in for the row lock while a run has no summary row.
const LOCK_RUN: &str = "SELECT pg_advisory_xact_lock($1)";

/// The newest row of a run without a summary: the seq appends must continue
/// above, and the hashes whose last is the head.
const NEWEST_ROW: &str = "SELECT last_seq, hashes FROM events WHERE run_id = $1 ORDER BY first_seq DESC LIMIT 1";

/// A run's first event creates its summary with its head; a second
/// `RunStarted` (tolerated, as by SQLite) refreshes what it describes.
const UPSERT_STARTED: &str =
    "INSERT INTO runs (run_id, agent, agent_version, status, started_at_ms, input_preview, head_hash, last_seq, tenant)
     VALUES ($1, $2, $3, 'running', $4, $5, $6, $7, $8)
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
/// its column alone; a `RunFinished`'s totals replace the sums, otherwise
/// responses are added. Only from the head the appender locked and read.
const UPDATE_RUN: &str = "UPDATE runs SET
         head_hash = $2, last_seq = $3,
         status = COALESCE($4, status),
         finished_at_ms = COALESCE($5, finished_at_ms),
         steps = COALESCE($6, steps) + $7,
         input_tokens = COALESCE($8, input_tokens) + $9,
         output_tokens = COALESCE($10, output_tokens) + $11,
         cached_input_tokens = COALESCE($12, cached_input_tokens) + $13,
         cost_usd = COALESCE($14, cost_usd) + $15
     WHERE run_id = $1 AND last_seq IS NOT DISTINCT FROM $16";

const INSERT_EVENTS: &str =
    "INSERT INTO events (run_id, first_seq, last_seq, body, hashes) VALUES ($1, $2, $3, $4, $5)";

const TAKE_LEASE: &str = "INSERT INTO leases (run_id, owner, since_ms) VALUES ($1, $2, $3)
     ON CONFLICT (run_id) DO UPDATE SET owner = excluded.owner, since_ms = excluded.since_ms";

const RELEASE_LEASE: &str = "DELETE FROM leases WHERE run_id = $1";

/// PostgreSQL's code for a unique violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Appends `batch` in one transaction on a task of its own, and waits for
/// the outcome.
pub(crate) async fn append(pool: &PgPool, owner: &std::sync::Arc<str>, batch: Batch) -> Result<(), JournalError> {
    let (pool, owner) = (pool.clone(), owner.clone());
    tokio::spawn(async move { write_batch(&pool, &owner, &batch).await })
        .await
        .map_err(|e| JournalError::Storage(format!("journal append task failed: {e}")))?
}

async fn write_batch(pool: &PgPool, owner: &str, batch: &Batch) -> Result<(), JournalError> {
    let mut rows: Vec<&Row> = batch.rows().iter().collect();
    rows.sort_by(|a, b| a.run_id.cmp(&b.run_id));
    let mut tx = pool.begin().await.map_err(|e| failed("cannot begin a journal transaction", e))?;
    for row in rows {
        // On an error the transaction is dropped, which rolls it back.
        write_row(&mut tx, owner, row).await?;
    }
    tx.commit().await.map_err(|e| failed("journal commit failed", e))
}

/// The head an append continues: the newest event's seq and hash, if the
/// run has events.
struct Head {
    last_seq: Option<i64>,
    hash: [u8; 32],
    /// Whether the run has a summary row (which holds the head).
    summarised: bool,
}

/// Locks `row`'s run and reads its head.
async fn lock_head(conn: &mut PgConnection, row: &Row) -> Result<Head, JournalError> {
    if let Some(head) = summary_head(conn, row).await? {
        return Ok(head);
    }
    query::<Postgres>(LOCK_RUN).bind(lock_key(row.run)).execute(&mut *conn).await.map_err(write_failed)?;
    // The summary may have been created while we waited for the lock.
    if let Some(head) = summary_head(conn, row).await? {
        return Ok(head);
    }
    let newest = query::<Postgres>(NEWEST_ROW)
        .bind(&row.run_id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(write_failed)?
        .map(|r| Ok::<_, sqlx_core::Error>((r.try_get::<i64, _>(0)?, r.try_get::<Option<Vec<u8>>, _>(1)?)))
        .transpose()
        .map_err(write_failed)?;
    Ok(match newest {
        // After rows written before the chain, a chain starts afresh.
        Some((last_seq, hashes)) => Head {
            last_seq: Some(last_seq),
            hash: hashes.as_deref().and_then(last_hash).unwrap_or(CHAIN_GENESIS),
            summarised: false,
        },
        None => Head { last_seq: None, hash: CHAIN_GENESIS, summarised: false },
    })
}

/// The head recorded on the run's summary row, locked; `None` without one.
async fn summary_head(conn: &mut PgConnection, row: &Row) -> Result<Option<Head>, JournalError> {
    let found =
        query::<Postgres>(LOCK_HEAD).bind(&row.run_id).fetch_optional(&mut *conn).await.map_err(write_failed)?;
    let Some(found) = found else { return Ok(None) };
    let last_seq: Option<i64> = found.try_get(0).map_err(write_failed)?;
    let hash: Option<Vec<u8>> = found.try_get(1).map_err(write_failed)?;
    Ok(Some(Head {
        last_seq,
        hash: hash.as_deref().and_then(|h| <[u8; 32]>::try_from(h).ok()).unwrap_or(CHAIN_GENESIS),
        summarised: true,
    }))
}

/// Writes one run's row of a batch: the chained events, the summary, the
/// lease.
async fn write_row(conn: &mut PgConnection, owner: &str, row: &Row) -> Result<(), JournalError> {
    let head = lock_head(conn, row).await?;
    if let Some(last_seq) = head.last_seq {
        continues(row, last_seq)?;
    }
    let mut hashes = Vec::with_capacity(row.elements.len() * 32);
    chain(row, &head.hash, &mut hashes);
    let change = &row.change;
    if let Some(started) = &change.started {
        query::<Postgres>(UPSERT_STARTED)
            .bind(&row.run_id)
            .bind(&started.agent)
            .bind(&started.agent_version)
            .bind(started.started_at_ms)
            .bind(text(&started.input_preview))
            .bind(&head_of(&hashes)[..])
            .bind(row.last_seq)
            .bind(&started.tenant)
            .execute(&mut *conn)
            .await
            .map_err(write_failed)?;
        if change.updates_summary() {
            update_run(conn, row, &hashes, Some(row.last_seq)).await?;
        }
    } else if head.summarised && !update_run(conn, row, &hashes, head.last_seq).await? {
        // Cannot happen while the row is locked; refuse rather than write
        // events past a head that moved.
        return Err(JournalError::Conflict(format!(
            "run {}: its head moved while seq {} was being appended; the batch was not appended",
            row.run_id, row.first_seq
        )));
    }
    query::<Postgres>(INSERT_EVENTS)
        .bind(&row.run_id)
        .bind(row.first_seq)
        .bind(row.last_seq)
        .bind(&row.body)
        .bind(&hashes[..])
        .execute(&mut *conn)
        .await
        .map_err(|e| match &e {
            sqlx_core::Error::Database(db) if db.code().as_deref() == Some(UNIQUE_VIOLATION) => {
                JournalError::Conflict(format!(
                    "run {} already has an event at seq {}; the batch was not appended (batches are all or nothing)",
                    row.run_id, row.first_seq
                ))
            }
            _ => write_failed(e),
        })?;
    match change.lease {
        Some(LeaseChange::Take { since_ms }) => {
            query::<Postgres>(TAKE_LEASE).bind(&row.run_id).bind(owner).bind(since_ms).execute(&mut *conn).await
        }
        Some(LeaseChange::Release) => query::<Postgres>(RELEASE_LEASE).bind(&row.run_id).execute(&mut *conn).await,
        None => return Ok(()),
    }
    .map_err(write_failed)?;
    Ok(())
}

/// Moves the run's head to the end of `hashes` and applies the row's
/// summary changes, only if the stored head is still at `from`. Returns
/// whether the summary row was updated.
async fn update_run(
    conn: &mut PgConnection,
    row: &Row,
    hashes: &[u8],
    from: Option<i64>,
) -> Result<bool, JournalError> {
    let change = &row.change;
    let finished = change.finished.as_ref();
    let [input, output, cached] = change.usage;
    let totals = finished.map(|f| f.usage);
    let updated = query::<Postgres>(UPDATE_RUN)
        .bind(&row.run_id)
        .bind(&head_of(hashes)[..])
        .bind(row.last_seq)
        .bind(change.status)
        .bind(finished.map(|f| f.at_ms))
        .bind(finished.map(|f| f.steps))
        .bind(change.responses)
        .bind(totals.map(|t| t[0]))
        .bind(input)
        .bind(totals.map(|t| t[1]))
        .bind(output)
        .bind(totals.map(|t| t[2]))
        .bind(cached)
        .bind(finished.map(|f| f.cost_usd))
        .bind(change.cost_usd)
        .bind(from)
        .execute(&mut *conn)
        .await
        .map_err(write_failed)?;
    Ok(updated.rows_affected() == 1)
}

/// The advisory lock standing for a run: its id's two halves folded.
fn lock_key(run: RunId) -> i64 {
    let bytes = run.0.as_bytes();
    let half = |range: std::ops::Range<usize>| {
        let mut word = [0; 8];
        word.copy_from_slice(&bytes[range]);
        i64::from_be_bytes(word)
    };
    half(0..8) ^ half(8..16)
}

/// The last hash of a stored `hashes` column: `None` for one whose hashes
/// are not whole.
fn last_hash(hashes: &[u8]) -> Option<[u8; 32]> {
    (!hashes.is_empty() && hashes.len().is_multiple_of(32)).then(|| head_of(hashes))
}

/// PostgreSQL text cannot hold NUL characters, which SQLite keeps: a
/// listing's preview replaces them (the event bodies escape them in JSON).
fn text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') { value.replace('\0', "\u{fffd}").into() } else { value.into() }
}

fn write_failed(error: sqlx_core::Error) -> JournalError {
    failed("journal write failed", error)
}

fn failed(doing: &str, error: sqlx_core::Error) -> JournalError {
    JournalError::Storage(format!("{doing}: {error}"))
}
