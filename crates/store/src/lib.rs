//! rein's durable journal: every run's events in one embedded SQLite file,
//! with a `runs` summary table kept in the same transactions so listings
//! never replay journals.
//!
//! [`SqliteJournal`] is built for many short runs appending at once: an
//! uncontended append commits on the caller's task, and appends that arrive
//! while one is committing are committed together in a single transaction
//! (group commit, see `writer.rs`); reads go through a separate pool of read
//! connections off the async threads. The file is in WAL mode with
//! `synchronous=NORMAL`: a committed append survives a crash of the process,
//! and only an OS crash or power loss can take the last few commits with it.
//!
//! Every `SqliteJournal` passes `rein_testkit::conformance`, the suite that
//! defines the [`Journal`] semantics shared with the in-memory journal and
//! other stores.
//!
//! Beside the events the file keeps what lets any process operate on runs
//! ([`ControlStore`]): each event's link in its run's hash chain (so edits,
//! removals and reorderings are detectable, see `chain.rs`), which process
//! holds each running run (a lease derived from the run's own events, named
//! by [`ProcessIdentity`]), registered agent definitions, the kill switch,
//! cancel requests and the webhook deliveries seen, and the run queue
//! workers claim runs from ([`RunQueue`], see `queue.rs`).

mod access;
mod chain;
mod checkpoint;
mod control;
mod identity;
mod queue;
mod reader;
mod schema;
mod writer;

use async_trait::async_trait;
use rein_types::{
    AccessStore, Activation, AgentRecord, AgentVersion, AgentVersionRecord, ApiKeyRecord, ChainReport, Claim,
    ControlStore, Event, Journal, JournalError, Lease, Pruned, QueueDepth, QueuedRun, RunFilter, RunId, RunQueue,
    RunSummary, TenantId, TenantLimits,
};
use rusqlite::Connection;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reader::Readers;
use writer::{Batch, Writer};

pub use identity::{Liveness, ProcessIdentity, owner_liveness};
pub use schema::SCHEMA_VERSION;

/// What every journal backend shares with this one, so that all of them
/// store the same bytes for the same events, chain them alike and judge a
/// chain alike: an append's encoding ([`Batch::encode`](shared::Batch::encode):
/// one row per run, its JSON body, each event's place in it and the summary
/// and lease changes the events imply), the chain hashes of a row, the
/// append-only check, reading a row back, and the chain check.
pub mod shared {
    pub use crate::access::{decode_scopes, encode_scopes};
    pub use crate::chain::{ChainCheck, elements, hex};
    pub use crate::reader::decode_row;
    pub use crate::writer::{
        Batch, Finished, LeaseChange, Row, RunChange, Started, chain, continues, head_of, input_preview,
    };
}

/// How long a connection waits on a lock held by another connection (another
/// rein process on the same file, a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a worker waiting for work looks at the file again: runs
/// enqueued or released by other processes on the same file wake nobody
/// here.
const QUEUE_POLL: Duration = Duration::from_millis(500);

/// SQLite's default WAL size, in pages, at which a commit checkpoints; used
/// only when the checkpoint thread could not start.
const AUTOCHECKPOINT_PAGES: i64 = 1000;

/// Why a journal file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The journal's parent directory could not be created.
    #[error("cannot create the journal directory {}: {source}", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    /// SQLite could not open or configure the file (not a database, no
    /// permission, locked past the busy timeout).
    #[error("cannot open the journal {}: {source}", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    /// The file was written by a newer rein, whose schema this build does
    /// not know; it is left untouched.
    #[error(
        "the journal {} has schema version {found}, but this build of rein understands versions up to {supported}; \
         upgrade rein, or point it at another journal file",
        path.display()
    )]
    NewerSchema { path: PathBuf, found: i64, supported: i64 },
    /// Bringing an older file up to date failed; the file keeps its old
    /// version.
    #[error("cannot migrate the journal {} to schema version {version}: {source}", path.display())]
    Migrate { path: PathBuf, version: i64, source: rusqlite::Error },
}

impl StoreError {
    fn open(path: &Path, source: rusqlite::Error) -> Self {
        Self::Open { path: path.to_path_buf(), source }
    }
}

impl From<StoreError> for JournalError {
    fn from(error: StoreError) -> Self {
        JournalError::Storage(error.to_string())
    }
}

/// Where the journal lives unless configured otherwise: the user's data
/// directory (`~/.local/share/rein/rein.db` on Linux), or `./.rein/rein.db`
/// where the platform has none.
pub fn default_path() -> PathBuf {
    dirs::data_dir().map(|dir| dir.join("rein")).unwrap_or_else(|| PathBuf::from(".rein")).join("rein.db")
}

