//! The Anthropic Messages API wire format, private to the adapter.
//!
//! Requests: rein's system messages become the top-level `system` field (a
//! list of text blocks, so the last can carry `cache_control`); tool results
//! are grouped into one user message of `tool_result` blocks right after the
//! assistant turn that asked for them, as Anthropic requires; consecutive
//! turns of one role are merged into one message. Responses: text blocks are
//! joined, `tool_use` blocks become [`ToolCall`]s, and the usage counts the
//! cache writes and reads into the total prompt.

use rein_types::{FinishReason, Message, ModelRequest, ModelResponse, ToolCall, ToolCallId, ToolSpec, Usage};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

/// What a request needs beyond the conversation itself.
pub(super) struct Options {
    /// Sent when the request sets no output cap; Anthropic requires one.
    pub default_max_tokens: u32,
    /// Marks the system prompt and the last tool with `cache_control`.
    pub prompt_caching: bool,
}

// ---------------------------------------------------------------- request

#[derive(Serialize)]
struct MessagesRequest<'a> {
    model: &'a str,
    max_tokens: u32,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    system: Vec<Block<'a>>,
    messages: Vec<WireMessage<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

/// `{"type": "ephemeral"}`: cache the prompt up to and including this block.
#[derive(Serialize, Clone, Copy)]
struct CacheControl {
    #[serde(rename = "type")]
    kind: &'static str,
}

const EPHEMERAL: CacheControl = CacheControl { kind: "ephemeral" };

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block<'a> {
    Text {
        text: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cache_control: Option<CacheControl>,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Value,
    },
    ToolResult {
        tool_use_id: &'a str,
        content: &'a str,
    },
}

impl Block<'_> {
    fn is_tool_result(&self) -> bool {
        matches!(self, Block::ToolResult { .. })
    }
}

#[derive(Serialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Role {
    User,
    Assistant,
}

#[derive(Serialize)]
struct WireMessage<'a> {
    role: Role,
    content: Content<'a>,
}

/// A plain string for a lone user text, blocks otherwise.
enum Content<'a> {
    Text(&'a str),
    Blocks(Vec<Block<'a>>),
}

impl Serialize for Content<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Content::Text(text) => serializer.serialize_str(text),
            Content::Blocks(blocks) => blocks.serialize(serializer),
        }
    }
}

impl<'a> Content<'a> {
    fn into_blocks(self) -> Vec<Block<'a>> {
        match self {
            Content::Text("") => Vec::new(),
            Content::Text(text) => vec![Block::Text { text, cache_control: None }],
            Content::Blocks(blocks) => blocks,
        }
    }

    fn only_tool_results(&self) -> bool {
        matches!(self, Content::Blocks(blocks) if !blocks.is_empty() && blocks.iter().all(Block::is_tool_result))
    }
}

#[derive(Serialize)]
struct WireTool<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    input_schema: &'a Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    cache_control: Option<CacheControl>,
}

/// Serialises the request body for `model`; `stream` asks for server-sent
/// events.
pub(super) fn encode(
    model: &str,
    request: &ModelRequest<'_>,
    options: &Options,
    stream: bool,
) -> serde_json::Result<Vec<u8>> {
    let (mut system, messages) = conversation(request.messages);
    let mut tools: Vec<WireTool<'_>> = request
        .tools
        .iter()
        .map(|spec: &ToolSpec| WireTool {
            name: spec.name.as_str(),
            description: &spec.description,
            input_schema: &spec.parameters,
            cache_control: None,
        })
        .collect();
    if options.prompt_caching {
        // Tools come before the system prompt in Anthropic's cache order, so
        // these two breakpoints cache the tools alone and tools + system.
        if let Some(last) = tools.last_mut() {
            last.cache_control = Some(EPHEMERAL);
        }
        if let Some(Block::Text { cache_control, .. }) = system.last_mut() {
            *cache_control = Some(EPHEMERAL);
        }
    }
    let estimate = 256
        + request.messages.iter().map(|m| m.text_len() + 64).sum::<usize>()
        + request.tools.iter().map(|t| t.description.len() + 384).sum::<usize>();
    let mut body = Vec::with_capacity(estimate);
    serde_json::to_writer(
        &mut body,
        &MessagesRequest {
            model,
            max_tokens: request.max_output_tokens.unwrap_or(options.default_max_tokens),
            system,
            messages,
            tools,
            temperature: request.temperature,
            top_p: request.top_p,
            stop_sequences: request.stop,
            stream,
        },
    )?;
    Ok(body)
}

