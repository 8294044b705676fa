//! [`Gemini`]: rein's [`Model`] over Google's Gemini API
//! (`POST {base_url}/v1beta/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse` when streaming, read by [`stream`]).
//! The key travels in the `x-goog-api-key` header, never in the URL, so it
//! cannot end up in a proxy log or an error message that quotes the address.
//!
//! This module owns the HTTP call, its retries and the translation of
//! Gemini's failures into typed [`ModelError`]s: its status names
//! (`INVALID_ARGUMENT`, `PERMISSION_DENIED`, `RESOURCE_EXHAUSTED`, …), a
//! prompt blocked by the safety filters (a 200 without candidates), and the
//! `RetryInfo` delay of a 429. Secret scrubbing, the response-size cap and
//! the backoff policy are the ones [`crate::OpenAiCompatible`] uses.

mod schema;
mod stream;
mod wire;

use crate::error::ProviderError;
use crate::openai::{MAX_RESPONSE_BYTES, default_client, error_chain, read_body, scrub, secret_list};
use crate::retry::{self, Failure, RetryConfig};
use crate::sse::{self, Deltas, SseError};
use async_trait::async_trait;
use rein_types::{Model, ModelError, ModelErrorKind, ModelRequest, ModelResponse, OnDelta};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Request, Url};
use std::fmt;
use std::ops::ControlFlow;
use std::time::Duration;
use wire::{Decoded, ErrorBody};

/// Everything a [`Gemini`] needs. Build one with [`GeminiConfig::new`] or as
/// a literal; the fields mirror [`crate::OpenAiConfig`].
#[derive(Clone)]
pub struct GeminiConfig {
    /// The provider's name (`gemini`), for ids and messages.
    pub provider: String,
    /// Model name (`gemini-2.5-flash`) used when a request leaves
    /// [`ModelRequest::model`] empty. A `models/` prefix is accepted.
    pub model: String,
    /// API root, [`GeminiConfig::DEFAULT_BASE_URL`] unless a gateway stands
    /// in between; `/v1beta/models/{model}:generateContent` is appended (a
    /// base URL already ending in `/v1beta` is accepted too).
    pub base_url: String,
    /// Sent as `x-goog-api-key`; never logged or shown. Required.
    pub api_key: Option<String>,
    /// Where the key came from, so an authentication failure can say which
    /// variable to check.
    pub api_key_env: Option<String>,
    /// Extra headers, already expanded; each value is scrubbed from error
    /// messages.
    pub headers: Vec<(String, String)>,
    /// Further values to scrub from error messages.
    pub secrets: Vec<String>,
    /// Time-out of each attempt, from sending the request to the end of the
    /// response body.
    pub timeout: Duration,
    pub retry: RetryConfig,
}

impl GeminiConfig {
    /// Google's public endpoint.
    pub const DEFAULT_BASE_URL: &'static str = "https://generativelanguage.googleapis.com";

    /// The environment variable the key is read from by default.
    pub const API_KEY_ENV: &'static str = "GEMINI_API_KEY";

    /// A configuration for `model` on Google's endpoint with `api_key`, a
    /// 60 s time-out and the default retry policy.
    pub fn new(model: impl Into<String>, api_key: impl Into<String>) -> Self {
        Self {
            provider: "gemini".to_owned(),
            model: model.into(),
            base_url: Self::DEFAULT_BASE_URL.to_owned(),
            api_key: Some(api_key.into()),
            api_key_env: None,
            headers: Vec::new(),
            secrets: Vec::new(),
            timeout: Duration::from_secs(60),
            retry: RetryConfig::default(),
        }
    }
}

impl fmt::Debug for GeminiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeminiConfig")
            .field("provider", &self.provider)
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("headers", &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("secrets", &format_args!("<{} redacted>", self.secrets.len()))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish()
    }
}

/// A model served by the Gemini API.
pub struct Gemini {
    /// `provider:model`, built once because [`Model::id`] is called per step.
    id: String,
    provider: String,
    model: String,
    /// The API root, validated, without a trailing slash or `/v1beta`.
    base: Url,
    client: Client,
    headers: HeaderMap,
    /// The key, header values and declared secrets, longest first.
    secrets: Vec<String>,
    api_key_env: Option<String>,
    timeout: Duration,
    retry: RetryConfig,
}

