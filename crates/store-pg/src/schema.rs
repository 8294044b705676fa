//! The database schema and its migrations. A schema records the version it
//! was migrated to in `schema_version`; connecting applies the missing
//! migrations in order, all in one transaction (a failed upgrade leaves the
//! schema as it was), under an advisory lock so that processes starting
//! together do not race, and refuses a schema from a newer build rather than
//! guess at tables it does not know.
//!
//! The tables are those of the SQLite journal (`rein-store`'s `schema.rs`)
//! in PostgreSQL's types: the same rows, bodies and hashes, so both backends
//! store the same bytes for the same events. Versions count on their own:
//! this backend was born with the hash chain and the control tables, so its
//! version 1 is the SQLite file's version 2.

use crate::StoreError;
use sqlx_core::connection::Connection as _;
use sqlx_core::query::query;
use sqlx_core::raw_sql::raw_sql;
use sqlx_postgres::{PgConnection, Postgres};

/// Migrations in order; the version a schema is at is the number applied.
/// Append only: a released migration is never edited, a change is a new one.
const MIGRATIONS: &[&str] = &[
    // Version 1.
    //
    // Run ids, agent names and everything listed or resolved by prefix are
    // `COLLATE "C"`: byte order, as SQLite compares, so ids sharing a prefix
    // sort together (a locale collation may ignore the hyphens) and
    // listings come out in the same order from either backend.
    //
    // `events` holds one row per run per append: `body` is the JSON array
    // `[[seq, at_ms, kind], ...]` of the events appended together, keyed by
    // the first seq, and `hashes` the concatenated 32-byte chain hashes of
    // its events, in order: each is `chain_hash(previous, element)` over the
    // event's `[seq, at_ms, kind]` bytes exactly as they stand in `body`.
    //
    // `runs` is the summary kept in the same transaction as every append,
    // with the run's head: `head_hash` and `last_seq`, the hash and seq of
    // its newest event. An append locks its run's row, checks it continues
    // above `last_seq` and moves the head: that is what fences a run
    // between processes. `runs_started` serves listings newest first.
    //
    // `leases` names the process holding each running run, `agents` is the
    // kill switch, `agent_versions` the definitions resume rebuilds agents
    // from (`registration` orders versions registered in the same
    // millisecond, as SQLite's rowid does), `cancel_requests` cancellations
    // asked for from another process.
    r#"
    CREATE TABLE events (
        run_id TEXT COLLATE "C" NOT NULL,
        first_seq BIGINT NOT NULL,
        last_seq BIGINT NOT NULL,
        body TEXT NOT NULL,
        hashes BYTEA,
        PRIMARY KEY (run_id, first_seq)
    );
    CREATE TABLE runs (
        run_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        agent TEXT COLLATE "C" NOT NULL,
        agent_version TEXT NOT NULL,
        status TEXT NOT NULL,
        started_at_ms BIGINT NOT NULL,
        finished_at_ms BIGINT,
        steps BIGINT NOT NULL DEFAULT 0,
        input_tokens BIGINT NOT NULL DEFAULT 0,
        output_tokens BIGINT NOT NULL DEFAULT 0,
        cached_input_tokens BIGINT NOT NULL DEFAULT 0,
        cost_usd DOUBLE PRECISION NOT NULL DEFAULT 0,
        input_preview TEXT NOT NULL,
        head_hash BYTEA,
        last_seq BIGINT
    );
    CREATE INDEX runs_started ON runs (started_at_ms, run_id);
    CREATE TABLE leases (
        run_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        owner TEXT NOT NULL,
        since_ms BIGINT NOT NULL
    );
    CREATE TABLE agents (
        name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        enabled BOOLEAN NOT NULL DEFAULT TRUE,
        changed_by TEXT,
        changed_at_ms BIGINT
    );
    CREATE TABLE agent_versions (
        name TEXT COLLATE "C" NOT NULL,
        version TEXT COLLATE "C" NOT NULL,
        definition TEXT NOT NULL,
        registered_at_ms BIGINT NOT NULL,
        registration BIGINT GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (name, version)
    );
    CREATE TABLE cancel_requests (
        run_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        requested_by TEXT NOT NULL,
        reason TEXT NOT NULL,
        at_ms BIGINT NOT NULL
    );
    "#,
    // Version 2: webhook deliveries seen, by hook and the sender's delivery
    // id, with the run each started, so that a retried or replayed delivery
    // starts nothing and can be answered with the run it started (the
    // SQLite file's version 3).
    r#"
    CREATE TABLE webhook_deliveries (
        hook TEXT COLLATE "C" NOT NULL,
        delivery_id TEXT COLLATE "C" NOT NULL,
        run_id TEXT COLLATE "C" NOT NULL,
        at_ms BIGINT NOT NULL,
        PRIMARY KEY (hook, delivery_id)
    );
    "#,
    // Version 3: tenants, deployed versions and API keys (the SQLite
    // file's version 4). `runs.tenant` comes from the run's `run_started`;
    // `agents.tenant` owns the name, `active_version` is the deployed
    // version and `agent_activations` the history roll-backs read;
    // `api_keys` holds keys by public id with the SHA-256 of the whole key;
    // `tenant_limits` a tenant's own limits as JSON.
    r#"
    ALTER TABLE runs ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';
    CREATE INDEX runs_tenant ON runs (tenant, started_at_ms);
    ALTER TABLE agents ADD COLUMN tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default';
    ALTER TABLE agents ADD COLUMN active_version TEXT;
    CREATE TABLE agent_activations (
        name TEXT COLLATE "C" NOT NULL,
        version TEXT NOT NULL,
        by_whom TEXT NOT NULL,
        at_ms BIGINT NOT NULL,
        activation BIGINT GENERATED ALWAYS AS IDENTITY,
        PRIMARY KEY (name, activation)
    );
    CREATE TABLE api_keys (
        id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        tenant TEXT COLLATE "C" NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        hash TEXT NOT NULL,
        created_at_ms BIGINT NOT NULL,
        revoked_at_ms BIGINT
    );
    CREATE TABLE tenant_limits (
        tenant TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        limits TEXT NOT NULL
    );
    "#,
    // Version 4: the run queue (`queue.rs`), as the SQLite file's version 5: runs waiting for a
    // worker and the lease of the worker holding each claimed one. `state`
    // is `queued`, `claimed` or `done`; a claimed row whose
    // `lease_until_ms` has passed is claimable again, and `lease_expiries`
    // counts the times that happened to the run. Rows stay when done, and
    // the partial index keeps claims (`FOR UPDATE SKIP LOCKED`, oldest
    // first) on the live rows only.
    r#"
    CREATE TABLE run_queue (
        run_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
        tenant TEXT COLLATE "C" NOT NULL,
        agent TEXT COLLATE "C" NOT NULL,
        agent_version TEXT NOT NULL,
        input TEXT NOT NULL,
        enqueued_at_ms BIGINT NOT NULL,
        state TEXT NOT NULL,
        owner TEXT,
        lease_until_ms BIGINT,
        lease_expiries BIGINT NOT NULL DEFAULT 0
    );
    CREATE INDEX run_queue_live ON run_queue (enqueued_at_ms, run_id) WHERE state <> 'done';
    CREATE INDEX run_queue_owner ON run_queue (owner) WHERE state = 'claimed';
    "#,
    // Version 5 (the SQLite file's version 6): schedule ticks claimed: one row per (agent, schedule, tick), inserted
    // by the one process that fires the tick, with the run it started, so
    // that however many servers share the schema each tick starts one run
    // (the SQLite file's `schedule_ticks` migration).
    r#"
    CREATE TABLE schedule_ticks (
        agent TEXT COLLATE "C" NOT NULL,
        schedule TEXT COLLATE "C" NOT NULL,
        tick_ms BIGINT NOT NULL,
        run_id TEXT COLLATE "C" NOT NULL,
        claimed_at_ms BIGINT NOT NULL,
        PRIMARY KEY (agent, schedule, tick_ms)
    );
    "#,
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Serialises migrations of one schema across processes: held until the
/// migrating transaction ends. Keyed by the schema, so stores in different
/// schemas of one database migrate independently.
const LOCK: &str = "SELECT pg_advisory_xact_lock(hashtextextended('rein schema migration ' || current_schema(), 0))";

const CREATE_VERSIONS: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version BIGINT NOT NULL PRIMARY KEY,
    applied_at_ms BIGINT NOT NULL
)";

