//! Checkpoints off the append path.
//!
//! A WAL checkpoint copies committed pages back into the database file and
//! syncs it; run inline (SQLite's default, every 1000 pages) it stalls
//! whichever append happens to cross the threshold for the length of an
//! fsync. Here the writer never checkpoints; this thread does, on its own
//! connection, in `PASSIVE` mode so it never blocks appends. Should the WAL
//! still grow past [`TRUNCATE_BYTES`] (readers pinning old frames under
//! constant load), it runs one `TRUNCATE` checkpoint to keep the file
//! bounded. That one takes the write lock and then waits for readers, so
//! appends wait with it: its connection gives up after [`BUSY_TIMEOUT`], and
//! after a failure the thread waits longer and longer ([`MAX_BACKOFF`] at
//! most) before trying again.
//!
//! The connection is opened before the thread starts, so the journal knows
//! whether checkpoints will run here at all; when they will not, it lets
//! SQLite checkpoint on commit instead (see `SqliteJournal::open`).

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the thread checkpoints while the journal is open.
const INTERVAL: Duration = Duration::from_millis(200);

/// Longest wait between checkpoints after repeated failures.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long a checkpoint waits on locks. Short, because a `TRUNCATE`
/// checkpoint holds the write lock while it waits for readers, and every
/// append waits behind it.
const BUSY_TIMEOUT: Duration = Duration::from_millis(50);

/// WAL size past which a blocking checkpoint resets the file.
const TRUNCATE_BYTES: u64 = 64 * 1024 * 1024;

/// The running checkpointer; stopping it runs a final checkpoint.
pub(crate) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path`, or returns `None` when neither its
    /// connection nor its thread could be had; the writer must then
    /// checkpoint by itself, or the WAL grows without bound.
    pub(crate) fn start(path: &Path) -> Option<Self> {
        let conn = match connect(path) {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!("journal checkpoint connection failed; appends will checkpoint themselves: {e}");
                return None;
            }
        };
        let (stop, stopped) = std::sync::mpsc::channel();
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        let thread = std::thread::Builder::new()
            .name("rein-journal-checkpoint".into())
            .spawn(move || run(&conn, &wal, &stopped))
            .map_err(|e| {
                tracing::warn!("journal checkpoint thread failed to start; appends will checkpoint themselves: {e}")
            })
            .ok()?;
        Some(Self { stop: Some(stop), thread: Some(thread) })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("journal checkpoint thread panicked");
        }
    }
}

/// The checkpointer's own connection, with its short busy timeout.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

fn run(conn: &Connection, wal: &Path, stopped: &Receiver<()>) {
    let mut wait = INTERVAL;
    loop {
        let stopping = match stopped.recv_timeout(wait) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        let oversized = std::fs::metadata(wal).is_ok_and(|m| m.len() > TRUNCATE_BYTES);
        let mode = if oversized { "TRUNCATE" } else { "PASSIVE" };
        wait = match checkpoint(conn, mode) {
            Ok(()) => INTERVAL,
            Err(e) => {
                let next = backoff(wait);
                tracing::warn!(mode, retry_in_ms = next.as_millis() as u64, "journal checkpoint failed: {e}");
                next
            }
        };
        if stopping {
            return;
        }
    }
}

/// Runs one checkpoint. SQLite reports a checkpoint that gave up on a lock
/// not as an error but in the first column of its row; that is a failure
/// here too.
fn checkpoint(conn: &Connection, mode: &str) -> Result<(), String> {
    let busy: i64 =
        conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |row| row.get(0)).map_err(|e| e.to_string())?;
    if busy != 0 {
        return Err(format!("the {mode} checkpoint could not finish: the journal was busy"));
    }
    Ok(())
}

/// The wait after a failure, when the last wait was `wait`: doubled, at most
/// [`MAX_BACKOFF`].
fn backoff(wait: Duration) -> Duration {
    (wait * 2).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn a_blocked_truncate_gives_up_quickly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.db");
        let writer = Connection::open(&path).unwrap();
        writer.pragma_update(None, "journal_mode", "wal").unwrap();
        writer.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").unwrap();
        // A reader pinning the current snapshot while the writer moves on:
        // a TRUNCATE checkpoint cannot finish until it lets go.
        let reader = Connection::open(&path).unwrap();
        reader.execute_batch("BEGIN").unwrap();
        let _: i64 = reader.query_row("SELECT COUNT(*) FROM t", [], |row| row.get(0)).unwrap();
        writer.execute("INSERT INTO t VALUES (2)", []).unwrap();

        let conn = connect(&path).unwrap();
        let started = Instant::now();
        let outcome = checkpoint(&conn, "TRUNCATE");
        assert!(outcome.is_err(), "a pinned snapshot blocks the truncation");
        assert!(started.elapsed() < Duration::from_secs(1), "gave up after {:?}", started.elapsed());
        // Meanwhile the write lock is free again for appends.
        writer.execute("INSERT INTO t VALUES (3)", []).unwrap();

        reader.execute_batch("COMMIT").unwrap();
        assert_eq!(checkpoint(&conn, "TRUNCATE"), Ok(()));
        assert_eq!(std::fs::metadata(format!("{}-wal", path.display())).unwrap().len(), 0);
    }

    #[test]
    fn failures_back_off_up_to_a_bound() {
        assert_eq!(backoff(INTERVAL), INTERVAL * 2);
        let mut wait = INTERVAL;
        for _ in 0..20 {
            wait = backoff(wait);
        }
        assert_eq!(wait, MAX_BACKOFF);
    }

    #[test]
    fn no_connection_means_no_checkpointer() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Checkpointer::start(&dir.path().join("missing").join("j.db")).is_none());
    }
}
