//! An agent's resolved specification. Its content hash is the agent's version,
//! recorded on every run, so a run can always be tied to exactly what ran.

use crate::ids::AgentVersion;
use crate::tool::ToolSpec;
use crate::usage::ModelPrice;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// `provider:model`, e.g. `openai:gpt-4o-mini`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelRef {
    pub provider: String,
    pub name: String,
}

impl ModelRef {
    pub fn new(provider: impl Into<String>, name: impl Into<String>) -> Self {
        Self { provider: provider.into(), name: name.into() }
    }

    /// Parses `provider:model`. The model part may itself contain `:`
    /// (`ollama:llama3.2:3b`).
    pub fn parse(text: &str) -> Option<Self> {
        let (provider, name) = text.split_once(':')?;
        (!provider.is_empty() && !name.is_empty()).then(|| Self::new(provider, name))
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.provider, self.name)
    }
}

/// What a model call is for; an agent may route each to its own model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The run's first call: read the task and plan.
    #[default]
    Planning,
    /// A call after tool results: choose the next action.
    ToolSelection,
    /// A call after a failed or refused tool call: recover.
    Reflection,
    /// One extra call, with no tools, that writes the final answer once the
    /// run's working model has given one.
    Synthesis,
    /// A call, with no tools, that condenses the conversation when it grows
    /// past `limits.summarise_above_tokens`; the summary replaces the
    /// history.
    Summarisation,
}

impl Phase {
    pub const ALL: [Phase; 5] =
        [Phase::Planning, Phase::ToolSelection, Phase::Reflection, Phase::Synthesis, Phase::Summarisation];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Planning => "planning",
            Phase::ToolSelection => "tool_selection",
            Phase::Reflection => "reflection",
            Phase::Synthesis => "synthesis",
            Phase::Summarisation => "summarisation",
        }
    }
}

/// The model serving one phase, and its price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub model: ModelRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<ModelPrice>,
}

/// Generation parameters sent with every call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Output cap per call; also the worst case the budget check assumes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

/// The bounds of one run. Every limit has a default, so an agent is bounded
/// even when its author sets none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Model calls per run.
    pub max_steps: u32,
    /// Wall-clock time per run, in milliseconds.
    pub timeout_ms: u64,
    /// Input plus output tokens per run.
    pub max_tokens: Option<u64>,
    /// Dollars per run.
    pub max_cost_usd: Option<f64>,
    /// Consecutive rejected tool calls (unknown tool, invalid arguments)
    /// before the run stops.
    pub max_invalid_calls: u32,
    /// Consecutive failed tool calls before the run stops.
    pub max_tool_errors: u32,
    /// Consecutive steps whose tool results add nothing new before the run
    /// stops.
    pub max_no_progress_steps: u32,
    /// Times a final answer that does not match the output schema is sent
    /// back for repair before the run fails.
    pub max_output_repairs: u32,
    /// When the estimated prompt grows past this many tokens, the
    /// conversation is summarised (a summarisation call) and the summary
    /// replaces the history. Off when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summarise_above_tokens: Option<u64>,
    /// Per-tool-call time-out, in milliseconds, unless the tool sets its own.
    pub tool_timeout_ms: u64,
    /// How long an approval request waits for a person before it lapses and
    /// counts as a rejection, in milliseconds. Time spent waiting does not
    /// count against `timeout_ms`.
    pub approval_timeout_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 12,
            timeout_ms: 60_000,
            max_tokens: None,
            max_cost_usd: None,
            max_invalid_calls: 3,
            max_tool_errors: 3,
            max_no_progress_steps: 3,
            max_output_repairs: 2,
            summarise_above_tokens: None,
            tool_timeout_ms: 30_000,
            approval_timeout_ms: 24 * 60 * 60 * 1000,
        }
    }
}

/// When a run ends besides the model giving a final answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StopConditions {
    /// The run succeeds as soon as one of these tools succeeds; its result is
    /// the run's output.
    pub after_tools: Vec<String>,
}

/// Everything that decides an agent's behaviour, resolved (prompt files read,
/// tool files included, defaults applied). Hashing it gives the version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub model: ModelRef,
    #[serde(default)]
    pub settings: ModelSettings,
    pub system_prompt: String,
    pub tools: Vec<ToolSpec>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub stop: StopConditions,
    /// Price used for cost accounting and the cost budget; `None` when the
    /// model has no known price (cost then counts as zero).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<ModelPrice>,
    /// Models for particular phases; a phase without a route uses `model`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub routes: std::collections::BTreeMap<Phase, Route>,
    /// JSON Schema the final answer must satisfy. The answer is parsed as
    /// JSON and validated; a non-conforming answer is sent back for repair
    /// up to `limits.max_output_repairs` times.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<serde_json::Value>,
    /// Anything else that changes behaviour and must change the version
    /// (tool implementation settings such as URLs and queries).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub extra: serde_json::Value,
}

impl AgentSpec {
    /// SHA-256 over the spec's canonical JSON (object keys sorted), so the
    /// same content always gives the same version, whatever order the file
    /// declared it in.
    pub fn version(&self) -> AgentVersion {
        let value = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        let mut canonical = String::new();
        write_canonical(&value, &mut canonical);
        AgentVersion(hex::encode(Sha256::digest(canonical.as_bytes())))
    }
}

/// Writes `value` as JSON with object keys sorted. `serde_json::Map` is a
/// `BTreeMap` without the `preserve_order` feature, but that feature can be
/// switched on by any crate in a build, so the order is made explicit here.
pub fn write_canonical(value: &serde_json::Value, out: &mut String) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(&map[key], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> AgentSpec {
        AgentSpec {
            name: "a".into(),
            description: String::new(),
            model: ModelRef::new("openai", "gpt-4o-mini"),
            settings: ModelSettings::default(),
            system_prompt: "be brief".into(),
            tools: vec![],
            limits: Limits::default(),
            stop: StopConditions::default(),
            price: None,
            routes: Default::default(),
            output_schema: None,
            extra: serde_json::Value::Null,
        }
    }

    #[test]
    fn version_changes_with_content_only() {
        let a = spec();
        let b = spec();
        assert_eq!(a.version(), b.version());
        let mut c = spec();
        c.system_prompt.push('!');
        assert_ne!(a.version(), c.version());
        let mut d = spec();
        d.limits.max_steps = 5;
        assert_ne!(a.version(), d.version());
    }

    #[test]
    fn model_refs_parse() {
        assert_eq!(ModelRef::parse("ollama:llama3.2:3b"), Some(ModelRef::new("ollama", "llama3.2:3b")));
        assert_eq!(ModelRef::parse("gpt-4o"), None);
        assert_eq!(ModelRef::parse(":x"), None);
    }
}
