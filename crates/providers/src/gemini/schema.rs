//! JSON Schema to the OpenAPI-3 subset Gemini accepts for function
//! parameters. Gemini rejects a declaration that uses a keyword outside its
//! subset (`additionalProperties`, `$ref`, `const`, `type: [..]` …), so tool
//! schemas written for JSON Schema validators are rewritten before they are
//! sent: unsupported keywords are dropped, simple `$ref`s are inlined,
//! `const` becomes a one-value `enum`, and `type: [T, "null"]` becomes
//! `type: T, nullable: true`. The original schema still validates the
//! model's arguments in the control layer; this is only what the model sees.

use serde_json::{Map, Value, json};

/// Keywords copied as they are (after their sub-schemas are normalised).
const KEPT: &[&str] =
    &["description", "nullable", "minimum", "maximum", "minItems", "maxItems", "minLength", "maxLength", "pattern"];

/// How deep `$ref`s are inlined; a deeper (or recursive) reference is dropped.
const MAX_REF_DEPTH: usize = 8;

/// Rewrites `schema` into Gemini's subset. Never fails: what cannot be
/// expressed is left out, so the model sees a looser schema and the control
/// layer's validation of the arguments catches the rest.
pub(crate) fn normalise(schema: &Value) -> Value {
    let defs = Definitions::of(schema);
    let mut out = Normaliser { defs, stack: Vec::new() }.schema(schema);
    if let Value::Object(map) = &mut out {
        // A top-level schema without a type is an object of arguments.
        if !map.contains_key("type") && !map.contains_key("anyOf") {
            map.insert("type".to_owned(), json!("object"));
        }
    }
    out
}

/// The `$defs` (and legacy `definitions`) of the root schema.
struct Definitions<'a> {
    defs: Option<&'a Map<String, Value>>,
    definitions: Option<&'a Map<String, Value>>,
}

impl<'a> Definitions<'a> {
    fn of(root: &'a Value) -> Self {
        Self {
            defs: root.get("$defs").and_then(Value::as_object),
            definitions: root.get("definitions").and_then(Value::as_object),
        }
    }

    /// The target of a local reference (`#/$defs/X`, `#/definitions/X`).
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        if let Some(name) = reference.strip_prefix("#/$defs/") {
            self.defs?.get(name)
        } else if let Some(name) = reference.strip_prefix("#/definitions/") {
            self.definitions?.get(name)
        } else {
            None
        }
    }
}

struct Normaliser<'a> {
    defs: Definitions<'a>,
    /// References being inlined, to stop at recursion.
    stack: Vec<String>,
}

