//! The streamed form of a Chat Completions answer: `chat.completion.chunk`
//! objects in `data:` events, ending with `data: [DONE]`. Each chunk's
//! `choices[0].delta` carries more text or tool-call pieces; a tool call's
//! pieces carry its `index` (the first also its `id` and `function.name`,
//! later ones only `function.arguments` fragments), and the pieces of
//! parallel calls may interleave. The last choice chunk has the
//! `finish_reason`; with `stream_options.include_usage` a final chunk with no
//! choices has the usage.
//!
//! The [`Assembler`] forwards the pieces as [`StreamDelta`]s and rebuilds
//! the body a non-streaming call would have returned, which
//! [`super::wire::decode`] then reads: both modes give the same
//! [`rein_types::ModelResponse`] by construction.

use crate::sse::Deltas;
use rein_types::StreamDelta;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<ChunkDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChunkDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ChunkCall>>,
}

#[derive(Deserialize)]
struct ChunkCall {
    #[serde(default)]
    index: Option<usize>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<ChunkFunction>,
}

#[derive(Deserialize)]
struct ChunkFunction {
    #[serde(default)]
    name: Option<String>,
    /// A fragment of JSON text; a few servers send the whole object.
    #[serde(default)]
    arguments: Option<Value>,
}

/// A tool call being reassembled.
#[derive(Default)]
struct Call {
    id: Option<String>,
    name: String,
    arguments: String,
    /// `ToolCallStarted` was sent (it waits for the name).
    started: bool,
}

/// Why the assembler stopped reading.
pub(super) enum Stop {
    /// A data line that is not a chunk.
    NotAChunk(serde_json::Error, String),
    /// A chunk holding an error object (OpenRouter reports upstream failures
    /// mid-stream this way); it reads like a whole error body.
    ErrorChunk(String),
}

/// Collects one streamed answer.
#[derive(Default)]
pub(super) struct Assembler {
    model: Option<String>,
    text: Option<String>,
    refusal: Option<String>,
    calls: BTreeMap<usize, Call>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

impl Assembler {
    /// Takes one event's data, forwarding what it adds to `deltas`. Breaks
    /// at `[DONE]`.
    pub fn push(&mut self, data: &str, deltas: &Deltas<'_>) -> Result<ControlFlow<()>, Stop> {
        if data.trim() == "[DONE]" {
            self.done = true;
            return Ok(ControlFlow::Break(()));
        }
        let chunk: Chunk = serde_json::from_str(data).map_err(|e| Stop::NotAChunk(e, data.to_owned()))?;
        if chunk.error.as_ref().is_some_and(|e| !e.is_null()) {
            return Err(Stop::ErrorChunk(data.to_owned()));
        }
        if let Some(model) = chunk.model.filter(|m| !m.is_empty()) {
            self.model = Some(model);
        }
        if let Some(usage) = chunk.usage.filter(|u| !u.is_null()) {
            self.usage = Some(usage);
        }
        for (position, choice) in chunk.choices.unwrap_or_default().into_iter().enumerate() {
            if let Some(reason) = choice.finish_reason {
                self.finish_reason = Some(reason);
            }
            let Some(delta) = choice.delta else { continue };
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.text.get_or_insert_with(String::new).push_str(&text);
                deltas.send(StreamDelta::Text(text));
            }
            if let Some(text) = delta.refusal.filter(|t| !t.is_empty()) {
                self.refusal.get_or_insert_with(String::new).push_str(&text);
                deltas.send(StreamDelta::Text(text));
            }
            for (call_position, piece) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
                // Only the first choice is read, as in a whole answer.
                if position == 0 {
                    self.push_call(piece, call_position, deltas);
                }
            }
        }
        Ok(ControlFlow::Continue(()))
    }

    fn push_call(&mut self, piece: ChunkCall, position: usize, deltas: &Deltas<'_>) {
        let index = piece.index.unwrap_or(position);
        let call = self.calls.entry(index).or_default();
        if let Some(id) = piece.id.filter(|id| !id.is_empty()) {
            call.id.get_or_insert(id);
        }
        let (name, arguments) = match piece.function {
            Some(function) => (function.name, function.arguments),
            None => (None, None),
        };
        let fragment = match arguments {
            Some(Value::String(text)) => text,
            Some(Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        };
        call.arguments.push_str(&fragment);
        if !call.started {
            if let Some(name) = name.filter(|n| !n.is_empty()) {
                call.name = name;
                call.started = true;
                let id = call.id.clone().unwrap_or_else(|| format!("call_{index}"));
                deltas.send(StreamDelta::ToolCallStarted { index, id, name: call.name.clone() });
                // Arguments that arrived before the name, if any.
                if !call.arguments.is_empty() {
                    deltas.send(StreamDelta::ToolCallArguments { index, fragment: call.arguments.clone() });
                }
            }
        } else if !fragment.is_empty() {
            deltas.send(StreamDelta::ToolCallArguments { index, fragment });
        }
    }

    /// Whether the stream said all it has to say: `[DONE]`, or (for servers
    /// that close without it) a finish reason and the usage.
    pub fn is_complete(&self) -> bool {
        self.done || (self.finish_reason.is_some() && self.usage.is_some())
    }

    /// The body a non-streaming call would have returned.
    pub fn into_body(self) -> Vec<u8> {
        let calls: Vec<Value> = self
            .calls
            .into_iter()
            .filter(|(_, call)| call.started)
            .map(|(index, call)| {
                json!({
                    "id": call.id.unwrap_or_else(|| format!("call_{index}")),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                })
            })
            .collect();
        let body = json!({
            "object": "chat.completion",
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": self.text,
                    "refusal": self.refusal,
                    "tool_calls": if calls.is_empty() { Value::Null } else { Value::Array(calls) },
                },
                "finish_reason": self.finish_reason,
            }],
            "usage": self.usage,
        });
        body.to_string().into_bytes()
    }
}
