//! [`LocalModel`]: the [`Model`] the runtime calls, in front of a shared
//! inference thread per model file.

use crate::catalog::{model_dir, resolve};
use crate::engine::{Engine, EngineConfig, Finish, Generation, Job, ModelInfo, Sampling, check_gguf};
use crate::error::LocalError;
use crate::grammar::{self, Parsed, Turn};
use crate::prompt::chat_messages;
use async_trait::async_trait;
use rein_types::{
    FinishReason, Message, Model, ModelError, ModelErrorKind, ModelRequest, ModelResponse, OnDelta, StreamDelta,
    ToolCall, ToolCallId, ToolChoice, Usage,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use tokio::sync::{mpsc, oneshot};

/// How to run a local model; unset fields take the defaults below.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LocalConfig {
    /// Decoding threads; default: the cores this process may use.
    pub threads: Option<u32>,
    /// Context window in tokens; default [`DEFAULT_CONTEXT_LENGTH`], never
    /// more than the model was trained on.
    pub context_length: Option<u32>,
    /// Whether turns with tools may answer; default [`ToolChoice::Auto`].
    pub tool_choice: Option<ToolChoice>,
}

/// The context window when the agent does not set one: enough for an agent
/// loop of a few steps, and a cache a small machine can hold for any model.
pub const DEFAULT_CONTEXT_LENGTH: u32 = 4096;
/// The output cap when the agent does not set one.
pub const DEFAULT_MAX_TOKENS: u32 = 512;
/// SmolLM2's recommended sampling, used when the agent sets none.
pub const DEFAULT_TEMPERATURE: f32 = 0.2;
pub const DEFAULT_TOP_P: f32 = 0.9;

/// A GGUF model run in this process.
#[derive(Debug, Clone)]
pub struct LocalModel {
    name: String,
    path: PathBuf,
    engine: Arc<Engine>,
    tool_choice: ToolChoice,
}

