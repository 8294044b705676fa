//! Keeping secrets out of what the model sees. Environment values expanded
//! into a request (API keys in headers or query strings) are remembered for
//! the duration of one call, and every string of the outcome is scrubbed of
//! them before it leaves the tool: a server that echoes the request back in an
//! error page must not leak a key into the transcript, the journal or logs.

use crate::template::{RenderError, encode_component, encode_form};
use rein_types::ToolOutcome;
use serde_json::Value;

/// What replaces a secret.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are not scrubbed: they are not secrets worth the
/// damage of replacing every `v1` or `42` in a response, and no real
/// credential is that short.
const MIN_SECRET_LEN: usize = 4;

/// The environment values one call has expanded, in every form they may be
/// echoed back in.
#[derive(Debug, Default)]
pub(crate) struct Secrets {
    forms: Vec<String>,
}

impl Secrets {
    /// Reads an environment variable for a template, remembering its value.
    /// Errors name the variable only.
    pub(crate) fn env(&mut self, name: &str) -> Result<String, RenderError> {
        match std::env::var(name) {
            Ok(value) if !value.is_empty() => {
                self.add(&value);
                Ok(value)
            }
            Ok(_) | Err(std::env::VarError::NotPresent) => Err(RenderError::MissingEnv(name.to_string())),
            Err(std::env::VarError::NotUnicode(_)) => Err(RenderError::EnvNotUnicode(name.to_string())),
        }
    }

    /// Remembers a secret value together with its percent-encoded and
    /// JSON-escaped forms.
    pub(crate) fn add(&mut self, value: &str) {
        if value.chars().count() < MIN_SECRET_LEN {
            return;
        }
        // The JSON string literal without its two enclosing quotes.
        let literal = serde_json::to_string(value).unwrap_or_default();
        let escaped = literal.get(1..literal.len().saturating_sub(1)).unwrap_or_default().to_string();
        for form in [value.to_string(), encode_component(value), encode_form(value), escaped] {
            if !form.is_empty() && !self.forms.contains(&form) {
                self.forms.push(form);
            }
        }
        // Longest first, so a form that contains another is replaced whole.
        self.forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.forms.is_empty()
    }

    /// Replaces every known secret in `text`.
    pub(crate) fn scrub_str(&self, text: &str) -> String {
        let mut out = text.to_string();
        for form in &self.forms {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), REDACTED);
            }
        }
        out
    }

    /// Replaces every known secret in the strings (and object keys) of a JSON
    /// value.
    pub(crate) fn scrub_value(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.scrub_str(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.scrub_value(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (self.scrub_str(&k), self.scrub_value(v))).collect())
            }
            other => other,
        }
    }

    /// Scrubs every string of an outcome: data, message and hint.
    pub(crate) fn scrub_outcome(&self, outcome: ToolOutcome) -> ToolOutcome {
        if self.is_empty() {
            return outcome;
        }
        match outcome {
            ToolOutcome::Ok { data, truncated } => ToolOutcome::Ok { data: self.scrub_value(data), truncated },
            ToolOutcome::Error { message, hint, retryable } => ToolOutcome::Error {
                message: self.scrub_str(&message),
                hint: hint.map(|h| self.scrub_str(&h)),
                retryable,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scrubs_all_forms() {
        let mut s = Secrets::default();
        s.add("sk live/\"x\"");
        assert_eq!(s.scrub_str("key=sk live/\"x\"!"), "key=[REDACTED]!");
        assert_eq!(s.scrub_str("q=sk+live%2F%22x%22"), "q=[REDACTED]");
        assert_eq!(s.scrub_str("u=sk%20live%2F%22x%22"), "u=[REDACTED]");
        assert_eq!(s.scrub_str(r#"{"k":"sk live/\"x\""}"#), r#"{"k":"[REDACTED]"}"#);
        let v = s.scrub_value(json!({"sk live/\"x\"": ["sk live/\"x\""]}));
        assert_eq!(v, json!({"[REDACTED]": ["[REDACTED]"]}));
    }

    #[test]
    fn short_values_are_not_scrubbed() {
        let mut s = Secrets::default();
        s.add("v1");
        assert!(s.is_empty());
    }
}