/// The durable [`Journal`] on an SQLite file.
///
/// `append` returns once its batch is committed. A batch whose caller stops
/// waiting after queueing it (a dropped future) is still committed.
pub struct SqliteJournal {
    path: PathBuf,
    /// Who the runs this journal starts or resumes are leased to.
    owner: String,
    /// Shared with the blocking tasks that write the control tables.
    writer: Arc<Writer>,
    readers: Arc<Readers>,
    /// Wakes this process's workers when it enqueues or releases a run.
    queue_wake: Arc<tokio::sync::Notify>,
    /// `None` when checkpoints could not be moved off the append path; the
    /// writer then checkpoints as SQLite does by default.
    _checkpointer: Option<checkpoint::Checkpointer>,
}

impl std::fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJournal").field("path", &self.path).field("owner", &self.owner).finish_non_exhaustive()
    }
}

impl SqliteJournal {
    /// Opens the journal at `path`, creating the file, its parent
    /// directories and the schema as needed, and migrating an older file.
    /// A file written by a newer schema is refused untouched.
    ///
    /// Runs it starts or resumes are leased to this process
    /// ([`ProcessIdentity::current`]).
    ///
    /// Each `SqliteJournal` has its own connections, so the path must name a
    /// file (`:memory:` would give every connection a different, empty
    /// database; use `rein_testkit::journal::MemoryJournal` instead).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path.as_ref(), checkpoint::Checkpointer::start)
    }

    /// [`Self::open`] with the checkpointer's start given, so tests can
    /// have it fail.
    fn open_with(
        path: &Path,
        start_checkpointer: impl FnOnce(&Path) -> Option<checkpoint::Checkpointer>,
    ) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        if let Some(parent) = path.parent().filter(|parent| !parent.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|source| StoreError::CreateDir { path: parent.to_path_buf(), source })?;
        }
        let mut conn = Connection::open(&path).map_err(|source| StoreError::open(&path, source))?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(|source| StoreError::open(&path, source))?;
        // Checked before any pragma so a newer file is left exactly as found.
        schema::check_not_newer(&conn, &path)?;
        configure_writer(&conn).map_err(|source| StoreError::open(&path, source))?;
        schema::migrate(&mut conn, &path)?;
        let checkpointer = start_checkpointer(&path);
        if checkpointer.is_none() {
            // Nobody else will checkpoint, and a WAL never checkpointed grows
            // without bound: the writer does it after its commits again.
            conn.pragma_update(None, "wal_autocheckpoint", AUTOCHECKPOINT_PAGES)
                .map_err(|source| StoreError::open(&path, source))?;
        }
        tracing::debug!(path = %path.display(), "opened journal");
        let owner = ProcessIdentity::current();
        Ok(Self {
            readers: Arc::new(Readers::new(path.clone())),
            queue_wake: Arc::new(tokio::sync::Notify::new()),
            _checkpointer: checkpointer,
            path,
            writer: Arc::new(Writer::new(conn, owner.clone())),
            owner,
        })
    }

    /// The same journal with runs leased to `owner` instead of this
    /// process: for tests that play several processes on one file.
    pub fn with_owner(mut self, owner: String) -> Self {
        self.writer.exclusive(|conn| conn.set_owner(owner.clone()));
        self.owner = owner;
        self
    }

    /// The file this journal writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs a write that is not an append on the write connection, off the
    /// async threads, between group commits.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let writer = Arc::clone(&self.writer);
        tokio::task::spawn_blocking(move || writer.exclusive(|conn| work(conn)))
            .await
            .map_err(|e| JournalError::Storage(format!("journal write task failed: {e}")))?
    }

    /// Runs a read query on a pooled connection off the async threads.
    async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, JournalError> + Send + 'static,
    ) -> Result<T, JournalError> {
        let readers = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || readers.with(query))
            .await
            .map_err(|e| JournalError::Storage(format!("journal read task failed: {e}")))?
    }
}

