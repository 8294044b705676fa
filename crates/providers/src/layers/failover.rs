//! A failover chain: an ordered list of models, each usually behind its own
//! endpoint's breaker and limiter. A call goes to the first model; on a
//! retryable failure (rate limit, 5xx, time-out, broken connection — after
//! that model's own retries, or at once when its breaker is open) it moves
//! to the next. Any other error (auth, bad request, context too long,
//! unknown model) is returned as it is: it is a mistake to fix, not an
//! outage to route around.
//!
//! The response's `served_by` names the model of the chain that answered,
//! as `provider:model`, so the journal shows which model served each step
//! and a switch to a fallback is visible; each switch is also logged.
//! A streaming call that has already delivered part of its answer is not
//! retried elsewhere, since the caller would see the answer twice.

use async_trait::async_trait;
use rein_types::{Model, ModelError, ModelRequest, ModelResponse, OnDelta, StreamDelta};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// An ordered list of models tried in turn.
pub struct Failover {
    chain: Vec<Arc<dyn Model>>,
}

impl Failover {
    /// `primary` first, then `fallbacks` in order.
    pub fn new(primary: Arc<dyn Model>, fallbacks: Vec<Arc<dyn Model>>) -> Self {
        let mut chain = Vec::with_capacity(1 + fallbacks.len());
        chain.push(primary);
        chain.extend(fallbacks);
        Self { chain }
    }

    /// The models of the chain, primary first.
    pub fn models(&self) -> &[Arc<dyn Model>] {
        &self.chain
    }

    async fn run<'a, F>(&self, mut call: F) -> Result<ModelResponse, ModelError>
    where
        F: FnMut(bool, &Arc<dyn Model>) -> BoxedCall<'a>,
    {
        let mut failures: Vec<(String, ModelError)> = Vec::new();
        for (index, model) in self.chain.iter().enumerate() {
            let id = model.id();
            match call(index > 0, model).await {
                Ok(mut response) => {
                    if index > 0 {
                        tracing::warn!(served_by = %id, primary = %self.chain[0].id(), "served by a fallback model");
                    }
                    response.served_by = id;
                    return Ok(response);
                }
                Err(Attempt { error, delivered }) => {
                    let last = index + 1 == self.chain.len();
                    if !error.is_retryable() || delivered || last {
                        return Err(summarise(failures, id, error));
                    }
                    let next = self.chain[index + 1].id();
                    tracing::warn!(from = %id, to = %next, error = %error, "model failed; failing over");
                    failures.push((id, error));
                }
            }
        }
        // The chain is never empty; this is not reached.
        Err(ModelError::new(rein_types::ModelErrorKind::InvalidResponse, "the failover chain has no models"))
    }
}

/// A fallback is sent its own model name: the request's names the primary's.
fn for_model(request: ModelRequest<'_>, fallback: bool) -> ModelRequest<'_> {
    if fallback { ModelRequest { model: "", ..request } } else { request }
}

/// One model's failure, and whether it streamed anything first.
struct Attempt {
    error: ModelError,
    delivered: bool,
}

/// One model's call, boxed so the chain can drive each model in turn.
type BoxedCall<'a> = Pin<Box<dyn Future<Output = Result<ModelResponse, Attempt>> + Send + 'a>>;

/// The final error: the last model's, with the earlier failures named.
fn summarise(failures: Vec<(String, ModelError)>, id: String, mut error: ModelError) -> ModelError {
    if !failures.is_empty() {
        let earlier: Vec<String> = failures.iter().map(|(id, e)| format!("{id}: {e}")).collect();
        error.message = format!("{id}: {} (after failing over from {})", error.message, earlier.join("; "));
    }
    error
}

#[async_trait]
impl Model for Failover {
    fn id(&self) -> String {
        self.chain.first().map(|m| m.id()).unwrap_or_default()
    }

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        self.run(|fallback, model| {
            let model = model.clone();
            let request = for_model(request, fallback);
            Box::pin(async move { model.complete(request).await.map_err(|error| Attempt { error, delivered: false }) })
        })
        .await
    }

    async fn complete_streaming(
        &self,
        request: ModelRequest<'_>,
        on_delta: OnDelta<'_>,
    ) -> Result<ModelResponse, ModelError> {
        self.run(|fallback, model| {
            let model = model.clone();
            let request = for_model(request, fallback);
            Box::pin(async move {
                let delivered = AtomicBool::new(false);
                let forward = |delta: StreamDelta| {
                    delivered.store(true, Ordering::Relaxed);
                    on_delta(delta);
                };
                let result = model.complete_streaming(request, &forward).await;
                result.map_err(|error| Attempt { error, delivered: delivered.load(Ordering::Relaxed) })
            })
        })
        .await
    }
}
