//! Webhook triggers end to end: a real server on 127.0.0.1 over a real
//! SQLite journal and a local server speaking the OpenAI wire format,
//! receiving deliveries signed as a sender would sign them.
//!
//! The secrets are environment variables, read by the server when a delivery
//! arrives. They are set once for this test process by [`run`], before any
//! test starts a thread of its own (see the SAFETY comment there); each test
//! has its own variable.

mod common;

use rein::Store;
use rein::store::SqliteJournal;
use rein_server::{AppState, ServeConfig};
use rein_testkit::openai_server::{MockOpenAi, MockReply, completion_text};
use serde_json::{Value, json};
use std::sync::{Arc, Once};
use std::time::Duration;

const SECRET: &str = "whsec-test-4d1f";

/// One variable per test, all holding [`SECRET`].
const SECRET_VARS: &[&str] = &[
    "REIN_TEST_HOOK_SECRET_MAPPED",
    "REIN_TEST_HOOK_SECRET_WHOLE",
    "REIN_TEST_HOOK_SECRET_BAD_SIGNATURE",
    "REIN_TEST_HOOK_SECRET_STALE",
    "REIN_TEST_HOOK_SECRET_REPLAY",
    "REIN_TEST_HOOK_SECRET_UNKNOWN",
    "REIN_TEST_HOOK_SECRET_DISABLED",
    "REIN_TEST_HOOK_SECRET_MALFORMED",
];

/// Never set by anyone.
const UNSET_VAR: &str = "REIN_TEST_HOOK_SECRET_NEVER_SET_7f3a";

/// Sets the secrets, then runs `test` on a runtime of its own.
fn run(test: impl std::future::Future<Output = ()>) {
    static SET: Once = Once::new();
    SET.call_once(|| {
        for var in SECRET_VARS {
            // SAFETY: every test in this binary calls `run` first, before it
            // starts a runtime or any thread, and `call_once` holds the other
            // tests here until the variables are set. So while they are set
            // the only other threads of the process are the test harness's,
            // which do not read the environment while tests run.
            unsafe { std::env::set_var(var, SECRET) };
        }
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(test);
}

struct Fixture {
    base: String,
    http: reqwest::Client,
    model: MockOpenAi,
    _dir: tempfile::TempDir,
}

const TEMPLATE: &str = "New issue {/issue/title} by {/sender/login} ({/issue/labels}): {/issue/body}";

fn agent_toml(model: &str, secret_env: &str) -> String {
    format!(
        r#"
name = "triager"
system_prompt = "Triage the issue you are given."
handoff = false

[model]
id = "openai-compatible:mock-model"
base_url = "{model}"

[[webhooks]]
name = "issues"
secret_env = "{secret_env}"
input = "{TEMPLATE}"
tolerance = "2m"

[[webhooks]]
name = "raw"
secret_env = "{secret_env}"
"#
    )
}

async fn fixture(secret_env: &str) -> Fixture {
    let model = MockOpenAi::start(|_| MockReply::ok(completion_text("Triaged.")).with_delay(Duration::from_millis(20)))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteJournal::open(dir.path().join("rein.db")).unwrap());
    let http = common::admin_client(store.as_ref()).await;
    let client = rein::providers::default_client().unwrap();
    let operator = Arc::new(rein::Operator::new(store, client));
    let state = AppState::new(operator, ServeConfig { max_body_bytes: 64 * 1024, ..ServeConfig::default() });
    // Async and webhook runs are queued; this worker loop drives them, as
    // `rein serve` runs one.
    let worker = state.worker(2, Duration::from_secs(1));
    tokio::spawn(worker.run(std::future::pending()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, rein_server::router(state)).await.unwrap() });
    let register = http
        .post(format!("{base}/v1/agents"))
        .json(&json!({ "toml": agent_toml(&model.base_url, secret_env) }))
        .send()
        .await
        .unwrap();
    assert_eq!(register.status(), 201, "{}", register.text().await.unwrap());
    Fixture { base, http, model, _dir: dir }
}

