//! Declarative HTTP tools: an [`HttpToolDecl`] from an agent file becomes a
//! [`Tool`] that fills in the URL, query, headers and body from the model's
//! arguments, sends the request with per-attempt time-outs and retries, and
//! turns whatever happens into a [`ToolOutcome`] the model can act on. A
//! redirect is reported, never followed, and a call that is not idempotent
//! and may have been applied despite failing says so instead of inviting a
//! retry.
//!
//! Secrets live only in the environment: `${VAR}` in headers and query values
//! is read when the request is sent, and every value read that way is scrubbed
//! from the outcome, so an echoing server cannot leak a key into the
//! transcript.

use crate::error::ToolBuildError;
use crate::redact::Secrets;
use crate::template::{RenderError, Segment, Template, arg_text};
use crate::truncate::fit;
use async_trait::async_trait;
use futures::FutureExt;
use rein_types::{BodyMapping, HttpToolDecl, Tool, ToolContext, ToolOutcome, ToolSpec};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, LOCATION, RETRY_AFTER};
use reqwest::{Method, StatusCode, Url};
use serde_json::{Map, Value};
use std::collections::BTreeSet;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, SystemTime};

/// The header carrying the call's idempotency key.
const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A `Retry-After` longer than this is not slept through: the model is told to
/// come back later instead, since holding a run for minutes helps no one.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Response bodies are read up to this many bytes. Extraction may pick a few
/// fields out of a large document, so this is far above any result limit, but
/// bounded so that a runaway download cannot exhaust memory.
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Error details quoted from a response body are cut to this many characters.
const MAX_DETAIL_CHARS: usize = 300;

/// A declared HTTP endpoint, callable by the model.
pub struct HttpTool {
    spec: ToolSpec,
    decl: HttpToolDecl,
    method: Method,
    url: Template,
    headers: Vec<(HeaderName, Template)>,
    query: Vec<(String, Template)>,
    client: reqwest::Client,
}

impl std::fmt::Debug for HttpTool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The declaration holds `${VAR}` references, never secret values.
        f.debug_struct("HttpTool")
            .field("name", &self.spec.name)
            .field("method", &self.method)
            .field("url", &self.decl.url)
            .finish()
    }
}

impl HttpTool {
    /// Builds the tool, checking the declaration: the method is one of `GET`,
    /// `POST`, `PUT`, `PATCH`, `DELETE`; the URL is absolute `http(s)` once
    /// its `{param}`s are filled in; templates refer only to declared
    /// parameters; extraction paths are JSON Pointers; limits are non-zero.
    ///
    /// `client` must not follow redirects (`rein_providers::default_client`
    /// does not): a followed redirect carries the tool's headers, secrets
    /// included, to wherever it points. A redirect is then reported to the
    /// model as an error.
    pub fn new(spec: ToolSpec, decl: HttpToolDecl, client: reqwest::Client) -> Result<Self, ToolBuildError> {
        let name = spec.name.clone();
        let method = match decl.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            other => {
                return Err(ToolBuildError::decl(
                    &name,
                    format!("unsupported HTTP method `{other}`; use GET, POST, PUT, PATCH or DELETE"),
                ));
            }
        };
        if decl.timeout_ms == 0 {
            return Err(ToolBuildError::decl(&name, "timeout_ms must be greater than 0"));
        }
        if decl.max_result_bytes == 0 {
            return Err(ToolBuildError::decl(&name, "max_result_bytes must be greater than 0"));
        }

        let url = parse_url_template(&name, &decl.url)?;
        let mut headers = Vec::new();
        for (key, value) in &decl.headers {
            let header = HeaderName::from_bytes(key.as_bytes())
                .map_err(|_| ToolBuildError::decl(&name, format!("`{key}` is not a valid HTTP header name")))?;
            headers.push((header, Template::parse(value, true)));
        }
        let query: Vec<(String, Template)> =
            decl.query.iter().map(|(key, value)| (key.clone(), Template::parse(value, true))).collect();
        for (key, pointer) in &decl.extract {
            if !(pointer.is_empty() || pointer.starts_with('/')) {
                return Err(ToolBuildError::decl(
                    &name,
                    format!(
                        "extract `{key}`: `{pointer}` is not a JSON Pointer (it must start with `/`, e.g. `/data/id`)"
                    ),
                ));
            }
        }

