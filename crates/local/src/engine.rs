//! The inference thread. llama.cpp's model and context are not async and a
//! context borrows its model, so one OS thread owns both for the model's
//! lifetime and takes jobs from a channel, one at a time. Decoding runs on
//! llama.cpp's own threads (`threads` of them), never on tokio's workers;
//! one job at a time is also the fastest schedule on a CPU, where two
//! generations would only contend for the same cores.
//!
//! The thread keeps the tokens whose keys and values are in the context's
//! cache. An agent sends the whole conversation every step, so each prompt
//! usually starts with the last one: only the new suffix is decoded.

use crate::error::LocalError;
use crate::grammar::Constraint;
use crate::prompt::ChatMessage;
use crate::text::{StopWatch, Utf8Assembler};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llguidance::{Matcher, ParserFactory, api::TopLevelGrammar};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc as async_mpsc, oneshot};

/// Prompt tokens decoded per llama.cpp batch.
const PROMPT_CHUNK: usize = 512;
/// Output tokens the repetition penalty looks back over, and its strength.
const REPEAT_WINDOW: i32 = 64;
const REPEAT_PENALTY: f32 = 1.1;

/// How the engine runs a model file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EngineConfig {
    pub path: PathBuf,
    /// llama.cpp threads for decoding.
    pub threads: u32,
    /// The context window in tokens; the model's trained length if larger.
    pub context_length: u32,
}

/// Sampling settings of one generation.
#[derive(Debug, Clone)]
pub struct Sampling {
    /// 0 or less is greedy.
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u32,
    pub max_tokens: u32,
    pub stop: Vec<String>,
}

/// One generation to run.
#[derive(Debug)]
pub struct Job {
    pub messages: Vec<ChatMessage>,
    pub constraint: Constraint,
    pub sampling: Sampling,
    /// The constraint allows tool calls, which start with `<` (the grammar
    /// keeps answers from doing so): they are neither streamed nor cut by
    /// stop sequences.
    pub calls_possible: bool,
    /// Where answer text goes as it is generated. Tool calls are not
    /// streamed here: their text is only useful once complete.
    pub pieces: async_mpsc::UnboundedSender<String>,
    pub done: oneshot::Sender<Result<Generation, LocalError>>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The model ended its turn (or the grammar was complete).
    EndOfTurn,
    StopSequence,
    /// `max_tokens`, or the context window, ran out.
    Length,
}

/// What a generation produced, with its counts and timings.
#[derive(Debug, Clone)]
pub struct Generation {
    /// The output, cut before any stop sequence.
    pub text: String,
    /// Whether the output may be a tool call (the job's `calls_possible`).
    pub calls_possible: bool,
    pub finish: Finish,
    pub prompt_tokens: u32,
    /// Prompt tokens whose cache was reused from the previous generation.
    pub cached_tokens: u32,
    pub output_tokens: u32,
    pub prompt_time: Duration,
    pub generation_time: Duration,
}

/// What a loaded model reports about itself.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    pub context_length: u32,
    pub trained_context_length: u32,
    pub parameters: u64,
    pub description: String,
}

/// A handle on the inference thread; dropping the last one ends it.
pub struct Engine {
    jobs: mpsc::Sender<Job>,
    info: ModelInfo,
    cancelled: Arc<AtomicU64>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Engine {
    /// Starts the thread and loads the model, waiting until it is loaded so
    /// that a bad file is reported here rather than on the first call.
    pub fn start(config: EngineConfig) -> Result<Engine, LocalError> {
        let (jobs, receiver) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let cancelled = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&cancelled);
        let name = format!("rein-local-{}", config.path.file_stem().and_then(|s| s.to_str()).unwrap_or("model"));
        std::thread::Builder::new()
            .name(name)
            .spawn(move || run_thread(config, receiver, ready_tx, &counter))
            .map_err(|e| LocalError::Thread(e.to_string()))?;
        let info =
            ready_rx.recv().map_err(|_| LocalError::Thread("the inference thread died while loading".into()))??;
        Ok(Engine { jobs, info, cancelled })
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// Generations abandoned by their caller before they finished.
    pub fn cancelled(&self) -> u64 {
        self.cancelled.load(Ordering::Relaxed)
    }

    pub fn submit(&self, job: Job) -> Result<(), LocalError> {
        self.jobs.send(job).map_err(|_| LocalError::Thread("the inference thread has stopped".into()))
    }
}

fn backend() -> Result<&'static LlamaBackend, LocalError> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| LocalError::Load { path: PathBuf::new(), message: format!("llama.cpp did not start: {e}") })
}