impl fmt::Debug for Gemini {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gemini")
            .field("id", &self.id)
            .field("base_url", &self.base.as_str())
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl Gemini {
    /// Prepares the base URL and headers. Pass `client` to share one
    /// connection pool between providers; `None` creates one. Fails without
    /// a key: every Gemini call needs one.
    pub fn new(config: GeminiConfig, client: Option<Client>) -> Result<Self, ProviderError> {
        let base = base_url(&config.base_url)?;
        let key_var = || config.api_key_env.clone().unwrap_or_else(|| GeminiConfig::API_KEY_ENV.to_owned());
        let Some(api_key) = config.api_key.as_ref().filter(|key| !key.is_empty()) else {
            return Err(ProviderError::MissingKey { var: key_var() });
        };
        let mut headers = HeaderMap::with_capacity(4 + config.headers.len());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(concat!("rein/", env!("CARGO_PKG_VERSION"))));
        let mut key_value = HeaderValue::from_str(api_key).map_err(|_| ProviderError::InvalidKey { var: key_var() })?;
        key_value.set_sensitive(true);
        headers.insert(HeaderName::from_static("x-goog-api-key"), key_value);
        for (name, value) in &config.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| ProviderError::InvalidHeader { header: name.clone(), reason: e.to_string() })?;
            let mut header_value = HeaderValue::from_str(value).map_err(|_| ProviderError::InvalidHeader {
                header: name.clone(),
                reason: "the value contains characters HTTP headers cannot carry".to_owned(),
            })?;
            header_value.set_sensitive(true);
            headers.insert(header_name, header_value);
        }
        let secrets = secret_list(
            config.api_key.iter().chain(config.headers.iter().map(|(_, value)| value)).chain(&config.secrets),
        );
        let client = match client {
            Some(client) => client,
            None => default_client()?,
        };
        Ok(Self {
            id: format!("{}:{}", config.provider, config.model),
            provider: config.provider,
            model: config.model,
            base,
            client,
            headers,
            secrets,
            api_key_env: config.api_key_env,
            timeout: config.timeout,
            retry: config.retry,
        })
    }

    /// The URL a call to `model` is sent to. It never holds the key.
    pub fn endpoint(&self, model: &str) -> String {
        self.url(model, false).to_string()
    }

    /// `…/models/{model}:generateContent`, or with `stream`
    /// `…:streamGenerateContent?alt=sse`.
    fn url(&self, model: &str, stream: bool) -> Url {
        let model = model.strip_prefix("models/").unwrap_or(model);
        let method = if stream { "streamGenerateContent" } else { "generateContent" };
        let mut url = self.base.clone();
        if let Ok(mut segments) = url.path_segments_mut() {
            // Pushed as one segment, so a `/` in a name cannot change the path.
            segments.pop_if_empty().extend(["v1beta", "models", &format!("{model}:{method}")]);
        }
        if stream {
            url.set_query(Some("alt=sse"));
        }
        url
    }

    /// The request for `model`, the same for both modes but for `stream`.
    fn build_request(
        &self,
        model: &str,
        request: &ModelRequest<'_>,
        stream: bool,
    ) -> Result<(Request, Url), ModelError> {
        let url = self.url(model, stream);
        let body = wire::encode(request).map_err(|e| {
            ModelError::new(ModelErrorKind::BadRequest, format!("could not encode the request for {}: {e}", self.id))
        })?;
        let mut headers = self.headers.clone();
        if stream {
            headers.insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        }
        let request = self
            .client
            .post(url.clone())
            .headers(headers)
            .timeout(self.timeout)
            .body(body)
            .build()
            .map_err(|e| self.transport_error(&e, &url, model))?;
        Ok((request, url))
    }

    /// Sends a request; a success status returns the response unread, any
    /// other status is read and classified. Shared by both modes.
    async fn send(&self, request: Request, url: &Url, model: &str) -> Result<reqwest::Response, Failure> {
        let mut response =
            self.client.execute(request).await.map_err(|e| Failure::of(self.transport_error(&e, url, model)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let header_delay = retry::retry_after(response.headers());
        let body = self.read_capped(&mut response, url, model).await?;
        let info = ErrorBody::parse(&body);
        let retry_after = header_delay.or(info.retry_delay);
        Err(self.classify(status, &info, retry_after, url, model))
    }

    /// The whole body, up to [`MAX_RESPONSE_BYTES`].
    async fn read_capped(&self, response: &mut reqwest::Response, url: &Url, model: &str) -> Result<Vec<u8>, Failure> {
        let status = response.status().as_u16();
        read_body(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| Failure::of(self.transport_error(&e, url, model)))?
            .ok_or_else(|| Failure::fatal(self.too_large(status)))
    }

    fn too_large(&self, status: u16) -> ModelError {
        ModelError {
            kind: ModelErrorKind::InvalidResponse,
            message: format!(
                "{} answered HTTP {status} with a body over {} MiB, which rein does not read",
                self.provider,
                MAX_RESPONSE_BYTES / (1024 * 1024)
            ),
            status: Some(status),
            retry_after: None,
        }
    }

    /// One non-streaming exchange.
    async fn attempt(&self, request: Request, url: &Url, model: &str) -> Result<ModelResponse, Failure> {
        let response = self.send(request, url, model).await?;
        self.read_whole(response, url, model).await
    }

    /// Reads and decodes a whole 2xx body.
    async fn read_whole(
        &self,
        mut response: reqwest::Response,
        url: &Url,
        model: &str,
    ) -> Result<ModelResponse, Failure> {
        let status = response.status().as_u16();
        let body = self.read_capped(&mut response, url, model).await?;
        self.interpret(status, &body, model)
    }

    /// What a 2xx body (or the body a stream was reassembled into) means.
    fn interpret(&self, status: u16, body: &[u8], model: &str) -> Result<ModelResponse, Failure> {
        match wire::decode(body) {
            Ok(Decoded::Response(response)) => Ok(response),
            Ok(Decoded::Blocked { reason, categories }) => {
                let rated = if categories.is_empty() {
                    "no safety category was rated high".to_owned()
                } else {
                    format!("safety categories rated high: {}", categories.join(", "))
                };
                Err(Failure::fatal(ModelError {
                    kind: ModelErrorKind::BadRequest,
                    message: format!(
                        "{} blocked the prompt for model `{model}` (block reason {reason}; {rated}); rephrase the input or the system prompt",
                        self.provider
                    ),
                    status: Some(status),
                    retry_after: None,
                }))
            }
            Ok(Decoded::NoCandidates) => {
                Err(Failure::fatal(self.invalid_response(status, "the response has no candidates", body)))
            }
            Err(e) => Err(Failure::fatal(self.invalid_response(
                status,
                &format!("the body is not a generateContent response ({e})"),
                body,
            ))),
        }
    }

    /// One streaming exchange. A plain JSON answer (a gateway that does not
    /// stream) is read as a whole answer.
    async fn attempt_streaming(
        &self,
        request: Request,
        url: &Url,
        model: &str,
        deltas: &Deltas<'_>,
    ) -> Result<ModelResponse, Failure> {
        let mut response = self.send(request, url, model).await?;
        if !sse::is_event_stream(&response) {
            let answer = self.read_whole(response, url, model).await?;
            deltas.send_whole(&answer);
            return Ok(answer);
        }
        let status = response.status().as_u16();
        let mut assembler = stream::Assembler::default();
        let read = sse::read_events(&mut response, MAX_RESPONSE_BYTES, |event| {
            assembler.push(&event.data, deltas).map(|()| ControlFlow::Continue(()))
        })
        .await;
        match read {
            Ok(_) if assembler.is_complete() => self.interpret(status, &assembler.into_body(), model),
            Ok(_) => Err(Failure::of(ModelError {
                kind: ModelErrorKind::Transport,
                message: format!(
                    "{} ended the stream before the answer was complete (model `{model}`, no finishReason)",
                    self.provider
                ),
                status: Some(status),
                retry_after: None,
            })),
            Err(SseError::Read(e)) => Err(Failure::of(self.transport_error(&e, url, model))),
            Err(SseError::TooLarge) => Err(Failure::fatal(self.too_large(status))),
            Err(SseError::Handler(stream::Stop::Blocked(data))) => self.interpret(status, data.as_bytes(), model),
            Err(SseError::Handler(stream::Stop::Error(data))) => {
                // An error in the stream: classified by the HTTP code it names
                // (a server error when it names none), like an error status.
                let info = ErrorBody::parse(data.as_bytes());
                let code = serde_json::from_str::<serde_json::Value>(&data)
                    .ok()
                    .and_then(|v| v.pointer("/error/code").and_then(serde_json::Value::as_u64))
                    .and_then(|code| u16::try_from(code).ok())
                    .filter(|code| (400..=599).contains(code))
                    .unwrap_or(500);
                let retry_after = info.retry_delay;
                Err(self.classify(code, &info, retry_after, url, model))
            }
            Err(SseError::Handler(stream::Stop::NotAChunk(e, data))) => Err(Failure::fatal(self.invalid_response(
                status,
                &format!("a stream event is not a GenerateContentResponse ({e})"),
                data.as_bytes(),
            ))),
        }
    }

    /// Turns an HTTP error status and Gemini's error body into a typed error
    /// that quotes Gemini, with every secret scrubbed.
    fn classify(
        &self,
        status: u16,
        info: &ErrorBody,
        retry_after: Option<Duration>,
        url: &Url,
        model: &str,
    ) -> Failure {
        let provider = &self.provider;
        let detail = scrub(&self.secrets, info.describe());
        let gstatus = info.status.as_deref().unwrap_or_default();
        let auth = || {
            let hint = match &self.api_key_env {
                Some(var) => format!("the key comes from {var}; check that it is valid and may use model `{model}`"),
                None => format!("check that the key is valid and may use model `{model}`"),
            };
            (
                ModelErrorKind::Auth,
                format!("{provider} refused the credentials (HTTP {status}): {detail}; {hint}"),
                false,
            )
        };
        let (kind, message, retryable) = match status {
            401 | 403 => auth(),
            400 if gstatus == "UNAUTHENTICATED" || gstatus == "PERMISSION_DENIED" || info.says_bad_key() => auth(),
            404 => (
                ModelErrorKind::UnknownModel,
                format!(
                    "{provider} does not know model `{model}` (HTTP 404): {detail}; check the model name against the Gemini model list"
                ),
                false,
            ),
            408 => (ModelErrorKind::Timeout, format!("{provider} timed out the request (HTTP 408): {detail}"), true),
            429 => (
                ModelErrorKind::RateLimited,
                format!("{provider} is rate-limiting requests (HTTP 429): {detail}"),
                true,
            ),
            400..=499 if info.says_context_too_long() => (
                ModelErrorKind::ContextTooLong,
                format!("the prompt does not fit the context window of `{model}` (HTTP {status}): {detail}"),
                false,
            ),
            400..=499 => (
                ModelErrorKind::BadRequest,
                format!("{provider} rejected the request for `{model}` (HTTP {status}): {detail}"),
                false,
            ),
            500..=599 => (ModelErrorKind::ServerError, format!("{provider} failed (HTTP {status}): {detail}"), true),
            300..=399 => (
                ModelErrorKind::InvalidResponse,
                format!(
                    "{provider} redirected the request to {url} (HTTP {status}): {detail}; redirects are not followed, so that credentials are never sent to another address: set base_url to the address the provider redirects to"
                ),
                false,
            ),
            _ => (
                ModelErrorKind::InvalidResponse,
                format!("{provider} answered with unexpected HTTP status {status}: {detail}"),
                false,
            ),
        };
        Failure { error: ModelError { kind, message, status: Some(status), retry_after }, retryable }
    }

    fn transport_error(&self, error: &reqwest::Error, url: &Url, model: &str) -> ModelError {
        let provider = &self.provider;
        let cause = scrub(&self.secrets, error_chain(error));
        if error.is_timeout() {
            ModelError::new(
                ModelErrorKind::Timeout,
                format!("{provider} did not answer within {:?} (model `{model}`)", self.timeout),
            )
        } else if error.is_connect() {
            ModelError::new(ModelErrorKind::Transport, format!("could not connect to {provider} at {url}: {cause}"))
        } else {
            ModelError::new(ModelErrorKind::Transport, format!("the connection to {provider} at {url} failed: {cause}"))
        }
    }

    fn invalid_response(&self, status: u16, what: &str, body: &[u8]) -> ModelError {
        let body = crate::openai::snippet(body).map_or_else(|| "(empty body)".to_owned(), |s| scrub(&self.secrets, s));
        ModelError {
            kind: ModelErrorKind::InvalidResponse,
            message: format!("{} answered HTTP {status} but {what}: {body}", self.provider),
            status: Some(status),
            retry_after: None,
        }
    }
}

#[async_trait]
impl Model for Gemini {
    fn id(&self) -> String {
        self.id.clone()
    }

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let model = if request.model.is_empty() { self.model.as_str() } else { request.model };
        let (template, url) = self.build_request(model, &request, false)?;
        retry::call_with_retries(&self.retry, &self.id, template, |copy| self.attempt(copy, &url, model)).await
    }

    async fn complete_streaming(
        &self,
        request: ModelRequest<'_>,
        on_delta: OnDelta<'_>,
    ) -> Result<ModelResponse, ModelError> {
        let model = if request.model.is_empty() { self.model.as_str() } else { request.model };
        let (template, url) = self.build_request(model, &request, true)?;
        let deltas = Deltas::new(on_delta);
        retry::call_with_retries(&self.retry, &self.id, template, |copy| {
            let (deltas, url) = (&deltas, &url);
            async move { sse::no_retry_after_deltas(self.attempt_streaming(copy, url, model, deltas).await, deltas) }
        })
        .await
    }
}

