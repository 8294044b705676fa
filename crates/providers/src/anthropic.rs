//! [`Anthropic`]: rein's [`Model`] over the Anthropic Messages API
//! (`POST {base_url}/v1/messages`, key in `x-api-key`, `anthropic-version:
//! 2023-06-01`), whole or streamed as server-sent events (`stream: true`,
//! read by [`stream`]). The system prompt and the last tool
//! definition are marked for prompt caching unless
//! [`AnthropicConfig::prompt_caching`] is off.
//!
//! The HTTP machinery is the OpenAI client's: the same shared client (no
//! redirects), the same [`RetryConfig`] with full-jitter backoff honouring
//! `retry-after`, the same body cap, error-body reader and secret scrubbing.
//! What differs is the wire format ([`wire`]) and the error classification:
//! Anthropic names its errors by `type`, says `overloaded_error` with HTTP 529
//! (retried as a server error), and reports an over-long prompt as a 400
//! `invalid_request_error` ("prompt is too long").

mod stream;
mod wire;

use crate::error::ProviderError;
use crate::openai::{self, ErrorInfo, MAX_RESPONSE_BYTES, default_client, error_chain, read_body};
use crate::retry::{self, Failure, RetryConfig};
use crate::sse::{self, Deltas, SseError};
use async_trait::async_trait;
use rein_types::{Model, ModelError, ModelErrorKind, ModelRequest, ModelResponse, OnDelta};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Request, Url};
use std::fmt;
use std::time::Duration;
use wire::{Decoded, Options};

/// The API version rein speaks.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// Where the API lives when the declaration does not say.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

/// The output cap sent when a request sets none (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// Everything an [`Anthropic`] model needs. [`crate::build_model`] fills it
/// from an agent's declaration; build one directly to embed the provider.
#[derive(Clone)]
pub struct AnthropicConfig {
    /// Model name sent when a request leaves [`ModelRequest::model`] empty.
    pub model: String,
    /// API root, such as `https://api.anthropic.com`; `/v1/messages` is
    /// appended (only `/messages` to a root ending in `/v1`, nothing to one
    /// that already names the endpoint).
    pub base_url: String,
    /// Sent as `x-api-key`; never logged or shown.
    pub api_key: Option<String>,
    /// Where the key came from, so an authentication failure can say which
    /// variable to check.
    pub api_key_env: Option<String>,
    /// Extra headers, already expanded; they may replace the defaults
    /// (`anthropic-version`, `x-api-key`) and add `anthropic-beta`. Values are
    /// scrubbed from error messages.
    pub headers: Vec<(String, String)>,
    /// Further values to scrub from error messages (the environment values
    /// expanded into `headers`).
    pub secrets: Vec<String>,
    /// Time-out of each attempt, from sending the request to the end of the
    /// response body.
    pub timeout: Duration,
    pub retry: RetryConfig,
    /// Output cap when a request sets none.
    pub default_max_tokens: u32,
    /// Mark the system prompt and the last tool with
    /// `cache_control: {type: "ephemeral"}`.
    pub prompt_caching: bool,
}

impl AnthropicConfig {
    /// A configuration with no key, no extra headers, a 60 s time-out, the
    /// default retry policy, a 4096-token default cap and caching on.
    pub fn new(model: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            base_url: base_url.into(),
            api_key: None,
            api_key_env: None,
            headers: Vec::new(),
            secrets: Vec::new(),
            timeout: Duration::from_secs(60),
            retry: RetryConfig::default(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
            prompt_caching: true,
        }
    }
}

impl fmt::Debug for AnthropicConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnthropicConfig")
            .field("model", &self.model)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("api_key_env", &self.api_key_env)
            .field("headers", &self.headers.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("secrets", &format_args!("<{} redacted>", self.secrets.len()))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .field("default_max_tokens", &self.default_max_tokens)
            .field("prompt_caching", &self.prompt_caching)
            .finish()
    }
}

/// A Claude model served over the Anthropic Messages API.
pub struct Anthropic {
    /// `anthropic:model`, built once because [`Model::id`] is called per step.
    id: String,
    model: String,
    endpoint: Url,
    client: Client,
    headers: HeaderMap,
    has_key: bool,
    /// The key, header values and expanded variables, longest first.
    secrets: Vec<String>,
    api_key_env: Option<String>,
    timeout: Duration,
    retry: RetryConfig,
    options: Options,
}

impl fmt::Debug for Anthropic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Anthropic")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.has_key.then_some("<redacted>"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The provider name in ids and messages.
const PROVIDER: &str = "anthropic";

