//! The streamed form of a Gemini answer (`:streamGenerateContent?alt=sse`):
//! each `data:` event is a whole `GenerateContentResponse` holding the next
//! parts of the first candidate. Text parts continue the text; a
//! `functionCall` part arrives whole. The last chunk has the `finishReason`
//! and the final `usageMetadata`; the server then closes the stream (there
//! is no end marker). A prompt blocked by the safety filters is a chunk with
//! `promptFeedback.blockReason` and no candidate.
//!
//! The [`Assembler`] forwards text and calls as [`StreamDelta`]s (a call
//! becomes `ToolCallStarted` plus one `ToolCallArguments` with its whole
//! arguments, ids `call_{index}` as in a whole answer) and rebuilds the body
//! a non-streaming call would have returned, which [`super::wire::decode`]
//! then reads, so both modes give the same [`rein_types::ModelResponse`].

use crate::sse::Deltas;
use rein_types::StreamDelta;
use serde::Deserialize;
use serde_json::{Value, json};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Chunk {
    #[serde(default)]
    candidates: Option<Vec<Candidate>>,
    #[serde(default)]
    prompt_feedback: Option<Value>,
    #[serde(default)]
    usage_metadata: Option<Value>,
    #[serde(default)]
    model_version: Option<String>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    parts: Vec<Value>,
}

/// What a chunk means for the stream.
pub(super) enum Stop {
    /// A data line that is not a chunk.
    NotAChunk(serde_json::Error, String),
    /// A chunk with an error object (`{"error":{"code","message","status"}}`).
    Error(String),
    /// A blocked prompt: a chunk that reads like a whole blocked answer.
    Blocked(String),
}

/// Collects one streamed answer.
#[derive(Default)]
pub(super) struct Assembler {
    parts: Vec<Value>,
    calls: usize,
    finish_reason: Option<String>,
    usage: Option<Value>,
    model_version: Option<String>,
}

impl Assembler {
    /// Takes one event's data, forwarding what it adds to `deltas`.
    pub fn push(&mut self, data: &str, deltas: &Deltas<'_>) -> Result<(), Stop> {
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| Stop::NotAChunk(e, data.to_owned()))?;
        let candidates = chunk.candidates.unwrap_or_default();
        let blocked = chunk.prompt_feedback.as_ref().and_then(|f| f.get("blockReason")).is_some_and(|r| !r.is_null());
        if chunk.error.as_ref().is_some_and(|e| !e.is_null()) {
            return Err(Stop::Error(data.to_owned()));
        }
        if blocked && candidates.is_empty() {
            return Err(Stop::Blocked(data.to_owned()));
        }
        if let Some(usage) = chunk.usage_metadata.filter(|u| !u.is_null()) {
            self.usage = Some(usage);
        }
        if let Some(version) = chunk.model_version.filter(|v| !v.is_empty()) {
            self.model_version = Some(version);
        }
        // Only the first candidate is read, as in a whole answer.
        let Some(candidate) = candidates.into_iter().next() else { return Ok(()) };
        if let Some(reason) = candidate.finish_reason {
            self.finish_reason = Some(reason);
        }
        for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
            if let Some(call) = part.get("functionCall") {
                let index = self.calls;
                self.calls += 1;
                let name = call.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                // As the whole-answer decoder writes them.
                let arguments = match call.get("args") {
                    Some(args @ Value::Object(_)) => args.to_string(),
                    _ => "{}".to_owned(),
                };
                deltas.send(StreamDelta::ToolCallStarted { index, id: format!("call_{index}"), name });
                deltas.send(StreamDelta::ToolCallArguments { index, fragment: arguments });
            } else if let Some(text) = part.get("text").and_then(Value::as_str) {
                let thought = part.get("thought").and_then(Value::as_bool).unwrap_or(false);
                if !thought && !text.is_empty() {
                    deltas.send(StreamDelta::Text(text.to_owned()));
                }
            }
            self.parts.push(part);
        }
        Ok(())
    }

    /// Whether the last chunk said why the answer ended.
    pub fn is_complete(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// The body a non-streaming call would have returned.
    pub fn into_body(self) -> Vec<u8> {
        json!({
            "candidates": [{
                "content": {"role": "model", "parts": self.parts},
                "finishReason": self.finish_reason,
            }],
            "usageMetadata": self.usage,
            "modelVersion": self.model_version,
        })
        .to_string()
        .into_bytes()
    }
}
