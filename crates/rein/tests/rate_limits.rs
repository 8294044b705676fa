//! Many runs in one process share their provider's limits: 200 concurrent
//! agent runs against a server that allows 100 requests a second queue in
//! rein's limiter instead of meeting a 429 storm, and every run succeeds.

use rein::providers::{ProviderRegistry, build_model_in};
use rein::{Agent, ModelRef, ProviderDecl, RunStatus, Runtime};
use rein_testkit::journal::MemoryJournal;
use rein_testkit::openai_server::{MockOpenAi, completion_text};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_runs_see_no_rate_limit_errors() {
    let server = MockOpenAi::rate_limited(100, completion_text("done")).await.unwrap();
    let registry = ProviderRegistry::default();
    let decl = ProviderDecl {
        base_url: Some(server.base_url.clone()),
        // Buckets hold one second of their rate: 45 a second stays under the
        // server's 100 in any sliding second.
        requests_per_minute: Some(2_700),
        max_concurrency: Some(50),
        timeout_ms: Some(20_000),
        max_retries: Some(0),
        ..ProviderDecl::default()
    };
    let model = build_model_in(&registry, &ModelRef::new("vllm", "m"), &decl, None, |_| None).unwrap();
    let agent = Agent::builder("many").system_prompt("Answer.").shared_model(model).build().unwrap();
    let runtime = Runtime::new(Arc::new(MemoryJournal::new()));

    let runs: Vec<_> = (0..200)
        .map(|i| {
            let (runtime, agent) = (runtime.clone(), agent.clone());
            tokio::spawn(async move { runtime.run(&agent, format!("question {i}")).await })
        })
        .collect();
    let mut failed = Vec::new();
    for run in runs {
        let outcome = run.await.unwrap().unwrap();
        if outcome.status != RunStatus::Succeeded {
            failed.push(format!("{}: {}", outcome.reason, outcome.explanation));
        }
    }
    assert!(failed.is_empty(), "{} runs failed, first: {:?}", failed.len(), failed.first());
    assert_eq!(server.requests().len(), 200, "one model call per run, none retried");
}
