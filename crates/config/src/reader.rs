//! Typed, located access to a parsed TOML document.
//!
//! serde's derive stops at the first error, and the brief for `rein validate`
//! is to report all of them, each with its file, line and dotted key. So the
//! document is parsed into toml's spanned tree ([`toml::de::DeTable`]) and
//! walked by hand through these helpers: every accessor that finds the wrong
//! type or value records a diagnostic and returns `None`, and the walk goes
//! on.
//!
//! Value errors are reported at the key's position (`tools[1].risk` points at
//! `risk`), which is where a reader looks first; array elements, having no
//! key, are reported at the element.

use crate::duration::parse_duration_ms;
use crate::source::{Loc, Sink, SourceFile};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// A value in the document, with the dotted key that leads to it.
#[derive(Clone)]
pub(crate) struct Node<'a, 'i> {
    pub src: &'a SourceFile,
    pub value: &'a DeValue<'i>,
    /// Dotted path, e.g. `tools[0].retry.max_attempts`.
    pub key: String,
    /// Offset reported for this value: its key, or the element itself.
    pub at: usize,
    /// Offset of the value itself.
    pub value_at: usize,
}

/// A table in the document.
#[derive(Clone)]
pub(crate) struct Table<'a, 'i> {
    pub src: &'a SourceFile,
    pub map: &'a DeTable<'i>,
    /// Dotted path of the table; empty for the document root.
    pub key: String,
    /// Offset reported for findings about the whole table (a missing key):
    /// its header or inline value.
    pub at: usize,
}

/// Appends `name` to a dotted path, quoting it when it is not a bare TOML key
/// (`prices."openai:gpt-4o"`).
pub(crate) fn join_key(parent: &str, name: &str) -> String {
    let bare = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let name = if bare { name.to_string() } else { format!("{name:?}") };
    if parent.is_empty() { name } else { format!("{parent}.{name}") }
}

impl<'a, 'i> Table<'a, 'i> {
    /// The root of a parsed document.
    pub fn root(src: &'a SourceFile, map: &'a DeTable<'i>) -> Self {
        Self { src, map, key: String::new(), at: 0 }
    }

    pub fn loc(&self) -> Loc {
        self.src.loc(self.at)
    }

    /// The entries in the order they appear in the file (the map itself is
    /// sorted by key).
    pub fn entries(&self) -> Vec<(&'a str, Node<'a, 'i>)> {
        let mut entries: Vec<_> = self.map.iter().collect();
        entries.sort_by_key(|(k, _)| k.span().start);
        entries.into_iter().map(|(k, v)| (k.get_ref().as_ref(), self.node(k, v))).collect()
    }

    fn node(&self, key: &Spanned<std::borrow::Cow<'i, str>>, value: &'a Spanned<DeValue<'i>>) -> Node<'a, 'i> {
        Node {
            src: self.src,
            value: value.get_ref(),
            key: join_key(&self.key, key.get_ref()),
            at: key.span().start,
            value_at: value.span().start,
        }
    }

    /// Reports every key not in `allowed`. `hint` may explain a specific
    /// key (a key that belongs to another kind of tool, a secret); otherwise
    /// the allowed keys are listed, nearest first.
    pub fn check_keys(&self, allowed: &[&str], sink: &mut Sink, hint: &dyn Fn(&str) -> Option<String>) {
        for (name, node) in self.entries() {
            if allowed.contains(&name) {
                continue;
            }
            let message = match hint(name) {
                Some(hint) => format!("unknown key \"{name}\": {hint}"),
                None => match suggest(name, allowed) {
                    Some(near) => format!("unknown key \"{name}\"; did you mean \"{near}\"?"),
                    None => format!("unknown key \"{name}\"; expected one of {}", allowed.join(", ")),
                },
            };
            sink.error(&node.loc(), &node.key, message);
        }
    }

    pub fn get(&self, name: &str) -> Option<Node<'a, 'i>> {
        self.map.get_key_value(name).map(|(k, v)| self.node(k, v))
    }

    /// The value of a required key; a missing key is reported at the table.
    pub fn require(&self, name: &str, sink: &mut Sink) -> Option<Node<'a, 'i>> {
        let node = self.get(name);
        if node.is_none() {
            let key = join_key(&self.key, name);
            sink.error(&self.loc(), &key, format!("missing required key \"{name}\""));
        }
        node
    }

    pub fn str(&self, name: &str, sink: &mut Sink) -> Option<&'a str> {
        self.get(name)?.str(sink)
    }

    pub fn bool(&self, name: &str, sink: &mut Sink) -> Option<bool> {
        self.get(name)?.bool(sink)
    }

    pub fn u32_at_least(&self, name: &str, min: u32, sink: &mut Sink) -> Option<u32> {
        self.get(name)?.u32_at_least(min, sink)
    }

    pub fn u64_at_least(&self, name: &str, min: u64, sink: &mut Sink) -> Option<u64> {
        self.get(name)?.u64_at_least(min, sink)
    }

    pub fn duration_ms(&self, name: &str, sink: &mut Sink) -> Option<u64> {
        self.get(name)?.duration_ms(sink)
    }

    pub fn choice(&self, name: &str, options: &[&str], sink: &mut Sink) -> Option<&'a str> {
        self.get(name)?.choice(options, sink)
    }
}

