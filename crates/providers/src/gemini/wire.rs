//! The Gemini `generateContent` wire format, private to the adapter: rein's
//! conversation to `contents` / `systemInstruction` / `tools` /
//! `generationConfig`, and a response's first candidate back to a
//! [`ModelResponse`]. Gemini has no tool-call ids, so calls are numbered
//! (`call_0`, `call_1`, …) and results are matched to calls by function name.

use super::schema;
use rein_types::{FinishReason, Message, ModelRequest, ModelResponse, ToolCall, ToolCallId, ToolSpec, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

// ---------------------------------------------------------------- request

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerateRequest<'a> {
    contents: Vec<Content<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system_instruction: Option<SystemInstruction<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<Tools<'a>>,
    #[serde(skip_serializing_if = "GenerationConfig::is_empty")]
    generation_config: GenerationConfig<'a>,
}

#[derive(Serialize)]
struct SystemInstruction<'a> {
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
struct Content<'a> {
    role: &'static str,
    parts: Vec<Part<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
enum Part<'a> {
    FunctionCall {
        name: &'a str,
        args: Value,
    },
    FunctionResponse {
        name: &'a str,
        response: Value,
    },
    // Untagged variants must come last.
    #[serde(untagged)]
    Text {
        text: &'a str,
    },
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Tools<'a> {
    function_declarations: Vec<FunctionDeclaration<'a>>,
}

#[derive(Serialize)]
struct FunctionDeclaration<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<Value>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GenerationConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    max_output_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop_sequences: &'a [String],
    /// Gemini's structured-output mode, for the agent's output schema. Gemini
    /// refuses it together with function calling, so it is sent only on
    /// calls that offer no tools (a tool-less agent, the synthesis call);
    /// the core validates the answer either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    response_mime_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response_schema: Option<Value>,
}

impl GenerationConfig<'_> {
    fn is_empty(&self) -> bool {
        self.max_output_tokens.is_none()
            && self.temperature.is_none()
            && self.top_p.is_none()
            && self.seed.is_none()
            && self.stop_sequences.is_empty()
            && self.response_schema.is_none()
    }
}

/// Serialises the request body.
pub(super) fn encode(request: &ModelRequest<'_>) -> serde_json::Result<Vec<u8>> {
    let structured = request.output_schema.is_some() && request.tools.is_empty();
    let mut system = Vec::new();
    let mut contents: Vec<Content<'_>> = Vec::with_capacity(request.messages.len());
    for message in request.messages {
        match message {
            Message::System { text } => system.push(Part::Text { text }),
            Message::User { text } => contents.push(Content { role: "user", parts: vec![Part::Text { text }] }),
            Message::Assistant { text, tool_calls } => {
                let mut parts = Vec::with_capacity(1 + tool_calls.len());
                if let Some(text) = text.as_deref().filter(|t| !t.is_empty()) {
                    parts.push(Part::Text { text });
                }
                parts.extend(
                    tool_calls
                        .iter()
                        .map(|call| Part::FunctionCall { name: &call.name, args: arguments(&call.arguments) }),
                );
                // Gemini refuses a turn without parts; an empty assistant
                // turn says nothing the model needs.
                if !parts.is_empty() {
                    contents.push(Content { role: "model", parts });
                }
            }
            Message::Tool { name, content, .. } => {
                let part = Part::FunctionResponse { name, response: tool_response(content) };
                // The results of one turn's calls travel together in one
                // user turn, in the order of the calls.
                match contents.last_mut() {
                    Some(last)
                        if last.role == "user" && matches!(last.parts.last(), Some(Part::FunctionResponse { .. })) =>
                    {
                        last.parts.push(part);
                    }
                    _ => contents.push(Content { role: "user", parts: vec![part] }),
                }
            }
        }
    }
    let body = GenerateRequest {
        contents,
        system_instruction: (!system.is_empty()).then_some(SystemInstruction { parts: system }),
        tools: if request.tools.is_empty() {
            Vec::new()
        } else {
            vec![Tools { function_declarations: request.tools.iter().map(declaration).collect() }]
        },
        generation_config: GenerationConfig {
            max_output_tokens: request.max_output_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            seed: request.seed,
            stop_sequences: request.stop,
            response_mime_type: structured.then_some("application/json"),
            response_schema: request.output_schema.filter(|_| structured).map(schema::normalise),
        },
    };
    serde_json::to_vec(&body)
}