/// The validated API root: http(s), no credentials, no trailing slash and no
/// `/v1beta` (which [`Gemini::url`] adds).
fn base_url(base_url: &str) -> Result<Url, ProviderError> {
    let invalid = |reason: String| ProviderError::InvalidBaseUrl { url: base_url.to_owned(), reason };
    let trimmed = base_url.trim().trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/v1beta").unwrap_or(trimmed);
    let url = Url::parse(trimmed).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme must be http or https, not `{}`", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("put credentials in api_key_env or headers, not in the URL".to_owned()));
    }
    if url.query().is_some() {
        return Err(invalid("the key travels in the x-goog-api-key header; remove the query string".to_owned()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(base: &str) -> Gemini {
        let mut config = GeminiConfig::new("gemini-2.5-flash", "AIza-secret-key");
        config.base_url = base.to_owned();
        Gemini::new(config, None).unwrap()
    }

    #[test]
    fn endpoints_are_built_without_the_key() {
        for base in [
            "https://generativelanguage.googleapis.com",
            "https://generativelanguage.googleapis.com/",
            "https://generativelanguage.googleapis.com/v1beta",
            " https://generativelanguage.googleapis.com/v1beta/ ",
        ] {
            assert_eq!(
                model(base).endpoint("gemini-2.5-flash"),
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
                "{base}"
            );
        }
        let gateway = model("http://127.0.0.1:9/proxy/google");
        assert_eq!(gateway.endpoint("models/m"), "http://127.0.0.1:9/proxy/google/v1beta/models/m:generateContent");
        assert!(!gateway.endpoint("m").contains("secret"));
        assert!(matches!(base_url("ftp://h"), Err(ProviderError::InvalidBaseUrl { .. })));
        assert!(matches!(base_url("http://u:p@h"), Err(ProviderError::InvalidBaseUrl { .. })));
        assert!(matches!(base_url("http://h/?key=x"), Err(ProviderError::InvalidBaseUrl { .. })));
    }

    #[test]
    fn a_key_is_required_and_never_shown() {
        let mut config = GeminiConfig::new("m", "");
        config.api_key_env = Some("GEMINI_API_KEY".into());
        assert_eq!(Gemini::new(config, None).unwrap_err(), ProviderError::MissingKey { var: "GEMINI_API_KEY".into() });
        let config = GeminiConfig::new("m", "AIza-secret-key");
        assert!(!format!("{config:?}").contains("AIza-secret-key"));
        let model = Gemini::new(config, None).unwrap();
        assert!(!format!("{model:?}").contains("AIza-secret-key"));
        let bad = GeminiConfig::new("m", "key\n");
        assert!(matches!(Gemini::new(bad, None), Err(ProviderError::InvalidKey { .. })));
    }

    #[test]
    fn statuses_map_to_kinds_and_echoed_keys_are_scrubbed() {
        let model = model(GeminiConfig::DEFAULT_BASE_URL);
        let url = model.url("m", false);
        let info = |message: &str, status: &str| ErrorBody {
            message: Some(message.into()),
            status: Some(status.into()),
            ..ErrorBody::default()
        };
        let classify = |status, info: &ErrorBody| model.classify(status, info, None, &url, "m");
        let bad_key = classify(400, &info("API key not valid: AIza-secret-key", "INVALID_ARGUMENT"));
        assert_eq!(bad_key.error.kind, ModelErrorKind::Auth);
        assert!(!bad_key.error.message.contains("AIza-secret-key"), "{}", bad_key.error.message);
        assert_eq!(classify(403, &info("denied", "PERMISSION_DENIED")).error.kind, ModelErrorKind::Auth);
        assert_eq!(classify(401, &info("no", "UNAUTHENTICATED")).error.kind, ModelErrorKind::Auth);
        assert_eq!(classify(404, &info("models/m is not found", "NOT_FOUND")).error.kind, ModelErrorKind::UnknownModel);
        let long =
            info("The input token count (2000000) exceeds the maximum number of tokens allowed", "INVALID_ARGUMENT");
        assert_eq!(classify(400, &long).error.kind, ModelErrorKind::ContextTooLong);
        assert_eq!(classify(400, &info("bad field", "INVALID_ARGUMENT")).error.kind, ModelErrorKind::BadRequest);
        let limited = classify(429, &info("quota", "RESOURCE_EXHAUSTED"));
        assert!(limited.retryable && limited.error.kind == ModelErrorKind::RateLimited);
        let down = classify(503, &info("overloaded", "UNAVAILABLE"));
        assert!(down.retryable && down.error.kind == ModelErrorKind::ServerError);
        assert_eq!(classify(302, &ErrorBody::default()).error.kind, ModelErrorKind::InvalidResponse);
    }
}
