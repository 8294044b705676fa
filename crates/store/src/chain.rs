//! Checking a run's hash chain against its stored rows.
//!
//! The writer records, for each event, `chain_hash(previous, element)` where
//! `element` is the event's `[seq, at_ms, kind]` bytes exactly as they stand
//! in its row's `body`, and keeps the newest hash and seq in `runs`. Checking
//! recomputes each link from the stored bytes and the recorded previous
//! hash, so an edit shows at the event edited; rows removed or reordered
//! show as seq gaps and links that do not follow; rows removed from the end
//! show against the recorded head.

use rein_types::{CHAIN_GENESIS, ChainFault, ChainProblem, ChainReport, JournalError, RunId, chain_hash};
use rusqlite::{Connection, OptionalExtension};
use std::fmt::Write as _;
use std::ops::Range;

fn read_failed(error: rusqlite::Error) -> JournalError {
    JournalError::Storage(format!("journal read failed: {error}"))
}

/// Checks `run`'s chain. `NotFound` for a run the journal knows nothing of.
pub(crate) fn verify(conn: &Connection, run: RunId) -> Result<ChainReport, JournalError> {
    let run_id = run.to_string();
    // One read transaction: the rows and the head are written together, and
    // read apart an append in between would look like tampering.
    let tx = conn.unchecked_transaction().map_err(read_failed)?;
    let recorded_head: Option<(Option<Vec<u8>>, Option<i64>)> = tx
        .prepare_cached("SELECT head_hash, last_seq FROM runs WHERE run_id = ?1")
        .and_then(|mut s| s.query_row([&run_id], |row| Ok((row.get(0)?, row.get(1)?))).optional())
        .map_err(read_failed)?;
    let mut statement = tx
        .prepare_cached("SELECT first_seq, last_seq, body, hashes FROM events WHERE run_id = ?1 ORDER BY first_seq")
        .map_err(read_failed)?;
    let mut rows = statement.query([&run_id]).map_err(read_failed)?;
    let mut check = ChainCheck::default();
    let mut any_row = false;
    while let Some(row) = rows.next().map_err(read_failed)? {
        any_row = true;
        let first_seq: i64 = row.get(0).map_err(read_failed)?;
        let last_seq: i64 = row.get(1).map_err(read_failed)?;
        let body = match row.get_ref(2).map_err(read_failed)? {
            rusqlite::types::ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
            _ => String::new(),
        };
        let hashes: Option<Vec<u8>> = row.get(3).map_err(read_failed)?;
        check.row(seq(first_seq), seq(last_seq), &body, hashes.as_deref());
    }
    if !any_row && recorded_head.is_none() {
        return Err(JournalError::NotFound(run_id));
    }
    if let Some((head_hash, Some(head_seq))) = recorded_head {
        check.against_head(seq(head_seq), head_hash.as_deref());
    }
    Ok(check.report(run))
}

/// A check of one run's chain, fed its stored rows in seq order and then
/// the head recorded for the run. Shared by every backend, so they judge
/// the same rows alike and report the same problems.
pub struct ChainCheck {
    events: u64,
    /// The seq the next event should have.
    next_seq: u64,
    /// The recorded hash the next event should chain from; `None` after a
    /// row whose hashes cannot be read, when the next link cannot be judged.
    previous: Option<[u8; 32]>,
    /// The last event with a recorded hash: its seq and hash.
    last: Option<(u64, [u8; 32])>,
    /// The last seq seen, chained or not.
    last_seq: Option<u64>,
    problems: Vec<ChainProblem>,
}

impl Default for ChainCheck {
    fn default() -> Self {
        Self { events: 0, next_seq: 0, previous: Some(CHAIN_GENESIS), last: None, last_seq: None, problems: Vec::new() }
    }
}

impl ChainCheck {
    fn problem(&mut self, seq: u64, fault: ChainFault, detail: String) {
        self.problems.push(ChainProblem { seq, fault, detail });
    }

