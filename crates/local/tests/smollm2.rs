//! The embedded model on the real SmolLM2-135M-Instruct GGUF (installed by
//! `scripts/fetch-model.sh`, which the test command runs). Without the file
//! these tests skip, unless REIN_REQUIRE_LOCAL_MODEL is set (as the test
//! command sets it), when they fail.

use rein_local::{LocalConfig, LocalError, LocalModel, SMOLLM2, ToolChoice, model_dir};
use rein_types::{Message, Model, ModelErrorKind, ModelRequest, RiskTier, StreamDelta, ToolName, ToolSpec};
use serde_json::{Value, json};
use std::sync::Mutex;

fn model() -> Option<LocalModel> {
    model_with(LocalConfig::default())
}

/// Tests run in parallel, and one model file with one configuration is one
/// engine (one KV cache, one job at a time) shared by all of them: a test
/// that looks at the cache or the engine's counters takes a configuration of
/// its own.
fn model_with(config: LocalConfig) -> Option<LocalModel> {
    let path = model_dir().join(SMOLLM2.file);
    if !path.is_file() {
        assert!(
            std::env::var_os("REIN_REQUIRE_LOCAL_MODEL").is_none(),
            "{} is missing; run scripts/fetch-model.sh",
            path.display()
        );
        eprintln!("skipped: {} is missing; run scripts/fetch-model.sh", path.display());
        return None;
    }
    Some(LocalModel::open("smollm2", config).expect("the model loads"))
}

fn request<'a>(messages: &'a [Message], tools: &'a [ToolSpec], seed: u64, temperature: f32) -> ModelRequest<'a> {
    ModelRequest {
        model: "smollm2",
        messages,
        tools,
        max_output_tokens: Some(48),
        temperature: Some(temperature),
        top_p: Some(0.9),
        seed: Some(seed),
        stop: &[],
        output_schema: None,
    }
}

fn user(text: &str) -> Vec<Message> {
    vec![Message::System { text: "You are a helpful assistant.".into() }, Message::User { text: text.into() }]
}

fn tool(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec::new(ToolName::new(name).unwrap(), description, parameters, RiskTier::Read)
}

fn tools() -> Vec<ToolSpec> {
    vec![
        tool(
            "get_weather",
            "Current weather for a city.",
            json!({"type": "object", "properties": {
                "city": {"type": "string", "minLength": 1, "maxLength": 60},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
            }, "required": ["city", "unit"], "additionalProperties": false}),
        ),
        tool(
            "create_ticket",
            "Open a support ticket for a customer.",
            json!({"type": "object", "properties": {
                "customer_id": {"type": "integer", "minimum": 1, "maximum": 99999},
                "priority": {"type": "string", "enum": ["low", "normal", "urgent"]},
                "summary": {"type": "string", "maxLength": 120}
            }, "required": ["customer_id", "priority", "summary"], "additionalProperties": false}),
        ),
        tool(
            "search_orders",
            "Find a customer's orders by email.",
            json!({"type": "object", "properties": {
                "email": {"type": "string", "maxLength": 80},
                "limit": {"type": "integer", "minimum": 1, "maximum": 20},
                "include_cancelled": {"type": "boolean"}
            }, "required": ["email"], "additionalProperties": false}),
        ),
    ]
}

/// Fifty prompts of different kinds: some ask for a tool, some do not.
fn prompts() -> Vec<String> {
    let cities = ["Paris", "Lagos", "Osaka", "Lima", "Oslo", "Cairo", "Perth", "Quito", "Seoul", "Tunis"];
    let mut prompts = Vec::new();
    for (i, city) in cities.iter().enumerate() {
        prompts.push(format!("What's the weather like in {city} right now?"));
        prompts
            .push(format!("Customer {} says their invoice is wrong and they are angry. Open a ticket.", 100 + i * 37));
        prompts.push(format!("Show me the last {} orders for user{}@example.com", i + 2, i));
        prompts.push(format!("Translate 'good morning' into the language spoken in {city}."));
        prompts.push(format!("Is it colder in {city} or in {}? Use fahrenheit.", cities[(i + 3) % cities.len()]));
    }
    prompts
}

fn assert_valid_call(tools: &[ToolSpec], name: &str, arguments: &str) {
    let tool = tools.iter().find(|t| t.name.as_str() == name).unwrap_or_else(|| panic!("unknown tool {name}"));
    let arguments: Value = serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{arguments}: {e}"));
    let validator = jsonschema::validator_for(&tool.parameters).unwrap();
    let errors: Vec<String> = validator.iter_errors(&arguments).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{name}({arguments}) breaks its schema: {errors:?}");
}

#[tokio::test]
async fn generation_with_a_fixed_seed_is_reproducible() {
    let Some(model) = model() else { return };
    let messages = user("Write one sentence about the sea.");
    let first = model.complete(request(&messages, &[], 7, 0.9)).await.unwrap();
    // Another prompt in between, so the second run reuses nothing by accident.
    model.complete(request(&user("Name a colour."), &[], 1, 0.9)).await.unwrap();
    let second = model.complete(request(&messages, &[], 7, 0.9)).await.unwrap();
    assert!(first.text.as_deref().is_some_and(|t| !t.is_empty()), "{first:?}");
    assert_eq!(first.text, second.text);
    assert_eq!(first.usage.output_tokens, second.usage.output_tokens);

    let mut others = Vec::new();
    for seed in [8, 9, 10] {
        others.push(model.complete(request(&messages, &[], seed, 0.9)).await.unwrap().text);
    }
    assert!(others.iter().any(|t| t != &first.text), "three other seeds all gave {:?}", first.text);
}

