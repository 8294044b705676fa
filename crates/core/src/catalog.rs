//! The tools an agent may call, with their argument schemas compiled once per
//! agent so that validating a call costs no schema compilation.

use rein_types::{AgentSpec, AgentVersion, ToolSpec};
use std::collections::HashMap;

/// The built-in tool that hands a run to a human; the core ends the run as
/// `escalated` instead of executing it.
pub const HANDOFF_TOOL: &str = "handoff_to_human";

/// A tool's schema could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("tool `{tool}`: invalid JSON Schema for its parameters: {message}")]
    InvalidSchema { tool: String, message: String },
    #[error("tool `{0}` is declared twice")]
    Duplicate(String),
}

struct Entry {
    spec: ToolSpec,
    validator: jsonschema::Validator,
}

/// The agent's tools by name, each with a compiled validator.
pub struct ToolCatalog {
    entries: Vec<Entry>,
    by_name: HashMap<String, usize>,
    /// Characters the tool definitions add to every prompt.
    prompt_chars: usize,
}

impl ToolCatalog {
    pub fn new(specs: &[ToolSpec]) -> Result<Self, CatalogError> {
        let mut entries = Vec::with_capacity(specs.len());
        let mut by_name = HashMap::with_capacity(specs.len());
        let mut prompt_chars = 0;
        for spec in specs {
            let name = spec.name.as_str().to_owned();
            if by_name.insert(name.clone(), entries.len()).is_some() {
                return Err(CatalogError::Duplicate(name));
            }
            let validator = jsonschema::validator_for(&spec.parameters)
                .map_err(|e| CatalogError::InvalidSchema { tool: name.clone(), message: e.to_string() })?;
            prompt_chars += name.len() + spec.description.len() + spec.parameters.to_string().len();
            entries.push(Entry { spec: spec.clone(), validator });
        }
        Ok(Self { entries, by_name, prompt_chars })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The index of a tool, which is stable for the catalog's lifetime.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub fn spec(&self, index: usize) -> &ToolSpec {
        &self.entries[index].spec
    }

    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.entries.iter().map(|e| &e.spec)
    }

    pub fn names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.spec.name.as_str()).collect()
    }

    pub fn prompt_chars(&self) -> usize {
        self.prompt_chars
    }

    /// Every schema violation of `arguments`, as sentences the model can act on.
    pub fn violations(&self, index: usize, arguments: &serde_json::Value) -> Vec<String> {
        self.entries[index]
            .validator
            .iter_errors(arguments)
            .map(|error| {
                let path = error.instance_path().to_string();
                if path.is_empty() { error.to_string() } else { format!("at `{path}`: {error}") }
            })
            .collect()
    }
}

/// An agent ready to run: its spec, its version, and its compiled tools.
/// Built once and shared by every run of the agent.
pub struct AgentPlan {
    pub spec: AgentSpec,
    pub version: AgentVersion,
    pub catalog: ToolCatalog,
    /// The tool definitions as sent to the model, in catalog order.
    pub tool_specs: Vec<ToolSpec>,
    /// The compiled `output_schema`, when the agent declares one.
    pub output_validator: Option<jsonschema::Validator>,
}

impl AgentPlan {
    pub fn new(spec: AgentSpec) -> Result<Self, CatalogError> {
        let catalog = ToolCatalog::new(&spec.tools)?;
        let output_validator =
            match &spec.output_schema {
                Some(schema) => Some(jsonschema::validator_for(schema).map_err(|e| CatalogError::InvalidSchema {
                    tool: "output_schema".into(),
                    message: e.to_string(),
                })?),
                None => None,
            };
        let version = spec.version();
        let tool_specs = spec.tools.clone();
        Ok(Self { spec, version, catalog, tool_specs, output_validator })
    }

    /// Like [`AgentPlan::new`], recording runs under `version` rather than
    /// the spec's own hash: for agents whose spec gained tools discovered
    /// when it was built (from MCP servers), whose version is that of the
    /// declarations they were built from.
    pub fn with_version(spec: AgentSpec, version: AgentVersion) -> Result<Self, CatalogError> {
        Ok(Self { version, ..Self::new(spec)? })
    }
}
