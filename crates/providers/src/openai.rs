//! [`OpenAiCompatible`]: rein's [`Model`] over the OpenAI Chat Completions API
//! (`POST {base_url}/chat/completions`), which OpenAI, OpenRouter, Ollama,
//! vLLM and the llama.cpp server all speak, whole or streamed as server-sent
//! events (`stream: true`, read by [`stream`]). This module owns the HTTP call,
//! the retry loop around it, and the translation of every way a call can fail
//! into a typed [`ModelError`] that says what happened and names the fix.
//! Error messages quote the provider, with the key and every other secret
//! header value scrubbed out; response bodies are read up to
//! [`MAX_RESPONSE_BYTES`], and redirects are not followed.
//!
//! The success path is kept lean because benchmarks drive thousands of calls
//! a second through it: the body is serialised once from borrowed views of
//! the conversation, headers are prepared at construction, and nothing is
//! logged above `trace`.

mod stream;
mod wire;

// Shared with the other HTTP providers, so every adapter reads error bodies,
// caps bodies and scrubs secrets the same way.
pub(crate) use wire::{ErrorInfo, snippet};

use crate::error::ProviderError;
use crate::retry::{self, Failure, RetryConfig};
use crate::sse::{self, Deltas, SseError};
use async_trait::async_trait;
use rein_types::{Model, ModelError, ModelErrorKind, ModelRequest, ModelResponse, OnDelta};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Request, StatusCode, Url};
use std::fmt;
use std::time::Duration;
use wire::Decoded;

/// Provider error messages are cut to this many bytes: a proxy's HTML error
/// page does not belong in a run's outcome.
pub(crate) const MAX_PROVIDER_MESSAGE: usize = 1000;

/// Response bodies are read up to this many bytes; a longer one fails the
/// call instead of exhausting memory. Far above any real completion.
pub(crate) const MAX_RESPONSE_BYTES: usize = 32 * 1024 * 1024;

/// Secret values shorter than this are not scrubbed from messages: no real
/// credential is that short, and replacing every `42` would garble the text.
pub(crate) const MIN_SECRET_CHARS: usize = 4;

/// What replaces a secret in an error message.
pub(crate) const REDACTED: &str = "<redacted>";

/// Everything an [`OpenAiCompatible`] needs. [`crate::build_model`] fills it
/// from an agent's declaration; build one directly to embed a provider.
#[derive(Clone)]
pub struct OpenAiConfig {
    /// The provider's name (`openai`, `ollama`, ...), for ids and messages.
    pub provider: String,
    /// Model name sent when a request leaves [`ModelRequest::model`] empty.
    pub model: String,
    /// API root, such as `https://api.openai.com/v1`; `/chat/completions` is
    /// appended unless it is already there.
    pub base_url: String,
    /// Sent as `Authorization: Bearer …`; never logged or shown.
    pub api_key: Option<String>,
    /// Where the key came from, so an authentication failure can say which
    /// variable to check.
    pub api_key_env: Option<String>,
    /// Extra headers, already expanded. Values may be secrets and are never
    /// shown: each is scrubbed from error messages.
    pub headers: Vec<(String, String)>,
    /// Further values to scrub from error messages: the environment values
    /// expanded into `headers` (a provider may echo `tok` out of
    /// `Bearer tok`). [`crate::build_model`] fills it in.
    pub secrets: Vec<String>,
    /// Time-out of each attempt, from sending the request to the end of the
    /// response body.
    pub timeout: Duration,
    pub retry: RetryConfig,
}

impl OpenAiConfig {
    /// A configuration with no key, no extra headers, a 60 s time-out and the
    /// default retry policy.
    pub fn new(provider: impl Into<String>, model: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            model: model.into(),
            base_url: base_url.into(),
            api_key: None,
            api_key_env: None,
            headers: Vec::new(),
            secrets: Vec::new(),
            timeout: Duration::from_secs(60),
            retry: RetryConfig::default(),
        }
    }
}

impl fmt::Debug for OpenAiConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiConfig")
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

/// A client that is safe to share between providers (and HTTP tools):
/// connection pools are per client, so sharing one keeps connections warm.
///
/// It does not follow redirects. reqwest drops only `Authorization`,
/// `Cookie` and `Proxy-Authorization` on a redirect to another host, so a
/// followed redirect would carry any other secret header (`api-key`,
/// `X-Api-Key: ${KEY}`) to wherever it points; a 3xx is reported instead.
pub fn default_client() -> Result<Client, ProviderError> {
    Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_nodelay(true)
        .build()
        .map_err(|e| ProviderError::Client(error_chain(&e)))
}

