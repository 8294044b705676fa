//! Server-sent events (the `text/event-stream` format every provider streams
//! in), read incrementally from a [`reqwest::Response`], and the pieces the
//! three streaming adapters share: counting what was delivered to the caller
//! and replaying a whole answer as deltas when a server ignored `stream`.
//!
//! The parser is the WHATWG algorithm reduced to what model APIs use:
//! `event:` and `data:` fields (several `data:` lines are joined with `\n`),
//! comments (`:` lines, used as keep-alives) ignored, `id:` and `retry:`
//! ignored, `\n`, `\r\n` and `\r` line ends, and an event dispatched at a
//! blank line. Bytes are buffered until a line is complete, so a UTF-8
//! character or a line split across network chunks arrives whole.

use crate::retry::Failure;
use rein_types::{ModelResponse, OnDelta, StreamDelta};
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};

/// One event: its `event:` name (empty when none was given) and its data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct SseEvent {
    pub event: String,
    pub data: String,
}

/// Why reading a stream stopped early.
#[derive(Debug)]
pub(crate) enum SseError<E> {
    /// The connection broke or timed out.
    Read(reqwest::Error),
    /// More than the byte limit arrived.
    TooLarge,
    /// The handler refused an event.
    Handler(E),
}

/// How a stream ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The handler said the answer is complete.
    Done,
    /// The server closed the stream.
    Eof,
}

/// Incremental parser state.
#[derive(Default)]
struct Parser {
    /// Bytes of a line not yet terminated.
    line: Vec<u8>,
    /// The previous chunk ended in `\r`; a `\n` starting the next one belongs
    /// to the same line end.
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
}

impl Parser {
    /// Feeds bytes, calling `emit` for each completed event.
    fn feed<E>(
        &mut self,
        bytes: &[u8],
        emit: &mut impl FnMut(SseEvent) -> Result<ControlFlow<()>, E>,
    ) -> Result<ControlFlow<()>, E> {
        let mut rest = bytes;
        if self.after_cr {
            self.after_cr = false;
            if let Some(stripped) = rest.strip_prefix(b"\n") {
                rest = stripped;
            }
        }
        while let Some(end) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            self.line.extend_from_slice(&rest[..end]);
            let mut next = end + 1;
            if rest[end] == b'\r' {
                match rest.get(next) {
                    Some(b'\n') => next += 1,
                    None => self.after_cr = true,
                    Some(_) => {}
                }
            }
            rest = &rest[next..];
            let line = std::mem::take(&mut self.line);
            if let ControlFlow::Break(()) = self.line_complete(&line, emit)? {
                return Ok(ControlFlow::Break(()));
            }
        }
        self.line.extend_from_slice(rest);
        Ok(ControlFlow::Continue(()))
    }

    fn line_complete<E>(
        &mut self,
        line: &[u8],
        emit: &mut impl FnMut(SseEvent) -> Result<ControlFlow<()>, E>,
    ) -> Result<ControlFlow<()>, E> {
        if line.is_empty() {
            if !self.has_data {
                self.event.clear();
                return Ok(ControlFlow::Continue(()));
            }
            self.has_data = false;
            let event = SseEvent { event: std::mem::take(&mut self.event), data: std::mem::take(&mut self.data) };
            return emit(event);
        }
        if line.first() == Some(&b':') {
            return Ok(ControlFlow::Continue(()));
        }
        let text = String::from_utf8_lossy(line);
        let (field, value) = match text.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (text.as_ref(), ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
        Ok(ControlFlow::Continue(()))
    }
}

/// Reads the events of `response` until `handle` breaks (the answer is
/// complete) or the server closes the stream, failing once more than `limit`
/// bytes have arrived in all.
pub(crate) async fn read_events<E>(
    response: &mut reqwest::Response,
    limit: usize,
    mut handle: impl FnMut(SseEvent) -> Result<ControlFlow<()>, E>,
) -> Result<Ended, SseError<E>> {
    let mut parser = Parser::default();
    let mut total = 0usize;
    loop {
        let Some(chunk) = response.chunk().await.map_err(SseError::Read)? else {
            return Ok(Ended::Eof);
        };
        total = total.saturating_add(chunk.len());
        if total > limit {
            return Err(SseError::TooLarge);
        }
        if let ControlFlow::Break(()) = parser.feed(&chunk, &mut handle).map_err(SseError::Handler)? {
            return Ok(Ended::Done);
        }
    }
}

