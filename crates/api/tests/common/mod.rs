//! Shared test helpers.

use serde_json::Value;

/// Validate `v` against a structural OpenAPI schema the way the API server would, collecting
/// problems: undeclared keys (pruned by the server), wrong types, enum/minimum/maximum
/// violations and missing required keys.
pub fn validate(path: &str, schema: &Value, v: &Value, problems: &mut Vec<String>) {
    if v.is_null() {
        // Null in a non-nullable field is pruned by the API server (treated as absent).
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            problems.push(format!("{path}: not int-or-string"));
        }
        return;
    }
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("");
    let ok = match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        other => {
            problems.push(format!("{path}: schema type {other:?}"));
            return;
        }
    };
    if !ok {
        problems.push(format!("{path}: {v} is not {ty}"));
        return;
    }
    if let Some(values) = schema.get("enum").and_then(Value::as_array)
        && !values.contains(v)
    {
        problems.push(format!("{path}: {v} not in enum {values:?}"));
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), v.as_f64())
        && n < min
    {
        problems.push(format!("{path}: {n} < minimum {min}"));
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), v.as_f64())
        && n > max
    {
        problems.push(format!("{path}: {n} > maximum {max}"));
    }
    match v {
        Value::Object(map) => {
            let props = schema.get("properties").and_then(Value::as_object);
            let extra = schema.get("additionalProperties");
            for (k, child) in map {
                let sub = props
                    .and_then(|p| p.get(k))
                    .or(extra.filter(|e| e.is_object()));
                match sub {
                    Some(sub) => validate(&format!("{path}.{k}"), sub, child, problems),
                    None if path.is_empty() && (k == "apiVersion" || k == "kind") => {}
                    None if k == "metadata" && path.is_empty() => {}
                    None => problems.push(format!("{path}.{k}: not in schema (would be pruned)")),
                }
            }
            for r in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !map.contains_key(r.as_str().unwrap_or_default()) {
                    problems.push(format!("{path}: required {r} missing"));
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(&format!("{path}[{i}]"), item_schema, item, problems);
                }
            }
        }
        _ => {}
    }
}

/// The openAPIV3Schema of a kind, by any of its names.
pub fn schema_of(kind: &str) -> Value {
    let info = hwameistor_api::lookup(kind).unwrap();
    let crd = serde_json::to_value(info.crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone()
}

/// Problems of `v` against the schema of `kind`.
#[allow(dead_code)]
pub fn problems(kind: &str, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    validate("", &schema_of(kind), v, &mut out);
    out
}
