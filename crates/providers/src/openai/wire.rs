//! The OpenAI Chat Completions wire format, private to the adapter. Requests
//! are serialised from borrowed views of rein's own types, so a call never
//! copies the conversation; responses are read leniently, because the servers
//! that claim compatibility (Ollama, vLLM, llama.cpp, OpenRouter) differ in the
//! details.

use rein_types::{FinishReason, Message, ModelRequest, ModelResponse, ToolCall, ToolCallId, ToolSpec, Usage};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use std::fmt;

// ---------------------------------------------------------------- request

#[derive(Serialize)]
struct ChatRequest<'a> {
    model: &'a str,
    messages: Messages<'a>,
    #[serde(skip_serializing_if = "Tools::is_empty")]
    tools: Tools<'a>,
    /// `max_tokens` rather than OpenAI's newer `max_completion_tokens`: every
    /// compatible server accepts it, and OpenAI still does for chat models.
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seed: Option<u64>,
    // Some servers reject `"stop": []`, so an empty list is left out.
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    stop: &'a [String],
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
    /// Asks for a last chunk with the usage; sent only when streaming.
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
    /// The agent's output schema, as OpenAI's structured-output mode. Not
    /// `strict`: strict mode demands every property be required and
    /// `additionalProperties: false`, which a user's schema need not say;
    /// the core validates the answer against the schema either way.
    #[serde(skip_serializing_if = "Option::is_none")]
    response_format: Option<ResponseFormat<'a>>,
}

#[derive(Serialize)]
struct ResponseFormat<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    json_schema: JsonSchemaFormat<'a>,
}

#[derive(Serialize)]
struct JsonSchemaFormat<'a> {
    name: &'static str,
    schema: &'a serde_json::Value,
    strict: bool,
}

#[derive(Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// Serialises the request body for `model`; `stream` asks for server-sent
/// events with the usage in a last chunk.
pub(super) fn encode(model: &str, request: &ModelRequest<'_>, stream: bool) -> serde_json::Result<Vec<u8>> {
    // A guess at the final size, so the buffer rarely has to grow and copy.
    let estimate = 256
        + request.messages.iter().map(|m| m.text_len() + 64).sum::<usize>()
        + request.tools.iter().map(|t| t.description.len() + 384).sum::<usize>();
    let mut body = Vec::with_capacity(estimate);
    serde_json::to_writer(
        &mut body,
        &ChatRequest {
            model,
            messages: Messages(request.messages),
            tools: Tools(request.tools),
            max_tokens: request.max_output_tokens,
            temperature: request.temperature,
            top_p: request.top_p,
            seed: request.seed,
            stop: request.stop,
            stream,
            stream_options: stream.then_some(StreamOptions { include_usage: true }),
            response_format: request.output_schema.map(|schema| ResponseFormat {
                kind: "json_schema",
                json_schema: JsonSchemaFormat { name: "final_answer", schema, strict: false },
            }),
        },
    )?;
    Ok(body)
}

struct Messages<'a>(&'a [Message]);

impl Serialize for Messages<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(WireMessage::from))
    }
}

#[derive(Serialize)]
#[serde(tag = "role", rename_all = "lowercase")]
enum WireMessage<'a> {
    System {
        content: &'a str,
    },
    User {
        content: &'a str,
    },
    Assistant {
        // `null` (not absent) when the turn is only tool calls: that is what
        // OpenAI itself sends back, and what strict servers expect.
        content: Option<&'a str>,
        #[serde(skip_serializing_if = "ToolCalls::is_empty")]
        tool_calls: ToolCalls<'a>,
    },
    Tool {
        tool_call_id: &'a str,
        content: &'a str,
    },
}

impl<'a> From<&'a Message> for WireMessage<'a> {
    fn from(message: &'a Message) -> Self {
        match message {
            Message::System { text } => WireMessage::System { content: text },
            Message::User { text } => WireMessage::User { content: text },
            Message::Assistant { text, tool_calls } => WireMessage::Assistant {
                // An assistant turn with neither text nor calls still needs
                // content, or servers reject the message.
                content: match text.as_deref() {
                    None if tool_calls.is_empty() => Some(""),
                    other => other,
                },
                tool_calls: ToolCalls(tool_calls),
            },
            Message::Tool { call_id, content, .. } => WireMessage::Tool { tool_call_id: &call_id.0, content },
        }
    }
}