impl LocalModel {
    /// Opens the model `name` (a name in the model directory, or a path to a
    /// `.gguf` file), loading it unless this process already has it loaded
    /// with the same settings, in which case the two share it.
    pub fn open(name: &str, config: LocalConfig) -> Result<LocalModel, LocalError> {
        let path = resolve(name, &model_dir())?;
        check_gguf(&path)?;
        let path = path.canonicalize().unwrap_or(path);
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(1)));
        let engine = shared_engine(EngineConfig {
            path: path.clone(),
            threads: threads.max(1),
            context_length: config.context_length.unwrap_or(DEFAULT_CONTEXT_LENGTH).max(16),
        })?;
        let tool_choice = config.tool_choice.unwrap_or_default();
        Ok(LocalModel { name: name.to_owned(), path, engine, tool_choice })
    }

    /// Sets whether turns with tools may answer or must call one.
    pub fn with_tool_choice(mut self, choice: ToolChoice) -> Self {
        self.tool_choice = choice;
        self
    }

    pub fn info(&self) -> &ModelInfo {
        self.engine.info()
    }

    /// Generations of this model file abandoned by their callers (a time-out,
    /// a cancelled run) and stopped early, in this process.
    pub fn cancelled_generations(&self) -> u64 {
        self.engine.cancelled()
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Runs one generation, sending answer text to `on_piece` as it comes.
    pub async fn generate(
        &self,
        request: &ModelRequest<'_>,
        on_piece: &(dyn Fn(&str) + Send + Sync),
    ) -> Result<Generation, LocalError> {
        let has_result = request.messages.iter().any(|m| matches!(m, Message::Tool { .. }));
        let turn = Turn::for_choice(self.tool_choice, has_result);
        let calls_possible = turn.calls_possible(request.tools);
        let constraint = grammar::constraint(request.tools, request.output_schema, turn);
        let temperature = request.temperature.unwrap_or(DEFAULT_TEMPERATURE);
        let sampling = Sampling {
            temperature,
            top_p: request.top_p.unwrap_or(DEFAULT_TOP_P),
            // llama.cpp seeds are 32 bits; fold the rest in rather than drop it.
            seed: request.seed.map_or_else(|| fastrand::u32(..), |seed| (seed ^ (seed >> 32)) as u32),
            max_tokens: request.max_output_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            stop: request.stop.to_vec(),
        };
        let (pieces, mut piece_rx) = mpsc::unbounded_channel();
        let (done, done_rx) = oneshot::channel();
        self.engine.submit(Job {
            messages: chat_messages(request.messages, request.tools, turn),
            calls_possible,
            constraint,
            sampling,
            pieces,
            done,
        })?;
        while let Some(piece) = piece_rx.recv().await {
            on_piece(&piece);
        }
        done_rx.await.map_err(|_| LocalError::Thread("the inference thread stopped during the call".into()))?
    }

    fn response(&self, generation: Generation) -> Result<ModelResponse, ModelError> {
        let usage = Usage {
            input_tokens: u64::from(generation.prompt_tokens),
            output_tokens: u64::from(generation.output_tokens),
            cached_input_tokens: u64::from(generation.cached_tokens),
        };
        let served_by = self.id();
        let cut_short = generation.finish == Finish::Length;
        let parsed = if generation.calls_possible {
            grammar::parse(&generation.text).map_err(|e| {
                let mut message = e.to_string();
                if cut_short {
                    message.push_str(" (it was cut off by max_output_tokens; raise it)");
                }
                ModelError::new(ModelErrorKind::InvalidResponse, message)
            })?
        } else {
            Parsed::Answer(generation.text)
        };
        Ok(match parsed {
            Parsed::Answer(text) => ModelResponse {
                text: Some(text),
                tool_calls: Vec::new(),
                usage,
                finish_reason: if cut_short { FinishReason::Length } else { FinishReason::Stop },
                served_by,
            },
            Parsed::Call { name, arguments } => ModelResponse {
                text: None,
                tool_calls: vec![ToolCall {
                    id: ToolCallId(format!("call_{:016x}", fastrand::u64(..))),
                    name,
                    arguments: arguments.to_string(),
                }],
                usage,
                finish_reason: FinishReason::ToolCalls,
                served_by,
            },
        })
    }
}

#[async_trait]
impl Model for LocalModel {
    fn id(&self) -> String {
        format!("local:{}", self.name)
    }

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let generation = self.generate(&request, &|_| {}).await?;
        self.response(generation)
    }

    async fn complete_streaming(
        &self,
        request: ModelRequest<'_>,
        on_delta: OnDelta<'_>,
    ) -> Result<ModelResponse, ModelError> {
        let generation = self.generate(&request, &|piece| on_delta(StreamDelta::Text(piece.to_owned()))).await?;
        let response = self.response(generation)?;
        for (index, call) in response.tool_calls.iter().enumerate() {
            on_delta(StreamDelta::ToolCallStarted { index, id: call.id.0.clone(), name: call.name.clone() });
            on_delta(StreamDelta::ToolCallArguments { index, fragment: call.arguments.clone() });
        }
        Ok(response)
    }
}

/// One engine per model file and settings in the process, shared by every
/// agent that names it, so a model's weights and thread exist once.
fn shared_engine(config: EngineConfig) -> Result<Arc<Engine>, LocalError> {
    static ENGINES: Mutex<Option<HashMap<EngineConfig, Weak<Engine>>>> = Mutex::new(None);
    let mut engines = ENGINES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let engines = engines.get_or_insert_with(HashMap::new);
    if let Some(engine) = engines.get(&config).and_then(Weak::upgrade) {
        return Ok(engine);
    }
    engines.retain(|_, engine| engine.strong_count() > 0);
    let engine = Arc::new(Engine::start(config.clone())?);
    engines.insert(config, Arc::downgrade(&engine));
    Ok(engine)
}
