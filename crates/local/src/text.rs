//! Turning sampled token bytes into text that can be streamed: whole UTF-8
//! characters only (a token may end inside one), and nothing that might be
//! the start of a stop sequence until it is known not to be.

use rein_types::text::prefix_within;

/// Collects token bytes and gives back the longest valid UTF-8 prefix; the
/// bytes of a character split across tokens wait for the rest.
#[derive(Debug, Default)]
pub struct Utf8Assembler {
    pending: Vec<u8>,
}

impl Utf8Assembler {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.pending) {
            Ok(_) => self.pending.len(),
            // An invalid sequence (not merely an unfinished one) can never
            // become valid: let it through as U+FFFD rather than stall.
            Err(e) if e.error_len().is_some() => self.pending.len(),
            Err(e) => e.valid_up_to(),
        };
        let rest = self.pending.split_off(valid);
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending = rest;
        text
    }

    /// Whatever is left at the end, lossily.
    pub fn finish(&mut self) -> String {
        let text = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        text
    }
}

/// Watches the answer for stop sequences. Text is released for streaming
/// only once no stop sequence can begin inside it.
#[derive(Debug)]
pub struct StopWatch {
    stops: Vec<String>,
    text: String,
    released: usize,
    stopped: bool,
}

impl StopWatch {
    pub fn new(stops: &[String]) -> Self {
        Self {
            stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(),
            text: String::new(),
            released: 0,
            stopped: false,
        }
    }

    /// Adds `piece`; returns the text now safe to stream. After a stop
    /// sequence has been seen, nothing more is taken.
    pub fn push(&mut self, piece: &str) -> &str {
        if self.stopped {
            return "";
        }
        let search_from = self.released.saturating_sub(self.longest_stop());
        self.text.push_str(piece);
        let hit = self
            .stops
            .iter()
            .filter_map(|stop| {
                let from = prefix_within(&self.text, search_from).len();
                self.text[from..].find(stop.as_str()).map(|at| from + at)
            })
            .min();
        let start = self.released;
        if let Some(at) = hit {
            self.text.truncate(at);
            self.stopped = true;
            self.released = at.max(start);
            return &self.text[start.min(at)..];
        }
        self.released = self.text.len() - self.held_back();
        &self.text[start..self.released]
    }

    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The whole text, without any stop sequence; what has not been released
    /// yet is returned by [`StopWatch::flush`].
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Releases what was held back (the output ended without a stop).
    pub fn flush(&mut self) -> &str {
        let start = self.released;
        self.released = self.text.len();
        &self.text[start..]
    }

    fn longest_stop(&self) -> usize {
        self.stops.iter().map(String::len).max().unwrap_or(0)
    }

    /// Bytes at the end that could still grow into a stop sequence.
    fn held_back(&self) -> usize {
        let mut held = 0;
        for stop in &self.stops {
            for len in (1..stop.len()).rev() {
                if len > held && stop.is_char_boundary(len) && self.text.ends_with(&stop[..len]) {
                    held = len;
                    break;
                }
            }
        }
        held.min(self.text.len() - self.released)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_tokens_wait_for_their_rest() {
        let mut utf8 = Utf8Assembler::default();
        let euro = "€".as_bytes();
        assert_eq!(utf8.push(&[b'a', euro[0]]), "a");
        assert_eq!(utf8.push(&euro[1..2]), "");
        assert_eq!(utf8.push(&euro[2..]), "€");
        assert_eq!(utf8.push(&[0xff, b'b']), "\u{fffd}b");
        assert_eq!(utf8.push(&euro[..1]), "");
        assert_eq!(utf8.finish(), "\u{fffd}");
    }

    #[test]
    fn text_that_may_start_a_stop_is_held_until_it_cannot() {
        let mut watch = StopWatch::new(&["END".to_owned()]);
        assert_eq!(watch.push("hello E"), "hello ");
        assert_eq!(watch.push("ND"), "");
        assert!(watch.stopped());
        assert_eq!(watch.text(), "hello ");

        let mut watch = StopWatch::new(&["END".to_owned()]);
        assert_eq!(watch.push("an E"), "an ");
        assert_eq!(watch.push("lephant"), "Elephant");
        assert!(!watch.stopped());
        assert_eq!(watch.push(" E"), " ");
        assert_eq!(watch.flush(), "E");
        assert_eq!(watch.text(), "an Elephant E");
    }

    #[test]
    fn a_stop_inside_one_piece_cuts_there_and_ignores_the_rest() {
        let mut watch = StopWatch::new(&["\n\n".to_owned(), "Q:".to_owned()]);
        assert_eq!(watch.push("4\n\nQ: next"), "4");
        assert_eq!(watch.push("more"), "");
        assert_eq!(watch.text(), "4");
    }

    #[test]
    fn without_stops_everything_streams() {
        let mut watch = StopWatch::new(&[]);
        assert_eq!(watch.push("a"), "a");
        assert_eq!(watch.push("é"), "é");
        assert_eq!(watch.flush(), "");
    }
}