fn now_s() -> u64 {
    rein::now_ms() / 1000
}

fn payload() -> Value {
    json!({
        "issue": { "title": "Crash on start", "body": "It crashes at once.", "labels": ["bug", "p1"] },
        "sender": { "login": "octocat" },
    })
}

/// What the input template makes of [`payload`].
const MAPPED: &str = "New issue Crash on start by octocat ([\"bug\",\"p1\"]): It crashes at once.";

/// A delivery as a sender makes it.
struct Delivery {
    body: Vec<u8>,
    timestamp: u64,
    secret: Vec<u8>,
    id: Option<String>,
}

impl Delivery {
    fn new(id: &str, body: &Value) -> Self {
        Self {
            body: serde_json::to_vec(body).unwrap(),
            timestamp: now_s(),
            secret: SECRET.as_bytes().to_vec(),
            id: Some(id.to_owned()),
        }
    }
}

impl Fixture {
    async fn deliver(&self, hook: &str, delivery: &Delivery) -> (u16, Value) {
        let signature = rein_server::sign(&delivery.secret, delivery.timestamp, &delivery.body);
        self.deliver_signed(hook, delivery, signature).await
    }

    async fn deliver_signed(&self, hook: &str, delivery: &Delivery, signature: String) -> (u16, Value) {
        let mut request = self
            .http
            .post(format!("{}/v1/hooks/{hook}", self.base))
            .header("content-type", "application/json")
            .header("x-rein-timestamp", delivery.timestamp.to_string())
            .header("x-rein-signature", signature)
            .body(delivery.body.clone());
        if let Some(id) = &delivery.id {
            request = request.header("x-rein-delivery", id);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}{path}", self.base)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The run once it has finished.
    async fn finished(&self, run: &str) -> Value {
        for _ in 0..200 {
            let (status, got) = self.get(&format!("/v1/runs/{run}")).await;
            if status == 200 && got["status"] != "running" {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("run {run} did not finish");
    }

    async fn runs(&self) -> Vec<Value> {
        let (_, got) = self.get("/v1/runs").await;
        got["runs"].as_array().cloned().unwrap_or_default()
    }

    /// The user message of every model call so far.
    fn model_inputs(&self) -> Vec<String> {
        self.model
            .requests()
            .iter()
            .filter_map(|body| {
                let messages = body["messages"].as_array()?;
                let user = messages.iter().find(|m| m["role"] == "user")?;
                user["content"].as_str().map(str::to_owned)
            })
            .collect()
    }
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[test]
fn a_signed_delivery_starts_a_run_with_the_mapped_payload() {
    run(async {
        let f = fixture("REIN_TEST_HOOK_SECRET_MAPPED").await;
        let (status, started) = f.deliver("issues", &Delivery::new("d-1", &payload())).await;
        assert_eq!(status, 202, "{started}");
        let run = started["run_id"].as_str().unwrap();
        assert_eq!(started["url"], format!("/v1/runs/{run}"));
        let finished = f.finished(run).await;
        assert_eq!(finished["status"], "succeeded", "{finished}");
        assert_eq!(finished["agent"], "triager");
        assert_eq!(finished["input"], MAPPED);
        assert_eq!(f.model_inputs(), [MAPPED], "the model got the mapped payload as the task");
    });
}

#[test]
fn without_a_template_the_input_is_the_whole_payload() {
    run(async {
        let f = fixture("REIN_TEST_HOOK_SECRET_WHOLE").await;
        let (status, started) = f.deliver("raw", &Delivery::new("d-1", &payload())).await;
        assert_eq!(status, 202, "{started}");
        let finished = f.finished(started["run_id"].as_str().unwrap()).await;
        let input = finished["input"].as_str().unwrap();
        assert_eq!(input, serde_json::to_string_pretty(&payload()).unwrap());
        assert_eq!(f.model_inputs(), [input]);
    });
}

#[test]
fn a_wrong_or_missing_signature_is_refused() {
    run(async {
        let f = fixture("REIN_TEST_HOOK_SECRET_BAD_SIGNATURE").await;
        let mut wrong = Delivery::new("d-1", &payload());
        wrong.secret = b"not the secret".to_vec();
        let (status, body) = f.deliver("issues", &wrong).await;
        assert_eq!((status, code(&body)), (401, "bad_signature"), "{body}");

        // Signed, then the body changed on the way.
        let signed = Delivery::new("d-2", &payload());
        let signature = rein_server::sign(SECRET.as_bytes(), signed.timestamp, &signed.body);
        let response = f
            .http
            .post(format!("{}/v1/hooks/issues", f.base))
            .header("x-rein-timestamp", signed.timestamp.to_string())
            .header("x-rein-signature", signature)
            .header("x-rein-delivery", "d-2")
            .body(serde_json::to_vec(&json!({ "issue": { "title": "Refund me" } })).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);

        let unsigned = f
            .http
            .post(format!("{}/v1/hooks/issues", f.base))
            .header("x-rein-delivery", "d-3")
            .json(&payload())
            .send()
            .await
            .unwrap();
        assert_eq!(unsigned.status(), 401);
        assert_eq!(code(&unsigned.json().await.unwrap()), "bad_signature");

        assert!(f.runs().await.is_empty());
        assert!(f.model.requests().is_empty());
    });
}

#[test]
fn a_stale_timestamp_is_refused() {
    run(async {
        let f = fixture("REIN_TEST_HOOK_SECRET_STALE").await;
        // The hook's tolerance is two minutes, either way.
        let mut old = Delivery::new("d-1", &payload());
        old.timestamp -= 3 * 60;
        let (status, body) = f.deliver("issues", &old).await;
        assert_eq!((status, code(&body)), (401, "stale_timestamp"), "{body}");
        let mut ahead = Delivery::new("d-2", &payload());
        ahead.timestamp += 3 * 60;
        let (status, body) = f.deliver("issues", &ahead).await;
        assert_eq!((status, code(&body)), (401, "stale_timestamp"), "{body}");
        // A refused delivery is not recorded: sent again in time, it runs.
        let mut recent = Delivery::new("d-1", &payload());
        recent.timestamp -= 60;
        let (status, body) = f.deliver("issues", &recent).await;
        assert_eq!(status, 202, "{body}");
        f.finished(body["run_id"].as_str().unwrap()).await;
        assert_eq!(f.runs().await.len(), 1);
    });
}

#[test]
fn a_replayed_delivery_starts_no_second_run() {
    run(async {
        let f = fixture("REIN_TEST_HOOK_SECRET_REPLAY").await;
        let first = Delivery::new("delivery-42", &payload());
        let (status, started) = f.deliver("issues", &first).await;
        assert_eq!(status, 202, "{started}");
        let run = started["run_id"].as_str().unwrap().to_owned();

        // The sender retries: same delivery id, signed again.
        let mut retry = Delivery::new("delivery-42", &payload());
        retry.timestamp += 1;
        let (status, body) = f.deliver("issues", &retry).await;
        assert_eq!((status, code(&body)), (409, "duplicate_delivery"), "{body}");
        assert_eq!(body["error"]["run_id"], run.as_str());
        // The same request again, byte for byte.
        let (status, body) = f.deliver("issues", &first).await;
        assert_eq!((status, code(&body), body["error"]["run_id"].as_str()), (409, "duplicate_delivery", Some(&*run)));
        // Someone replays the signed request under another delivery id.
        let replay = Delivery { id: Some("delivery-43".into()), ..Delivery::new("", &payload()) };
        let replay = Delivery { timestamp: first.timestamp, ..replay };
        let (status, body) = f.deliver("issues", &replay).await;
        assert_eq!((status, code(&body), body["error"]["run_id"].as_str()), (409, "duplicate_delivery", Some(&*run)));
        // ... with the signature's hex in upper case: the same signature.
        let upper = rein_server::sign(SECRET.as_bytes(), first.timestamp, &first.body).to_uppercase();
        let upper = upper.replacen("SHA256=", "sha256=", 1);
        let replay = Delivery { id: Some("delivery-45".into()), ..replay };
        let (status, body) = f.deliver_signed("issues", &replay, upper).await;
        assert_eq!((status, code(&body), body["error"]["run_id"].as_str()), (409, "duplicate_delivery", Some(&*run)));

        assert_eq!(f.finished(&run).await["status"], "succeeded");
        let runs = f.runs().await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(f.model_inputs(), [MAPPED], "one run, one model call");

        // A new delivery is a new run.
        let mut other = payload();
        other["issue"]["title"] = json!("Slow search");
        let (status, body) = f.deliver("issues", &Delivery::new("delivery-44", &other)).await;
        assert_eq!(status, 202, "{body}");
        assert_ne!(body["run_id"], run.as_str());
    });
}

#[test]
fn an_unknown_hook_is_not_found() {
    run(async {
        let f = fixture("REIN_TEST_HOOK_SECRET_UNKNOWN").await;
        let (status, body) = f.deliver("nope", &Delivery::new("d-1", &payload())).await;
        assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
        assert!(f.runs().await.is_empty());
    });
}

#[test]
fn a_hook_whose_secret_is_not_set_is_unavailable() {
    run(async {
        assert!(std::env::var_os(UNSET_VAR).is_none());
        let f = fixture(UNSET_VAR).await;
        let (status, body) = f.deliver("issues", &Delivery::new("d-1", &payload())).await;
        assert_eq!((status, code(&body)), (503, "hook_unavailable"), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains(UNSET_VAR), "{body}");
        assert!(f.runs().await.is_empty());
    });
}

#[test]
fn a_disabled_agent_starts_nothing_and_the_delivery_can_be_sent_again() {
    run(async {
        let f = fixture("REIN_TEST_HOOK_SECRET_DISABLED").await;
        let disable = f.http.post(format!("{}/v1/agents/triager/disable", f.base)).send().await.unwrap();
        assert_eq!(disable.status(), 200);
        let delivery = Delivery::new("d-1", &payload());
        let (status, body) = f.deliver("issues", &delivery).await;
        assert_eq!((status, code(&body)), (409, "agent_disabled"), "{body}");
        assert!(f.runs().await.is_empty());

        let enable = f.http.post(format!("{}/v1/agents/triager/enable", f.base)).send().await.unwrap();
        assert_eq!(enable.status(), 200);
        let (status, body) = f.deliver("issues", &delivery).await;
        assert_eq!(status, 202, "the refused delivery was not recorded: {body}");
    });
}

#[test]
fn malformed_deliveries_are_bad_requests() {
    run(async {
        let f = fixture("REIN_TEST_HOOK_SECRET_MALFORMED").await;
        let not_json = Delivery { body: b"issue=crash".to_vec(), ..Delivery::new("d-1", &payload()) };
        let (status, body) = f.deliver("issues", &not_json).await;
        assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");

        let anonymous = Delivery { id: None, ..Delivery::new("", &payload()) };
        let (status, body) = f.deliver("issues", &anonymous).await;
        assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");
        let long = Delivery::new(&"x".repeat(201), &payload());
        let (status, body) = f.deliver("issues", &long).await;
        assert_eq!((status, code(&body)), (400, "bad_request"), "{body}");

        // The template points at a value this payload does not have.
        let (status, body) = f.deliver("issues", &Delivery::new("d-2", &json!({ "issue": {} }))).await;
        assert_eq!((status, code(&body)), (422, "bad_payload"), "{body}");
        assert!(body["error"]["message"].as_str().unwrap().contains("/issue/title"), "{body}");

        assert!(f.runs().await.is_empty());
    });
}