impl Normaliser<'_> {
    fn schema(&mut self, schema: &Value) -> Value {
        let Some(source) = schema.as_object() else {
            // `true` or anything else that is not an object: no constraint.
            return Value::Object(Map::new());
        };
        if let Some(reference) = source.get("$ref").and_then(Value::as_str) {
            return self.reference(reference, source);
        }
        let mut out = Map::new();
        self.types(source, &mut out);
        for key in KEPT {
            if let Some(value) = source.get(*key) {
                out.insert((*key).to_owned(), value.clone());
            }
        }
        if let Some(format) = source.get("format").and_then(Value::as_str)
            && format_supported(out.get("type").and_then(Value::as_str), format)
        {
            out.insert("format".to_owned(), json!(format));
        }
        self.enumeration(source, &mut out);
        if let Some(properties) = source.get("properties").and_then(Value::as_object) {
            let properties: Map<String, Value> =
                properties.iter().map(|(name, schema)| (name.clone(), self.schema(schema))).collect();
            if let Some(required) = source.get("required").and_then(Value::as_array) {
                // Gemini refuses a `required` name that is not a property.
                let required: Vec<Value> = required
                    .iter()
                    .filter(|name| name.as_str().is_some_and(|name| properties.contains_key(name)))
                    .cloned()
                    .collect();
                if !required.is_empty() {
                    out.insert("required".to_owned(), Value::Array(required));
                }
            }
            out.insert("properties".to_owned(), Value::Object(properties));
        }
        if let Some(items) = source.get("items") {
            // A tuple (`items: [..]`) has no Gemini form: its first schema is
            // the closest single one.
            let items = match items {
                Value::Array(list) => list.first().map_or_else(|| Value::Object(Map::new()), |s| self.schema(s)),
                single => self.schema(single),
            };
            out.insert("items".to_owned(), items);
        }
        self.alternatives(source, &mut out);
        Value::Object(out)
    }

    /// Inlines a resolvable, non-recursive local reference; anything else is
    /// dropped, keeping only the description next to it.
    fn reference(&mut self, reference: &str, source: &Map<String, Value>) -> Value {
        let target = self.defs.resolve(reference);
        let inline = target.filter(|_| self.stack.len() < MAX_REF_DEPTH && !self.stack.iter().any(|r| r == reference));
        let mut out = match inline {
            Some(target) => {
                self.stack.push(reference.to_owned());
                let out = self.schema(target);
                self.stack.pop();
                out
            }
            None => Value::Object(Map::new()),
        };
        if let (Value::Object(map), Some(description)) = (&mut out, source.get("description")) {
            map.insert("description".to_owned(), description.clone());
        }
        out
    }

    /// `type`, with `[T, "null"]` turned into `T` plus `nullable`, and
    /// several non-null types into an `anyOf`.
    fn types(&mut self, source: &Map<String, Value>, out: &mut Map<String, Value>) {
        match source.get("type") {
            Some(Value::String(kind)) if kind == "null" => {
                out.insert("nullable".to_owned(), json!(true));
            }
            Some(Value::String(kind)) => {
                out.insert("type".to_owned(), json!(kind));
            }
            Some(Value::Array(kinds)) => {
                let named: Vec<&str> = kinds.iter().filter_map(Value::as_str).collect();
                if named.contains(&"null") {
                    out.insert("nullable".to_owned(), json!(true));
                }
                let concrete: Vec<&str> = named.into_iter().filter(|kind| *kind != "null").collect();
                match concrete.as_slice() {
                    [] => {}
                    [one] => {
                        out.insert("type".to_owned(), json!(one));
                    }
                    several => {
                        let options = several.iter().map(|kind| json!({ "type": kind })).collect();
                        out.insert("anyOf".to_owned(), Value::Array(options));
                    }
                }
            }
            _ => {}
        }
    }

    /// `enum` and `const` (as a one-value `enum`). Gemini's enums are
    /// strings: `null` in the list becomes `nullable`, and a list with other
    /// non-strings is moved into the description instead.
    fn enumeration(&mut self, source: &Map<String, Value>, out: &mut Map<String, Value>) {
        let values: Vec<Value> = match (source.get("enum"), source.get("const")) {
            (Some(Value::Array(values)), _) => values.clone(),
            (None, Some(value)) => vec![value.clone()],
            _ => return,
        };
        if values.iter().any(Value::is_null) {
            out.insert("nullable".to_owned(), json!(true));
        }
        let values: Vec<Value> = values.into_iter().filter(|v| !v.is_null()).collect();
        if values.is_empty() {
            return;
        }
        if values.iter().all(Value::is_string) {
            out.insert("enum".to_owned(), Value::Array(values));
            return;
        }
        let listed: Vec<String> = values.iter().map(Value::to_string).collect();
        let note = format!("Allowed values: {}.", listed.join(", "));
        let description = match out.get("description").and_then(Value::as_str) {
            Some(text) if !text.is_empty() => format!("{text} {note}"),
            _ => note,
        };
        out.insert("description".to_owned(), json!(description));
    }

    /// `anyOf` (and `oneOf`, which Gemini lacks, read as `anyOf`): a
    /// `{"type":"null"}` option becomes `nullable`, and a single remaining
    /// option is merged into the schema. `allOf` is merged in.
    fn alternatives(&mut self, source: &Map<String, Value>, out: &mut Map<String, Value>) {
        for options in ["allOf"].iter().filter_map(|key| source.get(*key).and_then(Value::as_array)) {
            for option in options {
                if let Value::Object(part) = self.schema(option) {
                    merge(out, part);
                }
            }
        }
        let options = source.get("anyOf").or_else(|| source.get("oneOf")).and_then(Value::as_array);
        let Some(options) = options else { return };
        let mut kept = Vec::with_capacity(options.len());
        for option in options {
            let option = self.schema(option);
            let only_null = option.as_object().is_some_and(|o| {
                o.get("nullable") == Some(&json!(true)) && !o.contains_key("type") && !o.contains_key("anyOf")
            });
            if only_null {
                out.insert("nullable".to_owned(), json!(true));
            } else {
                kept.push(option);
            }
        }
        match kept.len() {
            0 => {}
            1 => {
                if let Some(Value::Object(part)) = kept.pop() {
                    merge(out, part);
                }
            }
            _ => {
                out.insert("anyOf".to_owned(), Value::Array(kept));
            }
        }
    }
}

