//! What can go wrong running a local model, and how each failure reads to
//! the runtime ([`ModelError`]) and to the person fixing it.

use rein_types::{ModelError, ModelErrorKind};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LocalError {
    /// The name given is neither a model in the cache nor a file.
    #[error("local model `{name}` not found: looked for {looked}. {hint}")]
    NotFound { name: String, looked: String, hint: String },
    #[error("could not load the local model {path}: {message}")]
    Load { path: PathBuf, message: String },
    #[error("the prompt is {prompt_tokens} tokens, but the local model's context window is {context_length}")]
    ContextTooLong { prompt_tokens: usize, context_length: usize },
    #[error("the model's chat template could not render the conversation: {0}")]
    Template(String),
    /// A tool's or the answer's schema could not be turned into a grammar.
    #[error("the output constraint could not be built: {0}")]
    Grammar(String),
    #[error("llama.cpp failed while decoding with {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("the local model's inference thread failed: {0}")]
    Thread(String),
    /// The caller stopped waiting; nobody reads this one.
    #[error("the generation was cancelled")]
    Cancelled,
}

impl From<LocalError> for ModelError {
    fn from(error: LocalError) -> Self {
        let kind = match &error {
            LocalError::NotFound { .. } | LocalError::Load { .. } => ModelErrorKind::UnknownModel,
            LocalError::ContextTooLong { .. } => ModelErrorKind::ContextTooLong,
            LocalError::Template(_) | LocalError::Grammar(_) => ModelErrorKind::BadRequest,
            LocalError::Decode { .. } | LocalError::Thread(_) | LocalError::Cancelled => ModelErrorKind::ServerError,
        };
        ModelError::new(kind, error.to_string())
    }
}
