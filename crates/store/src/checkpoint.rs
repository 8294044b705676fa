//! Checkpoints off the append path.
//!
//! A WAL checkpoint copies committed pages back into the database file and
//! syncs it; run inline (SQLite's default, every 1000 pages) it stalls
//! whichever append happens to cross the threshold for the length of an
//! fsync. Here the writer never checkpoints; this thread does, on its own
//! connection, in `PASSIVE` mode so it never blocks appends. Should the WAL
//! still grow past [`TRUNCATE_BYTES`] (readers pinning old frames under
//! constant load), it runs one `TRUNCATE` checkpoint, which waits for the
//! writer briefly, to keep the file bounded.

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the thread checkpoints while the journal is open.
const INTERVAL: Duration = Duration::from_millis(200);

/// WAL size past which a blocking checkpoint resets the file.
const TRUNCATE_BYTES: u64 = 64 * 1024 * 1024;

/// The running checkpointer; stopping it runs a final checkpoint.
pub(crate) struct Checkpointer {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts checkpointing `path`. Failing to start is not fatal: SQLite
    /// then checkpoints when the last connection closes.
    pub(crate) fn start(path: &Path) -> Self {
        let (stop, stopped) = std::sync::mpsc::channel();
        let path = path.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("rein-journal-checkpoint".into())
            .spawn(move || run(&path, &stopped))
            .map_err(|e| tracing::warn!("journal checkpoints will run at close only: {e}"))
            .ok();
        Self { stop: Some(stop), thread }
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

fn run(path: &PathBuf, stopped: &Receiver<()>) {
    let conn = match Connection::open(path) {
        Ok(conn) => conn,
        Err(e) => {
            tracing::warn!("journal checkpoint connection failed: {e}");
            return;
        }
    };
    let _ = conn.busy_timeout(Duration::from_secs(5));
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    loop {
        let stopping = match stopped.recv_timeout(INTERVAL) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        let oversized = std::fs::metadata(&wal).is_ok_and(|m| m.len() > TRUNCATE_BYTES);
        let mode = if oversized { "TRUNCATE" } else { "PASSIVE" };
        if let Err(e) = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(())) {
            tracing::warn!("journal checkpoint failed: {e}");
        }
        if stopping {
            return;
        }
    }
}
