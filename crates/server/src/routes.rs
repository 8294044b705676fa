//! The routes. Handlers translate HTTP to [`rein::Operator`] calls and back;
//! the rules (kill switch, leases, resume) live there, shared with the CLI.

use crate::auth::{Admin, Approvals, Auth, Caller, RunsRead, RunsWrite};
use crate::error::ApiError;
use crate::openapi::{self, Doc, schema_of};
use crate::{AppState, callback, hooks, schedule, stream};
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use axum::{Json, Router};
use rein::{
    AgentVersion, ApprovalDecision, Overrides, ResumeAction, RunFilter, RunId, RunOutcome, RunStatus, RunSummary,
    Scope, TenantId, outcome_json,
};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;

type ApiResult<T> = Result<T, ApiError>;

/// Every endpoint: what the OpenAPI document says about it, and its
/// handler. The router and the document are both built from this list.
fn endpoints() -> Vec<(Doc, MethodRouter<Arc<AppState>>)> {
    fn doc(method: &'static str, path: &'static str, summary: &'static str) -> Doc {
        Doc { method, path, summary, body: None, query: None, responses: &[(200, "OK")], scope: None }
    }
    /// An endpoint that needs an API key with `scope`.
    fn keyed(scope: Scope, method: &'static str, path: &'static str, summary: &'static str) -> Doc {
        Doc { scope: Some(scope), ..doc(method, path, summary) }
    }
    use Scope::{Admin as A, Approvals as P, RunsRead as R, RunsWrite as W};
    vec![
        (doc("get", "/healthz", "Liveness"), get(healthz)),
        (doc("get", "/readyz", "Readiness: the store answers"), get(readyz)),
        (keyed(A, "get", "/metrics", "Prometheus metrics (an admin key of the default tenant)"), get(metrics)),
        (doc("get", "/openapi.json", "This document"), get(openapi_document)),
        (
            keyed(R, "get", "/v1/agents", "The tenant's agents: deployed version and kill-switch state"),
            get(list_agents),
        ),
        (
            Doc {
                body: Some(schema_of::<RegisterRequest>),
                responses: &[(201, "Registered (and deployed, unless `activate` is false)")],
                ..keyed(A, "post", "/v1/agents", "Register an agent version from TOML")
            },
            post(register_agent),
        ),
        (
            keyed(R, "get", "/v1/agents/{name}/versions", "The agent's versions, the deployed one, and its deploys"),
            get(agent_versions),
        ),
        (
            Doc {
                body: Some(schema_of::<ActivateRequest>),
                ..keyed(A, "post", "/v1/agents/{name}/activate", "Deploy a registered version")
            },
            post(activate_agent),
        ),
        (
            Doc {
                body: Some(schema_of::<SwitchRequest>),
                ..keyed(A, "post", "/v1/agents/{name}/rollback", "Deploy the version deployed before the current one")
            },
            post(rollback_agent),
        ),
        (
            Doc {
                body: Some(schema_of::<RunRequest>),
                responses: &[
                    (200, "sync: the run's result"),
                    (202, "async: the run was started; its URL"),
                    (201, "stream: text/event-stream of the run's events"),
                ],
                ..keyed(W, "post", "/v1/agents/{name}/runs", "Run the deployed agent on an input")
            },
            post(create_run),
        ),
        (
            Doc {
                body: Some(schema_of::<SwitchRequest>),
                ..keyed(A, "post", "/v1/agents/{name}/disable", "The kill switch: disable the agent")
            },
            post(disable_agent),
        ),
        (
            Doc {
                body: Some(schema_of::<SwitchRequest>),
                ..keyed(A, "post", "/v1/agents/{name}/enable", "Enable the agent again")
            },
            post(enable_agent),
        ),
        (
            keyed(R, "get", "/v1/agents/{name}/schedules", "The agent's schedules with their next fire times"),
            get(schedule::list),
        ),
        (
            Doc { query: Some(schema_of::<ListQuery>), ..keyed(R, "get", "/v1/runs", "Runs, newest first") },
            get(list_runs),
        ),
        (keyed(R, "get", "/v1/runs/{id}", "One run: status, usage, outcome, what it waits for"), get(get_run)),
        (
            Doc {
                query: Some(schema_of::<EventsQuery>),
                ..keyed(
                    R,
                    "get",
                    "/v1/runs/{id}/events",
                    "The run's events; text/event-stream resumes after Last-Event-ID",
                )
            },
            get(run_events),
        ),
        (
            Doc {
                body: Some(schema_of::<CancelRequest>),
                responses: &[(200, "Cancelled"), (202, "Its holder stops it at its next step")],
                ..keyed(W, "post", "/v1/runs/{id}/cancel", "Cancel a run")
            },
            post(cancel_run),
        ),
        (keyed(P, "get", "/v1/approvals", "Approval requests waiting for a decision"), get(list_approvals)),
        (keyed(P, "get", "/v1/approvals/{id}", "One approval request with its preview"), get(get_approval)),
        (
            Doc {
                body: Some(schema_of::<DecisionRequest>),
                ..keyed(P, "post", "/v1/approvals/{id}/approve", "Approve; the run goes on")
            },
            post(approve),
        ),
        (
            Doc {
                body: Some(schema_of::<DecisionRequest>),
                ..keyed(P, "post", "/v1/approvals/{id}/reject", "Reject; the model is told")
            },
            post(reject),
        ),
        (
            Doc {
                body: Some(schema_of::<DecisionRequest>),
                ..keyed(
                    P,
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
///
/// The run is driven under a queue lease, as a worker would drive it, so
/// that if this server dies while driving it a worker takes it over.
async fn detached(state: &AppState, run: RunId, action: ResumeAction) -> Result<RunOutcome, rein::OperateError> {
    let store = state.operator.store().clone();
    let owner = store.owner().to_owned();
    let entry = queued_again(store.as_ref(), run).await?;
    let ttl_ms = u64::try_from(state.config.lease_ttl.as_millis()).unwrap_or(u64::MAX);
    if !store.claim_run(&entry, &owner, ttl_ms, rein::now_ms()).await? {
        return Err(rein::OperateError::Held { run, owner: "a worker holding its queue lease".into() });
    }
    let operator = state.operator.clone();
    let runtime = state.runtime();
    let task = tokio::spawn(async move { operator.resume(&runtime, run, action, false, None).await });
    let result = match task.await {
        Ok(result) => result,
        Err(error) => Err(rein::OperateError::Runtime(rein::RuntimeError::InvalidAgent(format!(
            "the run's task failed: {error}"
        )))),
    };
    // Finished or suspended again — or left as it was by a refused
    // decision — it leaves the queue; left running by a failure, it goes
    // back to it for a worker to take up.
    let running = match &result {
        Ok(_) => false,
        Err(_) => store.summary(run).await.ok().flatten().is_some_and(|s| s.status == rein::RunStatus::Running),
    };
    let settled = if running { store.release(run, &owner).await } else { store.complete(run, &owner).await };
    if let Err(error) = settled {
        tracing::warn!(%run, %error, "cannot settle the run's queue lease; it expires on its own");
    }
    result
}

/// What the queue needs to know of `run` to let a worker take it over: its
/// tenant, agent, version and input, from its `run_started`.
async fn queued_again(store: &dyn rein::Store, run: RunId) -> Result<rein::QueuedRun, rein::OperateError> {
    let events = store.events(run).await?;
    match events.first().map(|e| (&e.kind, e.at_ms)) {
        Some((rein::EventKind::RunStarted { agent, agent_version, input, tenant, .. }, at_ms)) => Ok(rein::QueuedRun {
            run_id: run,
            tenant: tenant.clone(),
            agent: agent.clone(),
            agent_version: agent_version.clone(),
            input: input.clone(),
            enqueued_at_ms: at_ms,
        }),
        _ => Err(rein::OperateError::NotStarted(run)),
    }
}

fn task_failed(error: tokio::task::JoinError) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("the run's task failed: {error}"))
}

/// Prometheus exposition text. The figures span tenants, so only operators
/// (admins of the default tenant) may read them.
async fn metrics(State(state): State<Arc<AppState>>, Auth(caller, ..): Auth<Admin>) -> ApiResult<Response> {
    if !caller.is_operator() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "missing_scope",
            "metrics span every tenant: they need an admin key of the default tenant",
        ));
    }
    let text = state.metrics.render(state.operator.store()).await;
    Ok(([("content-type", "text/plain; version=0.0.4")], text).into_response())
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

async fn list_agents(State(state): State<Arc<AppState>>, Auth(caller, ..): Auth<RunsRead>) -> ApiResult<Json<Value>> {
    let records = state.operator.store().agents().await?;
    let agents: Vec<Value> = records
        .into_iter()
        .filter(|record| record.tenant == caller.tenant)
        .map(|record| {
            json!({
                "name": record.name,
                "version": record.active_version,
                "enabled": record.enabled,
                "versions": record.versions,
                "latest_version": record.latest_version,
            })
        })
        .collect();
    Ok(Json(json!({ "agents": agents })))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct RegisterRequest {
    /// The agent file's TOML text.
    toml: String,
    /// Names it in diagnostics; relative paths inside resolve against it.
    #[serde(default)]
    path: Option<String>,
    /// Deploy it at once (the default); `false` only registers it, to be
    /// activated later.
    #[serde(default = "yes")]
    activate: bool,
    /// Who deploys it, recorded with the key.
    #[serde(default)]
    by: Option<String>,
}

fn yes() -> bool {
    true
}

/// Registers an agent version from TOML, and deploys it unless asked not to.
async fn register_agent(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Admin>,
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
    let by = caller.actor(request.by);
    let served = state.serve_agent(&caller.tenant, definition, &by, request.activate).await?;
    let warnings: Vec<String> = warnings.iter().map(ToString::to_string).collect();
    let body = json!({
        "name": served.agent.name(),
        "version": served.agent.version().0,
        "active": request.activate,
        "warnings": warnings,
    });
    Ok((StatusCode::CREATED, Json(body)))
}

async fn agent_versions(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<RunsRead>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = state.owned_agent(&caller.tenant, &name).await?;
    let store = state.operator.store();
    let versions: Vec<Value> = store
        .agent_versions(&name)
        .await?
        .into_iter()
        .map(|v| {
            let active = record.active_version.as_deref() == Some(v.version.as_str());
            json!({ "version": v.version, "registered_at_ms": v.registered_at_ms, "active": active })
        })
        .collect();
    let deploys = store.activations(&name).await?;
    Ok(Json(json!({
        "name": name,
        "active_version": record.active_version,
        "versions": versions,
        "deploys": deploys,
    })))
}

#[derive(Deserialize, schemars::JsonSchema)]
struct ActivateRequest {
    /// A registered version, or a unique prefix of one.
    version: String,
    #[serde(default)]
    by: Option<String>,
}

async fn activate_agent(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Admin>,
    Path(name): Path<String>,
    Body(request): Body<ActivateRequest>,
) -> ApiResult<Json<Value>> {
    state.owned_agent(&caller.tenant, &name).await?;
    let wanted = request.version.trim().to_ascii_lowercase();
    let versions = state.operator.store().agent_versions(&name).await?;
    let mut matching = versions.iter().filter(|v| !wanted.is_empty() && v.version.starts_with(&wanted));
    let version = match (matching.next(), matching.next()) {
        (Some(v), None) => AgentVersion(v.version.clone()),
        (None, _) => return Err(ApiError::not_found(format!("agent `{name}` has no version `{wanted}`"))),
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_request("ambiguous_id", format!("`{wanted}` matches several versions")));
        }
    };
    let served = state.version(&name, &version).await?;
    hooks::check_unique(&state, &served.definition).await?;
    state.operator.activate(&name, &version, &caller.actor(request.by)).await?;
    Ok(Json(json!({ "name": name, "active_version": version.0 })))
}