impl<'a, 'i> Node<'a, 'i> {
    pub fn loc(&self) -> Loc {
        self.src.loc(self.at)
    }

    fn wrong_type(&self, expected: &str, sink: &mut Sink) {
        sink.error(&self.loc(), &self.key, format!("expected {expected}, found {}", describe(self.value)));
    }

    pub fn str(&self, sink: &mut Sink) -> Option<&'a str> {
        match self.value {
            DeValue::String(s) => Some(s.as_ref()),
            _ => {
                self.wrong_type("a string", sink);
                None
            }
        }
    }

    pub fn bool(&self, sink: &mut Sink) -> Option<bool> {
        match self.value {
            DeValue::Boolean(b) => Some(*b),
            _ => {
                self.wrong_type("true or false", sink);
                None
            }
        }
    }

    pub fn int(&self, sink: &mut Sink) -> Option<i64> {
        match self.value {
            DeValue::Integer(n) => match i64::from_str_radix(n.as_str(), n.radix()) {
                Ok(n) => Some(n),
                Err(_) => {
                    sink.error(&self.loc(), &self.key, "integer out of range");
                    None
                }
            },
            _ => {
                self.wrong_type("an integer", sink);
                None
            }
        }
    }

    pub fn u64_at_least(&self, min: u64, sink: &mut Sink) -> Option<u64> {
        let n = self.int(sink)?;
        match u64::try_from(n) {
            Ok(n) if n >= min => Some(n),
            _ => {
                sink.error(&self.loc(), &self.key, format!("must be at least {min}, found {n}"));
                None
            }
        }
    }

    pub fn u32_at_least(&self, min: u32, sink: &mut Sink) -> Option<u32> {
        let n = self.u64_at_least(u64::from(min), sink)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                sink.error(&self.loc(), &self.key, format!("must be at most {}, found {n}", u32::MAX));
                None
            }
        }
    }

    /// A number; integers are accepted where a float is expected, since
    /// `max_cost_usd = 1` is as clear as `1.0`.
    pub fn f64(&self, sink: &mut Sink) -> Option<f64> {
        let value = match self.value {
            DeValue::Float(f) => f.as_str().parse::<f64>().ok(),
            DeValue::Integer(_) => self.int(sink).map(|n| n as f64),
            _ => {
                self.wrong_type("a number", sink);
                return None;
            }
        };
        match value {
            Some(v) if v.is_finite() => Some(v),
            _ => {
                sink.error(&self.loc(), &self.key, "expected a finite number");
                None
            }
        }
    }

    /// A number within `[min, max]`.
    pub fn f64_in(&self, min: f64, max: f64, sink: &mut Sink) -> Option<f64> {
        let v = self.f64(sink)?;
        if v < min || v > max {
            sink.error(&self.loc(), &self.key, format!("must be between {min} and {max}, found {v}"));
            return None;
        }
        Some(v)
    }

    /// A duration string (`"30s"`) or an integer of seconds, in milliseconds.
    pub fn duration_ms(&self, sink: &mut Sink) -> Option<u64> {
        let parsed = match self.value {
            DeValue::String(s) => parse_duration_ms(s),
            DeValue::Integer(_) => {
                let seconds = self.int(sink)?;
                match u64::try_from(seconds) {
                    Ok(s) if s > 0 => s.checked_mul(1_000).ok_or_else(|| "duration too long".to_string()),
                    _ => Err(format!(
                        "invalid duration {seconds}: must be at least 1 second (or a string such as \"500ms\")"
                    )),
                }
            }
            _ => {
                self.wrong_type("a duration such as \"30s\" or \"500ms\" (or an integer of seconds)", sink);
                return None;
            }
        };
        match parsed {
            Ok(ms) => Some(ms),
            Err(message) => {
                sink.error(&self.loc(), &self.key, message);
                None
            }
        }
    }

    /// A string that must be one of `options`.
    pub fn choice(&self, options: &[&str], sink: &mut Sink) -> Option<&'a str> {
        let value = self.str(sink)?;
        if options.contains(&value) {
            return Some(value);
        }
        sink.error(
            &self.loc(),
            &self.key,
            format!("unknown value \"{value}\"; expected one of {}", options.join(", ")),
        );
        None
    }

    pub fn table(&self, sink: &mut Sink) -> Option<Table<'a, 'i>> {
        match self.value {
            DeValue::Table(map) => Some(Table { src: self.src, map, key: self.key.clone(), at: self.value_at }),
            _ => {
                self.wrong_type("a table", sink);
                None
            }
        }
    }

    /// The elements of an array, each keyed `key[i]` and located at itself.
    pub fn array(&self, sink: &mut Sink) -> Option<Vec<Node<'a, 'i>>> {
        match self.value {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| Node {
                        src: self.src,
                        value: item.get_ref(),
                        key: format!("{}[{i}]", self.key),
                        at: item.span().start,
                        value_at: item.span().start,
                    })
                    .collect(),
            ),
            _ => {
                self.wrong_type("an array", sink);
                None
            }
        }
    }

    /// An array of strings, each with its location.
    pub fn strings(&self, sink: &mut Sink) -> Option<Vec<(String, Node<'a, 'i>)>> {
        let mut out = Vec::new();
        let mut ok = true;
        for item in self.array(sink)? {
            match item.str(sink) {
                Some(s) => out.push((s.to_string(), item)),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    /// The value as JSON (for schemas and body templates). Datetimes become
    /// their RFC 3339 text; JSON has no datetime type.
    pub fn to_json(&self, sink: &mut Sink) -> Option<serde_json::Value> {
        use serde_json::Value;
        Some(match self.value {
            DeValue::String(s) => Value::String(s.to_string()),
            DeValue::Integer(_) => Value::from(self.int(sink)?),
            DeValue::Float(_) => {
                let f = self.f64(sink)?;
                Value::from(serde_json::Number::from_f64(f)?)
            }
            DeValue::Boolean(b) => Value::Bool(*b),
            DeValue::Datetime(d) => Value::String(d.to_string()),
            DeValue::Array(_) => {
                let mut out = Vec::new();
                let mut ok = true;
                for item in self.array(sink)? {
                    match item.to_json(sink) {
                        Some(v) => out.push(v),
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Value::Array(out)
            }
            DeValue::Table(_) => {
                let table = self.table(sink)?;
                let mut out = serde_json::Map::new();
                let mut ok = true;
                for (name, node) in table.entries() {
                    match node.to_json(sink) {
                        Some(v) => {
                            out.insert(name.to_string(), v);
                        }
                        None => ok = false,
                    }
                }
                if !ok {
                    return None;
                }
                Value::Object(out)
            }
        })
    }

    /// Follows a JSON Pointer (`/properties/email/type`) from this value to
    /// the node it names, as far as it goes, so that an error found in the
    /// JSON form can be reported at its place in the file.
    pub fn follow_pointer(&self, pointer: &str) -> Node<'a, 'i> {
        let mut node = self.clone();
        for segment in pointer.split('/').skip(1) {
            let segment = segment.replace("~1", "/").replace("~0", "~");
            let next = match node.value {
                DeValue::Table(map) => map.get_key_value(segment.as_str()).map(|(k, v)| Node {
                    src: node.src,
                    value: v.get_ref(),
                    key: join_key(&node.key, k.get_ref()),
                    at: k.span().start,
                    value_at: v.span().start,
                }),
                DeValue::Array(items) => segment.parse::<usize>().ok().and_then(|i| {
                    items.get(i).map(|item| Node {
                        src: node.src,
                        value: item.get_ref(),
                        key: format!("{}[{i}]", node.key),
                        at: item.span().start,
                        value_at: item.span().start,
                    })
                }),
                _ => None,
            };
            match next {
                Some(next) => node = next,
                None => break,
            }
        }
        node
    }
}

/// `string "abc"`, `integer 3`, `table`: what a wrong value was, briefly.
fn describe(value: &DeValue<'_>) -> String {
    match value {
        DeValue::String(s) => format!("string \"{}\"", s.chars().take(40).collect::<String>()),
        DeValue::Integer(n) => format!("integer {}", n.as_str()),
        DeValue::Float(f) => format!("float {}", f.as_str()),
        DeValue::Boolean(b) => format!("boolean {b}"),
        other => other.type_str().to_string(),
    }
}

/// The allowed key nearest to a misspelt one, if any is near enough to be a
/// plausible typo.
pub(crate) fn suggest<'s>(name: &str, allowed: &[&'s str]) -> Option<&'s str> {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    allowed
        .iter()
        .map(|candidate| (edit_distance(&lower, &candidate.to_ascii_lowercase()), *candidate))
        .filter(|(d, candidate)| *d <= 1 || (*d == 2 && candidate.len() >= 5))
        .min_by_key(|(d, _)| *d)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb { prev } else { 1 + prev.min(cur).min(row[j]) };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_joined_and_quoted() {
        assert_eq!(join_key("", "name"), "name");
        assert_eq!(join_key("tools[0]", "risk"), "tools[0].risk");
        assert_eq!(join_key("prices", "openai:gpt-4o"), "prices.\"openai:gpt-4o\"");
    }

    #[test]
    fn typos_get_suggestions() {
        assert_eq!(suggest("max_step", &["max_steps", "timeout"]), Some("max_steps"));
        assert_eq!(suggest("Timeout", &["max_steps", "timeout"]), Some("timeout"));
        assert_eq!(suggest("colour", &["max_steps", "timeout"]), None);
        assert_eq!(suggest("modle", &["model", "id"]), Some("model"));
        assert_eq!(suggest("x", &["id"]), None);
    }
}