        // Every `{param}` must name a declared parameter, or calls would fail
        // at run time for a reason the model cannot fix.
        if let Some(properties) = spec.parameters.get("properties").and_then(Value::as_object) {
            let mut used: Vec<(String, &str)> = Vec::new();
            used.extend(url.params().map(|p| (p.to_string(), "URL")));
            for (key, template) in &headers {
                used.extend(template.params().map(|p| (p.to_string(), key.as_str())));
            }
            for (key, template) in &query {
                used.extend(template.params().map(|p| (p.to_string(), key.as_str())));
            }
            if let BodyMapping::Template(body) = &decl.body {
                let mut params = BTreeSet::new();
                body_params(body, &mut params);
                used.extend(params.into_iter().map(|p| (p, "body")));
            }
            for (param, place) in used {
                if !properties.contains_key(&param) {
                    return Err(ToolBuildError::decl(
                        &name,
                        format!(
                            "`{{{param}}}` in the {place} template is not a parameter of the tool; declare it or fix the name"
                        ),
                    ));
                }
            }
        }

        Ok(Self { spec, decl, method, url, headers, query, client })
    }

    /// Fills in the request. Errors are outcomes for the model (a missing
    /// argument) or for the operator (a missing environment variable).
    fn prepare(
        &self,
        arguments: &Value,
        context: &ToolContext,
        secrets: &mut Secrets,
    ) -> Result<(Url, HeaderMap, Option<Vec<u8>>), ToolOutcome> {
        let empty = Map::new();
        let args = arguments.as_object().unwrap_or(&empty);

        let url_text = self.url.render_url(args, secrets).map_err(|e| self.render_error(e, "URL"))?;
        let mut url = Url::parse(&url_text).map_err(|e| {
            ToolOutcome::error_with_hint(
                format!("The arguments do not make a valid URL for `{}`: {e}", self.spec.name),
                "Check the identifying arguments for unusual characters",
            )
        })?;

        let mut pairs = Vec::new();
        for (key, template) in &self.query {
            if let Some(param) = template.sole_param() {
                // A bare `{param}` stands for the argument: absent drops the
                // pair, an array repeats it.
                match args.get(param) {
                    None | Some(Value::Null) => {}
                    Some(Value::Array(items)) => {
                        pairs.extend(items.iter().map(|item| (key.clone(), arg_text(item))));
                    }
                    Some(value) => pairs.push((key.clone(), arg_text(value))),
                }
                continue;
            }
            let value = template.render(args, secrets, str::to_string).map_err(|e| self.render_error(e, key))?;
            pairs.push((key.clone(), value));
        }
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }

        let mut headers = HeaderMap::new();
        for (name, template) in &self.headers {
            if let Some(param) = template.sole_param()
                && args.get(param).is_none_or(Value::is_null)
            {
                continue;
            }
            let text =
                template.render(args, secrets, str::to_string).map_err(|e| self.render_error(e, name.as_str()))?;
            let mut value = HeaderValue::from_str(&text).map_err(|_| {
                // Never quote the value: it may hold a secret.
                ToolOutcome::error_with_hint(
                    format!("The value for the `{name}` header contains characters not allowed in HTTP headers"),
                    "Remove line breaks and control characters from the arguments used in headers",
                )
            })?;
            // Keeps credentials out of reqwest's and hyper's debug output.
            value.set_sensitive(template.uses_env());
            headers.insert(name.clone(), value);
        }
        if !headers.contains_key(IDEMPOTENCY_KEY)
            && let Ok(key) = HeaderValue::from_str(&context.idempotency_key.0)
        {
            headers.insert(HeaderName::from_static(IDEMPOTENCY_KEY), key);
        }

        let body = match &self.decl.body {
            BodyMapping::None => None,
            BodyMapping::Arguments => Some(arguments.clone()),
            BodyMapping::Template(template) => {
                Some(render_body(template, args).map_err(|e| self.render_error(e, "body"))?.unwrap_or(Value::Null))
            }
        };
        let body = match body {
            Some(value) => {
                headers.entry(CONTENT_TYPE).or_insert(HeaderValue::from_static("application/json"));
                Some(serde_json::to_vec(&value).unwrap_or_default())
            }
            None => None,
        };
        Ok((url, headers, body))
    }

    fn render_error(&self, error: RenderError, place: &str) -> ToolOutcome {
        match error {
            RenderError::MissingArgument(param) => ToolOutcome::error_with_hint(
                format!("Missing argument `{param}`, needed for the {place} of `{}`", self.spec.name),
                format!("Call `{}` again with a value for `{param}`", self.spec.name),
            ),
            RenderError::MissingEnv(var) => ToolOutcome::error_with_hint(
                format!("The `{}` tool is not configured: environment variable `{var}` is not set", self.spec.name),
                "This is a deployment problem the arguments cannot fix; tell the user the integration is unavailable or hand off to a human",
            ),
            RenderError::DotSegment(param) => ToolOutcome::error_with_hint(
                format!(
                    "Argument `{param}` of `{}` cannot be `.` or `..`: in the URL's path it would address a different endpoint",
                    self.spec.name
                ),
                format!("Call `{}` again with the actual value for `{param}`", self.spec.name),
            ),
            RenderError::EnvNotUnicode(var) => ToolOutcome::error_with_hint(
                format!(
                    "The `{}` tool is misconfigured: environment variable `{var}` is not valid UTF-8",
                    self.spec.name
                ),
                "This is a deployment problem the arguments cannot fix; hand off to a human",
            ),
        }
    }

    /// Sends the request, retrying transient failures, and interprets the
    /// final response.
    async fn execute(&self, arguments: &Value, context: &ToolContext, secrets: &mut Secrets) -> ToolOutcome {
        let (url, headers, body) = match self.prepare(arguments, context, secrets) {
            Ok(request) => request,
            Err(outcome) => return outcome,
        };
        let policy = &self.decl.retry;
        let max_attempts = policy.max_attempts.max(1);
        let per_attempt = Duration::from_millis(self.decl.timeout_ms);

        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self.client.request(self.method.clone(), url.clone()).headers(headers.clone());
            if let Some(bytes) = &body {
                request = request.body(bytes.clone());
            }
            let result = tokio::time::timeout(per_attempt, send(request)).await;
            let failure = match result {
                Err(_) => Failure::Timeout,
                Ok(Err(error)) if error.is_timeout() => Failure::Timeout,
                Ok(Err(error)) if error.is_builder() => {
                    return ToolOutcome::error(format!(
                        "Could not build the request for `{}`: {}",
                        self.spec.name,
                        describe(error)
                    ));
                }
                Ok(Err(error)) => Failure::Transport { connect: error.is_connect(), detail: describe(error) },
                Ok(Ok(response)) => {
                    let status = response.status;
                    if status.is_success() {
                        return self.success(response, secrets);
                    }
                    if !is_retryable_status(status) {
                        return self.client_error(response, secrets);
                    }
                    Failure::Status { retry_after: response.retry_after, response }
                }
            };

            tracing::debug!(tool = %self.spec.name, attempt, max_attempts, failure = failure.kind(), "HTTP tool attempt failed");

            if let Failure::Status { retry_after: Some(wait), response } = &failure
                && *wait > MAX_RETRY_AFTER
            {
                let detail = detail_suffix_raw(response, secrets);
                return ToolOutcome::Error {
                    message: format!(
                        "HTTP {} from `{}`: the service asked to wait {} s before retrying{detail}",
                        status_text(response.status),
                        self.spec.name,
                        wait.as_secs()
                    ),
                    hint: Some(
                        "The service is rate limiting or unavailable; try again later or do something else meanwhile"
                            .to_string(),
                    ),
                    retryable: true,
                };
            }
            if attempt >= max_attempts {
                return self.exhausted(failure, attempt, secrets);
            }
            let backoff = backoff(policy.initial_backoff_ms, policy.max_backoff_ms, attempt);
            let wait = match &failure {
                // The service's own wait is a floor: retrying sooner only
                // earns another refusal. Longer than MAX_RETRY_AFTER was
                // refused above.
                Failure::Status { retry_after: Some(wait), .. } => (*wait).max(backoff),
                _ => backoff,
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn success(&self, response: RawResponse, secrets: &Secrets) -> ToolOutcome {
        let body = parse_body(&response, secrets);
        let data = match body {
            Body::Json(value) if !self.decl.extract.is_empty() => Value::Object(
                self.decl
                    .extract
                    .iter()
                    .map(|(key, pointer)| (key.clone(), value.pointer(pointer).cloned().unwrap_or(Value::Null)))
                    .collect(),
            ),
            Body::Json(value) => value,
            Body::Text(text) => Value::String(text),
            Body::Empty => Value::Null,
        };
        let data = secrets.scrub_value(data);
        let (data, cut) = fit(data, self.decl.max_result_bytes);
        ToolOutcome::Ok { data, truncated: cut || response.cut }
    }

    /// A final, non-retryable status: 4xx other than 408 and 429, or a
    /// redirect. Redirects are never followed (the client is built that way,
    /// see `rein_providers::default_client`): following one would send the
    /// tool's headers, credentials included, to wherever it points.
    fn client_error(&self, response: RawResponse, secrets: &Secrets) -> ToolOutcome {
        let status = response.status;
        let detail = if status.is_redirection() {
            match &response.location {
                // Scrubbed before it is cut, so no part of a secret is left.
                Some(location) => {
                    format!(": the service redirects the request to {}", cut_detail(&secrets.scrub_str(location)))
                }
                None => ": the service redirects the request elsewhere".to_string(),
            }
        } else {
            detail_suffix(&parse_body(&response, secrets), secrets)
        };
        let hint = match status.as_u16() {
            400 | 422 => {
                "The service rejected the input as invalid; check the argument values and formats, then call again with corrected arguments"
            }
            401 | 403 => {
                "The tool lacks permission for this (credentials missing, expired or insufficient); retrying will not help — tell the user or hand off to a human"
            }
            404 | 410 => {
                "Nothing was found for these arguments; check the id or other identifying values (ask the user if unsure)"
            }
            409 => "The request conflicts with the current state; fetch the current state before trying again",
            413 => "The request is too large; send less data",
            _ if status.is_redirection() => {
                "Redirects are not followed, so that the tool's credentials never reach another address; the tool's URL is probably out of date — retrying will not help, tell the user or hand off to a human"
            }
            _ => "The service refused the request; check the arguments before trying again",
        };
        ToolOutcome::Error {
            message: format!("HTTP {} from `{}`{detail}", status_text(status), self.spec.name),
            hint: Some(hint.to_string()),
            retryable: false,
        }
    }

    /// Every attempt failed transiently.
    fn exhausted(&self, failure: Failure, attempts: u32, secrets: &Secrets) -> ToolOutcome {
        let tries = if attempts == 1 { "1 attempt".to_string() } else { format!("{attempts} attempts") };
        let name = &self.spec.name;
        let later = "; try again later, or hand off to a human if it keeps failing";
        // A request that timed out or broke off after it was sent may have
        // reached the service and been applied all the same; repeating a call
        // that is not idempotent could apply it twice.
        let maybe_applied = matches!(failure, Failure::Timeout | Failure::Transport { connect: false, .. });
        let (message, hint) = match failure {
            Failure::Timeout => (
                format!("`{name}` timed out after {tries} (each limited to {} ms)", self.decl.timeout_ms),
                format!("The service is slow or down{later}"),
            ),
            Failure::Transport { connect: true, detail } => (
                format!("Could not connect to the `{name}` service after {tries}: {detail}"),
                format!("The service is unreachable{later}"),
            ),
            Failure::Transport { connect: false, detail } => (
                format!("The request to `{name}` failed after {tries}: {detail}"),
                format!("The connection to the service is failing{later}"),
            ),
            Failure::Status { response, .. } => {
                let body = parse_body(&response, secrets);
                let detail = detail_suffix(&body, secrets);
                let hint = if response.status == StatusCode::TOO_MANY_REQUESTS {
                    format!("The service is rate limiting this tool{later}")
                } else {
                    format!("The service is failing right now{later}")
                };
                (format!("HTTP {} from `{name}` after {tries}{detail}", status_text(response.status)), hint)
            }
        };
        if maybe_applied && !self.spec.idempotent {
            return ToolOutcome::Error {
                message: format!("{message}; the request may have been applied anyway"),
                hint: Some(
                    "Do not simply call it again: first check whether it took effect (look the result up, or ask the user), or hand off to a human"
                        .to_string(),
                ),
                retryable: false,
            };
        }
        ToolOutcome::Error { message, hint: Some(hint), retryable: true }
    }
}

#[async_trait]
impl Tool for HttpTool {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    async fn call(&self, arguments: Value, context: &ToolContext) -> ToolOutcome {
        let mut secrets = Secrets::default();
        // Nothing here should panic, but a tool must never take the run down
        // with it.
        let outcome = AssertUnwindSafe(self.execute(&arguments, context, &mut secrets)).catch_unwind().await;
        let outcome = outcome.unwrap_or_else(|_| {
            tracing::error!(tool = %self.spec.name, "HTTP tool panicked");
            ToolOutcome::error_with_hint(
                format!("`{}` failed unexpectedly (internal error)", self.spec.name),
                "Do not retry with the same arguments; try another approach or hand off to a human",
            )
        });
        secrets.scrub_outcome(outcome)
    }
}

/// Parses and checks the URL template: parameters are allowed, the
/// environment is not (secrets belong in headers), and with its parameters
/// filled in it must be an absolute `http(s)` URL.
fn parse_url_template(name: &impl std::fmt::Display, url: &str) -> Result<Template, ToolBuildError> {
    if url.contains("${") {
        return Err(ToolBuildError::decl(
            name,
            format!("URL `{url}`: `${{VAR}}` is not expanded in URLs; put credentials in a header or query value"),
        ));
    }
    let template = Template::parse(url, false);
    if template.literal_text().contains(['{', '}']) {
        return Err(ToolBuildError::decl(
            name,
            format!("URL `{url}` has a brace that is not a `{{param}}` placeholder"),
        ));
    }
    let sample: String = template
        .segments()
        .iter()
        .map(|segment| match segment {
            Segment::Literal(text) => text.as_str(),
            Segment::Param(_) | Segment::Env(_) => "x",
        })
        .collect();
    let parsed =
        Url::parse(&sample).map_err(|e| ToolBuildError::decl(name, format!("URL `{url}` is not valid: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(ToolBuildError::decl(name, format!("URL `{url}` must be an absolute http:// or https:// URL")));
    }
    if template.segments().first().is_some_and(|s| !matches!(s, Segment::Literal(text) if text.contains("://"))) {
        return Err(ToolBuildError::decl(
            name,
            format!("URL `{url}`: the scheme and host must be fixed, not taken from a parameter"),
        ));
    }
    Ok(template)
}

/// Collects the parameters a JSON body template refers to.
fn body_params(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => out.extend(Template::parse(s, false).params().map(str::to_string)),
        Value::Array(items) => items.iter().for_each(|v| body_params(v, out)),
        Value::Object(map) => map.values().for_each(|v| body_params(v, out)),
        _ => {}
    }
}

/// Fills in a JSON body template. `Ok(None)` means "leave this out": a string
/// that is exactly `{param}` with no such argument drops its object field
/// (or becomes `null` inside an array).
fn render_body(template: &Value, args: &Map<String, Value>) -> Result<Option<Value>, RenderError> {
    Ok(match template {
        Value::String(s) => {
            let parsed = Template::parse(s, false);
            if let Some(param) = parsed.sole_param() {
                return Ok(args.get(param).cloned());
            }
            let mut unused = Secrets::default();
            Some(Value::String(parsed.render(args, &mut unused, str::to_string)?))
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(render_body(item, args)?.unwrap_or(Value::Null));
            }
            Some(Value::Array(out))
        }
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, item) in map {
                if let Some(value) = render_body(item, args)? {
                    out.insert(key.clone(), value);
                }
            }
            Some(Value::Object(out))
        }
        other => Some(other.clone()),
    })
}

