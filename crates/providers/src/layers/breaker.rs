//! A circuit breaker per provider endpoint. After `failure_threshold`
//! consecutive retryable failures (rate limits, 5xx, time-outs, broken
//! connections — counted after the provider's own retries) the breaker opens
//! and calls fail fast, without touching the network, for `cool_down`. Then
//! it is half-open: one probe call goes through; its success closes the
//! breaker, its failure opens it again for another cool-down.
//!
//! Time is [`tokio::time::Instant`], so tests drive it with paused time.
//! Rejections from rein's own rate limiter (a `RateLimited` error without an
//! HTTP status) say nothing about the provider and are not counted.

use async_trait::async_trait;
use rein_types::{Model, ModelError, ModelErrorKind, ModelRequest, ModelResponse, OnDelta};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// When a breaker opens and how long it stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive retryable failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker fails fast before letting one probe through.
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 5, cool_down: Duration::from_secs(30) }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through; `failures` consecutive retryable failures so far.
    Closed { failures: u32 },
    /// Calls fail fast until `until`.
    Open { until: Instant, kind: ModelErrorKind },
    /// One probe is in flight; other calls fail fast until it ends.
    HalfOpen,
}

/// The shared state of one endpoint's breaker. Cheap to share: every model
/// on the endpoint holds the same `Arc<Breaker>`.
#[derive(Debug)]
pub struct Breaker {
    endpoint: String,
    config: BreakerConfig,
    state: Mutex<BreakerState>,
}

/// What [`Breaker::admit`] decided.
enum Admission {
    Call,
    Probe,
}

impl Breaker {
    pub fn new(endpoint: impl Into<String>, config: BreakerConfig) -> Self {
        Self { endpoint: endpoint.into(), config, state: Mutex::new(BreakerState::Closed { failures: 0 }) }
    }

    /// The breaker's state now.
    pub fn state(&self) -> BreakerState {
        *self.lock()
    }

    pub fn config(&self) -> BreakerConfig {
        self.config
    }

    fn lock(&self) -> MutexGuard<'_, BreakerState> {
        // The state is a plain value, always consistent: a poisoned lock is
        // still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn admit(&self) -> Result<Admission, ModelError> {
        let mut state = self.lock();
        match *state {
            BreakerState::Closed { .. } => Ok(Admission::Call),
            BreakerState::Open { until, .. } if Instant::now() >= until => {
                *state = BreakerState::HalfOpen;
                Ok(Admission::Probe)
            }
            BreakerState::Open { until, kind } => Err(self.open_error(kind, until - Instant::now())),
            BreakerState::HalfOpen => Err(self.open_error(ModelErrorKind::ServerError, Duration::ZERO)),
        }
    }

    fn open_error(&self, kind: ModelErrorKind, remaining: Duration) -> ModelError {
        let until = httpdate::fmt_http_date(SystemTime::now() + remaining);
        let message = if remaining.is_zero() {
            format!(
                "circuit breaker for {} is half-open: a probe call is in flight; failing fast until it ends",
                self.endpoint
            )
        } else {
            format!(
                "circuit breaker for {} is open after {} consecutive failures; failing fast until {until} (in {:.0?})",
                self.endpoint, self.config.failure_threshold, remaining
            )
        };
        let mut error = ModelError::new(kind, message);
        error.retry_after = Some(remaining);
        error
    }

    fn record(&self, probe: bool, result: &Result<ModelResponse, ModelError>) {
        let mut state = self.lock();
        match result {
            Ok(_) => {
                if probe || !matches!(*state, BreakerState::Closed { failures: 0 }) {
                    if probe {
                        tracing::info!(endpoint = %self.endpoint, "circuit breaker closed: the probe call succeeded");
                    }
                    *state = BreakerState::Closed { failures: 0 };
                }
            }
            Err(error) if counts(error) => {
                let failures = match *state {
                    BreakerState::Closed { failures } => failures + 1,
                    _ => self.config.failure_threshold,
                };
                if probe || failures >= self.config.failure_threshold {
                    let until = Instant::now() + self.config.cool_down;
                    tracing::warn!(
                        endpoint = %self.endpoint,
                        failures,
                        cool_down = ?self.config.cool_down,
                        error = %error,
                        "circuit breaker opened"
                    );
                    *state = BreakerState::Open { until, kind: error.kind };
                } else {
                    *state = BreakerState::Closed { failures };
                }
            }
            // A non-retryable error (bad request, auth...) is an answer: the
            // endpoint is up. A probe that ends so closes the breaker.
            Err(_) => {
                if probe {
                    *state = BreakerState::Closed { failures: 0 };
                }
            }
        }
    }
}

/// Whether `error` counts as a failure of the endpoint.
fn counts(error: &ModelError) -> bool {
    error.is_retryable() && !(error.kind == ModelErrorKind::RateLimited && error.status.is_none())
}

/// Puts the endpoint back to a probeable state if a probe is dropped before
/// it ends (the run was cancelled), so the breaker never stays half-open.
struct ProbeGuard<'a> {
    breaker: &'a Breaker,
    done: bool,
}

impl Drop for ProbeGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            let mut state = self.breaker.lock();
            if *state == BreakerState::HalfOpen {
                *state = BreakerState::Open { until: Instant::now(), kind: ModelErrorKind::ServerError };
            }
        }
    }
}

/// A [`Model`] behind a [`Breaker`].
pub struct CircuitBreaker {
    inner: Arc<dyn Model>,
    breaker: Arc<Breaker>,
}

impl CircuitBreaker {
    pub fn new(inner: Arc<dyn Model>, breaker: Arc<Breaker>) -> Self {
        Self { inner, breaker }
    }

    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }
}

#[async_trait]
impl Model for CircuitBreaker {
    fn id(&self) -> String {
        self.inner.id()
    }

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let probe = matches!(self.breaker.admit()?, Admission::Probe);
        let mut guard = ProbeGuard { breaker: &self.breaker, done: !probe };
        let result = self.inner.complete(request).await;
        guard.done = true;
        self.breaker.record(probe, &result);
        result
    }

    async fn complete_streaming(
        &self,
        request: ModelRequest<'_>,
        on_delta: OnDelta<'_>,
    ) -> Result<ModelResponse, ModelError> {
        let probe = matches!(self.breaker.admit()?, Admission::Probe);
        let mut guard = ProbeGuard { breaker: &self.breaker, done: !probe };
        let result = self.inner.complete_streaming(request, on_delta).await;
        guard.done = true;
        self.breaker.record(probe, &result);
        result
    }
}