fn run_thread(
    config: EngineConfig,
    jobs: mpsc::Receiver<Job>,
    ready: mpsc::Sender<Result<ModelInfo, LocalError>>,
    cancelled: &AtomicU64,
) {
    let loaded = match load(&config) {
        Ok(loaded) => loaded,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let (backend, model) = loaded;
    let trained = model.n_ctx_train();
    let context_length = config.context_length.min(trained.max(1));
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(context_length))
        .with_n_batch(PROMPT_CHUNK as u32)
        .with_n_ubatch(PROMPT_CHUNK as u32)
        .with_n_threads(config.threads as i32)
        .with_n_threads_batch(config.threads as i32);
    let context = match model.new_context(backend, params) {
        Ok(context) => context,
        Err(e) => {
            let _ = ready.send(Err(LocalError::Load { path: config.path.clone(), message: e.to_string() }));
            return;
        }
    };
    let info = ModelInfo {
        context_length,
        trained_context_length: trained,
        parameters: model.n_params(),
        description: model.meta_val_str("general.name").unwrap_or_else(|_| "GGUF model".to_owned()),
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    // llama.cpp may round the window up and the batch down; the window is
    // what was asked for, the batch what llama.cpp will take.
    let batch = (context.n_batch() as usize).clamp(1, PROMPT_CHUNK);
    let window = (context_length as usize).min(context.n_ctx() as usize);
    let mut worker =
        Worker { model: &model, context, window, batch, cached: Vec::new(), guidance: None, path: config.path };
    while let Ok(job) = jobs.recv() {
        let Job { messages, constraint, sampling, calls_possible, pieces, done } = job;
        let result = if done.is_closed() {
            Err(LocalError::Cancelled)
        } else {
            worker.generate(&messages, &constraint, &sampling, calls_possible, &pieces, &done)
        };
        if matches!(result, Err(LocalError::Cancelled)) {
            cancelled.fetch_add(1, Ordering::Relaxed);
        }
        let _ = done.send(result);
    }
}

fn load(config: &EngineConfig) -> Result<(&'static LlamaBackend, LlamaModel), LocalError> {
    let backend = backend()?;
    let model = LlamaModel::load_from_file(backend, &config.path, &LlamaModelParams::default())
        .map_err(|e| LocalError::Load { path: config.path.clone(), message: e.to_string() })?;
    Ok((backend, model))
}

struct Worker<'m> {
    model: &'m LlamaModel,
    context: LlamaContext<'m>,
    /// The context window in tokens.
    window: usize,
    /// Most tokens decoded in one llama.cpp call.
    batch: usize,
    /// The tokens whose keys and values are in the context's cache, in
    /// order from position 0.
    cached: Vec<LlamaToken>,
    /// Built on the first constrained generation: walking the vocabulary
    /// takes a noticeable moment, and unconstrained models never need it.
    guidance: Option<ParserFactory>,
    path: PathBuf,
}

