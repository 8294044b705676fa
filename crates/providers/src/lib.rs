//! rein's model providers. A provider turns rein's provider-neutral
//! [`rein_types::ModelRequest`] into one HTTP call and the answer back into a
//! [`rein_types::ModelResponse`], or into a typed, explained
//! [`rein_types::ModelError`].
//!
//! This crate owns the OpenAI-compatible client ([`OpenAiCompatible`], which
//! serves OpenAI, OpenRouter, Ollama, vLLM and the llama.cpp server), its
//! retry policy ([`RetryConfig`]), the Anthropic Messages API client
//! ([`Anthropic`], with prompt caching), and the factory ([`build_model`]) that
//! turns an agent's `provider:model` reference and [`rein_types::ProviderDecl`]
//! into a ready [`rein_types::Model`]. API keys are read from the environment
//! at build time and never logged or put in an error message.

mod anthropic;
mod error;
mod factory;
mod gemini;
mod openai;
mod retry;

pub use anthropic::{ANTHROPIC_BASE_URL, ANTHROPIC_VERSION, Anthropic, AnthropicConfig, DEFAULT_MAX_TOKENS};
pub use error::ProviderError;
pub use factory::{KNOWN_PROVIDERS, build_model, build_model_with};
pub use gemini::{Gemini, GeminiConfig};
pub use openai::{OpenAiCompatible, OpenAiConfig, default_client};
pub use retry::RetryConfig;
