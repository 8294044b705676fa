//! The counter service the crash tests drive: it applies each logical item
//! once per idempotency key, as a payment API would, and counts deliveries,
//! so a test can tell effects applied once from effects repeated.

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use rein_testkit::openai_server::{MockReply, completion_text, completion_tool_calls};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Increments each run makes, one per model turn.
pub const STEPS_PER_RUN: usize = 3;

#[derive(Default)]
pub struct Counter {
    /// Idempotency key → (logical item, the answer given).
    pub applied: HashMap<String, (String, Value)>,
    /// Deliveries per key, repeats included.
    pub deliveries: HashMap<String, u32>,
    /// Logical item → times applied.
    pub per_item: BTreeMap<String, u32>,
}

pub async fn count(
    State(counter): State<Arc<Mutex<Counter>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Json<Value> {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let item = body["item"].as_str().unwrap_or("").to_owned();
    let answer = {
        let mut counter = counter.lock().unwrap();
        *counter.deliveries.entry(key.clone()).or_default() += 1;
        match counter.applied.get(&key) {
            Some((_, answer)) => answer.clone(),
            None => {
                *counter.per_item.entry(item.clone()).or_default() += 1;
                let answer = json!({ "item": item, "applied": counter.applied.len() + 1 });
                counter.applied.insert(key, (item, answer.clone()));
                answer
            }
        }
    };
    // Applied before answering: a kill in this window leaves an effect the
    // caller never heard about, which is what the idempotency key is for.
    tokio::time::sleep(Duration::from_millis(25)).await;
    Json(answer)
}

/// The agent: one idempotent HTTP write, `increment`, against the counter.
pub fn agent_toml(model_url: &str, counter_url: &str, timeout: &str) -> String {
    format!(
        r#"
name = "counter"
system_prompt = "Record each item of the task with the increment tool, one at a time, then say done."

[model]
id = "openai:mock-model"
base_url = "{model_url}"
api_key_env = "MOCK_KEY"

[limits]
max_steps = 8
timeout = "{timeout}"

[[tools]]
name = "increment"
description = "Records one item in the counter service. Safe to retry: the service de-duplicates by idempotency key."
kind = "http"
method = "POST"
url = "{counter_url}/count"
risk = "write"
idempotent = true
parameters = {{ type = "object", properties = {{ item = {{ type = "string" }} }}, required = ["item"], additionalProperties = false }}
"#
    )
}

/// The model: increments `TASK-0`, `TASK-1`, `TASK-2` in turn, judged from
/// the conversation alone, so a resumed run gets the answers the lost
/// process would have got.
pub fn respond(body: &Value, delay: Duration) -> MockReply {
    let messages = body["messages"].as_array().cloned().unwrap_or_default();
    let task =
        messages.iter().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or("").to_owned();
    let done = messages.iter().filter(|m| m["role"] == "tool").count();
    let reply = if done < STEPS_PER_RUN {
        completion_tool_calls(&[("increment", json!({ "item": format!("{task}-{done}") }))])
    } else {
        completion_text(&format!("done {task}"))
    };
    MockReply::ok(reply).with_delay(delay)
}