#[tokio::test]
async fn every_constrained_tool_call_parses_and_validates() {
    let Some(model) = model() else { return };
    let tools = tools();
    let required = model.clone().with_tool_choice(ToolChoice::Required);
    let mut auto_calls = 0;
    for (i, prompt) in prompts().iter().enumerate() {
        let messages = user(prompt);
        // Room for the longest call the schemas allow.
        let mut req = request(&messages, &tools, i as u64, 0.7);
        req.max_output_tokens = Some(256);
        let response = required.complete(req).await.unwrap();
        assert_eq!(response.tool_calls.len(), 1, "{prompt}: {response:?}");
        let call = &response.tool_calls[0];
        assert_valid_call(&tools, &call.name, &call.arguments);

        let response = model.complete(req).await.unwrap();
        for call in &response.tool_calls {
            assert_valid_call(&tools, &call.name, &call.arguments);
            auto_calls += 1;
        }
        if response.tool_calls.is_empty() {
            let text = response.text.unwrap_or_default();
            assert!(!text.trim_start().starts_with('<'), "an answer that looks like a call: {text}");
        }
    }
    eprintln!("the model chose to call a tool for {auto_calls} of 50 prompts");
}

#[tokio::test]
async fn an_answer_schema_constrains_the_answer() {
    let Some(model) = model() else { return };
    let schema = json!({"type": "object", "properties": {
        "sentiment": {"type": "string", "enum": ["positive", "negative", "neutral"]},
        "score": {"type": "integer", "minimum": 0, "maximum": 10}
    }, "required": ["sentiment", "score"], "additionalProperties": false});
    let messages = user("Rate this review: 'The parcel came late and broken.'");
    let mut req = request(&messages, &[], 3, 0.5);
    req.output_schema = Some(&schema);
    req.max_output_tokens = Some(64);
    let response = model.complete(req).await.unwrap();
    let answer: Value = serde_json::from_str(response.text.as_deref().unwrap()).unwrap();
    assert!(jsonschema::is_valid(&schema, &answer), "{answer}");
}

#[tokio::test]
async fn streaming_sends_the_answer_in_pieces_and_counts_usage() {
    let Some(model) = model_with(LocalConfig { context_length: Some(2048), ..LocalConfig::default() }) else {
        return;
    };
    let messages = user("Count from one to ten in words.");
    let pieces = Mutex::new(Vec::new());
    let on_delta = |delta: StreamDelta| {
        if let StreamDelta::Text(text) = delta {
            pieces.lock().unwrap().push(text);
        }
    };
    let response = model.complete_streaming(request(&messages, &[], 1, 0.0), &on_delta).await.unwrap();
    let pieces = pieces.into_inner().unwrap();
    assert!(pieces.len() > 1, "{pieces:?}");
    assert_eq!(pieces.concat(), response.text.clone().unwrap());
    assert!(response.usage.input_tokens > 10, "{:?}", response.usage);
    assert!(response.usage.output_tokens > 1 && response.usage.output_tokens <= 48, "{:?}", response.usage);
    assert_eq!(response.served_by, "local:smollm2");

    // The same conversation again reuses the cached prompt.
    let again = model.complete(request(&messages, &[], 1, 0.0)).await.unwrap();
    assert!(again.usage.cached_input_tokens > 10, "{:?}", again.usage);
    assert_eq!(again.text, response.text);
}

#[tokio::test]
async fn a_stop_sequence_cuts_the_answer_before_it() {
    let Some(model) = model() else { return };
    let messages = user("List three fruits, one per line.");
    let full = model.complete(request(&messages, &[], 1, 0.0)).await.unwrap().text.unwrap();
    let words: Vec<&str> = full.split_whitespace().collect();
    assert!(words.len() >= 3, "{full}");
    let stop = words[2].to_owned();
    let cut_at = full.find(&stop).unwrap();
    let stops = [stop.clone()];
    let mut req = request(&messages, &[], 1, 0.0);
    req.stop = &stops;
    let cut = model.complete(req).await.unwrap().text.unwrap();
    assert_eq!(cut, full[..cut_at], "stop {stop:?} in {full:?}");
}

#[tokio::test]
async fn a_prompt_longer_than_the_context_is_a_clear_error() {
    if model().is_none() {
        return;
    }
    let small =
        LocalModel::open("smollm2", LocalConfig { context_length: Some(64), ..LocalConfig::default() }).unwrap();
    let messages = user(&"Tell me about shipping. ".repeat(40));
    let error = small.complete(request(&messages, &[], 1, 0.0)).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ContextTooLong, "{error}");
    assert!(error.message.contains("context window is 64"), "{error}");
}

#[tokio::test]
async fn a_caller_that_stops_waiting_frees_the_model() {
    let Some(model) = model_with(LocalConfig { context_length: Some(3072), ..LocalConfig::default() }) else {
        return;
    };
    let messages = user("Write a long essay about rivers.");
    let mut long = request(&messages, &[], 1, 0.0);
    long.max_output_tokens = Some(4000);
    let abandoned = tokio::time::timeout(std::time::Duration::from_millis(300), model.complete(long)).await;
    assert!(abandoned.is_err(), "a 4000-token essay finished in 300 ms");
    // The engine gave up on the essay rather than finishing it for nobody.
    let next = model.complete(request(&user("Say hi."), &[], 1, 0.0)).await.unwrap();
    assert!(next.text.is_some());
    assert_eq!(model.cancelled_generations(), 1);
}

#[test]
fn a_file_that_is_not_gguf_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fake.gguf");
    std::fs::write(&path, b"not a model").unwrap();
    let error = LocalModel::open(path.to_str().unwrap(), LocalConfig::default()).unwrap_err();
    assert!(matches!(error, LocalError::Load { .. }), "{error}");
    assert!(error.to_string().contains("fake.gguf") && error.to_string().contains("not a GGUF file"), "{error}");
}