/// Brings the schema on `search_path` up to [`SCHEMA_VERSION`], or refuses
/// one from a newer build without changing it.
pub(crate) async fn migrate(conn: &mut PgConnection, target: &str) -> Result<(), StoreError> {
    let failed = |version: i64| {
        let target = target.to_string();
        move |error| StoreError::Migrate { target, version, error }
    };
    let mut tx = conn.begin().await.map_err(failed(0))?;
    query::<Postgres>(LOCK).execute(&mut *tx).await.map_err(failed(0))?;
    // Under the lock: two processes creating it at once would clash.
    query::<Postgres>(CREATE_VERSIONS).execute(&mut *tx).await.map_err(failed(0))?;
    let found: i64 = sqlx_core::query_scalar::query_scalar::<Postgres, i64>(
        "SELECT COALESCE(MAX(version), 0)::BIGINT FROM schema_version",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(failed(0))?;
    if found > SCHEMA_VERSION {
        // Dropping the transaction rolls it back: nothing was changed.
        return Err(StoreError::NewerSchema { target: target.to_string(), found, supported: SCHEMA_VERSION });
    }
    if found == SCHEMA_VERSION {
        return tx.commit().await.map_err(failed(SCHEMA_VERSION));
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(usize::try_from(found).unwrap_or(0)) {
        let version = index as i64 + 1;
        raw_sql(*sql).execute(&mut *tx).await.map_err(failed(version))?;
        query::<Postgres>("INSERT INTO schema_version (version, applied_at_ms) VALUES ($1, $2)")
            .bind(version)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(failed(version))?;
        tracing::info!(store = target, version, "migrated journal schema");
    }
    tx.commit().await.map_err(failed(SCHEMA_VERSION))
}
