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
//!
//! Every model built here sits behind its provider endpoint's circuit
//! breaker and client-side limits, shared process-wide through a
//! [`ProviderRegistry`]; [`build_chain`] adds a [`Failover`] chain of
//! fallback models ([`layers`]).

mod anthropic;
mod error;
mod factory;
mod gemini;
pub mod layers;
mod openai;
mod retry;
mod sse;

pub use anthropic::{ANTHROPIC_BASE_URL, ANTHROPIC_VERSION, Anthropic, AnthropicConfig, DEFAULT_MAX_TOKENS};
pub use error::ProviderError;
pub use factory::{KNOWN_PROVIDERS, build_chain, build_chain_in, build_model, build_model_in, build_model_with};
pub use gemini::{Gemini, GeminiConfig};
pub use layers::{Failover, ProviderRegistry};
pub use openai::{OpenAiCompatible, OpenAiConfig, default_client};
pub use retry::RetryConfig;
