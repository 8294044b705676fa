//! Source files and where things are in them: turns the byte offsets that the
//! TOML parser reports into `line:column`, and collects diagnostics.
//!
//! Positions are converted as soon as a finding is made, so the parsed
//! documents (which borrow their file's text) never have to outlive the
//! function that walks them.

use crate::diagnostic::{Diagnostic, Severity};
use std::path::PathBuf;

/// A file's path and text, with the offsets of its line starts.
pub(crate) struct SourceFile {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

impl SourceFile {
    pub fn new(path: PathBuf, text: String) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1))
            .collect();
        Self { path, text, line_starts }
    }

    /// The 1-based line and character column of a byte offset.
    pub fn loc(&self, offset: usize) -> Loc {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|start| *start <= offset).max(1);
        let start = self.line_starts[line - 1];
        // Offsets from the parser fall on character boundaries; fall back to
        // bytes if one ever does not, rather than failing to report.
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
        Loc { file: self.path.clone(), line, column }
    }
}

/// A position in a file, already resolved to line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Collects diagnostics; validation never stops at the first one.
#[derive(Default)]
pub(crate) struct Sink {
    pub diagnostics: Vec<Diagnostic>,
}

impl Sink {
    pub fn error(&mut self, loc: &Loc, key: &str, message: impl Into<String>) {
        self.push(Severity::Error, loc, key, message.into());
    }

    pub fn warning(&mut self, loc: &Loc, key: &str, message: impl Into<String>) {
        self.push(Severity::Warning, loc, key, message.into());
    }

    fn push(&mut self, severity: Severity, loc: &Loc, key: &str, message: String) {
        self.diagnostics.push(Diagnostic {
            severity,
            file: loc.file.clone(),
            line: loc.line,
            column: loc.column,
            key: key.to_string(),
            message,
        });
    }

    pub fn error_count(&self) -> usize {
        self.diagnostics.iter().filter(|d| d.is_error()).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_become_lines_and_character_columns() {
        let src = SourceFile::new(PathBuf::from("a.toml"), "a = 1\nbé = \"x\"\n".to_string());
        assert_eq!((src.loc(0).line, src.loc(0).column), (1, 1));
        assert_eq!((src.loc(4).line, src.loc(4).column), (1, 5));
        assert_eq!((src.loc(6).line, src.loc(6).column), (2, 1));
        // `=` after a two-byte character is the 4th character, not the 5th byte.
        assert_eq!((src.loc(10).line, src.loc(10).column), (2, 4));
        assert_eq!(src.loc(1000).line, 3);
    }
}
