//! What validation reports: diagnostics that each name a file, a line, a
//! column and the dotted key they are about, the [`Report`] that collects all
//! of them, and the [`ConfigError`] that [`crate::load_agent`] returns.
//!
//! Locations are 1-based and columns count characters, which is what editors
//! and `file:line:col` jump-to-error conventions expect.

use crate::LoadedAgent;
use std::fmt;
use std::path::{Path, PathBuf};

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The agent cannot be loaded.
    Error,
    /// The agent loads, but something is probably wrong or will hurt quality.
    Warning,
}

impl Severity {
    /// `"error"` or `"warning"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One finding about an agent file, located precisely enough to jump to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file the finding is in: the agent file, an included tool file or
    /// (rarely) a prompt file. As the path was given, joined to its parent's
    /// directory, so it reads naturally relative to where the command ran.
    pub file: PathBuf,
    /// 1-based; 0 when the finding is about the file as a whole (it could
    /// not be read).
    pub line: usize,
    /// 1-based, in characters; 0 together with `line == 0`.
    pub column: usize,
    /// Dotted path of the key, e.g. `tools[1].risk` or
    /// `prices."openai:gpt-4o".input_per_mtok`; empty for syntax errors.
    pub key: String,
    /// What is wrong and, where it helps, what to do instead.
    pub message: String,
}

impl Diagnostic {
    /// Whether this is an error (as opposed to a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Diagnostic {
    /// `agents/support.toml:14:1: error: tools[1].risk: unknown value "medium"; ...`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}: ", self.severity)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Everything [`crate::validate_agent`] found, errors and warnings together,
/// plus the loaded agent when there were no errors.
#[derive(Debug, Clone)]
pub struct Report {
    /// The agent file that was validated.
    pub path: PathBuf,
    /// All findings, ordered by file (agent file first, then includes in
    /// order), then line and column.
    pub diagnostics: Vec<Diagnostic>,
    /// The resolved agent; `Some` exactly when there are no errors.
    pub agent: Option<LoadedAgent>,
}

impl Report {
    /// The errors, in order.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }

    /// The warnings, in order.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning)
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// The loaded agent, or every diagnostic (errors and warnings, so the
    /// context of an error is not lost) when there is an error.
    pub fn into_result(self) -> Result<LoadedAgent, ConfigError> {
        match self.agent {
            Some(agent) if !self.diagnostics.iter().any(Diagnostic::is_error) => Ok(agent),
            _ => Err(ConfigError::Invalid(self.diagnostics)),
        }
    }
}

impl fmt::Display for Report {
    /// One line per diagnostic, then a summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for diagnostic in &self.diagnostics {
            writeln!(f, "{diagnostic}")?;
        }
        let errors = self.errors().count();
        let warnings = self.warnings().count();
        write!(
            f,
            "{}: {} error{}, {} warning{}",
            self.path.display(),
            errors,
            plural(errors),
            warnings,
            plural(warnings)
        )
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Why an agent could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The agent file itself could not be read. (Unreadable included files
    /// and prompt files are diagnostics, so that validation can go on and
    /// report everything else too.)
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The agent file.
        path: PathBuf,
        /// Why it could not be read.
        #[source]
        source: std::io::Error,
    },
    /// The file was read but is not a valid agent. Holds every diagnostic,
    /// warnings included; displayed one per line.
    #[error("{}", render(.0))]
    Invalid(Vec<Diagnostic>),
}

impl ConfigError {
    /// The diagnostics of an [`ConfigError::Invalid`]; empty for I/O errors.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            ConfigError::Invalid(diagnostics) => diagnostics,
            ConfigError::Io { .. } => &[],
        }
    }
}

fn render(diagnostics: &[Diagnostic]) -> String {
    let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

/// Orders diagnostics by the rank of their file (the order files were read
/// in), then position, keeping the emission order for ties so that related
/// findings stay together.
pub(crate) fn sort(diagnostics: &mut [Diagnostic], file_order: &[PathBuf]) {
    let rank = |file: &Path| file_order.iter().position(|f| f == file).unwrap_or(usize::MAX);
    diagnostics.sort_by_key(|d| (rank(&d.file), d.line, d.column));
}
