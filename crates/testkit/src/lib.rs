//! Test doubles for rein. Everything here is deterministic and in-process,
//! so loops are tested in milliseconds without a network or a real model.
//!
//! - [`scripted`]: a model that replays scripted turns, or answers with a
//!   function of the transcript.
//! - [`clock`]: a clock moved by hand.
//! - [`journal`]: an in-memory journal; [`conformance`]: the suite every
//!   journal backend must pass; [`queue`]: the suite every run queue must
//!   pass.
//! - [`openai_server`]: a local HTTP server speaking the OpenAI Chat
//!   Completions wire format, for end-to-end tests.

pub mod access;
pub mod clock;
pub mod conformance;
pub mod journal;
pub mod mcp_servers;
pub mod openai_server;
pub mod prune;
pub mod queue;
pub mod scripted;
pub mod ticks;

pub use clock::FakeClock;
pub use scripted::{FnModel, ScriptedModel, Turn};
