//! When and how long to wait before trying a failed model call again:
//! exponential backoff with full jitter, and the provider's own `Retry-After`
//! (seconds, HTTP-date, or OpenAI's `retry-after-ms`), bounded so that a
//! provider can never park a run indefinitely.

use rein_types::{ModelError, ModelErrorKind, ModelResponse};
use reqwest::Request;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

/// How a provider retries calls that failed with 429, 5xx, a time-out or a
/// broken connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryConfig {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// Upper bound of the first backoff; each retry doubles it.
    pub base_backoff: Duration,
    /// Upper bound of any single backoff.
    pub max_backoff: Duration,
    /// The longest `Retry-After` that is honoured. A provider asking for more
    /// fails the call instead: a run should report the rate limit, not stall.
    pub max_retry_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_retries: 2,
            base_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

impl RetryConfig {
    /// The wait before retry number `retry` (0 for the first retry): a uniform
    /// draw from zero to `min(max_backoff, base_backoff * 2^retry)`. Full
    /// jitter spreads out clients that failed together, so they do not all
    /// come back at the same instant.
    pub fn backoff(&self, retry: u32) -> Duration {
        let base = u64::try_from(self.base_backoff.as_nanos()).unwrap_or(u64::MAX);
        let cap = u64::try_from(self.max_backoff.as_nanos()).unwrap_or(u64::MAX);
        let ceiling = base.saturating_mul(1u64.checked_shl(retry).unwrap_or(u64::MAX)).min(cap);
        Duration::from_nanos(fastrand::u64(0..=ceiling))
    }
}

impl RetryConfig {
    /// How long to wait before retry number `retries` of a call that failed
    /// with `error`: the provider's `Retry-After` when it gave one, else the
    /// backoff. `None` when the provider asks for longer than
    /// `max_retry_after`; the error then says so, and the call gives up.
    pub(crate) fn wait_before_retry(&self, retries: u32, error: &mut ModelError) -> Option<Duration> {
        match error.retry_after {
            Some(asked) if asked > self.max_retry_after => {
                error.message.push_str(&format!(
                    " (the provider asked to wait {asked:?} before retrying, longer than the {:?} rein waits)",
                    self.max_retry_after
                ));
                None
            }
            Some(asked) => Some(asked),
            None => Some(self.backoff(retries)),
        }
    }
}

/// One failed attempt of a model call, and whether another could succeed.
pub(crate) struct Failure {
    pub error: ModelError,
    pub retryable: bool,
}

impl Failure {
    /// A failure that is retryable exactly when its kind is.
    pub fn of(error: ModelError) -> Self {
        Self { retryable: error.is_retryable(), error }
    }

    /// A failure no retry can mend.
    pub fn fatal(error: ModelError) -> Self {
        Self { error, retryable: false }
    }
}

/// The retry loop every provider runs, streaming or not: sends `template`
/// through `attempt` until it succeeds, fails for good, or `config` says
/// stop. Each retry sends a copy of the template (whose body shares the same
/// bytes); the last attempt sends the template itself.
pub(crate) async fn call_with_retries<F, Fut>(
    config: &RetryConfig,
    id: &str,
    template: Request,
    mut attempt: F,
) -> Result<ModelResponse, ModelError>
where
    F: FnMut(Request) -> Fut,
    Fut: Future<Output = Result<ModelResponse, Failure>>,
{
    let started = Instant::now();
    let mut template = Some(template);
    let mut retries = 0u32;
    loop {
        let copy = if retries < config.max_retries { template.as_ref().and_then(Request::try_clone) } else { None };
        let (request, last) = match copy {
            Some(copy) => (copy, false),
            None => match template.take() {
                Some(template) => (template, true),
                // Unreachable: the template is sent only by the last attempt.
                None => {
                    return Err(ModelError::new(
                        ModelErrorKind::BadRequest,
                        format!("could not prepare the request for {id}"),
                    ));
                }
            },
        };
        let failure = match attempt(request).await {
            Ok(response) => {
                tracing::trace!(
                    model = %id,
                    attempts = retries + 1,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    input_tokens = response.usage.input_tokens,
                    cached_input_tokens = response.usage.cached_input_tokens,
                    output_tokens = response.usage.output_tokens,
                    "model call finished"
                );
                return Ok(response);
            }
            Err(failure) => failure,
        };
        let mut error = failure.error;
        if !failure.retryable || last {
            if failure.retryable && retries > 0 {
                error.message.push_str(&format!(" (gave up after {} attempts)", retries + 1));
            }
            return Err(error);
        }
        let Some(wait) = config.wait_before_retry(retries, &mut error) else {
            return Err(error);
        };
        tracing::debug!(
            model = %id,
            attempt = retries + 1,
            wait_ms = wait.as_millis() as u64,
            error = %error.message,
            "model call failed; retrying"
        );
        tokio::time::sleep(wait).await;
        retries += 1;
    }
}

/// How long the response asks the client to wait, if it says.
///
/// `retry-after-ms` (sent by OpenAI, honoured by its SDKs) is preferred over
/// `Retry-After` because it is more precise. A date in the past means "now".
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(parse_seconds) {
        return Some(ms / 1000);
    }
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?;
    parse_retry_after(text, SystemTime::now())
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date, relative to
/// `now`.
pub(crate) fn parse_retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    let text = text.trim();
    if let Some(delay) = parse_seconds(text) {
        return Some(delay);
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whole or (non-standard, but some gateways send it) fractional seconds.
fn parse_seconds(text: &str) -> Option<Duration> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let secs = text.parse::<f64>().ok()?;
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_stays_within_the_doubling_ceiling_and_the_cap() {
        let config = RetryConfig {
            max_retries: 10,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            max_retry_after: Duration::from_secs(1),
        };
        for _ in 0..200 {
            assert!(config.backoff(0) <= Duration::from_millis(100));
            assert!(config.backoff(2) <= Duration::from_millis(400));
            assert!(config.backoff(9) <= Duration::from_millis(1000));
            assert!(config.backoff(200) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5", now), Some(Duration::from_millis(1500)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(parse_retry_after(&later, now), Some(Duration::from_secs(30)));
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-3", now), None);
    }

    #[test]
    fn retry_after_ms_wins_over_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("5"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(5)));
        headers.insert("retry-after-ms", HeaderValue::from_static("250"));
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(250)));
    }
}
