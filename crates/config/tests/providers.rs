//! `[model] fallbacks` and `[providers.NAME]`: what they resolve to, that
//! they change the agent's version, and the errors they give.

mod common;

use common::{dir_with, errors, lines, single_error, validate, warnings};
use rein_config::load_agent;

const CHAIN: &str = r#"name = "t"
system_prompt = "You answer questions about orders."

[model]
id = "openai:gpt-4o-mini"
timeout = "20s"
max_retries = 1
fallbacks = ["anthropic:claude-haiku-4-5", "ollama:llama3.2"]

[providers.openai]
max_concurrency = 8
requests_per_minute = 500
tokens_per_minute = 200000

[providers.ollama]
base_url = "http://gpu-box:11434/v1/"
max_concurrency = 2
"#;

#[test]
fn fallbacks_and_provider_tables_resolve() {
    let dir = dir_with(&[("agent.toml", CHAIN)]);
    let agent = load_agent(&dir.path().join("agent.toml")).unwrap();
    assert_eq!(agent.provider.max_concurrency, Some(8));
    assert_eq!(agent.provider.requests_per_minute, Some(500));
    assert_eq!(agent.provider.tokens_per_minute, Some(200_000));
    let chain: Vec<String> = agent.fallbacks.iter().map(|f| f.model.to_string()).collect();
    assert_eq!(chain, ["anthropic:claude-haiku-4-5", "ollama:llama3.2"]);
    let anthropic = &agent.fallbacks[0].provider;
    assert_eq!((anthropic.timeout_ms, anthropic.max_retries), (Some(20_000), Some(1)), "call policy is inherited");
    assert_eq!(anthropic.max_concurrency, None);
    let ollama = &agent.fallbacks[1].provider;
    assert_eq!(ollama.base_url.as_deref(), Some("http://gpu-box:11434/v1"));
    assert_eq!(ollama.max_concurrency, Some(2));
    assert_eq!(agent.spec.extra["fallbacks"][1]["model"], "ollama:llama3.2");
    assert_eq!(agent.spec.extra["provider"]["requests_per_minute"], 500);
}

#[test]
fn fallbacks_change_the_version_and_their_absence_does_not() {
    let plain =
        "name = \"t\"\nsystem_prompt = \"You answer questions about orders.\"\n[model]\nid = \"openai:gpt-4o-mini\"\n";
    let dir = dir_with(&[("agent.toml", plain)]);
    let before = load_agent(&dir.path().join("agent.toml")).unwrap();
    assert!(before.spec.extra.get("fallbacks").is_none(), "no key: versions of existing agents are unchanged");
    let with = format!("{plain}fallbacks = [\"ollama:llama3.2\"]\n");
    let dir = dir_with(&[("agent.toml", &with)]);
    let after = load_agent(&dir.path().join("agent.toml")).unwrap();
    assert_ne!(before.spec.version(), after.spec.version());
}

#[test]
fn a_bad_fallback_is_an_error_with_its_key() {
    let text = CHAIN.replace("\"ollama:llama3.2\"", "\"llama3.2\"");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let error = single_error(dir.path(), &report);
    assert!(error.starts_with("agent.toml:8:"), "{error}");
    assert!(error.contains("model.fallbacks[1]: invalid model \"llama3.2\": expected provider:model"), "{error}");
}

#[test]
fn unknown_keys_in_a_provider_table_are_errors() {
    let text = CHAIN.replace("max_concurrency = 2", "max_concurrency = 2\nrequests_per_second = 3");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let error = single_error(dir.path(), &report);
    assert!(error.starts_with("agent.toml:18:"), "{error}");
    assert!(error.contains("providers.ollama.requests_per_second"), "{error}");
}

#[test]
fn bad_limits_and_secrets_are_errors() {
    let text = CHAIN.replace("max_concurrency = 2", "max_concurrency = 0\napi_key = \"sk-123\"");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    let errors = errors(dir.path(), &report);
    assert_eq!(errors.len(), 2, "{}", lines(dir.path(), &report).join("\n"));
    assert!(errors.iter().any(|e| e.contains("providers.ollama.max_concurrency")), "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("providers.ollama.api_key") && e.contains("secrets")), "{errors:?}");
}

#[test]
fn a_repeated_model_in_the_chain_is_an_error() {
    let text = CHAIN.replace("\"ollama:llama3.2\"]", "\"openai:gpt-4o-mini\"]");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(
        errors(dir.path(), &report)
            .iter()
            .any(|e| e.contains("model.fallbacks[1]") && e.contains("already in the chain")),
        "{}",
        lines(dir.path(), &report).join("\n")
    );
}

#[test]
fn an_unused_provider_table_is_a_warning() {
    let text = CHAIN.replace(", \"ollama:llama3.2\"]", "]");
    let (dir, report) = validate(&[("agent.toml", &text)]);
    assert!(errors(dir.path(), &report).is_empty());
    assert!(
        warnings(dir.path(), &report).iter().any(|w| w.contains("providers.ollama") && w.contains("no model")),
        "{}",
        lines(dir.path(), &report).join("\n")
    );
}
