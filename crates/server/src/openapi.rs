//! The OpenAPI document at `/openapi.json`, built from the same endpoint
//! table that builds the router (so a route cannot be missing from it) and
//! from the request types themselves (schemas derived by schemars).

use schemars::{JsonSchema, SchemaGenerator};
use serde_json::{Map, Value, json};

/// What the document says about one endpoint.
pub struct Doc {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    /// The JSON body's schema, if it takes one.
    pub body: Option<fn(&mut SchemaGenerator) -> schemars::Schema>,
    /// The query parameters' schema (an object), if any.
    pub query: Option<fn(&mut SchemaGenerator) -> schemars::Schema>,
    /// Statuses answered besides errors, with what they mean.
    pub responses: &'static [(u16, &'static str)],
    /// The scope an API key needs here; `None` for endpoints without keys.
    pub scope: Option<rein::Scope>,
}

pub fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> schemars::Schema {
    generator.subschema_for::<T>()
}

/// The document for `docs`.
pub fn document(docs: &[Doc]) -> Value {
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut paths = Map::new();
    for doc in docs {
        let mut operation = Map::new();
        operation.insert("summary".into(), json!(doc.summary));
        let mut parameters: Vec<Value> = path_parameters(doc.path)
            .into_iter()
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        if let Some(query) = doc.query {
            let schema = query(&mut generator).to_value();
            let resolved = resolve(&generator, &schema);
            if let Some(properties) = resolved.get("properties").and_then(Value::as_object) {
                for (name, property) in properties {
                    parameters.push(json!({ "name": name, "in": "query", "required": false, "schema": property }));
                }
            }
        }
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        if let Some(body) = doc.body {
            let schema = body(&mut generator).to_value();
            operation.insert(
                "requestBody".into(),
                json!({ "required": true, "content": { "application/json": { "schema": schema } } }),
            );
        }
        let mut responses = Map::new();
        for (status, description) in doc.responses {
            responses.insert(status.to_string(), json!({ "description": description }));
        }
        responses.insert(
            "default".into(),
            json!({
                "description": "An error, with a stable code",
                "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
            }),
        );
        operation.insert("responses".into(), Value::Object(responses));
        match doc.scope {
            Some(scope) => {
                operation.insert("security".into(), json!([{ "apiKey": [] }]));
                operation.insert("x-rein-scope".into(), json!(scope.as_str()));
            }
            None => {
                operation.insert("security".into(), json!([]));
            }
        }
        let entry = paths.entry(doc.path.to_owned()).or_insert_with(|| json!({}));
        if let Some(entry) = entry.as_object_mut() {
            entry.insert(doc.method.to_owned(), Value::Object(operation));
        }
    }
    let mut schemas: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    schemas.insert(
        "Error".into(),
        json!({
            "type": "object",
            "required": ["error"],
            "properties": { "error": {
                "type": "object",
                "required": ["code", "message"],
                "properties": { "code": { "type": "string" }, "message": { "type": "string" } }
            } }
        }),
    );
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "rein",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Run agents, follow their runs, decide on approvals, and operate the kill switch."
        },
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key (`rein keys create`): `Authorization: Bearer rein_...`. Each \
                                    operation names the scope it needs in `x-rein-scope`; `admin` holds them all."
                }
            }
        }
    })
}

/// `{name}` segments of a route path.
fn path_parameters(path: &str) -> Vec<&str> {
    path.split('/').filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}')).collect()
}

/// A `$ref` to the generator's definitions, resolved; the schema otherwise.
fn resolve(generator: &SchemaGenerator, schema: &Value) -> Value {
    let Some(reference) = schema.get("$ref").and_then(Value::as_str) else { return schema.clone() };
    let name = reference.rsplit('/').next().unwrap_or_default();
    generator.definitions().get(name).cloned().unwrap_or_else(|| schema.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_found() {
        assert_eq!(path_parameters("/v1/runs/{id}/events"), ["id"]);
        assert!(path_parameters("/healthz").is_empty());
    }
}
