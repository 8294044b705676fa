//! Why a provider could not be built from its declaration. These are
//! configuration mistakes, reported before any run starts; failures of a call
//! itself are [`rein_types::ModelError`]s.

/// A provider declaration that cannot be turned into a working model client.
/// Messages name what to change; none of them contains a key or a header
/// value, since those may be secrets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// The `provider:` part of the model reference names no provider rein knows.
    #[error("unknown model provider `{name}`; known providers: {known}")]
    UnknownProvider { name: String, known: String },

    /// A provider behind a cargo feature this binary was built without.
    #[error("model provider `{name}` is not built into this rein; build it with `--features {feature}`")]
    NotBuiltIn { name: String, feature: &'static str },

    /// The embedded local model could not be found or loaded.
    #[error("{0}")]
    Local(String),

    /// The environment variable that should hold the API key is unset or empty.
    #[error(
        "no API key: the environment variable {var} is not set; export it (`export {var}=<your key>`) or name another variable with `api_key_env`"
    )]
    MissingKey { var: String },

    /// The provider has no default address and the declaration gives none.
    #[error("provider `{provider}` needs a `base_url` (for example http://127.0.0.1:8000/v1)")]
    MissingBaseUrl { provider: String },

    #[error("base_url `{url}` is not a usable http(s) URL: {reason}")]
    InvalidBaseUrl { url: String, reason: String },

    /// A `${VAR}` in a header template names an unset environment variable.
    #[error("header `{header}` refers to ${{{var}}}, but the environment variable {var} is not set")]
    MissingHeaderVar { header: String, var: String },

    /// A header name or value that HTTP does not allow, or a malformed template.
    #[error("header `{header}` is invalid: {reason}")]
    InvalidHeader { header: String, reason: String },

    /// The key holds characters that cannot travel in an HTTP header (often a
    /// stray newline from `cat key.txt`).
    #[error("the API key in {var} contains characters that cannot be sent in an HTTP header (a trailing newline?)")]
    InvalidKey { var: String },

    /// The HTTP client itself could not be created (TLS initialisation).
    #[error("could not create the HTTP client: {0}")]
    Client(String),
}