    /// Checks the next stored row: the seqs its key says it holds, its
    /// `body` (the JSON array of `[seq, at_ms, kind]` elements) and its
    /// `hashes` column (`None` where it is NULL).
    pub fn row(&mut self, first_seq: u64, last_seq: u64, body: &str, hashes: Option<&[u8]>) {
        let Some(elements) = elements(body) else {
            self.problem(
                first_seq,
                ChainFault::Edited,
                format!("the row holding seqs {first_seq} to {last_seq} is not a list of events any more"),
            );
            self.previous = None;
            self.next_seq = last_seq.saturating_add(1);
            self.last_seq = Some(last_seq);
            return;
        };
        let seqs: Vec<Option<u64>> = elements.iter().map(|range| leading_seq(&body[range.clone()])).collect();
        let count = elements.len();
        let links = match hashes {
            // Hashes missing after chained rows were removed, not never
            // written: only a run's oldest rows can predate the chain.
            None if self.last.is_some() => {
                self.problem(
                    first_seq,
                    ChainFault::Broken,
                    format!("seqs {first_seq} to {last_seq} lost their chain hashes after chained events"),
                );
                Links::Unchained
            }
            None => {
                self.problem(
                    first_seq,
                    ChainFault::Unchained,
                    format!(
                        "seqs {first_seq} to {last_seq} were written before the journal was chained and cannot be checked"
                    ),
                );
                Links::Unchained
            }
            Some(hashes) if hashes.len() != count * 32 => {
                self.problem(
                    first_seq,
                    ChainFault::Edited,
                    format!(
                        "the row holding seqs {first_seq} to {last_seq} has {count} events but {} bytes of hashes",
                        hashes.len()
                    ),
                );
                Links::Damaged
            }
            Some(hashes) => Links::Chained(hashes),
        };
        for (k, (range, seq)) in elements.iter().zip(&seqs).enumerate() {
            self.events += 1;
            let at = seq.unwrap_or(self.next_seq);
            let gap = match seq {
                Some(seq) if *seq == self.next_seq => false,
                Some(seq) => {
                    let next = self.next_seq;
                    let detail = if *seq > next {
                        format!("seq {seq} comes where seq {next} should: seqs {next} to {} are missing", seq - 1)
                    } else {
                        format!("seq {seq} comes where seq {next} should: events were repeated or reordered")
                    };
                    self.problem(*seq, ChainFault::Gap, detail);
                    true
                }
                None => {
                    self.problem(
                        at,
                        ChainFault::Edited,
                        format!("the event where seq {at} should be has no readable seq"),
                    );
                    false
                }
            };
            self.next_seq = at.saturating_add(1);
            self.last_seq = Some(at);
            let Links::Chained(hashes) = links else { continue };
            let recorded = link(hashes, k);
            let previous = if k == 0 { self.previous } else { Some(link(hashes, k - 1)) };
            if let Some(previous) = previous
                && chain_hash(&previous, body[range.clone()].as_bytes()) != recorded
            {
                // A row's first link fails alike whether its bytes were
                // edited or the row before it is not the one it was chained
                // to; the seqs tell which: rows removed or reordered leave a
                // gap, an edit does not.
                if k == 0 && gap {
                    self.problem(
                        at,
                        ChainFault::Broken,
                        format!(
                            "seq {at} does not chain from the event stored before it: events were removed or reordered"
                        ),
                    );
                } else {
                    self.problem(
                        at,
                        ChainFault::Edited,
                        format!("seq {at} no longer hashes to the hash recorded when it was written: it was changed"),
                    );
                }
            }
            self.last = Some((at, recorded));
        }
        self.previous = match links {
            Links::Chained(hashes) if count > 0 => Some(link(hashes, count - 1)),
            Links::Chained(_) => self.previous,
            // After rows written before the chain, the writer starts afresh.
            Links::Unchained => Some(CHAIN_GENESIS),
            Links::Damaged => None,
        };
    }

    /// Compares where the chain ends with the head recorded in `runs`.
    pub fn against_head(&mut self, head_seq: u64, head_hash: Option<&[u8]>) {
        let Some(last_seq) = self.last_seq else {
            self.problem(
                0,
                ChainFault::Truncated,
                format!("the run's recorded head is seq {head_seq}, but none of its events are stored"),
            );
            return;
        };
        if last_seq < head_seq {
            self.problem(
                last_seq + 1,
                ChainFault::Truncated,
                format!(
                    "the events end at seq {last_seq}, but the run's recorded head is seq {head_seq}: events were removed from the end"
                ),
            );
        } else if last_seq > head_seq {
            self.problem(
                head_seq + 1,
                ChainFault::Broken,
                format!("events run on past the run's recorded head, seq {head_seq}, to seq {last_seq}"),
            );
        } else if let (Some((seq, hash)), Some(head_hash)) = (self.last, head_hash)
            && seq == head_seq
            && hash.as_slice() != head_hash
        {
            self.problem(
                seq,
                ChainFault::Broken,
                format!("the hash recorded for seq {seq} is not the run's recorded head: the chain was rewritten"),
            );
        }
    }