/// Whether the response is an event stream (a server that does not stream
/// answers `application/json` even when asked to).
pub(crate) fn is_event_stream(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/event-stream"))
}

/// The caller's delta sink, remembering whether anything reached it: once
/// a delta has been shown, a failed call cannot be retried without the
/// caller seeing the answer twice.
pub(crate) struct Deltas<'a> {
    sink: OnDelta<'a>,
    // Atomic only so that the call's future stays `Send`; one task uses it.
    delivered: AtomicBool,
}

impl<'a> Deltas<'a> {
    pub fn new(sink: OnDelta<'a>) -> Self {
        Self { sink, delivered: AtomicBool::new(false) }
    }

    pub fn send(&self, delta: StreamDelta) {
        self.delivered.store(true, Ordering::Relaxed);
        (self.sink)(delta);
    }

    pub fn delivered(&self) -> bool {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Delivers a whole answer, as [`rein_types::Model::complete_streaming`]'s
    /// default does: for servers that answered without streaming.
    pub fn send_whole(&self, response: &ModelResponse) {
        if let Some(text) = response.text.as_ref().filter(|t| !t.is_empty()) {
            self.send(StreamDelta::Text(text.clone()));
        }
        for (index, call) in response.tool_calls.iter().enumerate() {
            self.send(StreamDelta::ToolCallStarted { index, id: call.id.0.clone(), name: call.name.clone() });
            self.send(StreamDelta::ToolCallArguments { index, fragment: call.arguments.clone() });
        }
    }
}

/// A failed streaming attempt is not retried once deltas were delivered:
/// the caller has already shown or acted on part of the answer, and a second
/// attempt would deliver a different answer after it, which no caller can
/// undo. The error is returned as it is instead.
pub(crate) fn no_retry_after_deltas(
    outcome: Result<ModelResponse, Failure>,
    deltas: &Deltas<'_>,
) -> Result<ModelResponse, Failure> {
    outcome.map_err(|mut failure| {
        if deltas.delivered() {
            failure.retryable = false;
        }
        failure
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Vec<SseEvent> {
        let mut parser = Parser::default();
        let mut events = Vec::new();
        for chunk in chunks {
            let flow = parser
                .feed::<()>(chunk, &mut |event| {
                    events.push(event);
                    Ok(ControlFlow::Continue(()))
                })
                .unwrap();
            assert_eq!(flow, ControlFlow::Continue(()));
        }
        events
    }

    fn event(name: &str, data: &str) -> SseEvent {
        SseEvent { event: name.into(), data: data.into() }
    }

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let stream = "event: a\ndata: {\"x\":1}\n\n: keep-alive\n\ndata:no-space\r\n\r\nevent: b\rdata: 1\rdata: 2\r\r";
        let expected = vec![event("a", "{\"x\":1}"), event("", "no-space"), event("b", "1\n2")];
        assert_eq!(parse(&[stream.as_bytes()]), expected);
        for cut in 0..stream.len() {
            let (head, tail) = stream.as_bytes().split_at(cut);
            assert_eq!(parse(&[head, tail]), expected, "cut at {cut}");
        }
    }

    #[test]
    fn a_character_split_between_chunks_arrives_whole() {
        let bytes = "data: é\n\n".as_bytes();
        assert_eq!(parse(&[&bytes[..7], &bytes[7..]]), vec![event("", "é")]);
    }

    #[test]
    fn an_unterminated_event_is_not_dispatched_and_break_stops() {
        assert_eq!(parse(&[b"data: 1\n\ndata: 2\n"]), vec![event("", "1")]);
        let mut parser = Parser::default();
        let mut seen = 0;
        let flow = parser
            .feed::<()>(b"data: 1\n\ndata: 2\n\n", &mut |_| {
                seen += 1;
                Ok(ControlFlow::Break(()))
            })
            .unwrap();
        assert_eq!((flow, seen), (ControlFlow::Break(()), 1));
    }
}
