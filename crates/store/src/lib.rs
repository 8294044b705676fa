//! rein's durable journal: every run's events in one embedded SQLite file,
//! with a `runs` summary table kept in the same transactions so listings
//! never replay journals.
//!
//! [`SqliteJournal`] is built for many short runs appending at once: one
//! writer thread owns the write connection and commits whatever batches are
//! queued in a single transaction (group commit), while reads go through a
//! separate pool of read connections. Waking a sleeping thread costs about as
//! much as an uncontended commit on a virtual machine, so while appends come
//! back to back the writer, and an appender that is alone, poll for a moment
//! before sleeping; an idle journal sleeps at once. The file is in WAL mode with
//! `synchronous=NORMAL`: a committed append survives a crash of the process,
//! and only an OS crash or power loss can take the last few commits with it.
//!
//! Every `SqliteJournal` passes `rein_testkit::conformance`, the suite that
//! defines the [`Journal`] semantics shared with the in-memory journal and
//! other stores.

mod reader;
mod schema;
mod writer;

use async_trait::async_trait;
use rein_types::{Event, Journal, JournalError, RunFilter, RunId, RunSummary};
use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tokio::sync::oneshot::error::TryRecvError;

use reader::Readers;
use writer::{Batch, Command};

pub use schema::SCHEMA_VERSION;

/// How long a connection waits on a lock held by another connection (another
/// rein process on the same file, a checkpoint) before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a lone `append` polls for its commit before parking its task.
/// An uncontended commit takes tens of microseconds, about what waking a
/// parked runtime thread costs on a virtual machine, so polling roughly
/// halves the latency of an appender running alone (one run after another).
/// Under concurrency commits take longer and the threads stay busy anyway,
/// so appenders with company park at once.
const ALONE_SPIN: Duration = Duration::from_micros(100);

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
    /// The operating system refused a thread for the writer.
    #[error("cannot start the journal writer thread: {0}")]
    Spawn(std::io::Error),
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
/// waiting (a dropped future) is still committed. Dropping the journal
/// finishes the queued appends and stops the writer thread, blocking the
/// dropping thread for at most one group commit.
pub struct SqliteJournal {
    path: PathBuf,
    writer: Sender<Command>,
    writer_thread: Option<JoinHandle<()>>,
    readers: Arc<Readers>,
    /// Appends sent and not yet answered.
    in_flight: AtomicUsize,
}

/// Counts an append in flight for as long as it lives, including when its
/// future is dropped before the answer.
struct InFlight<'a>(&'a AtomicUsize);

impl<'a> InFlight<'a> {
    /// Counts one more append; says whether it was the only one.
    fn enter(count: &'a AtomicUsize) -> (Self, bool) {
        let alone = count.fetch_add(1, Ordering::Relaxed) == 0;
        (Self(count), alone)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJournal").field("path", &self.path).finish_non_exhaustive()
    }
}

impl SqliteJournal {
    /// Opens the journal at `path`, creating the file, its parent
    /// directories and the schema as needed, and migrating an older file.
    /// A file written by a newer schema is refused untouched.
    ///
    /// Each `SqliteJournal` has its own connections, so the path must name a
    /// file (`:memory:` would give every connection a different, empty
    /// database; use `rein_testkit::journal::MemoryJournal` instead).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
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
        let (writer, writer_thread) = writer::spawn(conn).map_err(StoreError::Spawn)?;
        tracing::debug!(path = %path.display(), "opened journal");
        Ok(Self {
            readers: Arc::new(Readers::new(path.clone())),
            path,
            writer,
            writer_thread: Some(writer_thread),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// The file this journal writes.
    pub fn path(&self) -> &Path {
        &self.path
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
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        // Still correct, only slower and with readers blocking the writer;
        // happens on file systems without shared memory support.
        tracing::warn!(mode, "journal could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Savepoint journals of the group commit stay in memory.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // 16 MiB of page cache keeps the hot ends of the indexes resident.
    conn.pragma_update(None, "cache_size", -16_384)?;
    conn.set_prepared_statement_cache_capacity(32);
    Ok(())
}

fn writer_gone() -> JournalError {
    JournalError::Storage("the journal writer thread has stopped; reopen the journal".into())
}

#[async_trait]
impl Journal for SqliteJournal {
    async fn append(&self, events: &[Event]) -> Result<(), JournalError> {
        if events.is_empty() {
            return Ok(());
        }
        let batch = Batch::encode(events)?;
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        let (_in_flight, alone) = InFlight::enter(&self.in_flight);
        self.writer.send(Command::Append { batch, reply }).map_err(|_| writer_gone())?;
        if alone {
            let start = Instant::now();
            while start.elapsed() < ALONE_SPIN {
                match answer.try_recv() {
                    Ok(outcome) => return outcome,
                    Err(TryRecvError::Closed) => return Err(writer_gone()),
                    // Yields to the runtime, so other tasks still run while
                    // this one polls.
                    Err(TryRecvError::Empty) => tokio::task::yield_now().await,
                }
            }
        }
        answer.await.map_err(|_| writer_gone())?
    }

    async fn events(&self, run: RunId) -> Result<Vec<Event>, JournalError> {
        self.read(move |conn| reader::events(conn, run)).await
    }

    async fn runs(&self, filter: &RunFilter) -> Result<Vec<RunSummary>, JournalError> {
        let filter = filter.clone();
        self.read(move |conn| reader::runs(conn, &filter)).await
    }

    async fn resolve(&self, id_or_prefix: &str) -> Result<RunId, JournalError> {
        let id_or_prefix = id_or_prefix.to_string();
        self.read(move |conn| reader::resolve(conn, &id_or_prefix)).await
    }
}

impl Drop for SqliteJournal {
    fn drop(&mut self) {
        // Shutdown queues behind any appends already sent, so they commit
        // before the thread exits; joining makes the file fully closed (and
        // checkpointed) once the drop returns, so it can be reopened at once.
        let _ = self.writer.send(Command::Shutdown);
        if let Some(thread) = self.writer_thread.take()
            && thread.join().is_err()
        {
            tracing::error!(path = %self.path.display(), "journal writer thread panicked");
        }
    }
}
