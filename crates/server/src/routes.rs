//! The routes. Handlers translate HTTP to [`rein::Operator`] calls and back;
//! the rules (kill switch, leases, resume) live there, shared with the CLI.

use crate::error::ApiError;
use crate::openapi::{self, Doc, schema_of};
use crate::{AppState, callback, hooks, schedule, stream};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use rein::{
    ApprovalDecision, Overrides, ResumeAction, RunFilter, RunId, RunOutcome, RunStatus, RunSummary, outcome_json,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type ApiResult<T> = Result<T, ApiError>;

/// Every endpoint: what the OpenAPI document says about it, and its
/// handler. The router and the document are both built from this list.
fn endpoints() -> Vec<(Doc, MethodRouter<Arc<AppState>>)> {
    fn doc(method: &'static str, path: &'static str, summary: &'static str) -> Doc {
        Doc { method, path, summary, body: None, query: None, responses: &[(200, "OK")] }
    }
    vec![
        (doc("get", "/healthz", "Liveness"), get(healthz)),
        (doc("get", "/readyz", "Readiness: the store answers"), get(readyz)),
        (doc("get", "/metrics", "Prometheus metrics"), get(metrics)),
        (doc("get", "/openapi.json", "This document"), get(openapi_document)),
        (doc("get", "/v1/agents", "Agents served here, with their versions and kill-switch state"), get(list_agents)),
        (
            Doc {
                body: Some(schema_of::<RegisterRequest>),
                responses: &[(201, "Registered and served")],
                ..doc("post", "/v1/agents", "Register an agent version from TOML and serve it")
            },
            post(register_agent),
        ),
        (
            Doc {
                body: Some(schema_of::<RunRequest>),
                responses: &[
                    (200, "sync: the run's result"),
                    (202, "async: the run was started; its URL"),
                    (201, "stream: text/event-stream of the run's events"),
                ],
                ..doc("post", "/v1/agents/{name}/runs", "Run the agent on an input")
            },
            post(create_run),
        ),
        (
            Doc {
                body: Some(schema_of::<SwitchRequest>),
                ..doc("post", "/v1/agents/{name}/disable", "The kill switch: disable the agent")
            },
            post(disable_agent),
        ),
        (
            Doc {
                body: Some(schema_of::<SwitchRequest>),
                ..doc("post", "/v1/agents/{name}/enable", "Enable the agent again")
            },
            post(enable_agent),
        ),
        (
            doc("get", "/v1/agents/{name}/schedules", "The agent's schedules with their next fire times"),
            get(schedule::list),
        ),
        (Doc { query: Some(schema_of::<ListQuery>), ..doc("get", "/v1/runs", "Runs, newest first") }, get(list_runs)),
        (doc("get", "/v1/runs/{id}", "One run: status, usage, outcome, what it waits for"), get(get_run)),
        (
            Doc {
                query: Some(schema_of::<EventsQuery>),
                ..doc("get", "/v1/runs/{id}/events", "The run's events; text/event-stream resumes after Last-Event-ID")
            },
            get(run_events),
        ),
        (
            Doc {
                body: Some(schema_of::<CancelRequest>),
                responses: &[(200, "Cancelled"), (202, "Its holder stops it at its next step")],
                ..doc("post", "/v1/runs/{id}/cancel", "Cancel a run")
            },
            post(cancel_run),
        ),
        (doc("get", "/v1/approvals", "Approval requests waiting for a decision"), get(list_approvals)),
        (doc("get", "/v1/approvals/{id}", "One approval request with its preview"), get(get_approval)),
        (
            Doc {
                body: Some(schema_of::<DecisionRequest>),
                ..doc("post", "/v1/approvals/{id}/approve", "Approve; the run goes on")
            },
            post(approve),
        ),
        (
            Doc {
                body: Some(schema_of::<DecisionRequest>),
                ..doc("post", "/v1/approvals/{id}/reject", "Reject; the model is told")
            },
            post(reject),
        ),
        (
            Doc {
                body: Some(schema_of::<DecisionRequest>),
                ..doc(
                    "post",
                    "/v1/approvals/{id}/edit",
                    "Approve with edited arguments, checked against the tool's schema",
                )
            },
            post(edit),
        ),
        (
            Doc {
                body: Some(schema_of::<Value>),
                responses: &[(202, "The delivery started the agent: the run's id and URL")],
                ..doc("post", "/v1/hooks/{name}", "A signed webhook delivery: starts the agent declaring the hook")
            },
            post(hooks::receive),
        ),
    ]
}

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    let mut by_path: Vec<(&'static str, MethodRouter<Arc<AppState>>)> = Vec::new();
    for (doc, handler) in endpoints() {
        match by_path.iter_mut().find(|(path, _)| *path == doc.path) {
            Some((_, existing)) => *existing = std::mem::take(existing).merge(handler),
            None => by_path.push((doc.path, handler)),
        }
    }
    let mut router = Router::new();
    for (path, handler) in by_path {
        router = router.route(path, handler);
    }
    router
        .fallback(|| async { ApiError::not_found("no such endpoint") })
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}

async fn openapi_document() -> Json<Value> {
    let docs: Vec<Doc> = endpoints().into_iter().map(|(doc, _)| doc).collect();
    Json(openapi::document(&docs))
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store answers.
async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let filter = RunFilter { limit: Some(1), ..RunFilter::default() };
    match state.operator.store().runs(&filter).await {
        Ok(_) => Json(json!({ "status": "ready" })).into_response(),
        Err(error) => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", error.to_string()).into_response()
        }
    }
}