impl Anthropic {
    /// Prepares the endpoint and headers. Pass `client` to share one
    /// connection pool between providers; `None` creates one.
    pub fn new(config: AnthropicConfig, client: Option<Client>) -> Result<Self, ProviderError> {
        let endpoint = endpoint(&config.base_url)?;
        let mut headers = HeaderMap::with_capacity(5 + config.headers.len());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(concat!("rein/", env!("CARGO_PKG_VERSION"))));
        headers.insert("anthropic-version", HeaderValue::from_static(ANTHROPIC_VERSION));
        let api_key = config.api_key.filter(|key| !key.is_empty());
        if let Some(key) = &api_key {
            let mut value = HeaderValue::try_from(key.as_str()).map_err(|_| ProviderError::InvalidKey {
                var: config.api_key_env.clone().unwrap_or_else(|| "AnthropicConfig::api_key".to_owned()),
            })?;
            value.set_sensitive(true);
            headers.insert("x-api-key", value);
        }
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
        let secrets = openai::secret_list(
            api_key.iter().chain(config.headers.iter().map(|(_, value)| value)).chain(&config.secrets),
        );
        let client = match client {
            Some(client) => client,
            None => default_client()?,
        };
        Ok(Self {
            id: format!("{PROVIDER}:{}", config.model),
            model: config.model,
            endpoint,
            client,
            headers,
            has_key: api_key.is_some(),
            secrets,
            api_key_env: config.api_key_env,
            timeout: config.timeout,
            retry: config.retry,
            options: Options { default_max_tokens: config.default_max_tokens, prompt_caching: config.prompt_caching },
        })
    }

    /// The URL requests are sent to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The request for `model`, the same for both modes but for `stream`.
    fn build_request(&self, model: &str, request: &ModelRequest<'_>, stream: bool) -> Result<Request, ModelError> {
        let body = wire::encode(model, request, &self.options, stream).map_err(|e| {
            ModelError::new(ModelErrorKind::BadRequest, format!("could not encode the request for {}: {e}", self.id))
        })?;
        let mut headers = self.headers.clone();
        if stream {
            headers.insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        }
        self.client
            .post(self.endpoint.clone())
            .headers(headers)
            .timeout(self.timeout)
            .body(body)
            .build()
            .map_err(|e| self.transport_error(&e, model))
    }

    /// Sends a request; a success status returns the response unread, any
    /// other status is read and classified. Shared by both modes.
    async fn send(&self, request: Request, model: &str) -> Result<reqwest::Response, Failure> {
        let mut response =
            self.client.execute(request).await.map_err(|e| Failure::of(self.transport_error(&e, model)))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let retry_after = retry::retry_after(response.headers());
        let request_id = request_id(&response);
        let body = self.read_capped(&mut response, model).await?;
        let info = ErrorInfo::from_body(&body);
        Err(self.classify(status, &info, retry_after, request_id.as_deref(), model))
    }

    /// The whole body, up to [`MAX_RESPONSE_BYTES`].
    async fn read_capped(&self, response: &mut reqwest::Response, model: &str) -> Result<Vec<u8>, Failure> {
        let status = response.status().as_u16();
        read_body(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| Failure::of(self.transport_error(&e, model)))?
            .ok_or_else(|| Failure::fatal(too_large(status)))
    }

    /// One non-streaming exchange.
    async fn attempt(&self, request: Request, model: &str) -> Result<ModelResponse, Failure> {
        let response = self.send(request, model).await?;
        self.read_whole(response, model).await
    }

    /// Reads and decodes a whole 2xx body.
    async fn read_whole(&self, mut response: reqwest::Response, model: &str) -> Result<ModelResponse, Failure> {
        let status = response.status().as_u16();
        let request_id = request_id(&response);
        let body = self.read_capped(&mut response, model).await?;
        self.interpret(status, &body, request_id.as_deref(), model)
    }

    /// What a 2xx body (or the body a stream was reassembled into) means.
    fn interpret(
        &self,
        status: u16,
        body: &[u8],
        request_id: Option<&str>,
        model: &str,
    ) -> Result<ModelResponse, Failure> {
        match wire::decode(body) {
            Ok(Decoded::Response(response)) => Ok(response),
            Ok(Decoded::Error(error)) => Err(self.error_in_body(&error, request_id, model)),
            Ok(Decoded::NotAMessage) => {
                Err(Failure::fatal(self.invalid_response(status, "the body has no `content`", body)))
            }
            Err(e) => Err(Failure::fatal(self.invalid_response(
                status,
                &format!("the body is not a Messages API response ({e})"),
                body,
            ))),
        }
    }

    /// An error reported with a 2xx, in a body or a stream's `error` event:
    /// classified by the status its type stands for.
    fn error_in_body(&self, error: &serde_json::Value, request_id: Option<&str>, model: &str) -> Failure {
        let info = ErrorInfo::from_error_value(error);
        let status = status_for_type(info.kind.as_deref());
        self.classify(status, &info, None, request_id, model)
    }

    /// One streaming exchange. A plain JSON answer (a gateway that does not
    /// stream) is read as a whole answer.
    async fn attempt_streaming(
        &self,
        request: Request,
        model: &str,
        deltas: &Deltas<'_>,
    ) -> Result<ModelResponse, Failure> {
        let mut response = self.send(request, model).await?;
        if !sse::is_event_stream(&response) {
            let answer = self.read_whole(response, model).await?;
            deltas.send_whole(&answer);
            return Ok(answer);
        }
        let status = response.status().as_u16();
        let request_id = request_id(&response);
        let mut assembler = stream::Assembler::default();
        let read =
            sse::read_events(&mut response, MAX_RESPONSE_BYTES, |event| assembler.push(&event.data, deltas)).await;
        let stop = match read {
            Ok(_) if assembler.is_complete() => match assembler.into_body() {
                Ok(body) => return self.interpret(status, &body, request_id.as_deref(), model),
                Err(stop) => stop,
            },
            Ok(_) => {
                return Err(Failure::of(ModelError {
                    kind: ModelErrorKind::Transport,
                    message: format!(
                        "{PROVIDER} ended the stream before the answer was complete (model `{model}`, no message_stop)"
                    ),
                    status: Some(status),
                    retry_after: None,
                }));
            }
            Err(SseError::Read(e)) => return Err(Failure::of(self.transport_error(&e, model))),
            Err(SseError::TooLarge) => return Err(Failure::fatal(too_large(status))),
            Err(SseError::Handler(stop)) => stop,
        };
        match stop {
            // `overloaded_error` mid-stream becomes a server error, as a 529 would.
            stream::Stop::Error(error) => Err(self.error_in_body(&error, request_id.as_deref(), model)),
            stream::Stop::Invalid(what, data) => {
                Err(Failure::fatal(self.invalid_response(status, &what, data.as_bytes())))
            }
        }
    }

    /// Turns an HTTP error status and Anthropic's error body
    /// (`{"type":"error","error":{"type","message"}}`) into a typed error
    /// that quotes the provider.
    fn classify(
        &self,
        status: u16,
        info: &ErrorInfo,
        retry_after: Option<Duration>,
        request_id: Option<&str>,
        model: &str,
    ) -> Failure {
        let mut detail = match (&info.message, &info.kind) {
            (Some(message), Some(kind)) => format!("{message} [{kind}]"),
            _ => info.describe(),
        };
        if let Some(id) = request_id {
            detail.push_str(&format!(" (request id {id})"));
        }
        let detail = openai::scrub(&self.secrets, detail);
        let kind = info.kind.as_deref().unwrap_or("");
        let (kind, message, retryable) = match (status, kind) {
            (401 | 403, _) | (_, "authentication_error" | "permission_error") => {
                let hint = match (self.has_key, &self.api_key_env) {
                    (true, Some(var)) => {
                        format!("the key comes from {var}; check that it is valid and may use model `{model}`")
                    }
                    (true, None) => format!("check that the key is valid and may use model `{model}`"),
                    (false, Some(var)) => format!("no key was sent; export {var}"),
                    (false, None) => "no key was sent; export ANTHROPIC_API_KEY or name the variable holding the key with `api_key_env`".to_owned(),
                };
                (
                    ModelErrorKind::Auth,
                    format!("{PROVIDER} refused the credentials (HTTP {status}): {detail}; {hint}"),
                    false,
                )
            }
            (404, _) | (_, "not_found_error") => (
                ModelErrorKind::UnknownModel,
                format!(
                    "{PROVIDER} does not know model `{model}` (HTTP {status}): {detail}; check the model name (and that base_url points at the Anthropic API, {})",
                    self.endpoint
                ),
                false,
            ),
            (408, _) => {
                (ModelErrorKind::Timeout, format!("{PROVIDER} timed out the request (HTTP 408): {detail}"), true)
            }
            (413, _) | (_, "request_too_large") => (
                ModelErrorKind::ContextTooLong,
                format!("the request for `{model}` is larger than {PROVIDER} accepts (HTTP {status}): {detail}"),
                false,
            ),
            (429, _) | (_, "rate_limit_error") => (
                ModelErrorKind::RateLimited,
                format!("{PROVIDER} is rate-limiting requests (HTTP {status}): {detail}"),
                true,
            ),
            (400..=499, _) if says_context_too_long(info) => (
                ModelErrorKind::ContextTooLong,
                format!("the prompt does not fit the context window of `{model}` (HTTP {status}): {detail}"),
                false,
            ),
            (400..=499, _) => (
                ModelErrorKind::BadRequest,
                format!("{PROVIDER} rejected the request for `{model}` (HTTP {status}): {detail}"),
                false,
            ),
            (529, _) | (_, "overloaded_error") => {
                (ModelErrorKind::ServerError, format!("{PROVIDER} is overloaded (HTTP {status}): {detail}"), true)
            }
            (500..=599, _) => {
                (ModelErrorKind::ServerError, format!("{PROVIDER} failed (HTTP {status}): {detail}"), true)
            }
            (300..=399, _) => (
                ModelErrorKind::InvalidResponse,
                format!(
                    "{PROVIDER} redirected the request (HTTP {status}): {detail}; redirects are not followed, so that credentials are never sent to another address: set base_url to the address the provider redirects to"
                ),
                false,
            ),
            _ => (
                ModelErrorKind::InvalidResponse,
                format!("{PROVIDER} answered with unexpected HTTP status {status}: {detail}"),
                false,
            ),
        };
        Failure { error: ModelError { kind, message, status: Some(status), retry_after }, retryable }
    }

    fn transport_error(&self, error: &reqwest::Error, model: &str) -> ModelError {
        if error.is_timeout() {
            ModelError::new(
                ModelErrorKind::Timeout,
                format!("{PROVIDER} did not answer within {:?} (model `{model}`)", self.timeout),
            )
        } else {
            let what = if error.is_connect() { "could not connect to" } else { "the connection failed to" };
            ModelError::new(
                ModelErrorKind::Transport,
                format!(
                    "{what} {PROVIDER} at {}: {}",
                    self.endpoint,
                    openai::redact(&self.secrets, error_chain(error))
                ),
            )
        }
    }

    fn invalid_response(&self, status: u16, what: &str, body: &[u8]) -> ModelError {
        let body = openai::snippet(body).map_or_else(|| "(empty body)".to_owned(), |s| openai::scrub(&self.secrets, s));
        ModelError {
            kind: ModelErrorKind::InvalidResponse,
            message: format!("{PROVIDER} answered HTTP {status} but {what}: {body}"),
            status: Some(status),
            retry_after: None,
        }
    }
}

