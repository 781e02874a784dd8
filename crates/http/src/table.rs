//! Server-side table printing, as `kubectl get` shows objects.
//!
//! The API server renders a list of custom resources as a `meta.k8s.io/v1` `Table` when the
//! client sends `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`: one column `Name`,
//! then the CRD's `additionalPrinterColumns`, each cell computed from a simple JSONPath over
//! the object. A CRD without printer columns gets `Name` and `Age`. We do the same from the
//! printer columns the CRD types declare, so `hwameictl get lv` prints exactly the columns of
//! `kubectl get lv` (NAME first; priority-1 columns only with `-o wide`, which the client
//! filters).
//!
//! Supported JSONPath subset (all the CRDs use): a leading `.`, dotted field names,
//! `[N]` array indices and `['key']` / `["key"]` for keys containing dots. Cells are JSON
//! values: integers stay numbers, `date` columns become kubectl-style ages ("5m", "3h"), and a
//! missing field is an empty string (kubectl prints it blank).

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// One printer column of a CRD version (`additionalPrinterColumns[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PrinterColumn {
    pub name: String,
    /// OpenAPI type: `string`, `integer`, `number`, `boolean` or `date`.
    #[serde(rename = "type")]
    pub type_: String,
    pub json_path: String,
    #[serde(default)]
    pub priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl PrinterColumn {
    /// The `Age` column kubectl shows for CRDs without printer columns.
    pub fn age() -> Self {
        PrinterColumn {
            name: "Age".into(),
            type_: "date".into(),
            json_path: ".metadata.creationTimestamp".into(),
            priority: 0,
            description: None,
            format: None,
        }
    }
}

/// One segment of a parsed JSONPath.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Segment {
    Field(String),
    Index(usize),
}

/// Parse the simple JSONPath subset described in the module doc. `{` `}` wrappers
/// (`{.spec.x}`) are accepted too.
pub fn parse_path(path: &str) -> Result<Vec<Segment>> {
    let bad = |reason: &str| Error::BadRequest {
        reason: format!("unsupported JSONPath {path:?}: {reason}"),
    };
    let mut p = path.trim();
    if let Some(inner) = p.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        p = inner.trim();
    }
    let p = p.strip_prefix('$').unwrap_or(p);
    let chars: Vec<char> = p.chars().collect();
    let mut segs = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                let start = i + 1;
                let mut j = start;
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    j += 1;
                }
                if j == start {
                    return Err(bad("empty field name"));
                }
                segs.push(Segment::Field(chars[start..j].iter().collect()));
                i = j;
            }
            '[' => {
                let close = chars[i..]
                    .iter()
                    .position(|&c| c == ']')
                    .map(|k| k + i)
                    .ok_or_else(|| bad("unclosed ["))?;
                let inner: String = chars[i + 1..close].iter().collect();
                let inner = inner.trim();
                if let Some(key) = inner
                    .strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                {
                    segs.push(Segment::Field(key.to_string()));
                } else {
                    let n: usize = inner.parse().map_err(|_| bad("index is not a number"))?;
                    segs.push(Segment::Index(n));
                }
                i = close + 1;
            }
            _ if i == 0 => {
                // tolerate a missing leading dot ("spec.x")
                let mut j = 0;
                while j < chars.len() && chars[j] != '.' && chars[j] != '[' {
                    j += 1;
                }
                segs.push(Segment::Field(chars[..j].iter().collect()));
                i = j;
            }
            c => return Err(bad(&format!("unexpected character {c:?}"))),
        }
    }
    Ok(segs)
}

/// Evaluate a parsed path; `None` when any step is missing.
pub fn eval<'a>(obj: &'a Value, segs: &[Segment]) -> Option<&'a Value> {
    let mut cur = obj;
    for s in segs {
        cur = match (s, cur) {
            (Segment::Field(f), Value::Object(m)) => m.get(f)?,
            (Segment::Index(n), Value::Array(a)) => a.get(*n)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// kubectl's human-readable duration ("45s", "3m52s", "28h", "5d3h", "2y30d").
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let d = days % 365;
        return if d == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{d}d")
        };
    }
    format!("{years}y")
}

