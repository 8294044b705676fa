//! Checks a tool's `parameters`: it must be a JSON Schema that compiles, whose
//! root is an object (tool arguments are always a JSON object), whose
//! `required` names declared properties, and — advice, not a rule — that
//! rejects arguments it does not declare.
//!
//! Schema errors found by `jsonschema` carry a JSON Pointer into the schema;
//! it is followed back into the TOML tree so the diagnostic points at the
//! offending key, not just at `parameters`.

use crate::reader::{Node, suggest};
use crate::source::Sink;
use serde_json::{Value, json};

/// A checked parameters schema and its top-level property names.
pub(crate) struct Parameters {
    pub schema: Value,
    pub properties: Vec<String>,
}

/// The schema of a tool that takes no arguments.
pub(crate) fn empty_parameters() -> Parameters {
    Parameters {
        schema: json!({ "type": "object", "properties": {}, "additionalProperties": false }),
        properties: Vec::new(),
    }
}

/// Validates `parameters`; `None` (with diagnostics recorded) when invalid.
pub(crate) fn check_parameters(node: &Node<'_, '_>, sink: &mut Sink) -> Option<Parameters> {
    // Type check first, so a non-table gets one clear message.
    node.table(sink)?;
    let schema = node.to_json(sink)?;
    let mut ok = true;

    match schema.get("type") {
        Some(Value::String(t)) if t == "object" => {}
        Some(_) => {
            let at = node.follow_pointer("/type");
            sink.error(
                &at.loc(),
                &at.key,
                "the root schema must have type = \"object\": tool arguments are always a JSON object",
            );
            ok = false;
        }
        None => {
            sink.error(
                &node.loc(),
                &node.key,
                "the root schema must have type = \"object\": tool arguments are always a JSON object",
            );
            ok = false;
        }
    }

    if let Err(error) = jsonschema::validator_for(&schema) {
        let at = node.follow_pointer(error.instance_path().as_str());
        sink.error(&at.loc(), &at.key, format!("invalid JSON Schema: {error}"));
        return None;
    }

    check_keywords(&schema, "", node, sink);

    let properties: Vec<String> = match schema.get("properties") {
        Some(Value::Object(map)) => map.keys().cloned().collect(),
        _ => Vec::new(),
    };

    // `required` naming an undeclared property is valid JSON Schema but is
    // always a typo in a tool: no call could satisfy the model's view of it.
    if let Some(Value::Array(required)) = schema.get("required") {
        for (i, name) in required.iter().enumerate() {
            if let Some(name) = name.as_str()
                && !properties.iter().any(|p| p == name)
            {
                let at = node.follow_pointer(&format!("/required/{i}"));
                sink.error(
                    &at.loc(),
                    &at.key,
                    format!("required parameter \"{name}\" is not declared in properties{}", known(&properties)),
                );
                ok = false;
            }
        }
    }

    if schema.get("additionalProperties") != Some(&Value::Bool(false)) {
        sink.warning(
            &node.loc(),
            &node.key,
            "set additionalProperties = false: strict schemas reject invented arguments and make tool calls more reliable",
        );
    }

    ok.then_some(Parameters { schema, properties })
}

/// Every keyword of JSON Schema 2020-12 and draft 7, plus OpenAPI's
/// `nullable`, which some providers accept.
const KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "definitions",
    "$comment",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$vocabulary",
    "type",
    "enum",
    "const",
    "title",
    "description",
    "default",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
    "format",
    "properties",
    "required",
    "additionalProperties",
    "patternProperties",
    "propertyNames",
    "minProperties",
    "maxProperties",
    "dependentRequired",
    "dependentSchemas",
    "dependencies",
    "items",
    "prefixItems",
    "additionalItems",
    "contains",
    "minContains",
    "maxContains",
    "minItems",
    "maxItems",
    "uniqueItems",
    "unevaluatedItems",
    "unevaluatedProperties",
    "minLength",
    "maxLength",
    "pattern",
    "contentEncoding",
    "contentMediaType",
    "contentSchema",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "if",
    "then",
    "else",
    "nullable",
];

/// Warns about keys that are not JSON Schema keywords. Validators ignore
/// unknown keywords, so `requird = [...]` would silently make every argument
/// optional; a warning (not an error) because extension keywords are legal.
fn check_keywords(schema: &Value, pointer: &str, node: &Node<'_, '_>, sink: &mut Sink) {
    let Value::Object(map) = schema else { return };
    for (key, value) in map {
        let child = format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"));
        if !KEYWORDS.contains(&key.as_str()) {
            let at = node.follow_pointer(&child);
            let hint = suggest(key, KEYWORDS).map(|k| format!("; did you mean \"{k}\"?")).unwrap_or_default();
            sink.warning(
                &at.loc(),
                &at.key,
                format!("\"{key}\" is not a JSON Schema keyword, so validators ignore it{hint}"),
            );
            continue;
        }
        match (key.as_str(), value) {
            // Maps from names to subschemas.
            ("properties" | "patternProperties" | "$defs" | "definitions" | "dependentSchemas", Value::Object(m)) => {
                for (name, sub) in m {
                    let sub_pointer = format!("{child}/{}", name.replace('~', "~0").replace('/', "~1"));
                    check_keywords(sub, &sub_pointer, node, sink);
                }
            }
            // Lists of subschemas.
            ("allOf" | "anyOf" | "oneOf" | "prefixItems", Value::Array(items)) => {
                for (i, sub) in items.iter().enumerate() {
                    check_keywords(sub, &format!("{child}/{i}"), node, sink);
                }
            }
            // Single subschemas.
            (
                "items"
                | "additionalProperties"
                | "additionalItems"
                | "not"
                | "if"
                | "then"
                | "else"
                | "contains"
                | "propertyNames"
                | "unevaluatedItems"
                | "unevaluatedProperties"
                | "contentSchema",
                Value::Object(_),
            ) => check_keywords(value, &child, node, sink),
            _ => {}
        }
    }
}

/// `; declared: a, b` or `; the tool declares no parameters`.
pub(crate) fn known(properties: &[String]) -> String {
    if properties.is_empty() {
        "; the tool declares no parameters".to_string()
    } else {
        format!("; declared: {}", properties.join(", "))
    }
}