/// What one attempt got back, read in full (up to [`MAX_BODY_BYTES`]).
struct RawResponse {
    status: StatusCode,
    retry_after: Option<Duration>,
    content_type: Option<String>,
    /// Where a redirect points.
    location: Option<String>,
    body: Vec<u8>,
    /// The body was longer than [`MAX_BODY_BYTES`] and was cut.
    cut: bool,
}

/// Why an attempt failed in a way worth retrying.
enum Failure {
    Timeout,
    Transport { connect: bool, detail: String },
    Status { retry_after: Option<Duration>, response: RawResponse },
}

impl Failure {
    fn kind(&self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Transport { connect: true, .. } => "connect",
            Failure::Transport { connect: false, .. } => "transport",
            Failure::Status { .. } => "status",
        }
    }
}

/// Sends one request and reads its body; the caller bounds the whole of it
/// with the per-attempt time-out, so a server that stalls mid-body is a
/// time-out too.
async fn send(request: reqwest::RequestBuilder) -> Result<RawResponse, reqwest::Error> {
    let mut response = request.send().await?;
    let status = response.status();
    let retry_after = response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
    let content_type =
        response.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| v.to_ascii_lowercase());
    let location = response.headers().get(LOCATION).and_then(|v| v.to_str().ok()).map(str::to_string);
    let mut body = Vec::new();
    let mut cut = false;
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_BODY_BYTES - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            cut = true;
            break;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(RawResponse { status, retry_after, content_type, location, body, cut })
}