/// A model served over the OpenAI Chat Completions API.
pub struct OpenAiCompatible {
    /// `provider:model`, built once because [`Model::id`] is called per step.
    id: String,
    provider: String,
    model: String,
    endpoint: Url,
    client: Client,
    headers: HeaderMap,
    /// The key sent, if any; only whether there is one is looked at (for
    /// the hint of an authentication failure).
    api_key: Option<String>,
    /// The key, header values and expanded variables, longest first, to
    /// scrub from provider error messages that echo them.
    secrets: Vec<String>,
    api_key_env: Option<String>,
    timeout: Duration,
    retry: RetryConfig,
}

impl fmt::Debug for OpenAiCompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiCompatible")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint.as_str())
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl OpenAiCompatible {
    /// Prepares the endpoint and headers. Pass `client` to share one
    /// connection pool between providers; `None` creates one for this provider.
    pub fn new(config: OpenAiConfig, client: Option<Client>) -> Result<Self, ProviderError> {
        let endpoint = endpoint(&config.base_url)?;
        let mut headers = HeaderMap::with_capacity(4 + config.headers.len());
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(header::USER_AGENT, HeaderValue::from_static(concat!("rein/", env!("CARGO_PKG_VERSION"))));
        let api_key = config.api_key.filter(|key| !key.is_empty());
        if let Some(key) = &api_key {
            let mut value = HeaderValue::try_from(format!("Bearer {key}")).map_err(|_| ProviderError::InvalidKey {
                var: config.api_key_env.clone().unwrap_or_else(|| "OpenAiConfig::api_key".to_owned()),
            })?;
            value.set_sensitive(true);
            headers.insert(header::AUTHORIZATION, value);
        }
        // Declared headers come last so that they can replace the defaults
        // (Azure-style gateways want `api-key` instead of `Authorization`).
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
        let secrets =
            secret_list(api_key.iter().chain(config.headers.iter().map(|(_, value)| value)).chain(&config.secrets));
        let client = match client {
            Some(client) => client,
            None => default_client()?,
        };
        Ok(Self {
            id: format!("{}:{}", config.provider, config.model),
            provider: config.provider,
            model: config.model,
            endpoint,
            client,
            headers,
            api_key,
            secrets,
            api_key_env: config.api_key_env,
            timeout: config.timeout,
            retry: config.retry,
        })
    }

    /// The URL requests are sent to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// The request for `model`, the same for both modes but for `stream`.
    fn build_request(&self, model: &str, request: &ModelRequest<'_>, stream: bool) -> Result<Request, ModelError> {
        let body = wire::encode(model, request, stream).map_err(|e| {
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
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = retry::retry_after(response.headers());
        let body = self.read_capped(&mut response, model).await?;
        let info = ErrorInfo::from_body(&body);
        Err(self.classify(status.as_u16(), &info, retry_after, model))
    }

    /// The whole body, up to [`MAX_RESPONSE_BYTES`].
    async fn read_capped(&self, response: &mut reqwest::Response, model: &str) -> Result<Vec<u8>, Failure> {
        let status = response.status().as_u16();
        read_body(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| Failure::of(self.transport_error(&e, model)))?
            .ok_or_else(|| Failure::fatal(self.too_large(status)))
    }

    fn too_large(&self, status: u16) -> ModelError {
        ModelError {
            kind: ModelErrorKind::InvalidResponse,
            message: format!(
                "{} answered HTTP {status} with a body over {} MiB, which rein does not read; check that base_url points at an OpenAI-compatible API",
                self.provider,
                MAX_RESPONSE_BYTES / (1024 * 1024)
            ),
            status: Some(status),
            retry_after: None,
        }
    }

    /// One non-streaming exchange.
    async fn attempt(&self, request: Request, model: &str) -> Result<ModelResponse, Failure> {
        let response = self.send(request, model).await?;
        self.read_whole(response, model).await
    }

    /// Reads and decodes a whole 2xx body.
    async fn read_whole(&self, mut response: reqwest::Response, model: &str) -> Result<ModelResponse, Failure> {
        let status = response.status().as_u16();
        let body = self.read_capped(&mut response, model).await?;
        self.interpret(status, &body, model)
    }

    /// What a 2xx body (or the body a stream was reassembled into) means.
    fn interpret(&self, status: u16, body: &[u8], model: &str) -> Result<ModelResponse, Failure> {
        match wire::decode(body) {
            Ok(Decoded::Response(response)) => Ok(response),
            Ok(Decoded::Error(info)) => {
                // No usable status: the HTTP one says success. An error
                // reported this way is an upstream failure unless its own
                // code or text says otherwise.
                let status = info.status.unwrap_or(StatusCode::BAD_GATEWAY.as_u16());
                let mut failure = self.classify(status, &info, None, model);
                failure.error.status = Some(status);
                Err(failure)
            }
            Ok(Decoded::NoChoices) => {
                Err(Failure::fatal(self.invalid_response(status, "the response has no choices", body)))
            }
            Err(e) => Err(Failure::fatal(self.invalid_response(
                status,
                &format!("the body is not a Chat Completions response ({e})"),
                body,
            ))),
        }
    }

    /// One streaming exchange. A server that answers with plain JSON (some
    /// compatible servers ignore `stream`) is read as a whole answer.
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
        let mut assembler = stream::Assembler::default();
        let read =
            sse::read_events(&mut response, MAX_RESPONSE_BYTES, |event| assembler.push(&event.data, deltas)).await;
        match read {
            Ok(_) if assembler.is_complete() => self.interpret(status, &assembler.into_body(), model),
            Ok(_) => Err(Failure::of(ModelError {
                kind: ModelErrorKind::Transport,
                message: format!(
                    "{} ended the stream before the answer was complete (model `{model}`, no [DONE])",
                    self.provider
                ),
                status: Some(status),
                retry_after: None,
            })),
            Err(SseError::Read(e)) => Err(Failure::of(self.transport_error(&e, model))),
            Err(SseError::TooLarge) => Err(Failure::fatal(self.too_large(status))),
            Err(SseError::Handler(stream::Stop::ErrorChunk(data))) => self.interpret(status, data.as_bytes(), model),
            Err(SseError::Handler(stream::Stop::NotAChunk(e, data))) => Err(Failure::fatal(self.invalid_response(
                status,
                &format!("a stream event is not a chat.completion.chunk ({e})"),
                data.as_bytes(),
            ))),
        }
    }

    /// Turns an HTTP error status and the provider's error body into a typed
    /// error that quotes the provider.
    fn classify(&self, status: u16, info: &ErrorInfo, retry_after: Option<Duration>, model: &str) -> Failure {
        let provider = &self.provider;
        let detail = self.scrub(info.describe());
        let (kind, message, retryable) = match status {
            401 | 403 => {
                let hint = match (&self.api_key, &self.api_key_env) {
                    (Some(_), Some(var)) => {
                        format!("the key comes from {var}; check that it is valid and may use model `{model}`")
                    }
                    (Some(_), None) => format!("check that the key is valid and may use model `{model}`"),
                    (None, Some(var)) => format!("no key was sent; export {var}"),
                    (None, None) => {
                        "no key was sent; name the variable holding it with `api_key_env` in the agent's [model] section"
                            .to_owned()
                    }
                };
                (
                    ModelErrorKind::Auth,
                    format!("{provider} refused the credentials (HTTP {status}): {detail}; {hint}"),
                    false,
                )
            }
            404 if info.says_unknown_model() => (
                ModelErrorKind::UnknownModel,
                format!("{provider} does not know model `{model}` (HTTP 404): {detail}"),
                false,
            ),
            404 => (
                ModelErrorKind::UnknownModel,
                format!(
                    "{provider} answered 404 for model `{model}` at {}: {detail}; check the model name, and that base_url points at an OpenAI-compatible API",
                    self.endpoint
                ),
                false,
            ),
            408 => (ModelErrorKind::Timeout, format!("{provider} timed out the request (HTTP 408): {detail}"), true),
            429 if info.says_quota_exhausted() => (
                ModelErrorKind::RateLimited,
                format!("{provider} says this key has no quota left (HTTP 429): {detail}; check the account's billing"),
                false,
            ),
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
            400..=499 if info.says_unknown_model() => (
                ModelErrorKind::UnknownModel,
                format!("{provider} does not know model `{model}` (HTTP {status}): {detail}"),
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
                    "{provider} redirected the request (HTTP {status}): {detail}; redirects are not followed, so that credentials are never sent to another address: set base_url to the address the provider redirects to"
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

    fn transport_error(&self, error: &reqwest::Error, model: &str) -> ModelError {
        let provider = &self.provider;
        if error.is_timeout() {
            ModelError::new(
                ModelErrorKind::Timeout,
                format!("{provider} did not answer within {:?} (model `{model}`)", self.timeout),
            )
        } else if error.is_connect() {
            ModelError::new(
                ModelErrorKind::Transport,
                format!("could not connect to {provider} at {}: {}", self.endpoint, self.redact(error_chain(error))),
            )
        } else {
            ModelError::new(
                ModelErrorKind::Transport,
                format!(
                    "the connection to {provider} at {} failed: {}",
                    self.endpoint,
                    self.redact(error_chain(error))
                ),
            )
        }
    }

    fn invalid_response(&self, status: u16, what: &str, body: &[u8]) -> ModelError {
        let body = wire::snippet(body).map_or_else(|| "(empty body)".to_owned(), |s| self.scrub(s));
        ModelError {
            kind: ModelErrorKind::InvalidResponse,
            message: format!("{} answered HTTP {status} but {what}: {body}", self.provider),
            status: Some(status),
            retry_after: None,
        }
    }

    /// Removes every secret (the key, header values and the variables
    /// expanded into them) from `text`.
    fn redact(&self, text: String) -> String {
        redact(&self.secrets, text)
    }

    /// Cuts a provider's text to size and removes any secret the provider
    /// echoed back. Secrets go first, so a cut cannot leave half of one.
    fn scrub(&self, text: String) -> String {
        scrub(&self.secrets, text)
    }
}

#[async_trait]
impl Model for OpenAiCompatible {
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

/// The values to scrub from error messages: those long enough to be
/// credentials, longest first, so a value that contains another is replaced
/// whole.
pub(crate) fn secret_list<'a>(values: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut secrets: Vec<String> = values.filter(|value| value.chars().count() >= MIN_SECRET_CHARS).cloned().collect();
    secrets.sort_by_key(|value| std::cmp::Reverse(value.len()));
    secrets.dedup();
    secrets
}

/// Removes every one of `secrets` (as [`secret_list`] orders them) from `text`.
pub(crate) fn redact(secrets: &[String], mut text: String) -> String {
    for secret in secrets {
        if text.contains(secret.as_str()) {
            text = text.replace(secret.as_str(), REDACTED);
        }
    }
    text
}

/// Cuts a provider's text to [`MAX_PROVIDER_MESSAGE`] and removes any secret
/// the provider echoed back. Secrets go first, so a cut cannot leave half of
/// one.
pub(crate) fn scrub(secrets: &[String], text: String) -> String {
    let mut text = redact(secrets, text);
    if text.len() > MAX_PROVIDER_MESSAGE {
        text.truncate(rein_types::text::prefix_within(&text, MAX_PROVIDER_MESSAGE).len());
        text.push('…');
    }
    text
}

/// Reads a response body of at most `limit` bytes; `Ok(None)` when it is
/// longer, as soon as that is known (from `Content-Length`, or once the
/// bytes read pass the limit).
pub(crate) async fn read_body(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Option<Vec<u8>>, reqwest::Error> {
    let declared = response.content_length().map(|len| usize::try_from(len).unwrap_or(usize::MAX));
    if declared.is_some_and(|len| len > limit) {
        return Ok(None);
    }
    let mut body = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = response.chunk().await? {
        if chunk.len() > limit - body.len() {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// `{base_url}/chat/completions`, accepting a base URL with or without a
/// trailing slash, or one that already names the endpoint.
fn endpoint(base_url: &str) -> Result<Url, ProviderError> {
    let invalid = |reason: String| ProviderError::InvalidBaseUrl { url: base_url.to_owned(), reason };
    let trimmed = base_url.trim().trim_end_matches('/');
    let full =
        if trimmed.ends_with("/chat/completions") { trimmed.to_owned() } else { format!("{trimmed}/chat/completions") };
    let url = Url::parse(&full).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!("the scheme must be http or https, not `{}`", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("put credentials in api_key_env or headers, not in the URL".to_owned()));
    }
    Ok(url)
}

/// An error and its causes on one line: reqwest's own message alone ("error
/// sending request") hides the useful part ("connection refused").
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_normalised() {
        for base in ["http://h:1/v1", "http://h:1/v1/", "http://h:1/v1/chat/completions", " http://h:1/v1// "] {
            assert_eq!(endpoint(base).unwrap().as_str(), "http://h:1/v1/chat/completions", "{base}");
        }
        assert!(matches!(endpoint("ftp://h/v1"), Err(ProviderError::InvalidBaseUrl { .. })));
        assert!(matches!(endpoint("not a url"), Err(ProviderError::InvalidBaseUrl { .. })));
        assert!(matches!(endpoint("http://u:p@h/v1"), Err(ProviderError::InvalidBaseUrl { .. })));
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let mut config = OpenAiConfig::new("openai", "m", "http://127.0.0.1:1/v1");
        config.api_key = Some("sk-secret".into());
        config.headers.push(("x-token".into(), "also-secret".into()));
        let shown = format!("{config:?}");
        assert!(!shown.contains("sk-secret") && !shown.contains("also-secret"), "{shown}");
        let model = OpenAiCompatible::new(config, None).unwrap();
        let shown = format!("{model:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
    }

    #[test]
    fn echoed_keys_are_scrubbed_from_messages() {
        let mut config = OpenAiConfig::new("openai", "m", "http://127.0.0.1:1/v1");
        config.api_key = Some("sk-secret".into());
        let model = OpenAiCompatible::new(config, None).unwrap();
        let info = ErrorInfo { message: Some("Incorrect API key provided: sk-secret".into()), ..ErrorInfo::default() };
        let failure = model.classify(401, &info, None, "m");
        assert_eq!(failure.error.kind, ModelErrorKind::Auth);
        assert!(!failure.error.message.contains("sk-secret"), "{}", failure.error.message);
        assert!(failure.error.message.contains("<redacted>"));
    }

    #[test]
    fn header_values_and_declared_secrets_are_scrubbed_too() {
        let mut config = OpenAiConfig::new("gw", "m", "http://127.0.0.1:1/v1");
        config.headers.push(("api-key".into(), "hdr-secret-1".into()));
        config.headers.push(("x-org".into(), "Org t0k3n".into()));
        config.secrets.push("t0k3n".into());
        // Too short to be a credential, and would garble every message.
        config.secrets.push("42".into());
        let model = OpenAiCompatible::new(config, None).unwrap();
        let info = ErrorInfo {
            message: Some("bad api-key hdr-secret-1 for `Org t0k3n` (t0k3n), id 42".into()),
            ..ErrorInfo::default()
        };
        let message = model.classify(400, &info, None, "m").error.message;
        assert!(message.contains("bad api-key <redacted> for `<redacted>` (<redacted>), id 42"), "{message}");
        let message = model.invalid_response(200, "odd", b"echo: t0k3n").message;
        assert!(message.ends_with("echo: <redacted>"), "{message}");
    }

    #[test]
    fn statuses_map_to_kinds() {
        let model = OpenAiCompatible::new(OpenAiConfig::new("vllm", "m", "http://127.0.0.1:1/v1"), None).unwrap();
        let none = ErrorInfo::default();
        let kind = |status, info: &ErrorInfo| model.classify(status, info, None, "m").error.kind;
        assert_eq!(kind(403, &none), ModelErrorKind::Auth);
        assert_eq!(kind(404, &none), ModelErrorKind::UnknownModel);
        assert_eq!(kind(408, &none), ModelErrorKind::Timeout);
        assert_eq!(kind(422, &none), ModelErrorKind::BadRequest);
        assert_eq!(kind(503, &none), ModelErrorKind::ServerError);
        assert_eq!(kind(302, &none), ModelErrorKind::InvalidResponse);
        let quota = ErrorInfo { code: Some("insufficient_quota".into()), ..ErrorInfo::default() };
        let failure = model.classify(429, &quota, None, "m");
        assert_eq!(failure.error.kind, ModelErrorKind::RateLimited);
        assert!(!failure.retryable, "an empty quota does not refill by waiting");
        let missing = ErrorInfo { message: Some("The model `m` does not exist.".into()), ..ErrorInfo::default() };
        assert_eq!(kind(400, &missing), ModelErrorKind::UnknownModel);
    }
}