/// The age of an RFC 3339 timestamp relative to `now`, as kubectl prints it.
pub fn age(timestamp: &str, now: Timestamp) -> Option<String> {
    let t: Timestamp = timestamp.parse().ok()?;
    Some(human_duration(now.as_second() - t.as_second()))
}

/// Render one cell of a column from the value found at its path.
pub fn cell(column_type: &str, found: Option<&Value>, now: Timestamp) -> Value {
    let Some(v) = found else {
        return Value::String(String::new());
    };
    match (column_type, v) {
        (_, Value::Null) => Value::String(String::new()),
        ("date", Value::String(s)) => Value::String(age(s, now).unwrap_or_else(|| s.clone())),
        ("integer", Value::Number(n)) => Value::Number(n.clone()),
        ("number", Value::Number(n)) => Value::Number(n.clone()),
        ("boolean", Value::Bool(b)) => Value::Bool(*b),
        (_, Value::String(s)) => Value::String(s.clone()),
        (_, Value::Number(n)) => Value::String(n.to_string()),
        (_, Value::Bool(b)) => Value::String(b.to_string()),
        // arrays and objects print as compact JSON, like kubectl's jsonpath printer
        (_, other) => Value::String(other.to_string()),
    }
}

/// A compiled set of printer columns (the `Name` column is implicit).
#[derive(Clone, Debug)]
pub struct TableSpec {
    columns: Vec<(PrinterColumn, Vec<Segment>)>,
}

