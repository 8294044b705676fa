//! The streamed form of a Messages API answer: `message_start` (the model
//! and the input usage), then per content block `content_block_start`,
//! `content_block_delta`s (`text_delta`, or `input_json_delta` fragments of
//! a tool's input) and `content_block_stop`, then `message_delta` (the stop
//! reason and the output usage) and `message_stop`; `ping`s may come
//! anywhere, and an `error` event ends a failed stream.
//!
//! The [`Assembler`] forwards text and tool input as [`StreamDelta`]s (a
//! tool's index is its position among the answer's `tool_use` blocks) and
//! rebuilds the body a non-streaming call would have returned, which
//! [`super::wire::decode`] then reads, so both modes give the same
//! [`rein_types::ModelResponse`].

use crate::sse::Deltas;
use rein_types::StreamDelta;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::ops::ControlFlow;

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: Value,
    },
    ContentBlockStart {
        index: usize,
        content_block: Value,
    },
    ContentBlockDelta {
        index: usize,
        delta: Value,
    },
    MessageDelta {
        #[serde(default)]
        delta: Value,
        #[serde(default)]
        usage: Value,
    },
    MessageStop,
    Error {
        #[serde(default)]
        error: Value,
    },
    /// `ping`, `content_block_stop`, and events added later.
    #[serde(other)]
    Other,
}

/// A content block being reassembled.
enum Block {
    Text(String),
    ToolUse {
        id: String,
        name: String,
        start_input: Value,
        json: String,
        tool_index: usize,
    },
    /// Thinking and other blocks a whole answer's decoder skips too.
    Other(Value),
}

/// Why the assembler stopped reading.
pub(super) enum Stop {
    /// A data line that is not an event, or a tool input that is not JSON.
    Invalid(String, String),
    /// An `error` event, with its error object.
    Error(Value),
}

/// Collects one streamed answer.
#[derive(Default)]
pub(super) struct Assembler {
    model: Option<String>,
    usage: Map<String, Value>,
    blocks: BTreeMap<usize, Block>,
    tools: usize,
    stop_reason: Option<Value>,
    done: bool,
}

impl Assembler {
    /// Takes one event's data, forwarding what it adds to `deltas`. Breaks
    /// at `message_stop`.
    pub fn push(&mut self, data: &str, deltas: &Deltas<'_>) -> Result<ControlFlow<()>, Stop> {
        let event: Event = serde_json::from_str(data)
            .map_err(|e| Stop::Invalid(format!("a stream event is not a Messages API event ({e})"), data.to_owned()))?;
        match event {
            Event::MessageStart { message } => {
                if let Some(model) = message.get("model").and_then(Value::as_str) {
                    self.model = Some(model.to_owned());
                }
                self.merge_usage(message.get("usage"));
            }
            Event::ContentBlockStart { index, content_block } => {
                let block = match content_block.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let text = content_block.get("text").and_then(Value::as_str).unwrap_or_default().to_owned();
                        if !text.is_empty() {
                            deltas.send(StreamDelta::Text(text.clone()));
                        }
                        Block::Text(text)
                    }
                    Some("tool_use") => {
                        let tool_index = self.tools;
                        self.tools += 1;
                        let id = match content_block.get("id").and_then(Value::as_str) {
                            Some(id) if !id.is_empty() => id.to_owned(),
                            // As the whole-answer decoder names a call without one.
                            _ => format!("toolu_{tool_index}"),
                        };
                        let name = content_block.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
                        deltas.send(StreamDelta::ToolCallStarted {
                            index: tool_index,
                            id: id.clone(),
                            name: name.clone(),
                        });
                        let start_input = content_block.get("input").cloned().unwrap_or(Value::Null);
                        Block::ToolUse { id, name, start_input, json: String::new(), tool_index }
                    }
                    _ => Block::Other(content_block),
                };
                self.blocks.insert(index, block);
            }
            Event::ContentBlockDelta { index, delta } => {
                let kind = delta.get("type").and_then(Value::as_str);
                match (self.blocks.get_mut(&index), kind) {
                    (Some(Block::Text(text)), Some("text_delta")) => {
                        let piece = delta.get("text").and_then(Value::as_str).unwrap_or_default();
                        if !piece.is_empty() {
                            text.push_str(piece);
                            deltas.send(StreamDelta::Text(piece.to_owned()));
                        }
                    }
                    (Some(Block::ToolUse { json, tool_index, .. }), Some("input_json_delta")) => {
                        let piece = delta.get("partial_json").and_then(Value::as_str).unwrap_or_default();
                        if !piece.is_empty() {
                            json.push_str(piece);
                            deltas.send(StreamDelta::ToolCallArguments {
                                index: *tool_index,
                                fragment: piece.to_owned(),
                            });
                        }
                    }
                    // Thinking, signatures, citations: not part of the answer.
                    _ => {}
                }
            }
            Event::MessageDelta { delta, usage } => {
                if let Some(reason) = delta.get("stop_reason").filter(|r| !r.is_null()) {
                    self.stop_reason = Some(reason.clone());
                }
                self.merge_usage(Some(&usage));
            }
            Event::MessageStop => {
                self.done = true;
                return Ok(ControlFlow::Break(()));
            }
            Event::Error { error } => return Err(Stop::Error(error)),
            Event::Other => {}
        }
        Ok(ControlFlow::Continue(()))
    }

    /// Usage counts arrive in `message_start` and again (cumulative, the
    /// output tokens at least) in `message_delta`; later values win.
    fn merge_usage(&mut self, usage: Option<&Value>) {
        if let Some(Value::Object(fields)) = usage {
            for (key, value) in fields {
                if !value.is_null() {
                    self.usage.insert(key.clone(), value.clone());
                }
            }
        }
    }

    /// Whether `message_stop` arrived.
    pub fn is_complete(&self) -> bool {
        self.done
    }

    /// The body a non-streaming call would have returned.
    pub fn into_body(self) -> Result<Vec<u8>, Stop> {
        let mut content = Vec::with_capacity(self.blocks.len());
        for block in self.blocks.into_values() {
            content.push(match block {
                Block::Text(text) => json!({"type": "text", "text": text}),
                Block::ToolUse { id, name, start_input, json, .. } => {
                    let input = if json.trim().is_empty() {
                        start_input
                    } else {
                        serde_json::from_str::<Value>(&json).map_err(|e| {
                            Stop::Invalid(format!("the streamed input of tool call `{id}` is not JSON ({e})"), json)
                        })?
                    };
                    json!({"type": "tool_use", "id": id, "name": name, "input": input})
                }
                Block::Other(block) => block,
            });
        }
        let body = json!({
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": self.stop_reason,
            "usage": self.usage,
        });
        Ok(body.to_string().into_bytes())
    }
}
