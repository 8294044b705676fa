//! Helpers shared by the integration tests: write agent files into a fresh
//! directory, validate them, and render diagnostics relative to it so the
//! assertions read like what a user sees.

#![allow(dead_code)]

use rein_config::{Report, validate_agent};
use std::path::Path;
use tempfile::TempDir;

/// A minimal valid agent, to which tests append what they exercise.
pub const BASE: &str = r#"name = "t"
system_prompt = "You answer questions about orders."
model = "openai:gpt-4o-mini"
"#;

/// Writes `files` (path, text) into a new directory.
pub fn dir_with(files: &[(&str, &str)]) -> TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

/// Validates `agent.toml` among `files`; returns the directory (kept alive)
/// and the report.
pub fn validate(files: &[(&str, &str)]) -> (TempDir, Report) {
    let dir = dir_with(files);
    let report = validate_agent(&dir.path().join("agent.toml"));
    (dir, report)
}

/// Every diagnostic as displayed, with the directory prefix removed.
pub fn lines(dir: &Path, report: &Report) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    report.diagnostics.iter().map(|d| d.to_string().replace(&prefix, "")).collect()
}

/// Errors only, as displayed.
pub fn errors(dir: &Path, report: &Report) -> Vec<String> {
    lines(dir, report).into_iter().filter(|l| l.contains(": error: ")).collect()
}

/// Warnings only, as displayed.
pub fn warnings(dir: &Path, report: &Report) -> Vec<String> {
    lines(dir, report).into_iter().filter(|l| l.contains(": warning: ")).collect()
}

/// Asserts that exactly one error was reported and returns it.
pub fn single_error(dir: &Path, report: &Report) -> String {
    let errors = errors(dir, report);
    assert_eq!(errors.len(), 1, "expected one error, got:\n{}", lines(dir, report).join("\n"));
    errors.into_iter().next().unwrap()
}
