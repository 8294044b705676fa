//! Client-side limits per provider endpoint, shared by every run in the
//! process: a semaphore for calls in flight, and token buckets for requests
//! per minute and tokens per minute. A call over a limit waits (async) for
//! capacity instead of failing, so many concurrent runs queue rather than
//! set off a storm of 429s; the wait is bounded by the call's own time-out.
//!
//! The buckets are a small reservation-based token bucket rather than the
//! `governor` crate: tokens per minute charges each call a different weight
//! (prompt estimate + output cap), and one call may weigh more than a bucket
//! holds, which `governor` refuses outright (`InsufficientCapacity`) where
//! this bucket lets the call go into debt and makes later calls wait it off;
//! the bucket also runs on [`tokio::time`], so tests can pause time, and
//! hands a reservation back when the wait would outlast the time-out.
//!
//! Each bucket holds one second's worth of its per-minute rate (at least
//! one unit), so traffic is spread evenly over the minute instead of being
//! sent in one burst at the start of it.

use async_trait::async_trait;
use rein_types::{Model, ModelError, ModelErrorKind, ModelRequest, ModelResponse, OnDelta};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The output cap assumed for the token estimate when a call sets none.
pub const DEFAULT_OUTPUT_ESTIMATE: u32 = 1024;

/// One endpoint's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimiterConfig {
    pub max_concurrency: Option<u32>,
    pub requests_per_minute: Option<u32>,
    pub tokens_per_minute: Option<u32>,
}

impl LimiterConfig {
    /// Whether any limit is set.
    pub fn is_limited(&self) -> bool {
        self.max_concurrency.is_some() || self.requests_per_minute.is_some() || self.tokens_per_minute.is_some()
    }
}

/// A token bucket refilled continuously at `per_minute / 60` a second.
#[derive(Debug)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    /// Tokens available (negative: owed by reservations) as of `at`.
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub fn per_minute(per_minute: u32) -> Self {
        let per_second = f64::from(per_minute.max(1)) / 60.0;
        let capacity = per_second.max(1.0);
        Self { capacity, per_second, state: Mutex::new((capacity, Instant::now())) }
    }

    /// Takes `amount` tokens, waiting until they are paid for; fails without
    /// taking any if that would be later than `deadline`.
    pub async fn acquire(&self, amount: f64, deadline: Instant) -> Result<(), Duration> {
        let wait = {
            let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let now = Instant::now();
            let (available, at) = *state;
            let available = (available + (now - at).as_secs_f64() * self.per_second).min(self.capacity);
            let after = available - amount;
            let wait = if after >= 0.0 { Duration::ZERO } else { Duration::from_secs_f64(-after / self.per_second) };
            if now + wait > deadline {
                *state = (available, now);
                return Err(wait);
            }
            *state = (after, now);
            wait
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }
}

/// The shared limits of one endpoint.
#[derive(Debug)]
pub struct Limiter {
    endpoint: String,
    config: LimiterConfig,
    concurrency: Option<Arc<Semaphore>>,
    requests: Option<TokenBucket>,
    tokens: Option<TokenBucket>,
}

impl Limiter {
    pub fn new(endpoint: impl Into<String>, config: LimiterConfig) -> Self {
        Self {
            endpoint: endpoint.into(),
            config,
            concurrency: config.max_concurrency.map(|n| Arc::new(Semaphore::new(n.max(1) as usize))),
            requests: config.requests_per_minute.map(TokenBucket::per_minute),
            tokens: config.tokens_per_minute.map(TokenBucket::per_minute),
        }
    }

    pub fn config(&self) -> LimiterConfig {
        self.config
    }

    /// Waits for room for one call weighing `tokens`, at most `timeout`.
    /// The permit returned holds the call's concurrency slot.
    pub async fn admit(&self, tokens: u64, timeout: Duration) -> Result<Option<OwnedSemaphorePermit>, ModelError> {
        let deadline = Instant::now() + timeout;
        if let Some(bucket) = &self.requests {
            bucket.acquire(1.0, deadline).await.map_err(|wait| self.exhausted("requests per minute", wait, timeout))?;
        }
        if let Some(bucket) = &self.tokens {
            bucket
                .acquire(tokens as f64, deadline)
                .await
                .map_err(|wait| self.exhausted("tokens per minute", wait, timeout))?;
        }
        match &self.concurrency {
            None => Ok(None),
            Some(semaphore) => match tokio::time::timeout_at(deadline, semaphore.clone().acquire_owned()).await {
                Ok(Ok(permit)) => Ok(Some(permit)),
                Ok(Err(_closed)) => Err(self.exhausted("concurrency", Duration::ZERO, timeout)),
                Err(_elapsed) => Err(self.exhausted("concurrency", timeout, timeout)),
            },
        }
    }

    /// The error of a call that found no capacity in time. `RateLimited`
    /// without an HTTP status: the breaker does not count it against the
    /// endpoint, and failover may try the next model.
    fn exhausted(&self, limit: &str, wait: Duration, timeout: Duration) -> ModelError {
        let mut error = ModelError::new(
            ModelErrorKind::RateLimited,
            format!(
                "rein's client-side {limit} limit for {} had no capacity within the call's time-out of {timeout:?}; lower the load or raise the limit in [providers]",
                self.endpoint
            ),
        );
        error.retry_after = Some(wait);
        error
    }
}

/// A request's weight for tokens per minute: prompt characters / 4, plus
/// the output cap.
pub fn estimate_tokens(request: &ModelRequest<'_>) -> u64 {
    let chars: usize = request.messages.iter().map(|m| m.text_len()).sum();
    (chars / 4) as u64 + u64::from(request.max_output_tokens.unwrap_or(DEFAULT_OUTPUT_ESTIMATE))
}

/// A [`Model`] behind a [`Limiter`]. `timeout` bounds the wait for capacity
/// (the model's own per-call time-out).
pub struct RateLimit {
    inner: Arc<dyn Model>,
    limiter: Arc<Limiter>,
    timeout: Duration,
}

impl RateLimit {
    pub fn new(inner: Arc<dyn Model>, limiter: Arc<Limiter>, timeout: Duration) -> Self {
        Self { inner, limiter, timeout }
    }
}

#[async_trait]
impl Model for RateLimit {
    fn id(&self) -> String {
        self.inner.id()
    }

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let _permit = self.limiter.admit(estimate_tokens(&request), self.timeout).await?;
        self.inner.complete(request).await
    }

    async fn complete_streaming(
        &self,
        request: ModelRequest<'_>,
        on_delta: OnDelta<'_>,
    ) -> Result<ModelResponse, ModelError> {
        let _permit = self.limiter.admit(estimate_tokens(&request), self.timeout).await?;
        self.inner.complete_streaming(request, on_delta).await
    }
}
