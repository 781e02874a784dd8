//! Server-side table printing, as `kubectl get` shows objects.
//!
//! The API server renders a list of custom resources as a `meta.k8s.io/v1` `Table` when the
//! client sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`: one column `Name`,
//! then the CRD's `additionalPrinterColumns`, each cell computed from a simple JSONPath over
//! the object. A CRD without printer columns gets `Name` and `Age`. We do the same from the
//! printer columns in [`hwameistor_api::registry`], so `hwameictl get lv` prints exactly the
//! columns of `kubectl get lv` (NAME first; priority-1 columns only with `-o wide`, which the
//! client filters).
//!
//! Paths are evaluated and cells formatted by the registry
//! ([`registry::json_path_get`], [`registry::format_cell`]); this module only keeps JSON
//! types the Table format carries: integers and numbers stay numbers, booleans stay
//! booleans, `date` columns become kubectl-style ages ("5m", "3h"), a missing field is an
//! empty string (kubectl prints it blank).

use hwameistor_api::registry::{self, KindInfo};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::{Value, json};

/// The `Age` column kubectl shows for CRDs without printer columns.
pub fn age_column() -> CustomResourceColumnDefinition {
    CustomResourceColumnDefinition {
        name: "Age".into(),
        type_: "date".into(),
        json_path: ".metadata.creationTimestamp".into(),
        ..Default::default()
    }
}

/// Render one cell of a column of type `column_type` from the value found at its path.
pub fn cell(column_type: &str, found: Option<&Value>, now_unix: i64) -> Value {
    match (column_type, found) {
        ("integer" | "number", Some(Value::Number(n))) => Value::Number(n.clone()),
        ("boolean", Some(Value::Bool(b))) => Value::Bool(*b),
        _ => Value::String(registry::format_cell(found, column_type, now_unix)),
    }
}

/// Render `objects` of a kind as a `meta.k8s.io/v1` Table (see [`render_columns`]).
pub fn render(info: &KindInfo, objects: &[Value], now_unix: i64) -> Value {
    render_columns(&info.columns, objects, now_unix)
}

/// Render `objects` as a `meta.k8s.io/v1` Table with these printer columns (the `Name`
/// column is implicit; no columns means `Age` only). Each row carries the object's metadata
/// (kubectl's `includeObject=Metadata` default) so clients can tell rows apart.
pub fn render_columns(
    columns: &[CustomResourceColumnDefinition],
    objects: &[Value],
    now_unix: i64,
) -> Value {
    let age = [age_column()];
    let columns = if columns.is_empty() {
        &age[..]
    } else {
        columns
    };
    let mut defs = vec![json!({
        "name": "Name",
        "type": "string",
        "format": "name",
        "description": "Name must be unique within a namespace.",
        "priority": 0,
    })];
    for c in columns {
        defs.push(json!({
            "name": c.name,
            "type": c.type_,
            "format": c.format.clone().unwrap_or_default(),
            "description": c.description.clone().unwrap_or_default(),
            "priority": c.priority.unwrap_or(0),
        }));
    }
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let name = o
                .pointer("/metadata/name")
                .cloned()
                .unwrap_or(Value::String(String::new()));
            let mut cells = vec![name];
            for c in columns {
                cells.push(cell(
                    &c.type_,
                    registry::json_path_get(o, &c.json_path),
                    now_unix,
                ));
            }
            let meta = o.get("metadata").cloned().unwrap_or(Value::Null);
            json!({
                "cells": cells,
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": meta,
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-05-01T12:00:00Z
    const NOW: i64 = 1_714_564_800;

    fn col(name: &str, type_: &str, path: &str, priority: i32) -> CustomResourceColumnDefinition {
        CustomResourceColumnDefinition {
            name: name.into(),
            type_: type_.into(),
            json_path: path.into(),
            priority: Some(priority),
            ..Default::default()
        }
    }

    #[test]
    fn renders_lsn_like_kubectl() {
        let cols = vec![
            col("ip", "string", ".spec.storageIP", 0),
            col(
                "PoolHDD FreeCap",
                "integer",
                ".status.pools.LocalStorage_PoolHDD.freeCapacityBytes",
                1,
            ),
            age_column(),
        ];
        let objs = vec![
            json!({"metadata": {"name": "n1", "creationTimestamp": "2024-05-01T11:56:08Z"},
                   "spec": {"storageIP": "10.6.234.40"},
                   "status": {"pools": {"LocalStorage_PoolHDD": {"freeCapacityBytes": 42}}}}),
            json!({"metadata": {"name": "n2", "creationTimestamp": "2024-04-30T09:00:00Z"}}),
        ];
        let t = render_columns(&cols, &objs, NOW);
        let names: Vec<_> = t["columnDefinitions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(
            names,
            vec![
                json!("Name"),
                json!("ip"),
                json!("PoolHDD FreeCap"),
                json!("Age")
            ]
        );
        assert_eq!(t["columnDefinitions"][2]["priority"], json!(1));
        assert_eq!(t["columnDefinitions"][3]["format"], json!(""));
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["n1", "10.6.234.40", 42, "3m52s"])
        );
        assert_eq!(t["rows"][1]["cells"], json!(["n2", "", "", "27h"]));
        assert_eq!(t["rows"][1]["object"]["metadata"]["name"], json!("n2"));
    }

    #[test]
    fn no_printer_columns_means_age_only() {
        let t = render_columns(
            &[],
            &[json!({"metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:00:00Z"}})],
            NOW,
        );
        assert_eq!(t["rows"][0]["cells"], json!(["p", "60m"]));
        assert_eq!(t["columnDefinitions"][1]["name"], json!("Age"));
    }

    #[test]
    fn renders_a_registry_kind() {
        let lv = registry::lookup("lv").unwrap();
        let t = render(lv, &[json!({"metadata": {"name": "v"}})], NOW);
        let defs = t["columnDefinitions"].as_array().unwrap();
        assert_eq!(defs.len(), lv.columns.len() + 1);
        assert_eq!(t["rows"][0]["cells"][0], json!("v"));
    }

    #[test]
    fn cells_keep_types_and_stringify_structures() {
        assert_eq!(cell("integer", Some(&json!(5)), NOW), json!(5));
        assert_eq!(cell("number", Some(&json!(1.5)), NOW), json!(1.5));
        assert_eq!(cell("boolean", Some(&json!(true)), NOW), json!(true));
        assert_eq!(cell("string", Some(&json!(true)), NOW), json!("true"));
        assert_eq!(cell("string", Some(&json!(7)), NOW), json!("7"));
        assert_eq!(
            cell("string", Some(&json!(["a", "b"])), NOW),
            json!("[\"a\",\"b\"]")
        );
        assert_eq!(cell("string", Some(&Value::Null), NOW), json!(""));
        assert_eq!(cell("integer", None, NOW), json!(""));
        assert_eq!(
            cell("date", Some(&json!("not a time")), NOW),
            json!("not a time")
        );
        assert_eq!(
            cell("date", Some(&json!("2024-05-01T11:58:00Z")), NOW),
            json!("2m")
        );
    }
}