fn configure_writer(conn: &Connection) -> rusqlite::Result<()> {
    // Smaller pages than SQLite's 4 KiB default: a commit writes each page
    // it dirties whole, and a run's events dirty a handful of pages with a
    // few hundred bytes each. Measured with bench/rein-bench, 2 KiB pages cut
    // the commit of a run's events by about a sixth against 4 KiB, and 1 KiB
    // or 8 KiB pages did worse. Takes effect on new files only.
    conn.pragma_update(None, "page_size", 2048)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still correct, only slower and with readers blocking the writer;
        // happens on file systems without shared memory support.
        tracing::warn!(mode, "journal could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Checkpoints (and their fsync) run on a thread of their own; see
    // `checkpoint.rs`. Turned back on in `open` if that thread cannot start.
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    // Savepoint journals of the group commit stay in memory.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 16 MiB of page cache keeps the hot ends of the indexes resident.
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

#[async_trait]
impl rein_types::Store for SqliteJournal {
    fn owner(&self) -> &str {
        &self.owner
    }

    async fn unfinished_runs(&self) -> Result<Vec<(RunSummary, Option<Lease>)>, JournalError> {
        self.read(reader::unfinished_runs).await
    }

    async fn prune(&self, before_ms: u64) -> Result<Pruned, JournalError> {
        self.write(move |conn| control::prune(conn, before_ms)).await
    }
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn append(&self, events: &[Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        self.writer.append(Batch::encode(events)?).await
    }

    async fn events(&self, run: RunId) -> Result<Vec<Event>, JournalError> {
        self.read(move |conn| reader::events(conn, run)).await
    }

    async fn events_after(&self, run: RunId, after: u64) -> Result<Vec<Event>, JournalError> {
        self.read(move |conn| reader::events_from(conn, run, Some(after))).await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, JournalError> {
        let filter = filter.clone();
        self.read(move |conn| reader::runs(conn, &filter)).await
    }

    async fn resolve(&self, id_or_prefix: &str) -> Result<RunId, JournalError> {
        let id_or_prefix = id_or_prefix.to_string();
        self.read(move |conn| reader::resolve(conn, &id_or_prefix)).await
    }

    async fn summary(&self, run: RunId) -> Result<Option<RunSummary>, JournalError> {
        self.read(move |conn| reader::run_summary(conn, run)).await
    }
}

#[async_trait]
impl AccessStore for SqliteJournal {
    async fn create_api_key(&self, key: &ApiKeyRecord) -> Result<(), JournalError> {
        let key = key.clone();
        self.write(move |conn| access::create_api_key(conn, &key)).await
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, JournalError> {
        let id = id.to_string();
        self.read(move |conn| access::api_key(conn, &id)).await
    }

    async fn api_keys(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiKeyRecord>, JournalError> {
        let tenant = tenant.cloned();
        self.read(move |conn| access::api_keys(conn, tenant.as_ref())).await
    }

    async fn revoke_api_key(&self, id: &str, now_ms: u64) -> Result<bool, JournalError> {
        let id = id.to_string();
        self.write(move |conn| access::revoke_api_key(conn, &id, now_ms)).await
    }

    async fn set_tenant_limits(&self, tenant: &TenantId, limits: &TenantLimits) -> Result<(), JournalError> {
        let (tenant, limits) = (tenant.clone(), *limits);
        self.write(move |conn| access::set_tenant_limits(conn, &tenant, &limits)).await
    }

    async fn tenant_limits(&self) -> Result<Vec<(TenantId, TenantLimits)>, JournalError> {
        self.read(access::tenant_limits).await
    }
}

#[async_trait]
impl ControlStore for SqliteJournal {
    async fn register_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: &AgentVersion,
        definition: &Value,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        let definition = serde_json::to_string(definition)
            .map_err(|e| JournalError::Storage(format!("cannot encode the definition of agent {name}: {e}")))?;
        let (tenant, name, version) = (tenant.clone(), name.to_string(), version.clone());
        self.write(move |conn| control::register_agent(conn, &tenant, &name, &version, &definition, now_ms)).await
    }

    async fn agent_versions(&self, name: &str) -> Result<Vec<AgentVersionRecord>, JournalError> {
        let name = name.to_string();
        self.read(move |conn| control::agent_versions(conn, &name)).await
    }

    async fn activate_agent(
        &self,
        name: &str,
        version: &AgentVersion,
        by: &str,
        now_ms: u64,
    ) -> Result<(), JournalError> {
        let (name, version, by) = (name.to_string(), version.clone(), by.to_string());
        self.write(move |conn| control::activate_agent(conn, &name, &version, &by, now_ms)).await
    }

    async fn activations(&self, name: &str) -> Result<Vec<Activation>, JournalError> {
        let name = name.to_string();
        self.read(move |conn| control::activations(conn, &name)).await
    }

    async fn agent_definition(&self, name: &str, version: &AgentVersion) -> Result<Option<Value>, JournalError> {
        let (name, version) = (name.to_string(), version.clone());
        self.read(move |conn| control::agent_definition(conn, &name, &version)).await
    }

    async fn agents(&self) -> Result<Vec<AgentRecord>, JournalError> {
        self.read(|conn| control::agents(conn, None)).await
    }

    async fn agent(&self, name: &str) -> Result<Option<AgentRecord>, JournalError> {
        let name = name.to_string();
        self.read(move |conn| control::agents(conn, Some(&name)).map(|mut found| found.pop())).await
    }

    async fn set_agent_enabled(&self, name: &str, enabled: bool, by: &str, now_ms: u64) -> Result<(), JournalError> {
        let (name, by) = (name.to_string(), by.to_string());
        self.write(move |conn| control::set_agent_enabled(conn, &name, enabled, &by, now_ms)).await
    }

    async fn agent_enabled(&self, name: &str) -> Result<bool, JournalError> {
        let name = name.to_string();
        self.read(move |conn| control::agent_enabled(conn, &name)).await
    }

    async fn request_cancel(&self, run: RunId, by: &str, reason: &str, now_ms: u64) -> Result<(), JournalError> {
        let (by, reason) = (by.to_string(), reason.to_string());
        self.write(move |conn| control::request_cancel(conn, run, &by, &reason, now_ms)).await
    }

    async fn stop_requests(&self, runs: &[RunId]) -> Result<Vec<(RunId, String)>, JournalError> {
        let runs = runs.to_vec();
        self.read(move |conn| control::stop_requests(conn, &runs)).await
    }

    async fn lease(&self, run: RunId) -> Result<Option<Lease>, JournalError> {
        self.read(move |conn| control::lease(conn, run)).await
    }

    async fn verify_chain(&self, run: RunId) -> Result<ChainReport, JournalError> {
        self.read(move |conn| chain::verify(conn, run)).await
    }

    async fn record_delivery(
        &self,
        hook: &str,
        delivery_id: &str,
        run: RunId,
        now_ms: u64,
    ) -> Result<Option<RunId>, JournalError> {
        let (hook, delivery_id) = (hook.to_string(), delivery_id.to_string());
        self.write(move |conn| control::record_delivery(conn, &hook, &delivery_id, run, now_ms)).await
    }

    async fn claim_tick(
        &self,
        agent: &str,
        schedule: &str,
        tick_ms: u64,
        run: RunId,
        now_ms: u64,
    ) -> Result<Option<RunId>, JournalError> {
        let (agent, schedule) = (agent.to_string(), schedule.to_string());
        self.write(move |conn| control::claim_tick(conn, &agent, &schedule, tick_ms, run, now_ms)).await
    }
}

#[async_trait]
impl RunQueue for SqliteJournal {
    async fn enqueue(&self, run: &QueuedRun) -> Result<(), JournalError> {
        let run = run.clone();
        self.write(move |conn| queue::enqueue(conn, &run)).await?;
        self.queue_wake.notify_one();
        Ok(())
    }

    async fn claim(&self, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<Option<Claim>, JournalError> {
        let owner = owner.to_string();
        self.write(move |conn| queue::claim(conn, &owner, ttl_ms, now_ms)).await
    }

    async fn claim_run(&self, run: &QueuedRun, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<bool, JournalError> {
        let (run, owner) = (run.clone(), owner.to_string());
        self.write(move |conn| queue::claim_run(conn, &run, &owner, ttl_ms, now_ms)).await
    }

    async fn heartbeat(&self, owner: &str, ttl_ms: u64, now_ms: u64) -> Result<Vec<RunId>, JournalError> {
        let owner = owner.to_string();
        self.write(move |conn| queue::heartbeat(conn, &owner, ttl_ms, now_ms)).await
    }

    async fn release(&self, run: RunId, owner: &str) -> Result<(), JournalError> {
        let owner = owner.to_string();
        if self.write(move |conn| queue::release(conn, run, &owner)).await? {
            self.queue_wake.notify_one();
        }
        Ok(())
    }

    async fn complete(&self, run: RunId, owner: &str) -> Result<(), JournalError> {
        let owner = owner.to_string();
        self.write(move |conn| queue::complete(conn, run, &owner)).await
    }

    async fn live_runs(&self, tenant: &TenantId) -> Result<u64, JournalError> {
        let tenant = tenant.clone();
        self.read(move |conn| queue::live_runs(conn, &tenant)).await
    }

    async fn queue_depth(&self) -> Result<QueueDepth, JournalError> {
        self.read(queue::depth).await
    }

    async fn wait_for_work(&self, timeout: Duration) {
        // A wake-up stored while nobody waited counts (`notify_one` keeps a
        // permit), so a run enqueued between a worker's claim and its wait
        // is not left for the next poll.
        let _ = tokio::time::timeout(timeout.min(QUEUE_POLL), self.queue_wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn autocheckpoint(journal: &SqliteJournal) -> i64 {
        let conn = journal.writer.conn();
        conn.pragma_query_value(None, "wal_autocheckpoint", |row| row.get(0)).unwrap()
    }

    #[test]
    fn the_writer_checkpoints_itself_only_without_the_checkpoint_thread() {
        let dir = tempfile::tempdir().unwrap();
        let journal = SqliteJournal::open(dir.path().join("threaded.db")).unwrap();
        assert_eq!(autocheckpoint(&journal), 0);
        let journal = SqliteJournal::open_with(&dir.path().join("alone.db"), |_| None).unwrap();
        assert_eq!(autocheckpoint(&journal), AUTOCHECKPOINT_PAGES);
    }
}