/// Splits rein's conversation into Anthropic's system blocks and its
/// alternating user/assistant messages.
fn conversation(messages: &[Message]) -> (Vec<Block<'_>>, Vec<WireMessage<'_>>) {
    let mut system = Vec::new();
    let mut out: Vec<WireMessage<'_>> = Vec::with_capacity(messages.len());
    for message in messages {
        match message {
            // Anthropic rejects empty text blocks.
            Message::System { text } if text.is_empty() => {}
            Message::System { text } => system.push(Block::Text { text, cache_control: None }),
            Message::User { text } => push(&mut out, Role::User, Content::Text(text)),
            Message::Assistant { text, tool_calls } => {
                let mut blocks = Vec::with_capacity(1 + tool_calls.len());
                if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
                    blocks.push(Block::Text { text, cache_control: None });
                }
                blocks.extend(tool_calls.iter().map(|call| Block::ToolUse {
                    id: &call.id.0,
                    name: &call.name,
                    input: tool_input(&call.arguments),
                }));
                // A turn with neither text nor calls says nothing, and an
                // empty message is rejected.
                if !blocks.is_empty() {
                    push(&mut out, Role::Assistant, Content::Blocks(blocks));
                }
            }
            Message::Tool { call_id, content, .. } => {
                let block = Block::ToolResult { tool_use_id: &call_id.0, content };
                match out.last_mut() {
                    // Results of one assistant turn travel together.
                    Some(last) if last.role == Role::User && last.content.only_tool_results() => {
                        if let Content::Blocks(blocks) = &mut last.content {
                            blocks.push(block);
                        }
                    }
                    _ => out.push(WireMessage { role: Role::User, content: Content::Blocks(vec![block]) }),
                }
            }
        }
    }
    (system, out)
}

/// Appends a turn, merging it into the previous one of the same role:
/// Anthropic wants roles to alternate, and a note after tool results (a
/// repeated-action warning, say) must follow them in the same user turn.
fn push<'a>(out: &mut Vec<WireMessage<'a>>, role: Role, content: Content<'a>) {
    match out.last_mut() {
        Some(last) if last.role == role => {
            let previous = std::mem::replace(&mut last.content, Content::Blocks(Vec::new()));
            let mut blocks = previous.into_blocks();
            blocks.extend(content.into_blocks());
            last.content = Content::Blocks(blocks);
        }
        _ => out.push(WireMessage { role, content }),
    }
}

/// The `input` of a `tool_use` block: the arguments as a JSON object. Text
/// that is not an object was already reported to the model by the control
/// layer; `{}` keeps the history acceptable to the API.
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::Object(Map::new()),
    }
}

// --------------------------------------------------------------- response