    /// What was found: the events seen, the chain's last hash and every
    /// problem, in the order found.
    pub fn report(self, run: RunId) -> ChainReport {
        ChainReport {
            run_id: run,
            events: self.events,
            head: self.last.map(|(_, hash)| hex(&hash)),
            problems: self.problems,
        }
    }
}

/// What a row's `hashes` column holds.
enum Links<'a> {
    /// NULL: written before the chain.
    Unchained,
    /// Not one hash per event.
    Damaged,
    Chained(&'a [u8]),
}

fn seq(stored: i64) -> u64 {
    u64::try_from(stored).unwrap_or(0)
}

/// The `k`th 32-byte hash of a `hashes` column already checked to hold it.
fn link(hashes: &[u8], k: usize) -> [u8; 32] {
    let mut hash = [0; 32];
    hash.copy_from_slice(&hashes[k * 32..(k + 1) * 32]);
    hash
}

/// The seq an element `[seq, at_ms, kind]` starts with.
fn leading_seq(element: &str) -> Option<u64> {
    let inner = element.strip_prefix('[')?.trim_start();
    let digits = inner.find(|c: char| !c.is_ascii_digit()).unwrap_or(inner.len());
    inner[..digits].parse().ok()
}

/// Lower-case hex, as heads are shown.
pub fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Where each top-level element of the JSON array `body` lies, as written:
/// the bytes each event's chain hash covers. `None` when `body` is not an
/// array of values. A scan rather than a parse, because the element bytes
/// must be exactly the stored ones, not a re-encoding.
pub fn elements(body: &str) -> Option<Vec<Range<usize>>> {
    let bytes = body.as_bytes();
    let open = bytes.iter().position(|b| !b.is_ascii_whitespace())?;
    if bytes[open] != b'[' {
        return None;
    }
    let mut elements = Vec::new();
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let mut start: Option<usize> = None;
    let element = |start: Option<usize>, end: usize| -> Option<Range<usize>> {
        let start = start?;
        Some(start..start + body[start..end].trim_end().len())
    };
    for (at, &byte) in bytes.iter().enumerate().skip(open + 1) {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                start.get_or_insert(at);
            }
            b'[' | b'{' => {
                depth += 1;
                start.get_or_insert(at);
            }
            b']' | b'}' if depth > 0 => depth -= 1,
            b']' => {
                // The array's end: a trailing element, or none in `[]`.
                if start.is_some() {
                    elements.push(element(start, at)?);
                } else if !elements.is_empty() {
                    return None;
                }
                let rest = &bytes[at + 1..];
                return rest.iter().all(u8::is_ascii_whitespace).then_some(elements);
            }
            b',' if depth == 0 => {
                elements.push(element(start.take(), at)?);
            }
            _ if byte.is_ascii_whitespace() => {}
            _ => {
                start.get_or_insert(at);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elements_are_the_bytes_as_written() {
        let body = r#"[[0,1,{"a":"x,]\"y"}], [1,2,[3,{"b":[]}]] ,[2,3,null]]"#;
        let found: Vec<&str> = elements(body).unwrap().into_iter().map(|r| &body[r]).collect();
        assert_eq!(found, [r#"[0,1,{"a":"x,]\"y"}]"#, r#"[1,2,[3,{"b":[]}]]"#, "[2,3,null]"]);
        assert_eq!(elements("[]"), Some(vec![]));
        for bad in ["", "{}", "[[0,1,2]", "[[0,1,2],]", "[,[0]]", "[[0]] x", r#"[["unterminated]]"#] {
            assert_eq!(elements(bad), None, "{bad}");
        }
    }

    #[test]
    fn seqs_are_read_from_the_front_of_an_element() {
        assert_eq!(leading_seq("[12,3,{}]"), Some(12));
        assert_eq!(leading_seq("[ 7 ,3,{}]"), Some(7));
        assert_eq!(leading_seq("[-1,3,{}]"), None);
        assert_eq!(leading_seq("{}"), None);
    }

    #[test]
    fn hex_is_lower_case() {
        assert_eq!(hex(&[0x00, 0xab, 0x7f]), "00ab7f");
    }
}
