//! Rust functions as tools. The parameter schema is derived from the argument
//! type with schemars, so the schema the model sees and the type the function
//! receives cannot drift apart; arguments that do not deserialise, errors the
//! function returns and panics inside it all become [`ToolOutcome::Error`]s.

use crate::error::ToolBuildError;
use async_trait::async_trait;
use futures::FutureExt;
use futures::future::BoxFuture;
use rein_types::{Approval, RiskTier, Tool, ToolContext, ToolName, ToolOutcome, ToolSpec};
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

/// A failure a function tool reports to the model. Converts into
/// [`ToolOutcome::Error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ToolError {
    /// What went wrong, written for the model.
    pub message: String,
    /// What the model could do differently.
    pub hint: Option<String>,
    /// A transient failure: the same call may succeed later.
    pub retryable: bool,
}

impl ToolError {
    /// A permanent error with no hint.
    pub fn new(message: impl Into<String>) -> Self {
        Self { message: message.into(), hint: None, retryable: false }
    }

    /// Adds a hint: what the model could do differently.
    #[must_use]
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Marks the error transient: the same call may succeed later.
    #[must_use]
    pub fn retryable(mut self) -> Self {
        self.retryable = true;
        self
    }
}

/// Lets a function use `?` on errors it has already put into words.
impl From<String> for ToolError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for ToolError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

impl From<ToolError> for ToolOutcome {
    fn from(error: ToolError) -> Self {
        ToolOutcome::Error { message: error.message, hint: error.hint, retryable: error.retryable }
    }
}

/// The type-erased function: raw arguments in, outcome out.
type Handler = Arc<dyn Fn(Value, ToolContext) -> BoxFuture<'static, ToolOutcome> + Send + Sync>;

/// An async Rust function exposed as a tool.
///
/// ```
/// use rein_tools::{FnTool, ToolError};
/// use rein_types::{RiskTier, ToolContext};
///
/// #[derive(serde::Deserialize, schemars::JsonSchema)]
/// struct LookupArgs {
///     /// The key to look up.
///     key: String,
/// }
///
/// # fn main() -> Result<(), rein_tools::ToolBuildError> {
/// let tool = FnTool::new("lookup", "Look up a key", RiskTier::Read, |args: LookupArgs, _ctx: ToolContext| async move {
///     if args.key.is_empty() {
///         return Err(ToolError::new("The key is empty").with_hint("Pass the key the user gave"));
///     }
///     Ok(serde_json::json!({ "key": args.key, "value": 42 }))
/// })?
/// .max_calls(5);
/// # let _ = tool;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct FnTool {
    spec: ToolSpec,
    handler: Handler,
}

impl std::fmt::Debug for FnTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FnTool").field("spec", &self.spec).finish_non_exhaustive()
    }
}

impl FnTool {
    /// Wraps `function` as a tool named `name`. The spec gets the tier's
    /// default approval and idempotency (see [`ToolSpec::new`]); change them
    /// with the builder methods.
    ///
    /// Fails if `name` is not a valid tool name or `A`'s schema does not
    /// describe a JSON object (tool arguments are always an object: use a
    /// struct, even an empty one).
    pub fn new<A, R, E, F, Fut>(
        name: &str,
        description: impl Into<String>,
        risk: RiskTier,
        function: F,
    ) -> Result<Self, ToolBuildError>
    where
        A: DeserializeOwned + JsonSchema + Send + 'static,
        R: Serialize,
        E: Into<ToolError>,
        F: Fn(A, ToolContext) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<R, E>> + Send + 'static,
    {
        let tool_name = ToolName::new(name)?;
        let parameters = schema_for::<A>(name)?;
        let spec = ToolSpec::new(tool_name, description, parameters, risk);
        let function = Arc::new(function);
        let label = name.to_string();
        let handler: Handler = Arc::new(move |arguments: Value, context: ToolContext| {
            let function = Arc::clone(&function);
            let label = label.clone();
            async move {
                let args: A = match serde_json::from_value(arguments) {
                    Ok(args) => args,
                    Err(error) => {
                        return ToolOutcome::error_with_hint(
                            format!("The arguments do not match the parameters of `{label}`"),
                            error.to_string(),
                        );
                    }
                };
                // The call itself is inside the guarded future, so a panic
                // before the first `.await` is caught too.
                let guarded = AssertUnwindSafe(async move { function(args, context).await }).catch_unwind();
                match guarded.await {
                    Ok(Ok(value)) => match serde_json::to_value(value) {
                        Ok(data) => ToolOutcome::ok(data),
                        Err(error) => {
                            tracing::error!(tool = %label, %error, "function tool result does not serialise");
                            ToolOutcome::error(format!(
                                "`{label}` produced a result that cannot be shown (internal error)"
                            ))
                        }
                    },
                    Ok(Err(error)) => ToolOutcome::from(Into::<ToolError>::into(error)),
                    Err(panic) => {
                        tracing::error!(tool = %label, panic = panic_message(panic.as_ref()), "function tool panicked");
                        ToolOutcome::error_with_hint(
                            format!("`{label}` failed unexpectedly (internal error)"),
                            "Do not retry with the same arguments; try another approach or hand off to a human",
                        )
                    }
                }
            }
            .boxed()
        });
        Ok(Self { spec, handler })
    }

    /// Sets whether calls wait for a human decision.
    #[must_use]
    pub fn approval(mut self, approval: Approval) -> Self {
        self.spec.approval = approval;
        self
    }

    /// Declares the tool safe (or not) to run twice with the same arguments.
    #[must_use]
    pub fn idempotent(mut self, idempotent: bool) -> Self {
        self.spec.idempotent = idempotent;
        self
    }

    /// Caps the calls allowed in one run.
    #[must_use]
    pub fn max_calls(mut self, max_calls: u32) -> Self {
        self.spec.max_calls = Some(max_calls);
        self
    }
}

#[async_trait]
impl Tool for FnTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> ToolOutcome {
        (self.handler)(arguments, context.clone()).await
    }
}

/// The JSON Schema of `A` as tool parameters: subschemas inlined (providers
/// handle `$ref` poorly), no `$schema`/`title` noise, and always an object
/// with `properties`. Recursive types keep their `$defs`, which cannot be
/// inlined.
fn schema_for<A: JsonSchema>(name: &str) -> Result<Value, ToolBuildError> {
    let generator = SchemaSettings::draft2020_12().with(|s| s.inline_subschemas = true).into_generator();
    let mut schema = generator.into_root_schema_for::<A>().to_value();
    let Some(object) = schema.as_object_mut() else {
        return Err(not_an_object(name));
    };
    object.remove("$schema");
    object.remove("title");
    if object.get("type").and_then(Value::as_str) != Some("object") {
        return Err(not_an_object(name));
    }
    object.entry("properties").or_insert_with(|| Value::Object(Map::new()));
    Ok(schema)
}

fn not_an_object(name: &str) -> ToolBuildError {
    ToolBuildError::InvalidSchema {
        tool: name.to_string(),
        message: "the argument type must be a struct (tool arguments are a JSON object)".to_string(),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}
