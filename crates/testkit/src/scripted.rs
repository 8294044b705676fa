//! Models that replay a script instead of calling a provider: a queue of
//! turns ([`ScriptedModel`]) or a function of the transcript ([`FnModel`]).
//! Every request's transcript is recorded, so tests can assert what the model
//! was told.

use async_trait::async_trait;
use rein_types::{
    FinishReason, Message, Model, ModelError, ModelErrorKind, ModelRequest, ModelResponse, ToolCall, ToolCallId, Usage,
};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Usage every scripted response reports unless told otherwise.
pub const SCRIPTED_USAGE: Usage = Usage { input_tokens: 100, output_tokens: 20, cached_input_tokens: 0 };

/// One scripted turn.
#[derive(Debug, Clone)]
pub enum Turn {
    Respond(ModelResponse),
    Fail(ModelError),
    /// Wait, then play the inner turn (for time-out tests).
    Delayed(Duration, Box<Turn>),
}

impl From<ModelResponse> for Turn {
    fn from(response: ModelResponse) -> Self {
        Turn::Respond(response)
    }
}

impl From<ModelError> for Turn {
    fn from(error: ModelError) -> Self {
        Turn::Fail(error)
    }
}

/// A final answer.
pub fn text(answer: &str) -> ModelResponse {
    ModelResponse {
        text: Some(answer.to_owned()),
        tool_calls: Vec::new(),
        usage: SCRIPTED_USAGE,
        finish_reason: FinishReason::Stop,
        served_by: "scripted".into(),
    }
}

/// One tool call with JSON arguments.
pub fn call(tool: &str, arguments: Value) -> ModelResponse {
    calls(&[(tool, arguments)])
}

/// Several tool calls in one turn (parallel calls).
pub fn calls(list: &[(&str, Value)]) -> ModelResponse {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    let tool_calls = list
        .iter()
        .map(|(name, arguments)| ToolCall {
            id: ToolCallId(format!("call_{}", NEXT_ID.fetch_add(1, Ordering::Relaxed))),
            name: (*name).to_owned(),
            arguments: arguments.to_string(),
        })
        .collect();
    ModelResponse {
        text: None,
        tool_calls,
        usage: SCRIPTED_USAGE,
        finish_reason: FinishReason::ToolCalls,
        served_by: "scripted".into(),
    }
}

/// A tool call whose arguments are exactly `raw` (for malformed JSON).
pub fn raw_call(tool: &str, raw: &str) -> ModelResponse {
    let mut response = call(tool, Value::Null);
    response.tool_calls[0].arguments = raw.to_owned();
    response
}

/// A model error of the given kind.
pub fn failure(kind: ModelErrorKind, message: &str) -> ModelError {
    ModelError::new(kind, message)
}

/// Replays turns in order. When the script runs out it fails with a
/// `BadRequest` error naming the problem, so a test that under-scripts fails
/// loudly instead of hanging.
pub struct ScriptedModel {
    turns: Mutex<VecDeque<Turn>>,
    transcripts: Mutex<Vec<Vec<Message>>>,
}

impl ScriptedModel {
    pub fn new<T: Into<Turn>>(turns: impl IntoIterator<Item = T>) -> Self {
        Self { turns: Mutex::new(turns.into_iter().map(Into::into).collect()), transcripts: Mutex::new(Vec::new()) }
    }

    /// The conversation sent with each call so far.
    pub fn transcripts(&self) -> Vec<Vec<Message>> {
        self.transcripts.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Calls made so far.
    pub fn calls_made(&self) -> usize {
        self.transcripts.lock().map(|t| t.len()).unwrap_or_default()
    }
}

#[async_trait]
impl Model for ScriptedModel {
    fn id(&self) -> String {
        "scripted:model".into()
    }

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        if let Ok(mut transcripts) = self.transcripts.lock() {
            transcripts.push(request.messages.to_vec());
        }
        let next = self.turns.lock().ok().and_then(|mut turns| turns.pop_front());
        let mut turn =
            next.ok_or_else(|| failure(ModelErrorKind::BadRequest, "the scripted model has no more turns"))?;
        loop {
            match turn {
                Turn::Respond(response) => return Ok(response),
                Turn::Fail(error) => return Err(error),
                Turn::Delayed(delay, inner) => {
                    tokio::time::sleep(delay).await;
                    turn = *inner;
                }
            }
        }
    }
}

type Respond = dyn Fn(&[Message]) -> Result<ModelResponse, ModelError> + Send + Sync;

/// A model whose answer is a function of the transcript: for loops that
/// must go on for as long as the control layer lets them.
pub struct FnModel {
    respond: Box<Respond>,
    calls: AtomicU64,
}

impl FnModel {
    pub fn new(respond: impl Fn(&[Message]) -> Result<ModelResponse, ModelError> + Send + Sync + 'static) -> Self {
        Self { respond: Box::new(respond), calls: AtomicU64::new(0) }
    }

    pub fn calls_made(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Model for FnModel {
    fn id(&self) -> String {
        "scripted:fn".into()
    }

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        (self.respond)(request.messages)
    }
}
