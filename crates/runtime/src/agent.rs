//! A runnable agent: its compiled plan, its model and its tools. Built once,
//! shared by any number of concurrent runs.

use crate::driver::RuntimeError;
use rein_core::{AgentPlan, HANDOFF_TOOL};
use rein_types::{
    AgentSpec, Approval, Limits, Model, ModelPrice, ModelRef, ModelSettings, Phase, RiskTier, Route, StopConditions,
    Tool, ToolName, ToolSpec,
};
use serde_json::json;
use std::sync::Arc;

/// An agent ready to run.
#[derive(Clone)]
pub struct Agent {
    pub(crate) plan: Arc<AgentPlan>,
    pub(crate) model: Arc<dyn Model>,
    /// Models of the spec's routes, by phase.
    pub(crate) routes: Arc<[(Phase, Arc<dyn Model>)]>,
    /// Aligned with the plan's catalog; `None` for tools the core handles
    /// itself (the handoff).
    pub(crate) tools: Arc<[Option<Arc<dyn Tool>>]>,
}

impl Agent {
    /// Starts a builder for an agent written in Rust.
    pub fn builder(name: impl Into<String>) -> AgentBuilder {
        AgentBuilder::new(name)
    }

    /// Assembles an agent from a resolved spec (as loaded from TOML) and the
    /// implementations of its tools. Every tool in the spec needs an
    /// implementation, except the built-in handoff.
    pub fn from_spec(
        spec: AgentSpec,
        model: Arc<dyn Model>,
        implementations: Vec<Arc<dyn Tool>>,
    ) -> Result<Self, RuntimeError> {
        let plan = AgentPlan::new(spec).map_err(|e| RuntimeError::InvalidAgent(e.to_string()))?;
        Self::from_plan(plan, model, implementations)
    }

    /// Like [`Agent::from_spec`], with runs recorded under `version` rather
    /// than the spec's hash: for a spec that gained tools discovered when
    /// it was built (MCP servers), whose version is that of the
    /// declarations it was built from.
    pub fn from_spec_with_version(
        spec: AgentSpec,
        version: rein_types::AgentVersion,
        model: Arc<dyn Model>,
        implementations: Vec<Arc<dyn Tool>>,
    ) -> Result<Self, RuntimeError> {
        let plan = AgentPlan::with_version(spec, version).map_err(|e| RuntimeError::InvalidAgent(e.to_string()))?;
        Self::from_plan(plan, model, implementations)
    }

    fn from_plan(
        plan: AgentPlan,
        model: Arc<dyn Model>,
        implementations: Vec<Arc<dyn Tool>>,
    ) -> Result<Self, RuntimeError> {
        let mut tools: Vec<Option<Arc<dyn Tool>>> = Vec::with_capacity(plan.catalog.len());
        for spec in plan.catalog.specs() {
            let name = spec.name.as_str();
            let found = implementations.iter().find(|t| t.spec().name.as_str() == name).cloned();
            if found.is_none() && name != HANDOFF_TOOL {
                return Err(RuntimeError::InvalidAgent(format!("tool `{name}` has no implementation")));
            }
            tools.push(found);
        }
        Ok(Self { plan: Arc::new(plan), model, routes: Arc::from(Vec::new()), tools: tools.into() })
    }

    /// Adds the models serving the spec's routes. Every route of the spec
    /// needs one, and only those.
    pub fn with_route_models(mut self, models: Vec<(Phase, Arc<dyn Model>)>) -> Result<Self, RuntimeError> {
        for phase in self.plan.spec.routes.keys() {
            if !models.iter().any(|(p, _)| p == phase) {
                return Err(RuntimeError::InvalidAgent(format!("the {} route has no model", phase.as_str())));
            }
        }
        if let Some((phase, _)) = models.iter().find(|(p, _)| !self.plan.spec.routes.contains_key(p)) {
            return Err(RuntimeError::InvalidAgent(format!(
                "a model was given for the {} phase, which has no route",
                phase.as_str()
            )));
        }
        self.routes = models.into();
        Ok(self)
    }

    /// The model serving `phase`.
    pub(crate) fn model_for(&self, phase: Phase) -> &Arc<dyn Model> {
        self.routes.iter().find(|(p, _)| *p == phase).map_or(&self.model, |(_, model)| model)
    }

    pub fn name(&self) -> &str {
        &self.plan.spec.name
    }

    pub fn spec(&self) -> &AgentSpec {
        &self.plan.spec
    }

    /// The content hash of the resolved spec, recorded on every run.
    pub fn version(&self) -> &rein_types::AgentVersion {
        &self.plan.version
    }

    pub fn plan(&self) -> &Arc<AgentPlan> {
        &self.plan
    }
}