struct ToolCalls<'a>(&'a [ToolCall]);

impl ToolCalls<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for ToolCalls<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|call| WireToolCall {
            id: &call.id.0,
            kind: "function",
            function: WireFunctionCall { name: &call.name, arguments: &call.arguments },
        }))
    }
}

#[derive(Serialize)]
struct WireToolCall<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunctionCall<'a>,
}

#[derive(Serialize)]
struct WireFunctionCall<'a> {
    name: &'a str,
    arguments: &'a str,
}

struct Tools<'a>(&'a [ToolSpec]);

impl Tools<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(|spec| WireTool {
            kind: "function",
            function: WireFunction {
                name: spec.name.as_str(),
                description: &spec.description,
                parameters: &spec.parameters,
            },
        }))
    }
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: WireFunction<'a>,
}

#[derive(Serialize)]
struct WireFunction<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    description: &'a str,
    parameters: &'a Value,
}

// --------------------------------------------------------------- response

#[derive(Deserialize)]
struct ChatResponse {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<Choice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// OpenRouter reports some upstream failures as a 200 with an error body.
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ResponseMessage>,
    #[serde(default)]
    finish_reason: Option<WireFinish>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireFinish {
    Stop,
    ToolCalls,
    /// The legacy functions API; some servers still say it.
    FunctionCall,
    Length,
    ContentFilter,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct ResponseMessage {
    #[serde(default, deserialize_with = "content_text")]
    content: Option<String>,
    /// OpenAI puts a refusal here instead of in `content`.
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ResponseToolCall>>,
}

#[derive(Deserialize)]
struct ResponseToolCall {
    #[serde(default)]
    id: Option<String>,
    function: ResponseFunction,
}

#[derive(Deserialize)]
struct ResponseFunction {
    name: String,
    #[serde(default = "empty_arguments", deserialize_with = "arguments_text")]
    arguments: String,
}

fn empty_arguments() -> String {
    "{}".to_owned()
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

/// What a 2xx body turned out to hold.
pub(super) enum Decoded {
    Response(ModelResponse),
    /// An error object inside a successful HTTP response.
    Error(ErrorInfo),
    /// Valid JSON with no choice to read.
    NoChoices,
}

/// Reads a 2xx body.
pub(super) fn decode(body: &[u8]) -> serde_json::Result<Decoded> {
    let response: ChatResponse = serde_json::from_slice(body)?;
    if let Some(error) = response.error.as_ref().filter(|e| !e.is_null()) {
        return Ok(Decoded::Error(ErrorInfo::from_error_value(error)));
    }
    let Some(choice) = response.choices.and_then(|choices| choices.into_iter().next()) else {
        return Ok(Decoded::NoChoices);
    };
    let (text, calls) = match choice.message {
        Some(message) => {
            // Servers send `""` next to tool calls; rein's model says "no text".
            let text = message.content.filter(|t| !t.is_empty()).or(message.refusal.filter(|t| !t.is_empty()));
            (text, message.tool_calls.unwrap_or_default())
        }
        None => (None, Vec::new()),
    };
    let tool_calls: Vec<ToolCall> = calls
        .into_iter()
        .enumerate()
        .map(|(index, call)| ToolCall {
            // llama.cpp and older Ollama builds may omit ids; results are
            // matched to calls by id, so every call needs a distinct one.
            id: ToolCallId(match call.id {
                Some(id) if !id.is_empty() => id,
                _ => format!("call_{index}"),
            }),
            name: call.function.name,
            arguments: call.function.arguments,
        })
        .collect();
    let finish_reason = match choice.finish_reason {
        // Some servers say `stop` even when the turn is tool calls; what
        // matters to the loop is that calls are waiting.
        Some(WireFinish::Stop) | None if !tool_calls.is_empty() => FinishReason::ToolCalls,
        Some(WireFinish::Stop) | None => FinishReason::Stop,
        Some(WireFinish::ToolCalls | WireFinish::FunctionCall) => FinishReason::ToolCalls,
        Some(WireFinish::Length) => FinishReason::Length,
        Some(WireFinish::ContentFilter) => FinishReason::ContentFilter,
        Some(WireFinish::Other) => FinishReason::Other,
    };
    let usage = response.usage.map_or_else(Usage::default, |u| Usage {
        input_tokens: u.prompt_tokens.unwrap_or(0),
        output_tokens: u.completion_tokens.unwrap_or(0),
        cached_input_tokens: u.prompt_tokens_details.and_then(|d| d.cached_tokens).unwrap_or(0),
    });
    Ok(Decoded::Response(ModelResponse {
        text,
        tool_calls,
        usage,
        finish_reason,
        served_by: response.model.unwrap_or_default(),
    }))
}

/// `content` is normally a string or null; a few servers send an array of
/// `{type:"text", text}` parts, whose texts are joined.
fn content_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    struct ContentVisitor;

    impl<'de> Visitor<'de> for ContentVisitor {
        type Value = Option<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string, null, or an array of text parts")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            #[derive(Deserialize)]
            struct Part {
                #[serde(default)]
                text: Option<String>,
            }
            let mut joined: Option<String> = None;
            while let Some(part) = seq.next_element::<Part>()? {
                if let Some(text) = part.text {
                    joined.get_or_insert_with(String::new).push_str(&text);
                }
            }
            Ok(joined)
        }
    }

    deserializer.deserialize_any(ContentVisitor)
}

/// `arguments` should be a JSON string; some servers send the object itself,
/// which is turned back into text so the control layer sees one format.
fn arguments_text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    struct ArgumentsVisitor;