async fn rollback_agent(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Admin>,
    Path(name): Path<String>,
    OptionalBody(request): OptionalBody<SwitchRequest>,
) -> ApiResult<Json<Value>> {
    state.owned_agent(&caller.tenant, &name).await?;
    let version = state.operator.roll_back(&name, &caller.actor(request.by)).await?;
    Ok(Json(json!({ "name": name, "active_version": version.0 })))
}

#[derive(Deserialize, Default, schemars::JsonSchema)]
struct SwitchRequest {
    #[serde(default)]
    by: Option<String>,
}

async fn disable_agent(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Admin>,
    Path(name): Path<String>,
    OptionalBody(request): OptionalBody<SwitchRequest>,
) -> ApiResult<Json<Value>> {
    state.owned_agent(&caller.tenant, &name).await?;
    let by = caller.actor(request.by);
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
    Auth(caller, ..): Auth<Admin>,
    Path(name): Path<String>,
    OptionalBody(request): OptionalBody<SwitchRequest>,
) -> ApiResult<Json<Value>> {
    state.owned_agent(&caller.tenant, &name).await?;
    let by = caller.actor(request.by);
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
    Auth(caller, ..): Auth<RunsWrite>,
    Path(name): Path<String>,
    Body(request): Body<RunRequest>,
) -> ApiResult<Response> {
    let (record, served) = state.agent(&caller.tenant, &name).await?;
    if !record.enabled {
        return Err(rein::OperateError::Disabled(name).into());
    }
    state.limits.admit_run(&state, &caller.tenant).await?;
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
            let drive = state.drive_here(&caller.tenant, &served, request.input, run);
            let outcome = tokio::spawn(drive).await.map_err(task_failed)??;
            Ok(Json(outcome_json(&outcome)).into_response())
        }
        Mode::Async => {
            state.enqueue(&caller.tenant, &served, request.input, run).await?;
            if let Some((url, secret)) = request.callback_url.zip(secret) {
                let client = state.operator.client().clone();
                let waiting = state.clone();
                state
                    .spawn(async move {
                        if let Some(outcome) = waiting.outcome_when_done(run).await {
                            let body = serde_json::to_vec(&outcome_json(&outcome)).unwrap_or_default();
                            callback::deliver(&client, &url, &secret, body).await;
                        }
                    })
                    .await;
            }
            Ok(accepted(run))
        }
        Mode::Stream => {
            let drive = state.drive_here(&caller.tenant, &served, request.input, run);
            state
                .spawn(async move {
                    if let Err(error) = drive.await {
                        tracing::error!(%run, %error, "streamed run failed to run");
                    }
                })
                .await;
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

async fn list_runs(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<RunsRead>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let status = match query.status.as_deref() {
        None => None,
        Some(text) => Some(
            RunStatus::parse(text)
                .ok_or_else(|| ApiError::bad_request("bad_request", format!("unknown status `{text}`")))?,
        ),
    };
    let limit = query.limit.unwrap_or(50).min(1000);
    let filter = RunFilter {
        tenant: Some(caller.tenant),
        agent: query.agent,
        status,
        since_ms: query.since_ms,
        limit: Some(limit),
    };
    let runs: Vec<RunSummary> = state.operator.store().runs(&filter).await?;
    Ok(Json(json!({ "runs": runs })))
}

/// Run `id` (a full id: prefixes would let one tenant probe for another's
/// ids), if it is `caller`'s. Another tenant's run is as absent as one that
/// never existed.
async fn resolve(state: &AppState, caller: &Caller, id: &str) -> ApiResult<RunId> {
    let not_found = || ApiError::not_found(format!("no run {id}"));
    let run = RunId::parse(id.trim()).ok_or_else(not_found)?;
    owns_run(state, &caller.tenant, run).await.map_err(|_| not_found())?;
    Ok(run)
}

async fn owns_run(state: &AppState, tenant: &TenantId, run: RunId) -> ApiResult<()> {
    match state.operator.store().summary(run).await? {
        Some(summary) if &summary.tenant == tenant => Ok(()),
        _ => Err(ApiError::not_found(format!("no run {run}"))),
    }
}

async fn get_run(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<RunsRead>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let run = resolve(&state, &caller, &id).await?;
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
    Auth(caller, ..): Auth<RunsRead>,
    Path(id): Path<String>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let run = resolve(&state, &caller, &id).await?;
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
    Auth(caller, ..): Auth<RunsWrite>,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<CancelRequest>,
) -> ApiResult<Response> {
    let run = resolve(&state, &caller, &id).await?;
    let by = caller.actor(request.by);
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

async fn list_approvals(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Approvals>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!({ "approvals": state.operator.waiting_approvals(Some(&caller.tenant)).await? })))
}

