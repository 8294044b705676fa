//! The journal file's schema and its migrations. A file records the version
//! it was migrated to in `schema_version`; opening applies the missing
//! migrations in order, all in one transaction (a failed upgrade leaves the
//! file as it was), and refuses a file from a newer build rather than guess
//! at tables it does not know.

use crate::StoreError;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};
use std::path::Path;

/// Migrations in order; the version a file is at is the number applied.
/// Append only: a released migration is never edited, a change is a new one.
const MIGRATIONS: &[&str] = &[
    // Version 1: the events themselves and the per-run summary kept beside
    // them.
    //
    // `events` stays a rowid table: bodies are kilobytes (tool results,
    // model text) and SQLite keeps large rows out of line better there than
    // in a WITHOUT ROWID b-tree; the primary key index serves both the
    // duplicate check and reading one run in seq order.
    //
    // `runs` is WITHOUT ROWID because its rows are small and always found by
    // run id. `runs_started` lets listings (newest first, limited) read the
    // index backwards instead of sorting every run; filters by agent or
    // status walk the same index. Every index is pages written on every
    // run's first and last commit, so there is deliberately only this one.
    //
    // `events` holds one row per run per append: `body` is the JSON array
    // `[[seq, at_ms, kind], ...]` of the events appended together, keyed by
    // the first seq. Appends are checked to continue above `last_seq`.
    r#"
    CREATE TABLE events (
        run_id TEXT NOT NULL,
        first_seq INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (run_id, first_seq)
    );
    CREATE TABLE runs (
        run_id TEXT NOT NULL PRIMARY KEY,
        agent TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        finished_at_ms INTEGER,
        steps INTEGER NOT NULL DEFAULT 0,
        input_tokens INTEGER NOT NULL DEFAULT 0,
        output_tokens INTEGER NOT NULL DEFAULT 0,
        cached_input_tokens INTEGER NOT NULL DEFAULT 0,
        cost_usd REAL NOT NULL DEFAULT 0,
        input_preview TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX runs_started ON runs (started_at_ms);
    "#,
    // Version 2: the hash chain, and what lets runs be operated on from any
    // process.
    //
    // `events.hashes` is the concatenated 32-byte chain hashes of the row's
    // events, in order (NULL for rows written before the chain): each is
    // `chain_hash(previous, element)` over the event's `[seq, at_ms, kind]`
    // bytes exactly as they stand in `body`. `runs.head_hash` and
    // `runs.last_seq` are the hash and seq of the run's newest event, kept in
    // the same transaction as every append: they make a removal at the end
    // of a chain detectable, and let the writer check an append continues
    // its run with the one statement that records the new head.
    //
    // `leases` names the process holding each running run (derived from
    // `run_started`/`run_resumed`, dropped by `run_suspended`/
    // `run_finished`). `agents` is the kill switch, `agent_versions` the
    // definitions resume rebuilds agents from (a rowid table: definitions
    // are kilobytes), `cancel_requests` cancellations asked for from another
    // process. The small tables are WITHOUT ROWID, always found by key.
    r#"
    ALTER TABLE events ADD COLUMN hashes BLOB;
    ALTER TABLE runs ADD COLUMN head_hash BLOB;
    ALTER TABLE runs ADD COLUMN last_seq INTEGER;
    CREATE TABLE leases (
        run_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        since_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE agents (
        name TEXT PRIMARY KEY,
        enabled INTEGER NOT NULL DEFAULT 1,
        changed_by TEXT,
        changed_at_ms INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE agent_versions (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        definition TEXT NOT NULL,
        registered_at_ms INTEGER NOT NULL,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE cancel_requests (
        run_id TEXT PRIMARY KEY,
        by TEXT NOT NULL,
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    "#,
    // Version 3: webhook deliveries seen, by hook and the sender's delivery
    // id, with the run each started, so that a retried or replayed delivery
    // starts nothing and can be answered with the run it started.
    r#"
    CREATE TABLE webhook_deliveries (
        hook TEXT NOT NULL,
        delivery_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        PRIMARY KEY (hook, delivery_id)
    ) WITHOUT ROWID;
    "#,
    // Version 4: tenants, deployed versions and API keys.
    //
    // `runs.tenant` comes from the run's `run_started` (the default tenant
    // for runs journaled before tenants); `runs_tenant` serves a tenant's
    // listings newest first. `agents.tenant` owns the name; `active_version`
    // is the deployed version, and `agent_activations` the history of
    // deploys that a roll-back reads (rowid order). `api_keys` holds keys by
    // their public id with the SHA-256 of the whole key; `tenant_limits` a
    // tenant's own limits as JSON.
    r#"
    ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    CREATE INDEX runs_tenant ON runs (tenant, started_at_ms);
    ALTER TABLE agents ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE agents ADD COLUMN active_version TEXT;
    CREATE TABLE agent_activations (
        name TEXT NOT NULL,
        version TEXT NOT NULL,
        by TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    );
    CREATE INDEX agent_activations_name ON agent_activations (name);
    CREATE TABLE api_keys (
        id TEXT PRIMARY KEY,
        tenant TEXT NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at_ms INTEGER NOT NULL,
        revoked_at_ms INTEGER
    ) WITHOUT ROWID;
    CREATE TABLE tenant_limits (
        tenant TEXT PRIMARY KEY,
        limits TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
    // Version 5: the run queue (`queue.rs`): runs waiting for a worker and the lease
    // of the worker holding each claimed one. `state` is `queued`,
    // `claimed` or `done`; a claimed row whose `lease_until_ms` has passed
    // is claimable again, and `lease_expiries` counts the times that
    // happened to the run. Rows stay when done (so a late enqueue of the
    // same id changes nothing), and the partial index keeps claims on the
    // live rows only, oldest first. A rowid table: inputs can be long.
    r#"
    CREATE TABLE run_queue (
        run_id TEXT NOT NULL PRIMARY KEY,
        tenant TEXT NOT NULL,
        agent TEXT NOT NULL,
        agent_version TEXT NOT NULL,
        input TEXT NOT NULL,
        enqueued_at_ms INTEGER NOT NULL,
        state TEXT NOT NULL,
        owner TEXT,
        lease_until_ms INTEGER,
        lease_expiries INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX run_queue_live ON run_queue (enqueued_at_ms, run_id) WHERE state <> 'done';
    CREATE INDEX run_queue_owner ON run_queue (owner) WHERE state = 'claimed';
    "#,
    // Version 6: schedule ticks claimed: one row per (agent, schedule, tick), inserted
    // by the one process that fires the tick, with the run it started, so
    // that however many servers share the store each tick starts one run.
    r#"
    CREATE TABLE schedule_ticks (
        agent TEXT NOT NULL,
        schedule TEXT NOT NULL,
        tick_ms INTEGER NOT NULL,
        run_id TEXT NOT NULL,
        claimed_at_ms INTEGER NOT NULL,
        PRIMARY KEY (agent, schedule, tick_ms)
    ) WITHOUT ROWID;
    "#,
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The version recorded in the file; 0 for a new, empty file.
pub(crate) fn stored_version(conn: &Connection) -> rusqlite::Result<i64> {
    let has_table = conn
        .query_row("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'", [], |_| Ok(()))
        .optional()?
        .is_some();
    if !has_table {
        return Ok(0);
    }
    conn.query_row("SELECT COALESCE(MAX(version), 0) FROM schema_version", [], |row| row.get(0))
}

/// Refuses a file from a newer build without changing it.
pub(crate) fn check_not_newer(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let found = stored_version(conn).map_err(|source| StoreError::open(path, source))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
    }
    Ok(())
}

/// Brings the file up to [`SCHEMA_VERSION`].
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    // IMMEDIATE takes the write lock before reading the version, so two
    // processes opening a new file at once cannot both apply migration 1.
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).map_err(|source| StoreError::Migrate {
        path: path.to_path_buf(),
        version: 0,
        source,
    })?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_version (
            version INTEGER NOT NULL PRIMARY KEY,
            applied_at_ms INTEGER NOT NULL
        )",
    )
    .map_err(|source| StoreError::Migrate { path: path.to_path_buf(), version: 0, source })?;
    let found = stored_version(&tx).map_err(|source| StoreError::open(path, source))?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema { path: path.to_path_buf(), found, supported: SCHEMA_VERSION });
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let version = index as i64 + 1;
        let failed = |source| StoreError::Migrate { path: path.to_path_buf(), version, source };
        tx.execute_batch(sql).map_err(failed)?;
        tx.execute("INSERT INTO schema_version (version, applied_at_ms) VALUES (?1, ?2)", (version, now_ms))
            .map_err(failed)?;
        tracing::info!(path = %path.display(), version, "migrated journal schema");
    }
    tx.commit().map_err(|source| StoreError::Migrate { path: path.to_path_buf(), version: SCHEMA_VERSION, source })
}