/// Takes `run` up with `action` on a task of its own and waits for it: a
/// client that goes away (a time-out, a closed connection) must not stop a
/// run halfway through a step.
async fn detached(state: &AppState, run: RunId, action: ResumeAction) -> Result<RunOutcome, rein::OperateError> {
    let operator = state.operator.clone();
    let runtime = state.runtime();
    let task = tokio::spawn(async move { operator.resume(&runtime, run, action, false, None).await });
    match task.await {
        Ok(result) => result,
        Err(error) => Err(rein::OperateError::Runtime(rein::RuntimeError::InvalidAgent(format!(
            "the run's task failed: {error}"
        )))),
    }
}

fn task_failed(error: tokio::task::JoinError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the run's task failed: {error}"))
}

/// Prometheus exposition text.
async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(state.operator.store()).await;
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// A JSON body, with a structured error when it is not valid.
struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(request, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(rejection) => Err(ApiError::new(rejection.status(), "bad_request", rejection.body_text())),
        }
    }
}

/// A JSON body that may be left out (an empty body is `T::default()`).
struct OptionalBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> axum::extract::FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(request, state)
            .await
            .map_err(|rejection| ApiError::new(rejection.status(), "bad_request", rejection.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(OptionalBody)
            .map_err(|error| ApiError::bad_request("bad_request", format!("the body is not valid JSON here: {error}")))
    }
}

// ----- agents ---------------------------------------------------------------