    impl<'de> Visitor<'de> for ArgumentsVisitor {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON string or object of arguments")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(normalise_arguments(v.to_owned()))
        }

        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(normalise_arguments(v))
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(empty_arguments())
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(empty_arguments())
        }

        fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
            deserializer.deserialize_any(self)
        }

        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
            Ok(value.to_string())
        }
    }

    deserializer.deserialize_any(ArgumentsVisitor)
}

/// OpenAI sends `""` for a call to a tool without parameters. That is the
/// wire's way of saying "no arguments", not a model mistake, so it becomes
/// `{}`; anything else is kept exactly as the model wrote it.
fn normalise_arguments(text: String) -> String {
    if text.trim().is_empty() { empty_arguments() } else { text }
}

// ----------------------------------------------------------------- errors

/// What an error body says, from the several shapes servers use:
/// OpenAI `{"error":{"message","type","code"}}`, Ollama `{"error":"..."}`,
/// vLLM `{"object":"error","message","type","code":400}`, FastAPI
/// `{"detail":"..."}`, or not JSON at all (a proxy's HTML page).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ErrorInfo {
    pub message: Option<String>,
    pub code: Option<String>,
    pub kind: Option<String>,
    /// A numeric `code` that looks like an HTTP status (OpenRouter, vLLM).
    pub status: Option<u16>,
}

impl ErrorInfo {
    pub fn from_body(body: &[u8]) -> Self {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(root)) => match root.get("error") {
                Some(error @ (Value::Object(_) | Value::String(_))) => Self::from_error_value(error),
                _ => Self::from_object(&root),
            },
            _ => Self { message: snippet(body), ..Self::default() },
        }
    }

    pub fn from_error_value(error: &Value) -> Self {
        match error {
            Value::Object(object) => Self::from_object(object),
            Value::String(message) => Self { message: Some(message.clone()), ..Self::default() },
            other => Self { message: Some(other.to_string()), ..Self::default() },
        }
    }

    fn from_object(object: &serde_json::Map<String, Value>) -> Self {
        let text = |key: &str| match object.get(key) {
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let status = object
            .get("code")
            .or_else(|| object.get("status"))
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| (400..600).contains(n));
        Self { message: text("message").or_else(|| text("detail")), code: text("code"), kind: text("type"), status }
    }

    /// The provider's message, lower-cased, with its code, for matching.
    fn haystack(&self) -> String {
        let mut text = String::new();
        for part in [&self.message, &self.code, &self.kind].into_iter().flatten() {
            text.push_str(&part.to_lowercase());
            text.push(' ');
        }
        text
    }

    /// The error says the model does not exist.
    pub fn says_unknown_model(&self) -> bool {
        if self.code.as_deref() == Some("model_not_found") {
            return true;
        }
        let text = self.haystack();
        text.contains("model")
            && [
                "does not exist",
                "not found",
                "not exist",
                "unknown model",
                "no such model",
                "invalid model",
                "not a valid model",
            ]
            .iter()
            .any(|needle| text.contains(needle))
    }

    /// The error says the prompt does not fit the context window.
    pub fn says_context_too_long(&self) -> bool {
        let text = self.haystack();
        [
            "context_length_exceeded",
            "exceed_context_size",
            "context length",
            "context_length",
            "maximum context",
            "context window",
            "context size",
        ]
        .iter()
        .any(|needle| text.contains(needle))
    }

    /// The key has no quota left: 429 like a rate limit, but waiting does not help.
    pub fn says_quota_exhausted(&self) -> bool {
        self.code.as_deref() == Some("insufficient_quota") || self.kind.as_deref() == Some("insufficient_quota")
    }

    /// `message [code]`, or a placeholder when the provider said nothing.
    pub fn describe(&self) -> String {
        match (&self.message, &self.code) {
            (Some(message), Some(code)) if !message.contains(code.as_str()) => format!("{message} [{code}]"),
            (Some(message), _) => message.clone(),
            (None, Some(code)) => format!("[{code}]"),
            (None, None) => "(no error message in the response)".to_owned(),
        }
    }
}