fn declaration(spec: &ToolSpec) -> FunctionDeclaration<'_> {
    let parameters = schema::normalise(&spec.parameters);
    FunctionDeclaration {
        name: spec.name.as_str(),
        description: &spec.description,
        parameters: (!schema::is_empty_object(&parameters)).then_some(parameters),
    }
}

/// A call's argument text as the JSON object Gemini wants; `{}` when the
/// text is not a JSON object (the model's own mistake was already reported
/// to it when the call was validated).
fn arguments(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::Object(Map::new()),
    }
}

/// A tool observation as the JSON object `functionResponse.response` must
/// be: an object as it is, another JSON value as `{"result": value}`, and
/// text that is not JSON as `{"content": text}`.
fn tool_response(content: &str) -> Value {
    match serde_json::from_str::<Value>(content) {
        Ok(value @ Value::Object(_)) => value,
        Ok(value) => json!({ "result": value }),
        Err(_) => json!({ "content": content }),
    }
}

// --------------------------------------------------------------- response

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateResponse {
    #[serde(default)]
    candidates: Vec<Candidate>,
    #[serde(default)]
    prompt_feedback: Option<PromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<UsageMetadata>,
    #[serde(default)]
    model_version: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Candidate {
    #[serde(default)]
    content: Option<CandidateContent>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct CandidateContent {
    #[serde(default)]
    parts: Vec<ResponsePart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResponsePart {
    #[serde(default)]
    text: Option<String>,
    /// A thought summary, not part of the answer.
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<FunctionCall>,
}

#[derive(Deserialize)]
struct FunctionCall {
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
    #[serde(default)]
    safety_ratings: Vec<SafetyRating>,
}

#[derive(Deserialize)]
struct SafetyRating {
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    probability: Option<String>,
    #[serde(default)]
    blocked: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UsageMetadata {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
}

/// What a 2xx body turned out to hold.
#[derive(Debug, PartialEq)]
pub(super) enum Decoded {
    Response(ModelResponse),
    /// Gemini refused the prompt itself: no candidate was generated.
    Blocked {
        reason: String,
        /// Categories rated `HIGH` (or marked blocked).
        categories: Vec<String>,
    },
    /// Valid JSON with neither a candidate nor a block reason.
    NoCandidates,
}

/// Reads a 2xx body.
pub(super) fn decode(body: &[u8]) -> serde_json::Result<Decoded> {
    let response: GenerateResponse = serde_json::from_slice(body)?;
    let Some(candidate) = response.candidates.into_iter().next() else {
        return Ok(match response.prompt_feedback {
            Some(PromptFeedback { block_reason: Some(reason), safety_ratings }) => Decoded::Blocked {
                reason,
                categories: safety_ratings
                    .into_iter()
                    .filter(|r| r.blocked || r.probability.as_deref() == Some("HIGH"))
                    .filter_map(|r| r.category)
                    .collect(),
            },
            _ => Decoded::NoCandidates,
        });
    };
    let mut text: Option<String> = None;
    let mut tool_calls = Vec::new();
    for part in candidate.content.map(|c| c.parts).unwrap_or_default() {
        if let Some(call) = part.function_call {
            let arguments = match call.args {
                Some(args @ Value::Object(_)) => args.to_string(),
                _ => "{}".to_owned(),
            };
            tool_calls.push(ToolCall {
                id: ToolCallId(format!("call_{}", tool_calls.len())),
                name: call.name,
                arguments,
            });
        } else if let Some(part_text) = part.text.filter(|_| !part.thought) {
            text.get_or_insert_with(String::new).push_str(&part_text);
        }
    }
    let text = text.filter(|t| !t.is_empty());
    let finish_reason = match candidate.finish_reason.as_deref() {
        None | Some("STOP") if !tool_calls.is_empty() => FinishReason::ToolCalls,
        None | Some("STOP") => FinishReason::Stop,
        Some("MAX_TOKENS") => FinishReason::Length,
        Some("SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY") => {
            FinishReason::ContentFilter
        }
        Some(_) => FinishReason::Other,
    };
    let usage = response.usage_metadata.map_or_else(Usage::default, |u| Usage {
        input_tokens: u.prompt_token_count,
        output_tokens: u.candidates_token_count + u.thoughts_token_count,
        cached_input_tokens: u.cached_content_token_count,
    });
    Ok(Decoded::Response(ModelResponse {
        text,
        tool_calls,
        usage,
        finish_reason,
        served_by: response.model_version.unwrap_or_default(),
    }))
}

// ----------------------------------------------------------------- errors

/// What a Gemini error body (`{"error":{"code","message","status",
/// "details"}}`) says.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(super) struct ErrorBody {
    pub message: Option<String>,
    /// The gRPC status name: `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, ….
    pub status: Option<String>,
    /// `reason` of an `ErrorInfo` detail, such as `API_KEY_INVALID`.
    pub reason: Option<String>,
    /// `retryDelay` of a `RetryInfo` detail.
    pub retry_delay: Option<std::time::Duration>,
}

impl ErrorBody {
    /// Reads an error body; a body that is not Gemini's shape gives its
    /// start as the message.
    pub fn parse(body: &[u8]) -> Self {
        let Ok(root) = serde_json::from_slice::<Value>(body) else {
            return Self { message: crate::openai::snippet(body), ..Self::default() };
        };
        let Some(error) = root.get("error").and_then(Value::as_object) else {
            return Self { message: crate::openai::snippet(body), ..Self::default() };
        };
        let text = |key: &str| error.get(key).and_then(Value::as_str).filter(|s| !s.is_empty()).map(str::to_owned);
        let details = error.get("details").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        let detail = |suffix: &str, field: &str| {
            details
                .iter()
                .filter(|d| d.get("@type").and_then(Value::as_str).is_some_and(|t| t.ends_with(suffix)))
                .find_map(|d| d.get(field).and_then(Value::as_str))
                .map(str::to_owned)
        };
        Self {
            message: text("message"),
            status: text("status"),
            reason: detail("google.rpc.ErrorInfo", "reason"),
            retry_delay: detail("google.rpc.RetryInfo", "retryDelay").and_then(|d| parse_delay(&d)),
        }
    }

    fn lower_message(&self) -> String {
        self.message.as_deref().unwrap_or_default().to_lowercase()
    }

    /// The key is missing or invalid (Gemini says so with a 400).
    pub fn says_bad_key(&self) -> bool {
        self.reason.as_deref().is_some_and(|r| r.starts_with("API_KEY")) || self.lower_message().contains("api key")
    }

    /// The prompt does not fit the model's context window.
    pub fn says_context_too_long(&self) -> bool {
        let text = self.lower_message();
        (text.contains("token count") && text.contains("exceed"))
            || text.contains("exceeds the maximum number of tokens")
            || text.contains("context window")
            || text.contains("context length")
    }

    /// `message [STATUS]`, or a placeholder when Gemini said nothing.
    pub fn describe(&self) -> String {
        match (&self.message, &self.status) {
            (Some(message), Some(status)) => format!("{message} [{status}]"),
            (Some(message), None) => message.clone(),
            (None, Some(status)) => format!("[{status}]"),
            (None, None) => "(no error message in the response)".to_owned(),
        }
    }
}

/// A protobuf `Duration` in JSON: `"37s"`, `"0.5s"`.
fn parse_delay(text: &str) -> Option<std::time::Duration> {
    let seconds: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    std::time::Duration::try_from_secs_f64(seconds).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rein_types::{RiskTier, ToolName};
    use std::time::Duration;

    fn request<'a>(messages: &'a [Message], tools: &'a [ToolSpec], stop: &'a [String]) -> ModelRequest<'a> {
        ModelRequest {
            model: "gemini-2.5-flash",
            messages,
            tools,
            max_output_tokens: Some(100),
            temperature: Some(0.5),
            top_p: None,
            seed: Some(7),
            stop,
            output_schema: None,
        }
    }

    fn call(id: &str, name: &str, arguments: &str) -> ToolCall {
        ToolCall { id: ToolCallId(id.into()), name: name.into(), arguments: arguments.into() }
    }

    #[test]
    fn every_message_kind_is_mapped() {
        let messages = vec![
            Message::System { text: "sys".into() },
            Message::User { text: "hi".into() },
            Message::Assistant {
                text: Some("let me look".into()),
                tool_calls: vec![call("call_0", "lookup", r#"{"q":1}"#), call("call_1", "other", "not json")],
            },
            Message::Tool { call_id: ToolCallId("call_0".into()), name: "lookup".into(), content: r#"{"a":1}"#.into() },
            Message::Tool { call_id: ToolCallId("call_1".into()), name: "other".into(), content: "plain text".into() },
            Message::Assistant { text: None, tool_calls: vec![call("call_0", "lookup", "[1]")] },
            Message::Tool { call_id: ToolCallId("call_0".into()), name: "lookup".into(), content: "[1,2]".into() },
            Message::Assistant { text: Some("done".into()), tool_calls: vec![] },
            Message::Assistant { text: None, tool_calls: vec![] },
        ];
        let tools = vec![
            ToolSpec::new(
                ToolName::new("lookup").unwrap(),
                "find things",
                json!({"type":"object","properties":{"q":{"type":"integer"}},"additionalProperties":false}),
                RiskTier::Read,
            ),
            ToolSpec::new(ToolName::new("ping").unwrap(), "", json!({"type":"object"}), RiskTier::Read),
        ];
        let stop = vec!["END".to_owned()];
        let body: Value = serde_json::from_slice(&encode(&request(&messages, &tools, &stop)).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "systemInstruction": {"parts": [{"text": "sys"}]},
                "contents": [
                    {"role": "user", "parts": [{"text": "hi"}]},
                    {"role": "model", "parts": [
                        {"text": "let me look"},
                        {"functionCall": {"name": "lookup", "args": {"q": 1}}},
                        {"functionCall": {"name": "other", "args": {}}}
                    ]},
                    {"role": "user", "parts": [
                        {"functionResponse": {"name": "lookup", "response": {"a": 1}}},
                        {"functionResponse": {"name": "other", "response": {"content": "plain text"}}}
                    ]},
                    {"role": "model", "parts": [{"functionCall": {"name": "lookup", "args": {}}}]},
                    {"role": "user", "parts": [{"functionResponse": {"name": "lookup", "response": {"result": [1, 2]}}}]},
                    {"role": "model", "parts": [{"text": "done"}]}
                ],
                "tools": [{"functionDeclarations": [
                    {"name": "lookup", "description": "find things",
                     "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}},
                    {"name": "ping"}
                ]}],
                "generationConfig": {"maxOutputTokens": 100, "temperature": 0.5, "seed": 7, "stopSequences": ["END"]}
            })
        );
    }

    #[test]
    fn a_bare_request_has_no_optional_sections() {
        let messages = vec![Message::User { text: "hi".into() }];
        let mut req = request(&messages, &[], &[]);
        req.max_output_tokens = None;
        req.temperature = None;
        req.seed = None;
        let body: Value = serde_json::from_slice(&encode(&req).unwrap()).unwrap();
        assert_eq!(body, json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}));
    }

    #[test]
    fn text_parts_are_joined_and_thoughts_skipped() {
        let body = json!({
            "candidates": [{"content": {"role": "model", "parts": [
                {"text": "thinking…", "thought": true}, {"text": "Hello, "}, {"text": "world."}
            ]}, "finishReason": "MAX_TOKENS"}],
            "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 4, "thoughtsTokenCount": 10},
            "modelVersion": "gemini-2.5-flash-001"
        });
        let Decoded::Response(response) = decode(body.to_string().as_bytes()).unwrap() else { panic!() };
        assert_eq!(response.text.as_deref(), Some("Hello, world."));
        assert_eq!(response.finish_reason, FinishReason::Length);
        assert_eq!(response.usage, Usage { input_tokens: 3, output_tokens: 14, cached_input_tokens: 0 });
        assert_eq!(response.served_by, "gemini-2.5-flash-001");
    }

    #[test]
    fn a_blocked_prompt_names_reason_and_high_categories() {
        let body = json!({"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": [
            {"category": "HARM_CATEGORY_HARASSMENT", "probability": "NEGLIGIBLE"},
            {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH"}
        ]}});
        assert_eq!(
            decode(body.to_string().as_bytes()).unwrap(),
            Decoded::Blocked { reason: "SAFETY".into(), categories: vec!["HARM_CATEGORY_DANGEROUS_CONTENT".into()] }
        );
        assert_eq!(decode(b"{}").unwrap(), Decoded::NoCandidates);
    }

    #[test]
    fn error_bodies_are_read_with_their_details() {
        let body = json!({"error": {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "1.5s"}
        ]}});
        let info = ErrorBody::parse(body.to_string().as_bytes());
        assert_eq!(info.retry_delay, Some(Duration::from_millis(1500)));
        assert_eq!(info.describe(), "Quota exceeded [RESOURCE_EXHAUSTED]");
        let body = json!({"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.",
            "status": "INVALID_ARGUMENT",
            "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}]}});
        let info = ErrorBody::parse(body.to_string().as_bytes());
        assert!(info.says_bad_key() && !info.says_context_too_long());
        let info = ErrorBody::parse(
            br#"{"error":{"code":400,"message":"The input token count (1200000) exceeds the maximum number of tokens allowed (1048576).","status":"INVALID_ARGUMENT"}}"#,
        );
        assert!(info.says_context_too_long() && !info.says_bad_key());
        let info = ErrorBody::parse(b"<html>Bad Gateway</html>");
        assert_eq!(info.message.as_deref(), Some("<html>Bad Gateway</html>"));
    }

    #[test]
    fn the_output_schema_uses_gemini_structured_output_only_without_tools() {
        let schema = json!({"type": "object", "properties": {"p": {"type": "string"}}, "additionalProperties": false});
        let messages = [Message::User { text: "hi".into() }];
        let mut without_tools = request(&messages, &[], &[]);
        without_tools.output_schema = Some(&schema);
        let body: Value = serde_json::from_slice(&encode(&without_tools).unwrap()).unwrap();
        assert_eq!(body["generationConfig"]["responseMimeType"], "application/json");
        assert_eq!(body["generationConfig"]["responseSchema"]["properties"]["p"]["type"], "string");
        assert!(body["generationConfig"]["responseSchema"].get("additionalProperties").is_none(), "normalised");

        let tool = ToolSpec::new(
            rein_types::ToolName::new("t").unwrap(),
            "a tool",
            json!({"type": "object", "properties": {}}),
            rein_types::RiskTier::Read,
        );
        let tools = [tool];
        let mut with_tools = request(&messages, &tools, &[]);
        with_tools.output_schema = Some(&schema);
        let body: Value = serde_json::from_slice(&encode(&with_tools).unwrap()).unwrap();
        assert!(body["generationConfig"].get("responseSchema").is_none(), "Gemini refuses it with tools");
    }
}