/// `Retry-After` as delay-seconds or an HTTP-date.
fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

/// Time-outs and broken connections are retried elsewhere; these statuses are
/// the transient ones.
fn is_retryable_status(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::REQUEST_TIMEOUT || status.is_server_error()
}

/// Exponential backoff with full jitter: a uniformly random wait up to
/// `initial * 2^(attempt-1)`, capped, so that clients that failed together do
/// not retry together.
fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let ceiling = initial_ms.saturating_mul(1u64 << exponent).min(max_ms);
    Duration::from_millis(fastrand::u64(0..=ceiling))
}

/// A reqwest error in words, without the URL (its query string may hold a
/// secret) and with the underlying cause, which says what actually happened.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
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

fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// A response body, interpreted.
enum Body {
    Json(Value),
    Text(String),
    Empty,
}

/// JSON when the server says so (or says nothing and it parses), text
/// otherwise. Secrets are scrubbed from the raw text before anything else
/// looks at it.
fn parse_body(response: &RawResponse, secrets: &Secrets) -> Body {
    if response.body.iter().all(u8::is_ascii_whitespace) {
        return Body::Empty;
    }
    let text = secrets.scrub_str(&String::from_utf8_lossy(&response.body));
    let json_expected = response.content_type.as_deref().is_none_or(|ct| ct.contains("json"));
    if json_expected
        && !response.cut
        && let Ok(value) = serde_json::from_str::<Value>(&text)
    {
        return Body::Json(secrets.scrub_value(value));
    }
    Body::Text(text)
}