/// The start of a body that is not JSON, on one line, for an error message.
pub(crate) fn snippet(body: &[u8]) -> Option<String> {
    const MAX_CHARS: usize = 300;
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for word in text.split_whitespace() {
        if out.len() >= MAX_CHARS {
            out.push('…');
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rein_types::{RiskTier, ToolName};
    use serde_json::json;

    fn request<'a>(messages: &'a [Message], tools: &'a [ToolSpec], stop: &'a [String]) -> ModelRequest<'a> {
        ModelRequest {
            model: "m",
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

    #[test]
    fn an_output_schema_is_sent_as_the_json_schema_response_format() {
        let schema = json!({"type": "object", "properties": {"priority": {"type": "string"}}});
        let messages = [Message::User { text: "hi".into() }];
        let mut with_schema = request(&messages, &[], &[]);
        with_schema.output_schema = Some(&schema);
        let body: serde_json::Value = serde_json::from_slice(&encode("m", &with_schema, false).unwrap()).unwrap();
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["schema"], schema);
        let without: serde_json::Value =
            serde_json::from_slice(&encode("m", &request(&messages, &[], &[]), false).unwrap()).unwrap();
        assert!(without.get("response_format").is_none());
    }

    #[test]
    fn request_maps_every_message_kind() {
        let messages = vec![
            Message::System { text: "sys".into() },
            Message::User { text: "hi".into() },
            Message::Assistant {
                text: None,
                tool_calls: vec![ToolCall {
                    id: ToolCallId("c1".into()),
                    name: "lookup".into(),
                    arguments: "{\"q\":1}".into(),
                }],
            },
            Message::Tool { call_id: ToolCallId("c1".into()), name: "lookup".into(), content: "{}".into() },
            Message::Assistant { text: Some("done".into()), tool_calls: vec![] },
            Message::Assistant { text: None, tool_calls: vec![] },
        ];
        let tools = vec![ToolSpec::new(
            ToolName::new("lookup").unwrap(),
            "find things",
            json!({"type":"object"}),
            RiskTier::Read,
        )];
        let body = encode("m", &request(&messages, &tools, &[]), false).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            value,
            json!({
                "model": "m",
                "messages": [
                    {"role":"system","content":"sys"},
                    {"role":"user","content":"hi"},
                    {"role":"assistant","content":null,"tool_calls":[
                        {"id":"c1","type":"function","function":{"name":"lookup","arguments":"{\"q\":1}"}}
                    ]},
                    {"role":"tool","tool_call_id":"c1","content":"{}"},
                    {"role":"assistant","content":"done"},
                    {"role":"assistant","content":""},
                ],
                "tools": [{"type":"function","function":{"name":"lookup","description":"find things","parameters":{"type":"object"}}}],
                "max_tokens": 100,
                "temperature": 0.5,
                "seed": 7,
            })
        );
    }

    #[test]
    fn empty_tools_and_stop_are_left_out() {
        let messages = vec![Message::User { text: "hi".into() }];
        let stop = vec!["END".to_owned()];
        let body = encode("m", &request(&messages, &[], &stop), false).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert!(value.get("tools").is_none());
        assert_eq!(value["stop"], json!(["END"]));
        let body = encode("m", &request(&messages, &[], &[]), false).unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert!(value.get("stop").is_none());
    }

    fn decoded(body: Value) -> ModelResponse {
        match decode(body.to_string().as_bytes()).unwrap() {
            Decoded::Response(response) => response,
            _ => panic!("not a response"),
        }
    }

    #[test]
    fn lenient_shapes_are_read() {
        let response = decoded(json!({
            "choices": [{"message": {"content": [{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]
        }));
        assert_eq!(response.text.as_deref(), Some("ab"));
        assert_eq!(response.finish_reason, FinishReason::Stop);
        assert_eq!(response.usage, Usage::default());

        let response = decoded(json!({
            "model": "llama",
            "choices": [{"message": {"content": "", "tool_calls": [
                {"function": {"name": "a", "arguments": {"x": 1}}},
                {"id": "", "function": {"name": "b", "arguments": ""}},
            ]}, "finish_reason": "stop"}]
        }));
        assert_eq!(response.text, None);
        assert_eq!(response.finish_reason, FinishReason::ToolCalls);
        assert_eq!(response.tool_calls[0].id.0, "call_0");
        assert_eq!(response.tool_calls[0].arguments, "{\"x\":1}");
        assert_eq!(response.tool_calls[1].id.0, "call_1");
        assert_eq!(response.tool_calls[1].arguments, "{}");
        assert_eq!(response.served_by, "llama");

        let response = decoded(json!({
            "choices": [{"message": {"content": null, "refusal": "I can't"}, "finish_reason": "content_filter"}]
        }));
        assert_eq!(response.text.as_deref(), Some("I can't"));
        assert_eq!(response.finish_reason, FinishReason::ContentFilter);

        let response = decoded(json!({"choices": [{"message": {"content": "x"}, "finish_reason": "eos"}]}));
        assert_eq!(response.finish_reason, FinishReason::Other);
    }

    #[test]
    fn malformed_arguments_survive_verbatim() {
        let response = decoded(json!({
            "choices": [{"message": {"tool_calls": [{"id":"c","function":{"name":"a","arguments":"{oops"}}]},
                         "finish_reason": "tool_calls"}]
        }));
        assert_eq!(response.tool_calls[0].arguments, "{oops");
    }

    #[test]
    fn error_bodies_of_every_shape_are_read() {
        let openai = ErrorInfo::from_body(
            br#"{"error":{"message":"The model `x` does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
        );
        assert!(openai.says_unknown_model());
        assert_eq!(openai.describe(), "The model `x` does not exist [model_not_found]");

        let ollama = ErrorInfo::from_body(br#"{"error":"model \"x\" not found, try pulling it first"}"#);
        assert!(ollama.says_unknown_model());

        let vllm = ErrorInfo::from_body(
            br#"{"object":"error","message":"This model's maximum context length is 4096 tokens.","type":"BadRequestError","code":400}"#,
        );
        assert!(vllm.says_context_too_long());
        assert_eq!(vllm.status, Some(400));

        let llamacpp = ErrorInfo::from_body(
            br#"{"error":{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}}"#,
        );
        assert!(llamacpp.says_context_too_long());
        assert!(!llamacpp.says_unknown_model());

        let html = ErrorInfo::from_body(b"<html>\n  <body>Bad   Gateway</body></html>");
        assert_eq!(html.message.as_deref(), Some("<html> <body>Bad Gateway</body></html>"));

        let empty = ErrorInfo::from_body(b"");
        assert_eq!(empty.describe(), "(no error message in the response)");
    }

    #[test]
    fn an_error_inside_a_200_is_reported() {
        let body = br#"{"error":{"message":"upstream overloaded","code":502}}"#;
        match decode(body).unwrap() {
            Decoded::Error(info) => assert_eq!(info.status, Some(502)),
            _ => panic!("expected an error"),
        }
        assert!(matches!(decode(br#"{"choices":[]}"#).unwrap(), Decoded::NoChoices));
        assert!(decode(b"not json").is_err());
    }
}
