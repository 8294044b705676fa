//! `build_model`: provider defaults, keys and header variables from the
//! environment, and the configuration errors it reports.

mod common;

use common::{MockServer, Reply, text_completion};
use rein_providers::{ProviderError, build_model, build_model_with};
use rein_types::{Message, Model, ModelRef, ModelRequest, ProviderDecl};
use std::collections::BTreeMap;
use std::sync::Arc;

fn build_err(result: Result<Arc<dyn Model>, ProviderError>) -> ProviderError {
    match result {
        Ok(model) => panic!("expected an error, built {}", model.id()),
        Err(error) => error,
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn model(text: &str) -> ModelRef {
    ModelRef::parse(text).unwrap()
}

#[test]
fn a_required_key_that_is_unset_is_missing_key() {
    let error = build_err(build_model_with(&model("openai:gpt-4o-mini"), &ProviderDecl::default(), None, no_env));
    assert_eq!(error, ProviderError::MissingKey { var: "OPENAI_API_KEY".into() });
    assert!(error.to_string().contains("export OPENAI_API_KEY="), "{error}");

    let error = build_err(build_model_with(&model("openrouter:x/y"), &ProviderDecl::default(), None, no_env));
    assert_eq!(error, ProviderError::MissingKey { var: "OPENROUTER_API_KEY".into() });

    // An empty value counts as unset.
    let empty = |_: &str| Some(String::new());
    let error = build_err(build_model_with(&model("openai:gpt-4o-mini"), &ProviderDecl::default(), None, empty));
    assert_eq!(error, ProviderError::MissingKey { var: "OPENAI_API_KEY".into() });
}

#[test]
fn a_named_key_variable_must_be_set_even_for_local_servers() {
    let decl = ProviderDecl { api_key_env: Some("MY_OLLAMA_KEY".into()), ..ProviderDecl::default() };
    let error = build_err(build_model_with(&model("ollama:llama3.2:3b"), &decl, None, no_env));
    assert_eq!(error, ProviderError::MissingKey { var: "MY_OLLAMA_KEY".into() });
}

#[test]
fn unknown_and_planned_providers_are_explained() {
    let error = build_err(build_model(&model("opneai:gpt-4o"), &ProviderDecl::default(), None));
    assert!(matches!(error, ProviderError::UnknownProvider { .. }));
    let text = error.to_string();
    assert!(text.contains("`opneai`"), "{text}");
    for known in ["openai", "openrouter", "ollama", "vllm", "llamacpp", "openai-compatible", "anthropic", "gemini"] {
        assert!(text.contains(known), "{text} lacks {known}");
    }
}

#[cfg(not(feature = "local"))]
#[test]
fn the_local_provider_needs_its_feature() {
    let error = build_err(build_model(&model("local:m"), &ProviderDecl::default(), None));
    assert!(matches!(error, ProviderError::NotBuiltIn { .. }), "{error}");
    assert!(error.to_string().contains("--features local"), "{error}");
}

#[cfg(feature = "local")]
#[test]
fn a_missing_local_model_says_where_it_looked() {
    let error = build_err(build_model(&model("local:./no/such/model.gguf"), &ProviderDecl::default(), None));
    assert!(matches!(error, ProviderError::Local(_)), "{error}");
    assert!(error.to_string().contains("./no/such/model.gguf"), "{error}");
}

#[test]
fn openai_compatible_needs_a_base_url() {
    let error = build_err(build_model_with(&model("openai-compatible:m"), &ProviderDecl::default(), None, no_env));
    assert_eq!(error, ProviderError::MissingBaseUrl { provider: "openai-compatible".into() });
}

#[test]
fn a_header_variable_that_is_unset_is_an_error() {
    let decl = ProviderDecl {
        headers: BTreeMap::from([("X-Org".to_owned(), "${MY_ORG}".to_owned())]),
        ..ProviderDecl::default()
    };
    let error = build_err(build_model_with(&model("ollama:llama3.2"), &decl, None, no_env));
    assert_eq!(error, ProviderError::MissingHeaderVar { header: "X-Org".into(), var: "MY_ORG".into() });
}

#[test]
fn local_providers_build_without_a_key() {
    for (text, id) in [
        ("ollama:llama3.2:3b", "ollama:llama3.2:3b"),
        ("llamacpp:qwen", "llamacpp:qwen"),
        ("vllm:meta/llama", "vllm:meta/llama"),
    ] {
        let built = build_model_with(&model(text), &ProviderDecl::default(), None, no_env).unwrap();
        assert_eq!(built.id(), id);
    }
}

#[test]
fn keys_never_appear_in_configuration_errors() {
    let env = |var: &str| (var == "OPENAI_API_KEY").then(|| "sk-bad\nkey".to_owned());
    let error = build_err(build_model_with(&model("openai:gpt-4o"), &ProviderDecl::default(), None, env));
    assert_eq!(error, ProviderError::InvalidKey { var: "OPENAI_API_KEY".into() });
    assert!(!error.to_string().contains("sk-bad"), "{error}");
}

#[tokio::test]
async fn declared_key_base_url_and_headers_reach_the_server() {
    let server = MockServer::start(|_, _| Reply::json(200, text_completion("ok"))).await;
    let decl = ProviderDecl {
        base_url: Some(server.base_url.clone()),
        api_key_env: Some("GATEWAY_KEY".into()),
        timeout_ms: Some(5_000),
        max_retries: Some(0),
        headers: BTreeMap::from([("X-Team".to_owned(), "team-${TEAM}".to_owned())]),
        ..ProviderDecl::default()
    };
    let env = |var: &str| match var {
        "GATEWAY_KEY" => Some("gw-secret".to_owned()),
        "TEAM" => Some("blue".to_owned()),
        _ => None,
    };
    let built = build_model_with(&model("openai-compatible:my-model"), &decl, None, env).unwrap();
    assert_eq!(built.id(), "openai-compatible:my-model");
    let messages = vec![Message::User { text: "hi".into() }];
    let request = ModelRequest {
        model: "my-model",
        messages: &messages,
        tools: &[],
        max_output_tokens: Some(16),
        temperature: None,
        top_p: None,
        seed: None,
        stop: &[],
        output_schema: None,
    };
    let response = built.complete(request).await.unwrap();
    assert_eq!(response.text.as_deref(), Some("ok"));
    let received = &server.requests()[0];
    assert_eq!(received.headers["authorization"], "Bearer gw-secret");
    assert_eq!(received.headers["x-team"], "team-blue");
    assert_eq!(received.body["model"], "my-model");
    assert_eq!(received.body["max_tokens"], 16);
}

#[tokio::test]
async fn vllm_sends_its_optional_key_when_set() {
    let server = MockServer::start(|_, _| Reply::json(200, text_completion("ok"))).await;
    let decl = ProviderDecl { base_url: Some(server.base_url.clone()), ..ProviderDecl::default() };
    let env = |var: &str| (var == "VLLM_API_KEY").then(|| "vllm-key".to_owned());
    let built = build_model_with(&model("vllm:m"), &decl, None, env).unwrap();
    let messages = vec![Message::User { text: "hi".into() }];
    let request = ModelRequest {
        model: "m",
        messages: &messages,
        tools: &[],
        max_output_tokens: None,
        temperature: None,
        top_p: None,
        seed: None,
        stop: &[],
        output_schema: None,
    };
    built.complete(request).await.unwrap();
    assert_eq!(server.requests()[0].headers["authorization"], "Bearer vllm-key");
}

#[tokio::test]
async fn expanded_header_variables_are_scrubbed_from_errors() {
    const TOKEN: &str = "tok-4f3e2d1c";
    // A careless gateway that quotes the request's headers in its errors,
    // the token alone as well as the whole header value.
    let echo = format!("bad team header `Bearer {TOKEN}` (token {TOKEN})");
    let server = MockServer::start(move |n, _| match n {
        0 => Reply::json(400, common::error_body(&echo, "invalid_request_error", "bad_header")),
        _ => Reply::raw(200, &format!("<html>{echo}</html>")),
    })
    .await;
    let decl = ProviderDecl {
        base_url: Some(server.base_url.clone()),
        max_retries: Some(0),
        headers: BTreeMap::from([("X-Team-Auth".to_owned(), "Bearer ${TEAM_TOKEN}".to_owned())]),
        ..ProviderDecl::default()
    };
    let env = |var: &str| (var == "TEAM_TOKEN").then(|| TOKEN.to_owned());
    let built = build_model_with(&model("openai-compatible:m"), &decl, None, env).unwrap();
    let messages = vec![Message::User { text: "hi".into() }];
    let request = ModelRequest {
        model: "m",
        messages: &messages,
        tools: &[],
        max_output_tokens: None,
        temperature: None,
        top_p: None,
        seed: None,
        stop: &[],
        output_schema: None,
    };
    // A classified error status, then a body that is not a response.
    for _ in 0..2 {
        let error = built.complete(request).await.unwrap_err();
        assert!(!error.message.contains(TOKEN), "{}", error.message);
        assert!(error.message.contains("<redacted>"), "the rest is still quoted: {}", error.message);
    }
    assert_eq!(server.requests()[0].headers["x-team-auth"], format!("Bearer {TOKEN}").as_str());
}

#[test]
fn gemini_needs_its_key() {
    let error = build_err(build_model_with(&model("gemini:gemini-2.5-flash"), &ProviderDecl::default(), None, no_env));
    assert_eq!(error, ProviderError::MissingKey { var: "GEMINI_API_KEY".into() });
    let env = |var: &str| (var == "GEMINI_API_KEY").then(|| "g-key-123456".to_owned());
    let built = build_model_with(&model("gemini:gemini-2.5-flash"), &ProviderDecl::default(), None, env);
    assert_eq!(built.map(|m| m.id()).ok().as_deref(), Some("gemini:gemini-2.5-flash"));
}