async fn list_agents(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    let records = state.operator.store().agents().await?;
    let served: Vec<Value> = state
        .agents
        .read()
        .map(|agents| {
            agents
                .values()
                .map(|s| {
                    let record = records.iter().find(|r| r.name == s.agent.name());
                    json!({
                        "name": s.agent.name(),
                        "version": s.agent.version().0,
                        "enabled": record.is_none_or(|r| r.enabled),
                        "versions": record.map_or(1, |r| r.versions),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(json!({ "agents": served })))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct RegisterRequest {
    /// The agent file's TOML text.
    toml: String,
    /// Names it in diagnostics; relative paths inside resolve against it.
    #[serde(default)]
    path: Option<String>,
}

/// Registers an agent version from TOML and serves it from now on.
async fn register_agent(
    State(state): State<Arc<AppState>>,
    Body(request): Body<RegisterRequest>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let path = std::path::PathBuf::from(request.path.unwrap_or_else(|| "agent.toml".into()));
    let (definition, warnings) =
        rein::load_definition_str(&path, &request.toml, &Overrides::default()).map_err(|error| match error {
            rein::LoadError::Config(config) => {
                let diagnostics: Vec<String> = config.diagnostics().iter().map(ToString::to_string).collect();
                let message = if diagnostics.is_empty() { config.to_string() } else { diagnostics.join("\n") };
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_agent", message)
            }
            other => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_agent", other.to_string()),
        })?;
    let served = state.serve_agent(definition).await?;
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    let body = json!({ "name": served.agent.name(), "version": served.agent.version().0, "warnings": warnings });
    Ok((StatusCode::CREATED, Json(body)))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct SwitchRequest {
    #[serde(default)]
    by: Option<String>,
}

async fn disable_agent(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    OptionalBody(request): OptionalBody<SwitchRequest>,
) -> ApiResult<Json<Value>> {
    let by = request.by.unwrap_or_else(|| "api".into());
    let store = state.operator.store();
    store.set_agent_enabled(&name, false, &by, rein::now_ms()).await?;
    // Runs driven by live processes stop at their next step; runs nobody
    // drives are cancelled here.
    let mut cancelled = Vec::new();
    for (summary, _) in store.unfinished_runs().await? {
        if summary.agent != name || state.operator.check_free(summary.run_id, false).await.is_err() {
            continue;
        }
        let reason = format!("agent {name} was disabled by {by}");
        if let Ok(outcome) = detached(&state, summary.run_id, ResumeAction::Cancel { reason }).await {
            cancelled.push(outcome.run_id.to_string());
        }
    }
    Ok(Json(json!({ "agent": name, "enabled": false, "cancelled": cancelled })))
}

async fn enable_agent(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    OptionalBody(request): OptionalBody<SwitchRequest>,
) -> ApiResult<Json<Value>> {
    let by = request.by.unwrap_or_else(|| "api".into());
    state.operator.store().set_agent_enabled(&name, true, &by, rein::now_ms()).await?;
    Ok(Json(json!({ "agent": name, "enabled": true })))
}

// ----- runs -----------------------------------------------------------------

#[derive(Deserialize, Clone, Copy, Default, PartialEq, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Sync,
    Async,
    Stream,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct RunRequest {
    input: String,
    #[serde(default)]
    mode: Mode,
    /// For `async`: where to POST the result, signed.
    #[serde(default)]
    callback_url: Option<String>,
}

async fn create_run(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    Body(request): Body<RunRequest>,
) -> ApiResult<Response> {
    let served = state.agent(&name)?;
    if !state.operator.store().agent_enabled(&name).await? {
        return Err(rein::OperateError::Disabled(name).into());
    }
    let secret = match (&request.callback_url, &state.config.callback_secret) {
        (Some(_), _) if request.mode != Mode::Async => {
            return Err(ApiError::bad_request("bad_request", "callback_url is for mode `async`"));
        }
        (Some(url), _) if !(url.starts_with("http://") || url.starts_with("https://")) => {
            return Err(ApiError::bad_request("bad_request", "callback_url must be an http(s) URL"));
        }
        (Some(_), None) => {
            return Err(ApiError::bad_request(
                "callbacks_disabled",
                "this server has no callback signing secret (start it with REIN_CALLBACK_SECRET set)",
            ));
        }
        (_, secret) => secret.clone(),
    };
    if let Some(url) = &request.callback_url
        && !state.config.allow_private_callbacks
        && let Some(why) = callback::refuse_private(url).await
    {
        return Err(ApiError::bad_request("bad_callback_url", why));
    }
    let run = RunId::new();
    match request.mode {
        Mode::Sync => {
            let operator = state.operator.clone();
            let runtime = state.runtime();
            let drive = async move { operator.start(&runtime, &served.agent, request.input, run, None).await };
            let outcome = tokio::spawn(drive).await.map_err(task_failed)??;
            Ok(Json(outcome_json(&outcome)).into_response())
        }
        Mode::Async => {
            let callback = request.callback_url.zip(secret);
            state.start_in_background(served.agent.clone(), request.input, run, "async", callback).await;
            Ok(accepted(run))
        }
        Mode::Stream => {
            state.start_in_background(served.agent.clone(), request.input, run, "stream", None).await;
            Ok(stream::events(state.clone(), run, None).into_response())
        }
    }
}

/// 202 for a run started in the background: where to follow it.
pub(crate) fn accepted(run: RunId) -> Response {
    let body = json!({
        "run_id": run.to_string(),
        "status": "running",
        "url": format!("/v1/runs/{run}"),
        "events_url": format!("/v1/runs/{run}/events"),
    });
    (StatusCode::ACCEPTED, [("location", format!("/v1/runs/{run}"))], Json(body)).into_response()
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ListQuery {
    agent: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
    /// Only runs started at or after this time (Unix ms).
    since_ms: Option<u64>,
}

async fn list_runs(State(state): State<Arc<AppState>>, Query(query): Query<ListQuery>) -> ApiResult<Json<Value>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(
            RunStatus::parse(text)
                .ok_or_else(|| ApiError::bad_request("bad_request", format!("unknown status `{text}`")))?,
        ),
    };
    let limit = query.limit.unwrap_or(50).min(1000);
    let filter = RunFilter { agent: query.agent, status, limit: Some(limit) };
    let runs: Vec<RunSummary> = state
        .operator
        .store()
        .runs(&filter)
        .await?
        .into_iter()
        .filter(|r| query.since_ms.is_none_or(|since| r.started_at_ms >= since))
        .collect();
    Ok(Json(json!({ "runs": runs })))
}

async fn resolve(state: &AppState, id: &str) -> ApiResult<RunId> {
    Ok(state.operator.store().resolve(id).await?)
}

async fn get_run(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let run = resolve(&state, &id).await?;
    let events = state.operator.store().events(run).await?;
    let record = rein::RunRecord::from_events(&events).ok_or_else(|| ApiError::not_found("run has no events"))?;
    let outcome = rein::outcome_of(&events);
    Ok(Json(json!({
        "run_id": run.to_string(),
        "agent": record.agent,
        "agent_version": record.agent_version,
        "status": record.status.as_str(),
        "input": record.input,
        "started_at_ms": record.started_at_ms,
        "steps": record.steps.len(),
        "usage": record.usage,
        "cost_usd": record.cost_usd,
        "outcome": outcome.as_ref().map(outcome_json),
        "pending": rein::pending_actions(&events),
    })))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct EventsQuery {
    /// Events after this seq (as `Last-Event-ID` does for streams).
    after: Option<u64>,
}

/// The run's events: JSON, or a resumable event stream when the client
/// accepts `text/event-stream`.
async fn run_events(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run = resolve(&state, &id).await?;
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let after = last_event_id.or(query.after);
    let wants_stream =
        headers.get("accept").and_then(|v| v.to_str().ok()).is_some_and(|accept| accept.contains("text/event-stream"));
    if wants_stream {
        return Ok(stream::events(state.clone(), run, after).into_response());
    }
    let events = state.operator.store().events(run).await?;
    let events: Vec<_> = events.into_iter().filter(|e| after.is_none_or(|after| e.seq > after)).collect();
    Ok(Json(json!({ "run_id": run.to_string(), "events": events })).into_response())
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct CancelRequest {
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    by: Option<String>,
}

/// Cancels a run: at once when nobody drives it, otherwise at its holder's
/// next step boundary (202).
async fn cancel_run(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<CancelRequest>,
) -> ApiResult<Response> {
    let run = resolve(&state, &id).await?;
    let by = request.by.unwrap_or_else(|| "api".into());
    let reason = request.reason.unwrap_or_else(|| "cancelled through the API".into());
    let store = state.operator.store();
    if let Some(outcome) = rein::outcome_of(&store.events(run).await?) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "run_finished",
            format!("run {run} already finished as {}", outcome.status),
        ));
    }
    store.request_cancel(run, &by, &reason, rein::now_ms()).await?;
    let action = ResumeAction::Cancel { reason: format!("cancelled by {by}: {reason}") };
    match detached(&state, run, action).await {
        Ok(outcome) => Ok(Json(outcome_json(&outcome)).into_response()),
        Err(rein::OperateError::Held { .. }) => {
            let body = json!({ "run_id": run.to_string(), "status": "cancelling" });
            Ok((StatusCode::ACCEPTED, Json(body)).into_response())
        }
        Err(error) => Err(error.into()),
    }
}

// ----- approvals ------------------------------------------------------------

async fn list_approvals(State(state): State<Arc<AppState>>) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "approvals": state.operator.waiting_approvals().await? })))
}