/// Adds `part` to `out`: properties are united and `required` lists joined;
/// for any other keyword the value already in `out` wins.
fn merge(out: &mut Map<String, Value>, part: Map<String, Value>) {
    for (key, value) in part {
        match (key.as_str(), out.get_mut(&key), value) {
            ("properties", Some(Value::Object(existing)), Value::Object(more)) => {
                for (name, schema) in more {
                    existing.entry(name).or_insert(schema);
                }
            }
            ("required", Some(Value::Array(existing)), Value::Array(more)) => {
                for name in more {
                    if !existing.contains(&name) {
                        existing.push(name);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, value) => {
                out.insert(key, value);
            }
        }
    }
}

/// The formats Gemini accepts for each type; others (`uri`, `email`, …) are
/// refused by the API, so they are dropped.
fn format_supported(kind: Option<&str>, format: &str) -> bool {
    matches!(
        (kind, format),
        (Some("string"), "date-time" | "enum")
            | (Some("number"), "float" | "double")
            | (Some("integer"), "int32" | "int64")
    )
}

/// Whether a normalised parameters schema declares no argument at all;
/// Gemini refuses an `object` schema with empty `properties`, so such a
/// declaration is sent without `parameters`.
pub(crate) fn is_empty_object(schema: &Value) -> bool {
    let Some(map) = schema.as_object() else { return true };
    map.get("type").and_then(Value::as_str) == Some("object")
        && map.get("properties").and_then(Value::as_object).is_none_or(Map::is_empty)
        && !map.contains_key("anyOf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsupported_keywords_are_removed_recursively() {
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": "urn:x",
            "type": "object",
            "title": "Args",
            "additionalProperties": false,
            "properties": {
                "name": {"type": "string", "default": "x", "examples": ["a"], "minLength": 1},
                "tags": {"type": "array", "items": {"type": "string", "additionalProperties": false}, "maxItems": 3},
                "nested": {"type": "object", "additionalProperties": {"type": "string"},
                           "properties": {"a": {"type": "integer", "format": "int64", "minimum": 0}}}
            },
            "required": ["name", "ghost"]
        });
        assert_eq!(
            normalise(&schema),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 1},
                    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 3},
                    "nested": {"type": "object", "properties": {"a": {"type": "integer", "format": "int64", "minimum": 0}}}
                },
                "required": ["name"]
            })
        );
    }

    #[test]
    fn nullable_type_lists_and_const() {
        let schema = json!({
            "type": "object",
            "properties": {
                "note": {"type": ["string", "null"], "description": "optional"},
                "mode": {"const": "fast"},
                "level": {"type": "integer", "enum": [1, 2, null]},
                "either": {"type": ["string", "integer"]},
                "maybe": {"anyOf": [{"type": "number"}, {"type": "null"}]},
                "url": {"type": "string", "format": "uri"}
            }
        });
        assert_eq!(
            normalise(&schema),
            json!({
                "type": "object",
                "properties": {
                    "note": {"type": "string", "nullable": true, "description": "optional"},
                    "mode": {"enum": ["fast"]},
                    "level": {"type": "integer", "nullable": true, "description": "Allowed values: 1, 2."},
                    "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "maybe": {"type": "number", "nullable": true},
                    "url": {"type": "string"}
                }
            })
        );
    }

    #[test]
    fn simple_refs_are_inlined_and_recursive_ones_dropped() {
        let schema = json!({
            "type": "object",
            "$defs": {
                "Address": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "Node": {"type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}}}
            },
            "properties": {
                "home": {"$ref": "#/$defs/Address", "description": "where they live"},
                "list": {"$ref": "#/$defs/Node"},
                "remote": {"$ref": "https://example.com/schema.json"}
            }
        });
        assert_eq!(
            normalise(&schema),
            json!({
                "type": "object",
                "properties": {
                    "home": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                             "description": "where they live"},
                    "list": {"type": "object", "properties": {"next": {}}},
                    "remote": {}
                }
            })
        );
    }

    #[test]
    fn all_of_is_merged_and_one_of_read_as_any_of() {
        let schema = json!({
            "allOf": [
                {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}
            ],
            "properties": {"c": {"oneOf": [{"type": "string"}, {"type": "integer"}]}}
        });
        assert_eq!(
            normalise(&schema),
            json!({
                "type": "object",
                "properties": {
                    "c": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "a": {"type": "string"},
                    "b": {"type": "boolean"}
                },
                "required": ["a", "b"]
            })
        );
    }

    #[test]
    fn empty_object_schemas_are_recognised() {
        assert!(is_empty_object(&normalise(&json!({"type": "object", "properties": {}}))));
        assert!(is_empty_object(&normalise(&json!({}))));
        assert!(!is_empty_object(&normalise(&json!({"type": "object", "properties": {"a": {"type": "string"}}}))));
    }
}