#[async_trait]
impl Model for Anthropic {
    fn id(&self) -> String {
        self.id.clone()
    }

    async fn complete(&self, request: ModelRequest<'_>) -> Result<ModelResponse, ModelError> {
        let model = if request.model.is_empty() { self.model.as_str() } else { request.model };
        let template = self.build_request(model, &request, false)?;
        retry::call_with_retries(&self.retry, &self.id, template, |copy| self.attempt(copy, model)).await
    }

    async fn complete_streaming(
        &self,
        request: ModelRequest<'_>,
        on_delta: OnDelta<'_>,
    ) -> Result<ModelResponse, ModelError> {
        let model = if request.model.is_empty() { self.model.as_str() } else { request.model };
        let template = self.build_request(model, &request, true)?;
        let deltas = Deltas::new(on_delta);
        retry::call_with_retries(&self.retry, &self.id, template, |copy| {
            let deltas = &deltas;
            async move { sse::no_retry_after_deltas(self.attempt_streaming(copy, model, deltas).await, deltas) }
        })
        .await
    }
}

/// Anthropic's id for the request, which its support asks for.
fn request_id(response: &reqwest::Response) -> Option<String> {
    response.headers().get("request-id").and_then(|v| v.to_str().ok()).map(str::to_owned)
}

/// A body over the cap.
fn too_large(status: u16) -> ModelError {
    ModelError {
        kind: ModelErrorKind::InvalidResponse,
        message: format!(
            "{PROVIDER} answered HTTP {status} with a body over {} MiB, which rein does not read; check that base_url points at the Anthropic API",
            MAX_RESPONSE_BYTES / (1024 * 1024)
        ),
        status: Some(status),
        retry_after: None,
    }
}