impl Worker<'_> {
    fn generate(
        &mut self,
        messages: &[ChatMessage],
        constraint: &Constraint,
        sampling: &Sampling,
        calls_possible: bool,
        pieces: &async_mpsc::UnboundedSender<String>,
        done: &oneshot::Sender<Result<Generation, LocalError>>,
    ) -> Result<Generation, LocalError> {
        let prompt = self.render(messages)?;
        tracing::debug!(%prompt, "local model prompt");
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), true, true);
        let window = self.window;
        if tokens.len() >= window {
            return Err(LocalError::ContextTooLong { prompt_tokens: tokens.len(), context_length: window });
        }
        let mut sampler = self.sampler(constraint, sampling)?;

        let started = Instant::now();
        let cached_tokens = self.prefill(&tokens)?;
        let prompt_time = started.elapsed();

        let started = Instant::now();
        let vocab = self.model.vocab();
        let room = (window - tokens.len()) as u32;
        let max_tokens = sampling.max_tokens.min(room);
        let mut utf8 = Utf8Assembler::default();
        let mut stops = StopWatch::new(&sampling.stop);
        let mut is_call = None;
        let mut raw = String::new();
        let mut output_tokens = 0u32;
        let mut finish = Finish::Length;
        while output_tokens < max_tokens {
            // The caller is gone (timed out, cancelled, killed): stop
            // spending the CPU on an answer nobody will read.
            if done.is_closed() {
                return Err(LocalError::Cancelled);
            }
            let token = sampler.sample(&self.context, -1);
            if vocab.is_eog(token) {
                finish = Finish::EndOfTurn;
                break;
            }
            output_tokens += 1;
            let piece = utf8.push(&vocab.token_to_piece(token, false, None));
            raw.push_str(&piece);
            if is_call.is_none() && !raw.is_empty() {
                is_call = Some(calls_possible && raw.starts_with('<'));
            }
            if is_call != Some(true) {
                let released = stops.push(&piece);
                if !released.is_empty() {
                    let _ = pieces.send(released.to_owned());
                }
                if stops.stopped() {
                    finish = Finish::StopSequence;
                    break;
                }
            }
            self.decode_one(token)?;
        }
        let tail = utf8.finish();
        raw.push_str(&tail);
        let text = if is_call == Some(true) {
            raw
        } else {
            if !stops.stopped() {
                stops.push(&tail);
            }
            let rest = stops.flush();
            if !rest.is_empty() {
                let _ = pieces.send(rest.to_owned());
            }
            stops.text().to_owned()
        };
        Ok(Generation {
            text,
            calls_possible,
            finish,
            prompt_tokens: tokens.len() as u32,
            cached_tokens: cached_tokens as u32,
            output_tokens,
            prompt_time,
            generation_time: started.elapsed(),
        })
    }

    fn render(&self, messages: &[ChatMessage]) -> Result<String, LocalError> {
        // The GGUF's own template; llama.cpp recognises the common families
        // by their markers. ChatML when the file has none.
        let template = self
            .model
            .chat_template(None)
            .or_else(|_| LlamaChatTemplate::new("chatml"))
            .map_err(|e| LocalError::Template(e.to_string()))?;
        let chat = messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.to_owned(), m.content.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| LocalError::Template(e.to_string()))?;
        self.model.apply_chat_template(&template, &chat, true).map_err(|e| LocalError::Template(e.to_string()))
    }

    fn sampler(&mut self, constraint: &Constraint, sampling: &Sampling) -> Result<LlamaSampler, LocalError> {
        let mut chain = Vec::new();
        if let Constraint::Lark(grammar) = constraint {
            let factory = match &self.guidance {
                Some(factory) => factory,
                None => {
                    let env = LlamaSampler::llguidance_tok_env(self.model);
                    let factory = ParserFactory::new_simple(&env).map_err(|e| LocalError::Grammar(e.to_string()))?;
                    self.guidance.insert(factory)
                }
            };
            let parser = factory.create_parser(TopLevelGrammar::from_lark(grammar.clone()));
            let matcher = Matcher::new(parser);
            if let Some(error) = matcher.get_error() {
                return Err(LocalError::Grammar(error));
            }
            chain.push(LlamaSampler::from(matcher));
        }
        // A light repetition penalty over the recent output, as llama.cpp's
        // classic default: small models otherwise loop on one phrase.
        chain.push(LlamaSampler::penalties(self.model.n_vocab(), REPEAT_WINDOW, REPEAT_PENALTY, 0.0, 0.0));
        if sampling.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            chain.push(LlamaSampler::top_p(sampling.top_p, 1));
            chain.push(LlamaSampler::temp(sampling.temperature));
            chain.push(LlamaSampler::dist(sampling.seed));
        }
        Ok(LlamaSampler::chain_simple(chain))
    }

    /// Decodes the prompt, reusing the cache for the prefix it shares with
    /// the tokens already there; returns how many were reused. The last
    /// prompt token is always decoded, for its logits.
    fn prefill(&mut self, tokens: &[LlamaToken]) -> Result<usize, LocalError> {
        let shared = self.cached.iter().zip(tokens).take_while(|(a, b)| a == b).count().min(tokens.len() - 1);
        if shared < self.cached.len() {
            let removed = self.context.clear_kv_cache_seq(Some(0), Some(shared as u32), None).unwrap_or(false);
            if !removed {
                self.context.clear_kv_cache();
                self.cached.clear();
                return self.decode_prompt(tokens, 0).map(|()| 0);
            }
            self.cached.truncate(shared);
        }
        self.decode_prompt(tokens, shared)?;
        Ok(shared)
    }

    fn decode_prompt(&mut self, tokens: &[LlamaToken], from: usize) -> Result<(), LocalError> {
        let mut batch = LlamaBatch::new(self.batch, 1);
        let last = tokens.len() - 1;
        for (start, chunk) in tokens[from..].chunks(self.batch).enumerate() {
            batch.clear();
            for (offset, token) in chunk.iter().enumerate() {
                let position = from + start * self.batch + offset;
                batch.add(*token, position as i32, &[0], position == last).map_err(|e| self.decode_error(e))?;
            }
            self.context.decode(&mut batch).map_err(|e| self.decode_error(e))?;
            self.cached.extend_from_slice(chunk);
        }
        Ok(())
    }

    fn decode_one(&mut self, token: LlamaToken) -> Result<(), LocalError> {
        let mut batch = LlamaBatch::new(1, 1);
        batch.add(token, self.cached.len() as i32, &[0], true).map_err(|e| self.decode_error(e))?;
        self.context.decode(&mut batch).map_err(|e| self.decode_error(e))?;
        self.cached.push(token);
        Ok(())
    }

    fn decode_error(&mut self, error: impl std::fmt::Display) -> LocalError {
        // The cache may hold part of a batch now: start clean next time.
        self.context.clear_kv_cache();
        self.cached.clear();
        LocalError::Decode { path: self.path.clone(), message: error.to_string() }
    }
}

/// Whether `path` starts like a GGUF file, so a wrong file is named before
/// llama.cpp tries to map it.
pub fn check_gguf(path: &Path) -> Result<(), LocalError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .map_err(|e| LocalError::Load { path: path.to_owned(), message: e.to_string() })?;
    if &magic != b"GGUF" {
        return Err(LocalError::Load { path: path.to_owned(), message: "not a GGUF file".to_owned() });
    }
    Ok(())
}