/// The waiting approval `id`, if its run is `caller`'s.
async fn find_approval(state: &AppState, caller: &Caller, id: &str) -> ApiResult<rein::WaitingApproval> {
    let waiting = state.operator.find_approval(id).await?;
    owns_run(state, &caller.tenant, waiting.run_id)
        .await
        .map_err(|_| rein::OperateError::NoSuchApproval(id.to_owned()))?;
    Ok(waiting)
}

async fn get_approval(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Approvals>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(serde_json::to_value(find_approval(&state, &caller, &id).await?).unwrap_or_default()))
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
    caller: &Caller,
    id: &str,
    decision: impl FnOnce(String) -> ApprovalDecision,
) -> ApiResult<Json<Value>> {
    let waiting = find_approval(state, caller, id).await?;
    let action = ResumeAction::Decide(vec![decision(waiting.action.call_id)]);
    let outcome = detached(state, waiting.run_id, action).await?;
    Ok(Json(outcome_json(&outcome)))
}

async fn approve(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Approvals>,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<DecisionRequest>,
) -> ApiResult<Json<Value>> {
    let by = caller.actor(request.by);
    decide(&state, &caller, &id, |call_id| ApprovalDecision::Approve { call_id, by }).await
}

async fn reject(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Approvals>,
    Path(id): Path<String>,
    OptionalBody(request): OptionalBody<DecisionRequest>,
) -> ApiResult<Json<Value>> {
    let by = caller.actor(request.by);
    let reason = request.reason;
    decide(&state, &caller, &id, |call_id| ApprovalDecision::Reject { call_id, by, reason }).await
}

async fn edit(
    State(state): State<Arc<AppState>>,
    Auth(caller, ..): Auth<Approvals>,
    Path(id): Path<String>,
    Body(request): Body<DecisionRequest>,
) -> ApiResult<Json<Value>> {
    let Some(arguments) = request.arguments else {
        return Err(ApiError::bad_request("bad_request", "`arguments` (the edited arguments) is required"));
    };
    let by = caller.actor(request.by);
    decide(&state, &caller, &id, |call_id| ApprovalDecision::Edit { call_id, by, arguments }).await
}
