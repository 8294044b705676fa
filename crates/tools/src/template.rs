//! String templates shared by the HTTP tool: `{param}` is replaced by an
//! argument, `${VAR}` (where allowed) by an environment variable read at call
//! time. Templates are parsed once when the tool is built, so a malformed one
//! is a start-up error rather than a surprise on the first call. In a URL, an
//! argument is percent-encoded and may not make a path segment `.` or `..`,
//! so it cannot step out of its segment or reach another endpoint.

use crate::redact::Secrets;
use serde_json::{Map, Value};

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Segment {
    Literal(String),
    /// `{name}`: an argument.
    Param(String),
    /// `${NAME}`: an environment variable.
    Env(String),
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    segments: Vec<Segment>,
}

/// Why a template could not be filled in. Carries names only, never values,
/// so it is safe to show the model.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RenderError {
    MissingArgument(String),
    MissingEnv(String),
    EnvNotUnicode(String),
    /// The argument would make a URL path segment `.` or `..`, which URL
    /// parsing resolves away, reaching another endpoint.
    DotSegment(String),
}

impl Template {
    /// Parses `text`. `{name}` (a letter or `_`, then letters, digits, `_` or
    /// `-`) is a parameter; with `allow_env`, `${NAME}` is an environment
    /// variable. Anything else, stray braces included, is literal text:
    /// JSON-looking strings in bodies must survive untouched.
    pub(crate) fn parse(text: &str, allow_env: bool) -> Self {
        let mut segments = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        while let Some(ch) = rest.chars().next() {
            if allow_env
                && ch == '$'
                && let Some((name, len)) = placeholder(&rest[1..], is_env_name)
            {
                flush(&mut literal, &mut segments);
                segments.push(Segment::Env(name.to_string()));
                rest = &rest[1 + len..];
                continue;
            }
            if ch == '{'
                && let Some((name, len)) = placeholder(rest, is_param_name)
            {
                flush(&mut literal, &mut segments);
                segments.push(Segment::Param(name.to_string()));
                rest = &rest[len..];
                continue;
            }
            literal.push(ch);
            rest = &rest[ch.len_utf8()..];
        }
        flush(&mut literal, &mut segments);
        Self { segments }
    }

    pub(crate) fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The parameters the template refers to.
    pub(crate) fn params(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::Param(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// Whether the template reads the environment (its output then may hold a
    /// secret).
    pub(crate) fn uses_env(&self) -> bool {
        self.segments.iter().any(|s| matches!(s, Segment::Env(_)))
    }

    /// The parameter name when the whole template is exactly `{name}`. Such a
    /// template stands for the argument itself: an absent optional argument
    /// drops the header, query pair or body field instead of failing.
    pub(crate) fn sole_param(&self) -> Option<&str> {
        match self.segments.as_slice() {
            [Segment::Param(name)] => Some(name),
            _ => None,
        }
    }

    /// Literal text of the template, for checks on what surrounds the
    /// placeholders.
    pub(crate) fn literal_text(&self) -> String {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Literal(text) => Some(text.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Fills the template in. Arguments go through `encode` (percent-encoding
    /// for URL paths); environment values are recorded in `secrets` so that
    /// they can be scrubbed from whatever the call returns.
    pub(crate) fn render(
        &self,
        args: &Map<String, Value>,
        secrets: &mut Secrets,
        encode: impl Fn(&str) -> String,
    ) -> Result<String, RenderError> {
        self.render_spans(args, secrets, encode).map(|(out, _)| out)
    }

    /// Fills in a URL template, arguments percent-encoded. Encoding keeps an
    /// argument inside its path segment, but not from *being* a segment of
    /// `.` or `..`, which URL parsing then resolves (`/users/../orders` is
    /// `/orders`, and `%2e` counts as a dot): such an argument is refused.
    pub(crate) fn render_url(&self, args: &Map<String, Value>, secrets: &mut Secrets) -> Result<String, RenderError> {
        let (url, spans) = self.render_spans(args, secrets, encode_component)?;
        // Encoded arguments hold no `/`, `?` or `#`, so the path's bounds
        // and its segments all come from the template's literal text.
        let Some(path_start) = url.find("://").and_then(|scheme| {
            let authority = scheme + 3;
            url[authority..].find('/').map(|slash| authority + slash)
        }) else {
            return Ok(url);
        };
        let path_end = url[path_start..].find(['?', '#']).map_or(url.len(), |end| path_start + end);
        let mut start = path_start;
        for piece in url[path_start..path_end].split('/') {
            let end = start + piece.len();
            if is_dot_segment(piece)
                && let Some((_, _, name)) = spans.iter().find(|(from, to, _)| *from < end && *to > start)
            {
                return Err(RenderError::DotSegment(name.clone()));
            }
            start = end + 1;
        }
        Ok(url)
    }

    /// Fills the template in and says where each argument went: byte ranges
    /// of the output and the parameter's name.
    fn render_spans(
        &self,
        args: &Map<String, Value>,
        secrets: &mut Secrets,
        encode: impl Fn(&str) -> String,
    ) -> Result<(String, Vec<ArgSpan>), RenderError> {
        let mut out = String::new();
        let mut spans = Vec::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::Param(name) => match args.get(name) {
                    Some(value) if !value.is_null() => {
                        let start = out.len();
                        out.push_str(&encode(&arg_text(value)));
                        spans.push((start, out.len(), name.clone()));
                    }
                    _ => return Err(RenderError::MissingArgument(name.clone())),
                },
                Segment::Env(name) => out.push_str(&secrets.env(name)?),
            }
        }
        Ok((out, spans))
    }
}

/// Where one argument went in a rendered template: the byte range it fills
/// and the parameter's name.
type ArgSpan = (usize, usize, String);

/// Whether a URL path segment is one that URL parsing resolves away: `.` or
/// `..`, with any dot possibly written `%2e` (WHATWG URL parsing treats it
/// as a dot there).
fn is_dot_segment(segment: &str) -> bool {
    let dots = segment.to_ascii_lowercase().replace("%2e", ".");
    dots == "." || dots == ".."
}

/// The text an argument contributes to a string: strings as they are, other
/// JSON values as JSON.
pub(crate) fn arg_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Percent-encodes everything outside RFC 3986's unreserved set, `/` included,
/// so an argument such as `../admin` stays inside its path segment.
pub(crate) fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            push_hex(&mut out, byte);
        }
    }
    out
}