#[derive(Deserialize)]
struct MessagesResponse {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    content: Option<Vec<ResponseBlock>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ResponseBlock {
    Text {
        #[serde(default)]
        text: String,
    },
    ToolUse {
        #[serde(default)]
        id: String,
        name: String,
        #[serde(default)]
        input: Value,
    },
    /// Thinking, server tools, and blocks added after this was written.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

/// What a 2xx body turned out to hold.
pub(super) enum Decoded {
    Response(ModelResponse),
    /// `{"type":"error", ...}` inside a successful HTTP response.
    Error(Value),
    /// Valid JSON that is not a message.
    NotAMessage,
}

/// Reads a 2xx body.
pub(super) fn decode(body: &[u8]) -> serde_json::Result<Decoded> {
    let response: MessagesResponse = serde_json::from_slice(body)?;
    if response.kind.as_deref() == Some("error") || response.error.as_ref().is_some_and(|e| !e.is_null()) {
        return Ok(Decoded::Error(response.error.unwrap_or(Value::Null)));
    }
    let Some(content) = response.content else {
        return Ok(Decoded::NotAMessage);
    };
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for block in content {
        match block {
            ResponseBlock::Text { text: part } => text.get_or_insert_with(String::new).push_str(&part),
            ResponseBlock::ToolUse { id, name, input } => {
                let index = tool_calls.len();
                tool_calls.push(ToolCall {
                    // Results are matched to calls by id; never leave one empty.
                    id: ToolCallId(if id.is_empty() { format!("toolu_{index}") } else { id }),
                    name,
                    arguments: if input.is_null() { "{}".to_owned() } else { input.to_string() },
                });
            }
            ResponseBlock::Other => {}
        }
    }
    let text = text.filter(|t| !t.is_empty());
    let finish_reason = match response.stop_reason.as_deref() {
        Some("end_turn" | "stop_sequence") | None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        Some("end_turn" | "stop_sequence") | None => FinishReason::Stop,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("refusal") => FinishReason::ContentFilter,
        Some(_) => FinishReason::Other,
    };
    let usage = response.usage.map_or_else(Usage::default, |u| {
        let read = u.cache_read_input_tokens.unwrap_or(0);
        Usage {
            // Anthropic's `input_tokens` counts only the tokens after the
            // last cache breakpoint; rein's is the whole prompt.
            input_tokens: u.input_tokens.unwrap_or(0) + u.cache_creation_input_tokens.unwrap_or(0) + read,
            output_tokens: u.output_tokens.unwrap_or(0),
            cached_input_tokens: read,
        }
    });
    Ok(Decoded::Response(ModelResponse {
        text,
        tool_calls,
        usage,
        finish_reason,
        served_by: response.model.unwrap_or_default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rein_types::{RiskTier, ToolName};
    use serde_json::json;

    fn options(prompt_caching: bool) -> Options {
        Options { default_max_tokens: 4096, prompt_caching }
    }

    fn encoded(messages: &[Message], tools: &[ToolSpec], caching: bool) -> Value {
        let request = ModelRequest {
            model: "m",
            messages,
            tools,
            max_output_tokens: None,
            temperature: None,
            top_p: None,
            seed: Some(1),
            stop: &[],
            output_schema: None,
        };
        serde_json::from_slice(&encode("m", &request, &options(caching), false).unwrap()).unwrap()
    }

    fn call(id: &str, arguments: &str) -> ToolCall {
        ToolCall { id: ToolCallId(id.into()), name: "t".into(), arguments: arguments.into() }
    }

    fn result(id: &str) -> Message {
        Message::Tool { call_id: ToolCallId(id.into()), name: "t".into(), content: format!("r-{id}") }
    }

    #[test]
    fn turns_are_merged_and_results_grouped() {
        let messages = vec![
            Message::User { text: "a".into() },
            Message::User { text: "b".into() },
            Message::Assistant { text: None, tool_calls: vec![call("1", "{oops"), call("2", "[1]")] },
            result("1"),
            result("2"),
            Message::User { text: "note".into() },
            Message::Assistant { text: None, tool_calls: vec![] },
            Message::Assistant { text: Some("done".into()), tool_calls: vec![] },
        ];
        let value = encoded(&messages, &[], true);
        assert_eq!(
            value["messages"],
            json!([
                {"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},
                {"role":"assistant","content":[
                    {"type":"tool_use","id":"1","name":"t","input":{}},
                    {"type":"tool_use","id":"2","name":"t","input":{}},
                ]},
                {"role":"user","content":[
                    {"type":"tool_result","tool_use_id":"1","content":"r-1"},
                    {"type":"tool_result","tool_use_id":"2","content":"r-2"},
                    {"type":"text","text":"note"},
                ]},
                {"role":"assistant","content":[{"type":"text","text":"done"}]},
            ])
        );
        assert!(value.get("system").is_none() && value.get("tools").is_none() && value.get("seed").is_none());
        assert_eq!(value["max_tokens"], 4096);
    }

    #[test]
    fn caching_can_be_turned_off() {
        let messages = vec![Message::System { text: "sys".into() }, Message::User { text: "hi".into() }];
        let tools = vec![ToolSpec::new(ToolName::new("t").unwrap(), "", json!({"type":"object"}), RiskTier::Read)];
        let value = encoded(&messages, &tools, false);
        assert_eq!(value["system"], json!([{"type":"text","text":"sys"}]));
        assert_eq!(value["tools"], json!([{"name":"t","input_schema":{"type":"object"}}]));
        let value = encoded(&messages, &tools, true);
        assert_eq!(value["system"][0]["cache_control"], json!({"type":"ephemeral"}));
        assert_eq!(value["tools"][0]["cache_control"], json!({"type":"ephemeral"}));
    }

    fn decoded(body: Value) -> ModelResponse {
        match decode(body.to_string().as_bytes()).unwrap() {
            Decoded::Response(response) => response,
            _ => panic!("not a response"),
        }
    }

    #[test]
    fn unknown_blocks_are_skipped_and_stop_reasons_mapped() {
        let response = decoded(json!({
            "type":"message","model":"claude","stop_reason":"max_tokens",
            "content":[{"type":"thinking","thinking":"hm","signature":"s"},{"type":"text","text":"a"},{"type":"text","text":"b"}],
        }));
        assert_eq!(response.text.as_deref(), Some("ab"));
        assert_eq!(response.finish_reason, FinishReason::Length);
        assert_eq!(response.usage, Usage::default());
        for (reason, expected) in [
            ("refusal", FinishReason::ContentFilter),
            ("stop_sequence", FinishReason::Stop),
            ("pause_turn", FinishReason::Other),
        ] {
            let response = decoded(json!({"content":[], "stop_reason": reason}));
            assert_eq!(response.finish_reason, expected, "{reason}");
            assert_eq!(response.text, None);
        }
        assert!(matches!(
            decode(br#"{"type":"error","error":{"type":"overloaded_error"}}"#).unwrap(),
            Decoded::Error(_)
        ));
        assert!(matches!(decode(br#"{"id":"x"}"#).unwrap(), Decoded::NotAMessage));
        assert!(decode(b"<html>").is_err());
    }
}