async fn get_approval(State(state): State<Arc<AppState>>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(serde_json::to_value(state.operator.find_approval(&id).await?).unwrap_or_default()))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct DecisionRequest {
    #[serde(default)]
    by: Option<String>,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

async fn decide(
    state: &AppState,
    id: &str,
    decision: impl FnOnce(String) -> ApprovalDecision,
) -> ApiResult<Json<Value>> {
    let waiting = state.operator.find_approval(id).await?;
    let action = ResumeAction::Decide(vec![decision(waiting.action.call_id)]);
    let outcome = detached(state, waiting.run_id, action).await?;
    Ok(Json(outcome_json(&outcome)))
}

async fn approve(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<DecisionRequest>,
) -> ApiResult<Json<Value>> {
    let by = request.by.unwrap_or_else(|| "api".into());
    decide(&state, &id, |call_id| ApprovalDecision::Approve { call_id, by }).await
}

async fn reject(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<DecisionRequest>,
) -> ApiResult<Json<Value>> {
    let by = request.by.unwrap_or_else(|| "api".into());
    let reason = request.reason;
    decide(&state, &id, |call_id| ApprovalDecision::Reject { call_id, by, reason }).await
}

async fn edit(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Body(request): Body<DecisionRequest>,
) -> ApiResult<Json<Value>> {
    let Some(arguments) = request.arguments else {
        return Err(ApiError::bad_request("bad_request", "`arguments` (the edited arguments) is required"));
    };
    let by = request.by.unwrap_or_else(|| "api".into());
    decide(&state, &id, |call_id| ApprovalDecision::Edit { call_id, by, arguments }).await
}