/// Builds an [`Agent`] in Rust. Limits default to 12 steps and 60 seconds.
pub struct AgentBuilder {
    name: String,
    description: String,
    system_prompt: String,
    model: Option<Arc<dyn Model>>,
    tools: Vec<Arc<dyn Tool>>,
    limits: Limits,
    settings: ModelSettings,
    stop: StopConditions,
    price: Option<ModelPrice>,
    output_schema: Option<serde_json::Value>,
    routes: Vec<(Phase, Arc<dyn Model>, Option<ModelPrice>)>,
    handoff: bool,
}

impl AgentBuilder {
    fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: String::new(),
            system_prompt: String::new(),
            model: None,
            tools: Vec::new(),
            limits: Limits::default(),
            settings: ModelSettings::default(),
            stop: StopConditions::default(),
            price: None,
            output_schema: None,
            routes: Vec::new(),
            handoff: true,
        }
    }

    pub fn description(mut self, text: impl Into<String>) -> Self {
        self.description = text.into();
        self
    }

    pub fn system_prompt(mut self, text: impl Into<String>) -> Self {
        self.system_prompt = text.into();
        self
    }

    pub fn model(mut self, model: impl Model + 'static) -> Self {
        self.model = Some(Arc::new(model));
        self
    }

    pub fn shared_model(mut self, model: Arc<dyn Model>) -> Self {
        self.model = Some(model);
        self
    }

    pub fn tool(mut self, tool: impl Tool + 'static) -> Self {
        self.tools.push(Arc::new(tool));
        self
    }

    pub fn shared_tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.push(tool);
        self
    }

    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn settings(mut self, settings: ModelSettings) -> Self {
        self.settings = settings;
        self
    }

    pub fn stop(mut self, stop: StopConditions) -> Self {
        self.stop = stop;
        self
    }

    /// Price for cost accounting and `max_cost_usd`.
    pub fn price(mut self, price: ModelPrice) -> Self {
        self.price = Some(price);
        self
    }

    /// A JSON Schema the final answer must satisfy; a non-conforming answer
    /// is sent back for repair (`Limits::max_output_repairs`).
    pub fn output_schema(mut self, schema: serde_json::Value) -> Self {
        self.output_schema = Some(schema);
        self
    }

    /// Serves `phase` with `model` (priced at `price`) instead of the
    /// agent's model: a cheap model for tool selection, a strong one for
    /// planning or the final synthesis.
    pub fn route(mut self, phase: Phase, model: Arc<dyn Model>, price: Option<ModelPrice>) -> Self {
        self.routes.push((phase, model, price));
        self
    }

    /// Whether the built-in `handoff_to_human` tool is offered (default yes).
    pub fn handoff(mut self, enabled: bool) -> Self {
        self.handoff = enabled;
        self
    }

    pub fn build(self) -> Result<Agent, RuntimeError> {
        let model = self.model.ok_or_else(|| RuntimeError::InvalidAgent("no model set".into()))?;
        let mut specs: Vec<ToolSpec> = self.tools.iter().map(|t| t.spec().clone()).collect();
        if self.handoff {
            specs.push(handoff_spec());
        }
        let id = model.id();
        let model_ref = ModelRef::parse(&id).unwrap_or_else(|| ModelRef::new("custom", id));
        let spec = AgentSpec {
            name: self.name,
            description: self.description,
            model: model_ref,
            settings: self.settings,
            system_prompt: self.system_prompt,
            tools: specs,
            limits: self.limits,
            stop: self.stop,
            price: self.price,
            routes: self
                .routes
                .iter()
                .map(|(phase, model, price)| {
                    let id = model.id();
                    let model = ModelRef::parse(&id).unwrap_or_else(|| ModelRef::new("custom", id));
                    (*phase, Route { model, price: *price })
                })
                .collect(),
            output_schema: self.output_schema,
            extra: serde_json::Value::Null,
        };
        let routes = self.routes.into_iter().map(|(phase, model, _)| (phase, model)).collect();
        Agent::from_spec(spec, model, self.tools)?.with_route_models(routes)
    }
}

/// The built-in handoff tool's definition.
pub fn handoff_spec() -> ToolSpec {
    let mut spec = ToolSpec::new(
        ToolName::new(HANDOFF_TOOL).unwrap_or_else(|_| unreachable!("a valid literal name")),
        "Hand this task to a human and stop. Use it when the request needs a person: refunds, legal or contract questions, an upset customer, anything you are not confident about, or when your tools cannot do what is asked. Give the reason in one sentence.",
        json!({
            "type": "object",
            "properties": { "reason": { "type": "string", "description": "Why a human is needed, in one sentence." } },
            "required": ["reason"],
            "additionalProperties": false
        }),
        RiskTier::Read,
    );
    spec.approval = Approval::Never;
    spec
}