/// Anthropic's words for an over-long prompt ("prompt is too long: 210000
/// tokens > 200000 maximum", "input length and `max_tokens` exceed context
/// limit"), and the generic ones.
fn says_context_too_long(info: &ErrorInfo) -> bool {
    if info.says_context_too_long() {
        return true;
    }
    let text = info.message.as_deref().unwrap_or("").to_lowercase();
    ["prompt is too long", "context limit", "exceed context", "too many tokens"]
        .iter()
        .any(|needle| text.contains(needle))
}

/// The HTTP status an Anthropic error type stands for, for errors that
/// arrive in a 2xx body.
fn status_for_type(kind: Option<&str>) -> u16 {
    match kind {
        Some("invalid_request_error") => 400,
        Some("authentication_error") => 401,
        Some("permission_error") => 403,
        Some("not_found_error") => 404,
        Some("request_too_large") => 413,
        Some("rate_limit_error") => 429,
        Some("overloaded_error") => 529,
        _ => 500,
    }
}

/// `{base_url}/v1/messages`, accepting a root with or without `/v1` and a
/// trailing slash, or one that already names the endpoint.
fn endpoint(base_url: &str) -> Result<Url, ProviderError> {
    let invalid = |reason: String| ProviderError::InvalidBaseUrl { url: base_url.to_owned(), reason };
    let trimmed = base_url.trim().trim_end_matches('/');
    let full = if trimmed.ends_with("/v1/messages") {
        trimmed.to_owned()
    } else if trimmed.ends_with("/v1") {
        format!("{trimmed}/messages")
    } else {
        format!("{trimmed}/v1/messages")
    };
    let url = Url::parse(&full).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme must be http or https, not `{}`", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("put credentials in api_key_env or headers, not in the URL".to_owned()));
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Anthropic {
        let mut config = AnthropicConfig::new("claude", "http://127.0.0.1:1");
        config.api_key = Some("sk-ant-secret".into());
        config.api_key_env = Some("ANTHROPIC_API_KEY".into());
        Anthropic::new(config, None).unwrap()
    }

    fn info(kind: &str, message: &str) -> ErrorInfo {
        ErrorInfo { message: Some(message.into()), kind: Some(kind.into()), ..ErrorInfo::default() }
    }

    #[test]
    fn endpoints_are_normalised() {
        for base in ["http://h:1", "http://h:1/", "http://h:1/v1", "http://h:1/v1/messages", " http://h:1/v1// "] {
            assert_eq!(endpoint(base).unwrap().as_str(), "http://h:1/v1/messages", "{base}");
        }
        assert!(matches!(endpoint("ftp://h"), Err(ProviderError::InvalidBaseUrl { .. })));
        assert!(matches!(endpoint("http://u:p@h"), Err(ProviderError::InvalidBaseUrl { .. })));
    }

    #[test]
    fn debug_output_and_messages_never_show_the_key() {
        let model = model();
        assert!(!format!("{model:?}").contains("sk-ant-secret"));
        let failure = model.classify(401, &info("authentication_error", "bad key sk-ant-secret"), None, None, "claude");
        assert_eq!(failure.error.kind, ModelErrorKind::Auth);
        assert!(!failure.error.message.contains("sk-ant-secret"), "{}", failure.error.message);
        assert!(failure.error.message.contains("ANTHROPIC_API_KEY"), "{}", failure.error.message);
    }

    #[test]
    fn error_types_map_to_kinds() {
        let model = model();
        let kind = |status, kind: &str, message: &str| {
            let failure = model.classify(status, &info(kind, message), None, Some("req_1"), "claude");
            (failure.error.kind, failure.retryable)
        };
        assert_eq!(kind(403, "permission_error", "no"), (ModelErrorKind::Auth, false));
        assert_eq!(kind(404, "not_found_error", "model: x"), (ModelErrorKind::UnknownModel, false));
        assert_eq!(
            kind(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum"),
            (ModelErrorKind::ContextTooLong, false)
        );
        assert_eq!(
            kind(400, "invalid_request_error", "max_tokens: Field required"),
            (ModelErrorKind::BadRequest, false)
        );
        assert_eq!(kind(413, "request_too_large", "too big"), (ModelErrorKind::ContextTooLong, false));
        assert_eq!(kind(429, "rate_limit_error", "slow down"), (ModelErrorKind::RateLimited, true));
        assert_eq!(kind(529, "overloaded_error", "Overloaded"), (ModelErrorKind::ServerError, true));
        assert_eq!(kind(500, "api_error", "oops"), (ModelErrorKind::ServerError, true));
        assert_eq!(kind(302, "", ""), (ModelErrorKind::InvalidResponse, false));
        assert_eq!(status_for_type(Some("overloaded_error")), 529);
        let message = model.classify(500, &info("api_error", "oops"), None, Some("req_1"), "claude").error.message;
        assert!(message.contains("oops [api_error] (request id req_1)"), "{message}");
    }
}