/// Percent-encodes as `application/x-www-form-urlencoded` does (the query
/// string encoding of `reqwest::Url`), so a secret can be recognised in an
/// echoed query string.
pub(crate) fn encode_form(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'*' | b'-' | b'.' | b'_') {
            out.push(byte as char);
        } else if byte == b' ' {
            out.push('+');
        } else {
            push_hex(&mut out, byte);
        }
    }
    out
}

fn push_hex(out: &mut String, byte: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(HEX[usize::from(byte >> 4)] as char);
    out.push(HEX[usize::from(byte & 0x0f)] as char);
}

/// Matches `{name}` at the start of `text`, returning the name and the length
/// of the whole placeholder.
fn placeholder(text: &str, valid: fn(&str) -> bool) -> Option<(&str, usize)> {
    let inner = text.strip_prefix('{')?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    valid(name).then_some((name, end + 2))
}

fn is_param_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn flush(literal: &mut String, segments: &mut Vec<Segment>) {
    if !literal.is_empty() {
        segments.push(Segment::Literal(std::mem::take(literal)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn args(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn parses_params_env_and_literals() {
        let t = Template::parse("Bearer ${TOKEN} for {user_id} {not a param} {}", true);
        assert_eq!(
            t.segments(),
            &[
                Segment::Literal("Bearer ".into()),
                Segment::Env("TOKEN".into()),
                Segment::Literal(" for ".into()),
                Segment::Param("user_id".into()),
                Segment::Literal(" {not a param} {}".into()),
            ]
        );
        assert!(t.uses_env());
    }

    #[test]
    fn dollar_is_literal_without_env() {
        let t = Template::parse("cost ${amount}", false);
        assert_eq!(t.segments(), &[Segment::Literal("cost $".into()), Segment::Param("amount".into())]);
    }

    #[test]
    fn sole_param_is_recognised() {
        assert_eq!(Template::parse("{id}", false).sole_param(), Some("id"));
        assert_eq!(Template::parse("x{id}", false).sole_param(), None);
    }

    #[test]
    fn renders_and_encodes() {
        let t = Template::parse("/users/{id}/x", false);
        let mut secrets = Secrets::default();
        let out = t.render(&args(json!({"id": "a b/../c"})), &mut secrets, encode_component);
        assert_eq!(out, Ok("/users/a%20b%2F..%2Fc/x".to_string()));
        let out = t.render(&args(json!({})), &mut secrets, encode_component);
        assert_eq!(out, Err(RenderError::MissingArgument("id".into())));
        let out = t.render(&args(json!({"id": 42})), &mut secrets, encode_component);
        assert_eq!(out, Ok("/users/42/x".to_string()));
    }

    #[test]
    fn dot_segments_from_arguments_are_refused() {
        let t = Template::parse("https://api.example.com/users/{id}/orders?x={q}", false);
        let mut secrets = Secrets::default();
        let mut render = |value: Value| t.render_url(&args(json!({"id": value, "q": "."})), &mut secrets);
        for bad in [".", ".."] {
            assert_eq!(render(json!(bad)), Err(RenderError::DotSegment("id".into())), "{bad}");
        }
        // Percent signs are encoded, so `%2e` cannot pose as a dot.
        assert_eq!(render(json!("%2e%2e")), Ok("https://api.example.com/users/%252e%252e/orders?x=.".to_string()));
        // Dots are fine as part of a value, and anywhere outside the path.
        assert_eq!(render(json!("...")), Ok("https://api.example.com/users/.../orders?x=.".to_string()));
        assert_eq!(render(json!("a..b")), Ok("https://api.example.com/users/a..b/orders?x=.".to_string()));

        // A segment made of an argument and literal text, or of two arguments.
        let t = Template::parse("https://h/x/.{a}/{b}{c}", false);
        let refused = |a: &str, b: &str, c: &str| {
            t.render_url(&args(json!({"a": a, "b": b, "c": c})), &mut Secrets::default()).err()
        };
        assert_eq!(refused(".", "x", "y"), Some(RenderError::DotSegment("a".into())));
        assert_eq!(refused("x", ".", "."), Some(RenderError::DotSegment("b".into())));
        assert_eq!(refused("x", ".", ""), Some(RenderError::DotSegment("b".into())));
        assert_eq!(refused("x", "y", "z"), None);
        // The template's own literal dots are the author's business.
        let t = Template::parse("https://h/a/../b/{id}", false);
        assert!(t.render_url(&args(json!({"id": "7"})), &mut Secrets::default()).is_ok());
    }

    #[test]
    fn form_encoding_matches_url_crate() {
        assert_eq!(encode_form("a b~c&d"), "a+b%7Ec%26d");
    }
}
