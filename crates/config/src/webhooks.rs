//! `[[webhooks]]`: named endpoints that start the agent with a signed JSON
//! payload (`POST /v1/hooks/{name}` on `rein serve`), and the input template
//! that maps the payload to the run's input.
//!
//! The template's syntax is defined here, once: the loader checks it and the
//! server renders it with [`render_webhook_input`].

use crate::EnvRef;
use crate::reader::Node;
use crate::source::{Loc, Sink};
use crate::templates;
use rein_types::WebhookDecl;
use serde_json::Value;

const WEBHOOK_KEYS: &[&str] = &["name", "secret_env", "input", "tolerance"];

/// Timestamps are whole seconds, so a tolerance below one cannot be met.
const MIN_TOLERANCE_MS: u64 = 1_000;

/// One piece of an input template.
#[derive(Debug, PartialEq)]
enum Piece<'t> {
    Text(&'t str),
    /// A JSON Pointer, as written (`/issue/title`).
    Pointer(&'t str),
}

/// Splits an input template into text and `{/pointer}` placeholders. Braces
/// not followed by `/` are text.
fn pieces(template: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find("{/") {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            let shown: String = after.chars().take(30).collect();
            return Err(format!("the placeholder {{{shown} is not closed: write {{/json/pointer}}"));
        };
        let pointer = &after[..close];
        check_pointer(pointer)?;
        out.push(Piece::Pointer(pointer));
        rest = &after[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// In a JSON Pointer, `~` only escapes: `~0` is `~`, `~1` is `/`.
fn check_pointer(pointer: &str) -> Result<(), String> {
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err(format!("{{{pointer}}} is not a JSON Pointer: `~` must be followed by 0 (for ~) or 1 (for /)"));
        }
    }
    Ok(())
}

/// The run input for a webhook payload: `template` with each `{/pointer}`
/// replaced by the payload's value there (a string as it is, any other
/// value as compact JSON), or without a template the whole payload as
/// pretty-printed JSON.
///
/// # Errors
///
/// A message naming the pointer when the payload has no value there (or the
/// template is invalid, which the loader already refuses).
pub fn render_webhook_input(template: Option<&str>, payload: &Value) -> Result<String, String> {
    let Some(template) = template else {
        // A `Value` always serialises.
        return Ok(serde_json::to_string_pretty(payload).unwrap_or_default());
    };
    let mut out = String::with_capacity(template.len());
    for piece in pieces(template)? {
        match piece {
            Piece::Text(text) => out.push_str(text),
            Piece::Pointer(pointer) => match payload.pointer(pointer) {
                Some(Value::String(text)) => out.push_str(text),
                Some(value) => out.push_str(&value.to_string()),
                None => return Err(format!("the payload has no value at {pointer}")),
            },
        }
    }
    Ok(out)
}

/// A webhook as declared, with where its name is, for the duplicate check.
pub(crate) struct DeclaredWebhook {
    pub decl: WebhookDecl,
    pub loc: Loc,
    pub key: String,
}

/// `[[webhooks]]`: each entry checked, names unique within the agent.
pub(crate) fn parse_webhooks(node: &Node<'_, '_>, env: &mut Vec<EnvRef>, sink: &mut Sink) -> Vec<WebhookDecl> {
    if matches!(node.value, toml::de::DeValue::Table(_)) {
        sink.error(&node.loc(), &node.key, "write each webhook as [[webhooks]] (an array of tables), not [webhooks]");
        return Vec::new();
    }
    let mut declared: Vec<DeclaredWebhook> = Vec::new();
    for item in node.array(sink).unwrap_or_default() {
        let Some(hook) = parse_webhook(&item, env, sink) else { continue };
        if let Some(first) = declared.iter().find(|d| d.decl.name == hook.decl.name) {
            sink.error(
                &hook.loc,
                &hook.key,
                format!("duplicate webhook name \"{}\": already declared at {}", hook.decl.name, first.loc),
            );
            continue;
        }
        declared.push(hook);
    }
    declared.into_iter().map(|d| d.decl).collect()
}

fn parse_webhook(item: &Node<'_, '_>, env: &mut Vec<EnvRef>, sink: &mut Sink) -> Option<DeclaredWebhook> {
    let t = item.table(sink)?;
    t.check_keys(WEBHOOK_KEYS, sink, &|key| match key {
        "secret" | "key" | "token" => Some(
            "secrets never go in agent files; set secret_env to the name of the environment variable that holds it"
                .to_string(),
        ),
        _ => None,
    });

    let name_node = t.require("name", sink);
    let name = name_node.as_ref().and_then(|node| {
        let name = node.str(sink)?;
        let valid = !name.is_empty()
            && name.len() <= 64
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !valid {
            sink.error(
                &node.loc(),
                &node.key,
                format!("invalid webhook name \"{name}\": use 1 to 64 letters, digits, _ or -"),
            );
        }
        valid.then(|| name.to_string())
    });

    let secret_env = t.require("secret_env", sink).and_then(|node| {
        let var = node.str(sink)?;
        if templates::is_ident(var) {
            env.push(EnvRef { name: var.to_string(), loc: node.loc(), key: node.key.clone() });
            Some(var.to_string())
        } else {
            let message = if var.starts_with("${") {
                "write the variable's name only, without ${...}".to_string()
            } else {
                "this is the name of the environment variable that holds the secret, never the secret itself"
                    .to_string()
            };
            sink.error(&node.loc(), &node.key, message);
            None
        }
    });

    let mut input_ok = true;
    let input = t.get("input").and_then(|node| {
        let text = node.str(sink);
        input_ok = text.is_some();
        let text = text?;
        let checked = if text.trim().is_empty() {
            Err("an empty input gives the agent nothing to do; leave input out to pass the whole payload".to_string())
        } else {
            pieces(text).map(|_| ())
        };
        if let Err(message) = checked {
            sink.error(&node.loc(), &node.key, message);
            input_ok = false;
            return None;
        }
        Some(text.to_string())
    });

    let mut tolerance_ok = true;
    let tolerance_ms = match t.get("tolerance") {
        None => WebhookDecl::DEFAULT_TOLERANCE_MS,
        Some(node) => match node.duration_ms(sink) {
            Some(ms) if ms >= MIN_TOLERANCE_MS => ms,
            Some(_) => {
                sink.error(&node.loc(), &node.key, "must be at least 1s: signed timestamps are whole seconds");
                tolerance_ok = false;
                0
            }
            None => {
                tolerance_ok = false;
                0
            }
        },
    };

    let (name, secret_env, node) = (name?, secret_env?, name_node?);
    (input_ok && tolerance_ok).then(|| DeclaredWebhook {
        decl: WebhookDecl { name, secret_env, input, tolerance_ms },
        loc: node.loc(),
        key: node.key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn templates_split_into_text_and_pointers() {
        assert_eq!(
            pieces("New issue {/issue/title}: {/issue/body}").unwrap(),
            [
                Piece::Text("New issue "),
                Piece::Pointer("/issue/title"),
                Piece::Text(": "),
                Piece::Pointer("/issue/body")
            ]
        );
        // Other braces are text.
        assert_eq!(pieces("{} and {x}").unwrap(), [Piece::Text("{} and {x}")]);
        assert!(pieces("{/issue").unwrap_err().contains("not closed"));
        assert!(pieces("{/a~2b}").unwrap_err().contains("~"));
        assert_eq!(pieces("{/a~1b~0}").unwrap(), [Piece::Pointer("/a~1b~0")]);
    }

    #[test]
    fn payloads_render_strings_as_they_are_and_other_values_as_json() {
        let payload = json!({"issue": {"title": "Crash", "labels": ["bug"], "n": 7, "a/b": null}});
        let rendered = render_webhook_input(Some("{/issue/title} {/issue/labels} #{/issue/n} {/issue/a~1b}"), &payload);
        assert_eq!(rendered.unwrap(), "Crash [\"bug\"] #7 null");
        assert_eq!(
            render_webhook_input(Some("{/issue/missing}"), &payload).unwrap_err(),
            "the payload has no value at /issue/missing"
        );
        assert_eq!(render_webhook_input(None, &json!({"a": 1})).unwrap(), "{\n  \"a\": 1\n}");
    }
}
