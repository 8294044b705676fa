//! From an agent's `provider:model` reference and [`ProviderDecl`] to a ready
//! [`Model`]: each known provider's default address and key variable, reading
//! the key and expanding `${VAR}` in headers from the environment (the values
//! read are handed on to be scrubbed from error messages), and the errors
//! that tell the user what to fix before any run starts.

use crate::anthropic::{Anthropic, AnthropicConfig};
use crate::error::ProviderError;
use crate::gemini::{Gemini, GeminiConfig};
use crate::layers::{Failover, LimiterConfig, ProviderRegistry};
use crate::openai::{OpenAiCompatible, OpenAiConfig};
use crate::retry::RetryConfig;
use rein_types::{Model, ModelRef, ProviderDecl};
use std::sync::Arc;
use std::time::Duration;

/// The provider names [`build_model`] accepts.
pub const KNOWN_PROVIDERS: &[&str] =
    &["openai", "openrouter", "ollama", "vllm", "llamacpp", "openai-compatible", "anthropic", "gemini", "local"];

/// How long a local generation may take when the agent does not say: a CPU
/// is slower than a hosted API, and a larger GGUF slower still.
const LOCAL_TIMEOUT: Duration = Duration::from_secs(300);

/// Where a provider's key comes from when the declaration does not say.
enum KeyPolicy {
    /// Calls fail without a key: refuse to build without one.
    Required(&'static str),
    /// Sent when the variable is set (a vLLM server started with `--api-key`).
    Optional(&'static str),
    /// Local servers that take no key.
    None,
}

struct Defaults {
    base_url: Option<&'static str>,
    key: KeyPolicy,
}

fn defaults(provider: &str) -> Option<Defaults> {
    let (base_url, key) = match provider {
        "openai" => (Some("https://api.openai.com/v1"), KeyPolicy::Required("OPENAI_API_KEY")),
        "openrouter" => (Some("https://openrouter.ai/api/v1"), KeyPolicy::Required("OPENROUTER_API_KEY")),
        "ollama" => (Some("http://127.0.0.1:11434/v1"), KeyPolicy::None),
        "vllm" => (Some("http://127.0.0.1:8000/v1"), KeyPolicy::Optional("VLLM_API_KEY")),
        "llamacpp" => (Some("http://127.0.0.1:8080/v1"), KeyPolicy::None),
        "openai-compatible" => (None, KeyPolicy::None),
        "anthropic" => (Some(crate::anthropic::ANTHROPIC_BASE_URL), KeyPolicy::Required("ANTHROPIC_API_KEY")),
        "gemini" => (Some(GeminiConfig::DEFAULT_BASE_URL), KeyPolicy::Required(GeminiConfig::API_KEY_ENV)),
        _ => return None,
    };
    Some(Defaults { base_url, key })
}

/// The embedded model, loaded in this process (or shared with another agent
/// that loaded the same file with the same settings). Its endpoint is the
/// file, so agents sharing it share one breaker and one set of limits.
#[cfg(feature = "local")]
fn build_local(model: &ModelRef, decl: &ProviderDecl) -> Result<(Arc<dyn Model>, String, Duration), ProviderError> {
    let config = rein_local::LocalConfig {
        threads: decl.threads,
        context_length: decl.context_length,
        tool_choice: decl.tool_choice,
    };
    let local = rein_local::LocalModel::open(&model.name, config).map_err(|e| ProviderError::Local(e.to_string()))?;
    let endpoint = format!("local://{}", local.path().display());
    Ok((Arc::new(local), endpoint, decl.timeout_ms.map_or(LOCAL_TIMEOUT, Duration::from_millis)))
}

#[cfg(not(feature = "local"))]
fn build_local(model: &ModelRef, _: &ProviderDecl) -> Result<(Arc<dyn Model>, String, Duration), ProviderError> {
    let _ = LOCAL_TIMEOUT;
    Err(ProviderError::NotBuiltIn { name: model.provider.clone(), feature: "local" })
}

/// Builds the model `model` names, configured by `decl`, reading the API key
/// and header variables from the process environment. Pass `client` to share
/// one connection pool between models.
pub fn build_model(
    model: &ModelRef,
    decl: &ProviderDecl,
    client: Option<reqwest::Client>,
) -> Result<Arc<dyn Model>, ProviderError> {
    build_model_with(model, decl, client, |var| std::env::var(var).ok())
}

/// [`build_model`] with the environment given as a lookup function, for tests
/// and embedders that keep secrets elsewhere than in process variables.
pub fn build_model_with(
    model: &ModelRef,
    decl: &ProviderDecl,
    client: Option<reqwest::Client>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Model>, ProviderError> {
    build_model_in(ProviderRegistry::global(), model, decl, client, env)
}

/// Builds the model `model` names behind its endpoint's circuit breaker and
/// client-side limits, taken from (or created in) `registry`, so every model
/// built from one registry for one provider endpoint shares them.
pub fn build_model_in(
    registry: &ProviderRegistry,
    model: &ModelRef,
    decl: &ProviderDecl,
    client: Option<reqwest::Client>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Model>, ProviderError> {
    let (built, base_url, timeout) = build_bare(model, decl, client, env)?;
    let limits = LimiterConfig {
        max_concurrency: decl.max_concurrency,
        requests_per_minute: decl.requests_per_minute,
        tokens_per_minute: decl.tokens_per_minute,
    };
    let endpoint = registry.endpoint(&model.provider, &base_url, limits);
    Ok(registry.wrap(built, &endpoint, timeout))
}

/// Builds a failover chain: `primary`, then each fallback in order, every
/// one behind its own endpoint's breaker and limits from `registry`. With no
/// fallbacks the chain still names the serving model in `served_by`.
pub fn build_chain_in(
    registry: &ProviderRegistry,
    primary: (&ModelRef, &ProviderDecl),
    fallbacks: &[(ModelRef, ProviderDecl)],
    client: Option<reqwest::Client>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Arc<dyn Model>, ProviderError> {
    let first = build_model_in(registry, primary.0, primary.1, client.clone(), &env)?;
    let rest = fallbacks
        .iter()
        .map(|(model, decl)| build_model_in(registry, model, decl, client.clone(), &env))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Failover::new(first, rest)))
}

/// [`build_chain_in`] with the process-wide registry and environment.
pub fn build_chain(
    primary: (&ModelRef, &ProviderDecl),
    fallbacks: &[(ModelRef, ProviderDecl)],
    client: Option<reqwest::Client>,
) -> Result<Arc<dyn Model>, ProviderError> {
    build_chain_in(ProviderRegistry::global(), primary, fallbacks, client, |var| std::env::var(var).ok())
}

/// The provider client alone, with the base URL and time-out it uses.
fn build_bare(
    model: &ModelRef,
    decl: &ProviderDecl,
    client: Option<reqwest::Client>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(Arc<dyn Model>, String, Duration), ProviderError> {
    let provider = model.provider.as_str();
    if provider == "local" {
        return build_local(model, decl);
    }
    let Some(defaults) = defaults(provider) else {
        return Err(ProviderError::UnknownProvider { name: provider.to_owned(), known: KNOWN_PROVIDERS.join(", ") });
    };

    let base_url = match (&decl.base_url, defaults.base_url) {
        (Some(url), _) => url.clone(),
        (None, Some(url)) => url.to_owned(),
        (None, None) => return Err(ProviderError::MissingBaseUrl { provider: provider.to_owned() }),
    };

    // An empty variable is treated as unset: an empty key is never right, and
    // `export OPENAI_API_KEY=` is a common way to "unset" one.
    let read_key = |var: &str| env(var).filter(|value| !value.is_empty());
    let (api_key, api_key_env) = match (&decl.api_key_env, defaults.key) {
        // A variable the user named is required: a silent missing key would
        // only surface later as a confusing 401.
        (Some(var), _) => (Some(read_key(var).ok_or_else(|| missing_key(var))?), Some(var.clone())),
        (None, KeyPolicy::Required(var)) => {
            (Some(read_key(var).ok_or_else(|| missing_key(var))?), Some(var.to_owned()))
        }
        (None, KeyPolicy::Optional(var)) => match read_key(var) {
            Some(key) => (Some(key), Some(var.to_owned())),
            None => (None, None),
        },
        (None, KeyPolicy::None) => (None, None),
    };

    // The expanded values are kept apart too, to be scrubbed from error
    // messages on their own: a provider may echo the token of `Bearer ${T}`.
    let mut secrets = Vec::new();
    let headers = decl
        .headers
        .iter()
        .map(|(name, template)| Ok((name.clone(), expand(name, template, &env, &mut secrets)?)))
        .collect::<Result<Vec<_>, ProviderError>>()?;

    let mut retry = RetryConfig::default();
    if let Some(max_retries) = decl.max_retries {
        retry.max_retries = max_retries;
    }
    let timeout = decl.timeout_ms.map_or(Duration::from_secs(60), Duration::from_millis);
    if provider == "anthropic" {
        let mut config = AnthropicConfig::new(model.name.clone(), base_url);
        config.api_key = api_key;
        config.api_key_env = api_key_env;
        config.headers = headers;
        config.secrets = secrets;
        config.timeout = timeout;
        config.retry = retry;
        let endpoint = config.base_url.clone();
        return Ok((Arc::new(Anthropic::new(config, client)?), endpoint, timeout));
    }
    if provider == "gemini" {
        let config = GeminiConfig {
            provider: provider.to_owned(),
            model: model.name.clone(),
            base_url: base_url.clone(),
            api_key,
            api_key_env,
            headers,
            secrets,
            timeout,
            retry,
        };
        return Ok((Arc::new(Gemini::new(config, client)?), base_url, timeout));
    }
    let config = OpenAiConfig {
        provider: provider.to_owned(),
        model: model.name.clone(),
        base_url: base_url.clone(),
        api_key,
        api_key_env,
        headers,
        secrets,
        timeout,
        retry,
    };
    Ok((Arc::new(OpenAiCompatible::new(config, client)?), base_url, timeout))
}

fn missing_key(var: &str) -> ProviderError {
    ProviderError::MissingKey { var: var.to_owned() }
}

/// Replaces every `${VAR}` in a header template with the variable's value,
/// adding each value read to `secrets`. A `$` not followed by `{` is kept as
/// it is.
fn expand(
    header: &str,
    template: &str,
    env: &impl Fn(&str) -> Option<String>,
    secrets: &mut Vec<String>,
) -> Result<String, ProviderError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| ProviderError::InvalidHeader {
            header: header.to_owned(),
            reason: "a `${` is not closed by `}`".to_owned(),
        })?;
        let var = &after[..end];
        if var.is_empty() {
            return Err(ProviderError::InvalidHeader {
                header: header.to_owned(),
                reason: "`${}` names no variable".to_owned(),
            });
        }
        let value = env(var)
            .ok_or_else(|| ProviderError::MissingHeaderVar { header: header.to_owned(), var: var.to_owned() })?;
        out.push_str(&value);
        secrets.push(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(var: &str) -> Option<String> {
        match var {
            "TEAM" => Some("blue".into()),
            "TOKEN" => Some("t0k".into()),
            _ => None,
        }
    }

    #[test]
    fn header_templates_expand_every_variable() {
        let mut secrets = Vec::new();
        let mut expand = |template: &str| expand("h", template, &env, &mut secrets);
        assert_eq!(expand("plain $5 text").unwrap(), "plain $5 text");
        assert_eq!(expand("${TEAM}-${TOKEN}!").unwrap(), "blue-t0k!");
        assert_eq!(
            expand("x ${NOPE}"),
            Err(ProviderError::MissingHeaderVar { header: "h".into(), var: "NOPE".into() })
        );
        assert!(matches!(expand("${TEAM"), Err(ProviderError::InvalidHeader { .. })));
        assert!(matches!(expand("${}"), Err(ProviderError::InvalidHeader { .. })));
        assert_eq!(secrets, ["blue", "t0k"], "the values read are remembered for scrubbing");
    }
}