impl TableSpec {
    /// Compile the CRD's printer columns; an empty list means `Age` only, as kubectl does.
    pub fn new(columns: &[PrinterColumn]) -> Result<Self> {
        let columns = if columns.is_empty() {
            vec![PrinterColumn::age()]
        } else {
            columns.to_vec()
        };
        let columns = columns
            .into_iter()
            .map(|c| {
                let segs = parse_path(&c.json_path)?;
                Ok((c, segs))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TableSpec { columns })
    }

    /// The printer columns, without the implicit `Name`.
    pub fn columns(&self) -> impl Iterator<Item = &PrinterColumn> {
        self.columns.iter().map(|(c, _)| c)
    }

    /// Render `objects` as a `meta.k8s.io/v1` Table. Each row carries the object's
    /// metadata (kubectl's `includeObject=Metadata` default) so clients can tell rows apart.
    pub fn render(&self, objects: &[Value], now: Timestamp) -> Value {
        let mut defs = vec![json!({
            "name": "Name",
            "type": "string",
            "format": "name",
            "description": "Name must be unique within a namespace.",
            "priority": 0,
        })];
        for (c, _) in &self.columns {
            defs.push(json!({
                "name": c.name,
                "type": c.type_,
                "format": c.format.clone().unwrap_or_default(),
                "description": c.description.clone().unwrap_or_default(),
                "priority": c.priority,
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
                for (c, segs) in &self.columns {
                    cells.push(cell(&c.type_, eval(o, segs), now));
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn parses_and_evaluates_paths() {
        let obj = json!({
            "spec": {"accessibility": {"nodes": ["n1", "n2"]}, "x": {"y": 3}},
            "status": {"pools": {"LocalStorage_PoolHDD": {"freeCapacityBytes": 1024}}},
            "metadata": {"labels": {"a.b/c": "v"}},
        });
        let p = |s: &str| eval(&obj, &parse_path(s).unwrap()).cloned();
        assert_eq!(p(".spec.x.y"), Some(json!(3)));
        assert_eq!(p(".spec.accessibility.nodes[0]"), Some(json!("n1")));
        assert_eq!(p(".spec.accessibility.nodes[1]"), Some(json!("n2")));
        assert_eq!(p(".spec.accessibility.nodes[2]"), None);
        assert_eq!(
            p(".status.pools.LocalStorage_PoolHDD.freeCapacityBytes"),
            Some(json!(1024))
        );
        assert_eq!(
            p(".status.pools.LocalStorage_PoolSSD.freeCapacityBytes"),
            None
        );
        assert_eq!(p(".metadata.labels['a.b/c']"), Some(json!("v")));
        assert_eq!(p("{.spec.x.y}"), Some(json!(3)));
        assert_eq!(p(".spec.x.y.z"), None);
        assert!(parse_path(".spec..x").is_err());
        assert!(parse_path(".spec.x[abc]").is_err());
        assert!(parse_path(".spec.x[0").is_err());
    }

    #[test]
    fn human_durations_match_kubectl() {
        assert_eq!(human_duration(-5), "<invalid>");
        assert_eq!(human_duration(-1), "0s");
        assert_eq!(human_duration(0), "0s");
        assert_eq!(human_duration(119), "119s");
        assert_eq!(human_duration(232), "3m52s");
        assert_eq!(human_duration(300), "5m");
        assert_eq!(human_duration(10 * 60 + 59), "10m");
        assert_eq!(human_duration(179 * 60), "179m");
        assert_eq!(human_duration(3 * 3600), "3h");
        assert_eq!(human_duration(3 * 3600 + 20 * 60), "3h20m");
        assert_eq!(human_duration(28 * 3600), "28h");
        assert_eq!(human_duration(50 * 3600), "2d2h");
        assert_eq!(human_duration(48 * 3600), "2d");
        assert_eq!(human_duration(30 * 86400), "30d");
        assert_eq!(human_duration(800 * 86400), "2y70d");
        assert_eq!(human_duration(3650 * 86400), "10y");
    }

    #[test]
    fn renders_lsn_like_kubectl() {
        let cols = vec![
            PrinterColumn {
                name: "ip".into(),
                type_: "string".into(),
                json_path: ".spec.storageIP".into(),
                priority: 0,
                description: None,
                format: None,
            },
            PrinterColumn {
                name: "PoolHDD FreeCap".into(),
                type_: "integer".into(),
                json_path: ".status.pools.LocalStorage_PoolHDD.freeCapacityBytes".into(),
                priority: 1,
                description: None,
                format: None,
            },
            PrinterColumn::age(),
        ];
        let spec = TableSpec::new(&cols).unwrap();
        let objs = vec![
            json!({"metadata": {"name": "n1", "creationTimestamp": "2024-05-01T11:56:08Z"},
                   "spec": {"storageIP": "10.6.234.40"},
                   "status": {"pools": {"LocalStorage_PoolHDD": {"freeCapacityBytes": 42}}}}),
            json!({"metadata": {"name": "n2", "creationTimestamp": "2024-04-30T09:00:00Z"}}),
        ];
        let t = spec.render(&objs, now());
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
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["n1", "10.6.234.40", 42, "3m52s"])
        );
        assert_eq!(t["rows"][1]["cells"], json!(["n2", "", "", "27h"]));
        assert_eq!(t["rows"][1]["object"]["metadata"]["name"], json!("n2"));
    }

    #[test]
    fn no_printer_columns_means_age_only() {
        let spec = TableSpec::new(&[]).unwrap();
        let t = spec.render(
            &[json!({"metadata": {"name": "p", "creationTimestamp": "2024-05-01T11:00:00Z"}})],
            now(),
        );
        assert_eq!(t["rows"][0]["cells"], json!(["p", "60m"]));
    }

    #[test]
    fn cells_keep_types_and_stringify_structures() {
        let n = now();
        assert_eq!(cell("integer", Some(&json!(5)), n), json!(5));
        assert_eq!(cell("boolean", Some(&json!(true)), n), json!(true));
        assert_eq!(cell("string", Some(&json!(true)), n), json!("true"));
        assert_eq!(
            cell("string", Some(&json!(["a", "b"])), n),
            json!("[\"a\",\"b\"]")
        );
        assert_eq!(cell("string", Some(&Value::Null), n), json!(""));
        assert_eq!(
            cell("date", Some(&json!("not a time")), n),
            json!("not a time")
        );
    }
}
