//! One model call: what is asked, what comes back, and how it can fail.

use crate::message::{Message, ToolCall};
use crate::tool::ToolSpec;
use crate::usage::Usage;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A request to a model. Borrowed, so the conversation is never copied per call.
#[derive(Debug, Clone, Copy)]
pub struct ModelRequest<'a> {
    /// The provider's model name (without the `provider:` prefix).
    pub model: &'a str,
    pub messages: &'a [Message],
    pub tools: &'a [ToolSpec],
    /// Output cap for this call.
    pub max_output_tokens: Option<u32>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub seed: Option<u64>,
    pub stop: &'a [String],
    /// JSON Schema the final answer must match, for providers with a native
    /// structured-output mode; the core validates the answer either way.
    pub output_schema: Option<&'a serde_json::Value>,
}

/// Why the model stopped generating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    ToolCalls,
    /// The output cap was hit; the text may be cut short.
    Length,
    ContentFilter,
    Other,
}

/// What one model call produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelResponse {
    pub text: Option<String>,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    pub finish_reason: FinishReason,
    /// The model that actually served the call, as the provider named it.
    #[serde(default)]
    pub served_by: String,
}

/// The kind of a model failure, which decides retrying and the explanation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelErrorKind {
    /// The key is missing, wrong or lacks permission (401/403).
    Auth,
    /// The provider does not know the model (404 or a model-not-found body).
    UnknownModel,
    /// The prompt does not fit the model's context window.
    ContextTooLong,
    /// 429 after every retry.
    RateLimited,
    /// 5xx after every retry.
    ServerError,
    /// No answer within the call's time-out, after every retry.
    Timeout,
    /// Could not connect or the connection broke.
    Transport,
    /// The request was refused as malformed (other 4xx).
    BadRequest,
    /// The body could not be understood.
    InvalidResponse,
}

impl ModelErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelErrorKind::Auth => "auth",
            ModelErrorKind::UnknownModel => "unknown_model",
            ModelErrorKind::ContextTooLong => "context_too_long",
            ModelErrorKind::RateLimited => "rate_limited",
            ModelErrorKind::ServerError => "server_error",
            ModelErrorKind::Timeout => "timeout",
            ModelErrorKind::Transport => "transport",
            ModelErrorKind::BadRequest => "bad_request",
            ModelErrorKind::InvalidResponse => "invalid_response",
        }
    }
}

/// A failed model call, with a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
#[error("{message}")]
pub struct ModelError {
    pub kind: ModelErrorKind,
    pub message: String,
    /// HTTP status, when there was one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// How long the provider asked us to wait (Retry-After).
    #[serde(skip)]
    pub retry_after: Option<Duration>,
}

impl ModelError {
    pub fn new(kind: ModelErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), status: None, retry_after: None }
    }

    /// Whether trying the same call again can succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self.kind,
            ModelErrorKind::RateLimited
                | ModelErrorKind::ServerError
                | ModelErrorKind::Timeout
                | ModelErrorKind::Transport
        )
    }

    /// What the operator should do about it.
    pub fn advice(&self) -> &'static str {
        match self.kind {
            ModelErrorKind::Auth => {
                "Check that the API key environment variable named in the agent's [model] section is set and valid."
            }
            ModelErrorKind::UnknownModel => "Check the model name in the agent file against the provider's model list.",
            ModelErrorKind::ContextTooLong => {
                "Shorten the input or the system prompt, lower tool result sizes (max_result_bytes), or use a model with a larger context window."
            }
            ModelErrorKind::RateLimited => "The provider is rate-limiting this key; retry later or lower concurrency.",
            ModelErrorKind::ServerError => "The provider is failing; retry later or configure a fallback model.",
            ModelErrorKind::Timeout => "The provider did not answer in time; retry later or raise the model's timeout.",
            ModelErrorKind::Transport => "The provider could not be reached; check base_url and the network.",
            ModelErrorKind::BadRequest => {
                "The provider rejected the request; check the model parameters in the agent file."
            }
            ModelErrorKind::InvalidResponse => {
                "The provider answered with something rein could not read; check that base_url points at an OpenAI-compatible API."
            }
        }
    }
}
