//! Loading agent files into runnable agents, across the config, provider and
//! tool crates.

use rein::{Overrides, load_agent};
use std::path::Path;

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples").join(name).join("agent.toml")
}

#[test]
fn config_knows_every_provider_the_factory_builds() {
    for provider in rein::providers::KNOWN_PROVIDERS {
        assert!(rein::config::KNOWN_PROVIDERS.contains(provider), "config does not know `{provider}`");
    }
}

#[tokio::test]
async fn examples_load_and_overrides_change_the_version() {
    let client = reqwest::Client::new();
    let dir = tempfile::tempdir().unwrap();
    // The SQL tools need their databases to exist.
    for (example_dir, db) in [("support-triage", "helpdesk.db"), ("lead-qualification", "crm.db")] {
        let source = example(example_dir).parent().unwrap().to_path_buf();
        let target = dir.path().join(example_dir);
        std::fs::create_dir_all(&target).unwrap();
        for entry in std::fs::read_dir(&source).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            if path.is_file() && !name.contains(".db") {
                std::fs::copy(&path, target.join(&name)).unwrap();
            }
        }
        let seed = std::fs::read_to_string(source.join("seed.sql")).unwrap();
        rusqlite::Connection::open(target.join(db)).unwrap().execute_batch(&seed).unwrap();
    }
    let path = dir.path().join("lead-qualification/agent.toml");
    let overrides = Overrides { model: Some("ollama:llama3.2".into()), base_url: None };
    let local = load_agent(&path, &overrides, &client).await.unwrap().agent;
    assert_eq!(local.spec().model.to_string(), "ollama:llama3.2");
    assert_eq!(local.spec().price.map(|p| p.input_per_mtok), Some(0.0), "local models are free");

    let moved = Overrides { model: Some("ollama:llama3.2".into()), base_url: Some("http://127.0.0.1:9/v1".into()) };
    let elsewhere = load_agent(&path, &moved, &client).await.unwrap().agent;
    assert_ne!(local.version(), elsewhere.version(), "a different endpoint is a different version");

    if std::env::var_os("OPENAI_API_KEY").is_none() {
        let support = dir.path().join("support-triage/agent.toml");
        let error = load_agent(&support, &Overrides::default(), &client).await.err().expect("the key is required");
        assert!(error.to_string().contains("OPENAI_API_KEY"), "{error}");
    }
}
