//! Webhook triggers: `POST /v1/hooks/{name}` starts the agent that declares
//! webhook `name` (`[[webhooks]]` in its file) with the request's JSON
//! payload mapped to its input.
//!
//! A delivery is signed as the server's callbacks are: `X-Rein-Signature:
//! sha256=HEX`, the HMAC-SHA256 of `{X-Rein-Timestamp}.{raw body}` with the
//! secret in the webhook's `secret_env` (read when the delivery arrives,
//! never stored). The timestamp must be within the webhook's `tolerance` of
//! now. Each delivery names itself in `X-Rein-Delivery`; a delivery id seen
//! before for the hook starts nothing (409 with the run it started), so a
//! sender may retry safely. A signed request replayed under another delivery
//! id is caught too: the signature itself is recorded beside the delivery
//! id, so a timestamp and body already seen start nothing either.

use crate::error::ApiError;
use crate::{AppState, Served};
use axum::Json;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use rein::{RunId, TenantId, WebhookDecl};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::Arc;

/// The sender's id for a delivery; a retry carries the same one.
pub const DELIVERY_HEADER: &str = "x-rein-delivery";

/// Longest delivery id accepted, in characters.
const MAX_DELIVERY_ID: usize = 200;

/// The webhook a delivery is for, and the agent it starts.
struct Hook {
    served: Arc<Served>,
    tenant: TenantId,
    decl: WebhookDecl,
}

/// The deployed agent declaring webhook `name`. Names are unique across
/// deployed agents; should two declare one, neither is started.
async fn find(state: &AppState, name: &str) -> Result<Hook, ApiError> {
    let holders: Vec<Hook> = state
        .deployed()
        .await?
        .into_iter()
        .flat_map(|(record, served)| {
            served
                .definition
                .webhooks
                .iter()
                .filter(|hook| hook.name == name)
                .map(|decl| Hook { served: served.clone(), tenant: record.tenant.clone(), decl: decl.clone() })
                .collect::<Vec<_>>()
        })
        .collect();
    let mut holders = holders.into_iter();
    match (holders.next(), holders.next()) {
        (Some(hook), None) => Ok(hook),
        (None, _) => Err(ApiError::not_found(format!("no webhook named `{name}` is served here"))),
        (Some(first), Some(second)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "hook_conflict",
            format!(
                "agents `{}` and `{}` both declare webhook `{name}`; deploy only one of them",
                first.served.agent.name(),
                second.served.agent.name()
            ),
        )),
    }
}

/// Refuses (409 `hook_conflict`) to deploy `definition` when another
/// deployed agent already declares one of its webhooks; a new version of
/// the same agent replaces the old one, so its own webhooks do not count.
pub(crate) async fn check_unique(state: &AppState, definition: &rein::AgentDefinition) -> Result<(), ApiError> {
    if definition.webhooks.is_empty() {
        return Ok(());
    }
    let deployed = state.deployed().await?;
    for hook in &definition.webhooks {
        for (record, served) in &deployed {
            if record.name != definition.spec.name && served.definition.webhooks.iter().any(|h| h.name == hook.name) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "hook_conflict",
                    format!(
                        "agent `{}` already declares webhook `{}`; webhook names are unique",
                        record.name, hook.name
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The shared secret, from the environment, now: rotating it needs no
/// restart. An unset or empty variable makes the webhook unavailable.
fn secret(decl: &WebhookDecl) -> Result<Vec<u8>, ApiError> {
    match std::env::var_os(&decl.secret_env) {
        Some(value) if !value.is_empty() => Ok(value.into_encoded_bytes()),
        _ => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "hook_unavailable",
            format!(
                "webhook `{}` cannot verify deliveries: its secret variable {} is not set on this server",
                decl.name, decl.secret_env
            ),
        )),
    }
}

fn bad_signature(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "bad_signature", message)
}

fn header<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

/// Checks `signature` (`sha256=HEX`) against the HMAC of
/// `{timestamp}.{body}`, in constant time: the same scheme as
/// [`crate::sign`]. Returns the signature's bytes when it holds.
fn verify(secret: &[u8], timestamp: &str, body: &[u8], signature: &str) -> Option<Vec<u8>> {
    let given = signature.strip_prefix("sha256=").and_then(|h| hex::decode(h).ok())?;
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&given).ok().map(|()| given)
}

/// The signed timestamp, checked to be within `tolerance_ms` of `now_ms`.
fn check_timestamp(timestamp: &str, tolerance_ms: u64, now_ms: u64) -> Result<(), ApiError> {
    let seconds: u64 = timestamp.parse().map_err(|_| bad_signature("X-Rein-Timestamp must be Unix seconds"))?;
    let skew_ms = seconds.saturating_mul(1000).abs_diff(now_ms);
    if skew_ms > tolerance_ms {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "stale_timestamp",
            format!(
                "the signed timestamp is {}s from this server's clock; at most {}s is accepted",
                skew_ms / 1000,
                tolerance_ms / 1000
            ),
        ));
    }
    Ok(())
}

/// 409 for a delivery seen before, with the run it started.
fn duplicate(hook: &str, what: &str, run: RunId) -> Response {
    let body = json!({ "error": {
        "code": "duplicate_delivery",
        "message": format!("webhook `{hook}` already received this {what}: it started run {run}"),
        "run_id": run.to_string(),
        "url": format!("/v1/runs/{run}"),
    }});
    (StatusCode::CONFLICT, [("location", format!("/v1/runs/{run}"))], Json(body)).into_response()
}