/// `": <what the server said>"`, or nothing when it said nothing useful.
fn detail_suffix(body: &Body, secrets: &Secrets) -> String {
    match error_detail(body) {
        Some(detail) => format!(": {}", secrets.scrub_str(&detail)),
        None => String::new(),
    }
}

fn detail_suffix_raw(response: &RawResponse, secrets: &Secrets) -> String {
    detail_suffix(&parse_body(response, secrets), secrets)
}

/// The human-readable part of an error body: the usual `message`, `error`,
/// `detail` fields of JSON APIs, or the start of a plain-text body.
fn error_detail(body: &Body) -> Option<String> {
    let text = match body {
        Body::Empty => return None,
        Body::Text(text) => {
            let text = text.trim();
            // An HTML error page says nothing the model can use.
            if text.starts_with('<') {
                return None;
            }
            text.to_string()
        }
        Body::Json(value) => json_message(value).unwrap_or_else(|| value.to_string()),
    };
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return None;
    }
    Some(cut_detail(&text))
}

/// `text` cut to [`MAX_DETAIL_CHARS`] characters, marked when cut.
fn cut_detail(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

fn json_message(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => {
            for key in ["message", "error_description", "detail", "error", "title", "msg", "errors"] {
                if let Some(found) = map.get(key).and_then(json_message) {
                    return Some(found);
                }
            }
            None
        }
        Value::Array(items) => {
            let messages: Vec<String> = items.iter().filter_map(json_message).take(3).collect();
            (!messages.is_empty()).then(|| messages.join("; "))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn retry_after_accepts_seconds_and_dates() {
        assert_eq!(parse_retry_after("0"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        let wait = parse_retry_after(&later).unwrap_or_default();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn backoff_is_bounded() {
        for attempt in 1..40 {
            assert!(backoff(100, 1_000, attempt) <= Duration::from_millis(1_000));
        }
        assert!(backoff(100, 10_000, 1) <= Duration::from_millis(100));
    }

    #[test]
    fn body_templates_substitute_values_and_text() {
        let args = json!({"id": 7, "tags": ["a"], "name": "Ann"});
        let args = args.as_object().cloned().unwrap_or_default();
        let template = json!({
            "id": "{id}",
            "tags": "{tags}",
            "greeting": "Hello {name}!",
            "missing": "{nope}",
            "list": ["{nope}", "{name}"],
            "raw": "{not a param}",
            "n": 1
        });
        let out = render_body(&template, &args);
        assert_eq!(
            out,
            Ok(Some(json!({
                "id": 7,
                "tags": ["a"],
                "greeting": "Hello Ann!",
                "list": [null, "Ann"],
                "raw": "{not a param}",
                "n": 1
            })))
        );
        assert_eq!(render_body(&json!({"x": "a {nope}"}), &args), Err(RenderError::MissingArgument("nope".into())));
    }

    #[test]
    fn error_details_are_found() {
        assert_eq!(error_detail(&Body::Json(json!({"error": {"message": "bad id"}}))), Some("bad id".into()));
        assert_eq!(error_detail(&Body::Json(json!({"errors": [{"msg": "a"}, {"msg": "b"}]}))), Some("a; b".into()));
        assert_eq!(error_detail(&Body::Text("<html>oops</html>".into())), None);
        assert_eq!(error_detail(&Body::Text("  plain\n text ".into())), Some("plain text".into()));
    }

    #[test]
    fn url_templates_are_checked() {
        assert!(parse_url_template(&"t", "https://api.example.com/users/{id}").is_ok());
        assert!(parse_url_template(&"t", "https://api.example.com/users/{id").is_err());
        assert!(parse_url_template(&"t", "https://${HOST}/users").is_err());
        assert!(parse_url_template(&"t", "{base}/users").is_err());
        assert!(parse_url_template(&"t", "ftp://example.com/x").is_err());
        assert!(parse_url_template(&"t", "/relative/{id}").is_err());
    }
}
