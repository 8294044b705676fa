//! rein's embedded local model: a GGUF model run in this process on the CPU,
//! so an agent works with no API key and no network.
//!
//! llama.cpp (through `llama-cpp-2`) runs the model on an inference thread
//! of its own ([`engine`]); the model file's chat template renders the
//! conversation ([`prompt`]); and llguidance constrains sampling so that a
//! turn is either an answer or a call to one of the agent's tools whose
//! arguments fit its JSON Schema ([`grammar`]). [`LocalModel`] is the
//! [`rein_types::Model`] the runtime calls.

pub mod catalog;
pub mod engine;
mod error;
pub mod grammar;
mod model;
pub mod prompt;
pub mod text;

pub use catalog::{KNOWN_MODELS, KnownModel, MODEL_DIR_ENV, SMOLLM2, model_dir};
pub use engine::{Finish, Generation, ModelInfo};
pub use error::LocalError;
pub use model::{
    DEFAULT_CONTEXT_LENGTH, DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, DEFAULT_TOP_P, LocalConfig, LocalModel,
};
pub use rein_types::ToolChoice;
