//! Errors found while turning a tool declaration into a running tool. These
//! are configuration mistakes (a bad URL, a missing database file, a SQL typo),
//! reported once at start-up to the person who wrote the agent file; failures
//! while a tool runs are never Rust errors but [`rein_types::ToolOutcome`]s.

use rein_types::ToolNameError;

/// Why a tool could not be built from its declaration.
#[derive(Debug, thiserror::Error)]
pub enum ToolBuildError {
    /// The tool's name is not one every provider accepts.
    #[error(transparent)]
    InvalidName(#[from] ToolNameError),

    /// The declaration is inconsistent or malformed (method, URL, template,
    /// limits, JSON Pointer, ...).
    #[error("tool `{tool}`: {message}")]
    InvalidDeclaration {
        /// The tool being built.
        tool: String,
        /// What is wrong and how to fix it.
        message: String,
    },

    /// The database behind a SQL tool could not be opened, or its query does
    /// not compile against it.
    #[error("tool `{tool}` (database `{database}`): {message}")]
    Database {
        /// The tool being built.
        tool: String,
        /// The database's name in the agent file.
        database: String,
        /// What went wrong.
        message: String,
    },

    /// The argument type of a function tool does not give a usable JSON
    /// Schema (it must describe an object).
    #[error("tool `{tool}`: {message}")]
    InvalidSchema {
        /// The tool being built.
        tool: String,
        /// What is wrong with the schema.
        message: String,
    },
}

impl ToolBuildError {
    pub(crate) fn decl(tool: &impl std::fmt::Display, message: impl Into<String>) -> Self {
        Self::InvalidDeclaration { tool: tool.to_string(), message: message.into() }
    }
}
