//! `rein run` on the embedded model: the order-status example end to end on
//! the real SmolLM2-135M GGUF, no key and no network. Skips without the
//! model file unless REIN_REQUIRE_LOCAL_MODEL is set (the test command sets
//! it after fetching the model), when it fails.
#![cfg(feature = "local")]

use serde_json::Value;
use std::path::Path;

const REIN: &str = env!("CARGO_BIN_EXE_rein");

fn model_present() -> bool {
    let dir = match std::env::var_os("REIN_MODEL_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::var_os("XDG_DATA_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(&std::env::var("HOME").unwrap()).join(".local/share"))
            .join("rein/models"),
    };
    let present = dir.join("SmolLM2-135M-Instruct.Q4_1.gguf").is_file();
    assert!(
        present || std::env::var_os("REIN_REQUIRE_LOCAL_MODEL").is_none(),
        "the SmolLM2 GGUF is missing from {}; run scripts/fetch-model.sh",
        dir.display()
    );
    present
}

#[test]
fn the_order_status_example_runs_on_the_local_model() {
    if !model_present() {
        eprintln!("skipped: run scripts/fetch-model.sh for the local model");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/order-status");
    std::fs::copy(source.join("agent.toml"), dir.path().join("agent.toml")).unwrap();
    let seed = std::fs::read_to_string(source.join("seed.sql")).unwrap();
    rusqlite::Connection::open(dir.path().join("shop.db")).unwrap().execute_batch(&seed).unwrap();

    let output = std::process::Command::new(REIN)
        .args(["run", "agent.toml", "--input", "Where is order 1042?", "--json"])
        .current_dir(dir.path())
        .env("REIN_DB", dir.path().join("rein.db"))
        .env_remove("OPENAI_API_KEY")
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stderr: {stderr}");
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    // `tool_choice = "first"`: a call to the one tool with a valid order
    // number, then an answer.
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["steps"], 2, "{result}");
    assert_eq!(result["partial_results"][0]["tool"], "lookup_order", "{result}");
    assert!(result["output"].as_str().is_some_and(|o| !o.trim().is_empty()), "{result}");
    assert!(result["usage"]["input_tokens"].as_u64().unwrap() > 100, "{result}");
    assert_eq!(result["cost_usd"], 0.0);

    let show = std::process::Command::new(REIN)
        .args(["runs", "show", result["run_id"].as_str().unwrap(), "--json"])
        .env("REIN_DB", dir.path().join("rein.db"))
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&show.stdout);
    assert!(shown.contains("local:smollm2"), "{shown}");
}
