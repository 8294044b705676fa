//! Tower-style layers around a [`rein_types::Model`]: each wraps an
//! `Arc<dyn Model>` and is itself a `Model`.
//!
//! - [`CircuitBreaker`] fails fast while an endpoint is failing;
//! - [`RateLimit`] queues calls within an endpoint's concurrency, request
//!   and token rates;
//! - [`Failover`] tries an ordered list of models, moving on after a
//!   retryable failure.
//!
//! Breakers and limiters belong to a provider endpoint (provider + base
//! URL), not to an agent: a [`ProviderRegistry`] holds them so that every
//! agent in the process shares them. [`ProviderRegistry::global`] is the
//! process-wide default that [`crate::build_model`] uses.

mod breaker;
mod failover;
mod limiter;

pub use breaker::{Breaker, BreakerConfig, BreakerState, CircuitBreaker};
pub use failover::Failover;
pub use limiter::{DEFAULT_OUTPUT_ESTIMATE, Limiter, LimiterConfig, RateLimit, TokenBucket, estimate_tokens};

use rein_types::Model;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// The shared state of one provider endpoint.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub breaker: Arc<Breaker>,
    pub limiter: Arc<Limiter>,
}

/// Breakers and limiters per provider endpoint, keyed by provider and base
/// URL. The first model built for an endpoint sets its limits; a later one
/// that asks for different limits gets the existing ones (and a warning),
/// so one process never holds two limiters for one endpoint.
#[derive(Debug)]
pub struct ProviderRegistry {
    breaker: BreakerConfig,
    endpoints: Mutex<HashMap<(String, String), Endpoint>>,
}

impl Default for ProviderRegistry {
    fn default() -> Self {
        Self::new(BreakerConfig::default())
    }
}

impl ProviderRegistry {
    /// A registry whose breakers use `breaker`.
    pub fn new(breaker: BreakerConfig) -> Self {
        Self { breaker, endpoints: Mutex::new(HashMap::new()) }
    }

    /// The process-wide registry.
    pub fn global() -> &'static ProviderRegistry {
        static GLOBAL: OnceLock<ProviderRegistry> = OnceLock::new();
        GLOBAL.get_or_init(ProviderRegistry::default)
    }

    /// The endpoint `provider` at `base_url`, created with `limits` if new.
    pub fn endpoint(&self, provider: &str, base_url: &str, limits: LimiterConfig) -> Endpoint {
        let key = (provider.to_owned(), base_url.trim_end_matches('/').to_owned());
        let mut endpoints = self.endpoints.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let endpoint = endpoints.entry(key).or_insert_with(|| {
            let name = format!("{provider} at {base_url}");
            Endpoint {
                breaker: Arc::new(Breaker::new(name.clone(), self.breaker)),
                limiter: Arc::new(Limiter::new(name, limits)),
            }
        });
        if endpoint.limiter.config() != limits && limits.is_limited() {
            tracing::warn!(
                provider,
                base_url,
                "this endpoint's limits were already set by another agent in this process; keeping the first"
            );
        }
        endpoint.clone()
    }

    /// `model` behind its endpoint's breaker and limiter; `timeout` bounds
    /// the wait for capacity.
    pub fn wrap(&self, model: Arc<dyn Model>, endpoint: &Endpoint, timeout: Duration) -> Arc<dyn Model> {
        let limited: Arc<dyn Model> = Arc::new(RateLimit::new(model, endpoint.limiter.clone(), timeout));
        Arc::new(CircuitBreaker::new(limited, endpoint.breaker.clone()))
    }
}
