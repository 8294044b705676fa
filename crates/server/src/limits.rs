//! Per-tenant limits: a request rate (a token bucket per tenant, in this
//! process) and a cap on runs running at once (counted in the store, so it
//! holds across every server and worker sharing it). Over either, the API
//! answers 429 with `Retry-After`.
//!
//! The bucket is written here rather than taken from `governor`: each
//! tenant's quota can change at run time (`rein tenants set`), and a bucket
//! that a changed quota simply replaces is a dozen lines.

use crate::AppState;
use crate::error::ApiError;
use axum::http::StatusCode;
use rein::{TenantId, TenantLimits};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

/// How long tenants' own limits are used before they are read again.
const REFRESH: Duration = Duration::from_secs(5);

/// How long a caller over the concurrency cap is told to wait.
const RUNS_RETRY_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Bucket {
    limits: (u32, u32),
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// Takes one token, or says how long until one is there.
    fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let (per_second, burst) = self.limits;
        let per_second = f64::from(per_second);
        self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * per_second).min(f64::from(burst));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / per_second))
        }
    }
}

pub struct TenantLimiter {
    defaults: TenantLimits,
    /// Tenants' own limits, and when they were read; `None` until first
    /// read.
    own: RwLock<Option<(Instant, HashMap<TenantId, TenantLimits>)>>,
    /// Held by the one request that reads the limits again, so that the
    /// others go on with the limits read before instead of queueing
    /// behind a store read.
    refreshing: tokio::sync::Mutex<()>,
    buckets: Mutex<HashMap<TenantId, Bucket>>,
}

impl TenantLimiter {
    /// `defaults` apply where a tenant has no limit of its own; 0 or `None`
    /// is no limit.
    pub fn new(defaults: TenantLimits) -> Self {
        Self {
            defaults,
            own: RwLock::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether tenants' own limits were read within [`REFRESH`]; `None`
    /// before the first read.
    fn fresh(&self) -> Option<bool> {
        let own = self.own.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        own.as_ref().map(|(at, _)| at.elapsed() <= REFRESH)
    }

    async fn reload(&self, state: &AppState) -> Result<(), ApiError> {
        let stored = state.operator.store().tenant_limits().await?;
        let mut own = self.own.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *own = Some((Instant::now(), stored.into_iter().collect()));
        Ok(())
    }

    /// `tenant`'s limits: its own where set, the defaults elsewhere.
    async fn limits_of(&self, state: &AppState, tenant: &TenantId) -> Result<TenantLimits, ApiError> {
        match self.fresh() {
            Some(true) => {}
            // Stale: one request reads them again; the rest use what was read.
            Some(false) => {
                if let Ok(_refreshing) = self.refreshing.try_lock() {
                    self.reload(state).await?;
                }
            }
            // Never read: every request waits for the first read.
            None => {
                let _refreshing = self.refreshing.lock().await;
                if self.fresh().is_none() {
                    self.reload(state).await?;
                }
            }
        }
        let own = self.own.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        let set = own.as_ref().and_then(|(_, limits)| limits.get(tenant).copied()).unwrap_or_default();
        Ok(TenantLimits {
            requests_per_second: set.requests_per_second.or(self.defaults.requests_per_second),
            burst: set.burst.or(self.defaults.burst),
            max_concurrent_runs: set.max_concurrent_runs.or(self.defaults.max_concurrent_runs),
        })
    }

    /// Counts one request of `tenant` against its rate.
    pub async fn admit_request(&self, state: &AppState, tenant: &TenantId) -> Result<(), ApiError> {
        let limits = self.limits_of(state, tenant).await?;
        let Some(per_second) = limits.requests_per_second.filter(|&n| n > 0) else { return Ok(()) };
        let burst = limits.burst.filter(|&n| n > 0).unwrap_or(per_second);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let bucket = buckets.entry(tenant.clone()).or_insert_with(|| Bucket {
            limits: (per_second, burst),
            tokens: f64::from(burst),
            at: now,
        });
        if bucket.limits != (per_second, burst) {
            *bucket = Bucket { limits: (per_second, burst), tokens: f64::from(burst), at: now };
        }
        bucket.take(now).map_err(|wait| {
            too_many(
                "rate_limited",
                format!("tenant {tenant} is over its {per_second} requests per second (burst {burst})"),
                wait,
            )
        })
    }

    /// Refuses a new run of `tenant` while its cap on runs at once is
    /// reached: its runs queued or being driven, counted in the store's run
    /// queue, so runs anywhere count. Two admissions racing past the last
    /// slot can overshoot the cap by one each.
    pub async fn admit_run(&self, state: &AppState, tenant: &TenantId) -> Result<(), ApiError> {
        let limits = self.limits_of(state, tenant).await?;
        let Some(cap) = limits.max_concurrent_runs.filter(|&n| n > 0) else { return Ok(()) };
        let live = state.operator.store().live_runs(tenant).await?;
        if live >= u64::from(cap) {
            return Err(too_many(
                "too_many_runs",
                format!("tenant {tenant} has {live} runs queued or running, its cap; retry when one finishes"),
                RUNS_RETRY_AFTER,
            ));
        }
        Ok(())
    }
}

fn too_many(code: &'static str, message: String, wait: Duration) -> ApiError {
    // Whole seconds, rounded up: `Retry-After: 0` would invite a retry storm.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, code, message).with_retry_after(seconds.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let start = Instant::now();
        let mut bucket = Bucket { limits: (2, 3), tokens: 3.0, at: start };
        for _ in 0..3 {
            assert!(bucket.take(start).is_ok());
        }
        let wait = bucket.take(start).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 1e-6, "one token every half second, got {wait:?}");
        assert!(bucket.take(start + Duration::from_millis(500)).is_ok());
        assert!(bucket.take(start + Duration::from_millis(500)).is_err());
        // Idle time refills no more than the burst.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(bucket.take(later).is_err());
    }
}