/// `POST /v1/hooks/{name}`.
pub(crate) async fn receive(
    State(state): State<Arc<AppState>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    let Hook { served, tenant, decl } = find(&state, &name).await?;
    let secret = secret(&decl)?;
    let body = axum::body::Bytes::from_request(request, &state)
        .await
        .map_err(|rejection| ApiError::new(rejection.status(), "bad_request", rejection.body_text()))?;

    // Authenticity first: nothing about the delivery is looked at, or
    // answered, before its signature holds.
    let (Some(timestamp), Some(signature)) =
        (header(&headers, crate::TIMESTAMP_HEADER), header(&headers, crate::SIGNATURE_HEADER))
    else {
        return Err(bad_signature("a delivery needs X-Rein-Timestamp and X-Rein-Signature: sha256=HEX"));
    };
    let Some(signature) = verify(&secret, timestamp, &body, signature) else {
        return Err(bad_signature(
            "the signature does not match: expected sha256=HEX of HMAC-SHA256(secret, \"{timestamp}.{body}\")",
        ));
    };
    let now_ms = rein::now_ms();
    check_timestamp(timestamp, decl.tolerance_ms, now_ms)?;

    let delivery = match header(&headers, DELIVERY_HEADER) {
        Some(id) if !id.is_empty() && id.chars().count() <= MAX_DELIVERY_ID => id.to_owned(),
        Some(id) if !id.is_empty() => {
            return Err(ApiError::bad_request(
                "bad_request",
                format!("X-Rein-Delivery is at most {MAX_DELIVERY_ID} characters"),
            ));
        }
        _ => {
            return Err(ApiError::bad_request("bad_request", "X-Rein-Delivery (the delivery's unique id) is required"));
        }
    };
    let payload: Value = serde_json::from_slice(&body)
        .map_err(|error| ApiError::bad_request("bad_request", format!("the body is not valid JSON: {error}")))?;
    let input = rein::config::render_webhook_input(decl.input.as_deref(), &payload)
        .map_err(|message| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "bad_payload", message))?;

    let agent_name = served.agent.name().to_owned();
    let store = state.operator.store();
    if !store.agent_enabled(&agent_name).await? {
        return Err(rein::OperateError::Disabled(agent_name).into());
    }
    // A signed delivery counts against its agent's tenant like any request.
    state.limits.admit_request(&state, &tenant).await?;
    state.limits.admit_run(&state, &tenant).await?;
    let run = RunId::new();
    if let Some(earlier) = store.record_delivery(&decl.name, &delivery, run, now_ms).await? {
        // A retry. The first attempt may have died between recording the
        // delivery and queuing its run, so the run is queued now; queuing a
        // run the queue knows changes nothing, so it never starts twice.
        state.enqueue(&tenant, &served, input, earlier).await?;
        return Ok(duplicate(&decl.name, &format!("delivery ({delivery})"), earlier));
    }
    // The same signed bytes under another delivery id are a replay. Kept
    // as lowercase hex of the bytes: a replay cannot pass as new by writing
    // the hex in another case. (`/` keeps these apart from hook names.)
    let replays = format!("{}/signature", decl.name);
    if let Some(earlier) = store.record_delivery(&replays, &hex::encode(signature), run, now_ms).await? {
        return Ok(duplicate(&decl.name, "signed timestamp and body", earlier));
    }

    state.enqueue(&tenant, &served, input, run).await?;
    tracing::info!(%run, hook = decl.name, delivery, agent = %served.agent.name(), "webhook started a run");
    Ok(crate::routes::accepted(run))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signatures_the_server_sends_are_the_ones_it_accepts() {
        let signature = crate::sign(b"secret", 1_700_000_000, b"{\"a\":1}");
        let bytes = hex::decode(&signature["sha256=".len()..]).unwrap();
        assert_eq!(verify(b"secret", "1700000000", b"{\"a\":1}", &signature), Some(bytes.clone()));
        // Upper-case hex is the same signature.
        let upper = format!("sha256={}", signature["sha256=".len()..].to_uppercase());
        assert_eq!(verify(b"secret", "1700000000", b"{\"a\":1}", &upper), Some(bytes));
        assert!(verify(b"other", "1700000000", b"{\"a\":1}", &signature).is_none());
        assert!(verify(b"secret", "1700000001", b"{\"a\":1}", &signature).is_none());
        assert!(verify(b"secret", "1700000000", b"{\"a\":2}", &signature).is_none());
        assert!(verify(b"secret", "1700000000", b"{\"a\":1}", signature.trim_start_matches("sha256=")).is_none());
        assert!(verify(b"secret", "1700000000", b"{\"a\":1}", "sha256=zz").is_none());
        assert!(verify(b"secret", "1700000000", b"{\"a\":1}", &signature[..20]).is_none());
    }

    #[test]
    fn timestamps_within_the_tolerance_either_way_pass() {
        let now_ms = 1_700_000_000_000;
        assert!(check_timestamp("1700000000", 300_000, now_ms).is_ok());
        assert!(check_timestamp("1699999700", 300_000, now_ms).is_ok());
        assert!(check_timestamp("1700000300", 300_000, now_ms).is_ok());
        assert_eq!(check_timestamp("1699999699", 300_000, now_ms).unwrap_err().code, "stale_timestamp");
        assert_eq!(check_timestamp("1700000301", 300_000, now_ms).unwrap_err().code, "stale_timestamp");
        assert_eq!(check_timestamp("soon", 300_000, now_ms).unwrap_err().code, "bad_signature");
        assert_eq!(check_timestamp("-5", 300_000, now_ms).unwrap_err().code, "bad_signature");
    }
}
